// LuxServer: assembles and runs the gRPC server (ports, message limits, health, reflection)
// around a Catalog. The one place where the server is put together.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "auth/token.h"
#include "cluster/cluster.h"
#include "engine/catalog.h"
#include "grpcpp/server.h"
#include "server/call_authenticator.h"
#include "server/call_observer.h"
#include "server/cluster_service.h"
#include "server/health_service.h"
#include "server/memory_trimmer.h"
#include "server/options.h"
#include "server/request_log.h"
#include "server/server_metrics.h"
#include "server/service.h"

namespace luxdb::server {

class LuxServer {
 public:
  // Starts listening, reports NOT_SERVING on the health service, and opens the data
  // directory in the background. Calls are answered as soon as storage is open (until then
  // they get UNAVAILABLE); indexes then load one by one, and a call on one still loading gets
  // UNAVAILABLE naming it. Health turns SERVING (readiness) once every index has loaded.
  // Fails if the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<LuxServer>> Start(const Options& options);
  ~LuxServer();

  // The bound port (useful with Options::port = 0).
  int port() const { return port_; }
  // Blocks until the data directory is open (its indexes may still be loading); returns the
  // outcome (e.g. the data directory is locked by another server).
  absl::Status WaitUntilLoaded();
  // Blocks until every index has loaded (health SERVING); the error of WaitUntilLoaded, or
  // UNAVAILABLE if shutdown began first.
  absl::Status WaitUntilReady();
  // Stops the index loads still running (those indexes load again at the next start), stops
  // accepting calls, lets in-flight ones finish for up to `grace` (then cancels them), saves
  // graph snapshots of the loaded indexes and flushes storage. Idempotent.
  absl::Status Shutdown(std::chrono::milliseconds grace);

 private:
  explicit LuxServer(const Options& options);
  // Derives the key and sets up token checking, unless options_.insecure.
  absl::Status SetUpAuthentication();
  // The metrics (unless Options::metrics_port is 0), the request log and the observer that
  // feeds them; serves /metrics. Fails if the metrics port cannot be bound.
  absl::Status SetUpObservation();
  void Load();

  const Options options_;
  // Before everything that reports to them (the gRPC server's interceptors, the authenticator),
  // so they are destroyed after it.
  std::unique_ptr<ServerMetrics> metrics_;  // null when metrics are off
  std::unique_ptr<RequestLog> request_log_;
  std::unique_ptr<CallObserver> observer_;
  std::unique_ptr<auth::TokenVerifier> verifier_;     // null when insecure
  std::shared_ptr<CallAuthenticator> authenticator_;  // null when insecure
  std::unique_ptr<MemoryTrimmer> trimmer_;
  std::unique_ptr<LuxDBService> service_;
  // Cluster mode (Options::cluster_etcd) only: the node's membership, and the service gRPC
  // serves, which routes calls and answers forwarded ones from service_. peer_secret_ signs
  // the calls this node forwards (the cluster's shared secret).
  std::string peer_secret_;
  std::unique_ptr<cluster::Cluster> cluster_;
  std::unique_ptr<ClusterService> cluster_service_;
  absl::Status JoinCluster();
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread loader_;

  std::mutex mu_;
  std::condition_variable loaded_changed_;
  // Guarded by mu_.
  bool loaded_ = false;  // storage opened, or failed to
  bool ready_ = false;   // every index loaded
  absl::Status load_status_;
  std::unique_ptr<engine::Catalog> catalog_;
  bool shut_down_ = false;
};

}  // namespace luxdb::server
