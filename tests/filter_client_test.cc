// Tests of attributes and filters in the C++ client (luxdb::Client against a real LuxServer in
// this process: AddItems with attributes, SetAttributes, GetElementsWithAttributes, the Filter
// builder through QueryIndex, split queries and QueryStream) and in the `luxdb` tool's library
// (the strict JSON reader, attributes and filters from JSON, the attributes file).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cli/attributes_file.h"
#include "cli/attributes_json.h"
#include "cli/command_line.h"
#include "cli/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "luxdb/client.h"
#include "tests/test_support.h"

namespace luxdb {
namespace {

using ::luxdb::testing::Iota;
using ::luxdb::testing::Rows;
using ::luxdb::testing::TempDir;
using ::luxdb::testing::TestServer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The attributes item i gets in these tests:
//   tenant  int64 i % 5                          (every item)
//   price   double i % 10 + 0.5                  (even ids)
//   tags    ["t<i % 3>", "all"]                  (unless i % 4 == 3)
//   hidden  true                                 (i % 7 == 0)
//   n       [i, i + 1000]                        (every item)
Attributes ItemAttributes(uint64_t i) {
  Attributes a;
  a.push_back({"tenant", {static_cast<int64_t>(i % 5)}});
  if (i % 2 == 0) a.push_back({"price", {static_cast<double>(i % 10) + 0.5}});
  if (i % 4 != 3) a.push_back({"tags", {absl::StrCat("t", i % 3), "all"}});
  if (i % 7 == 0) a.push_back({"hidden", {true}});
  a.push_back({"n", {static_cast<int64_t>(i), static_cast<int64_t>(i + 1000)}});
  return a;
}

// The same, keys ascending (as GetElementsWithAttributes returns them).
Attributes SortedAttributes(uint64_t i) {
  Attributes a = ItemAttributes(i);
  std::sort(a.begin(), a.end(),
            [](const Attribute& x, const Attribute& y) { return x.key < y.key; });
  return a;
}

class FilterClientTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kDim = 8;
  static constexpr size_t kItems = 200;

  void SetUp() override {
    server_ = std::make_unique<TestServer>(dir_.path());
    absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(server_->ConnectOptions());
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
  }

  // Index `name` of kItems items 0..kItems-1 with ItemAttributes.
  void MakeItems(const std::string& name, size_t items = kItems) {
    ASSERT_TRUE(db_->CreateIndex(name, Space::kL2, kDim).ok());
    ASSERT_TRUE(db_->InitIndex(name, {.max_elements = items}).ok());
    std::vector<Attributes> attributes;
    for (uint64_t i = 0; i < items; ++i) attributes.push_back(ItemAttributes(i));
    absl::StatusOr<uint64_t> added =
        db_->AddItems(name, Rows(items, kDim), Iota(items), attributes);
    ASSERT_TRUE(added.ok()) << added.status();
    ASSERT_EQ(*added, items);
  }

  // The ids one query (item 0's vector) returns through `filter` with k = every item.
  std::set<uint64_t> Matching(const Filter& filter) {
    const std::vector<float> query = Rows(1, kDim);
    absl::StatusOr<QueryResult> result = db_->QueryIndex("docs", query, kItems, filter, 2 * kItems);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return {};
    std::set<uint64_t> ids;
    for (size_t i = 0; i < result->ids.size(); ++i) {
      if (result->ids[i] == kMissingId) {
        EXPECT_EQ(result->distances[i], kMissingDistance);
        continue;
      }
      EXPECT_TRUE(ids.insert(result->ids[i]).second) << "id " << result->ids[i] << " twice";
    }
    return ids;
  }

  static std::set<uint64_t> Where(const std::function<bool(uint64_t)>& predicate) {
    std::set<uint64_t> ids;
    for (uint64_t i = 0; i < kItems; ++i) {
      if (predicate(i)) ids.insert(i);
    }
    return ids;
  }

