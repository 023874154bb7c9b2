#!/usr/bin/env bash
# The Debian base image (rootfs/debian/build.sh): as root of the sandbox, installing a local .deb,
# a global npm package and a pip package works; the image's files stay root's inside and
# read-only; the host's /usr, the image and other sandboxes are unchanged afterwards; a
# repository picks the image with `base = NAME` in .nightshift/config.
#
# The image is built once into /var/lib/nightshift/images (NS_IMAGES_DIR) with the packages the
# test needs (a smaller list than the default: the builder is the same) and kept for later runs.
. "$(dirname "$0")/sv_lib.sh"
require_root
IMAGES=${NS_IMAGES_DIR:-/var/lib/nightshift/images}
command -v debootstrap >/dev/null || { echo "1..0 # SKIP debootstrap is not installed (scripts/install-deps.sh --with-tests)"; exit 77; }
mkdir -p "$IMAGES"
if ! IMG=$(NS_DEBIAN_PACKAGES="ca-certificates git nodejs npm python3-pip" "$NS_SRC/rootfs/debian/build.sh" "$IMAGES" 2>/tmp/ns-debian-build.log); then
  if grep -qiE 'Failed getting release file|Temporary failure|Could not resolve|unable to fetch' /tmp/ns-debian-build.log; then
    echo "1..0 # SKIP the Debian mirror cannot be reached to build the image (see /tmp/ns-debian-build.log)"; exit 77
  fi
  echo "# the image build failed:"; tail -n 20 /tmp/ns-debian-build.log | sed 's/^/#   /'
  echo "1..1"; echo "not ok 1 - rootfs/debian/build.sh"; exit 1
fi
note "image: $IMAGES/$IMG"
sv_setup
sv_stop; stop_daemon
start_daemon --layers-dir "$IMAGES" || { echo "1..0 # daemon failed"; exit 1; }
sv_start || exit 1

status_sum() { sha256sum "$IMAGES/$IMG/var/lib/dpkg/status" | cut -c1-64; }
img_before=$(status_sum)

