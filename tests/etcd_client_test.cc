// luxdb::cluster::EtcdClient against a real etcd (Debian's etcd-server, started per test on
// free ports by EtcdProcess): reads and writes, conditional writes under contention, leases
// kept alive and lost, watches across a crash of etcd and a compaction, endpoint parsing and
// failover.
#include "cluster/etcd_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/etcd_process.h"

namespace luxdb::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;
using testing::EtcdProcess;

// Leases in these tests: etcd's shortest with EtcdProcess's raft timings.
constexpr seconds kTtl{1};

// Polls `condition` every 20 ms until it holds or `timeout` passes; whether it held.
bool Eventually(const std::function<bool()>& condition, Clock::duration timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// "127.0.0.1:PORT" where nothing listens (a port bound, read back and released).
std::string DeadEndpoint() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  return absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
}

// What a watcher delivered, for the test thread to wait on.
class EventLog {
 public:
  void Add(const std::vector<WatchEvent>& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    batches_.push_back(batch);
    events_.insert(events_.end(), batch.begin(), batch.end());
    changed_.notify_all();
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    ++resets_;
    changed_.notify_all();
  }
  // The events once there are at least `n` (fewer if `timeout` passes first).
  std::vector<WatchEvent> WaitFor(size_t n, Clock::duration timeout = seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
    return events_;
  }
  bool WaitForReset(Clock::duration timeout = seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return resets_ > 0; });
  }
  std::vector<std::vector<WatchEvent>> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }

  std::function<void(const std::vector<WatchEvent>&)> OnEvents() {
    return [this](const std::vector<WatchEvent>& batch) { Add(batch); };
  }
  std::function<void()> OnReset() {
    return [this] { Reset(); };
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::vector<WatchEvent>> batches_;
  std::vector<WatchEvent> events_;
  int resets_ = 0;
};

// "put /k" / "delete /k" for each event, to compare sequences in one expectation.
std::vector<std::string> Describe(const std::vector<WatchEvent>& events) {
  std::vector<std::string> out;
  for (const WatchEvent& event : events) {
    out.push_back(absl::StrCat(event.type == WatchEvent::Type::kPut ? "put " : "delete ",
                               event.kv.key,
                               event.type == WatchEvent::Type::kPut ? "=" + event.kv.value : ""));
  }
  return out;
}

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status started = etcd_.Start();
    ASSERT_TRUE(started.ok()) << started;
    absl::StatusOr<std::unique_ptr<EtcdClient>> client =
        EtcdClient::Connect(EtcdOptions{{etcd_.endpoint()}});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // Put that may meet etcd still coming back after a restart (the channel reconnects within
  // a second).
  int64_t PutRetrying(const std::string& key, const std::string& value) {
    absl::StatusOr<int64_t> revision;
    Eventually([&] { return (revision = client_->Put(key, value)).ok(); }, seconds(10));
    EXPECT_TRUE(revision.ok()) << revision.status();
    return revision.value_or(0);
  }

  EtcdProcess etcd_;
  std::unique_ptr<EtcdClient> client_;
};

TEST(EtcdProcessTest, NamesTheDebianPackageWhenEtcdIsMissing) {
  EtcdProcess etcd("/nonexistent/etcd");
  const absl::Status started = etcd.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kFailedPrecondition) << started;
  EXPECT_TRUE(absl::StrContains(started.message(), "etcd-server")) << started;
}

