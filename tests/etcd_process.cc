#include "tests/etcd_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "etcd/etcd_v3.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

extern char** environ;

namespace luxdb::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMemberName[] = "luxdb-test";
// Short raft timings: etcd's shortest lease TTL is 1.5 election timeouts, so 1 s leases work
// (with its defaults, 100 ms and 1 s, the shortest is 2 s) and the member elects itself fast.
constexpr char kHeartbeatMs[] = "50";
constexpr char kElectionTimeoutMs[] = "500";
constexpr auto kStopTimeout = std::chrono::seconds(10);
constexpr auto kPollInterval = std::chrono::milliseconds(50);

std::string ExitDescription(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

// A port on 127.0.0.1 that nothing listens on now (bound, read back and released).
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    close(fd);
    return absl::ErrnoToStatus(error, "cannot find a free port on 127.0.0.1");
  }
  close(fd);
  return ntohs(address.sin_port);
}

// Our environment without the variables etcd and etcdctl read as flags.
std::vector<std::string> ScrubbedEnvironment() {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const absl::string_view text(*entry);
    if (absl::StartsWith(text, "ETCD_") || absl::StartsWith(text, "ETCDCTL_")) continue;
    env.emplace_back(text);
  }
  return env;
}

// Forks and execs `args` with `env`, stdin from /dev/null and stdout and stderr to `out_fd`;
// the child dies with the calling thread. Returns its pid; an error if exec failed.
absl::StatusOr<pid_t> Spawn(std::vector<std::string> args, std::vector<std::string> env,
                            int out_fd) {
  // Everything the child needs is prepared here: the child of a multithreaded process may only
  // make async-signal-safe calls before it execs.
  std::vector<char*> argv, envp;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int exec_pipe[2] = {-1, -1};
  if (null_fd < 0 || pipe2(exec_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    if (null_fd >= 0) close(null_fd);
    return absl::ErrnoToStatus(error, "cannot set up a child process");
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    execve(argv[0], argv.data(), envp.data());
    const int error = errno;
    [[maybe_unused]] const ssize_t written = write(exec_pipe[1], &error, sizeof(error));
    _exit(127);
  }
  const int fork_error = pid < 0 ? errno : 0;
  close(null_fd);
  close(exec_pipe[1]);
  if (fork_error != 0) {
    close(exec_pipe[0]);
    return absl::ErrnoToStatus(fork_error, "cannot fork");
  }
  // The pipe closes at exec; a byte on it is the errno of a failed exec.
  int exec_error = 0;
  ssize_t got;
  while ((got = read(exec_pipe[0], &exec_error, sizeof(exec_error))) < 0 && errno == EINTR) {
  }
  close(exec_pipe[0]);
  if (got > 0) {
    waitpid(pid, nullptr, 0);
    return absl::ErrnoToStatus(exec_error, absl::StrCat("cannot run '", args[0], "'"));
  }
  return pid;
}

}  // namespace

EtcdProcess::EtcdProcess(std::string binary, std::chrono::seconds start_timeout)
    : binary_(std::move(binary)), start_timeout_(start_timeout) {
  std::string pattern = std::filesystem::temp_directory_path() / "luxdb-etcd-XXXXXX";
  if (mkdtemp(pattern.data()) != nullptr) root_ = pattern;
  data_dir_ = root_ + "/data";
  log_path_ = root_ + "/etcd.log";
}

