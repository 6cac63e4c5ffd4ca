// The bad-input suite: what a careless client sends, RPC by RPC, against a real LuxServer in
// this process. Every refusal must carry the status of the README's error table and a message
// naming the bad value; after every case the server still answers a cheap call and every index
// it holds shows exactly what it showed before (description, live ids, stored vectors bit for
// bit). Also: calls racing DeleteIndex, requests that are not protobuf at all, requests with
// unknown fields, oversized batches, and finite but extreme vector components.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numbers>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/unknown_field_set.h"
#include "luxdb/v1/luxdb.grpc.pb.h"
#include "tests/raw_grpc.h"
#include "tests/test_support.h"

namespace luxdb {
namespace {

using ::luxdb::testing::AddItems;
using ::luxdb::testing::Backup;
using ::luxdb::testing::Bits;
using ::luxdb::testing::CodeName;
using ::luxdb::testing::CompactIndex;
using ::luxdb::testing::Content;
using ::luxdb::testing::ContentOf;
using ::luxdb::testing::CreateIndex;
using ::luxdb::testing::DeleteIndex;
using ::luxdb::testing::DeleteItems;
using ::luxdb::testing::DescribeIndex;
using ::luxdb::testing::GetElements;
using ::luxdb::testing::GetIds;
using ::luxdb::testing::GetIdsPage;
using ::luxdb::testing::IdsPage;
using ::luxdb::testing::IndexExists;
using ::luxdb::testing::InfoOf;
using ::luxdb::testing::InitIndex;
using ::luxdb::testing::IsError;
using ::luxdb::testing::IsOk;
using ::luxdb::testing::ListIndexes;
using ::luxdb::testing::QueryIndex;
using ::luxdb::testing::QueryResult;
using ::luxdb::testing::ResizeIndex;
using ::luxdb::testing::SetEf;
using ::luxdb::testing::Stub;
using ::luxdb::testing::TempDir;
using ::luxdb::testing::TestServer;
using ::luxdb::testing::VectorsOf;
using ::luxdb::testing::WithoutMemory;
using Code = grpc::StatusCode;
using google::protobuf::Message;

// The wire contract (luxdb.proto, README "API"), restated so that a change to it fails here.
constexpr uint32_t kMaxK = 10000;
constexpr uint32_t kMaxEf = 100000;
constexpr uint64_t kMaxElements = 4'294'967'294;
constexpr uint32_t kMaxIdsPerPage = 10'000'000;
constexpr uint64_t kMissingId = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

constexpr char kService[] = "/luxdb.v1.LuxDB/";

// The indexes every test starts with; no refused call may change them.
constexpr char kKeep[] = "keep";  // L2, dimension 4, capacity 20: ids 1-3 live, 4 deleted
constexpr uint32_t kKeepDim = 4;
constexpr char kRaw[] = "raw";  // COSINE, dimension 3, created but never initialised

std::vector<float> RandomVectors(size_t n, uint32_t dim, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> vectors(n * dim);
  for (float& x : vectors) x = uniform(generator);
  return vectors;
}

std::vector<uint64_t> IdRange(uint64_t first, size_t n) {
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = first + i;
  return ids;
}

template <typename T>
void Append(google::protobuf::RepeatedField<T>* field, std::initializer_list<T> values) {
  field->Add(values.begin(), values.end());
}

// A name shown in a failure message: escaped, and cut if long.
std::string Shown(const std::string& name) {
  const std::string escaped = absl::CHexEscape(name.substr(0, 40));
  return name.size() > 40 ? absl::StrCat("'", escaped, "...' (", name.size(), " bytes)")
                          : absl::StrCat("'", escaped, "'");
}

// ---------------------------------------------------------------------------------------------
// Requests as bytes, for the generic stub: every RPC that takes an index name, with otherwise
// valid values (for an index shaped like kKeep).

struct NamedRpc {
  std::string method;  // "CreateIndex"
  std::function<std::unique_ptr<Message>(const std::string& name)> request;
};

template <typename Request>
NamedRpc Rpc(std::string method, std::function<void(Request*)> fill = nullptr) {
  return {std::move(method), [fill](const std::string& name) -> std::unique_ptr<Message> {
            auto request = std::make_unique<Request>();
            request->set_name(name);
            if (fill) fill(request.get());
            return request;
          }};
}

std::vector<NamedRpc> RpcsTakingAName() {
  return {
      Rpc<v1::CreateIndexRequest>("CreateIndex",
                                  [](auto* r) {
                                    r->set_space(v1::L2);
                                    r->set_dim(kKeepDim);
                                  }),
      Rpc<v1::InitIndexRequest>("InitIndex", [](auto* r) { r->set_max_elements(10); }),
      Rpc<v1::DeleteIndexRequest>("DeleteIndex"),
      Rpc<v1::IndexExistsRequest>("IndexExists"),
      Rpc<v1::DescribeIndexRequest>("DescribeIndex"),
      Rpc<v1::SetEfRequest>("SetEf", [](auto* r) { r->set_ef(20); }),
      Rpc<v1::AddItemsRequest>("AddItems",
                               [](auto* r) {
                                 Append<float>(r->mutable_vectors(), {1, 2, 3, 4});
                                 r->add_ids(100);
                               }),
      Rpc<v1::DeleteItemsRequest>("DeleteItems", [](auto* r) { r->add_ids(1); }),
      Rpc<v1::QueryIndexRequest>("QueryIndex",
                                 [](auto* r) {
                                   Append<float>(r->mutable_vectors(), {1, 2, 3, 4});
                                   r->set_k(1);
                                 }),
      Rpc<v1::ResizeIndexRequest>("ResizeIndex", [](auto* r) { r->set_new_max_elements(30); }),
      Rpc<v1::GetIdsRequest>("GetIds"),
      Rpc<v1::GetIdsRequest>("GetIds",
                             [](auto* r) {
                               r->set_start_after(0);
                               r->set_limit(1);
                             }),
      Rpc<v1::GetElementsRequest>("GetElements", [](auto* r) { r->add_ids(1); }),
      Rpc<v1::CompactIndexRequest>("CompactIndex"),
      Rpc<v1::SetAttributesRequest>("SetAttributes",
                                    [](auto* r) {
                                      r->add_ids(1);
                                      v1::Attribute* a = r->add_attributes()->add_attributes();
                                      a->set_key("color");
                                      a->add_values()->set_s("red");
                                    }),
  };
}

// Field 1 (every request's `name`) holding `bytes` as they are, valid UTF-8 or not: protobuf
// would refuse to serialise a proto3 string that is not, but a client can still send it.
std::string NameField(const std::string& bytes) {
  google::protobuf::UnknownFieldSet fields;
  fields.AddLengthDelimited(1, bytes);
  std::string encoded;
  fields.SerializeToString(&encoded);
  return encoded;
}

// Fields no version of luxdb.proto defines, of every wire type.
std::string UnknownFields() {
  google::protobuf::UnknownFieldSet fields;
  fields.AddVarint(1000, 123456789);
  fields.AddLengthDelimited(1001, "surprise");
  fields.AddFixed32(1002, 7);
  fields.AddFixed64(1003, 8);
  fields.AddGroup(1004)->AddVarint(1, 9);
  std::string encoded;
  fields.SerializeToString(&encoded);
  return encoded;
}

// ---------------------------------------------------------------------------------------------
// Attributes and filters (luxdb.proto "Attributes", "Filters").

v1::Value S(const std::string& s) {
  v1::Value v;
  v.set_s(s);
  return v;
}
v1::Value I(int64_t i) {
  v1::Value v;
  v.set_i(i);
  return v;
}
v1::Value D(double d) {
  v1::Value v;
  v.set_d(d);
  return v;
}
v1::Value B(bool b) {
  v1::Value v;
  v.set_b(b);
  return v;
}

v1::Attribute Attr(const std::string& key, std::initializer_list<v1::Value> values) {
  v1::Attribute a;
  a.set_key(key);
  for (const v1::Value& v : values) *a.add_values() = v;
  return a;
}

v1::Attributes Attrs(std::initializer_list<v1::Attribute> attributes) {
  v1::Attributes out;
  for (const v1::Attribute& a : attributes) *out.add_attributes() = a;
  return out;
}

grpc::Status AddItemsWithAttributes(Stub& stub, const std::string& name,
                                    const std::vector<float>& vectors,
                                    const std::vector<uint64_t>& ids,
                                    const std::vector<v1::Attributes>& attributes) {
  v1::AddItemsRequest request;
  request.set_name(name);
  request.mutable_vectors()->Add(vectors.begin(), vectors.end());
  request.mutable_ids()->Add(ids.begin(), ids.end());
  for (const v1::Attributes& a : attributes) *request.add_attributes() = a;
  v1::AddItemsResponse response;
  return testing::Call(stub, &Stub::AddItems, request, &response);
}

grpc::Status SetAttributes(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                           const std::vector<v1::Attributes>& attributes,
                           uint64_t* updated = nullptr) {
  v1::SetAttributesRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  for (const v1::Attributes& a : attributes) *request.add_attributes() = a;
  v1::SetAttributesResponse response;
  grpc::Status status = testing::Call(stub, &Stub::SetAttributes, request, &response);
  if (updated != nullptr) *updated = response.updated();
  return status;
}

grpc::Status QueryFiltered(Stub& stub, const std::string& name, const std::vector<float>& queries,
                           uint32_t k, const v1::Filter& filter, QueryResult* result) {
  v1::QueryIndexRequest request;
  request.set_name(name);
  request.mutable_vectors()->Add(queries.begin(), queries.end());
  request.set_k(k);
  *request.mutable_filter() = filter;
  v1::QueryIndexResponse response;
  grpc::Status status = testing::Call(stub, &Stub::QueryIndex, request, &response);
  result->ids.assign(response.ids().begin(), response.ids().end());
  result->distances.assign(response.distances().begin(), response.distances().end());
  result->k = response.k();
  return status;
}

// GetElements with_attributes: each id's attributes as GetElements answers them, or the
// status when it refuses.
grpc::Status GetAttributes(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                           std::vector<v1::Attributes>* attributes) {
  v1::GetElementsRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  request.set_with_attributes(true);
  v1::GetElementsResponse response;
  grpc::Status status = testing::Call(stub, &Stub::GetElements, request, &response);
  attributes->assign(response.attributes().begin(), response.attributes().end());
  return status;
}

// Every live item's attributes, in id order, as comparable text (exact: doubles by their
// bits); empty for an index that is not initialised.
std::vector<std::string> AttributesOf(Stub& stub, const std::string& name,
                                      const std::vector<uint64_t>& ids) {
  std::vector<v1::Attributes> attributes;
  if (ids.empty()) return {};
  EXPECT_TRUE(IsOk(GetAttributes(stub, name, ids, &attributes))) << name;
  std::vector<std::string> out;
  for (const v1::Attributes& a : attributes) out.push_back(a.SerializeAsString());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fixture: one fresh server per test, holding kKeep and kRaw.

class BadInputTest : public ::testing::Test {
 protected:
  virtual server::Options ServerOptions() { return TestServer::DefaultOptions(); }

  void SetUp() override {
    server_ = std::make_unique<TestServer>(dir_.path(), ServerOptions());
    ASSERT_FALSE(HasFatalFailure());
    Stub& s = stub();
    ASSERT_TRUE(IsOk(CreateIndex(s, kKeep, v1::L2, kKeepDim)));
    ASSERT_TRUE(IsOk(InitIndex(s, kKeep, 20)));
    ASSERT_TRUE(
        IsOk(AddItems(s, kKeep, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, {1, 2, 3, 4})));
    ASSERT_TRUE(IsOk(DeleteItems(s, kKeep, {4})));
    ASSERT_TRUE(IsOk(CreateIndex(s, kRaw, v1::COSINE, 3)));
    Remember();
  }

  void TearDown() override { RecordProperty("cases", cases_); }

  Stub& stub() { return server_->stub(); }

  // Records what the server holds now; ExpectHarmless compares with it.
  void Remember() {
    std::vector<v1::IndexInfo> list;
    ASSERT_TRUE(IsOk(ListIndexes(stub(), &list)));
    names_.clear();
    contents_.clear();
    attributes_.clear();
    for (const v1::IndexInfo& info : list) {
      names_.push_back(info.name());
      contents_[info.name()] = ContentOf(stub(), info.name());
      attributes_[info.name()] = AttributesOf(stub(), info.name(), contents_[info.name()].ids);
    }
  }

  // After a case: the server answers a cheap call and holds the same indexes, each as
  // Remember() saw it (items, vectors and attributes).
  void ExpectHarmless(const std::string& what) {
    ++cases_;
    SCOPED_TRACE(what);
    std::vector<v1::IndexInfo> list;
    ASSERT_TRUE(IsOk(ListIndexes(stub(), &list))) << "the server no longer answers";
    std::vector<std::string> names;
    for (const v1::IndexInfo& info : list) names.push_back(info.name());
    ASSERT_EQ(names, names_) << "indexes created or deleted";
    for (const std::string& name : names_) {
      const Content content = ContentOf(stub(), name);
      EXPECT_TRUE(testing::Unchanged(contents_[name], content)) << name;
      if (content.ids == contents_[name].ids) {
        EXPECT_EQ(AttributesOf(stub(), name, content.ids), attributes_[name])
            << name << ": attributes changed";
      }
    }
  }

  // One refused case: its status and message, then ExpectHarmless.
  void ExpectRefusedNaming(const std::string& what, const grpc::Status& status, Code code,
                           const std::vector<std::string>& fragments) {
    EXPECT_TRUE(IsError(status, code, {})) << what;
    for (const std::string& fragment : fragments) {
      EXPECT_NE(status.error_message().find(fragment), std::string::npos)
          << what << ": \"" << status.error_message() << "\" lacks \"" << fragment << "\"";
    }
    ExpectHarmless(what);
  }
  void ExpectRefused(const std::string& what, const grpc::Status& status, Code code,
                     std::initializer_list<std::string> fragments) {
    EXPECT_TRUE(IsError(status, code, fragments)) << what;
    ExpectHarmless(what);
  }

  // A unary call of `method` ("CreateIndex") with an encoded request, through the generic
  // stub (with the client's token, like every call here).
  grpc::Status Send(const std::string& method, const std::string& request,
                    std::string* response = nullptr) {
    std::string ignored;
    return testing::RawUnaryCall(server_->channel(), kService + method, request,
                                 response != nullptr ? response : &ignored);
  }

  TempDir dir_;
  std::unique_ptr<TestServer> server_;
  std::vector<std::string> names_;
  std::map<std::string, Content> contents_;
  std::map<std::string, std::vector<std::string>> attributes_;  // per live id, serialised
  int cases_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Index names.

TEST_F(BadInputTest, EveryRpcTakingANameRefusesABadOneNamingIt) {
  struct BadName {
    std::string name;
    std::vector<std::string> fragments;
  };
  const std::vector<BadName> bad_names = {
      {"", {"index name is empty"}},
      {std::string(256, 'n'), {"256 bytes", "255"}},
      {std::string(100'000, 'n'), {"100000 bytes", "255"}},
      {"a\tb", {"'a\\tb'", "byte 1"}},
      {"line\nbreak", {"'line\\nbreak'", "byte 4"}},
      {"\x01", {"'\\x01'", "byte 0"}},
      {std::string("nul\0z", 5), {"'nul\\x00z'", "byte 3"}},
      {"del\x7f", {"'del\\x7f'", "byte 3"}},
      {"\x1b[31mred", {"byte 0"}},  // a terminal escape sequence
      {"../etc", {"'../etc'", "byte 2"}},
      {"zero\xe2\x80\x8bwidth", {"byte 4"}},  // U+200B ZERO WIDTH SPACE is no letter
      {"keep ", {"'keep '", "byte 4"}},
  };
  for (const NamedRpc& rpc : RpcsTakingAName()) {
    for (const BadName& bad : bad_names) {
      const std::string what = absl::StrCat(rpc.method, " with name ", Shown(bad.name));
      const grpc::Status status = Send(rpc.method, rpc.request(bad.name)->SerializeAsString());
      EXPECT_TRUE(IsError(status, Code::INVALID_ARGUMENT, {}))
          << what << ": " << CodeName(status.error_code()) << " " << status.error_message();
      for (const std::string& fragment : bad.fragments) {
        EXPECT_NE(status.error_message().find(fragment), std::string::npos)
            << what << ": message \"" << absl::CHexEscape(status.error_message().substr(0, 200))
            << "\" lacks \"" << fragment << "\"";
      }
      ExpectHarmless(what);
    }
  }
}

// A name that is not UTF-8 never reaches LuxDB: protobuf refuses to parse a proto3 string
// holding it, and gRPC answers INTERNAL (README, error table). What matters here is that
// nothing is created or changed and the server stays up (ExpectRefused checks both).
TEST_F(BadInputTest, InvalidUtf8NamesAreRefusedByTheParserAndChangeNothing) {
  const std::vector<std::string> bad_names = {
      "ab\xff",         // a byte that never occurs in UTF-8
      "ab\xc3",         // a sequence cut short
      "\xed\xa0\x80x",  // a UTF-16 surrogate
      "\xc0\xafx",      // an overlong '/'
  };
  for (const NamedRpc& rpc : RpcsTakingAName()) {
    for (const std::string& name : bad_names) {
      const std::string what = absl::StrCat(rpc.method, " with name ", Shown(name));
      ExpectRefused(what, Send(rpc.method, NameField(name) + rpc.request("")->SerializeAsString()),
                    Code::INTERNAL, {});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CreateIndex and InitIndex parameters.

TEST_F(BadInputTest, CreateIndexRefusesBadSpaceAndDimensionNamingThem) {
  Stub& s = stub();
  const Code code = Code::INVALID_ARGUMENT;
  ExpectRefused("space 99", CreateIndex(s, "docs", static_cast<v1::Space>(99), 4), code,
                {"'docs'", "unknown space 99"});
  ExpectRefused("space -1", CreateIndex(s, "docs", static_cast<v1::Space>(-1), 4), code,
                {"'docs'", "unknown space -1"});
  ExpectRefused("space unspecified", CreateIndex(s, "docs", v1::SPACE_UNSPECIFIED, 4), code,
                {"'docs'", "unspecified"});
  ExpectRefused("dim 0", CreateIndex(s, "docs", v1::L2, 0), code, {"'docs'", "got 0"});
  ExpectRefused("dim 65537", CreateIndex(s, "docs", v1::L2, 65537), code,
                {"'docs'", "65536", "got 65537"});
  ExpectRefused("dim 10^9", CreateIndex(s, "docs", v1::L2, 1'000'000'000), code,
                {"'docs'", "got 1000000000"});
  ExpectRefused("dim 2^32-1", CreateIndex(s, "docs", v1::COSINE, kU32Max), code,
                {"'docs'", "got 4294967295"});
  // A taken name, even with another shape.
  ExpectRefused("taken name", CreateIndex(s, kKeep, v1::IP, 8), Code::ALREADY_EXISTS, {"'keep'"});
}

TEST_F(BadInputTest, InitIndexRefusesBadParametersNamingThem) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(CreateIndex(s, "fresh", v1::L2, 4)));
  ASSERT_NO_FATAL_FAILURE(Remember());
  const Code code = Code::INVALID_ARGUMENT;
  ExpectRefused("max_elements 0", InitIndex(s, "fresh", 0), code,
                {"'fresh'", "max_elements", "got 0"});
  // The README's limits: max_elements <= 4,294,967,294. 10^12 is outside that range, so it is
  // a bad argument (not a memory shortage) whatever the machine.
  ExpectRefused("max_elements 10^12", InitIndex(s, "fresh", 1'000'000'000'000), code,
                {"'fresh'", "4294967294", "got 1000000000000"});
  ExpectRefused("max_elements 2^64-1", InitIndex(s, "fresh", kU64Max), code,
                {"'fresh'", "got 18446744073709551615"});
  // Inside the range but far beyond any memory: about 1 TiB for 4-d vectors.
  ExpectRefused("max_elements at the limit", InitIndex(s, "fresh", kMaxElements),
                Code::RESOURCE_EXHAUSTED, {"'fresh'", "4294967294", "MiB"});
  ExpectRefused("m 1", InitIndex(s, "fresh", 10, 0, 1), code, {"m for index 'fresh'", "got 1"});
  ExpectRefused("m 2049", InitIndex(s, "fresh", 10, 0, 2049), code,
                {"m for index 'fresh'", "2048", "got 2049"});
  ExpectRefused("m 2^32-1", InitIndex(s, "fresh", 10, 0, kU32Max), code,
                {"m for index 'fresh'", "got 4294967295"});
  ExpectRefused("ef_construction 100001", InitIndex(s, "fresh", 10, 100'001, 0), code,
                {"'fresh'", "ef_construction", "got 100001"});
  ExpectRefused("ef_construction 2^32-1", InitIndex(s, "fresh", 10, kU32Max, 0), code,
                {"'fresh'", "ef_construction", "got 4294967295"});
  EXPECT_FALSE(InfoOf(s, "fresh").initialized());

  // Zeros select the defaults (m 16, ef_construction 200): accepted.
  ASSERT_TRUE(IsOk(InitIndex(s, "fresh", 10, 0, 0)));
  EXPECT_EQ(WithoutMemory(InfoOf(s, "fresh")),
            R"(name: "fresh" space: L2 dim: 4 m: 16 ef_construction: 200 ef: 10 )"
            R"(max_elements: 10 initialized: true)");
  ASSERT_TRUE(IsOk(AddItems(s, "fresh", {1, 2, 3, 4}, {7})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  // Twice: refused whatever the parameters, and nothing about the index changes.
  ExpectRefused("InitIndex twice, same parameters", InitIndex(s, "fresh", 10),
                Code::FAILED_PRECONDITION, {"'fresh'", "already initialised"});
  ExpectRefused("InitIndex twice, other parameters", InitIndex(s, "fresh", 500, 50, 8),
                Code::FAILED_PRECONDITION, {"'fresh'", "already initialised"});
}

// ---------------------------------------------------------------------------------------------
// AddItems.

TEST_F(BadInputTest, AddItemsRefusesMalformedBatchesWhole) {
  Stub& s = stub();
  const Code code = Code::INVALID_ARGUMENT;
  // Floats not ids x dimension. New ids, so that a partial insert would show.
  ExpectRefused("7 floats for 2 ids", AddItems(s, kKeep, {1, 2, 3, 4, 5, 6, 7}, {10, 11}), code,
                {"'keep'", "dimension 4", "2 ids need 8 floats, got 7"});
  ExpectRefused("5 floats for 1 id", AddItems(s, kKeep, {1, 2, 3, 4, 5}, {10}), code,
                {"'keep'", "1 ids need 4 floats, got 5"});
  ExpectRefused("3 floats for 1 id", AddItems(s, kKeep, {1, 2, 3}, {10}), code,
                {"'keep'", "got 3"});
  ExpectRefused("floats but no ids", AddItems(s, kKeep, {1, 2, 3, 4}, {}), code,
                {"'keep'", "0 ids need 0 floats, got 4"});
  ExpectRefused("ids but no floats", AddItems(s, kKeep, {}, {10, 11}), code,
                {"'keep'", "2 ids need 8 floats, got 0"});
  // Whole vectors, but not as many as ids.
  ExpectRefused("2 vectors for 3 ids", AddItems(s, kKeep, {1, 2, 3, 4, 5, 6, 7, 8}, {10, 11, 12}),
                code, {"'keep'", "3 ids need 12 floats, got 8"});
  ExpectRefused("2 vectors for 1 id", AddItems(s, kKeep, {1, 2, 3, 4, 5, 6, 7, 8}, {10}), code,
                {"'keep'", "1 ids need 4 floats, got 8"});
  // Non-finite components, named by vector and component; the valid vectors of the batch are
  // not added either.
  ExpectRefused("NaN", AddItems(s, kKeep, {1, 2, 3, 4, 5, 6, kNan, 8}, {10, 11}), code,
                {"'keep'", "vector 1", "nan", "component 2"});
  ExpectRefused("-NaN", AddItems(s, kKeep, {-kNan, 2, 3, 4}, {10}), code,
                {"'keep'", "vector 0", "nan", "component 0"});
  ExpectRefused("+Inf", AddItems(s, kKeep, {1, 2, 3, 4, 5, 6, 7, kInf}, {10, 11}), code,
                {"'keep'", "vector 1", "inf", "component 3"});
  ExpectRefused("-Inf", AddItems(s, kKeep, {1, -kInf, 3, 4}, {1}), code,
                {"'keep'", "vector 0", "-inf", "component 1"});
  // The same id twice in one batch, new or existing.
  ExpectRefused("duplicate new id",
                AddItems(s, kKeep, {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}, {10, 11, 10}), code,
                {"'keep'", "id 10 appears twice", "vectors 0 and 2"});
  ExpectRefused("duplicate existing id", AddItems(s, kKeep, {5, 5, 5, 5, 6, 6, 6, 6}, {2, 2}), code,
                {"'keep'", "id 2 appears twice"});
  // 2^64-1 pads query results, so it cannot name an item.
  ExpectRefused("id 2^64-1", AddItems(s, kKeep, {1, 2, 3, 4}, {kU64Max}), code,
                {"'keep'", "18446744073709551615", "reserved"});
  ExpectRefused("uninitialised index", AddItems(s, kRaw, {1, 2, 3}, {1}), Code::FAILED_PRECONDITION,
                {"'raw'", "not initialised"});
}

// ---------------------------------------------------------------------------------------------
// QueryIndex.

TEST_F(BadInputTest, QueryIndexRefusesBadArgumentsNamingThem) {
  Stub& s = stub();
  const std::vector<float> query = {1, 0, 0, 0};
  const Code code = Code::INVALID_ARGUMENT;
  QueryResult result;
  ExpectRefused("k 0", QueryIndex(s, kKeep, query, 0, 0, &result), code, {"k", "got 0"});
  ExpectRefused("k 10001", QueryIndex(s, kKeep, query, kMaxK + 1, 0, &result), code,
                {"k", "10000", "got 10001"});
  ExpectRefused("k 2^32-1", QueryIndex(s, kKeep, query, kU32Max, 0, &result), code,
                {"k", "10000", "got 4294967295"});
  ExpectRefused("ef 100001", QueryIndex(s, kKeep, query, 1, kMaxEf + 1, &result), code,
                {"ef", "100000", "got 100001"});
  ExpectRefused("ef 2^32-1", QueryIndex(s, kKeep, query, 1, kU32Max, &result), code,
                {"ef", "100000", "got 4294967295"});
  ExpectRefused("5 floats", QueryIndex(s, kKeep, {1, 2, 3, 4, 5}, 1, 0, &result), code,
                {"'keep'", "5 floats", "dimension 4"});
  ExpectRefused("3 floats", QueryIndex(s, kKeep, {1, 2, 3}, 1, 0, &result), code,
                {"'keep'", "3 floats", "dimension 4"});
  ExpectRefused("NaN", QueryIndex(s, kKeep, {1, 2, 3, 4, 1, 2, kNan, 4}, 1, 0, &result), code,
                {"'keep'", "query vector 1", "nan", "component 2"});
  ExpectRefused("+Inf", QueryIndex(s, kKeep, {kInf, 0, 0, 0}, 1, 0, &result), code,
                {"'keep'", "query vector 0", "inf", "component 0"});
  ExpectRefused("-Inf", QueryIndex(s, kKeep, {0, 0, 0, -kInf}, 1, 0, &result), code,
                {"'keep'", "-inf", "component 3"});
  EXPECT_TRUE(result.ids.empty());
  ExpectRefused("uninitialised index", QueryIndex(s, kRaw, {1, 2, 3}, 1, 0, &result),
                Code::FAILED_PRECONDITION, {"'raw'", "not initialised"});
}

TEST_F(BadInputTest, QueryIndexAcceptsTheExtremesOfItsRange) {
  Stub& s = stub();
  QueryResult result;
  // ef 0 means the index's ef.
  ASSERT_TRUE(IsOk(QueryIndex(s, kKeep, {1, 0, 0, 0}, 3, 0, &result)));
  ASSERT_EQ(result.ids.size(), 3u);
  EXPECT_EQ(result.ids[0], 1u);
  EXPECT_EQ(result.distances[0], 0.0f);
  EXPECT_EQ((std::set<uint64_t>{result.ids[1], result.ids[2]}), (std::set<uint64_t>{2, 3}));
  ExpectHarmless("ef 0");
  ASSERT_TRUE(IsOk(QueryIndex(s, kKeep, {0, 1, 0, 0}, 1, kMaxEf, &result)));
  EXPECT_EQ(result.ids, (std::vector<uint64_t>{2}));
  ExpectHarmless("ef 100000");
  // k = 10000 with 3 live items: 9997 padded slots per row.
  ASSERT_TRUE(IsOk(QueryIndex(s, kKeep, {0, 0, 1, 0, 0, 0, 0, 1}, kMaxK, 0, &result)));
  ASSERT_EQ(result.k, kMaxK);
  ASSERT_EQ(result.ids.size(), 2 * kMaxK);
  EXPECT_EQ(result.ids[0], 3u);
  EXPECT_EQ(result.ids[kMaxK + 3], kMissingId);
  EXPECT_EQ(result.distances[kMaxK + 3], kInf);
  EXPECT_EQ(static_cast<size_t>(std::count(result.ids.begin(), result.ids.end(), kMissingId)),
            size_t{2} * (kMaxK - 3));
  ExpectHarmless("k 10000");
  // No query vectors at all: no rows.
  ASSERT_TRUE(IsOk(QueryIndex(s, kKeep, {}, 5, 0, &result)));
  EXPECT_TRUE(result.ids.empty());
  EXPECT_EQ(result.k, 5u);
  ExpectHarmless("no query vectors");
}

TEST_F(BadInputTest, QueriesOnAnIndexWithoutLiveItemsArePadded) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(CreateIndex(s, "empty", v1::IP, 2)));
  ASSERT_TRUE(IsOk(InitIndex(s, "empty", 10)));
  ASSERT_TRUE(IsOk(CreateIndex(s, "emptied", v1::COSINE, 2)));
  ASSERT_TRUE(IsOk(InitIndex(s, "emptied", 10)));
  ASSERT_TRUE(IsOk(AddItems(s, "emptied", {1, 0, 0, 1}, {5, 6})));
  ASSERT_TRUE(IsOk(DeleteItems(s, "emptied", {5, 6})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  for (const std::string name : {"empty", "emptied"}) {
    QueryResult result;
    ASSERT_TRUE(IsOk(QueryIndex(s, name, {1, 0, 0, 1}, 3, 0, &result))) << name;
    EXPECT_EQ(result.k, 3u);
    EXPECT_EQ(result.ids, std::vector<uint64_t>(6, kMissingId)) << name;
    EXPECT_EQ(result.distances, std::vector<float>(6, kInf)) << name;
    ExpectHarmless(absl::StrCat("query on ", name));
  }
}

// The README: "Messages name the index and the offending value".
TEST_F(BadInputTest, QueryRefusalsNameTheIndex) {
  QueryResult result;
  const std::vector<float> query = {1, 0, 0, 0};
  ExpectRefused("k 0", QueryIndex(stub(), kKeep, query, 0, 0, &result), Code::INVALID_ARGUMENT,
                {"'keep'", "got 0"});
  ExpectRefused("k 2^32-1", QueryIndex(stub(), kKeep, query, kU32Max, 0, &result),
                Code::INVALID_ARGUMENT, {"'keep'", "got 4294967295"});
  ExpectRefused("ef 2^32-1", QueryIndex(stub(), kKeep, query, 1, kU32Max, &result),
                Code::INVALID_ARGUMENT, {"'keep'", "got 4294967295"});
}

// ---------------------------------------------------------------------------------------------
// Attributes: AddItems.attributes, SetAttributes, GetElements.with_attributes.

// A server with small attribute limits, so that each is crossed by a few bytes.
class SmallAttributeLimitsTest : public BadInputTest {
 protected:
  server::Options ServerOptions() override {
    server::Options options = TestServer::DefaultOptions();
    options.max_attribute_keys = 4;
    options.max_attribute_key_bytes = 8;
    options.max_attribute_string_bytes = 16;
    options.max_attribute_values = 3;
    return options;
  }
};

struct BadAttributes {
  std::string what;
  v1::Attributes attributes;
  std::vector<std::string> fragments;  // besides the item and the index
};

std::vector<BadAttributes> AttributesBreakingTheContract() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  return {
      {"5 keys",
       Attrs({Attr("a", {I(1)}), Attr("b", {I(1)}), Attr("c", {I(1)}), Attr("d", {I(1)}),
              Attr("e", {I(1)})}),
       {"5 attributes", "limit is 4", "--max-attribute-keys"}},
      {"a 9-byte key",
       Attrs({Attr("ninebytes", {I(1)})}),
       {"'ninebytes'", "9 bytes", "limit is 8", "--max-attribute-key-bytes"}},
      {"a 17-byte string",
       Attrs({Attr("s", {S(std::string(17, 'x'))})}),
       {"'s'", "17 bytes", "limit is 16", "--max-attribute-string-bytes"}},
      {"a list of 4",
       Attrs({Attr("l", {I(1), I(2), I(3), I(4)})}),
       {"'l'", "4 values", "limit is 3", "--max-attribute-values"}},
      {"a value with no kind",
       Attrs({Attr("k", {I(1), v1::Value()})}),
       {"'k'", "value 1", "no kind"}},
      {"a list of doubles",
       Attrs({Attr("d", {D(1), D(2)})}),
       {"'d'", "2 double values", "only string and int"}},
      {"a list of bools",
       Attrs({Attr("b", {B(true), B(false)})}),
       {"'b'", "2 bool values", "only string and int"}},
      {"mixed kinds", Attrs({Attr("m", {S("a"), I(1)})}), {"'m'", "mixes string and int"}},
      {"a key twice", Attrs({Attr("k", {I(1)}), Attr("k", {I(2)})}), {"'k'", "appears twice"}},
      {"NaN", Attrs({Attr("x", {D(nan)})}), {"'x'", "nan", "finite"}},
      {"+Inf", Attrs({Attr("x", {D(inf)})}), {"'x'", "inf", "finite"}},
      {"-Inf", Attrs({Attr("x", {D(-inf)})}), {"'x'", "-inf", "finite"}},
      {"an empty key", Attrs({Attr("", {I(1)})}), {"empty key"}},
      {"a key with no value", Attrs({Attr("k", {})}), {"'k'", "no value"}},
  };
}

TEST_F(SmallAttributeLimitsTest, AttributesOverALimitOrMalformedAreRefusedWholeNamingThem) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(
      SetAttributes(s, kKeep, {1, 2, 3},
                    {Attrs({Attr("color", {S("red")})}), Attrs({Attr("n", {I(2)})}), Attrs({})})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  const Code code = Code::INVALID_ARGUMENT;
  const v1::Attributes valid = Attrs({Attr("color", {S("blue")})});
  for (const BadAttributes& bad : AttributesBreakingTheContract()) {
    // The bad attributes on the second item: nothing of the batch is stored, not even the
    // first item's (valid) attributes or vector.
    // The bad attributes are the second item's: nothing of the batch is stored, not even the
    // first item's (valid) attributes or vector.
    std::vector<std::string> fragments = bad.fragments;
    fragments.push_back("'keep'");
    fragments.push_back("item 11");
    ExpectRefusedNaming("AddItems with " + bad.what,
                        AddItemsWithAttributes(s, kKeep, {1, 1, 1, 1, 2, 2, 2, 2}, {10, 11},
                                               {valid, bad.attributes}),
                        code, fragments);
    // Replacing existing items: their vectors and attributes stay.
    fragments.back() = "item 2";
    ExpectRefusedNaming(
        "AddItems replacing items, with " + bad.what,
        AddItemsWithAttributes(s, kKeep, {1, 1, 1, 1, 2, 2, 2, 2}, {1, 2}, {valid, bad.attributes}),
        code, fragments);
    ExpectRefusedNaming("SetAttributes with " + bad.what,
                        SetAttributes(s, kKeep, {1, 2}, {valid, bad.attributes}), code, fragments);
  }

  // Exactly at each limit: accepted, and read back with keys ascending.
  const v1::Attributes at_limits =
      Attrs({Attr("zz", {S(std::string(16, 'x'))}), Attr("eightbyt", {I(1)}),
             Attr("list", {I(3), I(-1), I(3)}), Attr("b", {B(false)})});
  uint64_t updated = 0;
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {3}, {at_limits}, &updated)));
  EXPECT_EQ(updated, 1u);
  std::vector<v1::Attributes> read;
  ASSERT_TRUE(IsOk(GetAttributes(s, kKeep, {3}, &read)));
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].ShortDebugString(),
            R"(attributes { key: "b" values { b: false } } )"
            R"(attributes { key: "eightbyt" values { i: 1 } } )"
            R"(attributes { key: "list" values { i: 3 } values { i: -1 } values { i: 3 } } )"
            R"(attributes { key: "zz" values { s: "xxxxxxxxxxxxxxxx" } })");
}

// luxdb.proto: the server's defaults are 32 keys, 128-byte keys, 1024-byte strings and lists
// of 64.
TEST_F(BadInputTest, AttributeLimitsDefaultToTheDocumentedValues) {
  Stub& s = stub();
  auto keys = [](int n) {
    v1::Attributes a;
    for (int i = 0; i < n; ++i) *a.add_attributes() = Attr(absl::StrCat("k", i), {I(i)});
    return a;
  };
  auto list = [](int n) {
    v1::Attribute a = Attr("list", {});
    for (int i = 0; i < n; ++i) *a.add_values() = S("v");
    return Attrs({a});
  };
  const Code code = Code::INVALID_ARGUMENT;
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {1}, {keys(32)})));
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {2}, {Attrs({Attr(std::string(128, 'k'), {I(1)})})})));
  ASSERT_TRUE(
      IsOk(SetAttributes(s, kKeep, {3}, {Attrs({Attr("s", {S(std::string(1024, 'v'))})})})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  ExpectRefused("33 keys", SetAttributes(s, kKeep, {1}, {keys(33)}), code,
                {"item 1", "'keep'", "33 attributes", "limit is 32", "--max-attribute-keys"});
  ExpectRefused("a 129-byte key",
                SetAttributes(s, kKeep, {1}, {Attrs({Attr(std::string(129, 'k'), {I(1)})})}), code,
                {"item 1", "'keep'", "129 bytes", "limit is 128", "--max-attribute-key-bytes"});
  ExpectRefused(
      "a 1025-byte string",
      SetAttributes(s, kKeep, {1}, {Attrs({Attr("s", {S(std::string(1025, 'v'))})})}), code,
      {"item 1", "'keep'", "'s'", "1025 bytes", "limit is 1024", "--max-attribute-string-bytes"});
  ExpectRefused(
      "a list of 65", SetAttributes(s, kKeep, {1}, {list(65)}), code,
      {"item 1", "'keep'", "'list'", "65 values", "limit is 64", "--max-attribute-values"});
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {1}, {list(64)})));
}

