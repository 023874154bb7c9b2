/* nightshift supervisor — pinning SSH host keys for pushes (push.c).
 *
 * libgit2 1.5 only looks at the supervisor user's ~/.ssh/known_hosts; the host key an SSH remote
 * shows is compared here with the operator's pins instead, the vault secret GIT_SSH_KNOWN_HOSTS
 * (repository scope first, then global).  Its lines are either OpenSSH known_hosts lines, as
 * `ssh-keyscan -p PORT HOST` prints them ("HOST[,HOST…] KEYTYPE BASE64" with HOST "name", "[name]:port" for a port
 * other than 22, "*", or the same hashed as `ssh-keygen -H` writes it, "|1|SALT|HMAC"), or a bare SHA256 fingerprint as
 * `ssh-keygen -lf` prints it ("SHA256:…", any host).  No pin at all refuses: never trust on first
 * use. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <git2.h>

/* The host and port an SSH push URL reaches ("ssh://[user@]host[:port]/path" or scp-like
 * "user@host:path"); false when `url` is not SSH. */
bool sv_hostkey_url_target(const char *url, char *host, size_t host_cap, int *port);

/* 0 when `cert` (an SSH host key as libgit2 reports it) matches a pin of `pins` for host:port;
 * else -1 with the reason in why (a pin for another key, no pin for this host, no usable key
 * data).  Comparisons are constant-time. */
int sv_hostkey_check(const char *pins, const char *host, int port, const git_cert_hostkey *cert, char *why,
                     size_t why_cap);
