#include "server/cluster_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cluster/shard_map.h"
#include "engine/limits.h"
#include "engine/resources.h"
#include "spdlog/spdlog.h"

namespace luxdb::server {
namespace {

using cluster::ShardIndexName;
using cluster::v1::IndexRecord;
using Stub = luxdb::v1::LuxDB::Stub;

// How a leader waits for a follower at most, whatever the caller's deadline: a shard's writes
// wait for its leader's write in flight.
constexpr auto kFollowerWait = std::chrono::seconds(10);
// How long a write waits at most for a shard to have a leader that answers: a dead leader's
// lease expires (ClusterOptions::lease_ttl, 5 s) and an in-sync replica takes its place.
constexpr auto kLeaderWait = std::chrono::seconds(15);
// A leader acknowledges a write only if its lease is sure to last this much longer.
constexpr auto kLeaseMargin = std::chrono::milliseconds(500);

// The value of a call's metadata `key` ("" if none).
absl::string_view Metadata(const grpc::ServerContext* context, absl::string_view key) {
  auto it = context->client_metadata().find(grpc::string_ref(key.data(), key.size()));
  if (it == context->client_metadata().end()) return "";
  return absl::string_view(it->second.data(), it->second.size());
}

bool Forwarded(const grpc::ServerContext* context) {
  return Metadata(context, kRouteHeader) == "local";
}

grpc::Status NoIndex(const std::string& name) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat("index '", name, "' does not exist"));
}

// The capacity of each of `shards` shards for an index of `max_elements`: an even share plus
// room for the hash's unevenness (four standard deviations of a shard's count, and 64).
uint64_t ShardCapacity(uint64_t max_elements, uint32_t shards) {
  if (shards <= 1 || max_elements == 0) return max_elements;
  const double share = std::ceil(static_cast<double>(max_elements) / shards);
  const double room = std::ceil(4 * std::sqrt(share)) + 64;
  return std::min<uint64_t>(engine::kMaxElements, static_cast<uint64_t>(share + room));
}

// One call to one node, run by RunAll.
template <typename Request, typename Response>
struct PeerCall {
  std::string node;
  uint32_t shard = 0;
  std::string route = "local";  // kRouteHeader
  int64_t epoch = 0;            // kEpochHeader, if not 0
  Request request;
  Response response;
  grpc::Status status;
};

// How often RunAll looks for calls to give up on.
constexpr auto kAbandonCheck = std::chrono::milliseconds(100);

// Never gives up on a call to a live member (RunAll's default).
struct KeepWaiting {
  template <typename Call>
  bool operator()(const Call&) const {
    return false;
  }
};

// Runs every call at once (gRPC's callback API) and waits for all: each carries its route and
// the caller's deadline (or `max_wait` from now, if sooner). `start(async, context, request,
// response, done)` starts one. A call to a node that stops being a live member (its lease
// expired: it is dead or hung), or for which `abandon(call)` becomes true, is cancelled
// (CANCELLED) rather than waited for until the deadline.
template <typename Request, typename Response, typename Start, typename Abandon = KeepWaiting>
void RunAll(cluster::Cluster* cluster, const grpc::ServerContext* caller,
            std::vector<PeerCall<Request, Response>>* calls, Start start,
            std::chrono::seconds max_wait = std::chrono::seconds::max(),
            Abandon abandon = KeepWaiting()) {
  std::chrono::system_clock::time_point deadline = caller->deadline();
  if (max_wait != std::chrono::seconds::max()) {
    deadline = std::min(deadline, std::chrono::system_clock::now() + max_wait);
  }
  std::mutex mu;
  std::condition_variable all_done;
  size_t pending = 0;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<const PeerCall<Request, Response>*> started;
  std::vector<std::shared_ptr<Stub>> stubs;
  for (PeerCall<Request, Response>& call : *calls) {
    absl::StatusOr<std::shared_ptr<Stub>> stub = cluster->Peer(call.node);
    if (!stub.ok()) {
      call.status = ToGrpc(stub.status());
      continue;
    }
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata(kRouteHeader, call.route);
    if (call.epoch != 0) context->AddMetadata(kEpochHeader, absl::StrCat(call.epoch));
    if (deadline != std::chrono::system_clock::time_point::max()) context->set_deadline(deadline);
    {
      std::lock_guard lock(mu);
      ++pending;
    }
    start((*stub)->async(), context.get(), &call.request, &call.response,
          [&mu, &all_done, &pending, status = &call.status](grpc::Status s) {
            std::lock_guard lock(mu);
            *status = std::move(s);
            if (--pending == 0) all_done.notify_all();
          });
    contexts.push_back(std::move(context));
    started.push_back(&call);
    stubs.push_back(*std::move(stub));
  }
  std::unique_lock lock(mu);
  while (!all_done.wait_for(lock, kAbandonCheck, [&] { return pending == 0; })) {
    lock.unlock();
    for (size_t i = 0; i < started.size(); ++i) {
      // (A finished call's context ignores the cancel.)
      if (!cluster->IsMember(started[i]->node) || abandon(*started[i])) contexts[i]->TryCancel();
    }
    lock.lock();
  }
}

// A node's answer about shard `shard` of `name`, in the cluster's terms: the shard's local name
// becomes the index's, and a node that could not be reached is named.
grpc::Status InClusterTerms(const grpc::Status& status, const std::string& name, uint32_t shard,
                            const std::string& node) {
  if (status.ok()) return status;
  std::string message = absl::StrReplaceAll(
      status.error_message(),
      {{absl::StrCat("'", ShardIndexName(name, shard), "'"), absl::StrCat("'", name, "'")}});
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      status.error_code() == grpc::StatusCode::INTERNAL) {
    absl::StrAppend(&message, " (shard ", shard, " of '", name, "' on node '", node, "')");
  }
  return grpc::Status(status.error_code(), message);
}

// The first failure among `calls`, in cluster terms; OK if none failed.
template <typename Call>
grpc::Status FirstFailure(const std::vector<Call>& calls, const std::string& name) {
  for (const Call& call : calls) {
    if (!call.status.ok()) return InClusterTerms(call.status, name, call.shard, call.node);
  }
  return grpc::Status::OK;
}

// The replicas of shard `s` that hold every acknowledged write (ShardRecord::in_sync).
const google::protobuf::RepeatedPtrField<std::string>& InSync(const IndexRecord& record,
                                                              uint32_t s) {
  const cluster::v1::ShardRecord& shard = record.shards(static_cast<int>(s));
  return shard.in_sync_size() > 0 ? shard.in_sync() : shard.nodes();
}

// A failure that says nothing about the request: the node could not be reached or did not
// answer in time. Another replica may answer; a write it missed takes it out of sync.
bool Unreachable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         status.error_code() == grpc::StatusCode::CANCELLED;  // by RunAll: gone or deposed
}

// Calls on every in-sync replica of every shard (with `all_nodes`, on every replica placed,
// in sync or not): `fill(shard, request)` sets the request's fields except the name.
template <typename Request, typename Response, typename Fill>
std::vector<PeerCall<Request, Response>> EveryReplica(const IndexRecord& record, Fill fill,
                                                      bool all_nodes = false) {
  std::vector<PeerCall<Request, Response>> calls;
  for (int s = 0; s < record.shards_size(); ++s) {
    const auto& nodes =
        all_nodes ? record.shards(s).nodes() : InSync(record, static_cast<uint32_t>(s));
    for (const std::string& node : nodes) {
      PeerCall<Request, Response>& call = calls.emplace_back();
      call.node = node;
      call.shard = static_cast<uint32_t>(s);
      fill(call.shard, &call.request);
      call.request.set_name(ShardIndexName(record.name(), call.shard));
    }
  }
  return calls;
}

