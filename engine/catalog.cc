#include "engine/catalog.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/limits.h"
#include "engine/resources.h"
#include "spdlog/spdlog.h"

namespace luxdb::engine {
namespace {

// Items read from storage and inserted in parallel per step of a rebuild.
constexpr size_t kRebuildChunk = 8192;
// Items per storage commit during an import.
constexpr size_t kImportBatch = 10000;
constexpr auto kProgressInterval = std::chrono::seconds(5);
// How often the background thread looks for indexes due a snapshot.
constexpr auto kSnapshotPollInterval = std::chrono::milliseconds(200);

bool IsKnownSpace(storage::Space space) {
  return space == storage::Space::kL2 || space == storage::Space::kIp ||
         space == storage::Space::kCosine;
}

absl::Status ValidateShape(const std::string& name, storage::Space space, uint32_t dim) {
  if (absl::Status s = ValidateIndexName(name); !s.ok()) return s;
  if (!IsKnownSpace(space)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown space ", static_cast<int>(space),
                                                   " for index '", name,
                                                   "'; use l2, ip or cosine"));
  }
  if (dim < 1 || dim > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dimension of index '", name, "' must be between 1 and ", kMaxDimension, ", got ", dim));
  }
  return absl::OkStatus();
}

// Logs "<what>: N items (R/s)" at most every kProgressInterval.
class ProgressLog {
 public:
  explicit ProgressLog(std::string what) : what_(std::move(what)) {}
  void Update(uint64_t done) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < kProgressInterval) return;
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    spdlog::info("{}: {} items ({:.0f}/s)", what_, done, done / seconds);
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::string what_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

// The first error of several threads.
class FirstError {
 public:
  void Update(const absl::Status& status) {
    MutexLock lock(&mu_);
    status_.Update(status);
  }
  absl::Status Get() {
    MutexLock lock(&mu_);
    return status_;
  }

 private:
  Mutex mu_;  // guards status_
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// Inserts ids[i] with vectors[i * dim ...] into `graph`, spread over `pool`. Once `stop` is
// set, gives up between items with `stopped()`.
absl::Status InsertAll(HnswGraph& graph, ThreadPool& pool, std::span<const uint64_t> ids,
                       std::span<const float> vectors, uint32_t dim, const std::atomic<bool>& stop,
                       const std::function<absl::Status()>& stopped) {
  size_t first = 0;
  if (graph.element_count() == 0 && !ids.empty()) {  // hnswlib wants its first element alone
    if (absl::Status s = graph.Add(vectors.data(), ids[0]); !s.ok()) return s;
    first = 1;
  }
  FirstError error;
  pool.ParallelFor(ids.size() - first, 32, [&](size_t begin, size_t end) {
    for (size_t i = first + begin; i < first + end; ++i) {
      if (stop.load(std::memory_order_relaxed)) {
        error.Update(stopped());
        return;
      }
      if (absl::Status s = graph.Add(vectors.data() + i * dim, ids[i]); !s.ok()) error.Update(s);
    }
  });
  return error.Get();
}

}  // namespace

absl::StatusOr<storage::Space> ParseSpace(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "l2") return storage::Space::kL2;
  if (lower == "ip") return storage::Space::kIp;
  if (lower == "cosine") return storage::Space::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown space '", text, "'; use l2, ip or cosine"));
}

Catalog::Catalog(std::unique_ptr<storage::Store> store, std::unique_ptr<ThreadPool> pool,
                 const Options& options)
    : store_(std::move(store)),
      pool_(std::move(pool)),
      options_(options),
      budget_(options.memory_budget_bytes) {}

Catalog::~Catalog() {
  StopLoading();
  {
    MutexLock lock(&snapshotter_mu_);
    snapshotter_stop_ = true;
  }
  snapshotter_cv_.SignalAll();
  if (snapshotter_.joinable()) snapshotter_.join();
  WriterLock lock(&mu_);
  indexes_.clear();  // before the pool and store they point to
}

