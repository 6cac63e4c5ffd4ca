#include "storage/store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"
#include "rocksdb/write_buffer_manager.h"
#include "storage/graph_snapshots.h"
#include "storage/store_file_system.h"

namespace luxdb::storage {
namespace {

constexpr absl::string_view kDbSubdir = "/db";
constexpr absl::string_view kGraphsSubdir = "/graphs";
constexpr mode_t kPrivateDirMode = 0700;

constexpr char kCatalogColumnFamily[] = "catalog";
constexpr char kHistoryColumnFamily[] = "history";
constexpr absl::string_view kIndexColumnFamilyPrefix = "index-";
constexpr absl::string_view kIndexKeyPrefix = "index/";
constexpr char kNextCfIdKey[] = "next_cf_id";
// 0 is IndexConfig's "not assigned".
constexpr uint64_t kFirstCfId = 1;

// What an index costs must not grow with the number of indexes (one column family each,
// 10,000 is a normal count): these bound the memory and file descriptors of all of them.
//
// Shared by the memtables of every column family through one WriteBufferManager: once they
// hold this much, the column family with the oldest memtable is flushed. Vectors are already
// in memory in the graphs: the memtables only buffer writes until they are flushed, and every
// byte here adds to the server's resident memory. Every memtable, even an empty one, counts a
// 2 KiB inline block: this leaves room for about 20,000 indexes plus the buffered writes.
constexpr size_t kTotalMemtableBytes = size_t{64} << 20;
// One column family's memtable is flushed at this size, so a bulk load writes large files.
constexpr size_t kMemtableBytes = size_t{16} << 20;
// Memtables grow in blocks of this size after their 2 KiB inline block. RocksDB's default
// (an eighth of kMemtableBytes, at most 1 MiB) would charge 1 MiB to the budget above for the
// first few writes to every index: 64 indexes with a write each would fill it.
constexpr size_t kMemtableBlockBytes = size_t{64} << 10;
// Table files open at once (their descriptors, index and filter blocks), shared by every
// column family through RocksDB's table cache; RocksDB's default (-1) keeps every table file
// of every index open for good.
constexpr int kMaxOpenTableFiles = 128;
// Data blocks cached for reads, shared by every column family. Reads are rare: the graphs
// serve queries; storage is read by deletes (one block per id) and restarts (which bypass
// the cache).
constexpr size_t kBlockCacheBytes = size_t{8} << 20;
// Once the write-ahead logs hold this much, the column families whose unflushed writes keep
// the oldest log alive are flushed. RocksDB's default is four times the sum of every column
// family's write buffers, unbounded in the number of indexes; this bounds the log a restart
// replays.
constexpr uint64_t kMaxWalBytes = uint64_t{4} * kTotalMemtableBytes;
// Empty column families made ahead of CreateIndex by a background thread. RocksDB 7.8 copies
// the options of every column family on each CreateColumnFamily (in WriteOptionsFile, before
// the file StoreFileSystem refuses; about 10 us per column family here, page faults
// included), so creating them one by one costs O(n) each; CreateColumnFamilies pays that
// once per call. The pool holds a quarter of the index count, at most
// kMaxSpareColumnFamilies, none below kIndexesBeforeSpares indexes (where that pass is
// cheap); it is refilled once a quarter of that is left.
constexpr size_t kMaxSpareColumnFamilies = 256;
constexpr size_t kIndexesBeforeSpares = 64;
size_t SpareTarget(size_t indexes) {
  return indexes < kIndexesBeforeSpares ? 0 : std::min(kMaxSpareColumnFamilies, indexes / 4);
}
bool SparesLow(size_t spares, size_t indexes) { return spares < SpareTarget(indexes) / 4 + 1; }
// Wait before a failed refill is tried again (CreateIndex makes its own column family
// meanwhile).
constexpr auto kSpareRetryDelay = std::chrono::seconds(1);
constexpr size_t kKeptInfoLogFiles = 10;

constexpr char kAttributesTag = 'a';
constexpr char kDeletedTag = 't';
constexpr char kVectorTag = 'v';
constexpr size_t kItemIdBytes = sizeof(uint64_t);
constexpr size_t kItemKeyBytes = kItemIdBytes + 1;

std::string IndexColumnFamilyName(uint64_t cf_id) {
  return absl::StrCat(kIndexColumnFamilyPrefix, cf_id);
}

std::string CatalogKey(absl::string_view index_name) {
  return absl::StrCat(kIndexKeyPrefix, index_name);
}

// The cf_id of a column family named "index-<cf_id>".
std::optional<uint64_t> ParseIndexColumnFamilyName(absl::string_view name) {
  uint64_t cf_id = 0;
  if (!absl::ConsumePrefix(&name, kIndexColumnFamilyPrefix) || !absl::SimpleAtoi(name, &cf_id)) {
    return std::nullopt;
  }
  return cf_id;
}

// Big-endian ids make RocksDB's bytewise key order the numeric id order.
std::string ItemKey(uint64_t id, char tag) {
  std::string key(kItemKeyBytes, '\0');
  for (size_t i = 0; i < kItemIdBytes; ++i) {
    key[i] = static_cast<char>(static_cast<uint8_t>(id >> (8 * (kItemIdBytes - 1 - i))));
  }
  key[kItemIdBytes] = tag;
  return key;
}

// History keys: cf_id then version, both big-endian, so one index's history is one key range
// in version order.
std::string HistoryKey(uint64_t cf_id, uint64_t version) {
  std::string key(2 * sizeof(uint64_t), '\0');
  for (size_t i = 0; i < sizeof(uint64_t); ++i) {
    key[i] = static_cast<char>(static_cast<uint8_t>(cf_id >> (8 * (7 - i))));
    key[8 + i] = static_cast<char>(static_cast<uint8_t>(version >> (8 * (7 - i))));
  }
  return key;
}

uint64_t BigEndian64(const char* bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(uint64_t); ++i)
    value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

uint64_t ItemKeyId(const rocksdb::Slice& key) {
  uint64_t id = 0;
  for (size_t i = 0; i < kItemIdBytes; ++i) id = (id << 8) | static_cast<uint8_t>(key[i]);
  return id;
}

rocksdb::Slice VectorBytes(std::span<const float> vector) {
  return rocksdb::Slice(reinterpret_cast<const char*>(vector.data()), vector.size_bytes());
}

absl::Status FromRocksDb(const rocksdb::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", status.ToString());
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (status.IsIOError() || status.IsBusy() || status.IsTimedOut() || status.IsTryAgain()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

absl::Status EnsurePrivateDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), kPrivateDirMode) == 0) return absl::OkStatus();
  if (errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create directory '", path, "'"));
  }
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot stat '", path, "'"));
  }
  if (!S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("'", path, "' is not a directory"));
  }
  return absl::OkStatus();
}

