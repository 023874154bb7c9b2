#!/usr/bin/env bash
# Lifecycle: create→exec→destroy cycles leave nothing behind; SIGKILL of sandboxd while sandboxes
# run: every sandbox is re-adopted, output resumes with no gap and no duplicate, exits arrive.
. "$(dirname "$0")/lib.sh"
ns_setup
CYCLES=${NS_LIFECYCLE_CYCLES:-500}

state() {
  echo "mounts=$(wc -l < /proc/self/mountinfo)"
  echo "cgroups=$(find /sys/fs/cgroup -path '*nightshift-sandboxes/*' -type d 2>/dev/null | wc -l)"
  echo "fds=$(ls /proc/"$NS_DAEMON_PID"/fd | wc -l)"
  echo "state=$(ls "$NS_TMP/state/sandboxes" | wc -l) upper=$(ls "$NS_TMP/upper" | wc -l)"
  echo "children=$(ps --ppid "$NS_DAEMON_PID" -o pid= | wc -l)"
}
sb run -- /bin/true   # warm
before=$(state)
t0=$(date +%s%N)
fails=0
for i in $(seq 1 "$CYCLES"); do sb run -- /bin/true || fails=$((fails + 1)); done
t1=$(date +%s%N)
expect_eq "$CYCLES create→exec→destroy cycles all succeed" "0" "$fails"
note "$CYCLES cycles in $(( (t1 - t0) / 1000000 )) ms"
after=$(state)
expect_eq "mounts, cgroups, daemon fds, state dir and children are as they were" "$before" "$after"

# restart: 5 sandboxes printing counters
ids=(); procs=()
for k in 1 2 3 4 5; do
  id=$(sb create)
  p=$(sb exec "$id" --detach -- sh -c 'i=0; while [ $i -lt 300 ]; do echo "line $i"; i=$((i+1)); sleep 0.02; done; exit 3')
  ids+=("$id"); procs+=("$p")
done
pids=()
for k in 0 1 2 3 4; do
  sb attach "${ids[$k]}" "${procs[$k]}" > "$NS_TMP/out1.$k" 2>/dev/null &
  pids+=($!)
done
sleep 1
kill -KILL "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null
# the readers are CLI processes under the background subshells: kill them, not just the shells
pkill -KILL -f -- "--socket $NS_SOCK attach" 2>/dev/null; wait 2>/dev/null
NS_DAEMON_PID=
note "sandboxd and the readers SIGKILLed; restarting"
start_daemon
expect_eq "every sandbox is re-adopted" "5" "$(sb ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sandboxes"]))')"
for k in 0 1 2 3 4; do
  from=$(stat -c %s "$NS_TMP/out1.$k")
  sb attach "${ids[$k]}" "${procs[$k]}" --from "$from" > "$NS_TMP/out2.$k"; rc=$?
  expect_eq "sandbox $k: the exit status arrives through attach" "3" "$rc"
  cat "$NS_TMP/out1.$k" "$NS_TMP/out2.$k" > "$NS_TMP/all.$k"
  seq 0 299 | sed 's/^/line /' > "$NS_TMP/want"
  if cmp -s "$NS_TMP/all.$k" "$NS_TMP/want"; then ok "sandbox $k: output resumes at byte $from with no gap and no duplicate"
  else not_ok "sandbox $k: output differs: $(diff "$NS_TMP/want" "$NS_TMP/all.$k" | head -5 | tr '\n' ' ')"; fi
  w=$(sb wait "${ids[$k]}" "${procs[$k]}" --json 2>&1)
  expect_match "sandbox $k: wait reports the exit code" '"code": ?3' "$w"
done
for id in "${ids[@]}"; do sb destroy "$id" >/dev/null; done
stop_daemon
left=$(find /sys/fs/cgroup -name 'nightshift-sandboxes' 2>/dev/null | wc -l)
expect_eq "no cgroup of ours is left after the daemon stops" "0" "$left"
tap_done
