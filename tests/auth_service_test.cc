// End-to-end tests of authentication on a real LuxServer: every luxdb.v1.LuxDB call needs a
// fresh, correctly signed token bound to its method and refused calls change nothing; health
// and reflection stay open; --insecure; the generated secret file; TLS and mutual TLS with
// certificates made by the openssl command at test time.
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "auth/key.h"
#include "auth/token.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "luxdb/connect.h"
#include "luxdb/v1/luxdb.grpc.pb.h"
#include "server/server.h"
#include "tests/raw_grpc.h"
#include "tests/test_support.h"

namespace luxdb {
namespace {

using ::luxdb::testing::CodeName;
using ::luxdb::testing::IsOk;
using ::luxdb::testing::kTestKdfIterations;
using ::luxdb::testing::kTestSecret;
using ::luxdb::testing::TempDir;
using ::luxdb::testing::TestServer;
using ::testing::HasSubstr;
using Stub = v1::LuxDB::Stub;
using Code = grpc::StatusCode;
using Clock = std::chrono::system_clock;

constexpr auto kCallTimeout = std::chrono::seconds(30);
constexpr char kMethodPrefix[] = "/luxdb.v1.LuxDB/";
constexpr uint32_t kDim = 3;

std::string FullMethod(absl::string_view rpc) { return absl::StrCat(kMethodPrefix, rpc); }

::testing::AssertionResult IsUnauthenticated(const grpc::Status& status) {
  if (status.error_code() == Code::UNAUTHENTICATED) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "want UNAUTHENTICATED, got " << CodeName(status.error_code()) << ": "
         << status.error_message();
}

// The key TestServer's default server checks tokens with.
auth::Key TestKey(absl::string_view secret = kTestSecret) {
  absl::StatusOr<auth::Key> key =
      auth::DeriveKey(secret, {.salt = auth::kDefaultSalt, .iterations = kTestKdfIterations});
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *key : auth::Key{};
}

std::string Bearer(const std::string& token) { return absl::StrCat(auth::kBearerPrefix, token); }

// One unary call; `authorization`, if set, is sent as the "authorization" metadata.
template <typename Request, typename Response>
grpc::Status Call(Stub& stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                  const Request& request, Response* response,
                  const std::optional<std::string>& authorization = std::nullopt,
                  std::chrono::seconds timeout = kCallTimeout) {
  grpc::ClientContext context;
  context.set_deadline(Clock::now() + timeout);
  if (authorization.has_value()) context.AddMetadata(auth::kAuthorizationHeader, *authorization);
  return (stub.*method)(&context, request, response);
}

using Authorization = std::optional<std::string>;

grpc::Status CreateIndex(Stub& stub, const std::string& name, Authorization auth = std::nullopt,
                         std::chrono::seconds timeout = kCallTimeout) {
  v1::CreateIndexRequest request;
  request.set_name(name);
  request.set_space(v1::L2);
  request.set_dim(kDim);
  v1::CreateIndexResponse response;
  return Call(stub, &Stub::CreateIndex, request, &response, auth, timeout);
}

grpc::Status InitIndex(Stub& stub, const std::string& name, uint64_t max_elements) {
  v1::InitIndexRequest request;
  request.set_name(name);
  request.set_max_elements(max_elements);
  v1::InitIndexResponse response;
  return Call(stub, &Stub::InitIndex, request, &response);
}

grpc::Status DeleteIndex(Stub& stub, const std::string& name, Authorization auth = std::nullopt) {
  v1::DeleteIndexRequest request;
  request.set_name(name);
  v1::DeleteIndexResponse response;
  return Call(stub, &Stub::DeleteIndex, request, &response, auth);
}

// Adds items with the given ids; item i's vector is (id, id + 1, id + 2).
grpc::Status AddItems(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                      Authorization auth = std::nullopt) {
  v1::AddItemsRequest request;
  request.set_name(name);
  for (uint64_t id : ids) {
    for (uint32_t j = 0; j < kDim; ++j) request.add_vectors(static_cast<float>(id + j));
    request.add_ids(id);
  }
  v1::AddItemsResponse response;
  return Call(stub, &Stub::AddItems, request, &response, auth);
}

grpc::Status DeleteItems(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids) {
  v1::DeleteItemsRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::DeleteItemsResponse response;
  return Call(stub, &Stub::DeleteItems, request, &response);
}

grpc::Status CompactIndex(Stub& stub, const std::string& name, Authorization auth = std::nullopt,
                          v1::CompactIndexResponse* response = nullptr) {
  v1::CompactIndexRequest request;
  request.set_name(name);
  v1::CompactIndexResponse ignored;
  return Call(stub, &Stub::CompactIndex, request, response != nullptr ? response : &ignored, auth);
}

// Sets item `id`'s attributes to {color: `color`}.
grpc::Status SetAttributes(Stub& stub, const std::string& name, uint64_t id,
                           const std::string& color, Authorization auth = std::nullopt,
                           v1::SetAttributesResponse* response = nullptr) {
  v1::SetAttributesRequest request;
  request.set_name(name);
  request.add_ids(id);
  v1::Attribute* attribute = request.add_attributes()->add_attributes();
  attribute->set_key("color");
  attribute->add_values()->set_s(color);
  v1::SetAttributesResponse ignored;
  return Call(stub, &Stub::SetAttributes, request, response != nullptr ? response : &ignored, auth);
}

// Item `id`'s attributes as text (GetElements with_attributes).
std::string ColorOf(Stub& stub, const std::string& name, uint64_t id) {
  v1::GetElementsRequest request;
  request.set_name(name);
  request.add_ids(id);
  request.set_with_attributes(true);
  v1::GetElementsResponse response;
  EXPECT_TRUE(IsOk(Call(stub, &Stub::GetElements, request, &response))) << name;
  if (response.attributes_size() != 1) return "(no answer)";
  const v1::Attributes& attributes = response.attributes(0);
  if (attributes.attributes_size() == 0) return "(none)";
  return attributes.attributes(0).values(0).s();
}

// DescribeIndex's tombstone count.
uint64_t TombstonesOf(Stub& stub, const std::string& name) {
  v1::DescribeIndexRequest request;
  request.set_name(name);
  v1::DescribeIndexResponse response;
  EXPECT_TRUE(IsOk(Call(stub, &Stub::DescribeIndex, request, &response))) << name;
  return response.info().tombstones();
}

bool Exists(Stub& stub, const std::string& name) {
  v1::IndexExistsRequest request;
  request.set_name(name);
  v1::IndexExistsResponse response;
  EXPECT_TRUE(IsOk(Call(stub, &Stub::IndexExists, request, &response))) << name;
  return response.exists();
}

std::vector<std::string> IndexNames(Stub& stub) {
  v1::ListIndexesRequest request;
  v1::ListIndexesResponse response;
  EXPECT_TRUE(IsOk(Call(stub, &Stub::ListIndexes, request, &response)));
  std::vector<std::string> names;
  for (const v1::IndexInfo& info : response.indexes()) names.push_back(info.name());
  return names;
}

std::vector<uint64_t> IdsOf(Stub& stub, const std::string& name) {
  v1::GetIdsRequest request;
  request.set_name(name);
  v1::GetIdsResponse response;
  EXPECT_TRUE(IsOk(Call(stub, &Stub::GetIds, request, &response))) << name;
  return {response.ids().begin(), response.ids().end()};
}

// A stub over a plain channel: no token unless a call adds one.
std::unique_ptr<Stub> RawStub(const std::string& address) {
  return v1::LuxDB::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

// A token signed like MintToken's but stamped `millis` (as the raw 64 bits), for timestamps a
// clock cannot produce.
std::string TokenStamped(const auth::Key& key, uint64_t millis, absl::string_view method) {
  std::string body(1, static_cast<char>(auth::kTokenVersion));
  for (int shift = 56; shift >= 0; shift -= 8) body.push_back(static_cast<char>(millis >> shift));
  body.append(auth::kNonceBytes, '\x5a');
  const std::string message = absl::StrCat(body, method);
  std::array<uint8_t, 32> tag;
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const uint8_t*>(message.data()), message.size(), tag.data(), &length);
  return absl::WebSafeBase64Escape(
      body + std::string(reinterpret_cast<const char*>(tag.data()), tag.size()));
}

// ---------------------------------------------------------------------------------------------
// Ways to get a call wrong. Each gives the "authorization" metadata (or none) for a call of
// `method` (full name).

// Two queries of index "docs" (dimension 3, near id 1) over one QueryStream; `answers` gets
// the nearest id of each answer received.
grpc::Status QueryStream(Stub& stub, const Authorization& auth, std::vector<uint64_t>* answers) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  if (auth.has_value()) context.AddMetadata(auth::kAuthorizationHeader, *auth);
  auto stream = stub.QueryStream(&context);
  v1::QueryIndexRequest request;
  request.set_name("docs");
  for (float v : {1.0f, 2.0f, 3.0f}) request.add_vectors(v);
  request.set_k(1);
  answers->clear();
  if (stream->Write(request)) stream->Write(request);
  stream->WritesDone();
  v1::QueryIndexResponse response;
  while (stream->Read(&response)) {
    answers->push_back(response.ids_size() > 0 ? response.ids(0) : ~uint64_t{0});
  }
  return stream->Finish();
}

struct BadAuthorization {
  std::string what;
  std::function<Authorization(const std::string& method)> make;
};

std::vector<BadAuthorization> BadAuthorizations() {
  const auth::Key key = TestKey();
  const auth::Key other_key = TestKey("not the server's secret");
  return {
      {"no metadata", [](const std::string&) { return std::nullopt; }},
      {"empty metadata", [](const std::string&) { return std::string(); }},
      {"token without 'Bearer '",
       [key](const std::string& method) { return auth::MintToken(key, method); }},
      {"'Bearer' without a token", [](const std::string&) { return std::string("Bearer "); }},
      {"malformed token", [](const std::string&) { return Bearer("not-a-token"); }},
      {"76 characters of garbage", [](const std::string&) { return Bearer(std::string(76, 'x')); }},
      {"truncated token",
       [key](const std::string& method) { return Bearer(auth::MintToken(key, method).substr(1)); }},
      {"token signed with another secret's key",
       [other_key](const std::string& method) {
         return Bearer(auth::MintToken(other_key, method));
       }},
      {"token for QueryIndex",
       [key](const std::string&) {
         return Bearer(auth::MintToken(key, FullMethod("QueryIndex")));
       }},
      {"token for the same method of another service",
       [key](const std::string& method) {
         return Bearer(auth::MintToken(
             key, absl::StrCat("/luxdb.v2.LuxDB/", method.substr(sizeof(kMethodPrefix) - 1))));
       }},
      {"expired token (2 min old)",
       [key](const std::string& method) {
         return Bearer(auth::MintToken(key, method, Clock::now() - std::chrono::minutes(2)));
       }},
      {"token from the future (+1 min)",
       [key](const std::string& method) {
         return Bearer(auth::MintToken(key, method, Clock::now() + std::chrono::minutes(1)));
       }},
  };
}

// Sends every bad authorization through `call` (with a distinct `attempt` number, so each call
// would change something different if it went through), and expects UNAUTHENTICATED and
// `unchanged()` after each. Then the replay: one token, first call OK, second UNAUTHENTICATED.
void ExpectRefusedAndHarmless(
    const std::string& method,
    const std::function<grpc::Status(int attempt, const Authorization&)>& call,
    const std::function<void()>& unchanged) {
  int attempt = 0;
  for (const BadAuthorization& bad : BadAuthorizations()) {
    SCOPED_TRACE(bad.what);
    const Authorization authorization = bad.make(method);
    const grpc::Status status = call(++attempt, authorization);
    EXPECT_TRUE(IsUnauthenticated(status));
    if (authorization.has_value() && authorization->size() > 20) {
      EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr(authorization->substr(7))));
    }
    unchanged();
  }
}

