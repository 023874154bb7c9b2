#!/usr/bin/env bash
# Outgoing notifications: endpoints are validated (a bad URL is refused and nothing stored); a
# session's completed/failed states reach a receiver of the test's own on loopback in the Slack
# and the signed JSON formats; a receiver that fails twice then succeeds gets exactly one
# delivery recorded as succeeded after 3 attempts; a 404 fails at once; a delivery pending when
# the server is killed is resumed by the next start; no secret value is in any payload.
. "$(dirname "$0")/sv_lib.sh"
# `waiting` needs an agent that asks: the real claude CLI against the scripted model server.
AGENTS_DIR=${NS_AGENTS_DIR:-/var/lib/nightshift/agents}
[ -x "$AGENTS_DIR/bin/claude" ] && export NS_DAEMON_ARGS="--ro-root $AGENTS_DIR" SV_AGENTS_DIR=$AGENTS_DIR
sv_setup --hook-agent command --notify-max-attempts 4 --notify-timeout 3 --notify-backoff-max 4 \
  --public-url http://dash.example:1234/
make_repo "$NS_TMP/src/app"
json() { $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
SIG_SECRET='notify-signing-secret-0123456789'
LEAK='leaky-value-9f8e7d6c5b4a'

# --- the receiver: every request into recv.jsonl; /flaky* answer 500 twice, then 200; /gone 404 -
RECV_PORT=$(free_port)
cat > "$NS_TMP/recv.py" <<'EOF'
import hashlib, hmac, http.server, json, sys, threading, time
port, log, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
seen, lock = {}, threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sig = self.headers.get("X-Nightshift-Signature")
        good = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        with lock:
            n = seen[self.path] = seen.get(self.path, 0) + 1
        if self.path == "/slow" and n == 1:  # the first one hangs (the server is stopped meanwhile)
            open(log + ".slow", "w").close(); time.sleep(20)
        with lock:
            code = 404 if self.path == "/gone" else 500 if self.path.startswith("/flaky") and n <= 2 else 200
            with open(log, "a") as f:
                f.write(json.dumps({"path": self.path, "code": code, "body": body.decode("latin-1"),
                                    "sig": sig, "sig_ok": sig is not None and hmac.compare_digest(sig, good),
                                    "delivery": self.headers.get("X-Nightshift-Delivery"),
                                    "event": self.headers.get("X-Nightshift-Event")}) + "\n")
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
: > "$NS_TMP/recv.jsonl"
$PY "$NS_TMP/recv.py" "$RECV_PORT" "$NS_TMP/recv.jsonl" "$SIG_SECRET" &
RECV_PID=$!
trap 'kill $RECV_PID 2>/dev/null; sv_stop; sv_log_tail; ns_cleanup' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$RECV_PORT/" && break; sleep 0.1; done
R=http://127.0.0.1:$RECV_PORT
# recv PYTHON-EXPR over `rs` (the requests received so far)
recv() { $PY -c "import json,sys; rs=[json.loads(l) for l in open(sys.argv[1])]; v=$1; print(v if not isinstance(v,(dict,list)) else json.dumps(v))" "$NS_TMP/recv.jsonl"; }
# dbq SQL: a query on the server's database (read-only)
dbq() { $PY -c 'import sqlite3,sys; c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro",uri=True); print("\n".join("|".join(map(str,r)) for r in c.execute(sys.argv[2])))' "$SV_DATA/nightshift.db" "$1"; }
# deliveries SID PYTHON-EXPR over `ds` (the log's entries of that session)
deliveries() { jget "$(api GET "/api/v1/notifications/deliveries?session=$1" | cut -d' ' -f2-)" "(lambda ds: $2)(d['deliveries'])"; }
# wait_deliveries SID N: until N of its deliveries are finished (succeeded or failed)
wait_deliveries() {
  for _ in $(seq 1 300); do
    [ "$(deliveries "$1" 'sum(x["status"]!="pending" for x in ds)')" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- bad endpoints: 400, nothing stored ------------------------------------------------------------
long_url="http://127.0.0.1/$(head -c 3000 /dev/zero | tr '\0' a)"
for bad in '{"url":"ftp://127.0.0.1/x"}' '{"url":"javascript:alert(1)"}' '{"url":"http://"}' \
           '{"url":"http://user:pw@127.0.0.1/x"}' '{"url":"http://127.0.0.1/a b"}' "{\"url\":\"$long_url\"}" \
           '{"url":"file:///etc/passwd"}' '{"url":"http://127.0.0.1/x","format":"xml"}' \
           '{"url":"http://127.0.0.1/x","events":["deleted"]}' '{"url":"http://127.0.0.1/x","events":[]}' \
           '{"url":"http://127.0.0.1/x","events":["failed","failed"]}' '{"url":"http://127.0.0.1/x","bogus":1}' \
           '{"url":"http://127.0.0.1/x","format":"slack","secret":"X_Y"}' '{"url":"http://127.0.0.1/x","secret":"a b"}' \
           '{"url":7}' '{}'; do
  r=$(api POST /api/v1/notifications/endpoints "$bad")
  [ "${r%% *}" = 400 ] || not_ok "bad endpoint ${bad:0:60} refused with 400 (got ${r:0:120})"
done
ok "bad endpoints (not http/https, no host, user info, blanks, too long, bad format/events/keys): 400"
expect_eq "an endpoint of an unknown repository: 404" 404 \
  "$(api POST /api/v1/notifications/endpoints '{"url":"http://127.0.0.1/x","repo":"nope"}' | cut -d' ' -f1)"
expect_eq "none of them was stored (API)" 0 "$(jget "$(api GET /api/v1/notifications/endpoints | cut -d' ' -f2-)" 'len(d["endpoints"])')"
expect_eq "none of them was stored (SQLite)" 0 "$(dbq 'SELECT count(*) FROM notify_endpoints')"

# --- setup: secrets, a repository, three endpoints -----------------------------------------------
for kv in "NOTIFY_SIGNING_SECRET=$SIG_SECRET" "LEAKY=$LEAK"; do
  r=$(api PUT "/api/v1/secrets/${kv%%=*}" "{\"value\":$(json "${kv#*=}")}")
  expect_eq "secret ${kv%%=*} into the vault" 201 "${r%% *}"
done
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\",\"name\":\"app\"}")
expect_eq "register the repository" 201 "${r%% *}"
r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/flaky\",\"events\":[\"completed\"]}")
expect_eq "a JSON endpoint for completions: 201" 201 "${r%% *}"
EP_JSON=$(jget "${r#* }" 'd["id"]')
expect_eq "its defaults: format json, signed with NOTIFY_SIGNING_SECRET" "json NOTIFY_SIGNING_SECRET" \
  "$(jget "${r#* }" 'd["format"]+" "+d["secret"]')"
r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/slack\",\"format\":\"slack\",\"events\":[\"failed\",\"completed\"],\"repo\":\"app\"}")
expect_eq "a Slack endpoint for app's completions and failures: 201" 201 "${r%% *}"
expect_eq "its events, in a fixed order" '["completed", "failed"]' "$(jget "${r#* }" 'd["events"]')"
r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/gone\",\"events\":[\"completed\"]}")
EP_GONE=$(jget "${r#* }" 'd["id"]')
expect_eq "three endpoints listed" 3 "$(jget "$(api GET /api/v1/notifications/endpoints | cut -d' ' -f2-)" 'len(d["endpoints"])')"

# --- a session that completes, printing a secret; its title holds the secret too -----------------
r=$(api POST /api/v1/sessions "{\"repo\":\"app\",\"agent\":\"command\",\"once\":true,\"title\":\"deploy $LEAK\",\"prompt\":\"echo $LEAK\"}")
expect_eq "a session whose title and output carry a secret: 201" 201 "${r%% *}"
sid=$(jget "${r#* }" 'd["id"]')
expect_eq "it completes" completed "$(wait_state "$sid" completed failed)"
wait_deliveries "$sid" 3 || not_ok "its three deliveries finished in time"
expect_eq "the flaky receiver: one delivery, succeeded after 3 attempts, last HTTP 200" "succeeded 3 200" \
  "$(deliveries "$sid" '" ".join(str(x[k]) for x in ds if x["url"].endswith("/flaky") for k in ("status","attempts","last_code"))')"
expect_eq "exactly one delivery to it in the log" 1 "$(deliveries "$sid" 'sum(x["url"].endswith("/flaky") for x in ds)')"
expect_eq "the receiver got 3 requests: 500, 500, 200" "500,500,200" \
  "$(recv '",".join(str(x["code"]) for x in rs if x["path"]=="/flaky")')"
expect_eq "one payload answered with success" 1 "$(recv 'sum(x["path"]=="/flaky" and x["code"]==200 for x in rs)')"
expect_eq "every attempt carried the same delivery id" 1 "$(recv 'len({x["delivery"] for x in rs if x["path"]=="/flaky"})')"
expect_eq "every JSON payload's signature verified by the receiver" "3 True" \
  "$(recv 'str(sum(x["path"]=="/flaky" for x in rs))+" "+str(all(x["sig_ok"] for x in rs if x["path"]=="/flaky"))')"
J=$(recv '[x for x in rs if x["path"]=="/flaky"][-1]["body"]')
expect_eq "the JSON payload: event, session, state, repository, dashboard link" \
  "session.completed $sid completed app http://dash.example:1234/#/s/$sid" \
  "$(jget "$J" '" ".join([d["event"], d["session_id"], d["state"], d["repo"]["name"], d["url"]])')"
expect_match "with a time" '^20[0-9-]+T[0-9:]+Z$' "$(jget "$J" 'd["time"]')"
expect_eq "the X-Nightshift-Event header" session.completed "$(recv '[x for x in rs if x["path"]=="/flaky"][-1]["event"]')"
expect_eq "the title's secret is redacted in the payload" "deploy [secret:LEAKY]" "$(jget "$J" 'd["title"]')"
S=$(recv '[x for x in rs if x["path"]=="/slack"][-1]["body"]')
expect_eq "the Slack endpoint: one message, {\"text\"} only, unsigned" '1 ["text"] None' \
  "$(recv 'str(sum(x["path"]=="/slack" for x in rs))')$(jget "$S" '" "+json.dumps(sorted(d))')$(recv '" "+str([x for x in rs if x["path"]=="/slack"][-1]["sig"])')"
expect_match "its text: the title linked to the dashboard, the session, the state" \
  "<http://dash\\.example:1234/#/s/$sid\\|deploy \\[secret:LEAKY\\]> \\($sid, app\\) is \\*completed\\*" "$(jget "$S" 'd["text"]')"
expect_eq "a 404 fails at once: failed, 1 attempt, last HTTP 404" "failed 1 404" \
  "$(deliveries "$sid" '" ".join(str(x[k]) for x in ds if x["url"].endswith("/gone") for k in ("status","attempts","last_code"))')"
expect_eq "no payload received holds the secret" 0 "$(recv "sum('$LEAK' in x['body'] for x in rs)")"
expect_eq "no payload stored holds it (SQLite)" 0 "$(dbq "SELECT count(*) FROM notifications WHERE instr(payload, '$LEAK') > 0")"
expect_eq "the log in SQLite agrees" "succeeded|3|200" \
  "$(dbq "SELECT status, attempts, last_code FROM notifications WHERE session_id = '$sid' AND url LIKE '%/flaky'")"

# --- a failing session: only the endpoints that want failures hear of it -------------------------
r=$(api DELETE "/api/v1/notifications/endpoints/$EP_GONE")
expect_eq "delete an endpoint: 204" 204 "${r%% *}"
expect_eq "delete it again: 404" 404 "$(api DELETE "/api/v1/notifications/endpoints/$EP_GONE" | cut -d' ' -f1)"
r=$(api POST /api/v1/sessions '{"repo":"app","agent":"command","once":true,"prompt":"exit 3"}')
fsid=$(jget "${r#* }" 'd["id"]')
expect_eq "a session whose command fails ends failed" failed "$(wait_state "$fsid" completed failed)"
wait_deliveries "$fsid" 1 || not_ok "its delivery finished in time"
expect_eq "one delivery: Slack, event failed, succeeded" "1 failed succeeded" \
  "$(deliveries "$fsid" 'str(len(ds))+" "+ds[0]["event"]+" "+ds[0]["status"]')"
expect_match "the Slack text says failed" "\\($fsid, app\\) is \\*failed\\*" \
  "$(jget "$(recv '[x for x in rs if x["path"]=="/slack"][-1]["body"]')" 'd["text"]')"

# --- an agent that asks a question: waiting ------------------------------------------------------
if [ -n "${SV_AGENTS_DIR:-}" ]; then
  $PY "$NS_SRC/tests/helpers/model_server.py" --port 0 --log "$NS_TMP/model.jsonl" >"$NS_TMP/ms.out" 2>"$NS_TMP/ms.err" &
  MS_PID=$!
  trap 'kill $RECV_PID $MS_PID 2>/dev/null; sv_stop; sv_log_tail; ns_cleanup' EXIT
  MPORT=
  for _ in $(seq 1 100); do MPORT=$(head -n1 "$NS_TMP/ms.out" 2>/dev/null); [ -n "$MPORT" ] && break; sleep 0.05; done
  r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/wait\",\"events\":[\"waiting\"]}")
  expect_eq "a JSON endpoint for questions" 201 "${r%% *}"
  env_json="{\"ANTHROPIC_BASE_URL\":\"http://127.0.0.1:$MPORT\",\"ANTHROPIC_API_KEY\":\"placeholder\"}"
  r=$(api POST /api/v1/sessions "{\"repo\":\"app\",\"agent\":\"claude\",\"prompt\":\"ask\",\"env\":$env_json,\"connect\":[$MPORT],\"limits\":{\"memory\":4294967296,\"pids\":2048}}")
  wsid=$(jget "${r#* }" 'd["id"]')
  expect_eq "a claude session whose model asks a question: waiting" waiting "$(WAIT_S=120 wait_state "$wsid" waiting idle failed)"
  wait_deliveries "$wsid" 1 || not_ok "its delivery finished in time"
  expect_eq "one delivery: waiting, succeeded at once" "1 waiting succeeded 1" \
    "$(deliveries "$wsid" '" ".join([str(len(ds)), ds[0]["event"], ds[0]["status"], str(ds[0]["attempts"])])')"
  W=$(recv '[x for x in rs if x["path"]=="/wait"][-1]')
  expect_eq "the receiver got session.waiting for it, signed" "session.waiting $wsid waiting True" \
    "$(jget "$W" '" ".join([json.loads(d["body"])["event"], json.loads(d["body"])["session_id"], json.loads(d["body"])["state"], str(d["sig_ok"])])')"
  api POST "/api/v1/sessions/$wsid/stop" >/dev/null
  wait_state "$wsid" stopped completed failed >/dev/null
else
  skip "waiting: the claude CLI is not installed (rootfs/agents/install.sh)"
fi

# --- a shutdown does not wait for a hanging receiver; the attempt cut short is made after the restart
r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/slow\",\"events\":[\"completed\"]}")
EP_SLOW=$(jget "${r#* }" 'd["id"]')
r=$(api POST /api/v1/sessions '{"repo":"app","agent":"command","once":true,"prompt":"true"}')
ssid=$(jget "${r#* }" 'd["id"]')
expect_eq "a session completes" completed "$(wait_state "$ssid" completed failed)"
for _ in $(seq 1 200); do [ -e "$NS_TMP/recv.jsonl.slow" ] && break; sleep 0.05; done
t0=$(date +%s%N); sv_stop; t1=$(date +%s%N)
expect_eq "while a receiver hangs, the server stops at once (< 2 s)" yes "$([ $(( (t1 - t0) / 1000000 )) -lt 2000 ] && echo yes || echo "no: $(( (t1 - t0) / 1000000 )) ms")"
expect_eq "the attempt cut short is not counted: pending, 0 attempts" "pending|0" \
  "$(dbq "SELECT status, attempts FROM notifications WHERE session_id = '$ssid' AND url LIKE '%/slow'")"
sv_start || not_ok "the server restarts"
wait_deliveries "$ssid" 3 || not_ok "its deliveries finished after the restart"
expect_eq "after the restart it is delivered: succeeded, 1 attempt" "succeeded 1" \
  "$(deliveries "$ssid" '" ".join(str(x[k]) for x in ds if x["url"].endswith("/slow") for k in ("status","attempts"))')"
api DELETE "/api/v1/notifications/endpoints/$EP_SLOW" >/dev/null

# --- a pending delivery survives a restart ---------------------------------------------------------
api DELETE "/api/v1/notifications/endpoints/$EP_JSON" >/dev/null
r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/flaky2\",\"events\":[\"completed\"]}")
expect_eq "a second flaky endpoint" 201 "${r%% *}"
r=$(api POST /api/v1/sessions '{"repo":"app","agent":"command","once":true,"prompt":"true"}')
rsid=$(jget "${r#* }" 'd["id"]')
expect_eq "another session completes" completed "$(wait_state "$rsid" completed failed)"
for _ in $(seq 1 100); do
  [ "$(dbq "SELECT attempts FROM notifications WHERE session_id = '$rsid' AND url LIKE '%/flaky2'")" -ge 1 ] 2>/dev/null && break
  sleep 0.05
