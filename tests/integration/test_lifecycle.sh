#!/usr/bin/env bash
# Lifecycle: create→exec→destroy cycles leave nothing behind; SIGKILL of sandboxd while sandboxes
# run: every sandbox is re-adopted, output resumes with no gap and no duplicate, exits arrive.
. "$(dirname "$0")/lib.sh"
ns_setup
CYCLES=${NS_LIFECYCLE_CYCLES:-500}

# A cgroup base of this test's own, so that another suite's daemon running at the same time
# (its sandboxes in the shared nightshift-sandboxes) does not count as ours.
CG_BASE=nightshift-it-$$
for h in /sys/fs/cgroup/*/; do mkdir -p "$h$CG_BASE" 2>/dev/null; done
trap 'ns_cleanup; for h in /sys/fs/cgroup/*/; do rmdir "$h$CG_BASE" 2>/dev/null; done' EXIT
stop_daemon
start_daemon --cgroup-base "$CG_BASE" || { echo "1..0 # SKIP daemon failed"; exit 1; }

state() {
  echo "mounts=$(wc -l < /proc/self/mountinfo)"
  echo "cgroups=$(find /sys/fs/cgroup -path "*$CG_BASE/nightshift-sandboxes/*" -type d 2>/dev/null | wc -l)"
  echo "fds=$(ls /proc/"$NS_DAEMON_PID"/fd | wc -l)"
  echo "state=$(ls "$NS_TMP/state/sandboxes" | wc -l) upper=$(ls "$NS_TMP/upper" | wc -l)"
  echo "children=$(ps --ppid "$NS_DAEMON_PID" -o pid= | wc -l)"
}
sb run -- /bin/true   # warm
# The warm pool fills and destroys finish in the background: start from a settled state.
before=$(state)
for _ in $(seq 1 30); do sleep 0.2; now=$(state); [ "$now" = "$before" ] && break; before=$now; done
t0=$(date +%s%N)
fails=0
for i in $(seq 1 "$CYCLES"); do sb run -- /bin/true || fails=$((fails + 1)); done
t1=$(date +%s%N)
expect_eq "$CYCLES create→exec→destroy cycles all succeed" "0" "$fails"
note "$CYCLES cycles in $(( (t1 - t0) / 1000000 )) ms"
# Destroys finish (and the warm pool refills) off the request path: give them a moment.
for _ in $(seq 1 50); do after=$(state); [ "$after" = "$before" ] && break; sleep 0.1; done
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
RELAY=$(pgrep -P "$NS_DAEMON_PID" -x nsd-relay)
kill -KILL "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null
gone=no
for _ in $(seq 100); do { [ -n "$RELAY" ] && ! kill -0 "$RELAY" 2>/dev/null; } && { gone=yes; break; }; sleep 0.02; done
expect_eq "sandboxd's relay process ($RELAY) dies with the SIGKILLed daemon" "yes" "$gone"
# the readers are CLI processes under the background subshells: kill them, not just the shells
pkill -KILL -f -- "--socket $NS_SOCK attach" 2>/dev/null; wait 2>/dev/null
NS_DAEMON_PID=
note "sandboxd and the readers SIGKILLed; restarting"
start_daemon --cgroup-base "$CG_BASE"
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

# The warm pool: a sandbox handed out of it is what a fresh create gives (id as hostname, the
# workspace owned by the agent, the limits in its cgroup) ...
pool_ids() {
  python3 - "$NS_TMP/state/sandboxes" <<'PY'
import json, os, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    if f.endswith(".json"):
        try:
            if json.load(open(os.path.join(d, f))).get("pool"): print(f[:-5])
        except Exception: pass
PY
}
for _ in $(seq 1 50); do [ "$(pool_ids | wc -l)" -ge 2 ] && break; sleep 0.1; done
pooled=$(pool_ids | tr '\n' ' ')
note "warm pool: $pooled"
expect_eq "the daemon keeps two warm sandboxes by default" "2" "$(pool_ids | wc -l)"
echo "from the host" > "$WS/hostfile"; chown "$TEST_UID:$TEST_GID" "$WS/hostfile"
mkdir -p "$NS_TMP/ro/data"; echo "read only" > "$NS_TMP/ro/data/f"
id=$(sb create --workspace "$WS" --memory 64M --pids 77 --ro-bind "$NS_TMP/ro/data:/opt/data")
case " $pooled " in *" $id "*) ok "create was served from the warm pool" ;; *) not_ok "create was not served from the warm pool ($id not in $pooled)" ;; esac
expect_eq "hostname is the sandbox id" "$id" "$(sb exec "$id" -- hostname)"
expect_eq "the workspace is attached, owned by the agent" "1000 from the host" \
  "$(sb exec "$id" -- sh -c 'echo "$(stat -c %u /workspace/hostfile) $(cat /workspace/hostfile)"')"
expect_eq "the read-only bind is attached" "read only" "$(sb exec "$id" -- cat /opt/data/f)"
if sb exec "$id" --root -- sh -c 'echo x > /opt/data/f' 2>/dev/null; then not_ok "the read-only bind refuses writes"; else ok "the read-only bind refuses writes"; fi
sb exec "$id" -- sh -c 'echo made inside > /workspace/inside' >/dev/null
expect_eq "files made inside belong to the workspace owner on the host" "$TEST_UID" "$(stat -c %u "$WS/inside" 2>/dev/null)"
st=$(sb stats "$id" --json 2>&1)
expect_match "the memory limit is in its cgroup" '"max": ?67108864' "$st"
expect_match "the pids limit is in its cgroup" '"max": ?77' "$st"
expect_eq "no other pool sandbox is visible to the client" "$id" "$(sb ls --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)["sandboxes"]))')"
sb destroy "$id" >/dev/null
rm -f "$WS/hostfile" "$WS/inside"
# Destroy stops a sandbox's processes at once, also while they and others keep every CPU busy:
# nothing of the sandbox may go on running (and writing into the workspace) once destroy has
# answered.
id=$(sb create --workspace "$WS")
sb exec "$id" --detach -- sh -c 'while :; do date +%s%N > /workspace/alive; sleep 0.01; done' >/dev/null
for _ in $(seq "$(nproc)"); do sb exec "$id" --detach -- sh -c 'while :; do :; done' >/dev/null; done # a build inside
hogs=(); for _ in $(seq "$(nproc)"); do (while :; do :; done) & hogs+=($!); done                     # and outside
sleep 0.3
sb destroy "$id" >/dev/null
sleep 0.2; t0=$(cat "$WS/alive" 2>/dev/null); sleep 1; t1=$(cat "$WS/alive" 2>/dev/null)
kill "${hogs[@]}"; wait "${hogs[@]}" 2>/dev/null
expect_eq "with every CPU busy, a destroyed sandbox's processes stop within 0.2 s (no write a second later)" "$t0" "$t1"
rm -f "$WS/alive"
# `run` makes its sandbox ephemeral: a CLI killed with SIGKILL (no chance to destroy anything)
# still leaves nothing behind, since the daemon destroys it when the connection closes.
ls_ids() { sb_root ls --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)["sandboxes"]))'; }
"$SANDBOX" --socket "$NS_SOCK" run -- sleep 300 & RUN_PID=$!  # the CLI itself, not a subshell
for _ in $(seq 1 50); do [ -n "$(ls_ids)" ] && break; sleep 0.1; done
eph=$(ls_ids)
expect_match "run's sandbox is listed as ephemeral" '"ephemeral": ?true' "$(sb_root ls --json)"
# Its processes, by its own cgroup (not by name: another sandbox of the machine may sleep too).
for _ in $(seq 1 50); do
  eph_pids=$(cat "$(find /sys/fs/cgroup -maxdepth 6 -path "*/nightshift-sandboxes/$eph/cgroup.procs" 2>/dev/null | head -n1)" 2>/dev/null)
  [ "$(echo "$eph_pids" | wc -w)" -ge 2 ] && break; sleep 0.1  # init and the sleep
