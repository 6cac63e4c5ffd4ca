#!/usr/bin/env bash
# Installs dependencies, builds, and starts luxdb-server on ./data, port 8484.
# Arguments are passed to the server, e.g. ./run.sh --loglevel info
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh
exec "${LUXDB_BUILD_DIR:-build}/server/luxdb-server" --port 8484 "$@" ./data
