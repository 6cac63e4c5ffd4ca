// One named index: an HNSW graph, its persisted config, and the locks that order access.
//
// Concurrency: queries, GetVectors and Ids never wait for writes. They take a reference to the
// current graph under a short lock (state_mu_) and search it while insertions and deletions
// change it in place (HnswGraph's protocol makes that safe). Every mutation enters a per-index
// writer queue (as in LevelDB's DBImpl::Write): the writer at its head becomes leader, takes the
// consecutive Add/Delete requests behind it, validates them in order, commits them to storage
// in one synced write, and applies them to the graph, spreading a batch's insertions over the
// thread pool. So concurrent writers share one fsync, and disk and memory apply writes in the
// same order. Replacing an item tombstones its element and inserts a new one; a compaction
// (CompactIndex, or automatic past a tombstone threshold) rebuilds the graph without
// tombstones on a thread of its own while reads and writes go on, then swaps it in. Resizes
// also swap in a copy: no operation makes readers wait longer than a pointer swap.
//
// Durability: a mutation is acknowledged only after storage has committed it; a refused
// mutation changes nothing on disk or in memory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/attributes.h"
#include "engine/filter_cache.h"
#include "engine/hnsw_graph.h"
#include "engine/limits.h"
#include "engine/memory_budget.h"
#include "engine/mutex.h"
#include "engine/thread_pool.h"
#include "storage/index_config.h"
#include "storage/store.h"

namespace luxdb::engine {

struct IndexInfo {
  std::string name;
  storage::Space space = storage::Space::kL2;
  uint32_t dim = 0;
  uint32_t m = 0;
  uint32_t ef_construction = 0;
  uint32_t ef = 0;
  uint64_t max_elements = 0;
  uint64_t element_count = 0;  // live items
  // Elements of the graph that no longer answer queries: deleted items and the old vectors of
  // replaced ones, kept until a compaction rebuilds the graph without them. They do not count
  // against max_elements.
  uint64_t tombstones = 0;
  uint64_t deleted_count = 0;  // the same as tombstones (older name, kept for clients)
  // Memory reserved for the graph at its capacity, charged to the memory budget (plus a
  // compaction's second graph while one runs).
  uint64_t memory_bytes = 0;
  bool compacting = false;  // a compaction is building a new graph
  bool initialized = false;
  // Items written since the graph's last snapshot: what a restart after a crash would replay.
  uint64_t unsnapshotted_items = 0;
  // When that snapshot was written (in this process, or before, for the one it loaded); none
  // while the index has no snapshot (not initialised, or rebuilt at load and not saved since).
  std::optional<std::chrono::system_clock::time_point> snapshot_written;
};

// What Index::Compact did.
struct CompactStats {
  uint64_t tombstones_removed = 0;
  uint64_t live = 0;  // items in the new graph
  double seconds = 0;
};

// One page of an index's live ids (Index::IdsPage).
struct IdPage {
  std::vector<uint64_t> ids;  // ascending
  // Live ids above the page's start that it left out; 0 on the last page.
  uint64_t left_out = 0;
};

// Graph parameters for Index::Init; zeros select the defaults in engine/limits.h.
struct InitParams {
  uint64_t max_elements = 0;
  uint32_t ef_construction = 0;
  uint32_t m = 0;
  uint64_t random_seed = 0;
};

// What the indexes of one catalog share. The catalog owns all of it and outlives them.
struct IndexContext {
  storage::Store* store = nullptr;
  ThreadPool* pool = nullptr;
  // Charged with every graph's reservation; null: unlimited.
  MemoryBudget* budget = nullptr;
  // A background compaction starts once tombstones reach this fraction of the graph's
  // elements; 0 turns automatic compaction off (CompactIndex still works).
  double compact_threshold = 0.2;
  // Once set (the server's shutdown grace period ran out), writes and queries stop between
  // items and fail with UNAVAILABLE.
  const std::atomic<bool>* aborting = nullptr;
  // Held shared while a snapshot is published and the history it covers trimmed; held
  // exclusively by a backup, so the snapshots and history it copies stay consistent.
  RwLock* publish_mu = nullptr;
  // Bounds on each item's attributes.
  AttributeLimits attribute_limits{};
};

class Index {
 public:
  // Made by Catalog. `graph` is null for an index that is not initialised, or whose graph is
  // still `loading` (see FinishLoad).
  Index(storage::IndexConfig config, std::unique_ptr<HnswGraph> graph, const IndexContext& context,
        bool loading = false);
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  const std::string& name() const { return name_; }
  uint32_t dim() const { return dim_; }
  IndexInfo Info() const;

