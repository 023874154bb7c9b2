/* nightshift supervisor — the proxy process (`nightshift proxy-process`, `ns-proxy`, started by
 * the supervisor: proxyproc.c; the channel: preview_chan.h): the preview proxy's connections
 * (preview_proxy.c) and the egress proxy's established tunnels (relayed here by
 * common/relaypair.c).
 *
 * It confines itself before it serves anything: nice 10 (its relays then move bytes in batches
 * instead of preempting the servers and clients at both ends on every segment, and an agent's
 * load cannot starve the supervisor's loop through it), not dumpable, dying with the supervisor,
 * and a seccomp allow-list with nothing that opens a file, makes or dials a socket, changes
 * identity or executes.  What it holds is the listener, the channel, the sockets it relays, and
 * the previews' ids, ports and token hashes: never a token, a credential, or the database. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/outbox.h"
#include "common/relaypair.h"
#include "common/seccomp_allow.h"
#include "preview.h"
#include "preview_proxy.h"

#define PV_PROXY_NICE 10
#define PV_SITES_MAX 4096
#define PV_TUNNELS_MAX 4096
#define PV_OUT_MAX 65536        /* messages waiting for the supervisor: DIALs and TUNNEL_ENDs */

_Static_assert(sizeof(struct pvc_msg) <= NS_OUTBOX_MSG_MAX, "a channel message fits the outbox");

/* An egress tunnel relayed here: the supervisor's number for it. */
typedef struct pv_tunnel {
        struct pv_tunnel *prev, *next;
        pv_proxy *px;
        uint64_t id;
        ns_relay_pair *pair;
} pv_tunnel;

/* The calls the proxy makes: the loop, the channel, accepting and relaying, memory, exit. */
static const char *const proxy_calls[] = {
        "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "accept4", "splice",
        "pipe2", "fcntl", "setsockopt", "getsockopt", "shutdown", "close", "epoll_wait", "epoll_pwait",
        "epoll_pwait2", "epoll_ctl", "mmap", "munmap", "mremap", "madvise", "brk", "futex", "clock_gettime",
        "gettimeofday", "getpid", "gettid", "rt_sigreturn", "rt_sigprocmask", "sigaltstack", "restart_syscall",
        "exit", "exit_group",
};

const char *const *sv_preview_proxy_calls(size_t *n) {
        *n = sizeof proxy_calls / sizeof proxy_calls[0];
        return proxy_calls;
}

pv_site *pv_site_find(pv_proxy *px, const char *id) {
        for (pv_site *p = px->sites; p; p = p->next)
                if (!strcmp(p->id, id))
                        return p;
        return NULL;
}

static void site_put(pv_proxy *px, const struct pvc_msg *m) {
        pv_site *p = pv_site_find(px, m->id);
        if (!p) {
                if (px->n_sites >= PV_SITES_MAX || !(p = calloc(1, sizeof *p))) {
                        log_warn("proxy process: no room for preview %s", m->id);
                        return;
                }
                memcpy(p->id, m->id, SV_ID_LEN); /* pvc_recv checked it: SV_ID_LEN characters */
                p->next = px->sites;
                px->sites = p;
                px->n_sites++;
        }
        p->port = m->port;
        memcpy(p->token_hash, m->token_hash, sizeof p->token_hash);
}

static void site_drop(pv_proxy *px, const char *id) {
        pv_conns_close(px, id);
        for (pv_site **pp = &px->sites; *pp; pp = &(*pp)->next)
                if (!strcmp((*pp)->id, id)) {
                        pv_site *p = *pp;
                        *pp = p->next;
                        sodium_memzero(p, sizeof *p);
                        free(p);
                        px->n_sites--;
                        return;
                }
}

int pv_chan_send(pv_proxy *px, const struct pvc_msg *m) {
        return ns_outbox_send(&px->out, m, sizeof *m, NULL, 0);
}

/* The pair is over (relaypair.c freed it): tell the supervisor, with the bytes each way.  A
 * dropped tunnel is reported too: the supervisor may still want its bytes (an egress record). */
static void tunnel_ended(void *data, const uint64_t bytes[2], bool broken) {
        pv_tunnel *t = data;
        pv_proxy *px = t->px;
        struct pvc_msg m = { .op = PVC_TUNNEL_END, .dial = t->id, .bytes = { bytes[0], bytes[1] },
                             .error = broken ? ECONNRESET : 0 };
        if (pv_chan_send(px, &m) < 0)
                log_warn("proxy process: the end of tunnel %llu was not reported", (unsigned long long) t->id);
        if (t->prev)
                t->prev->next = t->next;
        else if (px->tunnels == t)
                px->tunnels = t->next;
        if (t->next)
                t->next->prev = t->prev;
        px->n_tunnels--;
        free(t);
}

