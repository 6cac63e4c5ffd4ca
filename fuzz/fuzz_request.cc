// libFuzzer target: one LuxDB RPC per input, handled in-process by LuxDBService (no network,
// no authentication: --insecure) over a real engine::Catalog on a scratch data directory.
//
// Input: byte 0 picks the RPC (mod 14, in the order of luxdb.proto's service); the rest is
// that RPC's request message. Inputs that do not parse are ignored.
//
// Every input starts from the same state, the fixture below: a few small indexes that
// reach the deep paths (multi-level graphs, deleted items, a full index, an index whose
// items are all deleted, an empty one, an uninitialised one). A call that changes state is
// undone afterwards by rebuilding the index it touched, so an input means the same thing
// whenever it runs, a crash reproduces from its input alone, and memory stays bounded.
//
// Checked on every call, besides "no crash, no sanitizer report":
//   - the status code is one of the design's error table (README "API"): OK, INVALID_ARGUMENT,
//     NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED; never UNKNOWN or
//     INTERNAL, nor UNAVAILABLE (storage is on tmpfs and cannot fail here); a refusal has a
//     message;
//   - a refused call, and every read-only call, changes nothing: the index list, the counts
//     and the named index's ids and vectors are as before;
//   - an accepted call did what it says (AddItems' vectors read back, DeleteItems' ids gone,
//     InitIndex/SetEf/ResizeIndex visible in DescribeIndex, query rows nearest first with
//     true distances of live ids, ...) and the index it changed still answers.
// Messages that do not name the index of a request with a valid name are reported once per
// RPC and code on stderr ("note:"), without stopping the run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/catalog.h"
#include "engine/hnsw_graph.h"
#include "engine/limits.h"
#include "engine/resources.h"
#include "fuzz/scratch_dir.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/server_context.h"
#include "luxdb/v1/luxdb.pb.h"
#include "server/service.h"
#include "spdlog/spdlog.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = luxdb::v1;
using luxdb::engine::Catalog;
using luxdb::engine::HnswGraph;
using luxdb::engine::IndexInfo;
using luxdb::server::LuxDBService;
using luxdb::storage::Space;

// The server's smallest --max-message-mb: bounds what one request may carry and one
// response may hold.
constexpr uint64_t kMaxMessageBytes = 1 << 20;
// InitIndex and ResizeIndex calls whose graph would exceed this are skipped: the server
// admits any capacity the machine's free memory allows (engine/resources.h), and
// the fuzzer must stay under its RSS limit; the server has no option to cap it lower.
constexpr uint64_t kMaxGraphBytes = 32 << 20;
// The data directory is recreated from scratch when it grows beyond this (RocksDB's log and
// manifest grow with every index the fuzzer creates and the harness drops).
constexpr uint64_t kMaxDataDirBytes = 256 << 20;
constexpr int kRestoresPerSizeCheck = 512;

// An index of the fixture. Its items have ids first_id .. first_id + items - 1.
struct FixtureIndex {
  const char* name;
  Space space;
  uint32_t dim;
  bool initialized;
  uint64_t max_elements;
  uint32_t m;  // 0: default
  uint32_t items;
  uint64_t first_id;
  std::vector<uint64_t> deleted;
};

const std::vector<FixtureIndex>& Fixture() {
  static const auto* fixture = new std::vector<FixtureIndex>{
      // M=4 puts a quarter of the items on upper levels.
      {"l2", Space::kL2, 4, true, 64, 4, 24, 0, {3, 7, 20}},
      {"cos", Space::kCosine, 8, true, 32, 0, 8, 100, {}},
      {"ip", Space::kIp, 2, true, 4, 0, 4, 1, {}},               // full
      {"dead", Space::kL2, 3, true, 8, 2, 3, 10, {10, 11, 12}},  // entry point deleted
      {"empty", Space::kL2, 4, true, 16, 0, 0, 0, {}},
      {"raw", Space::kCosine, 4, false, 0, 0, 0, 0, {}},
  };
  return *fixture;
}

const FixtureIndex* FindFixture(const std::string& name) {
  for (const FixtureIndex& index : Fixture()) {
    if (name == index.name) return &index;
  }
  return nullptr;
}

