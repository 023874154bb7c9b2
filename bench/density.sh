#!/usr/bin/env bash
# Sandbox density: N sandboxes (default 500) each running `sleep 600` at once.
#   memory per sandbox = drop in MemAvailable / N          target <= 1 MiB
#   wall time to create all N (create + exec --detach)     target <= 3 s
#     (through one protocol connection, WINDOW requests in flight: bench/density_client.py)
# then destroys them all (timed too) and checks that nothing was left behind.
#
# Starts a private nightshift-sandboxd from $NS_BUILD/bin (default ./build/bin) with temporary
# --state-dir, --socket and --workspace-root, --net-pool none (no nftables table or link in the
# host's network namespace: only --net none sandboxes here) and the defaults otherwise; stops it at
# the end.
# Needs root and python3.  Exit status: 0 PASS, 1 FAIL or leftovers, 2 when it could not run.
#
#   sudo bench/density.sh
#   sudo N=100 NS_BUILD=build-release bench/density.sh
#   sudo MODE=cli bench/density.sh      # the old way: `create` and `exec --detach` CLI processes
set -euo pipefail

NS_BUILD=${NS_BUILD:-./build}
NS_DAEMON_ARGS=${NS_DAEMON_ARGS:-}   # extra daemon flags, e.g. "--warm-pool 0" (word-split on purpose)
N=${N:-500}
SETTLE=${SETTLE:-2}          # seconds to let memory settle before reading MemAvailable
MODE=${MODE:-protocol}       # protocol: one connection, pipelined (bench/density_client.py); cli: two CLI processes per sandbox
WINDOW=${WINDOW:-16}         # protocol: requests in flight at once
CLIENT=$(dirname "$0")/density_client.py
SANDBOXD=$NS_BUILD/bin/nightshift-sandboxd
SANDBOX=$NS_BUILD/bin/nightshift-sandbox

