// Checks of request values against what the machine and the naming rules allow.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace luxdb::engine {

// Bytes of memory this process can still allocate: MemAvailable from /proc/meminfo, lowered
// to the cgroup's remaining allowance where a memory limit is set (containers).
uint64_t AvailableMemoryBytes();
// MemTotal from /proc/meminfo; 0 if unknown.
uint64_t MemTotalBytes();
// The cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) memory limit; 0 if none is set
// ("max", or v1's huge "unlimited" value).
uint64_t CgroupMemoryLimitBytes();

// OK if `name` is 1..kMaxNameBytes bytes of valid UTF-8 made of letters (any script),
// digits, '-', '_' and '.'; INVALID_ARGUMENT naming the offending byte offset otherwise.
absl::Status ValidateIndexName(absl::string_view name);

}  // namespace luxdb::engine
