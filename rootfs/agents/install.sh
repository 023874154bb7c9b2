#!/usr/bin/env bash
# Install the agent CLIs (Claude Code, Codex, OpenCode) from the npm registry into DIR, the
# read-only agent layer that sandboxes see: DIR/bin/{claude,codex,opencode}.
#
#   rootfs/agents/install.sh [DIR]        default DIR: /var/lib/nightshift/agents
#
# Versions are pinned below; re-running with the same pins only checks a stamp file.  Runs as root,
# refuses a DIR (or an ancestor) that is not root-owned or is group/world-writable, and leaves DIR
# readable by all and writable by root only.  Needs node >= 18 and npm on PATH (Debian 12's
# nodejs/npm packages are enough).  See rootfs/README.md.
set -euo pipefail
umask 022

CLAUDE_VERSION=2.1.197
CODEX_VERSION=0.169.0
OPENCODE_VERSION=1.18.33
NODE_MIN_MAJOR=18

DIR=${1:-/var/lib/nightshift/agents}
PKGS=("@anthropic-ai/claude-code@$CLAUDE_VERSION" "@openai/codex@$CODEX_VERSION"
  "opencode-ai@$OPENCODE_VERSION")
# OpenCode installs @opencode-ai/plugin into its config dir on every start unless it is there
# already (an npm registry lookup from inside the sandbox); the adapter points
# XDG_CONFIG_HOME at DIR/opencode-config, which holds it.
PLUGIN_PKG="@opencode-ai/plugin@$OPENCODE_VERSION"
STAMP_TEXT="nightshift-agents claude=$CLAUDE_VERSION codex=$CODEX_VERSION opencode=$OPENCODE_VERSION layout=2"

die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
case $DIR in /*) ;; *) die "DIR must be an absolute path: $DIR" ;; esac
DIR=${DIR%/}

# DIR and each existing ancestor: root-owned, and not writable by group or others (a sticky
# directory such as /tmp is accepted as an ancestor: nobody else can rename what root owns there).
check_dir() {
  local d=$1 own mode
  own=$(stat -c %u -- "$d") mode=$(stat -c %a -- "$d")
  [ "$own" = 0 ] || die "$d is owned by uid $own, not root"
  if (( (8#$mode & 8#022) != 0 )); then
    if [ "$d" = "$DIR" ] || (( (8#$mode & 8#1000) == 0 )); then
      die "$d is writable by group or others (mode $mode)"
    fi
  fi
}
p=$DIR
while [ -n "$p" ]; do
  if [ -L "$p" ]; then die "$p is a symbolic link"; fi
  [ -e "$p" ] && check_dir "$p"
  p=${p%/*}
done
check_dir /

command -v node >/dev/null || die "node not found on PATH (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found on PATH (Debian: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge "$NODE_MIN_MAJOR" ] || die "node $(node --version) is too old: need >= $NODE_MIN_MAJOR"

have_all() {
  [ -f "$DIR/.nightshift-agents" ] && [ "$(cat "$DIR/.nightshift-agents")" = "$STAMP_TEXT" ] &&
    [ -x "$DIR/bin/claude" ] && [ -x "$DIR/bin/codex" ] && [ -x "$DIR/bin/opencode" ] &&
    [ -f "$DIR/opencode-config/opencode/package-lock.json" ]
}
if have_all; then
  echo "agents already installed in $DIR ($STAMP_TEXT)"
  exit 0
fi

mkdir -p -- "$DIR"
chmod 755 "$DIR"
rm -f "$DIR/.nightshift-agents"

# npm's own chatter and phoning home off; a private cache, removed at the end (1 GB otherwise).
export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false \
  NPM_CONFIG_LOGLEVEL=warn NPM_CONFIG_PROGRESS=false
cache=$(mktemp -d /tmp/ns-npm-cache.XXXXXX)
trap 'rm -rf "$cache"' EXIT
npm_i() { npm install --cache "$cache" --foreground-scripts=false "$@"; }

echo "installing ${PKGS[*]} into $DIR"
# package.json pins the exact versions so that `npm install` there is reproducible.
cat >"$DIR/package.json" <<JSON
{
  "name": "nightshift-agents",
  "private": true,
  "dependencies": {
    "@anthropic-ai/claude-code": "$CLAUDE_VERSION",
    "@openai/codex": "$CODEX_VERSION",
    "opencode-ai": "$OPENCODE_VERSION"
  }
}
JSON
npm_i --prefix "$DIR" --include=optional

# OpenCode skips its own install only when package.json, package-lock.json and node_modules are
# all there (as `npm install PKG` leaves them); it also writes this .gitignore on every start, which
# fails quietly on the read-only layer when it is missing.
occ=$DIR/opencode-config/opencode
rm -rf "$occ"
mkdir -p "$occ"
npm_i --prefix "$occ" "$PLUGIN_PKG"
printf 'node_modules\npackage.json\npackage-lock.json\nbun.lock\n.gitignore' >"$occ/.gitignore"

# Postinstall scripts put the native binaries in place; newer npm versions may skip them
# (allowScripts).  A CLI that cannot print its version gets its script run by hand.
probe() { env -i PATH="$PATH" HOME="$cache" DISABLE_AUTOUPDATER=1 OPENCODE_DISABLE_AUTOUPDATE=1 \
  timeout 60 "$@" --version >/dev/null 2>&1; }
if ! probe "$DIR/node_modules/.bin/claude"; then
  (cd "$DIR/node_modules/@anthropic-ai/claude-code" && node install.cjs)
fi
if ! probe "$DIR/node_modules/.bin/opencode"; then
  (cd "$DIR/node_modules/opencode-ai" && node postinstall.mjs)
fi

mkdir -p "$DIR/bin"
for c in claude codex opencode; do
  ln -sfn "../node_modules/.bin/$c" "$DIR/bin/$c"
  probe "$DIR/bin/$c" || die "$c does not run after install ($DIR/bin/$c --version)"
done

chown -R root:root "$DIR"
chmod -R u+rwX,go+rX,go-w "$DIR"
echo "$STAMP_TEXT" >"$DIR/.nightshift-agents"
echo "installed: $(du -sh "$DIR" | cut -f1) in $DIR"
for c in claude codex opencode; do
  echo "  $c $(env -i PATH="$PATH" HOME="$cache" "$DIR/bin/$c" --version 2>/dev/null | head -1)"
done
