// luxdb::Client: the C++ client of a LuxDB server, one method per RPC of luxdb.v1.LuxDB.
//
//   luxdb::ConnectOptions options;
//   options.secret = "...";                      // the server's shared secret
//   absl::StatusOr<std::unique_ptr<luxdb::Client>> db = luxdb::Client::Connect(options);
//   if (!db.ok()) ...                            // UNAUTHENTICATED for a wrong secret
//   absl::Status s = (*db)->CreateIndex("docs", luxdb::Space::kL2, 16);
//
// Every call carries a fresh token minted from the secret (see README "Security"). Errors are
// the server's: the absl::StatusCode has gRPC's numeric value (NOT_FOUND, ALREADY_EXISTS,
// INVALID_ARGUMENT, ...) and the message is the server's, naming the index and the offending
// value. Transport failures arrive as UNAVAILABLE, missed deadlines as DEADLINE_EXCEEDED.
//
// Vectors are row-major: n vectors of an index of dimension d are n*d floats, in and out.
//
// A Client is thread-safe: any number of threads may call it at once (the server runs
// queries in parallel and serialises writes per index).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "luxdb/connect_options.h"

namespace luxdb {

using ConnectOptions = client::ConnectOptions;

// Distance metric of an index. kL2 is the squared Euclidean distance, kIp is 1 - a.b, kCosine
// is 1 - cos(a, b) (vectors are normalised on insert and on query).
enum class Space { kL2, kIp, kCosine };

// "l2", "ip" or "cosine".
const char* SpaceName(Space space);

// What DescribeIndex and ListIndexes report about an index.
struct IndexInfo {
  std::string name;
  Space space = Space::kL2;
  uint32_t dim = 0;
  uint32_t m = 0;
  uint32_t ef_construction = 0;
  uint32_t ef = 0;
  uint64_t max_elements = 0;
  uint64_t element_count = 0;  // live items
  // Elements of the graph that no longer answer queries: deleted items and the old vectors
  // of replaced items. They keep their memory until a compaction (CompactIndex, or the
  // server's automatic one) but do not count against max_elements.
  uint64_t tombstones = 0;
  uint64_t deleted_count = 0;  // the same as tombstones (its older name)
  // Bytes the server reserved for the graph at full capacity, including a running
  // compaction's second graph; 0 before InitIndex.
  uint64_t memory_bytes = 0;
  bool compacting = false;  // a compaction is building a new graph
  bool initialized = false;
  // Cluster mode (README "Cluster mode"): the index's shards and replicas per shard; 1 and 1
  // on a single server. The counts above are then sums over the shards.
  uint32_t shards = 1;
  uint32_t replicas = 1;
};

// What Client::CompactIndex did.
struct CompactInfo {
  uint64_t tombstones_removed = 0;
  uint64_t live = 0;  // items in the new graph
  double seconds = 0;
};

// InitIndex's parameters; zero means the server's default (m 16, ef_construction 200,
// random_seed 100).
struct InitOptions {
  uint64_t max_elements = 0;
  uint32_t ef_construction = 0;
  uint32_t m = 0;
  uint64_t random_seed = 0;
};

// Where a query row has fewer than k live results, its remaining slots hold these.
inline constexpr uint64_t kMissingId = std::numeric_limits<uint64_t>::max();
inline constexpr float kMissingDistance = std::numeric_limits<float>::infinity();

// The answer to QueryIndex: rows() rows of k results each, nearest first, row-major.
struct QueryResult {
  std::vector<uint64_t> ids;     // rows() * k; kMissingId pads a short row
  std::vector<float> distances;  // rows() * k; kMissingDistance pads a short row
  uint32_t k = 0;

  size_t rows() const { return k == 0 ? 0 : ids.size() / k; }
  std::span<const uint64_t> row_ids(size_t row) const {
    return std::span<const uint64_t>(ids).subspan(row * k, k);
  }
  std::span<const float> row_distances(size_t row) const {
    return std::span<const float>(distances).subspan(row * k, k);
  }
};

// Vectors read back by GetElements: rows() vectors of dimension dim, row-major.
struct Vectors {
  std::vector<float> data;
  uint32_t dim = 0;