  // Allocates the graph. FAILED_PRECONDITION if already initialised; INVALID_ARGUMENT for a
  // parameter out of range; RESOURCE_EXHAUSTED if max_elements would not fit in memory.
  absl::Status Init(const InitParams& params);
  // Sets the default search breadth, 1..kMaxEf.
  absl::Status SetEf(uint32_t ef);
  // Changes capacity. FAILED_PRECONDITION below the stored count (live + deleted).
  absl::Status Resize(uint64_t new_max_elements);

  // Adds n = ids.size() vectors (vectors.size() == n * dim, row-major); an existing id has
  // its vector replaced and its deleted mark cleared. All or nothing: INVALID_ARGUMENT for a
  // size mismatch, NaN/Inf, an id twice in the batch or the reserved id kMissingId;
  // RESOURCE_EXHAUSTED if the new ids would exceed max_elements. Returns n.
  // DEADLINE_EXCEEDED, with nothing written, if `deadline` passes before the batch is stored
  // (waiting behind other writers); once stored, it is completed whatever the deadline.
  absl::StatusOr<uint64_t> Add(std::span<const float> vectors, std::span<const uint64_t> ids,
                               Deadline deadline = kNoDeadline);
  // As Add, with the items' attributes: none (empty) or one per id, stored with the vectors in
  // the same write; an item that exists has its attributes replaced (removed if this holds
  // none). INVALID_ARGUMENT, with nothing written, for a count that is neither, or attributes
  // over the limits (IndexContext::attribute_limits) or malformed, naming the item and key.
  absl::StatusOr<uint64_t> Add(std::span<const float> vectors, std::span<const uint64_t> ids,
                               std::vector<ItemAttributes> attributes,
                               Deadline deadline = kNoDeadline);
  // Replaces the attributes of live items (one per id; an empty one removes them), leaving
  // their vectors alone. All or nothing: NOT_FOUND naming the first id that is absent or
  // deleted; INVALID_ARGUMENT for a count mismatch, an id twice or attributes as for Add.
  // Returns the number of items updated. `deadline` as for Add.
  absl::StatusOr<uint64_t> SetAttributes(std::span<const uint64_t> ids,
                                         std::vector<ItemAttributes> attributes,
                                         Deadline deadline = kNoDeadline);
  // The attributes of each of `ids` (keys ascending; empty for an item without any), in the
  // order asked. NOT_FOUND naming the first id that is absent or deleted.
  absl::StatusOr<std::vector<ItemAttributes>> GetAttributes(std::span<const uint64_t> ids) const;
  // Marks items deleted. All or nothing: NOT_FOUND naming the first id never added. Ids
  // already deleted are accepted and not counted. Returns the number newly deleted.
  // `deadline` as for Add.
  absl::StatusOr<uint64_t> Delete(std::span<const uint64_t> ids, Deadline deadline = kNoDeadline);

