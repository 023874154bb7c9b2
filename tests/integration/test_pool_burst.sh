#!/usr/bin/env bash
# A burst of pipelined creates beyond the warm pool's size, through one connection: the creates
# that find the pool empty are queued and answered from the pool's next builds.  Every one is
# answered, each with a distinct sandbox that has its workspace, bind and limits exactly as a
# pooled create; a bad one in the burst is refused and makes nothing; destroying them leaves
# nothing; a client that disconnects mid-burst has its queued creates cancelled (nothing leaks).
. "$(dirname "$0")/lib.sh"
export NS_DAEMON_ARGS="--warm-pool 2 --debug"
ns_setup
N=24
# The relay process's channel is the daemon's alone: the zygotes, forked from the daemon after it
# was made, hold no copy of the daemon's end.
RELAY=$(pgrep -P "$NS_DAEMON_PID" -x nsd-relay)
rino=$(readlink "/proc/$RELAY/fd/3" 2>/dev/null | tr -dc 0-9)
holders=$(ss -xpn | awk -v i="$rino" '$8 == i && i != "" {print $9}')
zygotes=$(pgrep -P "$NS_DAEMON_PID" -x nsd-zygote | wc -l)
if [ -n "$rino" ] && [ "$zygotes" -ge 1 ] && echo "$holders" | grep -q "pid=$NS_DAEMON_PID," && ! echo "$holders" | grep -q nsd-zygote; then
  ok "the relay channel's daemon end is held by the daemon only, not by its $zygotes zygotes"
else not_ok "the relay channel's daemon end: held by '$holders' ($zygotes zygotes, relay $RELAY)"; fi
mkdir -p "$NS_TMP/ro/data"; echo "read only" > "$NS_TMP/ro/data/f"
echo "from the host" > "$WS/hostfile"; chown "$TEST_UID:$TEST_GID" "$WS/hostfile"
cat > "$NS_TMP/burst.py" <<'PY'
import json, socket, sys
# burst.py SOCK N WS RO [disconnect-after]: N creates sent at once (every third with a workspace,
# a bind and limits; one bad, naming a workspace that does not exist), then the answers read.
# With disconnect-after K (ephemeral creates): close after K answers and print what was read.
sock, n, ws, ro = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cut = int(sys.argv[5]) if len(sys.argv) > 5 else None
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sock)
bad = n // 2
for i in range(n):
    req = {"v": 1, "id": 100 + i, "op": "create", "net": "none"}
    if cut is not None:
        req["ephemeral"] = True
    elif i == bad:
        req["workspace"] = ws + "-missing"
    elif i % 3 == 0:
        req.update(workspace=ws, memory=64 << 20, pids=77, ro_binds=[{"src": ro, "dst": "/opt/data"}])
    s.send(json.dumps(req).encode())
ok, errs = {}, {}
while len(ok) + len(errs) < (cut if cut is not None else n):
    r = json.loads(s.recv(1 << 17))
    if "notice" in r: continue
    if r.get("ok"): ok[r["id"] - 100] = r["sandbox"]["id"]
    else: errs[r["id"] - 100] = r["error"]["message"]
print(json.dumps({"ok": ok, "errors": errs, "bad": bad if cut is None else -1}))
s.close()
PY
out=$(as_user /usr/bin/python3 "$NS_TMP/burst.py" "$NS_SOCK" $N "$WS" "$NS_TMP/ro/data") || { not_ok "the burst: $out"; tap_done; exit 1; }
field() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); exec(sys.argv[2])' "$out" "$1"; }
expect_eq "all $N creates answered: $((N - 1)) sandboxes and 1 error" "$((N - 1)) 1" "$(field 'print(len(d["ok"]), len(d["errors"]))')"
expect_eq "the error is the bad one's (its workspace)" "$(field 'print(d["bad"])') 1" \
  "$(field 'print(" ".join(d["errors"]), sum("missing" in m or "No such file" in m for m in d["errors"].values()))')"
