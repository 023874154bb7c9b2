#!/usr/bin/env bash
# The systemd units (packaging/systemd/): what they promise, installed by `cmake --install` into a
# private prefix and checked there by systemd-analyze; and the sd_notify protocol of both daemons
# driven for real, through a notification socket of the test's own: READY=1 from
# nightshift-sandboxd and from `nightshift serve` only once each accepts connections, STOPPING=1
# from serve when SIGTERM arrives.  Nothing is installed on the host and no unit is started.
. "$(dirname "$0")/sv_lib.sh"
sv_setup
UNITS=$NS_SRC/packaging/systemd
SD=$UNITS/nightshift-sandboxd.service
SH=$UNITS/nightshift-sandboxes.service
NS=$UNITS/nightshift.service

# --- what the unit files say -------------------------------------------------------------------
# setting FILE KEY: the values of KEY= in FILE (comments and blank lines are not settings)
setting() { sed -n "s/^$2=//p" "$1"; }
expect_eq "sandboxd: KillMode=process (a restart leaves the sandboxes running)" process "$(setting "$SD" KillMode)"
expect_eq "sandboxd: no Delegate= (its cgroup holds the daemon alone, a leaf a restart can always use)" "" "$(setting "$SD" Delegate)"
expect_eq "sandboxd: requires and follows the sandboxes' unit" \
  "nightshift-sandboxes.service|local-fs.target nightshift-sandboxes.service" "$(setting "$SD" Requires)|$(setting "$SD" After)"
expect_eq "sandboxes: Delegate=yes (the subtree is the daemon's to manage)" yes "$(setting "$SH" Delegate)"
expect_eq "sandboxes: Type=notify, the holder as its main process" "notify|--hold-cgroup" \
  "$(setting "$SH" Type)|$(setting "$SH" ExecStart | cut -d' ' -f2-)"
expect_eq "sandboxes: stopping it stops every sandbox (default KillMode=control-group)" "" "$(setting "$SH" KillMode)"
expect_eq "sandboxes: TasksMax=infinity, OOMPolicy=continue (limits are per sandbox)" "infinity|continue" \
  "$(setting "$SH" TasksMax)|$(setting "$SH" OOMPolicy)"
expect_eq "sandboxd: Type=notify" notify "$(setting "$SD" Type)"
expect_eq "sandboxd: runs as root (no User=)" "" "$(setting "$SD" User)"
expect_eq "sandboxd: TasksMax=infinity (sandbox processes count in the unit)" infinity "$(setting "$SD" TasksMax)"
expect_eq "sandboxd: OOMPolicy=continue (a sandbox's OOM kill does not stop the unit)" continue "$(setting "$SD" OOMPolicy)"
expect_eq "sandboxd: /run/nightshift is kept when the unit stops" "nightshift|yes" \
  "$(setting "$SD" RuntimeDirectory)|$(setting "$SD" RuntimeDirectoryPreserve)"
expect_match "sandboxd: started with /etc/nightshift/sandboxd.conf, its sandboxes beneath the other unit's cgroup" \
  '/nightshift-sandboxd --config /etc/nightshift/sandboxd.conf --cgroup-base /system.slice/nightshift-sandboxes.service$' \
  "$(setting "$SD" ExecStart)"
expect_eq "nightshift: User=nightshift" nightshift "$(setting "$NS" User)"
expect_eq "nightshift: Type=notify" notify "$(setting "$NS" Type)"
expect_match "nightshift: started with /etc/nightshift/nightshift.conf" '/nightshift serve --config /etc/nightshift/nightshift.conf$' \
  "$(setting "$NS" ExecStart)"
expect_eq "nightshift: wants and follows sandboxd" "nightshift-sandboxd.service|nightshift-sandboxd.service network.target" \
  "$(setting "$NS" Wants)|$(setting "$NS" After)"
expect_eq "nightshift: hardened (NoNewPrivileges, ProtectSystem=strict, no capabilities, native syscalls)" \
  "yes|strict||native" \
  "$(setting "$NS" NoNewPrivileges)|$(setting "$NS" ProtectSystem)|$(setting "$NS" CapabilityBoundingSet)|$(setting "$NS" SystemCallArchitectures)"
expect_eq "nightshift: may write only its data dir and workspace root" \
  "/var/lib/nightshift/data /var/lib/nightshift/workspaces" "$(setting "$NS" ReadWritePaths)"