std::vector<float> FixtureVector(uint64_t id, uint32_t dim) {
  std::vector<float> vector(dim);
  for (uint32_t j = 0; j < dim; ++j) vector[j] = 2.0f * std::sin(0.7f * id + 1.3f * j + 0.5f);
  return vector;
}

// What the fixture looks like from outside, captured once it is built.
struct Baseline {
  std::vector<IndexInfo> list;
  std::map<std::string, std::vector<uint64_t>> ids;  // live, ascending
  std::map<std::string, std::map<uint64_t, std::vector<float>>> vectors;
};

struct State {
  std::string root;
  std::string data_dir;
  std::string backup_dir;
  std::unique_ptr<Catalog> catalog;
  std::unique_ptr<LuxDBService> service;
  Baseline baseline;
  int restores = 0;
  std::set<std::string> notes;
};

State* state = nullptr;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_request invariant broken: %s\n", what.c_str());
  std::abort();
}

void Note(const std::string& key, const std::string& what) {
  if (state->notes.insert(key).second) std::fprintf(stderr, "note: %s\n", what.c_str());
}

void CheckOk(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Fail(absl::StrCat(what, ": ", status.ToString()));
}

void BuildIndex(const FixtureIndex& fixture) {
  CheckOk(state->catalog->Create(fixture.name, fixture.space, fixture.dim), "fixture create");
  if (!fixture.initialized) return;
  auto index = state->catalog->Get(fixture.name);
  CheckOk(index.status(), "fixture get");
  CheckOk((*index)->Init({.max_elements = fixture.max_elements, .m = fixture.m, .random_seed = 7}),
          "fixture init");
  if (fixture.items == 0) return;
  std::vector<uint64_t> ids;
  std::vector<float> vectors;
  for (uint64_t id = fixture.first_id; id < fixture.first_id + fixture.items; ++id) {
    ids.push_back(id);
    const std::vector<float> vector = FixtureVector(id, fixture.dim);
    vectors.insert(vectors.end(), vector.begin(), vector.end());
  }
  CheckOk((*index)->Add(vectors, ids).status(), "fixture add");
  if (!fixture.deleted.empty()) {
    CheckOk((*index)->Delete(fixture.deleted).status(), "fixture delete");
  }
}

// Live ids and their vectors of an index, as the engine answers them.
void Capture(const std::string& name, std::vector<uint64_t>* ids,
             std::map<uint64_t, std::vector<float>>* vectors) {
  ids->clear();
  vectors->clear();
  auto index = state->catalog->Get(name);
  CheckOk(index.status(), absl::StrCat("index '", name, "' lookup"));
  if (!(*index)->Info().initialized) return;
  auto live = (*index)->Ids();
  CheckOk(live.status(), absl::StrCat("index '", name, "' ids"));
  *ids = *std::move(live);
  std::vector<float> floats(ids->size() * (*index)->dim());
  CheckOk((*index)->GetVectors(*ids, floats), absl::StrCat("index '", name, "' vectors"));
  for (size_t i = 0; i < ids->size(); ++i) {
    const float* begin = floats.data() + i * (*index)->dim();
    (*vectors)[(*ids)[i]] = std::vector<float>(begin, begin + (*index)->dim());
  }
}

void OpenCatalog() {
  state->service.reset();
  state->catalog.reset();
  std::error_code error;
  fs::remove_all(state->data_dir, error);
  fs::remove_all(state->backup_dir, error);
  fs::create_directories(state->backup_dir);
  auto catalog = Catalog::Open(state->data_dir, {.threads = 1, .sync = false, .snapshot_every = 0});
  CheckOk(catalog.status(), "opening the catalog");
  state->catalog = *std::move(catalog);
  state->catalog->WaitUntilLoaded();
  state->service =
      std::make_unique<LuxDBService>(kMaxMessageBytes, state->data_dir, state->backup_dir);
  state->service->AttachCatalog(state->catalog.get());
  for (const FixtureIndex& fixture : Fixture()) BuildIndex(fixture);
  Baseline baseline;
  baseline.list = state->catalog->List();
  for (const FixtureIndex& fixture : Fixture()) {
    Capture(fixture.name, &baseline.ids[fixture.name], &baseline.vectors[fixture.name]);
  }
  state->baseline = std::move(baseline);
}

