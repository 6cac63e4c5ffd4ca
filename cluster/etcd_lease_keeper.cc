#include "cluster/etcd_lease_keeper.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace luxdb::cluster {

EtcdLeaseKeeper::EtcdLeaseKeeper(std::shared_ptr<EtcdEndpoints> endpoints, int64_t lease,
                                 std::chrono::seconds ttl, std::function<void()> on_lost)
    : endpoints_(std::move(endpoints)), lease_(lease), ttl_(ttl), on_lost_(std::move(on_lost)) {
  {
    engine::MutexLock lock(&mu_);
    renewed_ = Clock::now();  // the lease was just granted or renewed
  }
  thread_ = std::thread([this] { Run(); });
}

EtcdLeaseKeeper::~EtcdLeaseKeeper() {
  {
    engine::MutexLock lock(&mu_);
    stopping_ = true;
    if (stream_ != nullptr) stream_->Cancel();
    stop_.SignalAll();
  }
  thread_.join();
}

bool EtcdLeaseKeeper::lost() const {
  engine::MutexLock lock(&mu_);
  return lost_;
}

std::chrono::steady_clock::time_point EtcdLeaseKeeper::valid_until() const {
  engine::MutexLock lock(&mu_);
  return lost_ ? Clock::time_point::min() : renewed_ + ttl_;
}

bool EtcdLeaseKeeper::SleepUntil(Clock::time_point until) {
  engine::MutexLock lock(&mu_);
  while (!stopping_ && stop_.WaitUntil(&mu_, until)) {
  }
  return !stopping_;
}

bool EtcdLeaseKeeper::Stopping() {
  engine::MutexLock lock(&mu_);
  return stopping_;
}

bool EtcdLeaseKeeper::Register(Stream* stream) {
  engine::MutexLock lock(&mu_);
  if (stopping_ && stream != nullptr) return false;
  stream_ = stream;
  return true;
}

void EtcdLeaseKeeper::Run() {
  const Clock::duration ttl = ttl_;
  const Clock::duration interval = ttl / 3;
  // A renewal that takes longer than this is given up, and the stream with it: another
  // endpoint may answer in time.
  const Clock::duration answer_timeout =
      std::min<Clock::duration>(interval, endpoints_->options().call_timeout);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease_);

  // The lease counts as renewed when the keeper starts (it was just granted or renewed).
  Clock::time_point renewed = Clock::now();
  Clock::time_point next_send = renewed;
  StreamRetryPause pause;
  std::unique_ptr<Stream> stream;
  size_t endpoint = 0;
  std::string lost_because;
  for (;;) {
    const Clock::time_point expiry = renewed + ttl;
    if (Clock::now() >= expiry) {
      lost_because = absl::StrCat("no renewal succeeded for its TTL of ", ttl_.count(), " s");
      break;
    }
    if (stream == nullptr) {
      endpoint = endpoints_->current();
      endpoints_->AwaitConnection(
          endpoint,
          std::chrono::system_clock::now() +
              std::chrono::duration_cast<std::chrono::system_clock::duration>(expiry -
                                                                              Clock::now()),
          [this] { return Stopping(); });
      stream = std::make_unique<Stream>(
          [&](grpc::ClientContext* context, Stream::Reactor* reactor) {
            endpoints_->lease(endpoint).async()->LeaseKeepAlive(context, reactor);
          },
          RequireLeader);
      if (!Register(stream.get())) break;
    }
    if (!SleepUntil(std::min(next_send, expiry))) break;
    if (Clock::now() >= expiry) continue;

    const Clock::time_point sent = Clock::now();
    const Clock::time_point answer_deadline = std::min(expiry, sent + answer_timeout);
    etcdserverpb::LeaseKeepAliveResponse response;
    Stream::ReadResult read = Stream::ReadResult::kClosed;
    if (stream->Write(request, answer_deadline)) read = stream->Read(&response, answer_deadline);
    if (read == Stream::ReadResult::kMessage) {
      if (response.ttl() <= 0) {
        lost_because = "etcd says it no longer exists (revoked or expired)";
        break;
      }
      renewed = sent;
      {
        engine::MutexLock lock(&mu_);
        renewed_ = sent;
      }
      next_send = sent + interval;
      pause.Reset();
      continue;
    }

    // The stream broke, or etcd did not answer in time: reopen it, on the next endpoint.
    Register(nullptr);
    const grpc::Status status = stream->Finish(
        read == Stream::ReadResult::kTimeout ? Clock::now() : Clock::now() + kStreamCloseGrace);
    stream.reset();
    endpoints_->Failed(endpoint);
    spdlog::info("etcd lease {:x}: keepalive at {} failed ({}); reopening the stream", lease_,
                 endpoints_->name(endpoint),
                 read == Stream::ReadResult::kTimeout ? "no answer in time" : Describe(status));
    if (!SleepUntil(std::min(Clock::now() + pause.Next(), expiry))) break;
  }
  if (stream != nullptr) {
    Register(nullptr);
    stream.reset();  // cancels the call and waits until gRPC is done with it
  }
  if (lost_because.empty()) return;  // being destroyed
  {
    engine::MutexLock lock(&mu_);
    if (stopping_) return;
    lost_ = true;
  }
  spdlog::warn("etcd lease {:x} is lost: {}", lease_, lost_because);
  on_lost_();
}

}  // namespace luxdb::cluster