// One in-sync replica of each shard answers `fill(shard, request)` (the name set here),
// starting at replica `turn` and moving to the next one of a shard whose replica cannot be
// reached. The answers by shard, or the first refusal (in cluster terms).
template <typename Request, typename Response, typename Fill, typename Start>
grpc::Status ReadEveryShard(cluster::Cluster* cluster, const grpc::ServerContext* context,
                            const IndexRecord& record, uint64_t turn, Fill fill, Start start,
                            std::vector<Response>* answers) {
  const uint32_t shards = record.shards_size();
  answers->assign(shards, Response());
  std::vector<bool> answered(shards, false);
  grpc::Status last = grpc::Status::OK;
  for (uint32_t attempt = 0;; ++attempt) {
    std::vector<PeerCall<Request, Response>> calls;
    for (uint32_t s = 0; s < shards; ++s) {
      const auto& nodes = InSync(record, s);
      if (answered[s] || attempt >= static_cast<uint32_t>(nodes.size())) continue;
      auto& call = calls.emplace_back();
      call.node = nodes[static_cast<int>((turn + attempt) % nodes.size())];
      call.shard = s;
      fill(s, &call.request);
      call.request.set_name(ShardIndexName(record.name(), s));
    }
    if (calls.empty()) break;
    RunAll(cluster, context, &calls, start);
    for (auto& call : calls) {
      if (call.status.ok()) {
        (*answers)[call.shard] = std::move(call.response);
        answered[call.shard] = true;
        continue;
      }
      last = InClusterTerms(call.status, record.name(), call.shard, call.node);
      // A refused request is refused by every replica alike: no point asking the next. But
      // NOT_FOUND may be one replica's (a node whose data directory lost the shard answers
      // it until its in-sync change reaches this node's cache): the next one settles it.
      if (!Unreachable(call.status) && call.status.error_code() != grpc::StatusCode::NOT_FOUND) {
        return last;
      }
    }
  }
  for (uint32_t s = 0; s < shards; ++s) {
    if (!answered[s]) return last;
  }
  return grpc::Status::OK;
}

// Sends each shard's part of an item write (`parts[s]`; one without ids is not sent) to the
// shard's leader and puts its answer in `(*answers)[s]`. A leader that cannot be reached, or
// that does not (or no longer) lead the shard, is replaced by the one etcd names next: the
// part is sent again (a part applies the same way twice) until kLeaderWait or the caller's
// deadline passes. A refusal is the call's answer (every replica refuses alike).
template <typename Request, typename Response, typename Start>
grpc::Status RouteWrite(cluster::Cluster* cluster, const grpc::ServerContext* context,
                        const IndexRecord& record, const std::vector<Request>& parts, Start start,
                        std::vector<Response>* answers) {
  const uint32_t shards = record.shards_size();
  answers->assign(shards, Response());
  std::vector<bool> pending(shards, false);
  for (uint32_t s = 0; s < shards; ++s) pending[s] = parts[s].ids_size() > 0;
  auto give_up = std::chrono::steady_clock::now() + kLeaderWait;
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    give_up = std::min(give_up, std::chrono::steady_clock::now() +
                                    (context->deadline() - std::chrono::system_clock::now()));
  }
  std::vector<std::optional<cluster::Leader>> tried(shards);
  grpc::Status last = grpc::Status::OK;
  uint32_t last_shard = 0;
  while (true) {
    std::vector<PeerCall<Request, Response>> calls;
    for (uint32_t s = 0; s < shards; ++s) {
      if (!pending[s]) continue;
      tried[s] = cluster->LeaderOf(record.name(), s);
      if (!tried[s].has_value()) continue;  // none yet: wait below
      PeerCall<Request, Response>& call = calls.emplace_back();
      call.node = tried[s]->node;
      call.shard = s;
      call.route = "lead";
      call.request = parts[s];
      call.request.set_name(ShardIndexName(record.name(), s));
    }
    // A leader that is replaced while the call waits (it hung; its lease expired) is given up.
    RunAll(cluster, context, &calls, start, std::chrono::seconds::max(),
           [&](const PeerCall<Request, Response>& call) {
             const std::optional<cluster::Leader> now =
                 cluster->LeaderOf(record.name(), call.shard);
             return !now.has_value() || now->epoch != tried[call.shard]->epoch;
           });
    for (PeerCall<Request, Response>& call : calls) {
      if (call.status.ok()) {
        (*answers)[call.shard] = std::move(call.response);
        pending[call.shard] = false;
        continue;
      }
      grpc::Status status = InClusterTerms(call.status, record.name(), call.shard, call.node);
      if (!Unreachable(call.status) && call.status.error_code() != grpc::StatusCode::ABORTED) {
        return status;
      }
      last = std::move(status);
      last_shard = call.shard;
    }
    uint32_t waiting = shards;
    for (uint32_t s = 0; s < shards && waiting == shards; ++s) {
      if (pending[s]) waiting = s;
    }
    if (waiting == shards) return grpc::Status::OK;
    const auto now = std::chrono::steady_clock::now();
    if (now >= give_up) {
      const std::string why = last.ok()
                                  ? absl::StrCat("shard ", waiting, " has no leader")
                                  : absl::StrCat("shard ", last_shard, ": ", last.error_message());
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("index '", record.name(), "': ", why,
                                       "; the write may be partly applied: retry it"));
    }
    // A new leader shows up in the cache (the old one's lease expired); a leader that only
    // lagged behind its own election is asked again shortly.
    (void)cluster->AwaitLeaderChange(record.name(), waiting, tried[waiting],
                                     std::min(give_up, now + std::chrono::milliseconds(200)));
  }
}

// The sum over shards of `count(answer)`.
template <typename Response, typename Count>
uint64_t SumOverShards(const std::vector<Response>& answers, Count count) {
  uint64_t total = 0;
  for (const Response& answer : answers) total += count(answer);
  return total;
}

// A forwarded item write: to be ordered by the shard's leader or applied by a follower.
bool IsShardWrite(const grpc::ServerContext* context) {
  const absl::string_view route = Metadata(context, kRouteHeader);
  return route == "lead" || route == "follow" || route == "catch-up" || route == "copy";
}

// A replica's check of a write from its shard's leader: `*name` and `*shard` from the shard's
// local name, and ABORTED if the cache knows a later leader than the sender's epoch
// (kEpochHeader): a leader that lost its lease may not know it yet.
grpc::Status CheckLeader(cluster::Cluster* cluster, const grpc::ServerContext* context,
                         const std::string& local, std::string* name, uint32_t* shard) {
  if (!cluster::ParseShardIndexName(local, name, shard)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("'", local, "' is not the name of a shard"));
  }
  int64_t epoch = 0;
  if (!absl::SimpleAtoi(Metadata(context, kEpochHeader), &epoch) || epoch <= 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("a write from a shard's leader needs ", kEpochHeader));
  }
  const std::optional<cluster::Leader> leader = cluster->LeaderOf(*name, *shard);
  if (leader.has_value() && leader->epoch > epoch) {
    return grpc::Status(
        grpc::StatusCode::ABORTED,
        absl::StrCat("shard ", *shard, " of '", *name, "' has a newer leader ('", leader->node,
                     "', epoch ", leader->epoch, ") than the sender's epoch ", epoch));
  }
  return grpc::Status::OK;
}

