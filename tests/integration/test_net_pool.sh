#!/usr/bin/env bash
# The private warm pool (--warm-pool-private): sandboxes whose veth pair, addresses and route are
# made ahead by a pool builder, handed out to `create --net private`.  A `--net none` create never
# gets one (no link at all); every address is unique; the pairs waiting in the pool are in
# nightshift's interface group (guarded by the rules like any other); the daemon's exit and
# restart leave no link behind.  sandboxd runs in a network namespace this test makes.
. "$(dirname "$0")/lib.sh"
require_root
command -v nft >/dev/null || { echo "1..0 # SKIP nft not installed (scripts/install-deps.sh)"; exit 77; }
if [ -z "${NS_NETNS_INNER:-}" ]; then
  NETNS=nstest-netpool-$$
  ip netns add "$NETNS" || { echo "1..0 # SKIP cannot create a network namespace"; exit 77; }
  trap 'ip netns del "$NETNS" 2>/dev/null' EXIT
  nsenter --net="/run/netns/$NETNS" sh -c 'ip link set lo up && sysctl -qw net.ipv4.ip_forward=1'
  NS_NETNS_INNER=$NETNS nsenter --net="/run/netns/$NETNS" bash "$0"
  exit $?
fi
POOL_ARGS="--net-pool 10.200.0.0/16 --warm-pool 1 --warm-pool-private 2 --debug"
export NS_DAEMON_ARGS=$POOL_ARGS
ns_setup
GROUP=1314062337
SRVS=()
trap 'kill "${SRVS[@]}" 2>/dev/null; ns_cleanup' EXIT
links() { ip -o link show group $GROUP | grep -c .; }
wait_links() { # wait_links N: until exactly N links of ours exist (10 s at most)
  for _ in $(seq 200); do [ "$(links)" = "$1" ] && return 0; sleep 0.05; done; return 1; }
n_listed() { sb ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sandboxes"]))'; }
addr_of() { sb ls --json | python3 -c 'import json,sys
for s in json.load(sys.stdin)["sandboxes"]:
    if s["id"] == sys.argv[1]: print(s["net_addr"][sys.argv[2]])' "$1" "$2"; }

check "two pairs are made ahead for the pool" wait_links 2
expect_eq "and no sandbox is listed" "0" "$(n_listed)"
expect_eq "the waiting pairs have one address each (host ends), all distinct" "2" \
  "$(ip -4 -o addr show | awk '/ 10\.200\./ {print $4}' | sort -u | grep -c .)"

# ---- a `none` create gets no link ----------------------------------------------------------------
N=$(sb create --net none) || { not_ok "create --net none: $N"; tap_done; exit 1; }
expect_eq "a --net none sandbox has loopback only" "lo" \
  "$(sb exec "$N" -- sh -c "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "and took none of the pool's pairs" "2" "$(links)"

# ---- a `private` create gets a pair made ahead -------------------------------------------------------
A=$(sb create --net private) || { not_ok "create --net private: $A"; tap_done; exit 1; }
expect_match "it was handed a pair made ahead" "$A: its pair was made ahead" "$(cat "$NS_TMP/sandboxd.log")"
HA=$(addr_of "$A" host); IA=$(addr_of "$A" sandbox); LA=$(addr_of "$A" link)
note "sandbox $A: inside $IA, host end $HA on $LA"
expect_match "it has a pool address" '^10\.200\.[0-9]+\.[0-9]+$' "$IA"
expect_eq "its host end is in nightshift's interface group" "1" "$(ip -o link show group $GROUP | grep -c " $LA@")"
expect_match "and up" "state UP" "$(ip -o link show "$LA")"
expect_eq "IPv6 is off on the host end" "1" "$(cat "/proc/sys/net/ipv6/conf/$LA/disable_ipv6")"
expect_eq "IPv6 is off on the inner end" "1" "$(sb exec "$A" -- cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6)"
expect_eq "no IPv6 address on the inner end" "" "$(sb exec "$A" -- sh -c 'grep -v " lo$" /proc/net/if_inet6')"
expect_match "the default route inside goes to the host end" "default via $HA dev eth0" "$(sb exec "$A" -- ip route)"
expect_match "its address is on eth0" "inet $IA/30" "$(sb exec "$A" -- ip -4 -o addr show dev eth0)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P4=$(free_port)
python3 -c 'import socket,sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(b"reached\n"); c.close()' "$P4" & SRVS+=($!)
probe='import socket,sys
s = socket.socket(); s.settimeout(1.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(16).decode().strip() or "reached")
except Exception as e:
    print("failed")'
for _ in $(seq 50); do [ "$(python3 -c "$probe" "$HA" "$P4")" = reached ] && break; sleep 0.1; done
expect_eq "control: the test namespace reaches its own server on the host end" "reached" "$(python3 -c "$probe" "$HA" "$P4")"
expect_eq "a host server on 0.0.0.0 is unreachable from the pooled sandbox" "failed" \
  "$(sb exec "$A" -- python3 -c "$probe" "$HA" "$P4")"

# ---- a burst: every address distinct, pool pairs included -------------------------------------------
pids=()
for _ in $(seq 8); do sb create --net private >/dev/null & pids+=($!); done
wait "${pids[@]}"
expect_eq "9 private sandboxes are listed (and the none one)" "10" "$(n_listed)"
addrs=$(sb ls --json | python3 -c 'import json,sys; [print(s["net_addr"]["sandbox"]) for s in json.load(sys.stdin)["sandboxes"] if s["net"] == "private"]')
expect_eq "with 9 distinct addresses" "9" "$(printf '%s\n' "$addrs" | sort -u | grep -c .)"
sleep 1
expect_eq "every address in the namespace is held once (sandboxes' and the pool's host ends)" \
  "$(ip -4 -o addr show | awk '/ 10\.200\./ {print $4}' | grep -c .)" \
  "$(ip -4 -o addr show | awk '/ 10\.200\./ {print $4}' | sort -u | grep -c .)"
expect_eq "the pool refilled to its size: 9 listed pairs and 2 waiting" "11" "$(wait_links 11; links)"

# ---- teardown leaves nothing ----------------------------------------------------------------------
destroy_all
stop_daemon
gone=0
for _ in $(seq 300); do
  if [ "$(links)" = 0 ] && ! ip -4 -o addr | grep -q ' 10\.200\.'; then gone=1; break; fi
  sleep 0.1
done
expect_eq "after destroy and the daemon's exit, no link or address is left" "1" "$gone"
if nft list table inet nightshift >/dev/null 2>&1; then not_ok "the table is removed at exit (the pool's pairs went first)"; else ok "the table is removed at exit (the pool's pairs went first)"; fi

# ---- a daemon killed with its pool ready: the next start leaves no stale pair -------------------------------
# shellcheck disable=SC2086
start_daemon $POOL_ARGS
check "the pool is ready again" wait_links 2
kill -KILL "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null
# shellcheck disable=SC2086
start_daemon $POOL_ARGS
check "after the restart exactly the new pool's two pairs exist" wait_links 2
B=$(sb create --net private)
expect_match "a private create after the restart works" '^10\.200\.' "$(addr_of "$B" sandbox)"
destroy_all
stop_daemon
gone=0
for _ in $(seq 300); do [ "$(links)" = 0 ] && { gone=1; break; }; sleep 0.1; done
expect_eq "and at exit no link is left" "1" "$gone"
tap_done
