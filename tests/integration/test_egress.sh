#!/usr/bin/env bash
# network "proxy": a `command` session runs curl inside its sandbox; an allowed name reaches a test
# server on loopback through the session's egress proxy (a static host map stands in for DNS), a
# denied name gets 403 and an `egress` event with verdict deny, a direct connection fails; bad
# allow-list entries are refused with 400.  Established tunnels are relayed by the proxy process
# (ns-proxy), whose byte counts reach the events; killing it cuts them, with the reason.
. "$(dirname "$0")/sv_lib.sh"
EG=$(mktemp -d /tmp/ns-egress.XXXXXX); chmod 755 "$EG"
echo "hello through the proxy" > "$EG/hello.txt"
printf 'allowed.test 127.0.0.1\ndenied.test 127.0.0.1\n' > "$EG/hosts"; chmod 644 "$EG/hosts" "$EG/hello.txt"
OP=$(free_port)
$PY -m http.server "$OP" --bind 127.0.0.1 --directory "$EG" >/dev/null 2>&1 & ORIGIN=$!
sv_setup --egress-hosts "$EG/hosts" --egress-allow default.test
trap 'kill $ORIGIN 2>/dev/null; rm -rf "$EG"; sv_stop; sv_log_tail; ns_cleanup' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$OP/" && break; sleep 0.1; done
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo=$(jget "$(printf '%s' "$r" | cut -d' ' -f2-)" 'd["id"]')

# --- bad input ---------------------------------------------------------------------------------
for bad in '"not a host"' '"1.2.3.4"' '"a..b"' '"x.com:70000"' '"*."' '7'; do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"true\",\"network\":\"proxy\",\"egress\":[$bad]}")
  expect_match "egress entry $bad is refused with 400" '^400 .*egress' "$r"
done
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"true\",\"egress\":[\"allowed.test\"]}")
expect_match "an egress list without network proxy is refused" '^400 .*needs network' "$r"
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo\",\"prompt\":\"true\",\"network\":\"bogus\"}")
expect_match "an unknown network is refused" '^400 .*network' "$r"
expect_eq "and no session was made" 0 "$(jget "$(api GET /api/v1/sessions | cut -d' ' -f2-)" 'len(d["sessions"])')"

# --- a proxy session ---------------------------------------------------------------------------------
script="curl -s -m 5 http://allowed.test:$OP/hello.txt
curl -s -m 5 -o /dev/null -w 'denied:%{http_code}\n' http://denied.test:$OP/hello.txt
curl -s -m 5 -p -o /dev/null -w 'tunnel:%{http_code}\n' http://allowed.test:$OP/hello.txt
curl -s -m 3 --noproxy '*' http://127.0.0.1:$OP/hello.txt || echo direct-loopback-failed
curl -s -m 3 --noproxy '*' http://192.0.2.1:$OP/ || echo direct-remote-failed
echo proxy-env:\$HTTP_PROXY"
body=$($PY -c 'import json,sys; print(json.dumps({"repo":sys.argv[1],"prompt":sys.argv[2],"once":True,
  "network":"proxy","egress":["allowed.test"]}))' "$repo" "$script")
r=$(api POST /api/v1/sessions "$body")
expect_match "a proxy session is created" '^201 ' "$r"
sid=$(jget "$(printf '%s' "$r" | cut -d' ' -f2-)" 'd["id"]')
expect_eq "it completes" completed "$(wait_state "$sid" completed failed stopped)"
out=$(output_of "$sid")
note "output: $(printf '%s' "$out" | tr '\n' '|')"
expect_match "an allowed name reaches the test server through the proxy" 'hello through the proxy' "$out"
expect_match "a denied name gets 403" 'denied:403' "$out"
expect_match "CONNECT to an allowed name tunnels" 'tunnel:200' "$out"
expect_match "a direct connection to the server bypassing the proxy fails" 'direct-loopback-failed' "$out"
expect_match "a direct connection anywhere else fails" 'direct-remote-failed' "$out"
expect_match "processes get HTTP_PROXY" 'proxy-env:http://127.0.0.1:3128' "$out"
ev=$(events "$sid" | grep '"type": "egress"')
expect_match "the denied attempt is an egress event with verdict deny" '"host": "denied.test".*"verdict": "deny"' "$ev"
expect_eq "the allowed fetches are egress events with bytes each way" 2 "$(printf '%s\n' "$ev" | $PY -c 'import json,sys
print(sum(1 for l in sys.stdin if l.strip() and (lambda d: d["verdict"]=="allow" and d["host"]=="allowed.test"
      and d["bytes_up"]>0 and d["bytes_down"]>20)(json.loads(l)["data"])))')"
