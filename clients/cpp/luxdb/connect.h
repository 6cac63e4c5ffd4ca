// Connecting to a LuxDB server: a gRPC channel that signs every call with a fresh token.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "luxdb/connect_options.h"

namespace luxdb::client {

// A channel to the server whose calls carry "authorization: Bearer <token>", minted per call
// and bound to the called method. Derives the key once (PBKDF2: ~0.1-0.3 s). Does not
// contact the server. INVALID_ARGUMENT without a secret unless `insecure`; NOT_FOUND for an
// unreadable TLS file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectOptions& options);

}  // namespace luxdb::client