  // Checks a query's shape and parameters without running it (Query checks them too), so a
  // caller can size its response first. Returns the number of query vectors.
  absl::StatusOr<size_t> CheckQuery(size_t floats, uint32_t k, uint32_t ef) const;
  // k-NN for n = queries.size() / dim queries, spread over the thread pool. ids_out and
  // distances_out hold n * k entries, row-major, nearest first; rows with fewer than k live
  // items are padded with kMissingId / kMissingDistance. ef 0 means the index's ef.
  // DEADLINE_EXCEEDED if `deadline` passes before every query is answered.
  //
  // With a `filter` (checked here: INVALID_ARGUMENT naming a malformed condition), each row
  // holds the k nearest live items that match it, as many as exist up to k. A planner picks,
  // once per call, between comparing every query with exactly the items that can match (when
  // the attribute indexes bound them to a few: cost grows with their number) and a graph
  // search that skips non-matching items as results but walks through them (cost grows as
  // the share of matching items falls). A graph search that finds fewer than k matches
  // falls back to comparing the query with every live item, so no matching item is missed.
  absl::Status Query(std::span<const float> queries, uint32_t k, uint32_t ef,
                     std::span<uint64_t> ids_out, std::span<float> distances_out,
                     Deadline deadline = kNoDeadline, const Filter* filter = nullptr) const;
  // Live ids, ascending. NOT_FOUND once the index is deleted; FAILED_PRECONDITION if it is
  // not initialised.
  absl::StatusOr<std::vector<uint64_t>> Ids() const;
  // The page size a caller's `limit` asks for: limit itself, 1..kMaxIdsPerPage, or
  // kMaxIdsPerPage for 0. INVALID_ARGUMENT naming the index, the limit and the maximum above.
  absl::StatusOr<size_t> CheckIdsLimit(uint64_t limit) const;
  // The `limit` smallest live ids above `start_after` (above nothing if unset), ascending, and
  // how many more there are; any limit is taken (CheckIdsLimit checks a caller's). Scans every
  // id (they are not kept in order) but neither copies nor sorts them all: memory is
  // O(limit). Errors as for Ids.
  absl::StatusOr<IdPage> IdsPage(std::optional<uint64_t> start_after, size_t limit) const;
  // Copies the vectors of `ids` into out (ids.size() * dim floats) in the order asked.
  // NOT_FOUND naming the first id that is absent or deleted.
  absl::Status GetVectors(std::span<const uint64_t> ids, std::span<float> out) const;

  // Rebuilds the graph from its live items, without tombstones, while queries and writes go
  // on, then swaps it in and frees the old one; returns when the new graph serves. A
  // compaction already running (started automatically) is joined rather than repeated.
  // RESOURCE_EXHAUSTED if the memory budget cannot hold the second graph meanwhile;
  // DEADLINE_EXCEEDED (the compaction goes on) if `deadline` passes first.
  absl::StatusOr<CompactStats> Compact(Deadline deadline = kNoDeadline);

  // Loading at start (Catalog): an Index made with `loading` set answers every call with
  // UNAVAILABLE naming it until FinishLoad (the graph is ready) or FailLoad (it cannot be
  // loaded: calls then fail with that status).
  void FinishLoad(std::unique_ptr<HnswGraph> graph, std::optional<uint64_t> snapshot_version,
                  uint64_t unsnapshotted_items, AttributeIndex attributes = {},
                  std::optional<std::chrono::system_clock::time_point> snapshot_written = {});
  void FailLoad(absl::Status status);

  // Writes a graph snapshot for the current version (see storage::Store::PublishSnapshot),
  // unless the last one is already of this version, then trims the history it covers. Queries
  // go on meanwhile; writes wait while the graph is being written out (not while it is
  // fsynced and checksummed).
  absl::Status SaveSnapshot();
  // Items written since the last snapshot: the work a restart after a crash would replay.
  uint64_t UnsnapshottedItems() const { return unsnapshotted_items_.load(); }
  // Called by Catalog once at load: the version of the snapshot the graph came from (none:
  // rebuilt), the items replayed or rebuilt on top of it, and when that snapshot was written.
  void SetSnapshotState(std::optional<uint64_t> version, uint64_t unsnapshotted_items,
                        std::optional<std::chrono::system_clock::time_point> written = {});
  // Waits for in-flight calls, then makes every later call fail with NOT_FOUND. Called by
  // Catalog when the index is deleted; `drop` runs while no other call can touch the index.
  absl::Status Drop(const std::function<absl::Status()>& drop);

