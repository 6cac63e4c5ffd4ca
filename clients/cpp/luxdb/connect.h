// Connecting to a LuxDB server: a gRPC channel that signs every call with a fresh token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "auth/key.h"
#include "grpcpp/channel.h"

namespace luxdb::client {

struct ConnectOptions {
  std::string host = "127.0.0.1";
  int port = 8484;
  // The server's shared secret. Empty with `insecure` for a server run with --insecure.
  std::string secret;
  bool insecure = false;
  auth::KdfParams kdf;  // must match the server's LUXDB_SALT and KDF_ITERATIONS
  // TLS: set tls_ca_file (PEM) to connect with TLS, verifying the server against it. For
  // mutual TLS also set the client's certificate chain and key.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Largest message sent or received.
  int max_message_bytes = 256 << 20;
};

// Reads LUXDB_SECRET, LUXDB_SALT / LUXBD_SALT and KDF_ITERATIONS from the environment into a
// copy of `options` where its fields are unset.
absl::StatusOr<ConnectOptions> WithEnvironment(ConnectOptions options);

// A channel to the server whose calls carry "authorization: Bearer <token>", minted per call
// and bound to the called method. Derives the key once (PBKDF2: ~0.1-0.3 s). Does not
// contact the server. INVALID_ARGUMENT without a secret unless `insecure`; NOT_FOUND for an
// unreadable TLS file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectOptions& options);

}  // namespace luxdb::client
