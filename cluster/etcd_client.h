// luxdb::cluster::EtcdClient: the etcd v3 client of LuxDB's cluster mode (membership, the
// shard map and leader leases live in etcd). It speaks etcd's gRPC API (3.4 and later) through
// LuxDB's own wire-compatible subset (proto/etcd/etcd_v3.proto); no etcd or gRPC type appears
// in this header.
//
//   absl::StatusOr<std::vector<std::string>> endpoints = EtcdClient::ParseEndpoints(flag);
//   absl::StatusOr<std::unique_ptr<EtcdClient>> etcd = EtcdClient::Connect({*endpoints});
//   absl::StatusOr<int64_t> lease = (*etcd)->GrantLease(std::chrono::seconds(5));
//   auto keeper = (*etcd)->KeepAlive(*lease, std::chrono::seconds(5), [] { /* step down */ });
//   absl::StatusOr<bool> won = (*etcd)->Create("/luxdb/leader/i/0", "node-a", *lease);
//
// Endpoints: several for a multi-member etcd. Calls go to the endpoint that answered last; a
// call that fails with UNAVAILABLE is tried on the next endpoint, each endpoint at most once
// per call, and later calls start there. Each attempt has the deadline
// EtcdOptions::call_timeout.
//
// Errors: the absl::StatusCode is gRPC's code as etcd (or the transport) gave it, and the
// message names the operation, the key (C-escaped), the endpoint and what etcd said, e.g.
// "etcd Put of '/a' at 127.0.0.1:2379: UNAVAILABLE: failed to connect to all addresses". When
// every endpoint failed, the message lists each endpoint's answer. Missed deadlines are
// DEADLINE_EXCEEDED.
//
// Conditional writes (Create, CompareAndPut, CompareAndPutAll) never report a write they
// cannot vouch for: true means this call wrote, false means etcd found the condition false
// and nothing was written. When an attempt failed with UNAVAILABLE (it may or may not have
// been applied) and the retry on another endpoint found the condition false, the write may
// be the earlier attempt's own: the call returns UNAVAILABLE saying the outcome is unknown,
// and the caller re-reads the key.
//
// Threads: an EtcdClient is thread-safe; any number of threads may call it at once. The
// LeaseKeeper and Watcher objects it returns each own one background thread, joined when the
// object is destroyed; they keep what they need of the client alive, so they may outlive it.
// Their callbacks run on that thread and must not destroy the object that runs them.
//
// Locks: the client itself has none (the current endpoint is an atomic). A keeper or watcher
// has one lock (its stop request and open stream) and each open stream one (BidiStream, the
// state gRPC's callbacks report); the two are never held together and no lock is held while
// gRPC is waited on or a callback runs, so there is no order to keep.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::cluster {

class EtcdEndpoints;

// Keys per Range call of GetPrefix.
inline constexpr int64_t kRangePageSize = 1000;

// One key as etcd stores it. Revisions are the store's (one counter for every key); version
// counts the writes of this key since it was created; lease is 0 for a key without one.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

// A change of a watched key.
struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: key and mod_revision (the revision of the deletion)
};

struct EtcdOptions {
  // "host:port" ("[v6]:port"), at least one; ParseEndpoints makes them from a flag.
  std::vector<std::string> endpoints;
  // Deadline of each attempt of a call (and of opening a keepalive or watch stream).
  std::chrono::milliseconds call_timeout{5000};
};

