// The server's logs: every line goes to stderr through spdlog, as text or as one JSON object
// per line (--log-format; README "Metrics and logs").
//
// Text:  2024-05-01T12:00:00.123 info listening on 127.0.0.1:8484
// JSON:  {"time":"2024-05-01T10:00:00.123Z","level":"info","msg":"listening on 127.0.0.1:8484"}
//
// The request log (server/request_log.h) writes through a logger of its own, RequestLogger(),
// which shares the sink: in JSON its messages are not a "msg" but the object's own members
// (method, index, code, ...), rendered by RequestLog. JSON times are UTC; text times local.
// In JSON, gRPC's own log lines (errors only, unless GRPC_VERBOSITY says more) are JSON lines
// too, with "msg" prefixed "grpc: ".
#pragma once

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "server/options.h"
#include "spdlog/formatter.h"
#include "spdlog/logger.h"

namespace luxdb::server {

// The name of the request log's logger: the JSON formatter writes its messages as members.
inline constexpr char kRequestLoggerName[] = "luxdb.request";

// The formatter of every line in `format` (SetUpLogging gives it to the stderr sink).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// Makes a stderr logger named "luxdb" the default, and the request logger beside it, both at
// `level` (Options::loglevel) and writing `format`. Call once, before any thread logs.
void SetUpLogging(const std::string& level, LogFormat format);

// Writes `message` to stderr whatever the log level (luxdb-server's own start and stop
// messages, "luxdb-server: serving ..."): as it is in text, as a line of `level` in JSON.
void Report(spdlog::level::level_enum level, absl::string_view message);

// The logger RequestLog writes through: the one SetUpLogging made, or, where it was not called
// (tests that run the server in-process), one sharing the default logger's sinks, as text.
std::shared_ptr<spdlog::logger> RequestLogger();
// The format SetUpLogging set (kText where it was not called).
LogFormat CurrentLogFormat();

// Appends `text` to `out` in double quotes for a text line: quotes and backslashes escaped
// with a backslash, line breaks and tabs as \n, \r, \t, other control characters and bytes
// that are not part of valid UTF-8 as \xNN, so the value never ends the line early.
void AppendQuotedText(std::string* out, absl::string_view text);

// Appends `text` to `out` as a JSON string, quotes included: quotes, backslashes and control
// characters escaped, and every byte that is not part of valid UTF-8 replaced by U+FFFD, so the
// line always parses.
void AppendJsonString(std::string* out, absl::string_view text);

}  // namespace luxdb::server
