/* Identity of a process inside a sandbox: uid/gid, supplementary groups, the five capability sets,
 * and resource limits.  Called in sandbox init and in each exec'd child, after it has become uid 0
 * of the sandbox's user namespace, before seccomp and execve. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* The uid and gid of the unprivileged in-sandbox user ("agent"). */
#define CAPS_AGENT_UID 1000
#define CAPS_AGENT_GID 1000

/* Docker's default capability set as a bit mask (bit n = capability n): CHOWN, DAC_OVERRIDE,
 * FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, AUDIT_WRITE,
 * SETFCAP.  This is the format of CapEff etc. in /proc/PID/status. */
uint64_t caps_docker_mask(void);

/* Enter the final identity of an exec'd process.  The caller must be uid 0 of its user namespace
 * holding at least CAP_SETUID, CAP_SETGID and CAP_SETPCAP (a full set, or Docker's set: the call
 * is idempotent, so init can hold Docker's set and its children call this again).
 *   root=false: uid/gid 1000 (real, effective, saved, fs), no supplementary groups, and all five
 *               capability sets empty (bounding, ambient, inheritable, permitted, effective).
 *   root=true:  uid/gid 0, no supplementary groups, bounding = permitted = effective = Docker's
 *               set, inheritable and ambient empty.
 * Does not touch no_new_privs or securebits.  The result is read back from the kernel; anything
 * but exactly the requested state fails with -EPERM.  Returns 0 or -errno with *err filled; on
 * failure the process is in an unspecified, possibly partial state and must not exec. */
int caps_enter_identity(bool root, ns_error *err);

/* Resource limits of an exec'd process: RLIMIT_CORE 0/0 (a crashing process must not write
 * sandbox memory to disk), RLIMIT_NOFILE 65536/65536, lowered to the current hard limit if that is
 * smaller (never raised).  Returns 0 or -errno with *err filled. */
int caps_set_rlimits(ns_error *err);
