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
#include "common/loop.h"
#include "common/relay.h"
#include "common/seccomp_allow.h"

#define RELAY_BURST 16                  /* buffers moved per direction per wake-up, for fairness */
#define RELAY_CHAN_BUF (4 * 1024 * 1024) /* each way: thousands of hand-overs in flight */
#define RELAY_CHAN_FD 3

typedef struct relay_conn relay_conn;

struct relay_end {
        relay_conn *c;
        int i;
};

/* One direction: bytes read from end `i` waiting to be written to end `1 - i`. */
struct relay_dir {
        ns_relay_dir r;
        bool shut;      /* the source said EOF and the destination got shutdown(SHUT_WR) */
};

struct relay_conn {
        struct relay_ctx *ctx;
        relay_conn *prev, *next;
        uint64_t sandbox, listener;
        int fd[2];              /* 0: accepted; 1: dialled */
        ns_watch *w[2];         /* NULL while nothing is wanted of that end */
        uint32_t mask[2];
        struct relay_end end[2];
        struct relay_dir d[2];  /* d[0]: accepted → dialled; d[1]: dialled → accepted */
};

struct relay_ctx {
        ns_loop *loop;
        int chan;
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
        /* The daemon reads its end promptly and its buffer holds thousands of these; should it
         * ever be full, the daemon counts one connection too many for a while (it is bounded
         * per sandbox, and reset when the relay is replaced). */
        (void) send(x->chan, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void conn_free(relay_conn *c, bool reset) {
        struct relay_ctx *x = c->ctx;
        for (int i = 0; i < 2; i++) {
                ns_loop_remove(x->loop, c->w[i]);
                if (reset) {
                        /* A relay that failed must not look like a clean end to either peer: an
                         * RST, not a FIN, so a truncated transfer is never taken for complete. */
                        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                        (void) setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                close(c->fd[i]);
                ns_relay_release(&c->d[i].r);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                x->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        end_report(x, c);
        free(c);
}

/* Pass on the source's EOF once everything before it is written.  Half-close: the other
 * direction keeps flowing. */
static void dir_finish(relay_conn *c, int i) {
        struct relay_dir *d = &c->d[i];
        if (d->r.eof && !d->shut && ns_relay_pending(&d->r) == 0) {
                (void) shutdown(c->fd[1 - i], SHUT_WR);
                d->shut = true;
                ns_relay_release(&d->r);
        }
}

/* Move what can be moved in direction i, at most RELAY_BURST reads.  Whatever state it stops in,
 * conn_update asks for exactly the event that lets it go on.  Returns 0, or -errno when the
 * connection is broken. */
static int dir_pump(relay_conn *c, int i) {
        struct relay_dir *d = &c->d[i];
        int r = 1;
        for (int burst = 0; burst < RELAY_BURST && !d->shut && r > 0; burst++) {
                if ((r = ns_relay_write(&d->r, c->fd[1 - i])) < 0 || d->r.eof)
                        break;
                if (r == 0) {
                        /* The destination is full: the source goes on into the pipe meanwhile. */
                        r = ns_relay_top_up(&d->r, c->fd[i]);
                        break;
                }
                /* read and written at once: a message that goes straight through is never
                 * buffered (no allocation per message, see relay.h) */
                ssize_t n = ns_relay_move(&d->r, c->fd[i], c->fd[1 - i]);
                if (n <= 0) {
                        r = (int) n;
                        break;
                }
                /* A short read drained the socket: wait for the next readiness rather than read
                 * again only to hear EAGAIN (level-triggered: nothing is lost). */
                if ((size_t) n < NS_RELAY_CHUNK && !d->r.bulk)
                        break;
        }
        if (r < 0)
                return r;
        dir_finish(c, i);
        return 0;
}

static void conn_update(relay_conn *c);

static void on_conn(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct relay_end *e = data;
        relay_conn *c = e->c;
        /* d[i] reads end i and writes end 1 - i: it can move when end i became readable or end
         * 1 - i writable (an error or hang-up: both, to see it).  Pumping only those spares a
         * read that would find nothing, a syscall per event. */
        uint32_t any = EPOLLERR | EPOLLHUP;
        for (int i = 0; i < 2; i++)
                if ((events & (any | (e->i == i ? EPOLLIN : EPOLLOUT))) && dir_pump(c, i) < 0) {
                        conn_free(c, true);
                        return;
                }
        if (c->d[0].shut && c->d[1].shut) {
                conn_free(c, false);
                return;
        }
        conn_update(c);
}

/* Register exactly the events the connection waits for.  An end nothing is wanted of has no
 * watcher at all, so a hung-up socket cannot wake the loop over and over. */
static void conn_update(relay_conn *c) {
        ns_loop *loop = c->ctx->loop;
        for (int k = 0; k < 2; k++) {
                uint32_t want = 0;
                if (ns_relay_wants_input(&c->d[k].r))
                        want |= EPOLLIN;
                if (ns_relay_pending(&c->d[1 - k].r) > 0)
                        want |= EPOLLOUT;
                if (want == 0) {
                        ns_loop_remove(loop, c->w[k]);
                        c->w[k] = NULL;
                } else if (!c->w[k]) {
                        c->w[k] = ns_loop_add(loop, c->fd[k], want, on_conn, &c->end[k], NULL);
                        if (!c->w[k]) {
                                conn_free(c, true);
                                return;
                        }
                } else if (want != c->mask[k] && ns_loop_modify(loop, c->w[k], want, NULL) < 0) {
                        conn_free(c, true);
                        return;
                }
                c->mask[k] = want;
        }
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
        *c = (relay_conn){ .ctx = x, .sandbox = m->sandbox, .listener = m->listener, .fd = { fds[0], fds[1] },
                           .next = x->conns };
        for (int i = 0; i < 2; i++) {
                c->end[i] = (struct relay_end){ .c = c, .i = i };
                ns_relay_init(&c->d[i].r);
        }
        if (x->conns)
                x->conns->prev = c;
        x->conns = c;
        /* Bytes may already wait on either end: look at both at once. */
        conn_update(c);
}

static void conns_drop(struct relay_ctx *x, const struct relay_msg *m) {
        for (relay_conn *c = x->conns, *next; c; c = next) {
                next = c->next;
                if (m->op == RELAY_DROP_SANDBOX ? c->sandbox == m->sandbox : c->listener == m->listener)
                        conn_free(c, true);
        }
}

/* The daemon's messages.  A message that is not exactly one relay_msg, or an ADD without exactly
 * two descriptors, is dropped with whatever descriptors came with it. */
static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct relay_ctx *x = data;
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
                size_t nfds = 0;
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t k2 = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t j = 0; j < k2; j++) {
                                int got;
                                memcpy(&got, CMSG_DATA(cm) + j * sizeof(int), sizeof got);
                                if (nfds < 2)
                                        fds[nfds] = got;
                                else
                                        close(got);
                                nfds++;
                        }
                }
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
        if (!ns_loop_add(x.loop, x.chan, EPOLLIN, on_chan, &x, &err))
                goto fail;
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