  TempDir dir_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> db_;
};

// ---------------------------------------------------------------------------------------------
// Attributes

TEST(AttributeValueTest, LiteralsTakeTheirOwnKind) {
  EXPECT_TRUE(std::holds_alternative<std::string>(AttributeValue("abc")));
  EXPECT_TRUE(std::holds_alternative<int64_t>(AttributeValue(7)));
  EXPECT_TRUE(std::holds_alternative<double>(AttributeValue(9.5)));
  EXPECT_TRUE(std::holds_alternative<bool>(AttributeValue(true)));
  const Attribute tags = {"tags", {"a", "b"}};
  ASSERT_EQ(tags.values.size(), 2u);
  EXPECT_EQ(std::get<std::string>(tags.values[1]), "b");
}

TEST_F(FilterClientTest, AttributesRoundTripThroughGetElementsKeysAscending) {
  MakeItems("docs");
  const std::vector<uint64_t> wanted = {14, 3, 0, 199};
  absl::StatusOr<Elements> elements = db_->GetElementsWithAttributes("docs", wanted);
  ASSERT_TRUE(elements.ok()) << elements.status();
  ASSERT_EQ(elements->vectors.rows(), wanted.size());
  EXPECT_EQ(elements->vectors.dim, kDim);
  const std::vector<float> all = Rows(kItems, kDim);
  ASSERT_EQ(elements->attributes.size(), wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
    EXPECT_EQ(elements->attributes[i], SortedAttributes(wanted[i])) << "id " << wanted[i];
    EXPECT_TRUE(std::equal(elements->vectors.row(i).begin(), elements->vectors.row(i).end(),
                           all.begin() + wanted[i] * kDim))
        << "id " << wanted[i];
  }
  // Item 14: hidden, n, price, tags, tenant; the list keeps its order and kinds.
  EXPECT_EQ(elements->attributes[0][1], (Attribute{"n", {int64_t{14}, int64_t{1014}}}));
  EXPECT_EQ(elements->attributes[0][2], (Attribute{"price", {4.5}}));

  // Adding an item again without attributes removes them; its vector comes back as given.
  const std::vector<float> vector = Rows(1, kDim);
  ASSERT_TRUE(db_->AddItems("docs", vector, std::vector<uint64_t>{3}).ok());
  elements = db_->GetElementsWithAttributes("docs", std::vector<uint64_t>{3});
  ASSERT_TRUE(elements.ok()) << elements.status();
  EXPECT_THAT(elements->attributes, ElementsAre(ElementsAre()));
  EXPECT_THAT(db_->GetElements("docs", std::vector<uint64_t>{3})->data,
              ::testing::ElementsAreArray(vector));
}

TEST_F(FilterClientTest, AddItemsRefusesAttributesTheServerCannotStoreNamingIdAndKey) {
  ASSERT_TRUE(db_->CreateIndex("docs", Space::kL2, kDim).ok());
  ASSERT_TRUE(db_->InitIndex("docs", {.max_elements = 10}).ok());
  const std::vector<float> vectors = Rows(2, kDim);
  // Two items, one Attributes: neither none nor one per id.
  const std::vector<Attributes> one = {{{"tenant", {1}}}};
  absl::Status s = db_->AddItems("docs", vectors, Iota(2), one).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // A list of doubles.
  const std::vector<Attributes> doubles = {{}, {{"price", {1.5, 2.5}}}};
  s = db_->AddItems("docs", vectors, Iota(2, 40), doubles).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("41"), HasSubstr("price")));
  EXPECT_EQ(db_->DescribeIndex("docs")->element_count, 0u);  // all or nothing
}

