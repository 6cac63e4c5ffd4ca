// Tests of server/calls.h: the table of luxdb.v1.LuxDB's methods that the metrics and the
// request log use, and what it reads from a request.
#include "server/calls.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

namespace luxdb::server {
namespace {

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A method added to luxdb.proto must be added to the table, or its calls would go unseen.
TEST(CallsTest, TableHoldsEveryMethodOfTheService) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("luxdb.v1.LuxDB");
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(static_cast<size_t>(service->method_count()), kMethodCount);
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string path = absl::StrCat("/luxdb.v1.LuxDB/", service->method(i)->name());
    const MethodInfo* method = FindMethod(path);
    ASSERT_NE(method, nullptr) << path << " is not in server/calls.cc's table";
    EXPECT_EQ(method->name, service->method(i)->name());
    EXPECT_EQ(method->path, path);
  }
  for (size_t i = 0; i < kMethodCount; ++i) {
    EXPECT_EQ(static_cast<size_t>(Methods()[i].method), i) << Methods()[i].name;
  }
  EXPECT_EQ(FindMethod("/grpc.health.v1.Health/Check"), nullptr);
  EXPECT_EQ(FindMethod("/luxdb.v1.LuxDB/Nope"), nullptr);
  EXPECT_EQ(FindMethod(""), nullptr);
}

TEST(CallsTest, MethodsThatChangeStateAreMarked) {
  std::set<std::string> mutating;
  for (const MethodInfo& method : Methods()) {
    if (method.mutates) mutating.insert(std::string(method.name));
  }
  EXPECT_EQ(mutating, (std::set<std::string>{"AddItems", "Backup", "CompactIndex", "CreateIndex",
                                             "DeleteIndex", "DeleteItems", "InitIndex",
                                             "ResizeIndex", "SetAttributes", "SetEf"}));
}

TEST(CallsTest, SubjectOfParsedRequests) {
  v1::AddItemsRequest add;
  add.set_name("docs");
  add.add_ids(1);
  add.add_ids(2);
  add.add_ids(3);
  CallSubject subject = InfoOf(Method::kAddItems).subject(&add);
  EXPECT_EQ(subject.index, "docs");
  EXPECT_EQ(subject.items, 3u);

  v1::DescribeIndexRequest describe;
  describe.set_name(std::string(1000, 'x'));  // what a client may send; the log keeps 256 bytes
  subject = InfoOf(Method::kDescribeIndex).subject(&describe);
  EXPECT_EQ(subject.index, std::string(256, 'x') + "...");
  EXPECT_FALSE(subject.items.has_value());

  v1::ListIndexesRequest list;
  subject = InfoOf(Method::kListIndexes).subject(&list);
  EXPECT_TRUE(subject.index.empty());
}

TEST(CallsTest, IndexNameOfARawQuery) {
  v1::QueryIndexRequest query;
  query.set_name("docs");
  query.set_k(10);
  for (int i = 0; i < 784; ++i) query.add_vectors(0.5f);
  grpc::ByteBuffer bytes = Bytes(query.SerializeAsString());
  EXPECT_EQ(InfoOf(Method::kQueryIndex).subject(&bytes).index, "docs");
  EXPECT_EQ(InfoOf(Method::kQueryStream).subject(&bytes).index, "docs");

  // The name after the vectors (another serializer's order): they are skipped, not read.
  v1::QueryIndexRequest vectors_only = query;
  vectors_only.clear_name();
  v1::QueryIndexRequest name_only;
  name_only.set_name("later");
  grpc::ByteBuffer reordered =
      Bytes(vectors_only.SerializeAsString() + name_only.SerializeAsString());
  EXPECT_EQ(InfoOf(Method::kQueryIndex).subject(&reordered).index, "later");

  // Bytes that are not a request: no name, and no crash.
  // (Octal escapes: a hex escape would take the letters after it as digits.)
  for (const std::string& garbage :
       {std::string("\x0a\xff\xff\xff\xff\x0f", 6), std::string("\022\005ab", 4),
        std::string("\012\004do", 4), std::string("\x07", 1), std::string()}) {
    grpc::ByteBuffer bad = Bytes(garbage);
    EXPECT_EQ(InfoOf(Method::kQueryIndex).subject(&bad).index, "");
  }
}

TEST(CallsTest, StatusCodeNames) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::NOT_FOUND), "NOT_FOUND");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(99)), "UNKNOWN");
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(-1)), "UNKNOWN");
}

}  // namespace
}  // namespace luxdb::server
