# Helpers for the supervisor's integration tests: a private sandboxd (lib.sh), a private
# `nightshift serve` running as the unprivileged test user, an HTTP client, git fixtures.
# shellcheck shell=bash
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NIGHTSHIFT=$NS_BUILD/bin/nightshift
PY=/usr/bin/python3
# The tests read the supervisor's mirrors as root; they belong to the test user.
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sv_setup [serve flags...]: sandboxd + nightshift serve; data beneath sandboxd's --ro-root so the
# sandboxes can bind the mirrors, working trees beneath its --workspace-root.
sv_setup() {
  [ -x "$NIGHTSHIFT" ] || { echo "1..0 # SKIP nightshift not built in $NS_BUILD"; exit 77; }
  ns_setup
  SV_DATA=$NS_TMP/ro/data
  SV_WS=$NS_TMP/ws
  mkdir -p "$SV_DATA"
  chown "$TEST_UID:$TEST_GID" "$SV_WS" "$SV_DATA"
  mkdir -p "$NS_TMP/src"; chown "$TEST_UID:$TEST_GID" "$NS_TMP/src"
  trap 'sv_stop; sv_log_tail; ns_cleanup' EXIT
  SV_FLAGS=("$@")
  # Every route but healthz needs a token: one made the way an operator makes it, on the data
  # dir before the server runs; api() and the CLI (NIGHTSHIFT_TOKEN) send it.
  SV_TOKEN=$(as_user "$NIGHTSHIFT" token create test --data-dir "$SV_DATA" 2>/dev/null) ||
    { echo "1..0 # nightshift token create failed"; exit 1; }
  export NIGHTSHIFT_TOKEN=$SV_TOKEN
  sv_start || { echo "1..0 # nightshift serve failed to start"; exit 1; }
}

sv_start() {
  SV_PORT=${SV_PORT:-$(free_port)}
  SV_URL=http://127.0.0.1:$SV_PORT
  # setpriv directly (not the as_user function, which would run in a subshell): $! must be the
  # server itself, so that SIGKILL and SIGTERM reach it.
  setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --clear-groups -- ${SV_WRAP:-} "$NIGHTSHIFT" serve --listen "127.0.0.1:$SV_PORT" --data-dir "$SV_DATA" --workspace-root "$SV_WS" \
    --sandboxd-socket "$NS_SOCK" --agents-dir "${SV_AGENTS_DIR:-$NS_TMP/ro/agents}" --preview-listen 127.0.0.1:0 "${SV_FLAGS[@]}" 2>>"$NS_TMP/nightshift.log" &
  SV_PID=$!
  for _ in $(seq 1 200); do
    curl -sf "$SV_URL/api/v1/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SV_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "# nightshift serve did not start:"; sed 's/^/#   /' "$NS_TMP/nightshift.log"
  return 1
}

sv_stop() {
  if [ -n "${SV_PID:-}" ] && kill -0 "$SV_PID" 2>/dev/null; then kill -TERM "$SV_PID"; wait "$SV_PID" 2>/dev/null; fi
  SV_PID=
}

# On failure, the server's log goes into the TAP output as comments.
sv_log_tail() {
  cp "$NS_TMP/nightshift.log" "/tmp/nightshift-$(basename "$0" .sh).log" 2>/dev/null
  if [ "${_tap_fail:-0}" != 0 ] && [ -f "$NS_TMP/nightshift.log" ]; then
    echo "# nightshift.log (last 40 lines):"; tail -n 40 "$NS_TMP/nightshift.log" | sed 's/^/#   /'
  fi
}

sv_kill() { kill -KILL "$SV_PID" 2>/dev/null; wait "$SV_PID" 2>/dev/null; SV_PID=; }

# api METHOD PATH [JSON]: prints "STATUS BODY"
api() {
  local out
  out=$(curl -s -o /dev/stdout -w '\n%{http_code}' -X "$1" -H 'Content-Type: application/json' \
        -H "Authorization: Bearer ${API_TOKEN-$SV_TOKEN}" ${3:+--data-binary "$3"} "$SV_URL$2")
  printf '%s %s' "$(printf '%s' "$out" | tail -n1)" "$(printf '%s' "$out" | sed '$d')"
}
# jget JSON EXPR: a Python expression over `d`
jget() { printf '%s' "$1" | $PY -c "import json,sys; d=json.load(sys.stdin); v=$2; print(v if not isinstance(v,(dict,list)) else json.dumps(v))"; }

# make_repo DIR: a git repository owned by the test user with one commit on main
make_repo() {
  local d=$1
  mkdir -p "$d"; chown "$TEST_UID:$TEST_GID" "$d"
  as_user env HOME="$d" git -C "$d" init -q -b main
  printf 'hello\n' > "$d/README"; chown "$TEST_UID:$TEST_GID" "$d/README"
  as_user env HOME="$d" git -C "$d" -c user.name=t -c user.email=t@t add README
  as_user env HOME="$d" git -C "$d" -c user.name=t -c user.email=t@t commit -q -m init
}

# wait_state SID STATE... [timeout via WAIT_S]: until the session is in one of the states
wait_state() {
  local sid=$1; shift
  local want=" $* " st=
  for _ in $(seq 1 $(( ${WAIT_S:-60} * 10 ))); do
    st=$(jget "$(api GET "/api/v1/sessions/$sid" | cut -d' ' -f2-)" 'd.get("state")' 2>/dev/null)
    case "$want" in *" $st "*) echo "$st"; return 0 ;; esac
    sleep 0.1
  done
  echo "$st"; return 1
}

# events SID: all events as JSON lines
events() {
  local after=0 body n
  while :; do
    body=$(api GET "/api/v1/sessions/$1/events?after=$after&limit=1000" | cut -d' ' -f2-)
    n=$(jget "$body" 'len(d["events"])' 2>/dev/null)
    case "$n" in ''|0) break ;; esac
    printf '%s' "$body" | $PY -c 'import json,sys
for e in json.load(sys.stdin)["events"]: print(json.dumps(e))'
    after=$(jget "$body" 'd["events"][-1]["seq"]')
  done
}
# output_of SID: the command_output text of the agent's turns, concatenated in order
output_of() {
  events "$1" | $PY -c 'import json,sys
sys.stdout.write("".join(e["data"].get("text","") for e in map(json.loads, sys.stdin)
                 if e["type"]=="command_output" and e["data"].get("phase")!="setup"))'
}
mirror_of() { echo "$SV_DATA/mirrors/$1.git"; }
