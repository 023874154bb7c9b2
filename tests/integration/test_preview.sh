#!/usr/bin/env bash
# Previews: a dev server in a session's sandbox served to the browser on a site of its own
# (<preview-id>.localhost:<preview port>) through the supervisor's preview proxy: a token link sets
# the access cookie; without it the proxy refuses; the dashboard's cookie never goes upstream; the
# dev server sees Host localhost:PORT; WebSocket works; previews are listed and show as events;
# --auto-publish publishes a new listening port by itself, unless the repository's settings say
# otherwise.  The proxy runs in a confined process of its own, replaced when it dies or breaks its
# channel's protocol, and gone with the supervisor.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --auto-publish true
make_repo "$NS_TMP/src/app"
cp "$NS_SRC/tests/helpers/ws_echo.py" "$NS_TMP/src/app/"
chown "$TEST_UID:$TEST_GID" "$NS_TMP/src/app/ws_echo.py"
as_user env HOME="$NS_TMP/src/app" git -C "$NS_TMP/src/app" -c user.name=t -c user.email=t@t add ws_echo.py
as_user env HOME="$NS_TMP/src/app" git -C "$NS_TMP/src/app" -c user.name=t -c user.email=t@t commit -q -m echo
WSE="$PY $NS_SRC/tests/helpers/ws_echo.py"

st=$(api POST /api/v1/repos "{\"url\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${st#* }" 'd["id"]')
# The agent's turn is the dev servers: 8000 on 0.0.0.0 (auto-published), 5173 on 127.0.0.1 only.
prompt='python3 ws_echo.py serve 8000 & exec python3 ws_echo.py serve 5173 --bind 127.0.0.1'
body=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"command\",\"prompt\":\"$prompt\"}")
sid=$(jget "${body#* }" 'd["id"]')
expect_eq "the session runs its dev servers" running "$(wait_state "$sid" running failed)"

# --- publish through the API ----------------------------------------------------------------------
for _ in $(seq 50); do
  st=$(api POST "/api/v1/sessions/$sid/previews" '{"port":5173}')
  case "${st%% *}" in 200|201) break ;; esac; sleep 0.2
done
expect_match "POST previews publishes port 5173" '^20[01] ' "$st"
url=$(jget "${st#* }" 'd["url"]'); pid=$(jget "${st#* }" 'd["id"]')
expect_match "the link is the preview's own site with its token" \
  "^http://p-[a-z2-7]{12}\.localhost:[0-9]+/__nightshift/auth\?token=[0-9a-f]{64}$" "$url"
PP=$(printf '%s' "$url" | sed -E 's|^http://[^:]+:([0-9]+)/.*|\1|')
HOST="$pid.localhost:$PP"
C=(curl -s --max-time 5 --resolve "$pid.localhost:$PP:127.0.0.1")
ORIGIN="http://$HOST"

expect_eq "without the token the preview is refused (401)" 401 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$ORIGIN/")"
expect_eq "a wrong token is refused (403)" 403 \
  "$("${C[@]}" -o /dev/null -w '%{http_code}' "$ORIGIN/__nightshift/auth?token=$(printf '0%.0s' $(seq 64))")"
hdrs=$("${C[@]}" -D - -o /dev/null "$url")
expect_match "the link redirects to / and sets the cookie" "^HTTP/1.1 302" "$hdrs"
cookie_line=$(printf '%s' "$hdrs" | grep -i '^set-cookie:' | tr -d '\r')
expect_match "the cookie is HttpOnly, SameSite, host-only" \
  "nightshift_preview=[0-9a-f]{64}; Path=/; HttpOnly; SameSite=(Lax|Strict)$" "$cookie_line"
PCK=$(printf '%s' "$cookie_line" | sed -E 's/.*(nightshift_preview=[0-9a-f]{64}).*/\1/')
expect_eq "with the cookie the page loads" "hello 5173" "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")"
expect_eq "a request on another origin's Host is not served (421)" 421 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $PCK" "http://127.0.0.1:$PP/")"

expect_eq "the API refuses a preview's Host (421): never served on a preview origin" 421 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $pid.localhost:$SV_PORT" -H "Authorization: Bearer $SV_TOKEN" "$SV_URL/api/v1/sessions")"
seen=$("${C[@]}" -H "Cookie: nightshift_session=dashboard-secret; $PCK; theme=dark" "$ORIGIN/headers")
expect_eq "the dev server sees Host localhost:5173" "localhost:5173" \
  "$(jget "$seen" '[v for k,v in d["headers"] if k.lower()=="host"][0]')"
