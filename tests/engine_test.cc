// Tests of the engine layer (engine/): names, spaces, the thread pool, the hnswlib wrapper with
// its file validation, and the catalog of indexes over real storage. No gRPC.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/catalog.h"
#include "engine/hnsw_graph.h"
#include "engine/index.h"
#include "engine/limits.h"
#include "engine/resources.h"
#include "engine/thread_pool.h"
#include "storage/backup_target.h"
#include "tests/test_support.h"

namespace luxdb::engine {
namespace {

namespace fs = std::filesystem;
using storage::Space;

// ---------------------------------------------------------------------------------------------
// Helpers

// `status` has `code` and its message contains every one of `parts`.
::testing::AssertionResult StatusIs(const absl::Status& status, absl::StatusCode code,
                                    std::initializer_list<absl::string_view> parts = {}) {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "expected " << absl::StatusCodeToString(code) << ", got " << status;
  }
  for (absl::string_view part : parts) {
    if (status.message().find(part) == absl::string_view::npos) {
      return ::testing::AssertionFailure() << "message of " << status << " lacks '" << part << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<float> RandomVectors(size_t n, uint32_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> out(n * dim);
  for (float& x : out) x = uniform(rng);
  return out;
}

std::vector<uint64_t> Range(uint64_t begin, uint64_t end) {
  std::vector<uint64_t> ids;
  for (uint64_t id = begin; id < end; ++id) ids.push_back(id);
  return ids;
}

float SquaredL2(const float* a, const float* b, uint32_t dim) {
  float sum = 0;
  for (uint32_t i = 0; i < dim; ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  return sum;
}

struct Neighbour {
  uint64_t id;
  float distance;
};

// The exact k nearest (squared L2) of `query` among rows of `data` labelled `labels`, skipping
// `excluded`.
std::vector<Neighbour> BruteForce(const std::vector<float>& data,
                                  const std::vector<uint64_t>& labels,
                                  const std::set<uint64_t>& excluded, const float* query,
                                  uint32_t dim, size_t k) {
  std::vector<Neighbour> all;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (excluded.contains(labels[i])) continue;
    all.push_back({labels[i], SquaredL2(query, data.data() + i * dim, dim)});
  }
  std::sort(all.begin(), all.end(),
            [](const Neighbour& a, const Neighbour& b) { return a.distance < b.distance; });
  if (all.size() > k) all.resize(k);
  return all;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
T Get(const std::string& bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

template <typename T>
void Put(std::string& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// hnswlib's saveIndex layout, parsed independently of the code under test.
struct FileLayout {
  static constexpr size_t kMaxElementsAt = 8;
  static constexpr size_t kElementCountAt = 16;
  static constexpr size_t kMaxLevelAt = 48;
  static constexpr size_t kEntryPointAt = 52;
  static constexpr size_t kHeaderSize = 96;

  uint64_t max_elements = 0;
  uint64_t count = 0;
  uint64_t size_data_per_element = 0;
  uint64_t label_offset = 0;
  uint64_t offset_data = 0;
  int max_level = 0;
  uint32_t entry_point = 0;
  uint64_t max_m = 0;
  uint64_t max_m0 = 0;
  uint64_t m = 0;
  // Per element: file offset of its upper-level lists (after their uint32 byte size) and level.
  std::vector<uint64_t> upper_offset;
  std::vector<int> level;

  explicit FileLayout(const std::string& bytes) {
    max_elements = Get<uint64_t>(bytes, 8);
    count = Get<uint64_t>(bytes, 16);
    size_data_per_element = Get<uint64_t>(bytes, 24);
    label_offset = Get<uint64_t>(bytes, 32);
    offset_data = Get<uint64_t>(bytes, 40);
    max_level = Get<int>(bytes, 48);
    entry_point = Get<uint32_t>(bytes, 52);
    max_m = Get<uint64_t>(bytes, 56);
    max_m0 = Get<uint64_t>(bytes, 64);
    m = Get<uint64_t>(bytes, 72);
    uint64_t offset = kHeaderSize + count * size_data_per_element;
    for (uint64_t i = 0; i < count; ++i) {
      const uint32_t size = Get<uint32_t>(bytes, offset);
      upper_offset.push_back(offset + 4);
      level.push_back(static_cast<int>(size / upper_list_bytes()));
      offset += 4 + size;
    }
  }
  uint64_t level0_offset(uint64_t element) const {
    return kHeaderSize + element * size_data_per_element;
  }
  uint64_t upper_list_bytes() const { return 4 + 4 * max_m; }
  uint64_t links_end() const { return kHeaderSize + count * size_data_per_element; }
};

// ---------------------------------------------------------------------------------------------
// ValidateIndexName

TEST(ValidateIndexNameTest, AcceptsLettersDigitsAndPunctuation) {
  for (const std::string& name :
       {std::string("a"), std::string(255, 'x'), std::string("docs-2024_v1.0"),
        std::string("0123456789"), std::string("..."), std::string("données"),
        std::string("векторы"), std::string("向量"), std::string("Ünïcödé-ИНДЕКС_1")}) {
    EXPECT_TRUE(ValidateIndexName(name).ok()) << name << ": " << ValidateIndexName(name);
  }
  // 255 bytes counted in bytes, not characters: 85 three-byte characters.
  std::string cjk;
  for (int i = 0; i < 85; ++i) cjk += "向";
  ASSERT_EQ(cjk.size(), 255u);
  EXPECT_TRUE(ValidateIndexName(cjk).ok()) << ValidateIndexName(cjk);
}

TEST(ValidateIndexNameTest, RejectsEmptyAndTooLong) {
  EXPECT_TRUE(StatusIs(ValidateIndexName(""), absl::StatusCode::kInvalidArgument, {"empty"}));
  EXPECT_TRUE(StatusIs(ValidateIndexName(std::string(256, 'x')), absl::StatusCode::kInvalidArgument,
                       {"256", "255"}));
  std::string cjk;
  for (int i = 0; i < 86; ++i) cjk += "向";  // 258 bytes, 86 characters
  EXPECT_TRUE(StatusIs(ValidateIndexName(cjk), absl::StatusCode::kInvalidArgument, {"258"}));
}

TEST(ValidateIndexNameTest, RejectsDisallowedCharactersNamingTheOffset) {
  EXPECT_TRUE(StatusIs(ValidateIndexName("a b"), absl::StatusCode::kInvalidArgument, {"byte 1"}));
  EXPECT_TRUE(StatusIs(ValidateIndexName("a/b"), absl::StatusCode::kInvalidArgument, {"byte 1"}));
  EXPECT_TRUE(StatusIs(ValidateIndexName("ab:c"), absl::StatusCode::kInvalidArgument, {"byte 2"}));
  EXPECT_TRUE(StatusIs(ValidateIndexName("/"), absl::StatusCode::kInvalidArgument, {"byte 0"}));
  EXPECT_TRUE(StatusIs(ValidateIndexName(std::string("a\0b", 3)),
                       absl::StatusCode::kInvalidArgument, {"byte 1"}));
  // "é" is two bytes, so the space after "dé" is at byte 3.
  EXPECT_TRUE(StatusIs(ValidateIndexName("dé x"), absl::StatusCode::kInvalidArgument, {"byte 3"}));
  // An emoji is valid UTF-8 but not a letter.
  EXPECT_TRUE(StatusIs(ValidateIndexName("ok\xF0\x9F\x98\x80"), absl::StatusCode::kInvalidArgument,
                       {"byte 2"}));
}

TEST(ValidateIndexNameTest, RejectsInvalidUtf8NamingTheOffset) {
  const std::map<std::string, std::string> cases = {
      {"lone continuation byte", "ab\x80"},    {"overlong '/'", "a\xC0\xAF"},
      {"surrogate U+D800", "a\xED\xA0\x80"},   {"truncated sequence", "ab\xE5\x90"},
      {"above U+10FFFF", "a\xF4\x90\x80\x80"}, {"0xFF byte", "a\xFF"},
  };
  for (const auto& [what, name] : cases) {
    const absl::Status status = ValidateIndexName(name);
    EXPECT_TRUE(StatusIs(status, absl::StatusCode::kInvalidArgument, {"UTF-8"})) << what;
  }
  EXPECT_TRUE(
      StatusIs(ValidateIndexName("ab\x80"), absl::StatusCode::kInvalidArgument, {"byte 2"}));
  EXPECT_TRUE(
      StatusIs(ValidateIndexName("a\xC0\xAF"), absl::StatusCode::kInvalidArgument, {"byte 1"}));
  EXPECT_TRUE(
      StatusIs(ValidateIndexName("\xED\xA0\x80"), absl::StatusCode::kInvalidArgument, {"byte 0"}));
}

// ---------------------------------------------------------------------------------------------
// ParseSpace

TEST(ParseSpaceTest, KnownSpacesAnyCase) {
  absl::StatusOr<Space> l2 = ParseSpace("l2");
  ASSERT_TRUE(l2.ok()) << l2.status();
  EXPECT_EQ(*l2, Space::kL2);
  absl::StatusOr<Space> ip = ParseSpace("IP");
  ASSERT_TRUE(ip.ok()) << ip.status();
  EXPECT_EQ(*ip, Space::kIp);
  absl::StatusOr<Space> cosine = ParseSpace("cosine");
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_EQ(*cosine, Space::kCosine);
  absl::StatusOr<Space> upper = ParseSpace("Cosine");
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_EQ(*upper, Space::kCosine);
}

TEST(ParseSpaceTest, UnknownSpaceNamesTheValue) {
  EXPECT_TRUE(StatusIs(ParseSpace("x").status(), absl::StatusCode::kInvalidArgument, {"'x'"}));
  EXPECT_TRUE(StatusIs(ParseSpace("").status(), absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(
      StatusIs(ParseSpace("euclid").status(), absl::StatusCode::kInvalidArgument, {"euclid"}));
}

// ---------------------------------------------------------------------------------------------
// ThreadPool

// Runs ParallelFor(n, grain) and checks every index in [0, n) was visited exactly once, in
// chunks of at most max(grain, 1).
void ExpectExactCover(ThreadPool& pool, size_t n, size_t grain) {
  std::vector<std::atomic<int>> hits(n);
  std::atomic<int> bad_chunks{0};
  pool.ParallelFor(n, grain, [&](size_t begin, size_t end) {
    if (begin >= end || end > n || end - begin > std::max<size_t>(grain, 1)) ++bad_chunks;
    for (size_t i = begin; i < end && i < n; ++i) hits[i].fetch_add(1);
  });
  EXPECT_EQ(bad_chunks.load(), 0) << "n=" << n << " grain=" << grain;
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i) wrong += hits[i].load() != 1;
  EXPECT_EQ(wrong, 0u) << "indexes not visited exactly once; n=" << n << " grain=" << grain;
}

TEST(ThreadPoolTest, CoversRangeExactlyOnce) {
  for (size_t threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (auto [n, grain] : std::vector<std::pair<size_t, size_t>>{{0, 1},
                                                                  {1, 1},
                                                                  {7, 3},
                                                                  {8, 4},
                                                                  {100, 1},
                                                                  {100, 7},
                                                                  {100, 100},
                                                                  {100, 1000},
                                                                  {1000, 0},
                                                                  {10007, 32}}) {
      ExpectExactCover(pool, n, grain);
    }
  }
}

TEST(ThreadPoolTest, ZeroThreadsMeansTheCallerAlone) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.threads(), 1u);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> elsewhere{0};
  pool.ParallelFor(50, 3, [&](size_t, size_t) {
    if (std::this_thread::get_id() != caller) ++elsewhere;
  });
  EXPECT_EQ(elsewhere.load(), 0);
  ExpectExactCover(pool, 50, 3);
}

TEST(ThreadPoolTest, ConcurrentCallersEachGetTheirWholeRange) {
  ThreadPool pool(3);
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int round = 0; round < 100; ++round) {
        const size_t n = 37 + 13 * t + round;
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, 1 + t, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        for (size_t i = 0; i < n; ++i) {
          if (hits[i].load() != 1) ++failures;
        }
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// HnswGraph

constexpr uint32_t kDim = 8;

std::unique_ptr<HnswGraph> MakeGraph(uint64_t max_elements, Space space = Space::kL2,
                                     uint32_t dim = kDim, uint32_t m = 16) {
  absl::StatusOr<std::unique_ptr<HnswGraph>> graph =
      HnswGraph::Create({space, dim, max_elements, m, 200, 100});
  EXPECT_TRUE(graph.ok()) << graph.status();
  return graph.ok() ? *std::move(graph) : nullptr;
}

void AddAll(HnswGraph& graph, const std::vector<float>& data, const std::vector<uint64_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(graph.Add(data.data() + i * graph.dim(), ids[i]).ok());
  }
}

struct SearchResult {
  std::vector<uint64_t> ids;
  std::vector<float> distances;
  bool operator==(const SearchResult&) const = default;
};

SearchResult SearchGraph(const HnswGraph& graph, const float* query, size_t k, size_t ef) {
  SearchResult r;
  r.ids.assign(k, 0);
  r.distances.assign(k, 0);
  const size_t found = graph.Search(query, k, ef, r.ids.data(), r.distances.data());
  r.ids.resize(found);
  r.distances.resize(found);
  return r;
}

class HnswGraphTest : public ::testing::Test {
 protected:
  // A saved graph of 200 random vectors (ids 1000..1199), 10 of them deleted.
  void SaveSample() {
    data_ = RandomVectors(200, kDim, 1);
    ids_ = Range(1000, 1200);
    graph_ = MakeGraph(300);
    ASSERT_NE(graph_, nullptr);
    ASSERT_NO_FATAL_FAILURE(AddAll(*graph_, data_, ids_));
    for (uint64_t id = 1000; id < 1200; id += 20) {
      ASSERT_TRUE(graph_->MarkDeleted(id).ok());
      deleted_.insert(id);
    }
    path_ = dir_.path() + "/sample.hnsw";
    ASSERT_TRUE(graph_->Save(path_).ok());
    bytes_ = ReadFile(path_);
    ASSERT_GT(bytes_.size(), FileLayout::kHeaderSize);
  }

  absl::Status LoadBytes(const std::string& bytes, uint32_t dim = kDim) {
    const std::string path = dir_.path() + "/edited.hnsw";
    WriteFile(path, bytes);
    return HnswGraph::Load(path, Space::kL2, dim, 0).status();
  }

  luxdb::testing::TempDir dir_;
  std::vector<float> data_;
  std::vector<uint64_t> ids_;
  std::set<uint64_t> deleted_;
  std::unique_ptr<HnswGraph> graph_;
  std::string path_;
  std::string bytes_;
};

TEST_F(HnswGraphTest, SearchIsExactOnSmallData) {
  const std::vector<float> data = RandomVectors(200, kDim, 2);
  const std::vector<uint64_t> ids = Range(0, 200);
  std::unique_ptr<HnswGraph> graph = MakeGraph(250);
  ASSERT_NE(graph, nullptr);
  ASSERT_NO_FATAL_FAILURE(AddAll(*graph, data, ids));
  EXPECT_EQ(graph->element_count(), 200u);
  EXPECT_EQ(graph->deleted_count(), 0u);
  EXPECT_EQ(graph->max_elements(), 250u);
  EXPECT_EQ(graph->m(), 16u);
  EXPECT_EQ(graph->ef_construction(), 200u);

  const std::vector<float> queries = RandomVectors(20, kDim, 3);
  for (size_t q = 0; q < 20; ++q) {
    const float* query = queries.data() + q * kDim;
    const std::vector<Neighbour> expected = BruteForce(data, ids, {}, query, kDim, 10);
    const SearchResult got = SearchGraph(*graph, query, 10, 300);
    ASSERT_EQ(got.ids.size(), 10u);
    for (size_t i = 0; i < 10; ++i) {
      EXPECT_EQ(got.ids[i], expected[i].id) << "query " << q << " rank " << i;
      EXPECT_NEAR(got.distances[i], expected[i].distance, 1e-4f * (1 + expected[i].distance));
    }
  }
  // An element's own vector finds it at distance 0.
  const SearchResult self = SearchGraph(*graph, data.data() + 17 * kDim, 1, 50);
  ASSERT_EQ(self.ids.size(), 1u);
  EXPECT_EQ(self.ids[0], 17u);
  EXPECT_EQ(self.distances[0], 0.0f);
}

TEST_F(HnswGraphTest, InnerProductDistanceIsOneMinusDot) {
  std::unique_ptr<HnswGraph> graph = MakeGraph(10, Space::kIp, 2);
  ASSERT_NE(graph, nullptr);
  const float a[] = {1, 0};
  const float b[] = {0, 1};
  ASSERT_TRUE(graph->Add(a, 1).ok());
  ASSERT_TRUE(graph->Add(b, 2).ok());
  const float query[] = {0.25f, 0.5f};
  const SearchResult got = SearchGraph(*graph, query, 2, 10);
  ASSERT_EQ(got.ids.size(), 2u);
  EXPECT_EQ(got.ids[0], 2u);
  EXPECT_FLOAT_EQ(got.distances[0], 0.5f);
  EXPECT_EQ(got.ids[1], 1u);
  EXPECT_FLOAT_EQ(got.distances[1], 0.75f);
}

TEST_F(HnswGraphTest, SearchReturnsTheCountFoundAndPadsNothing) {
  std::unique_ptr<HnswGraph> graph = MakeGraph(10);
  ASSERT_NE(graph, nullptr);
  uint64_t ids[10];
  float distances[10];
  std::fill(std::begin(ids), std::end(ids), 777);
  std::fill(std::begin(distances), std::end(distances), -5.0f);
  const std::vector<float> query(kDim, 0.5f);
  EXPECT_EQ(graph->Search(query.data(), 10, 10, ids, distances), 0u);  // empty graph

  const std::vector<float> data = RandomVectors(3, kDim, 4);
  ASSERT_NO_FATAL_FAILURE(AddAll(*graph, data, {5, 6, 7}));
  EXPECT_EQ(graph->Search(query.data(), 10, 10, ids, distances), 3u);
  EXPECT_EQ(std::set<uint64_t>(ids, ids + 3), (std::set<uint64_t>{5, 6, 7}));
  EXPECT_LE(distances[0], distances[1]);
  EXPECT_LE(distances[1], distances[2]);
  for (size_t i = 3; i < 10; ++i) {
    EXPECT_EQ(ids[i], 777u) << i;
    EXPECT_EQ(distances[i], -5.0f) << i;
  }
  EXPECT_EQ(graph->Search(query.data(), 2, 10, ids, distances), 2u);
}

TEST_F(HnswGraphTest, MarkDeletedHidesTheElement) {
  const std::vector<float> data = RandomVectors(50, kDim, 5);
  const std::vector<uint64_t> ids = Range(0, 50);
  std::unique_ptr<HnswGraph> graph = MakeGraph(60);
  ASSERT_NE(graph, nullptr);
  ASSERT_NO_FATAL_FAILURE(AddAll(*graph, data, ids));
  std::set<uint64_t> deleted;
  for (uint64_t id = 0; id < 50; id += 5) {
    ASSERT_TRUE(graph->MarkDeleted(id).ok());
    deleted.insert(id);
  }
  EXPECT_EQ(graph->element_count(), 50u);
  EXPECT_EQ(graph->deleted_count(), 10u);
  EXPECT_EQ(graph->Find(5), HnswGraph::Presence::kDeleted);
  EXPECT_EQ(graph->Find(6), HnswGraph::Presence::kLive);
  EXPECT_EQ(graph->Find(999), HnswGraph::Presence::kAbsent);
  EXPECT_TRUE(StatusIs(graph->MarkDeleted(999), absl::StatusCode::kNotFound, {"999"}));

  std::vector<float> out(kDim);
  EXPECT_FALSE(graph->CopyVector(5, out.data()));
  EXPECT_FALSE(graph->CopyVector(999, out.data()));
  ASSERT_TRUE(graph->CopyVector(6, out.data()));
  EXPECT_EQ(0, std::memcmp(out.data(), data.data() + 6 * kDim, kDim * sizeof(float)));

  std::vector<uint64_t> live;
  for (uint64_t id : ids) {
    if (!deleted.contains(id)) live.push_back(id);
  }
  EXPECT_EQ(graph->LiveLabels(), live);

  // Even the deleted element's own vector does not find it.
  for (uint64_t id : deleted) {
    const SearchResult got = SearchGraph(*graph, data.data() + id * kDim, 50, 100);
    EXPECT_EQ(got.ids.size(), 40u);
    for (uint64_t found : got.ids) EXPECT_FALSE(deleted.contains(found)) << found;
  }

  std::map<uint64_t, bool> seen;
  graph->ForEachElement([&](uint64_t label, const float* vector, bool is_deleted) {
    seen[label] = is_deleted;
    EXPECT_EQ(0, std::memcmp(vector, data.data() + label * kDim, kDim * sizeof(float)));
  });
  ASSERT_EQ(seen.size(), 50u);
  for (const auto& [label, is_deleted] : seen) EXPECT_EQ(is_deleted, deleted.contains(label));

  // Adding a deleted label again revives it with the new vector, as a new element: the old
  // one stays a tombstone (vectors never change in place, so searches never see a torn one).
  const std::vector<float> fresh(kDim, 0.25f);
  ASSERT_TRUE(graph->Add(fresh.data(), 5).ok());
  EXPECT_EQ(graph->Find(5), HnswGraph::Presence::kLive);
  EXPECT_EQ(graph->deleted_count(), 10u);
  EXPECT_EQ(graph->element_count(), 51u);
  ASSERT_TRUE(graph->CopyVector(5, out.data()));
  EXPECT_EQ(out, fresh);
  // Adding a live label replaces it: the label names the new element at once, the old one
  // leaves the listings at once and becomes a tombstone with TombstoneSuperseded.
  ASSERT_TRUE(graph->Add(fresh.data(), 6).ok());
  ASSERT_TRUE(graph->CopyVector(6, out.data()));
  EXPECT_EQ(out, fresh);
  const std::vector<uint64_t> listed = graph->LiveLabels();
  EXPECT_EQ(std::count(listed.begin(), listed.end(), 6u), 1);
  EXPECT_EQ(graph->deleted_count(), 10u);
  EXPECT_EQ(graph->TombstoneSuperseded(), 1u);
  EXPECT_EQ(graph->deleted_count(), 11u);
  const SearchResult nearest = SearchGraph(*graph, fresh.data(), 5, 50);
  EXPECT_EQ(std::set<uint64_t>(nearest.ids.begin(), nearest.ids.end()).size(), nearest.ids.size())
      << "a label is returned once";
}

// Until TombstoneSuperseded runs, a replaced label has two elements a search can reach; every
// answer still names it once, with the nearer of its two distances, for short answers (kept by
// a search of the list) and long ones (kept by a set).
TEST_F(HnswGraphTest, ResultsNameAReplacedLabelOnceBeforeItsTombstone) {
  const std::vector<float> data = RandomVectors(150, kDim, 12);
  const std::vector<float> replacements = RandomVectors(150, kDim, 13);
  std::unique_ptr<HnswGraph> graph = MakeGraph(300);
  ASSERT_NE(graph, nullptr);
  ASSERT_NO_FATAL_FAILURE(AddAll(*graph, data, Range(0, 150)));
  for (uint64_t id = 0; id < 150; ++id) {
    ASSERT_TRUE(graph->Add(replacements.data() + id * kDim, id).ok());
  }
  ASSERT_EQ(graph->element_count(), 300u);
  const std::vector<float> queries = RandomVectors(5, kDim, 14);
  for (size_t q = 0; q < 5; ++q) {
    const float* query = queries.data() + q * kDim;
    for (size_t k : {10, 150, 300}) {
      const SearchResult got = SearchGraph(*graph, query, k, 400);
      EXPECT_EQ(std::set<uint64_t>(got.ids.begin(), got.ids.end()).size(), got.ids.size())
          << "query " << q << " k " << k << ": a label is returned once";
      // The nearest k elements may hold both of a label's; with k above the element count the
      // answer names every label.
      if (k >= 300) {
        EXPECT_EQ(got.ids.size(), 150u) << "query " << q;
      }
      for (size_t i = 0; i < got.ids.size(); ++i) {
        const uint64_t id = got.ids[i];
        const float old_distance = SquaredL2(query, data.data() + id * kDim, kDim);
        const float new_distance = SquaredL2(query, replacements.data() + id * kDim, kDim);
        EXPECT_FLOAT_EQ(got.distances[i], std::min(old_distance, new_distance))
            << "query " << q << " k " << k << " label " << id;
      }
    }
  }
  EXPECT_EQ(graph->TombstoneSuperseded(), 150u);
}

TEST_F(HnswGraphTest, SaveLoadRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  absl::StatusOr<std::unique_ptr<HnswGraph>> loaded = HnswGraph::Load(path_, Space::kL2, kDim, 0);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  HnswGraph& copy = **loaded;
  EXPECT_EQ(copy.element_count(), 200u);
  EXPECT_EQ(copy.deleted_count(), 10u);
  EXPECT_EQ(copy.max_elements(), 300u);
  EXPECT_EQ(copy.m(), 16u);
  EXPECT_EQ(copy.ef_construction(), 200u);
  EXPECT_EQ(copy.LiveLabels(), graph_->LiveLabels());
  for (uint64_t id : deleted_) EXPECT_EQ(copy.Find(id), HnswGraph::Presence::kDeleted) << id;

  const std::vector<float> queries = RandomVectors(30, kDim, 6);
  for (size_t q = 0; q < 30; ++q) {
    for (size_t ef : {10, 50}) {
      EXPECT_EQ(SearchGraph(copy, queries.data() + q * kDim, 10, ef),
                SearchGraph(*graph_, queries.data() + q * kDim, 10, ef))
          << "query " << q << " ef " << ef;
    }
  }
  std::vector<float> a(kDim), b(kDim);
  for (uint64_t id : copy.LiveLabels()) {
    ASSERT_TRUE(copy.CopyVector(id, a.data()));
    ASSERT_TRUE(graph_->CopyVector(id, b.data()));
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), kDim * sizeof(float))) << id;
  }

  // A larger capacity grows the loaded graph, and it keeps accepting items.
  absl::StatusOr<std::unique_ptr<HnswGraph>> grown = HnswGraph::Load(path_, Space::kL2, kDim, 500);
  ASSERT_TRUE(grown.ok()) << grown.status();
  EXPECT_EQ((*grown)->max_elements(), 500u);
  const std::vector<float> more = RandomVectors(250, kDim, 7);
  ASSERT_NO_FATAL_FAILURE(AddAll(**grown, more, Range(5000, 5250)));
  EXPECT_EQ((*grown)->element_count(), 450u);
  const SearchResult self = SearchGraph(**grown, more.data() + 3 * kDim, 1, 100);
  ASSERT_EQ(self.ids.size(), 1u);
  EXPECT_EQ(self.ids[0], 5003u);
}

TEST_F(HnswGraphTest, LiveLabelsAfterPagesThroughLiveLabelsInAscendingOrder) {
  constexpr size_t kCount = 2000;
  std::unique_ptr<HnswGraph> graph = MakeGraph(kCount + 2, Space::kL2, 2, 4);
  ASSERT_NE(graph, nullptr);
  std::mt19937_64 generator(3);
  std::set<uint64_t> labels = {0, 1, std::numeric_limits<uint64_t>::max() - 1};
  while (labels.size() < kCount) labels.insert(generator());
  std::vector<uint64_t> shuffled(labels.begin(), labels.end());
  std::shuffle(shuffled.begin(), shuffled.end(), generator);
  ASSERT_NO_FATAL_FAILURE(AddAll(*graph, RandomVectors(kCount, 2, 4), shuffled));
  std::set<uint64_t> live = labels;
  for (size_t i = 0; i < kCount; i += 7) {
    ASSERT_TRUE(graph->MarkDeleted(shuffled[i]).ok());
    live.erase(shuffled[i]);
  }
  // Revived and replaced labels are listed once.
  const std::vector<float> vector = {0.5f, 0.5f};
  ASSERT_TRUE(graph->Add(vector.data(), shuffled[7]).ok());
  ASSERT_TRUE(graph->MarkDeleted(shuffled[8]).ok());
  ASSERT_TRUE(graph->Add(vector.data(), shuffled[8]).ok());
  live.insert(shuffled[7]);
  const std::vector<uint64_t> expected(live.begin(), live.end());
  EXPECT_EQ(graph->LiveLabels(), expected);

  for (size_t limit : {size_t{1}, size_t{13}, size_t{500}, expected.size() - 1, expected.size(),
                       expected.size() + 1}) {
    std::vector<uint64_t> joined;
    std::optional<uint64_t> after;
    while (true) {
      const HnswGraph::LabelPage page = graph->LiveLabelsAfter(after, limit);
      ASSERT_LE(page.labels.size(), limit);
      const auto start =
          after ? std::upper_bound(expected.begin(), expected.end(), *after) : expected.begin();
      ASSERT_TRUE(std::equal(page.labels.begin(), page.labels.end(), start)) << limit;
      EXPECT_EQ(page.left_out, static_cast<uint64_t>(expected.end() - start) - page.labels.size());
      joined.insert(joined.end(), page.labels.begin(), page.labels.end());
      if (page.left_out == 0) break;
      after = page.labels.back();
    }
    EXPECT_EQ(joined, expected) << "limit " << limit;
  }
  const HnswGraph::LabelPage none = graph->LiveLabelsAfter(std::nullopt, 0);
  EXPECT_TRUE(none.labels.empty());
  EXPECT_EQ(none.left_out, expected.size());
  const HnswGraph::LabelPage past = graph->LiveLabelsAfter(expected.back(), 10);
  EXPECT_TRUE(past.labels.empty());
  EXPECT_EQ(past.left_out, 0u);
}

TEST_F(HnswGraphTest, CopyKeepsElementsAndRefusesBelowCount) {
  std::unique_ptr<HnswGraph> original = MakeGraph(20);
  ASSERT_NE(original, nullptr);
  const std::vector<float> data = RandomVectors(20, kDim, 8);
  ASSERT_NO_FATAL_FAILURE(AddAll(*original, data, Range(0, 20)));
  ASSERT_TRUE(original->MarkDeleted(7).ok());
  EXPECT_FALSE(original->Copy(19).ok());
  absl::StatusOr<std::unique_ptr<HnswGraph>> copy = original->Copy(40);
  ASSERT_TRUE(copy.ok()) << copy.status();
  std::unique_ptr<HnswGraph> graph = *std::move(copy);
  original.reset();  // the copy owns everything it uses
  EXPECT_EQ(graph->max_elements(), 40u);
  EXPECT_EQ(graph->deleted_count(), 1u);
  EXPECT_EQ(graph->Find(7), HnswGraph::Presence::kDeleted);
  ASSERT_TRUE(graph->Add(data.data() + 7 * kDim, 7).ok());  // revived: a new element
  const std::vector<float> more = RandomVectors(19, kDim, 9);
  ASSERT_NO_FATAL_FAILURE(AddAll(*graph, more, Range(20, 39)));
  EXPECT_EQ(graph->LiveLabels(), Range(0, 39));
  EXPECT_EQ(graph->element_count(), 40u);
  const SearchResult self = SearchGraph(*graph, data.data() + 4 * kDim, 1, 50);
  ASSERT_EQ(self.ids.size(), 1u);
  EXPECT_EQ(self.ids[0], 4u);
}

TEST_F(HnswGraphTest, LoadRejectsMissingAndEmptyFiles) {
  EXPECT_TRUE(StatusIs(HnswGraph::Load(dir_.path() + "/absent.hnsw", Space::kL2, kDim, 0).status(),
                       absl::StatusCode::kNotFound, {"absent.hnsw"}));
  EXPECT_TRUE(StatusIs(LoadBytes(""), absl::StatusCode::kDataLoss));
  // A directory is not a graph file either.
  const absl::Status directory = HnswGraph::Load(dir_.path(), Space::kL2, kDim, 0).status();
  EXPECT_TRUE(absl::IsDataLoss(directory) || absl::IsNotFound(directory)) << directory;
}

TEST_F(HnswGraphTest, LoadRejectsTruncatedFiles) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  const FileLayout layout(bytes_);
  ASSERT_EQ(layout.count, 200u);
  // The sample must have upper-level lists for the link-list cuts below to mean anything.
  size_t first_upper = 0;
  while (first_upper < layout.count && layout.level[first_upper] == 0) ++first_upper;
  ASSERT_LT(first_upper, layout.count);

  const std::map<std::string, size_t> cuts = {
      {"1 byte", 1},
      {"inside the header", 50},
      {"just before the header ends", FileLayout::kHeaderSize - 1},
      {"right after the header", FileLayout::kHeaderSize},
      {"inside element 0's level-0 record", FileLayout::kHeaderSize + 7},
      {"halfway through level-0 data", layout.level0_offset(100) + 3},
      {"one byte short of the level-0 data", layout.links_end() - 1},
      {"where the link lists start", layout.links_end()},
      {"inside the first link-list size", layout.links_end() + 2},
      {"inside an upper-level list", layout.upper_offset[first_upper] + 5},
      {"one byte short", bytes_.size() - 1},
  };
  for (const auto& [where, size] : cuts) {
    ASSERT_LT(size, bytes_.size()) << where;
    EXPECT_TRUE(StatusIs(LoadBytes(bytes_.substr(0, size)), absl::StatusCode::kDataLoss))
        << "cut " << where << " (" << size << " bytes)";
  }
  // Trailing garbage is as wrong as a missing tail.
  EXPECT_TRUE(StatusIs(LoadBytes(bytes_ + std::string(4, '\0')), absl::StatusCode::kDataLoss));
}

TEST_F(HnswGraphTest, LoadRejectsWrongDimensionNamingIt) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  EXPECT_TRUE(StatusIs(HnswGraph::Load(path_, Space::kL2, 16, 0).status(),
                       absl::StatusCode::kDataLoss, {"dimension", "8", "16"}));
  EXPECT_TRUE(StatusIs(HnswGraph::Load(path_, Space::kL2, 4, 0).status(),
                       absl::StatusCode::kDataLoss, {"dimension", "8", "4"}));
  EXPECT_TRUE(StatusIs(HnswGraph::Load(path_, Space::kIp, 7, 0).status(),
                       absl::StatusCode::kDataLoss, {"dimension"}));
  // The space is not recorded in the file: the right dimension loads in any space.
  EXPECT_TRUE(HnswGraph::Load(path_, Space::kIp, kDim, 0).ok());
}

TEST_F(HnswGraphTest, LoadRejectsAFlippedElementCount) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  for (size_t byte = 0; byte < 8; ++byte) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string edited = bytes_;
      edited[FileLayout::kElementCountAt + byte] ^= static_cast<char>(mask);
      EXPECT_TRUE(StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss))
          << "element count byte " << byte << " ^ " << int{mask} << " -> "
          << Get<uint64_t>(edited, FileLayout::kElementCountAt);
    }
  }
}

