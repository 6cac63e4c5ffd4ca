// Data for luxdb-bench: Fashion-MNIST (IDX files, gzip) or uniform random vectors, and the
// exact ground truth, cached next to the data.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <queue>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bench/luxdb_bench.h"

namespace luxdb::bench {
namespace {

constexpr char kTrainFile[] = "train-images-idx3-ubyte.gz";
constexpr char kTestFile[] = "t10k-images-idx3-ubyte.gz";
constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint64_t kTruthMagic = 0x3174672d78756c;  // "lux-gt1"
constexpr uint32_t kMissingLabel = 0xffffffffu;

uint32_t BigEndian32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// An IDX3 image file: magic, count, rows, cols (big-endian uint32), then uint8 pixels. Reads
// at most `limit` images (0: all) as float32 pixel values 0..255.
absl::Status ReadIdxImages(const std::string& path, size_t limit, std::vector<float>* out,
                           size_t* count, size_t* dim) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  gzbuffer(file, 1 << 20);
  unsigned char header[16];
  if (gzread(file, header, sizeof(header)) != sizeof(header) ||
      BigEndian32(header) != kIdxImagesMagic) {
    gzclose(file);
    return absl::DataLossError(absl::StrCat("'", path, "' is not an IDX3 image file"));
  }
  const size_t available = BigEndian32(header + 4);
  *dim = size_t{BigEndian32(header + 8)} * BigEndian32(header + 12);
  *count = limit == 0 ? available : std::min(limit, available);
  std::vector<unsigned char> pixels(*count * *dim);
  size_t done = 0;
  while (done < pixels.size()) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(pixels.size() - done, 1 << 30));
    const int got = gzread(file, pixels.data() + done, chunk);
    if (got <= 0) break;
    done += static_cast<size_t>(got);
  }
  gzclose(file);
  if (done != pixels.size()) {
    return absl::DataLossError(
        absl::StrCat("'", path, "' is truncated: ", done, " of ", pixels.size(), " pixel bytes"));
  }
  out->assign(pixels.begin(), pixels.end());
  return absl::OkStatus();
}

// Squared L2 in float with 16 independent partial sums, which the compiler vectorises.
float L2Float(const float* a, const float* b, size_t dim) {
  constexpr size_t kLanes = 16;
  float partial[kLanes] = {};
  size_t j = 0;
  for (; j + kLanes <= dim; j += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      const float d = a[j + l] - b[j + l];
      partial[l] += d * d;
    }
  }
  float sum = 0;
  for (float p : partial) sum += p;
  for (; j < dim; ++j) sum += (a[j] - b[j]) * (a[j] - b[j]);
  return sum;
}

double L2Double(std::span<const float> a, std::span<const float> b) {
  double sum = 0;
  for (size_t j = 0; j < a.size(); ++j) {
    const double d = double{a[j]} - double{b[j]};
    sum += d * d;
  }
  return sum;
}

// FNV-style 64-bit fingerprint of the data, so a cache file of other data is never used.
uint64_t Fingerprint(std::span<const float> a, std::span<const float> b) {
  uint64_t h = 1469598103934665603ull;
  for (std::span<const float> s : {a, b}) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(s.data());
    const size_t words = s.size_bytes() / 8;
    for (size_t i = 0; i < words; ++i) {
      uint64_t w;
      std::memcpy(&w, bytes + 8 * i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
    for (size_t i = words * 8; i < s.size_bytes(); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return h;
}

struct TruthHeader {
  uint64_t magic, n, dim, nq, k, fingerprint;
};

std::string DefaultCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/luxdb-bench");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.cache/luxdb-bench");
  }
  return "/tmp/luxdb-bench-cache";
}

bool ReadTruth(const std::string& path, const Dataset& data, size_t k, uint64_t fingerprint,
               GroundTruth* truth) {
  std::ifstream in(path, std::ios::binary);
  TruthHeader h{};
  if (!in.read(reinterpret_cast<char*>(&h), sizeof(h))) return false;
  if (h.magic != kTruthMagic || h.n != data.n || h.dim != data.dim || h.nq != data.nq || h.k != k ||
      h.fingerprint != fingerprint) {
    return false;
  }
  truth->ids.resize(data.nq * k);
  truth->kth.resize(data.nq);
  in.read(reinterpret_cast<char*>(truth->ids.data()), truth->ids.size() * sizeof(uint32_t));
  in.read(reinterpret_cast<char*>(truth->kth.data()), truth->kth.size() * sizeof(double));
  return static_cast<bool>(in);
}

