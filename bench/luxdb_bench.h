// luxdb-bench: LuxDB through gRPC (auth on, sync on) against hnswlib in-process, on the same
// data, parameters, thread count and SIMD flags; and, with --mixed or --churn, the workloads of
// issue 15 against LuxDB alone. This header holds what the parts share: the configuration, the
// data set, the measurements of each side, and /proc helpers. --filtered measures issue 17's
// filtered search against LuxDB alone.
//
//   luxdb_bench.cc          command line, machine facts, orchestration
//   luxdb_bench_data.cc     Fashion-MNIST / synthetic data, exact ground truth (cached), recall
//   luxdb_bench_hnswlib.cc  the in-process reference (the bench's only hnswlib include)
//   luxdb_bench_luxdb.cc    the server process, signed channels, the LuxDB workloads
//   luxdb_bench_report.cc   the table (ratios, targets, PASS/MISS) and the JSON file
//   luxdb_bench_server.cc   --mixed / --churn: servers with auth off, luxdb::Client helpers
//   luxdb_bench_mixed.cc    --mixed: query latency while one client writes
//   luxdb_bench_churn.cc    --churn: replace, delete + add, self-recall and memory
//   luxdb_bench_filtered.cc --filtered: recall, QPS and correctness of filtered queries
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "harness/server_process.h"

namespace luxdb {
class Client;
}  // namespace luxdb

namespace luxdb::bench {

// What one run of luxdb-bench measures.
enum class Workload {
  kCompare,   // LuxDB against hnswlib in-process (issue 7), the default
  kMixed,     // --mixed: single queries idle and while one client writes (issue 15)
  kChurn,     // --churn: replaced and deleted items, self-recall and memory (issue 15)
  kFiltered,  // --filtered: filtered queries against unfiltered and client-side filtering (17)
};

struct Config {
  Workload workload = Workload::kCompare;
  // --mixed, --churn and --filtered: exit 1 when a target is missed (otherwise 0 whenever the
  // run worked; --filtered exits 1 on any result outside its filter, whatever this says).
  bool check = false;

  // --mixed: `mixed_preload` base vectors are loaded first; the writer then streams the next
  // `mixed_stream` in AddItems calls of `write_batch` while `query_clients` clients each send
  // one query (k, `mixed_ef`) at a time. Recall is checked on the first `recall_sample` queries.
  size_t mixed_preload = 20'000;
  size_t mixed_stream = 40'000;
  size_t write_batch = 500;
  int query_clients = 4;
  uint32_t mixed_ef = 40;
  size_t recall_sample = 1'000;

  // --churn: `churn_items` gaussian vectors of `churn_dim` (seeded by `seed`), in an index of
  // that capacity; `churn_rounds` passes of replace and of delete-half + add-new, in AddItems
  // calls of `ingest_batch`; self-recall (k 1, `churn_ef`) over `self_recall_sample` items.
  size_t churn_items = 20'000;
  size_t churn_dim = 64;
  int churn_rounds = 3;
  uint32_t churn_ef = 100;
  size_t self_recall_sample = 5'000;
  double compact_wait_s = 20;  // how long to wait for the server to drop tombstones

  // --filtered: the data (synthetic 100,000 x 128 unless --synthetic or --data-dir is given)
  // with attributes that filters of several selectivities select; `query_clients` clients at
  // `mixed_ef`; per filter, `filtered_rounds` rounds of config.duration_s slices of unfiltered,
  // filtered and client-side-filtered queries, interleaved.
  int filtered_rounds = 5;

  // Data: Fashion-MNIST from data_dir unless synthetic_n > 0: uniform [0,1) floats, or with
  // synthetic_latent > 0 gaussian vectors near a random subspace of that dimension, plus
  // gaussian noise of standard deviation synthetic_noise per coordinate.
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  size_t synthetic_n = 0;
  size_t synthetic_dim = 0;
  size_t synthetic_latent = 0;
  double synthetic_noise = 0.05;
  uint64_t seed = 42;
  size_t base_limit = 0;  // 0: every base vector
  size_t queries = 10'000;
  std::string cache_dir;  // ground truth cache when data_dir is not writable

  // Index and search parameters, the same on both sides.
  uint32_t m = 16;
  uint32_t ef_construction = 200;
  uint32_t k = 10;
  std::vector<uint32_t> batch_efs = {10, 50, 100, 200};
  uint32_t single_ef = 100;
  std::vector<int> clients = {1, 4, 16};
  double duration_s = 10;  // per concurrency level
  size_t ingest_batch = 1000;
  int threads = 2;  // hnswlib threads and the server's --threads
  bool concurrent_ingest = true;
  // Concurrent clients: false (default) gives every client its own channel and TCP
  // connection, like separate processes; true shares one channel (HTTP/2 multiplexing).
  bool shared_channel = false;
  // LuxDB single queries: threads that drive the clients' calls (0: one per client). Each
  // client still has one call in flight at a time; fewer threads cost the bench less CPU on
  // the cores it shares with the server.
  int client_threads = 1;
  uint64_t max_request_bytes = 64ull << 20;  // batch queries are split below this
  // Batch queries: the number of calls, each with a contiguous share of the queries (1: all
  // queries in one call, unless over max_request_bytes), and how many of them are in flight at
  // once (0: all).
  size_t batch_calls = 8;
  size_t batch_in_flight = 2;

