#!/usr/bin/env bash
# API authentication: every route but healthz and login needs a bearer token (on loopback too);
# tokens are made on the data dir with `nightshift token`, stored hashed, listed without values,
# revocable while the server runs; the browser's login cookie (HttpOnly, SameSite=Strict) and the
# CSRF rule for cookie-authenticated changes; per-token rate limits; over-long headers; and the
# refusal to listen beyond loopback without allow-remote.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --rate-limit 20

TOK() { as_user "$NIGHTSHIFT" token "$@" --data-dir "$SV_DATA"; }
# req [curl args...] URL-PATH: prints "STATUS" and leaves headers in $NS_TMP/h, body in $NS_TMP/b
req() {
  local path=${*: -1}
  curl -s -o "$NS_TMP/b" -D "$NS_TMP/h" -w '%{http_code}' "${@:1:$#-1}" "$SV_URL$path"
}
AUTH=(-H "Authorization: Bearer $SV_TOKEN")

expect_eq "healthz needs no token" 200 "$(req /api/v1/healthz)"

# Every route, without a token, with an unknown one, with a malformed header: 401, as JSON.
unknown=nst_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' | head -c 43)
routes=("GET /api/v1/repos" "POST /api/v1/repos" "GET /api/v1/sessions" "POST /api/v1/sessions"
        "POST /api/v1/tasks" "GET /api/v1/sessions/s-aaaaaaaaaaaa" "DELETE /api/v1/sessions/s-aaaaaaaaaaaa"
        "GET /api/v1/sessions/s-aaaaaaaaaaaa/events" "POST /api/v1/sessions/s-aaaaaaaaaaaa/prompts"
        "POST /api/v1/sessions/s-aaaaaaaaaaaa/interrupt" "POST /api/v1/sessions/s-aaaaaaaaaaaa/stop"
        "POST /api/v1/logout" "GET /api/v1/nothing-here")
