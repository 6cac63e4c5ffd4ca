// Token checking for every luxdb.v1.LuxDB call.
//
// gRPC C++ 1.51 lets a server interceptor observe a call but not end it, so the work is split:
// the interceptor checks the call's token as soon as its metadata arrives (before the request
// message is parsed or any handler runs) and files the verdict here; the service's first step
// in every handler takes the verdict and, unless it is OK, answers UNAUTHENTICATED without
// doing anything. A call the interceptor did not see is refused (fail closed). Other services
// (health, reflection) are not intercepted and stay open.
#pragma once

#include <memory>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "auth/token.h"
#include "grpcpp/support/server_interceptor.h"

namespace luxdb::server {

// Verdicts by call, from the interceptor to the service. Thread-safe.
class CallVerdicts {
 public:
  void Put(const grpc::ServerContextBase* call, absl::Status verdict);
  // The verdict for `call`, or UNAUTHENTICATED if none was filed.
  absl::Status Get(const grpc::ServerContextBase* call) const;
  void Erase(const grpc::ServerContextBase* call);

 private:
  mutable std::mutex mu_;
  absl::flat_hash_map<const grpc::ServerContextBase*, absl::Status> verdicts_;  // guarded by mu_
};

class AuthInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // Both must outlive the server.
  AuthInterceptorFactory(auth::TokenVerifier* verifier, CallVerdicts* verdicts)
      : verifier_(verifier), verdicts_(verdicts) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  auth::TokenVerifier* const verifier_;
  CallVerdicts* const verdicts_;
};

}  // namespace luxdb::server
