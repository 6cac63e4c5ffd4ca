#!/usr/bin/env bash
# CTest's node_tests: installs the locked npm dependencies into clients/node/node_modules and
# runs test.mjs with Node's test runner (TAP output ending in "# pass N" / "# fail N"; a
# failing test makes this script, and so the CTest test, fail). Needs LUXDB_SERVER_BIN.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
exec node --test --test-reporter=tap test.mjs
