#include "luxdb/client.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "engine/mutex.h"
#include "grpcpp/client_context.h"
#include "luxdb/connect.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

namespace luxdb {
namespace {

using Stub = v1::LuxDB::Stub;

// absl::StatusCode uses gRPC's numbering.
absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

v1::Space ToProto(Space space) {
  switch (space) {
    case Space::kL2:
      return v1::L2;
    case Space::kIp:
      return v1::IP;
    case Space::kCosine:
      return v1::COSINE;
  }
  return v1::SPACE_UNSPECIFIED;
}

absl::StatusOr<Space> FromProto(v1::Space space) {
  switch (space) {
    case v1::L2:
      return Space::kL2;
    case v1::IP:
      return Space::kIp;
    case v1::COSINE:
      return Space::kCosine;
    default:
      return absl::InternalError(
          absl::StrCat("the server reported unknown space ", static_cast<int>(space)));
  }
}

absl::StatusOr<IndexInfo> FromProto(const v1::IndexInfo& info) {
  absl::StatusOr<Space> space = FromProto(info.space());
  if (!space.ok()) return space.status();
  return IndexInfo{.name = info.name(),
                   .space = *space,
                   .dim = info.dim(),
                   .m = info.m(),
                   .ef_construction = info.ef_construction(),
                   .ef = info.ef(),
                   .max_elements = info.max_elements(),
                   .element_count = info.element_count(),
                   .tombstones = info.tombstones(),
                   .deleted_count = info.deleted_count(),
                   .memory_bytes = info.memory_bytes(),
                   .compacting = info.compacting(),
                   .initialized = info.initialized(),
                   .shards = std::max(1u, info.shards()),
                   .replicas = std::max(1u, info.replicas())};
}

// The QueryResult in `response`, or INTERNAL naming `target` if its fields do not agree.
absl::StatusOr<QueryResult> FromResponse(v1::QueryIndexResponse& response,
                                         const std::string& method, const std::string& target) {
  if (response.ids_size() != response.distances_size() ||
      (response.k() == 0 ? response.ids_size() != 0 : response.ids_size() % response.k() != 0)) {
    return absl::InternalError(
        absl::StrCat("malformed ", method, " answer from ", target, ": ", response.ids_size(),
                     " ids, ", response.distances_size(), " distances, k ", response.k()));
  }
  QueryResult result;
  result.k = response.k();
  result.ids.assign(response.ids().begin(), response.ids().end());
  result.distances.assign(response.distances().begin(), response.distances().end());
  return result;
}

void ToProto(const AttributeValue& value, v1::Value* out) {
  std::visit(
      [out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out->set_s(v);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out->set_i(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_d(v);
        } else {
          out->set_b(v);
        }
      },
      value);
}

void ToProto(const Attributes& attributes, v1::Attributes* out) {
  for (const Attribute& attribute : attributes) {
    v1::Attribute* a = out->add_attributes();
    a->set_key(attribute.key);
    for (const AttributeValue& value : attribute.values) ToProto(value, a->add_values());
  }
}

template <typename Repeated>
void ToProto(std::span<const Attributes> attributes, Repeated* out) {
  out->Reserve(static_cast<int>(attributes.size()));
  for (const Attributes& item : attributes) ToProto(item, out->Add());
}

// The attributes of `id` in a GetElements answer, or INTERNAL for a value of no kind.
absl::StatusOr<Attributes> FromProto(const v1::Attributes& attributes, uint64_t id,
                                     const std::string& target) {
  Attributes out;
  out.reserve(attributes.attributes_size());
  for (const v1::Attribute& attribute : attributes.attributes()) {
    Attribute& a = out.emplace_back();
    a.key = attribute.key();
    a.values.reserve(attribute.values_size());
    for (const v1::Value& value : attribute.values()) {
      switch (value.kind_case()) {
        case v1::Value::kS:
          a.values.emplace_back(value.s());
          break;
        case v1::Value::kI:
          a.values.emplace_back(value.i());
          break;
        case v1::Value::kD:
          a.values.emplace_back(value.d());
          break;
        case v1::Value::kB:
          a.values.emplace_back(value.b());
          break;
        default:
          return absl::InternalError(absl::StrCat("malformed GetElements answer from ", target,
                                                  ": attribute '", attribute.key(), "' of id ", id,
                                                  " holds a value of no kind"));
      }
    }
  }
  return out;
}

void ToProto(const Condition& condition, v1::Condition* out) {
  out->set_key(condition.key());
  std::visit(
      [out](const auto& test) {
        using T = std::decay_t<decltype(test)>;
        if constexpr (std::is_same_v<T, AttributeValue>) {
          ToProto(test, out->mutable_equals());
        } else if constexpr (std::is_same_v<T, std::vector<AttributeValue>>) {
          v1::ValueList* list = out->mutable_any_of();
          for (const AttributeValue& value : test) ToProto(value, list->add_values());
        } else if constexpr (std::is_same_v<T, Condition::Bounds>) {
          v1::Range* range = out->mutable_range();
          if (test.gt) range->set_gt(*test.gt);
          if (test.gte) range->set_gte(*test.gte);
          if (test.lt) range->set_lt(*test.lt);
          if (test.lte) range->set_lte(*test.lte);
        } else {
          out->set_exists(test);
        }
      },
      condition.test());
}

// The wire form of `filter`; nullopt for an empty one (no filter).
std::optional<v1::Filter> ToProto(const Filter& filter) {
  if (filter.empty()) return std::nullopt;
  v1::Filter out;
  for (const Condition& c : filter.must()) ToProto(c, out.add_must());
  for (const Condition& c : filter.must_not()) ToProto(c, out.add_must_not());
  for (const Condition& c : filter.should()) ToProto(c, out.add_should());
  if (const std::optional<std::vector<uint64_t>>& ids = filter.ids(); ids.has_value()) {
    out.mutable_ids()->Assign(ids->begin(), ids->end());
  }
  return out;
}

// QueryIndex sends more than twice this many bytes of query vectors as calls of about this
// size, this many at once: the server searches one while the next arrives, instead of waiting
// for the whole request to be sent, received and parsed (from Python, one call of 10,000 x 784
// reached 7,200-7,800 queries/s, these parts 10,500-11,900 on this machine).
constexpr size_t kSplitBytes = size_t{1} << 20;
constexpr size_t kSplitInFlight = 3;

}  // namespace

const char* SpaceName(Space space) {
  switch (space) {
    case Space::kL2:
      return "l2";
    case Space::kIp:
      return "ip";
    case Space::kCosine:
      return "cosine";
  }
  return "unknown";
}

Condition Equals(std::string key, AttributeValue value) {
  return Condition(std::move(key), std::move(value));
}

Condition AnyOf(std::string key, std::vector<AttributeValue> values) {
  return Condition(std::move(key), std::move(values));
}

Condition Exists(std::string key) { return Condition(std::move(key), true); }

Condition Missing(std::string key) { return Condition(std::move(key), false); }

class Client::Impl {
 public:
  Impl(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds default_timeout,
       std::string target)
      : channel_(std::move(channel)),
        stub_(v1::LuxDB::NewStub(channel_)),
        default_timeout_(default_timeout),
        target_(std::move(target)) {}

