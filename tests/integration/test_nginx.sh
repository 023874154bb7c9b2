#!/usr/bin/env bash
# nginx as the reverse proxy: a private nginx (its own config, pid file, logs and temp paths in
# the test's directory, listening on 127.0.0.1 only) running packaging/nginx/nightshift.conf with
# only the listen address and the upstream port replaced, in front of a real `nightshift serve`;
# the API used through the /nightshift/ prefix.  The system's nginx and /etc/nginx are not touched.
. "$(dirname "$0")/sv_lib.sh"
NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || NGINX=$(command -v nginx 2>/dev/null || true)
if [ -z "$NGINX" ]; then
  echo "1..0 # SKIP nginx is not installed (scripts/install-deps.sh --with-tests installs nginx-light)"
  exit 77
fi
sv_setup
EXAMPLE=$NS_SRC/packaging/nginx/nightshift.conf
DIRECT=$SV_URL
NGX=$NS_TMP/nginx
NGX_PID=

ngx_stop() {
  if [ -n "$NGX_PID" ] && kill -0 "$NGX_PID" 2>/dev/null; then kill -TERM "$NGX_PID"; wait "$NGX_PID" 2>/dev/null; fi
  NGX_PID=
}
trap 'ngx_stop; sv_stop; sv_log_tail; ns_cleanup' EXIT

# --- the config: the example as it is, in a main config of the test's own -----------------------
mkdir -p "$NGX/tmp"
# Workers drop root for nobody (nginx's compiled-in default) and write request bodies to tmp/.
WGROUP=$(id -gn nobody)
chown "nobody:$WGROUP" "$NGX/tmp"
NGX_PORT=$(free_port)
# The supervisor's preview proxy (sv_lib.sh lets it pick a port; its start-up line names it).
PV_PORT=$(sed -n 's/.*previews on .*listening on 127\.0\.0\.1:\([0-9]*\)).*/\1/p' "$NS_TMP/nightshift.log" | tail -n1)
sed -e "s#^\([[:space:]]*\)listen 80;#\1listen 127.0.0.1:$NGX_PORT;#" \
    -e "s#^\([[:space:]]*\)server_name agents\.example\.com;#\1server_name 127.0.0.1;#" \
    -e "s#^\([[:space:]]*\)server_name \*\.preview\.example\.com;#\1server_name *.preview.localhost;#" \
    -e "s#^\([[:space:]]*proxy_pass http://127\.0\.0\.1:\)8787/;#\1$SV_PORT/;#" \
    -e "s#^\([[:space:]]*proxy_pass http://127\.0\.0\.1:\)8788;#\1$PV_PORT;#" "$EXAMPLE" > "$NGX/site.conf"
expect_eq "the example differs from the config used only in listen, server_name and the upstream ports" \
  "listen 127.0.0.1:$NGX_PORT;|server_name 127.0.0.1;|proxy_pass http://127.0.0.1:$SV_PORT/;|listen 127.0.0.1:$NGX_PORT;|server_name *.preview.localhost;|proxy_pass http://127.0.0.1:$PV_PORT;" \
  "$(diff "$EXAMPLE" "$NGX/site.conf" | sed -n 's/^> *//p' | tr '\n' '|' | sed 's/|$//')"
cat > "$NGX/nginx.conf" <<EOF
# tests/integration/test_nginx.sh: everything beneath $NGX, nothing of /etc/nginx.
daemon off;
master_process on;
worker_processes 1;
user nobody $WGROUP;
pid $NGX/nginx.pid;
error_log $NGX/error.log notice;
events { worker_connections 256; }
http {
    default_type application/octet-stream;
    access_log $NGX/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    include $NGX/site.conf;
}
EOF
NGX_ARGS=(-p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log")
out=$("$NGINX" "${NGX_ARGS[@]}" -t 2>&1)
expect_match "nginx -t accepts it" 'test is successful' "$out"
# Started directly (not through a function or subshell): $! must be nginx's master itself.
"$NGINX" "${NGX_ARGS[@]}" >>"$NGX/error.log" 2>&1 &
NGX_PID=$!
PROXY=http://127.0.0.1:$NGX_PORT
for _ in $(seq 100); do curl -sf "$PROXY/nightshift/api/v1/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
if curl -sf "$PROXY/nightshift/api/v1/healthz" >/dev/null; then
  ok "nginx serves on 127.0.0.1:$NGX_PORT"
else
  not_ok "nginx serves on 127.0.0.1:$NGX_PORT"; sed 's/^/#   /' "$NGX/error.log"
fi
# The preview wildcard site: its Host reaches the preview proxy unchanged (its own answer for a
# preview it does not know), never the dashboard.
out=$(curl -s -H 'Host: p-aaaaaaaaaaaa.preview.localhost' "http://127.0.0.1:$NGX_PORT/")
expect_match "a preview site's request goes through nginx to the preview proxy, Host intact" "this is the preview proxy|no such preview" "$out"
WORKERS=$(pgrep -P "$NGX_PID" | tr '\n' ' ')

# From here on the helpers (api, wait_state, events) talk to nightshift through the proxy.
SV_URL=$PROXY/nightshift

# --- REST through the prefix ---------------------------------------------------------------------
r=$(api GET /api/v1/healthz)
expect_eq "healthz through /nightshift/ (prefix stripped)" 200 "${r%% *}"
expect_eq "the same answer as nightshift's own" "$(SV_URL=$DIRECT api GET /api/v1/healthz | cut -d' ' -f2-)" "${r#* }"
expect_eq "nothing outside the prefix is proxied" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$PROXY/api/v1/healthz")"
expect_eq "/nightshift redirects to /nightshift/" "301 $PROXY/nightshift/" \
  "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$PROXY/nightshift")"

