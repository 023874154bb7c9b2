/* nightshift — confining one of nightshift's own helper processes (sandboxd's relay process, the
 * supervisor's preview proxy) to the system calls its work needs.  These helpers move bytes for
 * sockets a sandbox holds the other end of, or parse what an agent's server sends: should one be
 * taken over, it must not be able to open a file, make or dial a socket, change identity or
 * execute anything. */
#pragma once

#include <stddef.h>

#include "common/err.h"

/* Confine the calling process to the system calls named in `allowed_calls[0..n)`: any other fails
 * with EPERM, a foreign ABI kills the process.  Sets no_new_privs.  Names this libseccomp does
 * not know are skipped (they stay refused).  Allocates (libseccomp): call once the helper has set
 * itself up, never between fork and exec.  Returns 0 or -errno with *err filled. */
int ns_seccomp_allow_only(const char *const *allowed_calls, size_t n, ns_error *err);
