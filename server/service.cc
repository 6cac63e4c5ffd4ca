#include "server/service.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <span>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "auth/secret_file.h"
#include "engine/resources.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/attributes_proto.h"
#include "spdlog/spdlog.h"
#include "storage/backup_target.h"

namespace luxdb::server {
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode uses gRPC's numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

absl::StatusOr<storage::Space> FromProto(v1::Space space) {
  switch (space) {
    case v1::L2:
      return storage::Space::kL2;
    case v1::IP:
      return storage::Space::kIp;
    case v1::COSINE:
      return storage::Space::kCosine;
    case v1::SPACE_UNSPECIFIED:
      return absl::InvalidArgumentError("space is unspecified; use L2, IP or COSINE");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown space ", static_cast<int>(space), "; use L2, IP or COSINE"));
  }
}

v1::Space ToProto(storage::Space space) {
  switch (space) {
    case storage::Space::kL2:
      return v1::L2;
    case storage::Space::kIp:
      return v1::IP;
    case storage::Space::kCosine:
      return v1::COSINE;
  }
  return v1::SPACE_UNSPECIFIED;
}

void ToProto(const engine::IndexInfo& info, v1::IndexInfo* out) {
  out->set_name(info.name);
  out->set_space(ToProto(info.space));
  out->set_dim(info.dim);
  out->set_m(info.m);
  out->set_ef_construction(info.ef_construction);
  out->set_ef(info.ef);
  out->set_max_elements(info.max_elements);
  out->set_element_count(info.element_count);
  out->set_deleted_count(info.deleted_count);
  out->set_initialized(info.initialized);
  out->set_tombstones(info.tombstones);
  out->set_memory_bytes(info.memory_bytes);
  out->set_compacting(info.compacting);
}

template <typename T>
std::span<const T> AsSpan(const google::protobuf::RepeatedField<T>& field) {
  return {field.data(), static_cast<size_t>(field.size())};
}

// Room for a response's fixed fields and per-field framing.
constexpr uint64_t kResponseOverhead = 64;
// A call that arrives while storage opens waits this long for it before it is answered
// UNAVAILABLE: opening a small data directory takes milliseconds. (Indexes still loading
// after that answer UNAVAILABLE themselves, naming the index.)
constexpr auto kLoadingWait = std::chrono::seconds(2);
// A packed uint64 is a varint: up to 10 bytes (padding ids 2^64-1 take all 10).
constexpr uint64_t kMaxIdBytes = 10;

}  // namespace

LuxDBService::LuxDBService(uint64_t max_message_bytes, std::string data_dir, std::string backup_dir)
    : max_message_bytes_(max_message_bytes),
      data_dir_(std::move(data_dir)),
      backup_dir_(std::move(backup_dir)) {}

void LuxDBService::SetCallLimits(uint32_t max_concurrent_calls,
                                 std::chrono::seconds max_call_duration) {
  max_concurrent_calls_ = max_concurrent_calls;
  max_call_duration_ = max_call_duration;
}

LuxDBService::CallDeadline LuxDBService::DeadlineOf(const grpc::ServerContextBase* context) const {
  using std::chrono::steady_clock;
  using std::chrono::system_clock;
  CallDeadline deadline;
  const steady_clock::time_point now = steady_clock::now();
  const system_clock::time_point client = context->deadline();
  if (client != system_clock::time_point::max()) {
    // Converted through "time left", clamped so a deadline years away cannot overflow.
    const auto left = std::clamp<system_clock::duration>(
        client - system_clock::now(), system_clock::duration::zero(), std::chrono::hours(24 * 365));
    deadline.when = now + std::chrono::duration_cast<steady_clock::duration>(left);
  }
  if (max_call_duration_.count() > 0 && now + max_call_duration_ < deadline.when) {
    deadline.when = now + max_call_duration_;
    deadline.server_limit = true;
  }
  return deadline;
}

absl::Status LuxDBService::NameDeadline(absl::Status status, const CallDeadline& deadline) const {
  if (!absl::IsDeadlineExceeded(status) || !deadline.server_limit) return status;
  return absl::DeadlineExceededError(absl::StrCat(status.message(), " (the server's limit is ",
                                                  max_call_duration_.count(),
                                                  " s per call, --max-call-seconds)"));
}

