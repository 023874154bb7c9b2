#!/usr/bin/env bash
# The model-API proxy: the real key lives only in the vault; a session gets the proxy's base URL
# (through its connector) and a placeholder; the scripted model server (the upstream) sees the
# real key; inside the sandbox only the placeholder is visible (env, /proc/*/environ); a wrong
# placeholder is refused; streaming comes through; usage is recorded.  With the claude CLI
# installed, a claude session whose key is only in the vault completes through it.
. "$(dirname "$0")/sv_lib.sh"
AGENTS_DIR=${NS_AGENTS_DIR:-/var/lib/nightshift/agents}
HAVE_CLAUDE=
[ -x "$AGENTS_DIR/bin/claude" ] && HAVE_CLAUDE=1 && export NS_DAEMON_ARGS="--ro-root $AGENTS_DIR" SV_AGENTS_DIR=$AGENTS_DIR
sv_setup
$PY "$NS_SRC/tests/helpers/model_server.py" --port 0 --log "$NS_TMP/model.jsonl" >"$NS_TMP/ms.out" 2>"$NS_TMP/ms.err" &
MS_PID=$!
trap 'kill $MS_PID 2>/dev/null; sv_stop; sv_log_tail; ns_cleanup' EXIT
PORT=
for _ in $(seq 1 100); do PORT=$(head -n1 "$NS_TMP/ms.out" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.05; done
[ -n "$PORT" ] || { echo "1..0 # SKIP model server did not start"; exit 1; }
# The upstreams are the scripted server (a real deployment leaves the defaults: api.anthropic.com...).
sv_stop
SV_FLAGS=(--model-upstream-anthropic "http://127.0.0.1:$PORT" --model-upstream-openai "http://127.0.0.1:$PORT")
sv_start >/dev/null || { echo "1..0 # the server did not restart"; exit 1; }
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\",\"name\":\"app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
REAL=sk-ant-api03-REALkeyONLYinTHEvault-0123456789
r=$(api PUT /api/v1/secrets/ANTHROPIC_API_KEY "{\"value\":\"$REAL\"}")
expect_eq "the real key goes into the vault" 201 "${r%% *}"

# A command session looks at its own environment and calls the model API as an SDK would.
cat > "$NS_TMP/src/call.py" <<'EOF'
import os, json, urllib.request, glob
print("base", os.environ.get("ANTHROPIC_BASE_URL"))
print("key", os.environ.get("ANTHROPIC_API_KEY"))
print("openai", os.environ.get("OPENAI_BASE_URL"))
env = b""
for p in glob.glob("/proc/[0-9]*/environ"):
    try: env += open(p, "rb").read()
    except OSError: pass
print("environ-real", env.count(b"REAL" + b"key"), "environ-placeholder", env.count(b"ANTHROPIC_API_KEY=" + b"nsp-"))
body = json.dumps({"model": "claude-test", "max_tokens": 64, "stream": True,
                   "messages": [{"role": "user", "content": "hello proxy"}]}).encode()
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body, method="POST",
      headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01",
               "content-type": "application/json"})
with urllib.request.urlopen(req) as r:
    data = r.read().decode()
    print("status", r.status, r.headers.get("content-type"))
    print("streamed", data.count("event: "), "mock" in data)
EOF
body=$($PY -c 'import json,sys; print(json.dumps({"repo":sys.argv[1],"once":True,"prompt":"python3 -c \"$P\"",
  "env":{"P":open(sys.argv[2]).read(),"ANTHROPIC_API_KEY":"set-by-hand-is-dropped"}}))' "$repo_id" "$NS_TMP/src/call.py")
r=$(api POST /api/v1/sessions "$body")
sid=$(jget "${r#* }" 'd["id"]')
expect_eq "the session completes" completed "$(wait_state "$sid" completed failed)"
out=$(output_of "$sid"); printf '%s\n' "$out" | sed 's/^/# /'
expect_match "its base URL is the proxy, through the connector" '^base http://127\.0\.0\.1:[0-9]+/anthropic$' \
  "$(printf '%s\n' "$out" | grep '^base')"
expect_match "its key is the session's placeholder (the hand-set one is dropped)" "^key nsp-$sid-[0-9a-f]{32}\$" \
  "$(printf '%s\n' "$out" | grep '^key')"
expect_eq "no OpenAI variables without an OpenAI key in the vault" "openai None" "$(printf '%s\n' "$out" | grep '^openai')"
expect_match "/proc/*/environ inside: the placeholder, never the real key" 'environ-real 0 environ-placeholder [1-9]' "$out"
expect_match "the call went through: 200, an SSE stream" 'status 200 text/event-stream' "$out"
expect_match "streamed events passed through" 'streamed [1-9][0-9]* True' "$out"
seen=$($PY - "$NS_TMP/model.jsonl" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/v1/messages":
        h = {k.lower(): v for k, v in r["headers"].items()}
        print(h.get("x-api-key"), h.get("anthropic-version"))
EOF
)
expect_eq "the model server saw the real key (and the agent's other headers)" "$REAL 2023-06-01" "$(printf '%s\n' "$seen" | head -n1)"
expect_match "a usage event was recorded for the session" '"source": "model-proxy"' "$(events "$sid" | grep '"usage"')"
expect_match "inside, the proxy is at 127.0.0.1:3129 (its connector)" '^base http://127.0.0.1:3129/anthropic$' \
  "$(printf '%s\n' "$out" | grep '^base ')"
