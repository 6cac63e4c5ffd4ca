// Tests of server/server_metrics.h: the series calls and the catalog produce, the series of a
// deleted index going away, and the /metrics endpoint (bound, refused on a used port, stopped
// promptly).
#include "server/server_metrics.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/catalog.h"
#include "luxdb/client.h"
#include "tests/test_support.h"

namespace luxdb::server {
namespace {

using ::luxdb::testing::Iota;
using ::luxdb::testing::Rows;
using ::luxdb::testing::TempDir;
using ::luxdb::testing::TestServer;
using ::testing::HasSubstr;
using ::testing::Not;

// A line of `text` starting with `series` ("name{labels}"), its value; -1 if there is none.
double Value(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, prefix)) return std::stod(std::string(line.substr(prefix.size())));
  }
  return -1;
}

bool HasSeries(const std::string& text, absl::string_view name_prefix) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name_prefix)) return true;
  }
  return false;
}

// GET /metrics on 127.0.0.1:port; the whole HTTP response.
std::string Scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
    }
  }
  close(fd);
  return response;
}

TEST(ServerMetricsTest, CallsByMethodAndCode) {
  ServerMetrics metrics;
  metrics.RecordCall(Method::kQueryIndex, grpc::StatusCode::OK, std::chrono::microseconds(300));
  metrics.RecordCall(Method::kQueryIndex, grpc::StatusCode::OK, std::chrono::milliseconds(2));
  metrics.RecordCall(Method::kQueryIndex, grpc::StatusCode::NOT_FOUND,
                     std::chrono::microseconds(20));
  metrics.RecordRefusal(&InfoOf(Method::kAddItems), grpc::StatusCode::UNAUTHENTICATED, "expired");
  metrics.RecordRefusal(nullptr, grpc::StatusCode::UNAUTHENTICATED, "missing");
  metrics.CallStarted();
  metrics.CallStarted();
  metrics.CallEnded();

  const std::string text = metrics.Text();
  EXPECT_EQ(Value(text, R"(luxdb_calls_total{code="OK",method="QueryIndex"})"), 2) << text;
  EXPECT_EQ(Value(text, R"(luxdb_calls_total{code="NOT_FOUND",method="QueryIndex"})"), 1);
  EXPECT_EQ(Value(text, R"(luxdb_calls_total{code="UNAUTHENTICATED",method="AddItems"})"), 1);
  EXPECT_EQ(Value(text, R"(luxdb_auth_refusals_total{reason="expired"})"), 1);
  EXPECT_EQ(Value(text, R"(luxdb_auth_refusals_total{reason="missing"})"), 1);
  EXPECT_EQ(Value(text, "luxdb_calls_in_flight"), 1);
  EXPECT_EQ(Value(text, R"(luxdb_call_duration_seconds_count{method="QueryIndex"})"), 3);
  EXPECT_EQ(Value(text, R"(luxdb_call_duration_seconds_bucket{method="QueryIndex",le="0.0005"})"),
            2);
  EXPECT_EQ(Value(text, R"(luxdb_call_duration_seconds_bucket{method="QueryIndex",le="+Inf"})"), 3);
  // Refusals have no duration: the call never reached the server.
  EXPECT_FALSE(HasSeries(text, R"(luxdb_call_duration_seconds_count{method="AddItems"})"));
  // A method never called has no series yet.
  EXPECT_FALSE(HasSeries(text, R"(luxdb_calls_total{code="OK",method="Backup"})"));
  // Resident memory is always there; the catalog's series only once one is attached.
  EXPECT_GT(Value(text, "luxdb_process_resident_memory_bytes"), 1 << 20);
  EXPECT_FALSE(HasSeries(text, "luxdb_index_"));
  EXPECT_FALSE(HasSeries(text, "luxdb_storage_"));
}

