// Attributes and filtered queries in the engine (issue 17): the rules attributes and filters
// are checked against, their stored form, and filtered queries over real storage compared with
// a brute-force answer computed here, through writes, replaces, deletes, SetAttributes,
// restarts, a crash replay and a compaction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/attributes.h"
#include "engine/catalog.h"
#include "engine/index.h"
#include "engine/limits.h"
#include "tests/test_support.h"

namespace luxdb::engine {
namespace {

using storage::Space;

::testing::AssertionResult StatusIs(const absl::Status& status, absl::StatusCode code,
                                    std::initializer_list<absl::string_view> parts) {
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "got " << status << ", want code " << code;
  }
  for (absl::string_view part : parts) {
    if (status.message().find(part) == absl::string_view::npos) {
      return ::testing::AssertionFailure() << "'" << status.message() << "' lacks '" << part << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

Condition Equals(std::string key, AttributeValue v) {
  return {.key = std::move(key), .test = Condition::Test::kEquals, .values = {std::move(v)}};
}
Condition AnyOf(std::string key, std::vector<AttributeValue> v) {
  return {.key = std::move(key), .test = Condition::Test::kAnyOf, .values = std::move(v)};
}
Condition Exists(std::string key, bool exists = true) {
  return {.key = std::move(key), .test = Condition::Test::kExists, .exists = exists};
}
Condition InRange(std::string key, std::optional<double> gte, std::optional<double> lt) {
  return {.key = std::move(key), .test = Condition::Test::kRange, .gte = gte, .lt = lt};
}

// ---------------------------------------------------------------------------------------------
// Rules and coding

TEST(AttributesTest, CheckSortsKeysAndRefusesEachBrokenRuleNamingItemAndKey) {
  const AttributeLimits limits{
      .max_keys = 3, .max_key_bytes = 8, .max_string_bytes = 5, .max_values = 2};
  ItemAttributes ok = {{"b", {int64_t{1}, int64_t{2}}}, {"a", {std::string("x")}}};
  ASSERT_TRUE(CheckAttributes(ok, limits, "docs", 7).ok());
  EXPECT_EQ(ok[0].key, "a");

  auto refused = [&](ItemAttributes a, std::initializer_list<absl::string_view> parts) {
    return StatusIs(CheckAttributes(a, limits, "docs", 7), absl::StatusCode::kInvalidArgument,
                    parts);
  };
  EXPECT_TRUE(refused({{"a", {true}}, {"b", {true}}, {"c", {true}}, {"d", {true}}},
                      {"item 7", "'docs'", "4 attributes", "--max-attribute-keys"}));
  EXPECT_TRUE(refused({{"", {true}}}, {"item 7", "empty key"}));
  EXPECT_TRUE(refused({{"abcdefghij", {true}}}, {"10 bytes", "--max-attribute-key-bytes"}));
  EXPECT_TRUE(refused({{"s", {std::string("toolong")}}}, {"'s'", "--max-attribute-string-bytes"}));
  EXPECT_TRUE(refused({{"l", {int64_t{1}, int64_t{2}, int64_t{3}}}},
                      {"'l'", "3 values", "--max-attribute-values"}));
  EXPECT_TRUE(refused({{"l", {}}}, {"'l'", "no value"}));
  EXPECT_TRUE(refused({{"d", {1.0, 2.0}}}, {"'d'", "only string and int attributes"}));
  EXPECT_TRUE(refused({{"m", {int64_t{1}, std::string("x")}}}, {"'m'", "mixes int and string"}));
  EXPECT_TRUE(refused({{"n", {std::nan("")}}}, {"'n'", "finite"}));
  EXPECT_TRUE(refused({{"k", {true}}, {"k", {false}}}, {"'k'", "twice"}));
}

TEST(AttributesTest, EncodeDecodeRoundTripsEveryKindAndRejectsDamagedBytes) {
  ItemAttributes a = {{"b", {true}},
                      {"d", {-2.5}},
                      {"i", {int64_t{-7}, int64_t{1} << 60}},
                      {"s", {std::string(""), std::string("ünïcode")}}};
  const std::string bytes = EncodeAttributes(a);
  absl::StatusOr<ItemAttributes> back = DecodeAttributes(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ((*back)[i].key, a[i].key);
    EXPECT_EQ((*back)[i].values, a[i].values);
  }
  EXPECT_TRUE(EncodeAttributes({}).empty());
  EXPECT_TRUE(DecodeAttributes("").ok());
  EXPECT_TRUE(StatusIs(DecodeAttributes(bytes.substr(0, bytes.size() - 3)).status(),
                       absl::StatusCode::kDataLoss, {"invalid"}));
  EXPECT_TRUE(
      StatusIs(DecodeAttributes(bytes + "x").status(), absl::StatusCode::kDataLoss, {"trailing"}));
}

TEST(AttributesTest, CheckFilterNamesTheMalformedCondition) {
  EXPECT_TRUE(CheckFilter({.must = {Equals("a", int64_t{1})}, .should = {Exists("b")}}).ok());
  EXPECT_TRUE(StatusIs(CheckFilter({.must = {Exists("a"), Equals("", true)}}),
                       absl::StatusCode::kInvalidArgument, {"filter.must[1]", "empty key"}));
  Condition no_bound{.key = "price", .test = Condition::Test::kRange};
  EXPECT_TRUE(StatusIs(CheckFilter({.should = {no_bound}}), absl::StatusCode::kInvalidArgument,
                       {"filter.should[0] ('price')", "needs at least one bound"}));
  EXPECT_TRUE(StatusIs(CheckFilter({.must_not = {InRange("p", std::nan(""), 1.0)}}),
                       absl::StatusCode::kInvalidArgument, {"filter.must_not[0] ('p')", "NaN"}));
  EXPECT_TRUE(StatusIs(CheckFilter({.must = {Equals("x", std::nan(""))}}),
                       absl::StatusCode::kInvalidArgument, {"filter.must[0] ('x')", "NaN"}));
  std::vector<AttributeValue> many(kMaxAnyOfValues + 1, int64_t{1});
  EXPECT_TRUE(StatusIs(CheckFilter({.must = {AnyOf("t", many)}}),
                       absl::StatusCode::kInvalidArgument,
                       {"filter.must[0] ('t')", "1025 values"}));
  Filter big;
  big.must.assign(kMaxFilterConditions + 1, Exists("a"));
  EXPECT_TRUE(StatusIs(CheckFilter(big), absl::StatusCode::kInvalidArgument, {"257 conditions"}));
}

// ---------------------------------------------------------------------------------------------
// Filtered queries over real storage

// What the test knows of each item: its vector and attributes, or that it is gone.
struct Item {
  std::vector<float> vector;
  ItemAttributes attributes;
  bool live = false;
};

// The reference: does `item` (of id `id`) match `filter`? Written from the contract, apart from
// AttributeIndex.
bool Reference(const Filter& filter, uint64_t id, const Item& item) {
  if (!filter.ids.empty() &&
      std::find(filter.ids.begin(), filter.ids.end(), id) == filter.ids.end()) {
    return false;
  }
  auto test = [&](const Condition& c) {
    const Attribute* a = nullptr;
    for (const Attribute& x : item.attributes) {
      if (x.key == c.key) a = &x;
    }
    if (c.test == Condition::Test::kExists) return (a != nullptr) == c.exists;
    if (a == nullptr) return false;
    auto number = [](const AttributeValue& v) -> std::optional<double> {
      if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
      if (auto* d = std::get_if<double>(&v)) return *d;
      return std::nullopt;
    };
    for (const AttributeValue& v : a->values) {
      if (c.test == Condition::Test::kRange) {
        const std::optional<double> x = number(v);
        if (x && (!c.gte || *x >= *c.gte) && (!c.gt || *x > *c.gt) && (!c.lt || *x < *c.lt) &&
            (!c.lte || *x <= *c.lte)) {
          return true;
        }
        continue;
      }
      for (const AttributeValue& w : c.values) {
        if (v == w ||
            (number(v) && number(w) && v.index() != w.index() && *number(v) == *number(w))) {
          return true;
        }
      }
    }
    return false;
  };
  for (const Condition& c : filter.must) {
    if (!test(c)) return false;
  }
  for (const Condition& c : filter.must_not) {
    if (test(c)) return false;
  }
  if (filter.should.empty()) return true;
  return std::any_of(filter.should.begin(), filter.should.end(), test);
}

class FilterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Open()); }