TEST_F(HnswGraphTest, LoadRejectsALevel0LinkBeyondTheElementCount) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  const FileLayout layout(bytes_);
  const uint64_t record = layout.level0_offset(0);
  ASSERT_GT(Get<uint32_t>(bytes_, record) & 0xFFFF, 0u) << "element 0 has no level-0 links";
  for (uint32_t bad :
       {uint32_t(layout.count), uint32_t(layout.count + 5), uint32_t(299), uint32_t(0xFFFFFFF0)}) {
    std::string edited = bytes_;
    Put<uint32_t>(edited, record + 4, bad);  // element 0's first level-0 link
    EXPECT_TRUE(
        StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss, {"element 0", absl::StrCat(bad)}))
        << "link to " << bad;
  }
}

TEST_F(HnswGraphTest, LoadRejectsAnOversizedLinkCount) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  const FileLayout layout(bytes_);
  std::string edited = bytes_;
  Put<uint16_t>(edited, layout.level0_offset(3), uint16_t(layout.max_m0 + 1));
  EXPECT_TRUE(StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss, {"element 3"}));
  Put<uint16_t>(edited, layout.level0_offset(3), uint16_t(0xFFFF));
  EXPECT_TRUE(StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss, {"element 3"}));
}

TEST_F(HnswGraphTest, LoadRejectsAnUpperLevelLinkBeyondTheElementCount) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  const FileLayout layout(bytes_);
  for (uint64_t e = 0; e < layout.count; ++e) {
    if (layout.level[e] == 0 || Get<uint32_t>(bytes_, layout.upper_offset[e]) == 0) continue;
    std::string edited = bytes_;
    Put<uint32_t>(edited, layout.upper_offset[e] + 4, uint32_t(layout.count + 1));
    EXPECT_TRUE(
        StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss, {absl::StrCat("element ", e)}));
    return;
  }
  FAIL() << "the sample has no upper-level links";
}