void RemoveScratch() {
  if (state == nullptr) return;
  state->service.reset();
  state->catalog.reset();
  std::error_code error;
  fs::remove_all(state->root, error);
}

bool SameInfo(const IndexInfo& a, const IndexInfo& b) {
  return a.name == b.name && a.space == b.space && a.dim == b.dim && a.m == b.m &&
         a.ef_construction == b.ef_construction && a.ef == b.ef &&
         a.max_elements == b.max_elements && a.element_count == b.element_count &&
         a.deleted_count == b.deleted_count && a.initialized == b.initialized;
}

std::string Describe(const IndexInfo& info) {
  return absl::StrCat(info.name, " dim=", info.dim, " m=", info.m, " efc=", info.ef_construction,
                      " ef=", info.ef, " max=", info.max_elements, " count=", info.element_count,
                      " deleted=", info.deleted_count, " init=", info.initialized);
}

const IndexInfo* BaselineInfo(const std::string& name) {
  for (const IndexInfo& info : state->baseline.list) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

IndexInfo CurrentInfo(const std::string& name) {
  auto index = state->catalog->Get(name);
  CheckOk(index.status(), absl::StrCat("index '", name, "' lookup"));
  return (*index)->Info();
}

// The state is still the fixture's: the index list and counts everywhere, and the live ids
// and vectors of `name` if it is a fixture index.
void CheckUnchanged(const std::string& name, const std::string& call) {
  const std::vector<IndexInfo> list = state->catalog->List();
  bool same = list.size() == state->baseline.list.size();
  for (size_t i = 0; same && i < list.size(); ++i)
    same = SameInfo(list[i], state->baseline.list[i]);
  if (!same) {
    std::string shown;
    for (const IndexInfo& info : list) absl::StrAppend(&shown, "\n  ", Describe(info));
    Fail(absl::StrCat(call, " changed the index list or counts; now:", shown));
  }
  if (FindFixture(name) == nullptr) return;
  std::vector<uint64_t> ids;
  std::map<uint64_t, std::vector<float>> vectors;
  Capture(name, &ids, &vectors);
  if (ids != state->baseline.ids[name] || vectors != state->baseline.vectors[name]) {
    Fail(absl::StrCat(call, " changed the items of index '", name, "'"));
  }
}

// Rebuilds what a successful mutating call changed.
void Restore(const std::string& name) {
  if (state->catalog->Exists(name)) CheckOk(state->catalog->Drop(name), "dropping " + name);
  if (const FixtureIndex* fixture = FindFixture(name)) BuildIndex(*fixture);
  if (++state->restores % kRestoresPerSizeCheck == 0) {
    uint64_t bytes = 0;
    std::error_code error;
    for (const auto& entry : fs::recursive_directory_iterator(state->data_dir, error)) {
      if (entry.is_regular_file(error)) bytes += entry.file_size(error);
    }
    if (bytes > kMaxDataDirBytes) {
      OpenCatalog();
      return;
    }
  }
  CheckUnchanged(name, "restoring the fixture");
}

// The index a mutating call changed still answers: counts agree with its ids, every id reads
// back, and a query runs.
void CheckStillAnswers(const std::string& name) {
  auto index = state->catalog->Get(name);
  if (!index.ok()) return;
  const IndexInfo info = (*index)->Info();
  if (!info.initialized) return;
  auto ids = (*index)->Ids();
  CheckOk(ids.status(), absl::StrCat("ids of '", name, "' after a write"));
  if (ids->size() != info.element_count) {
    Fail(absl::StrCat("index '", name, "' reports ", info.element_count, " live items but has ",
                      ids->size(), " ids"));
  }
  std::vector<float> vectors(ids->size() * info.dim);
  CheckOk((*index)->GetVectors(*ids, vectors), absl::StrCat("vectors of '", name, "'"));
  const uint32_t k = 3;
  std::vector<uint64_t> found(k);
  std::vector<float> distances(k);
  const std::vector<float> query = FixtureVector(1, info.dim);
  CheckOk((*index)->Query(query, k, 0, found, distances), absl::StrCat("query of '", name, "'"));
  for (uint64_t id : found) {
    if (id != luxdb::engine::kMissingId && !std::binary_search(ids->begin(), ids->end(), id)) {
      Fail(absl::StrCat("query of '", name, "' after a write returned id ", id, ", not live"));
    }
  }
}

// Codes of the design's error table that can occur with healthy storage.
bool ExpectedCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return true;
    default:
      return false;
  }
}