  void Open(Catalog::Options options = {.threads = 2, .sync = false}) {
    index_.reset();
    catalog_.reset();  // without Close: what a crash leaves, if it was not closed first
    absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Open(dir(), options);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
    catalog_->WaitUntilLoaded();
    if (catalog_->Exists("docs")) index_ = *catalog_->Get("docs");
  }
  void CloseAndReopen() {
    ASSERT_TRUE(catalog_->Close().ok());
    ASSERT_NO_FATAL_FAILURE(Open());
  }
  std::string dir() const { return tmp_.path() + "/data"; }

  // `n` items of dimension kDim: "bucket" int 0..99, "tenant" int 0..4, "tags" 1-3 strings of
  // t0..t19, "price" double for even ids, "vip" bool for every 10th.
  void Populate(uint64_t n, uint64_t capacity = 0) {
    ASSERT_TRUE(catalog_->Create("docs", Space::kL2, kDim).ok());
    index_ = *catalog_->Get("docs");
    ASSERT_TRUE(index_->Init({.max_elements = capacity != 0 ? capacity : n + 100}).ok());
    std::mt19937_64 rng(7);
    items_.assign(n, {});
    std::vector<float> vectors;
    std::vector<uint64_t> ids;
    std::vector<ItemAttributes> attributes;
    for (uint64_t id = 0; id < n; ++id) {
      Item& item = items_[id];
      item.vector = RandomVector(rng);
      item.attributes = RandomAttributes(rng, id);
      vectors.insert(vectors.end(), item.vector.begin(), item.vector.end());
      ids.push_back(id);
      attributes.push_back(item.attributes);
      if (ids.size() == 1000 || id + 1 == n) {
        ASSERT_TRUE(index_->Add(vectors, ids, attributes).ok());
        for (uint64_t done : ids) items_[done].live = true;
        vectors.clear();
        ids.clear();
        attributes.clear();
      }
    }
  }

