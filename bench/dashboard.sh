#!/usr/bin/env bash
# The dashboard in headless chromium (playwright-core, tests/tools/install.sh): the board with
# SESSIONS sessions in the database, from navigation to every card painted (target ≤ 300 ms), and
# a session with EVENTS events, from navigation to its first timeline rows painted (target
# ≤ 500 ms) and scrolled end to end, 120 px a frame (smooth: p95 frame time ≤ 34 ms, two 60 Hz frames).
# The peer figure: the same session's rows all rendered at once (no virtualisation), same page.
# The fixture goes straight into the stopped server's database (bench/dashboard_fill.py).
#
#   sudo bench/dashboard.sh            # SESSIONS=1000 EVENTS=10000 RUNS=5
set -uo pipefail
SESSIONS=${SESSIONS:-1000}
EVENTS=${EVENTS:-10000}
NS_BUILD=$(realpath "${NS_BUILD:-./build}")
export NS_BUILD
. "$(dirname "$0")/../tests/integration/sv_lib.sh"
[ "$(id -u)" = 0 ] || { echo "dashboard: run as root" >&2; exit 2; }
TOOLS=${NS_TEST_TOOLS:-/var/lib/nightshift/test-tools}
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] && [ -d "$TOOLS/node_modules/playwright-core" ] ||
  { echo "dashboard: needs chromium and playwright-core (scripts/install-deps.sh --with-tests)" >&2; exit 2; }
sv_setup >/dev/null || exit 2
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"echo seed\",\"once\":true,\"title\":\"the long session\"}")
sid=$(jget "${r#* }" 'd["id"]')
wait_state "$sid" completed failed >/dev/null || { echo "dashboard: the seed session did not finish" >&2; exit 2; }
sv_stop
as_user $PY "$(dirname "$0")/dashboard_fill.py" "$SV_DATA/nightshift.db" "$sid" "$SESSIONS" "$EVENTS" >/dev/null ||
  { echo "dashboard: filling the database failed" >&2; exit 2; }
sv_start >/dev/null || exit 2
out=$(NS_TOOLS="$TOOLS" CHROMIUM="$CHROMIUM" NS_URL="$SV_URL/" NS_TOKEN="$SV_TOKEN" NS_SID="$sid" RUNS="${RUNS:-5}" \
  node "$(dirname "$0")/dashboard.mjs" 2>&1)
rc=$?
sv_stop
fig() { printf '%s\n' "$out" | sed -n "s/^figure $1 //p"; }
[ "$rc" = 0 ] && [ -n "$(fig board_interactive_ms)" ] || { printf '%s\n' "$out" >&2; echo FAIL; exit 1; }
printf '%-52s %s\n' \
  "board: sessions shown (in the database)" "$(fig board_cards)" \
  "board: navigation → all cards painted, median (ms)" "$(fig board_interactive_ms)" \
  "board: search keystroke → filtered and painted (ms)" "$(fig board_search_ms)" \
  "board: renderer main-thread time to that point (ms)" "$(fig board_main_thread_ms)" \
  "session: events" "$(fig session_events)" \
  "session: rows in the DOM (virtualised)" "$(fig session_rows_in_dom)" \
  "session: navigation → first rows painted, median (ms)" "$(fig session_first_paint_ms)" \
  "session: renderer main-thread time to that point (ms)" "$(fig session_main_thread_ms)" \
  "session: scroll end to end, frames" "$(fig scroll_frames)" \
  "session: scroll frame time p50 / p95 / max (ms)" "$(fig scroll_frame_p50_ms) / $(fig scroll_frame_p95_ms) / $(fig scroll_frame_max_ms)" \
  "session: frames over 50 ms while scrolling" "$(fig scroll_long_frames)" \
  "peer: all rows rendered at once (no virtualisation) (ms)" "$(fig peer_all_rows_paint_ms)" \
  "load average during the run (1 min, $(nproc) CPUs)" "$(cut -d' ' -f1 /proc/loadavg)"
pass=1
b=$(fig board_interactive_ms); s=$(fig session_first_paint_ms); p95=$(fig scroll_frame_p95_ms)
if [ "$b" -le 300 ]; then echo "PASS board interactive ≤ 300 ms"; else echo "FAIL board interactive ≤ 300 ms"; pass=0; fi
if [ "$s" -le 500 ]; then echo "PASS session first paint ≤ 500 ms"; else echo "FAIL session first paint ≤ 500 ms"; pass=0; fi
if $PY -c "import sys; sys.exit(0 if $p95 <= 34 else 1)"; then echo "PASS scrolling smooth (p95 frame ≤ 34 ms)"; else echo "FAIL scrolling smooth (p95 frame ≤ 34 ms)"; pass=0; fi
[ "$pass" = 1 ] && exit 0 || exit 1
