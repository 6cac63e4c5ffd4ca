#include "tests/test_support.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "spdlog/spdlog.h"

namespace luxdb::testing {

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

TestServer::TestServer(const std::string& dir, server::Options options) : options_(options) {
  // luxdb-server's main sets the level from --loglevel; tests keep the default's quiet.
  spdlog::set_level(spdlog::level::warn);
  options_.data_dir = dir;
  options_.host = "127.0.0.1";
  options_.port = 0;
  Start();
}

TestServer::~TestServer() { Stop(); }

void TestServer::Start() {
  absl::StatusOr<std::unique_ptr<server::LuxServer>> server = server::LuxServer::Start(options_);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  absl::Status loaded = server_->WaitUntilLoaded();
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

}  // namespace luxdb::testing