TEST_F(HnswGraphTest, LoadRejectsAnEntryPointOutOfRange) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  std::string edited = bytes_;
  Put<uint32_t>(edited, FileLayout::kEntryPointAt, 200);
  EXPECT_TRUE(StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss));
  edited = bytes_;
  Put<int>(edited, FileLayout::kMaxLevelAt, 1000);
  EXPECT_TRUE(StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss));
}

TEST_F(HnswGraphTest, LoadOfAnEmptyGraphKeepsTheFilesCapacity) {
  std::unique_ptr<HnswGraph> empty = MakeGraph(10);
  ASSERT_NE(empty, nullptr);
  const std::string path = dir_.path() + "/empty.hnsw";
  ASSERT_TRUE(empty->Save(path).ok());
  // "max_elements of 0 keeps the file's capacity" (hnsw_graph.h).
  absl::StatusOr<std::unique_ptr<HnswGraph>> loaded = HnswGraph::Load(path, Space::kL2, kDim, 0);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->element_count(), 0u);
  EXPECT_EQ((*loaded)->max_elements(), 10u);
}

// A file whose graph is empty but whose header names an entry point and a top level must not
// be trusted: hnswlib's first insertion starts its descent at that entry point.
TEST_F(HnswGraphTest, LoadOfAnEmptyGraphWithABogusEntryPointIsSafe) {
  std::unique_ptr<HnswGraph> empty = MakeGraph(10);
  ASSERT_NE(empty, nullptr);
  const std::string path = dir_.path() + "/empty.hnsw";
  ASSERT_TRUE(empty->Save(path).ok());
  std::string bytes = ReadFile(path);
  Put<int>(bytes, FileLayout::kMaxLevelAt, 3);
  Put<uint32_t>(bytes, FileLayout::kEntryPointAt, 50'000'000);
  WriteFile(path, bytes);
  absl::StatusOr<std::unique_ptr<HnswGraph>> loaded = HnswGraph::Load(path, Space::kL2, kDim, 10);
  if (!loaded.ok()) {
    EXPECT_TRUE(StatusIs(loaded.status(), absl::StatusCode::kDataLoss));
    return;
  }
  ADD_FAILURE() << "an empty graph with entry point 50000000 and top level 3 was accepted";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const std::vector<float> v(kDim, 0.5f);
        const bool added = (*loaded)->Add(v.data(), 1).ok();
        uint64_t id = 0;
        float distance = 0;
        const size_t found = (*loaded)->Search(v.data(), 1, 10, &id, &distance);
        exit(added && found == 1 && id == 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "adding to the accepted graph crashes or misbehaves";
}

// An upper-level link must lead to an element that has that level; otherwise the greedy
// descent follows it into an element without upper-level lists.
TEST_F(HnswGraphTest, LoadRejectsAnUpperLevelLinkToALowerElement) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  const FileLayout layout(bytes_);
  ASSERT_GE(layout.max_level, 1);
  uint64_t ground = 0;  // an element with only level 0, and live
  while (ground < layout.count && (layout.level[ground] != 0 || deleted_.contains(ids_[ground]))) {
    ++ground;
  }
  ASSERT_LT(ground, layout.count);
  std::string edited = bytes_;
  size_t rewired = 0;
  for (uint64_t e = 0; e < layout.count; ++e) {
    for (int level = 1; level <= layout.level[e]; ++level) {
      const uint64_t list = layout.upper_offset[e] + (level - 1) * layout.upper_list_bytes();
      const uint32_t links = Get<uint32_t>(edited, list) & 0xFFFF;
      for (uint32_t j = 0; j < links; ++j) {
        Put<uint32_t>(edited, list + 4 + 4 * j, uint32_t(ground));
        ++rewired;
      }
    }
  }
  ASSERT_GT(rewired, 0u);
  const std::string path = dir_.path() + "/rewired.hnsw";
  WriteFile(path, edited);
  absl::StatusOr<std::unique_ptr<HnswGraph>> loaded = HnswGraph::Load(path, Space::kL2, kDim, 0);
  if (!loaded.ok()) {
    EXPECT_TRUE(StatusIs(loaded.status(), absl::StatusCode::kDataLoss));
    return;
  }
  ADD_FAILURE() << "a graph whose upper-level links lead to level-0 element " << ground
                << " was accepted";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const float* query = data_.data() + ground * kDim;
  EXPECT_EXIT(
      {
        uint64_t id = 0;
        float distance = 0;
        const size_t found = (*loaded)->Search(query, 1, 10, &id, &distance);
        exit(found == 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "searching the accepted graph crashes";
}

TEST_F(HnswGraphTest, LoadRejectsDuplicateLabels) {
  ASSERT_NO_FATAL_FAILURE(SaveSample());
  const FileLayout layout(bytes_);
  std::string edited = bytes_;
  // Element 1 takes element 2's label.
  Put<uint64_t>(edited, layout.level0_offset(1) + layout.label_offset,
                Get<uint64_t>(bytes_, layout.level0_offset(2) + layout.label_offset));
  EXPECT_TRUE(StatusIs(LoadBytes(edited), absl::StatusCode::kDataLoss));
}

// ---------------------------------------------------------------------------------------------
// Catalog and Index over real storage

struct QueryResult {
  std::vector<uint64_t> ids;
  std::vector<float> distances;
  bool operator==(const QueryResult&) const = default;
};

absl::StatusOr<QueryResult> RunQuery(const Index& index, std::span<const float> queries, uint32_t k,
                                     uint32_t ef = 0) {
  absl::StatusOr<size_t> n = index.CheckQuery(queries.size(), k, ef);
  if (!n.ok()) return n.status();
  QueryResult r;
  r.ids.resize(*n * k);
  r.distances.resize(*n * k);
  if (absl::Status s = index.Query(queries, k, ef, r.ids, r.distances); !s.ok()) return s;
  return r;
}

absl::StatusOr<std::vector<float>> Vectors(const Index& index, const std::vector<uint64_t>& ids) {
  std::vector<float> out(ids.size() * index.dim());
  if (absl::Status s = index.GetVectors(ids, out); !s.ok()) return s;
  return out;
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Open()); }

  void Open(Catalog::Options options = {.threads = 2, .sync = false}) {
    catalog_.reset();
    absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Open(dir(), options);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
    catalog_->WaitUntilLoaded();
  }
  // Clean shutdown (snapshots) and reopen.
  void CloseAndReopen() {
    ASSERT_TRUE(catalog_->Close().ok());
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  std::shared_ptr<engine::Index> MakeIndex(const std::string& name, Space space, uint32_t dim,
                                           InitParams params) {
    absl::Status created = catalog_->Create(name, space, dim);
    EXPECT_TRUE(created.ok()) << created;
    absl::StatusOr<std::shared_ptr<Index>> index = catalog_->Get(name);
    EXPECT_TRUE(index.ok()) << index.status();
    if (!index.ok()) return nullptr;
    absl::Status init = (*index)->Init(params);
    EXPECT_TRUE(init.ok()) << init;
    return *index;
  }

  std::shared_ptr<engine::Index> GetIndex(const std::string& name) {
    absl::StatusOr<std::shared_ptr<engine::Index>> index = catalog_->Get(name);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *index : nullptr;
  }

  std::string dir() const { return tmp_.path() + "/data"; }

  luxdb::testing::TempDir tmp_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, CreateGetExistsListDrop) {
  EXPECT_TRUE(catalog_->List().empty());
  ASSERT_TRUE(catalog_->Create("docs", Space::kL2, 4).ok());
  ASSERT_TRUE(catalog_->Create("alpha", Space::kCosine, 3).ok());
  ASSERT_TRUE(catalog_->Create("向量", Space::kIp, 65536).ok());
  EXPECT_TRUE(catalog_->Exists("docs"));
  EXPECT_FALSE(catalog_->Exists("nope"));

  absl::StatusOr<std::shared_ptr<engine::Index>> docs = catalog_->Get("docs");
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_EQ((*docs)->name(), "docs");
  EXPECT_EQ((*docs)->dim(), 4u);
  const IndexInfo info = (*docs)->Info();
  EXPECT_EQ(info.space, Space::kL2);
  EXPECT_FALSE(info.initialized);
  EXPECT_EQ(info.element_count, 0u);

  const std::vector<IndexInfo> list = catalog_->List();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "alpha");
  EXPECT_EQ(list[0].space, Space::kCosine);
  EXPECT_EQ(list[0].dim, 3u);
  EXPECT_EQ(list[1].name, "docs");
  EXPECT_EQ(list[2].name, "向量");
  EXPECT_EQ(list[2].dim, 65536u);

  ASSERT_TRUE(catalog_->Drop("docs").ok());
  EXPECT_FALSE(catalog_->Exists("docs"));
  EXPECT_TRUE(StatusIs(catalog_->Get("docs").status(), absl::StatusCode::kNotFound, {"docs"}));
  EXPECT_TRUE(StatusIs(catalog_->Drop("docs"), absl::StatusCode::kNotFound, {"docs"}));
  EXPECT_EQ(catalog_->List().size(), 2u);

  // The held Index now refuses every call.
  EXPECT_TRUE(StatusIs((*docs)->Init({.max_elements = 10}), absl::StatusCode::kNotFound));
  EXPECT_TRUE(StatusIs((*docs)->Ids().status(), absl::StatusCode::kNotFound));

  // The name is free again, for a fresh index.
  ASSERT_TRUE(catalog_->Create("docs", Space::kIp, 9).ok());
  EXPECT_EQ(GetIndex("docs")->dim(), 9u);
  EXPECT_FALSE(GetIndex("docs")->Info().initialized);
}

TEST_F(CatalogTest, CallsPastTheirDeadlineStopWithNothingChanged) {
  std::shared_ptr<engine::Index> index = MakeIndex("late", Space::kL2, 2, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(std::vector<float>{1, 2, 3, 4}, std::vector<uint64_t>{1, 2}).ok());
  const engine::Deadline past = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  EXPECT_TRUE(
      StatusIs(index->Add(std::vector<float>{5, 6}, std::vector<uint64_t>{3}, past).status(),
               absl::StatusCode::kDeadlineExceeded, {"index 'late'", "nothing added"}));
  EXPECT_TRUE(StatusIs(index->Delete(std::vector<uint64_t>{1}, past).status(),
                       absl::StatusCode::kDeadlineExceeded, {"nothing deleted"}));
  std::vector<uint64_t> ids(2);
  std::vector<float> distances(2);
  EXPECT_TRUE(StatusIs(index->Query(std::vector<float>{1, 2, 3, 4}, 1, 0, ids, distances, past),
                       absl::StatusCode::kDeadlineExceeded,
                       {"index 'late'", "0 of 2 query vectors answered"}));
  absl::StatusOr<std::vector<uint64_t>> live = index->Ids();
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(*live, (std::vector<uint64_t>{1, 2}));

  // A deadline still ahead changes nothing.
  const engine::Deadline later = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  ASSERT_TRUE(index->Add(std::vector<float>{5, 6}, std::vector<uint64_t>{3}, later).ok());
  ASSERT_TRUE(index->Delete(std::vector<uint64_t>{1}, later).ok());
  ASSERT_TRUE(index->Query(std::vector<float>{5, 6, 3, 4}, 1, 0, ids, distances, later).ok());
  EXPECT_EQ(ids, (std::vector<uint64_t>{3, 2}));
}

TEST_F(CatalogTest, DroppedIndexRefusesWritesAndDataIsGone) {
  std::shared_ptr<engine::Index> index = MakeIndex("gone", Space::kL2, 2, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(std::vector<float>{1, 2, 3, 4}, std::vector<uint64_t>{1, 2}).ok());
  ASSERT_TRUE(catalog_->Drop("gone").ok());
  EXPECT_TRUE(StatusIs(index->Add(std::vector<float>{1, 2}, std::vector<uint64_t>{3}).status(),
                       absl::StatusCode::kNotFound));
  EXPECT_TRUE(
      StatusIs(index->Delete(std::vector<uint64_t>{1}).status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(StatusIs(RunQuery(*index, std::vector<float>{1, 2}, 1).status(),
                       absl::StatusCode::kNotFound));
  EXPECT_TRUE(StatusIs(index->SetEf(20), absl::StatusCode::kNotFound));
  EXPECT_TRUE(StatusIs(index->Resize(20), absl::StatusCode::kNotFound));
  index.reset();  // an Index may not outlive its Catalog (IndexContext), which CloseAndReopen ends

  ASSERT_TRUE(catalog_->Create("gone", Space::kL2, 2).ok());
  ASSERT_TRUE(GetIndex("gone")->Init({.max_elements = 10}).ok());
  absl::StatusOr<std::vector<uint64_t>> ids = GetIndex("gone")->Ids();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_TRUE(ids->empty());
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  EXPECT_TRUE(GetIndex("gone")->Ids()->empty());
}

TEST_F(CatalogTest, CreateErrors) {
  ASSERT_TRUE(catalog_->Create("docs", Space::kL2, 4).ok());
  EXPECT_TRUE(StatusIs(catalog_->Create("docs", Space::kL2, 4), absl::StatusCode::kAlreadyExists,
                       {"docs"}));
  EXPECT_TRUE(StatusIs(catalog_->Create("docs", Space::kIp, 8), absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(
      StatusIs(catalog_->Create("d0", Space::kL2, 0), absl::StatusCode::kInvalidArgument, {"0"}));
  EXPECT_TRUE(StatusIs(catalog_->Create("d65537", Space::kL2, 65537),
                       absl::StatusCode::kInvalidArgument, {"65537"}));
  EXPECT_TRUE(StatusIs(catalog_->Create("a b", Space::kL2, 4), absl::StatusCode::kInvalidArgument,
                       {"byte 1"}));
  EXPECT_TRUE(StatusIs(catalog_->Create("", Space::kL2, 4), absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(StatusIs(catalog_->Create("bad_space", static_cast<Space>(9), 4),
                       absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(StatusIs(catalog_->Get("a/b").status(), absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(StatusIs(catalog_->Get("nope").status(), absl::StatusCode::kNotFound, {"nope"}));
  EXPECT_TRUE(StatusIs(catalog_->Drop("nope"), absl::StatusCode::kNotFound, {"nope"}));
  // Nothing was created by the refused calls.
  ASSERT_EQ(catalog_->List().size(), 1u);
  EXPECT_EQ(catalog_->List()[0].name, "docs");
  EXPECT_EQ(catalog_->List()[0].dim, 4u);
}

TEST_F(CatalogTest, InitDefaultsAndValidation) {
  ASSERT_TRUE(catalog_->Create("docs", Space::kL2, 4).ok());
  std::shared_ptr<engine::Index> index = GetIndex("docs");
  ASSERT_NE(index, nullptr);

  // Uninitialised: every data call is a FAILED_PRECONDITION.
  EXPECT_TRUE(
      StatusIs(index->Add(std::vector<float>{1, 2, 3, 4}, std::vector<uint64_t>{1}).status(),
               absl::StatusCode::kFailedPrecondition, {"docs"}));
  EXPECT_TRUE(StatusIs(RunQuery(*index, std::vector<float>{1, 2, 3, 4}, 1).status(),
                       absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(StatusIs(index->Ids().status(), absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(StatusIs(index->Delete(std::vector<uint64_t>{1}).status(),
                       absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(StatusIs(index->SetEf(20), absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(StatusIs(index->Resize(20), absl::StatusCode::kFailedPrecondition));

  EXPECT_TRUE(StatusIs(index->Init({.max_elements = 0}), absl::StatusCode::kInvalidArgument,
                       {"max_elements"}));
  EXPECT_TRUE(StatusIs(index->Init({.max_elements = 10, .m = 1}),
                       absl::StatusCode::kInvalidArgument, {"got 1"}));
  EXPECT_TRUE(StatusIs(index->Init({.max_elements = 10, .m = 4096}),
                       absl::StatusCode::kInvalidArgument, {"4096"}));
  EXPECT_TRUE(StatusIs(index->Init({.max_elements = 10, .ef_construction = 100001}),
                       absl::StatusCode::kInvalidArgument, {"100001"}));
  EXPECT_TRUE(StatusIs(index->Init({.max_elements = kMaxElements + 1}),
                       absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(index->Info().initialized);

  ASSERT_TRUE(index->Init({.max_elements = 100}).ok());
  IndexInfo info = index->Info();
  EXPECT_TRUE(info.initialized);
  EXPECT_EQ(info.m, 16u);
  EXPECT_EQ(info.ef_construction, 200u);
  EXPECT_EQ(info.ef, 10u);
  EXPECT_EQ(info.max_elements, 100u);
  EXPECT_EQ(info.element_count, 0u);

  EXPECT_TRUE(StatusIs(index->Init({.max_elements = 100}), absl::StatusCode::kFailedPrecondition,
                       {"docs"}));
  EXPECT_TRUE(
      StatusIs(index->Init({.max_elements = 5, .m = 8}), absl::StatusCode::kFailedPrecondition));
  info = index->Info();
  EXPECT_EQ(info.max_elements, 100u);
  EXPECT_EQ(info.m, 16u);

  // Explicit parameters are kept.
  std::shared_ptr<engine::Index> custom =
      MakeIndex("custom", Space::kIp, 4, {.max_elements = 50, .ef_construction = 64, .m = 8});
  ASSERT_NE(custom, nullptr);
  EXPECT_EQ(custom->Info().m, 8u);
  EXPECT_EQ(custom->Info().ef_construction, 64u);
  EXPECT_EQ(custom->Info().max_elements, 50u);
}

TEST_F(CatalogTest, AddQueryIdsAndGetVectors) {
  constexpr uint32_t dim = 6;
  std::shared_ptr<engine::Index> index = MakeIndex("docs", Space::kL2, dim, {.max_elements = 300});
  ASSERT_NE(index, nullptr);
  const std::vector<float> data = RandomVectors(200, dim, 11);
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 200; ++i) ids.push_back(i * 7 + 3);  // sparse, ascending
  absl::StatusOr<uint64_t> added = index->Add(data, ids);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, 200u);
  EXPECT_EQ(index->Info().element_count, 200u);

  absl::StatusOr<std::vector<uint64_t>> listed = index->Ids();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(*listed, ids);

  // GetVectors returns bit-identical vectors in the order asked.
  const std::vector<uint64_t> asked = {ids[5], ids[0], ids[199], ids[5]};
  absl::StatusOr<std::vector<float>> got = Vectors(*index, asked);
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < asked.size(); ++i) {
    const size_t row = (asked[i] - 3) / 7;
    EXPECT_EQ(0, std::memcmp(got->data() + i * dim, data.data() + row * dim, dim * sizeof(float)))
        << "id " << asked[i];
  }
  EXPECT_TRUE(
      StatusIs(Vectors(*index, {ids[0], 4}).status(), absl::StatusCode::kNotFound, {"id 4"}));

  // A batch of queries is answered exactly (ef above the item count searches everything).
  const std::vector<float> queries = RandomVectors(25, dim, 12);
  absl::StatusOr<QueryResult> result = RunQuery(*index, queries, 7, 500);
  ASSERT_TRUE(result.ok()) << result.status();
  for (size_t q = 0; q < 25; ++q) {
    const std::vector<Neighbour> expected =
        BruteForce(data, ids, {}, queries.data() + q * dim, dim, 7);
    for (size_t i = 0; i < 7; ++i) {
      EXPECT_EQ(result->ids[q * 7 + i], expected[i].id) << "query " << q << " rank " << i;
      EXPECT_NEAR(result->distances[q * 7 + i], expected[i].distance,
                  1e-4f * (1 + expected[i].distance));
    }
  }
  // The default ef also finds an item's own vector first.
  absl::StatusOr<QueryResult> self = RunQuery(*index, std::span(data).subspan(42 * dim, dim), 1);
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(self->ids[0], ids[42]);
  EXPECT_EQ(self->distances[0], 0.0f);

  // Re-adding an id replaces its vector without taking more room.
  const std::vector<float> replacement(dim, 0.125f);
  ASSERT_TRUE(index->Add(replacement, std::vector<uint64_t>{ids[10]}).ok());
  EXPECT_EQ(index->Info().element_count, 200u);
  got = Vectors(*index, {ids[10]});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, replacement);
  self = RunQuery(*index, replacement, 1);
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(self->ids[0], ids[10]);

  // An empty batch is accepted and changes nothing.
  absl::StatusOr<uint64_t> none = index->Add({}, {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, 0u);
}

TEST_F(CatalogTest, RefusedAddsChangeNothing) {
  constexpr uint32_t dim = 4;
  std::shared_ptr<engine::Index> index = MakeIndex("docs", Space::kL2, dim, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  const std::vector<float> data = RandomVectors(8, dim, 13);
  ASSERT_TRUE(index->Add(data, Range(0, 8)).ok());
  const std::vector<uint64_t> before = *index->Ids();
  const std::vector<float> vectors_before = *Vectors(*index, before);

  // Size mismatch.
  EXPECT_TRUE(StatusIs(index->Add(std::vector<float>(7), Range(100, 102)).status(),
                       absl::StatusCode::kInvalidArgument, {"docs", "7"}));
  // NaN in vector 2, component 3; Inf elsewhere.
  std::vector<float> bad = RandomVectors(3, dim, 14);
  bad[2 * dim + 3] = std::nanf("");
  EXPECT_TRUE(StatusIs(index->Add(bad, std::vector<uint64_t>{0, 100, 101}).status(),
                       absl::StatusCode::kInvalidArgument, {"vector 2", "component 3"}));
  bad[2 * dim + 3] = 0;
  bad[1 * dim + 0] = -INFINITY;
  EXPECT_TRUE(StatusIs(index->Add(bad, std::vector<uint64_t>{0, 100, 101}).status(),
                       absl::StatusCode::kInvalidArgument, {"vector 1", "component 0"}));
  // An id twice in one batch.
  EXPECT_TRUE(
      StatusIs(index->Add(RandomVectors(3, dim, 15), std::vector<uint64_t>{1, 100, 1}).status(),
               absl::StatusCode::kInvalidArgument, {"id 1", "twice"}));
  // Three new ids do not fit in the two free slots: none is added, and the existing id in the
  // batch keeps its old vector.
  EXPECT_TRUE(StatusIs(
      index->Add(RandomVectors(4, dim, 16), std::vector<uint64_t>{0, 100, 101, 102}).status(),
      absl::StatusCode::kResourceExhausted, {"10"}));

  EXPECT_EQ(*index->Ids(), before);
  EXPECT_EQ(*Vectors(*index, before), vectors_before);
  EXPECT_EQ(index->Info().element_count, 8u);

  // Two new ids and two replacements fit exactly.
  ASSERT_TRUE(index->Add(RandomVectors(4, dim, 17), std::vector<uint64_t>{0, 1, 100, 101}).ok());
  EXPECT_EQ(index->Info().element_count, 10u);
  EXPECT_TRUE(StatusIs(index->Add(RandomVectors(1, dim, 18), std::vector<uint64_t>{102}).status(),
                       absl::StatusCode::kResourceExhausted));

  // A deleted item frees its place for a new id at once, without ResizeIndex; reviving the
  // deleted id is then a new item like any other.
  ASSERT_TRUE(index->Delete(std::vector<uint64_t>{5}).ok());
  ASSERT_TRUE(index->Add(RandomVectors(1, dim, 19), std::vector<uint64_t>{102}).ok());
  EXPECT_EQ(index->Info().element_count, 10u);
  EXPECT_TRUE(StatusIs(index->Add(RandomVectors(1, dim, 20), std::vector<uint64_t>{5}).status(),
                       absl::StatusCode::kResourceExhausted, {"10 live items"}));
  // The two replaced vectors and the deleted item are tombstones until a compaction.
  EXPECT_EQ(index->Info().tombstones, 3u);
  absl::StatusOr<CompactStats> compacted = index->Compact();
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  EXPECT_EQ(compacted->tombstones_removed, 3u);
  EXPECT_EQ(compacted->live, 10u);
  EXPECT_EQ(index->Info().tombstones, 0u);
  EXPECT_EQ(index->Info().element_count, 10u);

  // All of this survives a restart unchanged.
  const std::vector<uint64_t> ids_now = *index->Ids();
  const std::vector<float> vectors_now = *Vectors(*index, ids_now);
  index.reset();
  ASSERT_NO_FATAL_FAILURE(Open());  // no Close: the graph is rebuilt from storage
  EXPECT_EQ(*GetIndex("docs")->Ids(), ids_now);
  EXPECT_EQ(*Vectors(*GetIndex("docs"), ids_now), vectors_now);
}

TEST_F(CatalogTest, DeleteSemantics) {
  constexpr uint32_t dim = 4;
  std::shared_ptr<engine::Index> index = MakeIndex("docs", Space::kL2, dim, {.max_elements = 50});
  ASSERT_NE(index, nullptr);
  const std::vector<float> data = RandomVectors(20, dim, 21);
  ASSERT_TRUE(index->Add(data, Range(0, 20)).ok());

  absl::StatusOr<uint64_t> deleted = index->Delete(std::vector<uint64_t>{3, 4, 4});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2u);
  deleted = index->Delete(std::vector<uint64_t>{3, 5});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1u);  // 3 was already deleted

  // One unknown id: nothing is deleted.
  EXPECT_TRUE(StatusIs(index->Delete(std::vector<uint64_t>{6, 999, 7}).status(),
                       absl::StatusCode::kNotFound, {"999"}));
  IndexInfo info = index->Info();
  EXPECT_EQ(info.element_count, 17u);
  EXPECT_EQ(info.deleted_count, 3u);
  std::vector<uint64_t> live = Range(0, 20);
  std::erase_if(live, [](uint64_t id) { return id >= 3 && id <= 5; });
  EXPECT_EQ(*index->Ids(), live);

  EXPECT_TRUE(
      StatusIs(Vectors(*index, {4}).status(), absl::StatusCode::kNotFound, {"4", "deleted"}));
  // A deleted item is never an answer, not even to its own vector.
  absl::StatusOr<QueryResult> result =
      RunQuery(*index, std::span(data).subspan(4 * dim, dim), 20, 100);
  ASSERT_TRUE(result.ok()) << result.status();
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_TRUE(result->ids[i] != 3 && result->ids[i] != 4 && result->ids[i] != 5)
        << result->ids[i];
  }
}

TEST_F(CatalogTest, QueryPadsMissingResults) {
  constexpr uint32_t dim = 3;
  std::shared_ptr<engine::Index> index = MakeIndex("docs", Space::kL2, dim, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  const std::vector<float> query = {0, 0, 0, 1, 1, 1};  // two queries

  absl::StatusOr<QueryResult> empty = RunQuery(*index, query, 2);
  ASSERT_TRUE(empty.ok()) << empty.status();
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(empty->ids[i], kMissingId);
    EXPECT_EQ(empty->distances[i], kMissingDistance);
  }

  ASSERT_TRUE(
      index->Add(std::vector<float>{1, 0, 0, 0, 2, 0, 0, 0, 3}, std::vector<uint64_t>{10, 20, 30})
          .ok());
  ASSERT_TRUE(index->Delete(std::vector<uint64_t>{20}).ok());
  absl::StatusOr<QueryResult> padded = RunQuery(*index, query, 5);
  ASSERT_TRUE(padded.ok()) << padded.status();
  // Row 0, query (0,0,0): 10 at 1, 30 at 9, then padding.
  EXPECT_EQ(padded->ids[0], 10u);
  EXPECT_FLOAT_EQ(padded->distances[0], 1.0f);
  EXPECT_EQ(padded->ids[1], 30u);
  EXPECT_FLOAT_EQ(padded->distances[1], 9.0f);
  for (size_t i = 2; i < 5; ++i) {
    EXPECT_EQ(padded->ids[i], kMissingId) << i;
    EXPECT_EQ(padded->distances[i], kMissingDistance) << i;
  }
  // Row 1, query (1,1,1): 10 at 2, 30 at 6.
  EXPECT_EQ(padded->ids[5], 10u);
  EXPECT_FLOAT_EQ(padded->distances[5], 2.0f);
  EXPECT_EQ(padded->ids[6], 30u);
  EXPECT_FLOAT_EQ(padded->distances[6], 6.0f);
  for (size_t i = 7; i < 10; ++i) {
    EXPECT_EQ(padded->ids[i], kMissingId) << i;
    EXPECT_EQ(padded->distances[i], kMissingDistance) << i;
  }

  ASSERT_TRUE(index->Delete(std::vector<uint64_t>{10, 30}).ok());
  absl::StatusOr<QueryResult> gone = RunQuery(*index, query, 3);
  ASSERT_TRUE(gone.ok()) << gone.status();
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(gone->ids[i], kMissingId) << i;
}

TEST_F(CatalogTest, QueryValidation) {
  constexpr uint32_t dim = 3;
  std::shared_ptr<engine::Index> index = MakeIndex("docs", Space::kL2, dim, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(std::vector<float>{1, 2, 3}, std::vector<uint64_t>{1}).ok());
  const std::vector<float> query = {1, 2, 3};
  EXPECT_TRUE(StatusIs(RunQuery(*index, query, 0).status(), absl::StatusCode::kInvalidArgument,
                       {"k", "0"}));
  EXPECT_TRUE(StatusIs(RunQuery(*index, query, kMaxK + 1).status(),
                       absl::StatusCode::kInvalidArgument, {"10001"}));
  EXPECT_TRUE(StatusIs(RunQuery(*index, query, 1, kMaxEf + 1).status(),
                       absl::StatusCode::kInvalidArgument, {"100001"}));
  EXPECT_TRUE(StatusIs(RunQuery(*index, std::vector<float>{1, 2, 3, 4}, 1).status(),
                       absl::StatusCode::kInvalidArgument, {"4", "3"}));
  EXPECT_TRUE(StatusIs(RunQuery(*index, std::vector<float>{1, 2, 3, 4, INFINITY, 6}, 1).status(),
                       absl::StatusCode::kInvalidArgument, {"query vector 1", "component 1"}));
  EXPECT_TRUE(RunQuery(*index, query, kMaxK, kMaxEf).ok());
}

TEST_F(CatalogTest, CosineNormalisesVectorsAndQueries) {
  std::shared_ptr<engine::Index> index = MakeIndex("cos", Space::kCosine, 3, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(std::vector<float>{3, 4, 0, 0, 0, 2}, std::vector<uint64_t>{1, 2}).ok());
  absl::StatusOr<std::vector<float>> stored = Vectors(*index, {1, 2});
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_NEAR((*stored)[0], 0.6f, 1e-6f);
  EXPECT_NEAR((*stored)[1], 0.8f, 1e-6f);
  EXPECT_NEAR((*stored)[2], 0.0f, 1e-6f);
  EXPECT_NEAR((*stored)[5], 1.0f, 1e-6f);

  // Scale does not matter; distance is 1 - cosine similarity.
  absl::StatusOr<QueryResult> result = RunQuery(*index, std::vector<float>{60, 80, 0}, 2);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->ids[0], 1u);
  EXPECT_NEAR(result->distances[0], 0.0f, 1e-6f);
  EXPECT_EQ(result->ids[1], 2u);
  EXPECT_NEAR(result->distances[1], 1.0f, 1e-6f);

  result = RunQuery(*index, std::vector<float>{0.1f, 0, 0}, 1);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->ids[0], 1u);
  EXPECT_NEAR(result->distances[0], 0.4f, 1e-6f);
}

TEST_F(CatalogTest, InnerProductDistance) {
  std::shared_ptr<engine::Index> index = MakeIndex("ip", Space::kIp, 2, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(std::vector<float>{2, 0, 0, 1}, std::vector<uint64_t>{1, 2}).ok());
  absl::StatusOr<QueryResult> result = RunQuery(*index, std::vector<float>{1, 1}, 2);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->ids[0], 1u);
  EXPECT_FLOAT_EQ(result->distances[0], -1.0f);  // 1 - 2
  EXPECT_EQ(result->ids[1], 2u);
  EXPECT_FLOAT_EQ(result->distances[1], 0.0f);
  // IP does not normalise: the stored vector is returned as given.
  EXPECT_EQ(*Vectors(*index, {1}), (std::vector<float>{2, 0}));
}

TEST_F(CatalogTest, ResizeAndSetEf) {
  constexpr uint32_t dim = 4;
  std::shared_ptr<engine::Index> index = MakeIndex("docs", Space::kL2, dim, {.max_elements = 10});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(RandomVectors(10, dim, 31), Range(0, 10)).ok());
  ASSERT_TRUE(index->Delete(Range(0, 3)).ok());

  // 10 stored, 3 of them deleted: only the 7 live ones count.
  EXPECT_TRUE(StatusIs(index->Resize(6), absl::StatusCode::kFailedPrecondition, {"7", "6"}));
  EXPECT_TRUE(StatusIs(index->Resize(0), absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(index->Info().max_elements, 10u);
  ASSERT_TRUE(index->Resize(7).ok());
  EXPECT_TRUE(StatusIs(index->Add(RandomVectors(1, dim, 30), std::vector<uint64_t>{200}).status(),
                       absl::StatusCode::kResourceExhausted));
  ASSERT_TRUE(index->Resize(25).ok());
  EXPECT_EQ(index->Info().max_elements, 25u);
  ASSERT_TRUE(index->Add(RandomVectors(18, dim, 32), Range(100, 118)).ok());
  EXPECT_TRUE(StatusIs(index->Add(RandomVectors(1, dim, 33), std::vector<uint64_t>{200}).status(),
                       absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(index->Info().element_count, 25u);

  EXPECT_TRUE(StatusIs(index->SetEf(0), absl::StatusCode::kInvalidArgument, {"0"}));
  EXPECT_TRUE(StatusIs(index->SetEf(kMaxEf + 1), absl::StatusCode::kInvalidArgument, {"100001"}));
  EXPECT_EQ(index->Info().ef, 10u);
  ASSERT_TRUE(index->SetEf(1).ok());
  EXPECT_EQ(index->Info().ef, 1u);
  ASSERT_TRUE(index->SetEf(kMaxEf).ok());
  EXPECT_EQ(index->Info().ef, kMaxEf);
  ASSERT_TRUE(index->SetEf(64).ok());
  EXPECT_EQ(index->Info().ef, 64u);
}

TEST_F(CatalogTest, MemoryAdmissionOnInitAndResize) {
  ASSERT_TRUE(catalog_->Create("huge", Space::kL2, 1024).ok());
  std::shared_ptr<engine::Index> index = GetIndex("huge");
  ASSERT_NE(index, nullptr);
  // About 4e9 elements of 4 KiB vectors: no machine running these tests has that memory.
  EXPECT_TRUE(StatusIs(index->Init({.max_elements = kMaxElements}),
                       absl::StatusCode::kResourceExhausted, {"MiB"}));
  EXPECT_FALSE(index->Info().initialized);
  ASSERT_TRUE(index->Init({.max_elements = 10}).ok());
  EXPECT_TRUE(StatusIs(index->Resize(kMaxElements), absl::StatusCode::kResourceExhausted, {"MiB"}));
  EXPECT_EQ(index->Info().max_elements, 10u);
  index.reset();  // an Index may not outlive its Catalog
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  EXPECT_EQ(GetIndex("huge")->Info().max_elements, 10u);
}

TEST_F(CatalogTest, LargestDimensionWorks) {
  std::shared_ptr<engine::Index> index =
      MakeIndex("wide", Space::kL2, kMaxDimension, {.max_elements = 3});
  ASSERT_NE(index, nullptr);
  const std::vector<float> data = RandomVectors(3, kMaxDimension, 81);
  ASSERT_TRUE(index->Add(data, Range(1, 4)).ok());
  absl::StatusOr<QueryResult> self =
      RunQuery(*index, std::span(data).subspan(kMaxDimension, kMaxDimension), 1);
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(self->ids[0], 2u);
  EXPECT_EQ(*Vectors(*index, {3}),
            std::vector<float>(data.begin() + 2 * kMaxDimension, data.end()));
}

TEST_F(CatalogTest, SecondOpenOfTheSameDirectoryFailsNamingIt) {
  ASSERT_TRUE(catalog_->Create("docs", Space::kL2, 4).ok());
  absl::StatusOr<std::unique_ptr<Catalog>> second = Catalog::Open(dir(), {.threads = 1});
  EXPECT_FALSE(second.ok());
  if (!second.ok()) {
    EXPECT_NE(second.status().message().find(dir()), absl::string_view::npos) << second.status();
  }
  // The first keeps working.
  EXPECT_TRUE(catalog_->Exists("docs"));
  EXPECT_TRUE(GetIndex("docs")->Init({.max_elements = 4}).ok());
}

// ---------------------------------------------------------------------------------------------
// Persistence through the engine

struct IndexState {
  IndexInfo info;
  std::vector<uint64_t> ids;
  std::vector<float> vectors;             // of ids, in order
  std::vector<uint64_t> deleted;          // ids refused by GetVectors as deleted
  std::vector<uint64_t> exact_query_ids;  // k=5, ef=1000 on fixed queries
  std::vector<float> exact_query_distances;
};

IndexState Capture(const Index& index, const std::vector<uint64_t>& maybe_deleted) {
  IndexState state;
  state.info = index.Info();
  if (!state.info.initialized) return state;
  state.ids = *index.Ids();
  absl::StatusOr<std::vector<float>> vectors = Vectors(index, state.ids);
  EXPECT_TRUE(vectors.ok()) << vectors.status();
  if (vectors.ok()) state.vectors = *vectors;
  for (uint64_t id : maybe_deleted) {
    absl::Status s = Vectors(index, {id}).status();
    if (absl::IsNotFound(s) && s.message().find("deleted") != absl::string_view::npos) {
      state.deleted.push_back(id);
    }
  }
  const std::vector<float> queries = RandomVectors(10, index.dim(), 99);
  absl::StatusOr<QueryResult> result = RunQuery(index, queries, 5, 1000);
  EXPECT_TRUE(result.ok()) << result.status();
  if (result.ok()) {
    state.exact_query_ids = result->ids;
    state.exact_query_distances = result->distances;
  }
  return state;
}

void ExpectSameState(const IndexState& a, const IndexState& b) {
  EXPECT_EQ(a.info.name, b.info.name);
  EXPECT_EQ(a.info.space, b.info.space);
  EXPECT_EQ(a.info.dim, b.info.dim);
  EXPECT_EQ(a.info.initialized, b.info.initialized);
  EXPECT_EQ(a.info.m, b.info.m);
  EXPECT_EQ(a.info.ef_construction, b.info.ef_construction);
  EXPECT_EQ(a.info.ef, b.info.ef);
  EXPECT_EQ(a.info.max_elements, b.info.max_elements);
  EXPECT_EQ(a.info.element_count, b.info.element_count);
  // Tombstones are not compared: a graph rebuilt from storage has none.
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_EQ(a.vectors.size(), b.vectors.size());
  EXPECT_TRUE(a.vectors.empty() || std::memcmp(a.vectors.data(), b.vectors.data(),
                                               a.vectors.size() * sizeof(float)) == 0)
      << "vectors are not bit-identical";
  EXPECT_EQ(a.deleted, b.deleted);
  EXPECT_EQ(a.exact_query_ids, b.exact_query_ids);
  EXPECT_EQ(a.exact_query_distances, b.exact_query_distances);
}

class PersistenceTest : public CatalogTest {
 protected:
  // Four indexes: l2 with deletes, ef and a resize; cosine; initialised but empty; and not
  // initialised.
  void Populate() {
    std::shared_ptr<engine::Index> l2 =
        MakeIndex("l2", Space::kL2, 8, {.max_elements = 300, .ef_construction = 100, .m = 12});
    ASSERT_NE(l2, nullptr);
    ASSERT_TRUE(l2->Add(RandomVectors(200, 8, 41), Range(1, 201)).ok());
    ASSERT_TRUE(l2->Add(RandomVectors(50, 8, 42), Range(1000, 1050)).ok());
    std::vector<uint64_t> gone;
    for (uint64_t id = 1; id <= 200; id += 9) gone.push_back(id);
    ASSERT_TRUE(l2->Delete(gone).ok());
    ASSERT_TRUE(l2->SetEf(50).ok());
    ASSERT_TRUE(l2->Resize(400).ok());

    std::shared_ptr<engine::Index> cos = MakeIndex("cos", Space::kCosine, 5, {.max_elements = 100});
    ASSERT_NE(cos, nullptr);
    ASSERT_TRUE(cos->Add(RandomVectors(60, 5, 43), Range(0, 60)).ok());
    ASSERT_TRUE(cos->Delete(std::vector<uint64_t>{0, 59}).ok());

    ASSERT_NE(MakeIndex("empty", Space::kIp, 3, {.max_elements = 7}), nullptr);
    ASSERT_TRUE(catalog_->Create("uninit", Space::kL2, 2).ok());
  }

  std::map<std::string, IndexState> CaptureAll() {
    std::map<std::string, IndexState> states;
    for (const IndexInfo& info : catalog_->List()) {
      states[info.name] = Capture(*GetIndex(info.name), Range(0, 1100));
    }
    return states;
  }

  void ExpectRestored(const std::map<std::string, IndexState>& before) {
    const std::map<std::string, IndexState> after = CaptureAll();
    ASSERT_EQ(after.size(), before.size());
    for (const auto& [name, state] : before) {
      SCOPED_TRACE("index " + name);
      ASSERT_TRUE(after.contains(name));
      ExpectSameState(state, after.at(name));
    }
    // Spot checks that do not depend on Capture.
    EXPECT_EQ(before.at("l2").deleted.size(), 23u);
    EXPECT_EQ(before.at("cos").deleted, (std::vector<uint64_t>{0, 59}));
    EXPECT_EQ(after.at("l2").info.max_elements, 400u);
    EXPECT_EQ(after.at("l2").info.ef, 50u);
    EXPECT_EQ(after.at("l2").info.m, 12u);
    EXPECT_EQ(after.at("l2").info.ef_construction, 100u);
    EXPECT_FALSE(after.at("uninit").info.initialized);
  }

  // The reopened indexes keep working: writes, capacity and deletes.
  void ExpectWritable() {
    std::shared_ptr<engine::Index> l2 = GetIndex("l2");
    ASSERT_NE(l2, nullptr);
    // 250 stored, 23 deleted: 227 live, and 173 more fill max_elements 400.
    const std::vector<float> more = RandomVectors(173, 8, 44);
    ASSERT_TRUE(l2->Add(more, Range(2000, 2173)).ok());
    EXPECT_TRUE(StatusIs(l2->Add(RandomVectors(1, 8, 47), std::vector<uint64_t>{3000}).status(),
                         absl::StatusCode::kResourceExhausted));
    absl::StatusOr<QueryResult> self = RunQuery(*l2, std::span(more).subspan(8 * 77, 8), 1);
    ASSERT_TRUE(self.ok()) << self.status();
    EXPECT_EQ(self->ids[0], 2077u);
    ASSERT_TRUE(l2->Delete(std::vector<uint64_t>{2077}).ok());
    ASSERT_TRUE(GetIndex("empty")->Add(std::vector<float>{1, 2, 3}, std::vector<uint64_t>{5}).ok());
    ASSERT_TRUE(GetIndex("uninit")->Init({.max_elements = 4}).ok());
  }

  std::vector<fs::path> Snapshots() const {
    std::vector<fs::path> files;
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(dir() + "/graphs", ignored)) {
      if (entry.path().extension() == ".hnsw") files.push_back(entry.path());
    }
    return files;
  }
};

TEST_F(PersistenceTest, CloseAndReopenLoadsSnapshots) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  ASSERT_NO_FATAL_FAILURE(ExpectRestored(before));
  ASSERT_NO_FATAL_FAILURE(ExpectWritable());
  // And once more, with the writes made after the first reopen.
  const std::map<std::string, IndexState> again = CaptureAll();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  const std::map<std::string, IndexState> after = CaptureAll();
  for (const auto& [name, state] : again) {
    SCOPED_TRACE("index " + name);
    ExpectSameState(state, after.at(name));
  }
}

TEST_F(PersistenceTest, CloseWritesGraphSnapshots) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  ASSERT_TRUE(catalog_->Close().ok());
  // One per initialised index: l2, cos, empty.
  EXPECT_EQ(Snapshots().size(), 3u);
}

TEST_F(PersistenceTest, ReopenRebuildsWhenSnapshotsAreDeleted) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_TRUE(catalog_->Close().ok());
  catalog_.reset();
  const std::vector<fs::path> snapshots = Snapshots();
  ASSERT_FALSE(snapshots.empty());
  for (const fs::path& file : snapshots) fs::remove(file);
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(ExpectRestored(before));
  ASSERT_NO_FATAL_FAILURE(ExpectWritable());
}

TEST_F(PersistenceTest, ReopenWithoutCloseReplaysEveryAcknowledgedWrite) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  // Writes after the snapshot, then no clean shutdown: the snapshot is stale.
  ASSERT_TRUE(GetIndex("l2")->Add(RandomVectors(5, 8, 45), Range(5000, 5005)).ok());
  ASSERT_TRUE(GetIndex("l2")->Delete(std::vector<uint64_t>{1000, 5001}).ok());
  ASSERT_TRUE(GetIndex("cos")->Add(RandomVectors(1, 5, 46), std::vector<uint64_t>{0}).ok());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_NO_FATAL_FAILURE(Open());
  const std::map<std::string, IndexState> after = CaptureAll();
  for (const auto& [name, state] : before) {
    SCOPED_TRACE("index " + name);
    ExpectSameState(state, after.at(name));
  }
  EXPECT_TRUE(StatusIs(Vectors(*GetIndex("l2"), {5001}).status(), absl::StatusCode::kNotFound,
                       {"deleted"}));
  EXPECT_TRUE(Vectors(*GetIndex("cos"), {0}).ok());
  // Loaded from the snapshot with only the items written after it replayed, not rebuilt.
  EXPECT_EQ(GetIndex("l2")->UnsnapshottedItems(), 6u);  // 5000..5004 and 1000
  EXPECT_EQ(GetIndex("cos")->UnsnapshottedItems(), 1u);
  EXPECT_EQ(GetIndex("empty")->UnsnapshottedItems(), 0u);
}

TEST_F(PersistenceTest, PeriodicSnapshotsLeaveOnlyTheTailToReplay) {
  ASSERT_NO_FATAL_FAILURE(Open({.threads = 2, .sync = false, .snapshot_every = 100}));
  std::shared_ptr<engine::Index> index =
      MakeIndex("busy", Space::kL2, 6, {.max_elements = 2000, .ef_construction = 100});
  ASSERT_NE(index, nullptr);
  const std::vector<float> vectors = RandomVectors(1000, 6, 50);
  for (uint64_t batch = 0; batch < 10; ++batch) {
    ASSERT_TRUE(index
                    ->Add(std::span(vectors).subspan(batch * 600, 600),
                          Range(batch * 100, batch * 100 + 100))
                    .ok());
  }
  // The background thread snapshots within its poll interval once 100 items are written.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((index->UnsnapshottedItems() >= 100 || Snapshots().empty()) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_LT(index->UnsnapshottedItems(), 100u);
  ASSERT_EQ(Snapshots().size(), 1u);
  // A tail after the snapshot: an update, a delete and a new item; then a crash (no Close).
  ASSERT_TRUE(index->Add(RandomVectors(1, 6, 51), std::vector<uint64_t>{5}).ok());
  ASSERT_TRUE(index->Delete(std::vector<uint64_t>{6, 999}).ok());
  ASSERT_TRUE(index->Add(RandomVectors(1, 6, 52), std::vector<uint64_t>{1500}).ok());
  const IndexState before = Capture(*index, Range(0, 2000));
  index.reset();
  ASSERT_NO_FATAL_FAILURE(Open({.threads = 2, .sync = false, .snapshot_every = 0}));
  ExpectSameState(before, Capture(*GetIndex("busy"), Range(0, 2000)));
  EXPECT_EQ(GetIndex("busy")->UnsnapshottedItems(), 4u);  // replayed 5, 6, 999 and 1500
}

TEST_F(PersistenceTest, ReopenRebuildsWhenASnapshotVectorByteIsFlipped) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_TRUE(catalog_->Close().ok());
  catalog_.reset();
  const std::vector<fs::path> snapshots = Snapshots();
  ASSERT_FALSE(snapshots.empty());
  for (const fs::path& file : snapshots) {
    std::string bytes = ReadFile(file);
    const FileLayout layout(bytes);
    if (layout.count == 0) {
      bytes[FileLayout::kMaxElementsAt] ^= 0x01;
    } else {
      // A vector byte: the file stays well-formed, only a checksum can tell.
      bytes[layout.level0_offset(layout.count / 2) + layout.offset_data + 1] ^= 0x40;
    }
    WriteFile(file, bytes);
  }
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(ExpectRestored(before));
  EXPECT_EQ(GetIndex("l2")->UnsnapshottedItems(), 227u);  // rebuilt: every live item
  ASSERT_NO_FATAL_FAILURE(ExpectWritable());
}

TEST_F(PersistenceTest, ReopenRebuildsWhenASnapshotHeaderByteIsFlipped) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_TRUE(catalog_->Close().ok());
  catalog_.reset();
  for (const fs::path& file : Snapshots()) {
    std::string bytes = ReadFile(file);
    bytes[FileLayout::kElementCountAt] ^= 0x01;
    WriteFile(file, bytes);
  }
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(ExpectRestored(before));
}

TEST_F(PersistenceTest, ReopenRebuildsWhenASnapshotIsTruncated) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_TRUE(catalog_->Close().ok());
  catalog_.reset();
  for (const fs::path& file : Snapshots()) {
    fs::resize_file(file, fs::file_size(file) / 2);
  }
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(ExpectRestored(before));
}

TEST_F(PersistenceTest, BackupUnderConcurrentWritesOpensConsistently) {
  ASSERT_NO_FATAL_FAILURE(Open({.threads = 2, .sync = false, .snapshot_every = 40}));
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  ASSERT_TRUE(GetIndex("l2")->Resize(5000).ok());
  // A writer adds batches of 20 to l2 (snapshots keep being published meanwhile) while the
  // backup is taken.
  std::atomic<bool> stop = false;
  std::atomic<uint64_t> batches = 0;
  const std::vector<float> vectors = RandomVectors(20, 8, 60);
  std::thread writer([&] {
    for (uint64_t b = 0; !stop && b < 200; ++b) {
      ASSERT_TRUE(GetIndex("l2")->Add(vectors, Range(10000 + b * 20, 10020 + b * 20)).ok());
      batches = b + 1;
    }
  });
  // Wait for a background snapshot of l2 with writes after it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((Snapshots().size() < 2 || batches < 10) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::string target = tmp_.path() + "/backup";
  absl::StatusOr<std::unique_ptr<storage::BackupTarget>> made =
      storage::BackupTarget::Create(target, dir(), "");
  ASSERT_TRUE(made.ok()) << made.status();
  absl::StatusOr<uint64_t> bytes = catalog_->Backup(**made);
  const uint64_t after_backup = batches;
  stop = true;
  writer.join();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GT(*bytes, 0u);
  ASSERT_TRUE((*made)->Keep().ok());
  made->reset();
  EXPECT_TRUE(StatusIs(storage::BackupTarget::Create(target, dir(), "").status(),
                       absl::StatusCode::kAlreadyExists, {target}));

  // The copy opens (while the original keeps running) and holds whole batches, a prefix of
  // those written, and the other indexes exactly as they were.
  absl::StatusOr<std::unique_ptr<Catalog>> copy =
      Catalog::Open(target, {.threads = 2, .sync = false, .snapshot_every = 0});
  ASSERT_TRUE(copy.ok()) << copy.status();
  (*copy)->WaitUntilLoaded();
  for (const std::string name : {"cos", "empty", "uninit"}) {
    SCOPED_TRACE(name);
    ExpectSameState(before.at(name), Capture(**(*copy)->Get(name), Range(0, 1100)));
  }
  absl::StatusOr<std::vector<uint64_t>> ids = (**(*copy)->Get("l2")).Ids();
  ASSERT_TRUE(ids.ok()) << ids.status();
  const size_t added =
      std::count_if(ids->begin(), ids->end(), [](uint64_t id) { return id >= 10000; });
  EXPECT_EQ(added % 20, 0u) << "a batch is half in the backup";
  EXPECT_GE(added / 20, 10u);
  // The batch in flight when the backup returned may be in it: stored, its Add not yet back.
  EXPECT_LE(added / 20, after_backup + 1);
  EXPECT_EQ(added > 0 ? ids->back() : 0, added > 0 ? 10000 + added - 1 : 0);
  // The last batch in the copy holds its vectors. (Not checked by a self-query: every batch
  // repeats the same 20 vectors, and among hundreds of exact duplicates hnswlib at a small ef
  // may miss the zero-distance one.)
  if (added > 0) {
    std::vector<float> last(vectors.size());
    ASSERT_TRUE(
        (**(*copy)->Get("l2")).GetVectors(Range(10000 + added - 20, 10000 + added), last).ok());
    EXPECT_EQ(last, vectors);
  }
  // The copy's snapshots were usable: l2 was loaded and only its tail replayed.
  EXPECT_LT((**(*copy)->Get("l2")).UnsnapshottedItems(), ids->size());
}

// ---------------------------------------------------------------------------------------------
// Concurrency (also run under ThreadSanitizer)

TEST_F(PersistenceTest, AbortWorkStopsCallsAndTheNextOpenRebuildsFromStorage) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::map<std::string, IndexState> before = CaptureAll();
  catalog_->AbortWork();
  std::shared_ptr<engine::Index> l2 = GetIndex("l2");
  EXPECT_TRUE(StatusIs(l2->Add(RandomVectors(1, 8, 48), std::vector<uint64_t>{7000}).status(),
                       absl::StatusCode::kUnavailable, {"shutting down", "nothing written"}));
  EXPECT_TRUE(StatusIs(RunQuery(*l2, RandomVectors(1, 8, 49), 1).status(),
                       absl::StatusCode::kUnavailable, {"shutting down"}));
  l2.reset();  // an Index may not outlive its Catalog
  ASSERT_TRUE(catalog_->Close().ok());
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(ExpectRestored(before));
}

TEST_F(CatalogTest, ConcurrentAddsAndQueries) {
  constexpr uint32_t dim = 8;
  constexpr int kWriters = 4;
  constexpr uint64_t kPerWriter = 400;
  constexpr uint64_t kBatch = 20;
  std::shared_ptr<engine::Index> index =
      MakeIndex("busy", Space::kL2, dim, {.max_elements = kWriters * kPerWriter});
  ASSERT_NE(index, nullptr);
  const std::vector<float> data = RandomVectors(kWriters * kPerWriter, dim, 51);

  std::atomic<int> writers_left{kWriters};
  std::atomic<int> write_errors{0};
  std::atomic<int> query_errors{0};
  std::atomic<int> bad_rows{0};
  std::atomic<int> queries_run{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (uint64_t start = w * kPerWriter; start < (w + 1) * kPerWriter; start += kBatch) {
        absl::StatusOr<uint64_t> added = index->Add(
            std::span(data).subspan(start * dim, kBatch * dim), Range(start, start + kBatch));
        if (!added.ok() || *added != kBatch) ++write_errors;
      }
      --writers_left;
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      const std::vector<float> queries = RandomVectors(4, dim, 60 + r);
      do {
        absl::StatusOr<QueryResult> result = RunQuery(*index, queries, 10, 40);
        if (!result.ok()) {
          ++query_errors;
          continue;
        }
        ++queries_run;
        for (size_t q = 0; q < 4; ++q) {
          std::set<uint64_t> seen;
          for (size_t i = 0; i < 10; ++i) {
            const uint64_t id = result->ids[q * 10 + i];
            const float d = result->distances[q * 10 + i];
            const bool padded = id == kMissingId;
            if ((!padded && (id >= kWriters * kPerWriter || !seen.insert(id).second)) ||
                (padded != (d == kMissingDistance)) ||
                (i > 0 && d < result->distances[q * 10 + i - 1])) {
              ++bad_rows;
            }
          }
        }
      } while (writers_left.load() > 0);
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(write_errors.load(), 0);
  EXPECT_EQ(query_errors.load(), 0);
  EXPECT_EQ(bad_rows.load(), 0);
  EXPECT_GT(queries_run.load(), 0);

  EXPECT_EQ(*index->Ids(), Range(0, kWriters * kPerWriter));
  absl::StatusOr<std::vector<float>> stored = Vectors(*index, Range(0, kWriters * kPerWriter));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, data);
  EXPECT_EQ(index->Info().element_count, kWriters * kPerWriter);
  // Every item is findable by its own vector.
  absl::StatusOr<QueryResult> self = RunQuery(*index, data, 1, 100);
  ASSERT_TRUE(self.ok()) << self.status();
  size_t misses = 0;
  for (uint64_t i = 0; i < kWriters * kPerWriter; ++i) misses += self->ids[i] != i;
  EXPECT_LE(misses, 2u);
}

TEST_F(CatalogTest, ConcurrentAddsAtCapacityAreAllOrNothing) {
  constexpr uint32_t dim = 4;
  constexpr int kThreads = 8;
  constexpr int kBatchesPerThread = 4;
  constexpr uint64_t kBatch = 5;
  constexpr uint64_t kCapacity = 100;  // room for 20 of the 32 batches
  std::shared_ptr<engine::Index> index =
      MakeIndex("full", Space::kL2, dim, {.max_elements = kCapacity});
  ASSERT_NE(index, nullptr);

  std::vector<std::vector<absl::Status>> statuses(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatchesPerThread; ++b) {
        const uint64_t first = (t * kBatchesPerThread + b) * kBatch;
        statuses[t].push_back(
            index->Add(RandomVectors(kBatch, dim, t * 100 + b), Range(first, first + kBatch))
                .status());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  std::set<uint64_t> expected;
  int accepted = 0;
  int refused = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int b = 0; b < kBatchesPerThread; ++b) {
      const absl::Status& s = statuses[t][b];
      const uint64_t first = (t * kBatchesPerThread + b) * kBatch;
      if (s.ok()) {
        ++accepted;
        for (uint64_t id = first; id < first + kBatch; ++id) expected.insert(id);
      } else {
        ++refused;
        EXPECT_TRUE(StatusIs(s, absl::StatusCode::kResourceExhausted, {"full"}));
      }
    }
  }
  EXPECT_EQ(accepted, 20);
  EXPECT_EQ(refused, 12);
  const std::vector<uint64_t> ids = *index->Ids();
  EXPECT_EQ(ids.size(), kCapacity);
  EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.end()), expected);
  EXPECT_EQ(index->Info().element_count, kCapacity);

  // Storage agrees with memory.
  index.reset();
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_EQ(GetIndex("full")->Ids()->size(), kCapacity);
}

TEST_F(CatalogTest, ConcurrentMixedWritesReachTheExpectedState) {
  constexpr uint32_t dim = 4;
  constexpr int kWriters = 3;
  constexpr uint64_t kPerWriter = 200;
  constexpr uint64_t kBatch = 10;
  std::shared_ptr<engine::Index> index =
      MakeIndex("mixed", Space::kL2, dim, {.max_elements = kWriters * kPerWriter});
  ASSERT_NE(index, nullptr);
  std::atomic<int> errors{0};
  std::atomic<int> writers_left{kWriters};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (uint64_t start = w * kPerWriter; start < (w + 1) * kPerWriter; start += kBatch) {
        if (!index->Add(RandomVectors(kBatch, dim, start), Range(start, start + kBatch)).ok()) {
          ++errors;
        }
        // Delete the first two of the batch just added.
        absl::StatusOr<uint64_t> deleted = index->Delete(Range(start, start + 2));
        if (!deleted.ok() || *deleted != 2) ++errors;
      }
      --writers_left;
    });
  }
  threads.emplace_back([&] {
    uint64_t capacity = kWriters * kPerWriter;
    for (uint32_t round = 0; writers_left.load() > 0; ++round) {
      if (!index->SetEf(10 + round % 40).ok()) ++errors;
      if (round % 4 == 0 && !index->Resize(++capacity).ok()) ++errors;
      if (!RunQuery(*index, RandomVectors(2, dim, round), 5).ok()) ++errors;
      if (!index->Ids().ok()) ++errors;
    }
  });
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);

  std::vector<uint64_t> expected;
  for (uint64_t id = 0; id < kWriters * kPerWriter; ++id) {
    if (id % kBatch >= 2) expected.push_back(id);
  }
  EXPECT_EQ(*index->Ids(), expected);
  const IndexInfo info = index->Info();
  EXPECT_EQ(info.element_count, expected.size());
  EXPECT_EQ(info.tombstones, kWriters * kPerWriter - expected.size());
  // Storage holds the same: a reopen without Close rebuilds from it, without tombstones.
  index.reset();
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_EQ(*GetIndex("mixed")->Ids(), expected);
  EXPECT_EQ(GetIndex("mixed")->Info().element_count, expected.size());
}

