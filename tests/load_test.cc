// The load/soak test: 16 clients, each with its own luxdb::Client, drive a real luxdb-server
// process (auth on, --threads 2) for LUXDB_LOAD_SECONDS (default 60) with a mix of AddItems,
// DeleteItems, QueryIndex, GetElements, GetIds, DescribeIndex and ListIndexes on four indexes
// of different metric and dimension, while one client creates, fills and deletes a fifth index
// over and over (calls on it from the others may then be refused with NOT_FOUND or
// FAILED_PRECONDITION; every other refusal is an unexpected error).
//
// The state is bounded so that the server reaches a steady state: every index has a fixed id
// space, filled completely before the clock starts, so that every later AddItems replaces an
// item (reviving it if deleted): the live count stays at most the id space, each replace or
// delete leaves a tombstone that the server's automatic compaction reclaims, and memory should
// stay flat.
//
// Each id has one writer (client c owns the ids congruent to c modulo 16), so every client
// knows exactly what its own ids must hold: the last acknowledged vector, or "deleted". It
// checks its own ids in every answer during the run, and at the end every index is compared
// with the union of those models, once before and once after a clean restart (SIGTERM, exit 0,
// start again on the same data directory): counts, live ids, every stored vector, no deleted
// id in any answer, and self-recall (each live vector of an l2 or cosine index finds itself
// first in at least kMinSelfRecall of the cases).
//
// Reported: per RPC the calls, calls/s, p50/p99/max latency and errors; the server's RSS
// (VmRSS, sampled every 0.5 s) and its fitted growth over the run's second half, which must
// stay under kRssGrowthFraction of its mean or kRssGrowthBytes, whichever is larger; the
// server's CPU time. The figures and the reasons for the bounds: README "Load test".
//
// Run: LUXDB_SERVER_BIN=build/server/luxdb-server build/tests/load_test
// (LUXDB_LOAD_SECONDS=600 for a longer soak, LUXDB_LOAD_SEED=n to repeat a run's choices).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <latch>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "harness/server_process.h"
#include "luxdb/client.h"
#include "tests/test_support.h"

namespace luxdb {
namespace {

using ::luxdb::testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr int kClients = 16;
// Ids 0 .. kIdSpace-1 in every index; client c owns those congruent to c modulo kClients.
constexpr uint64_t kIdSpace = 20000;
constexpr uint64_t kIdsPerClient = kIdSpace / kClients;
static_assert(kIdSpace % kClients == 0);
// Re-adding an id replaces its vector in place (hnswlib's addPoint on an existing label), so
// the stored count never exceeds the id space and the capacity can be exactly that.
constexpr uint64_t kMaxElements = kIdSpace;
constexpr size_t kMaxAddBatch = 50;
constexpr size_t kMaxDeleteBatch = 30;
constexpr size_t kMaxGetBatch = 20;
constexpr size_t kPrefillBatch = 50;
constexpr uint32_t kK = 10;

// The index created and deleted over and over by client 0, one call per step: create, init,
// kChurnAdds batches of kChurnBatch ids, a query, delete.
constexpr uint64_t kChurnIdSpace = 1000;
constexpr uint64_t kChurnMaxElements = 2 * kChurnIdSpace;
constexpr int kChurnAdds = 5;
constexpr size_t kChurnBatch = 50;

constexpr int kServerThreads = 2;
constexpr uint32_t kKdfIterations = 1000;  // both sides; the default 2^18 is the auth tests'
constexpr auto kCallTimeout = std::chrono::seconds(60);
constexpr auto kRssInterval = std::chrono::milliseconds(500);
constexpr double kDefaultSeconds = 60;

// The server's RSS may grow over the second half of the run by at most this fraction of its
// mean there, or by kRssGrowthBytes, whichever is larger (fitted by least squares, so one
// allocator spike does not count). RocksDB's memtables (32 MiB in all, flushed one column
// family of up to 16 MiB at a time) and its block caches fill during the first minutes and
// then saw-tooth: in 60 s runs on this busy 2-core machine the second half grew by 8.5-13.4
// MiB without any leak, in a 12-minute soak (plateau ~140 MiB) by 3.6 MiB. So a 60 s run
// catches only gross leaks (over ~50 MiB/min); LUXDB_LOAD_SECONDS=600 catches ~5 MiB/min.
constexpr double kRssGrowthFraction = 0.05;
constexpr double kRssGrowthBytes = 24 << 20;

// The final check queries every live and deleted vector with this breadth.
constexpr uint32_t kCheckEf = 200;
// Live vectors of l2 and cosine indexes that must find themselves first at kCheckEf. A fresh
// hnswlib 0.6.2 graph of 20,000 uniform 96-d vectors misses ~0.1 %. Replacing vectors in
// place (hnswlib's updatePoint) degraded the graph and left items no search reaches: 1.85 %
// missed after a 10-minute soak. Replaces now insert a new element and compactions rebuild
// the graph without tombstones, so the graph stays as good as a fresh one (README "Load
// test"). An engine searching stale or wrong vectors would miss far more.
constexpr double kMinSelfRecall = 0.995;
// Cosine vectors come back normalised by the server (in float); ours are normalised in
// double, so components of unit vectors may differ by a few ulps.
constexpr float kCosineTolerance = 1e-5f;
// Problems listed in a failure message (all are counted).
constexpr size_t kMaxListedProblems = 20;

struct IndexSpec {
  const char* name;
  Space space;
  uint32_t dim;
};
constexpr IndexSpec kIndexes[] = {{"load-l2-16", Space::kL2, 16},
                                  {"load-ip-64", Space::kIp, 64},
                                  {"load-cosine-128", Space::kCosine, 128},
                                  {"load-l2-96", Space::kL2, 96}};
constexpr IndexSpec kChurnIndex = {"load-churn", Space::kL2, 32};

// ---------------------------------------------------------------------------------------------
// Calls, their latencies and their errors.

enum Rpc {
  kAddItems,
  kDeleteItems,
  kQueryIndex,
  kGetElements,
  kGetIds,
  kDescribeIndex,
  kListIndexes,
  kCreateIndex,
  kInitIndex,
  kDeleteIndex,
  kRpcCount
};
constexpr const char* kRpcNames[kRpcCount] = {
    "AddItems",      "DeleteItems", "QueryIndex",  "GetElements", "GetIds",
    "DescribeIndex", "ListIndexes", "CreateIndex", "InitIndex",   "DeleteIndex"};

// Problems found (unexpected errors, wrong answers): all counted, the first few kept.
class Problems {
 public:
  void Add(std::string what) {
    if (listed_.size() < kMaxListedProblems) listed_.push_back(std::move(what));
    ++count_;
  }
  void Merge(const Problems& other) {
    for (const std::string& what : other.listed_) {
      if (listed_.size() < kMaxListedProblems) listed_.push_back(what);
    }
    count_ += other.count_;
  }
  uint64_t count() const { return count_; }
  std::string Listing() const {
    std::string text =
        absl::StrCat(count_, " problem(s)", count_ > listed_.size() ? ", first " : "",
                     count_ > listed_.size() ? absl::StrCat(listed_.size()) : "", ":\n");
    for (const std::string& what : listed_) absl::StrAppend(&text, "  ", what, "\n");
    return text;
  }