absl::Status LuxDBService::CheckCallLimit(uint32_t calls) const {
  if (calls <= max_concurrent_calls_) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the server is already handling its limit of ", max_concurrent_calls_,
                   " calls at once (--max-concurrent-calls); retry shortly"));
}

absl::StatusOr<engine::Catalog*> LuxDBService::Ready(const grpc::ServerContextBase* context) const {
  // A call that waited for a thread past its client's deadline: nobody waits for its answer.
  if (context->deadline() < std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the call's deadline passed before it could start");
  }
  if (absl::Status busy = CheckCallLimit(calls_in_flight_.load()); !busy.ok()) return busy;
  engine::Catalog* catalog = catalog_.load();
  if (catalog == nullptr) {
    std::unique_lock lock(attach_mu_);
    attached_.wait_for(lock, kLoadingWait, [&] { return (catalog = catalog_.load()) != nullptr; });
  }
  if (catalog == nullptr) {
    return absl::UnavailableError("LuxDB is opening its data directory; retry shortly");
  }
  return catalog;
}

void LuxDBService::AttachCatalog(engine::Catalog* catalog) {
  {
    std::lock_guard lock(attach_mu_);
    catalog_.store(catalog);
  }
  attached_.notify_all();
}

absl::StatusOr<std::shared_ptr<engine::Index>> LuxDBService::Find(
    const grpc::ServerContextBase* context, const std::string& name) const {
  absl::StatusOr<engine::Catalog*> catalog = Ready(context);
  if (!catalog.ok()) return catalog.status();
  return (*catalog)->Get(name);
}

absl::Status LuxDBService::CheckResponseSize(uint64_t bytes, uint64_t items, absl::string_view what,
                                             absl::string_view item_noun) const {
  return CheckSize("response would hold", "ask for", 0, bytes, items, what, item_noun);
}

absl::Status LuxDBService::CheckRequestSize(const google::protobuf::Message& request,
                                            uint64_t items, absl::string_view what,
                                            absl::string_view item_noun) const {
  // Kept spare: later ids of a batch may be longer varints than the average.
  return CheckSize("request holds", "send", max_message_bytes_ / 64, request.ByteSizeLong(), items,
                   what, item_noun);
}

absl::Status LuxDBService::CheckSize(absl::string_view message, absl::string_view advice,
                                     uint64_t spare, uint64_t bytes, uint64_t items,
                                     absl::string_view what, absl::string_view item_noun) const {
  if (bytes + kResponseOverhead <= max_message_bytes_) return absl::OkStatus();
  const uint64_t per_item = items == 0 ? bytes : std::max<uint64_t>((bytes + items - 1) / items, 1);
  const uint64_t usable = max_message_bytes_ - kResponseOverhead - spare;
  return absl::ResourceExhaustedError(
      absl::StrCat("the ", message, " ", bytes, " bytes of ", what, ", above the server's ",
                   max_message_bytes_ >> 20, " MiB message cap (--max-message-mb); ", advice,
                   " at most ", usable / per_item, " ", item_noun, " per call"));
}

grpc::Status LuxDBService::CreateIndex(grpc::ServerContext* context,
                                       const v1::CreateIndexRequest* request,
                                       v1::CreateIndexResponse*) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<engine::Catalog*> catalog = Ready(context);
  if (!catalog.ok()) return ToGrpc(catalog.status());
  absl::StatusOr<storage::Space> space = FromProto(request->space());
  if (!space.ok()) {
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("index '", request->name(), "': ", space.status().message())));
  }
  if (request->shards() > 1 || request->replicas() > 1) {
    return ToGrpc(absl::FailedPreconditionError(absl::StrCat(
        "index '", request->name(), "': ", request->shards(), " shards and ", request->replicas(),
        " replicas need cluster mode (luxdb-server --cluster-etcd); this server is a single "
        "node: leave both at 0 or 1")));
  }
  return ToGrpc((*catalog)->Create(request->name(), *space, request->dim()));
}

