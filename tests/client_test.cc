// Tests of the C++ client: luxdb::Client against a real LuxServer in this process (every
// method's success path, errors arriving with the server's code and message, the secret proved
// at Connect, deadlines), and the pieces of the `luxdb` tool that are a library: the vector
// file readers, the IDS parser, the number and JSON formatting and the progress line.
#include "luxdb/client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cli/command_line.h"
#include "cli/id_list.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/vector_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace luxdb {
namespace {

using ::luxdb::testing::Iota;
using ::luxdb::testing::Rows;
using ::luxdb::testing::TempDir;
using ::luxdb::testing::TestServer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::FloatEq;
using ::testing::HasSubstr;
using ::testing::Pointwise;

// Deterministic vectors: row i of dimension `dim`, distinct per row.

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestServer>(dir_.path());
    absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(server_->ConnectOptions());
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
  }

  // A created and initialised index.
  void MakeIndex(const std::string& name, Space space, uint32_t dim, uint64_t max_elements) {
    ASSERT_TRUE(db_->CreateIndex(name, space, dim).ok());
    ASSERT_TRUE(db_->InitIndex(name, {.max_elements = max_elements}).ok());
  }

  TempDir dir_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> db_;
};

// ---------------------------------------------------------------------------------------------
// Connect

TEST_F(ClientTest, ConnectWithAWrongSecretFailsAtConnectWithUnauthenticated) {
  ConnectOptions options = server_->ConnectOptions();
  options.secret = "not-the-secret";
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnauthenticated) << db.status();
  EXPECT_THAT(db.status().message(),
              AllOf(HasSubstr(server_->address()), HasSubstr("refused the secret"),
                    HasSubstr("bad signature")));
}

TEST_F(ClientTest, ConnectWithOtherKdfIterationsFailsAtConnect) {
  ConnectOptions options = server_->ConnectOptions();
  options.kdf.iterations += 1;
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnauthenticated) << db.status();
}

TEST_F(ClientTest, ConnectWithoutASecretIsInvalidArgument) {
  ConnectOptions options = server_->ConnectOptions();
  options.secret.clear();
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument) << db.status();
  EXPECT_THAT(db.status().message(), HasSubstr("no secret"));
}

TEST_F(ClientTest, ConnectWithAnUnreadableTlsCaIsNotFound) {
  ConnectOptions options = server_->ConnectOptions();
  options.tls_ca_file = dir_.path() + "/no-such-ca.pem";
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kNotFound) << db.status();
  EXPECT_THAT(db.status().message(), HasSubstr("no-such-ca.pem"));
}

// A loopback TCP port that accepts connections and never answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 8), 0);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(ClientTest, ConnectToAServerThatNeverAnswersGivesUpAfterConnectTimeout) {
  SilentListener silent;
  ConnectOptions options = server_->ConnectOptions();
  options.port = silent.port();
  options.connect_timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDeadlineExceeded) << db.status();
  EXPECT_THAT(db.status().message(), HasSubstr("no answer within 300 ms"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ClientTest, ConnectToAClosedPortIsUnavailableNamingTheAddress) {
  int port = 0;
  {
    SilentListener closed_soon;  // a port that was free a moment ago
    port = closed_soon.port();
  }
  ConnectOptions options = server_->ConnectOptions();
  options.port = port;
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
  EXPECT_THAT(db.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
}

// TLS: a throw-away CA and a server certificate for 127.0.0.1, made by the openssl command.
TEST(ClientTlsTest, ConnectVerifiesTheServerAgainstTheCaAtConnect) {
  TempDir certs;
  const std::string d = certs.path();
  std::ofstream(d + "/server.ext") << "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  for (const std::string& command : {
           absl::StrCat("openssl req -x509 ", ec, " -keyout ca.key -out ca.pem -days 2 ",
                        "-subj '/CN=LuxDB client test CA'"),
           absl::StrCat("openssl req -x509 ", ec, " -keyout other.key -out other.pem -days 2 ",
                        "-subj '/CN=Unrelated CA'"),
           absl::StrCat("openssl req -new ", ec, " -keyout server.key -out server.csr ",
                        "-subj '/CN=127.0.0.1'"),
           std::string("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
                       "-CAcreateserial -out server.pem -days 2 -extfile server.ext"),
       }) {
    ASSERT_EQ(std::system(absl::StrCat("cd '", d, "' && ", command, " >>openssl.log 2>&1").c_str()),
              0)
        << command;
  }
  TempDir data;
  server::Options options = TestServer::DefaultOptions();
  options.tls_cert = d + "/server.pem";
  options.tls_key = d + "/server.key";
  TestServer server(data.path(), options);

  ConnectOptions trusting = server.ConnectOptions();
  trusting.tls_ca_file = d + "/ca.pem";
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(trusting);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE((*db)->CreateIndex("over-tls", Space::kL2, 2).ok());

  // A client trusting another CA, and a plaintext one, fail at Connect, not later.
  ConnectOptions distrustful = trusting;
  distrustful.tls_ca_file = d + "/other.pem";
  distrustful.connect_timeout = std::chrono::seconds(5);
  EXPECT_EQ(Client::Connect(distrustful).status().code(), absl::StatusCode::kUnavailable);
  ConnectOptions plaintext = server.ConnectOptions();
  plaintext.connect_timeout = std::chrono::seconds(5);
  absl::Status refused = Client::Connect(plaintext).status();
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.message(), HasSubstr(server.address()));
}

// ---------------------------------------------------------------------------------------------
// Every method's success path

TEST_F(ClientTest, CreateInitDescribeListExistsAndDelete) {
  ASSERT_TRUE(db_->CreateIndex("b-docs", Space::kCosine, 8).ok());
  ASSERT_TRUE(db_->CreateIndex("a-docs", Space::kIp, 3).ok());
  EXPECT_EQ(db_->IndexExists("b-docs").value_or(false), true);
  EXPECT_EQ(db_->IndexExists("nope").value_or(true), false);

  absl::StatusOr<IndexInfo> fresh = db_->DescribeIndex("b-docs");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->name, "b-docs");
  EXPECT_EQ(fresh->space, Space::kCosine);
  EXPECT_EQ(fresh->dim, 8u);
  EXPECT_FALSE(fresh->initialized);

  ASSERT_TRUE(db_->InitIndex("b-docs", {.max_elements = 500, .ef_construction = 50, .m = 8}).ok());
  absl::StatusOr<IndexInfo> info = db_->DescribeIndex("b-docs");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->initialized);
  EXPECT_EQ(info->max_elements, 500u);
  EXPECT_EQ(info->ef_construction, 50u);
  EXPECT_EQ(info->m, 8u);
  EXPECT_EQ(info->element_count, 0u);
  EXPECT_EQ(info->tombstones, 0u);
  EXPECT_GT(info->memory_bytes, 0u);
  EXPECT_FALSE(info->compacting);
  EXPECT_EQ(fresh->memory_bytes, 0u);

  absl::StatusOr<std::vector<IndexInfo>> all = db_->ListIndexes();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "a-docs");
  EXPECT_EQ((*all)[0].space, Space::kIp);
  EXPECT_EQ((*all)[0].dim, 3u);
  EXPECT_EQ((*all)[1].name, "b-docs");
  EXPECT_EQ((*all)[1].m, 8u);

  ASSERT_TRUE(db_->DeleteIndex("b-docs").ok());
  EXPECT_EQ(db_->IndexExists("b-docs").value_or(true), false);
  EXPECT_EQ(db_->ListIndexes()->size(), 1u);
}

