// ClusterService: the LuxDB service of a node in cluster mode (README "Cluster mode"). Any node
// answers any call: it looks the index up in the shard map (cluster::Cluster), sends each
// shard's part of the call to the nodes holding that shard, and merges their answers. The
// nodes answer those forwarded calls from their own catalog (the LuxDBService this class wraps)
// under the shard's local name; a forwarded call is marked by the metadata kRouteHeader.
//
// Item writes (AddItems, DeleteItems, SetAttributes) go, split by shard, to each shard's
// leader, which applies them, sends them to the shard's other in-sync replicas and
// acknowledges when all have applied them; queries go to one in-sync replica of every shard,
// the next one if it fails.
//
// Lock order: a shard's write lock (ShardLocks; held by the shard's leader across one write's
// local apply, replication and shard-map update, and by a replica being caught up across one
// catch-up write), then catch_up_mu_, cluster::Cluster's and LuxDBService's locks.
// ShardLocks::mu_ and catch_up_mu_ are held only to read or update what they guard.
//
// Catch-up (README "Cluster mode"): a shard's leader brings a live replica that is out of sync
// back: it empties the replica's shard, sends it every write from then on ("catch-up"),
// copies its own items to it ("copy"), and puts it back in the in-sync set under the shard's
// write lock once the copy is complete.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "cluster/cluster.h"
#include "engine/mutex.h"
#include "luxdb/v1/luxdb.grpc.pb.h"
#include "server/service.h"

namespace luxdb::server {

// Metadata of a call one node forwards to another; the index name is a shard's local name.
// "local": answer from your own catalog. "lead": you lead this shard: order, apply and
// replicate this write. "follow": apply this write from the shard's leader of epoch
// kEpochHeader (refused if a later leader is known).
inline constexpr char kRouteHeader[] = "luxdb-route";
inline constexpr char kEpochHeader[] = "luxdb-epoch";

// One lock per shard: its leader applies and replicates the shard's writes one at a time, so
// that every replica applies them in the leader's order.
class ShardLocks {
 public:
  // The lock of the shard of local name `shard`; it lives as long as this object.
  engine::Mutex* Get(const std::string& shard);

 private:
  engine::Mutex mu_;  // guards locks_
  std::map<std::string, std::unique_ptr<engine::Mutex>> locks_ ABSL_GUARDED_BY(mu_);
};

class ClusterService final : public luxdb::v1::LuxDB::Service {
 public:
  // `local` must outlive the service's last call.
  explicit ClusterService(LuxDBService* local) : local_(local) {}
  ~ClusterService() override;
  // Until a cluster is attached (the node joins once it listens), calls that need routing
  // answer UNAVAILABLE; forwarded calls are answered. `cluster` must stay until detached
  // (nullptr) after the last call. Attaching starts the catch-up thread; detaching stops it.
  void AttachCluster(cluster::Cluster* cluster);