// ---------------------------------------------------------------------------------------------

class AuthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestServer>(dir_.path());
    raw_ = RawStub(server_->address());
  }

  Stub& stub() { return server_->stub(); }

  // An index "docs" holding ids 1 and 2.
  void MakeDocs() {
    ASSERT_TRUE(IsOk(CreateIndex(stub(), "docs")));
    ASSERT_TRUE(IsOk(InitIndex(stub(), "docs", 100)));
    ASSERT_TRUE(IsOk(AddItems(stub(), "docs", {1, 2})));
  }

  TempDir dir_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Stub> raw_;
  const auth::Key key_ = TestKey();
};

TEST_F(AuthServiceTest, EveryRpcWorksWithTheClientsTokens) {
  std::set<std::string> called;
  auto ok = [&](const char* rpc, const grpc::Status& status) {
    called.insert(rpc);
    EXPECT_TRUE(IsOk(status)) << rpc;
  };
  ok("CreateIndex", CreateIndex(stub(), "docs"));
  ok("InitIndex", InitIndex(stub(), "docs", 10));
  {
    v1::SetEfRequest request;
    request.set_name("docs");
    request.set_ef(20);
    v1::SetEfResponse response;
    ok("SetEf", Call(stub(), &Stub::SetEf, request, &response));
  }
  ok("AddItems", AddItems(stub(), "docs", {1, 2, 3}));
  {
    v1::QueryIndexRequest request;
    request.set_name("docs");
    for (float v : {1.0f, 2.0f, 3.0f}) request.add_vectors(v);
    request.set_k(1);
    v1::QueryIndexResponse response;
    ok("QueryIndex", Call(stub(), &Stub::QueryIndex, request, &response));
    ASSERT_EQ(response.ids_size(), 1);
    EXPECT_EQ(response.ids(0), 1u);
  }
  {
    v1::GetIdsRequest request;
    request.set_name("docs");
    v1::GetIdsResponse response;
    ok("GetIds", Call(stub(), &Stub::GetIds, request, &response));
    EXPECT_EQ(response.ids_size(), 3);
  }
  {
    v1::GetElementsRequest request;
    request.set_name("docs");
    request.add_ids(2);
    v1::GetElementsResponse response;
    ok("GetElements", Call(stub(), &Stub::GetElements, request, &response));
    EXPECT_EQ(std::vector<float>(response.vectors().begin(), response.vectors().end()),
              (std::vector<float>{2, 3, 4}));
  }
  {
    v1::SetAttributesResponse response;
    ok("SetAttributes", SetAttributes(stub(), "docs", 2, "blue", std::nullopt, &response));
    EXPECT_EQ(response.updated(), 1u);
    EXPECT_EQ(ColorOf(stub(), "docs", 2), "blue");
  }
  {
    v1::DeleteItemsRequest request;
    request.set_name("docs");
    request.add_ids(3);
    v1::DeleteItemsResponse response;
    ok("DeleteItems", Call(stub(), &Stub::DeleteItems, request, &response));
    EXPECT_EQ(response.deleted(), 1u);
  }
  {
    v1::ResizeIndexRequest request;
    request.set_name("docs");
    request.set_new_max_elements(20);
    v1::ResizeIndexResponse response;
    ok("ResizeIndex", Call(stub(), &Stub::ResizeIndex, request, &response));
  }
  {
    v1::CompactIndexResponse response;
    ok("CompactIndex", CompactIndex(stub(), "docs", std::nullopt, &response));
    EXPECT_EQ(response.tombstones_removed(), 1u);
  }
  {
    v1::DescribeIndexRequest request;
    request.set_name("docs");
    v1::DescribeIndexResponse response;
    ok("DescribeIndex", Call(stub(), &Stub::DescribeIndex, request, &response));
    EXPECT_EQ(response.info().max_elements(), 20u);
    EXPECT_EQ(response.info().ef(), 20u);
    EXPECT_EQ(response.info().element_count(), 2u);
  }
  {
    v1::IndexExistsRequest request;
    request.set_name("docs");
    v1::IndexExistsResponse response;
    ok("IndexExists", Call(stub(), &Stub::IndexExists, request, &response));
    EXPECT_TRUE(response.exists());
  }
  {
    v1::ListIndexesRequest request;
    v1::ListIndexesResponse response;
    ok("ListIndexes", Call(stub(), &Stub::ListIndexes, request, &response));
    EXPECT_EQ(response.indexes_size(), 1);
  }
  {
    std::vector<uint64_t> answers;
    ok("QueryStream", QueryStream(stub(), std::nullopt, &answers));
    EXPECT_EQ(answers, (std::vector<uint64_t>{1, 1}));
  }
  ok("DeleteIndex", DeleteIndex(stub(), "docs"));
  EXPECT_FALSE(Exists(stub(), "docs"));
  EXPECT_EQ(called.size(), 16u);
}