// A call from the catch-up thread (no caller to take a deadline from) to `node`: `method` is
// the stub's blocking method, e.g. &Stub::GetIds.
template <typename Request, typename Response>
absl::Status CallNode(cluster::Cluster* cluster, const std::string& node, const std::string& route,
                      int64_t epoch, const Request& request, Response* response,
                      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                   Response*)) {
  absl::StatusOr<std::shared_ptr<Stub>> stub = cluster->Peer(node);
  if (!stub.ok()) return stub.status();
  grpc::ClientContext context;
  context.AddMetadata(kRouteHeader, route);
  if (epoch != 0) context.AddMetadata(kEpochHeader, absl::StrCat(epoch));
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  const grpc::Status status = ((*stub).get()->*method)(&context, request, response);
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("node '", node, "': ", status.error_message()));
}

// How RunAll starts each item write.
constexpr auto kStartAddItems = [](auto* async, auto* c, auto* req, auto* resp, auto done) {
  async->AddItems(c, req, resp, std::move(done));
};
constexpr auto kStartDeleteItems = [](auto* async, auto* c, auto* req, auto* resp, auto done) {
  async->DeleteItems(c, req, resp, std::move(done));
};
constexpr auto kStartSetAttributes = [](auto* async, auto* c, auto* req, auto* resp, auto done) {
  async->SetAttributes(c, req, resp, std::move(done));
};

grpc::Status Joining() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "this node is joining its cluster (or leaving it); retry");
}

}  // namespace

// Every handler starts here: a forwarded call is answered from the local catalog; any other
// needs the cluster (`cluster` in the handler).
#define LUXDB_FORWARDED(method)                                              \
  if (Forwarded(context)) return local_->method(context, request, response); \
  cluster::Cluster* const cluster = cluster_.load();                         \
  if (cluster == nullptr) return Joining()

#define LUXDB_FIND(record, name)                                                        \
  absl::StatusOr<std::optional<IndexRecord>> found_##record = cluster->FindIndex(name); \
  if (!found_##record.ok()) return ToGrpc(found_##record.status());                     \
  if (!found_##record->has_value()) return NoIndex(name);                               \
  const IndexRecord& record = **found_##record

engine::Mutex* ShardLocks::Get(const std::string& shard) {
  engine::MutexLock lock(&mu_);
  std::unique_ptr<engine::Mutex>& slot = locks_[shard];
  if (slot == nullptr) slot = std::make_unique<engine::Mutex>();
  return slot.get();
}

template <typename Request, typename Response, typename Apply, typename Start>
grpc::Status ClusterService::ShardWrite(grpc::ServerContext* context, const Request& request,
                                        Apply apply, Start start) {
  cluster::Cluster* const cluster = cluster_.load();
  if (cluster == nullptr) return Joining();
  std::string name;
  uint32_t shard = 0;
  if (!cluster::ParseShardIndexName(request.name(), &name, &shard)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("'", request.name(), "' is not the name of a shard"));
  }
  const absl::string_view route = Metadata(context, kRouteHeader);
  if (route != "lead") {
    if (grpc::Status fenced = CheckLeader(cluster, context, request.name(), &name, &shard);
        !fenced.ok()) {
      return fenced;
    }
    if (route == "follow") {
      {
        engine::MutexLock lock(&catch_up_mu_);
        touched_.erase(request.name());  // in sync: its catch-up is over
      }
      return apply();
    }
    if constexpr (std::is_same_v<Request, v1::AddItemsRequest>) {
      return CatchUpAdd(context, request, static_cast<v1::AddItemsResponse*>(nullptr),
                        route == "copy");
    } else if constexpr (std::is_same_v<Request, v1::DeleteItemsRequest>) {
      if (route == "catch-up") return CatchUpDelete(context, request, nullptr);
    }
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("route '", route, "' is not for this call"));
  }
  // route == "lead"
  engine::MutexLock lock(shard_locks_.Get(request.name()));
  const std::optional<cluster::Leader> now = cluster->LeaderOf(name, shard);
  if (!now.has_value() || now->node != cluster->node_id()) {
    return grpc::Status(
        grpc::StatusCode::ABORTED,
        absl::StrCat("node '", cluster->node_id(), "' does not lead shard ", shard, " of '", name,
                     "' (leader: ", now.has_value() ? now->node : "none yet", ")"));
  }
  if (!cluster->LeaseHeld(kLeaseMargin)) {
    return grpc::Status(grpc::StatusCode::ABORTED,
                        absl::StrCat("node '", cluster->node_id(),
                                     "' is not sure to hold its etcd lease; it leads nothing"));
  }
  LUXDB_FIND(record, name);
  // --write-quorum, at most the index's replicas.
  const uint32_t quorum =
      std::min<uint32_t>(cluster->write_quorum(), std::max(1u, record.replicas()));
  const uint32_t in_sync = static_cast<uint32_t>(InSync(record, shard).size());
  if (in_sync < quorum) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("shard ", shard, " of '", name, "' has ", in_sync,
                                     " replica(s) in sync and --write-quorum needs ", quorum,
                                     ": nothing was written (a replica back in sync lifts this)"));
  }
  if (grpc::Status applied = apply(); !applied.ok()) return applied;
  std::vector<PeerCall<Request, Response>> calls;
  for (const std::string& node : InSync(record, shard)) {
    if (node == cluster->node_id()) continue;
    PeerCall<Request, Response>& call = calls.emplace_back();
    call.node = node;
    call.shard = shard;
    call.route = "follow";
    call.epoch = now->epoch;
    call.request = request;
  }
  RunAll(cluster, context, &calls, start, kFollowerWait);
  std::vector<std::string> failed;
  for (const auto& call : calls) {
    if (call.status.ok()) continue;
    if (call.status.error_code() == grpc::StatusCode::ABORTED) {
      return grpc::Status(
          grpc::StatusCode::ABORTED,
          absl::StrCat("node '", cluster->node_id(), "' was deposed as leader of ", "shard ", shard,
                       " of '", name, "': ", call.status.error_message()));
    }
    if (!Unreachable(call.status)) {
      // Applied here, refused there: that replica no longer holds what this one does.
      spdlog::error(
          "cluster: shard {} of '{}': replica '{}' refused a write its leader applied: {}", shard,
          name, call.node, call.status.error_message());
    }
    failed.push_back(call.node);
  }
  if (!failed.empty()) {
    IndexRecord updated;
    absl::Status left = cluster->LeaveInSync(name, shard, now->epoch, failed, &updated);
    if (!left.ok()) {
      return grpc::Status(
          absl::IsAborted(left) ? grpc::StatusCode::ABORTED : grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("index '", name, "': a write missed shard ", shard, "'s replica on ",
                       absl::StrJoin(failed, ", "), " and the shard map could not record it (",
                       left.message(), "); the write may be partly applied: retry it"));
    }
  }
  ForwardToCatchingUp(context, cluster, request, shard, now->epoch);
  const uint32_t holders = static_cast<uint32_t>(1 + calls.size() - failed.size());
  if (holders < quorum) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("shard ", shard, " of '", name, "': the write reached ",
                                     holders, " replica(s) and --write-quorum needs ", quorum,
                                     "; it may be partly applied: retry it"));
  }
  if (!cluster->LeaseHeld(std::chrono::milliseconds(0))) {
    return grpc::Status(grpc::StatusCode::ABORTED,
                        absl::StrCat("node '", cluster->node_id(),
                                     "' lost its etcd lease during the write; it leads nothing"));
  }
  return grpc::Status::OK;
}

