#include "storage/backup_target.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace luxdb::storage {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kDirectoryMode = 0700;
constexpr mode_t kFileMode = 0600;
// Walking up from a directory to "/" takes one step per level; more than this is a loop.
constexpr int kMaxAncestors = 4096;
// Removal descends into subdirectories of the backup (RocksDB's and the graphs' are one level
// deep); deeper than this was not written by a backup.
constexpr int kMaxRemoveDepth = 16;
constexpr size_t kCopyChunkBytes = size_t{1} << 16;
constexpr size_t kMaxShownBytes = 512;

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Close(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }

 private:
  void Close() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd_;
};

int OpenAt(int dir_fd, const char* name, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::openat(dir_fd, name, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};

FileId IdOf(const struct stat& info) { return {info.st_dev, info.st_ino}; }

// The directory `fd` refers to and every directory above it, up to "/" (by "..": mount points
// and renames are followed as the kernel sees them now).
absl::StatusOr<std::vector<FileId>> Ancestry(int fd, absl::string_view shown) {
  std::vector<FileId> line;
  Fd current(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  for (int level = 0; level < kMaxAncestors; ++level) {
    struct stat info;
    if (!current.ok() || ::fstat(current.get(), &info) != 0) {
      return absl::ErrnoToStatus(errno,
                                 absl::StrCat("cannot find the directories above '", shown, "'"));
    }
    if (!line.empty() && line.back() == IdOf(info)) return line;  // "/" is its own parent
    line.push_back(IdOf(info));
    current = Fd(OpenAt(current.get(), "..", O_PATH | O_DIRECTORY));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("'", shown, "' is more than ", kMaxAncestors, " directories deep"));
}

bool Contains(const std::vector<FileId>& ids, const FileId& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// Removes every entry of the directory `dir_fd` (shown as `shown` in errors), never following
// a symbolic link. Returns the first error met; goes on past it.
absl::Status RemoveContents(int dir_fd, const std::string& shown, int depth) {
  if (depth > kMaxRemoveDepth) {
    return absl::FailedPreconditionError(
        absl::StrCat("not removing '", shown, "': more than ", kMaxRemoveDepth, " levels deep"));
  }
  // A fresh open file description, so that listing does not move another reader's position.
  Fd listing(OpenAt(dir_fd, ".", O_RDONLY | O_DIRECTORY));
  if (!listing.ok()) return absl::ErrnoToStatus(errno, absl::StrCat("cannot list '", shown, "'"));
  DIR* dir = ::fdopendir(listing.get());
  if (dir == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot list '", shown, "'"));
  listing.release();
  // Names first, removal after: readdir's view of a directory changing under it is unspecified.
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int list_errno = errno;
  ::closedir(dir);
  absl::Status first;
  if (list_errno != 0) {
    first = absl::ErrnoToStatus(list_errno, absl::StrCat("cannot list '", shown, "'"));
  }
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(shown, "/", name);
    struct stat info;
    if (::fstatat(dir_fd, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT)
        first.Update(absl::ErrnoToStatus(errno, absl::StrCat("cannot stat '", path, "'")));
      continue;
    }
    int flags = 0;
    if (S_ISDIR(info.st_mode)) {
      Fd sub(OpenAt(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      if (!sub.ok()) {
        first.Update(absl::ErrnoToStatus(errno, absl::StrCat("cannot open '", path, "'")));
        continue;
      }
      first.Update(RemoveContents(sub.get(), path, depth + 1));
      flags = AT_REMOVEDIR;
    }
    if (::unlinkat(dir_fd, name.c_str(), flags) != 0 && errno != ENOENT) {
      first.Update(absl::ErrnoToStatus(errno, absl::StrCat("cannot remove '", path, "'")));
    }
  }
  return first;
}

// A path from a request as it appears in a message: any NUL byte escaped, and a long one
// shortened (gRPC clients refuse an error message beyond 8 KiB of metadata).
std::string Shown(const std::string& path) {
  std::string shown = path.find('\0') == std::string::npos ? path : absl::CHexEscape(path);
  if (shown.size() > kMaxShownBytes) {
    shown = absl::StrCat(shown.substr(0, kMaxShownBytes), "... (", path.size(), " bytes)");
  }
  return shown;
}

bool Outside(const fs::path& relative) { return relative.empty() || *relative.begin() == ".."; }

}  // namespace

BackupTarget::BackupTarget(std::string path, int parent_fd, std::string name, int fd, dev_t dev,
                           ino_t ino)
    : path_(std::move(path)),
      parent_fd_(parent_fd),
      name_(std::move(name)),
      fd_(fd),
      dev_(dev),
      ino_(ino) {}

BackupTarget::~BackupTarget() {
  if (!done_) Remove().IgnoreError();
  ::close(fd_);
  ::close(parent_fd_);
}

absl::StatusOr<std::unique_ptr<BackupTarget>> BackupTarget::Create(const std::string& requested,
                                                                   const std::string& data_dir,
                                                                   const std::string& backup_dir) {
  if (requested.empty()) return absl::InvalidArgumentError("backup path must not be empty");
  const std::string shown = Shown(requested);
  if (requested.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("backup path '", shown, "' contains a NUL byte"));
  }
  if (requested.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("backup path '", shown, "' is longer than ", PATH_MAX - 1, " bytes"));
  }

  // The root to walk from, and the path below it, normalised as text.
  const fs::path path(requested);
  std::string root(1, '/');  // without --backup-dir
  fs::path relative;
  if (backup_dir.empty()) {
    if (path.is_relative()) {
      return absl::InvalidArgumentError(
          absl::StrCat("backup path '", shown,
                       "' is relative; give an absolute path, or start the server with "
                       "--backup-dir to resolve relative ones"));
    }
    relative = path.lexically_normal().relative_path();
  } else {
    std::error_code error;
    const fs::path configured = fs::absolute(backup_dir, error).lexically_normal();
    const fs::path base = fs::weakly_canonical(configured, error);
    if (error) {
      return absl::FailedPreconditionError(absl::StrCat("the server's --backup-dir '", backup_dir,
                                                        "' cannot be resolved: ", error.message()));
    }
    root = base.string();
    if (path.is_relative()) {
      relative = path.lexically_normal();
    } else {
      // Either spelling of the backup directory: as configured, or with its links resolved.
      relative = path.lexically_normal().lexically_relative(base);
      if (Outside(relative)) relative = path.lexically_normal().lexically_relative(configured);
      if (Outside(relative)) {
        return absl::InvalidArgumentError(
            absl::StrCat("backup path '", shown,
                         "' is not a new directory inside the server's --backup-dir '", root, "'"));
      }
    }
  }
  std::vector<std::string> components;
  for (const fs::path& component : relative) {
    if (!component.empty() && component != ".") components.push_back(component.string());
  }
  if (!backup_dir.empty()) {
    if (components.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("backup path '", shown,
                       "' is not a new directory inside the server's --backup-dir '", root, "'"));
    }
    if (components.front() == "..") {
      return absl::InvalidArgumentError(absl::StrCat("backup path '", shown,
                                                     "' climbs out of the server's --backup-dir '",
                                                     root, "' through '..'"));
    }
  }
  for (const std::string& component : components) {
    if (component.size() > NAME_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("backup path '", shown, "' has a component ",
                                                     component.size(), " bytes long (at most ",
                                                     NAME_MAX, ")"));
    }
  }
  // Textual only: for messages and the reply.
  const std::string resolved = components.empty() ? root
                                                  : absl::StrCat(root == "/" ? "" : root, "/",
                                                                 absl::StrJoin(components, "/"));

  // The data directory and every directory above it, by device and inode.
  const Fd data(OpenAt(AT_FDCWD, data_dir.c_str(), O_PATH | O_DIRECTORY));
  if (!data.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the data directory '", data_dir, "': ", std::strerror(errno)));
  }
  absl::StatusOr<std::vector<FileId>> data_line = Ancestry(data.get(), data_dir);
  if (!data_line.ok()) return data_line.status();
  const FileId data_id = data_line->front();
  auto overlaps = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("backup path '", shown, "' overlaps the data directory '", data_dir, "'"));
  };

  Fd parent(OpenAt(AT_FDCWD, root.c_str(), O_PATH | O_DIRECTORY));
  if (!parent.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the backup root '", root, "': ", std::strerror(errno)));
  }
  {
    // A root inside the data directory puts every target there.
    absl::StatusOr<std::vector<FileId>> root_line = Ancestry(parent.get(), root);
    if (!root_line.ok()) return root_line.status();
    if (Contains(*root_line, data_id)) return overlaps();
    if (components.empty()) {
      if (Contains(*data_line, root_line->front())) return overlaps();
      return absl::AlreadyExistsError(absl::StrCat("backup path '", shown, "' already exists"));
    }
  }

  // Down to the last component's parent, one real directory at a time.
  std::string walked = root == "/" ? "" : root;
  for (size_t i = 0; i + 1 < components.size(); ++i) {
    const std::string& name = components[i];
    walked = absl::StrCat(walked, "/", name);
    // Whatever the entry is, the link itself included (O_PATH | O_NOFOLLOW): what was opened
    // is then what is checked and used, however the entry changes afterwards.
    Fd next(OpenAt(parent.get(), name.c_str(), O_PATH | O_NOFOLLOW));
    if (!next.ok()) {
      if (errno == ENOENT) {
        return absl::NotFoundError(absl::StrCat("backup path '", shown, "': directory '",
                                                Shown(walked),
                                                "' does not exist (create the parent first)"));
      }
      return absl::ErrnoToStatus(
          errno, absl::StrCat("backup path '", shown, "': cannot open '", Shown(walked), "'"));
    }
    struct stat info;
    if (::fstat(next.get(), &info) != 0) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat("backup path '", shown, "': cannot stat '", Shown(walked), "'"));
    }
    if (S_ISLNK(info.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("backup path '", shown, "' passes through '", Shown(walked),
                       "', a symbolic link; backups follow no symbolic links below '", root, "'"));
    }
    if (!S_ISDIR(info.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("backup path '", shown, "': '", Shown(walked), "' is not a directory"));
    }
    if (IdOf(info) == data_id) return overlaps();
    parent = std::move(next);
  }

  // The target: made here, then opened without following anything.
  const std::string& name = components.back();
  if (::mkdirat(parent.get(), name.c_str(), kDirectoryMode) != 0) {
    const int mkdir_errno = errno;
    if (mkdir_errno == EEXIST) {
      struct stat info;
      if (::fstatat(parent.get(), name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(info.st_mode) && Contains(*data_line, IdOf(info))) {
        return overlaps();
      }
      return absl::AlreadyExistsError(absl::StrCat(
          "backup path '", shown, "' already exists; a backup goes to a new directory"));
    }
    if (mkdir_errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("backup path '", shown, "': its parent directory was removed"));
    }
    return absl::ErrnoToStatus(
        mkdir_errno,
        absl::StrCat("backup path '", shown, "': cannot create '", Shown(resolved), "'"));
  }
  Fd dir(OpenAt(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  struct stat info;
  if (!dir.ok() || ::fstat(dir.get(), &info) != 0 || info.st_uid != ::geteuid()) {
    // Someone renamed the new directory and put a link or a directory of their own in its
    // place: what is there now is not ours to write into or remove. (Its mode is not checked:
    // a default ACL on the parent may widen it.)
    return absl::AbortedError(
        absl::StrCat("backup path '", shown, "' was replaced while it was being created"));
  }
  std::unique_ptr<BackupTarget> target(
      new BackupTarget(resolved, parent.release(), name, dir.release(), info.st_dev, info.st_ino));

  // Everything after this goes through /proc/self/fd/<fd>: check that it leads here.
  struct stat through_proc;
  if (::stat(target->PathOf("").c_str(), &through_proc) != 0 || !target->IsOurs(through_proc)) {
    return absl::FailedPreconditionError(
        absl::StrCat("backups need /proc mounted: '", target->PathOf(""),
                     "' does not lead to the new directory '", Shown(resolved), "'"));
  }
  return target;
}

std::string BackupTarget::PathOf(absl::string_view name) const {
  return absl::StrCat("/proc/self/fd/", fd_, name.empty() ? "" : "/", name);
}

absl::Status BackupTarget::MakeDirectory(absl::string_view name) const {
  const std::string name_string(name);
  if (::mkdirat(fd_, name_string.c_str(), kDirectoryMode) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", path_, "/", name, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> BackupTarget::CopyFileIn(const std::string& from,
                                                  absl::string_view name) const {
  const std::string to = absl::StrCat(path_, "/", name);
  const Fd in(OpenAt(AT_FDCWD, from.c_str(), O_RDONLY));
  if (!in.ok()) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open '", from, "'"));
  const std::string name_string(name);
  const Fd out(
      OpenAt(fd_, name_string.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, kFileMode));
  if (!out.ok()) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", to, "'"));
  std::vector<char> buffer(kCopyChunkBytes);
  uint64_t bytes = 0;
  for (;;) {
    const ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot read '", from, "'"));
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out.get(), buffer.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write '", to, "'"));
      done += w;
    }
    bytes += static_cast<uint64_t>(n);
  }
  if (::fsync(out.get()) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot fsync '", to, "'"));
  return bytes;
}

absl::Status BackupTarget::Keep() {
  if (::fsync(fd_) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot fsync '", path_, "'"));
  // The parent is held by an O_PATH descriptor, which fsync refuses; a parent that cannot be
  // read (search permission only) is left to the file system's own schedule.
  const Fd parent(OpenAt(parent_fd_, ".", O_RDONLY | O_DIRECTORY));
  if (parent.ok() && ::fsync(parent.get()) != 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot fsync the directory holding '", path_, "'"));
  }
  done_ = true;
  return absl::OkStatus();
}

absl::Status BackupTarget::Remove() {
  if (done_) return absl::OkStatus();
  done_ = true;
  absl::Status first = RemoveContents(fd_, path_, 0);
  // Only the directory this object made, and only if it is still there under its name:
  // AT_REMOVEDIR removes nothing but an empty directory, so a swap between the check and the
  // removal can at worst remove an empty one.
  struct stat info;
  if (::fstatat(parent_fd_, name_.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 && IsOurs(info) &&
      ::unlinkat(parent_fd_, name_.c_str(), AT_REMOVEDIR) != 0) {
    first.Update(absl::ErrnoToStatus(errno, absl::StrCat("cannot remove '", path_, "'")));
  }
  return first;
}

}  // namespace luxdb::storage