TEST(ServerMetricsTest, PerIndexSeriesFollowTheCatalog) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<engine::Catalog>> catalog =
      engine::Catalog::Open(dir.path() + "/data", {.threads = 2, .sync = false});
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  (*catalog)->WaitUntilLoaded();
  ASSERT_TRUE((*catalog)->Create("docs", storage::Space::kL2, 4).ok());
  ASSERT_TRUE((*catalog)->Create("empty", storage::Space::kL2, 4).ok());
  std::shared_ptr<engine::Index> docs = *(*catalog)->Get("docs");
  ASSERT_TRUE(docs->Init({.max_elements = 100}).ok());
  ASSERT_TRUE(docs->Add(Rows(10, 4), Iota(10)).ok());
  ASSERT_TRUE(docs->Delete(Iota(2)).ok());

  ServerMetrics metrics;
  metrics.AttachCatalog(catalog->get());
  std::string text = metrics.Text();
  EXPECT_EQ(Value(text, R"(luxdb_index_items{index="docs"})"), 8) << text;
  EXPECT_EQ(Value(text, R"(luxdb_index_tombstones{index="docs"})"), 2);
  EXPECT_GT(Value(text, R"(luxdb_index_memory_bytes{index="docs"})"), 0);
  EXPECT_EQ(Value(text, R"(luxdb_index_replay_backlog_items{index="docs"})"), 12);
  EXPECT_EQ(Value(text, R"(luxdb_index_items{index="empty"})"), 0);
  // No snapshot yet: no age.
  EXPECT_FALSE(HasSeries(text, "luxdb_index_snapshot_age_seconds"));
  EXPECT_GT(Value(text, "luxdb_storage_written_bytes_total"), 10 * 4 * sizeof(float));
  EXPECT_GE(Value(text, "luxdb_storage_live_data_bytes"), 0);

  ASSERT_TRUE(docs->SaveSnapshot().ok());
  text = metrics.Text();
  EXPECT_EQ(Value(text, R"(luxdb_index_replay_backlog_items{index="docs"})"), 0);
  const double age = Value(text, R"(luxdb_index_snapshot_age_seconds{index="docs"})");
  EXPECT_GE(age, 0);
  EXPECT_LT(age, 60);

  // A deleted index's series go with it.
  docs.reset();
  ASSERT_TRUE((*catalog)->Drop("docs").ok());
  text = metrics.Text();
  EXPECT_FALSE(HasSeries(text, R"(luxdb_index_items{index="docs"})")) << text;
  EXPECT_FALSE(HasSeries(text, R"(luxdb_index_memory_bytes{index="docs"})"));
  EXPECT_TRUE(HasSeries(text, R"(luxdb_index_items{index="empty"})"));

  metrics.AttachCatalog(nullptr);
  EXPECT_FALSE(HasSeries(metrics.Text(), "luxdb_index_"));
  ASSERT_TRUE((*catalog)->Close().ok());
}

TEST(ServerMetricsTest, ServesMetricsAndStopsPromptly) {
  auto metrics = std::make_unique<ServerMetrics>();
  ASSERT_TRUE(metrics->Serve("127.0.0.1", 0).ok());
  const int port = metrics->port();
  ASSERT_GT(port, 0);
  metrics->RecordCall(Method::kCreateIndex, grpc::StatusCode::OK, std::chrono::milliseconds(1));
  const std::string response = Scrape(port);
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr(R"(luxdb_calls_total{code="OK",method="CreateIndex"} 1)"));

  // A second endpoint on the same port is refused, not started.
  ServerMetrics second;
  absl::Status refused = second.Serve("127.0.0.1", port);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(second.port(), 0);

  // Stopping takes milliseconds, not the HTTP server's 2 s poll.
  const auto started = std::chrono::steady_clock::now();
  metrics.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  EXPECT_THAT(Scrape(port), Not(HasSubstr("luxdb_")));
}

// A free loopback port (another process may take it before the caller binds it: tests only).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// Through a whole server: a QueryStream's queries are counted one by one, and a stream the
// server ends at shutdown while it waits for the client's next message (the interceptor then
// sees the stream's status sent while its read is still pending) counts once more, with
// UNAVAILABLE; nothing stays in flight.
TEST(ServerMetricsTest, QueryStreamEndedByShutdownIsCountedOnce) {
  TempDir dir;
  Options options = TestServer::DefaultOptions();
  options.metrics_port = FreePort();
  TestServer server(dir.path(), options);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  absl::StatusOr<std::unique_ptr<::luxdb::Client>> db =
      ::luxdb::Client::Connect(server.ConnectOptions());
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->CreateIndex("docs", ::luxdb::Space::kL2, 3).ok());
  ASSERT_TRUE((*db)->InitIndex("docs", {.max_elements = 10}).ok());
  ASSERT_TRUE((*db)->AddItems("docs", Rows(4, 3), Iota(4)).ok());
  std::unique_ptr<::luxdb::QueryStream> stream = (*db)->OpenQueryStream("docs", 1);
  for (int i = 0; i < 2; ++i) {
    // The client's pause between queries is no query's time.
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_TRUE(stream->Send(Rows(1, 3)));
    ASSERT_TRUE(stream->Receive().ok());
  }
  ASSERT_TRUE(server.server().Shutdown(std::chrono::seconds(10)).ok());
  EXPECT_EQ(stream->Receive().status().code(), absl::StatusCode::kUnavailable);

  // The metrics endpoint serves until the server is destroyed.
  const std::string text = Scrape(options.metrics_port);
  EXPECT_EQ(Value(text, R"(luxdb_calls_total{code="OK",method="QueryStream"})"), 2) << text;
  EXPECT_EQ(Value(text, R"(luxdb_calls_total{code="UNAVAILABLE",method="QueryStream"})"), 1);
  EXPECT_EQ(Value(text, R"(luxdb_calls_total{code="OK",method="AddItems"})"), 1);
  EXPECT_EQ(Value(text, "luxdb_calls_in_flight"), 0);
  // Both queries took far less than the pause; the stream's end, timed from its start, more.
  EXPECT_EQ(Value(text, R"(luxdb_call_duration_seconds_bucket{method="QueryStream",le="0.25"})"),
            2);
  EXPECT_EQ(Value(text, R"(luxdb_call_duration_seconds_count{method="QueryStream"})"), 3);
}

}  // namespace
}  // namespace luxdb::server
