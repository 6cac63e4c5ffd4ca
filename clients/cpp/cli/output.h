// How `luxdb` prints numbers and JSON.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/strings/string_view.h"

namespace luxdb::cli {

// The shortest text that reads back as the same float ("0.1", "3", "1e-07"); "inf", "-inf",
// "nan" for those.
std::string FormatFloat(float value);

// A JSON number for `value`, or null for inf and nan (JSON has no such numbers).
std::string JsonFloat(float value);

// A JSON number for `id`, or null for the query padding id (2^64 - 1).
std::string JsonId(uint64_t id);

// A JSON string literal: quoted, with ", \ and control characters escaped.
std::string JsonString(absl::string_view text);

// "[1, 2.5, null]" of the floats.
std::string JsonFloats(std::span<const float> values);

}  // namespace luxdb::cli
