#!/usr/bin/env bash
# Warm starts: a repository's setup (≥ 5 s: a global npm install from a local tarball and a
# filled cache) runs in the first session and is kept as a layer; the next session stacks it and
# skips setup, seeing the same files; changing a listed lockfile runs setup again; a failing setup
# leaves no layer; two sessions sharing a layer do not see each other's writes.
. "$(dirname "$0")/sv_lib.sh"
command -v npm >/dev/null || { echo "1..0 # SKIP npm is not installed"; exit 77; }
sv_setup
# sandboxd again, with a layers dir beside its upper dir (snapshots move, never copy).
L=$NS_TMP/layers
mkdir -p "$L"
sv_stop; stop_daemon
start_daemon --layers-dir "$L" || { echo "1..0 # daemon failed"; exit 1; }
sv_start || exit 1
RUN() { as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" run "$@"; }

# A local npm package, packed into the repository (no registry needed).
R=$NS_TMP/src/app
make_repo "$R"
mkdir -p "$NS_TMP/pkg" "$R/.nightshift" "$R/vendor"
cat > "$NS_TMP/pkg/package.json" <<'EOF'
{"name": "ns-greeter", "version": "1.0.0", "bin": {"ns-greet": "greet.js"}}
EOF
printf '#!/usr/bin/env node\nconsole.log("hello from ns-greeter");\n' > "$NS_TMP/pkg/greet.js"
chmod +x "$NS_TMP/pkg/greet.js"
(cd "$NS_TMP/pkg" && npm pack --silent >/dev/null 2>&1) && cp "$NS_TMP/pkg/ns-greeter-1.0.0.tgz" "$R/vendor/"
cat > "$R/.nightshift/setup.sh" <<'EOF'
echo "setup runs"
npm install -g --prefix "$HOME/.npm-global" --offline --no-audit --no-fund /workspace/vendor/ns-greeter-1.0.0.tgz
cd /workspace && npm install --no-save --offline --no-audit --no-fund ./vendor/ns-greeter-1.0.0.tgz
mkdir -p "$HOME/.cache/ns" && head -c 1048576 /dev/urandom > "$HOME/.cache/ns/blob" && sha256sum "$HOME/.cache/ns/blob" > "$HOME/.cache/ns/blob.sum"
sleep 5
EOF
printf 'lockfiles = package-lock.json\ncache_dirs = node_modules\n' > "$R/.nightshift/config"
echo '{"lock": 1}' > "$R/package-lock.json"
chown -R "$TEST_UID:$TEST_GID" "$R"
as_user git -C "$R" add -A && as_user git -C "$R" -c user.name=t -c user.email=t@t commit -qm setup
probe='"$HOME/.npm-global/bin/ns-greet"; (cd "$HOME/.cache/ns" && sha256sum -c --quiet blob.sum && echo cache-ok); test -f /workspace/node_modules/ns-greeter/greet.js && echo local-ok'

setup_event() { events "$1" | $PY -c 'import json,sys
for e in map(json.loads, sys.stdin):
    if e["type"]=="command_output" and e["data"].get("phase")=="setup": print(json.dumps(e["data"]))' | head -n1; }
provision_ms() { events "$1" | $PY -c 'import json,sys
es=[json.loads(l) for l in sys.stdin]; st=[e for e in es if e["type"]=="status"]
t={e["data"].get("to"): e["ts"] for e in st}
print(int(t["running"]-t["provisioning"]))'; }

# 1. Cold: setup runs and becomes a layer.
out=$(RUN --repo "$R" --once --follow "$probe" 2>&1)
s1=$(printf '%s\n' "$out" | head -n1)
expect_match "cold: the agent sees setup's global install, cache and node_modules" 'hello from ns-greeter.*cache-ok.*local-ok' "$(echo $out)"
ev1=$(setup_event "$s1")
expect_match "cold: setup ran (its output is an event)" '"text": "setup runs' "$ev1"
expect_match "cold: its result is kept as a layer" '"layer": "setup-[0-9a-f]{40}", "cached": false' "$ev1"
layer1=$(jget "$ev1" 'd["layer"]')
[ -d "$L/$layer1" ] && ok "the layer is in sandboxd's layers dir" || not_ok "the layer is in sandboxd's layers dir"

# 2. Warm: the layer is stacked, setup does not run, the same files are there.
out=$(RUN --repo "$R" --once --follow "$probe; echo mine > \$HOME/.cache/ns/own" 2>&1)
s2=$(printf '%s\n' "$out" | head -n1)
expect_match "warm: the agent sees the same files, node_modules included" 'hello from ns-greeter.*cache-ok.*local-ok' "$(echo $out)"
expect_eq "the working tree on the host has node_modules, empty (the files stay in the overlay)" "dir:" \
  "$(test -d "$SV_WS/$s2/node_modules" && echo dir):$(ls -A "$SV_WS/$s2/node_modules" 2>/dev/null)"
expect_eq "the layer holds node_modules at workspace/node_modules" "yes" "$(test -f "$L/$layer1/workspace/node_modules/ns-greeter/greet.js" && echo yes)"
ev2=$(setup_event "$s2")
expect_match "warm: setup was skipped for the layer" "\"layer\": \"$layer1\", \"cached\": true" "$ev2"
expect_eq "warm: setup's own output is absent" "" "$(events "$s2" | grep -c 'setup runs' | grep -v '^0$')"
cold_ms=$(provision_ms "$s1"); warm_ms=$(provision_ms "$s2")
note "provisioning: cold ${cold_ms} ms, warm ${warm_ms} ms"
check "warm provisioning is faster than the 5 s setup" test "${warm_ms:-99999}" -lt 4000
out=$(RUN --repo "$R" --once --follow 'test -e $HOME/.cache/ns/own && echo leaked || echo clean' 2>&1)
expect_match "a session's writes over the layer are its own" 'clean' "$out"
expect_eq "the layer on disk is unchanged" "" "$(ls "$L/$layer1/home/agent/.cache/ns/" | grep own)"

# 3. A changed lockfile: setup runs again, into a new layer.
echo '{"lock": 2}' > "$R/package-lock.json"; chown "$TEST_UID:$TEST_GID" "$R/package-lock.json"
as_user git -C "$R" -c user.name=t -c user.email=t@t commit -qam 'lock 2'
out=$(RUN --repo "$R" --once --follow "$probe" 2>&1)
s3=$(printf '%s\n' "$out" | head -n1)
ev3=$(setup_event "$s3")
expect_match "a changed lockfile runs setup again" '"text": "setup runs.*"cached": false' "$ev3"
layer3=$(jget "$ev3" 'd.get("layer","")')
check "into a new layer" test -n "$layer3" -a "$layer3" != "$layer1" -a -d "$L/$layer3"

# 4. A failing setup leaves no layer (nonfatal: the session still runs, without caching).
printf 'echo partial > $HOME/partial\nexit 4\n' > "$R/.nightshift/setup.sh"
printf 'lockfiles = package-lock.json\ncache_dirs = node_modules\nsetup_nonfatal = true\n' > "$R/.nightshift/config"
as_user git -C "$R" -c user.name=t -c user.email=t@t commit -qam 'failing setup'
before=$(ls "$L" | sort | tr '\n' ' ')
out=$(RUN --repo "$R" --once --follow 'cat $HOME/partial' 2>&1)
s4=$(printf '%s\n' "$out" | head -n1)
expect_match "the failing setup's session ran in its own sandbox" 'partial' "$out"
expect_eq "no layer was made" "$before" "$(ls "$L" | sort | tr '\n' ' ')"
expect_eq "its setup event names no layer" "" "$(setup_event "$s4" | grep -o '"layer"')"
# 5. The layer store: ls, and gc under a size cap removes unused layers and keeps used ones.
LAYERS() { as_user "$NIGHTSHIFT" layers --sandboxd-socket "$NS_SOCK" "$@"; }
expect_match "layers ls lists both setup layers" "$layer1.*$layer3|$layer3.*$layer1" "$(LAYERS ls | tr '\n' ' ')"
holder=$(sb create --layer @host --layer "$layer1")
out=$(LAYERS gc --max-bytes 1 --dry-run)
expect_match "gc --dry-run names the unused layer only" "would remove $layer3" "$out"
check "and removes nothing" test -d "$L/$layer3"
out=$(LAYERS gc --max-bytes 1 --json)
expect_eq "gc under a 1-byte cap removes the unused layer" "[\"$layer3\"]" "$(jget "$out" 'json.dumps(d["removed"])' | tr -d ' ')"
for _ in $(seq 50); do [ -e "$L/$layer3" ] || break; sleep 0.1; done
check "its tree is gone" test ! -e "$L/$layer3"
check "the layer in use is kept" test -d "$L/$layer1"
expect_match "removing a layer in use is refused" "in use" "$(LAYERS rm "$layer1" 2>&1)"
sb destroy "$holder" >/dev/null
out=$(LAYERS gc --max-age 0 --max-bytes 1 --json)
expect_eq "once unused, it goes too" "[\"$layer1\"]" "$(jget "$out" 'json.dumps(d["removed"])' | tr -d ' ')"
expect_match "a negative size cap is refused" "wants a number of bytes" "$(LAYERS gc --max-bytes -5 2>&1)"
expect_match "rm without a name is refused" "^usage" "$(LAYERS rm 2>&1)"
tap_done