// What every column family of one Store shares: one file system, memtable budget, table
// factory and block cache, whatever the number of column families.
struct SharedResources {
  SharedResources()
      : file_system(std::make_shared<StoreFileSystem>()),
        env(rocksdb::NewCompositeEnv(file_system)),
        write_buffer_manager(std::make_shared<rocksdb::WriteBufferManager>(kTotalMemtableBytes)),
        table_factory(MakeTableFactory()) {}

  static std::shared_ptr<rocksdb::TableFactory> MakeTableFactory() {
    rocksdb::BlockBasedTableOptions table_options;
    table_options.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
    return std::shared_ptr<rocksdb::TableFactory>(
        rocksdb::NewBlockBasedTableFactory(table_options));
  }

  const std::shared_ptr<StoreFileSystem> file_system;
  const std::unique_ptr<rocksdb::Env> env;  // on file_system
  const std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager;
  const std::shared_ptr<rocksdb::TableFactory> table_factory;
};

rocksdb::DBOptions MakeDbOptions(const SharedResources& shared) {
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.env = shared.env.get();
  options.write_buffer_manager = shared.write_buffer_manager;
  options.max_open_files = kMaxOpenTableFiles;
  options.max_total_wal_size = kMaxWalBytes;
  options.keep_log_file_num = kKeptInfoLogFiles;
  // Open reads neither the properties nor the size of every table file (one or more per
  // index): compaction statistics and the size check are not worth a file opened per index.
  options.skip_stats_update_on_db_open = true;
  options.skip_checking_sst_file_sizes_on_db_open = true;
  // OPTIONS files are written at open only (StoreFileSystem): a refused rewrite is logged by
  // RocksDB, not an error.
  options.fail_if_options_file_error = false;
  return options;
}

rocksdb::ColumnFamilyOptions MakeColumnFamilyOptions(const SharedResources& shared) {
  rocksdb::ColumnFamilyOptions options;
  options.write_buffer_size = kMemtableBytes;
  options.arena_block_size = kMemtableBlockBytes;
  options.table_factory = shared.table_factory;
  return options;
}

// One catalogued index.
struct IndexEntry {
  IndexEntry(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, IndexConfig config)
      : db(db), cf(cf), cf_id(config.cf_id), config(std::move(config)) {}
  ~IndexEntry() { db->DestroyColumnFamilyHandle(cf).PermitUncheckedError(); }
  IndexEntry(const IndexEntry&) = delete;
  IndexEntry& operator=(const IndexEntry&) = delete;

  rocksdb::DB* const db;
  // Stays usable for reads after the column family is dropped, until this entry is destroyed.
  rocksdb::ColumnFamilyHandle* const cf;
  const uint64_t cf_id;
  // Guards `config` and `dropped`. Held exclusively across every write of this index's
  // catalog record, so `config` changes in the same order as the record on disk, and by
  // DropIndex, so no write lands after it.
  std::shared_mutex mu;
  IndexConfig config;
  bool dropped = false;
};

struct CatalogContents {
  std::map<std::string, IndexConfig> configs;
  std::optional<uint64_t> next_cf_id;
};

}  // namespace

void ItemWrite::Put(uint64_t id, std::span<const float> vector, std::string_view attributes,
                    bool clear_attributes) {
  ops_.push_back({.id = id,
                  .kind = Kind::kPut,
                  .vector = vector,
                  .attributes = attributes,
                  .clear_attributes = clear_attributes});
}

void ItemWrite::MarkDeleted(uint64_t id, bool clear_attributes) {
  ops_.push_back({.id = id,
                  .kind = Kind::kDelete,
                  .vector = {},
                  .attributes = {},
                  .clear_attributes = clear_attributes});
}

void ItemWrite::SetAttributes(uint64_t id, std::string_view attributes) {
  ops_.push_back({.id = id,
                  .kind = Kind::kSetAttributes,
                  .vector = {},
                  .attributes = attributes,
                  .clear_attributes = true});
}

struct Store::Impl {
  Impl(std::string dir, Options options)
      : dir(std::move(dir)), snapshots(this->dir + std::string(kGraphsSubdir)) {
    write_options.sync = options.sync;
  }
  ~Impl();

