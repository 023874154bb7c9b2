#!/usr/bin/env bash
# Isolation, seen from inside a real sandbox, and the --root mode.
. "$(dirname "$0")/lib.sh"
ns_setup

note "cgroups: $(sb version --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"])')"

# pids
out=$(sb run --workspace "$WS" -- sh -c 'echo pid=$$; ls /proc | grep -E "^[0-9]+$" | wc -l; cat /proc/1/status | grep -E "^Name"')
expect_match "the shell is not pid 1 (init is)" '^pid=[0-9]+' "$out"
n=$(printf '%s\n' "$out" | sed -n 2p)
if [ "${n:-99}" -le 5 ]; then ok "host pids are invisible ($n processes seen)"; else not_ok "host pids are invisible ($n seen)"; fi

# hostname = sandbox id
id=$(sb create --workspace "$WS")
hn=$(sb exec "$id" -- hostname)
expect_eq "hostname is the sandbox id" "$id" "$hn"

# capabilities, no_new_privs, seccomp
st=$(sb exec "$id" -- cat /proc/self/status)
for f in CapInh CapPrm CapEff CapBnd CapAmb; do
  expect_eq "agent $f is empty" "0000000000000000" "$(printf '%s\n' "$st" | awk -v f="$f:" '$1==f{print $2}')"
done
expect_eq "NoNewPrivs is 1" "1" "$(printf '%s\n' "$st" | awk '$1=="NoNewPrivs:"{print $2}')"
expect_eq "Seccomp is 2 (filter)" "2" "$(printf '%s\n' "$st" | awk '$1=="Seccomp:"{print $2}')"
expect_eq "the agent is uid 1000" "1000 1000" "$(sb exec "$id" -- sh -c 'echo $(id -u) $(id -g)')"

# read-only system, protected kernel interfaces
for p in /usr/ns-probe /etc/ns-probe; do
  if sb exec "$id" -- sh -c "echo x > $p" 2>/dev/null; then not_ok "agent cannot write $p"; else ok "agent cannot write $p"; fi
done
if sb exec "$id" --root -- sh -c 'echo 1 > /proc/sys/kernel/ns_last_pid' 2>/dev/null; then not_ok "root inside cannot write /proc/sys"; else ok "root inside cannot write /proc/sys"; fi
if sb exec "$id" --root -- sh -c 'echo h > /proc/sysrq-trigger' 2>/dev/null; then not_ok "root inside cannot write /proc/sysrq-trigger"; else ok "root inside cannot write /proc/sysrq-trigger"; fi
check "/proc/kcore is masked" sb exec "$id" --root -- sh -c 'test ! -s /proc/kcore'
check "no /sys inside" sb exec "$id" -- sh -c 'test -z "$(ls -A /sys)"'

# host markers are invisible
marker=ns-marker-$$-$RANDOM
touch "/root/$marker" "/srv/$marker"
if sb exec "$id" --root -- sh -c "test -e /root/$marker || test -e /srv/$marker"; then
  not_ok "host files in /root and /srv are invisible"; else ok "host files in /root and /srv are invisible"; fi
rm -f "/root/$marker" "/srv/$marker"

# workspace ownership round trip
sb exec "$id" -- sh -c 'echo hello > /workspace/from-agent; mkdir -p /workspace/d/e; touch /workspace/d/e/f'
expect_eq "a file written in /workspace is owned by the workspace owner on the host" \
  "$TEST_UID:$TEST_GID" "$(stat -c %u:%g "$WS/from-agent")"
expect_eq "nested dirs too" "$TEST_UID" "$(stat -c %u "$WS/d/e/f")"
touch "$WS/from-host"; chown "$TEST_UID:$TEST_GID" "$WS/from-host"
expect_eq "a host file of the owner is the agent's inside" "agent" "$(sb exec "$id" -- stat -c %U /workspace/from-host)"

# host uid of sandbox processes
tag=31.$RANDOM
sb exec "$id" --detach -- sleep "$tag" >/dev/null
sleep 0.3
huid=$(ps -eo uid=,args= | awk -v t="sleep $tag" '$0 ~ t {print $1; exit}')
if [ -n "$huid" ] && [ "$huid" != 0 ] && [ "$huid" != "$TEST_UID" ]; then
  ok "sandbox processes run as host uid $huid (neither root nor the peer)"; else not_ok "host uid of a sandbox process is '$huid'"; fi
expect_match "uid_map maps 0 to a range that is not root" '^ *0 +[1-9][0-9]+ +65536' "$(sb exec "$id" -- cat /proc/self/uid_map)"

