// Catalog: the set of named indexes of one data directory.
//
// Loading: Open returns once storage is open. Every catalogued index is listed at once, but
// its graph loads in the background (one loader thread, its work spread over the thread
// pool); until an index has loaded, Get answers UNAVAILABLE naming it and the progress
// ("index 'x' is still loading (3 of 10 indexes loaded)"), and indexes become usable one by one.
// An index that cannot be loaded (storage error) answers every call with that error; the
// others serve. Close (or StopLoading) makes loads still running give up between items:
// such an index is not snapshotted, and the next Open loads it again from storage.
//
// Thread safety: every method may be called concurrently. Index objects returned by Get stay
// valid while held; once their index is deleted their calls fail with NOT_FOUND. Work on one
// index never waits for another: the catalog-wide lock is held only to look up and update
// the name map, never across storage or graph work (Create, Import and Drop reserve or
// unpublish the name under it and do their slow part outside).
//
// Locks, each named where it is declared. Lock order (a lock may be taken while holding the
// ones before it, never the reverse): Index locks -> publish_mu_; mu_, load_mu_ and
// snapshotter_mu_ are leaves: nothing else is locked, and no Index or storage call made, while
// one is held (snapshotter_mu_ is released around each round of snapshots).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/index.h"
#include "engine/memory_budget.h"
#include "engine/mutex.h"
#include "engine/thread_pool.h"
#include "storage/backup_target.h"
#include "storage/store.h"

namespace luxdb::engine {

class Catalog {
 public:
  struct Options {
    // Worker threads for batch queries and batch inserts; 0 means one per core.
    size_t threads = 0;
    // fsync every acknowledged write (see storage::Store::Options).
    bool sync = true;
    // Snapshot an index's graph in the background once this many items were written to it
    // since its last snapshot; 0: only at Close. A restart after a crash loads the last
    // snapshot and replays at most about this many items.
    uint64_t snapshot_every = 100'000;
    // Memory all graphs together may reserve (MemoryBudget); 0: MemoryBudget::DefaultLimitBytes()
    // (85 % of the cgroup memory limit, else of MemTotal).
    uint64_t memory_budget_bytes = 0;
    // A background compaction of an index starts once this fraction of its graph's elements
    // are tombstones; 0 turns automatic compaction off.
    double compact_threshold = 0.2;
    // Bounds on each item's attributes (AddItems, SetAttributes).
    AttributeLimits attribute_limits{};
    // Tests only: called with an event and an index name at the points where a test needs to
    // hold an operation in its slow part: "create" (before storage creates the index), "drop"
    // (before storage drops it), "load" (before an index loads) and "rebuild_chunk" (after
    // each chunk of a rebuild). Runs with no catalog lock held.
    std::function<void(absl::string_view event, const std::string& index)> test_hook = nullptr;
  };

  // Opens the data directory, lists every index and starts loading them in the background:
  // each from its latest graph snapshot plus the writes after it (replayed from the
  // history), or, if the snapshot is missing, torn, corrupt or its history is gone, by
  // rebuilding the graph from the stored vectors (logged). Returns without waiting for the
  // loads (see WaitUntilLoaded); an error only if storage cannot be opened.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& dir,
                                                       const Options& options);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // Blocks until every index has loaded (or failed to, or its load was stopped).
  void WaitUntilLoaded() const;
  // True once WaitUntilLoaded would return at once.
  bool AllLoaded() const;
  // Makes loads still running give up between items (their indexes answer UNAVAILABLE and
  // are loaded again by the next Open) and waits for the loader to end. Idempotent; Close
  // and the destructor call it.
  void StopLoading();

  // INVALID_ARGUMENT for a bad name, space or dimension (1..kMaxDimension); ALREADY_EXISTS if
  // the name is taken or being created by another call (exactly one of concurrent Creates of
  // a name succeeds). A Create of a name whose Drop is running waits for that Drop.
  absl::Status Create(const std::string& name, storage::Space space, uint32_t dim);
  // Deletes the index and its data once its calls in flight are done; Get answers NOT_FOUND
  // from the moment Drop starts. NOT_FOUND if it does not exist; UNAVAILABLE if it is still
  // loading; a storage error leaves the index in place.
  absl::Status Drop(const std::string& name);
  // INVALID_ARGUMENT for a bad name; NOT_FOUND naming the index if it does not exist;
  // UNAVAILABLE naming it if it is still loading; its load error if it could not be loaded.
  absl::StatusOr<std::shared_ptr<Index>> Get(const std::string& name) const;
  // True for every listed index, loaded or not.
  bool Exists(const std::string& name) const;
  // Every index, in name order (those still loading show their stored config).
  std::vector<IndexInfo> List() const;
  // Storage's counters (storage::Store::Stats).
  storage::StoreStats StorageStats() const { return store_->Stats(); }

  // Imports a file written by hnswlib's saveIndex (C++ or Python) as a new index: its
  // vectors, ids, deleted marks and graph parameters go to storage and its graph becomes the
  // index's snapshot, so queries answer exactly as the file does. All or nothing.
  // ALREADY_EXISTS if the name is taken (it is reserved from the start, so a Create of it
  // meanwhile gets ALREADY_EXISTS); RESOURCE_EXHAUSTED if the memory budget cannot hold the
  // graph.
  absl::Status Import(const std::string& path, const std::string& name, storage::Space space,
                      uint32_t dim);

  // Makes running and later writes and queries stop between items and fail with UNAVAILABLE
  // (for a shutdown whose grace period ran out). A write stopped halfway is already stored;
  // its index's graph is then not saved by Close, and the next Open rebuilds it.
  // Loads still running stop too (as by StopLoading, without waiting).
  void AbortWork() {
    aborting_ = true;
    stop_loading_ = true;
  }