 private:
  struct Writer;
  struct CommittedGroup;
  // What a reader needs, taken under state_mu_ in one short hold: the graph to search (kept
  // alive by the reader even if a resize or compaction swaps in another) and the default ef.
  struct View {
    std::shared_ptr<const HnswGraph> graph;
    uint32_t ef = 0;
  };
  absl::StatusOr<View> Read() const ABSL_LOCKS_EXCLUDED(state_mu_);
  std::shared_ptr<HnswGraph> graph() const ABSL_LOCKS_EXCLUDED(state_mu_);

  // The mutation right: a thread holds it while no group is being applied and no other
  // thread can change the graph or config (a kOther writer's run, a leader after
  // WaitForApplies, or ApplyGroup before its ticket is counted). Functions marked "mutator"
  // need it; it is a protocol of the writer queue, not a lock the compiler can check.
  absl::Status RunWriter(Writer* writer);
  // Stage one of a write, by the leader: checks each writer of the group against the state
  // as of the last commit and stores the accepted ones. Returns what stage two applies.
  std::optional<CommittedGroup> CommitGroup(const std::vector<Writer*>& group);
  // Stage two, after the leader handed the queue on: waits until every group committed before
  // this one is applied, then applies this one to the graph (concurrently with readers).
  void ApplyGroup(const CommittedGroup& committed);
  absl::Status ApplyToGraph(HnswGraph& graph, const Writer& writer);
  // Waits until every committed group is applied.
  void WaitForApplies() ABSL_LOCKS_EXCLUDED(apply_mu_);
  // A copy of `graph` with room for `capacity` elements, its `bytes` reserved against the
  // memory budget for `purpose` (RESOURCE_EXHAUSTED naming it when they do not fit), and
  // released again if the copy fails. The caller swaps it in and releases the old graph's.
  absl::StatusOr<std::unique_ptr<HnswGraph>> ReservedCopy(const HnswGraph& graph, uint64_t capacity,
                                                          uint64_t bytes,
                                                          absl::string_view purpose);
  // Leader: makes room in the graph for `slots` more elements (all applies done first),
  // finishing a running compaction or compacting now. Errors name what is missing.
  absl::Status MakeRoom(uint64_t slots);
  // Leader state as of the last commit, recomputed from the graph after a mutator ran.
  void ResetCommittedState() ABSL_LOCKS_EXCLUDED(state_mu_);
  absl::Status CheckUsableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);
  absl::Status CheckUsable() const ABSL_LOCKS_EXCLUDED(state_mu_);
  // INVALID_ARGUMENT naming the first id that appears twice in `ids` (by its places: "vectors
  // 2 and 5", `many`), or, with `refuse_missing_id`, the reserved kMissingId ("vector 3",
  // `one`).
  absl::Status CheckBatchIds(std::span<const uint64_t> ids, absl::string_view one,
                             absl::string_view many, bool refuse_missing_id) const;
  // Checks attributes for Add and SetAttributes and encodes them for storage.
  absl::Status PrepareAttributes(std::span<const uint64_t> ids,
                                 std::vector<ItemAttributes>& attributes,
                                 std::vector<std::string>& encoded) const;
  const AttributeIndex& attributes() const ABSL_SHARED_LOCKS_REQUIRED(attributes_mu_) {
    return attributes_;
  }
  // The FilterCache entry of a filter over `graph`: its matching elements.
  std::shared_ptr<FilterCache::Entry> BuildFilterEntry(
      std::string key, std::shared_ptr<const AttributeIndex::Compiled> compiled,
      const std::shared_ptr<const HnswGraph>& graph) const
      ABSL_SHARED_LOCKS_REQUIRED(attributes_mu_);
  // Brings the FilterCache entries of `graph` up to date for the items `ids` (after their
  // attributes changed, their new elements were inserted or they were deleted); with `clear`,
  // takes their current elements out of every entry (before a replace inserts new ones).
  void UpdateFilterEntries(const HnswGraph& graph, std::span<const uint64_t> ids, bool clear)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(attributes_mu_);

