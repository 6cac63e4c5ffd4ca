// The report of luxdb-bench: one table with both columns, the ratio LuxDB/hnswlib, the target
// and PASS/MISS per metric, and the same numbers as JSON.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/luxdb_bench.h"

namespace luxdb::bench {
namespace {

// Targets of issue 7.
constexpr double kIngestRatio = 0.85;
constexpr double kBatchQpsRatio = 0.90;
constexpr double kRecallTolerance = 0.002;
constexpr double kSingleQpsRatio = 0.75;  // issue 16 (was 0.60)
// Issue 16: one client's QueryIndex p50 at most gRPC's floor + the search in-process + this.
constexpr double kCallPathAllowanceMs = 0.030;
constexpr int kSingleTargetClients = 16;
// Issue 16, Python: the clients' p50 over a bare generated stub's, one call of every query
// against in-process batch QPS at the same ef, QueryStream against the same client's unary rate.
constexpr double kPythonSyncAllowanceMs = 0.040;
constexpr double kPythonAsyncAllowanceMs = 0.080;
constexpr double kPythonOneCallRatio = 0.85;
constexpr double kPythonStreamRatio = 2.0;
constexpr double kRssFactor = 1.3;
constexpr uint64_t kRssAllowance = 64ull << 20;

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// ---- minimal JSON -------------------------------------------------------------------------
std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out.push_back(c);
    }
  }
  absl::StrAppend(&out, "\"");
  return out;
}
std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  return absl::StrFormat("%.6g", value);
}
using Fields = std::vector<std::pair<std::string, std::string>>;  // name -> encoded value
std::string JsonObject(const Fields& fields) {
  std::vector<std::string> parts;
  for (const auto& [name, value] : fields)
    parts.push_back(absl::StrCat(JsonString(name), ": ", value));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}
std::string JsonArray(const std::vector<std::string>& values) {
  return absl::StrCat("[", absl::StrJoin(values, ", "), "]");
}

std::string JsonPython(const std::map<std::string, double>& figures) {
  Fields fields;
  for (const auto& [name, value] : figures) fields.emplace_back(name, JsonNumber(value));
  return JsonObject(fields);
}

std::string Json(const IngestResult& r) {
  return JsonObject({{"vectors", JsonNumber(r.vectors)},
                     {"seconds", JsonNumber(r.seconds)},
                     {"clients_or_threads", JsonNumber(r.clients)},
                     {"vectors_per_s", JsonNumber(r.per_second())},
                     {"server_cpu_s", JsonNumber(r.server_cpu_s)},
                     {"client_cpu_s", JsonNumber(r.client_cpu_s)},
                     {"background_cores", JsonNumber(r.background_cores)}});
}
std::string Json(const BatchQueryResult& r) {
  return JsonObject({{"ef", JsonNumber(r.ef)},
                     {"queries", JsonNumber(r.queries)},
                     {"calls", JsonNumber(r.calls)},
                     {"in_flight", JsonNumber(r.in_flight)},
                     {"seconds", JsonNumber(r.seconds)},
                     {"qps", JsonNumber(r.qps())},
                     {"recall", JsonNumber(r.recall)},
                     {"server_cpu_s", JsonNumber(r.server_cpu_s)},
                     {"client_cpu_s", JsonNumber(r.client_cpu_s)},
                     {"background_cores", JsonNumber(r.background_cores)}});
}
std::string Json(const SingleQueryResult& r) {
  return JsonObject({{"clients_or_threads", JsonNumber(r.clients)},
                     {"queries", JsonNumber(r.queries)},
                     {"seconds", JsonNumber(r.seconds)},
                     {"qps", JsonNumber(r.qps())},
                     {"p50_ms", JsonNumber(r.p50_ms)},
                     {"p99_ms", JsonNumber(r.p99_ms)},
                     {"recall", JsonNumber(r.recall)},
                     {"server_cpu_s", JsonNumber(r.server_cpu_s)},
                     {"client_cpu_s", JsonNumber(r.client_cpu_s)},
                     {"background_cores", JsonNumber(r.background_cores)}});
}