class EtcdClient {
 public:
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Opens a channel to every endpoint and reads one key (the probe key "health", as etcdctl's
  // endpoint health does) to check that etcd answers. INVALID_ARGUMENT for no endpoints or a
  // call_timeout that is not positive; UNAVAILABLE naming every endpoint and its error when
  // none answers; another code if etcd answers with an error (e.g. it requires
  // authentication, which this client does not do).
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Connect(EtcdOptions options);

  // "host:port[,host:port...]" as given to --cluster-etcd (blanks around a part are ignored;
  // an IPv6 host is written "[v6]:port"). INVALID_ARGUMENT naming the bad part: an empty
  // one, a missing or bad port, a part given twice.
  static absl::StatusOr<std::vector<std::string>> ParseEndpoints(absl::string_view text);

  const std::vector<std::string>& endpoints() const;

  // The key, or nullopt if it does not exist.
  absl::StatusOr<std::optional<KeyValue>> Get(absl::string_view key);

  // Every key starting with `prefix` ("" for every key), in key order, read at one revision
  // of the store (read in pages of kRangePageSize keys pinned to it), which goes to
  // `*revision` when given: to see every later change, watch from *revision + 1.
  absl::StatusOr<std::vector<KeyValue>> GetPrefix(absl::string_view prefix,
                                                  int64_t* revision = nullptr);

  // Writes the key (attached to `lease`, 0 for none); returns the revision of the write.
  // NOT_FOUND if the lease does not exist.
  absl::StatusOr<int64_t> Put(absl::string_view key, absl::string_view value, int64_t lease = 0);

  // Writes the key only if it does not exist (a transaction comparing its create_revision
  // with 0). true if this call created it.
  absl::StatusOr<bool> Create(absl::string_view key, absl::string_view value, int64_t lease = 0);

  // Writes the key only if its mod_revision is still `mod_revision` (0: only if it does not
  // exist). true if this call wrote it.
  absl::StatusOr<bool> CompareAndPut(absl::string_view key, int64_t mod_revision,
                                     absl::string_view value, int64_t lease = 0);

  // One write of CompareAndPutAll: put `value` (with `lease`), or delete the key if `erase`, or
  // (with `check_only`) leave the key as it is: only its expected_mod_revision is a condition.
  struct Write {
    std::string key;
    std::string value = {};
    int64_t expected_mod_revision;  // the key's mod_revision now; 0: it must not exist
    int64_t lease = 0;
    bool erase = false;
    bool check_only = false;
  };
  // Applies every write if every key still has its expected_mod_revision, else none (one
  // transaction). true if written; true for no writes. INVALID_ARGUMENT naming a key given
  // twice (etcd's transactions cannot touch a key twice) or, from etcd, for more writes than
  // its --max-txn-ops (128 by default).
  absl::StatusOr<bool> CompareAndPutAll(const std::vector<Write>& writes);

  // Deletes the key; deleting a missing key is not an error.
  absl::Status Delete(absl::string_view key);
  // Deletes every key starting with `prefix`. INVALID_ARGUMENT for an empty prefix (it would
  // erase the whole store).
  absl::Status DeletePrefix(absl::string_view prefix);

  // A new lease that expires `ttl` after its last renewal (etcd rounds a short TTL up to its
  // minimum, 1.5 election timeouts). Returns its id. INVALID_ARGUMENT for ttl < 1 s.
  absl::StatusOr<int64_t> GrantLease(std::chrono::seconds ttl);
  // Ends the lease now and deletes every key attached to it. NOT_FOUND if it does not exist
  // (revoked or expired).
  absl::Status RevokeLease(int64_t lease);

  // Keeps a lease alive until destroyed (which does not revoke it: its keys then live until
  // the lease's TTL runs out).
  class LeaseKeeper {
   public:
    virtual ~LeaseKeeper() = default;
    // Whether on_lost has run (or is running).
    virtual bool lost() const = 0;
    // Until when the lease surely exists: the sending of the last renewal etcd confirmed (or
    // the keeper's start) plus the TTL. etcd counts the TTL from receiving that renewal, so
    // etcd cannot expire the lease before this (clocks running at the same rate).
    // time_point::min() once lost.
    virtual std::chrono::steady_clock::time_point valid_until() const = 0;
  };
  // Starts a thread that sends a keepalive for `lease` at once and then every ttl/3 on one
  // LeaseKeepAlive stream, reopened (on the next endpoint, after a short pause) when it
  // breaks or an answer does not come within min(call_timeout, ttl/3). `on_lost` runs once,
  // on that thread, when etcd says the lease is gone (TTL <= 0: revoked or expired) or when
  // no renewal succeeded for a whole `ttl` (counted from this call, then from the sending of
  // the last renewal that etcd confirmed); the thread then ends. `ttl` is the lease's TTL as
  // requested from GrantLease.
  std::unique_ptr<LeaseKeeper> KeepAlive(int64_t lease, std::chrono::seconds ttl,
                                         std::function<void()> on_lost);

  // Watches keys until destroyed.
  class Watcher {
   public:
    virtual ~Watcher() = default;
  };
  // Starts a thread that watches every key starting with `prefix` from `start_revision` (0:
  // from the store's revision when etcd first accepts the watch, shortly after this returns;
  // to miss nothing, pass the revision of a GetPrefix + 1) and calls `on_events` with each
  // batch, in revision order; a batch holds whole revisions (every event of a transaction
  // arrives in one call). When the stream breaks it is reopened (on the next endpoint, after
  // a pause growing to 1 s) from the last revision delivered + 1, so no event is lost or
  // repeated. If etcd no longer has the history from that revision (compacted), on_events is
  // not called, `on_reset` runs and the thread ends: the caller reads the keys again with
  // GetPrefix and starts a new watch. Both callbacks run on the watcher's thread; while one
  // runs, no event is read (etcd holds them), so a slow callback delays but loses nothing.
  std::unique_ptr<Watcher> WatchPrefix(
      absl::string_view prefix, int64_t start_revision,
      std::function<void(const std::vector<WatchEvent>&)> on_events,
      std::function<void()> on_reset);

 private:
  explicit EtcdClient(std::shared_ptr<EtcdEndpoints> endpoints);

  // The channels, shared with the LeaseKeepers and Watchers this client made.
  const std::shared_ptr<EtcdEndpoints> endpoints_;
};

}  // namespace luxdb::cluster