TEST_F(AuthServiceTest, HandMadeTokensWorkOnAPlainChannel) {
  // The raw path the rejection tests use does work with a correct token, "*" included.
  ASSERT_TRUE(
      IsOk(CreateIndex(*raw_, "hand", Bearer(auth::MintToken(key_, FullMethod("CreateIndex"))))));
  ASSERT_TRUE(IsOk(CreateIndex(*raw_, "any", Bearer(auth::MintToken(key_, auth::kAnyMethod)))));
  EXPECT_EQ(IndexNames(stub()), (std::vector<std::string>{"any", "hand"}));
}

// The token is checked once, when the stream opens: a stream without a valid one answers
// nothing.
TEST_F(AuthServiceTest, QueryStreamRefusesBadTokensAndAnswersNothing) {
  MakeDocs();
  std::vector<uint64_t> answers;
  ExpectRefusedAndHarmless(
      FullMethod("QueryStream"),
      [&](int, const Authorization& auth) { return QueryStream(*raw_, auth, &answers); },
      [&] { EXPECT_TRUE(answers.empty()); });

  const std::string token = Bearer(auth::MintToken(key_, FullMethod("QueryStream")));
  ASSERT_TRUE(IsOk(QueryStream(*raw_, token, &answers)));
  EXPECT_EQ(answers, (std::vector<uint64_t>{1, 1}));
  EXPECT_TRUE(IsUnauthenticated(QueryStream(*raw_, token, &answers)));
  EXPECT_TRUE(answers.empty());
}