 private:
  std::vector<std::string> listed_;
  uint64_t count_ = 0;
};

struct CallStats {
  std::array<std::vector<float>, kRpcCount> latency_ms;
  std::array<uint64_t, kRpcCount> expected_errors{};
  std::array<uint64_t, kRpcCount> unexpected_errors{};
  uint64_t churn_cycles = 0;

  void Merge(const CallStats& other) {
    for (int r = 0; r < kRpcCount; ++r) {
      latency_ms[r].insert(latency_ms[r].end(), other.latency_ms[r].begin(),
                           other.latency_ms[r].end());
      expected_errors[r] += other.expected_errors[r];
      unexpected_errors[r] += other.unexpected_errors[r];
    }
    churn_cycles += other.churn_cycles;
  }
};

double Percentile(std::vector<float>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p / 100 * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string Table(CallStats stats, double seconds) {
  std::ostringstream out;
  out << std::fixed;
  out << std::left << std::setw(14) << "rpc" << std::right << std::setw(9) << "calls"
      << std::setw(9) << "calls/s" << std::setw(10) << "p50 ms" << std::setw(10) << "p99 ms"
      << std::setw(10) << "max ms" << std::setw(10) << "expected" << std::setw(12) << "unexpected"
      << "\n";
  uint64_t total = 0, expected = 0, unexpected = 0;
  for (int r = 0; r < kRpcCount; ++r) {
    std::vector<float>& ms = stats.latency_ms[r];
    std::sort(ms.begin(), ms.end());
    total += ms.size();
    expected += stats.expected_errors[r];
    unexpected += stats.unexpected_errors[r];
    out << std::left << std::setw(14) << kRpcNames[r] << std::right << std::setw(9) << ms.size()
        << std::setw(9) << std::setprecision(1) << ms.size() / seconds << std::setw(10)
        << std::setprecision(2) << Percentile(ms, 50) << std::setw(10) << Percentile(ms, 99)
        << std::setw(10) << (ms.empty() ? 0.0 : ms.back()) << std::setw(10)
        << stats.expected_errors[r] << std::setw(12) << stats.unexpected_errors[r] << "\n";
  }
  out << std::left << std::setw(14) << "all" << std::right << std::setw(9) << total << std::setw(9)
      << std::setprecision(1) << total / seconds << std::setw(30) << "" << std::setw(10) << expected
      << std::setw(12) << unexpected << "\n";
  return out.str();
}

// ---------------------------------------------------------------------------------------------
// What each index must hold.

// Per id: the last acknowledged vector as sent (empty: never added) and whether it is live.
// Only the owner of an id (a client thread) writes its entries during the run.
struct IndexModel {
  IndexSpec spec;
  std::vector<std::vector<float>> vectors;
  std::vector<uint8_t> live;

  explicit IndexModel(const IndexSpec& spec) : spec(spec), vectors(kIdSpace), live(kIdSpace, 0) {}
};

// What GetElements must return for `sent`: the vector itself, or normalised for cosine.
std::vector<float> Stored(Space space, std::span<const float> sent) {
  std::vector<float> stored(sent.begin(), sent.end());
  if (space != Space::kCosine) return stored;
  double norm = 0;
  for (float x : sent) norm += static_cast<double>(x) * x;
  if (norm == 0) return stored;
  const double scale = 1 / std::sqrt(norm);
  for (float& x : stored) x = static_cast<float>(x * scale);
  return stored;
}

// Whether `got` is what the server must store for `sent`: bit for bit, or within
// kCosineTolerance per component for cosine.
bool SameVector(Space space, std::span<const float> sent, std::span<const float> got) {
  if (sent.size() != got.size()) return false;
  if (space != Space::kCosine) {
    return std::memcmp(sent.data(), got.data(), sent.size_bytes()) == 0;
  }
  const std::vector<float> stored = Stored(space, sent);
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(stored[i] - got[i]) <= kCosineTolerance)) return false;
  }
  return true;
}

std::vector<float> RandomVectors(std::mt19937_64& random, size_t n, uint32_t dim) {
  std::uniform_real_distribution<float> component(-1, 1);
  std::vector<float> vectors(n * dim);
  for (float& x : vectors) x = component(random);
  return vectors;
}

// ---------------------------------------------------------------------------------------------
// One client thread.

class Worker {
 public:
  Worker(int number, std::unique_ptr<Client> client, std::vector<IndexModel>* models, uint64_t seed)
      : number_(number), client_(std::move(client)), models_(*models), random_(seed) {}

  // Adds every id this client owns to every index, recording them in the models.
  void Prefill() {
    for (IndexModel& model : models_) {
      for (uint64_t first = 0; first < kIdsPerClient; first += kPrefillBatch) {
        std::vector<uint64_t> ids;
        for (uint64_t j = first; j < std::min(first + kPrefillBatch, kIdsPerClient); ++j) {
          ids.push_back(OwnId(j));
        }
        Add(model, ids);
      }
    }
  }

