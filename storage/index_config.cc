#include "storage/index_config.h"

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace luxdb::storage {
namespace {

// Layout of format 1, all integers little-endian:
//   u8 format, u8 space, u32 dim, u8 initialized, u64 max_elements, u32 m,
//   u32 ef_construction, u32 ef, u64 random_seed, u64 cf_id, u64 version,
//   u32 name length, name bytes.
constexpr uint8_t kFormatVersion = 1;

template <typename T>
void AppendLittleEndian(T value, std::string* out) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out->push_back(static_cast<char>(static_cast<uint8_t>(value >> (8 * i))));
  }
}

// Consumes fixed-width fields from the front of an encoded config; every read fails once the
// input is exhausted.
class FieldReader {
 public:
  explicit FieldReader(absl::string_view bytes) : rest_(bytes) {}

  template <typename T>
  bool Read(T* value) {
    if (rest_.size() < sizeof(T)) return false;
    T result = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      result |= static_cast<T>(static_cast<uint8_t>(rest_[i])) << (8 * i);
    }
    rest_.remove_prefix(sizeof(T));
    *value = result;
    return true;
  }

  bool ReadBytes(size_t size, std::string* value) {
    if (rest_.size() < size) return false;
    value->assign(rest_.data(), size);
    rest_.remove_prefix(size);
    return true;
  }

  size_t remaining() const { return rest_.size(); }

 private:
  absl::string_view rest_;
};

bool IsKnownSpace(uint8_t value) {
  return value == static_cast<uint8_t>(Space::kL2) || value == static_cast<uint8_t>(Space::kIp) ||
         value == static_cast<uint8_t>(Space::kCosine);
}

}  // namespace

absl::string_view SpaceName(Space space) {
  switch (space) {
    case Space::kL2:
      return "l2";
    case Space::kIp:
      return "ip";
    case Space::kCosine:
      return "cosine";
  }
  return "unknown";
}

std::string EncodeIndexConfig(const IndexConfig& config) {
  std::string out;
  AppendLittleEndian<uint8_t>(kFormatVersion, &out);
  AppendLittleEndian(static_cast<uint8_t>(config.space), &out);
  AppendLittleEndian(config.dim, &out);
  AppendLittleEndian<uint8_t>(config.initialized ? 1 : 0, &out);
  AppendLittleEndian(config.max_elements, &out);
  AppendLittleEndian(config.m, &out);
  AppendLittleEndian(config.ef_construction, &out);
  AppendLittleEndian(config.ef, &out);
  AppendLittleEndian(config.random_seed, &out);
  AppendLittleEndian(config.cf_id, &out);
  AppendLittleEndian(config.version, &out);
  AppendLittleEndian(static_cast<uint32_t>(config.name.size()), &out);
  out.append(config.name);
  return out;
}

absl::StatusOr<IndexConfig> DecodeIndexConfig(absl::string_view bytes) {
  FieldReader reader(bytes);
  uint8_t format = 0;
  if (!reader.Read(&format)) return absl::DataLossError("index config record is empty");
  if (format != kFormatVersion) {
    return absl::DataLossError(absl::StrCat("index config record has format version ", int{format},
                                            "; this build reads version ", int{kFormatVersion}));
  }
  IndexConfig config;
  uint8_t space = 0;
  uint8_t initialized = 0;
  uint32_t name_size = 0;
  if (!reader.Read(&space) || !reader.Read(&config.dim) || !reader.Read(&initialized) ||
      !reader.Read(&config.max_elements) || !reader.Read(&config.m) ||
      !reader.Read(&config.ef_construction) || !reader.Read(&config.ef) ||
      !reader.Read(&config.random_seed) || !reader.Read(&config.cf_id) ||
      !reader.Read(&config.version) || !reader.Read(&name_size) ||
      !reader.ReadBytes(name_size, &config.name)) {
    return absl::DataLossError(
        absl::StrCat("index config record of ", bytes.size(), " bytes is truncated"));
  }
  if (reader.remaining() != 0) {
    return absl::DataLossError(absl::StrCat("index config record of index '", config.name, "' has ",
                                            reader.remaining(), " unexpected trailing bytes"));
  }
  if (!IsKnownSpace(space)) {
    return absl::DataLossError(absl::StrCat("index config record of index '", config.name,
                                            "' has unknown space value ", int{space}));
  }
  if (initialized > 1) {
    return absl::DataLossError(absl::StrCat("index config record of index '", config.name,
                                            "' has invalid initialized flag ", int{initialized}));
  }
  config.space = static_cast<Space>(space);
  config.initialized = initialized == 1;
  return config;
}

}  // namespace luxdb::storage
