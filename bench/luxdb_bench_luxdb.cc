// LuxDB through its gRPC API with auth on: the server process the bench starts (or one at
// --address), channels that sign every call like luxdb::Client's, and the workloads.
//
// The bench calls the generated stub directly rather than luxdb::Client so that it controls
// the channel per client (own TCP connection or shared) and reuses request objects; the calls,
// tokens and messages on the wire are the same as luxdb::Client's.
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "auth/key.h"
#include "auth/token.h"
#include "bench/luxdb_bench.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"
#include "harness/server_process.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

extern char** environ;

namespace luxdb::bench {
namespace {

using Stub = v1::LuxDB::Stub;

constexpr auto kCallTimeout = std::chrono::minutes(10);
constexpr int kMaxMessageBytes = 256 << 20;  // the server's default cap

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return context;
}

// ---------------------------------------------------------------------------------------------
// Signed channels: every call carries a fresh token bound to its method (as luxdb::Client).

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

// `own_connection`: a private subchannel pool, so this channel opens its own TCP connection
// instead of sharing the one gRPC would reuse for every channel to the same target.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const auth::Key& key,
                                           bool own_connection) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<TokenInterceptorFactory>(key));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      target, grpc::InsecureChannelCredentials(), args, std::move(creators));
}

// Hands out channels: one per client, or the same one to all.
class Channels {
 public:
  Channels(std::string target, auth::Key key, bool shared)
      : target_(std::move(target)), key_(key), shared_(shared) {}
  std::shared_ptr<grpc::Channel> Get() {
    if (!shared_) return MakeChannel(target_, key_, true);
    std::lock_guard lock(mu_);
    if (channel_ == nullptr) channel_ = MakeChannel(target_, key_, false);
    return channel_;
  }

 private:
  const std::string target_;
  const auth::Key key_;
  const bool shared_;
  std::mutex mu_;
  std::shared_ptr<grpc::Channel> channel_;
};

std::string FileSystemType(const std::string& path) {
  struct statfs info;
  if (statfs(path.c_str(), &info) != 0) return "unknown";
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x01021994:
      return "tmpfs (fsync is free: durability cost NOT measured)";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794c7630:
      return "overlayfs";
    default:
      return absl::StrCat("type 0x", absl::Hex(info.f_type));
  }
}

}  // namespace

struct LuxdbSide::Impl {
  Impl(const Config& config, const Dataset& data, const GroundTruth& truth)
      : config(config), data(data), truth(truth) {}

  absl::Status CreateIndex(const std::string& name);
  absl::Status DeleteIndex(const std::string& name);

  const Config& config;
  const Dataset& data;
  const GroundTruth& truth;
  std::unique_ptr<harness::ServerProcess> server;
  std::string server_name;  // path or address
  std::string temp_dir;
  std::string data_dir;
  std::string data_fs;
  pid_t server_pid = 0;
  std::unique_ptr<Channels> channels;
  int indexes_created = 0;
  std::string kept;    // the index queries run on
  std::string target;  // host:port of the server
  std::string secret;
  bool own_server = false;  // started by the bench, with the default KDF parameters
};

LuxdbSide::LuxdbSide(const Config& config, const Dataset& data, const GroundTruth& truth)
    : impl_(std::make_unique<Impl>(config, data, truth)) {}

LuxdbSide::~LuxdbSide() {
  if (absl::Status s = Stop(); !s.ok()) std::cerr << "luxdb-bench: " << s.message() << "\n";
}

pid_t LuxdbSide::server_pid() const { return impl_->server_pid; }
const std::string& LuxdbSide::server() const { return impl_->server_name; }
const std::string& LuxdbSide::data_dir() const { return impl_->data_dir; }
const std::string& LuxdbSide::data_fs() const { return impl_->data_fs; }

