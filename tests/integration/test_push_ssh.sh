#!/usr/bin/env bash
# Pushing over SSH to a real OpenSSH server the test starts on loopback (its own sshd_config,
# host key and authorized_keys; no system sshd involved): the vault's ed25519 GIT_SSH_KEY
# authenticates; the host key must match the pin in the vault's GIT_SSH_KNOWN_HOSTS (a
# known_hosts line, plain or with its name hashed, or a SHA256 fingerprint) — no pin or a wrong one refuses the push with an error
# event and nothing reaches the remote; a non-fast-forward is rejected (409 + error event).
. "$(dirname "$0")/sv_lib.sh"
SSHD=/usr/sbin/sshd
[ -x "$SSHD" ] || { echo "1..0 # SKIP no sshd (apt-get install openssh-server: scripts/install-deps.sh --with-tests)"; exit 77; }
sv_setup
SSH_USER=nightshift-sshgit
# A login user for the remote side (sshd runs git-receive-pack through the user's shell); its
# password field '*' (no password, not locked: sshd without PAM refuses locked accounts).
if ! id -u "$SSH_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh "$SSH_USER" >/dev/null
fi
usermod -p '*' "$SSH_USER"
SD=$(mktemp -d /tmp/ns-sshd.XXXXXX)
chmod 755 "$SD"
MADE_RUN_SSHD=
[ -d /run/sshd ] || { mkdir -p -m 755 /run/sshd; MADE_RUN_SSHD=1; }
SSHD_PID=
cleanup_ssh() {
  [ -n "$SSHD_PID" ] && { kill "$SSHD_PID" 2>/dev/null; wait "$SSHD_PID" 2>/dev/null; }
  [ "${_tap_fail:-0}" != 0 ] && [ -f "$SD/sshd.log" ] && { echo "# sshd.log:"; tail -n 20 "$SD/sshd.log" | sed 's/^/#   /'; }
  rm -rf "$SD"
  [ -n "$MADE_RUN_SSHD" ] && rmdir /run/sshd 2>/dev/null
  true
}
trap 'cleanup_ssh; sv_stop; sv_log_tail; ns_cleanup' EXIT

ssh-keygen -q -t ed25519 -N '' -C host -f "$SD/host_key"
ssh-keygen -q -t ed25519 -N '' -C other -f "$SD/other_host_key"
ssh-keygen -q -t ed25519 -N '' -C client -f "$SD/client_key"
cp "$SD/client_key.pub" "$SD/authorized_keys"; chmod 644 "$SD/authorized_keys"
PORT=$(free_port)
cat > "$SD/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $SD/host_key
PidFile $SD/sshd.pid
AuthorizedKeysFile $SD/authorized_keys
AllowUsers $SSH_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
CFG
"$SSHD" -D -e -f "$SD/sshd_config" 2>"$SD/sshd.log" &
SSHD_PID=$!
for _ in $(seq 1 100); do
  $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$PORT" 2>/dev/null && break
  kill -0 "$SSHD_PID" 2>/dev/null || break
  sleep 0.05
done
check "our own sshd listens on 127.0.0.1:$PORT" kill -0 "$SSHD_PID"

G() { as_user env HOME="$NS_TMP/src" git -c user.name=t -c user.email=t@t "$@"; }
# The registered repository (fetched over the file system) and the SSH remote it pushes to
# (repository setting push_url), a bare repository of the SSH user with the same history.
make_repo "$NS_TMP/src/work"
R=$SD/remote.git
G clone -q --bare "$NS_TMP/src/work" "$NS_TMP/src/remote.git" && mv "$NS_TMP/src/remote.git" "$R"
chown -R "$SSH_USER" "$R"
# git as the SSH user (the remote's owner)
SG() { setpriv --reuid="$(id -u "$SSH_USER")" --regid="$(id -g "$SSH_USER")" --clear-groups -- \
  env HOME="$SD" git -c user.name=t -c user.email=t@t "$@"; }
r=$(api POST /api/v1/repos "{\"path\":\"$NS_TMP/src/work\",\"name\":\"sshrepo\"}")
repo_id=$(jget "${r#* }" 'd["id"]')
M=$(mirror_of "$repo_id")
URL="ssh://$SSH_USER@127.0.0.1:$PORT$R"
expect_eq "push_url: the SSH remote" 200 "$(api PATCH "/api/v1/repos/$repo_id/settings" "{\"push_url\":\"$URL\"}" | cut -d' ' -f1)"
json_file() { $PY -c 'import json,sys; print(json.dumps({"value": open(sys.argv[1]).read()}))' "$1"; }
json_str() { $PY -c 'import json,sys; print(json.dumps({"value": sys.argv[1]}))' "$1"; }
expect_eq "the ed25519 client key into the vault" 201 "$(api PUT /api/v1/secrets/GIT_SSH_KEY "$(json_file "$SD/client_key")" | cut -d' ' -f1)"
session() {
  local r sid
  r=$(api POST /api/v1/sessions "{\"repo\":\"$repo_id\",\"once\":true,\"prompt\":\"echo $1 > $1.txt\"}")
  sid=$(jget "${r#* }" 'd["id"]')
  wait_state "$sid" completed failed >/dev/null
  echo "$sid"
}
remote_tip() { git -C "$R" rev-parse -q --verify "refs/heads/nightshift/$1" 2>/dev/null; }
pin() { api PUT "/api/v1/repos/$repo_id/secrets/GIT_SSH_KNOWN_HOSTS" "$(json_str "$1")" | cut -d' ' -f1; }

