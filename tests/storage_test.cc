#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/index_config.h"
#include "storage/store.h"

namespace luxdb::storage {
namespace {

constexpr uint32_t kDim = 4;

::testing::AssertionResult Contains(absl::string_view text, absl::string_view part) {
  if (absl::StrContains(text, part)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

IndexConfig FullConfig() {
  IndexConfig config;
  config.name = "docs \xc3\xa9t\xc3\xa9";
  config.space = Space::kCosine;
  config.dim = 1536;
  config.initialized = true;
  config.max_elements = (uint64_t{1} << 40) + 3;
  config.m = 48;
  config.ef_construction = 400;
  config.ef = 77;
  config.random_seed = 0xfedcba9876543210;
  config.cf_id = 0x0102030405060708;
  config.version = std::numeric_limits<uint64_t>::max();
  return config;
}

void ExpectSameConfig(const IndexConfig& actual, const IndexConfig& expected) {
  EXPECT_EQ(actual.name, expected.name);
  EXPECT_EQ(actual.space, expected.space);
  EXPECT_EQ(actual.dim, expected.dim);
  EXPECT_EQ(actual.initialized, expected.initialized);
  EXPECT_EQ(actual.max_elements, expected.max_elements);
  EXPECT_EQ(actual.m, expected.m);
  EXPECT_EQ(actual.ef_construction, expected.ef_construction);
  EXPECT_EQ(actual.ef, expected.ef);
  EXPECT_EQ(actual.random_seed, expected.random_seed);
  EXPECT_EQ(actual.cf_id, expected.cf_id);
  EXPECT_EQ(actual.version, expected.version);
}

TEST(IndexConfigTest, RoundTripsEveryField) {
  const IndexConfig config = FullConfig();
  absl::StatusOr<IndexConfig> decoded = DecodeIndexConfig(EncodeIndexConfig(config));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameConfig(*decoded, config);
}

TEST(IndexConfigTest, RoundTripsDefaults) {
  IndexConfig config;
  config.name = "a";
  absl::StatusOr<IndexConfig> decoded = DecodeIndexConfig(EncodeIndexConfig(config));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameConfig(*decoded, config);
}

TEST(IndexConfigTest, RejectsEveryTruncation) {
  const std::string bytes = EncodeIndexConfig(FullConfig());
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_EQ(DecodeIndexConfig(bytes.substr(0, size)).status().code(), absl::StatusCode::kDataLoss)
        << "prefix of " << size << " bytes";
  }
}

TEST(IndexConfigTest, RejectsTrailingBytes) {
  absl::StatusOr<IndexConfig> decoded = DecodeIndexConfig(EncodeIndexConfig(FullConfig()) + "x");
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(decoded.status().message(), "trailing"));
}

TEST(IndexConfigTest, RejectsUnknownFormatVersion) {
  std::string bytes = EncodeIndexConfig(FullConfig());
  bytes[0] = 99;
  absl::StatusOr<IndexConfig> decoded = DecodeIndexConfig(bytes);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(decoded.status().message(), "99"));
}

TEST(IndexConfigTest, RejectsUnknownSpace) {
  std::string bytes = EncodeIndexConfig(FullConfig());
  bytes[1] = 4;  // the space follows the format byte
  absl::StatusOr<IndexConfig> decoded = DecodeIndexConfig(bytes);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(decoded.status().message(), "space"));
}

TEST(IndexConfigTest, NamesSpaces) {
  EXPECT_EQ(SpaceName(Space::kL2), "l2");
  EXPECT_EQ(SpaceName(Space::kIp), "ip");
  EXPECT_EQ(SpaceName(Space::kCosine), "cosine");
}

// One item as ScanItems reports it; the vector as bit patterns so comparisons are exact.
struct ScannedItem {
  std::vector<uint32_t> bits;
  bool deleted = false;
  bool operator==(const ScannedItem&) const = default;
};

// File descriptors this process holds.
size_t OpenFds() {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++count;
  }
  return count;
}

