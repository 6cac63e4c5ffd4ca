// How a LuxDB client reaches its server: address, secret, TLS, limits and deadlines. Kept
// free of gRPC headers so that luxdb/client.h exposes none.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/key.h"

namespace luxdb::client {

inline constexpr char kDefaultHost[] = "127.0.0.1";
inline constexpr int kDefaultPort = 8484;

struct ConnectOptions {
  // The server's address. Left empty (host) or 0 (port), WithEnvironment takes it from
  // LUXDB_ADDRESS ("host:port") or LUXDB_HOST / LUXDB_PORT, and what is still unset is
  // kDefaultHost / kDefaultPort (127.0.0.1:8484).
  std::string host;
  int port = 0;
  // The server's shared secret. Empty with `insecure` for a server run with --insecure; left
  // empty, WithEnvironment reads LUXDB_SECRET, or the file LUXDB_SECRET_FILE names.
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

// The convention of every LuxDB tool (server, CLI, C++ and Python clients, examples):
//   address: what the caller gives (host, port) wins; what it leaves unset comes from
//            LUXDB_ADDRESS ("host:port", "[v6]:port"), else LUXDB_HOST / LUXDB_PORT, else
//            127.0.0.1:8484. LUXDB_ADDRESS together with LUXDB_HOST or LUXDB_PORT contradict.
//   secret:  what the caller gives (a secret, or a --secret-file it read) wins; else
//            LUXDB_SECRET, else the file LUXDB_SECRET_FILE names; both set contradict.

// `options` with its unset host and port taken from the environment as above (not the
// defaults: Target applies those). INVALID_ARGUMENT naming the variable for a malformed value
// or a contradiction.
absl::StatusOr<ConnectOptions> AddressFromEnvironment(ConnectOptions options);

// AddressFromEnvironment, then the secret (as above) and LUXDB_SALT / LUXBD_SALT and
// KDF_ITERATIONS from the environment into a copy of `options` where its fields are unset.
// INVALID_ARGUMENT for a malformed or contradictory variable; the error of reading the file
// for an unreadable or empty LUXDB_SECRET_FILE (NOT_FOUND, FAILED_PRECONDITION, ...).
absl::StatusOr<ConnectOptions> WithEnvironment(ConnectOptions options);

// "host:port" or "[v6]:port" into host and port (min_port..65535; the server's listening
// address takes 0, "pick a free port"); INVALID_ARGUMENT naming `what` (e.g. "LUXDB_ADDRESS"
// or "--address") and the text. Every LuxDB tool parses addresses with this.
absl::StatusOr<std::pair<std::string, int>> ParseAddress(absl::string_view text,
                                                         absl::string_view what, int min_port = 1);

// "host:port", or "[host]:port" for an IPv6 host (one with a ':' and no brackets yet): the
// inverse of ParseAddress, and a gRPC target.
std::string JoinHostPort(absl::string_view host, int port);

// The gRPC target of `options`, "host:port" ("[v6]:port"), with the defaults for what is
// unset.
std::string Target(const ConnectOptions& options);

}  // namespace luxdb::client
