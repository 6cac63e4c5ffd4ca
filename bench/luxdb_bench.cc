// luxdb-bench: measures LuxDB through its gRPC API (auth on, sync on) against hnswlib
// in-process on the same data, and prints one table with the ratio per metric and the targets
// of issue 7. `luxdb-bench --help` explains the flags.
#include "bench/luxdb_bench.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

#ifndef LUXDB_BENCH_BUILD_TYPE
#define LUXDB_BENCH_BUILD_TYPE "unknown"
#endif
#ifndef LUXDB_BENCH_SIMD
#define LUXDB_BENCH_SIMD "unknown"
#endif

namespace luxdb::bench {

uint64_t ProcStatusBytes(pid_t pid, const char* field) {
  return harness::ProcessStatusBytes(pid, field).value_or(0);
}

uint64_t DirectoryBytes(const std::string& path) {
  uint64_t bytes = 0;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(path, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file(error)) bytes += it->file_size(error);
  }
  return bytes;
}

double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  if (!in || cpu != "cpu") return 0;
  return (user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

PhaseMeter::PhaseMeter(pid_t server)
    : server_(server),
      machine_start_(MachineBusySeconds()),
      self_start_(ProcessCpuSeconds(getpid())),
      server_start_(server != 0 ? ProcessCpuSeconds(server) : 0),
      start_(Clock::now()) {}

double PhaseMeter::server_cpu_s() const {
  return server_ != 0 ? ProcessCpuSeconds(server_) - server_start_ : 0;
}

double PhaseMeter::self_cpu_s() const { return ProcessCpuSeconds(getpid()) - self_start_; }

double PhaseMeter::background_cores() const {
  const double wall = SecondsSince(start_);
  if (wall <= 0) return 0;
  const double others = MachineBusySeconds() - machine_start_ - self_cpu_s() - server_cpu_s();
  return std::max(0.0, others / wall);
}

double Percentile(std::vector<double>& values, double percentile) {
  if (values.empty()) return 0;
  const size_t rank = std::min(
      values.size() - 1, static_cast<size_t>(std::ceil(percentile / 100 * values.size())) - 1);
  std::nth_element(values.begin(), values.begin() + rank, values.end());
  return values[rank];
}

namespace {

constexpr char kUsage[] = R"(usage: luxdb-bench [flags]
Measures LuxDB through its gRPC API (auth on, sync on) against hnswlib in-process on the same
data, with the same M, ef_construction, thread count and SIMD flags, and prints a table with
the ratio LuxDB/hnswlib per metric, the targets and PASS/MISS (the exit status is 0 whenever
the benchmark ran, whatever the targets). Run it alone on the machine: it measures throughput.

data:
  --data-dir DIR        Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist):
                        train-images (60k) are the base, t10k-images the queries
  --synthetic N D       N uniform random vectors of dimension D instead (seeded)
  --latent L            synthetic vectors near a random L-dimensional subspace instead of
                        uniform: x = A z + noise, z standard gaussian of dimension L, A a fixed
                        random D x L matrix (real embeddings have a low intrinsic dimension;
                        uniform ones have the full one, where HNSW at a small ef finds few of
                        the true neighbours)
  --noise S             standard deviation of that noise per coordinate (default 0.05)
  --base N              use only the first N base vectors
  --queries N           number of queries (default 10000)
  --seed N              synthetic data seed (default 42)
  --cache-dir DIR       where to cache the exact ground truth when the data directory is not
                        writable (default $XDG_CACHE_HOME/luxdb-bench or ~/.cache/luxdb-bench)
parameters (both sides):
  --m N                 default 16
  --ef-construction N   default 200
  --k N                 default 10
  --ef LIST             batch-query ef values (default 10,50,100,200)
  --single-ef N         ef of the single-query runs (default 100)
  --clients LIST        concurrent single-query clients (default 1,4,16)
  --duration S          seconds per single-query run (default 10)
  --batch N             vectors per AddItems call (default 1000)
  --batch-calls N       LuxDB batch queries: split the queries into N calls on one channel
                        (default 8; 1: all queries in one call, as long as it stays under
                        64 MiB); while one call is searched the next is sent and parsed
  --batch-in-flight M   at most M of those calls at once (default 2; 0: all N); each call in
                        flight holds its request and its parsed copy in the server's memory
  --threads N           hnswlib threads and the server's --threads (default 2)
  --repeat N            runs per metric, alternating hnswlib and LuxDB; the best run of each
                        side counts, as background load only slows runs down (default 2)
  --ingest-repeat N     the same for the ingest runs, which build whole indexes (default 2)
  --client-threads N    threads that drive the LuxDB single-query clients (default 1; 0: one
                        per client); each client keeps one call in flight and has its own
                        connection either way
  --shared-channel      concurrent clients share one channel (one TCP connection, HTTP/2
                        streams); default: each client thread has its own channel and connection
  --no-concurrent-ingest  skip the 2-client ingest
  --python SCRIPT       the Python rows' script (default bench/python_clients.py in the
                        source tree), run with /usr/bin/python3 and the build's luxdb package
  --no-python           skip the Python rows
