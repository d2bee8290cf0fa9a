#!/usr/bin/env bash
# Installs every Debian package Knooppunt needs to build, test and run its demo.
# Idempotent: packages already present are skipped, so a second run costs a dpkg query only.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config git
  # gRPC + protobuf (C++ runtime, compilers, reflection)
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  # abseil, OpenSSL, yaml-cpp, SQLite
  libabsl-dev libssl-dev openssl libyaml-cpp-dev libsqlite3-dev sqlite3
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # sanitizer and fuzzing builds (tools/sanitize.sh, tools/fuzz.sh): clang, its sanitizer and
  # libFuzzer runtimes, llvm-symbolizer for readable reports
  clang-14 libclang-rt-14-dev llvm-14
  # PostgreSQL: libpq for the shared store and audit log of several replicas; the server's
  # binaries (initdb, postgres) for the tests, which start their own instance in a temp dir
  libpq-dev postgresql-15
  # metrics (Prometheus exposition)
  prometheus-cpp-dev
  # demo / test helpers
  procps
  # the performance comparison (tools/perf/compare.sh): the proxies Knooppunt is compared with
  nginx haproxy
  # deployment checks (tests/deploy): systemd-analyze verify, YAML parsing, dpkg-deb
  systemd python3-yaml dpkg-dev
  # integration kit: the Python example (examples/python) with Debian's gRPC and protobuf
  python3-grpcio python3-protobuf
)
# The Node example (examples/node) needs node and npm; any node already installed will do.
if ! command -v node >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