TEST_F(ClientTest, AddQueryGetIdsAndGetElements) {
  constexpr uint32_t kDim = 8;
  constexpr size_t kRows = 300;
  MakeIndex("docs", Space::kL2, kDim, 1000);
  const std::vector<float> vectors = Rows(kRows, kDim);
  absl::StatusOr<uint64_t> added = db_->AddItems("docs", vectors, Iota(kRows, 1000));
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, kRows);
  EXPECT_EQ(db_->DescribeIndex("docs")->element_count, kRows);

  // Each of the first 50 rows finds itself, at distance 0, then something farther.
  std::span<const float> queries(vectors.data(), 50 * kDim);
  absl::StatusOr<QueryResult> result = db_->QueryIndex("docs", queries, 5, /*ef=*/100);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->k, 5u);
  ASSERT_EQ(result->rows(), 50u);
  for (size_t row = 0; row < 50; ++row) {
    EXPECT_EQ(result->row_ids(row)[0], 1000 + row);
    EXPECT_FLOAT_EQ(result->row_distances(row)[0], 0.0f);
    EXPECT_TRUE(
        std::is_sorted(result->row_distances(row).begin(), result->row_distances(row).end()));
  }

  absl::StatusOr<std::vector<uint64_t>> ids = db_->GetIds("docs");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, Iota(kRows, 1000));

  const std::vector<uint64_t> wanted = {1007, 1000, 1299};
  absl::StatusOr<Vectors> back = db_->GetElements("docs", wanted);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dim, kDim);
  ASSERT_EQ(back->rows(), 3u);
  std::span<const float> all(vectors);
  EXPECT_THAT(back->row(0), ElementsAreArray(all.subspan(7 * kDim, kDim)));
  EXPECT_THAT(back->row(1), ElementsAreArray(all.subspan(0, kDim)));
  EXPECT_THAT(back->row(2), ElementsAreArray(all.subspan(299 * kDim, kDim)));
}

// Above 2 MiB of query vectors QueryIndex sends parts of about 1 MiB, three at once: the
// answer is the one of one call, row for row, and a refused row is named by its place in the
// whole call.
TEST_F(ClientTest, LargeQueryGoesInPartsWithOneCallsAnswerAndErrors) {
  constexpr uint32_t kDim = 16;
  constexpr size_t kRows = 2000;
  MakeIndex("docs", Space::kL2, kDim, kRows);
  const std::vector<float> vectors = Rows(kRows, kDim);
  ASSERT_TRUE(db_->AddItems("docs", vectors, Iota(kRows)).ok());
  // 40,000 queries of 16 floats: 2.4 MiB, 3 parts of 16,384 rows.
  std::vector<float> queries;
  for (int copy = 0; copy < 20; ++copy)
    queries.insert(queries.end(), vectors.begin(), vectors.end());
  absl::StatusOr<QueryResult> whole = db_->QueryIndex("docs", queries, 2, 30);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->rows(), 20 * kRows);
  absl::StatusOr<QueryResult> one = db_->QueryIndex("docs", vectors, 2, 30);
  ASSERT_TRUE(one.ok()) << one.status();
  for (size_t copy = 0; copy < 20; ++copy) {
    EXPECT_TRUE(std::equal(one->ids.begin(), one->ids.end(), whole->ids.begin() + copy * kRows * 2))
        << "copy " << copy;
    EXPECT_TRUE(std::equal(one->distances.begin(), one->distances.end(),
                           whole->distances.begin() + copy * kRows * 2))
        << "copy " << copy;
  }
  queries[35'000 * kDim + 3] = std::numeric_limits<float>::quiet_NaN();
  absl::Status refused = db_->QueryIndex("docs", queries, 2, 30).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("query vector 35000 "));
  EXPECT_EQ(db_->QueryIndex("nowhere", queries, 2).status().code(), absl::StatusCode::kNotFound);
}

// A stream answers every query message as QueryIndex would, in the order sent, while a second
// thread is still sending; messages of one row and of many rows (answered off gRPC's thread)
// mix in one stream.
TEST_F(ClientTest, QueryStreamAnswersEveryMessageInOrderAsQueryIndexWould) {
  constexpr uint32_t kDim = 8;
  constexpr size_t kRows = 600;
  MakeIndex("docs", Space::kL2, kDim, kRows);
  const std::vector<float> vectors = Rows(kRows, kDim);
  ASSERT_TRUE(db_->AddItems("docs", vectors, Iota(kRows)).ok());
  // Message i asks for rows [i, i + size): mostly one row, every 10th 520 rows (4,160 floats,
  // above the server's inline limit).
  std::vector<std::pair<size_t, size_t>> messages;
  for (size_t i = 0; i < 60; ++i) messages.push_back({i, i % 10 == 9 ? 520 : 1});
  const auto rows_of = [&](std::pair<size_t, size_t> m) {
    return std::span<const float>(vectors).subspan(m.first * kDim, m.second * kDim);
  };

  std::unique_ptr<QueryStream> stream = db_->OpenQueryStream("docs", 3, /*ef=*/50);
  std::thread sender([&] {
    for (const auto& m : messages) {
      if (!stream->Send(rows_of(m))) return;
    }
    stream->CloseSend();
  });
  std::vector<QueryResult> answers;
  for (absl::StatusOr<QueryResult> r = stream->Receive(); r.ok(); r = stream->Receive()) {
    answers.push_back(*std::move(r));
  }
  sender.join();
  EXPECT_TRUE(stream->Finish().ok()) << stream->Finish();
  ASSERT_EQ(answers.size(), messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    absl::StatusOr<QueryResult> unary = db_->QueryIndex("docs", rows_of(messages[i]), 3, 50);
    ASSERT_TRUE(unary.ok()) << unary.status();
    EXPECT_EQ(answers[i].k, 3u);
    ASSERT_EQ(answers[i].rows(), messages[i].second) << "message " << i;
    EXPECT_EQ(answers[i].row_ids(0)[0], messages[i].first) << "message " << i;
    EXPECT_EQ(answers[i].ids, unary->ids) << "message " << i;
    EXPECT_EQ(answers[i].distances, unary->distances) << "message " << i;
  }
}