double SquaredNorm(const float* v, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += static_cast<double>(v[i]) * v[i];
  return sum;
}

// The distance the index should report between `query` (as sent) and a stored vector.
double ExpectedDistance(Space space, const float* query, const std::vector<float>& stored) {
  const size_t dim = stored.size();
  if (space == Space::kL2) {
    double sum = 0;
    for (size_t i = 0; i < dim; ++i) {
      const double d = static_cast<double>(query[i]) - stored[i];
      sum += d * d;
    }
    return sum;
  }
  double dot = 0;
  for (size_t i = 0; i < dim; ++i) dot += static_cast<double>(query[i]) * stored[i];
  if (space == Space::kCosine) {
    const double norm = std::sqrt(SquaredNorm(query, dim));
    if (norm > 0) dot /= norm;
  }
  return 1 - dot;
}

// --- Per-RPC checks of an accepted call. -------------------------------------------------

void Accepted(const v1::CreateIndexRequest& request, const v1::CreateIndexResponse&) {
  const IndexInfo info = CurrentInfo(request.name());
  if (info.initialized || info.dim != request.dim() || info.element_count != 0) {
    Fail(absl::StrCat("CreateIndex made ", Describe(info)));
  }
}

void Accepted(const v1::InitIndexRequest& request, const v1::InitIndexResponse&) {
  const IndexInfo info = CurrentInfo(request.name());
  const uint32_t m = request.m() != 0 ? request.m() : luxdb::engine::kDefaultM;
  if (!info.initialized || info.max_elements != request.max_elements() || info.m != m ||
      info.element_count != 0) {
    Fail(absl::StrCat("InitIndex made ", Describe(info)));
  }
}

void Accepted(const v1::DeleteIndexRequest& request, const v1::DeleteIndexResponse&) {
  if (state->catalog->Exists(request.name())) Fail("DeleteIndex left the index in place");
}

void Accepted(const v1::IndexExistsRequest& request, const v1::IndexExistsResponse& response) {
  if (response.exists() != (BaselineInfo(request.name()) != nullptr)) {
    Fail(absl::StrCat("IndexExists said ", response.exists(), " for '", request.name(), "'"));
  }
}

void Accepted(const v1::ListIndexesRequest&, const v1::ListIndexesResponse& response) {
  const auto& list = state->baseline.list;
  bool same = response.indexes_size() == static_cast<int>(list.size());
  for (size_t i = 0; same && i < list.size(); ++i) {
    const v1::IndexInfo& got = response.indexes(static_cast<int>(i));
    same = got.name() == list[i].name && got.dim() == list[i].dim &&
           got.element_count() == list[i].element_count &&
           got.deleted_count() == list[i].deleted_count && got.tombstones() == list[i].tombstones &&
           got.memory_bytes() == list[i].memory_bytes && got.max_elements() == list[i].max_elements;
  }
  if (!same) Fail(absl::StrCat("ListIndexes answered ", response.ShortDebugString()));
}

void Accepted(const v1::DescribeIndexRequest& request, const v1::DescribeIndexResponse& response) {
  const IndexInfo* info = BaselineInfo(request.name());
  if (info == nullptr || response.info().name() != info->name ||
      response.info().dim() != info->dim || response.info().ef() != info->ef ||
      response.info().element_count() != info->element_count ||
      response.info().deleted_count() != info->deleted_count ||
      response.info().tombstones() != info->tombstones ||
      response.info().memory_bytes() != info->memory_bytes ||
      response.info().initialized() != info->initialized) {
    Fail(absl::StrCat("DescribeIndex answered ", response.ShortDebugString()));
  }
}

