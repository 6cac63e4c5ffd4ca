#include "server/server_metrics.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "luxdb/connect_options.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace luxdb::server {
namespace {

// Upper bounds of luxdb_call_duration_seconds' buckets: from 50 µs (a one-vector query takes
// about 0.3 ms) to 5 minutes (--max-call-seconds' default).
const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300};
  return *buckets;
}

// The process' resident memory, from /proc/self/statm; 0 if unreadable.
uint64_t ResidentBytes() {
  FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) return 0;
  unsigned long long pages = 0;
  unsigned long long resident = 0;
  const bool read = std::fscanf(statm, "%llu %llu", &pages, &resident) == 2;
  std::fclose(statm);
  return read ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type) {
  return {.name = std::move(name), .help = std::move(help), .type = type, .metric = {}};
}

void AddGauge(prometheus::MetricFamily* family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family->metric.push_back(std::move(metric));
}

}  // namespace

// The metrics read at scrape time: per index, storage and process.
class ServerMetrics::CatalogCollector final : public prometheus::Collectable {
 public:
  explicit CatalogCollector(const ServerMetrics* owner) : owner_(owner) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> families;
    auto rss = Family("luxdb_process_resident_memory_bytes",
                      "Resident memory of the server process (RSS).", MetricType::Gauge);
    AddGauge(&rss, static_cast<double>(ResidentBytes()));
    families.push_back(std::move(rss));

    engine::MutexLock lock(&owner_->catalog_mu_);
    if (owner_->catalog_ == nullptr) return families;  // storage not open (yet, or any more)
    const storage::StoreStats storage = owner_->catalog_->StorageStats();
    auto written = Family("luxdb_storage_written_bytes_total",
                          "Bytes of keys and values written to storage (RocksDB) since the "
                          "server started.",
                          MetricType::Counter);
    prometheus::ClientMetric written_metric;
    written_metric.counter.value = static_cast<double>(storage.bytes_written);
    written.metric.push_back(std::move(written_metric));
    families.push_back(std::move(written));
    auto live =
        Family("luxdb_storage_live_data_bytes",
               "RocksDB's estimate of the bytes its live data takes on disk.", MetricType::Gauge);
    AddGauge(&live, static_cast<double>(storage.live_data_bytes));
    families.push_back(std::move(live));

    auto items = Family("luxdb_index_items", "Live items of the index.", MetricType::Gauge);
    auto tombstones = Family("luxdb_index_tombstones",
                             "Deleted and replaced items the index's graph still holds until a "
                             "compaction.",
                             MetricType::Gauge);
    auto memory = Family("luxdb_index_memory_bytes",
                         "Memory reserved for the index's graph (charged to the memory budget).",
                         MetricType::Gauge);
    auto backlog = Family("luxdb_index_replay_backlog_items",
                          "Items written since the index's last graph snapshot: what a restart "
                          "after a crash replays.",
                          MetricType::Gauge);
    auto age = Family("luxdb_index_snapshot_age_seconds",
                      "Seconds since the index's last graph snapshot was written (indexes with "
                      "a snapshot only).",
                      MetricType::Gauge);
    const auto now = std::chrono::system_clock::now();
    for (const engine::IndexInfo& info : owner_->catalog_->List()) {
      std::vector<prometheus::ClientMetric::Label> labels = {{"index", info.name}};
      AddGauge(&items, static_cast<double>(info.element_count), labels);
      AddGauge(&tombstones, static_cast<double>(info.tombstones), labels);
      AddGauge(&memory, static_cast<double>(info.memory_bytes), labels);
      AddGauge(&backlog, static_cast<double>(info.unsnapshotted_items), labels);
      if (info.snapshot_written.has_value()) {
        const double seconds = std::chrono::duration<double>(now - *info.snapshot_written).count();
        AddGauge(&age, std::max(seconds, 0.0), labels);
      }
    }
    for (auto* family : {&items, &tombstones, &memory, &backlog, &age}) {
      if (!family->metric.empty()) families.push_back(std::move(*family));
    }
    return families;
  }

 private:
  const ServerMetrics* const owner_;
};