TEST_F(EtcdClientTest, GetPutAndPrefix) {
  absl::StatusOr<std::optional<KeyValue>> missing = client_->Get("/p/a");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  absl::StatusOr<int64_t> first = client_->Put("/p/a", "1");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<int64_t> second = client_->Put("/p/a", "2");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_GT(*second, *first);
  absl::StatusOr<std::optional<KeyValue>> a = client_->Get("/p/a");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->key, "/p/a");
  EXPECT_EQ((*a)->value, "2");
  EXPECT_EQ((*a)->create_revision, *first);
  EXPECT_EQ((*a)->mod_revision, *second);
  EXPECT_EQ((*a)->version, 2);
  EXPECT_EQ((*a)->lease, 0);

  // Key order, not write order; neighbours of the prefix stay out; binary values intact.
  const std::string binary("\0\xff\x01", 3);
  ASSERT_TRUE(client_->Put("/p/c", binary).ok());
  ASSERT_TRUE(client_->Put("/p/b", "b").ok());
  ASSERT_TRUE(client_->Put("/p", "parent").ok());
  ASSERT_TRUE(client_->Put("/q/a", "other").ok());
  absl::StatusOr<int64_t> last = client_->Put("/p0", "sibling");
  ASSERT_TRUE(last.ok());
  int64_t revision = 0;
  absl::StatusOr<std::vector<KeyValue>> prefix = client_->GetPrefix("/p/", &revision);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  ASSERT_EQ(prefix->size(), 3u);
  EXPECT_EQ((*prefix)[0].key, "/p/a");
  EXPECT_EQ((*prefix)[1].key, "/p/b");
  EXPECT_EQ((*prefix)[2].key, "/p/c");
  EXPECT_EQ((*prefix)[2].value, binary);
  EXPECT_EQ(revision, *last);

  // An empty prefix is every key.
  absl::StatusOr<std::vector<KeyValue>> all = client_->GetPrefix("");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 6u);

  ASSERT_TRUE(client_->Delete("/p/b").ok());
  ASSERT_TRUE(client_->Delete("/p/b").ok()) << "deleting a missing key is not an error";
  prefix = client_->GetPrefix("/p/");
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_EQ(prefix->size(), 2u);

  ASSERT_TRUE(client_->DeletePrefix("/p/").ok());
  prefix = client_->GetPrefix("/p/");
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_TRUE(prefix->empty());
  absl::StatusOr<std::optional<KeyValue>> parent = client_->Get("/p");
  ASSERT_TRUE(parent.ok() && parent->has_value()) << "the prefix '/p/' does not cover '/p'";

  const absl::Status everything = client_->DeletePrefix("");
  EXPECT_EQ(everything.code(), absl::StatusCode::kInvalidArgument) << everything;
}

TEST_F(EtcdClientTest, GetPrefixReadsEveryPageAtOneRevision) {
  // More keys than one Range page, written 100 per transaction.
  const int keys = static_cast<int>(kRangePageSize) * 2 + 500;
  for (int first = 0; first < keys; first += 100) {
    std::vector<EtcdClient::Write> writes;
    for (int i = first; i < first + 100 && i < keys; ++i) {
      writes.push_back({absl::StrCat("/many/", 100000 + i), absl::StrCat(i), 0});
    }
    absl::StatusOr<bool> written = client_->CompareAndPutAll(writes);
    ASSERT_TRUE(written.ok()) << written.status();
    ASSERT_TRUE(*written);
  }
  int64_t revision = 0;
  absl::StatusOr<std::vector<KeyValue>> read = client_->GetPrefix("/many/", &revision);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), static_cast<size_t>(keys));
  for (int i = 0; i < keys; ++i) {
    ASSERT_EQ((*read)[i].key, absl::StrCat("/many/", 100000 + i));
    ASSERT_LE((*read)[i].mod_revision, revision);
  }
}

TEST_F(EtcdClientTest, CreateRacingHasOneWinner) {
  for (int round = 0; round < 20; ++round) {
    const std::string key = absl::StrCat("/race/", round);
    std::atomic<int> go{0};
    absl::StatusOr<bool> created[2];
    std::thread threads[2];
    for (int t = 0; t < 2; ++t) {
      threads[t] = std::thread([&, t] {
        go.fetch_add(1);
        while (go.load() < 2) {
        }
        created[t] = client_->Create(key, absl::StrCat("thread ", t));
      });
    }
    for (std::thread& thread : threads) thread.join();
    ASSERT_TRUE(created[0].ok()) << created[0].status();
    ASSERT_TRUE(created[1].ok()) << created[1].status();
    ASSERT_NE(*created[0], *created[1]) << "round " << round << ": exactly one Create wins";
    absl::StatusOr<std::optional<KeyValue>> stored = client_->Get(key);
    ASSERT_TRUE(stored.ok() && stored->has_value());
    EXPECT_EQ((*stored)->value, absl::StrCat("thread ", *created[0] ? 0 : 1));
    EXPECT_EQ((*stored)->version, 1);
  }
}

