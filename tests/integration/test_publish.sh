#!/usr/bin/env bash
# publish: a port inside a --net none sandbox is served on a host port (127.0.0.1, from the
# daemon's range), whether the server inside binds 0.0.0.0, 127.0.0.1 or [::1]; HTTP, WebSocket
# and 100 concurrent connections go through; unpublish and destroy close the listeners; bad input
# gets a clear error and changes nothing.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
LO=$((31000 + RANDOM % 500 * 10)); HI=$((LO + 9))
NS_DAEMON_ARGS="--publish-range $LO-$HI"
ns_setup
cp "$NS_SRC/tests/helpers/ws_echo.py" "$NS_TMP/ro/"
chmod 755 "$NS_TMP/ro" "$NS_TMP/ro/ws_echo.py"
HOLDER=
trap '[ -n "$HOLDER" ] && kill $HOLDER 2>/dev/null; ns_cleanup' EXIT

get() { curl -s --max-time 5 "$@"; }
wait_http() { for _ in $(seq 100); do get -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

id=$(sb create --net none --ro-bind "$NS_TMP/ro:/opt/t" --publish 8000 2>"$NS_TMP/create.err")
expect_match "create --publish prints the mapping" "^publish 8000 127\.0\.0\.1:[0-9]+$" "$(cat "$NS_TMP/create.err")"
HP8000=$(sed -n 's/^publish 8000 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$NS_TMP/create.err")
if [ -n "$HP8000" ] && [ "$HP8000" -ge "$LO" ] && [ "$HP8000" -le "$HI" ]; then ok "host port $HP8000 is inside the range"; else not_ok "host port '$HP8000' inside $LO-$HI"; fi

# python3 -m http.server binds 0.0.0.0; the second server binds 127.0.0.1 only; the third [::1].
# http.server's listen backlog is socketserver's 5: with 100 connections at once through the forward
# the kernel drops the SYNs beyond it and retries them after 1, 3, 7, 15 s, which measured the
# server, not the forward.  The same module, run with a backlog of 128.
sb exec --detach "$id" -- sh -c 'mkdir -p /tmp/a && echo hello-8000 > /tmp/a/index.html && exec python3 -c "import runpy, socketserver, sys; socketserver.TCPServer.request_queue_size = 128; sys.argv = [\"http.server\", \"8000\", \"--directory\", \"/tmp/a\"]; runpy.run_module(\"http.server\", run_name=\"__main__\")"' >/dev/null 2>&1
sb exec --detach "$id" -- sh -c 'mkdir -p /tmp/b && echo hello-5173 > /tmp/b/index.html && exec python3 -m http.server 5173 --bind 127.0.0.1 --directory /tmp/b' >/dev/null 2>&1
sb exec --detach "$id" -- python3 /opt/t/ws_echo.py serve 5174 --bind ::1 >/dev/null 2>&1
sb exec --detach "$id" -- python3 /opt/t/ws_echo.py serve 8765 --bind 127.0.0.1 >/dev/null 2>&1
wait_http "http://127.0.0.1:$HP8000/"
expect_eq "a server on 0.0.0.0:8000 inside is served on its host port" "hello-8000" "$(get "http://127.0.0.1:$HP8000/")"

map=$(sb publish "$id" 5173)
expect_match "publish ID PORT prints the host address" "^127\.0\.0\.1:[0-9]+$" "$map"
wait_http "http://$map/"
expect_eq "a server on 127.0.0.1:5173 only is served too" "hello-5173" "$(get "http://$map/")"
HP5173=${map#*:}
map6=$(sb publish "$id" 5174)
for _ in $(seq 50); do [ "$(get "http://$map6/x")" = "hello 5174" ] && break; sleep 0.1; done
expect_eq "a server on [::1]:5174 only is reached over IPv6 inside" "hello 5174" "$(get "http://$map6/x")"

# listening: every server inside, not sandboxd's own connectors
for _ in $(seq 50); do sb listening "$id" | grep -qx 8765 && break; sleep 0.1; done
expect_eq "listening names the ports servers listen on inside" "5173 5174 8000 8765" "$(sb listening "$id" | tr '\n' ' ' | sed 's/ $//')"

WSP=$(sb publish "$id" 8765 $((LO + 9)))
expect_eq "publish with an explicit HOSTPORT takes it" "127.0.0.1:$((LO + 9))" "$WSP"
expect_eq "a WebSocket echo inside works through its forward" "ping through the forward" \
  "$($PY "$NS_SRC/tests/helpers/ws_echo.py" echo "ws://$WSP/ws" "ping through the forward" 2>&1)"

out=$($PY - "$HP8000" <<'EOF'
import sys, threading, socket
port = int(sys.argv[1]); done = []; lock = threading.Lock(); start = threading.Barrier(100)
def one():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        start.wait(20)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b: break
            data += b
        if data.endswith(b"hello-8000\n"):
            with lock: done.append(1)
    except Exception as e:
        print("error", e, file=sys.stderr)
ts = [threading.Thread(target=one) for _ in range(100)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(done))
EOF
)
expect_eq "100 concurrent connections through one forward complete" "100" "$out"

# ---- the relay process moves the bytes; the daemon's loop never hears of them -------------------
RELAY=$(pgrep -P "$NS_DAEMON_PID" -x nsd-relay)
expect_eq "sandboxd has one relay process, running as nobody" "65534" \
  "$(awk '/^Uid:/ {print $3}' "/proc/$RELAY/status" 2>/dev/null)"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sb exec "$id" -- truncate -s 300M /tmp/a/big.bin
d0=$(ticks "$NS_DAEMON_PID"); r0=$(ticks "$RELAY")
got=$(get --max-time 60 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$HP8000/big.bin")
d1=$(ticks "$NS_DAEMON_PID"); r1=$(ticks "$RELAY")
expect_eq "300 MB come through the forward" "314572800" "$got"
# A socket the daemon still watched after handing it over would wake its loop for the whole
# transfer (and the loop would run a freed watcher): this is what caught it.
if [ $((d1 - d0)) -le 10 ] && [ $((r1 - r0)) -ge 1 ]; then
  ok "the relay process spent $((r1 - r0)) ticks on them, the daemon $((d1 - d0))"
else not_ok "CPU ticks during the transfer: relay $((r1 - r0)), daemon $((d1 - d0)) (want the daemon <= 10)"; fi
sb exec "$id" -- rm -f /tmp/a/big.bin

ls=$(sb ls --json)
expect_match "ls --json shows the mappings" "\"port\": ?5173, ?\"host_addr\": ?\"127\.0\.0\.1\", ?\"host_port\": ?$HP5173" "$ls"
expect_match "stats shows them too" "\"port\": ?8765, ?\"host_addr\": ?\"127\.0\.0\.1\", ?\"host_port\": ?$((LO + 9))" "$(sb stats --json "$id")"

# ---- bad input -------------------------------------------------------------------------------
out=$(sb publish "$id" 0 2>&1); rc=$?
expect_match "port 0 is refused" "PORT must be 1\.\.65535" "$rc $out"
out=$(sb publish "$id" 70000 2>&1); rc=$?
expect_match "port 70000 is refused" "PORT must be 1\.\.65535" "$rc $out"
out=$(sb publish "$id" 9000 $((LO - 1)) 2>&1); rc=$?
expect_match "a host port outside the range is refused" "outside the publish range $LO-$HI" "$rc $out"
$PY -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(60)' $((LO + 8)) & HOLDER=$!
sleep 0.3
out=$(sb publish "$id" 9000 $((LO + 8)) 2>&1); rc=$?
expect_match "a host port taken by another process is refused" "already in use" "$rc $out"
out=$(sb publish "$id" 5173 2>&1); rc=$?
expect_match "publishing a port twice is refused" "already published" "$rc $out"
expect_eq "and nothing was half-made" "4 4" "$(sb ls --json | grep -o '"host_addr"' | wc -l) $(sb stats --json "$id" | grep -o '"host_addr"' | wc -l)"
n_before=$(sb ls --json | grep -o '"id"' | wc -l)
out=$(sb create --net none --publish 8000 --publish "9000:$((LO + 8))" 2>&1); rc=$?
expect_match "create with a taken host port fails" "already in use" "$rc $out"
expect_eq "and leaves no sandbox behind" "$n_before" "$(sb ls --json | grep -o '"id"' | wc -l)"
kill $HOLDER 2>/dev/null; wait $HOLDER 2>/dev/null; HOLDER=

# ---- dial: a socket connected inside the sandbox, handed over the protocol ----------------------
dial_out=$(as_user $PY - "$NS_SOCK" "$id" <<'EOF'
import json, socket, sys
path, sid = sys.argv[1], sys.argv[2]
def call(req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    s.send(json.dumps(dict(req, v=1, id=1)).encode())
    msg, fds, _, _ = socket.recv_fds(s, 65536, 4)
    s.close()
    return json.loads(msg), fds
def get(fd, host):
    c = socket.socket(fileno=fd)
    c.settimeout(10)
    c.sendall(b"GET / HTTP/1.0\r\nHost: " + host + b"\r\n\r\n")
    data = b""
    while True:
        b = c.recv(65536)
        if not b: break
        data += b
    c.close()
    return data.split(b"\r\n\r\n", 1)[-1].decode().strip()
out = []
rep, fds = call({"op": "dial", "sandbox": sid, "port": 5173})          # 127.0.0.1 only inside
out.append("5173:" + (get(fds[0], b"localhost:5173") if rep.get("ok") and len(fds) == 1 else repr(rep)))
rep, fds = call({"op": "dial", "sandbox": sid, "port": 5174})          # [::1] only inside
if rep.get("ok") and len(fds) == 1:
    c = socket.socket(fileno=fds[0]); out.append("5174:" + str(c.family == socket.AF_INET6)); c.close()
else:
    out.append("5174:" + repr(rep))
rep, fds = call({"op": "dial", "sandbox": sid, "port": 9})              # nothing listens
out.append("9:" + str(rep.get("ok")) + ":" + str(len(fds)) + ":" + str("refused" in json.dumps(rep).lower()))
rep, fds = call({"op": "dial", "sandbox": sid, "port": 0})
out.append("0:" + str(rep.get("ok")) + ":" + str(len(fds)))
rep, fds = call({"op": "dial", "sandbox": "nosuchsandbox", "port": 80})
out.append("x:" + str(rep.get("ok")) + ":" + str(len(fds)))
print(" ".join(out))
EOF
)
pick() { echo "$dial_out" | tr ' ' '\n' | grep -E "^($1):" | tr '\n' ' ' | sed 's/ $//'; }
expect_eq "dial hands over a socket connected to 127.0.0.1:PORT inside (a server on 127.0.0.1 only)" "5173:hello-5173" "$(pick 5173)"
expect_eq "dial falls back to [::1] inside when 127.0.0.1 refuses" "5174:True" "$(pick 5174)"
expect_eq "dial to a port nothing listens on is refused, with no fd" "9:False:0:True" "$(pick 9)"
expect_eq "dial of port 0 and of an unknown sandbox are errors, with no fd" "0:False:0 x:False:0" "$(pick '0|x')"

# ---- a restarted daemon publishes again on the same host ports ----------------------------------
stop_daemon
if get -o /dev/null "http://127.0.0.1:$HP8000/"; then not_ok "a stopped daemon's listeners are closed"; else ok "a stopped daemon's listeners are closed"; fi
start_daemon $NS_DAEMON_ARGS
for _ in $(seq 50); do [ "$(get "http://127.0.0.1:$HP8000/")" = hello-8000 ] && break; sleep 0.1; done
expect_eq "after a restart the forward serves again on its host port" "hello-8000" "$(get "http://127.0.0.1:$HP8000/")"

# ---- unpublish and destroy close the listeners ------------------------------------------------
# A connection the relay process holds (a request sent, its answer read, kept alive by the
# server) is reset by unpublish: the daemon tells the relay to drop that listener's connections.
$PY - "${map6#*:}" > "$NS_TMP/live.out" 2>&1 <<'EOF' &
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
got = b""
while b"hello 5174" not in got:
    b = s.recv(4096)
    if not b: break
    got += b
print("answered" if b"hello 5174" in got else "no answer", flush=True)
try:
    b = s.recv(4096)
    print("closed" if not b else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
except socket.timeout:
    print("still open", flush=True)
EOF
LIVE=$!
for _ in $(seq 50); do grep -q answered "$NS_TMP/live.out" && break; sleep 0.1; done
check "unpublish of a port with a live connection" sb unpublish "$id" 5174
wait "$LIVE"
expect_match "unpublish resets the live connection through that forward" "answered (reset|closed)" "$(tr '\n' ' ' < "$NS_TMP/live.out")"
check "unpublish" sb unpublish "$id" 5173
if get -o /dev/null "http://127.0.0.1:$HP5173/"; then not_ok "an unpublished host port is closed"; else ok "an unpublished host port is closed"; fi
out=$(sb unpublish "$id" 5173 2>&1); rc=$?
expect_match "unpublishing it again is refused" "not published" "$rc $out"
sb destroy "$id" >/dev/null
closed=yes
for p in "$HP8000" "${map6#*:}" $((LO + 9)); do get -o /dev/null "http://127.0.0.1:$p/" && closed="no ($p)"; done
expect_eq "destroy closes every listener" "yes" "$closed"
tap_done
