// luxdb-bench --churn (issue 15): an index whose items are replaced and deleted must search as
// well as one built afresh from the same data, stay within its capacity, never return a
// deleted item, and give its memory back once compacted. Gaussian vectors (seeded), l2, in
// an index whose capacity is the item count (config.churn_items); every server auth off.
//
//   A, replace:          every item replaced by a new vector (same id) config.churn_rounds
//                        times; self-recall against a fresh index of the final data (the
//                        same server).
//   B, delete + add:     config.churn_rounds rounds of: delete half of the live ids at
//                        random, add as many never-used ids, without ResizeIndex; after each
//                        round no deleted id may come back from a query. Then self-recall,
//                        compaction and the server's RSS against a second, fresh server
//                        holding only a fresh index of the live items.
//
// Self-recall: each of a sample of live items is queried with its own vector (k 1,
// config.churn_ef); the share that finds itself.
#include <algorithm>
#include <iostream>
#include <numeric>
#include <random>
#include <thread>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/luxdb_bench.h"
#include "luxdb/client.h"

namespace luxdb::bench {
namespace {

constexpr char kReplaceIndex[] = "churn-replace";
constexpr char kReplaceFreshIndex[] = "churn-replace-fresh";
constexpr char kDeleteAddIndex[] = "churn-delete-add";
constexpr char kDeleteAddFreshIndex[] = "churn-delete-add-fresh";

// Targets of issue 15.
constexpr double kMaxSelfRecallLoss = 0.002;  // fresh minus churned
constexpr double kRssFactor = 1.1;            // churned server RSS <= 1.1 x fresh + 32 MiB
constexpr uint64_t kRssAllowance = 32ull << 20;

// Deleted-id check after each round of B: this many queries of deleted items' own vectors
// (the likeliest to find them) and as many fresh gaussian ones, k 10.
constexpr size_t kDeletedCheckQueries = 500;
constexpr uint32_t kDeletedCheckK = 10;
constexpr size_t kQueryRowsPerCall = 1000;
constexpr auto kCompactionPoll = std::chrono::milliseconds(250);

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// Every vector any id ever had, the latest one per id: row `id` of a growing array.
class VectorStore {
 public:
  VectorStore(size_t dim, uint64_t seed) : dim_(dim), random_(seed) {}
  size_t dim() const { return dim_; }
  // Gives each of `ids` a new gaussian vector.
  void Renew(std::span<const uint64_t> ids) {
    for (uint64_t id : ids) {
      if ((id + 1) * dim_ > data_.size()) data_.resize((id + 1) * dim_);
      for (size_t j = 0; j < dim_; ++j) data_[id * dim_ + j] = normal_(random_);
    }
  }
  std::span<const float> row(uint64_t id) const { return {data_.data() + id * dim_, dim_}; }
  // The vectors of `ids`, row-major.
  std::vector<float> Rows(std::span<const uint64_t> ids) const {
    std::vector<float> rows;
    rows.reserve(ids.size() * dim_);
    for (uint64_t id : ids) rows.insert(rows.end(), row(id).begin(), row(id).end());
    return rows;
  }
  std::vector<float> Gaussian(size_t n) {
    std::vector<float> rows(n * dim_);
    for (float& x : rows) x = normal_(random_);
    return rows;
  }
  std::mt19937_64& random() { return random_; }

