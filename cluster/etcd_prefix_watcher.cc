#include "cluster/etcd_prefix_watcher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace luxdb::cluster {
namespace {

// A Read of the stream waits at most this long before checking again (the stream has no
// deadline; the destructor cancels it).
constexpr std::chrono::minutes kReadSlice{1};

WatchEvent EventOf(const etcdserverpb::Event& event) {
  WatchEvent out;
  out.type = event.type() == etcdserverpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                         : WatchEvent::Type::kPut;
  const etcdserverpb::KeyValue& kv = event.kv();
  out.kv = KeyValue{kv.key(),          kv.value(),   kv.create_revision(),
                    kv.mod_revision(), kv.version(), kv.lease()};
  return out;
}

}  // namespace

EtcdPrefixWatcher::EtcdPrefixWatcher(std::shared_ptr<EtcdEndpoints> endpoints, std::string prefix,
                                     int64_t start_revision, OnEvents on_events,
                                     std::function<void()> on_reset)
    : endpoints_(std::move(endpoints)),
      prefix_(std::move(prefix)),
      on_events_(std::move(on_events)),
      on_reset_(std::move(on_reset)),
      next_revision_(start_revision) {
  thread_ = std::thread([this] { Run(); });
}

EtcdPrefixWatcher::~EtcdPrefixWatcher() {
  {
    engine::MutexLock lock(&mu_);
    stopping_ = true;
    if (stream_ != nullptr) stream_->Cancel();
    stop_.SignalAll();
  }
  thread_.join();
}

bool EtcdPrefixWatcher::SleepUntil(Clock::time_point until) {
  engine::MutexLock lock(&mu_);
  while (!stopping_ && stop_.WaitUntil(&mu_, until)) {
  }
  return !stopping_;
}

bool EtcdPrefixWatcher::Stopping() {
  engine::MutexLock lock(&mu_);
  return stopping_;
}

bool EtcdPrefixWatcher::Register(Stream* stream) {
  engine::MutexLock lock(&mu_);
  if (stopping_ && stream != nullptr) return false;
  stream_ = stream;
  return true;
}

void EtcdPrefixWatcher::Run() {
  for (;;) {
    const size_t endpoint = endpoints_->current();
    endpoints_->AwaitConnection(endpoint, std::chrono::system_clock::time_point::max(),
                                [this] { return Stopping(); });
    auto stream = std::make_unique<Stream>(
        [&](grpc::ClientContext* context, Stream::Reactor* reactor) {
          endpoints_->watch(endpoint).async()->Watch(context, reactor);
        },
        RequireLeader);
    if (!Register(stream.get())) return;  // the stream's destructor cancels it
    std::string why;
    const End end = Follow(*stream, &why);
    Register(nullptr);
    const grpc::Status status = stream->Finish(Clock::now() + kStreamCloseGrace);
    stream.reset();
    if (Stopping()) return;
    if (end == End::kCompacted) {
      spdlog::warn("etcd watch of {}: {}; the watcher stops for the caller to read again",
                   Quoted(prefix_), why);
      on_reset_();
      return;
    }
    endpoints_->Failed(endpoint);
    spdlog::info("etcd watch of {} at {} ended ({}); reopening from revision {}", Quoted(prefix_),
                 endpoints_->name(endpoint), why.empty() ? Describe(status) : why, next_revision_);
    if (!SleepUntil(Clock::now() + pause_.Next())) return;
  }
}

EtcdPrefixWatcher::End EtcdPrefixWatcher::Follow(Stream& stream, std::string* why) {
  const KeyRange range = PrefixRange(prefix_);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest& create = *request.mutable_create_request();
  create.set_key(range.key);
  create.set_range_end(range.range_end);
  create.set_start_revision(next_revision_);
  create.set_fragment(true);
  if (!stream.Write(request, Clock::now() + endpoints_->options().call_timeout)) {
    return End::kBroken;
  }
  // The events of an answer etcd split into fragments, delivered once the last one is in so
  // that a batch holds whole revisions.
  std::vector<WatchEvent> batch;
  for (;;) {
    etcdserverpb::WatchResponse response;
    const Stream::ReadResult read = stream.Read(&response, Clock::now() + kReadSlice);
    if (read == Stream::ReadResult::kTimeout) continue;
    if (read == Stream::ReadResult::kClosed) return End::kBroken;
    if (response.compact_revision() != 0) {
      *why = absl::StrCat("etcd no longer has revision ", next_revision_,
                          " (compacted up to revision ", response.compact_revision(), ")");
      return End::kCompacted;
    }
    if (response.created()) {
      if (next_revision_ == 0) next_revision_ = response.header().revision() + 1;
      pause_.Reset();
    }
    if (response.canceled()) {
      *why = absl::StrCat("etcd cancelled the watch: ", response.cancel_reason());
      return End::kBroken;
    }
    for (const etcdserverpb::Event& event : response.events()) batch.push_back(EventOf(event));
    if (response.fragment() || batch.empty()) continue;
    next_revision_ = batch.back().kv.mod_revision + 1;
    on_events_(batch);
    batch.clear();
  }
}

}  // namespace luxdb::cluster
