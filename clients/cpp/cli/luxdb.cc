// luxdb: the LuxDB command-line tool.
//
//   luxdb [--secret S | --secret-file F] token [--method M]
//
// prints a fresh call token for M ("/luxdb.v1.LuxDB/ListIndexes" or "luxdb.v1.LuxDB/ListIndexes";
// default "*", any method), for tools such as grpcurl:
//   grpcurl -H "authorization: Bearer $(luxdb token)" ...
// The secret comes from --secret, --secret-file (e.g. a server's data/secret) or LUXDB_SECRET;
// LUXDB_SALT and KDF_ITERATIONS must match the server's.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "auth/token.h"
#include "luxdb/connect.h"

namespace {

constexpr char kUsage[] =
    "usage: luxdb [--secret S | --secret-file F] token [--method M]\n"
    "  token   print a fresh call token (bound to method M, default any) for grpcurl:\n"
    "          grpcurl -H \"authorization: Bearer $(luxdb token)\" ...\n"
    "The secret comes from --secret, --secret-file or LUXDB_SECRET.\n";

int Fail(const std::string& message) {
  std::cerr << "luxdb: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  luxdb::client::ConnectOptions options;
  std::string command;
  std::string method = luxdb::auth::kAnyMethod;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--secret" || arg == "--secret-file" || arg == "--method") {
      const std::string* v = value();
      if (v == nullptr) return Fail(absl::StrCat(arg, " needs a value"));
      if (arg == "--secret") {
        options.secret = *v;
      } else if (arg == "--method") {
        method = *v;
      } else {
        std::ifstream in(*v);
        std::stringstream text;
        text << in.rdbuf();
        if (!in) return Fail(absl::StrCat("cannot read secret file '", *v, "'"));
        options.secret = std::string(absl::StripAsciiWhitespace(text.str()));
      }
    } else if (command.empty() && !absl::StartsWith(arg, "-")) {
      command = arg;
    } else {
      return Fail(absl::StrCat("unexpected argument '", arg, "'\n", kUsage));
    }
  }
  if (command != "token") {
    return Fail(command.empty() ? std::string("missing command\n") + kUsage
                                : absl::StrCat("unknown command '", command, "'\n", kUsage));
  }
  absl::StatusOr<luxdb::client::ConnectOptions> resolved = luxdb::client::WithEnvironment(options);
  if (!resolved.ok()) return Fail(std::string(resolved.status().message()));
  if (resolved->secret.empty()) {
    return Fail("no secret: use --secret, --secret-file or LUXDB_SECRET");
  }
  if (method != luxdb::auth::kAnyMethod && !absl::StartsWith(method, "/")) {
    method = "/" + method;  // grpcurl spells methods without the leading slash
  }
  absl::StatusOr<luxdb::auth::Key> key = luxdb::auth::DeriveKey(resolved->secret, resolved->kdf);
  if (!key.ok()) return Fail(std::string(key.status().message()));
  std::cout << luxdb::auth::MintToken(*key, method) << "\n";
  return 0;
}
