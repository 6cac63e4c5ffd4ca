// FilterCache: for the filters an index is queried with again and again (a tenant, a type of
// document), the set of its graph's elements that match, as a bitset, kept up to date by the
// writes that follow instead of being worked out again for every call (Elasticsearch caches
// filter bitsets the same way). With it a filtered query tests a bit per element instead of
// looking up the item's attributes, and an exact scan walks the set bits in element order
// instead of gathering ids and looking up their elements.
//
// A filter is cached once it has missed twice (a filter used once is not worth a pass over its
// matches). At most kMaxEntries filters per index, least recently used first out; an entry
// is for one graph (a compaction or resize swaps in another and the entries of the old one
// are dropped) and for the attribute keys known when it was compiled (an entry whose filter
// names a key added since is rebuilt).
//
// Thread safety: the entry list and the miss counts are guarded by the cache's own lock, a
// leaf. An entry's bits and count change only under its index's attribute lock held
// exclusively (Index, when a write changes an item), and are read under it held shared.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/attributes.h"
#include "engine/hnsw_graph.h"
#include "engine/mutex.h"

namespace luxdb::engine {

class FilterCache {
 public:
  static constexpr size_t kMaxEntries = 16;
  // Graphs whose bitset would be larger are not cached (8 MiB: 67 million elements), so the
  // cache of one index holds at most 128 MiB.
  static constexpr uint64_t kMaxEntryBytes = uint64_t{8} << 20;

  struct Entry {
    std::string key;  // FilterKey of the filter
    std::shared_ptr<const AttributeIndex::Compiled> compiled;
    std::weak_ptr<const HnswGraph> graph;  // the graph whose elements the bits stand for
    size_t key_count = 0;                  // AttributeIndex::key_count() when compiled
    std::vector<uint64_t> bits;            // bit e: element e matches (live or not)
    uint64_t count = 0;                    // bits set
    std::atomic<uint64_t> last_used = 0;

    void Set(uint32_t element, bool member) {
      uint64_t& word = bits[element / 64];
      const uint64_t bit = uint64_t{1} << (element % 64);
      if (((word & bit) != 0) == member) return;
      word ^= bit;
      count += member ? 1 : uint64_t(-1);
    }
  };

  // The entry of `key` for `graph`, if cached and compiled with `key_count` keys; otherwise
  // null, and *build tells whether this filter has now missed often enough to be cached.
  std::shared_ptr<Entry> Find(const std::string& key, const HnswGraph* graph, size_t key_count,
                              bool* build) ABSL_LOCKS_EXCLUDED(mu_);
  // Adds a built entry, dropping entries of other graphs and the least recently used.
  void Insert(std::shared_ptr<Entry> entry) ABSL_LOCKS_EXCLUDED(mu_);
  // The entries for `graph` (for writes to update).
  std::vector<std::shared_ptr<Entry>> EntriesFor(const HnswGraph* graph) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether any entry is cached (a cheap check before a write looks for entries to update).
  bool empty() const { return size_.load(std::memory_order_relaxed) == 0; }

 private:
  Mutex mu_;  // guards entries_ and misses_; a leaf
  std::vector<std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint32_t> misses_ ABSL_GUARDED_BY(mu_);
  std::atomic<size_t> size_ = 0;
  std::atomic<uint64_t> clock_ = 0;  // orders last_used
};

}  // namespace luxdb::engine