done
kill -KILL "$RUN_PID"; wait "$RUN_PID" 2>/dev/null
for _ in $(seq 1 50); do [ -z "$(ls_ids)" ] && break; sleep 0.1; done
expect_eq "a SIGKILLed run's sandbox is destroyed when its connection closes" "" "$(ls_ids)"
alive=
for _ in $(seq 1 100); do
  alive=; for p in $eph_pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
  [ -z "$alive" ] && break; sleep 0.1
done
check "... and none of its processes is left (${eph_pids//$'\n'/ })" test -n "$eph_pids" -a -z "$alive"
# ... and one whose daemon died is not re-adopted by the next (its creator's connection is gone).
"$SANDBOX" --socket "$NS_SOCK" run -- sleep 300 & RUN_PID=$!  # the CLI itself, not a subshell
for _ in $(seq 1 50); do [ -n "$(ls_ids)" ] && break; sleep 0.1; done
eph=$(ls_ids)
# its processes, by its own cgroup (a name would match any other `sleep 300` of the machine)
for _ in $(seq 1 50); do
  eph_pids=$(cat "$(find /sys/fs/cgroup -maxdepth 6 -path "*/nightshift-sandboxes/$eph/cgroup.procs" 2>/dev/null | head -n1)" 2>/dev/null)
  [ "$(echo "$eph_pids" | wc -w)" -ge 2 ] && break; sleep 0.1  # init and the sleep