LuxDB:
  --server PATH         luxdb-server to start (default: ../server/luxdb-server next to this
                        binary in the build tree); it gets a temporary data directory, a random
                        LUXDB_SECRET, --threads, and sync on (its default)
  --work-dir DIR        parent of the temporary data directory (default $TMPDIR or /tmp)
  --keep-data           keep the temporary data directory
  --address HOST:PORT   use a running server instead (with --secret or LUXDB_SECRET)
  --secret S
  --server-pid PID      with --address: read the server's memory and CPU from /proc/PID
output and modes:
  --json PATH           also write the results as JSON
  --only hnswlib|luxdb  run one side only (no ratios)
  --quick               smoke run: 10k base, 1k queries, 2 s per concurrency level, 1 run
  --help

--mixed: LuxDB alone (issue 15), on a server it starts with auth off: single-query latency and
QPS idle and while one client writes, and the writer's ingest rate against ingest alone.
Uses --data-dir / --synthetic, --queries (cycled), --k, --m, --ef-construction, --duration
(the idle phase, default 10), --batch (the preload's calls), --threads, --server, --work-dir.
  --mixed-preload N     base vectors loaded before the phases (default 20000)
  --mixed-stream N      the next N base vectors, streamed by the writer (default 40000)
  --write-batch N       vectors per writer AddItems call (default 500)
  --query-clients N     query clients, one call in flight each (default 4)
  --query-ef N          ef of their queries (default 40)
  --recall-sample N     queries whose recall is checked, per phase (default 1000)

--churn: LuxDB alone (issue 15), servers with auth off: replace every item, delete half and
add new ids without ResizeIndex, then self-recall against a fresh build, deleted ids never
returned, and server RSS after compaction against a fresh server. Uses --seed, --m,
--ef-construction, --batch (default 1000), --threads, --server, --work-dir.
  --churn-items N       gaussian vectors, and the index capacity (default 20000)
  --churn-dim N         their dimension (default 64)
  --churn-rounds N      replace passes and delete + add rounds (default 3)
  --churn-ef N          ef of the self-recall and deleted-id queries (default 100)
  --self-recall-sample N  items whose self-recall is measured (default 5000)
  --compact-wait S      seconds to wait for the server to drop tombstones (default 20)

--filtered: LuxDB alone (issue 17), on a server it starts with auth off: items with
attributes (int "bucket" in [0,1000), string "tenant" of 10, string list "tag" of 1-3 of 500,
int "group" in [0,1000)); filters of ~50 % (range), ~10 % (equals; and the same items by a
must_not alone, which no attribute index bounds), ~1 % (any_of + must_not), ~0.1 % (equals)
and an allow-list of 100 ids. Per filter: the share of items it matches, recall@k
of the server's filtered answers and of the naive plan (unfiltered at k x ceil(1/selectivity),
filtered on the client) against the exact filtered answers (brute force here), QPS of
unfiltered, filtered and naive queries in interleaved rounds, and every result checked
against its filter (one outside it: exit 1). Data: synthetic 100000 x 128 near a 12-dimensional
subspace (--latent 12: unfiltered recall@10 0.992 at ef 40, Fashion-MNIST 0.995; uniform
vectors of dimension 128 get 0.26) unless --synthetic or --data-dir is given; --queries (default
1000), --k, --m, --ef-construction, --batch, --threads, --seed, --latent, --noise, --server,
--work-dir.
  --query-clients N     query clients, each its own connection, one call in flight (default 4)
  --query-ef N          ef of every query (default 40)
  --duration S          seconds per timed slice (default 1)
  --filtered-rounds N   rounds of one slice per plan (unfiltered, filtered, naive), per filter
                        (default 5)

