#!/usr/bin/env bash
# The egress proxy (supervisor/egress.c, run alone by build/bin/egress-proxy-serve as a session's
# would run) vs straight to the server, in one run, all on 127.0.0.1:
#   10,000 small requests, one connection each: added time per request        target <= 50 us
#   a 1 GiB download: throughput through the proxy (forward mode) vs direct   target >= 80 %
# Both paths use the same origin and the same client (build/bin/http-bench-peer, in C: a Python
# peer was slower than what it measured).  The paths are interleaved in ROUNDS rounds so that a
# change of load hits both alike; the 1 GiB figure is the best of BIG_RUNS per path.
# For reference (no verdict) the same figures through the least a relay can do (http-bench-peer
# relay: blocking, no parsing, no policy, a splice loop): the floor any relay has on this machine.
# Also printed: the proxy's own CPU time (utime + stime) per request and per GiB, and the load.
# Exit status: 0 PASS, 1 FAIL, 2 could not run.
set -euo pipefail
NS_BUILD=${NS_BUILD:-./build}
N=${N:-10000}
ROUNDS=${ROUNDS:-5}
BIG_RUNS=${BIG_RUNS:-2}
SERVE=$NS_BUILD/bin/egress-proxy-serve
PEER=$NS_BUILD/bin/http-bench-peer
for b in "$SERVE" "$PEER"; do [ -x "$b" ] || { echo "egress-proxy: build $b first" >&2; exit 2; }; done
TMP=$(mktemp -d /tmp/ns-bench-egress.XXXXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OP=$(free_port); RP=$(free_port)
"$PEER" serve "$OP" & PIDS+=($!)
"$PEER" relay "$RP" "$OP" & PIDS+=($!)
echo "bench.test 127.0.0.1" > "$TMP/hosts"
"$SERVE" "$TMP/hosts" bench.test > "$TMP/port" & SPID=$!; PIDS+=($SPID)
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
PP=$(cat "$TMP/port")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
HZ=$(getconf CLK_TCK)
load() { cut -d' ' -f1-3 /proc/loadavg; }
# path name → port and request target (the proxy takes the absolute form)
target() { case $1 in direct) echo "$OP /$2" ;; relay) echo "$RP http://bench.test:$OP/$2" ;; proxy) echo "$PP http://bench.test:$OP/$2" ;; esac; }
get() { local p t; read -r p t <<<"$(target "$1" "$3")"; "$PEER" get "$p" "$2" "$t" bench.test; }

echo "load before: $(load)"
for path in direct relay proxy; do get $path 200 s >/dev/null || { echo "egress-proxy: $path does not answer" >&2; exit 2; }; done

# small requests: ROUNDS rounds of N/ROUNDS per path, seconds summed
declare -A SECS=([direct]=0 [relay]=0 [proxy]=0)
per=$((N / ROUNDS)); proxy_ticks=0
for _ in $(seq "$ROUNDS"); do
  for path in direct relay proxy; do
    t0=$(cpu_ticks)
    out=$(get $path "$per" s) || { echo "egress-proxy: $path failed" >&2; exit 2; }
    [ $path = proxy ] && proxy_ticks=$((proxy_ticks + $(cpu_ticks) - t0))
    SECS[$path]=$(awk -v a="${SECS[$path]}" -v b="$(cut -d' ' -f3 <<<"$out")" 'BEGIN{print a + b}')
  done
done
us() { awk -v s="${SECS[$1]}" -v n=$((per * ROUNDS)) 'BEGIN{printf "%.1f", s / n * 1e6}'; }
D_US=$(us direct); R_US=$(us relay); P_US=$(us proxy)
P_CPU=$(awk -v t=$proxy_ticks -v hz="$HZ" -v n=$((per * ROUNDS)) 'BEGIN{printf "%.1f", t / hz / n * 1e6}')

# 1 GiB: best of BIG_RUNS per path, interleaved
declare -A MBS=([direct]=0 [relay]=0 [proxy]=0) BYTES
big_ticks=0
for _ in $(seq "$BIG_RUNS"); do
  for path in direct relay proxy; do
    t0=$(cpu_ticks)
    out=$(get $path 1 big) || { echo "egress-proxy: $path failed on 1 GiB" >&2; exit 2; }
    [ $path = proxy ] && big_ticks=$((big_ticks + $(cpu_ticks) - t0))
    read -r _ bytes secs <<<"$out"
    BYTES[$path]=$bytes
    MBS[$path]=$(awk -v b="$bytes" -v s="$secs" -v m="${MBS[$path]}" 'BEGIN{v = b / s / 1e6; printf "%.0f", (v > m ? v : m)}')
  done
done
G_CPU=$(awk -v t=$big_ticks -v hz="$HZ" -v r="$BIG_RUNS" 'BEGIN{printf "%.2f", t / hz / r}')

ADDED=$(awk -v p="$P_US" -v d="$D_US" 'BEGIN{printf "%.1f", p - d}')
R_ADDED=$(awk -v p="$R_US" -v d="$D_US" 'BEGIN{printf "%.1f", p - d}')
RATIO=$(awk -v p="${MBS[proxy]}" -v d="${MBS[direct]}" 'BEGIN{printf "%.0f", p / d * 100}')
R_RATIO=$(awk -v p="${MBS[relay]}" -v d="${MBS[direct]}" 'BEGIN{printf "%.0f", p / d * 100}')
echo "small requests ($((per * ROUNDS)) per path, a connection each): direct $D_US us, through the egress proxy $P_US us, added $ADDED us (target <= 50); proxy CPU $P_CPU us per request"
echo "  reference, the minimal relay: $R_US us, added $R_ADDED us"
echo "1 GiB (best of $BIG_RUNS): direct ${MBS[direct]} MB/s, through the egress proxy ${MBS[proxy]} MB/s, $RATIO % (target >= 80 %); proxy CPU $G_CPU s per GiB; bytes ${BYTES[direct]} / ${BYTES[proxy]}"
echo "  reference, the minimal relay: ${MBS[relay]} MB/s, $R_RATIO %"
echo "load after: $(load)"
if awk -v a="$ADDED" -v r="$RATIO" 'BEGIN{exit !(a <= 50 && r >= 80)}' && [ "${BYTES[proxy]}" = "${BYTES[direct]}" ]; then
  echo PASS; exit 0
fi
echo FAIL; exit 1
