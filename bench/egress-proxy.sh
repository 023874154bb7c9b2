#!/usr/bin/env bash
# The egress proxy (supervisor/egress.c, run alone by build/bin/egress-proxy-serve as a session's
# would run: established tunnels handed to a proxy process, `nightshift proxy-process`, as the
# server does) vs straight to the server, in one run, all on 127.0.0.1:
#   10,000 small requests, one connection each: added time per request        target <= 50 us
#   a 1 GiB download: throughput through the proxy (forward mode) vs direct   target >= 80 %
# Small requests: both paths use the same origin and client (build/bin/http-bench-peer, in C: a
# Python peer was slower than what it measured).  The 1 GiB download is measured with the server
# and client bench/net-forward.sh uses for the publish forward and the preview proxy (nginx with
# sendfile, a sparse file; curl), so that the three relays' figures are of the same transfer:
# best and median of ROUNDS rounds, the paths interleaved so that a change of load hits both alike.
# Printed with no verdict: the 1 GiB between the two C peers (1 MiB writes and reads, both at a
# full CPU on the direct path: on 2 vCPUs any relay process is a third busy process, so this one
# measures the machine's floor, not the proxy), with the least a relay can do beside it
# (http-bench-peer relay: blocking, no parsing, no policy, a splice loop); the proxy's own CPU
# time (utime + stime) per request and per GiB; the load.
# Exit status: 0 PASS, 1 FAIL, 2 could not run.  Needs nginx and curl.
set -euo pipefail
NS_BUILD=${NS_BUILD:-./build}
N=${N:-10000}
ROUNDS=${ROUNDS:-5}
BIG_RUNS=${BIG_RUNS:-2}
SERVE=$NS_BUILD/bin/egress-proxy-serve
PEER=$NS_BUILD/bin/http-bench-peer
NIGHTSHIFT=$(realpath "$NS_BUILD/bin/nightshift")
for b in "$SERVE" "$PEER" "$NIGHTSHIFT"; do [ -x "$b" ] || { echo "egress-proxy: build $b first" >&2; exit 2; }; done
for c in nginx curl; do command -v $c >/dev/null || { echo "egress-proxy: $c is not installed" >&2; exit 2; }; done
TMP=$(mktemp -d /tmp/ns-bench-egress.XXXXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OP=$(free_port); RP=$(free_port); NP=$(free_port)
# nginx as in bench/net-forward.sh: static files, sendfile, one worker, everything under $TMP
mkdir -p "$TMP/files"; truncate -s 1G "$TMP/files/big.bin"
cat > "$TMP/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $TMP/nb; proxy_temp_path $TMP/np; fastcgi_temp_path $TMP/nf;
  uwsgi_temp_path $TMP/nu; scgi_temp_path $TMP/ns;
  sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:$NP; root $TMP/files; }
}
EOF
nginx -e "$TMP/nginx.err" -c "$TMP/nginx.conf" -g 'daemon off; user root;' >/dev/null 2>&1 & PIDS+=($!)
"$PEER" serve "$OP" & PIDS+=($!)
"$PEER" relay "$RP" "$OP" & PIDS+=($!)
echo "bench.test 127.0.0.1" > "$TMP/hosts"
"$SERVE" --relay "$NIGHTSHIFT" "$TMP/hosts" bench.test > "$TMP/port" & SPID=$!; PIDS+=($SPID)
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
PP=$(cat "$TMP/port")
# the proxy's CPU: the egress proxy's loop and the proxy process that relays its tunnels
cpu_ticks() { local p t=0; for p in $SPID $(pgrep -P "$SPID" -x ns-proxy); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
HZ=$(getconf CLK_TCK)
load() { cut -d' ' -f1-3 /proc/loadavg; }
# path name → port and request target (the proxy takes the absolute form)
target() { case $1 in direct) echo "$OP /$2" ;; relay) echo "$RP http://bench.test:$OP/$2" ;; proxy) echo "$PP http://bench.test:$OP/$2" ;; esac; }
get() { local p t; read -r p t <<<"$(target "$1" "$3")"; "$PEER" get "$p" "$2" "$t" bench.test; }

