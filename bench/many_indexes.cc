// luxdb-many-indexes: creates many small indexes (one per tenant) in a real luxdb-server
// through the C++ client, then restarts the server, and reports what grows with the number of
// indexes: creation time, file descriptors, resident memory and restart time.
// `luxdb-many-indexes --help` lists the flags.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "harness/server_process.h"
#include "luxdb/client.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kUsage[] = R"(usage: luxdb-many-indexes [flags]
Starts luxdb-server on a temporary data directory and, through the C++ client (auth on, sync
on), creates --indexes indexes one after another: CreateIndex, InitIndex (capacity --items) and
AddItems (--items random vectors of dimension --dim) each. Prints progress every
--progress-every indexes, then the creation times (last index, p50/p99 per block), the server's
file descriptors and RSS, and a restart: SIGTERM, start again, time until it serves with every
index loaded. The exit status is 1 if a call fails or an index is missing after the restart,
0 otherwise, whatever the targets.

flags (default):
  --indexes N          indexes to create (10000)
  --dim N              dimension of each index (8)
  --items N            items per index (10)
  --progress-every N   progress line and creation-time block size (1000)
  --threads N          the server's --threads (2)
  --loglevel LEVEL     the server's --loglevel (warning); its log is in the data directory's
                       parent, kept with --keep-data
  --server PATH        luxdb-server to start (../server/luxdb-server next to this binary)
  --work-dir DIR       where the temporary data directory goes ($TMPDIR or /tmp)
  --keep-data          keep the data directory and the server's log
  --help               this text

targets: server fds < 256 whatever the count, creation of the last index < 20 ms,
restart < 10 s.
)";

constexpr size_t kMaxFds = 256;
constexpr double kMaxLastCreateMs = 20;
constexpr double kMaxRestartSeconds = 10;
// The server derives its key once; the bench derives it at every connect. Low, as nothing
// here measures the KDF.
constexpr uint32_t kKdfIterations = 1000;

struct Config {
  size_t indexes = 10'000;
  uint32_t dim = 8;
  size_t items = 10;
  size_t progress_every = 1000;
  int threads = 2;
  std::string loglevel = "warning";
  std::string server_path;
  std::string work_dir;
  bool keep_data = false;
};

std::string DefaultServerPath() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return (self.parent_path() / "../server/luxdb-server").lexically_normal().string();
}

// Parses the command line; prints the usage and exits on --help or a bad flag.
Config ParseArgs(int argc, char** argv) {
  Config config;
  config.server_path = DefaultServerPath();
  const char* tmpdir = std::getenv("TMPDIR");
  config.work_dir = tmpdir != nullptr ? tmpdir : "/tmp";
  auto fail = [](const std::string& message) {
    std::cerr << "luxdb-many-indexes: " << message << "\n" << kUsage;
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (flag == "--keep-data") {
      config.keep_data = true;
      continue;
    }
    if (i + 1 >= argc) fail(absl::StrCat(flag, " needs a value"));
    const std::string value = argv[++i];
    auto number = [&](auto* out, uint64_t min) {
      uint64_t parsed = 0;
      if (!absl::SimpleAtoi(value, &parsed) || parsed < min) {
        fail(absl::StrCat(flag, " must be an integer of at least ", min, ", got '", value, "'"));
      }
      *out = static_cast<std::remove_pointer_t<decltype(out)>>(parsed);
    };
    if (flag == "--indexes") {
      number(&config.indexes, 1);
    } else if (flag == "--dim") {
      number(&config.dim, 1);
    } else if (flag == "--items") {
      number(&config.items, 1);
    } else if (flag == "--progress-every") {
      number(&config.progress_every, 1);
    } else if (flag == "--threads") {
      number(&config.threads, 1);
    } else if (flag == "--loglevel") {
      config.loglevel = value;
    } else if (flag == "--server") {
      config.server_path = value;
    } else if (flag == "--work-dir") {
      config.work_dir = value;
    } else {
      fail(absl::StrCat("unknown flag ", flag));
    }
  }
  return config;
}

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double Percentile(std::vector<double> values, double percentile) {
  if (values.empty()) return 0;
  const size_t rank = std::min(
      values.size() - 1, static_cast<size_t>(std::ceil(percentile / 100 * values.size())) - 1);
  std::nth_element(values.begin(), values.begin() + rank, values.end());
  return values[rank];
}

// The open file descriptors of `pid`, by what they point to.
struct FdCount {
  size_t total = 0;
  std::map<std::string, size_t> by_kind;

  std::string ToString() const {
    std::string text = absl::StrCat(total, " (");
    bool first = true;
    for (const auto& [kind, count] : by_kind) {
      absl::StrAppend(&text, first ? "" : ", ", kind, " ", count);
      first = false;
    }
    return text + ")";
  }
};