TEST_F(AuthServiceTest, AddItemsRefusesBadTokensAndAddsNothing) {
  MakeDocs();
  ExpectRefusedAndHarmless(
      FullMethod("AddItems"),
      [&](int attempt, const Authorization& auth) {
        return AddItems(*raw_, "docs", {static_cast<uint64_t>(100 + attempt)}, auth);
      },
      [&] {
        EXPECT_EQ(IdsOf(stub(), "docs"), (std::vector<uint64_t>{1, 2}));
      });

  // Replay: the first use adds 50; the same token again (carrying 51) is refused.
  const std::string token = Bearer(auth::MintToken(key_, FullMethod("AddItems")));
  ASSERT_TRUE(IsOk(AddItems(*raw_, "docs", {50}, token)));
  EXPECT_TRUE(IsUnauthenticated(AddItems(*raw_, "docs", {51}, token)));
  EXPECT_TRUE(IsUnauthenticated(AddItems(*raw_, "docs", {50}, token)));
  EXPECT_EQ(IdsOf(stub(), "docs"), (std::vector<uint64_t>{1, 2, 50}));
}

TEST_F(AuthServiceTest, CreateIndexRefusesBadTokensAndCreatesNothing) {
  MakeDocs();
  ExpectRefusedAndHarmless(
      FullMethod("CreateIndex"),
      [&](int attempt, const Authorization& auth) {
        return CreateIndex(*raw_, absl::StrCat("new", attempt), auth);
      },
      [&] { EXPECT_EQ(IndexNames(stub()), (std::vector<std::string>{"docs"})); });

  const std::string token = Bearer(auth::MintToken(key_, FullMethod("CreateIndex")));
  ASSERT_TRUE(IsOk(CreateIndex(*raw_, "first", token)));
  EXPECT_TRUE(IsUnauthenticated(CreateIndex(*raw_, "second", token)));
  EXPECT_EQ(IndexNames(stub()), (std::vector<std::string>{"docs", "first"}));
}