template <typename Request>
void ClusterService::ForwardToCatchingUp(grpc::ServerContext* context, cluster::Cluster* cluster,
                                         const Request& request, uint32_t shard, int64_t epoch) {
  std::vector<std::string> nodes;
  {
    engine::MutexLock lock(&catch_up_mu_);
    auto it = catching_up_.find(request.name());
    if (it == catching_up_.end() || it->second.empty()) return;
    nodes.assign(it->second.begin(), it->second.end());
  }
  std::vector<std::string> failed;
  auto forward = [&](auto& calls, auto start) {
    for (auto& call : calls) {
      call.shard = shard;
      call.route = "catch-up";
      call.epoch = epoch;
    }
    RunAll(cluster, context, &calls, start, kFollowerWait);
    for (const auto& call : calls) {
      if (!call.status.ok()) {
        spdlog::warn("cluster: '{}' stops catching up {}: a write to it failed: {}", call.node,
                     request.name(), call.status.error_message());
        failed.push_back(call.node);
      }
    }
  };
  if constexpr (std::is_same_v<Request, v1::DeleteItemsRequest>) {
    std::vector<PeerCall<v1::DeleteItemsRequest, v1::DeleteItemsResponse>> calls(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      calls[i].node = nodes[i];
      calls[i].request = request;
    }
    forward(calls, kStartDeleteItems);
  } else {
    // The items as they are now (vector and attributes): the write's outcome, whatever it was.
    v1::GetElementsRequest read;
    read.set_name(request.name());
    *read.mutable_ids() = request.ids();
    read.set_with_attributes(true);
    v1::GetElementsResponse items;
    const grpc::Status got = local_->GetElements(context, &read, &items);
    if (!got.ok()) {
      spdlog::warn("cluster: cannot read back a write to {} for the replicas catching up: {}",
                   request.name(), got.error_message());
      failed = nodes;
    } else {
      std::vector<PeerCall<v1::AddItemsRequest, v1::AddItemsResponse>> calls(nodes.size());
      for (size_t i = 0; i < nodes.size(); ++i) {
        calls[i].node = nodes[i];
        v1::AddItemsRequest& add = calls[i].request;
        add.set_name(request.name());
        *add.mutable_ids() = request.ids();
        *add.mutable_vectors() = items.vectors();
        *add.mutable_attributes() = items.attributes();
      }
      forward(calls, kStartAddItems);
    }
  }
  if (failed.empty()) return;
  engine::MutexLock lock(&catch_up_mu_);
  for (const std::string& node : failed) catching_up_[request.name()].erase(node);
}

grpc::Status ClusterService::CatchUpAdd(grpc::ServerContext* context,
                                        const v1::AddItemsRequest& request,
                                        v1::AddItemsResponse* response, bool copy) {
  v1::AddItemsResponse ignored;
  if (response == nullptr) response = &ignored;
  engine::MutexLock shard_lock(shard_locks_.Get(request.name()));
  if (!copy) {
    grpc::Status applied = local_->AddItems(context, &request, response);
    if (applied.ok()) {
      engine::MutexLock lock(&catch_up_mu_);
      touched_[request.name()].insert(request.ids().begin(), request.ids().end());
    }
    return applied;
  }
  // A copied item the leader's writes touched since the copy began is newer here already.
  v1::AddItemsRequest fresh;
  fresh.set_name(request.name());
  const int n = request.ids_size();
  const int dim = n == 0 ? 0 : request.vectors_size() / n;
  {
    engine::MutexLock lock(&catch_up_mu_);
    const absl::flat_hash_set<uint64_t>& touched = touched_[request.name()];
    for (int i = 0; i < n; ++i) {
      if (touched.contains(request.ids(i))) continue;
      fresh.add_ids(request.ids(i));
      fresh.mutable_vectors()->Add(request.vectors().begin() + i * dim,
                                   request.vectors().begin() + (i + 1) * dim);
      if (request.attributes_size() == n) *fresh.add_attributes() = request.attributes(i);
    }
  }
  if (fresh.ids_size() == 0) return grpc::Status::OK;
  return local_->AddItems(context, &fresh, response);
}

grpc::Status ClusterService::CatchUpDelete(grpc::ServerContext* context,
                                           const v1::DeleteItemsRequest& request,
                                           v1::DeleteItemsResponse* response) {
  engine::MutexLock shard_lock(shard_locks_.Get(request.name()));
  {
    engine::MutexLock lock(&catch_up_mu_);
    touched_[request.name()].insert(request.ids().begin(), request.ids().end());
  }
  // One at a time: an id the copy has not brought yet is not here to delete (and will not be
  // copied: it is touched).
  for (uint64_t id : request.ids()) {
    v1::DeleteItemsRequest one;
    one.set_name(request.name());
    one.add_ids(id);
    v1::DeleteItemsResponse deleted;
    grpc::Status status = local_->DeleteItems(context, &one, &deleted);
    if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) return status;
    if (response != nullptr) response->set_deleted(response->deleted() + deleted.deleted());
  }
  return grpc::Status::OK;
}

ClusterService::~ClusterService() { AttachCluster(nullptr); }

void ClusterService::AttachCluster(cluster::Cluster* cluster) {
  if (cluster == nullptr) {
    {
      engine::MutexLock lock(&catch_up_mu_);
      stopping_ = true;
      stop_.SignalAll();
    }
    if (catch_up_thread_.joinable()) catch_up_thread_.join();
    cluster_.store(nullptr);
    return;
  }
  cluster_.store(cluster);
  {
    engine::MutexLock lock(&catch_up_mu_);
    stopping_ = false;
  }
  if (!catch_up_thread_.joinable()) catch_up_thread_ = std::thread([this] { CatchUpLoop(); });
}

bool ClusterService::Stopping() {
  engine::MutexLock lock(&catch_up_mu_);
  return stopping_;
}

void ClusterService::CatchUpLoop() {
  // A replica whose catch-up failed is tried again after this.
  constexpr auto kRetry = std::chrono::seconds(5);
  std::map<std::string, std::chrono::steady_clock::time_point> not_before;  // "<shard>/<node>"
  while (true) {
    {
      engine::MutexLock lock(&catch_up_mu_);
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!stopping_ && stop_.WaitUntil(&catch_up_mu_, until)) {
      }
      if (stopping_) return;
    }
    cluster::Cluster* const cluster = cluster_.load();
    if (cluster == nullptr) continue;
    const std::map<std::string, cluster::v1::NodeRecord> live = cluster->Nodes();
    for (const auto& [name, record] : cluster->Indexes()) {
      for (uint32_t s = 0; s < static_cast<uint32_t>(record.shards_size()); ++s) {
        const std::optional<cluster::Leader> leader = cluster->LeaderOf(name, s);
        if (!leader.has_value() || leader->node != cluster->node_id()) continue;
        const auto& in_sync = InSync(record, s);
        for (const std::string& node : record.shards(static_cast<int>(s)).nodes()) {
          if (std::find(in_sync.begin(), in_sync.end(), node) != in_sync.end() ||
              !live.contains(node)) {
            continue;
          }
          const std::string key = absl::StrCat(ShardIndexName(name, s), "/", node);
          if (std::chrono::steady_clock::now() < not_before[key]) continue;
          if (Stopping()) return;
          if (absl::Status caught = CatchUp(cluster, record, s, node, leader->epoch);
              !caught.ok()) {
            spdlog::warn(
                "cluster: catching up '{}' on shard {} of '{}' failed (tried again in {} s): {}",
                node, s, name, kRetry.count(), caught.ToString());
            not_before[key] = std::chrono::steady_clock::now() + kRetry;
          }
        }
      }
    }
  }
}