done
# The retries come 1 s and 2 s apart: the server is killed before the third attempt.
expect_match "its delivery failed and waits for a retry" '^pending\|[12]$' \
  "$(dbq "SELECT status, attempts FROM notifications WHERE session_id = '$rsid' AND url LIKE '%/flaky2'")"
sv_kill
sv_start || not_ok "the server restarts"
wait_deliveries "$rsid" 2 || not_ok "the deliveries finished after the restart"
expect_eq "after the restart it was resumed: succeeded after 3 attempts" "succeeded 3" \
  "$(deliveries "$rsid" '" ".join(str(x[k]) for x in ds if x["url"].endswith("/flaky2") for k in ("status","attempts"))')"
expect_eq "the receiver saw it answered once with success" 1 "$(recv 'sum(x["path"]=="/flaky2" and x["code"]==200 for x in rs)')"
expect_eq "bad query on the log: 400" 400 "$(api GET '/api/v1/notifications/deliveries?limit=0' | cut -d' ' -f1)"

# --- deleting an endpoint gives up its pending deliveries: no retry reaches the URL afterwards ---
r=$(api POST /api/v1/notifications/endpoints "{\"url\":\"$R/flaky3\",\"events\":[\"completed\"]}")
EP_F3=$(jget "${r#* }" 'd["id"]')
r=$(api POST /api/v1/sessions '{"repo":"app","agent":"command","once":true,"prompt":"true"}')
dsid=$(jget "${r#* }" 'd["id"]')
expect_eq "a session for the endpoint about to go completes" completed "$(wait_state "$dsid" completed failed)"
for _ in $(seq 1 100); do
  [ "$(dbq "SELECT attempts FROM notifications WHERE session_id = '$dsid' AND url LIKE '%/flaky3'")" -ge 1 ] 2>/dev/null && break
  sleep 0.05
