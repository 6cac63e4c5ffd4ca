// HnswGraph: the one place that touches hnswlib. Everything else in LuxDB sees this interface.
//
// Thread safety (stock hnswlib 0.6.2 is not safe for this; see shared/hnswlib.md and the
// protocol in hnsw_graph.cc):
// - Readers: Search, Find, CopyVector, LiveLabels, LiveLabelsAfter, LiveElements,
//   ElementVector and the counters may run at any time, concurrently with each other and with
//   Add and MarkDeleted.
// - Add may run concurrently with other Adds of distinct labels once the graph holds an
//   element (the first must be added alone).
// - MarkDeleted may run concurrently with readers and other MarkDeleted calls, but not with
//   Add (hnswlib's construction search reads the marks plainly).
// - Save, Copy and ForEachElement need the graph to themselves among writers (readers may go
//   on). Nothing ever moves or reallocates a graph: a larger one is a Copy.
// A vector, once inserted, never changes: replacing an item is MarkDeleted of its element then
// Add of a new one, and the old element stays, as a tombstone, until the graph is rebuilt.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/index_config.h"

namespace luxdb::engine {

class HnswGraph {
 public:
  struct Params {
    storage::Space space = storage::Space::kL2;
    uint32_t dim = 0;
    uint64_t max_elements = 0;
    uint32_t m = 0;
    uint32_t ef_construction = 0;
    uint64_t random_seed = 0;
  };

  // Allocates an empty graph. RESOURCE_EXHAUSTED if the allocation fails.
  static absl::StatusOr<std::unique_ptr<HnswGraph>> Create(const Params& params);

  // Loads a file written by hnswlib's saveIndex (C++ or Python) after checking that its
  // header, sizes, element count, levels and every link are consistent with `dim`: a crafted
  // or truncated file yields DATA_LOSS naming what is wrong, never a crash. `max_elements` of
  // 0 keeps the file's capacity; a larger one grows it.
  static absl::StatusOr<std::unique_ptr<HnswGraph>> Load(const std::string& path,
                                                         storage::Space space, uint32_t dim,
                                                         uint64_t max_elements);

  ~HnswGraph();
  HnswGraph(const HnswGraph&) = delete;
  HnswGraph& operator=(const HnswGraph&) = delete;

  // Writes the graph in hnswlib's file format.
  absl::Status Save(const std::string& path) const;

  // Inserts `vector` (dim floats) as a new element for `label`, which names it at once
  // (Find, CopyVector). A live label is replaced: its old element is left out of label
  // listings at once, and searches may still reach it (one result per label, the nearer)
  // until TombstoneSuperseded marks it deleted. Capacity (element_count() < max_elements())
  // must have been checked by the caller.
  absl::Status Add(const float* vector, uint64_t label);
  // Marks deleted the old elements of the labels Add replaced; returns how many. Call while no
  // Add runs (as MarkDeleted).
  size_t TombstoneSuperseded();
  // Marks the element of a label deleted (a tombstone). NOT_FOUND if the label is absent; OK
  // if it is deleted already.
  absl::Status MarkDeleted(uint64_t label);
  // As MarkDeleted, without building a status: true if this call marked a live element.
  bool Tombstone(uint64_t label);
  // A copy of this graph with capacity `capacity` (>= element_count()).
  absl::StatusOr<std::unique_ptr<HnswGraph>> Copy(uint64_t capacity) const;

  enum class Presence { kAbsent, kLive, kDeleted };
  Presence Find(uint64_t label) const;

  // Writes the up to k nearest live elements to ids/distances, nearest first, searching with
  // breadth max(ef, k). Returns how many were written.
  size_t Search(const float* query, size_t k, size_t ef, uint64_t* ids, float* distances) const;