  // Writes a consistent copy of the data directory (graph snapshots and storage) into
  // `target`, a new empty directory (storage::BackupTarget::Create), while calls go on;
  // snapshot publishing waits meanwhile. Returns the bytes written or hard-linked. On error
  // the caller removes the partial copy (BackupTarget::Remove, or its destructor).
  absl::StatusOr<uint64_t> Backup(const storage::BackupTarget& target);

  // Stops the loads still running (StopLoading) and the background snapshots, saves a graph
  // snapshot of every loaded index and flushes storage, so the next Open loads graphs with
  // nothing to replay. Call once no more requests arrive.
  absl::Status Close();

 private:
  struct Loaded {
    std::unique_ptr<HnswGraph> graph;
    std::optional<uint64_t> snapshot_version;  // none: rebuilt
    uint64_t unsnapshotted_items = 0;          // replayed or rebuilt
    AttributeIndex attributes;                 // every stored item's attributes
    // When the snapshot it came from was written; none: rebuilt.
    std::optional<std::chrono::system_clock::time_point> snapshot_written;
  };
  // An index in the name map, and whether its graph has loaded.
  struct Entry {
    enum class State { kLoading, kReady, kFailed };
    std::shared_ptr<Index> index;
    State state = State::kReady;
    absl::Status failure;  // kFailed: what Get answers
  };
  Catalog(std::unique_ptr<storage::Store> store, std::unique_ptr<ThreadPool> pool,
          const Options& options);
  // The loader thread: loads `configs` (initialised indexes listed as kLoading) on the pool.
  void LoadAll(const std::vector<storage::IndexConfig>& configs);
  void LoadOne(const storage::IndexConfig& config);
  absl::StatusOr<Loaded> LoadGraph(const storage::IndexConfig& config);
  // Brings a graph loaded from the snapshot of `snapshot_version` up to config.version.
  // Returns the number of items replayed; NOT_FOUND if the history no longer reaches back.
  absl::StatusOr<uint64_t> Replay(const storage::IndexConfig& config, uint64_t snapshot_version,
                                  std::unique_ptr<HnswGraph>& graph);
  absl::StatusOr<std::unique_ptr<HnswGraph>> RebuildGraph(const storage::IndexConfig& config);
  // UNAVAILABLE naming the index, if StopLoading was called.
  absl::Status CheckLoadNotStopped(const std::string& name) const;
  absl::Status StillLoading(const std::string& name) const;
  void Hook(absl::string_view event, const std::string& name) const {
    if (options_.test_hook) options_.test_hook(event, name);
  }
  // Reserves `name` for a Create or Import: ALREADY_EXISTS if it is taken or reserved; waits
  // for a Drop of it that is running.
  absl::Status ReserveName(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends a reservation, publishing `index` under the name unless it is null.
  void Publish(const std::string& name, std::shared_ptr<Index> index) ABSL_LOCKS_EXCLUDED(mu_);
  // Import after ReserveName: the new index, not yet published.
  absl::StatusOr<std::shared_ptr<Index>> ImportReserved(const std::string& path,
                                                        const std::string& name,
                                                        storage::Space space, uint32_t dim);
  void SnapshotLoop();
  IndexContext Context() {
    return {.store = store_.get(),
            .pool = pool_.get(),
            .budget = &budget_,
            .compact_threshold = options_.compact_threshold,
            .aborting = &aborting_,
            .publish_mu = &publish_mu_,
            .attribute_limits = options_.attribute_limits};
  }
  // The indexes whose graphs have loaded.
  std::vector<std::shared_ptr<Index>> ReadyIndexes() const ABSL_LOCKS_EXCLUDED(mu_);

  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<ThreadPool> pool_;
  const Options options_;
  MemoryBudget budget_;
  std::atomic<bool> aborting_ = false;
  std::atomic<bool> stop_loading_ = false;
  // Held shared by an Index while it publishes a snapshot and trims the history it covers,
  // exclusively by Backup (see IndexContext::publish_mu). It guards no member: it orders the
  // store's snapshot publication against the store's backup.
  RwLock publish_mu_;

  // Guards the name map: what Get, Exists and List see, and the names Create, Import and Drop
  // are working on. Held only while the map is read or updated.
  mutable RwLock mu_;
  std::map<std::string, Entry> indexes_ ABSL_GUARDED_BY(mu_);
  // Names reserved by a Create or Import in progress (not visible to Get yet).
  absl::flat_hash_set<std::string> creating_ ABSL_GUARDED_BY(mu_);
  // Names whose Drop is running (no longer visible to Get), and when it ends.
  absl::flat_hash_map<std::string, std::shared_future<void>> dropping_ ABSL_GUARDED_BY(mu_);

  // Load progress, for messages (written by the loader only).
  size_t loads_total_ = 0;  // set before the loader starts
  std::atomic<size_t> loads_done_ = 0;
  // Guards loaded_; load_cv_ is signalled when loading ends.
  mutable Mutex load_mu_;
  mutable CondVar load_cv_;
  bool loaded_ ABSL_GUARDED_BY(load_mu_) = false;
  std::thread loader_;  // started by Open, joined once (loader_joined_) by StopLoading
  std::once_flag loader_joined_;

  // Guards snapshotter_stop_; snapshotter_cv_ wakes the background snapshot thread to stop.
  Mutex snapshotter_mu_;
  CondVar snapshotter_cv_;
  bool snapshotter_stop_ ABSL_GUARDED_BY(snapshotter_mu_) = false;
  std::thread snapshotter_;  // started by Open, joined by Close or the destructor
};

// Parses "l2", "ip" or "cosine" (case-insensitive); INVALID_ARGUMENT naming the value.
absl::StatusOr<storage::Space> ParseSpace(absl::string_view text);

}  // namespace luxdb::engine