  grpc::Status CreateIndex(grpc::ServerContext*, const v1::CreateIndexRequest*,
                           v1::CreateIndexResponse*) override;
  grpc::Status InitIndex(grpc::ServerContext*, const v1::InitIndexRequest*,
                         v1::InitIndexResponse*) override;
  grpc::Status DeleteIndex(grpc::ServerContext*, const v1::DeleteIndexRequest*,
                           v1::DeleteIndexResponse*) override;
  grpc::Status IndexExists(grpc::ServerContext*, const v1::IndexExistsRequest*,
                           v1::IndexExistsResponse*) override;
  grpc::Status ListIndexes(grpc::ServerContext*, const v1::ListIndexesRequest*,
                           v1::ListIndexesResponse*) override;
  grpc::Status DescribeIndex(grpc::ServerContext*, const v1::DescribeIndexRequest*,
                             v1::DescribeIndexResponse*) override;
  grpc::Status SetEf(grpc::ServerContext*, const v1::SetEfRequest*, v1::SetEfResponse*) override;
  grpc::Status AddItems(grpc::ServerContext*, const v1::AddItemsRequest*,
                        v1::AddItemsResponse*) override;
  grpc::Status DeleteItems(grpc::ServerContext*, const v1::DeleteItemsRequest*,
                           v1::DeleteItemsResponse*) override;
  grpc::Status SetAttributes(grpc::ServerContext*, const v1::SetAttributesRequest*,
                             v1::SetAttributesResponse*) override;
  grpc::Status QueryIndex(grpc::ServerContext*, const v1::QueryIndexRequest*,
                          v1::QueryIndexResponse*) override;
  grpc::Status QueryStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::QueryIndexResponse, v1::QueryIndexRequest>*) override;
  grpc::Status ResizeIndex(grpc::ServerContext*, const v1::ResizeIndexRequest*,
                           v1::ResizeIndexResponse*) override;
  grpc::Status GetIds(grpc::ServerContext*, const v1::GetIdsRequest*, v1::GetIdsResponse*) override;
  grpc::Status GetElements(grpc::ServerContext*, const v1::GetElementsRequest*,
                           v1::GetElementsResponse*) override;
  grpc::Status Backup(grpc::ServerContext*, const v1::BackupRequest*, v1::BackupResponse*) override;
  grpc::Status CompactIndex(grpc::ServerContext*, const v1::CompactIndexRequest*,
                            v1::CompactIndexResponse*) override;

 private:
  grpc::Status Query(grpc::ServerContext* context, const v1::QueryIndexRequest& request,
                     v1::QueryIndexResponse* response);
  grpc::Status Describe(grpc::ServerContext* context, const cluster::v1::IndexRecord& record,
                        v1::IndexInfo* info);

  // A forwarded item write (route "lead" or "follow"; see kRouteHeader): `apply()` applies it
  // to the local shard, `start` sends it to a peer (RunAll).
  template <typename Request, typename Response, typename Apply, typename Start>
  grpc::Status ShardWrite(grpc::ServerContext* context, const Request& request, Apply apply,
                          Start start);
  // The leader's part of catch-up during a write: sends the write's outcome to the replicas
  // of the shard being caught up (kCatchingUp); a replica that misses it stops catching up.
  template <typename Request>
  void ForwardToCatchingUp(grpc::ServerContext* context, cluster::Cluster* cluster,
                           const Request& request, uint32_t shard, int64_t epoch);
  // The replica's part: a write of route "catch-up" (from the leader, during the copy) or
  // "copy" (an item of the copy, applied unless a "catch-up" write touched its id).
  grpc::Status CatchUpAdd(grpc::ServerContext* context, const v1::AddItemsRequest& request,
                          v1::AddItemsResponse* response, bool copy);
  grpc::Status CatchUpDelete(grpc::ServerContext* context, const v1::DeleteItemsRequest& request,
                             v1::DeleteItemsResponse* response);
  // Every second: catches up, one at a time, the live replicas out of sync of the shards this
  // node leads.
  void CatchUpLoop();
  absl::Status CatchUp(cluster::Cluster* cluster, const cluster::v1::IndexRecord& record,
                       uint32_t shard, const std::string& node, int64_t epoch);
  bool Stopping();

  LuxDBService* const local_;
  std::atomic<cluster::Cluster*> cluster_{nullptr};
  ShardLocks shard_locks_;
  // Guards the catch-up state below; held only to read or update it.
  engine::Mutex catch_up_mu_;
  // Leader: the replicas being caught up, by shard local name.
  std::map<std::string, std::set<std::string>> catching_up_ ABSL_GUARDED_BY(catch_up_mu_);
  // Replica being caught up: the ids the leader's writes touched during the copy, by shard
  // local name (the copy must not overwrite them with what it read before).
  std::map<std::string, absl::flat_hash_set<uint64_t>> touched_ ABSL_GUARDED_BY(catch_up_mu_);
  bool stopping_ ABSL_GUARDED_BY(catch_up_mu_) = false;
  engine::CondVar stop_;  // stopping_ set
  std::thread catch_up_thread_;
  std::atomic<uint64_t> next_replica_{0};  // round-robin over a shard's replicas for reads
};

}  // namespace luxdb::server