TEST_F(AuthServiceTest, DeleteIndexRefusesBadTokensAndDeletesNothing) {
  MakeDocs();
  ExpectRefusedAndHarmless(
      FullMethod("DeleteIndex"),
      [&](int, const Authorization& auth) { return DeleteIndex(*raw_, "docs", auth); },
      [&] {
        EXPECT_TRUE(Exists(stub(), "docs"));
        EXPECT_EQ(IdsOf(stub(), "docs"), (std::vector<uint64_t>{1, 2}));
      });

  ASSERT_TRUE(IsOk(CreateIndex(stub(), "one")));
  ASSERT_TRUE(IsOk(CreateIndex(stub(), "two")));
  const std::string token = Bearer(auth::MintToken(key_, FullMethod("DeleteIndex")));
  ASSERT_TRUE(IsOk(DeleteIndex(*raw_, "one", token)));
  EXPECT_TRUE(IsUnauthenticated(DeleteIndex(*raw_, "two", token)));
  EXPECT_EQ(IndexNames(stub()), (std::vector<std::string>{"docs", "two"}));
}

TEST_F(AuthServiceTest, CompactIndexRefusesBadTokensAndCompactsNothing) {
  MakeDocs();
  ASSERT_TRUE(IsOk(DeleteItems(stub(), "docs", {1})));
  ASSERT_EQ(TombstonesOf(stub(), "docs"), 1u);
  ExpectRefusedAndHarmless(
      FullMethod("CompactIndex"),
      [&](int, const Authorization& auth) { return CompactIndex(*raw_, "docs", auth); },
      [&] {
        EXPECT_EQ(TombstonesOf(stub(), "docs"), 1u);
        EXPECT_EQ(IdsOf(stub(), "docs"), (std::vector<uint64_t>{2}));
      });

  const std::string token = Bearer(auth::MintToken(key_, FullMethod("CompactIndex")));
  v1::CompactIndexResponse response;
  ASSERT_TRUE(IsOk(CompactIndex(*raw_, "docs", token, &response)));
  EXPECT_EQ(response.tombstones_removed(), 1u);
  EXPECT_EQ(TombstonesOf(stub(), "docs"), 0u);
  EXPECT_TRUE(IsUnauthenticated(CompactIndex(*raw_, "docs", token)));
}

TEST_F(AuthServiceTest, SetAttributesRefusesBadTokensAndChangesNothing) {
  MakeDocs();
  ExpectRefusedAndHarmless(
      FullMethod("SetAttributes"),
      [&](int attempt, const Authorization& auth) {
        return SetAttributes(*raw_, "docs", 1, absl::StrCat("color", attempt), auth);
      },
      [&] { EXPECT_EQ(ColorOf(stub(), "docs", 1), "(none)"); });

  const std::string token = Bearer(auth::MintToken(key_, FullMethod("SetAttributes")));
  ASSERT_TRUE(IsOk(SetAttributes(*raw_, "docs", 1, "red", token)));
  EXPECT_TRUE(IsUnauthenticated(SetAttributes(*raw_, "docs", 1, "green", token)));
  EXPECT_EQ(ColorOf(stub(), "docs", 1), "red");
}

TEST_F(AuthServiceTest, RefusalsSayWhatWasWrong) {
  MakeDocs();
  const std::string method = FullMethod("AddItems");
  grpc::Status status = AddItems(*raw_, "docs", {9});
  EXPECT_TRUE(IsUnauthenticated(status));
  EXPECT_THAT(status.error_message(), HasSubstr("authorization"));

  status = AddItems(*raw_, "docs", {9},
                    Bearer(auth::MintToken(key_, method, Clock::now() - std::chrono::minutes(2))));
  EXPECT_THAT(status.error_message(), HasSubstr("expired"));

  status = AddItems(*raw_, "docs", {9},
                    Bearer(auth::MintToken(key_, method, Clock::now() + std::chrono::minutes(1))));
  EXPECT_THAT(status.error_message(), HasSubstr("future"));

  const std::string token = Bearer(auth::MintToken(key_, method));
  ASSERT_TRUE(IsOk(AddItems(*raw_, "docs", {9}, token)));
  status = AddItems(*raw_, "docs", {10}, token);
  EXPECT_THAT(status.error_message(), HasSubstr("replayed"));
}

