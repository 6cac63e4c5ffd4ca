#include "server/auth_interceptor.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

namespace luxdb::server {
namespace {

constexpr char kLuxDbMethodPrefix[] = "/luxdb.v1.LuxDB/";

class AuthInterceptor : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(grpc::experimental::ServerRpcInfo* info, auth::TokenVerifier* verifier,
                  CallVerdicts* verdicts)
      : info_(info), verifier_(verifier), verdicts_(verdicts) {}
  ~AuthInterceptor() override { verdicts_->Erase(info_->server_context()); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      verdicts_->Put(info_->server_context(), Check(*methods->GetRecvInitialMetadata()));
    }
    methods->Proceed();
  }

 private:
  absl::Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
    auto header = metadata.find(auth::kAuthorizationHeader);
    absl::Status verdict;
    if (header == metadata.end()) {
      verdict = absl::UnauthenticatedError(
          "missing 'authorization: Bearer <token>' metadata; see the README's Security section");
    } else {
      absl::string_view value(header->second.data(), header->second.size());
      // The scheme name is case-insensitive (RFC 6750 / RFC 9110).
      if (!absl::StartsWithIgnoreCase(value, auth::kBearerPrefix)) {
        verdict = absl::UnauthenticatedError("authorization metadata is not 'Bearer <token>'");
      } else {
        value.remove_prefix(sizeof(auth::kBearerPrefix) - 1);
        verdict = verifier_->Check(value, info_->method());
      }
    }
    if (!verdict.ok()) {
      spdlog::debug("refused {}: {}", info_->method(), std::string(verdict.message()));
    }
    return verdict;
  }

  grpc::experimental::ServerRpcInfo* const info_;
  auth::TokenVerifier* const verifier_;
  CallVerdicts* const verdicts_;
};

}  // namespace

void CallVerdicts::Put(const grpc::ServerContextBase* call, absl::Status verdict) {
  std::lock_guard lock(mu_);
  verdicts_[call] = std::move(verdict);
}

absl::Status CallVerdicts::Get(const grpc::ServerContextBase* call) const {
  std::lock_guard lock(mu_);
  auto it = verdicts_.find(call);
  if (it == verdicts_.end()) return absl::UnauthenticatedError("call was not authenticated");
  return it->second;
}

void CallVerdicts::Erase(const grpc::ServerContextBase* call) {
  std::lock_guard lock(mu_);
  verdicts_.erase(call);
}

grpc::experimental::Interceptor* AuthInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (!absl::StartsWith(info->method(), kLuxDbMethodPrefix)) return nullptr;
  return new AuthInterceptor(info, verifier_, verdicts_);
}

}  // namespace luxdb::server
