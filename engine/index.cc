#include "engine/index.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/limits.h"
#include "engine/resources.h"
#include "spdlog/spdlog.h"

namespace luxdb::engine {
namespace {

// Items inserted per thread-pool task: large enough to amortise scheduling, small enough to
// balance the two halves of a batch.
constexpr size_t kAddGrain = 32;
// Below this a float sum of squares has lost its precision to underflow.
constexpr float kMinFloatSquares = 1e-30f;
// Upper bound on the vector bytes one leader commits in a single group.
constexpr size_t kMaxGroupBytes = 64 << 20;

// Scales `v` to unit length as hnswlib's Python bindings do (in float, so results match
// theirs bit for bit); the zero vector stays zero. Where the float sum of squares overflows or
// underflows (components beyond about 1e19 or below 1e-19), it is redone in double, which
// the float path would turn into zeros or huge values.
void Normalize(std::span<float> v) {
  float norm = 0;
  for (float x : v) norm += x * x;
  if (std::isfinite(norm) && norm >= kMinFloatSquares) {
    const float scale = 1.0f / (std::sqrt(norm) + 1e-30f);
    for (float& x : v) x *= scale;
    return;
  }
  double wide = 0;
  for (float x : v) wide += static_cast<double>(x) * x;
  if (wide == 0) return;
  const double scale = 1.0 / std::sqrt(wide);
  for (float& x : v) x = static_cast<float>(x * scale);
}

absl::Status ShuttingDown(absl::string_view index, absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("server shutting down, grace period over; index '", index, "': ", what));
}

// INVALID_ARGUMENT naming the first non-finite component.
absl::Status CheckFinite(absl::string_view index, std::span<const float> vectors, uint32_t dim,
                         absl::string_view what) {
  for (size_t i = 0; i < vectors.size(); ++i) {
    if (!std::isfinite(vectors[i])) {
      return absl::InvalidArgumentError(absl::StrCat(what, " ", i / dim, " for index '", index,
                                                     "' has ", vectors[i], " at component ",
                                                     i % dim, "; components must be finite"));
    }
  }
  return absl::OkStatus();
}

size_t QueryGrain(size_t n, size_t threads) { return std::max<size_t>(1, n / (threads * 4)); }

}  // namespace

struct Index::Writer {
  enum class Kind { kAdd, kDelete, kOther };
  Kind kind = Kind::kOther;
  std::span<const float> vectors;     // kAdd: n * dim, already normalised for cosine
  std::span<const uint64_t> ids;      // kAdd, kDelete
  std::function<absl::Status()> run;  // kOther: runs alone, as leader
  Deadline deadline = kNoDeadline;    // kAdd, kDelete: refused unstored once it passes
  absl::Status status;
  uint64_t count = 0;  // added or newly deleted
  bool done = false;
  std::condition_variable turn;
};

struct Index::CommittedGroup {
  uint64_t ticket = 0;
  storage::IndexConfig after;  // the config stored with the group
  uint64_t items = 0;          // items written
  std::vector<Writer*> accepted;
};

Index::Index(storage::IndexConfig config, std::unique_ptr<HnswGraph> graph,
             const IndexContext& context)
    : name_(config.name),
      dim_(config.dim),
      space_(config.space),
      store_(context.store),
      pool_(context.pool),
      aborting_(context.aborting),
      publish_mu_(context.publish_mu),
      committed_config_(config),
      committed_elements_(graph != nullptr ? graph->element_count() : 0),
      config_(std::move(config)),
      graph_(std::move(graph)) {}

Index::~Index() = default;

IndexInfo Index::Info() const {
  std::shared_lock lock(mu_);
  IndexInfo info;
  info.name = name_;
  info.space = config_.space;
  info.dim = dim_;
  info.initialized = config_.initialized;
  info.m = config_.m;
  info.ef_construction = config_.ef_construction;
  info.ef = config_.ef;
  info.max_elements = config_.max_elements;
  if (graph_) {
    info.deleted_count = graph_->deleted_count();
    info.element_count = graph_->element_count() - info.deleted_count;
  }
  return info;
}

