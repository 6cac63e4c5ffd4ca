#include "server/call_authenticator.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/grpc_security.h"
#include "grpc/slice.h"
#include "spdlog/spdlog.h"

namespace luxdb::server {
namespace {

constexpr char kLuxDbMethodPrefix[] = "/luxdb.v1.LuxDB/";
constexpr char kPathHeader[] = ":path";

absl::string_view View(const grpc::string_ref& text) { return {text.data(), text.size()}; }

absl::string_view View(const grpc_slice& slice) {
  return {reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)), GRPC_SLICE_LENGTH(slice)};
}

// A call's headers that the check reads.
struct CallHeaders {
  absl::string_view path;
  std::vector<absl::string_view> authorization;

  void Add(absl::string_view key, absl::string_view value) {
    if (key == kPathHeader) {
      path = value;
    } else if (key == auth::kAuthorizationHeader) {
      authorization.push_back(value);
    }
  }
};

// gRPC core's processor callback, for plaintext ports: hands the headers to the
// CallAuthenticator and reports its verdict synchronously (the check never blocks).
void ProcessInCore(void* state, grpc_auth_context* /*context*/, const grpc_metadata* metadata,
                   size_t count, grpc_process_auth_metadata_done_cb done, void* user_data) {
  const auto& authenticator = *static_cast<std::shared_ptr<CallAuthenticator>*>(state);
  CallHeaders headers;
  for (size_t i = 0; i < count; ++i) headers.Add(View(metadata[i].key), View(metadata[i].value));
  const absl::Status verdict = authenticator->Check(headers.path, headers.authorization);
  const std::string message(verdict.message());
  done(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(verdict.code()),
       verdict.ok() ? nullptr : message.c_str());
}

void DestroyInCore(void* state) { delete static_cast<std::shared_ptr<CallAuthenticator>*>(state); }

// Plaintext server credentials carrying a CallAuthenticator (see the header).
class PlaintextCredentialsCheckingTokens final : public grpc::ServerCredentials {
 public:
  explicit PlaintextCredentialsCheckingTokens(std::shared_ptr<CallAuthenticator> authenticator)
      : authenticator_(std::move(authenticator)) {}

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/) override {
    // The authenticator is fixed at construction; nothing in LuxDB replaces it.
    spdlog::critical("PlaintextCredentialsCheckingTokens: SetAuthMetadataProcessor ignored");
  }

 private:
  int AddPortToServer(const std::string& address, grpc_server* server) override {
    grpc_server_credentials* credentials = grpc_insecure_server_credentials_create();
    grpc_auth_metadata_processor processor;
    processor.process = &ProcessInCore;
    processor.destroy = &DestroyInCore;
    processor.state = new std::shared_ptr<CallAuthenticator>(authenticator_);
    grpc_server_credentials_set_auth_metadata_processor(credentials, processor);
    const int port = grpc_server_add_http2_port(server, address.c_str(), credentials);
    grpc_server_credentials_release(credentials);
    return port;
  }

  const std::shared_ptr<CallAuthenticator> authenticator_;
};

}  // namespace

absl::Status CallAuthenticator::Check(absl::string_view path,
                                      const std::vector<absl::string_view>& authorization) const {
  if (!absl::StartsWith(path, kLuxDbMethodPrefix)) return absl::OkStatus();
  absl::Status verdict;
  if (authorization.empty()) {
    verdict = auth::WithRefusalReason(
        absl::UnauthenticatedError(
            "missing 'authorization: Bearer <token>' metadata; see the README's Security section"),
        "missing");
  } else if (authorization.size() > 1) {
    // Proxies and libraries disagree on which of several headers counts; refuse them all.
    verdict =
        auth::WithRefusalReason(absl::UnauthenticatedError(absl::StrCat(
                                    "the call carries ", authorization.size(),
                                    " 'authorization' headers; send exactly one 'Bearer <token>'")),
                                "several");
  } else {
    absl::string_view value = authorization.front();
    // The scheme name is case-insensitive (RFC 6750 / RFC 9110).
    if (!absl::StartsWithIgnoreCase(value, auth::kBearerPrefix)) {
      verdict = auth::WithRefusalReason(
          absl::UnauthenticatedError("authorization metadata is not 'Bearer <token>'"),
          "not_bearer");
    } else {
      value.remove_prefix(sizeof(auth::kBearerPrefix) - 1);
      verdict = verifier_->Check(value, path);
    }
  }
  if (!verdict.ok()) {
    spdlog::debug("refused {}: {}", std::string(path), std::string(verdict.message()));
    if (on_refusal_) on_refusal_(path, verdict);
  }
  return verdict;
}

grpc::Status CallAuthenticator::Process(const InputMetadata& auth_metadata,
                                        grpc::AuthContext* /*context*/,
                                        OutputMetadata* /*consumed_auth_metadata*/,
                                        OutputMetadata* /*response_metadata*/) {
  CallHeaders headers;
  for (const auto& [key, value] : auth_metadata) headers.Add(View(key), View(value));
  const absl::Status verdict = Check(headers.path, headers.authorization);
  if (verdict.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(verdict.code()),
                      std::string(verdict.message()));
}

std::shared_ptr<grpc::ServerCredentials> CredentialsCheckingTokens(
    std::shared_ptr<grpc::ServerCredentials> tls,
    std::shared_ptr<CallAuthenticator> authenticator) {
  if (tls == nullptr) {
    return std::make_shared<PlaintextCredentialsCheckingTokens>(std::move(authenticator));
  }
  tls->SetAuthMetadataProcessor(std::move(authenticator));
  return tls;
}

}  // namespace luxdb::server