  absl::Status OpenDatabase();
  absl::StatusOr<CatalogContents> ReadCatalog() const;
  // Creates an entry for every catalogued index, drops uncatalogued index column families and
  // snapshots, and sets next_cf_id above every cf_id seen.
  absl::Status Reconcile(const CatalogContents& catalog_contents);

  absl::StatusOr<std::shared_ptr<IndexEntry>> Find(const std::string& name) const;
  // OK if `config` may replace the catalogued config of `entry`, whose mu the caller holds.
  static absl::Status CheckReplaceable(const IndexEntry& entry, const IndexConfig& config);
  absl::Status Write(rocksdb::WriteBatch* batch, absl::string_view what);

  const std::string dir;
  rocksdb::WriteOptions write_options;
  const GraphSnapshots snapshots;
  // Outlives `db`, which uses it.
  const SharedResources shared;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* catalog = nullptr;
  rocksdb::ColumnFamilyHandle* history = nullptr;
  // Handles not owned by an IndexEntry (default, catalog, any unknown column family).
  std::vector<rocksdb::ColumnFamilyHandle*> other_cfs;

  // Refills `spares` while not `stopping`; started once Open has reconciled.
  void MakeSpares();

  // Serialises CreateIndex and DropIndex; guards next_cf_id, index_count, spares and stopping.
  std::mutex schema_mu;
  uint64_t next_cf_id = kFirstCfId;
  size_t index_count = 0;  // catalogued
  // Empty, uncatalogued index column families, oldest first, for CreateIndex to take (see
  // kSpareColumnFamilies). Open keeps the empty uncatalogued ones it finds as spares.
  std::deque<rocksdb::ColumnFamilyHandle*> spares;
  bool stopping = false;
  // Wakes the spare maker: spares ran low, or stopping.
  std::condition_variable spares_low;
  std::thread spare_maker;

  // Guards `indexes`.
  mutable std::shared_mutex mu;
  std::map<std::string, std::shared_ptr<IndexEntry>> indexes;
};

Store::Impl::~Impl() {
  {
    std::lock_guard lock(schema_mu);
    stopping = true;
  }
  spares_low.notify_all();
  if (spare_maker.joinable()) spare_maker.join();
  {
    std::lock_guard lock(mu);
    indexes.clear();
  }
  if (db == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* cf : other_cfs) {
    db->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
  }
  for (rocksdb::ColumnFamilyHandle* cf : spares) {
    db->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
  }
  db->Close().PermitUncheckedError();
}

void Store::Impl::MakeSpares() {
  std::unique_lock lock(schema_mu);
  while (true) {
    spares_low.wait(lock, [&] {
      return stopping || (SpareTarget(index_count) > 0 && SparesLow(spares.size(), index_count));
    });
    if (stopping) return;
    const uint64_t first = next_cf_id;
    const size_t count = SpareTarget(index_count) - spares.size();
    // Taken before the attempt, like CreateIndex's: a failure may leave some created.
    next_cf_id += count;
    lock.unlock();
    std::vector<std::string> names;
    for (uint64_t cf_id = first; cf_id < first + count; ++cf_id) {
      names.push_back(IndexColumnFamilyName(cf_id));
    }
    std::vector<rocksdb::ColumnFamilyHandle*> made;
    const rocksdb::Status status =
        db->CreateColumnFamilies(MakeColumnFamilyOptions(shared), names, &made);
    lock.lock();
    spares.insert(spares.end(), made.begin(), made.end());
    if (!status.ok()) {
      spares_low.wait_for(lock, kSpareRetryDelay, [&] { return stopping; });
    }
  }
}

absl::Status Store::Impl::OpenDatabase() {
  const std::string db_path = dir + std::string(kDbSubdir);
  const rocksdb::DBOptions db_options = MakeDbOptions(shared);
  std::vector<std::string> cf_names = {rocksdb::kDefaultColumnFamilyName};
  std::error_code error;
  if (std::filesystem::exists(db_path + "/CURRENT", error)) {
    // The OPTIONS file of the first open is kept (see StoreFileSystem): writing it again at
    // every open serialises, fsyncs and parses back every column family's options, a
    // seventh of the open time with 10,000 indexes.
    shared.file_system->SkipOptionsRewrites();
    rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, db_path, &cf_names);
    if (!listed.ok()) {
      return FromRocksDb(listed, absl::StrCat("cannot list column families of '", db_path, "'"));
    }
  }
  for (const char* name : {kCatalogColumnFamily, kHistoryColumnFamily}) {
    if (std::find(cf_names.begin(), cf_names.end(), name) == cf_names.end()) {
      cf_names.push_back(name);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : cf_names) {
    descriptors.emplace_back(name, MakeColumnFamilyOptions(shared));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* opened = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(db_options, db_path, descriptors, &handles, &opened);
  if (!status.ok()) {
    return FromRocksDb(status, absl::StrCat("cannot open data directory '", dir, "'"));
  }
  db.reset(opened);
  shared.file_system->SkipOptionsRewrites();
  other_cfs = std::move(handles);
  for (rocksdb::ColumnFamilyHandle* cf : other_cfs) {
    if (cf->GetName() == kCatalogColumnFamily) catalog = cf;
    if (cf->GetName() == kHistoryColumnFamily) history = cf;
  }
  return absl::OkStatus();
}

absl::StatusOr<CatalogContents> Store::Impl::ReadCatalog() const {
  CatalogContents contents;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), catalog));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key(it->key().data(), it->key().size());
    absl::string_view value(it->value().data(), it->value().size());
    if (key == kNextCfIdKey) {
      uint64_t next = 0;
      if (!absl::SimpleAtoi(value, &next)) {
        return absl::DataLossError(absl::StrCat("catalog of '", dir, "' has an invalid ",
                                                kNextCfIdKey, " '", absl::CHexEscape(value), "'"));
      }
      contents.next_cf_id = next;
      continue;
    }
    absl::string_view name = key;
    if (!absl::ConsumePrefix(&name, kIndexKeyPrefix)) {
      return absl::DataLossError(absl::StrCat("catalog of '", dir, "' has an unexpected key '",
                                              absl::CHexEscape(key), "'"));
    }
    absl::StatusOr<IndexConfig> config = DecodeIndexConfig(value);
    if (!config.ok()) {
      return absl::DataLossError(absl::StrCat("catalog record of index '", name, "' in '", dir,
                                              "': ", config.status().message()));
    }
    if (config->name != name) {
      return absl::DataLossError(absl::StrCat("catalog record of index '", name, "' in '", dir,
                                              "' names index '", config->name, "'"));
    }
    contents.configs.emplace(std::string(name), *std::move(config));
  }
  if (!it->status().ok()) {
    return FromRocksDb(it->status(), absl::StrCat("cannot read the catalog of '", dir, "'"));
  }
  return contents;
}

