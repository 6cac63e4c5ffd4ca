// A strict JSON reader for the few JSON inputs of `luxdb` (--filter, --attributes files): the
// numbers keep their text, so that the caller tells 7 (an int64) from 7.0 (a double) and reads
// integers above 2^53 exactly.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::cli {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  Kind kind = Kind::kNull;
  bool boolean = false;
  // A string's value (UTF-8), or a number's text as written ("-7", "9.5", "1e3").
  std::string text;
  std::vector<JsonValue> elements;                         // an array's
  std::vector<std::pair<std::string, JsonValue>> members;  // an object's, in order

  // A number written without fraction or exponent.
  bool is_integer() const;
};

// "an object", "a string", "a number", ... for error messages.
const char* KindName(JsonValue::Kind kind);

// Parses one JSON text (RFC 8259) with nothing but whitespace around it. Stricter than the
// RFC: an object may not repeat a key, and nesting stops at 64 levels. INVALID_ARGUMENT naming
// the column (1-based) and what was expected there.
absl::StatusOr<JsonValue> ParseJson(absl::string_view text);

}  // namespace luxdb::cli