die() { echo "density: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (the daemon needs it)"
command -v python3 >/dev/null || die "python3 is not installed"
{ [ -x "$SANDBOXD" ] && [ -x "$SANDBOX" ]; } || die "no binaries in $NS_BUILD/bin (set NS_BUILD)"
[ "$N" -ge 1 ] 2>/dev/null || die "N must be a positive number"
SANDBOXD=$(realpath "$SANDBOXD")
SANDBOX=$(realpath "$SANDBOX")

list_cgroups() { find /sys/fs/cgroup -name 'nightshift*' 2>/dev/null | sort; }
mem_available_kib() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
# microseconds since the epoch, without forking (bash 5)
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

CGROUPS_BEFORE=$(list_cgroups)
TMP=$(mktemp -d /tmp/ns-bench-density.XXXXXX)
chmod 755 "$TMP"
mkdir -p "$TMP/ws"
SOCK=$TMP/sandboxd.sock
DAEMON_PID=
IDS=()

sb() { "$SANDBOX" --socket "$SOCK" "$@"; }

cleanup() {
  local status=$? leftovers=0 id ids
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    ids=$(sb --json ls 2>/dev/null | python3 -c '
import json, sys
try:
    for s in json.load(sys.stdin).get("sandboxes", []): print(s["id"])
except Exception: pass') || true
    for id in $ids; do sb destroy "$id" >/dev/null 2>&1 || true; done
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if grep -q -F "$TMP" /proc/self/mountinfo; then
    echo "LEFTOVER mounts beneath $TMP:" >&2
    grep -F "$TMP" /proc/self/mountinfo | head -20 >&2
    leftovers=1
  fi
  local after
  after=$(list_cgroups)
  if [ "$after" != "$CGROUPS_BEFORE" ]; then
    echo "LEFTOVER cgroups (nightshift*, compared with before the run):" >&2
    diff <(printf '%s\n' "$CGROUPS_BEFORE") <(printf '%s\n' "$after") | grep '^>' | head -20 >&2 || true
    leftovers=1
  fi
  if [ "$leftovers" = 0 ]; then
    rm -rf "$TMP"
    echo "leftovers: none"
  else
    echo "leftovers: FOUND (kept $TMP for inspection)" >&2
    [ "$status" = 0 ] && status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2086 # NS_DAEMON_ARGS is word-split on purpose
"$SANDBOXD" --socket "$SOCK" --state-dir "$TMP/state" --upper-dir "$TMP/upper" --workspace-root "$TMP/ws" --allow-user 0 --net-pool none \
  $NS_DAEMON_ARGS 2>"$TMP/sandboxd.log" &
DAEMON_PID=$!
for _ in $(seq 1 250); do
  [ -S "$SOCK" ] && break
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  sleep 0.02
done
if [ ! -S "$SOCK" ]; then
  sed 's/^/sandboxd: /' "$TMP/sandboxd.log" >&2
  die "nightshift-sandboxd did not come up"
fi

# One sandbox by hand first (warms the host layer and caches, and shows a broken setup plainly).
id=$(sb create --net none) || die "create failed"
sb exec --detach "$id" -- /bin/sleep 600 >/dev/null || die "exec --detach failed"
sb destroy "$id" >/dev/null || die "destroy failed"
sleep "$SETTLE"

MEM_BEFORE=$(mem_available_kib)
T0=$(now_us)
CREATE_US=0
if [ "$MODE" = cli ]; then
  for i in $(seq 1 "$N"); do
    t=$(now_us)
    id=$(sb create --net none) || die "create #$i failed"
    CREATE_US=$((CREATE_US + $(now_us) - t))
    IDS+=("$id")
    sb exec --detach "$id" -- /bin/sleep 600 >/dev/null || die "exec #$i failed"
  done
else
  # One connection, WINDOW requests in flight: create, and exec as soon as its create is answered.
  /usr/bin/python3 "$CLIENT" "$SOCK" create "$N" "$WINDOW" >"$TMP/ids" 2>"$TMP/client.json" ||
    die "the protocol client failed: $(cat "$TMP/client.json")"
  mapfile -t IDS <"$TMP/ids"
  CREATE_US=$(/usr/bin/python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["creates_s"] * 1e6))' "$TMP/client.json")
fi
T1=$(now_us)
sleep "$SETTLE"
MEM_AFTER=$(mem_available_kib)
# Sandboxes with a live process, read through `list`'s pages.
RUNNING=$(/usr/bin/python3 - "$SOCK" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1])
n, after = 0, None
while True:
    req = {"v": 1, "id": 1, "op": "list"}
    if after: req["after"] = after
    s.send(json.dumps(req).encode()); r = json.loads(s.recv(1 << 17))
    n += sum(1 for x in r["sandboxes"] if x.get("procs", 0) >= 1)
    after = r.get("next")
    if not after: break
print(n)
PY
)

T2=$(now_us)
if [ "$MODE" = cli ]; then
  for id in "${IDS[@]}"; do sb destroy "$id" >/dev/null || echo "destroy $id failed" >&2; done
else
  printf '%s\n' "${IDS[@]}" | /usr/bin/python3 "$CLIENT" "$SOCK" destroy 2>/dev/null || echo "destroy failed" >&2
fi
T3=$(now_us)
IDS=()

python3 - "$N" "$MEM_BEFORE" "$MEM_AFTER" "$T0" "$T1" "$CREATE_US" "$T2" "$T3" "$RUNNING" "$MODE" <<'EOF'
import os, sys
n, mem0, mem1, t0, t1, create_us, t2, t3, running = map(int, sys.argv[1:10])
mode = sys.argv[10]
print(f"load average:                    {os.getloadavg()[0]:.2f}")
per_kib = (mem0 - mem1) / n
wall = (t1 - t0) / 1e6
print(f"sandboxes running sleep:        {running} / {n}")
print(f"MemAvailable before / after:     {mem0 / 1024:.1f} MiB / {mem1 / 1024:.1f} MiB")
print(f"memory per sandbox:              {per_kib:.1f} KiB")
print(f"wall time, create + exec all:    {wall:.3f} s ({create_us / 1e6:.3f} s of it in create)  [{mode}]")
print(f"wall time, destroy all:          {(t3 - t2) / 1e6:.3f} s")
mem_ok = per_kib <= 1024 and running == n
time_ok = wall <= 3.0
print(f"target: memory per sandbox <= 1 MiB: {'PASS' if mem_ok else 'FAIL'}")
print(f"target: all {n} created within 3 s: {'PASS' if time_ok else 'FAIL'}")
sys.exit(0 if mem_ok and time_ok else 1)
EOF
