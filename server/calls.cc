#include "server/calls.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

namespace luxdb::server {
namespace {

// Index names are short (engine::ValidateIndexName); a refused request may carry any string,
// and the request log keeps only this much of it.
constexpr size_t kMaxLoggedNameBytes = 256;

std::string LoggedName(absl::string_view name) {
  if (name.size() <= kMaxLoggedNameBytes) return std::string(name);
  return absl::StrCat(name.substr(0, kMaxLoggedNameBytes), "...");
}

CallSubject NoSubject(const void* /*message*/) { return {}; }

template <typename Request>
CallSubject NameOf(const void* message) {
  return {.index = LoggedName(static_cast<const Request*>(message)->name()), .items = {}};
}

template <typename Request>
CallSubject NameAndIdsOf(const void* message) {
  const auto* request = static_cast<const Request*>(message);
  return {.index = LoggedName(request->name()),
          .items = static_cast<uint64_t>(request->ids_size())};
}

// The name field of a QueryIndexRequest still in its bytes (QueryIndex and QueryStream are raw
// methods: the service parses the request itself). Reads the fields before it and skips their
// values, so a batch of query vectors costs nothing; malformed bytes give no name.
CallSubject QueryNameOf(const void* message) {
  grpc::ByteBuffer bytes(*static_cast<const grpc::ByteBuffer*>(message));  // shares the slices
  grpc::ProtoBufferReader reader(&bytes);
  google::protobuf::io::CodedInputStream in(&reader);
  constexpr uint32_t kVarint = 0;
  constexpr uint32_t kFixed64 = 1;
  constexpr uint32_t kLengthDelimited = 2;
  constexpr uint32_t kFixed32 = 5;
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    const uint32_t wire_type = tag & 7;
    uint32_t length = 0;
    uint64_t ignored = 0;
    uint32_t ignored32 = 0;
    if (tag >> 3 == v1::QueryIndexRequest::kNameFieldNumber && wire_type == kLengthDelimited) {
      std::string name;
      if (!in.ReadVarint32(&length) ||
          !in.ReadString(&name,
                         static_cast<int>(std::min<uint32_t>(length, kMaxLoggedNameBytes + 1)))) {
        return {};
      }
      return {.index = LoggedName(name), .items = {}};
    }
    const bool skipped = wire_type == kVarint    ? in.ReadVarint64(&ignored)
                         : wire_type == kFixed64 ? in.ReadLittleEndian64(&ignored)
                         : wire_type == kFixed32 ? in.ReadLittleEndian32(&ignored32)
                         : wire_type == kLengthDelimited
                             ? in.ReadVarint32(&length) && in.Skip(static_cast<int>(length))
                             : false;
    if (!skipped) return {};
  }
  return {};
}

std::array<MethodInfo, kMethodCount> MakeMethods() {
  const auto info = [](Method method, absl::string_view name, bool mutates,
                       CallSubject (*subject)(const void*)) {
    const bool raw = method == Method::kQueryIndex || method == Method::kQueryStream;
    return MethodInfo{.method = method,
                      .name = name,
                      .path = absl::StrCat("/", v1::LuxDB::service_full_name(), "/", name),
                      .mutates = mutates,
                      .subject = subject,
                      .parsed_subject = raw ? NameOf<v1::QueryIndexRequest> : subject};
  };
  // In the order of Method; CallsTest checks it against the service in luxdb.proto.
  return {
      info(Method::kCreateIndex, "CreateIndex", true, NameOf<v1::CreateIndexRequest>),
      info(Method::kInitIndex, "InitIndex", true, NameOf<v1::InitIndexRequest>),
      info(Method::kDeleteIndex, "DeleteIndex", true, NameOf<v1::DeleteIndexRequest>),
      info(Method::kIndexExists, "IndexExists", false, NameOf<v1::IndexExistsRequest>),
      info(Method::kListIndexes, "ListIndexes", false, NoSubject),
      info(Method::kDescribeIndex, "DescribeIndex", false, NameOf<v1::DescribeIndexRequest>),
      info(Method::kSetEf, "SetEf", true, NameOf<v1::SetEfRequest>),
      info(Method::kAddItems, "AddItems", true, NameAndIdsOf<v1::AddItemsRequest>),
      info(Method::kDeleteItems, "DeleteItems", true, NameAndIdsOf<v1::DeleteItemsRequest>),
      info(Method::kQueryIndex, "QueryIndex", false, QueryNameOf),
      info(Method::kQueryStream, "QueryStream", false, QueryNameOf),
      info(Method::kResizeIndex, "ResizeIndex", true, NameOf<v1::ResizeIndexRequest>),
      info(Method::kGetIds, "GetIds", false, NameOf<v1::GetIdsRequest>),
      info(Method::kGetElements, "GetElements", false, NameAndIdsOf<v1::GetElementsRequest>),
      info(Method::kBackup, "Backup", true, NoSubject),
      info(Method::kCompactIndex, "CompactIndex", true, NameOf<v1::CompactIndexRequest>),
      info(Method::kSetAttributes, "SetAttributes", true, NameAndIdsOf<v1::SetAttributesRequest>),
  };
}

}  // namespace

const std::array<MethodInfo, kMethodCount>& Methods() {
  static const std::array<MethodInfo, kMethodCount> methods = MakeMethods();
  return methods;
}

const MethodInfo* FindMethod(absl::string_view path) {
  static const auto* by_path = [] {
    auto* map = new absl::flat_hash_map<std::string, const MethodInfo*>();
    for (const MethodInfo& method : Methods()) map->emplace(method.path, &method);
    return map;
  }();
  auto it = by_path->find(path);
  return it == by_path->end() ? nullptr : it->second;
}

grpc::StatusCode KnownStatusCode(grpc::StatusCode code) {
  const int value = static_cast<int>(code);
  return value >= 0 && value < static_cast<int>(kStatusCodeCount) ? code
                                                                  : grpc::StatusCode::UNKNOWN;
}

absl::string_view StatusCodeName(grpc::StatusCode code) {
  // absl::StatusCode uses gRPC's numbering and names.
  static const auto* names = [] {
    auto* list = new std::array<std::string, kStatusCodeCount>();
    for (size_t i = 0; i < kStatusCodeCount; ++i) {
      (*list)[i] = absl::StatusCodeToString(static_cast<absl::StatusCode>(i));
    }
    return list;
  }();
  return (*names)[static_cast<size_t>(KnownStatusCode(code))];
}

}  // namespace luxdb::server
