/* nightshift supervisor — the Unix sockets sandboxes reach through their connectors (the egress
 * and model proxies), all in DATA_DIR/sockets: a directory of mode 0700 that only the supervisor
 * can enter, so that no other local user can use them, nor bind in their place while the
 * supervisor restarts (as anyone could with a loopback port). */
#pragma once

#include "common/err.h"

#define SV_SOCKET_PATH_MAX 107 /* sun_path less its NUL */

/* Listen on the Unix stream socket `path` (at most SV_SOCKET_PATH_MAX bytes, in that directory),
 * replacing what is there (a stale socket of an earlier run); `flags` are socket(2)'s extra type
 * flags (SOCK_NONBLOCK, SOCK_CLOEXEC).  Returns the fd, or -errno: ENAMETOOLONG, or the failing
 * call's.  On error nothing is bound. */
int sv_sock_listen(const char *path, int flags, int backlog, ns_error *err);
