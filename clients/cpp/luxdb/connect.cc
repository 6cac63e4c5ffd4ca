#include "luxdb/connect.h"

#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "auth/secret_file.h"
#include "auth/token.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"

extern char** environ;

namespace luxdb::client {
namespace {

// Adds a token for the called method to every call's initial metadata.
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  TokenInterceptor(const auth::Key& key, grpc::experimental::ClientRpcInfo* info)
      : key_(key), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert(
          {auth::kAuthorizationHeader,
           absl::StrCat(auth::kBearerPrefix, auth::MintToken(key_, info_->method()))});
    }
    methods->Proceed();
  }

 private:
  const auth::Key& key_;
  grpc::experimental::ClientRpcInfo* const info_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const auth::Key& key) : key_(key) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new TokenInterceptor(key_, info);
  }

 private:
  const auth::Key key_;
};

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::NotFoundError(absl::StrCat("cannot read ", what, " '", path, "'"));
  }
  return text.str();
}

std::map<std::string, std::string> Environment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text(*entry);
    const size_t eq = text.find('=');
    // A variable set to the empty string counts as unset, as in the Python clients.
    if (eq != std::string::npos && eq + 1 < text.size()) {
      env.emplace(text.substr(0, eq), text.substr(eq + 1));
    }
  }
  return env;
}

absl::StatusOr<int> ParsePort(absl::string_view text, absl::string_view what, int min_port) {
  int port = 0;
  if (text.empty() || text[0] == '+' || text[0] == '-' || !absl::SimpleAtoi(text, &port) ||
      port < min_port || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " needs a port from ", min_port, " to 65535, got '", text, "'"));
  }
  return port;
}

}  // namespace

absl::StatusOr<std::pair<std::string, int>> ParseAddress(absl::string_view text,
                                                         absl::string_view what, int min_port) {
  absl::string_view host;
  absl::string_view port;
  if (absl::StartsWith(text, "[")) {  // [v6]:port
    const size_t close = text.find(']');
    if (close == absl::string_view::npos || text.substr(close + 1, 1) != ":") {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " must be HOST:PORT or [IPv6]:PORT, got '", text, "'"));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos || text.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " must be HOST:PORT or [IPv6]:PORT, got '", text, "'"));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no host: '", text, "'"));
  }
  absl::StatusOr<int> number = ParsePort(port, what, min_port);
  if (!number.ok()) {  // the whole address in the message, not only its port
    return absl::InvalidArgumentError(
        absl::StrCat(what, " needs a port from ", min_port, " to 65535, got '", text, "'"));
  }
  return std::make_pair(std::string(host), *number);
}

std::string JoinHostPort(absl::string_view host, int port) {
  if (host.find(':') != absl::string_view::npos && !absl::StartsWith(host, "[")) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

std::string Target(const ConnectOptions& options) {
  return JoinHostPort(options.host.empty() ? kDefaultHost : options.host,
                      options.port == 0 ? kDefaultPort : options.port);
}

namespace {

// AddressFromEnvironment with the environment already read.
absl::StatusOr<ConnectOptions> AddressFrom(const std::map<std::string, std::string>& env,
                                           ConnectOptions options) {
  const auto address = env.find("LUXDB_ADDRESS");
  const auto host = env.find("LUXDB_HOST");
  const auto port = env.find("LUXDB_PORT");
  if (address != env.end() && (host != env.end() || port != env.end())) {
    return absl::InvalidArgumentError(
        absl::StrCat("LUXDB_ADDRESS ('", address->second, "') and ",
                     host != env.end() ? absl::StrCat("LUXDB_HOST ('", host->second, "')")
                                       : absl::StrCat("LUXDB_PORT ('", port->second, "')"),
                     " contradict; set one"));
  }
  if (address != env.end()) {
    absl::StatusOr<std::pair<std::string, int>> parsed =
        ParseAddress(address->second, "LUXDB_ADDRESS");
    if (!parsed.ok()) return parsed.status();
    if (options.host.empty()) options.host = parsed->first;
    if (options.port == 0) options.port = parsed->second;
    return options;
  }
  if (host != env.end() && options.host.empty()) options.host = host->second;
  if (port != env.end() && options.port == 0) {
    absl::StatusOr<int> parsed = ParsePort(port->second, "LUXDB_PORT", 1);
    if (!parsed.ok()) return parsed.status();
    options.port = *parsed;
  }
  return options;
}

}  // namespace

absl::StatusOr<ConnectOptions> AddressFromEnvironment(ConnectOptions options) {
  return AddressFrom(Environment(), std::move(options));
}

absl::StatusOr<ConnectOptions> WithEnvironment(ConnectOptions options) {
  const std::map<std::string, std::string> env = Environment();
  absl::StatusOr<ConnectOptions> addressed = AddressFrom(env, std::move(options));
  if (!addressed.ok()) return addressed.status();
  options = *std::move(addressed);
  if (options.secret.empty()) {
    const auto secret = env.find("LUXDB_SECRET");
    const auto file = env.find("LUXDB_SECRET_FILE");
    if (secret != env.end() && file != env.end()) {
      return absl::InvalidArgumentError(absl::StrCat("LUXDB_SECRET and LUXDB_SECRET_FILE ('",
                                                     file->second, "') contradict; set one"));
    }
    if (secret != env.end()) {
      options.secret = secret->second;
    } else if (file != env.end()) {
      absl::StatusOr<std::string> read = auth::ReadSecretFile(file->second);
      if (!read.ok()) {
        return absl::Status(read.status().code(),
                            absl::StrCat("LUXDB_SECRET_FILE: ", read.status().message()));
      }
      options.secret = *std::move(read);
    }
  }
  absl::StatusOr<auth::KdfParams> kdf = auth::KdfParamsFromEnvironment(env);
  if (!kdf.ok()) return kdf.status();
  if (env.contains("LUXDB_SALT") || env.contains("LUXBD_SALT")) options.kdf.salt = kdf->salt;
  if (env.contains("KDF_ITERATIONS")) options.kdf.iterations = kdf->iterations;
  return options;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadFile(options.tls_ca_file, "TLS CA file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(options.tls_cert_file, "TLS certificate");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(options.tls_key_file, "TLS key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  const std::string target = Target(options);
  if (options.insecure && options.secret.empty()) {
    return grpc::CreateCustomChannel(target, credentials, args);
  }
  if (options.secret.empty()) {
    return absl::InvalidArgumentError(
        "no secret: pass the server's secret (--secret, --secret-file, LUXDB_SECRET or "
        "LUXDB_SECRET_FILE), or use --insecure for a server run with --insecure");
  }
  absl::StatusOr<auth::Key> key = auth::DeriveKey(options.secret, options.kdf);
  if (!key.ok()) return key.status();
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<TokenInterceptorFactory>(*key));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, args,
                                                                 std::move(creators));
}

}  // namespace luxdb::client
