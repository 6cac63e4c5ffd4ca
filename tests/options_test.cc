// Tests of server/options.h: the server's flags, their environment fallbacks and the errors a
// user sees for a bad command line.
#include "server/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace luxdb::server {
namespace {

using ::testing::HasSubstr;
using Env = std::map<std::string, std::string>;

absl::StatusOr<Options> Parse(const std::vector<std::string>& args, const Env& env = {},
                              bool* help_out = nullptr) {
  bool help = true;  // ParseOptions must reset it
  absl::StatusOr<Options> options = ParseOptions(args, env, &help);
  if (help_out != nullptr) *help_out = help;
  return options;
}

// INVALID_ARGUMENT whose message contains every one of `parts`.
::testing::AssertionResult IsInvalid(const absl::StatusOr<Options>& result,
                                     std::initializer_list<absl::string_view> parts) {
  if (result.ok()) return ::testing::AssertionFailure() << "parsed successfully";
  const absl::Status& status = result.status();
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected INVALID_ARGUMENT, got " << status;
  }
  for (absl::string_view part : parts) {
    if (status.message().find(part) == absl::string_view::npos) {
      return ::testing::AssertionFailure() << "message of " << status << " lacks '" << part << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(ParseOptionsTest, Defaults) {
  bool help = true;
  absl::StatusOr<Options> options = Parse({"/data"}, {}, &help);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_FALSE(help);
  EXPECT_EQ(options->data_dir, "/data");
  EXPECT_EQ(options->host, "127.0.0.1");
  EXPECT_EQ(options->port, 8484);
  EXPECT_EQ(options->loglevel, "warning");
  EXPECT_TRUE(options->sync);
  EXPECT_EQ(options->max_message_mb, 256u);
  EXPECT_EQ(options->threads, 0u);
  EXPECT_EQ(options->grace_seconds, 25u);
  EXPECT_EQ(options->max_concurrent_calls, 256u);
  EXPECT_EQ(options->max_call_seconds, 300u);
  EXPECT_EQ(options->memory_budget_mb, 0u);
  EXPECT_EQ(options->compact_threshold, 0.2);
  EXPECT_TRUE(options->import_path.empty());
  EXPECT_TRUE(options->import_name.empty());
  EXPECT_TRUE(options->import_space.empty());
  EXPECT_EQ(options->import_dim, 0u);
}

TEST(ParseOptionsTest, ValueAsNextArgumentOrAfterEquals) {
  absl::StatusOr<Options> spaced = Parse({"--port", "9000", "/data"});
  ASSERT_TRUE(spaced.ok()) << spaced.status();
  EXPECT_EQ(spaced->port, 9000);
  EXPECT_EQ(spaced->data_dir, "/data");

  absl::StatusOr<Options> joined = Parse({"/data", "--port=9000"});
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->port, 9000);
  EXPECT_EQ(joined->data_dir, "/data");

  absl::StatusOr<Options> zero = Parse({"--port=0", "/data"});
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->port, 0);
}

TEST(ParseOptionsTest, EveryFlagIsApplied) {
  absl::StatusOr<Options> options = Parse(
      {"--host", "0.0.0.0", "--loglevel=INFO", "--threads", "3", "--max-message-mb", "64",
       "--grace-seconds=5", "--max-concurrent-calls", "32", "--max-call-seconds=0", "/srv/lux"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->host, "0.0.0.0");
  EXPECT_EQ(options->loglevel, "info");
  EXPECT_EQ(options->threads, 3u);
  EXPECT_EQ(options->max_message_mb, 64u);
  EXPECT_EQ(options->grace_seconds, 5u);
  EXPECT_EQ(options->max_concurrent_calls, 32u);
  EXPECT_EQ(options->max_call_seconds, 0u);
  EXPECT_EQ(options->data_dir, "/srv/lux");
}

TEST(ParseOptionsTest, SyncForms) {
  absl::StatusOr<Options> no_sync = Parse({"--no-sync", "/data"});
  ASSERT_TRUE(no_sync.ok()) << no_sync.status();
  EXPECT_FALSE(no_sync->sync);

  absl::StatusOr<Options> sync_false = Parse({"--sync=false", "/data"});
  ASSERT_TRUE(sync_false.ok()) << sync_false.status();
  EXPECT_FALSE(sync_false->sync);

  absl::StatusOr<Options> sync_zero = Parse({"--sync=0", "/data"});
  ASSERT_TRUE(sync_zero.ok()) << sync_zero.status();
  EXPECT_FALSE(sync_zero->sync);

  // A bare boolean flag does not swallow the next argument.
  absl::StatusOr<Options> bare = Parse({"--sync", "/data"});
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->sync);
  EXPECT_EQ(bare->data_dir, "/data");

  EXPECT_TRUE(IsInvalid(Parse({"--sync=maybe", "/data"}), {"--sync", "maybe"}));
  // "no-" only negates boolean flags.
  EXPECT_TRUE(IsInvalid(Parse({"--no-port", "/data"}), {"--no-port"}));
}

TEST(ParseOptionsTest, EnvironmentFallbacks) {
  const Env env = {{"LUXDB_PORT", "9100"},         {"LUXDB_HOST", "0.0.0.0"},
                   {"LUXDB_LOGLEVEL", "debug"},    {"LUXDB_THREADS", "4"},
                   {"LUXDB_MAX_MESSAGE_MB", "32"}, {"LUXDB_SYNC", "false"},
                   {"LUXDB_GRACE_SECONDS", "7"}};
  absl::StatusOr<Options> options = Parse({"/data"}, env);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->port, 9100);
  EXPECT_EQ(options->host, "0.0.0.0");
  EXPECT_EQ(options->loglevel, "debug");
  EXPECT_EQ(options->threads, 4u);
  EXPECT_EQ(options->max_message_mb, 32u);
  EXPECT_FALSE(options->sync);
  EXPECT_EQ(options->grace_seconds, 7u);
}