TEST_F(BadInputTest, AttributeCountsThatDoNotMatchTheIdsAreRefused) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {1}, {Attrs({Attr("n", {I(1)})})})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  const Code code = Code::INVALID_ARGUMENT;
  const v1::Attributes a = Attrs({Attr("n", {I(7)})});
  // AddItems: none or one per id.
  ExpectRefused("AddItems of 2 ids with 1 attributes",
                AddItemsWithAttributes(s, kKeep, {1, 1, 1, 1, 2, 2, 2, 2}, {10, 11}, {a}), code,
                {"'keep'", "2 ids", "got 1"});
  ExpectRefused("AddItems of 1 id with 2 attributes",
                AddItemsWithAttributes(s, kKeep, {1, 1, 1, 1}, {1}, {a, a}), code,
                {"'keep'", "1 ids", "got 2"});
  ExpectRefused("AddItems of no ids with 1 attributes",
                AddItemsWithAttributes(s, kKeep, {}, {}, {a}), code, {"'keep'", "0 ids", "got 1"});
  // SetAttributes: exactly one per id.
  ExpectRefused("SetAttributes of 2 ids with 1 attributes", SetAttributes(s, kKeep, {1, 2}, {a}),
                code, {"'keep'", "2 ids", "got 1"});
  ExpectRefused("SetAttributes of 1 id with none", SetAttributes(s, kKeep, {1}, {}), code,
                {"'keep'", "1 ids", "got 0"});
  ExpectRefused("SetAttributes of no ids with 1 attributes", SetAttributes(s, kKeep, {}, {a}), code,
                {"'keep'", "0 ids", "got 1"});
  ExpectRefused("SetAttributes of an id twice", SetAttributes(s, kKeep, {2, 1, 2}, {a, a, a}), code,
                {"'keep'", "id 2 appears twice"});
}