  // Calls until `stop`: client 0 spends a quarter of its calls on the churn index's cycle;
  // every client sends a tenth of its calls to the churn index and the rest to a random index:
  // 30 % AddItems (1-50 ids), 15 % DeleteItems (1-30), 35 % QueryIndex, 12 % GetElements
  // (1-20), 5 % DescribeIndex, 2 % GetIds, 1 % ListIndexes. The statistics count from here (a
  // failed prefill call stays among the problems).
  void Run(const std::atomic<bool>& stop) {
    stats_ = CallStats();
    std::uniform_real_distribution<double> choice(0, 1);
    while (!stop.load(std::memory_order_relaxed)) {
      if (number_ == 0 && choice(random_) < 0.25) {
        ChurnStep();
        continue;
      }
      if (choice(random_) < 0.1) {
        TouchChurnIndex();
        continue;
      }
      IndexModel& model = models_[random_() % models_.size()];
      const double op = choice(random_);
      if (op < 0.30) {
        Add(model, PickOwnIds(1 + random_() % kMaxAddBatch));
      } else if (op < 0.45) {
        Delete(model);
      } else if (op < 0.80) {
        Query(model);
      } else if (op < 0.92) {
        GetElements(model);
      } else if (op < 0.97) {
        Describe(model);
      } else if (op < 0.99) {
        GetIds(model);
      } else {
        List();
      }
    }
  }

  const CallStats& stats() const { return stats_; }
  const Problems& problems() const { return problems_; }
  // Client 0's view of the churn index: whether it exists when the run ends.
  bool churn_index_exists() const { return churn_state_ != ChurnState::kAbsent; }

 private:
  enum class ChurnState { kAbsent, kCreated, kFilling, kFilled, kQueried };

  uint64_t OwnId(uint64_t j) const { return number_ + kClients * j; }

  std::vector<uint64_t> PickOwnIds(size_t n) {
    std::vector<uint64_t> ids;
    while (ids.size() < n) {
      const uint64_t id = OwnId(random_() % kIdsPerClient);
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
    return ids;
  }

  // Runs `call` (returning an absl::Status or StatusOr), recording its latency under `rpc`.
  template <typename Call>
  auto Timed(Rpc rpc, Call&& call) {
    const Clock::time_point start = Clock::now();
    auto result = call();
    stats_.latency_ms[rpc].push_back(
        std::chrono::duration<float, std::milli>(Clock::now() - start).count());
    return result;
  }

  void Unexpected(Rpc rpc, absl::string_view index, const absl::Status& status) {
    ++stats_.unexpected_errors[rpc];
    problems_.Add(absl::StrCat("client ", number_, " ", kRpcNames[rpc], " on '", index, "': ",
                               absl::StatusCodeToString(status.code()), ": ", status.message()));
  }
  void Wrong(Rpc rpc, absl::string_view index, absl::string_view what) {
    ++stats_.unexpected_errors[rpc];
    problems_.Add(
        absl::StrCat("client ", number_, " ", kRpcNames[rpc], " on '", index, "': ", what));
  }
  // A refusal by the churn index, which may have been deleted or not yet initialised.
  void ChurnRefusal(Rpc rpc, const absl::Status& status) {
    if (absl::IsNotFound(status) || absl::IsFailedPrecondition(status)) {
      ++stats_.expected_errors[rpc];
    } else {
      Unexpected(rpc, kChurnIndex.name, status);
    }
  }

  void Add(IndexModel& model, const std::vector<uint64_t>& ids) {
    const std::vector<float> vectors = RandomVectors(random_, ids.size(), model.spec.dim);
    absl::StatusOr<uint64_t> added =
        Timed(kAddItems, [&] { return client_->AddItems(model.spec.name, vectors, ids); });
    if (!added.ok()) return Unexpected(kAddItems, model.spec.name, added.status());
    if (*added != ids.size()) {
      Wrong(kAddItems, model.spec.name, absl::StrCat("added ", *added, " of ", ids.size()));
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      const size_t dim = model.spec.dim;
      model.vectors[ids[i]].assign(vectors.begin() + i * dim, vectors.begin() + (i + 1) * dim);
      model.live[ids[i]] = 1;
    }
  }

  void Delete(IndexModel& model) {
    const std::vector<uint64_t> ids = PickOwnIds(1 + random_() % kMaxDeleteBatch);
    uint64_t live = 0;
    for (uint64_t id : ids) live += model.live[id];
    absl::StatusOr<uint64_t> deleted =
        Timed(kDeleteItems, [&] { return client_->DeleteItems(model.spec.name, ids); });
    if (!deleted.ok()) return Unexpected(kDeleteItems, model.spec.name, deleted.status());
    if (*deleted != live) {
      Wrong(kDeleteItems, model.spec.name,
            absl::StrCat("deleted ", *deleted, " of ids {", absl::StrJoin(ids, ","), "}, of which ",
                         live, " were live"));
    }
    for (uint64_t id : ids) model.live[id] = 0;
  }

  // A random query or the vector of one of our live items; none of our deleted items may be
  // in the answer.
  void Query(IndexModel& model) {
    std::vector<float> query = RandomVectors(random_, 1, model.spec.dim);
    if (random_() % 2 == 0) {
      const uint64_t id = OwnId(random_() % kIdsPerClient);
      if (model.live[id]) query = model.vectors[id];
    }
    absl::StatusOr<QueryResult> result =
        Timed(kQueryIndex, [&] { return client_->QueryIndex(model.spec.name, query, kK); });
    if (!result.ok()) return Unexpected(kQueryIndex, model.spec.name, result.status());
    if (result->k != kK || result->ids.size() != kK || result->distances.size() != kK) {
      return Wrong(kQueryIndex, model.spec.name,
                   absl::StrCat("answer of k ", result->k, " with ", result->ids.size(),
                                " ids for one query of k ", kK));
    }
    for (size_t i = 0; i < kK; ++i) {
      const uint64_t id = result->ids[i];
      if (id == kMissingId) continue;
      if (id >= kIdSpace) {
        return Wrong(kQueryIndex, model.spec.name, absl::StrCat("answered unknown id ", id));
      }
      if (id % kClients == static_cast<uint64_t>(number_) && !model.live[id]) {
        return Wrong(kQueryIndex, model.spec.name,
                     absl::StrCat("answered id ", id, ", deleted before the query was sent"));
      }
      if (i > 0 && result->distances[i] < result->distances[i - 1]) {
        return Wrong(kQueryIndex, model.spec.name,
                     absl::StrCat("distances not ascending at rank ", i));
      }
    }
  }

  // Some of our ids: their last vectors if all are live, else NOT_FOUND naming the first
  // deleted one.
  void GetElements(IndexModel& model) {
    const std::vector<uint64_t> ids = PickOwnIds(1 + random_() % kMaxGetBatch);
    absl::StatusOr<Vectors> got =
        Timed(kGetElements, [&] { return client_->GetElements(model.spec.name, ids); });
    const auto first_deleted =
        std::find_if(ids.begin(), ids.end(), [&](uint64_t id) { return !model.live[id]; });
    if (first_deleted != ids.end()) {
      if (absl::IsNotFound(got.status()) &&
          absl::StrContains(got.status().message(), absl::StrCat("id ", *first_deleted, " "))) {
        return;
      }
      return Wrong(kGetElements, model.spec.name,
                   absl::StrCat("want NOT_FOUND naming deleted id ", *first_deleted, ", got ",
                                got.status().ToString()));
    }
    if (!got.ok()) return Unexpected(kGetElements, model.spec.name, got.status());
    if (got->dim != model.spec.dim || got->rows() != ids.size()) {
      return Wrong(kGetElements, model.spec.name,
                   absl::StrCat(got->rows(), " vectors of dimension ", got->dim, " for ",
                                ids.size(), " ids"));
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!SameVector(model.spec.space, model.vectors[ids[i]], got->row(i))) {
        return Wrong(kGetElements, model.spec.name,
                     absl::StrCat("id ", ids[i], " does not hold its last acknowledged vector"));
      }
    }
  }

