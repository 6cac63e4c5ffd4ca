// HealthService: the standard grpc.health.v1.Health service, answering for the whole server
// ("") and for luxdb.v1.LuxDB. It replaces gRPC's built-in health service, which reports
// SERVING from the moment the port opens, before LuxDB has loaded its indexes: this one
// starts NOT_SERVING, turns SERVING once the indexes are loaded and NOT_SERVING again when
// shutdown begins, so Kubernetes probes and load balancers never route to a server that
// would refuse calls.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace luxdb::server {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  // `service_name` is the LuxDB service's full name, answered besides "".
  explicit HealthService(std::string service_name);

  void SetServing(bool serving);
  // NOT_SERVING from now on; every Watch stream sends it and ends, so none holds up the
  // server's shutdown.
  void Shutdown();

  // NOT_FOUND for an unknown service name, as the health protocol asks.
  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  // Sends the status now and on every change; SERVICE_UNKNOWN for an unknown name. At most
  // kMaxWatchers streams at once (each holds a server thread): RESOURCE_EXHAUSTED beyond.
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

  static constexpr int kMaxWatchers = 16;

 private:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;
  Status StatusOf(const std::string& service) const;  // needs mu_

  const std::string service_name_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool serving_ = false;    // guarded by mu_
  bool shut_down_ = false;  // guarded by mu_
  int watchers_ = 0;        // guarded by mu_
};

}  // namespace luxdb::server