// A signed token whose timestamp has the sign bit set (before 1970 by ~292 million years)
// must be refused as expired; it must certainly not be usable again and again.
TEST_F(AuthServiceTest, TokenStampedBeforeTheEpochIsRefusedAndCannotBeReplayed) {
  MakeDocs();
  const std::string token =
      Bearer(TokenStamped(key_, uint64_t{1} << 63, FullMethod("DeleteIndex")));
  for (int use = 1; use <= 2; ++use) {
    ASSERT_TRUE(IsOk(CreateIndex(stub(), absl::StrCat("victim", use))));
    EXPECT_TRUE(IsUnauthenticated(DeleteIndex(*raw_, absl::StrCat("victim", use), token)))
        << "use " << use;
    EXPECT_TRUE(Exists(stub(), absl::StrCat("victim", use))) << "use " << use;
  }
}

// ---------------------------------------------------------------------------------------------
// Health and reflection need no token.

TEST_F(AuthServiceTest, HealthAndReflectionAnswerWithoutAToken) {
  const std::shared_ptr<grpc::Channel> plain =
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());

  for (const std::string service : {"", "luxdb.v1.LuxDB"}) {
    grpc::Status status;
    EXPECT_EQ(testing::HealthStatus(plain, service, &status), 1)  // SERVING
        << "service '" << service << "': " << status.error_message();
  }

  // ServerReflectionRequest { list_services = 7 } -> { list_services_response = 6 {
  // service = 1 { name = 1 } } }.
  google::protobuf::UnknownFieldSet list_request;
  list_request.AddLengthDelimited(7, "");
  std::string request_bytes;
  list_request.SerializeToString(&request_bytes);
  std::vector<std::string> responses;
  ASSERT_TRUE(IsOk(testing::RawStreamCall(
      plain, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {request_bytes},
      &responses)));
  ASSERT_EQ(responses.size(), 1u);
  const std::string& response_bytes = responses[0];
  std::set<std::string> services;
  for (const std::string& list : testing::LengthDelimitedFields(response_bytes, 6)) {
    for (const std::string& service : testing::LengthDelimitedFields(list, 1)) {
      for (const std::string& name : testing::LengthDelimitedFields(service, 1))
        services.insert(name);
    }
  }
  EXPECT_TRUE(services.contains("luxdb.v1.LuxDB")) << absl::StrJoin(services, ", ");

  // The same plain channel cannot use LuxDB itself.
  EXPECT_TRUE(
      IsUnauthenticated(CreateIndex(*v1::LuxDB::NewStub(plain), "sneaky", /*auth=*/std::nullopt)));
  EXPECT_FALSE(Exists(stub(), "sneaky"));
}

// ---------------------------------------------------------------------------------------------
// --insecure and the generated secret.

TEST(InsecureServerTest, AcceptsCallsWithoutTokens) {
  TempDir dir;
  server::Options options = TestServer::DefaultOptions();
  options.secret.clear();
  options.insecure = true;
  TestServer server(dir.path(), options);
  std::unique_ptr<Stub> raw = RawStub(server.address());
  ASSERT_TRUE(IsOk(CreateIndex(*raw, "open")));
  ASSERT_TRUE(IsOk(InitIndex(*raw, "open", 10)));
  ASSERT_TRUE(IsOk(AddItems(*raw, "open", {1}, Bearer("ignored-garbage"))));
  EXPECT_EQ(IdsOf(*raw, "open"), (std::vector<uint64_t>{1}));
  EXPECT_EQ(IdsOf(server.stub(), "open"), (std::vector<uint64_t>{1}));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/secret"));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

mode_t ModeOf(const std::string& path) {
  struct stat info;
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

std::unique_ptr<Stub> ClientStub(int port, const std::string& secret) {
  client::ConnectOptions connect;
  connect.port = port;
  connect.secret = secret;
  connect.kdf.iterations = kTestKdfIterations;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(connect);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return channel.ok() ? v1::LuxDB::NewStub(*channel) : nullptr;
}

// TestServer cannot be used here: its client needs the secret before the server has made it.
TEST(GeneratedSecretTest, ServerWithoutASecretCreatesAPrivateFileAndKeepsUsingIt) {
  TempDir dir;
  server::Options options = TestServer::DefaultOptions();
  options.secret.clear();
  options.data_dir = dir.path() + "/data";
  options.port = 0;
  const std::string path = options.data_dir + "/secret";

  absl::StatusOr<std::unique_ptr<server::LuxServer>> server = server::LuxServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->WaitUntilLoaded().ok());
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(ModeOf(path), 0600u);
  const std::string content = ReadFile(path);
  const std::string secret(absl::StripAsciiWhitespace(content));
  EXPECT_GE(secret.size(), 32u) << secret;
  ASSERT_NE(secret, kTestSecret);

  std::unique_ptr<Stub> right = ClientStub((*server)->port(), secret);
  std::unique_ptr<Stub> wrong = ClientStub((*server)->port(), kTestSecret);
  ASSERT_TRUE(right != nullptr && wrong != nullptr);
  ASSERT_TRUE(IsOk(CreateIndex(*right, "kept")));
  EXPECT_TRUE(IsUnauthenticated(CreateIndex(*wrong, "intruder")));
  EXPECT_EQ(IndexNames(*right), (std::vector<std::string>{"kept"}));

  // Restarted on the same directory: the same file, the same secret.
  ASSERT_TRUE((*server)->Shutdown(std::chrono::seconds(10)).ok());
  server->reset();
  server = server::LuxServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->WaitUntilLoaded().ok());
  EXPECT_EQ(ReadFile(path), content);
  EXPECT_EQ(ModeOf(path), 0600u);
  right = ClientStub((*server)->port(), secret);
  wrong = ClientStub((*server)->port(), kTestSecret);
  ASSERT_TRUE(right != nullptr && wrong != nullptr);
  EXPECT_EQ(IndexNames(*right), (std::vector<std::string>{"kept"}));
  EXPECT_TRUE(IsUnauthenticated(CreateIndex(*wrong, "intruder")));
  EXPECT_TRUE(IsOk(CreateIndex(*right, "after-restart")));
  ASSERT_TRUE((*server)->Shutdown(std::chrono::seconds(10)).ok());
}