TEST_F(BadInputTest, SetAttributesOfItemsThatAreNotThereChangesNothing) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {1, 2}, {Attrs({Attr("n", {I(1)})}), Attrs({})})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  const v1::Attributes a = Attrs({Attr("n", {I(7)})});
  ExpectRefused("unknown id", SetAttributes(s, kKeep, {999}, {a}), Code::NOT_FOUND,
                {"'keep'", "id 999"});
  // All or nothing: the live ids before it keep their attributes.
  ExpectRefused("unknown id after live ones", SetAttributes(s, kKeep, {1, 2, 999}, {a, a, a}),
                Code::NOT_FOUND, {"'keep'", "id 999", "no attributes changed"});
  ExpectRefused("deleted id", SetAttributes(s, kKeep, {1, 4}, {a, a}), Code::NOT_FOUND,
                {"'keep'", "id 4", "deleted"});
  ExpectRefused("id 2^64-1", SetAttributes(s, kKeep, {kMissingId}, {a}), Code::NOT_FOUND,
                {"'keep'", "id 18446744073709551615"});
  ExpectRefused("uninitialised index", SetAttributes(s, kRaw, {1}, {a}), Code::FAILED_PRECONDITION,
                {"'raw'", "not initialised"});
  ExpectRefused("unknown index", SetAttributes(s, "ghost", {1}, {a}), Code::NOT_FOUND, {"'ghost'"});
  // Allowed: no ids at all (nothing updated).
  uint64_t updated = 99;
  ASSERT_TRUE(IsOk(SetAttributes(s, kKeep, {}, {}, &updated)));
  EXPECT_EQ(updated, 0u);
  ExpectHarmless("no ids");

  std::vector<v1::Attributes> read;
  ExpectRefused("GetElements with attributes of an unknown id",
                GetAttributes(s, kKeep, {1, 999}, &read), Code::NOT_FOUND, {"'keep'", "id 999"});
  ExpectRefused("GetElements with attributes of a deleted id", GetAttributes(s, kKeep, {4}, &read),
                Code::NOT_FOUND, {"'keep'", "id 4"});
  EXPECT_TRUE(read.empty());
  // Answered in the order asked, an id twice included; an item without attributes has none.
  ASSERT_TRUE(IsOk(GetAttributes(s, kKeep, {2, 1, 1}, &read)));
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[0].attributes_size(), 0);
  EXPECT_EQ(read[1].ShortDebugString(), R"(attributes { key: "n" values { i: 1 } })");
  EXPECT_EQ(read[2].ShortDebugString(), read[1].ShortDebugString());
}