absl::Status Index::CheckUsable() const { return CheckUsable(config_); }

absl::Status Index::CheckUsable(const storage::IndexConfig& config) const {
  if (dropped_) {
    return absl::NotFoundError(absl::StrCat("index '", name_, "' does not exist (deleted)"));
  }
  if (!config.initialized) {
    return absl::FailedPreconditionError(
        absl::StrCat("index '", name_, "' is not initialised; call InitIndex first"));
  }
  return absl::OkStatus();
}

absl::Status Index::RunWriter(Writer* writer) {
  std::unique_lock queue_lock(queue_mu_);
  writers_.push_back(writer);
  // A member of another leader's group leaves the queue before it is done.
  writer->turn.wait(queue_lock, [&] {
    return writer->done || (!writers_.empty() && writers_.front() == writer);
  });
  if (writer->done) return writer->status;
  std::vector<Writer*> group{writer};
  if (writer->kind != Writer::Kind::kOther) {
    size_t bytes = writer->vectors.size_bytes();
    for (auto it = writers_.begin() + 1; it != writers_.end(); ++it) {
      if ((*it)->kind == Writer::Kind::kOther || bytes > kMaxGroupBytes) break;
      bytes += (*it)->vectors.size_bytes();
      group.push_back(*it);
    }
  }
  queue_lock.unlock();

  std::optional<CommittedGroup> committed;
  if (writer->kind == Writer::Kind::kOther) {
    WaitForApplies();
    writer->status = writer->run();
    // Nothing is being applied: config_ and graph_ are the committed state.
    committed_config_ = config_;
    committed_elements_ = graph_ != nullptr ? graph_->element_count() : 0;
  } else {
    committed = CommitGroup(group);
  }

  // Hand the queue on: the next group is checked and stored while this one is applied.
  queue_lock.lock();
  for (size_t i = 0; i < group.size(); ++i) writers_.pop_front();
  if (!writers_.empty()) writers_.front()->turn.notify_one();
  queue_lock.unlock();

  if (committed.has_value()) ApplyGroup(*committed);

  queue_lock.lock();
  for (Writer* member : group) {
    if (member != writer) {
      member->done = true;
      member->turn.notify_one();
    }
  }
  return writer->status;
}

void Index::WaitForApplies() {
  std::unique_lock lock(apply_mu_);
  apply_cv_.wait(lock, [&] { return tickets_applied_ == tickets_issued_; });
}