  // Runs one unary call with the deadline `call` (or the client's default) asks for.
  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                    const Request& request, Response* response, const CallOptions& call) {
    return FromGrpc((stub_.get()->*method)(Context(call).get(), request, response));
  }

  const std::string& target() const { return target_; }

  // A fresh context with the deadline `call` (or the client's default) asks for.
  std::unique_ptr<grpc::ClientContext> Context(const CallOptions& call) const {
    auto context = std::make_unique<grpc::ClientContext>();
    const std::chrono::milliseconds timeout =
        call.timeout.count() > 0 ? call.timeout : default_timeout_;
    if (timeout.count() > 0) context->set_deadline(std::chrono::system_clock::now() + timeout);
    return context;
  }

  Stub& stub() { return *stub_; }

  // The vectors of `ids`; `response` keeps the rest of the answer (the attributes).
  absl::StatusOr<Vectors> GetElements(const std::string& name, std::span<const uint64_t> ids,
                                      bool with_attributes, const CallOptions& call,
                                      v1::GetElementsResponse* response) {
    v1::GetElementsRequest request;
    request.set_name(name);
    request.mutable_ids()->Add(ids.begin(), ids.end());
    request.set_with_attributes(with_attributes);
    if (absl::Status s = Call(&Stub::GetElements, request, response, call); !s.ok()) return s;
    if (static_cast<uint64_t>(response->vectors_size()) != uint64_t{response->dim()} * ids.size()) {
      return absl::InternalError(absl::StrCat("malformed GetElements answer from ", target_, ": ",
                                              response->vectors_size(), " floats for ", ids.size(),
                                              " ids of dimension ", response->dim()));
    }
    Vectors vectors;
    vectors.dim = response->dim();
    vectors.data.assign(response->vectors().begin(), response->vectors().end());
    return vectors;
  }