TEST_F(FilterClientTest, SetAttributesReplacesAndRemovesAllOrNothing) {
  MakeItems("docs", 20);
  const std::vector<uint64_t> ids = {5, 6};
  const std::vector<Attributes> replaced = {{{"tenant", {42}}, {"label", {"five"}}}, {}};
  absl::StatusOr<uint64_t> updated = db_->SetAttributes("docs", ids, replaced);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(*updated, 2u);
  absl::StatusOr<Elements> elements = db_->GetElementsWithAttributes("docs", ids);
  ASSERT_TRUE(elements.ok()) << elements.status();
  EXPECT_EQ(elements->attributes[0], (Attributes{{"label", {"five"}}, {"tenant", {int64_t{42}}}}));
  EXPECT_THAT(elements->attributes[1], ElementsAre());
  // The vectors stay.
  const std::vector<float> all = Rows(20, kDim);
  EXPECT_TRUE(std::equal(elements->vectors.data.begin(), elements->vectors.data.end(),
                         all.begin() + 5 * kDim));

  // An absent id: NOT_FOUND naming it, and item 7 keeps its attributes.
  const std::vector<Attributes> two = {{{"tenant", {1}}}, {{"tenant", {2}}}};
  absl::Status s = db_->SetAttributes("docs", std::vector<uint64_t>{7, 77}, two).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("77"));
  // A deleted id too.
  ASSERT_TRUE(db_->DeleteItems("docs", std::vector<uint64_t>{8}).ok());
  s = db_->SetAttributes("docs", std::vector<uint64_t>{7, 8}, two).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("8"));
  EXPECT_EQ(db_->GetElementsWithAttributes("docs", std::vector<uint64_t>{7})->attributes[0],
            SortedAttributes(7));
  // A count mismatch; an unknown index.
  s = db_->SetAttributes("docs", std::vector<uint64_t>{7}, two).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = db_->SetAttributes("nowhere", std::vector<uint64_t>{7}, std::span(two).first(1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("nowhere"));

  // The new attributes are what filters see.
  Filter tenant42;
  tenant42.Must(Equals("tenant", 42));
  const std::vector<float> query = Rows(1, kDim);
  absl::StatusOr<QueryResult> result = db_->QueryIndex("docs", query, 3, tenant42);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->ids, ElementsAre(5u, kMissingId, kMissingId));
}

// ---------------------------------------------------------------------------------------------
// Filters

TEST_F(FilterClientTest, EveryConditionKindSelectsTheItemsItDescribes) {
  MakeItems("docs");
  const auto tenant = [](uint64_t i) { return static_cast<int64_t>(i % 5); };
  const auto has_price = [](uint64_t i) { return i % 2 == 0; };
  const auto price = [](uint64_t i) { return static_cast<double>(i % 10) + 0.5; };
  const auto has_tags = [](uint64_t i) { return i % 4 != 3; };

  EXPECT_EQ(Matching(Filter()), Where([](uint64_t) { return true; }));
  EXPECT_EQ(Matching(Filter().Must(Equals("tenant", 3))),
            Where([&](uint64_t i) { return tenant(i) == 3; }));
  // Int64 and double compare as numbers, both ways.
  EXPECT_EQ(Matching(Filter().Must(Equals("tenant", 3.0))),
            Where([&](uint64_t i) { return tenant(i) == 3; }));
  EXPECT_EQ(Matching(Filter().Must(Equals("price", 4.5))),
            Where([&](uint64_t i) { return has_price(i) && price(i) == 4.5; }));
  // A list matches when one of its elements does.
  EXPECT_EQ(Matching(Filter().Must(Equals("n", 1005))), std::set<uint64_t>{5});
  EXPECT_EQ(Matching(Filter().Must(Equals("tags", "all"))), Where(has_tags));
  EXPECT_EQ(Matching(Filter().Must(Equals("hidden", true))),
            Where([](uint64_t i) { return i % 7 == 0; }));
  // A string equals no number, and a key no item has matches nothing.
  EXPECT_THAT(Matching(Filter().Must(Equals("tags", 1))), ElementsAre());
  EXPECT_THAT(Matching(Filter().Must(Equals("nowhere", 1))), ElementsAre());

  EXPECT_EQ(Matching(Filter().Must(AnyOf("tags", {"t1", "t2"}))),
            Where([&](uint64_t i) { return has_tags(i) && i % 3 != 0; }));
  EXPECT_EQ(Matching(Filter().Must(AnyOf("tenant", {1, 4}))),
            Where([&](uint64_t i) { return tenant(i) == 1 || tenant(i) == 4; }));

  EXPECT_EQ(Matching(Filter().Must(Range("price").Gte(2.5).Lt(5.5))),
            Where([&](uint64_t i) { return has_price(i) && price(i) >= 2.5 && price(i) < 5.5; }));
  EXPECT_EQ(Matching(Filter().Must(Range("tenant").Gt(1).Lte(3))),
            Where([&](uint64_t i) { return tenant(i) > 1 && tenant(i) <= 3; }));
  EXPECT_EQ(Matching(Filter().Must(Range("n").Gte(1190))),
            Where([](uint64_t i) { return i + 1000 >= 1190; }));

  EXPECT_EQ(Matching(Filter().Must(Exists("price"))), Where(has_price));
  EXPECT_EQ(Matching(Filter().Must(Missing("tags"))),
            Where([&](uint64_t i) { return !has_tags(i); }));

  // must, must_not and should together: tagged, not hidden, and tenant 1 or priced below 1.
  EXPECT_EQ(Matching(Filter()
                         .Must(Equals("tags", "all"))
                         .MustNot(Exists("hidden"))
                         .Should(Equals("tenant", 1))
                         .Should(Range("price").Lt(1))),
            Where([&](uint64_t i) {
              return has_tags(i) && i % 7 != 0 &&
                     (tenant(i) == 1 || (has_price(i) && price(i) < 1));
            }));
  // The id allow-list, alone and with conditions; an empty list restricts nothing.
  EXPECT_EQ(Matching(Filter().Ids({1, 2, 3, 50, 500})), (std::set<uint64_t>{1, 2, 3, 50}));
  EXPECT_EQ(Matching(Filter().Ids({1, 2, 3, 50}).Must(Range("tenant").Gte(1))),
            (std::set<uint64_t>{1, 2, 3}));
  EXPECT_EQ(Matching(Filter().Ids({})), Matching(Filter().MustNot(Exists("no-such-key"))));
  // Deleted items pass no filter.
  ASSERT_TRUE(db_->DeleteItems("docs", std::vector<uint64_t>{2}).ok());
  EXPECT_EQ(Matching(Filter().Ids({1, 2, 3})), (std::set<uint64_t>{1, 3}));
}

