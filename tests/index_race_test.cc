// Index under concurrency: queries racing writes on one index. Also built with
// ThreadSanitizer by the tsan_race_tests test (tests/CMakeLists.txt), so keep it to the
// engine (no gRPC) and to modest sizes.
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/catalog.h"
#include "engine/index.h"
#include "gtest/gtest.h"

namespace luxdb::engine {
namespace {

using storage::Space;

std::vector<float> RandomVectors(size_t n, uint32_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n * dim);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<uint64_t> Range(uint64_t begin, uint64_t end) {
  std::vector<uint64_t> ids(end - begin);
  for (uint64_t i = 0; i < ids.size(); ++i) ids[i] = begin + i;
  return ids;
}

// A fresh directory under $TMPDIR, removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/luxdb-race-XXXXXX");
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

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

}  // namespace
}  // namespace luxdb::engine
