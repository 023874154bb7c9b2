#!/usr/bin/env bash
# Install, build and start nightshift with its defaults on Debian 12 (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
cmake --install build --prefix /usr/local >/dev/null
mkdir -p /var/lib/nightshift/workspaces /etc/nightshift
if [ -d /run/systemd/system ] && [ -f /usr/local/lib/systemd/system/nightshift-sandboxd.service ]; then
  systemctl daemon-reload
  systemctl enable --now nightshift-sandboxd.service
else
  if [ -S /run/nightshift/sandboxd.sock ] && /usr/local/bin/nightshift-sandbox version >/dev/null 2>&1; then
    echo "nightshift-sandboxd is already running"
  else
    nohup /usr/local/bin/nightshift-sandboxd >>/var/log/nightshift-sandboxd.log 2>&1 &
    for _ in $(seq 100); do [ -S /run/nightshift/sandboxd.sock ] && break; sleep 0.05; done
  fi
fi
/usr/local/bin/nightshift-sandbox version
echo "nightshift-sandboxd is running on /run/nightshift/sandboxd.sock"
echo "try: nightshift-sandbox run -- sh -c 'id; hostname; cat /proc/self/status | grep -E \"^(Cap|NoNew|Seccomp)\"'"
