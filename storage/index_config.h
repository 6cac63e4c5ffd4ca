// The persisted description of one index: what the catalog column family keeps per index.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::storage {

// Distance metric. Values are stored on disk: never renumber.
enum class Space : uint8_t { kL2 = 1, kIp = 2, kCosine = 3 };

// Returns "l2", "ip" or "cosine".
absl::string_view SpaceName(Space space);

struct IndexConfig {
  std::string name;
  Space space = Space::kL2;
  uint32_t dim = 0;
  // Graph parameters; meaningful once `initialized` is true.
  bool initialized = false;
  uint64_t max_elements = 0;
  uint32_t m = 0;
  uint32_t ef_construction = 0;
  uint32_t ef = 0;
  uint64_t random_seed = 0;
  // Assigned by Store::CreateIndex: names the index's column family. Never reused.
  uint64_t cf_id = 0;
  // Bumped by every committed item write of this index (Store::Commit). A graph snapshot is
  // valid only for the version it was taken at.
  uint64_t version = 0;
};

// Serialises `config` into a self-describing, versioned byte string.
std::string EncodeIndexConfig(const IndexConfig& config);
// Parses the output of EncodeIndexConfig. Returns DATA_LOSS if `bytes` is truncated or of an
// unknown format version.
absl::StatusOr<IndexConfig> DecodeIndexConfig(absl::string_view bytes);

}  // namespace luxdb::storage
