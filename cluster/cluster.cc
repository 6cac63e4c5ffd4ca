#include "cluster/cluster.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cluster/shard_map.h"
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
  if (absl::Status registered = cluster->Register(); !registered.ok()) return registered;
  cluster->Reload();
  cluster->maintainer_ = std::thread([c = cluster.get()] { c->Maintain(); });
  spdlog::info("cluster: node '{}' joined at {} (etcd {})", o.node_id, o.advertise,
               absl::StrJoin(o.etcd_endpoints, ","));
  return cluster;
}

absl::Status Cluster::Register() {
  const ClusterOptions& o = options_;
  absl::StatusOr<int64_t> lease = etcd_->GrantLease(o.lease_ttl);
  if (!lease.ok()) return lease.status();
  v1::NodeRecord self;
  self.set_node_id(o.node_id);
  self.set_address(o.advertise);
  absl::StatusOr<bool> created =
      etcd_->Create(absl::StrCat(kNodesPrefix, o.node_id), ToJson(self), *lease);
  if (!created.ok() || !*created) {
    (void)etcd_->RevokeLease(*lease);
    if (!created.ok()) return created.status();
    return absl::AlreadyExistsError(
        absl::StrCat("--node-id '", o.node_id,
                     "' is taken by a live node of the cluster; give every node its own"));
  }
  std::shared_ptr<EtcdClient::LeaseKeeper> keeper =
      etcd_->KeepAlive(*lease, o.lease_ttl, [this, id = o.node_id] {
        // The cluster now counts this node as gone: its shards are led and served by their
        // other replicas, and it leads nothing (LeaseHeld). maintainer_ registers it again.
        spdlog::critical(
            "cluster: node '{}' lost its etcd lease; it no longer counts as a member and "
            "leads no shard until it registers again",
            id);
        engine::MutexLock lock(&mu_);
        lease_lost_ = true;
        changed_.SignalAll();
      });
  engine::MutexLock lock(&mu_);
  lease_ = *lease;
  keeper_ = std::move(keeper);
  return absl::OkStatus();
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
    index_revisions_.clear();
    leaders_.clear();
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
  // Campaigns also run every second without a change: a campaign etcd could not answer is
  // tried again.
  constexpr auto kCampaignRetry = std::chrono::seconds(1);
  while (true) {
    bool reload = false;
    bool reregister = false;
    std::shared_ptr<EtcdClient::LeaseKeeper> lost_keeper;
    {
      engine::MutexLock lock(&mu_);
      const auto until = std::chrono::steady_clock::now() + kCampaignRetry;
      while (!stopping_ && !reload_ && !lease_lost_ && !campaign_) {
        if (!changed_.WaitUntil(&mu_, until)) break;
      }
      if (stopping_) return;
      reload = std::exchange(reload_, false);
      reregister = std::exchange(lease_lost_, false);
      campaign_ = false;
      if (reregister) lost_keeper = std::move(keeper_);
    }
    if (reload) {
      spdlog::warn("cluster: etcd compacted the watched history; reading /luxdb/ afresh");
      Reload();
    }
    if (reregister) {
      lost_keeper.reset();  // its thread has ended (on_lost was its last act)
      // The old lease's keys (node record, leader keys) are gone or going: etcd expired it.
      if (absl::Status registered = Register(); registered.ok()) {
        spdlog::warn("cluster: node '{}' registered again under a new lease", options_.node_id);
      } else {
        spdlog::error("cluster: node '{}' cannot register again yet: {}", options_.node_id,
                      registered.ToString());
        engine::MutexLock lock(&mu_);
        lease_lost_ = true;  // tried again after kCampaignRetry
      }
    }
    Campaign();
  }
}

namespace {

std::string LeaderKey(const std::string& name, uint32_t shard) {
  return absl::StrCat(kLeadersPrefix, name, "/", shard);
}

// The replicas of `shard` that hold every acknowledged write (ShardRecord::in_sync; a record
// without the field counts every replica).
const google::protobuf::RepeatedPtrField<std::string>& InSyncOf(const v1::ShardRecord& shard) {
  return shard.in_sync_size() > 0 ? shard.in_sync() : shard.nodes();
}

bool Holds(const google::protobuf::RepeatedPtrField<std::string>& nodes, const std::string& id) {
  return std::find(nodes.begin(), nodes.end(), id) != nodes.end();
}

}  // namespace

