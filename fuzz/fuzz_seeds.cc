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

v1::Condition Condition(const std::string& key) {
  v1::Condition condition;
  condition.set_key(key);
  return condition;
}

// fuzz_request: the RPC's number (its position among luxdb.proto's unary RPCs, QueryStream
// left out), then the request. The fixture's indexes, ids and attribute keys are in
// fuzz_request.cc.
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
  {
    // With attributes: new ids and a replaced one, lists, every kind, one item without any.
    v1::AddItemsRequest add;
    add.set_name("l2");
    for (uint64_t id : {2, 30, 31}) add.add_ids(id);
    for (float x : Vectors(3, 4)) add.add_vectors(x);
    v1::Attributes* first = add.add_attributes();
    v1::Attribute* color = first->add_attributes();
    color->set_key("color");
    color->add_values()->set_s("red");
    v1::Attribute* nums = first->add_attributes();
    nums->set_key("nums");
    nums->add_values()->set_i(-3);
    nums->add_values()->set_i(INT64_MIN);
    v1::Attributes* second = add.add_attributes();
    v1::Attribute* price = second->add_attributes();
    price->set_key("price");
    price->add_values()->set_d(2.5);
    v1::Attribute* flag = second->add_attributes();
    flag->set_key("flag");
    flag->add_values()->set_b(true);
    add.add_attributes();  // none
    seed(7, add);
    add.set_name("big");
    add.clear_ids();
    for (uint64_t id : {1000, 1300, 1301}) add.add_ids(id);
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

  // SetAttributes: replace (a list), remove (empty), a deleted id (NOT_FOUND), a count
  // mismatch, and on the large index.
  v1::SetAttributesRequest set;
  set.set_name("l2");
  set.add_ids(1);
  set.add_ids(2);
  v1::Attribute* tags = set.add_attributes()->add_attributes();
  tags->set_key("tags");
  tags->add_values()->set_s("z");
  tags->add_values()->set_s("a");
  set.add_attributes();
  seed(15, set);
  set.add_ids(3);  // deleted, and one id more than attributes
  seed(15, set);
  set.set_name("big");
  set.clear_ids();
  set.add_ids(1010);
  set.add_ids(1011);
  seed(15, set);

  // Attributes just over each of the harness's limits (10 keys, 16-byte keys, 24-byte
  // strings, lists of 6) and against each rule, as the second item of a SetAttributes and of
  // an AddItems.
  std::vector<v1::Attributes> bad(10);
  for (int i = 0; i < 11; ++i) {
    v1::Attribute* a = bad[0].add_attributes();
    a->set_key(absl::StrCat("k", i));
    a->add_values()->set_i(i);
  }
  {
    v1::Attribute* a = bad[1].add_attributes();
    a->set_key(std::string(17, 'k'));
    a->add_values()->set_b(true);
    a = bad[2].add_attributes();
    a->set_key("color");
    a->add_values()->set_s(std::string(25, 's'));
    a = bad[3].add_attributes();
    a->set_key("nums");
    for (int i = 0; i < 7; ++i) a->add_values()->set_i(i);
    a = bad[4].add_attributes();
    a->set_key("price");
    a->add_values()->set_d(1);
    a->add_values()->set_d(2);
    a = bad[5].add_attributes();
    a->set_key("tags");
    a->add_values()->set_s("a");
    a->add_values()->set_i(1);
    a = bad[6].add_attributes();
    a->set_key("x");
    a->add_values()->set_d(std::nan(""));
    a = bad[7].add_attributes();
    a->set_key("n");
    a->add_values();  // no kind
    for (int i = 0; i < 2; ++i) {
      a = bad[8].add_attributes();
      a->set_key("n");
      a->add_values()->set_i(i);
    }
    bad[9].add_attributes()->set_key("flag");  // no value
  }
  for (const v1::Attributes& attributes : bad) {
    v1::SetAttributesRequest over;
    over.set_name("l2");
    over.add_ids(1);
    over.add_ids(2);
    over.add_attributes();
    *over.add_attributes() = attributes;
    seed(15, over);
    v1::AddItemsRequest add;
    add.set_name("ip");
    add.add_ids(1);
    add.add_ids(9);
    for (float x : Vectors(2, 2)) add.add_vectors(x);
    add.add_attributes();
    *add.add_attributes() = attributes;
    seed(7, add);
  }

  v1::GetElementsRequest with_attributes;
  with_attributes.set_name("l2");
  for (uint64_t id : {0, 5, 11, 12}) with_attributes.add_ids(id);
  with_attributes.set_with_attributes(true);
  seed(12, with_attributes);

  // Filtered queries: each kind of test, must_not and should, an id list, a key no item
  // has, malformed conditions; on "big" with a small ef, so the planner picks a filtered graph
  // search for filters many items match.
  std::vector<v1::Filter> filters;
  {
    v1::Filter f;
    v1::Condition c = Condition("color");
    c.mutable_equals()->set_s("red");
    *f.add_must() = c;
    filters.push_back(f);
  }
  {
    v1::Filter f;
    v1::Condition c = Condition("nums");
    c.mutable_any_of()->add_values()->set_i(3);
    c.mutable_any_of()->add_values()->set_d(-4.0);
    c.mutable_any_of()->add_values()->set_i(INT64_MIN);
    *f.add_must() = c;
    filters.push_back(f);
  }
  {
    v1::Filter f;
    v1::Condition c = Condition("price");
    c.mutable_range()->set_gte(1.5);
    c.mutable_range()->set_lt(40);
    *f.add_must() = c;
    v1::Condition flag = Condition("flag");
    flag.mutable_equals()->set_b(true);
    *f.add_must_not() = flag;
    filters.push_back(f);
  }
  {
    v1::Filter f;
    v1::Condition c = Condition("nums");
    c.mutable_range()->set_lt(-1e18);  // INT64_MIN only
    *f.add_must() = c;
    filters.push_back(f);
  }
  {
    v1::Filter f;
    *f.add_must_not() = Condition("color");
    f.mutable_must_not(0)->set_exists(true);
    filters.push_back(f);
  }
  {
    v1::Filter f;
    v1::Condition rare = Condition("rare");
    rare.mutable_equals()->set_s("yes");
    *f.add_should() = rare;
    v1::Condition tags_c = Condition("tags");
    tags_c.mutable_any_of()->add_values()->set_s("c");
    *f.add_should() = tags_c;
    v1::Condition x = Condition("x");
    x.mutable_range()->set_gt(-1);
    *f.add_should() = x;
    filters.push_back(f);
  }
  {
    v1::Filter f;
    for (uint64_t id : {0, 1, 2, 3, 1000, 1004, 1050}) f.add_ids(id);
    *f.add_must() = Condition("n");
    f.mutable_must(0)->set_exists(true);
    filters.push_back(f);
  }
  {
    v1::Filter f;
    v1::Condition c = Condition("nope");
    c.mutable_equals()->set_i(1);
    *f.add_must() = c;
    filters.push_back(f);
  }
  filters.emplace_back();  // empty: every live item
  {
    v1::Filter f;  // malformed: a range with no bound, then a test not set
    *f.add_must() = Condition("price");
    f.mutable_must(0)->mutable_range();
    *f.add_should() = Condition("color");
    filters.push_back(f);
  }
  {
    v1::Filter f;  // malformed: a NaN bound
    v1::Condition c = Condition("price");
    c.mutable_range()->set_lte(std::nan(""));
    *f.add_must_not() = c;
    filters.push_back(f);
  }
  {
    v1::Filter f;  // malformed: an empty key, an unset equals, an unset any_of value
    *f.add_should() = Condition("");
    f.mutable_should(0)->set_exists(false);
    v1::Condition equals = Condition("color");
    equals.mutable_equals();
    *f.add_must() = equals;
    v1::Condition any = Condition("tags");
    any.mutable_any_of()->add_values()->set_s("a");
    any.mutable_any_of()->add_values();
    *f.add_must() = any;
    filters.push_back(f);
  }
  for (const v1::Filter& filter : filters) {
    for (const auto& [name, dim, ef] :
         {std::tuple<const char*, uint32_t, uint32_t>{"l2", 4, 0}, {"big", 2, 1}}) {
      v1::QueryIndexRequest query;
      query.set_name(name);
      query.set_k(4);
      query.set_ef(ef);
      for (float x : Vectors(2, dim, 1.5f)) query.add_vectors(x);
      *query.mutable_filter() = filter;
      seed(9, query);
    }
  }
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
