#!/usr/bin/env bash
# The global concurrency limit: 20 sessions at once with --max-concurrent 8 on this 2-core
# machine: at most 8 run, the others wait in FIFO order, all complete.  Each agent sleeps 8 s so
# that all 20 are queued while the first 8 run.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --max-concurrent 8
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
ids=()
for i in $(seq 1 20); do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"sleep 8; echo s$i > s$i.txt\",\"once\":true}")
  ids+=("$(jget "${r#* }" 'd["id"]')")
done
max_active=0; max_queued=0; done_n=0
for _ in $(seq 1 900); do
  counts=$(api GET '/api/v1/sessions?limit=1000' | cut -d' ' -f2- | $PY -c 'import json,sys
s=[x["state"] for x in json.load(sys.stdin)["sessions"]]
print(sum(x in ("provisioning","running") for x in s), s.count("queued"), s.count("completed"), s.count("failed"))')
  read -r a q c f <<<"$counts"
  [ "$a" -gt "$max_active" ] && max_active=$a
  [ "$q" -gt "$max_queued" ] && max_queued=$q
  [ $((c + f)) -ge 20 ] && { done_n=$c; break; }
  sleep 0.1
done
note "most active at once: $max_active, most waiting: $max_queued"
check "never more than 8 sessions active" test "$max_active" -le 8
expect_eq "8 ran at once" 8 "$max_active"
check "the rest waited in the queue (≥ 12 at once)" test "$max_queued" -ge 12
expect_eq "all 20 completed" 20 "$done_n"
# FIFO: the first 8 created all started before any of the 12 that waited
expect_eq "the first 8 created ran first (FIFO)" yes "$(api GET '/api/v1/sessions?limit=1000' | cut -d' ' -f2- | $PY -c 'import json,sys
s=json.load(sys.stdin)["sessions"]; st=[x["started_at"] for x in sorted(s,key=lambda x:(x["created_at"],x["id"]))]
print("yes" if max(st[:8]) < min(st[8:]) else st)')"
sv_stop
tap_done