  // Every id was added before the run; deleted ones no longer count, and the live ones never
  // exceed the id space (tombstones of deleted and replaced items come and go with
  // compactions).
  void Describe(const IndexModel& model) {
    absl::StatusOr<IndexInfo> info =
        Timed(kDescribeIndex, [&] { return client_->DescribeIndex(model.spec.name); });
    if (!info.ok()) return Unexpected(kDescribeIndex, model.spec.name, info.status());
    if (info->dim != model.spec.dim || info->space != model.spec.space ||
        info->max_elements != kMaxElements || !info->initialized ||
        info->element_count > kIdSpace) {
      Wrong(kDescribeIndex, model.spec.name,
            absl::StrCat("dim ", info->dim, ", max_elements ", info->max_elements, ", ",
                         info->element_count, " live; want dim ", model.spec.dim, ", ",
                         kMaxElements, ", at most ", kIdSpace, " live"));
    }
  }

  // The answer's ids that we own must be exactly our live ones.
  void GetIds(const IndexModel& model) {
    absl::StatusOr<std::vector<uint64_t>> ids =
        Timed(kGetIds, [&] { return client_->GetIds(model.spec.name); });
    if (!ids.ok()) return Unexpected(kGetIds, model.spec.name, ids.status());
    if (!std::is_sorted(ids->begin(), ids->end()) ||
        std::adjacent_find(ids->begin(), ids->end()) != ids->end()) {
      return Wrong(kGetIds, model.spec.name, "ids not strictly ascending");
    }
    std::vector<uint64_t> ours, want;
    for (uint64_t id : *ids) {
      if (id % kClients == static_cast<uint64_t>(number_)) ours.push_back(id);
    }
    for (uint64_t j = 0; j < kIdsPerClient; ++j) {
      if (model.live[OwnId(j)]) want.push_back(OwnId(j));
    }
    if (ours != want) {
      Wrong(kGetIds, model.spec.name,
            absl::StrCat(ours.size(), " of our ids listed, ", want.size(), " live"));
    }
  }

  void List() {
    absl::StatusOr<std::vector<IndexInfo>> indexes =
        Timed(kListIndexes, [&] { return client_->ListIndexes(); });
    if (!indexes.ok()) return Unexpected(kListIndexes, "", indexes.status());
    for (const IndexSpec& spec : kIndexes) {
      if (std::none_of(indexes->begin(), indexes->end(),
                       [&](const IndexInfo& info) { return info.name == spec.name; })) {
        return Wrong(kListIndexes, "", absl::StrCat("index '", spec.name, "' not listed"));
      }
    }
  }

  // Client 0 only: the next call of the churn index's cycle. Nobody else creates or deletes
  // it, so each must succeed.
  void ChurnStep() {
    const std::string name = kChurnIndex.name;
    absl::Status status;
    switch (churn_state_) {
      case ChurnState::kAbsent:
        status = Timed(kCreateIndex, [&] {
          return client_->CreateIndex(name, kChurnIndex.space, kChurnIndex.dim);
        });
        if (status.ok()) churn_state_ = ChurnState::kCreated;
        return status.ok() ? void() : Unexpected(kCreateIndex, name, status);
      case ChurnState::kCreated:
        status = Timed(kInitIndex, [&] {
          return client_->InitIndex(name, {.max_elements = kChurnMaxElements});
        });
        if (status.ok()) {
          churn_state_ = ChurnState::kFilling;
          churn_adds_ = 0;
        }
        return status.ok() ? void() : Unexpected(kInitIndex, name, status);
      case ChurnState::kFilling: {
        std::vector<uint64_t> ids;
        while (ids.size() < kChurnBatch) {
          const uint64_t id = random_() % kChurnIdSpace;
          if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
        }
        const std::vector<float> vectors = RandomVectors(random_, ids.size(), kChurnIndex.dim);
        absl::StatusOr<uint64_t> added =
            Timed(kAddItems, [&] { return client_->AddItems(name, vectors, ids); });
        if (!added.ok()) return Unexpected(kAddItems, name, added.status());
        if (++churn_adds_ == kChurnAdds) churn_state_ = ChurnState::kFilled;
        return;
      }
      case ChurnState::kFilled: {
        const std::vector<float> query = RandomVectors(random_, 1, kChurnIndex.dim);
        absl::StatusOr<QueryResult> result =
            Timed(kQueryIndex, [&] { return client_->QueryIndex(name, query, kK); });
        if (!result.ok()) return Unexpected(kQueryIndex, name, result.status());
        if (result->ids.size() != kK || result->ids[0] >= kChurnIdSpace) {
          return Wrong(kQueryIndex, name, "no nearest neighbour in a filled index");
        }
        churn_state_ = ChurnState::kQueried;
        return;
      }
      case ChurnState::kQueried:
        status = Timed(kDeleteIndex, [&] { return client_->DeleteIndex(name); });
        if (!status.ok()) return Unexpected(kDeleteIndex, name, status);
        churn_state_ = ChurnState::kAbsent;
        ++stats_.churn_cycles;
        return;
    }
  }