# writes to the system land in the upper layer only (--root), and go with the sandbox
before=$(stat -c %Y /usr/bin 2>/dev/null)
check "--root can write to /usr (lands in the upper layer)" sb exec "$id" --root -- sh -c 'echo x > /usr/ns-upper-probe && cat /usr/ns-upper-probe'
check "--root can write to /etc" sb exec "$id" --root -- sh -c 'echo y > /etc/ns-upper-probe'
if [ -e /usr/ns-upper-probe ] || [ -e /etc/ns-upper-probe ]; then not_ok "the host's /usr and /etc are unchanged"; else ok "the host's /usr and /etc are unchanged"; fi
expect_eq "/usr mtime unchanged on the host" "$before" "$(stat -c %Y /usr/bin)"
rst=$(sb exec "$id" --root -- cat /proc/self/status)
expect_eq "--root CapEff is exactly Docker's default set" "00000000a00405fb" "$(printf '%s\n' "$rst" | awk '$1=="CapEff:"{print $2}')"
expect_eq "--root CapBnd is exactly Docker's default set" "00000000a00405fb" "$(printf '%s\n' "$rst" | awk '$1=="CapBnd:"{print $2}')"
expect_eq "--root is uid 0 inside" "0" "$(sb exec "$id" --root -- id -u)"
expect_eq "root-owned host files belong to root inside" "root" "$(sb exec "$id" -- stat -c %U /usr/bin/env)"
sb destroy "$id" >/dev/null
# The upper layer goes once init is dead, just after destroy replies (the warm pool's stay).
for _ in $(seq 1 50); do [ -e "$NS_TMP/upper/$id" ] || break; sleep 0.1; done
if [ -e "$NS_TMP/upper/$id" ]; then not_ok "destroy removed the upper layer"; else ok "destroy removed the upper layer"; fi

# /usr stays a read-only bind of the host's until a --root exec needs it writable: that exec
# stacks the overlay (once), under processes already running, and after a restart of the daemon
# it is found in place rather than stacked again.
usr_fs() { sb exec "$1" -- sh -c 'sed -n "s|^[0-9]* [0-9]* [^ ]* [^ ]* /usr [^-]*- \([^ ]*\) .*|\1|p" /proc/self/mountinfo | tail -n 1'; }
usr_mounts() { sb exec "$1" -- sh -c 'grep -c "^[0-9]* [0-9]* [^ ]* [^ ]* /usr " /proc/self/mountinfo'; }
id=$(sb create --workspace "$WS")
fs=$(usr_fs "$id")
if [ -n "$fs" ] && [ "$fs" != overlay ]; then ok "a new sandbox's /usr is a bind ($fs), no overlay"; else not_ok "a new sandbox's /usr is '$fs'"; fi
expect_match "the agent gets EROFS writing /usr then" 'Read-only file system' "$(sb exec "$id" -- sh -c 'echo x > /usr/ns-lazy' 2>&1)"
sb exec "$id" --detach -- sh -c 'while [ ! -e /usr/ns-lazy ]; do sleep 0.05; done; cat /usr/ns-lazy > /tmp/seen' >/dev/null
check "the first --root exec can write /usr" sb exec "$id" --root -- sh -c 'echo lazy > /usr/ns-lazy'
expect_eq "/usr is an overlay from then on" "overlay" "$(usr_fs "$id")"
for _ in $(seq 1 50); do [ "$(sb exec "$id" -- cat /tmp/seen 2>/dev/null)" = lazy ] && break; sleep 0.1; done
expect_eq "a process started before it sees the write" "lazy" "$(sb exec "$id" -- cat /tmp/seen 2>/dev/null)"
check "a second --root exec finds the same overlay" sb exec "$id" --root -- sh -c 'grep -qx lazy /usr/ns-lazy && echo more >> /usr/ns-lazy'
expect_eq "no second overlay stacked" "2" "$(usr_mounts "$id")"
expect_eq "the agent still cannot write /usr" "denied" "$(sb exec "$id" -- sh -c 'echo x >> /usr/ns-lazy 2>/dev/null && echo written || echo denied')"
kill -KILL "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null
start_daemon
check "after a daemon restart, --root still writes the same /usr" sb exec "$id" --root -- sh -c 'grep -qx more /usr/ns-lazy && echo again >> /usr/ns-lazy'
expect_eq "and nothing more is stacked" "2" "$(usr_mounts "$id")"
if [ -e /usr/ns-lazy ]; then not_ok "the host's /usr is unchanged"; else ok "the host's /usr is unchanged"; fi
expect_eq "its upper holds the write" "lazy more again" "$(tr '\n' ' ' < "$NS_TMP/upper/$id/usr/upper/ns-lazy" | sed 's/ $//')"
sb destroy "$id" >/dev/null

# a new sandbox does not see the previous one's writes
expect_eq "a new sandbox starts clean" "absent" "$(sb run -- sh -c 'test -e /usr/ns-upper-probe && echo present || echo absent')"

# stdio: stdin relayed, a pty on request
expect_eq "stdin reaches the process" "hello" "$(echo hello | sb run -- cat)"
expect_eq "--tty gives a pty inside" "/dev/pts/0" "$(sb run --tty -- tty </dev/null | tr -d '\r')"
expect_eq "stdout and stderr stay apart" "out" "$(sb run -- sh -c 'echo out; echo err >&2' 2>/dev/null)"

# refusals
mkdir -p "$NS_TMP/ws/rootws"
if sb create --workspace "$NS_TMP/ws/rootws" >/dev/null 2>&1; then not_ok "a root-owned workspace is refused"; else ok "a root-owned workspace is refused"; fi
tap_done
