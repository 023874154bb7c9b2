#!/usr/bin/env bash
# Triggers, continued: Linear webhooks (Linear-Signature HMAC from the vault, a signed timestamp
# at most 60 s off, Linear-Delivery dedupe, the trigger label, team → repository mapping) and the
# generic hook (POST /api/v1/hooks/generic with a token of scope "hook", good for nothing else);
# old delivery ids are pruned past the replay window.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --hook-agent command --hook-linear-teams ENG=lin-repo,OPS=nope
make_repo "$NS_TMP/src/lin-repo"
json() { $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
LIN_SECRET='linear-webhook-secret-0123456789'
count() { jget "$(api GET /api/v1/sessions | cut -d' ' -f2-)" 'len(d["sessions"])'; }
dbq() { $PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchall(); c.commit(); print("\n".join("|".join(map(str,x)) for x in r))' "$SV_DATA/nightshift.db" "$1"; }

# issue NAME ACTION PYTHON-STATEMENTS: a Linear Issue webhook body (timestamp now), rewritten, into NAME.json
issue() {
  local out=$NS_TMP/$1.json
  $PY - "$out" "$2" <<EOF
import json, sys, time
d = {"action": sys.argv[2], "type": "Issue", "createdAt": "2026-01-01T00:00:00.000Z",
     "organizationId": "org-1", "webhookId": "wh-1", "webhookTimestamp": int(time.time() * 1000),
     "url": "https://linear.app/acme/issue/ENG-42/x",
     "data": {"id": "iss-1", "identifier": "ENG-42", "title": "echo linear-title-ok",
              "description": "echo linear-desc-\$((6*7))", "teamId": "team-eng-id",
              "team": {"id": "team-eng-id", "key": "ENG", "name": "Engineering"},
              "labelIds": ["lab-ns"], "labels": [{"id": "lab-ns", "name": "Nightshift", "color": "#fff"}]}}
$3
open(sys.argv[1], "w").write(json.dumps(d))
EOF
  echo "$out"
}
# lin DELIVERY FILE [SECRET]: POST it signed; prints "STATUS BODY"
lin() {
  local sig out
  sig=$($PY -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), open(sys.argv[2],"rb").read(), hashlib.sha256).hexdigest())' \
        "${3:-$LIN_SECRET}" "$2")
  out=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' -H 'Linear-Event: Issue' \
        -H "Linear-Delivery: $1" -H "Linear-Signature: $sig" --data-binary "@$2" "$SV_URL/api/v1/hooks/linear")
  printf '%s %s' "$(printf '%s' "$out" | tail -n1)" "$(printf '%s' "$out" | sed '$d')"
}

P_NEW=$(issue p_new create 'pass')
expect_eq "no secret in the vault: the Linear hook is off (503)" 503 "$(lin l-0 "$P_NEW" | cut -d' ' -f1)"
r=$(api PUT /api/v1/secrets/LINEAR_WEBHOOK_SECRET "{\"value\":$(json "$LIN_SECRET")}")
expect_eq "the Linear secret goes into the vault" 201 "${r%% *}"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/lin-repo\",\"name\":\"lin-repo\"}")
expect_eq "register lin-repo (ENG's repository)" 201 "${r%% *}"

# --- refused and ignored deliveries start nothing -------------------------------------------------
expect_eq "a wrong signature: 401" 401 "$(lin l-1 "$P_NEW" wrong-secret-000 | cut -d' ' -f1)"
r=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Linear-Delivery: l-2' --data-binary "@$P_NEW" "$SV_URL/api/v1/hooks/linear")
expect_eq "no signature: 401" 401 "$r"
P_STALE=$(issue p_stale create 'd["webhookTimestamp"] -= 120000')
expect_eq "a timestamp 2 minutes old: 401" 401 "$(lin l-3 "$P_STALE" | cut -d' ' -f1)"
P_FUTURE=$(issue p_future create 'd["webhookTimestamp"] += 120000')
expect_eq "a timestamp 2 minutes ahead: 401" 401 "$(lin l-4 "$P_FUTURE" | cut -d' ' -f1)"
P_NOTS=$(issue p_nots create 'del d["webhookTimestamp"]')
expect_eq "no timestamp: 401" 401 "$(lin l-5 "$P_NOTS" | cut -d' ' -f1)"
P_NOLABEL=$(issue p_nolabel create 'd["data"]["labels"]=[{"id":"lab-bug","name":"bug"}]; d["data"]["labelIds"]=["lab-bug"]')
expect_eq "an issue without the label: 202 ignored" "202 ignored" \
  "$(r=$(lin l-6 "$P_NOLABEL"); echo "${r%% *} $(jget "${r#* }" 'd["status"]')")"
P_EDIT=$(issue p_edit update 'd["updatedFrom"]={"title":"old"}')
expect_eq "an edit of an issue that had the label already: 202" 202 "$(lin l-7 "$P_EDIT" | cut -d' ' -f1)"
P_OPS=$(issue p_ops create 'd["data"]["team"]={"id":"t-x","key":"DES","name":"Design"}; d["data"]["teamId"]="t-x"')
expect_eq "an issue of a team mapped to no repository: 202" 202 "$(lin l-8 "$P_OPS" | cut -d' ' -f1)"
P_COMMENT=$(issue p_comment create 'd["type"]="Comment"')
expect_eq "a comment event: 202" 202 "$(lin l-9 "$P_COMMENT" | cut -d' ' -f1)"
P_REMOVE=$(issue p_remove remove 'pass')
expect_eq "a removed issue: 202" 202 "$(lin l-10 "$P_REMOVE" | cut -d' ' -f1)"
expect_eq "none of those started a session" 0 "$(count)"

