#!/usr/bin/env bash
# The real agent CLIs (Claude Code, Codex, OpenCode, as rootfs/agents/install.sh installs them)
# inside real nightshift sandboxes, driven by tests/helpers/model_server.py on the host's loopback
# through a `connect` port.  Each CLI runs exactly as its adapter's build_turn says (argv, env and
# stdin from tests/helpers/agent_probe), with the agent layer bound read-only, as the agent user,
# and its output goes through the adapter's parser.  Per CLI: "create hello.txt" writes the file
# (on the host: owned by the workspace's owner) and gives tool_call/tool_result/message events; a
# follow-up resumes the agent's own session by the reference the parser reported; claude and codex
# are interrupted by SIGINT during a tool.  The sandboxes have no network but loopback.
#
# NS_AGENTS_DIR overrides the agent layer (default /var/lib/nightshift/agents); NS_AGENT_CLIS
# picks the CLIs to try (default "claude codex opencode").
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AGENTS_DIR=${NS_AGENTS_DIR:-/var/lib/nightshift/agents}
AGENT_MNT=/opt/nightshift/agents # where the layer appears inside
PROBE=$HELPERS/agent_probe
MODEL_SERVER=$NS_SRC/tests/helpers/model_server.py

require_root
[ -x "$SANDBOXD" ] && [ -x "$SANDBOX" ] && [ -x "$PROBE" ] ||
  { echo "1..0 # SKIP binaries not built in $NS_BUILD"; exit 77; }
[ -x /usr/bin/python3 ] || { echo "1..0 # SKIP /usr/bin/python3 missing"; exit 77; }
clis=()
for c in ${NS_AGENT_CLIS:-claude codex opencode}; do
  if [ -x "$AGENTS_DIR/bin/$c" ]; then clis+=("$c"); else echo "# SKIP $c not installed: run rootfs/agents/install.sh"; fi
done
[ "${#clis[@]}" -gt 0 ] || { echo "1..0 # SKIP no agent CLI installed: run rootfs/agents/install.sh"; exit 77; }

# ns_setup, with the agent layer as a read-only root of the daemon.
ensure_test_user
NS_TMP=$(mktemp -d /tmp/ns-it.XXXXXX)
chmod 755 "$NS_TMP"
NS_SOCK=$NS_TMP/sandboxd.sock
mkdir -p "$NS_TMP/ws" "$NS_TMP/ro"
MS_PID=
cleanup() {
  [ -n "$MS_PID" ] && kill "$MS_PID" 2>/dev/null && wait "$MS_PID" 2>/dev/null
  ns_cleanup
}
trap cleanup EXIT
start_daemon --ro-root "$AGENTS_DIR" || { echo "1..0 # SKIP daemon failed"; exit 1; }

# The scripted model server on 127.0.0.1, port picked by the kernel.
/usr/bin/python3 "$MODEL_SERVER" --port 0 --log "$NS_TMP/model_requests.jsonl" >"$NS_TMP/ms.out" 2>"$NS_TMP/ms.err" &
MS_PID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(head -n1 "$NS_TMP/ms.out" 2>/dev/null)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "1..0 # SKIP model server did not start: $(cat "$NS_TMP/ms.err")"; exit 1; }
note "model server on 127.0.0.1:$PORT"

# The variables the session runner adds: base URLs of the model-API proxy and placeholder keys.
session_env=(--env "ANTHROPIC_BASE_URL=http://127.0.0.1:$PORT" --env "ANTHROPIC_API_KEY=placeholder"
  --env "OPENAI_BASE_URL=http://127.0.0.1:$PORT/v1" --env "OPENAI_API_KEY=placeholder")

# turn CLI SANDBOX NAME PROMPT [RESUME_REF]: run one turn as build_turn says; leaves
# $NS_TMP/NAME.{out,err,events} and sets TURN_RC.
turn() {
  local cli=$1 id=$2 name=$3 prompt=$4 ref=${5:-} d=$NS_TMP/$3.cmd
  mkdir -p "$d"
  "$PROBE" turn "$cli" "$d" "$prompt" "$AGENT_MNT" /workspace "" "$ref" || return 1
  local -a argv env=()
  mapfile -d '' argv <"$d/argv"
  mapfile -d '' envs <"$d/env"
  for e in "${envs[@]}"; do env+=(--env "$e"); done
  sb exec "${env[@]}" "${session_env[@]}" --timeout 90 "$id" -- "${argv[@]}" \
    <"$d/stdin" >"$NS_TMP/$name.out" 2>"$NS_TMP/$name.err"
  TURN_RC=$?
  "$PROBE" parse "$cli" "$TURN_RC" 0 <"$NS_TMP/$name.out" >"$NS_TMP/$name.events"
}

# show NAME: the tail of a turn's output, for a failure
show() {
  note "exit $TURN_RC; stderr:"; tail -n 5 "$NS_TMP/$1.err" | sed 's/^/#   /'
  note "events:"; cut -c1-200 "$NS_TMP/$1.events" | tail -n 12 | sed 's/^/#   /'
}

