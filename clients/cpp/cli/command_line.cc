#include "cli/command_line.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "auth/secret_file.h"
#include "auth/token.h"
#include "cli/attributes_json.h"
#include "cli/id_list.h"
#include "engine/limits.h"

namespace luxdb::cli {

const char kUsage[] =
    R"usage(usage: luxdb [OPTIONS] COMMAND [ARGS]

Commands:
  list                                  every index, with its size and parameters
  info NAME                             one index's configuration and counts
  create NAME --space l2|ip|cosine --dim D [--shards S] [--replicas R]
                                        create an empty index of D-dimensional vectors
                                        (S shards of R replicas on a cluster; default 1, 1)
  init NAME --max-elements N [--m M] [--ef-construction E]
                                        give an index its capacity and graph parameters
                                        (M default 16, E default 200)
  add NAME FILE [--ids-from N] [--batch B] [--attributes JSONL]
                                        add the vectors of FILE; row i gets id N + i
                                        (N defaults to 0), sent B rows per call, and
                                        the attributes on line i + 1 of JSONL (below)
  query NAME FILE -k K [--ef E] [--json] [--batch B] [--filter JSON]
                                        the K nearest neighbours of each row of FILE
                                        (among the items that pass the filter, below);
                                        K up to 10000, E (default: the index's, set-ef)
                                        up to 100000
  get NAME IDS [--json] [--with-attributes]
                                        the vectors of IDS (and their attributes)
  ids NAME [--json] [--limit N] [--start-after ID]
                                        the ids of an index's live items, ascending; one
                                        page of them with --limit or --start-after (below)
  delete NAME IDS                       mark IDS deleted
  set-ef NAME EF                        set an index's default search breadth
  resize NAME N                         change an index's capacity to N items
  compact NAME                          rebuild an index's graph without its tombstones
                                        (deleted items, replaced vectors) to free their
                                        memory; returns once the new graph serves
  drop NAME                             delete an index and everything in it
  backup DIR                            the server writes a consistent copy of its data
                                        directory to DIR, a new directory on ITS machine
  token [--method M]                    print a call token for grpcurl (below)
  health [--service S]                  ask the server's gRPC health service (below)

FILE is .npy (2-D float32 or float64, C order), .fvecs, or .csv (one vector per line).
IDS is a comma-separated list of ids and ranges, e.g. 1,5,10-20.
list, info, ids, get and query print a table, or JSON with --json; in query's JSON, a slot
the index could not fill (fewer than K live items) has id and distance null, "-" in tables.
info shows an index's tombstones (deleted items and old vectors of replaced ones, which
keep their memory until a compaction), the memory reserved for its graph, and whether a
compaction is running; the server also compacts by itself once tombstones pile up.

Attributes are named values of an item that queries can filter on. add --attributes reads
a JSON Lines file with one object per row of FILE, in order ({} for none), e.g.
  {"tenant": 7, "tags": ["a", "b"], "price": 9.5, "new": true}
A value is a string, a bool, a whole number (int64), another number (double), or an array
of strings or of whole numbers. Adding an id again replaces its attributes too.
query --filter JSON keeps the items that pass every "must" condition, no "must_not" one,
at least one "should" one (if any), and whose id is in "ids" (if given and not
empty):
  --filter '{"must": [{"key": "tenant", "equals": 7}],
             "must_not": [{"key": "hidden", "exists": true}],
             "should": [{"key": "tags", "any_of": ["a", "b"]},
                        {"key": "price", "range": {"gte": 1, "lt": 5}}],
             "ids": [1, 2, 3]}'
A condition is {"key": K} with one test: "equals": V, "any_of": [V, ...], "range": {"gt",
"gte", "lt", "lte": number, ...} or "exists": true|false. Ints and doubles compare as
numbers; an array attribute matches if any of its values does; an item without the key
fails every test but "exists": false.

