/* The warm pool: a few sandboxes built ahead of demand (host layer, no limits, no workspace:
 * namespaces, root filesystem and init ready), handed out to create requests that fit.  Built one
 * at a time, started when the daemon is idle, by a forked builder process so that the loop keeps
 * serving; their records say "pool", so a restarted daemon destroys them instead of adopting
 * them, and the daemon destroys them at exit. */
#pragma once

#include <stddef.h>

#include "common/err.h"
#include "sandboxd/daemon.h"
#include "sandboxd/mount.h"

/* Take a ready pool sandbox out of the pool (it keeps its uid slot), or NULL when none is
 * ready.  The caller hands it out or destroys it. */
struct sbx_sandbox *pool_take(struct sbx_daemon *d);

/* Attach the workspace mount (ws_mnt >= 0) and the read-only binds inside the sandbox whose init
 * is `init_pidfd`: a short-lived helper process enters its mount namespace (setns through the
 * pidfd: no pid is looked up) and attaches them with mount_attach_extras.  The daemon's own mount
 * namespace, root and cwd are never changed. */
int pool_attach_extras(int init_pidfd, int ws_mnt, const struct mount_bind *binds, size_t n_binds, ns_error *err);

/* Fork the zygote: a copy of the daemon taken right after start-up (before any client or
 * sandbox), which forks the builders of pool sandboxes on request.  Since nothing changes its
 * memory afterwards, the inits it produces share those pages rather than each keeping private
 * copies of the daemon's heap and stack as they were at its fork.  It exits when the daemon
 * closes the socket or dies.  Without a zygote, builders are forked from the daemon itself. */
int pool_zygote_start(struct sbx_daemon *d, ns_error *err);

/* Ask the zygote to build pool sandbox `id` in `slot`, reporting to `report_fd` (sent along; the
 * caller still closes its copy).  -errno when there is no zygote or it is gone. */
int pool_zygote_build(struct sbx_daemon *d, const char *id, uint32_t slot, int report_fd);

/* Ask the zygote to remove what dead sandbox `id` left on the host (sandbox_remove_leftovers), off
 * the daemon's loop.  -errno when there is no zygote or its queue is full: do it yourself then. */
int pool_zygote_clean(struct sbx_daemon *d, const char *id);

/* Close the zygote's socket (it finishes the jobs queued before) and reap it.  Safe when there is
 * none. */
void pool_zygote_stop(struct sbx_daemon *d);

/* For ns_loop_run: how long the loop may sleep before the pool needs attention (-1 = forever),
 * and the work itself (start a refill once the loop has been idle, drop builds that hang). */
int pool_next_timeout(void *daemon);
void pool_tick(void *daemon);
