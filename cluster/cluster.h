// Cluster: a node's membership of a LuxDB cluster (README "Cluster mode"). etcd holds who is a
// member (/luxdb/nodes/<id>, on the node's lease), where each index's shards live
// (/luxdb/indexes/<name>) and which node leads each shard (/luxdb/leaders/<name>/<shard>, on
// the leader's lease); this class registers the node, keeps a cache of the three prefixes
// current with one watch, campaigns for the leadership of the shards it holds in sync, and
// keeps one signed channel per peer.
//
// Lock order: mu_, then the lease keeper's own (lost() and valid_until() are called with mu_
// held); nothing else is called with mu_ held. The watch's callback and the keeper's on_lost
// take mu_ holding no lock of ours.
// Threads: the watch's (Apply), the lease keeper's (on_lost), and maintainer_, which starts a
// new watch from a fresh read when etcd says the old one's revision was compacted away,
// registers the node again under a new lease when the old one was lost, and campaigns.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/etcd_client.h"
#include "engine/mutex.h"
#include "luxdb/cluster/v1/cluster.pb.h"
#include "luxdb/connect_options.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

namespace luxdb::cluster {

struct ClusterOptions {
  std::vector<std::string> etcd_endpoints;  // --cluster-etcd
  std::string node_id;                      // --node-id
  std::string advertise;                    // --advertise, host:port
  // How this node reaches its peers: the cluster's shared secret (or insecure), KDF, limits.
  // host and port are filled per peer.
  client::ConnectOptions peer;
  // The node's lease: a node that stops renewing it leaves the cluster this long after.
  std::chrono::seconds lease_ttl{5};
  // --write-quorum: replicas of a shard that must hold a write before it is acknowledged.
  uint32_t write_quorum = 1;
};

// The etcd keys (README "Cluster mode").
inline constexpr char kNodesPrefix[] = "/luxdb/nodes/";
inline constexpr char kIndexesPrefix[] = "/luxdb/indexes/";
inline constexpr char kLeadersPrefix[] = "/luxdb/leaders/";

// A shard's leader, as the cache last saw it.
struct Leader {
  std::string node;
  int64_t epoch = 0;  // the leader key's create revision: a later leader has a higher one
};

class Cluster {
 public:
  // Connects to etcd, registers the node under its lease (ALREADY_EXISTS if a live node
  // has the id), reads both prefixes and starts watching them.
  static absl::StatusOr<std::unique_ptr<Cluster>> Join(ClusterOptions options);
  // Leaves: revokes the lease, so the node's record goes at once.
  ~Cluster();

  // Lets this node lead shards (campaign), once its data directory is open: first it takes
  // itself out of the in-sync set of every shard it is counted in sync for but does not hold
  // (`holds_shard(local name)` false: its data directory was lost or replaced), so that it
  // leads and serves only what it holds. Until then it leads nothing.
  void StartLeading(const std::function<bool(const std::string& local_name)>& holds_shard);

  const std::string& node_id() const { return options_.node_id; }
  uint32_t write_quorum() const { return options_.write_quorum; }

  // The live nodes, by id.
  std::map<std::string, v1::NodeRecord> Nodes() const;
  // Whether `node_id` is a live member (in the cache).
  bool IsMember(const std::string& node_id) const;
  // A cluster index's record: from the cache, else (a call that arrives right after its
  // creation elsewhere, before the watch told this node) from etcd. nullopt if none.
  absl::StatusOr<std::optional<v1::IndexRecord>> FindIndex(const std::string& name);
  // Every cluster index, read from etcd.
  absl::StatusOr<std::vector<v1::IndexRecord>> ListIndexes();
  // Stores a new index's record; false if the name is taken.
  absl::StatusOr<bool> CreateIndexRecord(const v1::IndexRecord& record);
  absl::Status DeleteIndexRecord(const std::string& name);
  // Takes `failed` out of shard `shard`'s in-sync replicas of index `name` (a guarded write,
  // retried against concurrent changes of the record), unless that would leave none: then
  // FAILED_PRECONDITION, and nothing changes. OK when none of them is in the set any more.
  // Only the shard's leader of epoch `epoch` may: ABORTED if its leader key is gone or newer.
  // The updated record in `*record`.
  absl::Status LeaveInSync(const std::string& name, uint32_t shard, int64_t epoch,
                           const std::vector<std::string>& failed, v1::IndexRecord* record);