expect_eq "the session reports network proxy" proxy "$(jget "$(api GET "/api/v1/sessions/$sid" | cut -d' ' -f2-)" 'd["network"]')"

# --- the proxy's socket: private, and the same one across a restart of the supervisor ------------
fetch="curl -s -m 5 http://allowed.test:$OP/hello.txt"
r=$(api POST /api/v1/sessions "$($PY -c 'import json,sys; print(json.dumps({"repo":sys.argv[1],"prompt":sys.argv[2],
  "network":"proxy","egress":["allowed.test"]}))' "$repo" "$fetch")")
sid2=$(jget "$(printf '%s' "$r" | cut -d' ' -f2-)" 'd["id"]')
wait_state "$sid2" idle failed >/dev/null
sock=$SV_DATA/sockets/egress-$sid2.sock
cons=$(jget "$(sb ls --json)" "[s['connect'] for s in d['sandboxes'] if s.get('workspace','').endswith('$sid2')][0]")
expect_match "the sandbox's egress connector goes to the session's Unix socket" \
  "\\{\"port\": 3128, \"host_path\": \"$sock\"\\}" "$cons"
expect_match "  and its model proxy connector to the supervisor's" "\"port\": 3129, \"host_path\": \"$SV_DATA/sockets/model.sock\"" "$cons"
expect_eq "  none to a loopback port" 0 "$(printf '%s' "$cons" | grep -c host_port)"
check "  a socket, in a directory only the supervisor can enter" \
  bash -c "[ -S '$sock' ] && [ \"\$(stat -c %a '$SV_DATA/sockets')\" = 700 ]"
sv_kill
check "  while the supervisor is down, no other user can take its place" \
  bash -c "! setpriv --reuid=65534 --regid=65534 --clear-groups -- $PY -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"$sock.x\")' 2>/dev/null"
sv_start
api POST "/api/v1/sessions/$sid2/prompts" "$($PY -c 'import json,sys; print(json.dumps({"text":sys.argv[1]}))' "$fetch")" >/dev/null
sleep 0.3
wait_state "$sid2" idle failed >/dev/null
expect_eq "after a SIGKILL and restart the proxy serves the sandbox again, at the same socket" 2 \
  "$(output_of "$sid2" | grep -c 'hello through the proxy')"