  // QueryIndex as calls of about kSplitBytes of whole `dim`-float rows, kSplitInFlight at once,
  // their answers joined in order; the first failure cancels the rest and is returned.
  absl::StatusOr<QueryResult> QueryInParts(const std::string& name, std::span<const float> queries,
                                           uint32_t dim, uint32_t k,
                                           const std::optional<v1::Filter>& filter, uint32_t ef,
                                           const CallOptions& call) {
    struct Part {
      std::unique_ptr<grpc::ClientContext> context;
      v1::QueryIndexRequest request;
      v1::QueryIndexResponse response;
      grpc::Status status;
      std::unique_ptr<grpc::ClientAsyncResponseReader<v1::QueryIndexResponse>> reader;
      bool finished = false;
    };
    const size_t rows_per_part = std::max<size_t>(1, kSplitBytes / (size_t{dim} * sizeof(float)));
    const size_t floats_per_part = rows_per_part * dim;
    const size_t count = (queries.size() + floats_per_part - 1) / floats_per_part;
    std::vector<Part> parts(count);
    grpc::CompletionQueue cq;
    size_t next = 0;
    size_t in_flight = 0;
    absl::Status failed;
    const auto start = [&] {
      Part& part = parts[next];
      part.context = Context(call);
      part.request.set_name(name);
      const std::span<const float> rows =
          queries.subspan(next * floats_per_part,
                          std::min(floats_per_part, queries.size() - next * floats_per_part));
      part.request.mutable_vectors()->Assign(rows.begin(), rows.end());
      part.request.set_k(k);
      part.request.set_ef(ef);
      if (filter.has_value()) *part.request.mutable_filter() = *filter;
      part.reader = stub_->PrepareAsyncQueryIndex(part.context.get(), part.request, &cq);
      part.reader->StartCall();
      part.reader->Finish(&part.response, &part.status, reinterpret_cast<void*>(next));
      ++next;
      ++in_flight;
    };
    while (next < count && in_flight < kSplitInFlight) start();
    while (in_flight > 0) {
      void* tag = nullptr;
      bool ok = false;
      if (!cq.Next(&tag, &ok)) break;
      --in_flight;
      Part& part = parts[reinterpret_cast<size_t>(tag)];
      part.finished = true;
      part.request.Clear();
      if (!part.status.ok() && failed.ok()) {
        failed = FromGrpc(part.status);
        for (Part& other : parts) {
          if (other.context != nullptr && !other.finished) other.context->TryCancel();
        }
      }
      if (failed.ok() && next < count) start();
    }
    cq.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
    }
    if (!failed.ok()) return failed;
    QueryResult result;
    result.k = k;
    result.ids.reserve(queries.size() / dim * k);
    result.distances.reserve(queries.size() / dim * k);
    for (Part& part : parts) {
      absl::StatusOr<QueryResult> answer = FromResponse(part.response, "QueryIndex", target_);
      if (!answer.ok()) return answer.status();
      result.ids.insert(result.ids.end(), answer->ids.begin(), answer->ids.end());
      result.distances.insert(result.distances.end(), answer->distances.begin(),
                              answer->distances.end());
    }
    if (result.ids.size() != queries.size() / dim * k) {
      return absl::InternalError(absl::StrCat("malformed QueryIndex answers from ", target_, ": ",
                                              result.ids.size(), " results for ",
                                              queries.size() / dim, " queries at k ", k));
    }
    return result;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
  const std::chrono::milliseconds default_timeout_;
  const std::string target_;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

const std::string& Client::target() const { return impl_->target(); }

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ConnectOptions& options) {
  const std::string target = Target(options);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(options);
  if (!channel.ok()) {
    return absl::Status(channel.status().code(), absl::StrCat("cannot connect to ", target, ": ",
                                                              channel.status().message()));
  }
  std::unique_ptr<Client> db(
      new Client(std::make_unique<Impl>(*std::move(channel), options.call_timeout, target)));
  // One cheap call proves that the server is there and accepts our tokens.
  absl::StatusOr<std::vector<IndexInfo>> probe =
      db->ListIndexes({.timeout = options.connect_timeout});
  if (!probe.ok()) {
    if (absl::IsUnauthenticated(probe.status())) {
      return absl::UnauthenticatedError(
          absl::StrCat(target, " refused the secret: ", probe.status().message(),
                       "; check the secret, and that LUXDB_SALT and KDF_ITERATIONS match the "
                       "server's"));
    }
    if (absl::IsDeadlineExceeded(probe.status())) {
      return absl::DeadlineExceededError(absl::StrCat(
          "cannot reach ", target, ": no answer within ", options.connect_timeout.count(), " ms"));
    }
    return absl::Status(probe.status().code(),
                        absl::StrCat("cannot reach ", target, ": ", probe.status().message()));
  }
  return db;
}

