#include "server/call_observer.h"

#include <chrono>
#include <string>

#include "absl/base/thread_annotations.h"
#include "auth/token.h"
#include "engine/mutex.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/interceptor.h"

namespace luxdb::server {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::experimental::InterceptionHookPoints;

// A refused call's ":path" is whatever its client sent; the log keeps this much of it.
constexpr size_t kMaxLoggedPathBytes = 256;

// Watches one call of a LuxDB method (see the header) and reports it to the observer.
class CallInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(CallObserver* observer, const MethodInfo* method,
                  grpc::experimental::ServerRpcInfo* info)
      : observer_(observer),
        method_(method),
        info_(info),
        streaming_(info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY),
        started_(Clock::now()) {
    observer_->CallStarted();
  }

  ~CallInterceptor() override {
    {
      engine::MutexLock lock(&mu_);
      // A call that ended without sending a status (or a stream with a query unanswered):
      // its client went away. The context may be gone already, so no peer.
      if (!finished_ && (!streaming_ || querying_)) {
        RecordLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the call ended without an answer"),
                     StartLocked(), /*with_peer=*/false);
      }
    }
    observer_->CallEnded();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      Received(methods->GetRecvMessage());
    }
    if (streaming_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      Answered();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finished(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  // A request arrived (null: a stream's client closed its side, or it could not be read).
  void Received(const void* message) {
    engine::MutexLock lock(&mu_);
    if (message == nullptr) return;
    received_ = Clock::now();
    querying_ = true;
    if (observer_->WantsSubjects()) subject_ = observer_->SubjectOf(method_, message);
  }

  // A QueryStream's answer to the query it received last.
  void Answered() {
    engine::MutexLock lock(&mu_);
    if (!querying_) return;
    RecordLocked(grpc::Status::OK, received_, /*with_peer=*/true);
    querying_ = false;
  }

  void Finished(const grpc::Status& status) {
    engine::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    // A stream its client closed after its last answer: no query is left to record.
    if (streaming_ && status.ok() && !querying_) return;
    RecordLocked(status, StartLocked(), /*with_peer=*/true);
    querying_ = false;
  }

  // When what ends now began: a unary call at its start, a stream's query at the arrival of its
  // request (a stream ended between queries: at the stream's start).
  Clock::time_point StartLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return streaming_ && querying_ ? received_ : started_;
  }

  // Records a call (or stream query) that began at `from` and ends now with `status`.
  void RecordLocked(const grpc::Status& status, Clock::time_point from, bool with_peer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    CallRecord call;
    call.method = method_;
    call.code = KnownStatusCode(status.error_code());
    call.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - from);
    std::string peer;
    std::string message;
    if (observer_->WantsDetails(method_, call.code)) {
      call.subject = &subject_;
      if (with_peer) peer = info_->server_context()->peer();
      call.peer = peer;
      message = status.error_message();  // a copy: grpc::Status returns it by value
      call.message = message;
    }
    observer_->Record(call);
  }

  CallObserver* const observer_;
  const MethodInfo* const method_;
  grpc::experimental::ServerRpcInfo* const info_;
  const bool streaming_;
  const Clock::time_point started_;
  // Orders the hooks of one call: those of a stream can run on different threads at once (a
  // read completing while the server finishes the stream on shutdown).
  engine::Mutex mu_;
  bool querying_ ABSL_GUARDED_BY(mu_) = false;  // a request arrived and is not answered yet
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // the status was sent
  Clock::time_point received_ ABSL_GUARDED_BY(mu_);
  CallSubject subject_ ABSL_GUARDED_BY(mu_);  // of the last request (while WantsSubjects)
};

class CallInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallInterceptorFactory(CallObserver* observer) : observer_(observer) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const MethodInfo* method = info->method() != nullptr ? FindMethod(info->method()) : nullptr;
    if (method == nullptr) return nullptr;  // another service's call: not observed
    return new CallInterceptor(observer_, method, info);
  }

 private:
  CallObserver* const observer_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
CallObserver::InterceptorFactory() {
  return std::make_unique<CallInterceptorFactory>(this);
}

void CallObserver::Record(const CallRecord& call) {
  if (metrics_ != nullptr) metrics_->RecordCall(call.method->method, call.code, call.duration);
  if (request_log_ != nullptr) request_log_->Record(call);
}

void CallObserver::RecordRefusal(absl::string_view path, const absl::Status& refusal) {
  const MethodInfo* method = FindMethod(path);
  const auto code = KnownStatusCode(static_cast<grpc::StatusCode>(refusal.code()));
  const std::string reason = auth::RefusalReason(refusal);
  if (metrics_ != nullptr) metrics_->RecordRefusal(method, code, reason);
  if (WantsDetails(method, code)) {
    std::string logged_path(path.substr(0, kMaxLoggedPathBytes));
    if (path.size() > kMaxLoggedPathBytes) logged_path += "...";
    CallRecord call;
    call.method = method;
    call.path = logged_path;
    call.code = code;
    call.message = refusal.message();
    call.refusal = reason;
    request_log_->Record(call);
  }
}

}  // namespace luxdb::server
