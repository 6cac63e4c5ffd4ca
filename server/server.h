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
#include "engine/catalog.h"
#include "grpcpp/server.h"
#include "server/call_authenticator.h"
#include "server/health_service.h"
#include "server/memory_trimmer.h"
#include "server/options.h"
#include "server/service.h"

namespace luxdb::server {

class LuxServer {
 public:
  // Starts listening, reports NOT_SERVING on the health service, and loads the data
  // directory in the background; once every index is loaded, health turns SERVING and calls
  // are answered (until then they get UNAVAILABLE). Fails if the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<LuxServer>> Start(const Options& options);
  ~LuxServer();

  // The bound port (useful with Options::port = 0).
  int port() const { return port_; }
  // Blocks until loading ends; returns its outcome (e.g. the data directory is locked by
  // another server).
  absl::Status WaitUntilLoaded();
  // Stops accepting calls, lets in-flight ones finish for up to `grace` (then cancels them),
  // saves graph snapshots and flushes storage. Idempotent.
  absl::Status Shutdown(std::chrono::milliseconds grace);

 private:
  explicit LuxServer(const Options& options);
  // Derives the key and sets up token checking, unless options_.insecure.
  absl::Status SetUpAuthentication();
  void Load();

  const Options options_;
  std::unique_ptr<auth::TokenVerifier> verifier_;     // null when insecure
  std::shared_ptr<CallAuthenticator> authenticator_;  // null when insecure
  std::unique_ptr<MemoryTrimmer> trimmer_;
  std::unique_ptr<LuxDBService> service_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread loader_;

  std::mutex mu_;
  std::condition_variable loaded_changed_;
  // Guarded by mu_.
  bool loaded_ = false;
  absl::Status load_status_;
  std::unique_ptr<engine::Catalog> catalog_;
  bool shut_down_ = false;
};

}  // namespace luxdb::server
