// Attacks on a real luxdb-server process, each as an outside attack run tried it, bounded in
// time, each asserting the defence: unauthenticated large, partial, stalled and header-only
// requests cost the server almost no memory and are cut within the configured timeouts while
// an authenticated client is served; silent connections are closed after the handshake
// timeout; memory held after a burst is given back; a second server cannot take a port that
// one serves; a call with two authorization headers is refused.
//
// The server runs with short timeouts (kIdleSeconds, kAgeSeconds, ...) so that the tests can
// watch them act. Memory is the server's VmHWM (peak RSS) and VmRSS from /proc.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "auth/key.h"
#include "auth/token.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "harness/server_process.h"
#include "luxdb/client.h"
#include "luxdb/connect_options.h"
#include "luxdb/v1/luxdb.grpc.pb.h"
#include "tests/raw_http2.h"
#include "tests/test_support.h"

namespace luxdb::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint32_t kKdfIterations = 1000;
constexpr int kIdleSeconds = 3;
constexpr int kAgeSeconds = 6;
constexpr int kCallSeconds = 3;  // also the grace after the connection age
constexpr int kHandshakeSeconds = 2;
constexpr uint64_t kMiB = uint64_t{1} << 20;
// What an attack may add to the server's peak RSS.
constexpr uint64_t kMaxGrowthBytes = 64 * kMiB;
// What a burst of large calls may leave resident a few seconds after it.
constexpr uint64_t kReturnedWithinBytes = 32 * kMiB;
constexpr uint32_t kDim = 16;
constexpr char kAddItems[] = "/luxdb.v1.LuxDB/AddItems";

uint64_t Status(pid_t pid, const char* field) {
  return harness::ProcessStatusBytes(pid, field).value_or(0);
}

// An AddItems request of about `bytes` bytes (valid for an index of dimension kDim).
std::string LargeAddItems(uint64_t bytes) {
  v1::AddItemsRequest request;
  request.set_name("victim");
  const uint64_t n = bytes / (kDim * sizeof(float) + 1);
  request.mutable_vectors()->Resize(static_cast<int>(n * kDim), 0.25f);
  for (uint64_t i = 0; i < n; ++i) request.add_ids(1000 + i % 100);
  return request.SerializeAsString();
}

grpc::Status SendRaw(const std::shared_ptr<grpc::Channel>& channel, const std::string& request,
                     const std::vector<std::string>& authorization) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(60));
  for (const std::string& value : authorization) context.AddMetadata("authorization", value);
  grpc::Slice slice(request);
  grpc::ByteBuffer buffer(&slice, 1);
  grpc::ByteBuffer response;
  grpc::CompletionQueue cq;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&context, kAddItems, buffer, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// Single-vector queries from one authenticated client in a loop until stopped: the