std::optional<Index::CommittedGroup> Index::CommitGroup(const std::vector<Writer*>& group) {
  // Only leaders change committed_config_ and committed_elements_; dropped_ changes only under
  // a kOther leader, so no apply in flight writes it.
  absl::Status usable =
      aborting_->load() ? ShuttingDown(name_, "nothing written") : CheckUsable(committed_config_);
  if (!usable.ok()) {
    for (Writer* writer : group) writer->status = usable;
    return std::nullopt;
  }
  // What earlier members of this group, then committed groups not yet applied, do to an id,
  // before the graph shows it.
  absl::flat_hash_map<uint64_t, HnswGraph::Presence> pending;
  auto presence = [&](uint64_t id) {
    if (auto it = pending.find(id); it != pending.end()) return it->second;
    {
      std::lock_guard lock(inflight_mu_);
      if (auto it = inflight_.find(id); it != inflight_.end()) return it->second.first;
    }
    return graph_->Find(id);
  };
  uint64_t stored = committed_elements_;
  storage::ItemWrite items;
  std::vector<Writer*> accepted;
  const Deadline now = std::chrono::steady_clock::now();
  for (Writer* writer : group) {
    if (now > writer->deadline) {
      writer->status = absl::DeadlineExceededError(absl::StrCat(
          "index '", name_, "': the call's deadline passed while it waited behind other writes; ",
          writer->kind == Writer::Kind::kAdd ? "nothing added" : "nothing deleted"));
      continue;
    }
    if (writer->kind == Writer::Kind::kAdd) {
      uint64_t fresh = 0;
      for (uint64_t id : writer->ids) fresh += presence(id) == HnswGraph::Presence::kAbsent;
      if (stored + fresh > committed_config_.max_elements) {
        writer->status = absl::ResourceExhaustedError(
            absl::StrCat("index '", name_, "' is full: ", fresh,
                         " new items would exceed max_elements ", committed_config_.max_elements,
                         " (", stored, " stored, deleted items included); call ResizeIndex first"));
        continue;
      }
      stored += fresh;
      for (size_t i = 0; i < writer->ids.size(); ++i) {
        items.Put(writer->ids[i], writer->vectors.subspan(i * dim_, dim_));
        pending[writer->ids[i]] = HnswGraph::Presence::kLive;
      }
      writer->count = writer->ids.size();
    } else {
      absl::flat_hash_set<uint64_t> live;
      absl::Status missing;
      for (uint64_t id : writer->ids) {
        const HnswGraph::Presence p = presence(id);
        if (p == HnswGraph::Presence::kAbsent) {
          missing = absl::NotFoundError(
              absl::StrCat("index '", name_, "' has no item with id ", id, "; nothing deleted"));
          break;
        }
        if (p == HnswGraph::Presence::kLive) live.insert(id);
      }
      if (!missing.ok()) {
        writer->status = missing;
        continue;
      }
      for (uint64_t id : live) {
        items.MarkDeleted(id);
        pending[id] = HnswGraph::Presence::kDeleted;
      }
      writer->count = live.size();
    }
    accepted.push_back(writer);
  }
  if (accepted.empty()) return std::nullopt;

  storage::IndexConfig after = committed_config_;
  ++after.version;
  if (absl::Status committed = store_->Commit(after, items); !committed.ok()) {
    spdlog::error("index '{}': write not committed: {}", name_, committed.ToString());
    for (Writer* writer : accepted) {
      writer->status = absl::Status(committed.code(), absl::StrCat("index '", name_,
                                                                   "': write failed, nothing "
                                                                   "applied: ",
                                                                   committed.message()));
      writer->count = 0;
    }
    return std::nullopt;
  }
  CommittedGroup group_committed{
      .after = after, .items = items.size(), .accepted = std::move(accepted)};
  committed_config_ = after;
  committed_elements_ = stored;
  {
    std::lock_guard lock(apply_mu_);
    group_committed.ticket = tickets_issued_++;
  }
  {
    std::lock_guard lock(inflight_mu_);
    for (const auto& [id, state] : pending) inflight_[id] = {state, group_committed.ticket};
  }
  return group_committed;
}

void Index::ApplyGroup(const CommittedGroup& committed) {
  {
    std::unique_lock lock(apply_mu_);
    apply_cv_.wait(lock, [&] { return tickets_applied_ == committed.ticket; });
  }
  {
    std::unique_lock lock(mu_);
    config_ = committed.after;
    unsnapshotted_items_ += committed.items;
    for (Writer* writer : committed.accepted) {
      absl::Status applied = ApplyToGraph({writer});
      if (absl::IsUnavailable(applied)) {
        // Shutdown past its grace period: storage holds the write, the graph only part of it.
        graph_damaged_ = graph_aborted_ = true;
        writer->status = applied;
      } else if (!applied.ok()) {
        // Storage holds the write; the graph lost part of it (allocation failure). A restart
        // rebuilds the graph from storage.
        graph_damaged_ = true;
        spdlog::critical("index '{}': committed write not applied in memory: {}", name_,
                         applied.ToString());
        writer->status = absl::InternalError(
            absl::StrCat("index '", name_,
                         "': write stored but not searchable until restart: ", applied.message()));
      }
    }
  }
  {
    // The graph now shows this group: forget what it did, unless a later group did more.
    std::lock_guard lock(inflight_mu_);
    for (Writer* writer : committed.accepted) {
      for (uint64_t id : writer->ids) {
        auto it = inflight_.find(id);
        if (it != inflight_.end() && it->second.second == committed.ticket) inflight_.erase(it);
      }
    }
  }
  {
    std::lock_guard lock(apply_mu_);
    ++tickets_applied_;
  }
  apply_cv_.notify_all();
}

