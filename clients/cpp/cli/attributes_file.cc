#include "cli/attributes_file.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "cli/attributes_json.h"
#include "cli/json.h"

namespace luxdb::cli {
namespace {

// The attributes on `line` (number `number`, 1-based) of `path`.
absl::StatusOr<Attributes> ParseLine(std::string& line, const std::string& path, uint64_t number) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::string where = absl::StrCat("'", path, "' line ", number, ": ");
  if (line.find_first_not_of(" \t") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "empty; every row needs a line, {} for no attributes"));
  }
  absl::StatusOr<JsonValue> json = ParseJson(line);
  if (!json.ok()) return absl::InvalidArgumentError(absl::StrCat(where, json.status().message()));
  absl::StatusOr<Attributes> attributes = AttributesFromJson(*json);
  if (!attributes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, attributes.status().message()));
  }
  return attributes;
}

}  // namespace

AttributesReader::AttributesReader(std::string path, uint64_t lines)
    : path_(std::move(path)), lines_(lines), in_(path_) {}

absl::StatusOr<std::unique_ptr<AttributesReader>> AttributesReader::Open(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  std::string line;
  uint64_t lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    if (absl::StatusOr<Attributes> a = ParseLine(line, path, lines); !a.ok()) return a.status();
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read '", path, "'"));
  std::unique_ptr<AttributesReader> reader(new AttributesReader(path, lines));
  if (!reader->in_) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  return reader;
}

absl::StatusOr<size_t> AttributesReader::ReadBatch(size_t max_rows, size_t max_bytes,
                                                   std::vector<Attributes>* out) {
  out->clear();
  size_t bytes = 0;
  std::string line;
  while (out->size() < max_rows && lines_read_ < lines_ && (out->empty() || bytes < max_bytes)) {
    if (!std::getline(in_, line)) {
      return absl::DataLossError(absl::StrCat("'", path_, "' ended at line ", lines_read_, " of ",
                                              lines_, ": did it change while being read?"));
    }
    absl::StatusOr<Attributes> attributes = ParseLine(line, path_, lines_read_ + 1);
    if (!attributes.ok()) return attributes.status();
    bytes += AttributesWireBytes(*attributes);
    out->push_back(*std::move(attributes));
    ++lines_read_;
  }
  return out->size();
}

}  // namespace luxdb::cli
