// storage::BackupTarget: where a backup may go, and making, writing and removing it through
// directory descriptors.

#include "storage/backup_target.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/store.h"

namespace luxdb::storage {
namespace {

namespace fs = std::filesystem;

std::set<std::string> Entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

std::string Read(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

::testing::AssertionResult Refused(const absl::StatusOr<std::unique_ptr<BackupTarget>>& made,
                                   absl::StatusCode code,
                                   std::initializer_list<std::string> fragments) {
  if (made.ok()) return ::testing::AssertionFailure() << "accepted as " << (*made)->path();
  if (made.status().code() != code) return ::testing::AssertionFailure() << made.status();
  for (const std::string& fragment : fragments) {
    if (made.status().message().find(fragment) == absl::string_view::npos) {
      return ::testing::AssertionFailure()
             << made.status() << " does not name '" << fragment << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

class BackupTargetTest : public ::testing::Test {
 protected:
  static fs::path MakeTempDir() {
    std::string pattern = (fs::path(::testing::TempDir()) / "backup_target_test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    return fs::weakly_canonical(pattern);
  }

  void SetUp() override {
    fs::create_directories(data_ / "db");
    fs::create_directories(backups_);
    fs::create_directories(outside_ / "dir");
    std::ofstream(outside_ / "dir" / "file") << "outside";
  }
  void TearDown() override { fs::remove_all(root_); }

  absl::StatusOr<std::unique_ptr<BackupTarget>> Create(const std::string& requested) {
    return BackupTarget::Create(requested, data_.string(), backups_.string());
  }
  // Without --backup-dir: absolute paths, walked from "/".
  absl::StatusOr<std::unique_ptr<BackupTarget>> CreateAnywhere(const std::string& requested) {
    return BackupTarget::Create(requested, data_.string(), "");
  }

  void ExpectOutsideUntouched() {
    EXPECT_EQ(Entries(outside_), std::set<std::string>{"dir"});
    EXPECT_EQ(Entries(outside_ / "dir"), std::set<std::string>{"file"});
    EXPECT_EQ(Read(outside_ / "dir" / "file"), "outside");
  }

  const fs::path root_ = MakeTempDir();
  const fs::path data_ = root_ / "data";
  const fs::path backups_ = root_ / "backups";
  const fs::path outside_ = root_ / "outside";
};

TEST_F(BackupTargetTest, CreatesAPrivateDirectoryAndWritesThroughItsDescriptor) {
  absl::StatusOr<std::unique_ptr<BackupTarget>> made = Create("nightly");
  ASSERT_TRUE(made.ok()) << made.status();
  BackupTarget& target = **made;
  EXPECT_EQ(target.path(), (backups_ / "nightly").string());
  struct stat info;
  ASSERT_EQ(lstat(target.path().c_str(), &info), 0);
  EXPECT_TRUE(S_ISDIR(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0700u);

  // Renamed away and replaced by a link out: the descriptor still leads to the directory
  // it made.
  fs::rename(backups_ / "nightly", backups_ / "moved");
  fs::create_directory_symlink(outside_ / "dir", backups_ / "nightly");
  std::ofstream(target.PathOf("written")) << "through the descriptor";
  ASSERT_TRUE(target.MakeDirectory("sub").ok());
  std::ofstream(root_ / "secret") << "s3cret";
  absl::StatusOr<uint64_t> copied = target.CopyFileIn((root_ / "secret").string(), "secret");
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(*copied, 6u);
  EXPECT_EQ(Entries(backups_ / "moved"), (std::set<std::string>{"written", "sub", "secret"}));
  EXPECT_EQ(Read(backups_ / "moved" / "secret"), "s3cret");
  ASSERT_EQ(lstat((backups_ / "moved" / "secret").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  // A name taken (here by a link out) is not written through.
  fs::create_symlink(outside_ / "dir" / "file", backups_ / "moved" / "taken");
  EXPECT_EQ(target.CopyFileIn((root_ / "secret").string(), "taken").status().code(),
            absl::StatusCode::kAlreadyExists);
  ExpectOutsideUntouched();

  ASSERT_TRUE(target.Keep().ok());
  made->reset();
  EXPECT_TRUE(fs::exists(backups_ / "moved" / "written"));
}

TEST_F(BackupTargetTest, ResolvesInsideTheBackupDirAsText) {
  absl::StatusOr<std::unique_ptr<BackupTarget>> made = Create("a/../b");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->path(), (backups_ / "b").string());
  made = Create((backups_ / "c/").string());
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->path(), (backups_ / "c").string());
  fs::create_directories(backups_ / "x" / "y");
  made = Create("x//./y/z");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->path(), (backups_ / "x" / "y" / "z").string());
  // Not kept: each was removed again when dropped.
  made->reset();
  EXPECT_EQ(Entries(backups_), std::set<std::string>{"x"});
  EXPECT_TRUE(fs::is_empty(backups_ / "x" / "y"));
}

TEST_F(BackupTargetTest, RefusesPathsOutsideTheBackupDirAndDotDot) {
  const absl::StatusCode invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_TRUE(Refused(Create(""), invalid, {"empty"}));
  EXPECT_TRUE(Refused(Create(std::string("a\0b", 3)), invalid, {"NUL"}));
  EXPECT_TRUE(Refused(Create("../escape"), invalid, {"'../escape'", "'..'", "--backup-dir"}));
  EXPECT_TRUE(Refused(Create("a/../../escape"), invalid, {"'a/../../escape'", "'..'"}));
  for (const std::string& path :
       {std::string("."), backups_.string(), (root_ / "elsewhere").string(),
        (backups_ / ".." / "escape").string()}) {
    EXPECT_TRUE(Refused(Create(path), invalid, {"'" + path + "'", "--backup-dir"})) << path;
  }
  EXPECT_TRUE(Refused(Create(std::string(300, 'x')), invalid, {"300 bytes"}));
  EXPECT_TRUE(Refused(CreateAnywhere("relative"), invalid, {"'relative'", "--backup-dir"}));
  EXPECT_TRUE(fs::is_empty(backups_));
  ExpectOutsideUntouched();
}

TEST_F(BackupTargetTest, RefusesSymbolicLinksOnTheWayNamingThem) {
  fs::create_directory_symlink(outside_ / "dir", backups_ / "link");
  fs::create_directory_symlink(data_, backups_ / "to-data");
  const absl::StatusCode invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_TRUE(Refused(Create("link/copy"), invalid,
                      {"'link/copy'", "'" + (backups_ / "link").string() + "', a symbolic link"}));
  EXPECT_TRUE(Refused(Create("to-data/copy"), invalid, {"to-data", "symbolic link"}));
  // The last component is never followed either: a link there is a name already taken.
  EXPECT_TRUE(Refused(Create("link"), absl::StatusCode::kAlreadyExists, {"'link'"}));
  // Without --backup-dir, from "/" on.
  EXPECT_TRUE(
      Refused(CreateAnywhere((backups_ / "link" / "copy").string()), invalid, {"symbolic link"}));
  fs::create_directory_symlink(backups_, root_ / "backups-link");
  EXPECT_TRUE(Refused(CreateAnywhere((root_ / "backups-link" / "copy").string()), invalid,
                      {"backups-link", "symbolic link"}));
  EXPECT_EQ(Entries(backups_), (std::set<std::string>{"link", "to-data"}));
  EXPECT_EQ(Entries(data_), std::set<std::string>{"db"});
  ExpectOutsideUntouched();
}

TEST_F(BackupTargetTest, RefusesExistingTargetsAndMissingOrFileParents) {
  fs::create_directory(backups_ / "taken");
  std::ofstream(backups_ / "file") << "x";
  EXPECT_TRUE(
      Refused(Create("taken"), absl::StatusCode::kAlreadyExists, {"'taken'", "already exists"}));
  EXPECT_TRUE(Refused(Create("file"), absl::StatusCode::kAlreadyExists, {"'file'"}));
  EXPECT_TRUE(Refused(Create("no/such/parent"), absl::StatusCode::kNotFound,
                      {"'no/such/parent'", "'" + (backups_ / "no").string() + "'"}));
  EXPECT_TRUE(Refused(Create("file/copy"), absl::StatusCode::kInvalidArgument,
                      {"'file/copy'", "not a directory"}));
  EXPECT_EQ(Entries(backups_), (std::set<std::string>{"taken", "file"}));
  EXPECT_TRUE(fs::is_empty(backups_ / "taken"));
}

TEST_F(BackupTargetTest, RefusesTargetsOverlappingTheDataDirectory) {
  const absl::StatusCode invalid = absl::StatusCode::kInvalidArgument;
  const std::string overlap = "overlaps the data directory";
  for (const std::string& path :
       {data_.string(), (data_ / "inside").string(), (data_ / "db" / "inside").string(),
        root_.string(), (root_ / "x" / ".." / "data" / "inside").string(), std::string("/")}) {
    EXPECT_TRUE(Refused(CreateAnywhere(path), invalid, {"'" + path + "'", overlap})) << path;
  }
  // With --backup-dir holding the data directory.
  const auto inside_root = [&](const std::string& requested) {
    return BackupTarget::Create(requested, data_.string(), root_.string());
  };
  EXPECT_TRUE(Refused(inside_root("data"), invalid, {overlap}));
  EXPECT_TRUE(Refused(inside_root("data/db/x"), invalid, {overlap}));
  // With --backup-dir inside the data directory, every target is.
  EXPECT_TRUE(Refused(BackupTarget::Create("x", data_.string(), (data_ / "db").string()), invalid,
                      {overlap}));
  // The data directory by another name (a bind mount would look the same: same inode).
  fs::create_directory_symlink(data_, root_ / "data-link");
  EXPECT_TRUE(Refused(BackupTarget::Create("x", (root_ / "data-link").string(), data_.string()),
                      invalid, {overlap}));
  EXPECT_EQ(Entries(data_), std::set<std::string>{"db"});
  EXPECT_TRUE(fs::is_empty(data_ / "db"));
}

TEST_F(BackupTargetTest, RemoveDeletesWhatItWroteNeverFollowingLinks) {
  absl::StatusOr<std::unique_ptr<BackupTarget>> made = Create("partial");
  ASSERT_TRUE(made.ok()) << made.status();
  BackupTarget& target = **made;
  ASSERT_TRUE(target.MakeDirectory("db").ok());
  std::ofstream(target.PathOf("db/000001.sst")) << "table";
  ASSERT_TRUE(target.MakeDirectory("db/deeper").ok());
  std::ofstream(target.PathOf("db/deeper/file")) << "x";
  fs::create_directory_symlink(outside_ / "dir", target.PathOf("link-to-dir"));
  fs::create_symlink(outside_ / "dir" / "file", target.PathOf("link-to-file"));
  fs::create_hard_link(outside_ / "dir" / "file", target.PathOf("hard-link"));
  fs::create_directory(backups_ / "neighbour");
  ASSERT_TRUE(target.Remove().ok());
  EXPECT_EQ(Entries(backups_), std::set<std::string>{"neighbour"});
  ExpectOutsideUntouched();
  EXPECT_TRUE(target.Remove().ok());  // once only
}

TEST_F(BackupTargetTest, RemoveAfterASwapEmptiesItsOwnDirectoryAndLeavesTheNameAlone) {
  absl::StatusOr<std::unique_ptr<BackupTarget>> made = Create("swapped");
  ASSERT_TRUE(made.ok()) << made.status();
  std::ofstream((*made)->PathOf("ours")) << "ours";
  // Someone renames it and puts their own directory in its place.
  fs::rename(backups_ / "swapped", backups_ / "moved");
  fs::create_directory(backups_ / "swapped");
  std::ofstream(backups_ / "swapped" / "theirs") << "theirs";
  EXPECT_TRUE((*made)->Remove().ok());
  EXPECT_EQ(Entries(backups_ / "swapped"), std::set<std::string>{"theirs"});
  EXPECT_TRUE(fs::is_empty(backups_ / "moved"));

  // The same with a link out in its place, removed by the destructor.
  made = Create("again");
  ASSERT_TRUE(made.ok()) << made.status();
  std::ofstream((*made)->PathOf("ours")) << "ours";
  fs::rename(backups_ / "again", backups_ / "moved-again");
  fs::create_directory_symlink(outside_ / "dir", backups_ / "again");
  made->reset();
  EXPECT_TRUE(fs::is_symlink(backups_ / "again"));
  EXPECT_TRUE(fs::is_empty(backups_ / "moved-again"));
  ExpectOutsideUntouched();
}

// RocksDB's checkpoint writes "<dir>.tmp" and renames it to "<dir>": through /proc/self/fd
// both land in the target, wherever its name has gone.
TEST_F(BackupTargetTest, StoreBackupWritesThroughTheDescriptor) {
  fs::remove_all(data_);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(data_.string(), {.sync = false});
  ASSERT_TRUE(store.ok()) << store.status();
  IndexConfig config;
  config.name = "docs";
  config.dim = 2;
  ASSERT_TRUE((*store)->CreateIndex(config).ok());
  absl::StatusOr<std::unique_ptr<BackupTarget>> made = Create("copy");
  ASSERT_TRUE(made.ok()) << made.status();
  fs::rename(backups_ / "copy", backups_ / "renamed");
  fs::create_directory_symlink(outside_ / "dir", backups_ / "copy");
  absl::StatusOr<uint64_t> bytes = (*store)->Backup(**made);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE((*made)->Keep().ok());
  EXPECT_EQ(Entries(backups_ / "renamed"), (std::set<std::string>{"db", "graphs"}));
  EXPECT_TRUE(fs::exists(backups_ / "renamed" / "db" / "CURRENT"));
  ExpectOutsideUntouched();
  store->reset();
  absl::StatusOr<std::unique_ptr<Store>> copy =
      Store::Open((backups_ / "renamed").string(), {.sync = false});
  ASSERT_TRUE(copy.ok()) << copy.status();
  ASSERT_EQ((*copy)->ListIndexes().size(), 1u);
  EXPECT_EQ((*copy)->ListIndexes()[0].name, "docs");
}

}  // namespace
}  // namespace luxdb::storage
