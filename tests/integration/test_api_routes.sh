#!/usr/bin/env bash
# Every route of /api/v1 over real HTTP: its happy path, an unknown id (404), an invalid body
# (400), an oversized body (413), and the server still serving after each; the session listing's
# paging and filters; the transcript, diff, artifacts, stats, previews, prompt cancellation,
# archive and repository removal; /metrics; and the OpenAPI document, validated with a validator
# from the npm registry and identical to the one in the source tree.  (Tokens: test_auth.sh.)
. "$(dirname "$0")/sv_lib.sh"
sv_setup --rate-limit 0
TOOLS=${NS_TEST_TOOLS:-/var/lib/nightshift/test-tools}
NOSID=s-aaaaaaaaaaaa

make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
expect_eq "POST /repos registers" 201 "${r%% *}"
repo=$(jget "${r#* }" 'd["id"]')
expect_eq "GET /repos lists it" "$repo" "$(jget "$(api GET /api/v1/repos | cut -d' ' -f2-)" 'd["repos"][0]["id"]')"

# Three sessions: a file written (for diff), a long one (stats, prompt cancel), a quick one.
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"printf 'hello\\\\n' > greeting.txt; echo done\",\"once\":true,\"title\":\"one\"}")
expect_eq "POST /sessions starts one" 201 "${r%% *}"
s1=$(jget "${r#* }" 'd["id"]')
wait_state "$s1" completed failed >/dev/null
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"sleep 6; echo first\"}")
s2=$(jget "${r#* }" 'd["id"]')
# Follow-ups queued while its first turn runs: one kept, one cancelled before its turn.
wait_state "$s2" running >/dev/null
r=$(api POST "/api/v1/sessions/$s2/prompts" '{"text":"echo second > second.txt"}')
expect_eq "a follow-up is queued" 202 "${r%% *}"
r=$(api POST "/api/v1/sessions/$s2/prompts" '{"text":"echo third > third.txt"}')
p3=$(jget "${r#* }" 'd["id"]')
r=$(api DELETE "/api/v1/sessions/$s2/prompts/$p3")
expect_eq "DELETE a queued prompt cancels it" "200 cancelled" "${r%% *} $(jget "${r#* }" 'd["state"]')"
expect_eq "... twice is a 409" 409 "$(api DELETE "/api/v1/sessions/$s2/prompts/$p3" | cut -d' ' -f1)"
expect_eq "an unknown prompt is a 404" 404 "$(api DELETE "/api/v1/sessions/$s2/prompts/999999" | cut -d' ' -f1)"
expect_eq "another session's prompt is a 404" 404 "$(api DELETE "/api/v1/sessions/$s1/prompts/$p3" | cut -d' ' -f1)"
st=$(api GET "/api/v1/sessions/$s2/stats")
expect_eq "GET stats of a running session" 200 "${st%% *}"
expect_match "... has its memory" '"memory"' "${st#* }"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"true\",\"once\":true}")
s3=$(jget "${r#* }" 'd["id"]')

note "$(date +%T) listing"
# Listing: pages by cursor, filters by state and repository.
p1=$(api GET "/api/v1/sessions?limit=2" | cut -d' ' -f2-)
expect_eq "a page of 2" 2 "$(jget "$p1" 'len(d["sessions"])')"
cur=$(jget "$p1" 'd["next_cursor"]')
p2=$(api GET "/api/v1/sessions?limit=2&cursor=$cur" | cut -d' ' -f2-)
expect_eq "the next page has the rest" "$s3" "$(jget "$p2" '",".join(x["id"] for x in d["sessions"])')"
expect_eq "... and says it is the last" None "$(jget "$p2" 'd["next_cursor"]')"
p3=$(api GET "/api/v1/sessions?limit=3" | cut -d' ' -f2-)
expect_eq "a page that ends the list exactly says it is the last" "3 None" "$(jget "$p3" 'str(len(d["sessions"])) + " " + str(d["next_cursor"])')"
expect_eq "fields= lists only those fields" "id,state" "$(jget "$(api GET "/api/v1/sessions?limit=1&fields=id%2Cstate" | cut -d' ' -f2-)" '",".join(d["sessions"][0])')"
expect_eq "a field that is not a session's is a 400" 400 "$(api GET "/api/v1/sessions?fields=id,token" | cut -d' ' -f1)"
expect_eq "a cursor not from the server is a 400" 400 "$(api GET "/api/v1/sessions?cursor=zzz" | cut -d' ' -f1)"
expect_eq "state filter" "$s1" "$(jget "$(api GET "/api/v1/sessions?state=completed&repo=$repo" | cut -d' ' -f2-)" '",".join(x["id"] for x in d["sessions"] if x["id"]!="'"$s3"'")')"
expect_eq "an unknown state is a 400" 400 "$(api GET "/api/v1/sessions?state=dreaming" | cut -d' ' -f1)"
# The list is kept between identical requests while the database is unchanged: a change made in
# between (a new session, a state change) shows in the next answer to the same request.
# Nothing may change between the two: the sessions settle first (s2 may still be between its
# turns, so a pair that straddles a change is taken again).
wait_state "$s2" idle failed >/dev/null; wait_state "$s3" completed failed >/dev/null
for _ in $(seq 20); do
  l1=$(api GET "/api/v1/sessions?limit=1000" | cut -d' ' -f2-)
  l2=$(api GET "/api/v1/sessions?limit=1000" | cut -d' ' -f2-)
  [ "$l1" = "$l2" ] && break; sleep 0.3