absl::Status LuxdbSide::Start() {
  const Config& config = impl_->config;
  std::string target = config.address;
  std::string secret = config.secret;
  auth::KdfParams kdf;
  if (config.address.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    const std::string parent =
        !config.work_dir.empty() ? config.work_dir : (tmpdir != nullptr ? tmpdir : "/tmp");
    std::string pattern = parent + "/luxdb-bench-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::ErrnoToStatus(errno,
                                 absl::StrCat("cannot create a directory in '", parent, "'"));
    }
    impl_->temp_dir = pattern;
    impl_->data_dir = pattern + "/data";
    impl_->data_fs = FileSystemType(pattern);
    impl_->server_name = config.server_path;
    secret = harness::RandomSecret();
    std::cerr << "[luxdb] starting " << config.server_path << " on " << impl_->data_dir << " ("
              << impl_->data_fs << ")..." << std::endl;
    harness::ServerProcessOptions options;
    options.binary = config.server_path;
    options.data_dir = impl_->data_dir;
    options.secret = secret;
    options.log_path = pattern + "/server.log";
    options.threads = config.threads;
    impl_->server = std::make_unique<harness::ServerProcess>(std::move(options));
    if (absl::Status s = impl_->server->Start(); !s.ok()) return s;
    target = absl::StrCat("127.0.0.1:", impl_->server->port());
    impl_->server_pid = impl_->server->pid();
  } else {
    impl_->server_name = config.address;
    impl_->server_pid = config.server_pid;
    std::map<std::string, std::string> env;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      absl::string_view text(*entry);
      const size_t eq = text.find('=');
      if (eq != absl::string_view::npos) env.emplace(text.substr(0, eq), text.substr(eq + 1));
    }
    absl::StatusOr<auth::KdfParams> from_env = auth::KdfParamsFromEnvironment(env);
    if (!from_env.ok()) return from_env.status();
    kdf = *from_env;
    if (secret.empty() && env.contains("LUXDB_SECRET")) secret = env["LUXDB_SECRET"];
    if (secret.empty()) {
      return absl::InvalidArgumentError("--address needs --secret or LUXDB_SECRET");
    }
  }
  impl_->target = target;
  impl_->secret = secret;
  impl_->own_server = config.address.empty();
  absl::StatusOr<auth::Key> key = auth::DeriveKey(secret, kdf);
  if (!key.ok()) return key.status();
  impl_->channels = std::make_unique<Channels>(target, *key, config.shared_channel);
  return absl::OkStatus();
}

absl::Status LuxdbSide::Stop() {
  absl::Status stopped = absl::OkStatus();
  if (impl_->server != nullptr && impl_->server->running()) {
    stopped = impl_->server->Stop();
    if (stopped.ok()) {
      // Warnings and errors it logged (it runs at --loglevel warning) are worth seeing.
      if (const std::string log = impl_->server->LogFrom(0); !log.empty()) {
        std::cerr << "[luxdb] server output:\n" << log;
      }
    }
  }
  impl_->server_pid = 0;
  if (!impl_->temp_dir.empty() && !impl_->config.keep_data) {
    std::error_code error;
    std::filesystem::remove_all(impl_->temp_dir, error);
    impl_->temp_dir.clear();
  }
  return stopped;
}

absl::Status LuxdbSide::Impl::CreateIndex(const std::string& name) {
  Stub stub(channels->Get());
  v1::CreateIndexRequest create;
  create.set_name(name);
  create.set_space(v1::L2);
  create.set_dim(static_cast<uint32_t>(data.dim));
  v1::CreateIndexResponse created;
  if (absl::Status s = FromGrpc(stub.CreateIndex(Context().get(), create, &created), "CreateIndex");
      !s.ok()) {
    return s;
  }
  v1::InitIndexRequest init;
  init.set_name(name);
  init.set_max_elements(data.n);
  init.set_ef_construction(config.ef_construction);
  init.set_m(config.m);
  init.set_random_seed(100);  // hnswlib's default, as the in-process side uses
  v1::InitIndexResponse initialised;
  return FromGrpc(stub.InitIndex(Context().get(), init, &initialised), "InitIndex");
}

absl::Status LuxdbSide::Impl::DeleteIndex(const std::string& name) {
  Stub stub(channels->Get());
  v1::DeleteIndexRequest request;
  request.set_name(name);
  v1::DeleteIndexResponse response;
  return FromGrpc(stub.DeleteIndex(Context().get(), request, &response), "DeleteIndex");
}