absl::Status Client::CreateIndex(const std::string& name, Space space, uint32_t dim,
                                 const CallOptions& call) {
  v1::CreateIndexRequest request;
  request.set_name(name);
  request.set_space(ToProto(space));
  request.set_dim(dim);
  v1::CreateIndexResponse response;
  return impl_->Call(&Stub::CreateIndex, request, &response, call);
}

absl::Status Client::CreateShardedIndex(const std::string& name, Space space, uint32_t dim,
                                        uint32_t shards, uint32_t replicas,
                                        const CallOptions& call) {
  v1::CreateIndexRequest request;
  request.set_name(name);
  request.set_space(ToProto(space));
  request.set_dim(dim);
  request.set_shards(shards);
  request.set_replicas(replicas);
  v1::CreateIndexResponse response;
  return impl_->Call(&Stub::CreateIndex, request, &response, call);
}

absl::Status Client::InitIndex(const std::string& name, const InitOptions& init,
                               const CallOptions& call) {
  v1::InitIndexRequest request;
  request.set_name(name);
  request.set_max_elements(init.max_elements);
  request.set_ef_construction(init.ef_construction);
  request.set_m(init.m);
  request.set_random_seed(init.random_seed);
  v1::InitIndexResponse response;
  return impl_->Call(&Stub::InitIndex, request, &response, call);
}

absl::Status Client::DeleteIndex(const std::string& name, const CallOptions& call) {
  v1::DeleteIndexRequest request;
  request.set_name(name);
  v1::DeleteIndexResponse response;
  return impl_->Call(&Stub::DeleteIndex, request, &response, call);
}

absl::StatusOr<BackupInfo> Client::Backup(const std::string& path, const CallOptions& call) {
  v1::BackupRequest request;
  request.set_path(path);
  v1::BackupResponse response;
  if (absl::Status s = impl_->Call(&Stub::Backup, request, &response, call); !s.ok()) return s;
  return BackupInfo{response.path(), response.bytes(), response.seconds()};
}

absl::StatusOr<bool> Client::IndexExists(const std::string& name, const CallOptions& call) {
  v1::IndexExistsRequest request;
  request.set_name(name);
  v1::IndexExistsResponse response;
  if (absl::Status s = impl_->Call(&Stub::IndexExists, request, &response, call); !s.ok()) {
    return s;
  }
  return response.exists();
}

absl::StatusOr<std::vector<IndexInfo>> Client::ListIndexes(const CallOptions& call) {
  v1::ListIndexesRequest request;
  v1::ListIndexesResponse response;
  if (absl::Status s = impl_->Call(&Stub::ListIndexes, request, &response, call); !s.ok()) {
    return s;
  }
  std::vector<IndexInfo> indexes;
  indexes.reserve(response.indexes_size());
  for (const v1::IndexInfo& info : response.indexes()) {
    absl::StatusOr<IndexInfo> converted = FromProto(info);
    if (!converted.ok()) return converted.status();
    indexes.push_back(*std::move(converted));
  }
  return indexes;
}