// The first failing query ends the stream with QueryIndex's error for it; those before it
// were answered, and a stream that closes at once ends OK with no answers.
TEST_F(ClientTest, QueryStreamEndsAtTheFirstFailingQueryWithQueryIndexsError) {
  MakeIndex("docs", Space::kL2, 3, 10);
  ASSERT_TRUE(db_->AddItems("docs", Rows(4, 3), Iota(4)).ok());
  std::unique_ptr<QueryStream> stream = db_->OpenQueryStream("docs", 2);
  const std::vector<float> good = Rows(1, 3), wrong_dimension = {1, 2};
  ASSERT_TRUE(stream->Send(good));
  ASSERT_TRUE(stream->Send(good));
  ASSERT_TRUE(stream->Send(wrong_dimension));
  stream->Send(good);  // may already fail: the stream may have ended
  stream->CloseSend();
  EXPECT_TRUE(stream->Receive().ok());
  EXPECT_TRUE(stream->Receive().ok());
  absl::Status third = stream->Receive().status();
  EXPECT_EQ(third.code(), absl::StatusCode::kInvalidArgument) << third;
  EXPECT_EQ(third.message(), db_->QueryIndex("docs", wrong_dimension, 2).status().message());
  EXPECT_EQ(stream->Finish(), third);

  std::unique_ptr<QueryStream> unknown = db_->OpenQueryStream("nowhere", 1);
  ASSERT_TRUE(unknown->Send(good));
  absl::Status absent = unknown->Receive().status();
  EXPECT_EQ(absent.code(), absl::StatusCode::kNotFound) << absent;
  EXPECT_THAT(absent.message(), HasSubstr("'nowhere'"));

  std::unique_ptr<QueryStream> empty = db_->OpenQueryStream("docs", 1);
  empty->CloseSend();
  EXPECT_EQ(empty->Receive().status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(empty->Finish().ok());
}

// A stream given up on with answers unread is cancelled rather than waited for, and the
// server goes on serving.
TEST_F(ClientTest, QueryStreamFinishedEarlyIsCancelled) {
  MakeIndex("docs", Space::kL2, 3, 10);
  ASSERT_TRUE(db_->AddItems("docs", Rows(4, 3), Iota(4)).ok());
  {
    std::unique_ptr<QueryStream> stream = db_->OpenQueryStream("docs", 1);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(stream->Send(Rows(1, 3)));
    EXPECT_TRUE(stream->Receive().ok());
    absl::Status ended = stream->Finish();
    EXPECT_TRUE(ended.ok() || absl::IsCancelled(ended)) << ended;
  }
  std::unique_ptr<QueryStream> dropped = db_->OpenQueryStream("docs", 1);
  ASSERT_TRUE(dropped->Send(Rows(1, 3)));
  dropped.reset();  // the destructor finishes it
  EXPECT_TRUE(db_->QueryIndex("docs", Rows(1, 3), 1).ok());
}

// A stream its client keeps open does not hold the server's shutdown until the grace period
// (10 s here) ends: it is ended at once, with UNAVAILABLE saying why.
TEST_F(ClientTest, ShutdownEndsAnIdleQueryStreamAtOnceWithUnavailable) {
  MakeIndex("docs", Space::kL2, 3, 10);
  ASSERT_TRUE(db_->AddItems("docs", Rows(4, 3), Iota(4)).ok());
  std::unique_ptr<QueryStream> stream = db_->OpenQueryStream("docs", 1);
  ASSERT_TRUE(stream->Send(Rows(1, 3)));
  ASSERT_TRUE(stream->Receive().ok());
  const auto started = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  absl::Status ended = stream->Receive().status();
  EXPECT_EQ(ended.code(), absl::StatusCode::kUnavailable) << ended;
  EXPECT_THAT(ended.message(), HasSubstr("shutting down"));
}

// The client's deadline covers the whole stream.
TEST_F(ClientTest, QueryStreamDeadlineCoversTheWholeStream) {
  MakeIndex("docs", Space::kL2, 3, 10);
  ASSERT_TRUE(db_->AddItems("docs", Rows(4, 3), Iota(4)).ok());
  std::unique_ptr<QueryStream> stream =
      db_->OpenQueryStream("docs", 1, 0, {.timeout = std::chrono::milliseconds(300)});
  ASSERT_TRUE(stream->Send(Rows(1, 3)));
  EXPECT_TRUE(stream->Receive().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  stream->Send(Rows(1, 3));
  absl::Status late = stream->Receive().status();
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded) << late;
}

// Behind a 1 MiB message cap a reply holds 104,851 ids: GetIds pages through 210,000 in three
// calls, and GetIdsPage fetches any one page.
TEST(ClientPagingTest, GetIdsPagesThroughMoreIdsThanOneReplyHolds) {
  TempDir dir;
  server::Options options = TestServer::DefaultOptions();
  options.max_message_mb = 1;
  TestServer server(dir.path(), options);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(server.ConnectOptions());
  ASSERT_TRUE(db.ok()) << db.status();
  constexpr size_t kFit = 104'851;
  constexpr size_t kCount = 210'000;
  ASSERT_TRUE((*db)->CreateIndex("many", Space::kL2, 1).ok());
  ASSERT_TRUE(
      (*db)->InitIndex("many", {.max_elements = kCount, .ef_construction = 8, .m = 4}).ok());
  std::vector<uint64_t> live;
  for (size_t first = 0; first < kCount; first += 50'000) {
    const size_t n = std::min<size_t>(50'000, kCount - first);
    std::vector<float> vectors(n);
    std::vector<uint64_t> ids(n);
    for (size_t i = 0; i < n; ++i) {
      vectors[i] = static_cast<float>(first + i);
      ids[i] = (first + i) * 3 + 1;  // not contiguous: 1, 4, 7, ...
    }
    ASSERT_TRUE((*db)->AddItems("many", vectors, ids).ok());
    live.insert(live.end(), ids.begin(), ids.end());
  }
  const std::vector<uint64_t> deleted = {1, 4000, 300'001, live.back()};
  ASSERT_TRUE((*db)->DeleteItems("many", deleted).ok());
  std::erase_if(live, [&](uint64_t id) {
    return std::find(deleted.begin(), deleted.end(), id) != deleted.end();
  });

  absl::StatusOr<std::vector<uint64_t>> all = (*db)->GetIds("many");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), live.size());
  EXPECT_TRUE(*all == live);

  absl::StatusOr<IdsPage> first = (*db)->GetIdsPage("many");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->ids.size(), kFit);
  EXPECT_TRUE(std::equal(first->ids.begin(), first->ids.end(), live.begin()));
  EXPECT_EQ(first->next_start_after, live[kFit - 1]);
  absl::StatusOr<IdsPage> some = (*db)->GetIdsPage("many", first->next_start_after, 3);
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_THAT(some->ids, ElementsAre(live[kFit], live[kFit + 1], live[kFit + 2]));
  EXPECT_EQ(some->next_start_after, live[kFit + 2]);
  absl::StatusOr<IdsPage> last = (*db)->GetIdsPage("many", live[live.size() - 2], 3);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_THAT(last->ids, ElementsAre(live.back()));
  EXPECT_EQ(last->next_start_after, std::nullopt);
  absl::StatusOr<IdsPage> beyond = (*db)->GetIdsPage("many", kMissingId);
  ASSERT_TRUE(beyond.ok()) << beyond.status();
  EXPECT_TRUE(beyond->ids.empty());
  EXPECT_EQ(beyond->next_start_after, std::nullopt);

  absl::Status too_big = (*db)->GetIdsPage("many", std::nullopt, 10'000'001).status();
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument) << too_big;
  EXPECT_THAT(too_big.message(),
              AllOf(HasSubstr("'many'"), HasSubstr("10000001"), HasSubstr("at most 10000000")));
}

