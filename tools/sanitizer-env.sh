# Runtime options of the sanitizer builds, sourced by tools/sanitize.sh and tools/fuzz.sh.
# Values already in the environment win, so a developer can override any of them.
#  - halt_on_error / abort_on_error (with -fno-sanitize-recover in CMake): the first report
#    fails the test.
#  - detect_leaks: LeakSanitizer runs at the exit of every test binary and of the gateway the
#    integration tests start. tools/lsan.supp holds the suppressions for leaks inside
#    uninstrumented Debian libraries, each with its reason (our own leaks are fixed, never
#    suppressed).
#  - TSan: Debian's abseil is made visible by tests/sanitize/tsan_absl_sync.cc instead of
#    suppressions.
# shellcheck shell=bash
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan.supp:print_suppressions=0}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
# Symbolized stack traces: the sanitizers look for llvm-symbolizer on PATH, which Debian's
# llvm-14 package puts only under /usr/lib/llvm-14/bin unless the `llvm` package is installed.
if ! command -v llvm-symbolizer >/dev/null && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export PATH="$PATH:/usr/lib/llvm-14/bin"
fi