absl::StatusOr<IndexInfo> Client::DescribeIndex(const std::string& name, const CallOptions& call) {
  v1::DescribeIndexRequest request;
  request.set_name(name);
  v1::DescribeIndexResponse response;
  if (absl::Status s = impl_->Call(&Stub::DescribeIndex, request, &response, call); !s.ok()) {
    return s;
  }
  return FromProto(response.info());
}

absl::Status Client::SetEf(const std::string& name, uint32_t ef, const CallOptions& call) {
  v1::SetEfRequest request;
  request.set_name(name);
  request.set_ef(ef);
  v1::SetEfResponse response;
  return impl_->Call(&Stub::SetEf, request, &response, call);
}

absl::StatusOr<uint64_t> Client::AddItems(const std::string& name, std::span<const float> vectors,
                                          std::span<const uint64_t> ids, const CallOptions& call) {
  return AddItems(name, vectors, ids, {}, call);
}

absl::StatusOr<uint64_t> Client::AddItems(const std::string& name, std::span<const float> vectors,
                                          std::span<const uint64_t> ids,
                                          std::span<const Attributes> attributes,
                                          const CallOptions& call) {
  v1::AddItemsRequest request;
  request.set_name(name);
  request.mutable_vectors()->Add(vectors.begin(), vectors.end());
  request.mutable_ids()->Add(ids.begin(), ids.end());
  ToProto(attributes, request.mutable_attributes());
  v1::AddItemsResponse response;
  if (absl::Status s = impl_->Call(&Stub::AddItems, request, &response, call); !s.ok()) return s;
  return response.added();
}

absl::StatusOr<uint64_t> Client::SetAttributes(const std::string& name,
                                               std::span<const uint64_t> ids,
                                               std::span<const Attributes> attributes,
                                               const CallOptions& call) {
  v1::SetAttributesRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  ToProto(attributes, request.mutable_attributes());
  v1::SetAttributesResponse response;
  if (absl::Status s = impl_->Call(&Stub::SetAttributes, request, &response, call); !s.ok()) {
    return s;
  }
  return response.updated();
}

absl::StatusOr<uint64_t> Client::DeleteItems(const std::string& name, std::span<const uint64_t> ids,
                                             const CallOptions& call) {
  v1::DeleteItemsRequest request;
  request.set_name(name);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::DeleteItemsResponse response;
  if (absl::Status s = impl_->Call(&Stub::DeleteItems, request, &response, call); !s.ok()) {
    return s;
  }
  return response.deleted();
}

namespace {

class GrpcQueryStream final : public QueryStream {
 public:
  GrpcQueryStream(Stub& stub, std::unique_ptr<grpc::ClientContext> context, const std::string& name,
                  uint32_t k, std::optional<v1::Filter> filter, uint32_t ef, std::string target)
      : context_(std::move(context)),
        stream_(stub.QueryStream(context_.get())),
        target_(std::move(target)) {
    request_.set_name(name);
    request_.set_k(k);
    request_.set_ef(ef);
    if (filter.has_value()) *request_.mutable_filter() = *std::move(filter);
  }

  ~GrpcQueryStream() override {
    if (!finished_) (void)Finish();
  }

  bool Send(std::span<const float> queries) override {
    engine::MutexLock lock(&write_mu_);
    if (closed_) return false;
    request_.mutable_vectors()->Assign(queries.begin(), queries.end());
    sent_.fetch_add(1);  // before the write: Finish must know a blocked write is unanswered
    return stream_->Write(request_);
  }

  void CloseSend() override {
    engine::MutexLock lock(&write_mu_);
    if (closed_) return;
    closed_ = true;
    stream_->WritesDone();
  }

  absl::StatusOr<QueryResult> Receive() override {
    v1::QueryIndexResponse response;
    if (stream_->Read(&response)) {
      received_.fetch_add(1);
      return FromResponse(response, "QueryStream", target_);
    }
    absl::Status status = End(/*ended=*/true);
    if (!status.ok()) return status;
    return absl::OutOfRangeError("QueryStream: every query sent was answered");
  }

