#include "cluster/shard_map.h"

#include <algorithm>
#include <numeric>
#include <queue>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/limits.h"

namespace luxdb::cluster {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

absl::StatusOr<std::vector<std::vector<std::string>>> PlaceShards(
    const std::vector<std::string>& nodes, const std::vector<uint64_t>& load, uint32_t shards,
    uint32_t replicas) {
  if (replicas == 0 || shards == 0) {
    return absl::InvalidArgumentError("shards and replicas must be at least 1");
  }
  if (nodes.size() < replicas) {
    return absl::FailedPreconditionError(absl::StrCat(
        replicas, " replicas need as many live nodes; the cluster has ", nodes.size()));
  }
  // Least loaded first (then by name, so that every node computes the same order).
  std::vector<size_t> order(nodes.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const uint64_t la = a < load.size() ? load[a] : 0;
    const uint64_t lb = b < load.size() ? load[b] : 0;
    return std::tie(la, nodes[a]) < std::tie(lb, nodes[b]);
  });
  std::vector<std::vector<std::string>> placed(shards);
  for (uint32_t s = 0; s < shards; ++s) {
    for (uint32_t r = 0; r < replicas; ++r) {
      // Shard s's replicas are `replicas` consecutive nodes starting at s * replicas: every node
      // gets a replica before any gets a second, and a shard's replicas are distinct.
      placed[s].push_back(nodes[order[(uint64_t{s} * replicas + r) % order.size()]]);
    }
  }
  return placed;
}

std::string ShardIndexName(const std::string& name, uint32_t shard) {
  return absl::StrCat(name, ".shard-", shard);
}

bool ParseShardIndexName(const std::string& local, std::string* name, uint32_t* shard) {
  constexpr absl::string_view kSuffix = ".shard-";
  const size_t at = absl::string_view(local).rfind(kSuffix);
  if (at == std::string::npos || at == 0) return false;
  const absl::string_view digits = absl::string_view(local).substr(at + kSuffix.size());
  if (digits.empty() || digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      (digits.size() > 1 && digits[0] == '0') || !absl::SimpleAtoi(digits, shard)) {
    return false;
  }
  *name = local.substr(0, at);
  return true;
}

void MergeNearest(const std::vector<ShardAnswer>& answers, uint32_t rows, uint32_t k,
                  std::vector<uint64_t>* ids, std::vector<float>* distances) {
  ids->assign(uint64_t{rows} * k, engine::kMissingId);
  distances->assign(uint64_t{rows} * k, engine::kMissingDistance);
  // Per row: a k-way merge of the shards' sorted rows.
  struct Head {
    float distance;
    uint32_t shard;
    uint32_t pos;
  };
  auto later = [](const Head& a, const Head& b) {
    return std::tie(a.distance, a.shard) > std::tie(b.distance, b.shard);
  };
  std::vector<Head> heap;
  for (uint32_t row = 0; row < rows; ++row) {
    heap.clear();
    for (uint32_t s = 0; s < answers.size(); ++s) {
      const ShardAnswer& a = answers[s];
      const uint64_t at = uint64_t{row} * a.k;
      if (a.k > 0 && a.ids[at] != engine::kMissingId) heap.push_back({a.distances[at], s, 0});
    }
    std::make_heap(heap.begin(), heap.end(), later);
    for (uint32_t out = 0; out < k && !heap.empty(); ++out) {
      std::pop_heap(heap.begin(), heap.end(), later);
      Head head = heap.back();
      heap.pop_back();
      const ShardAnswer& a = answers[head.shard];
      const uint64_t at = uint64_t{row} * a.k + head.pos;
      (*ids)[uint64_t{row} * k + out] = a.ids[at];
      (*distances)[uint64_t{row} * k + out] = a.distances[at];
      if (++head.pos < a.k && a.ids[at + 1] != engine::kMissingId) {
        head.distance = a.distances[at + 1];
        heap.push_back(head);
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }
}

std::vector<uint64_t> MergeIds(const std::vector<std::vector<uint64_t>>& shard_ids,
                               const std::vector<bool>& more, uint32_t limit, bool* more_left) {
  std::vector<uint64_t> all;
  for (const std::vector<uint64_t>& ids : shard_ids) all.insert(all.end(), ids.begin(), ids.end());
  std::sort(all.begin(), all.end());
  *more_left = all.size() > limit;
  if (all.size() > limit) all.resize(limit);
  // A shard's ids beyond its list are above its last one, so above every merged id.
  for (size_t s = 0; s < shard_ids.size() && !*more_left; ++s) {
    if (s < more.size() && more[s]) *more_left = true;
  }
  return all;
}

}  // namespace luxdb::cluster
