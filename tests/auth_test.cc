// Tests of auth/: PBKDF2 key derivation and its environment, the call-token format (known
// answers computed independently with Python's hashlib/hmac/base64), TokenVerifier's verdicts,
// replay memory and its bound, what checking costs, and the generated secret file.
#include <openssl/hmac.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "auth/key.h"
#include "auth/secret_file.h"
#include "auth/token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace luxdb::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;
using TimePoint = std::chrono::system_clock::time_point;
using Env = std::map<std::string, std::string>;

constexpr char kQueryIndex[] = "/luxdb.v1.LuxDB/QueryIndex";
constexpr char kAddItems[] = "/luxdb.v1.LuxDB/AddItems";

// 2023-11-14T22:13:20.123Z, a fixed instant for known-answer and verifier tests.
constexpr int64_t kT0Millis = 1'700'000'000'123;
const TimePoint kT0{milliseconds(kT0Millis)};

std::string Hex(const uint8_t* data, size_t size) {
  std::string hex;
  for (size_t i = 0; i < size; ++i) absl::StrAppend(&hex, absl::Hex(data[i], absl::kZeroPad2));
  return hex;
}

std::string Hex(const Key& key) { return Hex(key.data(), key.size()); }

Key KeyOf(absl::string_view secret, const std::string& salt, uint32_t iterations) {
  absl::StatusOr<Key> key = DeriveKey(secret, {.salt = salt, .iterations = iterations});
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *key : Key{};
}

// A cheap key for verifier tests.
Key TestKey() { return KeyOf("verifier-secret", "test-salt", 1); }

// The bytes 0x00..0x1f, as in the Python known-answer computation.
Key SequentialKey() {
  Key key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i);
  return key;
}

// The bytes 0xa0..0xaf.
Nonce SequentialNonce() {
  Nonce nonce;
  for (size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<uint8_t>(0xa0 + i);
  return nonce;
}

std::string Decode(const std::string& token) {
  std::string raw;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(token, &raw)) << token;
  return raw;
}

std::string Encode(const std::string& raw) { return absl::WebSafeBase64Escape(raw); }

// A token signed correctly (HMAC-SHA256 over body || method, as token.h documents) over an
// arbitrary body, for bodies MintToken cannot produce.
std::string SignedToken(const Key& key, const std::string& body, absl::string_view method) {
  const std::string message = absl::StrCat(body, method);
  std::array<uint8_t, 32> tag;
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const uint8_t*>(message.data()), message.size(), tag.data(), &length);
  EXPECT_EQ(length, tag.size());
  return Encode(body + std::string(reinterpret_cast<const char*>(tag.data()), tag.size()));
}

std::string Body(uint8_t version, uint64_t millis, const Nonce& nonce) {
  std::string body(1, static_cast<char>(version));
  for (int shift = 56; shift >= 0; shift -= 8) body.push_back(static_cast<char>(millis >> shift));
  body.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  return body;
}