void WriteTruth(const std::string& path, const Dataset& data, const GroundTruth& truth,
                uint64_t fingerprint) {
  const std::string temp = absl::StrCat(path, ".tmp", getpid());
  {
    std::ofstream out(temp, std::ios::binary);
    const TruthHeader h{kTruthMagic, data.n, data.dim, data.nq, truth.k, fingerprint};
    out.write(reinterpret_cast<const char*>(&h), sizeof(h));
    out.write(reinterpret_cast<const char*>(truth.ids.data()), truth.ids.size() * sizeof(uint32_t));
    out.write(reinterpret_cast<const char*>(truth.kth.data()), truth.kth.size() * sizeof(double));
    if (!out) {
      std::filesystem::remove(temp);
      return;
    }
  }
  std::filesystem::rename(temp, path);
}

// Brute force: float distances over cache-sized tiles (a block of queries against a chunk of
// base vectors) keep the best 2k per query; those are re-ranked in double precision. Float
// rounding cannot push a true top-k item out of the top 2k.
void ComputeTruth(const Dataset& data, size_t k, int threads, GroundTruth* truth) {
  constexpr size_t kQueryBlock = 32;
  constexpr size_t kBaseChunk = 256;
  const size_t candidates = std::min(2 * k, data.n);
  truth->ids.assign(data.nq * k, kMissingLabel);
  truth->kth.assign(data.nq, 0);
  std::atomic<size_t> next_block{0};
  auto work = [&] {
    using Entry = std::pair<float, uint32_t>;  // max-heap: farthest candidate on top
    std::vector<std::priority_queue<Entry>> heaps(kQueryBlock);
    std::vector<std::pair<double, uint32_t>> reranked;
    for (;;) {
      const size_t first = next_block.fetch_add(kQueryBlock);
      if (first >= data.nq) return;
      const size_t last = std::min(first + kQueryBlock, data.nq);
      for (auto& heap : heaps) heap = {};
      for (size_t chunk = 0; chunk < data.n; chunk += kBaseChunk) {
        const size_t chunk_end = std::min(chunk + kBaseChunk, data.n);
        for (size_t q = first; q < last; ++q) {
          auto& heap = heaps[q - first];
          const float* query = data.queries.data() + q * data.dim;
          for (size_t b = chunk; b < chunk_end; ++b) {
            const float d = L2Float(query, data.base.data() + b * data.dim, data.dim);
            if (heap.size() < candidates) {
              heap.emplace(d, static_cast<uint32_t>(b));
            } else if (d < heap.top().first) {
              heap.pop();
              heap.emplace(d, static_cast<uint32_t>(b));
            }
          }
        }
      }
      for (size_t q = first; q < last; ++q) {
        auto& heap = heaps[q - first];
        reranked.clear();
        for (; !heap.empty(); heap.pop()) {
          const uint32_t id = heap.top().second;
          reranked.emplace_back(L2Double(data.query(q), data.row(id)), id);
        }
        std::sort(reranked.begin(), reranked.end());
        const size_t kept = std::min(k, reranked.size());
        for (size_t i = 0; i < kept; ++i) truth->ids[q * k + i] = reranked[i].second;
        truth->kth[q] = kept == 0 ? 0 : reranked[kept - 1].first;
      }
    }
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back(work);
  work();
  for (std::thread& worker : workers) worker.join();
}

}  // namespace