# --- a labelled new issue, and the edit that adds the label, start sessions ---------------------
r=$(lin l-11 "$P_NEW")
expect_eq "a new issue labelled nightshift (any case), team ENG: 201" 201 "${r%% *}"
sid=$(jget "${r#* }" 'd["id"]')
expect_eq "on the team's repository" "$(jget "$(api GET /api/v1/repos | cut -d' ' -f2-)" '[x["id"] for x in d["repos"] if x["name"]=="lin-repo"][0]')" \
  "$(jget "${r#* }" 'd["repo"]')"
expect_eq "titled after the issue" "Linear ENG-42: echo linear-title-ok" "$(jget "${r#* }" 'd["title"]')"
expect_match "the answer links the session" "/#/s/$sid\$" "$(jget "${r#* }" 'd["url"]')"
expect_eq "its session runs the title and description and completes" completed "$(wait_state "$sid" completed failed)"
out=$(output_of "$sid")
expect_match "the title was in the prompt" 'linear-title-ok' "$out"
expect_match "the description too" 'linear-desc-42' "$out"
expect_eq "the same delivery again: 409" 409 "$(lin l-11 "$P_NEW" | cut -d' ' -f1)"
P_ADD=$(issue p_add update 'd["updatedFrom"]={"labelIds":["lab-bug"]}')
r=$(lin l-12 "$P_ADD")
expect_eq "an edit that adds the label: 201" 201 "${r%% *}"
expect_eq "two sessions now" 2 "$(count)"

# --- the generic hook and its token's scope ---------------------------------------------------------
HOOK_TOKEN=$(as_user "$NIGHTSHIFT" token create ci-bot --scope hook --data-dir "$SV_DATA" 2>/dev/null)
expect_match "a hook token is made like any other" '^nst_' "$HOOK_TOKEN"
expect_eq "token ls shows its scope" hook \
  "$(as_user "$NIGHTSHIFT" token ls --json --data-dir "$SV_DATA" | jget "$(cat)" '[t["scope"] for t in d if t["name"]=="ci-bot"][0]')"
expect_match "a bad scope is refused" 'scope' "$(as_user "$NIGHTSHIFT" token create x --scope root --data-dir "$SV_DATA" 2>&1)"
BODY='{"repo":"lin-repo","agent":"command","once":true,"prompt":"echo generic-hook-$((6*7))"}'
r=$(API_TOKEN=$HOOK_TOKEN api POST /api/v1/hooks/generic "$BODY")
expect_eq "the generic hook with the hook token: 201" 201 "${r%% *}"
gsid=$(jget "${r#* }" 'd["id"]')
expect_eq "answered as POST /api/v1/sessions is (the session, queued)" "queued s-" \
  "$(jget "${r#* }" 'd["state"]+" "+d["id"][:2]')"
expect_eq "its session completes" completed "$(wait_state "$gsid" completed failed)"
expect_match "running the body's prompt" 'generic-hook-42' "$(output_of "$gsid")"
r=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$BODY" "$SV_URL/api/v1/hooks/generic")
expect_eq "without a token: 401" 401 "$r"
expect_eq "with a wrong token: 401" 401 \
  "$(API_TOKEN=nst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA api POST /api/v1/hooks/generic "$BODY" | cut -d' ' -f1)"
expect_eq "a bad body: 400, as on /api/v1/sessions" 400 \
  "$(API_TOKEN=$HOOK_TOKEN api POST /api/v1/hooks/generic '{"repo":"lin-repo","bogus":1}' | cut -d' ' -f1)"
expect_eq "the hook token on GET /api/v1/sessions: 403" 403 "$(API_TOKEN=$HOOK_TOKEN api GET /api/v1/sessions | cut -d' ' -f1)"
expect_eq "the hook token on POST /api/v1/sessions: 403" 403 \
  "$(API_TOKEN=$HOOK_TOKEN api POST /api/v1/sessions "$BODY" | cut -d' ' -f1)"
expect_eq "the hook token on the vault: 403" 403 "$(API_TOKEN=$HOOK_TOKEN api GET /api/v1/secrets | cut -d' ' -f1)"
expect_eq "the hook token cannot log a browser in: 403" 403 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "{\"token\":\"$HOOK_TOKEN\"}" "$SV_URL/api/v1/login")"
expect_eq "the hook token cannot open the event stream" 403 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $HOOK_TOKEN" -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
     -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$SV_URL/api/v1/events")"
r=$(api POST /api/v1/hooks/generic "$BODY")
expect_eq "an API token (every route) may use the generic hook too: 201" 201 "${r%% *}"
expect_eq "four sessions now" 4 "$(count)"
wait_state "$(jget "${r#* }" 'd["id"]')" completed failed >/dev/null

# --- delivery ids older than the replay window are pruned ------------------------------------------
dbq "INSERT INTO hook_deliveries (source, delivery, received_at) VALUES ('github', 'ancient', $(( ($(date +%s) - 8*86400) * 1000 )))" >/dev/null
expect_eq "an 8-day-old delivery id is in the table" 1 "$(dbq "SELECT count(*) FROM hook_deliveries WHERE delivery = 'ancient'")"
sv_stop
sv_start || not_ok "the server restarts"
for _ in $(seq 1 50); do [ "$(dbq "SELECT count(*) FROM hook_deliveries WHERE delivery = 'ancient'")" = 0 ] && break; sleep 0.1; done
expect_eq "pruned (past the 7-day replay window)" 0 "$(dbq "SELECT count(*) FROM hook_deliveries WHERE delivery = 'ancient'")"
expect_eq "recent ones kept (replays still refused)" 409 "$(lin l-11 "$P_NEW" | cut -d' ' -f1)"
tap_done