void Cluster::StartLeading(const std::function<bool(const std::string&)>& holds_shard) {
  const std::string& self = options_.node_id;
  for (const auto& [name, record] : Indexes()) {
    for (int s = 0; s < record.shards_size(); ++s) {
      if (!Holds(InSyncOf(record.shards(s)), self) ||
          holds_shard(ShardIndexName(name, static_cast<uint32_t>(s)))) {
        continue;
      }
      v1::IndexRecord updated;
      const absl::Status left = EditInSync(
          name, static_cast<uint32_t>(s), /*epoch=*/0,
          [&](const v1::ShardRecord& shard)
              -> absl::StatusOr<std::optional<std::vector<std::string>>> {
            std::vector<std::string> keep;
            for (const std::string& node : shard.in_sync()) {
              if (node != self) keep.push_back(node);
            }
            if (keep.size() == static_cast<size_t>(shard.in_sync_size())) return std::nullopt;
            if (keep.empty()) {
              return absl::DataLossError(absl::StrCat(
                  "this node was its only replica in sync, and its data directory does not "
                  "hold it: the shard's acknowledged writes are lost"));
            }
            return keep;
          },
          absl::StrCat(self,
                       " left the in-sync replicas (its data directory does not hold the "
                       "shard; it will be caught up)"),
          &updated);
      if (!left.ok()) {
        spdlog::error("cluster: shard {} of '{}': {}", s, name, left.ToString());
      }
    }
  }
  engine::MutexLock lock(&mu_);
  may_lead_ = true;
  campaign_ = true;
  changed_.SignalAll();
}

void Cluster::Campaign() {
  // The shards this node could lead: it holds them in sync, and the cache knows no leader.
  std::vector<std::pair<std::string, uint32_t>> candidates;
  int64_t lease = 0;
  {
    engine::MutexLock lock(&mu_);
    if (!may_lead_ || lease_lost_ || keeper_ == nullptr || keeper_->lost()) return;
    lease = lease_;
    for (const auto& [name, record] : indexes_) {
      for (int s = 0; s < record.shards_size(); ++s) {
        if (Holds(InSyncOf(record.shards(s)), options_.node_id) &&
            !leaders_.contains(absl::StrCat(name, "/", s))) {
          candidates.emplace_back(name, static_cast<uint32_t>(s));
        }
      }
    }
  }
  for (const auto& [name, shard] : candidates) {
    // Leads only if the shard map read now (not the cache, which may lag) holds it in sync:
    // the leader key is created in one transaction with a check that the map is unchanged.
    const std::string index_key = absl::StrCat(kIndexesPrefix, name);
    absl::StatusOr<std::optional<KeyValue>> kv = etcd_->Get(index_key);
    if (!kv.ok() || !kv->has_value()) continue;
    std::optional<v1::IndexRecord> record = FromJson<v1::IndexRecord>(index_key, (*kv)->value);
    if (!record.has_value() || static_cast<int>(shard) >= record->shards_size() ||
        !Holds(InSyncOf(record->shards(static_cast<int>(shard))), options_.node_id)) {
      continue;
    }
    v1::LeaderRecord leader;
    leader.set_node_id(options_.node_id);
    absl::StatusOr<bool> won = etcd_->CompareAndPutAll({
        {.key = index_key, .expected_mod_revision = (*kv)->mod_revision, .check_only = true},
        {.key = LeaderKey(name, shard),
         .value = ToJson(leader),
         .expected_mod_revision = 0,
         .lease = lease},
    });
    if (won.ok() && *won) {
      spdlog::info("cluster: node '{}' leads shard {} of '{}'", options_.node_id, shard, name);
    } else if (!won.ok()) {
      spdlog::warn("cluster: campaign for shard {} of '{}': {}", shard, name,
                   won.status().ToString());
    }
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
        CacheIndex(name, std::nullopt, event.kv.mod_revision);
        continue;
      }
      if (std::optional<v1::IndexRecord> index = FromJson<v1::IndexRecord>(key, event.kv.value)) {
        CacheIndex(name, *std::move(index), event.kv.mod_revision);
      }
    } else if (absl::StartsWith(key, kLeadersPrefix)) {
      const std::string shard = key.substr(sizeof(kLeadersPrefix) - 1);  // "<name>/<s>"
      leaders_changed_.SignalAll();
      if (!put) {
        leaders_.erase(shard);
        continue;
      }
      if (std::optional<v1::LeaderRecord> leader =
              FromJson<v1::LeaderRecord>(key, event.kv.value)) {
        leaders_[shard] = Leader{.node = leader->node_id(), .epoch = event.kv.create_revision};
      }
    }
  }
  campaign_ = true;
  changed_.SignalAll();
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
  int64_t lease = 0;
  std::shared_ptr<EtcdClient::LeaseKeeper> keeper;
  {
    engine::MutexLock lock(&mu_);
    lease = lease_;
    keeper = std::move(keeper_);
  }
  keeper.reset();  // joins its thread, whose on_lost takes mu_
  if (etcd_ != nullptr && lease != 0) {
    if (absl::Status revoked = etcd_->RevokeLease(lease); !revoked.ok()) {
      spdlog::warn("cluster: leaving: cannot revoke the node's lease ({}); it expires in {} s",
                   revoked.ToString(), options_.lease_ttl.count());
    }
  }
}

