#!/usr/bin/env bash
# The `nightshift` client commands (ls, show, logs, prompt, stop, pause, resume, diff; run's
# --follow) as the unprivileged test user against a real `nightshift serve` with the `command`
# agent: what they print (readable and --json), their exit statuses (1 refused, 2 usage, 3 no
# server, 130 Ctrl-C), and where they find the server and the token (flags, environment, the
# config file, which must be private when it holds a token).
. "$(dirname "$0")/sv_lib.sh"
sv_setup
make_repo "$NS_TMP/src/app"
CLI_HOME=$NS_TMP/home
mkdir -p "$CLI_HOME/.config/nightshift"; chown -R "$TEST_UID:$TEST_GID" "$CLI_HOME"
unset NIGHTSHIFT_TOKEN   # sv_setup exports it: each call below says where its token comes from
# NS ARGS...: the CLI as the test user, server and token from the environment, no config file
# (NS_CMD: the same as one command line, for `timeout` and for background jobs)
NS_CMD=(setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --clear-groups -- env HOME="$CLI_HOME"
        NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT")
NS() { "${NS_CMD[@]}" "$@"; }
# NS_BARE ENV... -- ARGS...: the CLI with only the environment given (HOME is the test's)
NS_BARE() { as_user env -u NIGHTSHIFT_URL -u NIGHTSHIFT_TOKEN -u NIGHTSHIFT_CONFIG HOME="$CLI_HOME" "$@"; }
is_json() { $PY -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null; }
new_session() { jget "$(api POST /api/v1/sessions "$1" | cut -d' ' -f2-)" 'd["id"]'; }

r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]'); repo_name=$(jget "${r#* }" 'd["name"]')

# --- ls, show, logs of a finished session -------------------------------------------------------
sid=$(new_session "{\"repo\":\"$repo_id\",\"title\":\"first session\",\"once\":true,\"prompt\":\"echo made by the agent > hello.txt; echo output-of-the-agent\"}")
expect_eq "a session made through the API completes" completed "$(WAIT_S=120 wait_state "$sid" completed failed stopped)"
out=$(NS ls); rc=$?
expect_eq "ls exits 0" 0 "$rc"
expect_match "ls prints a table with a header" '^ID +STATE +AGENT +REPO +AGE +TITLE' "$out"
expect_match "... and the session's row: id, state, agent, repository name, title" \
  "^$sid +completed +command +$repo_name +[0-9]+[smhd] +first session\$" "$out"
out=$(NS ls --json)
check "ls --json prints JSON only" is_json <<<"$out"
expect_eq "... the API's sessions" yes "$(jget "$out" "'yes' if '$sid' in [s['id'] for s in d['sessions']] else 'no'")"
expect_eq "ls --state completed --repo NAME --json has it" yes \
  "$(jget "$(NS ls --state completed --repo "$repo_name" --json)" "'yes' if '$sid' in [s['id'] for s in d['sessions']] else 'no'")"
expect_eq "ls --state running has it not" no \
  "$(jget "$(NS ls --state running --limit 5 --json)" "'yes' if '$sid' in [s['id'] for s in d['sessions']] else 'no'")"
out=$(NS ls --state nonsense 2>&1); rc=$?
expect_eq "ls --state with an unknown state: exit 1" 1 "$rc"
expect_eq "... with the server's message" "nightshift ls: unknown state 'nonsense' (HTTP 400)" "$out"

out=$(NS show "$sid"); rc=$?
expect_eq "show exits 0" 0 "$rc"
expect_match "show prints the session's fields" "^id +$sid\$" "$out"
expect_match "... its state" '^state +completed$' "$out"
expect_match "... its times" '^created_at +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}Z \([0-9]+[smhd] ago\)$' "$out"
out=$(NS show "$sid" --json)
check "show --json prints JSON only" is_json <<<"$out"
expect_eq "... the API's session" "$sid completed" "$(jget "$out" 'd["id"]+" "+d["state"]')"
out=$(NS show s-aaaaaaaaaaaa 2>&1); rc=$?
expect_eq "show of an unknown session: exit 1" 1 "$rc"
expect_match "... with the server's message and status" '^nightshift show: .* \(HTTP 404\)$' "$out"

