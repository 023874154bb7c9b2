#!/usr/bin/env bash
# Sandbox start with --net private vs --net none, in one run: medians (runs interleaved) of
#   nightshift-sandbox run --net private -- /bin/true
#   nightshift-sandbox run --net none    -- /bin/true
# through one private nightshift-sandboxd running inside a network namespace made here (its
# nftables table and links live there; the host's namespace is never touched).
# Target: private's median <= none's + 1 ms.  Exit status: 0 PASS, 1 FAIL, 2 could not run.
#
#   sudo bench/net-start.sh                  # RUNS=200 WARMUP=10
#   sudo NS_DAEMON_ARGS="--warm-pool-private 0" bench/net-start.sh   # pairs made on the request path
set -euo pipefail
NS_BUILD=${NS_BUILD:-./build}
RUNS=${RUNS:-200}
WARMUP=${WARMUP:-10}
GAP=${GAP:-0}                        # seconds between runs (0: back to back)
NS_DAEMON_ARGS=${NS_DAEMON_ARGS:-}   # extra daemon flags, e.g. "--warm-pool-private 0" (word-split on purpose)
SANDBOXD=$(realpath "$NS_BUILD/bin/nightshift-sandboxd")
SANDBOX=$(realpath "$NS_BUILD/bin/nightshift-sandbox")
die() { echo "net-start: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root"
for t in nft python3; do command -v "$t" >/dev/null || die "$t is not installed"; done

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
# shellcheck disable=SC2086 # NS_DAEMON_ARGS is word-split on purpose
nsenter --net="/run/netns/$NETNS" "$SANDBOXD" --socket "$SOCK" --state-dir "$TMP/state" --upper-dir "$TMP/upper" \
  --workspace-root "$TMP/ws" $NS_DAEMON_ARGS 2>"$TMP/sandboxd.log" &
DAEMON_PID=$!
for _ in $(seq 200); do "$SANDBOX" --socket "$SOCK" version >/dev/null 2>&1 && break; sleep 0.02; done
"$SANDBOX" --socket "$SOCK" run --net private -- /bin/true || die "a private sandbox does not start: $(cat "$TMP/sandboxd.log")"

# Interleaved, one run of each in turn (the order alternating), so that both see the same load:
# back-to-back hyperfine batches of one and then the other drift apart on a busy machine.
/usr/bin/python3 - "$SANDBOX" "$SOCK" "$RUNS" "$WARMUP" "$GAP" <<'PY'
import statistics, subprocess, sys, time
sandbox, sock, runs, warmup, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
t = {"private": [], "none": []}
for i in range(warmup + runs):
    for mode in (("private", "none") if i % 2 == 0 else ("none", "private")):
        t0 = time.perf_counter()
        subprocess.run([sandbox, "--socket", sock, "run", "--net", mode, "--", "/bin/true"], check=True)
        time.sleep(gap)
        if i >= warmup:
            t[mode].append((time.perf_counter() - t0) * 1000)
p, n = statistics.median(t["private"]), statistics.median(t["none"])
pairs = statistics.median(a - b for a, b in zip(t["private"], t["none"]))
d = p - n
print(f"runs: {runs} of each, interleaved, {gap * 1000:.0f} ms apart; load average {open('/proc/loadavg').read().split()[0]}")
print(f"sandbox start, median: --net private {p:.2f} ms, --net none {n:.2f} ms, added {d:+.2f} ms "
      f"(median of pairwise differences {pairs:+.2f} ms; target <= +1 ms)")
print("PASS" if d <= 1.0 else "FAIL")
sys.exit(0 if d <= 1.0 else 1)
PY
