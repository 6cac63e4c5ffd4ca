// How a LuxDB client reaches its server: address, secret, TLS, limits and deadlines. Kept
// free of gRPC headers so that luxdb/client.h exposes none.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "auth/key.h"

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
  // luxdb::Client::Connect: how long reaching the server and proving the secret may take.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
  // luxdb::Client: the deadline of every call whose CallOptions sets none; zero means none.
  std::chrono::milliseconds call_timeout{0};
};

// Reads LUXDB_SECRET, LUXDB_SALT / LUXBD_SALT and KDF_ITERATIONS from the environment into a
// copy of `options` where its fields are unset. INVALID_ARGUMENT for a bad KDF_ITERATIONS.
absl::StatusOr<ConnectOptions> WithEnvironment(ConnectOptions options);

}  // namespace luxdb::client