// A group is stored, then applied to the graph while the next group is already checked and
// stored: that check must see what groups not yet applied did to the same ids.
TEST_F(CatalogTest, WritesToIdsWhoseEarlierWritesAreStillBeingAppliedSeeThem) {
  constexpr uint32_t dim = 8;
  constexpr uint64_t kIds = 64;  // the index's capacity: every later add is a replacement
  constexpr int kThreads = 4;
  constexpr int kRounds = 40;
  std::shared_ptr<engine::Index> index = MakeIndex("same", Space::kL2, dim, {.max_elements = kIds});
  ASSERT_NE(index, nullptr);

  // Every thread adds the same new ids at once: one add is new, the others replace it, so
  // none may be refused as full.
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds / 4 && failures[t].empty(); ++round) {
        absl::Status s =
            index->Add(RandomVectors(kIds, dim, 100 * t + round), Range(0, kIds)).status();
        if (!s.ok()) failures[t] = s.ToString();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
  EXPECT_EQ(index->Info().element_count, kIds);

  threads.clear();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds && failures[t].empty(); ++round) {
        // Even threads replace every item (reviving deleted ones), odd threads delete every
        // item (deleted ones are accepted): none may be refused as full or missing.
        absl::Status s =
            t % 2 == 0
                ? index->Add(RandomVectors(kIds, dim, 1000 * t + round), Range(0, kIds)).status()
                : index->Delete(Range(0, kIds)).status();
        if (!s.ok()) failures[t] = s.ToString();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;

  const IndexInfo info = index->Info();
  EXPECT_LE(info.element_count, kIds);  // replacements and revivals, never new items
  const std::vector<uint64_t> ids = *index->Ids();
  EXPECT_EQ(ids.size(), info.element_count);
  absl::StatusOr<std::vector<float>> vectors = Vectors(*index, ids);
  ASSERT_TRUE(vectors.ok()) << vectors.status();

  // The graph shows what storage holds: a reopen without Close replays the writes in the
  // order they were stored.
  index.reset();
  ASSERT_NO_FATAL_FAILURE(Open());
  std::shared_ptr<engine::Index> reopened = GetIndex("same");
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(*reopened->Ids(), ids);
  EXPECT_EQ(reopened->Info().element_count, info.element_count);
  EXPECT_EQ(*Vectors(*reopened, ids), *vectors);
}

