#!/usr/bin/env bash
# Build the libFuzzer harnesses (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan in build-fuzz/, then
# run each for SECONDS (default 60).  Exits non-zero when a harness finds a crash; the input that
# triggered it is left in build-fuzz/fuzz-artifacts/.
#
#   scripts/fuzz.sh [SECONDS]        environment: NS_FUZZ_BUILD (build dir), NS_FUZZ_JOBS (parallel workers)
set -euo pipefail
secs="${1:-60}"
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${NS_FUZZ_BUILD:-$src/build-fuzz}"
jobs="${NS_FUZZ_JOBS:-1}"

command -v clang >/dev/null || { echo "fuzz.sh: clang is missing (scripts/install-deps.sh)" >&2; exit 1; }
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNS_FUZZ=ON -DNS_SANITIZE=ON >/dev/null

harnesses=()
for f in "$src"/tests/fuzz/fuzz_*.c; do harnesses+=("$(basename "$f" .c)"); done
cmake --build "$build" --target "${harnesses[@]}" -j"$(nproc)"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
status=0
for h in "${harnesses[@]}"; do
  name="${h#fuzz_}"
  seeds="$src/tests/fuzz/corpus/$name"
  work="$build/fuzz-corpus/$name" # grows across runs; the seeds in the tree stay as they are
  artifacts="$build/fuzz-artifacts"
  mkdir -p "$work" "$artifacts"
  args=(-max_total_time="$secs" -max_len=65537 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/$name-")
  [ -f "$src/tests/fuzz/$name.dict" ] && args+=(-dict="$src/tests/fuzz/$name.dict")
  [ "$jobs" -gt 1 ] && args+=(-fork="$jobs")
  echo "fuzz.sh: $h for ${secs}s"
  "$build/bin/$h" "${args[@]}" "$work" "$seeds" || status=$?
done
exit "$status"