  size_t rows() const { return dim == 0 ? 0 : data.size() / dim; }
  std::span<const float> row(size_t i) const {
    return std::span<const float>(data).subspan(i * dim, dim);
  }
};

// One page of an index's ids (Client::GetIdsPage).
struct IdsPage {
  std::vector<uint64_t> ids;  // ascending
  // Set when more ids follow: the start_after of the next page (the last id of this one).
  std::optional<uint64_t> next_start_after;
};

// Attributes: named values an item carries, which filtered queries test (Filter).
//
// A value is a string, an int64, a double (finite) or a bool. An attribute has one value, or
// a list of several strings or of several int64s (a condition matches the list if any
// element matches); keys are unique within an item and not empty.
//
//   luxdb::Attributes attributes = {{"tenant", {7}}, {"tags", {"red", "new"}},
//                                   {"price", {9.5}}, {"archived", {false}}};
//
// The server bounds keys per item, key and string length and list length (its flags
// --max-attribute-keys, --max-attribute-key-bytes, --max-attribute-string-bytes,
// --max-attribute-values); an item over one, or with values of mixed kinds, a list of
// doubles or bools, an empty key or a key twice, is INVALID_ARGUMENT naming the item and key.
using AttributeValue = std::variant<std::string, int64_t, double, bool>;

struct Attribute {
  std::string key;
  std::vector<AttributeValue> values;

  bool operator==(const Attribute&) const = default;
};

// One item's attributes (empty: none).
using Attributes = std::vector<Attribute>;

// One test of an attribute key, for a Filter; made by Equals, AnyOf, Range or Exists /
// Missing. An item that lacks the key fails every test but Missing; a key that no item has
// is no error, the condition simply matches nothing.
class Condition {
 public:
  // Bounds of a Range condition; unset bounds are open.
  struct Bounds {
    std::optional<double> gt, gte, lt, lte;
  };
  using Test = std::variant<AttributeValue,               // equals
                            std::vector<AttributeValue>,  // any_of
                            Bounds,                       // range
                            bool>;                        // exists (true) or missing (false)

  const std::string& key() const { return key_; }
  const Test& test() const { return test_; }

 private:
  friend Condition Equals(std::string key, AttributeValue value);
  friend Condition AnyOf(std::string key, std::vector<AttributeValue> values);
  friend Condition Exists(std::string key);
  friend Condition Missing(std::string key);
  friend class RangeCondition;
  Condition(std::string key, Test test) : key_(std::move(key)), test_(std::move(test)) {}

  std::string key_;
  Test test_;
};

// One of the item's values under `key` equals `value`. Int64 and double compare as numbers
// (Equals("price", 5) matches 5.0); strings and bools match only their own kind.
Condition Equals(std::string key, AttributeValue value);

// One of the item's values under `key` equals one of `values` (at most 1,024):
// AnyOf("tag", {"red", "blue"}), AnyOf("tenant", {1, 2, 3}).
Condition AnyOf(std::string key, std::vector<AttributeValue> values);

// The item has the key / has not.
Condition Exists(std::string key);
Condition Missing(std::string key);

// One of the item's int64 or double values under the key lies within the bounds set:
// Range("price").Gte(1).Lt(5) is 1 <= price < 5. Give at least one bound, none NaN: the
// server refuses a range without (INVALID_ARGUMENT naming the condition).
class RangeCondition {
 public:
  explicit RangeCondition(std::string key) : key_(std::move(key)) {}
  RangeCondition& Gt(double bound) { return Set(&Condition::Bounds::gt, bound); }
  RangeCondition& Gte(double bound) { return Set(&Condition::Bounds::gte, bound); }
  RangeCondition& Lt(double bound) { return Set(&Condition::Bounds::lt, bound); }
  RangeCondition& Lte(double bound) { return Set(&Condition::Bounds::lte, bound); }
  operator Condition() const { return Condition(key_, bounds_); }  // NOLINT: implicit

 private:
  RangeCondition& Set(std::optional<double> Condition::Bounds::*bound, double value) {
    bounds_.*bound = value;
    return *this;
  }
  std::string key_;
  Condition::Bounds bounds_;
};
inline RangeCondition Range(std::string key) { return RangeCondition(std::move(key)); }

// Which items a query may return: those that pass every Must condition, no MustNot
// condition, at least one Should condition when any are given, and whose id is in Ids when
// that was called. A default Filter lets every item through. At most 256 conditions in all
// and 1,000,000 ids; the server refuses a malformed condition with INVALID_ARGUMENT naming
// it, e.g. "filter.must[1] ('price')".
//
//   luxdb::Filter filter;
//   filter.Must(luxdb::Equals("tenant", 7))
//       .MustNot(luxdb::Exists("hidden"))
//       .Should(luxdb::AnyOf("tag", {"red", "blue"}))
//       .Should(luxdb::Range("price").Gte(1).Lt(5));
class Filter {
 public:
  Filter& Must(Condition condition) {
    must_.push_back(std::move(condition));
    return *this;
  }
  Filter& MustNot(Condition condition) {
    must_not_.push_back(std::move(condition));
    return *this;
  }
  Filter& Should(Condition condition) {
    should_.push_back(std::move(condition));
    return *this;
  }
  // Only these ids may match (a later call replaces the list). An empty list restricts
  // nothing, as on the wire (Filter.ids) and in the Python client.
  Filter& Ids(std::vector<uint64_t> ids) {
    ids_ = std::move(ids);
    return *this;
  }