TEST_F(EtcdClientTest, CompareAndPutWithAStaleRevisionFails) {
  absl::StatusOr<bool> fresh = client_->CompareAndPut("/cas", 0, "v1");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(*fresh) << "revision 0 writes an absent key";
  fresh = client_->CompareAndPut("/cas", 0, "again");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_FALSE(*fresh) << "revision 0 does not overwrite";

  absl::StatusOr<std::optional<KeyValue>> v1 = client_->Get("/cas");
  ASSERT_TRUE(v1.ok() && v1->has_value());
  absl::StatusOr<bool> written = client_->CompareAndPut("/cas", (*v1)->mod_revision, "v2");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(*written);
  absl::StatusOr<bool> stale = client_->CompareAndPut("/cas", (*v1)->mod_revision, "v3");
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(*stale);
  absl::StatusOr<std::optional<KeyValue>> now = client_->Get("/cas");
  ASSERT_TRUE(now.ok() && now->has_value());
  EXPECT_EQ((*now)->value, "v2");

  absl::StatusOr<bool> created = client_->Create("/cas", "v4");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(*created);
}

TEST_F(EtcdClientTest, CompareAndPutAllIsAllOrNothing) {
  absl::StatusOr<int64_t> a = client_->Put("/all/a", "a1");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<int64_t> a2 = client_->Put("/all/a", "a2");
  ASSERT_TRUE(a2.ok());

  // /all/a guarded by a stale revision: /all/b must not be written either.
  absl::StatusOr<bool> stale =
      client_->CompareAndPutAll({{"/all/a", "a3", *a}, {"/all/b", "b1", 0}});
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(*stale);
  absl::StatusOr<std::vector<KeyValue>> keys = client_->GetPrefix("/all/");
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].value, "a2");

  // /all/b guarded as absent while it exists: nothing written either.
  ASSERT_TRUE(client_->Put("/all/c", "c1").ok());
  absl::StatusOr<bool> exists =
      client_->CompareAndPutAll({{"/all/a", "a3", *a2}, {"/all/c", "c2", 0}});
  ASSERT_TRUE(exists.ok()) << exists.status();
  EXPECT_FALSE(*exists);

  absl::StatusOr<std::optional<KeyValue>> c = client_->Get("/all/c");
  ASSERT_TRUE(c.ok() && c->has_value());
  absl::StatusOr<bool> all = client_->CompareAndPutAll(
      {{"/all/a", "a3", *a2}, {"/all/b", "b1", 0}, {"/all/c", "", (*c)->mod_revision, 0, true}});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(*all);
  keys = client_->GetPrefix("/all/");
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].value, "a3");
  EXPECT_EQ((*keys)[1].value, "b1");
  EXPECT_EQ((*keys)[0].mod_revision, (*keys)[1].mod_revision) << "one transaction, one revision";

  // A check-only entry is a condition and nothing else: the key keeps its value and revision.
  const int64_t a3 = (*keys)[0].mod_revision;
  absl::StatusOr<bool> checked = client_->CompareAndPutAll(
      {{.key = "/all/a", .expected_mod_revision = a3, .check_only = true},
       {.key = "/all/d", .value = "d1", .expected_mod_revision = 0}});
  ASSERT_TRUE(checked.ok()) << checked.status();
  EXPECT_TRUE(*checked);
  absl::StatusOr<bool> stale_check = client_->CompareAndPutAll(
      {{.key = "/all/a", .expected_mod_revision = *a2, .check_only = true},
       {.key = "/all/e", .value = "e1", .expected_mod_revision = 0}});
  ASSERT_TRUE(stale_check.ok()) << stale_check.status();
  EXPECT_FALSE(*stale_check) << "a check-only entry's condition was not applied";
  keys = client_->GetPrefix("/all/");
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 3u);  // a, b, d
  EXPECT_EQ((*keys)[0].value, "a3");
  EXPECT_EQ((*keys)[0].mod_revision, a3);
  EXPECT_EQ((*keys)[2].value, "d1");

  absl::StatusOr<bool> twice = client_->CompareAndPutAll({{"/all/x", "1", 0}, {"/all/x", "2", 0}});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument) << twice.status();
  EXPECT_TRUE(absl::StrContains(twice.status().message(), "/all/x")) << twice.status();
}

