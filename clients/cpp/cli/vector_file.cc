#include "cli/vector_file.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/limits.h"

namespace luxdb::cli {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the .npy and .fvecs readers assume a little-endian host");

absl::Status Invalid(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", path, "' ", what));
}

absl::StatusOr<std::ifstream> OpenBinary(const std::string& path, uint64_t* size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  std::error_code error;
  *size = std::filesystem::file_size(path, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", error.message()));
  }
  return in;
}

absl::Status CheckDimension(const std::string& path, int64_t dim, absl::string_view where) {
  if (dim < 1 || dim > engine::kMaxDimension) {
    return Invalid(path, absl::StrCat(where, " has dimension ", dim, "; LuxDB takes 1 to ",
                                      engine::kMaxDimension));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// .npy: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicBytes = 6;
constexpr uint32_t kMaxNpyHeaderBytes = 1 << 20;

// numpy's name for a dtype descriptor such as "<i8" (int64), for messages.
std::string NumpyTypeName(absl::string_view descr) {
  if (descr.size() < 3) return std::string(descr);
  const char kind = descr[1];
  int bytes = 0;
  if (!absl::SimpleAtoi(descr.substr(2), &bytes)) return std::string(descr);
  switch (kind) {
    case 'f':
      return absl::StrCat("float", bytes * 8);
    case 'i':
      return absl::StrCat("int", bytes * 8);
    case 'u':
      return absl::StrCat("uint", bytes * 8);
    case 'c':
      return absl::StrCat("complex", bytes * 8);
    case 'b':
      return "bool";
    case 'U':
      return "str";
    case 'S':
      return "bytes";
    case 'O':
      return "object";
    default:
      return std::string(descr);
  }
}

// The text after `key` and its ':' in the header dict, or npos.
size_t FindValue(absl::string_view header, absl::string_view key) {
  for (const std::string& quoted : {absl::StrCat("'", key, "'"), absl::StrCat("\"", key, "\"")}) {
    size_t at = header.find(quoted);
    if (at == absl::string_view::npos) continue;
    at = header.find(':', at + quoted.size());
    if (at == absl::string_view::npos) return at;
    ++at;
    while (at < header.size() && header[at] == ' ') ++at;
    return at;
  }
  return absl::string_view::npos;
}

std::string ShapeText(const std::vector<uint64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

class NpyReader : public VectorReader {
 public:
  static absl::StatusOr<std::unique_ptr<VectorReader>> Open(const std::string& path) {
    uint64_t file_size = 0;
    absl::StatusOr<std::ifstream> in = OpenBinary(path, &file_size);
    if (!in.ok()) return in.status();
    char magic[kNpyMagicBytes + 2];
    if (!in->read(magic, sizeof(magic)) || std::memcmp(magic, kNpyMagic, kNpyMagicBytes) != 0) {
      return Invalid(path, "is not a .npy file (it does not start with \\x93NUMPY)");
    }
    const int major = static_cast<uint8_t>(magic[kNpyMagicBytes]);
    uint32_t header_bytes = 0;
    if (major == 1) {
      uint8_t len[2];
      in->read(reinterpret_cast<char*>(len), 2);
      header_bytes = len[0] | (uint32_t{len[1]} << 8);
    } else if (major == 2 || major == 3) {
      uint8_t len[4];
      in->read(reinterpret_cast<char*>(len), 4);
      header_bytes =
          len[0] | (uint32_t{len[1]} << 8) | (uint32_t{len[2]} << 16) | (uint32_t{len[3]} << 24);
    } else {
      return Invalid(path,
                     absl::StrCat("has .npy format version ", major, ".",
                                  static_cast<int>(static_cast<uint8_t>(magic[kNpyMagicBytes + 1])),
                                  "; LuxDB reads versions 1 to 3"));
    }
    if (!*in || header_bytes > kMaxNpyHeaderBytes) {
      return Invalid(path, "has a truncated or oversized .npy header");
    }
    std::string header(header_bytes, '\0');
    if (!in->read(header.data(), header_bytes)) {
      return Invalid(path, "has a truncated .npy header");
    }
    const uint64_t data_offset = static_cast<uint64_t>(in->tellg());

    // descr: a dtype string such as '<f4'; a list means a structured dtype.
    std::string descr;
    size_t at = FindValue(header, "descr");
    if (at == std::string::npos || at >= header.size()) {
      return Invalid(path, "has a .npy header without 'descr'");
    }
    if (header[at] == '[') {
      return Invalid(path, "holds a structured array; LuxDB reads plain float32 or float64 arrays");
    }
    const char quote = header[at];
    const size_t end = header.find(quote, at + 1);
    if ((quote != '\'' && quote != '"') || end == std::string::npos) {
      return Invalid(path, "has a malformed 'descr' in its .npy header");
    }
    descr = header.substr(at + 1, end - at - 1);

    at = FindValue(header, "fortran_order");
    if (at == std::string::npos) return Invalid(path, "has a .npy header without 'fortran_order'");
    const bool fortran = absl::StartsWith(absl::string_view(header).substr(at), "True");

    at = FindValue(header, "shape");
    if (at == std::string::npos || at >= header.size() || header[at] != '(') {
      return Invalid(path, "has a .npy header without a 'shape' tuple");
    }
    const size_t close = header.find(')', at);
    if (close == std::string::npos) return Invalid(path, "has a malformed 'shape' in its header");
    std::vector<uint64_t> shape;
    for (absl::string_view part :
         absl::StrSplit(absl::string_view(header).substr(at + 1, close - at - 1), ',')) {
      part = absl::StripAsciiWhitespace(part);
      if (part.empty()) continue;
      if (absl::EndsWith(part, "L")) part.remove_suffix(1);  // written by Python 2
      uint64_t extent = 0;
      if (!absl::SimpleAtoi(part, &extent)) {
        return Invalid(path, absl::StrCat("has a malformed 'shape' in its header: '", part, "'"));
      }
      shape.push_back(extent);
    }

    const std::string type = NumpyTypeName(descr);
    size_t item_bytes = 0;
    if (descr == "<f4" || descr == "=f4") {
      item_bytes = 4;
    } else if (descr == "<f8" || descr == "=f8") {
      item_bytes = 8;
    } else if (descr == ">f4" || descr == ">f8") {
      return Invalid(path, absl::StrCat("holds big-endian ", type, " ('", descr,
                                        "'); save it little-endian: a.astype('<f4')"));
    } else {
      return Invalid(path, absl::StrCat("has dtype ", type, " ('", descr,
                                        "'); LuxDB reads float32 or float64 arrays: "
                                        "save a.astype(numpy.float32)"));
    }
    if (shape.size() != 2) {
      return Invalid(path,
                     absl::StrCat("has shape ", ShapeText(shape),
                                  "; LuxDB reads 2-D arrays of shape (rows, dim)",
                                  shape.size() == 1 ? " (for one vector: a.reshape(1, -1))" : ""));
    }
    if (fortran && shape[0] > 1 && shape[1] > 1) {
      return Invalid(path, absl::StrCat("holds a Fortran-order array of shape ", ShapeText(shape),
                                        "; save a C-order one: numpy.ascontiguousarray(a)"));
    }
    if (absl::Status s = CheckDimension(
            path,
            static_cast<int64_t>(std::min<uint64_t>(shape[1], std::numeric_limits<int64_t>::max())),
            absl::StrCat("shape ", ShapeText(shape)));
        !s.ok()) {
      return s;
    }
    const uint64_t row_bytes = shape[1] * item_bytes;
    const uint64_t data_bytes = file_size - std::min(file_size, data_offset);
    if (data_bytes % row_bytes != 0 || data_bytes / row_bytes != shape[0]) {
      return Invalid(path, absl::StrCat("is truncated or damaged: shape ", ShapeText(shape), " ",
                                        type, " needs ", shape[0], " x ", row_bytes,
                                        " bytes of data, the file holds ", data_bytes));
    }
    return std::unique_ptr<VectorReader>(new NpyReader(path, absl::StrCat("NPY ", type),
                                                       *std::move(in), item_bytes,
                                                       static_cast<uint32_t>(shape[1]), shape[0]));
  }

 private:
  NpyReader(std::string path, std::string format, std::ifstream in, size_t item_bytes, uint32_t dim,
            uint64_t rows)
      : VectorReader(std::move(path), std::move(format), dim, rows),
        in_(std::move(in)),
        item_bytes_(item_bytes) {}

  absl::Status ReadRows(size_t rows, std::vector<float>* out) override {
    const size_t count = rows * dim_;
    const size_t old = out->size();
    if (item_bytes_ == sizeof(float)) {
      out->resize(old + count);
      in_.read(reinterpret_cast<char*>(out->data() + old), count * sizeof(float));
      return Check(rows);
    }
    buffer_.resize(count);
    in_.read(reinterpret_cast<char*>(buffer_.data()), count * sizeof(double));
    if (absl::Status s = Check(rows); !s.ok()) return s;
    for (size_t i = 0; i < count; ++i) {
      const double value = buffer_[i];
      if (std::isfinite(value) && std::abs(value) > std::numeric_limits<float>::max()) {
        return Invalid(path_, absl::StrCat("row ", rows_read_ + i / dim_, " component ", i % dim_,
                                           " is ", value, ", beyond float32's range"));
      }
      out->push_back(static_cast<float>(value));
    }
    return absl::OkStatus();
  }

  absl::Status Check(size_t rows) {
    if (!in_) {
      return absl::DataLossError(absl::StrCat("cannot read rows ", rows_read_, " to ",
                                              rows_read_ + rows - 1, " of '", path_,
                                              "': the file ended early or is unreadable"));
    }
    return absl::OkStatus();
  }

  std::ifstream in_;
  const size_t item_bytes_;
  std::vector<double> buffer_;
};

// ---------------------------------------------------------------------------------------------
// .fvecs (the TEXMEX corpus format: SIFT, GIST, ...)

class FvecsReader : public VectorReader {
 public:
  static absl::StatusOr<std::unique_ptr<VectorReader>> Open(const std::string& path) {
    uint64_t file_size = 0;
    absl::StatusOr<std::ifstream> in = OpenBinary(path, &file_size);
    if (!in.ok()) return in.status();
    int32_t dim = 0;
    if (file_size == 0) return Invalid(path, "is empty: an .fvecs file needs at least one row");
    if (!in->read(reinterpret_cast<char*>(&dim), sizeof(dim))) {
      return Invalid(path, "is too short for an .fvecs row");
    }
    if (absl::Status s = CheckDimension(path, dim, "row 0"); !s.ok()) return s;
    const uint64_t row_bytes = sizeof(int32_t) + uint64_t{static_cast<uint32_t>(dim)} * 4;
    if (file_size % row_bytes != 0) {
      return Invalid(path, absl::StrCat("is truncated or not an .fvecs file: its ", file_size,
                                        " bytes are not a whole number of rows of dimension ", dim,
                                        " (", row_bytes, " bytes each)"));
    }
    in->seekg(0);
    return std::unique_ptr<VectorReader>(
        new FvecsReader(path, *std::move(in), static_cast<uint32_t>(dim), file_size / row_bytes));
  }

 private:
  FvecsReader(std::string path, std::ifstream in, uint32_t dim, uint64_t rows)
      : VectorReader(std::move(path), "fvecs", dim, rows), in_(std::move(in)) {}

  absl::Status ReadRows(size_t rows, std::vector<float>* out) override {
    const size_t row_bytes = sizeof(int32_t) + size_t{dim_} * sizeof(float);
    buffer_.resize(rows * row_bytes);
    if (!in_.read(buffer_.data(), buffer_.size())) {
      return absl::DataLossError(absl::StrCat("cannot read rows ", rows_read_, " to ",
                                              rows_read_ + rows - 1, " of '", path_,
                                              "': the file ended early or is unreadable"));
    }
    const size_t old = out->size();
    out->resize(old + rows * dim_);
    for (size_t r = 0; r < rows; ++r) {
      const char* row = buffer_.data() + r * row_bytes;
      int32_t dim = 0;
      std::memcpy(&dim, row, sizeof(dim));
      if (dim != static_cast<int32_t>(dim_)) {
        return Invalid(path_, absl::StrCat("row ", rows_read_ + r, " has dimension ", dim,
                                           ", row 0 has ", dim_));
      }
      std::memcpy(out->data() + old + r * dim_, row + sizeof(dim), size_t{dim_} * sizeof(float));
    }
    return absl::OkStatus();
  }

  std::ifstream in_;
  std::vector<char> buffer_;
};

// ---------------------------------------------------------------------------------------------
// CSV

bool IsBlank(absl::string_view line) { return absl::StripAsciiWhitespace(line).empty(); }

class CsvReader : public VectorReader {
 public:
  static absl::StatusOr<std::unique_ptr<VectorReader>> Open(const std::string& path) {
    uint64_t file_size = 0;
    absl::StatusOr<std::ifstream> in = OpenBinary(path, &file_size);
    if (!in.ok()) return in.status();
    // One quick pass counts the rows and finds ragged ones, so that `add` refuses a bad file
    // before sending any of it and can show an ETA.
    uint64_t rows = 0;
    uint64_t dim = 0;
    uint64_t first_line = 0;
    uint64_t line = 0;
    std::string text;
    while (std::getline(*in, text)) {
      ++line;
      if (IsBlank(text)) continue;
      const uint64_t fields = std::count(text.begin(), text.end(), ',') + 1;
      if (rows == 0) {
        dim = fields;
        first_line = line;
        if (absl::Status s =
                CheckDimension(path, static_cast<int64_t>(std::min<uint64_t>(fields, INT64_MAX)),
                               absl::StrCat("line ", line));
            !s.ok()) {
          return s;
        }
      } else if (fields != dim) {
        return Invalid(path,
                       absl::StrCat("line ", line, " has ", fields, " values, line ", first_line,
                                    " has ", dim, "; every row must have the same dimension"));
      }
      ++rows;
    }
    if (in->bad()) {
      return absl::DataLossError(absl::StrCat("cannot read '", path, "': ", std::strerror(errno)));
    }
    if (rows == 0) return Invalid(path, "holds no vectors");
    in->clear();
    in->seekg(0);
    return std::unique_ptr<VectorReader>(
        new CsvReader(path, *std::move(in), static_cast<uint32_t>(dim), rows));
  }

 private:
  CsvReader(std::string path, std::ifstream in, uint32_t dim, uint64_t rows)
      : VectorReader(std::move(path), "CSV", dim, rows), in_(std::move(in)) {}

  absl::Status ReadRows(size_t rows, std::vector<float>* out) override {
    std::string text;
    for (size_t r = 0; r < rows;) {
      if (!std::getline(in_, text)) {
        return absl::DataLossError(
            absl::StrCat("'", path_, "' ended early at line ", line_, " (was it changed?)"));
      }
      ++line_;
      if (IsBlank(text)) continue;
      size_t column = 0;
      for (absl::string_view field : absl::StrSplit(text, ',')) {
        ++column;
        if (column > dim_) break;
        field = absl::StripAsciiWhitespace(field);
        if (field.empty()) {
          return Invalid(path_, absl::StrCat("line ", line_, " column ", column, " is empty"));
        }
        // from_chars takes no leading '+', which other writers may emit.
        absl::string_view number = field;
        if (absl::ConsumePrefix(&number, "+") && absl::StartsWith(number, "-")) number = field;
        float value = 0;
        const auto [end, error] =
            std::from_chars(number.data(), number.data() + number.size(), value);
        if (error == std::errc::result_out_of_range) {
          return Invalid(path_, absl::StrCat("line ", line_, " column ", column, ": '", field,
                                             "' is beyond float32's range"));
        }
        if (error != std::errc() || end != number.data() + number.size()) {
          return Invalid(
              path_,
              absl::StrCat("line ", line_, " column ", column, ": '", field, "' is not a number",
                           line_ == 1 ? " (a CSV file holds no header row)" : ""));
        }
        if (!std::isfinite(value)) {
          return Invalid(path_, absl::StrCat("line ", line_, " column ", column, ": '", field,
                                             "' is not finite"));
        }
        out->push_back(value);
      }
      if (column != dim_) {
        return Invalid(path_, absl::StrCat("line ", line_, " has ", column, " values, not ", dim_,
                                           " (was the file changed?)"));
      }
      ++r;
    }
    return absl::OkStatus();
  }

  std::ifstream in_;
  uint64_t line_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<VectorReader>> VectorReader::Open(const std::string& path) {
  const std::string extension =
      absl::AsciiStrToLower(std::filesystem::path(path).extension().string());
  if (extension == ".npy") return NpyReader::Open(path);
  if (extension == ".fvecs") return FvecsReader::Open(path);
  if (extension == ".csv") return CsvReader::Open(path);
  return Invalid(path, "has an unknown file type: LuxDB reads .npy, .fvecs and .csv files");
}

absl::StatusOr<size_t> VectorReader::ReadBatch(size_t max_rows, std::vector<float>* out) {
  out->clear();
  const size_t rows =
      static_cast<size_t>(std::min<uint64_t>(rows_ - rows_read_, std::max<size_t>(max_rows, 1)));
  if (rows == 0) return 0;
  out->reserve(rows * dim_);
  if (absl::Status s = ReadRows(rows, out); !s.ok()) return s;
  for (size_t i = 0; i < out->size(); ++i) {
    if (!std::isfinite((*out)[i])) {
      return Invalid(path_, absl::StrCat("row ", rows_read_ + i / dim_, " component ", i % dim_,
                                         " is ", (*out)[i], "; vectors must be finite"));
    }
  }
  rows_read_ += rows;
  return rows;
}

absl::StatusOr<VectorFile> ReadVectorFile(const std::string& path) {
  absl::StatusOr<std::unique_ptr<VectorReader>> reader = VectorReader::Open(path);
  if (!reader.ok()) return reader.status();
  VectorFile file;
  file.dim = (*reader)->dim();
  file.rows = (*reader)->rows();
  absl::StatusOr<size_t> read = (*reader)->ReadBatch(file.rows, &file.data);
  if (!read.ok()) return read.status();
  return file;
}

}  // namespace luxdb::cli
