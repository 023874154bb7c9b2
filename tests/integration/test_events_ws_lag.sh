#!/usr/bin/env bash
# WebSocket /api/v1/events, a subscriber that stops reading: once the shared window of newest
# events (16 MB) has moved past it, it is sent {"control":"lagged","resume_after":K} after the
# events it has (1..K, in order) and closed with 1008 "lagged"; resuming with after=K it gets
# exactly K+1..N, in order; meanwhile a subscriber that reads is not held up by it.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --rate-limit 0
WS=$NS_SRC/tests/helpers/ws_client.py
WSURL=ws://127.0.0.1:$SV_PORT/api/v1/events

make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo=$(jget "${r#* }" 'd["id"]')

# Past the window: what the server's socket buffer to the stalled client can hold (tcp_wmem's
# max; the client's own buffer is fixed small below) and a batch, plus the 16 MB window, plus a
# margin.  The agent prints 4 MB more than that, 256 kB at a time every 0.1 s, in 4,000-byte
# lines (events of up to 32 kB): sandboxd keeps at most 1 MB that the supervisor has not taken,
# and a faster agent would lose output rather than move the window.
wmem=$(awk '{print $3}' /proc/sys/net/ipv4/tcp_wmem)
threshold=$(( 16 * 1024 * 1024 + wmem + 3 * 1024 * 1024 ))
steps=$(( (threshold / 1024 / 1024 + 4) * 4 ))
note "the agent prints $(( steps / 4 )) MiB; the stalled client resumes reading once the other has $threshold bytes"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"sleep 3; for i in \$(seq 1 $steps); do head -c 262144 /dev/zero | tr '\\\\0' x | fold -w 4000; sleep 0.1; done\",\"once\":true}")
sid=$(jget "${r#* }" 'd["id"]')

# One process, two subscribers from before the first line: "fast" reads all the time; "slow"
# reads nothing until fast has received `threshold` bytes of events (by then the window has moved
# past slow), then reads what it can until the server closes it.
$PY - "$WS" "$WSURL?session=$sid&after=0" "$SV_TOKEN" "$threshold" > "$NS_TMP/lag.json" <<'PY'
import importlib.util, json, selectors, socket, struct, sys, time
spec = importlib.util.spec_from_file_location("wsc", sys.argv[1]); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
url, token, threshold = sys.argv[2], sys.argv[3], int(sys.argv[4])

class C:
    def __init__(self, name):
        self.name = name
        self.sock, st, rest = m.handshake(url, token)
        assert st == 101, f"{name}: upgrade status {st}"
        self.reader = m.Reader()
        self.pending = self.reader.feed(rest)
        self.seqs, self.controls, self.closed, self.bytes, self.done = [], [], None, 0, False
        self.live_first = None  # was {"control":"live"} before the first line of output?
        self.late_ms = 0        # the most an event came after it was stored
        self.completed = False
        self.lost = 0           # error events: agent output lost on the way

    def take(self, msgs):
        now = time.time()
        for op, p in msgs:
            if op == 1:
                d = json.loads(p)
                if "control" in d:
                    self.controls.append(d)
                    if d["control"] == "live" and self.live_first is None:
                        self.live_first = True
                    continue
                if self.live_first is None and d["type"] == "command_output":
                    self.live_first = False
                self.seqs.append(d["seq"])
                self.bytes += len(p)
                self.late_ms = max(self.late_ms, now * 1000 - d["ts"])
                if d["type"] == "error" and "were lost" in d["data"].get("message", ""):
                    self.lost += 1
                if d["type"] == "status" and d["data"].get("to") == "completed":
                    self.completed = self.done = True
            elif op == 8:
                code = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None
                self.closed = {"code": code, "reason": p[2:].decode(errors="replace")}
                self.done = True

fast, slow = C("fast"), C("slow")
# Fixed small: the kernel neither grows it (autotuning) nor lets the window go past it.
slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
sel = selectors.DefaultSelector()
fast.sock.setblocking(False)
slow.sock.setblocking(False)
sel.register(fast.sock, selectors.EVENT_READ, fast)
fast.take(fast.pending)
resumed_at = None
deadline = time.time() + 60
while not (fast.done and slow.done) and time.time() < deadline:
    if resumed_at is None and (fast.bytes >= threshold or fast.done):
        resumed_at = time.time()
        fast.completed_before_resume = fast.bytes < threshold
        sel.register(slow.sock, selectors.EVENT_READ, slow)
        slow.take(slow.pending)
    for key, _ in sel.select(timeout=0.5):
        c = key.data
        try:
            data = c.sock.recv(1 << 20)
        except BlockingIOError:
            continue
        except ConnectionError:
            data = b""
        if not data:
            sel.unregister(c.sock)
            c.done = True
            if c.closed is None:
                c.closed = {"code": None, "reason": "eof"}
            continue
        c.take(c.reader.feed(data))
