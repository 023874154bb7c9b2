#!/usr/bin/env bash
# Sandbox start with --net private vs --net none, in one run: hyperfine medians of
#   nightshift-sandbox run --net private -- /bin/true
#   nightshift-sandbox run --net none    -- /bin/true
# through one private nightshift-sandboxd running inside a network namespace made here (its
# nftables table and links live there; the host's namespace is never touched).
# Target: private's median <= none's + 1 ms.  Exit status: 0 PASS, 1 FAIL, 2 could not run.
#
#   sudo bench/net-start.sh                  # RUNS=200 WARMUP=10
set -euo pipefail
NS_BUILD=${NS_BUILD:-./build}
RUNS=${RUNS:-200}
WARMUP=${WARMUP:-10}
SANDBOXD=$(realpath "$NS_BUILD/bin/nightshift-sandboxd")
SANDBOX=$(realpath "$NS_BUILD/bin/nightshift-sandbox")
die() { echo "net-start: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root"
for t in hyperfine nft python3; do command -v "$t" >/dev/null || die "$t is not installed"; done

TMP=$(mktemp -d /tmp/ns-bench-net.XXXXXX); chmod 755 "$TMP"; mkdir -p "$TMP/ws"
NETNS=nsbench-net-$$
SOCK=$TMP/sandboxd.sock
DAEMON_PID=
cleanup() {
  if [ -n "$DAEMON_PID" ]; then kill -TERM "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; fi
  ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NETNS"
nsenter --net="/run/netns/$NETNS" sh -c 'ip link set lo up; sysctl -qw net.ipv4.ip_forward=1'
nsenter --net="/run/netns/$NETNS" "$SANDBOXD" --socket "$SOCK" --state-dir "$TMP/state" --upper-dir "$TMP/upper" \
  --workspace-root "$TMP/ws" 2>"$TMP/sandboxd.log" &
DAEMON_PID=$!
for _ in $(seq 200); do "$SANDBOX" --socket "$SOCK" version >/dev/null 2>&1 && break; sleep 0.02; done
"$SANDBOX" --socket "$SOCK" run --net private -- /bin/true || die "a private sandbox does not start: $(cat "$TMP/sandboxd.log")"

hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$TMP/h.json" \
  -n private "$SANDBOX --socket $SOCK run --net private -- /bin/true" \
  -n none "$SANDBOX --socket $SOCK run --net none -- /bin/true" >&2
python3 - "$TMP/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
p, n = r["private"]["median"] * 1000, r["none"]["median"] * 1000
d = p - n
print(f"sandbox start, median: --net private {p:.2f} ms, --net none {n:.2f} ms, added {d:+.2f} ms (target <= +1 ms)")
print("PASS" if d <= 1.0 else "FAIL")
sys.exit(0 if d <= 1.0 else 1)
PY
