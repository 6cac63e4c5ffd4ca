// The only translation unit that includes hnswlib (its header defines non-inline functions).
#include "engine/hnsw_graph.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <stdexcept>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/limits.h"
#include "engine/mutex.h"
#include "engine/resources.h"

namespace luxdb::engine {
namespace {

using hnswlib::tableint;

// What saveIndex writes as the entry point of an empty graph.
constexpr tableint kNoEntryPoint = static_cast<tableint>(-1);

// hnswlib's graph, with our own insertion and search so that searches may run while elements
// are inserted and marked deleted.
//
// Concurrency protocol (shared/hnswlib.md explains why stock hnswlib 0.6.2 is not safe):
// - An element's link lists (every level) are written only under its link_list_locks_ entry
//   (a new element holds its own for its whole insertion). Searches copy a list under the
//   same lock before following it, so they never see a list half rewritten by the pruning of
//   a full neighbour list.
// - An element's vector, label and level are written before it is linked anywhere and never
//   change afterwards: a replaced vector gets a new element (the old one becomes a tombstone),
//   so a search never reads a vector being overwritten.
// - The deleted mark (a byte of the element's level-0 header) is read and written atomically.
//   Marks are set only while no insertion runs (Index applies them between insertions), because
//   hnswlib's own construction search, which insertion uses, reads them plainly.
// - label_lookup_ and cur_element_count change under cur_element_count_guard_; the entry point
//   searches start from is published in entry_ (atomic) once the element is fully linked.
// - hnswlib's shared level generator is drawn under level_mu_.
// Resizing and saving need the graph to themselves (Index swaps in a resized copy instead).
//
// It also fixes an insertion that could read past an empty candidate list: hnswlib 0.6.2 links
// a new element, level by level, to the live elements its search finds; when the search at some
// level reaches no live element (everything reachable is deleted, or a damaged file's links
// lead nowhere) while the entry point is live, it hands an empty list to
// mutuallyConnectNewElement, which reads past it (fuzz_graph_file found it). InsertNew links
// the element the descent stands on at such a level instead.
class Graph : public hnswlib::HierarchicalNSW<float> {
 public:
  using hnswlib::HierarchicalNSW<float>::HierarchicalNSW;
  using Candidates = std::priority_queue<std::pair<float, tableint>,
                                         std::vector<std::pair<float, tableint>>, CompareByFirst>;

  // Inserts a new element for `label`, which names it at once. If the label names a live
  // element, that one is superseded: label listings leave it out, searches may still reach it
  // (Search keeps one result per label) until TombstoneSuperseded marks it deleted.
  void Insert(const float* vector, hnswlib::labeltype label) {
    tableint id = 0;
    int level = 0;
    {
      MutexLock level_lock(&level_mu_);
      level = getRandomLevel(mult_);
    }
    {
      std::lock_guard count_lock(cur_element_count_guard_);
      if (cur_element_count >= max_elements_) {
        throw std::runtime_error("The number of elements exceeds the specified limit");
      }
      id = static_cast<tableint>(cur_element_count++);
      // Header, vector, label and level before the element becomes countable or findable by
      // its label: a walk over the elements below the count (LiveLabelsAfter) and CopyVector
      // read them under this lock.
      std::memset(data_level0_memory_ + id * size_data_per_element_ + offsetLevel0_, 0,
                  size_data_per_element_);
      std::memcpy(getDataByInternalId(id), vector, data_size_);
      std::memcpy(getExternalLabeLp(id), &label, sizeof(label));
      element_levels_[id] = level;
      auto [it, inserted] = label_lookup_.try_emplace(label, id);
      if (!inserted) {
        const tableint old = std::exchange(it->second, id);
        if (!IsDeleted(old)) {
          superseded_[old].store(1, std::memory_order_release);
          superseded_pending_.fetch_add(1, std::memory_order_relaxed);
          MutexLock lock(&superseded_mu_);
          to_tombstone_.push_back(old);
        }
      }
    }
    InsertNew(id, level);
  }

  // Marks the elements superseded by replaces deleted. Call while no insertion runs.
  size_t TombstoneSuperseded() {
    std::vector<tableint> ids;
    {
      MutexLock lock(&superseded_mu_);
      ids.swap(to_tombstone_);
    }
    size_t marked = 0;
    for (tableint id : ids) marked += MarkDeletedElement(id);
    superseded_pending_.fetch_sub(ids.size(), std::memory_order_release);
    return marked;
  }

  // Live for label listings: neither deleted nor superseded.
  bool IsListed(tableint id) const {
    return !IsDeleted(id) && superseded_[id].load(std::memory_order_acquire) == 0;
  }

  // Marks the element of a live label deleted. False if the label is absent or deleted.
  bool MarkDeletedLabel(hnswlib::labeltype label) {
    tableint id = 0;
    {
      std::lock_guard count_lock(cur_element_count_guard_);
      auto it = label_lookup_.find(label);
      if (it == label_lookup_.end()) return false;
      id = it->second;
    }
    return MarkDeletedElement(id);
  }