FdCount CountFds(pid_t pid) {
  FdCount count;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), error)) {
    std::error_code link_error;
    const std::string target = std::filesystem::read_symlink(entry.path(), link_error).string();
    std::string kind = "other";
    if (target.starts_with("socket:")) {
      kind = "socket";
    } else if (target.starts_with("pipe:")) {
      kind = "pipe";
    } else if (target.starts_with("anon_inode:")) {
      kind = "anon_inode";
    } else if (target.ends_with(".sst")) {
      kind = "sst";
    } else if (target.ends_with(".log") || target.find("/LOG") != std::string::npos) {
      kind = "log";
    } else if (target.find("MANIFEST") != std::string::npos) {
      kind = "manifest";
    } else if (std::filesystem::is_directory(target, link_error)) {
      kind = "directory";
    }
    ++count.total;
    ++count.by_kind[kind];
  }
  return count;
}

absl::StatusOr<std::unique_ptr<luxdb::Client>> Connect(const luxdb::harness::ServerProcess& server,
                                                       const std::string& secret) {
  luxdb::ConnectOptions options;
  options.port = server.port();
  options.secret = secret;
  options.kdf.iterations = kKdfIterations;
  options.call_timeout = std::chrono::seconds(120);
  return luxdb::Client::Connect(options);
}

// Creates, initialises and fills index `name`; returns the CreateIndex time in ms.
absl::StatusOr<double> CreateOne(luxdb::Client& client, const std::string& name,
                                 const Config& config, std::mt19937_64& random) {
  std::uniform_real_distribution<float> uniform(0, 1);
  std::vector<float> vectors(config.items * config.dim);
  for (float& x : vectors) x = uniform(random);
  std::vector<uint64_t> ids(config.items);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;

  const Clock::time_point start = Clock::now();
  if (absl::Status s = client.CreateIndex(name, luxdb::Space::kL2, config.dim); !s.ok()) return s;
  const double create_ms = MillisecondsSince(start);
  if (absl::Status s = client.InitIndex(name, {.max_elements = config.items}); !s.ok()) return s;
  absl::StatusOr<uint64_t> added = client.AddItems(name, vectors, ids);
  if (!added.ok()) return added.status();
  return create_ms;
}

std::string IndexName(size_t i) { return absl::StrFormat("tenant-%06d", i); }

const char* Verdict(bool pass) { return pass ? "PASS" : "MISS"; }

