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
sv_setup --debug >/dev/null || exit 2 # the phase timings below come from its debug log

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

# Interleaved, one session then one `git worktree add`, so that both see the same moment of a
# machine whose file-creation speed drifts (on the development VM, creating 2,000 small files
# takes anywhere from 300 to 1,000 ms from one minute to the next).
ns_times=(); wt_times=()
for i in $(seq 1 "$RUNS"); do
  t0=${EPOCHREALTIME/./}000 # a builtin: no process start inside the timed span
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"date +%s%N > .started\",\"once\":true}")
  sid=$(jget "${r#* }" 'd["id"]')
  wait_state "$sid" completed failed >/dev/null
  t1=$(cat "$SV_WS/$sid/.started" 2>/dev/null) || { echo "session-start: session $sid did not run" >&2; exit 2; }
  ns_times+=("$(( (t1 - t0) / 1000 ))")
  d=$NS_TMP/src/wt$i
  t0=${EPOCHREALTIME/./}000
  as_user env HOME="$NS_TMP" XDG_CONFIG_HOME="$NS_TMP" git -C "$R" worktree add -q "$d" -b "wt$i" main
  t1=${EPOCHREALTIME/./}000
  wt_times+=("$(( (t1 - t0) / 1000 ))")
done
ns_med=$(printf '%s\n' "${ns_times[@]}" | awk '{print $1/1000}' | median)
wt_med=$(printf '%s\n' "${wt_times[@]}" | awk '{print $1/1000}' | median)
diff_med=$(for i in "${!ns_times[@]}"; do echo "$(( ns_times[i] - wt_times[i] ))"; done | awk '{print $1/1000}' | median)
printf '%-48s %10s ms\n' "nightshift create → agent running (median)" "$ns_med" \
  "git worktree add, same repo (median)" "$wt_med" "  pairwise difference, session − worktree (median)" "$diff_med"
# Where the nightshift time went, from the supervisor's debug log (medians over the runs).
$PY - "$NS_TMP/nightshift.log" <<'PY'
import re, statistics, sys
log = open(sys.argv[1], errors="replace").read()
fetch = [float(x) for x in re.findall(r"fetched in ([0-9.]+) ms", log)]
prov = re.findall(r"provisioned in ([0-9.]+) ms \(settings and working tree ([0-9.]+), sandbox ([0-9.]+), setup ([0-9.]+)\)", log)
if fetch:
    print(f"  mirror fetch (median)                          {statistics.median(fetch):10.1f} ms")
for i, name in enumerate(["provisioning", "  working tree", "  sandbox", "  setup"]):
    if prov:
        print(f"  {name:<46} {statistics.median(float(p[i]) for p in prov):10.1f} ms")
PY
sv_stop
if $PY -c "import sys; sys.exit(0 if $ns_med <= $wt_med + 15 else 1)"; then
  echo "PASS: $ns_med ms ≤ $wt_med ms + 15 ms"; exit 0
else
  echo "FAIL: $ns_med ms > $wt_med ms + 15 ms"; exit 1
fi
