// luxdb-server as a child process, for the tests and benchmarks that need the real binary:
// started on 127.0.0.1 with a free port and a scrubbed environment, stopped with SIGTERM, its
// output in a log file; and what /proc tells about a process (memory, CPU time).
#ifndef LUXDB_HARNESS_SERVER_PROCESS_H_
#define LUXDB_HARNESS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace luxdb::harness {

struct ServerProcessOptions {
  std::string binary;    // path of luxdb-server
  std::string data_dir;  // its positional data directory
  std::string secret;    // passed as LUXDB_SECRET
  std::string log_path;  // its stdout and stderr are appended here
  int threads = 2;       // --threads
  std::string loglevel = "warning";
  // Flags after the ones above (a later flag wins, e.g. "--port" "8485").
  std::vector<std::string> extra_args;
  // Added to the environment, "NAME=value" (e.g. "KDF_ITERATIONS=1000").
  std::vector<std::string> extra_env;
  std::chrono::seconds start_timeout{120};
  std::chrono::seconds stop_timeout{120};
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerProcessOptions options);
  // Kills a server that is still running (SIGKILL): a test that failed half-way must not wait.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server and waits until it prints "luxdb-server: serving '<dir>' on <host>:<port>"
  // (every index loaded). The server is killed (SIGKILL) when the thread that called Start
  // ends, so call it from a thread that outlives the server (the main thread of a test or
  // benchmark): a test or benchmark killed half-way leaves no server behind. Its environment is
  // ours without LUXDB_*, LUXBD_*, KDF_ITERATIONS and FERNET_TTL, plus LUXDB_SECRET and
  // `extra_env`. The error carries the server's output.
  absl::Status Start();

  // SIGTERM, then waits for the exit, which must be a clean one (status 0); SIGKILL after
  // `stop_timeout`. Stopping a server that is not running is an error.
  absl::Status Stop();

  bool running() const { return pid_ != 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }  // of the last Start

  // The log from byte `start`, and its last `lines` lines.
  std::string LogFrom(std::streamoff start) const;
  std::string LogTail(size_t lines) const;

 private:
  std::streamoff LogSize() const;

  const ServerProcessOptions options_;
  pid_t pid_ = 0;
  int port_ = 0;
};

// A fresh random secret for a test or benchmark server (48 hex digits).
std::string RandomSecret();

// A field of /proc/PID/status given in kB ("VmRSS", "VmHWM"), in bytes; nullopt if unreadable.
std::optional<uint64_t> ProcessStatusBytes(pid_t pid, const char* field);

// CPU time (user + system) the process has used, in seconds; 0 if unreadable.
double ProcessCpuSeconds(pid_t pid);

}  // namespace luxdb::harness

#endif  // LUXDB_HARNESS_SERVER_PROCESS_H_