grpc::Status LuxDBService::InitIndex(grpc::ServerContext* context,
                                     const v1::InitIndexRequest* request, v1::InitIndexResponse*) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  return ToGrpc((*index)->Init({.max_elements = request->max_elements(),
                                .ef_construction = request->ef_construction(),
                                .m = request->m(),
                                .random_seed = request->random_seed()}));
}

grpc::Status LuxDBService::DeleteIndex(grpc::ServerContext* context,
                                       const v1::DeleteIndexRequest* request,
                                       v1::DeleteIndexResponse*) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<engine::Catalog*> catalog = Ready(context);
  if (!catalog.ok()) return ToGrpc(catalog.status());
  return ToGrpc((*catalog)->Drop(request->name()));
}

grpc::Status LuxDBService::IndexExists(grpc::ServerContext* context,
                                       const v1::IndexExistsRequest* request,
                                       v1::IndexExistsResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<engine::Catalog*> catalog = Ready(context);
  if (!catalog.ok()) return ToGrpc(catalog.status());
  if (absl::Status s = engine::ValidateIndexName(request->name()); !s.ok()) return ToGrpc(s);
  // True for an index still loading too.
  response->set_exists((*catalog)->Exists(request->name()));
  return grpc::Status::OK;
}

grpc::Status LuxDBService::ListIndexes(grpc::ServerContext* context, const v1::ListIndexesRequest*,
                                       v1::ListIndexesResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<engine::Catalog*> catalog = Ready(context);
  if (!catalog.ok()) return ToGrpc(catalog.status());
  for (const engine::IndexInfo& info : (*catalog)->List()) ToProto(info, response->add_indexes());
  return grpc::Status::OK;
}

grpc::Status LuxDBService::DescribeIndex(grpc::ServerContext* context,
                                         const v1::DescribeIndexRequest* request,
                                         v1::DescribeIndexResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  ToProto((*index)->Info(), response->mutable_info());
  return grpc::Status::OK;
}

grpc::Status LuxDBService::SetEf(grpc::ServerContext* context, const v1::SetEfRequest* request,
                                 v1::SetEfResponse*) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  return ToGrpc((*index)->SetEf(request->ef()));
}

grpc::Status LuxDBService::AddItems(grpc::ServerContext* context,
                                    const v1::AddItemsRequest* request,
                                    v1::AddItemsResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  if (absl::Status s = CheckRequestSize(*request, request->ids_size(), "vectors",
                                        absl::StrCat("vectors of dimension ", (*index)->dim()));
      !s.ok()) {
    return ToGrpc(s);
  }
  absl::StatusOr<std::vector<engine::ItemAttributes>> attributes =
      AttributesFromProto(request->attributes(), request->ids(), request->name());
  if (!attributes.ok()) return ToGrpc(attributes.status());
  const CallDeadline deadline = DeadlineOf(context);
  absl::StatusOr<uint64_t> added = (*index)->Add(AsSpan(request->vectors()), AsSpan(request->ids()),
                                                 *std::move(attributes), deadline.when);
  if (!added.ok()) return ToGrpc(NameDeadline(added.status(), deadline));
  response->set_added(*added);
  return grpc::Status::OK;
}