// UNAUTHENTICATED whose message mentions `why` and does not repeat the token (nor its tag).
::testing::AssertionResult Refused(const absl::Status& status, const std::string& token,
                                   const std::string& why) {
  if (status.code() != absl::StatusCode::kUnauthenticated) {
    return ::testing::AssertionFailure() << "expected UNAUTHENTICATED, got " << status;
  }
  if (!why.empty() && status.message().find(why) == absl::string_view::npos) {
    return ::testing::AssertionFailure() << "message does not say '" << why << "': " << status;
  }
  if (token.size() >= 8) {
    const std::string tail = token.substr(token.size() - std::min<size_t>(token.size(), 40));
    if (status.message().find(token) != absl::string_view::npos ||
        status.message().find(tail) != absl::string_view::npos) {
      return ::testing::AssertionFailure() << "message repeats the token: " << status;
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Key derivation.

// Expected keys: /usr/bin/python3 -c 'import hashlib;
//   print(hashlib.pbkdf2_hmac("sha256", SECRET, SALT, ITERATIONS).hex())'
TEST(DeriveKeyTest, MatchesPbkdf2HmacSha256AtTheDefaultSaltAndIterations) {
  absl::StatusOr<Key> key = DeriveKey("luxdb-test-secret", KdfParams{});
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(Hex(*key), "542081b7f6edd2db22e309e7fc1028137165d41004bbcddcea908268b268fe95");

  key = DeriveKey("correct horse battery staple",
                  {.salt = "wYfJIy4Nx1hPcxiljwg", .iterations = 1u << 18});
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(Hex(*key), "697cae866e9a4eeff2c649094d3c6a83ca7239845183aadabd852a4f9aa50ab1");
}

TEST(DeriveKeyTest, MatchesPbkdf2HmacSha256WithAnotherSaltAndIterationCount) {
  absl::StatusOr<Key> key =
      DeriveKey("luxdb-test-secret", {.salt = "another-salt", .iterations = 1000});
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(Hex(*key), "5c6093f3808286323c6b9626e41d56d4aef76461123e888bdbe1091b2d40142d");
}

TEST(DeriveKeyTest, DefaultsAreTheOriginalServersSaltAndTwoToThe18Iterations) {
  const KdfParams params;
  EXPECT_EQ(params.salt, "wYfJIy4Nx1hPcxiljwg");
  EXPECT_EQ(params.iterations, 262144u);
}

TEST(DeriveKeyTest, RefusesAnEmptySecret) {
  absl::StatusOr<Key> key = DeriveKey("", {.salt = "s", .iterations = 1});
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument) << key.status();
}

TEST(KdfParamsFromEnvironmentTest, DefaultsWithoutVariables) {
  absl::StatusOr<KdfParams> params = KdfParamsFromEnvironment({});
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->salt, kDefaultSalt);
  EXPECT_EQ(params->iterations, kDefaultIterations);
}

TEST(KdfParamsFromEnvironmentTest, LuxdbSaltWinsOverTheMisspeltLuxbdSalt) {
  absl::StatusOr<KdfParams> params =
      KdfParamsFromEnvironment({{"LUXDB_SALT", "new-salt"}, {"LUXBD_SALT", "old-salt"}});
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->salt, "new-salt");
}

TEST(KdfParamsFromEnvironmentTest, MisspeltLuxbdSaltAloneIsUsed) {
  absl::StatusOr<KdfParams> params = KdfParamsFromEnvironment({{"LUXBD_SALT", "old-salt"}});
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->salt, "old-salt");
  EXPECT_EQ(params->iterations, kDefaultIterations);
}

TEST(KdfParamsFromEnvironmentTest, ReadsKdfIterationsFromOneToOneHundredMillion) {
  for (const auto& [text, expected] : std::vector<std::pair<std::string, uint32_t>>{
           {"1000", 1000}, {"1", 1}, {"100000000", 100'000'000}}) {
    absl::StatusOr<KdfParams> params = KdfParamsFromEnvironment({{"KDF_ITERATIONS", text}});
    ASSERT_TRUE(params.ok()) << text << ": " << params.status();
    EXPECT_EQ(params->iterations, expected) << text;
    EXPECT_EQ(params->salt, kDefaultSalt);
  }
}

TEST(KdfParamsFromEnvironmentTest, RefusesBadKdfIterationsNamingTheVariableAndValue) {
  for (const std::string text :
       {"0", "abc", "1000000000", "100000001", "-1", "", "12x", "4294967296"}) {
    absl::StatusOr<KdfParams> params = KdfParamsFromEnvironment({{"KDF_ITERATIONS", text}});
    ASSERT_FALSE(params.ok()) << "'" << text << "' accepted";
    EXPECT_EQ(params.status().code(), absl::StatusCode::kInvalidArgument) << params.status();
    EXPECT_THAT(params.status().message(), HasSubstr("KDF_ITERATIONS"));
    EXPECT_THAT(params.status().message(), HasSubstr(absl::StrCat("'", text, "'")));
  }
}

// ---------------------------------------------------------------------------------------------
// Token format.

