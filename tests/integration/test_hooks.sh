#!/usr/bin/env bash
# Triggers: GitHub webhooks (HMAC-SHA256 signature from the vault, delivery dedupe, command prefix,
# author associations, fix-CI opt-in, no fork code) and Slack slash commands (v0 signature, stale
# timestamps refused) start sessions; everything else starts nothing.
. "$(dirname "$0")/sv_lib.sh"
DATA=$(cd "$(dirname "$0")" && pwd)/data/github-webhooks
sv_setup --hook-agent command --hook-ci-repos octo-repo
make_repo "$NS_TMP/src/Hello-World"
make_repo "$NS_TMP/src/octo-repo"
as_user git -C "$NS_TMP/src/octo-repo" branch master
json() { $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
GH_SECRET='gh-hook-secret-0123456789'
SLACK_SECRET='slack-signing-secret-9876543210'
count() { jget "$(api GET /api/v1/sessions | cut -d' ' -f2-)" 'len(d["sessions"])'; }

# payload NAME FILE PYTHON-STATEMENTS: the example payload, rewritten, into NAME.json; prints its path
payload() {
  local out=$NS_TMP/$1.json
  $PY -c "import json,sys; d=json.load(open(sys.argv[1])); $3
open(sys.argv[2],'w').write(json.dumps(d))" "$DATA/$2" "$out"
  echo "$out"
}
# gh EVENT DELIVERY FILE [SECRET]: POST it signed; prints "STATUS BODY"
gh() {
  local sig out
  sig=$($PY -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), open(sys.argv[2],"rb").read(), hashlib.sha256).hexdigest())' \
        "${4:-$GH_SECRET}" "$3")
  out=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' -H "X-GitHub-Event: $1" \
        -H "X-GitHub-Delivery: $2" -H "X-Hub-Signature-256: sha256=$sig" --data-binary "@$3" "$SV_URL/api/v1/hooks/github")
  printf '%s %s' "$(printf '%s' "$out" | tail -n1)" "$(printf '%s' "$out" | sed '$d')"
}
# slack BODY [SECRET] [TIMESTAMP]: POST a slash command signed; prints "STATUS BODY"
slack() {
  local ts=${3:-$(date +%s)} sig out
  sig=$($PY -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), ("v0:"+sys.argv[2]+":"+sys.argv[3]).encode(), hashlib.sha256).hexdigest())' \
        "${2:-$SLACK_SECRET}" "$ts" "$1")
  out=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
        -H "X-Slack-Request-Timestamp: $ts" -H "X-Slack-Signature: v0=$sig" --data-binary "$1" "$SV_URL/api/v1/hooks/slack")
  printf '%s %s' "$(printf '%s' "$out" | tail -n1)" "$(printf '%s' "$out" | sed '$d')"
}

P_CMD=$(payload p_cmd issue_comment_created.payload.json 'd["comment"]["body"]="/nightshift echo hook-started-$((6*7))"')
expect_eq "no secret in the vault: the hook is off (503)" 503 "$(gh issue_comment d-0 "$P_CMD" | cut -d' ' -f1)"
r=$(api PUT /api/v1/secrets/GITHUB_WEBHOOK_SECRET "{\"value\":$(json "$GH_SECRET")}")
expect_eq "the GitHub secret goes into the vault" 201 "${r%% *}"
r=$(api PUT /api/v1/secrets/SLACK_SIGNING_SECRET "{\"value\":$(json "$SLACK_SECRET")}")
expect_eq "the Slack secret goes into the vault" 201 "${r%% *}"
for n_ in Hello-World octo-repo; do
  r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/$n_\",\"name\":\"$n_\"}")
  expect_eq "register $n_ (the payloads' repository.name)" 201 "${r%% *}"
done

# --- GitHub: refused and ignored deliveries start nothing ----------------------------------------
expect_eq "a wrong signature: 401" 401 "$(gh issue_comment d-1 "$P_CMD" wrong-secret-000 | cut -d' ' -f1)"
r=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: issue_comment' -H 'X-GitHub-Delivery: d-2' \
    --data-binary "@$P_CMD" "$SV_URL/api/v1/hooks/github")
expect_eq "no signature: 401" 401 "$r"
$PY -c 'import sys; open(sys.argv[1],"w").write("{\"x\":\"" + "a"*(1024*1024+16) + "\"}")' "$NS_TMP/big.json"
expect_eq "an oversized body: 413" 413 "$(gh issue_comment d-3 "$NS_TMP/big.json" | cut -d' ' -f1)"
P_PLAIN=$(payload p_plain issue_comment_created.payload.json 'pass')
expect_eq "a comment without the prefix: 202 ignored" "202 ignored" \
  "$(r=$(gh issue_comment d-4 "$P_PLAIN"); echo "${r%% *} $(jget "${r#* }" 'd["status"]')")"