absl::StatusOr<std::map<std::string, double>> LuxdbSide::PythonClients() {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  if (impl_->kept.empty()) return absl::FailedPreconditionError("no index is kept for Python");
  const char* tmpdir = std::getenv("TMPDIR");
  const std::string dir = !impl_->temp_dir.empty()   ? impl_->temp_dir
                          : !config.work_dir.empty() ? config.work_dir
                          : tmpdir != nullptr        ? tmpdir
                                                     : "/tmp";
  const std::string stem = absl::StrCat(dir, "/luxdb-bench-python-", getpid());
  const std::string queries_path = stem + ".f32";
  const std::string figures_path = stem + ".txt";
  struct Cleanup {
    std::vector<std::string> paths;
    ~Cleanup() {
      std::error_code error;
      for (const std::string& path : paths) std::filesystem::remove(path, error);
    }
  } cleanup{{queries_path, figures_path}};
  {
    std::ofstream out(queries_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.queries.data()),
              static_cast<std::streamsize>(data.queries.size() * sizeof(float)));
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", queries_path));
  }
  std::vector<std::string> args = {"/usr/bin/python3",
                                   config.python_script,
                                   "--address",
                                   impl_->target,
                                   "--index",
                                   impl_->kept,
                                   "--queries",
                                   queries_path,
                                   "--dim",
                                   std::to_string(data.dim),
                                   "--k",
                                   std::to_string(config.k),
                                   "--ef",
                                   std::to_string(config.single_ef),
                                   "--duration",
                                   absl::StrCat(std::max(1.0, config.duration_s / 2)),
                                   "--repeats",
                                   std::to_string(config.repeats)};
  // The secret goes through the environment, not the command line; KDF parameters of ours
  // would not be the server's it started with the defaults.
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("LUXDB_SECRET=") || text.starts_with("PYTHONPATH=")) continue;
    if (impl_->own_server && (text.starts_with("KDF_ITERATIONS=") ||
                              text.starts_with("LUXDB_SALT=") || text.starts_with("LUXBD_SALT="))) {
      continue;
    }
    env.emplace_back(text);
  }
  env.push_back("LUXDB_SECRET=" + impl_->secret);
  env.push_back("PYTHONPATH=" + config.python_path);
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int out = open(figures_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", figures_path));
  const pid_t child = fork();
  if (child == 0) {
    dup2(out, STDOUT_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(out);
  if (child < 0) return absl::ErrnoToStatus(errno, "fork");
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat(config.python_script, " failed (",
                     WIFEXITED(status) ? absl::StrCat("exit status ", WEXITSTATUS(status))
                                       : absl::StrCat("signal ", WTERMSIG(status)),
                     "; its messages are above; --no-python skips the Python rows)"));
  }
  std::map<std::string, double> figures;
  std::ifstream in(figures_path);
  for (std::string line; std::getline(in, line);) {
    const size_t space = line.find(' ');
    double value = 0;
    if (space == std::string::npos || !absl::SimpleAtod(line.substr(space + 1), &value)) {
      return absl::InternalError(
          absl::StrCat(config.python_script, " printed '", line, "', not '<name> <value>'"));
    }
    figures[line.substr(0, space)] = value;
  }
  return figures;
}

absl::Status LuxdbSide::DropKept() {
  if (impl_->kept.empty()) return absl::OkStatus();
  absl::Status s = impl_->DeleteIndex(impl_->kept);
  impl_->kept.clear();
  return s;
}

