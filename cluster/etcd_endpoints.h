// The channels of an EtcdClient, one per endpoint, and which endpoint calls go to. Shared (by
// shared_ptr) between the client and the LeaseKeepers and Watchers it made, so that those may
// outlive it. Internal to cluster/.
//
// Thread-safe: everything is fixed at construction except the current endpoint, an atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cluster/etcd_client.h"
#include "etcd/etcd_v3.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace luxdb::cluster {

// Largest message accepted from etcd. etcd refuses requests over 1.5 MiB (--max-request-bytes),
// so one value is smaller; a Range page of kRangePageSize keys or a watch answer (etcd splits
// those larger than 1.5 MiB: WatchCreateRequest.fragment) stays far below this.
inline constexpr int kMaxReceiveMessageBytes = 64 << 20;
// gRPC reconnects a broken channel after a pause growing from the first to the last of
// these (gRPC's own defaults, 1 s to 120 s, would leave a restarted etcd unused for minutes).
// GRPC_ARG_MIN_RECONNECT_BACKOFF_MS keeps its default: it is also the time each connection
// attempt is given, and a short one fails attempts on a loaded machine.
inline constexpr int kReconnectBackoffFirstMs = 100;
inline constexpr int kReconnectBackoffMaxMs = 1000;
// HTTP/2 pings on a channel with calls in flight, so that a watch on a dead connection ends.
// etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
inline constexpr int kKeepaliveTimeMs = 10000;
inline constexpr int kKeepaliveTimeoutMs = 10000;
// How long a call or stream waits for a channel that is reconnecting (after a refused or
// broken connection) before trying it: gRPC moves a connection attempt forward only while a
// thread waits on the channel (or every 5 s otherwise), and a call that fails at once because
// the channel is reconnecting does not wait. Longer than kReconnectBackoffMaxMs, so that one
// attempt is made meanwhile.
inline constexpr std::chrono::milliseconds kConnectWait{1500};
// How often a keeper or watcher waiting for a channel checks whether it is being destroyed.
inline constexpr std::chrono::milliseconds kStopCheck{100};
// A broken watch or keepalive stream is reopened after a pause growing from the first to the
// last of these.
inline constexpr std::chrono::milliseconds kStreamRetryFirst{50};
inline constexpr std::chrono::milliseconds kStreamRetryMax{1000};
// How long a stream that ended is given to deliver its status before it is cancelled.
inline constexpr std::chrono::milliseconds kStreamCloseGrace{200};

class EtcdEndpoints {
 public:
  // Creates a channel per endpoint (no I/O: channels connect on their first call).
  explicit EtcdEndpoints(EtcdOptions options);
  EtcdEndpoints(const EtcdEndpoints&) = delete;
  EtcdEndpoints& operator=(const EtcdEndpoints&) = delete;

  const EtcdOptions& options() const { return options_; }
  size_t size() const { return options_.endpoints.size(); }
  const std::string& name(size_t endpoint) const { return options_.endpoints[endpoint]; }

  etcdserverpb::KV::Stub& kv(size_t endpoint) const { return *kv_[endpoint]; }
  etcdserverpb::Lease::Stub& lease(size_t endpoint) const { return *lease_[endpoint]; }
  etcdserverpb::Watch::Stub& watch(size_t endpoint) const { return *watch_[endpoint]; }

  // The endpoint the next call or stream starts at: the last one that did not fail.
  size_t current() const { return current_.load(std::memory_order_relaxed); }
  // `endpoint` failed: the next call starts at the one after it (unless another thread has
  // already moved on from it).
  void Failed(size_t endpoint);

  // Waits until `endpoint`'s channel is connected, is idle (the next call then connects and
  // waits for it), `deadline` (at most kConnectWait from now) passes, or `stopped` (checked
  // every kStopCheck when given) returns true. See kConnectWait.
  void AwaitConnection(size_t endpoint, std::chrono::system_clock::time_point deadline,
                       const std::function<bool()>& stopped = nullptr) const;

  // What a call with failover ended with.
  struct Outcome {
    grpc::Status status;  // of the last attempt
    size_t endpoint = 0;  // of the last attempt
    // An attempt before the last ended UNAVAILABLE: it may have been applied.
    bool earlier_unavailable = false;
    // "endpoint: CODE: message" of every attempt, "; "-separated.
    std::string attempts;
  };
  // Runs `attempt` with a fresh context whose deadline is options().call_timeout from now
  // (AwaitConnection first, within it), first on current(); while it fails with UNAVAILABLE,
  // on the next endpoint, each at most once.
  Outcome Call(const std::function<grpc::Status(size_t endpoint, grpc::ClientContext*)>& attempt);

  // The error of a failed Outcome: "etcd <what> at <endpoint>: CODE: message", or for every
  // endpoint failing with UNAVAILABLE "etcd <what> failed at every endpoint (<attempts>)".
  absl::Status Error(absl::string_view what, const Outcome& outcome) const;

 private:
  const EtcdOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv_;
  std::vector<std::unique_ptr<etcdserverpb::Lease::Stub>> lease_;
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> watch_;
  std::atomic<size_t> current_{0};
};

// A gRPC status for messages: "CODE: message".
std::string Describe(const grpc::Status& status);

// Key text for messages: C-escaped, in quotes.
std::string Quoted(absl::string_view key);

// The keys starting with `prefix` as etcd's [key, range_end): range_end is `prefix` with its
// last byte below 0xff incremented and what follows dropped, or "\0" (no upper bound) when
// there is no such byte; an empty prefix is key "\0" (etcd refuses an empty key), every key.
struct KeyRange {
  std::string key;
  std::string range_end;
};
KeyRange PrefixRange(absl::string_view prefix);

// Metadata for watch and keepalive streams: etcd ends the stream (UNAVAILABLE) when its
// member loses the raft leader, instead of leaving it silent; the stream then moves on.
void RequireLeader(grpc::ClientContext* context);

}  // namespace luxdb::cluster
