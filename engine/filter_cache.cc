#include "engine/filter_cache.h"

#include <algorithm>

namespace luxdb::engine {
namespace {

// Misses remembered at most (then forgotten all at once): bounds the memory one-off filters
// can take.
constexpr size_t kMaxMissKeys = 1024;
// A filter is cached at its second miss.
constexpr uint32_t kMissesToCache = 2;

}  // namespace

std::shared_ptr<FilterCache::Entry> FilterCache::Find(const std::string& key,
                                                      const HnswGraph* graph, size_t key_count,
                                                      bool* build) {
  *build = false;
  MutexLock lock(&mu_);
  for (const std::shared_ptr<Entry>& entry : entries_) {
    if (entry->key != key) continue;
    const std::shared_ptr<const HnswGraph> of = entry->graph.lock();
    if (of.get() != graph || entry->key_count != key_count) break;
    entry->last_used.store(++clock_, std::memory_order_relaxed);
    return entry;
  }
  if (misses_.size() >= kMaxMissKeys) misses_.clear();
  uint32_t& misses = misses_[key];
  *build = ++misses >= kMissesToCache;
  return nullptr;
}

void FilterCache::Insert(std::shared_ptr<Entry> entry) {
  entry->last_used.store(++clock_, std::memory_order_relaxed);
  MutexLock lock(&mu_);
  const std::shared_ptr<const HnswGraph> graph = entry->graph.lock();
  std::erase_if(entries_, [&](const std::shared_ptr<Entry>& e) {
    return e->key == entry->key || e->graph.lock() != graph;
  });
  if (entries_.size() >= kMaxEntries) {
    entries_.erase(
        std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
          return a->last_used.load(std::memory_order_relaxed) <
                 b->last_used.load(std::memory_order_relaxed);
        }));
  }
  misses_.erase(entry->key);
  entries_.push_back(std::move(entry));
  size_ = entries_.size();
}

std::vector<std::shared_ptr<FilterCache::Entry>> FilterCache::EntriesFor(const HnswGraph* graph) {
  std::vector<std::shared_ptr<Entry>> out;
  MutexLock lock(&mu_);
  for (const std::shared_ptr<Entry>& entry : entries_) {
    if (entry->graph.lock().get() == graph) out.push_back(entry);
  }
  return out;
}

}  // namespace luxdb::engine
