#!/usr/bin/env bash
# connect: a host loopback service appears inside a --net none sandbox at 127.0.0.1:PORT, and
# nothing else on the host is reachable.
. "$(dirname "$0")/lib.sh"
ns_setup
mkdir -p "$NS_TMP/srv"; echo "hello from the host" > "$NS_TMP/srv/index.html"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port); Q=$(free_port)
python3 -m http.server "$P" --bind 127.0.0.1 --directory "$NS_TMP/srv" >/dev/null 2>&1 & SRV1=$!
python3 -m http.server "$Q" --bind 127.0.0.1 --directory "$NS_TMP/srv" >/dev/null 2>&1 & SRV2=$!
trap 'kill $SRV1 $SRV2 2>/dev/null; ns_cleanup' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$P/" >/dev/null 2>&1 && break; sleep 0.1; done

fetch='import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())
except Exception as e:
    print("failed:", type(e).__name__)'
out=$(sb run --net none --connect "$P" -- python3 -c "$fetch" "http://127.0.0.1:$P/")
expect_eq "a connected host server is reachable inside at 127.0.0.1:$P" "hello from the host" "$out"
out=$(sb run --net none --connect "$P" -- python3 -c "$fetch" "http://127.0.0.1:$Q/")
expect_match "an unconnected host server is unreachable" "failed" "$out"
R=$(free_port)
out=$(sb run --net none --connect "$R:$P" -- python3 -c "$fetch" "http://127.0.0.1:$R/")
expect_eq "PORT:HOSTPORT maps a different inside port" "hello from the host" "$out"
id=$(sb create --net none)
check "connect after create" sb connect "$id" "$P"
out=$(sb exec "$id" -- python3 -c "$fetch" "http://127.0.0.1:$P/")
expect_eq "and it works" "hello from the host" "$out"
expect_match "ls shows the connector" "\"host_port\": ?$P" "$(sb ls --json)"
out=$(sb exec "$id" -- python3 -c 'import socket
s=socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
try:
    s.settimeout(2); s.connect(("::1", int(__import__("sys").argv[1]))); print("reached")
except Exception as e: print("failed")' "$Q")
expect_eq "the host's [::1] is not reachable either" "failed" "$out"
sb destroy "$id" >/dev/null

# --- a connector to a host Unix socket: only to one the sandbox's owner owns ---------------------
U=$NS_TMP/usock; mkdir -p "$U"; chown "$TEST_UID:$TEST_GID" "$U"
unix_server() { # PATH TEXT: answer every connection on Unix socket PATH with TEXT
  python3 -c 'import os, socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self): self.wfile.write(sys.argv[2].encode() + b"\n")
try: os.unlink(sys.argv[1])
except FileNotFoundError: pass
socketserver.UnixStreamServer(sys.argv[1], H).serve_forever()' "$@"
}
as_user bash -c "$(declare -f unix_server); unix_server '$U/mine.sock' 'hello from a unix socket'" 2>/dev/null & USRV=$!
unix_server "$NS_TMP/root.sock" "root's secret" 2>/dev/null & RSRV=$!
# (each server runs under a subshell: $USRV is not the server itself; its socket path names it)
trap 'kill $SRV1 $SRV2 $USRV $RSRV 2>/dev/null; pkill -f "$U/mine.sock|$NS_TMP/root.sock" 2>/dev/null; ns_cleanup' EXIT
for _ in $(seq 50); do [ -S "$U/mine.sock" ] && [ -S "$NS_TMP/root.sock" ] && break; sleep 0.1; done
get='import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    print(s.makefile().readline().strip() or "nothing")
except Exception as e: print("failed:", type(e).__name__)'
out=$(sb run --net none --connect "7000:$U/mine.sock" -- python3 -c "$get" 7000)
expect_eq "PORT:/SOCKET: the owner's Unix socket appears inside at 127.0.0.1:PORT" "hello from a unix socket" "$out"
out=$(sb run --net none --connect "7000:$NS_TMP/root.sock" -- true 2>&1); st=$?
expect_eq "a socket of another owner is refused" 125 "$st"
expect_match "  with the reason" "not owned by the sandbox's owner" "$out"
touch "$U/file"; chown "$TEST_UID" "$U/file"
expect_match "a path that is not a socket is refused" "not a Unix socket" "$(sb run --net none --connect "7000:$U/file" -- true 2>&1)"
ln -s "$U/mine.sock" "$U/link.sock"; chown -h "$TEST_UID" "$U/link.sock"
expect_match "a symlink is not followed" "not a Unix socket" "$(sb run --net none --connect "7000:$U/link.sock" -- true 2>&1)"
expect_match "a relative path is refused" "host_path|PORT" "$(sb run --net none --connect "7000:rel.sock" -- true 2>&1)"
id=$(sb create --net none)
check "connect ID PORT:/SOCKET after create" sb connect "$id" "7001:$U/mine.sock"
expect_match "ls shows the socket" "\"host_path\": ?\"$U/mine.sock\"" "$(sb ls --json)"
expect_eq "and it serves" "hello from a unix socket" "$(sb exec "$id" -- python3 -c "$get" 7001)"
# What the path names is checked on every connection: swapped for a link to root's socket, it
# reaches nothing.
mv "$U/mine.sock" "$U/mine.sock.real"; ln -s "$NS_TMP/root.sock" "$U/mine.sock"
out=$(sb exec "$id" -- python3 -c "$get" 7001)
expect_match "a path swapped for a link to another owner's socket reaches nothing (a reset)" "^failed: ConnectionResetError$|^nothing$" "$out"
rm "$U/mine.sock"; mv "$U/mine.sock.real" "$U/mine.sock"
expect_eq "put back, it serves again" "hello from a unix socket" "$(sb exec "$id" -- python3 -c "$get" 7001)"
sb destroy "$id" >/dev/null
tap_done