absl::Status Index::ApplyToGraph(const std::vector<Writer*>& accepted) {
  for (Writer* writer : accepted) {
    if (writer->kind == Writer::Kind::kDelete) {
      for (uint64_t id : writer->ids) {
        if (graph_->Find(id) != HnswGraph::Presence::kLive) continue;
        if (absl::Status s = graph_->MarkDeleted(id); !s.ok()) return s;
      }
      continue;
    }
    const size_t n = writer->ids.size();
    size_t first = 0;
    if (graph_->element_count() == 0 && n > 0) {  // hnswlib wants its first element alone
      if (absl::Status s = graph_->Add(writer->vectors.data(), writer->ids[0]); !s.ok()) return s;
      first = 1;
    }
    std::mutex error_mu;
    absl::Status error;
    pool_->ParallelFor(n - first, kAddGrain, [&](size_t begin, size_t end) {
      for (size_t i = first + begin; i < first + end; ++i) {
        if (aborting_->load(std::memory_order_relaxed)) {
          std::lock_guard lock(error_mu);
          error.Update(ShuttingDown(name_, "the write is stored and is searchable after restart"));
          return;
        }
        absl::Status s = graph_->Add(writer->vectors.data() + i * dim_, writer->ids[i]);
        if (!s.ok()) {
          std::lock_guard lock(error_mu);
          error.Update(s);
        }
      }
    });
    if (!error.ok()) return error;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Index::Add(std::span<const float> vectors, std::span<const uint64_t> ids,
                                    Deadline deadline) {
  if (vectors.size() != ids.size() * dim_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index '", name_, "' has dimension ", dim_, ": ", ids.size(), " ids need ",
        ids.size() * dim_, " floats, got ", vectors.size(),
        vectors.size() % dim_ == 0 ? absl::StrCat(" (", vectors.size() / dim_, " vectors)")
                                   : std::string()));
  }
  if (absl::Status s = CheckFinite(name_, vectors, dim_, "vector"); !s.ok()) return s;
  {
    absl::flat_hash_map<uint64_t, size_t> position;
    position.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == kMissingId) {
        return absl::InvalidArgumentError(
            absl::StrCat("id ", kMissingId, " (vector ", i, ") for index '", name_,
                         "' is reserved: it marks missing query results"));
      }
      auto [it, inserted] = position.emplace(ids[i], i);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("id ", ids[i], " appears twice in one ",
                                                       "batch for index '", name_, "' (vectors ",
                                                       it->second, " and ", i, ")"));
      }
    }
  }
  if (ids.empty()) {
    std::shared_lock lock(mu_);
    if (absl::Status s = CheckUsable(); !s.ok()) return s;
    return 0;
  }
  std::vector<float> normalized;
  if (space_ == storage::Space::kCosine) {
    normalized.assign(vectors.begin(), vectors.end());
    for (size_t i = 0; i < ids.size(); ++i) {
      Normalize(std::span<float>(normalized).subspan(i * dim_, dim_));
    }
    vectors = normalized;
  }
  Writer writer;
  writer.kind = Writer::Kind::kAdd;
  writer.vectors = vectors;
  writer.ids = ids;
  writer.deadline = deadline;
  if (absl::Status s = RunWriter(&writer); !s.ok()) return s;
  return writer.count;
}

absl::StatusOr<uint64_t> Index::Delete(std::span<const uint64_t> ids, Deadline deadline) {
  Writer writer;
  writer.kind = Writer::Kind::kDelete;
  writer.ids = ids;
  writer.deadline = deadline;
  if (absl::Status s = RunWriter(&writer); !s.ok()) return s;
  return writer.count;
}

