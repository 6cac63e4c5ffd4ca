// luxdb-bench --filtered (issue 17): filtered search against its acceptance targets, on a server
// the bench starts (auth off). Every item gets attributes drawn at random (seeded), so that
// each filter below selects a known share of the items, uncorrelated with the vectors and ids:
//
//   bucket  int, uniform in [0, 1000)           ~50 %:  must range bucket < 500
//   tenant  string, one of 10 ("tenant-0".."9") ~10 %:  must equals tenant "tenant-3"
//                                               ~10 %:  must_not any_of tenant [the other 9]
//                                                       (the same items, but no must or should
//                                                       condition bounds them: information,
//                                                       no QPS target)
//   tag     1-3 distinct strings of 500         ~1 %:   must any_of tag [3 tags],
//                                                       must_not range bucket >= 900
//   group   int, uniform in [0, 1000)           ~0.1 %: must equals group 7
//   (ids)                                       100 random ids: Filter.ids alone
//
// Per filter, three plans on the same clients (config.query_clients threads, each with its own
// connection and one call at a time, one query vector per call, k config.k, ef
// config.mixed_ef):
//   unfiltered: the query alone, the reference of the QPS target;
//   filtered:   the query with the filter, answered by the server;
//   naive:      the query unfiltered at k x ratio (ratio = ceil(1 / selectivity), as far as the
//               server's kMaxK allows), filtered on the client, the first k that match kept.
// Recall@k of each plan is against the exact answer, computed here by brute force over the
// matching items (squared L2, the index's space). Every result of every filtered query, the
// timed ones included, is checked against the filter on the client: one outside it fails the
// run. QPS: config.filtered_rounds rounds of a config.duration_s slice per plan, the order
// reversed every other round, so that the machine's speed drift weighs on the three plans
// alike; the ratio filtered / unfiltered is of the sums over the same rounds.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <thread>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/luxdb_bench.h"
#include "engine/limits.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "luxdb/v1/luxdb.grpc.pb.h"

