#!/usr/bin/env bash
# README command 2: install what is missing, build everything with the tests, run them all.
# Then the sanitizer step (tools/sanitize.sh): the whole suite and the fuzz targets under
# ASan + UBSan, the concurrency tests under TSan. CI always runs it; KNOOPPUNT_SKIP_SANITIZERS=1
# skips it for a quicker local run.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KNOOPPUNT_TEST_BUILD_DIR:-$repo/build-tests}"
jobs="$(nproc)"

"$repo/tools/install-deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKNOOPPUNT_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j"$jobs"
cd "$build"
ctest --output-on-failure -j"$jobs" --timeout 300 "$@"
if [ "${KNOOPPUNT_SKIP_SANITIZERS:-0}" != 1 ]; then
  "$repo/tools/sanitize.sh"
fi