absl::StatusOr<IngestResult> LuxdbSide::Ingest(int clients, bool keep) {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  const std::string name = absl::StrCat("luxdb-bench-", getpid(), "-", ++impl_->indexes_created);
  if (absl::Status s = impl_->CreateIndex(name); !s.ok()) return s;
  const size_t batches = (data.n + config.ingest_batch - 1) / config.ingest_batch;
  std::vector<absl::Status> errors(clients);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < clients; ++c) channels.push_back(impl_->channels->Get());
  const PhaseMeter meter(impl_->server_pid);
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Stub stub(channels[c]);
      v1::AddItemsRequest request;
      v1::AddItemsResponse response;
      request.set_name(name);
      for (size_t b = c; b < batches; b += clients) {
        const size_t first = b * config.ingest_batch;
        const size_t last = std::min(first + config.ingest_batch, data.n);
        request.clear_vectors();
        request.clear_ids();
        request.mutable_vectors()->Add(data.base.begin() + first * data.dim,
                                       data.base.begin() + last * data.dim);
        for (size_t id = first; id < last; ++id) request.add_ids(id);
        absl::Status s = FromGrpc(stub.AddItems(Context().get(), request, &response),
                                  absl::StrCat("AddItems of vectors ", first, "..", last - 1));
        if (s.ok() && response.added() != last - first) {
          s = absl::InternalError(
              absl::StrCat("AddItems added ", response.added(), " of ", last - first));
        }
        if (!s.ok()) {
          errors[c] = s;
          return;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  IngestResult result{.vectors = data.n, .seconds = SecondsSince(start), .clients = clients};
  meter.Fill(&result);
  for (const absl::Status& s : errors) {
    if (!s.ok()) return s;
  }
  if (keep) {
    if (absl::Status s = DropKept(); !s.ok()) return s;
    impl_->kept = name;
  } else if (absl::Status s = impl_->DeleteIndex(name); !s.ok()) {
    return s;
  }
  return result;
}

absl::StatusOr<BatchQueryResult> LuxdbSide::BatchQuery(uint32_t ef) {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  const size_t k = config.k;
  // The queries in config.batch_calls contiguous parts (more if a part would exceed
  // config.max_request_bytes), sent on one channel by config.batch_in_flight threads (all parts
  // at once if 0), each taking the next part when its call returns.
  const size_t cap_rows =
      std::max<size_t>(1, config.max_request_bytes / (data.dim * sizeof(float) + 16));
  const size_t parts = std::max<size_t>(config.batch_calls, (data.nq + cap_rows - 1) / cap_rows);
  const size_t rows_per_call = (data.nq + parts - 1) / parts;
  std::shared_ptr<grpc::Channel> channel = impl_->channels->Get();
  std::vector<uint64_t> ids(data.nq * k);
  const size_t senders_wanted =
      config.batch_in_flight == 0 ? parts : std::min(parts, config.batch_in_flight);
  std::vector<absl::Status> errors(senders_wanted);
  std::atomic<size_t> next_part{0};
  BatchQueryResult result{.ef = ef,
                          .queries = data.nq,
                          .calls = static_cast<int>(parts),
                          .in_flight = static_cast<int>(senders_wanted)};
  const PhaseMeter meter(impl_->server_pid);
  const Clock::time_point start = Clock::now();
  auto send = [&](size_t sender) {
    Stub stub(channel);
    for (size_t part; (part = next_part.fetch_add(1)) < parts;) {
      const size_t first = part * rows_per_call;
      const size_t last = std::min(first + rows_per_call, data.nq);
      if (first >= last) continue;
      v1::QueryIndexRequest request;
      request.set_name(impl_->kept);
      request.set_k(static_cast<uint32_t>(k));
      request.set_ef(ef);
      request.mutable_vectors()->Add(data.queries.begin() + first * data.dim,
                                     data.queries.begin() + last * data.dim);
      v1::QueryIndexResponse response;
      absl::Status s = FromGrpc(stub.QueryIndex(Context().get(), request, &response),
                                absl::StrCat("QueryIndex of ", last - first, " queries"));
      if (s.ok() && static_cast<size_t>(response.ids_size()) != (last - first) * k) {
        s = absl::InternalError(absl::StrCat("QueryIndex returned ", response.ids_size(),
                                             " ids for ", last - first, " queries"));
      }
      if (!s.ok()) {
        errors[sender] = s;
        return;
      }
      std::copy(response.ids().begin(), response.ids().end(), ids.begin() + first * k);
    }
  };
  std::vector<std::thread> senders;
  for (size_t t = 1; t < senders_wanted; ++t) senders.emplace_back(send, t);
  send(0);
  for (std::thread& sender : senders) sender.join();
  result.seconds = SecondsSince(start);
  meter.Fill(&result);
  for (const absl::Status& s : errors) {
    if (!s.ok()) return s;
  }
  result.recall = Recall(data, impl_->truth, ids, k);
  return result;
}

absl::StatusOr<SingleQueryResult> LuxdbSide::HealthFloor() {
  using grpc::health::v1::Health;
  const std::unique_ptr<Health::Stub> stub = Health::NewStub(impl_->channels->Get());
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::CompletionQueue queue;
  // One call, waited for on the completion queue as SingleQueries' driver waits.
  auto check = [&]() -> grpc::Status {
    grpc::ClientContext context;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::health::v1::HealthCheckResponse>> reader =
        stub->AsyncCheck(&context, request, &queue);
    reader->Finish(&response, &status, &queue);
    void* tag = nullptr;
    bool ok = false;
    if (!queue.Next(&tag, &ok) || !ok) return grpc::Status(grpc::StatusCode::INTERNAL, "lost");
    return status;
  };
  if (grpc::Status s = check(); !s.ok()) return FromGrpc(s, "Health/Check warm-up");
  std::vector<double> latencies;
  latencies.reserve(1 << 18);
  const PhaseMeter meter(impl_->server_pid);
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(impl_->config.duration_s));
  for (Clock::time_point sent = start; sent < stop; sent = Clock::now()) {
    const grpc::Status s = check();
    if (!s.ok()) return FromGrpc(s, "Health/Check");
    latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
  }
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }
  SingleQueryResult result;
  result.seconds = SecondsSince(start);
  meter.Fill(&result);
  result.clients = 1;
  result.queries = latencies.size();
  result.p50_ms = Percentile(latencies, 50);
  result.p99_ms = Percentile(latencies, 99);
  return result;
}