namespace luxdb::bench {
namespace {

using Stub = v1::LuxDB::Stub;

constexpr char kIndex[] = "filtered";
constexpr auto kCallTimeout = std::chrono::minutes(10);
constexpr int kMaxMessageBytes = 256 << 20;  // the server's default cap

// Targets of issue 17.
constexpr double kMinRecall = 0.95;     // every filter
constexpr double kMinQpsRatio = 0.5;    // filtered / unfiltered, where the case says so
constexpr uint64_t kMaxViolations = 0;  // results outside their filter

// The attributes (see the top of the file).
constexpr int kBuckets = 1000;
constexpr int kTenants = 10;
constexpr int kTagVocabulary = 500;
constexpr int kMaxTagsPerItem = 3;
constexpr int kGroups = 1000;
constexpr size_t kAllowListIds = 100;

constexpr uint64_t kMissingId = engine::kMissingId;
constexpr uint32_t kNotMatching = ~uint32_t{0};

struct Item {
  int bucket = 0;
  int tenant = 0;
  int group = 0;
  std::vector<int> tags;  // distinct, 1..kMaxTagsPerItem
};

std::string TenantName(int tenant) { return absl::StrCat("tenant-", tenant); }
std::string TagName(int tag) { return absl::StrCat("tag-", tag); }

std::vector<Item> DrawItems(size_t n, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<int> bucket(0, kBuckets - 1), tenant(0, kTenants - 1),
      group(0, kGroups - 1), tag(0, kTagVocabulary - 1), tag_count(1, kMaxTagsPerItem);
  std::vector<Item> items(n);
  for (Item& item : items) {
    item.bucket = bucket(random);
    item.tenant = tenant(random);
    item.group = group(random);
    const int count = tag_count(random);
    while (static_cast<int>(item.tags.size()) < count) {
      const int t = tag(random);
      if (std::find(item.tags.begin(), item.tags.end(), t) == item.tags.end()) {
        item.tags.push_back(t);
      }
    }
  }
  return items;
}

void ToProto(const Item& item, v1::Attributes* out) {
  auto add = [&](const char* key) {
    v1::Attribute* attribute = out->add_attributes();
    attribute->set_key(key);
    return attribute;
  };
  add("bucket")->add_values()->set_i(item.bucket);
  add("tenant")->add_values()->set_s(TenantName(item.tenant));
  add("group")->add_values()->set_i(item.group);
  v1::Attribute* tags = add("tag");
  for (int t : item.tags) tags->add_values()->set_s(TagName(t));
}

// One filter: its wire form, which items it selects (decided here from the items' attributes,
// independently of the server), and the exact answers over those items.
struct FilterCase {
  std::string label;  // for the tables
  std::string slug;   // for the ground truth cache file
  bool qps_target = false;
  v1::Filter filter;
  std::vector<uint32_t> position;  // item id -> row in `subset`, kNotMatching if not selected
  size_t matching = 0;
  uint32_t naive_k = 0;  // the naive plan's k (k x ratio)
  Dataset subset;        // the matching items' vectors (row i is item subset_ids[i]), the queries
  GroundTruth truth;     // over `subset`
  bool matches(uint64_t id) const { return id < position.size() && position[id] != kNotMatching; }
};

std::vector<FilterCase> MakeCases(const std::vector<Item>& items, uint64_t seed) {
  std::vector<FilterCase> cases;
  auto add = [&](std::string label, std::string slug, bool qps_target, v1::Filter filter,
                 auto&& selects) {
    FilterCase c;
    c.label = std::move(label);
    c.slug = std::move(slug);
    c.qps_target = qps_target;
    c.filter = std::move(filter);
    c.position.assign(items.size(), kNotMatching);
    for (size_t id = 0; id < items.size(); ++id) {
      if (selects(id)) c.position[id] = static_cast<uint32_t>(c.matching++);
    }
    cases.push_back(std::move(c));
  };
  {
    v1::Filter f;
    v1::Condition* c = f.add_must();
    c->set_key("bucket");
    c->mutable_range()->set_lt(kBuckets / 2);
    add("bucket < 500 (range)", "bucket-lt-500", true, f,
        [&](size_t id) { return items[id].bucket < kBuckets / 2; });
  }
  {
    constexpr int kTenant = 3;
    v1::Filter f;
    v1::Condition* c = f.add_must();
    c->set_key("tenant");
    c->mutable_equals()->set_s(TenantName(kTenant));
    add(absl::StrCat("tenant = \"", TenantName(kTenant), "\" (equals)"), "tenant-eq", true, f,
        [&](size_t id) { return items[id].tenant == kTenant; });
  }
  {
    // The same items as the case above, selected so that the attribute indexes cannot bound
    // them (no must, no should): the server's filtered graph search at 10 %, for comparison.
    constexpr int kTenant = 3;
    v1::Filter f;
    v1::Condition* c = f.add_must_not();
    c->set_key("tenant");
    for (int t = 0; t < kTenants; ++t) {
      if (t != kTenant) c->mutable_any_of()->add_values()->set_s(TenantName(t));
    }
    add(absl::StrCat("not tenant any_of the other ", kTenants - 1, " (must_not)"),
        "tenant-not-others", false, f, [&](size_t id) { return items[id].tenant == kTenant; });
  }
  {
    const std::vector<int> tags = {7, 77, 177};
    constexpr int kExcludedFrom = 900;  // bucket >= 900 is excluded
    v1::Filter f;
    v1::Condition* c = f.add_must();
    c->set_key("tag");
    for (int t : tags) c->mutable_any_of()->add_values()->set_s(TagName(t));
    v1::Condition* n = f.add_must_not();
    n->set_key("bucket");
    n->mutable_range()->set_gte(kExcludedFrom);
    add("tag any_of 3 tags, not bucket >= 900", "tag-any-of-not-bucket", false, f, [&](size_t id) {
      const Item& item = items[id];
      const bool tagged = std::any_of(tags.begin(), tags.end(), [&](int t) {
        return std::find(item.tags.begin(), item.tags.end(), t) != item.tags.end();
      });
      return tagged && item.bucket < kExcludedFrom;
    });
  }
  {
    constexpr int kGroup = 7;
    v1::Filter f;
    v1::Condition* c = f.add_must();
    c->set_key("group");
    c->mutable_equals()->set_i(kGroup);
    add(absl::StrCat("group = ", kGroup, " (equals, 1000 values)"), "group-eq", false, f,
        [&](size_t id) { return items[id].group == kGroup; });
  }
  {
    std::vector<uint64_t> all(items.size());
    std::iota(all.begin(), all.end(), 0);
    std::mt19937_64 random(seed ^ 0x1d5);
    std::shuffle(all.begin(), all.end(), random);
    all.resize(std::min(kAllowListIds, all.size()));
    const std::unordered_set<uint64_t> allowed(all.begin(), all.end());
    v1::Filter f;
    for (uint64_t id : all) f.add_ids(id);
    add(absl::StrCat("ids: ", all.size(), " random ids"), "ids", false, f,
        [&](size_t id) { return allowed.contains(id); });
  }
  return cases;
}

// The matching items of `c` as a data set of their own, and its exact answers (cached as the
// bench caches the unfiltered ones).
absl::Status ComputeTruth(const Dataset& data, size_t k, int threads, FilterCase* c) {
  Dataset& s = c->subset;
  s.name = absl::StrCat(data.name, "-", c->slug);
  s.source = data.source;
  s.n = c->matching;
  s.dim = data.dim;
  s.nq = data.nq;
  s.queries = data.queries;
  s.cache_dir = data.cache_dir;
  s.base.reserve(s.n * s.dim);
  for (size_t id = 0; id < data.n; ++id) {
    if (c->position[id] != kNotMatching)
      s.base.insert(s.base.end(), data.row(id).begin(), data.row(id).end());
  }
  absl::StatusOr<GroundTruth> truth = LoadOrComputeGroundTruth(s, k, threads);
  if (!truth.ok()) return truth.status();
  c->truth = *std::move(truth);
  return absl::OkStatus();
}

// recall@k of one answer row against the exact filtered answer: a returned id counts if it
// matches and is as near as the k-th nearest match. Out of min(k, matching items).
double FilteredRecallOfRow(const FilterCase& c, size_t query, std::span<const uint64_t> ids) {
  const size_t k = c.truth.k;
  const size_t expected = std::min(k, c.matching);
  if (expected == 0) return 1;
  std::vector<uint64_t> rows(ids.size(), kMissingId);  // `ids` in the subset's numbering
  for (size_t i = 0; i < ids.size(); ++i) {
    if (c.matches(ids[i])) rows[i] = c.position[ids[i]];
  }
  return std::min(1.0, RecallOfRow(c.subset, c.truth, query, rows) * k / expected);
}

enum class Plan { kUnfiltered, kFiltered, kNaive };
const char* PlanName(Plan plan) {
  switch (plan) {
    case Plan::kUnfiltered:
      return "unfiltered";
    case Plan::kFiltered:
      return "filtered";
    case Plan::kNaive:
      return "naive";
  }
  return "?";
}

// Slices of one plan, added up.
struct Tally {
  uint64_t queries = 0;
  double seconds = 0;
  double server_cpu_s = 0, client_cpu_s = 0;
  double background_core_seconds = 0;
  uint64_t results = 0;     // filtered: non-padding results checked
  uint64_t violations = 0;  // filtered: results outside the filter
  double qps() const { return seconds > 0 ? queries / seconds : 0; }
  double background_cores() const { return seconds > 0 ? background_core_seconds / seconds : 0; }
  double server_us() const { return queries > 0 ? 1e6 * server_cpu_s / queries : 0; }
  double client_us() const { return queries > 0 ? 1e6 * client_cpu_s / queries : 0; }
  void Add(const Tally& t) {
    queries += t.queries;
    seconds += t.seconds;
    server_cpu_s += t.server_cpu_s;
    client_cpu_s += t.client_cpu_s;
    background_core_seconds += t.background_core_seconds;
    results += t.results;
    violations += t.violations;
  }
};

// config.query_clients clients, each with a channel (and TCP connection) of its own, plaintext
// to the bench's --insecure server.
class QueryClients {
 public:
  QueryClients(const Config& config, const Dataset& data, int port, pid_t server)
      : config_(config), data_(data), server_(server) {
    for (int c = 0; c < config.query_clients; ++c) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(kMaxMessageBytes);
      args.SetMaxSendMessageSize(kMaxMessageBytes);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stubs_.push_back(std::make_unique<Stub>(grpc::CreateCustomChannel(
          absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args)));
    }
  }

