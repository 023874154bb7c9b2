#!/usr/bin/env bash
# WebSocket /api/v1/events: the upgrade needs a token (or the login cookie from our own origin);
# a session subscription replays from `after` and then follows live, one event per message, in
# order, with no gap and no duplicate; resuming with after=SEQ gets exactly what was missed; the
# all-sessions subscription resumes by global id; 200 subscribers of one busy session each get
# every event while subscribers that stop reading delay no one; oversized client messages close
# the connection; the server keeps serving.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --rate-limit 0
WS=$NS_SRC/tests/helpers/ws_client.py
WSURL=ws://127.0.0.1:$SV_PORT/api/v1/events
wsc() { $PY "$WS" "$@"; }

make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo=$(jget "${r#* }" 'd["id"]')

# The upgrade itself.
expect_eq "no token: the upgrade is refused with 401" 401 "$(wsc status "$WSURL?after_id=0")"
expect_eq "an unknown token: 401" 401 "$(wsc status "$WSURL?after_id=0" --token nst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA)"
expect_eq "another path does not upgrade" 404 "$(wsc status "ws://127.0.0.1:$SV_PORT/api/v1/sessions" --token "$SV_TOKEN")"
expect_eq "with the token: 101" 101 "$(wsc status "$WSURL?after_id=0" --token "$SV_TOKEN")"
out=$(wsc read "$WSURL?session=s-aaaaaaaaaaaa&after=0" --token "$SV_TOKEN" --timeout 5)
expect_match "an unknown session closes the stream with a reason" '"closed": 1008' "$out"
out=$(wsc read "$WSURL?after_id=-3" --token "$SV_TOKEN" --timeout 5)
expect_match "a bad cursor closes it too" '"closed": 1008' "$out"

# A finished session: replay everything, then the live marker.
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"for i in \$(seq 1 200); do echo line \$i; done\",\"once\":true}")
sid=$(jget "${r#* }" 'd["id"]')
wait_state "$sid" completed failed >/dev/null
rest=$(events "$sid")
n=$(printf '%s\n' "$rest" | grep -c .)
wsc read "$WSURL?session=$sid&after=0" --token "$SV_TOKEN" --events "$n" --timeout 20 > "$NS_TMP/ws1"
got=$($PY - "$NS_TMP/ws1" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"seq"' in l]
print(" ".join(str(e["seq"]) for e in ev))
PY
)
expect_eq "replay: every stored event, in seq order, once" "$(seq -s ' ' 1 "$n")" "$got"
expect_eq "... the same events the REST route gives" "$(printf '%s\n' "$rest" | $PY -c 'import json,sys; print([json.loads(l)["id"] for l in sys.stdin])')" \
  "$($PY -c 'import json,sys; print([json.loads(l)["id"] for l in open(sys.argv[1]) if "\"seq\"" in l])' "$NS_TMP/ws1")"
expect_match "the stream says when replay ends and live begins" '"control":"live"' "$(wsc read "$WSURL?session=$sid&after=$n" --token "$SV_TOKEN" --timeout 2)"
k=$(( n / 2 ))
got=$(wsc read "$WSURL?session=$sid&after=$k" --token "$SV_TOKEN" --events $(( n - k )) --timeout 20 | $PY -c '
import json, sys
print(" ".join(str(json.loads(l)["seq"]) for l in sys.stdin if "\"seq\"" in l))')
expect_eq "resuming with after=SEQ gets exactly what was missed" "$(seq -s ' ' $(( k + 1 )) "$n")" "$got"
first_id=$(printf '%s\n' "$rest" | head -n1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# How many events come after the first depends on how the output was chunked into events: up to 5.
want=$(( n - 1 < 5 ? n - 1 : 5 ))
wsc read "$WSURL?after_id=$first_id" --token "$SV_TOKEN" --events "$want" --timeout 20 > "$NS_TMP/ws-all"
got=$($PY -c '
import json, sys
ids = [json.loads(l)["id"] for l in sys.stdin if "\"seq\"" in l]
print("ok" if len(ids) == int(sys.argv[2]) and ids == sorted(set(ids)) and ids[0] > int(sys.argv[1]) else ids)' "$first_id" "$want" < "$NS_TMP/ws-all")
[ "$got" = ok ] || sed 's/^/# /' "$NS_TMP/ws-all" | cut -c1-200
expect_eq "the all-sessions stream resumes after a global id, in id order" ok "$got"

# Live: subscribe before the agent prints; lines arrive while it runs.
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"sleep 1; for i in \$(seq 1 10); do echo tick \$i; sleep 0.3; done\",\"once\":true}")
sid2=$(jget "${r#* }" 'd["id"]')
wsc read "$WSURL?session=$sid2&after=0" --token "$SV_TOKEN" --timeout 30 > "$NS_TMP/ws2" &
RP=$!
wait_state "$sid2" completed failed >/dev/null
sleep 0.5; kill "$RP" 2>/dev/null; wait "$RP" 2>/dev/null
expect_eq "live: every event of the running session, in order" "$(events "$sid2" | $PY -c 'import json,sys; print([json.loads(l)["seq"] for l in sys.stdin])')" \
  "$($PY -c 'import json,sys; print([json.loads(l)["seq"] for l in open(sys.argv[1]) if "\"seq\"" in l])' "$NS_TMP/ws2")"
