// LuxDBService: translates luxdb.v1 requests into engine calls and engine statuses into gRPC
// statuses. No logic beyond that lives here.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <mutex>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "engine/catalog.h"
#include "engine/mutex.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

namespace luxdb::server {

// `status` as gRPC's (absl::StatusCode uses gRPC's numbering).
grpc::Status ToGrpc(const absl::Status& status);

// Lock order: streams_mu_, then a QueryStreamReactor's own lock (service.cc); attach_mu_ is
// taken alone.
class LuxDBService final
    : public luxdb::v1::LuxDB::WithRawCallbackMethod_QueryStream<
          luxdb::v1::LuxDB::WithRawCallbackMethod_QueryIndex<luxdb::v1::LuxDB::Service>> {
 public:
  // Responses larger than `max_message_bytes` are refused with RESOURCE_EXHAUSTED before
  // they are built.
  // Tokens are checked before a call reaches the service (server/call_authenticator.h).
  // `data_dir` and `backup_dir` (Options) decide where Backup may write (see
  // storage::BackupTarget::Create).
  LuxDBService(uint64_t max_message_bytes, std::string data_dir, std::string backup_dir);

  // Until a catalog is attached every call answers UNAVAILABLE ("loading"). The catalog
  // must outlive the service's last call.
  void AttachCatalog(engine::Catalog* catalog);

  // Ends every open QueryStream with UNAVAILABLE, and every one opened from now on: at once
  // where the stream waits for its client's next message, after its answer where a message is
  // being answered. (gRPC's own shutdown waits for open calls until its deadline, and a stream
  // left open by its client would hold the server that long.)
  void EndStreams();

  // Limits (Options::max_concurrent_calls, max_call_seconds); call before serving. By default
  // neither applies.
  void SetCallLimits(uint32_t max_concurrent_calls, std::chrono::seconds max_call_duration);

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
  // A raw method of gRPC's callback API (LuxDB parses the request): small queries are answered
  // on the thread that received them, larger ones on a thread of their own (service.cc,
  // kInlineQueryFloats).
  grpc::ServerUnaryReactor* QueryIndex(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                       grpc::ByteBuffer*) override;
  // QueryIndex's queries over one bidirectional stream, answered one at a time, in order, each
  // as QueryIndex would answer it (QueryStreamReactor in service.cc).
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* QueryStream(
      grpc::CallbackServerContext*) override;
  grpc::Status ResizeIndex(grpc::ServerContext*, const v1::ResizeIndexRequest*,
                           v1::ResizeIndexResponse*) override;
  grpc::Status GetIds(grpc::ServerContext*, const v1::GetIdsRequest*, v1::GetIdsResponse*) override;
  grpc::Status GetElements(grpc::ServerContext*, const v1::GetElementsRequest*,
                           v1::GetElementsResponse*) override;
  grpc::Status Backup(grpc::ServerContext*, const v1::BackupRequest*, v1::BackupResponse*) override;
  grpc::Status CompactIndex(grpc::ServerContext*, const v1::CompactIndexRequest*,
                            v1::CompactIndexResponse*) override;

  // QueryIndex's work on the calling thread, once the request is parsed: what the callback
  // method runs (public for fuzz_request, which calls the handlers in-process).
  grpc::Status Query(const grpc::ServerContextBase* context, const v1::QueryIndexRequest* request,
                     v1::QueryIndexResponse* response);

 private:
  struct QueryCall;  // a query's parsed request and its response
  class QueryStreamReactor;
  // Runs `call`'s query, then calls done(status, *call) (call->response holds the answer on
  // OK): on the calling thread for a small query, once the catalog is attached; otherwise on
  // a thread of its own, or refused beyond max_concurrent_calls (service.cc,
  // kInlineQueryFloats). `context` must outlive `done`'s call.
  template <typename Done>
  void RunQuery(const grpc::ServerContextBase* context, std::unique_ptr<QueryCall> call, Done done);

  // The catalog; UNAVAILABLE while indexes are still loading, DEADLINE_EXCEEDED if the call's
  // deadline passed before it started. Every handler starts here (directly or through Find).
  // RESOURCE_EXHAUSTED when more than max_concurrent_calls calls hold a CallSlot.
  absl::StatusOr<engine::Catalog*> Ready(const grpc::ServerContextBase* context) const;
  // RESOURCE_EXHAUSTED naming --max-concurrent-calls if `calls` calls in progress exceed it.
  absl::Status CheckCallLimit(uint32_t calls) const;
  // Counts a call among those in progress for as long as it lives; every handler makes one
  // before calling Ready.
  class CallSlot {
   public:
    explicit CallSlot(std::atomic<uint32_t>* calls) : calls_(calls) { calls_->fetch_add(1); }
    ~CallSlot() { calls_->fetch_sub(1); }
    CallSlot(const CallSlot&) = delete;
    CallSlot& operator=(const CallSlot&) = delete;

   private:
    std::atomic<uint32_t>* const calls_;
  };
  // When a call must stop: its client's deadline, capped at max_call_duration after now.
  struct CallDeadline {
    engine::Deadline when = engine::kNoDeadline;
    bool server_limit = false;  // `when` is the server's cap, not the client's deadline
  };
  CallDeadline DeadlineOf(const grpc::ServerContextBase* context) const;
  // `status`, with the server's limit named if DEADLINE_EXCEEDED came from it.
  absl::Status NameDeadline(absl::Status status, const CallDeadline& deadline) const;
  // The named index, or the status explaining why there is none.
  absl::StatusOr<std::shared_ptr<engine::Index>> Find(const grpc::ServerContextBase* context,
                                                      const std::string& name) const;
  // RESOURCE_EXHAUSTED if a response of `bytes` (of `what`), answering `items` requested
  // things (`item_noun`), would exceed the message cap; the message suggests how many fit.
  absl::Status CheckResponseSize(uint64_t bytes, uint64_t items, absl::string_view what,
                                 absl::string_view item_noun) const;
  // The same for a request that arrived: gRPC accepts requests up to twice the cap so that
  // this check, not gRPC's own terse refusal, answers a batch that is too large.
  absl::Status CheckRequestSize(const google::protobuf::Message& request, uint64_t items,
                                absl::string_view what, absl::string_view item_noun) const;
  absl::Status CheckSize(absl::string_view message, absl::string_view advice, uint64_t spare,
                         uint64_t bytes, uint64_t items, absl::string_view what,
                         absl::string_view item_noun) const;

  const uint64_t max_message_bytes_;
  const std::string data_dir_;
  const std::string backup_dir_;
  std::atomic<engine::Catalog*> catalog_{nullptr};
  uint32_t max_concurrent_calls_ = std::numeric_limits<uint32_t>::max();
  std::chrono::seconds max_call_duration_{0};  // 0: none
  mutable std::atomic<uint32_t> calls_in_flight_{0};
  // The QueryStream reactors not yet done (each removes itself in OnDone), and whether
  // EndStreams was called.
  engine::Mutex streams_mu_;
  absl::flat_hash_set<QueryStreamReactor*> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool streams_ended_ ABSL_GUARDED_BY(streams_mu_) = false;
  mutable std::mutex attach_mu_;
  mutable std::condition_variable attached_;
};

}  // namespace luxdb::server
