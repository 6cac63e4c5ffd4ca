// EtcdLeaseKeeper: what EtcdClient::KeepAlive returns (see its contract in etcd_client.h). One
// thread per lease renews it on a LeaseKeepAlive stream. Internal to cluster/.
//
// Locks: mu_ only. Held to register the stream and to cancel it (BidiStream::Cancel takes no
// lock of ours, only gRPC's), never while waiting on the stream or running on_lost. The
// stream's own lock (BidiStream::mu_) is never held while taking mu_.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "cluster/etcd_client.h"
#include "cluster/etcd_endpoints.h"
#include "cluster/etcd_stream.h"
#include "engine/mutex.h"

namespace luxdb::cluster {

class EtcdLeaseKeeper final : public EtcdClient::LeaseKeeper {
 public:
  // Starts the thread.
  EtcdLeaseKeeper(std::shared_ptr<EtcdEndpoints> endpoints, int64_t lease, std::chrono::seconds ttl,
                  std::function<void()> on_lost);
  // Stops the thread (cancelling a keepalive in flight) and joins it. Does not revoke.
  ~EtcdLeaseKeeper() override;
  EtcdLeaseKeeper(const EtcdLeaseKeeper&) = delete;
  EtcdLeaseKeeper& operator=(const EtcdLeaseKeeper&) = delete;

  bool lost() const override;
  std::chrono::steady_clock::time_point valid_until() const override;

 private:
  using Clock = std::chrono::steady_clock;
  using Stream =
      BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

  void Run();
  // Waits until `until`; false if the keeper is being destroyed.
  bool SleepUntil(Clock::time_point until);
  // Whether the keeper is being destroyed.
  bool Stopping();
  // Makes `stream` (nullptr: none) the one the destructor cancels; false (and nothing
  // registered) if the keeper is being destroyed.
  bool Register(Stream* stream);

  const std::shared_ptr<EtcdEndpoints> endpoints_;
  const int64_t lease_;
  const std::chrono::seconds ttl_;
  const std::function<void()> on_lost_;

  // Guards the stop request, the lost flag, the last renewal and the stream in use; stop_ wakes a
  // sleep.
  mutable engine::Mutex mu_;
  engine::CondVar stop_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  Clock::time_point renewed_ ABSL_GUARDED_BY(mu_);  // see valid_until()
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;

  std::thread thread_;  // started last in the constructor
};

}  // namespace luxdb::cluster
