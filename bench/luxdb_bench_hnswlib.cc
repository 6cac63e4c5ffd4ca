// The in-process reference: hnswlib 0.6.2's HierarchicalNSW<float>, built and searched the way
// its Python bindings do it (addPoint / searchKnn from a ParallelFor over an atomic counter),
// compiled with the engine's SIMD flags. The bench's only translation unit that includes
// hnswlib (its header defines non-inline functions).
#include <hnswlib/hnswlib.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bench/luxdb_bench.h"

namespace luxdb::bench {
namespace {

using Graph = hnswlib::HierarchicalNSW<float>;

// Runs fn(i) for i in [begin, end) on `threads` threads, one index at a time from a shared
// counter, as hnswlib's python_bindings ParallelFor does.
template <typename Fn>
void ParallelFor(size_t begin, size_t end, int threads, Fn fn) {
  std::atomic<size_t> next{begin};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < end;) fn(i);
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back(work);
  work();
  for (std::thread& worker : workers) worker.join();
}

std::string SimdLevel(size_t dim) {
#if defined(USE_AVX512)
  const char* isa = "AVX-512";
#elif defined(USE_AVX)
  const char* isa = "AVX";
#elif defined(USE_SSE)
  const char* isa = "SSE";
#else
  const char* isa = "scalar";
#endif
  const char* kernel = dim % 16 == 0  ? "16-float kernel"
                       : dim % 4 == 0 ? "4-float kernel"
                                      : "kernel with scalar residuals";
  return absl::StrCat(isa, " compiled in, ", kernel, " for dim ", dim);
}

// Bytes hnswlib allocates for `g`, counted from its fields: level 0 (links, vector, label) for
// max_elements, the per-element upper link lists, locks, levels, link-list pointers, the label
// map and one visited list per searching thread.
uint64_t TheoreticalBytes(const Graph& g, int threads) {
  uint64_t bytes = uint64_t{g.max_elements_} * g.size_data_per_element_;
  for (size_t i = 0; i < g.cur_element_count; ++i) {
    bytes += uint64_t(g.element_levels_[i]) * g.size_links_per_element_;
  }
  bytes += g.link_list_locks_.size() * sizeof(std::mutex);
  bytes += g.link_list_update_locks_.size() * sizeof(std::mutex);
  bytes += g.element_levels_.size() * sizeof(int);
  bytes += g.max_elements_ * sizeof(void*);
  // std::unordered_map node: next pointer + pair<labeltype, tableint>, malloc rounds to 32.
  bytes += g.label_lookup_.bucket_count() * sizeof(void*) + g.label_lookup_.size() * 32;
  bytes += uint64_t(threads) * g.max_elements_ * sizeof(hnswlib::vl_type);
  return bytes;
}

uint64_t GraphFileBytes(const Graph& g) {
  uint64_t bytes = 8 * sizeof(size_t) + sizeof(int) + sizeof(hnswlib::tableint) + sizeof(double);
  bytes += uint64_t{g.cur_element_count} * g.size_data_per_element_;
  for (size_t i = 0; i < g.cur_element_count; ++i) {
    bytes += sizeof(unsigned) + uint64_t(g.element_levels_[i]) * g.size_links_per_element_;
  }
  return bytes;
}

// The k nearest labels of `query`, nearest first.
void Search(const Graph& g, const float* query, size_t k, uint64_t* out) {
  auto top = g.searchKnn(query, k);
  size_t found = top.size();
  for (size_t i = found; i < k; ++i) out[i] = ~uint64_t{0};
  for (size_t i = found; i-- > 0; top.pop()) out[i] = top.top().second;
}

}  // namespace

struct HnswlibSide::Impl {
  Impl(const Config& config, const Dataset& data, const GroundTruth& truth)
      : config(config), data(data), truth(truth), space(data.dim) {}
  const Config& config;
  const Dataset& data;
  const GroundTruth& truth;
  // Declared before graph: hnswlib keeps a pointer to the space.
  hnswlib::L2Space space;
  std::unique_ptr<Graph> graph;
  bool measured = false;
  uint64_t rss_delta_bytes = 0;
  uint64_t theoretical_bytes = 0;
  uint64_t graph_file_bytes = 0;
};

HnswlibSide::HnswlibSide(const Config& config, const Dataset& data, const GroundTruth& truth)
    : impl_(std::make_unique<Impl>(config, data, truth)) {}