  absl::Status Finish() override { return End(/*ended=*/false); }

 private:
  // The stream's status, once; `ended` when a Read found the call over.
  absl::Status End(bool ended) {
    if (!finished_) {
      finished_ = true;
      // With answers unread, Finish could wait for the server forever: a stream given up on
      // early is cancelled instead. That also ends a Send blocked in flow control, so that
      // CloseSend gets the write lock. (A call already over keeps the status it ended with.)
      if (!ended && received_.load() < sent_.load()) context_->TryCancel();
      CloseSend();
      status_ = FromGrpc(stream_->Finish());
    }
    return status_;
  }

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::QueryIndexRequest, v1::QueryIndexResponse>> stream_;
  const std::string target_;
  v1::QueryIndexRequest request_;  // name, k, ef and filter set once; the vectors of each Send
  // Keeps Write and WritesDone from overlapping (Send's thread and Finish's).
  engine::Mutex write_mu_;
  bool closed_ ABSL_GUARDED_BY(write_mu_) = false;  // WritesDone was called
  std::atomic<uint64_t> sent_{0};                   // messages written or being written
  std::atomic<uint64_t> received_{0};               // answers read (Receive's thread)
  bool finished_ = false;                           // Finish's thread (Receive's, or the owner's)
  absl::Status status_;
};

}  // namespace

std::unique_ptr<QueryStream> Client::OpenQueryStream(const std::string& name, uint32_t k,
                                                     uint32_t ef, const CallOptions& call) {
  return OpenQueryStream(name, k, Filter(), ef, call);
}

std::unique_ptr<QueryStream> Client::OpenQueryStream(const std::string& name, uint32_t k,
                                                     const Filter& filter, uint32_t ef,
                                                     const CallOptions& call) {
  return std::make_unique<GrpcQueryStream>(impl_->stub(), impl_->Context(call), name, k,
                                           ToProto(filter), ef, target());
}

absl::StatusOr<QueryResult> Client::QueryIndex(const std::string& name,
                                               std::span<const float> queries, uint32_t k,
                                               uint32_t ef, const CallOptions& call) {
  return QueryIndex(name, queries, k, Filter(), ef, call);
}

absl::StatusOr<QueryResult> Client::QueryIndex(const std::string& name,
                                               std::span<const float> queries, uint32_t k,
                                               const Filter& filter, uint32_t ef,
                                               const CallOptions& call) {
  const std::optional<v1::Filter> wire_filter = ToProto(filter);
  if (queries.size_bytes() > 2 * kSplitBytes) {
    // Rows are the index's dimension long: asked once (a fraction of a millisecond against
    // the tens of milliseconds of the query). Without it, or for a length that is not whole
    // rows, one call answers (or refuses) as always.
    absl::StatusOr<IndexInfo> info = DescribeIndex(name, call);
    if (info.ok() && info->dim > 0 && queries.size() % info->dim == 0) {
      absl::StatusOr<QueryResult> parts =
          impl_->QueryInParts(name, queries, info->dim, k, wire_filter, ef, call);
      // A part refused for its content: one whole call names the offending row as it always
      // did (a part counts rows from its own start).
      if (parts.ok() || !absl::IsInvalidArgument(parts.status())) return parts;
    }
  }
  v1::QueryIndexRequest request;
  request.set_name(name);
  request.mutable_vectors()->Add(queries.begin(), queries.end());
  request.set_k(k);
  request.set_ef(ef);
  if (wire_filter.has_value()) *request.mutable_filter() = *wire_filter;
  v1::QueryIndexResponse response;
  if (absl::Status s = impl_->Call(&Stub::QueryIndex, request, &response, call); !s.ok()) {
    return s;
  }
  return FromResponse(response, "QueryIndex", target());
}

absl::Status Client::ResizeIndex(const std::string& name, uint64_t new_max_elements,
                                 const CallOptions& call) {
  v1::ResizeIndexRequest request;
  request.set_name(name);
  request.set_new_max_elements(new_max_elements);
  v1::ResizeIndexResponse response;
  return impl_->Call(&Stub::ResizeIndex, request, &response, call);
}