std::vector<std::shared_ptr<Index>> Catalog::ReadyIndexes() const {
  std::vector<std::shared_ptr<Index>> indexes;
  ReaderLock lock(&mu_);
  for (const auto& [name, entry] : indexes_) {
    if (entry.state == Entry::State::kReady) indexes.push_back(entry.index);
  }
  return indexes;
}

void Catalog::SnapshotLoop() {
  MutexLock lock(&snapshotter_mu_);
  while (!snapshotter_stop_) {
    snapshotter_cv_.WaitUntil(&snapshotter_mu_,
                              std::chrono::steady_clock::now() + kSnapshotPollInterval);
    if (snapshotter_stop_) break;
    snapshotter_mu_.unlock();
    for (const std::shared_ptr<Index>& index : ReadyIndexes()) {
      if (aborting_) break;
      if (index->UnsnapshottedItems() < options_.snapshot_every) continue;
      if (absl::Status s = index->SaveSnapshot(); !s.ok()) {
        spdlog::error("index '{}': background graph snapshot failed: {}", index->name(),
                      s.ToString());
      }
    }
    snapshotter_mu_.lock();
  }
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& dir,
                                                       const Options& options) {
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<storage::Store>> store =
      storage::Store::Open(dir, {.sync = options.sync});
  if (!store.ok()) return store.status();
  spdlog::info("storage of '{}' opened in {:.2f} s", dir,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  const size_t threads =
      options.threads != 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::unique_ptr<Catalog> catalog(
      new Catalog(*std::move(store), std::make_unique<ThreadPool>(threads), options));
  // Every index is listed at once; those with a graph answer UNAVAILABLE until it loads.
  std::vector<storage::IndexConfig> to_load;
  {
    WriterLock lock(&catalog->mu_);
    for (storage::IndexConfig& config : catalog->store_->ListIndexes()) {
      const bool loading = config.initialized;
      if (loading) to_load.push_back(config);
      const std::string name = config.name;
      auto index = std::make_shared<Index>(std::move(config), nullptr, catalog->Context(), loading);
      catalog->indexes_.emplace(
          name, Entry{.index = std::move(index),
                      .state = loading ? Entry::State::kLoading : Entry::State::kReady,
                      .failure = {}});
    }
  }
  catalog->loads_total_ = to_load.size();
  catalog->loader_ =
      std::thread([c = catalog.get(), configs = std::move(to_load)] { c->LoadAll(configs); });
  if (options.snapshot_every > 0) {
    catalog->snapshotter_ = std::thread([c = catalog.get()] { c->SnapshotLoop(); });
  }
  return catalog;
}

void Catalog::LoadAll(const std::vector<storage::IndexConfig>& configs) {
  const auto started = std::chrono::steady_clock::now();
  // Indexes load in parallel on the pool, one at a time per thread: with thousands of small
  // indexes a restart is dominated by per-index work (files opened, checksums, allocations).
  pool_->ParallelFor(configs.size(), 1, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) LoadOne(configs[i]);
  });
  if (stop_loading_) {
    spdlog::warn(
        "loading stopped by the shutdown; the indexes it did not finish load again at the next "
        "start");
  } else {
    spdlog::info("{} indexes loaded in {:.2f} s", configs.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  MutexLock lock(&load_mu_);
  loaded_ = true;
  load_cv_.SignalAll();
}

void Catalog::LoadOne(const storage::IndexConfig& config) {
  std::shared_ptr<Index> index;
  {
    ReaderLock lock(&mu_);
    index = indexes_.at(config.name).index;  // Drop refuses indexes still loading
  }
  absl::StatusOr<Loaded> loaded = Loaded{};
  if (absl::Status s = CheckLoadNotStopped(config.name); !s.ok()) {
    loaded = s;
  } else {
    Hook("load", config.name);
    loaded = LoadGraph(config);
    if (loaded.ok()) {
      // Attributes live in storage only (graph snapshots do not hold them): read them all.
      absl::Status read =
          store_->ScanAttributes(config, [&](uint64_t id, std::string_view bytes) -> absl::Status {
            absl::StatusOr<ItemAttributes> attributes = DecodeAttributes(bytes);
            if (!attributes.ok()) {
              return absl::Status(attributes.status().code(),
                                  absl::StrCat("item ", id, ": ", attributes.status().message()));
            }
            loaded->attributes.Set(id, *attributes);
            return CheckLoadNotStopped(config.name);
          });
      if (!read.ok()) loaded = read;
    }
  }
  absl::Status failure;
  if (loaded.ok()) {
    index->FinishLoad(std::move(loaded->graph), loaded->snapshot_version,
                      loaded->unsnapshotted_items, std::move(loaded->attributes),
                      loaded->snapshot_written);
  } else {
    failure = loaded.status();
    if (!absl::IsUnavailable(failure)) {  // not stopped by the shutdown
      failure = absl::Status(failure.code(), absl::StrCat("cannot load index '", config.name,
                                                          "': ", failure.message()));
      spdlog::error("{}", std::string(failure.message()));
    }
    index->FailLoad(failure);
  }
  ++loads_done_;
  WriterLock lock(&mu_);
  Entry& entry = indexes_.at(config.name);
  entry.state = failure.ok() ? Entry::State::kReady : Entry::State::kFailed;
  entry.failure = std::move(failure);
}

absl::Status Catalog::CheckLoadNotStopped(const std::string& name) const {
  if (!stop_loading_.load(std::memory_order_relaxed)) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("index '", name,
                   "' was still loading when the server began shutting down; it loads "
                   "again at the next start"));
}