  static std::vector<float> RandomVector(std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    std::vector<float> v(kDim);
    for (float& x : v) x = normal(rng);
    return v;
  }
  static ItemAttributes RandomAttributes(std::mt19937_64& rng, uint64_t id) {
    ItemAttributes a;
    a.push_back({"bucket", {static_cast<int64_t>(rng() % 100)}});
    a.push_back({"tenant", {static_cast<int64_t>(rng() % 5)}});
    std::vector<AttributeValue> tags;
    for (uint64_t t = 0, count = 1 + rng() % 3; t < count; ++t) {
      tags.push_back(absl::StrCat("t", rng() % 20));
    }
    std::sort(tags.begin(), tags.end());
    tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
    a.push_back({"tags", tags});
    if (id % 2 == 0) a.push_back({"price", {static_cast<double>(rng() % 1000) / 10}});
    if (id % 10 == 0) a.push_back({"vip", {true}});
    std::sort(a.begin(), a.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
    return a;
  }

  // Runs `filter` for `queries` random query vectors at k and checks every row against the
  // brute-force answer over the live matching items: no row holds a non-matching or dead item,
  // every row holds min(k, matches) results, and the rows share at least `min_recall` of the
  // true nearest. Returns the number of matching items.
  size_t Check(const Filter& filter, uint32_t k, double min_recall = 1.0, int queries = 20,
               uint32_t ef = 64) {
    std::mt19937_64 rng(99);
    std::vector<uint64_t> matching;
    for (uint64_t id = 0; id < items_.size(); ++id) {
      if (items_[id].live && Reference(filter, id, items_[id])) matching.push_back(id);
    }
    std::vector<float> q;
    for (int i = 0; i < queries; ++i) {
      std::vector<float> v = RandomVector(rng);
      q.insert(q.end(), v.begin(), v.end());
    }
    std::vector<uint64_t> ids(queries * k);
    std::vector<float> distances(queries * k);
    absl::Status s = index_->Query(q, k, ef, ids, distances, kNoDeadline, &filter);
    EXPECT_TRUE(s.ok()) << s;
    size_t hits = 0, total = 0;
    for (int i = 0; i < queries; ++i) {
      std::vector<std::pair<float, uint64_t>> truth;
      for (uint64_t id : matching) {
        float d = 0;
        for (uint32_t j = 0; j < kDim; ++j) {
          const float diff = items_[id].vector[j] - q[i * kDim + j];
          d += diff * diff;
        }
        truth.emplace_back(d, id);
      }
      std::sort(truth.begin(), truth.end());
      truth.resize(std::min<size_t>(truth.size(), k));
      size_t found = 0;
      for (uint32_t j = 0; j < k; ++j) {
        const uint64_t id = ids[i * k + j];
        if (id == kMissingId) continue;
        ++found;
        EXPECT_LT(id, items_.size());
        if (id >= items_.size()) continue;
        EXPECT_TRUE(items_[id].live) << "deleted item " << id << " returned";
        EXPECT_TRUE(Reference(filter, id, items_[id])) << "item " << id << " violates the filter";
        hits += std::any_of(truth.begin(), truth.end(), [&](auto& t) { return t.second == id; });
      }
      EXPECT_EQ(found, truth.size()) << "query " << i << ": " << matching.size() << " match";
      // Rows are padded after the results.
      for (uint32_t j = static_cast<uint32_t>(found); j < k; ++j) {
        EXPECT_EQ(ids[i * k + j], kMissingId);
      }
      total += truth.size();
    }
    if (total > 0) {
      EXPECT_GE(static_cast<double>(hits) / static_cast<double>(total), min_recall);
    }
    return matching.size();
  }

  static constexpr uint32_t kDim = 8;
  luxdb::testing::TempDir tmp_;
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<Index> index_;
  std::vector<Item> items_;
};

TEST_F(FilterTest, EveryConditionAloneAndCombinedMatchesTheBruteForceAnswer) {
  ASSERT_NO_FATAL_FAILURE(Populate(2000));
  // Every kind of test, on every kind of value, alone.
  EXPECT_GT(Check({.must = {Equals("tenant", int64_t{3})}}, 10), 300u);
  EXPECT_GT(Check({.must = {Equals("tags", std::string("t4"))}}, 10), 100u);  // a list
  EXPECT_GT(Check({.must = {Equals("vip", true)}}, 10), 150u);
  EXPECT_EQ(Check({.must = {Equals("vip", false)}}, 10), 0u);
  // int64 and double compare as numbers, both ways.
  EXPECT_GT(Check({.must = {Equals("bucket", 42.0)}}, 10), 5u);
  EXPECT_GT(Check({.must = {Equals("price", int64_t{50})}}, 5), 0u);
  EXPECT_EQ(Check({.must = {Equals("bucket", 42.5)}}, 10), 0u);
  EXPECT_GT(Check({.must = {AnyOf("tags", {std::string("t1"), std::string("t2")})}}, 10), 150u);
  EXPECT_GT(Check({.must = {AnyOf("tenant", {int64_t{0}, 4.0})}}, 10), 600u);
  EXPECT_GT(Check({.must = {InRange("bucket", 10, 20)}}, 10), 100u);
  EXPECT_GT(Check({.must = {InRange("price", std::nullopt, 5.5)}}, 10), 30u);
  Condition open_range{.key = "bucket", .test = Condition::Test::kRange, .gt = 97, .lte = 99};
  EXPECT_GT(Check({.must = {open_range}}, 10), 20u);
  EXPECT_GT(Check({.must = {Exists("price")}}, 10), 900u);
  EXPECT_GT(Check({.must = {Exists("price", false)}}, 10), 900u);
  // Combined.
  EXPECT_GT(Check({.must = {Equals("tenant", int64_t{1}), InRange("bucket", 0, 50)},
                   .must_not = {Equals("tags", std::string("t3"))}},
                  10),
            100u);
  EXPECT_GT(Check({.must_not = {Exists("vip")},
                   .should = {Equals("tags", std::string("t7")), InRange("price", 90, 100)}},
                  10),
            100u);
  std::vector<uint64_t> allowed;
  for (uint64_t id = 5; id < 2000; id += 37) allowed.push_back(id);
  EXPECT_EQ(Check({.ids = allowed}, 10), allowed.size());
  EXPECT_GT(Check({.must = {Exists("price")}, .ids = allowed}, 10), 10u);
  // Strings never equal numbers, nor bools ints.
  EXPECT_EQ(Check({.must = {Equals("tenant", std::string("1"))}}, 10), 0u);
  EXPECT_EQ(Check({.must = {Equals("vip", int64_t{1})}}, 10), 0u);
}

TEST_F(FilterTest, UnknownKeysEmptyResultsAndKAboveTheMatchesArePadded) {
  ASSERT_NO_FATAL_FAILURE(Populate(500));
  EXPECT_EQ(Check({.must = {Equals("colour", std::string("red"))}}, 10), 0u);
  EXPECT_EQ(Check({.must = {Exists("colour")}}, 10), 0u);
  EXPECT_EQ(Check({.must = {Exists("colour", false)}}, 10), 500u);  // every item lacks it
  EXPECT_EQ(Check({.should = {Equals("colour", true)}}, 10), 0u);
  EXPECT_EQ(Check({.must_not = {Exists("colour")}}, 10), 500u);
  EXPECT_EQ(Check({.ids = {100000, 100001}}, 10), 0u);
  // k far above the matches: exactly the matches, then padding.
  EXPECT_EQ(Check({.ids = {1, 2, 3}}, 50), 3u);
  EXPECT_LT(Check({.must = {Equals("bucket", int64_t{7})}}, 100), 100u);
}

TEST_F(FilterTest, GraphSearchPathKeepsRecallAndFallsBackWhenFewMatch) {
  // Large enough that a filter matching half the items takes the filtered graph search.
  ASSERT_NO_FATAL_FAILURE(Populate(30000));
  EXPECT_GT(Check({.must = {InRange("bucket", 0, 50)}}, 10, 0.9), 14000u);
  EXPECT_GT(Check({.must_not = {Equals("tenant", int64_t{2})}}, 10, 0.9), 23000u);
  // Only must_not: the attribute indexes cannot bound it, so the graph search runs, finds
  // fewer than k and falls back to a full scan: still exactly every match.
  const size_t few = Check({.must_not = {InRange("bucket", 1, std::nullopt)}}, 500, 1.0, 3);
  EXPECT_GT(few, 200u);
  EXPECT_LT(few, 500u);
}

TEST_F(FilterTest, DeletesReplacesAndSetAttributesChangeWhatMatches) {
  ASSERT_NO_FATAL_FAILURE(Populate(1000));
  const Filter vip{.must = {Equals("vip", true)}};
  const size_t before = Check(vip, 20);
  // Delete some vip items.
  std::vector<uint64_t> gone = {0, 10, 20, 30};
  ASSERT_TRUE(index_->Delete(gone).ok());
  for (uint64_t id : gone) items_[id].live = false;
  EXPECT_EQ(Check(vip, 20), before - 4);
  // Replace: 40 loses its attributes (none given), 41 becomes vip with a new vector.
  std::mt19937_64 rng(3);
  items_[40].vector = RandomVector(rng);
  items_[40].attributes = {};
  ASSERT_TRUE(index_->Add(items_[40].vector, std::vector<uint64_t>{40}).ok());
  items_[41].vector = RandomVector(rng);
  items_[41].attributes = {{"vip", {true}}};
  ASSERT_TRUE(
      index_->Add(items_[41].vector, std::vector<uint64_t>{41}, {items_[41].attributes}).ok());
  EXPECT_EQ(Check(vip, 20), before - 4);
  // SetAttributes: vectors stay, attributes change; an empty set removes them.
  items_[50].attributes = {};
  items_[51].attributes = {{"vip", {true}}, {"tenant", {int64_t{9}}}};
  ASSERT_TRUE(index_
                  ->SetAttributes(std::vector<uint64_t>{50, 51},
                                  {items_[50].attributes, items_[51].attributes})
                  .ok());
  EXPECT_EQ(Check(vip, 20), before - 4);
  EXPECT_EQ(Check({.must = {Equals("tenant", int64_t{9})}}, 5), 1u);
  absl::StatusOr<std::vector<ItemAttributes>> got =
      index_->GetAttributes(std::vector<uint64_t>{51, 50});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0][0].key, "tenant");  // keys ascending
  EXPECT_EQ((*got)[0][1].key, "vip");
  EXPECT_TRUE((*got)[1].empty());
  // All or nothing: a deleted id, an absent id, or a bad attribute changes nothing.
  EXPECT_TRUE(StatusIs(index_->SetAttributes(std::vector<uint64_t>{52, 10}, {{}, {}}).status(),
                       absl::StatusCode::kNotFound, {"10", "deleted"}));
  EXPECT_TRUE(StatusIs(index_->SetAttributes(std::vector<uint64_t>{52, 5000}, {{}, {}}).status(),
                       absl::StatusCode::kNotFound, {"5000"}));
  EXPECT_TRUE(StatusIs(
      index_->SetAttributes(std::vector<uint64_t>{52, 53}, {{}, {{"x", {std::nan("")}}}}).status(),
      absl::StatusCode::kInvalidArgument, {"item 53", "'x'"}));
  EXPECT_TRUE(StatusIs(index_->SetAttributes(std::vector<uint64_t>{52}, {}).status(),
                       absl::StatusCode::kInvalidArgument, {"1 ids"}));
  EXPECT_TRUE(StatusIs(index_->Add(items_[60].vector, std::vector<uint64_t>{60}, {{}, {}}).status(),
                       absl::StatusCode::kInvalidArgument, {"attributes for each"}));
  EXPECT_TRUE(StatusIs(index_->GetAttributes(std::vector<uint64_t>{10}).status(),
                       absl::StatusCode::kNotFound, {"10"}));
  EXPECT_EQ(Check({.must = {Exists("tags")}}, 10), 1000u - 4 - 4);  // 40, 41, 50, 51 lost tags
}