template <typename Result>
std::string Json(const Runs<Result>& runs) {
  std::vector<std::string> all;
  for (const Result& r : runs.runs) all.push_back(Json(r));
  return JsonObject(
      {{"best", runs.empty() ? "null" : Json(runs.best())}, {"runs", JsonArray(all)}});
}

// ---- the table ----------------------------------------------------------------------------
struct Row {
  std::string metric;
  std::string hnswlib;
  std::string luxdb;
  std::string ratio;
  std::string target;
  std::string result;  // PASS, MISS, or "" for information
  std::string busy;    // cores other processes kept busy during the runs shown
};

struct Target {
  std::string name;
  double hnswlib = 0, luxdb = 0, ratio = 0;
  std::string target;
  bool pass = false;
};

std::string Num(double v, int decimals = 0) {
  if (!std::isfinite(v) || v == 0) return "-";
  return absl::StrFormat("%.*f", decimals, v);
}
std::string Ratio(double luxdb, double hnswlib) {
  return hnswlib > 0 && luxdb > 0 ? absl::StrFormat("%.2f", luxdb / hnswlib) : "-";
}
std::string Verdict(bool pass) { return pass ? "PASS" : "MISS"; }

void PrintTable(const std::vector<Row>& rows) {
  const std::vector<std::string> headers = {"metric", "hnswlib", "LuxDB",      "LuxDB/hnswlib",
                                            "target", "result",  "others busy"};
  std::vector<size_t> width(headers.size());
  auto cells = [](const Row& r) {
    return std::vector<std::string>{r.metric, r.hnswlib, r.luxdb, r.ratio,
                                    r.target, r.result,  r.busy};
  };
  for (size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
  for (const Row& row : rows) {
    std::vector<std::string> c = cells(row);
    for (size_t i = 0; i < c.size(); ++i) width[i] = std::max(width[i], c[i].size());
  }
  auto line = [&](const std::vector<std::string>& c) {
    std::string text;
    for (size_t i = 0; i < c.size(); ++i) {
      // The metric is left-aligned, numbers right-aligned.
      text += i == 0 ? absl::StrFormat("%-*s", width[i], c[i])
                     : absl::StrFormat("  %*s", width[i], c[i]);
    }
    std::cout << text << "\n";
  };
  line(headers);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  std::cout << std::string(total - 2, '-') << "\n";
  for (const Row& row : rows) {
    if (row.metric.empty()) {
      std::cout << "\n";
      continue;
    }
    line(cells(row));
  }
}

}  // namespace