  // Any client: a call on the churn index, which may not exist or not be initialised.
  void TouchChurnIndex() {
    const std::string name = kChurnIndex.name;
    std::vector<uint64_t> ids;
    const size_t n = 1 + random_() % 20;
    while (ids.size() < n) {
      const uint64_t id = random_() % kChurnIdSpace;
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
    switch (random_() % 5) {
      case 0: {
        const std::vector<float> vectors = RandomVectors(random_, n, kChurnIndex.dim);
        absl::StatusOr<uint64_t> added =
            Timed(kAddItems, [&] { return client_->AddItems(name, vectors, ids); });
        if (!added.ok()) return ChurnRefusal(kAddItems, added.status());
        if (*added != n) Wrong(kAddItems, name, absl::StrCat("added ", *added, " of ", n));
        return;
      }
      case 1: {
        absl::StatusOr<uint64_t> deleted =
            Timed(kDeleteItems, [&] { return client_->DeleteItems(name, ids); });
        if (!deleted.ok()) return ChurnRefusal(kDeleteItems, deleted.status());
        if (*deleted > n) Wrong(kDeleteItems, name, absl::StrCat("deleted ", *deleted, " of ", n));
        return;
      }
      case 2: {
        const std::vector<float> query = RandomVectors(random_, 1, kChurnIndex.dim);
        absl::StatusOr<QueryResult> result =
            Timed(kQueryIndex, [&] { return client_->QueryIndex(name, query, kK); });
        if (!result.ok()) return ChurnRefusal(kQueryIndex, result.status());
        if (result->ids.size() != kK) Wrong(kQueryIndex, name, "wrong answer size");
        return;
      }
      case 3: {
        absl::StatusOr<Vectors> got =
            Timed(kGetElements, [&] { return client_->GetElements(name, ids); });
        if (!got.ok()) return ChurnRefusal(kGetElements, got.status());
        if (got->rows() != n) Wrong(kGetElements, name, "wrong number of vectors");
        return;
      }
      default: {
        absl::StatusOr<IndexInfo> info =
            Timed(kDescribeIndex, [&] { return client_->DescribeIndex(name); });
        if (!info.ok()) return ChurnRefusal(kDescribeIndex, info.status());
        if (info->dim != kChurnIndex.dim) Wrong(kDescribeIndex, name, "wrong dimension");
        return;
      }
    }
  }

  const int number_;
  const std::unique_ptr<Client> client_;
  std::vector<IndexModel>& models_;
  std::mt19937_64 random_;
  CallStats stats_;
  Problems problems_;
  ChurnState churn_state_ = ChurnState::kAbsent;
  int churn_adds_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The final check.

// What the check of one index saw.
struct IndexCheck {
  // What the index shows a client: its live ids and their vectors, bit for bit.
  std::vector<uint64_t> ids;
  std::vector<float> vectors;
  // Self-recall (l2 and cosine): live items queried with their own vector at kCheckEf, those
  // not found first, and of those the ones not found even by a search as broad as the index
  // (no link leads to them: no query can ever return them).
  uint64_t self_queries = 0;
  uint64_t self_misses = 0;
  uint64_t unreachable = 0;
};

std::vector<std::vector<uint64_t>> Chunks(const std::vector<uint64_t>& ids, size_t size) {
  std::vector<std::vector<uint64_t>> chunks;
  for (size_t first = 0; first < ids.size(); first += size) {
    chunks.emplace_back(ids.begin() + first, ids.begin() + std::min(first + size, ids.size()));
  }
  return chunks;
}

// Compares index `model.spec.name` with the model: counts, live ids, every live vector; no
// query (with every live and every deleted vector) answers a deleted id; for l2 and cosine,
// how many live vectors find themselves first. Returns what it saw.
IndexCheck CheckIndex(Client& client, const IndexModel& model, Problems* problems) {
  const std::string name = model.spec.name;
  const uint32_t dim = model.spec.dim;
  std::vector<uint64_t> live, deleted;
  for (uint64_t id = 0; id < kIdSpace; ++id) {
    if (model.live[id]) {
      live.push_back(id);
    } else if (!model.vectors[id].empty()) {
      deleted.push_back(id);
    }
  }
  IndexCheck content;
  std::vector<uint64_t> missed;

  absl::StatusOr<IndexInfo> info = client.DescribeIndex(name);
  if (!info.ok()) {
    problems->Add(absl::StrCat("DescribeIndex '", name, "': ", info.status().ToString()));
  } else if (info->element_count != live.size()) {
    problems->Add(absl::StrCat("index '", name, "' reports ", info->element_count,
                               " live items; the model has ", live.size()));
  }

  absl::StatusOr<std::vector<uint64_t>> ids = client.GetIds(name);
  if (!ids.ok()) {
    problems->Add(absl::StrCat("GetIds '", name, "': ", ids.status().ToString()));
  } else if (*ids != live) {
    std::vector<uint64_t> missing, extra;
    std::set_difference(live.begin(), live.end(), ids->begin(), ids->end(),
                        std::back_inserter(missing));
    std::set_difference(ids->begin(), ids->end(), live.begin(), live.end(),
                        std::back_inserter(extra));
    missing.resize(std::min<size_t>(missing.size(), 10));
    extra.resize(std::min<size_t>(extra.size(), 10));
    problems->Add(absl::StrCat("GetIds '", name, "' lists ", ids->size(), " ids, the model ",
                               live.size(), "; missing e.g. {", absl::StrJoin(missing, ","),
                               "}, extra e.g. {", absl::StrJoin(extra, ","), "}"));
  }
  content.ids = ids.ok() ? *ids : std::vector<uint64_t>();

  uint64_t wrong_vectors = 0;
  for (const std::vector<uint64_t>& chunk : Chunks(live, 1000)) {
    absl::StatusOr<Vectors> got = client.GetElements(name, chunk);
    if (!got.ok() || got->rows() != chunk.size()) {
      problems->Add(absl::StrCat("GetElements '", name, "' of ", chunk.size(),
                                 " live ids: ", got.ok() ? "wrong size" : got.status().ToString()));
      continue;
    }
    content.vectors.insert(content.vectors.end(), got->data.begin(), got->data.end());
    for (size_t i = 0; i < chunk.size(); ++i) {
      if (!SameVector(model.spec.space, model.vectors[chunk[i]], got->row(i))) {
        if (wrong_vectors++ == 0) {
          problems->Add(absl::StrCat("index '", name, "': id ", chunk[i],
                                     " does not hold its last acknowledged vector"));
        }
      }
    }
  }
  if (wrong_vectors > 1) {
    problems->Add(absl::StrCat("index '", name, "': ", wrong_vectors, " ids hold wrong vectors"));
  }

  // Every live vector, then every deleted one, as queries of kCheckEf.
  const bool self_nearest = model.spec.space != Space::kIp;
  uint64_t answered_deleted = 0, short_rows = 0;
  for (const std::vector<uint64_t>* set : {&live, &deleted}) {
    for (const std::vector<uint64_t>& chunk : Chunks(*set, 500)) {
      std::vector<float> queries;
      queries.reserve(chunk.size() * dim);
      for (uint64_t id : chunk) {
        queries.insert(queries.end(), model.vectors[id].begin(), model.vectors[id].end());
      }
      absl::StatusOr<QueryResult> result = client.QueryIndex(name, queries, kK, kCheckEf);
      if (!result.ok() || result->rows() != chunk.size()) {
        problems->Add(absl::StrCat("QueryIndex '", name, "' of ", chunk.size(), " vectors: ",
                                   result.ok() ? "wrong size" : result.status().ToString()));
        continue;
      }
      for (size_t row = 0; row < chunk.size(); ++row) {
        std::span<const uint64_t> answer = result->row_ids(row);
        for (uint64_t id : answer) {
          if (id == kMissingId) {
            ++short_rows;
            break;
          }
          if (id >= kIdSpace || !model.live[id]) {
            if (answered_deleted++ == 0) {
              problems->Add(absl::StrCat("QueryIndex '", name, "' answered id ", id,
                                         ", which is deleted or was never added"));
            }
          }
        }
        if (set == &live && self_nearest) {
          ++content.self_queries;
          if (answer[0] != chunk[row]) missed.push_back(chunk[row]);
        }
      }
    }
  }
  if (answered_deleted > 1) {
    problems->Add(
        absl::StrCat("QueryIndex '", name, "' answered deleted ids ", answered_deleted, " times"));
  }
  if (short_rows > 0) {
    problems->Add(absl::StrCat("QueryIndex '", name, "': ", short_rows, " answers had fewer than ",
                               kK, " results although ", live.size(), " items are live"));
  }

  content.self_misses = missed.size();
  for (uint64_t id : missed) {
    absl::StatusOr<QueryResult> result =
        client.QueryIndex(name, model.vectors[id], 1, static_cast<uint32_t>(kIdSpace));
    if (!result.ok()) {
      problems->Add(absl::StrCat("QueryIndex '", name, "': ", result.status().ToString()));
    } else if (result->ids[0] != id) {
      ++content.unreachable;
    }
  }

  // Deleted items are gone for GetElements too, and the message says so.
  for (size_t i = 0; i < deleted.size(); i += std::max<size_t>(1, deleted.size() / 50)) {
    const uint64_t id = deleted[i];
    absl::StatusOr<Vectors> got = client.GetElements(name, std::vector<uint64_t>{id});
    if (!absl::IsNotFound(got.status()) ||
        !absl::StrContains(got.status().message(), absl::StrCat("id ", id, " (it was deleted)"))) {
      problems->Add(absl::StrCat("GetElements '", name, "' of deleted id ", id,
                                 ": want NOT_FOUND saying it was deleted, got ",
                                 got.status().ToString()));
    }
  }
  return content;
}

// Checks every index and returns what each showed.
std::vector<IndexCheck> CheckAll(Client& client, const std::vector<IndexModel>& models,
                                 bool churn_index_exists, Problems* problems) {
  std::vector<IndexCheck> contents;
  for (const IndexModel& model : models) contents.push_back(CheckIndex(client, model, problems));
  absl::StatusOr<bool> exists = client.IndexExists(kChurnIndex.name);
  if (!exists.ok() || *exists != churn_index_exists) {
    problems->Add(absl::StrCat("IndexExists '", kChurnIndex.name, "': want ", churn_index_exists,
                               ", got ",
                               exists.ok() ? absl::StrCat(*exists) : exists.status().ToString()));
  }
  return contents;
}

std::string SelfRecallReport(const std::vector<IndexCheck>& checks) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3);
  for (size_t i = 0; i < checks.size(); ++i) {
    const IndexCheck& c = checks[i];
    if (c.self_queries == 0) continue;
    out << "  self-recall '" << kIndexes[i].name << "' (ef " << kCheckEf
        << "): " << c.self_queries - c.self_misses << "/" << c.self_queries << " = "
        << 100.0 * (c.self_queries - c.self_misses) / c.self_queries << " %, unreachable "
        << c.unreachable << "\n";
  }
  return out.str();
}