void Accepted(const v1::SetEfRequest& request, const v1::SetEfResponse&) {
  if (CurrentInfo(request.name()).ef != request.ef()) Fail("SetEf did not set ef");
}

void Accepted(const v1::AddItemsRequest& request, const v1::AddItemsResponse& response) {
  const std::string& name = request.name();
  if (response.added() != static_cast<uint64_t>(request.ids_size())) {
    Fail(
        absl::StrCat("AddItems of ", request.ids_size(), " ids answered added=", response.added()));
  }
  std::vector<uint64_t> ids;
  std::map<uint64_t, std::vector<float>> vectors;
  Capture(name, &ids, &vectors);
  std::set<uint64_t> expected(state->baseline.ids[name].begin(), state->baseline.ids[name].end());
  expected.insert(request.ids().begin(), request.ids().end());
  if (std::set<uint64_t>(ids.begin(), ids.end()) != expected) {
    Fail(absl::StrCat("after AddItems '", name, "' has ", ids.size(), " live ids, expected ",
                      expected.size()));
  }
  const IndexInfo info = CurrentInfo(name);
  for (int i = 0; i < request.ids_size(); ++i) {
    const std::vector<float>& stored = vectors[request.ids(i)];
    const float* sent = request.vectors().data() + size_t{info.dim} * i;
    const double norm = std::sqrt(SquaredNorm(sent, info.dim));
    for (uint32_t j = 0; j < info.dim; ++j) {
      const bool ok = info.space == Space::kCosine
                          ? std::abs(stored[j] - (norm > 0 ? sent[j] / norm : 0.0)) <= 1e-5
                          : stored[j] == sent[j];
      if (!ok) {
        Fail(absl::StrCat("AddItems stored component ", j, " of id ", request.ids(i), " as ",
                          stored[j], ", sent ", sent[j]));
      }
    }
  }
  for (const auto& [id, vector] : state->baseline.vectors[name]) {
    if (!expected.contains(id)) continue;
    if (std::find(request.ids().begin(), request.ids().end(), id) == request.ids().end() &&
        vectors[id] != vector) {
      Fail(absl::StrCat("AddItems changed the vector of id ", id, ", which it did not name"));
    }
  }
}

void Accepted(const v1::DeleteItemsRequest& request, const v1::DeleteItemsResponse& response) {
  const std::string& name = request.name();
  const std::vector<uint64_t>& before = state->baseline.ids[name];
  std::set<uint64_t> named(request.ids().begin(), request.ids().end());
  uint64_t live_named = 0;
  std::set<uint64_t> expected;
  for (uint64_t id : before) {
    if (named.contains(id)) {
      ++live_named;
    } else {
      expected.insert(id);
    }
  }
  if (response.deleted() != live_named) {
    Fail(absl::StrCat("DeleteItems answered deleted=", response.deleted(), " for ", live_named,
                      " live ids named"));
  }
  std::vector<uint64_t> ids;
  std::map<uint64_t, std::vector<float>> vectors;
  Capture(name, &ids, &vectors);
  if (std::set<uint64_t>(ids.begin(), ids.end()) != expected) {
    Fail(absl::StrCat("after DeleteItems '", name, "' has the wrong live ids"));
  }
}

