#!/usr/bin/python3
"""A WebSocket client for the tests of /api/v1/events (RFC 6455, no dependencies).

  ws_client.py status URL [--token T] [--cookie C] [--origin O]
      print the HTTP status of the upgrade (101 when accepted)
  ws_client.py read URL [--token T] [--cookie C] [--origin O] [--events N] [--timeout S]
      print every message (one JSON per line) until N events came, the server closed, or S s passed;
      a close frame is printed as {"closed": CODE, "reason": "..."}
  ws_client.py fanout URL --clients K (--events N | --until-state ST) [--token T] [--stalled M]
      K subscribers (plus M that never read) at once, each reading until it has N events (or a
      status event with state ST); prints {"clients", "complete", "in_order", "deliveries", "seconds",
      "latency_p50_ms", "latency_p99_ms", "cpu_s"} (latency: receipt time minus the event's "ts", when the
      event data carries {"t_ns": ...} that is used instead)

URL is ws://HOST:PORT/PATH?QUERY.  Exit status 0 unless the connection itself failed.
"""
import argparse, base64, json, os, re, selectors, socket, struct, sys, time
from urllib.parse import urlsplit


def handshake(url, token=None, cookie=None, origin=None, timeout=10):
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    path = u.path + ("?" + u.query if u.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if origin:
        lines.append(f"Origin: {origin}")
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return s, status, rest


def frame(opcode, payload=b""):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    """Incremental frame parser; feed() bytes, get (opcode, payload) messages.  Linear in what it
    is fed: the buffer is consumed by an offset and trimmed once per feed (slicing it per frame
    made a reader that fell behind quadratically slower, the more so the further behind)."""

    def __init__(self):
        self.buf = b""
        self.partial = b""

    def feed(self, data):
        buf = self.buf + data if self.buf else data
        out, pos, end = [], 0, len(buf)
        while end - pos >= 2:
            b0, n = buf[pos], buf[pos + 1] & 0x7F
            if b0 == 0x81 and n < 126:  # the common case: a whole short text message
                off = pos + 2
                if end < off + n:
                    break
                out.append((1, buf[off:off + n]))
                pos = off + n
                continue
            off = pos + 2
            if n == 126:
                if end - pos < 4:
                    break
                n, off = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, off = struct.unpack_from(">Q", buf, pos + 2)[0], pos + 10
            if end < off + n:
                break
            payload = buf[off:off + n]
            pos = off + n
            op, fin = b0 & 0x0F, b0 & 0x80
            if op == 0:
                self.partial += payload
                if fin:
                    out.append((1, self.partial))
                    self.partial = b""
            elif not fin:
                self.partial = payload
            else:
                out.append((op, payload))
        self.buf = buf[pos:] if pos < end else b""
        return out


def cmd_status(a):
    s, status, _ = handshake(a.url, a.token, a.cookie, a.origin)
    s.close()
    print(status)


def cmd_read(a):
    s, status, rest = handshake(a.url, a.token, a.cookie, a.origin)
    if status != 101:
        print(json.dumps({"status": status}))
        return 1
    r, events, deadline = Reader(), 0, time.time() + a.timeout
    pending = r.feed(rest)
    while True:
        for op, p in pending:
            if a.events and events >= a.events:
                break
            if op == 1:
                print(p.decode(), flush=True)
                if "control" not in json.loads(p):
                    events += 1
            elif op == 9:
                s.sendall(frame(10, p))
            elif op == 8:
                code = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None
                print(json.dumps({"closed": code, "reason": p[2:].decode(errors="replace")}), flush=True)
                return 0
        if a.events and events >= a.events:
            s.sendall(frame(8, struct.pack(">H", 1000)))
            return 0
        left = deadline - time.time()
        if left <= 0:
            return 0
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            return 0
        if not data:
            print(json.dumps({"closed": None, "reason": "eof"}), flush=True)
            return 0
        pending = r.feed(data)


class Sub:
    """One fan-out subscriber's state."""
    __slots__ = ("sock", "reader", "seqs", "lat", "done", "until", "busy", "busy_events", "first", "last")

    def __init__(self, sock, until):
        self.sock, self.reader, self.seqs, self.lat = sock, Reader(), [], []
        self.done, self.until = False, until
        self.busy = self.busy_events = 0
        self.first = self.last = None


def cmd_fanout(a):
    sel = selectors.DefaultSelector()
    clients, stalled = [], []
    for i in range(a.clients + a.stalled):
        s, status, rest = handshake(a.url, a.token)
        if status != 101:
            print(json.dumps({"error": f"client {i}: upgrade status {status}"}))
            return 1
        if i >= a.clients:
            stalled.append(s)  # never read: its socket buffer fills and the server must cope
            continue
        s.setblocking(False)
        c = Sub(s, a.until_state)
        clients.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        take(c, c.reader.feed(rest))
    t0 = time.time()
    deadline = t0 + a.timeout
    want = lambda c: not c.done and (len(c.seqs) < a.events if a.events else c.until is not None)
    remaining = sum(1 for c in clients if want(c))
    while remaining and time.time() < deadline:
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            try:
                data = c.sock.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(c.sock)
                c.done = True
                continue
            take(c, c.reader.feed(data))
        remaining = sum(1 for c in clients if want(c))
    secs = time.time() - t0
    lat = sorted(x for c in clients for x in c.lat)
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None
    out = {
        "clients": len(clients),
        "complete": sum(1 for c in clients if (len(c.seqs) >= a.events if a.events else c.until is None)),
        "counts": sorted(set(len(c.seqs) for c in clients)),
        "in_order": sum(1 for c in clients if c.seqs == sorted(set(c.seqs)) and
                        (not c.seqs or c.seqs == list(range(c.seqs[0], c.seqs[0] + len(c.seqs))))),
        "deliveries": sum(len(c.seqs) for c in clients),
        "seconds": round(secs, 3),
        "busy_lines": sum(c.busy for c in clients),
        "busy_events": sum(c.busy_events for c in clients),
        "busy_first": min((c.first for c in clients if c.first), default=None),
        "busy_last": max((c.last for c in clients if c.last), default=None),
        "latency_p50_ms": pct(0.5),
        "latency_p99_ms": pct(0.99),
        "cpu_s": round(sum(os.times()[:2]), 2),  # this process's user + system time
    }
    print(json.dumps(out))
    for c in clients:
        c.sock.close()
    for s in stalled:
        s.close()
    return 0


# Every event message starts so (supervisor/ws.c's WEV_FMT); NUL never occurs in JSON text, so
# it separates the messages of one read joined for the searches below.
EVENT_SEQ = re.compile(rb'\x00\{"id":\d+,"seq":(\d+),')
STAMPED = re.compile(rb'\x00\{"id":\d+,"seq":\d+,"session":"[^"]*","ts":\d+,"type":"command_output",'
                     rb'"data":\{"stream":"std(?:out|err)","text":"(T [^"]*)')
STAMP = re.compile(rb'T (\d{15,})')


def take(c, msgs):
    """The messages of one read of a fan-out subscriber, taken when the read returned.  Searched
    all at once (regular expressions over the joined messages, in C) rather than parsed one by one
    in Python: at 100,000 messages a second the client's parsing must not be what is measured (it
    cost 3-5 us a message in Python, more than the server spends on it)."""
    now = time.time()
    texts = []
    for op, p in msgs:
        if op == 1:
            texts.append(p)
        elif op == 9:
            c.sock.send(frame(10, p))
        elif op == 8:
            c.done = True
    if not texts:
        return
    blob = b"\x00" + b"\x00".join(texts)
    c.seqs.extend(map(int, EVENT_SEQ.findall(blob)))
    if b'"text":"T ' in blob:
        # Lines of bench/events-fanout.sh: "T <wall ns> <i>" (a chunk may hold several lines)
        stamped = STAMPED.findall(blob)
        if stamped:
            stamps = STAMP.findall(b"\x00".join(stamped))
            now_ns = now * 1e9
            c.lat.extend([(now_ns - int(t)) / 1e6 for t in stamps])
            c.busy += len(stamps)
            c.busy_events += len(stamped)
            c.first = c.first or now
            c.last = now
    if c.until is not None and b'"type":"status"' in blob:
        for p in texts:
            if b'"type":"status"' in p and not p.startswith(b'{"control"'):
                d = json.loads(p).get("data") or {}
                if d.get("to") == c.until:
                    c.until = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["status", "read", "fanout"])
    ap.add_argument("url")
    ap.add_argument("--token")
    ap.add_argument("--cookie")
    ap.add_argument("--origin")
    ap.add_argument("--events", type=int, default=0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--stalled", type=int, default=0)
    ap.add_argument("--until-state")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()
    return {"status": cmd_status, "read": cmd_read, "fanout": cmd_fanout}[a.mode](a) or 0


if __name__ == "__main__":
    sys.exit(main())