  Stub& stub(int c) { return *stubs_[c]; }

  // Queries with `plan` (`c` is the filter; may be null for kUnfiltered): one pass over every
  // query when duration_s is 0, storing each query's answer row (k ids) in `answers`; otherwise
  // for duration_s, each client cycling through the queries from its own starting point.
  absl::StatusOr<Tally> Run(Plan plan, const FilterCase* c, double duration_s,
                            std::vector<uint64_t>* answers) {
    const size_t k = config_.k;
    const size_t nq = data_.nq;
    const int clients = static_cast<int>(stubs_.size());
    const uint32_t call_k = plan == Plan::kNaive ? c->naive_k : static_cast<uint32_t>(k);
    if (answers != nullptr) answers->assign(nq * k, kMissingId);
    std::atomic<bool> stop{false};
    std::atomic<size_t> next{0};
    std::vector<absl::Status> errors(clients);
    std::vector<Tally> tallies(clients);
    const PhaseMeter meter(server_);
    const Clock::time_point start = Clock::now();
    auto drive = [&](int client) {
      Stub& stub = *stubs_[client];
      Tally& tally = tallies[client];
      v1::QueryIndexRequest request;
      request.set_name(kIndex);
      request.set_k(call_k);
      request.set_ef(config_.mixed_ef);
      if (plan == Plan::kFiltered) *request.mutable_filter() = c->filter;
      v1::QueryIndexResponse response;
      std::vector<uint64_t> row(k);
      for (size_t i = client * nq / clients;; ++i) {
        size_t q;
        if (duration_s == 0) {
          q = next.fetch_add(1);
          if (q >= nq) return;
        } else {
          if (stop.load(std::memory_order_relaxed)) return;
          q = i % nq;
        }
        const std::span<const float> query = data_.query(q);
        request.mutable_vectors()->Assign(query.begin(), query.end());
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
        const grpc::Status status = stub.QueryIndex(&context, request, &response);
        if (!status.ok()) {
          errors[client] = absl::Status(
              static_cast<absl::StatusCode>(status.error_code()),
              absl::StrCat(PlanName(plan), " QueryIndex", c ? " (" + c->label + ")" : "", ": ",
                           status.error_message()));
          return;
        }
        if (static_cast<size_t>(response.ids_size()) != call_k) {
          errors[client] = absl::InternalError(absl::StrCat(
              PlanName(plan), " QueryIndex returned ", response.ids_size(), " ids, k is ", call_k));
          return;
        }
        ++tally.queries;
        if (plan == Plan::kNaive) {
          // The first k results that match, in the server's order (nearest first).
          size_t kept = 0;
          for (uint64_t id : response.ids()) {
            if (kept == k) break;
            if (c->matches(id)) row[kept++] = id;
          }
          std::fill(row.begin() + kept, row.end(), kMissingId);
        } else {
          std::copy(response.ids().begin(), response.ids().end(), row.begin());
        }
        if (plan == Plan::kFiltered) {
          for (uint64_t id : row) {
            if (id == kMissingId) continue;
            ++tally.results;
            tally.violations += !c->matches(id);
          }
        }
        if (answers != nullptr) std::copy(row.begin(), row.end(), answers->begin() + q * k);
      }
    };
    std::vector<std::thread> threads;
    for (int client = 0; client < clients; ++client) threads.emplace_back(drive, client);
    if (duration_s > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(duration_s));
      stop = true;
    }
    for (std::thread& thread : threads) thread.join();
    Tally total;
    for (const Tally& t : tallies) total.Add(t);
    total.seconds = SecondsSince(start);
    total.server_cpu_s = meter.server_cpu_s();
    total.client_cpu_s = meter.self_cpu_s();
    total.background_core_seconds = meter.background_cores() * total.seconds;
    for (const absl::Status& s : errors) {
      if (!s.ok()) return s;
    }
    return total;
  }

