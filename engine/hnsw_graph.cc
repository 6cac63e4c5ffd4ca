// The only translation unit that includes hnswlib (its header defines non-inline functions).
#include "engine/hnsw_graph.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <queue>
#include <stdexcept>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/limits.h"
#include "engine/resources.h"

namespace luxdb::engine {
namespace {

using hnswlib::tableint;

// What saveIndex writes as the entry point of an empty graph.
constexpr tableint kNoEntryPoint = static_cast<tableint>(-1);

// hnswlib's graph, with an insertion that cannot read past an empty candidate list.
//
// hnswlib 0.6.2 links a new element, level by level, to the live elements its search finds.
// When the search at some level reaches no live element (everything reachable from where the
// descent stands is deleted, or a damaged file's links lead nowhere) while the entry point is
// live, it hands an empty list to mutuallyConnectNewElement, which reads past it and then
// walks from a garbage element id (fuzz_graph_file found it; fuzz/regressions). InsertNew
// follows the same algorithm with the same locks, and at such a level links the element the
// descent stands on, which exists on that level.
class Graph : public hnswlib::HierarchicalNSW<float> {
 public:
  using hnswlib::HierarchicalNSW<float>::HierarchicalNSW;

  void Insert(const float* vector, hnswlib::labeltype label) {
    tableint id = 0;
    {
      std::unique_lock count_lock(cur_element_count_guard_);
      if (label_lookup_.contains(label)) {
        count_lock.unlock();
        // One in-place update at a time: hnswlib's updatePoint draws from a generator shared
        // by all updates, and addPoint revives a deleted element by decrementing num_deleted_,
        // both without a lock (concurrent revivals lost counts). New elements still go in
        // concurrently.
        std::lock_guard update_lock(update_mu_);
        addPoint(vector, label);  // hnswlib's repair step checks for no candidates
        return;
      }
      if (cur_element_count >= max_elements_) {
        throw std::runtime_error("The number of elements exceeds the specified limit");
      }
      id = static_cast<tableint>(cur_element_count++);
      label_lookup_[label] = id;
    }
    InsertNew(vector, label, id);
  }

  // hnswlib 0.6.2 gives every graph max_update_element_locks (65,536) update locks, 2.5 MiB,
  // and takes them by internal id modulo that count. Internal ids stay below max_elements_, so
  // a graph of fewer elements only ever takes its first max_elements_ locks: it keeps those
  // alone (10,000 indexes of 10 items held 25 GiB of locks). Call with the graph to itself:
  // after construction, loadIndex and resizeIndex.
  void FitUpdateLocks() {
    const size_t count = std::clamp<size_t>(max_elements_, 1, max_update_element_locks);
    if (link_list_update_locks_.size() != count) {
      std::vector<std::mutex>(count).swap(link_list_update_locks_);
    }
  }

 private:
  std::mutex update_mu_;  // serialises in-place updates in Insert

  using Candidates = std::priority_queue<std::pair<float, tableint>,
                                         std::vector<std::pair<float, tableint>>, CompareByFirst>;

  float Distance(const void* vector, tableint id) const {
    return fstdistfunc_(vector, getDataByInternalId(id), dist_func_param_);
  }