make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
expect_eq "POST /api/v1/repos registers a repository (201)" 201 "${r%% *}"
repo_id=$(jget "${r#* }" 'd["id"]' 2>/dev/null)
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"command\",\"once\":true,\"prompt\":\"echo through-nginx > proxied.txt && cat proxied.txt\"}")
expect_eq "POST /api/v1/sessions with the command agent (201)" 201 "${r%% *}"
sid=$(jget "${r#* }" 'd["id"]' 2>/dev/null)
expect_eq "the session completes (its state polled through nginx)" completed "$(wait_state "$sid" completed failed stopped)"
expect_eq "GET .../events through nginx: the agent's output" through-nginx "$(output_of "$sid" | tr -d '\r\n')"
expect_match "and its status events and commit" '"type": "commit"' "$(events "$sid")"
check "the commit is in the mirror" git -C "$(mirror_of "$repo_id")" cat-file -e "nightshift/$sid:proxied.txt"

r=$(api GET /api/v1/sessions/s-zzzzzzzzzzzz)
expect_eq "an unknown session: 404 through nginx" 404 "${r%% *}"
expect_eq "with nightshift's JSON error body, untouched" not_found "$(jget "${r#* }" 'd["error"]["code"]' 2>/dev/null)"

# --- the 1 MiB body limit --------------------------------------------------------------------------
# Bodies are built in files: `api` hands "@FILE" to curl --data-binary.
$PY -c 'import json,sys; n=int(sys.argv[2]); b=json.dumps({"path":"/nonexistent","pad":""}); open(sys.argv[1],"w").write(b[:-2]+"x"*(n-len(b))+b[-2:])' \
  "$NS_TMP/1m.json" $((1024 * 1024))
$PY -c 'import json,sys; n=int(sys.argv[2]); b=json.dumps({"path":"/nonexistent","pad":""}); open(sys.argv[1],"w").write(b[:-2]+"x"*(n-len(b))+b[-2:])' \
  "$NS_TMP/1m+1.json" $((1024 * 1024 + 1))
expect_eq "the test bodies are 1 MiB and 1 MiB + 1 byte" "1048576 1048577" \
  "$(stat -c %s "$NS_TMP/1m.json") $(stat -c %s "$NS_TMP/1m+1.json")"
r=$(api POST /api/v1/repos "@$NS_TMP/1m+1.json")
expect_eq "a body over 1 MiB is refused with 413" 413 "${r%% *}"
expect_eq "in nightshift's JSON error shape" too_large "$(jget "${r#* }" 'd["error"]["code"]' 2>/dev/null)"
expect_match "by nginx, before nightshift sees it" 'client intended to send too large body: 1048577 bytes' \
  "$(cat "$NGX/error.log")"
r=$(api POST /api/v1/repos "@$NS_TMP/1m.json")
expect_eq "a body of exactly 1 MiB passes nginx and reaches nightshift's validation (400, unknown field)" \
  "400 invalid" "${r%% *} $(jget "${r#* }" 'd["error"]["code"]' 2>/dev/null)"

# --- WebSockets ----------------------------------------------------------------------------------
# The example's map and Upgrade/Connection headers carry the upgrade through; the session of
# above replays in full, then a new session's events arrive live through the proxy.
WSC="$PY $NS_SRC/tests/helpers/ws_client.py"
WSP=ws://127.0.0.1:$NGX_PORT/nightshift/api/v1/events
expect_eq "the event stream upgrades through nginx (101)" 101 "$($WSC status "$WSP?after_id=0" --token "$SV_TOKEN")"
expect_eq "... and refuses a missing token through it too (401)" 401 "$($WSC status "$WSP?after_id=0")"
n=$(events "$sid" | grep -c .)
got=$($WSC read "$WSP?session=$sid&after=0" --token "$SV_TOKEN" --events "$n" --timeout 20 | grep -c '"seq"')
expect_eq "a finished session replays in full through the proxy" "$n" "$got"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"sleep 1; echo through-the-proxy\",\"once\":true}")
sid_ws=$(jget "${r#* }" 'd["id"]' 2>/dev/null)
$WSC read "$WSP?session=$sid_ws&after=0" --token "$SV_TOKEN" --timeout 30 > "$NS_TMP/ws-proxy" &
WSR=$!
wait_state "$sid_ws" completed failed >/dev/null
sleep 0.5; kill "$WSR" 2>/dev/null; wait "$WSR" 2>/dev/null
expect_match "a running session's output arrives live through the proxy" 'through-the-proxy' "$(cat "$NS_TMP/ws-proxy")"

# --- the dashboard under the prefix --------------------------------------------------------------
hdr=$(curl -s -D - -o /dev/null "$PROXY/nightshift/" | tr -d '\r')
expect_match "the dashboard's page through /nightshift/ (200)" '^HTTP/1.1 200' "$(printf '%s' "$hdr" | head -n1)"
expect_match "with its CSP naming the proxy's host for the WebSocket" "connect-src 'self' ws://127.0.0.1:$NGX_PORT " \
  "$(printf '%s' "$hdr" | sed -n 's/^content-security-policy: //Ip')"
expect_eq "its scripts through the prefix" "200 text/javascript; charset=utf-8" \
  "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$PROXY/nightshift/app.js")"
jar=$NS_TMP/cookies
curl -s -c "$jar" -o /dev/null -H 'Content-Type: application/json' --data "{\"token\":\"$SV_TOKEN\"}" "$PROXY/nightshift/api/v1/login"
expect_eq "a cookie write with the CSRF header and the proxy's Origin passes the origin check (400 on a bad body, not 403)" 400 \
  "$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' -H 'X-Nightshift-CSRF: 1' -H "Origin: $PROXY" -H 'Content-Type: application/json' --data '{}' "$PROXY/nightshift/api/v1/repos")"
expect_eq "... and one from another origin is refused (403)" 403 \
  "$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' -H 'X-Nightshift-CSRF: 1' -H 'Origin: http://evil.example' -H 'Content-Type: application/json' --data '{}' "$PROXY/nightshift/api/v1/repos")"
TOOLS=${NS_TEST_TOOLS:-/var/lib/nightshift/test-tools}
if command -v chromium >/dev/null && [ -d "$TOOLS/node_modules/playwright-core" ]; then
  out=$(NS_TOOLS="$TOOLS" CHROMIUM=$(command -v chromium) NS_URL="$PROXY/nightshift/" NS_TOKEN="$SV_TOKEN" NS_REPO="$repo_id" \
    timeout 120 node "$NS_SRC/tests/browser/prefix.test.mjs" 2>&1)
  while IFS= read -r line; do
    case "$line" in 'ok - '*) ok "browser: ${line#ok - }" ;; 'not ok - '*) not_ok "browser: ${line#not ok - }" ;; *) note "$line" ;; esac
  done <<<"$out"
