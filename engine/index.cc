#include "engine/index.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
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
// Automatic compaction waits for at least this many tombstones: rebuilding a small graph
// frees little, and a write that runs out of room compacts anyway (MakeRoom).
constexpr uint64_t kMinAutoCompactTombstones = 1000;
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

// The planner's switch between an exact scan of the items a filter can match and a filtered
// graph search. With a share s of `live` items matching, a filtered graph search costs about
// its unfiltered cost (some `breadth` * kGraphCostPerBreadth distances) / s, an exact scan
// s * live distances (sequential, cheaper each): they meet at
// s * live = sqrt(live * breadth * kGraphCostPerBreadth). Measured with luxdb-bench --filtered
// (README "Filtered search").
constexpr double kGraphCostPerBreadth = 64;
// Below this share of matching items, a cached filter's graph search compares only matching
// elements with the query (HnswGraph::SearchFiltered's two_hop).
constexpr double kTwoHopShare = 0.3;
// A two-hop search (below) costs about this per unit of breadth instead.
constexpr double kTwoHopCost = 4;
size_t ExactScanLimit(uint64_t live, size_t breadth, double cost = kGraphCostPerBreadth) {
  const double meet = std::sqrt(static_cast<double>(live) * static_cast<double>(breadth) * cost);
  return std::max<size_t>(4 * breadth, static_cast<size_t>(meet));
}

}  // namespace

struct Index::Writer {
  enum class Kind { kAdd, kDelete, kSetAttributes, kOther };
  Kind kind = Kind::kOther;
  std::span<const float> vectors;  // kAdd: n * dim, already normalised for cosine
  std::span<const uint64_t> ids;   // kAdd, kDelete, kSetAttributes
  // kAdd: none or one per id; kSetAttributes: one per id. Checked, and encoded for storage.
  std::vector<ItemAttributes> attributes;
  std::vector<std::string> encoded;
  std::function<absl::Status()> run;  // kOther: runs alone, holding the mutation right
  Deadline deadline = kNoDeadline;    // kAdd, kDelete: refused unstored once it passes
  absl::Status status;
  uint64_t count = 0;  // added or newly deleted
  bool done = false;   // guarded by queue_mu_
  CondVar turn;
};

struct Index::CommittedGroup {
  uint64_t ticket = 0;
  storage::IndexConfig after;  // the config stored with the group
  uint64_t items = 0;          // items written
  std::vector<Writer*> accepted;
};

Index::Index(storage::IndexConfig config, std::unique_ptr<HnswGraph> graph,
             const IndexContext& context, bool loading)
    : name_(config.name),
      dim_(config.dim),
      space_(config.space),
      store_(context.store),
      pool_(context.pool),
      aborting_(context.aborting),
      publish_mu_(context.publish_mu),
      budget_(context.budget),
      compact_threshold_(context.compact_threshold),
      attribute_limits_(context.attribute_limits),
      committed_config_(config) {
  MutexLock lock(&state_mu_);
  config_ = std::move(config);
  loading_ = loading;
  if (graph != nullptr) {
    committed_elements_ = graph->element_count();
    committed_live_ = committed_elements_ - graph->deleted_count();
    graph_bytes_ = HnswGraph::EstimateBytes(dim_, graph->m(), graph->max_elements());
    if (budget_ != nullptr && !budget_->ForceReserve(graph_bytes_)) {
      spdlog::warn(
          "index '{}': its graph ({} MiB) takes the indexes over the memory budget of {} "
          "MiB; new indexes and growth will be refused",
          name_, graph_bytes_ >> 20, budget_->limit() >> 20);
    }
    graph_ = std::move(graph);
  }
}

Index::~Index() {
  {
    MutexLock lock(&compact_mu_);
    if (compaction_cancel_ != nullptr) compaction_cancel_->store(true);
    while (compaction_threads_ > 0) compact_cv_.Wait(&compact_mu_);
  }
  if (budget_ != nullptr) {
    budget_->Release(compaction_bytes_.exchange(0));
    MutexLock lock(&state_mu_);
    budget_->Release(std::exchange(graph_bytes_, 0));
  }
}

IndexInfo Index::Info() const {
  IndexInfo info;
  info.name = name_;
  info.dim = dim_;
  MutexLock lock(&state_mu_);
  info.space = config_.space;
  info.initialized = config_.initialized;
  info.m = config_.m;
  info.ef_construction = config_.ef_construction;
  info.ef = config_.ef;
  info.max_elements = config_.max_elements;
  if (graph_) {
    info.tombstones = info.deleted_count = graph_->deleted_count();
    info.element_count = graph_->live_count();
  }
  info.memory_bytes = graph_bytes_ + compaction_bytes_.load();
  info.compacting = compaction_bytes_.load() != 0;
  info.unsnapshotted_items = unsnapshotted_items_.load();
  if (const int64_t ticks = snapshot_written_ticks_.load(); ticks != kNoSnapshot) {
    info.snapshot_written =
        std::chrono::system_clock::time_point(std::chrono::system_clock::duration(ticks));
  }
  return info;
}

absl::Status Index::CheckUsableLocked() const {
  if (dropped_) {
    return absl::NotFoundError(absl::StrCat("index '", name_, "' does not exist (deleted)"));
  }
  if (loading_) {
    return absl::UnavailableError(absl::StrCat(
        "index '", name_, "' is still loading (the server started recently); retry shortly"));
  }
  if (!load_error_.ok()) return load_error_;
  if (!config_.initialized) {
    return absl::FailedPreconditionError(
        absl::StrCat("index '", name_, "' is not initialised; call InitIndex first"));
  }
  return absl::OkStatus();
}

absl::Status Index::CheckUsable() const {
  MutexLock lock(&state_mu_);
  return CheckUsableLocked();
}

absl::StatusOr<Index::View> Index::Read() const {
  MutexLock lock(&state_mu_);
  if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
  return View{graph_, config_.ef};
}

std::shared_ptr<HnswGraph> Index::graph() const {
  MutexLock lock(&state_mu_);
  return graph_;
}

void Index::ResetCommittedState() {
  MutexLock lock(&state_mu_);
  committed_config_ = config_;
  committed_elements_ = graph_ != nullptr ? graph_->element_count() : 0;
  committed_live_ = graph_ != nullptr ? committed_elements_ - graph_->deleted_count() : 0;
}