grpc::Status LuxDBService::DeleteItems(grpc::ServerContext* context,
                                       const v1::DeleteItemsRequest* request,
                                       v1::DeleteItemsResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  if (absl::Status s = CheckRequestSize(*request, request->ids_size(), "ids", "ids"); !s.ok()) {
    return ToGrpc(s);
  }
  const CallDeadline deadline = DeadlineOf(context);
  absl::StatusOr<uint64_t> deleted = (*index)->Delete(AsSpan(request->ids()), deadline.when);
  if (!deleted.ok()) return ToGrpc(NameDeadline(deleted.status(), deadline));
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

grpc::Status LuxDBService::SetAttributes(grpc::ServerContext* context,
                                         const v1::SetAttributesRequest* request,
                                         v1::SetAttributesResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  if (absl::Status s = CheckRequestSize(*request, request->ids_size(), "ids", "ids"); !s.ok()) {
    return ToGrpc(s);
  }
  absl::StatusOr<std::vector<engine::ItemAttributes>> attributes =
      AttributesFromProto(request->attributes(), request->ids(), request->name());
  if (!attributes.ok()) return ToGrpc(attributes.status());
  const CallDeadline deadline = DeadlineOf(context);
  absl::StatusOr<uint64_t> updated =
      (*index)->SetAttributes(AsSpan(request->ids()), *std::move(attributes), deadline.when);
  if (!updated.ok()) return ToGrpc(NameDeadline(updated.status(), deadline));
  response->set_updated(*updated);
  return grpc::Status::OK;
}

namespace {

// The request in `bytes` (of `method`), or INTERNAL as gRPC's own parser answers for the other
// methods, here with a message naming what was wrong.
grpc::Status ParseQuery(absl::string_view method, const grpc::ByteBuffer& bytes,
                        v1::QueryIndexRequest* request) {
  grpc::ByteBuffer copy(bytes);  // shares the slices; the reader needs a mutable buffer
  grpc::ProtoBufferReader reader(&copy);
  if (request->ParseFromZeroCopyStream(&reader)) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      absl::StrCat(method, ": the request (", bytes.Length(),
                                   " bytes) is not a luxdb.v1.QueryIndexRequest (a string "
                                   "field that is not UTF-8 is refused too)"));
}

grpc::Status Serialize(const v1::QueryIndexResponse& response, grpc::ByteBuffer* bytes) {
  bool own_buffer = false;
  return grpc::SerializationTraits<v1::QueryIndexResponse>::Serialize(response, bytes, &own_buffer);
}

// A call whose query vectors hold at most this many floats (one vector of 4,096 dimensions,
// five of 784) is answered on the gRPC thread that received it, without the sync server's
// hand-off of every call from its poller to a worker thread. On this machine (Fashion-MNIST,
// ef 40, one client) that took the p50 of a one-vector QueryIndex call from 0.40-0.43 ms to
// 0.27-0.30 ms. Larger calls take a thread of their own, so that a long batch never holds up
// the calls gRPC's thread would serve next.
constexpr int kInlineQueryFloats = 4096;

}  // namespace

// QueryIndex and QueryStream are raw methods of gRPC's callback API: gRPC hands over and takes
// back bytes, LuxDB parses the request and builds the response.
struct LuxDBService::QueryCall {
  v1::QueryIndexRequest request;
  v1::QueryIndexResponse response;
};

template <typename Done>
void LuxDBService::RunQuery(const grpc::ServerContextBase* context, std::unique_ptr<QueryCall> call,
                            Done done) {
  // Until the catalog is attached, Ready waits for it: never on gRPC's thread.
  if (call->request.vectors_size() <= kInlineQueryFloats && catalog_.load() != nullptr) {
    const grpc::Status status = Query(context, &call->request, &call->response);
    done(status, *call);
    return;
  }
  // Threads started here are bounded as the sync server's are: refused beyond the limit.
  if (absl::Status busy = CheckCallLimit(calls_in_flight_.load() + 1); !busy.ok()) {
    done(ToGrpc(busy), *call);
    return;
  }
  std::thread([this, context, call = std::move(call), done = std::move(done)]() mutable {
    const grpc::Status status = Query(context, &call->request, &call->response);
    done(status, *call);
  }).detach();
}

grpc::ServerUnaryReactor* LuxDBService::QueryIndex(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request_bytes,
                                                   grpc::ByteBuffer* response_bytes) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto call = std::make_unique<QueryCall>();
  if (grpc::Status parsed = ParseQuery("QueryIndex", *request_bytes, &call->request);
      !parsed.ok()) {
    reactor->Finish(parsed);
    return reactor;
  }
  RunQuery(context, std::move(call),
           [reactor, response_bytes](const grpc::Status& status, const QueryCall& done) {
             reactor->Finish(status.ok() ? Serialize(done.response, response_bytes) : status);
           });
  return reactor;
}

