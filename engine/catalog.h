// Catalog: the set of named indexes of one data directory, loaded at open.
//
// Thread safety: every method may be called concurrently. Index objects returned by Get stay
// valid while held; once their index is deleted their calls fail with NOT_FOUND.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/index.h"
#include "engine/rw_lock.h"
#include "engine/thread_pool.h"
#include "storage/store.h"

namespace luxdb::engine {

class Catalog {
 public:
  struct Options {
    // Worker threads for batch queries and batch inserts; 0 means one per core.
    size_t threads = 0;
    // fsync every acknowledged write (see storage::Store::Options).
    bool sync = true;
  };

  // Opens the data directory and loads every index: from its graph snapshot when one matches
  // the stored data, otherwise by rebuilding the graph from the stored vectors (logged).
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

  // Saves a graph snapshot of every index and flushes storage, so the next Open loads
  // graphs instead of rebuilding them. Call once no more requests arrive.
  absl::Status Close();

 private:
  Catalog(std::unique_ptr<storage::Store> store, std::unique_ptr<ThreadPool> pool);
  absl::StatusOr<std::unique_ptr<HnswGraph>> LoadGraph(const storage::IndexConfig& config);
  absl::StatusOr<std::unique_ptr<HnswGraph>> RebuildGraph(const storage::IndexConfig& config);

  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<ThreadPool> pool_;
  std::atomic<bool> aborting_ = false;
  mutable RwLock mu_;
  std::map<std::string, std::shared_ptr<Index>> indexes_;  // guarded by mu_
};

// Parses "l2", "ip" or "cosine" (case-insensitive); INVALID_ARGUMENT naming the value.
absl::StatusOr<storage::Space> ParseSpace(absl::string_view text);

}  // namespace luxdb::engine
