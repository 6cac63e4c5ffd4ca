#include "storage/graph_snapshots.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace luxdb::storage {
namespace {

constexpr absl::string_view kGraphSuffix = ".hnsw";
constexpr absl::string_view kMetaSuffix = ".meta";
constexpr absl::string_view kTempSuffix = ".tmp";
constexpr absl::string_view kMetaMagic = "luxdb-graph-snapshot";
constexpr uint64_t kMetaFormat = 1;
// A well-formed sidecar is about 130 bytes; anything much larger is not one.
constexpr size_t kMaxMetaBytes = 4096;
constexpr size_t kReadChunkBytes = 1 << 20;
constexpr size_t kSha256HexLength = 64;
constexpr mode_t kFileMode = 0600;

absl::Status PosixError(absl::string_view action, const std::string& path) {
  return absl::ErrnoToStatus(errno, absl::StrCat("cannot ", action, " '", path, "'"));
}

// Owns a file descriptor.
class File {
 public:
  static absl::StatusOr<File> Open(const std::string& path, int flags, mode_t mode = 0) {
    int fd;
    do {
      fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return PosixError("open", path);
    return File(fd, path);
  }
  File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}
  File& operator=(File&&) = delete;
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Sync() const {
    if (::fsync(fd_) != 0) return PosixError("fsync", path_);
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Size() const {
    struct stat info;
    if (::fstat(fd_, &info) != 0) return PosixError("stat", path_);
    return static_cast<uint64_t>(info.st_size);
  }

  // Reads up to `size` bytes; fewer only at end of file.
  absl::StatusOr<size_t> Read(char* buffer, size_t size) const {
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::read(fd_, buffer + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError("read", path_);
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  absl::Status Write(absl::string_view bytes) const {
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError("write", path_);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // Closes now, reporting errors a destructor would swallow.
  absl::Status Close() {
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) return PosixError("close", path_);
    return absl::OkStatus();
  }

 private:
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  int fd_;
  std::string path_;
};

struct FileDigest {
  uint64_t size = 0;
  std::string sha256_hex;
};

// Reads `file` from its current offset to the end.
absl::StatusOr<FileDigest> DigestFile(const File& file, const std::string& path) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  if (context == nullptr || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError(absl::StrCat("cannot start SHA-256 of '", path, "'"));
  }
  FileDigest digest;
  std::vector<char> buffer(kReadChunkBytes);
  while (true) {
    absl::StatusOr<size_t> read = file.Read(buffer.data(), buffer.size());
    if (!read.ok()) return read.status();
    if (*read == 0) break;
    if (EVP_DigestUpdate(context.get(), buffer.data(), *read) != 1) {
      return absl::InternalError(absl::StrCat("cannot compute SHA-256 of '", path, "'"));
    }
    digest.size += *read;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> hash;
  unsigned int hash_size = 0;
  if (EVP_DigestFinal_ex(context.get(), hash.data(), &hash_size) != 1) {
    return absl::InternalError(absl::StrCat("cannot finish SHA-256 of '", path, "'"));
  }
  digest.sha256_hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(hash.data()), hash_size));
  return digest;
}

struct SnapshotMeta {
  uint64_t cf_id = 0;
  uint64_t version = 0;
  FileDigest graph;
};

std::string FormatMeta(const SnapshotMeta& meta) {
  return absl::StrCat(kMetaMagic, " ", kMetaFormat, "\ncf_id ", meta.cf_id, "\nversion ",
                      meta.version, "\nsize ", meta.graph.size, "\nsha256 ", meta.graph.sha256_hex,
                      "\n");
}

bool IsLowercaseHex(absl::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
  });
}

// Parses "<key> <value>" with exactly the given key.
bool ParseField(absl::string_view line, absl::string_view key, absl::string_view* value) {
  const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 2 || parts[0] != key) return false;
  *value = parts[1];
  return true;
}

bool ParseNumberField(absl::string_view line, absl::string_view key, uint64_t* value) {
  absl::string_view text;
  return ParseField(line, key, &text) && absl::SimpleAtoi(text, value);
}