std::vector<uint32_t> Bits(const std::vector<float>& vector) {
  std::vector<uint32_t> bits;
  for (float f : vector) bits.push_back(std::bit_cast<uint32_t>(f));
  return bits;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = absl::StrCat(::testing::TempDir(), "/storage_test-", test->name(), "-", ::getpid());
    std::filesystem::remove_all(dir_);
  }

  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  Store& Reopen(Store::Options options = {}) {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(dir_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    return *store_;
  }

  IndexConfig Create(const std::string& name, uint32_t dim = kDim) {
    IndexConfig config;
    config.name = name;
    config.space = Space::kL2;
    config.dim = dim;
    absl::StatusOr<IndexConfig> created = store_->CreateIndex(config);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : config;
  }

  std::optional<IndexConfig> Listed(const std::string& name) {
    for (const IndexConfig& config : store_->ListIndexes()) {
      if (config.name == name) return config;
    }
    return std::nullopt;
  }

  std::map<uint64_t, ScannedItem> Scan(const IndexConfig& config) {
    std::map<uint64_t, ScannedItem> items;
    std::vector<uint64_t> order;
    absl::Status status =
        store_->ScanItems(config, [&](uint64_t id, std::span<const float> vector, bool deleted) {
          order.push_back(id);
          items[id] = {Bits({vector.begin(), vector.end()}), deleted};
          return absl::OkStatus();
        });
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
    EXPECT_EQ(order.size(), items.size()) << "an id was reported twice";
    return items;
  }

  // Commits `items` with the config version bumped, as the engine does.
  absl::Status CommitNext(IndexConfig& config, const ItemWrite& items) {
    IndexConfig after = config;
    ++after.version;
    absl::Status status = store_->Commit(after, items);
    if (status.ok()) config = after;
    return status;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, CreatesPrivateDataDirectory) {
  Reopen();
  struct stat info;
  ASSERT_EQ(::stat(dir_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/graphs"));
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/db"));
}

TEST_F(StoreTest, OpenFailsWhileAnotherStoreHoldsTheDirectory) {
  Reopen();
  absl::StatusOr<std::unique_ptr<Store>> second = Store::Open(dir_, {});
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(Contains(second.status().message(), dir_));
}

TEST_F(StoreTest, CreateListUpdateDrop) {
  Reopen();
  EXPECT_TRUE(store_->ListIndexes().empty());
  const IndexConfig zeta = Create("zeta");
  IndexConfig alpha = Create("alpha", 3);
  EXPECT_NE(zeta.cf_id, 0u);
  EXPECT_NE(alpha.cf_id, zeta.cf_id);
  EXPECT_EQ(alpha.version, 0u);
  EXPECT_EQ(alpha.dim, 3u);

  std::vector<std::string> names;
  for (const IndexConfig& config : store_->ListIndexes()) names.push_back(config.name);
  EXPECT_EQ(names, (std::vector<std::string>{"alpha", "zeta"}));

  alpha.initialized = true;
  alpha.max_elements = 1000;
  alpha.m = 16;
  alpha.ef_construction = 200;
  alpha.ef = 10;
  alpha.random_seed = 100;
  ASSERT_TRUE(store_->UpdateConfig(alpha).ok());
  ExpectSameConfig(*Listed("alpha"), alpha);
  Reopen();
  ExpectSameConfig(*Listed("alpha"), alpha);

  ASSERT_TRUE(store_->DropIndex("alpha").ok());
  EXPECT_FALSE(Listed("alpha").has_value());
  ExpectSameConfig(*Listed("zeta"), zeta);
}

TEST_F(StoreTest, CreateIgnoresCallerCfIdAndVersion) {
  Reopen();
  IndexConfig config;
  config.name = "docs";
  config.dim = kDim;
  config.cf_id = 12345;
  config.version = 99;
  absl::StatusOr<IndexConfig> created = store_->CreateIndex(config);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_NE(created->cf_id, 12345u);
  EXPECT_EQ(created->version, 0u);
}

TEST_F(StoreTest, ReportsExistingAndMissingNames) {
  Reopen();
  IndexConfig docs = Create("docs");
  IndexConfig again;
  again.name = "docs";
  again.dim = 7;
  absl::StatusOr<IndexConfig> duplicate = store_->CreateIndex(again);
  EXPECT_EQ(duplicate.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Contains(duplicate.status().message(), "'docs'"));
  EXPECT_EQ(Listed("docs")->dim, kDim);

  IndexConfig missing = docs;
  missing.name = "missing";
  absl::Status update = store_->UpdateConfig(missing);
  EXPECT_EQ(update.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(update.message(), "'missing'"));
  EXPECT_EQ(store_->Commit(missing, ItemWrite()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DropIndex("missing").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_
                ->ScanItems(missing,
                            [](uint64_t, std::span<const float>, bool) { return absl::OkStatus(); })
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, CommitSurvivesReopenBitForBit) {
  Reopen();
  IndexConfig docs = Create("docs");
  const std::vector<float> a = {1.5f, -0.0f, std::numeric_limits<float>::denorm_min(), 3e38f};
  const std::vector<float> b = {std::bit_cast<float>(0x7fc00123u), 2, 3, 4};  // NaN payload
  const std::vector<float> c = {-1, -2, -3, -4};
  const std::vector<float> c2 = {9, 8, 7, 6};
  const uint64_t big_id = std::numeric_limits<uint64_t>::max();
  {
    ItemWrite items;
    items.Put(300, a);
    items.Put(2, b);
    items.Put(big_id, c);
    items.Put(7, c);
    ASSERT_TRUE(CommitNext(docs, items).ok());
  }
  {
    ItemWrite items;
    items.MarkDeleted(2);
    items.MarkDeleted(7);
    items.Put(1, a);
    items.MarkDeleted(1);  // put and deleted in one write
    ASSERT_TRUE(CommitNext(docs, items).ok());
  }
  {
    ItemWrite items;
    items.Put(7, c2);  // re-put clears the deleted mark
    ASSERT_TRUE(CommitNext(docs, items).ok());
  }
  const std::map<uint64_t, ScannedItem> expected = {
      {1, {Bits(a), true}},    {2, {Bits(b), true}},       {7, {Bits(c2), false}},
      {300, {Bits(a), false}}, {big_id, {Bits(c), false}},
  };
  EXPECT_EQ(Scan(docs), expected);
  Reopen();
  ASSERT_TRUE(Listed("docs").has_value());
  ExpectSameConfig(*Listed("docs"), docs);
  EXPECT_EQ(docs.version, 3u);
  EXPECT_EQ(Scan(docs), expected);
}

TEST_F(StoreTest, RefusedCommitChangesNothing) {
  Reopen();
  IndexConfig docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  const std::vector<float> short_vector = {1, 2, 3};
  {
    ItemWrite items;
    items.Put(1, v);
    ASSERT_TRUE(CommitNext(docs, items).ok());
  }
  {
    ItemWrite items;
    items.Put(2, v);
    items.MarkDeleted(5);
    absl::Status status = CommitNext(docs, items);
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(Contains(status.message(), "5"));
  }
  {
    ItemWrite items;
    items.Put(3, v);
    items.Put(4, short_vector);
    absl::Status status = CommitNext(docs, items);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(status.message(), "vector 4 has dimension 3"));
  }
  Reopen();
  EXPECT_EQ(Listed("docs")->version, 1u);
  EXPECT_EQ(Scan(docs), (std::map<uint64_t, ScannedItem>{{1, {Bits(v), false}}}));
}

TEST_F(StoreTest, ScanReportsVectorsOfTheWrongDimensionAsDataLoss) {
  Reopen();
  IndexConfig docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  ItemWrite items;
  items.Put(42, v);
  ASSERT_TRUE(CommitNext(docs, items).ok());
  IndexConfig wrong = docs;
  wrong.dim = kDim + 1;
  absl::Status status = store_->ScanItems(
      wrong, [](uint64_t, std::span<const float>, bool) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "item 42"));
}

TEST_F(StoreTest, ScanStopsAtTheCallersError) {
  Reopen();
  IndexConfig docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  ItemWrite items;
  for (uint64_t id = 0; id < 10; ++id) items.Put(id, v);
  ASSERT_TRUE(CommitNext(docs, items).ok());
  int calls = 0;
  absl::Status status = store_->ScanItems(docs, [&](uint64_t id, std::span<const float>, bool) {
    ++calls;
    return id == 3 ? absl::CancelledError("enough") : absl::OkStatus();
  });
  EXPECT_EQ(status, absl::CancelledError("enough"));
  EXPECT_EQ(calls, 4);
}

TEST_F(StoreTest, DroppedIndexStaysGoneAndItsNameStartsEmpty) {
  Reopen();
  IndexConfig old_docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  ItemWrite items;
  items.Put(1, v);
  ASSERT_TRUE(CommitNext(old_docs, items).ok());
  ASSERT_TRUE(store_->DropIndex("docs").ok());
  Reopen();
  EXPECT_TRUE(store_->ListIndexes().empty());

  const IndexConfig docs = Create("docs");
  EXPECT_NE(docs.cf_id, old_docs.cf_id);
  EXPECT_EQ(docs.version, 0u);
  EXPECT_TRUE(Scan(docs).empty());
  Reopen();
  EXPECT_TRUE(Scan(docs).empty());

  // A writer still holding the dropped index's config must not reach the new index.
  EXPECT_EQ(CommitNext(old_docs, items).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->UpdateConfig(old_docs).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Scan(docs).empty());
}

TEST_F(StoreTest, CfIdsAreNeverReused) {
  Reopen();
  const uint64_t first = Create("a").cf_id;
  const uint64_t second = Create("b").cf_id;
  ASSERT_TRUE(store_->DropIndex("b").ok());
  Reopen();
  const uint64_t third = Create("c").cf_id;
  ASSERT_TRUE(store_->DropIndex("c").ok());
  ASSERT_TRUE(store_->DropIndex("a").ok());
  Reopen();
  const uint64_t fourth = Create("a").cf_id;
  // Not in order: CreateIndex takes ids from a pool of column families made ahead.
  EXPECT_EQ((std::set<uint64_t>{first, second, third, fourth}).size(), 4u);
}

TEST_F(StoreTest, OpenRemovesLeftoverSnapshotsAndSkipsTheirCfIds) {
  Reopen();
  const IndexConfig docs = Create("docs");
  store_.reset();
  for (const char* name : {"/graphs/90.hnsw", "/graphs/90.meta", "/graphs/91.hnsw.tmp"}) {
    std::ofstream(dir_ + name) << "leftover";
  }
  std::ofstream(dir_ + "/graphs/" + std::to_string(docs.cf_id) + ".hnsw.tmp") << "torn";
  Reopen();
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/graphs"));
  // Column families made ahead (ids below 91 among them) are empty and have no snapshot left.
  for (int i = 0; i < 100; ++i) {
    const IndexConfig next = Create(absl::StrCat("next-", i));
    EXPECT_NE(next.cf_id, docs.cf_id);
    EXPECT_TRUE(absl::IsNotFound(store_->FindSnapshot(next.cf_id).status())) << next.cf_id;
  }
}

class SnapshotTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    Reopen();
    docs_ = Create("docs");
  }

  void WriteGraph(const std::string& bytes) {
    std::ofstream out(store_->TempSnapshotPath(docs_.cf_id), std::ios::binary | std::ios::trunc);
    out << bytes;
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  IndexConfig docs_;
  const std::string graph_ = std::string(100000, 'g') + "end of graph";
};

TEST_F(SnapshotTest, PublishedSnapshotIsFoundAfterReopen) {
  EXPECT_EQ(store_->FindSnapshot(docs_.cf_id).status().code(), absl::StatusCode::kNotFound);
  WriteGraph(graph_);
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 5).ok());
  EXPECT_FALSE(std::filesystem::exists(store_->TempSnapshotPath(docs_.cf_id)));
  Reopen();
  absl::StatusOr<SnapshotFile> found = store_->FindSnapshot(docs_.cf_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->version, 5u);
  EXPECT_TRUE(store_->VerifySnapshot(*found).ok());
  EXPECT_EQ(ReadFile(found->path), graph_);
}