  const std::vector<Condition>& must() const { return must_; }
  const std::vector<Condition>& must_not() const { return must_not_; }
  const std::vector<Condition>& should() const { return should_; }
  const std::optional<std::vector<uint64_t>>& ids() const { return ids_; }
  // No condition and no id list: every item passes.
  bool empty() const {
    return must_.empty() && must_not_.empty() && should_.empty() && !ids_.has_value();
  }

 private:
  std::vector<Condition> must_, must_not_, should_;
  std::optional<std::vector<uint64_t>> ids_;
};

// Vectors and attributes read back by GetElementsWithAttributes.
struct Elements {
  Vectors vectors;
  std::vector<Attributes> attributes;  // one per id asked, keys ascending
};

// Per-call settings.
struct CallOptions {
  // The call fails with DEADLINE_EXCEEDED if it takes longer; zero means the Client's
  // ConnectOptions::call_timeout (itself zero, no deadline, by default).
  std::chrono::milliseconds timeout{0};
};

// What Client::Backup wrote.
struct BackupInfo {
  std::string path;  // absolute, on the server's machine
  uint64_t bytes = 0;
  double seconds = 0;
};

// One QueryStream call (Client::OpenQueryStream): queries of one index sent one after another
// without waiting for their answers, answered in order. Each Send is one QueryIndex's worth of
// queries (any number of rows). One thread may Send while another Receives; Sends must not
// overlap each other, nor Receives each other.
//
//   auto stream = db.OpenQueryStream("docs", /*k=*/10);
//   std::thread sender([&] { for (auto& q : queries) if (!(*stream)->Send(q)) break;
//                            (*stream)->CloseSend(); });
//   while (absl::StatusOr<luxdb::QueryResult> r = (*stream)->Receive(); r.ok()) ...;
//   sender.join();
//   absl::Status s = (*stream)->Finish();  // OK, or why the stream ended early
class QueryStream {
 public:
  virtual ~QueryStream() = default;

  // Sends one query message: `queries` is row-major, a multiple of the index's dimension.
  // False once the stream has ended (a query failed, the deadline passed, the server went
  // away): Finish says why.
  virtual bool Send(std::span<const float> queries) = 0;

  // Tells the server no more queries follow; Receive still answers those already sent.
  virtual void CloseSend() = 0;

  // The answer to the oldest query sent and not yet answered. OUT_OF_RANGE once every answer
  // was received after CloseSend; otherwise, when the stream ended early, its status (the
  // first failed query's, as QueryIndex would have answered it).
  virtual absl::StatusOr<QueryResult> Receive() = 0;

  // Ends the stream (cancelling it if queries are still unanswered) and returns its status:
  // OK when every query sent was answered.
  virtual absl::Status Finish() = 0;
};

class Client {
 public:
  // Derives the key from options.secret (PBKDF2, ~0.2 s at the default iterations), then
  // proves it with one ListIndexes call within options.connect_timeout. Errors:
  // UNAUTHENTICATED for a wrong secret (or KDF settings that differ from the server's),
  // UNAVAILABLE or DEADLINE_EXCEEDED when the server cannot be reached, INVALID_ARGUMENT
  // without a secret (unless options.insecure), NOT_FOUND for an unreadable TLS file. The
  // message names the address.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ConnectOptions& options);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Creates an empty, uninitialised index `name` of `dim`-dimensional vectors.
  // ALREADY_EXISTS if the name is taken; INVALID_ARGUMENT for a bad name or dimension.
  absl::Status CreateIndex(const std::string& name, Space space, uint32_t dim,
                           const CallOptions& call = {});
  // CreateIndex for a server in cluster mode: the index is split into `shards` shards by id,
  // each held by `replicas` nodes (README "Cluster mode"). A single server refuses more than 1
  // of either with FAILED_PRECONDITION; a cluster with fewer live nodes than `replicas` too.
  absl::Status CreateShardedIndex(const std::string& name, Space space, uint32_t dim,
                                  uint32_t shards, uint32_t replicas, const CallOptions& call = {});

