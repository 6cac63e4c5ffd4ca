#include "server/request_log.h"

#include <algorithm>
#include <bit>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/logging.h"

namespace luxdb::server {
namespace {

// Builds one line's fields in text ("key=value ...") or as JSON members ("\"key\":value,...").
class Fields {
 public:
  Fields(LogFormat format, absl::string_view message) : json_(format == LogFormat::kJson) {
    if (json_) {
      out_ = "\"msg\":";
      AppendJsonString(&out_, message);
    } else {
      out_ = std::string(message);
    }
  }

  void Text(absl::string_view key, absl::string_view value) {
    Key(key);
    if (json_) {
      AppendJsonString(&out_, value);
    } else if (IsPlain(value)) {
      out_.append(value.data(), value.size());
    } else {
      AppendQuotedText(&out_, value);
    }
  }
  void Number(absl::string_view key, uint64_t value) {
    Key(key);
    absl::StrAppend(&out_, value);
  }
  void Milliseconds(absl::string_view key, uint64_t nanoseconds) {
    Key(key);
    absl::StrAppend(&out_, absl::StrFormat("%.3f", static_cast<double>(nanoseconds) / 1e6));
  }
  void Seconds(absl::string_view key, double seconds) {
    Key(key);
    absl::StrAppend(&out_, absl::StrFormat("%.2f", seconds));
  }
  // JSON: "key":{ ...; text: nothing (the members follow as fields of their own).
  void OpenObject(absl::string_view key) {
    if (!json_) return;
    Key(key);
    out_ += '{';
    first_in_object_ = true;
  }
  void CloseObject() {
    if (json_) out_ += '}';
  }

  const std::string& str() const { return out_; }

 private:
  // A value the text form need not quote: a word of letters, digits and punctuation that
  // cannot be confused with the line's syntax.
  static bool IsPlain(absl::string_view value) {
    return !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
             absl::string_view("_-.:/@+[]").find(c) != absl::string_view::npos;
    });
  }

  void Key(absl::string_view key) {
    if (json_) {
      if (!first_in_object_) out_ += ',';
      first_in_object_ = false;
      AppendJsonString(&out_, key);
      out_ += ':';
    } else {
      absl::StrAppend(&out_, " ", key, "=");
    }
  }

  const bool json_;
  bool first_in_object_ = false;  // JSON: the next member opens an object (no comma)
  std::string out_;
};

}  // namespace

RequestLog::RequestLog(std::shared_ptr<spdlog::logger> logger, LogFormat format,
                       std::chrono::milliseconds summary_period)
    : logger_(std::move(logger)),
      format_(format),
      enabled_(logger_ != nullptr && logger_->should_log(spdlog::level::info)),
      summary_period_(summary_period) {
  {
    engine::MutexLock lock(&summary_mu_);
    last_summary_ = std::chrono::steady_clock::now();
  }
  if (enabled_) thread_ = std::thread([this] { SummaryLoop(); });
}

RequestLog::~RequestLog() {
  if (!thread_.joinable()) return;
  {
    engine::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  stop_cv_.SignalAll();
  thread_.join();
  Summarize();
}

size_t RequestLog::BucketOf(uint64_t nanoseconds) {
  if (nanoseconds < 8) return nanoseconds;
  const int top = std::bit_width(nanoseconds) - 1;  // 3..63
  const uint64_t eighth = (nanoseconds >> (top - 3)) & 7;
  return 8 + static_cast<size_t>(top - 3) * 8 + eighth;
}

uint64_t RequestLog::BucketUpperBound(size_t bucket) {
  if (bucket < 8) return bucket;
  const int shift = static_cast<int>((bucket - 8) / 8);
  const uint64_t eighth = (bucket - 8) % 8;
  return ((8 + eighth + 1) << shift) - 1;
}

void RequestLog::Record(const CallRecord& call) {
  if (!enabled_) return;
  if (WritesLine(call.method, call.code)) {
    WriteLine(call);
    return;
  }
  const uint64_t nanoseconds = static_cast<uint64_t>(std::max<int64_t>(call.duration.count(), 0));
  reads_[static_cast<size_t>(call.method->method)].fetch_add(1, std::memory_order_relaxed);
  latencies_[BucketOf(nanoseconds)].fetch_add(1, std::memory_order_relaxed);
  uint64_t max = max_latency_ns_.load(std::memory_order_relaxed);
  while (nanoseconds > max &&
         !max_latency_ns_.compare_exchange_weak(max, nanoseconds, std::memory_order_relaxed)) {
  }
}

void RequestLog::WriteLine(const CallRecord& call) {
  Fields fields(format_, "call");
  fields.Text("method", call.method != nullptr ? call.method->name : call.path);
  if (call.subject != nullptr && !call.subject->index.empty()) {
    fields.Text("index", call.subject->index);
  }
  if (call.subject != nullptr && call.subject->items.has_value()) {
    fields.Number("items", *call.subject->items);
  }
  fields.Text("code", StatusCodeName(call.code));
  fields.Milliseconds("ms", static_cast<uint64_t>(std::max<int64_t>(call.duration.count(), 0)));
  if (!call.peer.empty()) fields.Text("peer", call.peer);
  if (!call.refusal.empty()) fields.Text("auth", call.refusal);
  if (call.code != grpc::StatusCode::OK) fields.Text("error", call.message);
  logger_->info("{}", fields.str());
}

void RequestLog::Summarize() {
  engine::MutexLock lock(&summary_mu_);
  const auto now = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(now - last_summary_).count();
  last_summary_ = now;
  std::array<uint64_t, kMethodCount> reads{};
  uint64_t calls = 0;
  for (size_t i = 0; i < kMethodCount; ++i) {
    reads[i] = reads_[i].exchange(0, std::memory_order_relaxed);
    calls += reads[i];
  }
  if (calls == 0) return;
  std::array<uint64_t, kLatencyBuckets> latencies{};
  uint64_t counted = 0;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    latencies[i] = latencies_[i].exchange(0, std::memory_order_relaxed);
    counted += latencies[i];
  }
  const uint64_t max = max_latency_ns_.exchange(0, std::memory_order_relaxed);
  // The latency below which `fraction` of the counted calls fell (the upper edge of its
  // bucket, capped at the maximum).
  const auto percentile = [&](double fraction) {
    const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(fraction * counted + 0.5));
    uint64_t seen = 0;
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      seen += latencies[i];
      if (seen >= rank) return std::min(BucketUpperBound(i), max);
    }
    return max;
  };
  Fields fields(format_, "reads");
  fields.Seconds("seconds", seconds);
  fields.Number("calls", calls);
  fields.Milliseconds("p50_ms", percentile(0.5));
  fields.Milliseconds("p99_ms", percentile(0.99));
  fields.Milliseconds("max_ms", max);
  fields.OpenObject("methods");
  for (const MethodInfo& method : Methods()) {
    if (reads[static_cast<size_t>(method.method)] != 0) {
      fields.Number(method.name, reads[static_cast<size_t>(method.method)]);
    }
  }
  fields.CloseObject();
  logger_->info("{}", fields.str());
}

void RequestLog::SummaryLoop() {
  auto next = std::chrono::steady_clock::now() + summary_period_;
  while (true) {
    {
      engine::MutexLock lock(&stop_mu_);
      // WaitUntil is true when woken before `next`: to stop, or spuriously.
      while (!stop_ && stop_cv_.WaitUntil(&stop_mu_, next)) {
      }
      if (stop_) return;
    }
    Summarize();
    next = std::max(next + summary_period_, std::chrono::steady_clock::now());
  }
}

}  // namespace luxdb::server
