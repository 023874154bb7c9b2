#!/usr/bin/env bash
# Session start latency, in one run, on a 2,000-file repository:
#   (a) nightshift: from the POST /api/v1/sessions call to the agent process running in its
#       sandbox (the `command` agent's first action records the wall clock; the sandbox shares the
#       host's clock), median of RUNS sessions.  This covers validation, the mirror fetch, the
#       working tree with its private git dir, the sandbox, and the exec.
#   (b) `git worktree add` of the same repository (median of RUNS).
# Target: (a) ≤ (b) + 15 ms.
#
# Runs a private sandboxd and `nightshift serve` (as the unprivileged user nightshift-test, like
# the integration tests) from $NS_BUILD/bin (default ./build), and removes everything at the end.
# Needs root, git, curl, python3.  Exit: 0 PASS, 1 FAIL, 2 could not run.
#
#   sudo bench/session-start.sh            # RUNS=15 FILES=2000
set -uo pipefail
RUNS=${RUNS:-15}
FILES=${FILES:-2000}
NS_BUILD=$(realpath "${NS_BUILD:-./build}")
export NS_BUILD
. "$(dirname "$0")/../tests/integration/sv_lib.sh"
[ "$(id -u)" = 0 ] || { echo "session-start: run as root" >&2; exit 2; }
sv_setup >/dev/null || exit 2

R=$NS_TMP/src/big
mkdir -p "$R"; chown "$TEST_UID:$TEST_GID" "$R"
as_user $PY - "$R" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"dir{i % 50:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.txt"), "w") as f:
        f.write(f"line {i}\n" * 20)
PY
as_user git -C "$R" init -q -b main
as_user git -C "$R" add -A
as_user git -C "$R" -c user.name=b -c user.email=b@b commit -qm files
r=$(api POST /api/v1/repos "{\"path\":\"$R\"}")
repo_id=$(jget "${r#* }" 'd["id"]') || { echo "session-start: cannot register the repo: $r" >&2; exit 2; }

median() { sort -n | $PY -c 'import sys,statistics; v=[float(l) for l in sys.stdin]; print(f"{statistics.median(v):.1f}")'; }

ns_times=()
for i in $(seq 1 "$RUNS"); do
  t0=$($PY -c 'import time; print(time.time_ns())')
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"date +%s%N > .started\",\"once\":true}")
  sid=$(jget "${r#* }" 'd["id"]')
  wait_state "$sid" completed failed >/dev/null
  t1=$(cat "$SV_WS/$sid/.started" 2>/dev/null) || { echo "session-start: session $sid did not run" >&2; exit 2; }
  ns_times+=("$(( (t1 - t0) / 1000 ))")
done
wt_times=()
for i in $(seq 1 "$RUNS"); do
  d=$NS_TMP/src/wt$i
  t0=$($PY -c 'import time; print(time.time_ns())')
  as_user git -C "$R" worktree add -q "$d" -b "wt$i" main
  t1=$($PY -c 'import time; print(time.time_ns())')
  wt_times+=("$(( (t1 - t0) / 1000 ))")
done
ns_med=$(printf '%s\n' "${ns_times[@]}" | awk '{print $1/1000}' | median)
wt_med=$(printf '%s\n' "${wt_times[@]}" | awk '{print $1/1000}' | median)
printf '%-48s %10s ms\n' "nightshift create → agent running (median)" "$ns_med" \
  "git worktree add, same repo (median)" "$wt_med"
sv_stop
if $PY -c "import sys; sys.exit(0 if $ns_med <= $wt_med + 15 else 1)"; then
  echo "PASS: $ns_med ms ≤ $wt_med ms + 15 ms"; exit 0
else
  echo "FAIL: $ns_med ms > $wt_med ms + 15 ms"; exit 1
fi
