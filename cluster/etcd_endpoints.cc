#include "cluster/etcd_endpoints.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace luxdb::cluster {

EtcdEndpoints::EtcdEndpoints(EtcdOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kReconnectBackoffFirstMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kReconnectBackoffMaxMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  for (const std::string& endpoint : options_.endpoints) {
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
    kv_.push_back(etcdserverpb::KV::NewStub(channel));
    lease_.push_back(etcdserverpb::Lease::NewStub(channel));
    watch_.push_back(etcdserverpb::Watch::NewStub(channel));
    channels_.push_back(std::move(channel));
  }
}

void EtcdEndpoints::Failed(size_t endpoint) {
  current_.compare_exchange_strong(endpoint, (endpoint + 1) % size(), std::memory_order_relaxed);
}

void EtcdEndpoints::AwaitConnection(size_t endpoint, std::chrono::system_clock::time_point deadline,
                                    const std::function<bool()>& stopped) const {
  using std::chrono::system_clock;
  deadline = std::min(deadline, system_clock::now() + kConnectWait);
  grpc::Channel& channel = *channels_[endpoint];
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state == GRPC_CHANNEL_CONNECTING || state == GRPC_CHANNEL_TRANSIENT_FAILURE) {
    const system_clock::time_point now = system_clock::now();
    if (now >= deadline || (stopped && stopped())) return;
    channel.WaitForStateChange(state, stopped ? std::min(deadline, now + kStopCheck) : deadline);
    state = channel.GetState(/*try_to_connect=*/true);
  }
}

EtcdEndpoints::Outcome EtcdEndpoints::Call(
    const std::function<grpc::Status(size_t endpoint, grpc::ClientContext*)>& attempt) {
  Outcome outcome;
  const size_t first = current();
  for (size_t tried = 0; tried < size(); ++tried) {
    const size_t endpoint = (first + tried) % size();
    const auto deadline = std::chrono::system_clock::now() + options_.call_timeout;
    AwaitConnection(endpoint, deadline);
    grpc::ClientContext context;
    context.set_deadline(deadline);
    if (tried > 0) {
      outcome.earlier_unavailable = true;
      absl::StrAppend(&outcome.attempts, "; ");
    }
    outcome.status = attempt(endpoint, &context);
    outcome.endpoint = endpoint;
    absl::StrAppend(&outcome.attempts, name(endpoint), ": ", Describe(outcome.status));
    if (outcome.status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    Failed(endpoint);
  }
  return outcome;
}

absl::Status EtcdEndpoints::Error(absl::string_view what, const Outcome& outcome) const {
  const auto code = static_cast<absl::StatusCode>(outcome.status.error_code());
  if (code == absl::StatusCode::kUnavailable && size() > 1) {
    return absl::Status(
        code, absl::StrCat("etcd ", what, " failed at every endpoint (", outcome.attempts, ")"));
  }
  return absl::Status(code, absl::StrCat("etcd ", what, " at ", name(outcome.endpoint), ": ",
                                         Describe(outcome.status)));
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                      ": ", status.error_message());
}

std::string Quoted(absl::string_view key) { return absl::StrCat("'", absl::CHexEscape(key), "'"); }

KeyRange PrefixRange(absl::string_view prefix) {
  KeyRange range{std::string(prefix), std::string(prefix)};
  std::string& end = range.range_end;
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) {
    end.assign(1, '\0');
  } else {
    end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  }
  if (range.key.empty()) range.key.assign(1, '\0');
  return range;
}

void RequireLeader(grpc::ClientContext* context) {
  // etcd's metadata key and value for "answer only with a leader" (clientv3.WithRequireLeader).
  context->AddMetadata("hasleader", "true");
}

}  // namespace luxdb::cluster