expect_eq "neither the dashboard's cookie nor the proxy's reaches it" "theme=dark" \
  "$(jget "$seen" '";".join(v for k,v in d["headers"] if k.lower()=="cookie")')"
expect_eq "a POST body and a GET on one kept-alive connection" "abc|hello 5173|same" \
  "$($PY - "$PP" "$HOST" "$PCK" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
h = {"Host": sys.argv[2], "Cookie": sys.argv[3]}
c.request("POST", "/echo", body=b"abc", headers=h); a = c.getresponse().read().decode(); s1 = c.sock
c.request("GET", "/", headers=h); b = c.getresponse().read().decode().strip()
print(a + "|" + b + "|" + ("same" if c.sock is s1 else "new"))
EOF
)"
expect_eq "a chunked upload is passed on re-framed" "chunked-body" \
  "$("${C[@]}" -H "Cookie: $PCK" -H 'Transfer-Encoding: chunked' --data-binary chunked-body "$ORIGIN/echo")"
smug=$(printf 'POST /echo HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' "$HOST" "$PCK" |
  $PY -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1])),timeout=5); s.sendall(sys.stdin.buffer.read()); print(s.recv(100).split(b"\r\n")[0].decode())' "$PP")
expect_eq "Content-Length with Transfer-Encoding is refused (400)" "HTTP/1.1 400 Bad Request" "$smug"
raw() { # raw request bytes (printf format, %s = Host, %s = cookie) → the status line
  printf "$1" "$HOST" "$PCK" | $PY -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1])),timeout=5); s.sendall(sys.stdin.buffer.read()); print(s.recv(100).split(b"\r\n")[0].decode())' "$PP"
}
expect_eq "two Content-Length headers are refused (400)" "HTTP/1.1 400 Bad Request" \
  "$(raw 'POST /echo HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd')"
expect_eq "a Transfer-Encoding other than chunked is refused (400)" "HTTP/1.1 400 Bad Request" \
  "$(raw 'POST /echo HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n')"
expect_eq "a request without Host is refused (400)" "HTTP/1.1 400 Bad Request" \
  "$(raw 'GET / HTTP/1.1\r\nX-A: %s\r\nCookie: %s\r\n\r\n')"
expect_eq "a head over 16 KiB is refused (431)" "HTTP/1.1 431 Request Header Fields Too Large" \
  "$(raw "GET / HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nX-Big: $(head -c 17000 /dev/zero | tr '\0' a)\r\n\r\n")"
expect_eq "garbage is refused (400)" "HTTP/1.1 400 Bad Request" "$(raw 'HELLO%s%s\r\n\r\n')"
expect_eq "the page still loads after all that" "hello 5173" "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")"
expect_eq "100 connections at once are all served (a socket the supervisor dials for each)" 100 \
  "$($PY - "$PP" "$HOST" "$PCK" <<'EOF'
import socket, sys, concurrent.futures as cf
def one(_):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {sys.argv[2]}\r\nCookie: {sys.argv[3]}\r\nConnection: close\r\n\r\n".encode())
    d = b""
    while True:
        k = s.recv(65536)
        if not k:
            break
        d += k
    return d.startswith(b"HTTP/1.1 200") and d.rstrip().endswith(b"hello 5173")
with cf.ThreadPoolExecutor(100) as ex:
    print(sum(ex.map(one, range(100))))
EOF
)"
expect_eq "a WebSocket works through the preview" "hello over ws" \
  "$($WSE echo "ws://127.0.0.1:$PP/ws" "hello over ws" --host "$HOST" --cookie "$PCK" 2>&1)"
out=$($WSE echo "ws://127.0.0.1:$PP/ws" "x" --host "$HOST" 2>&1)
expect_match "a WebSocket without the cookie is refused" "401" "$out"