// One QueryStream call. It reads a request, answers it, and only then reads the next, so the
// answers keep the requests' order and a stream holds at most one request in memory, however
// fast its client sends (HTTP/2 flow control holds the rest in the client). It ends with OK
// when the client closes its side, with the status of the first query that fails, with
// UNAVAILABLE when the server shuts down (LuxDBService::EndStreams), or when the call is
// cancelled (the client went away, its deadline passed).
//
// gRPC runs the callbacks; a large query's answer comes from a thread of its own; EndStreams
// from the shutting-down thread. mu_ orders them: a reactor is Finished exactly once, and never
// starts an operation after that.
class LuxDBService::QueryStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  QueryStreamReactor(LuxDBService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {
    bool ended = false;
    {
      engine::MutexLock lock(&service_->streams_mu_);
      ended = service_->streams_ended_;
      service_->streams_.insert(this);
    }
    engine::MutexLock lock(&mu_);
    if (ended || ending_) {  // EndStreams came first, or between the two locks
      FinishLocked(ShuttingDown());
    } else {
      state_ = State::kReading;
      StartRead(&request_);
    }
  }

  void OnReadDone(bool ok) override {
    auto call = std::make_unique<QueryCall>();
    {
      engine::MutexLock lock(&mu_);
      if (state_ == State::kFinished) return;  // EndStreams finished it while it waited
      if (!ok) {  // the client closed its side (or the call ended: nobody reads the status)
        FinishLocked(grpc::Status::OK);
        return;
      }
      const grpc::Status parsed = ParseQuery("QueryStream", request_, &call->request);
      request_.Clear();
      if (!parsed.ok()) {
        FinishLocked(parsed);
        return;
      }
      state_ = State::kAnswering;
    }
    // Without the lock: a small query is answered right here, and the answer takes it.
    service_->RunQuery(
        context_, std::move(call), [this](const grpc::Status& status, const QueryCall& done) {
          engine::MutexLock answer_lock(&mu_);
          grpc::Status answered = status.ok() ? Serialize(done.response, &response_) : status;
          if (answered.ok()) {
            StartWrite(&response_);
          } else {
            FinishLocked(answered);
          }
        });
  }

  void OnWriteDone(bool ok) override {
    engine::MutexLock lock(&mu_);
    response_.Clear();
    if (!ok) {  // the stream broke: the client cannot read this status either
      FinishLocked(
          grpc::Status(grpc::StatusCode::CANCELLED, "QueryStream: the answer was not sent"));
    } else if (ending_) {
      FinishLocked(ShuttingDown());
    } else {
      state_ = State::kReading;
      StartRead(&request_);
    }
  }

  // EndStreams: ends the stream now if it waits for a message, else after the answer.
  void End() {
    engine::MutexLock lock(&mu_);
    if (state_ == State::kReading) {
      FinishLocked(ShuttingDown());
    } else {
      ending_ = true;
    }
  }

  void OnDone() override {
    {
      engine::MutexLock lock(&service_->streams_mu_);
      service_->streams_.erase(this);
    }
    delete this;
  }

 private:
  enum class State {
    kStarting,   // constructed, no operation started yet
    kReading,    // a read is pending: waiting for the client's next message
    kAnswering,  // a message is being answered (its query, then the write of its answer)
    kFinished,   // Finish was called
  };

  static grpc::Status ShuttingDown() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "QueryStream: the server is shutting down; reconnect and resend the "
                        "queries not answered");
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state_ = State::kFinished;
    Finish(status);
  }

  LuxDBService* const service_;
  grpc::CallbackServerContext* const context_;
  engine::Mutex mu_;  // orders gRPC's callbacks, the answering thread and End
  State state_ ABSL_GUARDED_BY(mu_) = State::kStarting;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;  // End came while a message was being answered
  grpc::ByteBuffer request_;                  // the request being read; empty while its query runs
  grpc::ByteBuffer response_;                 // the answer being written
};

