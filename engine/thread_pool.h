// A fixed pool of worker threads for splitting one request's work across cores.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

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

  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<Task> queue_;  // guarded by mu_
  uint64_t next_call_ = 0;   // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace luxdb::engine
