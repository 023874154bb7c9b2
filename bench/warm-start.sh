#!/usr/bin/env bash
# Warm starts, in one run: session start (POST /api/v1/sessions → the agent's first command
# running in its sandbox) for
#   cold     a repository whose .nightshift/setup.sh takes ≥ 5 s (a global npm install from a
#            local tarball, node_modules in the tree, a 1 MiB cache, sleep 5): setup runs and its
#            result becomes a layer (each cold run changes the listed lockfile: a new key)
#   warm     the same repository with an unchanged key: the layer is stacked, setup skipped
#   none     the same files without a setup script
# Target: warm ≥ 50× faster than cold, and within 20 ms of none (median of the pairwise
# differences; warm and none runs are interleaved).
#
# Runs a private sandboxd (with a layers dir) and `nightshift serve` from $NS_BUILD/bin (default
# ./build) and removes everything at the end.  Needs root, git, curl, python3, npm.
# Exit: 0 PASS, 1 FAIL, 2 could not run.
#
#   sudo bench/warm-start.sh            # COLD=3 RUNS=15
set -uo pipefail
COLD=${COLD:-3}
RUNS=${RUNS:-15}
NS_BUILD=$(realpath "${NS_BUILD:-./build}")
export NS_BUILD
. "$(dirname "$0")/../tests/integration/sv_lib.sh"
[ "$(id -u)" = 0 ] || { echo "warm-start: run as root" >&2; exit 2; }
command -v npm >/dev/null || { echo "warm-start: npm is needed" >&2; exit 2; }
sv_setup >/dev/null || exit 2
L=$NS_TMP/layers
mkdir -p "$L"
sv_stop; stop_daemon
start_daemon --layers-dir "$L" || exit 2
sv_start >/dev/null || exit 2

commit() { as_user git -C "$1" add -A && as_user git -C "$1" -c user.name=b -c user.email=b@b commit -qm "$2"; }
register() { local r; r=$(api POST /api/v1/repos "{\"path\":\"$1\"}"); jget "${r#* }" 'd["id"]'; }

# The repository with a setup script, and the same files without one.
mkdir -p "$NS_TMP/pkg"
echo '{"name": "ns-bench-dep", "version": "1.0.0", "bin": {"ns-bench": "bin.js"}}' > "$NS_TMP/pkg/package.json"
printf '#!/usr/bin/env node\nconsole.log("ok")\n' > "$NS_TMP/pkg/bin.js"
(cd "$NS_TMP/pkg" && npm pack --silent >/dev/null 2>&1) || { echo "warm-start: npm pack failed" >&2; exit 2; }
for name in setup none; do
  R=$NS_TMP/src/$name
  make_repo "$R"
  mkdir -p "$R/vendor" "$R/src"
  for i in $(seq 1 200); do printf 'line %s\n' "$i" > "$R/src/f$i.txt"; done
  cp "$NS_TMP/pkg/ns-bench-dep-1.0.0.tgz" "$R/vendor/"
  echo '{"lock": 0}' > "$R/package-lock.json"
  if [ "$name" = setup ]; then
    mkdir -p "$R/.nightshift"
    cat > "$R/.nightshift/setup.sh" <<'EOF'
npm install -g --prefix "$HOME/.npm-global" --offline --no-audit --no-fund /workspace/vendor/ns-bench-dep-1.0.0.tgz >/dev/null
cd /workspace && npm install --no-save --offline --no-audit --no-fund ./vendor/ns-bench-dep-1.0.0.tgz >/dev/null
mkdir -p "$HOME/.cache/bench" && head -c 1048576 /dev/urandom > "$HOME/.cache/bench/blob"
sleep 5
EOF
    printf 'lockfiles = package-lock.json\ncache_dirs = node_modules\n' > "$R/.nightshift/config"
  fi
  chown -R "$TEST_UID:$TEST_GID" "$R"
  commit "$R" files
done
setup_id=$(register "$NS_TMP/src/setup"); none_id=$(register "$NS_TMP/src/none")

# start REPO_ID: ms from the POST to the agent's first command (it writes the wall clock).
start() {
  local t0 t1 r sid
  t0=${EPOCHREALTIME/./}
  r=$(api POST /api/v1/sessions "{\"repo\":\"$1\",\"prompt\":\"date +%s%N > .started\",\"once\":true}")
  sid=$(jget "${r#* }" 'd["id"]')
  WAIT_S=120 wait_state "$sid" completed failed >/dev/null
  t1=$(cat "$SV_WS/$sid/.started" 2>/dev/null) || { echo "warm-start: session $sid did not run" >&2; exit 2; }
  echo $(( (t1 / 1000 - t0) ))
}
median() { sort -n | $PY -c 'import sys,statistics; v=[float(l) for l in sys.stdin]; print(f"{statistics.median(v):.1f}")'; }

cold=()
for i in $(seq 1 "$COLD"); do
  echo "{\"lock\": $i}" > "$NS_TMP/src/setup/package-lock.json"
  commit "$NS_TMP/src/setup" "lock $i"
  cold+=("$(start "$setup_id")")
done
warm=(); none=()
for i in $(seq 1 "$RUNS"); do
  warm+=("$(start "$setup_id")")
  none+=("$(start "$none_id")")
done
us2ms() { awk '{print $1/1000}'; }
cold_med=$(printf '%s\n' "${cold[@]}" | us2ms | median)
warm_med=$(printf '%s\n' "${warm[@]}" | us2ms | median)
none_med=$(printf '%s\n' "${none[@]}" | us2ms | median)
diff_med=$(for i in "${!warm[@]}"; do echo "$(( warm[i] - none[i] ))"; done | us2ms | median)
ratio=$($PY -c "print(f'{$cold_med / $warm_med:.0f}')")
printf '%-50s %10s ms\n' "cold: setup runs, becomes a layer (median of $COLD)" "$cold_med" \
  "warm: the layer stacked, setup skipped (median)" "$warm_med" \
  "no setup script (median)" "$none_med" \
  "  pairwise difference, warm − none (median)" "$diff_med"
echo "cold / warm: ${ratio}×"
sv_stop
if $PY -c "import sys; sys.exit(0 if $cold_med >= 50 * $warm_med and $diff_med <= 20 else 1)"; then
  echo "PASS: warm is ${ratio}× faster than cold (≥ 50×) and $diff_med ms from no setup (≤ 20 ms)"; exit 0
else
  echo "FAIL: warm is ${ratio}× faster than cold (want ≥ 50×), $diff_med ms from no setup (want ≤ 20 ms)"; exit 1
fi
