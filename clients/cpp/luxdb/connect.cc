#include "luxdb/connect.h"

#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
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

}  // namespace

absl::StatusOr<ConnectOptions> WithEnvironment(ConnectOptions options) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text(*entry);
    const size_t eq = text.find('=');
    if (eq != std::string::npos) env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  if (options.secret.empty() && env.contains("LUXDB_SECRET")) {
    options.secret = env["LUXDB_SECRET"];
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
  const std::string target = options.host.find(':') != std::string::npos
                                 ? absl::StrCat("[", options.host, "]:", options.port)
                                 : absl::StrCat(options.host, ":", options.port);
  if (options.insecure && options.secret.empty()) {
    return grpc::CreateCustomChannel(target, credentials, args);
  }
  if (options.secret.empty()) {
    return absl::InvalidArgumentError(
        "no secret: pass the server's secret (--secret or LUXDB_SECRET), or use --insecure for "
        "a server run with --insecure");
  }
  absl::StatusOr<auth::Key> key = auth::DeriveKey(options.secret, options.kdf);
  if (!key.ok()) return key.status();
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<TokenInterceptorFactory>(*key));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, args,
                                                                 std::move(creators));
}

}  // namespace luxdb::client