EtcdProcess::~EtcdProcess() {
  if (pid_ != 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!root_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
}

std::string EtcdProcess::endpoint() const { return absl::StrCat("127.0.0.1:", client_port_); }

absl::Status EtcdProcess::Start() {
  if (pid_ != 0) return absl::FailedPreconditionError("etcd is already running");
  if (access(binary_.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd not found at ", binary_,
                     ": install Debian's etcd-server package (scripts/install-deps.sh does)"));
  }
  if (root_.empty()) return absl::InternalError("cannot create a temporary directory for etcd");
  if (client_port_ == 0) {
    absl::StatusOr<int> client = FreePort();
    absl::StatusOr<int> peer = FreePort();
    if (!client.ok()) return client.status();
    if (!peer.ok()) return peer.status();
    client_port_ = *client;
    peer_port_ = *peer;
  }
  const std::string client_url = absl::StrCat("http://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  std::vector<std::string> args = {binary_,
                                   "--name",
                                   kMemberName,
                                   "--data-dir",
                                   data_dir_,
                                   "--listen-client-urls",
                                   client_url,
                                   "--advertise-client-urls",
                                   client_url,
                                   "--listen-peer-urls",
                                   peer_url,
                                   "--initial-advertise-peer-urls",
                                   peer_url,
                                   "--initial-cluster",
                                   absl::StrCat(kMemberName, "=", peer_url),
                                   "--initial-cluster-state",
                                   "new",
                                   "--initial-cluster-token",
                                   absl::StrCat("luxdb-test-", peer_port_),
                                   "--heartbeat-interval",
                                   kHeartbeatMs,
                                   "--election-timeout",
                                   kElectionTimeoutMs};
  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open etcd's log ", log_path_));
  }
  absl::StatusOr<pid_t> pid = Spawn(std::move(args), ScrubbedEnvironment(), log_fd);
  close(log_fd);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  absl::Status answering = WaitUntilAnswering();
  if (!answering.ok() && pid_ != 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }
  return answering;
}

absl::Status EtcdProcess::WaitUntilAnswering() {
  // Reconnecting every poll: gRPC's default pause after a refused connection (1 s, growing)
  // would outlast etcd's start many times over. (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at
  // its default: it is also the time a connection attempt is given.)
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kPollInterval.count());
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kPollInterval.count());
  auto kv = etcdserverpb::KV::NewStub(
      grpc::CreateCustomChannel(endpoint(), grpc::InsecureChannelCredentials(), args));
  // Each probe waits for the connection (wait_for_ready): a call that fails at once leaves no
  // thread to drive gRPC's reconnection, which then only moves every 5 s.
  const Clock::time_point deadline = Clock::now() + start_timeout_;
  grpc::Status last;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return absl::UnavailableError(absl::StrCat("etcd ended (", ExitDescription(status),
                                                 ") before answering; its output:\n", LogTail(40)));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    context.set_wait_for_ready(true);
    etcdserverpb::RangeRequest request;
    request.set_key("health");
    etcdserverpb::RangeResponse response;
    last = kv->Range(&context, request, &response);
    if (last.ok()) return absl::OkStatus();
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("etcd did not answer at ", endpoint(), " within ", start_timeout_.count(),
                       " s (last: ", last.error_message(), "); its output:\n", LogTail(40)));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

absl::Status EtcdProcess::Stop() {
  if (pid_ == 0) return absl::FailedPreconditionError("etcd is not running");
  kill(pid_, SIGTERM);
  const Clock::time_point deadline = Clock::now() + kStopTimeout;
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(kPollInterval);
  }
  if (done == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return absl::DeadlineExceededError("etcd still running 10 s after SIGTERM; killed");
  }
  pid_ = 0;
  return absl::OkStatus();
}

absl::Status EtcdProcess::Kill() {
  if (pid_ == 0) return absl::FailedPreconditionError("etcd is not running");
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = 0;
  return absl::OkStatus();
}

std::string EtcdProcess::LogTail(size_t lines) const {
  std::ifstream in(log_path_, std::ios::binary);
  const std::string log((std::istreambuf_iterator<char>(in)), {});
  std::vector<absl::string_view> all = absl::StrSplit(log, '\n', absl::SkipEmpty());
  const size_t first = all.size() > lines ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + static_cast<std::ptrdiff_t>(first), all.end(), "\n");
}

absl::StatusOr<std::string> EtcdProcess::Etcdctl(const std::vector<std::string>& args) const {
  const std::string out_path = absl::StrCat(root_, "/etcdctl.out");
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out_fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", out_path));
  std::vector<std::string> argv = {kEtcdctlBinary, absl::StrCat("--endpoints=", endpoint())};
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string command = absl::StrJoin(argv, " ");
  absl::StatusOr<pid_t> pid = Spawn(std::move(argv), ScrubbedEnvironment(), out_fd);
  close(out_fd);
  if (!pid.ok()) return pid.status();
  int status = 0;
  waitpid(*pid, &status, 0);
  std::ifstream in(out_path, std::ios::binary);
  std::string output((std::istreambuf_iterator<char>(in)), {});
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat("'", command, "' ended with ", ExitDescription(status), ":\n", output));
  }
  return output;
}

}  // namespace luxdb::testing
