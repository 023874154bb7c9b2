#!/usr/bin/env bash
# Layers from snapshots: a sandbox's writes outside its binds become a read-only layer that later
# sandboxes stack over the host layer (@host); owners are stored as seen inside and come back
# right in another uid range; deletions (whiteouts) carry over; layers are read-only inside and
# shared without leaking writes; a layer in use cannot be removed; bad input changes nothing.
. "$(dirname "$0")/lib.sh"
ns_setup
# The layers dir shares a filesystem with the upper dir (the snapshot moves, never copies); it is
# made in ns_setup's temp tree, so the daemon restarts with it.
L=$NS_TMP/layers
mkdir -p "$L"
stop_daemon
start_daemon --layers-dir "$L" || { echo "1..0 # daemon failed"; exit 1; }

shadow_before=$(stat -c %u:%g:%a /etc/shadow)
# 1. A sandbox on the host layer installs things as root and as the agent, deletes a host file.
id=$(sb create)
sb exec "$id" --root -- sh -c 'mkdir -p /usr/local/lib/tool && echo v1 > /usr/local/lib/tool/data &&
  printf "#!/bin/sh\necho tool-ran\n" > /usr/local/bin/nstool && chmod 4755 /usr/local/bin/nstool &&
  echo cfg > /etc/ns-layer-conf && rm /etc/hostname && mkfifo /root/fifo' >/dev/null 2>&1
sb exec "$id" -- sh -c 'mkdir -p /home/agent/.cache/dep && echo cached > /home/agent/.cache/dep/blob &&
  ln -s /etc/shadow /home/agent/.cache/dep/link && ln /home/agent/.cache/dep/blob /home/agent/.cache/dep/hard' >/dev/null 2>&1
out=$(sb snapshot "$id" deps-v1 2>&1)
expect_match "snapshot replies with the layer" "^deps-v1: [0-9]+ files" "$out"
expect_eq "the snapshot destroyed the sandbox" "" "$(sb ls --json | grep -o "\"$id\"")"
[ -d "$L/deps-v1" ] && ok "the layer is in the layers dir" || not_ok "the layer is in the layers dir"
expect_eq "root's files are owned by 0 on disk" "0:0" "$(stat -c %u:%g "$L/deps-v1/usr/local/lib/tool/data" 2>&1)"
expect_eq "the agent's files are owned by 1000 on disk" "1000:1000" "$(stat -c %u:%g "$L/deps-v1/home/agent/.cache/dep/blob" 2>&1)"
expect_eq "set-user-ID bits are cleared" "755" "$(stat -c %a "$L/deps-v1/usr/local/bin/nstool" 2>&1)"
expect_eq "a deletion is kept as a whiteout" "character special file 0,0" "$(stat -c '%F %t,%T' "$L/deps-v1/etc/hostname" 2>&1)"
[ ! -e "$L/deps-v1/root/fifo" ] && ok "FIFOs are dropped" || not_ok "FIFOs are dropped"
expect_eq "a symlink stays a symlink, its target untouched" "/etc/shadow" "$(readlink "$L/deps-v1/home/agent/.cache/dep/link")"
expect_eq "hard links are normalised once (both names 1000)" "1000 1000" \
  "$(stat -c %u "$L/deps-v1/home/agent/.cache/dep/blob" "$L/deps-v1/home/agent/.cache/dep/hard" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the host's /etc/shadow (the link's target) is untouched" "$shadow_before" "$(stat -c %u:%g:%a /etc/shadow)"
[ ! -e "$NS_TMP/upper/$id" ] && ok "the sandbox's upper dir is gone" || not_ok "the sandbox's upper dir is gone"
expect_match "layers lists it with its size, not in use" '"name": ?"deps-v1".*"in_use": ?false' "$(sb layers --json | tr -d '\n')"

