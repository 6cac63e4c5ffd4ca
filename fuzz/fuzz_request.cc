// libFuzzer target: one LuxDB RPC per input, handled in-process by LuxDBService (no network,
// no authentication: --insecure) over a real engine::Catalog on a scratch data directory.
//
// Input: byte 0 picks the RPC (mod 16: the unary RPCs in the order of luxdb.proto's service,
// QueryStream left out, so SetAttributes, the last, is 15); the rest is that RPC's request
// message. Inputs that do not parse are ignored.
//
// Every input starts from the same state, the fixture below: a few small indexes that
// reach the deep paths (multi-level graphs, deleted items, replaced items, a full index, an
// index whose items are all deleted, an empty one, an uninitialised one), their items
// carrying attributes of every kind (string and int lists, extreme ints and doubles, items
// without any), and one index large enough that a filtered query's planner picks a filtered
// graph search for some filters and an exact scan for others. The attribute limits are
// small (kAttributeLimits) so that inputs of a few bytes reach them. A call that changes
// state is undone afterwards by rebuilding the index it touched, so an input means the same
// thing whenever it runs, a crash reproduces from its input alone, and memory stays bounded.
//
// Checked on every call, besides "no crash, no sanitizer report":
//   - the status code is one of the design's error table (README "API"): OK, INVALID_ARGUMENT,
//     NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED; never UNKNOWN or
//     INTERNAL, nor UNAVAILABLE (storage is on tmpfs and cannot fail here); a refusal has a
//     message;
//   - a refused call, and every read-only call, changes nothing: the index list, the counts
//     and the named index's ids, vectors and attributes are as before;
//   - an accepted call did what it says (AddItems' vectors and attributes read back,
//     SetAttributes' attributes read back and nothing else changed, DeleteItems' ids gone,
//     InitIndex/SetEf/ResizeIndex visible in DescribeIndex, GetElements' attributes with keys
//     ascending, query rows nearest first with true distances of live ids, ...) and the index
//     it changed still answers, filtered queries included;
//   - attributes and filters follow luxdb.proto, as a reference evaluator in this file reads
//     it: AddItems and SetAttributes accept exactly the attributes within the contract and
//     the limits; QueryIndex accepts exactly the well-formed filters, and a filtered row
//     holds only live items that match, min(k, matching live items) of them (all of them
//     when they are at most k).
// Messages that do not name the index of a request with a valid name are reported once per
// RPC and code on stderr ("note:"), without stopping the run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/attributes.h"
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
using luxdb::engine::AttributeLimits;
using luxdb::engine::AttributeValue;
using luxdb::engine::Catalog;
using luxdb::engine::HnswGraph;
using luxdb::engine::IndexInfo;
using luxdb::engine::ItemAttributes;
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
// The server's attribute limits here (--max-attribute-*): small, so that short inputs cross
// them, and above what the fixture's items carry.
constexpr AttributeLimits kAttributeLimits = {
    .max_keys = 10, .max_key_bytes = 16, .max_string_bytes = 24, .max_values = 6};

// An index of the fixture. Its items have ids first_id .. first_id + items - 1, each with
// FixtureAttributes(id); the `replaced` ones are then added again with another vector and
// other attributes, and the `deleted` ones deleted.
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
  std::vector<uint64_t> replaced = {};
};

