// Helpers shared by the C++ test suites.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "luxdb/connect.h"
#include "luxdb/v1/luxdb.grpc.pb.h"
#include "server/options.h"
#include "server/server.h"

namespace luxdb::testing {

// The secret TestServer uses unless told otherwise, and the (fast) key derivation both sides
// use in tests; the default 2^18 iterations are exercised by the auth tests.
inline constexpr char kTestSecret[] = "luxdb-test-secret";
inline constexpr uint32_t kTestKdfIterations = 1000;

// "NOT_FOUND", "UNAUTHENTICATED", ... for a gRPC status code.
std::string CodeName(grpc::StatusCode code);
// Succeeds for an OK status; otherwise fails showing the code and message.
::testing::AssertionResult IsOk(const grpc::Status& status);

// Deterministic vectors for client tests: n rows of dimension `dim`, distinct per row,
// sin(0.37 i + 0.11 row) times `scale` for the i-th float.
std::vector<float> Rows(size_t n, uint32_t dim, float scale = 1.0f);
// first, first + 1, ..., n ids.
std::vector<uint64_t> Iota(size_t n, uint64_t first = 0);

// A fresh, empty directory under the test temp dir, removed with everything in it on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A real LuxServer, in this process, listening on an ephemeral loopback port over data
// directory `dir`, with a connected client stub. The constructor returns once every index
// is loaded (it fails the test otherwise).
class TestServer {
 public:
  // `options.data_dir`, host and port are overridden. Unless `options` says --insecure or
  // sets a secret, the server uses kTestSecret with kTestKdfIterations, and so does stub().
  // With `wait_until_ready` false the constructor returns once storage is open, while
  // indexes may still be loading (see LuxServer::WaitUntilReady).
  explicit TestServer(const std::string& dir, server::Options options = DefaultOptions(),
                      bool wait_until_ready = true);
  static server::Options DefaultOptions();
  ~TestServer();

  // Clean shutdown (snapshots, flush) followed by a fresh start on the same directory and
  // a new port; the stub is reconnected.
  void Restart();
  // Clean shutdown; the stub then fails every call with UNAVAILABLE.
  void Stop();

  int port() const { return server_->port(); }
  std::string address() const;
  // Options for luxdb::client::Connect that reach this server with its secret.
  client::ConnectOptions ConnectOptions() const;
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  v1::LuxDB::Stub& stub() { return *stub_; }
  server::LuxServer& server() { return *server_; }

 private:
  void Start(bool wait_until_ready = true);

  server::Options options_;
  std::unique_ptr<server::LuxServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LuxDB::Stub> stub_;
};

// ---------------------------------------------------------------------------------------------
// Calling the LuxDB service through its generated stub, one helper per RPC, as a client would.

using Stub = v1::LuxDB::Stub;

// Deadline of every call made by the helpers below.
#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer slows graph building ten- to twentyfold.
inline constexpr auto kCallTimeout = std::chrono::seconds(600);
#else
inline constexpr auto kCallTimeout = std::chrono::seconds(60);
#endif

template <typename Request, typename Response>
grpc::Status Call(Stub& stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                  const Request& request, Response* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return (stub.*method)(&context, request, response);
}

grpc::Status CreateIndex(Stub& stub, const std::string& name, v1::Space space, uint32_t dim);
grpc::Status InitIndex(Stub& stub, const std::string& name, uint64_t max_elements,
                       uint32_t ef_construction = 0, uint32_t m = 0);
grpc::Status DeleteIndex(Stub& stub, const std::string& name);
grpc::Status IndexExists(Stub& stub, const std::string& name, bool* exists);
grpc::Status ListIndexes(Stub& stub, std::vector<v1::IndexInfo>* indexes);
grpc::Status DescribeIndex(Stub& stub, const std::string& name, v1::IndexInfo* info);
grpc::Status SetEf(Stub& stub, const std::string& name, uint32_t ef);
grpc::Status AddItems(Stub& stub, const std::string& name, const std::vector<float>& vectors,
                      const std::vector<uint64_t>& ids, uint64_t* added = nullptr);
grpc::Status DeleteItems(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                         uint64_t* deleted = nullptr);

struct QueryResult {
  std::vector<uint64_t> ids;
  std::vector<float> distances;
  uint32_t k = 0;
};
grpc::Status QueryIndex(Stub& stub, const std::string& name, const std::vector<float>& queries,
                        uint32_t k, uint32_t ef, QueryResult* result);
grpc::Status ResizeIndex(Stub& stub, const std::string& name, uint64_t new_max_elements);
grpc::Status GetIds(Stub& stub, const std::string& name, std::vector<uint64_t>* ids);
// One page of GetIds: start_after and limit are sent when set (limit 0 included).
struct IdsPage {
  std::vector<uint64_t> ids;
  std::optional<uint64_t> next_start_after;
};
grpc::Status GetIdsPage(Stub& stub, const std::string& name, std::optional<uint64_t> start_after,
                        std::optional<uint32_t> limit, IdsPage* page);
grpc::Status GetElements(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids,
                         std::vector<float>* vectors, uint32_t* dim = nullptr);
grpc::Status Backup(Stub& stub, const std::string& path, v1::BackupResponse* response);
grpc::Status CompactIndex(Stub& stub, const std::string& name,
                          v1::CompactIndexResponse* response = nullptr);

// ---------------------------------------------------------------------------------------------
// Checking answers.

// A refused call: `code`, and a message holding every fragment (the index, the bad value).
::testing::AssertionResult IsError(const grpc::Status& status, grpc::StatusCode code,
                                   std::initializer_list<std::string> fragments);

// The bit patterns of `floats`, so that vectors compare exactly (NaN and -0 included).
std::vector<uint32_t> Bits(const std::vector<float>& floats);

// DescribeIndex / GetIds / GetElements that must succeed (a failure is reported, and the
// result is then empty).
v1::IndexInfo InfoOf(Stub& stub, const std::string& name);
std::vector<uint64_t> IdsOf(Stub& stub, const std::string& name);
// `info` as text (ShortDebugString) without memory_bytes, which depends on the graph's layout
// rather than on the calls made; reports a failure unless memory_bytes is set exactly when
// the index is initialised.
std::string WithoutMemory(v1::IndexInfo info);
std::vector<float> VectorsOf(Stub& stub, const std::string& name, const std::vector<uint64_t>& ids);

// What a client can see of an index: its description, live ids and their stored vectors.
struct Content {
  v1::IndexInfo info;
  std::vector<uint64_t> ids;
  std::vector<uint32_t> vector_bits;
};
Content ContentOf(Stub& stub, const std::string& name);
// Succeeds if `after` shows exactly what `before` did; otherwise says what changed.
::testing::AssertionResult Unchanged(const Content& before, const Content& after);

}  // namespace luxdb::testing
