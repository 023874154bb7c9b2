#!/usr/bin/env bash
# net "private": a veth pair per sandbox and the nightshift nftables table.  sandboxd runs inside a
# network namespace this test makes, with ip_forward=1 there (as on a Docker host), so that every
# "unreachable" below fails if the rules are missing; a control deletes the table and sees the
# same connection succeed.  Nothing here touches the host's own network namespace.
. "$(dirname "$0")/lib.sh"
require_root
command -v nft >/dev/null || { echo "1..0 # SKIP nft not installed (scripts/install-deps.sh)"; exit 77; }
if [ -z "${NS_NETNS_INNER:-}" ]; then
  NETNS=nstest-net-$$
  ip netns add "$NETNS" || { echo "1..0 # SKIP cannot create a network namespace"; exit 77; }
  trap 'ip netns del "$NETNS" 2>/dev/null' EXIT
  # nsenter, not `ip netns exec`: the latter remounts /sys, which sandboxd needs for cgroups.
  nsenter --net="/run/netns/$NETNS" sh -c 'ip link set lo up && sysctl -qw net.ipv4.ip_forward=1'
  NS_NETNS_INNER=$NETNS nsenter --net="/run/netns/$NETNS" bash "$0"
  exit $?
fi
# No pairs made ahead here (--warm-pool-private 0): this test counts links exactly;
# test_net_pool.sh covers the private warm pool.
NS_DAEMON_ARGS="--net-pool 10.200.0.0/16 --warm-pool-private 0"
ns_setup
note "in network namespace $NS_NETNS_INNER; ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
GROUP=1314062337
SRVS=()
trap 'kill "${SRVS[@]}" 2>/dev/null; ns_cleanup' EXIT

check "the table inet nightshift is installed at start" nft list table inet nightshift

# ---- bad input first: nothing half-made ----------------------------------------------------------
links_before=$(ip -o link | wc -l)
out=$(sb create --net bogus 2>&1); rc=$?
expect_match "an unknown net mode is refused clearly" "net mode 'bogus' is not supported" "$out"
out=$(sb create --net nat 2>&1)
expect_match "nat without --nat-uplink is refused clearly" "nat.*--nat-uplink" "$out"
expect_eq "and nothing was made (no sandbox)" "0" "$(sb ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sandboxes"]))')"
expect_eq "and no link" "$links_before" "$(ip -o link | wc -l)"

