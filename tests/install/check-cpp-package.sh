#!/usr/bin/env bash
# The installed C++ client package, as a project outside this repository meets it:
#   1. `cmake --install BUILD_DIR --prefix WORK_DIR/prefix`; its bin/ holds luxdb and
#      luxdb-server and nothing else (no test or bench binaries);
#   2. tests/install/cpp-project builds clients/cpp/examples/quickstart.cc with
#      find_package(luxdb CONFIG) and luxdb::client (-DCMAKE_PREFIX_PATH=WORK_DIR/prefix);
#   3. a plain compiler command builds it again with `pkg-config --cflags --libs luxdb`, and
#      compiles a file that includes every installed header (so none needs a file that is
#      not installed);
#   4. both binaries run against WORK_DIR/prefix/bin/luxdb-server on 127.0.0.1 (a free port,
#      a fresh data directory, a random secret in LUXDB_SECRET) and must print the
#      quickstart's answers.
# Usage: check-cpp-package.sh BUILD_DIR [WORK_DIR]   (WORK_DIR: BUILD_DIR/install-check)
# BUILD_DIR must be built. The compiler and its launcher (ccache) are BUILD_DIR's. Every step
# has a timeout, and the server is stopped on exit. CTest runs this as cpp_package.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [WORK_DIR]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
work=${2:-$build/install-check}
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "check-cpp-package: '$build' is not a CMake build directory (no CMakeCache.txt)" >&2
  exit 2
fi

# Reads VAR from BUILD_DIR's CMake cache ("VAR:TYPE=value"); empty when unset.
cache_value() {
  sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1
}
cxx=$(cache_value CMAKE_CXX_COMPILER)
launcher=$(cache_value CMAKE_CXX_COMPILER_LAUNCHER)
libdir=$(cache_value CMAKE_INSTALL_LIBDIR)  # GNUInstallDirs: lib, or lib/<arch> for /usr
version=$(head -n 1 "$source_dir/VERSION")
quickstart_source=$source_dir/clients/cpp/examples/quickstart.cc

fail() {
  echo "check-cpp-package: FAIL: $*" >&2
  exit 1
}

# Shows a step's log when it fails.
run_logged() {
  local log=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "'$*' failed (log: $log)"
  fi
}

# Fixed paths under WORK_DIR, so that ccache finds the previous run's objects.
prefix=$work/prefix
mkdir -p "$work"
rm -rf "$prefix" "$work/cmake-build" "$work/pkg-config-build" "$work/server"
mkdir -p "$work/pkg-config-build" "$work/server/data"

server_pid=""
stop_server() {
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 300); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap stop_server EXIT

echo "== cmake --install $build --prefix $prefix"
run_logged "$work/install.log" timeout --kill-after=10 300 cmake --install "$build" --prefix "$prefix"
installed_bin=$(cd "$prefix/bin" && printf '%s ' *)
[ "$installed_bin" = "luxdb luxdb-server " ] ||
  fail "$prefix/bin holds '$installed_bin', expected exactly luxdb and luxdb-server"
cmake_dir=$prefix/${libdir:-lib}/cmake/luxdb
pc_file=$prefix/${libdir:-lib}/pkgconfig/luxdb.pc
[ -f "$cmake_dir/luxdbConfig.cmake" ] || fail "no $cmake_dir/luxdbConfig.cmake"
[ -f "$pc_file" ] || fail "no $pc_file"

echo "== find_package(luxdb CONFIG) in tests/install/cpp-project"
configure_args=(-S "$source_dir/tests/install/cpp-project" -B "$work/cmake-build"
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx"
  -DLUXDB_QUICKSTART="$quickstart_source")
