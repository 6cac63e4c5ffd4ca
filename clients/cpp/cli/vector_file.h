// Readers of the vector files `luxdb add` and `luxdb query` take, streamed in batches so that
// a file larger than memory can be sent:
//   .npy    NumPy array, 2-D, C order, little-endian float32 (float64 is converted)
//   .fvecs  per row: int32 dimension d (little-endian), then d float32
//   .csv    one vector per line, comma-separated decimal floats (blank lines are skipped)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace luxdb::cli {

// Reads one file's vectors, all of the same dimension, front to back. Not thread-safe.
class VectorReader {
 public:
  // Opens `path`, choosing the format by its extension (case-insensitive), and checks its
  // header (and, for .npy and .fvecs, that its size matches). INVALID_ARGUMENT naming the
  // file and the problem (unsupported dtype with its name, shape, truncation, ragged rows);
  // NOT_FOUND if it cannot be opened.
  static absl::StatusOr<std::unique_ptr<VectorReader>> Open(const std::string& path);

  virtual ~VectorReader() = default;

  // Dimension of every vector in the file.
  uint32_t dim() const { return dim_; }
  // Number of vectors in the file (CSV: counted by a quick scan at Open).
  uint64_t rows() const { return rows_; }
  // Vectors returned by ReadBatch so far.
  uint64_t rows_read() const { return rows_read_; }
  // "NPY float32", "fvecs", "CSV", ...: what Open recognised.
  const std::string& format() const { return format_; }

  // Replaces *out with the next up to `max_rows` vectors (row-major, rows * dim() floats)
  // and returns how many; 0 at the end of the file. INVALID_ARGUMENT naming the row (or CSV
  // line) of a malformed vector; DATA_LOSS if the file ends early or cannot be read.
  absl::StatusOr<size_t> ReadBatch(size_t max_rows, std::vector<float>* out);

 protected:
  VectorReader(std::string path, std::string format, uint32_t dim, uint64_t rows)
      : path_(std::move(path)), format_(std::move(format)), dim_(dim), rows_(rows) {}
  // Appends exactly `rows` vectors to *out, which has room reserved.
  virtual absl::Status ReadRows(size_t rows, std::vector<float>* out) = 0;

  const std::string path_;
  const std::string format_;
  const uint32_t dim_;
  const uint64_t rows_;
  uint64_t rows_read_ = 0;
};

// Reads a whole file at once (for small files: queries, tests). Errors as Open / ReadBatch.
struct VectorFile {
  std::vector<float> data;  // rows * dim, row-major
  uint32_t dim = 0;
  uint64_t rows = 0;
};
absl::StatusOr<VectorFile> ReadVectorFile(const std::string& path);

}  // namespace luxdb::cli