const std::vector<FixtureIndex>& Fixture() {
  static const auto* fixture = new std::vector<FixtureIndex>{
      // M=4 puts a quarter of the items on upper levels.
      {"l2", Space::kL2, 4, true, 64, 4, 24, 0, {3, 7, 20}, {5, 12}},
      {"cos", Space::kCosine, 8, true, 32, 0, 8, 100, {}},
      {"ip", Space::kIp, 2, true, 4, 0, 4, 1, {}},               // full
      {"dead", Space::kL2, 3, true, 8, 2, 3, 10, {10, 11, 12}},  // entry point deleted
      {"empty", Space::kL2, 4, true, 16, 0, 0, 0, {}},
      {"raw", Space::kCosine, 4, false, 0, 0, 0, 0, {}},
      // Enough items that a query with a small breadth (ef 1..4) plans a filtered graph search
      // for a filter that many items match, and an exact scan for one that few match.
      {"big", Space::kL2, 2, true, 256, 4, 200, 1000, {1001, 1050, 1051, 1199}, {1002, 1100}},
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

// The attributes of fixture item `id` (`replaced`: its second version), keys ascending: a
// string ("color"), string lists ("tags", some with a value twice), an int ("n"), int lists
// with the extremes ("nums": INT64_MIN, INT64_MAX, 2^53 + 1, whose nearest double differs),
// doubles ("price", and "x": 1e300, -0, the smallest denormal), a bool ("flag"), a key few
// items hold ("rare"); every sixth item has none.
ItemAttributes FixtureAttributes(uint64_t id, bool replaced) {
  if (replaced) return {{"color", {std::string("violet")}}, {"n", {int64_t{-7}}}};
  if (id % 6 == 5) return {};
  ItemAttributes attributes;
  const char* colors[] = {"red", "green", "blue"};
  attributes.push_back({"color", {std::string(colors[id % 3])}});
  attributes.push_back({"flag", {id % 2 == 0}});
  attributes.push_back({"n", {static_cast<int64_t>(id)}});
  std::vector<AttributeValue> nums = {static_cast<int64_t>(id % 7), -static_cast<int64_t>(id)};
  if (id % 5 == 0) nums.push_back(std::numeric_limits<int64_t>::min());
  if (id % 5 == 1) nums.push_back(std::numeric_limits<int64_t>::max());
  if (id % 5 == 2) nums.push_back((int64_t{1} << 53) + 1);
  attributes.push_back({"nums", std::move(nums)});
  attributes.push_back({"price", {static_cast<double>(id) * 0.5 - 3}});
  if (id % 13 == 0) attributes.push_back({"rare", {std::string("yes")}});
  switch (id % 4) {
    case 0:
      attributes.push_back({"tags", {std::string("a")}});
      break;
    case 1:
      attributes.push_back({"tags", {std::string("a"), std::string("b")}});
      break;
    case 2:
      attributes.push_back({"tags", {std::string("b"), std::string("c"), std::string("c")}});
      break;
  }
  if (id % 9 == 0) attributes.push_back({"x", {1e300}});
  if (id % 9 == 1) attributes.push_back({"x", {-0.0}});
  if (id % 9 == 2) attributes.push_back({"x", {std::numeric_limits<double>::denorm_min()}});
  return attributes;
}

// What an index holds, as the engine answers it: live ids (ascending), their vectors and
// their attributes (keys ascending; empty for an item without any).
struct Items {
  std::vector<uint64_t> ids;
  std::map<uint64_t, std::vector<float>> vectors;
  std::map<uint64_t, ItemAttributes> attributes;
};

// What the fixture looks like from outside, captured once it is built.
struct Baseline {
  std::vector<IndexInfo> list;
  std::map<std::string, Items> items;
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
  std::vector<ItemAttributes> attributes;
  for (uint64_t id = fixture.first_id; id < fixture.first_id + fixture.items; ++id) {
    ids.push_back(id);
    const std::vector<float> vector = FixtureVector(id, fixture.dim);
    vectors.insert(vectors.end(), vector.begin(), vector.end());
    attributes.push_back(FixtureAttributes(id, false));
  }
  CheckOk((*index)->Add(vectors, ids, std::move(attributes)).status(), "fixture add");
  if (!fixture.replaced.empty()) {
    vectors.clear();
    attributes.clear();
    for (uint64_t id : fixture.replaced) {
      const std::vector<float> vector = FixtureVector(id + 7777, fixture.dim);
      vectors.insert(vectors.end(), vector.begin(), vector.end());
      attributes.push_back(FixtureAttributes(id, true));
    }
    CheckOk((*index)->Add(vectors, fixture.replaced, std::move(attributes)).status(),
            "fixture replace");
  }
  if (!fixture.deleted.empty()) {
    CheckOk((*index)->Delete(fixture.deleted).status(), "fixture delete");
  }
}

// Live ids, their vectors and attributes of an index, as the engine answers them.
Items Capture(const std::string& name) {
  Items items;
  auto index = state->catalog->Get(name);
  CheckOk(index.status(), absl::StrCat("index '", name, "' lookup"));
  if (!(*index)->Info().initialized) return items;
  auto live = (*index)->Ids();
  CheckOk(live.status(), absl::StrCat("index '", name, "' ids"));
  items.ids = *std::move(live);
  std::vector<float> floats(items.ids.size() * (*index)->dim());
  CheckOk((*index)->GetVectors(items.ids, floats), absl::StrCat("index '", name, "' vectors"));
  auto attributes = (*index)->GetAttributes(items.ids);
  CheckOk(attributes.status(), absl::StrCat("index '", name, "' attributes"));
  for (size_t i = 0; i < items.ids.size(); ++i) {
    const float* begin = floats.data() + i * (*index)->dim();
    items.vectors[items.ids[i]] = std::vector<float>(begin, begin + (*index)->dim());
    items.attributes[items.ids[i]] = std::move((*attributes)[i]);
  }
  return items;
}

// --- Attributes as luxdb.proto describes them. ---------------------------------------------

bool SameValue(const AttributeValue& a, const AttributeValue& b) {
  if (a.index() != b.index()) return false;
  if (const double* x = std::get_if<double>(&a)) {  // bit for bit: -0 is not 0
    const double y = std::get<double>(b);
    return std::memcmp(x, &y, sizeof(double)) == 0;
  }
  return a == b;
}

bool SameAttributes(const ItemAttributes& a, const ItemAttributes& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].key != b[i].key || a[i].values.size() != b[i].values.size()) return false;
    for (size_t j = 0; j < a[i].values.size(); ++j) {
      if (!SameValue(a[i].values[j], b[i].values[j])) return false;
    }
  }
  return true;
}

