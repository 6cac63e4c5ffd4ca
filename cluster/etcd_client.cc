#include "cluster/etcd_client.h"

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cluster/etcd_endpoints.h"
#include "cluster/etcd_lease_keeper.h"
#include "cluster/etcd_prefix_watcher.h"
#include "luxdb/connect_options.h"

namespace luxdb::cluster {
namespace {

// The key Connect reads to check that etcd answers (etcdctl's endpoint health reads it too).
constexpr char kProbeKey[] = "health";
// A paged GetPrefix whose revision etcd compacts between two pages starts again, at most this
// many times in all.
constexpr int kGetPrefixTries = 3;

KeyValue KeyValueOf(const etcdserverpb::KeyValue& kv) {
  return KeyValue{kv.key(),          kv.value(),   kv.create_revision(),
                  kv.mod_revision(), kv.version(), kv.lease()};
}

etcdserverpb::RequestOp PutOp(absl::string_view key, absl::string_view value, int64_t lease) {
  etcdserverpb::RequestOp op;
  etcdserverpb::PutRequest& put = *op.mutable_request_put();
  put.set_key(std::string(key));
  put.set_value(std::string(value));
  put.set_lease(lease);
  return op;
}

etcdserverpb::Compare Condition(absl::string_view key, etcdserverpb::Compare::CompareTarget target,
                                int64_t revision) {
  etcdserverpb::Compare compare;
  compare.set_result(etcdserverpb::Compare::EQUAL);
  compare.set_target(target);
  compare.set_key(std::string(key));
  if (target == etcdserverpb::Compare::CREATE) {
    compare.set_create_revision(revision);
  } else {
    compare.set_mod_revision(revision);
  }
  return compare;
}

// Runs a conditional transaction: true if its conditions held and it wrote (see the header
// for why an earlier UNAVAILABLE attempt turns "false" into UNAVAILABLE).
absl::StatusOr<bool> Transact(EtcdEndpoints& endpoints, absl::string_view what,
                              const etcdserverpb::TxnRequest& request) {
  etcdserverpb::TxnResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints.Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints.kv(endpoint).Txn(context, request, &response);
      });
  if (!outcome.status.ok()) return endpoints.Error(what, outcome);
  if (!response.succeeded() && outcome.earlier_unavailable) {
    return absl::UnavailableError(
        absl::StrCat("etcd ", what, ": outcome unknown: the condition was false at ",
                     endpoints.name(outcome.endpoint),
                     ", but an earlier attempt that failed may have been applied and made it so (",
                     outcome.attempts, "); read the key again"));
  }
  return response.succeeded();
}

}  // namespace

EtcdClient::EtcdClient(std::shared_ptr<EtcdEndpoints> endpoints)
    : endpoints_(std::move(endpoints)) {}

EtcdClient::~EtcdClient() = default;

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Connect(EtcdOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd: no endpoints given (HOST:PORT, at least one)");
  }
  if (options.call_timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError(absl::StrCat("etcd: the call timeout must be positive, got ",
                                                   options.call_timeout.count(), " ms"));
  }
  std::unique_ptr<EtcdClient> client(
      new EtcdClient(std::make_shared<EtcdEndpoints>(std::move(options))));
  absl::StatusOr<std::optional<KeyValue>> probe = client->Get(kProbeKey);
  if (!probe.ok()) {
    return absl::Status(probe.status().code(),
                        absl::StrCat("cannot reach etcd: ", probe.status().message()));
  }
  return client;
}

absl::StatusOr<std::vector<std::string>> EtcdClient::ParseEndpoints(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("--cluster-etcd is empty: give HOST:PORT[,HOST:PORT...]");
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  std::vector<std::string> endpoints;
  std::set<std::string> seen;
  for (size_t i = 0; i < parts.size(); ++i) {
    const absl::string_view part = absl::StripAsciiWhitespace(parts[i]);
    const std::string what = absl::StrCat("--cluster-etcd endpoint ", i + 1, " of ", parts.size());
    if (part.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is empty in '", text, "'"));
    }
    absl::StatusOr<std::pair<std::string, int>> address = client::ParseAddress(part, what);
    if (!address.ok()) return address.status();
    std::string endpoint = client::JoinHostPort(address->first, address->second);
    if (!seen.insert(endpoint).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ('", part, "') is given twice in '", text, "'"));
    }
    endpoints.push_back(std::move(endpoint));
  }
  return endpoints;
}