absl::Status ClusterService::CatchUp(cluster::Cluster* cluster, const IndexRecord& record,
                                     uint32_t shard, const std::string& node, int64_t epoch) {
  const std::string local = ShardIndexName(record.name(), shard);
  const std::string& self = cluster->node_id();
  const auto started = std::chrono::steady_clock::now();
  spdlog::info("cluster: catching up '{}' on shard {} of '{}'", node, shard, record.name());
  // This node's replica: its parameters.
  v1::DescribeIndexRequest describe;
  describe.set_name(local);
  v1::DescribeIndexResponse described;
  if (absl::Status s =
          CallNode(cluster, self, "local", 0, describe, &described, &Stub::DescribeIndex);
      !s.ok()) {
    return s;
  }
  const v1::IndexInfo& info = described.info();
  // The replica starts empty, with the same parameters (and forgets what a catch-up before
  // this one touched).
  v1::DeleteIndexRequest drop;
  drop.set_name(local);
  v1::DeleteIndexResponse dropped;
  if (absl::Status s =
          CallNode(cluster, node, "catch-up", epoch, drop, &dropped, &Stub::DeleteIndex);
      !s.ok() && !absl::IsNotFound(s)) {
    return s;
  }
  v1::CreateIndexRequest create;
  create.set_name(local);
  create.set_space(info.space());
  create.set_dim(info.dim());
  v1::CreateIndexResponse created;
  if (absl::Status s = CallNode(cluster, node, "local", 0, create, &created, &Stub::CreateIndex);
      !s.ok()) {
    return s;
  }
  if (info.initialized()) {
    v1::InitIndexRequest init;
    init.set_name(local);
    init.set_max_elements(info.max_elements());
    init.set_ef_construction(info.ef_construction());
    init.set_m(info.m());
    v1::InitIndexResponse inited;
    if (absl::Status s = CallNode(cluster, node, "local", 0, init, &inited, &Stub::InitIndex);
        !s.ok()) {
      return s;
    }
    v1::SetEfRequest ef;
    ef.set_name(local);
    ef.set_ef(info.ef());
    v1::SetEfResponse ef_set;
    if (absl::Status s = CallNode(cluster, node, "local", 0, ef, &ef_set, &Stub::SetEf); !s.ok()) {
      return s;
    }
  }
  // From here on every write of the shard reaches the replica too.
  auto still_catching_up = [&] {
    engine::MutexLock lock(&catch_up_mu_);
    auto it = catching_up_.find(local);
    return it != catching_up_.end() && it->second.contains(node);
  };
  auto give_up = [&] {
    engine::MutexLock lock(&catch_up_mu_);
    catching_up_[local].erase(node);
  };
  {
    engine::MutexLock lock(shard_locks_.Get(local));
    const std::optional<cluster::Leader> leader = cluster->LeaderOf(record.name(), shard);
    if (!leader.has_value() || leader->epoch != epoch) {
      return absl::AbortedError("this node no longer leads the shard");
    }
    engine::MutexLock catching(&catch_up_mu_);
    catching_up_[local].insert(node);
  }
  // The copy, in pages of about 2 MiB.
  const uint32_t page =
      std::max<uint32_t>(1, (2u << 20) / (std::max<uint32_t>(info.dim(), 1) * sizeof(float) + 64));
  std::optional<uint64_t> after;
  uint64_t copied = 0;
  auto last_report = std::chrono::steady_clock::now();
  while (true) {
    if (Stopping() || !still_catching_up()) {
      give_up();
      return absl::AbortedError("stopped, or a write to the replica failed during the copy");
    }
    v1::GetIdsRequest list;
    list.set_name(local);
    list.set_limit(page);
    if (after.has_value()) list.set_start_after(*after);
    v1::GetIdsResponse ids;
    v1::GetElementsResponse items;
    absl::Status read;
    for (int attempt = 0; attempt < 5; ++attempt) {  // an item deleted between the two reads
      read = CallNode(cluster, self, "local", 0, list, &ids, &Stub::GetIds);
      if (!read.ok() || ids.ids_size() == 0) break;
      v1::GetElementsRequest get;
      get.set_name(local);
      *get.mutable_ids() = ids.ids();
      get.set_with_attributes(true);
      read = CallNode(cluster, self, "local", 0, get, &items, &Stub::GetElements);
      if (!absl::IsNotFound(read)) break;
    }
    if (!read.ok()) {
      give_up();
      return read;
    }
    if (ids.ids_size() == 0) break;
    v1::AddItemsRequest add;
    add.set_name(local);
    *add.mutable_ids() = ids.ids();
    *add.mutable_vectors() = items.vectors();
    *add.mutable_attributes() = items.attributes();
    v1::AddItemsResponse added;
    if (absl::Status s = CallNode(cluster, node, "copy", epoch, add, &added, &Stub::AddItems);
        !s.ok()) {
      give_up();
      return s;
    }
    copied += ids.ids_size();
    if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(10)) {
      last_report = std::chrono::steady_clock::now();
      spdlog::info("cluster: catching up '{}' on shard {} of '{}': {} items copied", node, shard,
                   record.name(), copied);
    }
    if (!ids.has_next_start_after()) break;
    after = ids.next_start_after();
  }
  // Complete: back into the in-sync set, between two writes of the shard.
  engine::MutexLock lock(shard_locks_.Get(local));
  if (!still_catching_up()) return absl::AbortedError("a write to the replica failed");
  give_up();  // whatever happens next, the leader stops sending it catch-up writes
  if (!cluster->LeaseHeld(kLeaseMargin)) return absl::AbortedError("this node's lease is in doubt");
  if (absl::Status joined = cluster->JoinInSync(record.name(), shard, epoch, node); !joined.ok()) {
    return joined;
  }
  spdlog::info("cluster: '{}' caught up on shard {} of '{}' ({} items copied in {:.1f} s)", node,
               shard, record.name(), copied,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return absl::OkStatus();
}

