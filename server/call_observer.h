// CallObserver: the one place where the server sees a call of luxdb.v1.LuxDB finish, and
// records it, once, in the metrics (server/server_metrics.h) and the request log
// (server/request_log.h).
//
// Calls reach it by two ways, and by no other:
//  - a gRPC server interceptor (InterceptorFactory, registered with the ServerBuilder) sees
//    every call gRPC hands to the server, on the sync API and on the callback API (QueryIndex,
//    QueryStream) alike, whatever ends it: the handler's answer, gRPC refusing the request
//    before a handler runs (a request it cannot parse, one above the message size limit), or
//    the client going away. It reads the request's index name and item count as the message
//    arrives (only while the request log is on), and the status as it is sent;
//  - CallAuthenticator refuses calls whose token fails in gRPC's transport, before the call
//    exists for the server (no interceptor ever sees them); RecordRefusal takes those.
//
// A QueryStream is recorded per query: each answer is one call (OK, timed from the arrival of
// its request), and an error that ends the stream one more; the stream itself is only in
// luxdb_calls_in_flight while open. Calls of other services (health, reflection) are not
// recorded.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/server_interceptor.h"
#include "server/calls.h"
#include "server/request_log.h"
#include "server/server_metrics.h"

namespace luxdb::server {

class CallObserver {
 public:
  // Either may be null (metrics off); both must outlive the observer, which must outlive the
  // gRPC server its interceptors serve and every CallAuthenticator it observes.
  // `parsed_requests`: the observed service takes QueryIndex and QueryStream requests parsed
  // (cluster mode's ClusterService), not as raw bytes (LuxDBService).
  CallObserver(ServerMetrics* metrics, RequestLog* request_log, bool parsed_requests = false)
      : metrics_(metrics), request_log_(request_log), parsed_requests_(parsed_requests) {}
  CallObserver(const CallObserver&) = delete;
  CallObserver& operator=(const CallObserver&) = delete;

  // Whether there is anything to record (metrics on, or the request log): else the server need
  // not install the interceptor nor the refusal observer at all.
  bool active() const {
    return metrics_ != nullptr || (request_log_ != nullptr && request_log_->enabled());
  }

  // The interceptor factory for grpc::ServerBuilder::experimental().SetInterceptorCreators.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // A call CallAuthenticator refused: `path` is its ":path", `refusal` the status it was
  // answered with (carrying an auth::RefusalReason).
  void RecordRefusal(absl::string_view path, const absl::Status& refusal);

  // What the interceptor reports (public for it, in call_observer.cc).
  void CallStarted() {
    if (metrics_ != nullptr) metrics_->CallStarted();
  }
  void CallEnded() {
    if (metrics_ != nullptr) metrics_->CallEnded();
  }
  // The interceptor keeps each request's CallSubject only while this is true.
  bool WantsSubjects() const { return request_log_ != nullptr && request_log_->enabled(); }
  // Whether a call of `method` ending with `code` needs its subject, peer and message.
  bool WantsDetails(const MethodInfo* method, grpc::StatusCode code) const {
    return request_log_ != nullptr && request_log_->WritesLine(method, code);
  }
  void Record(const CallRecord& call);
  // The subject of a request of `method` as the interceptor receives it.
  CallSubject SubjectOf(const MethodInfo* method, const void* message) const {
    return parsed_requests_ ? method->parsed_subject(message) : method->subject(message);
  }

 private:
  ServerMetrics* const metrics_;
  RequestLog* const request_log_;
  const bool parsed_requests_;
};

}  // namespace luxdb::server
