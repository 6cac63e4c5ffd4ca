#include "server/options.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "auth/token.h"
#include "engine/limits.h"
#include "engine/memory_budget.h"
#include "luxdb/connect_options.h"

namespace luxdb::server {
namespace {

constexpr uint32_t kMaxMessageMbLimit = 2047;  // gRPC message sizes are 32-bit signed

// How a flag's value is set from text, and shown (its default, in --help).
struct Setter {
  std::function<absl::Status(Options&, absl::string_view)> set;
  std::function<std::string(const Options&)> show;
};

struct Flag {
  const char* name;
  std::string help;
  bool boolean;
  Setter setter;
};

template <typename T>
Setter Number(T Options::*field, uint64_t min, uint64_t max, const char* name) {
  return {
      [=](Options& options, absl::string_view text) -> absl::Status {
        uint64_t value = 0;
        if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--", name, " must be a whole number from ", min, " to ", max, ", got '", text, "'"));
        }
        options.*field = static_cast<T>(value);
        return absl::OkStatus();
      },
      [=](const Options& options) { return absl::StrCat(options.*field); }};
}

// A fraction from 0 to 1, e.g. "0.2".
Setter Fraction(double Options::*field, const char* name) {
  return {
      [=](Options& options, absl::string_view text) -> absl::Status {
        double value = 0;
        if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || value < 0 || value > 1) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", name, " must be a fraction from 0 to 1, got '", text, "'"));
        }
        options.*field = value;
        return absl::OkStatus();
      },
      [=](const Options& options) { return absl::StrCat(options.*field); }};
}

// --memory-budget-mb's help, with the default this machine computes.
std::string MemoryBudgetHelp() {
  const uint64_t bytes = engine::MemoryBudget::DefaultLimitBytes();
  return absl::StrCat(
      "memory all index graphs together may reserve, in MiB; InitIndex, ResizeIndex, "
      "compactions and imports beyond it are refused with RESOURCE_EXHAUSTED (default 0: 85% of "
      "the cgroup memory limit, else of MemTotal; here: ",
      bytes == std::numeric_limits<uint64_t>::max() ? "unknown, so unlimited"
                                                    : absl::StrCat(bytes >> 20, " MiB"),
      ")");
}

Setter Bool(bool Options::*field, const char* name) {
  return {[=](Options& options, absl::string_view text) -> absl::Status {
            const std::string value = absl::AsciiStrToLower(text);
            if (value == "true" || value == "1" || value == "yes") {
              options.*field = true;
            } else if (value == "false" || value == "0" || value == "no") {
              options.*field = false;
            } else {
              return absl::InvalidArgumentError(
                  absl::StrCat("--", name, " must be true or false, got '", text, "'"));
            }
            return absl::OkStatus();
          },
          [=](const Options& options) { return std::string(options.*field ? "true" : "false"); }};
}