out=$(NS logs "$sid"); rc=$?
expect_eq "logs of a finished session exits 0" 0 "$rc"
expect_match "logs prints the command's output as it is" '^output-of-the-agent$' "$out"
expect_match "... the status transitions" '^\[status\] running -> completed' "$out"
expect_match "... and the commit" "^\\[commit\\] [0-9a-f]{12} on nightshift/$sid: 1 file" "$out"
out=$(NS logs "$sid" --json)
check "logs --json prints JSON only" is_json <<<"$out"
expect_eq "... an array of the API's events" "$(events "$sid" | wc -l)" "$(jget "$out" 'len(d)')"
n_after=$(jget "$out" 'len([e for e in d if e["seq"]>2])')
expect_eq "logs --after 2 starts after seq 2" "$n_after" "$(jget "$(NS logs "$sid" --after 2 --json)" 'len(d)')"

# --- logs -f of a running session ----------------------------------------------------------------
# The agent prints, then waits for a file the test creates once that line reached `logs -f`.
sid=$(new_session "{\"repo\":\"$repo_id\",\"once\":true,\"prompt\":\"echo first-line; while [ ! -e go ]; do sleep 0.1; done; echo second-line\"}")
NS logs -f "$sid" >"$NS_TMP/follow.out" 2>&1 &
follow_pid=$!
for _ in $(seq 1 600); do grep -q '^first-line$' "$NS_TMP/follow.out" && break; sleep 0.1; done
expect_match "logs -f prints the agent's output while it runs" '^first-line$' "$(cat "$NS_TMP/follow.out")"
expect_eq "... before the session ended" running "$(jget "$(api GET "/api/v1/sessions/$sid" | cut -d' ' -f2-)" 'd["state"]')"
as_user touch "$SV_WS/$sid/go"
for _ in $(seq 1 600); do kill -0 "$follow_pid" 2>/dev/null || break; sleep 0.1; done
wait "$follow_pid"; rc=$?
expect_eq "logs -f exits 0 when the session is over" 0 "$rc"
expect_match "... having printed the rest" 'second-line' "$(cat "$NS_TMP/follow.out")"
expect_match "... up to the end" '\[status\] running -> completed' "$(cat "$NS_TMP/follow.out")"
out=$(timeout 20 "${NS_CMD[@]}" logs -f "$sid"); rc=$?
expect_eq "logs -f of a session already over prints it and exits 0" "0 yes" "$rc $(grep -q second-line <<<"$out" && echo yes)"

# --- prompt, pause, resume, diff, stop --force on a session that stays ------------------------
sid2=$(new_session "{\"repo\":\"$repo_id\",\"prompt\":\"echo one > one.txt\"}")
WAIT_S=120 wait_state "$sid2" idle failed >/dev/null
out=$(NS prompt "$sid2" 'cat one.txt; echo two > two.txt; echo follow-up-ran'); rc=$?
expect_eq "prompt exits 0" 0 "$rc"
expect_match "... saying the prompt is queued" "^prompt [0-9]+ queued on $sid2\$" "$out"
for _ in $(seq 1 600); do grep -q follow-up-ran <<<"$(output_of "$sid2")" && break; sleep 0.1; done
expect_eq "the follow-up runs and the session goes idle again" idle "$(wait_state "$sid2" idle failed)"
expect_match "... it ran in the same tree" '^one$' "$(output_of "$sid2")"
out=$(printf 'echo from-stdin\n' | NS prompt "$sid2" - --json); rc=$?
expect_eq "prompt ID - reads the text from stdin (--json: the API's answer)" "0 queued" "$rc $(jget "$out" 'd["state"]')"
for _ in $(seq 1 600); do grep -q from-stdin <<<"$(output_of "$sid2")" && break; sleep 0.1; done
expect_match "... and it runs" 'from-stdin' "$(output_of "$sid2")"
expect_eq "... the session idle after it" idle "$(wait_state "$sid2" idle failed)"
out=$(NS prompt "$sid2" '' 2>&1); rc=$?
expect_eq "an empty prompt is refused before it is sent" "1 nightshift prompt: the prompt is empty" "$rc $out"

out=$(NS pause "$sid2"); rc=$?
expect_eq "pause exits 0 and prints the new state" "0 $sid2: paused" "$rc $out"
expect_eq "... the API says paused" paused "$(wait_state "$sid2" paused)"
out=$(NS resume "$sid2" --json); rc=$?
expect_eq "resume --json exits 0 with the API's session" "0 idle" "$rc $(jget "$out" 'd["state"]')"
expect_eq "... the API says idle" idle "$(wait_state "$sid2" idle)"

