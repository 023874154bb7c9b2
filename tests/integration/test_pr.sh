#!/usr/bin/env bash
# Pull requests through a scripted GitHub REST API on loopback (tests/helpers/github_api.py, which
# records every request): POST /sessions/{id}/pr pushes the branch and opens the pull request
# with the vault's GITHUB_TOKEN and GitHub's headers; the link is a pull_request artifact and a
# `pr` event; a second call finds the open one after GitHub's 422; a 500 is an error event and a
# 502; the repository's on_complete=pr setting pushes and opens it when a session completes; a
# session started by an issue_comment comments back with its link.
. "$(dirname "$0")/sv_lib.sh"
GHDIR=$(mktemp -d /tmp/ns-gh.XXXXXX)
GHLOG=$GHDIR/requests.jsonl
$PY "$(dirname "$0")/../helpers/github_api.py" "$GHDIR/port" "$GHLOG" &
GH_PID=$!
for _ in $(seq 1 100); do [ -s "$GHDIR/port" ] && break; sleep 0.05; done
GH_URL=http://127.0.0.1:$(cat "$GHDIR/port")
sv_setup --github-api-url "$GH_URL" --hook-agent command
trap 'sv_stop; sv_log_tail; kill $GH_PID 2>/dev/null; wait $GH_PID 2>/dev/null; rm -rf "$GHDIR"; ns_cleanup' EXIT
CLI() { as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" "$@"; }
G() { as_user env HOME="$NS_TMP/src" git -c user.name=t -c user.email=t@t "$@"; }
json() { $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
# last_req METHOD PATH-PREFIX PYEXPR: PYEXPR over the last recorded request r matching (body in b)
last_req() {
  $PY - "$GHLOG" "$1" "$2" "$3" <<'PYEOF'
import json, sys
log, m, p, expr = sys.argv[1:5]
rs = [json.loads(l) for l in open(log)] if __import__("os").path.exists(log) else []
rs = [r for r in rs if r["method"] == m and r["path"].startswith(p)]
if not rs: print("<none>"); sys.exit(0)
r = rs[-1]
try: b = json.loads(r["body"])
except Exception: b = None
print(eval(expr))
PYEOF
}
B=$NS_TMP/src/remote.git
G init -q --bare -b main "$B"
make_repo "$NS_TMP/src/work"
G -C "$NS_TMP/src/work" push -q "$B" main
r=$(api POST /api/v1/repos "{\"path\":\"$B\",\"name\":\"remote\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
session() { # session PROMPT → the session id, after it completed
  local r sid
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"once\":true,\"title\":\"Add a feature\",\"prompt\":$(json "$1")}")
  sid=$(jget "${r#* }" 'd["id"]')
  wait_state "$sid" completed failed >/dev/null
  echo "$sid"
}

# --- repository settings ---------------------------------------------------------------------------
r=$(api GET "/api/v1/repos/$repo_id/settings")
expect_eq "settings: defaults" "none False None" "$(jget "${r#* }" 'd["on_complete"],d["pr_draft"],d["github_repo"]' | tr -d "(),'")"
expect_eq "settings: a bad on_complete is refused (400)" 400 "$(api PATCH "/api/v1/repos/$repo_id/settings" '{"on_complete":"merge"}' | cut -d' ' -f1)"
expect_eq "settings: github_repo must be OWNER/NAME" 400 "$(api PATCH "/api/v1/repos/$repo_id/settings" '{"github_repo":"x/../y"}' | cut -d' ' -f1)"
expect_eq "settings: unknown keys are refused" 400 "$(api PATCH "/api/v1/repos/$repo_id/settings" '{"evil":1}' | cut -d' ' -f1)"
expect_eq "settings: of an unknown repository: 404" 404 "$(api GET /api/v1/repos/r-aaaaaaaaaaaa/settings | cut -d' ' -f1)"
r=$(api PATCH "/api/v1/repos/$repo_id/settings" '{"github_repo":"octo/remote"}')
expect_eq "settings: github_repo is set" "200 octo/remote" "${r%% *} $(jget "${r#* }" 'd["github_repo"]')"

# --- a pull request --------------------------------------------------------------------------------
sid=$(session 'echo feature > feature.txt')
r=$(api POST "/api/v1/sessions/$sid/pr")
expect_eq "no GITHUB_TOKEN in the vault: 409" 409 "${r%% *}"
expect_match "and an error event says so" 'GITHUB_TOKEN' "$(events "$sid" | grep '"type": "error"')"
TOKEN=ghtok-test-$RANDOM$RANDOM
expect_eq "GITHUB_TOKEN into the vault" 201 "$(api PUT /api/v1/secrets/GITHUB_TOKEN "{\"value\":\"$TOKEN\"}" | cut -d' ' -f1)"
: > "$GHLOG"
r=$(api POST "/api/v1/sessions/$sid/pr" '{"draft":true}')
expect_eq "POST /pr opens it (201)" 201 "${r%% *}"
url=$(jget "${r#* }" 'd["url"]')
expect_match "and answers its link" '^https://github.example/octo/remote/pull/[0-9]+$' "$url"
expect_eq "the branch was pushed first" "$(git -C "$(mirror_of "$repo_id")" rev-parse "nightshift/$sid")" \
  "$(git -C "$B" rev-parse "refs/heads/nightshift/$sid" 2>/dev/null)"
expect_eq "GitHub got POST /repos/octo/remote/pulls" "/repos/octo/remote/pulls" "$(last_req POST /repos/octo/remote/pulls 'r["path"]')"
expect_eq "with the vault's token as Bearer" "Bearer $TOKEN" "$(last_req POST /repos/octo/remote/pulls 'r["headers"].get("authorization")')"
expect_eq "and GitHub's Accept and API version headers" "application/vnd.github+json 2022-11-28" \
  "$(last_req POST /repos/octo/remote/pulls 'r["headers"].get("accept")+" "+r["headers"].get("x-github-api-version","")')"
expect_eq "the body: head, base, draft, the session's title" "nightshift/$sid main True Add a feature" \
  "$(last_req POST /repos/octo/remote/pulls 'b["head"]+" "+b["base"]+" "+str(b["draft"])+" "+b["title"]')"
expect_match "the body lists the prompt and the commits" 'echo feature > feature.txt.*### Commits.*- [0-9a-f]{7} ' \
  "$(last_req POST /repos/octo/remote/pulls 'b["body"].replace("\n"," ")')"
arts=$(api GET "/api/v1/sessions/$sid/artifacts" | cut -d' ' -f2-)
expect_eq "the link is a pull_request artifact" "pull_request $url" "$(jget "$arts" '" ".join([d["artifacts"][0]["kind"], d["artifacts"][0]["data"]["url"]])')"
expect_match "and a pr event" "\"url\": \"$url\"" "$(events "$sid" | grep '"type": "pr"')"
r=$(api POST "/api/v1/sessions/$sid/pr")
expect_eq "again: GitHub's 422 finds the open one (200, same link)" "200 $url True" \
  "${r%% *} $(jget "${r#* }" 'd["url"]') $(jget "${r#* }" 'd["existing"]')"
expect_eq "looked up by head OWNER:BRANCH, state open" "head=octo:nightshift/$sid&state=open" \
  "$(last_req GET /repos/octo/remote/pulls 'r["path"].split("?",1)[1]')"
expect_eq "still one artifact" 1 "$(jget "$(api GET "/api/v1/sessions/$sid/artifacts" | cut -d' ' -f2-)" 'len(d["artifacts"])')"
out=$(CLI pr "$sid" 2>&1)
expect_match "nightshift pr ID prints the link" "$url" "$out"

# --- the body is redacted -------------------------------------------------------------------------
printf 'pr-body-Secret-5521xq' | CLI secret set PRLEAK >/dev/null
sid5=$(session 'echo five > five.txt')
expect_eq "a title and body quoting a vault value: opened" 201 \
  "$(api POST "/api/v1/sessions/$sid5/pr" '{"title":"fix pr-body-Secret-5521xq","body":"the key is pr-body-Secret-5521xq"}' | cut -d' ' -f1)"
expect_eq "GitHub got [secret:PRLEAK] in both, never the value" "True True False" \
  "$(last_req POST /repos/octo/remote/pulls '" ".join(map(str, ["[secret:PRLEAK]" in b["title"], "[secret:PRLEAK]" in b["body"], "pr-body-Secret-5521xq" in r["body"]]))')"

# --- GitHub fails -----------------------------------------------------------------------------------
sid2=$(session 'echo two > two.txt')
r=$(api POST "/api/v1/sessions/$sid2/pr" '{"title":"FAIL500 please"}')
expect_eq "GitHub answers 500: 502" 502 "${r%% *}"
expect_match "and an error event with GitHub's status" '"type": "error".*GitHub answered 500' "$(events "$sid2" | grep '"type": "error"')"
expect_eq "no artifact" 0 "$(jget "$(api GET "/api/v1/sessions/$sid2/artifacts" | cut -d' ' -f2-)" 'len(d["artifacts"])')"
expect_eq "bad input: draft not a boolean (400)" 400 "$(api POST "/api/v1/sessions/$sid2/pr" '{"draft":"yes"}' | cut -d' ' -f1)"
expect_eq "of an unknown session: 404" 404 "$(api POST /api/v1/sessions/s-aaaaaaaaaaaa/pr | cut -d' ' -f1)"

# --- on_complete = pr -------------------------------------------------------------------------------
expect_eq "on_complete=pr" 200 "$(api PATCH "/api/v1/repos/$repo_id/settings" '{"on_complete":"pr","pr_draft":false}' | cut -d' ' -f1)"
sid3=$(session 'echo auto > auto.txt')
for _ in $(seq 1 100); do events "$sid3" | grep -q '"type": "pr"' && break; sleep 0.1; done
expect_match "a completed session gets its pull request (pr event)" '"type": "pr"' "$(events "$sid3" | grep '"type": "pr"')"
expect_eq "its branch was pushed" "$(git -C "$(mirror_of "$repo_id")" rev-parse "nightshift/$sid3")" \
  "$(git -C "$B" rev-parse "refs/heads/nightshift/$sid3" 2>/dev/null)"
expect_match "a push event too" '"ok": true' "$(events "$sid3" | grep '"type": "push"')"
expect_eq "the request: head nightshift/$sid3, not a draft" "nightshift/$sid3 False" \
  "$(last_req POST /repos/octo/remote/pulls 'b["head"]+" "+str(b["draft"])')"
sid4=$(session 'true')
sleep 1
expect_eq "a session without commits opens none" "" "$(events "$sid4" | grep -E '"type": "(pr|push)"')"
api PATCH "/api/v1/repos/$repo_id/settings" '{"on_complete":"push"}' >/dev/null
n_pulls=$(grep -c '"path": "/repos/octo/remote/pulls"' "$GHLOG")
sid6=$(session 'echo six > six.txt')
for _ in $(seq 1 100); do events "$sid6" | grep -q '"type": "push"' && break; sleep 0.1; done
expect_eq "on_complete=push: the branch is pushed" "$(git -C "$(mirror_of "$repo_id")" rev-parse "nightshift/$sid6")" \
  "$(git -C "$B" rev-parse "refs/heads/nightshift/$sid6" 2>/dev/null)"
expect_eq "and no pull request is opened" "$n_pulls" "$(grep -c '"path": "/repos/octo/remote/pulls"' "$GHLOG")"
api PATCH "/api/v1/repos/$repo_id/settings" '{"on_complete":null}' >/dev/null

# --- settings go with their repository ---------------------------------------------------------------
make_repo "$NS_TMP/src/gone"
gone=$(jget "$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/gone\",\"name\":\"gone\"}" | cut -d' ' -f2-)" 'd["id"]')
api PATCH "/api/v1/repos/$gone/settings" '{"on_complete":"push"}' >/dev/null
expect_eq "a repository without sessions is deleted" 204 "$(api DELETE "/api/v1/repos/$gone" | cut -d' ' -f1)"
expect_eq "and its settings with it" 0 "$($PY -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from settings where key=?",("repo:"+sys.argv[2],)).fetchone()[0])' "$SV_DATA/nightshift.db" "$gone")"

# --- comment-back ------------------------------------------------------------------------------------
GH_SECRET=gh-hook-secret-$RANDOM$RANDOM
api PUT /api/v1/secrets/GITHUB_WEBHOOK_SECRET "{\"value\":\"$GH_SECRET\"}" >/dev/null
printf '%s' '{"action":"created","comment":{"body":"/nightshift echo hi","author_association":"OWNER"},"issue":{"number":7},"repository":{"name":"remote","full_name":"octo/remote"}}' > "$NS_TMP/ic.json"
sig=$($PY -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), open(sys.argv[2],"rb").read(), hashlib.sha256).hexdigest())' "$GH_SECRET" "$NS_TMP/ic.json")
r=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' -H 'X-GitHub-Event: issue_comment' \
    -H "X-GitHub-Delivery: pr-d-1" -H "X-Hub-Signature-256: sha256=$sig" --data-binary "@$NS_TMP/ic.json" "$SV_URL/api/v1/hooks/github")
expect_eq "an issue_comment starts a session (201)" 201 "$(printf '%s' "$r" | tail -n1)"
hsid=$(jget "$(printf '%s' "$r" | sed '$d')" 'd["id"]')
for _ in $(seq 1 100); do [ "$(last_req POST /repos/octo/remote/issues/7/comments 'r["path"]')" != "<none>" ] && break; sleep 0.1; done
expect_match "GitHub gets a comment on issue 7 with the session's link" "nightshift started session $hsid: http://127.0.0.1:$SV_PORT/#/s/$hsid" \
  "$(last_req POST /repos/octo/remote/issues/7/comments 'b["body"]')"
expect_eq "with the token" "Bearer $TOKEN" "$(last_req POST /repos/octo/remote/issues/7/comments 'r["headers"].get("authorization")')"
tap_done