 private:
  const Config& config_;
  const Dataset& data_;
  const pid_t server_;
  std::vector<std::unique_ptr<Stub>> stubs_;
};

// Adds every item with its attributes in AddItems calls of config.ingest_batch from one client.
absl::Status Ingest(Stub& stub, const Dataset& data, const std::vector<Item>& items,
                    const Config& config) {
  v1::AddItemsRequest request;
  v1::AddItemsResponse response;
  request.set_name(kIndex);
  for (size_t first = 0; first < data.n; first += config.ingest_batch) {
    const size_t last = std::min(first + config.ingest_batch, data.n);
    request.clear_vectors();
    request.clear_ids();
    request.clear_attributes();
    request.mutable_vectors()->Add(data.base.begin() + first * data.dim,
                                   data.base.begin() + last * data.dim);
    for (size_t id = first; id < last; ++id) {
      request.add_ids(id);
      ToProto(items[id], request.add_attributes());
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    const grpc::Status status = stub.AddItems(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(
          static_cast<absl::StatusCode>(status.error_code()),
          absl::StrCat("AddItems of ids ", first, "..", last - 1, ": ", status.error_message()));
    }
    if (response.added() != last - first) {
      return absl::InternalError(
          absl::StrCat("AddItems of ids ", first, "..", last - 1, " added ", response.added()));
    }
  }
  return absl::OkStatus();
}

absl::Status CreateIndex(Stub& stub, const Dataset& data, const Config& config) {
  v1::CreateIndexRequest create;
  create.set_name(kIndex);
  create.set_space(v1::L2);
  create.set_dim(static_cast<uint32_t>(data.dim));
  v1::CreateIndexResponse created;
  grpc::ClientContext create_context;
  if (grpc::Status s = stub.CreateIndex(&create_context, create, &created); !s.ok()) {
    return absl::InternalError(absl::StrCat("CreateIndex: ", s.error_message()));
  }
  v1::InitIndexRequest init;
  init.set_name(kIndex);
  init.set_max_elements(data.n);
  init.set_ef_construction(config.ef_construction);
  init.set_m(config.m);
  v1::InitIndexResponse initialised;
  grpc::ClientContext init_context;
  if (grpc::Status s = stub.InitIndex(&init_context, init, &initialised); !s.ok()) {
    return absl::InternalError(absl::StrCat("InitIndex: ", s.error_message()));
  }
  return absl::OkStatus();
}

// A table of information: the first column left-aligned, the others right-aligned.
void PrintColumns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string text;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      text += i == 0 ? absl::StrFormat("%-*s", width[i], rows[r][i])
                     : absl::StrFormat("  %*s", width[i], rows[r][i]);
    }
    std::cout << text << "\n";
    if (r == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      std::cout << std::string(total - 2, '-') << "\n";
    }
  }
}

