// What --mixed and --churn share: the servers they start (auth off), luxdb::Client helpers and
// their table of targets.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/luxdb_bench.h"
#include "luxdb/client.h"

namespace luxdb::bench {
namespace {

// Every call of these workloads is over in well under this; a hung server fails the run.
constexpr auto kCallTimeout = std::chrono::minutes(10);

}  // namespace

BenchServer::BenchServer(const Config& config) : config_(config) {}

BenchServer::~BenchServer() {
  if (absl::Status s = Stop(); !s.ok()) std::cerr << "luxdb-bench: " << s.message() << "\n";
}

pid_t BenchServer::pid() const {
  return process_ != nullptr && process_->running() ? process_->pid() : 0;
}

int BenchServer::port() const { return pid() != 0 ? process_->port() : 0; }

absl::Status BenchServer::Start() {
  const char* tmpdir = std::getenv("TMPDIR");
  const std::string parent =
      !config_.work_dir.empty() ? config_.work_dir : (tmpdir != nullptr ? tmpdir : "/tmp");
  std::string pattern = parent + "/luxdb-bench-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create a directory in '", parent, "'"));
  }
  temp_dir_ = pattern;
  harness::ServerProcessOptions options;
  options.binary = config_.server_path;
  options.data_dir = temp_dir_ + "/data";
  options.log_path = temp_dir_ + "/server.log";
  options.threads = config_.threads;
  options.extra_args = {"--insecure"};  // options.secret stays empty, as --insecure requires
  process_ = std::make_unique<harness::ServerProcess>(std::move(options));
  std::cerr << "[server] starting " << config_.server_path << " --insecure on " << temp_dir_
            << "/data..." << std::endl;
  return process_->Start();
}

absl::StatusOr<std::unique_ptr<Client>> BenchServer::Connect() const {
  if (pid() == 0) return absl::FailedPreconditionError("the bench's server is not running");
  ConnectOptions options;
  options.port = process_->port();
  options.insecure = true;
  options.call_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kCallTimeout);
  return Client::Connect(options);
}

absl::Status BenchServer::Stop() {
  absl::Status stopped = absl::OkStatus();
  if (process_ != nullptr && process_->running()) {
    stopped = process_->Stop();
    // Warnings and errors it logged (it runs at --loglevel warning) are worth seeing.
    if (const std::string log = process_->LogFrom(0); !log.empty()) {
      std::cerr << "[server] output:\n" << log;
    }
  }
  if (!temp_dir_.empty() && !config_.keep_data) {
    std::error_code error;
    std::filesystem::remove_all(temp_dir_, error);
    temp_dir_.clear();
  }
  return stopped;
}

absl::Status CreateL2Index(Client& client, const std::string& name, size_t dim, size_t max_elements,
                           const Config& config) {
  if (absl::Status s = client.CreateIndex(name, Space::kL2, static_cast<uint32_t>(dim)); !s.ok()) {
    return s;
  }
  return client.InitIndex(
      name,
      {.max_elements = max_elements, .ef_construction = config.ef_construction, .m = config.m});
}

AddResult AddInBatches(Client& client, const std::string& name, std::span<const float> vectors,
                       std::span<const uint64_t> ids, size_t batch) {
  AddResult result;
  if (ids.empty()) return result;
  const size_t dim = vectors.size() / ids.size();
  for (size_t first = 0; first < ids.size(); first += batch) {
    const size_t count = std::min(batch, ids.size() - first);
    absl::StatusOr<uint64_t> added =
        client.AddItems(name, vectors.subspan(first * dim, count * dim), ids.subspan(first, count));
    if (!added.ok()) {
      result.status = absl::Status(
          added.status().code(),
          absl::StrCat("AddItems of ids ", ids[first], "..", ids[first + count - 1], " to '", name,
                       "': ", absl::StatusCodeToString(added.status().code()), ": ",
                       added.status().message()));
      return result;
    }
    result.added += count;
  }
  return result;
}

int PrintTargetTable(const std::vector<TargetRow>& rows) {
  size_t width[4] = {6, 5, 6, 6};  // "metric", "value", "target", "result"
  for (const TargetRow& row : rows) {
    width[0] = std::max(width[0], row.metric.size());
    width[1] = std::max(width[1], row.value.size());
    width[2] = std::max(width[2], row.target.size());
    width[3] = std::max(width[3], row.result.size());
  }
  auto line = [&](const std::string& metric, const std::string& value, const std::string& target,
                  const std::string& result) {
    std::cout << absl::StrFormat("%-*s  %*s  %-*s  %s\n", width[0], metric, width[1], value,
                                 width[2], target, result);
  };
  line("metric", "value", "target", "result");
  std::cout << std::string(width[0] + width[1] + width[2] + width[3] + 6, '-') << "\n";
  int failed = 0;
  for (const TargetRow& row : rows) {
    if (row.metric.empty()) {
      std::cout << "\n";
      continue;
    }
    line(row.metric, row.value, row.target, row.result);
    failed += row.result == "FAIL";
  }
  return failed;
}

}  // namespace luxdb::bench
