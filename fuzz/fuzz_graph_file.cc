// libFuzzer target: arbitrary bytes as an hnswlib file for HnswGraph::Load, the loader behind
// `luxdb-server --import` (a user's file) and every restart from a graph snapshot (whose
// SHA-256 is checked on another core *while* it loads, so a damaged snapshot reaches the
// loader too).
//
// Input: one option byte, then the file.
//   bits 0-1: space (l2, ip, cosine, l2)
//   bit 2:    pass max_elements = bits 3-7 (0..31) to Load, as a snapshot load passes the
//             index's capacity; otherwise 0 (keep the file's), as an import does
// The dimension is the one the file's header encodes (4 if it encodes none), so the fuzzer
// can reach every later check.
//
// Load must return a status, never crash. A graph it accepts must then serve what the server
// does with one: searches, inserting new and existing ids (replay), deleting, growing, and
// saving a snapshot that loads again with the same counts.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/hnsw_graph.h"
#include "engine/limits.h"
#include "fuzz/scratch_dir.h"

namespace {

using luxdb::engine::HnswGraph;

// Graphs above this estimated size are skipped. Load admits any capacity the machine's free
// memory allows (engine/resources.h), so without a cap one header could make the fuzzer
// allocate gigabytes and be stopped by its RSS limit.
constexpr uint64_t kMaxGraphBytes = 32 << 20;
// Header fields the harness reads (hnswlib 0.6.2 saveIndex layout, all little-endian).
constexpr size_t kMaxElementsOffset = 8;
constexpr size_t kElementCountOffset = 16;
constexpr size_t kLabelOffsetOffset = 32;
constexpr size_t kOffsetDataOffset = 40;
constexpr size_t kMOffset = 72;
constexpr size_t kHeaderBytes = 96;
constexpr uint32_t kMaxHarnessDim = 4096;

struct Scratch {
  std::string dir;
  std::string file;
  std::string saved;
};

Scratch* scratch = nullptr;

void RemoveScratch() {
  std::error_code error;
  std::filesystem::remove_all(scratch->dir, error);
}

uint64_t ReadU64(const uint8_t* data, size_t size, size_t offset) {
  uint64_t value = 0;
  if (offset + sizeof(value) <= size) std::memcpy(&value, data + offset, sizeof(value));
  return value;
}

[[noreturn]] void Fail(const char* what, const absl::Status& status = absl::OkStatus()) {
  std::fprintf(stderr, "fuzz_graph_file invariant broken: %s (%s)\n", what,
               status.ToString().c_str());
  std::abort();
}

void CheckOk(const absl::Status& status, const char* what) {
  if (!status.ok()) Fail(what, status);
}

// Searches from `query` and checks the answer against the live labels. With NaN among the
// stored vectors hnswlib's heaps lose their order, so `ordered` is then not checked.
void CheckSearch(const HnswGraph& graph, const std::vector<float>& query, bool ordered) {
  const std::vector<uint64_t> live = graph.LiveLabels();
  const size_t k = std::min<size_t>(live.size(), 5) + 1;
  std::vector<uint64_t> ids(k);
  std::vector<float> distances(k);
  const size_t found = graph.Search(query.data(), k, 8, ids.data(), distances.data());
  if (found > k || found > live.size()) Fail("search found more results than live elements");
  for (size_t i = 0; i < found; ++i) {
    if (!std::binary_search(live.begin(), live.end(), ids[i])) {
      Fail("search returned a label that is not live");
    }
    if (i > 0 && ids[i] == ids[i - 1]) Fail("search returned a label twice");
    if (ordered && i > 0 && distances[i] < distances[i - 1]) {
      Fail("search results are not nearest first");
    }
  }
}

// What the server does with a graph it has loaded.
void Exercise(HnswGraph& graph, luxdb::storage::Space space, uint32_t dim) {
  const uint64_t count = graph.element_count();
  const uint64_t deleted = graph.deleted_count();
  if (deleted > count || count > graph.max_elements()) Fail("counts out of order");
  const std::vector<uint64_t> live = graph.LiveLabels();
  if (live.size() != count - deleted) Fail("live labels disagree with the deleted count");
  if (!std::is_sorted(live.begin(), live.end()) ||
      std::adjacent_find(live.begin(), live.end()) != live.end()) {
    Fail("live labels are not strictly ascending");
  }
  uint64_t visited = 0;
  bool finite = true;
  bool reserved_id = false;
  graph.ForEachElement([&](uint64_t label, const float* vector, bool) {
    ++visited;
    reserved_id = reserved_id || label == luxdb::engine::kMissingId;
    for (uint32_t i = 0; i < dim; ++i) finite = finite && std::isfinite(vector[i]);
  });
  if (visited != count) Fail("ForEachElement skipped elements");
  // What AddItems refuses but Load takes from a file: reported once each, not fatal.
  static bool noted_finite = false;
  if (!finite && !std::exchange(noted_finite, true)) {
    std::fprintf(stderr, "note: HnswGraph::Load accepted non-finite vector components\n");
  }
  static bool noted_reserved = false;
  if (reserved_id && !std::exchange(noted_reserved, true)) {
    std::fprintf(stderr, "note: HnswGraph::Load accepted the reserved id 2^64-1 (kMissingId)\n");
  }

  std::vector<float> query(dim, 0.0f);
  CheckSearch(graph, query, finite);
  if (!live.empty()) {
    if (!graph.CopyVector(live.front(), query.data())) Fail("a live label has no vector");
    CheckSearch(graph, query, finite);
  }

  // Replay after a snapshot load: new ids, changed vectors of existing ids, deletions.
  std::vector<float> vector(dim, 0.5f);
  if (space == luxdb::storage::Space::kCosine) {
    std::fill(vector.begin(), vector.end(), 1.0f / std::sqrt(static_cast<float>(dim)));
  }
  uint64_t fresh = 0;
  graph.ForEachElement([&](uint64_t label, const float*, bool) {
    fresh = std::max(fresh, label == UINT64_MAX ? label : label + 1);
  });
  if (fresh == UINT64_MAX) fresh = 0;  // a file using the reserved id: probe another one
  while (graph.Find(fresh) != HnswGraph::Presence::kAbsent) ++fresh;
  if (graph.element_count() < graph.max_elements()) {
    CheckOk(graph.Add(vector.data(), fresh), "adding a new id to a loaded graph");
    if (graph.Find(fresh) != HnswGraph::Presence::kLive) Fail("an added id is not live");
  }
  if (!live.empty()) {
    if (graph.element_count() < graph.max_elements()) {  // a replace takes a new element
      CheckOk(graph.Add(vector.data(), live.back()), "replacing the vector of a loaded id");
      graph.TombstoneSuperseded();
    }
    CheckOk(graph.MarkDeleted(live.back()), "deleting a loaded id");
    if (graph.Find(live.back()) != HnswGraph::Presence::kDeleted) Fail("a deleted id is live");
  }
  CheckSearch(graph, vector, finite);
  absl::StatusOr<std::unique_ptr<HnswGraph>> grown = graph.Copy(graph.element_count() + 2);
  CheckOk(grown.status(), "copying a loaded graph into a larger one");
  while ((*grown)->Find(fresh) != HnswGraph::Presence::kAbsent) ++fresh;
  CheckOk((*grown)->Add(vector.data(), fresh), "adding to a grown graph");
  CheckSearch(**grown, query, finite);
  CheckSearch(graph, query, finite);

  // A snapshot of it must load again.
  CheckOk(graph.Save(scratch->saved), "saving a loaded graph");
  absl::StatusOr<std::unique_ptr<HnswGraph>> reloaded =
      HnswGraph::Load(scratch->saved, space, dim, 0);
  CheckOk(reloaded.status(), "loading the snapshot of a loaded graph");
  if ((*reloaded)->element_count() != graph.element_count() ||
      (*reloaded)->deleted_count() != graph.deleted_count() ||
      (*reloaded)->LiveLabels() != graph.LiveLabels()) {
    Fail("a saved graph loads with other contents");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  scratch = new Scratch;
  scratch->dir = luxdb::fuzz::MakeScratchDir("luxdb-fuzz-graph");
  scratch->file = scratch->dir + "/input.hnsw";
  scratch->saved = scratch->dir + "/saved.hnsw";
  std::atexit(RemoveScratch);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t options = data[0];
  const uint8_t* file = data + 1;
  const size_t file_size = size - 1;
  static constexpr luxdb::storage::Space kSpaces[] = {
      luxdb::storage::Space::kL2, luxdb::storage::Space::kIp, luxdb::storage::Space::kCosine,
      luxdb::storage::Space::kL2};
  const luxdb::storage::Space space = kSpaces[options & 3];
  const uint64_t max_elements = (options & 4) != 0 ? options >> 3 : 0;

  uint32_t dim = 4;
  const uint64_t label_offset = ReadU64(file, file_size, kLabelOffsetOffset);
  const uint64_t offset_data = ReadU64(file, file_size, kOffsetDataOffset);
  if (label_offset > offset_data && (label_offset - offset_data) % sizeof(float) == 0 &&
      (label_offset - offset_data) / sizeof(float) <= kMaxHarnessDim) {
    dim = static_cast<uint32_t>((label_offset - offset_data) / sizeof(float));
  }
  if (file_size >= kHeaderBytes) {
    const uint64_t m = ReadU64(file, file_size, kMOffset);
    const uint64_t capacity =
        std::max(max_elements != 0 ? max_elements : ReadU64(file, file_size, kMaxElementsOffset),
                 ReadU64(file, file_size, kElementCountOffset));
    if (m >= 2 && m <= 10000 && capacity <= luxdb::engine::kMaxElements &&
        HnswGraph::EstimateBytes(dim, static_cast<uint32_t>(m), capacity) > kMaxGraphBytes) {
      return 0;
    }
  }

  {
    std::ofstream out(scratch->file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(file), static_cast<std::streamsize>(file_size));
    if (!out) Fail("cannot write the scratch file");
  }
  absl::StatusOr<std::unique_ptr<HnswGraph>> graph =
      HnswGraph::Load(scratch->file, space, dim, max_elements);
  if (!graph.ok()) {
    if (graph.status().message().empty()) Fail("a refusal without a message", graph.status());
    return 0;
  }
  Exercise(**graph, space, dim);
  return 0;
}
