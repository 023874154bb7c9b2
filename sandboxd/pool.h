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

/* Take a ready pool sandbox for a create with network mode `net` out of the pool (it keeps its
 * uid slot), or NULL when none is ready (which makes the pool refill at once for a while: a burst).
 * For NET_PRIVATE one whose pair was made ahead when there is one (its s->net set), else a plain
 * one; a plain one (no link) for anything else.  The caller hands it out or destroys it. */
struct sbx_sandbox *pool_take(struct sbx_daemon *d, enum net_mode net);

/* Attach the workspace mount (ws_mnt >= 0) and the read-only binds inside the sandbox whose init
 * is `init_pidfd`: a short-lived helper process enters its mount namespace (setns through the
 * pidfd: no pid is looked up) and attaches them with mount_attach_extras.  The daemon's own mount
 * namespace, root and cwd are never changed. */
int pool_attach_extras(int init_pidfd, int ws_mnt, const struct mount_bind *binds, size_t n_binds, ns_error *err);

/* Stack the /usr overlay on the read-only /usr of a running sandbox that was built without one
 * (mount_usr_is_lazy), from a helper child; nothing when /usr is an overlay already.  `upper`
 * is the sandbox's upper dir, `userns_fd` its user namespace (for the idmap). */
int pool_usr_overlay(int init_pidfd, int userns_fd, const char *scaffold, const char *upper, ns_error *err);

/* Fork the zygotes (--pool-builds, default one per CPU, at most SBX_MAX_ZYGOTES), each a copy of the daemon taken right after start-up (before any client or
 * sandbox), which forks the builders of pool sandboxes on request.  Since nothing changes its
 * memory afterwards, the inits it produces share those pages rather than each keeping private
 * copies of the daemon's heap and stack as they were at its fork.  It exits when the daemon
 * closes the socket or dies.  Without a zygote, builders are forked from the daemon itself. */
int pool_zygote_start(struct sbx_daemon *d, ns_error *err);

/* Ask the least busy zygote to build pool sandbox `id` in `slot` (and its veth pair as `net`
 * plans it, unless NULL), reporting to `report_fd` (sent
 * along; the caller still closes its copy).  Returns the zygote's index (for pool_zygote_done), or
 * -errno when there is no zygote or it is gone. */
int pool_zygote_build(struct sbx_daemon *d, const char *id, uint32_t slot, const struct net_pair_plan *net,
                      int report_fd);

/* Zygote `z`'s build has reported (or failed): it counts as free again.  Safe with z < 0. */
void pool_zygote_done(struct sbx_daemon *d, int z);

/* In a child forked from the daemon: close the zygotes' sockets (they must see the daemon's close). */
void pool_zygote_close_in_child(struct sbx_daemon *d);

/* Ask the zygote to remove what dead sandbox `id` left on the host (sandbox_remove_leftovers), off
 * the daemon's loop.  -errno when there is no zygote or its queue is full: do it yourself then. */
int pool_zygote_clean(struct sbx_daemon *d, const char *id);

/* Close the zygotes' sockets (each finishes the jobs queued before) and reap them.  Safe when
 * there are none. */
void pool_zygote_stop(struct sbx_daemon *d);

/* For ns_loop_run: how long the loop may sleep before the pool needs attention (-1 = forever),
 * and the work itself (start a refill once the loop has been idle, drop builds that hang). */
int pool_next_timeout(void *daemon);
void pool_tick(void *daemon);