// ---------------------------------------------------------------------------------------------
// Filters (QueryIndexRequest.filter).

v1::Condition Cond(const std::string& key) {
  v1::Condition c;
  c.set_key(key);
  return c;
}
v1::Condition Exists(const std::string& key, bool exists = true) {
  v1::Condition c = Cond(key);
  c.set_exists(exists);
  return c;
}
v1::Condition Equals(const std::string& key, const v1::Value& value) {
  v1::Condition c = Cond(key);
  *c.mutable_equals() = value;
  return c;
}

TEST_F(BadInputTest, MalformedFiltersAreRefusedNamingTheCondition) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(SetAttributes(
      s, kKeep, {1, 2},
      {Attrs({Attr("color", {S("red")}), Attr("price", {D(1.5)})}), Attrs({Attr("n", {I(2)})})})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct BadFilter {
    std::string what;
    v1::Filter filter;
    std::vector<std::string> fragments;
  };
  std::vector<BadFilter> cases;
  {
    v1::Filter f;
    *f.add_must() = Exists("");
    cases.push_back({"an empty key", f, {"filter.must[0]", "empty key"}});
  }
  {
    v1::Filter f;
    *f.add_should() = Exists("color");
    *f.add_should() = Cond("color");
    cases.push_back({"no test", f, {"filter.should[1] ('color')", "no test"}});
  }
  {
    v1::Filter f;
    v1::Condition c = Cond("price");
    c.mutable_range();
    *f.add_must_not() = c;
    cases.push_back({"a range with no bound", f, {"filter.must_not[0] ('price')", "bound"}});
  }
  for (const char* bound : {"gt", "gte", "lt", "lte"}) {
    v1::Filter f;
    *f.add_must() = Exists("color");
    v1::Condition c = Cond("price");
    v1::Range* r = c.mutable_range();
    r->set_lt(100);
    if (std::string(bound) == "gt") r->set_gt(nan);
    if (std::string(bound) == "gte") r->set_gte(nan);
    if (std::string(bound) == "lt") r->set_lt(nan);
    if (std::string(bound) == "lte") r->set_lte(nan);
    *f.add_must() = c;
    cases.push_back({absl::StrCat("a NaN ", bound), f, {"filter.must[1] ('price')", "NaN"}});
  }
  {
    v1::Filter f;
    *f.add_must() = Equals("color", v1::Value());
    cases.push_back(
        {"equals with an unset Value", f, {"filter.must[0] ('color')", "equals", "no kind"}});
  }
  {
    v1::Filter f;
    v1::Condition c = Cond("color");
    *c.mutable_any_of()->add_values() = S("red");
    *c.mutable_any_of()->add_values() = v1::Value();
    *f.add_should() = c;
    cases.push_back(
        {"any_of with an unset Value", f, {"filter.should[0] ('color')", "any_of[1]", "no kind"}});
  }
  {
    v1::Filter f;
    v1::Condition c = Cond("n");
    for (int i = 0; i < 1025; ++i) *c.mutable_any_of()->add_values() = I(i);
    *f.add_must() = c;
    cases.push_back({"any_of of 1025 values", f, {"filter.must[0] ('n')", "1025", "1024"}});
  }
  {
    v1::Filter f;
    for (int i = 0; i < 100; ++i) *f.add_must() = Exists("color");
    for (int i = 0; i < 100; ++i) *f.add_must_not() = Exists("nope");
    for (int i = 0; i < 57; ++i) *f.add_should() = Exists("n");
    cases.push_back({"257 conditions", f, {"257 conditions", "256"}});
  }
  {
    v1::Filter f;
    for (uint64_t id = 0; id <= 1'000'000; ++id) f.add_ids(id);
    cases.push_back({"1,000,001 ids", f, {"1000001 ids", "1000000"}});
  }
  QueryResult result;
  for (BadFilter& bad : cases) {
    bad.fragments.push_back("'keep'");
    ExpectRefusedNaming(bad.what, QueryFiltered(s, kKeep, {1, 0, 0, 0}, 2, bad.filter, &result),
                        Code::INVALID_ARGUMENT, bad.fragments);
    EXPECT_TRUE(result.ids.empty()) << bad.what;
  }
  // On an uninitialised index the index's state is what is wrong.
  v1::Filter any;
  *any.add_must() = Exists("color");
  ExpectRefused("uninitialised index", QueryFiltered(s, kRaw, {1, 0, 0}, 1, any, &result),
                Code::FAILED_PRECONDITION, {"'raw'", "not initialised"});
}