void Accepted(const v1::QueryIndexRequest& request, const v1::QueryIndexResponse& response) {
  const std::string& name = request.name();
  const IndexInfo* info = BaselineInfo(name);
  if (info == nullptr) Fail("QueryIndex answered for an index that does not exist");
  const uint32_t k = request.k();
  const size_t n = static_cast<size_t>(request.vectors_size()) / info->dim;
  if (response.k() != k || static_cast<size_t>(response.ids_size()) != n * k ||
      response.distances_size() != response.ids_size()) {
    Fail(absl::StrCat("QueryIndex of ", n, " queries at k=", k, " answered k=", response.k(),
                      " with ", response.ids_size(), " ids and ", response.distances_size(),
                      " distances"));
  }
  const std::vector<uint64_t>& live = state->baseline.ids[name];
  const auto& vectors = state->baseline.vectors[name];
  for (size_t row = 0; row < n; ++row) {
    const float* query = request.vectors().data() + row * info->dim;
    const double query_norm = SquaredNorm(query, info->dim);
    bool padding = false;
    std::set<uint64_t> seen;
    for (uint32_t i = 0; i < k; ++i) {
      const uint64_t id = response.ids(static_cast<int>(row * k + i));
      const float distance = response.distances(static_cast<int>(row * k + i));
      const std::string where = absl::StrCat("QueryIndex of '", name, "' row ", row, " rank ", i);
      if (id == luxdb::engine::kMissingId) {
        padding = true;
        if (distance != luxdb::engine::kMissingDistance) Fail(where + ": padding with a distance");
        continue;
      }
      if (padding) Fail(where + ": a result after the padding");
      if (!std::binary_search(live.begin(), live.end(), id)) {
        Fail(absl::StrCat(where, ": id ", id, " is not a live item"));
      }
      if (!seen.insert(id).second) Fail(absl::StrCat(where, ": id ", id, " twice"));
      if (i > 0) {
        const float previous = response.distances(static_cast<int>(row * k + i - 1));
        if (distance < previous) Fail(where + ": not nearest first");
      }
      const std::vector<float>& stored = vectors.at(id);
      const double expected = ExpectedDistance(info->space, query, stored);
      const double scale = 1 + query_norm + SquaredNorm(stored.data(), stored.size());
      if (std::isfinite(expected) && std::isfinite(distance) && scale < 1e30 &&
          std::abs(expected - distance) > 1e-4 * scale) {
        Fail(absl::StrCat(where, ": id ", id, " at distance ", distance, ", expected ", expected));
      }
    }
  }
}

void Accepted(const v1::ResizeIndexRequest& request, const v1::ResizeIndexResponse&) {
  if (CurrentInfo(request.name()).max_elements != request.new_max_elements()) {
    Fail("ResizeIndex did not change max_elements");
  }
}

// The tombstones are gone, and every live id keeps its vector.
void Accepted(const v1::CompactIndexRequest& request, const v1::CompactIndexResponse& response) {
  const std::string& name = request.name();
  const IndexInfo* before = BaselineInfo(name);
  const IndexInfo after = CurrentInfo(name);
  if (after.tombstones != 0 || response.live() != after.element_count ||
      (before != nullptr && response.tombstones_removed() != before->tombstones)) {
    Fail(absl::StrCat("CompactIndex answered removed=", response.tombstones_removed(),
                      " live=", response.live(), " and left ", Describe(after),
                      " tombstones=", after.tombstones));
  }
  std::vector<uint64_t> ids;
  std::map<uint64_t, std::vector<float>> vectors;
  Capture(name, &ids, &vectors);
  if (ids != state->baseline.ids[name] || vectors != state->baseline.vectors[name]) {
    Fail(absl::StrCat("after CompactIndex '", name, "' has other live ids or vectors"));
  }
}

// Without paging fields: every live id (the fixture's lists fit in one reply). Paged: the
// live ids above start_after, as many as the limit (0: kMaxIdsPerPage) and the reply allow,
// with next_start_after set to the last of them exactly when more follow.
void Accepted(const v1::GetIdsRequest& request, const v1::GetIdsResponse& response) {
  const std::vector<uint64_t> ids(response.ids().begin(), response.ids().end());
  const std::vector<uint64_t>& live = state->baseline.ids[request.name()];
  if (!request.has_start_after() && !request.has_limit()) {
    if (ids != live) Fail("GetIds answered other ids");
    if (response.has_next_start_after()) Fail("GetIds of every id set next_start_after");
    return;
  }
  if (request.limit() > luxdb::engine::kMaxIdsPerPage) {
    Fail(absl::StrCat("GetIds accepted limit ", request.limit()));
  }
  const auto first = request.has_start_after()
                         ? std::upper_bound(live.begin(), live.end(), request.start_after())
                         : live.begin();
  const size_t fit = (kMaxMessageBytes - 64) / 10;
  const size_t page =
      std::min<size_t>({request.limit() == 0 ? luxdb::engine::kMaxIdsPerPage : request.limit(), fit,
                        static_cast<size_t>(live.end() - first)});
  if (!std::equal(ids.begin(), ids.end(), first, first + page) || ids.size() != page) {
    Fail(absl::StrCat("GetIds page of ", ids.size(), " ids is not the ", page, " expected"));
  }
  const bool more = first + page != live.end();
  if (response.has_next_start_after() != more ||
      (more && response.next_start_after() != ids.back())) {
    Fail(absl::StrCat(
        "GetIds page of ", ids.size(), " ids has next_start_after ",
        response.has_next_start_after() ? absl::StrCat(response.next_start_after()) : "unset",
        more ? " though more follow" : " though none follow"));
  }
}