# A local .deb, an npm tarball and a wheel, made on the host in the workspace.
P=$NS_TMP/pkgs; mkdir -p "$P/deb/DEBIAN" "$P/deb/usr/bin" "$P/npm" "$P/whl/ns_pywheel" "$P/whl/ns_pywheel-1.0.dist-info"
printf 'Package: ns-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n' > "$P/deb/DEBIAN/control"
printf '#!/bin/sh\necho hello from a deb\n' > "$P/deb/usr/bin/ns-hello"; chmod 755 "$P/deb/usr/bin/ns-hello"
dpkg-deb --root-owner-group --build "$P/deb" "$WS/ns-hello.deb" >/dev/null
echo '{"name": "ns-greeter", "version": "1.0.0", "bin": {"ns-greet": "greet.js"}}' > "$P/npm/package.json"
printf '#!/usr/bin/env node\nconsole.log("hello from npm");\n' > "$P/npm/greet.js"
(cd "$P/npm" && npm pack --silent >/dev/null 2>&1) && cp "$P/npm/ns-greeter-1.0.0.tgz" "$WS/"
echo 'print("hello from pip")' > "$P/whl/ns_pywheel/__init__.py"
printf 'Metadata-Version: 2.1\nName: ns-pywheel\nVersion: 1.0\n' > "$P/whl/ns_pywheel-1.0.dist-info/METADATA"
printf 'Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n' > "$P/whl/ns_pywheel-1.0.dist-info/WHEEL"
printf 'ns_pywheel/__init__.py,,\nns_pywheel-1.0.dist-info/METADATA,,\nns_pywheel-1.0.dist-info/WHEEL,,\nns_pywheel-1.0.dist-info/RECORD,,\n' > "$P/whl/ns_pywheel-1.0.dist-info/RECORD"
(cd "$P/whl" && $PY -c 'import zipfile,os
z=zipfile.ZipFile(os.sys.argv[1],"w")
for d,_,fs in os.walk("."):
    for f in fs: z.write(os.path.join(d,f), os.path.relpath(os.path.join(d,f)))' "$WS/ns_pywheel-1.0-py3-none-any.whl")
chown "$TEST_UID:$TEST_GID" "$WS"/*

id=$(sb create --workspace "$WS" --layer "$IMG")
expect_match "the sandbox runs on the image" "nightshift debian layer $IMG" "$(sb exec "$id" -- cat /etc/nightshift-layer 2>&1)"
expect_eq "the image's files are root's inside" "0 0" "$(sb exec "$id" -- stat -c '%u %g' /usr/bin/dpkg 2>&1)"
expect_match "the agent cannot write them" "Permission denied" "$(sb exec "$id" -- touch /usr/bin/ns-x 2>&1)"
out=$(sb exec "$id" --root -- sh -c 'dpkg -i /workspace/ns-hello.deb >/dev/null && ns-hello' 2>&1)
expect_eq "as root, dpkg -i of a local .deb works" "hello from a deb" "$out"
out=$(sb exec "$id" --root -- sh -c 'npm install -g --offline --no-audit --no-fund /workspace/ns-greeter-1.0.0.tgz >/dev/null 2>&1 && ns-greet' 2>&1)
expect_eq "as root, npm install -g of a local package works" "hello from npm" "$out"
out=$(sb exec "$id" --root -- sh -c 'pip install --no-index /workspace/ns_pywheel-1.0-py3-none-any.whl 2>&1' 2>&1)
expect_match "pip refuses Debian's externally managed Python without the flag" "externally-managed-environment" "$out"
out=$(sb exec "$id" --root -- sh -c 'pip install --break-system-packages --no-index /workspace/ns_pywheel-1.0-py3-none-any.whl >/dev/null 2>&1 && cd / && python3 -c "import ns_pywheel"' 2>&1)
expect_eq "with --break-system-packages it installs" "hello from pip" "$out"
other=$(sb create --layer "$IMG")
expect_eq "another sandbox on the image has none of it" "none" \
  "$(sb exec "$other" -- sh -c 'command -v ns-hello ns-greet >/dev/null || echo none' 2>&1)"
sb destroy "$id" >/dev/null; sb destroy "$other" >/dev/null
check "the host's /usr is unchanged" test ! -e /usr/bin/ns-hello -a ! -e /usr/local/bin/ns-greet -a ! -e /usr/local/lib/node_modules/ns-greeter
check "the image is unchanged (no new files)" test ! -e "$IMAGES/$IMG/usr/bin/ns-hello" -a ! -e "$IMAGES/$IMG/usr/local/bin/ns-greet"
expect_eq "the image's package database is unchanged" "$img_before" "$(status_sum)"

# A repository on the image: `base = NAME`.
R=$NS_TMP/src/deb
make_repo "$R"
mkdir -p "$R/.nightshift"; printf 'base = %s\n' "$IMG" > "$R/.nightshift/config"
chown -R "$TEST_UID:$TEST_GID" "$R"
as_user git -C "$R" add -A && as_user git -C "$R" -c user.name=t -c user.email=t@t commit -qm base
out=$(as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" run --repo "$R" --once --follow \
  'cat /etc/nightshift-layer; echo committed > f.txt' 2>&1); rc=$?
expect_match "a session of a repository with base = $IMG runs on the image" "nightshift debian layer $IMG" "$out"
expect_eq "and its turn commits (git from the image)" 0 "$rc"
printf 'base = ../etc\n' > "$R/.nightshift/config"; chown "$TEST_UID:$TEST_GID" "$R/.nightshift/config"
as_user git -C "$R" -c user.name=t -c user.email=t@t commit -qam 'bad base'
out=$(as_user env NIGHTSHIFT_URL="$SV_URL" NIGHTSHIFT_TOKEN="$SV_TOKEN" "$NIGHTSHIFT" run --repo "$R" --once --follow 'true' 2>&1)
expect_match "a base that is not a layer name fails the session clearly" "base '../etc' is not a layer name" "$out"
tap_done