TEST_F(BadInputTest, FiltersAtTheirLimitsAndOnUnknownKeysAreAnswered) {
  Stub& s = stub();
  ASSERT_TRUE(IsOk(SetAttributes(
      s, kKeep, {1, 2},
      {Attrs({Attr("color", {S("red")}), Attr("n", {I(1)})}), Attrs({Attr("n", {I(2)})})})));
  ASSERT_NO_FATAL_FAILURE(Remember());
  const std::vector<float> query = {1, 0, 0, 0};
  auto ids_of = [&](const v1::Filter& filter, uint32_t k, const std::string& what) {
    QueryResult result;
    EXPECT_TRUE(IsOk(QueryFiltered(s, kKeep, query, k, filter, &result))) << what;
    EXPECT_EQ(result.k, k) << what;
    ExpectHarmless(what);
    return result.ids;
  };
  const std::vector<uint64_t> none(3, kMissingId);
  {
    v1::Filter f;
    *f.add_must() = Equals("nope", I(1));
    EXPECT_EQ(ids_of(f, 3, "equals on an unknown key"), none);
  }
  {
    v1::Filter f;
    *f.add_should() = Exists("nope");
    EXPECT_EQ(ids_of(f, 3, "should exists on an unknown key"), none);
  }
  {
    // Every live item lacks the key; the deleted item 4 is not among them.
    v1::Filter f;
    *f.add_must_not() = Exists("nope");
    std::vector<uint64_t> ids = ids_of(f, 5, "must_not exists on an unknown key");
    ASSERT_EQ(ids.size(), 5u);
    EXPECT_EQ(ids[0], 1u);
    EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.begin() + 3), (std::set<uint64_t>{1, 2, 3}));
    EXPECT_EQ(ids[3], kMissingId);
    EXPECT_EQ(ids[4], kMissingId);
  }
  {
    v1::Filter f;
    for (uint64_t id : {uint64_t{4}, uint64_t{999}, kMissingId}) f.add_ids(id);
    EXPECT_EQ(ids_of(f, 3, "ids of a deleted and unknown items"), none);
  }
  {
    // 1024 values and 256 conditions: the most allowed.
    v1::Filter f;
    v1::Condition c = Cond("n");
    for (int i = 0; i < 1024; ++i) *c.mutable_any_of()->add_values() = I(i + 2);
    *f.add_must() = c;
    for (int i = 0; i < 100; ++i) *f.add_must_not() = Exists("nope");
    for (int i = 0; i < 155; ++i) *f.add_should() = Exists("n");
    EXPECT_EQ(ids_of(f, 3, "1024 values, 256 conditions"),
              (std::vector<uint64_t>{2, kMissingId, kMissingId}));
  }
  {
    // A value of another kind than the key's is no error: it matches nothing.
    v1::Filter f;
    *f.add_must() = Equals("color", I(1));
    *f.add_should() = Equals("n", S("1"));
    *f.add_should() = Equals("n", B(true));
    EXPECT_EQ(ids_of(f, 3, "values of other kinds"), none);
  }
}

// ---------------------------------------------------------------------------------------------
// ResizeIndex and SetEf.

TEST_F(BadInputTest, ResizeIndexRefusesBadCapacitiesNamingThem) {
  Stub& s = stub();
  // kKeep stores 4 items: 3 live and 1 deleted, which no longer counts.
  ExpectRefused("below the live count", ResizeIndex(s, kKeep, 2), Code::FAILED_PRECONDITION,
                {"'keep'", "3 live items", "cannot resize to 2"});
  ExpectRefused("to 0", ResizeIndex(s, kKeep, 0), Code::INVALID_ARGUMENT, {"'keep'", "got 0"});
  ExpectRefused("to 10^12", ResizeIndex(s, kKeep, 1'000'000'000'000), Code::INVALID_ARGUMENT,
                {"'keep'", "4294967294", "got 1000000000000"});
  ExpectRefused("to 2^64-1", ResizeIndex(s, kKeep, kU64Max), Code::INVALID_ARGUMENT,
                {"'keep'", "got 18446744073709551615"});
  ExpectRefused("to the limit", ResizeIndex(s, kKeep, kMaxElements), Code::RESOURCE_EXHAUSTED,
                {"'keep'", "4294967294", "MiB"});
  ExpectRefused("uninitialised index", ResizeIndex(s, kRaw, 10), Code::FAILED_PRECONDITION,
                {"'raw'", "not initialised"});
}

