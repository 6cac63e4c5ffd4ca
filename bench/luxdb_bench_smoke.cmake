# bench_smoke: runs `luxdb-bench --quick` and checks that it exits 0 and prints the table with
# both columns; then tiny runs of the issue 15 workloads, --mixed and --churn, and of issue 17's
# --filtered (synthetic data, without --check), for their code paths and tables. Performance is
# not asserted (CI machines vary); --filtered's correctness is: it exits 1 if any result lies
# outside its filter, and its row must say 0.
#   cmake -DBENCH=/path/to/luxdb-bench -P luxdb_bench_smoke.cmake
if(NOT BENCH)
  message(FATAL_ERROR "pass -DBENCH=<path to luxdb-bench>")
endif()
execute_process(COMMAND ${BENCH} --quick
  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
message("${output}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "luxdb-bench --quick exited with ${result}:\n${errors}")
endif()
foreach(expected "metric +hnswlib +LuxDB +LuxDB/hnswlib +target +result"
                 "ingest vectors/s, 1 client" "batch QPS, ef=100" "single-query QPS, 16 clients"
                 "server peak RSS MiB" "gRPC floor p50 ms" "in-process p50 ms per query"
                 "call path: LuxDB p50 ms, 1 client" "Python sync client p50 ms"
                 "Python QueryStream q/s, async client" "QueryStream q/s, 1 client, 1 query per message"
                 "streamed answers unlike query_index's +- +0 +PASS" "Targets met: ")
  if(NOT output MATCHES "${expected}")
    message(FATAL_ERROR "luxdb-bench --quick output lacks '${expected}'; stderr:\n${errors}")
  endif()
endforeach()

# Runs luxdb-bench with the arguments after `name` and fails unless it exits 0 and prints every
# line of EXPECTED (a list variable named by `expected_var`).
function(run_workload name expected_var)
  execute_process(COMMAND ${BENCH} ${ARGN}
    RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  message("${output}")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "luxdb-bench ${name} exited with ${result}:\n${errors}")
  endif()
  foreach(expected IN LISTS ${expected_var})
    if(NOT output MATCHES "${expected}")
      message(FATAL_ERROR "luxdb-bench ${name} output lacks '${expected}'; stderr:\n${errors}")
    endif()
  endforeach()
endfunction()

set(mixed_lines "idle: query p50 / p99 / max ms" "while writing: QPS" "while writing: recall@10"
                "p99 while writing / idle p99" "ingest while querying / alone"
                "cores both ratio targets need" "--mixed: ")
run_workload(--mixed mixed_lines --mixed --synthetic 3000 32 --queries 200 --mixed-preload 1000
             --mixed-stream 2000 --duration 1 --recall-sample 100)
set(churn_lines "A: replace passes accepted" "A: self-recall fresh - replaced"
                "B: delete-half \\+ add-new rounds accepted" "B: deleted ids returned"
                "B: self-recall fresh - churned" "B: server VmRSS MiB churned / fresh" "--churn: ")
run_workload(--churn churn_lines --churn --churn-items 2000 --churn-dim 16 --churn-rounds 2
             --self-recall-sample 500 --compact-wait 1)

# --filtered on 3000 items: the 0.1 % filter matches ~3 of them, so its rows are padded.
set(filtered_lines "bucket < 500 \\(range\\) +[0-9.]+ % \\([0-9]+\\)"
                   "tenant = \"tenant-3\" \\(equals\\) +[0-9.]+ %"
                   "not tenant any_of the other 9 \\(must_not\\) +[0-9.]+ %"
                   "tag any_of 3 tags, not bucket >= 900 +[0-9.]+ %"
                   "group = 7 \\(equals, 1000 values\\) +[0-9.]+ %" "ids: 100 random ids +[0-9.]+ %"
                   "recall@10 filtered, ids: 100 random ids +[0-9.]+"
                   "QPS filtered / unfiltered, tenant = \"tenant-3\" \\(equals\\) +[0-9.]+"
                   "results outside their filter \\(of [1-9][0-9]* checked\\) +0 +0 +PASS"
                   "--filtered: ")
run_workload(--filtered filtered_lines --filtered --synthetic 3000 16 --latent 8 --queries 100
             --duration 0.2 --filtered-rounds 1)