absl::Status Catalog::StillLoading(const std::string& name) const {
  return absl::UnavailableError(absl::StrCat("index '", name, "' is still loading (",
                                             loads_done_.load(), " of ", loads_total_,
                                             " indexes loaded); retry shortly"));
}

void Catalog::WaitUntilLoaded() const {
  MutexLock lock(&load_mu_);
  while (!loaded_) load_cv_.Wait(&load_mu_);
}

bool Catalog::AllLoaded() const {
  MutexLock lock(&load_mu_);
  return loaded_;
}

void Catalog::StopLoading() {
  stop_loading_ = true;
  std::call_once(loader_joined_, [this] {
    if (loader_.joinable()) loader_.join();
  });
}

absl::StatusOr<Catalog::Loaded> Catalog::LoadGraph(const storage::IndexConfig& config) {
  const auto started = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  std::string why_rebuild;
  absl::StatusOr<storage::SnapshotFile> snapshot = store_->FindSnapshot(config.cf_id);
  if (snapshot.ok() && snapshot->version > config.version) {
    why_rebuild = absl::StrCat("its graph snapshot is of version ", snapshot->version,
                               ", newer than the stored data (", config.version, ")");
  } else if (snapshot.ok()) {
    // A large snapshot's checksum is computed on another core while the graph loads (both
    // read the file); a small one's inline, where a thread would cost more than the checksum.
    constexpr uint64_t kVerifyAsyncFromBytes = uint64_t{8} << 20;
    std::future<absl::Status> verified = std::async(
        snapshot->size >= kVerifyAsyncFromBytes ? std::launch::async : std::launch::deferred,
        [&] { return store_->VerifySnapshot(*snapshot); });
    absl::StatusOr<std::unique_ptr<HnswGraph>> graph = HnswGraph::Load(
        snapshot->path, config.space, config.dim, GraphCapacity(config.max_elements));
    const absl::Status verify = verified.get();
    if (!verify.ok()) {
      why_rebuild = absl::StrCat("its graph snapshot is damaged (", verify.message(), ")");
    } else if (!graph.ok()) {
      why_rebuild = absl::StrCat("its graph snapshot is unusable (", graph.status().message(), ")");
    } else if ((*graph)->m() != config.m) {
      why_rebuild = absl::StrCat("its graph snapshot has M ", (*graph)->m(), ", not ", config.m);
    } else if (snapshot->version == config.version) {
      spdlog::info("index '{}': loaded graph snapshot ({} items) in {:.2f} s", config.name,
                   (*graph)->element_count(), seconds());
      return Loaded{*std::move(graph), snapshot->version, 0, {}, snapshot->written};
    } else {
      absl::StatusOr<uint64_t> replayed = Replay(config, snapshot->version, *graph);
      if (replayed.ok()) {
        spdlog::info(
            "index '{}': loaded graph snapshot of version {} and replayed {} writes ({} items) "
            "up to version {} in {:.2f} s",
            config.name, snapshot->version, config.version - snapshot->version, *replayed,
            config.version, seconds());
        return Loaded{*std::move(graph), snapshot->version, *replayed, {}, snapshot->written};
      }
      why_rebuild = absl::StrCat("the writes after its graph snapshot cannot be replayed (",
                                 replayed.status().message(), ")");
    }
  } else if (absl::IsNotFound(snapshot.status())) {
    why_rebuild = "it has no graph snapshot";
  } else {
    why_rebuild = absl::StrCat("its graph snapshot is damaged (", snapshot.status().message(), ")");
  }
  spdlog::warn("index '{}': {}; rebuilding the graph from the stored vectors", config.name,
               why_rebuild);
  absl::StatusOr<std::unique_ptr<HnswGraph>> rebuilt = RebuildGraph(config);
  if (!rebuilt.ok()) return rebuilt.status();
  const uint64_t items = (*rebuilt)->element_count();
  return Loaded{*std::move(rebuilt), std::nullopt, items, {}, std::nullopt};
}

