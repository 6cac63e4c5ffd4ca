// luxdb-server: serves a LuxDB data directory over gRPC, or imports an hnswlib file into it.
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <iostream>
#include <map>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/catalog.h"
#include "luxdb/version.h"
#include "server/logging.h"
#include "server/memory_trimmer.h"
#include "server/options.h"
#include "server/server.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace {

std::map<std::string, std::string> Environment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    absl::string_view text(*entry);
    const size_t eq = text.find('=');
    if (eq != absl::string_view::npos) env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return env;
}

int Import(const luxdb::server::Options& options) {
  absl::StatusOr<luxdb::storage::Space> space = luxdb::engine::ParseSpace(options.import_space);
  if (!space.ok()) {
    luxdb::server::Report(spdlog::level::err,
                          absl::StrCat("luxdb-server: --import-space: ", space.status().message()));
    return 2;
  }
  absl::StatusOr<std::unique_ptr<luxdb::engine::Catalog>> catalog = luxdb::engine::Catalog::Open(
      options.data_dir, {.threads = options.threads,
                         .sync = options.sync,
                         .memory_budget_bytes = options.memory_budget_mb << 20});
  if (!catalog.ok()) {
    luxdb::server::Report(spdlog::level::err,
                          absl::StrCat("luxdb-server: ", catalog.status().message()));
    return 1;
  }
  absl::Status imported =
      (*catalog)->Import(options.import_path, options.import_name, *space, options.import_dim);
  absl::Status closed = (*catalog)->Close();
  if (!imported.ok() || !closed.ok()) {
    luxdb::server::Report(spdlog::level::err,
                          absl::StrCat("luxdb-server: import failed: ",
                                       imported.ok() ? closed.message() : imported.message()));
    return 1;
  }
  luxdb::server::Report(
      spdlog::level::info,
      absl::StrCat("luxdb-server: imported '", options.import_path, "' as index '",
                   options.import_name, "' into ", options.data_dir));
  return 0;
}

// Request and response buffers of batch calls can be tens of MiB. glibc raises its mmap
// threshold to the size of the largest block freed (up to 32 MiB), after which such buffers
// come from the heap and their pages stay resident after the call: 50-100 MiB more peak RSS
// in luxdb-bench. A fixed threshold maps the buffers above it and returns them on free. It is
// 16 MiB, not lower: every mapped buffer is page-faulted in again, and protobuf grows a
// request's packed floats by doubling, so at 1 MiB a batch query of 1,250 Fashion-MNIST
// vectors (3.9 MB) spent a quarter of the server's CPU in those copies and faults (perf);
// 16 MiB took about a third off the server's CPU per query there. Buffers below it stay on
// the heap of the arena of the thread that freed them, and glibc gives each thread an arena
// of its own up to 8 per core: peak RSS in luxdb-bench rose by 20-50 MiB with the default
// arenas, 20 MiB with one arena per worker thread (--threads, at least 2).
// GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N or glibc.malloc.arena_max=N still override these
// (and glibc.malloc.trim_threshold=N the one LuxServer sets while indexes load).
void TuneMalloc(size_t threads) {
  constexpr int kMmapThresholdBytes = 16 << 20;
  if (!luxdb::server::MallocTunableSet("malloc.mmap_threshold"))
    mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  if (!luxdb::server::MallocTunableSet("malloc.arena_max")) {
    const size_t workers = threads != 0 ? threads : std::thread::hardware_concurrency();
    mallopt(M_ARENA_MAX, static_cast<int>(std::clamp<size_t>(workers, 2, 64)));
  }
}

// Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock detection on: every
// lock gRPC takes then goes through a global lock-order graph (GraphCycles, 1-2 % of the
// server's CPU under single queries in perf). LuxDB's own code uses std::mutex.
void SkipMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

// Every client connection holds a descriptor, and storage up to about 160 whatever the number
// of indexes (128 table files, its logs and directory). Many systems start processes with a
// soft limit of 1024 and a far higher hard limit: at the soft limit, accept fails and new
// clients time out. The soft limit is raised to the hard one; below this, a warning says so.
void RaiseOpenFileLimit() {
  constexpr rlim_t kLowOpenFileLimit = 4096;
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    const rlim_t before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
      spdlog::info("raised the open file limit from {} to {}", before, limit.rlim_cur);
    } else {
      limit.rlim_cur = before;
    }
  }
  if (limit.rlim_cur < kLowOpenFileLimit) {
    spdlog::warn(
        "the open file limit is {}: storage may hold about 160 descriptors and every client "
        "connection one; raise it (ulimit -n, LimitNOFILE=, docker --ulimit nofile=) to at least "
        "{} so that new clients are not refused",
        limit.rlim_cur, kLowOpenFileLimit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--version") {
      std::cout << "luxdb-server " << LUXDB_VERSION << "\n";
      return 0;
    }
  }
  bool help = false;
  absl::StatusOr<luxdb::server::Options> options = luxdb::server::ParseOptions(
      std::vector<std::string>(argv + 1, argv + argc), Environment(), &help);
  if (help) {
    std::cout << luxdb::server::UsageText();
    return 0;
  }
  if (!options.ok()) {
    std::cerr << "luxdb-server: " << options.status().message() << "\n";
    return 2;
  }
  luxdb::server::SetUpLogging(options->loglevel, options->log_format);
  RaiseOpenFileLimit();
  TuneMalloc(options->threads);
  SkipMutexDeadlockDetection();
  if (!options->import_path.empty()) return Import(*options);

  // Block the shutdown signals in every thread; this thread collects them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<luxdb::server::LuxServer>> server =
      luxdb::server::LuxServer::Start(*options);
  if (!server.ok()) {
    luxdb::server::Report(spdlog::level::err,
                          absl::StrCat("luxdb-server: ", server.status().message()));
    return 1;
  }
  // Calls are answered once storage is open; the line below, which harness::ServerProcess
  // waits for, is printed once every index has loaded (health SERVING).
  std::promise<absl::Status> opened;
  std::future<absl::Status> opened_result = opened.get_future();
  std::thread watcher([&] {
    const absl::Status open = (*server)->WaitUntilLoaded();
    opened.set_value(open);
    if (!open.ok()) {
      kill(getpid(), SIGTERM);  // wakes the sigwait below
      return;
    }
    if ((*server)->WaitUntilReady().ok()) {  // not ok: shutdown began first
      luxdb::server::Report(spdlog::level::info,
                            absl::StrCat("luxdb-server: serving '", options->data_dir, "' on ",
                                         options->host, ":", (*server)->port()));
    }
  });
  int signal = 0;
  sigwait(&signals, &signal);
  const absl::Status loaded = opened_result.get();
  if (loaded.ok()) {
    spdlog::warn("received {}, shutting down (grace {} s)", signal == SIGINT ? "SIGINT" : "SIGTERM",
                 options->grace_seconds);
  }
  absl::Status stopped = (*server)->Shutdown(std::chrono::seconds(options->grace_seconds));
  watcher.join();  // Shutdown ended its wait for the indexes
  if (!loaded.ok()) {
    luxdb::server::Report(spdlog::level::err, absl::StrCat("luxdb-server: ", loaded.message()));
    return 1;
  }
  if (!stopped.ok()) {
    spdlog::error("shutdown incomplete: {}", stopped.ToString());
    return 1;
  }
  return 0;
}
