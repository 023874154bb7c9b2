#!/usr/bin/env bash
# The browser dashboard end to end: Debian's chromium, headless, driven by playwright-core
# (tests/browser/dashboard.test.mjs) against a real `nightshift serve` and sandboxd with the
# `command` agent: the board live over the WebSocket, the new-session form, the session view
# (output, commit, follow-ups, queued prompts, diff, stop, pause/resume, end, a port published as
# a preview and opened on its own origin), hostile agent output rendered as text, login/logout, the CSP.  Screenshots go to /tmp/nightshift-screenshots/.
. "$(dirname "$0")/sv_lib.sh"
TOOLS=${NS_TEST_TOOLS:-/var/lib/nightshift/test-tools}
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
if [ -z "$CHROMIUM" ]; then
  echo "1..0 # SKIP chromium is not installed (scripts/install-deps.sh --with-tests installs it)"; exit 77
fi
if [ ! -d "$TOOLS/node_modules/playwright-core" ] || ! command -v node >/dev/null; then
  echo "1..0 # SKIP playwright-core is not installed (tests/tools/install.sh)"; exit 77
fi
sv_setup --stop-grace 2 --workers 4 --max-concurrent 1
make_repo "$NS_TMP/src/app"
make_repo "$NS_TMP/src/app2"   # added from the form
# The preview's dev server (a session runs it in its sandbox; the browser opens it on its own origin).
cp "$NS_SRC/tests/helpers/ws_echo.py" "$NS_TMP/src/app/"
chown "$TEST_UID:$TEST_GID" "$NS_TMP/src/app/ws_echo.py"
as_user env HOME="$NS_TMP/src/app" git -C "$NS_TMP/src/app" -c user.name=t -c user.email=t@t add ws_echo.py
as_user env HOME="$NS_TMP/src/app" git -C "$NS_TMP/src/app" -c user.name=t -c user.email=t@t commit -q -m dev-server

# --- over HTTP, before any browser ---------------------------------------------------------------
hdr=$(curl -s -D - -o /dev/null "$SV_URL/")
expect_match "GET / serves the dashboard (200, text/html)" '^HTTP/1.1 200.*' "$(printf '%s' "$hdr" | head -n1)"
csp=$(printf '%s' "$hdr" | tr -d '\r' | sed -n 's/^content-security-policy: //Ip')
expect_match "with a Content-Security-Policy: script-src 'self', no inline script" "script-src 'self';" "$csp"
check "  ... default-src 'self', object-src 'none', base-uri 'none', frame-ancestors 'none'" \
  bash -c "grep -q \"default-src 'self'\" <<<\"\$0\" && grep -q \"object-src 'none'\" <<<\"\$0\" && grep -q \"base-uri 'none'\" <<<\"\$0\" && grep -q \"frame-ancestors 'none'\" <<<\"\$0\" && ! grep -q unsafe <<<\"\$0\"" "$csp"
expect_match "  ... connect-src 'self' and this host's WebSocket" "connect-src 'self' ws://127.0.0.1:$SV_PORT wss://127.0.0.1:$SV_PORT;" "$csp"
expect_match "nosniff and a Referrer-Policy on the page" 'x-content-type-options: nosniff.*referrer-policy: no-referrer|referrer-policy: no-referrer' \
  "$(printf '%s' "$hdr" | tr -d '\r' | tr 'A-Z\n' 'a-z ')"
expect_eq "app.js is JavaScript" "text/javascript; charset=utf-8" \
  "$(curl -s -o /dev/null -w '%{content_type}' "$SV_URL/app.js")"
expect_eq "the manifest has its type" "application/manifest+json" \
  "$(curl -s -o /dev/null -w '%{content_type}' "$SV_URL/manifest.webmanifest")"
etag=$(curl -s -D - -o /dev/null "$SV_URL/app.js" | tr -d '\r' | sed -n 's/^etag: //Ip')
expect_eq "an unchanged file revalidates to 304 (ETag)" 304 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$SV_URL/app.js")"
vapp=$(curl -s "$SV_URL/" | grep -o 'src="v/[0-9a-f]\{16\}/app.js"' | sed 's/^src="//; s/"$//')
expect_match "the page loads its scripts from versioned URLs (v/VERSION/app.js)" '^v/[0-9a-f]{16}/app\.js$' "$vapp"
expect_match "  ... cached for good (immutable), the page itself revalidated" 'immutable.*no-cache' \
  "$(curl -s -D - -o /dev/null "$SV_URL/$vapp" | tr -d '\r' | sed -n 's/^cache-control: //Ip') $(curl -s -D - -o /dev/null "$SV_URL/" | tr -d '\r' | sed -n 's/^cache-control: //Ip')"
expect_eq "  ... the same bytes as app.js" "$(curl -s "$SV_URL/app.js" | sha256sum)" "$(curl -s "$SV_URL/$vapp" | sha256sum)"
expect_eq "a long If-None-Match changes nothing for the API (healthz 200, not 431)" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: \"$(head -c 300 /dev/zero | tr '\0' x)\"" "$SV_URL/api/v1/healthz")"
expect_eq "an unknown file is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$SV_URL/nope.js")"
expect_eq "no path escapes the file set" 404 "$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "$SV_URL/../../etc/passwd")"
expect_eq "the API still refuses without a login" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$SV_URL/api/v1/sessions")"

r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\",\"name\":\"app\"}")
expect_eq "a repository to work on (201)" 201 "${r%% *}"

# --- the browser ---------------------------------------------------------------------------------
mkdir -p /tmp/nightshift-screenshots
out=$(NS_TOOLS="$TOOLS" NS_URL="$SV_URL/" NS_TOKEN="$SV_TOKEN" NS_REPO2="$NS_TMP/src/app2" CHROMIUM="$CHROMIUM" \
  SHOTS=/tmp/nightshift-screenshots timeout 240 node "$NS_SRC/tests/browser/dashboard.test.mjs" 2>&1)
rc=$?
while IFS= read -r line; do
  case "$line" in
    'ok - '*) ok "${line#ok - }" ;;
    'not ok - '*) not_ok "${line#not ok - }" ;;
    *) note "$line" ;;
  esac
done <<<"$out"
expect_eq "the browser test ran to its end" 0 "$rc"
tap_done