const std::vector<std::string>& EtcdClient::endpoints() const {
  return endpoints_->options().endpoints;
}

absl::StatusOr<std::optional<KeyValue>> EtcdClient::Get(absl::string_view key) {
  etcdserverpb::RangeRequest request;
  request.set_key(std::string(key));
  etcdserverpb::RangeResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints_->kv(endpoint).Range(context, request, &response);
      });
  if (!outcome.status.ok()) return endpoints_->Error(absl::StrCat("Get of ", Quoted(key)), outcome);
  if (response.kvs_size() == 0) return std::nullopt;
  return KeyValueOf(response.kvs(0));
}

absl::StatusOr<std::vector<KeyValue>> EtcdClient::GetPrefix(absl::string_view prefix,
                                                            int64_t* revision) {
  const KeyRange range = PrefixRange(prefix);
  const std::string what = absl::StrCat("Range of prefix ", Quoted(prefix));
  absl::Status compacted;
  for (int tries = 0; tries < kGetPrefixTries; ++tries) {
    std::vector<KeyValue> out;
    etcdserverpb::RangeRequest request;
    request.set_key(range.key);
    request.set_range_end(range.range_end);
    request.set_limit(kRangePageSize);
    int64_t read_at = 0;  // the revision of the first page, which the next ones read
    for (;;) {
      etcdserverpb::RangeResponse response;
      request.set_revision(read_at);
      const EtcdEndpoints::Outcome outcome =
          endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
            return endpoints_->kv(endpoint).Range(context, request, &response);
          });
      if (!outcome.status.ok()) {
        // etcd's answer for a revision it compacted meanwhile: read again from the newest.
        if (read_at != 0 && outcome.status.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
          compacted = endpoints_->Error(what, outcome);
          break;
        }
        return endpoints_->Error(what, outcome);
      }
      if (read_at == 0) read_at = response.header().revision();
      for (const etcdserverpb::KeyValue& kv : response.kvs()) out.push_back(KeyValueOf(kv));
      if (!response.more() || response.kvs_size() == 0) {
        if (revision != nullptr) *revision = read_at;
        return out;
      }
      request.set_key(response.kvs(response.kvs_size() - 1).key() + '\0');
    }
  }
  return compacted;
}

absl::StatusOr<int64_t> EtcdClient::Put(absl::string_view key, absl::string_view value,
                                        int64_t lease) {
  const etcdserverpb::RequestOp op = PutOp(key, value, lease);
  etcdserverpb::PutResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints_->kv(endpoint).Put(context, op.request_put(), &response);
      });
  if (!outcome.status.ok()) return endpoints_->Error(absl::StrCat("Put of ", Quoted(key)), outcome);
  return response.header().revision();
}

absl::StatusOr<bool> EtcdClient::Create(absl::string_view key, absl::string_view value,
                                        int64_t lease) {
  etcdserverpb::TxnRequest request;
  *request.add_compare() = Condition(key, etcdserverpb::Compare::CREATE, 0);
  *request.add_success() = PutOp(key, value, lease);
  return Transact(*endpoints_, absl::StrCat("Create of ", Quoted(key)), request);
}

absl::StatusOr<bool> EtcdClient::CompareAndPut(absl::string_view key, int64_t mod_revision,
                                               absl::string_view value, int64_t lease) {
  etcdserverpb::TxnRequest request;
  *request.add_compare() = Condition(key, etcdserverpb::Compare::MOD, mod_revision);
  *request.add_success() = PutOp(key, value, lease);
  return Transact(*endpoints_,
                  absl::StrCat("CompareAndPut of ", Quoted(key), " at revision ", mod_revision),
                  request);
}