// Expected tokens: key = bytes(range(32)), nonce = bytes(range(0xa0, 0xb0)),
//   body = b"\x01" + struct.pack(">q", 1700000000123) + nonce
//   tag = hmac.new(key, body + method, hashlib.sha256).digest()
//   base64.urlsafe_b64encode(body + tag).rstrip(b"=")
TEST(TokenFormatTest, MintTokenMatchesAnIndependentComputation) {
  EXPECT_EQ(MintToken(SequentialKey(), kQueryIndex, kT0, SequentialNonce()),
            "AQAAAYvP5Wh7oKGio6SlpqeoqaqrrK2ur4JSphUGnWvT5Jz4_JhSx0Q5NbhmFrI3ouRjAr38j3s4");
  EXPECT_EQ(MintToken(SequentialKey(), kAnyMethod, kT0, SequentialNonce()),
            "AQAAAYvP5Wh7oKGio6SlpqeoqaqrrK2ur_xg4J0UKMc95qwcUzbeFzonPgUxTYFtyY70SEhPWTGk");
}

TEST(TokenFormatTest, DecodedTokenIsVersionTimestampNonceAndTag) {
  const std::string token = MintToken(SequentialKey(), kQueryIndex, kT0, SequentialNonce());
  EXPECT_EQ(token.size(), 76u);
  EXPECT_EQ(
      token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
      std::string::npos)
      << token;
  const std::string raw = Decode(token);
  ASSERT_EQ(raw.size(), 1u + 8u + 16u + 32u);
  const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data());
  EXPECT_EQ(bytes[0], 0x01);
  EXPECT_EQ(Hex(bytes + 1, 8), "0000018bcfe5687b");  // 1700000000123 big-endian
  EXPECT_EQ(Hex(bytes + 9, 16), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_EQ(Hex(bytes + 25, 32),
            "8252a615069d6bd3e49cf8fc9852c7443935b86616b237a2e46302bdfc8f7b38");
}

TEST(TokenFormatTest, FreshTokensCarryTheTimeAndDifferentNonces) {
  const Key key = TestKey();
  const std::string a = Decode(MintToken(key, kQueryIndex, kT0));
  const std::string b = Decode(MintToken(key, kQueryIndex, kT0));
  ASSERT_EQ(a.size(), 57u);
  ASSERT_EQ(b.size(), 57u);
  EXPECT_EQ(a.substr(0, 9), b.substr(0, 9));    // same version and timestamp
  EXPECT_NE(a.substr(9, 16), b.substr(9, 16));  // RAND_bytes nonces
  EXPECT_EQ(Hex(reinterpret_cast<const uint8_t*>(a.data()) + 1, 8), "0000018bcfe5687b");
}

// ---------------------------------------------------------------------------------------------
// TokenVerifier.

TEST(TokenVerifierTest, AcceptsAFreshTokenForItsMethod) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {});
  EXPECT_TRUE(verifier.Check(MintToken(key, kQueryIndex, kT0), kQueryIndex, kT0).ok());
  // The known-answer token, checked by a verifier holding that key.
  TokenVerifier sequential(SequentialKey(), {});
  absl::Status status =
      sequential.Check(MintToken(SequentialKey(), kQueryIndex, kT0, SequentialNonce()), kQueryIndex,
                       kT0 + milliseconds(10));
  EXPECT_TRUE(status.ok()) << status;
}

TEST(TokenVerifierTest, RefusesMissingGarbageTruncatedAndOverlongTokens) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {});
  const std::string good = MintToken(key, kAddItems, kT0);
  const std::vector<std::string> bad = {
      "",
      "garbage",
      std::string(76, '!'),       // right length, not base64
      std::string(76, 'A'),       // right length, decodes, bad version
      good.substr(0, 75),         // truncated
      good.substr(0, 72),         // truncated on a 3-byte boundary
      good + "A",                 // one character too long
      good + "=",                 // padded
      good + good,                // twice as long
      std::string(100'000, 'A'),  // very long
      "Bearer " + good,           // the header value, not the token
  };
  for (const std::string& token : bad) {
    EXPECT_TRUE(Refused(verifier.Check(token, kAddItems, kT0), token, ""))
        << "token of " << token.size() << " chars: " << token.substr(0, 80);
  }
  // None of those was remembered in place of the good token.
  EXPECT_TRUE(verifier.Check(good, kAddItems, kT0).ok());
}

