// The README's C++ example: create an index, add 100 vectors, query two of them, read them
// back. Usage: luxdb-cpp-quickstart [HOST:PORT | HOST [PORT]]; without them the address comes
// from LUXDB_ADDRESS or LUXDB_HOST / LUXDB_PORT (else 127.0.0.1:8484), and the secret from
// LUXDB_SECRET or LUXDB_SECRET_FILE.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "luxdb/client.h"

int Fail(const absl::Status& status) {
  std::cerr << "quickstart: " << status << "\n";
  return 1;
}

int main(int argc, char** argv) {
  luxdb::ConnectOptions options;  // host and port unset: from the environment, see above
  if (argc == 2 && std::string_view(argv[1]).find(':') != std::string_view::npos) {
    absl::StatusOr<std::pair<std::string, int>> address =
        luxdb::client::ParseAddress(argv[1], "HOST:PORT");
    if (!address.ok()) return Fail(address.status());
    options.host = address->first;
    options.port = address->second;
  } else {
    if (argc > 1) options.host = argv[1];
    if (argc > 2) options.port = std::atoi(argv[2]);
  }
  // The address and secret the caller left unset, and LUXDB_SALT / KDF_ITERATIONS if the
  // server sets them.
  absl::StatusOr<luxdb::ConnectOptions> env = luxdb::client::WithEnvironment(options);
  if (!env.ok()) return Fail(env.status());

  absl::StatusOr<std::unique_ptr<luxdb::Client>> connected = luxdb::Client::Connect(*env);
  if (!connected.ok()) return Fail(connected.status());  // UNAUTHENTICATED: wrong secret
  luxdb::Client& db = **connected;

  const std::string name = "cpp-quickstart";
  if (absl::StatusOr<bool> exists = db.IndexExists(name); exists.ok() && *exists) {
    if (absl::Status s = db.DeleteIndex(name); !s.ok()) return Fail(s);
  }
  if (absl::Status s = db.CreateIndex(name, luxdb::Space::kL2, 4); !s.ok()) return Fail(s);
  if (absl::Status s = db.InitIndex(name, {.max_elements = 1000}); !s.ok()) return Fail(s);

  std::vector<float> vectors(100 * 4);  // 100 vectors of dimension 4, row-major
  std::vector<uint64_t> ids(100);
  for (size_t i = 0; i < vectors.size(); ++i) vectors[i] = std::sin(static_cast<float>(i));
  std::iota(ids.begin(), ids.end(), 1000);
  absl::StatusOr<uint64_t> added = db.AddItems(name, vectors, ids);
  if (!added.ok()) return Fail(added.status());

  // The first two vectors as queries: each finds itself first, at distance 0.
  std::span<const float> queries(vectors.data(), 2 * 4);
  absl::StatusOr<luxdb::QueryResult> nearest = db.QueryIndex(name, queries, /*k=*/3);
  if (!nearest.ok()) return Fail(nearest.status());
  for (size_t row = 0; row < nearest->rows(); ++row) {
    std::cout << "query " << row << ": nearest id " << nearest->row_ids(row)[0] << " at distance "
              << nearest->row_distances(row)[0] << "\n";
  }

  absl::StatusOr<luxdb::Vectors> back = db.GetElements(name, std::vector<uint64_t>{1000, 1001});
  if (!back.ok()) return Fail(back.status());
  absl::StatusOr<luxdb::IndexInfo> info = db.DescribeIndex(name);
  if (!info.ok()) return Fail(info.status());
  std::cout << "added " << *added << " vectors; read back " << back->rows() << " of dimension "
            << back->dim << "; index: " << info->element_count << " items\n";
  return 0;
}
