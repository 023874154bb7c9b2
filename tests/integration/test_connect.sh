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
tap_done
