#!/usr/bin/env bash
# The global concurrency limit: 20 sessions at once with --max-concurrent 8 on this 2-core
# machine: at most 8 run, the others wait in FIFO order, all complete.  Each agent waits until the
# test drops a file in its working tree, which the test does only once it has seen 8 running and
# 12 queued (or after 120 s): however slow the machine is at creating 20 sessions, all of them
# are queued while the first 8 run.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --max-concurrent 8
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
ids=()
for i in $(seq 1 20); do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"while [ ! -e .go ]; do sleep 0.05; done; rm -f .go; echo s$i > s$i.txt\",\"once\":true}")
  ids+=("$(jget "${r#* }" 'd["id"]')")
done
max_active=0; max_queued=0; done_n=0; released=no; t0=$SECONDS
for _ in $(seq 1 3000); do
  states=$(api GET '/api/v1/sessions?limit=1000' | cut -d' ' -f2- | $PY -c 'import json,sys
for x in json.load(sys.stdin)["sessions"]: print(x["id"], x["state"])')
  a=$(grep -cE ' (provisioning|running)$' <<<"$states"); q=$(grep -c ' queued$' <<<"$states")
  c=$(grep -c ' completed$' <<<"$states"); f=$(grep -c ' failed$' <<<"$states")
  [ "$a" -gt "$max_active" ] && max_active=$a
  [ "$q" -gt "$max_queued" ] && max_queued=$q
  [ $((c + f)) -ge 20 ] && { done_n=$c; break; }
  # Release the running agents once the queue has filled (or the machine is too slow to tell).
  if [ $released = no ] && { [ "$a" -eq 8 ] && [ "$q" -eq 12 ] || [ $((SECONDS - t0)) -ge 120 ]; }; then released=yes; fi
  if [ $released = yes ]; then
    for sid in $(awk '$2 == "running" {print $1}' <<<"$states"); do
      [ -d "$SV_WS/$sid" ] && as_user touch "$SV_WS/$sid/.go" 2>/dev/null
    done
  fi
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