absl::StatusOr<size_t> Index::CheckQuery(size_t floats, uint32_t k, uint32_t ef) const {
  if (k < 1 || k > kMaxK) {
    return absl::InvalidArgumentError(absl::StrCat("k must be between 1 and ", kMaxK, ", got ", k,
                                                   " (query of index '", name_, "')"));
  }
  if (ef > kMaxEf) {
    return absl::InvalidArgumentError(absl::StrCat("ef must be at most ", kMaxEf, ", got ", ef,
                                                   " (query of index '", name_, "')"));
  }
  if (floats % dim_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("query vectors for index '", name_, "' hold ", floats,
                     " floats, not a multiple of its dimension ", dim_));
  }
  return floats / dim_;
}

absl::Status Index::Query(std::span<const float> queries, uint32_t k, uint32_t ef,
                          std::span<uint64_t> ids_out, std::span<float> distances_out,
                          Deadline deadline) const {
  absl::StatusOr<size_t> n = CheckQuery(queries.size(), k, ef);
  if (!n.ok()) return n.status();
  if (ids_out.size() != *n * k || distances_out.size() != *n * k) {
    return absl::InternalError("query output buffers have the wrong size");
  }
  if (absl::Status s = CheckFinite(name_, queries, dim_, "query vector"); !s.ok()) return s;

  std::shared_lock lock(mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  const size_t breadth = ef != 0 ? ef : config_.ef;
  const bool cosine = space_ == storage::Space::kCosine;
  std::atomic<bool> aborted = false;
  std::atomic<bool> late = false;
  std::atomic<size_t> answered = 0;
  const bool has_deadline = deadline != kNoDeadline;
  pool_->ParallelFor(*n, QueryGrain(*n, pool_->threads()), [&](size_t begin, size_t end) {
    std::vector<float> normalized(cosine ? dim_ : 0);
    for (size_t i = begin; i < end; ++i) {
      if (aborting_->load(std::memory_order_relaxed)) {
        aborted = true;
        return;
      }
      if (has_deadline &&
          (late.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() > deadline)) {
        late = true;
        answered.fetch_add(i - begin, std::memory_order_relaxed);
        return;
      }
      const float* query = queries.data() + i * dim_;
      if (cosine) {
        std::copy(query, query + dim_, normalized.begin());
        Normalize(normalized);
        query = normalized.data();
      }
      uint64_t* ids = ids_out.data() + i * k;
      float* distances = distances_out.data() + i * k;
      const size_t found = graph_->Search(query, k, breadth, ids, distances);
      std::fill(ids + found, ids + k, kMissingId);
      std::fill(distances + found, distances + k, kMissingDistance);
    }
    if (has_deadline) answered.fetch_add(end - begin, std::memory_order_relaxed);
  });
  if (aborted) return ShuttingDown(name_, "query not finished");
  if (late) {
    return absl::DeadlineExceededError(
        absl::StrCat("query of index '", name_, "' stopped at its deadline with ", answered.load(),
                     " of ", *n, " query vectors answered; nothing returned"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> Index::Ids() const {
  std::shared_lock lock(mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  return graph_->LiveLabels();
}

absl::StatusOr<size_t> Index::CheckIdsLimit(uint64_t limit) const {
  if (limit > kMaxIdsPerPage) {
    return absl::InvalidArgumentError(absl::StrCat("limit must be at most ", kMaxIdsPerPage,
                                                   " ids per page, got ", limit, " (ids of index '",
                                                   name_, "')"));
  }
  return limit == 0 ? kMaxIdsPerPage : limit;
}

absl::StatusOr<IdPage> Index::IdsPage(std::optional<uint64_t> start_after, size_t limit) const {
  std::shared_lock lock(mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  HnswGraph::LabelPage page = graph_->LiveLabelsAfter(start_after, limit);
  return IdPage{std::move(page.labels), page.left_out};
}

absl::Status Index::GetVectors(std::span<const uint64_t> ids, std::span<float> out) const {
  if (out.size() != ids.size() * dim_) {
    return absl::InternalError("element output buffer has the wrong size");
  }
  std::shared_lock lock(mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!graph_->CopyVector(ids[i], out.data() + i * dim_)) {
      return absl::NotFoundError(absl::StrCat(
          "index '", name_, "' has no item with id ", ids[i],
          graph_->Find(ids[i]) == HnswGraph::Presence::kDeleted ? " (it was deleted)" : ""));
    }
  }
  return absl::OkStatus();
}

absl::Status Index::Init(const InitParams& params) {
  const uint64_t max_elements = params.max_elements;
  const uint32_t m = params.m != 0 ? params.m : kDefaultM;
  const uint32_t ef_construction =
      params.ef_construction != 0 ? params.ef_construction : kDefaultEfConstruction;
  const uint64_t seed = params.random_seed != 0 ? params.random_seed : kDefaultRandomSeed;
  if (max_elements < 1 || max_elements > kMaxElements) {
    return absl::InvalidArgumentError(absl::StrCat("max_elements for index '", name_,
                                                   "' must be between 1 and ", kMaxElements,
                                                   ", got ", max_elements));
  }
  if (m < 2 || m > kMaxM) {
    return absl::InvalidArgumentError(
        absl::StrCat("m for index '", name_, "' must be between 2 and ", kMaxM, ", got ", m));
  }
  if (ef_construction > kMaxEfConstruction) {
    return absl::InvalidArgumentError(absl::StrCat("ef_construction for index '", name_,
                                                   "' must be at most ", kMaxEfConstruction,
                                                   ", got ", ef_construction));
  }
  Writer writer;
  writer.run = [&]() -> absl::Status {
    if (dropped_) return CheckUsable();
    if (config_.initialized) {
      return absl::FailedPreconditionError(
          absl::StrCat("index '", name_, "' is already initialised"));
    }
    const uint64_t needed = HnswGraph::EstimateBytes(dim_, m, max_elements);
    const uint64_t available = AvailableMemoryBytes();
    if (needed > available) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "index '", name_, "' with max_elements ", max_elements, " needs about ", needed >> 20,
          " MiB; only ", available >> 20, " MiB of memory is available"));
    }
    absl::StatusOr<std::unique_ptr<HnswGraph>> graph =
        HnswGraph::Create({config_.space, dim_, max_elements, m, ef_construction, seed});
    if (!graph.ok()) return graph.status();
    storage::IndexConfig after = config_;
    after.initialized = true;
    after.max_elements = max_elements;
    after.m = m;
    after.ef_construction = ef_construction;
    after.ef = kDefaultEf;
    after.random_seed = seed;
    if (absl::Status s = store_->UpdateConfig(after); !s.ok()) return s;
    std::unique_lock lock(mu_);
    config_ = after;
    graph_ = *std::move(graph);
    return absl::OkStatus();
  };
  return RunWriter(&writer);
}

absl::Status Index::SetEf(uint32_t ef) {
  if (ef < 1 || ef > kMaxEf) {
    return absl::InvalidArgumentError(
        absl::StrCat("ef for index '", name_, "' must be between 1 and ", kMaxEf, ", got ", ef));
  }
  Writer writer;
  writer.run = [&]() -> absl::Status {
    if (absl::Status s = CheckUsable(); !s.ok()) return s;
    storage::IndexConfig after = config_;
    after.ef = ef;
    if (absl::Status s = store_->UpdateConfig(after); !s.ok()) return s;
    std::unique_lock lock(mu_);
    config_ = after;
    return absl::OkStatus();
  };
  return RunWriter(&writer);
}

absl::Status Index::Resize(uint64_t new_max_elements) {
  if (new_max_elements < 1 || new_max_elements > kMaxElements) {
    return absl::InvalidArgumentError(absl::StrCat("new max_elements for index '", name_,
                                                   "' must be between 1 and ", kMaxElements,
                                                   ", got ", new_max_elements));
  }
  Writer writer;
  writer.run = [&]() -> absl::Status {
    if (absl::Status s = CheckUsable(); !s.ok()) return s;
    const uint64_t stored = graph_->element_count();
    if (new_max_elements < stored) {
      return absl::FailedPreconditionError(absl::StrCat(
          "index '", name_, "' holds ", stored, " items (", graph_->deleted_count(),
          " of them deleted, which still occupy space); cannot resize to ", new_max_elements));
    }
    if (new_max_elements > config_.max_elements) {
      const uint64_t needed =
          HnswGraph::EstimateBytes(dim_, config_.m, new_max_elements - config_.max_elements);
      const uint64_t available = AvailableMemoryBytes();
      if (needed > available) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "growing index '", name_, "' to ", new_max_elements, " elements needs about ",
            needed >> 20, " MiB more; only ", available >> 20, " MiB is available"));
      }
    }
    storage::IndexConfig after = config_;
    after.max_elements = new_max_elements;
    std::unique_lock lock(mu_);
    // Graph first: if it cannot grow, nothing is persisted. If persisting fails, the graph
    // is merely larger than the capacity the config enforces.
    if (absl::Status s = graph_->Resize(new_max_elements); !s.ok()) return s;
    if (absl::Status s = store_->UpdateConfig(after); !s.ok()) return s;
    config_ = after;
    return absl::OkStatus();
  };
  return RunWriter(&writer);
}

