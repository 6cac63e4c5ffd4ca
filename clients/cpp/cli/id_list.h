// The IDS argument of `luxdb get` and `luxdb delete`: ids and inclusive ranges, comma-separated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::cli {

// The most ids one IDS argument may name (80 MB of ids), so that a typo such as 0-10000000000
// fails at once instead of exhausting memory.
inline constexpr size_t kMaxIdListSize = 10'000'000;

// Parses "1,5,10-20" into 1, 5, 10, 11, ..., 20 in that order (duplicates are kept: the server
// decides about them). Spaces around items are allowed. INVALID_ARGUMENT naming the item for
// an empty list or item, a non-number, a descending range, or more than `max_ids` ids.
absl::StatusOr<std::vector<uint64_t>> ParseIdList(absl::string_view text,
                                                  size_t max_ids = kMaxIdListSize);

}  // namespace luxdb::cli