  // LuxDB: a server the bench starts, or --address / --secret of a running one.
  std::string server_path;
  std::string address;
  std::string secret;
  pid_t server_pid = 0;  // with --address: the server to read VmHWM from (optional)
  std::string work_dir;  // parent of the temporary data directory
  bool keep_data = false;

  // Runs per metric, interleaved between the two sides; the best run counts (the machine is
  // shared: background load only ever slows a run down).
  int repeats = 2;
  int ingest_repeats = 2;  // the same for the ingest runs (each builds a whole index)

  // The Python rows (issue 16): bench/python_clients.py run on the kept index with
  // /usr/bin/python3 and the build's luxdb package (python_path on PYTHONPATH).
  bool run_python = true;
  std::string python_script = LUXDB_BENCH_PYTHON_SCRIPT;
  std::string python_path = LUXDB_BENCH_PYTHONPATH;

  bool run_hnswlib = true;
  bool run_luxdb = true;
  bool quick = false;
  std::string json_path;
  std::string command_line;
};

struct Dataset {
  std::string name;  // "fashion-mnist" or "synthetic-seed42"
  std::string source;
  size_t n = 0;
  size_t dim = 0;
  size_t nq = 0;
  std::vector<float> base;     // n * dim
  std::vector<float> queries;  // nq * dim
  std::string cache_dir;       // where the ground truth is cached
  std::span<const float> row(size_t i) const { return {base.data() + i * dim, dim}; }
  std::span<const float> query(size_t i) const { return {queries.data() + i * dim, dim}; }
};

// Exact k nearest neighbours of every query (squared L2), re-ranked in double precision.
struct GroundTruth {
  size_t k = 0;
  std::vector<uint32_t> ids;  // nq * k, nearest first
  std::vector<double> kth;    // nq: distance of the k-th neighbour
  double seconds = 0;         // to compute (0 when read from the cache)
  std::string cache_file;
  bool from_cache = false;
};

// Every measurement records how busy the rest of the machine was meanwhile (see
// BackgroundMeter) and the CPU time the server and the bench spent on it.
struct IngestResult {
  size_t vectors = 0;
  double seconds = 0;
  int clients = 0;  // LuxDB: concurrent clients; hnswlib: threads
  double server_cpu_s = 0;
  double client_cpu_s = 0;  // the bench process (hnswlib: the whole build)
  double background_cores = 0;
  double per_second() const { return seconds > 0 ? vectors / seconds : 0; }
  double rate() const { return per_second(); }
};

struct BatchQueryResult {
  uint32_t ef = 0;
  size_t queries = 0;
  int calls = 0;
  int in_flight = 0;  // calls at once
  double seconds = 0;
  double recall = 0;
  double server_cpu_s = 0;
  double client_cpu_s = 0;
  double background_cores = 0;
  double qps() const { return seconds > 0 ? queries / seconds : 0; }
  double rate() const { return qps(); }
};

struct SingleQueryResult {
  int clients = 0;  // hnswlib: threads
  uint64_t queries = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double recall = 0;  // of the answers to the first pass over the queries (a sanity check)
  double server_cpu_s = 0;
  double client_cpu_s = 0;
  double background_cores = 0;
  double qps() const { return seconds > 0 ? queries / seconds : 0; }
  double rate() const { return qps(); }
};

// The runs of one metric (config.repeats of them, interleaved with the other side's): the
// best run stands for the metric, as background load only ever slows a run down.
template <typename Result>
struct Runs {
  std::vector<Result> runs;
  bool empty() const { return runs.empty(); }
  const Result& best() const {
    const Result* best = &runs.front();
    for (const Result& r : runs) best = r.rate() > best->rate() ? &r : best;
    return *best;
  }
  void Add(const Result& r) { runs.push_back(r); }
};

struct HnswlibResult {
  Runs<IngestResult> ingest;
  std::vector<Runs<BatchQueryResult>> batch;  // per config.batch_efs
  Runs<SingleQueryResult> single;
  Runs<SingleQueryResult> single_one_thread;  // the per-query time of the call-path target
  // Batch queries at config.single_ef run just before and just after the Python rows: the
  // reference of their one-call row, measured at the same machine speed.
  Runs<BatchQueryResult> batch_beside_python;
  uint64_t rss_delta_bytes = 0;    // VmRSS after the first build minus before
  uint64_t theoretical_bytes = 0;  // hnswlib's allocations, counted from its fields
  uint64_t graph_file_bytes = 0;   // what saveIndex would write
  std::string simd;                // the distance kernel the compile flags select
};

struct LuxdbResult {
  std::string server;  // path or address
  std::string data_dir;
  std::string data_fs;                          // file system type of the data directory
  Runs<IngestResult> ingest;                    // one client, sequential batches
  Runs<IngestResult> ingest_parallel;           // 2 concurrent clients
  std::vector<Runs<BatchQueryResult>> batch;    // per config.batch_efs
  std::vector<Runs<SingleQueryResult>> single;  // per config.clients
  Runs<SingleQueryResult> floor;                // Health/Check, 1 client (HealthFloor)
  Runs<SingleQueryResult> stream;               // QueryStream, 1 client (StreamQueries)
  uint64_t vm_rss_idle_bytes = 0;               // right after start, before any index exists
  uint64_t vm_hwm_bytes = 0;                    // after ingest + queries of one index
  uint64_t vm_rss_bytes = 0;                    // at the same moment
  uint64_t vm_hwm_final_bytes = 0;              // at the end (after further ingest runs)
  uint64_t data_dir_bytes = 0;                  // after the first ingest
  // What bench/python_clients.py printed: figure name -> value (see the script).
  std::map<std::string, double> python;
};

// Fashion-MNIST or synthetic data as `config` asks.
absl::StatusOr<Dataset> LoadDataset(const Config& config);
// Exact ground truth, read from the cache or computed with config.threads threads and cached.
absl::StatusOr<GroundTruth> LoadOrComputeGroundTruth(const Dataset& data, size_t k, int threads);
// recall@k of `ids` (nq * k, row-major): a returned id counts if its exact distance is within
// the k-th true distance, so ties with the k-th neighbour are not misses.
double Recall(const Dataset& data, const GroundTruth& truth, std::span<const uint64_t> ids,
              size_t k);
double RecallOfRow(const Dataset& data, const GroundTruth& truth, size_t query,
                   std::span<const uint64_t> ids);

// The in-process reference (luxdb_bench_hnswlib.cc).
class HnswlibSide {
 public:
  HnswlibSide(const Config& config, const Dataset& data, const GroundTruth& truth);
  ~HnswlibSide();
  // Builds a new index of every base vector on config.threads threads, replacing the last.
  // The first build also records the memory figures below.
  IngestResult Build();
  // All queries, config.threads threads, one searchKnn per query.
  BatchQueryResult BatchQuery(uint32_t ef);
  // `threads` threads, each searching one query at a time for config.duration_s.
  SingleQueryResult SingleQueries(int threads);
  void Free();
  uint64_t rss_delta_bytes() const;
  uint64_t theoretical_bytes() const;
  uint64_t graph_file_bytes() const;
  std::string simd() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// LuxDB through gRPC (luxdb_bench_luxdb.cc): the server it starts, or one at config.address.
class LuxdbSide {
 public:
  LuxdbSide(const Config& config, const Dataset& data, const GroundTruth& truth);
  ~LuxdbSide();  // stops the server and removes its temporary data directory
  // Starts the server (or derives the key for config.address).
  absl::Status Start();
  // Creates an index and adds every base vector from `clients` concurrent clients in
  // batches of config.ingest_batch, each acknowledged (durable) before that client's next.
  // With keep, the index stays for the queries below (replacing one kept before);
  // otherwise it is deleted.
  absl::StatusOr<IngestResult> Ingest(int clients, bool keep);
  // On the kept index. All queries in as few calls as fit config.max_request_bytes.
  absl::StatusOr<BatchQueryResult> BatchQuery(uint32_t ef);
  // `clients` threads, each sending one query per call for config.duration_s.
  absl::StatusOr<SingleQueryResult> SingleQueries(int clients);
  // gRPC's own floor: grpc.health.v1.Health/Check from one client, one call at a time, through
  // the same channel and completion-queue machinery as SingleQueries, for config.duration_s.
  absl::StatusOr<SingleQueryResult> HealthFloor();
  // Every query, one vector per message, over one QueryStream call from one client: one
  // thread sends, the calling thread reads the answers (recall checked).
  absl::StatusOr<SingleQueryResult> StreamQueries();
  // On the kept index: bench/python_clients.py (config.python_script) with every query, at
  // config.single_ef, config.duration_s / 2 per run and config.repeats runs; its figures.
  absl::StatusOr<std::map<std::string, double>> PythonClients();
  // Deletes the kept index.
  absl::Status DropKept();
  absl::Status Stop();

