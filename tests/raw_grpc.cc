#include "tests/raw_grpc.h"

#include <gtest/gtest.h>

#include <chrono>

#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

namespace luxdb::testing {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(30);

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// Waits for the one outstanding operation on `cq`; returns its ok flag.
bool Await(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  if (!cq.Next(&got, &ok)) return false;
  EXPECT_EQ(got, tag);
  return ok;
}

void Drain(grpc::CompletionQueue& cq) {
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace

grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                          const std::string& request, std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  grpc::ByteBuffer response_buffer;
  grpc::Status status;
  int tag = 0;
  const grpc::ByteBuffer request_buffer = ToByteBuffer(request);
  {
    auto call = stub.PrepareUnaryCall(&context, method, request_buffer, &cq);
    call->StartCall();
    call->Finish(&response_buffer, &status, &tag);
    Await(cq, &tag);
  }
  Drain(cq);
  *response = ToBytes(response_buffer);
  return status;
}

grpc::Status RawStreamCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                           const std::vector<std::string>& requests,
                           std::vector<std::string>* responses) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  grpc::Status status;
  int tag = 0;
  {
    auto call = stub.PrepareCall(&context, method, &cq);
    call->StartCall(&tag);
    bool ok = Await(cq, &tag);
    for (size_t i = 0; ok && i < requests.size(); ++i) {
      call->Write(ToByteBuffer(requests[i]), &tag);
      ok = Await(cq, &tag);
      grpc::ByteBuffer response;
      if (ok) {
        call->Read(&response, &tag);
        ok = Await(cq, &tag);
      }
      if (ok) responses->push_back(ToBytes(response));
    }
    call->WritesDone(&tag);
    Await(cq, &tag);
    call->Finish(&status, &tag);
    Await(cq, &tag);
  }
  Drain(cq);
  return status;
}

std::vector<std::string> LengthDelimitedFields(const std::string& message, int number) {
  google::protobuf::UnknownFieldSet fields;
  EXPECT_TRUE(fields.ParseFromString(message));
  std::vector<std::string> values;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& field = fields.field(i);
    if (field.number() == number &&
        field.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      values.push_back(field.length_delimited());
    }
  }
  return values;
}

int HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                 grpc::Status* call_status) {
  google::protobuf::UnknownFieldSet request;  // HealthCheckRequest { string service = 1 }
  if (!service.empty()) request.AddLengthDelimited(1, service);
  std::string request_bytes;
  request.SerializeToString(&request_bytes);
  std::string response_bytes;
  *call_status =
      RawUnaryCall(channel, "/grpc.health.v1.Health/Check", request_bytes, &response_bytes);
  if (!call_status->ok()) return -1;
  google::protobuf::UnknownFieldSet response;  // HealthCheckResponse { Status status = 1 }
  EXPECT_TRUE(response.ParseFromString(response_bytes));
  for (int i = 0; i < response.field_count(); ++i) {
    if (response.field(i).number() == 1) return static_cast<int>(response.field(i).varint());
  }
  return 0;  // UNKNOWN, the proto3 default
}

}  // namespace luxdb::testing