void Index::SetSnapshotState(std::optional<uint64_t> version, uint64_t unsnapshotted_items) {
  std::lock_guard lock(snapshot_mu_);
  snapshot_version_ = version;
  unsnapshotted_items_ = unsnapshotted_items;
}

absl::Status Index::SaveSnapshot() {
  std::lock_guard snapshot_lock(snapshot_mu_);
  storage::IndexConfig config;
  uint64_t items = 0;
  const auto started = std::chrono::steady_clock::now();
  {
    std::shared_lock lock(mu_);
    if (dropped_ || !config_.initialized) return absl::OkStatus();
    if (graph_aborted_) {
      spdlog::warn(
          "index '{}': insertion was stopped by the shutdown; graph not saved, the next "
          "start recovers it from the last snapshot and storage",
          name_);
      return absl::OkStatus();
    }
    if (graph_damaged_) {
      return absl::DataLossError(absl::StrCat("index '", name_,
                                              "': graph differs from storage after a failed "
                                              "write; not saved, the next start recovers it"));
    }
    if (snapshot_version_ == config_.version) return absl::OkStatus();
    if (absl::Status s = graph_->Save(store_->TempSnapshotPath(config_.cf_id)); !s.ok()) return s;
    config = config_;
    items = unsnapshotted_items_.exchange(0);
  }
  std::shared_lock publish_lock(*publish_mu_);
  absl::Status published = store_->PublishSnapshot(config.cf_id, config.version);
  if (!published.ok()) {
    unsnapshotted_items_ += items;
    return published;
  }
  snapshot_version_ = config.version;
  spdlog::info("index '{}': graph snapshot at version {} ({} items since the last) in {:.2f} s",
               name_, config.version, items,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  // The snapshot covers the history up to its version. A failure to trim costs disk, not
  // correctness, and the next snapshot trims again.
  if (absl::Status s = store_->TrimHistory(config, config.version); !s.ok()) {
    spdlog::warn("index '{}': history not trimmed: {}", name_, s.ToString());
  }
  return absl::OkStatus();
}

absl::Status Index::Drop(const std::function<absl::Status()>& drop) {
  Writer writer;
  writer.run = [&]() -> absl::Status {
    std::unique_lock lock(mu_);
    if (dropped_) return CheckUsable();
    if (absl::Status s = drop(); !s.ok()) return s;
    dropped_ = true;
    graph_.reset();
    return absl::OkStatus();
  };
  return RunWriter(&writer);
}

}  // namespace luxdb::engine
