// RequestLog: the server's log of calls, at --loglevel info (README "Metrics and logs").
//
// One line for every call of a method that changes state (CreateIndex, AddItems, Backup, ...;
// MethodInfo::mutates) and for every call that fails, refusals of a token included: method,
// index, items, status code, milliseconds, peer, and for a failure its message. Successful
// calls of the other methods (queries above all) get no line of their own: once a period (a
// second) one "reads" line sums them up, with their count per method and latency percentiles,
// so the log stays small however many queries arrive.
//
// Text:
//   call method=AddItems index=docs items=100 code=OK ms=3.214 peer=ipv4:127.0.0.1:50312
//   call method=QueryIndex index=nope code=NOT_FOUND ms=0.051 peer=ipv4:127.0.0.1:50312
//       error="index 'nope' does not exist"                              (one line)
//   reads seconds=1.00 calls=1000 p50_ms=0.312 p99_ms=0.918 max_ms=2.104 QueryIndex=1000
// JSON (--log-format json): the same fields as members, "msg" being "call" or "reads", the
// per-method counts of a summary under "methods". Text values other than plain words are
// quoted with C escapes, so a line never spans two; peers unknown (a call refused for its
// token, which is checked before gRPC gives the call a peer) are left out.
//
// Thread safety: Record may be called from any thread; it never blocks on another call (the
// summary is kept in atomic counters). Percentiles are approximate: within 12.5 % (latencies
// are counted in 8 buckets per doubling), capped at the exact maximum.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "engine/mutex.h"
#include "server/calls.h"
#include "server/options.h"
#include "spdlog/logger.h"

namespace luxdb::server {

class RequestLog {
 public:
  // Writes through `logger` (server/logging.h's RequestLogger) in `format`, and does nothing at
  // all unless `logger` logs info. Sums successful reads up every `summary_period`.
  RequestLog(std::shared_ptr<spdlog::logger> logger, LogFormat format,
             std::chrono::milliseconds summary_period = std::chrono::seconds(1));
  // Writes the summary of the reads not summed up yet, then stops the summary thread.
  ~RequestLog();
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  bool enabled() const { return enabled_; }
  // Whether Record writes a line of its own for such a call (it needs the call's subject,
  // peer and message then), rather than only counting it toward the summary.
  bool WritesLine(const MethodInfo* method, grpc::StatusCode code) const {
    return enabled_ && (method == nullptr || method->mutates || code != grpc::StatusCode::OK);
  }
  void Record(const CallRecord& call);
  // Writes the summary of the reads since the last one now (none if there were none).
  void Summarize() ABSL_LOCKS_EXCLUDED(summary_mu_);

 private:
  // Latencies in nanoseconds, in buckets of an eighth of a doubling (see BucketOf).
  static constexpr size_t kLatencyBuckets = 8 + 61 * 8;
  static size_t BucketOf(uint64_t nanoseconds);
  static uint64_t BucketUpperBound(size_t bucket);

  void WriteLine(const CallRecord& call);
  void SummaryLoop() ABSL_LOCKS_EXCLUDED(stop_mu_);

  const std::shared_ptr<spdlog::logger> logger_;
  const LogFormat format_;
  const bool enabled_;
  const std::chrono::milliseconds summary_period_;

  // The reads since the last summary: counted by Record, taken (exchanged for 0) by Summarize.
  std::array<std::atomic<uint64_t>, kMethodCount> reads_{};
  std::array<std::atomic<uint64_t>, kLatencyBuckets> latencies_{};
  std::atomic<uint64_t> max_latency_ns_{0};
  // Serialises Summarize (the thread's and the destructor's); guards when the last one was.
  engine::Mutex summary_mu_;
  std::chrono::steady_clock::time_point last_summary_ ABSL_GUARDED_BY(summary_mu_);

  // Wakes the summary thread to stop; guards only stop_.
  engine::Mutex stop_mu_;
  engine::CondVar stop_cv_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread thread_;  // runs SummaryLoop while enabled_
};

}  // namespace luxdb::server
