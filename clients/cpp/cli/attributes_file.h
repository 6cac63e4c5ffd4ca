// The attributes file of `luxdb add --attributes FILE`: JSON Lines, one object per line, line
// i holding the attributes of the vector file's row i (cli/attributes_json.h has the format;
// {} for an item without attributes). Checked whole at Open, then streamed in batches beside
// the vectors so that a large file need not fit in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "luxdb/client.h"

namespace luxdb::cli {

// Reads one attributes file front to back. Not thread-safe.
class AttributesReader {
 public:
  // Opens `path` and checks every line: INVALID_ARGUMENT naming the file, the line (1-based)
  // and the key or JSON column of the first bad one (an empty line, malformed JSON, not an
  // object, a value AttributesFromJson refuses); NOT_FOUND if it cannot be opened; DATA_LOSS
  // if it cannot be read.
  static absl::StatusOr<std::unique_ptr<AttributesReader>> Open(const std::string& path);

  // Lines in the file: the items it gives attributes to.
  uint64_t lines() const { return lines_; }
  // Lines returned by ReadBatch so far.
  uint64_t lines_read() const { return lines_read_; }

  // Replaces *out with the attributes of the next lines: up to `max_rows`, fewer once they
  // pass about `max_bytes` in a request (but at least one); returns how many, 0 at the end.
  // DATA_LOSS if the file changed since Open.
  absl::StatusOr<size_t> ReadBatch(size_t max_rows, size_t max_bytes, std::vector<Attributes>* out);

 private:
  AttributesReader(std::string path, uint64_t lines);

  const std::string path_;
  const uint64_t lines_;
  std::ifstream in_;
  uint64_t lines_read_ = 0;
};

}  // namespace luxdb::cli
