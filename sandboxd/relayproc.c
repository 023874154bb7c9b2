#include "sandboxd/relayproc.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdpass.h"
#include "common/loop.h"
#include "common/outbox.h"
#include "common/relaypair.h"
#include "common/seccomp_allow.h"

#define RELAY_CHAN_BUF (4 * 1024 * 1024) /* each way: thousands of hand-overs in flight */
#define RELAY_CHAN_FD 3
#define RELAY_OUT_MAX 65536 /* ENDs waiting for a daemon that does not read: past it, lost */

typedef struct relay_conn relay_conn;

/* A connection handed over: its relay, and the keys its END is reported with. */
struct relay_conn {
        struct relay_ctx *ctx;
        relay_conn *prev, *next;
        uint64_t sandbox, listener;
        ns_relay_pair *pair;    /* fd[0]: accepted; fd[1]: dialled */
};

struct relay_ctx {
        ns_loop *loop;
        int chan;
        ns_watch *chan_w;
        ns_outbox out; /* ENDs the channel had no room for, in order */
        relay_conn *conns;
};

/* The calls a relay makes: the loop, the channel, the relay itself (relay.c), memory, exit.
 * Nothing that opens a file, makes a socket, dials, changes identity or executes. */
static const char *const relay_calls[] = {
        "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "splice", "pipe2",
        "fcntl", "setsockopt", "getsockopt", "shutdown", "close", "epoll_wait", "epoll_pwait", "epoll_pwait2",
        "epoll_ctl", "mmap", "munmap", "mremap", "madvise", "brk", "futex", "clock_gettime", "gettimeofday",
        "getpid", "gettid", "rt_sigreturn", "rt_sigprocmask", "sigaltstack", "restart_syscall", "exit",
        "exit_group",
};

static void end_report(struct relay_ctx *x, const relay_conn *c) {
        struct relay_msg m = { .op = RELAY_END, .sandbox = c->sandbox, .listener = c->listener };
        /* An END the channel has no room for waits in the outbox: lost, the daemon would count
         * a connection that is gone against the sandbox's bound until the relay is replaced.
         * Should even the outbox be full, that is what happens (and nothing worse). */
        (void) ns_outbox_send(&x->out, &m, sizeof m, NULL, 0);
}

/* The pair is over (relaypair.c freed it): report the END and forget the connection. */
static void conn_ended(void *data, const uint64_t bytes[2], bool broken) {
        (void) bytes, (void) broken;
        relay_conn *c = data;
        struct relay_ctx *x = c->ctx;
        if (c->prev)
                c->prev->next = c->next;
        else if (x->conns == c)
                x->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        end_report(x, c);
        free(c);
}

static void conn_add(struct relay_ctx *x, const struct relay_msg *m, const int fds[2]) {
        relay_conn *c = calloc(1, sizeof *c);
        if (!c) {
                struct relay_conn tmp = { .ctx = x, .sandbox = m->sandbox, .listener = m->listener };
                close(fds[0]);
                close(fds[1]);
                end_report(x, &tmp);
                return;
        }
        *c = (relay_conn){ .ctx = x, .sandbox = m->sandbox, .listener = m->listener, .next = x->conns };
        if (x->conns)
                x->conns->prev = c;
        x->conns = c;
        /* On failure it has called conn_ended already, which unlinked and freed c. */
        c->pair = ns_relay_pair_start(x->loop, fds[0], fds[1], conn_ended, c);
}

static void conns_drop(struct relay_ctx *x, const struct relay_msg *m) {
        for (relay_conn *c = x->conns, *next; c; c = next) {
                next = c->next;
                if (m->op == RELAY_DROP_SANDBOX ? c->sandbox == m->sandbox : c->listener == m->listener)
                        ns_relay_pair_reset(c->pair); /* → conn_ended */
        }
}

/* The daemon's messages.  A message that is not exactly one relay_msg, or an ADD without exactly
 * two descriptors, is dropped with whatever descriptors came with it. */