  void InsertNew(const float* vector, hnswlib::labeltype label, tableint id) {
    std::unique_lock update_lock(link_list_update_locks_[id & (max_update_element_locks - 1)]);
    std::unique_lock element_lock(link_list_locks_[id]);
    const int level = getRandomLevel(mult_);
    element_levels_[id] = level;

    std::unique_lock top_lock(global);  // kept while this element may become the entry point
    const int top_level = maxlevel_;
    if (level <= top_level) top_lock.unlock();
    const tableint entry = enterpoint_node_;

    std::memset(data_level0_memory_ + id * size_data_per_element_ + offsetLevel0_, 0,
                size_data_per_element_);
    std::memcpy(getExternalLabeLp(id), &label, sizeof(label));
    std::memcpy(getDataByInternalId(id), vector, data_size_);
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
      return;
    }
    // Greedy descent through the levels above the new element's own.
    tableint current = entry;
    if (level < top_level) {
      float best = Distance(vector, current);
      for (int l = top_level; l > level; --l) {
        for (bool moved = true; moved;) {
          moved = false;
          std::unique_lock lock(link_list_locks_[current]);
          unsigned int* list = get_linklist(current, l);
          const int size = getListCount(list);
          const tableint* neighbours = reinterpret_cast<const tableint*>(list + 1);
          for (int i = 0; i < size; ++i) {
            const tableint candidate = neighbours[i];
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
    const bool entry_deleted = isMarkedDeleted(entry);
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
    }
  }
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

HnswGraph::HnswGraph(std::unique_ptr<Impl> impl, uint32_t dim)
    : impl_(std::move(impl)), dim_(dim) {}
HnswGraph::~HnswGraph() = default;

absl::StatusOr<std::unique_ptr<HnswGraph>> HnswGraph::Create(const Params& params) {
  auto impl = std::make_unique<Impl>();
  impl->space = MakeSpace(params.space, params.dim);
  try {
    impl->graph = std::make_unique<Graph>(impl->space.get(), params.max_elements, params.m,
                                          params.ef_construction, params.random_seed);
    impl->graph->FitUpdateLocks();
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a graph for ", params.max_elements, " elements: ", e.what()));
  }
  return std::unique_ptr<HnswGraph>(new HnswGraph(std::move(impl), params.dim));
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
    g.FitUpdateLocks();
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
  if (g.label_lookup_.size() != count) {
    return Corrupt(
        path, absl::StrCat(count - g.label_lookup_.size(), " labels are stored more than once"));
  }
  return std::unique_ptr<HnswGraph>(new HnswGraph(std::move(impl), dim));
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
  try {
    impl_->graph->markDelete(label);
  } catch (const std::exception& e) {
    return absl::NotFoundError(absl::StrCat("cannot delete item ", label, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status HnswGraph::Resize(uint64_t new_max_elements) {
  try {
    impl_->graph->resizeIndex(new_max_elements);
    impl_->graph->FitUpdateLocks();
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot resize to ", new_max_elements, " elements: ", e.what()));
  }
  return absl::OkStatus();
}

HnswGraph::Presence HnswGraph::Find(uint64_t label) const {
  Graph& g = *impl_->graph;
  hnswlib::tableint id = 0;
  {
    // Insertions add to the label map under this lock (hnswlib's addPoint and Graph::Insert).
    std::lock_guard lock(g.cur_element_count_guard_);
    auto it = g.label_lookup_.find(label);
    if (it == g.label_lookup_.end()) return Presence::kAbsent;
    id = it->second;
  }
  // The deleted mark is a byte of its own in the element's header, which only a change to this
  // label writes.
  return g.isMarkedDeleted(id) ? Presence::kDeleted : Presence::kLive;
}

size_t HnswGraph::Search(const float* query, size_t k, size_t ef, uint64_t* ids,
                         float* distances) const {
  const Graph& g = *impl_->graph;
  if (g.cur_element_count == 0 || k == 0) return 0;
  // Greedy descent through the upper levels, as hnswlib's searchKnn does, but without its
  // shared counters and with ef passed in rather than read from the shared ef_ field.
  tableint current = g.enterpoint_node_;
  float current_distance =
      g.fstdistfunc_(query, g.getDataByInternalId(current), g.dist_func_param_);
  for (int level = g.maxlevel_; level > 0; --level) {
    bool improved = true;
    while (improved) {
      improved = false;
      hnswlib::linklistsizeint* list = g.get_linklist(current, level);
      const size_t size = g.getListCount(list);
      const tableint* links = reinterpret_cast<const tableint*>(list + 1);
      for (size_t i = 0; i < size; ++i) {
        const float d = g.fstdistfunc_(query, g.getDataByInternalId(links[i]), g.dist_func_param_);
        if (d < current_distance) {
          current_distance = d;
          current = links[i];
          improved = true;
        }
      }
    }
  }
  const size_t breadth = std::max(ef, k);
  auto top = g.num_deleted_ ? g.searchBaseLayerST<true, false>(current, query, breadth)
                            : g.searchBaseLayerST<false, false>(current, query, breadth);
  while (top.size() > k) top.pop();
  const size_t found = top.size();
  for (size_t i = found; i-- > 0;) {  // the heap pops farthest first
    ids[i] = g.getExternalLabel(top.top().second);
    distances[i] = top.top().first;
    top.pop();
  }
  return found;
}

bool HnswGraph::CopyVector(uint64_t label, float* out) const {
  const Graph& g = *impl_->graph;
  auto it = g.label_lookup_.find(label);
  if (it == g.label_lookup_.end() || g.isMarkedDeleted(it->second)) return false;
  std::memcpy(out, g.getDataByInternalId(it->second), size_t{dim_} * sizeof(float));
  return true;
}

std::vector<uint64_t> HnswGraph::LiveLabels() const {
  return LiveLabelsAfter(std::nullopt, std::numeric_limits<size_t>::max()).labels;
}

HnswGraph::LabelPage HnswGraph::LiveLabelsAfter(std::optional<uint64_t> after, size_t limit) const {
  const Graph& g = *impl_->graph;
  LabelPage page;
  std::vector<uint64_t>& labels = page.labels;
  const size_t count = g.cur_element_count;
  labels.reserve(std::min(limit, count - std::min(count, g.num_deleted_)));
  // The first `limit` labels found are kept as they come; from then on they are a max-heap,
  // whose top (the largest kept) gives way to any smaller label. In random order only about
  // limit * ln(live / limit) labels ever enter the heap.
  bool heap = false;
  uint64_t matched = 0;
  // Elements in internal order: a sequential walk through the level-0 memory, where each
  // element's label and deleted mark live, several times faster than the label map's nodes.
  // Every internal id below the count holds a distinct label (Load checks it of a file).
  for (size_t i = 0; i < count; ++i) {
    const tableint internal = static_cast<tableint>(i);
    if (g.isMarkedDeleted(internal)) continue;
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

void HnswGraph::ForEachElement(
    const std::function<void(uint64_t label, const float* vector, bool deleted)>& fn) const {
  const Graph& g = *impl_->graph;
  for (tableint i = 0; i < g.cur_element_count; ++i) {
    fn(g.getExternalLabel(i), reinterpret_cast<const float*>(g.getDataByInternalId(i)),
       g.isMarkedDeleted(i));
  }
}

uint64_t HnswGraph::element_count() const { return impl_->graph->cur_element_count; }
uint64_t HnswGraph::deleted_count() const { return impl_->graph->num_deleted_; }
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
  // Per-element locks (link list and update), level, visited-list slot, link-list pointer and
  // label map entry.
  constexpr uint64_t kBookkeeping =
      2 * sizeof(std::mutex) + sizeof(int) + sizeof(unsigned short) + sizeof(void*) + 48;
  return max_elements * (level0 + upper + kBookkeeping);
}

}  // namespace luxdb::engine