TEST(TokenVerifierTest, RefusesAWrongVersionByteEvenWhenSigned) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {});
  for (uint8_t version : {0, 2, 255}) {
    const std::string token =
        SignedToken(key, Body(version, kT0Millis, SequentialNonce()), kAddItems);
    EXPECT_TRUE(Refused(verifier.Check(token, kAddItems, kT0), token, "version")) << version;
  }
  // The same body with version 1 and the same signing code is accepted: the helper is right.
  const std::string v1 = SignedToken(key, Body(1, kT0Millis, SequentialNonce()), kAddItems);
  EXPECT_EQ(v1, MintToken(key, kAddItems, kT0, SequentialNonce()));
  EXPECT_TRUE(verifier.Check(v1, kAddItems, kT0).ok());
}

TEST(TokenVerifierTest, RefusesATokenSignedWithAnotherKey) {
  TokenVerifier verifier(TestKey(), {});
  const std::string token = MintToken(KeyOf("another-secret", "test-salt", 1), kAddItems, kT0);
  EXPECT_TRUE(Refused(verifier.Check(token, kAddItems, kT0), token, "signature"));
  // Same secret, other salt: another key too.
  const std::string salted = MintToken(KeyOf("verifier-secret", "other-salt", 1), kAddItems, kT0);
  EXPECT_TRUE(Refused(verifier.Check(salted, kAddItems, kT0), salted, "signature"));
}

TEST(TokenVerifierTest, RefusesATokenBoundToAnotherMethod) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {});
  const std::string token = MintToken(key, kQueryIndex, kT0);
  EXPECT_TRUE(Refused(verifier.Check(token, kAddItems, kT0), token, "signature"));
  EXPECT_TRUE(Refused(verifier.Check(token, "/luxdb.v1.LuxDB/QueryIndexX", kT0), token, ""));
  // Refusing it for the wrong method did not use it up.
  EXPECT_TRUE(verifier.Check(token, kQueryIndex, kT0).ok());
}

TEST(TokenVerifierTest, AnyMethodTokensAreAcceptedForEveryMethodButOnlyOnce) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {});
  for (const char* method : {kAddItems, kQueryIndex, "/luxdb.v1.LuxDB/DeleteIndex"}) {
    EXPECT_TRUE(verifier.Check(MintToken(key, kAnyMethod, kT0), method, kT0).ok()) << method;
  }
  const std::string token = MintToken(key, kAnyMethod, kT0);
  EXPECT_TRUE(verifier.Check(token, kAddItems, kT0).ok());
  EXPECT_TRUE(Refused(verifier.Check(token, kQueryIndex, kT0), token, "replayed"));
}

TEST(TokenVerifierTest, RefusesExpiredTokensAndAcceptsUpToTheTtl) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {.ttl = seconds(60)});
  const std::string at_ttl = MintToken(key, kAddItems, kT0);
  EXPECT_TRUE(verifier.Check(at_ttl, kAddItems, kT0 + seconds(60)).ok());
  const std::string past_ttl = MintToken(key, kAddItems, kT0);
  EXPECT_TRUE(Refused(verifier.Check(past_ttl, kAddItems, kT0 + seconds(60) + milliseconds(1)),
                      past_ttl, "expired"));
  const std::string old = MintToken(key, kAddItems, kT0 - std::chrono::minutes(2));
  EXPECT_TRUE(Refused(verifier.Check(old, kAddItems, kT0), old, "expired"));

  TokenVerifier short_lived(key, {.ttl = seconds(2)});
  const std::string three_seconds_old = MintToken(key, kAddItems, kT0 - seconds(3));
  EXPECT_TRUE(
      Refused(short_lived.Check(three_seconds_old, kAddItems, kT0), three_seconds_old, "expired"));
}