# On the host it is a Unix socket in the supervisor's private directory: no loopback port another
# local user could reach or take while the supervisor restarts.
MSOCK=$SV_DATA/sockets/model.sock
check "on the host, a socket in a directory only the supervisor enters" \
  bash -c "[ -S '$MSOCK' ] && [ \"\$(stat -c %a '$SV_DATA/sockets')\" = 700 ]"
expect_eq "a wrong placeholder is refused (401)" 401 \
  "$(curl -s --unix-socket "$MSOCK" -o /dev/null -w '%{http_code}' -X POST -H "x-api-key: nsp-$sid-00000000000000000000000000000000" \
     -H 'content-type: application/json' --data '{}' "http://localhost/anthropic/v1/messages")"
expect_eq "no key at all: 401" 401 \
  "$(curl -s --unix-socket "$MSOCK" -o /dev/null -w '%{http_code}' -X POST --data '{}' "http://localhost/anthropic/v1/messages")"
expect_eq "an unknown route: 404" 404 "$(curl -s --unix-socket "$MSOCK" -o /dev/null -w '%{http_code}' "http://localhost/elsewhere")"
expect_eq "the upstream never saw a placeholder" "" "$(grep -o 'nsp-s-[a-z0-9]*' "$NS_TMP/model.jsonl" | head -n1)"

# --- a turn that calls the model before and after a SIGKILL and restart of the supervisor -------
# Its placeholder key and its connector were made before the restart: both must still work after.
body=$($PY -c 'import json,sys; print(json.dumps({"repo":sys.argv[1],"once":True,
  "prompt":"python3 -c \"$P\"; while [ ! -e .git/go-again ]; do sleep 0.1; done; python3 -c \"$P\"",
  "env":{"P":open(sys.argv[2]).read()}}))' "$repo_id" "$NS_TMP/src/call.py")
r=$(api POST /api/v1/sessions "$body")
sid_r=$(jget "${r#* }" 'd["id"]')
for _ in $(seq 200); do output_of "$sid_r" 2>/dev/null | grep -q '^status 200' && break; sleep 0.1; done
sv_kill
sv_start >/dev/null
touch "$SV_WS/$sid_r/.git/go-again"
expect_eq "a turn across a supervisor restart completes" completed "$(wait_state "$sid_r" completed failed)"
expect_eq "  its model calls before and after the restart both went through" 2 \
  "$(output_of "$sid_r" | grep -c '^status 200 text/event-stream')"

# The claude CLI end to end, its key only in the vault.
if [ -n "$HAVE_CLAUDE" ]; then
  : > "$NS_TMP/model.jsonl"
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"claude\",\"prompt\":\"create hello.txt\",\"limits\":{\"memory\":4294967296,\"pids\":2048}}")
  sid2=$(jget "${r#* }" 'd["id"]')
  expect_eq "claude: the turn ends idle" idle "$(WAIT_S=120 wait_state "$sid2" idle failed)"
  check "claude: its file is committed" git -C "$(mirror_of "$repo_id")" cat-file -e "nightshift/$sid2:hello.txt"
  expect_eq "claude: every request reached the model server with the real key" "$REAL" \
    "$($PY - "$NS_TMP/model.jsonl" <<'EOF'
import json, sys
keys = {({k.lower(): v for k, v in json.loads(l)["headers"].items()}).get("x-api-key") for l in open(sys.argv[1])
        if json.loads(l)["method"] == "POST"}
print(" ".join(sorted(k or "-" for k in keys)))
EOF
)"
  api POST "/api/v1/sessions/$sid2/prompts" '{"text":"runsleep"}' >/dev/null
  sbx=$(jget "$(api GET "/api/v1/sessions/$sid2" | cut -d' ' -f2-)" 'd["sandbox"]')
  # Inside the session's own sandbox (its pid namespace): every process's environ while claude's
  # shell tool runs.
  envs=
  for _ in $(seq 1 600); do
    envs=$(sb exec "$sbx" -- /bin/sh -c 'for p in /proc/[0-9]*; do tr "\0" "\n" < $p/environ 2>/dev/null; done' 2>/dev/null)
    case "$envs" in *"ANTHROPIC_API_KEY=nsp-"*) break ;; esac
    sleep 0.1
  done
  expect_match "claude: its processes' environ holds the placeholder" "ANTHROPIC_API_KEY=nsp-$sid2-" "$envs"
  expect_eq "claude: and never the real key" 0 "$(printf '%s' "$envs" | grep -c REALkey)"
  api POST "/api/v1/sessions/$sid2/stop" '{"force":true}' >/dev/null
  wait_state "$sid2" stopped completed failed >/dev/null
else
  skip "claude: not installed (rootfs/agents/install.sh)"
fi
tap_done
