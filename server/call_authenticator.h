// Token checking for every luxdb.v1.LuxDB call, inside gRPC's transport.
//
// The check runs in gRPC core's server-auth filter as soon as a call's headers have arrived:
// before its request message is read, before the call is matched to a handler. A call
// without a valid token is refused there (UNAUTHENTICATED) and its HTTP/2 stream is reset,
// so however large a message it announces, it costs the server at most the stream's
// flow-control window. (A server interceptor, which LuxDB used before, runs only after the
// sync server has read and parsed the whole request.) Calls of other services (health,
// reflection) are not checked.
//
// gRPC C++ lets only TLS credentials carry an AuthMetadataProcessor; for plaintext ports
// CredentialsCheckingTokens attaches it through gRPC core's C API, which accepts it on any
// server credentials.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "auth/token.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/server_credentials.h"

namespace luxdb::server {

// Decides whether a call's headers carry a valid token for its method. Thread-safe.
class CallAuthenticator final : public grpc::AuthMetadataProcessor {
 public:
  // Told of every refused call: its ":path" and the refusal (which carries an
  // auth::RefusalReason). Runs on gRPC's transport thread, so it must be quick.
  using RefusalObserver = std::function<void(absl::string_view path, const absl::Status& refusal)>;

  // `verifier` must outlive every server using this authenticator; `on_refusal` may be null.
  explicit CallAuthenticator(auth::TokenVerifier* verifier, RefusalObserver on_refusal = nullptr)
      : verifier_(verifier), on_refusal_(std::move(on_refusal)) {}

  // Runs on gRPC's transport thread; the check takes microseconds (one HMAC, one hash-set
  // lookup), so it does not need a thread of its own.
  bool IsBlocking() const override { return false; }

  // OK for calls outside luxdb.v1.LuxDB; for LuxDB calls, OK only when exactly one
  // "authorization: Bearer <token>" header carries a token TokenVerifier::Check accepts for
  // the call's method. UNAUTHENTICATED with the reason otherwise (never the token itself),
  // carrying its auth::RefusalReason; the refusal observer is told.
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

  // The same verdict for one call: `path` is its ":path" header ("/luxdb.v1.LuxDB/AddItems"),
  // `authorization` the values of its "authorization" headers.
  absl::Status Check(absl::string_view path,
                     const std::vector<absl::string_view>& authorization) const;

 private:
  auth::TokenVerifier* const verifier_;
  const RefusalObserver on_refusal_;
};

// `base` (plaintext when null, else TLS credentials built by grpc::SslServerCredentials)
// with `authenticator` checking every call's headers at the transport. The authenticator is
// kept alive by the credentials and every connection accepted through them.
std::shared_ptr<grpc::ServerCredentials> CredentialsCheckingTokens(
    std::shared_ptr<grpc::ServerCredentials> tls, std::shared_ptr<CallAuthenticator> authenticator);

}  // namespace luxdb::server
