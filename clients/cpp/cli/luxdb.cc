// luxdb: the LuxDB command-line tool, on top of luxdb::Client (cli/command_line.h has the
// commands).
//
// Two phases keep the exit codes honest: the command line is parsed and checked completely
// first (exit 2 on a usage error, before any file is read or the server contacted), then the
// command runs (exit 1 on a file, connection or server error). Every error is one line on
// stderr, "luxdb: <message>"; results go to stdout; the progress bar of `add` goes to stderr
// and only when stderr is a terminal.
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "auth/token.h"
#include "cli/attributes_file.h"
#include "cli/attributes_json.h"
#include "cli/command_line.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/vector_file.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "luxdb/client.h"
#include "luxdb/connect.h"
#include "luxdb/version.h"

namespace luxdb::cli {
namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// Batches of `add` and `query` stay far below the server's default 256 MiB message cap.
constexpr size_t kDefaultBatchRows = 10'000;
constexpr size_t kMaxBatchBytes = size_t{64} << 20;
// ... and the attributes of a batch of `add` below this many bytes more.
constexpr size_t kMaxBatchAttributeBytes = size_t{32} << 20;
// A query answer costs up to 10 bytes per id (varint) and 4 per distance.
constexpr size_t kQueryResultBytes = 14;
// Ids per GetElements call with attributes, whose size the vectors do not tell.
constexpr size_t kGetChunkWithAttributes = 10'000;
// Ids per DeleteItems call (up to 10 MB): each call is all or nothing, the command is not.
constexpr size_t kDeleteChunk = 1'000'000;

// ---------------------------------------------------------------------------------------------
// Phase two: the commands. Errors exit 1.

// Adds context around a status's message, keeping its code.
absl::Status WithContext(const absl::Status& status, absl::string_view before,
                         absl::string_view after = "") {
  return absl::Status(status.code(), absl::StrCat(before, status.message(), after));
}

absl::Status CheckDimension(const VectorReader& reader, const std::string& file,
                            const IndexInfo& info) {
  if (reader.dim() != info.dim) {
    return absl::InvalidArgumentError(absl::StrCat("'", file, "' holds vectors of dimension ",
                                                   reader.dim(), "; index '", info.name,
                                                   "' has dimension ", info.dim));
  }
  return absl::OkStatus();
}

std::string InfoJson(const IndexInfo& info) {
  return absl::StrFormat(
      "{\"name\": %s, \"space\": \"%s\", \"dim\": %d, \"initialized\": %s, "
      "\"element_count\": %d, \"deleted_count\": %d, \"tombstones\": %d, "
      "\"max_elements\": %d, \"m\": %d, \"ef_construction\": %d, \"ef\": %d, "
      "\"memory_bytes\": %d, \"compacting\": %s}",
      JsonString(info.name), SpaceName(info.space), info.dim, info.initialized ? "true" : "false",
      info.element_count, info.deleted_count, info.tombstones, info.max_elements, info.m,
      info.ef_construction, info.ef, info.memory_bytes, info.compacting ? "true" : "false");
}

// "12.5 MiB (13107200 bytes)".
std::string MemoryText(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB (%d bytes)", static_cast<double>(bytes) / 1048576.0, bytes);
}

absl::Status RunList(Client& db, const Invocation& inv) {
  absl::StatusOr<std::vector<IndexInfo>> indexes = db.ListIndexes();
  if (!indexes.ok()) return indexes.status();
  if (inv.json) {
    std::cout << "[";
    for (size_t i = 0; i < indexes->size(); ++i) {
      std::cout << (i == 0 ? "\n  " : ",\n  ") << InfoJson((*indexes)[i]);
    }
    std::cout << (indexes->empty() ? "]\n" : "\n]\n");
    return absl::OkStatus();
  }
  size_t name_width = 4;
  for (const IndexInfo& info : *indexes) name_width = std::max(name_width, info.name.size());
  constexpr absl::string_view kRow = "%-*s  %-6s  %6s  %12s  %10s  %12s  %4s  %6s  %6s\n";
  const int width = static_cast<int>(name_width);
  std::cout << absl::StrFormat(kRow, width, "name", "space", "dim", "items", "tombstones",
                               "max_elements", "m", "ef_c", "ef");
  for (const IndexInfo& info : *indexes) {
    auto init = [&](uint64_t v) { return info.initialized ? absl::StrCat(v) : std::string("-"); };
    std::cout << absl::StrFormat(kRow, width, info.name, SpaceName(info.space),
                                 absl::StrCat(info.dim), init(info.element_count),
                                 init(info.tombstones), init(info.max_elements), init(info.m),
                                 init(info.ef_construction), init(info.ef));
  }
  return absl::OkStatus();
}

absl::Status RunInfo(Client& db, const Invocation& inv) {
  absl::StatusOr<IndexInfo> info = db.DescribeIndex(inv.operands[0]);
  if (!info.ok()) return info.status();
  if (inv.json) {
    std::cout << InfoJson(*info) << "\n";
    return absl::OkStatus();
  }
  std::cout << "name:            " << info->name << "\n"
            << "space:           " << SpaceName(info->space) << "\n"
            << "dim:             " << info->dim << "\n"
            << "initialized:     " << (info->initialized ? "yes" : "no (run luxdb init)") << "\n";
  if (info->shards > 1 || info->replicas > 1) {
    std::cout << "shards:          " << info->shards << " x " << info->replicas << " replicas\n";
  }
  if (info->initialized) {
    std::cout << "items:           " << info->element_count << "\n"
              << "tombstones:      " << info->tombstones
              << (info->tombstones > 0 && !info->compacting ? " (luxdb compact frees them)" : "")
              << "\n"
              << "max_elements:    " << info->max_elements << "\n"
              << "m:               " << info->m << "\n"
              << "ef_construction: " << info->ef_construction << "\n"
              << "ef:              " << info->ef << "\n"
              << "memory:          " << MemoryText(info->memory_bytes) << "\n"
              << "compacting:      " << (info->compacting ? "yes" : "no") << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunAdd(Client& db, const Invocation& inv, VectorReader& reader,
                    AttributesReader* attributes_file) {
  const std::string& name = inv.operands[0];
  const std::string& file = inv.operands[1];
  absl::StatusOr<IndexInfo> info = db.DescribeIndex(name);
  if (!info.ok()) return info.status();
  if (absl::Status s = CheckDimension(reader, file, *info); !s.ok()) return s;
  if (!info->initialized) {
    return absl::FailedPreconditionError(absl::StrCat(
        "index '", name, "' is not initialised: run luxdb init ", name, " --max-elements N"));
  }
  if (reader.rows() > 0 && reader.rows() - 1 > kMissingId - 1 - inv.ids_from) {
    return absl::InvalidArgumentError(absl::StrCat("'", file, "' has ", reader.rows(),
                                                   " rows: ids from ", inv.ids_from,
                                                   " would pass the largest id ", kMissingId - 1));
  }
  const size_t batch =
      inv.batch != 0 ? inv.batch
                     : std::clamp<size_t>(kMaxBatchBytes / (size_t{reader.dim()} * sizeof(float)),
                                          1, kDefaultBatchRows);
  const bool terminal = ProgressBar::IsTerminal(STDERR_FILENO);
  ProgressBar bar(stderr, terminal, reader.rows(), ProgressBar::TerminalWidth(STDERR_FILENO));
  std::vector<float> vectors;
  std::vector<uint64_t> ids;
  std::vector<Attributes> attributes;  // of the batch's rows, with --attributes
  uint64_t added = 0;
  auto done_so_far = [&](uint64_t first) {
    return first == 0 ? std::string(" (nothing was added)")
                      : absl::StrCat(" (rows 0-", first - 1, " were added)");
  };
  while (true) {
    const uint64_t first = reader.rows_read();
    size_t batch_rows = batch;
    if (attributes_file != nullptr) {
      // The attributes decide the batch: as many rows as fit their byte budget.
      absl::StatusOr<size_t> lines =
          attributes_file->ReadBatch(batch, kMaxBatchAttributeBytes, &attributes);
      if (!lines.ok()) {
        bar.Finish();
        return WithContext(lines.status(), "", done_so_far(first));
      }
      batch_rows = std::max<size_t>(*lines, 1);  // 1: reads the end of the vector file
    }
    absl::StatusOr<size_t> rows = reader.ReadBatch(batch_rows, &vectors);
    if (!rows.ok()) {
      bar.Finish();
      return WithContext(rows.status(), "", done_so_far(first));
    }
    if (*rows == 0) break;
    if (attributes_file != nullptr && attributes.size() != *rows) {
      bar.Finish();
      return absl::DataLossError(
          absl::StrCat("'", inv.attributes_file, "' and '", file, "' disagree at row ", first,
                       ": did one change while being read?", done_so_far(first)));
    }
    ids.resize(*rows);
    std::iota(ids.begin(), ids.end(), inv.ids_from + first);
    absl::StatusOr<uint64_t> result = db.AddItems(name, vectors, ids, attributes);
    if (!result.ok()) {
      bar.Finish();
      return WithContext(result.status(),
                         absl::StrCat("rows ", first, "-", first + *rows - 1, " of '", file, "': "),
                         done_so_far(first));
    }
    added += *result;
    bar.Update(reader.rows_read());
  }
  bar.Finish();
  const double seconds = bar.elapsed_seconds();
  std::fprintf(
      stderr, "%s\n",
      absl::StrCat(
          "added ", WithThousands(added), " vectors from '", file, "'",
          attributes_file != nullptr
              ? absl::StrCat(" with attributes from '", inv.attributes_file, "'")
              : std::string(),
          " to index '", name, "'",
          reader.rows_read() > 0 ? absl::StrCat(" (ids ", inv.ids_from, "-",
                                                inv.ids_from + reader.rows_read() - 1, ")")
                                 : std::string(),
          " in ", absl::StrFormat("%.1f", seconds), " s",
          seconds > 0 && added > 0
              ? absl::StrCat(": ", WithThousands(std::llround(added / seconds)), " vectors/s")
              : std::string())
          .c_str());
  return absl::OkStatus();
}

absl::Status RunQuery(Client& db, const Invocation& inv, VectorReader& reader) {
  const std::string& name = inv.operands[0];
  absl::StatusOr<IndexInfo> info = db.DescribeIndex(name);
  if (!info.ok()) return info.status();
  if (absl::Status s = CheckDimension(reader, inv.operands[1], *info); !s.ok()) return s;
  const size_t batch =
      inv.batch != 0
          ? inv.batch
          : std::clamp<size_t>(std::min(kMaxBatchBytes / (size_t{reader.dim()} * sizeof(float)),
                                        kMaxBatchBytes / (size_t{inv.k} * kQueryResultBytes)),
                               1, kDefaultBatchRows);
  std::vector<float> vectors;
  bool first_row = true;
  // Output starts with the first answer, so that a refused query prints nothing on stdout.
  bool started = false;
  auto start = [&] {
    if (started) return;
    started = true;
    std::cout << (inv.json
                      ? "["
                      : absl::StrFormat("%-8s%-6s%-22s%s\n", "query", "rank", "id", "distance"));
  };
  while (true) {
    const uint64_t first = reader.rows_read();
    absl::StatusOr<size_t> rows = reader.ReadBatch(batch, &vectors);
    if (!rows.ok()) return rows.status();
    if (*rows == 0) break;
    absl::StatusOr<QueryResult> result = db.QueryIndex(name, vectors, inv.k, inv.filter, inv.ef);
    if (!result.ok()) return result.status();
    if (result->rows() != *rows) {
      return absl::InternalError(
          absl::StrCat("the server answered ", result->rows(), " rows for ", *rows, " queries"));
    }
    start();
    for (size_t r = 0; r < *rows; ++r) {
      std::span<const uint64_t> ids = result->row_ids(r);
      std::span<const float> distances = result->row_distances(r);
      if (inv.json) {
        std::cout << (first_row ? "\n  " : ",\n  ") << "{\"ids\": [";
        for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? ", " : "") << JsonId(ids[i]);
        std::cout << "], \"distances\": " << JsonFloats(distances) << "}";
      } else {
        for (size_t i = 0; i < ids.size(); ++i) {
          const bool missing = ids[i] == kMissingId;
          std::cout << absl::StrFormat("%-8d%-6d%-22s%s\n", first + r, i + 1,
                                       missing ? "-" : absl::StrCat(ids[i]),
                                       missing ? "-" : FormatFloat(distances[i]));
        }
      }
      first_row = false;
    }
  }
  start();
  if (inv.json) std::cout << (first_row ? "]\n" : "\n]\n");
  return absl::OkStatus();
}

absl::Status RunGet(Client& db, const Invocation& inv) {
  const std::string& name = inv.operands[0];
  absl::StatusOr<IndexInfo> info = db.DescribeIndex(name);
  if (!info.ok()) return info.status();
  const size_t chunk =
      std::min(std::max<size_t>(1, kMaxBatchBytes / (size_t{info->dim} * sizeof(float))),
               inv.with_attributes ? kGetChunkWithAttributes : SIZE_MAX);
  std::span<const uint64_t> all(inv.ids);
  for (size_t start = 0; start < all.size(); start += chunk) {
    std::span<const uint64_t> ids = all.subspan(start, std::min(chunk, all.size() - start));
    absl::StatusOr<Elements> elements = inv.with_attributes
                                            ? db.GetElementsWithAttributes(name, ids)
                                            : [&]() -> absl::StatusOr<Elements> {
      absl::StatusOr<Vectors> vectors = db.GetElements(name, ids);
      if (!vectors.ok()) return vectors.status();
      return Elements{.vectors = *std::move(vectors), .attributes = {}};
    }();
    if (!elements.ok()) return elements.status();
    const Vectors& vectors = elements->vectors;
    // Output starts with the first answer, so that a refused call prints nothing on stdout.
    if (inv.json && start == 0) std::cout << "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (inv.json) {
        std::cout << (start + i == 0 ? "\n  " : ",\n  ") << "{\"id\": " << ids[i]
                  << ", \"vector\": " << JsonFloats(vectors.row(i));
        if (inv.with_attributes) {
          std::cout << ", \"attributes\": " << AttributesJson(elements->attributes[i]);
        }
        std::cout << "}";
      } else {
        std::cout << ids[i] << ":";
        for (float v : vectors.row(i)) std::cout << " " << FormatFloat(v);
        std::cout << "\n";
        if (inv.with_attributes) {
          std::cout << "  attributes: " << AttributesJson(elements->attributes[i]) << "\n";
        }
      }
    }
  }
  if (inv.json) std::cout << (all.empty() ? "[]\n" : "\n]\n");
  return absl::OkStatus();
}