absl::StatusOr<bool> EtcdClient::CompareAndPutAll(const std::vector<Write>& writes) {
  if (writes.empty()) return true;
  etcdserverpb::TxnRequest request;
  std::set<absl::string_view> keys;
  for (const Write& write : writes) {
    if (!keys.insert(write.key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd CompareAndPutAll: key ", Quoted(write.key),
                       " is written twice (one transaction can write a key once)"));
    }
    *request.add_compare() =
        Condition(write.key, etcdserverpb::Compare::MOD, write.expected_mod_revision);
    if (write.check_only) continue;
    if (write.erase) {
      request.add_success()->mutable_request_delete_range()->set_key(write.key);
    } else {
      *request.add_success() = PutOp(write.key, write.value, write.lease);
    }
  }
  return Transact(*endpoints_,
                  absl::StrCat("CompareAndPutAll of ", writes.size(), " keys from ",
                               Quoted(writes.front().key)),
                  request);
}

absl::Status EtcdClient::Delete(absl::string_view key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(std::string(key));
  etcdserverpb::DeleteRangeResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints_->kv(endpoint).DeleteRange(context, request, &response);
      });
  if (!outcome.status.ok())
    return endpoints_->Error(absl::StrCat("Delete of ", Quoted(key)), outcome);
  return absl::OkStatus();
}

absl::Status EtcdClient::DeletePrefix(absl::string_view prefix) {
  if (prefix.empty()) {
    return absl::InvalidArgumentError(
        "etcd DeletePrefix: the prefix is empty, which would delete every key");
  }
  const KeyRange range = PrefixRange(prefix);
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(range.key);
  request.set_range_end(range.range_end);
  etcdserverpb::DeleteRangeResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints_->kv(endpoint).DeleteRange(context, request, &response);
      });
  if (!outcome.status.ok()) {
    return endpoints_->Error(absl::StrCat("Delete of prefix ", Quoted(prefix)), outcome);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(std::chrono::seconds ttl) {
  if (ttl < std::chrono::seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd GrantLease: the TTL must be at least 1 s, got ", ttl.count(), " s"));
  }
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  etcdserverpb::LeaseGrantResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints_->lease(endpoint).LeaseGrant(context, request, &response);
      });
  const std::string what = absl::StrCat("LeaseGrant of ", ttl.count(), " s");
  if (!outcome.status.ok()) return endpoints_->Error(what, outcome);
  if (!response.error().empty()) {
    return absl::UnknownError(absl::StrCat(
        "etcd ", what, " at ", endpoints_->name(outcome.endpoint), ": ", response.error()));
  }
  return response.id();
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  const EtcdEndpoints::Outcome outcome =
      endpoints_->Call([&](size_t endpoint, grpc::ClientContext* context) {
        return endpoints_->lease(endpoint).LeaseRevoke(context, request, &response);
      });
  // After an attempt that may have revoked it, "not found" is that attempt's doing.
  if (outcome.status.ok() ||
      (outcome.earlier_unavailable && outcome.status.error_code() == grpc::StatusCode::NOT_FOUND)) {
    return absl::OkStatus();
  }
  return endpoints_->Error(absl::StrCat("LeaseRevoke of lease ", absl::Hex(lease)), outcome);
}

std::unique_ptr<EtcdClient::LeaseKeeper> EtcdClient::KeepAlive(int64_t lease,
                                                               std::chrono::seconds ttl,
                                                               std::function<void()> on_lost) {
  return std::make_unique<EtcdLeaseKeeper>(endpoints_, lease, ttl, std::move(on_lost));
}

std::unique_ptr<EtcdClient::Watcher> EtcdClient::WatchPrefix(
    absl::string_view prefix, int64_t start_revision,
    std::function<void(const std::vector<WatchEvent>&)> on_events, std::function<void()> on_reset) {
  return std::make_unique<EtcdPrefixWatcher>(endpoints_, std::string(prefix), start_revision,
                                             std::move(on_events), std::move(on_reset));
}

}  // namespace luxdb::cluster