ServerMetrics::ServerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  calls_ = &prometheus::BuildCounter()
                .Name("luxdb_calls_total")
                .Help(
                    "Calls of luxdb.v1.LuxDB finished, by method and gRPC status code (each "
                    "query of a QueryStream counts as one call).")
                .Register(*registry_);
  durations_ = &prometheus::BuildHistogram()
                    .Name("luxdb_call_duration_seconds")
                    .Help(
                        "Time from a call's arrival to its answer, by method (for a "
                        "QueryStream, each query's).")
                    .Register(*registry_);
  refusals_ = &prometheus::BuildCounter()
                   .Name("luxdb_auth_refusals_total")
                   .Help("Calls refused for their token before reaching the service, by reason.")
                   .Register(*registry_);
  in_flight_ = &prometheus::BuildGauge()
                    .Name("luxdb_calls_in_flight")
                    .Help(
                        "Calls of luxdb.v1.LuxDB begun and not finished (open QueryStreams "
                        "included).")
                    .Register(*registry_)
                    .Add({});
  collector_ = std::make_shared<CatalogCollector>(this);
}

ServerMetrics::~ServerMetrics() { StopServing(); }

// The exposer's HTTP server (civetweb) notices that it is being stopped only between polls of
// its listening socket, which last 2 s, or when a connection arrives: destroying it took
// 1.5-2 s, all of it added to the server's shutdown. A thread connects to it every 20 ms until
// it is gone (about 40 ms).
void ServerMetrics::StopServing() {
  if (exposer_ == nullptr) return;
  const int port = this->port();
  // The wildcard address is reached on the loopback interface.
  const std::string host = served_host_ == "0.0.0.0" ? "127.0.0.1" : served_host_;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* target = nullptr;
  const std::string service = std::to_string(port);
  if (port == 0 || getaddrinfo(host.c_str(), service.c_str(), &hints, &target) != 0) {
    exposer_.reset();  // slowly, but stopped all the same
    return;
  }
  std::atomic<bool> stopped{false};
  std::thread waker([&] {
    while (!stopped.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const int fd = socket(target->ai_family, target->ai_socktype | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      connect(fd, target->ai_addr, target->ai_addrlen);
      close(fd);
    }
  });
  exposer_.reset();
  stopped = true;
  waker.join();
  freeaddrinfo(target);
}

prometheus::Counter& ServerMetrics::CallCounter(Method method, grpc::StatusCode code) {
  code = KnownStatusCode(code);
  std::atomic<prometheus::Counter*>& slot =
      call_counters_[static_cast<size_t>(method)][static_cast<size_t>(code)];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    counter = &calls_->Add({{"method", std::string(InfoOf(method).name)},
                            {"code", std::string(StatusCodeName(code))}});
    slot.store(counter, std::memory_order_release);
  }
  return *counter;
}

prometheus::Histogram& ServerMetrics::CallDuration(Method method) {
  std::atomic<prometheus::Histogram*>& slot = call_durations_[static_cast<size_t>(method)];
  prometheus::Histogram* histogram = slot.load(std::memory_order_acquire);
  if (histogram == nullptr) {
    histogram = &durations_->Add({{"method", std::string(InfoOf(method).name)}}, DurationBuckets());
    slot.store(histogram, std::memory_order_release);
  }
  return *histogram;
}

void ServerMetrics::RecordCall(Method method, grpc::StatusCode code,
                               std::chrono::nanoseconds duration) {
  CallCounter(method, code).Increment();
  CallDuration(method).Observe(std::chrono::duration<double>(duration).count());
}

void ServerMetrics::RecordRefusal(const MethodInfo* method, grpc::StatusCode code,
                                  absl::string_view reason) {
  refusals_->Add({{"reason", std::string(reason)}}).Increment();
  if (method != nullptr) CallCounter(method->method, code).Increment();
}

void ServerMetrics::AttachCatalog(engine::Catalog* catalog) {
  engine::MutexLock lock(&catalog_mu_);
  catalog_ = catalog;
}

absl::Status ServerMetrics::Serve(const std::string& host, int port) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(client::JoinHostPort(host, port));
  } catch (const std::exception& error) {  // civetweb could not listen there
    return absl::UnavailableError(error.what());
  }
  served_host_ = host;
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(collector_);
  return absl::OkStatus();
}

int ServerMetrics::port() const {
  if (exposer_ == nullptr) return 0;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string ServerMetrics::Text() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& family : collector_->Collect()) {
    families.push_back(std::move(family));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace luxdb::server
