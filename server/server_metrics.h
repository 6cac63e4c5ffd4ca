// ServerMetrics: LuxDB's Prometheus metrics (README "Metrics and logs" lists them all), served
// at http://HOST:PORT/metrics by prometheus-cpp's exposer.
//
// Two kinds:
//  - counted as calls finish (RecordCall, RecordRefusal, the in-flight gauge): prometheus-cpp's
//    atomic counters, gauges and histograms. The instruments of each method and status code
//    are looked up once and kept, so a call costs a few atomic operations and one short
//    histogram lock, never a label lookup;
//  - read at scrape time from the attached catalog (items, tombstones, memory, snapshot age
//    and replay backlog per index; storage's bytes written and live data size) and from
//    /proc (resident memory). The series of a deleted index vanish with it.
//
// Labels are bounded: `method` is one of luxdb.v1.LuxDB's methods, `code` one of gRPC's status
// codes, `reason` one of auth's refusal reasons, `index` one of the catalog's indexes.
//
// Thread safety: every method may be called from any thread. Lock order: catalog_mu_, then the
// catalog's own locks (Collect lists the indexes while holding it); nothing else is locked
// under it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/catalog.h"
#include "engine/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/calls.h"

namespace prometheus {
class Exposer;
}

namespace luxdb::server {

class ServerMetrics {
 public:
  ServerMetrics();
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // luxdb_calls_total{method,code} and luxdb_call_duration_seconds{method}.
  void RecordCall(Method method, grpc::StatusCode code, std::chrono::nanoseconds duration);
  // A call refused for its token before it reached the service: luxdb_auth_refusals_total
  // {reason}, and luxdb_calls_total{method,code} where `method` is one of LuxDB's (null: not).
  void RecordRefusal(const MethodInfo* method, grpc::StatusCode code, absl::string_view reason);
  // luxdb_calls_in_flight: calls begun and not yet finished (open QueryStreams included).
  void CallStarted() { in_flight_->Increment(); }
  void CallEnded() { in_flight_->Decrement(); }

  // The catalog scrapes read the per-index and storage metrics from; null detaches it (they
  // are then left out). Blocks while a scrape is reading the previous one.
  void AttachCatalog(engine::Catalog* catalog) ABSL_LOCKS_EXCLUDED(catalog_mu_);

  // Serves /metrics on `host` (a numeric IPv4 address: "127.0.0.1", "0.0.0.0"; Debian's
  // civetweb has no IPv6) and `port`. UNAVAILABLE with the HTTP server's reason if it cannot
  // listen there. Call at most once.
  absl::Status Serve(const std::string& host, int port);
  // The port Serve listens on (0 before).
  int port() const;

  // Every metric in Prometheus' text format, as a scrape of /metrics gets it (without the
  // exposer's own exposer_* metrics).
  std::string Text() const;

 private:
  class CatalogCollector;

  prometheus::Counter& CallCounter(Method method, grpc::StatusCode code);
  prometheus::Histogram& CallDuration(Method method);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* calls_;
  prometheus::Family<prometheus::Histogram>* durations_;
  prometheus::Family<prometheus::Counter>* refusals_;
  prometheus::Gauge* in_flight_;
  // Made on a method's (and code's) first call, then read without a lock (Family::Add returns
  // the same instrument to racing callers).
  std::array<std::array<std::atomic<prometheus::Counter*>, kStatusCodeCount>, kMethodCount>
      call_counters_{};
  std::array<std::atomic<prometheus::Histogram*>, kMethodCount> call_durations_{};

  // Guards the attached catalog while a scrape reads it.
  mutable engine::Mutex catalog_mu_;
  engine::Catalog* catalog_ ABSL_GUARDED_BY(catalog_mu_) = nullptr;
  std::shared_ptr<CatalogCollector> collector_;
  // Last: stopped first (StopServing), so no scrape runs while the rest is destroyed.
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string served_host_;  // what Serve listens on

  // Destroys the exposer, promptly (see server_metrics.cc).
  void StopServing();
};

}  // namespace luxdb::server