TEST(ParseOptionsTest, FlagWinsOverEnvironment) {
  const Env env = {{"LUXDB_PORT", "9100"}, {"LUXDB_SYNC", "false"}, {"LUXDB_HOST", "10.0.0.1"}};
  absl::StatusOr<Options> options =
      Parse({"--port", "9200", "--sync", "--host=192.168.1.1", "/data"}, env);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->port, 9200);
  EXPECT_TRUE(options->sync);
  EXPECT_EQ(options->host, "192.168.1.1");
}

TEST(ParseOptionsTest, DataDirFromEnvironmentAndPositionalWins) {
  absl::StatusOr<Options> from_env = Parse({}, {{"LUXDB_DATA_DIR", "/env/dir"}});
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->data_dir, "/env/dir");

  absl::StatusOr<Options> positional = Parse({"/arg/dir"}, {{"LUXDB_DATA_DIR", "/env/dir"}});
  ASSERT_TRUE(positional.ok()) << positional.status();
  EXPECT_EQ(positional->data_dir, "/arg/dir");
}

TEST(ParseOptionsTest, BadEnvironmentValueNamesVariableAndValue) {
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_PORT", "abc"}}), {"LUXDB_PORT", "abc"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_SYNC", "perhaps"}}), {"LUXDB_SYNC", "perhaps"}));
}