void LuxDBService::EndStreams() {
  engine::MutexLock lock(&streams_mu_);
  streams_ended_ = true;
  for (QueryStreamReactor* stream : streams_) stream->End();
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* LuxDBService::QueryStream(
    grpc::CallbackServerContext* context) {
  return new QueryStreamReactor(this, context);
}

grpc::Status LuxDBService::Query(const grpc::ServerContextBase* context,
                                 const v1::QueryIndexRequest* request,
                                 v1::QueryIndexResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  const uint32_t k = request->k();
  absl::StatusOr<size_t> n = (*index)->CheckQuery(request->vectors_size(), k, request->ef());
  if (!n.ok()) return ToGrpc(n.status());
  if (absl::Status s = CheckRequestSize(*request, *n, "query vectors", "query vectors"); !s.ok()) {
    return ToGrpc(s);
  }
  const uint64_t results = uint64_t{*n} * k;
  if (absl::Status s = CheckResponseSize(results * (kMaxIdBytes + sizeof(float)), *n,
                                         "query results", absl::StrCat("queries (at k=", k, ")"));
      !s.ok()) {
    return ToGrpc(s);
  }
  std::optional<engine::Filter> filter;
  if (request->has_filter()) {
    absl::StatusOr<engine::Filter> converted = FilterFromProto(request->filter());
    if (!converted.ok()) {
      return ToGrpc(absl::Status(
          converted.status().code(),
          absl::StrCat(converted.status().message(), " (query of index '", request->name(), "')")));
    }
    filter = *std::move(converted);
  }
  response->mutable_ids()->Resize(static_cast<int>(results), 0);
  response->mutable_distances()->Resize(static_cast<int>(results), 0.0f);
  const CallDeadline deadline = DeadlineOf(context);
  absl::Status s =
      (*index)->Query(AsSpan(request->vectors()), k, request->ef(),
                      {response->mutable_ids()->mutable_data(), static_cast<size_t>(results)},
                      {response->mutable_distances()->mutable_data(), static_cast<size_t>(results)},
                      deadline.when, filter.has_value() ? &*filter : nullptr);
  if (!s.ok()) {
    response->Clear();
    return ToGrpc(NameDeadline(s, deadline));
  }
  response->set_k(k);
  return grpc::Status::OK;
}

grpc::Status LuxDBService::ResizeIndex(grpc::ServerContext* context,
                                       const v1::ResizeIndexRequest* request,
                                       v1::ResizeIndexResponse*) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  return ToGrpc((*index)->Resize(request->new_max_elements()));
}

grpc::Status LuxDBService::CompactIndex(grpc::ServerContext* context,
                                        const v1::CompactIndexRequest* request,
                                        v1::CompactIndexResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  const CallDeadline deadline = DeadlineOf(context);
  absl::StatusOr<engine::CompactStats> stats = (*index)->Compact(deadline.when);
  if (!stats.ok()) return ToGrpc(NameDeadline(stats.status(), deadline));
  response->set_tombstones_removed(stats->tombstones_removed);
  response->set_live(stats->live);
  response->set_seconds(stats->seconds);
  return grpc::Status::OK;
}

grpc::Status LuxDBService::GetIds(grpc::ServerContext* context, const v1::GetIdsRequest* request,
                                  v1::GetIdsResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  // Ids one reply holds at the cap, at their longest varint; the overhead covers the field
  // headers and next_start_after.
  const uint64_t fit = (max_message_bytes_ - kResponseOverhead) / kMaxIdBytes;
  // A request that sets neither field (a client from before paging) gets every id or an
  // error, never a page it would take for the whole list.
  const bool paged = request->has_start_after() || request->has_limit();
  const auto too_many = [&](uint64_t count) {
    return ToGrpc(absl::ResourceExhaustedError(absl::StrCat(
        "index '", request->name(), "' has ", count, " ids; at most ", fit,
        " fit in one reply under the server's ", max_message_bytes_ >> 20,
        " MiB message cap (--max-message-mb): page through them with limit and start_after")));
  };
  uint64_t page_size = fit;
  if (paged) {
    absl::StatusOr<size_t> limit = (*index)->CheckIdsLimit(request->limit());
    if (!limit.ok()) return ToGrpc(limit.status());
    page_size = std::min<uint64_t>(*limit, fit);
  } else if (const uint64_t live = (*index)->Info().element_count; live > fit) {
    return too_many(live);  // refused before a page of `fit` ids is gathered for nothing
  }
  std::optional<uint64_t> start_after;
  if (request->has_start_after()) start_after = request->start_after();
  absl::StatusOr<engine::IdPage> page = (*index)->IdsPage(start_after, page_size);
  if (!page.ok()) return ToGrpc(page.status());
  if (!paged && page->left_out > 0) return too_many(page->ids.size() + page->left_out);
  response->mutable_ids()->Add(page->ids.begin(), page->ids.end());
  if (page->left_out > 0 && !page->ids.empty()) response->set_next_start_after(page->ids.back());
  return grpc::Status::OK;
}

