// BidiStream: one bidirectional gRPC stream (etcd's Watch or LeaseKeepAlive) driven by a
// single owner thread with blocking calls that take deadlines, on top of gRPC's callback API.
// The owner can so wait for an answer no longer than it can afford (a lease keeper must act
// before its TTL runs out), and another thread can end every wait at once with Cancel().
// Internal to cluster/.
//
// At most one read and one write are in flight, so nothing is buffered beyond one message
// each way: etcd holds what it has not sent yet.
//
// Threads: Write, Read and Finish belong to the owner thread, which must not call Write or
// Read after Finish; Cancel may be called from any thread while the object exists. gRPC runs the
// On* callbacks on its own threads. Locks: mu_ only, a leaf (gRPC is called without it).
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "cluster/etcd_endpoints.h"
#include "engine/mutex.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "grpcpp/support/status.h"

namespace luxdb::cluster {

template <typename Request, typename Response>
class BidiStream final : public grpc::ClientBidiReactor<Request, Response> {
 public:
  using Clock = std::chrono::steady_clock;
  using Reactor = grpc::ClientBidiReactor<Request, Response>;
  // Binds the reactor to a call, e.g. stub.async()->Watch(context, reactor).
  using Begin = std::function<void(grpc::ClientContext*, Reactor*)>;

  enum class ReadResult { kMessage, kTimeout, kClosed };

  // Starts the call. `prepare` may add metadata to the context before.
  BidiStream(const Begin& begin, const std::function<void(grpc::ClientContext*)>& prepare) {
    prepare(&context_);
    begin(&context_, this);
    // The owner starts reads and writes from outside the callbacks: the hold keeps gRPC from
    // finishing the call (and freeing its state) under them until Finish.
    this->AddHold();
    this->StartCall();
  }
  // Cancels the call if it is still open and waits until gRPC is done with it.
  ~BidiStream() override { Finish(Clock::now()); }
  BidiStream(const BidiStream&) = delete;
  BidiStream& operator=(const BidiStream&) = delete;

  // Sends `request` and waits until it is written. false if the stream broke or `deadline`
  // passed first (the write then stays in flight; the stream should be given up).
  bool Write(const Request& request, Clock::time_point deadline) {
    {
      engine::MutexLock lock(&mu_);
      while (writing_ && !broken_) {
        if (!changed_.WaitUntil(&mu_, deadline) && writing_) return false;
      }
      if (broken_) return false;
      writing_ = true;
      outgoing_ = request;  // gRPC reads it until OnWriteDone
    }
    this->StartWrite(&outgoing_);
    engine::MutexLock lock(&mu_);
    while (writing_) {
      if (!changed_.WaitUntil(&mu_, deadline) && writing_) return false;
    }
    return !broken_;
  }

  // Waits for the next message until `deadline`: kMessage with it in `*response`, kTimeout
  // (the read stays in flight: a later Read continues it), or kClosed when the stream ended.
  ReadResult Read(Response* response, Clock::time_point deadline) {
    bool start = false;
    {
      engine::MutexLock lock(&mu_);
      if (!reading_ && !received_ && !broken_) {
        reading_ = true;
        start = true;
      }
    }
    if (start) this->StartRead(&incoming_);  // gRPC writes incoming_ until OnReadDone
    engine::MutexLock lock(&mu_);
    while (!received_ && reading_) {
      if (!changed_.WaitUntil(&mu_, deadline) && !received_ && reading_) {
        return ReadResult::kTimeout;
      }
    }
    if (!received_) return ReadResult::kClosed;
    received_ = false;
    *response = std::move(incoming_);
    return ReadResult::kMessage;
  }

  // Ends the call: waits for its end until `grace` (so that a status the server sent is
  // kept), then cancels it, and waits until gRPC is done. Returns its status.
  grpc::Status Finish(Clock::time_point grace) {
    if (held_) {
      held_ = false;
      this->RemoveHold();
    }
    {
      engine::MutexLock lock(&mu_);
      while (!done_) {
        if (!changed_.WaitUntil(&mu_, grace)) break;
      }
      if (done_) return status_;
    }
    context_.TryCancel();
    engine::MutexLock lock(&mu_);
    while (!done_) changed_.Wait(&mu_);
    return status_;
  }

  // Ends every wait of the owner (the stream then reads as closed). Any thread.
  void Cancel() { context_.TryCancel(); }

 private:
  void OnWriteDone(bool ok) override {
    engine::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) broken_ = true;
    changed_.SignalAll();
  }
  void OnReadDone(bool ok) override {
    engine::MutexLock lock(&mu_);
    reading_ = false;
    if (ok) {
      received_ = true;
    } else {
      broken_ = true;
    }
    changed_.SignalAll();
  }
  // The last callback: the owner may destroy the object once done_ is set, so the signal is
  // sent with mu_ held.
  void OnDone(const grpc::Status& status) override {
    engine::MutexLock lock(&mu_);
    done_ = true;
    broken_ = true;
    reading_ = false;
    writing_ = false;
    status_ = status;
    changed_.SignalAll();
  }

  grpc::ClientContext context_;
  bool held_ = true;  // owner thread only: the hold taken at the start is not removed yet
  // Owned by gRPC while a write (a read) is in flight, by the owner thread otherwise; the
  // hand-over is ordered by mu_ (writing_, reading_ and received_).
  Request outgoing_;
  Response incoming_;

  // Guards the state of the call as the callbacks report it; changed_ wakes the owner.
  engine::Mutex mu_;
  engine::CondVar changed_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;   // a write is in flight
  bool reading_ ABSL_GUARDED_BY(mu_) = false;   // a read is in flight
  bool received_ ABSL_GUARDED_BY(mu_) = false;  // incoming_ holds an unread message
  bool broken_ ABSL_GUARDED_BY(mu_) = false;    // a read or write failed: no more will succeed
  bool done_ ABSL_GUARDED_BY(mu_) = false;      // OnDone ran
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// The pauses before reopening a broken stream: kStreamRetryFirst, doubling up to
// kStreamRetryMax; Reset once the stream works again. Not thread-safe (one owner thread).
class StreamRetryPause {
 public:
  std::chrono::milliseconds Next() {
    const std::chrono::milliseconds pause = next_;
    next_ = std::min(next_ * 2, kStreamRetryMax);
    return pause;
  }
  void Reset() { next_ = kStreamRetryFirst; }

 private:
  std::chrono::milliseconds next_ = kStreamRetryFirst;
};

}  // namespace luxdb::cluster
