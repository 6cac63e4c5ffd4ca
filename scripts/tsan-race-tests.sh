#!/usr/bin/env bash
# Builds the race-test suites with ThreadSanitizer in a build directory of their own and runs
# them; any TSan report fails (halt_on_error=1). Run by CTest as tsan_race_tests (label slow).
#   tsan-race-tests.sh SOURCE_DIR BUILD_DIR TARGET... (environment: LUXDB_TSAN_CMAKE_ARGS,
#   extra CMake arguments such as the parent build's compiler and launcher; LUXDB_JOBS)
set -euo pipefail
source_dir=$1
build_dir=$2
shift 2
if [[ $# -eq 0 ]]; then
  echo "tsan-race-tests.sh: no targets given" >&2
  exit 2
fi
# shellcheck disable=SC2086
cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUXDB_SANITIZE=thread \
  ${LUXDB_TSAN_CMAKE_ARGS:-} > "$build_dir.configure.log" 2>&1 ||
  { cat "$build_dir.configure.log"; exit 1; }
cmake --build "$build_dir" -j "${LUXDB_JOBS:-2}" --target "$@"
export TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1 second_deadlock_stack=1 suppressions=$source_dir/tests/tsan.supp"
status=0
for target in "$@"; do
  echo "=== $target (ThreadSanitizer)"
  if ! "$build_dir/tests/$target" --gtest_brief=1; then
    echo "=== $target FAILED under ThreadSanitizer"
    status=1
  fi
done
exit $status