  // Compaction. StartCompaction, FinishCompaction and CancelCompaction are mutators.
  // StartCompaction captures the live elements of the current graph and builds a new graph of
  // them on a thread of its own; applies record the ids they touch meanwhile, which the
  // thread replays onto the new graph; FinishCompaction replays the rest and swaps it in.
  absl::Status StartCompaction(uint64_t min_capacity, absl::string_view why);
  void CompactionMain(uint64_t generation, std::shared_ptr<const HnswGraph> source,
                      std::vector<HnswGraph::LiveElement> live, uint64_t capacity,
                      std::shared_ptr<std::atomic<bool>> cancel,
                      std::chrono::steady_clock::time_point started);
  void FinishCompaction(uint64_t generation);
  void CancelCompaction(const absl::Status& why);
  // Brings `target` up to date with `source` for the ids in `touched`.
  absl::Status CatchUp(const HnswGraph& source, const absl::flat_hash_set<uint64_t>& touched,
                       std::unique_ptr<HnswGraph>& target);
  // Checks the automatic compaction threshold after an apply (mutator).
  void MaybeCompact();

  const std::string name_;
  const uint32_t dim_;
  const storage::Space space_;
  storage::Store* const store_;
  ThreadPool* const pool_;
  const std::atomic<bool>* const aborting_;
  RwLock* const publish_mu_;
  MemoryBudget* const budget_;
  const double compact_threshold_;
  const AttributeLimits attribute_limits_;

  // Lock order: snapshot_mu_ is held across a whole writer turn (RunWriter) of SaveSnapshot.
  // Every other lock of Index is a leaf: no thread holds two of queue_mu_, inflight_mu_,
  // apply_mu_, compact_mu_, state_mu_ and attributes_mu_ at once, and none is held while
  // calling out (store, budget, graph insertion, thread pool) except state_mu_ around pointer
  // and counter updates, and attributes_mu_ (shared) around one query vector's search, whose
  // graph reads take no Index lock.

  // Writer queue: its head is the leader. A leader of adds and deletes commits its group to
  // storage, hands the queue on, then applies the group to the graph, so the next group is
  // checked and written to storage while this one is inserted. Groups are applied in the order
  // they were committed (tickets). A leader of anything else first waits until every group is
  // applied, and then holds the mutation right.
  Mutex queue_mu_;  // guards the writer queue
  std::deque<Writer*> writers_ ABSL_GUARDED_BY(queue_mu_);

  // Leader only (the writer queue orders them, not a lock): the config, the live item count
  // and the graph's element count as of the last commit, which groups still being applied may
  // not show in config_ and the graph yet.
  storage::IndexConfig committed_config_;
  uint64_t committed_live_ = 0;
  uint64_t committed_elements_ = 0;
  // The ids whose stored item has attributes as of the last commit, so that a write removes
  // stored attributes only where there are some (a needless deletion would stay in RocksDB
  // as a tombstone, and every replace and delete would write one).
  absl::flat_hash_set<uint64_t> committed_attributes_;
  Mutex inflight_mu_;  // guards inflight_
  // What committed groups not yet applied do to an id, and the ticket of the last such group.
  absl::flat_hash_map<uint64_t, std::pair<HnswGraph::Presence, uint64_t>> inflight_
      ABSL_GUARDED_BY(inflight_mu_);
  Mutex apply_mu_;  // guards the tickets that order applies
  CondVar apply_cv_;
  uint64_t tickets_issued_ ABSL_GUARDED_BY(apply_mu_) = 0;
  uint64_t tickets_applied_ ABSL_GUARDED_BY(apply_mu_) = 0;

