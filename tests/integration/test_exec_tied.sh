#!/usr/bin/env bash
# exec's `tied`: a process whose caller reads it to the end dies with that caller, and never loses
# output to a slow reader.  The default (untied) is the contrast each check needs: it runs on, and
# drops its oldest bytes past init's 1 MiB when nobody reads.
. "$(dirname "$0")/lib.sh"
ns_setup
trap 'pkill -KILL -f -- "exec (--tied )?$id" 2>/dev/null; ns_cleanup' EXIT
id=$(sb create --net none)

# alive PATTERN: whether a process whose command line has PATTERN runs in the sandbox
alive() { sb exec "$id" -- sh -c "for p in /proc/[0-9]*; do tr '\\0' ' ' < \$p/cmdline 2>/dev/null; echo; done" | grep -q -- "$1"; }
# kill_cli ARGS: SIGKILL the nightshift-sandbox process started with ARGS (sb runs it under setpriv
# in a subshell: $! is not the client itself)
kill_cli() { pkill -KILL -f -- "$1"; wait "$BG" 2>/dev/null; }
# gone_within SECS PATTERN
gone_within() { for _ in $(seq $(($1 * 10))); do alive "$2" || return 0; sleep 0.1; done; return 1; }

# --- the caller dies: a tied process goes with it, an untied one runs on ----------------------
sb exec --tied "$id" -- sh -c 'sleep 301 & sleep 302' >/dev/null 2>&1 & BG=$!
for _ in $(seq 50); do alive 'sleep 302' && break; sleep 0.1; done
check "a tied process runs while its caller reads it" alive 'sleep 302'
kill_cli "exec --tied $id"
check "its caller SIGKILLed: the tied process is killed" gone_within 3 'sleep 302'
check "and so is the rest of its process group" gone_within 3 'sleep 301'

sb exec "$id" -- sleep 303 >/dev/null 2>&1 & BG=$!
for _ in $(seq 50); do alive 'sleep 303' && break; sleep 0.1; done
kill_cli "exec $id -- sleep 303"
sleep 0.5
check "an untied process outlives its caller (attach reads the rest)" alive 'sleep 303'
sb exec "$id" -- pkill -f 'sleep 303' >/dev/null 2>&1

# --- a tied process that exits normally is not touched afterwards ---------------------------
expect_eq "a tied process's exit status comes through" 7 "$(sb exec --tied "$id" -- sh -c 'exit 7'; echo $?)"

# --- a slow reader: tied output is held back, never dropped --------------------------------
# The CLI stops reading its stream while its stdout (a pipe nobody reads for 3 s) is full, so
# init's buffer fills: 20 MB is far past its 1 MiB.
n=$(sb exec --tied "$id" -- head -c 20000000 /dev/zero | { sleep 3; wc -c; })
expect_eq "tied: all 20 MB reach a reader that stalled for 3 s" 20000000 "$n"
n=$(sb exec "$id" -- head -c 20000000 /dev/zero 2>/dev/null | { sleep 3; wc -c; })
if [ "$n" -lt 20000000 ]; then ok "untied: the same stall drops bytes (the contrast: $n of 20000000 came)"
else not_ok "untied: the same stall should have dropped bytes past init's buffer, got all $n"; fi

# --- a reader that dies after the EXIT frame, before its ACK, attaches again: it hears the end ----
# (a supervisor killed just as a turn ended; its restart re-attaches at the stored offset)
out=$(as_user python3 - "$NS_SOCK" "$id" <<'PY'
import array, json, socket, struct, sys
sock_path, sbx = sys.argv[1], sys.argv[2]
HDR = struct.Struct("<IIQQ")
def call(req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sock_path); s.settimeout(10)
    s.send(json.dumps(dict(v=1, id=1, **req)).encode())
    fds = array.array("i")
    msg, anc, _, _ = s.recvmsg(1 << 16, socket.CMSG_SPACE(4))
    for lvl, typ, data in anc:
        fds.frombytes(data[:4])
    return s, json.loads(msg), socket.socket(fileno=fds[0]) if fds else None
def frames(st):
    st.settimeout(10)
    while True:
        f = st.recv(1 << 16)
        t, _, off, _ = HDR.unpack(f[:HDR.size])
        yield t, off, f[HDR.size:]
        if t == 3: return
c, r, st = call(dict(op="exec", sandbox=sbx, argv=["sh", "-c", "echo bye; exit 3"]))
proc = r["proc"]
got = [(t, off) for t, off, _ in frames(st)]
st.close(); c.close()          # gone without acknowledging the end
c, r, st = call(dict(op="attach", sandbox=sbx, proc=proc, **{"from": 4}))
again = [(t, off, p) for t, off, p in frames(st)]
print("first", got[-1][0], "again", again[-1][0], "code", struct.unpack("<i", again[-1][2][:4])[0])
PY
)
expect_eq "the EXIT frame reaches a reader that attaches again after dying unacknowledged" "first 3 again 3 code 3" "$out"

# --- bad input -----------------------------------------------------------------------------
out=$(sb exec --tied --detach "$id" -- true 2>&1); st=$?
expect_eq "--tied with --detach is refused (the command line's status)" 125 "$st"
expect_match "with a reason" "exclude each other" "$out"
sb destroy "$id" >/dev/null
tap_done
