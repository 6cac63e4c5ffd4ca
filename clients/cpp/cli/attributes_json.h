// Attributes and filters of `luxdb` as JSON, in the Python client's dict format:
//   attributes: {"tenant": 7, "tags": ["a", "b"], "price": 9.5, "new": true}
//   filter:     {"must": [{"key": "tenant", "equals": 7}], "must_not": [...], "should": [...],
//                "ids": [1, 2]}
// with conditions {"key": k, "equals": v}, {"key": k, "any_of": [v, ...]},
// {"key": k, "range": {"gte": 1, "lt": 5}} (any of gt, gte, lt, lte) and
// {"key": k, "exists": true}. A number written without fraction or exponent is an int64,
// any other a double.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/json.h"
#include "luxdb/client.h"

namespace luxdb::cli {

// The attributes in `object`: each key's value a string, a bool, a whole number (int64), any
// other finite number (double), or a non-empty array of strings or of whole numbers.
// INVALID_ARGUMENT naming the key for anything else (null, an object, a mixed or nested
// array, a number out of range), or if `object` is not an object.
absl::StatusOr<Attributes> AttributesFromJson(const JsonValue& object);

// The filter `text` describes. INVALID_ARGUMENT for malformed JSON, a field this format does
// not have (naming it), a condition without a key or with other than one test, a range
// without a bound, or values of the wrong kind, naming the condition ("filter.must[1]
// ('price')"). "ids": [] lets no item through (Filter::Ids).
absl::StatusOr<Filter> FilterFromJson(absl::string_view text);

// `attributes` as a JSON object in the format above, keys in their order: one value as
// itself, several as an array; a double always reads back as a double ("3.0", "1e+20").
std::string AttributesJson(const Attributes& attributes);

// About the bytes `attributes` take in a request, to keep batches far below the message cap.
size_t AttributesWireBytes(const Attributes& attributes);

}  // namespace luxdb::cli
