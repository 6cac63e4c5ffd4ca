// MemoryBudget: the memory the indexes of one catalog may reserve together.
//
// Every graph reserves what it needs at full capacity (HnswGraph::EstimateBytes) when it is
// allocated, and a compaction its temporary second graph, so successive indexes cannot promise
// more memory than the budget between them: the refusal comes at InitIndex, ResizeIndex or
// CompactIndex, naming the budget, what is reserved and what was asked, not later from the
// kernel's OOM killer.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/mutex.h"

namespace luxdb::engine {

class MemoryBudget {
 public:
  // `limit_bytes` 0 selects DefaultLimitBytes().
  explicit MemoryBudget(uint64_t limit_bytes);
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // 85 % of the cgroup's memory limit where one is set (containers), else of MemTotal.
  static uint64_t DefaultLimitBytes();

  // Reserves `bytes` for `what` (e.g. "index 'docs' with max_elements 100000"), or
  // RESOURCE_EXHAUSTED naming `what`, the budget, what is reserved and what was asked.
  absl::Status Reserve(uint64_t bytes, absl::string_view what);
  // Reserves whatever the budget says: for graphs that exist already (loaded at start), which
  // must be served. Returns false if this took the reservations over the budget.
  bool ForceReserve(uint64_t bytes);
  void Release(uint64_t bytes);

  uint64_t limit() const { return limit_; }
  uint64_t reserved() const;

 private:
  const uint64_t limit_;
  mutable Mutex mu_;  // guards reserved_; a leaf lock
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace luxdb::engine
