#!/usr/bin/env bash
# The supervisor end to end with the `command` agent: sessions on private working trees in real
# sandboxes, commits brought back into the mirror, hostile .git, setup scripts, bad input.
. "$(dirname "$0")/sv_lib.sh"
sv_setup
make_repo "$NS_TMP/src/app"
RUN() { as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" run "$@"; }

# --- the command agent end to end -------------------------------------------------------------
out=$(RUN --repo "$NS_TMP/src/app" --once --follow 'echo made by the agent > hello.txt && git status --short' 2>&1)
rc=$?
sid=$(printf '%s\n' "$out" | head -n1)
expect_eq "nightshift run --once --follow exits 0 on success" 0 "$rc"
expect_match "it prints the session id first" '^s-[a-z2-7]{12}$' "$sid"
expect_match "the agent's output streams (git status inside the sandbox)" '\?\? hello.txt' "$out"
repo_id=$(jget "$(api GET /api/v1/repos | cut -d' ' -f2-)" 'd["repos"][0]["id"]')
M=$(mirror_of "$repo_id")
expect_eq "the session completed" completed "$(wait_state "$sid" completed failed stopped)"
tip=$(git -C "$M" rev-parse "refs/heads/nightshift/$sid" 2>/dev/null)
expect_match "the mirror has branch nightshift/<id>" '^[0-9a-f]{40}$' "$tip"
expect_eq "its commit holds the agent's file" "made by the agent" "$(git -C "$M" show "$tip:hello.txt" 2>/dev/null)"
expect_eq "committed as the session identity" "nightshift $sid <$sid@nightshift.invalid>" \
  "$(git -C "$M" log -1 --format='%an <%ae>' "$tip")"
expect_eq "with the prompt as message" "echo made by the agent > hello.txt && git status --short" \
  "$(git -C "$M" log -1 --format=%B "$tip" | head -n1)"
expect_eq "on top of the base" "$(git -C "$M" rev-parse main)" "$(git -C "$M" rev-parse "$tip^")"
ev=$(events "$sid")
expect_eq "status events show every transition" "queued>provisioning>running>completed" \
  "$(printf '%s\n' "$ev" | $PY -c 'import json,sys
es=[json.loads(l) for l in sys.stdin]; st=[e["data"] for e in es if e["type"]=="status"]
print(">".join([st[0].get("to","queued")]+[s["to"] for s in st[1:]]))')"
expect_match "a commit event names sha and file" "\"sha\": ?\"$tip\".*hello.txt" \
  "$(printf '%s\n' "$ev" | grep '"type": "commit"')"
expect_eq "events have per-session seq 1..n" yes "$(printf '%s\n' "$ev" | $PY -c 'import json,sys
s=[json.loads(l)["seq"] for l in sys.stdin]; print("yes" if s==list(range(1,len(s)+1)) else s)')"
check "the working tree stays on the host, owned by the supervisor's user" \
  test "$(stat -c %u "$SV_WS/$sid/hello.txt")" = "$TEST_UID"
expect_eq "the sandbox is gone after completion" "" "$(sb ls 2>/dev/null | grep -v '^ID' )"

# --- follow-ups: a session that stays idle ------------------------------------------------------
body=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"echo one > one.txt\"}")
sid2=$(jget "${body#* }" 'd["id"]')
expect_eq "a session without once goes idle after its turn" idle "$(wait_state "$sid2" idle failed)"
st=$(api POST "/api/v1/sessions/$sid2/prompts" '{"text":"cat one.txt; echo two > two.txt"}')
expect_eq "a follow-up is accepted (202)" 202 "${st%% *}"
sleep 0.3
expect_eq "the follow-up runs in the same sandbox and ends idle" idle "$(wait_state "$sid2" idle failed)"
expect_match "it saw the first turn's file" 'one' "$(output_of "$sid2")"
expect_eq "two commits on the session branch" 2 "$(git -C "$M" rev-list --count "main..nightshift/$sid2")"
st=$(api POST "/api/v1/sessions/$sid2/complete")
expect_eq "an idle session can be completed" completed "$(wait_state "$sid2" completed)"
r=$(api DELETE "/api/v1/sessions/$sid2")
expect_eq "a finished session can be deleted (204)" 204 "${r%% *}"
check "delete removes its working tree" test ! -e "$SV_WS/$sid2"
check "and its unpushed branch" bash -c "! git -C '$M' rev-parse -q --verify 'refs/heads/nightshift/$sid2'"
expect_eq "its events are kept (archived) by default" archived "$(wait_state "$sid2" archived)"

