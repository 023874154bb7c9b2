#!/usr/bin/env bash
# The secrets vault: the key file, the API and CLI (values write-only, scopes, bad input), secrets
# reaching a session only as ${secret:NAME} resolved at exec time, and redaction: after an agent
# prints a secret plainly, base64-, URL- and hex-encoded, no form of it is anywhere — not in any
# file of the data dir (raw bytes, the SQLite -wal included), any API response, event, the
# transcript or the server's log.
. "$(dirname "$0")/sv_lib.sh"
sv_setup
make_repo "$NS_TMP/src/app"
CLI() { as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" "$@"; }
json() { $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

# --- the master key ----------------------------------------------------------------------------
K=$SV_DATA/vault.key
expect_eq "the key file is made on first start: 32 bytes, 0600, the server's user" "32 600 $TEST_UID" \
  "$(stat -c '%s %a %u' "$K" 2>/dev/null)"

# --- the API -------------------------------------------------------------------------------------
# A value with characters that URL-encoding changes, so each form differs from the plain one.
V='nsV4ult/s3cret+Val=ue&x y~7Qz'
r=$(api PUT /api/v1/secrets/LEAK "{\"value\":$(json "$V")}")
expect_eq "PUT a global secret: 201" 201 "${r%% *}"
r=$(api PUT /api/v1/secrets/LEAK "{\"value\":$(json "$V")}")
expect_eq "PUT it again (rotation): 200" 200 "${r%% *}"
r=$(api GET /api/v1/secrets)
expect_eq "GET lists its name and size" "LEAK ${#V} global" \
  "$(jget "${r#* }" '" ".join(str(x) for s in d["secrets"] for x in (s["name"],s["size"],s["scope"]))')"
expect_eq "and never a value" "" "$(jget "${r#* }" '[k for s in d["secrets"] for k in s if k=="value"] or ""')"
expect_eq "a bad name: 400" 400 "$(api PUT '/api/v1/secrets/1BAD' '{"value":"abcdef"}' | cut -d' ' -f1)"
expect_eq "a name with a dot: 400" 400 "$(api PUT '/api/v1/secrets/a.b' '{"value":"abcdef"}' | cut -d' ' -f1)"
expect_eq "an over-long name: 404 (no route takes it)" 404 \
  "$(api PUT "/api/v1/secrets/$(printf 'A%.0s' $(seq 1 80))" '{"value":"abcdef"}' | cut -d' ' -f1)"
expect_eq "a value too short to redact: 400" 400 "$(api PUT /api/v1/secrets/SHORT '{"value":"ab"}' | cut -d' ' -f1)"
big=$($PY -c 'print("{\"value\":\"" + "x"*70000 + "\"}")')
expect_eq "a value over 64 KiB: 413" 413 "$(api PUT /api/v1/secrets/BIG "$big" | cut -d' ' -f1)"
expect_eq "an unknown key: 400" 400 "$(api PUT /api/v1/secrets/X1 '{"value":"abcdef","x":1}' | cut -d' ' -f1)"
expect_eq "a value that is not a string: 400" 400 "$(api PUT /api/v1/secrets/X1 '{"value":12345}' | cut -d' ' -f1)"
expect_eq "nothing of the bad requests was stored" "LEAK" \
  "$(jget "$(api GET /api/v1/secrets | cut -d' ' -f2-)" '" ".join(s["name"] for s in d["secrets"])')"
expect_eq "without a token: 401" 401 "$(API_TOKEN=nst_bad api GET /api/v1/secrets | cut -d' ' -f1)"

# The CLI: the value from stdin.
printf 'cli-value-123\n' | CLI secret set FROM_CLI >/dev/null
expect_match "nightshift secret set/ls" 'FROM_CLI +13 bytes' "$(CLI secret ls 2>&1)"
expect_eq "secret rm" "removed FROM_CLI" "$(CLI secret rm FROM_CLI 2>&1)"
expect_eq "removing it again: 404, exit 1" 1 "$(CLI secret rm FROM_CLI >/dev/null 2>&1; echo $?)"
expect_eq "DELETE of a missing secret: 404" 404 "$(api DELETE /api/v1/secrets/NOPE | cut -d' ' -f1)"

# Per-repository scope: the repository's own value wins over the global one.
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\",\"name\":\"app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
printf 'global-scope-value\n' | CLI secret set SCOPED >/dev/null
printf 'repo-scope-value\n' | CLI secret set SCOPED --repo app >/dev/null
expect_match "secret ls --repo lists the repository's own" 'SCOPED' "$(CLI secret ls --repo app 2>&1)"
expect_eq "a secret of an unknown repository: 404" 404 \
  "$(api PUT /api/v1/repos/r-aaaaaaaaaaaa/secrets/X1 '{"value":"abcdef"}' | cut -d' ' -f1)"

# --- a session that prints the secret in every form ------------------------------------------------
prog='import os,base64,urllib.parse,sys
v=os.environ["S"]; b=v.encode()
print("plain:", v)
print("b64:", base64.b64encode(b).decode())
print("b64url:", base64.urlsafe_b64encode(b).decode())
print("b64-shifted:", base64.b64encode(b"z"+b).decode(), base64.b64encode(b"zz"+b).decode())
print("url:", urllib.parse.quote(v, safe=""), urllib.parse.quote(v), urllib.parse.quote_plus(v))
print("hex:", b.hex(), b.hex().upper())
print("stderr:", v, file=sys.stderr)
print("scoped:", __import__("hashlib").sha256(os.environ["T"].encode()).hexdigest())'
printf '%s' "$prog" > "$NS_TMP/src/leak.py"; chown "$TEST_UID" "$NS_TMP/src/leak.py"
body=$($PY -c 'import json,sys; print(json.dumps({"repo":sys.argv[1],"once":True,
  "prompt":"python3 -c \"$P\"", "env":{"S":"${secret:LEAK}","T":"${secret:SCOPED}","P":open(sys.argv[2]).read()}}))' \
  "$repo_id" "$NS_TMP/src/leak.py")
r=$(api POST /api/v1/sessions "$body")
sid=$(jget "${r#* }" 'd["id"]')
expect_eq "the session completes" completed "$(wait_state "$sid" completed failed)"
out=$(output_of "$sid"); printf "%s\n" "$out" | sed "s/^/# /"
expect_match "the agent's output is there, the secret replaced" 'plain: \[secret:LEAK\]' "$out"
expect_match "base64 replaced" 'b64: \[secret:LEAK\]' "$out"
expect_match "URL-encoded replaced" 'url: \[secret:LEAK\]' "$out"
expect_match "hex replaced" 'hex: \[secret:LEAK\] \[secret:LEAK\]' "$out"
expect_match "the repository's value won (its hash)" \
  "scoped: $(printf 'repo-scope-value' | sha256sum | cut -d' ' -f1)" "$out"

# Every form the agent printed, as raw bytes (with the alignment-shifted base64's core).
$PY - "$V" > "$NS_TMP/forms" <<'EOF'
import base64, urllib.parse, sys
v = sys.argv[1]; b = v.encode()
forms = {v, base64.b64encode(b).decode(), base64.urlsafe_b64encode(b).decode(),
         base64.b64encode(b).decode().rstrip("="), base64.b64encode(b"z"+b).decode()[2:-3],
         base64.b64encode(b"zz"+b).decode()[3:-3], urllib.parse.quote(v, safe=""), urllib.parse.quote(v),
         urllib.parse.quote_plus(v), b.hex(), b.hex().upper(), "repo-scope-value", "global-scope-value"}
for f in sorted(forms): print(f)
EOF
found=
while IFS= read -r f; do
  [ -n "$f" ] || continue
  grep -rlaF -- "$f" "$SV_DATA" >/dev/null 2>&1 && found="$found data-dir:$f"
  grep -qaF -- "$f" "$NS_TMP/nightshift.log" && found="$found log:$f"
  for p in "/api/v1/sessions/$sid/events?limit=1000" "/api/v1/sessions/$sid/log" "/api/v1/sessions/$sid" \
           /api/v1/sessions /api/v1/secrets "/api/v1/repos/$repo_id/secrets"; do
    api GET "$p" | grep -qaF -- "$f" && found="$found api:$p:$f"
  done
done < "$NS_TMP/forms"
expect_eq "no form of any secret in the data dir (db, -wal, mirrors), the log or any API answer" "" "$found"
check "the data dir has a -wal to look into" test -e "$SV_DATA/nightshift.db-wal" -o -e "$SV_DATA"/*.db-wal
check "the stored env keeps the reference, not the value" \
  grep -qaF '${secret:LEAK}' "$SV_DATA"/*.db "$SV_DATA"/*.db-wal

# A reference to a secret that does not exist fails the turn, saying which.
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"once\":true,\"prompt\":\"true\",\"env\":{\"X\":\"\${secret:MISSING}\"}}")
sid2=$(jget "${r#* }" 'd["id"]')
expect_eq "a missing secret fails the session" failed "$(wait_state "$sid2" completed failed)"
expect_match "with an error naming it" 'no secret named MISSING' "$(events "$sid2" | grep '"error"')"

# --- the session's identity ----------------------------------------------------------------------
# Per repository, from its .nightshift/config; in the sandbox both as GIT_* and in the session's
# own git config (so `git commit` by the agent uses it too); the commit in the mirror carries it.
make_repo "$NS_TMP/src/idrepo"
mkdir -p "$NS_TMP/src/idrepo/.nightshift"
printf 'git_name = bot-{agent} {session}\ngit_email = {session}+{agent}@agents.example\n' > "$NS_TMP/src/idrepo/.nightshift/config"
chown -R "$TEST_UID:$TEST_GID" "$NS_TMP/src/idrepo"
as_user env HOME="$NS_TMP/src/idrepo" git -C "$NS_TMP/src/idrepo" add .nightshift/config
as_user env HOME="$NS_TMP/src/idrepo" git -C "$NS_TMP/src/idrepo" -c user.name=t -c user.email=t@t commit -qm cfg
api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/idrepo\",\"name\":\"idrepo\"}" >/dev/null
r=$(api POST /api/v1/sessions "{\"repo\":\"idrepo\",\"once\":true,\"prompt\":\"git config user.name; git config user.email; echo \$GIT_AUTHOR_NAME; echo x > f.txt; git add f.txt; git commit -qm own; git log -1 --format=%an/%ae\"}")
sid3=$(jget "${r#* }" 'd["id"]')
expect_eq "the identity session completes" completed "$(wait_state "$sid3" completed failed)"
o3=$(output_of "$sid3")
expect_eq "git config user.name/email and GIT_AUTHOR_NAME inside; the agent's own commit uses them" \
  "bot-command $sid3|$sid3+command@agents.example|bot-command $sid3|bot-command $sid3/$sid3+command@agents.example" \
  "$(printf '%s' "$o3" | paste -sd'|')"
idrepo=$(jget "$(api GET /api/v1/repos | cut -d' ' -f2-)" '[x["id"] for x in d["repos"] if x["name"]=="idrepo"][0]')
expect_eq "the session's commit in the mirror carries it" "bot-command $sid3 <$sid3+command@agents.example>" \
  "$(git -C "$(mirror_of "$idrepo")" log -1 --format='%an <%ae>' "nightshift/$sid3" 2>/dev/null)"

# --- the key file's protection --------------------------------------------------------------------
sv_stop
chmod 644 "$K"
: > "$NS_TMP/nightshift.log.2"
setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --clear-groups -- "$NIGHTSHIFT" serve --listen 127.0.0.1:0 \
  --data-dir "$SV_DATA" --workspace-root "$SV_WS" --sandboxd-socket "$NS_SOCK" 2>"$NS_TMP/nightshift.log.2" &
p=$!
for _ in $(seq 1 100); do kill -0 $p 2>/dev/null || break; sleep 0.1; done
kill -0 $p 2>/dev/null && kill $p; wait $p 2>/dev/null
expect_match "a key file readable by others is refused at start" 'vault.key is readable or writable by others' \
  "$(cat "$NS_TMP/nightshift.log.2")"
chmod 600 "$K"
sv_start >/dev/null
expect_eq "with 0600 again the server starts and its secrets still open (list)" "LEAK SCOPED" \
  "$(jget "$(api GET /api/v1/secrets | cut -d' ' -f2-)" '" ".join(s["name"] for s in d["secrets"])')"

tap_done
