#include "auth/token.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace luxdb::auth {
namespace {

constexpr size_t kTimestampBytes = 8;
constexpr size_t kBodyBytes = 1 + kTimestampBytes + kNonceBytes;
constexpr size_t kTagBytes = 32;
constexpr size_t kTokenBytes = kBodyBytes + kTagBytes;

using Tag = std::array<uint8_t, kTagBytes>;

int64_t UnixMillis(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

Tag Sign(const Key& key, const uint8_t* body, absl::string_view method) {
  std::string message(reinterpret_cast<const char*>(body), kBodyBytes);
  message.append(method.data(), method.size());
  Tag tag;
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const uint8_t*>(message.data()), message.size(), tag.data(), &length);
  return tag;
}

// `reason` is the RefusalReason; `why` the message's explanation.
absl::Status Unauthenticated(absl::string_view reason, absl::string_view why) {
  return WithRefusalReason(absl::UnauthenticatedError(absl::StrCat("token rejected: ", why)),
                           reason);
}

}  // namespace

absl::Status WithRefusalReason(absl::Status status, absl::string_view reason) {
  status.SetPayload(kRefusalPayloadUrl, absl::Cord(reason));
  return status;
}

std::string RefusalReason(const absl::Status& status) {
  const auto reason = status.GetPayload(kRefusalPayloadUrl);  // an absl::optional<absl::Cord>
  return reason.has_value() ? std::string(*reason) : "other";
}

std::string MintToken(const Key& key, absl::string_view method,
                      std::chrono::system_clock::time_point now, const Nonce& nonce) {
  std::array<uint8_t, kTokenBytes> token;
  token[0] = kTokenVersion;
  const uint64_t millis = static_cast<uint64_t>(UnixMillis(now));
  for (size_t i = 0; i < kTimestampBytes; ++i) {
    token[1 + i] = static_cast<uint8_t>(millis >> (8 * (kTimestampBytes - 1 - i)));
  }
  std::memcpy(token.data() + 1 + kTimestampBytes, nonce.data(), kNonceBytes);
  const Tag tag = Sign(key, token.data(), method);
  std::memcpy(token.data() + kBodyBytes, tag.data(), kTagBytes);
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(token.data()), token.size()));
}

std::string MintToken(const Key& key, absl::string_view method,
                      std::chrono::system_clock::time_point now) {
  Nonce nonce;
  RAND_bytes(nonce.data(), static_cast<int>(nonce.size()));
  return MintToken(key, method, now, nonce);
}

TokenVerifier::TokenVerifier(const Key& key, Options options) : key_(key), options_(options) {}

absl::StatusOr<std::chrono::milliseconds> TokenVerifier::TtlFromEnvironment(
    const std::map<std::string, std::string>& env) {
  for (const char* name : {"LUXDB_TOKEN_TTL", "FERNET_TTL"}) {
    auto it = env.find(name);
    if (it == env.end()) continue;
    double seconds = 0;
    if (!absl::SimpleAtod(it->second, &seconds) || !(seconds >= 1 && seconds <= 86400)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " must be a number of seconds from 1 to 86400, got '", it->second, "'"));
    }
    return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  return std::chrono::milliseconds(std::chrono::seconds(60));
}

absl::Status TokenVerifier::Check(absl::string_view token, absl::string_view method,
                                  std::chrono::system_clock::time_point now) {
  // Base64 of 57 bytes is 76 characters: anything longer is refused before decoding.
  if (token.size() != (kTokenBytes * 4 + 2) / 3) return Unauthenticated("malformed", "malformed");
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.size() != kTokenBytes) {
    return Unauthenticated("malformed", "malformed");
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data());
  if (bytes[0] != kTokenVersion) {
    return Unauthenticated("version", absl::StrCat("unsupported token version ", bytes[0]));
  }
  const Tag for_method = Sign(key_, bytes, method);
  const Tag for_any = Sign(key_, bytes, kAnyMethod);
  // Both comparisons always run, so timing does not reveal which one matched.
  const bool method_ok = CRYPTO_memcmp(for_method.data(), bytes + kBodyBytes, kTagBytes) == 0;
  const bool any_ok = CRYPTO_memcmp(for_any.data(), bytes + kBodyBytes, kTagBytes) == 0;
  if (!(method_ok | any_ok)) {
    return Unauthenticated("signature",
                           "bad signature (another secret, or bound to another method)");
  }
  uint64_t millis = 0;
  for (size_t i = 0; i < kTimestampBytes; ++i) millis = (millis << 8) | bytes[1 + i];
  // Before 1970 or after year 292 million: refused here, so the arithmetic below cannot
  // overflow.
  constexpr uint64_t kLatestMillis = uint64_t{1} << 62;
  if (millis > kLatestMillis) return Unauthenticated("timestamp", "timestamp out of range");
  const int64_t stamped = static_cast<int64_t>(millis);
  const int64_t now_ms = UnixMillis(now);
  if (stamped > now_ms + options_.max_clock_skew.count()) {
    return Unauthenticated("future", absl::StrCat("issued ", stamped - now_ms,
                                                  " ms in the future; check the client's clock"));
  }
  if (now_ms - stamped > options_.ttl.count()) {
    return Unauthenticated("expired",
                           absl::StrCat("expired ", now_ms - stamped - options_.ttl.count(),
                                        " ms ago (lifetime ", options_.ttl.count(), " ms)"));
  }
  Nonce nonce;
  std::memcpy(nonce.data(), bytes + 1 + kTimestampBytes, kNonceBytes);
  return Remember(stamped, nonce, now_ms);
}

absl::Status TokenVerifier::Remember(int64_t timestamp_ms, const Nonce& nonce, int64_t now_ms) {
  uint64_t high = 0;
  uint64_t low = 0;
  std::memcpy(&high, nonce.data(), sizeof(high));
  std::memcpy(&low, nonce.data() + sizeof(high), sizeof(low));
  const int64_t second = timestamp_ms / 1000;
  std::lock_guard lock(mu_);
  // A bucket can be forgotten once every token it could hold has expired.
  const int64_t oldest_live = (now_ms - options_.ttl.count()) / 1000 - 1;
  while (!seen_.empty() && seen_.begin()->first < oldest_live) {
    remembered_ -= seen_.begin()->second.size();
    seen_.erase(seen_.begin());
  }
  auto& bucket = seen_[second];
  if (bucket.contains({high, low})) return Unauthenticated("replayed", "replayed");
  if (remembered_ >= options_.max_remembered) {
    return WithRefusalReason(absl::ResourceExhaustedError(
                                 absl::StrCat("more than ", options_.max_remembered,
                                              " calls within the token lifetime; retry shortly")),
                             "overloaded");
  }
  bucket.insert({high, low});
  ++remembered_;
  return absl::OkStatus();
}

}  // namespace luxdb::auth