bool SameItems(const Items& a, const Items& b) {
  if (a.ids != b.ids || a.vectors != b.vectors || a.attributes.size() != b.attributes.size()) {
    return false;
  }
  for (const auto& [id, attributes] : a.attributes) {
    auto it = b.attributes.find(id);
    if (it == b.attributes.end() || !SameAttributes(attributes, it->second)) return false;
  }
  return true;
}

std::string Show(const AttributeValue& value) {
  switch (value.index()) {
    case 0:
      return absl::StrCat("\"", absl::CHexEscape(std::get<std::string>(value)), "\"");
    case 1:
      return absl::StrCat(std::get<int64_t>(value));
    case 2:
      return absl::StrCat(std::get<double>(value), "d");
    default:
      return std::get<bool>(value) ? "true" : "false";
  }
}

std::string Show(const ItemAttributes& attributes) {
  std::string out = "{";
  for (const luxdb::engine::Attribute& a : attributes) {
    absl::StrAppend(&out, " '", absl::CHexEscape(a.key), "':");
    for (const AttributeValue& v : a.values) absl::StrAppend(&out, " ", Show(v));
  }
  return out + " }";
}

std::optional<AttributeValue> FromProto(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kS:
      return value.s();
    case v1::Value::kI:
      return value.i();
    case v1::Value::kD:
      return value.d();
    case v1::Value::kB:
      return value.b();
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return std::nullopt;
}

