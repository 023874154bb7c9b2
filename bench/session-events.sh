#!/usr/bin/env bash
# Event throughput: SESSIONS sessions at once, each agent emitting RATE events/s for SECONDS s
# (`command` agent printing one line per millisecond-ish tick; every read chunk becomes one
# command_output event).  Checks that every line was persisted and delivered (read back through
# the API), and measures the supervisor's CPU time over the run (utime + stime of its process).
# Target: all delivered; supervisor CPU ≤ 50% of one core.
#
#   sudo bench/session-events.sh            # SESSIONS=20 RATE=1000 SECONDS_=10
set -uo pipefail
SESSIONS=${SESSIONS:-20}
RATE=${RATE:-1000}
SECS=${SECONDS_:-10}
NS_BUILD=$(realpath "${NS_BUILD:-./build}")
export NS_BUILD
. "$(dirname "$0")/../tests/integration/sv_lib.sh"
[ "$(id -u)" = 0 ] || { echo "session-events: run as root" >&2; exit 2; }
sv_setup --max-concurrent "$SESSIONS" >/dev/null || exit 2
make_repo "$NS_TMP/src/app"
cp "$(dirname "$0")/emit.py" "$NS_TMP/src/app/emit.py"
chown "$TEST_UID:$TEST_GID" "$NS_TMP/src/app/emit.py"
as_user git -C "$NS_TMP/src/app" add emit.py
as_user git -C "$NS_TMP/src/app" -c user.name=b -c user.email=b@b commit -qm emit
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
N=$((RATE * SECS))
cpu() { awk '{print $14+$15}' "/proc/$SV_PID/stat"; }
hz=$(getconf CLK_TCK)
c0=$(cpu); t0=$($PY -c 'import time; print(time.monotonic())')
ids=()
for i in $(seq 1 "$SESSIONS"); do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"python3 emit.py $N $RATE\",\"once\":true}")
  ids+=("$(jget "${r#* }" 'd["id"]')")
done
for sid in "${ids[@]}"; do WAIT_S=300 wait_state "$sid" completed failed >/dev/null; done
c1=$(cpu); t1=$($PY -c 'import time; print(time.monotonic())')
missing=0
for sid in "${ids[@]}"; do
  got=$(output_of "$sid" | grep -c '^ev-')
  [ "$got" = "$N" ] || { echo "session $sid: $got of $N lines delivered"; missing=1; }
done
events_total=$(for sid in "${ids[@]}"; do events "$sid" | grep -c command_output; done | awk '{s+=$1} END {print s}')
wall=$($PY -c "print(f'{$t1-$t0:.1f}')")
cpu_pct=$($PY -c "print(f'{100*($c1-$c0)/$hz/($t1-$t0):.1f}')")
printf '%-44s %s\n' "sessions × lines" "$SESSIONS × $N" "command_output events stored" "$events_total" \
  "wall time (s)" "$wall" "supervisor CPU (% of one core)" "$cpu_pct"
sv_stop
if [ "$missing" = 0 ] && $PY -c "import sys; sys.exit(0 if $cpu_pct <= 50 else 1)"; then echo PASS; exit 0; fi
echo FAIL; exit 1