absl::StatusOr<uint64_t> Catalog::Replay(const storage::IndexConfig& config,
                                         uint64_t snapshot_version,
                                         std::unique_ptr<HnswGraph>& graph) {
  // Every id touched after the snapshot, once, in first-touch order; its stored state is
  // its final state, which is what the graph must show.
  std::vector<uint64_t> touched;
  absl::flat_hash_set<uint64_t> seen;
  absl::Status scanned =
      store_->ScanHistory(config, snapshot_version, [&](uint64_t, std::span<const uint64_t> ids) {
        for (uint64_t id : ids) {
          if (seen.insert(id).second) touched.push_back(id);
        }
        return absl::OkStatus();
      });
  if (!scanned.ok()) return scanned;
  seen.clear();

  std::vector<uint64_t> add_ids;
  std::vector<float> add_vectors;
  std::vector<uint64_t> to_delete;
  std::vector<float> current(config.dim);
  auto insert = [&]() -> absl::Status {
    // Every add takes a new element; a graph without room for them is copied into a larger one.
    if (const uint64_t needed = graph->element_count() + add_ids.size();
        needed > graph->max_elements()) {
      absl::StatusOr<std::unique_ptr<HnswGraph>> larger =
          graph->Copy(std::max(needed, GraphCapacity(config.max_elements)));
      if (!larger.ok()) return larger.status();
      graph = *std::move(larger);
    }
    absl::Status error = InsertAll(*graph, *pool_, add_ids, add_vectors, config.dim, stop_loading_,
                                   [&] { return CheckLoadNotStopped(config.name); });
    graph->TombstoneSuperseded();  // the old elements of replaced ids
    add_ids.clear();
    add_vectors.clear();
    return error;
  };
  for (uint64_t id : touched) {
    if (absl::Status s = CheckLoadNotStopped(config.name); !s.ok()) return s;
    absl::StatusOr<storage::StoredItem> item = store_->GetItem(config, id);
    if (!item.ok()) return item.status();
    const HnswGraph::Presence presence = graph->Find(id);
    if (item->deleted) {
      if (presence == HnswGraph::Presence::kLive) to_delete.push_back(id);
      continue;
    }
    // Live in storage: re-add unless the graph already holds this vector, live. A live
    // element with another vector is replaced by a new one (vectors never change in place).
    if (presence == HnswGraph::Presence::kLive && graph->CopyVector(id, current.data()) &&
        std::memcmp(current.data(), item->vector.data(), current.size() * sizeof(float)) == 0) {
      continue;
    }
    add_ids.push_back(id);
    add_vectors.insert(add_vectors.end(), item->vector.begin(), item->vector.end());
    if (add_ids.size() == kRebuildChunk) {
      if (absl::Status s = insert(); !s.ok()) return s;
    }
  }
  if (absl::Status s = insert(); !s.ok()) return s;
  for (uint64_t id : to_delete) graph->Tombstone(id);
  return touched.size();
}