# 2. Two sandboxes stack it over the host layer (different uid ranges): same files, right owners.
a=$(sb create --layer @host --layer deps-v1)
b=$(sb create --layer @host --layer deps-v1)
expect_eq "the layer's files are there" "v1" "$(sb exec "$a" -- cat /usr/local/lib/tool/data 2>&1)"
expect_eq "the tool runs" "tool-ran" "$(sb exec "$a" -- /usr/local/bin/nstool 2>&1)"
expect_eq "owners inside: agent 1000, root 0" "1000 0" \
  "$(sb exec "$b" -- stat -c %u /home/agent/.cache/dep/blob /usr/local/lib/tool/data 2>&1 | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the deleted file stays deleted" "gone" "$(sb exec "$a" -- sh -c 'test -e /etc/hostname && echo there || echo gone')"
expect_eq "the host's /usr is still beneath" "yes" "$(sb exec "$a" -- sh -c 'test -x /usr/bin/env && echo yes')"
sb exec "$a" -- sh -c 'echo changed > /home/agent/.cache/dep/blob' >/dev/null 2>&1
sb exec "$a" --root -- sh -c 'echo changed > /usr/local/lib/tool/data' >/dev/null 2>&1
expect_eq "a write in one sandbox is its own" "changed" "$(sb exec "$a" -- cat /home/agent/.cache/dep/blob 2>&1)"
expect_eq "the other sandbox sharing the layer does not see it" "cached" "$(sb exec "$b" -- cat /home/agent/.cache/dep/blob 2>&1)"
expect_eq "the layer on disk is unchanged" "cached v1" "$(cat "$L/deps-v1/home/agent/.cache/dep/blob" "$L/deps-v1/usr/local/lib/tool/data" | tr '\n' ' ' | sed 's/ $//')"
expect_match "layers shows it in use" '"name": ?"deps-v1".*"in_use": ?true' "$(sb layers --json | tr -d '\n')"
out=$(sb layer-rm deps-v1 2>&1); rc=$?
expect_match "a layer in use cannot be removed" "in use" "$rc $out"

# 3. Incremental: a snapshot of a stacked sandbox holds only its own changes, and stacks again.
sb exec "$b" --root -- sh -c 'echo v2 > /usr/local/lib/tool/extra' >/dev/null 2>&1
sb snapshot "$b" deps-v2 >/dev/null 2>&1
[ ! -e "$L/deps-v2/usr/local/lib/tool/data" ] && [ -f "$L/deps-v2/usr/local/lib/tool/extra" ] &&
  ok "the second layer holds only the new file" || not_ok "the second layer holds only the new file"
c=$(sb create --layer @host --layer deps-v1 --layer deps-v2)
expect_eq "three layers stack" "v1 v2" "$(sb exec "$c" -- cat /usr/local/lib/tool/data /usr/local/lib/tool/extra 2>&1 | tr '\n' ' ' | sed 's/ $//')"
sb destroy "$a" >/dev/null; sb destroy "$c" >/dev/null

# 4. Overlays: a dir of the working tree seen copy-on-write; what setup puts there is kept in the
#    layer (at workspace/<dir>) and seen by the next sandbox, never written to the tree.
as_user mkdir -p "$WS/node_modules"
o=$(sb create --workspace "$WS" --overlay /workspace/node_modules)
sb exec "$o" -- sh -c 'mkdir -p /workspace/node_modules/dep && echo dep-v1 > /workspace/node_modules/dep/index.js' >/dev/null 2>&1
expect_eq "inside, the overlay holds the write" "dep-v1" "$(sb exec "$o" -- cat /workspace/node_modules/dep/index.js 2>&1)"
expect_eq "the working tree on the host does not" "" "$(ls -A "$WS/node_modules")"
sb exec "$o" -- sh -c 'echo tracked > /workspace/tracked.txt' >/dev/null 2>&1
expect_eq "outside the overlay, the working tree is written as usual" "tracked" "$(cat "$WS/tracked.txt" 2>&1)"
sb snapshot "$o" nm-v1 >/dev/null 2>&1
expect_eq "the layer has the overlay's files at their path, the agent's" "1000 dep-v1" \
  "$(stat -c %u "$L/nm-v1/workspace/node_modules/dep/index.js" 2>&1) $(cat "$L/nm-v1/workspace/node_modules/dep/index.js" 2>&1)"
