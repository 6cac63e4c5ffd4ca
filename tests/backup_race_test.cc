// Backup against a caller who can write inside --backup-dir: while backups run, a component of
// their paths is swapped between a real directory and symbolic links to a directory outside
// --backup-dir and to the live data directory. A backup must never create, write or delete
// anything through such a link, and a backup that fails removes what it made, and only that.
// Runs a real server in this process: the 400 backups take 2-4 s, the whole test 3-10 s on 2
// cores.

#include <fcntl.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace luxdb {
namespace {

namespace fs = std::filesystem;
using ::luxdb::testing::AddItems;
using ::luxdb::testing::Backup;
using ::luxdb::testing::CodeName;
using ::luxdb::testing::Content;
using ::luxdb::testing::ContentOf;
using ::luxdb::testing::CreateIndex;
using ::luxdb::testing::InitIndex;
using ::luxdb::testing::IsOk;
using ::luxdb::testing::QueryIndex;
using ::luxdb::testing::QueryResult;
using ::luxdb::testing::TempDir;
using ::luxdb::testing::TestServer;

constexpr int kMarkers = 600;
constexpr int kCalls = 400;
constexpr int kCallers = 2;
// The swapped component, and the parked names its other states wait under.
constexpr char kSwing[] = "swing";
constexpr char kToOutside[] = "to-outside";
constexpr char kToData[] = "to-data";
// How often the real directory behind kSwing is replaced by a fresh one, so that names a
// backup already took there (e.g. "swing/db") are free again.
constexpr auto kFreshEvery = std::chrono::milliseconds(20);

std::string MarkerName(int i) { return absl::StrFormat("m%03d", i); }

// Names of the entries of `dir`, without following symbolic links.
std::set<std::string> Entries(const fs::path& dir) {
  std::set<std::string> names;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

class BackupRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(outside_);
    for (int i = 0; i < kMarkers; ++i) {
      fs::create_directory(outside_ / MarkerName(i));
      std::ofstream(outside_ / MarkerName(i) / "marker") << MarkerName(i);
    }
    fs::create_directories(backups_);
  }

  void StartServer() {
    server::Options options = TestServer::DefaultOptions();
    options.backup_dir = backups_.string();
    server_ = std::make_unique<TestServer>(data_.string(), options);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(IsOk(CreateIndex(stub(), "docs", v1::L2, 4)));
    ASSERT_TRUE(IsOk(InitIndex(stub(), "docs", 100)));
    std::vector<float> vectors;
    std::vector<uint64_t> ids;
    for (uint64_t id = 0; id < 20; ++id) {
      for (int d = 0; d < 4; ++d) vectors.push_back(static_cast<float>(id * 4 + d));
      ids.push_back(id);
    }
    ASSERT_TRUE(IsOk(AddItems(stub(), "docs", vectors, ids)));
    ASSERT_TRUE(IsOk(CreateIndex(stub(), "empty", v1::IP, 3)));
    before_ = ContentOf(stub(), "docs");
  }

  v1::LuxDB::Stub& stub() { return server_->stub(); }

  // Every marker directory is there, holding only its marker, and nothing else is outside.
  void ExpectOutsideUntouched() {
    std::set<std::string> expected;
    for (int i = 0; i < kMarkers; ++i) expected.insert(MarkerName(i));
    const std::set<std::string> found = Entries(outside_);
    std::vector<std::string> missing, added;
    std::set_difference(expected.begin(), expected.end(), found.begin(), found.end(),
                        std::back_inserter(missing));
    std::set_difference(found.begin(), found.end(), expected.begin(), expected.end(),
                        std::back_inserter(added));
    EXPECT_TRUE(missing.empty()) << missing.size() << " of " << kMarkers
                                 << " marker directories outside --backup-dir were deleted, e.g. "
                                 << missing.front();
    EXPECT_TRUE(added.empty()) << "created outside --backup-dir: " << absl::StrJoin(added, ", ");
    int changed = 0;
    for (const std::string& name : found) {
      if (!expected.contains(name)) continue;
      if (Entries(outside_ / name) != std::set<std::string>{"marker"}) ++changed;
    }
    EXPECT_EQ(changed, 0) << "marker directories whose contents changed";
  }

