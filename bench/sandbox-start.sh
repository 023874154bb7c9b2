#!/usr/bin/env bash
# Sandbox start latency, in one run: hyperfine medians of
#   (a) nightshift-sandbox run --net none -- /bin/true   (full isolation, through our own daemon)
#   (b) bwrap --unshare-all ... /bin/true                  (the bar to meet)
#   (c) unshare -mpfiu /bin/true                           (namespaces alone, no filesystem work)
# Target: nightshift's median <= bwrap's.
#
# Starts a private nightshift-sandboxd from $NS_BUILD/bin (default ./build/bin) with temporary
# --state-dir, --socket and --workspace-root, --net-pool none (nothing in the host's network
# namespace: only --net none sandboxes here) and the defaults otherwise, stops it at the end, and
# checks that nothing was left behind (mounts beneath its temp dir, cgroups named nightshift*).
# Needs root, hyperfine, bwrap, unshare and python3.  Exit status: 0 PASS, 1 FAIL or leftovers,
# 2 when it could not run.
#
#   sudo bench/sandbox-start.sh                 # RUNS=100 WARMUP=5 by default
#   sudo NS_BUILD=build-release RUNS=200 bench/sandbox-start.sh
set -euo pipefail

NS_BUILD=${NS_BUILD:-./build}
NS_DAEMON_ARGS=${NS_DAEMON_ARGS:-}   # extra daemon flags, e.g. "--warm-pool 0" (word-split on purpose)
RUNS=${RUNS:-100}
WARMUP=${WARMUP:-5}
SANDBOXD=$NS_BUILD/bin/nightshift-sandboxd
SANDBOX=$NS_BUILD/bin/nightshift-sandbox

die() { echo "sandbox-start: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (the daemon needs it)"
for tool in hyperfine bwrap unshare python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
{ [ -x "$SANDBOXD" ] && [ -x "$SANDBOX" ]; } || die "no binaries in $NS_BUILD/bin (set NS_BUILD)"
SANDBOXD=$(realpath "$SANDBOXD")
SANDBOX=$(realpath "$SANDBOX")

list_cgroups() { find /sys/fs/cgroup -name 'nightshift*' 2>/dev/null | sort; }
CGROUPS_BEFORE=$(list_cgroups)

TMP=$(mktemp -d /tmp/ns-bench-start.XXXXXX)
chmod 755 "$TMP"
mkdir -p "$TMP/ws" "$TMP/state"
SOCK=$TMP/sandboxd.sock
DAEMON_PID=
STATE_MOUNTED=
# The daemon's state dir on tmpfs, as its default /run/nightshift is on every systemd host: a state
# record on a journaled disk filesystem waits behind the teardowns' metadata writes.  STATE_TMPFS=0
# keeps it on the disk beneath $TMP.
if [ "${STATE_TMPFS:-1}" = 1 ] && [ "$(stat -f -c %T "$TMP/state")" != tmpfs ]; then
  mount -t tmpfs -o mode=0755,size=64m nightshift-bench-state "$TMP/state" && STATE_MOUNTED=1
fi

# Everything the script made goes away, and anything still mounted or grouped is reported.
cleanup() {
  local status=$? leftovers=0 id ids
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    ids=$("$SANDBOX" --socket "$SOCK" --json ls 2>/dev/null | python3 -c '
import json, sys
try:
    for s in json.load(sys.stdin).get("sandboxes", []): print(s["id"])
except Exception: pass') || true
    for id in $ids; do "$SANDBOX" --socket "$SOCK" destroy "$id" >/dev/null 2>&1 || true; done
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  [ -n "$STATE_MOUNTED" ] && umount "$TMP/state"
  if grep -q -F "$TMP" /proc/self/mountinfo; then
    echo "LEFTOVER mounts beneath $TMP:" >&2
    grep -F "$TMP" /proc/self/mountinfo >&2
    leftovers=1
  fi
  local after
  after=$(list_cgroups)
  if [ "$after" != "$CGROUPS_BEFORE" ]; then
    echo "LEFTOVER cgroups (nightshift*, compared with before the run):" >&2
    diff <(printf '%s\n' "$CGROUPS_BEFORE") <(printf '%s\n' "$after") | grep '^>' >&2 || true
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

NS_CMD="$SANDBOX --socket $SOCK run --net none -- /bin/true"
BWRAP_CMD="bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --ro-bind /bin /bin --ro-bind /lib /lib --ro-bind /lib64 /lib64 --ro-bind /etc /etc --proc /proc --dev /dev --tmpfs /tmp /bin/true"
UNSHARE_CMD="unshare -mpfiu /bin/true"

# Each command once by hand first: a broken one gets a readable error, not a hyperfine abort.
for cmd in "$NS_CMD" "$BWRAP_CMD" "$UNSHARE_CMD"; do
  # shellcheck disable=SC2086 # the command strings are word-split on purpose, as hyperfine -N does
  if ! out=$($cmd 2>&1); then
    echo "$out" >&2
    die "preflight failed: $cmd"
  fi
done

echo "hyperfine: $RUNS runs after $WARMUP warm-ups each, no shell (-N)"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$TMP/hyperfine.json" \
  -n nightshift "$NS_CMD" -n bwrap "$BWRAP_CMD" -n unshare "$UNSHARE_CMD" >"$TMP/hyperfine.txt"

# Table and verdict from the JSON (seconds → ms).
python3 - "$TMP/hyperfine.json" <<'EOF'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print()
print(f'{"command":<12} {"median":>10} {"mean":>10} {"stddev":>10} {"min":>10} {"max":>10}')
for name in ("nightshift", "bwrap", "unshare"):
    r = res[name]
    print(f'{name:<12}' + "".join(f' {r[k] * 1000:>7.3f} ms' for k in ("median", "mean", "stddev", "min", "max")))
ns, bw = res["nightshift"]["median"], res["bwrap"]["median"]
verdict = "PASS" if ns <= bw else "FAIL"
print()
print(f"target: nightshift median <= bwrap median: {verdict} ({ns * 1000:.3f} ms vs {bw * 1000:.3f} ms)")
open(sys.argv[1] + ".verdict", "w").write(verdict)
EOF
[ "$(cat "$TMP/hyperfine.json.verdict")" = PASS ]
