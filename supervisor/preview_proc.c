/* nightshift supervisor — the preview proxy process, from the supervisor's side (see
 * preview_chan.h for why it is a process and what crosses the channel).
 *
 * The supervisor binds the preview listener and keeps it, so the port survives the process; it
 * starts `nightshift preview-proxy` with the listener and its end of the channel, tells it every
 * preview (PUT), and answers its DIALs by asking sandboxd on a worker, as the proxy did when it
 * ran here.  A proxy that dies is started again from the tick, at most once a second, and told
 * every preview again; a proxy that breaks the protocol, or stops reading, is killed first. */
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

#include "api_int.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "preview_int.h"
#include "sandboxd/client.h"
#include "workq.h"

#define PV_PROC_RESTART_MS 1000
#define PV_PROC_OUT_MAX 16384   /* messages queued for a proxy that does not read: then it is killed */
#define PV_PROC_DIALS_MAX 256   /* DIALs in flight: a hostile proxy cannot fill the workers' queue */
#define PV_PROC_CHAN_BUF (1024 * 1024)

extern char **environ;

struct pv_outq {
        struct pv_outq *next;
        struct pvc_msg m;
        int fd;
};

/* Asking sandboxd, on a worker, for a socket connected to the preview's port inside its sandbox
 * (op dial).  The answer goes to the proxy process that asked, if it is still the one running. */
typedef struct pv_dial_job {
        sv_job base;
        sv_server *srv;
        uint64_t gen, dial;
        char sandbox[NS_ID_MAX + 1];
        int port;
        int fd, rc;
        ns_error err;
} pv_dial_job;

/* Kill the proxy (logging `why`, unless NULL) and forget it; the tick starts another. */
static void proc_kill(struct sv_previews *pv, const char *why);

static void outq_clear(struct pv_proc *pp) {
        while (pp->out) {
                struct pv_outq *q = pp->out;
                pp->out = q->next;
                if (q->fd >= 0)
                        close(q->fd);
                free(q);
        }
        pp->out_tail = &pp->out;
        pp->n_out = 0;
}

static void chan_want(struct sv_previews *pv, uint32_t mask) {
        struct pv_proc *pp = &pv->proc;
        if (pp->chan_w && mask != pp->chan_mask && ns_loop_modify(pv->srv->loop, pp->chan_w, mask, NULL) == 0)
                pp->chan_mask = mask;
}

/* Send m (and fd, whose ownership passes) to the proxy: at once, or after what already waits.
 * Nothing is sent while no proxy runs (the next one is told every preview when it starts). */
static void send_msg(struct sv_previews *pv, const struct pvc_msg *m, int fd) {
        struct pv_proc *pp = &pv->proc;
        int r = -EAGAIN;
        if (pp->chan < 0) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        if (!pp->out && (r = pvc_send(pp->chan, m, fd)) == 0) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        if (r != -EAGAIN) {
                if (fd >= 0)
                        close(fd);
                proc_kill(pv, strerror(-r));
                return;
        }
        struct pv_outq *q = pp->n_out < PV_PROC_OUT_MAX ? malloc(sizeof *q) : NULL;
        if (!q) {
                if (fd >= 0)
                        close(fd);
                proc_kill(pv, "it does not read its channel");
                return;
        }
        *q = (struct pv_outq){ .m = *m, .fd = fd };
        *pp->out_tail = q;
        pp->out_tail = &q->next;
        pp->n_out++;
        chan_want(pv, EPOLLIN | EPOLLOUT);
}

static void flush_out(struct sv_previews *pv) {
        struct pv_proc *pp = &pv->proc;
        while (pp->out) {
                struct pv_outq *q = pp->out;
                int r = pvc_send(pp->chan, &q->m, q->fd);
                if (r == -EAGAIN)
                        return;
                if (r < 0) {
                        proc_kill(pv, strerror(-r));
                        return;
                }
                if (q->fd >= 0)
                        close(q->fd);
                if (!(pp->out = q->next))
                        pp->out_tail = &pp->out;
                pp->n_out--;
                free(q);
        }
        chan_want(pv, EPOLLIN);
}

