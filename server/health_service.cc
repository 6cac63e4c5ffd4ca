#include "server/health_service.h"

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"

namespace luxdb::server {
namespace {

using grpc::health::v1::HealthCheckResponse;

// How often a Watch stream checks whether its client went away.
constexpr auto kWatchPoll = std::chrono::seconds(1);

}  // namespace

HealthService::HealthService(std::string service_name) : service_name_(std::move(service_name)) {}

void HealthService::SetServing(bool serving) {
  {
    std::lock_guard lock(mu_);
    serving_ = serving && !shut_down_;
  }
  changed_.notify_all();
}

void HealthService::Shutdown() {
  {
    std::lock_guard lock(mu_);
    serving_ = false;
    shut_down_ = true;
  }
  changed_.notify_all();
}

HealthService::Status HealthService::StatusOf(const std::string& service) const {
  if (!service.empty() && service != service_name_) return HealthCheckResponse::SERVICE_UNKNOWN;
  return serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::Status HealthService::Check(grpc::ServerContext*,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  std::lock_guard lock(mu_);
  const Status status = StatusOf(request->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("unknown service '", request->service(), "'; this server has '", service_name_,
                     "' and '' (the whole server)"));
  }
  response->set_status(status);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  std::unique_lock lock(mu_);
  if (watchers_ >= kMaxWatchers) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("at most ", kMaxWatchers, " health Watch streams at once; use Check to poll"));
  }
  ++watchers_;
  std::optional<Status> sent;
  while (true) {
    const Status status = StatusOf(request->service());
    const bool last = shut_down_;
    if (status != sent) {
      lock.unlock();
      HealthCheckResponse response;
      response.set_status(status);
      const bool written = writer->Write(response);
      lock.lock();
      if (!written) break;
      sent = status;
    }
    if (last || context->IsCancelled()) break;
    changed_.wait_for(lock, kWatchPoll);
  }
  --watchers_;
  return grpc::Status::OK;
}

}  // namespace luxdb::server