HnswlibSide::~HnswlibSide() = default;

void HnswlibSide::Free() { impl_->graph.reset(); }
uint64_t HnswlibSide::rss_delta_bytes() const { return impl_->rss_delta_bytes; }
uint64_t HnswlibSide::theoretical_bytes() const { return impl_->theoretical_bytes; }
uint64_t HnswlibSide::graph_file_bytes() const { return impl_->graph_file_bytes; }
std::string HnswlibSide::simd() const { return SimdLevel(impl_->data.dim); }

IngestResult HnswlibSide::Build() {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  Free();
  const uint64_t rss_before = ProcStatusBytes(getpid(), "VmRSS");
  const PhaseMeter meter;
  const Clock::time_point start = Clock::now();
  impl_->graph =
      std::make_unique<Graph>(&impl_->space, data.n, config.m, config.ef_construction, 100);
  Graph& graph = *impl_->graph;
  graph.addPoint(data.row(0).data(), 0);  // the first element goes in alone
  ParallelFor(1, data.n, config.threads, [&](size_t i) { graph.addPoint(data.row(i).data(), i); });
  IngestResult result{.vectors = data.n, .seconds = SecondsSince(start), .clients = config.threads};
  meter.Fill(&result);
  if (!impl_->measured) {
    const uint64_t rss_after = ProcStatusBytes(getpid(), "VmRSS");
    impl_->rss_delta_bytes = rss_after > rss_before ? rss_after - rss_before : 0;
    impl_->theoretical_bytes = TheoreticalBytes(graph, config.threads);
    impl_->graph_file_bytes = GraphFileBytes(graph);
    impl_->measured = true;
  }
  return result;
}

BatchQueryResult HnswlibSide::BatchQuery(uint32_t ef) {
  const Dataset& data = impl_->data;
  const size_t k = impl_->config.k;
  Graph& graph = *impl_->graph;
  std::vector<uint64_t> ids(data.nq * k);
  graph.setEf(ef);  // no search runs concurrently here
  const PhaseMeter meter;
  const Clock::time_point start = Clock::now();
  ParallelFor(0, data.nq, impl_->config.threads,
              [&](size_t q) { Search(graph, data.query(q).data(), k, ids.data() + q * k); });
  BatchQueryResult result{.ef = ef, .queries = data.nq, .calls = 1, .seconds = SecondsSince(start)};
  meter.Fill(&result);
  result.recall = Recall(data, impl_->truth, ids, k);
  return result;
}

SingleQueryResult HnswlibSide::SingleQueries(int threads) {
  const Config& config = impl_->config;
  const Dataset& data = impl_->data;
  const size_t k = config.k;
  Graph& graph = *impl_->graph;
  graph.setEf(config.single_ef);
  std::vector<std::vector<double>> latencies(threads);
  // The answers of each thread's first pass over the queries, for recall after the clock stops.
  std::vector<uint64_t> answers(data.nq * k, ~uint64_t{0});
  std::vector<std::atomic<bool>> answered(data.nq);
  std::atomic<bool> stop{false};
  const PhaseMeter meter;
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<uint64_t> row(k);
      latencies[t].reserve(1 << 20);
      for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const size_t q = (t * data.nq / threads + i) % data.nq;
        const Clock::time_point sent = Clock::now();
        Search(graph, data.query(q).data(), k, row.data());
        latencies[t].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
        if (i < data.nq && !answered[q].exchange(true)) {
          std::copy(row.begin(), row.end(), answers.begin() + q * k);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(config.duration_s));
  stop = true;
  for (std::thread& worker : workers) worker.join();
  SingleQueryResult result;
  result.seconds = SecondsSince(start);
  meter.Fill(&result);
  result.clients = threads;
  std::vector<double> all;
  for (int t = 0; t < threads; ++t) all.insert(all.end(), latencies[t].begin(), latencies[t].end());
  double recall_sum = 0;
  size_t recall_rows = 0;
  for (size_t q = 0; q < data.nq; ++q) {
    if (!answered[q]) continue;
    recall_sum += RecallOfRow(data, impl_->truth, q, std::span(answers).subspan(q * k, k));
    ++recall_rows;
  }
  result.queries = all.size();
  result.p50_ms = Percentile(all, 50);
  result.p99_ms = Percentile(all, 99);
  result.recall = recall_rows == 0 ? 0 : recall_sum / recall_rows;
  return result;
}

}  // namespace luxdb::bench