// latencies of the calls a real user makes while the server is attacked.
class VictimClient {
 public:
  explicit VictimClient(Client* client) : client_(client) {
    thread_ = std::thread([this] { Run(); });
  }
  ~VictimClient() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Stops, then: the 99th percentile latency in ms, with the count and errors.
  double P99Ms() {
    Stop();
    if (latencies_ms_.empty()) return 1e9;
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    return latencies_ms_[latencies_ms_.size() * 99 / 100];
  }
  size_t calls() const { return latencies_ms_.size(); }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  void Run() {
    std::vector<float> query(kDim, 0.5f);
    while (!stop_) {
      const Clock::time_point start = Clock::now();
      absl::StatusOr<luxdb::QueryResult> result = client_->QueryIndex("victim", query, 1, 1);
      latencies_ms_.push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      if (!result.ok()) errors_.push_back(result.status().ToString());
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  Client* const client_;
  std::atomic<bool> stop_ = false;
  std::vector<double> latencies_ms_;
  std::vector<std::string> errors_;
  std::thread thread_;
};

class AttackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* binary = std::getenv("LUXDB_SERVER_BIN");
    ASSERT_NE(binary, nullptr) << "set LUXDB_SERVER_BIN to the luxdb-server binary (CTest does)";
    binary_ = binary;
    secret_ = harness::RandomSecret();
    harness::ServerProcessOptions options;
    options.binary = binary_;
    options.data_dir = dir_.path() + "/data";
    options.secret = secret_;
    options.log_path = dir_.path() + "/server.log";
    // The limits as environment variables (each flag's fallback), which a server without
    // them ignores: the suite then shows what an unprotected server does.
    options.extra_env = {absl::StrCat("KDF_ITERATIONS=", kKdfIterations),
                         absl::StrCat("LUXDB_MAX_CONNECTION_IDLE_SECONDS=", kIdleSeconds),
                         absl::StrCat("LUXDB_MAX_CONNECTION_AGE_SECONDS=", kAgeSeconds),
                         absl::StrCat("LUXDB_MAX_CALL_SECONDS=", kCallSeconds),
                         absl::StrCat("LUXDB_HANDSHAKE_TIMEOUT_SECONDS=", kHandshakeSeconds)};
    for (std::string& setting : MoreEnvironment()) options.extra_env.push_back(setting);
    server_ = std::make_unique<harness::ServerProcess>(std::move(options));
    const absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;

    ConnectOptions connect;
    connect.port = server_->port();
    connect.secret = secret_;
    connect.kdf.iterations = kKdfIterations;
    connect.call_timeout = seconds(30);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(connect);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    ASSERT_TRUE(client_->CreateIndex("victim", Space::kL2, kDim).ok());
    ASSERT_TRUE(client_->InitIndex("victim", {.max_elements = 1000}).ok());
    std::vector<float> vectors(100 * kDim);
    std::vector<uint64_t> ids(100);
    for (size_t i = 0; i < vectors.size(); ++i) vectors[i] = static_cast<float>(i % 97) / 97;
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
    ASSERT_TRUE(client_->AddItems("victim", vectors, ids).ok());

    absl::StatusOr<auth::Key> key = auth::DeriveKey(secret_, {.iterations = kKdfIterations});
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = *key;
  }

  // Sends `request` as an authenticated AddItems from `senders` channels at once.
  std::vector<grpc::Status> SendConcurrently(const std::string& request, int senders) {
    std::vector<grpc::Status> statuses(senders);
    std::vector<std::thread> threads;
    for (int i = 0; i < senders; ++i) {
      const std::string token = "Bearer " + Token(kAddItems);
      threads.emplace_back(
          [&, i, token] { statuses[i] = SendRaw(Channel(100 + i), request, {token}); });
    }
    for (std::thread& t : threads) t.join();
    return statuses;
  }

