// Gives the heap memory that a burst of calls left free back to the kernel.
//
// glibc keeps freed heap pages mapped: after a burst of large requests (gRPC receives a
// message as many small slices, all from the heap) the server's RSS stays at the burst's peak
// although nothing uses it. A background thread looks once a period at how much of the heap
// is free (mallinfo2) and calls malloc_trim(0) when that is more than a threshold, which
// returns free pages inside the heap too, not only at its top.
#pragma once

#include <chrono>
#include <cstddef>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace luxdb::server {

// Whether the GLIBC_TUNABLES environment variable sets glibc malloc's `name` (e.g.
// "malloc.trim_threshold"): the server's own malloc settings then leave it alone.
bool MallocTunableSet(const char* name);

class MemoryTrimmer {
 public:
  // Starts the thread.
  MemoryTrimmer(std::chrono::milliseconds period, size_t trim_above_bytes);
  // Stops and joins the thread.
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

 private:
  void Run();

  const std::chrono::milliseconds period_;
  const size_t trim_above_bytes_;
  // Wakes the thread for shutdown; guards only stop_.
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace luxdb::server