void Accepted(const v1::GetElementsRequest& request, const v1::GetElementsResponse& response) {
  const IndexInfo* info = BaselineInfo(request.name());
  if (info == nullptr || response.dim() != info->dim ||
      static_cast<size_t>(response.vectors_size()) !=
          static_cast<size_t>(request.ids_size()) * info->dim) {
    Fail(absl::StrCat("GetElements answered dim=", response.dim(), " with ",
                      response.vectors_size(), " floats for ", request.ids_size(), " ids"));
  }
  const auto& vectors = state->baseline.vectors[request.name()];
  for (int i = 0; i < request.ids_size(); ++i) {
    auto it = vectors.find(request.ids(i));
    if (it == vectors.end()) {
      Fail(absl::StrCat("GetElements answered for id ", request.ids(i), ", which is not live"));
    }
    if (!std::equal(it->second.begin(), it->second.end(),
                    response.vectors().begin() + static_cast<ptrdiff_t>(i) * info->dim)) {
      Fail(absl::StrCat("GetElements returned another vector for id ", request.ids(i)));
    }
  }
}

void Accepted(const v1::BackupRequest&, const v1::BackupResponse& response) {
  const fs::path path(response.path());
  const fs::path relative = path.lexically_relative(state->backup_dir);
  if (relative.empty() || *relative.begin() == ".." || *relative.begin() == ".") {
    Fail(absl::StrCat("Backup wrote '", response.path(), "', outside --backup-dir ",
                      state->backup_dir));
  }
  std::error_code error;
  if (!fs::is_directory(path, error)) Fail("Backup answered a path that is not a directory");
  fs::remove_all(path, error);
}

// Accepted or refused, a Backup leaves nothing behind once the harness removed what it
// answered: a refused one must not leave a partial copy.
void CheckBackupDirEmpty(const std::string& call) {
  std::error_code error;
  if (!fs::is_empty(state->backup_dir, error)) {
    Fail(absl::StrCat(call, " left files in the backup directory"));
  }
}

// --- Which calls change state, and which the harness must not make. -----------------------

template <typename Request>
constexpr bool kMutating =
    std::is_same_v<Request, v1::CreateIndexRequest> ||
    std::is_same_v<Request, v1::InitIndexRequest> ||
    std::is_same_v<Request, v1::DeleteIndexRequest> || std::is_same_v<Request, v1::SetEfRequest> ||
    std::is_same_v<Request, v1::AddItemsRequest> ||
    std::is_same_v<Request, v1::DeleteItemsRequest> ||
    std::is_same_v<Request, v1::ResizeIndexRequest> ||
    std::is_same_v<Request, v1::CompactIndexRequest>;

// A call changed nothing visible and is checked as read-only (an empty AddItems, a
// DeleteItems of ids already deleted).
template <typename Response>
bool NoEffect(const Response&) {
  return false;
}
bool NoEffect(const v1::AddItemsResponse& response) { return response.added() == 0; }
bool NoEffect(const v1::DeleteItemsResponse& response) { return response.deleted() == 0; }

template <typename Request>
bool TooLarge(const Request&) {
  return false;
}

bool TooLarge(const v1::InitIndexRequest& request) {
  const IndexInfo* info = BaselineInfo(request.name());
  if (info == nullptr || info->initialized) return false;  // refused before allocating
  const uint32_t m = request.m() != 0 ? request.m() : luxdb::engine::kDefaultM;
  return request.max_elements() >= 1 && request.max_elements() <= luxdb::engine::kMaxElements &&
         m >= 2 && m <= luxdb::engine::kMaxM &&
         HnswGraph::EstimateBytes(info->dim, m, request.max_elements()) > kMaxGraphBytes;
}