// `unset` is what --help shows when the default is empty.
Setter Text(std::string Options::*field, const char* unset = "none") {
  return {[=](Options& options, absl::string_view text) {
            options.*field = std::string(text);
            return absl::OkStatus();
          },
          [=](const Options& options) {
            return (options.*field).empty() ? std::string(unset) : options.*field;
          }};
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      {"address",
       "HOST:PORT (or [IPv6]:PORT) to listen on, instead of --host and --port (the same "
       "variable clients read the server's address from)",
       false, Text(&Options::address, "--host:--port")},
      {"host", "address to listen on (0.0.0.0 for every interface)", false, Text(&Options::host)},
      {"port", "TCP port (0 picks a free one)", false, Number(&Options::port, 0, 65535, "port")},
      {"loglevel",
       "debug, info, warning, error or critical",
       false,
       {[](Options& options, absl::string_view text) -> absl::Status {
          const std::string level = absl::AsciiStrToLower(text);
          for (const char* known :
               {"trace", "debug", "info", "warning", "error", "critical", "off"}) {
            if (level == known) {
              options.loglevel = level;
              return absl::OkStatus();
            }
          }
          return absl::InvalidArgumentError(absl::StrCat(
              "--loglevel must be debug, info, warning, error or critical, got '", text, "'"));
        },
        [](const Options& options) { return options.loglevel; }}},
      {"log-format",
       "text or json (one JSON object per line, for log collectors); applies to every line",
       false,
       {[](Options& options, absl::string_view text) -> absl::Status {
          const std::string format = absl::AsciiStrToLower(text);
          if (format == "text" || format == "json") {
            options.log_format = format == "json" ? LogFormat::kJson : LogFormat::kText;
            return absl::OkStatus();
          }
          return absl::InvalidArgumentError(
              absl::StrCat("--log-format must be text or json, got '", text, "'"));
        },
        [](const Options& options) {
          return std::string(options.log_format == LogFormat::kJson ? "json" : "text");
        }}},
      {"metrics-host",
       "IPv4 address the Prometheus metrics endpoint listens on (0.0.0.0 for every interface: "
       "the endpoint has no authentication)",
       false, Text(&Options::metrics_host)},
      {"metrics-port",
       "TCP port of the Prometheus metrics endpoint, http://HOST:PORT/metrics (0: no metrics)",
       false, Number(&Options::metrics_port, 0, 65535, "metrics-port")},
      {"threads", "worker threads for batch queries and inserts (0: one per core)", false,
       Number(&Options::threads, 0, 1024, "threads")},
      {"max-message-mb", "largest request or response, in MiB", false,
       Number(&Options::max_message_mb, 1, kMaxMessageMbLimit, "max-message-mb")},
      {"sync", "fsync every write before acknowledging it (--no-sync trades safety for speed)",
       true, Bool(&Options::sync, "sync")},
      {"max-concurrent-calls",
       "calls handled at once; more are refused with RESOURCE_EXHAUSTED (also the HTTP/2 "
       "stream limit per connection)",
       false, Number(&Options::max_concurrent_calls, 1, 100000, "max-concurrent-calls")},
      {"max-call-seconds",
       "longest a call may run whatever its client's deadline (0: the client's deadline only); "
       "past it the call stops with DEADLINE_EXCEEDED",
       false, Number(&Options::max_call_seconds, 0, 86400, "max-call-seconds")},
      {"max-connection-idle-seconds",
       "close a connection after this long without calls in flight (0: never)", false,
       Number(&Options::max_connection_idle_seconds, 0, 86400 * 7, "max-connection-idle-seconds")},
      {"max-connection-age-seconds",
       "send a connection GOAWAY after this long (clients reconnect), close it once its calls "
       "had --max-call-seconds more: bounds how long a stalled request holds memory (0: never)",
       false,
       Number(&Options::max_connection_age_seconds, 0, 86400 * 7, "max-connection-age-seconds")},
      {"handshake-timeout-seconds",
       "a new connection must finish its TLS and HTTP/2 handshake within this", false,
       Number(&Options::handshake_timeout_seconds, 1, 3600, "handshake-timeout-seconds")},
      {"keepalive-seconds",
       "ping a connection with calls in flight after this long without traffic; close it "
       "when no answer comes within 20 s",
       false, Number(&Options::keepalive_seconds, 1, 86400, "keepalive-seconds")},
      {"max-transport-memory-mb",
       "memory for requests in flight and connection buffers, in MiB; beyond it gRPC shrinks "
       "flow-control windows and cancels streams (0: 4 x --max-message-mb, at least 1024)",
       false, Number(&Options::max_transport_memory_mb, 0, 1u << 20, "max-transport-memory-mb")},
      {"grace-seconds", "on SIGTERM/SIGINT, seconds in-flight calls get to finish", false,
       Number(&Options::grace_seconds, 0, 3600, "grace-seconds")},
      {"snapshot-every",
       "snapshot an index's graph after this many item writes (0: only at shutdown); a restart "
       "after a crash replays at most about this many",
       false, Number(&Options::snapshot_every, 0, uint64_t{1} << 40, "snapshot-every")},
      {"memory-budget-mb", MemoryBudgetHelp(), false,
       Number(&Options::memory_budget_mb, 0, uint64_t{1} << 40, "memory-budget-mb")},
      {"compact-threshold",
       "fraction of a graph's elements that are tombstones (deleted or replaced items) before "
       "a background compaction rebuilds it without them (0: no automatic compaction)",
       false, Fraction(&Options::compact_threshold, "compact-threshold")},
      {"max-attribute-keys", "attributes one item may carry", false,
       Number(&Options::max_attribute_keys, 1, 4096, "max-attribute-keys")},
      {"max-attribute-key-bytes", "bytes of one attribute key", false,
       Number(&Options::max_attribute_key_bytes, 1, 65536, "max-attribute-key-bytes")},
      {"max-attribute-string-bytes", "bytes of one string attribute value", false,
       Number(&Options::max_attribute_string_bytes, 1, 1u << 20, "max-attribute-string-bytes")},
      {"max-attribute-values", "values one list attribute (string or int) may hold", false,
       Number(&Options::max_attribute_values, 1, 65536, "max-attribute-values")},
      {"backup-dir",
       "where Backup writes: relative paths resolve here, absolute ones must lie inside it; "
       "no symbolic link below it is followed (none: any absolute path outside PATH, with "
       "no symbolic link anywhere in it)",
       false, Text(&Options::backup_dir)},
      {"secret",
       "shared secret clients sign their tokens with; on the command line every local user "
       "sees it in ps: prefer LUXDB_SECRET or --secret-file",
       false, Text(&Options::secret)},
      {"secret-file", "read the shared secret from this file (trailing newline ignored)", false,
       Text(&Options::secret_file)},
      {"insecure", "accept calls without tokens (never on a network you do not trust)", true,
       Bool(&Options::insecure, "insecure")},
      {"tls-cert", "PEM certificate chain: serve TLS (with --tls-key)", false,
       Text(&Options::tls_cert)},
      {"tls-key", "PEM private key of --tls-cert", false, Text(&Options::tls_key)},
      {"tls-client-ca", "PEM CA bundle: require client certificates it signed (mutual TLS)", false,
       Text(&Options::tls_client_ca)},
      {"cluster-etcd",
       "etcd endpoints HOST:PORT[,HOST:PORT...]: join the cluster they coordinate (README "
       "\"Cluster mode\"); unset: a single server",
       false, Text(&Options::cluster_etcd)},
      {"node-id", "this node's id in the cluster, unique among its nodes", false,
       Text(&Options::node_id, "the host name")},
      {"advertise", "HOST:PORT other nodes reach this node at, in cluster mode", false,
       Text(&Options::advertise, "the host name (or --host unless 0.0.0.0/::) and the bound port")},
      {"write-quorum",
       "replicas of a shard that must hold a write before it is acknowledged, in cluster mode "
       "(an index with fewer replicas needs all of them)",
       false, Number(&Options::write_quorum, 1, engine::kMaxReplicas, "write-quorum")},
      {"import-path", "import this hnswlib index file into PATH, then exit", false,
       Text(&Options::import_path)},
      {"import-name", "name of the imported index", false, Text(&Options::import_name)},
      {"import-space", "space of the imported index: l2, ip or cosine", false,
       Text(&Options::import_space)},
      {"import-dim", "dimension of the imported index", false,
       Number(&Options::import_dim, 1, std::numeric_limits<uint32_t>::max(), "import-dim")},
  };
  return flags;
}

