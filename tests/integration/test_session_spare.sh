#!/usr/bin/env bash
# Spare working trees (supervisor/spare.h): the second session of a repository starts on a tree
# made in the background, and that tree is the same as a fresh checkout (status, HEAD, branch,
# index, files, .git) — also when the base moved between the sessions.  Spares go away on
# shutdown, on restart after a crash (with a half-made one), and with their repository.
. "$(dirname "$0")/sv_lib.sh"
sv_setup --debug
# (lib.sh's own workspace, w1, is not the supervisor's.)

R=$NS_TMP/src/app
make_repo "$R"
as_user $PY - "$R" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(400):
    d = os.path.join(root, f"dir{i % 20:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.txt"), "w") as f:
        f.write(f"line {i}\n" * 10)
os.makedirs(os.path.join(root, "gone"), exist_ok=True)
open(os.path.join(root, "gone", "old.txt"), "w").write("to be deleted\n")
open(os.path.join(root, "changes.txt"), "w").write("first\n")
os.symlink("changes.txt", os.path.join(root, "link"))
# What the agent runs: the tree as the session found it, nothing written.
open(os.path.join(root, "probe.sh"), "w").write(r'''cd /workspace
echo "status: [$(git status --porcelain)]"
echo "head: $(git rev-parse HEAD)"
echo "branch: $(git symbolic-ref HEAD)"
echo "log:"; git log --format='%H %s'
echo "index: $(git ls-files -s | sha1sum)"
echo "diff-index: [$(git diff-index --cached HEAD)]"
echo "files: $(find . -path ./.git -prune -o \( -type f -o -type l \) -print | LC_ALL=C sort | xargs sha1sum | sha1sum)"
echo "nfiles: $(find . -path ./.git -prune -o -type f -print | wc -l)"
echo "link: $(readlink link)"
echo "gitfiles:"; (cd .git && find . \( -type f -o -type l \) ! -name index | LC_ALL=C sort)
echo "HEAD: $(cat .git/HEAD)"
echo "config:"; cat .git/config
echo "reflog: $(git reflog --format='%gs')"
''')
PY
as_user env HOME="$R" git -C "$R" add -A
as_user env HOME="$R" git -C "$R" -c user.name=t -c user.email=t@t commit -qm files
r=$(api POST /api/v1/repos "{\"path\":\"$R\"}")
repo_id=$(jget "${r#* }" 'd["id"]')