else
  skip "the dashboard in a browser through the prefix: chromium or playwright-core missing (scripts/install-deps.sh --with-tests)"
fi

# --- load through the proxy ------------------------------------------------------------------------
if command -v wrk >/dev/null; then
  out=$(wrk -t1 -c8 -d1s "$SV_URL/api/v1/healthz" 2>&1)
  n=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  note "wrk, 1 s, 8 connections through nginx: ${n:-?} requests"
  expect_eq "8 concurrent clients for 1 s: no socket error, no non-2xx answer" "" \
    "$(printf '%s\n' "$out" | grep -E 'Socket errors|Non-2xx')"
  check "and at least 100 requests served" test "${n:-0}" -ge 100
else
  skip "load through the proxy: wrk is not installed (scripts/install-deps.sh --with-tests installs it)"
fi

# --- nightshift down behind the proxy ------------------------------------------------------------
sv_stop
r=$(api GET /api/v1/healthz)
expect_eq "nightshift stopped: 502 from nginx" 502 "${r%% *}"
expect_eq "in the JSON error shape" unavailable "$(jget "${r#* }" 'd["error"]["code"]' 2>/dev/null)"
sv_start   # sets SV_URL to its own address
SV_URL=$PROXY/nightshift
r=$(api GET /api/v1/healthz)
expect_eq "nightshift restarted: served through nginx again" 200 "${r%% *}"

# --- cleanup --------------------------------------------------------------------------------------
master=$NGX_PID
ngx_stop
left=""
for p in $master $WORKERS; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
expect_eq "nginx's master and workers are gone after SIGTERM" "" "$left"
expect_eq "nothing under /etc/nginx changed" "" "$(find /etc/nginx -newer "$NGX/nginx.conf" 2>/dev/null)"
tap_done