TEST_F(BadInputTest, SetEfRefusesValuesOutOfRangeNamingThem) {
  Stub& s = stub();
  ExpectRefused("ef 0", SetEf(s, kKeep, 0), Code::INVALID_ARGUMENT, {"'keep'", "got 0"});
  ExpectRefused("ef 100001", SetEf(s, kKeep, kMaxEf + 1), Code::INVALID_ARGUMENT,
                {"'keep'", "100000", "got 100001"});
  ExpectRefused("ef 2^32-1", SetEf(s, kKeep, kU32Max), Code::INVALID_ARGUMENT,
                {"'keep'", "got 4294967295"});
  ExpectRefused("uninitialised index", SetEf(s, kRaw, 20), Code::FAILED_PRECONDITION,
                {"'raw'", "not initialised"});
}

// ---------------------------------------------------------------------------------------------
// GetElements and DeleteItems of ids that are not there.

TEST_F(BadInputTest, GetElementsOfUnknownOrDeletedIdsIsNotFoundNamingTheId) {
  Stub& s = stub();
  std::vector<float> vectors;
  ExpectRefused("unknown id", GetElements(s, kKeep, {999}, &vectors), Code::NOT_FOUND,
                {"'keep'", "id 999"});
  ExpectRefused("deleted id", GetElements(s, kKeep, {4}, &vectors), Code::NOT_FOUND,
                {"'keep'", "id 4", "deleted"});
  ExpectRefused("id 2^64-1", GetElements(s, kKeep, {kMissingId}, &vectors), Code::NOT_FOUND,
                {"'keep'", "id 18446744073709551615"});
  // One unknown id among known ones: no partial answer.
  ExpectRefused("unknown id among known", GetElements(s, kKeep, {1, 2, 999, 3}, &vectors),
                Code::NOT_FOUND, {"'keep'", "id 999"});
  EXPECT_TRUE(vectors.empty());
  ExpectRefused("uninitialised index", GetElements(s, kRaw, {1}, &vectors),
                Code::FAILED_PRECONDITION, {"'raw'", "not initialised"});

  // Allowed: no ids, and the same id twice (answered in the order asked).
  uint32_t dim = 0;
  ASSERT_TRUE(IsOk(GetElements(s, kKeep, {}, &vectors, &dim)));
  EXPECT_TRUE(vectors.empty());
  EXPECT_EQ(dim, kKeepDim);
  ExpectHarmless("no ids");
  ASSERT_TRUE(IsOk(GetElements(s, kKeep, {2, 2, 1}, &vectors)));
  EXPECT_EQ(vectors, (std::vector<float>{0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0}));
  ExpectHarmless("an id twice");
}

TEST_F(BadInputTest, DeleteItemsOfUnknownIdsIsNotFoundAndDeletesNothing) {
  Stub& s = stub();
  ExpectRefused("unknown id", DeleteItems(s, kKeep, {999}), Code::NOT_FOUND,
                {"'keep'", "id 999", "nothing deleted"});
  ExpectRefused("unknown id after live ones", DeleteItems(s, kKeep, {1, 2, 999}), Code::NOT_FOUND,
                {"'keep'", "id 999", "nothing deleted"});
  ExpectRefused("id 2^64-1", DeleteItems(s, kKeep, {kMissingId}), Code::NOT_FOUND,
                {"'keep'", "id 18446744073709551615"});
  ExpectRefused("uninitialised index", DeleteItems(s, kRaw, {1}), Code::FAILED_PRECONDITION,
                {"'raw'", "not initialised"});
  // luxdb.proto: ids already deleted are not counted; nothing else happens.
  uint64_t deleted = 99;
  ASSERT_TRUE(IsOk(DeleteItems(s, kKeep, {4}, &deleted)));
  EXPECT_EQ(deleted, 0u);
  ExpectHarmless("an id already deleted");
  ASSERT_TRUE(IsOk(DeleteItems(s, kKeep, {}, &deleted)));
  EXPECT_EQ(deleted, 0u);
  ExpectHarmless("no ids");
}

// ---------------------------------------------------------------------------------------------
// GetIds paging (kKeep: ids 1-3 live, 4 deleted).