TEST_F(EtcdClientTest, KeepAliveKeepsAKeyPastItsTtl) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(kTtl);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("/leased", "alive", *lease).ok());
  std::atomic<int> lost{0};
  std::unique_ptr<EtcdClient::LeaseKeeper> keeper =
      client_->KeepAlive(*lease, kTtl, [&] { lost.fetch_add(1); });
  std::this_thread::sleep_for(kTtl * 3);
  // Renewed within the last ttl/3 (and a bit): sure to last most of a TTL more, never more.
  const Clock::time_point valid_until = keeper->valid_until();
  EXPECT_GT(valid_until, Clock::now() + kTtl / 3);
  EXPECT_LE(valid_until, Clock::now() + kTtl);
  absl::StatusOr<std::optional<KeyValue>> key = client_->Get("/leased");
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_TRUE(key->has_value()) << "the key expired although its lease was kept alive";
  EXPECT_EQ((*key)->lease, *lease);
  EXPECT_FALSE(keeper->lost());
  EXPECT_EQ(lost.load(), 0);
}

TEST_F(EtcdClientTest, AKeyOnALeaseGoesWhenItsKeeperIsDestroyed) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(kTtl);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("/leased", "alive", *lease).ok());
  auto keeper = client_->KeepAlive(*lease, kTtl, [] {});
  std::this_thread::sleep_for(kTtl * 2);
  ASSERT_TRUE(client_->Get("/leased").value().has_value());
  keeper.reset();
  const Clock::time_point stopped = Clock::now();
  EXPECT_TRUE(
      Eventually([&] { return !client_->Get("/leased").value().has_value(); }, kTtl + seconds(4)))
      << "the key outlived its lease";
  EXPECT_GE(Clock::now() - stopped, milliseconds(500)) << "the key went before its TTL ran out";
  const absl::Status revoked = client_->RevokeLease(*lease);
  EXPECT_EQ(revoked.code(), absl::StatusCode::kNotFound) << revoked;
}

// on_lost of a keeper whose lease is revoked by `revoke`; the key on it goes with it.
void ExpectLostWhenRevoked(EtcdClient& client, const std::function<void(int64_t)>& revoke) {
  absl::StatusOr<int64_t> lease = client.GrantLease(seconds(5));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client.Put("/leased", "alive", *lease).ok());
  std::atomic<int> lost{0};
  auto keeper = client.KeepAlive(*lease, seconds(5), [&] { lost.fetch_add(1); });
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(keeper->lost());
  revoke(*lease);
  // The next keepalive, at most ttl/3 later, hears that the lease is gone.
  EXPECT_TRUE(Eventually([&] { return lost.load() > 0; }, seconds(4)));
  EXPECT_TRUE(keeper->lost());
  EXPECT_EQ(keeper->valid_until(), Clock::time_point::min()) << "a lost lease is valid no more";
  EXPECT_FALSE(client.Get("/leased").value().has_value());
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(lost.load(), 1) << "on_lost runs once";
}

TEST_F(EtcdClientTest, OnLostRunsWhenTheLeaseIsRevokedWithEtcdctl) {
  ExpectLostWhenRevoked(*client_, [&](int64_t lease) {
    absl::StatusOr<std::string> out =
        etcd_.Etcdctl({"lease", "revoke", absl::StrCat(absl::Hex(lease))});
    ASSERT_TRUE(out.ok()) << out.status();
  });
}

TEST_F(EtcdClientTest, OnLostRunsWhenTheLeaseIsRevokedByAClient) {
  ExpectLostWhenRevoked(*client_, [&](int64_t lease) {
    const absl::Status revoked = client_->RevokeLease(lease);
    ASSERT_TRUE(revoked.ok()) << revoked;
  });
}

