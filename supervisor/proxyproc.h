/* nightshift supervisor — the proxy process, from the supervisor's side (see preview_chan.h for
 * why it is a process of its own and what crosses its channel).
 *
 * The supervisor starts `nightshift proxy-process` with the preview listener (which it binds and
 * keeps, so the port survives the process) and its end of the channel.  A process that dies is
 * started again from the tick, at most once a second, and the owner told (on_start) so that it can
 * tell the new one everything again; a process that breaks the protocol, or stops reading, is
 * killed first.  Everything here runs on the supervisor's loop thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/loop.h"
#include "preview_chan.h"

typedef struct sv_proxyproc sv_proxyproc;

typedef struct sv_proxyproc_cfg {
        const char *exe;        /* the nightshift binary: /proc/self/exe in the server */
        int listen_fd;          /* the preview listener, or -1 (no previews: the benchmark's) */
        const char *domain;     /* --preview-domain, or NULL */
        int log_level;
} sv_proxyproc_cfg;

typedef struct sv_proxyproc_ops {
        /* A process started (again): tell it what it must know.  May be NULL. */
        void (*on_start)(void *data);
        /* A DIAL (checked by pvc_recv: a well-formed preview id, a non-zero number): answer it
         * with sv_proxyproc_send(DIALED), at once or later.  May be NULL: then refused. */
        void (*on_dial)(void *data, uint64_t dial, const char *preview_id);
} sv_proxyproc_ops;

/* Start the process.  `ops` and `data` are borrowed for the life of the handle; cfg's strings
 * are too.  Returns 0 or -errno. */
int sv_proxyproc_new(ns_loop *loop, const sv_proxyproc_cfg *cfg, const sv_proxyproc_ops *ops, void *data,
                     sv_proxyproc **out, ns_error *err);

/* Kill the process and reap it; every tunnel still open ends (its end callback is called with
 * the reason).  NULL is fine. */
void sv_proxyproc_free(sv_proxyproc *pp);

/* Send m, with fd attached when ≥ 0 (its ownership passes: closed once sent, or when it cannot
 * be).  Nothing is sent while no process runs: the next one is started with on_start. */
void sv_proxyproc_send(sv_proxyproc *pp, const struct pvc_msg *m, int fd);

/* Which process runs: changes each time one is started, so that an answer prepared for an
 * earlier one (a dial that took a while) is not sent to its successor. */
uint64_t sv_proxyproc_gen(const sv_proxyproc *pp);

/* The running process's pid, or 0. */
pid_t sv_proxyproc_pid(const sv_proxyproc *pp);

/* From the loop's tick: start a process again once the last one died (at most once a second). */
void sv_proxyproc_tick(sv_proxyproc *pp);

/* A tunnel is over: bytes[0] went from the first socket to the second, bytes[1] back; `reason`
 * is NULL for an end of its own, else why it was cut. */
typedef void (*sv_tunnel_end_fn)(void *data, const uint64_t bytes[2], const char *reason);

/* Hand an established tunnel (two connected sockets, nothing of theirs buffered by the caller)
 * to the process, which relays it until both ways end.  Returns 0 with *id set: the sockets are
 * the process's now (the caller's copies are closed), and `end` is called exactly once unless
 * sv_proxyproc_tunnel_drop is called first.  Returns -errno (no process runs, too many tunnels,
 * out of memory): the sockets stay the caller's, to relay itself. */
int sv_proxyproc_tunnel(sv_proxyproc *pp, int fd0, int fd1, sv_tunnel_end_fn end, void *data, uint64_t *id);

/* The tunnel's owner goes away: the process resets the tunnel (both peers get a reset).  With
 * `end` NULL, nothing more is heard of it and this returns false.  Else `end(data, ...)` replaces
 * the callback given at hand-off and is called exactly once, later, with the bytes the process
 * moved (reason "the connection was reset"), or with zeros should the process end first; then
 * this returns true.  False also when `pp` is NULL or knows no tunnel `id` (its end was heard):
 * then nothing is called. */
bool sv_proxyproc_tunnel_drop(sv_proxyproc *pp, uint64_t id, sv_tunnel_end_fn end, void *data);
