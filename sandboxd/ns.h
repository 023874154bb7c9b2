/* Namespaces: user namespaces for uid mapping and idmapped mounts, and the small per-namespace
 * set-up done inside a new sandbox (loopback, hostname). */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

/* Create a user namespace with the given uid and gid maps (uid_map syntax: "inside outside
 * count\n" lines, at most 5) and return an fd of it (O_CLOEXEC).  The namespace is owned by host
 * root and holds no process once this returns: it exists to be entered (setns) or to idmap mounts.
 * Costs one short-lived clone. */
int ns_userns_new(const char *uid_map, const char *gid_map, ns_error *err);

/* In a fresh network namespace: bring the loopback interface up. */
int ns_loopback_up(ns_error *err);

/* Read the start time (clock ticks since boot, field 22 of /proc/PID/stat) of a process. */
int ns_proc_starttime(pid_t pid, uint64_t *out, ns_error *err);
