#include "engine/resources.h"

#include <locale.h>

#include <clocale>
#include <cwctype>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/limits.h"

namespace luxdb::engine {
namespace {

// A "Name: N kB" line of /proc/meminfo in bytes (`field` includes the colon); nullopt if
// missing.
std::optional<uint64_t> ReadMeminfoBytes(absl::string_view field) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field)) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());  // "MemAvailable:" N "kB"
    uint64_t kib = 0;
    if (fields.size() >= 2 && absl::SimpleAtoi(fields[1], &kib)) return kib * 1024;
  }
  return std::nullopt;
}

uint64_t ReadMemAvailable() {
  return ReadMeminfoBytes("MemAvailable:").value_or(std::numeric_limits<uint64_t>::max());
}

// The number a cgroup file such as memory.max holds; false if it is missing or not a number
// ("max").
bool ReadNumberFile(const char* path, uint64_t* value) {
  std::ifstream in(path);
  std::string text;
  return static_cast<bool>(in >> text) && absl::SimpleAtoi(text, value);
}

// Remaining allowance under a cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit.
uint64_t ReadCgroupRemaining() {
  uint64_t limit = 0;
  uint64_t usage = 0;
  if ((ReadNumberFile("/sys/fs/cgroup/memory.max", &limit) &&
       ReadNumberFile("/sys/fs/cgroup/memory.current", &usage)) ||
      (ReadNumberFile("/sys/fs/cgroup/memory/memory.limit_in_bytes", &limit) &&
       ReadNumberFile("/sys/fs/cgroup/memory/memory.usage_in_bytes", &usage))) {
    return limit > usage ? limit - usage : 0;
  }
  return std::numeric_limits<uint64_t>::max();
}

// Decodes one UTF-8 sequence at `s[*pos]`, rejecting overlong forms, surrogates and values
// above U+10FFFF. Returns false on invalid input.
bool DecodeUtf8(absl::string_view s, size_t* pos, char32_t* out) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(*pos);
  size_t length;
  char32_t value;
  if (lead < 0x80) {
    *out = lead;
    ++*pos;
    return true;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    value = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    value = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    value = lead & 0x07;
  } else {
    return false;
  }
  if (*pos + length > s.size()) return false;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(*pos + i) & 0xC0) != 0x80) return false;
    value = (value << 6) | (byte(*pos + i) & 0x3F);
  }
  static constexpr char32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (value < kMinimum[length] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
    return false;
  }
  *out = value;
  *pos += length;
  return true;
}

bool IsLetter(char32_t c) {
  // glibc's C.UTF-8 locale classifies the whole of Unicode; fall back to ASCII without it.
  static const locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  if (c < 0x80) return absl::ascii_isalpha(static_cast<unsigned char>(c));
  return utf8 != static_cast<locale_t>(0) && iswalpha_l(static_cast<wint_t>(c), utf8);
}

}  // namespace

uint64_t AvailableMemoryBytes() { return std::min(ReadMemAvailable(), ReadCgroupRemaining()); }

uint64_t MemTotalBytes() { return ReadMeminfoBytes("MemTotal:").value_or(0); }

uint64_t CgroupMemoryLimitBytes() {
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    uint64_t limit = 0;
    if (ReadNumberFile(path, &limit) && limit < (uint64_t{1} << 60)) return limit;
  }
  return 0;
}

absl::Status ValidateIndexName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("index name is empty");
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("index name is ", name.size(), " bytes long; the limit is ", kMaxNameBytes));
  }
  for (size_t pos = 0; pos < name.size();) {
    const size_t start = pos;
    char32_t c;
    if (!DecodeUtf8(name, &pos, &c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("index name is not valid UTF-8 at byte ", start));
    }
    const bool allowed = IsLetter(c) || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!allowed) {
      return absl::InvalidArgumentError(
          absl::StrCat("index name '", absl::CHexEscape(name), "' has a character at byte ", start,
                       " that is not a letter, digit, '-', '_' or '.'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace luxdb::engine