TEST_F(EtcdClientTest, OnLostRunsWhenNoRenewalSucceedsForATtl) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  std::atomic<int> lost{0};
  auto keeper = client_->KeepAlive(*lease, seconds(2), [&] { lost.fetch_add(1); });
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_TRUE(etcd_.Kill().ok());
  const Clock::time_point killed = Clock::now();
  EXPECT_TRUE(Eventually([&] { return lost.load() > 0; }, seconds(4)));
  // Lost within one TTL of the last renewal, which was at most ttl/3 before the kill.
  EXPECT_LE(Clock::now() - killed, seconds(3));
  EXPECT_TRUE(keeper->lost());
}

TEST_F(EtcdClientTest, GrantLeaseRefusesAZeroTtl) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(seconds(0));
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kInvalidArgument) << lease.status();
  absl::StatusOr<int64_t> put = client_->Put("/k", "v", 12345);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kNotFound) << put.status();
  EXPECT_TRUE(absl::StrContains(put.status().message(), "'/k'")) << put.status();
  EXPECT_TRUE(absl::StrContains(put.status().message(), etcd_.endpoint())) << put.status();
}

TEST_F(EtcdClientTest, WatchSeesPutsAndDeletesInOrder) {
  ASSERT_TRUE(client_->Put("/w/before", "x").ok());
  int64_t revision = 0;
  ASSERT_TRUE(client_->GetPrefix("/w/", &revision).ok());
  EventLog log;
  auto watcher = client_->WatchPrefix("/w/", revision + 1, log.OnEvents(), log.OnReset());

  ASSERT_TRUE(client_->Put("/w/a", "1").ok());
  ASSERT_TRUE(client_->Put("/other", "not watched").ok());
  ASSERT_TRUE(client_->Put("/w/b", "2").ok());
  ASSERT_TRUE(client_->Delete("/w/a").ok());
  ASSERT_TRUE(client_->CompareAndPutAll({{"/w/c", "3", 0}, {"/w/d", "4", 0}}).value());
  ASSERT_TRUE(client_->DeletePrefix("/w/").ok());

  const std::vector<WatchEvent> events = log.WaitFor(9);
  EXPECT_EQ(Describe(events),
            (std::vector<std::string>{"put /w/a=1", "put /w/b=2", "delete /w/a", "put /w/c=3",
                                      "put /w/d=4", "delete /w/b", "delete /w/before",
                                      "delete /w/c", "delete /w/d"}));
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GE(events[i].kv.mod_revision, events[i - 1].kv.mod_revision) << i;
  }
  // The transaction's two puts share a revision and arrive in one batch.
  bool together = false;
  for (const std::vector<WatchEvent>& batch : log.batches()) {
    bool c = false, d = false;
    for (const WatchEvent& event : batch) {
      c = c || event.kv.key == "/w/c";
      d = d || event.kv.key == "/w/d";
    }
    together = together || (c && d);
  }
  EXPECT_TRUE(together);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(log.size(), 9u) << "nothing repeated, nothing outside the prefix";
}

TEST_F(EtcdClientTest, WatchResumesWithoutLossAfterEtcdIsKilledAndRestarted) {
  int64_t revision = 0;
  ASSERT_TRUE(client_->GetPrefix("/r/", &revision).ok());
  EventLog log;
  auto watcher = client_->WatchPrefix("/r/", revision + 1, log.OnEvents(), log.OnReset());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->Put(absl::StrCat("/r/", i), "v").ok());
  ASSERT_EQ(log.WaitFor(3).size(), 3u);

  ASSERT_TRUE(etcd_.Kill().ok());
  std::this_thread::sleep_for(milliseconds(300));  // the watch stream breaks meanwhile
  const absl::Status restarted = etcd_.Start();
  ASSERT_TRUE(restarted.ok()) << restarted;
  // Written before the watcher has reopened its stream (it pauses between attempts): it must
  // resume from the revision after the last event it delivered, not from "now".
  for (int i = 3; i < 6; ++i) PutRetrying(absl::StrCat("/r/", i), "v");
  ASSERT_TRUE(client_->Delete("/r/0").ok());

  const std::vector<WatchEvent> events = log.WaitFor(7);
  EXPECT_EQ(Describe(events),
            (std::vector<std::string>{"put /r/0=v", "put /r/1=v", "put /r/2=v", "put /r/3=v",
                                      "put /r/4=v", "put /r/5=v", "delete /r/0"}));
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GT(events[i].kv.mod_revision, events[i - 1].kv.mod_revision) << i;
  }
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(log.size(), 7u) << "no event repeated";
}

