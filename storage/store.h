// Durable storage of LuxDB's catalog and items in RocksDB.
//
// Layout of the data directory `dir`:
//   dir/db/       RocksDB. Column family "catalog" maps "index/<name>" to an encoded
//                 IndexConfig and "next_cf_id" to the next column family number. Each index
//                 has a column family "index-<cf_id>" whose keys are the item id as 8 bytes
//                 big-endian followed by one tag byte: 'v' -> the vector (dim floats, native
//                 byte order), 't' -> empty value marking the item deleted, 'a' -> the item's
//                 attributes (bytes the engine encodes; absent when it has none, and removed
//                 with the item's deletion).
//                 Column family "history" maps cf_id and version (8 bytes big-endian each)
//                 to the ids that version's Commit touched: the write history since the
//                 index's last graph snapshot (older records are trimmed).
//   dir/graphs/   graph snapshots: "<cf_id>.hnsw" with a "<cf_id>.meta" sidecar that records
//                 the IndexConfig::version the snapshot reflects, its size and SHA-256.
//
// Recovery: a graph snapshot of version S plus the items named by the history records of
// versions S+1..current, read in their stored (final) state, give the current graph.
//
// Durability: every mutating call is one atomic RocksDB write; with Options::sync (the
// default) its WAL is fsynced before the call returns. Concurrent callers of Commit share
// fsyncs through RocksDB's write-group leader (group commit).
//
// Resources: one column family per index, but what they hold together is bounded whatever
// their number: one WAL, one memtable budget (64 MiB), at most 128 table files open, one block
// cache, one open data directory; creating or dropping an index does not rewrite RocksDB's
// OPTIONS file, which lists the column families of the last Open (store_file_system.h). From
// 64 indexes on, a background thread keeps empty column families ready (up to 256, a quarter
// of the index count) in batches, because RocksDB's per-call work on creating one grows with
// the number of column families; CreateIndex takes one, so it costs O(1).
//
// Thread safety: every method may be called concurrently from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/backup_target.h"
#include "storage/index_config.h"

namespace luxdb::storage {

// An ordered set of item changes to one index, committed atomically by Store::Commit.
class ItemWrite {
 public:
  // Stores `vector` and `attributes` under `id` and clears any deleted mark of `id`. Empty
  // `attributes` with `clear_attributes` removes stored ones; without, the caller knows there
  // are none (no deletion is written: RocksDB would keep it as a tombstone).
  void Put(uint64_t id, std::span<const float> vector, std::string_view attributes = {},
           bool clear_attributes = false);
  // Marks `id` deleted; its vector stays stored; with `clear_attributes`, its attributes are
  // removed (the caller passes it when it has some).
  void MarkDeleted(uint64_t id, bool clear_attributes = false);
  // Replaces the attributes of `id` (removes them if empty); its vector is untouched. The
  // caller has checked that `id` is a live item.
  void SetAttributes(uint64_t id, std::string_view attributes);
  size_t size() const { return ops_.size(); }

  enum class Kind { kPut, kDelete, kSetAttributes };
  struct Op {
    uint64_t id;
    Kind kind;
    std::span<const float> vector;  // kPut; the caller keeps the floats alive until Commit
    std::string_view attributes;    // kPut, kSetAttributes; kept alive by the caller too
    bool clear_attributes = false;  // kPut with no attributes, kDelete: remove stored ones
  };
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

// A published graph snapshot, as its sidecar describes it.
struct SnapshotFile {
  std::string path;
  uint64_t version = 0;  // the IndexConfig::version the graph reflects
  uint64_t size = 0;
  std::string sha256_hex;
  // When it was published (its sidecar's modification time).
  std::chrono::system_clock::time_point written;
};

// What RocksDB reports about the whole store (Store::Stats).
struct StoreStats {
  // Bytes of keys and values written by LuxDB since this process opened the store.
  uint64_t bytes_written = 0;
  // RocksDB's estimate of the bytes its live data takes on disk, over every column family.
  uint64_t live_data_bytes = 0;
};

// One stored item, for replaying history.
struct StoredItem {
  std::vector<float> vector;
  bool deleted = false;
};

class Store {
 public:
  struct Options {
    // fsync the WAL before acknowledging a write. false trades crash safety for speed.
    bool sync = true;
  };

  // Opens or creates the data directory `dir` (created with mode 0700 if missing). Column
  // families left behind by a crash between creating and cataloguing an index, or between
  // uncataloguing and dropping one, are dropped, or kept for later indexes if empty (as are
  // those made ahead). Returns an error naming the directory if it
  // cannot be opened (e.g. another server holds its lock).
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir, Options options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The configs of every catalogued index, in name order.
  std::vector<IndexConfig> ListIndexes() const;

