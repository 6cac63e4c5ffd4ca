// BackupTarget: the new directory a backup is written to, resolved, created, written and (on
// failure) removed through directory file descriptors.
//
// Why descriptors: whoever can write inside the backup root can swap any component of a
// requested path for a symbolic link at any moment. A path checked as a string and then used
// as a string can be redirected between the two steps, into the data directory or anywhere
// else. Here the root is opened once, every component below it is opened with O_NOFOLLOW
// relative to the one before, the target is made with mkdirat, and everything afterwards goes
// through the target's descriptor, so later renames and swaps in the path change nothing.
//
// Trust: the backup root (--backup-dir, or "/" without one) and the data directory are the
// administrator's and are opened as configured, symbolic links and all. Below the root no
// symbolic link is followed.
//
// Thread safety: distinct objects may be used concurrently; one object by one thread at a
// time.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::storage {

class BackupTarget {
 public:
  // Resolves `requested` (BackupRequest.path) and creates it as a new directory of mode 0700.
  //
  // With `backup_dir` set, a relative path resolves inside it and an absolute one must lie
  // inside it; without, the path must be absolute and is walked from "/". The path is first
  // normalised as text ("." and empty components dropped, "a/.." cancelled); a ".." that
  // would climb above the root is refused. Every directory on the way must exist and be a
  // real directory, not a symbolic link; the last component must not exist.
  //
  // `data_dir` is the server's data directory: a target that is it, lies inside it or holds it
  // is refused (compared by device and inode, whatever the spelling).
  //
  // Errors, each naming `requested` (shortened past 512 bytes): INVALID_ARGUMENT if it is
  // empty, holds a NUL byte, is PATH_MAX bytes or longer, is relative without a backup_dir,
  // is outside backup_dir or climbs out of it, has a component longer than NAME_MAX, passes
  // through a symbolic link or a non-directory (named) or overlaps the data directory; NOT_FOUND if
  // a directory on the way is missing (named); ALREADY_EXISTS if the target exists;
  // FAILED_PRECONDITION if the root or the data directory cannot be opened or /proc/self/fd is
  // unusable; ABORTED if the new directory was replaced before it could be opened; other codes from
  // the failing system call, naming the component.
  static absl::StatusOr<std::unique_ptr<BackupTarget>> Create(const std::string& requested,
                                                              const std::string& data_dir,
                                                              const std::string& backup_dir);

  // Removes the directory (see Remove) unless Keep or Remove was called.
  ~BackupTarget();
  BackupTarget(const BackupTarget&) = delete;
  BackupTarget& operator=(const BackupTarget&) = delete;

  // The target as resolved textually (root + normalised relative path), for messages and the
  // reply. It may stop naming the directory if someone renames a component meanwhile.
  const std::string& path() const { return path_; }

  // A path to `name` inside the directory through /proc/self/fd, for code that needs path
  // strings (RocksDB's checkpoint, file copies): it reaches this directory whatever happens
  // to path(), for as long as this object lives. `name` empty: the directory itself.
  std::string PathOf(absl::string_view name) const;

  // Creates the subdirectory `name` (mode 0700). Errors name path()/name.
  absl::Status MakeDirectory(absl::string_view name) const;

  // Copies the regular file `from` (a trusted path) to the new file `name` (mode 0600,
  // created with O_EXCL|O_NOFOLLOW) and fsyncs it. Returns the bytes copied; errors name
  // `from` or path()/name.
  absl::StatusOr<uint64_t> CopyFileIn(const std::string& from, absl::string_view name) const;

  // The backup is complete: fsyncs the directory (its entries) and, where it can be opened
  // for reading, its parent (the directory's own entry); the destructor leaves it in place.
  absl::Status Keep();

  // Removes what Create made and everything written into it since: the directory's contents
  // through descriptors (subdirectories opened with O_NOFOLLOW, links removed, never
  // followed), then the directory itself, only if its parent still holds it under its name
  // (same device and inode). If it was renamed or replaced meanwhile, its contents are
  // removed and the name is left alone. Returns the first error met; removal goes on past it.
  absl::Status Remove();

 private:
  BackupTarget(std::string path, int parent_fd, std::string name, int fd, dev_t dev, ino_t ino);
  // Whether `info` describes this object's directory.
  bool IsOurs(const struct stat& info) const { return info.st_dev == dev_ && info.st_ino == ino_; }

  const std::string path_;
  const int parent_fd_;     // O_PATH descriptor of the directory that holds it
  const std::string name_;  // its name there
  const int fd_;            // the directory, opened for reading
  const dev_t dev_;         // the directory's identity, checked before removing it by name
  const ino_t ino_;
  bool done_ = false;  // kept or removed
};

}  // namespace luxdb::storage