absl::Status Store::Impl::Reconcile(const CatalogContents& catalog_contents) {
  // A handle leaves `other_cfs` only when an entry takes it or it is destroyed, so none leaks
  // or is destroyed twice on any return below.
  std::map<uint64_t, rocksdb::ColumnFamilyHandle*> index_cfs;
  for (rocksdb::ColumnFamilyHandle* cf : other_cfs) {
    if (std::optional<uint64_t> cf_id = ParseIndexColumnFamilyName(cf->GetName())) {
      index_cfs.emplace(*cf_id, cf);
    }
  }

  uint64_t next = std::max(kFirstCfId, catalog_contents.next_cf_id.value_or(kFirstCfId));
  if (!index_cfs.empty()) next = std::max(next, index_cfs.rbegin()->first + 1);

  std::set<uint64_t> live_cf_ids;
  std::map<std::string, std::shared_ptr<IndexEntry>> entries;
  for (const auto& [name, config] : catalog_contents.configs) {
    if (!live_cf_ids.insert(config.cf_id).second) {
      return absl::DataLossError(absl::StrCat("catalog of '", dir, "' gives cf_id ", config.cf_id,
                                              " to more than one index"));
    }
    auto cf = index_cfs.find(config.cf_id);
    if (cf == index_cfs.end()) {
      return absl::DataLossError(absl::StrCat("index '", name, "' in '", dir,
                                              "' has no column family ",
                                              IndexColumnFamilyName(config.cf_id)));
    }
    std::erase(other_cfs, cf->second);
    entries.emplace(name, std::make_shared<IndexEntry>(db.get(), cf->second, config));
    index_cfs.erase(cf);
    next = std::max(next, config.cf_id + 1);
  }
  {
    std::lock_guard lock(mu);
    indexes = std::move(entries);
  }
  {
    std::lock_guard lock(schema_mu);
    index_count = catalog_contents.configs.size();
  }

  for (const auto& [cf_id, cf] : index_cfs) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
    it->SeekToFirst();
    if (!it->Valid() && it->status().ok()) {  // empty: a spare, or as good as one
      std::erase(other_cfs, cf);
      std::lock_guard lock(schema_mu);
      spares.push_back(cf);
      continue;
    }
    it.reset();
    if (rocksdb::Status s = db->DropColumnFamily(cf); !s.ok()) {
      return FromRocksDb(s, absl::StrCat("cannot drop uncatalogued column family ", cf->GetName(),
                                         " in '", dir, "'"));
    }
    std::erase(other_cfs, cf);
    db->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
  }

  // History of indexes no longer catalogued (a crash during DropIndex).
  {
    rocksdb::WriteBatch batch;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), history));
    for (it->SeekToFirst(); it->Valid();) {
      if (it->key().size() != 2 * sizeof(uint64_t)) {
        return absl::DataLossError(
            absl::StrCat("history of '", dir, "' holds a key of ", it->key().size(), " bytes"));
      }
      const uint64_t cf_id = BigEndian64(it->key().data());
      if (!live_cf_ids.contains(cf_id)) {
        batch.DeleteRange(history, HistoryKey(cf_id, 0), HistoryKey(cf_id + 1, 0));
      }
      if (cf_id == UINT64_MAX) break;
      it->Seek(HistoryKey(cf_id + 1, 0));
    }
    if (!it->status().ok()) {
      return FromRocksDb(it->status(), absl::StrCat("cannot read the history of '", dir, "'"));
    }
    if (batch.Count() > 0) {
      if (absl::Status s = Write(&batch, "cannot remove the history of dropped indexes"); !s.ok()) {
        return s;
      }
    }
  }

  absl::StatusOr<uint64_t> max_snapshot_cf_id = snapshots.RemoveAllExcept(live_cf_ids);
  if (!max_snapshot_cf_id.ok()) return max_snapshot_cf_id.status();
  next = std::max(next, *max_snapshot_cf_id + 1);

  std::lock_guard lock(schema_mu);
  next_cf_id = next;
  if (catalog_contents.next_cf_id == next) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  batch.Put(catalog, kNextCfIdKey, absl::StrCat(next));
  return Write(&batch, absl::StrCat("cannot record ", kNextCfIdKey, " ", next));
}

