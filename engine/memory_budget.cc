#include "engine/memory_budget.h"

#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace luxdb::engine {
namespace {

uint64_t ReadMemTotal() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("MemTotal:")) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    uint64_t kib = 0;
    if (fields.size() >= 2 && absl::SimpleAtoi(fields[1], &kib)) return kib * 1024;
  }
  return 0;
}

// The cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit; 0 if none is set ("max",
// or v1's huge "unlimited" value).
uint64_t ReadCgroupLimit() {
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string text;
    uint64_t limit = 0;
    if (in >> text && absl::SimpleAtoi(text, &limit) && limit < (uint64_t{1} << 60)) return limit;
  }
  return 0;
}

std::string Mib(uint64_t bytes) { return absl::StrCat((bytes + (1 << 20) - 1) >> 20, " MiB"); }

}  // namespace

MemoryBudget::MemoryBudget(uint64_t limit_bytes)
    : limit_(limit_bytes != 0 ? limit_bytes : DefaultLimitBytes()) {}

uint64_t MemoryBudget::DefaultLimitBytes() {
  uint64_t total = ReadMemTotal();
  if (const uint64_t cgroup = ReadCgroupLimit(); cgroup != 0 && (total == 0 || cgroup < total)) {
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
