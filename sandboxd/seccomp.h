/* The sandbox's seccomp filter: Docker's default allow-list, minus what a coding agent never needs
 * and what has been a kernel attack surface from containers (see the table in seccomp.c).
 *
 * The filter is built once in the daemon with libseccomp and exported to raw BPF; each exec'd
 * process loads that BPF just before execve, which costs one prctl and one seccomp call and needs
 * no allocation (the measured cost of a prebuilt program is about 0.17 ms per exec). */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Build the filter for the native architecture (x86_64) and export it to raw BPF.  On success
 * out->filter is malloc'd (release with sc_filter_free) and out->len is its length in
 * instructions.  Returns 0 or -errno (with *err filled).  Thread-safe; deterministic. */
int sc_filter_build(struct sock_fprog *out, ns_error *err);

/* Free a program filled by sc_filter_build and reset it to empty; safe on an empty program and
 * twice in a row. */
void sc_filter_free(struct sock_fprog *prog);

/* Set PR_SET_NO_NEW_PRIVS and install `prog` on the calling thread (SECCOMP_SET_MODE_FILTER).
 * Meant for a freshly forked, single-threaded child just before execve: two system calls, no
 * allocation, async-signal-safe.  no_new_privs stays set even if the second step fails.  Returns 0
 * or -errno (-EINVAL for an empty program). */
int sc_filter_load(const struct sock_fprog *prog);

/* One call the filter refuses, as the tests and the in-sandbox helper exercise it.  `args` are
 * chosen so that the call, if the filter did NOT stop it, fails harmlessly inside the kernel
 * (bad pointer, fd -1, invalid flags, wrong magic: EFAULT/EBADF/EINVAL/ESRCH...) or, for the few
 * marked `succeeds_unfiltered`, succeeds with an effect confined to the calling process (meant
 * for a throw-away child).  Never run the list unfiltered on a host outside a forked child. */
struct sc_probe {
        const char *name;        /* syscall name, or "syscall_variant" for an argument rule */
        long nr;                 /* native (x86_64) syscall number */
        unsigned long args[6];
        int errnum;              /* what the filter returns: EPERM or ENOSYS */
        bool whole;              /* the syscall is refused whatever its arguments (a rule of its
                                    own in the filter); false: only these arguments are refused */
        bool succeeds_unfiltered; /* the unfiltered call succeeds (harmless in a forked child) */
};

/* The list the filter's explicit denials were built from (static storage, `*n` entries): every
 * syscall refused outright, plus one probe per refused argument pattern (clone namespace flags,
 * personality, ioctl TIOCSTI/TIOCLINUX incl. high-bit variants, socket/socketpair families and
 * raw IP sockets). */
const struct sc_probe *sc_denied_probes(size_t *n);