  // Gives index `name` its capacity and graph parameters; once per index.
  // NOT_FOUND for an unknown index; FAILED_PRECONDITION if already initialised;
  // INVALID_ARGUMENT for parameters out of range; RESOURCE_EXHAUSTED if the capacity would
  // not fit in the server's memory.
  absl::Status InitIndex(const std::string& name, const InitOptions& init,
                         const CallOptions& call = {});

  // Deletes index `name` and all its items, durably. NOT_FOUND for an unknown index.
  absl::Status DeleteIndex(const std::string& name, const CallOptions& call = {});

  // Whether index `name` exists. INVALID_ARGUMENT for a name no index can have (see
  // CreateIndex); otherwise fails only for transport or authentication errors.
  absl::StatusOr<bool> IndexExists(const std::string& name, const CallOptions& call = {});

  // Every index, by name.
  absl::StatusOr<std::vector<IndexInfo>> ListIndexes(const CallOptions& call = {});

  // Index `name`'s configuration and counts. NOT_FOUND for an unknown index.
  absl::StatusOr<IndexInfo> DescribeIndex(const std::string& name, const CallOptions& call = {});

  // Sets the search breadth queries use by default. NOT_FOUND, FAILED_PRECONDITION (not
  // initialised), INVALID_ARGUMENT (out of range).
  absl::Status SetEf(const std::string& name, uint32_t ef, const CallOptions& call = {});

  // Adds ids.size() vectors (`vectors` holds ids.size() * dim floats, row-major); an id that
  // exists is replaced (and revived if deleted). All or nothing. Returns the number added.
  // NOT_FOUND, FAILED_PRECONDITION (not initialised), RESOURCE_EXHAUSTED (index full, or the
  // request is over the server's message cap: send smaller batches), INVALID_ARGUMENT (wrong
  // dimension, NaN/Inf, duplicate id, id kMissingId).
  absl::StatusOr<uint64_t> AddItems(const std::string& name, std::span<const float> vectors,
                                    std::span<const uint64_t> ids, const CallOptions& call = {});

  // AddItems with attributes: empty (no item gets any), or one Attributes per id, in order.
  // Replacing an item replaces its attributes (with none when `attributes` is empty). The
  // errors above, and INVALID_ARGUMENT for a count that is neither 0 nor ids.size() or for
  // attributes the server refuses (see Attribute), naming the id and key.
  absl::StatusOr<uint64_t> AddItems(const std::string& name, std::span<const float> vectors,
                                    std::span<const uint64_t> ids,
                                    std::span<const Attributes> attributes,
                                    const CallOptions& call = {});

  // Replaces the attributes of live items `ids` (one Attributes per id; an empty one removes
  // them all) without touching their vectors. All or nothing, stored durably as AddItems is.
  // Returns the number updated. NOT_FOUND for an unknown index or an id that is absent or
  // deleted (naming the first); FAILED_PRECONDITION (not initialised); INVALID_ARGUMENT for a
  // count other than ids.size(), an id twice, or attributes the server refuses (see Attribute).
  absl::StatusOr<uint64_t> SetAttributes(const std::string& name, std::span<const uint64_t> ids,
                                         std::span<const Attributes> attributes,
                                         const CallOptions& call = {});

  // Marks `ids` deleted; all or nothing. Returns how many were newly deleted (ids already
  // deleted count zero). NOT_FOUND for an unknown index or an id never added.
  absl::StatusOr<uint64_t> DeleteItems(const std::string& name, std::span<const uint64_t> ids,
                                       const CallOptions& call = {});

  // The k nearest neighbours of each of the queries (row-major, a multiple of the index's
  // dimension), searched with breadth `ef` (0: the index's ef). A row with fewer than k live
  // results is padded with kMissingId / kMissingDistance. NOT_FOUND, FAILED_PRECONDITION,
  // INVALID_ARGUMENT (k or ef out of range, wrong dimension, NaN/Inf), RESOURCE_EXHAUSTED
  // (answer over the message cap: query fewer rows per call). Above 2 MiB of queries the
  // client asks the index's dimension (DescribeIndex) and sends calls of about 1 MiB, three
  // at once, so that the server searches one while the next arrives; the answer is the same
  // (`call.timeout` then applies to each call), and a refused row is still named by its place
  // in the whole batch.
  absl::StatusOr<QueryResult> QueryIndex(const std::string& name, std::span<const float> queries,
                                         uint32_t k, uint32_t ef = 0, const CallOptions& call = {});

