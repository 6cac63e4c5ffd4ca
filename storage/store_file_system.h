// The file system the Store's RocksDB runs on (internal to storage/): the local one, with two
// changes that keep what a column family costs independent of how many there are.
//
// - One open directory per path. RocksDB 7.8 opens the data directory anew (an fd kept until
//   the column family is dropped) for every column family created after DB::Open, to fsync it
//   after flushes; every index would hold a descriptor. All of them share one here.
// - No OPTIONS file rewrites once `SkipOptionsRewrites` is called. RocksDB 7.8 rewrites the
//   OPTIONS file on every CreateColumnFamily and DropColumnFamily: it serialises the options of
//   every column family, fsyncs the file, then parses it back and compares (about 4 KB and a
//   few hundred microseconds per column family, with the write thread held, so O(n) per index
//   created and O(n^2) for n). It has no setting to turn that off; refusing to create the
//   temporary file makes it give up before serialising anything (with
//   DBOptions::fail_if_options_file_error false, it only logs a warning). The Store sets every
//   option in code and never loads an OPTIONS file, so the one written at the data
//   directory's first DB::Open is kept (later opens skip it too) and lists the column
//   families of that time only.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "rocksdb/file_system.h"

namespace luxdb::storage {

class StoreFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // Wraps rocksdb::FileSystem::Default().
  StoreFileSystem();

  static const char* kClassName() { return "LuxDbStoreFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // From now on, RocksDB's attempts to write an OPTIONS file fail (see above).
  void SkipOptionsRewrites() { skip_options_rewrites_ = true; }

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* debug) override;
  // Returns a handle on the one open directory at `path`; Close on it is a no-op and the
  // directory closes with the last handle.
  rocksdb::IOStatus NewDirectory(const std::string& path, const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* debug) override;

 private:
  std::atomic<bool> skip_options_rewrites_ = false;
  std::mutex directories_mu_;
  std::map<std::string, std::weak_ptr<rocksdb::FSDirectory>> directories_;  // by path
};

}  // namespace luxdb::storage
