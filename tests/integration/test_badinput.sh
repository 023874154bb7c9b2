#!/usr/bin/env bash
# Hostile requests on the daemon's socket: each gets a clear error (or a refused connection), the
# daemon keeps serving, and nothing is created.
. "$(dirname "$0")/lib.sh"
ns_setup
mkdir -p "$NS_TMP/ws/other" "$NS_TMP/ws/w1/sub"; chown nobody "$NS_TMP/ws/other"; chown "$TEST_UID" "$NS_TMP/ws/w1/sub"
ln -s "$WS" "$NS_TMP/ws/link"; chown -h "$TEST_UID" "$NS_TMP/ws/link"
# The warm pool's sandboxes (records marked "pool") come and go on their own: left out.
pool_ids() {
  python3 - "$NS_TMP/state/sandboxes" <<'PY'
import json, os, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    if f.endswith(".json"):
        try:
            if json.load(open(os.path.join(d, f))).get("pool"): print(f[:-5])
        except Exception: pass
PY
}
snapshot_raw() {
  local pool; pool=$(pool_ids | tr '\n' '|'); pool="^(${pool%|})(\\.|$)"
  [ "$pool" = '^()(\.|$)' ] && pool='^$'
  ls "$NS_TMP/upper" "$NS_TMP/state/sandboxes" 2>/dev/null | grep -Ev "$pool" | sort | tr '\n' ' '
  find /sys/fs/cgroup -path '*nightshift-sandboxes/*' -type d -printf '%f\n' 2>/dev/null | grep -Ev "$pool" | wc -l
}
# Destroys finish just after their reply: a snapshot is taken once things are still.
snapshot() {
  local a b; a=$(snapshot_raw)
  for _ in $(seq 1 30); do sleep 0.2; b=$(snapshot_raw); [ "$a" = "$b" ] && break; a=$b; done
  printf '%s' "$a"
}
before=$(snapshot)
as_user python3 - "$NS_SOCK" "$NS_TMP" "$WS" <<'PY'
import json, math, os, socket, sys, array
sock_path, tmp, ws = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0; failed = 0
def tap(ok, desc):
    global n, failed
    n += 1
    if not ok: failed += 1
    print("#   " + ("ok" if ok else "NOT OK") + f" {n} - {desc}", flush=True)
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sock_path); s.settimeout(10)
    return s
s = conn()
def call_raw(data, fds=None):
    if fds:
        s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        s.send(data)
    return json.loads(s.recv(1 << 17))
def expect_err(desc, data, code, fds=None):
    try:
        r = call_raw(data if isinstance(data, bytes) else data.encode(), fds)
    except Exception as e:
        tap(False, f"{desc}: {e}"); return
    ok = r.get("ok") is False and r.get("error", {}).get("code") == code and r["error"].get("message")
    tap(bool(ok), f"{desc} -> {code}" + ("" if ok else f" (got {r})"))
def req(op, **kw):
    d = {"v": 1, "id": 1, "op": op}; d.update(kw); return json.dumps(d)