static void tunnel_start(pv_proxy *px, uint64_t id, const int fds[2]) {
        pv_tunnel *t = px->n_tunnels < PV_TUNNELS_MAX ? calloc(1, sizeof *t) : NULL;
        if (!t) {
                close(fds[0]);
                close(fds[1]);
                struct pvc_msg m = { .op = PVC_TUNNEL_END, .dial = id, .error = ECONNRESET };
                (void) pv_chan_send(px, &m);
                return;
        }
        *t = (pv_tunnel){ .px = px, .id = id, .next = px->tunnels };
        if (px->tunnels)
                px->tunnels->prev = t;
        px->tunnels = t;
        px->n_tunnels++;
        /* On failure it has called tunnel_ended already, which reported and freed t. */
        t->pair = ns_relay_pair_start(px->loop, fds[0], fds[1], tunnel_ended, t);
}

static void tunnel_drop(pv_proxy *px, uint64_t id) {
        for (pv_tunnel *t = px->tunnels; t; t = t->next)
                if (t->id == id) {
                        ns_relay_pair_reset(t->pair); /* → tunnel_ended: its END, broken */
                        return;
                }
}

static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) w;
        pv_proxy *px = data;
        if (events & EPOLLOUT)
                (void) ns_outbox_flush(&px->out); /* an error: the supervisor is gone, its EOF ends the loop */
        for (int k = 0; k < 256; k++) {
                struct pvc_msg m;
                int got[2];
                int r = pvc_recv(fd, false, &m, got);
                if (r == -EAGAIN)
                        return;
                if (r == -EBADMSG) {
                        log_warn("proxy process: a malformed message from the supervisor, ignored");
                        continue;
                }
                if (r <= 0) { /* the supervisor is gone or stopping */
                        ns_loop_quit(loop);
                        return;
                }
                switch (m.op) {
                case PVC_PUT:
                        site_put(px, &m);
                        break;
                case PVC_DROP:
                        site_drop(px, m.id);
                        break;
                case PVC_DIALED:
                        pv_dialed(px, m.dial, got[0], m.error);
                        break;
                case PVC_TUNNEL:
                        tunnel_start(px, m.dial, got);
                        break;
                case PVC_TUNNEL_DROP:
                        tunnel_drop(px, m.dial);
                        break;
                }
        }
}

int pv_chan_attach(pv_proxy *px, ns_error *err) {
        if (!(px->chan_w = ns_loop_add(px->loop, px->chan, EPOLLIN, on_chan, px, err)))
                return -err->code;
        ns_outbox_init(&px->out, px->loop, px->chan_w, px->chan, PV_OUT_MAX);
        return 0;
}

static bool fd_is_socket(int fd, int type) {
        struct stat st;
        int t = 0;
        socklen_t tl = sizeof t;
        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) == 0 &&
               t == type;
}

int sv_preview_proxy_main(int argc, char **argv) {
        pid_t parent = 0;
        const char *domain = NULL;
        int level = NS_LOG_INFO;
        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--parent"))
                        parent = (pid_t) atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--domain"))
                        domain = argv[i + 1];
                else if (!strcmp(argv[i], "--log-level"))
                        level = atoi(argv[i + 1]);
        }
        ns_log_set_level(level);
        if (parent <= 0 || !fd_is_socket(PVC_CHAN_FD, SOCK_SEQPACKET)) {
                fprintf(stderr, "nightshift proxy-process: started by `nightshift serve` only (it needs its channel "
                                "as fd 4, and the preview listener as fd 3)\n");
                return 2;
        }
        bool previews = fd_is_socket(PVC_LISTEN_FD, SOCK_STREAM);
        (void) prctl(PR_SET_NAME, "ns-proxy", 0, 0, 0);
        /* Dies with the supervisor; the check after it covers a supervisor that died first. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
                return 0;
        /* Why not dumpable: no other process of the supervisor's user may ptrace it or read its
         * memory (the previews' token hashes, the browsers' traffic) through /proc. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                log_error("proxy process: PR_SET_DUMPABLE: %s", strerror(errno));
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        (void) setpriority(PRIO_PROCESS, 0, PV_PROXY_NICE);
        ns_error err = { 0 };
        size_t n_calls;
        const char *const *calls = sv_preview_proxy_calls(&n_calls);
        pv_proxy px = { .listen_fd = previews ? PVC_LISTEN_FD : -1, .chan = PVC_CHAN_FD, .domain = domain };
        if (sodium_init() < 0) {
                log_error("proxy process: libsodium did not initialise");
                return 1;
        }
        if (fcntl(px.chan, F_SETFL, O_NONBLOCK) < 0 || (previews && fcntl(px.listen_fd, F_SETFL, O_NONBLOCK) < 0)) {
                log_error("proxy process: fcntl: %s", strerror(errno));
                return 1;
        }
        if (ns_loop_new(&px.loop, &err) < 0 ||
            ns_seccomp_allow_only(calls, n_calls, &err) < 0 ||
            pv_chan_attach(&px, &err) < 0 ||
            (previews && !(px.listen_w = ns_loop_add(px.loop, px.listen_fd, EPOLLIN, pv_on_accept, &px, &err)))) {
                log_error("proxy process: %s", err.msg);
                return 1;
        }
        ns_loop_run(px.loop, NULL, NULL, NULL);
        /* The supervisor is gone or stopping: the browsers' connections close with the process. */
        _exit(0);
}