TEST_F(FilterClientTest, FilteredResultsAreTheNearestMatchingItemsInOrder) {
  MakeItems("docs");
  const std::vector<float> all = Rows(kItems, kDim);
  Filter filter;
  filter.Must(Equals("tenant", 2));
  // Item 7's own vector: it is the nearest tenant-2 item; the rest are tenant 2, ascending.
  absl::StatusOr<QueryResult> result =
      db_->QueryIndex("docs", std::span<const float>(all).subspan(7 * kDim, kDim), 5, filter, 400);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->ids.size(), 5u);
  EXPECT_EQ(result->ids[0], 7u);
  EXPECT_FLOAT_EQ(result->distances[0], 0.0f);
  for (uint64_t id : result->ids) EXPECT_EQ(id % 5, 2u) << id;
  EXPECT_TRUE(std::is_sorted(result->distances.begin(), result->distances.end()));
}

TEST_F(FilterClientTest, MalformedFiltersAreInvalidArgumentNamingTheCondition) {
  MakeItems("docs", 10);
  const std::vector<float> query = Rows(1, kDim);
  // A range without a bound.
  absl::Status s =
      db_->QueryIndex("docs", query, 3, Filter().Must(Exists("tenant")).Must(Range("price")))
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("filter.must[1] ('price')"));
  // A NaN bound; an empty key.
  s = db_->QueryIndex("docs", query, 3, Filter().Should(Range("price").Lt(std::nan("")))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("filter.should[0] ('price')"));
  s = db_->QueryIndex("docs", query, 3, Filter().MustNot(Equals("", 1))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("filter.must_not[0]"));
}

// Above 2 MiB of queries QueryIndex sends parts of about 1 MiB: each carries the filter, so
// the answer is row for row that of calls below the split size.
TEST_F(FilterClientTest, FilteredSplitQueryEqualsOneCallsAnswer) {
  MakeItems("docs");
  Filter filter;
  filter.Must(AnyOf("tenant", {0, 3})).MustNot(Exists("hidden"));
  const std::vector<float> items = Rows(kItems, kDim);
  // 40,000 queries of 8 floats: 1.2 MiB, one call.
  std::vector<float> one_call;
  for (int copy = 0; copy < 200; ++copy)
    one_call.insert(one_call.end(), items.begin(), items.end());
  absl::StatusOr<QueryResult> one = db_->QueryIndex("docs", one_call, 4, filter, 50);
  ASSERT_TRUE(one.ok()) << one.status();
  for (uint64_t id : one->ids) {
    ASSERT_TRUE(id != kMissingId && (id % 5 == 0 || id % 5 == 3) && id % 7 != 0) << id;
  }
  // Four times as many: 4.9 MiB, five parts.
  std::vector<float> split;
  for (int copy = 0; copy < 4; ++copy) split.insert(split.end(), one_call.begin(), one_call.end());
  absl::StatusOr<QueryResult> whole = db_->QueryIndex("docs", split, 4, filter, 50);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->ids.size(), 4 * one->ids.size());
  for (size_t copy = 0; copy < 4; ++copy) {
    const size_t at = copy * one->ids.size();
    EXPECT_TRUE(std::equal(one->ids.begin(), one->ids.end(), whole->ids.begin() + at))
        << "copy " << copy;
    EXPECT_TRUE(
        std::equal(one->distances.begin(), one->distances.end(), whole->distances.begin() + at))
        << "copy " << copy;
  }
  // A malformed filter is refused for the whole batch, naming the condition.
  absl::Status s = db_->QueryIndex("docs", split, 4, Filter().Must(Range("price")), 50).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("filter.must[0] ('price')"));
}