bad=()
for rt in "${routes[@]}"; do
  m=${rt%% *}; p=${rt#* }
  s1=$(req -X "$m" "$p"); c1=$(jget "$(cat "$NS_TMP/b")" 'd["error"]["code"]' 2>/dev/null)
  grep -qi '^www-authenticate: Bearer' "$NS_TMP/h" || c1="no WWW-Authenticate"
  s2=$(req -X "$m" -H "Authorization: Bearer $unknown" "$p")
  s3=$(req -X "$m" -H "Authorization: Basic dGVzdDp0ZXN0" "$p")
  [ "$s1 $c1 $s2 $s3" = "401 unauthorized 401 401" ] || bad+=("$rt: $s1 $c1 $s2 $s3")
done
expect_eq "every route refuses a missing, unknown or malformed token with a JSON 401" "" "${bad[*]}"
expect_eq "the right token is let in" 200 "$(req "${AUTH[@]}" /api/v1/sessions)"
expect_eq "an unknown route with a token is a 404" 404 "$(req "${AUTH[@]}" /api/v1/nothing-here)"
long=$(head -c 2000 /dev/zero | tr '\0' a)
expect_eq "an over-long Authorization header gets 431" 431 "$(req -H "Authorization: Bearer $long" /api/v1/sessions)"
check "the server keeps serving" curl -sf "$SV_URL/api/v1/healthz"

# Tokens at rest: hashes only; listed without values; last use recorded.
ls_json=$(TOK ls --json)
expect_eq "token ls lists the token" test "$(jget "$ls_json" 'd[0]["name"]')"
expect_eq "... without its value" 0 "$(printf '%s' "$ls_json" | grep -c nst_)"
check "... with its last use" test "$(jget "$ls_json" 'd[0]["last_used_at"]')" != None
# (read as bytes: another SQLite connection to the live database is not the test's business)
expect_eq "the database holds no token value" 0 "$(cat "$SV_DATA"/nightshift.db* | grep -c -a -F "$SV_TOKEN")"
expect_eq "a second token of the same name is refused" 1 "$(TOK create test >/dev/null 2>&1; echo $?)"

# Revocation takes effect on the running server.
T2=$(TOK create second 2>/dev/null)
expect_eq "a new token works at once" 200 "$(req -H "Authorization: Bearer $T2" /api/v1/repos)"
TOK revoke second
expect_eq "a revoked token is refused at once" 401 "$(req -H "Authorization: Bearer $T2" /api/v1/repos)"
expect_eq "token ls shows it revoked" True "$(jget "$(TOK ls --json)" '[t for t in d if t["name"]=="second"][0]["revoked"]')"

# The browser: login with a token, a cookie, CSRF rules for changes made with it.
expect_eq "login with a wrong token is refused" 401 "$(req -X POST -d "{\"token\":\"$unknown\"}" /api/v1/login)"
expect_eq "login with a malformed body is a 400" 400 "$(req -X POST -d '{"token":1}' /api/v1/login)"
T3=$(TOK create browser 2>/dev/null)
expect_eq "login with a token" 200 "$(req -X POST -d "{\"token\":\"$T3\"}" /api/v1/login)"
sc=$(grep -i '^set-cookie:' "$NS_TMP/h" | tr -d '\r')
expect_match "the cookie is HttpOnly" 'HttpOnly' "$sc"
expect_match "... and SameSite=Strict" 'SameSite=Strict' "$sc"
expect_eq "... and carries no token value" 0 "$(printf '%s' "$sc" | grep -c nst_)"
cookie=$(printf '%s' "$sc" | sed -E 's/^[Ss]et-[Cc]ookie: *([^;]*).*/\1/')
C=(-H "Cookie: $cookie")
expect_eq "the cookie authenticates a read" 200 "$(req "${C[@]}" /api/v1/sessions)"
expect_eq "a change with the cookie but no CSRF header is refused" 403 \
  "$(req "${C[@]}" -X POST /api/v1/sessions/s-aaaaaaaaaaaa/interrupt)"
expect_eq "... with the CSRF header it goes through (to a 404 here)" 404 \
  "$(req "${C[@]}" -H 'X-Nightshift-CSRF: 1' -X POST /api/v1/sessions/s-aaaaaaaaaaaa/interrupt)"
expect_eq "... from another origin it is refused" 403 \
  "$(req "${C[@]}" -H 'X-Nightshift-CSRF: 1' -H 'Origin: http://evil.example' -X POST /api/v1/sessions/s-aaaaaaaaaaaa/interrupt)"
expect_eq "... from our own origin it goes through" 404 \
  "$(req "${C[@]}" -H 'X-Nightshift-CSRF: 1' -H "Origin: $SV_URL" -X POST /api/v1/sessions/s-aaaaaaaaaaaa/interrupt)"
expect_eq "a bearer token needs no CSRF header" 404 "$(req "${AUTH[@]}" -X POST /api/v1/sessions/s-aaaaaaaaaaaa/interrupt)"
expect_eq "logout" 204 "$(req "${C[@]}" -H 'X-Nightshift-CSRF: 1' -X POST /api/v1/logout)"
expect_eq "the cookie is dead after logout" 401 "$(req "${C[@]}" /api/v1/sessions)"
req -X POST -d "{\"token\":\"$T3\"}" /api/v1/login >/dev/null
cookie=$(grep -i '^set-cookie:' "$NS_TMP/h" | tr -d '\r' | sed -E 's/^[Ss]et-[Cc]ookie: *([^;]*).*/\1/')
TOK revoke browser
expect_eq "revoking the token ends its browser logins" 401 "$(req -H "Cookie: $cookie" /api/v1/sessions)"

# Rate limit (--rate-limit 20: bursts of 40) per token: a burst of 80 requests from one token is
# cut with 429 and Retry-After, while another token is not affected.
T4=$(TOK create burst 2>/dev/null)
urls=(); for _ in $(seq 80); do urls+=(-o /dev/null "$SV_URL/api/v1/repos"); done # one curl, one connection
codes=$(curl -s -D "$NS_TMP/hb" -H "Authorization: Bearer $T4" -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
expect_match "a burst beyond the limit gets 429s" ' 429' "$codes"
check "... with a Retry-After header" grep -qi '^retry-after: [0-9]' "$NS_TMP/hb"
expect_eq "... and another token is not affected" 200 "$(req "${AUTH[@]}" /api/v1/repos)"
sleep 2
expect_eq "the limited token recovers" 200 "$(req -H "Authorization: Bearer $T4" /api/v1/repos)"

# Listening beyond loopback needs an explicit setting.
out=$(as_user "$NIGHTSHIFT" serve --listen 0.0.0.0:0 --data-dir "$NS_TMP/ro/data2" --workspace-root "$SV_WS" \
  --sandboxd-socket "$NS_SOCK" 2>&1); rc=$?
check "serve refuses a non-loopback --listen without allow-remote" test "$rc" -ne 0
expect_match "... and says how to allow it" 'allow-remote' "$out"
tap_done