grpc::Status ClusterService::CreateIndex(grpc::ServerContext* context,
                                         const v1::CreateIndexRequest* request,
                                         v1::CreateIndexResponse* response) {
  LUXDB_FORWARDED(CreateIndex);
  const std::string& name = request->name();
  if (absl::Status valid = engine::ValidateIndexName(name); !valid.ok()) return ToGrpc(valid);
  if (name.size() > engine::kMaxNameBytes - cluster::kMaxShardSuffixBytes) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("index name is ", name.size(), " bytes long; in cluster mode the limit is ",
                     engine::kMaxNameBytes - cluster::kMaxShardSuffixBytes));
  }
  if (request->space() != v1::L2 && request->space() != v1::IP && request->space() != v1::COSINE) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("index '", name, "': space must be L2, IP or COSINE, got ",
                                     static_cast<int>(request->space())));
  }
  using engine::kMaxReplicas;
  using engine::kMaxShards;
  const uint32_t shards = std::max(1u, request->shards());
  const uint32_t replicas = std::max(1u, request->replicas());
  if (shards > kMaxShards) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("index '", name, "': ", shards, " shards; the limit is ", kMaxShards));
  }
  if (replicas > kMaxReplicas) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("index '", name, "': ", replicas, " replicas; the limit is ", kMaxReplicas));
  }
  std::vector<std::string> nodes;
  std::vector<uint64_t> load;
  std::map<std::string, uint64_t> held;
  absl::StatusOr<std::vector<IndexRecord>> existing = cluster->ListIndexes();
  if (!existing.ok()) return ToGrpc(existing.status());
  for (const IndexRecord& r : *existing) {
    for (const cluster::v1::ShardRecord& shard : r.shards()) {
      for (const std::string& node : shard.nodes()) ++held[node];
    }
  }
  for (const auto& [id, node] : cluster->Nodes()) {
    nodes.push_back(id);
    load.push_back(held[id]);
  }
  absl::StatusOr<std::vector<std::vector<std::string>>> placed =
      cluster::PlaceShards(nodes, load, shards, replicas);
  if (!placed.ok()) {
    return ToGrpc(absl::Status(placed.status().code(),
                               absl::StrCat("index '", name, "': ", placed.status().message())));
  }
  IndexRecord record;
  record.set_name(name);
  record.set_space(request->space());
  record.set_dim(request->dim());
  record.set_replicas(replicas);
  for (const std::vector<std::string>& shard_nodes : *placed) {
    cluster::v1::ShardRecord* shard = record.add_shards();
    for (const std::string& node : shard_nodes) {
      shard->add_nodes(node);
      shard->add_in_sync(node);
    }
  }
  absl::StatusOr<bool> created = cluster->CreateIndexRecord(record);
  if (!created.ok()) return ToGrpc(created.status());
  if (!*created) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        absl::StrCat("index '", name, "' already exists"));
  }
  auto calls = EveryReplica<v1::CreateIndexRequest, v1::CreateIndexResponse>(
      record, [&](uint32_t, v1::CreateIndexRequest* r) {
        r->set_space(request->space());
        r->set_dim(request->dim());
      });
  RunAll(cluster, context, &calls, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
    async->CreateIndex(c, req, resp, std::move(done));
  });
  grpc::Status failed = FirstFailure(calls, name);
  if (!failed.ok()) {
    // Nothing half-made stays: the shards that were created go, and the record.
    auto undo = EveryReplica<v1::DeleteIndexRequest, v1::DeleteIndexResponse>(
        record, [](uint32_t, v1::DeleteIndexRequest*) {}, /*all_nodes=*/true);
    RunAll(cluster, context, &undo, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
      async->DeleteIndex(c, req, resp, std::move(done));
    });
    (void)cluster->DeleteIndexRecord(name);
    return failed;
  }
  (void)response;
  return grpc::Status::OK;
}

grpc::Status ClusterService::InitIndex(grpc::ServerContext* context,
                                       const v1::InitIndexRequest* request,
                                       v1::InitIndexResponse* response) {
  LUXDB_FORWARDED(InitIndex);
  LUXDB_FIND(record, request->name());
  if (request->max_elements() > engine::kMaxElements) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("index '", record.name(), "': max_elements ",
                                     request->max_elements(), " exceeds ", engine::kMaxElements));
  }
  auto calls = EveryReplica<v1::InitIndexRequest, v1::InitIndexResponse>(
      record, [&](uint32_t, v1::InitIndexRequest* r) {
        *r = *request;
        r->set_max_elements(ShardCapacity(request->max_elements(), record.shards_size()));
      });
  RunAll(cluster, context, &calls, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
    async->InitIndex(c, req, resp, std::move(done));
  });
  return FirstFailure(calls, record.name());
}

grpc::Status ClusterService::DeleteIndex(grpc::ServerContext* context,
                                         const v1::DeleteIndexRequest* request,
                                         v1::DeleteIndexResponse* response) {
  if (Metadata(context, kRouteHeader) == "catch-up") {
    // A replica about to be caught up: its shard starts empty.
    cluster::Cluster* const cluster = cluster_.load();
    if (cluster == nullptr) return Joining();
    std::string name;
    uint32_t shard = 0;
    if (grpc::Status fenced = CheckLeader(cluster, context, request->name(), &name, &shard);
        !fenced.ok()) {
      return fenced;
    }
    {
      engine::MutexLock lock(&catch_up_mu_);
      touched_.erase(request->name());
    }
    return local_->DeleteIndex(context, request, response);
  }
  LUXDB_FORWARDED(DeleteIndex);
  LUXDB_FIND(record, request->name());
  auto calls = EveryReplica<v1::DeleteIndexRequest, v1::DeleteIndexResponse>(
      record, [](uint32_t, v1::DeleteIndexRequest*) {}, /*all_nodes=*/true);
  RunAll(cluster, context, &calls, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
    async->DeleteIndex(c, req, resp, std::move(done));
  });
  for (const auto& call : calls) {
    // A shard already gone (an earlier delete that failed half-way) is what was asked. A replica
    // out of sync that cannot be reached keeps its copy (README "Cluster mode").
    const auto& in_sync = InSync(record, call.shard);
    const bool out_of_sync = std::find(in_sync.begin(), in_sync.end(), call.node) == in_sync.end();
    if (!call.status.ok() && call.status.error_code() != grpc::StatusCode::NOT_FOUND &&
        !(out_of_sync && Unreachable(call.status))) {
      return InClusterTerms(call.status, record.name(), call.shard, call.node);
    }
  }
  return ToGrpc(cluster->DeleteIndexRecord(record.name()));
}

grpc::Status ClusterService::IndexExists(grpc::ServerContext* context,
                                         const v1::IndexExistsRequest* request,
                                         v1::IndexExistsResponse* response) {
  LUXDB_FORWARDED(IndexExists);
  absl::StatusOr<std::optional<IndexRecord>> found = cluster->FindIndex(request->name());
  if (!found.ok()) return ToGrpc(found.status());
  response->set_exists(found->has_value());
  return grpc::Status::OK;
}

grpc::Status ClusterService::Describe(grpc::ServerContext* context, const IndexRecord& record,
                                      v1::IndexInfo* info) {
  cluster::Cluster* const cluster = cluster_.load();
  if (cluster == nullptr) return Joining();
  const uint32_t shards = record.shards_size();
  std::vector<v1::DescribeIndexResponse> described;
  grpc::Status read = ReadEveryShard<v1::DescribeIndexRequest>(
      cluster, context, record, next_replica_.fetch_add(1, std::memory_order_relaxed),
      [](uint32_t, v1::DescribeIndexRequest*) {},
      [](auto* async, auto* c, auto* req, auto* resp, auto done) {
        async->DescribeIndex(c, req, resp, std::move(done));
      },
      &described);
  if (!read.ok()) return read;
  std::vector<v1::IndexInfo> answers;
  for (v1::DescribeIndexResponse& d : described) answers.push_back(std::move(*d.mutable_info()));
  *info = answers[0];
  info->set_name(record.name());
  info->set_shards(shards);
  info->set_replicas(record.replicas());
  for (uint32_t s = 1; s < shards; ++s) {
    info->set_max_elements(info->max_elements() + answers[s].max_elements());
    info->set_element_count(info->element_count() + answers[s].element_count());
    info->set_deleted_count(info->deleted_count() + answers[s].deleted_count());
    info->set_tombstones(info->tombstones() + answers[s].tombstones());
    info->set_memory_bytes(info->memory_bytes() + answers[s].memory_bytes());
    info->set_initialized(info->initialized() && answers[s].initialized());
    info->set_compacting(info->compacting() || answers[s].compacting());
  }
  return grpc::Status::OK;
}

