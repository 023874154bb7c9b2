#!/usr/bin/env bash
# The egress proxy (supervisor/egress.c, run alone by build/bin/egress-proxy-serve as a session's
# would run) vs straight to the server, in one run, all on 127.0.0.1:
#   a 1 GiB download: throughput through the proxy (forward mode) vs direct   target >= 80 %
#   10,000 small requests, one connection each: added time per request        target <= 50 us
# The origin is a minimal Python server (a fixed small response, or 1 GiB of zeros); the client is
# Python with one connection per request on both paths (the proxy closes after each response).
# Exit status: 0 PASS, 1 FAIL, 2 could not run.
set -euo pipefail
NS_BUILD=${NS_BUILD:-./build}
N=${N:-10000}
PY=/usr/bin/python3
SERVE=$NS_BUILD/bin/egress-proxy-serve
[ -x "$SERVE" ] || { echo "egress-proxy: build $SERVE first" >&2; exit 2; }
TMP=$(mktemp -d /tmp/ns-bench-egress.XXXXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
OP=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY - "$OP" <<'PY' &
import socket, sys, threading
big = b"\0" * (1 << 20)
def handle(c):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d: return
            buf += d
        if b"GET /big " in buf:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (1 << 30))
            for _ in range(1024): c.sendall(big)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    finally:
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(512)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
PY
PIDS+=($!)
echo "bench.test 127.0.0.1" > "$TMP/hosts"
"$SERVE" "$TMP/hosts" bench.test > "$TMP/port" & PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
PP=$(cat "$TMP/port")
$PY - "$OP" "$PP" "$N" <<'PY'
import socket, sys, time
op, pp, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def fetch(port, target, host, sink=None):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host))
    buf = bytearray(1 << 20); total = 0
    while True:
        k = s.recv_into(buf)
        if not k: break
        total += k
    s.close()
    return total
def small(port, target):
    t = time.perf_counter()
    for _ in range(n): fetch(port, target, b"bench.test")
    return (time.perf_counter() - t) / n * 1e6
fetch(op, b"/s", b"x"); fetch(pp, b"http://bench.test:%d/s" % op, b"bench.test")
d_us = small(op, b"/s"); p_us = small(pp, b"http://bench.test:%d/s" % op)
def big(port, target):
    t = time.perf_counter(); got = fetch(port, target, b"bench.test"); dt = time.perf_counter() - t
    return got / dt / 1e6, got
d_mb, dg = big(op, b"/big"); p_mb, pg = big(pp, b"http://bench.test:%d/big" % op)
added = p_us - d_us; ratio = p_mb / d_mb
print(f"small requests ({n}, a connection each): direct {d_us:.1f} us, through the egress proxy {p_us:.1f} us, added {added:.1f} us (target <= 50)")
print(f"1 GiB: direct {d_mb:.0f} MB/s, through the egress proxy {p_mb:.0f} MB/s, {ratio*100:.0f} % (target >= 80 %); bytes {dg} / {pg}")
ok = added <= 50 and ratio >= 0.8 and pg >= dg
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
