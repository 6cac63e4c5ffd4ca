# many_indexes_smoke: runs `luxdb-many-indexes --indexes 300` and checks that it exits 0 (every
# call succeeded and every index came back after the restart) and that the server held fewer
# than 256 file descriptors. Timings are printed, not asserted (CI machines vary).
#   cmake -DBENCH=/path/to/luxdb-many-indexes -P many_indexes_smoke.cmake
if(NOT BENCH)
  message(FATAL_ERROR "pass -DBENCH=<path to luxdb-many-indexes>")
endif()
execute_process(COMMAND ${BENCH} --indexes 300 --progress-every 100
  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
message("${output}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "luxdb-many-indexes exited with ${result}:\n${errors}")
endif()
foreach(expected "server fds after +[0-9]+ +target < 256 +PASS"
                 "restart until all listed .*300 of 300 indexes listed, 300 initialised")
  if(NOT output MATCHES "${expected}")
    message(FATAL_ERROR "luxdb-many-indexes output lacks '${expected}'; stderr:\n${errors}")
  endif()
endforeach()
