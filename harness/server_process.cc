#include "harness/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace luxdb::harness {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kServingLine[] = "luxdb-server: serving '";

std::string ExitDescription(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

}  // namespace

ServerProcess::ServerProcess(ServerProcessOptions options) : options_(std::move(options)) {}

ServerProcess::~ServerProcess() {
  if (pid_ != 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

absl::Status ServerProcess::Start() {
  if (pid_ != 0) return absl::FailedPreconditionError("luxdb-server is already running");
  const std::streamoff log_start = LogSize();
  std::vector<std::string> args = {options_.binary,  options_.data_dir,
                                   "--host",         "127.0.0.1",
                                   "--port",         "0",
                                   "--metrics-port", "0",
                                   "--threads",      std::to_string(options_.threads),
                                   "--loglevel",     options_.loglevel};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    absl::string_view text(*entry);
    if (absl::StartsWith(text, "LUXDB_") || absl::StartsWith(text, "LUXBD_") ||
        absl::StartsWith(text, "KDF_ITERATIONS=") || absl::StartsWith(text, "FERNET_TTL=")) {
      continue;
    }
    env.emplace_back(text);
  }
  env.push_back(absl::StrCat("LUXDB_SECRET=", options_.secret));
  env.insert(env.end(), options_.extra_env.begin(), options_.extra_env.end());
  std::vector<char*> argv, envp;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  // Everything the child needs is prepared here: the child of a multithreaded process may only
  // make async-signal-safe calls before it execs.
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int log_fd =
      open(options_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int exec_pipe[2] = {-1, -1};
  if (null_fd < 0 || log_fd < 0 || pipe2(exec_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    for (int fd : {null_fd, log_fd}) {
      if (fd >= 0) close(fd);
    }
    return absl::ErrnoToStatus(error, absl::StrCat("cannot set up the output of luxdb-server ('",
                                                   options_.log_path, "')"));
  }
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // The server dies with the thread that started it, so a test or benchmark that is killed
    // half-way leaves no server behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execve(options_.binary.c_str(), argv.data(), envp.data());
    const int error = errno;
    [[maybe_unused]] const ssize_t written = write(exec_pipe[1], &error, sizeof(error));
    _exit(127);
  }
  const int fork_error = pid_ < 0 ? errno : 0;
  close(null_fd);
  close(log_fd);
  close(exec_pipe[1]);
  if (fork_error != 0) {
    close(exec_pipe[0]);
    pid_ = 0;
    return absl::ErrnoToStatus(fork_error, "cannot fork to start luxdb-server");
  }
  // The pipe closes at exec; a byte on it is the errno of a failed exec.
  int exec_error = 0;
  ssize_t got;
  while ((got = read(exec_pipe[0], &exec_error, sizeof(exec_error))) < 0 && errno == EINTR) {
  }
  close(exec_pipe[0]);
  if (got > 0) {
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
    return absl::ErrnoToStatus(exec_error, absl::StrCat("cannot start '", options_.binary, "'"));
  }

  // main.cc prints the serving line once every index is loaded.
  const Clock::time_point deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    const std::string log = LogFrom(log_start);
    if (const size_t at = log.find(kServingLine); at != std::string::npos) {
      const size_t eol = log.find('\n', at);
      if (eol != std::string::npos) {
        const std::string line = log.substr(at, eol - at);
        const size_t colon = line.rfind(':');
        if (colon == std::string::npos || !absl::SimpleAtoi(line.substr(colon + 1), &port_)) {
          return absl::InternalError(absl::StrCat("unexpected serving line: ", line));
        }
        return absl::OkStatus();
      }
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return absl::UnavailableError(absl::StrCat("luxdb-server ended (", ExitDescription(status),
                                                 ") before serving; its output:\n", log));
    }
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("luxdb-server did not report serving within ",
                                                      options_.start_timeout.count(),
                                                      " s; its output:\n", log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status ServerProcess::Stop() {
  if (pid_ == 0) return absl::FailedPreconditionError("luxdb-server is not running");
  const std::streamoff log_start = LogSize();
  kill(pid_, SIGTERM);
  const Clock::time_point deadline = Clock::now() + options_.stop_timeout;
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (done == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return absl::DeadlineExceededError(absl::StrCat(
        "luxdb-server still running ", options_.stop_timeout.count(), " s after SIGTERM; killed"));
  }
  pid_ = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("luxdb-server ended with ", ExitDescription(status),
                                            " after SIGTERM; its output:\n", LogFrom(log_start)));
  }
  return absl::OkStatus();
}

std::string ServerProcess::LogFrom(std::streamoff start) const {
  std::ifstream in(options_.log_path, std::ios::binary);
  in.seekg(start);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string ServerProcess::LogTail(size_t lines) const {
  std::vector<std::string> all = absl::StrSplit(LogFrom(0), '\n', absl::SkipEmpty());
  const size_t first = all.size() > lines ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + static_cast<std::ptrdiff_t>(first), all.end(), "\n");
}

std::streamoff ServerProcess::LogSize() const {
  std::error_code error;
  const auto size = std::filesystem::file_size(options_.log_path, error);
  return error ? 0 : static_cast<std::streamoff>(size);
}

std::string RandomSecret() {
  std::random_device random;
  std::string bytes(24, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return absl::BytesToHexString(bytes);
}

std::optional<uint64_t> ProcessStatusBytes(pid_t pid, const char* field) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  const std::string prefix = absl::StrCat(field, ":");
  for (std::string line; std::getline(status, line);) {
    absl::string_view text(line);
    if (!absl::ConsumePrefix(&text, prefix)) continue;
    text = absl::StripAsciiWhitespace(text);
    absl::ConsumeSuffix(&text, "kB");
    uint64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &kib)) return kib * 1024;
    return std::nullopt;
  }
  return std::nullopt;
}

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  const std::string stat((std::istreambuf_iterator<char>(in)), {});
  // The command name is in parentheses and may hold spaces; utime and stime are the 14th and
  // 15th fields of stat(5), the 12th and 13th after the name.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 > stat.size()) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace luxdb::harness
