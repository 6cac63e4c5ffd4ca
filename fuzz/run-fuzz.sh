#!/usr/bin/env bash
# Builds LuxDB's libFuzzer targets (fuzz/) with clang, ASan and UBSan, replays the kept
# reproducers (fuzz/regressions/<target>/), then fuzzes each target for SECONDS_PER_TARGET
# seconds (default 20), one after another. Prints per target the executions and the result;
# exits non-zero if any target crashed, leaked, timed out or ran out of memory (the input is
# kept under the build directory's artifacts/<target>/).
#
#   fuzz/run-fuzz.sh [SECONDS_PER_TARGET]
#   LUXDB_FUZZ_BUILD    build directory (default: <repo>/build/fuzz); its corpus/ grows
#                       from run to run
#   LUXDB_FUZZ_TARGETS  targets to run (default: fuzz_request fuzz_token fuzz_graph_file
#                       fuzz_options)
#   LUXDB_JOBS          parallel compile jobs (default 2)
set -euo pipefail

seconds="${1:-20}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${LUXDB_FUZZ_BUILD:-$repo/build/fuzz}"
read -r -a targets <<<"${LUXDB_FUZZ_TARGETS:-fuzz_request fuzz_token fuzz_graph_file fuzz_options}"
declare -A max_len=([fuzz_request]=4096 [fuzz_token]=256 [fuzz_graph_file]=8192 [fuzz_options]=1024)

if ! command -v clang++ >/dev/null; then
  echo "run-fuzz: clang++ not found; run scripts/install-deps.sh" >&2
  exit 2
fi

cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUXDB_SANITIZE=address
  -DLUXDB_FUZZ=ON -DBUILD_TESTING=OFF)
# The compiler is fixed at the first configure of a build directory.
[ -f "$build/CMakeCache.txt" ] || cmake_args+=(-DCMAKE_CXX_COMPILER=clang++)
cmake "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j "${LUXDB_JOBS:-2}" --target "${targets[@]}" fuzz_seeds

export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$repo/fuzz/ubsan.supp"
export LSAN_OPTIONS="suppressions=$repo/tests/lsan.supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"

"$build/fuzz/fuzz_seeds" "$build/seeds"

failed=0
summary=()
for target in "${targets[@]}"; do
  binary="$build/fuzz/$target"
  corpus="$build/corpus/$target"
  artifacts="$build/artifacts/$target/"
  log="$build/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"

  : >"$log.regressions"
  for reproducer in "$repo/fuzz/regressions/$target"/*; do
    [ -e "$reproducer" ] || continue
    if ! "$binary" -rss_limit_mb=2048 -artifact_prefix="$artifacts" "$reproducer" \
      >>"$log.regressions" 2>&1; then
      echo "run-fuzz: $target fails on fuzz/regressions/$target/$(basename "$reproducer")" >&2
      summary+=("$target: FAILED on the kept reproducer fuzz/regressions/$target/$(basename "$reproducer")")
      failed=1
    fi
  done
  grep -E '^note:' "$log.regressions" | sort -u | sed "s/^/run-fuzz: $target reproducers: /" || true

  flags=(-max_total_time="$seconds" -max_len="${max_len[$target]}" -rss_limit_mb=2048 -timeout=25
    -print_final_stats=1 -artifact_prefix="$artifacts")
  [ -f "$repo/fuzz/$target.dict" ] && flags+=(-dict="$repo/fuzz/$target.dict")
  echo "run-fuzz: $target for $seconds s"
  status=0
  nice -n 10 "$binary" "${flags[@]}" "$corpus" "$build/seeds/$target" >"$log" 2>&1 || status=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
  notes=$(grep -c '^note:' "$log" || true)
  if [ "$status" -eq 0 ]; then
    result="ok"
  else
    failed=1
    kind=$(grep -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): [a-zA-Z -]+' "$log" |
      head -1 || true)
    broken=$(grep -m1 -oE 'invariant broken: .*' "$log" | cut -c1-160 || true)
    ub=$(grep -m1 -oE 'runtime error: .*' "$log" | cut -c1-160 || true)
    input=$(grep -oE "Test unit written to .*" "$log" | tail -1 | sed 's/Test unit written to //')
    result="FAILED (exit $status) ${kind:-} ${broken:-}${ub:-} input: ${input:-none}; log: $log"
  fi
  summary+=("$target: ${runs:-0} runs (${rate:-0}/s), ${coverage:-no coverage}, $notes notes: $result")
done

echo
printf 'run-fuzz: %s\n' "${summary[@]}"
exit "$failed"
