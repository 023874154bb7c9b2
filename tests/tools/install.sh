#!/usr/bin/env bash
# Test-only tools from the npm registry, pinned, into /var/lib/nightshift/test-tools (or $1):
# an OpenAPI validator for test_api_routes.sh, playwright-core for the dashboard tests (it drives
# Debian's chromium; it downloads no browser).  Idempotent: a stamp records what is installed.
set -euo pipefail
DEST=${1:-/var/lib/nightshift/test-tools}
PKGS=("@apidevtools/swagger-parser@12.1.0" "playwright-core@1.65.1")
STAMP="$DEST/.installed"
want="${PKGS[*]}"
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && exit 0
command -v npm >/dev/null || { echo "tests/tools/install.sh: npm is missing" >&2; exit 1; }
mkdir -p "$DEST"
[ -f "$DEST/package.json" ] || echo '{"name":"nightshift-test-tools","private":true}' > "$DEST/package.json"
(cd "$DEST" && npm install --no-audit --no-fund --loglevel=error "${PKGS[@]}")
echo "$want" > "$STAMP"
