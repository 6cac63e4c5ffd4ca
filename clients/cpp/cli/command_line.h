// The command line of `luxdb`: its usage text and a parser that checks it completely, so that
// a usage error is reported before any file is read or the server contacted.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/token.h"
#include "luxdb/client.h"

namespace luxdb::cli {

// What `luxdb --help` prints.
extern const char kUsage[];

// A fully checked command line.
struct Invocation {
  ConnectOptions connect;
  std::string command;
  std::vector<std::string> operands;
  std::map<std::string, std::string> options;  // command options given, by canonical name
  // Typed arguments, by command.
  Space space = Space::kL2;
  uint32_t dim = 0;
  uint32_t shards = 1;    // create --shards (cluster mode)
  uint32_t replicas = 1;  // create --replicas (cluster mode)
  InitOptions init;
  uint64_t number = 0;  // resize N, set-ef EF
  uint64_t ids_from = 0;
  size_t batch = 0;  // 0: sized automatically
  uint32_t k = 0;
  uint32_t ef = 0;
  std::vector<uint64_t> ids;
  // ids: one page (either given) or every id (neither).
  std::optional<uint64_t> start_after;
  std::optional<uint32_t> limit;
  bool json = false;
  std::string attributes_file;   // add --attributes
  Filter filter;                 // query --filter (empty: none)
  bool with_attributes = false;  // get --with-attributes
  std::string method = auth::kAnyMethod;
  std::string service;  // health: "" is the whole server
};

// The deadline of `luxdb health` without --timeout.
inline constexpr std::chrono::milliseconds kHealthTimeout = std::chrono::seconds(5);

// Parses argv[1..]: global options (anywhere), the command, its operands and its options,
// typed and range-checked; the secret from --secret, else --secret-file, else LUXDB_SECRET,
// and LUXDB_SALT / KDF_ITERATIONS from the environment (neither for `health`: the health
// service is open). INVALID_ARGUMENT with a one-line message for any usage error (unknown
// command or option, an option of another command, a missing or malformed value, a bad IDS
// list, a malformed --filter naming the field or condition, no secret).
absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args);

}  // namespace luxdb::cli