[ -z "$launcher" ] || configure_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
run_logged "$work/cmake-configure.log" timeout --kill-after=10 300 cmake "${configure_args[@]}"
grep -qxF -- "-- luxdb $version from $cmake_dir" "$work/cmake-configure.log" || {
  cat "$work/cmake-configure.log" >&2
  fail "find_package(luxdb) did not report version $version from $cmake_dir"
}
run_logged "$work/cmake-build.log" timeout --kill-after=10 600 \
  cmake --build "$work/cmake-build" -j 2 --verbose
cmake_quickstart=$work/cmake-build/quickstart

echo "== pkg-config --cflags --libs luxdb and $cxx"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc_file")
pc_version=$(pkg-config --modversion luxdb) || fail "pkg-config cannot read $pc_file"
[ "$pc_version" = "$version" ] || fail "pkg-config --modversion luxdb is '$pc_version', expected $version"
read -r -a cflags <<<"$(pkg-config --cflags luxdb)"
read -r -a libs <<<"$(pkg-config --libs luxdb)"
compile=("$cxx" -std=c++20 -Wall -Wextra -Werror)
[ -z "$launcher" ] || compile=("$launcher" "${compile[@]}")
headers_source=$work/pkg-config-build/installed_headers.cc
(cd "$prefix/include/luxdb" && find . -name '*.h' | sed 's|^\./||' | sort) |
  sed 's/.*/#include "&"/' >"$headers_source"
grep -qxF '#include "luxdb/client.h"' "$headers_source" ||
  fail "luxdb/client.h is not installed under $prefix/include/luxdb"
run_logged "$work/pkg-config-build/headers.log" timeout --kill-after=10 300 \
  "${compile[@]}" "${cflags[@]}" -c "$headers_source" -o "$work/pkg-config-build/installed_headers.o"
run_logged "$work/pkg-config-build/compile.log" timeout --kill-after=10 300 \
  "${compile[@]}" "${cflags[@]}" -c "$quickstart_source" -o "$work/pkg-config-build/quickstart.o"
pkg_config_quickstart=$work/pkg-config-build/quickstart
run_logged "$work/pkg-config-build/link.log" timeout --kill-after=10 300 \
  "$cxx" -o "$pkg_config_quickstart" "$work/pkg-config-build/quickstart.o" "${libs[@]}"

echo "== $prefix/bin/luxdb-server on 127.0.0.1, port 0"
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
server_log=$work/server/stderr.log
env -i PATH="$PATH" LUXDB_SECRET="$secret" \
  "$prefix/bin/luxdb-server" --host 127.0.0.1 --port 0 "$work/server/data" \
  </dev/null >"$server_log" 2>&1 &
server_pid=$!
# It prints "luxdb-server: serving 'DIR' on 127.0.0.1:PORT" once every index has loaded.
port=""
for _ in $(seq 600); do
  port=$(sed -n "s/^luxdb-server: serving .* on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p" "$server_log")
  [ -z "$port" ] || break
  kill -0 "$server_pid" 2>/dev/null || { cat "$server_log" >&2; fail "luxdb-server exited while starting"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$server_log" >&2; fail "luxdb-server did not report serving within 60 s"; }

for quickstart in "$cmake_quickstart" "$pkg_config_quickstart"; do
  echo "== $quickstart 127.0.0.1 $port"
  output=$work/server/$(basename "$(dirname "$quickstart")").out
  if ! timeout --kill-after=5 60 env -i PATH="$PATH" LUXDB_SECRET="$secret" \
      "$quickstart" 127.0.0.1 "$port" >"$output" 2>&1; then
    cat "$output" >&2
    fail "$quickstart 127.0.0.1 $port failed"
  fi
  cat "$output"
  for line in "query 0: nearest id 1000 at distance 0" "query 1: nearest id 1001 at distance 0" \
      "added 100 vectors; read back 2 of dimension 4; index: 100 items"; do
    grep -qxF "$line" "$output" || fail "$quickstart did not print '$line'"
  done
done

stop_server
echo "check-cpp-package: OK (luxdb $version, installed into $prefix)"