void ExpectSelfRecall(const std::vector<IndexCheck>& checks, absl::string_view when) {
  for (size_t i = 0; i < checks.size(); ++i) {
    const IndexCheck& c = checks[i];
    if (c.self_queries == 0) continue;
    EXPECT_GE(static_cast<double>(c.self_queries - c.self_misses) / c.self_queries, kMinSelfRecall)
        << when << ": index '" << kIndexes[i].name << "': " << c.self_misses << " of "
        << c.self_queries << " live vectors do not find themselves first at ef " << kCheckEf;
  }
}

// ---------------------------------------------------------------------------------------------
// The server's memory over time.

struct RssSample {
  double seconds;  // since the run started
  uint64_t bytes;
};

struct RssFigures {
  double first_half_mean = 0;
  double last_half_mean = 0;
  double slope_bytes_per_s = 0;  // least squares over the last half
  double fitted_growth = 0;      // slope times the last half's duration
  double allowed_growth = 0;
  uint64_t min = 0, max = 0;
  size_t samples = 0;
  std::vector<double> tenths;  // mean of each tenth of the run
};

RssFigures AnalyseRss(const std::vector<RssSample>& samples, double run_seconds) {
  RssFigures f;
  f.samples = samples.size();
  if (samples.empty()) return f;
  f.min = f.max = samples[0].bytes;
  double first_sum = 0, n_first = 0, n_last = 0, st = 0, sb = 0;
  for (const RssSample& s : samples) {
    f.min = std::min(f.min, s.bytes);
    f.max = std::max(f.max, s.bytes);
    if (s.seconds < run_seconds / 2) {
      first_sum += s.bytes;
      ++n_first;
    } else {
      st += s.seconds;
      sb += s.bytes;
      ++n_last;
    }
  }
  f.first_half_mean = n_first > 0 ? first_sum / n_first : 0;
  std::vector<double> sums(10), counts(10);
  for (const RssSample& s : samples) {
    const size_t tenth = std::min<size_t>(9, static_cast<size_t>(s.seconds / run_seconds * 10));
    sums[tenth] += s.bytes;
    ++counts[tenth];
  }
  for (size_t i = 0; i < 10; ++i) {
    if (counts[i] > 0) f.tenths.push_back(sums[i] / counts[i]);
  }
  if (n_last < 2) return f;
  f.last_half_mean = sb / n_last;
  const double mean_t = st / n_last;
  double stt = 0, stb = 0;
  for (const RssSample& s : samples) {
    if (s.seconds < run_seconds / 2) continue;
    stt += (s.seconds - mean_t) * (s.seconds - mean_t);
    stb += (s.seconds - mean_t) * (s.bytes - f.last_half_mean);
  }
  f.slope_bytes_per_s = stt > 0 ? stb / stt : 0;
  f.fitted_growth = f.slope_bytes_per_s * (run_seconds / 2);
  f.allowed_growth = std::max(kRssGrowthFraction * f.last_half_mean, kRssGrowthBytes);
  return f;
}