  // More of the server's environment, for fixtures that test other limits.
  virtual std::vector<std::string> MoreEnvironment() const { return {}; }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr && server_->running()) {
      const absl::Status stopped = server_->Stop();
      EXPECT_TRUE(stopped.ok()) << stopped;
    }
  }

  // A channel of its own (a distinct argument keeps gRPC from sharing a connection).
  std::shared_ptr<grpc::Channel> Channel(int number) const {
    grpc::ChannelArguments arguments;
    arguments.SetMaxSendMessageSize(-1);
    arguments.SetInt("luxdb.test.channel", number);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials(), arguments);
  }

  std::string Token(const std::string& method) { return auth::MintToken(key_, method); }

  // A raw HTTP/2 connection to the server (see RawHttp2Connection::Connect); dies on failure.
  std::unique_ptr<RawHttp2Connection> ConnectRaw(bool handshake) const {
    absl::StatusOr<std::unique_ptr<RawHttp2Connection>> connection =
        RawHttp2Connection::Connect(server_->port(), handshake);
    if (!connection.ok()) {
      ADD_FAILURE() << connection.status();
      std::abort();
    }
    return *std::move(connection);
  }

  // Opens `streams` AddItems streams without a token on `connection`; their ids.
  static std::vector<uint32_t> OpenStreams(RawHttp2Connection* connection, int streams) {
    std::vector<uint32_t> ids;
    for (int s = 0; s < streams; ++s) {
      absl::StatusOr<uint32_t> stream = connection->OpenStream(kAddItems, {});
      EXPECT_TRUE(stream.ok()) << stream.status();
      if (stream.ok()) ids.push_back(*stream);
    }
    return ids;
  }

  pid_t pid() const { return server_->pid(); }

  TempDir dir_;
  std::string binary_;
  std::string secret_;
  auth::Key key_;
  std::unique_ptr<harness::ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(AttackTest, UnauthenticatedLargeRequestsAreRefusedBeforeTheyAreRead) {
  constexpr int kAttackers = 6;
  constexpr uint64_t kRequestBytes = 128 * kMiB;
  const std::string request = LargeAddItems(kRequestBytes);
  const uint64_t peak_before = Status(pid(), "VmHWM");
  VictimClient victim(client_.get());
  std::vector<grpc::Status> statuses(kAttackers);
  std::vector<double> seconds_taken(kAttackers);
  std::vector<std::thread> attackers;
  for (int i = 0; i < kAttackers; ++i) {
    attackers.emplace_back([&, i] {
      const Clock::time_point start = Clock::now();
      statuses[i] = SendRaw(Channel(i), request, {});
      seconds_taken[i] = std::chrono::duration<double>(Clock::now() - start).count();
    });
  }
  for (std::thread& t : attackers) t.join();
  const double p99 = victim.P99Ms();
  const uint64_t peak_after = Status(pid(), "VmHWM");
  for (int i = 0; i < kAttackers; ++i) {
    EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << i << ": " << statuses[i].error_message();
    EXPECT_LT(seconds_taken[i], 5.0)
        << "attacker " << i << " was refused only after " << seconds_taken[i] << " s";
  }
  std::cout << kAttackers << " unauthenticated AddItems of " << kRequestBytes / kMiB
            << " MiB: server peak RSS " << peak_before / kMiB << " -> " << peak_after / kMiB
            << " MiB; victim p99 " << p99 << " ms over " << victim.calls() << " queries"
            << std::endl;
  EXPECT_LT(peak_after - peak_before, kMaxGrowthBytes);
  EXPECT_TRUE(victim.errors().empty()) << victim.errors().front();
  EXPECT_LT(p99, 50.0);
}