static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct relay_ctx *x = data;
        if (events & EPOLLOUT)
                (void) ns_outbox_flush(&x->out); /* an error: the daemon is gone; its EOF ends the loop */
        for (int k = 0; k < 64; k++) {
                struct relay_msg m;
                struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int) * 2)];
                } control;
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                                     .msg_controllen = sizeof control.buf };
                ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        return;
                if (n <= 0) { /* the daemon is gone */
                        ns_loop_quit(loop);
                        return;
                }
                int fds[2] = { -1, -1 };
                size_t nfds = ns_take_fds(&mh, fds, 2);
                bool whole = n == (ssize_t) sizeof m && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
                if (whole && m.op == RELAY_ADD && nfds == 2) {
                        conn_add(x, &m, fds);
                        continue;
                }
                for (size_t j = 0; j < nfds && j < 2; j++)
                        close(fds[j]);
                if (whole && nfds == 0 && (m.op == RELAY_DROP_SANDBOX || m.op == RELAY_DROP_LISTENER))
                        conns_drop(x, &m);
        }
}

/* Become nobody with no capability.  Where uid 65534 is not mapped (a daemon in a user namespace
 * that maps only root) the process keeps its uid and empties its capability sets instead. */
static int drop_identity(ns_error *err) {
        if (setgroups(0, NULL) < 0 && errno != EPERM)
                return ns_err_sys(err, errno, "setgroups");
        if (setresgid(RELAYPROC_UID, RELAYPROC_UID, RELAYPROC_UID) == 0 &&
            setresuid(RELAYPROC_UID, RELAYPROC_UID, RELAYPROC_UID) == 0)
                return 0;
        if (errno != EINVAL)
                return ns_err_sys(err, errno, "setresuid(%d)", RELAYPROC_UID);
        cap_t none = cap_init();
        int r = none ? cap_set_proc(none) : -1;
        int e = errno;
        if (none)
                cap_free(none);
        return r < 0 ? ns_err_sys(err, e, "drop capabilities") : 0;
}

static _Noreturn void child_main(int chan, pid_t parent) {
        ns_error err = { 0 };
        (void) prctl(PR_SET_NAME, RELAYPROC_NAME, 0, 0, 0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* Nothing of the daemon's: only the channel (and stdio, for the journal). */
        if (chan != RELAY_CHAN_FD && dup2(chan, RELAY_CHAN_FD) < 0)
                _exit(70);
        if (syscall(SYS_close_range, RELAY_CHAN_FD + 1, ~0U, 0) < 0)
                _exit(70);
        (void) setpriority(PRIO_PROCESS, 0, RELAYPROC_NICE);
        if (drop_identity(&err) < 0)
                goto fail;
        /* Not dumpable: another process of uid nobody cannot ptrace it and take its sockets.  The
         * parent-death signal after the uid change, which clears it. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
                ns_err_sys(&err, errno, "prctl");
                goto fail;
        }
        if (getppid() != parent)
                _exit(0);
        struct relay_ctx x = { .chan = RELAY_CHAN_FD };
        if (ns_loop_new(&x.loop, &err) < 0)
                goto fail;
        if (ns_seccomp_allow_only(relay_calls, sizeof relay_calls / sizeof relay_calls[0], &err) < 0)
                goto fail;
        if (!(x.chan_w = ns_loop_add(x.loop, x.chan, EPOLLIN, on_chan, &x, &err)))
                goto fail;
        ns_outbox_init(&x.out, x.loop, x.chan_w, x.chan, RELAY_OUT_MAX);
        ns_loop_run(x.loop, NULL, NULL, NULL);
        _exit(0);
fail:
        dprintf(STDERR_FILENO, "%s: %s\n", RELAYPROC_NAME, err.msg);
        _exit(71);
}

int relayproc_spawn(int *chan, int *pidfd, ns_error *err) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return ns_err_sys(err, errno, "socketpair for the relay process");
        _cleanup_close_ int mine = sv[0], theirs = sv[1];
        int size = RELAY_CHAN_BUF;
        for (int i = 0; i < 2; i++) /* root: beyond net.core.wmem_max; best effort otherwise */
                if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
                        (void) setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
                return ns_err_sys(err, errno, "fork the relay process");
        if (pid == 0) {
                close(mine);
                child_main(theirs, parent);
        }
        int pfd = pidfd_open(pid, 0);
        if (pfd < 0) {
                int e = errno;
                kill(pid, SIGKILL);
                return ns_err_sys(err, e, "pidfd_open of the relay process");
        }
        if (fcntl(mine, F_SETFL, O_NONBLOCK) < 0) {
                int e = errno;
                pidfd_send_signal(pfd, SIGKILL, NULL, 0);
                close(pfd);
                return ns_err_sys(err, e, "relay channel");
        }
        *pidfd = pfd;
        *chan = TAKE_FD(mine);
        return 0;
}
