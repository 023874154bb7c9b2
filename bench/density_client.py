#!/usr/bin/python3
"""Drive nightshift-sandboxd through one protocol connection (sandboxd/PROTOCOL.md), pipelined.

    density_client.py SOCKET create N WINDOW   -> N sandboxes (`create --net none`), each running
                                                  `sleep 600` (`exec`, its stdio stream closed at
                                                  once, as `exec --detach` does); prints the ids
                                                  and, on stderr, the timings as JSON
    density_client.py SOCKET destroy           -> destroys the ids read from stdin, pipelined

Up to WINDOW requests are in flight at once; a sandbox's exec is sent as soon as its create is
answered.  Any error reply stops the run (exit status 1)."""
import array, json, os, socket, sys, time

def main():
    sock_path, cmd = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sock_path)
    next_id = [1]
    inflight = {}

    def send(op, tag, **fields):
        rid = next_id[0]; next_id[0] += 1
        req = {"v": 1, "id": rid, "op": op}; req.update(fields)
        s.send(json.dumps(req).encode())
        inflight[rid] = tag

    def recv():
        while True:
            fds = array.array("i")
            msg, anc, _, _ = s.recvmsg(1 << 17, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)  # the stdio stream: detached, as `exec --detach`
            if not msg:
                sys.exit("density_client: the daemon closed the connection")
            r = json.loads(msg)
            if "notice" in r:
                continue
            tag = inflight.pop(r["id"])
            if not r.get("ok"):
                sys.exit(f"density_client: {tag[0]} failed: {r.get('error')}")
            return tag, r

    t0 = time.perf_counter()
    if cmd == "create":
        n, window = int(sys.argv[3]), int(sys.argv[4])
        ids, sent, execs_done, create_done_at = [], 0, 0, None
        while execs_done < n:
            while sent < n and len(inflight) < window:
                send("create", ("create",), net="none"); sent += 1
            (kind, *rest), r = recv()
            if kind == "create":
                sid = r["sandbox"]["id"]; ids.append(sid)
                if len(ids) == n:
                    create_done_at = time.perf_counter()
                send("exec", ("exec", sid), sandbox=sid, argv=["/bin/sleep", "600"])
            else:
                execs_done += 1
        t1 = time.perf_counter()
        print("\n".join(ids))
        print(json.dumps({"n": n, "window": window, "creates_s": create_done_at - t0, "total_s": t1 - t0}), file=sys.stderr)
    elif cmd == "destroy":
        ids = sys.stdin.read().split()
        window = int(sys.argv[3]) if len(sys.argv) > 3 else 32
        i = done = 0
        while done < len(ids):
            while i < len(ids) and len(inflight) < window:
                send("destroy", ("destroy", ids[i]), sandbox=ids[i]); i += 1
            recv(); done += 1
        print(json.dumps({"n": len(ids), "total_s": time.perf_counter() - t0}), file=sys.stderr)
    else:
        sys.exit(__doc__)

if __name__ == "__main__":
    main()