M=$(mirror_of "$repo_id")
st=$(api GET "/api/v1/sessions/$sid2/diff"); st=${st%% *}
out=$(NS diff "$sid2" 2>"$NS_TMP/diff.err"); rc=$?
if [ "$st" = 200 ]; then
  expect_eq "diff exits 0" 0 "$rc"
  expect_eq "diff prints the branch's changes against the base, as git does" \
    "$(git -C "$M" diff "main" "nightshift/$sid2")" "$out"
  expect_match "... with the agent's files" '^\+two$' "$out"
  out=$(NS diff "$sid2" --json)
  check "diff --json prints JSON only" is_json <<<"$out"
  expect_eq "... with base and head" "$(git -C "$M" rev-parse main) $(git -C "$M" rev-parse "nightshift/$sid2")" \
    "$(jget "$out" 'd["base"]+" "+d["head"]')"
else
  expect_eq "diff without the route: exit 1" 1 "$rc"
  expect_match "... with the server's message" "^nightshift diff: .* \\(HTTP $st\\)\$" "$(cat "$NS_TMP/diff.err")"
  skip "diff's output: GET /api/v1/sessions/{id}/diff answers $st on this server (the route is not there yet)"
fi

out=$(NS stop "$sid2" --force); rc=$?
expect_eq "stop --force exits 0" 0 "$rc"
expect_eq "... the session stopped" stopped "$(wait_state "$sid2" stopped)"

# --- stop, and Ctrl-C of logs -f, on a running session ------------------------------------------
sid3=$(new_session "{\"repo\":\"$repo_id\",\"prompt\":\"echo started; sleep 300\"}")
# (SIGINT back to its default: bash starts background jobs with it ignored, and so does the CLI)
env --default-signal=INT "${NS_CMD[@]}" logs -f --json "$sid3" >"$NS_TMP/int.out" 2>&1 &
int_pid=$!
for _ in $(seq 1 600); do grep -q started "$NS_TMP/int.out" && break; sleep 0.1; done
kill -INT "$int_pid"
wait "$int_pid"; rc=$?
expect_eq "Ctrl-C ends logs -f with 130" 130 "$rc"
check "... its --json output still one JSON array" is_json <"$NS_TMP/int.out"
expect_eq "the session kept running" running "$(wait_state "$sid3" running)"
out=$(NS stop "$sid3"); rc=$?
expect_eq "stop exits 0" 0 "$rc"
expect_eq "... the session stopped" stopped "$(WAIT_S=60 wait_state "$sid3" stopped failed)"
out=$(NS stop "$sid3" --json 2>&1); rc=$?
expect_match "stop of a session over: exit 1, the server's message" '^1 nightshift stop: .* \(HTTP 409\)$' "$rc $out"

# --- run --follow's exit status (test_supervisor.sh has the rest) --------------------------------
out=$(NS run --repo "$repo_id" --once --follow 'echo via-run' 2>&1); rc=$?
expect_eq "run --follow exits 0 when the turn succeeded" 0 "$rc"
expect_match "... printing the agent's output" '^via-run$' "$out"
out=$(NS run --repo "$repo_id" --once --follow 'echo about-to-fail; exit 3' 2>&1); rc=$?
expect_eq "run --follow exits 1 when it failed" 1 "$rc"

