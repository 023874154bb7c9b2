#!/usr/bin/env bash
# Resource limits: pids, memory (OOM reported), cpu quota, freeze/thaw, timeouts.
. "$(dirname "$0")/lib.sh"
ns_setup
note "cgroups: $(sb version --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"])')"

# fork bomb stops at the pids limit; the host stays responsive.  Its processes keep forking (and
# retry when refused), so that it presses on the limit for as long as it lives: dash's classic
# `f() { f | f & }; f` exits on its first refused fork, and on a fast machine it has burnt out
# to nothing before the count is read.
id=$(sb create --pids 64)
sb exec "$id" --detach -- python3 -c '
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.05)' >/dev/null
sleep 2
cur=$(sb stats "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pids"]["current"])')
if [ "$cur" -le 64 ] && [ "$cur" -ge 32 ]; then ok "a fork bomb stops at the pids limit ($cur processes)"; else not_ok "fork bomb: $cur processes"; fi
t0=$(date +%s%N); sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done'; t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
if [ "$ms" -lt 1000 ]; then ok "the host stays responsive (10 forks+execs in $ms ms)"; else not_ok "host slow: $ms ms"; fi
t0=$(date +%s%N); sb destroy "$id" >/dev/null; t1=$(date +%s%N)
ok "the bombed sandbox is destroyed in $(( (t1 - t0) / 1000000 )) ms"

# memory: twice the limit → OOM-killed and reported, inside only
out=$(sb run --memory 64M -- python3 -c 'b = b"x" * (128 * 1024 * 1024); print(len(b))' 2>&1); rc=$?
expect_eq "allocating twice the memory limit is killed (137)" "137" "$rc"
expect_match "and reported as out of memory" "out of memory" "$out"
check "sandboxd survives the OOM" kill -0 "$NS_DAEMON_PID"
check "a sandbox under the limit is fine" sb run --memory 64M -- python3 -c 'b = b"x" * (16 * 1024 * 1024)'
# The OOM killer can choose every process of a sandbox: none is exempt (oom_score_adj 0) and none
# can make itself so (its floor is 0: lowering it is refused), whatever the daemon runs with.
# Only a root with CAP_SYS_RESOURCE could have made init's children exempt before; this machine's
# may lack it, in which case the check shows the same answer either way.
grep -q '^CapEff:.*' /proc/self/status && \
  [ $(( 0x$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24 & 1 )) = 1 ] || note "this root lacks CAP_SYS_RESOURCE: an exempt init could not have been made here"
expect_eq "sandbox processes: oom_score_adj 0, and lowering it is refused (agent and --root)" "0 refused 0 refused" \
  "$(sb run -- sh -c 'cat /proc/self/oom_score_adj; echo -1 2>/dev/null > /proc/self/oom_score_adj && echo lowered || echo refused' | tr '\n' ' ')$(sb run --root -- sh -c 'cat /proc/self/oom_score_adj; echo -1 2>/dev/null > /proc/self/oom_score_adj && echo lowered || echo refused' | tr '\n' ' ' | sed 's/ $//')"

# cpu quota: a busy loop under --cpus 0.5 uses about half a core
id=$(sb create --cpus 0.5)
sb exec "$id" --detach -- sh -c 'while :; do :; done' >/dev/null
sleep 0.5
u0=$(sb stats "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu"]["usage_usec"])')
sleep 3
u1=$(sb stats "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu"]["usage_usec"])')
pct=$(( (u1 - u0) / 30000 ))
if [ "$pct" -ge 35 ] && [ "$pct" -le 65 ]; then ok "--cpus 0.5 uses about half a core ($pct%)"; else not_ok "--cpus 0.5 used $pct% of a core"; fi
sb destroy "$id" >/dev/null

# the counter file is rewritten by the sandbox; a read can catch it empty
counter() { local v=; for _ in 1 2 3 4 5 6 7 8 9 10; do v=$(cat "$WS/counter" 2>/dev/null); [ -n "$v" ] && break; sleep 0.05; done; echo "${v:-0}"; }
# freeze stops a counter, thaw resumes it
id=$(sb create --workspace "$WS")
sb exec "$id" --detach -- sh -c 'i=0; while :; do i=$((i+1)); echo $i > /workspace/counter; sleep 0.01; done' >/dev/null
sleep 0.5
check "freeze" sb freeze "$id"
a=$(counter); sleep 0.6; b=$(counter)
expect_eq "a frozen sandbox's counter does not move" "$a" "$b"
expect_eq "stats say frozen" "True" "$(sb stats "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["frozen"])')"
check "thaw" sb thaw "$id"
sleep 0.5; c=$(counter)
if [ "$c" -gt "$b" ]; then ok "thaw resumes it ($b → $c)"; else not_ok "thaw did not resume ($b → $c)"; fi
sb destroy "$id" >/dev/null

# timeout kills the command and says so
t0=$(date +%s%N)
out=$(sb run --timeout 1 -- sleep 30 2>&1); rc=$?
t1=$(date +%s%N)
expect_eq "a timed-out command is killed (137)" "137" "$rc"
expect_match "and the CLI says it timed out" "timed out" "$out"
ms=$(( (t1 - t0) / 1000000 ))
if [ "$ms" -lt 5000 ]; then ok "within about the timeout ($ms ms)"; else not_ok "timeout took $ms ms"; fi

# disk: filling a --disk limit gives ENOSPC inside and nothing outside
loops_before=$(losetup -a | wc -l)
out=$(sb run --disk 64M -- sh -c 'dd if=/dev/zero of=/var/tmp/fill bs=1M count=200 2>&1; echo; df -k / | tail -1' 2>&1)
expect_match "filling the disk limit gives ENOSPC inside" "No space left on device" "$out"
size=$(printf '%s\n' "$out" | awk 'END{print $2}')
if [ -n "$size" ] && [ "$size" -le 65536 ]; then ok "the root filesystem inside is the limit's size (${size} KiB)"; else not_ok "root size inside: '$size'"; fi
# Gone once init is dead, just after the reply; the warm pool's own upper dirs stay.
nonpool_upper() {
  local f id; for f in "$NS_TMP"/upper/*; do
    [ -e "$f" ] || continue; id=$(basename "$f"); id=${id%.img}
    grep -qs '"pool":true' "$NS_TMP/state/sandboxes/$id.json" || echo "$f"
  done
}
for _ in $(seq 1 50); do [ -z "$(nonpool_upper)" ] && [ "$(losetup -a | wc -l)" = "$loops_before" ] && break; sleep 0.1; done
expect_eq "the upper-layer filesystem is gone with the sandbox" "" "$(nonpool_upper)"
expect_eq "its loop device is released" "$loops_before" "$(losetup -a | wc -l)"
if grep -q "$NS_TMP" /proc/self/mountinfo; then not_ok "no mount of it is visible on the host"; else ok "no mount of it is visible on the host"; fi

# exit codes and signals
sb run -- sh -c 'exit 7'; expect_eq "exit code is passed through" "7" "$?"
sb run -- sh -c 'kill -TERM $$'; expect_eq "death by signal N gives 128+N" "143" "$?"
tap_done