absl::StatusOr<Dataset> LoadDataset(const Config& config) {
  Dataset data;
  if (config.synthetic_n > 0) {
    data.name = absl::StrCat("synthetic-seed", config.seed);
    data.source = absl::StrCat("uniform random [0,1), seed ", config.seed);
    data.n = config.synthetic_n;
    data.dim = config.synthetic_dim;
    data.nq = config.queries;
    std::mt19937_64 random(config.seed);
    data.base.resize(data.n * data.dim);
    data.queries.resize(data.nq * data.dim);
    if (config.synthetic_latent == 0) {
      std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
      for (float& x : data.base) x = uniform(random);
      for (float& x : data.queries) x = uniform(random);
    } else {
      // x = A z + noise: z standard gaussian of dimension L, A a fixed gaussian D x L matrix
      // scaled so that each coordinate of A z has variance 1, noise gaussian per coordinate.
      const size_t latent = config.synthetic_latent;
      data.name = absl::StrCat("synthetic-latent", latent, "-noise", config.synthetic_noise,
                               "-seed", config.seed);
      data.source = absl::StrCat("gaussian near a random ", latent, "-dimensional subspace (noise ",
                                 config.synthetic_noise, " per coordinate), seed ", config.seed);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> a(data.dim * latent);
      const float scale = 1.0f / std::sqrt(static_cast<float>(latent));
      for (float& x : a) x = normal(random) * scale;
      std::vector<float> z(latent);
      for (std::vector<float>* rows : {&data.base, &data.queries}) {
        for (size_t row = 0; row < rows->size() / data.dim; ++row) {
          for (float& x : z) x = normal(random);
          float* out = rows->data() + row * data.dim;
          for (size_t j = 0; j < data.dim; ++j) {
            float sum = 0;
            for (size_t l = 0; l < latent; ++l) sum += a[j * latent + l] * z[l];
            out[j] = sum + static_cast<float>(config.synthetic_noise) * normal(random);
          }
        }
      }
    }
    data.cache_dir = config.cache_dir.empty() ? DefaultCacheDir() : config.cache_dir;
    return data;
  }
  data.name = "fashion-mnist";
  const std::string train = absl::StrCat(config.data_dir, "/", kTrainFile);
  const std::string test = absl::StrCat(config.data_dir, "/", kTestFile);
  data.source = absl::StrCat(train, " + ", test);
  size_t query_dim = 0;
  if (absl::Status s = ReadIdxImages(train, config.base_limit, &data.base, &data.n, &data.dim);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadIdxImages(test, config.queries, &data.queries, &data.nq, &query_dim);
      !s.ok()) {
    return s;
  }
  if (query_dim != data.dim) {
    return absl::DataLossError(absl::StrCat("'", test, "' has images of ", query_dim, " pixels, '",
                                            train, "' of ", data.dim));
  }
  if (!config.cache_dir.empty()) {
    data.cache_dir = config.cache_dir;
  } else if (access(config.data_dir.c_str(), W_OK) == 0) {
    data.cache_dir = config.data_dir;  // next to the data
  } else {
    data.cache_dir = DefaultCacheDir();
  }
  return data;
}

absl::StatusOr<GroundTruth> LoadOrComputeGroundTruth(const Dataset& data, size_t k, int threads) {
  GroundTruth truth;
  truth.k = k;
  truth.cache_file = absl::StrCat(data.cache_dir, "/luxdb-bench-truth-", data.name, "-n", data.n,
                                  "-d", data.dim, "-q", data.nq, "-k", k, ".bin");
  const uint64_t fingerprint = Fingerprint(data.base, data.queries);
  if (ReadTruth(truth.cache_file, data, k, fingerprint, &truth)) {
    truth.from_cache = true;
    return truth;
  }
  const Clock::time_point start = Clock::now();
  ComputeTruth(data, k, threads, &truth);
  truth.seconds = SecondsSince(start);
  std::error_code error;
  std::filesystem::create_directories(data.cache_dir, error);
  WriteTruth(truth.cache_file, data, truth, fingerprint);
  return truth;
}

double RecallOfRow(const Dataset& data, const GroundTruth& truth, size_t query,
                   std::span<const uint64_t> ids) {
  size_t hits = 0;
  for (uint64_t id : ids) {
    if (id >= data.n) continue;  // padding (no result) or garbage
    hits += L2Double(data.query(query), data.row(id)) <= truth.kth[query];
  }
  return static_cast<double>(hits) / truth.k;
}

double Recall(const Dataset& data, const GroundTruth& truth, std::span<const uint64_t> ids,
              size_t k) {
  const size_t rows = ids.size() / k;
  double sum = 0;
  for (size_t q = 0; q < rows; ++q) sum += RecallOfRow(data, truth, q, ids.subspan(q * k, k));
  return rows == 0 ? 0 : sum / rows;
}

}  // namespace luxdb::bench
