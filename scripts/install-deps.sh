#!/usr/bin/env bash
# Install what nightshift needs to build, run and test on Debian 12 (run as root).
# Idempotent; only missing packages are installed.
set -euo pipefail
build_pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
  libseccomp-dev libcap-dev libnl-3-dev libnl-route-3-dev libgit2-dev libsqlite3-dev
  libwebsockets-dev libcjson-dev libsodium-dev libsystemd-dev libcurl4-openssl-dev libhttp-parser-dev libssl-dev)
run_pkgs=(git iproute2 e2fsprogs util-linux python3 ca-certificates curl procps nftables)
test_pkgs=(bubblewrap hyperfine nginx-light wrk debootstrap chromium openssh-server)
want=("${build_pkgs[@]}" "${run_pkgs[@]}")
[ "${1:-}" = "--with-tests" ] && want+=("${test_pkgs[@]}")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # openssh-server (test_push_ssh.sh starts its own sshd) would start a system sshd on port 22
  # through invoke-rc.d: a temporary policy-rc.d forbids starting services during the install.
  policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ "$made_policy" = 1 ]; then rm -f "$policy"; trap - EXIT; fi
fi

# The agent CLIs (Claude Code, Codex, OpenCode) from the npm registry for the agent tests: node and
# npm from Debian when none is on PATH (Debian 12's nodejs is 18, the minimum), then the pinned
# versions into /var/lib/nightshift/agents (about 1.1 GB once; a re-run only checks a stamp).
if [ "${1:-}" = "--with-tests" ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nodejs npm
  fi
  bash "$(dirname "$0")/../rootfs/agents/install.sh" ||
    echo "warning: agent CLIs not installed; tests/integration/test_agent_clis.sh will skip" >&2
  # The Debian base image with the packages test_debian_base.sh uses (built once, then cached).
  mkdir -p /var/lib/nightshift/images
  NS_DEBIAN_PACKAGES="ca-certificates git nodejs npm python3-pip" \
    bash "$(dirname "$0")/../rootfs/debian/build.sh" /var/lib/nightshift/images >/dev/null ||
    echo "warning: the Debian base image was not built; test_debian_base.sh will build or skip" >&2
  # Test-only npm tools (the OpenAPI validator), pinned, into /var/lib/nightshift/test-tools.
  bash "$(dirname "$0")/../tests/tools/install.sh" ||
    echo "warning: test tools not installed; test_api_routes.sh skips the OpenAPI validation" >&2
fi
