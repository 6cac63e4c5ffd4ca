#include "server/memory_trimmer.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "absl/time/time.h"
#include "spdlog/spdlog.h"

namespace luxdb::server {

bool MallocTunableSet(const char* name) {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr && std::strstr(tunables, name) != nullptr;
}

MemoryTrimmer::MemoryTrimmer(std::chrono::milliseconds period, size_t trim_above_bytes)
    : period_(period), trim_above_bytes_(trim_above_bytes), thread_([this] { Run(); }) {}

MemoryTrimmer::~MemoryTrimmer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void MemoryTrimmer::Run() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::FromChrono(period_))) {
    const struct mallinfo2 heap = mallinfo2();
    if (heap.fordblks <= trim_above_bytes_) continue;
    mu_.Unlock();
    const auto started = std::chrono::steady_clock::now();
    malloc_trim(0);
    spdlog::debug(
        "returned free heap memory to the kernel ({} MiB free before, {:.1f} ms)",
        heap.fordblks >> 20,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count());
    mu_.Lock();
  }
}

}  // namespace luxdb::server
