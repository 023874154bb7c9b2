#!/usr/bin/env bash
# The test launcher (tests/tools/in-pidns), which every test runs under: a test that signals
# every process it may (kill(-1, SIGKILL), what a test that computed a pid wrongly once did, as
# root, ending the CI runner) reaches only its own processes; a process a test leaves running
# ends with the test; the test's exit status and its death by a signal come through; its stdin
# is its own.  Checked by running small "tests" under the launcher from here, beside a sentinel
# process of this test's own that must survive them.
. "$(dirname "$0")/lib.sh"
require_root
LAUNCH=$NS_SRC/tests/tools/in-pidns
TMP=$(mktemp -d /tmp/ns-harness.XXXXXX)
sleep 300 & SENTINEL=$!
trap 'kill "$SENTINEL" 2>/dev/null; wait "$SENTINEL" 2>/dev/null; pkill -f "^sleep 301$"; rm -rf "$TMP"' EXIT

# The kill is sent only from a namespace of its own (pid 2): were the launcher broken, this test
# must fail, not end every process on the machine.
"$LAUNCH" sh -c 'echo "$$" > '"$TMP"'/pid; [ "$$" = 2 ] || exit 99
sleep 200 & c=$!; kill -KILL -1; wait "$c"; echo "$?" > '"$TMP"'/child; exit 0'
rc=$?
expect_eq "the test ran in its own namespace (pid 2, under the launcher's init)" 2 "$(cat "$TMP/pid")"
expect_eq "it sent kill(-1, SIGKILL) there and exited with its own status (0)" 0 "$rc"
check "the sentinel outside survived it" kill -0 "$SENTINEL"
expect_eq "inside, the kill reached the test's own process (it died of SIGKILL: 137)" 137 "$(cat "$TMP/child")"

# A process a test leaves behind: it ends with the test.
"$LAUNCH" sh -c 'setsid sleep 301 >/dev/null 2>&1 < /dev/null & exit 0'
left=$(pgrep -f '^sleep 301$' | wc -l)
expect_eq "a process the test left running ended with it" 0 "$left"

"$LAUNCH" sh -c 'exit 7'
expect_eq "an exit status comes through" 7 "$?"
"$LAUNCH" sh -c 'kill -TERM $$'
expect_eq "death by SIGTERM comes through as 143 (the test is not init: its signals act as usual)" 143 "$?"
expect_eq "stdin reaches the test" "from stdin" "$(echo 'from stdin' | "$LAUNCH" cat)"
tap_done
