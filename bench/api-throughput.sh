#!/usr/bin/env bash
# REST throughput, in one run: wrk on an authenticated GET /api/v1/sessions (a page of SESSIONS
# sessions, rate limit off) against nginx serving a static file of the same size from the same
# machine, both on loopback, same wrk settings.  Reports requests/s and p99 latency of each.
# Target: nightshift ≥ 50 % of nginx's requests/s.
#
#   sudo bench/api-throughput.sh            # SESSIONS=20 DURATION=10 CONNECTIONS=32 THREADS=2
# Needs root, wrk, nginx, curl, python3.  Exit: 0 PASS, 1 FAIL, 2 could not run.
set -uo pipefail
SESSIONS=${SESSIONS:-20}
DURATION=${DURATION:-10}
CONNS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
NS_BUILD=$(realpath "${NS_BUILD:-./build}")
export NS_BUILD
. "$(dirname "$0")/../tests/integration/sv_lib.sh"
[ "$(id -u)" = 0 ] || { echo "api-throughput: run as root" >&2; exit 2; }
for t in wrk nginx; do command -v $t >/dev/null || [ -x /usr/sbin/$t ] || { echo "api-throughput: $t missing (apt-get install wrk nginx-light)" >&2; exit 2; }; done
sv_setup --rate-limit 0 >/dev/null || exit 2
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo=$(jget "${r#* }" 'd["id"]')
for i in $(seq 1 "$SESSIONS"); do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"true\",\"once\":true,\"title\":\"bench $i\"}")
  sid=$(jget "${r#* }" 'd["id"]')
done
WAIT_S=120 wait_state "$sid" completed failed >/dev/null
URL_NS="$SV_URL/api/v1/sessions?limit=$SESSIONS"
body=$(curl -sf -H "Authorization: Bearer $SV_TOKEN" "$URL_NS") || { echo "api-throughput: GET failed" >&2; exit 2; }
mkdir -p "$NS_TMP/www"; printf '%s' "$body" > "$NS_TMP/www/sessions.json"
size=$(stat -c %s "$NS_TMP/www/sessions.json")
NGX_PORT=$(free_port)
cat > "$NS_TMP/nginx.conf" <<NGX
worker_processes 1;
pid $NS_TMP/nginx.pid;
error_log $NS_TMP/nginx.err;
daemon on;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $NS_TMP/ngx-body; proxy_temp_path $NS_TMP/ngx-proxy; fastcgi_temp_path $NS_TMP/ngx-fcgi;
  uwsgi_temp_path $NS_TMP/ngx-uwsgi; scgi_temp_path $NS_TMP/ngx-scgi;
  server { listen 127.0.0.1:$NGX_PORT; root $NS_TMP/www; default_type application/json; }
}
NGX
/usr/sbin/nginx -c "$NS_TMP/nginx.conf" || { echo "api-throughput: nginx did not start" >&2; exit 2; }
trap 'kill "$(cat "$NS_TMP/nginx.pid" 2>/dev/null)" 2>/dev/null; sv_stop; ns_cleanup' EXIT
run_wrk() { wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" 2>&1; }
# wrk's "Requests/sec" and the 99% latency line, in ms
parse() { $PY -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", t).group(1))
m = re.search(r"99%\s+([0-9.]+)(us|ms|s)", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {p99:.2f} {errs.group(1) if errs else 0}")'; }
ns=$(run_wrk -H "Authorization: Bearer $SV_TOKEN" "$URL_NS" | parse)
ng=$(run_wrk "http://127.0.0.1:$NGX_PORT/sessions.json" | parse)
read -r ns_rps ns_p99 ns_err <<<"$ns"
read -r ng_rps ng_p99 ng_err <<<"$ng"
printf '%-52s %10s %10s %8s\n' "GET, $size-byte body, wrk -t$THREADS -c$CONNS -d${DURATION}s" "req/s" "p99 ms" "non-2xx" \
  "nightshift GET /api/v1/sessions (token)" "$ns_rps" "$ns_p99" "$ns_err" \
  "nginx static file, same size" "$ng_rps" "$ng_p99" "$ng_err"
ratio=$($PY -c "print(f'{$ns_rps / $ng_rps * 100:.0f}')")
if [ "$ns_err" = 0 ] && $PY -c "import sys; sys.exit(0 if $ns_rps >= 0.5 * $ng_rps else 1)"; then
  echo "PASS: nightshift at $ratio % of nginx's requests/s (target ≥ 50 %)"; exit 0
fi
echo "FAIL: nightshift at $ratio % of nginx's requests/s (target ≥ 50 %), $ns_err errors"; exit 1
