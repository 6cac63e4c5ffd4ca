#include "cli/id_list.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace luxdb::cli {
namespace {

absl::StatusOr<uint64_t> ParseId(absl::string_view text, absl::string_view item) {
  uint64_t id = 0;
  // SimpleAtoi accepts a sign; ids are plain digits.
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0])) ||
      !absl::SimpleAtoi(text, &id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", item, "' in IDS is not an id or a range of ids (e.g. 1,5,10-20)"));
  }
  return id;
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> ParseIdList(absl::string_view text, size_t max_ids) {
  std::vector<uint64_t> ids;
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("IDS is empty: give ids and ranges, e.g. 1,5,10-20");
  }
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("IDS '", text, "' has an empty item (two commas in a row?)"));
    }
    const size_t dash = item.find('-');
    uint64_t first = 0;
    uint64_t last = 0;
    if (dash == absl::string_view::npos) {
      absl::StatusOr<uint64_t> id = ParseId(item, item);
      if (!id.ok()) return id.status();
      first = last = *id;
    } else {
      absl::StatusOr<uint64_t> low =
          ParseId(absl::StripAsciiWhitespace(item.substr(0, dash)), item);
      if (!low.ok()) return low.status();
      absl::StatusOr<uint64_t> high =
          ParseId(absl::StripAsciiWhitespace(item.substr(dash + 1)), item);
      if (!high.ok()) return high.status();
      if (*high < *low) {
        return absl::InvalidArgumentError(
            absl::StrCat("range '", item, "' in IDS goes down; write it low-high"));
      }
      first = *low;
      last = *high;
    }
    if (last - first >= max_ids || ids.size() + (last - first) >= max_ids) {
      return absl::InvalidArgumentError(absl::StrCat("IDS names more than ", max_ids, " ids (at '",
                                                     item, "'); split the work into calls"));
    }
    for (uint64_t id = first;; ++id) {
      ids.push_back(id);
      if (id == last) break;
    }
  }
  return ids;
}

}  // namespace luxdb::cli