absl::Status Index::RunWriter(Writer* writer) {
  std::vector<Writer*> group{writer};
  {
    MutexLock lock(&queue_mu_);
    writers_.push_back(writer);
    // A member of another leader's group leaves the queue before it is done.
    while (!writer->done && writers_.front() != writer) writer->turn.Wait(&queue_mu_);
    if (writer->done) return writer->status;
    if (writer->kind != Writer::Kind::kOther) {
      size_t bytes = writer->vectors.size_bytes();
      for (auto it = writers_.begin() + 1; it != writers_.end(); ++it) {
        if ((*it)->kind == Writer::Kind::kOther || bytes > kMaxGroupBytes) break;
        bytes += (*it)->vectors.size_bytes();
        group.push_back(*it);
      }
    }
  }

  std::optional<CommittedGroup> committed;
  if (writer->kind == Writer::Kind::kOther) {
    WaitForApplies();
    writer->status = writer->run();
    ResetCommittedState();
  } else {
    committed = CommitGroup(group);
  }

  // Hand the queue on: the next group is checked and stored while this one is applied.
  {
    MutexLock lock(&queue_mu_);
    for (size_t i = 0; i < group.size(); ++i) writers_.pop_front();
    if (!writers_.empty()) writers_.front()->turn.Signal();
  }

  if (committed.has_value()) ApplyGroup(*committed);

  MutexLock lock(&queue_mu_);
  for (Writer* member : group) {
    if (member != writer) {
      member->done = true;
      member->turn.Signal();
    }
  }
  return writer->status;
}

void Index::WaitForApplies() {
  MutexLock lock(&apply_mu_);
  while (tickets_applied_ != tickets_issued_) apply_cv_.Wait(&apply_mu_);
}

std::optional<Index::CommittedGroup> Index::CommitGroup(const std::vector<Writer*>& group) {
  absl::Status usable = aborting_->load() ? ShuttingDown(name_, "nothing written") : CheckUsable();
  if (!usable.ok()) {
    for (Writer* writer : group) writer->status = usable;
    return std::nullopt;
  }
  const std::shared_ptr<HnswGraph> current = graph();
  // What earlier members of this group, then committed groups not yet applied, do to an id,
  // before the graph shows it.
  absl::flat_hash_map<uint64_t, HnswGraph::Presence> pending;
  auto presence = [&](uint64_t id) {
    if (auto it = pending.find(id); it != pending.end()) return it->second;
    {
      MutexLock lock(&inflight_mu_);
      if (auto it = inflight_.find(id); it != inflight_.end()) return it->second.first;
    }
    return current->Find(id);
  };
  uint64_t live = committed_live_;
  uint64_t slots = 0;  // new graph elements: every add takes one, replaces included
  storage::ItemWrite items;
  // Whether an id's stored item has attributes once this group's earlier writes are stored.
  absl::flat_hash_map<uint64_t, bool> pending_attributes;
  auto has_attributes = [&](uint64_t id) {
    if (auto it = pending_attributes.find(id); it != pending_attributes.end()) return it->second;
    return committed_attributes_.contains(id);
  };
  std::vector<Writer*> accepted;
  const Deadline now = std::chrono::steady_clock::now();
  for (Writer* writer : group) {
    if (now > writer->deadline) {
      writer->status = absl::DeadlineExceededError(absl::StrCat(
          "index '", name_, "': the call's deadline passed while it waited behind other writes; ",
          writer->kind == Writer::Kind::kAdd      ? "nothing added"
          : writer->kind == Writer::Kind::kDelete ? "nothing deleted"
                                                  : "no attributes changed"));
      continue;
    }
    if (writer->kind == Writer::Kind::kSetAttributes) {
      absl::Status missing;
      for (uint64_t id : writer->ids) {
        const HnswGraph::Presence p = presence(id);
        if (p == HnswGraph::Presence::kLive) continue;
        missing = absl::NotFoundError(
            absl::StrCat("index '", name_, "' has no item with id ", id,
                         p == HnswGraph::Presence::kDeleted ? " (it was deleted)" : "",
                         "; no attributes changed"));
        break;
      }
      if (!missing.ok()) {
        writer->status = missing;
        continue;
      }
      for (size_t i = 0; i < writer->ids.size(); ++i) {
        items.SetAttributes(writer->ids[i], writer->encoded[i]);
        pending_attributes[writer->ids[i]] = !writer->encoded[i].empty();
      }
      writer->count = writer->ids.size();
      accepted.push_back(writer);
      continue;
    }
    if (writer->kind == Writer::Kind::kAdd) {
      uint64_t fresh = 0;
      for (uint64_t id : writer->ids) fresh += presence(id) != HnswGraph::Presence::kLive;
      if (live + fresh > committed_config_.max_elements) {
        writer->status = absl::ResourceExhaustedError(absl::StrCat(
            "index '", name_, "' is full: ", fresh, " new items would exceed max_elements ",
            committed_config_.max_elements, " (", live, " live items); call ResizeIndex first"));
        continue;
      }
      live += fresh;
      slots += writer->ids.size();
      for (size_t i = 0; i < writer->ids.size(); ++i) {
        const std::string_view encoded =
            writer->encoded.empty() ? std::string_view() : writer->encoded[i];
        items.Put(writer->ids[i], writer->vectors.subspan(i * dim_, dim_), encoded,
                  encoded.empty() && has_attributes(writer->ids[i]));
        pending_attributes[writer->ids[i]] = !encoded.empty();
        pending[writer->ids[i]] = HnswGraph::Presence::kLive;
      }
      writer->count = writer->ids.size();
    } else {
      absl::flat_hash_set<uint64_t> newly_deleted;
      absl::Status missing;
      for (uint64_t id : writer->ids) {
        const HnswGraph::Presence p = presence(id);
        if (p == HnswGraph::Presence::kLive) {
          newly_deleted.insert(id);
          continue;
        }
        if (p == HnswGraph::Presence::kDeleted) continue;
        // Not in the graph: never added, or deleted and compacted away (storage knows).
        absl::StatusOr<storage::StoredItem> stored = store_->GetItem(committed_config_, id);
        if (stored.ok() && stored->deleted) continue;
        if (stored.ok() || !absl::IsNotFound(stored.status())) {
          missing = stored.ok() ? absl::InternalError(absl::StrCat(
                                      "index '", name_, "': item ", id,
                                      " is stored but not in the graph; nothing deleted"))
                                : stored.status();
        } else {
          missing = absl::NotFoundError(
              absl::StrCat("index '", name_, "' has no item with id ", id, "; nothing deleted"));
        }
        break;
      }
      if (!missing.ok()) {
        writer->status = missing;
        continue;
      }
      for (uint64_t id : newly_deleted) {
        items.MarkDeleted(id, has_attributes(id));
        pending_attributes[id] = false;
        pending[id] = HnswGraph::Presence::kDeleted;
      }
      live -= newly_deleted.size();
      writer->count = newly_deleted.size();
    }
    accepted.push_back(writer);
  }
  if (accepted.empty()) return std::nullopt;

  if (committed_elements_ + slots > current->max_elements()) {
    if (absl::Status room = MakeRoom(slots); !room.ok()) {
      for (Writer* writer : accepted) {
        writer->status = room;
        writer->count = 0;
      }
      return std::nullopt;
    }
  }

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
  committed_live_ = live;
  for (const auto& [id, has] : pending_attributes) {
    if (has) {
      committed_attributes_.insert(id);
    } else {
      committed_attributes_.erase(id);
    }
  }
  committed_elements_ += slots;
  {
    MutexLock lock(&apply_mu_);
    group_committed.ticket = tickets_issued_++;
  }
  {
    MutexLock lock(&inflight_mu_);
    for (const auto& [id, state] : pending) inflight_[id] = {state, group_committed.ticket};
  }
  return group_committed;
}