TEST_F(FilterTest, CachedFiltersFollowEveryWriteOnBothPaths) {
  // 30,000 items: the range filter (half of them) takes the filtered graph search, the tenant
  // filter (a fifth) the exact scan until it is cached and the two-hop graph search after, the
  // tags filter the exact scan until SetAttributes below gives a tenth of the items its tag.
  // Each is queried enough times to enter the filter cache, then writes change what they match
  // and every answer is checked again (the graph searches are approximate: recall 0.9).
  ASSERT_NO_FATAL_FAILURE(Populate(30000));
  const std::vector<Filter> filters = {
      {.must = {InRange("bucket", 0, 50)}},
      {.must = {Equals("tenant", int64_t{3})}},
      {.must = {Equals("tags", std::string("t9"))}, .must_not = {Exists("vip")}}};
  auto check_all = [&] {
    for (int repeat = 0; repeat < 3; ++repeat) {
      Check(filters[0], 10, 0.9, 5);
      Check(filters[1], 10, 0.9, 5);
      Check(filters[2], 10, 0.9, 5);
    }
  };
  check_all();
  std::mt19937_64 rng(11);
  // Deletes, replaces with other attributes, replaces without any, SetAttributes, new items.
  std::vector<uint64_t> gone;
  for (uint64_t id = 0; id < 30000; id += 7) gone.push_back(id);
  ASSERT_TRUE(index_->Delete(gone).ok());
  for (uint64_t id : gone) items_[id].live = false;
  check_all();
  std::vector<float> vectors;
  std::vector<uint64_t> ids;
  std::vector<ItemAttributes> attributes;
  for (uint64_t id = 1; id < 30000; id += 5) {
    items_[id].vector = RandomVector(rng);
    items_[id].attributes = id % 2 == 0 ? ItemAttributes{} : RandomAttributes(rng, id);
    items_[id].live = true;
    vectors.insert(vectors.end(), items_[id].vector.begin(), items_[id].vector.end());
    ids.push_back(id);
    attributes.push_back(items_[id].attributes);
  }
  ASSERT_TRUE(index_->Add(vectors, ids, attributes).ok());
  check_all();
  ids.clear();
  attributes.clear();
  for (uint64_t id = 2; id < 30000; id += 11) {
    if (!items_[id].live) continue;
    items_[id].attributes = {{"tenant", {int64_t{3}}}, {"tags", {std::string("t9")}}};
    ids.push_back(id);
    attributes.push_back(items_[id].attributes);
  }
  ASSERT_TRUE(index_->SetAttributes(ids, attributes).ok());
  check_all();
  const uint64_t fresh = items_.size();
  items_.push_back({RandomVector(rng), {{"tenant", {int64_t{3}}}}, true});
  ASSERT_TRUE(
      index_->Add(items_[fresh].vector, std::vector<uint64_t>{fresh}, {items_[fresh].attributes})
          .ok());
  check_all();
  // A key no item had when the filter was cached, added afterwards, is matched.
  const Filter colour{.must = {Equals("colour", std::string("red"))}};
  for (int repeat = 0; repeat < 3; ++repeat) EXPECT_EQ(Check(colour, 10), 0u);
  items_[5].attributes.push_back({"colour", {std::string("red")}});
  std::sort(items_[5].attributes.begin(), items_[5].attributes.end(),
            [](const auto& x, const auto& y) { return x.key < y.key; });
  ASSERT_TRUE(index_->SetAttributes(std::vector<uint64_t>{5}, {items_[5].attributes}).ok());
  EXPECT_EQ(Check(colour, 10), 1u);
  // A compaction swaps in another graph: the cache starts over on it.
  ASSERT_TRUE(index_->Compact().ok());
  check_all();
}

