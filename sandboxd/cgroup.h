/* Cgroups: one cgroup per sandbox, behind one interface on three layouts.
 *
 *   pure v2  /sys/fs/cgroup is cgroup2 with controllers: everything is v2 (memory.max +
 *            memory.swap.max=0, pids.max, cpu.max, memory.events, cpu.stat).
 *   hybrid   v1 controllers on their own hierarchies plus a controller-less cgroup2 (systemd's
 *            "unified"): cgroup2 for grouping, cgroup.kill, cgroup.freeze and cgroup.events; the
 *            v1 memory, pids, cpu and cpuacct hierarchies for limits and usage.
 *   pure v1  no cgroup2 mounted: v1 only; the v1 freezer freezes, kill goes through pidfds.
 *
 * Every sandbox cgroup lives in "<base>/nightshift-sandboxes/<id>" of each hierarchy used, where
 * <base> is sandboxd's own cgroup unless overridden.  Only cgroups this module created are ever
 * written to or removed.  Ids are 1..32 characters of [a-z0-9-]; every function taking one
 * rejects anything else with -EINVAL. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

typedef struct cg_manager cg_manager;

struct cg_limits {
        uint64_t memory_bytes;  /* 0 = none; swap is also limited to 0 where the kernel allows */
        uint64_t pids;          /* 0 = none */
        uint32_t cpu_quota_us;  /* 0 = none */
        uint32_t cpu_period_us; /* 0 = 100000 when a quota is set; 1000..1000000 */
};

struct cg_stats {
        uint64_t memory_current, memory_max /* 0 = none */, oom_kills, cpu_usage_usec, pids_current,
                pids_max /* 0 = none */;
        bool frozen;
};

/* Detect the layout from /proc/self/mountinfo and /proc/self/cgroup and prepare the parent of all
 * sandbox cgroups.  base_override: NULL = sandboxd's own cgroup in each hierarchy; else a path
 * relative to each hierarchy root (no "..").  Under the base, creates "nightshift-sandboxes" in
 * every hierarchy used.  On pure v2 the calling process first moves itself into "<base>/daemon"
 * (created if missing) and enables +memory +pids +cpu in the subtree_control of <base> and of
 * nightshift-sandboxes (systemd's Delegate=yes pattern); if its cgroup already is ".../daemon",
 * <base> is its parent.  On hybrid and pure v1 the caller is never moved.  On success *out owns
 * the manager (free with cg_manager_free). */
int cg_manager_open(cg_manager **out, const char *base_override, ns_error *err);

/* Remove the nightshift-sandboxes directories if empty (EBUSY ignored), close and free. NULL ok. */
void cg_manager_free(cg_manager *m);

/* One line for logs and tests, e.g. "hybrid: cgroup2 /sys/fs/cgroup/unified for grouping, kill,
 * freeze, events; v1 memory, pids, cpu, cpuacct".  Valid as long as m. */
const char *cg_manager_describe(const cg_manager *m);

/* True when limits come from v1 hierarchies while a cgroup2 mount does the grouping. */
bool cg_manager_is_hybrid(const cg_manager *m);

/* Create the sandbox cgroup `id` in every hierarchy used and write the limits (lim may be NULL =
 * none).  A limit whose controller is unavailable fails with -EOPNOTSUPP; an existing cgroup with
 * -EEXIST.  On any failure everything this call created is removed. */
int cg_create(cg_manager *m, const char *id, const struct cg_limits *lim, ns_error *err);

/* Write the limits into the existing cgroup `id` (a sandbox taken from the warm pool, created
 * with none).  Limits not set in `lim` stay as they are.  -EOPNOTSUPP as for cg_create. */
int cg_set_limits(cg_manager *m, const char *id, const struct cg_limits *lim, ns_error *err);

/* Move process `pid` (all its threads) into cgroup `id` in every hierarchy. */
int cg_attach(cg_manager *m, const char *id, pid_t pid, ns_error *err);

/* Return an O_DIRECTORY|O_CLOEXEC fd of the cgroup2 directory of `id` (for clone3's
 * CLONE_INTO_CGROUP; on hybrid, v1 memberships still need cg_attach).  The caller closes it.
 * -EOPNOTSUPP when no cgroup2 is mounted. */
int cg_open_procs_v2(cg_manager *m, const char *id, ns_error *err);

/* SIGKILL every process in cgroup `id`: cgroup.kill where the kernel has it (>= 5.14); else
 * freeze, signal each process of cgroup.procs through pidfd_open + pidfd_send_signal, thaw.
 * Does not wait: use cg_wait_empty. */
int cg_kill(cg_manager *m, const char *id, ns_error *err);

/* Freeze (frozen = true) or thaw cgroup `id` and wait until the kernel reports it done
 * (cgroup.events "frozen 1"/"frozen 0", or the v1 freezer's state where no cgroup2 is mounted).
 * timeout_ms < 0 waits forever; -ETIMEDOUT when it expires. */
int cg_freeze(cg_manager *m, const char *id, bool frozen, int timeout_ms, ns_error *err);

/* Wait until cgroup `id` holds no process (cgroup.events "populated 0"; polling cgroup.procs on
 * pure v1).  timeout_ms < 0 waits forever; -ETIMEDOUT when it expires. */
int cg_wait_empty(cg_manager *m, const char *id, int timeout_ms, ns_error *err);

/* Fill *out with the current usage and limits of cgroup `id`.  Fields whose controller is
 * unavailable are 0.  -ENOENT when the cgroup does not exist. */
int cg_stats(cg_manager *m, const char *id, struct cg_stats *out, ns_error *err);

/* Number of processes the OOM killer killed in cgroup `id` (v2 memory.events "oom_kill"; v1
 * memory.oom_control "oom_kill"). */
int cg_oom_kills(cg_manager *m, const char *id, uint64_t *out, ns_error *err);

/* Remove cgroup `id` from every hierarchy.  A missing cgroup is success (idempotent); EBUSY is
 * retried for about a second (tasks just exiting).  Processes must be gone (cg_kill +
 * cg_wait_empty) first. */
int cg_destroy(cg_manager *m, const char *id, ns_error *err);