absl::StatusOr<std::unique_ptr<HnswGraph>> Index::ReservedCopy(const HnswGraph& graph,
                                                               uint64_t capacity, uint64_t bytes,
                                                               absl::string_view purpose) {
  if (budget_ != nullptr) {
    if (absl::Status s = budget_->Reserve(bytes, purpose); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<HnswGraph>> copy = graph.Copy(capacity);
  if (!copy.ok() && budget_ != nullptr) budget_->Release(bytes);
  return copy;
}

absl::Status Index::MakeRoom(uint64_t slots) {
  WaitForApplies();  // the leader now holds the mutation right
  uint64_t generation = 0;
  bool running = false;
  bool built = false;
  {
    MutexLock lock(&compact_mu_);
    running = compaction_running_;
    built = compaction_build_done_;
    generation = compaction_generation_;
  }
  if (running && built) {
    FinishCompaction(generation);
    ResetCommittedState();
  } else if (running) {
    // A compaction is still building: rather than make the write wait for it, copy the graph
    // into a larger one (a memcpy; readers go on with the old one). The compaction then swaps
    // in a graph of the normal size.
    const std::shared_ptr<HnswGraph> current = graph();
    const uint64_t capacity =
        std::min(kMaxElements, committed_elements_ + std::max(slots, current->max_elements() / 4));
    const uint64_t bytes = HnswGraph::EstimateBytes(dim_, current->m(), capacity);
    absl::StatusOr<std::unique_ptr<HnswGraph>> larger =
        ReservedCopy(*current, capacity, bytes,
                     absl::StrCat("growing index '", name_, "' to ", capacity,
                                  " graph elements while a compaction runs"));
    if (!larger.ok()) return larger.status();
    uint64_t old_bytes = 0;
    {
      MutexLock lock(&state_mu_);
      graph_ = *std::move(larger);
      old_bytes = std::exchange(graph_bytes_, bytes);
    }
    if (budget_ != nullptr) budget_->Release(old_bytes);
    return absl::OkStatus();
  }
  if (committed_elements_ + slots <= graph()->max_elements()) return absl::OkStatus();
  // Compact now, into a graph with room for the group.
  if (absl::Status s = StartCompaction(committed_live_ + slots, "to make room for a write");
      !s.ok()) {
    return s;
  }
  absl::Status result;
  {
    MutexLock lock(&compact_mu_);
    generation = compaction_generation_;
    while (compaction_running_ && compaction_generation_ == generation && !compaction_build_done_) {
      compact_cv_.Wait(&compact_mu_);
    }
    if (!compaction_running_ || compaction_generation_ != generation) {
      for (const CompactionResult& r : compaction_results_) {
        if (r.generation == generation) result = r.status;
      }
      if (result.ok()) result = absl::AbortedError("compaction stopped");
    }
  }
  if (!result.ok()) {
    return absl::Status(result.code(), absl::StrCat("index '", name_, "': no room for ", slots,
                                                    " new graph elements and compaction failed: ",
                                                    result.message()));
  }
  FinishCompaction(generation);
  ResetCommittedState();
  if (committed_elements_ + slots > graph()->max_elements()) {
    return absl::InternalError(absl::StrCat("index '", name_, "': no room for ", slots,
                                            " new graph elements after compaction"));
  }
  return absl::OkStatus();
}

void Index::ApplyGroup(const CommittedGroup& committed) {
  {
    MutexLock lock(&apply_mu_);
    while (tickets_applied_ != committed.ticket) apply_cv_.Wait(&apply_mu_);
  }
  std::shared_ptr<HnswGraph> target;
  {
    MutexLock lock(&state_mu_);
    config_ = committed.after;
    target = graph_;
  }
  unsnapshotted_items_ += committed.items;
  for (Writer* writer : committed.accepted) {
    absl::Status applied = ApplyToGraph(*target, *writer);
    if (applied.ok()) continue;
    MutexLock lock(&state_mu_);
    if (absl::IsUnavailable(applied)) {
      // Shutdown past its grace period: storage holds the write, the graph only part of it.
      graph_damaged_ = graph_aborted_ = true;
      writer->status = applied;
    } else {
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
  {
    // A compaction in flight replays what this group did onto its new graph.
    MutexLock lock(&compact_mu_);
    if (compaction_running_) {
      for (Writer* writer : committed.accepted) {
        compaction_touched_.insert(writer->ids.begin(), writer->ids.end());
      }
    }
  }
  MaybeCompact();
  {
    // The graph now shows this group: forget what it did, unless a later group did more.
    MutexLock lock(&inflight_mu_);
    for (Writer* writer : committed.accepted) {
      for (uint64_t id : writer->ids) {
        auto it = inflight_.find(id);
        if (it != inflight_.end() && it->second.second == committed.ticket) inflight_.erase(it);
      }
    }
  }
  {
    MutexLock lock(&apply_mu_);
    ++tickets_applied_;
  }
  apply_cv_.SignalAll();
}

absl::Status Index::ApplyToGraph(HnswGraph& graph, const Writer& writer) {
  // Marks are set while no insertion runs (hnswlib's construction search reads them plainly).
  // Attributes change around the graph so that a search never meets a live item without its
  // attributes: a new item's before it is inserted, a deleted one's after it is marked.
  // The filter cache follows: a deleted item's element leaves every entry; a replaced item's
  // old element leaves before its new one is inserted, which joins the entries it matches.
  if (writer.kind == Writer::Kind::kDelete) {
    for (uint64_t id : writer.ids) graph.Tombstone(id);
    WriterLock lock(&attributes_mu_);
    for (uint64_t id : writer.ids) attributes_.Remove(id);
    UpdateFilterEntries(graph, writer.ids, /*clear=*/true);
    return absl::OkStatus();
  }
  if (writer.kind == Writer::Kind::kSetAttributes) {
    WriterLock lock(&attributes_mu_);
    for (size_t i = 0; i < writer.ids.size(); ++i) {
      attributes_.Set(writer.ids[i], writer.attributes[i]);
    }
    UpdateFilterEntries(graph, writer.ids, /*clear=*/false);
    return absl::OkStatus();
  }
  {
    WriterLock lock(&attributes_mu_);
    for (size_t i = 0; i < writer.ids.size(); ++i) {
      attributes_.Set(writer.ids[i],
                      writer.attributes.empty() ? ItemAttributes() : writer.attributes[i]);
    }
    UpdateFilterEntries(graph, writer.ids, /*clear=*/true);
  }

  const size_t n = writer.ids.size();
  size_t first = 0;
  if (graph.element_count() == 0 && n > 0) {  // hnswlib wants its first element alone
    if (absl::Status s = graph.Add(writer.vectors.data(), writer.ids[0]); !s.ok()) return s;
    first = 1;
  }
  Mutex error_mu;
  absl::Status error;
  pool_->ParallelFor(n - first, kAddGrain, [&](size_t begin, size_t end) {
    for (size_t i = first + begin; i < first + end; ++i) {
      if (aborting_->load(std::memory_order_relaxed)) {
        MutexLock lock(&error_mu);
        error.Update(ShuttingDown(name_, "the write is stored and is searchable after restart"));
        return;
      }
      absl::Status s = graph.Add(writer.vectors.data() + i * dim_, writer.ids[i]);
      if (!s.ok()) {
        MutexLock lock(&error_mu);
        error.Update(s);
      }
    }
  });
  // A replaced item's old element becomes a tombstone once its new one is in: a query or
  // GetElements during the replace sees the old vector or the new one, never neither.
  graph.TombstoneSuperseded();
  {
    // The new elements join the filter cache's entries they match.
    WriterLock lock(&attributes_mu_);
    UpdateFilterEntries(graph, writer.ids, /*clear=*/false);
  }
  return error;
}

void Index::MaybeCompact() {
  if (compact_threshold_ <= 0) return;
  const std::shared_ptr<HnswGraph> current = graph();
  if (current == nullptr) return;
  const uint64_t tombstones = current->deleted_count();
  const uint64_t elements = current->element_count();
  const uint64_t free = current->max_elements() - std::min(current->max_elements(), elements);
  // Past the threshold, or when a compaction would at least double the free room (a full index
  // whose items are replaced fills its slack with tombstones: start before it runs out).
  if (tombstones < kMinAutoCompactTombstones ||
      (static_cast<double>(tombstones) < compact_threshold_ * elements && free > tombstones)) {
    return;
  }
  {
    MutexLock lock(&compact_mu_);
    if (compaction_running_ || std::chrono::steady_clock::now() < next_auto_compaction_) return;
  }
  if (absl::Status s = StartCompaction(0, "automatic: tombstones passed the threshold"); !s.ok()) {
    spdlog::warn("index '{}': automatic compaction not started: {}", name_, s.ToString());
    MutexLock lock(&compact_mu_);
    next_auto_compaction_ = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  }
}

absl::Status Index::StartCompaction(uint64_t min_capacity, absl::string_view why) {
  const std::shared_ptr<HnswGraph> source = graph();
  uint64_t max_elements = 0;
  {
    MutexLock lock(&state_mu_);
    if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
    max_elements = config_.max_elements;
  }
  {
    MutexLock lock(&compact_mu_);
    if (compaction_running_) {
      return absl::FailedPreconditionError(
          absl::StrCat("index '", name_, "': a compaction is already running"));
    }
  }
  std::vector<HnswGraph::LiveElement> live = source->LiveElements();
  const uint64_t capacity =
      std::max({GraphCapacity(max_elements), min_capacity, static_cast<uint64_t>(live.size())});
  const uint64_t bytes = HnswGraph::EstimateBytes(dim_, source->m(), capacity);
  if (budget_ != nullptr) {
    if (absl::Status s = budget_->Reserve(
            bytes, absl::StrCat("compacting index '", name_, "' (a second graph of ", capacity,
                                " elements while it runs)"));
        !s.ok()) {
      return s;
    }
  }
  compaction_bytes_ = bytes;
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  const auto started = std::chrono::steady_clock::now();
  uint64_t generation = 0;
  {
    MutexLock lock(&compact_mu_);
    generation = ++compaction_generation_;
    compaction_running_ = true;
    compaction_build_done_ = false;
    compaction_built_.reset();
    compaction_touched_.clear();
    compaction_tombstones_ = source->deleted_count();
    compaction_started_ = started;
    compaction_cancel_ = cancel;
    ++compaction_threads_;
  }
  spdlog::info("index '{}': compaction {} started ({}): {} live items, {} tombstones", name_,
               generation, std::string(why), live.size(), source->deleted_count());
  std::thread([this, generation, source, live = std::move(live), capacity, cancel,
               started]() mutable {
    CompactionMain(generation, std::move(source), std::move(live), capacity, std::move(cancel),
                   started);
  }).detach();
  return absl::OkStatus();
}

void Index::CompactionMain(uint64_t generation, std::shared_ptr<const HnswGraph> source,
                           std::vector<HnswGraph::LiveElement> live, uint64_t capacity,
                           std::shared_ptr<std::atomic<bool>> cancel,
                           std::chrono::steady_clock::time_point started) {
  auto stopped = [&] { return cancel->load() || aborting_->load(); };
  absl::Status status;
  std::unique_ptr<HnswGraph> built;
  {
    storage::IndexConfig config;
    {
      MutexLock lock(&state_mu_);
      config = config_;
    }
    absl::StatusOr<std::unique_ptr<HnswGraph>> created = HnswGraph::Create(
        {space_, dim_, capacity, config.m, config.ef_construction, config.random_seed});
    if (created.ok()) {
      built = *std::move(created);
    } else {
      status = created.status();
    }
  }
  for (size_t i = 0; status.ok() && i < live.size(); ++i) {
    if (stopped()) {
      status = absl::AbortedError("compaction cancelled");
      break;
    }
    status = built->Add(source->ElementVector(live[i].element), live[i].label);
  }
  source.reset();
  live = {};
  // Replay what writes did meanwhile, while they go on, until little is left for
  // FinishCompaction to replay with writes held.
  constexpr size_t kFinalCatchUp = 1000;
  for (int round = 0; status.ok() && round < 8; ++round) {
    absl::flat_hash_set<uint64_t> touched;
    {
      MutexLock lock(&compact_mu_);
      if (compaction_touched_.size() <= kFinalCatchUp) break;
      touched.swap(compaction_touched_);
    }
    if (stopped()) {
      status = absl::AbortedError("compaction cancelled");
      break;
    }
    status = CatchUp(*graph(), touched, built);
  }
  bool finish = false;
  bool ended_here = false;  // this thread ended the compaction: it releases the reservation
  {
    MutexLock lock(&compact_mu_);
    if (compaction_running_ && compaction_generation_ == generation) {
      if (status.ok() && !stopped()) {
        compaction_built_ = std::move(built);
        compaction_build_done_ = true;
        finish = true;
      } else {
        if (status.ok()) status = absl::AbortedError("compaction cancelled");
        ended_here = true;
        compaction_running_ = false;
        compaction_cancel_.reset();
        compaction_results_.push_back({generation, status, {}});
        if (compaction_results_.size() > 16) compaction_results_.pop_front();
      }
    }
    compact_cv_.SignalAll();
  }
  if (ended_here) {
    if (budget_ != nullptr) {
      budget_->Release(compaction_bytes_.exchange(0));
    } else {
      compaction_bytes_ = 0;
    }
    spdlog::warn("index '{}': compaction {} did not finish: {}", name_, generation,
                 status.ToString());
  }
  built.reset();
  if (finish) {
    // Swap it in, unless a write that needed the room did already.
    Writer writer;
    writer.run = [&]() -> absl::Status {
      FinishCompaction(generation);
      return absl::OkStatus();
    };
    (void)RunWriter(&writer);
  }
  (void)started;
  MutexLock lock(&compact_mu_);
  --compaction_threads_;
  compact_cv_.SignalAll();
}

absl::Status Index::CatchUp(const HnswGraph& source, const absl::flat_hash_set<uint64_t>& touched,
                            std::unique_ptr<HnswGraph>& target) {
  std::vector<float> vector(dim_);
  for (uint64_t id : touched) {
    const bool live = source.CopyVector(id, vector.data());
    if (!live) {
      target->Tombstone(id);
      continue;
    }
    if (target->element_count() == target->max_elements()) {
      target->TombstoneSuperseded();  // a copy carries marks, not pending supersessions
      absl::StatusOr<std::unique_ptr<HnswGraph>> larger =
          target->Copy(target->max_elements() + std::max<uint64_t>(touched.size(), 16));
      if (!larger.ok()) return larger.status();
      target = *std::move(larger);
    }
    if (absl::Status s = target->Add(vector.data(), id); !s.ok()) return s;
  }
  target->TombstoneSuperseded();
  return absl::OkStatus();
}

void Index::FinishCompaction(uint64_t generation) {
  std::unique_ptr<HnswGraph> built;
  absl::flat_hash_set<uint64_t> touched;
  uint64_t tombstones_before = 0;
  std::chrono::steady_clock::time_point started;
  {
    MutexLock lock(&compact_mu_);
    if (!compaction_running_ || compaction_generation_ != generation || !compaction_build_done_) {
      return;
    }
    built = std::move(compaction_built_);
    touched.swap(compaction_touched_);
    tombstones_before = compaction_tombstones_;
    started = compaction_started_;
  }
  std::shared_ptr<HnswGraph> old = graph();
  absl::Status status = CatchUp(*old, touched, built);
  CompactStats stats;
  if (status.ok()) {
    stats.tombstones_removed =
        old->deleted_count() - std::min(old->deleted_count(), built->deleted_count());
    stats.live = built->live_count();
    const uint64_t bytes = HnswGraph::EstimateBytes(dim_, built->m(), built->max_elements());
    uint64_t old_bytes = 0;
    {
      MutexLock lock(&state_mu_);
      old_bytes = std::exchange(graph_bytes_, bytes);
      graph_ = std::move(built);
    }
    if (budget_ != nullptr) {
      // The reservation moves from the compaction to the graph (re-estimated: a catch-up may
      // have grown it).
      budget_->Release(old_bytes + compaction_bytes_.exchange(0));
      budget_->ForceReserve(bytes);
    } else {
      compaction_bytes_ = 0;
    }
  } else if (budget_ != nullptr) {
    budget_->Release(compaction_bytes_.exchange(0));
  } else {
    compaction_bytes_ = 0;
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  {
    MutexLock lock(&compact_mu_);
    compaction_running_ = false;
    compaction_build_done_ = false;
    compaction_cancel_.reset();
    compaction_results_.push_back({generation, status, stats});
    if (compaction_results_.size() > 16) compaction_results_.pop_front();
    compact_cv_.SignalAll();
  }
  // The old graph goes once the last query holding it finishes (usually now). Its blocks were
  // allocated over time in several malloc arenas; give what they free back to the kernel.
  old.reset();
  malloc_trim(0);
  if (status.ok()) {
    spdlog::info(
        "index '{}': compaction {} done in {:.2f} s: {} live items, {} tombstones removed "
        "({} at the start)",
        name_, generation, stats.seconds, stats.live, stats.tombstones_removed, tombstones_before);
  } else {
    spdlog::warn("index '{}': compaction {} failed: {}", name_, generation, status.ToString());
  }
}

void Index::CancelCompaction(const absl::Status& why) {
  MutexLock lock(&compact_mu_);
  if (!compaction_running_) return;
  if (compaction_cancel_ != nullptr) compaction_cancel_->store(true);
  compaction_running_ = false;
  compaction_build_done_ = false;
  compaction_built_.reset();
  compaction_touched_.clear();
  compaction_cancel_.reset();
  compaction_results_.push_back({compaction_generation_, why, {}});
  if (compaction_results_.size() > 16) compaction_results_.pop_front();
  if (budget_ != nullptr) {
    budget_->Release(compaction_bytes_.exchange(0));
  } else {
    compaction_bytes_ = 0;
  }
  compact_cv_.SignalAll();
}

absl::StatusOr<CompactStats> Index::Compact(Deadline deadline) {
  uint64_t generation = 0;
  Writer writer;
  writer.run = [&]() -> absl::Status {
    if (absl::Status s = CheckUsable(); !s.ok()) return s;
    {
      MutexLock lock(&compact_mu_);
      if (compaction_running_) {
        generation = compaction_generation_;
        return absl::OkStatus();
      }
    }
    if (absl::Status s = StartCompaction(0, "requested"); !s.ok()) return s;
    MutexLock lock(&compact_mu_);
    generation = compaction_generation_;
    return absl::OkStatus();
  };
  if (absl::Status s = RunWriter(&writer); !s.ok()) return s;
  MutexLock lock(&compact_mu_);
  while (true) {
    for (const CompactionResult& result : compaction_results_) {
      if (result.generation != generation) continue;
      if (!result.status.ok()) {
        return absl::Status(result.status.code(),
                            absl::StrCat("compaction of index '", name_,
                                         "' did not finish: ", result.status.message()));
      }
      return result.stats;
    }
    if (compaction_generation_ != generation && !compaction_running_) {
      return absl::AbortedError(absl::StrCat("compaction of index '", name_, "' was superseded"));
    }
    if (deadline == kNoDeadline) {
      compact_cv_.Wait(&compact_mu_);
    } else if (!compact_cv_.WaitUntil(&compact_mu_, deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "compaction of index '", name_, "' still running at the call's deadline; it goes on"));
    }
  }
}

absl::StatusOr<uint64_t> Index::Add(std::span<const float> vectors, std::span<const uint64_t> ids,
                                    Deadline deadline) {
  return Add(vectors, ids, {}, deadline);
}

void Index::UpdateFilterEntries(const HnswGraph& graph, std::span<const uint64_t> ids, bool clear) {
  if (filter_cache_.empty()) return;
  const std::vector<std::shared_ptr<FilterCache::Entry>> entries = filter_cache_.EntriesFor(&graph);
  if (entries.empty()) return;
  for (uint64_t id : ids) {
    const std::optional<uint32_t> element = graph.ElementOf(id);
    if (!element.has_value()) continue;
    for (const std::shared_ptr<FilterCache::Entry>& entry : entries) {
      entry->Set(*element, !clear && attributes_.Matches(*entry->compiled, id));
    }
  }
}

std::shared_ptr<FilterCache::Entry> Index::BuildFilterEntry(
    std::string key, std::shared_ptr<const AttributeIndex::Compiled> compiled,
    const std::shared_ptr<const HnswGraph>& graph) const {
  auto entry = std::make_shared<FilterCache::Entry>();
  entry->key = std::move(key);
  entry->graph = graph;
  entry->key_count = attributes().key_count();
  entry->bits.assign((graph->max_elements() + 63) / 64, 0);
  // The ids the attribute indexes bound the filter to (checked), else every live item.
  std::optional<std::vector<uint64_t>> ids =
      attributes().Candidates(*compiled, std::numeric_limits<size_t>::max() / 2);
  if (ids.has_value()) {
    for (uint64_t id : *ids) {
      if (const std::optional<uint32_t> element = graph->ElementOf(id); element.has_value()) {
        entry->Set(*element, true);
      }
    }
  } else {
    for (const HnswGraph::LiveElement& live : graph->LiveElements()) {
      if (attributes().Matches(*compiled, live.label)) entry->Set(live.element, true);
    }
  }
  entry->compiled = std::move(compiled);
  return entry;
}

absl::Status Index::CheckBatchIds(std::span<const uint64_t> ids, absl::string_view one,
                                  absl::string_view many, bool refuse_missing_id) const {
  absl::flat_hash_map<uint64_t, size_t> position;
  position.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (refuse_missing_id && ids[i] == kMissingId) {
      return absl::InvalidArgumentError(absl::StrCat("id ", kMissingId, " (", one, " ", i,
                                                     ") for index '", name_,
                                                     "' is reserved: it marks missing query "
                                                     "results"));
    }
    auto [it, inserted] = position.emplace(ids[i], i);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("id ", ids[i], " appears twice in one batch for index '", name_, "' (", many,
                       " ", it->second, " and ", i, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Index::PrepareAttributes(std::span<const uint64_t> ids,
                                      std::vector<ItemAttributes>& attributes,
                                      std::vector<std::string>& encoded) const {
  encoded.clear();
  encoded.reserve(attributes.size());
  for (size_t i = 0; i < attributes.size(); ++i) {
    if (absl::Status s = CheckAttributes(attributes[i], attribute_limits_, name_, ids[i]);
        !s.ok()) {
      return s;
    }
    encoded.push_back(EncodeAttributes(attributes[i]));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Index::Add(std::span<const float> vectors, std::span<const uint64_t> ids,
                                    std::vector<ItemAttributes> attributes, Deadline deadline) {
  if (!attributes.empty() && attributes.size() != ids.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("index '", name_, "': ", ids.size(),
                     " ids need attributes for each of them or none, got ", attributes.size()));
  }
  if (vectors.size() != ids.size() * dim_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index '", name_, "' has dimension ", dim_, ": ", ids.size(), " ids need ",
        ids.size() * dim_, " floats, got ", vectors.size(),
        vectors.size() % dim_ == 0 ? absl::StrCat(" (", vectors.size() / dim_, " vectors)")
                                   : std::string()));
  }
  if (absl::Status s = CheckFinite(name_, vectors, dim_, "vector"); !s.ok()) return s;
  if (absl::Status s = CheckBatchIds(ids, "vector", "vectors", /*refuse_missing_id=*/true);
      !s.ok()) {
    return s;
  }
  if (ids.empty()) {
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
  writer.attributes = std::move(attributes);
  if (absl::Status s = PrepareAttributes(ids, writer.attributes, writer.encoded); !s.ok()) {
    return s;
  }
  if (absl::Status s = RunWriter(&writer); !s.ok()) return s;
  return writer.count;
}

absl::StatusOr<uint64_t> Index::SetAttributes(std::span<const uint64_t> ids,
                                              std::vector<ItemAttributes> attributes,
                                              Deadline deadline) {
  if (attributes.size() != ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("index '", name_, "': ", ids.size(),
                                                   " ids need one attributes entry each, got ",
                                                   attributes.size()));
  }
  if (absl::Status s = CheckBatchIds(ids, "entry", "entries", /*refuse_missing_id=*/false);
      !s.ok()) {
    return s;
  }
  if (ids.empty()) {
    if (absl::Status s = CheckUsable(); !s.ok()) return s;
    return 0;
  }
  Writer writer;
  writer.kind = Writer::Kind::kSetAttributes;
  writer.ids = ids;
  writer.deadline = deadline;
  writer.attributes = std::move(attributes);
  if (absl::Status s = PrepareAttributes(ids, writer.attributes, writer.encoded); !s.ok()) {
    return s;
  }
  if (absl::Status s = RunWriter(&writer); !s.ok()) return s;
  return writer.count;
}

absl::StatusOr<std::vector<ItemAttributes>> Index::GetAttributes(
    std::span<const uint64_t> ids) const {
  absl::StatusOr<View> view = Read();
  if (!view.ok()) return view.status();
  std::vector<ItemAttributes> out;
  out.reserve(ids.size());
  ReaderLock lock(&attributes_mu_);
  for (uint64_t id : ids) {
    if (view->graph->Find(id) != HnswGraph::Presence::kLive) {
      return absl::NotFoundError(absl::StrCat("index '", name_, "' has no item with id ", id));
    }
    out.push_back(attributes_.Get(id));
  }
  return out;
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
                          Deadline deadline, const Filter* filter) const {
  absl::StatusOr<size_t> n = CheckQuery(queries.size(), k, ef);
  if (!n.ok()) return n.status();
  if (ids_out.size() != *n * k || distances_out.size() != *n * k) {
    return absl::InternalError("query output buffers have the wrong size");
  }
  if (absl::Status s = CheckFinite(name_, queries, dim_, "query vector"); !s.ok()) return s;

  if (filter != nullptr) {
    if (absl::Status s = CheckFilter(*filter); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(), " (query of index '", name_, "')"));
    }
  }

  absl::StatusOr<View> view = Read();
  if (!view.ok()) return view.status();
  const HnswGraph& graph = *view->graph;
  const size_t breadth = ef != 0 ? ef : view->ef;
  // The plan, once per call: the filter compiled, and the elements of the items that can
  // match when the attribute indexes bound them to few enough that comparing a query with
  // each costs less than a filtered graph search (see ExactScanLimit).
  // A filter in the FilterCache brings its matching elements as a bitset, and their count.
  std::shared_ptr<const AttributeIndex::Compiled> compiled;
  std::optional<std::vector<uint32_t>> exact_elements;
  std::shared_ptr<FilterCache::Entry> cached;
  bool exact_set = false;
  bool two_hop = false;  // the cached set is a small share: ACORN-1's expansion
  if (filter != nullptr) {
    const size_t limit = ExactScanLimit(graph.live_count(), std::max<size_t>(breadth, k));
    std::string key = FilterKey(*filter);
    std::optional<std::vector<uint64_t>> candidates;
    {
      ReaderLock lock(&attributes_mu_);
      compiled = attributes().Compile(*filter);
      bool build = false;
      cached = filter_cache_.Find(key, &graph, attributes().key_count(), &build);
      if (cached == nullptr && build && graph.max_elements() / 8 <= FilterCache::kMaxEntryBytes) {
        cached = BuildFilterEntry(std::move(key), compiled, view->graph);
        filter_cache_.Insert(cached);
      }
      if (cached != nullptr) {
        const uint64_t live = graph.live_count();
        two_hop = static_cast<double>(cached->count) < kTwoHopShare * static_cast<double>(live);
        exact_set =
            cached->count <=
            (two_hop ? ExactScanLimit(live, std::max<size_t>(breadth, k), kTwoHopCost) : limit);
      } else {
        candidates = attributes().Candidates(*compiled, limit);
      }
    }
    if (candidates.has_value()) exact_elements = graph.ElementsOf(*candidates);
  }
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
      size_t found = 0;
      if (compiled == nullptr) {
        found = graph.Search(query, k, breadth, ids, distances);
      } else if (cached != nullptr) {
        // The entry's bits change only under the attribute lock held exclusively.
        ReaderLock lock(&attributes_mu_);
        if (exact_set) {
          found = graph.SearchSet(query, k, cached->bits, ids, distances);
        } else {
          found = graph.SearchFiltered(query, k, breadth, cached->bits, ids, distances, two_hop);
          if (found < k) found = graph.SearchSet(query, k, cached->bits, ids, distances);
        }
      } else {
        // Attributes may change between the plan and this search: every result is checked
        // against them as they are now.
        ReaderLock lock(&attributes_mu_);
        const AttributeIndex& current = attributes();
        auto allowed = [&](uint64_t label) { return current.Matches(*compiled, label); };
        if (exact_elements.has_value()) {
          found = graph.SearchElements(query, k, *exact_elements, allowed, ids, distances);
        } else {
          found = graph.SearchFiltered(query, k, breadth, allowed, ids, distances);
          if (found < k) found = graph.SearchAll(query, k, allowed, ids, distances);
        }
      }
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
  absl::StatusOr<View> view = Read();
  if (!view.ok()) return view.status();
  return view->graph->LiveLabels();
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
  absl::StatusOr<View> view = Read();
  if (!view.ok()) return view.status();
  HnswGraph::LabelPage page = view->graph->LiveLabelsAfter(start_after, limit);
  return IdPage{std::move(page.labels), page.left_out};
}

absl::Status Index::GetVectors(std::span<const uint64_t> ids, std::span<float> out) const {
  if (out.size() != ids.size() * dim_) {
    return absl::InternalError("element output buffer has the wrong size");
  }
  absl::StatusOr<View> view = Read();
  if (!view.ok()) return view.status();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (view->graph->CopyVector(ids[i], out.data() + i * dim_)) continue;
    // A deleted item's tombstone may be gone (compaction, rebuild); storage still knows it.
    bool deleted = view->graph->Find(ids[i]) == HnswGraph::Presence::kDeleted;
    if (!deleted) {
      storage::IndexConfig config;
      {
        MutexLock lock(&state_mu_);
        config = config_;
      }
      absl::StatusOr<storage::StoredItem> stored = store_->GetItem(config, ids[i]);
      deleted = stored.ok() && stored->deleted;
    }
    return absl::NotFoundError(absl::StrCat("index '", name_, "' has no item with id ", ids[i],
                                            deleted ? " (it was deleted)" : ""));
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
    storage::IndexConfig after;
    {
      MutexLock lock(&state_mu_);
      if (dropped_ || loading_) return CheckUsableLocked();
      if (config_.initialized) {
        return absl::FailedPreconditionError(
            absl::StrCat("index '", name_, "' is already initialised"));
      }
      after = config_;
    }
    const uint64_t capacity = GraphCapacity(max_elements);
    const uint64_t needed = HnswGraph::EstimateBytes(dim_, m, capacity);
    if (budget_ != nullptr) {
      if (absl::Status s = budget_->Reserve(
              needed, absl::StrCat("index '", name_, "' with max_elements ", max_elements));
          !s.ok()) {
        return s;
      }
    }
    auto release = [&] {
      if (budget_ != nullptr) budget_->Release(needed);
    };
    absl::StatusOr<std::unique_ptr<HnswGraph>> graph =
        HnswGraph::Create({space_, dim_, capacity, m, ef_construction, seed});
    if (!graph.ok()) {
      release();
      return graph.status();
    }
    after.initialized = true;
    after.max_elements = max_elements;
    after.m = m;
    after.ef_construction = ef_construction;
    after.ef = kDefaultEf;
    after.random_seed = seed;
    if (absl::Status s = store_->UpdateConfig(after); !s.ok()) {
      release();
      return s;
    }
    MutexLock lock(&state_mu_);
    config_ = after;
    graph_ = *std::move(graph);
    graph_bytes_ = needed;
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
    storage::IndexConfig after;
    {
      MutexLock lock(&state_mu_);
      if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
      after = config_;
    }
    after.ef = ef;
    if (absl::Status s = store_->UpdateConfig(after); !s.ok()) return s;
    MutexLock lock(&state_mu_);
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
    storage::IndexConfig after;
    std::shared_ptr<HnswGraph> current;
    {
      MutexLock lock(&state_mu_);
      if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
      after = config_;
      current = graph_;
    }
    const uint64_t live = current->live_count();
    if (new_max_elements < live) {
      return absl::FailedPreconditionError(absl::StrCat(
          "index '", name_, "' holds ", live, " live items; cannot resize to ", new_max_elements));
    }
    after.max_elements = new_max_elements;
    // The graph is copied into one of the new capacity and swapped in: searches go on
    // meanwhile on the old one. A copy keeps the tombstones, so it is at least their size.
    const uint64_t capacity = std::max(GraphCapacity(new_max_elements), current->element_count());
    std::shared_ptr<HnswGraph> resized = current;
    uint64_t bytes = 0;
    if (capacity != current->max_elements()) {
      bytes = HnswGraph::EstimateBytes(dim_, current->m(), capacity);
      absl::StatusOr<std::unique_ptr<HnswGraph>> copy =
          ReservedCopy(*current, capacity, bytes,
                       absl::StrCat("resizing index '", name_, "' to max_elements ",
                                    new_max_elements, " (a copy of its graph)"));
      if (!copy.ok()) return copy.status();
      resized = *std::move(copy);
    }
    // Graph first: if it cannot grow, nothing is persisted. If persisting fails, the larger
    // graph is dropped and the old one keeps serving.
    if (absl::Status s = store_->UpdateConfig(after); !s.ok()) {
      if (budget_ != nullptr && resized != current) budget_->Release(bytes);
      return s;
    }
    // A compaction in flight was sized for the old capacity: start again later.
    CancelCompaction(absl::AbortedError(
        absl::StrCat("index '", name_, "' was resized while it ran; compact again")));
    uint64_t old_bytes = 0;
    {
      MutexLock lock(&state_mu_);
      config_ = after;
      if (resized != current) {
        graph_ = resized;
        old_bytes = std::exchange(graph_bytes_, bytes);
      }
    }
    if (budget_ != nullptr) budget_->Release(old_bytes);
    return absl::OkStatus();
  };
  return RunWriter(&writer);
}

void Index::FinishLoad(std::unique_ptr<HnswGraph> graph, std::optional<uint64_t> snapshot_version,
                       uint64_t unsnapshotted_items, AttributeIndex attributes,
                       std::optional<std::chrono::system_clock::time_point> snapshot_written) {
  SetSnapshotState(snapshot_version, unsnapshotted_items, snapshot_written);
  const std::vector<uint64_t> with_attributes = attributes.ids();
  {
    WriterLock lock(&attributes_mu_);
    attributes_ = std::move(attributes);
  }
  Writer writer;
  writer.run = [&]() -> absl::Status {
    const uint64_t bytes =
        graph != nullptr ? HnswGraph::EstimateBytes(dim_, graph->m(), graph->max_elements()) : 0;
    if (budget_ != nullptr && bytes != 0 && !budget_->ForceReserve(bytes)) {
      spdlog::warn(
          "index '{}': its graph ({} MiB) takes the indexes over the memory budget of {} "
          "MiB; new indexes and growth will be refused",
          name_, bytes >> 20, budget_->limit() >> 20);
    }
    committed_attributes_.insert(with_attributes.begin(), with_attributes.end());
    MutexLock lock(&state_mu_);
    if (graph != nullptr) {
      graph_ = std::move(graph);
      graph_bytes_ = bytes;
    }
    loading_ = false;
    return absl::OkStatus();
  };
  (void)RunWriter(&writer);
}

void Index::FailLoad(absl::Status status) {
  Writer writer;
  writer.run = [&]() -> absl::Status {
    MutexLock lock(&state_mu_);
    loading_ = false;
    load_error_ = absl::Status(
        status.code(), absl::StrCat("index '", name_, "' could not be loaded: ", status.message()));
    return absl::OkStatus();
  };
  (void)RunWriter(&writer);
}

void Index::SetSnapshotState(std::optional<uint64_t> version, uint64_t unsnapshotted_items,
                             std::optional<std::chrono::system_clock::time_point> written) {
  MutexLock lock(&snapshot_mu_);
  snapshot_version_ = version;
  unsnapshotted_items_ = unsnapshotted_items;
  snapshot_written_ticks_ = written.has_value() ? written->time_since_epoch().count() : kNoSnapshot;
}

absl::Status Index::SaveSnapshot() {
  MutexLock snapshot_lock(&snapshot_mu_);
  storage::IndexConfig config;
  uint64_t items = 0;
  bool saved = false;
  const auto started = std::chrono::steady_clock::now();
  const std::optional<uint64_t> last_version = snapshot_version_;
  // The graph is written out as a writer's turn: writes wait, queries go on.
  Writer writer;
  writer.run = [&]() -> absl::Status {
    std::shared_ptr<HnswGraph> current;
    {
      MutexLock lock(&state_mu_);
      if (dropped_ || loading_ || !load_error_.ok() || !config_.initialized) {
        return absl::OkStatus();
      }
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
      if (last_version == config_.version) return absl::OkStatus();
      config = config_;
      current = graph_;
    }
    if (absl::Status s = current->Save(store_->TempSnapshotPath(config.cf_id)); !s.ok()) return s;
    items = unsnapshotted_items_.exchange(0);
    saved = true;
    return absl::OkStatus();
  };
  if (absl::Status s = RunWriter(&writer); !s.ok() || !saved) return s;
  ReaderLock publish_lock(publish_mu_);
  absl::Status published = store_->PublishSnapshot(config.cf_id, config.version);
  if (!published.ok()) {
    unsnapshotted_items_ += items;
    return published;
  }
  snapshot_version_ = config.version;
  snapshot_written_ticks_ = std::chrono::system_clock::now().time_since_epoch().count();
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
    {
      MutexLock lock(&state_mu_);
      if (dropped_) return CheckUsableLocked();
    }
    if (absl::Status s = drop(); !s.ok()) return s;
    CancelCompaction(absl::NotFoundError(absl::StrCat("index '", name_, "' was deleted")));
    std::shared_ptr<HnswGraph> old;  // freed once the last reader lets go
    uint64_t bytes = 0;
    {
      MutexLock lock(&state_mu_);
      dropped_ = true;
      old = std::move(graph_);
      bytes = std::exchange(graph_bytes_, 0);
    }
    if (budget_ != nullptr) budget_->Release(bytes);
    return absl::OkStatus();
  };
  return RunWriter(&writer);
}

}  // namespace luxdb::engine