TEST_F(ClientTest, QueryPadsMissingSlotsWithTheDocumentedValues) {
  MakeIndex("small", Space::kL2, 2, 10);
  const std::vector<float> vectors = {0, 0, 1, 0};
  ASSERT_TRUE(db_->AddItems("small", vectors, Iota(2, 7)).ok());
  absl::StatusOr<QueryResult> result = db_->QueryIndex("small", std::vector<float>{0, 0}, 4);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->ids, ElementsAre(7, 8, kMissingId, kMissingId));
  EXPECT_EQ(result->distances[0], 0.0f);
  EXPECT_EQ(result->distances[1], 1.0f);
  EXPECT_EQ(result->distances[2], kMissingDistance);
  EXPECT_TRUE(std::isinf(result->distances[3]));
}

TEST_F(ClientTest, CosineIndexesReturnNormalisedVectors) {
  MakeIndex("cos", Space::kCosine, 2, 10);
  ASSERT_TRUE(db_->AddItems("cos", std::vector<float>{3, 4}, std::vector<uint64_t>{1}).ok());
  absl::StatusOr<Vectors> back = db_->GetElements("cos", std::vector<uint64_t>{1});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(back->data, Pointwise(FloatEq(), std::vector<float>{0.6f, 0.8f}));
}

TEST_F(ClientTest, SetEfDeleteItemsAndResize) {
  MakeIndex("docs", Space::kL2, 4, 20);
  ASSERT_TRUE(db_->AddItems("docs", Rows(10, 4), Iota(10)).ok());

  ASSERT_TRUE(db_->SetEf("docs", 77).ok());
  EXPECT_EQ(db_->DescribeIndex("docs")->ef, 77u);

  absl::StatusOr<uint64_t> deleted = db_->DeleteItems("docs", std::vector<uint64_t>{2, 3});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2u);
  // Deleting them again deletes nothing new.
  EXPECT_EQ(db_->DeleteItems("docs", std::vector<uint64_t>{2, 3}).value_or(99), 0u);
  EXPECT_THAT(*db_->GetIds("docs"), ElementsAre(0, 1, 4, 5, 6, 7, 8, 9));
  absl::StatusOr<IndexInfo> info = db_->DescribeIndex("docs");
  EXPECT_EQ(info->element_count, 8u);
  EXPECT_EQ(info->deleted_count, 2u);

  ASSERT_TRUE(db_->ResizeIndex("docs", 5000).ok());
  EXPECT_EQ(db_->DescribeIndex("docs")->max_elements, 5000u);
}

TEST_F(ClientTest, CompactIndexRemovesTheTombstonesDescribeCounts) {
  MakeIndex("docs", Space::kL2, 4, 50);
  ASSERT_TRUE(db_->AddItems("docs", Rows(20, 4), Iota(20)).ok());
  ASSERT_TRUE(db_->DeleteItems("docs", std::vector<uint64_t>{0, 5, 6}).ok());
  absl::StatusOr<IndexInfo> before = db_->DescribeIndex("docs");
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->tombstones, 3u);
  EXPECT_EQ(before->deleted_count, 3u);
  EXPECT_GT(before->memory_bytes, 0u);

  absl::StatusOr<CompactInfo> compacted = db_->CompactIndex("docs");
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  EXPECT_EQ(compacted->tombstones_removed, 3u);
  EXPECT_EQ(compacted->live, 17u);
  EXPECT_GE(compacted->seconds, 0.0);

  absl::StatusOr<IndexInfo> after = db_->DescribeIndex("docs");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->tombstones, 0u);
  EXPECT_EQ(after->element_count, 17u);
  EXPECT_FALSE(after->compacting);
  EXPECT_EQ(after->memory_bytes, before->memory_bytes);
  EXPECT_EQ(db_->GetIds("docs")->size(), 17u);

  // Refusals keep the server's code and message.
  ASSERT_TRUE(db_->CreateIndex("raw", Space::kL2, 4).ok());
  absl::Status uninitialised = db_->CompactIndex("raw").status();
  EXPECT_EQ(uninitialised.code(), absl::StatusCode::kFailedPrecondition) << uninitialised;
  EXPECT_THAT(uninitialised.message(), HasSubstr("index 'raw' is not initialised"));
}

