#!/usr/bin/env bash
# Pushing a session's branch: from the mirror to a bare repository over file://, with the CLI and
# the API; the pre-push gate refuses new commits holding a vault value, a well-known key pattern
# or touching a protected path (a `push` event says why, nothing reaches the remote); a
# non-fast-forward is rejected by the remote and reported as an error event, never forced.
. "$(dirname "$0")/sv_lib.sh"
sv_setup
CLI() { as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" "$@"; }
G() { as_user env HOME="$NS_TMP/src" git -c user.name=t -c user.email=t@t "$@"; }
# The "remote": a bare repository, seeded from a work clone with .nightshift/config protecting CI.
B=$NS_TMP/src/remote.git
G init -q --bare -b main "$B"
make_repo "$NS_TMP/src/work"
mkdir -p "$NS_TMP/src/work/.nightshift"
printf 'protected_paths = .github/workflows/, deploy/\n' > "$NS_TMP/src/work/.nightshift/config"
chown -R "$TEST_UID:$TEST_GID" "$NS_TMP/src/work"
G -C "$NS_TMP/src/work" add .nightshift/config && G -C "$NS_TMP/src/work" commit -qm cfg
G -C "$NS_TMP/src/work" push -q "$B" main
r=$(api POST /api/v1/repos "{\"path\":\"$B\",\"name\":\"remote\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
M=$(mirror_of "$repo_id")
printf 'pushgate-Secret-9137zq\n' | CLI secret set LEAK >/dev/null

session() { # session PROMPT [ENV_JSON] → the session id, after it completed
  local r sid
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"once\":true,\"prompt\":$($PY -c 'import json,sys;print(json.dumps(sys.argv[1]))' "$1"),\"env\":${2:-{\}}}")
  sid=$(jget "${r#* }" 'd["id"]')
  wait_state "$sid" completed failed >/dev/null
  echo "$sid"
}

# --- a clean push ------------------------------------------------------------------------------
sid=$(session 'echo feature > feature.txt')
out=$(CLI push "$sid" 2>&1)
expect_match "nightshift push ID pushes the branch" "pushed nightshift/$sid" "$out"
expect_eq "the remote has the branch at the mirror's commit" "$(git -C "$M" rev-parse "nightshift/$sid")" \
  "$(git -C "$B" rev-parse "refs/heads/nightshift/$sid" 2>/dev/null)"
expect_match "a push event records it" '"ok": true' "$(events "$sid" | grep '"type": "push"')"
expect_eq "pushing again (nothing new) is fine" 200 "$(api POST "/api/v1/sessions/$sid/push" | cut -d' ' -f1)"

# --- the gate ------------------------------------------------------------------------------------
gate() { # gate DESCRIPTION PROMPT REASON_REGEX [ENV]
  local sid r
  sid=$(session "$2" "${4:-}")
  r=$(api POST "/api/v1/sessions/$sid/push")
  expect_eq "gate: $1: refused (422)" 422 "${r%% *}"
  expect_match "gate: $1: a push event says why" "$3" "$(events "$sid" | grep '"type": "push"')"
  expect_eq "gate: $1: nothing reached the remote" "" "$(git -C "$B" rev-parse -q --verify "refs/heads/nightshift/$sid")"
}
gate "a vault value in a file" 'printf "token=%s\n" "$S" > config.txt' 'vault secret LEAK' '{"S":"${secret:LEAK}"}'
gate "a vault value base64-encoded" 'printf %s "$S" | base64 > blob.txt' 'vault secret LEAK' '{"S":"${secret:LEAK}"}'
gate "an AWS key id" 'echo "aws_access_key_id = AKIAIOSFODNN7EXAMPLE" > aws.ini' 'AWS access key'
gate "a GitHub token" 'echo "ghp_abcdefghijklmnopqrstuvwxyz0123456789" > gh.txt' 'GitHub token'
gate "a private key" 'printf -- "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n" > id' 'private key'
gate "an Anthropic key" 'echo "sk-ant-api03-abcdefghijklmnopqrstuvwxyz" > k.txt' 'Anthropic API key'
gate "a protected path" 'mkdir -p .github/workflows && echo "on: push" > .github/workflows/ci.yml' \
  '.github/workflows/ci.yml is a protected path'
check "no push of the gate's sessions wrote anything into the remote's objects" \
  bash -c "! git -C '$B' cat-file -e \$(git -C '$M' rev-parse \$(git -C '$M' for-each-ref --format='%(refname)' 'refs/heads/nightshift/' | tail -n1)) 2>/dev/null || true"

# --- non-fast-forward ------------------------------------------------------------------------------
sid=$(session 'echo mine > mine.txt')
# Someone else put another commit on that branch name in the remote first.
G -C "$NS_TMP/src/work" checkout -q -b other && echo theirs > "$NS_TMP/src/work/theirs.txt" && chown "$TEST_UID" "$NS_TMP/src/work/theirs.txt"
G -C "$NS_TMP/src/work" add theirs.txt && G -C "$NS_TMP/src/work" commit -qm theirs
G -C "$NS_TMP/src/work" push -q "$B" "other:refs/heads/nightshift/$sid"
theirs=$(git -C "$B" rev-parse "refs/heads/nightshift/$sid")
r=$(api POST "/api/v1/sessions/$sid/push")
expect_eq "a non-fast-forward push is rejected (409)" 409 "${r%% *}"
expect_match "and reported as an error event" '"type": "error".*(fast-forward|fastforward|rejected|not present locally)' "$(events "$sid" | grep '"error"')"
expect_eq "the remote's branch is untouched (never forced)" "$theirs" "$(git -C "$B" rev-parse "refs/heads/nightshift/$sid")"
expect_eq "CLI push of it exits 1" 1 "$(CLI push "$sid" >/dev/null 2>&1; echo $?)"
expect_eq "push of an unknown session: 404" 404 "$(api POST /api/v1/sessions/s-aaaaaaaaaaaa/push | cut -d' ' -f1)"
tap_done
