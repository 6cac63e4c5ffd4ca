// Catalog: the set of named indexes of one data directory, loaded at open.
//
// Thread safety: every method may be called concurrently. Index objects returned by Get stay
// valid while held; once their index is deleted their calls fail with NOT_FOUND.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/index.h"
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
  };

  // Opens the data directory and loads every index: from its latest graph snapshot plus the
  // writes after it (replayed from the history), or, if the snapshot is missing, torn,
  // corrupt or its history is gone, by rebuilding the graph from the stored vectors (logged).
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& dir,
                                                       const Options& options);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // INVALID_ARGUMENT for a bad name, space or dimension (1..kMaxDimension); ALREADY_EXISTS.
  absl::Status Create(const std::string& name, storage::Space space, uint32_t dim);
  // Deletes the index and its data. NOT_FOUND if it does not exist.
  absl::Status Drop(const std::string& name);
  // INVALID_ARGUMENT for a bad name; NOT_FOUND naming the index if it does not exist.
  absl::StatusOr<std::shared_ptr<Index>> Get(const std::string& name) const;
  bool Exists(const std::string& name) const;
  // Every index, in name order.
  std::vector<IndexInfo> List() const;

  // Imports a file written by hnswlib's saveIndex (C++ or Python) as a new index: its
  // vectors, ids, deleted marks and graph parameters go to storage and its graph becomes the
  // index's snapshot, so queries answer exactly as the file does. All or nothing.
  absl::Status Import(const std::string& path, const std::string& name, storage::Space space,
                      uint32_t dim);

  // Makes running and later writes and queries stop between items and fail with UNAVAILABLE
  // (for a shutdown whose grace period ran out). A write stopped halfway is already stored;
  // its index's graph is then not saved by Close, and the next Open rebuilds it.
  void AbortWork() { aborting_ = true; }

  // Writes a consistent copy of the data directory (graph snapshots and storage) into
  // `target`, a new empty directory (storage::BackupTarget::Create), while calls go on;
  // snapshot publishing waits meanwhile. Returns the bytes written or hard-linked. On error
  // the caller removes the partial copy (BackupTarget::Remove, or its destructor).
  absl::StatusOr<uint64_t> Backup(const storage::BackupTarget& target);

  // Stops the background snapshots, saves a graph snapshot of every index and flushes
  // storage, so the next Open loads graphs with nothing to replay. Call once no more
  // requests arrive.
  absl::Status Close();

 private:
  struct Loaded {
    std::unique_ptr<HnswGraph> graph;
    std::optional<uint64_t> snapshot_version;  // none: rebuilt
    uint64_t unsnapshotted_items = 0;          // replayed or rebuilt
  };
  Catalog(std::unique_ptr<storage::Store> store, std::unique_ptr<ThreadPool> pool,
          const Options& options);
  absl::StatusOr<Loaded> LoadGraph(const storage::IndexConfig& config);
  // Brings a graph loaded from the snapshot of `snapshot_version` up to config.version.
  // Returns the number of items replayed; NOT_FOUND if the history no longer reaches back.
  absl::StatusOr<uint64_t> Replay(const storage::IndexConfig& config, uint64_t snapshot_version,
                                  std::unique_ptr<HnswGraph>& graph);
  absl::StatusOr<std::unique_ptr<HnswGraph>> RebuildGraph(const storage::IndexConfig& config);
  void SnapshotLoop();
  IndexContext Context() {
    return {.store = store_.get(),
            .pool = pool_.get(),
            .aborting = &aborting_,
            .publish_mu = &publish_mu_};
  }
  std::vector<std::shared_ptr<Index>> AllIndexes() const;

  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<ThreadPool> pool_;
  std::atomic<bool> aborting_ = false;
  std::shared_mutex publish_mu_;
  const Options options_;

  // The background snapshot thread, stopped by Close.
  std::mutex snapshotter_mu_;
  std::condition_variable snapshotter_cv_;
  bool snapshotter_stop_ = false;  // guarded by snapshotter_mu_
  std::thread snapshotter_;
  mutable RwLock mu_;
  std::map<std::string, std::shared_ptr<Index>> indexes_;  // guarded by mu_
};

// Parses "l2", "ip" or "cosine" (case-insensitive); INVALID_ARGUMENT naming the value.
absl::StatusOr<storage::Space> ParseSpace(absl::string_view text);

}  // namespace luxdb::engine