o2=$(sb create --workspace "$WS" --layer @host --layer nm-v1 --overlay /workspace/node_modules)
expect_eq "a sandbox stacking the layer sees them in its overlay" "dep-v1" "$(sb exec "$o2" -- cat /workspace/node_modules/dep/index.js 2>&1)"
sb exec "$o2" -- sh -c 'echo dep-v2 > /workspace/node_modules/dep/index.js' >/dev/null 2>&1
expect_eq "its writes are its own" "dep-v2 dep-v1" \
  "$(sb exec "$o2" -- cat /workspace/node_modules/dep/index.js 2>&1) $(cat "$L/nm-v1/workspace/node_modules/dep/index.js")"
expect_eq "and never reach the tree" "" "$(ls -A "$WS/node_modules")"
sb destroy "$o2" >/dev/null
check "the overlay's layer is removed" sb layer-rm nm-v1
expect_match "an overlay outside /workspace is refused" "beneath /workspace/" "$(sb create --workspace "$WS" --overlay /etc 2>&1)"
expect_match "overlapping overlays are refused" "overlaps" \
  "$(sb create --workspace "$WS" --overlay /workspace/a --overlay /workspace/a/b 2>&1)"
expect_match "an overlay needs a workspace" "needs a workspace" "$(sb create --overlay /workspace/a 2>&1)"
expect_match "a missing mount point is an error, not a dir made as root" "overlay /workspace/nope" \
  "$(sb create --workspace "$WS" --overlay /workspace/nope 2>&1)"

# 5. Bad input: clear errors, nothing made.
before=$(ls -A "$L" | sort | tr '\n' ' ')
d=$(sb create)
expect_match "a taken name is refused" "exists" "$(sb snapshot "$d" deps-v1 2>&1)"
expect_match "a bad name is refused" "not valid" "$(sb snapshot "$d" ../x 2>&1)"
expect_match "a hidden name is refused" "not valid" "$(sb snapshot "$d" .meta-x 2>&1)"
expect_match "an unknown sandbox is refused" "no sandbox" "$(sb snapshot nosuchbox12 x1 2>&1)"
expect_match "@host alone is refused" "omit it" "$(sb create --layer @host 2>&1)"
expect_match "@host not first is refused" "not valid" "$(sb create --layer deps-v1 --layer @host 2>&1)"
expect_match "an unknown layer is refused" "No such file" "$(sb create --layer @host --layer nope 2>&1)"
expect_eq "the sandbox survived the refused snapshots" "ok" "$(sb exec "$d" -- echo ok 2>&1)"
sb destroy "$d" >/dev/null
expect_eq "nothing was added to the layers dir" "$before" "$(ls -A "$L" | sort | tr '\n' ' ')"
dl=$(sb create --disk 64M 2>/dev/null) && {
  expect_match "a disk-limited sandbox cannot be snapshotted" "disk limit" "$(sb snapshot "$dl" disky 2>&1)"
  sb destroy "$dl" >/dev/null; }
mkdir "$L/by-hand"
expect_match "a layer made by hand is not removed through the protocol" "by hand" "$(sb layer-rm by-hand 2>&1)"
r=$(sb_root create)
sb_root snapshot "$r" rootlayer >/dev/null 2>&1
expect_match "another user's layer is not removed" "another user" "$(sb layer-rm rootlayer 2>&1)"
check "its owner (root) removes it" sb_root layer-rm rootlayer

# 6. Removal once unused; a restart keeps track of layers in use.
e=$(sb create --layer @host --layer deps-v1)
stop_daemon
start_daemon --layers-dir "$L"
expect_match "after a restart, a re-adopted sandbox still holds its layer" "in use" "$(sb layer-rm deps-v1 2>&1)"
sb destroy "$e" >/dev/null
check "an unused layer is removed" sb layer-rm deps-v1
for _ in $(seq 50); do [ -z "$(ls -A "$L" | grep -v -e '^by-hand$' -e '^deps-v2$' -e '^.meta-deps-v2$')" ] && break; sleep 0.1; done
expect_eq "its tree and metadata are gone" "" "$(ls -A "$L" | grep -v -e '^by-hand$' -e '^deps-v2$' -e '^.meta-deps-v2$')"
check "and so is the other" sb layer-rm deps-v2
rmdir "$L/by-hand"
tap_done