TEST_F(AttackTest, PartialMessagesWithoutTokensAreCutAndHoldNoMemory) {
  // The attack: declare a 510 MiB message, send all the server lets through, never finish.
  constexpr int kConnections = 5;
  constexpr int kStreamsPerConnection = 4;
  constexpr uint32_t kAnnounced = 510 * kMiB;
  constexpr uint64_t kSendAtMost = 96 * kMiB;  // per stream; bounds the test's time
  const uint64_t peak_before = Status(pid(), "VmHWM");
  VictimClient victim(client_.get());
  std::vector<std::unique_ptr<RawHttp2Connection>> connections;
  std::vector<std::vector<uint32_t>> streams(kConnections);
  uint64_t accepted = 0;
  uint64_t largest_per_stream = 0;
  int64_t largest_window = 0;
  const Clock::time_point start = Clock::now();
  for (int c = 0; c < kConnections; ++c) {
    connections.push_back(ConnectRaw(true));
    streams[c] = OpenStreams(connections.back().get(), kStreamsPerConnection);
    for (uint32_t stream : streams[c]) {
      const uint64_t sent =
          connections.back()->SendMessageBody(stream, kAnnounced, kSendAtMost, seconds(3));
      accepted += sent;
      largest_per_stream = std::max(largest_per_stream, sent);
    }
    largest_window = std::max(largest_window, connections.back()->largest_initial_window());
  }
  for (auto& connection : connections) connection->Pump(milliseconds(500));
  const double refused_within = std::chrono::duration<double>(Clock::now() - start).count();
  const uint64_t peak_after = Status(pid(), "VmHWM");
  for (int c = 0; c < kConnections; ++c) {
    for (uint32_t stream : streams[c]) {
      EXPECT_TRUE(connections[c]->StreamEnded(stream))
          << "connection " << c << " stream " << stream << " is still open";
    }
  }
  const double p99 = victim.P99Ms();
  std::cout << kConnections * kStreamsPerConnection << " partial " << kAnnounced / kMiB
            << " MiB messages without a token: " << accepted / kMiB
            << " MiB accepted by the server in all (at most " << largest_per_stream / 1024
            << " KiB a stream, initial window " << largest_window / 1024
            << " KiB), every stream ended within " << refused_within << " s; server peak RSS "
            << peak_before / kMiB << " -> " << peak_after / kMiB << " MiB; victim p99 " << p99
            << " ms" << std::endl;
  // A refused stream costs at most its flow-control window: the server never opens it wider
  // for the message it announced (the old server did, up to the whole 510 MiB).
  EXPECT_LE(largest_per_stream, static_cast<uint64_t>(largest_window))
      << "a stream without a token sent more than the initial window of " << largest_window;
  EXPECT_LT(peak_after - peak_before, kMaxGrowthBytes);
  EXPECT_LT(p99, 50.0);
  // Then the connections are idle: the server closes each within the idle timeout.
  const Clock::time_point idle_from = Clock::now();
  for (auto& connection : connections) {
    const auto left = seconds(kIdleSeconds + 5) - (Clock::now() - idle_from);
    connection->Pump(std::chrono::duration_cast<milliseconds>(std::max(left, Clock::duration(0))));
    EXPECT_TRUE(connection->Closed())
        << "a connection was left open " << kIdleSeconds + 5 << " s after its last stream";
  }
}

TEST_F(AttackTest, HeaderOnlyStreamsAreRefusedAndTheirConnectionsClosedWhenIdle) {
  constexpr int kConnections = 40;
  constexpr int kStreamsPerConnection = 100;
  const uint64_t peak_before = Status(pid(), "VmHWM");
  VictimClient victim(client_.get());
  std::vector<std::unique_ptr<RawHttp2Connection>> connections;
  const Clock::time_point start = Clock::now();
  for (int c = 0; c < kConnections; ++c) {
    connections.push_back(ConnectRaw(true));
    OpenStreams(connections.back().get(), kStreamsPerConnection);
  }
  size_t ended = 0;
  for (auto& connection : connections) {
    connection->Pump(milliseconds(200));
    ended += connection->streams_ended();
  }
  const double p99 = victim.P99Ms();
  std::cout << kConnections * kStreamsPerConnection << " header-only streams on " << kConnections
            << " connections: " << ended << " ended by the server within "
            << std::chrono::duration<double>(Clock::now() - start).count() << " s; server peak RSS "
            << peak_before / kMiB << " -> " << Status(pid(), "VmHWM") / kMiB << " MiB; victim p99 "
            << p99 << " ms" << std::endl;
  EXPECT_EQ(ended, size_t{kConnections} * kStreamsPerConnection);
  EXPECT_LT(Status(pid(), "VmHWM") - peak_before, kMaxGrowthBytes);
  EXPECT_LT(p99, 50.0);
  // No stream left: every connection is idle and closed within the idle timeout (+ slack).
  const Clock::time_point idle_from = Clock::now();
  size_t closed = 0;
  for (auto& connection : connections) {
    const auto left = seconds(kIdleSeconds + 5) - (Clock::now() - idle_from);
    connection->Pump(std::chrono::duration_cast<milliseconds>(std::max(left, Clock::duration(0))));
    closed += connection->Closed() ? 1 : 0;
  }
  EXPECT_EQ(closed, connections.size())
      << "connections still open " << kIdleSeconds + 5 << " s after their last stream";
}