TEST_F(FilterClientTest, EveryQueryStreamMessageCarriesTheFilter) {
  MakeItems("docs");
  Filter filter;
  filter.Must(Range("tenant").Gte(4));
  const std::vector<float> items = Rows(kItems, kDim);
  std::unique_ptr<QueryStream> stream = db_->OpenQueryStream("docs", 3, filter, 50);
  std::thread sender([&] {
    for (size_t i = 0; i < 20; ++i) {
      if (!stream->Send(std::span<const float>(items).subspan(i * kDim, kDim))) return;
    }
    stream->CloseSend();
  });
  size_t answers = 0;
  for (absl::StatusOr<QueryResult> r = stream->Receive(); r.ok(); r = stream->Receive()) {
    const std::span<const float> row = std::span<const float>(items).subspan(answers * kDim, kDim);
    absl::StatusOr<QueryResult> unary = db_->QueryIndex("docs", row, 3, filter, 50);
    ASSERT_TRUE(unary.ok()) << unary.status();
    EXPECT_EQ(r->ids, unary->ids) << "message " << answers;
    for (uint64_t id : r->ids) EXPECT_EQ(id % 5, 4u) << "message " << answers;
    ++answers;
  }
  sender.join();
  EXPECT_TRUE(stream->Finish().ok()) << stream->Finish();
  EXPECT_EQ(answers, 20u);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The luxdb tool's JSON: attributes, filters, the attributes file

namespace cli {
namespace {

using ::testing::HasSubstr;

absl::Status ParseError(absl::string_view text) { return ParseJson(text).status(); }

TEST(JsonTest, ParsesEveryKindAndKeepsNumbersAsWritten) {
  absl::StatusOr<JsonValue> json = ParseJson(
      R"( {"s": "a\"\\\u00e9\ud83d\ude00", "i": -9223372036854775808, "d": 2.50, "e": 1E3,
           "b": false, "n": null, "a": [1, [], {}]} )");
  ASSERT_TRUE(json.ok()) << json.status();
  ASSERT_EQ(json->members.size(), 7u);
  EXPECT_EQ(json->members[0].second.text, "a\"\\\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(json->members[1].second.text, "-9223372036854775808");
  EXPECT_TRUE(json->members[1].second.is_integer());
  EXPECT_EQ(json->members[2].second.text, "2.50");
  EXPECT_FALSE(json->members[2].second.is_integer());
  EXPECT_FALSE(json->members[3].second.is_integer());
  EXPECT_EQ(json->members[4].second.kind, JsonValue::Kind::kBool);
  EXPECT_EQ(json->members[5].second.kind, JsonValue::Kind::kNull);
  EXPECT_EQ(json->members[6].second.elements.size(), 3u);
}

TEST(JsonTest, RefusesWhatIsNotStrictJsonNamingTheColumn) {
  EXPECT_THAT(ParseError(R"({"a": 1,})").message(), HasSubstr("column 9"));
  EXPECT_THAT(ParseError(R"({"a": 1} x)").message(), HasSubstr("end of the JSON text"));
  EXPECT_THAT(ParseError(R"({"a": 1, "a": 2})").message(), HasSubstr("'a' appears twice"));
  EXPECT_THAT(ParseError("[01]").message(), HasSubstr("column 3"));
  EXPECT_THAT(ParseError("[1.]").message(), HasSubstr("digit after '.'"));
  EXPECT_THAT(ParseError("{'a': 1}").message(), HasSubstr("key in quotes"));
  EXPECT_THAT(ParseError("[\"a\tb\"]").message(), HasSubstr("control characters"));
  EXPECT_THAT(ParseError("[nan]").message(), HasSubstr("expected a value"));
  EXPECT_THAT(ParseError(R"(["\ud83d"])").message(), HasSubstr("low surrogate"));
  EXPECT_THAT(ParseError("").message(), HasSubstr("end of the text"));
  EXPECT_THAT(ParseError(std::string(100, '[') + std::string(100, ']')).message(),
              HasSubstr("levels of nesting"));
}

absl::StatusOr<Attributes> AttributesOf(absl::string_view text) {
  absl::StatusOr<JsonValue> json = ParseJson(text);
  if (!json.ok()) return json.status();
  return AttributesFromJson(*json);
}

TEST(AttributesJsonTest, EachJsonValueBecomesItsAttributeKind) {
  absl::StatusOr<Attributes> a = AttributesOf(
      R"({"tenant": 7, "tags": ["a", "b"], "price": 9.5, "new": true, "whole": 3.0,
          "ids": [9007199254740993, -1], "name": "x"})");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, (Attributes{{"tenant", {int64_t{7}}},
                            {"tags", {"a", "b"}},
                            {"price", {9.5}},
                            {"new", {true}},
                            {"whole", {3.0}},
                            {"ids", {int64_t{9007199254740993}, int64_t{-1}}},
                            {"name", {"x"}}}));
  EXPECT_THAT(*AttributesOf("{}"), ElementsAre());
  // And back: one value as itself, lists as arrays, doubles as doubles.
  EXPECT_EQ(AttributesJson(*a),
            R"({"tenant": 7, "tags": ["a", "b"], "price": 9.5, "new": true, "whole": 3.0, )"
            R"("ids": [9007199254740993, -1], "name": "x"})");
  EXPECT_EQ(AttributesJson({{"big", {1e20}}, {"q", {"say \"hi\""}}}),
            R"({"big": 1e+20, "q": "say \"hi\""})");
}