P_OUT=$(payload p_out issue_comment_created.payload.json 'd["comment"]["body"]="/nightshift echo pwned"; d["comment"]["author_association"]="NONE"')
expect_eq "an outsider's comment (author_association NONE): 202" 202 "$(gh issue_comment d-5 "$P_OUT" | cut -d' ' -f1)"
P_PFX=$(payload p_pfx issue_comment_created.payload.json 'd["comment"]["body"]="/nightshiftecho x"')
expect_eq "the prefix glued to a word is not the command: 202" 202 "$(gh issue_comment d-6 "$P_PFX" | cut -d' ' -f1)"
expect_eq "a ping: 202" 202 "$(gh ping d-7 "$DATA/ping_payload.json" | cut -d' ' -f1)"
P_OK=$(payload p_ok workflow_run_completed.payload.json 'pass')
expect_eq "a successful workflow run: 202" 202 "$(gh workflow_run d-8 "$P_OK" | cut -d' ' -f1)"
P_FORK=$(payload p_fork workflow_run_completed.payload.json 'd["workflow_run"]["conclusion"]="failure"; d["workflow_run"]["head_repository"]["full_name"]="mallory/octo-repo"')
expect_eq "a failed run of a fork's code: 202, nothing started" 202 "$(gh workflow_run d-9 "$P_FORK" | cut -d' ' -f1)"
P_NOOPT=$(payload p_noopt workflow_run_completed.payload.json 'd["workflow_run"]["conclusion"]="failure"; d["repository"]["name"]="Hello-World"; d["repository"]["full_name"]="x/Hello-World"; d["workflow_run"]["head_repository"]["full_name"]="x/Hello-World"')
expect_eq "a failed run of a repository that did not opt in: 202" 202 "$(gh workflow_run d-10 "$P_NOOPT" | cut -d' ' -f1)"
expect_eq "none of those started a session" 0 "$(count)"

# --- GitHub: a command comment and a failed CI run start sessions ---------------------------------
r=$(gh issue_comment d-11 "$P_CMD")
expect_eq "a command comment by the OWNER: 201" 201 "${r%% *}"
sid=$(jget "${r#* }" 'd["id"]')
expect_match "the answer links the session" "/#/s/$sid\$" "$(jget "${r#* }" 'd["url"]')"
expect_eq "its session runs the rest of the comment and completes" completed "$(wait_state "$sid" completed failed)"
expect_match "the prompt was the comment after the prefix" 'hook-started-42' "$(output_of "$sid")"
expect_eq "the same delivery again: 409" 409 "$(gh issue_comment d-11 "$P_CMD" | cut -d' ' -f1)"
expect_eq "the replay started nothing" 1 "$(count)"
P_FAIL=$(payload p_fail workflow_run_completed.payload.json 'd["workflow_run"]["conclusion"]="failure"')
r=$(gh workflow_run d-12 "$P_FAIL")
expect_eq "a failed run of an opted-in repository: 201" 201 "${r%% *}"
expect_eq "a fix-CI session on the run's branch" "master" "$(jget "${r#* }" 'd.get("base_ref") or d.get("base")')"
expect_eq "two sessions now" 2 "$(count)"

# --- Slack ------------------------------------------------------------------------------------------
r=$(slack 'command=%2Fnightshift&text=Hello-World+echo+from-slack&user_id=U1')
expect_eq "a signed slash command: 200" 200 "${r%% *}"
expect_match "answered with the session's link" 'started: http://127\.0\.0\.1:[0-9]+/#/s/s-' "$(jget "${r#* }" 'd["text"]')"
ssid=$(jget "${r#* }" 'd["text"]' | sed -n 's/.*session \(s-[^ ]*\) started.*/\1/p')
expect_eq "its session completes" completed "$(wait_state "$ssid" completed failed)"
expect_match "with the prompt after the repository" 'from-slack' "$(output_of "$ssid")"
expect_eq "a bad Slack signature: 401" 401 "$(slack 'text=Hello-World+echo+x' wrong-secret-000 | cut -d' ' -f1)"
expect_eq "a stale timestamp (10 minutes old): 401" 401 \
  "$(slack 'text=Hello-World+echo+x' "$SLACK_SECRET" $(( $(date +%s) - 600 )) | cut -d' ' -f1)"
expect_eq "neither started a session" 3 "$(count)"
tap_done