--check                 --mixed / --churn / --filtered: exit 1 if a target is missed (default:
                        exit 0 whenever the workload ran, as CI runs it without timing targets)
)";

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

template <typename T>
absl::Status ParseNumber(absl::string_view flag, absl::string_view text, T* out) {
  if constexpr (std::is_floating_point_v<T>) {
    if (absl::SimpleAtod(text, out) && *out >= 0) return absl::OkStatus();
  } else {
    if (absl::SimpleAtoi(text, out) && *out >= 0) return absl::OkStatus();
  }
  return Usage(absl::StrCat(flag, " needs a number, got '", text, "'"));
}

template <typename T>
absl::Status ParseList(absl::string_view flag, absl::string_view text, std::vector<T>* out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    T value;
    if (absl::Status s = ParseNumber(flag, part, &value); !s.ok()) return s;
    if (value == 0) return Usage(absl::StrCat(flag, " values must be positive"));
    out->push_back(value);
  }
  if (out->empty()) return Usage(absl::StrCat(flag, " needs a comma-separated list"));
  return absl::OkStatus();
}

std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_=.,/:+@%") == std::string::npos) {
    return arg;
  }
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string SelfDirectory() {
  std::error_code error;
  return std::filesystem::read_symlink("/proc/self/exe", error).parent_path().string();
}

std::string DefaultServerPath() {
  const std::string dir = SelfDirectory();
  for (const std::string& candidate : {dir + "/../server/luxdb-server", dir + "/luxdb-server"}) {
    std::error_code error;
    if (std::filesystem::exists(candidate, error)) {
      return std::filesystem::weakly_canonical(candidate, error).string();
    }
  }
  return dir + "/../server/luxdb-server";
}

