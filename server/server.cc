#include "server/server.h"

#include <malloc.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "auth/secret_file.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "luxdb/connect_options.h"
#include "server/health_service.h"
#include "server/logging.h"
#include "server/memory_trimmer.h"
#include "spdlog/spdlog.h"

namespace luxdb::server {
namespace {

constexpr char kServiceName[] = "luxdb.v1.LuxDB";

}  // namespace

LuxServer::LuxServer(const Options& options) : options_(options) {}

absl::Status LuxServer::SetUpAuthentication() {
  if (options_.insecure) {
    spdlog::warn(
        "--insecure: calls are not authenticated; anyone who can reach {} can read, change "
        "and delete every index",
        // Port 0 is picked later ("listening on" names it).
        options_.port == 0 ? options_.host : client::JoinHostPort(options_.host, options_.port));
    return absl::OkStatus();
  }
  std::string secret = options_.secret;
  if (options_.secret_on_command_line) {
    spdlog::warn(
        "--secret on the command line is visible to every local user in the process list (ps); "
        "use LUXDB_SECRET or --secret-file instead");
  }
  if (!options_.secret_file.empty()) {
    absl::StatusOr<std::string> from_file = auth::ReadSecretFile(options_.secret_file);
    if (!from_file.ok()) return from_file.status();
    secret = *std::move(from_file);
  } else if (secret.empty()) {
    absl::StatusOr<auth::SecretFile> file = auth::LoadOrCreateSecret(options_.data_dir);
    if (!file.ok()) return file.status();
    if (file->created) {
      spdlog::warn(
          "no secret configured: generated one in {} (mode 0600); clients need it, "
          "e.g. LUXDB_SECRET=$(cat {})",
          file->path, file->path);
    } else {
      spdlog::info("using the secret in {}", file->path);
    }
    secret = std::move(file->secret);
  }
  peer_secret_ = secret;
  absl::StatusOr<auth::Key> key = auth::DeriveKey(secret, options_.kdf);
  if (!key.ok()) return key.status();
  verifier_ = std::make_unique<auth::TokenVerifier>(
      *key, auth::TokenVerifier::Options{.ttl = options_.token_ttl});
  CallAuthenticator::RefusalObserver on_refusal;
  if (observer_->active()) {
    on_refusal = [observer = observer_.get()](absl::string_view path, const absl::Status& refusal) {
      observer->RecordRefusal(path, refusal);
    };
  }
  authenticator_ = std::make_shared<CallAuthenticator>(verifier_.get(), std::move(on_refusal));
  return absl::OkStatus();
}

namespace {

// Plaintext, TLS, or TLS requiring client certificates, from the --tls-* flags; with
// `authenticator` (null: --insecure), every LuxDB call's token is checked as its headers arrive.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const Options& options, std::shared_ptr<CallAuthenticator> authenticator) {
  if (options.tls_cert.empty()) {
    if (authenticator == nullptr) return grpc::InsecureServerCredentials();
    return CredentialsCheckingTokens(nullptr, std::move(authenticator));
  }
  auto read = [](const std::string& path) -> absl::StatusOr<std::string> {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in || text.str().empty()) {
      return absl::FailedPreconditionError(absl::StrCat("cannot read PEM file '", path, "'"));
    }
    return text.str();
  };
  grpc::SslServerCredentialsOptions ssl;
  absl::StatusOr<std::string> cert = read(options.tls_cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = read(options.tls_key);
  if (!key.ok()) return key.status();
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!options.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca = read(options.tls_client_ca);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  std::shared_ptr<grpc::ServerCredentials> tls = grpc::SslServerCredentials(ssl);
  if (authenticator == nullptr) return tls;
  return CredentialsCheckingTokens(std::move(tls), std::move(authenticator));
}

constexpr char kUnknownListenFailure[] = "unknown reason";

// Why nothing could listen on host:port, found by binding a socket there ourselves (gRPC only
// says that it failed): "address in use" when another process holds the port.
std::string ListenFailure(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int e = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); e != 0) {
    return absl::StrCat("cannot resolve '", host, "': ", gai_strerror(e));
  }
  std::string reason = kUnknownListenFailure;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));  // as gRPC does
    const bool bound = bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1) == 0;
    const int error = errno;
    close(fd);
    if (!bound) {
      reason = error == EADDRINUSE ? "address in use (is another luxdb-server running there?)"
                                   : std::strerror(error);
      break;
    }
  }
  freeaddrinfo(found);
  return reason;
}