TEST(AttributesJsonTest, OtherValuesAreRefusedNamingTheKey) {
  const auto refused = [](absl::string_view text) {
    absl::StatusOr<Attributes> a = AttributesOf(text);
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << text;
    return std::string(a.status().message());
  };
  EXPECT_THAT(refused("[1]"), HasSubstr("not a JSON object of attributes but an array"));
  EXPECT_THAT(refused(R"({"a": null})"), HasSubstr("key 'a': "));
  EXPECT_THAT(refused(R"({"a": {"b": 1}})"), HasSubstr("key 'a': "));
  EXPECT_THAT(refused(R"({"a": []})"), HasSubstr("key 'a': an empty array"));
  EXPECT_THAT(refused(R"({"a": [1, "x"]})"), HasSubstr("key 'a': an array holds"));
  EXPECT_THAT(refused(R"({"a": [1.5, 2.5]})"), HasSubstr("element 0 is a number with a fraction"));
  EXPECT_THAT(refused(R"({"a": [1, 2.5]})"), HasSubstr("element 1"));
  EXPECT_THAT(refused(R"({"a": [true]})"), HasSubstr("element 0 is a bool"));
  EXPECT_THAT(refused(R"({"a": [[1]]})"), HasSubstr("key 'a'"));
  EXPECT_THAT(refused(R"({"a": 9223372036854775808})"), HasSubstr("out of the int64 range"));
  EXPECT_THAT(refused(R"({"a": 1e400})"), HasSubstr("out of the double range"));
}