static void dialed(struct sv_previews *pv, uint64_t dial, int fd, int error) {
        struct pvc_msg m = { .op = PVC_DIALED, .dial = dial, .error = fd >= 0 ? 0 : error > 0 ? error : EIO };
        send_msg(pv, &m, fd);
}

static void dial_run(sv_job *base, sv_worker *w) {
        pv_dial_job *j = (pv_dial_job *) base;
        ns_client *sbx;
        if ((j->rc = sv_worker_sandboxd(w, &sbx, &j->err)) < 0)
                return;
        _cleanup_json_ cJSON *req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "op", "dial") || !cJSON_AddStringToObject(req, "sandbox", j->sandbox) ||
            !cJSON_AddNumberToObject(req, "port", j->port)) {
                j->rc = ns_err(&j->err, ENOMEM, "out of memory");
                return;
        }
        cJSON *reply = NULL;
        int fds[1];
        size_t n_fds = 1;
        j->rc = ns_client_call(sbx, req, NULL, 0, &reply, fds, &n_fds, &j->err);
        cJSON_Delete(reply);
        if (j->rc == 0 && n_fds == 1)
                j->fd = fds[0];
        else if (j->rc == 0)
                j->rc = ns_err(&j->err, EPROTO, "sandboxd: dial answered without a socket");
        if (j->rc == -ECONNRESET || j->rc == -EPIPE || j->rc == -EPROTO || j->rc == -ENOTCONN)
                sv_worker_sandboxd_reset(w, -j->rc);
}

static void dial_done(sv_job *base) {
        pv_dial_job *j = (pv_dial_job *) base;
        struct sv_previews *pv = j->srv->previews;
        if (pv) {
                pv->proc.n_dials--;
                if (j->rc < 0)
                        log_debug("preview proxy: dial %s port %d: %s", j->sandbox, j->port, j->err.msg);
                if (pv->proc.gen == j->gen) { /* else the proxy that asked is gone */
                        dialed(pv, j->dial, j->rc < 0 ? -1 : j->fd, -j->rc);
                        j->fd = -1;
                }
        }
        if (j->fd >= 0)
                close(j->fd);
        free(j);
}

/* A DIAL from the proxy: checked here as much as any request from the network. */
static void on_dial(struct sv_previews *pv, const struct pvc_msg *m) {
        sv_preview *p = pv_find(pv, m->id);
        if (!p) /* unpublished meanwhile (the DROP crossed the DIAL) */
                return dialed(pv, m->dial, -1, ENOENT);
        /* Only while the session still has this sandbox: a preview dies with it. */
        const char *sb = sv_session_live_sandbox(pv->srv, p->sid);
        if (!sb || strcmp(sb, p->sandbox))
                return dialed(pv, m->dial, -1, ESRCH);
        pv_dial_job *j = pv->proc.n_dials < PV_PROC_DIALS_MAX ? calloc(1, sizeof *j) : NULL;
        if (!j)
                return dialed(pv, m->dial, -1, EAGAIN);
        j->base.run = dial_run;
        j->base.done = dial_done;
        j->srv = pv->srv;
        j->gen = pv->proc.gen;
        j->dial = m->dial;
        j->fd = -1;
        j->port = p->port;
        snprintf(j->sandbox, sizeof j->sandbox, "%s", p->sandbox);
        pv->proc.n_dials++;
        sv_workq_submit(pv->srv->wq, &j->base);
}