// `host` as a numeric IPv4 address (a name resolved to its first one): the metrics endpoint's
// HTTP server (Debian's civetweb, built without IPv6) takes those only.
absl::StatusOr<std::string> NumericIpv4Host(const std::string& host) {
  if (host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        "the metrics endpoint listens on IPv4 addresses only (Debian's civetweb HTTP server has "
        "no IPv6); give 127.0.0.1, 0.0.0.0 or another IPv4 address");
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (const int e = getaddrinfo(host.c_str(), nullptr, &hints, &found); e != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve it: ", gai_strerror(e)));
  }
  char numeric[NI_MAXHOST] = {};
  const int e = getnameinfo(found->ai_addr, found->ai_addrlen, numeric, sizeof(numeric), nullptr, 0,
                            NI_NUMERICHOST);
  freeaddrinfo(found);
  if (e != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve it: ", gai_strerror(e)));
  }
  return std::string(numeric);
}

// Timeouts that keep a connection from holding the server's memory and threads for ever, and
// one server per port (README "Limits").
void SetTransportLimits(const Options& options, grpc::ServerBuilder* builder) {
  constexpr int kMsPerSecond = 1000;
  constexpr int kKeepaliveTimeoutMs = 20'000;
  constexpr uint32_t kAgeGraceSecondsWithoutCallLimit = 300;
  auto ms = [](uint32_t seconds) {
    return static_cast<int>(std::min<int64_t>(int64_t{seconds} * kMsPerSecond, INT32_MAX));
  };
  // gRPC lets a second process bind a port this one listens on (SO_REUSEPORT), and the kernel
  // then splits clients between two databases; without it, the second server fails to start.
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder->AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                              ms(options.handshake_timeout_seconds));
  if (options.max_connection_idle_seconds != 0) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                                ms(options.max_connection_idle_seconds));
  }
  if (options.max_connection_age_seconds != 0) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                                ms(options.max_connection_age_seconds));
    builder->AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
        ms(options.max_call_seconds != 0 ? options.max_call_seconds
                                         : kAgeGraceSecondsWithoutCallLimit));
  }
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(options.keepalive_seconds));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
}

}  // namespace