bool Report(const Config& config, const Dataset& data, const GroundTruth& truth,
            const std::vector<std::pair<std::string, std::string>>& facts,
            const std::optional<HnswlibResult>& hnswlib, const std::optional<LuxdbResult>& luxdb) {
  std::vector<Row> rows;
  std::vector<Target> targets;
  const double nan = std::nan("");
  auto add_target = [&](Row row, const std::string& name, double h, double l, bool pass) {
    row.result = h > 0 && l > 0 ? Verdict(pass) : "n/a";
    if (row.result != "n/a") targets.push_back({name, h, l, l / h, row.target, pass});
    rows.push_back(std::move(row));
  };
  // "h / l": background cores during the hnswlib and the LuxDB run shown.
  auto busy = [](const auto* h, const auto* l) {
    return absl::StrCat(h ? absl::StrFormat("%.1f", h->background_cores) : "-", " / ",
                        l ? absl::StrFormat("%.1f", l->background_cores) : "-");
  };

  // Ingest.
  const IngestResult* h_ingest =
      hnswlib && !hnswlib->ingest.empty() ? &hnswlib->ingest.best() : nullptr;
  const double h_rate = h_ingest ? h_ingest->per_second() : 0;
  for (int clients : {1, 2}) {
    if (!luxdb) break;
    const Runs<IngestResult>& runs = clients == 1 ? luxdb->ingest : luxdb->ingest_parallel;
    if (runs.empty()) continue;
    const IngestResult& l = runs.best();
    add_target({clients == 1 ? absl::StrCat("ingest vectors/s, 1 client (hnswlib ", config.threads,
                                            " threads)")
                             : "ingest vectors/s, 2 concurrent clients",
                Num(h_rate), Num(l.per_second()), Ratio(l.per_second(), h_rate),
                absl::StrFormat(">= %.2fx", kIngestRatio), "", busy(h_ingest, &l)},
               clients == 1 ? "ingest_1_client" : "ingest_2_clients", h_rate, l.per_second(),
               l.per_second() >= kIngestRatio * h_rate);
  }
  if (!luxdb && h_ingest) {
    rows.push_back({"ingest vectors/s", Num(h_rate), "", "", "", "", busy(h_ingest, h_ingest)});
  }
  rows.push_back({});

  // Batch queries.
  for (size_t i = 0; i < config.batch_efs.size(); ++i) {
    const uint32_t ef = config.batch_efs[i];
    const BatchQueryResult* h =
        hnswlib && !hnswlib->batch[i].empty() ? &hnswlib->batch[i].best() : nullptr;
    const BatchQueryResult* l =
        luxdb && !luxdb->batch[i].empty() ? &luxdb->batch[i].best() : nullptr;
    const double hq = h ? h->qps() : 0, lq = l ? l->qps() : 0;
    const double hr = h ? h->recall : nan, lr = l ? l->recall : nan;
    const bool recall_ok = !(std::abs(lr - hr) > kRecallTolerance);
    add_target(
        {absl::StrCat("batch QPS, ef=", ef, ", k=", config.k,
                      !l              ? ""
                      : l->calls == 1 ? " (1 call)"
                      : l->in_flight == l->calls
                          ? absl::StrCat(" (", l->calls, " calls at once)")
                          : absl::StrCat(" (", l->calls, " calls, ", l->in_flight, " at once)")),
         Num(hq), Num(lq), Ratio(lq, hq), absl::StrFormat(">= %.2fx, recall", kBatchQpsRatio), "",
         busy(h, l)},
        absl::StrCat("batch_qps_ef", ef), hq, lq, lq >= kBatchQpsRatio * hq && recall_ok);
    rows.push_back({absl::StrCat("  recall@", config.k, ", ef=", ef), Num(hr, 4), Num(lr, 4),
                    h && l ? absl::StrFormat("%+.4f", lr - hr) : "-",
                    absl::StrFormat("|diff| <= %.3f", kRecallTolerance),
                    h && l ? Verdict(recall_ok) : "", ""});
  }
  rows.push_back({});

  // Single-vector queries.
  const SingleQueryResult* h_single =
      hnswlib && !hnswlib->single.empty() ? &hnswlib->single.best() : nullptr;
  const double h_qps = h_single ? h_single->qps() : 0;
  if (h_single) {
    rows.push_back({absl::StrCat("single-query QPS, hnswlib ", config.threads,
                                 " threads, ef=", config.single_ef),
                    Num(h_qps), "", "", "reference", "", busy(h_single, h_single)});
    rows.push_back({"  p50 / p99 latency ms",
                    absl::StrFormat("%.3f / %.3f", h_single->p50_ms, h_single->p99_ms), "", "", "",
                    "", ""});
  }
  for (size_t i = 0; luxdb && i < luxdb->single.size(); ++i) {
    if (luxdb->single[i].empty()) continue;
    const SingleQueryResult& s = luxdb->single[i].best();
    Row row{absl::StrCat("single-query QPS, ", s.clients, " client", s.clients == 1 ? "" : "s",
                         ", ef=", config.single_ef),
            Num(h_qps),
            Num(s.qps()),
            Ratio(s.qps(), h_qps),
            "",
            "",
            busy(h_single, &s)};
    if (s.clients == kSingleTargetClients) {
      row.target = absl::StrFormat(">= %.2fx", kSingleQpsRatio);
      add_target(row, "single_qps_16_clients", h_qps, s.qps(), s.qps() >= kSingleQpsRatio * h_qps);
    } else {
      rows.push_back(row);
    }
    rows.push_back({"  p50 / p99 latency ms", "",
                    absl::StrFormat("%.3f / %.3f", s.p50_ms, s.p99_ms), "", "", "", ""});
  }
  // The call path: one client's p50 against gRPC's floor plus the search alone.
  const SingleQueryResult* h_one =
      hnswlib && !hnswlib->single_one_thread.empty() ? &hnswlib->single_one_thread.best() : nullptr;
  const SingleQueryResult* floor = luxdb && !luxdb->floor.empty() ? &luxdb->floor.best() : nullptr;
  const SingleQueryResult* l_one = nullptr;
  for (size_t i = 0; luxdb && i < luxdb->single.size(); ++i) {
    if (!luxdb->single[i].empty() && luxdb->single[i].best().clients == 1) {
      l_one = &luxdb->single[i].best();
    }
  }
  if (floor || h_one) rows.push_back({});
  if (floor) {
    rows.push_back({"gRPC floor p50 ms (Health/Check, 1 client)", "", Num(floor->p50_ms, 3), "", "",
                    "", busy(static_cast<const SingleQueryResult*>(nullptr), floor)});
  }
  if (h_one) {
    rows.push_back(
        {absl::StrCat("in-process p50 ms per query, hnswlib 1 thread, ef=", config.single_ef),
         Num(h_one->p50_ms, 3), "", "", "", "",
         busy(h_one, static_cast<const SingleQueryResult*>(nullptr))});
  }
  if (floor && h_one && l_one) {
    const double reference = floor->p50_ms + h_one->p50_ms;
    add_target({"call path: LuxDB p50 ms, 1 client (hnswlib column: floor + in-process)",
                Num(reference, 3), Num(l_one->p50_ms, 3), Ratio(l_one->p50_ms, reference),
                absl::StrFormat("<= +%.3f ms", kCallPathAllowanceMs), "", busy(h_one, l_one)},
               "call_path_p50_1_client", reference, l_one->p50_ms,
               l_one->p50_ms <= reference + kCallPathAllowanceMs);
  }
  if (luxdb && !luxdb->stream.empty()) {
    const SingleQueryResult& s = luxdb->stream.best();
    const double one_thread = h_one ? h_one->qps() : 0;
    rows.push_back(
        {absl::StrCat("QueryStream q/s, 1 client, 1 query per message, ef=", config.single_ef,
                      " (hnswlib column: 1 thread)"),
         Num(one_thread), Num(s.qps()), Ratio(s.qps(), one_thread), "", "", busy(h_one, &s)});
    rows.push_back({absl::StrCat("  recall@", config.k), "", Num(s.recall, 4), "", "", "", ""});
  }
  // Python (bench/python_clients.py): the reference column holds what each figure is held to.
  if (luxdb && !luxdb->python.empty()) {
    const auto py = [&](const char* name) {
      const auto it = luxdb->python.find(name);
      return it == luxdb->python.end() ? 0.0 : it->second;
    };
    const double stub = py("stub_p50_ms");
    rows.push_back({});
    rows.push_back({"Python p50 ms, bare generated stub + TokenInterceptor, 1 client", "",
                    Num(stub, 3), "", "", "", ""});
    for (const auto& [kind, allowance] :
         {std::pair<std::string, double>{"sync", kPythonSyncAllowanceMs},
          std::pair<std::string, double>{"async", kPythonAsyncAllowanceMs}}) {
      const double p50 = py((kind + "_p50_ms").c_str());
      add_target(
          {absl::StrCat("Python ", kind, " client p50 ms (reference: the stub's)"), Num(stub, 3),
           Num(p50, 3), Ratio(p50, stub), absl::StrFormat("<= +%.3f ms", allowance), "", ""},
          absl::StrCat("python_", kind, "_p50"), stub, p50, p50 <= stub + allowance);
    }
    const BatchQueryResult* in_process = hnswlib && !hnswlib->batch_beside_python.empty()
                                             ? &hnswlib->batch_beside_python.best()
                                             : nullptr;
    const double one_call = py("batch_qps"), in_process_qps = in_process ? in_process->qps() : 0;
    add_target({absl::StrFormat("Python: 1 query_index call of %.0f queries, QPS, ef=%u "
                                "(reference: hnswlib batch beside it)",
                                py("batch_queries"), config.single_ef),
                Num(in_process_qps), Num(one_call), Ratio(one_call, in_process_qps),
                absl::StrFormat(">= %.2fx", kPythonOneCallRatio), "", ""},
               "python_one_call_qps", in_process_qps, one_call,
               one_call >= kPythonOneCallRatio * in_process_qps);
    for (const std::string kind : {"sync", "async"}) {
      const double unary = py((kind + "_rate").c_str());
      const double stream = py(("stream_" + kind + "_rate").c_str());
      add_target(
          {absl::StrCat("Python QueryStream q/s, ", kind, " client (reference: its unary calls/s)"),
           Num(unary), Num(stream), Ratio(stream, unary),
           absl::StrFormat(">= %.2fx", kPythonStreamRatio), "", ""},
          absl::StrCat("python_stream_", kind), unary, stream,
          stream >= kPythonStreamRatio * unary);
    }
    const double mismatches = py("stream_mismatches");
    rows.push_back({"  streamed answers unlike query_index's", "", Num(mismatches), "", "0",
                    Verdict(mismatches == 0), ""});
    targets.push_back({"python_stream_answers", 0, mismatches, 0, "0", mismatches == 0});
  }
  rows.push_back({});

  // Memory.
  if (hnswlib) {
    rows.push_back({"index memory MiB (hnswlib VmRSS delta)", Num(MiB(hnswlib->rss_delta_bytes), 1),
                    "", "", "", "", ""});
    rows.push_back({"  hnswlib theoretical / graph file MiB",
                    absl::StrFormat("%.1f / %.1f", MiB(hnswlib->theoretical_bytes),
                                    MiB(hnswlib->graph_file_bytes)),
                    "", "", "", "", ""});
  }
  if (luxdb && luxdb->vm_hwm_bytes > 0) {
    const uint64_t index_bytes = hnswlib ? hnswlib->rss_delta_bytes : 0;
    const double limit = kRssFactor * index_bytes + kRssAllowance;
    Row row{"server peak RSS MiB (VmHWM, 1 index)",
            Num(MiB(index_bytes), 1),
            Num(MiB(luxdb->vm_hwm_bytes), 1),
            Ratio(luxdb->vm_hwm_bytes, index_bytes),
            absl::StrFormat("<= %.1f", MiB(static_cast<uint64_t>(limit))),
            "",
            ""};
    add_target(row, "server_peak_rss", index_bytes, luxdb->vm_hwm_bytes,
               luxdb->vm_hwm_bytes <= limit);
    rows.push_back({"  server VmRSS idle / then, VmHWM at the end", "",
                    absl::StrFormat("%.1f / %.1f, %.1f", MiB(luxdb->vm_rss_idle_bytes),
                                    MiB(luxdb->vm_rss_bytes), MiB(luxdb->vm_hwm_final_bytes)),
                    "", "", "", ""});
  }
  if (luxdb && luxdb->data_dir_bytes > 0) {
    rows.push_back({"  data directory MiB after ingest", "", Num(MiB(luxdb->data_dir_bytes), 1), "",
                    "", "", ""});
  }

  std::cout << "\nLuxDB vs hnswlib in-process: " << data.name << " " << data.n << " x " << data.dim
            << ", " << data.nq << " queries, M=" << config.m
            << " ef_construction=" << config.ef_construction << " k=" << config.k << ", "
            << config.threads << " threads (server --threads " << config.threads << "), best of "
            << config.repeats << " run" << (config.repeats == 1 ? "" : "s") << " per metric\n";
  if (luxdb) {
    std::cout << "LuxDB single-query clients: each its own "
              << (config.shared_channel ? "stream on one shared connection" : "connection")
              << " and one call in flight, driven by "
              << (config.client_threads == 0 ? "one bench thread each"
                                             : absl::StrCat(config.client_threads, " bench thread",
                                                            config.client_threads == 1 ? "" : "s"))
              << "\n";
  }
  std::cout << "\n";
  PrintTable(rows);

  // Where the time goes: CPU per operation on each side, in the runs shown.
  if (luxdb) {
    std::cout << "\nCPU per operation in the runs shown (LuxDB server / bench client; hnswlib "
                 "in-process):\n";
    auto per = [](double seconds, double count) { return 1e6 * seconds / std::max(count, 1.0); };
    if (!luxdb->ingest.empty()) {
      const IngestResult& l = luxdb->ingest.best();
      std::cout << absl::StrFormat(
          "  ingest, 1 client:    server %6.0f us/vector, client %5.0f us/vector%s\n",
          per(l.server_cpu_s, l.vectors), per(l.client_cpu_s, l.vectors),
          h_ingest ? absl::StrFormat("   hnswlib %6.0f us/vector",
                                     per(h_ingest->client_cpu_s, h_ingest->vectors))
                   : "");
    }
    for (size_t i = 0; i < luxdb->batch.size(); ++i) {
      if (luxdb->batch[i].empty()) continue;
      const BatchQueryResult& b = luxdb->batch[i].best();
      std::cout << absl::StrFormat(
          "  batch, ef=%-4u       server %6.1f us/query, client %5.1f us/query%s\n", b.ef,
          per(b.server_cpu_s, b.queries), per(b.client_cpu_s, b.queries),
          hnswlib && !hnswlib->batch[i].empty()
              ? absl::StrFormat(
                    "   hnswlib %6.1f us/query",
                    per(hnswlib->batch[i].best().client_cpu_s, hnswlib->batch[i].best().queries))
              : "");
    }
    for (const Runs<SingleQueryResult>& runs : luxdb->single) {
      if (runs.empty()) continue;
      const SingleQueryResult& s = runs.best();
      std::cout << absl::StrFormat(
          "  single, %2d client(s) server %6.1f us/query, client %5.1f us/query%s\n", s.clients,
          per(s.server_cpu_s, s.queries), per(s.client_cpu_s, s.queries),
          h_single ? absl::StrFormat("   hnswlib %6.1f us/query",
                                     per(h_single->client_cpu_s, h_single->queries))
                   : "");
    }
  }
  size_t passed = 0;
  for (const Target& t : targets) passed += t.pass;
  std::cout << "\nTargets met: " << passed << " of " << targets.size()
            << ". \"others busy\": cores other processes kept busy during the hnswlib / LuxDB "
               "run shown (2 cores in all); above ~0.2 the ratio is not clean.\n";

  if (!config.json_path.empty()) {
    Fields fact_fields;
    for (const auto& [name, value] : facts) fact_fields.emplace_back(name, JsonString(value));
    Fields top = {
        {"command", JsonString(config.command_line)},
        {"machine", JsonObject(fact_fields)},
        {"dataset", JsonObject({{"name", JsonString(data.name)},
                                {"source", JsonString(data.source)},
                                {"n", JsonNumber(data.n)},
                                {"dim", JsonNumber(data.dim)},
                                {"queries", JsonNumber(data.nq)},
                                {"ground_truth_cache", JsonString(truth.cache_file)}})},
        {"params", JsonObject({{"m", JsonNumber(config.m)},
                               {"ef_construction", JsonNumber(config.ef_construction)},
                               {"k", JsonNumber(config.k)},
                               {"single_ef", JsonNumber(config.single_ef)},
                               {"threads", JsonNumber(config.threads)},
                               {"ingest_batch", JsonNumber(config.ingest_batch)},
                               {"duration_s", JsonNumber(config.duration_s)},
                               {"repeats", JsonNumber(config.repeats)},
                               {"ingest_repeats", JsonNumber(config.ingest_repeats)},
                               {"batch_calls", JsonNumber(config.batch_calls)},
                               {"batch_in_flight", JsonNumber(config.batch_in_flight)},
                               {"client_threads", JsonNumber(config.client_threads)},
                               {"shared_channel", config.shared_channel ? "true" : "false"}})},
    };
    if (hnswlib) {
      std::vector<std::string> batch;
      for (const auto& b : hnswlib->batch) batch.push_back(Json(b));
      top.emplace_back("hnswlib",
                       JsonObject({{"simd", JsonString(hnswlib->simd)},
                                   {"ingest", Json(hnswlib->ingest)},
                                   {"batch", JsonArray(batch)},
                                   {"single", Json(hnswlib->single)},
                                   {"single_one_thread", Json(hnswlib->single_one_thread)},
                                   {"batch_beside_python", Json(hnswlib->batch_beside_python)},
                                   {"rss_delta_bytes", JsonNumber(hnswlib->rss_delta_bytes)},
                                   {"theoretical_bytes", JsonNumber(hnswlib->theoretical_bytes)},
                                   {"graph_file_bytes", JsonNumber(hnswlib->graph_file_bytes)}}));
    }
    if (luxdb) {
      std::vector<std::string> batch, single;
      for (const auto& b : luxdb->batch) batch.push_back(Json(b));
      for (const auto& s : luxdb->single) single.push_back(Json(s));
      top.emplace_back("luxdb",
                       JsonObject({{"server", JsonString(luxdb->server)},
                                   {"data_fs", JsonString(luxdb->data_fs)},
                                   {"ingest", Json(luxdb->ingest)},
                                   {"ingest_2_clients", Json(luxdb->ingest_parallel)},
                                   {"batch", JsonArray(batch)},
                                   {"single", JsonArray(single)},
                                   {"health_floor", Json(luxdb->floor)},
                                   {"query_stream", Json(luxdb->stream)},
                                   {"python", JsonPython(luxdb->python)},
                                   {"vm_rss_idle_bytes", JsonNumber(luxdb->vm_rss_idle_bytes)},
                                   {"vm_hwm_bytes", JsonNumber(luxdb->vm_hwm_bytes)},
                                   {"vm_rss_bytes", JsonNumber(luxdb->vm_rss_bytes)},
                                   {"vm_hwm_final_bytes", JsonNumber(luxdb->vm_hwm_final_bytes)},
                                   {"data_dir_bytes", JsonNumber(luxdb->data_dir_bytes)}}));
    }
    std::vector<std::string> target_json;
    for (const Target& t : targets) {
      target_json.push_back(JsonObject({{"name", JsonString(t.name)},
                                        {"hnswlib", JsonNumber(t.hnswlib)},
                                        {"luxdb", JsonNumber(t.luxdb)},
                                        {"ratio", JsonNumber(t.ratio)},
                                        {"target", JsonString(t.target)},
                                        {"pass", t.pass ? "true" : "false"}}));
    }
    top.emplace_back("targets", JsonArray(target_json));
    std::ofstream out(config.json_path);
    out << JsonObject(top) << "\n";
    if (!out) {
      std::cerr << "luxdb-bench: cannot write " << config.json_path << "\n";
    } else {
      std::cout << "JSON written to " << config.json_path << "\n";
    }
  }
  return passed == targets.size();
}

}  // namespace luxdb::bench