TEST_F(CatalogTest, DropWhileBusyRefusesLaterCallsCleanly) {
  constexpr uint32_t dim = 4;
  std::shared_ptr<engine::Index> index =
      MakeIndex("busy", Space::kL2, dim, {.max_elements = 100000});
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Add(RandomVectors(10, dim, 90), Range(0, 10)).ok());
  std::atomic<int> unexpected{0};
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t start = 1000 * (t + 1);; start += 5) {
        const absl::Status added =
            index->Add(RandomVectors(5, dim, start), Range(start, start + 5)).status();
        const absl::Status queried = RunQuery(*index, RandomVectors(1, dim, t), 3).status();
        ++calls;
        for (const absl::Status& s : {added, queried}) {
          if (!s.ok() && !absl::IsNotFound(s)) ++unexpected;
        }
        if (absl::IsNotFound(added) && absl::IsNotFound(queried)) return;
      }
    });
  }
  while (calls.load() < 30) std::this_thread::yield();
  ASSERT_TRUE(catalog_->Drop("busy").ok());
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_FALSE(catalog_->Exists("busy"));
  EXPECT_TRUE(StatusIs(index->Ids().status(), absl::StatusCode::kNotFound, {"busy"}));
  index.reset();
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_FALSE(catalog_->Exists("busy"));
  // The name can be reused, and the new index starts empty.
  ASSERT_NE(MakeIndex("busy", Space::kL2, dim, {.max_elements = 10}), nullptr);
  EXPECT_TRUE(GetIndex("busy")->Ids()->empty());
}