absl::Status LuxServer::SetUpObservation() {
  request_log_ = std::make_unique<RequestLog>(RequestLogger(), options_.log_format);
  if (options_.metrics_port != 0) metrics_ = std::make_unique<ServerMetrics>();
  observer_ = std::make_unique<CallObserver>(metrics_.get(), request_log_.get(),
                                             /*parsed_requests=*/!options_.cluster_etcd.empty());
  if (metrics_ == nullptr) return absl::OkStatus();
  const std::string address = client::JoinHostPort(options_.metrics_host, options_.metrics_port);
  absl::StatusOr<std::string> numeric = NumericIpv4Host(options_.metrics_host);
  if (!numeric.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-host '", options_.metrics_host, "': ", numeric.status().message()));
  }
  if (absl::Status served = metrics_->Serve(*numeric, options_.metrics_port); !served.ok()) {
    std::string reason = ListenFailure(options_.metrics_host, options_.metrics_port);
    if (reason == kUnknownListenFailure) reason = std::string(served.message());
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address,
                                               " (--metrics-port, --metrics-host): ", reason));
  }
  spdlog::info("serving metrics on http://{}/metrics", address);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LuxServer>> LuxServer::Start(const Options& options) {
  const uint64_t max_message_bytes = uint64_t{options.max_message_mb} << 20;
  std::unique_ptr<LuxServer> server(new LuxServer(options));
  if (absl::Status s = server->SetUpObservation(); !s.ok()) return s;
  if (absl::Status s = server->SetUpAuthentication(); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeCredentials(options, server->authenticator_);
  if (!credentials.ok()) return credentials.status();
  server->service_ =
      std::make_unique<LuxDBService>(max_message_bytes, options.data_dir, options.backup_dir);

  // Our own health service, NOT_SERVING until the indexes are loaded (gRPC's built-in one
  // would say SERVING as soon as the port opens).
  server->health_ = std::make_unique<HealthService>(kServiceName);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = client::JoinHostPort(options.host, options.port);
  builder.AddListeningPort(address, *credentials, &server->port_);
  // Requests up to twice the cap reach the handlers, which refuse those above it with a
  // message naming the cap and a batch size that fits (gRPC's own refusal names neither).
  constexpr uint64_t kGrpcMessageLimit = uint64_t{2047} << 20;
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min(2 * max_message_bytes, kGrpcMessageLimit)));
  builder.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  // --max-concurrent-calls: the service refuses calls beyond it with a message naming the flag;
  // a connection may not open more streams than that, and gRPC's sync server may not start
  // more threads than it allows plus room for health checks, reflection and gRPC's pollers.
  server->service_->SetCallLimits(options.max_concurrent_calls,
                                  std::chrono::seconds(options.max_call_seconds));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(options.max_concurrent_calls));
  constexpr int kSpareThreads = 64;
  grpc::ResourceQuota quota("luxdb");
  quota.SetMaxThreads(static_cast<int>(options.max_concurrent_calls) + kSpareThreads);
  quota.Resize(TransportMemoryBytes(options));
  builder.SetResourceQuota(quota);
  SetTransportLimits(options, &builder);
  if (options.cluster_etcd.empty()) {
    builder.RegisterService(server->service_.get());
  } else {
    server->cluster_service_ = std::make_unique<ClusterService>(server->service_.get());
    builder.RegisterService(server->cluster_service_.get());
  }
  builder.RegisterService(server->health_.get());
  if (server->observer_->active()) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(server->observer_->InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ",
                                               ListenFailure(options.host, options.port)));
  }
  spdlog::info("listening on {}", client::JoinHostPort(options.host, server->port_));
  if (server->cluster_service_ != nullptr) {
    if (absl::Status joined = server->JoinCluster(); !joined.ok()) return joined;
  }
  constexpr auto kTrimPeriod = std::chrono::seconds(1);
  constexpr size_t kTrimAboveBytes = size_t{16} << 20;
  server->trimmer_ = std::make_unique<MemoryTrimmer>(kTrimPeriod, kTrimAboveBytes);
  server->loader_ = std::thread([s = server.get()] { s->Load(); });
  return server;
}