// The timestamp is an int64: one far before 1970 (the sign bit set) is expired, not accepted
// through overflow of `now - timestamp`, and so not replayable once its bucket is dropped.
TEST(TokenVerifierTest, RefusesTokensStampedAtExtremeTimes) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {});
  for (uint64_t millis : {uint64_t{1} << 63, (uint64_t{1} << 63) + 1, ~uint64_t{0},
                          uint64_t{0x7fffffffffffffff}, uint64_t{0}}) {
    const std::string token = SignedToken(key, Body(1, millis, SequentialNonce()), kAddItems);
    const std::string label = absl::StrCat("timestamp 0x", absl::Hex(millis));
    EXPECT_TRUE(Refused(verifier.Check(token, kAddItems, kT0), token, "")) << label;
    // Any other call lets the verifier drop old buckets; the token must stay refused.
    ASSERT_TRUE(verifier.Check(MintToken(key, kAddItems, kT0), kAddItems, kT0).ok());
    EXPECT_TRUE(Refused(verifier.Check(token, kAddItems, kT0), token, "")) << label << ", again";
  }
}

TEST(TokenVerifierTest, FutureTokensAreAcceptedWithinTheSkewAndRefusedBeyondIt) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {.max_clock_skew = seconds(5)});
  EXPECT_TRUE(verifier.Check(MintToken(key, kAddItems, kT0 + seconds(4)), kAddItems, kT0).ok());
  EXPECT_TRUE(verifier.Check(MintToken(key, kAddItems, kT0 + seconds(5)), kAddItems, kT0).ok());
  const std::string beyond = MintToken(key, kAddItems, kT0 + seconds(5) + milliseconds(1));
  EXPECT_TRUE(Refused(verifier.Check(beyond, kAddItems, kT0), beyond, "future"));
  const std::string minute = MintToken(key, kAddItems, kT0 + std::chrono::minutes(1));
  EXPECT_TRUE(Refused(verifier.Check(minute, kAddItems, kT0), minute, "future"));
}

TEST(TokenVerifierTest, RefusesASecondUseForAsLongAsTheTokenLives) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {.ttl = milliseconds(1500)});
  // Stamped at the last millisecond of a second, the worst case for per-second buckets.
  const TimePoint stamped{milliseconds((kT0Millis / 1000) * 1000 + 999)};
  const std::string token = MintToken(key, kAddItems, stamped);
  ASSERT_TRUE(verifier.Check(token, kAddItems, stamped).ok());
  for (int64_t later : {0, 1, 500, 1000, 1001, 1499, 1500}) {
    // Other traffic at the replay time gives the verifier its chance to forget old buckets.
    ASSERT_TRUE(verifier
                    .Check(MintToken(key, kAddItems, stamped + milliseconds(later)), kAddItems,
                           stamped + milliseconds(later))
                    .ok());
    EXPECT_TRUE(
        Refused(verifier.Check(token, kAddItems, stamped + milliseconds(later)), token, "replayed"))
        << later << " ms later";
  }
  EXPECT_TRUE(
      Refused(verifier.Check(token, kAddItems, stamped + milliseconds(1501)), token, "expired"));
}

TEST(TokenVerifierTest, RememberingIsBoundedAndAnswersResourceExhaustedWhenFull) {
  const Key key = TestKey();
  TokenVerifier verifier(key, {.ttl = seconds(2), .max_remembered = 50});
  std::vector<std::string> accepted;
  for (int i = 0; i < 50; ++i) {
    accepted.push_back(MintToken(key, kAddItems, kT0));
    ASSERT_TRUE(verifier.Check(accepted.back(), kAddItems, kT0).ok()) << i;
  }
  for (int i = 0; i < 3; ++i) {
    absl::Status full = verifier.Check(MintToken(key, kAddItems, kT0), kAddItems, kT0);
    EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
    EXPECT_THAT(full.message(), HasSubstr("50"));
  }
  // A replay is never accepted, full or not.
  EXPECT_FALSE(verifier.Check(accepted.front(), kAddItems, kT0).ok());
  // Once those tokens have expired (plus the bucket margin), there is room again.
  EXPECT_TRUE(
      verifier.Check(MintToken(key, kAddItems, kT0 + seconds(5)), kAddItems, kT0 + seconds(5))
          .ok());
}