  pid_t server_pid() const;  // 0 if unknown
  const std::string& server() const;
  const std::string& data_dir() const;  // empty with config.address
  const std::string& data_fs() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Prints the table to stdout and writes config.json_path if set. Returns whether every
// target was met (informational; the exit status does not depend on it).
bool Report(const Config& config, const Dataset& data, const GroundTruth& truth,
            const std::vector<std::pair<std::string, std::string>>& facts,
            const std::optional<HnswlibResult>& hnswlib, const std::optional<LuxdbResult>& luxdb);

// /proc helpers. A field of /proc/<pid>/status in bytes ("VmHWM", "VmRSS"); 0 if unreadable.
uint64_t ProcStatusBytes(pid_t pid, const char* field);
// User + system CPU seconds of a process (/proc/<pid>/stat).
using harness::ProcessCpuSeconds;
// Bytes of the regular files under `path`.
uint64_t DirectoryBytes(const std::string& path);
// CPU seconds the whole machine spent busy (/proc/stat, all CPUs, neither idle nor iowait).
double MachineBusySeconds();

// CPU time of one measurement: the server's (if its pid is known), the bench's own, and how
// busy the rest of the machine was meanwhile: busy CPU time of every process minus the bench's
// and the server's, per second of wall time. The machine is shared; a run with much
// background load is not a clean measurement.
class PhaseMeter {
 public:
  explicit PhaseMeter(pid_t server = 0);
  double server_cpu_s() const;
  double self_cpu_s() const;
  double background_cores() const;  // average cores others kept busy since construction
  template <typename Result>
  void Fill(Result* result) const {
    result->server_cpu_s = server_cpu_s();
    result->client_cpu_s = self_cpu_s();
    result->background_cores = background_cores();
  }