  // The data directory holds what the server made and nothing a backup made, and RocksDB's
  // files are there.
  void ExpectDataDirectoryIntact() {
    EXPECT_EQ(Entries(data_), (std::set<std::string>{"db", "graphs"}));
    const std::set<std::string> db = Entries(data_ / "db");
    for (const char* name : {"CURRENT", "LOCK", "IDENTITY"}) {
      EXPECT_TRUE(db.contains(name)) << "data/db/" << name << " is gone";
    }
    std::ifstream current(data_ / "db" / "CURRENT");
    std::string manifest;
    std::getline(current, manifest);
    EXPECT_TRUE(manifest.starts_with("MANIFEST-") && db.contains(manifest))
        << "data/db/CURRENT names '" << manifest << "'";
    EXPECT_TRUE(std::any_of(db.begin(), db.end(), [](const std::string& name) {
      return name.ends_with(".log");
    })) << "data/db has no write-ahead log";
    for (const fs::path& dir : {data_ / "db", data_ / "graphs"}) {
      std::error_code error;
      for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
        EXPECT_FALSE(entry.is_directory()) << entry.path() << ": a backup wrote into the data dir";
      }
    }
  }

  // The server still answers as before, takes a write, and does so again after a restart.
  void ExpectServing() {
    EXPECT_TRUE(testing::Unchanged(before_, ContentOf(stub(), "docs")));
    QueryResult result;
    ASSERT_TRUE(IsOk(QueryIndex(stub(), "docs", {4, 5, 6, 7}, 1, 0, &result)));
    EXPECT_EQ(result.ids, std::vector<uint64_t>{1});
    ASSERT_TRUE(IsOk(AddItems(stub(), "docs", {9, 9, 9, 9}, {50})));
    const Content after_write = ContentOf(stub(), "docs");
    server_->Restart();
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_TRUE(testing::Unchanged(after_write, ContentOf(stub(), "docs")));
    bool exists = false;
    ASSERT_TRUE(IsOk(testing::IndexExists(stub(), "empty", &exists)));
    EXPECT_TRUE(exists);
  }

  TempDir root_;
  const fs::path data_ = fs::path(root_.path()) / "data";
  const fs::path backups_ = fs::path(root_.path()) / "backups";
  const fs::path outside_ = fs::path(root_.path()) / "outside";
  std::unique_ptr<TestServer> server_;
  Content before_;
};

// Reports every change inside the directories it watches, for as long as it lives.
class ChangeWatch {
 public:
  ChangeWatch() : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    EXPECT_GE(fd_, 0) << "inotify_init1: " << std::strerror(errno);
  }
  ~ChangeWatch() {
    if (fd_ >= 0) close(fd_);
  }
  void Add(const fs::path& dir) {
    const int wd = inotify_add_watch(fd_, dir.c_str(),
                                     IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM |
                                         IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB);
    ASSERT_GE(wd, 0) << "inotify_add_watch " << dir << ": " << std::strerror(errno);
    dirs_[wd] = dir.string();
  }
  // "<dir>/<name>" of each change seen so far.
  std::vector<std::string> Changes() {
    std::vector<std::string> changes;
    alignas(inotify_event) char buffer[1 << 16];
    for (;;) {
      const ssize_t n = read(fd_, buffer, sizeof(buffer));
      if (n <= 0) break;
      for (ssize_t at = 0; at < n;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
        if (event->mask & IN_Q_OVERFLOW) {
          changes.push_back("(too many changes to list)");
        } else {
          changes.push_back(absl::StrCat(dirs_[event->wd], "/", event->len ? event->name : ""));
        }
        at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      }
    }
    return changes;
  }

 private:
  const int fd_;
  std::map<int, std::string> dirs_;
};