// Starts a server with `options` in a child process (gtest death-test machinery: a crash must
// not take the other tests down). The child exits 0 printing "refused cleanly" if Start
// fails with `code` and a message naming `fragment`, 1 if it does not.
void ExpectCleanRefusal(const server::Options& options, absl::StatusCode code,
                        const std::string& fragment) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        absl::StatusOr<std::unique_ptr<server::LuxServer>> server =
            server::LuxServer::Start(options);
        const bool clean = !server.ok() && server.status().code() == code &&
                           absl::StrContains(server.status().message(), fragment);
        std::fprintf(stderr, "%s: %s\n", clean ? "refused cleanly" : "not as expected",
                     server.ok() ? "started" : server.status().ToString().c_str());
        std::exit(clean ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "refused cleanly");
}

// Start fails before the gRPC server exists in each of these; the failure must come back as a
// status, not as a crash.
TEST(StartRefusalDeathTest, SecretFileOthersCanRead) {
  TempDir dir;
  const std::string path = dir.path() + "/secret";
  { std::ofstream(path) << "shared with everyone\n"; }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  server::Options options = TestServer::DefaultOptions();
  options.secret.clear();
  options.data_dir = dir.path();
  options.port = 0;
  ExpectCleanRefusal(options, absl::StatusCode::kFailedPrecondition, path);
}

TEST(StartRefusalDeathTest, UnreadableTlsCertificate) {
  TempDir dir;
  server::Options options = TestServer::DefaultOptions();
  options.data_dir = dir.path();
  options.port = 0;
  options.tls_cert = dir.path() + "/missing.pem";
  options.tls_key = dir.path() + "/missing.key";
  ExpectCleanRefusal(options, absl::StatusCode::kFailedPrecondition, options.tls_cert);
}

TEST(StartRefusalDeathTest, AddressNotOfThisHost) {
  TempDir dir;
  server::Options options = TestServer::DefaultOptions();
  options.data_dir = dir.path();
  options.host = "192.0.2.1";  // TEST-NET-1, never a local address
  options.port = 0;
  ExpectCleanRefusal(options, absl::StatusCode::kUnavailable, "192.0.2.1");
}