  // Creates the column family for a new index and catalogues `config` (cf_id is assigned and
  // version set to 0). ALREADY_EXISTS if the name is catalogued.
  absl::StatusOr<IndexConfig> CreateIndex(IndexConfig config);

  // Replaces the catalogued config of config.name (e.g. after init, resize, set ef).
  // NOT_FOUND if the name is not catalogued.
  absl::Status UpdateConfig(const IndexConfig& config);

  // Atomically applies `items` to the index, replaces its catalogued config with
  // `config_after` (whose version the caller has bumped) and records the ids touched as the
  // history of that version. Nothing is applied on error.
  absl::Status Commit(const IndexConfig& config_after, const ItemWrite& items);

  // Uncatalogues the index, drops its column family and removes its graph snapshot.
  absl::Status DropIndex(const std::string& name);

  // Calls `fn` for every stored item of the index, in ascending id order. `vector` is valid
  // only during the call. Stops and returns the first non-OK status `fn` returns; returns
  // DATA_LOSS if a stored vector does not have config.dim floats.
  absl::Status ScanItems(
      const IndexConfig& config,
      const std::function<absl::Status(uint64_t id, std::span<const float> vector, bool deleted)>&
          fn) const;

  // Calls `fn` for every stored item of the index that has attributes, in ascending id order
  // (`attributes` is valid only during the call). Stops at the first non-OK status of `fn`.
  absl::Status ScanAttributes(
      const IndexConfig& config,
      const std::function<absl::Status(uint64_t id, std::string_view attributes)>& fn) const;

  // One stored item. NOT_FOUND if the index never stored `id`.
  absl::StatusOr<StoredItem> GetItem(const IndexConfig& config, uint64_t id) const;

  // Calls `fn` for the history record of every version after `after_version` up to
  // config.version, in version order (`ids` is valid only during the call). NOT_FOUND if a
  // record is missing (trimmed): the history cannot bring a graph of `after_version` up to
  // date, and the caller must rebuild it from the items.
  absl::Status ScanHistory(
      const IndexConfig& config, uint64_t after_version,
      const std::function<absl::Status(uint64_t version, std::span<const uint64_t> ids)>& fn) const;
  // Deletes the history records of versions up to `up_to_version` (a published snapshot
  // covers them).
  absl::Status TrimHistory(const IndexConfig& config, uint64_t up_to_version);

  // Graph snapshots. The caller writes the graph to TempSnapshotPath, then PublishSnapshot
  // fsyncs it, records `version` with a checksum and renames it into place atomically.
  std::string TempSnapshotPath(uint64_t cf_id) const;
  absl::Status PublishSnapshot(uint64_t cf_id, uint64_t version);
  // The published snapshot of `cf_id` as its sidecar describes it, after checking the graph
  // file's size (cheap); NOT_FOUND if there is none; DATA_LOSS if the sidecar is unparsable
  // or the size differs (torn).
  absl::StatusOr<SnapshotFile> FindSnapshot(uint64_t cf_id) const;
  // Checks the snapshot's SHA-256 against its sidecar (reads the whole file; may run while
  // the graph is being loaded from it). DATA_LOSS if it differs.
  absl::Status VerifySnapshot(const SnapshotFile& snapshot) const;

  // Writes a consistent copy of the data directory into `target`, a new empty directory,
  // through its descriptor: the published graph snapshots, then a RocksDB checkpoint of the
  // catalog, items and history. Files are hard-linked where `target` is on the same
  // filesystem. The caller keeps PublishSnapshot and TrimHistory from running meanwhile, so
  // every copied snapshot plus the copied history reaches the copied items. Returns the bytes
  // written or linked; errors name target.path(). On error, what was written stays for the
  // caller's `target` to remove (BackupTarget::Remove, or its destructor).
  absl::StatusOr<uint64_t> Backup(const BackupTarget& target) const;

  // RocksDB's counters (see StoreStats): cheap, for metrics scrapes.
  StoreStats Stats() const;

  // Flushes memtables to disk. Called on clean shutdown, so that the next open has no log to
  // replay. Each column family's flush costs RocksDB 7.8 work over every column family: with
  // 10,000 indexes that have unflushed writes it is most of a 55 s shutdown (README "Many
  // indexes"); skipping it moved the cost to the next open (WAL replay, 33 s there).
  absl::Status Flush();

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace luxdb::storage