  bool MarkDeletedElement(tableint id) {
    if (__atomic_fetch_or(DeletedByte(id), DELETE_MARK, __ATOMIC_RELEASE) & DELETE_MARK) {
      return false;
    }
    tombstones_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  bool IsDeleted(tableint id) const {
    return (__atomic_load_n(DeletedByte(id), __ATOMIC_ACQUIRE) & DELETE_MARK) != 0;
  }

  // The internal id of a label, if present.
  std::optional<tableint> Lookup(hnswlib::labeltype label) const {
    std::lock_guard count_lock(const_cast<std::mutex&>(cur_element_count_guard_));
    auto it = label_lookup_.find(label);
    if (it == label_lookup_.end()) return std::nullopt;
    return it->second;
  }

  size_t Count() const {
    std::lock_guard count_lock(const_cast<std::mutex&>(cur_element_count_guard_));
    return cur_element_count;
  }

  // Up to k nearest live elements, farthest on top; safe while elements are inserted and
  // marked deleted. With `filtered`, only elements that pass `allowed` (called with the
  // element) are results; the search still walks through the others.
  template <typename Allowed>
  Candidates SearchConcurrent(const float* query, size_t k, size_t breadth, bool filtered,
                              const Allowed& allowed, bool two_hop = false) const {
    const uint64_t entry = entry_.load(std::memory_order_acquire);
    if (entry == kNoEntry) return {};
    tableint current = static_cast<tableint>(entry);
    const int top_level = static_cast<int>(entry >> 32);
    std::vector<tableint> links(maxM0_ + 1);
    float current_distance = Distance(query, current);
    for (int level = top_level; level > 0; --level) {
      for (bool improved = true; improved;) {
        improved = false;
        const size_t size = CopyLinks(current, level, links.data());
        for (size_t i = 0; i < size; ++i) {
          const float d = Distance(query, links[i]);
          if (d < current_distance) {
            current_distance = d;
            current = links[i];
            improved = true;
          }
        }
      }
    }
    Candidates top = two_hop ? SearchLevel0TwoHop(current, query, std::max(breadth, k), allowed)
                             : SearchLevel0(current, query, std::max(breadth, k), links.data(),
                                            filtered, allowed);
    while (top.size() > k) top.pop();
    return top;
  }

  // Adds the live element `id` to `top` (farthest on top, at most k) if it is near enough.
  void Consider(const float* query, size_t k, tableint id, Candidates& top) const {
    if (IsDeleted(id)) return;
    const float d = Distance(query, id);
    if (top.size() < k) {
      top.emplace(d, id);
    } else if (d < top.top().first) {
      top.pop();
      top.emplace(d, id);
    }
  }

  // Prefetches the vector of element `id` (every cache line of it).
  void PrefetchVector(tableint id) const {
    const char* data = getDataByInternalId(id);
    for (size_t offset = 0; offset < data_size_; offset += 64) __builtin_prefetch(data + offset);
  }

  // The k nearest among `elements` that are live and pass `allowed`, by comparing the query
  // with each; farthest on top.
  template <typename Allowed>
  Candidates SearchExact(const float* query, size_t k, std::span<const tableint> elements,
                         const Allowed& allowed) const {
    constexpr size_t kAhead = 4;
    Candidates top;
    for (size_t i = 0; i < elements.size(); ++i) {
      if (i + kAhead < elements.size()) PrefetchVector(elements[i + kAhead]);
      if (allowed(elements[i])) Consider(query, k, elements[i], top);
    }
    return top;
  }

  // The k nearest live members of `set` (bit e of word e / 64 for element e); farthest on top.
  Candidates SearchSet(const float* query, size_t k, std::span<const uint64_t> set) const {
    Candidates top;
    const size_t count = std::min<size_t>(Count(), set.size() * 64);
    tableint pending[4];  // prefetched members not yet compared
    size_t queued = 0;
    for (size_t word = 0; word * 64 < count; ++word) {
      for (uint64_t bits = set[word]; bits != 0; bits &= bits - 1) {
        const tableint id = static_cast<tableint>(word * 64 + std::countr_zero(bits));
        if (id >= count) break;
        PrefetchVector(id);
        if (queued == 4) {
          Consider(query, k, pending[0], top);
          std::copy(pending + 1, pending + 4, pending);
          queued = 3;
        }
        pending[queued++] = id;
      }
    }
    for (size_t i = 0; i < queued; ++i) Consider(query, k, pending[i], top);
    return top;
  }

  // The elements of `labels` that are present, in the order given.
  std::vector<tableint> ElementsOf(std::span<const uint64_t> labels) const {
    std::vector<tableint> elements;
    elements.reserve(labels.size());
    std::lock_guard count_lock(const_cast<std::mutex&>(cur_element_count_guard_));
    for (uint64_t label : labels) {
      if (auto it = label_lookup_.find(label); it != label_lookup_.end()) {
        elements.push_back(it->second);
      }
    }
    return elements;
  }

  uint64_t tombstones() const { return tombstones_.load(std::memory_order_relaxed); }
  // Elements replaced but not yet marked (TombstoneSuperseded).
  uint64_t superseded_pending() const {
    return superseded_pending_.load(std::memory_order_acquire);
  }

  // After construction, loading or copying: publishes the entry point, counts the marks, and
  // keeps only the update locks hnswlib's in-place update would use (none: replaces insert new
  // elements), instead of the 65,536 (2.5 MiB) it allocates for every graph.
  void Prepare() {
    std::vector<std::mutex>(1).swap(link_list_update_locks_);
    superseded_ = std::make_unique<std::atomic<uint8_t>[]>(max_elements_);
    uint64_t marked = 0;
    for (size_t i = 0; i < cur_element_count; ++i) marked += IsDeleted(static_cast<tableint>(i));
    tombstones_ = marked;
    num_deleted_ = marked;
    PublishEntry();
  }

  // A copy with capacity `capacity` (>= the element count). Needs the graph to itself.
  std::unique_ptr<Graph> Copy(hnswlib::SpaceInterface<float>* space, size_t capacity) const {
    auto copy = std::make_unique<Graph>(space, capacity, M_, ef_construction_);
    copy->level_generator_ = level_generator_;
    copy->update_probability_generator_ = update_probability_generator_;
    std::memcpy(copy->data_level0_memory_, data_level0_memory_,
                cur_element_count * size_data_per_element_);
    copy->cur_element_count = cur_element_count;
    for (size_t i = 0; i < cur_element_count; ++i) {
      const int level = element_levels_[i];
      copy->element_levels_[i] = level;
      if (level > 0) {
        const size_t bytes = size_links_per_element_ * level;
        copy->linkLists_[i] = static_cast<char*>(std::malloc(bytes));
        if (copy->linkLists_[i] == nullptr) {
          copy->cur_element_count = i;  // the destructor frees the lists copied so far
          throw std::runtime_error("Not enough memory to copy the graph's link lists");
        }
        std::memcpy(copy->linkLists_[i], linkLists_[i], bytes);
      }
    }
    copy->label_lookup_ = label_lookup_;
    copy->enterpoint_node_ = enterpoint_node_;
    copy->maxlevel_ = maxlevel_;
    copy->Prepare();
    return copy;
  }

 private:
  static constexpr uint64_t kNoEntry = ~uint64_t{0};

  unsigned char* DeletedByte(tableint id) const {
    return reinterpret_cast<unsigned char*>(get_linklist0(id)) + 2;
  }

  float Distance(const void* vector, tableint id) const {
    return fstdistfunc_(vector, getDataByInternalId(id), dist_func_param_);
  }

  void PublishEntry() {
    entry_.store(enterpoint_node_ == kNoEntryPoint
                     ? kNoEntry
                     : (static_cast<uint64_t>(maxlevel_) << 32) | enterpoint_node_,
                 std::memory_order_release);
  }

  // Prefetches the level-0 list of `id` (count and links) and the lock CopyLinks takes for it.
  void PrefetchLinks(tableint id) const {
    const char* list = reinterpret_cast<const char*>(get_linklist0(id));
    for (size_t offset = 0; offset < size_links_level0_; offset += 64) {
      __builtin_prefetch(list + offset);
    }
    __builtin_prefetch(&link_list_locks_[id], 1);
  }

  // Copies the links of `id` at `level` into out (room for maxM0_) under the element's lock.
  size_t CopyLinks(tableint id, int level, tableint* out) const {
    // hnswlib's accessors are not const-correct; the lock and the list are only read here.
    std::lock_guard lock(const_cast<std::mutex&>(link_list_locks_[id]));
    hnswlib::linklistsizeint* list = level == 0 ? get_linklist0(id) : get_linklist(id, level);
    const size_t size = getListCount(list);
    std::memcpy(out, list + 1, size * sizeof(tableint));
    return size;
  }

  // hnswlib's searchBaseLayerST with a per-call breadth, copied link lists and atomic marks;
  // with `filtered`, results are the elements whose label passes `allowed` (hnswlib 0.7's
  // filter functor does the same: non-matching elements are walked through, not returned).
  template <typename Allowed>
  Candidates SearchLevel0(tableint entry, const float* query, size_t breadth, tableint* links,
                          bool filtered, const Allowed& allowed) const {
    hnswlib::VisitedList* visited_list = visited_list_pool_->getFreeVisitedList();
    hnswlib::vl_type* visited = visited_list->mass;
    const hnswlib::vl_type tag = visited_list->curV;
    // With elements that cannot be results, stop only once `breadth` results are found.
    const bool sparse = filtered || tombstones() != 0;
    auto result = [&](tableint id) { return !IsDeleted(id) && (!filtered || allowed(id)); };
    Candidates top;
    Candidates candidates;  // negated distances: nearest on top
    float lower_bound = std::numeric_limits<float>::max();
    const float entry_distance = Distance(query, entry);
    if (result(entry)) {
      top.emplace(entry_distance, entry);
      lower_bound = entry_distance;
    }
    candidates.emplace(-entry_distance, entry);
    visited[entry] = tag;
    while (!candidates.empty()) {
      const auto [negated, current] = candidates.top();
      if (-negated > lower_bound && (top.size() == breadth || !sparse)) break;
      candidates.pop();
      const size_t size = CopyLinks(current, 0, links);
      for (size_t j = 0; j < size; ++j) __builtin_prefetch(getDataByInternalId(links[j]));
      for (size_t j = 0; j < size; ++j) {
        const tableint candidate = links[j];
        if (visited[candidate] == tag) continue;
        visited[candidate] = tag;
        const float d = Distance(query, candidate);
        if (top.size() < breadth || lower_bound > d) {
          candidates.emplace(-d, candidate);
          if (result(candidate)) top.emplace(d, candidate);
          if (top.size() > breadth) top.pop();
          if (!top.empty()) lower_bound = top.top().first;
        }
      }
    }
    visited_list_pool_->releaseVisitedList(visited_list);
    return top;
  }

  // A filtered search for filters few elements pass (ACORN-1's expansion, Patel et al. 2024):
  // only elements that pass `allowed` are compared with the query and queued; a neighbour
  // that does not pass is not compared but looked through: its own neighbours that pass are
  // taken as candidates. So the search reads the vectors of passing elements only, and the
  // link lists of the others, instead of every vector on its way. As in ACORN-1, an
  // expansion stops looking through once it has met as many passing elements (visited or
  // not) as a level-0 list holds (maxM0_, 2M): more candidates per step than an unfiltered
  // search gets cost time and add little (luxdb-bench --filtered at 10 %: recall@10 0.997
  // without the stop, 0.974 with it, at ef 40; a larger ef buys the recall back).
  template <typename Allowed>
  Candidates SearchLevel0TwoHop(tableint entry, const float* query, size_t breadth,
                                const Allowed& allowed) const {
    hnswlib::VisitedList* visited_list = visited_list_pool_->getFreeVisitedList();
    hnswlib::vl_type* visited = visited_list->mass;
    const hnswlib::vl_type tag = visited_list->curV;
    std::vector<tableint> links(maxM0_ + 1), through(maxM0_ + 1), hops, found;
    hops.reserve(maxM0_ + 1);
    found.reserve(2 * maxM0_);
    Candidates top;
    Candidates candidates;  // negated distances: nearest on top
    float lower_bound = std::numeric_limits<float>::max();
    auto consider = [&](tableint id, float d) {
      if (top.size() < breadth || lower_bound > d) {
        candidates.emplace(-d, id);
        if (!IsDeleted(id) && allowed(id)) top.emplace(d, id);
        if (top.size() > breadth) top.pop();
        if (!top.empty()) lower_bound = top.top().first;
      }
    };
    visited[entry] = tag;
    consider(entry, Distance(query, entry));
    while (!candidates.empty()) {
      const auto [negated, current] = candidates.top();
      if (-negated > lower_bound && top.size() == breadth) break;
      candidates.pop();
      found.clear();
      hops.clear();
      size_t met = 0;  // passing elements met in this expansion, visited or not
      const size_t size = CopyLinks(current, 0, links.data());
      // First the neighbours: those that pass are found; the lists (and locks) of the others
      // are prefetched together, so their cache misses overlap instead of coming one by one.
      for (size_t j = 0; j < size; ++j) {
        const tableint neighbour = links[j];
        const bool passes = allowed(neighbour);
        met += passes;
        if (visited[neighbour] == tag) continue;
        visited[neighbour] = tag;
        if (passes) {
          found.push_back(neighbour);
        } else {
          hops.push_back(neighbour);
          PrefetchLinks(neighbour);
        }
      }
      for (tableint neighbour : hops) {
        if (met >= maxM0_) break;
        const size_t size2 = CopyLinks(neighbour, 0, through.data());
        for (size_t i = 0; i < size2; ++i) {
          const tableint next = through[i];
          // The set (a bit per element) is small and mostly says no: test it first.
          if (!allowed(next)) continue;
          ++met;
          if (visited[next] == tag) continue;
          visited[next] = tag;
          found.push_back(next);
        }
      }
      for (tableint id : found) __builtin_prefetch(getDataByInternalId(id));
      for (tableint id : found) consider(id, Distance(query, id));
    }
    visited_list_pool_->releaseVisitedList(visited_list);
    return top;
  }

  void InsertNew(tableint id, int level) {
    const void* vector = getDataByInternalId(id);
    // Held for the whole insertion, as hnswlib does: once linked on an upper level the element
    // is reachable, and another insertion must not add to its lower-level lists before it has
    // written them (mutuallyConnectNewElement requires them blank). A search reaching it then
    // waits for this one element, never for a batch.
    std::unique_lock element_lock(link_list_locks_[id]);
    std::unique_lock top_lock(global);  // kept while this element may become the entry point
    const int top_level = maxlevel_;
    const tableint entry = enterpoint_node_;  // read under `global`, as maxlevel_
    if (level <= top_level) top_lock.unlock();

    if (level > 0) {
      const size_t bytes = size_links_per_element_ * level + 1;
      linkLists_[id] = static_cast<char*>(std::malloc(bytes));
      if (linkLists_[id] == nullptr) {
        throw std::runtime_error("Not enough memory: addPoint failed to allocate linklist");
      }
      std::memset(linkLists_[id], 0, bytes);
    }

    if (entry == kNoEntryPoint) {  // the first element
      enterpoint_node_ = id;
      maxlevel_ = level;
      PublishEntry();
      return;
    }
    // Greedy descent through the levels above the new element's own.
    tableint current = entry;
    if (level < top_level) {
      std::vector<tableint> links(maxM_ + 1);
      float best = Distance(vector, current);
      for (int l = top_level; l > level; --l) {
        for (bool moved = true; moved;) {
          moved = false;
          const size_t size = CopyLinks(current, l, links.data());
          for (size_t i = 0; i < size; ++i) {
            const tableint candidate = links[i];
            if (candidate > max_elements_) throw std::runtime_error("cand error");
            const float d = Distance(vector, candidate);
            if (d < best) {
              best = d;
              current = candidate;
              moved = true;
            }
          }
        }
      }
    }
    // Link the element on each of its levels the graph has, top down.
    const bool entry_deleted = IsDeleted(entry);
    for (int l = std::min(level, top_level); l >= 0; --l) {
      Candidates candidates = searchBaseLayer(current, vector, l);
      if (entry_deleted) {
        candidates.emplace(Distance(vector, entry), entry);
        if (candidates.size() > ef_construction_) candidates.pop();
      }
      if (candidates.empty()) candidates.emplace(Distance(vector, current), current);
      current = mutuallyConnectNewElement(vector, id, candidates, l, false);
    }
    if (level > top_level) {
      enterpoint_node_ = id;
      maxlevel_ = level;
      PublishEntry();
    }
  }

  Mutex level_mu_;  // serialises draws from hnswlib's level generator
  // Per element: 1 once a replace made its label name a newer element (see Insert).
  std::unique_ptr<std::atomic<uint8_t>[]> superseded_;
  Mutex superseded_mu_;  // guards to_tombstone_; a leaf lock
  std::vector<tableint> to_tombstone_ ABSL_GUARDED_BY(superseded_mu_);
  std::atomic<uint64_t> tombstones_ = 0;
  std::atomic<uint64_t> superseded_pending_ = 0;
  // (top level << 32) | entry element, or kNoEntry for an empty graph.
  std::atomic<uint64_t> entry_ = kNoEntry;
};

// Deepest level a sane graph reaches: with M >= 2 the chance of level 64 is below 2^-64.
constexpr int kMaxLevel = 64;

std::unique_ptr<hnswlib::SpaceInterface<float>> MakeSpace(storage::Space space, uint32_t dim) {
  if (space == storage::Space::kL2) return std::make_unique<hnswlib::L2Space>(dim);
  return std::make_unique<hnswlib::InnerProductSpace>(dim);  // cosine = IP on unit vectors
}

// The header hnswlib's saveIndex writes, field by field in file order.
struct FileHeader {
  size_t offset_level0;
  size_t max_elements;
  size_t element_count;
  size_t size_data_per_element;
  size_t label_offset;
  size_t offset_data;
  int max_level;
  tableint entry_point;
  size_t max_m;
  size_t max_m0;
  size_t m;
  double mult;
  size_t ef_construction;
};

template <typename T>
bool ReadPod(std::istream& in, T* value) {
  in.read(reinterpret_cast<char*>(value), sizeof(T));
  return static_cast<bool>(in);
}

// CheckFile reads the link lists in chunks of this size.
constexpr uint64_t kCheckChunkBytes = 1 << 20;

absl::Status Corrupt(const std::string& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("hnswlib file '", path, "' is invalid: ", what));
}

// Checks everything loadIndex trusts before it is trusted: sizes consistent with `dim`,
// counts within the file, per-element link lists summing exactly to the file size.
absl::StatusOr<FileHeader> CheckFile(const std::string& path, uint32_t dim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open hnswlib file '", path, "'"));
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0, std::ios::beg);