TEST_F(EtcdClientTest, CallsGetThroughSoonAfterEtcdRestarts) {
  // A caller keeps trying while etcd starts again: its connection attempts meet etcd listening
  // but not serving yet, and gRPC moves them on only while a thread waits on the channel (no
  // stream is open here to do it).
  ASSERT_TRUE(client_->Put("/k", "v").ok());
  ASSERT_TRUE(etcd_.Kill().ok());
  Clock::time_point written;
  std::thread writer([&] {
    absl::StatusOr<int64_t> put;
    Eventually([&] { return (put = client_->Put("/k", "again")).ok(); }, seconds(20));
    EXPECT_TRUE(put.ok()) << put.status();
    written = Clock::now();
  });
  const absl::Status restarted = etcd_.Start();
  const Clock::time_point answering = Clock::now();
  writer.join();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_LT(written - answering, seconds(3)) << "the client was slow to reconnect";
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionResets) {
  int64_t first = 0;
  for (int i = 0; i < 5; ++i) {
    const int64_t revision = client_->Put(absl::StrCat("/c/", i), "v").value();
    if (i == 0) first = revision;
  }
  absl::StatusOr<int64_t> last = client_->Put("/c/last", "v");
  ASSERT_TRUE(last.ok());
  absl::StatusOr<std::string> compacted = etcd_.Etcdctl({"compact", absl::StrCat(*last)});
  ASSERT_TRUE(compacted.ok()) << compacted.status();

  EventLog log;
  auto watcher = client_->WatchPrefix("/c/", first, log.OnEvents(), log.OnReset());
  EXPECT_TRUE(log.WaitForReset());
  EXPECT_EQ(log.size(), 0u) << "on_events is not called for a compacted revision";

  // From the revision a GetPrefix gives, the watch works again.
  int64_t revision = 0;
  ASSERT_TRUE(client_->GetPrefix("/c/", &revision).ok());
  EventLog again;
  auto rewatch = client_->WatchPrefix("/c/", revision + 1, again.OnEvents(), again.OnReset());
  ASSERT_TRUE(client_->Put("/c/new", "v").ok());
  EXPECT_EQ(Describe(again.WaitFor(1)), (std::vector<std::string>{"put /c/new=v"}));
}

TEST_F(EtcdClientTest, WatchersAndKeepersMayOutliveTheClient) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(kTtl);
  ASSERT_TRUE(lease.ok());
  EventLog log;
  auto watcher = client_->WatchPrefix("/o/", 0, log.OnEvents(), log.OnReset());
  auto keeper = client_->KeepAlive(*lease, kTtl, [] {});
  client_.reset();
  std::this_thread::sleep_for(kTtl * 2);
  EXPECT_FALSE(keeper->lost());
  keeper.reset();
  watcher.reset();
}

