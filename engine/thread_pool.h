// A fixed pool of worker threads for splitting one request's work across cores.
//
// Locks: mu_ only, a leaf: fn runs, and workers run tasks, without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/mutex.h"

namespace luxdb::engine {

class ThreadPool {
 public:
  // Starts `threads` - 1 workers: the thread calling ParallelFor is the last worker.
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t threads() const { return workers_.size() + 1; }

  // Calls fn(begin, end) over consecutive chunks of at most `grain` items covering [0, n),
  // on the calling thread and on idle workers, and returns when every chunk is done. Safe to
  // call from many threads at once; fn must not throw.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

 private:
  struct Task {
    uint64_t call;  // the ParallelFor call that queued it
    std::function<void()> run;
  };
  void WorkerLoop();

  // Guards the task queue and the stop flag; wake_ tells idle workers a task or the stop came.
  Mutex mu_;
  CondVar wake_;
  std::vector<Task> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_call_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // set by the constructor only
};

}  // namespace luxdb::engine
