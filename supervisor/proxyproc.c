/* nightshift supervisor — the proxy process, from the supervisor's side (see proxyproc.h). */
#include "proxyproc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/outbox.h"

#define PP_RESTART_MS 1000
#define PP_OUT_MAX 16384        /* messages queued for a process that does not read: then it is killed */
#define PP_TUNNELS_MAX 4096     /* beyond: the egress proxy relays the tunnel itself */
#define PP_CHAN_BUF (1024 * 1024)

extern char **environ;

_Static_assert(sizeof(struct pvc_msg) <= NS_OUTBOX_MSG_MAX, "a channel message fits the outbox");

struct pp_tunnel {
        struct pp_tunnel *next;
        uint64_t id;
        sv_tunnel_end_fn end;
        void *data;
};

struct sv_proxyproc {
        ns_loop *loop;
        sv_proxyproc_cfg cfg;
        const sv_proxyproc_ops *ops;
        void *data;
        pid_t pid;                      /* 0: not running */
        int pidfd, chan;
        ns_watch *pid_w, *chan_w;
        ns_outbox out;                  /* messages the channel had no room for, in order */
        uint64_t gen;
        uint64_t started_ms;
        struct pp_tunnel *tunnels;      /* handed over, their end not heard yet */
        size_t n_tunnels;
        uint64_t last_tunnel;
};

static void proc_kill(sv_proxyproc *pp, const char *why);

static void close_fds(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

/* Send m with fds[0..n) (their ownership passes): at once, or after what already waits.
 * Returns 0, or -errno when it could not be (no process; or the process was killed for it). */
static int send_fds(sv_proxyproc *pp, const struct pvc_msg *m, const int *fds, size_t n) {
        if (pp->chan < 0) {
                close_fds(fds, n);
                return -ESRCH;
        }
        int r = ns_outbox_send(&pp->out, m, sizeof *m, fds, n);
        if (r < 0)
                proc_kill(pp, r == -ENOBUFS ? "it does not read its channel" : strerror(-r));
        return r;
}

void sv_proxyproc_send(sv_proxyproc *pp, const struct pvc_msg *m, int fd) {
        if (pp)
                (void) send_fds(pp, m, &fd, fd >= 0 ? 1 : 0);
        else if (fd >= 0)
                close(fd);
}

/* Unlink tunnel `id`: the one found, or NULL. */
static struct pp_tunnel *tunnel_take(sv_proxyproc *pp, uint64_t id) {
        for (struct pp_tunnel **tp = &pp->tunnels; *tp; tp = &(*tp)->next)
                if ((*tp)->id == id) {
                        struct pp_tunnel *t = *tp;
                        *tp = t->next;
                        pp->n_tunnels--;
                        return t;
                }
        return NULL;
}

/* Every tunnel ends with the process that relayed it. */
static void tunnels_end_all(sv_proxyproc *pp, const char *reason) {
        while (pp->tunnels) {
                struct pp_tunnel *t = pp->tunnels;
                pp->tunnels = t->next;
                pp->n_tunnels--;
                t->end(t->data, (const uint64_t[2]){ 0, 0 }, reason);
                free(t);
        }
}

static void on_tunnel_end(sv_proxyproc *pp, const struct pvc_msg *m) {
        /* Only a tunnel handed over and not yet ended counts: a hostile process can make up
         * neither a tunnel nor a second end. */
        struct pp_tunnel *t = tunnel_take(pp, m->dial);
        if (!t)
                return;
        t->end(t->data, m->bytes, m->error ? "the connection was reset" : NULL);
        free(t);
}

static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w;
        sv_proxyproc *pp = data;
        int fr = events & EPOLLOUT ? ns_outbox_flush(&pp->out) : 0;
        if (fr < 0)
                return proc_kill(pp, strerror(-fr));
        for (int k = 0; k < 64 && pp->chan == fd; k++) {
                struct pvc_msg m;
                int got[2];
                int r = pvc_recv(fd, true, &m, got);
                if (r == -EAGAIN)
                        return;
                if (r <= 0) {
                        /* EOF: the process is exiting (how it ended is logged when it is reaped).
                         * Anything else: a process not to be trusted any longer. */
                        proc_kill(pp, r == 0 ? NULL : r == -EBADMSG ? "it broke the channel's protocol" : strerror(-r));
                        return;
                }
                if (m.op == PVC_TUNNEL_END) {
                        on_tunnel_end(pp, &m);
                } else if (pp->ops && pp->ops->on_dial) {
                        pp->ops->on_dial(pp->data, m.dial, m.id);
                } else {
                        struct pvc_msg no = { .op = PVC_DIALED, .dial = m.dial, .error = ENOENT };
                        sv_proxyproc_send(pp, &no, -1);
                }
        }
}