TEST(EtcdEndpointsTest, ParseEndpoints) {
  absl::StatusOr<std::vector<std::string>> one = EtcdClient::ParseEndpoints("etcd-0:2379");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, std::vector<std::string>{"etcd-0:2379"});
  absl::StatusOr<std::vector<std::string>> three =
      EtcdClient::ParseEndpoints("127.0.0.1:2379, [::1]:2380 ,etcd-2.etcd:2381");
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(*three, (std::vector<std::string>{"127.0.0.1:2379", "[::1]:2380", "etcd-2.etcd:2381"}));

  struct Bad {
    const char* text;
    const char* fragment;  // the message names the bad part
  };
  for (const Bad& bad :
       {Bad{"", "empty"}, Bad{"  ", "empty"}, Bad{"a:1,,b:2", "endpoint 2 of 3"},
        Bad{"a:1,", "endpoint 2 of 2"}, Bad{"etcd", "'etcd'"}, Bad{"a:1,etcd:0", "'etcd:0'"},
        Bad{"a:65536", "'a:65536'"}, Bad{"a:port", "'a:port'"}, Bad{":2379", "':2379'"},
        Bad{"::1:2379", "'::1:2379'"}, Bad{"a:1,a:1", "twice"}}) {
    absl::StatusOr<std::vector<std::string>> parsed = EtcdClient::ParseEndpoints(bad.text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << "'" << bad.text << "': " << parsed.status();
    EXPECT_TRUE(absl::StrContains(parsed.status().message(), bad.fragment))
        << "'" << bad.text << "': " << parsed.status();
  }
}

TEST(EtcdEndpointsTest, ConnectNamesTheEndpointsThatDoNotAnswer) {
  const std::string dead = DeadEndpoint();
  absl::StatusOr<std::unique_ptr<EtcdClient>> client =
      EtcdClient::Connect(EtcdOptions{{dead}, seconds(2)});
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), dead)) << client.status();

  const std::string also_dead = DeadEndpoint();
  client = EtcdClient::Connect(EtcdOptions{{dead, also_dead}, seconds(2)});
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), dead)) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), also_dead)) << client.status();

  client = EtcdClient::Connect(EtcdOptions{{}});
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument) << client.status();
}

TEST_F(EtcdClientTest, CallsAndStreamsMoveToAnEndpointThatAnswers) {
  absl::StatusOr<std::unique_ptr<EtcdClient>> client =
      EtcdClient::Connect(EtcdOptions{{DeadEndpoint(), etcd_.endpoint()}, seconds(2)});
  ASSERT_TRUE(client.ok()) << client.status();
  EtcdClient& etcd = **client;
  int64_t revision = 0;
  ASSERT_TRUE(etcd.GetPrefix("/f/", &revision).ok());
  EventLog log;
  auto watcher = etcd.WatchPrefix("/f/", revision + 1, log.OnEvents(), log.OnReset());
  absl::StatusOr<int64_t> lease = etcd.GrantLease(kTtl);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(etcd.Put("/f/a", "1", *lease).ok());
  auto keeper = etcd.KeepAlive(*lease, kTtl, [] {});
  EXPECT_EQ(Describe(log.WaitFor(1)), (std::vector<std::string>{"put /f/a=1"}));
  std::this_thread::sleep_for(kTtl * 2);
  EXPECT_FALSE(keeper->lost());
  EXPECT_TRUE(etcd.Get("/f/a").value().has_value());
}

TEST_F(EtcdClientTest, AConditionalWriteRetriedAfterAFailedAttemptDoesNotClaimFalse) {
  ASSERT_TRUE(client_->Put("/taken", "by someone").ok());
  // A client on a second etcd first, this test's second: once the first dies, a call fails
  // there with UNAVAILABLE and is retried here.
  EtcdProcess other;
  ASSERT_TRUE(other.Start().ok());
  absl::StatusOr<std::unique_ptr<EtcdClient>> client =
      EtcdClient::Connect(EtcdOptions{{other.endpoint(), etcd_.endpoint()}, seconds(2)});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(other.Kill().ok());

  // An attempt that failed may have been applied; the retry finding the key taken cannot tell
  // whose it is.
  absl::StatusOr<bool> created = (*client)->Create("/taken", "by me");
  EXPECT_EQ(created.status().code(), absl::StatusCode::kUnavailable) << created.status();
  EXPECT_TRUE(absl::StrContains(created.status().message(), "outcome unknown")) << created.status();
  EXPECT_TRUE(absl::StrContains(created.status().message(), other.endpoint())) << created.status();

  // Later calls start at the endpoint that answered, and answer plainly.
  created = (*client)->Create("/taken", "by me");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(*created);
  created = (*client)->Create("/free", "by me");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
}

}  // namespace
}  // namespace luxdb::cluster
