// Helpers shared by the engine-only race tests (catalog_race_test, index_race_test), which
// the tsan_race_tests test also builds with ThreadSanitizer: header-only and free of gRPC,
// unlike tests/test_support (whose TempDir brings gRPC into the TSan build).
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"

namespace luxdb::engine::race {

// n vectors of `dim` floats uniform in [-1, 1], the same for the same seed.
inline std::vector<float> RandomVectors(size_t n, uint32_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n * dim);
  for (float& x : v) x = dist(rng);
  return v;
}

// The ids begin, begin + 1, ..., end - 1.
inline std::vector<uint64_t> Range(uint64_t begin, uint64_t end) {
  std::vector<uint64_t> ids(end - begin);
  for (uint64_t i = 0; i < ids.size(); ++i) ids[i] = begin + i;
  return ids;
}

// A fresh directory under $TMPDIR, removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/luxdb-race-XXXXXX");
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace luxdb::engine::race
