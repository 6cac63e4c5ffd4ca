// The shared key every LuxDB token is signed with: PBKDF2-HMAC-SHA256 over the secret.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::auth {

inline constexpr size_t kKeyBytes = 32;
using Key = std::array<uint8_t, kKeyBytes>;

// Salt and iteration count of the original LuxDB server.
inline constexpr char kDefaultSalt[] = "wYfJIy4Nx1hPcxiljwg";
inline constexpr uint32_t kDefaultIterations = 1u << 18;

struct KdfParams {
  std::string salt = kDefaultSalt;
  uint32_t iterations = kDefaultIterations;
};

// Reads LUXDB_SALT (or, for old deployments, the misspelt LUXBD_SALT) and KDF_ITERATIONS
// from `env`, defaulting each. INVALID_ARGUMENT naming the variable for a bad iteration count
// (it must be 1..10^8).
absl::StatusOr<KdfParams> KdfParamsFromEnvironment(const std::map<std::string, std::string>& env);

// PBKDF2-HMAC-SHA256(secret, salt, iterations) -> 32 bytes. Slow on purpose (~0.1-0.3 s at
// the default count): derive once per process. INVALID_ARGUMENT for an empty secret.
absl::StatusOr<Key> DeriveKey(absl::string_view secret, const KdfParams& params);

}  // namespace luxdb::auth