TEST_F(ClientTest, ManyThreadsShareOneClient) {
  MakeIndex("docs", Space::kL2, 4, 10000);
  std::vector<std::thread> threads;
  std::atomic<int> failures = 0;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int batch = 0; batch < 5; ++batch) {
        const uint64_t first = (t * 5 + batch) * 100;
        if (!db_->AddItems("docs", Rows(100, 4, 1.0f + first), Iota(100, first)).ok()) ++failures;
        if (!db_->QueryIndex("docs", Rows(3, 4), 2).ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(db_->DescribeIndex("docs")->element_count, 2000u);
}

// ---------------------------------------------------------------------------------------------
// Errors: the server's code and message, unchanged

TEST_F(ClientTest, EveryMethodNamingAnUnknownIndexIsNotFoundNamingIt) {
  const std::string name = "missing-index";
  const std::vector<float> one = {1, 2};
  const std::vector<uint64_t> id = {1};
  const std::vector<absl::Status> statuses = {
      db_->InitIndex(name, {.max_elements = 10}),
      db_->DeleteIndex(name),
      db_->DescribeIndex(name).status(),
      db_->SetEf(name, 10),
      db_->AddItems(name, one, id).status(),
      db_->DeleteItems(name, id).status(),
      db_->QueryIndex(name, one, 1).status(),
      db_->ResizeIndex(name, 10),
      db_->GetIds(name).status(),
      db_->GetIdsPage(name).status(),
      db_->GetIdsPage(name, 0, 10).status(),
      db_->GetElements(name, id).status(),
      db_->CompactIndex(name).status(),
  };
  for (size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(statuses[i].code(), absl::StatusCode::kNotFound)
        << "call " << i << ": " << statuses[i];
    EXPECT_EQ(statuses[i].message(), "index 'missing-index' does not exist") << "call " << i;
  }
}

TEST_F(ClientTest, ServerErrorsKeepTheirCodeAndMessage) {
  ASSERT_TRUE(db_->CreateIndex("docs", Space::kL2, 3).ok());
  absl::Status taken = db_->CreateIndex("docs", Space::kIp, 3);
  EXPECT_EQ(taken.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(taken.message(), "index 'docs' already exists");

  absl::Status uninitialised =
      db_->AddItems("docs", std::vector<float>{1, 2, 3}, std::vector<uint64_t>{1}).status();
  EXPECT_EQ(uninitialised.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(uninitialised.message(), HasSubstr("index 'docs' is not initialised"));

  ASSERT_TRUE(db_->InitIndex("docs", {.max_elements = 2}).ok());
  absl::Status twice = db_->InitIndex("docs", {.max_elements = 2});
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(twice.message(), HasSubstr("already initialised"));

  absl::Status short_vector =
      db_->AddItems("docs", std::vector<float>{1, 2}, std::vector<uint64_t>{1}).status();
  EXPECT_EQ(short_vector.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(short_vector.message(), "index 'docs' has dimension 3: 1 ids need 3 floats, got 2");

  absl::Status full = db_->AddItems("docs", Rows(3, 3), std::vector<uint64_t>{1, 2, 3}).status();
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("index 'docs' is full"));

  absl::Status bad_k = db_->QueryIndex("docs", std::vector<float>{1, 2, 3}, 0).status();
  EXPECT_EQ(bad_k.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_k.message(), "k must be between 1 and 10000, got 0 (query of index 'docs')");

  absl::Status absent = db_->GetElements("docs", std::vector<uint64_t>{42}).status();
  EXPECT_EQ(absent.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(absent.message(), HasSubstr("has no item with id 42"));

  ASSERT_TRUE(db_->AddItems("docs", Rows(2, 3), std::vector<uint64_t>{1, 2}).ok());
  absl::Status shrink = db_->ResizeIndex("docs", 1);
  EXPECT_EQ(shrink.code(), absl::StatusCode::kFailedPrecondition) << shrink;

  absl::Status bad_name = db_->CreateIndex("bad name!", Space::kL2, 3);
  EXPECT_EQ(bad_name.code(), absl::StatusCode::kInvalidArgument) << bad_name;
}

TEST_F(ClientTest, CallsFailWithUnavailableOnceTheServerIsGone) {
  server_->Stop();
  absl::Status gone = db_->ListIndexes().status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kUnavailable) << gone;
}

// ---------------------------------------------------------------------------------------------
// Deadlines

TEST_F(ClientTest, PerCallTimeoutEndsASlowCallWithDeadlineExceeded) {
  constexpr uint32_t kDim = 64;
  MakeIndex("slow", Space::kL2, kDim, 4000);
  ASSERT_TRUE(db_->AddItems("slow", Rows(4000, kDim), Iota(4000)).ok());
  const std::vector<float> queries = Rows(4000, kDim, 0.5f);
  // 4,000 queries at k=100, ef=1000 take far longer than a millisecond.
  absl::Status late =
      db_->QueryIndex("slow", queries, 100, 1000, {.timeout = std::chrono::milliseconds(1)})
          .status();
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded) << late;
  // Without the deadline the same call succeeds.
  EXPECT_TRUE(db_->QueryIndex("slow", std::span(queries).subspan(0, kDim), 100, 1000).ok());
}

TEST_F(ClientTest, ConnectOptionsCallTimeoutIsEveryCallsDefault) {
  ConnectOptions options = server_->ConnectOptions();
  options.call_timeout = std::chrono::milliseconds(1);
  options.connect_timeout = std::chrono::seconds(10);
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(options);
  ASSERT_TRUE(db.ok()) << db.status();
  constexpr uint32_t kDim = 64;
  MakeIndex("slow", Space::kL2, kDim, 4000);
  ASSERT_TRUE(db_->AddItems("slow", Rows(4000, kDim), Iota(4000)).ok());
  absl::Status late = (*db)->QueryIndex("slow", Rows(4000, kDim, 0.5f), 100, 1000).status();
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded) << late;
  // A call's own timeout wins over the default.
  EXPECT_TRUE((*db)->ListIndexes({.timeout = std::chrono::seconds(30)}).ok());
}

// ---------------------------------------------------------------------------------------------
// Vector files

class VectorFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    return path;
  }

  // A .npy file as numpy writes it: format 1.0 (2-byte header length) or 2.0 (4-byte), the
  // header padded so that the data starts at a multiple of 64 bytes.
  std::string WriteNpy(const std::string& name, const std::string& descr, const std::string& shape,
                       const std::string& data, bool fortran = false, int version = 1) {
    const size_t prefix = version == 1 ? 10 : 12;
    std::string header =
        absl::StrCat("{'descr': '", descr, "', 'fortran_order': ", fortran ? "True" : "False",
                     ", 'shape': ", shape, ", }");
    while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes = "\x93NUMPY";
    bytes += static_cast<char>(version);
    bytes += '\x00';
    for (size_t i = 0; i < prefix - 8; ++i) bytes += static_cast<char>(header.size() >> (8 * i));
    return Write(name, bytes + header + data);
  }

  template <typename T>
  static std::string Bytes(const std::vector<T>& values) {
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
  }

  static std::string Fvecs(const std::vector<std::vector<float>>& rows) {
    std::string bytes;
    for (const std::vector<float>& row : rows) {
      const int32_t dim = static_cast<int32_t>(row.size());
      bytes.append(reinterpret_cast<const char*>(&dim), sizeof(dim));
      bytes += Bytes(row);
    }
    return bytes;
  }

  TempDir dir_;
};

TEST_F(VectorFileTest, NpyFloat32IsReadAsIs) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6.5f};
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(WriteNpy("a.npy", "<f4", "(2, 3)", Bytes(values)));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->dim, 3u);
  EXPECT_EQ(file->rows, 2u);
  EXPECT_EQ(file->data, values);
}

TEST_F(VectorFileTest, NpyFormatVersion2IsRead) {
  const std::vector<float> values = {1, 2, 3, 4};
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(WriteNpy("v2.npy", "<f4", "(1, 4)", Bytes(values), false, 2));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->data, values);
  file = cli::ReadVectorFile(WriteNpy("v9.npy", "<f4", "(1, 4)", Bytes(values), false, 9));
  EXPECT_THAT(file.status().message(), HasSubstr("has .npy format version 9.0"));
}

TEST_F(VectorFileTest, NpyFloat64IsConvertedToFloat32) {
  const std::vector<double> values = {0.1, -2, 1e-3, 4};
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(WriteNpy("a.npy", "<f8", "(2, 2)", Bytes(values)));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->dim, 2u);
  EXPECT_THAT(file->data, ElementsAre(0.1f, -2.0f, 1e-3f, 4.0f));
}

TEST_F(VectorFileTest, NpyFloat64BeyondFloat32RangeIsRefusedNamingTheRow) {
  const std::vector<double> values = {1, 2, 3, 1e300};
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(WriteNpy("a.npy", "<f8", "(2, 2)", Bytes(values)));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("row 1 component 1"));
}

TEST_F(VectorFileTest, NpyOfOtherDtypesShapesAndOrdersIsRefusedNamingThem) {
  struct Case {
    std::string descr, shape, data;
    bool fortran;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"<i8", "(2, 2)", std::string(32, '\0'), false, "dtype int64 ('<i8')"},
      {"|u1", "(2, 2)", std::string(4, '\0'), false, "dtype uint8 ('|u1')"},
      {"<f2", "(2, 2)", std::string(8, '\0'), false, "dtype float16 ('<f2')"},
      {">f4", "(2, 2)", std::string(16, '\0'), false, "big-endian float32 ('>f4')"},
      {"<f4", "(4,)", std::string(16, '\0'), false, "shape (4,)"},
      {"<f4", "(2, 2, 2)", std::string(32, '\0'), false, "shape (2, 2, 2)"},
      {"<f4", "(2, 3)", std::string(24, '\0'), true, "Fortran-order"},
      {"<f4", "(2, 3)", std::string(20, '\0'), false,
       "truncated or damaged: shape (2, 3) float32 needs 2 x 12 bytes of data, the file holds "
       "20"},
      {"<f4", "(2, 0)", "", false, "shape (2, 0) has dimension 0"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<cli::VectorFile> file =
        cli::ReadVectorFile(WriteNpy("bad.npy", c.descr, c.shape, c.data, c.fortran));
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << c.expected;
    EXPECT_THAT(file.status().message(), AllOf(HasSubstr("bad.npy"), HasSubstr(c.expected)));
  }
  absl::StatusOr<cli::VectorFile> not_npy = cli::ReadVectorFile(Write("x.npy", "hello world!"));
  EXPECT_THAT(not_npy.status().message(), HasSubstr("is not a .npy file"));
}