  // QueryIndex restricted by `filter`: each row's results are the k nearest live items that
  // pass it, padded with kMissingId / kMissingDistance when fewer pass. The filter applies to
  // every row, and travels with every call when the batch goes in parts. The errors above,
  // and INVALID_ARGUMENT for a malformed filter, naming the condition ("filter.must[1]
  // ('price')"), or one over the limits (see Filter). An empty filter is no filter.
  absl::StatusOr<QueryResult> QueryIndex(const std::string& name, std::span<const float> queries,
                                         uint32_t k, const Filter& filter, uint32_t ef = 0,
                                         const CallOptions& call = {});

  // Opens a QueryStream call for queries of index `name` with k results each, searched with
  // breadth `ef` (0: the index's ef). `call.timeout` covers the whole stream. Errors arrive
  // through the stream: the same as QueryIndex's, ending it at the first failing query.
  std::unique_ptr<QueryStream> OpenQueryStream(const std::string& name, uint32_t k, uint32_t ef = 0,
                                               const CallOptions& call = {});

  // OpenQueryStream whose every message carries `filter` (see the filtered QueryIndex).
  std::unique_ptr<QueryStream> OpenQueryStream(const std::string& name, uint32_t k,
                                               const Filter& filter, uint32_t ef = 0,
                                               const CallOptions& call = {});

  // Changes index `name`'s capacity. NOT_FOUND, FAILED_PRECONDITION (below the stored item
  // count, or not initialised), INVALID_ARGUMENT, RESOURCE_EXHAUSTED (memory).
  absl::Status ResizeIndex(const std::string& name, uint64_t new_max_elements,
                           const CallOptions& call = {});

  // Rebuilds index `name`'s graph without its tombstones while queries and writes go on, and
  // returns once the new graph serves; joins a compaction the server already runs. NOT_FOUND;
  // FAILED_PRECONDITION (not initialised); RESOURCE_EXHAUSTED (the server's memory budget
  // cannot hold a second graph meanwhile); UNAVAILABLE (the index is still loading);
  // DEADLINE_EXCEEDED if `call.timeout` passes first, though the compaction goes on (see
  // IndexInfo::compacting). A large index can take minutes: give it a long timeout.
  absl::StatusOr<CompactInfo> CompactIndex(const std::string& name, const CallOptions& call = {});

  // The ids of index `name`'s live items, ascending, however many: fetched a page at a time
  // (GetIdsPage, pages as large as the server allows), each page a call of its own with its
  // own `call.timeout`. Ids added or deleted meanwhile may or may not be listed; none is
  // listed twice. NOT_FOUND; FAILED_PRECONDITION (not initialised); INTERNAL if the server's
  // pages are malformed. A server from before paging answers every id in one message, or
  // RESOURCE_EXHAUSTED if they do not fit.
  absl::StatusOr<std::vector<uint64_t>> GetIds(const std::string& name,
                                               const CallOptions& call = {});

  // One page of index `name`'s live ids: those above `start_after` (from the smallest id if
  // unset), ascending, at most `limit` of them; 0 means as many as the server allows (up to
  // 10,000,000, fewer where its message cap requires: a page may be shorter than `limit`).
  // next_start_after is set when more ids follow. NOT_FOUND; FAILED_PRECONDITION (not
  // initialised); INVALID_ARGUMENT for a limit above 10,000,000; INTERNAL if the page is
  // malformed (ids not ascending or not above start_after, as from a server that predates
  // paging and ignored start_after).
  absl::StatusOr<IdsPage> GetIdsPage(const std::string& name,
                                     std::optional<uint64_t> start_after = std::nullopt,
                                     uint32_t limit = 0, const CallOptions& call = {});

  // The vectors of `ids`, in the order asked (normalised for cosine indexes). NOT_FOUND for
  // an unknown index or an id that is absent or deleted (the message names it).
  absl::StatusOr<Vectors> GetElements(const std::string& name, std::span<const uint64_t> ids,
                                      const CallOptions& call = {});

  // GetElements with each item's attributes (keys ascending; empty for an item without).
  // The same errors, and INTERNAL if the server's answer does not hold one Attributes per id
  // (as from a server that predates attributes) or holds a value of no kind.
  absl::StatusOr<Elements> GetElementsWithAttributes(const std::string& name,
                                                     std::span<const uint64_t> ids,
                                                     const CallOptions& call = {});

  // Has the server write a consistent copy of its whole data directory to `path`, a new
  // directory on the server's machine, while it keeps serving (see BackupRequest in
  // luxdb.proto for where it may write). INVALID_ARGUMENT for a path it may not write,
  // ALREADY_EXISTS if it exists, NOT_FOUND if its parent does not.
  absl::StatusOr<BackupInfo> Backup(const std::string& path, const CallOptions& call = {});

  // "host:port" this client talks to.
  const std::string& target() const;

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace luxdb