sid=$(session one)
# --- no pin: refused, never trusted on first use ------------------------------------------------
r=$(api POST "/api/v1/sessions/$sid/push")
expect_eq "no pinned host key: refused (502)" 502 "${r%% *}"
expect_match "an error event says to pin it" '"type": "error".*no SSH host key pinned for 127.0.0.1 port' "$(events "$sid" | grep '"type": "error"')"
expect_eq "nothing reached the remote" "" "$(remote_tip "$sid")"
# --- a wrong pin ---------------------------------------------------------------------------------
expect_match "a pin of another key into the repository's vault" '20[01]' "$(pin "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$SD/other_host_key.pub")")"
r=$(api POST "/api/v1/sessions/$sid/push")
expect_eq "the wrong host key: refused (502)" 502 "${r%% *}"
expect_match "an error event: it matches no pin" 'matches no pin' "$(events "$sid" | grep '"type": "error"' | tail -n1)"
expect_eq "nothing reached the remote" "" "$(remote_tip "$sid")"
# --- the right pin (a known_hosts line, as ssh-keyscan prints it) ---------------------------------
pin "# pinned by the test
[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$SD/other_host_key.pub")
[127.0.0.1]:$PORT,other.example $(cut -d' ' -f1,2 "$SD/host_key.pub")" >/dev/null
r=$(api POST "/api/v1/sessions/$sid/push")
expect_eq "the pinned host key: pushed (200)" 200 "${r%% *}"
expect_eq "the remote has the branch at the mirror's commit" "$(git -C "$M" rev-parse "nightshift/$sid")" "$(remote_tip "$sid")"
check "sshd accepted the vault's public key" grep -q "Accepted publickey for $SSH_USER" "$SD/sshd.log"
expect_match "a push event" '"ok": true' "$(events "$sid" | grep '"type": "push"')"
# --- a SHA256 fingerprint pin (as ssh-keygen -lf prints it) -----------------------------------------
fp=$(ssh-keygen -lf "$SD/host_key.pub" | cut -d' ' -f2)
pin "$fp" >/dev/null
sid2=$(session two)
expect_eq "a fingerprint pin: pushed (200)" 200 "$(api POST "/api/v1/sessions/$sid2/push" | cut -d' ' -f1)"
expect_eq "the remote has it" "$(git -C "$M" rev-parse "nightshift/$sid2")" "$(remote_tip "$sid2")"
pin "$(ssh-keygen -lf "$SD/other_host_key.pub" | cut -d' ' -f2)" >/dev/null
sid3=$(session three)
expect_eq "another key's fingerprint: refused (502)" 502 "$(api POST "/api/v1/sessions/$sid3/push" | cut -d' ' -f1)"
expect_eq "nothing reached the remote" "" "$(remote_tip "$sid3")"
# --- hashed names (ssh-keygen -H, as a known_hosts file with HashKnownHosts holds them) -----------
hashed_pin() { # hashed_pin NAME KEYFILE: the known_hosts line for NAME, its name hashed
  printf '%s %s\n' "$1" "$(cut -d' ' -f1,2 "$2")" > "$SD/kh"
  ssh-keygen -H -f "$SD/kh" >/dev/null 2>&1 && grep -v '^#' "$SD/kh"; rm -f "$SD/kh" "$SD/kh.old"
}
hp=$(hashed_pin "[127.0.0.1]:$PORT" "$SD/host_key.pub")
expect_match "ssh-keygen hashed the name" '^\|1\|[^ ]+\|[^ ]+ ssh-' "$hp"
pin "$hp" >/dev/null
sid4=$(session four)
expect_eq "a hashed known_hosts pin: pushed (200)" 200 "$(api POST "/api/v1/sessions/$sid4/push" | cut -d' ' -f1)"
expect_eq "the remote has it" "$(git -C "$M" rev-parse "nightshift/$sid4")" "$(remote_tip "$sid4")"
pin "$(hashed_pin "[127.0.0.1]:$((PORT + 1))" "$SD/host_key.pub")" >/dev/null
sid5=$(session five)
expect_eq "the right key hashed under another host name: refused (502)" 502 "$(api POST "/api/v1/sessions/$sid5/push" | cut -d' ' -f1)"
expect_match "an error event: no pin for this host" 'no pinned host key' "$(events "$sid5" | grep '"type": "error"' | tail -n1)"
expect_eq "nothing reached the remote" "" "$(remote_tip "$sid5")"
# --- non-fast-forward -------------------------------------------------------------------------------
pin "$fp" >/dev/null
W2=$SD/w2
mkdir "$W2" && chown "$SSH_USER" "$W2"
SG clone -q "$R" "$W2" && SG -C "$W2" checkout -q -b theirs
echo theirs > "$W2/theirs.txt" && chown "$SSH_USER" "$W2/theirs.txt"
SG -C "$W2" add theirs.txt && SG -C "$W2" commit -qm theirs
SG -C "$W2" push -q "$R" "theirs:refs/heads/nightshift/$sid3"
theirs=$(remote_tip "$sid3")
r=$(api POST "/api/v1/sessions/$sid3/push")
expect_eq "a non-fast-forward over SSH: rejected (409)" 409 "${r%% *}"
expect_match "and an error event" '"type": "error".*(fast-forward|fastforward|rejected|not present locally)' "$(events "$sid3" | grep '"type": "error"' | tail -n1)"
expect_eq "the remote's branch is untouched" "$theirs" "$(remote_tip "$sid3")"
tap_done