absl::StatusOr<std::shared_ptr<IndexEntry>> Store::Impl::Find(const std::string& name) const {
  std::shared_lock lock(mu);
  auto it = indexes.find(name);
  if (it == indexes.end()) {
    return absl::NotFoundError(absl::StrCat("index '", name, "' does not exist"));
  }
  return it->second;
}

absl::Status Store::Impl::CheckReplaceable(const IndexEntry& entry, const IndexConfig& config) {
  if (entry.dropped) {
    return absl::NotFoundError(absl::StrCat("index '", config.name, "' does not exist"));
  }
  if (config.cf_id != entry.cf_id) {
    return absl::NotFoundError(absl::StrCat("index '", config.name, "' with cf_id ", config.cf_id,
                                            " does not exist (the index of that name has cf_id ",
                                            entry.cf_id, ")"));
  }
  if (config.dim != entry.config.dim) {
    return absl::InvalidArgumentError(absl::StrCat("index '", config.name, "' has dimension ",
                                                   entry.config.dim, "; it cannot change to ",
                                                   config.dim));
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::Write(rocksdb::WriteBatch* batch, absl::string_view what) {
  return FromRocksDb(db->Write(write_options, batch), absl::StrCat(what, " in '", dir, "'"));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() = default;

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir, Options options) {
  if (dir.empty()) return absl::InvalidArgumentError("data directory must not be empty");
  for (const std::string& path : {dir, dir + std::string(kGraphsSubdir)}) {
    if (absl::Status s = EnsurePrivateDirectory(path); !s.ok()) return s;
  }
  auto impl = std::make_unique<Impl>(dir, options);
  if (absl::Status s = impl->OpenDatabase(); !s.ok()) return s;
  absl::StatusOr<CatalogContents> catalog_contents = impl->ReadCatalog();
  if (!catalog_contents.ok()) return catalog_contents.status();
  if (absl::Status s = impl->Reconcile(*catalog_contents); !s.ok()) return s;
  impl->spare_maker = std::thread([i = impl.get()] { i->MakeSpares(); });
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

std::vector<IndexConfig> Store::ListIndexes() const {
  std::vector<std::shared_ptr<IndexEntry>> entries;
  {
    std::shared_lock lock(impl_->mu);
    for (const auto& [name, entry] : impl_->indexes) entries.push_back(entry);
  }
  std::vector<IndexConfig> configs;
  configs.reserve(entries.size());
  for (const std::shared_ptr<IndexEntry>& entry : entries) {
    std::shared_lock lock(entry->mu);
    if (!entry->dropped) configs.push_back(entry->config);
  }
  return configs;
}

absl::StatusOr<IndexConfig> Store::CreateIndex(IndexConfig config) {
  if (config.name.empty()) return absl::InvalidArgumentError("index name must not be empty");
  std::lock_guard schema_lock(impl_->schema_mu);
  if (impl_->Find(config.name).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("index '", config.name, "' already exists"));
  }
  config.version = 0;
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  if (!impl_->spares.empty()) {
    cf = impl_->spares.front();
    impl_->spares.pop_front();
    config.cf_id = *ParseIndexColumnFamilyName(cf->GetName());
  } else {  // the spare maker is behind, or failing
    config.cf_id = impl_->next_cf_id;
    // Never tried twice: RocksDB may fail after the column family exists (it then has no
    // handle for it), and the name stays taken until Open drops the uncatalogued column family.
    impl_->next_cf_id = config.cf_id + 1;
    const std::string cf_name = IndexColumnFamilyName(config.cf_id);
    if (rocksdb::Status s =
            impl_->db->CreateColumnFamily(MakeColumnFamilyOptions(impl_->shared), cf_name, &cf);
        !s.ok()) {
      if (cf != nullptr) {
        impl_->db->DropColumnFamily(cf).PermitUncheckedError();
        impl_->db->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
      }
      return FromRocksDb(s, absl::StrCat("cannot create column family ", cf_name, " for index '",
                                         config.name, "' in '", impl_->dir, "'"));
    }
  }

  rocksdb::WriteBatch batch;
  batch.Put(impl_->catalog, CatalogKey(config.name), EncodeIndexConfig(config));
  batch.Put(impl_->catalog, kNextCfIdKey, absl::StrCat(impl_->next_cf_id));
  if (absl::Status s =
          impl_->Write(&batch, absl::StrCat("cannot catalogue index '", config.name, "'"));
      !s.ok()) {
    impl_->spares.push_front(cf);  // still empty
    return s;
  }
  auto entry = std::make_shared<IndexEntry>(impl_->db.get(), cf, config);
  {
    std::lock_guard lock(impl_->mu);
    impl_->indexes.emplace(config.name, std::move(entry));
  }
  ++impl_->index_count;
  if (SpareTarget(impl_->index_count) > 0 && SparesLow(impl_->spares.size(), impl_->index_count)) {
    impl_->spares_low.notify_one();
  }
  return config;
}

absl::Status Store::UpdateConfig(const IndexConfig& config) {
  absl::StatusOr<std::shared_ptr<IndexEntry>> entry = impl_->Find(config.name);
  if (!entry.ok()) return entry.status();
  std::lock_guard lock((*entry)->mu);
  if (absl::Status s = Impl::CheckReplaceable(**entry, config); !s.ok()) return s;
  rocksdb::WriteBatch batch;
  batch.Put(impl_->catalog, CatalogKey(config.name), EncodeIndexConfig(config));
  if (absl::Status s = impl_->Write(
          &batch, absl::StrCat("cannot update the config of index '", config.name, "'"));
      !s.ok()) {
    return s;
  }
  (*entry)->config = config;
  return absl::OkStatus();
}

absl::Status Store::Commit(const IndexConfig& config_after, const ItemWrite& items) {
  absl::StatusOr<std::shared_ptr<IndexEntry>> found = impl_->Find(config_after.name);
  if (!found.ok()) return found.status();
  IndexEntry& entry = **found;
  std::lock_guard lock(entry.mu);
  if (absl::Status s = Impl::CheckReplaceable(entry, config_after); !s.ok()) return s;

  rocksdb::WriteBatch batch;
  // Ids known to have a vector once the ops so far are applied.
  std::unordered_set<uint64_t> stored_ids;
  auto put_attributes = [&](const ItemWrite::Op& op) {
    if (op.attributes.empty()) {
      if (op.clear_attributes) batch.Delete(entry.cf, ItemKey(op.id, kAttributesTag));
    } else {
      batch.Put(entry.cf, ItemKey(op.id, kAttributesTag),
                rocksdb::Slice(op.attributes.data(), op.attributes.size()));
    }
  };
  for (const ItemWrite::Op& op : items.ops()) {
    if (op.kind == ItemWrite::Kind::kSetAttributes) {
      put_attributes(op);
      continue;
    }
    if (op.kind == ItemWrite::Kind::kPut) {
      if (op.vector.size() != config_after.dim) {
        return absl::InvalidArgumentError(
            absl::StrCat("vector ", op.id, " has dimension ", op.vector.size(), ", index '",
                         config_after.name, "' expects ", config_after.dim));
      }
      batch.Put(entry.cf, ItemKey(op.id, kVectorTag), VectorBytes(op.vector));
      batch.Delete(entry.cf, ItemKey(op.id, kDeletedTag));
      put_attributes(op);
      stored_ids.insert(op.id);
      continue;
    }
    if (!stored_ids.contains(op.id)) {
      rocksdb::PinnableSlice vector;
      rocksdb::Status s =
          impl_->db->Get(rocksdb::ReadOptions(), entry.cf, ItemKey(op.id, kVectorTag), &vector);
      if (s.IsNotFound()) {
        return absl::NotFoundError(absl::StrCat("index '", config_after.name,
                                                "' has no item with id ", op.id, " to delete"));
      }
      if (!s.ok()) {
        return FromRocksDb(
            s, absl::StrCat("cannot read item ", op.id, " of index '", config_after.name, "'"));
      }
      stored_ids.insert(op.id);
    }
    batch.Put(entry.cf, ItemKey(op.id, kDeletedTag), rocksdb::Slice());
    if (op.clear_attributes) batch.Delete(entry.cf, ItemKey(op.id, kAttributesTag));
  }
  batch.Put(impl_->catalog, CatalogKey(config_after.name), EncodeIndexConfig(config_after));
  // The history record: the ids this version touched, 8 bytes each, native order.
  std::string touched;
  touched.reserve(items.size() * sizeof(uint64_t));
  for (const ItemWrite::Op& op : items.ops()) {
    touched.append(reinterpret_cast<const char*>(&op.id), sizeof(op.id));
  }
  batch.Put(impl_->history, HistoryKey(entry.cf_id, config_after.version), touched);
  if (absl::Status s =
          impl_->Write(&batch, absl::StrCat("cannot commit ", items.size(),
                                            " item changes to index '", config_after.name, "'"));
      !s.ok()) {
    return s;
  }
  entry.config = config_after;
  return absl::OkStatus();
}

absl::Status Store::DropIndex(const std::string& name) {
  std::lock_guard schema_lock(impl_->schema_mu);
  absl::StatusOr<std::shared_ptr<IndexEntry>> found = impl_->Find(name);
  if (!found.ok()) return found.status();
  std::shared_ptr<IndexEntry> entry = *std::move(found);
  {
    std::lock_guard lock(entry->mu);
    rocksdb::WriteBatch batch;
    batch.Delete(impl_->catalog, CatalogKey(name));
    batch.DeleteRange(impl_->history, HistoryKey(entry->cf_id, 0), HistoryKey(entry->cf_id + 1, 0));
    if (absl::Status s =
            impl_->Write(&batch, absl::StrCat("cannot uncatalogue index '", name, "'"));
        !s.ok()) {
      return s;
    }
    entry->dropped = true;
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->indexes.erase(name);
  }
  --impl_->index_count;
  // The index is gone once uncatalogued. What follows only reclaims space; Open repeats it
  // for whatever a failure here leaves behind, so a failure is not the caller's to handle.
  impl_->db->DropColumnFamily(entry->cf).PermitUncheckedError();
  impl_->snapshots.Remove(entry->cf_id).IgnoreError();
  return absl::OkStatus();
}

absl::Status Store::ScanItems(
    const IndexConfig& config,
    const std::function<absl::Status(uint64_t id, std::span<const float> vector, bool deleted)>& fn)
    const {
  absl::StatusOr<std::shared_ptr<IndexEntry>> found = impl_->Find(config.name);
  if (!found.ok()) return found.status();
  const std::shared_ptr<IndexEntry> entry = *std::move(found);
  if (entry->cf_id != config.cf_id) {
    return absl::NotFoundError(
        absl::StrCat("index '", config.name, "' with cf_id ", config.cf_id, " does not exist"));
  }
  auto mark_without_vector = [&](uint64_t id) {
    return absl::DataLossError(absl::StrCat("item ", id, " of index '", config.name,
                                            "' is marked deleted but has no vector"));
  };

  const size_t vector_bytes = size_t{config.dim} * sizeof(float);
  std::vector<float> vector(config.dim);
  rocksdb::ReadOptions read_options;
  read_options.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, entry->cf));
  // The id of a deleted mark not yet followed by its vector.
  bool pending_mark = false;
  uint64_t marked_id = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    const char tag = key.size() == kItemKeyBytes ? key[kItemIdBytes] : '\0';
    if (tag == kAttributesTag) continue;  // ScanAttributes reads them
    if (tag != kVectorTag && tag != kDeletedTag) {
      return absl::DataLossError(
          absl::StrCat("index '", config.name, "' holds key '",
                       absl::BytesToHexString(absl::string_view(key.data(), key.size())),
                       "', which is not an item key"));
    }
    const uint64_t id = ItemKeyId(key);
    if (pending_mark && (tag == kDeletedTag || marked_id != id)) {
      return mark_without_vector(marked_id);
    }
    if (tag == kDeletedTag) {
      pending_mark = true;
      marked_id = id;
      continue;
    }
    const rocksdb::Slice value = it->value();
    if (value.size() != vector_bytes) {
      return absl::DataLossError(absl::StrCat("item ", id, " of index '", config.name, "' has ",
                                              value.size(), " bytes of vector; dimension ",
                                              config.dim, " needs ", vector_bytes));
    }
    std::memcpy(vector.data(), value.data(), vector_bytes);
    const bool deleted = std::exchange(pending_mark, false);
    if (absl::Status s = fn(id, vector, deleted); !s.ok()) return s;
  }
  if (!it->status().ok()) {
    return FromRocksDb(it->status(),
                       absl::StrCat("cannot read the items of index '", config.name, "'"));
  }
  if (pending_mark) return mark_without_vector(marked_id);
  return absl::OkStatus();
}