// The attributes `attributes` ask for, keys ascending, if they are within the contract and
// kAttributeLimits: keys not empty, unique and short enough, each with 1..max_values values,
// all set and of one kind, lists only of strings or ints, strings short enough, doubles
// finite. nullopt otherwise.
std::optional<ItemAttributes> Valid(const v1::Attributes& attributes) {
  if (attributes.attributes_size() > static_cast<int>(kAttributeLimits.max_keys)) {
    return std::nullopt;
  }
  ItemAttributes out;
  std::set<std::string> keys;
  for (const v1::Attribute& a : attributes.attributes()) {
    if (a.key().empty() || a.key().size() > kAttributeLimits.max_key_bytes ||
        !keys.insert(a.key()).second || a.values_size() == 0 ||
        a.values_size() > static_cast<int>(kAttributeLimits.max_values)) {
      return std::nullopt;
    }
    luxdb::engine::Attribute& attribute = out.emplace_back();
    attribute.key = a.key();
    for (const v1::Value& v : a.values()) {
      std::optional<AttributeValue> value = FromProto(v);
      if (!value || (!attribute.values.empty() && value->index() != attribute.values[0].index())) {
        return std::nullopt;
      }
      if (const std::string* s = std::get_if<std::string>(&*value);
          s != nullptr && s->size() > kAttributeLimits.max_string_bytes) {
        return std::nullopt;
      }
      if (const double* d = std::get_if<double>(&*value); d != nullptr && !std::isfinite(*d)) {
        return std::nullopt;
      }
      attribute.values.push_back(*std::move(value));
    }
    if (attribute.values.size() > 1 && (std::holds_alternative<double>(attribute.values[0]) ||
                                        std::holds_alternative<bool>(attribute.values[0]))) {
      return std::nullopt;
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  return out;
}

// What an AddItems (`need_all` false: none or one per id) or SetAttributes (one per id) of
// `ids` sets each id's attributes to, or nullopt if the attributes break the contract.
std::optional<std::vector<ItemAttributes>> ValidBatch(
    const google::protobuf::RepeatedPtrField<v1::Attributes>& attributes, int ids, bool need_all) {
  std::vector<ItemAttributes> out;
  if (attributes.empty() && !need_all) {
    out.resize(static_cast<size_t>(ids));
    return out;
  }
  if (attributes.size() != ids) return std::nullopt;
  for (const v1::Attributes& item : attributes) {
    std::optional<ItemAttributes> valid = Valid(item);
    if (!valid) return std::nullopt;
    out.push_back(*std::move(valid));
  }
  return out;
}

// The reference evaluator of filters (luxdb.proto "Filters"). Numbers compare exactly, as
// long doubles (which hold every int64 and every double). luxdb.proto says an int64 value
// "lies in" a range; engine/attributes.h compares int64 values with range bounds as doubles,
// which differs for ints beyond 2^53: kAsDoubles evaluates that reading, and items on which
// the two disagree may match either way.
static_assert(std::numeric_limits<long double>::digits >= 64);
enum class RangeReading { kExact, kAsDoubles };

std::optional<long double> NumberOf(const AttributeValue& value) {
  if (const int64_t* i = std::get_if<int64_t>(&value)) return static_cast<long double>(*i);
  if (const double* d = std::get_if<double>(&value)) return static_cast<long double>(*d);
  return std::nullopt;
}

bool ValueEquals(const AttributeValue& held, const v1::Value& wanted) {
  const std::optional<AttributeValue> w = FromProto(wanted);
  if (!w) return false;
  const std::optional<long double> a = NumberOf(held), b = NumberOf(*w);
  if (a && b) return *a == *b;
  if (held.index() != w->index()) return false;
  return held == *w;
}

bool InRange(const AttributeValue& held, const v1::Range& range, RangeReading reading) {
  std::optional<long double> x = NumberOf(held);
  if (!x) return false;
  if (reading == RangeReading::kAsDoubles) x = static_cast<double>(*x);
  if (range.has_gt() && !(*x > range.gt())) return false;
  if (range.has_gte() && !(*x >= range.gte())) return false;
  if (range.has_lt() && !(*x < range.lt())) return false;
  if (range.has_lte() && !(*x <= range.lte())) return false;
  return true;
}

bool Passes(const v1::Condition& condition, const ItemAttributes& item, RangeReading reading) {
  const std::vector<AttributeValue>* values = nullptr;
  for (const luxdb::engine::Attribute& a : item) {
    if (a.key == condition.key()) values = &a.values;
  }
  if (condition.test_case() == v1::Condition::kExists) {
    return (values != nullptr) == condition.exists();
  }
  if (values == nullptr) return false;
  for (const AttributeValue& held : *values) {
    switch (condition.test_case()) {
      case v1::Condition::kEquals:
        if (ValueEquals(held, condition.equals())) return true;
        break;
      case v1::Condition::kAnyOf:
        for (const v1::Value& wanted : condition.any_of().values()) {
          if (ValueEquals(held, wanted)) return true;
        }
        break;
      case v1::Condition::kRange:
        if (InRange(held, condition.range(), reading)) return true;
        break;
      default:
        break;
    }
  }
  return false;
}

bool Matches(const v1::Filter& filter, uint64_t id, const ItemAttributes& item,
             RangeReading reading) {
  if (!filter.ids().empty() &&
      std::find(filter.ids().begin(), filter.ids().end(), id) == filter.ids().end()) {
    return false;
  }
  for (const v1::Condition& c : filter.must()) {
    if (!Passes(c, item, reading)) return false;
  }
  for (const v1::Condition& c : filter.must_not()) {
    if (Passes(c, item, reading)) return false;
  }
  if (filter.should().empty()) return true;
  for (const v1::Condition& c : filter.should()) {
    if (Passes(c, item, reading)) return true;
  }
  return false;
}

// Whether QueryIndex must accept `filter` (kYes), must refuse it (kNo), or may do either
// (kEither: an equals or any_of value that is NaN, which luxdb.proto does not list as
// malformed but which can match nothing).
enum class WellFormed { kYes, kNo, kEither };
WellFormed CheckFilterShape(const v1::Filter& filter) {
  if (filter.must_size() + filter.must_not_size() + filter.should_size() > 256 ||
      filter.ids_size() > 1'000'000) {
    return WellFormed::kNo;
  }
  WellFormed result = WellFormed::kYes;
  for (const auto* list : {&filter.must(), &filter.must_not(), &filter.should()}) {
    for (const v1::Condition& c : *list) {
      if (c.key().empty()) return WellFormed::kNo;
      auto value = [&](const v1::Value& v) {
        if (v.kind_case() == v1::Value::KIND_NOT_SET) return false;
        if (v.kind_case() == v1::Value::kD && std::isnan(v.d())) result = WellFormed::kEither;
        return true;
      };
      switch (c.test_case()) {
        case v1::Condition::kEquals:
          if (!value(c.equals())) return WellFormed::kNo;
          break;
        case v1::Condition::kAnyOf:
          if (c.any_of().values_size() > 1024) return WellFormed::kNo;
          for (const v1::Value& v : c.any_of().values()) {
            if (!value(v)) return WellFormed::kNo;
          }
          break;
        case v1::Condition::kRange: {
          const v1::Range& r = c.range();
          if (!r.has_gt() && !r.has_gte() && !r.has_lt() && !r.has_lte()) return WellFormed::kNo;
          for (bool nan : {r.has_gt() && std::isnan(r.gt()), r.has_gte() && std::isnan(r.gte()),
                           r.has_lt() && std::isnan(r.lt()), r.has_lte() && std::isnan(r.lte())}) {
            if (nan) return WellFormed::kNo;
          }
          break;
        }
        case v1::Condition::kExists:
          break;
        case v1::Condition::TEST_NOT_SET:
          return WellFormed::kNo;
      }
    }
  }
  return result;
}

void OpenCatalog() {
  state->service.reset();
  state->catalog.reset();
  std::error_code error;
  fs::remove_all(state->data_dir, error);
  fs::remove_all(state->backup_dir, error);
  fs::create_directories(state->backup_dir);
  auto catalog = Catalog::Open(
      state->data_dir,
      {.threads = 1, .sync = false, .snapshot_every = 0, .attribute_limits = kAttributeLimits});
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
    Items& items = baseline.items[fixture.name] = Capture(fixture.name);
    // The engine holds what the fixture added.
    const std::set<uint64_t> replaced(fixture.replaced.begin(), fixture.replaced.end());
    for (const auto& [id, attributes] : items.attributes) {
      const ItemAttributes expected = FixtureAttributes(id, replaced.contains(id));
      if (!SameAttributes(attributes, expected)) {
        Fail(absl::StrCat("fixture item ", id, " of '", fixture.name, "' has attributes ",
                          Show(attributes), ", added ", Show(expected)));
      }
    }
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

// The state is still the fixture's: the index list and counts everywhere, and the live ids,
// vectors and attributes of `name` if it is a fixture index.
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
  if (!SameItems(Capture(name), state->baseline.items[name])) {
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
  const std::optional<std::vector<ItemAttributes>> attributes =
      ValidBatch(request.attributes(), request.ids_size(), false);
  if (!attributes) {
    Fail(absl::StrCat("AddItems accepted attributes outside the contract or the limits: ",
                      request.ShortDebugString().substr(0, 2000)));
  }
  const Items items = Capture(name);
  const Items& before = state->baseline.items[name];
  std::set<uint64_t> expected(before.ids.begin(), before.ids.end());
  expected.insert(request.ids().begin(), request.ids().end());
  if (std::set<uint64_t>(items.ids.begin(), items.ids.end()) != expected) {
    Fail(absl::StrCat("after AddItems '", name, "' has ", items.ids.size(), " live ids, expected ",
                      expected.size()));
  }
  const IndexInfo info = CurrentInfo(name);
  for (int i = 0; i < request.ids_size(); ++i) {
    const std::vector<float>& stored = items.vectors.at(request.ids(i));
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
    // An item added again has exactly the attributes of this call (none if it sent none).
    const ItemAttributes& read = items.attributes.at(request.ids(i));
    if (!SameAttributes(read, (*attributes)[static_cast<size_t>(i)])) {
      Fail(absl::StrCat("AddItems of id ", request.ids(i), " with attributes ",
                        Show((*attributes)[static_cast<size_t>(i)]), " reads back ", Show(read)));
    }
  }
  for (uint64_t id : before.ids) {
    if (std::find(request.ids().begin(), request.ids().end(), id) != request.ids().end()) continue;
    if (items.vectors.at(id) != before.vectors.at(id)) {
      Fail(absl::StrCat("AddItems changed the vector of id ", id, ", which it did not name"));
    }
    if (!SameAttributes(items.attributes.at(id), before.attributes.at(id))) {
      Fail(absl::StrCat("AddItems changed the attributes of id ", id,
                        ", which it did not name, to ", Show(items.attributes.at(id))));
    }
  }
}

// Every id named now has the attributes sent, keys ascending; nothing else changed.
void Accepted(const v1::SetAttributesRequest& request, const v1::SetAttributesResponse& response) {
  const std::string& name = request.name();
  const std::optional<std::vector<ItemAttributes>> attributes =
      ValidBatch(request.attributes(), request.ids_size(), true);
  if (!attributes) {
    Fail(absl::StrCat("SetAttributes accepted attributes outside the contract or the limits: ",
                      request.ShortDebugString().substr(0, 2000)));
  }
  if (response.updated() != static_cast<uint64_t>(request.ids_size())) {
    Fail(absl::StrCat("SetAttributes of ", request.ids_size(),
                      " ids answered updated=", response.updated()));
  }
  const Items items = Capture(name);
  const Items& before = state->baseline.items[name];
  if (items.ids != before.ids || items.vectors != before.vectors) {
    Fail(absl::StrCat("SetAttributes changed the ids or vectors of '", name, "'"));
  }
  std::map<uint64_t, size_t> named;
  for (int i = 0; i < request.ids_size(); ++i) {
    if (!std::binary_search(before.ids.begin(), before.ids.end(), request.ids(i))) {
      Fail(absl::StrCat("SetAttributes accepted id ", request.ids(i), ", not a live item"));
    }
    if (!named.emplace(request.ids(i), i).second) {
      Fail(absl::StrCat("SetAttributes accepted id ", request.ids(i), " twice"));
    }
  }
  for (uint64_t id : items.ids) {
    auto it = named.find(id);
    const ItemAttributes& expected =
        it != named.end() ? (*attributes)[it->second] : before.attributes.at(id);
    if (!SameAttributes(items.attributes.at(id), expected)) {
      Fail(absl::StrCat("after SetAttributes id ", id, it != named.end() ? "" : " (not named)",
                        " has attributes ", Show(items.attributes.at(id)), ", expected ",
                        Show(expected)));
    }
  }
}

void Accepted(const v1::DeleteItemsRequest& request, const v1::DeleteItemsResponse& response) {
  const std::string& name = request.name();
  const Items& before = state->baseline.items[name];
  std::set<uint64_t> named(request.ids().begin(), request.ids().end());
  uint64_t live_named = 0;
  std::set<uint64_t> expected;
  for (uint64_t id : before.ids) {
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
  const Items items = Capture(name);
  if (std::set<uint64_t>(items.ids.begin(), items.ids.end()) != expected) {
    Fail(absl::StrCat("after DeleteItems '", name, "' has the wrong live ids"));
  }
  for (uint64_t id : items.ids) {
    if (!SameAttributes(items.attributes.at(id), before.attributes.at(id))) {
      Fail(absl::StrCat("DeleteItems changed the attributes of id ", id, ", which it kept"));
    }
  }
}

// The rows of a QueryIndex of `items` (an index of `space`): n rows of k ids and distances,
// each nearest first, of live items at their true distances, padded at the end. With a
// `filter`: only items that match it, and min(k, matching live items) of them, all of the
// matching ones when there are at most k.
void CheckRows(const std::string& where_query, Space space, uint32_t dim, const Items& items,
               const float* queries, size_t n, uint32_t k, const v1::Filter* filter,
               const google::protobuf::RepeatedField<uint64_t>& ids,
               const google::protobuf::RepeatedField<float>& distances) {
  if (static_cast<size_t>(ids.size()) != n * k || distances.size() != ids.size()) {
    Fail(absl::StrCat(where_query, " of ", n, " queries at k=", k, " answered ", ids.size(),
                      " ids and ", distances.size(), " distances"));
  }
  // With a filter: the live items that match it under both readings of a range (`sure`),
  // and those that match under one only (`either`).
  std::set<uint64_t> sure, either;
  if (filter != nullptr) {
    for (uint64_t id : items.ids) {
      const ItemAttributes& item = items.attributes.at(id);
      const bool exact = Matches(*filter, id, item, RangeReading::kExact);
      const bool as_doubles = Matches(*filter, id, item, RangeReading::kAsDoubles);
      if (exact && as_doubles) sure.insert(id);
      if (exact != as_doubles) {
        either.insert(id);
        Note("range-reading",
             absl::StrCat(where_query, ": item ", id, " ", Show(item),
                          exact ? " lies in a range only exactly" : " lies in it only as doubles",
                          "; filter ", filter->ShortDebugString().substr(0, 500)));
      }
    }
  }
  for (size_t row = 0; row < n; ++row) {
    const float* query = queries + row * dim;
    const double query_norm = SquaredNorm(query, dim);
    bool padding = false;
    std::set<uint64_t> seen;
    for (uint32_t i = 0; i < k; ++i) {
      const uint64_t id = ids.Get(static_cast<int>(row * k + i));
      const float distance = distances.Get(static_cast<int>(row * k + i));
      const std::string where = absl::StrCat(where_query, " row ", row, " rank ", i);
      if (id == luxdb::engine::kMissingId) {
        padding = true;
        if (distance != luxdb::engine::kMissingDistance) Fail(where + ": padding with a distance");
        continue;
      }
      if (padding) Fail(where + ": a result after the padding");
      if (!std::binary_search(items.ids.begin(), items.ids.end(), id)) {
        Fail(absl::StrCat(where, ": id ", id, " is not a live item"));
      }
      if (!seen.insert(id).second) Fail(absl::StrCat(where, ": id ", id, " twice"));
      if (filter != nullptr && !sure.contains(id) && !either.contains(id)) {
        Fail(absl::StrCat(where, ": id ", id, " with attributes ", Show(items.attributes.at(id)),
                          " does not match the filter ",
                          filter->ShortDebugString().substr(0, 500)));
      }
      if (i > 0) {
        const float previous = distances.Get(static_cast<int>(row * k + i - 1));
        if (distance < previous) Fail(where + ": not nearest first");
      }
      const std::vector<float>& stored = items.vectors.at(id);
      const double expected = ExpectedDistance(space, query, stored);
      const double scale = 1 + query_norm + SquaredNorm(stored.data(), stored.size());
      if (std::isfinite(expected) && std::isfinite(distance) && scale < 1e30 &&
          std::abs(expected - distance) > 1e-4 * scale) {
        Fail(absl::StrCat(where, ": id ", id, " at distance ", distance, ", expected ", expected));
      }
    }
    if (filter == nullptr) continue;
    const size_t low = std::min<size_t>(k, sure.size());
    const size_t high = std::min<size_t>(k, sure.size() + either.size());
    if (seen.size() < low || seen.size() > high) {
      Fail(absl::StrCat(where_query, " row ", row, " holds ", seen.size(), " results at k=", k,
                        " where ", sure.size(), " live items match the filter",
                        either.empty() ? "" : absl::StrCat(" (and ", either.size(), " may)"), ": ",
                        filter->ShortDebugString().substr(0, 500)));
    }
    if (sure.size() + either.size() <= k) {
      for (uint64_t id : sure) {
        if (!seen.contains(id)) {
          Fail(absl::StrCat(where_query, " row ", row, " misses id ", id, " ",
                            Show(items.attributes.at(id)), ", one of the ", sure.size(),
                            " live items that match the filter ",
                            filter->ShortDebugString().substr(0, 500), " at k=", k));
        }
      }
    }
  }
}

void Accepted(const v1::QueryIndexRequest& request, const v1::QueryIndexResponse& response) {
  const std::string& name = request.name();
  const IndexInfo* info = BaselineInfo(name);
  if (info == nullptr) Fail("QueryIndex answered for an index that does not exist");
  if (request.has_filter() && CheckFilterShape(request.filter()) == WellFormed::kNo) {
    Fail(absl::StrCat("QueryIndex accepted the malformed filter ",
                      request.filter().ShortDebugString().substr(0, 500)));
  }
  const uint32_t k = request.k();
  const size_t n = static_cast<size_t>(request.vectors_size()) / info->dim;
  if (response.k() != k) Fail(absl::StrCat("QueryIndex at k=", k, " answered k=", response.k()));
  CheckRows(absl::StrCat("QueryIndex of '", name, "'"), info->space, info->dim,
            state->baseline.items[name], request.vectors().data(), n, k,
            request.has_filter() ? &request.filter() : nullptr, response.ids(),
            response.distances());
}

v1::Condition Exists(const std::string& key, bool exists) {
  v1::Condition c;
  c.set_key(key);
  c.set_exists(exists);
  return c;
}

// Filters CheckStillAnswers runs after a write, each through the service's QueryIndex:
// one the attribute indexes bound (few or many items), one they cannot (a graph search that
// may fall back to a full scan), one with `should` conditions over several kinds.
const std::vector<v1::Filter>& FiltersAfterAWrite() {
  static const auto* filters = [] {
    auto* out = new std::vector<v1::Filter>(4);
    *(*out)[0].add_must() = Exists("n", true);
    *(*out)[1].add_must_not() = Exists("color", true);
    v1::Condition* red = (*out)[2].add_should();
    red->set_key("color");
    red->mutable_equals()->set_s("red");
    v1::Condition* price = (*out)[2].add_should();
    price->set_key("price");
    price->mutable_range()->set_gte(2.5);
    price->mutable_range()->set_lt(40);
    v1::Condition* nums = (*out)[3].add_must();
    nums->set_key("nums");
    nums->mutable_any_of()->add_values()->set_i(3);
    nums->mutable_any_of()->add_values()->set_d(4.0);
    *(*out)[3].add_must_not() = Exists("rare", true);
    return out;
  }();
  return *filters;
}

// The index a mutating call changed still answers: counts agree with its ids, every id's
// vector and attributes read back, and queries run, filtered ones included (their rows
// checked against the attributes as they are now).
void CheckStillAnswers(const std::string& name) {
  auto index = state->catalog->Get(name);
  if (!index.ok()) return;
  const IndexInfo info = (*index)->Info();
  if (!info.initialized) return;
  const Items items = Capture(name);
  if (items.ids.size() != info.element_count) {
    Fail(absl::StrCat("index '", name, "' reports ", info.element_count, " live items but has ",
                      items.ids.size(), " ids"));
  }
  for (const auto& [id, attributes] : items.attributes) {
    for (size_t i = 1; i < attributes.size(); ++i) {
      if (!(attributes[i - 1].key < attributes[i].key)) {
        Fail(absl::StrCat("index '", name, "' item ", id, " has attributes ", Show(attributes),
                          ", keys not ascending"));
      }
    }
  }
  const std::vector<float> query = FixtureVector(1, info.dim);
  for (int i = -1; i < static_cast<int>(FiltersAfterAWrite().size()); ++i) {
    v1::QueryIndexRequest request;
    request.set_name(name);
    request.mutable_vectors()->Add(query.begin(), query.end());
    request.set_k(5);
    if (i >= 0) *request.mutable_filter() = FiltersAfterAWrite()[static_cast<size_t>(i)];
    v1::QueryIndexResponse response;
    grpc::ServerContext context;
    const grpc::Status status = state->service->Query(&context, &request, &response);
    const std::string call =
        absl::StrCat("QueryIndex ", request.ShortDebugString(), " after a write");
    if (!status.ok())
      Fail(absl::StrCat(call, " answered ", status.error_code(), ": ", status.error_message()));
    CheckRows(call, info.space, info.dim, items, query.data(), 1, 5,
              request.has_filter() ? &request.filter() : nullptr, response.ids(),
              response.distances());
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
  if (!SameItems(Capture(name), state->baseline.items[name])) {
    Fail(absl::StrCat("after CompactIndex '", name, "' has other live ids, vectors or attributes"));
  }
}

// Without paging fields: every live id (the fixture's lists fit in one reply). Paged: the
// live ids above start_after, as many as the limit (0: kMaxIdsPerPage) and the reply allow,
// with next_start_after set to the last of them exactly when more follow.
void Accepted(const v1::GetIdsRequest& request, const v1::GetIdsResponse& response) {
  const std::vector<uint64_t> ids(response.ids().begin(), response.ids().end());
  const std::vector<uint64_t>& live = state->baseline.items[request.name()].ids;
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
  const Items& items = state->baseline.items[request.name()];
  if (response.attributes_size() != (request.with_attributes() ? request.ids_size() : 0)) {
    Fail(absl::StrCat("GetElements of ", request.ids_size(), " ids",
                      request.with_attributes() ? " with" : " without", " attributes answered ",
                      response.attributes_size(), " of them"));
  }
  for (int i = 0; i < request.ids_size(); ++i) {
    auto it = items.vectors.find(request.ids(i));
    if (it == items.vectors.end()) {
      Fail(absl::StrCat("GetElements answered for id ", request.ids(i), ", which is not live"));
    }
    if (!std::equal(it->second.begin(), it->second.end(),
                    response.vectors().begin() + static_cast<ptrdiff_t>(i) * info->dim)) {
      Fail(absl::StrCat("GetElements returned another vector for id ", request.ids(i)));
    }
    if (!request.with_attributes()) continue;
    // As answered, in order: the keys must come ascending.
    ItemAttributes answered;
    for (const v1::Attribute& a : response.attributes(i).attributes()) {
      luxdb::engine::Attribute& attribute = answered.emplace_back();
      attribute.key = a.key();
      for (const v1::Value& v : a.values()) {
        std::optional<AttributeValue> value = FromProto(v);
        if (!value)
          Fail(absl::StrCat("GetElements answered a value with no kind for id ", request.ids(i)));
        attribute.values.push_back(*std::move(value));
      }
    }
    if (!SameAttributes(answered, items.attributes.at(request.ids(i)))) {
      Fail(absl::StrCat("GetElements answered attributes ", Show(answered), " for id ",
                        request.ids(i), ", which has ", Show(items.attributes.at(request.ids(i))),
                        " (keys ascending)"));
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
    std::is_same_v<Request, v1::CompactIndexRequest> ||
    std::is_same_v<Request, v1::SetAttributesRequest>;

// A call changed nothing visible and is checked as read-only (an empty AddItems, a
// DeleteItems of ids already deleted).
template <typename Response>
bool NoEffect(const Response&) {
  return false;
}
bool NoEffect(const v1::AddItemsResponse& response) { return response.added() == 0; }
bool NoEffect(const v1::DeleteItemsResponse& response) { return response.deleted() == 0; }
bool NoEffect(const v1::SetAttributesResponse& response) { return response.updated() == 0; }

// A refusal of what the contract says must be accepted: attributes within it and the limits
// refused as attributes, a well-formed filter refused as a filter. (Another part of the
// request may be wrong, so only refusals that blame these parts count.)
template <typename Request>
void CheckRefusalBlamesRightly(const Request&, const grpc::Status&, const std::string&) {}

void CheckRefusalBlamesRightly(const v1::AddItemsRequest& request, const grpc::Status& status,
                               const std::string& call) {
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
      absl::StrContains(status.error_message(), "attribute") &&
      ValidBatch(request.attributes(), request.ids_size(), false)) {
    Fail(absl::StrCat(
        call, " refused attributes within the contract and the limits: ", status.error_message()));
  }
}

void CheckRefusalBlamesRightly(const v1::SetAttributesRequest& request, const grpc::Status& status,
                               const std::string& call) {
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
      absl::StrContains(status.error_message(), "attribute") &&
      ValidBatch(request.attributes(), request.ids_size(), true)) {
    Fail(absl::StrCat(
        call, " refused attributes within the contract and the limits: ", status.error_message()));
  }
}

void CheckRefusalBlamesRightly(const v1::QueryIndexRequest& request, const grpc::Status& status,
                               const std::string& call) {
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
      absl::StrContains(status.error_message(), "filter") &&
      CheckFilterShape(request.filter()) == WellFormed::kYes) {
    Fail(absl::StrCat(call, " refused a well-formed filter: ", status.error_message()));
  }
}

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
    if (BaselineInfo(name) != nullptr) CheckRefusalBlamesRightly(request, status, call);
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
  switch (data[0] % 16) {
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
    case 15:
      Run("SetAttributes", &S::SetAttributes, body, n);
      break;
  }
  return 0;
}