# --- git locks at a turn's end: a stale one (a killed git's) is cleared, a held one is not -----
body=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"once\":true,\"prompt\":\"touch .git/index.lock .git/HEAD.lock; echo s > stale.txt\"}")
sid_l=$(jget "${body#* }" 'd["id"]')
expect_eq "a lock no process holds does not stop the turn's commit" completed "$(wait_state "$sid_l" completed failed)"
check "  the commit is on the branch" git -C "$M" cat-file -e "nightshift/$sid_l:stale.txt"
body=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"once\":true,\"prompt\":\"(exec 3>.git/index.lock; sleep 4) >/dev/null 2>&1 & sleep 0.2; echo h > held.txt\"}")
sid_h=$(jget "${body#* }" 'd["id"]')
wait_state "$sid_h" completed failed >/dev/null
expect_match "a lock a live process holds open is left alone: the commit fails and says so" 'index.lock' \
  "$(events "$sid_h" | grep '"type": "error"')"

# --- hostile .git -----------------------------------------------------------------------------
cfg_before=$(sha256sum "$M/config" | cut -d' ' -f1)
main_before=$(git -C "$M" rev-parse main)
hostile="git config core.fsmonitor 'touch $NS_TMP/pwned-fsmonitor'; git config core.hooksPath /workspace/hooks;
git remote add evil file:///etc; git config url.file:///etc/.insteadOf https://; mkdir -p hooks .git/hooks;
for h in pre-commit post-commit post-checkout reference-transaction; do printf '#!/bin/sh\ntouch $NS_TMP/pwned-hook\n' > .git/hooks/\$h; cp .git/hooks/\$h hooks/\$h; chmod +x .git/hooks/\$h hooks/\$h; done;
echo x > evil.txt"
sid3=$(RUN --repo "$NS_TMP/src/app" --once --follow "$hostile" 2>/dev/null | head -n1)
wait_state "$sid3" completed failed >/dev/null
sid4=$(RUN --repo "$NS_TMP/src/app" --once --follow "rm -rf .git && printf 'gitdir: $M\n' > .git && echo y > y.txt" 2>/dev/null | head -n1)
wait_state "$sid4" completed failed >/dev/null
check "no hook or fsmonitor of the agent ran on the host" test ! -e "$NS_TMP/pwned-hook" -a ! -e "$NS_TMP/pwned-fsmonitor"
expect_eq "the mirror's config is untouched" "$cfg_before" "$(sha256sum "$M/config" | cut -d' ' -f1)"
expect_eq "the mirror's main is untouched" "$main_before" "$(git -C "$M" rev-parse main)"
expect_eq "the mirror has no remote of the agent's" "" "$(git -C "$M" config --get-regexp 'remote|url|fsmonitor|hooks' 2>/dev/null)"
check "the hostile session's commit still came back" git -C "$M" cat-file -e "nightshift/$sid3:evil.txt"
expect_match "the session whose .git was replaced reports an error" '"type": "error"' "$(events "$sid4")"
sid5=$(RUN --repo "$NS_TMP/src/app" --once --follow 'git config --list --local; ls .git/hooks | wc -l' 2>/dev/null)
out5=$sid5; sid5=$(printf '%s\n' "$sid5" | head -n1)
expect_eq "the next session starts clean (no fsmonitor/hooksPath/remote in its .git)" "" \
  "$(printf '%s\n' "$out5" | grep -E 'fsmonitor|hookspath|remote\.|insteadof')"