// --address / LUXDB_ADDRESS stand for --host and --port together, as in every LuxDB client;
// given with either (flag or variable) they contradict.
TEST(ParseOptionsTest, AddressSetsHostAndPortAndContradictsThem) {
  absl::StatusOr<Options> flag = Parse({"--address", "0.0.0.0:9000", "/data"});
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_EQ(flag->host, "0.0.0.0");
  EXPECT_EQ(flag->port, 9000);
  absl::StatusOr<Options> env = Parse({"/data"}, {{"LUXDB_ADDRESS", "[::1]:0"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->host, "::1");
  EXPECT_EQ(env->port, 0);
  EXPECT_TRUE(IsInvalid(Parse({"--address", "db:9000", "--port", "9001", "/data"}),
                        {"--address and --port contradict"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_ADDRESS", "db:9000"}, {"LUXDB_HOST", "x"}}),
                        {"LUXDB_ADDRESS and LUXDB_HOST contradict"}));
  EXPECT_TRUE(IsInvalid(Parse({"--address", "db", "/data"}), {"--address", "HOST:PORT", "'db'"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_ADDRESS", "db:70000"}}),
                        {"LUXDB_ADDRESS", "'db:70000'"}));
}

// --help shows every flag's default and its environment variable.
TEST(ParseOptionsTest, HelpShowsEveryDefault) {
  const std::string text = UsageText();
  EXPECT_THAT(text, HasSubstr("TCP port (0 picks a free one) (default: 8484) [LUXDB_PORT]"));
  EXPECT_THAT(text, HasSubstr("(default: 127.0.0.1) [LUXDB_HOST]"));
  EXPECT_THAT(text, HasSubstr("(default: 0.2) [LUXDB_COMPACT_THRESHOLD]"));
  EXPECT_THAT(text, HasSubstr("(default: true) [LUXDB_SYNC]"));
  EXPECT_THAT(text, HasSubstr("--version"));
  size_t flags = 0;
  size_t defaults = 0;
  for (size_t at = text.find("\n  --"); at != std::string::npos; at = text.find("\n  --", at + 1)) {
    ++flags;
  }
  for (size_t at = text.find("(default: "); at != std::string::npos;
       at = text.find("(default: ", at + 1)) {
    ++defaults;
  }
  EXPECT_EQ(defaults + 2, flags) << "every flag but --help and --version shows its default";
}

TEST(ParseOptionsTest, UnknownFlag) {
  EXPECT_TRUE(IsInvalid(Parse({"--bogus", "/data"}), {"--bogus"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--bogus=1"}), {"--bogus"}));
}

TEST(ParseOptionsTest, NumbersOutOfRangeOrMalformed) {
  EXPECT_TRUE(IsInvalid(Parse({"--port", "70000", "/data"}), {"--port", "70000"}));
  EXPECT_TRUE(IsInvalid(Parse({"--port", "abc", "/data"}), {"--port", "abc"}));
  EXPECT_TRUE(IsInvalid(Parse({"--port=-1", "/data"}), {"--port", "-1"}));
  EXPECT_TRUE(IsInvalid(Parse({"--port=", "/data"}), {"--port"}));
  EXPECT_TRUE(IsInvalid(Parse({"--max-message-mb", "0", "/data"}), {"--max-message-mb", "0"}));
  EXPECT_TRUE(
      IsInvalid(Parse({"--max-message-mb", "4096", "/data"}), {"--max-message-mb", "4096"}));
  EXPECT_TRUE(IsInvalid(Parse({"--threads", "x", "/data"}), {"--threads", "x"}));
  EXPECT_TRUE(IsInvalid(Parse({"--max-concurrent-calls", "0", "/data"}),
                        {"--max-concurrent-calls", "from 1 to 100000", "'0'"}));
  EXPECT_TRUE(
      IsInvalid(Parse({"--max-call-seconds", "1d", "/data"}), {"--max-call-seconds", "1d"}));
  EXPECT_TRUE(IsInvalid(Parse({"--loglevel", "loud", "/data"}), {"--loglevel", "loud"}));

  absl::StatusOr<Options> max_port = Parse({"--port", "65535", "/data"});
  ASSERT_TRUE(max_port.ok()) << max_port.status();
  EXPECT_EQ(max_port->port, 65535);
}

TEST(ParseOptionsTest, MemoryBudgetAndCompactThreshold) {
  absl::StatusOr<Options> flags =
      Parse({"--memory-budget-mb", "4096", "--compact-threshold=0.35", "/data"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->memory_budget_mb, 4096u);
  EXPECT_EQ(flags->compact_threshold, 0.35);

  absl::StatusOr<Options> env =
      Parse({"/data"}, {{"LUXDB_MEMORY_BUDGET_MB", "512"}, {"LUXDB_COMPACT_THRESHOLD", "0"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->memory_budget_mb, 512u);
  EXPECT_EQ(env->compact_threshold, 0.0);  // automatic compaction off

  absl::StatusOr<Options> whole = Parse({"--compact-threshold", "1", "/data"});
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->compact_threshold, 1.0);

  EXPECT_TRUE(
      IsInvalid(Parse({"--memory-budget-mb", "-1", "/data"}), {"--memory-budget-mb", "'-1'"}));
  EXPECT_TRUE(
      IsInvalid(Parse({"--memory-budget-mb", "8G", "/data"}), {"--memory-budget-mb", "'8G'"}));
  for (const char* bad : {"1.5", "-0.1", "nan", "inf", "20%", ""}) {
    EXPECT_TRUE(IsInvalid(Parse({absl::StrCat("--compact-threshold=", bad), "/data"}),
                          {"--compact-threshold", "from 0 to 1", absl::StrCat("'", bad, "'")}))
        << bad;
  }
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_COMPACT_THRESHOLD", "2"}}),
                        {"LUXDB_COMPACT_THRESHOLD", "'2'"}));
}

TEST(ParseOptionsTest, TransportLimits) {
  absl::StatusOr<Options> defaults = Parse({"/data"});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->max_connection_idle_seconds, 300u);
  EXPECT_EQ(defaults->max_connection_age_seconds, 600u);
  EXPECT_EQ(defaults->handshake_timeout_seconds, 10u);
  EXPECT_EQ(defaults->keepalive_seconds, 60u);
  EXPECT_EQ(defaults->max_transport_memory_mb, 0u);
  EXPECT_EQ(TransportMemoryBytes(*defaults), uint64_t{1024} << 20);

  absl::StatusOr<Options> set =
      Parse({"/data", "--max-connection-idle-seconds", "0", "--max-connection-age-seconds=30",
             "--handshake-timeout-seconds", "2", "--keepalive-seconds", "15", "--max-message-mb",
             "512", "--max-transport-memory-mb", "600"},
            {{"LUXDB_MAX_CONNECTION_IDLE_SECONDS", "99"}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->max_connection_idle_seconds, 0u);
  EXPECT_EQ(set->max_connection_age_seconds, 30u);
  EXPECT_EQ(set->handshake_timeout_seconds, 2u);
  EXPECT_EQ(set->keepalive_seconds, 15u);
  EXPECT_EQ(TransportMemoryBytes(*set), uint64_t{600} << 20);

  absl::StatusOr<Options> derived = Parse({"/data", "--max-message-mb", "512"});
  ASSERT_TRUE(derived.ok()) << derived.status();
  EXPECT_EQ(TransportMemoryBytes(*derived), uint64_t{2048} << 20);

  EXPECT_TRUE(IsInvalid(Parse({"/data", "--handshake-timeout-seconds", "0"}),
                        {"--handshake-timeout-seconds", "'0'"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--keepalive-seconds", "0"}), {"--keepalive-seconds"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--max-connection-age-seconds", "-5"}),
                        {"--max-connection-age-seconds", "'-5'"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--max-transport-memory-mb", "100"}),
                        {"--max-transport-memory-mb 100", "--max-message-mb 256"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_MAX_CONNECTION_IDLE_SECONDS", "soon"}}),
                        {"LUXDB_MAX_CONNECTION_IDLE_SECONDS", "soon"}));
}

TEST(ParseOptionsTest, MetricsAndLogFormat) {
  absl::StatusOr<Options> defaults = Parse({"/data"});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->metrics_port, 9484);
  EXPECT_EQ(defaults->metrics_host, "127.0.0.1");  // as --host's default
  EXPECT_EQ(defaults->log_format, LogFormat::kText);

  absl::StatusOr<Options> set =
      Parse({"--metrics-port", "9500", "--metrics-host=0.0.0.0", "--log-format", "JSON", "/data"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->metrics_port, 9500);
  EXPECT_EQ(set->metrics_host, "0.0.0.0");
  EXPECT_EQ(set->log_format, LogFormat::kJson);

  absl::StatusOr<Options> from_env = Parse({"/data"}, {{"LUXDB_METRICS_PORT", "0"},
                                                       {"LUXDB_METRICS_HOST", "10.0.0.1"},
                                                       {"LUXDB_LOG_FORMAT", "json"}});
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->metrics_port, 0);  // metrics off
  EXPECT_EQ(from_env->metrics_host, "10.0.0.1");
  EXPECT_EQ(from_env->log_format, LogFormat::kJson);

  EXPECT_TRUE(
      IsInvalid(Parse({"--log-format", "xml", "/data"}), {"--log-format", "text or json", "xml"}));
  EXPECT_TRUE(IsInvalid(Parse({"--metrics-port", "65536", "/data"}), {"--metrics-port", "65536"}));
  EXPECT_TRUE(IsInvalid(Parse({"--metrics-host=", "/data"}), {"--metrics-host"}));
  // The gRPC port and the metrics port cannot be the same on the same host.
  EXPECT_TRUE(IsInvalid(Parse({"--port", "9484", "/data"}), {"--metrics-port 9484", "--port"}));
  EXPECT_TRUE(Parse({"--port", "9484", "--metrics-port", "9485", "/data"}).ok());
  EXPECT_TRUE(Parse({"--port", "9484", "--metrics-port", "0", "/data"}).ok());
}

TEST(ParseOptionsTest, SecretSources) {
  absl::StatusOr<Options> flag = Parse({"/data", "--secret", "s3"});
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_TRUE(flag->secret_on_command_line);
  absl::StatusOr<Options> env = Parse({"/data"}, {{"LUXDB_SECRET", "s3"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->secret, "s3");
  EXPECT_FALSE(env->secret_on_command_line);
  absl::StatusOr<Options> file = Parse({"/data", "--secret-file", "/run/secret"});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->secret_file, "/run/secret");
  EXPECT_FALSE(file->secret_on_command_line);
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--secret-file", "/run/secret"}, {{"LUXDB_SECRET", "x"}}),
                        {"--secret-file", "contradict"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--insecure", "--secret-file", "/run/secret"}),
                        {"--insecure", "contradict"}));
}

TEST(ParseOptionsTest, MissingValue) {
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--port"}), {"--port"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--host"}), {"--host"}));
}

TEST(ParseOptionsTest, DataDirectoryCount) {
  EXPECT_TRUE(IsInvalid(Parse({"/one", "/two"}), {"/one", "/two"}));
  EXPECT_TRUE(IsInvalid(Parse({}), {"PATH"}));
  EXPECT_TRUE(IsInvalid(Parse({"--port", "9000"}), {"PATH"}));
}

TEST(ParseOptionsTest, ImportNeedsAllFourFlags) {
  absl::StatusOr<Options> full = Parse({"/data", "--import-path", "/tmp/x.bin", "--import-name",
                                        "docs", "--import-space", "cosine", "--import-dim", "128"});
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->import_path, "/tmp/x.bin");
  EXPECT_EQ(full->import_name, "docs");
  EXPECT_EQ(full->import_space, "cosine");
  EXPECT_EQ(full->import_dim, 128u);

  EXPECT_TRUE(IsInvalid(Parse({"/data", "--import-path", "/tmp/x.bin"}),
                        {"--import-name", "--import-space", "--import-dim"}));
  EXPECT_TRUE(IsInvalid(
      Parse({"/data", "--import-path=/tmp/x.bin", "--import-name=docs", "--import-space=l2"}),
      {"--import-dim"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--import-dim", "8"}), {"--import-path"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data"}, {{"LUXDB_IMPORT_NAME", "docs"}}), {"--import-path"}));
  EXPECT_TRUE(IsInvalid(Parse({"/data", "--import-dim", "0"}), {"--import-dim", "0"}));
}

TEST(ParseOptionsTest, Help) {
  bool help = false;
  absl::StatusOr<Options> options = Parse({"--help"}, {}, &help);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(help);

  help = false;
  options = Parse({"-h"}, {}, &help);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(help);

  // --help needs no data directory and wins over what follows it.
  help = false;
  options = Parse({"--port", "9000", "--help", "/one", "/two"}, {}, &help);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(help);
}

TEST(UsageTextTest, ListsEveryFlagWithItsVariable) {
  const std::string usage = UsageText();
  for (const char* text : {"--host",
                           "LUXDB_HOST",
                           "--port",
                           "LUXDB_PORT",
                           "--loglevel",
                           "LUXDB_LOGLEVEL",
                           "--threads",
                           "LUXDB_THREADS",
                           "--max-message-mb",
                           "LUXDB_MAX_MESSAGE_MB",
                           "--sync",
                           "LUXDB_SYNC",
                           "--grace-seconds",
                           "LUXDB_GRACE_SECONDS",
                           "--memory-budget-mb",
                           "LUXDB_MEMORY_BUDGET_MB",
                           "--compact-threshold",
                           "LUXDB_COMPACT_THRESHOLD",
                           "--import-path",
                           "LUXDB_IMPORT_PATH",
                           "--import-name",
                           "--import-space",
                           "--import-dim",
                           "--metrics-port",
                           "LUXDB_METRICS_PORT",
                           "(default: 9484)",
                           "--metrics-host",
                           "LUXDB_METRICS_HOST",
                           "(default: 127.0.0.1)",
                           "--log-format",
                           "LUXDB_LOG_FORMAT",
                           "(default: text)",
                           "--help",
                           "PATH"}) {
    EXPECT_NE(usage.find(text), std::string::npos) << "usage text lacks " << text;
  }
  // The budget's default is spelled out, with what it comes to on this machine.
  EXPECT_NE(usage.find("default 0: 85% of the cgroup memory limit, else of MemTotal; here: "),
            std::string::npos)
      << usage;
}

}  // namespace
}  // namespace luxdb::server
