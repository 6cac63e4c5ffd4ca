// LuxDB call tokens: minted by clients, checked by the server, one per call.
//
// Format (version 1), documented in the README for clients in other languages:
//   body  = 0x01 || timestamp (int64 big-endian, Unix milliseconds) || nonce (16 random bytes)
//   tag   = HMAC-SHA256(key, body || method)     method: full gRPC method name,
//                                                e.g. "/luxdb.v1.LuxDB/QueryIndex", or "*"
//   token = base64url(body || tag), without padding (76 characters)
// sent as the metadata "authorization: Bearer <token>". A token bound to "*" is valid for any
// method (for command-line tools); it is single-use all the same.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "auth/key.h"

namespace luxdb::auth {

inline constexpr uint8_t kTokenVersion = 1;
inline constexpr size_t kNonceBytes = 16;
inline constexpr char kAnyMethod[] = "*";
inline constexpr char kAuthorizationHeader[] = "authorization";
inline constexpr char kBearerPrefix[] = "Bearer ";

using Nonce = std::array<uint8_t, kNonceBytes>;

// Why a call's token was refused, as one of a fixed set of names (a metrics label; README
// "Metrics and logs"): "missing", "several", "not_bearer" (CallAuthenticator's header checks),
// "malformed", "version", "signature", "timestamp", "future", "expired", "replayed" (Check)
// and "overloaded" (Check's nonce memory is full). The refusing status carries it.
inline constexpr char kRefusalPayloadUrl[] = "type.luxdb.dev/luxdb.auth.Refusal";
// `status` with `reason` attached as its refusal reason.
absl::Status WithRefusalReason(absl::Status status, absl::string_view reason);
// The refusal reason `status` carries; "other" for a status without one (OK included).
std::string RefusalReason(const absl::Status& status);

// A token for `method` at `now` with a fresh random nonce (OpenSSL RAND_bytes).
std::string MintToken(const Key& key, absl::string_view method,
                      std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
// The same with a given nonce, for known-answer tests.
std::string MintToken(const Key& key, absl::string_view method,
                      std::chrono::system_clock::time_point now, const Nonce& nonce);

// Checks tokens and remembers their nonces for the token lifetime, so none is accepted twice.
// Thread-safe; Check takes microseconds (one HMAC and a hash-set lookup).
class TokenVerifier {
 public:
  struct Options {
    std::chrono::milliseconds ttl = std::chrono::seconds(60);
    // How far a token's timestamp may be ahead of this server's clock.
    std::chrono::milliseconds max_clock_skew = std::chrono::seconds(5);
    // Nonces remembered at most; beyond it new tokens are refused (RESOURCE_EXHAUSTED)
    // rather than remembering without bound. 4M covers ~65,000 calls/s over a 60 s window.
    size_t max_remembered = size_t{1} << 22;
  };

  TokenVerifier(const Key& key, Options options);

  // OK if `token` (without "Bearer ") is well formed, signed with this key for `method` (or
  // for "*"), at most ttl old, at most max_clock_skew in the future, and not seen before.
  // UNAUTHENTICATED with the reason otherwise; the message never contains the token. A refusal
  // carries its RefusalReason.
  absl::Status Check(absl::string_view token, absl::string_view method,
                     std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

  // Reads LUXDB_TOKEN_TTL (or FERNET_TTL for old deployments), in seconds.
  static absl::StatusOr<std::chrono::milliseconds> TtlFromEnvironment(
      const std::map<std::string, std::string>& env);

 private:
  // Remembers `nonce` of a token stamped `timestamp_ms`; false if it was already there.
  absl::Status Remember(int64_t timestamp_ms, const Nonce& nonce, int64_t now_ms);

  const Key key_;
  const Options options_;
  std::mutex mu_;
  // Nonces by the second of their token's timestamp: a replay carries the same timestamp, so
  // one bucket answers, and whole buckets expire at once. Guarded by mu_.
  std::map<int64_t, absl::flat_hash_set<std::pair<uint64_t, uint64_t>>> seen_;
  size_t remembered_ = 0;  // guarded by mu_
};

}  // namespace luxdb::auth