Options:
  --address H:P     the server's address, host:port or [IPv6]:port (default:
                    $LUXDB_ADDRESS, else $LUXDB_HOST and $LUXDB_PORT, else 127.0.0.1:8484)
  --host H          the server's host alone (default as for --address: 127.0.0.1)
  --port P          the server's port alone (default as for --address: 8484)
  --secret S        the server's shared secret (default: $LUXDB_SECRET, else the file
                    $LUXDB_SECRET_FILE names); visible to other users in the process list,
                    so prefer LUXDB_SECRET or --secret-file
  --secret-file F   read the secret from file F (e.g. a server's data/secret)
  --tls-ca FILE     connect with TLS, verifying the server's certificate against FILE (PEM)
  --tls-cert FILE, --tls-key FILE
                    client certificate and key, for a server that requires mutual TLS
  --insecure        no secret, for a server run with --insecure
  --timeout S       give up on any call after S seconds (default: connect 10 s, calls none;
                    health 5 s)
  -h, --help        this help
  --version         print luxdb's version
LUXDB_SALT and KDF_ITERATIONS, if the server sets them, must be set alike here. LUXDB_ADDRESS
together with LUXDB_HOST or LUXDB_PORT, or LUXDB_SECRET together with LUXDB_SECRET_FILE, is a
usage error: set one.

ids fetches the ids a page at a time and prints them as they come. --limit and
--start-after fetch one page only: the ids above ID (default: from the smallest), at most N
(default 0: as many as the server sends in one reply, up to 10,000,000); when more follow,
stderr names the --start-after of the next page (JSON: {"ids": [...], "next_start_after":
ID or null}).

token prints a fresh single-use token, bound to method M ("luxdb.v1.LuxDB/QueryIndex") or,
by default, valid for any method:
  grpcurl -plaintext -H "authorization: Bearer $(luxdb token)" ...

health calls grpc.health.v1.Health/Check for service S (default "": the whole server;
"luxdb.v1.LuxDB": the LuxDB service) and prints SERVING, NOT_SERVING, UNKNOWN or
SERVICE_UNKNOWN. It needs no secret (the health service is open); it exits 0 only when
SERVING, so it serves as a container health check: luxdb health --port 8484

Exit status: 0 on success, 1 on a file (a --secret-file or LUXDB_SECRET_FILE that cannot be
read too), connection or server error, 2 on a usage error (a malformed LUXDB_* variable too).
)usage";

// kUsage spells these out; a change to one must change the text too.
static_assert(engine::kMaxK == 10000 && engine::kMaxEf == 100000);
static_assert(engine::kDefaultM == 16 && engine::kDefaultEfConstruction == 200);

namespace {

// Where an option may appear: everywhere (global) or with the commands listed.
struct OptionSpec {
  const char* name;
  bool takes_value;
  std::vector<std::string> commands;  // empty: a global option
};

const std::vector<OptionSpec>& Options() {
  static const auto* options = new std::vector<OptionSpec>{
      {"--address", true, {}},
      {"--host", true, {}},
      {"--port", true, {}},
      {"--secret", true, {}},
      {"--secret-file", true, {}},
      {"--tls-ca", true, {}},
      {"--tls-cert", true, {}},
      {"--tls-key", true, {}},
      {"--insecure", false, {}},
      {"--timeout", true, {}},
      {"--space", true, {"create"}},
      {"--dim", true, {"create"}},
      {"--shards", true, {"create"}},
      {"--replicas", true, {"create"}},
      {"--max-elements", true, {"init"}},
      {"--m", true, {"init"}},
      {"--ef-construction", true, {"init"}},
      {"--ids-from", true, {"add"}},
      {"--batch", true, {"add", "query"}},
      {"-k", true, {"query"}},
      {"--ef", true, {"query"}},
      {"--json", false, {"list", "info", "ids", "get", "query"}},
      {"--attributes", true, {"add"}},
      {"--filter", true, {"query"}},
      {"--with-attributes", false, {"get"}},
      {"--limit", true, {"ids"}},
      {"--start-after", true, {"ids"}},
      {"--method", true, {"token"}},
      {"--service", true, {"health"}},
  };
  return *options;
}

// Other spellings of options.
const std::map<std::string, std::string>& Aliases() {
  static const auto* aliases =
      new std::map<std::string, std::string>{{"--k", "-k"}, {"-M", "--m"}, {"--M", "--m"}};
  return *aliases;
}

// Commands and their operands, for usage errors.
const std::map<std::string, std::vector<std::string>>& Commands() {
  static const auto* commands = new std::map<std::string, std::vector<std::string>>{
      {"list", {}},
      {"info", {"NAME"}},
      {"create", {"NAME"}},
      {"init", {"NAME"}},
      {"add", {"NAME", "FILE"}},
      {"query", {"NAME", "FILE"}},
      {"get", {"NAME", "IDS"}},
      {"ids", {"NAME"}},
      {"delete", {"NAME", "IDS"}},
      {"set-ef", {"NAME", "EF"}},
      {"resize", {"NAME", "N"}},
      {"compact", {"NAME"}},
      {"drop", {"NAME"}},
      {"backup", {"DIR"}},
      {"token", {}},
      {"health", {}},
  };
  return *commands;
}

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

constexpr char kSeeHelp[] = " (see luxdb --help)";

template <typename T>
absl::StatusOr<T> ParseNumber(absl::string_view what, const std::string& text, uint64_t min,
                              uint64_t max) {
  uint64_t value = 0;
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0])) ||
      !absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return Usage(
        absl::StrCat(what, " needs a whole number from ", min, " to ", max, ", got '", text, "'"));
  }
  return static_cast<T>(value);
}