// NOT_FOUND for a sidecar of another format, DATA_LOSS for one that is not a sidecar.
absl::StatusOr<SnapshotMeta> ParseMeta(absl::string_view text, const std::string& path) {
  const std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  uint64_t format = 0;
  if (lines.empty() || !ParseNumberField(lines[0], kMetaMagic, &format)) {
    return absl::DataLossError(
        absl::StrCat("graph snapshot sidecar '", path, "' does not start with ", kMetaMagic));
  }
  if (format != kMetaFormat) {
    return absl::NotFoundError(absl::StrCat("graph snapshot sidecar '", path, "' has format ",
                                            format, "; this build reads format ", kMetaFormat));
  }
  SnapshotMeta meta;
  absl::string_view sha256_hex;
  const bool parsed = lines.size() == 6 && lines[5].empty() &&
                      ParseNumberField(lines[1], "cf_id", &meta.cf_id) &&
                      ParseNumberField(lines[2], "version", &meta.version) &&
                      ParseNumberField(lines[3], "size", &meta.graph.size) &&
                      ParseField(lines[4], "sha256", &sha256_hex) &&
                      sha256_hex.size() == kSha256HexLength && IsLowercaseHex(sha256_hex);
  if (!parsed) {
    return absl::DataLossError(absl::StrCat("graph snapshot sidecar '", path, "' is malformed"));
  }
  meta.graph.sha256_hex = std::string(sha256_hex);
  return meta;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  absl::StatusOr<File> file = File::Open(path, O_RDONLY);
  if (!file.ok()) return file.status();
  std::string content(max_bytes + 1, '\0');
  absl::StatusOr<size_t> read = file->Read(content.data(), content.size());
  if (!read.ok()) return read.status();
  if (*read > max_bytes) {
    return absl::DataLossError(
        absl::StrCat("'", path, "' is larger than the expected ", max_bytes, " bytes"));
  }
  content.resize(*read);
  return content;
}

absl::Status SyncDirectory(const std::string& path) {
  absl::StatusOr<File> dir = File::Open(path, O_RDONLY | O_DIRECTORY);
  if (!dir.ok()) return dir.status();
  return dir->Sync();
}

absl::Status RenameFile(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot rename '", from, "' to '", to, "'"));
  }
  return absl::OkStatus();
}

absl::Status RemoveIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return PosixError("remove", path);
  return absl::OkStatus();
}

// Splits a snapshot file name "<cf_id><suffix>" with a known suffix. `temporary` is set for
// files of a publish in progress.
bool ParseSnapshotFileName(absl::string_view name, uint64_t* cf_id, bool* temporary) {
  *temporary = absl::ConsumeSuffix(&name, kTempSuffix);
  if (!absl::ConsumeSuffix(&name, kGraphSuffix) && !absl::ConsumeSuffix(&name, kMetaSuffix)) {
    return false;
  }
  return absl::SimpleAtoi(name, cf_id);
}

}  // namespace

std::string GraphSnapshots::GraphPath(uint64_t cf_id) const {
  return absl::StrCat(dir_, "/", cf_id, kGraphSuffix);
}

std::string GraphSnapshots::MetaPath(uint64_t cf_id) const {
  return absl::StrCat(dir_, "/", cf_id, kMetaSuffix);
}

std::string GraphSnapshots::TempPath(uint64_t cf_id) const {
  return absl::StrCat(GraphPath(cf_id), kTempSuffix);
}

std::string GraphSnapshots::TempMetaPath(uint64_t cf_id) const {
  return absl::StrCat(MetaPath(cf_id), kTempSuffix);
}

absl::Status GraphSnapshots::Publish(uint64_t cf_id, uint64_t version) const {
  const std::string temp_graph = TempPath(cf_id);
  SnapshotMeta meta{.cf_id = cf_id, .version = version, .graph = {}};
  {
    absl::StatusOr<File> graph = File::Open(temp_graph, O_RDONLY);
    if (!graph.ok()) return graph.status();
    if (absl::Status s = graph->Sync(); !s.ok()) return s;
    absl::StatusOr<FileDigest> digest = DigestFile(*graph, temp_graph);
    if (!digest.ok()) return digest.status();
    meta.graph = *std::move(digest);
  }

  const std::string temp_meta = TempMetaPath(cf_id);
  absl::StatusOr<File> meta_file = File::Open(temp_meta, O_WRONLY | O_CREAT | O_TRUNC, kFileMode);
  if (!meta_file.ok()) return meta_file.status();
  if (absl::Status s = meta_file->Write(FormatMeta(meta)); !s.ok()) return s;
  if (absl::Status s = meta_file->Sync(); !s.ok()) return s;
  if (absl::Status s = meta_file->Close(); !s.ok()) return s;

  // A crash before both renames are durable can leave a graph beside the sidecar of another
  // publish; Find reports that as NOT_FOUND (version) or DATA_LOSS (size, checksum).
  if (absl::Status s = RenameFile(temp_graph, GraphPath(cf_id)); !s.ok()) return s;
  if (absl::Status s = RenameFile(temp_meta, MetaPath(cf_id)); !s.ok()) return s;
  return SyncDirectory(dir_);
}