TEST(FilterJsonTest, TheDictFormatBuildsTheSameFilterAsTheBuilder) {
  absl::StatusOr<Filter> f = FilterFromJson(
      R"({"must": [{"key": "tenant", "equals": 7}, {"key": "p", "range": {"gte": 1, "lt": 5}}],
          "must_not": [{"key": "hidden", "exists": true}, {"key": "x", "exists": false}],
          "should": [{"key": "tag", "any_of": ["a", 2, 2.5, true]}], "ids": [1, 18446744073709551615]})");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->must().size(), 2u);
  EXPECT_EQ(f->must()[0].key(), "tenant");
  EXPECT_EQ(std::get<AttributeValue>(f->must()[0].test()), AttributeValue(int64_t{7}));
  const auto& bounds = std::get<Condition::Bounds>(f->must()[1].test());
  EXPECT_EQ(bounds.gte, 1.0);
  EXPECT_EQ(bounds.lt, 5.0);
  EXPECT_FALSE(bounds.gt.has_value());
  EXPECT_FALSE(bounds.lte.has_value());
  EXPECT_TRUE(std::get<bool>(f->must_not()[0].test()));
  EXPECT_FALSE(std::get<bool>(f->must_not()[1].test()));
  EXPECT_EQ(std::get<std::vector<AttributeValue>>(f->should()[0].test()),
            (std::vector<AttributeValue>{"a", int64_t{2}, 2.5, true}));
  EXPECT_EQ(f->ids(), (std::vector<uint64_t>{1, 18446744073709551615u}));
  EXPECT_TRUE(FilterFromJson("{}")->empty());
  EXPECT_EQ(FilterFromJson(R"({"ids": []})")->ids(), std::vector<uint64_t>{});
}

TEST(FilterJsonTest, MalformedFiltersAreRefusedNamingTheFieldOrCondition) {
  const auto refused = [](absl::string_view text) {
    absl::StatusOr<Filter> f = FilterFromJson(text);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << text;
    return std::string(f.status().message());
  };
  EXPECT_THAT(refused(R"({"must": [], "musts": []})"), HasSubstr("unknown field 'musts'"));
  EXPECT_THAT(refused("[]"), HasSubstr("a filter is a JSON object"));
  EXPECT_THAT(refused(R"({"must": {}})"), HasSubstr("filter.must: an array"));
  EXPECT_THAT(refused(R"({"should": [{"key": "a", "equal": 1}]})"),
              HasSubstr("filter.should[0]: unknown field 'equal'"));
  EXPECT_THAT(refused(R"({"must": [{"equals": 1}]})"),
              HasSubstr("filter.must[0]: a condition needs \"key\""));
  EXPECT_THAT(refused(R"({"must": [{"key": "a"}]})"),
              HasSubstr("filter.must[0] ('a'): a condition needs one test"));
  EXPECT_THAT(refused(R"({"must": [{"key": "a", "equals": 1, "exists": true}]})"),
              HasSubstr("one test per condition, got 'equals' and 'exists'"));
  EXPECT_THAT(refused(R"({"must": [{}, {"key": "p", "range": {}}]})"),
              HasSubstr("filter.must[0]: a condition needs"));
  EXPECT_THAT(refused(R"({"must": [{"key": "p", "range": {}}]})"),
              HasSubstr("filter.must[0] ('p'): range needs a bound"));
  EXPECT_THAT(refused(R"({"must": [{"key": "p", "range": {"gte": "1"}}]})"),
              HasSubstr("range bound 'gte' must be a finite number"));
  EXPECT_THAT(refused(R"({"must": [{"key": "p", "range": {"ge": 1}}]})"),
              HasSubstr("filter.must[0] ('p'): range: unknown field 'ge'"));
  EXPECT_THAT(refused(R"({"must_not": [{"key": "p", "exists": 1}]})"),
              HasSubstr("filter.must_not[0] ('p'): exists takes true or false"));
  EXPECT_THAT(refused(R"({"must": [{"key": "p", "equals": null}]})"),
              HasSubstr("filter.must[0] ('p'): equals: a value is"));
  EXPECT_THAT(refused(R"({"must": [{"key": "p", "any_of": [1, [2]]}]})"),
              HasSubstr("filter.must[0] ('p'): any_of[1]"));
  EXPECT_THAT(refused(R"({"ids": [1, -2]})"), HasSubstr("filter.ids[1]"));
  EXPECT_THAT(refused(R"({"ids": [1.5]})"), HasSubstr("filter.ids[0]"));
  EXPECT_THAT(refused(R"({"must": [})"), HasSubstr("malformed JSON"));
}