absl::StatusOr<Config> ParseArgs(int argc, char** argv, bool* help) {
  Config config;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> quoted = {ShellQuote(argv[0])};
  for (const std::string& arg : args) quoted.push_back(ShellQuote(arg));
  config.command_line = absl::StrJoin(quoted, " ");
  bool base_given = false, queries_given = false, duration_given = false, repeat_given = false,
       ingest_repeat_given = false, data_dir_given = false, latent_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (size_t eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return Usage(absl::StrCat(flag, " needs a value"));
      return args[++i];
    };
#define LUXDB_BENCH_VALUE(v)                    \
  absl::StatusOr<std::string> v##_or = value(); \
  if (!v##_or.ok()) return v##_or.status();     \
  const std::string& v = *v##_or;
    absl::Status s;
    if (flag == "--help" || flag == "-h") {
      *help = true;
      return config;
    } else if (flag == "--quick") {
      config.quick = true;
    } else if (flag == "--synthetic") {
      if (inline_value || i + 2 >= args.size()) return Usage("--synthetic needs N and D");
      s = ParseNumber(flag, args[i + 1], &config.synthetic_n);
      if (s.ok()) s = ParseNumber(flag, args[i + 2], &config.synthetic_dim);
      if (s.ok() && (config.synthetic_n == 0 || config.synthetic_dim == 0)) {
        s = Usage("--synthetic needs positive N and D");
      }
      i += 2;
    } else if (flag == "--latent") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.synthetic_latent);
      latent_given = true;
    } else if (flag == "--noise") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.synthetic_noise);
    } else if (flag == "--data-dir") {
      LUXDB_BENCH_VALUE(v);
      config.data_dir = v;
      data_dir_given = true;
    } else if (flag == "--base") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.base_limit);
      base_given = true;
    } else if (flag == "--queries") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.queries);
      queries_given = true;
    } else if (flag == "--seed") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.seed);
    } else if (flag == "--cache-dir") {
      LUXDB_BENCH_VALUE(v);
      config.cache_dir = v;
    } else if (flag == "--m") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.m);
    } else if (flag == "--ef-construction") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.ef_construction);
    } else if (flag == "--k") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.k);
    } else if (flag == "--ef") {
      LUXDB_BENCH_VALUE(v);
      s = ParseList(flag, v, &config.batch_efs);
    } else if (flag == "--single-ef") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.single_ef);
    } else if (flag == "--clients") {
      LUXDB_BENCH_VALUE(v);
      s = ParseList(flag, v, &config.clients);
    } else if (flag == "--duration") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.duration_s);
      duration_given = true;
    } else if (flag == "--batch") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.ingest_batch);
    } else if (flag == "--threads") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.threads);
    } else if (flag == "--batch-calls") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.batch_calls);
    } else if (flag == "--batch-in-flight") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.batch_in_flight);
    } else if (flag == "--repeat") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.repeats);
      repeat_given = true;
    } else if (flag == "--ingest-repeat") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.ingest_repeats);
      ingest_repeat_given = true;
    } else if (flag == "--client-threads") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.client_threads);
    } else if (flag == "--shared-channel") {
      config.shared_channel = true;
    } else if (flag == "--no-concurrent-ingest") {
      config.concurrent_ingest = false;
    } else if (flag == "--python") {
      LUXDB_BENCH_VALUE(v);
      config.python_script = v;
    } else if (flag == "--no-python") {
      config.run_python = false;
    } else if (flag == "--server") {
      LUXDB_BENCH_VALUE(v);
      config.server_path = v;
    } else if (flag == "--work-dir") {
      LUXDB_BENCH_VALUE(v);
      config.work_dir = v;
    } else if (flag == "--keep-data") {
      config.keep_data = true;
    } else if (flag == "--address") {
      LUXDB_BENCH_VALUE(v);
      config.address = v;
    } else if (flag == "--secret") {
      LUXDB_BENCH_VALUE(v);
      config.secret = v;
    } else if (flag == "--server-pid") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.server_pid);
    } else if (flag == "--json") {
      LUXDB_BENCH_VALUE(v);
      config.json_path = v;
    } else if (flag == "--mixed") {
      config.workload = Workload::kMixed;
    } else if (flag == "--churn") {
      config.workload = Workload::kChurn;
    } else if (flag == "--filtered") {
      config.workload = Workload::kFiltered;
    } else if (flag == "--filtered-rounds") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.filtered_rounds);
    } else if (flag == "--check") {
      config.check = true;
    } else if (flag == "--mixed-preload") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.mixed_preload);
    } else if (flag == "--mixed-stream") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.mixed_stream);
    } else if (flag == "--write-batch") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.write_batch);
    } else if (flag == "--query-clients") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.query_clients);
    } else if (flag == "--query-ef") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.mixed_ef);
    } else if (flag == "--recall-sample") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.recall_sample);
    } else if (flag == "--churn-items") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.churn_items);
    } else if (flag == "--churn-dim") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.churn_dim);
    } else if (flag == "--churn-rounds") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.churn_rounds);
    } else if (flag == "--churn-ef") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.churn_ef);
    } else if (flag == "--self-recall-sample") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.self_recall_sample);
    } else if (flag == "--compact-wait") {
      LUXDB_BENCH_VALUE(v);
      s = ParseNumber(flag, v, &config.compact_wait_s);
    } else if (flag == "--only") {
      LUXDB_BENCH_VALUE(v);
      if (v == "hnswlib") {
        config.run_luxdb = false;
      } else if (v == "luxdb") {
        config.run_hnswlib = false;
      } else {
        s = Usage(absl::StrCat("--only must be hnswlib or luxdb, got '", v, "'"));
      }
    } else {
      s = Usage(absl::StrCat("unknown flag '", args[i], "'; see --help"));
    }
