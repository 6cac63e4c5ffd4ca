// An etcd server as a child process, for the tests of LuxDB's cluster mode: one member on
// 127.0.0.1 with free client and peer ports, a data directory of its own (removed with the
// object) and its output in a log file beside it. It never uses an etcd service the machine
// may run (Debian's etcd-server package enables one on :2379 under systemd).
//
//   EtcdProcess etcd;
//   ASSERT_TRUE(etcd.Start().ok());    // fails naming the Debian package if etcd is missing
//   ... EtcdOptions{{etcd.endpoint()}} ...
//   etcd.Kill(); etcd.Start();         // the same port and data: a restart after a crash
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace luxdb::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";
inline constexpr char kEtcdctlBinary[] = "/usr/bin/etcdctl";

class EtcdProcess {
 public:
  // Creates the data directory and picks the ports; starts nothing.
  explicit EtcdProcess(std::string binary = kEtcdBinary,
                       std::chrono::seconds start_timeout = std::chrono::seconds(20));
  // Kills a member that is still running (SIGKILL) and removes the data directory.
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Starts etcd (its environment is ours without ETCD_* and ETCDCTL_*) and waits until it
  // answers a Range, at most start_timeout. A later Start, after Stop or Kill, reuses the ports
  // and the data. The member dies with the thread that called Start (PR_SET_PDEATHSIG): call
  // it from a thread that outlives it, such as a test's main thread. FAILED_PRECONDITION naming
  // the Debian package etcd-server if the binary is missing; an error with etcd's output if it
  // exits or does not answer in time.
  absl::Status Start();
  // SIGTERM, then waits for the exit (SIGKILL after 10 s). An error if it is not running.
  absl::Status Stop();
  // SIGKILL, as a crash; waits for the exit. An error if it is not running.
  absl::Status Kill();

  // "127.0.0.1:PORT" of its client URL.
  std::string endpoint() const;
  const std::string& data_dir() const { return data_dir_; }
  bool running() const { return pid_ != 0; }
  pid_t pid() const { return pid_; }

  // The last `lines` lines of its output.
  std::string LogTail(size_t lines) const;

  // Runs etcdctl (/usr/bin/etcdctl, Debian's etcd-client) against this member with `args`;
  // what it printed (standard output and error together), or an error with it.
  absl::StatusOr<std::string> Etcdctl(const std::vector<std::string>& args) const;

 private:
  absl::Status WaitUntilAnswering();

  const std::string binary_;
  const std::chrono::seconds start_timeout_;
  std::string root_;      // temporary directory holding the data directory and the log
  std::string data_dir_;  // root_/data
  std::string log_path_;  // root_/etcd.log
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = 0;
};

}  // namespace luxdb::testing