TEST(FilterJsonTest, QueryFilterIsAUsageError) {
  const std::vector<std::string> base = {"--insecure", "query", "docs", "q.npy", "-k", "3"};
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--filter", R"({"must": [{"key": "tenant", "equals": 7}]})"});
  absl::StatusOr<Invocation> inv = ParseCommandLine(args);
  ASSERT_TRUE(inv.ok()) << inv.status();
  ASSERT_EQ(inv->filter.must().size(), 1u);
  args = base;
  args.insert(args.end(), {"--filter", R"({"must": [{"key": "tenant", "equls": 7}]})"});
  inv = ParseCommandLine(args);
  EXPECT_EQ(inv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(inv.status().message(), HasSubstr("--filter: filter.must[0]: unknown field 'equls'"));
  // --attributes belongs to add, --with-attributes to get.
  inv = ParseCommandLine({"--insecure", "add", "docs", "v.npy", "--attributes", "a.jsonl"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->attributes_file, "a.jsonl");
  inv = ParseCommandLine({"--insecure", "get", "docs", "1,2", "--with-attributes"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_TRUE(inv->with_attributes);
  EXPECT_THAT(ParseCommandLine(
                  {"--insecure", "query", "docs", "q.npy", "-k", "3", "--attributes", "a.jsonl"})
                  .status()
                  .message(),
              HasSubstr("--attributes is not an option of 'query'"));
}

class AttributesFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  TempDir dir_;
};

TEST_F(AttributesFileTest, ReadsOneItemPerLineInBatches) {
  const std::string path =
      Write("a.jsonl", "{\"tenant\": 7}\r\n{}\n{\"tags\": [\"a\", \"b\"]}\n{\"p\": 1.5}");
  absl::StatusOr<std::unique_ptr<AttributesReader>> reader = AttributesReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->lines(), 4u);
  std::vector<Attributes> batch;
  ASSERT_EQ(*(*reader)->ReadBatch(3, 1 << 20, &batch), 3u);
  EXPECT_EQ(batch, (std::vector<Attributes>{{{"tenant", {7}}}, {}, {{"tags", {"a", "b"}}}}));
  ASSERT_EQ(*(*reader)->ReadBatch(3, 1 << 20, &batch), 1u);
  EXPECT_EQ(batch, (std::vector<Attributes>{{{"p", {1.5}}}}));
  EXPECT_EQ(*(*reader)->ReadBatch(3, 1 << 20, &batch), 0u);
  EXPECT_EQ((*reader)->lines_read(), 4u);
}

TEST_F(AttributesFileTest, ABatchEndsOnceItsAttributesPassTheByteBudget) {
  const std::string line = "{\"text\": \"" + std::string(1000, 'x') + "\"}\n";
  std::string text;
  for (int i = 0; i < 10; ++i) text += line;
  absl::StatusOr<std::unique_ptr<AttributesReader>> reader =
      AttributesReader::Open(Write("big.jsonl", text));
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<Attributes> batch;
  EXPECT_EQ(*(*reader)->ReadBatch(100, 2500, &batch), 3u);  // passes 2,500 bytes at the third
  EXPECT_EQ(*(*reader)->ReadBatch(100, 1, &batch), 1u);     // at least one line
  EXPECT_EQ(*(*reader)->ReadBatch(100, 1 << 20, &batch), 6u);
}

TEST_F(AttributesFileTest, ABadLineIsRefusedAtOpenNamingTheFileLineAndKey) {
  const auto refused = [&](const std::string& text) {
    absl::StatusOr<std::unique_ptr<AttributesReader>> reader =
        AttributesReader::Open(Write("bad.jsonl", text));
    EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument) << text;
    return std::string(reader.status().message());
  };
  EXPECT_THAT(refused("{}\n{}\n{\"price\": null}\n"),
              AllOf(HasSubstr("bad.jsonl' line 3: key 'price'")));
  EXPECT_THAT(refused("{}\n[1, 2]\n"), HasSubstr("line 2: not a JSON object"));
  EXPECT_THAT(refused("{}\n\n{}\n"), HasSubstr("line 2: empty; every row needs a line, {} for"));
  EXPECT_THAT(refused("{\"a\": 1,}\n"), HasSubstr("line 1: malformed JSON at column 9"));
  EXPECT_EQ(AttributesReader::Open(dir_.path() + "/missing.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cli
}  // namespace luxdb