ids=$(field 'print("\n".join(d["ok"].values()))')
expect_eq "each answer names a distinct sandbox" "$((N - 1))" "$(sort -u <<<"$ids" | grep -c .)"
n_listed() { sb ls --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sandboxes"]))'; }
expect_eq "and all are listed" "$((N - 1))" "$(n_listed)"
n_waited=$(grep -c "from a pool build it waited for" "$NS_TMP/sandboxd.log")
note "$n_waited of $((N - 1)) were queued and served by a pool build"
check "creates beyond the pool were queued for its builds" test "$n_waited" -ge $((N - 1 - 2 - 4))
# The ones with a workspace, a bind and limits: each checked (some were certainly queued).
bad_extras=0
for i in $(field 'print(" ".join(str(i) for i in d["ok"] if int(i) % 3 == 0))'); do
  id=$(field "print(d['ok']['$i'])")
  [ "$(sb exec "$id" -- cat /workspace/hostfile /opt/data/f 2>&1 | tr '\n' '|')" = "from the host|read only|" ] || { note "$id: no workspace/bind"; bad_extras=$((bad_extras + 1)); }
  st=$(sb stats "$id" --json 2>&1)
  [[ $st =~ \"max\":\ ?67108864 && $st =~ \"max\":\ ?77 ]] || { note "$id: limits missing: $st"; bad_extras=$((bad_extras + 1)); }
done
expect_eq "every one with a workspace, a bind and limits has them" "0" "$bad_extras"
plain=$(field 'print(next(v for i, v in d["ok"].items() if int(i) % 3))')
expect_eq "a plain one has no workspace" "absent" "$(sb exec "$plain" -- sh -c 'test -e /workspace/hostfile && echo present || echo absent')"
for id in $ids; do sb destroy "$id" >/dev/null || not_ok "destroy $id"; done
expect_eq "none is listed after destroy" "0" "$(n_listed)"
gone() { # gone ID...: no cgroup, upper dir or record of any of them is left (10 s at most)
  for _ in $(seq 200); do
    local left=0
    for id in "$@"; do
      [ -e "$NS_TMP/upper/$id" ] || [ -e "$NS_TMP/state/sandboxes/$id.json" ] && left=1
      [ -n "$(find /sys/fs/cgroup -maxdepth 7 -name "$id" -path '*nightshift-sandboxes*' 2>/dev/null | head -1)" ] && left=1
    done
    [ $left = 0 ] && return 0; sleep 0.05
  done; return 1; }
# shellcheck disable=SC2086
check "nothing of theirs is left (cgroups, upper dirs, records)" gone $ids

# ---- a client that goes away mid-burst ---------------------------------------------------------
records() { find "$NS_TMP/state/sandboxes" -name '*.json' | grep -c .; }
out=$(as_user /usr/bin/python3 "$NS_TMP/burst.py" "$NS_SOCK" 30 "$WS" "$NS_TMP/ro/data" 3) || { not_ok "the cut burst: $out"; tap_done; exit 1; }
note "read $(field 'print(len(d["ok"]))') answers, then closed with the rest in flight"
settled() { # the client's ephemeral sandboxes gone, only the pool's records left, for 1 s
  local stable=0
  for _ in $(seq 100); do
    if [ "$(n_listed)" = 0 ] && [ "$(records)" -le 2 ]; then stable=$((stable + 1)); [ $stable -ge 10 ] && return 0
    else stable=0; fi
    sleep 0.1
  done; return 1; }
check "its sandboxes went with it and its queued creates made nothing (only the pool's 2 records left)" settled
check "the daemon still serves" sb version
r=$(grep -c "ERROR\|AddressSanitizer\|runtime error" "$NS_TMP/sandboxd.log")
expect_eq "no error or sanitizer report in the daemon's log" "0" "$r"
stop_daemon
expect_eq "after stop no record and no upper dir is left" "0 0" \
  "$(records) $(find "$NS_TMP/upper" -mindepth 1 -maxdepth 1 | grep -c .)"
tap_done