absl::Status Store::ScanAttributes(
    const IndexConfig& config,
    const std::function<absl::Status(uint64_t id, std::string_view attributes)>& fn) const {
  absl::StatusOr<std::shared_ptr<IndexEntry>> found = impl_->Find(config.name);
  if (!found.ok()) return found.status();
  const std::shared_ptr<IndexEntry> entry = *std::move(found);
  if (entry->cf_id != config.cf_id) {
    return absl::NotFoundError(
        absl::StrCat("index '", config.name, "' with cf_id ", config.cf_id, " does not exist"));
  }
  rocksdb::ReadOptions read_options;
  read_options.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, entry->cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    if (key.size() != kItemKeyBytes || key[kItemIdBytes] != kAttributesTag) continue;
    const rocksdb::Slice value = it->value();
    if (absl::Status s = fn(ItemKeyId(key), std::string_view(value.data(), value.size()));
        !s.ok()) {
      return s;
    }
  }
  if (!it->status().ok()) {
    return FromRocksDb(it->status(),
                       absl::StrCat("cannot read the attributes of index '", config.name, "'"));
  }
  return absl::OkStatus();
}

std::string Store::TempSnapshotPath(uint64_t cf_id) const {
  return impl_->snapshots.TempPath(cf_id);
}

absl::Status Store::PublishSnapshot(uint64_t cf_id, uint64_t version) {
  return impl_->snapshots.Publish(cf_id, version);
}