TEST_F(AttackTest, SilentConnectionsAreClosedAfterTheHandshakeTimeout) {
  constexpr int kConnections = 50;
  std::vector<std::unique_ptr<RawHttp2Connection>> connections;
  for (int c = 0; c < kConnections; ++c) connections.push_back(ConnectRaw(false));
  const Clock::time_point start = Clock::now();
  for (auto& connection : connections) {
    const auto left = seconds(kHandshakeSeconds + 3) - (Clock::now() - start);
    connection->Pump(std::chrono::duration_cast<milliseconds>(std::max(left, Clock::duration(0))));
    EXPECT_TRUE(connection->Closed()) << "a connection that never spoke HTTP/2 is still open "
                                      << kHandshakeSeconds + 3 << " s later";
  }
}

TEST_F(AttackTest, AStalledAuthenticatedRequestIsCutByTheConnectionAge) {
  std::unique_ptr<RawHttp2Connection> connection = ConnectRaw(true);
  absl::StatusOr<uint32_t> stream =
      connection->OpenStream(kAddItems, {{"authorization", "Bearer " + Token(kAddItems)}});
  ASSERT_TRUE(stream.ok()) << stream.status();
  const Clock::time_point start = Clock::now();
  const uint64_t sent = connection->SendMessageBody(*stream, 8 * kMiB, 4 * kMiB, seconds(3));
  EXPECT_GT(sent, 0u);
  EXPECT_FALSE(connection->StreamEnded(*stream)) << "an authenticated stream was refused";
  connection->Pump(seconds(kAgeSeconds + kCallSeconds + 5));
  const double cut_after = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(connection->StreamEnded(*stream) || connection->Closed())
      << "a stalled request still holds its stream after " << cut_after << " s";
  std::cout << "stalled authenticated request (" << sent / kMiB << " of 8 MiB sent) cut after "
            << cut_after << " s (age " << kAgeSeconds << " s + grace " << kCallSeconds << " s)"
            << std::endl;
}

// An AddItems request of 33 MiB for index "dim8" (dimension 8) that is refused only after it
// has been received and parsed: 8,000,003 floats are not a whole number of vectors.
std::string ParsedThenRefusedAddItems() {
  v1::AddItemsRequest request;
  request.set_name("dim8");
  request.mutable_vectors()->Resize(8 * 1'000'000 + 3, 0.5f);
  for (int i = 0; i < 1'000'000; ++i) request.add_ids(i);
  return request.SerializeAsString();
}

TEST_F(AttackTest, MemoryOfABurstOfLargeRequestsIsReturnedAfterIt) {
  // Authenticated, fully received and parsed, then refused by validation: the server held
  // each message in full.
  ASSERT_TRUE(client_->CreateIndex("dim8", Space::kL2, 8).ok());
  ASSERT_TRUE(client_->InitIndex("dim8", {.max_elements = 10}).ok());
  const std::string bytes = ParsedThenRefusedAddItems();
  const uint64_t rss_before = Status(pid(), "VmRSS");
  constexpr int kSenders = 8;
  constexpr int kRounds = 2;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<grpc::Status> statuses = SendConcurrently(bytes, kSenders);
    for (const grpc::Status& status : statuses) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    }
  }
  const uint64_t rss_burst = Status(pid(), "VmRSS");
  std::this_thread::sleep_for(seconds(3));
  const uint64_t rss_after = Status(pid(), "VmRSS");
  std::cout << kRounds << " x " << kSenders << " authenticated requests of " << bytes.size() / kMiB
            << " MiB: server RSS " << rss_before / kMiB << " MiB before, " << rss_burst / kMiB
            << " right after, " << rss_after / kMiB << " 3 s later" << std::endl;
  EXPECT_LT(rss_after, rss_before + kReturnedWithinBytes);
}