done
# ... and a restart after a crash destroys the pool sandboxes nobody was given.
for _ in $(seq 1 50); do [ "$(pool_ids | wc -l)" -ge 2 ] && break; sleep 0.1; done
pooled=$(pool_ids)
pool_pids=$(for p in $pooled; do python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['init_pid'])" "$NS_TMP/state/sandboxes/$p.json"; done)
kill -KILL "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null
NS_DAEMON_PID=
start_daemon --cgroup-base "$CG_BASE"
left_behind() {
  for p in $pooled; do
    [ -e "$NS_TMP/state/sandboxes/$p.json" ] && echo "state:$p"
    [ -e "$NS_TMP/upper/$p" ] && echo "upper:$p"
    find /sys/fs/cgroup -path "*nightshift-sandboxes/$p" 2>/dev/null | sed 's/^/cgroup:/'
  done
  for pid in $pool_pids; do [ -d "/proc/$pid" ] && [ "$(cat /proc/"$pid"/stat 2>/dev/null | cut -d' ' -f3)" != Z ] && echo "init:$pid"; done
}
for _ in $(seq 1 50); do [ -z "$(left_behind)" ] && break; sleep 0.1; done
expect_eq "unclaimed pool sandboxes of the killed daemon are gone after the restart" "" "$(left_behind | tr '\n' ' ')"
wait "$RUN_PID" 2>/dev/null
expect_eq "the ephemeral sandbox of the killed daemon is not re-adopted" "" "$(ls_ids)"
alive_of() { local p; for p in $eph_pids; do kill -0 "$p" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/"$p"/stat 2>/dev/null)" != Z ] && echo "$p"; done; }
for _ in $(seq 1 50); do [ -z "$(alive_of)" ] && break; sleep 0.1; done
for p in $(alive_of); do
  note "still there: $p $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null) state $(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) cgroup $(grep -m1 pids /proc/$p/cgroup 2>/dev/null)"
done
check "... and its processes are gone (${eph_pids//$'\n'/ })" test -n "$eph_pids" -a -z "$(alive_of)"
check "... and so is its record" test ! -e "$NS_TMP/state/sandboxes/$eph.json"
stop_daemon
left=$(find /sys/fs/cgroup -path "*$CG_BASE/*" -type d 2>/dev/null | wc -l)
expect_eq "no cgroup of ours is left after the daemon stops" "0" "$left"
tap_done