absl::StatusOr<CompactInfo> Client::CompactIndex(const std::string& name, const CallOptions& call) {
  v1::CompactIndexRequest request;
  request.set_name(name);
  v1::CompactIndexResponse response;
  if (absl::Status s = impl_->Call(&Stub::CompactIndex, request, &response, call); !s.ok()) {
    return s;
  }
  return CompactInfo{.tombstones_removed = response.tombstones_removed(),
                     .live = response.live(),
                     .seconds = response.seconds()};
}

absl::StatusOr<std::vector<uint64_t>> Client::GetIds(const std::string& name,
                                                     const CallOptions& call) {
  std::vector<uint64_t> ids;
  std::optional<uint64_t> start_after;
  while (true) {
    // GetIdsPage checks that each page starts above the last, so this ends.
    absl::StatusOr<IdsPage> page = GetIdsPage(name, start_after, /*limit=*/0, call);
    if (!page.ok()) return page.status();
    if (ids.empty()) {
      ids = std::move(page->ids);
    } else {
      ids.insert(ids.end(), page->ids.begin(), page->ids.end());
    }
    if (!page->next_start_after.has_value()) return ids;
    start_after = page->next_start_after;
  }
}

absl::StatusOr<IdsPage> Client::GetIdsPage(const std::string& name,
                                           std::optional<uint64_t> start_after, uint32_t limit,
                                           const CallOptions& call) {
  v1::GetIdsRequest request;
  request.set_name(name);
  if (start_after.has_value()) request.set_start_after(*start_after);
  request.set_limit(limit);  // set even when 0: it asks for a page, not the whole list
  v1::GetIdsResponse response;
  if (absl::Status s = impl_->Call(&Stub::GetIds, request, &response, call); !s.ok()) return s;
  IdsPage page;
  page.ids.assign(response.ids().begin(), response.ids().end());
  if (response.has_next_start_after()) page.next_start_after = response.next_start_after();
  const auto malformed = [&](absl::string_view what) {
    return absl::InternalError(
        absl::StrCat("malformed GetIds page of index '", name, "' from ", target(), ": ", what));
  };
  for (size_t i = 0; i < page.ids.size(); ++i) {
    const bool above_previous = i > 0 ? page.ids[i] > page.ids[i - 1]
                                      : !start_after.has_value() || page.ids[i] > *start_after;
    if (!above_previous) {
      return malformed(
          absl::StrCat("id ", page.ids[i], " at position ", i, " is not above the one before it",
                       i == 0 ? absl::StrCat(" (start_after ", *start_after,
                                             "; a server from before paging ignores start_after)")
                              : ""));
    }
  }
  if (page.next_start_after.has_value() &&
      (page.ids.empty() || *page.next_start_after != page.ids.back())) {
    return malformed(
        absl::StrCat("next_start_after ", *page.next_start_after, " is not the page's last id"));
  }
  return page;
}

absl::StatusOr<Vectors> Client::GetElements(const std::string& name, std::span<const uint64_t> ids,
                                            const CallOptions& call) {
  v1::GetElementsResponse response;
  return impl_->GetElements(name, ids, /*with_attributes=*/false, call, &response);
}

absl::StatusOr<Elements> Client::GetElementsWithAttributes(const std::string& name,
                                                           std::span<const uint64_t> ids,
                                                           const CallOptions& call) {
  v1::GetElementsResponse response;
  absl::StatusOr<Vectors> vectors =
      impl_->GetElements(name, ids, /*with_attributes=*/true, call, &response);
  if (!vectors.ok()) return vectors.status();
  if (static_cast<size_t>(response.attributes_size()) != ids.size()) {
    return absl::InternalError(absl::StrCat("malformed GetElements answer from ", target(),
                                            ": attributes of ", response.attributes_size(),
                                            " items for ", ids.size(),
                                            " ids (a server without attributes answers none)"));
  }
  Elements elements{.vectors = *std::move(vectors), .attributes = {}};
  elements.attributes.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StatusOr<Attributes> attributes = FromProto(response.attributes(i), ids[i], target());
    if (!attributes.ok()) return attributes.status();
    elements.attributes.push_back(*std::move(attributes));
  }
  return elements;
}

}  // namespace luxdb