  // Puts `node` back into shard `shard`'s in-sync replicas of index `name` (it is one of the
  // shard's nodes and holds every write the shard's leader acknowledged): fenced like
  // LeaveInSync. OK if it is there already.
  absl::Status JoinInSync(const std::string& name, uint32_t shard, int64_t epoch,
                          const std::string& node);

  // Every cluster index in the cache, by name.
  std::map<std::string, v1::IndexRecord> Indexes() const;
  // The leader of shard `shard` of `name` in the cache; nullopt if it has none (yet).
  std::optional<Leader> LeaderOf(const std::string& name, uint32_t shard) const;
  // Waits until the cache's leader of the shard differs from `seen` (nullopt: none) or
  // `deadline` passes; the leader then.
  std::optional<Leader> AwaitLeaderChange(const std::string& name, uint32_t shard,
                                          const std::optional<Leader>& seen,
                                          std::chrono::steady_clock::time_point deadline) const;
  // Whether this node's lease surely still exists for `margin` more: a leader acknowledges
  // nothing otherwise (another node may lead by then).
  bool LeaseHeld(std::chrono::steady_clock::duration margin) const;

  // A stub on a signed channel to `node_id` (channels are kept per address). UNAVAILABLE
  // naming the node if it is not a live member.
  absl::StatusOr<std::shared_ptr<luxdb::v1::LuxDB::Stub>> Peer(const std::string& node_id);

 private:
  explicit Cluster(ClusterOptions options) : options_(std::move(options)) {}
  void Apply(const std::vector<WatchEvent>& events);
  // Reads /luxdb/ into the caches and (re)starts the watch after what it read. Only Join and
  // maintainer_ call it.
  void Reload();
  void Maintain();
  // Grants a lease, registers /luxdb/nodes/<id> on it and starts its keeper. ALREADY_EXISTS
  // if a live node holds the id. Join and maintainer_ only.
  absl::Status Register();
  // Caches index `name`'s record (nullopt: deleted) as of etcd revision `revision`, unless the
  // cache holds a later one.
  void CacheIndex(const std::string& name, std::optional<v1::IndexRecord> record, int64_t revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tries to lead every shard this node holds in sync that has no leader. maintainer_ only.
  void Campaign();
  // Rewrites shard `shard`'s in-sync set of index `name` to `edit(in_sync)` (nullopt: leave it
  // as it is), guarded against concurrent changes and fenced by the leader key of `epoch` (0:
  // not fenced; only for a node taking itself out).
  // `what` describes the change for the log.
  absl::Status EditInSync(
      const std::string& name, uint32_t shard, int64_t epoch,
      const std::function<
          absl::StatusOr<std::optional<std::vector<std::string>>>(const v1::ShardRecord&)>& edit,
      const std::string& what, v1::IndexRecord* record);

  const ClusterOptions options_;
  std::unique_ptr<EtcdClient> etcd_;
  // Guards the caches, channels, lease and flags below; held only to read or update them.
  mutable engine::Mutex mu_;
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  // Replaced only by maintainer_ (and Join), after the old one reported the lease lost.
  std::shared_ptr<EtcdClient::LeaseKeeper> keeper_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::NodeRecord> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::IndexRecord> indexes_ ABSL_GUARDED_BY(mu_);
  // The etcd revision of each index's cached record (of its deletion, once deleted): an
  // update from a write of this node's own never replaces a newer one the watch delivered.
  std::map<std::string, int64_t> index_revisions_ ABSL_GUARDED_BY(mu_);
  // By "<name>/<shard>".
  std::map<std::string, Leader> leaders_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<luxdb::v1::LuxDB::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  bool reload_ ABSL_GUARDED_BY(mu_) = false;      // the watch was reset: Reload
  bool lease_lost_ ABSL_GUARDED_BY(mu_) = false;  // the keeper lost the lease: Register
  bool campaign_ ABSL_GUARDED_BY(mu_) = false;    // the caches changed: Campaign
  bool may_lead_ ABSL_GUARDED_BY(mu_) = false;    // StartLeading ran
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;    // the destructor runs
  engine::CondVar changed_;                  // reload_, lease_lost_, campaign_ or stopping_ set
  mutable engine::CondVar leaders_changed_;  // leaders_ changed (AwaitLeaderChange)
  std::thread maintainer_;
  // Last: destroyed (its thread joined) first, before what its callback touches.
  std::unique_ptr<EtcdClient::Watcher> watcher_;
};

}  // namespace luxdb::cluster
