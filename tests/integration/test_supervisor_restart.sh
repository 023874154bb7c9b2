#!/usr/bin/env bash
# Restart safety: SIGKILL `nightshift serve` while an agent prints a counter, start it again: the
# counter's output continues with no gap and no duplicate, no commit is doubled, queued prompts
# survive; and with the kill at a turn's end, during its commit.  Then the same with SIGKILL of sandboxd.
. "$(dirname "$0")/sv_lib.sh"
sv_setup
make_repo "$NS_TMP/src/app"
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/app\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
# 60 lines over about 9 s: the kills below land while it prints (at 0.05 s a line a fast machine had
# finished it before the first kill, which then tested a turn's end instead).
counter='for i in $(seq 1 60); do echo line-$i; sleep 0.15; done; echo done > counted.txt'
want=$($PY -c 'print("".join(f"line-{i}\n" for i in range(1,61)), end="")')

# --- SIGKILL the supervisor -----------------------------------------------------------------
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"$counter\"}")
sid=$(jget "${r#* }" 'd["id"]')
wait_state "$sid" running >/dev/null
sleep 1
api POST "/api/v1/sessions/$sid/prompts" '{"text":"echo follow-up-ran > f.txt"}' >/dev/null
note "killing the supervisor at $(output_of "$sid" 2>/dev/null | wc -l) lines"
sv_kill
sleep 0.5
sv_start
expect_eq "after a supervisor SIGKILL the session goes on and ends idle" idle "$(WAIT_S=60 wait_state "$sid" idle failed)"
got=$(output_of "$sid")
first_turn=${got%%follow-up*}
expect_eq "the counter's output has no gap and no duplicate" "$want" "$(printf '%s' "$got" | grep '^line-')"
expect_eq "the queued follow-up survived and ran" "follow-up-ran" \
  "$(git -C "$(mirror_of "$repo_id")" show "nightshift/$sid:f.txt" 2>/dev/null)"
expect_eq "one commit per turn, none doubled" 2 "$(git -C "$(mirror_of "$repo_id")" rev-list --count "main..nightshift/$sid")"
expect_eq "one commit event per turn" 2 "$(events "$sid" | grep -c '"type": "commit"')"

# --- SIGKILL the supervisor at a turn's end ----------------------------------------------------
# The turn has printed its last line: the kill lands as it exits or while its commit runs (git add
# of 30 MB, the pack streamed into the mirror).  The restarted supervisor must finish that commit
# (no git of the dead one's left holding index.lock; no byte of the pack lost), then run the
# queued follow-up.  Three moments across that window.
ends=()
for delay in 0.05 0.3 0.6; do
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"head -c 30000000 /dev/urandom > big.bin; echo turn-end\"}")
  s4=$(jget "${r#* }" 'd["id"]')
  wait_state "$s4" running >/dev/null
  api POST "/api/v1/sessions/$s4/prompts" '{"text":"echo follow-up-ran > f.txt"}' >/dev/null
  for _ in $(seq 300); do output_of "$s4" 2>/dev/null | grep -q turn-end && break; sleep 0.02; done
  sleep "$delay"
  sv_kill
  sleep 0.3
  sv_start
  st=$(WAIT_S=60 wait_state "$s4" idle failed)
  m=$(mirror_of "$repo_id")
  note "killed $delay s after the turn's last line: $st, $(events "$s4" | grep -c '"type": "error"') error events"
  expect_eq "killed $delay s after the turn's last line: the session ends idle" idle "$st"
  expect_eq "  with no error event" 0 "$(events "$s4" | grep -c '"type": "error"')"
  expect_eq "  the turn's commit is in the mirror, whole" 30000000 "$(git -C "$m" cat-file -s "nightshift/$s4~1:big.bin" 2>/dev/null)"
  check "  and the mirror is sound" git -C "$m" fsck --no-dangling
  expect_eq "  the queued follow-up ran after it" follow-up-ran "$(git -C "$m" show "nightshift/$s4:f.txt" 2>/dev/null)"
  expect_eq "  one commit per turn" 2 "$(git -C "$m" rev-list --count "main..nightshift/$s4" 2>/dev/null)"
  ends+=("$s4")
done
for s4 in "${ends[@]}"; do api POST "/api/v1/sessions/$s4/complete" >/dev/null; done

# --- SIGKILL sandboxd -------------------------------------------------------------------------
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"$counter\",\"once\":true}")
sid2=$(jget "${r#* }" 'd["id"]')
wait_state "$sid2" running >/dev/null
sleep 1
kill -KILL "$NS_DAEMON_PID"; wait "$NS_DAEMON_PID" 2>/dev/null; NS_DAEMON_PID=
sleep 0.3
start_daemon
expect_eq "after a sandboxd SIGKILL the session completes" completed "$(WAIT_S=60 wait_state "$sid2" completed failed)"
expect_eq "its counter has no gap and no duplicate" "$want" "$(output_of "$sid2" | grep '^line-')"
check "and its commit came back" git -C "$(mirror_of "$repo_id")" cat-file -e "nightshift/$sid2:counted.txt"

# --- a session whose sandbox vanished while the supervisor was down ---------------------------
r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"true\"}")
sid3=$(jget "${r#* }" 'd["id"]')
wait_state "$sid3" idle >/dev/null
sb_id=$(jget "$(api GET "/api/v1/sessions/$sid3" | cut -d' ' -f2-)" 'd["sandbox"]')
sv_stop
sb destroy "$sb_id" >/dev/null
sv_start
expect_eq "a session whose sandbox is gone ends failed" failed "$(wait_state "$sid3" failed)"
expect_match "with the reason" 'sandbox is gone' "$(api GET "/api/v1/sessions/$sid3")"
api POST "/api/v1/sessions/$sid/complete" >/dev/null
wait_state "$sid" completed >/dev/null
sv_stop
tap_done
