#include "tests/test_support.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "spdlog/spdlog.h"

namespace luxdb::testing {

std::vector<float> Rows(size_t n, uint32_t dim, float scale) {
  std::vector<float> out(n * dim);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = scale * static_cast<float>(std::sin(0.37 * static_cast<double>(i) + 0.11 * (i / dim)));
  }
  return out;
}

std::vector<uint64_t> Iota(size_t n, uint64_t first) {
  std::vector<uint64_t> ids(n);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

::testing::AssertionResult IsOk(const grpc::Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << CodeName(status.error_code()) << ": " << status.error_message();
}

TempDir::TempDir() {
  std::string pattern = std::filesystem::path(::testing::TempDir()) / "luxdb-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << pattern;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

TestServer::TestServer(const std::string& dir, server::Options options, bool wait_until_ready)
    : options_(options) {
  // luxdb-server's main sets the level from --loglevel; tests keep the default's quiet.
  spdlog::set_level(spdlog::level::warn);
  options_.data_dir = dir;
  options_.host = "127.0.0.1";
  options_.port = 0;
  Start(wait_until_ready);
}

TestServer::~TestServer() { Stop(); }

void TestServer::Start(bool wait_until_ready) {
  absl::StatusOr<std::unique_ptr<server::LuxServer>> server = server::LuxServer::Start(options_);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  absl::Status loaded = wait_until_ready ? server_->WaitUntilReady() : server_->WaitUntilLoaded();
  ASSERT_TRUE(loaded.ok()) << loaded;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(ConnectOptions());
  ASSERT_TRUE(channel.ok()) << channel.status();
  channel_ = *std::move(channel);
  stub_ = v1::LuxDB::NewStub(channel_);
}

void TestServer::Stop() {
  if (server_ == nullptr) return;
  absl::Status stopped = server_->Shutdown(std::chrono::seconds(10));
  EXPECT_TRUE(stopped.ok()) << stopped;
  server_.reset();
}

void TestServer::Restart() {
  Stop();
  Start();
}

server::Options TestServer::DefaultOptions() {
  server::Options options;
  options.secret = kTestSecret;
  options.kdf.iterations = kTestKdfIterations;
  options.metrics_port = 0;  // tests run servers side by side: none takes the metrics port
  return options;
}

client::ConnectOptions TestServer::ConnectOptions() const {
  client::ConnectOptions connect;
  connect.port = port();
  connect.secret = options_.secret;
  connect.insecure = options_.insecure;
  connect.kdf = options_.kdf;
  connect.max_message_bytes = std::numeric_limits<int>::max();
  return connect;
}

std::string TestServer::address() const { return absl::StrCat("127.0.0.1:", port()); }

grpc::Status CreateIndex(Stub& stub, const std::string& name, v1::Space space, uint32_t dim) {
  v1::CreateIndexRequest request;
  request.set_name(name);
  request.set_space(space);
  request.set_dim(dim);
  v1::CreateIndexResponse response;
  return Call(stub, &Stub::CreateIndex, request, &response);
}

grpc::Status InitIndex(Stub& stub, const std::string& name, uint64_t max_elements,
                       uint32_t ef_construction, uint32_t m) {
  v1::InitIndexRequest request;
  request.set_name(name);
  request.set_max_elements(max_elements);
  request.set_ef_construction(ef_construction);
  request.set_m(m);
  v1::InitIndexResponse response;
  return Call(stub, &Stub::InitIndex, request, &response);
}

grpc::Status DeleteIndex(Stub& stub, const std::string& name) {
  v1::DeleteIndexRequest request;
  request.set_name(name);
  v1::DeleteIndexResponse response;
  return Call(stub, &Stub::DeleteIndex, request, &response);
}

grpc::Status IndexExists(Stub& stub, const std::string& name, bool* exists) {
  v1::IndexExistsRequest request;
  request.set_name(name);
  v1::IndexExistsResponse response;
  grpc::Status status = Call(stub, &Stub::IndexExists, request, &response);
  *exists = response.exists();
  return status;
}

grpc::Status ListIndexes(Stub& stub, std::vector<v1::IndexInfo>* indexes) {
  v1::ListIndexesRequest request;
  v1::ListIndexesResponse response;
  grpc::Status status = Call(stub, &Stub::ListIndexes, request, &response);
  indexes->assign(response.indexes().begin(), response.indexes().end());
  return status;
}

grpc::Status DescribeIndex(Stub& stub, const std::string& name, v1::IndexInfo* info) {
  v1::DescribeIndexRequest request;
  request.set_name(name);
  v1::DescribeIndexResponse response;
  grpc::Status status = Call(stub, &Stub::DescribeIndex, request, &response);
  *info = response.info();
  return status;
}

grpc::Status SetEf(Stub& stub, const std::string& name, uint32_t ef) {
  v1::SetEfRequest request;
  request.set_name(name);
  request.set_ef(ef);
  v1::SetEfResponse response;
  return Call(stub, &Stub::SetEf, request, &response);
}

grpc::Status AddItems(Stub& stub, const std::string& name, const std::vector<float>& vectors,
                      const std::vector<uint64_t>& ids, uint64_t* added) {
  v1::AddItemsRequest request;
  request.set_name(name);
  request.mutable_vectors()->Add(vectors.begin(), vectors.end());
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::AddItemsResponse response;
  grpc::Status status = Call(stub, &Stub::AddItems, request, &response);
  if (added != nullptr) *added = response.added();
  return status;
}

grpc::Status DeleteItems(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                         uint64_t* deleted) {
  v1::DeleteItemsRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::DeleteItemsResponse response;
  grpc::Status status = Call(stub, &Stub::DeleteItems, request, &response);
  if (deleted != nullptr) *deleted = response.deleted();
  return status;
}

grpc::Status QueryIndex(Stub& stub, const std::string& name, const std::vector<float>& queries,
                        uint32_t k, uint32_t ef, QueryResult* result) {
  v1::QueryIndexRequest request;
  request.set_name(name);
  request.mutable_vectors()->Add(queries.begin(), queries.end());
  request.set_k(k);
  request.set_ef(ef);
  v1::QueryIndexResponse response;
  grpc::Status status = Call(stub, &Stub::QueryIndex, request, &response);
  result->ids.assign(response.ids().begin(), response.ids().end());
  result->distances.assign(response.distances().begin(), response.distances().end());
  result->k = response.k();
  return status;
}

grpc::Status ResizeIndex(Stub& stub, const std::string& name, uint64_t new_max_elements) {
  v1::ResizeIndexRequest request;
  request.set_name(name);
  request.set_new_max_elements(new_max_elements);
  v1::ResizeIndexResponse response;
  return Call(stub, &Stub::ResizeIndex, request, &response);
}

grpc::Status CompactIndex(Stub& stub, const std::string& name, v1::CompactIndexResponse* response) {
  v1::CompactIndexRequest request;
  request.set_name(name);
  v1::CompactIndexResponse ignored;
  return Call(stub, &Stub::CompactIndex, request, response != nullptr ? response : &ignored);
}

grpc::Status GetIds(Stub& stub, const std::string& name, std::vector<uint64_t>* ids) {
  v1::GetIdsRequest request;
  request.set_name(name);
  v1::GetIdsResponse response;
  grpc::Status status = Call(stub, &Stub::GetIds, request, &response);
  ids->assign(response.ids().begin(), response.ids().end());
  return status;
}

grpc::Status GetIdsPage(Stub& stub, const std::string& name, std::optional<uint64_t> start_after,
                        std::optional<uint32_t> limit, IdsPage* page) {
  v1::GetIdsRequest request;
  request.set_name(name);
  if (start_after.has_value()) request.set_start_after(*start_after);
  if (limit.has_value()) request.set_limit(*limit);
  v1::GetIdsResponse response;
  grpc::Status status = Call(stub, &Stub::GetIds, request, &response);
  page->ids.assign(response.ids().begin(), response.ids().end());
  page->next_start_after.reset();
  if (response.has_next_start_after()) page->next_start_after = response.next_start_after();
  return status;
}

grpc::Status GetElements(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                         std::vector<float>* vectors, uint32_t* dim) {
  v1::GetElementsRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::GetElementsResponse response;
  grpc::Status status = Call(stub, &Stub::GetElements, request, &response);
  vectors->assign(response.vectors().begin(), response.vectors().end());
  if (dim != nullptr) *dim = response.dim();
  return status;
}

grpc::Status Backup(Stub& stub, const std::string& path, v1::BackupResponse* response) {
  v1::BackupRequest request;
  request.set_path(path);
  return Call(stub, &Stub::Backup, request, response);
}

::testing::AssertionResult IsError(const grpc::Status& status, grpc::StatusCode code,
                                   std::initializer_list<std::string> fragments) {
  bool matches = status.error_code() == code;
  for (const std::string& fragment : fragments) {
    matches = matches && status.error_message().find(fragment) != std::string::npos;
  }
  if (matches) return ::testing::AssertionSuccess();
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  failure << "got " << CodeName(status.error_code()) << " \"" << status.error_message()
          << "\"; want " << CodeName(code) << " with a message containing";
  for (const std::string& fragment : fragments) failure << " \"" << fragment << "\"";
  return failure;
}

std::vector<uint32_t> Bits(const std::vector<float>& floats) {
  std::vector<uint32_t> bits;
  bits.reserve(floats.size());
  for (float f : floats) bits.push_back(std::bit_cast<uint32_t>(f));
  return bits;
}

v1::IndexInfo InfoOf(Stub& stub, const std::string& name) {
  v1::IndexInfo info;
  EXPECT_TRUE(IsOk(DescribeIndex(stub, name, &info))) << name;
  return info;
}

std::string WithoutMemory(v1::IndexInfo info) {
  EXPECT_EQ(info.memory_bytes() > 0, info.initialized())
      << "index '" << info.name() << "': memory_bytes " << info.memory_bytes();
  info.clear_memory_bytes();
  return info.ShortDebugString();
}

std::vector<uint64_t> IdsOf(Stub& stub, const std::string& name) {
  std::vector<uint64_t> ids;
  EXPECT_TRUE(IsOk(GetIds(stub, name, &ids))) << name;
  return ids;
}

std::vector<float> VectorsOf(Stub& stub, const std::string& name,
                             const std::vector<uint64_t>& ids) {
  std::vector<float> vectors;
  EXPECT_TRUE(IsOk(GetElements(stub, name, ids, &vectors))) << name;
  return vectors;
}

Content ContentOf(Stub& stub, const std::string& name) {
  Content content;
  content.info = InfoOf(stub, name);
  if (!content.info.initialized()) return content;
  content.ids = IdsOf(stub, name);
  content.vector_bits = Bits(VectorsOf(stub, name, content.ids));
  return content;
}

::testing::AssertionResult Unchanged(const Content& before, const Content& after) {
  if (before.info.ShortDebugString() != after.info.ShortDebugString()) {
    return ::testing::AssertionFailure() << "description was {" << before.info.ShortDebugString()
                                         << "}, now {" << after.info.ShortDebugString() << "}";
  }
  if (before.ids != after.ids) {
    return ::testing::AssertionFailure() << "ids were [" << absl::StrJoin(before.ids, ",")
                                         << "], now [" << absl::StrJoin(after.ids, ",") << "]";
  }
  if (before.vector_bits != after.vector_bits) {
    return ::testing::AssertionFailure() << "stored vectors changed";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace luxdb::testing