TEST_F(CatalogTest, ConcurrentCreateOfOneNameSucceedsOnce) {
  std::atomic<int> created{0};
  std::atomic<int> already{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      const absl::Status s = catalog_->Create("shared", Space::kL2, 3);
      if (s.ok()) ++created;
      if (absl::IsAlreadyExists(s)) ++already;
      EXPECT_TRUE(catalog_->Create(absl::StrCat("own", t), Space::kIp, 2).ok());
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(already.load(), 5);
  EXPECT_EQ(catalog_->List().size(), 7u);
}

// ---------------------------------------------------------------------------------------------
// Import

class ImportTest : public CatalogTest {
 protected:
  // An hnswlib file of 150 vectors (ids 500..649), 10 deleted, M 12, ef_construction 80.
  void WriteSource() {
    data_ = RandomVectors(150, kDim, 71);
    ids_ = Range(500, 650);
    absl::StatusOr<std::unique_ptr<HnswGraph>> graph =
        HnswGraph::Create({Space::kL2, kDim, 200, 12, 80, 5});
    ASSERT_TRUE(graph.ok()) << graph.status();
    source_ = *std::move(graph);
    ASSERT_NO_FATAL_FAILURE(AddAll(*source_, data_, ids_));
    for (uint64_t id = 500; id < 650; id += 15) {
      ASSERT_TRUE(source_->MarkDeleted(id).ok());
      deleted_.push_back(id);
    }
    path_ = tmp_.path() + "/source.hnsw";
    ASSERT_TRUE(source_->Save(path_).ok());
  }

  void ExpectAnswersLikeSource(const engine::Index& index) {
    const std::vector<float> queries = RandomVectors(40, kDim, 72);
    for (uint32_t ef : {10u, 40u}) {
      absl::StatusOr<QueryResult> result = RunQuery(index, queries, 10, ef);
      ASSERT_TRUE(result.ok()) << result.status();
      for (size_t q = 0; q < 40; ++q) {
        const SearchResult expected = SearchGraph(*source_, queries.data() + q * kDim, 10, ef);
        ASSERT_EQ(expected.ids.size(), 10u);
        for (size_t i = 0; i < 10; ++i) {
          EXPECT_EQ(result->ids[q * 10 + i], expected.ids[i]) << "ef " << ef << " query " << q;
          EXPECT_EQ(result->distances[q * 10 + i], expected.distances[i]);
        }
      }
    }
    EXPECT_EQ(*index.Ids(), source_->LiveLabels());
    for (uint64_t id : deleted_) {
      EXPECT_TRUE(
          StatusIs(Vectors(index, {id}).status(), absl::StatusCode::kNotFound, {"deleted"}));
    }
    const std::vector<uint64_t> live = source_->LiveLabels();
    absl::StatusOr<std::vector<float>> vectors = Vectors(index, live);
    ASSERT_TRUE(vectors.ok()) << vectors.status();
    std::vector<float> expected(kDim);
    for (size_t i = 0; i < live.size(); ++i) {
      ASSERT_TRUE(source_->CopyVector(live[i], expected.data()));
      EXPECT_EQ(0, std::memcmp(vectors->data() + i * kDim, expected.data(), kDim * sizeof(float)));
    }
  }

  std::vector<float> data_;
  std::vector<uint64_t> ids_;
  std::vector<uint64_t> deleted_;
  std::unique_ptr<HnswGraph> source_;
  std::string path_;
};

TEST_F(ImportTest, ImportedIndexAnswersLikeTheFile) {
  ASSERT_NO_FATAL_FAILURE(WriteSource());
  ASSERT_TRUE(catalog_->Import(path_, "imported", Space::kL2, kDim).ok());
  std::shared_ptr<engine::Index> index = GetIndex("imported");
  ASSERT_NE(index, nullptr);
  const IndexInfo info = index->Info();
  EXPECT_TRUE(info.initialized);
  EXPECT_EQ(info.dim, kDim);
  EXPECT_EQ(info.m, 12u);
  EXPECT_EQ(info.ef_construction, 80u);
  EXPECT_EQ(info.max_elements, 200u);
  EXPECT_EQ(info.element_count, 140u);
  EXPECT_EQ(info.deleted_count, 10u);
  ASSERT_NO_FATAL_FAILURE(ExpectAnswersLikeSource(*index));

  // Survives a restart (snapshot) and a restart that must rebuild.
  index.reset();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  ASSERT_NO_FATAL_FAILURE(ExpectAnswersLikeSource(*GetIndex("imported")));
  EXPECT_EQ(GetIndex("imported")->Info().deleted_count, 10u);
  catalog_.reset();
  std::vector<fs::path> graph_files;
  for (const auto& entry : fs::directory_iterator(dir() + "/graphs")) {
    graph_files.push_back(entry.path());
  }
  ASSERT_FALSE(graph_files.empty());
  for (const fs::path& file : graph_files) fs::remove(file);
  ASSERT_NO_FATAL_FAILURE(Open());
  std::shared_ptr<engine::Index> rebuilt = GetIndex("imported");
  ASSERT_NE(rebuilt, nullptr);
  EXPECT_EQ(*rebuilt->Ids(), source_->LiveLabels());
  EXPECT_EQ(rebuilt->Info().tombstones, 0u);  // rebuilt from storage: deleted items left out
  EXPECT_EQ(rebuilt->Info().max_elements, 200u);

  // The imported index takes writes like any other: 140 live, so 60 more fit.
  ASSERT_TRUE(rebuilt->Add(RandomVectors(60, kDim, 73), Range(100'000, 100'060)).ok());
  EXPECT_TRUE(
      StatusIs(rebuilt->Add(RandomVectors(1, kDim, 74), std::vector<uint64_t>{200'000}).status(),
               absl::StatusCode::kResourceExhausted));
}

TEST_F(ImportTest, ImportOfACatalogSnapshot) {
  std::shared_ptr<engine::Index> original =
      MakeIndex("orig", Space::kL2, kDim, {.max_elements = 100});
  ASSERT_NE(original, nullptr);
  ASSERT_TRUE(original->Add(RandomVectors(80, kDim, 75), Range(10, 90)).ok());
  ASSERT_TRUE(original->Delete(std::vector<uint64_t>{10, 11}).ok());
  original.reset();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  original = GetIndex("orig");
  ASSERT_NE(original, nullptr);
  std::vector<fs::path> snapshots;
  for (const auto& entry : fs::directory_iterator(dir() + "/graphs")) {
    if (entry.path().extension() == ".hnsw") snapshots.push_back(entry.path());
  }
  ASSERT_EQ(snapshots.size(), 1u);
  const std::string copy = tmp_.path() + "/copy.hnsw";
  fs::copy_file(snapshots[0], copy);
  ASSERT_TRUE(catalog_->Import(copy, "copy", Space::kL2, kDim).ok());
  std::shared_ptr<engine::Index> imported = GetIndex("copy");
  ASSERT_NE(imported, nullptr);
  EXPECT_EQ(*imported->Ids(), *original->Ids());
  EXPECT_EQ(imported->Info().deleted_count, 2u);
  const std::vector<float> queries = RandomVectors(10, kDim, 76);
  EXPECT_EQ(*RunQuery(*imported, queries, 5, 30), *RunQuery(*original, queries, 5, 30));
}

TEST_F(ImportTest, RefusedImportsLeaveNothingBehind) {
  ASSERT_NO_FATAL_FAILURE(WriteSource());
  const absl::Status wrong_dim = catalog_->Import(path_, "bad", Space::kL2, 16);
  EXPECT_TRUE(absl::IsDataLoss(wrong_dim) || absl::IsInvalidArgument(wrong_dim)) << wrong_dim;
  EXPECT_NE(wrong_dim.message().find("16"), absl::string_view::npos) << wrong_dim;
  EXPECT_NE(wrong_dim.message().find("8"), absl::string_view::npos) << wrong_dim;
  EXPECT_FALSE(catalog_->Exists("bad"));

  EXPECT_TRUE(StatusIs(catalog_->Import(tmp_.path() + "/absent.hnsw", "bad", Space::kL2, kDim),
                       absl::StatusCode::kNotFound));
  EXPECT_TRUE(StatusIs(catalog_->Import(path_, "a b", Space::kL2, kDim),
                       absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(
      StatusIs(catalog_->Import(path_, "bad", Space::kL2, 0), absl::StatusCode::kInvalidArgument));

  std::string truncated = ReadFile(path_);
  truncated.resize(truncated.size() - 3);
  WriteFile(tmp_.path() + "/truncated.hnsw", truncated);
  EXPECT_TRUE(StatusIs(catalog_->Import(tmp_.path() + "/truncated.hnsw", "bad", Space::kL2, kDim),
                       absl::StatusCode::kDataLoss));

  ASSERT_TRUE(catalog_->Create("taken", Space::kL2, kDim).ok());
  EXPECT_TRUE(StatusIs(catalog_->Import(path_, "taken", Space::kL2, kDim),
                       absl::StatusCode::kAlreadyExists));
  EXPECT_FALSE(GetIndex("taken")->Info().initialized);

  EXPECT_FALSE(catalog_->Exists("bad"));
  ASSERT_EQ(catalog_->List().size(), 1u);
  // Nothing half-made reappears after a restart, and the name is still free.
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  ASSERT_EQ(catalog_->List().size(), 1u);
  EXPECT_TRUE(catalog_->Create("bad", Space::kL2, 16).ok());
}

// A file may hold what AddItems refuses: a non-finite component, or the id that marks missing
// query results. The import refuses it, naming it, and leaves nothing behind.
TEST_F(ImportTest, FilesWithValuesAddItemsRefusesAreRefused) {
  std::unique_ptr<HnswGraph> nan_graph = MakeGraph(10);
  ASSERT_NE(nan_graph, nullptr);
  std::vector<float> vector(kDim, 0.5f);
  ASSERT_TRUE(nan_graph->Add(vector.data(), 1).ok());
  vector[3] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(nan_graph->Add(vector.data(), 2).ok());
  const std::string nan_path = tmp_.path() + "/nan.hnsw";
  ASSERT_TRUE(nan_graph->Save(nan_path).ok());
  EXPECT_TRUE(StatusIs(catalog_->Import(nan_path, "bad", Space::kL2, kDim),
                       absl::StatusCode::kInvalidArgument,
                       {"item 2 has a non-finite component", "position 3", "nothing imported"}));

  std::unique_ptr<HnswGraph> reserved_graph = MakeGraph(10);
  ASSERT_NE(reserved_graph, nullptr);
  vector[3] = 0.5f;
  ASSERT_TRUE(reserved_graph->Add(vector.data(), kMissingId).ok());
  const std::string reserved_path = tmp_.path() + "/reserved.hnsw";
  ASSERT_TRUE(reserved_graph->Save(reserved_path).ok());
  EXPECT_TRUE(StatusIs(catalog_->Import(reserved_path, "bad", Space::kL2, kDim),
                       absl::StatusCode::kInvalidArgument,
                       {"id 18446744073709551615", "reserves", "nothing imported"}));
  EXPECT_FALSE(catalog_->Exists("bad"));
  EXPECT_TRUE(catalog_->List().empty());
}

TEST_F(ImportTest, ImportOfAnEmptyGraphKeepsItsCapacity) {
  std::unique_ptr<HnswGraph> empty = MakeGraph(10);
  ASSERT_NE(empty, nullptr);
  const std::string path = tmp_.path() + "/empty.hnsw";
  ASSERT_TRUE(empty->Save(path).ok());
  ASSERT_TRUE(catalog_->Import(path, "empty", Space::kL2, kDim).ok());
  std::shared_ptr<engine::Index> index = GetIndex("empty");
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->Info().max_elements, 10u);
  EXPECT_TRUE(index->Add(RandomVectors(3, kDim, 77), Range(0, 3)).ok());
}

TEST_F(ImportTest, ImportRefusesADegreeAboveTheLimit) {
  absl::StatusOr<std::unique_ptr<HnswGraph>> graph =
      HnswGraph::Create({Space::kL2, kDim, 4, kMaxM + 1, 10, 1});
  ASSERT_TRUE(graph.ok()) << graph.status();
  const std::vector<float> data = RandomVectors(3, kDim, 82);
  ASSERT_NO_FATAL_FAILURE(AddAll(**graph, data, Range(0, 3)));
  const std::string path = tmp_.path() + "/wide.hnsw";
  ASSERT_TRUE((*graph)->Save(path).ok());
  EXPECT_TRUE(StatusIs(catalog_->Import(path, "wide", Space::kL2, kDim),
                       absl::StatusCode::kInvalidArgument, {"2049", "2048"}));
  EXPECT_FALSE(catalog_->Exists("wide"));
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  EXPECT_TRUE(catalog_->List().empty());
}

// The level multiplier mult_ (hnswlib writes 1/ln(M)) decides the level of every later
// insertion. A file with a damaged one must be refused, or the imported index must still take
// writes.
TEST_F(ImportTest, ImportedIndexWithADamagedLevelMultiplierStillTakesWrites) {
  ASSERT_NO_FATAL_FAILURE(WriteSource());
  std::string bytes = ReadFile(path_);
  constexpr size_t kMultAt = 80;
  ASSERT_NEAR(Get<double>(bytes, kMultAt), 1 / std::log(12.0), 1e-12);
  Put<double>(bytes, kMultAt, 1e300);
  WriteFile(path_, bytes);
  const absl::Status imported = catalog_->Import(path_, "imported", Space::kL2, kDim);
  if (!imported.ok()) {
    EXPECT_TRUE(StatusIs(imported, absl::StatusCode::kDataLoss)) << imported;
    EXPECT_FALSE(catalog_->Exists("imported"));
    return;
  }
  std::shared_ptr<engine::Index> index = GetIndex("imported");
  ASSERT_NE(index, nullptr);
  const std::vector<float> more = RandomVectors(20, kDim, 83);
  absl::StatusOr<uint64_t> added = index->Add(more, Range(0, 20));
  EXPECT_TRUE(added.ok()) << added.status();
  absl::StatusOr<QueryResult> self = RunQuery(*index, std::span(more).subspan(5 * kDim, kDim), 1);
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(self->ids[0], 5u) << "item 5 is stored but not searchable";

  // Whatever happened, a clean restart must serve every stored item (the INTERNAL error of a
  // failed in-memory apply promises "not searchable until restart").
  index.reset();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  self = RunQuery(*GetIndex("imported"), std::span(more).subspan(5 * kDim, kDim), 1);
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(self->ids[0], 5u) << "item 5 is still not searchable after a clean restart";
}

}  // namespace
}  // namespace luxdb::engine