TEST(TokenVerifierTest, ExpiredNoncesAreForgottenSoMemoryDoesNotGrowAcrossWindows) {
  const Key key = TestKey();
  constexpr size_t kBound = 40;
  TokenVerifier verifier(key, {.ttl = seconds(2), .max_remembered = kBound});
  const std::string first = MintToken(key, kAddItems, kT0);
  ASSERT_TRUE(verifier.Check(first, kAddItems, kT0).ok());
  // 200 windows of kBound tokens each: 8,000 tokens through a verifier that may remember 40.
  TimePoint now = kT0;
  for (int window = 0; window < 200; ++window) {
    now = kT0 + seconds(5) * (window + 1) + milliseconds(37 * window % 1000);
    for (size_t i = 0; i < kBound; ++i) {
      absl::Status status = verifier.Check(MintToken(key, kAddItems, now), kAddItems, now);
      ASSERT_TRUE(status.ok()) << "window " << window << " token " << i << ": " << status;
    }
    EXPECT_EQ(verifier.Check(MintToken(key, kAddItems, now), kAddItems, now).code(),
              absl::StatusCode::kResourceExhausted)
        << "window " << window;
  }
  // The very first token, long forgotten, is refused as expired rather than accepted.
  EXPECT_TRUE(Refused(verifier.Check(first, kAddItems, now), first, "expired"));
}

TEST(TokenVerifierTest, TtlFromEnvironment) {
  using Ttl = absl::StatusOr<milliseconds>;
  Ttl ttl = TokenVerifier::TtlFromEnvironment({});
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, seconds(60));

  ttl = TokenVerifier::TtlFromEnvironment({{"LUXDB_TOKEN_TTL", "90"}});
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, seconds(90));

  ttl = TokenVerifier::TtlFromEnvironment({{"LUXDB_TOKEN_TTL", "1.5"}});
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, milliseconds(1500));

  ttl = TokenVerifier::TtlFromEnvironment({{"FERNET_TTL", "30"}});
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, seconds(30));

  ttl = TokenVerifier::TtlFromEnvironment({{"LUXDB_TOKEN_TTL", "10"}, {"FERNET_TTL", "30"}});
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, seconds(10));

  for (const std::string name : {"LUXDB_TOKEN_TTL", "FERNET_TTL"}) {
    for (const std::string text : {"0", "abc", "-5", "0.5", "86401", "nan", "inf", ""}) {
      ttl = TokenVerifier::TtlFromEnvironment({{name, text}});
      ASSERT_FALSE(ttl.ok()) << name << "='" << text << "' accepted as " << ttl->count() << " ms";
      EXPECT_EQ(ttl.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(ttl.status().message(), HasSubstr(name));
      EXPECT_THAT(ttl.status().message(), HasSubstr(absl::StrCat("'", text, "'")));
    }
  }
  // A bad new variable is not silently replaced by the old one.
  ttl = TokenVerifier::TtlFromEnvironment({{"LUXDB_TOKEN_TTL", "x"}, {"FERNET_TTL", "30"}});
  EXPECT_EQ(ttl.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Cost. The figures are printed for the record; the bound is loose because the machine is
// shared and noisy.

TEST(AuthCostTest, MintingAndCheckingTakeMicroseconds) {
  using Clock = std::chrono::steady_clock;
  constexpr int kTokens = 20'000;
  const Key key = TestKey();
  std::vector<std::string> tokens;
  tokens.reserve(kTokens);
  const TimePoint now = std::chrono::system_clock::now();
  const Clock::time_point mint_start = Clock::now();
  for (int i = 0; i < kTokens; ++i) tokens.push_back(MintToken(key, kAddItems, now));
  const Clock::time_point mint_end = Clock::now();
  TokenVerifier verifier(key, {});
  int accepted = 0;
  for (const std::string& token : tokens) accepted += verifier.Check(token, kAddItems, now).ok();
  const Clock::time_point check_end = Clock::now();
  EXPECT_EQ(accepted, kTokens);

  const double mint_us =
      std::chrono::duration<double, std::micro>(mint_end - mint_start).count() / kTokens;
  const double check_us =
      std::chrono::duration<double, std::micro>(check_end - mint_end).count() / kTokens;

  const Clock::time_point derive_start = Clock::now();
  absl::StatusOr<Key> derived = DeriveKey("luxdb-test-secret", KdfParams{});
  const double derive_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - derive_start).count();
  ASSERT_TRUE(derived.ok()) << derived.status();

  std::cout << absl::StrFormat(
                   "[auth] mint %.2f us/token, check %.2f us/token (%d tokens); DeriveKey at "
                   "2^18 iterations %.0f ms",
                   mint_us, check_us, kTokens, derive_ms)
            << std::endl;
  EXPECT_LT(mint_us, 1000.0);
  EXPECT_LT(check_us, 1000.0);
  EXPECT_LT(derive_ms, 30'000.0);
}

// ---------------------------------------------------------------------------------------------
// The generated secret file.

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = std::filesystem::path(::testing::TempDir()) / "luxdb-auth-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  static mode_t ModeOf(const std::string& path) {
    struct stat info;
    EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
    return info.st_mode & 07777;
  }

  void WriteFile(const std::string& path, const std::string& text, mode_t mode) {
    { std::ofstream(path, std::ios::binary) << text; }
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }

  std::string root_;
};