int Run(const Config& config) {
  std::string data_parent = config.work_dir + "/luxdb-many-indexes-XXXXXX";
  if (mkdtemp(data_parent.data()) == nullptr) {
    std::perror(("luxdb-many-indexes: cannot create a directory in " + config.work_dir).c_str());
    return 1;
  }
  const std::string secret = luxdb::harness::RandomSecret();
  luxdb::harness::ServerProcessOptions options;
  options.binary = config.server_path;
  options.data_dir = data_parent + "/data";
  options.secret = secret;
  options.log_path = data_parent + "/server.log";
  options.threads = config.threads;
  options.loglevel = config.loglevel;
  options.extra_env = {absl::StrCat("KDF_ITERATIONS=", kKdfIterations)};
  options.start_timeout = std::chrono::seconds(1800);
  options.stop_timeout = std::chrono::seconds(1800);
  luxdb::harness::ServerProcess server(options);
  auto cleanup = [&] {
    if (server.running()) server.Stop().IgnoreError();
    if (config.keep_data) {
      std::cout << "data and server log kept in " << data_parent << "\n";
    } else {
      std::error_code error;
      std::filesystem::remove_all(data_parent, error);
    }
  };
  auto fail = [&](absl::string_view what, const absl::Status& status) {
    std::cerr << "luxdb-many-indexes: " << what << ": " << status << "\n";
    if (server.running()) std::cerr << "server log tail:\n" << server.LogTail(20) << "\n";
    cleanup();
    return 1;
  };

  std::cout << absl::StrFormat(
                   "luxdb-many-indexes: %d indexes of dim %d with %d items each; server %s; "
                   "data %s; %u cores",
                   config.indexes, config.dim, config.items, config.server_path, options.data_dir,
                   std::thread::hardware_concurrency())
            << std::endl;
  if (absl::Status s = server.Start(); !s.ok()) return fail("cannot start the server", s);
  absl::StatusOr<std::unique_ptr<luxdb::Client>> client = Connect(server, secret);
  if (!client.ok()) return fail("cannot connect", client.status());
  const double cpu_before = luxdb::harness::ProcessCpuSeconds(server.pid());

  std::mt19937_64 random(42);
  std::vector<double> create_ms;
  create_ms.reserve(config.indexes);
  const Clock::time_point start = Clock::now();
  Clock::time_point block_start = start;
  std::cout << absl::StrFormat("%9s %9s %12s %12s %12s %12s %6s %9s\n", "indexes", "total s",
                               "block idx/s", "create p50", "create p99", "create max", "fds",
                               "RSS MiB");
  for (size_t i = 0; i < config.indexes; ++i) {
    absl::StatusOr<double> ms = CreateOne(**client, IndexName(i), config, random);
    if (!ms.ok()) return fail(absl::StrCat("index ", i + 1, " (", IndexName(i), ")"), ms.status());
    create_ms.push_back(*ms);
    if ((i + 1) % config.progress_every == 0 || i + 1 == config.indexes) {
      const size_t block_begin = i / config.progress_every * config.progress_every;
      const std::vector<double> block(create_ms.begin() + block_begin, create_ms.end());
      const double block_s = MillisecondsSince(block_start) / 1000;
      block_start = Clock::now();
      std::cout << absl::StrFormat(
                       "%9d %9.1f %12.0f %9.2f ms %9.2f ms %9.2f ms %6d %9.0f", i + 1,
                       MillisecondsSince(start) / 1000, block.size() / block_s,
                       Percentile(block, 50), Percentile(block, 99),
                       *std::max_element(block.begin(), block.end()), CountFds(server.pid()).total,
                       luxdb::harness::ProcessStatusBytes(server.pid(), "VmRSS").value_or(0) /
                           1048576.0)
                << std::endl;
    }
  }
  const double total_s = MillisecondsSince(start) / 1000;
  const double server_cpu_s = luxdb::harness::ProcessCpuSeconds(server.pid()) - cpu_before;
  const FdCount fds_after = CountFds(server.pid());
  const double rss_after_mib =
      luxdb::harness::ProcessStatusBytes(server.pid(), "VmRSS").value_or(0) / 1048576.0;
  client->reset();

  const Clock::time_point stop_start = Clock::now();
  if (absl::Status s = server.Stop(); !s.ok()) return fail("cannot stop the server", s);
  const double stop_s = MillisecondsSince(stop_start) / 1000;
  const Clock::time_point restart_start = Clock::now();
  if (absl::Status s = server.Start(); !s.ok()) return fail("cannot restart the server", s);
  const double serving_s = MillisecondsSince(restart_start) / 1000;
  client = Connect(server, secret);
  if (!client.ok()) return fail("cannot connect after the restart", client.status());
  absl::StatusOr<std::vector<luxdb::IndexInfo>> listed = (*client)->ListIndexes();
  if (!listed.ok()) return fail("ListIndexes after the restart", listed.status());
  const double listed_s = MillisecondsSince(restart_start) / 1000;
  size_t complete = 0;
  for (const luxdb::IndexInfo& info : *listed) {
    if (info.initialized && info.element_count == config.items) ++complete;
  }
  const FdCount fds_restarted = CountFds(server.pid());
  const double rss_restarted_mib =
      luxdb::harness::ProcessStatusBytes(server.pid(), "VmRSS").value_or(0) / 1048576.0;

  const double last_ms = create_ms.back();
  std::cout << "\nresults (" << config.indexes << " indexes):\n"
            << absl::StrFormat(
                   "  total time                    %10.1f s (%.0f indexes/s; server CPU %.1f s)\n",
                   total_s, config.indexes / total_s, server_cpu_s)
            << absl::StrFormat("  create of the last index      %10.2f ms   target < %.0f ms  %s\n",
                               last_ms, kMaxLastCreateMs, Verdict(last_ms < kMaxLastCreateMs))
            << absl::StrFormat("  create p50 / p99, all         %10.2f / %.2f ms\n",
                               Percentile(create_ms, 50), Percentile(create_ms, 99))
            << absl::StrFormat("  server fds after              %10d      target < %d  %s\n",
                               fds_after.total, kMaxFds, Verdict(fds_after.total < kMaxFds))
            << "    by kind: " << fds_after.ToString() << "\n"
            << absl::StrFormat("  server RSS after              %10.0f MiB\n", rss_after_mib)
            << absl::StrFormat("  shutdown (SIGTERM to exit)    %10.2f s\n", stop_s)
            << absl::StrFormat("  restart until serving         %10.2f s    target < %.0f s  %s\n",
                               serving_s, kMaxRestartSeconds,
                               Verdict(serving_s < kMaxRestartSeconds))
            << absl::StrFormat(
                   "  restart until all listed      %10.2f s (%d of %d indexes listed, %d "
                   "initialised with %d items)\n",
                   listed_s, listed->size(), config.indexes, complete, config.items)
            << absl::StrFormat("  server fds after restart      %10d      %s\n",
                               fds_restarted.total, fds_restarted.ToString())
            << absl::StrFormat("  server RSS after restart      %10.0f MiB\n", rss_restarted_mib);
  if (listed->size() != config.indexes || complete != config.indexes) {
    return fail("after the restart",
                absl::DataLossError(
                    absl::StrCat(complete, " of ", config.indexes, " indexes came back complete")));
  }
  client->reset();
  cleanup();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(ParseArgs(argc, argv)); }