grpc::Status LuxDBService::GetElements(grpc::ServerContext* context,
                                       const v1::GetElementsRequest* request,
                                       v1::GetElementsResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<std::shared_ptr<engine::Index>> index = Find(context, request->name());
  if (!index.ok()) return ToGrpc(index.status());
  if (absl::Status s = CheckRequestSize(*request, request->ids_size(), "ids", "ids"); !s.ok()) {
    return ToGrpc(s);
  }
  const uint32_t dim = (*index)->dim();
  const uint64_t floats = uint64_t{dim} * request->ids_size();
  if (absl::Status s =
          CheckResponseSize(floats * sizeof(float), request->ids_size(), "vectors", "ids");
      !s.ok()) {
    return ToGrpc(s);
  }
  response->mutable_vectors()->Resize(static_cast<int>(floats), 0.0f);
  absl::Status s = (*index)->GetVectors(AsSpan(request->ids()),
                                        {response->mutable_vectors()->mutable_data(), floats});
  if (!s.ok()) {
    response->Clear();
    return ToGrpc(s);
  }
  if (request->with_attributes()) {
    absl::StatusOr<std::vector<engine::ItemAttributes>> attributes =
        (*index)->GetAttributes(AsSpan(request->ids()));
    if (!attributes.ok()) {
      response->Clear();
      return ToGrpc(attributes.status());
    }
    uint64_t bytes = floats * sizeof(float);
    for (const engine::ItemAttributes& item : *attributes) {
      AttributesToProto(item, response->add_attributes());
      bytes += response->attributes(response->attributes_size() - 1).ByteSizeLong();
    }
    if (absl::Status s =
            CheckResponseSize(bytes, request->ids_size(), "vectors and attributes", "ids");
        !s.ok()) {
      response->Clear();
      return ToGrpc(s);
    }
  }
  response->set_dim(dim);
  return grpc::Status::OK;
}

grpc::Status LuxDBService::Backup(grpc::ServerContext* context, const v1::BackupRequest* request,
                                  v1::BackupResponse* response) {
  const CallSlot slot(&calls_in_flight_);
  absl::StatusOr<engine::Catalog*> catalog = Ready(context);
  if (!catalog.ok()) return ToGrpc(catalog.status());
  absl::StatusOr<std::unique_ptr<storage::BackupTarget>> target =
      storage::BackupTarget::Create(request->path(), data_dir_, backup_dir_);
  if (!target.ok()) return ToGrpc(target.status());
  const std::string& path = (*target)->path();
  // A failed backup leaves nothing behind: the target removes what this call wrote into it.
  auto fail = [&](const absl::Status& status) {
    std::string message(status.message());
    if (absl::Status removed = (*target)->Remove(); !removed.ok()) {
      absl::StrAppend(&message, "; the partial backup was not fully removed: ", removed.message());
    }
    return ToGrpc(absl::Status(status.code(), message));
  };
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<uint64_t> bytes = (*catalog)->Backup(**target);
  if (!bytes.ok()) return fail(bytes.status());
  // The secret file the server generated, if it uses one: the copy then serves the same
  // clients. (A secret given by flag or environment is not in the data directory.)
  const std::string secret = absl::StrCat(data_dir_, "/", auth::kSecretFileName);
  std::error_code error;
  if (std::filesystem::exists(secret, error)) {
    absl::StatusOr<uint64_t> copied = (*target)->CopyFileIn(secret, auth::kSecretFileName);
    if (!copied.ok()) {
      return fail(absl::InternalError(
          absl::StrCat("backup to '", path,
                       "' failed: its secret file was not copied: ", copied.status().message())));
    }
    *bytes += *copied;
  }
  if (absl::Status kept = (*target)->Keep(); !kept.ok()) return fail(kept);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("backup of '{}' written to '{}': {} bytes in {:.2f} s", data_dir_, path, *bytes,
               seconds);
  response->set_path(path);
  response->set_bytes(*bytes);
  response->set_seconds(seconds);
  return grpc::Status::OK;
}

}  // namespace luxdb::server
