// The calls of luxdb.v1.LuxDB as the metrics and the request log see them: a fixed table of
// the service's methods (so metric labels stay a bounded set), and CallRecord, what is known
// of one call once it has finished (server/call_observer.h).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace luxdb::server {

enum class Method : uint8_t {
  kCreateIndex,
  kInitIndex,
  kDeleteIndex,
  kIndexExists,
  kListIndexes,
  kDescribeIndex,
  kSetEf,
  kAddItems,
  kDeleteItems,
  kQueryIndex,
  kQueryStream,
  kResizeIndex,
  kGetIds,
  kGetElements,
  kBackup,
  kCompactIndex,
  kSetAttributes,
};
inline constexpr size_t kMethodCount = 17;
// grpc::StatusCode runs from OK (0) to UNAUTHENTICATED (16).
inline constexpr size_t kStatusCodeCount = 17;

// What a request is about: the index it names (empty: none) and how many items (ids) it
// carries (none for requests without ids).
struct CallSubject {
  std::string index;
  std::optional<uint64_t> items;
};

struct MethodInfo {
  Method method;
  absl::string_view name;  // "AddItems"
  std::string path;        // "/luxdb.v1.LuxDB/AddItems", as gRPC names the call
  // Changes what the server stores (or, for Backup, writes a copy of it): the request log
  // writes a line for every call of it, not only for failed ones.
  bool mutates;
  // The subject of a received request message as gRPC's interceptors hand it over: the parsed
  // request of a sync method, a grpc::ByteBuffer for QueryIndex and QueryStream (raw methods;
  // only the index name is read from its bytes). An index name longer than 256 bytes is cut.
  CallSubject (*subject)(const void* message);
  // The same for a service that takes every request parsed (cluster mode's ClusterService,
  // whose QueryIndex and QueryStream are sync methods of parsed requests).
  CallSubject (*parsed_subject)(const void* message);
};

// Every method, in the order of Method.
const std::array<MethodInfo, kMethodCount>& Methods();
inline const MethodInfo& InfoOf(Method method) { return Methods()[static_cast<size_t>(method)]; }
// The method a call's ":path" names; null for anything else (other services, unknown methods).
const MethodInfo* FindMethod(absl::string_view path);

// "OK", "NOT_FOUND", ...; "UNKNOWN" for a value outside gRPC's codes.
absl::string_view StatusCodeName(grpc::StatusCode code);
// `code` if it is one of gRPC's codes, else UNKNOWN.
grpc::StatusCode KnownStatusCode(grpc::StatusCode code);

// One finished call: of a unary method, or one query of a QueryStream (each answered query
// counts as a call; a stream that ends with an error counts one more, with that error).
struct CallRecord {
  // Null only for a call refused for its token whose ":path" names no method of LuxDB's.
  const MethodInfo* method = nullptr;
  absl::string_view path;  // that ":path", where method is null
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::chrono::nanoseconds duration{0};
  // Filled in only where the request log writes a line for the call (RequestLog::WritesLine);
  // views valid during CallObserver::Record.
  const CallSubject* subject = nullptr;  // null: not known
  absl::string_view peer;                // gRPC's "ipv4:127.0.0.1:5000"; empty: not known
  absl::string_view message;             // the error message of a failed call
  absl::string_view refusal;             // the auth::RefusalReason of a refused call
};

}  // namespace luxdb::server
