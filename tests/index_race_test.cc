// Index under concurrency: queries racing writes on one index. Also built with
// ThreadSanitizer by the tsan_race_tests test (tests/CMakeLists.txt), so keep it to the
// engine (no gRPC) and to modest sizes.
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/catalog.h"
#include "engine/index.h"
#include "engine/limits.h"
#include "gtest/gtest.h"
#include "tests/race_support.h"

namespace luxdb::engine {
namespace {

using race::RandomVectors;
using race::Range;
using race::TempDir;
using storage::Space;

class IndexRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Catalog>> catalog =
        Catalog::Open(tmp_.path() + "/data", {.threads = 2, .sync = false, .snapshot_every = 0});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
    catalog_->WaitUntilLoaded();
  }

  TempDir tmp_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(IndexRaceTest, QueriesRacingAddsSeeOnlyAddedIds) {
  constexpr uint32_t kDim = 8;
  constexpr uint64_t kBatch = 50;
  constexpr int kBatches = 20;
  ASSERT_TRUE(catalog_->Create("docs", Space::kL2, kDim).ok());
  absl::StatusOr<std::shared_ptr<Index>> index = catalog_->Get("docs");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_TRUE(
      (*index)->Init({.max_elements = kBatch * kBatches, .ef_construction = 20, .m = 8}).ok());
  ASSERT_TRUE((*index)->Add(RandomVectors(kBatch, kDim, 0), Range(0, kBatch)).ok());

  std::atomic<uint64_t> added_up_to = kBatch;  // ids below are acknowledged
  std::atomic<bool> done = false;
  std::thread writer([&] {
    for (int b = 1; b < kBatches; ++b) {
      const uint64_t start = b * kBatch;
      absl::StatusOr<uint64_t> added =
          (*index)->Add(RandomVectors(kBatch, kDim, b), Range(start, start + kBatch));
      EXPECT_TRUE(added.ok()) << added.status();
      added_up_to = start + kBatch;
    }
    done = true;
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      constexpr uint32_t kK = 5;
      std::vector<uint64_t> ids(kK);
      std::vector<float> distances(kK);
      for (uint32_t q = 0; !done.load(); ++q) {
        const uint64_t limit = kBatch * kBatches;  // ids being added may show up early
        ASSERT_TRUE(
            (*index)->Query(RandomVectors(1, kDim, 1000 * r + q), kK, 0, ids, distances).ok());
        for (uint64_t id : ids) EXPECT_LT(id, limit);
        EXPECT_TRUE((*index)->Ids().ok());
        EXPECT_GE((*index)->Info().element_count, kBatch);
      }
    });
  }
  writer.join();
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(added_up_to.load(), kBatch * kBatches);
  EXPECT_EQ((*index)->Info().element_count, kBatch * kBatches);
}

// Queries racing replaces and deletes (each a tombstone plus, for a replace, a new element):
// every answer is sorted, holds no id twice, and never an id deleted for good before the
// queries started; GetElements of a live id returns one of the vectors it ever had.
TEST_F(IndexRaceTest, QueriesRacingReplacesAndDeletesSeeNoDeletedOrDuplicateIds) {
  constexpr uint32_t kDim = 8;
  constexpr uint64_t kLive = 300;
  constexpr int kRounds = 6;
  ASSERT_TRUE(catalog_->Create("churn", Space::kL2, kDim).ok());
  std::shared_ptr<Index> index = *catalog_->Get("churn");
  ASSERT_TRUE(index->Init({.max_elements = 400}).ok());
  ASSERT_TRUE(index->Add(RandomVectors(kLive, kDim, 1), Range(0, kLive)).ok());
  // Ids 1000..1049 are deleted for good before any query runs.
  ASSERT_TRUE(index->Add(RandomVectors(50, kDim, 2), Range(1000, 1050)).ok());
  ASSERT_TRUE(index->Delete(Range(1000, 1050)).ok());

  std::atomic<bool> writing = true;
  std::atomic<int> problems = 0;
  std::thread writer([&] {
    for (int round = 0; round < kRounds; ++round) {
      if (!index->Add(RandomVectors(kLive, kDim, 10 + round), Range(0, kLive)).ok()) ++problems;
      if (!index->Delete(Range(0, kLive / 3)).ok()) ++problems;
      if (!index->Add(RandomVectors(kLive / 3, kDim, 20 + round), Range(0, kLive / 3)).ok()) {
        ++problems;
      }
    }
    writing = false;
  });
  std::vector<std::thread> readers;
  std::atomic<uint64_t> queries = 0;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      constexpr uint32_t k = 10;
      std::vector<uint64_t> ids(k);
      std::vector<float> distances(k);
      std::vector<float> vector(kDim);
      for (uint32_t i = 0; writing.load(); ++i) {
        const std::vector<float> query = RandomVectors(1, kDim, 1000 * r + i);
        if (!index->Query(query, k, 40, ids, distances).ok()) {
          ++problems;
          continue;
        }
        ++queries;
        for (uint32_t j = 0; j < k; ++j) {
          if (ids[j] == kMissingId) continue;
          if (ids[j] >= kLive) ++problems;  // a deleted-for-good id, or garbage
          if (j > 0 && distances[j] < distances[j - 1]) ++problems;
          for (uint32_t l = 0; l < j; ++l) problems += ids[l] == ids[j];
        }
        const uint64_t id = kLive / 3 + i % (kLive - kLive / 3);  // never deleted
        if (!index->GetVectors(std::span<const uint64_t>(&id, 1), vector).ok()) ++problems;
      }
    });
  }
  writer.join();
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(problems.load(), 0);
  EXPECT_GT(queries.load(), 0u);
  const IndexInfo info = index->Info();
  EXPECT_EQ(info.element_count, kLive);
}