#undef LUXDB_BENCH_VALUE
    if (!s.ok()) return s;
  }
  if (config.quick) {
    if (!base_given && config.synthetic_n == 0) config.base_limit = 10'000;
    if (!queries_given) config.queries = 1'000;
    if (!duration_given) config.duration_s = 2;
    if (!repeat_given) config.repeats = 1;
    if (!ingest_repeat_given) config.ingest_repeats = 1;
    // A CI machine may lack the data set: fall back to synthetic data of the same size.
    std::error_code error;
    if (config.synthetic_n == 0 &&
        !std::filesystem::exists(config.data_dir + "/train-images-idx3-ubyte.gz", error)) {
      std::cerr << "luxdb-bench: --quick: no Fashion-MNIST in " << config.data_dir
                << ", using synthetic 10000 x 64" << std::endl;
      config.synthetic_n = config.base_limit;
      config.synthetic_dim = 64;
    }
  }
  if (config.workload == Workload::kFiltered) {
    if (config.synthetic_n == 0 && !data_dir_given) {
      config.synthetic_n = 100'000;
      config.synthetic_dim = 128;
      if (!latent_given) config.synthetic_latent = 12;
    }
    if (!queries_given) config.queries = 1'000;
    if (!duration_given) config.duration_s = 1;
  }
  if (config.m < 2 || config.k < 1 || config.threads < 1 || config.ingest_batch < 1 ||
      config.queries < 1 || config.single_ef < 1 || config.repeats < 1 ||
      config.ingest_repeats < 1 || config.batch_calls < 1) {
    return Usage(
        "--m must be >= 2; --k, --threads, --batch, --batch-calls, --queries, --single-ef, "
        "--repeat >= 1");
  }
  if (config.workload != Workload::kCompare) {
    if (!config.address.empty()) {
      return Usage(
          "--mixed, --churn and --filtered start their own servers; --address is not supported");
    }
    if (config.mixed_preload < 1 || config.write_batch < 1 || config.query_clients < 1 ||
        config.mixed_ef < 1 || config.churn_items < 2 || config.churn_dim < 1 ||
        config.churn_ef < 1 || config.filtered_rounds < 1) {
      return Usage(
          "--mixed-preload, --write-batch, --query-clients, --query-ef, --churn-dim, "
          "--churn-ef and --filtered-rounds must be >= 1, --churn-items >= 2");
    }
  }
  if (config.synthetic_n > 0 && config.base_limit > 0) {
    config.synthetic_n = std::min(config.synthetic_n, config.base_limit);
  }
  if (config.server_path.empty()) config.server_path = DefaultServerPath();
  return config;
}

std::string ReadFirstMatch(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with(key)) continue;
    const size_t colon = line.find(':');
    std::string value = colon == std::string::npos ? line : line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    return value;
  }
  return "unknown";
}

