#!/usr/bin/env bash
# Install, build and start nightshift with its defaults on Debian 12 (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
cmake --install build --prefix /usr/local >/dev/null
# The supervisor runs as its own unprivileged user; sandboxd lets only that user (and root) in,
# takes working trees beneath the workspace root, and may bind the mirrors and the agent CLIs.
id -u nightshift >/dev/null 2>&1 || useradd --system --home-dir /var/lib/nightshift --shell /usr/sbin/nologin nightshift
install -d -m 0755 /var/lib/nightshift /var/lib/nightshift/agents /etc/nightshift
install -d -m 0750 -o nightshift -g nightshift /var/lib/nightshift/workspaces
install -d -m 0700 -o nightshift -g nightshift /var/lib/nightshift/data
[ -f /etc/nightshift/sandboxd.conf ] || cat > /etc/nightshift/sandboxd.conf <<'CONF'
# nightshift-sandboxd settings (the long flag names; flags on the command line win)
socket-group nightshift
allow-user nightshift
allow-user root
workspace-root /var/lib/nightshift/workspaces
ro-root /var/lib/nightshift/data
ro-root /var/lib/nightshift/agents
CONF
[ -f /etc/nightshift/nightshift.conf ] || cat > /etc/nightshift/nightshift.conf <<'CONF'
# nightshift serve settings (the long flag names; flags on the command line win)
listen 127.0.0.1:8787
data-dir /var/lib/nightshift/data
workspace-root /var/lib/nightshift/workspaces
agents-dir /var/lib/nightshift/agents
CONF
if [ -S /run/nightshift/sandboxd.sock ] && /usr/local/bin/nightshift-sandbox version >/dev/null 2>&1; then
  echo "nightshift-sandboxd is already running"
else
  nohup /usr/local/bin/nightshift-sandboxd --config /etc/nightshift/sandboxd.conf \
    >>/var/log/nightshift-sandboxd.log 2>&1 &
  for _ in $(seq 100); do [ -S /run/nightshift/sandboxd.sock ] && break; sleep 0.05; done
fi
/usr/local/bin/nightshift-sandbox version
if curl -sf http://127.0.0.1:8787/api/v1/healthz >/dev/null 2>&1; then
  echo "nightshift serve is already running"
else
  touch /var/log/nightshift.log && chown nightshift:nightshift /var/log/nightshift.log
  nohup setpriv --reuid=nightshift --regid=nightshift --init-groups -- \
    /usr/local/bin/nightshift serve --config /etc/nightshift/nightshift.conf >>/var/log/nightshift.log 2>&1 &
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8787/api/v1/healthz >/dev/null 2>&1 && break; sleep 0.05; done
fi
curl -sf http://127.0.0.1:8787/api/v1/healthz >/dev/null && echo "nightshift is serving http://127.0.0.1:8787"
echo "try: nightshift run --repo /path/to/a/git/repo --once --follow 'ls && echo hi > hi.txt'"
echo "     nightshift-sandbox run -- sh -c 'id; hostname'"