absl::StatusOr<Space> ParseSpace(const std::string& text) {
  const std::string space = absl::AsciiStrToLower(text);
  if (space == "l2") return Space::kL2;
  if (space == "ip") return Space::kIp;
  if (space == "cosine") return Space::kCosine;
  return Usage(absl::StrCat("--space must be l2, ip or cosine, got '", text, "'"));
}

}  // namespace

absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args) {
  Invocation inv;
  std::map<std::string, std::string> given;  // every option given, by canonical name
  bool options_end = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (options_end || arg.size() < 2 || arg[0] != '-') {
      inv.operands.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_end = true;
      continue;
    }
    std::optional<std::string> value;
    if (const size_t eq = arg.find('='); absl::StartsWith(arg, "--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (auto alias = Aliases().find(arg); alias != Aliases().end()) arg = alias->second;
    const auto spec = std::find_if(Options().begin(), Options().end(),
                                   [&](const OptionSpec& s) { return arg == s.name; });
    if (spec == Options().end()) return Usage(absl::StrCat("unknown option '", arg, "'", kSeeHelp));
    if (spec->takes_value && !value) {
      if (i + 1 >= args.size()) return Usage(absl::StrCat(arg, " needs a value"));
      value = args[++i];
    } else if (!spec->takes_value && value) {
      return Usage(absl::StrCat(arg, " takes no value"));
    }
    given[arg] = value.value_or("");
  }

  if (inv.operands.empty()) return Usage(absl::StrCat("missing command", kSeeHelp));
  inv.command = inv.operands.front();
  inv.operands.erase(inv.operands.begin());
  const auto command = Commands().find(inv.command);
  if (command == Commands().end()) {
    return Usage(absl::StrCat("unknown command '", inv.command, "'", kSeeHelp));
  }
  std::string synopsis = inv.command;
  for (const std::string& operand : command->second) absl::StrAppend(&synopsis, " ", operand);
  if (inv.operands.size() != command->second.size()) {
    return Usage(absl::StrCat(
        "'", inv.command, "' takes ",
        command->second.empty() ? "no arguments" : synopsis.substr(inv.command.size() + 1),
        ", got ", inv.operands.size(), " argument", inv.operands.size() == 1 ? "" : "s", ": luxdb ",
        synopsis));
  }

  // Global options.
  for (const auto& [name, value] : given) {
    const auto spec = std::find_if(Options().begin(), Options().end(),
                                   [&](const OptionSpec& s) { return name == s.name; });
    if (!spec->commands.empty()) {
      if (std::find(spec->commands.begin(), spec->commands.end(), inv.command) ==
          spec->commands.end()) {
        return Usage(absl::StrCat(name, " is not an option of '", inv.command, "'"));
      }
      inv.options[name] = value;
      continue;
    }
    if (name == "--address") {
      if (given.contains("--host") || given.contains("--port")) {
        return Usage("--address and --host/--port contradict; give one");
      }
      absl::StatusOr<std::pair<std::string, int>> address =
          client::ParseAddress(value, "--address");
      if (!address.ok()) return Usage(address.status().message());
      inv.connect.host = address->first;
      inv.connect.port = address->second;
    } else if (name == "--host") {
      if (value.empty()) return Usage("--host is empty");
      inv.connect.host = value;
    } else if (name == "--port") {
      absl::StatusOr<int> port = ParseNumber<int>("--port", value, 1, 65535);
      if (!port.ok()) return port.status();
      inv.connect.port = *port;
    } else if (name == "--tls-ca") {
      inv.connect.tls_ca_file = value;
    } else if (name == "--tls-cert") {
      inv.connect.tls_cert_file = value;
    } else if (name == "--tls-key") {
      inv.connect.tls_key_file = value;
    } else if (name == "--insecure") {
      inv.connect.insecure = true;
    } else if (name == "--timeout") {
      double seconds = 0;
      if (!absl::SimpleAtod(value, &seconds) || !(seconds > 0) || seconds > 86400 * 365) {
        return Usage(
            absl::StrCat("--timeout needs a positive number of seconds, got '", value, "'"));
      }
      const auto timeout =
          std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(seconds * 1000)));
      inv.connect.connect_timeout = timeout;
      inv.connect.call_timeout = timeout;
    }
  }
  if (given.contains("--tls-cert") != given.contains("--tls-key")) {
    return Usage("--tls-cert and --tls-key go together");
  }
  if ((given.contains("--tls-cert") || given.contains("--tls-key")) &&
      !given.contains("--tls-ca")) {
    return Usage("--tls-cert and --tls-key need --tls-ca");
  }
  if (inv.command == "health") {
    // The health service is open: no secret, no key derivation (any secret option
    // given is ignored), a short default deadline.
    absl::StatusOr<ConnectOptions> addressed = client::AddressFromEnvironment(inv.connect);
    if (!addressed.ok()) return Usage(addressed.status().message());
    inv.connect = *std::move(addressed);
    if (!given.contains("--timeout")) inv.connect.call_timeout = kHealthTimeout;
    if (const auto service = given.find("--service"); service != given.end()) {
      inv.service = service->second;
    }
    return inv;
  }
  // The secret: --secret, else --secret-file, else LUXDB_SECRET, else LUXDB_SECRET_FILE.
  // A secret file that cannot be read is a file error (its own code, not INVALID_ARGUMENT).
  if (given.contains("--secret") && given.contains("--secret-file")) {
    return Usage("--secret and --secret-file contradict; give one");
  }
  if (given.contains("--secret")) {
    inv.connect.secret = given["--secret"];
    if (inv.connect.secret.empty()) return Usage("--secret is empty");
  } else if (given.contains("--secret-file")) {
    absl::StatusOr<std::string> secret = auth::ReadSecretFile(given["--secret-file"]);
    if (!secret.ok()) {
      return absl::Status(secret.status().code() == absl::StatusCode::kInvalidArgument
                              ? absl::StatusCode::kFailedPrecondition
                              : secret.status().code(),
                          absl::StrCat("--secret-file: ", secret.status().message()));
    }
    inv.connect.secret = *secret;
  }
  absl::StatusOr<ConnectOptions> resolved = client::WithEnvironment(inv.connect);
  if (!resolved.ok()) return resolved.status();
  inv.connect = *std::move(resolved);
  if (inv.connect.secret.empty() && !(inv.connect.insecure && inv.command != "token")) {
    return Usage(inv.command == "token"
                     ? "no secret: use --secret, --secret-file, LUXDB_SECRET or LUXDB_SECRET_FILE"
                     : "no secret: use --secret, --secret-file, LUXDB_SECRET or "
                       "LUXDB_SECRET_FILE (or --insecure for a server run with --insecure)");
  }

  // Command options and operands.
  auto option = [&](const std::string& name) -> const std::string* {
    auto it = inv.options.find(name);
    return it == inv.options.end() ? nullptr : &it->second;
  };
  auto require = [&](const std::string& name) -> absl::StatusOr<std::string> {
    if (const std::string* v = option(name)) return *v;
    return Usage(absl::StrCat("'", inv.command, "' needs ", name));
  };
  inv.json = option("--json") != nullptr;
  if (inv.command != "list" && inv.command != "token" && inv.operands[0].empty()) {
    return Usage("NAME is empty");
  }
  if (inv.command == "create") {
    absl::StatusOr<std::string> space = require("--space");
    if (!space.ok()) return space.status();
    absl::StatusOr<Space> parsed = ParseSpace(*space);
    if (!parsed.ok()) return parsed.status();
    inv.space = *parsed;
    absl::StatusOr<std::string> dim = require("--dim");
    if (!dim.ok()) return dim.status();
    absl::StatusOr<uint32_t> d = ParseNumber<uint32_t>("--dim", *dim, 1, engine::kMaxDimension);
    if (!d.ok()) return d.status();
    inv.dim = *d;
    if (const std::string* s = option("--shards")) {
      absl::StatusOr<uint32_t> v = ParseNumber<uint32_t>("--shards", *s, 1, engine::kMaxShards);
      if (!v.ok()) return v.status();
      inv.shards = *v;
    }
    if (const std::string* r = option("--replicas")) {
      absl::StatusOr<uint32_t> v = ParseNumber<uint32_t>("--replicas", *r, 1, engine::kMaxReplicas);
      if (!v.ok()) return v.status();
      inv.replicas = *v;
    }
  } else if (inv.command == "init") {
    absl::StatusOr<std::string> max = require("--max-elements");
    if (!max.ok()) return max.status();
    absl::StatusOr<uint64_t> n =
        ParseNumber<uint64_t>("--max-elements", *max, 1, engine::kMaxElements);
    if (!n.ok()) return n.status();
    inv.init.max_elements = *n;
    if (const std::string* m = option("--m")) {
      absl::StatusOr<uint32_t> v = ParseNumber<uint32_t>("--m", *m, 2, engine::kMaxM);
      if (!v.ok()) return v.status();
      inv.init.m = *v;
    }
    if (const std::string* e = option("--ef-construction")) {
      absl::StatusOr<uint32_t> v =
          ParseNumber<uint32_t>("--ef-construction", *e, 1, engine::kMaxEfConstruction);
      if (!v.ok()) return v.status();
      inv.init.ef_construction = *v;
    }
  } else if (inv.command == "add" || inv.command == "query") {
    if (const std::string* from = option("--ids-from")) {
      absl::StatusOr<uint64_t> v = ParseNumber<uint64_t>("--ids-from", *from, 0, kMissingId - 1);
      if (!v.ok()) return v.status();
      inv.ids_from = *v;
    }
    if (const std::string* batch = option("--batch")) {
      absl::StatusOr<size_t> v = ParseNumber<size_t>("--batch", *batch, 1, 100'000'000);
      if (!v.ok()) return v.status();
      inv.batch = *v;
    }
    if (inv.command == "query") {
      absl::StatusOr<std::string> k = require("-k");
      if (!k.ok()) return k.status();
      absl::StatusOr<uint32_t> kv = ParseNumber<uint32_t>("-k", *k, 1, engine::kMaxK);
      if (!kv.ok()) return kv.status();
      inv.k = *kv;
      if (const std::string* ef = option("--ef")) {
        absl::StatusOr<uint32_t> v = ParseNumber<uint32_t>("--ef", *ef, 1, engine::kMaxEf);
        if (!v.ok()) return v.status();
        inv.ef = *v;
      }
      if (const std::string* filter = option("--filter")) {
        absl::StatusOr<Filter> parsed = FilterFromJson(*filter);
        if (!parsed.ok()) return Usage(absl::StrCat("--filter: ", parsed.status().message()));
        inv.filter = *std::move(parsed);
      }
    } else if (const std::string* attributes = option("--attributes")) {
      if (attributes->empty()) return Usage("--attributes is empty");
      inv.attributes_file = *attributes;
    }
  } else if (inv.command == "get" || inv.command == "delete") {
    absl::StatusOr<std::vector<uint64_t>> ids = ParseIdList(inv.operands[1]);
    if (!ids.ok()) return Usage(ids.status().message());
    inv.ids = *std::move(ids);
    inv.with_attributes = option("--with-attributes") != nullptr;
  } else if (inv.command == "ids") {
    if (const std::string* limit = option("--limit")) {
      absl::StatusOr<uint32_t> v =
          ParseNumber<uint32_t>("--limit", *limit, 0, engine::kMaxIdsPerPage);
      if (!v.ok()) return v.status();
      inv.limit = *v;
    }
    if (const std::string* after = option("--start-after")) {
      absl::StatusOr<uint64_t> v = ParseNumber<uint64_t>("--start-after", *after, 0, UINT64_MAX);
      if (!v.ok()) return v.status();
      inv.start_after = *v;
    }
  } else if (inv.command == "resize") {
    absl::StatusOr<uint64_t> n =
        ParseNumber<uint64_t>("N", inv.operands[1], 1, engine::kMaxElements);
    if (!n.ok()) return n.status();
    inv.number = *n;
  } else if (inv.command == "set-ef") {
    absl::StatusOr<uint32_t> n = ParseNumber<uint32_t>("EF", inv.operands[1], 1, engine::kMaxEf);
    if (!n.ok()) return n.status();
    inv.number = *n;
  } else if (inv.command == "token") {
    if (const std::string* method = option("--method")) inv.method = *method;
    if (inv.method != auth::kAnyMethod && !absl::StartsWith(inv.method, "/")) {
      inv.method = "/" + inv.method;  // grpcurl spells methods without the leading slash
    }
  }
  return inv;
}

}  // namespace luxdb::cli