 private:
  const size_t dim_;
  std::mt19937_64 random_;
  std::normal_distribution<float> normal_;
  std::vector<float> data_;
};

std::vector<uint64_t> Iota(uint64_t first, size_t count) {
  std::vector<uint64_t> ids(count);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

// `count` of `ids` (all if fewer), drawn at random.
std::vector<uint64_t> Sample(std::vector<uint64_t> ids, size_t count, std::mt19937_64& random) {
  std::shuffle(ids.begin(), ids.end(), random);
  ids.resize(std::min(count, ids.size()));
  return ids;
}

// The share of `sample` whose own vector, queried at k 1, finds its id.
absl::StatusOr<double> SelfRecall(Client& client, const std::string& index,
                                  const VectorStore& store, std::span<const uint64_t> sample,
                                  uint32_t ef) {
  size_t found = 0;
  for (size_t first = 0; first < sample.size(); first += kQueryRowsPerCall) {
    const auto ids = sample.subspan(first, std::min(kQueryRowsPerCall, sample.size() - first));
    absl::StatusOr<QueryResult> result = client.QueryIndex(index, store.Rows(ids), 1, ef);
    if (!result.ok()) return result.status();
    for (size_t r = 0; r < ids.size(); ++r) found += result->row_ids(r)[0] == ids[r];
  }
  return sample.empty() ? 0.0 : static_cast<double>(found) / sample.size();
}

// How many results of `queries` (k kDeletedCheckK) are ids in `deleted`.
absl::StatusOr<size_t> DeletedReturned(Client& client, const std::string& index,
                                       const std::vector<float>& queries, size_t dim,
                                       const std::unordered_set<uint64_t>& deleted, uint32_t ef) {
  size_t returned = 0;
  const size_t rows = queries.size() / dim;
  for (size_t first = 0; first < rows; first += kQueryRowsPerCall) {
    const size_t count = std::min(kQueryRowsPerCall, rows - first);
    absl::StatusOr<QueryResult> result = client.QueryIndex(
        index, std::span(queries).subspan(first * dim, count * dim), kDeletedCheckK, ef);
    if (!result.ok()) return result.status();
    for (uint64_t id : result->ids) returned += deleted.contains(id);
  }
  return returned;
}

// Compacts `index` (CompactIndex, which returns once the rebuilt graph serves), then waits up
// to config.compact_wait_s until DescribeIndex reports no tombstones and no compaction
// running. Returns what happened, for the report; an error only if a call fails otherwise.
// A server without CompactIndex (UNIMPLEMENTED) is reported, not an error: the wait then
// shows whether it drops its tombstones by itself.
absl::StatusOr<std::string> Compact(Client& client, const std::string& index,
                                    const Config& config) {
  const Clock::time_point start = Clock::now();
  std::string what;
  absl::StatusOr<CompactInfo> compacted = client.CompactIndex(index);
  if (compacted.ok()) {
    what = absl::StrFormat("CompactIndex removed %d tombstones, %d live, in %.1f s",
                           compacted->tombstones_removed, compacted->live, compacted->seconds);
  } else if (compacted.status().code() == absl::StatusCode::kUnimplemented) {
    what = "this server has no CompactIndex";
  } else {
    return compacted.status();
  }
  for (;;) {
    absl::StatusOr<IndexInfo> info = client.DescribeIndex(index);
    if (!info.ok()) return info.status();
    // A server from before issue 15 sends deleted_count only.
    const uint64_t tombstones = std::max(info->tombstones, info->deleted_count);
    if (tombstones == 0 && !info->compacting) {
      return absl::StrFormat("%s; no tombstones after %.1f s", what, SecondsSince(start));
    }
    if (SecondsSince(start) >= config.compact_wait_s) {
      return absl::StrFormat("%s; NOT compacted: %d tombstones%s after %.0f s (--compact-wait)",
                             what, tombstones, info->compacting ? ", a compaction running," : "",
                             config.compact_wait_s);
    }
    std::this_thread::sleep_for(kCompactionPoll);
  }
}

struct Connected {
  std::unique_ptr<BenchServer> server;
  std::unique_ptr<Client> client;
};

absl::StatusOr<Connected> StartServer(const Config& config) {
  Connected connected;
  connected.server = std::make_unique<BenchServer>(config);
  if (absl::Status s = connected.server->Start(); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<Client>> client = connected.server->Connect();
  if (!client.ok()) return client.status();
  connected.client = *std::move(client);
  return connected;
}

// Index `name` with capacity config.churn_items holding `ids` with their vectors in `store`.
absl::Status Build(Client& client, const std::string& name, const VectorStore& store,
                   std::span<const uint64_t> ids, const Config& config) {
  if (absl::Status s = CreateL2Index(client, name, store.dim(), config.churn_items, config);
      !s.ok()) {
    return s;
  }
  return AddInBatches(client, name, store.Rows(ids), ids, config.ingest_batch).status;
}

std::string Recall(double value) { return absl::StrFormat("%.4f", value); }

void Progress(const std::string& what, Clock::time_point start) {
  std::cerr << "[churn] " << what << absl::StrFormat(" (%.1f s)", SecondsSince(start)) << std::endl;
}

}  // namespace

int RunChurn(const Config& config) {
  auto fail = [](const absl::Status& status) {
    std::cerr << "luxdb-bench --churn: " << status.message() << "\n";
    return 1;
  };
  const Clock::time_point start = Clock::now();
  const size_t n = config.churn_items;
  const size_t dim = config.churn_dim;
  VectorStore store(dim, config.seed);
  std::vector<TargetRow> rows;

  // ---- A: replace.
  {
    absl::StatusOr<Connected> a = StartServer(config);
    if (!a.ok()) return fail(a.status());
    Client& client = *a->client;
    const std::vector<uint64_t> all = Iota(0, n);
    store.Renew(all);
    if (absl::Status s = Build(client, kReplaceIndex, store, all, config); !s.ok()) return fail(s);
    Progress(absl::StrCat("A: '", kReplaceIndex, "' holds ", n, " items"), start);
    int passes = 0;
    absl::Status rejected;
    for (; passes < config.churn_rounds; ++passes) {
      store.Renew(all);
      rejected =
          AddInBatches(client, kReplaceIndex, store.Rows(all), all, config.ingest_batch).status;
      if (!rejected.ok()) break;
      Progress(absl::StrCat("A: every item replaced, pass ", passes + 1), start);
    }
    rows.push_back({absl::StrCat("A: replace passes accepted (", n, " items each)"),
                    absl::StrCat(passes, " of ", config.churn_rounds), "all",
                    PassFail(passes == config.churn_rounds)});
    if (!rejected.ok()) std::cout << "A: pass " << passes + 1 << " rejected: " << rejected << "\n";
    // A rejected pass leaves its calls before the failure applied: the store's vectors of
    // the ids it did not reach are newer than the index's, so self-recall is not comparable.
    if (rejected.ok()) {
      const std::vector<uint64_t> sample = Sample(all, config.self_recall_sample, store.random());
      absl::StatusOr<double> churned =
          SelfRecall(client, kReplaceIndex, store, sample, config.churn_ef);
      if (!churned.ok()) return fail(churned.status());
      if (absl::Status s = Build(client, kReplaceFreshIndex, store, all, config); !s.ok()) {
        return fail(s);
      }
      absl::StatusOr<double> fresh =
          SelfRecall(client, kReplaceFreshIndex, store, sample, config.churn_ef);
      if (!fresh.ok()) return fail(fresh.status());
      Progress("A: self-recall measured", start);
      rows.push_back({absl::StrCat("A: self-recall replaced / fresh (", sample.size(), " items)"),
                      absl::StrCat(Recall(*churned), " / ", Recall(*fresh)), "", ""});
      rows.push_back({"A: self-recall fresh - replaced",
                      absl::StrFormat("%+.4f", *fresh - *churned),
                      absl::StrFormat("<= %.3f", kMaxSelfRecallLoss),
                      PassFail(*fresh - *churned <= kMaxSelfRecallLoss)});
    }
    if (absl::Status s = a->server->Stop(); !s.ok()) return fail(s);
  }
  rows.push_back({});

  // ---- B: delete half + add new, without ResizeIndex.
  std::vector<uint64_t> live = Iota(0, n);
  std::unordered_set<uint64_t> deleted;
  uint64_t next_id = n;
  absl::StatusOr<Connected> b = StartServer(config);
  if (!b.ok()) return fail(b.status());
  Client& client = *b->client;
  store.Renew(live);
  if (absl::Status s = Build(client, kDeleteAddIndex, store, live, config); !s.ok()) {
    return fail(s);
  }
  Progress(absl::StrCat("B: '", kDeleteAddIndex, "' holds ", n, " items"), start);
  int accepted = 0;
  size_t deleted_returned = 0, deleted_checked = 0;
  for (int round = 1; round <= config.churn_rounds; ++round) {
    std::shuffle(live.begin(), live.end(), store.random());
    const size_t half = live.size() / 2;
    const std::vector<uint64_t> gone(live.end() - half, live.end());
    live.resize(live.size() - half);
    for (size_t first = 0; first < gone.size(); first += config.ingest_batch) {
      const auto ids =
          std::span(gone).subspan(first, std::min(config.ingest_batch, gone.size() - first));
      if (absl::StatusOr<uint64_t> d = client.DeleteItems(kDeleteAddIndex, ids); !d.ok()) {
        return fail(d.status());
      }
    }
    deleted.insert(gone.begin(), gone.end());
    const std::vector<uint64_t> fresh_ids = Iota(next_id, half);
    next_id += half;
    store.Renew(fresh_ids);
    const AddResult added = AddInBatches(client, kDeleteAddIndex, store.Rows(fresh_ids), fresh_ids,
                                         config.ingest_batch);
    live.insert(live.end(), fresh_ids.begin(), fresh_ids.begin() + added.added);
    if (added.status.ok()) ++accepted;

    const std::vector<uint64_t> probes = Sample(gone, kDeletedCheckQueries, store.random());
    std::vector<float> queries = store.Rows(probes);
    const std::vector<float> random_queries = store.Gaussian(kDeletedCheckQueries);
    queries.insert(queries.end(), random_queries.begin(), random_queries.end());
    absl::StatusOr<size_t> returned =
        DeletedReturned(client, kDeleteAddIndex, queries, dim, deleted, config.churn_ef);
    if (!returned.ok()) return fail(returned.status());
    deleted_returned += *returned;
    deleted_checked += queries.size() / dim;
    Progress(absl::StrFormat("B: round %d: %d deleted, %d of %d new ids added, %d deleted ids "
                             "returned by %d queries",
                             round, half, added.added, half, *returned, queries.size() / dim),
             start);
    if (!added.status.ok()) {
      std::cout << "B: round " << round << " rejected: " << added.status.message() << "\n";
      break;  // the index is full: further rounds would only repeat the failure
    }
  }
  rows.push_back({"B: delete-half + add-new rounds accepted, no resize",
                  absl::StrCat(accepted, " of ", config.churn_rounds), "all",
                  PassFail(accepted == config.churn_rounds)});
  rows.push_back({absl::StrCat("B: deleted ids returned (", deleted_checked, " queries, k ",
                               kDeletedCheckK, ")"),
                  absl::StrCat(deleted_returned), "0", PassFail(deleted_returned == 0)});

  std::sort(live.begin(), live.end());
  const std::vector<uint64_t> sample = Sample(live, config.self_recall_sample, store.random());
  absl::StatusOr<double> churned =
      SelfRecall(client, kDeleteAddIndex, store, sample, config.churn_ef);
  if (!churned.ok()) return fail(churned.status());
  absl::StatusOr<std::string> compaction = Compact(client, kDeleteAddIndex, config);
  if (!compaction.ok()) return fail(compaction.status());
  Progress(absl::StrCat("B: compaction: ", *compaction), start);
  const uint64_t churned_rss = ProcStatusBytes(b->server->pid(), "VmRSS");
  absl::StatusOr<IndexInfo> info = client.DescribeIndex(kDeleteAddIndex);
  if (!info.ok()) return fail(info.status());
  if (absl::Status s = b->server->Stop(); !s.ok()) return fail(s);

  absl::StatusOr<Connected> f = StartServer(config);
  if (!f.ok()) return fail(f.status());
  if (absl::Status s = Build(*f->client, kDeleteAddFreshIndex, store, live, config); !s.ok()) {
    return fail(s);
  }
  absl::StatusOr<double> fresh =
      SelfRecall(*f->client, kDeleteAddFreshIndex, store, sample, config.churn_ef);
  if (!fresh.ok()) return fail(fresh.status());
  const uint64_t fresh_rss = ProcStatusBytes(f->server->pid(), "VmRSS");
  if (absl::Status s = f->server->Stop(); !s.ok()) return fail(s);
  Progress("B: fresh server measured", start);

  rows.push_back({absl::StrCat("B: self-recall churned / fresh (", sample.size(), " items)"),
                  absl::StrCat(Recall(*churned), " / ", Recall(*fresh)), "", ""});
  rows.push_back({"B: self-recall fresh - churned", absl::StrFormat("%+.4f", *fresh - *churned),
                  absl::StrFormat("<= %.3f", kMaxSelfRecallLoss),
                  PassFail(*fresh - *churned <= kMaxSelfRecallLoss)});
  rows.push_back(
      {"B: churned index live / tombstones after compaction",
       absl::StrCat(info->element_count, " / ", std::max(info->tombstones, info->deleted_count)),
       "", ""});
  const double rss_limit = kRssFactor * fresh_rss + kRssAllowance;
  rows.push_back({"B: server VmRSS MiB churned / fresh",
                  absl::StrFormat("%.1f / %.1f", MiB(churned_rss), MiB(fresh_rss)),
                  absl::StrFormat("<= %.1f", MiB(static_cast<uint64_t>(rss_limit))),
                  PassFail(churned_rss > 0 && fresh_rss > 0 && churned_rss <= rss_limit)});

  std::cout << "\nLuxDB --churn: " << n << " gaussian vectors x " << dim << " (seed " << config.seed
            << "), l2, M=" << config.m << " ef_construction=" << config.ef_construction
            << ", capacity " << n << ", batches of " << config.ingest_batch << ", "
            << config.churn_rounds << " rounds; self-recall k=1 ef=" << config.churn_ef
            << "; server --threads " << config.threads << "\nB: compaction: " << *compaction
            << "\n\n";
  const int failed = PrintTargetTable(rows);
  std::cout << "\n--churn: " << (failed == 0 ? "every target met" : absl::StrCat(failed, " FAIL"))
            << " (" << absl::StrFormat("%.0f", SecondsSince(start)) << " s)\n";
  return config.check && failed > 0 ? 1 : 0;
}

}  // namespace luxdb::bench