  // Filtered searches. `allowed` is called from the searching thread with labels of live
  // elements; only those it passes are results.
  using LabelFilter = absl::FunctionRef<bool(uint64_t label)>;
  // As Search, but the results are the nearest live elements that pass `allowed`: the graph is
  // walked through the others as usual. It keeps walking until it has max(ef, k) results, so
  // when few elements pass it may visit the whole graph (the caller plans for that).
  size_t SearchFiltered(const float* query, size_t k, size_t ef, LabelFilter allowed, uint64_t* ids,
                        float* distances) const;
  // The elements of the present labels among `labels` (live, deleted or superseded), for
  // SearchElements; labels absent from the graph are left out.
  std::vector<uint32_t> ElementsOf(std::span<const uint64_t> labels) const;
  // The element a label names (its live one, else its last tombstone), if present.
  std::optional<uint32_t> ElementOf(uint64_t label) const;
  // Exact: the k nearest of `elements` that are live and pass `allowed`, comparing the query
  // with each of them. Returns how many were written, as Search.
  size_t SearchElements(const float* query, size_t k, std::span<const uint32_t> elements,
                        LabelFilter allowed, uint64_t* ids, float* distances) const;
  // Exact over every live element that passes `allowed`.
  size_t SearchAll(const float* query, size_t k, LabelFilter allowed, uint64_t* ids,
                   float* distances) const;
  // A set of this graph's elements: bit e % 64 of word e / 64 stands for element e (elements
  // past the span are outside it). Testing it costs a few instructions, a LabelFilter a call.
  using ElementSet = std::span<const uint64_t>;
  // SearchFiltered over the live members of `set`. With `two_hop` (for sets that hold a small
  // share of the elements), only members are compared with the query: a neighbour outside
  // the set is looked through to its own neighbours (ACORN-1's expansion).
  size_t SearchFiltered(const float* query, size_t k, size_t ef, ElementSet set, uint64_t* ids,
                        float* distances, bool two_hop = false) const;
  // Exact: the k nearest live members of `set`, visited in element order.
  size_t SearchSet(const float* query, size_t k, ElementSet set, uint64_t* ids,
                   float* distances) const;

  // Copies the vector of a live label into out (dim floats). False if absent or deleted.
  bool CopyVector(uint64_t label, float* out) const;
  // Live labels, ascending.
  std::vector<uint64_t> LiveLabels() const;
  // A page of live labels: the `limit` smallest ones above `after` (above nothing if unset),
  // ascending, and how many live labels above `after` the page left out. Labels are not kept
  // in order, so each page scans them all: O(live) time, but O(min(limit, live)) memory and
  // O(live log limit) comparisons at worst, not a sort of every label.
  struct LabelPage {
    std::vector<uint64_t> labels;
    uint64_t left_out = 0;
  };
  LabelPage LiveLabelsAfter(std::optional<uint64_t> after, size_t limit) const;
  // The live elements, in internal order: label and element number (for ElementVector).
  struct LiveElement {
    uint64_t label;
    uint32_t element;
  };
  std::vector<LiveElement> LiveElements() const;
  // The vector of an element (live or not): it never changes once inserted.
  const float* ElementVector(uint32_t element) const;
  // Calls fn for every element, live or deleted, in internal order.
  void ForEachElement(
      const std::function<void(uint64_t label, const float* vector, bool deleted)>& fn) const;

  uint32_t dim() const { return dim_; }
  // Elements stored, live and tombstones: what counts against max_elements().
  uint64_t element_count() const;
  // Tombstones: elements marked deleted (deleted items, old vectors of replaced ones).
  uint64_t deleted_count() const;
  // Live items: elements neither deleted nor replaced (while Adds run, a close lower bound).
  uint64_t live_count() const;
  uint64_t max_elements() const;
  uint32_t m() const;
  uint32_t ef_construction() const;

  // Bytes a graph of these dimensions needs at full capacity, for admission checks.
  static uint64_t EstimateBytes(uint32_t dim, uint32_t m, uint64_t max_elements);

 private:
  struct Impl;
  HnswGraph(std::unique_ptr<Impl> impl, uint32_t dim, storage::Space space);
  std::unique_ptr<Impl> impl_;
  uint32_t dim_;
  storage::Space space_;
};

}  // namespace luxdb::engine