// ---------------------------------------------------------------------------------------------
// TLS, with a throw-away CA, server and client certificates made by the openssl command.

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new TempDir();
    const std::string d = certs_->path();
    std::ofstream(d + "/server.ext")
        << "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
    std::ofstream(d + "/client.ext") << "extendedKeyUsage=clientAuth\n";
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::vector<std::string> commands = {
        // The CA, and an unrelated one.
        absl::StrCat("openssl req -x509 ", ec, " -keyout ca.key -out ca.pem -days 2 ",
                     "-subj '/CN=LuxDB test CA'"),
        absl::StrCat("openssl req -x509 ", ec, " -keyout other-ca.key -out other-ca.pem ",
                     "-days 2 -subj '/CN=Unrelated CA'"),
        // The server, for 127.0.0.1 and localhost.
        absl::StrCat("openssl req -new ", ec,
                     " -keyout server.key -out server.csr -subj '/CN=localhost'"),
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile server.ext",
        // A client of the CA, and one of the unrelated CA.
        absl::StrCat("openssl req -new ", ec,
                     " -keyout client.key -out client.csr -subj '/CN=luxdb client'"),
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out client.pem -days 2 -extfile client.ext",
        "openssl x509 -req -in client.csr -CA other-ca.pem -CAkey other-ca.key "
        "-CAcreateserial -out stranger.pem -days 2 -extfile client.ext",
    };
    for (const std::string& command : commands) {
      const std::string line = absl::StrCat("cd '", d, "' && ", command, " >>openssl.log 2>&1");
      if (std::system(line.c_str()) != 0) {
        FAIL() << "failed: " << command << "\n" << ReadFile(d + "/openssl.log");
      }
    }
  }

  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  static std::string File(const std::string& name) { return certs_->path() + "/" + name; }

  static server::Options TlsOptions(bool require_client_certificate) {
    server::Options options = TestServer::DefaultOptions();
    options.tls_cert = File("server.pem");
    options.tls_key = File("server.key");
    if (require_client_certificate) options.tls_client_ca = File("ca.pem");
    return options;
  }

  // A token-signing client of `server` over TLS, trusting `ca`; with a client certificate if
  // `client_cert` is set (its key is client.key).
  static std::unique_ptr<Stub> TlsStub(const TestServer& server, const std::string& host,
                                       const std::string& ca, const std::string& client_cert = "") {
    client::ConnectOptions connect = server.ConnectOptions();
    connect.host = host;
    connect.tls_ca_file = File(ca);
    if (!client_cert.empty()) {
      connect.tls_cert_file = File(client_cert);
      connect.tls_key_file = File("client.key");
    }
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(connect);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? v1::LuxDB::NewStub(*channel) : nullptr;
  }

  static TempDir* certs_;
};

TempDir* TlsTest::certs_ = nullptr;

constexpr auto kFailingCallTimeout = std::chrono::seconds(10);

TEST_F(TlsTest, TlsServerAnswersTlsClientsAndNotPlaintextOnes) {
  TempDir dir;
  TestServer server(dir.path(), TlsOptions(/*require_client_certificate=*/false));

  // The certificate names both 127.0.0.1 (IP SAN) and localhost (DNS SAN).
  std::unique_ptr<Stub> by_ip = TlsStub(server, "127.0.0.1", "ca.pem");
  std::unique_ptr<Stub> by_name = TlsStub(server, "localhost", "ca.pem");
  ASSERT_TRUE(by_ip != nullptr && by_name != nullptr);
  EXPECT_TRUE(IsOk(CreateIndex(*by_ip, "by-ip")));
  EXPECT_TRUE(IsOk(CreateIndex(*by_name, "by-name")));

  // Plaintext, even with a valid token (TestServer's own stub signs its calls).
  grpc::Status plain = CreateIndex(server.stub(), "plain", std::nullopt, kFailingCallTimeout);
  EXPECT_FALSE(plain.ok());
  EXPECT_EQ(plain.error_code(), Code::UNAVAILABLE) << plain.error_message();

  // A client that does not trust the server's CA.
  std::unique_ptr<Stub> distrustful = TlsStub(server, "127.0.0.1", "other-ca.pem");
  ASSERT_TRUE(distrustful != nullptr);
  grpc::Status untrusted =
      CreateIndex(*distrustful, "untrusted", std::nullopt, kFailingCallTimeout);
  EXPECT_FALSE(untrusted.ok());
  EXPECT_EQ(untrusted.error_code(), Code::UNAVAILABLE) << untrusted.error_message();

  // TLS does not replace the token: a TLS client without one is refused.
  std::unique_ptr<Stub> tokenless = [&] {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(File("ca.pem"));
    return v1::LuxDB::NewStub(
        grpc::CreateChannel(absl::StrCat("localhost:", server.port()), grpc::SslCredentials(ssl)));
  }();
  EXPECT_TRUE(IsUnauthenticated(CreateIndex(*tokenless, "tokenless")));

  EXPECT_EQ(IndexNames(*by_ip), (std::vector<std::string>{"by-ip", "by-name"}));
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheClientCa) {
  TempDir dir;
  TestServer server(dir.path(), TlsOptions(/*require_client_certificate=*/true));

  std::unique_ptr<Stub> with_cert = TlsStub(server, "localhost", "ca.pem", "client.pem");
  std::unique_ptr<Stub> without_cert = TlsStub(server, "localhost", "ca.pem");
  std::unique_ptr<Stub> stranger = TlsStub(server, "localhost", "ca.pem", "stranger.pem");
  ASSERT_TRUE(with_cert != nullptr && without_cert != nullptr && stranger != nullptr);

  grpc::Status status = CreateIndex(*without_cert, "anonymous", std::nullopt, kFailingCallTimeout);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.error_code(), Code::UNAVAILABLE) << status.error_message();

  status = CreateIndex(*stranger, "stranger", std::nullopt, kFailingCallTimeout);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.error_code(), Code::UNAVAILABLE) << status.error_message();

  EXPECT_TRUE(IsOk(CreateIndex(*with_cert, "certified")));
  EXPECT_EQ(IndexNames(*with_cert), (std::vector<std::string>{"certified"}));
}

}  // namespace
}  // namespace luxdb