// The same server with --max-message-mb 64 and --max-transport-memory-mb 64.
class SmallTransportMemoryTest : public AttackTest {
 protected:
  std::vector<std::string> MoreEnvironment() const override {
    return {"LUXDB_MAX_MESSAGE_MB=64", absl::StrCat("LUXDB_MAX_TRANSPORT_MEMORY_MB=", kQuotaMb)};
  }
  static constexpr uint64_t kQuotaMb = 64;
};

TEST_F(SmallTransportMemoryTest, RequestsBeyondTheTransportMemoryAreCancelled) {
  ASSERT_TRUE(client_->CreateIndex("dim8", Space::kL2, 8).ok());
  ASSERT_TRUE(client_->InitIndex("dim8", {.max_elements = 10}).ok());
  const std::string bytes = ParsedThenRefusedAddItems();
  const uint64_t peak_before = Status(pid(), "VmHWM");
  constexpr int kSenders = 8;  // 8 x 33 MiB at once: four times the quota
  std::vector<grpc::Status> statuses = SendConcurrently(bytes, kSenders);
  int parsed = 0, cancelled = 0;
  for (const grpc::Status& status : statuses) {
    parsed += status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 1 : 0;
    cancelled += status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? 1 : 0;
  }
  const uint64_t peak_after = Status(pid(), "VmHWM");
  std::cout << kSenders << " concurrent requests of " << bytes.size() / kMiB << " MiB against "
            << kQuotaMb << " MiB of transport memory: " << parsed << " received, " << cancelled
            << " cancelled; peak RSS " << peak_before / kMiB << " -> " << peak_after / kMiB
            << " MiB" << std::endl;
  EXPECT_EQ(parsed + cancelled, kSenders);
  EXPECT_GE(cancelled, kSenders / 2);
  // The quota is gRPC's soft limit: past it streams are cancelled, not allocations refused, so
  // the peak overshoots it (about 2x here); without it the peak was several times higher.
  EXPECT_LT(peak_after - peak_before, 3 * (kQuotaMb << 20));
  // The server goes on serving.
  const std::vector<float> query(kDim, 0.5f);
  EXPECT_TRUE(client_->QueryIndex("victim", query, 1).ok());
}

TEST_F(AttackTest, ACallWithTwoAuthorizationHeadersIsRefused) {
  const std::string request = LargeAddItems(1024);
  const grpc::Status status =
      SendRaw(Channel(7), request, {"Bearer " + Token(kAddItems), "Bearer " + Token(kAddItems)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(status.error_message().find("2 'authorization' headers"), std::string::npos)
      << status.error_message();
  // One valid header alone is accepted.
  const grpc::Status one = SendRaw(Channel(8), request, {"Bearer " + Token(kAddItems)});
  EXPECT_TRUE(one.ok()) << one.error_message();
}

TEST_F(AttackTest, ASecondServerOnAPortInUseExitsAndTheFirstKeepsServing) {
  TempDir other;
  const std::string log = other.path() + "/second.log";
  const std::string command =
      absl::StrCat("LUXDB_SECRET=x KDF_ITERATIONS=1000 timeout 30 '", binary_, "' '", other.path(),
                   "/data' --host 127.0.0.1 --port ", server_->port(), " >'", log, "' 2>&1");
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(WEXITSTATUS(status), 1) << text.str();
  EXPECT_NE(text.str().find("address in use"), std::string::npos) << text.str();
  // The first server still answers, with its own index.
  absl::StatusOr<std::vector<IndexInfo>> indexes = client_->ListIndexes();
  ASSERT_TRUE(indexes.ok()) << indexes.status();
  ASSERT_EQ(indexes->size(), 1u);
  EXPECT_EQ(indexes->front().name, "victim");
}

}  // namespace
}  // namespace luxdb::testing