bool Cluster::IsMember(const std::string& node_id) const {
  engine::MutexLock lock(&mu_);
  return nodes_.contains(node_id);
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
    // Revision 0: only if the cache knows nothing of the name (not even a deletion).
    engine::MutexLock lock(&mu_);
    CacheIndex(record.name(), record, 0);
  }
  return created;
}

void Cluster::CacheIndex(const std::string& name, std::optional<v1::IndexRecord> record,
                         int64_t revision) {
  int64_t& known = index_revisions_[name];
  if (revision < known) return;
  known = revision;
  if (record.has_value()) {
    indexes_[name] = *std::move(record);
  } else {
    indexes_.erase(name);
  }
}

absl::Status Cluster::DeleteIndexRecord(const std::string& name) {
  absl::Status deleted = etcd_->Delete(absl::StrCat(kIndexesPrefix, name));
  if (deleted.ok()) {
    {
      engine::MutexLock lock(&mu_);
      indexes_.erase(name);
    }
    // No campaign can make a leader key again: it checks the record, which is gone.
    deleted = etcd_->DeletePrefix(absl::StrCat(kLeadersPrefix, name, "/"));
  }
  return deleted;
}

std::optional<Leader> Cluster::LeaderOf(const std::string& name, uint32_t shard) const {
  engine::MutexLock lock(&mu_);
  auto it = leaders_.find(absl::StrCat(name, "/", shard));
  if (it == leaders_.end()) return std::nullopt;
  return it->second;
}

std::optional<Leader> Cluster::AwaitLeaderChange(
    const std::string& name, uint32_t shard, const std::optional<Leader>& seen,
    std::chrono::steady_clock::time_point deadline) const {
  const std::string key = absl::StrCat(name, "/", shard);
  engine::MutexLock lock(&mu_);
  while (true) {
    auto it = leaders_.find(key);
    std::optional<Leader> now;
    if (it != leaders_.end()) now = it->second;
    const bool same =
        now.has_value() == seen.has_value() && (!now.has_value() || now->epoch == seen->epoch);
    if (!same || !leaders_changed_.WaitUntil(&mu_, deadline)) return now;
  }
}

bool Cluster::LeaseHeld(std::chrono::steady_clock::duration margin) const {
  engine::MutexLock lock(&mu_);
  return keeper_ != nullptr && !lease_lost_ &&
         keeper_->valid_until() > std::chrono::steady_clock::now() + margin;
}