static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w;
        struct sv_previews *pv = data;
        if (events & EPOLLOUT)
                flush_out(pv);
        for (int k = 0; k < 64 && pv->proc.chan == fd; k++) {
                struct pvc_msg m;
                int got_fd;
                int r = pvc_recv(fd, true, &m, &got_fd);
                if (r == -EAGAIN)
                        return;
                if (r <= 0) {
                        /* EOF: the proxy is exiting.  Anything else is a proxy not to be trusted
                         * any longer: it handles agent-made bytes. */
                        proc_kill(pv, r == 0 ? NULL : r == -EBADMSG ? "it broke the channel's protocol" : strerror(-r));
                        return;
                }
                on_dial(pv, &m);
        }
}

/* The process is gone (or going): forget it; the tick starts another. */
static void proc_forget(struct sv_previews *pv) {
        struct pv_proc *pp = &pv->proc;
        ns_loop_remove(pv->srv->loop, pp->chan_w);
        ns_loop_remove(pv->srv->loop, pp->pid_w);
        pp->chan_w = pp->pid_w = NULL;
        if (pp->chan >= 0)
                close(pp->chan);
        pp->chan = -1;
        outq_clear(pp);
        pp->gen++;
}

/* Wait for the process (killed, or exited) and log how it ended, unless it was stopped. */
static void reap(struct sv_previews *pv, bool stopped) {
        struct pv_proc *pp = &pv->proc;
        if (pp->pidfd < 0)
                return;
        siginfo_t si = { 0 };
        if (waitid(P_PIDFD, (id_t) pp->pidfd, &si, WEXITED) == 0 && si.si_pid && !stopped) {
                if (si.si_code == CLD_EXITED && si.si_status == 0)
                        log_info("preview proxy %d exited", (int) pp->pid);
                else if (si.si_code == CLD_EXITED)
                        log_warn("preview proxy %d exited with status %d", (int) pp->pid, si.si_status);
                else
                        log_warn("preview proxy %d killed by signal %d", (int) pp->pid, si.si_status);
        }
        close(pp->pidfd);
        pp->pidfd = -1;
        pp->pid = 0;
}

static void on_exit_cb(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) fd, (void) events;
        struct sv_previews *pv = data;
        proc_forget(pv);
        reap(pv, false);
}

static void proc_kill(struct sv_previews *pv, const char *why) {
        struct pv_proc *pp = &pv->proc;
        if (pp->pidfd < 0)
                return;
        if (why) /* else it is exiting: reap says how it ended */
                log_warn("preview proxy %d: %s: killed (another one is started)", (int) pp->pid, why);
        (void) pidfd_send_signal(pp->pidfd, SIGKILL, NULL, 0);
        proc_forget(pv); /* its exit is reaped by on_exit_cb, which stays watched */
        if (!(pp->pid_w = ns_loop_add(pv->srv->loop, pp->pidfd, EPOLLIN, on_exit_cb, pv, NULL)))
                reap(pv, false); /* blocks for the moment SIGKILL takes */
}

/* Only what a sanitizer build reads: the proxy gets none of the supervisor's environment, which
 * may carry credentials (a forge token, a model key) it has no use for. */
static size_t proxy_env(char **env, size_t cap) {
        size_t n = 0;
        for (char **e = environ; e && *e && n + 1 < cap; e++)
                if (!strncmp(*e, "ASAN_OPTIONS=", 13) || !strncmp(*e, "UBSAN_OPTIONS=", 14) ||
                    !strncmp(*e, "LSAN_OPTIONS=", 13))
                        env[n++] = *e;
        env[n] = NULL;
        return n;
}