TEST_F(FilterTest, AttributesSurviveRestartCrashReplayAndCompaction) {
  ASSERT_NO_FATAL_FAILURE(Populate(1500));
  const std::vector<Filter> filters = {
      {.must = {Equals("tenant", int64_t{2})}},
      {.must = {AnyOf("tags", {std::string("t5")})}, .must_not = {Exists("price")}},
      {.should = {Equals("vip", true), InRange("bucket", 95, std::nullopt)}}};
  auto check_all = [&] {
    for (const Filter& f : filters) Check(f, 10, 1.0, 5);
  };
  std::vector<uint64_t> gone;
  for (uint64_t id = 0; id < 1500; id += 3) gone.push_back(id);
  ASSERT_TRUE(index_->Delete(gone).ok());
  for (uint64_t id : gone) items_[id].live = false;
  ASSERT_TRUE(index_->SetAttributes(std::vector<uint64_t>{1}, {{{"tenant", {int64_t{2}}}}}).ok());
  items_[1].attributes = {{"tenant", {int64_t{2}}}};
  check_all();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());  // snapshot + clean restart
  check_all();
  // Writes after the snapshot, then a crash: the replay and the stored attributes agree.
  items_[2].attributes = {{"tenant", {int64_t{2}}}, {"vip", {true}}};
  ASSERT_TRUE(index_->SetAttributes(std::vector<uint64_t>{2}, {items_[2].attributes}).ok());
  std::mt19937_64 rng(5);
  items_[3].vector = RandomVector(rng);
  items_[3].attributes = {{"tags", {std::string("t5")}}};
  items_[3].live = true;
  ASSERT_TRUE(index_->Add(items_[3].vector, std::vector<uint64_t>{3}, {items_[3].attributes}).ok());
  // A replace without attributes removes the stored ones; a deleted item revived without
  // attributes has none (its deletion removed them).
  items_[4].attributes = {};
  ASSERT_TRUE(index_->Add(items_[4].vector, std::vector<uint64_t>{4}).ok());
  items_[6].live = true;
  items_[6].attributes = {};
  ASSERT_TRUE(index_->Add(items_[6].vector, std::vector<uint64_t>{6}).ok());
  auto expect_no_attributes = [&] {
    absl::StatusOr<std::vector<ItemAttributes>> got =
        index_->GetAttributes(std::vector<uint64_t>{4, 6});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE((*got)[0].empty());
    EXPECT_TRUE((*got)[1].empty());
  };
  expect_no_attributes();
  ASSERT_NO_FATAL_FAILURE(Open());  // no Close: a crash
  check_all();
  expect_no_attributes();
  absl::StatusOr<CompactStats> compacted = index_->Compact();
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  EXPECT_GT(compacted->tombstones_removed, 400u);
  check_all();
  ASSERT_NO_FATAL_FAILURE(CloseAndReopen());
  check_all();
  expect_no_attributes();
}

}  // namespace
}  // namespace luxdb::engine