# --- the proxy's own process: confined, replaced when it dies or breaks its channel's protocol ----
proxy_pid() { pgrep -P "$SV_PID" -x ns-proxy | head -n1; }
proxy_after() { # wait for a proxy other than $1 → its pid
  local p; for _ in $(seq 60); do p=$(proxy_pid); [ -n "$p" ] && [ "$p" != "$1" ] && { echo "$p"; return; }; sleep 0.1; done
}
PXP=$(proxy_pid)
expect_match "the preview proxy runs in a process of its own, a child of the supervisor" '^[0-9]+$' "$PXP"
pst=$(cat "/proc/$PXP/status" 2>/dev/null)
expect_eq "it runs as the supervisor's user" "$TEST_UID" "$(printf '%s\n' "$pst" | awk '/^Uid:/{print $2}')"
expect_eq "with no_new_privs" 1 "$(printf '%s\n' "$pst" | awk '/^NoNewPrivs:/{print $2}')"
expect_eq "under a seccomp filter" 2 "$(printf '%s\n' "$pst" | awk '/^Seccomp:/{print $2}')"
expect_eq "at nice 10" 10 "$(awk '{print $19}' "/proc/$PXP/stat")"
expect_eq "not dumpable: its /proc files belong to root, not to the supervisor's user" 0 "$(stat -c %u "/proc/$PXP/environ")"
expect_eq "none of the supervisor's environment (a sanitizer's options at most)" "" \
  "$(tr '\0' '\n' <"/proc/$PXP/environ" | grep -v '^[A-Z]*SAN_OPTIONS=')"
expect_eq "it holds no file of the supervisor's: past stdio only sockets, its epoll and pipes" "" \
  "$(for f in /proc/$PXP/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && readlink "$f"; done | grep -Ev '^(socket|anon_inode|pipe):')"
kill -KILL "$PXP"
PXP2=$(proxy_after "$PXP")
expect_match "killed, it is replaced within a few seconds" '^[0-9]+$' "$PXP2"
for _ in $(seq 30); do [ "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")" = "hello 5173" ] && break; sleep 0.1; done
expect_eq "the replacement serves the preview, with the same cookie" "hello 5173" "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")"
expect_eq "and its WebSocket" "again over ws" \
  "$($WSE echo "ws://127.0.0.1:$PP/ws" "again over ws" --host "$HOST" --cookie "$PCK" 2>&1)"
# A proxy taken over by what it parses is not trusted: a message out of protocol on its channel
# (written here through a copy of the proxy's end, taken with pidfd_getfd) gets it killed and replaced.
sent=$($PY - "$PXP2" <<'PYEOF'
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
pfd = os.pidfd_open(int(sys.argv[1]))
fd = libc.syscall(438, pfd, 4, 0)  # pidfd_getfd(pidfd, 4, 0): the proxy's end of its channel
if fd < 0:
    print("pidfd_getfd: " + os.strerror(ctypes.get_errno())); sys.exit()
s = socket.socket(fileno=fd)
s.send(b"not a message")
print("sent")
PYEOF
)
expect_eq "a copy of the proxy's channel end is taken" sent "$sent"
PXP3=$(proxy_after "$PXP2")
expect_match "a message out of protocol: that proxy is killed and another started" '^[0-9]+$' "$PXP3"
check "the killed one is gone" bash -c "! kill -0 $PXP2 2>/dev/null"
expect_match "the supervisor says why" "proxy process $PXP2: it broke the channel's protocol" "$(cat "$NS_TMP/nightshift.log")"
for _ in $(seq 30); do [ "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")" = "hello 5173" ] && break; sleep 0.1; done
expect_eq "and the preview is served again" "hello 5173" "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")"