/* The process is gone (or going): forget it and what it held; the tick starts another. */
static void proc_forget(sv_proxyproc *pp) {
        ns_loop_remove(pp->loop, pp->chan_w);
        ns_loop_remove(pp->loop, pp->pid_w);
        pp->chan_w = pp->pid_w = NULL;
        if (pp->chan >= 0)
                close(pp->chan);
        pp->chan = -1;
        ns_outbox_clear(&pp->out);
        ns_outbox_init(&pp->out, pp->loop, NULL, -1, 0); /* its watch is gone: nothing until the next process */
        pp->gen++;
        tunnels_end_all(pp, "the proxy process ended");
}

/* Wait for the process (killed, or exited) and log how it ended, unless it was stopped. */
static void reap(sv_proxyproc *pp, bool stopped) {
        if (pp->pidfd < 0)
                return;
        siginfo_t si = { 0 };
        if (waitid(P_PIDFD, (id_t) pp->pidfd, &si, WEXITED) == 0 && si.si_pid && !stopped) {
                if (si.si_code == CLD_EXITED && si.si_status == 0)
                        log_info("proxy process %d exited", (int) pp->pid);
                else if (si.si_code == CLD_EXITED)
                        log_warn("proxy process %d exited with status %d", (int) pp->pid, si.si_status);
                else
                        log_warn("proxy process %d killed by signal %d", (int) pp->pid, si.si_status);
        }
        close(pp->pidfd);
        pp->pidfd = -1;
        pp->pid = 0;
}

static void on_exit_cb(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) fd, (void) events;
        sv_proxyproc *pp = data;
        proc_forget(pp);
        reap(pp, false);
}

/* Kill the process (logging `why`, unless NULL) and forget it; the tick starts another. */
static void proc_kill(sv_proxyproc *pp, const char *why) {
        if (pp->pidfd < 0)
                return;
        if (why) /* else it is exiting: reap says how it ended */
                log_warn("proxy process %d: %s: killed (another one is started)", (int) pp->pid, why);
        (void) pidfd_send_signal(pp->pidfd, SIGKILL, NULL, 0);
        proc_forget(pp); /* its exit is reaped by on_exit_cb, which stays watched */
        if (!(pp->pid_w = ns_loop_add(pp->loop, pp->pidfd, EPOLLIN, on_exit_cb, pp, NULL)))
                reap(pp, false); /* blocks for the moment SIGKILL takes */
}

/* Only what a sanitizer build reads: the process gets none of the supervisor's environment, which
 * may carry credentials (a forge token, a model key) it has no use for. */
static void proxy_env(char **env, size_t cap) {
        size_t n = 0;
        for (char **e = environ; e && *e && n + 1 < cap; e++)
                if (!strncmp(*e, "ASAN_OPTIONS=", 13) || !strncmp(*e, "UBSAN_OPTIONS=", 14) ||
                    !strncmp(*e, "LSAN_OPTIONS=", 13))
                        env[n++] = *e;
        env[n] = NULL;
}

static int spawn(sv_proxyproc *pp, ns_error *err) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return ns_err_sys(err, errno, "socketpair for the proxy process");
        _cleanup_close_ int mine = sv[0], theirs = sv[1];
        int size = PP_CHAN_BUF; /* best effort: net.core.wmem_max caps it */
        for (int i = 0; i < 2; i++)
                (void) setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        /* Above the target numbers, so that neither dup2 below overwrites the other's source. */
        _cleanup_close_ int lfd = pp->cfg.listen_fd >= 0 ? fcntl(pp->cfg.listen_fd, F_DUPFD_CLOEXEC, 10) : -1;
        _cleanup_close_ int cfd = fcntl(theirs, F_DUPFD_CLOEXEC, 10);
        if ((pp->cfg.listen_fd >= 0 && lfd < 0) || cfd < 0 || fcntl(mine, F_SETFL, O_NONBLOCK) < 0)
                return ns_err_sys(err, errno, "the proxy process's descriptors");
        char ppid[24], level[8];
        snprintf(ppid, sizeof ppid, "%d", (int) getpid());
        snprintf(level, sizeof level, "%d", pp->cfg.log_level);
        const char *domain = pp->cfg.domain;
        char *argv[] = { "nightshift", "proxy-process", "--parent", ppid, "--log-level", level,
                         domain ? "--domain" : NULL, (char *) domain, NULL };
        char *env[8];
        proxy_env(env, sizeof env / sizeof env[0]);
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        sigset_t none, deflt;
        sigemptyset(&none);
        sigemptyset(&deflt);
        sigaddset(&deflt, SIGTERM);
        sigaddset(&deflt, SIGINT);
        sigaddset(&deflt, SIGPIPE);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        /* Why closefrom: the supervisor's descriptors are close-on-exec, but one opened by a
         * library without it must not reach the process that handles agent-made bytes. */
        int r = lfd >= 0 ? posix_spawn_file_actions_adddup2(&fa, lfd, PVC_LISTEN_FD) : 0;
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, cfd, PVC_CHAN_FD);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, PVC_CHAN_FD + 1);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&at, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&at, &deflt);
        if (r == 0)
                r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        pid_t pid = 0;
        if (r == 0)
                r = posix_spawn(&pid, pp->cfg.exe, &fa, &at, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (r != 0)
                return ns_err_sys(err, r, "start the proxy process (%s)", pp->cfg.exe);
        int pfd = pidfd_open(pid, 0);
        if (pfd < 0) {
                int e = errno;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return ns_err_sys(err, e, "pidfd_open of the proxy process");
        }
        pp->pid = pid;
        pp->pidfd = pfd;
        pp->chan = TAKE_FD(mine);
        if (!(pp->chan_w = ns_loop_add(pp->loop, pp->chan, EPOLLIN, on_chan, pp, err)) ||
            !(pp->pid_w = ns_loop_add(pp->loop, pp->pidfd, EPOLLIN, on_exit_cb, pp, err))) {
                r = -err->code;
                (void) pidfd_send_signal(pfd, SIGKILL, NULL, 0);
                proc_forget(pp);
                reap(pp, true);
                return r;
        }
        ns_outbox_init(&pp->out, pp->loop, pp->chan_w, pp->chan, PP_OUT_MAX);
        if (pp->ops && pp->ops->on_start)
                pp->ops->on_start(pp->data);
        return 0;
}