# --- the server and the token: errors, environment, config file, token file ---------------------
unknown=nst_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' | head -c 43)
msg=$(curl -s -H "Authorization: Bearer $unknown" "$SV_URL/api/v1/sessions" | $PY -c 'import json,sys; print(json.load(sys.stdin)["error"]["message"])')
out=$(NS_BARE NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$unknown" "$NIGHTSHIFT" ls 2>&1); rc=$?
expect_eq "a wrong token: exit 1 and the server's 401 message" "1 nightshift ls: $msg (HTTP 401)" "$rc $out"
out=$(NS_BARE NIGHTSHIFT_URL="$SV_URL" "$NIGHTSHIFT" show "$sid" 2>&1); rc=$?
expect_match "no token at all: exit 1, the server says one is needed" '^1 nightshift show: .*token.* \(HTTP 401\)$' "$rc $out"
dead=http://127.0.0.1:$(free_port)
out=$(NS_BARE NIGHTSHIFT_URL="$dead" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" ls 2>&1); rc=$?
expect_eq "a server that is not there: exit 3" 3 "$rc"
expect_match "... naming its URL" "^nightshift ls: cannot reach the server at $dead" "$out"
out=$(NS_BARE "$NIGHTSHIFT" logs "$sid" --server "$dead" 2>&1); rc=$?
expect_eq "--server is used (and unreachable: exit 3)" 3 "$rc"

CONF=$CLI_HOME/.config/nightshift/client.conf
printf '# the test server\nserver %s\ntoken %s\n' "$SV_URL" "$SV_TOKEN" >"$CONF"
chown "$TEST_UID:$TEST_GID" "$CONF"; chmod 0644 "$CONF"
out=$(NS_BARE "$NIGHTSHIFT" ls 2>&1); rc=$?
expect_eq "a config file holding a token with mode 0644 is refused: exit 1" 1 "$rc"
expect_match "... saying why" "$CONF holds a token but is readable by group or others \\(mode 0644\\)" "$out"
chmod 0600 "$CONF"
out=$(NS_BARE "$NIGHTSHIFT" show "$sid" --json); rc=$?
expect_eq "with mode 0600, server and token come from ~/.config/nightshift/client.conf" "0 $sid" "$rc $(jget "$out" 'd["id"]' 2>/dev/null)"
mv "$CONF" "$CLI_HOME/other.conf"
out=$(NS_BARE NIGHTSHIFT_CONFIG="$CLI_HOME/other.conf" "$NIGHTSHIFT" ls --json); rc=$?
expect_eq "\$NIGHTSHIFT_CONFIG names another config file" 0 "$rc"
out=$(NS_BARE NIGHTSHIFT_CONFIG="$CLI_HOME/missing.conf" "$NIGHTSHIFT" ls 2>&1); rc=$?
expect_match "a \$NIGHTSHIFT_CONFIG that does not exist: exit 1, named" "^1 nightshift ls: config file $CLI_HOME/missing.conf" "$rc $out"
out=$(NS_BARE NIGHTSHIFT_CONFIG="$CLI_HOME/other.conf" NIGHTSHIFT_TOKEN="$unknown" "$NIGHTSHIFT" ls 2>&1); rc=$?
expect_eq "\$NIGHTSHIFT_TOKEN wins over the config file" 1 "$rc"
printf '%s\n' "$SV_TOKEN" >"$CLI_HOME/token"; chown "$TEST_UID:$TEST_GID" "$CLI_HOME/token"; chmod 0600 "$CLI_HOME/token"
out=$(NS_BARE NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$unknown" "$NIGHTSHIFT" ls --token-file "$CLI_HOME/token" --json); rc=$?
expect_eq "--token-file wins over \$NIGHTSHIFT_TOKEN" 0 "$rc"
chmod 0644 "$CLI_HOME/token"
out=$(NS_BARE NIGHTSHIFT_URL="$SV_URL" "$NIGHTSHIFT" ls --token-file "$CLI_HOME/token" 2>&1); rc=$?
expect_match "a token file readable by others is refused too" '^1 nightshift ls: .* holds a token but is readable by group or others' "$rc $out"

# --- help and usage ------------------------------------------------------------------------------
bad=()
for c in ls show logs prompt stop pause resume diff run token; do
  out=$(NS_BARE "$NIGHTSHIFT" "$c" --help 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && grep -q "^usage: nightshift $c" <<<"$out" || bad+=("$c:$rc")
done
expect_eq "--help on every command prints its usage and exits 0" "" "${bad[*]}"
out=$(NS_BARE "$NIGHTSHIFT" show 2>&1); rc=$?
expect_match "a missing argument: exit 2 with the usage" '^2 nightshift show: missing arguments' "$rc $out"
out=$(NS_BARE "$NIGHTSHIFT" logs not-a-session 2>&1); rc=$?
expect_match "a malformed id: exit 2" "^2 nightshift logs: 'not-a-session' is not a session id" "$rc $out"
out=$(NS_BARE "$NIGHTSHIFT" show "$sid" --follow 2>&1); rc=$?
expect_match "a flag of another command: exit 2" '^2 nightshift show: --follow is not an option of this command' "$rc $out"
out=$(NS_BARE "$NIGHTSHIFT" ls --limit 0 2>&1); rc=$?
expect_eq "--limit out of range: exit 2" 2 "$rc"

sv_stop
expect_eq "no sandbox is left after the sessions ended" "" "$(sb ls 2>/dev/null | grep -v '^ID')"
tap_done