  // Guards what readers take a copy of. Held only for copies and pointer swaps, never during
  // a search, an insertion or storage work.
  mutable Mutex state_mu_;
  storage::IndexConfig config_ ABSL_GUARDED_BY(state_mu_);
  // The graph readers search. Insertions and marks change it in place concurrently with
  // searches (HnswGraph's protocol); resizes and compactions swap in another one.
  std::shared_ptr<HnswGraph> graph_ ABSL_GUARDED_BY(state_mu_);
  uint64_t graph_bytes_ ABSL_GUARDED_BY(state_mu_) = 0;  // graph_'s budget reservation
  bool dropped_ ABSL_GUARDED_BY(state_mu_) = false;
  bool loading_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::Status load_error_ ABSL_GUARDED_BY(state_mu_);
  // Set when a committed write could not be fully applied to the graph (allocation failure,
  // or insertion stopped by a shutdown past its grace period): the graph no longer matches
  // storage, so it must never become a snapshot; the next start rebuilds it from storage.
  bool graph_damaged_ ABSL_GUARDED_BY(state_mu_) = false;
  bool graph_aborted_ ABSL_GUARDED_BY(state_mu_) = false;  // the cause was the shutdown

  // The compaction in flight, if any, and the results of recent ones.
  struct CompactionResult {
    uint64_t generation = 0;
    absl::Status status;
    CompactStats stats;
  };
  Mutex compact_mu_;    // guards the compaction state below
  CondVar compact_cv_;  // signalled when a compaction's graph is built and when one ends
  bool compaction_running_ ABSL_GUARDED_BY(compact_mu_) = false;
  uint64_t compaction_generation_ ABSL_GUARDED_BY(compact_mu_) = 0;  // of the latest started
  std::unique_ptr<HnswGraph> compaction_built_ ABSL_GUARDED_BY(compact_mu_);
  bool compaction_build_done_ ABSL_GUARDED_BY(compact_mu_) = false;
  uint64_t compaction_tombstones_ ABSL_GUARDED_BY(compact_mu_) = 0;  // at the start
  std::chrono::steady_clock::time_point compaction_started_ ABSL_GUARDED_BY(compact_mu_);
  absl::flat_hash_set<uint64_t> compaction_touched_ ABSL_GUARDED_BY(compact_mu_);
  std::shared_ptr<std::atomic<bool>> compaction_cancel_ ABSL_GUARDED_BY(compact_mu_);
  std::deque<CompactionResult> compaction_results_ ABSL_GUARDED_BY(compact_mu_);
  int compaction_threads_ ABSL_GUARDED_BY(compact_mu_) = 0;  // waited for by ~Index
  // No automatic compaction before this (after one was refused by the memory budget).
  std::chrono::steady_clock::time_point next_auto_compaction_ ABSL_GUARDED_BY(compact_mu_);
  // The running compaction's budget reservation, for Info.
  std::atomic<uint64_t> compaction_bytes_ = 0;

  // Guards the attributes and their secondary indexes. Held shared by a query for one query
  // vector's search (the planner and filter read them), exclusively by an apply for the
  // attribute changes of one write (never during a graph insertion).
  mutable RwLock attributes_mu_;
  AttributeIndex attributes_ ABSL_GUARDED_BY(attributes_mu_);
  // Matching elements of the filters queried most (locks of its own; its entries' bits follow
  // attributes_mu_, see filter_cache.h).
  mutable FilterCache filter_cache_;

  Mutex snapshot_mu_;  // serialises SaveSnapshot; guards snapshot_version_
  std::optional<uint64_t> snapshot_version_ ABSL_GUARDED_BY(snapshot_mu_);
  // Added to by applies, taken by SaveSnapshot; read anywhere.
  std::atomic<uint64_t> unsnapshotted_items_ = 0;
  // When the last snapshot was written, as system_clock ticks since the epoch; kNoSnapshot
  // while there is none. Written with snapshot_mu_ held, read anywhere (Info).
  static constexpr int64_t kNoSnapshot = std::numeric_limits<int64_t>::min();
  std::atomic<int64_t> snapshot_written_ticks_ = kNoSnapshot;
};

}  // namespace luxdb::engine