TEST_F(SnapshotTest, RepublishReplacesTheSnapshot) {
  WriteGraph(graph_);
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 5).ok());
  WriteGraph("newer graph");
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 6).ok());
  absl::StatusOr<SnapshotFile> found = store_->FindSnapshot(docs_.cf_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->version, 6u);
  EXPECT_TRUE(store_->VerifySnapshot(*found).ok());
  EXPECT_EQ(ReadFile(found->path), "newer graph");
}

TEST_F(SnapshotTest, FlippedByteFailsVerification) {
  WriteGraph(graph_);
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 5).ok());
  const SnapshotFile found = *store_->FindSnapshot(docs_.cf_id);
  {
    std::fstream file(found.path, std::ios::binary | std::ios::in | std::ios::out);
    file.seekp(50000);
    file.put('h');
  }
  ASSERT_TRUE(store_->FindSnapshot(docs_.cf_id).ok());  // same size: only the checksum tells
  absl::Status verified = store_->VerifySnapshot(*store_->FindSnapshot(docs_.cf_id));
  EXPECT_EQ(verified.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(verified.message(), "SHA-256"));
}

TEST_F(SnapshotTest, TruncatedGraphIsDataLoss) {
  WriteGraph(graph_);
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 5).ok());
  const SnapshotFile found = *store_->FindSnapshot(docs_.cf_id);
  std::filesystem::resize_file(found.path, graph_.size() / 2);
  absl::StatusOr<SnapshotFile> again = store_->FindSnapshot(docs_.cf_id);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(again.status().message(), std::to_string(graph_.size())));
}