TEST_F(BadInputTest, GetIdsTakesTheExtremesOfItsPagingFields) {
  Stub& s = stub();
  const std::vector<uint64_t> live = {1, 2, 3};
  IdsPage page;
  const auto expect_page = [&](const std::string& what, std::optional<uint64_t> start_after,
                               std::optional<uint32_t> limit, const std::vector<uint64_t>& ids,
                               std::optional<uint64_t> next) {
    EXPECT_TRUE(IsOk(GetIdsPage(s, kKeep, start_after, limit, &page))) << what;
    EXPECT_EQ(page.ids, ids) << what;
    EXPECT_EQ(page.next_start_after, next) << what;
    ExpectHarmless(what);
  };
  expect_page("limit 0 alone", std::nullopt, 0, live, std::nullopt);
  expect_page("limit 1", std::nullopt, 1, {1}, 1);
  expect_page("start_after 0, limit 0", 0, 0, live, std::nullopt);
  expect_page("start_after 0 alone", 0, std::nullopt, live, std::nullopt);
  expect_page("start_after the last live id", 3, 1, {}, std::nullopt);
  expect_page("start_after a deleted id", 4, 0, {}, std::nullopt);
  expect_page("start_after 2^64-1", kU64Max, std::nullopt, {}, std::nullopt);
  expect_page("start_after 2^64-1, limit 1", kU64Max, 1, {}, std::nullopt);
  expect_page("limit at its maximum", std::nullopt, kMaxIdsPerPage, live, std::nullopt);
  expect_page("start_after 2^64-1, limit at its maximum", kU64Max, kMaxIdsPerPage, {},
              std::nullopt);

  const Code code = Code::INVALID_ARGUMENT;
  ExpectRefused("limit above its maximum",
                GetIdsPage(s, kKeep, std::nullopt, kMaxIdsPerPage + 1, &page), code,
                {"'keep'", "limit", "10000001", "at most 10000000"});
  ExpectRefused("limit 2^32-1", GetIdsPage(s, kKeep, kU64Max, kU32Max, &page), code,
                {"'keep'", "4294967295", "at most 10000000"});
  EXPECT_TRUE(page.ids.empty());
  ExpectRefused("paged, uninitialised index", GetIdsPage(s, kRaw, 0, 1, &page),
                Code::FAILED_PRECONDITION, {"'raw'", "not initialised"});
  ExpectRefused("paged, unknown index", GetIdsPage(s, "ghost", kU64Max, 0, &page), Code::NOT_FOUND,
                {"'ghost'"});

  // A limit sent as a varint wider than 32 bits is cut to its low 32 bits by the parser, as
  // for every uint32 field: 2^32 + 2 reads as 2.
  v1::GetIdsRequest request;
  request.set_name(kKeep);
  google::protobuf::UnknownFieldSet wide;
  wide.AddVarint(3, (uint64_t{1} << 32) + 2);
  std::string wide_limit;
  wide.SerializeToString(&wide_limit);
  std::string response;
  ASSERT_TRUE(IsOk(Send("GetIds", request.SerializeAsString() + wide_limit, &response)));
  v1::GetIdsResponse answer;
  ASSERT_TRUE(answer.ParseFromString(response));
  EXPECT_EQ(std::vector<uint64_t>(answer.ids().begin(), answer.ids().end()),
            (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(answer.next_start_after(), 2u);
  ExpectHarmless("limit 2^32 + 2 on the wire");
}

// ---------------------------------------------------------------------------------------------
// Unknown and deleted indexes.

TEST_F(BadInputTest, UnknownOrDeletedIndexIsNotFoundNamingIt) {
  Stub& s = stub();
  std::vector<uint64_t> ids;
  v1::IndexInfo info;
  ExpectRefused("GetIds of an unknown index", GetIds(s, "ghost", &ids), Code::NOT_FOUND,
                {"'ghost'"});
  ExpectRefused("DescribeIndex of an unknown index", DescribeIndex(s, "ghost", &info),
                Code::NOT_FOUND, {"'ghost'"});
  ExpectRefused("DeleteIndex of an unknown index", DeleteIndex(s, "ghost"), Code::NOT_FOUND,
                {"'ghost'"});
  ASSERT_TRUE(IsOk(CreateIndex(s, "gone", v1::L2, 2)));
  ASSERT_TRUE(IsOk(InitIndex(s, "gone", 10)));
  ASSERT_TRUE(IsOk(AddItems(s, "gone", {1, 2}, {1})));
  ASSERT_TRUE(IsOk(DeleteIndex(s, "gone")));
  ExpectRefused("GetIds of a deleted index", GetIds(s, "gone", &ids), Code::NOT_FOUND, {"'gone'"});
  ExpectRefused("DescribeIndex of a deleted index", DescribeIndex(s, "gone", &info),
                Code::NOT_FOUND, {"'gone'"});
  ExpectRefused("DeleteIndex twice", DeleteIndex(s, "gone"), Code::NOT_FOUND, {"'gone'"});
  bool exists = true;
  ASSERT_TRUE(IsOk(IndexExists(s, "gone", &exists)));
  EXPECT_FALSE(exists);
}

// ---------------------------------------------------------------------------------------------
// Backup.

TEST_F(BadInputTest, BackupRefusesPathsItMustNotWriteNamingThem) {
  namespace fs = std::filesystem;
  Stub& s = stub();
  TempDir other;
  v1::BackupResponse response;
  const Code code = Code::INVALID_ARGUMENT;
  const std::string data = dir_.path();
  ExpectRefused("empty", Backup(s, "", &response), code, {"empty"});
  for (const std::string relative : {"copy", "./copy", "../copy"}) {
    ExpectRefused(absl::StrCat("relative '", relative, "'"), Backup(s, relative, &response), code,
                  {absl::StrCat("'", relative, "'"), "relative", "--backup-dir"});
  }
  const std::vector<std::string> overlapping = {
      data + "/inside",
      data,
      data + "/",
      data + "/graphs/inside",
      fs::path(data).parent_path().string(),
      "/",
      other.path() + "/x/../../" + fs::path(data).filename().string() + "/inside",
  };
  for (const std::string& path : overlapping) {
    ExpectRefused(absl::StrCat("overlapping '", path, "'"), Backup(s, path, &response), code,
                  {absl::StrCat("'", path, "'"), "overlaps the data directory"});
  }
  // A symbolic link elsewhere that leads into the data directory: backups follow none.
  fs::create_directory_symlink(data, other.path() + "/link");
  ExpectRefused("through a symbolic link", Backup(s, other.path() + "/link/inside", &response),
                code, {"link/inside", "'" + other.path() + "/link', a symbolic link"});
  EXPECT_FALSE(fs::exists(data + "/inside"));
  EXPECT_FALSE(fs::exists(data + "/graphs/inside"));

  fs::create_directory(other.path() + "/taken");
  ExpectRefused("existing directory", Backup(s, other.path() + "/taken", &response),
                Code::ALREADY_EXISTS, {other.path() + "/taken"});
  ExpectRefused("missing parent", Backup(s, other.path() + "/no/such/parent", &response),
                Code::NOT_FOUND, {"no/such/parent"});
  // A NUL byte: every file system call would stop at it and act on another path than the one
  // checked and reported.
  ExpectRefused("NUL byte", Backup(s, other.path() + std::string("/copy\0evil", 10), &response),
                code, {other.path() + "/copy"});
  EXPECT_FALSE(fs::exists(other.path() + "/copy"));
  const std::string long_name(5000, 'x');
  ExpectRefused("5000-byte file name", Backup(s, other.path() + "/" + long_name, &response), code,
                {"xxxxxxxxxxxxxxxxxxxx"});
  // Nothing was written anywhere under `other` but what the test made.
  std::set<std::string> entries;
  for (const fs::directory_entry& entry : fs::directory_iterator(other.path())) {
    entries.insert(entry.path().filename().string());
  }
  EXPECT_EQ(entries, (std::set<std::string>{"link", "taken"}));
}

class BackupDirTest : public BadInputTest {
 protected:
  server::Options ServerOptions() override {
    server::Options options = TestServer::DefaultOptions();
    options.backup_dir = backups_.path();
    return options;
  }
  TempDir backups_;
};

TEST_F(BackupDirTest, PathsOutsideTheBackupDirAreRefusedNamingIt) {
  Stub& s = stub();
  TempDir other;
  v1::BackupResponse response;
  const Code code = Code::INVALID_ARGUMENT;
  ExpectRefused("empty", Backup(s, "", &response), code, {"empty"});
  for (const std::string& path : {std::string("../escape"), std::string("a/../../escape"),
                                  std::string("."), backups_.path(), other.path() + "/copy"}) {
    ExpectRefused(absl::StrCat("'", path, "'"), Backup(s, path, &response), code,
                  {absl::StrCat("'", path, "'"), "--backup-dir"});
  }
  EXPECT_TRUE(std::filesystem::is_empty(other.path()));
  // What it is for still works.
  ASSERT_TRUE(IsOk(Backup(s, "nightly", &response)));
  EXPECT_EQ(response.path(),
            std::filesystem::weakly_canonical(backups_.path()).string() + "/nightly");
  ExpectHarmless("a backup inside --backup-dir");
}

// ---------------------------------------------------------------------------------------------
// Calls racing DeleteIndex.

TEST_F(BadInputTest, CallsRacingDeleteIndexGetOkOrNotFoundNamingTheIndex) {
  constexpr char kDoomed[] = "doomed";
  constexpr uint32_t kDim = 8;
  constexpr int kRounds = 4;
  // Calls each worker makes before the index is deleted, and after DeleteIndex returned.
  constexpr int kCallsBefore = 3;
  constexpr int kCallsAfter = 3;
  Stub& s = stub();
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    ASSERT_TRUE(IsOk(CreateIndex(s, kDoomed, v1::L2, kDim)));
    ASSERT_TRUE(IsOk(InitIndex(s, kDoomed, 100'000)));
    ASSERT_TRUE(IsOk(AddItems(s, kDoomed, RandomVectors(200, kDim, round), IdRange(0, 200))));

    std::mutex mu;
    std::vector<std::string> unexpected;
    std::map<std::string, int> outcomes;
    std::atomic<bool> deleted = false;
    std::atomic<int> ready = 0;
    auto record = [&](const std::string& rpc, const grpc::Status& status, bool after_delete) {
      const bool not_found = status.error_code() == Code::NOT_FOUND &&
                             status.error_message().find("'doomed'") != std::string::npos;
      std::lock_guard lock(mu);
      ++outcomes[absl::StrCat(rpc, " ", CodeName(status.error_code()))];
      if (after_delete ? !not_found : !(status.ok() || not_found)) {
        unexpected.push_back(absl::StrCat(rpc, after_delete ? " (after DeleteIndex returned)" : "",
                                          ": ", CodeName(status.error_code()), " \"",
                                          status.error_message(), "\""));
      }
    };
    using Caller = std::function<grpc::Status(int)>;
    const std::vector<std::pair<std::string, Caller>> callers = {
        {"AddItems",
         [&](int i) {
           // Ids cycle (later calls replace): the index stays small, so each CompactIndex
           // below stays quick.
           return AddItems(s, kDoomed, RandomVectors(10, kDim, 1000 + i),
                           IdRange(1000 + 10 * (i % 100), 10));
         }},
        {"AddItems",
         [&](int i) {
           return AddItems(s, kDoomed, RandomVectors(10, kDim, 5000 + i),
                           IdRange(50'000 + 10 * (i % 100), 10));
         }},
        {"QueryIndex",
         [&](int i) {
           QueryResult result;
           return QueryIndex(s, kDoomed, RandomVectors(4, kDim, 9000 + i), 10, 0, &result);
         }},
        {"GetIds",
         [&](int) {
           std::vector<uint64_t> ids;
           return GetIds(s, kDoomed, &ids);
         }},
        {"GetElements",
         [&](int) {
           std::vector<float> vectors;
           return GetElements(s, kDoomed, {0, 199}, &vectors);
         }},
        {"SetAttributes",
         [&](int i) {
           // Ids the other callers neither replace nor delete.
           return SetAttributes(s, kDoomed, {100 + static_cast<uint64_t>(i % 100)},
                                {Attrs({Attr("n", {I(i)})})});
         }},
        {"CompactIndex",
         [&](int i) {
           // Leaves a tombstone for each compaction to remove.
           grpc::Status tombstone = DeleteItems(s, kDoomed, {static_cast<uint64_t>(i)});
           if (!tombstone.ok()) return tombstone;
           return CompactIndex(s, kDoomed);
         }},
    };
    std::vector<std::thread> workers;
    for (const auto& [rpc, call] : callers) {
      workers.emplace_back([&, rpc = rpc, call = call] {
        int after = 0;
        for (int i = 0; after < kCallsAfter; ++i) {
          const bool after_delete = deleted.load();
          record(rpc, call(i), after_delete);
          after += after_delete;
          if (i + 1 == kCallsBefore) ++ready;
        }
      });
    }
    // Delete while every worker is mid-stream, from two threads at once: one wins.
    while (ready.load() < static_cast<int>(callers.size())) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    grpc::Status first, second;
    std::thread deleter([&] { first = DeleteIndex(s, kDoomed); });
    second = DeleteIndex(s, kDoomed);
    deleter.join();
    deleted = true;
    for (std::thread& worker : workers) worker.join();

    EXPECT_TRUE(unexpected.empty()) << absl::StrJoin(unexpected, "\n");
    EXPECT_NE(first.ok(), second.ok())
        << CodeName(first.error_code()) << " / " << CodeName(second.error_code());
    EXPECT_TRUE(first.ok() ? IsError(second, Code::NOT_FOUND, {"'doomed'"})
                           : IsError(first, Code::NOT_FOUND, {"'doomed'"}));
    bool exists = true;
    ASSERT_TRUE(IsOk(IndexExists(s, kDoomed, &exists)));
    EXPECT_FALSE(exists);
    ExpectHarmless(absl::StrCat("round ", round, ": ",
                                absl::StrJoin(outcomes, ", ", absl::PairFormatter("="))));
    // The name is free again, and nothing of the old index (no late insert) comes back.
    ASSERT_TRUE(IsOk(CreateIndex(s, kDoomed, v1::IP, 3)));
    ASSERT_TRUE(IsOk(InitIndex(s, kDoomed, 10)));
    EXPECT_EQ(WithoutMemory(InfoOf(s, kDoomed)),
              R"(name: "doomed" space: IP dim: 3 m: 16 ef_construction: 200 ef: 10 )"
              R"(max_elements: 10 initialized: true)");
    std::vector<uint64_t> ids;
    ASSERT_TRUE(IsOk(GetIds(s, kDoomed, &ids)));
    EXPECT_TRUE(ids.empty());
    ASSERT_TRUE(IsOk(DeleteIndex(s, kDoomed)));
  }
}

// ---------------------------------------------------------------------------------------------
// Requests that are not what the method expects, through the generic stub.

std::vector<const google::protobuf::MethodDescriptor*> LuxDBMethods() {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("luxdb.v1.LuxDB");
  std::vector<const google::protobuf::MethodDescriptor*> methods;
  if (service == nullptr) return methods;
  for (int i = 0; i < service->method_count(); ++i) methods.push_back(service->method(i));
  return methods;
}

TEST_F(BadInputTest, GarbageRequestsAreRefusedByTheParserForEveryMethod) {
  std::string truncated;  // a valid AddItemsRequest cut inside its packed vectors
  {
    v1::AddItemsRequest request;
    request.set_name(kKeep);
    Append<float>(request.mutable_vectors(), {1, 2, 3, 4, 5, 6, 7, 8});
    Append<uint64_t>(request.mutable_ids(), {10, 11});
    truncated = request.SerializeAsString();
    truncated.resize(truncated.size() - 9);
  }
  std::string random_bytes(256, '\0');
  std::mt19937 generator(8);
  for (char& c : random_bytes) c = static_cast<char>(generator());
  const std::vector<std::pair<std::string, std::string>> garbage = {
      {"wire type 7", "\x0f"},
      {"length beyond the end",
       "\x0a\x64"
       "abc"},
      {"11-byte varint", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"},
      {"end of a group never started", "\x0c"},
      {"group never ended", "\x0b\x08\x01"},
      {"HTTP/1.1", "GET / HTTP/1.1\r\nHost: luxdb\r\n\r\n"},
      {"JSON", R"({"name": "keep", "k": 1})"},
      {"truncated AddItemsRequest", truncated},
      {"random bytes", random_bytes},
  };
  const auto methods = LuxDBMethods();
  ASSERT_EQ(methods.size(), 17u);
  for (const google::protobuf::MethodDescriptor* method : methods) {
    const Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(method->input_type());
    ASSERT_NE(prototype, nullptr) << method->full_name();
    for (const auto& [kind, bytes] : garbage) {
      const std::string what = absl::StrCat(method->name(), " with ", kind);
      // Precondition: this really is not an encoding of the method's request.
      ASSERT_FALSE(std::unique_ptr<Message>(prototype->New())->ParseFromString(bytes)) << what;
      const grpc::Status status = Send(method->name(), bytes);
      EXPECT_TRUE(status.error_code() == Code::INVALID_ARGUMENT ||
                  status.error_code() == Code::INTERNAL)
          << what << ": " << CodeName(status.error_code()) << " \"" << status.error_message()
          << "\"";
      ExpectHarmless(what);
    }
  }
}

// QueryIndex and QueryStream parse their own requests (raw callback methods, server/service.cc):
// they refuse
// what does not parse with the same code as gRPC's parser, and say what was wrong.
TEST_F(BadInputTest, AnUnparsableQueryIndexRequestIsRefusedNamingTheRequest) {
  ExpectRefused("QueryIndex with a group never ended", Send("QueryIndex", "\x0b\x08\x01"),
                Code::INTERNAL, {"QueryIndex", "3 bytes", "luxdb.v1.QueryIndexRequest"});
  ExpectRefused("QueryIndex with a name that is not UTF-8",
                Send("QueryIndex", std::string("\x0a\x03"
                                               "ab\xff",
                                               5)),
                Code::INTERNAL, {"QueryIndex", "5 bytes", "not UTF-8"});
  // So does QueryStream, message by message (here its only one).
  ExpectRefused("QueryStream with a group never ended", Send("QueryStream", "\x0b\x08\x01"),
                Code::INTERNAL, {"QueryStream", "3 bytes", "luxdb.v1.QueryIndexRequest"});
}

TEST_F(BadInputTest, EmptyRequestsMeanEveryFieldIsDefaultAndAreRefusedAsSuch) {
  for (const google::protobuf::MethodDescriptor* method : LuxDBMethods()) {
    const std::string what = absl::StrCat(method->name(), " with an empty request");
    std::string response;
    const grpc::Status status = Send(method->name(), "", &response);
    if (method->name() == "ListIndexes") {
      EXPECT_TRUE(IsOk(status)) << what;
      ExpectHarmless(what);
    } else if (method->name() == "CreateIndex") {
      ExpectRefused(what, status, Code::INVALID_ARGUMENT, {"unspecified"});
    } else if (method->name() == "Backup") {
      ExpectRefused(what, status, Code::INVALID_ARGUMENT, {"empty"});
    } else {
      ExpectRefused(what, status, Code::INVALID_ARGUMENT, {"index name is empty"});
    }
  }
}

TEST_F(BadInputTest, UnknownFieldsAreIgnoredByEveryMethod) {
  const std::string unknown = UnknownFields();
  for (const NamedRpc& rpc : RpcsTakingAName()) {
    if (rpc.method == "CreateIndex") continue;  // below: it would create "nope"
    const std::string what = absl::StrCat(rpc.method, " with unknown fields");
    std::string response;
    const grpc::Status status =
        Send(rpc.method, rpc.request("nope")->SerializeAsString() + unknown, &response);
    if (rpc.method == "IndexExists") {
      EXPECT_TRUE(IsOk(status)) << what;
      v1::IndexExistsResponse exists;
      ASSERT_TRUE(exists.ParseFromString(response)) << what;
      EXPECT_FALSE(exists.exists()) << what;
      ExpectHarmless(what);
    } else {
      ExpectRefused(what, status, Code::NOT_FOUND, {"'nope'"});
    }
  }
  std::string response;
  ASSERT_TRUE(IsOk(Send("ListIndexes", unknown, &response)));
  v1::ListIndexesResponse list;
  ASSERT_TRUE(list.ParseFromString(response));
  EXPECT_EQ(list.indexes_size(), 2);
  ExpectHarmless("ListIndexes with unknown fields");
  ExpectRefused("Backup with unknown fields", Send("Backup", unknown), Code::INVALID_ARGUMENT,
                {"empty"});
  // Calls that succeed do so as if the fields were absent.
  const auto named = RpcsTakingAName();
  const NamedRpc& create = named[0];
  ASSERT_EQ(create.method, "CreateIndex");
  ASSERT_TRUE(IsOk(Send("CreateIndex", create.request("extra")->SerializeAsString() + unknown)));
  EXPECT_EQ(InfoOf(stub(), "extra").ShortDebugString(), R"(name: "extra" space: L2 dim: 4)");
  v1::QueryIndexRequest query;
  query.set_name(kKeep);
  Append<float>(query.mutable_vectors(), {0, 0, 1, 0});
  query.set_k(1);
  ASSERT_TRUE(IsOk(Send("QueryIndex", unknown + query.SerializeAsString() + unknown, &response)));
  v1::QueryIndexResponse answer;
  ASSERT_TRUE(answer.ParseFromString(response));
  EXPECT_EQ(answer.ids_size(), 1);
  EXPECT_EQ(answer.ids(0), 3u);
  v1::DeleteIndexRequest drop;
  drop.set_name("extra");
  ASSERT_TRUE(IsOk(Send("DeleteIndex", drop.SerializeAsString() + unknown)));
  ExpectHarmless("CreateIndex, QueryIndex and DeleteIndex with unknown fields");
}

// ---------------------------------------------------------------------------------------------
// Batches above the message cap.

class SmallMessageCapTest : public BadInputTest {
 protected:
  server::Options ServerOptions() override {
    server::Options options = TestServer::DefaultOptions();
    options.max_message_mb = 1;
    return options;
  }
};

TEST_F(SmallMessageCapTest, BatchesAboveTheCapAreRefusedNamingIt) {
  Stub& s = stub();
  const Code code = Code::RESOURCE_EXHAUSTED;
  // 70,000 4-d vectors: about 1.3 MiB, above the 1 MiB cap but within the 2 MiB gRPC accepts.
  ExpectRefused("AddItems of 1.3 MiB",
                AddItems(s, kKeep, RandomVectors(70'000, kKeepDim, 1), IdRange(1000, 70'000)), code,
                {"1 MiB", "--max-message-mb", "vectors of dimension 4"});
  QueryResult result;
  ExpectRefused("QueryIndex of 1.1 MiB",
                QueryIndex(s, kKeep, RandomVectors(70'000, kKeepDim, 2), 1, 0, &result), code,
                {"1 MiB", "--max-message-mb", "query vectors"});
  // 200,000 ids of 6 bytes each.
  const std::vector<uint64_t> many_ids = IdRange(uint64_t{1} << 40, 200'000);
  ExpectRefused("DeleteItems of 1.2 MiB", DeleteItems(s, kKeep, many_ids), code,
                {"1 MiB", "--max-message-mb", "ids"});
  std::vector<float> vectors;
  ExpectRefused("GetElements of 1.2 MiB", GetElements(s, kKeep, many_ids, &vectors), code,
                {"1 MiB", "--max-message-mb", "ids"});
  // Beyond twice the cap gRPC itself refuses the request, with its own message.
  const grpc::Status huge =
      AddItems(s, kKeep, RandomVectors(200'000, kKeepDim, 3), IdRange(1000, 200'000));
  EXPECT_EQ(huge.error_code(), code) << huge.error_message();
  ExpectHarmless("AddItems of 3.7 MiB");
}

// ---------------------------------------------------------------------------------------------
// Finite but extreme components.

TEST_F(BadInputTest, ExtremeFiniteComponentsAreStoredExactly) {
  Stub& s = stub();
  const float denorm = std::numeric_limits<float>::denorm_min();
  const std::vector<float> vectors = {FLT_MAX, -FLT_MAX, denorm, -denorm,
                                      -0.0f,   FLT_MIN,  1e-30f, 1e30f};
  const std::vector<std::string> names = {"extreme-l2", "extreme-ip"};
  ASSERT_TRUE(IsOk(CreateIndex(s, names[0], v1::L2, 2)));
  ASSERT_TRUE(IsOk(CreateIndex(s, names[1], v1::IP, 2)));
  for (const std::string& name : names) {
    ASSERT_TRUE(IsOk(InitIndex(s, name, 10)));
    ASSERT_TRUE(IsOk(AddItems(s, name, vectors, {1, 2, 3, 4})));
  }
  ASSERT_NO_FATAL_FAILURE(Remember());
  for (const std::string& name : names) {
    EXPECT_EQ(Bits(VectorsOf(s, name, {1, 2, 3, 4})), Bits(vectors)) << name;
    // Distances may overflow to infinity (or worse, for IP); the server must still answer.
    for (const std::vector<float>& query :
         {std::vector<float>{FLT_MAX, FLT_MAX}, std::vector<float>{-FLT_MAX, FLT_MAX},
          std::vector<float>{denorm, 0}}) {
      QueryResult result;
      EXPECT_TRUE(IsOk(QueryIndex(s, name, query, 4, 0, &result))) << name;
      EXPECT_EQ(result.ids.size(), 4u) << name;
      ExpectHarmless(absl::StrCat(name, ": query ", query[0], ", ", query[1]));
    }
  }
}

// luxdb.proto: COSINE vectors are normalised to unit length on insert and on query, and
// GetElements returns the normalised vectors. A vector whose squared components overflow (or
// underflow) a float is still a finite, non-zero vector with a well-defined direction.
TEST_F(BadInputTest, CosineNormalisesVectorsWhoseSquaresLeaveTheFloatRange) {
  Stub& s = stub();
  const std::vector<std::pair<std::string, std::vector<float>>> cases = {
      {"3e19, 4e19, 0", {3e19f, 4e19f, 0}},  // the squares overflow to +inf
      {"FLT_MAX, FLT_MAX, 0", {FLT_MAX, FLT_MAX, 0}},
      {"3e-25, 4e-25, 0", {3e-25f, 4e-25f, 0}},  // the squares underflow to 0
  };
  ASSERT_TRUE(IsOk(CreateIndex(s, "directions", v1::COSINE, 3)));
  ASSERT_TRUE(IsOk(InitIndex(s, "directions", 10)));
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(IsOk(AddItems(s, "directions", cases[i].second, {i + 1}))) << cases[i].first;
  }
  ASSERT_NO_FATAL_FAILURE(Remember());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [what, vector] = cases[i];
    const std::vector<float> stored = VectorsOf(s, "directions", {i + 1});
    ASSERT_EQ(stored.size(), 3u) << what;
    const double norm = std::sqrt(double{stored[0]} * stored[0] + double{stored[1]} * stored[1] +
                                  double{stored[2]} * stored[2]);
    EXPECT_NEAR(norm, 1.0, 1e-5) << what << ": stored " << stored[0] << ", " << stored[1] << ", "
                                 << stored[2];
    EXPECT_NEAR(stored[0], vector[0] == FLT_MAX ? std::numbers::sqrt2 / 2 : 0.6, 1e-5) << what;
    // The vector is its own nearest neighbour, at distance 0.
    QueryResult result;
    ASSERT_TRUE(IsOk(QueryIndex(s, "directions", vector, 1, 0, &result))) << what;
    ASSERT_EQ(result.distances.size(), 1u) << what;
    EXPECT_NEAR(result.distances[0], 0.0, 1e-5) << what;
    ExpectHarmless(what);
  }
}

}  // namespace
}  // namespace luxdb
