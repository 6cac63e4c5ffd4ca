// Cluster: a node's membership of a LuxDB cluster (README "Cluster mode"). etcd holds who is a
// member (/luxdb/nodes/<id>, on the node's lease) and where each index's shards live
// (/luxdb/indexes/<name>); this class registers the node, keeps a cache of both prefixes
// current with one watch, and keeps one signed channel per peer.
//
// Lock order: mu_ only (the watch's callback takes it; nothing is called with it held).
// Threads: the watch's (Apply), and maintainer_, which starts a new watch from a fresh read
// when etcd says the old one's revision was compacted away.
#pragma once

#include <chrono>
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
};

// The etcd keys (README "Cluster mode").
inline constexpr char kNodesPrefix[] = "/luxdb/nodes/";
inline constexpr char kIndexesPrefix[] = "/luxdb/indexes/";

class Cluster {
 public:
  // Connects to etcd, registers the node under its lease (ALREADY_EXISTS if a live node
  // has the id), reads both prefixes and starts watching them.
  static absl::StatusOr<std::unique_ptr<Cluster>> Join(ClusterOptions options);
  // Leaves: revokes the lease, so the node's record goes at once.
  ~Cluster();

  const std::string& node_id() const { return options_.node_id; }

  // The live nodes, by id.
  std::map<std::string, v1::NodeRecord> Nodes() const;
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
  // The updated record in `*record`.
  absl::Status LeaveInSync(const std::string& name, uint32_t shard,
                           const std::vector<std::string>& failed, v1::IndexRecord* record);

  // A stub on a signed channel to `node_id` (channels are kept per address). UNAVAILABLE
  // naming the node if it is not a live member.
  absl::StatusOr<std::shared_ptr<luxdb::v1::LuxDB::Stub>> Peer(const std::string& node_id);

 private:
  explicit Cluster(ClusterOptions options) : options_(std::move(options)) {}
  void Apply(const std::vector<WatchEvent>& events);
  // Reads both prefixes into the caches and (re)starts the watch after what it read. Only
  // Join and maintainer_ call it.
  void Reload();
  void Maintain();

  const ClusterOptions options_;
  std::unique_ptr<EtcdClient> etcd_;
  int64_t lease_ = 0;
  std::unique_ptr<EtcdClient::LeaseKeeper> keeper_;
  // Guards the caches and channels below; held only to read or update them.
  mutable engine::Mutex mu_;
  std::map<std::string, v1::NodeRecord> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::IndexRecord> indexes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<luxdb::v1::LuxDB::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  bool reload_ ABSL_GUARDED_BY(mu_) = false;    // the watch was reset: Reload
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // the destructor runs
  engine::CondVar changed_;                     // reload_ or stopping_ set
  std::thread maintainer_;
  // Last: destroyed (its thread joined) first, before what its callback touches.
  std::unique_ptr<EtcdClient::Watcher> watcher_;
};

}  // namespace luxdb::cluster