  FileHeader h{};
  if (!ReadPod(in, &h.offset_level0) || !ReadPod(in, &h.max_elements) ||
      !ReadPod(in, &h.element_count) || !ReadPod(in, &h.size_data_per_element) ||
      !ReadPod(in, &h.label_offset) || !ReadPod(in, &h.offset_data) || !ReadPod(in, &h.max_level) ||
      !ReadPod(in, &h.entry_point) || !ReadPod(in, &h.max_m) || !ReadPod(in, &h.max_m0) ||
      !ReadPod(in, &h.m) || !ReadPod(in, &h.mult) || !ReadPod(in, &h.ef_construction)) {
    return Corrupt(path, absl::StrCat("header truncated (file has ", file_size, " bytes)"));
  }
  const uint64_t header_size = static_cast<uint64_t>(in.tellg());

  if (h.offset_level0 != 0) return Corrupt(path, "unsupported level-0 offset");
  if (h.m < 2 || h.m > 10000 || h.max_m != h.m || h.max_m0 != 2 * h.m) {
    return Corrupt(path, absl::StrCat("graph degree M=", h.m, " maxM=", h.max_m,
                                      " maxM0=", h.max_m0, " is not one hnswlib writes"));
  }
  const uint64_t links0 = h.max_m0 * sizeof(tableint) + sizeof(hnswlib::linklistsizeint);
  const uint64_t data_size = uint64_t{dim} * sizeof(float);
  if (h.offset_data != links0 || h.label_offset != links0 + data_size ||
      h.size_data_per_element != links0 + data_size + sizeof(hnswlib::labeltype)) {
    // The element layout encodes the dimension: this is the usual sign of a wrong --dim.
    const uint64_t file_dim =
        h.label_offset > links0 ? (h.label_offset - links0) / sizeof(float) : 0;
    return Corrupt(path, absl::StrCat("its vectors have dimension ", file_dim, ", expected ", dim));
  }
  if (h.element_count > h.max_elements || h.element_count > kMaxElements) {
    return Corrupt(path, absl::StrCat("element count ", h.element_count, " exceeds its capacity ",
                                      h.max_elements));
  }
  if (h.max_elements > kMaxElements) {
    return Corrupt(path, absl::StrCat("capacity ", h.max_elements, " exceeds ", kMaxElements));
  }
  if (h.element_count > (file_size - header_size) / h.size_data_per_element) {
    return Corrupt(path, absl::StrCat("it claims ", h.element_count, " elements but has only ",
                                      file_size, " bytes"));
  }
  const bool empty_shape = h.max_level == -1 && h.entry_point == kNoEntryPoint;
  if (h.element_count == 0
          ? !empty_shape
          : (h.entry_point >= h.element_count || h.max_level < 0 || h.max_level > kMaxLevel)) {
    return Corrupt(path, absl::StrCat("entry point ", h.entry_point, " or top level ", h.max_level,
                                      " is out of range for ", h.element_count, " elements"));
  }
  // The level multiplier drives every later insertion; hnswlib always writes 1/ln(M).
  const double expected_mult = 1.0 / std::log(static_cast<double>(h.m));
  if (!(std::abs(h.mult - expected_mult) <= 1e-9 * expected_mult)) {
    return Corrupt(path, absl::StrCat("level multiplier ", h.mult, " is not 1/ln(M) for M=", h.m));
  }
  // hnswlib writes ef_construction >= M; at 0 its in-place update reads the top of an empty
  // candidate queue (fuzz_graph_file found it).
  if (h.ef_construction == 0 || h.ef_construction > kMaxEfConstruction) {
    return Corrupt(path, absl::StrCat("ef_construction ", h.ef_construction, " is not from 1 to ",
                                      kMaxEfConstruction));
  }
  const uint64_t links_upper = h.max_m * sizeof(tableint) + sizeof(hnswlib::linklistsizeint);
  uint64_t offset = header_size + h.element_count * h.size_data_per_element;
  if (offset > file_size) {
    return Corrupt(path, absl::StrCat("truncated in the vectors: ", file_size, " bytes"));
  }
  // The upper-level link lists fill the rest of the file (a few bytes per element): read it in
  // large chunks rather than seeking per element, which costs a system call each.
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<char> chunk;
  uint64_t chunk_start = offset;  // file offset of chunk[0]
  auto bytes_at = [&](uint64_t at, uint64_t count) -> const char* {
    if (at + count > chunk_start + chunk.size()) {
      // Keep the unread tail, append the next megabyte.
      const uint64_t keep = chunk_start + chunk.size() - std::min(at, chunk_start + chunk.size());
      std::vector<char> next(keep + std::min<uint64_t>(kCheckChunkBytes, file_size - at - keep));
      std::copy(chunk.end() - static_cast<std::ptrdiff_t>(keep), chunk.end(), next.begin());
      in.seekg(static_cast<std::streamoff>(at + keep));
      if (!in.read(next.data() + keep, static_cast<std::streamsize>(next.size() - keep))) {
        return nullptr;
      }
      chunk = std::move(next);
      chunk_start = at;
      if (count > chunk.size()) return nullptr;
    }
    return chunk.data() + (at - chunk_start);
  };
  for (uint64_t i = 0; i < h.element_count; ++i) {
    uint32_t list_size = 0;
    const char* bytes =
        offset + sizeof(list_size) <= file_size ? bytes_at(offset, sizeof(list_size)) : nullptr;
    if (bytes == nullptr) {
      return Corrupt(path, absl::StrCat("truncated in the links of element ", i));
    }
    std::memcpy(&list_size, bytes, sizeof(list_size));
    if (list_size % links_upper != 0 || list_size / links_upper > uint64_t(h.max_level)) {
      return Corrupt(path, absl::StrCat("element ", i, " has a malformed link list"));
    }
    offset += sizeof(list_size) + list_size;
  }
  if (offset != file_size) {
    return Corrupt(path, absl::StrCat("expected ", offset, " bytes, found ", file_size));
  }
  return h;
}

}  // namespace