struct CaseResult {
  double recall_filtered = 0, recall_naive = 0;
  Tally unfiltered, filtered, naive;  // the timed slices, summed over the rounds
  std::vector<double> round_ratios;   // filtered / unfiltered QPS per round
  uint64_t violations = 0;            // every filtered query, recall pass and timed slices
  uint64_t results = 0;
};

void Progress(const std::string& what, Clock::time_point start) {
  std::cerr << "[filtered] " << what << absl::StrFormat(" (%.0f s)", SecondsSince(start))
            << std::endl;
}

}  // namespace

int RunFiltered(const Config& config) {
  auto fail = [](const absl::Status& status) {
    std::cerr << "luxdb-bench --filtered: " << status.message() << "\n";
    return 1;
  };
  const Clock::time_point start = Clock::now();
  absl::StatusOr<Dataset> data = LoadDataset(config);
  if (!data.ok()) return fail(data.status());
  if (data->n == 0 || data->nq == 0) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat(data->source, " has ", data->n, " base vectors and ", data->nq, " queries")));
  }
  std::cout << "data: " << data->source << ": " << data->n << " base x " << data->dim << ", "
            << data->nq << " queries (loaded in " << absl::StrFormat("%.1f", SecondsSince(start))
            << " s)\n"
            << std::flush;
  const std::vector<Item> items = DrawItems(data->n, config.seed + 17);
  std::vector<FilterCase> cases = MakeCases(items, config.seed);
  const uint32_t max_ratio = std::max<uint32_t>(1, engine::kMaxK / config.k);
  for (FilterCase& c : cases) {
    const double ratio =
        c.matching == 0 ? max_ratio : std::ceil(static_cast<double>(data->n) / c.matching);
    c.naive_k = config.k * static_cast<uint32_t>(std::min<double>(ratio, max_ratio));
  }

  Progress("exact answers: unfiltered and per filter, brute force...", start);
  absl::StatusOr<GroundTruth> truth = LoadOrComputeGroundTruth(*data, config.k, config.threads);
  if (!truth.ok()) return fail(truth.status());
  for (FilterCase& c : cases) {
    if (absl::Status s = ComputeTruth(*data, config.k, config.threads, &c); !s.ok()) return fail(s);
  }
  Progress("exact answers ready", start);

  BenchServer server(config);
  if (absl::Status s = server.Start(); !s.ok()) return fail(s);
  std::optional<QueryClients> clients_holder;
  QueryClients& clients = clients_holder.emplace(config, *data, server.port(), server.pid());
  if (absl::Status s = CreateIndex(clients.stub(0), *data, config); !s.ok()) return fail(s);
  Progress(absl::StrCat("adding ", data->n, " items with attributes in batches of ",
                        config.ingest_batch, "..."),
           start);
  const Clock::time_point ingest_start = Clock::now();
  if (absl::Status s = Ingest(clients.stub(0), *data, items, config); !s.ok()) return fail(s);
  const double ingest_s = SecondsSince(ingest_start);
  Progress(absl::StrFormat("added in %.1f s (%.0f items/s)", ingest_s, data->n / ingest_s), start);

  // Untimed: the connections warm, and the recall of every plan over every query.
  std::vector<uint64_t> answers;
  absl::StatusOr<Tally> unfiltered_pass = clients.Run(Plan::kUnfiltered, nullptr, 0, &answers);
  if (!unfiltered_pass.ok()) return fail(unfiltered_pass.status());
  const double unfiltered_recall = Recall(*data, *truth, answers, config.k);
  Progress(absl::StrFormat("unfiltered recall@%d: %.4f", config.k, unfiltered_recall), start);

  std::vector<CaseResult> results(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const FilterCase& c = cases[i];
    CaseResult& r = results[i];
    auto recall = [&](Plan plan) -> absl::StatusOr<double> {
      absl::StatusOr<Tally> pass = clients.Run(plan, &c, 0, &answers);
      if (!pass.ok()) return pass.status();
      r.violations += pass->violations;
      r.results += pass->results;
      double sum = 0;
      for (size_t q = 0; q < data->nq; ++q) {
        sum += FilteredRecallOfRow(c, q, std::span(answers).subspan(q * config.k, config.k));
      }
      return sum / data->nq;
    };
    absl::StatusOr<double> filtered_recall = recall(Plan::kFiltered);
    if (!filtered_recall.ok()) return fail(filtered_recall.status());
    absl::StatusOr<double> naive_recall = recall(Plan::kNaive);
    if (!naive_recall.ok()) return fail(naive_recall.status());
    r.recall_filtered = *filtered_recall;
    r.recall_naive = *naive_recall;
    Progress(absl::StrFormat("%s: %d matching; recall@%d filtered %.4f, naive (k %d) %.4f; "
                             "%d results outside the filter",
                             c.label, c.matching, config.k, r.recall_filtered, c.naive_k,
                             r.recall_naive, r.violations),
             start);
    for (int round = 0; round < config.filtered_rounds; ++round) {
      std::vector<Plan> order = {Plan::kUnfiltered, Plan::kFiltered, Plan::kNaive};
      if (round % 2 == 1) std::reverse(order.begin(), order.end());
      Tally slice[3];
      for (Plan plan : order) {
        absl::StatusOr<Tally> t = clients.Run(plan, &c, config.duration_s, nullptr);
        if (!t.ok()) return fail(t.status());
        slice[static_cast<int>(plan)] = *t;
      }
      r.unfiltered.Add(slice[0]);
      r.filtered.Add(slice[1]);
      r.naive.Add(slice[2]);
      r.violations += slice[1].violations;
      r.results += slice[1].results;
      const double ratio = slice[0].qps() > 0 ? slice[1].qps() / slice[0].qps() : 0;
      r.round_ratios.push_back(ratio);
      Progress(absl::StrFormat("%s, round %d: q/s unfiltered %.0f, filtered %.0f (%.2fx), naive "
                               "%.0f",
                               c.label, round + 1, slice[0].qps(), slice[1].qps(), ratio,
                               slice[2].qps()),
               start);
    }
  }
  const uint64_t server_rss = ProcStatusBytes(server.pid(), "VmRSS");
  clients_holder.reset();  // their connections closed first, the server's shutdown is quick
  const Clock::time_point stop_start = Clock::now();
  if (absl::Status s = server.Stop(); !s.ok()) return fail(s);
  Progress(absl::StrFormat("server stopped in %.1f s", SecondsSince(stop_start)), start);

  // ---- the report
  Tally all_unfiltered;
  for (const CaseResult& r : results) all_unfiltered.Add(r.unfiltered);
  std::cout << "\nLuxDB --filtered: " << data->name << " " << data->n << " x " << data->dim << ", "
            << data->nq << " queries, l2, M=" << config.m
            << " ef_construction=" << config.ef_construction << "; k=" << config.k
            << " ef=" << config.mixed_ef << "; " << config.query_clients
            << " clients, each its own connection and one query per call; server --threads "
            << config.threads << "\n"
            << absl::StrFormat(
                   "QPS: per filter %d round(s) of a %.1f s slice per plan (unfiltered, "
                   "filtered, naive; order reversed every other round), summed\n",
                   config.filtered_rounds, config.duration_s)
            << "naive: unfiltered query at k x ratio (ratio = ceil(1 / selectivity), at most "
            << max_ratio << " by kMaxK " << engine::kMaxK
            << "), filtered on the client, first k matches kept\n"
            << absl::StrFormat(
                   "ingest with attributes: %.1f s, %.0f items/s; unfiltered recall@%d %.4f; "
                   "server VmRSS %.1f MiB\n\n",
                   ingest_s, data->n / ingest_s, config.k, unfiltered_recall,
                   server_rss / double{1 << 20});

  std::vector<std::vector<std::string>> table = {
      {"filter", "matching", absl::StrCat("recall@", config.k), "naive recall", "q/s unfiltered",
       "q/s filtered", "filtered/unf.", "per round", "q/s naive (k)", "outside filter"}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const FilterCase& c = cases[i];
    const CaseResult& r = results[i];
    std::string rounds;
    for (double ratio : r.round_ratios) {
      absl::StrAppend(&rounds, rounds.empty() ? "" : " ", absl::StrFormat("%.2f", ratio));
    }
    table.push_back(
        {c.label, absl::StrFormat("%.3f %% (%d)", 100.0 * c.matching / data->n, c.matching),
         absl::StrFormat("%.4f", r.recall_filtered), absl::StrFormat("%.4f", r.recall_naive),
         absl::StrFormat("%.0f", r.unfiltered.qps()), absl::StrFormat("%.0f", r.filtered.qps()),
         absl::StrFormat("%.2f",
                         r.unfiltered.qps() > 0 ? r.filtered.qps() / r.unfiltered.qps() : 0),
         rounds, absl::StrFormat("%.0f (%d)", r.naive.qps(), c.naive_k),
         absl::StrFormat("%d of %d", r.violations, r.results)});
  }
  PrintColumns(table);

  // Where the time goes: CPU per query of the server and of this process (the clients), and
  // how busy the rest of the machine was meanwhile.
  std::cout << "\nCPU us per query, server / bench client, and others busy (cores), in the "
               "timed slices:\n";
  std::vector<std::vector<std::string>> cpu = {
      {"filter", "unfiltered", "filtered", "naive", "others busy"}};
  auto us = [](const Tally& t) {
    return absl::StrFormat("%.0f / %.0f", t.server_us(), t.client_us());
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const CaseResult& r = results[i];
    Tally all = r.unfiltered;
    all.Add(r.filtered);
    all.Add(r.naive);
    cpu.push_back({cases[i].label, us(r.unfiltered), us(r.filtered), us(r.naive),
                   absl::StrFormat("%.2f", all.background_cores())});
  }
  PrintColumns(cpu);

  std::cout << "\n";
  std::vector<TargetRow> rows = {
      {absl::StrFormat("recall@%d unfiltered (reference: what the data allows at ef %d)", config.k,
                       config.mixed_ef),
       absl::StrFormat("%.4f", unfiltered_recall), "", ""}};
  uint64_t violations = 0, checked = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const FilterCase& c = cases[i];
    const CaseResult& r = results[i];
    violations += r.violations;
    checked += r.results;
    rows.push_back({absl::StrFormat("recall@%d filtered, %s", config.k, c.label),
                    absl::StrFormat("%.4f", r.recall_filtered),
                    absl::StrFormat(">= %.2f", kMinRecall),
                    PassFail(r.recall_filtered >= kMinRecall)});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const FilterCase& c = cases[i];
    const CaseResult& r = results[i];
    if (!c.qps_target) continue;
    const double ratio = r.unfiltered.qps() > 0 ? r.filtered.qps() / r.unfiltered.qps() : 0;
    rows.push_back({absl::StrFormat("QPS filtered / unfiltered, %s", c.label),
                    absl::StrFormat("%.2f", ratio), absl::StrFormat(">= %.1f", kMinQpsRatio),
                    PassFail(ratio >= kMinQpsRatio)});
  }
  rows.push_back({absl::StrCat("results outside their filter (of ", checked, " checked)"),
                  absl::StrCat(violations), absl::StrCat(kMaxViolations),
                  PassFail(violations <= kMaxViolations)});
  rows.push_back({"others busy, cores, all timed slices",
                  absl::StrFormat("%.2f",
                                  [&] {
                                    Tally all;
                                    for (const CaseResult& r : results) {
                                      all.Add(r.unfiltered);
                                      all.Add(r.filtered);
                                      all.Add(r.naive);
                                    }
                                    return all.background_cores();
                                  }()),
                  "< 0.2 for clean figures", ""});
  const int failed = PrintTargetTable(rows);
  std::cout << "\n--filtered: "
            << (failed == 0 ? "every target met" : absl::StrCat(failed, " FAIL")) << " ("
            << absl::StrFormat("%.0f", SecondsSince(start)) << " s)\n";
  if (violations > kMaxViolations) return 1;
  return config.check && failed > 0 ? 1 : 0;
}

}  // namespace luxdb::bench
