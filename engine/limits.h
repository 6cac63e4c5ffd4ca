// Every limit and default of the engine, in one place. Requests are checked against these
// before anything is allocated for them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace luxdb::engine {

// Index names: 1..kMaxNameBytes bytes of UTF-8 letters, digits, '-', '_' and '.'.
inline constexpr size_t kMaxNameBytes = 255;
// Vector dimension.
inline constexpr uint32_t kMaxDimension = 65536;
// Neighbours per query. A k above the live count is allowed; missing slots are padded.
inline constexpr uint32_t kMaxK = 10000;
// Cluster mode: shards of an index, replicas of a shard (CreateIndexRequest).
inline constexpr uint32_t kMaxShards = 1024;
inline constexpr uint32_t kMaxReplicas = 64;
// Search breadth, per index (SetEf) and per query.
inline constexpr uint32_t kMaxEf = 100000;
// hnswlib graph degree. Above this the graph's memory explodes without helping recall.
inline constexpr uint32_t kMaxM = 2048;
inline constexpr uint32_t kMaxEfConstruction = 100000;
// hnswlib numbers elements with 32-bit internal ids.
inline constexpr uint64_t kMaxElements = std::numeric_limits<uint32_t>::max() - 1;
// Ids in one page of a paged id listing (GetIds with limit / start_after): at most 100 MB of
// varints, and as much memory again while the page is selected. Every page scans the whole
// index, so pages far smaller than this make listing a large index quadratic.
inline constexpr uint32_t kMaxIdsPerPage = 10'000'000;

// Elements a graph has room for, given an index's max_elements (its limit on live items): a
// quarter more, so that replaces and deletes, which leave tombstones until a compaction, do
// not force a compaction at every write of a full index.
inline constexpr uint64_t GraphCapacity(uint64_t max_elements) {
  const uint64_t slack = max_elements / 4 > 16 ? max_elements / 4 : 16;
  return max_elements > kMaxElements - slack ? kMaxElements : max_elements + slack;
}

inline constexpr uint32_t kDefaultM = 16;
inline constexpr uint32_t kDefaultEfConstruction = 200;
inline constexpr uint64_t kDefaultRandomSeed = 100;
// hnswlib's own default search breadth.
inline constexpr uint32_t kDefaultEf = 10;

// Query result padding where a row has fewer than k results.
inline constexpr uint64_t kMissingId = std::numeric_limits<uint64_t>::max();
inline constexpr float kMissingDistance = std::numeric_limits<float>::infinity();

// When a call must stop: queries stop between query vectors, writes that have not been
// stored yet are refused (a write once stored is always completed). kNoDeadline: never.
using Deadline = std::chrono::steady_clock::time_point;
inline constexpr Deadline kNoDeadline = Deadline::max();

}  // namespace luxdb::engine