absl::StatusOr<std::unique_ptr<HnswGraph>> Catalog::RebuildGraph(
    const storage::IndexConfig& config) {
  absl::StatusOr<std::unique_ptr<HnswGraph>> created =
      HnswGraph::Create({config.space, config.dim, GraphCapacity(config.max_elements), config.m,
                         config.ef_construction, config.random_seed});
  if (!created.ok()) return created.status();
  HnswGraph& graph = **created;
  ProgressLog progress(absl::StrCat("index '", config.name, "': rebuilding graph"));

  std::vector<uint64_t> ids;
  std::vector<float> vectors;
  uint64_t deleted = 0;  // stored deleted: not in the graph at all
  uint64_t total = 0;
  auto insert_chunk = [&]() -> absl::Status {
    absl::Status error = InsertAll(graph, *pool_, ids, vectors, config.dim, stop_loading_,
                                   [&] { return CheckLoadNotStopped(config.name); });
    total += ids.size();
    ids.clear();
    vectors.clear();
    progress.Update(total);
    if (error.ok()) Hook("rebuild_chunk", config.name);
    return error;
  };
  absl::Status scanned = store_->ScanItems(
      config, [&](uint64_t id, std::span<const float> vector, bool is_deleted) -> absl::Status {
        if (absl::Status s = CheckLoadNotStopped(config.name); !s.ok()) return s;
        if (is_deleted) {
          ++deleted;
          return absl::OkStatus();
        }
        if (total + ids.size() >= graph.max_elements()) {
          return absl::DataLossError(absl::StrCat("storage holds more than max_elements ",
                                                  config.max_elements, " live items"));
        }
        ids.push_back(id);
        vectors.insert(vectors.end(), vector.begin(), vector.end());
        return ids.size() == kRebuildChunk ? insert_chunk() : absl::OkStatus();
      });
  if (!scanned.ok()) return scanned;
  if (absl::Status s = insert_chunk(); !s.ok()) return s;
  spdlog::info("index '{}': rebuilt graph of {} items ({} deleted ones left out) in {:.1f} s",
               config.name, total, deleted, progress.seconds());
  return created;
}

absl::Status Catalog::ReserveName(const std::string& name) {
  for (;;) {
    std::shared_future<void> dropped;
    {
      WriterLock lock(&mu_);
      if (indexes_.contains(name) || creating_.contains(name)) {
        return absl::AlreadyExistsError(absl::StrCat("index '", name, "' already exists"));
      }
      auto it = dropping_.find(name);
      if (it == dropping_.end()) {
        creating_.insert(name);
        return absl::OkStatus();
      }
      dropped = it->second;
    }
    // Storage still catalogues the name until the Drop is done, and drops by name: a new
    // index of the same name must not be created under it.
    dropped.wait();
  }
}

void Catalog::Publish(const std::string& name, std::shared_ptr<Index> index) {
  WriterLock lock(&mu_);
  creating_.erase(name);
  if (index != nullptr) {
    indexes_.emplace(
        name, Entry{.index = std::move(index), .state = Entry::State::kReady, .failure = {}});
  }
}

absl::Status Catalog::Create(const std::string& name, storage::Space space, uint32_t dim) {
  if (absl::Status s = ValidateShape(name, space, dim); !s.ok()) return s;
  if (absl::Status s = ReserveName(name); !s.ok()) return s;
  storage::IndexConfig config;
  config.name = name;
  config.space = space;
  config.dim = dim;
  Hook("create", name);
  absl::StatusOr<storage::IndexConfig> created = store_->CreateIndex(config);
  if (!created.ok()) {
    Publish(name, nullptr);
    return created.status();
  }
  Publish(name, std::make_shared<Index>(*std::move(created), nullptr, Context()));
  return absl::OkStatus();
}

