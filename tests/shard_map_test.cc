// Cluster mode's arithmetic (cluster/shard_map.h): the documented id hash, shard placement, and
// merging per-shard answers into what one server holding every item would answer.
#include "cluster/shard_map.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "engine/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace luxdb::cluster {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The hash is part of the stored format: these values must never change (README "Cluster
// mode" documents the function; any implementation of it gives these).
TEST(ShardMapTest, TheIdHashIsSplitMix64) {
  EXPECT_EQ(SplitMix64(0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(SplitMix64(1), 0x910a2dec89025cc1ULL);
  EXPECT_EQ(ShardOf(0, 1), 0u);
  EXPECT_EQ(ShardOf(0, 3), 0xe220a8397b1dcdafULL % 3);
}

TEST(ShardMapTest, ConsecutiveIdsSpreadEvenly) {
  constexpr uint32_t kShards = 3;
  constexpr uint64_t kIds = 60000;
  std::vector<uint64_t> count(kShards, 0);
  for (uint64_t id = 0; id < kIds; ++id) ++count[ShardOf(id, kShards)];
  for (uint64_t c : count) {
    // Within 4 standard deviations (~4 * 115) of 20,000.
    EXPECT_NEAR(static_cast<double>(c), kIds / kShards, 500.0);
  }
}

TEST(ShardMapTest, PlacementSpreadsReplicasOverDistinctNodes) {
  const std::vector<std::string> nodes = {"c", "a", "b", "d"};
  auto placed = PlaceShards(nodes, {}, 3, 2);
  ASSERT_TRUE(placed.ok()) << placed.status();
  ASSERT_EQ(placed->size(), 3u);
  std::map<std::string, int> held;
  for (const auto& shard : *placed) {
    ASSERT_EQ(shard.size(), 2u);
    EXPECT_NE(shard[0], shard[1]);
    for (const std::string& node : shard) ++held[node];
  }
  // 6 replicas over 4 nodes: 2, 2, 1, 1.
  for (const auto& [node, n] : held) EXPECT_TRUE(n == 1 || n == 2) << node;
  EXPECT_EQ(held.size(), 4u);
  // Every node computes the same placement, whatever order it lists the nodes in.
  auto again = PlaceShards({"a", "b", "c", "d"}, {}, 3, 2);
  EXPECT_EQ(*again, *placed);
}

TEST(ShardMapTest, PlacementPrefersTheLeastLoadedNodes) {
  auto placed = PlaceShards({"a", "b", "c"}, {5, 0, 1}, 1, 2);
  ASSERT_TRUE(placed.ok());
  EXPECT_THAT((*placed)[0], ElementsAre("b", "c"));
}

TEST(ShardMapTest, PlacementNeedsAsManyNodesAsReplicas) {
  auto placed = PlaceShards({"a", "b"}, {}, 3, 3);
  EXPECT_EQ(placed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(placed.status().message(), HasSubstr("3 replicas need as many live nodes"));
  EXPECT_THAT(placed.status().message(), HasSubstr("has 2"));
}

TEST(ShardMapTest, ShardNamesAreDistinctAndFitTheSuffixBudget) {
  EXPECT_EQ(ShardIndexName("docs", 2), "docs.shard-2");
  EXPECT_LE(ShardIndexName("", 999999999).size(), kMaxShardSuffixBytes);
  std::set<std::string> names;
  for (const std::string base : {"a", "a.shard-1", "a.shard-11"}) {
    for (uint32_t s : {1u, 11u, 111u}) EXPECT_TRUE(names.insert(ShardIndexName(base, s)).second);
  }
}

// A leader learns which cluster index and shard a forwarded write is for from its local name.
TEST(ShardMapTest, ShardNamesParseBackIntoIndexAndShard) {
  std::string name;
  uint32_t shard = 0;
  for (const std::string base : {"docs", "a.shard-1", "x.shard-", "é"}) {
    for (uint32_t s : {0u, 7u, 999999999u}) {
      ASSERT_TRUE(ParseShardIndexName(ShardIndexName(base, s), &name, &shard)) << base << s;
      EXPECT_EQ(name, base);
      EXPECT_EQ(shard, s);
    }
  }
  for (const std::string bad : {"docs", "docs.shard-", ".shard-1", "docs.shard-01", "docs.shard-x",
                                "docs.shard-1234567890", "docs.shard--1"}) {
    EXPECT_FALSE(ParseShardIndexName(bad, &name, &shard)) << bad;
  }
}

// Random per-shard answers against the sorted union: the merge is what one server would answer.
TEST(ShardMapTest, MergingShardAnswersGivesTheNearestOfAll) {
  std::mt19937_64 random(7);
  constexpr uint32_t kRows = 20;
  for (uint32_t shards : {1u, 2u, 3u, 5u}) {
    for (uint32_t k : {1u, 4u, 10u}) {
      std::vector<std::vector<uint64_t>> ids(shards);
      std::vector<std::vector<float>> dists(shards);
      std::vector<std::vector<std::pair<float, uint64_t>>> all(kRows);
      for (uint32_t s = 0; s < shards; ++s) {
        for (uint32_t row = 0; row < kRows; ++row) {
          // Each shard answers 0..k matches for the row (fewer when it holds few), padded.
          const uint32_t found = static_cast<uint32_t>(random() % (k + 1));
          std::vector<std::pair<float, uint64_t>> mine;
          for (uint32_t j = 0; j < found; ++j) {
            mine.push_back(
                {static_cast<float>(random() % 1000) / 10.0f, s * 100000 + row * 100 + j});
          }
          std::sort(mine.begin(), mine.end());
          for (uint32_t j = 0; j < k; ++j) {
            ids[s].push_back(j < found ? mine[j].second : engine::kMissingId);
            dists[s].push_back(j < found ? mine[j].first : engine::kMissingDistance);
          }
          all[row].insert(all[row].end(), mine.begin(), mine.end());
        }
      }
      std::vector<ShardAnswer> answers;
      for (uint32_t s = 0; s < shards; ++s) answers.push_back({ids[s], dists[s], k});
      std::vector<uint64_t> merged_ids;
      std::vector<float> merged_dists;
      MergeNearest(answers, kRows, k, &merged_ids, &merged_dists);
      ASSERT_EQ(merged_ids.size(), kRows * k);
      for (uint32_t row = 0; row < kRows; ++row) {
        std::stable_sort(all[row].begin(), all[row].end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (uint32_t j = 0; j < k; ++j) {
          const uint64_t at = uint64_t{row} * k + j;
          if (j < all[row].size()) {
            EXPECT_EQ(merged_dists[at], all[row][j].first) << shards << " " << k << " " << row;
          } else {
            EXPECT_EQ(merged_ids[at], engine::kMissingId);
            EXPECT_EQ(merged_dists[at], engine::kMissingDistance);
          }
        }
        // Distances ascend along the row.
        EXPECT_TRUE(
            std::is_sorted(merged_dists.begin() + row * k, merged_dists.begin() + (row + 1) * k));
      }
    }
  }
}

TEST(ShardMapTest, MergingIdPagesKeepsTheFirstLimitAndSaysWhetherMoreRemain) {
  bool more = false;
  EXPECT_THAT(MergeIds({{1, 4, 9}, {2, 3}, {}}, {false, false, false}, 4, &more),
              ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(more);  // 9 is left
  EXPECT_THAT(MergeIds({{1, 4}, {2, 3}}, {false, false}, 4, &more), ElementsAre(1, 2, 3, 4));
  EXPECT_FALSE(more);
  // A shard with ids beyond its page: more remain even when nothing beyond the page came back.
  EXPECT_THAT(MergeIds({{5, 7}, {2}}, {true, false}, 3, &more), ElementsAre(2, 5, 7));
  EXPECT_TRUE(more);
}

}  // namespace
}  // namespace luxdb::cluster
