// libFuzzer target: TokenVerifier::Check on arbitrary bytes and on mutated genuine tokens.
//
// Input: a mode byte, then
//   even mode (arbitrary): a method-length byte, that many bytes of method name, and the rest
//     as the token. Nothing but UNAUTHENTICATED may come back: no forged token is accepted.
//   odd mode (differential): a token is minted with the fixed key for a method, a nonce and a
//     clock offset taken from the input, then edited as the input says, and checked for a
//     method (the minted one, another, or arbitrary). It must verify exactly when it is
//     unedited, bound to the checked method (or to "*") and inside the time window; once it
//     has verified, checking it again must report a replay.
// Every refusal must be UNAUTHENTICATED; a genuine token's must not contain the token.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "auth/key.h"
#include "auth/token.h"

namespace {

using luxdb::auth::TokenVerifier;

constexpr std::array<const char*, 16> kMethods = {
    "/luxdb.v1.LuxDB/CreateIndex", "/luxdb.v1.LuxDB/InitIndex",   "/luxdb.v1.LuxDB/DeleteIndex",
    "/luxdb.v1.LuxDB/IndexExists", "/luxdb.v1.LuxDB/ListIndexes", "/luxdb.v1.LuxDB/DescribeIndex",
    "/luxdb.v1.LuxDB/SetEf",       "/luxdb.v1.LuxDB/AddItems",    "/luxdb.v1.LuxDB/DeleteItems",
    "/luxdb.v1.LuxDB/QueryIndex",  "/luxdb.v1.LuxDB/ResizeIndex", "/luxdb.v1.LuxDB/GetIds",
    "/luxdb.v1.LuxDB/GetElements", "/luxdb.v1.LuxDB/Backup",      "/luxdb.v1.LuxDB/CompactIndex",
    luxdb::auth::kAnyMethod};

// A fixed point in time (2026-01-01T00:00:00Z), so runs are reproducible.
const std::chrono::system_clock::time_point kNow{std::chrono::milliseconds(1767225600000)};

luxdb::auth::Key FixedKey() {
  luxdb::auth::Key key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(0x5a ^ (i * 37));
  return key;
}

TokenVerifier::Options VerifierOptions() {
  return {.ttl = std::chrono::seconds(60),
          .max_clock_skew = std::chrono::seconds(5),
          .max_remembered = 16};
}

[[noreturn]] void Fail(const std::string& what, const std::string& token, const std::string& method,
                       const absl::Status& status) {
  std::fprintf(stderr, "fuzz_token invariant broken: %s\n  token '%s'\n  method '%s'\n  got %s\n",
               what.c_str(), absl::CHexEscape(token).c_str(), absl::CHexEscape(method).c_str(),
               status.ToString().c_str());
  std::abort();
}

// A refusal must be UNAUTHENTICATED. With `credential` (a genuine token, maybe edited), its
// message must not echo the token; arbitrary bytes are not checked for that, since the
// fuzzer readily makes a token out of the message's own words.
void CheckRefusal(const absl::Status& status, const std::string& token, const std::string& method,
                  bool credential) {
  if (!absl::IsUnauthenticated(status)) {
    Fail("a refused token must get UNAUTHENTICATED", token, method, status);
  }
  if (credential && absl::StrContains(status.message(), token)) {
    Fail("the refusal message contains the token", token, method, status);
  }
}

void CheckArbitrary(FuzzedDataProvider& input) {
  const std::string method = input.ConsumeBytesAsString(input.ConsumeIntegral<uint8_t>());
  const std::string token = input.ConsumeRemainingBytesAsString();
  TokenVerifier verifier(FixedKey(), VerifierOptions());
  const absl::Status status = verifier.Check(token, method, kNow);
  if (status.ok()) Fail("a token not minted with the key verified", token, method, status);
  CheckRefusal(status, token, method, false);
}

void CheckMutated(FuzzedDataProvider& input) {
  const std::string minted_for = kMethods[input.ConsumeIntegralInRange<size_t>(0, 14)];
  luxdb::auth::Nonce nonce{};
  for (uint8_t& byte : nonce) byte = input.ConsumeIntegral<uint8_t>();
  // Minted up to ~2 minutes before or after kNow: the window is [-ttl, +max_clock_skew].
  const int64_t age_ms = input.ConsumeIntegralInRange<int64_t>(-120'000, 120'000);
  const std::string original = luxdb::auth::MintToken(
      FixedKey(), minted_for, kNow - std::chrono::milliseconds(age_ms), nonce);

  std::string method;
  switch (input.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      method = minted_for;
      break;
    case 1:
      method = kMethods[input.ConsumeIntegralInRange<size_t>(0, 13)];
      break;
    default:
      method = input.ConsumeRandomLengthString(64);
  }

  // Edits: replace, insert or erase one byte at a position; the count comes from the input.
  std::string token = original;
  const int edits = input.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < edits && input.remaining_bytes() > 0; ++i) {
    const int kind = input.ConsumeIntegralInRange<int>(0, 2);
    const size_t at = input.ConsumeIntegralInRange<size_t>(0, token.size());
    const char byte = input.ConsumeIntegral<char>();
    if (kind == 0 && at < token.size()) {
      token[at] = byte;
    } else if (kind == 1) {
      token.insert(token.begin() + static_cast<std::ptrdiff_t>(at), byte);
    } else if (at < token.size()) {
      token.erase(at, 1);
    }
  }

  const bool in_window = age_ms <= 60'000 && age_ms >= -5'000;
  const bool bound = method == minted_for || minted_for == luxdb::auth::kAnyMethod;
  const bool should_verify = token == original && bound && in_window;

  TokenVerifier verifier(FixedKey(), VerifierOptions());
  const absl::Status status = verifier.Check(token, method, kNow);
  if (should_verify != status.ok()) {
    Fail(should_verify ? "a genuine token in its window was refused"
                       : "an edited, misbound or expired token verified",
         token, method, status);
  }
  if (!status.ok()) {
    CheckRefusal(status, token, method, true);
    return;
  }
  const absl::Status again = verifier.Check(token, method, kNow);
  if (again.ok() || !absl::StrContains(again.message(), "replayed")) {
    Fail("a token verified twice", token, method, again);
  }
  CheckRefusal(again, token, method, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  if (input.ConsumeIntegral<uint8_t>() % 2 == 0) {
    CheckArbitrary(input);
  } else {
    CheckMutated(input);
  }
  return 0;
}