 private:
  pid_t server_;
  double machine_start_, self_start_, server_start_;
  std::chrono::steady_clock::time_point start_;
};

// ---- --mixed and --churn (luxdb_bench_server.cc, luxdb_bench_mixed.cc, luxdb_bench_churn.cc)

// A luxdb-server that --mixed, --churn and --filtered start: auth off (--insecure), config.threads,
// sync on, on a temporary data directory of its own, removed when it stops (unless
// config.keep_data). Not thread-safe; the clients it hands out are.
class BenchServer {
 public:
  explicit BenchServer(const Config& config);
  ~BenchServer();  // Stop(), reporting a failure on stderr
  BenchServer(const BenchServer&) = delete;
  BenchServer& operator=(const BenchServer&) = delete;

  // Starts the server and waits until it serves. The error carries its output.
  absl::Status Start();
  // A client with a channel (and TCP connection) of its own. Errors as luxdb::Client::Connect.
  absl::StatusOr<std::unique_ptr<Client>> Connect() const;
  // SIGTERM and a clean exit (see harness::ServerProcess::Stop); OK if not running.
  absl::Status Stop();
  pid_t pid() const;  // 0 when not running
  int port() const;   // on 127.0.0.1, plaintext without tokens; 0 when not running

 private:
  const Config& config_;
  std::string temp_dir_;
  std::unique_ptr<harness::ServerProcess> process_;
};

// Creates index `name` (l2, `dim`) and initialises it with config.m, config.ef_construction
// and `max_elements`. The errors of luxdb::Client::CreateIndex and InitIndex.
absl::Status CreateL2Index(Client& client, const std::string& name, size_t dim, size_t max_elements,
                           const Config& config);

// Adds `ids` (their vectors row-major in `vectors`) to index `name` in AddItems calls of
// `batch` ids, each acknowledged before the next. Stops at the first failed call: `added` then
// counts the ids of the calls before it, and `status` is that call's error, naming the ids.
struct AddResult {
  size_t added = 0;
  absl::Status status;
};
AddResult AddInBatches(Client& client, const std::string& name, std::span<const float> vectors,
                       std::span<const uint64_t> ids, size_t batch);

// One line of the --mixed and --churn tables: a metric, its value, the target and PASS/FAIL
// ("" for information). A row without a metric is a blank line.
struct TargetRow {
  std::string metric;
  std::string value;
  std::string target;
  std::string result;
};
// Prints `rows` with aligned columns and returns how many say FAIL.
int PrintTargetTable(const std::vector<TargetRow>& rows);
inline const char* PassFail(bool pass) { return pass ? "PASS" : "FAIL"; }

// The workloads; each returns the process's exit status (1 if it could not run, or with
// config.check if a target was missed).
int RunMixed(const Config& config);
int RunChurn(const Config& config);
// --filtered: also exits 1 if any result of a filtered query does not match its filter.
int RunFiltered(const Config& config);

// Percentile (0..100) of `values`, which it sorts.
double Percentile(std::vector<double>& values, double percentile);

using Clock = std::chrono::steady_clock;
inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace luxdb::bench