TEST_F(SecretFileTest, CreatesAPrivateFileWithARandomSecretAndReusesIt) {
  const std::string dir = root_ + "/data";  // does not exist yet
  absl::StatusOr<SecretFile> created = LoadOrCreateSecret(dir);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  EXPECT_EQ(created->path, dir + "/secret");
  EXPECT_EQ(ModeOf(created->path), 0600u);
  EXPECT_EQ(ModeOf(dir), 0700u);
  // 32 random bytes as unpadded base64url.
  EXPECT_EQ(created->secret.size(), 43u) << created->secret;
  EXPECT_EQ(created->secret.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos)
      << created->secret;
  EXPECT_FALSE(std::filesystem::exists(created->path + ".tmp"));

  absl::StatusOr<SecretFile> again = LoadOrCreateSecret(dir);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->secret, created->secret);
  EXPECT_EQ(again->path, created->path);

  // Another data directory gets another secret.
  absl::StatusOr<SecretFile> other = LoadOrCreateSecret(root_ + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(other->secret, created->secret);
}

TEST_F(SecretFileTest, ReadsASecretWrittenByTheOperatorWithoutItsNewline) {
  WriteFile(root_ + "/secret", "operator's secret\n", 0600);
  absl::StatusOr<SecretFile> file = LoadOrCreateSecret(root_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE(file->created);
  EXPECT_EQ(file->secret, "operator's secret");

  ASSERT_EQ(::chmod((root_ + "/secret").c_str(), 0400), 0);
  file = LoadOrCreateSecret(root_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->secret, "operator's secret");
}

TEST_F(SecretFileTest, RefusesAFileOthersCanReadNamingIt) {
  const std::string path = root_ + "/secret";
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    WriteFile(path, "some secret\n", mode);
    absl::StatusOr<SecretFile> file = LoadOrCreateSecret(root_);
    ASSERT_FALSE(file.ok()) << "mode " << std::oct << mode << " accepted";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition) << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr(path));
    EXPECT_THAT(file.status().message(), Not(HasSubstr("some secret")));
  }
  absl::StatusOr<SecretFile> file = LoadOrCreateSecret(root_);
  EXPECT_THAT(file.status().message(), HasSubstr("660"));
}

TEST_F(SecretFileTest, RefusesAnEmptyFile) {
  const std::string path = root_ + "/secret";
  for (const std::string text : {"", "\n", "  \n\t"}) {
    WriteFile(path, text, 0600);
    absl::StatusOr<SecretFile> file = LoadOrCreateSecret(root_);
    ASSERT_FALSE(file.ok()) << "'" << text << "' accepted";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition) << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr(path));
  }
  // And it was not replaced behind the operator's back.
  EXPECT_EQ(std::filesystem::file_size(path), 4u);
}

}  // namespace
}  // namespace luxdb::auth
