# bench_smoke: runs `luxdb-bench --quick` and checks that it exits 0 and prints the table with
# both columns. Performance is not asserted (CI machines vary).
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
                 "server peak RSS MiB" "Targets met: ")
  if(NOT output MATCHES "${expected}")
    message(FATAL_ERROR "luxdb-bench --quick output lacks '${expected}'; stderr:\n${errors}")
  endif()
endforeach()