absl::Status Catalog::Drop(const std::string& name) {
  if (absl::Status s = ValidateIndexName(name); !s.ok()) return s;
  Entry entry;
  std::promise<void> done;
  {
    WriterLock lock(&mu_);
    auto it = indexes_.find(name);
    if (it == indexes_.end()) {
      return absl::NotFoundError(absl::StrCat("index '", name, "' does not exist"));
    }
    if (it->second.state == Entry::State::kLoading) return StillLoading(name);
    entry = std::move(it->second);
    indexes_.erase(it);
    dropping_.emplace(name, done.get_future().share());
  }
  // Waits for the index's calls in flight, outside the catalog lock: other indexes, and
  // Get of this name (NOT_FOUND now), go on meanwhile.
  absl::Status dropped = entry.index->Drop([&] {
    Hook("drop", name);
    return store_->DropIndex(name);
  });
  {
    WriterLock lock(&mu_);
    dropping_.erase(name);
    if (!dropped.ok()) indexes_.emplace(name, std::move(entry));
  }
  done.set_value();
  return dropped;
}

absl::StatusOr<std::shared_ptr<Index>> Catalog::Get(const std::string& name) const {
  if (absl::Status s = ValidateIndexName(name); !s.ok()) return s;
  ReaderLock lock(&mu_);
  auto it = indexes_.find(name);
  if (it == indexes_.end()) {
    return absl::NotFoundError(absl::StrCat("index '", name, "' does not exist"));
  }
  switch (it->second.state) {
    case Entry::State::kLoading:
      return StillLoading(name);
    case Entry::State::kFailed:
      return it->second.failure;
    case Entry::State::kReady:
      break;
  }
  return it->second.index;
}

bool Catalog::Exists(const std::string& name) const {
  ReaderLock lock(&mu_);
  return indexes_.contains(name);
}

std::vector<IndexInfo> Catalog::List() const {
  std::vector<std::shared_ptr<Index>> indexes;
  {
    ReaderLock lock(&mu_);
    for (const auto& [name, entry] : indexes_) indexes.push_back(entry.index);
  }
  std::vector<IndexInfo> infos;
  infos.reserve(indexes.size());
  for (const auto& index : indexes) infos.push_back(index->Info());
  return infos;
}