expect_eq "nightshift: socket families AF_UNIX (sandboxd) and IP only" "AF_UNIX AF_INET AF_INET6" \
  "$(setting "$NS" RestrictAddressFamilies)"
expect_eq "the paths it may write are those of the example config" \
  "/var/lib/nightshift/data /var/lib/nightshift/workspaces" \
  "$(sed -n 's/^\(data-dir\|workspace-root\) //p' "$NS_SRC/packaging/examples/nightshift.conf" | tr '\n' ' ' | sed 's/ $//')"

# --- cmake --install -----------------------------------------------------------------------------
P=$NS_TMP/prefix
if cmake --install "$NS_BUILD" --prefix "$P" >"$NS_TMP/install.log" 2>&1; then
  ok "cmake --install into a private prefix"
else
  not_ok "cmake --install into a private prefix"; sed 's/^/#   /' "$NS_TMP/install.log"
fi
IU=$P/lib/systemd/system
expect_eq "the units land in <prefix>/lib/systemd/system, ExecStart= pointing at <prefix>/bin" \
  "$P/bin/nightshift-sandboxd|$P/bin/nightshift-sandboxd|$P/bin/nightshift" \
  "$(setting "$IU/nightshift-sandboxes.service" ExecStart | cut -d' ' -f1)|$(setting "$IU/nightshift-sandboxd.service" ExecStart | cut -d' ' -f1)|$(setting "$IU/nightshift.service" ExecStart | cut -d' ' -f1)"
check "the example configs land in <prefix>/share/doc/nightshift/examples" \
  test -f "$P/share/doc/nightshift/examples/sandboxd.conf" -a -f "$P/share/doc/nightshift/examples/nightshift.conf" \
  -a -f "$P/share/doc/nightshift/examples/nginx-nightshift.conf"
# Nothing differs between the tree's and the installed units but the prefix.
expect_eq "the installed units are the tree's with the prefix substituted" "" \
  "$(for u in nightshift-sandboxes.service nightshift-sandboxd.service nightshift.service; do
       sed "s#/usr/local/#$P/#g" "$UNITS/$u" | diff - "$IU/$u"; done)"

# --- systemd-analyze -----------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  # verify loads the units as systemd would (unknown or misspelt settings, bad values, missing or
  # non-executable ExecStart binaries, dependencies) and needs no running systemd.
  out=$(cd "$IU" && systemd-analyze verify ./nightshift-sandboxes.service ./nightshift-sandboxd.service ./nightshift.service 2>&1); rc=$?
  expect_eq "systemd-analyze verify: the three units load with no complaint" "0|" "$rc|$out"
  if out=$(cd "$IU" && systemd-analyze security --offline=true ./nightshift.service 2>&1); then
    score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for nightshift.service: \([0-9.]*\).*/\1/p')
    note "systemd-analyze security (offline): nightshift.service exposure $score"
    check "nightshift.service's exposure is low (≤ 2.5 of 10)" $PY -c "import sys; sys.exit(not float('${score:-99}') <= 2.5)"
  else
    skip "systemd-analyze security --offline needs systemd ≥ 250"
  fi
else
  skip "systemd-analyze verify: systemd-analyze is not installed"
  skip "systemd-analyze security: systemd-analyze is not installed"
fi
if [ -d /run/systemd/system ]; then
  note "the units are not started: that would install them into this host's systemd; sd_notify is driven through a socket of the test's own"
else
  note "systemd is not PID 1 here: the units are not started; sd_notify is driven through a socket of the test's own"
fi

# --- sd_notify: readiness and stopping, as systemd would receive them ---------------------------
# A datagram socket standing in for systemd's.  On each message it records the sender (from the
# kernel's SCM_CREDENTIALS, the pid NotifyAccess=main checks) and, on READY=1, at once probes the
# endpoint the sender was started with (--socket PATH or --listen ADDR:PORT on its command line):
# a READY=1 sent before the daemon accepts connections shows as a failed probe.
cat > "$NS_TMP/notify.py" <<'PY'
import errno, json, os, socket, struct, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)  # serve runs as the unprivileged test user
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

def opt(args, name):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None

def ename(e):
    return errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__