absl::Status LuxServer::JoinCluster() {
  absl::StatusOr<std::vector<std::string>> endpoints =
      cluster::EtcdClient::ParseEndpoints(options_.cluster_etcd);
  if (!endpoints.ok()) return endpoints.status();
  char hostname[256] = {};
  if (gethostname(hostname, sizeof(hostname) - 1) != 0) hostname[0] = '\0';
  cluster::ClusterOptions c;
  c.etcd_endpoints = *std::move(endpoints);
  c.node_id = options_.node_id.empty() ? std::string(hostname) : options_.node_id;
  c.write_quorum = options_.write_quorum;
  if (!options_.advertise.empty()) {
    c.advertise = options_.advertise;
  } else {
    const bool every_interface = options_.host == "0.0.0.0" || options_.host == "::";
    c.advertise = client::JoinHostPort(every_interface ? hostname : options_.host, port_);
  }
  if (c.node_id.empty()) {
    return absl::InvalidArgumentError("--node-id is needed: this machine has no host name");
  }
  c.peer.secret = peer_secret_;
  c.peer.insecure = options_.insecure;
  c.peer.kdf = options_.kdf;
  c.peer.max_message_bytes = static_cast<int>(
      std::min<uint64_t>(uint64_t{options_.max_message_mb} << 21, uint64_t{2047} << 20));
  // etcd may still be starting (pods start together), and a node restarted after a crash
  // finds its old record until that lease expires (ClusterOptions::lease_ttl): both pass.
  constexpr auto kJoinPatience = std::chrono::seconds(60);
  const auto give_up = std::chrono::steady_clock::now() + kJoinPatience;
  auto pause = std::chrono::milliseconds(250);
  absl::StatusOr<std::unique_ptr<cluster::Cluster>> joined = cluster::Cluster::Join(c);
  while (!joined.ok() && std::chrono::steady_clock::now() + pause < give_up &&
         (joined.status().code() == absl::StatusCode::kUnavailable ||
          joined.status().code() == absl::StatusCode::kDeadlineExceeded ||
          joined.status().code() == absl::StatusCode::kAlreadyExists)) {
    spdlog::warn("cannot join the cluster yet ({}); trying again in {} ms",
                 joined.status().ToString(), pause.count());
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(2 * pause, std::chrono::seconds(4));
    joined = cluster::Cluster::Join(c);
  }
  if (!joined.ok()) {
    return absl::Status(joined.status().code(),
                        absl::StrCat("cannot join the cluster (--cluster-etcd ",
                                     options_.cluster_etcd, "): ", joined.status().message()));
  }
  cluster_ = *std::move(joined);
  cluster_service_->AttachCluster(cluster_.get());
  return absl::OkStatus();
}

void LuxServer::Load() {
  engine::Catalog::Options catalog_options;
  catalog_options.threads = options_.threads;
  catalog_options.snapshot_every = options_.snapshot_every;
  catalog_options.sync = options_.sync;
  catalog_options.memory_budget_bytes = uint64_t{options_.memory_budget_mb} << 20;
  catalog_options.compact_threshold = options_.compact_threshold;
  catalog_options.attribute_limits = {.max_keys = options_.max_attribute_keys,
                                      .max_key_bytes = options_.max_attribute_key_bytes,
                                      .max_string_bytes = options_.max_attribute_string_bytes,
                                      .max_values = options_.max_attribute_values};
  // While indexes load, glibc keeps up to 64 MiB of free heap top instead of giving back all
  // above 128 KiB at once: hnswlib's loader allocates 2.5 MiB of update locks for every graph,
  // which HnswGraph then shrinks, and with the default every index page-faulted them in afresh
  // (loading 10,000 indexes took 3.7-25 s, 1.5-2 s with this). Only while loading: a higher
  // threshold keeps the tops of per-thread heaps resident, which malloc_trim does not return.
  const bool tune_trim = !MallocTunableSet("malloc.trim_threshold");
  constexpr int kLoadingTrimThresholdBytes = 64 << 20;
  constexpr int kGlibcDefaultTrimThresholdBytes = 128 << 10;
  if (tune_trim) mallopt(M_TRIM_THRESHOLD, kLoadingTrimThresholdBytes);
  absl::StatusOr<std::unique_ptr<engine::Catalog>> opened =
      engine::Catalog::Open(options_.data_dir, catalog_options);
  if (opened.ok() && cluster_ != nullptr) {
    // Its shards are known now: it may lead those it holds, and leaves the in-sync sets of
    // those its data directory lost before it answers calls about them.
    cluster_->StartLeading([catalog = opened->get()](const std::string& local_name) {
      return catalog->Exists(local_name);
    });
  }
  engine::Catalog* catalog = nullptr;
  bool shutting_down = false;
  {
    std::lock_guard lock(mu_);
    loaded_ = true;
    loaded_changed_.notify_all();
    if (!opened.ok()) {
      if (tune_trim) mallopt(M_TRIM_THRESHOLD, kGlibcDefaultTrimThresholdBytes);
      load_status_ = opened.status();
      spdlog::critical("cannot open data directory '{}': {}", options_.data_dir,
                       opened.status().ToString());
      return;
    }
    catalog_ = *std::move(opened);
    catalog = catalog_.get();  // valid until Shutdown, which joins this thread first
    // Calls are answered from now on: those on an index still loading get UNAVAILABLE.
    shutting_down = shut_down_;
    if (!shutting_down) {
      service_->AttachCatalog(catalog);
      if (metrics_ != nullptr) metrics_->AttachCatalog(catalog);
    }
  }
  if (shutting_down) {  // began while storage was opening: do not load what nobody will use
    catalog->StopLoading();
    if (tune_trim) mallopt(M_TRIM_THRESHOLD, kGlibcDefaultTrimThresholdBytes);
    return;
  }
  spdlog::info("answering calls for '{}' while its {} indexes load", options_.data_dir,
               catalog->List().size());
  catalog->WaitUntilLoaded();  // Shutdown stops the loads first
  if (tune_trim) mallopt(M_TRIM_THRESHOLD, kGlibcDefaultTrimThresholdBytes);
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  // Readiness: SERVING once every index has loaded (or failed to).
  health_->SetServing(true);
  ready_ = true;
  loaded_changed_.notify_all();
  // Once every index has loaded (tests/python/test_crash.py waits for this line).
  spdlog::info("serving {} indexes from '{}'", catalog->List().size(), options_.data_dir);
}