events_have() { grep -q "^EVENT $2 " "$NS_TMP/$1.events"; }

for cli in "${clis[@]}"; do
  t0=$(date +%s)
  WS=$NS_TMP/ws/$cli
  mkdir -p "$WS"; chown "$TEST_UID:$TEST_GID" "$WS"
  id=$(sb create --workspace "$WS" --connect "$PORT" --ro-bind "$AGENTS_DIR:$AGENT_MNT" --memory 4G --pids 2048) ||
    { not_ok "$cli: sandbox created"; continue; }

  turn "$cli" "$id" "$cli-1" "create hello.txt"
  ev=$NS_TMP/$cli-1.events
  if [ "$TURN_RC" = 0 ] && grep -q '^OUTCOME ok' "$ev"; then ok "$cli: 'create hello.txt' turn exits 0, outcome ok"
  else not_ok "$cli: 'create hello.txt' turn exits 0, outcome ok"; show "$cli-1"; fi
  owner=$(stat -c %u "$WS/hello.txt" 2>/dev/null)
  expect_eq "$cli: hello.txt in the workspace on the host, owned by the workspace's owner" "$TEST_UID" "$owner"
  expect_eq "$cli: hello.txt has the model's content" "hello from model_server" "$(cat "$WS/hello.txt" 2>/dev/null)"
  if events_have "$cli-1" tool_call && events_have "$cli-1" tool_result && events_have "$cli-1" message &&
    grep -q '^EVENT tool_result .*hello.txt' "$ev" && grep -q '^EVENT message .*Done: created hello.txt' "$ev"; then
    ok "$cli: output parses to tool_call, tool_result (ls shows hello.txt) and message events"
  else not_ok "$cli: output parses to tool_call, tool_result and message events"; show "$cli-1"; fi
  ref=$(sed -n 's/^REF //p' "$ev" | head -n1)
  expect_match "$cli: the agent's session reference is reported" '^[A-Za-z0-9_-]+$' "$ref"

  # A follow-up in the same sandbox resumes that session.
  if [ -n "$ref" ]; then
    turn "$cli" "$id" "$cli-2" "create second.txt" "$ref"
    ref2=$(sed -n 's/^REF //p' "$NS_TMP/$cli-2.events" | head -n1)
    if [ "$TURN_RC" = 0 ] && [ -f "$WS/second.txt" ] && [ "$ref2" = "$ref" ]; then
      ok "$cli: the follow-up resumes the same session and writes second.txt"
    else not_ok "$cli: the follow-up resumes the same session (ref '$ref' → '$ref2')"; show "$cli-2"; fi
  else skip "$cli: follow-up (no reference)"; fi

  # Interrupt: SIGINT to the exec client is forwarded to the agent while its shell tool sleeps.
  if [ "$cli" != opencode ]; then
    d=$NS_TMP/$cli-3.cmd; mkdir -p "$d"
    "$PROBE" turn "$cli" "$d" "runsleep" "$AGENT_MNT" /workspace
    mapfile -d '' argv <"$d/argv"; mapfile -d '' envs <"$d/env"; env=()
    for e in "${envs[@]}"; do env+=(--env "$e"); done
    # Not through as_user: $! must be the client itself, not a subshell.  A script's background
    # job starts with SIGINT ignored: env gives the client its default back.
    setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --clear-groups -- \
      env --default-signal=INT "$SANDBOX" --socket "$NS_SOCK" exec "${env[@]}" "${session_env[@]}" --timeout 60 "$id" -- "${argv[@]}" \
      <"$d/stdin" >"$NS_TMP/$cli-3.out" 2>"$NS_TMP/$cli-3.err" &
    xpid=$!
    for _ in $(seq 1 150); do grep -q 'sleep 300' "$NS_TMP/$cli-3.out" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    kill -INT "$xpid"
    ts=$(date +%s); wait "$xpid"; TURN_RC=$?; te=$(date +%s)
    "$PROBE" parse "$cli" "$TURN_RC" 0 <"$NS_TMP/$cli-3.out" >"$NS_TMP/$cli-3.events"
    left=$(sb exec "$id" -- sh -c 'ps -eo args 2>/dev/null | grep -c "^sleep 300"' 2>/dev/null)
    if grep -q '^OUTCOME failed' "$NS_TMP/$cli-3.events" && [ $((te - ts)) -le 10 ]; then
      ok "$cli: SIGINT during a tool ends the turn within $((te - ts)) s, outcome failed"
    else not_ok "$cli: SIGINT ends the turn (took $((te - ts)) s)"; show "$cli-3"; fi
    expect_eq "$cli: the tool's sleep is gone after the interrupt" 0 "$left"
  fi

  sb destroy "$id" >/dev/null 2>&1
  note "$cli: $(( $(date +%s) - t0 )) s"
done

# Nothing but the model server was asked: each request is one the CLIs make of it.
paths=$(/usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)["method"], json.loads(l)["path"].split("?")[0])' \
  "$NS_TMP/model_requests.jsonl" 2>/dev/null | sort | uniq -c | sed 's/^ */#   /')
note "requests seen by the model server:"; echo "$paths"
tap_done
