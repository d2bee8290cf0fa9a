#!/usr/bin/env bash
# Fuzzes the libFuzzer targets of tests/fuzz/ (ASan + UBSan build, clang).
#
#   tools/fuzz.sh [--time SECONDS | --runs N] [--build DIR] [--no-build] [target...]
#
# Default: build the fuzz tree (build-fuzz/, or --build) and fuzz every target for 60 s.
# --time S   fuzz each target for S seconds; new inputs go to DIR/fuzz-corpus/<target>/ and
#            are kept between runs, so repeated runs keep building on what they found.
# --runs N   fuzz each target for N executions from its seeds only, with a fixed random
#            seed, in a fresh work directory (what ctest and CI do: short and repeatable).
# Crashing inputs are written to DIR/fuzz-artifacts/; reproduce one with
#   DIR/tests/fuzz/<target> DIR/fuzz-artifacts/<target>-crash-...
# The seed corpora are tests/fuzz/corpus/<target>/ (regenerate: tests/fuzz/make_seeds.py).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build-fuzz"
time_s=60
runs=""
do_build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) time_s="$2"; runs=""; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for d in "$repo"/tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi

if [ "$do_build" = 1 ]; then
  "$repo/tools/install-deps.sh"
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKNOOPPUNT_BUILD_TESTS=ON -DKNOOPPUNT_BUILD_BENCHMARKS=OFF \
    -DKNOOPPUNT_SANITIZE=address,undefined -DKNOOPPUNT_FUZZ=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
fi

# Sanitizer settings shared with tools/sanitize.sh (and their reasons) live there.
# shellcheck source=tools/sanitizer-env.sh
source "$repo/tools/sanitizer-env.sh"

mkdir -p "$build/fuzz-artifacts"
status=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  seeds="$repo/tests/fuzz/corpus/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is not built" >&2; exit 2; }
  args=(-timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1
        "-artifact_prefix=$build/fuzz-artifacts/$t-")
  if [ -n "$runs" ]; then
    work="$(mktemp -d)"
    args+=(-runs="$runs" -seed=1)
  else
    work="$build/fuzz-corpus/$t"
    mkdir -p "$work"
    args+=(-max_total_time="$time_s")
  fi
  if [ -n "$runs" ]; then echo "fuzz.sh: $t ($runs runs)"; else echo "fuzz.sh: $t (${time_s} s)"; fi
  if ! "$bin" "${args[@]}" "$work" "$seeds"; then
    echo "fuzz.sh: $t FAILED (input in $build/fuzz-artifacts/)" >&2
    status=1
  fi
  if [ -n "$runs" ]; then rm -rf "$work"; fi
done
exit $status
