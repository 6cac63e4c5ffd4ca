// Tests of server/request_log.h and server/logging.h: the request log's lines in text and JSON,
// the per-second summary of successful reads, and JSON lines that always parse.
#include "server/request_log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/calls.h"
#include "server/logging.h"
#include "spdlog/sinks/ringbuffer_sink.h"

namespace luxdb::server {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

// A request logger writing `format` into a buffer of lines.
struct CapturedLog {
  explicit CapturedLog(LogFormat format, spdlog::level::level_enum level = spdlog::level::info)
      : sink(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(10000)),
        logger(std::make_shared<spdlog::logger>(kRequestLoggerName, sink)) {
    sink->set_formatter(MakeLogFormatter(format));
    logger->set_level(level);
  }

  // The lines written so far, without their line ends.
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    for (std::string line : sink->last_formatted()) {
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      lines.push_back(line);
    }
    return lines;
  }

  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink;
  std::shared_ptr<spdlog::logger> logger;
};

// The text of a text line after its time and level ("2024-... info ").
std::string Message(const std::string& line) {
  std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
  return parts.size() == 3 ? parts[2] : line;
}

google::protobuf::Struct ParseJson(const std::string& line) {
  google::protobuf::Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
  EXPECT_TRUE(status.ok()) << status << " parsing: " << line;
  return parsed;
}

CallRecord Call(Method method, grpc::StatusCode code, std::chrono::nanoseconds duration,
                const CallSubject* subject = nullptr, absl::string_view peer = "",
                absl::string_view message = "") {
  CallRecord call;
  call.method = &InfoOf(method);
  call.code = code;
  call.duration = duration;
  call.subject = subject;
  call.peer = peer;
  call.message = message;
  return call;
}

TEST(RequestLogTest, TextLineForEveryMutatingCallAndEveryFailure) {
  CapturedLog captured(LogFormat::kText);
  RequestLog log(captured.logger, LogFormat::kText, std::chrono::hours(1));
  ASSERT_TRUE(log.enabled());
  const CallSubject docs{.index = "docs", .items = 100};
  log.Record(Call(Method::kAddItems, grpc::StatusCode::OK, std::chrono::nanoseconds(3'214'000),
                  &docs, "ipv4:127.0.0.1:5000"));
  const CallSubject odd{.index = "a b\n\"c", .items = {}};
  log.Record(Call(Method::kQueryIndex, grpc::StatusCode::NOT_FOUND, microseconds(51), &odd,
                  "ipv4:127.0.0.1:5000", "index 'a b\n\"c' does not exist"));
  CallRecord refused;
  refused.method = nullptr;
  refused.path = "/luxdb.v1.LuxDB/Nope";
  refused.code = grpc::StatusCode::UNAUTHENTICATED;
  refused.message = "token rejected: expired";
  refused.refusal = "expired";
  log.Record(refused);
  // A successful read gets no line of its own.
  log.Record(Call(Method::kQueryIndex, grpc::StatusCode::OK, microseconds(300), &docs));

  const std::vector<std::string> lines = captured.Lines();
  ASSERT_EQ(lines.size(), 3u) << absl::StrJoin(lines, "\n");
  EXPECT_TRUE(absl::StrContains(lines[0], " info call "));
  EXPECT_EQ(Message(lines[0]),
            "call method=AddItems index=docs items=100 code=OK ms=3.214 "
            "peer=ipv4:127.0.0.1:5000");
  // Values other than plain words are quoted and escaped: the line stays one line.
  EXPECT_EQ(Message(lines[1]),
            "call method=QueryIndex index=\"a b\\n\\\"c\" code=NOT_FOUND ms=0.051 "
            "peer=ipv4:127.0.0.1:5000 error=\"index 'a b\\n\\\"c' does not exist\"");
  // A refusal: the path of a method LuxDB does not have, the reason, and no peer.
  EXPECT_EQ(Message(lines[2]),
            "call method=/luxdb.v1.LuxDB/Nope code=UNAUTHENTICATED ms=0.000 auth=expired "
            "error=\"token rejected: expired\"");
}