expect_err("malformed JSON", b'{"v":1,"id":1,"op":', "EINVAL")
expect_err("not an object", b'[1,2,3]', "EINVAL")
expect_err("empty object", b'{}', "EINVAL")
expect_err("unknown operation", req("format_disk"), "EOPNOTSUPP")
expect_err("wrong protocol version", '{"v":2,"id":1,"op":"version"}', "EPROTONOSUPPORT")
expect_err("unknown field", req("create", hack=True), "EINVAL")
expect_err("duplicate field", '{"v":1,"id":1,"op":"create","pids":5,"pids":7}', "EINVAL")
expect_err("wrong type", req("create", pids="many"), "EINVAL")
expect_err("negative number", req("create", pids=-1), "EINVAL")
expect_err("huge number", req("create", memory=1e300), "EINVAL")
expect_err("fractional number", req("create", pids=2.5), "EINVAL")
expect_err("NaN-like overflow", b'{"v":1,"id":1,"op":"create","memory":1e400}', "EINVAL")
expect_err("bad id", req("destroy", sandbox="../../etc"), "EINVAL")
expect_err("bad id (uppercase)", req("exec", sandbox="ABC", argv=["true"]), "EINVAL")
expect_err("unknown sandbox", req("exec", sandbox="snosuchsandbox", argv=["true"]), "ENOENT")
expect_err("workspace outside the root", req("create", workspace="/etc"), "EACCES")
expect_err("workspace with ..", req("create", workspace=ws + "/../w1"), "EINVAL")
expect_err("workspace that is a symlink", req("create", workspace=tmp + "/ws/link"), "ELOOP")
expect_err("workspace owned by someone else", req("create", workspace=tmp + "/ws/other"), "EACCES")
expect_err("read-only bind outside every --ro-root", req("create", ro_binds=[{"src": "/etc", "dst": "/mnt/etc"}]), "EACCES")
expect_err("memory above the configured maximum", req("create", memory=64 << 30), "E2BIG")
expect_err("list paging cursor that is not an id", req("list", after="../x"), "EINVAL")
expect_err("list paging cursor of the wrong type", req("list", after=7), "EINVAL")
expect_err("empty argv", req("exec", sandbox="sabc", argv=[]), "EINVAL")
expect_err("env without '='", req("exec", sandbox="sabc", argv=["true"], env=["FOO"]), "EINVAL")
expect_err("tied that is not a bool", req("exec", sandbox="sabc", argv=["true"], tied="yes"), "EINVAL")
expect_err("connector to a host port and a socket at once", req("connect", sandbox="sabc", port=80, host_port=80, host_path="/run/x.sock"), "EINVAL")
expect_err("connector socket path longer than sun_path", req("connect", sandbox="sabc", port=80, host_path="/" + "a" * 120), "EINVAL")
expect_err("connector socket path not absolute", req("create", connect=[{"port": 80, "host_path": "x.sock"}]), "EINVAL")
expect_err("oversized message", b'{"v":1,"id":1,"op":"version","x":"' + b"a" * 70000 + b'"}', "EMSGSIZE")
r, w = os.pipe()
expect_err("unexpected file descriptors", req("version"), "EINVAL", fds=[r])
os.close(r); os.close(w)
r = json.loads((s.send(req("version").encode()), s.recv(65536))[1])
tap(r.get("ok") is True and r.get("id") == 1, "the daemon still serves the same connection")
r = json.loads((s.send(req("list").encode()), s.recv(65536))[1])
tap(r.get("ok") is True and r.get("sandboxes") == [], "and created nothing")
print(f"# python part: {n - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
expect_eq "every bad request got its clear error and the daemon kept serving" "0" "$?"
after=$(snapshot)
expect_eq "no directory, state file or cgroup was created" "$before" "$after"

# a peer uid that is not allowed is refused before anything is read
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups python3 -c '
import socket,sys
s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("refused-by-mode"); sys.exit(0)
s.settimeout(5); s.send(b"{\"v\":1,\"id\":1,\"op\":\"version\"}")
try:
    d=s.recv(100); print("closed" if not d else "answered")
except (ConnectionResetError, BrokenPipeError): print("closed")
' "$NS_SOCK" 2>&1)
expect_match "a peer outside the socket group cannot connect" "refused-by-mode|closed" "$out"
chmod 0666 "$NS_SOCK"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups python3 -c '
import socket,sys
s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1]); s.settimeout(5)
try:
    s.send(b"{\"v\":1,\"id\":1,\"op\":\"version\"}"); d=s.recv(100); print("closed" if not d else "answered")
except (ConnectionResetError, BrokenPipeError): print("closed")
' "$NS_SOCK" 2>&1)
expect_eq "a connected peer whose uid is not allowed is closed unanswered" "closed" "$out"
check "the daemon keeps serving" sb version
tap_done
