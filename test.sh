#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test (C++ GoogleTest suites and the Python
# suites) through CTest. Arguments are passed to ctest, e.g. ./test.sh -R service_test
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir "${LUXDB_BUILD_DIR:-build}" --output-on-failure --timeout 900 "$@"