# Resume where the server said, until the last event fast had.
k = slow.seqs[-1] if slow.seqs else 0
u2 = url.replace("after=0", f"after={k}")
s2, st, rest = m.handshake(u2, token)
r2, got = m.Reader(), []
msgs = r2.feed(rest) if st == 101 else []
s2.settimeout(30)
while fast.seqs and (not got or got[-1] < fast.seqs[-1]):
    for op, p in msgs:
        if op == 1 and b'"control"' not in p[:12]:
            got.append(json.loads(p)["seq"])
    if got and got[-1] >= fast.seqs[-1]:
        break
    try:
        data = s2.recv(1 << 20)
    except OSError:  # a timeout included: what came is checked
        break
    if not data:
        break
    msgs = r2.feed(data)
print(json.dumps({c.name: {"seqs": c.seqs, "controls": c.controls, "closed": c.closed, "bytes": c.bytes, "lost": c.lost,
                           "live_first": c.live_first, "late_ms": round(c.late_ms), "completed": c.completed}
                  for c in (fast, slow)} | {"resumed": resumed_at is not None and not fast.completed_before_resume,
                                            "again": got}))
PY
wait_state "$sid" completed failed >/dev/null
res=$(cat "$NS_TMP/lag.json")
# The newest stored event is fast's last (one event after the one before it): n, without
# fetching the ~30 MB of events.
n=$(jget "$res" 'd["fast"]["seqs"][-1] if d["fast"]["seqs"] else 0')
expect_eq "the session's stored events end at seq $n" "[$n]" \
  "$(jget "$(api GET "/api/v1/sessions/$sid/events?after=$(( n - 1 ))&limit=10" | cut -d' ' -f2-)" '[e["seq"] for e in d["events"]]')"
note "$n events stored; fast: $(jget "$res" 'len(d["fast"]["seqs"])') events ($(jget "$res" 'd["fast"]["bytes"]') bytes), at most $(jget "$res" 'd["fast"]["late_ms"]') ms after storing; slow: $(jget "$res" 'len(d["slow"]["seqs"])') events ($(jget "$res" 'd["slow"]["bytes"]') bytes), then $(jget "$res" 'd["slow"]["controls"][-1:]') $(jget "$res" 'd["slow"]["closed"]')"
expect_eq "both were live before the agent's first line (they follow the shared window)" "True True" \
  "$(jget "$res" 'd["fast"]["live_first"]') $(jget "$res" 'd["slow"]["live_first"]')"
expect_eq "the reading subscriber got every event, 1..$n in order, to the end" "ok" \
  "$(jget "$res" '"ok" if d["fast"]["seqs"] == list(range(1, '"$n"' + 1)) and d["fast"]["completed"] else d["fast"]["seqs"][-3:]')"
expect_eq "... and was not held up by the stalled one (every event within 3 s of being stored)" "True" \
  "$(jget "$res" 'd["fast"]["late_ms"] <= 3000')"
expect_eq "no agent output was lost on the way (the window moved by all of it)" 0 "$(jget "$res" 'd["fast"]["lost"]')"
expect_eq "the stalled subscriber resumed reading once the other had $threshold bytes" "True" "$(jget "$res" 'd["resumed"]')"
k=$(jget "$res" 'd["slow"]["seqs"][-1] if d["slow"]["seqs"] else 0')
expect_eq "it had a prefix of the events, 1..K in order, and not all of them (K=$k of $n)" "ok" \
  "$(jget "$res" '"ok" if d["slow"]["seqs"] == list(range(1, '"$k"' + 1)) and 0 < '"$k"' < '"$n"' else d["slow"]["seqs"][-3:]')"
expect_eq "then it was told so: {\"control\":\"lagged\",\"resume_after\":K}" \
  "{\"control\": \"lagged\", \"resume_after\": $k}" "$(jget "$res" 'json.dumps(d["slow"]["controls"][-1])' 2>/dev/null || echo none)"
expect_eq "... and closed with 1008 \"lagged\"" '{"code": 1008, "reason": "lagged"}' "$(jget "$res" 'json.dumps(d["slow"]["closed"])')"
expect_eq "resuming with after=K gets exactly K+1..$n, in order" "ok" \
  "$(jget "$res" '"ok" if d["again"] == list(range('"$k"' + 1, '"$n"' + 1)) else (d["again"][:3], d["again"][-3:])')"
check "the server keeps serving" curl -sf "$SV_URL/api/v1/healthz"
tap_done