done
expect_eq "the same request twice: the same answer" "$l1" "$l2"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"true\",\"once\":true,\"title\":\"late\"}")
s4=$(jget "${r#* }" 'd["id"]')
expect_match "a session made in between is in the next answer" "$s4" "$(api GET "/api/v1/sessions?limit=1000")"
wait_state "$s4" completed >/dev/null
expect_eq "... and so is its new state" completed \
  "$(jget "$(api GET "/api/v1/sessions?limit=1000" | cut -d' ' -f2-)" '[x["state"] for x in d["sessions"] if x["id"]=="'"$s4"'"][0]')"

# The session's own routes.
expect_eq "GET /sessions/{id}" one "$(jget "$(api GET "/api/v1/sessions/$s1" | cut -d' ' -f2-)" 'd["title"]')"
n=$(events "$s1" | grep -c .)
log=$(api GET "/api/v1/sessions/$s1/log"); log=${log#* }
expect_eq "GET log: the transcript, one event per line" "$n" "$(printf '%s\n' "$log" | grep -c '"seq"')"
d=$(api GET "/api/v1/sessions/$s1/diff")
expect_eq "GET diff answers" 200 "${d%% *}"
expect_match "... a unified diff of the session's file" '\+\+\+ b/greeting.txt' "$(jget "${d#* }" 'd["diff"]')"
expect_match "... with its content" '\+hello' "$(jget "${d#* }" 'd["diff"]')"
expect_eq "... against the base" "$(jget "$(api GET "/api/v1/sessions/$s1" | cut -d' ' -f2-)" 'd["base_sha"]')" "$(jget "${d#* }" 'd["base"]')"
expect_eq "GET artifacts" "[]" "$(jget "$(api GET "/api/v1/sessions/$s1/artifacts" | cut -d' ' -f2-)" 'd["artifacts"]')"
expect_eq "GET previews" "[]" "$(jget "$(api GET "/api/v1/sessions/$s1/previews" | cut -d' ' -f2-)" 'd["previews"]')"
expect_eq "GET stats of an ended session: 409, no sandbox" 409 "$(api GET "/api/v1/sessions/$s1/stats" | cut -d' ' -f1)"
for _ in $(seq 1 300); do
  [ "$(jget "$(api GET "/api/v1/sessions/$s2" | cut -d' ' -f2-)" 'd["state"]')" = idle ] &&
    git -C "$(mirror_of "$repo")" cat-file -e "nightshift/$s2:second.txt" 2>/dev/null && break
  sleep 0.1
done
check "the kept follow-up ran" git -C "$(mirror_of "$repo")" cat-file -e "nightshift/$s2:second.txt"
check "the cancelled one did not" bash -c "! git -C '$(mirror_of "$repo")' cat-file -e 'nightshift/$s2:third.txt' 2>/dev/null"
expect_eq "archive of a live session is a 409" 409 "$(api POST "/api/v1/sessions/$s2/archive" | cut -d' ' -f1)"
api POST "/api/v1/sessions/$s2/stop" '{"force":true}' >/dev/null
wait_state "$s2" stopped >/dev/null
r=$(api POST "/api/v1/sessions/$s2/archive")
expect_eq "archive of an ended session" "200 archived" "${r%% *} $(jget "${r#* }" 'd["state"]')"

note "$(date +%T) bodies"
# Unknown ids, invalid and oversized bodies: for every route that takes them.
declare -A body=([POST:/api/v1/repos]='{"nope":1}' [POST:/api/v1/sessions]='{"repo":1}' [POST:/api/v1/tasks]='{"x":1}'
  [POST:/api/v1/sessions/ID/prompts]='{"text":5}' [POST:/api/v1/sessions/ID/stop]='{"force":"yes"}' [POST:/api/v1/login]='[]'
  [POST:/api/v1/sessions/ID/pr]='{"draft":"yes"}')
bad=()
for k in "${!body[@]}"; do
  m=${k%%:*}; p=${k#*:}; p=${p//ID/$s1}
  c=$(api "$m" "$p" "${body[$k]}" | cut -d' ' -f1)
  [ "$c" = 400 ] || bad+=("$m $p: $c")
done
expect_eq "every JSON body route answers an invalid body with 400" "" "${bad[*]}"
for k in "${!body[@]}"; do
  m=${k%%:*}; p=${k#*:}; p=${p//ID/$s1}
  c=$(api "$m" "$p" "not json at all" | cut -d' ' -f1)
  [ "$c" = 400 ] || bad+=("$m $p: $c")
done
expect_eq "... and a body that is not JSON with 400" "" "${bad[*]}"
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' 'x' > "$NS_TMP/big"
for k in "${!body[@]}"; do
  m=${k%%:*}; p=${k#*:}; p=${p//ID/$s1}
  c=$(curl -s -o /dev/null -w '%{http_code}' -X "$m" -H "Authorization: Bearer $SV_TOKEN" --data-binary @"$NS_TMP/big" "$SV_URL$p")
  [ "$c" = 413 ] || bad+=("$m $p: $c")
done
expect_eq "... and a 2 MiB body with 413" "" "${bad[*]}"
unknown=()
for rt in "GET /api/v1/sessions/ID" "DELETE /api/v1/sessions/ID" "GET /api/v1/sessions/ID/events" "GET /api/v1/sessions/ID/log" \
          "GET /api/v1/sessions/ID/diff" "GET /api/v1/sessions/ID/artifacts" "GET /api/v1/sessions/ID/stats" \
          "GET /api/v1/sessions/ID/previews" "POST /api/v1/sessions/ID/prompts" "DELETE /api/v1/sessions/ID/prompts/1" \
          "POST /api/v1/sessions/ID/interrupt" "POST /api/v1/sessions/ID/stop" "POST /api/v1/sessions/ID/pause" \
          "POST /api/v1/sessions/ID/resume" "POST /api/v1/sessions/ID/complete" "POST /api/v1/sessions/ID/archive" \
          "DELETE /api/v1/repos/r-aaaaaaaaaaaa" "GET /api/v1/sessions/not-an-id" "POST /api/v1/sessions/ID/pr" \
          "GET /api/v1/repos/r-aaaaaaaaaaaa/settings" "PATCH /api/v1/repos/r-aaaaaaaaaaaa/settings"; do
  m=${rt%% *}; p=${rt#* }; p=${p//ID/$NOSID}
  b=; [ "$m" = POST ] && [[ "$p" = */prompts ]] && b='{"text":"x"}'
  c=$(api "$m" "$p" "$b")
  [ "${c%% *}" = 404 ] && [ "$(jget "${c#* }" 'd["error"]["code"]')" = not_found ] || unknown+=("$m $p: ${c%% *}")
done
expect_eq "every route with an unknown id answers a JSON 404" "" "${unknown[*]}"
expect_eq "a known path with another method is a 405" 405 "$(api PUT /api/v1/sessions | cut -d' ' -f1)"
check "the server keeps serving" curl -sf "$SV_URL/api/v1/healthz"

note "$(date +%T) repos"
# Repositories: removal refused while sessions refer to one, done (with its mirror) otherwise.
expect_eq "DELETE a repository with sessions is a 409" 409 "$(api DELETE "/api/v1/repos/$repo" | cut -d' ' -f1)"
make_repo "$NS_TMP/src/other"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/other\",\"name\":\"other\"}")
other=$(jget "${r#* }" 'd["id"]')
check "its mirror exists" test -d "$(mirror_of "$other")"
expect_eq "DELETE a repository without sessions" 204 "$(api DELETE "/api/v1/repos/$other" | cut -d' ' -f1)"
check "... removes its mirror" test ! -e "$(mirror_of "$other")"
expect_eq "... and it is gone" 404 "$(api DELETE "/api/v1/repos/$other" | cut -d' ' -f1)"

# Metrics.
m=$(curl -s -H "Authorization: Bearer $SV_TOKEN" "$SV_URL/metrics")
expect_match "/metrics: sessions by state" 'nightshift_sessions\{state="archived"\} 1' "$m"
expect_match "... the request latency histogram" 'nightshift_http_request_duration_seconds_bucket\{le="\+Inf"\} [1-9]' "$m"
expect_match "... events stored" 'nightshift_events_total [1-9]' "$m"
expect_match "... the queues" 'nightshift_queue_length\{kind="prompts"\} 0' "$m"
expect_eq "/metrics needs the token too" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$SV_URL/metrics")"

# The OpenAPI document.
r=$(api GET /api/v1/openapi.json)
expect_eq "GET openapi.json" 200 "${r%% *}"
printf '%s' "${r#* }" > "$NS_TMP/openapi.json"
check "... is the document of the source tree" $PY -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
  "$NS_TMP/openapi.json" "$NS_SRC/supervisor/openapi.json"
if [ -d "$TOOLS/node_modules/@apidevtools/swagger-parser" ] && command -v node >/dev/null; then
  out=$(cd "$TOOLS" && node -e "require('@apidevtools/swagger-parser').validate(process.argv[1]).then(() => console.log('valid')).catch(e => { console.log(e.message); process.exit(1) })" "$NS_TMP/openapi.json" 2>&1)
  expect_eq "... and valid OpenAPI (swagger-parser from npm)" valid "$out"
else
  skip "OpenAPI validation" "no validator in $TOOLS: run tests/tools/install.sh"
fi
# Every documented GET without path parameters answers 200 (the others are probed above).
fails=()
for p in $($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(p for p,o in d["paths"].items() if "get" in o and "{" not in p))' "$NS_TMP/openapi.json"); do
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SV_TOKEN" "$SV_URL$p")
  [ "$c" = 200 ] || fails+=("$p: $c")
done
expect_eq "every documented GET without parameters answers 200" "" "${fails[*]}"
tap_done