grpc::Status ClusterService::ListIndexes(grpc::ServerContext* context,
                                         const v1::ListIndexesRequest* request,
                                         v1::ListIndexesResponse* response) {
  LUXDB_FORWARDED(ListIndexes);
  absl::StatusOr<std::vector<IndexRecord>> records = cluster->ListIndexes();
  if (!records.ok()) return ToGrpc(records.status());
  for (const IndexRecord& record : *records) {
    grpc::Status described = Describe(context, record, response->add_indexes());
    if (!described.ok()) return described;
  }
  return grpc::Status::OK;
}

grpc::Status ClusterService::DescribeIndex(grpc::ServerContext* context,
                                           const v1::DescribeIndexRequest* request,
                                           v1::DescribeIndexResponse* response) {
  LUXDB_FORWARDED(DescribeIndex);
  LUXDB_FIND(record, request->name());
  return Describe(context, record, response->mutable_info());
}

grpc::Status ClusterService::SetEf(grpc::ServerContext* context, const v1::SetEfRequest* request,
                                   v1::SetEfResponse* response) {
  LUXDB_FORWARDED(SetEf);
  LUXDB_FIND(record, request->name());
  auto calls = EveryReplica<v1::SetEfRequest, v1::SetEfResponse>(
      record, [&](uint32_t, v1::SetEfRequest* r) { r->set_ef(request->ef()); });
  RunAll(cluster, context, &calls, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
    async->SetEf(c, req, resp, std::move(done));
  });
  return FirstFailure(calls, record.name());
}

grpc::Status ClusterService::AddItems(grpc::ServerContext* context,
                                      const v1::AddItemsRequest* request,
                                      v1::AddItemsResponse* response) {
  if (IsShardWrite(context)) {
    return ShardWrite<v1::AddItemsRequest, v1::AddItemsResponse>(
        context, *request, [&] { return local_->AddItems(context, request, response); },
        kStartAddItems);
  }
  LUXDB_FORWARDED(AddItems);
  LUXDB_FIND(record, request->name());
  const uint64_t n = request->ids_size();
  const uint64_t dim = record.dim();
  if (dim == 0 || static_cast<uint64_t>(request->vectors_size()) != n * dim) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("index '", record.name(), "': ", request->vectors_size(), " floats for ", n,
                     " ids of dimension ", dim, " (expected ", n * dim, ")"));
  }
  if (request->attributes_size() != 0 && static_cast<uint64_t>(request->attributes_size()) != n) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("index '", record.name(), "': ", request->attributes_size(),
                                     " attribute sets for ", n, " ids"));
  }
  const uint32_t shards = record.shards_size();
  std::vector<v1::AddItemsRequest> parts(shards);
  for (uint64_t i = 0; i < n; ++i) {
    v1::AddItemsRequest& part = parts[cluster::ShardOf(request->ids(i), shards)];
    part.add_ids(request->ids(i));
    part.mutable_vectors()->Add(request->vectors().begin() + i * dim,
                                request->vectors().begin() + (i + 1) * dim);
    if (request->attributes_size() != 0) *part.add_attributes() = request->attributes(i);
  }
  std::vector<v1::AddItemsResponse> answers;
  grpc::Status written = RouteWrite(cluster, context, record, parts, kStartAddItems, &answers);
  if (!written.ok()) return written;
  response->set_added(SumOverShards(answers, [](const auto& r) { return r.added(); }));
  return grpc::Status::OK;
}

grpc::Status ClusterService::DeleteItems(grpc::ServerContext* context,
                                         const v1::DeleteItemsRequest* request,
                                         v1::DeleteItemsResponse* response) {
  if (IsShardWrite(context)) {
    return ShardWrite<v1::DeleteItemsRequest, v1::DeleteItemsResponse>(
        context, *request, [&] { return local_->DeleteItems(context, request, response); },
        kStartDeleteItems);
  }
  LUXDB_FORWARDED(DeleteItems);
  LUXDB_FIND(record, request->name());
  const uint32_t shards = record.shards_size();
  std::vector<v1::DeleteItemsRequest> parts(shards);
  for (uint64_t id : request->ids()) parts[cluster::ShardOf(id, shards)].add_ids(id);
  std::vector<v1::DeleteItemsResponse> answers;
  grpc::Status written = RouteWrite(cluster, context, record, parts, kStartDeleteItems, &answers);
  if (!written.ok()) return written;
  response->set_deleted(SumOverShards(answers, [](const auto& r) { return r.deleted(); }));
  return grpc::Status::OK;
}

grpc::Status ClusterService::SetAttributes(grpc::ServerContext* context,
                                           const v1::SetAttributesRequest* request,
                                           v1::SetAttributesResponse* response) {
  if (IsShardWrite(context)) {
    return ShardWrite<v1::SetAttributesRequest, v1::SetAttributesResponse>(
        context, *request, [&] { return local_->SetAttributes(context, request, response); },
        kStartSetAttributes);
  }
  LUXDB_FORWARDED(SetAttributes);
  LUXDB_FIND(record, request->name());
  if (request->attributes_size() != request->ids_size()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("index '", record.name(), "': ", request->attributes_size(),
                                     " attribute sets for ", request->ids_size(), " ids"));
  }
  const uint32_t shards = record.shards_size();
  std::vector<v1::SetAttributesRequest> parts(shards);
  for (int i = 0; i < request->ids_size(); ++i) {
    v1::SetAttributesRequest& part = parts[cluster::ShardOf(request->ids(i), shards)];
    part.add_ids(request->ids(i));
    *part.add_attributes() = request->attributes(i);
  }
  std::vector<v1::SetAttributesResponse> answers;
  grpc::Status written = RouteWrite(cluster, context, record, parts, kStartSetAttributes, &answers);
  if (!written.ok()) return written;
  response->set_updated(SumOverShards(answers, [](const auto& r) { return r.updated(); }));
  return grpc::Status::OK;
}

grpc::Status ClusterService::Query(grpc::ServerContext* context,
                                   const v1::QueryIndexRequest& request,
                                   v1::QueryIndexResponse* response) {
  cluster::Cluster* const cluster = cluster_.load();
  if (cluster == nullptr) return Joining();
  LUXDB_FIND(record, request.name());
  std::vector<v1::QueryIndexResponse> answers;
  grpc::Status read = ReadEveryShard<v1::QueryIndexRequest>(
      cluster, context, record, next_replica_.fetch_add(1, std::memory_order_relaxed),
      [&](uint32_t, v1::QueryIndexRequest* r) { *r = request; },
      [](auto* async, auto* c, auto* req, auto* resp, auto done) {
        async->QueryIndex(c, req, resp, std::move(done));
      },
      &answers);
  if (!read.ok()) return read;
  const uint32_t k = request.k();
  // Every shard checked the query's shape against the same dimension.
  const uint32_t rows = record.dim() == 0 ? 0 : request.vectors_size() / record.dim();
  std::vector<cluster::ShardAnswer> views;
  for (const v1::QueryIndexResponse& a : answers) {
    views.push_back({.ids = {a.ids().data(), static_cast<size_t>(a.ids_size())},
                     .distances = {a.distances().data(), static_cast<size_t>(a.distances_size())},
                     .k = a.k()});
  }
  std::vector<uint64_t> ids;
  std::vector<float> distances;
  cluster::MergeNearest(views, rows, k, &ids, &distances);
  response->mutable_ids()->Assign(ids.begin(), ids.end());
  response->mutable_distances()->Assign(distances.begin(), distances.end());
  response->set_k(k);
  return grpc::Status::OK;
}

