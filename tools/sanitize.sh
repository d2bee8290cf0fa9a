#!/usr/bin/env bash
# The sanitizer part of the test suite (issue 8), run by tools/test.sh after the normal tests.
#
#   tools/sanitize.sh [asan] [tsan]        (default: both)
#
# asan: one clang tree (build-asan/) with AddressSanitizer + UndefinedBehaviorSanitizer and
#       libFuzzer coverage: the whole test suite (the gateway the integration tests start is
#       sanitized too) plus every fuzz target for KNOOPPUNT_FUZZ_RUNS executions (the fuzz
#       targets of tests/fuzz/ are ctest tests of that tree).
# tsan: a ThreadSanitizer tree (build-tsan/) with only the unit tests whose subject is
#       concurrency (group commit, scheduler, token buckets); the others mostly exercise the
#       uninstrumented gRPC, whose own synchronisation TSan cannot see. Debian's abseil is
#       uninstrumented too: tests/sanitize/tsan_absl_sync.cc makes its locks visible.
# Runtime options: tools/sanitizer-env.sh.
# Build directories: KNOOPPUNT_ASAN_BUILD_DIR, KNOOPPUNT_TSAN_BUILD_DIR.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="$(nproc)"
asan_build="${KNOOPPUNT_ASAN_BUILD_DIR:-$repo/build-asan}"
tsan_build="${KNOOPPUNT_TSAN_BUILD_DIR:-$repo/build-tsan}"
# The test binaries whose subject is concurrency: the audit log's and the melding store's
# group-commit writer threads, the delivery scheduler, the token buckets.
tsan_tests=(audit_log_test sqlite_message_store_test delivery_scheduler_test policy_fields_test)

modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(asan tsan)

"$repo/tools/install-deps.sh"
# shellcheck source=tools/sanitizer-env.sh
source "$repo/tools/sanitizer-env.sh"

configure() {  # <dir> <sanitizers> [cmake args...]
  local dir="$1" sanitizers="$2"
  shift 2
  CC=clang CXX=clang++ cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKNOOPPUNT_BUILD_TESTS=ON -DKNOOPPUNT_BUILD_BENCHMARKS=OFF \
    -DKNOOPPUNT_SANITIZE="$sanitizers" "$@" >/dev/null
}

for mode in "${modes[@]}"; do
  case "$mode" in
    asan)
      echo "sanitize.sh: ASan + UBSan: whole test suite and fuzz targets ($asan_build)"
      configure "$asan_build" address,undefined -DKNOOPPUNT_FUZZ=ON
      cmake --build "$asan_build" -j"$jobs"
      # Not here: deploy_package packages the build tree (a sanitized build is never shipped;
      # the normal run packages the real one); soak_smoke judges the gateway's RSS, which
      # ASan's quarantine and shadow memory make grow by design (LeakSanitizer covers leaks).
      (cd "$asan_build" && ctest --output-on-failure -j"$jobs" --timeout 600 \
        -E '^(deploy_package|soak_smoke)$')
      ;;
    tsan)
      echo "sanitize.sh: TSan: concurrency tests ($tsan_build)"
      configure "$tsan_build" thread
      cmake --build "$tsan_build" -j"$jobs" --target "${tsan_tests[@]}"
      # Run the binaries themselves: ctest in this tree would also list every test whose
      # binary or script was not built for TSan.
      for t in "${tsan_tests[@]}"; do
        bin="$(find "$tsan_build/tests" -type f -name "$t" -perm -u+x | head -n1)"
        [ -n "$bin" ] || { echo "sanitize.sh: $t was not built" >&2; exit 1; }
        echo "sanitize.sh: TSan $t"
        (cd "$(dirname "$bin")" && KNOOPPUNT_SOURCE_DIR="$repo" "$bin" --gtest_brief=1)
      done
      ;;
    *) echo "sanitize.sh: unknown mode $mode (asan, tsan)" >&2; exit 2 ;;
  esac
done
