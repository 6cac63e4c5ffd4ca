#include "cluster/cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "luxdb/connect.h"
#include "spdlog/spdlog.h"

namespace luxdb::cluster {
namespace {

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  // Cannot fail for our own messages (no Any, no maps with odd keys).
  (void)google::protobuf::util::MessageToJsonString(message, &json);
  return json;
}

template <typename Message>
std::optional<Message> FromJson(const std::string& key, const std::string& json) {
  Message message;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // a newer node may add fields
  if (!google::protobuf::util::JsonStringToMessage(json, &message, options).ok()) {
    spdlog::error("cluster: etcd key '{}' does not hold a {} (ignored): {}", key,
                  Message::descriptor()->name(), json.substr(0, 200));
    return std::nullopt;
  }
  return message;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Join(ClusterOptions options) {
  std::unique_ptr<Cluster> cluster(new Cluster(std::move(options)));
  const ClusterOptions& o = cluster->options_;
  absl::StatusOr<std::unique_ptr<EtcdClient>> etcd =
      EtcdClient::Connect({.endpoints = o.etcd_endpoints});
  if (!etcd.ok()) return etcd.status();
  cluster->etcd_ = *std::move(etcd);
  absl::StatusOr<int64_t> lease = cluster->etcd_->GrantLease(o.lease_ttl);
  if (!lease.ok()) return lease.status();
  cluster->lease_ = *lease;
  v1::NodeRecord self;
  self.set_node_id(o.node_id);
  self.set_address(o.advertise);
  absl::StatusOr<bool> created =
      cluster->etcd_->Create(absl::StrCat(kNodesPrefix, o.node_id), ToJson(self), *lease);
  if (!created.ok()) return created.status();
  if (!*created) {
    (void)cluster->etcd_->RevokeLease(*lease);
    return absl::AlreadyExistsError(
        absl::StrCat("--node-id '", o.node_id,
                     "' is taken by a live node of the cluster; give every node its own"));
  }
  cluster->keeper_ = cluster->etcd_->KeepAlive(*lease, o.lease_ttl, [id = o.node_id] {
    // The cluster now counts this node as gone; its shards are served by their other replicas.
    spdlog::critical("cluster: node '{}' lost its etcd lease; it no longer counts as a member", id);
  });
  cluster->Reload();
  cluster->maintainer_ = std::thread([c = cluster.get()] { c->Maintain(); });
  spdlog::info("cluster: node '{}' joined at {} (etcd {})", o.node_id, o.advertise,
               absl::StrJoin(o.etcd_endpoints, ","));
  return cluster;
}

void Cluster::Reload() {
  int64_t revision = 0;
  absl::StatusOr<std::vector<KeyValue>> all = etcd_->GetPrefix("/luxdb/", &revision);
  if (!all.ok()) {
    spdlog::error("cluster: cannot read /luxdb/ from etcd: {}", all.status().ToString());
    return;
  }
  {
    engine::MutexLock lock(&mu_);
    nodes_.clear();
    indexes_.clear();
  }
  std::vector<WatchEvent> events;
  for (KeyValue& kv : *all) events.push_back({.type = WatchEvent::Type::kPut, .kv = std::move(kv)});
  Apply(events);
  watcher_.reset();
  watcher_ = etcd_->WatchPrefix(
      "/luxdb/", revision + 1, [this](const std::vector<WatchEvent>& e) { Apply(e); },
      [this] {
        engine::MutexLock lock(&mu_);
        reload_ = true;
        changed_.SignalAll();
      });
}

void Cluster::Maintain() {
  while (true) {
    {
      engine::MutexLock lock(&mu_);
      while (!stopping_ && !reload_) changed_.Wait(&mu_);
      if (stopping_) return;
      reload_ = false;
    }
    spdlog::warn("cluster: etcd compacted the watched history; reading /luxdb/ afresh");
    Reload();
  }
}

void Cluster::Apply(const std::vector<WatchEvent>& events) {
  engine::MutexLock lock(&mu_);
  for (const WatchEvent& event : events) {
    const std::string& key = event.kv.key;
    const bool put = event.type == WatchEvent::Type::kPut;
    if (absl::StartsWith(key, kNodesPrefix)) {
      const std::string id = key.substr(sizeof(kNodesPrefix) - 1);
      if (!put) {
        nodes_.erase(id);
        continue;
      }
      if (std::optional<v1::NodeRecord> node = FromJson<v1::NodeRecord>(key, event.kv.value)) {
        nodes_[id] = *std::move(node);
      }
    } else if (absl::StartsWith(key, kIndexesPrefix)) {
      const std::string name = key.substr(sizeof(kIndexesPrefix) - 1);
      if (!put) {
        indexes_.erase(name);
        continue;
      }
      if (std::optional<v1::IndexRecord> index = FromJson<v1::IndexRecord>(key, event.kv.value)) {
        indexes_[name] = *std::move(index);
      }
    }
  }
}

Cluster::~Cluster() {
  if (maintainer_.joinable()) {
    {
      engine::MutexLock lock(&mu_);
      stopping_ = true;
      changed_.SignalAll();
    }
    maintainer_.join();
  }
  watcher_.reset();
  keeper_.reset();
  if (etcd_ != nullptr && lease_ != 0) {
    if (absl::Status revoked = etcd_->RevokeLease(lease_); !revoked.ok()) {
      spdlog::warn("cluster: leaving: cannot revoke the node's lease ({}); it expires in {} s",
                   revoked.ToString(), options_.lease_ttl.count());
    }
  }
}

std::map<std::string, v1::NodeRecord> Cluster::Nodes() const {
  engine::MutexLock lock(&mu_);
  return nodes_;
}

absl::StatusOr<std::optional<v1::IndexRecord>> Cluster::FindIndex(const std::string& name) {
  {
    engine::MutexLock lock(&mu_);
    if (auto it = indexes_.find(name); it != indexes_.end()) return it->second;
  }
  const std::string key = absl::StrCat(kIndexesPrefix, name);
  absl::StatusOr<std::optional<KeyValue>> kv = etcd_->Get(key);
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return std::nullopt;
  return FromJson<v1::IndexRecord>(key, (*kv)->value);
}

absl::StatusOr<std::vector<v1::IndexRecord>> Cluster::ListIndexes() {
  absl::StatusOr<std::vector<KeyValue>> all = etcd_->GetPrefix(kIndexesPrefix);
  if (!all.ok()) return all.status();
  std::vector<v1::IndexRecord> records;
  for (const KeyValue& kv : *all) {
    if (std::optional<v1::IndexRecord> r = FromJson<v1::IndexRecord>(kv.key, kv.value)) {
      records.push_back(*std::move(r));
    }
  }
  return records;
}

absl::StatusOr<bool> Cluster::CreateIndexRecord(const v1::IndexRecord& record) {
  absl::StatusOr<bool> created =
      etcd_->Create(absl::StrCat(kIndexesPrefix, record.name()), ToJson(record));
  if (created.ok() && *created) {
    engine::MutexLock lock(&mu_);
    indexes_[record.name()] = record;
  }
  return created;
}

absl::Status Cluster::DeleteIndexRecord(const std::string& name) {
  absl::Status deleted = etcd_->Delete(absl::StrCat(kIndexesPrefix, name));
  if (deleted.ok()) {
    engine::MutexLock lock(&mu_);
    indexes_.erase(name);
  }
  return deleted;
}

absl::Status Cluster::LeaveInSync(const std::string& name, uint32_t shard,
                                  const std::vector<std::string>& failed, v1::IndexRecord* record) {
  const std::string key = absl::StrCat(kIndexesPrefix, name);
  constexpr int kAttempts = 20;  // each lost race means another change went in first
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<std::optional<KeyValue>> kv = etcd_->Get(key);
    if (!kv.ok()) return kv.status();
    if (!kv->has_value()) {
      return absl::NotFoundError(absl::StrCat("index '", name, "' does not exist"));
    }
    std::optional<v1::IndexRecord> current = FromJson<v1::IndexRecord>(key, (*kv)->value);
    if (!current.has_value() || static_cast<int>(shard) >= current->shards_size()) {
      return absl::InternalError(absl::StrCat("etcd key '", key, "' is not a shard map"));
    }
    v1::ShardRecord* s = current->mutable_shards(static_cast<int>(shard));
    std::vector<std::string> keep;
    for (const std::string& node : s->in_sync()) {
      if (std::find(failed.begin(), failed.end(), node) == failed.end()) keep.push_back(node);
    }
    if (keep.size() == static_cast<size_t>(s->in_sync_size())) {
      *record = *std::move(current);
      return absl::OkStatus();
    }
    if (keep.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard ", shard, " of '", name, "' has no replica left that holds every write"));
    }
    s->clear_in_sync();
    for (const std::string& node : keep) s->add_in_sync(node);
    absl::StatusOr<bool> written = etcd_->CompareAndPut(key, (*kv)->mod_revision, ToJson(*current));
    if (!written.ok()) return written.status();
    if (*written) {
      spdlog::warn(
          "cluster: shard {} of '{}': {} left the in-sync replicas (a write to it "
          "failed); in sync now: {}",
          shard, name, absl::StrJoin(failed, ","), absl::StrJoin(keep, ","));
      {
        engine::MutexLock lock(&mu_);
        indexes_[name] = *current;
      }
      *record = *std::move(current);
      return absl::OkStatus();
    }
  }
  return absl::AbortedError(absl::StrCat("shard map of '", name, "' kept changing; retry"));
}

absl::StatusOr<std::shared_ptr<luxdb::v1::LuxDB::Stub>> Cluster::Peer(const std::string& node_id) {
  std::string address;
  {
    engine::MutexLock lock(&mu_);
    auto node = nodes_.find(node_id);
    if (node == nodes_.end()) {
      return absl::UnavailableError(
          absl::StrCat("node '", node_id, "' is not a live member of the cluster"));
    }
    address = node->second.address();
    if (auto it = stubs_.find(address); it != stubs_.end()) return it->second;
  }
  absl::StatusOr<std::pair<std::string, int>> parsed =
      client::ParseAddress(address, absl::StrCat("node '", node_id, "' address"));
  if (!parsed.ok()) return parsed.status();
  client::ConnectOptions connect = options_.peer;
  connect.host = parsed->first;
  connect.port = parsed->second;
  // Derives the key (PBKDF2) outside the lock: once per peer address.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(connect);
  if (!channel.ok()) return channel.status();
  auto stub = std::shared_ptr<luxdb::v1::LuxDB::Stub>(luxdb::v1::LuxDB::NewStub(*channel));
  engine::MutexLock lock(&mu_);
  return stubs_.try_emplace(address, std::move(stub)).first->second;
}

}  // namespace luxdb::cluster
