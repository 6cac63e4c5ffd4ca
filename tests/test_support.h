// Helpers shared by the C++ test suites.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "grpcpp/channel.h"
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
  explicit TestServer(const std::string& dir, server::Options options = DefaultOptions());
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

 private:
  void Start();

  server::Options options_;
  std::unique_ptr<server::LuxServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LuxDB::Stub> stub_;
};

}  // namespace luxdb::testing