expect_eq "... which came as they happened (the first tick well before the session ended)" 1 "$($PY - "$NS_TMP/ws2" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"seq"' in l]
tick = [e for e in ev if e["type"] == "command_output" and "tick 1" in e["data"].get("text", "")]
end = [e for e in ev if e["type"] == "status" and e["data"].get("to") == "completed"]
print(1 if tick and end and end[0]["ts"] - tick[0]["ts"] > 1500 else 0)
PY
)"

# 200 subscribers of one busy session (plus 5 that never read) each get every event, in order.
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"sleep 3; for i in \$(seq 1 400); do echo busy \$i; sleep 0.005; done\",\"once\":true}")
sid3=$(jget "${r#* }" 'd["id"]')
fan=$(wsc fanout "$WSURL?session=$sid3&after=0" --token "$SV_TOKEN" --clients 200 --stalled 5 --until-state completed --timeout 120)
note "fan-out: $fan"
wait_state "$sid3" completed failed >/dev/null
total=$(events "$sid3" | grep -c .)
expect_eq "200 subscribers all reached the end of the session" 200 "$(jget "$fan" 'd["complete"]')"
expect_eq "... each with every event ($total)" "[$total]" "$(jget "$fan" 'd["counts"]')"
expect_eq "... in order, no gap, no duplicate" 200 "$(jget "$fan" 'd["in_order"]')"

# A client message over the limit closes that connection only.
out=$($PY - "$WS" "$WSURL?after_id=0" "$SV_TOKEN" <<'PY'
import importlib.util, json, struct, sys
spec = importlib.util.spec_from_file_location("wsc", sys.argv[1]); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
s, st, rest = m.handshake(sys.argv[2], sys.argv[3])
s.sendall(m.frame(1, b"x" * 10000))
r = m.Reader(); msgs = r.feed(rest); s.settimeout(5)
while True:
    for op, p in msgs:
        if op == 8:
            print(struct.unpack(">H", p[:2])[0]); sys.exit(0)
    d = s.recv(65536)
    if not d:
        print("eof"); sys.exit(0)
    msgs = r.feed(d)
PY
)
expect_eq "a 10 kB client message closes the connection with 1009" 1009 "$out"

# Events of tens of kB (an agent printing long lines: 32 kB chunks, up to ~200 kB of JSON with
# escapes) reach a subscriber whole; lws cut every send to the 4 kB receive buffer before, and a
# subscriber of such a session lost its connection at the first large event.
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"head -c 2000000 /dev/zero | tr '\\\\0' x | fold -w 4000; head -c 200000 /dev/zero | tr '\\\\0' '\\\\001'\",\"once\":true}")
sid4=$(jget "${r#* }" 'd["id"]')
wait_state "$sid4" completed failed >/dev/null
n4=$(events "$sid4" | grep -c .)
wsc read "$WSURL?session=$sid4&after=0" --token "$SV_TOKEN" --events "$n4" --timeout 30 > "$NS_TMP/ws4"
expect_eq "large events (up to $(events "$sid4" | awk '{ if (length($0) > m) m = length($0) } END { print m }') bytes) all reach a subscriber, in order" \
  "$(events "$sid4" | $PY -c 'import json,sys; print([json.loads(l)["seq"] for l in sys.stdin])')" \
  "$($PY -c 'import json,sys; print([json.loads(l)["seq"] for l in open(sys.argv[1]) if "\"seq\"" in l])' "$NS_TMP/ws4")"
check "the server keeps serving" curl -sf "$SV_URL/api/v1/healthz"
tap_done
