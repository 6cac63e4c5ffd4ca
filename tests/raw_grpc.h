// Speaking gRPC services for which the tests have no generated stubs (health, reflection):
// hand-encoded messages through grpc::GenericStub, as grpcurl does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

namespace luxdb::testing {

// One unary call of `method` ("/pkg.Service/Method") with an encoded request.
grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                          const std::string& request, std::string* response);

// Sends each request on one bidirectional stream, collecting one response per request.
grpc::Status RawStreamCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                           const std::vector<std::string>& requests,
                           std::vector<std::string>* responses);

// The length-delimited fields numbered `number` of an encoded message.
std::vector<std::string> LengthDelimitedFields(const std::string& message, int number);

// grpc.health.v1.Health/Check for `service`: the reported status (SERVING = 1), or -1 if the
// call failed (its status in *call_status).
int HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                 grpc::Status* call_status);

}  // namespace luxdb::testing