std::vector<std::pair<std::string, std::string>> MachineFacts(const Config& config) {
  std::vector<std::pair<std::string, std::string>> facts;
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int usable = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : -1;
  facts.emplace_back("nproc", std::to_string(usable));
  facts.emplace_back("cpu_model", ReadFirstMatch("/proc/cpuinfo", "model name"));
  facts.emplace_back("memory", ReadFirstMatch("/proc/meminfo", "MemTotal"));
  utsname name{};
  uname(&name);
  facts.emplace_back("kernel", absl::StrCat(name.sysname, " ", name.release, " ", name.machine));
  std::ifstream loadavg("/proc/loadavg");
  std::string one, five, fifteen;
  loadavg >> one >> five >> fifteen;
  facts.emplace_back("load_average_at_start", absl::StrCat(one, " ", five, " ", fifteen));
  facts.emplace_back("compiler", __VERSION__);
  facts.emplace_back("build_type", LUXDB_BENCH_BUILD_TYPE);
  facts.emplace_back("luxdb_simd", LUXDB_BENCH_SIMD);
  if (config.run_luxdb) {
    facts.emplace_back("server", config.address.empty() ? config.server_path : config.address);
  }
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  facts.emplace_back("date", date);
  return facts;
}

std::string Background(double cores) {
  return cores >= 0.2 ? absl::StrFormat(" [others busy: %.1f cores]", cores) : "";
}