# --- established tunnels: relayed by the proxy process, their bytes reported ------------------------
truncate -s 8M "$EG/big.bin"; truncate -s 64M "$EG/huge.bin"; chmod 644 "$EG/big.bin" "$EG/huge.bin"
prompt() { api POST "/api/v1/sessions/$sid2/prompts" "$($PY -c 'import json,sys; print(json.dumps({"text":sys.argv[1]}))' "$1")" >/dev/null; }
# origin_conn_owner: the process holding the proxy's connection to the origin: ns-proxy as soon as
# it is (the supervisor relays a tunnel's first buffer itself, until it turns out to be bulk), else
# whatever held it last within 5 s
origin_conn_owner() {
  local o="" n; for _ in $(seq 50); do
    n=$(ss -tnpH "( dport = :$OP )" | grep -o 'users:(("[^"]*"' | head -n1 | cut -d'"' -f2)
    [ -n "$n" ] && o=$n
    [ "$o" = ns-proxy ] && break; sleep 0.1
  done
  echo "$o"
}
prompt "curl -s -m 30 --limit-rate 3M -o /dev/null -w 'big:%{size_download}\n' http://allowed.test:$OP/big.bin
curl -s -m 30 -p --limit-rate 3M -o /dev/null -w 'bigtunnel:%{size_download}\n' http://allowed.test:$OP/big.bin"
expect_eq "a download's origin connection is handed to the proxy process" ns-proxy "$(origin_conn_owner)"
wait_state "$sid2" idle failed >/dev/null
out=$(output_of "$sid2")
expect_match "8 MiB came through (forward)" 'big:8388608' "$out"
expect_match "8 MiB came through (CONNECT)" 'bigtunnel:8388608' "$out"
ev=$(events "$sid2" | grep '"type": "egress"')
expect_eq "both egress events count every byte the proxy process relayed" 2 "$(printf '%s\n' "$ev" | $PY -c 'import json,sys
print(sum(1 for l in sys.stdin if l.strip() and (lambda d: d["verdict"]=="allow" and d["bytes_down"]>=8388608
      and d["bytes_up"]>0 and "reason" not in d)(json.loads(l)["data"])))')"
PXP=$(pgrep -P "$SV_PID" -x ns-proxy)
# 64 MiB: more than the buffers between the proxy and the client hold, so the cut shows
prompt "curl -s -m 30 --limit-rate 4M -o /dev/null -w 'cut:%{size_download}\n' http://allowed.test:$OP/huge.bin || echo cut-failed"
expect_eq "a slow download's tunnel is in the proxy process" ns-proxy "$(origin_conn_owner)"
kill -KILL "$PXP"
wait_state "$sid2" idle failed >/dev/null
expect_match "killing the proxy process cuts its tunnels (the client sees it)" 'cut-failed' "$(output_of "$sid2")"
expect_match "and the egress event says why" '"reason": "the proxy process ended"' "$(events "$sid2" | grep '"type": "egress"')"
for _ in $(seq 30); do p=$(pgrep -P "$SV_PID" -x ns-proxy); [ -n "$p" ] && [ "$p" != "$PXP" ] && break; sleep 0.1; done
prompt "$fetch"
wait_state "$sid2" idle failed >/dev/null
expect_eq "a new proxy process relays the next fetch" 3 "$(output_of "$sid2" | grep -c 'hello through the proxy')"
# The session is stopped 1.5 s into a download: its sandbox and its proxy go, and whichever ends the
# tunnel first (the client killed, or the proxy's drop: then the process reports it late), the
# egress event counts what the process moved after the hand-over, not just the first buffer.
count_cut() {
  events "$sid2" | grep '"type": "egress"' | $PY -c 'import json,sys
print(sum(1 for l in sys.stdin if l.strip() and json.loads(l)["data"]["bytes_down"] > (2 << 20)
          and json.loads(l)["data"]["bytes_down"] < (64 << 20)))'
}
before=$(count_cut)
prompt "curl -s -m 30 --limit-rate 4M -o /dev/null http://allowed.test:$OP/huge.bin"
expect_eq "another slow download's tunnel is in the proxy process" ns-proxy "$(origin_conn_owner)"
sleep 1.5
api POST "/api/v1/sessions/$sid2/stop" '{"force":true}' >/dev/null
wait_state "$sid2" stopped >/dev/null
check "the session's end removes its socket" test ! -e "$sock"
for _ in $(seq 50); do [ "$(count_cut)" = $((before + 1)) ] && break; sleep 0.1; done
expect_eq "the cut download's egress event counts the process's bytes (over 2 MiB of 64 after 1.5 s at 4 MiB/s)" \
  $((before + 1)) "$(count_cut)"
note "the cut download ended by: $(events "$sid2" | grep '"type": "egress"' | tail -n1 | $PY -c 'import json,sys
print(json.load(sys.stdin)["data"].get("reason", "its own end"))')"
tap_done