// Queries racing compactions (and the replaces that make them needed): items no write touches
// are found by their own vector before, during and after every swap of the graph.
TEST_F(IndexRaceTest, QueriesRacingCompactionsFindUntouchedItems) {
  constexpr uint32_t kDim = 8;
  constexpr uint64_t kStable = 100;   // ids 0..99: never written again
  constexpr uint64_t kChurned = 300;  // ids 100..399: replaced over and over
  ASSERT_TRUE(catalog_->Create("compacted", Space::kL2, kDim).ok());
  std::shared_ptr<Index> index = *catalog_->Get("compacted");
  ASSERT_TRUE(index->Init({.max_elements = kStable + kChurned}).ok());
  const std::vector<float> stable = RandomVectors(kStable, kDim, 3);
  ASSERT_TRUE(index->Add(stable, Range(0, kStable)).ok());
  ASSERT_TRUE(
      index->Add(RandomVectors(kChurned, kDim, 4), Range(kStable, kStable + kChurned)).ok());

  std::atomic<bool> running = true;
  std::atomic<int> problems = 0;
  std::atomic<int> compactions = 0;
  std::thread writer([&] {
    for (int round = 0; running.load(); ++round) {
      if (!index
               ->Add(RandomVectors(kChurned, kDim, 100 + round), Range(kStable, kStable + kChurned))
               .ok()) {
        ++problems;
      }
    }
  });
  std::thread compactor([&] {
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<CompactStats> stats = index->Compact();
      if (!stats.ok()) {
        ++problems;
        ADD_FAILURE() << stats.status();
      } else {
        ++compactions;
      }
    }
    running = false;
  });
  std::atomic<uint64_t> found = 0;
  std::atomic<uint64_t> asked = 0;
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      uint64_t id = 0;
      float distance = 0;
      for (uint64_t i = r; running.load(); i += 2) {
        const uint64_t want = i % kStable;
        const std::span<const float> query(stable.data() + want * kDim, kDim);
        if (!index->Query(query, 1, 50, std::span(&id, 1), std::span(&distance, 1)).ok()) {
          ++problems;
          continue;
        }
        ++asked;
        found += id == want && distance == 0;
      }
    });
  }
  compactor.join();
  writer.join();
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(problems.load(), 0);
  EXPECT_EQ(compactions.load(), 3);
  ASSERT_GT(asked.load(), 0u);
  // A 400-item graph at ef 50 finds an exact match essentially always; allow a hair.
  EXPECT_GE(static_cast<double>(found.load()) / asked.load(), 0.99)
      << found.load() << " of " << asked.load();
  EXPECT_EQ(index->Info().element_count, kStable + kChurned);
}

// The memory budget: what InitIndex, ResizeIndex and CompactIndex reserve is summed, a call
// that would pass it is refused naming the budget, and dropping an index gives its share back.
TEST(MemoryBudgetTest, RefusesInitResizeAndCompactionBeyondTheBudget) {
  constexpr uint32_t kDim = 16;
  constexpr uint64_t kMax = 1000;
  const uint64_t one = HnswGraph::EstimateBytes(kDim, kDefaultM, GraphCapacity(kMax));
  TempDir tmp;
  absl::StatusOr<std::unique_ptr<Catalog>> opened = Catalog::Open(
      tmp.path() + "/data",
      {.threads = 2, .sync = false, .snapshot_every = 0, .memory_budget_bytes = one * 3 / 2});
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<Catalog> catalog = *std::move(opened);
  catalog->WaitUntilLoaded();
  ASSERT_TRUE(catalog->Create("a", Space::kL2, kDim).ok());
  ASSERT_TRUE(catalog->Create("b", Space::kL2, kDim).ok());
  std::shared_ptr<Index> a = *catalog->Get("a");
  std::shared_ptr<Index> b = *catalog->Get("b");
  ASSERT_TRUE(a->Init({.max_elements = kMax}).ok());
  EXPECT_EQ(a->Info().memory_bytes, one);
  ASSERT_TRUE(a->Add(RandomVectors(10, kDim, 5), Range(0, 10)).ok());

  const absl::Status init = b->Init({.max_elements = kMax});
  EXPECT_EQ(init.code(), absl::StatusCode::kResourceExhausted) << init;
  EXPECT_NE(init.message().find("memory budget"), std::string::npos) << init;
  EXPECT_NE(init.message().find("'b'"), std::string::npos) << init;
  EXPECT_FALSE(b->Info().initialized);

  const absl::Status grow = a->Resize(2 * kMax);
  EXPECT_EQ(grow.code(), absl::StatusCode::kResourceExhausted) << grow;
  EXPECT_EQ(a->Info().max_elements, kMax);

  const absl::StatusOr<CompactStats> compacted = a->Compact();
  EXPECT_EQ(compacted.status().code(), absl::StatusCode::kResourceExhausted) << compacted.status();
  EXPECT_EQ(a->Info().memory_bytes, one);  // nothing left reserved by the refused calls

  ASSERT_TRUE(catalog->Drop("a").ok());
  EXPECT_TRUE(b->Init({.max_elements = kMax}).ok());
}

}  // namespace
}  // namespace luxdb::engine
