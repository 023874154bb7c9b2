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
install -d -m 0755 /var/lib/nightshift /var/lib/nightshift/agents /var/lib/nightshift/layers /etc/nightshift
install -d -m 0750 -o nightshift -g nightshift /var/lib/nightshift/workspaces
install -d -m 0700 -o nightshift -g nightshift /var/lib/nightshift/data
# The example configurations (also installed under /usr/local/share/doc/nightshift/examples).
[ -f /etc/nightshift/sandboxd.conf ] || install -m 0644 packaging/examples/sandboxd.conf /etc/nightshift/sandboxd.conf
[ -f /etc/nightshift/nightshift.conf ] || install -m 0644 packaging/examples/nightshift.conf /etc/nightshift/nightshift.conf
if [ -d /run/systemd/system ]; then
  # systemd is PID 1: the units cmake installed (/usr/local/lib/systemd/system), enabled for boot
  # and started; Type=notify makes `enable --now` return once each daemon serves.  Journald keeps
  # the logs (journalctl -u nightshift-sandboxd -u nightshift).  Already running units are left
  # as they are: `systemctl restart nightshift` picks up a new build.
  if ! systemctl is-active --quiet nightshift-sandboxd.service &&
    /usr/local/bin/nightshift-sandbox version >/dev/null 2>&1; then
    echo "a nightshift-sandboxd not started by systemd is running: stop it first" >&2; exit 1
  fi
  systemctl daemon-reload
  systemctl enable --now nightshift-sandboxes.service nightshift-sandboxd.service nightshift.service
  /usr/local/bin/nightshift-sandbox version
else
  # No systemd (a container, this kind of development VM): both daemons in the background, logs
  # under /var/log.
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
fi
curl -sf http://127.0.0.1:8787/api/v1/healthz >/dev/null && echo "nightshift is serving http://127.0.0.1:8787"
# The API needs a token on every route: the first setup makes one, kept (readable by root only) in
# /root/.config/nightshift/client.conf for the CLI, and prints it once for the browser's login.
CLIENT_CONF=/root/.config/nightshift/client.conf
if [ ! -s "$CLIENT_CONF" ] && ! /usr/local/bin/nightshift token ls --json 2>/dev/null | grep -q '"name":[[:space:]]*"admin"'; then
  tok=$(/usr/local/bin/nightshift token create admin)
  install -d -m 0700 "$(dirname "$CLIENT_CONF")"
  (umask 077; printf 'server http://127.0.0.1:8787\ntoken %s\n' "$tok" > "$CLIENT_CONF")
  echo "API token 'admin' (shown only now; also saved in $CLIENT_CONF): $tok"
elif [ -s "$CLIENT_CONF" ]; then
  echo "the API token is in $CLIENT_CONF (make another: nightshift token create NAME)"
fi
echo "dashboard: http://127.0.0.1:8787/ (log in with the token)"
echo "try: nightshift run --repo /path/to/a/git/repo --once --follow 'ls && echo hi > hi.txt'"
echo "     nightshift-sandbox run -- sh -c 'id; hostname'"
