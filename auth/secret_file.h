// The secret a server generates for itself when none is configured.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace luxdb::auth {

inline constexpr char kSecretFileName[] = "secret";

struct SecretFile {
  std::string secret;
  std::string path;
  bool created = false;  // true if this call generated it
};

// Reads `data_dir`/secret, or creates it (mode 0600, 32 random bytes as base64url, fsynced)
// if it does not exist; creates `data_dir` (mode 0700) if missing. FAILED_PRECONDITION if the
// file is readable by group or others, or empty.
absl::StatusOr<SecretFile> LoadOrCreateSecret(const std::string& data_dir);

// The secret in the file at `path` (--secret-file), surrounding white space removed.
// NOT_FOUND / PERMISSION_DENIED / ... naming the path if it cannot be read,
// FAILED_PRECONDITION if it holds nothing but white space.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

}  // namespace luxdb::auth