TEST(RequestLogTest, SuccessfulReadsBecomeOneSummaryLine) {
  CapturedLog captured(LogFormat::kText);
  RequestLog log(captured.logger, LogFormat::kText, std::chrono::hours(1));
  for (int i = 1; i <= 1000; ++i) {
    log.Record(Call(Method::kQueryIndex, grpc::StatusCode::OK, microseconds(i)));
  }
  for (int i = 0; i < 10; ++i) {
    log.Record(Call(Method::kDescribeIndex, grpc::StatusCode::OK, microseconds(1000)));
  }
  EXPECT_TRUE(captured.Lines().empty());
  log.Summarize();
  std::vector<std::string> lines = captured.Lines();
  ASSERT_EQ(lines.size(), 1u) << absl::StrJoin(lines, "\n");
  const std::string summary = Message(lines[0]);
  EXPECT_TRUE(absl::StartsWith(summary, "reads seconds=")) << summary;
  EXPECT_TRUE(absl::StrContains(summary, " calls=1010 ")) << summary;
  EXPECT_TRUE(absl::StrContains(summary, " max_ms=1.000 ")) << summary;
  EXPECT_TRUE(absl::StrContains(summary, " DescribeIndex=10 QueryIndex=1000")) << summary;
  // p50 of 1..1000 µs and ten of 1000 µs is about 505 µs; the buckets are within 12.5 %.
  const auto value = [&](absl::string_view key) {
    const size_t at = summary.find(absl::StrCat(" ", key, "="));
    EXPECT_NE(at, std::string::npos) << key;
    return std::stod(summary.substr(at + key.size() + 2));
  };
  EXPECT_GE(value("p50_ms"), 0.505);
  EXPECT_LE(value("p50_ms"), 0.505 * 1.125);
  EXPECT_GE(value("p99_ms"), 0.99);
  EXPECT_LE(value("p99_ms"), 1.0);  // capped at the maximum

  // Nothing since: no line.
  log.Summarize();
  EXPECT_EQ(captured.Lines().size(), 1u);
}

TEST(RequestLogTest, SummaryThreadWritesOncePerPeriodAndTheRestAtTheEnd) {
  CapturedLog captured(LogFormat::kText);
  {
    RequestLog log(captured.logger, LogFormat::kText, milliseconds(50));
    log.Record(Call(Method::kQueryIndex, grpc::StatusCode::OK, microseconds(100)));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (captured.Lines().empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    ASSERT_EQ(captured.Lines().size(), 1u);
    EXPECT_TRUE(absl::StrContains(captured.Lines()[0], " calls=1 "));
    // Reads just before the log ends are summed up by its destructor.
    log.Record(Call(Method::kGetIds, grpc::StatusCode::OK, microseconds(100)));
    log.Record(Call(Method::kGetIds, grpc::StatusCode::OK, microseconds(100)));
  }
  const std::vector<std::string> lines = captured.Lines();
  ASSERT_EQ(lines.size(), 2u) << absl::StrJoin(lines, "\n");
  EXPECT_TRUE(absl::StrContains(lines[1], " calls=2 ")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], " GetIds=2")) << lines[1];
}

TEST(RequestLogTest, NothingBelowInfo) {
  CapturedLog captured(LogFormat::kText, spdlog::level::warn);
  RequestLog log(captured.logger, LogFormat::kText, milliseconds(10));
  EXPECT_FALSE(log.enabled());
  EXPECT_FALSE(log.WritesLine(&InfoOf(Method::kAddItems), grpc::StatusCode::OK));
  const CallSubject docs{.index = "docs", .items = 1};
  log.Record(Call(Method::kAddItems, grpc::StatusCode::INTERNAL, microseconds(1), &docs));
  log.Record(Call(Method::kQueryIndex, grpc::StatusCode::OK, microseconds(1)));
  log.Summarize();
  EXPECT_TRUE(captured.Lines().empty());
}