# --- listed, as events, auto-publish --------------------------------------------------------------
list=$(api GET "/api/v1/sessions/$sid/previews")
expect_eq "GET previews lists it (url without the token)" "5173 $ORIGIN/" \
  "$(jget "${list#* }" '" ".join(str(p["port"])+" "+p["url"] for p in d["previews"] if p["id"]=="'"$pid"'")')"
for _ in $(seq 60); do
  list=$(api GET "/api/v1/sessions/$sid/previews")
  [ "$(jget "${list#* }" '[p["automatic"] for p in d["previews"] if p["port"]==8000]')" = "[true]" ] && break
  sleep 0.25
done
expect_eq "--auto-publish published the other listening port (8000)" "[true]" \
  "$(jget "${list#* }" '[p["automatic"] for p in d["previews"] if p["port"]==8000]')"
ev=$(events "$sid" | grep '"type": "preview"')
expect_match "publishing shows as a preview event" "\"action\": \"published\".*\"port\": 5173|\"port\": 5173.*\"action\": \"published\"" "$ev"
expect_eq "events never carry the token" "" "$(printf '%s' "$ev" | grep -o 'token=[0-9a-f]*')"

# --- a restart of the supervisor keeps the previews (their sandboxes and publishes live on) ---------
# SIGKILL: the proxy process must not outlive its supervisor even when it had no chance to stop it.
PXP=$(proxy_pid)
kill -KILL "$SV_PID"; wait "$SV_PID" 2>/dev/null; SV_PID=
for _ in $(seq 30); do kill -0 "$PXP" 2>/dev/null || break; sleep 0.1; done
check "the preview proxy dies with a SIGKILLed supervisor" bash -c "! kill -0 $PXP 2>/dev/null"
sv_start
PP=$(sed -n 's/.*previews on .*listening on 127\.0\.0\.1:\([0-9]*\)).*/\1/p' "$NS_TMP/nightshift.log" | tail -n1)
HOST="$pid.localhost:$PP"
C=(curl -s --max-time 5 --resolve "$pid.localhost:$PP:127.0.0.1")
ORIGIN="http://$HOST"
expect_eq "after a restart of the supervisor the preview serves, with the same cookie" "hello 5173" \
  "$("${C[@]}" -H "Cookie: $PCK" "$ORIGIN/")"
expect_eq "and is listed as before" "5173" \
  "$(jget "$(api GET "/api/v1/sessions/$sid/previews" | cut -d' ' -f2-)" '" ".join(str(p["port"]) for p in d["previews"] if p["id"]=="'"$pid"'")')"

# --- bad input, delete ------------------------------------------------------------------------------
expect_match "port 0 is refused" "^400 " "$(api POST "/api/v1/sessions/$sid/previews" '{"port":0}')"
expect_match "port 70000 is refused" "^400 " "$(api POST "/api/v1/sessions/$sid/previews" '{"port":70000}')"
expect_match "an unknown field is refused" "^400 " "$(api POST "/api/v1/sessions/$sid/previews" '{"port":80,"host":"x"}')"
expect_match "an unknown session is 404" "^404 " "$(api POST "/api/v1/sessions/s-aaaaaaaaaaaa/previews" '{"port":80}')"
expect_match "an unknown preview is 404" "^404 " "$(api DELETE "/api/v1/sessions/$sid/previews/p-aaaaaaaaaaaa")"
expect_match "DELETE unpublishes (204)" "^204" "$(api DELETE "/api/v1/sessions/$sid/previews/$pid")"
expect_eq "its site is gone" 404 "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Cookie: $PCK" "$ORIGIN/")"
expect_match "an unpublished event follows" "\"action\": \"unpublished\"" "$(events "$sid" | grep '"type": "preview"')"
# --- a repository's setting overrides --auto-publish, both ways, read at each poll ----------------
expect_eq "settings: auto_publish is null (the server's) by default" None \
  "$(jget "$(api GET "/api/v1/repos/$repo_id/settings" | cut -d' ' -f2-)" 'd["auto_publish"]')"
expect_match "auto_publish must be a boolean or null" "^400 " "$(api PATCH "/api/v1/repos/$repo_id/settings" '{"auto_publish":"yes"}')"
expect_match "PATCH auto_publish false" '^200 .*"auto_publish":false' "$(api PATCH "/api/v1/repos/$repo_id/settings" '{"auto_publish":false}')"
body=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"command\",\"prompt\":\"exec python3 ws_echo.py serve 8001\"}")
sid2=$(jget "${body#* }" 'd["id"]')
expect_eq "a second session runs a dev server on 8001" running "$(wait_state "$sid2" running failed)"
auto_ports() { jget "$(api GET "/api/v1/sessions/$1/previews" | cut -d' ' -f2-)" '[p["port"] for p in d["previews"] if p["automatic"]]'; }
sleep 4 # more than two polls (every ~1.5 s) after the server listens
expect_eq "auto_publish false on the repository: nothing published under --auto-publish true" "[]" "$(auto_ports "$sid2")"
api PATCH "/api/v1/repos/$repo_id/settings" '{"auto_publish":null}' >/dev/null
for _ in $(seq 40); do [ "$(auto_ports "$sid2")" = "[8001]" ] && break; sleep 0.25; done
expect_eq "reset to null: the server's setting publishes 8001" "[8001]" "$(auto_ports "$sid2")"
api POST "/api/v1/sessions/$sid2/stop" >/dev/null
wait_state "$sid2" stopped failed completed >/dev/null

api POST "/api/v1/sessions/$sid/stop" >/dev/null
wait_state "$sid" stopped failed completed >/dev/null
sleep 0.5
expect_eq "a stopped session has no previews" "0" "$(jget "$(api GET "/api/v1/sessions/$sid/previews" | cut -d' ' -f2-)" 'len(d["previews"])')"
PXP=$(proxy_pid)
sv_stop
check "a stopped supervisor stops its preview proxy" bash -c "! kill -0 $PXP 2>/dev/null"
tap_done
