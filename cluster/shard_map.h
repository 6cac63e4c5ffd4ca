// The pure parts of cluster mode (README "Cluster mode"): which shard an id belongs to, where
// a new index's shards and replicas go, and how per-shard answers become one answer. No I/O,
// no locks: cluster/cluster.h and server/cluster_service.h use these, tests/shard_map_test.cc
// checks them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace luxdb::cluster {

// The shard of `id` in an index of `shards` shards: SplitMix64(id) % shards, where SplitMix64
// is the finaliser of Steele, Lea and Flood's SplittableRandom (x += 0x9e3779b97f4a7c15; then
// two xor-shift-multiply rounds with 0xbf58476d1ce4e5b9 and 0x94d049bb133111eb). Fixed: a
// stored index depends on it. Consecutive ids spread evenly.
uint64_t SplitMix64(uint64_t x);
inline uint32_t ShardOf(uint64_t id, uint32_t shards) {
  return static_cast<uint32_t>(SplitMix64(id) % shards);
}

// The nodes of each shard, replicas[s][0] first: `replicas` distinct nodes per shard, spread so
// that every node holds as many shard replicas as any other, plus or minus one (the first
// replica of shard s goes to node (offset + s) % n, the others to the nodes after it).
// `load` counts what each node already holds (same order as `nodes`, may be empty); nodes
// holding fewer come first. FAILED_PRECONDITION naming both numbers when fewer nodes than
// `replicas` are live.
absl::StatusOr<std::vector<std::vector<std::string>>> PlaceShards(
    const std::vector<std::string>& nodes, const std::vector<uint64_t>& load, uint32_t shards,
    uint32_t replicas);

// The local name of shard `shard` of cluster index `name` on the nodes that hold it:
// "<name>.shard-<shard>". In cluster mode a node's catalog holds only shards, and the suffix,
// read from the right, names one cluster index and shard, so two never share a local name.
// kMaxShardSuffixBytes is what a cluster index's name gives up of the engine's name limit.
inline constexpr size_t kMaxShardSuffixBytes = 16;  // ".shard-" + up to 9 digits
std::string ShardIndexName(const std::string& name, uint32_t shard);
// The cluster index and shard a local name names; false if it is not a shard's name.
bool ParseShardIndexName(const std::string& local, std::string* name, uint32_t* shard);

// One shard's answer to a query of `rows` rows: ids and distances, `k` per row (padded with
// kMissingId / +inf).
struct ShardAnswer {
  std::span<const uint64_t> ids;
  std::span<const float> distances;
  uint32_t k = 0;
};
// The `k` nearest of every row over all shards' answers, nearest first, padded with
// kMissingId / +inf like a single server's answer. Ties keep the lower shard first.
void MergeNearest(const std::vector<ShardAnswer>& answers, uint32_t rows, uint32_t k,
                  std::vector<uint64_t>* ids, std::vector<float>* distances);

// The ascending ids after `start_after` of every shard (each ascending, each at most `limit`
// long, `more[s]` if shard s has ids beyond its list), merged: the first `limit`, and whether
// any id is left beyond them (then the caller answers next_start_after = the last id).
std::vector<uint64_t> MergeIds(const std::vector<std::vector<uint64_t>>& shard_ids,
                               const std::vector<bool>& more, uint32_t limit, bool* more_left);

}  // namespace luxdb::cluster