absl::Status RunIds(Client& db, const Invocation& inv) {
  const std::string& name = inv.operands[0];
  if (inv.limit.has_value() || inv.start_after.has_value()) {
    absl::StatusOr<IdsPage> page = db.GetIdsPage(name, inv.start_after, inv.limit.value_or(0));
    if (!page.ok()) return page.status();
    if (inv.json) {
      std::cout << "{\"ids\": [";
      for (size_t i = 0; i < page->ids.size(); ++i) std::cout << (i ? ", " : "") << page->ids[i];
      std::cout << "], \"next_start_after\": "
                << (page->next_start_after ? absl::StrCat(*page->next_start_after) : "null")
                << "}\n";
    } else {
      for (uint64_t id : page->ids) std::cout << id << "\n";
      if (page->next_start_after) {
        std::cerr << "luxdb: more ids follow: luxdb ids " << name << " --start-after "
                  << *page->next_start_after << "\n";
      }
    }
    return absl::OkStatus();
  }
  // Every id, a page at a time, printed as each page arrives. Output starts with the first
  // page, so that a refused call prints nothing on stdout.
  std::optional<uint64_t> start_after;
  uint64_t listed = 0;
  while (true) {
    absl::StatusOr<IdsPage> page = db.GetIdsPage(name, start_after);
    if (!page.ok()) {
      return listed == 0
                 ? page.status()
                 : WithContext(page.status(), absl::StrCat("after listing ", listed, " ids (up to ",
                                                           *start_after, "): "));
    }
    if (inv.json && !start_after) std::cout << "[";
    for (uint64_t id : page->ids) {
      if (inv.json) {
        std::cout << (listed > 0 ? ", " : "") << id;
      } else {
        std::cout << id << "\n";
      }
      ++listed;
    }
    if (!page->next_start_after) break;
    start_after = page->next_start_after;
  }
  if (inv.json) std::cout << "]\n";
  return absl::OkStatus();
}

