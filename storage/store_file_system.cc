#include "storage/store_file_system.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace luxdb::storage {
namespace {

// RocksDB writes an OPTIONS file as "OPTIONS-<number>.dbtmp", then renames it.
bool IsTemporaryOptionsFile(absl::string_view path) {
  const size_t slash = path.rfind('/');
  const absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  return absl::StartsWith(name, "OPTIONS-") && absl::EndsWith(name, ".dbtmp");
}

// A handle on a shared open directory.
class SharedDirectory : public rocksdb::FSDirectory {
 public:
  explicit SharedDirectory(std::shared_ptr<rocksdb::FSDirectory> directory)
      : directory_(std::move(directory)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* debug) override {
    return directory_->Fsync(options, debug);
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& options,
                                        rocksdb::IODebugContext* debug,
                                        const rocksdb::DirFsyncOptions& fsync_options) override {
    return directory_->FsyncWithDirOptions(options, debug, fsync_options);
  }
  // Other handles may still fsync it: the directory closes when the last handle goes.
  rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();
  }
  size_t GetUniqueId(char* id, size_t max_size) const override {
    return directory_->GetUniqueId(id, max_size);
  }

 private:
  const std::shared_ptr<rocksdb::FSDirectory> directory_;
};

}  // namespace

StoreFileSystem::StoreFileSystem() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}

rocksdb::IOStatus StoreFileSystem::NewWritableFile(const std::string& path,
                                                   const rocksdb::FileOptions& options,
                                                   std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                   rocksdb::IODebugContext* debug) {
  if (skip_options_rewrites_ && IsTemporaryOptionsFile(path)) {
    return rocksdb::IOStatus::NotSupported(
        "LuxDB writes the OPTIONS file at open only (storage/store_file_system.h)", path);
  }
  return target()->NewWritableFile(path, options, result, debug);
}

rocksdb::IOStatus StoreFileSystem::NewDirectory(const std::string& path,
                                                const rocksdb::IOOptions& options,
                                                std::unique_ptr<rocksdb::FSDirectory>* result,
                                                rocksdb::IODebugContext* debug) {
  std::lock_guard lock(directories_mu_);
  std::shared_ptr<rocksdb::FSDirectory> directory = directories_[path].lock();
  if (directory == nullptr) {
    std::unique_ptr<rocksdb::FSDirectory> opened;
    rocksdb::IOStatus s = target()->NewDirectory(path, options, &opened, debug);
    if (!s.ok()) return s;
    directory = std::move(opened);
    directories_[path] = directory;
  }
  *result = std::make_unique<SharedDirectory>(std::move(directory));
  return rocksdb::IOStatus::OK();
}

}  // namespace luxdb::storage