struct HnswGraph::Impl {
  // Declared before graph: hnswlib keeps a pointer to the space, which must outlive it.
  std::unique_ptr<hnswlib::SpaceInterface<float>> space;
  std::unique_ptr<Graph> graph;
};

HnswGraph::HnswGraph(std::unique_ptr<Impl> impl, uint32_t dim, storage::Space space)
    : impl_(std::move(impl)), dim_(dim), space_(space) {}
HnswGraph::~HnswGraph() = default;

absl::StatusOr<std::unique_ptr<HnswGraph>> HnswGraph::Create(const Params& params) {
  auto impl = std::make_unique<Impl>();
  impl->space = MakeSpace(params.space, params.dim);
  try {
    impl->graph = std::make_unique<Graph>(impl->space.get(), params.max_elements, params.m,
                                          params.ef_construction, params.random_seed);
    impl->graph->Prepare();
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a graph for ", params.max_elements, " elements: ", e.what()));
  }
  return std::unique_ptr<HnswGraph>(new HnswGraph(std::move(impl), params.dim, params.space));
}

absl::StatusOr<std::unique_ptr<HnswGraph>> HnswGraph::Load(const std::string& path,
                                                           storage::Space space, uint32_t dim,
                                                           uint64_t max_elements) {
  absl::StatusOr<FileHeader> header = CheckFile(path, dim);
  if (!header.ok()) return header.status();
  if (max_elements > kMaxElements) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_elements ", max_elements, " exceeds ", kMaxElements));
  }
  const uint64_t capacity = std::max<uint64_t>(
      max_elements != 0 ? max_elements : header->max_elements, header->element_count);
  const uint64_t needed = EstimateBytes(dim, static_cast<uint32_t>(header->m), capacity);
  if (const uint64_t available = AvailableMemoryBytes(); needed > available) {
    return absl::ResourceExhaustedError(
        absl::StrCat("hnswlib file '", path, "' with capacity ", capacity, " needs about ",
                     needed >> 20, " MiB; only ", available >> 20, " MiB of memory is available"));
  }
  auto impl = std::make_unique<Impl>();
  impl->space = MakeSpace(space, dim);
  impl->graph = std::make_unique<Graph>(impl->space.get());
  Graph& g = *impl->graph;
  // The loading constructor leaves these uninitialised; the destructor and loadIndex read them.
  g.num_deleted_ = 0;
  g.cur_element_count = 0;
  g.data_level0_memory_ = nullptr;
  g.linkLists_ = nullptr;
  g.visited_list_pool_ = nullptr;
  g.metric_distance_computations = 0;
  g.metric_hops = 0;
  try {
    // hnswlib keeps the file's capacity only when asked for less than its element count.
    g.loadIndex(path, impl->space.get(), capacity);
  } catch (const std::exception& e) {
    g.cur_element_count = 0;  // the destructor must not walk half-loaded link lists
    return absl::DataLossError(absl::StrCat("cannot load hnswlib file '", path, "': ", e.what()));
  }
  // Links are what a search follows blindly: every one must name an existing element.
  const tableint count = static_cast<tableint>(g.cur_element_count);
  for (tableint i = 0; i < count; ++i) {
    for (int level = 0; level <= g.element_levels_[i]; ++level) {
      hnswlib::linklistsizeint* list = g.get_linklist_at_level(i, level);
      const size_t size = g.getListCount(list);
      if (size > (level == 0 ? g.maxM0_ : g.maxM_)) {
        return Corrupt(path, absl::StrCat("element ", i, " has ", size, " links at level ", level));
      }
      const tableint* links = reinterpret_cast<const tableint*>(list + 1);
      for (size_t j = 0; j < size; ++j) {
        if (links[j] >= count) {
          return Corrupt(path, absl::StrCat("element ", i, " links to missing element ", links[j]));
        }
        // A search at `level` reads the level-`level` list of every element it reaches
        // (every element has level 0: no lookup needed there).
        if (level > 0 && g.element_levels_[links[j]] < level) {
          return Corrupt(
              path, absl::StrCat("element ", i, " links at level ", level, " to element ", links[j],
                                 ", which stops at level ", g.element_levels_[links[j]]));
        }
      }
    }
  }
  if (count > 0 && g.element_levels_[g.enterpoint_node_] != g.maxlevel_) {
    return Corrupt(path, "entry point is not on the top level");
  }
  // A label may appear more than once: the old elements of a replaced item stay as deleted
  // tombstones until a compaction. The label names its live element, else its last tombstone;
  // two live elements of one label mean a damaged file.
  g.label_lookup_.clear();
  for (tableint i = 0; i < count; ++i) {
    const hnswlib::labeltype label = g.getExternalLabel(i);
    auto [it, inserted] = g.label_lookup_.emplace(label, i);
    if (inserted) continue;
    if (!g.IsDeleted(i)) {
      if (!g.IsDeleted(it->second)) {
        return Corrupt(path, absl::StrCat("label ", label, " names two live elements (", it->second,
                                          " and ", i, ")"));
      }
      it->second = i;
    } else if (g.IsDeleted(it->second)) {
      it->second = i;
    }
  }
  g.Prepare();
  return std::unique_ptr<HnswGraph>(new HnswGraph(std::move(impl), dim, space));
}