echo "load before: $(load)"
for path in direct relay proxy; do get $path 200 s >/dev/null || { echo "egress-proxy: $path does not answer" >&2; exit 2; }; done
curl_mbs() { local s; s=$(curl -s -o /dev/null -w '%{speed_download}' "$@") && echo "${s%.*}"; }
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$NP/" && break; sleep 0.1; done
for via in "" "-x http://127.0.0.1:$PP"; do
  # shellcheck disable=SC2086
  [ "$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 $via --resolve "bench.test:$NP:127.0.0.1" "http://bench.test:$NP/big.bin")" = 206 ] ||
    { echo "egress-proxy: nginx does not answer${via:+ through the proxy}" >&2; exit 2; }
done

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

# 1 GiB, nginx → curl: ROUNDS rounds, direct and through the proxy interleaved, after one transfer
# that fills the page cache with the file (the first read of a sparse file allocates its pages)
curl_mbs --resolve "bench.test:$NP:127.0.0.1" "http://bench.test:$NP/big.bin" >/dev/null
ND=(); NX=()
for _ in $(seq "$ROUNDS"); do
  ND+=("$(curl_mbs --resolve "bench.test:$NP:127.0.0.1" "http://bench.test:$NP/big.bin")")
  NX+=("$(curl_mbs -x "http://127.0.0.1:$PP" "http://bench.test:$NP/big.bin")")
done
read -r N_BEST_D N_BEST_X N_MED_D N_MED_X N_ROUNDS <<<"$(/usr/bin/python3 -c '
import statistics, sys
d = [int(x) for x in sys.argv[1].split()]; x = [int(v) for v in sys.argv[2].split()]
print(max(d), max(x), int(statistics.median(d)), int(statistics.median(x)), ",".join(f"{100*b/a:.0f}%" for a, b in zip(d, x)))
' "${ND[*]}" "${NX[*]}")"
N_RATIO=$(awk -v p="$N_BEST_X" -v d="$N_BEST_D" 'BEGIN{printf "%.0f", p / d * 100}')
N_MRATIO=$(awk -v p="$N_MED_X" -v d="$N_MED_D" 'BEGIN{printf "%.0f", p / d * 100}')

ADDED=$(awk -v p="$P_US" -v d="$D_US" 'BEGIN{printf "%.1f", p - d}')
R_ADDED=$(awk -v p="$R_US" -v d="$D_US" 'BEGIN{printf "%.1f", p - d}')
RATIO=$(awk -v p="${MBS[proxy]}" -v d="${MBS[direct]}" 'BEGIN{printf "%.0f", p / d * 100}')
R_RATIO=$(awk -v p="${MBS[relay]}" -v d="${MBS[direct]}" 'BEGIN{printf "%.0f", p / d * 100}')
echo "small requests ($((per * ROUNDS)) per path, a connection each): direct $D_US us, through the egress proxy $P_US us, added $ADDED us (target <= 50); proxy CPU $P_CPU us per request"
echo "  reference, the minimal relay: $R_US us, added $R_ADDED us"
echo "1 GiB, nginx -> curl (best of $ROUNDS): direct $((N_BEST_D / 1000000)) MB/s, through the egress proxy $((N_BEST_X / 1000000)) MB/s, $N_RATIO % (target >= 80 %)"
echo "  medians: direct $((N_MED_D / 1000000)), proxy $((N_MED_X / 1000000)) MB/s ($N_MRATIO %); per round proxy/direct: $N_ROUNDS"
echo "no verdict, the floor of any relay here: 1 GiB between the C peers (best of $BIG_RUNS): direct ${MBS[direct]} MB/s, through the egress proxy ${MBS[proxy]} MB/s, $RATIO %; the minimal relay ${MBS[relay]} MB/s, $R_RATIO %; proxy CPU $G_CPU s per GiB; bytes ${BYTES[direct]} / ${BYTES[proxy]}"
echo "load after: $(load)"
if awk -v a="$ADDED" -v r="$N_RATIO" 'BEGIN{exit !(a <= 50 && r >= 80)}' && [ "${BYTES[proxy]}" = "${BYTES[direct]}" ]; then
  echo PASS; exit 0
fi
echo FAIL; exit 1