TEST_F(SnapshotTest, MissingGraphOrGarbledSidecarIsDataLoss) {
  WriteGraph(graph_);
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 5).ok());
  const std::string path = store_->FindSnapshot(docs_.cf_id)->path;
  const std::string meta_path = dir_ + "/graphs/" + std::to_string(docs_.cf_id) + ".meta";
  const std::string meta = ReadFile(meta_path);
  std::ofstream(meta_path, std::ios::trunc) << meta.substr(0, meta.size() / 2);
  EXPECT_EQ(store_->FindSnapshot(docs_.cf_id).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(meta_path, std::ios::trunc) << meta;
  ASSERT_TRUE(store_->FindSnapshot(docs_.cf_id).ok());
  std::filesystem::remove(path);
  EXPECT_EQ(store_->FindSnapshot(docs_.cf_id).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(SnapshotTest, PublishWithoutGraphFails) {
  EXPECT_FALSE(store_->PublishSnapshot(docs_.cf_id, 1).ok());
  EXPECT_EQ(store_->FindSnapshot(docs_.cf_id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SnapshotTest, DropIndexRemovesItsSnapshot) {
  WriteGraph(graph_);
  ASSERT_TRUE(store_->PublishSnapshot(docs_.cf_id, 5).ok());
  ASSERT_TRUE(store_->DropIndex("docs").ok());
  EXPECT_EQ(store_->FindSnapshot(docs_.cf_id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/graphs"));
}

// The ids each version touched, as ScanHistory reports them.
std::map<uint64_t, std::vector<uint64_t>> History(const Store& store, const IndexConfig& config,
                                                  uint64_t after, absl::Status* status) {
  std::map<uint64_t, std::vector<uint64_t>> history;
  *status = store.ScanHistory(config, after, [&](uint64_t version, std::span<const uint64_t> ids) {
    history[version].assign(ids.begin(), ids.end());
    return absl::OkStatus();
  });
  return history;
}

TEST_F(SnapshotTest, HistoryRecordsTheIdsOfEveryCommitUntilTrimmed) {
  const std::vector<float> a(docs_.dim, 1.0f), b(docs_.dim, 2.0f);
  IndexConfig config = docs_;
  auto commit = [&](ItemWrite items) {
    ++config.version;
    ASSERT_TRUE(store_->Commit(config, items).ok());
  };
  ItemWrite first;
  first.Put(7, a);
  first.Put(9, b);
  commit(first);
  ItemWrite second;
  second.MarkDeleted(7);
  commit(second);
  ItemWrite third;
  third.Put(7, b);
  commit(third);
  Reopen();

  absl::Status status;
  std::map<uint64_t, std::vector<uint64_t>> history = History(*store_, config, 0, &status);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(history, (std::map<uint64_t, std::vector<uint64_t>>{{1, {7, 9}}, {2, {7}}, {3, {7}}}));
  history = History(*store_, config, 2, &status);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(history, (std::map<uint64_t, std::vector<uint64_t>>{{3, {7}}}));
  // Up to date: nothing to replay.
  EXPECT_TRUE(History(*store_, config, 3, &status).empty());
  EXPECT_TRUE(status.ok()) << status;

  ASSERT_TRUE(store_->TrimHistory(config, 2).ok());
  history = History(*store_, config, 0, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(status.message(), "version 1"));
  history = History(*store_, config, 2, &status);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(history.size(), 1u);

  // The items' final state is what replay reads.
  absl::StatusOr<StoredItem> seven = store_->GetItem(config, 7);
  ASSERT_TRUE(seven.ok()) << seven.status();
  EXPECT_EQ(seven->vector, b);
  EXPECT_FALSE(seven->deleted);
  ItemWrite fourth;
  fourth.MarkDeleted(9);
  commit(fourth);
  absl::StatusOr<StoredItem> nine = store_->GetItem(config, 9);
  ASSERT_TRUE(nine.ok()) << nine.status();
  EXPECT_EQ(nine->vector, b);
  EXPECT_TRUE(nine->deleted);
  EXPECT_EQ(store_->GetItem(config, 8).status().code(), absl::StatusCode::kNotFound);
}

void CommitFromThreads(Store& store, std::vector<IndexConfig>& indexes, int threads,
                       int commits_per_thread, int items_per_commit) {
  std::vector<std::atomic<uint64_t>> versions(indexes.size());
  std::vector<std::thread> writers;
  std::atomic<int> failures = 0;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      const size_t index = t % indexes.size();
      for (int c = 0; c < commits_per_thread; ++c) {
        std::vector<std::vector<float>> vectors;
        ItemWrite items;
        for (int i = 0; i < items_per_commit; ++i) {
          const uint64_t id = (uint64_t(t) * commits_per_thread + c) * items_per_commit + i;
          vectors.push_back(std::vector<float>(kDim, static_cast<float>(id)));
        }
        for (int i = 0; i < items_per_commit; ++i) {
          items.Put((uint64_t(t) * commits_per_thread + c) * items_per_commit + i, vectors[i]);
        }
        IndexConfig after = indexes[index];
        after.version = ++versions[index];
        if (!store.Commit(after, items).ok()) ++failures;
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(failures, 0);
}

TEST_F(StoreTest, ConcurrentCommitsAreAllDurable) {
  constexpr int kThreads = 8;
  constexpr int kCommits = 40;
  constexpr int kItems = 5;
  Reopen();
  std::vector<IndexConfig> indexes = {Create("even"), Create("odd")};
  CommitFromThreads(*store_, indexes, kThreads, kCommits, kItems);
  Reopen();
  for (size_t index = 0; index < indexes.size(); ++index) {
    const std::map<uint64_t, ScannedItem> items = Scan(indexes[index]);
    EXPECT_EQ(items.size(), size_t{kThreads / 2 * kCommits * kItems});
    for (const auto& [id, item] : items) {
      EXPECT_EQ((id / (kCommits * kItems)) % 2, index) << "id " << id;
      EXPECT_EQ(item, (ScannedItem{Bits(std::vector<float>(kDim, float(id))), false}));
    }
    EXPECT_GE(Listed(indexes[index].name)->version, 1u);
  }
}

TEST_F(StoreTest, DropRacingWithCommitsStaysDropped) {
  Reopen();
  IndexConfig docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  std::atomic<bool> dropped = false;
  std::atomic<int> commits_after_drop = 0;
  std::thread writer([&] {
    for (uint64_t id = 0;; ++id) {
      const bool was_dropped = dropped;
      ItemWrite items;
      items.Put(id, v);
      absl::Status status = CommitNext(docs, items);
      if (status.ok() && was_dropped) ++commits_after_drop;
      if (!status.ok()) {
        EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
        return;
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(store_->DropIndex("docs").ok());
  dropped = true;
  writer.join();
  EXPECT_EQ(commits_after_drop, 0);
  Reopen();
  EXPECT_TRUE(store_->ListIndexes().empty());
}

TEST_F(StoreTest, WorksWithoutSync) {
  Reopen({.sync = false});
  IndexConfig docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  ItemWrite items;
  items.Put(8, v);
  ASSERT_TRUE(CommitNext(docs, items).ok());
  Reopen({.sync = false});
  EXPECT_EQ(Scan(docs), (std::map<uint64_t, ScannedItem>{{8, {Bits(v), false}}}));
  EXPECT_EQ(Listed("docs")->version, 1u);
}

TEST_F(StoreTest, FlushKeepsEverything) {
  Reopen();
  IndexConfig docs = Create("docs");
  const std::vector<float> v = {1, 2, 3, 4};
  ItemWrite items;
  items.Put(8, v);
  ASSERT_TRUE(CommitNext(docs, items).ok());
  Create("empty");
  ASSERT_TRUE(store_->Flush().ok());
  Reopen();
  EXPECT_EQ(Scan(docs), (std::map<uint64_t, ScannedItem>{{8, {Bits(v), false}}}));
  EXPECT_TRUE(Listed("empty").has_value());
}

TEST_F(StoreTest, FileDescriptorsDoNotGrowWithTheNumberOfIndexes) {
  // More than the table cache keeps open (128) plus slack, so one file per index would show.
  constexpr int kIndexes = 200;
  Reopen({.sync = false});
  const size_t before = OpenFds();
  std::vector<IndexConfig> configs;
  const std::vector<float> v = {1, 2, 3, 4};
  for (int i = 0; i < kIndexes; ++i) {
    configs.push_back(Create(absl::StrCat("tenant-", i)));
    ItemWrite items;
    items.Put(i, v);
    ASSERT_TRUE(CommitNext(configs.back(), items).ok());
  }
  // The table cache keeps at most 128 table files open; a data directory per index (what
  // RocksDB opens for every column family it creates) would be 200 more.
  EXPECT_LT(OpenFds(), before + 32);
  ASSERT_TRUE(store_->Flush().ok());  // a table file per index, each opened once written
  EXPECT_LT(OpenFds(), before + 128 + 32);

  Reopen({.sync = false});
  for (const IndexConfig& config : configs) ASSERT_EQ(Scan(config).size(), 1u) << config.name;
  EXPECT_LT(OpenFds(), before + 128 + 32);
}

TEST_F(StoreTest, CreateIndexWorksAtTheFileDescriptorLimit) {
  Reopen({.sync = false});
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit lowered = saved;
  lowered.rlim_cur = OpenFds() + 2;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  // Creating an index opens no file: none fails, and none is refused for a column family
  // name an earlier failure left taken ("Column family already exists").
  std::vector<absl::Status> results;
  for (int i = 0; i < 50; ++i) {
    IndexConfig config;
    config.name = absl::StrCat("tenant-", i);
    config.space = Space::kL2;
    config.dim = kDim;
    results.push_back(store_->CreateIndex(config).status());
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  for (size_t i = 0; i < results.size(); ++i)
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
  Reopen({.sync = false});
  EXPECT_EQ(store_->ListIndexes().size(), results.size());
}

}  // namespace
}  // namespace luxdb::storage