absl::Status HnswGraph::Save(const std::string& path) const {
  try {
    impl_->graph->saveIndex(path);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot save graph to '", path, "': ", e.what()));
  }
  std::ifstream check(path, std::ios::binary | std::ios::ate);
  if (!check) return absl::InternalError(absl::StrCat("cannot write graph to '", path, "'"));
  return absl::OkStatus();
}

absl::Status HnswGraph::Add(const float* vector, uint64_t label) {
  try {
    impl_->graph->Insert(vector, label);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot add item ", label, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status HnswGraph::MarkDeleted(uint64_t label) {
  if (impl_->graph->MarkDeletedLabel(label) || Find(label) == Presence::kDeleted) {
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("cannot delete item ", label, ": it does not exist"));
}

bool HnswGraph::Tombstone(uint64_t label) { return impl_->graph->MarkDeletedLabel(label); }

size_t HnswGraph::TombstoneSuperseded() { return impl_->graph->TombstoneSuperseded(); }

absl::StatusOr<std::unique_ptr<HnswGraph>> HnswGraph::Copy(uint64_t capacity) const {
  const Graph& g = *impl_->graph;
  if (capacity < g.cur_element_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot copy a graph of ", g.cur_element_count, " elements into ", capacity));
  }
  auto impl = std::make_unique<Impl>();
  impl->space = MakeSpace(space_, dim_);
  try {
    impl->graph = g.Copy(impl->space.get(), capacity);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a graph for ", capacity, " elements: ", e.what()));
  }
  return std::unique_ptr<HnswGraph>(new HnswGraph(std::move(impl), dim_, space_));
}

HnswGraph::Presence HnswGraph::Find(uint64_t label) const {
  const Graph& g = *impl_->graph;
  const std::optional<tableint> id = g.Lookup(label);
  if (!id.has_value()) return Presence::kAbsent;
  return g.IsDeleted(*id) ? Presence::kDeleted : Presence::kLive;
}

namespace {

// Writes the heap's elements to ids/distances, nearest first, keeping one result per label: a
// label appears twice only when a search ran across a replace (its old element found before
// the mark, its new one after); the nearer is kept. Returns how many were written.
size_t Drain(const Graph& g, Graph::Candidates& top, uint64_t* ids, float* distances) {
  // The heap pops farthest first: fill from the back, then close the gaps left by duplicates.
  const size_t found = top.size();
  for (size_t i = found; i-- > 0;) {
    ids[i] = g.getExternalLabel(top.top().second);
    distances[i] = top.top().first;
    top.pop();
  }
  // A short list is searched; a long one (k up to kMaxK) is sorted by label once, so a large
  // k does not cost k² / 2 comparisons (k = 10,000: 50 million per query).
  constexpr size_t kLinearDedup = 64;
  std::vector<bool> later;  // for a long list: whether a nearer result has the same label
  if (found > kLinearDedup) {
    std::vector<std::pair<uint64_t, size_t>> by_label(found);
    for (size_t i = 0; i < found; ++i) by_label[i] = {ids[i], i};
    std::sort(by_label.begin(), by_label.end());
    later.assign(found, false);
    for (size_t i = 1; i < found; ++i) {
      if (by_label[i].first == by_label[i - 1].first) later[by_label[i].second] = true;
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < found; ++i) {
    const bool duplicate =
        found > kLinearDedup ? later[i] : std::find(ids, ids + kept, ids[i]) != ids + kept;
    if (duplicate) continue;
    ids[kept] = ids[i];
    distances[kept] = distances[i];
    ++kept;
  }
  return kept;
}

}  // namespace

size_t HnswGraph::Search(const float* query, size_t k, size_t ef, uint64_t* ids,
                         float* distances) const {
  const Graph& g = *impl_->graph;
  if (k == 0) return 0;
  Graph::Candidates top = g.SearchConcurrent(query, k, ef, false, [](uint64_t) { return true; });
  return Drain(g, top, ids, distances);
}

size_t HnswGraph::SearchFiltered(const float* query, size_t k, size_t ef, LabelFilter allowed,
                                 uint64_t* ids, float* distances) const {
  const Graph& g = *impl_->graph;
  if (k == 0) return 0;
  Graph::Candidates top = g.SearchConcurrent(
      query, k, ef, true, [&](tableint id) { return allowed(g.getExternalLabel(id)); });
  return Drain(g, top, ids, distances);
}

size_t HnswGraph::SearchFiltered(const float* query, size_t k, size_t ef, ElementSet set,
                                 uint64_t* ids, float* distances, bool two_hop) const {
  const Graph& g = *impl_->graph;
  if (k == 0) return 0;
  Graph::Candidates top = g.SearchConcurrent(
      query, k, ef, true,
      [&](tableint id) { return id / 64 < set.size() && ((set[id / 64] >> (id % 64)) & 1) != 0; },
      two_hop);
  return Drain(g, top, ids, distances);
}

size_t HnswGraph::SearchSet(const float* query, size_t k, ElementSet set, uint64_t* ids,
                            float* distances) const {
  const Graph& g = *impl_->graph;
  if (k == 0) return 0;
  Graph::Candidates top = g.SearchSet(query, k, set);
  return Drain(g, top, ids, distances);
}

std::vector<uint32_t> HnswGraph::ElementsOf(std::span<const uint64_t> labels) const {
  return impl_->graph->ElementsOf(labels);
}

std::optional<uint32_t> HnswGraph::ElementOf(uint64_t label) const {
  return impl_->graph->Lookup(label);
}

size_t HnswGraph::SearchElements(const float* query, size_t k, std::span<const uint32_t> elements,
                                 LabelFilter allowed, uint64_t* ids, float* distances) const {
  const Graph& g = *impl_->graph;
  if (k == 0) return 0;
  Graph::Candidates top = g.SearchExact(
      query, k, elements, [&](tableint id) { return allowed(g.getExternalLabel(id)); });
  return Drain(g, top, ids, distances);
}

size_t HnswGraph::SearchAll(const float* query, size_t k, LabelFilter allowed, uint64_t* ids,
                            float* distances) const {
  const Graph& g = *impl_->graph;
  if (k == 0) return 0;
  std::vector<tableint> elements(g.Count());
  for (size_t i = 0; i < elements.size(); ++i) elements[i] = static_cast<tableint>(i);
  Graph::Candidates top = g.SearchExact(
      query, k, elements, [&](tableint id) { return allowed(g.getExternalLabel(id)); });
  return Drain(g, top, ids, distances);
}

bool HnswGraph::CopyVector(uint64_t label, float* out) const {
  const Graph& g = *impl_->graph;
  const std::optional<tableint> id = g.Lookup(label);
  if (!id.has_value() || g.IsDeleted(*id)) return false;
  std::memcpy(out, g.getDataByInternalId(*id), size_t{dim_} * sizeof(float));
  return true;
}

std::vector<uint64_t> HnswGraph::LiveLabels() const {
  return LiveLabelsAfter(std::nullopt, std::numeric_limits<size_t>::max()).labels;
}

HnswGraph::LabelPage HnswGraph::LiveLabelsAfter(std::optional<uint64_t> after, size_t limit) const {
  const Graph& g = *impl_->graph;
  LabelPage page;
  std::vector<uint64_t>& labels = page.labels;
  const size_t count = g.Count();
  labels.reserve(std::min<uint64_t>(limit, count - std::min<uint64_t>(count, g.tombstones())));
  // The first `limit` labels found are kept as they come; from then on they are a max-heap,
  // whose top (the largest kept) gives way to any smaller label. In random order only about
  // limit * ln(live / limit) labels ever enter the heap.
  bool heap = false;
  uint64_t matched = 0;
  // Elements in internal order: a sequential walk through the level-0 memory, where each
  // element's label and deleted mark live, several times faster than the label map's nodes.
  // A live element's label is unique (Load checks it of a file; replaces mark the old first).
  for (size_t i = 0; i < count; ++i) {
    const tableint internal = static_cast<tableint>(i);
    if (!g.IsListed(internal)) continue;
    const uint64_t label = g.getExternalLabel(internal);
    if (after.has_value() && label <= *after) continue;
    ++matched;
    if (labels.size() < limit) {
      labels.push_back(label);
      continue;
    }
    if (limit == 0) continue;
    if (!heap) {
      std::make_heap(labels.begin(), labels.end());
      heap = true;
    }
    if (label < labels.front()) {
      std::pop_heap(labels.begin(), labels.end());
      labels.back() = label;
      std::push_heap(labels.begin(), labels.end());
    }
  }
  if (heap) {
    std::sort_heap(labels.begin(), labels.end());
  } else {
    std::sort(labels.begin(), labels.end());
  }
  page.left_out = matched - labels.size();
  return page;
}

std::vector<HnswGraph::LiveElement> HnswGraph::LiveElements() const {
  const Graph& g = *impl_->graph;
  const size_t count = g.Count();
  std::vector<LiveElement> live;
  live.reserve(count - std::min<uint64_t>(count, g.tombstones()));
  for (size_t i = 0; i < count; ++i) {
    const tableint internal = static_cast<tableint>(i);
    if (g.IsListed(internal)) live.push_back({g.getExternalLabel(internal), internal});
  }
  return live;
}

const float* HnswGraph::ElementVector(uint32_t element) const {
  return reinterpret_cast<const float*>(impl_->graph->getDataByInternalId(element));
}

void HnswGraph::ForEachElement(
    const std::function<void(uint64_t label, const float* vector, bool deleted)>& fn) const {
  const Graph& g = *impl_->graph;
  const size_t count = g.Count();
  for (size_t i = 0; i < count; ++i) {
    const tableint internal = static_cast<tableint>(i);
    fn(g.getExternalLabel(internal),
       reinterpret_cast<const float*>(g.getDataByInternalId(internal)), g.IsDeleted(internal));
  }
}

uint64_t HnswGraph::element_count() const { return impl_->graph->Count(); }
uint64_t HnswGraph::deleted_count() const { return impl_->graph->tombstones(); }
uint64_t HnswGraph::live_count() const {
  const Graph& g = *impl_->graph;
  // The count first, then the pending replaces, then the tombstones, so that whatever runs
  // between the reads can only make the answer smaller than the truth, never larger: a
  // replace counts its new element and its pending mark under one lock (Count takes it), so a
  // replace counted here has its mark counted too (reading the count last, a replace between
  // the reads counted twice: the load test saw 20,001 live items in a full index of 20,000);
  // TombstoneSuperseded adds a tombstone before it takes the pending mark away.
  const uint64_t count = g.Count();
  const uint64_t pending = g.superseded_pending();
  const uint64_t gone = pending + g.tombstones();
  return count - std::min(count, gone);
}
uint64_t HnswGraph::max_elements() const { return impl_->graph->max_elements_; }
uint32_t HnswGraph::m() const { return static_cast<uint32_t>(impl_->graph->M_); }
uint32_t HnswGraph::ef_construction() const {
  return static_cast<uint32_t>(impl_->graph->ef_construction_);
}

uint64_t HnswGraph::EstimateBytes(uint32_t dim, uint32_t m, uint64_t max_elements) {
  const uint64_t level0 = (2ull * m + 1) * sizeof(tableint) + uint64_t{dim} * sizeof(float) +
                          sizeof(hnswlib::labeltype);
  // Upper levels: an element reaches level l with probability M^-l, so on average it owns
  // 1/(M-1) upper link lists of M+1 ints.
  const uint64_t upper = (uint64_t{m} + 1) * sizeof(tableint) / std::max<uint32_t>(m - 1, 1);
  // Per-element link-list lock, level, slots in the visited lists of two concurrent searches,
  // link-list pointer and label map entry.
  constexpr uint64_t kBookkeeping =
      sizeof(std::mutex) + sizeof(int) + 2 * sizeof(unsigned short) + sizeof(void*) + 48;
  return max_elements * (level0 + upper + kBookkeeping);
}

}  // namespace luxdb::engine