# --- setup script ------------------------------------------------------------------------------
make_repo "$NS_TMP/src/withsetup"
mkdir -p "$NS_TMP/src/withsetup/.nightshift"
printf 'echo preparing the tree\ntouch setup-ran\n' > "$NS_TMP/src/withsetup/.nightshift/setup.sh"
chown -R "$TEST_UID:$TEST_GID" "$NS_TMP/src/withsetup"
as_user git -C "$NS_TMP/src/withsetup" add -A && as_user git -C "$NS_TMP/src/withsetup" -c user.name=t -c user.email=t@t commit -qm setup
out=$(RUN --repo "$NS_TMP/src/withsetup" --once --follow 'test -f setup-ran && echo setup-was-first' 2>&1)
expect_match "the setup script runs before the agent" 'setup-was-first' "$out"
printf 'echo about to fail\nexit 3\n' > "$NS_TMP/src/withsetup/.nightshift/setup.sh"
as_user git -C "$NS_TMP/src/withsetup" -c user.name=t -c user.email=t@t commit -qam failing-setup
out=$(RUN --repo "$NS_TMP/src/withsetup" --once --follow 'echo agent-ran' 2>&1); rc=$?
sid6=$(printf '%s\n' "$out" | head -n1)
check "a failing setup fails the run" test "$rc" -ne 0
expect_eq "and the session" failed "$(wait_state "$sid6" failed completed)"
expect_match "the failure is reported with its output" 'exit code 3.*about to fail' "$(events "$sid6" | grep '"type": "error"')"
expect_eq "the agent did not run" "" "$(output_of "$sid6")"

# --- bad input: a clear error and nothing left behind --------------------------------------------
snapshot() { echo "$(ls "$SV_WS" | sort | tr '\n' ' ')|$(git -C "$M" for-each-ref --format='%(refname)' | tr '\n' ' ')|$(sb ls 2>/dev/null | wc -l)|$(jget "$(api GET /api/v1/sessions?limit=1000 | cut -d' ' -f2-)" 'len(d["sessions"])')"; }
before=$(snapshot)
r=$(api POST /api/v1/sessions '{"repo":"r-aaaaaaaaaaaa","prompt":"true"}')
expect_eq "unknown repo → 404" 404 "${r%% *}"; expect_match "with a message" 'unknown repository' "$r"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"base\":\"no-such-branch\",\"prompt\":\"true\"}")
expect_eq "a base ref that does not exist → 400" 400 "${r%% *}"; expect_match "named" 'no-such-branch' "$r"
$PY -c 'import json,sys; print(json.dumps({"repo":sys.argv[1],"prompt":"x"*(256*1024+1)}))' "$repo_id" > "$NS_TMP/big.json"
r=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SV_TOKEN" --data-binary @"$NS_TMP/big.json" "$SV_URL/api/v1/sessions")
expect_eq "a prompt over 256 KiB → 413" 413 "$r"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"claude\",\"prompt\":\"hi\"}")
expect_eq "an agent that is not installed → 400" 400 "${r%% *}"; expect_match "says so" 'not installed' "$r"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"agent\":\"nope\",\"prompt\":\"hi\"}")
expect_eq "an unknown agent → 400" 400 "${r%% *}"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"hi\",\"bogus\":1}")
expect_eq "an unknown field → 400" 400 "${r%% *}"
r=$(api POST /api/v1/sessions '{"repo":')
expect_eq "malformed JSON → 400" 400 "${r%% *}"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"hi\",\"limits\":{\"memory\":-1}}")
expect_eq "a negative limit → 400" 400 "${r%% *}"
r=$(api GET /api/v1/sessions/s-zzzzzzzzzzzz)
expect_eq "an unknown session → 404" 404 "${r%% *}"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/nope\"}")
expect_eq "registering a missing path → 400" 400 "${r%% *}"
expect_eq "nothing was left behind (trees, branches, sandboxes, sessions)" "$before" "$(snapshot)"
check "the server still answers" curl -sf "$SV_URL/api/v1/healthz"

sv_stop
expect_eq "no sandbox is left after the sessions ended" "" "$(sb ls 2>/dev/null | grep -v '^ID')"
tap_done