bool TooLarge(const v1::ResizeIndexRequest& request) {
  const IndexInfo* info = BaselineInfo(request.name());
  if (info == nullptr || !info->initialized) return false;
  return request.new_max_elements() > info->max_elements &&
         request.new_max_elements() <= luxdb::engine::kMaxElements &&
         HnswGraph::EstimateBytes(info->dim, info->m, request.new_max_elements()) > kMaxGraphBytes;
}

template <typename Request>
std::string RequestName(const Request& request) {
  if constexpr (requires { request.name(); }) {
    return request.name();
  } else {
    return {};
  }
}

// A sync handler (grpc::ServerContext), or QueryIndex's Query (grpc::ServerContextBase).
template <typename Context, typename Request, typename Response>
using Handler = grpc::Status (LuxDBService::*)(Context*, const Request*, Response*);

template <typename Context, typename Request, typename Response>
void Run(const char* rpc, Handler<Context, Request, Response> handler, const uint8_t* data,
         size_t size) {
  Request request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  if (TooLarge(request)) return;
  const std::string name = RequestName(request);
  const std::string call = absl::StrCat(rpc, " ", request.ShortDebugString().substr(0, 2000));

  Response response;
  grpc::Status status;
  {
    grpc::ServerContext context;
    status = (state->service.get()->*handler)(&context, &request, &response);
  }
  if (!ExpectedCode(status.error_code())) {
    Fail(absl::StrCat(call, " answered code ", status.error_code(), ": ", status.error_message()));
  }
  if (!status.ok()) {
    if (status.error_message().empty()) Fail(call + " refused without a message");
    if (!name.empty() && luxdb::engine::ValidateIndexName(name).ok() &&
        status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        !absl::StrContains(status.error_message(), name)) {
      Note(absl::StrCat(rpc, status.error_code()),
           absl::StrCat(rpc, " refusal (code ", status.error_code(), ") does not name the index: '",
                        absl::CHexEscape(status.error_message()), "' for ", call));
    }
  }

  if (!status.ok() || !kMutating<Request> || NoEffect(response)) {
    CheckUnchanged(name, call);
    if (status.ok()) Accepted(request, response);
    if constexpr (std::is_same_v<Request, v1::BackupRequest>) CheckBackupDirEmpty(call);
    return;
  }
  Accepted(request, response);
  CheckStillAnswers(name);
  Restore(name);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  google::protobuf::SetLogHandler(nullptr);
  state = new State;
  state->root = luxdb::fuzz::MakeScratchDir("luxdb-fuzz-request");
  state->data_dir = state->root + "/data";
  state->backup_dir = state->root + "/backups";
  OpenCatalog();
  std::atexit(RemoveScratch);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using S = LuxDBService;
  const uint8_t* body = data + 1;
  const size_t n = size - 1;
  switch (data[0] % 15) {
    case 0:
      Run("CreateIndex", &S::CreateIndex, body, n);
      break;
    case 1:
      Run("InitIndex", &S::InitIndex, body, n);
      break;
    case 2:
      Run("DeleteIndex", &S::DeleteIndex, body, n);
      break;
    case 3:
      Run("IndexExists", &S::IndexExists, body, n);
      break;
    case 4:
      Run("ListIndexes", &S::ListIndexes, body, n);
      break;
    case 5:
      Run("DescribeIndex", &S::DescribeIndex, body, n);
      break;
    case 6:
      Run("SetEf", &S::SetEf, body, n);
      break;
    case 7:
      Run("AddItems", &S::AddItems, body, n);
      break;
    case 8:
      Run("DeleteItems", &S::DeleteItems, body, n);
      break;
    case 9:
      Run("QueryIndex", &S::Query, body, n);
      break;
    case 10:
      Run("ResizeIndex", &S::ResizeIndex, body, n);
      break;
    case 11:
      Run("GetIds", &S::GetIds, body, n);
      break;
    case 12:
      Run("GetElements", &S::GetElements, body, n);
      break;
    case 13:
      Run("Backup", &S::Backup, body, n);
      break;
    case 14:
      Run("CompactIndex", &S::CompactIndex, body, n);
      break;
  }
  return 0;
}
