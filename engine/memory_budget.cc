#include "engine/memory_budget.h"

#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/resources.h"

namespace luxdb::engine {
namespace {

std::string Mib(uint64_t bytes) { return absl::StrCat((bytes + (1 << 20) - 1) >> 20, " MiB"); }

}  // namespace

MemoryBudget::MemoryBudget(uint64_t limit_bytes)
    : limit_(limit_bytes != 0 ? limit_bytes : DefaultLimitBytes()) {}

uint64_t MemoryBudget::DefaultLimitBytes() {
  uint64_t total = MemTotalBytes();
  if (const uint64_t cgroup = CgroupMemoryLimitBytes();
      cgroup != 0 && (total == 0 || cgroup < total)) {
    total = cgroup;
  }
  if (total == 0) return std::numeric_limits<uint64_t>::max();
  return total / 100 * 85;
}

absl::Status MemoryBudget::Reserve(uint64_t bytes, absl::string_view what) {
  MutexLock lock(&mu_);
  if (bytes > limit_ || reserved_ > limit_ - bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, " needs about ", Mib(bytes), " of memory; the memory budget is ", Mib(limit_),
        " (--memory-budget-mb) and ", Mib(reserved_), " of it is reserved by existing indexes"));
  }
  reserved_ += bytes;
  return absl::OkStatus();
}

bool MemoryBudget::ForceReserve(uint64_t bytes) {
  MutexLock lock(&mu_);
  reserved_ += bytes;
  return reserved_ <= limit_;
}

void MemoryBudget::Release(uint64_t bytes) {
  MutexLock lock(&mu_);
  reserved_ -= std::min(bytes, reserved_);
}

uint64_t MemoryBudget::reserved() const {
  MutexLock lock(&mu_);
  return reserved_;
}

}  // namespace luxdb::engine