absl::Status Cluster::LeaveInSync(const std::string& name, uint32_t shard, int64_t epoch,
                                  const std::vector<std::string>& failed, v1::IndexRecord* record) {
  return EditInSync(
      name, shard, epoch,
      [&](const v1::ShardRecord& s) -> absl::StatusOr<std::optional<std::vector<std::string>>> {
        std::vector<std::string> keep;
        for (const std::string& node : s.in_sync()) {
          if (std::find(failed.begin(), failed.end(), node) == failed.end()) keep.push_back(node);
        }
        if (keep.size() == static_cast<size_t>(s.in_sync_size())) return std::nullopt;
        if (keep.empty()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "shard ", shard, " of '", name, "' has no replica left that holds every write"));
        }
        return keep;
      },
      absl::StrCat(absl::StrJoin(failed, ","), " left the in-sync replicas (a write to it failed)"),
      record);
}

absl::Status Cluster::JoinInSync(const std::string& name, uint32_t shard, int64_t epoch,
                                 const std::string& node) {
  v1::IndexRecord record;
  return EditInSync(
      name, shard, epoch,
      [&](const v1::ShardRecord& s) -> absl::StatusOr<std::optional<std::vector<std::string>>> {
        if (Holds(s.in_sync(), node)) return std::nullopt;
        if (!Holds(s.nodes(), node)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "node '", node, "' holds no replica of shard ", shard, " of '", name, "'"));
        }
        std::vector<std::string> in_sync(s.in_sync().begin(), s.in_sync().end());
        in_sync.push_back(node);
        return in_sync;
      },
      absl::StrCat(node, " is in sync again (caught up)"), &record);
}

absl::Status Cluster::EditInSync(
    const std::string& name, uint32_t shard, int64_t epoch,
    const std::function<
        absl::StatusOr<std::optional<std::vector<std::string>>>(const v1::ShardRecord&)>& edit,
    const std::string& what, v1::IndexRecord* record) {
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
    if (s->in_sync_size() == 0) *s->mutable_in_sync() = s->nodes();  // an old record: all
    absl::StatusOr<std::optional<std::vector<std::string>>> edited = edit(*s);
    if (!edited.ok()) return edited.status();
    if (!edited->has_value()) {
      *record = *std::move(current);
      return absl::OkStatus();
    }
    s->clear_in_sync();
    for (const std::string& node : **edited) s->add_in_sync(node);
    // Fenced: written only while the leader key is still the one of `epoch` (never updated, so
    // its mod revision is its create revision).
    std::vector<EtcdClient::Write> writes = {
        {.key = key, .value = ToJson(*current), .expected_mod_revision = (*kv)->mod_revision}};
    if (epoch != 0) {
      writes.push_back(
          {.key = LeaderKey(name, shard), .expected_mod_revision = epoch, .check_only = true});
    }
    absl::StatusOr<bool> written = etcd_->CompareAndPutAll(writes);
    if (!written.ok()) return written.status();
    if (!*written) {
      if (epoch != 0) {
        absl::StatusOr<std::optional<KeyValue>> leader = etcd_->Get(LeaderKey(name, shard));
        if (!leader.ok()) return leader.status();
        if (!leader->has_value() || (*leader)->mod_revision != epoch) {
          return absl::AbortedError(absl::StrCat(
              "node '", options_.node_id, "' no longer leads shard ", shard, " of '", name, "'"));
        }
      }
      continue;  // the record changed: read it again
    }
    spdlog::warn("cluster: shard {} of '{}': {}; in sync now: {}", shard, name, what,
                 absl::StrJoin(s->in_sync(), ","));
    {
      // This node's next write must see the change (a replica back in sync must get it). The
      // write's revision is past the one read, and nothing else changed the key in between.
      engine::MutexLock lock(&mu_);
      CacheIndex(name, *current, (*kv)->mod_revision + 1);
    }
    *record = *std::move(current);
    return absl::OkStatus();
  }
  return absl::AbortedError(absl::StrCat("shard map of '", name, "' kept changing; retry"));
}

std::map<std::string, v1::IndexRecord> Cluster::Indexes() const {
  engine::MutexLock lock(&mu_);
  return indexes_;
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