TEST_F(VectorFileTest, NonFiniteValuesAreRefusedNamingTheRow) {
  const std::vector<float> values = {1, 2, 3, std::numeric_limits<float>::quiet_NaN()};
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(WriteNpy("a.npy", "<f4", "(2, 2)", Bytes(values)));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("row 1 component 1 is nan"));
}

TEST_F(VectorFileTest, FvecsIsRead) {
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(Write("a.fvecs", Fvecs({{1, 2, 3}, {4, 5, 6}, {7, 8, 9}})));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->dim, 3u);
  EXPECT_EQ(file->rows, 3u);
  EXPECT_THAT(file->data, ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 9));
}

TEST_F(VectorFileTest, MalformedFvecsIsRefusedNamingTheProblem) {
  // Same size as two rows of dimension 3, but the second row claims dimension 2.
  std::string ragged = Fvecs({{1, 2, 3}, {4, 5, 6}});
  const int32_t two = 2;
  std::memcpy(ragged.data() + 16, &two, sizeof(two));
  absl::StatusOr<cli::VectorFile> file = cli::ReadVectorFile(Write("r.fvecs", ragged));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("row 1 has dimension 2, row 0 has 3"));

  const std::string whole = Fvecs({{1, 2, 3}, {4, 5, 6}});
  file = cli::ReadVectorFile(Write("t.fvecs", whole.substr(0, whole.size() - 1)));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(),
              HasSubstr("31 bytes are not a whole number of rows of dimension 3"));

  file = cli::ReadVectorFile(Write("e.fvecs", ""));
  EXPECT_THAT(file.status().message(), HasSubstr("is empty"));
}

TEST_F(VectorFileTest, CsvIsReadSkippingBlankLinesAndCarriageReturns) {
  absl::StatusOr<cli::VectorFile> file =
      cli::ReadVectorFile(Write("a.csv", "1, 2,3\r\n\n  -4.5,+5e-1, 6\n7,8,9"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->dim, 3u);
  EXPECT_EQ(file->rows, 3u);
  EXPECT_THAT(file->data, ElementsAre(1, 2, 3, -4.5f, 0.5f, 6, 7, 8, 9));
}

TEST_F(VectorFileTest, MalformedCsvIsRefusedNamingTheLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1,2,3\n4,5\n", "line 2 has 2 values, line 1 has 3"},
      {"1,2\n\n3,x\n", "line 3 column 2: 'x' is not a number"},
      {"a,b\n1,2\n", "line 1 column 1: 'a' is not a number (a CSV file holds no header row)"},
      {"1,,2\n", "line 1 column 2 is empty"},
      {"1,nan\n", "line 1 column 2: 'nan' is not finite"},
      {"1,1e39\n", "line 1 column 2: '1e39' is beyond float32's range"},
      {"\n\n", "holds no vectors"},
  };
  for (const auto& [text, expected] : cases) {
    absl::StatusOr<cli::VectorFile> file = cli::ReadVectorFile(Write("bad.csv", text));
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << expected;
    EXPECT_THAT(file.status().message(), AllOf(HasSubstr("bad.csv"), HasSubstr(expected)));
  }
}

TEST_F(VectorFileTest, UnknownExtensionsAndMissingFilesAreRefused) {
  absl::StatusOr<cli::VectorFile> file = cli::ReadVectorFile(Write("a.bin", "1,2"));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr(".npy, .fvecs and .csv"));
  file = cli::ReadVectorFile(dir_.path() + "/absent.npy");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr("absent.npy"));
}

TEST_F(VectorFileTest, ReadBatchStreamsEveryRowOnceInOrder) {
  std::vector<float> values(7 * 2);
  std::iota(values.begin(), values.end(), 0.0f);
  for (const std::string& path :
       {WriteNpy("s.npy", "<f4", "(7, 2)", Bytes(values)),
        Write("s.fvecs", Fvecs({{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}})),
        Write("s.csv", "0,1\n2,3\n4,5\n6,7\n8,9\n10,11\n12,13\n")}) {
    absl::StatusOr<std::unique_ptr<cli::VectorReader>> reader = cli::VectorReader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->rows(), 7u) << path;
    std::vector<float> all;
    std::vector<size_t> sizes;
    std::vector<float> batch;
    while (true) {
      absl::StatusOr<size_t> n = (*reader)->ReadBatch(3, &batch);
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) break;
      sizes.push_back(*n);
      all.insert(all.end(), batch.begin(), batch.end());
    }
    EXPECT_THAT(sizes, ElementsAre(3, 3, 1)) << path;
    EXPECT_EQ(all, values) << path;
  }
}

// ---------------------------------------------------------------------------------------------
// The tool's small pieces