absl::StatusOr<SingleQueryResult> LuxdbSide::StreamQueries() {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  const size_t k = config.k;
  Stub stub(impl_->channels->Get());
  std::unique_ptr<grpc::ClientContext> context = Context();
  std::unique_ptr<grpc::ClientReaderWriter<v1::QueryIndexRequest, v1::QueryIndexResponse>> stream =
      stub.QueryStream(context.get());
  std::vector<uint64_t> ids(data.nq * k, ~uint64_t{0});
  const PhaseMeter meter(impl_->server_pid);
  const Clock::time_point start = Clock::now();
  std::thread sender([&] {
    v1::QueryIndexRequest request;
    request.set_name(impl_->kept);
    request.set_k(static_cast<uint32_t>(k));
    request.set_ef(config.single_ef);
    for (size_t i = 0; i < data.nq; ++i) {
      const std::span<const float> query = data.query(i);
      request.mutable_vectors()->Assign(query.begin(), query.end());
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  v1::QueryIndexResponse response;
  size_t answered = 0;
  while (stream->Read(&response)) {
    if (answered < data.nq && static_cast<size_t>(response.ids_size()) == k) {
      std::copy(response.ids().begin(), response.ids().end(), ids.begin() + answered * k);
    }
    ++answered;
  }
  sender.join();
  const grpc::Status status = stream->Finish();
  SingleQueryResult result;
  result.seconds = SecondsSince(start);
  meter.Fill(&result);
  if (!status.ok()) return FromGrpc(status, "QueryStream");
  if (answered != data.nq) {
    return absl::InternalError(
        absl::StrCat("QueryStream answered ", answered, " of ", data.nq, " queries"));
  }
  result.clients = 1;
  result.queries = answered;
  result.recall = Recall(data, impl_->truth, ids, k);
  return result;
}

absl::StatusOr<SingleQueryResult> LuxdbSide::SingleQueries(int clients) {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  const GroundTruth& truth = impl_->truth;
  const size_t k = config.k;
  std::vector<std::vector<double>> latencies(clients);
  // The answers to each query's first call, kept to compute recall after the clock stops.
  std::vector<uint64_t> answers(data.nq * k, ~uint64_t{0});
  std::vector<std::atomic<bool>> answered(data.nq);
  std::vector<uint64_t> errors(clients);
  std::vector<std::string> first_error(clients);
  std::atomic<bool> stop{false};
  // A client: its own channel (connection, unless --shared-channel) and one call at a time.
  // Its next call goes out when the answer to the last one is in.
  struct Session {
    std::unique_ptr<Stub> stub;
    v1::QueryIndexRequest request;
    v1::QueryIndexResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientContext> context;  // no deadline, as luxdb::Client by default
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::QueryIndexResponse>> reader;
    Clock::time_point sent;
    size_t q = 0;
    size_t i = 0;  // calls made
  };
  std::vector<Session> sessions(clients);
  for (int c = 0; c < clients; ++c) {
    Session& session = sessions[c];
    session.stub = std::make_unique<Stub>(impl_->channels->Get());
    session.request.set_name(impl_->kept);
    session.request.set_k(static_cast<uint32_t>(k));
    session.request.set_ef(config.single_ef);
  }
  auto set_query = [&](Session& session, size_t q) {
    session.q = q;
    session.request.clear_vectors();
    std::span<const float> query = data.query(q);
    session.request.mutable_vectors()->Add(query.begin(), query.end());
  };
  // Connect (and warm up) every client before the clock starts.
  for (int c = 0; c < clients; ++c) {
    set_query(sessions[c], c % data.nq);
    grpc::ClientContext context;
    grpc::Status status =
        sessions[c].stub->QueryIndex(&context, sessions[c].request, &sessions[c].response);
    if (!status.ok()) return FromGrpc(status, "warm-up query");
  }

  auto client_loop = [&](grpc::CompletionQueue* queue, int first, int last) {
    auto send = [&](int c) {
      Session& session = sessions[c];
      set_query(session, (c * data.nq / clients + session.i) % data.nq);
      session.context = std::make_unique<grpc::ClientContext>();
      session.sent = Clock::now();
      session.reader = session.stub->AsyncQueryIndex(session.context.get(), session.request, queue);
      session.reader->Finish(&session.response, &session.status,
                             reinterpret_cast<void*>(static_cast<intptr_t>(c)));
    };
    latencies[first].reserve(1 << 18);
    for (int c = first; c < last; ++c) send(c);
    for (int outstanding = last - first; outstanding > 0;) {
      void* tag = nullptr;
      bool ok = false;
      if (!queue->Next(&tag, &ok)) break;
      const int c = static_cast<int>(reinterpret_cast<intptr_t>(tag));
      Session& session = sessions[c];
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - session.sent).count();
      const size_t i = session.i++;
      if (!ok || !session.status.ok() || static_cast<size_t>(session.response.ids_size()) != k) {
        if (errors[c]++ == 0) {
          first_error[c] = !ok                   ? "call not completed"
                           : session.status.ok() ? "wrong number of ids"
                                                 : session.status.error_message();
        }
      } else {
        latencies[first].push_back(ms);
        if (i < data.nq && !answered[session.q].exchange(true)) {
          std::copy(session.response.ids().begin(), session.response.ids().end(),
                    answers.begin() + session.q * k);
        }
      }
      if (stop.load(std::memory_order_relaxed)) {
        --outstanding;
      } else {
        send(c);
      }
    }
  };

  // config.client_threads threads drive the clients' calls, each its share of them through its
  // own completion queue; 0 means one thread per client.
  const int drivers =
      config.client_threads == 0 ? clients : std::min(clients, config.client_threads);
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues;
  for (int d = 0; d < drivers; ++d) queues.push_back(std::make_unique<grpc::CompletionQueue>());
  const PhaseMeter meter(impl_->server_pid);
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int d = 0; d < drivers; ++d) {
    threads.emplace_back(client_loop, queues[d].get(), d * clients / drivers,
                         (d + 1) * clients / drivers);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(config.duration_s));
  stop = true;
  for (std::thread& thread : threads) thread.join();
  for (auto& queue : queues) {
    queue->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (queue->Next(&tag, &ok)) {
    }
  }
  SingleQueryResult result;
  result.seconds = SecondsSince(start);
  meter.Fill(&result);
  result.clients = clients;
  std::vector<double> all;
  uint64_t failed = 0;
  for (int c = 0; c < clients; ++c) {
    all.insert(all.end(), latencies[c].begin(), latencies[c].end());
    failed += errors[c];
  }
  double recall_sum = 0;
  size_t rows = 0;
  for (size_t q = 0; q < data.nq; ++q) {
    if (!answered[q]) continue;
    recall_sum += RecallOfRow(data, truth, q, std::span(answers).subspan(q * k, k));
    ++rows;
  }
  for (int c = 0; c < clients; ++c) {
    if (errors[c] > 0) {
      return absl::InternalError(absl::StrCat(failed, " of ", all.size() + failed,
                                              " single queries failed with ", clients,
                                              " clients; first: ", first_error[c]));
    }
  }
  result.queries = all.size();
  result.p50_ms = Percentile(all, 50);
  result.p99_ms = Percentile(all, 99);
  result.recall = rows == 0 ? 0 : recall_sum / rows;
  return result;
}

}  // namespace luxdb::bench