done
expect_match "its first attempt failed; a retry is due" '^pending\|[12]$' \
  "$(dbq "SELECT status, attempts FROM notifications WHERE session_id = '$dsid' AND url LIKE '%/flaky3'")"
expect_eq "delete the endpoint: 204" 204 "$(api DELETE "/api/v1/notifications/endpoints/$EP_F3" | cut -d' ' -f1)"
n_f3=$(recv 'sum(x["path"]=="/flaky3" for x in rs)')
expect_eq "its pending delivery is given up at once" "failed|the endpoint was deleted" \
  "$(dbq "SELECT status, last_error FROM notifications WHERE session_id = '$dsid' AND url LIKE '%/flaky3'")"
sleep 4 # past the 1 s and 2 s retries it would have had
expect_eq "no retry reached the deleted endpoint's URL" "$n_f3" "$(recv 'sum(x["path"]=="/flaky3" for x in rs)')"
expect_eq "and the delivery stays given up" failed \
  "$(dbq "SELECT status FROM notifications WHERE session_id = '$dsid' AND url LIKE '%/flaky3'")"

# --- the CLI ----------------------------------------------------------------------------------------
ns() { as_user "$NIGHTSHIFT" "$@" --server "$SV_URL"; }
out=$(ns notify add ftp://127.0.0.1/x 2>&1); rc=$?
expect_eq "notify add with a bad URL fails" "1 yes" "$rc $(case $out in *"http or https"*) echo yes ;; *) echo "no: $out" ;; esac)"
cid=$(ns notify add "$R/cli" --format slack --events failed,waiting --repo app)
expect_match "notify add prints the new endpoint's id" '^n-[a-z2-7]{12}$' "$cid"
expect_match "notify ls lists it" "$cid +slack +failed,waiting +r-" "$(ns notify ls)"
expect_match "notify log shows the session's deliveries" "$sid +completed +succeeded +3 +200" "$(ns notify log --session "$sid")"
expect_eq "notify rm removes it" "removed $cid" "$(ns notify rm "$cid")"
expect_eq "notify rm of an unknown id fails" 1 "$(ns notify rm "$cid" >/dev/null 2>&1; echo $?)"
tap_done
