#!/usr/bin/env bash
# Installs LuxDB's build, test and runtime dependencies from Debian bookworm packages.
# Runs apt only when something is missing; uses sudo when not root.
set -euo pipefail

packages=(
  cmake g++ make pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  librocksdb-dev libabsl-dev libhnswlib-dev libssl-dev openssl libspdlog-dev
  prometheus-cpp-dev  # the server's /metrics endpoint (prometheus-cpp's exposer)
  # tests: promtool checks a scrape, and a real Prometheus scrapes a server (the tests run their
  # own on a free port; on a machine with systemd the package also enables its service, :9090)
  prometheus
  # cluster mode: etcd holds membership, shard maps and leases; the tests start their own etcd
  # on free ports with a temporary data directory and never use the etcd service that the
  # package enables on a machine with systemd (:2379)
  etcd-server etcd-client
  libgtest-dev libgmock-dev
  clang libclang-rt-14-dev llvm  # fuzz/: clang, its libFuzzer runtime, llvm-symbolizer
  python3 python3-grpcio python3-protobuf python3-numpy python3-pytest python3-pytest-asyncio
  python3-hnswlib
  python3-venv python3-setuptools python3-wheel  # pip install ./clients/python into a venv
  dataset-fashion-mnist
)
# Node.js and npm run the Node example's tests (clients/node). Debian's are installed only when
# no node or npm is on PATH, so a Node.js installed some other way is left alone.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