absl::Status RunDelete(Client& db, const Invocation& inv) {
  const std::string& name = inv.operands[0];
  std::span<const uint64_t> all(inv.ids);
  uint64_t deleted = 0;
  for (size_t start = 0; start < all.size(); start += kDeleteChunk) {
    std::span<const uint64_t> ids = all.subspan(start, std::min(kDeleteChunk, all.size() - start));
    absl::StatusOr<uint64_t> result = db.DeleteItems(name, ids);
    if (!result.ok()) {
      return start == 0 ? result.status()
                        : WithContext(result.status(),
                                      absl::StrCat("after deleting ", deleted,
                                                   " items of the first ", start, " ids: "));
    }
    deleted += *result;
  }
  std::cout << "deleted " << deleted << " item" << (deleted == 1 ? "" : "s") << " from '" << name
            << "'";
  if (deleted < all.size()) std::cout << " (" << all.size() - deleted << " already deleted)";
  std::cout << "\n";
  return absl::OkStatus();
}

absl::Status RunToken(const Invocation& inv) {
  absl::StatusOr<auth::Key> key = auth::DeriveKey(inv.connect.secret, inv.connect.kdf);
  if (!key.ok()) return key.status();
  std::cout << auth::MintToken(*key, inv.method) << "\n";
  return absl::OkStatus();
}

