#include "server/logging.h"

#include <atomic>
#include <cstdint>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/support/log.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace luxdb::server {
namespace {

constexpr char kLoggerName[] = "luxdb";
constexpr char kTextPattern[] = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v";

std::atomic<LogFormat> current_format{LogFormat::kText};

// The length of the valid UTF-8 sequence at the start of `text` (not empty), or 0 if it does not
// start with one (a stray continuation byte, a truncated or overlong sequence, a surrogate or
// a code point above U+10FFFF).
size_t Utf8SequenceLength(absl::string_view text) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  size_t length = 0;
  uint32_t code_point = 0;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code_point = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code_point = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code_point = lead & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3F);
  }
  constexpr uint32_t kMinOfLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kMinOfLength[length] || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

// One JSON object per line: time (UTC), level, and either "msg" or, for the request logger,
// the members its message already holds (RequestLog renders them).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = "{\"time\":\"";
    line +=
        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(msg.time), absl::UTCTimeZone());
    line += "\",\"level\":";
    const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    AppendJsonString(&line, absl::string_view(level.data(), level.size()));
    const absl::string_view payload(msg.payload.data(), msg.payload.size());
    if (absl::string_view(msg.logger_name.data(), msg.logger_name.size()) == kRequestLoggerName) {
      absl::StrAppend(&line, ",", payload, "}\n");
    } else {
      line += ",\"msg\":";
      AppendJsonString(&line, payload);
      line += "}\n";
    }
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// Formats one line for stderr the way the JSON formatter does, outside spdlog.
std::string JsonLine(spdlog::level::level_enum level, absl::string_view message) {
  spdlog::details::log_msg msg(kLoggerName, level,
                               spdlog::string_view_t(message.data(), message.size()));
  spdlog::memory_buf_t line;
  JsonFormatter().format(msg, line);
  return std::string(line.data(), line.size());
}

// gRPC core's log lines (gpr_log), through the default logger.
void LogFromGrpc(gpr_log_func_args* args) {
  const spdlog::level::level_enum level =
      args->severity == GPR_LOG_SEVERITY_ERROR  ? spdlog::level::err
      : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::info
                                                : spdlog::level::debug;
  spdlog::log(level, "grpc: {} ({}:{})", args->message, args->file, args->line);
}

spdlog::level::level_enum Level(const std::string& level) {
  if (level == "warning") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return spdlog::level::from_str(level);
}

}  // namespace

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>(kTextPattern);
}

void SetUpLogging(const std::string& level, LogFormat format) {
  std::shared_ptr<spdlog::logger> logger = spdlog::stderr_color_mt(kLoggerName);
  spdlog::set_default_logger(logger);
  spdlog::register_logger(std::make_shared<spdlog::logger>(
      kRequestLoggerName, logger->sinks().begin(), logger->sinks().end()));
  // Both loggers write through the same sink, so they share its formatter.
  spdlog::set_formatter(MakeLogFormatter(format));
  spdlog::set_level(Level(level));
  current_format = format;
  if (format == LogFormat::kJson) gpr_set_log_function(&LogFromGrpc);
}

void Report(spdlog::level::level_enum level, absl::string_view message) {
  const std::string line = current_format.load() == LogFormat::kJson ? JsonLine(level, message)
                                                                     : absl::StrCat(message, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::shared_ptr<spdlog::logger> RequestLogger() {
  if (std::shared_ptr<spdlog::logger> logger = spdlog::get(kRequestLoggerName)) return logger;
  std::shared_ptr<spdlog::logger> fallback = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(kRequestLoggerName, fallback->sinks().begin(),
                                                 fallback->sinks().end());
  logger->set_level(fallback->level());
  return logger;
}

LogFormat CurrentLogFormat() { return current_format.load(); }

void AppendQuotedText(std::string* out, absl::string_view text) {
  out->push_back('"');
  while (!text.empty()) {
    const char c = text.front();
    const size_t length = Utf8SequenceLength(text);
    if (length > 1) {
      out->append(text.data(), length);
      text.remove_prefix(length);
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (length == 0 || static_cast<uint8_t>(c) < 0x20 || c == 0x7F) {
          absl::StrAppend(out, "\\x", absl::Hex(static_cast<uint8_t>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
    text.remove_prefix(1);
  }
  out->push_back('"');
}

void AppendJsonString(std::string* out, absl::string_view text) {
  out->push_back('"');
  while (!text.empty()) {
    const char c = text.front();
    const size_t length = Utf8SequenceLength(text);
    if (length == 0) {
      out->append("\\ufffd");
      text.remove_prefix(1);
      continue;
    }
    if (length == 1) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          if (static_cast<uint8_t>(c) < 0x20 || c == 0x7F) {
            absl::StrAppend(out, "\\u00", absl::Hex(static_cast<uint8_t>(c), absl::kZeroPad2));
          } else {
            out->push_back(c);
          }
      }
    } else {
      out->append(text.data(), length);
    }
    text.remove_prefix(length);
  }
  out->push_back('"');
}

}  // namespace luxdb::server
