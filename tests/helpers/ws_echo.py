#!/usr/bin/python3
"""A dev-server stand-in and its client for the publish and preview tests (stdlib only).

  ws_echo.py serve PORT [--bind ADDR]
      HTTP/1.1 with keep-alive: GET /headers answers the request's head as JSON
      {"method", "path", "headers": [[name, value], ...]}; any other GET answers "hello PORT";
      POST answers its body back; a WebSocket upgrade (RFC 6455) echoes every text or binary
      message until the client closes.
  ws_echo.py echo URL MESSAGE [--host H] [--cookie C]
      open a WebSocket to URL (ws://ADDR:PORT/PATH), send MESSAGE, print the echo; exit 1 when the
      upgrade is refused (the status line is printed on stderr).
"""
import argparse, base64, hashlib, json, os, socket, socketserver, struct, sys
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(rf):
    line = rf.readline(65537)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = rf.readline(65537).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        k, _, v = h.partition(":")
        headers.append([k.strip(), v.strip()])
    return method, path, headers


def recv_exact(rf, n):
    b = rf.read(n)
    if len(b) != n:
        raise EOFError
    return b


def read_frame(rf):
    b0, b1 = recv_exact(rf, 2)
    op, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(rf, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(rf, 8))[0]
    mask = recv_exact(rf, 4) if masked else None
    data = bytearray(recv_exact(rf, n))
    if mask:
        for i in range(n):
            data[i] ^= mask[i % 4]
    return op, bytes(data)


def frame(op, data, mask=False):
    n = len(data)
    head = bytes([0x80 | op])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return head + data


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = read_head(self.rfile)
            if head is None:
                return
            method, path, headers = head
            hd = {k.lower(): v for k, v in headers}
            if hd.get("upgrade", "").lower() == "websocket":
                acc = base64.b64encode(hashlib.sha1(hd["sec-websocket-key"].encode() + GUID).digest()).decode()
                self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode())
                try:
                    while True:
                        op, data = read_frame(self.rfile)
                        if op == 8:
                            self.wfile.write(frame(8, data[:2]))
                            return
                        if op in (1, 2):
                            self.wfile.write(frame(op, data))
                except EOFError:
                    return
            if hd.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline(100).split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b""):
                            pass
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline(3)
            else:
                n = int(hd.get("content-length", "0") or 0)
                body = self.rfile.read(n) if n else b""
            if method == "POST":
                out = body
            elif path == "/headers":
                out = json.dumps({"method": method, "path": path, "headers": headers}).encode()
            else:
                out = ("hello %d\n" % self.server.server_address[1]).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(out)
                             + out)
            if hd.get("connection", "").lower() == "close":
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128  # bursts of connections (tests open 100 at once)


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    s.add_argument("--bind", default="0.0.0.0")
    e = sub.add_parser("echo")
    e.add_argument("url")
    e.add_argument("message")
    e.add_argument("--host")
    e.add_argument("--cookie")
    a = ap.parse_args()
    if a.cmd == "serve":
        cls = Server6 if ":" in a.bind else Server
        cls((a.bind, a.port), Handler).serve_forever()
        return
    u = urlsplit(a.url)
    sock = socket.create_connection((u.hostname, u.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % (u.path or "/"), "Host: %s" % (a.host or "%s:%d" % (u.hostname, u.port)),
             "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
    if a.cookie:
        lines.append("Cookie: " + a.cookie)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    rf = sock.makefile("rb")
    status = rf.readline().decode("latin-1").strip()
    while rf.readline() not in (b"\r\n", b""):
        pass
    if " 101 " not in status + " ":
        print(status, file=sys.stderr)
        sys.exit(1)
    sock.sendall(frame(1, a.message.encode(), mask=True))
    op, data = read_frame(rf)
    print(data.decode())
    sock.sendall(frame(8, b"\x03\xe8", mask=True))


if __name__ == "__main__":
    main()
