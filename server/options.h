// The server's configuration: one struct, filled from flags with environment fallbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/key.h"

namespace luxdb::server {

// How log lines are written (server/logging.h).
enum class LogFormat { kText, kJson };

struct Options {
  std::string data_dir;  // positional PATH
  std::string address;   // --address HOST:PORT: sets host and port (ParseOptions)
  std::string host = "127.0.0.1";
  int port = 8484;  // 0 picks a free port
  std::string loglevel = "warning";
  // "text" (one human-readable line per event) or "json" (one JSON object per line, for log
  // collectors): every line the server logs (README "Metrics and logs").
  LogFormat log_format = LogFormat::kText;
  // Prometheus metrics at http://metrics_host:metrics_port/metrics; port 0 turns them off.
  // Unauthenticated (index names and counts): keep it on a network only Prometheus reaches.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 9484;
  size_t threads = 0;  // 0: one per core
  uint32_t max_message_mb = 256;
  bool sync = true;
  // Calls of luxdb.v1.LuxDB handled at once; one more is refused with RESOURCE_EXHAUSTED.
  // Also each connection's HTTP/2 stream limit (a client beyond it waits for a free stream).
  uint32_t max_concurrent_calls = 256;
  // Longest a call may run, whatever deadline its client set (0: only the client's); a call
  // past it stops with DEADLINE_EXCEEDED (queries between query vectors, writes before they
  // are stored).
  uint32_t max_call_seconds = 300;
  // Transport limits (README "Limits"). A connection with no call in flight for this long is
  // closed (0: never).
  uint32_t max_connection_idle_seconds = 300;
  // A connection this old is asked to go away (GOAWAY; clients reconnect transparently), and
  // closed once its calls in flight have had max_call_seconds (300 when that is 0) more to
  // finish; bounds how long any stream, even one that stopped sending mid-request, holds
  // memory. 0: never.
  uint32_t max_connection_age_seconds = 600;
  // A new connection must complete its TLS and HTTP/2 handshake within this.
  uint32_t handshake_timeout_seconds = 10;
  // The server pings a connection with calls in flight after this long without traffic and
  // closes it when no answer comes within 20 s (dead peers release their streams).
  uint32_t keepalive_seconds = 60;
  // Memory gRPC may use for requests in flight and connection buffers, in MiB; under
  // pressure it shrinks flow-control windows and cancels streams. 0: 4 x max_message_mb, at
  // least 1024.
  uint32_t max_transport_memory_mb = 0;
  uint32_t grace_seconds = 25;  // SIGTERM: time in-flight calls get before being cancelled
  // Snapshot an index's graph once this many items were written since its last snapshot (0:
  // only at shutdown); bounds what a restart after a crash replays.
  uint64_t snapshot_every = 100'000;
  // Memory all index graphs together may reserve, in MiB (engine::MemoryBudget): InitIndex,
  // ResizeIndex, compactions and imports beyond it are refused with RESOURCE_EXHAUSTED. 0:
  // 85 % of the cgroup memory limit, else of MemTotal (MemoryBudget::DefaultLimitBytes).
  uint64_t memory_budget_mb = 0;
  // A background compaction of an index starts once this fraction (0..1) of its graph's
  // elements are tombstones (deleted or replaced items); 0 turns automatic compaction off.
  double compact_threshold = 0.2;
  // Bounds on one item's attributes (AddItems, SetAttributes): keys, bytes of a key, bytes of a
  // string value, values of a list. Over one, a write is INVALID_ARGUMENT naming it.
  uint32_t max_attribute_keys = 32;
  uint32_t max_attribute_key_bytes = 128;
  uint32_t max_attribute_string_bytes = 1024;
  uint32_t max_attribute_values = 64;
  // Backup RPC: relative paths resolve here and absolute ones must lie inside it; empty: any
  // absolute path outside the data directory.
  std::string backup_dir;

  // Security (README "Security"). Without a secret and without `insecure`, the server uses
  // (creating it on first start) the secret file in the data directory.
  std::string secret;
  // True when the secret came from --secret on the command line, where every local user can
  // read it in the process list; the server warns.
  bool secret_on_command_line = false;
  // Read the secret from this file (trailing newline ignored) instead.
  std::string secret_file;
  bool insecure = false;
  auth::KdfParams kdf;  // LUXDB_SALT / LUXBD_SALT, KDF_ITERATIONS
  std::chrono::milliseconds token_ttl = std::chrono::seconds(60);  // LUXDB_TOKEN_TTL, FERNET_TTL
  std::string tls_cert;  // PEM files; both set: the listener speaks TLS
  std::string tls_key;
  std::string tls_client_ca;  // set: clients must present a certificate it signed

  // Cluster mode (README "Cluster mode"): set cluster_etcd to join a cluster.
  std::string cluster_etcd;  // etcd endpoints, host:port[,host:port...]
  std::string node_id;       // this node's id in the cluster (default: the host name)
  std::string advertise;     // host:port peers and clients reach it at (default: see --help)
  // Replicas of a shard that must hold a write before it is acknowledged (at most the index's
  // replica count).
  uint32_t write_quorum = 1;

  // Import mode: import an hnswlib file into data_dir and exit.
  std::string import_path;
  std::string import_name;
  std::string import_space;
  uint32_t import_dim = 0;
};

// Parses `args` (argv without the program name). Every flag also reads an environment
// variable (from `env`) named LUXDB_ + the flag in upper case with '-' as '_', e.g.
// LUXDB_MAX_MESSAGE_MB; a flag on the command line wins. INVALID_ARGUMENT names the flag and
// value at fault. `*help` is set if --help was asked for.
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     const std::map<std::string, std::string>& env, bool* help);

// Options::max_transport_memory_mb with its default applied.
uint64_t TransportMemoryBytes(const Options& options);

// The text --help prints.
std::string UsageText();

}  // namespace luxdb::server
