// Writes the seed corpus of every fuzz target: fuzz_seeds OUT_DIR creates
// OUT_DIR/fuzz_request, OUT_DIR/fuzz_token and OUT_DIR/fuzz_graph_file (replacing their
// files). Seeds are generated rather than committed: small valid inputs that reach each
// target's deep paths, from which libFuzzer mutates.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/token.h"
#include "engine/hnsw_graph.h"
#include "luxdb/v1/luxdb.pb.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = luxdb::v1;
using luxdb::engine::HnswGraph;
using luxdb::storage::Space;

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "fuzz_seeds: cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

fs::path FreshDir(const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<float> Vectors(size_t n, uint32_t dim, float scale = 1.0f) {
  std::vector<float> out;
  for (size_t i = 0; i < n * dim; ++i) out.push_back(scale * std::cos(0.37f * i));
  return out;
}

// fuzz_request: the RPC's number (its position in luxdb.proto's service), then the request.
void RequestSeeds(const fs::path& dir) {
  int count = 0;
  auto seed = [&](int rpc, const google::protobuf::Message& request) {
    WriteFile(dir / absl::StrCat(count++, "-", rpc),
              std::string(1, static_cast<char>(rpc)) + request.SerializeAsString());
  };
  v1::CreateIndexRequest create;
  create.set_name("new");
  create.set_space(v1::L2);
  create.set_dim(4);
  seed(0, create);
  create.set_name("l2");  // taken
  seed(0, create);
  v1::InitIndexRequest init;
  init.set_name("raw");
  init.set_max_elements(16);
  init.set_m(4);
  seed(1, init);
  init.set_name("l2");  // initialised twice
  seed(1, init);
  v1::DeleteIndexRequest drop;
  drop.set_name("cos");
  seed(2, drop);
  v1::IndexExistsRequest exists;
  exists.set_name("ip");
  seed(3, exists);
  seed(4, v1::ListIndexesRequest());
  v1::DescribeIndexRequest describe;
  describe.set_name("dead");
  seed(5, describe);
  v1::SetEfRequest ef;
  ef.set_name("l2");
  ef.set_ef(40);
  seed(6, ef);
  for (const auto& [name, dim, first_id] : {std::tuple<const char*, uint32_t, uint64_t>{"l2", 4, 2},
                                            {"cos", 8, 200},
                                            {"ip", 2, 9},
                                            {"dead", 3, 11},
                                            {"empty", 4, 0}}) {
    v1::AddItemsRequest add;
    add.set_name(name);
    for (uint64_t id = first_id; id < first_id + 3; ++id) add.add_ids(id);
    for (float x : Vectors(3, dim)) add.add_vectors(x);
    seed(7, add);
  }
  v1::DeleteItemsRequest del;
  del.set_name("l2");
  del.add_ids(1);
  del.add_ids(3);
  seed(8, del);
  for (const auto& [name, dim] : {std::pair<const char*, uint32_t>{"l2", 4},
                                  {"cos", 8},
                                  {"ip", 2},
                                  {"dead", 3},
                                  {"empty", 4}}) {
    v1::QueryIndexRequest query;
    query.set_name(name);
    query.set_k(3);
    for (float x : Vectors(2, dim, 1.5f)) query.add_vectors(x);
    seed(9, query);
  }
  v1::ResizeIndexRequest resize;
  resize.set_name("l2");
  resize.set_new_max_elements(100);
  seed(10, resize);
  resize.set_name("ip");
  resize.set_new_max_elements(2);  // below the count
  seed(10, resize);
  v1::GetIdsRequest ids;
  ids.set_name("l2");
  seed(11, ids);
  // Pages: a limit alone, start_after alone (0 is an id), both, and the extremes.
  ids.set_limit(3);
  seed(11, ids);
  ids.clear_limit();
  ids.set_start_after(0);
  seed(11, ids);
  ids.set_limit(2);
  ids.set_start_after(5);
  seed(11, ids);
  ids.set_limit(0);
  ids.set_start_after(UINT64_MAX);
  seed(11, ids);
  ids.set_limit(UINT32_MAX);  // above kMaxIdsPerPage
  seed(11, ids);
  ids.set_name("dead");  // every item deleted
  ids.set_limit(1);
  ids.clear_start_after();
  seed(11, ids);
  v1::GetElementsRequest elements;
  elements.set_name("cos");
  elements.add_ids(101);
  elements.add_ids(100);
  seed(12, elements);
  v1::BackupRequest backup;
  backup.set_path("copy");
  seed(13, backup);
  backup.set_path("../escape");
  seed(13, backup);
  v1::CompactIndexRequest compact;
  compact.set_name("dead");  // every item deleted: all tombstones
  seed(14, compact);
  compact.set_name("l2");
  seed(14, compact);
}

// fuzz_token. libFuzzer's FuzzedDataProvider takes integers from the end of the input and
// strings from its start; the last byte picks the mode (even: arbitrary, odd: mutated).
void TokenSeeds(const fs::path& dir) {
  luxdb::auth::Key other_key{};
  other_key.fill(7);
  const std::string method = "/luxdb.v1.LuxDB/QueryIndex";
  const std::string foreign =
      luxdb::auth::MintToken(other_key, method, std::chrono::system_clock::time_point{});
  // Arbitrary mode: method, token (signed with another key), method length, mode.
  WriteFile(dir / "arbitrary-foreign",
            method + foreign + std::string(1, static_cast<char>(method.size())) + '\0');
  WriteFile(dir / "arbitrary-short", std::string("*abc") + '\1' + '\0');
  // Mutated mode: the bytes are read as choices (method, nonce, age, edits) by the target.
  uint32_t lcg = 12345;
  for (int i = 0; i < 6; ++i) {
    std::string bytes;
    for (int j = 0; j < 24 + 8 * i; ++j) {
      lcg = lcg * 1103515245u + 12345u;
      bytes.push_back(static_cast<char>(lcg >> 24));
    }
    bytes.back() = static_cast<char>(1 + 2 * i);
    WriteFile(dir / absl::StrCat("mutated-", i), bytes);
  }
}

// fuzz_graph_file: the option byte (space in bits 0-1; bit 2: max_elements from bits 3-7),
// then a graph hnswlib saved.
void GraphSeeds(const fs::path& dir) {
  const fs::path scratch = dir / "scratch.hnsw";
  struct Shape {
    const char* name;
    uint8_t options;
    Space space;
    uint32_t dim;
    uint32_t m;
    uint64_t capacity;
    size_t items;
    size_t deleted;  // the first ones
  };
  const Shape shapes[] = {
      {"l2-multilevel", 0, Space::kL2, 4, 4, 40, 30, 3},
      {"cosine", 2, Space::kCosine, 8, 16, 12, 10, 0},
      {"ip-grow", 1 | 4 | (20 << 3), Space::kIp, 2, 2, 6, 5, 1},
      {"empty", 0, Space::kL2, 4, 4, 8, 0, 0},
      {"all-deleted", 0, Space::kL2, 3, 2, 4, 3, 3},
      {"single", 4 | (1 << 3), Space::kL2, 1, 2, 1, 1, 0},
  };
  for (const Shape& shape : shapes) {
    auto graph = HnswGraph::Create({shape.space, shape.dim, shape.capacity, shape.m, 20, 3});
    if (!graph.ok()) {
      std::fprintf(stderr, "fuzz_seeds: %s\n", graph.status().ToString().c_str());
      std::exit(1);
    }
    const std::vector<float> vectors = Vectors(shape.items, shape.dim);
    for (size_t i = 0; i < shape.items; ++i) {
      (void)(*graph)->Add(vectors.data() + i * shape.dim, 1000 + i);
    }
    for (size_t i = 0; i < shape.deleted; ++i) (void)(*graph)->MarkDeleted(1000 + i);
    if (absl::Status s = (*graph)->Save(scratch.string()); !s.ok()) {
      std::fprintf(stderr, "fuzz_seeds: %s\n", s.ToString().c_str());
      std::exit(1);
    }
    std::ifstream in(scratch, std::ios::binary);
    const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    WriteFile(dir / shape.name, std::string(1, static_cast<char>(shape.options)) + file);
  }
  fs::remove(scratch);
}

// Command lines, environments and call headers for fuzz_options (its input format is in
// fuzz_options.cc).
void OptionSeeds(const fs::path& dir) {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"defaults", "/data"},
      {"transport",
       "/data\n--max-connection-idle-seconds\n0\n--max-connection-age-seconds=30\n"
       "--handshake-timeout-seconds\n2\n--keepalive-seconds\n15\n--max-transport-memory-mb\n600"},
      {"memory-below-message", "/data\n--max-message-mb=512\n--max-transport-memory-mb=100"},
      {"environment", "ENV LUXDB_MAX_CONNECTION_AGE_SECONDS=5\nENV LUXDB_SECRET_FILE=/s\n/data"},
      {"secret-conflict", "/data\n--secret\nx\n--secret-file\n/run/s"},
      {"import", "/d\n--import-path\n/x\n--import-name\nn\n--import-space\nl2\n--import-dim\n4"},
      {"two-headers", "/data\nHDR Bearer AAAA\nHDR Bearer BBBB"},
      {"bearer-garbage", "/data\nHDR Bearer AQAAAZ-not-a-token"},
      {"health-path", "/data\nPATH /grpc.health.v1.Health/Check"},
      {"no-header", "/data\nPATH /luxdb.v1.LuxDB/AddItems"},
  };
  for (const auto& [name, text] : seeds) WriteFile(dir / name, text);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  RequestSeeds(FreshDir(out / "fuzz_request"));
  TokenSeeds(FreshDir(out / "fuzz_token"));
  GraphSeeds(FreshDir(out / "fuzz_graph_file"));
  OptionSeeds(FreshDir(out / "fuzz_options"));
  return 0;
}