TEST_F(BackupRaceTest, SwappingAComponentForALinkNeverReachesOutsideTheBackupDir) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ChangeWatch watch;
  watch.Add(outside_);
  for (int i = 0; i < kMarkers; ++i) ASSERT_NO_FATAL_FAILURE(watch.Add(outside_ / MarkerName(i)));

  // The attacker: kSwing is a real directory, then a link out, a real directory again, then
  // a link to the data directory, and so on; each swap is one atomic rename.
  fs::create_directory(backups_ / kSwing);
  fs::create_directory_symlink(outside_, backups_ / kToOutside);
  fs::create_directory_symlink(data_, backups_ / kToData);
  std::atomic<bool> stop = false;
  std::atomic<uint64_t> swaps = 0;
  const std::string swing = (backups_ / kSwing).string();
  std::thread attacker([&] {
    auto exchange = [&](const std::string& other) {
      if (renameat2(AT_FDCWD, swing.c_str(), AT_FDCWD, other.c_str(), RENAME_EXCHANGE) == 0) {
        ++swaps;
      } else {
        ADD_FAILURE() << "renameat2 " << other << ": " << std::strerror(errno);
        stop = true;
      }
    };
    const std::string to_outside = (backups_ / kToOutside).string();
    const std::string to_data = (backups_ / kToData).string();
    auto fresh_at = std::chrono::steady_clock::now();
    for (int fresh = 0; !stop; std::this_thread::yield()) {
      exchange(to_outside);
      exchange(to_outside);
      exchange(to_data);
      exchange(to_data);
      if (std::chrono::steady_clock::now() >= fresh_at) {
        // The used directory stays inside --backup-dir under the fresh one's name.
        const std::string next = (backups_ / absl::StrCat("fresh-", fresh++)).string();
        ASSERT_EQ(mkdir(next.c_str(), 0700), 0);
        exchange(next);
        fresh_at = std::chrono::steady_clock::now() + kFreshEvery;
      }
    }
  });

  // The victims: backups through the swapped component, named like the marker directories
  // outside and like the data directory's own subdirectories.
  std::mutex mu;
  std::map<std::string, int> outcomes;  // code (and for refusals, why) -> calls
  std::vector<std::string> unexpected;
  int ok = 0;
  std::atomic<int> next_call = 0;
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&] {
      for (int i; (i = next_call++) < kCalls;) {
        std::string name = i % 8 == 3 ? "db" : i % 8 == 7 ? "graphs" : MarkerName(i % kMarkers);
        v1::BackupResponse response;
        const grpc::Status status = Backup(stub(), absl::StrCat(kSwing, "/", name), &response);
        std::string outcome = CodeName(status.error_code());
        bool expected = status.ok() || status.error_code() == grpc::StatusCode::ALREADY_EXISTS;
        if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
            status.error_message().find("symbolic link") != std::string::npos) {
          outcome += " (symbolic link)";
          expected = true;
        }
        std::lock_guard lock(mu);
        ++outcomes[outcome];
        if (status.ok()) ++ok;
        if (!expected) unexpected.push_back(absl::StrCat(outcome, ": ", status.error_message()));
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  stop = true;
  attacker.join();

  std::string summary;
  for (const auto& [outcome, calls] : outcomes)
    absl::StrAppend(&summary, outcome, ": ", calls, "; ");
  std::cout << kCalls << " backups in " << seconds << " s, " << swaps << " swaps; " << summary
            << std::endl;
  EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " unexpected answers, e.g. "
                                  << unexpected.front();
  // The race was run: some backups got through and some met a link.
  EXPECT_GT(ok, 0);
  EXPECT_GT(outcomes["INVALID_ARGUMENT (symbolic link)"], 0);

  const std::vector<std::string> changes = watch.Changes();
  EXPECT_TRUE(changes.empty()) << changes.size() << " changes outside --backup-dir, e.g. "
                               << changes.front();
  ExpectOutsideUntouched();
  ExpectDataDirectoryIntact();
  // Every backup answered OK is a whole copy inside --backup-dir, and none was left half-made.
  int copies = 0;
  std::vector<std::string> leftovers;
  for (fs::recursive_directory_iterator it(backups_), end; it != end; ++it) {
    if (it->is_symlink()) continue;
    if (it->path().filename() == "db.tmp") leftovers.push_back(it->path().string());
    if (it->is_directory() && fs::exists(it->path() / "db" / "CURRENT")) {
      ++copies;
      it.disable_recursion_pending();
    }
  }
  EXPECT_EQ(copies, ok);
  EXPECT_TRUE(leftovers.empty()) << absl::StrJoin(leftovers, ", ");
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
}

TEST_F(BackupRaceTest, FailedBackupRemovesWhatItCreatedAndNothingElse) {
  // The copy of the secret file fails after everything else was written: "secret" is a
  // directory. (A server given its secret by option never reads it.)
  fs::create_directories(data_ / "secret");
  ASSERT_NO_FATAL_FAILURE(StartServer());
  fs::create_directory(backups_ / "keep");
  std::ofstream(backups_ / "keep" / "file") << "kept";
  fs::create_directory_symlink(outside_, backups_ / "link");
  ChangeWatch watch;
  watch.Add(outside_);
  watch.Add(backups_ / "keep");

  v1::BackupResponse response;
  const grpc::Status status = Backup(stub(), "nightly", &response);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.error_message().find("nightly"), std::string::npos) << status.error_message();
  EXPECT_EQ(Entries(backups_), (std::set<std::string>{"keep", "link"}));
  EXPECT_EQ(Entries(backups_ / "keep"), std::set<std::string>{"file"});
  EXPECT_TRUE(fs::is_symlink(backups_ / "link"));
  const std::vector<std::string> changes = watch.Changes();
  EXPECT_TRUE(changes.empty()) << changes.size() << " changes, e.g. " << changes.front();
  ExpectOutsideUntouched();
  EXPECT_EQ(Entries(data_), (std::set<std::string>{"db", "graphs", "secret"}));
  fs::remove(data_ / "secret");
  ExpectDataDirectoryIntact();
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
}

}  // namespace
}  // namespace luxdb