int sv_proxyproc_new(ns_loop *loop, const sv_proxyproc_cfg *cfg, const sv_proxyproc_ops *ops, void *data,
                     sv_proxyproc **out, ns_error *err) {
        sv_proxyproc *pp = calloc(1, sizeof *pp);
        if (!pp)
                return ns_err(err, ENOMEM, "out of memory");
        *pp = (sv_proxyproc){ .loop = loop, .cfg = *cfg, .ops = ops, .data = data, .pidfd = -1, .chan = -1 };
        ns_outbox_init(&pp->out, loop, NULL, -1, 0);
        pp->started_ms = ns_now_ms();
        *out = pp; /* on_start, called from spawn, may send through it already */
        int r = spawn(pp, err);
        if (r < 0) {
                *out = NULL;
                free(pp);
                return r;
        }
        return 0;
}

void sv_proxyproc_free(sv_proxyproc *pp) {
        if (!pp)
                return;
        if (pp->pidfd >= 0)
                (void) pidfd_send_signal(pp->pidfd, SIGKILL, NULL, 0);
        proc_forget(pp);
        reap(pp, true);
        free(pp);
}

uint64_t sv_proxyproc_gen(const sv_proxyproc *pp) {
        return pp ? pp->gen : 0;
}

pid_t sv_proxyproc_pid(const sv_proxyproc *pp) {
        return pp ? pp->pid : 0;
}

void sv_proxyproc_tick(sv_proxyproc *pp) {
        if (!pp || pp->pidfd >= 0 || ns_now_ms() < pp->started_ms + PP_RESTART_MS)
                return;
        ns_error err = { 0 };
        pp->started_ms = ns_now_ms(); /* a failed start is tried again a second later */
        if (spawn(pp, &err) < 0)
                log_error("proxy process: %s (previews and tunnels wait until it starts)", err.msg);
        else
                log_notice("proxy process started again (pid %d)", (int) pp->pid);
}

int sv_proxyproc_tunnel(sv_proxyproc *pp, int fd0, int fd1, sv_tunnel_end_fn end, void *data, uint64_t *id) {
        if (!pp || pp->chan < 0)
                return -ESRCH;
        if (pp->n_tunnels >= PP_TUNNELS_MAX)
                return -EBUSY;
        struct pp_tunnel *t = malloc(sizeof *t);
        if (!t)
                return -ENOMEM;
        /* The process gets copies; the caller's are closed once they are on their way. */
        int fds[2] = { fcntl(fd0, F_DUPFD_CLOEXEC, 3), fcntl(fd1, F_DUPFD_CLOEXEC, 3) };
        if (fds[0] < 0 || fds[1] < 0) {
                int e = errno;
                close_fds(fds, 2);
                free(t);
                return -e;
        }
        struct pvc_msg m = { .op = PVC_TUNNEL, .dial = pp->last_tunnel + 1 };
        int r = send_fds(pp, &m, fds, 2);
        if (r < 0) { /* the caller still has its sockets */
                free(t);
                return r;
        }
        *t = (struct pp_tunnel){ .next = pp->tunnels, .id = ++pp->last_tunnel, .end = end, .data = data };
        pp->tunnels = t;
        pp->n_tunnels++;
        close(fd0);
        close(fd1);
        *id = t->id;
        return 0;
}

bool sv_proxyproc_tunnel_drop(sv_proxyproc *pp, uint64_t id, sv_tunnel_end_fn end, void *data) {
        struct pp_tunnel *t = NULL;
        for (t = pp ? pp->tunnels : NULL; t && t->id != id; t = t->next)
                ;
        if (!t)
                return false;
        struct pvc_msg m = { .op = PVC_TUNNEL_DROP, .dial = id };
        if (!end) {
                free(tunnel_take(pp, id));
                sv_proxyproc_send(pp, &m, -1);
                return false;
        }
        t->end = end;
        t->data = data;
        /* The process answers with the tunnel's TUNNEL_END; should the process be killed for
         * this send, tunnels_end_all has called `end` already (and the tunnel is gone). */
        sv_proxyproc_send(pp, &m, -1);
        return true;
}