absl::StatusOr<SnapshotFile> GraphSnapshots::Find(uint64_t cf_id) const {
  const std::string meta_path = MetaPath(cf_id);
  absl::StatusOr<std::string> meta_text = ReadSmallFile(meta_path, kMaxMetaBytes);
  if (absl::IsNotFound(meta_text.status())) {
    return absl::NotFoundError(
        absl::StrCat("no graph snapshot for cf_id ", cf_id, " ('", meta_path, "' does not exist)"));
  }
  if (!meta_text.ok()) return meta_text.status();
  absl::StatusOr<SnapshotMeta> meta = ParseMeta(*meta_text, meta_path);
  if (!meta.ok()) return meta.status();
  if (meta->cf_id != cf_id) {
    return absl::DataLossError(
        absl::StrCat("graph snapshot sidecar '", meta_path, "' belongs to cf_id ", meta->cf_id));
  }
  const std::string graph_path = GraphPath(cf_id);
  absl::StatusOr<File> graph = File::Open(graph_path, O_RDONLY);
  if (!graph.ok()) {
    return absl::DataLossError(absl::StrCat("graph snapshot sidecar '", meta_path,
                                            "' has no graph: ", graph.status().message()));
  }
  absl::StatusOr<uint64_t> size = graph->Size();
  if (!size.ok()) return size.status();
  if (*size != meta->graph.size) {
    return absl::DataLossError(absl::StrCat("graph snapshot '", graph_path, "' has ", *size,
                                            " bytes; its sidecar records ", meta->graph.size));
  }
  struct stat meta_stat {};
  std::chrono::system_clock::time_point written;
  if (stat(meta_path.c_str(), &meta_stat) == 0) {
    written = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::seconds(meta_stat.st_mtim.tv_sec) +
            std::chrono::nanoseconds(meta_stat.st_mtim.tv_nsec)));
  }
  return SnapshotFile{.path = graph_path,
                      .version = meta->version,
                      .size = meta->graph.size,
                      .sha256_hex = meta->graph.sha256_hex,
                      .written = written};
}

absl::Status GraphSnapshots::Verify(const SnapshotFile& snapshot) const {
  absl::StatusOr<File> graph = File::Open(snapshot.path, O_RDONLY);
  if (!graph.ok()) return absl::DataLossError(graph.status().message());
  absl::StatusOr<FileDigest> digest = DigestFile(*graph, snapshot.path);
  if (!digest.ok()) return digest.status();
  if (digest->size != snapshot.size || digest->sha256_hex != snapshot.sha256_hex) {
    return absl::DataLossError(absl::StrCat("graph snapshot '", snapshot.path,
                                            "' does not match the SHA-256 in its sidecar"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> GraphSnapshots::CopyTo(const std::string& target) const {
  namespace fs = std::filesystem;
  std::error_code error;
  uint64_t bytes = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, error)) {
    const std::string name = entry.path().filename().string();
    uint64_t cf_id = 0;
    bool temporary = false;
    if (!ParseSnapshotFileName(name, &cf_id, &temporary) || temporary) continue;
    const std::string to = absl::StrCat(target, "/", name);
    if (::link(entry.path().c_str(), to.c_str()) != 0) {
      if (errno != EXDEV && errno != EPERM) return PosixError("link", to);
      if (!fs::copy_file(entry.path(), to, error)) {
        return absl::UnavailableError(absl::StrCat("cannot copy '", entry.path().string(), "' to '",
                                                   to, "': ", error.message()));
      }
      absl::StatusOr<File> copy = File::Open(to, O_RDONLY);
      if (!copy.ok()) return copy.status();
      if (absl::Status s = copy->Sync(); !s.ok()) return s;
    }
    bytes += entry.file_size(error);
  }
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot list graph snapshots in '", dir_, "': ", error.message()));
  }
  if (absl::Status s = SyncDirectory(target); !s.ok()) return s;
  return bytes;
}

absl::Status GraphSnapshots::Remove(uint64_t cf_id) const {
  for (const std::string& path :
       {GraphPath(cf_id), MetaPath(cf_id), TempPath(cf_id), TempMetaPath(cf_id)}) {
    if (absl::Status s = RemoveIfExists(path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> GraphSnapshots::RemoveAllExcept(const std::set<uint64_t>& live) const {
  auto list_error = [&](const std::error_code& error) {
    return absl::UnavailableError(absl::StrCat("cannot list '", dir_, "': ", error.message()));
  };
  std::error_code error;
  std::filesystem::directory_iterator it(dir_, error);
  if (error) return list_error(error);
  uint64_t max_cf_id = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    uint64_t cf_id = 0;
    bool temporary = false;
    if (!ParseSnapshotFileName(it->path().filename().string(), &cf_id, &temporary)) continue;
    max_cf_id = std::max(max_cf_id, cf_id);
    if (temporary || !live.contains(cf_id)) {
      if (absl::Status s = RemoveIfExists(it->path().string()); !s.ok()) return s;
    }
  }
  if (error) return list_error(error);
  return max_cf_id;
}

}  // namespace luxdb::storage