absl::StatusOr<SnapshotFile> Store::FindSnapshot(uint64_t cf_id) const {
  return impl_->snapshots.Find(cf_id);
}

absl::Status Store::VerifySnapshot(const SnapshotFile& snapshot) const {
  return impl_->snapshots.Verify(snapshot);
}

absl::Status Store::ScanHistory(
    const IndexConfig& config, uint64_t after_version,
    const std::function<absl::Status(uint64_t version, std::span<const uint64_t> ids)>& fn) const {
  absl::StatusOr<std::shared_ptr<IndexEntry>> found = impl_->Find(config.name);
  if (!found.ok()) return found.status();
  const uint64_t cf_id = (*found)->cf_id;
  rocksdb::ReadOptions read_options;
  read_options.fill_cache = false;
  const std::string end = HistoryKey(cf_id, config.version + 1);
  const rocksdb::Slice end_slice(end);
  read_options.iterate_upper_bound = &end_slice;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, impl_->history));
  uint64_t expected = after_version + 1;
  std::vector<uint64_t> ids;
  for (it->Seek(HistoryKey(cf_id, expected)); it->Valid(); it->Next(), ++expected) {
    const uint64_t version = BigEndian64(it->key().data() + sizeof(uint64_t));
    if (version != expected) break;
    const rocksdb::Slice value = it->value();
    if (value.size() % sizeof(uint64_t) != 0) {
      return absl::DataLossError(absl::StrCat("history record ", version, " of index '",
                                              config.name, "' has ", value.size(), " bytes"));
    }
    ids.resize(value.size() / sizeof(uint64_t));
    std::memcpy(ids.data(), value.data(), value.size());
    if (absl::Status s = fn(version, ids); !s.ok()) return s;
  }
  if (!it->status().ok()) {
    return FromRocksDb(it->status(),
                       absl::StrCat("cannot read the history of index '", config.name, "'"));
  }
  if (expected != config.version + 1) {
    return absl::NotFoundError(absl::StrCat("history of index '", config.name,
                                            "' has no record of version ", expected, " (trimmed)"));
  }
  return absl::OkStatus();
}