std::string EnvName(const char* flag) {
  return absl::StrCat("LUXDB_", absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}})));
}

const Flag* FindFlag(absl::string_view name) {
  for (const Flag& flag : Flags()) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

}  // namespace

std::string UsageText() {
  std::string text =
      "usage: luxdb-server [flags] PATH\n"
      "Serves the LuxDB indexes stored in the data directory PATH (created if missing).\n\n"
      "flags (each also read from the environment variable shown):\n";
  const Options defaults;
  for (const Flag& flag : Flags()) {
    absl::StrAppend(&text, "  --", flag.name, flag.boolean ? "" : " VALUE", "\n      ", flag.help,
                    " (default: ", flag.setter.show(defaults), ") [", EnvName(flag.name), "]\n");
  }
  absl::StrAppend(&text, "  --help\n      print this text\n  --version\n      print the version\n");
  return text;
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     const std::map<std::string, std::string>& env, bool* help) {
  Options options;
  *help = false;
  // Flags given on the command line; their environment variables are not read at all, so a
  // bad value there cannot block an explicit flag.
  std::set<std::string> given;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      *help = true;
      return options;
    }
    if (arg.size() > 1 && arg[0] == '-' && !arg.starts_with("--")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'; see --help"));
    }
    if (!arg.starts_with("--")) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const Flag* flag = FindFlag(name);
    if (flag == nullptr && name.starts_with("no-") && !value) {
      flag = FindFlag(name.substr(3));
      if (flag != nullptr && flag->boolean)
        value = "false";
      else
        flag = nullptr;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'; see --help"));
    }
    if (!value) {
      if (flag->boolean) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    if (absl::Status s = flag->setter.set(options, *value); !s.ok()) return s;
    given.insert(flag->name);
  }
  std::set<std::string> from_env;  // flags set from their environment variables
  for (const Flag& flag : Flags()) {
    auto it = env.find(EnvName(flag.name));
    if (it == env.end() || given.contains(flag.name)) continue;
    if (absl::Status s = flag.setter.set(options, it->second); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("environment variable ", it->first, ": ", s.message()));
    }
    from_env.insert(flag.name);
  }
  // --address (LUXDB_ADDRESS) stands for --host and --port together, as in the clients.
  if (!options.address.empty()) {
    auto source = [&](const char* flag) {
      return given.contains(flag) ? absl::StrCat("--", flag) : EnvName(flag);
    };
    for (const char* part : {"host", "port"}) {
      if (given.contains(part) || from_env.contains(part)) {
        return absl::InvalidArgumentError(
            absl::StrCat(source("address"), " and ", source(part), " contradict; give one"));
      }
    }
    absl::StatusOr<std::pair<std::string, int>> address =
        client::ParseAddress(options.address, source("address"), /*min_port=*/0);
    if (!address.ok()) return address.status();
    options.host = address->first;
    options.port = address->second;
  }
  if (auto it = env.find("LUXDB_DATA_DIR"); it != env.end() && positional.empty()) {
    options.data_dir = it->second;
  }
  absl::StatusOr<auth::KdfParams> kdf = auth::KdfParamsFromEnvironment(env);
  if (!kdf.ok()) return kdf.status();
  options.kdf = *kdf;
  absl::StatusOr<std::chrono::milliseconds> ttl = auth::TokenVerifier::TtlFromEnvironment(env);
  if (!ttl.ok()) return ttl.status();
  options.token_ttl = *ttl;
  if (options.metrics_port != 0 && options.metrics_port == options.port &&
      options.metrics_host == options.host) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-port ", options.metrics_port, " is also --port on ", options.host,
                     ": give the metrics endpoint a port of its own (or 0 to turn metrics off)"));
  }
  if (options.metrics_host.empty()) {
    return absl::InvalidArgumentError(
        "--metrics-host is empty: give an address such as 127.0.0.1 or 0.0.0.0");
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (options.max_transport_memory_mb != 0 &&
      options.max_transport_memory_mb < options.max_message_mb) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-transport-memory-mb ", options.max_transport_memory_mb,
        " is below --max-message-mb ", options.max_message_mb,
        ": a request of the largest size could never be received; raise it or give 0 (4 x "
        "--max-message-mb, at least 1024)"));
  }
  options.secret_on_command_line = given.contains("secret");
  if (!options.secret.empty() && !options.secret_file.empty()) {
    return absl::InvalidArgumentError(
        "--secret (or LUXDB_SECRET) and --secret-file (or LUXDB_SECRET_FILE) contradict; give one");
  }
  if (options.insecure && (!options.secret.empty() || !options.secret_file.empty())) {
    return absl::InvalidArgumentError(
        "--insecure and --secret/--secret-file (or LUXDB_SECRET/LUXDB_SECRET_FILE) contradict");
  }
  if (positional.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("expected one data directory, got ",
                                                   positional.size(), " arguments: '",
                                                   positional[0], "', '", positional[1], "'"));
  }
  if (!positional.empty()) options.data_dir = positional[0];
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("missing the data directory PATH; see --help");
  }
  if (!options.cluster_etcd.empty() && !options.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "--cluster-etcd with --tls-cert: TLS between cluster nodes is not supported yet");
  }
  if (options.cluster_etcd.empty() &&
      (!options.node_id.empty() || !options.advertise.empty() || options.write_quorum != 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(!options.node_id.empty()     ? "--node-id"
                     : !options.advertise.empty() ? "--advertise"
                                                  : "--write-quorum",
                     " applies only to cluster mode: give --cluster-etcd too"));
  }
  const bool importing = !options.import_path.empty() || !options.import_name.empty() ||
                         !options.import_space.empty() || options.import_dim != 0;
  if (importing && (options.import_path.empty() || options.import_name.empty() ||
                    options.import_space.empty() || options.import_dim == 0)) {
    return absl::InvalidArgumentError(
        "import needs all of --import-path, --import-name, --import-space and --import-dim");
  }
  return options;
}

uint64_t TransportMemoryBytes(const Options& options) {
  constexpr uint64_t kMinDefaultMb = 1024;
  const uint64_t mb = options.max_transport_memory_mb != 0
                          ? options.max_transport_memory_mb
                          : std::max<uint64_t>(kMinDefaultMb, 4 * uint64_t{options.max_message_mb});
  return mb << 20;
}

}  // namespace luxdb::server
