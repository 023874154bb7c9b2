/* nightshift supervisor — the preview proxy process (`nightshift preview-proxy`, started by the
 * supervisor: preview_proc.c; the channel: preview_chan.h; the connections: preview_proxy.c).
 *
 * It confines itself before it serves anything: nice 10 (its relays then move bytes in batches
 * instead of preempting the dev server and the browser on every segment, and an agent's load
 * cannot starve the supervisor's loop through it), not dumpable, dying with the supervisor, and a
 * seccomp allow-list with nothing that opens a file, makes or dials a socket, changes identity or
 * executes.  What it holds is the listener, the channel, and the previews' ids, ports and token
 * hashes: never a token, a credential, or the database. */
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
#include "common/seccomp_allow.h"
#include "preview.h"
#include "preview_proxy.h"

#define PV_PROXY_NICE 10
#define PV_SITES_MAX 4096

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
                        log_warn("preview proxy: no room for preview %s", m->id);
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

static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) w, (void) events;
        pv_proxy *px = data;
        for (int k = 0; k < 256; k++) {
                struct pvc_msg m;
                int got;
                int r = pvc_recv(fd, false, &m, &got);
                if (r == -EAGAIN)
                        return;
                if (r == -EBADMSG) {
                        log_warn("preview proxy: a malformed message from the supervisor, ignored");
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
                        pv_dialed(px, m.dial, got, m.error);
                        break;
                }
        }
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
        if (parent <= 0 || !fd_is_socket(PVC_LISTEN_FD, SOCK_STREAM) || !fd_is_socket(PVC_CHAN_FD, SOCK_SEQPACKET)) {
                fprintf(stderr, "nightshift preview-proxy: started by `nightshift serve` only (it needs the preview "
                                "listener as fd 3 and its channel as fd 4)\n");
                return 2;
        }
        (void) prctl(PR_SET_NAME, "ns-preview", 0, 0, 0);
        /* Dies with the supervisor; the check after it covers a supervisor that died first. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
                return 0;
        /* Why not dumpable: no other process of the supervisor's user may ptrace it or read its
         * memory (the previews' token hashes, the browsers' traffic) through /proc. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                log_error("preview proxy: PR_SET_DUMPABLE: %s", strerror(errno));
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        (void) setpriority(PRIO_PROCESS, 0, PV_PROXY_NICE);
        ns_error err = { 0 };
        size_t n_calls;
        (void) sv_preview_proxy_calls(&n_calls);
        pv_proxy px = { .listen_fd = PVC_LISTEN_FD, .chan = PVC_CHAN_FD, .domain = domain };
        if (sodium_init() < 0) {
                log_error("preview proxy: libsodium did not initialise");
                return 1;
        }
        if (fcntl(px.chan, F_SETFL, O_NONBLOCK) < 0 || fcntl(px.listen_fd, F_SETFL, O_NONBLOCK) < 0) {
                log_error("preview proxy: fcntl: %s", strerror(errno));
                return 1;
        }
        if (ns_loop_new(&px.loop, &err) < 0 ||
            ns_seccomp_allow_only(proxy_calls, n_calls, &err) < 0 ||
            !ns_loop_add(px.loop, px.chan, EPOLLIN, on_chan, &px, &err) ||
            !(px.listen_w = ns_loop_add(px.loop, px.listen_fd, EPOLLIN, pv_on_accept, &px, &err))) {
                log_error("preview proxy: %s", err.msg);
                return 1;
        }
        ns_loop_run(px.loop, NULL, NULL, NULL);
        /* The supervisor is gone or stopping: the browsers' connections close with the process. */
        _exit(0);
}