def probe(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return "gone"
    if opt(args, "--socket"):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.settimeout(5)
        try:
            c.connect(opt(args, "--socket"))
            return "unix:connected"
        except OSError as e:
            return "unix:" + ename(e)
        finally:
            c.close()
    if opt(args, "--listen"):
        host, port = opt(args, "--listen").rsplit(":", 1)
        try:
            c = socket.create_connection((host, int(port)), timeout=5)
        except OSError as e:
            return "tcp:" + ename(e)
        try:
            c.sendall(b"GET /api/v1/healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            line = c.makefile("rb").readline().decode(errors="replace").split()
            return "tcp:connected http:" + (line[1] if len(line) > 1 else "none")
        except OSError as e:
            return "tcp:connected http:" + ename(e)
        finally:
            c.close()
    return "unknown"

while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = -1
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", d[:12])[0]
    fields = dict(l.split("=", 1) for l in data.decode(errors="replace").split("\n") if "=" in l)
    rec = {"pid": pid, "fields": fields}
    if fields.get("READY") == "1":
        rec["probe"] = probe(pid)
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")
PY
NOTIFY=$NS_TMP/notify.sock
NLOG=$NS_TMP/notify.log
: > "$NLOG"
$PY "$NS_TMP/notify.py" "$NOTIFY" "$NLOG" >/dev/null 2>>"$NS_TMP/notify.err" &
LISTENER=$!
trap 'kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null; sv_stop; sv_log_tail; ns_cleanup' EXIT
for _ in $(seq 100); do [ -S "$NOTIFY" ] && break; sleep 0.05; done
# nget PID FIELD: the values FIELD had in the messages from PID, one a line; nprobe PID: the probes
nget() { $PY -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["pid"] == int(sys.argv[2]) and sys.argv[3] in r["fields"]: print(r["fields"][sys.argv[3]])' "$NLOG" "$1" "$2"; }
nprobe() { $PY -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["pid"] == int(sys.argv[2]) and "probe" in r: print(r["probe"])' "$NLOG" "$1"; }
# wait_for PID FIELD: until a message from PID carried FIELD (10 s)
wait_for() { for _ in $(seq 200); do [ -n "$(nget "$1" "$2")" ] && return 0; sleep 0.05; done; return 1; }

# Both daemons again, this time with NOTIFY_SOCKET, as systemd starts them.
sv_stop
stop_daemon
export NOTIFY_SOCKET=$NOTIFY
start_daemon || { not_ok "sandboxd starts with NOTIFY_SOCKET"; tap_done; exit 1; }
sv_start || { not_ok "nightshift serve starts with NOTIFY_SOCKET"; tap_done; exit 1; }
unset NOTIFY_SOCKET
wait_for "$NS_DAEMON_PID" READY
wait_for "$SV_PID" READY
expect_eq "sandboxd sends READY=1, once, from its main process" 1 "$(nget "$NS_DAEMON_PID" READY | tr '\n' ' ' | sed 's/ $//')"
expect_eq "it accepts connections on its socket when READY=1 arrives" unix:connected "$(nprobe "$NS_DAEMON_PID")"
expect_eq "its STATUS= names the socket" "listening on $NS_SOCK" "$(nget "$NS_DAEMON_PID" STATUS)"
expect_eq "nightshift serve sends READY=1, once, from its main process" 1 "$(nget "$SV_PID" READY | tr '\n' ' ' | sed 's/ $//')"
expect_eq "it accepts connections and answers HTTP when READY=1 arrives" "tcp:connected http:200" "$(nprobe "$SV_PID")"
expect_eq "its STATUS= names the URL" "listening on $SV_URL" "$(nget "$SV_PID" STATUS)"
expect_eq "no other process sent anything (NotifyAccess=main would drop it)" 2 \
  "$($PY -c 'import json,sys; print(len({json.loads(l)["pid"] for l in open(sys.argv[1])}))' "$NLOG")"
serve_pid=$SV_PID
sv_stop
wait_for "$serve_pid" STOPPING
expect_eq "SIGTERM: serve sends STOPPING=1" 1 "$(nget "$serve_pid" STOPPING)"
expect_eq "and no second READY=1" 1 "$(nget "$serve_pid" READY | wc -l)"

# A NOTIFY_SOCKET nobody listens on (a stale or mistyped one): a warning, never a failed start.
NOTIFY_SOCKET=$NS_TMP/nobody-listens.sock sv_start
rc=$?
expect_eq "serve starts even when NOTIFY_SOCKET is unreachable" 0 "$rc"
expect_match "and warns about it" 'sd_notify READY=1 to NOTIFY_SOCKET=.*nobody-listens' "$(cat "$NS_TMP/nightshift.log")"
check "it serves" curl -sf "$SV_URL/api/v1/healthz"
sv_stop
tap_done
