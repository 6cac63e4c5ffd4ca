// EtcdPrefixWatcher: what EtcdClient::WatchPrefix returns (see its contract in
// etcd_client.h). One thread per watch follows a Watch stream and reopens it where it broke.
// Internal to cluster/.
//
// Locks: mu_ only. Held to register the stream and to cancel it (BidiStream::Cancel takes no
// lock of ours, only gRPC's), never while waiting on the stream or running a callback. The
// stream's own lock (BidiStream::mu_) is never held while taking mu_.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cluster/etcd_client.h"
#include "cluster/etcd_endpoints.h"
#include "cluster/etcd_stream.h"
#include "engine/mutex.h"

namespace luxdb::cluster {

class EtcdPrefixWatcher final : public EtcdClient::Watcher {
 public:
  using OnEvents = std::function<void(const std::vector<WatchEvent>&)>;

  // Starts the thread.
  EtcdPrefixWatcher(std::shared_ptr<EtcdEndpoints> endpoints, std::string prefix,
                    int64_t start_revision, OnEvents on_events, std::function<void()> on_reset);
  // Stops the thread (cancelling the stream) and joins it; a callback that is running
  // finishes first.
  ~EtcdPrefixWatcher() override;
  EtcdPrefixWatcher(const EtcdPrefixWatcher&) = delete;
  EtcdPrefixWatcher& operator=(const EtcdPrefixWatcher&) = delete;

 private:
  using Clock = std::chrono::steady_clock;
  using Stream = BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;
  // How following one stream ended.
  enum class End { kBroken, kCompacted };

  void Run();
  // Creates the watch on `stream` from next_revision_ and delivers its events until the stream
  // breaks (`*why` says how, when etcd said) or etcd reports the revision compacted.
  End Follow(Stream& stream, std::string* why);
  // As in EtcdLeaseKeeper.
  bool SleepUntil(Clock::time_point until);
  bool Stopping();
  bool Register(Stream* stream);

  const std::shared_ptr<EtcdEndpoints> endpoints_;
  const std::string prefix_;
  const OnEvents on_events_;
  const std::function<void()> on_reset_;
  // The first revision not yet delivered (0 until etcd has created the first watch from
  // "now"). The watcher's thread only.
  int64_t next_revision_;
  StreamRetryPause pause_;  // the watcher's thread only

  // Guards the stop request and the stream in use; stop_ wakes a sleep.
  engine::Mutex mu_;
  engine::CondVar stop_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;

  std::thread thread_;  // started last in the constructor
};

}  // namespace luxdb::cluster
