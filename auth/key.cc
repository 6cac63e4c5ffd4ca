#include "auth/key.h"

#include <openssl/evp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace luxdb::auth {
namespace {

constexpr uint32_t kMaxIterations = 100'000'000;

}  // namespace

absl::StatusOr<KdfParams> KdfParamsFromEnvironment(const std::map<std::string, std::string>& env) {
  KdfParams params;
  if (auto it = env.find("LUXDB_SALT"); it != env.end()) {
    params.salt = it->second;
  } else if (auto old = env.find("LUXBD_SALT"); old != env.end()) {
    params.salt = old->second;
  }
  if (auto it = env.find("KDF_ITERATIONS"); it != env.end()) {
    uint32_t iterations = 0;
    if (!absl::SimpleAtoi(it->second, &iterations) || iterations < 1 ||
        iterations > kMaxIterations) {
      return absl::InvalidArgumentError(
          absl::StrCat("KDF_ITERATIONS must be a whole number from 1 to ", kMaxIterations,
                       ", got '", it->second, "'"));
    }
    params.iterations = iterations;
  }
  return params;
}

absl::StatusOr<Key> DeriveKey(absl::string_view secret, const KdfParams& params) {
  if (secret.empty()) return absl::InvalidArgumentError("the shared secret is empty");
  Key key;
  if (PKCS5_PBKDF2_HMAC(secret.data(), static_cast<int>(secret.size()),
                        reinterpret_cast<const unsigned char*>(params.salt.data()),
                        static_cast<int>(params.salt.size()), static_cast<int>(params.iterations),
                        EVP_sha256(), static_cast<int>(key.size()), key.data()) != 1) {
    return absl::InternalError("PBKDF2 key derivation failed in OpenSSL");
  }
  return key;
}

}  // namespace luxdb::auth