// Calls grpc.health.v1.Health/Check without a token (the health service is open) and prints
// the serving status; anything but SERVING is an error, so that the exit status tells.
absl::Status RunHealth(const Invocation& inv) {
  using grpc::health::v1::HealthCheckResponse;
  const std::string target = client::Target(inv.connect);
  ConnectOptions open = inv.connect;
  open.secret.clear();
  open.insecure = true;  // no token; TLS options still apply
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(open);
  if (!channel.ok()) {
    return absl::Status(channel.status().code(), absl::StrCat("cannot connect to ", target, ": ",
                                                              channel.status().message()));
  }
  std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(*channel);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(inv.service);
  HealthCheckResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + inv.connect.call_timeout);
  const grpc::Status status = stub->Check(&context, request, &response);
  const std::string of_service =
      inv.service.empty() ? std::string() : absl::StrCat(" for service '", inv.service, "'");
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      break;
    case grpc::StatusCode::NOT_FOUND:  // the server knows no such service
      std::cout << HealthCheckResponse::ServingStatus_Name(HealthCheckResponse::SERVICE_UNKNOWN)
                << "\n";
      return absl::NotFoundError(
          absl::StrCat(target, " reports no health status", of_service, " (SERVICE_UNKNOWN)"));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(absl::StrCat(
          "cannot reach ", target, ": no answer within ", inv.connect.call_timeout.count(), " ms"));
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(
          absl::StrCat("cannot reach ", target, ": ", status.error_message()));
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::UnimplementedError(
          absl::StrCat(target, " has no gRPC health service: ", status.error_message()));
    default:
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          absl::StrCat(target, ": ", status.error_message()));
  }
  const std::string name = HealthCheckResponse::ServingStatus_IsValid(response.status())
                               ? HealthCheckResponse::ServingStatus_Name(response.status())
                               : absl::StrCat("status ", static_cast<int>(response.status()));
  std::cout << name << "\n";
  if (response.status() != HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(target, " is ", name, of_service));
  }
  return absl::OkStatus();
}