absl::Status Store::TrimHistory(const IndexConfig& config, uint64_t up_to_version) {
  rocksdb::WriteBatch batch;
  batch.DeleteRange(impl_->history, HistoryKey(config.cf_id, 0),
                    HistoryKey(config.cf_id, up_to_version + 1));
  return impl_->Write(&batch, absl::StrCat("cannot trim the history of index '", config.name, "'"));
}

absl::StatusOr<StoredItem> Store::GetItem(const IndexConfig& config, uint64_t id) const {
  absl::StatusOr<std::shared_ptr<IndexEntry>> found = impl_->Find(config.name);
  if (!found.ok()) return found.status();
  const IndexEntry& entry = **found;
  rocksdb::PinnableSlice value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), entry.cf, ItemKey(id, kVectorTag), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("index '", config.name, "' has no stored item ", id));
  }
  if (!s.ok()) {
    return FromRocksDb(s, absl::StrCat("cannot read item ", id, " of index '", config.name, "'"));
  }
  if (value.size() != size_t{config.dim} * sizeof(float)) {
    return absl::DataLossError(absl::StrCat("item ", id, " of index '", config.name, "' has ",
                                            value.size(), " bytes of vector"));
  }
  StoredItem item;
  item.vector.resize(config.dim);
  std::memcpy(item.vector.data(), value.data(), value.size());
  rocksdb::PinnableSlice mark;
  s = impl_->db->Get(rocksdb::ReadOptions(), entry.cf, ItemKey(id, kDeletedTag), &mark);
  if (!s.ok() && !s.IsNotFound()) {
    return FromRocksDb(s, absl::StrCat("cannot read item ", id, " of index '", config.name, "'"));
  }
  item.deleted = s.ok();
  return item;
}

absl::StatusOr<uint64_t> Store::Backup(const BackupTarget& target) const {
  namespace fs = std::filesystem;
  // Messages name the target as the user gave it, not the /proc path the work goes through.
  auto failed = [&](const absl::Status& status, absl::string_view subdir, absl::string_view what) {
    return absl::Status(status.code(), absl::StrCat("cannot write ", what, " to '", target.path(),
                                                    subdir, "': ", status.message()));
  };
  const absl::string_view graphs = absl::StripPrefix(kGraphsSubdir, "/");
  if (absl::Status s = target.MakeDirectory(graphs); !s.ok()) return s;
  absl::StatusOr<uint64_t> bytes = impl_->snapshots.CopyTo(target.PathOf(graphs));
  if (!bytes.ok()) return failed(bytes.status(), kGraphsSubdir, "the graph snapshots");

  rocksdb::Checkpoint* raw = nullptr;
  if (rocksdb::Status s = rocksdb::Checkpoint::Create(impl_->db.get(), &raw); !s.ok()) {
    return FromRocksDb(s, "cannot start a checkpoint");
  }
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // RocksDB writes "db.tmp" and renames it to "db", both inside the target's descriptor.
  const std::string db = target.PathOf(absl::StripPrefix(kDbSubdir, "/"));
  if (rocksdb::Status s = checkpoint->CreateCheckpoint(db); !s.ok()) {
    return failed(FromRocksDb(s, "RocksDB checkpoint"), kDbSubdir, "a checkpoint");
  }
  std::error_code error;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(db, error)) {
    if (entry.is_regular_file(error)) *bytes += entry.file_size(error);
  }
  return *bytes;
}

StoreStats Store::Stats() const {
  StoreStats stats;
  std::map<std::string, std::string> db_stats;
  if (impl_->db->GetMapProperty(rocksdb::DB::Properties::kDBStats, &db_stats)) {
    if (auto it = db_stats.find("db.user_bytes_written"); it != db_stats.end()) {
      // RocksDB writes the figure as a decimal integer; anything else reads as 0.
      if (!absl::SimpleAtoi(it->second, &stats.bytes_written)) stats.bytes_written = 0;
    }
  }
  impl_->db->GetAggregatedIntProperty(rocksdb::DB::Properties::kEstimateLiveDataSize,
                                      &stats.live_data_bytes);
  return stats;
}

absl::Status Store::Flush() {
  std::vector<std::shared_ptr<IndexEntry>> entries;
  {
    std::shared_lock lock(impl_->mu);
    for (const auto& [name, entry] : impl_->indexes) entries.push_back(entry);
  }
  // Shared locks keep DropIndex from dropping a column family while it is being flushed.
  std::vector<rocksdb::ColumnFamilyHandle*> cfs = {impl_->catalog, impl_->history};
  for (const std::shared_ptr<IndexEntry>& entry : entries) {
    entry->mu.lock_shared();
    if (!entry->dropped) cfs.push_back(entry->cf);
  }
  rocksdb::FlushOptions flush_options;
  flush_options.wait = true;
  const rocksdb::Status status = impl_->db->Flush(flush_options, cfs);
  for (const std::shared_ptr<IndexEntry>& entry : entries) entry->mu.unlock_shared();
  return FromRocksDb(status, absl::StrCat("cannot flush '", impl_->dir, "'"));
}

}  // namespace luxdb::storage
