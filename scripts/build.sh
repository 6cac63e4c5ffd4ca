#!/usr/bin/env bash
# Configures and builds LuxDB into ${LUXDB_BUILD_DIR:-build} with ${LUXDB_JOBS:-2} jobs.
# Extra CMake arguments come from LUXDB_CMAKE_ARGS, e.g. "-DLUXDB_SANITIZE=thread".
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${LUXDB_BUILD_DIR:-build}"
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${LUXDB_BUILD_TYPE:-RelWithDebInfo}" ${LUXDB_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "${LUXDB_JOBS:-2}"