absl::Status Run(const Invocation& inv) {
  if (inv.command == "token") return RunToken(inv);
  if (inv.command == "health") return RunHealth(inv);
  // Files are checked before the server is contacted.
  std::unique_ptr<VectorReader> reader;
  if (inv.command == "add" || inv.command == "query") {
    absl::StatusOr<std::unique_ptr<VectorReader>> opened = VectorReader::Open(inv.operands[1]);
    if (!opened.ok()) return opened.status();
    reader = *std::move(opened);
  }
  std::unique_ptr<AttributesReader> attributes;
  if (!inv.attributes_file.empty()) {
    absl::StatusOr<std::unique_ptr<AttributesReader>> opened =
        AttributesReader::Open(inv.attributes_file);
    if (!opened.ok()) return opened.status();
    attributes = *std::move(opened);
    if (attributes->lines() != reader->rows()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", inv.attributes_file, "' has ", attributes->lines(), " line",
          attributes->lines() == 1 ? "" : "s", " of attributes and '", inv.operands[1], "' ",
          reader->rows(), " row", reader->rows() == 1 ? "" : "s", ": give one line per row"));
    }
  }
  absl::StatusOr<std::unique_ptr<Client>> db = Client::Connect(inv.connect);
  if (!db.ok()) return db.status();
  const std::string& name = inv.operands.empty() ? inv.command : inv.operands[0];
  if (inv.command == "list") return RunList(**db, inv);
  if (inv.command == "info") return RunInfo(**db, inv);
  if (inv.command == "add") return RunAdd(**db, inv, *reader, attributes.get());
  if (inv.command == "query") return RunQuery(**db, inv, *reader);
  if (inv.command == "get") return RunGet(**db, inv);
  if (inv.command == "ids") return RunIds(**db, inv);
  if (inv.command == "delete") return RunDelete(**db, inv);
  if (inv.command == "create") {
    const bool sharded = inv.shards > 1 || inv.replicas > 1;
    absl::Status created =
        sharded ? (*db)->CreateShardedIndex(name, inv.space, inv.dim, inv.shards, inv.replicas)
                : (*db)->CreateIndex(name, inv.space, inv.dim);
    if (!created.ok()) return created;
    std::cout << "created index '" << name << "' (" << SpaceName(inv.space) << ", dim " << inv.dim;
    if (sharded) std::cout << ", " << inv.shards << " shards x " << inv.replicas << " replicas";
    std::cout << ")\n";
  } else if (inv.command == "init") {
    if (absl::Status s = (*db)->InitIndex(name, inv.init); !s.ok()) return s;
    absl::StatusOr<IndexInfo> info = (*db)->DescribeIndex(name);
    if (!info.ok()) return info.status();
    std::cout << "initialised index '" << name << "': max_elements " << info->max_elements << ", m "
              << info->m << ", ef_construction " << info->ef_construction << "\n";
  } else if (inv.command == "set-ef") {
    if (absl::Status s = (*db)->SetEf(name, static_cast<uint32_t>(inv.number)); !s.ok()) return s;
    std::cout << "set ef of index '" << name << "' to " << inv.number << "\n";
  } else if (inv.command == "resize") {
    if (absl::Status s = (*db)->ResizeIndex(name, inv.number); !s.ok()) return s;
    std::cout << "resized index '" << name << "' to max_elements " << inv.number << "\n";
  } else if (inv.command == "compact") {
    absl::StatusOr<CompactInfo> compacted = (*db)->CompactIndex(name);
    if (!compacted.ok()) return compacted.status();
    std::cout << absl::StrFormat(
        "compacted index '%s': removed %d tombstone%s, %d live item%s, in %.2f s\n", name,
        compacted->tombstones_removed, compacted->tombstones_removed == 1 ? "" : "s",
        compacted->live, compacted->live == 1 ? "" : "s", compacted->seconds);
  } else if (inv.command == "backup") {
    absl::StatusOr<BackupInfo> backup = (*db)->Backup(inv.operands[0]);
    if (!backup.ok()) return backup.status();
    std::cout << absl::StrFormat("backup written to %s on the server: %.1f MiB in %.2f s\n",
                                 backup->path, backup->bytes / 1048576.0, backup->seconds);
  } else if (inv.command == "drop") {
    if (absl::Status s = (*db)->DeleteIndex(name); !s.ok()) return s;
    std::cout << "dropped index '" << name << "'\n";
  }
  return absl::OkStatus();
}

