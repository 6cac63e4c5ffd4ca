// libFuzzer target: the server's command line and environment into ParseOptions, and a call's
// headers into CallAuthenticator::Check (the check that runs on every call's headers before
// anything else, for callers without the secret too).
//
// Input: lines separated by '\n'. A line "ENV NAME=value" sets an environment variable, a
// line "HDR value" adds an authorization header, a line "PATH value" sets the call's :path;
// every other line is one command-line argument.
//
// Invariants: ParseOptions either succeeds with a data directory and a transport memory of at
// least one message, or fails with INVALID_ARGUMENT and a message; Check answers OK for every
// path outside luxdb.v1.LuxDB and, for LuxDB paths, never OK (no input holds a valid token)
// and always UNAUTHENTICATED with a message that never contains a token-like header value.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "auth/key.h"
#include "auth/token.h"
#include "server/call_authenticator.h"
#include "server/options.h"

namespace {

void Fail(const std::string& what) {
  std::fprintf(stderr, "invariant broken: %s\n", what.c_str());
  std::abort();
}

luxdb::auth::TokenVerifier& Verifier() {
  static luxdb::auth::TokenVerifier* verifier = [] {
    luxdb::auth::Key key;
    key.fill(7);
    return new luxdb::auth::TokenVerifier(key, {});
  }();
  return *verifier;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::vector<std::string> headers;
  std::string path = "/luxdb.v1.LuxDB/QueryIndex";
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    if (absl::ConsumePrefix(&line, "ENV ")) {
      const size_t eq = line.find('=');
      if (eq != absl::string_view::npos) {
        env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
      }
    } else if (absl::ConsumePrefix(&line, "HDR ")) {
      headers.emplace_back(line);
    } else if (absl::ConsumePrefix(&line, "PATH ")) {
      path = std::string(line);
    } else {
      args.emplace_back(line);
    }
  }

  bool help = false;
  absl::StatusOr<luxdb::server::Options> options = luxdb::server::ParseOptions(args, env, &help);
  if (options.ok()) {
    if (!help && options->data_dir.empty()) Fail("options accepted without a data directory");
    if (!help &&
        luxdb::server::TransportMemoryBytes(*options) < (uint64_t{options->max_message_mb} << 20)) {
      Fail("transport memory below one message");
    }
  } else if (options.status().code() != absl::StatusCode::kInvalidArgument ||
             options.status().message().empty()) {
    Fail("ParseOptions failed with " + options.status().ToString());
  }

  luxdb::server::CallAuthenticator authenticator(&Verifier());
  const std::vector<absl::string_view> views(headers.begin(), headers.end());
  const absl::Status verdict = authenticator.Check(path, views);
  if (!absl::StartsWith(path, "/luxdb.v1.LuxDB/")) {
    if (!verdict.ok()) Fail("a call outside luxdb.v1.LuxDB was refused: " + verdict.ToString());
  } else {
    if (verdict.ok()) Fail("a LuxDB call without a valid token was accepted");
    if (verdict.code() != absl::StatusCode::kUnauthenticated) {
      Fail("refusal is not UNAUTHENTICATED: " + verdict.ToString());
    }
    for (const std::string& header : headers) {
      // What looks like a token (base64url, 40 characters or more: real ones have 76) must
      // never be repeated. Other values can match the refusal's own fixed wording (the
      // fuzzer found "tion' headers; send exactly one 'Bearer <tok"), so they are not checked.
      absl::string_view token = header;
      absl::ConsumePrefix(&token, "Bearer ");
      const bool token_like =
          token.size() >= 40 && std::all_of(token.begin(), token.end(), [](char c) {
            return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
          });
      if (token_like && absl::StrContains(verdict.message(), token)) {
        Fail("the refusal repeats the header's token");
      }
    }
  }
  return 0;
}