absl::Status LuxServer::WaitUntilLoaded() {
  std::unique_lock lock(mu_);
  loaded_changed_.wait(lock, [this] { return loaded_; });
  return load_status_;
}

absl::Status LuxServer::WaitUntilReady() {
  std::unique_lock lock(mu_);
  loaded_changed_.wait(lock, [this] { return ready_ || shut_down_ || !load_status_.ok(); });
  if (!load_status_.ok() || ready_) return load_status_;
  return absl::UnavailableError("the server began shutting down before its indexes loaded");
}

absl::Status LuxServer::Shutdown(std::chrono::milliseconds grace) {
  engine::Catalog* loading = nullptr;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return absl::OkStatus();
    shut_down_ = true;
    loaded_changed_.notify_all();
    loading = catalog_.get();  // null while storage is opening: Load then stops itself
  }
  // Loads still running give up between items (their indexes load again at the next start)
  // rather than hold the shutdown up.
  if (loading != nullptr) loading->StopLoading();
  if (server_ != nullptr) {  // null when Start failed before building it
    health_->Shutdown();
    service_->EndStreams();
    // gRPC cancels the calls still running at the deadline, but a handler inserting a large
    // batch would go on; the catalog makes it stop between items then.
    const auto deadline = std::chrono::system_clock::now() + grace;
    std::mutex drained_mu;
    std::condition_variable drained_cv;
    bool drained = false;
    std::thread aborter([&] {
      std::unique_lock lock(drained_mu);
      if (drained_cv.wait_until(lock, deadline, [&] { return drained; })) return;
      spdlog::warn("grace period of {} ms over: stopping the calls still running", grace.count());
      std::lock_guard catalog_lock(mu_);
      if (catalog_ != nullptr) catalog_->AbortWork();
    });
    server_->Shutdown(deadline);
    server_->Wait();
    // No call of this node routes through the cluster any more.
    if (cluster_service_ != nullptr) cluster_service_->AttachCluster(nullptr);
    {
      std::lock_guard lock(drained_mu);
      drained = true;
    }
    drained_cv.notify_one();
    aborter.join();
  }
  if (loader_.joinable()) loader_.join();
  // Leaves the cluster: after the loader, which may have called StartLeading.
  cluster_.reset();
  std::lock_guard lock(mu_);
  if (catalog_ == nullptr) return load_status_;
  if (metrics_ != nullptr) metrics_->AttachCatalog(nullptr);
  absl::Status closed = catalog_->Close();
  service_->AttachCatalog(nullptr);
  catalog_.reset();
  return closed;
}

LuxServer::~LuxServer() {
  if (absl::Status s = Shutdown(std::chrono::milliseconds(0)); !s.ok()) {
    spdlog::error("shutdown: {}", s.ToString());
  }
}

}  // namespace luxdb::server