constexpr double kMiB = 1 << 20;

std::string RssReport(const RssFigures& f) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << "server RSS: " << f.samples << " samples, min "
      << f.min / kMiB << " MiB, max " << f.max / kMiB << " MiB; first-half mean "
      << f.first_half_mean / kMiB << " MiB, last-half mean " << f.last_half_mean / kMiB
      << " MiB; last-half slope " << f.slope_bytes_per_s * 60 / kMiB << " MiB/min, fitted growth "
      << f.fitted_growth / kMiB << " MiB over the last half (allowed " << f.allowed_growth / kMiB
      << " MiB)\n  mean RSS of each tenth of the run (MiB):";
  for (double bytes : f.tenths) out << " " << bytes / kMiB;
  out << "\n";
  return out.str();
}

uint64_t DirectoryBytes(const std::string& path) {
  uint64_t bytes = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path, error)) {
    if (entry.is_regular_file(error)) bytes += entry.file_size(error);
  }
  return bytes;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

absl::StatusOr<std::unique_ptr<Client>> ConnectTo(const harness::ServerProcess& server,
                                                  const std::string& secret, int number) {
  ConnectOptions options;
  options.port = server.port();
  options.secret = secret;
  options.kdf.iterations = kKdfIterations;
  options.call_timeout = kCallTimeout;
  // gRPC shares one TCP connection among channels with identical arguments; a distinct
  // (harmless) message cap per client gives each its own connection, as separate client
  // processes would have.
  options.max_message_bytes -= number;
  return Client::Connect(options);
}

std::string Elapsed(Clock::time_point start) {
  return absl::StrCat(std::chrono::duration<double>(Clock::now() - start).count(), " s");
}