TEST(CommandLineTest, GlobalOptionsGoAnywhereAndArgumentsAreTyped) {
  absl::StatusOr<cli::Invocation> inv =
      cli::ParseCommandLine({"query", "docs", "--port=9000", "q.npy", "-k", "5", "--secret", "s",
                             "--host", "db.example", "--json", "--ef", "40", "--timeout", "2.5"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->command, "query");
  EXPECT_THAT(inv->operands, ElementsAre("docs", "q.npy"));
  EXPECT_EQ(inv->connect.host, "db.example");
  EXPECT_EQ(inv->connect.port, 9000);
  EXPECT_EQ(inv->connect.secret, "s");
  EXPECT_EQ(inv->connect.call_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(inv->k, 5u);
  EXPECT_EQ(inv->ef, 40u);
  EXPECT_TRUE(inv->json);

  inv = cli::ParseCommandLine({"--secret", "s", "init", "docs", "--max-elements", "100", "-M", "8",
                               "--ef-construction=50"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->init.max_elements, 100u);
  EXPECT_EQ(inv->init.m, 8u);
  EXPECT_EQ(inv->init.ef_construction, 50u);

  inv = cli::ParseCommandLine({"--secret", "s", "delete", "docs", "3,7-9"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_THAT(inv->ids, ElementsAre(3, 7, 8, 9));

  inv = cli::ParseCommandLine({"--secret", "s", "ids", "docs"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->limit, std::nullopt);  // neither: every id, a page at a time
  EXPECT_EQ(inv->start_after, std::nullopt);
  inv = cli::ParseCommandLine(
      {"--secret", "s", "ids", "docs", "--limit", "0", "--start-after=18446744073709551615"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->limit, 0u);  // given: one page
  EXPECT_EQ(inv->start_after, std::numeric_limits<uint64_t>::max());
  inv = cli::ParseCommandLine({"--secret", "s", "ids", "docs", "--start-after", "0"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->limit, std::nullopt);
  EXPECT_EQ(inv->start_after, 0u);

  inv = cli::ParseCommandLine({"--secret", "s", "token", "--method", "luxdb.v1.LuxDB/GetIds"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->method, "/luxdb.v1.LuxDB/GetIds");
}

TEST(CommandLineTest, UsageErrorsAreRefusedNamingTheProblem) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--secret", "s"}, "missing command"},
      {{"--secret", "s", "vacuum"}, "unknown command 'vacuum'"},
      {{"--secret", "s", "list", "--frob"}, "unknown option '--frob'"},
      {{"--secret", "s", "list", "--dim", "3"}, "--dim is not an option of 'list'"},
      {{"--secret", "s", "info"}, "'info' takes NAME, got 0 arguments"},
      {{"--secret", "s", "add", "docs"}, "luxdb add NAME FILE"},
      {{"--secret", "s", "create", "docs", "--dim", "3"}, "'create' needs --space"},
      {{"--secret", "s", "create", "docs", "--space", "hamming", "--dim", "3"},
       "--space must be l2, ip or cosine, got 'hamming'"},
      {{"--secret", "s", "create", "docs", "--space", "l2", "--dim", "-3"},
       "--dim needs a whole number"},
      {{"--secret", "s", "resize", "docs", "lots"}, "N needs a whole number"},
      {{"--secret", "s", "--port", "70000", "list"}, "--port needs a whole number from 1 to 65535"},
      {{"--secret", "s", "get", "docs", "9-1"}, "range '9-1' in IDS goes down"},
      {{"--secret", "s", "query", "docs", "q.npy"}, "'query' needs -k"},
      {{"--secret", "s", "list", "--host"}, "--host needs a value"},
      {{"--secret", "s", "list", "--json=yes"}, "--json takes no value"},
      {{"--secret", "s", "--tls-cert", "c.pem", "list"}, "--tls-cert and --tls-key go together"},
      {{"--secret", "s", "ids", "docs", "--limit", "-1"}, "--limit needs a whole number"},
      {{"--secret", "s", "ids", "docs", "--limit", "10000001"}, "from 0 to 10000000"},
      // The server's limits (engine/limits.h), so that the CLI refuses what the server would.
      {{"--secret", "s", "query", "docs", "q.npy", "-k", "20001"},
       "-k needs a whole number from 1 to 10000"},
      {{"--secret", "s", "query", "docs", "q.npy", "-k", "5", "--ef", "100001"},
       "from 1 to 100000"},
      {{"--secret", "s", "create", "docs", "--space", "l2", "--dim", "65537"}, "from 1 to 65536"},
      {{"--secret", "s", "init", "docs", "--max-elements", "9", "--m", "1"},
       "--m needs a whole number from 2 to 2048"},
      {{"--secret", "s", "set-ef", "docs", "100001"}, "EF needs a whole number from 1 to 100000"},
      {{"--secret", "s", "--address", "db.example", "list"}, "--address must be HOST:PORT"},
      {{"--secret", "s", "--address", "db:0", "list"}, "--address needs a port from 1 to 65535"},
      {{"--secret", "s", "--address", "db:9000", "--port", "9001", "list"}, "contradict"},
      {{"--secret", "s", "--secret-file", "f", "list"}, "--secret and --secret-file contradict"},
      {{"--secret", "s", "ids", "docs", "--start-after", "x"}, "--start-after needs a whole"},
      {{"--secret", "s", "ids", "docs", "--start-after", "18446744073709551616"},
       "from 0 to 18446744073709551615"},
      {{"--secret", "s", "get", "docs", "1", "--limit", "3"}, "--limit is not an option of 'get'"},
      {{"--secret", "s", "compact"}, "'compact' takes NAME, got 0 arguments"},
      {{"--secret", "s", "compact", "a", "b"}, "luxdb compact NAME"},
      {{"--secret", "s", "compact", "docs", "--json"}, "--json is not an option of 'compact'"},
  };
  for (const auto& [args, expected] : cases) {
    absl::StatusOr<cli::Invocation> inv = cli::ParseCommandLine(args);
    EXPECT_EQ(inv.status().code(), absl::StatusCode::kInvalidArgument) << expected;
    EXPECT_THAT(inv.status().message(), HasSubstr(expected));
  }
}

TEST(CommandLineTest, TheSecretComesFromTheFlagTheFileOrTheEnvironment) {
  TempDir dir;
  const std::string file = dir.path() + "/secret";
  std::ofstream(file) << "  from-file\n";
  const std::string other = dir.path() + "/other";
  std::ofstream(other) << "from-env-file\n";
  ASSERT_EQ(setenv("LUXDB_SECRET", "from-env", 1), 0);
  EXPECT_EQ(cli::ParseCommandLine({"list"})->connect.secret, "from-env");
  EXPECT_EQ(cli::ParseCommandLine({"--secret-file", file, "list"})->connect.secret, "from-file");
  EXPECT_EQ(cli::ParseCommandLine({"--secret", "flag", "list"})->connect.secret, "flag");
  // LUXDB_SECRET_FILE: after LUXDB_SECRET, which it contradicts; a flag overrides both.
  ASSERT_EQ(setenv("LUXDB_SECRET_FILE", other.c_str(), 1), 0);
  absl::StatusOr<cli::Invocation> both = cli::ParseCommandLine({"list"});
  EXPECT_EQ(both.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(both.status().message(), HasSubstr("LUXDB_SECRET and LUXDB_SECRET_FILE"));
  EXPECT_EQ(cli::ParseCommandLine({"--secret-file", file, "list"})->connect.secret, "from-file");
  ASSERT_EQ(unsetenv("LUXDB_SECRET"), 0);
  EXPECT_EQ(cli::ParseCommandLine({"list"})->connect.secret, "from-env-file");
  ASSERT_EQ(unsetenv("LUXDB_SECRET_FILE"), 0);
  absl::StatusOr<cli::Invocation> none = cli::ParseCommandLine({"list"});
  EXPECT_THAT(none.status().message(), HasSubstr("no secret"));
  EXPECT_TRUE(cli::ParseCommandLine({"--insecure", "list"}).ok());
}

// An unreadable secret file is a file error (exit 1), not a usage error (exit 2), whether
// --secret-file or LUXDB_SECRET_FILE names it; the message names the path.
TEST(CommandLineTest, AnUnreadableSecretFileIsAFileErrorNamingIt) {
  absl::StatusOr<cli::Invocation> flag =
      cli::ParseCommandLine({"--secret-file", "/nonexistent/secret", "list"});
  EXPECT_NE(flag.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(flag.ok());
  EXPECT_THAT(flag.status().message(), HasSubstr("/nonexistent/secret"));
  ASSERT_EQ(setenv("LUXDB_SECRET_FILE", "/nonexistent/env-secret", 1), 0);
  absl::StatusOr<cli::Invocation> env = cli::ParseCommandLine({"list"});
  ASSERT_EQ(unsetenv("LUXDB_SECRET_FILE"), 0);
  EXPECT_NE(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(),
              AllOf(HasSubstr("LUXDB_SECRET_FILE"), HasSubstr("/nonexistent/env-secret")));
}

// The address: --address or --host/--port, else LUXDB_ADDRESS, else LUXDB_HOST/LUXDB_PORT,
// else 127.0.0.1:8484 — as the server, the C++ client and the Python clients read them.
TEST(CommandLineTest, TheAddressComesFromTheFlagsElseTheEnvironment) {
  for (const char* name : {"LUXDB_ADDRESS", "LUXDB_HOST", "LUXDB_PORT"}) unsetenv(name);
  auto target = [](std::vector<std::string> args) -> std::string {
    args.insert(args.begin(), {"--secret", "s"});
    args.push_back("list");
    absl::StatusOr<cli::Invocation> inv = cli::ParseCommandLine(args);
    return inv.ok() ? client::Target(inv->connect) : std::string(inv.status().message());
  };
  EXPECT_EQ(target({}), "127.0.0.1:8484");
  EXPECT_EQ(target({"--address", "db.example:9000"}), "db.example:9000");
  EXPECT_EQ(target({"--address=[::1]:9001"}), "[::1]:9001");
  ASSERT_EQ(setenv("LUXDB_HOST", "env-host", 1), 0);
  EXPECT_EQ(target({}), "env-host:8484");
  ASSERT_EQ(setenv("LUXDB_PORT", "9100", 1), 0);
  EXPECT_EQ(target({}), "env-host:9100");
  EXPECT_EQ(target({"--port", "9200"}), "env-host:9200");  // a flag sets its field alone
  EXPECT_EQ(target({"--address", "db:9300"}), "db:9300");
  ASSERT_EQ(setenv("LUXDB_ADDRESS", "addr-host:9400", 1), 0);
  EXPECT_THAT(target({}), AllOf(HasSubstr("LUXDB_ADDRESS ('addr-host:9400') and LUXDB_HOST"),
                                HasSubstr("contradict")));
  ASSERT_EQ(unsetenv("LUXDB_HOST"), 0);
  ASSERT_EQ(unsetenv("LUXDB_PORT"), 0);
  EXPECT_EQ(target({}), "addr-host:9400");
  EXPECT_EQ(target({"--host", "flag-host"}), "flag-host:9400");
  ASSERT_EQ(setenv("LUXDB_ADDRESS", "no-port", 1), 0);
  absl::StatusOr<cli::Invocation> bad = cli::ParseCommandLine({"--secret", "s", "list"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("LUXDB_ADDRESS must be HOST:PORT"));
  // health needs no secret, but takes its address the same way.
  ASSERT_EQ(setenv("LUXDB_ADDRESS", "health-host:9500", 1), 0);
  absl::StatusOr<cli::Invocation> health = cli::ParseCommandLine({"health"});
  ASSERT_EQ(unsetenv("LUXDB_ADDRESS"), 0);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(client::Target(health->connect), "health-host:9500");
}

// The one address parser of every LuxDB tool: clients need a real port, the server's listening
// address may ask for a free one (0); JoinHostPort gives back what ParseAddress took apart.
TEST(AddressTest, OneParserForClientsAndTheServer) {
  using Parsed = std::pair<std::string, int>;
  EXPECT_EQ(*client::ParseAddress("db.example:9000", "--address"), Parsed("db.example", 9000));
  EXPECT_EQ(*client::ParseAddress("[::1]:8484", "--address"), Parsed("::1", 8484));
  EXPECT_EQ(*client::ParseAddress("0.0.0.0:0", "--address", 0), Parsed("0.0.0.0", 0));
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"db:0", "--address needs a port from 1 to 65535, got 'db:0'"},
      {"db:65536", "needs a port from 1 to 65535"},
      {"db:+80", "needs a port from 1 to 65535"},
      {"db:", "needs a port from 1 to 65535"},
      {":80", "--address has no host"},
      {"::1:80", "must be HOST:PORT or [IPv6]:PORT, got '::1:80'"},
      {"[::1]80", "must be HOST:PORT or [IPv6]:PORT"},
      {"[::1:80", "must be HOST:PORT or [IPv6]:PORT"},
  };
  for (const auto& [text, expected] : refused) {
    absl::StatusOr<Parsed> parsed = client::ParseAddress(text, "--address");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(parsed.status().message(), HasSubstr(expected)) << text;
  }
  EXPECT_THAT(client::ParseAddress("db:-1", "--address", 0).status().message(),
              HasSubstr("needs a port from 0 to 65535"));
  EXPECT_EQ(client::JoinHostPort("db.example", 9000), "db.example:9000");
  EXPECT_EQ(client::JoinHostPort("::1", 0), "[::1]:0");
  EXPECT_EQ(client::JoinHostPort("[::1]", 5), "[::1]:5");
  for (const char* text : {"db.example:9000", "[::1]:8484", "[fe80::1%eth0]:1"}) {
    absl::StatusOr<Parsed> parsed = client::ParseAddress(text, "x");
    ASSERT_TRUE(parsed.ok()) << text;
    EXPECT_EQ(client::JoinHostPort(parsed->first, parsed->second), text);
  }
}

TEST(IdListTest, ParsesIdsAndRangesInOrder) {
  EXPECT_THAT(*cli::ParseIdList("1,5,10-13"), ElementsAre(1, 5, 10, 11, 12, 13));
  EXPECT_THAT(*cli::ParseIdList(" 7 , 3-3 "), ElementsAre(7, 3));
  EXPECT_THAT(*cli::ParseIdList("18446744073709551614"), ElementsAre(18446744073709551614u));
}

TEST(IdListTest, RefusesMalformedListsNamingTheItem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "IDS is empty"},
      {"1,,2", "has an empty item"},
      {"1,x", "'x' in IDS is not an id"},
      {"-3", "'-3' in IDS is not an id"},
      {"5-3", "range '5-3' in IDS goes down"},
      {"1-2-3", "'1-2-3' in IDS is not an id"},
      {"0-18446744073709551615", "more than 10000000 ids"},
  };
  for (const auto& [text, expected] : cases) {
    absl::StatusOr<std::vector<uint64_t>> ids = cli::ParseIdList(text);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(ids.status().message(), HasSubstr(expected)) << text;
  }
  EXPECT_THAT(cli::ParseIdList("1-5,7", 5).status().message(), HasSubstr("more than 5 ids"));
  EXPECT_TRUE(cli::ParseIdList("1-5", 5).ok());
}

TEST(OutputTest, PaddingSlotsAreNullInJsonAndFloatsRoundTrip) {
  EXPECT_EQ(cli::JsonId(kMissingId), "null");
  EXPECT_EQ(cli::JsonId(17), "17");
  EXPECT_EQ(cli::JsonFloat(kMissingDistance), "null");
  EXPECT_EQ(cli::JsonFloat(std::numeric_limits<float>::quiet_NaN()), "null");
  EXPECT_EQ(cli::JsonFloat(0.1f), "0.1");
  EXPECT_EQ(cli::FormatFloat(0.57161224f), "0.57161224");
  EXPECT_EQ(cli::FormatFloat(kMissingDistance), "inf");
  EXPECT_EQ(cli::JsonFloats(std::vector<float>{1, 2.5f, kMissingDistance}), "[1, 2.5, null]");
  EXPECT_EQ(cli::JsonString("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
}

TEST(ProgressTest, LineShowsPercentRateAndEta) {
  const std::string mid = cli::RenderProgress(2500, 10000, 2.0, 100);
  EXPECT_THAT(mid, AllOf(HasSubstr(" 25%"), HasSubstr("2,500/10,000 vectors"),
                         HasSubstr("1,250 vectors/s"), HasSubstr("ETA 0:06"), HasSubstr("[##")));
  EXPECT_LE(mid.size(), 99u);
  const std::string done = cli::RenderProgress(10000, 10000, 65.0, 100);
  EXPECT_THAT(done, AllOf(HasSubstr("100%"), HasSubstr("in 1:05")));
  EXPECT_LE(cli::RenderProgress(1, 10, 1.0, 30).size(), 29u);
  EXPECT_EQ(cli::FormatDuration(3725), "1:02:05");
  EXPECT_EQ(cli::WithThousands(1234567), "1,234,567");
}

}  // namespace
}  // namespace luxdb