static int spawn(struct sv_previews *pv, ns_error *err) {
        struct pv_proc *pp = &pv->proc;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return ns_err_sys(err, errno, "socketpair for the preview proxy");
        _cleanup_close_ int mine = sv[0], theirs = sv[1];
        int size = PV_PROC_CHAN_BUF; /* best effort: net.core.wmem_max caps it */
        for (int i = 0; i < 2; i++)
                (void) setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        /* Above the target numbers, so that neither dup2 below overwrites the other's source. */
        _cleanup_close_ int lfd = fcntl(pv->listen_fd, F_DUPFD_CLOEXEC, 10);
        _cleanup_close_ int cfd = fcntl(theirs, F_DUPFD_CLOEXEC, 10);
        if (lfd < 0 || cfd < 0 || fcntl(mine, F_SETFL, O_NONBLOCK) < 0)
                return ns_err_sys(err, errno, "the preview proxy's descriptors");
        char ppid[24], level[8];
        snprintf(ppid, sizeof ppid, "%d", (int) getpid());
        snprintf(level, sizeof level, "%d", pv->srv->cfg.log_level);
        const char *domain = pv->srv->cfg.preview_domain;
        char *argv[] = { "nightshift", "preview-proxy", "--parent", ppid, "--log-level", level,
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
        int r = posix_spawn_file_actions_adddup2(&fa, lfd, PVC_LISTEN_FD);
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
                r = posix_spawn(&pid, pp->exe, &fa, &at, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (r != 0)
                return ns_err_sys(err, r, "start the preview proxy (%s)", pp->exe);
        int pfd = pidfd_open(pid, 0);
        if (pfd < 0) {
                int e = errno;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return ns_err_sys(err, e, "pidfd_open of the preview proxy");
        }
        pp->pid = pid;
        pp->pidfd = pfd;
        pp->chan = TAKE_FD(mine);
        pp->chan_mask = EPOLLIN;
        pp->started_ms = ns_now_ms();
        pp->starts++;
        if (!(pp->chan_w = ns_loop_add(pv->srv->loop, pp->chan, EPOLLIN, on_chan, pv, err)) ||
            !(pp->pid_w = ns_loop_add(pv->srv->loop, pp->pidfd, EPOLLIN, on_exit_cb, pv, err))) {
                r = -err->code;
                (void) pidfd_send_signal(pfd, SIGKILL, NULL, 0);
                proc_forget(pv);
                reap(pv, true);
                return r;
        }
        for (const sv_preview *p = pv->list; p; p = p->next)
                pv_proc_put(pv, p);
        return 0;
}

int pv_proc_start(struct sv_previews *pv, ns_error *err) {
        struct pv_proc *pp = &pv->proc;
        if (!pp->exe)
                pp->exe = "/proc/self/exe";
        pp->pidfd = pp->chan = -1;
        pp->out_tail = &pp->out;
        return spawn(pv, err);
}

void pv_proc_stop(struct sv_previews *pv) {
        struct pv_proc *pp = &pv->proc;
        if (pp->pidfd >= 0)
                (void) pidfd_send_signal(pp->pidfd, SIGKILL, NULL, 0);
        proc_forget(pv);
        reap(pv, true);
}

void pv_proc_put(struct sv_previews *pv, const sv_preview *p) {
        struct pvc_msg m = { .op = PVC_PUT, .port = p->port };
        snprintf(m.id, sizeof m.id, "%s", p->id);
        memcpy(m.token_hash, p->token_hash, sizeof m.token_hash);
        send_msg(pv, &m, -1);
}

void pv_proc_drop(struct sv_previews *pv, const sv_preview *p) {
        struct pvc_msg m = { .op = PVC_DROP };
        snprintf(m.id, sizeof m.id, "%s", p->id);
        send_msg(pv, &m, -1);
}

void pv_proc_tick(struct sv_previews *pv) {
        struct pv_proc *pp = &pv->proc;
        if (pp->pidfd >= 0 || ns_now_ms() < pp->started_ms + PV_PROC_RESTART_MS)
                return;
        ns_error err = { 0 };
        pp->started_ms = ns_now_ms(); /* a failed start is tried again a second later */
        if (spawn(pv, &err) < 0)
                log_error("preview proxy: %s (previews are not served until it starts)", err.msg);
        else
                log_notice("preview proxy started again (pid %d)", (int) pp->pid);
}
