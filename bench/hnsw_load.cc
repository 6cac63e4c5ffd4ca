// luxdb-hnsw-load: times plain hnswlib loading an index file in-process, the baseline LuxDB's
// restart is compared with (bench/restart_bench.py).
//
//   luxdb-hnsw-load --space l2|ip|cosine --dim D FILE [--repeat N]
//
// Each repeat constructs hnswlib::HierarchicalNSW<float> from FILE the way a user of the
// library would (the loading constructor, which calls loadIndex(FILE, space, 0)), then runs
// one k=1 search (ef 200) for the first stored vector; both are timed, destruction is not.
// Prints one JSON object on stdout; "seconds" is the minimum load time over the repeats.
//
// Built with the same -march (LUXDB_SIMD) as the engine: the flag comes from the top-level
// add_compile_options, which this directory inherits.
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "luxdb-hnsw-load: " << message << "\n";
  std::exit(2);
}

[[noreturn]] void Usage() {
  std::cerr << "usage: luxdb-hnsw-load --space l2|ip|cosine --dim D FILE [--repeat N]\n";
  std::exit(2);
}

uint64_t ParseNumber(const std::string& flag, const std::string& text, uint64_t min, uint64_t max) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < min || value > max) {
    Fail(flag + " must be a whole number from " + std::to_string(min) + " to " +
         std::to_string(max) + ", got '" + text + "'");
  }
  return value;
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The file header's per-element size encodes the dimension; hnswlib does not check it.
void CheckDimension(const std::string& path, uint32_t dim, uint64_t* file_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) Fail("cannot open '" + path + "'");
  *file_bytes = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  size_t header[6] = {};  // offset_level0, max_elements, count, size_per_element, label, data
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  if (!in) Fail("'" + path + "' is too short for an hnswlib index");
  const uint64_t label_offset = header[4];
  const uint64_t offset_data = header[5];
  if (label_offset < offset_data || (label_offset - offset_data) != uint64_t{dim} * sizeof(float)) {
    Fail("'" + path + "' holds vectors of dimension " +
         std::to_string((label_offset - offset_data) / sizeof(float)) + ", not --dim " +
         std::to_string(dim));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string space_name;
  uint32_t dim = 0;
  uint64_t repeat = 1;
  std::string path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--space") {
      space_name = value();
    } else if (arg == "--dim") {
      dim = static_cast<uint32_t>(ParseNumber(arg, value(), 1, 1u << 20));
    } else if (arg == "--repeat") {
      repeat = ParseNumber(arg, value(), 1, 1000);
    } else if (arg == "-h" || arg == "--help") {
      Usage();
    } else if (arg.starts_with("-")) {
      Fail("unknown flag '" + arg + "'");
    } else if (path.empty()) {
      path = arg;
    } else {
      Fail("expected one FILE, got '" + path + "' and '" + arg + "'");
    }
  }
  if (space_name.empty() || dim == 0 || path.empty()) Usage();
  std::unique_ptr<hnswlib::SpaceInterface<float>> space;
  if (space_name == "l2") {
    space = std::make_unique<hnswlib::L2Space>(dim);
  } else if (space_name == "ip" || space_name == "cosine") {  // cosine: IP on unit vectors
    space = std::make_unique<hnswlib::InnerProductSpace>(dim);
  } else {
    Fail("--space must be l2, ip or cosine, got '" + space_name + "'");
  }
  uint64_t file_bytes = 0;
  CheckDimension(path, dim, &file_bytes);

  std::vector<double> load_seconds;
  std::vector<double> query_seconds;
  uint64_t elements = 0;
  bool found_self = true;
  for (uint64_t r = 0; r < repeat; ++r) {
    const auto started = Clock::now();
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> index;
    try {
      index = std::make_unique<hnswlib::HierarchicalNSW<float>>(space.get(), path, false, 0);
    } catch (const std::exception& e) {
      Fail("cannot load '" + path + "': " + e.what());
    }
    const auto loaded = Clock::now();
    elements = index->cur_element_count;
    if (elements > 0) {
      // Sanity check: search for the first stored vector (ef 200; ef is not saved in the
      // file). A graph search may miss it on hard data, so this is reported, not required.
      // The loading constructor leaves num_deleted_ indeterminate; searchKnn only uses it to
      // choose whether to skip deleted elements, which does not change the answer here.
      index->setEf(200);
      std::vector<float> first(dim);
      std::memcpy(first.data(), index->getDataByInternalId(0), dim * sizeof(float));
      auto result = index->searchKnn(first.data(), 1);
      found_self = found_self && !result.empty() && result.top().first == 0.0f;
    }
    const auto queried = Clock::now();
    load_seconds.push_back(std::chrono::duration<double>(loaded - started).count());
    query_seconds.push_back(std::chrono::duration<double>(queried - loaded).count());
  }

  std::ostringstream json;
  json.precision(6);
  json << std::fixed;
  json << "{\"file\": " << JsonString(path) << ", \"space\": " << JsonString(space_name)
       << ", \"dim\": " << dim << ", \"elements\": " << elements
       << ", \"file_bytes\": " << file_bytes << ", \"repeat\": " << repeat
       << ", \"first_query_found_self\": " << (found_self ? "true" : "false")
       << ", \"seconds\": " << *std::min_element(load_seconds.begin(), load_seconds.end())
       << ", \"load_seconds\": [";
  for (size_t i = 0; i < load_seconds.size(); ++i) json << (i ? ", " : "") << load_seconds[i];
  json << "], \"first_query_seconds\": [";
  for (size_t i = 0; i < query_seconds.size(); ++i) json << (i ? ", " : "") << query_seconds[i];
  json << "]}\n";
  std::cout << json.str();
  return 0;
}
