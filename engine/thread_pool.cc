#include "engine/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <latch>

namespace luxdb::engine {

ThreadPool::ThreadPool(size_t threads) {
  for (size_t i = 1; i < std::max<size_t>(threads, 1); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.SignalAll();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::WorkerLoop() {
  for (;;) {
    std::function<void()> task;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) wake_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping
      task = std::move(queue_.back().run);
      queue_.pop_back();
    }
    task();
  }
}

void ThreadPool::ParallelFor(size_t n, size_t grain,
                             const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t chunks = (n + grain - 1) / grain;
  const size_t helpers = std::min(chunks - 1, workers_.size());
  std::atomic<size_t> next{0};
  auto drain = [&] {
    for (;;) {
      const size_t begin = next.fetch_add(grain, std::memory_order_relaxed);
      if (begin >= n) return;
      fn(begin, std::min(begin + grain, n));
    }
  };
  if (helpers == 0) {
    drain();
    return;
  }
  std::latch done(static_cast<std::ptrdiff_t>(helpers));
  uint64_t call;
  {
    MutexLock lock(&mu_);
    call = next_call_++;
    for (size_t i = 0; i < helpers; ++i) {
      queue_.push_back({call, [&drain, &done] {
                          drain();
                          done.count_down();
                        }});
    }
  }
  wake_.SignalAll();
  drain();
  // Helpers that no worker has picked up yet would only find the range exhausted: withdraw
  // them rather than wait for busy workers to reach them.
  size_t withdrawn = 0;
  {
    MutexLock lock(&mu_);
    withdrawn = std::erase_if(queue_, [call](const Task& task) { return task.call == call; });
  }
  if (withdrawn > 0) done.count_down(static_cast<std::ptrdiff_t>(withdrawn));
  done.wait();
}

}  // namespace luxdb::engine
