#!/usr/bin/env bash
# The real agent CLIs through `nightshift serve`: a claude (codex, opencode) session against the
# scripted model server on host loopback, reached through `connect`: the agent writes a file with
# its own tool and runs a shell command, the events hold its text, tool_call and tool_result, the
# commit reaches the mirror, a follow-up resumes the same agent session, and an interrupt during a
# long shell tool ends the turn, keeps the session and leaves no process behind.
. "$(dirname "$0")/sv_lib.sh"
AGENTS_DIR=${NS_AGENTS_DIR:-/var/lib/nightshift/agents}
clis=()
for c in ${NS_AGENT_CLIS:-claude codex opencode}; do
  if [ -x "$AGENTS_DIR/bin/$c" ]; then clis+=("$c"); else echo "# SKIP $c not installed: run rootfs/agents/install.sh"; fi
done
[ "${#clis[@]}" -gt 0 ] || { echo "1..0 # SKIP no agent CLI installed: run rootfs/agents/install.sh"; exit 77; }
export NS_DAEMON_ARGS="--ro-root $AGENTS_DIR" SV_AGENTS_DIR=$AGENTS_DIR
sv_setup
$PY "$NS_SRC/tests/helpers/model_server.py" --port 0 --log "$NS_TMP/model.jsonl" >"$NS_TMP/ms.out" 2>"$NS_TMP/ms.err" &
MS_PID=$!
trap 'kill $MS_PID 2>/dev/null; sv_stop; sv_log_tail; ns_cleanup' EXIT
PORT=
for _ in $(seq 1 100); do PORT=$(head -n1 "$NS_TMP/ms.out" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.05; done
[ -n "$PORT" ] || { echo "1..0 # SKIP model server did not start"; exit 1; }
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
M=$(mirror_of "$repo_id")
env_json="{\"ANTHROPIC_BASE_URL\":\"http://127.0.0.1:$PORT\",\"ANTHROPIC_API_KEY\":\"placeholder\",\"OPENAI_BASE_URL\":\"http://127.0.0.1:$PORT/v1\",\"OPENAI_API_KEY\":\"placeholder\"}"
for cli in "${clis[@]}"; do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"$cli\",\"prompt\":\"create hello.txt\",\"env\":$env_json,\"connect\":[$PORT],\"limits\":{\"memory\":4294967296,\"pids\":2048}}")
  sid=$(jget "${r#* }" 'd["id"]')
  expect_eq "$cli: the turn ends idle" idle "$(WAIT_S=120 wait_state "$sid" idle failed)"
  ev=$(events "$sid")
  for t in message tool_call tool_result commit; do
    expect_match "$cli: events hold a $t" "\"type\": \"$t\"" "$ev"
  done
  check "$cli: the agent's file is committed on nightshift/<id>" git -C "$M" cat-file -e "nightshift/$sid:hello.txt"
  api POST "/api/v1/sessions/$sid/prompts" '{"text":"create second.txt"}' >/dev/null
  sleep 0.5
  expect_eq "$cli: the follow-up ends idle" idle "$(WAIT_S=120 wait_state "$sid" idle failed)"
  check "$cli: the follow-up's file is committed too" git -C "$M" cat-file -e "nightshift/$sid:second.txt"
  expect_eq "$cli: the follow-up resumed the agent's own session" 1 \
    "$($PY - "$NS_TMP/model.jsonl" <<'PY'
import json, sys
# the second turn's requests carry the first turn's conversation: the agent resumed it
reqs = [json.loads(l) for l in open(sys.argv[1])]
bodies = [r.get("body") or {} for r in reqs if r.get("method") == "POST"]
texts = [json.dumps(b) for b in bodies]
print(1 if any("create second.txt" in t and "create hello.txt" in t for t in texts) else 0)
PY
)"
  : > "$NS_TMP/model.jsonl"
  api POST "/api/v1/sessions/$sid/prompts" '{"text":"runsleep"}' >/dev/null
  # up to 60 s: under the sanitizer build a CLI can take that long to get to its tool
  for _ in $(seq 1 600); do pgrep -f 'sleep 30[0]' >/dev/null && break; sleep 0.1; done
  check "$cli: the long shell tool runs" pgrep -f 'sleep 30[0]'
  r=$(api POST "/api/v1/sessions/$sid/interrupt")
  expect_eq "$cli: interrupt is accepted" 200 "${r%% *}"
  expect_eq "$cli: the interrupted turn ends and the session stays" idle "$(WAIT_S=60 wait_state "$sid" idle failed)"
  # Looked for inside the session's own sandbox (its pid namespace), so that nothing else on the
  # host can be mistaken for a leftover; its init is the only process allowed to remain.
  sbx=$(jget "$(api GET "/api/v1/sessions/$sid" | cut -d' ' -f2-)" 'd["sandbox"]')
  left=$(sb exec "$sbx" -- /bin/sh -c 'for p in /proc/[0-9]*; do p=${p#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] || cat "/proc/$p/cmdline" 2>/dev/null | tr "\0" " "; echo; done' | grep -v '^ *$')
  expect_eq "$cli: no process of the interrupted turn is left in the sandbox" "" "$left"
  api POST "/api/v1/sessions/$sid/complete" >/dev/null
  wait_state "$sid" completed >/dev/null
done
sv_stop
tap_done