# ---- one private sandbox ------------------------------------------------------------------------
addr_of() { sb ls --json | python3 -c 'import json,sys
for s in json.load(sys.stdin)["sandboxes"]:
    if s["id"] == sys.argv[1]: print(s["net_addr"][sys.argv[2]])' "$1" "$2"; }
A=$(sb create --net private) || { not_ok "create --net private: $A"; tap_done; exit 1; }
HA=$(addr_of "$A" host); IA=$(addr_of "$A" sandbox); LA=$(addr_of "$A" link)
note "sandbox $A: inside $IA, host end $HA on $LA"
expect_match "the sandbox has a pool address" '^10\.200\.[0-9]+\.[0-9]+$' "$IA"
expect_eq "the host end is in nightshift's interface group" "1" "$(ip -o link show group $GROUP | grep -c "$LA")"
expect_eq "IPv6 is off on the host end" "1" "$(cat /proc/sys/net/ipv6/conf/$LA/disable_ipv6)"
expect_eq "IPv6 is off on the inner end" "1" "$(sb exec "$A" -- cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6)"
expect_eq "no IPv6 address on the inner end" "" "$(sb exec "$A" -- sh -c 'grep -v " lo$" /proc/net/if_inet6')"
expect_match "the default route inside goes to the host end" "default via $HA dev eth0" "$(sb exec "$A" -- ip route)"
expect_match "loopback is up inside" "UP" "$(sb exec "$A" -- ip -o link show lo)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P4=$(free_port); P6=$(free_port); PH=$(free_port); PAPI=$(free_port)
serve() { python3 -c 'import socket,sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(b"reached\n"); c.close()' "$1" "$2" & SRVS+=($!); }
serve 0.0.0.0 "$P4"; serve :: "$P6"; serve "$HA" "$PH"; serve 127.0.0.1 "$PAPI"; serve 0.0.0.0 "$((PAPI))" 2>/dev/null
sleep 0.3
probe='import socket,sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET); s.settimeout(1.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(16).decode().strip() or "reached")
except Exception as e:
    print("failed")'
reach() { sb exec "$1" -- python3 -c "$probe" "$2" "$3"; }
expect_eq "control: the test namespace reaches its own 0.0.0.0 server on the host end" "reached" \
  "$(python3 -c "$probe" "$HA" "$P4")"
expect_eq "a host server on 0.0.0.0 is unreachable from the sandbox" "failed" "$(reach "$A" "$HA" "$P4")"
expect_eq "a host server on [::] is unreachable from the sandbox" "failed" "$(reach "$A" "$HA" "$P6")"
expect_eq "a host server on the host end's address is unreachable" "failed" "$(reach "$A" "$HA" "$PH")"
expect_eq "the supervisor's API port (stand-in) is unreachable" "failed" "$(reach "$A" "$HA" "$PAPI")"
expect_eq "the host's 127.0.0.1 stays the sandbox's own loopback" "failed" "$(reach "$A" 127.0.0.1 "$PAPI")"
expect_eq "no IPv6 way out either" "failed" "$(reach "$A" "::ffff:$HA" "$P6")"

# ---- sandbox to sandbox ---------------------------------------------------------------------------
B=$(sb create --net private)
IB=$(addr_of "$B" sandbox); HB=$(addr_of "$B" host)
PB=$(free_port)
sb exec --detach "$B" -- python3 -c 'import socket,sys
s=socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
while True:
    c,_=s.accept(); c.sendall(b"reached\n"); c.close()' "$PB" >/dev/null
for _ in $(seq 50); do [ "$(reach "$B" 127.0.0.1 "$PB")" = reached ] && break; sleep 0.1; done
expect_eq "control: B's server answers inside B" "reached" "$(reach "$B" "$IB" "$PB")"
expect_eq "control: the host reaches B's server" "reached" "$(python3 -c "$probe" "$IB" "$PB")"
expect_eq "sandbox A cannot reach sandbox B" "failed" "$(reach "$A" "$IB" "$PB")"
expect_eq "sandbox A cannot reach B's host end either" "failed" "$(reach "$A" "$HB" "$P4")"

# ---- the rules are what stops it ----------------------------------------------------------------
nft delete table inet nightshift
expect_eq "control: without the table, A reaches the host's 0.0.0.0 server" "reached" "$(reach "$A" "$HA" "$P4")"
expect_eq "control: without the table, A reaches B (ip_forward=1)" "reached" "$(reach "$A" "$IB" "$PB")"

# ---- restart: the table comes back, the sandboxes keep their links ----------------------------
stop_daemon
start_daemon --net-pool 10.200.0.0/16 --warm-pool-private 0
check "a restarted daemon reinstalls the table" nft list table inet nightshift
expect_eq "A is re-adopted with its address" "$IA" "$(addr_of "$A" sandbox)"
expect_eq "and its link" "1" "$(ip -o link show group $GROUP | grep -c "$LA")"
expect_eq "and is guarded again" "failed" "$(reach "$A" "$HA" "$P4")"
C=$(sb create --net private)
IC=$(addr_of "$C" sandbox)
if [ "$IC" != "$IA" ] && [ "$IC" != "$IB" ]; then ok "a sandbox made after the restart gets a new address ($IC)"; else not_ok "address reused while held: $IC"; fi
sb destroy "$A" >/dev/null; sb destroy "$B" >/dev/null; sb destroy "$C" >/dev/null

# ---- 100 at once ----------------------------------------------------------------------------------
pids=()
for i in $(seq 100); do sb create --net private >/dev/null & pids+=($!); done
wait "${pids[@]}"
ids=($(sb ls --json | python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)["sandboxes"]]'))
expect_eq "100 private sandboxes exist" "100" "${#ids[@]}"
addrs=$(sb ls --json | python3 -c 'import json,sys; [print(s["net_addr"]["sandbox"]) for s in json.load(sys.stdin)["sandboxes"]]')
expect_eq "with 100 distinct addresses" "100" "$(printf '%s\n' "$addrs" | sort -u | grep -c .)"
expect_eq "and 100 links" "100" "$(ip -o link show group $GROUP | grep -c .)"
pids=()
for id in "${ids[@]}"; do sb destroy "$id" >/dev/null & pids+=($!); done
wait "${pids[@]}"
gone=0
for _ in $(seq 300); do
  if [ "$(ip -o link show group $GROUP | grep -c .)" = 0 ] && ! ip -4 -o addr | grep -q ' 10\.200\.'; then gone=1; break; fi
  sleep 0.1
done
expect_eq "after destroy, every link and address is gone" "1" "$gone"
expect_eq "and no sandbox is listed" "0" "$(sb ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sandboxes"]))')"
expect_eq "and the daemon holds no stray sockets" "" "$(ls -l /proc/"$NS_DAEMON_PID"/fd | grep -c socket | awk '$1 > 8')"

stop_daemon
if nft list table inet nightshift >/dev/null 2>&1; then not_ok "the table is removed when the daemon stops with no link left"; else ok "the table is removed when the daemon stops with no link left"; fi
tap_done