grpc::Status ClusterService::QueryIndex(grpc::ServerContext* context,
                                        const v1::QueryIndexRequest* request,
                                        v1::QueryIndexResponse* response) {
  if (Forwarded(context)) return local_->Query(context, request, response);
  return Query(context, *request, response);
}

grpc::Status ClusterService::QueryStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::QueryIndexResponse, v1::QueryIndexRequest>* stream) {
  v1::QueryIndexRequest request;
  while (stream->Read(&request)) {
    v1::QueryIndexResponse response;
    grpc::Status status = Forwarded(context) ? local_->Query(context, &request, &response)
                                             : Query(context, request, &response);
    if (!status.ok()) return status;
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ClusterService::ResizeIndex(grpc::ServerContext* context,
                                         const v1::ResizeIndexRequest* request,
                                         v1::ResizeIndexResponse* response) {
  LUXDB_FORWARDED(ResizeIndex);
  LUXDB_FIND(record, request->name());
  auto calls = EveryReplica<v1::ResizeIndexRequest, v1::ResizeIndexResponse>(
      record, [&](uint32_t, v1::ResizeIndexRequest* r) {
        r->set_new_max_elements(ShardCapacity(request->new_max_elements(), record.shards_size()));
      });
  RunAll(cluster, context, &calls, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
    async->ResizeIndex(c, req, resp, std::move(done));
  });
  return FirstFailure(calls, record.name());
}

grpc::Status ClusterService::GetIds(grpc::ServerContext* context, const v1::GetIdsRequest* request,
                                    v1::GetIdsResponse* response) {
  LUXDB_FORWARDED(GetIds);
  LUXDB_FIND(record, request->name());
  std::vector<v1::GetIdsResponse> answers;
  grpc::Status read = ReadEveryShard<v1::GetIdsRequest>(
      cluster, context, record, next_replica_.fetch_add(1, std::memory_order_relaxed),
      [&](uint32_t, v1::GetIdsRequest* r) { *r = *request; },
      [](auto* async, auto* c, auto* req, auto* resp, auto done) {
        async->GetIds(c, req, resp, std::move(done));
      },
      &answers);
  if (!read.ok()) return read;
  std::vector<std::vector<uint64_t>> lists;
  std::vector<bool> more;
  uint64_t total = 0;
  for (const v1::GetIdsResponse& answer : answers) {
    lists.emplace_back(answer.ids().begin(), answer.ids().end());
    more.push_back(answer.has_next_start_after());
    total += answer.ids_size();
  }
  const uint32_t limit = request->has_limit()
                             ? request->limit()
                             : static_cast<uint32_t>(std::min<uint64_t>(total, UINT32_MAX));
  bool more_left = false;
  std::vector<uint64_t> ids = cluster::MergeIds(lists, more, limit, &more_left);
  response->mutable_ids()->Assign(ids.begin(), ids.end());
  if (more_left && !ids.empty()) response->set_next_start_after(ids.back());
  return grpc::Status::OK;
}

grpc::Status ClusterService::GetElements(grpc::ServerContext* context,
                                         const v1::GetElementsRequest* request,
                                         v1::GetElementsResponse* response) {
  LUXDB_FORWARDED(GetElements);
  LUXDB_FIND(record, request->name());
  const uint32_t shards = record.shards_size();
  std::vector<v1::GetElementsRequest> parts(shards);
  std::vector<std::vector<int>> positions(shards);  // where each shard's answers go
  for (int i = 0; i < request->ids_size(); ++i) {
    const uint32_t s = cluster::ShardOf(request->ids(i), shards);
    parts[s].add_ids(request->ids(i));
    positions[s].push_back(i);
  }
  std::vector<v1::GetElementsResponse> answers;
  grpc::Status read = ReadEveryShard<v1::GetElementsRequest>(
      cluster, context, record, next_replica_.fetch_add(1, std::memory_order_relaxed),
      [&](uint32_t s, v1::GetElementsRequest* r) {
        *r = parts[s];
        r->set_with_attributes(request->with_attributes());
      },
      [](auto* async, auto* c, auto* req, auto* resp, auto done) {
        async->GetElements(c, req, resp, std::move(done));
      },
      &answers);
  if (!read.ok()) return read;
  const uint64_t dim = record.dim();
  response->set_dim(static_cast<uint32_t>(dim));
  response->mutable_vectors()->Resize(static_cast<int>(request->ids_size() * dim), 0.0f);
  if (request->with_attributes()) {
    for (int i = 0; i < request->ids_size(); ++i) response->add_attributes();
  }
  for (uint32_t s = 0; s < shards; ++s) {
    const v1::GetElementsResponse& part = answers[s];
    for (size_t j = 0; j < positions[s].size(); ++j) {
      std::copy_n(part.vectors().begin() + j * dim, dim,
                  response->mutable_vectors()->begin() + positions[s][j] * dim);
      if (request->with_attributes() && static_cast<int>(j) < part.attributes_size()) {
        *response->mutable_attributes(positions[s][j]) = part.attributes(static_cast<int>(j));
      }
    }
  }
  return grpc::Status::OK;
}

grpc::Status ClusterService::Backup(grpc::ServerContext* context, const v1::BackupRequest* request,
                                    v1::BackupResponse* response) {
  LUXDB_FORWARDED(Backup);
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      "Backup is not supported in cluster mode yet: back up each node's data "
                      "directory (README \"Backup and restore\")");
}

grpc::Status ClusterService::CompactIndex(grpc::ServerContext* context,
                                          const v1::CompactIndexRequest* request,
                                          v1::CompactIndexResponse* response) {
  LUXDB_FORWARDED(CompactIndex);
  LUXDB_FIND(record, request->name());
  auto calls = EveryReplica<v1::CompactIndexRequest, v1::CompactIndexResponse>(
      record, [](uint32_t, v1::CompactIndexRequest*) {});
  RunAll(cluster, context, &calls, [](auto* async, auto* c, auto* req, auto* resp, auto done) {
    async->CompactIndex(c, req, resp, std::move(done));
  });
  if (grpc::Status failed = FirstFailure(calls, record.name()); !failed.ok()) return failed;
  std::vector<bool> counted(record.shards_size(), false);
  for (const auto& call : calls) {
    if (counted[call.shard]) continue;  // one replica's figures per shard
    counted[call.shard] = true;
    response->set_tombstones_removed(response->tombstones_removed() +
                                     call.response.tombstones_removed());
    response->set_live(response->live() + call.response.live());
    response->set_seconds(std::max(response->seconds(), call.response.seconds()));
  }
  return grpc::Status::OK;
}

}  // namespace luxdb::server