TEST(LoadTest, SixteenClientsReachASteadyStateAndLoseNothingAcrossARestart) {
  const char* binary = std::getenv("LUXDB_SERVER_BIN");
  ASSERT_NE(binary, nullptr) << "set LUXDB_SERVER_BIN to the luxdb-server binary (CTest does)";
  double seconds = kDefaultSeconds;
  if (const char* text = std::getenv("LUXDB_LOAD_SECONDS"); text != nullptr) {
    ASSERT_TRUE(absl::SimpleAtod(text, &seconds) && seconds > 0) << "LUXDB_LOAD_SECONDS=" << text;
  }
  uint64_t seed = std::random_device()();
  if (const char* text = std::getenv("LUXDB_LOAD_SEED"); text != nullptr) {
    ASSERT_TRUE(absl::SimpleAtoi(text, &seed)) << "LUXDB_LOAD_SEED=" << text;
  }
  std::cout << "load test: " << kClients << " clients, " << seconds << " s, seed " << seed
            << " (LUXDB_LOAD_SEED to repeat)" << std::endl;

  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  const std::string secret = harness::RandomSecret();
  harness::ServerProcessOptions options;
  options.binary = binary;
  options.data_dir = data_dir;
  options.secret = secret;
  options.log_path = dir.path() + "/server.log";
  options.threads = kServerThreads;
  options.loglevel = "info";
  options.extra_env = {absl::StrCat("KDF_ITERATIONS=", kKdfIterations)};
  harness::ServerProcess server(std::move(options));
  Clock::time_point started = Clock::now();
  const absl::Status start = server.Start();
  ASSERT_TRUE(start.ok()) << start;
  std::cout << "server pid " << server.pid() << " serving " << data_dir << " on port "
            << server.port() << " (started in " << Elapsed(started) << ")" << std::endl;

  absl::StatusOr<std::unique_ptr<Client>> admin = ConnectTo(server, secret, kClients);
  ASSERT_TRUE(admin.ok()) << admin.status();
  std::vector<IndexModel> models;
  for (const IndexSpec& spec : kIndexes) {
    const absl::Status created = (*admin)->CreateIndex(spec.name, spec.space, spec.dim);
    ASSERT_TRUE(created.ok()) << created;
    const absl::Status initialised = (*admin)->InitIndex(spec.name, {.max_elements = kMaxElements});
    ASSERT_TRUE(initialised.ok()) << initialised;
    models.emplace_back(spec);
  }

  std::vector<std::unique_ptr<Worker>> workers;
  for (int c = 0; c < kClients; ++c) {
    absl::StatusOr<std::unique_ptr<Client>> client = ConnectTo(server, secret, c);
    ASSERT_TRUE(client.ok()) << client.status();
    workers.push_back(std::make_unique<Worker>(c, *std::move(client), &models, seed + c));
  }

  // Fill every index, then run until `stop`.
  std::latch prefilled(kClients + 1), go(1);
  std::atomic<bool> stop = false;
  std::vector<std::thread> threads;
  for (const std::unique_ptr<Worker>& worker : workers) {
    threads.emplace_back([&, w = worker.get()] {
      w->Prefill();
      prefilled.arrive_and_wait();
      go.wait();
      w->Run(stop);
    });
  }
  started = Clock::now();
  prefilled.arrive_and_wait();
  std::cout << "prefilled " << std::size(kIndexes) << " indexes x " << kIdSpace << " items in "
            << Elapsed(started) << std::endl;

  std::vector<RssSample> rss;
  const double server_cpu_start = harness::ProcessCpuSeconds(server.pid());
  const double own_cpu_start = harness::ProcessCpuSeconds(getpid());
  const std::string load_before = LoadAverage();
  const Clock::time_point run_start = Clock::now();
  go.count_down();
  while (Clock::now() < run_start + std::chrono::duration<double>(seconds)) {
    if (std::optional<uint64_t> bytes = harness::ProcessStatusBytes(server.pid(), "VmRSS");
        bytes.has_value()) {
      rss.push_back({std::chrono::duration<double>(Clock::now() - run_start).count(), *bytes});
    }
    std::this_thread::sleep_for(kRssInterval);
  }
  stop = true;
  for (std::thread& thread : threads) thread.join();
  const double run_seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  const double server_cpu = harness::ProcessCpuSeconds(server.pid()) - server_cpu_start;
  const double own_cpu = harness::ProcessCpuSeconds(getpid()) - own_cpu_start;

  CallStats stats;
  Problems during;
  for (const std::unique_ptr<Worker>& worker : workers) {
    stats.Merge(worker->stats());
    during.Merge(worker->problems());
  }
  const bool churn_index_exists = workers[0]->churn_index_exists();
  workers.clear();
  std::cout << "\n" << Table(stats, run_seconds);
  std::cout << "churn index '" << kChurnIndex.name << "': " << stats.churn_cycles
            << " create/init/fill/query/delete cycles\n";
  const RssFigures rss_figures = AnalyseRss(rss, run_seconds);
  std::cout << RssReport(rss_figures);
  std::cout << "data directory: " << DirectoryBytes(data_dir) / kMiB << " MiB\n";
  std::cout << "CPU during the run: server " << server_cpu << " s (" << server_cpu / run_seconds
            << " cores), test process " << own_cpu << " s (" << own_cpu / run_seconds
            << " cores); load average before " << load_before << ", after " << LoadAverage()
            << std::endl;
  EXPECT_EQ(during.count(), 0u) << "unexpected errors or wrong answers during the run: "
                                << during.Listing();
  EXPECT_LE(rss_figures.fitted_growth, rss_figures.allowed_growth)
      << "the server's memory grows in the steady state: " << RssReport(rss_figures);

  // Compactions started by the run's last writes finish before the checks, so that the graph
  // checked is the one the restart loads (its snapshot).
  started = Clock::now();
  for (const IndexSpec& spec : kIndexes) {
    for (;;) {
      absl::StatusOr<IndexInfo> info = (*admin)->DescribeIndex(spec.name);
      ASSERT_TRUE(info.ok()) << info.status();
      if (!info->compacting) break;
      ASSERT_LT(Clock::now() - started, std::chrono::minutes(5))
          << "index '" << spec.name << "' compacts for ever";
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::cout << "compactions settled in " << Elapsed(started) << std::endl;

  Problems before;
  started = Clock::now();
  const std::vector<IndexCheck> checks = CheckAll(**admin, models, churn_index_exists, &before);
  std::cout << "consistency before restart (" << Elapsed(started) << "): " << before.count()
            << " problems\n"
            << SelfRecallReport(checks) << std::flush;
  EXPECT_EQ(before.count(), 0u) << "before restart: " << before.Listing();
  ExpectSelfRecall(checks, "before restart");

  admin->reset();
  started = Clock::now();
  const absl::Status stopped = server.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped;
  std::cout << "SIGTERM: clean exit in " << Elapsed(started) << std::endl;
  started = Clock::now();
  const absl::Status restarted = server.Start();
  ASSERT_TRUE(restarted.ok()) << restarted;
  std::cout << "restarted in " << Elapsed(started) << ", RSS "
            << harness::ProcessStatusBytes(server.pid(), "VmRSS").value_or(0) / kMiB << " MiB"
            << std::endl;
  admin = ConnectTo(server, secret, kClients);
  ASSERT_TRUE(admin.ok()) << admin.status();

  Problems after;
  const std::vector<IndexCheck> checks_after =
      CheckAll(**admin, models, churn_index_exists, &after);
  std::cout << "consistency after restart: " << after.count() << " problems\n"
            << SelfRecallReport(checks_after) << std::flush;
  EXPECT_EQ(after.count(), 0u) << "after restart: " << after.Listing();
  ExpectSelfRecall(checks_after, "after restart");
  for (size_t i = 0; i < checks.size(); ++i) {
    EXPECT_EQ(checks[i].self_misses, checks_after[i].self_misses)
        << "index '" << kIndexes[i].name << "' searches differently after a clean restart";
  }
  for (size_t i = 0; i < models.size(); ++i) {
    EXPECT_EQ(checks[i].ids, checks_after[i].ids) << kIndexes[i].name;
    EXPECT_TRUE(checks[i].vectors.size() == checks_after[i].vectors.size() &&
                std::memcmp(checks[i].vectors.data(), checks_after[i].vectors.data(),
                            checks[i].vectors.size() * sizeof(float)) == 0)
        << "index '" << kIndexes[i].name << "' vectors changed bits across the restart";
  }
  admin->reset();
  const absl::Status final_stop = server.Stop();
  EXPECT_TRUE(final_stop.ok()) << final_stop;
  if (HasFailure()) std::cout << "server log, last lines:\n" << server.LogTail(40) << std::endl;
}

}  // namespace
}  // namespace luxdb