TEST(RequestLogTest, JsonLinesParseAndHoldTheFields) {
  CapturedLog captured(LogFormat::kJson);
  RequestLog log(captured.logger, LogFormat::kJson, std::chrono::hours(1));
  const CallSubject docs{.index = "docs", .items = 100};
  log.Record(Call(Method::kAddItems, grpc::StatusCode::OK, std::chrono::nanoseconds(3'214'000),
                  &docs, "ipv4:127.0.0.1:5000"));
  // Invalid UTF-8, a control character, quotes and a backslash in what a client sent.
  const CallSubject odd{.index = "bad\xff\x01\"\\", .items = {}};
  log.Record(Call(Method::kDeleteIndex, grpc::StatusCode::NOT_FOUND, microseconds(51), &odd,
                  "ipv4:127.0.0.1:5000", "index 'bad\xff' does not exist\n"));
  log.Record(Call(Method::kQueryIndex, grpc::StatusCode::OK, microseconds(300)));
  log.Summarize();

  const std::vector<std::string> lines = captured.Lines();
  ASSERT_EQ(lines.size(), 3u) << absl::StrJoin(lines, "\n");
  const google::protobuf::Struct added = ParseJson(lines[0]);
  const auto& f = added.fields();
  EXPECT_EQ(f.at("level").string_value(), "info");
  EXPECT_TRUE(absl::EndsWith(f.at("time").string_value(), "Z")) << lines[0];
  EXPECT_EQ(f.at("msg").string_value(), "call");
  EXPECT_EQ(f.at("method").string_value(), "AddItems");
  EXPECT_EQ(f.at("index").string_value(), "docs");
  EXPECT_EQ(f.at("items").number_value(), 100);
  EXPECT_EQ(f.at("code").string_value(), "OK");
  EXPECT_DOUBLE_EQ(f.at("ms").number_value(), 3.214);
  EXPECT_EQ(f.at("peer").string_value(), "ipv4:127.0.0.1:5000");
  EXPECT_EQ(f.count("error"), 0u);

  const google::protobuf::Struct failed = ParseJson(lines[1]);
  EXPECT_EQ(failed.fields().at("index").string_value(), "bad\xEF\xBF\xBD\x01\"\\");  // U+FFFD
  EXPECT_EQ(failed.fields().at("code").string_value(), "NOT_FOUND");
  EXPECT_EQ(failed.fields().at("error").string_value(), "index 'bad\xEF\xBF\xBD' does not exist\n");

  const google::protobuf::Struct reads = ParseJson(lines[2]);
  EXPECT_EQ(reads.fields().at("msg").string_value(), "reads");
  EXPECT_EQ(reads.fields().at("calls").number_value(), 1);
  EXPECT_EQ(reads.fields().at("methods").struct_value().fields().at("QueryIndex").number_value(),
            1);
  EXPECT_GT(reads.fields().at("p99_ms").number_value(), 0);
}

TEST(LoggingTest, EveryJsonLineParsesWhateverItsMessage) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  sink->set_formatter(MakeLogFormatter(LogFormat::kJson));
  spdlog::logger logger("luxdb", sink);
  const std::string message =
      "index 'x\"y' at \\path\t\r\n\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  logger.warn("{}", message);
  logger.error("overlong \xc0\xaf, surrogate \xed\xa0\x80, truncated \xe2\x82");
  const std::vector<std::string> lines = sink->last_formatted();
  ASSERT_EQ(lines.size(), 2u);
  const google::protobuf::Struct first = ParseJson(lines[0]);
  EXPECT_EQ(first.fields().at("level").string_value(), "warning");
  EXPECT_EQ(first.fields().at("msg").string_value(), message);  // valid UTF-8 kept as it is
  EXPECT_EQ(lines[0].find('\n'), lines[0].size() - 1) << "one line";
  const google::protobuf::Struct second = ParseJson(lines[1]);
  EXPECT_EQ(second.fields().at("level").string_value(), "error");
  EXPECT_EQ(second.fields().at("msg").string_value(),
            "overlong \xEF\xBF\xBD\xEF\xBF\xBD, surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD, "
            "truncated \xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(LoggingTest, QuotedTextStaysOnOneLineAndKeepsValidUtf8) {
  std::string out;
  AppendQuotedText(&out, "caf\xc3\xa9 \"q\" \\ \n\r\t\x01\x7f \xff\xc3 '");
  EXPECT_EQ(out, "\"caf\xc3\xa9 \\\"q\\\" \\\\ \\n\\r\\t\\x01\\x7f \\xff\\xc3 '\"");
}

}  // namespace
}  // namespace luxdb::server