int Fail(int code, absl::string_view message) {
  std::cout.flush();
  std::fprintf(stderr, "luxdb: %s\n", std::string(message).c_str());
  return code;
}

}  // namespace
}  // namespace luxdb::cli

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "-h" || arg == "--help") {
      std::cout << luxdb::cli::kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "luxdb " << LUXDB_VERSION << "\n";
      return 0;
    }
  }
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "--secret" || arg.starts_with("--secret=")) {
      std::cerr << "luxdb: warning: --secret is visible to every local user in the process list "
                   "(ps); prefer LUXDB_SECRET or --secret-file\n";
      break;
    }
  }
  absl::StatusOr<luxdb::cli::Invocation> invocation = luxdb::cli::ParseCommandLine(args);
  if (!invocation.ok()) {
    // A malformed command line or LUXDB_* variable is a usage error; a secret file that
    // cannot be read is a file error.
    return luxdb::cli::Fail(invocation.status().code() == absl::StatusCode::kInvalidArgument
                                ? luxdb::cli::kExitUsage
                                : luxdb::cli::kExitError,
                            invocation.status().message());
  }
  if (absl::Status s = luxdb::cli::Run(*invocation); !s.ok()) {
    return luxdb::cli::Fail(luxdb::cli::kExitError, s.message());
  }
  return 0;
}