absl::Status Catalog::Import(const std::string& path, const std::string& name, storage::Space space,
                             uint32_t dim) {
  if (absl::Status s = ValidateShape(name, space, dim); !s.ok()) return s;
  if (absl::Status s = ReserveName(name); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<Index>> imported = ImportReserved(path, name, space, dim);
  Publish(name, imported.ok() ? *imported : nullptr);
  return imported.status();
}

absl::StatusOr<std::shared_ptr<Index>> Catalog::ImportReserved(const std::string& path,
                                                               const std::string& name,
                                                               storage::Space space, uint32_t dim) {
  absl::StatusOr<std::unique_ptr<HnswGraph>> loaded = HnswGraph::Load(path, space, dim, 0);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<HnswGraph> graph = *std::move(loaded);
  if (graph->m() > kMaxM) {
    return absl::InvalidArgumentError(absl::StrCat("hnswlib file '", path, "' has M ", graph->m(),
                                                   "; LuxDB allows at most ", kMaxM));
  }
  // Held until the Index takes the graph over and reserves it itself.
  const uint64_t graph_bytes = HnswGraph::EstimateBytes(dim, graph->m(), graph->max_elements());
  if (absl::Status s =
          budget_.Reserve(graph_bytes, absl::StrCat("importing '", path, "' as index '", name,
                                                    "' with max_elements ", graph->max_elements()));
      !s.ok()) {
    return s;
  }

  storage::IndexConfig config;
  config.name = name;
  config.space = space;
  config.dim = dim;
  Hook("create", name);
  absl::StatusOr<storage::IndexConfig> created = store_->CreateIndex(config);
  if (!created.ok()) {
    budget_.Release(graph_bytes);
    return created.status();
  }
  config = *std::move(created);
  config.initialized = true;
  config.max_elements = graph->max_elements();
  config.m = graph->m();
  config.ef_construction = graph->ef_construction();
  config.ef = kDefaultEf;
  config.random_seed = kDefaultRandomSeed;

  ProgressLog progress(absl::StrCat("importing '", path, "' as index '", name, "'"));
  uint64_t total = 0;
  storage::ItemWrite batch;
  auto commit = [&]() -> absl::Status {
    ++config.version;
    absl::Status s = store_->Commit(config, batch);
    batch = storage::ItemWrite();
    progress.Update(total);
    return s;
  };
  absl::Status status = store_->UpdateConfig(config);
  graph->ForEachElement([&](uint64_t label, const float* vector, bool deleted) {
    if (!status.ok()) return;
    // What AddItems refuses, an import refuses too.
    if (label == kMissingId) {
      status = absl::InvalidArgumentError(
          absl::StrCat("'", path, "' holds an item with id ", kMissingId,
                       ", which LuxDB reserves to mark missing query results; nothing imported"));
      return;
    }
    if (const float* bad =
            std::find_if(vector, vector + dim, [](float x) { return !std::isfinite(x); });
        bad != vector + dim) {
      status = absl::InvalidArgumentError(
          absl::StrCat("'", path, "': item ", label, " has a non-finite component (", *bad,
                       " at position ", bad - vector, "); nothing imported"));
      return;
    }
    batch.Put(label, std::span<const float>(vector, dim));
    if (deleted) batch.MarkDeleted(label);
    ++total;
    if (batch.size() >= kImportBatch) status = commit();
  });
  if (status.ok() && batch.size() > 0) status = commit();
  if (status.ok()) status = graph->Save(store_->TempSnapshotPath(config.cf_id));
  if (status.ok()) status = store_->PublishSnapshot(config.cf_id, config.version);
  if (status.ok()) status = store_->TrimHistory(config, config.version);
  if (!status.ok()) {
    budget_.Release(graph_bytes);
    if (absl::Status dropped = store_->DropIndex(name); !dropped.ok()) {
      spdlog::error("import of '{}' failed and its partial index '{}' could not be removed: {}",
                    path, name, dropped.ToString());
    }
    return status;
  }
  spdlog::info("imported '{}' as index '{}': {} items ({} deleted) in {:.1f} s", path, name, total,
               graph->deleted_count(), progress.seconds());
  budget_.Release(graph_bytes);
  auto index = std::make_shared<Index>(config, std::move(graph), Context());
  index->SetSnapshotState(config.version, 0, std::chrono::system_clock::now());
  return index;
}

absl::StatusOr<uint64_t> Catalog::Backup(const storage::BackupTarget& target) {
  WriterLock lock(&publish_mu_);
  return store_->Backup(target);
}

absl::Status Catalog::Close() {
  StopLoading();
  {
    MutexLock lock(&snapshotter_mu_);
    snapshotter_stop_ = true;
  }
  snapshotter_cv_.SignalAll();
  if (snapshotter_.joinable()) snapshotter_.join();
  // Snapshots are written on every pool thread (each is a few fsyncs: with thousands of
  // indexes, their latency, not the CPU, is what a shutdown waits for), the indexes with most
  // to replay first.
  // Indexes whose load did not finish keep their last snapshot: the next Open loads them
  // again from it and storage.
  std::vector<std::shared_ptr<Index>> indexes = ReadyIndexes();
  std::sort(indexes.begin(), indexes.end(), [](const auto& a, const auto& b) {
    return a->UnsnapshottedItems() > b->UnsnapshottedItems();
  });
  std::vector<absl::Status> saved(indexes.size());
  pool_->ParallelFor(indexes.size(), 1, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) saved[i] = indexes[i]->SaveSnapshot();
  });
  absl::Status status;
  for (size_t i = 0; i < indexes.size(); ++i) {
    if (saved[i].ok()) continue;
    spdlog::error("index '{}': graph snapshot not saved: {}", indexes[i]->name(),
                  saved[i].ToString());
    status.Update(saved[i]);
  }
  status.Update(store_->Flush());
  return status;
}

}  // namespace luxdb::engine