// Both sides, their runs interleaved so that background load on the shared machine spreads
// over both: builds, then batch queries ef by ef, then single queries, each config.repeats
// times; further ingest runs at the end.
absl::Status Run(const Config& config, const Dataset& data, const GroundTruth& truth,
                 std::optional<HnswlibResult>* hnswlib_result,
                 std::optional<LuxdbResult>* luxdb_result) {
  std::optional<HnswlibSide> h;
  std::optional<LuxdbSide> l;
  if (config.run_hnswlib) {
    h.emplace(config, data, truth);
    hnswlib_result->emplace();
    (*hnswlib_result)->batch.resize(config.batch_efs.size());
  }
  if (config.run_luxdb) {
    l.emplace(config, data, truth);
    luxdb_result->emplace();
    (*luxdb_result)->batch.resize(config.batch_efs.size());
    (*luxdb_result)->single.resize(config.clients.size());
  }
  HnswlibResult* hr = hnswlib_result->has_value() ? &**hnswlib_result : nullptr;
  LuxdbResult* lr = luxdb_result->has_value() ? &**luxdb_result : nullptr;

  auto hnswlib_build = [&] {
    std::cerr << "[hnswlib] building " << data.n << " x " << data.dim << " on " << config.threads
              << " threads..." << std::endl;
    IngestResult r = h->Build();
    std::cerr << "[hnswlib] built: " << static_cast<int>(r.per_second()) << " vectors/s"
              << Background(r.background_cores) << std::endl;
    hr->ingest.Add(r);
  };
  auto luxdb_ingest = [&](int clients, bool keep) -> absl::Status {
    std::cerr << "[luxdb] ingest, " << clients << " client(s), batches of " << config.ingest_batch
              << "..." << std::endl;
    absl::StatusOr<IngestResult> r = l->Ingest(clients, keep);
    if (!r.ok()) return r.status();
    std::cerr << "[luxdb] ingest, " << clients
              << " client(s): " << static_cast<int>(r->per_second()) << " vectors/s"
              << Background(r->background_cores) << std::endl;
    (clients == 1 ? lr->ingest : lr->ingest_parallel).Add(*r);
    return absl::OkStatus();
  };

  if (h) {
    hnswlib_build();
    hr->rss_delta_bytes = h->rss_delta_bytes();
    hr->theoretical_bytes = h->theoretical_bytes();
    hr->graph_file_bytes = h->graph_file_bytes();
    hr->simd = h->simd();
    std::cout << "hnswlib SIMD: " << hr->simd << "\n" << std::flush;
  }
  if (l) {
    if (absl::Status s = l->Start(); !s.ok()) return s;
    lr->server = l->server();
    lr->data_dir = l->data_dir();
    lr->data_fs = l->data_fs();
    if (l->server_pid() != 0) lr->vm_rss_idle_bytes = ProcStatusBytes(l->server_pid(), "VmRSS");
    if (absl::Status s = luxdb_ingest(1, /*keep=*/true); !s.ok()) return s;
    if (!lr->data_dir.empty()) lr->data_dir_bytes = DirectoryBytes(lr->data_dir);
  }

  // One untimed batch on each side first: the server's first large calls after the ingest are
  // slower (allocator and connection warm-up), the in-process index is warm from its build.
  if (h && !config.batch_efs.empty()) h->BatchQuery(config.batch_efs.front());
  if (l && !config.batch_efs.empty()) {
    if (absl::StatusOr<BatchQueryResult> b = l->BatchQuery(config.batch_efs.front()); !b.ok()) {
      return b.status();
    }
  }
  for (size_t i = 0; i < config.batch_efs.size(); ++i) {
    const uint32_t ef = config.batch_efs[i];
    for (int r = 0; r < config.repeats; ++r) {
      if (h) {
        BatchQueryResult b = h->BatchQuery(ef);
        std::cerr << "[hnswlib] batch ef=" << ef << ": " << static_cast<int>(b.qps())
                  << " q/s, recall " << b.recall << Background(b.background_cores) << std::endl;
        hr->batch[i].Add(b);
      }
      if (l) {
        absl::StatusOr<BatchQueryResult> b = l->BatchQuery(ef);
        if (!b.ok()) return b.status();
        std::cerr << "[luxdb] batch ef=" << ef << ": " << static_cast<int>(b->qps())
                  << " q/s, recall " << b->recall << Background(b->background_cores) << std::endl;
        lr->batch[i].Add(*b);
      }
    }
  }

  for (int r = 0; r < config.repeats; ++r) {
    if (h) {
      SingleQueryResult s = h->SingleQueries(config.threads);
      std::cerr << "[hnswlib] single queries, " << config.threads << " threads, ef "
                << config.single_ef << ": " << static_cast<int>(s.qps()) << " q/s"
                << Background(s.background_cores) << std::endl;
      hr->single.Add(s);
      SingleQueryResult one = h->SingleQueries(1);
      std::cerr << "[hnswlib] single queries, 1 thread: p50 " << one.p50_ms << " ms"
                << Background(one.background_cores) << std::endl;
      hr->single_one_thread.Add(one);
    }
    if (l) {
      absl::StatusOr<SingleQueryResult> floor = l->HealthFloor();
      if (!floor.ok()) return floor.status();
      std::cerr << "[luxdb] gRPC floor (Health/Check), 1 client: p50 " << floor->p50_ms << " ms"
                << Background(floor->background_cores) << std::endl;
      lr->floor.Add(*floor);
    }
    if (l) {
      absl::StatusOr<SingleQueryResult> stream = l->StreamQueries();
      if (absl::IsUnimplemented(stream.status())) {  // a server from before QueryStream
        std::cerr << "[luxdb] QueryStream: " << stream.status().message() << std::endl;
      } else if (!stream.ok()) {
        return stream.status();
      } else {
        std::cerr << "[luxdb] QueryStream, 1 client, one query per message: "
                  << static_cast<int>(stream->qps()) << " q/s, recall " << stream->recall
                  << Background(stream->background_cores) << std::endl;
        lr->stream.Add(*stream);
      }
    }
    for (size_t i = 0; l && i < config.clients.size(); ++i) {
      absl::StatusOr<SingleQueryResult> s = l->SingleQueries(config.clients[i]);
      if (!s.ok()) return s.status();
      std::cerr << "[luxdb] single queries, " << config.clients[i]
                << " clients: " << static_cast<int>(s->qps()) << " q/s, p50 " << s->p50_ms
                << " ms, p99 " << s->p99_ms << " ms" << Background(s->background_cores)
                << std::endl;
      lr->single[i].Add(*s);
    }
  }

  if (l) {
    if (l->server_pid() != 0) {
      lr->vm_hwm_bytes = ProcStatusBytes(l->server_pid(), "VmHWM");
      lr->vm_rss_bytes = ProcStatusBytes(l->server_pid(), "VmRSS");
    }
    if (config.run_python) {
      auto reference = [&] {
        if (!h) return;
        BatchQueryResult b = h->BatchQuery(config.single_ef);
        std::cerr << "[hnswlib] batch ef=" << config.single_ef
                  << " beside the Python rows: " << static_cast<int>(b.qps()) << " q/s"
                  << Background(b.background_cores) << std::endl;
        hr->batch_beside_python.Add(b);
      };
      reference();
      std::cerr << "[python] " << config.python_script << " on the kept index..." << std::endl;
      absl::StatusOr<std::map<std::string, double>> python = l->PythonClients();
      if (!python.ok()) return python.status();
      lr->python = *std::move(python);
      reference();
    }
    if (absl::Status s = l->DropKept(); !s.ok()) return s;
  }
  // Further ingest runs: the concurrent clients, and the repeats of both sides.
  for (int r = 0; r < config.ingest_repeats; ++r) {
    if (h && r > 0) hnswlib_build();
    if (l && r > 0) {
      if (absl::Status s = luxdb_ingest(1, /*keep=*/false); !s.ok()) return s;
    }
    if (l && config.concurrent_ingest) {
      if (absl::Status s = luxdb_ingest(2, /*keep=*/false); !s.ok()) return s;
    }
  }
  if (h) h->Free();
  if (l) {
    if (l->server_pid() != 0) {
      lr->vm_hwm_final_bytes = ProcStatusBytes(l->server_pid(), "VmHWM");
    }
    if (absl::Status s = l->Stop(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  // Debian's Abseil checks every absl::Mutex (gRPC's locks) for lock-order cycles, recording
  // stack traces: CPU the bench's client threads would take from the server on a shared
  // machine. The bench is not what is measured, so it skips that.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  bool help = false;
  absl::StatusOr<Config> config = ParseArgs(argc, argv, &help);
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  if (!config.ok()) {
    std::cerr << "luxdb-bench: " << config.status().message() << "\n";
    return 2;
  }
  const auto facts = MachineFacts(*config);
  std::cout << "command: " << config->command_line << "\n";
  for (const auto& [name, value] : facts) std::cout << name << ": " << value << "\n";
  std::cout << std::flush;
  if (config->workload == Workload::kMixed) return RunMixed(*config);
  if (config->workload == Workload::kChurn) return RunChurn(*config);
  if (config->workload == Workload::kFiltered) return RunFiltered(*config);

  Clock::time_point start = Clock::now();
  absl::StatusOr<Dataset> data = LoadDataset(*config);
  if (!data.ok()) {
    std::cerr << "luxdb-bench: " << data.status().message() << "\n";
    return 1;
  }
  std::cout << "data: " << data->source << ": " << data->n << " base x " << data->dim << ", "
            << data->nq << " queries (loaded in " << SecondsSince(start) << " s)\n";
  absl::StatusOr<GroundTruth> truth = LoadOrComputeGroundTruth(*data, config->k, config->threads);
  if (!truth.ok()) {
    std::cerr << "luxdb-bench: " << truth.status().message() << "\n";
    return 1;
  }
  std::cout << "ground truth: " << truth->cache_file
            << (truth->from_cache ? " (cached)"
                                  : absl::StrCat(" (computed in ", truth->seconds, " s)"))
            << "\n"
            << std::flush;

  std::optional<HnswlibResult> hnswlib;
  std::optional<LuxdbResult> luxdb;
  if (absl::Status s = Run(*config, *data, *truth, &hnswlib, &luxdb); !s.ok()) {
    std::cerr << "luxdb-bench: " << s.message() << "\n";
    return 1;
  }
  Report(*config, *data, *truth, facts, hnswlib, luxdb);
  return 0;
}

}  // namespace
}  // namespace luxdb::bench

int main(int argc, char** argv) { return luxdb::bench::Main(argc, argv); }
