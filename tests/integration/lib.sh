# Shared helpers for the integration tests: TAP output, a private nightshift-sandboxd with its own
# directories, an unprivileged user that owns workspaces and acts as the supervisor, and cleanup
# that leaves nothing behind (sandboxes, cgroups, mounts, temp dirs).
# shellcheck shell=bash
set -u
# System tools only: the test user cannot run tools installed under /root (pyenv and the like).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

NS_BUILD=${NS_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
NS_SRC=${NS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SANDBOXD=$NS_BUILD/bin/nightshift-sandboxd
SANDBOX=$NS_BUILD/bin/nightshift-sandbox
HELPERS=$NS_BUILD/tests/helpers
TEST_USER=nightshift-test

_tap_n=0
_tap_fail=0
_tap_skip=0

ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $*"; }
not_ok() { _tap_n=$((_tap_n + 1)); _tap_fail=$((_tap_fail + 1)); echo "not ok $_tap_n - $*"; }
skip() { _tap_n=$((_tap_n + 1)); _tap_skip=$((_tap_skip + 1)); echo "ok $_tap_n - # SKIP $*"; }
note() { echo "# $*"; }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else not_ok "$d"; fi; }
# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (expected '$2', got '$3')"; fi
}
expect_match() {
  if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else not_ok "$1 (no match for /$2/ in '$(printf '%s' "$3" | head -c 300)')"; fi
}

tap_done() {
  echo "1..$_tap_n"
  note "$((_tap_n - _tap_fail - _tap_skip)) passed, $_tap_fail failed, $_tap_skip skipped"
  [ "$_tap_fail" -eq 0 ]
}

require_root() {
  if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP these tests need root"; exit 77; fi
}

ensure_test_user() {
  if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$TEST_USER" >/dev/null
  fi
  TEST_UID=$(id -u "$TEST_USER")
  TEST_GID=$(id -g "$TEST_USER")
}

# as_user CMD...: run as the unprivileged test user (the supervisor's role)
as_user() { setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --clear-groups -- "$@"; }
# sb ARGS...: the CLI as the test user, talking to our daemon
sb() { as_user "$SANDBOX" --socket "$NS_SOCK" "$@"; }
# sb_root ARGS...: the CLI as root (allowed too)
sb_root() { "$SANDBOX" --socket "$NS_SOCK" "$@"; }

# --net-pool none: no nftables table in the host's namespace from the tests; test_net_private
# runs its daemon in a namespace of its own and turns private networking back on.
start_daemon() {
  rm -f "$NS_SOCK"   # a killed daemon leaves its socket behind
  "$SANDBOXD" --socket "$NS_SOCK" --socket-group "$TEST_GID" --state-dir "$NS_TMP/state" \
    --upper-dir "$NS_TMP/upper" --workspace-root "$NS_TMP/ws" --allow-user "$TEST_USER" --allow-user 0 \
    --ro-root "$NS_TMP/ro" --max-memory 8G --max-pids 100000 --net-pool none "$@" 2>>"$NS_TMP/sandboxd.log" &
  NS_DAEMON_PID=$!
  for _ in $(seq 1 200); do
    [ -S "$NS_SOCK" ] && "$SANDBOX" --socket "$NS_SOCK" version >/dev/null 2>&1 && return 0
    kill -0 "$NS_DAEMON_PID" 2>/dev/null || break
    sleep 0.02
  done
  echo "# sandboxd did not start:"; sed 's/^/#   /' "$NS_TMP/sandboxd.log"
  return 1
}

stop_daemon() {
  if [ -n "${NS_DAEMON_PID:-}" ] && kill -0 "$NS_DAEMON_PID" 2>/dev/null; then
    kill -TERM "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null
  fi
  NS_DAEMON_PID=
}

destroy_all() {
  local id
  for who in sb sb_root; do
    for id in $($who ls --json 2>/dev/null | python3 -c 'import json,sys
try:
  d=json.load(sys.stdin)
  for s in d.get("sandboxes",[]): print(s["id"])
except Exception: pass'); do
      $who destroy "$id" >/dev/null 2>&1
    done
  done
}

ns_cleanup() {
  if [ -n "${NS_DAEMON_PID:-}" ]; then destroy_all; stop_daemon; fi
  # The daemon's log outlives the temp tree, for a look after a failure.
  [ -n "${NS_TMP:-}" ] && cp "$NS_TMP/sandboxd.log" "/tmp/sandboxd-$(basename "$0" .sh).log" 2>/dev/null
  [ -n "${NS_TMP:-}" ] && [ -d "$NS_TMP" ] && rm -rf "$NS_TMP"
}

# setup: a fresh temp tree, the test user, a workspace it owns, and a running daemon
ns_setup() {
  require_root
  [ -x "$SANDBOXD" ] && [ -x "$SANDBOX" ] || { echo "1..0 # SKIP binaries not built in $NS_BUILD"; exit 77; }
  ensure_test_user
  NS_TMP=$(mktemp -d /tmp/ns-it.XXXXXX)
  chmod 755 "$NS_TMP"
  NS_SOCK=$NS_TMP/sandboxd.sock
  mkdir -p "$NS_TMP/ws" "$NS_TMP/ro"
  WS=$NS_TMP/ws/w1
  mkdir -p "$WS"; chown "$TEST_UID:$TEST_GID" "$WS"
  trap ns_cleanup EXIT
  # shellcheck disable=SC2086  # NS_DAEMON_ARGS: extra daemon flags, split on purpose
  start_daemon ${NS_DAEMON_ARGS:-} || { echo "1..0 # SKIP daemon failed"; exit 1; }
}

# leftovers: print what of ours is left on the host (cgroups, mounts)
leftovers() {
  find /sys/fs/cgroup -maxdepth 6 -name 'nightshift-sandboxes' -o -maxdepth 7 -name 's[a-z0-9]*' -path '*nightshift-sandboxes/*' 2>/dev/null
  grep -c "$NS_TMP" /proc/self/mountinfo | grep -v '^0$'
}
