// The graph snapshot files of every index, kept in one directory (internal to storage/).
//
// A snapshot of the index with column family number cf_id is "<cf_id>.hnsw", the bytes the
// engine wrote, and "<cf_id>.meta", a text sidecar recording the IndexConfig::version the
// graph reflects, its size and SHA-256. Both are replaced by rename, the sidecar last.
//
// Thread safety: calls for different cf_ids may run concurrently; calls for one cf_id must be
// serialised by the caller.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/store.h"

namespace luxdb::storage {

class GraphSnapshots {
 public:
  // `dir` must exist.
  explicit GraphSnapshots(std::string dir) : dir_(std::move(dir)) {}

  // Where the engine writes a new graph before Publish.
  std::string TempPath(uint64_t cf_id) const;
  // Fsyncs TempPath(cf_id), records its size, SHA-256 and `version` in the sidecar, and
  // renames both into place. The directory is fsynced before returning.
  absl::Status Publish(uint64_t cf_id, uint64_t version) const;
  // The published graph of `cf_id`, once its sidecar parses and its size matches. NOT_FOUND
  // if there is none or its sidecar is of another format; DATA_LOSS if the sidecar is
  // unparsable or the graph's size differs from it.
  absl::StatusOr<SnapshotFile> Find(uint64_t cf_id) const;
  // DATA_LOSS if the graph's SHA-256 (or size) differs from the sidecar's.
  absl::Status Verify(const SnapshotFile& snapshot) const;
  // Copies every published snapshot (graph and sidecar) into `target`, an existing empty
  // directory: hard links where it is on the same filesystem, else fsynced copies. Returns
  // the bytes copied or linked. The caller keeps Publish from running meanwhile.
  absl::StatusOr<uint64_t> CopyTo(const std::string& target) const;
  // Removes every file of `cf_id`, published or in progress. Missing files are not an error.
  absl::Status Remove(uint64_t cf_id) const;
  // Removes every temporary file and every snapshot whose cf_id is not in `live`. Returns the
  // largest cf_id named by any snapshot file found, or 0 if there was none.
  absl::StatusOr<uint64_t> RemoveAllExcept(const std::set<uint64_t>& live) const;

 private:
  std::string GraphPath(uint64_t cf_id) const;
  std::string MetaPath(uint64_t cf_id) const;
  std::string TempMetaPath(uint64_t cf_id) const;

  std::string dir_;
};

}  // namespace luxdb::storage
