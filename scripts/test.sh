#!/usr/bin/env bash
# The whole test suite: a plain build and an ASan+UBSan build, each running every test (unit and
# integration, as root), then a short fuzzing run of the request parser.  Exit 0 only if all pass.
#   scripts/test.sh            everything
#   NS_BUILDS=plain scripts/test.sh      one build only (plain | asan)
#   NS_FUZZ_SECONDS=0 scripts/test.sh    skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
builds=${NS_BUILDS:-"plain asan"}
status=0
for b in $builds; do
  dir=build; flags=()
  if [ "$b" = asan ]; then dir=build-asan; flags=(-DNS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug); fi
  echo "=== $b build ($dir) ==="
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs" 2>&1 | grep -E 'warning|error' || true
  cmake --build "$dir" -j "$jobs" >/dev/null
  # Forking daemons and their children: leak reports at exit of forked children are noise.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  if ! ctest --test-dir "$dir" --output-on-failure --timeout 900; then status=1; fi
done
secs=${NS_FUZZ_SECONDS:-30}
if [ "$secs" -gt 0 ] && [ -x scripts/fuzz.sh ]; then
  echo "=== fuzzing the request parser for ${secs}s ==="
  scripts/fuzz.sh "$secs" || status=1
fi
exit $status