metric() { curl -s -H "Authorization: Bearer $SV_TOKEN" "$SV_URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
READY='nightshift_spare_trees{state="ready"}'
TAKEN='nightshift_spare_trees_sessions_total{result="taken"}'
MISSED='nightshift_spare_trees_sessions_total{result="missed"}'
# wait_metric NAME VALUE: until the metric has that value (10 s)
wait_metric() {
  for _ in $(seq 1 100); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
spares() { find "$SV_WS" -mindepth 1 -maxdepth 1 -name '.spare-*' | wc -l; }
# probe: a session that runs probe.sh; sets SID and OUT (its output, the session id replaced by SID)
probe() {
  local r
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"prompt\":\"sh probe.sh\",\"once\":true}")
  SID=$(jget "${r#* }" 'd["id"]') || return 1
  wait_state "$SID" completed failed >/dev/null
  OUT=$(output_of "$SID" | sed "s/$SID/SID/g")
}

# --- the second session of a repository takes a spare --------------------------------------------
probe; fresh=$OUT s1=$SID
expect_eq "the first session made a fresh tree (no spare yet: a miss)" "0 1" "$(metric "$TAKEN") $(metric "$MISSED")"
check "after it, a spare is made in the background" wait_metric "$READY" 1
expect_eq "one spare directory, named so that no session id can take it" 1 "$(spares)"
check "its disk use is visible" test "$(metric nightshift_spare_trees_bytes)" -gt 400000
probe; spared=$OUT s2=$SID
expect_eq "the second session took the spare" "1 1" "$(metric "$TAKEN") $(metric "$MISSED")"
expect_match "the debug log says so" "session $s2: working tree from spare \.spare-[a-z2-7]{12}" "$(cat "$NS_TMP/nightshift.log")"
expect_match "the probe ran" 'nfiles: 40[0-9]' "$fresh"
expect_match "the fresh tree is clean" 'status: \[\]' "$fresh"
expect_eq "the spare's tree is the fresh one: status, HEAD, branch, log, index, files, .git, reflog" "$fresh" "$spared"
g=$SV_WS/$s2/.git
expect_eq "nothing in its .git names the spare" "" \
  "$(grep -rl spare "$g/HEAD" "$g/config" "$g/refs" "$g/logs" 2>&1; find "$g" -name '*spare*')"
t_fresh=$(grep -o "session $s1: provisioned in [0-9.]* ms (settings and working tree [0-9.]*" "$NS_TMP/nightshift.log" | awk '{print $NF}')
t_spare=$(grep -o "session $s2: working tree from spare [^ ]* (at [0-9a-f]*, base [0-9a-f]*) in [0-9.]* ms" "$NS_TMP/nightshift.log" | awk '{print $(NF-1)}')
note "working tree: fresh (with settings) $t_fresh ms, from the spare $t_spare ms"
check "a refill follows" wait_metric "$READY" 1

# --- the base moved: the spare catches up with only the changed paths ----------------------------
as_user env HOME="$R" git -C "$R" rm -q gone/old.txt
printf 'second\n' > "$R/changes.txt"; printf 'new\n' > "$R/added.txt"; chown "$TEST_UID:$TEST_GID" "$R/changes.txt" "$R/added.txt"
as_user env HOME="$R" git -C "$R" add -A
as_user env HOME="$R" git -C "$R" -c user.name=t -c user.email=t@t commit -qm moved
new=$(git -C "$R" rev-parse HEAD)
probe; moved=$OUT s3=$SID
expect_eq "the session after the move took the (older) spare too" 2 "$(metric "$TAKEN")"
expect_match "its tree is at the new commit" "head: $new" "$moved"
expect_match "clean, on its branch" 'status: \[\]' "$moved"
expect_eq "changed, added and deleted files as in the new commit" "second|new|absent" \
  "$(cat "$SV_WS/$s3/changes.txt")|$(cat "$SV_WS/$s3/added.txt")|$(test -e "$SV_WS/$s3/gone" && echo there || echo absent)"
check "and the refill" wait_metric "$READY" 1

# --- shutdown removes them; so does a restart after a crash (with a half-made one) ----------------
sv_stop
expect_eq "after a clean shutdown no spare is left" 0 "$(spares)"
sv_start
probe
check "a new spare after the restart's first session" wait_metric "$READY" 1
sv_kill
expect_eq "a crash leaves the spare behind" 1 "$(spares)"
half=$SV_WS/.spare-aaaaaaaaaaaa
mkdir -p "$half/.git/objects" "$half/dir00"; echo x > "$half/dir00/file0.txt"; chown -R "$TEST_UID:$TEST_GID" "$half"
SV_FLAGS=(--debug --spare-trees 0)
sv_start
for _ in $(seq 1 50); do [ "$(spares)" = 0 ] && break; sleep 0.1; done
expect_eq "the restart removed the stale and the half-made spare" 0 "$(spares)"
expect_match "and logged it" '2 stale spares removed' "$(cat "$NS_TMP/nightshift.log")"

# --- spares off: the same tree, made afresh --------------------------------------------------------
probe; cold=$OUT
expect_eq "with --spare-trees 0 nothing is taken or counted" "0 0 0" "$(metric "$TAKEN") $(metric "$MISSED") $(metric "$READY")"
expect_eq "the tree the moved spare gave is the fresh one" "$cold" "$moved"
sleep 0.7
expect_eq "and no spare is made" 0 "$(spares)"

# --- deleting the repository removes its spares; nothing is left behind ---------------------------
sv_stop
SV_FLAGS=(--debug --keep-events false) # a deleted session's row goes too: the repository is free
sv_start
probe
check "a spare before the delete" wait_metric "$READY" 1
for s in $(jget "$(api GET /api/v1/sessions?limit=100 | cut -d' ' -f2-)" '" ".join(x["id"] for x in d["sessions"])'); do
  api DELETE "/api/v1/sessions/$s" >/dev/null
done
r=$(api DELETE "/api/v1/repos/$repo_id")
expect_eq "the repository is deleted" 204 "${r%% *}"
expect_eq "with its spare, and nothing else is left in the workspace root" "0 []" \
  "$(metric "$READY") [$(ls -A "$SV_WS" | grep -vx w1)]"
sv_stop
expect_eq "still nothing after shutdown" "[]" "[$(ls -A "$SV_WS" | grep -vx w1)]"
tap_done
