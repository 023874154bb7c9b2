#include "sandboxd/init.h"

#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/loop.h"
#include "sandboxd/caps.h"
#include "sandboxd/initproto.h"
#include "sandboxd/proto.h"
#include "sandboxd/seccomp.h"

#define OUT_BUFFER_MAX (1u << 20) /* output kept per process until acknowledged */
#define IN_BUFFER_MAX (1u << 20)  /* stdin waiting for the process to read it */
#define DRAIN_AFTER_EXIT_MS 100   /* how long to wait for a grandchild holding the pipes open */
#define MAX_PROCS 4096
#define SPAWN_STACK (256u << 10)
#define EXITED_UNACKED_MAX 64 /* exited processes whose reader has not acknowledged the end */

struct chunk {
        struct chunk *next;
        uint64_t offset;
        uint32_t len;
        uint32_t stream;
        uint8_t data[];
};

struct proc {
        struct proc *next;
        struct initd *d;
        uint64_t id;
        pid_t pid;
        int pidfd;
        bool tty;
        bool tied; /* killed when its reader goes away (ICTL_EXEC_TIED) */
        int out_fd, err_fd, in_fd; /* -1 when closed; with a pty out_fd == the master, in_fd a dup */
        ns_watch *w_out, *w_err, *w_in;
        int timer_fd;
        ns_watch *w_timer;
        /* output: chunks cover [base, end) */
        struct chunk *head, *tail;
        uint64_t base, end, sent, lost_from, lost_len;
        size_t buffered;
        /* the attached reader */
        int stream_fd;
        ns_watch *w_stream;
        bool stream_wants_out;
        /* stdin */
        uint8_t *inbuf;
        size_t in_len;
        bool in_eof;
        /* exit */
        bool exited, timed_out, info_known, exit_sent;
        int wstatus;
        uint32_t extra_flags;
        uint64_t drain_deadline;
};

struct initd {
        ns_loop *loop;
        int ctl_fd, listen_fd, sig_fd;
        ns_watch *w_ctl;
        struct proc *procs;
        size_t n_procs;
        uint64_t max_proc; /* highest proc id ever started: a restarted sandboxd never reuses one */
        void *spawn_stack; /* the stack exec'd children start on (CLONE_VM) */
};

static bool proc_pump(struct proc *p);

/* ---- control socket ------------------------------------------------------------------------ */

static void ctl_send(struct initd *d, uint32_t type, uint32_t flags, uint64_t proc, uint64_t a, uint64_t b,
                     const void *payload, size_t len) {
        if (d->ctl_fd < 0)
                return;
        struct ictl_hdr h = { .type = type, .flags = flags, .proc = proc, .a = a, .b = b };
        struct iovec iov[2] = { { &h, sizeof h }, { (void *) payload, len } };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
        /* A blocking send: sandboxd reads promptly, and the socket buffer holds many messages. */
        while (sendmsg(d->ctl_fd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
                ;
}

static struct proc *proc_find(struct initd *d, uint64_t id) {
        for (struct proc *p = d->procs; p; p = p->next)
                if (p->id == id)
                        return p;
        return NULL;
}

static void proc_free(struct proc *p) {
        struct initd *d = p->d;
        for (struct proc **pp = &d->procs; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        d->n_procs--;
        ns_loop_remove(d->loop, p->w_out);
        ns_loop_remove(d->loop, p->w_err);
        ns_loop_remove(d->loop, p->w_in);
        ns_loop_remove(d->loop, p->w_timer);
        ns_loop_remove(d->loop, p->w_stream);
        if (p->out_fd >= 0)
                close(p->out_fd);
        if (p->err_fd >= 0)
                close(p->err_fd);
        if (p->in_fd >= 0)
                close(p->in_fd);
        if (p->timer_fd >= 0)
                close(p->timer_fd);
        if (p->stream_fd >= 0) {
                /* Closing a SOCK_SEQPACKET end with unread frames (a reader's last ACK) makes the
                 * reader's next recv fail with ECONNRESET before it sees our last frames: drain. */
                char sink[sizeof(struct ns_frame_hdr) + NS_FRAME_MAX_PAYLOAD];
                while (recv(p->stream_fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
                        ;
                close(p->stream_fd);
        }
        if (p->pidfd >= 0)
                close(p->pidfd);
        while (p->head) {
                struct chunk *c = p->head;
                p->head = c->next;
                free(c);
        }
        free(p->inbuf);
        free(p);
}

/* ---- output buffer --------------------------------------------------------------------------- */

static void on_output(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);
static void close_out(struct proc *p, bool err_stream);

/* Why a tied process waits rather than loses bytes: its reader takes every byte to the end (a
 * pack streamed into the supervisor's import), and a gap would corrupt what it makes.  Over the
 * budget its output is not read until the reader acknowledges some: the process blocks on its
 * writes.  Any other process's oldest bytes are dropped instead (a reader may not come back). */
static bool output_held(const struct proc *p) {
        return p->tied && p->buffered >= OUT_BUFFER_MAX;
}

/* Watch the process's output pipes unless output_held; called whenever `buffered` changed. */
static void output_watch(struct proc *p) {
        bool hold = output_held(p);
        for (int k = 0; k < 2; k++) {
                int fd = k ? p->err_fd : p->out_fd;
                ns_watch **w = k ? &p->w_err : &p->w_out;
                if (fd < 0)
                        continue;
                if (hold && *w) {
                        ns_loop_remove(p->d->loop, *w);
                        *w = NULL;
                } else if (!hold && !*w) {
                        *w = ns_loop_add(p->d->loop, fd, EPOLLIN, on_output, p, NULL); /* NULL: the next ACK retries */
                }
        }
}

static void buffer_trim_to(struct proc *p, uint64_t offset) {
        while (p->head && p->head->offset + p->head->len <= offset) {
                struct chunk *c = p->head;
                p->head = c->next;
                p->buffered -= c->len;
                free(c);
        }
        if (!p->head)
                p->tail = NULL;
        if (offset > p->base)
                p->base = offset < p->end ? offset : p->end;
}

static void buffer_append(struct proc *p, uint32_t stream, const uint8_t *data, size_t len) {
        struct chunk *c = malloc(sizeof *c + len);
        if (!c)
                return; /* out of memory inside the sandbox's own cgroup: the bytes are lost */
        c->next = NULL;
        c->offset = p->end;
        c->len = (uint32_t) len;
        c->stream = stream;
        memcpy(c->data, data, len);
        if (p->tail)
                p->tail->next = c;
        else
                p->head = c;
        p->tail = c;
        p->end += len;
        p->buffered += len;
        /* Over budget with no reader: drop the oldest bytes and remember the gap, which the next
         * reader is told about (an overflow is reported, never silent). */
        while (!p->tied && p->buffered > OUT_BUFFER_MAX && p->head && p->head != p->tail) {
                uint64_t drop_to = p->head->offset + p->head->len;
                if (p->sent < drop_to) {
                        if (p->lost_len == 0)
                                p->lost_from = p->sent > p->base ? p->sent : p->base;
                        p->lost_len = drop_to - p->lost_from;
                        p->sent = drop_to;
                }
                buffer_trim_to(p, drop_to);
        }
}

/* ---- the stream to the attached reader ---------------------------------------------------- */

static int stream_send(struct proc *p, uint32_t type, uint32_t stream, uint64_t offset, uint64_t value,
                       const void *payload, size_t len) {
        struct ns_frame_hdr h = { .type = type, .stream = stream, .offset = offset, .value = value };
        struct iovec iov[2] = { { &h, sizeof h }, { (void *) payload, len } };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
        ssize_t n = sendmsg(p->stream_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? 0 : -errno;
        return 1;
}

static void stream_detach(struct proc *p) {
        ns_loop_remove(p->d->loop, p->w_stream);
        p->w_stream = NULL;
        if (p->stream_fd >= 0)
                close(p->stream_fd);
        p->stream_fd = -1;
        p->stream_wants_out = false;
}

/* The reader went away: a hang-up or a broken stream, not a new attach that replaces it.  Why a
 * tied process dies with it: it was started for a caller that reads its output to the end (the
 * supervisor's commit).  Left running after that caller died, it would hold what it holds (git's
 * index.lock) against the caller's next attempt, with nobody left to read what it says. */
static void stream_lost(struct proc *p) {
        stream_detach(p);
        if (p->tied && !p->exited) {
                /* The group leader is our unreaped child, so its pgid cannot have been reused. */
                kill(-p->pid, SIGKILL);
                pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
        }
        if (p->tied) { /* nobody will read the rest: its output must not hold the record open */
                close_out(p, false);
                close_out(p, true);
        }
}

static void stream_want_out(struct proc *p, bool want) {
        if (p->w_stream && p->stream_wants_out != want) {
                p->stream_wants_out = want;
                ns_loop_modify(p->d->loop, p->w_stream, EPOLLIN | (want ? EPOLLOUT : 0), NULL);
        }
}

static bool proc_output_done(const struct proc *p) {
        return p->out_fd < 0 && p->err_fd < 0;
}

/* Send what the reader has not seen yet; then, once the process has exited, its output is drained
 * and sandboxd has said whether the OOM killer did it, the EXIT frame.  Returns true when that
 * completed the process and its record was freed. */
static bool stream_flush(struct proc *p) {
        if (p->stream_fd < 0)
                return false;
        int r;
        if (p->lost_len) {
                r = stream_send(p, NS_FRAME_LOST, 0, p->lost_from, p->lost_len, NULL, 0);
                if (r <= 0)
                        goto blocked;
                p->lost_len = 0;
        }
        for (struct chunk *c = p->head; c; c = c->next) {
                if (c->offset + c->len <= p->sent)
                        continue;
                uint64_t skip = p->sent > c->offset ? p->sent - c->offset : 0;
                r = stream_send(p, NS_FRAME_OUTPUT, c->stream, c->offset + skip, 0, c->data + skip, c->len - skip);
                if (r <= 0)
                        goto blocked;
                p->sent = c->offset + c->len;
        }
        if (p->exited && p->info_known && proc_output_done(p) && !p->exit_sent) {
                struct ns_frame_exit ex = { .code = -1 };
                if (WIFEXITED(p->wstatus))
                        ex.code = WEXITSTATUS(p->wstatus);
                else if (WIFSIGNALED(p->wstatus))
                        ex.signal = WTERMSIG(p->wstatus);
                ex.flags = p->extra_flags | (p->timed_out ? NS_EXIT_TIMEOUT : 0);
                r = stream_send(p, NS_FRAME_EXIT, 0, p->end, 0, &ex, sizeof ex);
                if (r <= 0)
                        goto blocked;
                p->exit_sent = true;
                /* The record stays until the reader acknowledges the end (it may die before it has
                 * read the frame, and attach again); a bounded number of such records is kept. */
                size_t unacked = 0;
                struct proc *oldest = NULL;
                for (struct proc *q = p->d->procs; q; q = q->next)
                        if (q->exit_sent) {
                                unacked++;
                                oldest = q; /* the list is newest first */
                        }
                if (unacked > EXITED_UNACKED_MAX && oldest && oldest != p)
                        proc_free(oldest);
        }
        stream_want_out(p, false);
        return false;
blocked:
        if (r < 0)
                stream_lost(p);
        else
                stream_want_out(p, true);
        return false;
}

static void stdin_flush(struct proc *p);

static void on_stream(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct proc *p = data;
        if ((events & EPOLLOUT) && (stream_flush(p) || p->stream_fd != fd))
                return; /* finished, or the reader went away */
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        /* Stop taking stdin while the process has not read what it already has. */
        if ((events & EPOLLIN) && p->in_len >= IN_BUFFER_MAX)
                return;
        uint8_t buf[sizeof(struct ns_frame_hdr) + NS_FRAME_MAX_PAYLOAD];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0 || (size_t) n > sizeof buf || (size_t) n < sizeof(struct ns_frame_hdr)) {
                stream_lost(p);
                return;
        }
        struct ns_frame_hdr h;
        memcpy(&h, buf, sizeof h);
        size_t len = (size_t) n - sizeof h;
        switch (h.type) {
        case NS_FRAME_STDIN:
                if (p->in_fd >= 0 && !p->in_eof && len) {
                        uint8_t *nb = realloc(p->inbuf, p->in_len + len);
                        if (!nb)
                                return;
                        p->inbuf = nb;
                        memcpy(p->inbuf + p->in_len, buf + sizeof h, len);
                        p->in_len += len;
                        stdin_flush(p);
                }
                break;
        case NS_FRAME_STDIN_EOF:
                p->in_eof = true;
                stdin_flush(p);
                break;
        case NS_FRAME_ACK:
                if (h.offset <= p->end)
                        buffer_trim_to(p, h.offset);
                if (p->exit_sent && h.offset >= p->end) {
                        proc_free(p); /* the reader has everything: the record's job is done */
                        return;
                }
                output_watch(p);
                return;
        case NS_FRAME_RESIZE:
                if (p->tty && p->out_fd >= 0) {
                        struct winsize ws = { .ws_row = (unsigned short) (h.value >> 16),
                                              .ws_col = (unsigned short) (h.value & 0xffff) };
                        if (ws.ws_row && ws.ws_col)
                                ioctl(p->out_fd, TIOCSWINSZ, &ws);
                }
                break;
        default:
                break; /* unknown frames are ignored: newer callers may send more */
        }
}

/* ---- process stdio --------------------------------------------------------------------------- */

static void close_in(struct proc *p) {
        ns_loop_remove(p->d->loop, p->w_in);
        p->w_in = NULL;
        if (p->in_fd >= 0)
                close(p->in_fd);
        p->in_fd = -1;
}

static void on_stdin_writable(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        stdin_flush(data);
}

static void stdin_flush(struct proc *p) {
        if (p->in_fd < 0)
                return;
        while (p->in_len) {
                ssize_t n = write(p->in_fd, p->inbuf, p->in_len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                if (!p->w_in)
                                        p->w_in = ns_loop_add(p->d->loop, p->in_fd, EPOLLOUT, on_stdin_writable, p, NULL);
                                return;
                        }
                        p->in_len = 0; /* EPIPE: the process closed its stdin */
                        close_in(p);
                        return;
                }
                memmove(p->inbuf, p->inbuf + n, p->in_len - (size_t) n);
                p->in_len -= (size_t) n;
        }
        if (p->w_in) {
                ns_loop_remove(p->d->loop, p->w_in);
                p->w_in = NULL;
        }
        if (p->in_eof && !p->tty)
                close_in(p);
}

static void close_out(struct proc *p, bool err_stream) {
        int *fd = err_stream ? &p->err_fd : &p->out_fd;
        ns_watch **w = err_stream ? &p->w_err : &p->w_out;
        ns_loop_remove(p->d->loop, *w);
        *w = NULL;
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* Read what is available; returns false at EOF. */
static bool drain_fd(struct proc *p, bool err_stream) {
        int fd = err_stream ? p->err_fd : p->out_fd;
        uint8_t buf[NS_FRAME_MAX_PAYLOAD];
        for (int i = 0; i < 16 && !output_held(p); i++) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n > 0) {
                        buffer_append(p, err_stream ? 2 : 1, buf, (size_t) n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return true;
                return false; /* EOF, or EIO on a pty whose last holder closed it */
        }
        return true;
}

static void on_output(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct proc *p = data;
        bool err_stream = fd == p->err_fd;
        if (!drain_fd(p, err_stream))
                close_out(p, err_stream);
        output_watch(p);
        proc_pump(p);
}

/* Push output to the reader and finish the process when everything is delivered; true when the
 * record was freed. */
static bool proc_pump(struct proc *p) {
        return stream_flush(p);
}

/* ---- exec --------------------------------------------------------------------------------- */

static const char *env_get(char **env, const char *key) {
        size_t kl = strlen(key);
        for (char **e = env; *e; e++)
                if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
                        return *e + kl + 1;
        return NULL;
}

/* execvpe() searches the PATH of the caller's environment, not of the new one: search ours. */
static int exec_search(const char *file, char **argv, char **env) {
        if (strchr(file, '/')) {
                execve(file, argv, env);
                return -errno;
        }
        const char *path = env_get(env, "PATH");
        if (!path)
                path = "/usr/local/bin:/usr/bin:/bin";
        int last = ENOENT;
        char buf[4096];
        while (*path) {
                const char *colon = strchr(path, ':');
                size_t len = colon ? (size_t) (colon - path) : strlen(path);
                if (len && len + strlen(file) + 2 < sizeof buf) {
                        memcpy(buf, path, len);
                        buf[len] = '/';
                        strcpy(buf + len + 1, file);
                        execve(buf, argv, env);
                        if (errno != ENOENT && errno != ENOTDIR)
                                last = errno;
                }
                path += len + (colon ? 1 : 0);
        }
        return -last;
}

struct exec_req {
        uint64_t id;
        bool root, tty, tied;
        uint64_t timeout_ms;
        uint16_t rows, cols;
        const char *cwd;
        char **argv, **env;
};

_Noreturn static void exec_child(struct initd *d, const struct exec_req *r, int in_fd, int out_fd, int err_fd,
                                 int pts_fd, int report_fd) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        /* init_run reset every disposition to the default once; SIGPIPE is the only one it has
         * changed since (an ignored signal would stay ignored across execve). */
        signal(SIGPIPE, SIG_DFL);
        int e = 0;
        const char *step = "setsid";
        if (setsid() < 0)
                goto fail;
        if (r->tty) {
                step = "controlling tty";
                if (ioctl(pts_fd, TIOCSCTTY, 0) < 0)
                        goto fail;
                in_fd = out_fd = err_fd = pts_fd;
        }
        step = "stdio";
        if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
                goto fail;
        if (dup2(report_fd, 3) < 0)
                goto fail;
        report_fd = 3;
        fcntl(report_fd, F_SETFD, FD_CLOEXEC);
        close_range(4, ~0u, 0);
        ns_error err;
        step = "rlimits";
        if (caps_set_rlimits(&err) < 0) {
                e = err.code;
                goto fail_e;
        }
        step = "identity";
        if (caps_enter_identity(r->root, &err) < 0) {
                e = err.code;
                goto fail_e;
        }
        step = "cwd";
        if (chdir(r->cwd) < 0)
                goto fail;
        step = "exec";
        e = -exec_search(r->argv[0], r->argv, r->env);
        goto fail_e;
fail:
        e = errno;
fail_e: {
        char msg[256];
        int n = snprintf(msg, sizeof msg, "%d %s", e ? e : EIO, step);
        (void) !write(report_fd, msg, (size_t) n);
        _exit(127);
}
}

struct spawn_args {
        struct initd *d;
        const struct exec_req *r;
        int in_fd, out_fd, err_fd, pts_fd, rep_r, rep_w;
};

static int spawn_main(void *arg) {
        struct spawn_args *a = arg;
        close(a->rep_r);
        exec_child(a->d, a->r, a->in_fd, a->out_fd, a->err_fd, a->pts_fd, a->rep_w);
}

static int set_nonblock(int fd) {
        int fl = fcntl(fd, F_GETFL);
        return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void on_timeout(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct proc *p = data;
        uint64_t n;
        (void) !read(fd, &n, sizeof n);
        ns_loop_remove(loop, p->w_timer);
        p->w_timer = NULL;
        if (!p->exited) {
                p->timed_out = true;
                /* The group leader is our unreaped child, so its pgid cannot have been reused. */
                kill(-p->pid, SIGKILL);
                pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
        }
}

static int exec_start(struct initd *d, const struct exec_req *r, int stream_fd, pid_t *pid_out, char *msg, size_t cap) {
        int in_p[2] = { -1, -1 }, out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, rep[2] = { -1, -1 };
        int master = -1, slave = -1, e = 0;
        if (pipe2(rep, O_CLOEXEC) < 0)
                return -errno;
        if (r->tty) {
                struct winsize ws = { .ws_row = r->rows ? r->rows : 24, .ws_col = r->cols ? r->cols : 80 };
                if (openpty(&master, &slave, NULL, NULL, &ws) < 0) {
                        e = errno;
                        goto out;
                }
                fcntl(master, F_SETFD, FD_CLOEXEC);
                fcntl(slave, F_SETFD, FD_CLOEXEC);
        } else if (pipe2(in_p, O_CLOEXEC) < 0 || pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0) {
                e = errno;
                goto out;
        }
        struct spawn_args sa = { .d = d, .r = r, .in_fd = in_p[0], .out_fd = out_p[1], .err_fd = err_p[1],
                                 .pts_fd = slave, .rep_r = rep[0], .rep_w = rep[1] };
        if (!d->spawn_stack) {
                d->spawn_stack = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
                if (d->spawn_stack == MAP_FAILED) {
                        d->spawn_stack = NULL;
                        e = ENOMEM;
                        goto out;
                }
        }
        /* vfork semantics: no copy of init's page tables, and init is suspended until the child has
         * exec'd or died, so the child may use the shared heap (init is single-threaded). */
#ifdef NS_SANITIZER_BUILD
        /* The sanitizer runtimes keep per-thread state that a CLONE_VM child corrupts (a child
         * dying with ASan's exit code 1 before its stdio is set up was seen): plain fork there. */
        pid_t pid = fork();
        if (pid == 0)
                spawn_main(&sa);
#else
        pid_t pid = clone(spawn_main, (char *) d->spawn_stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &sa);
#endif
        if (pid < 0) {
                e = errno;
                goto out;
        }
        close(rep[1]);
        rep[1] = -1;
        char buf[256];
        ssize_t n;
        while ((n = read(rep[0], buf, sizeof buf - 1)) < 0 && errno == EINTR)
                ;
        if (n > 0) {
                /* The child failed before exec; it exits 127 and is reaped by the SIGCHLD loop. */
                buf[n] = '\0';
                int code = atoi(buf);
                const char *step = strchr(buf, ' ');
                snprintf(msg, cap, "%s: %s", step ? step + 1 : "exec", strerror(code > 0 ? code : EIO));
                e = code > 0 ? code : EIO;
                goto out;
        }
        struct proc *p = calloc(1, sizeof *p);
        if (!p) {
                kill(pid, SIGKILL);
                e = ENOMEM;
                goto out;
        }
        *p = (struct proc){ .d = d, .id = r->id, .pid = pid, .tty = r->tty, .tied = r->tied, .pidfd = pidfd_open(pid, 0),
                            .out_fd = -1, .err_fd = -1, .in_fd = -1, .timer_fd = -1, .stream_fd = stream_fd };
        if (r->tty) {
                p->out_fd = TAKE_FD(master);
                p->in_fd = fcntl(p->out_fd, F_DUPFD_CLOEXEC, 3);
        } else {
                p->out_fd = TAKE_FD(out_p[0]);
                p->err_fd = TAKE_FD(err_p[0]);
                p->in_fd = TAKE_FD(in_p[1]);
        }
        set_nonblock(p->out_fd);
        if (p->err_fd >= 0)
                set_nonblock(p->err_fd);
        set_nonblock(p->in_fd);
        p->w_out = ns_loop_add(d->loop, p->out_fd, EPOLLIN, on_output, p, NULL);
        if (p->err_fd >= 0)
                p->w_err = ns_loop_add(d->loop, p->err_fd, EPOLLIN, on_output, p, NULL);
        p->w_stream = ns_loop_add(d->loop, stream_fd, EPOLLIN, on_stream, p, NULL);
        if (r->timeout_ms) {
                p->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                struct itimerspec its = { .it_value = { .tv_sec = (time_t) (r->timeout_ms / 1000),
                                                        .tv_nsec = (long) (r->timeout_ms % 1000) * 1000000 } };
                if (p->timer_fd >= 0 && timerfd_settime(p->timer_fd, 0, &its, NULL) == 0)
                        p->w_timer = ns_loop_add(d->loop, p->timer_fd, EPOLLIN, on_timeout, p, NULL);
        }
        p->next = d->procs;
        d->procs = p;
        d->n_procs++;
        *pid_out = pid;
out:
        for (int i = 0; i < 2; i++) {
                if (in_p[i] >= 0)
                        close(in_p[i]);
                if (out_p[i] >= 0)
                        close(out_p[i]);
                if (err_p[i] >= 0)
                        close(err_p[i]);
                if (rep[i] >= 0)
                        close(rep[i]);
        }
        if (master >= 0)
                close(master);
        if (slave >= 0)
                close(slave);
        return -e;
}

/* Split the EXEC payload into cwd, argv and env, checking every count and terminator. */
static int parse_exec(const struct ictl_hdr *h, char *payload, size_t len, struct exec_req *r) {
        if (len < sizeof(struct ictl_exec))
                return -EINVAL;
        struct ictl_exec ex;
        memcpy(&ex, payload, sizeof ex);
        if (ex.argc < 1 || ex.argc > NS_ARGV_MAX || ex.envc > NS_ENV_MAX)
                return -EINVAL;
        char *s = payload + sizeof ex, *end = payload + len;
        size_t total = 1 + ex.argc + ex.envc;
        char **strs = calloc(total + 2, sizeof *strs);
        if (!strs)
                return -ENOMEM;
        for (size_t i = 0; i < total; i++) {
                char *nul = memchr(s, '\0', (size_t) (end - s));
                if (!nul) {
                        free(strs);
                        return -EINVAL;
                }
                strs[i] = s;
                s = nul + 1;
        }
        /* strs = [cwd, argv..., NULL?]: rebuild as two NULL-terminated arrays in one allocation */
        char **v = calloc(ex.argc + ex.envc + 2, sizeof *v);
        if (!v) {
                free(strs);
                return -ENOMEM;
        }
        r->cwd = strs[0];
        memcpy(v, strs + 1, ex.argc * sizeof *v);
        v[ex.argc] = NULL;
        memcpy(v + ex.argc + 1, strs + 1 + ex.argc, ex.envc * sizeof *v);
        v[ex.argc + 1 + ex.envc] = NULL;
        free(strs);
        r->argv = v;
        r->env = v + ex.argc + 1;
        r->id = h->proc;
        r->root = h->flags & ICTL_EXEC_ROOT;
        r->tty = h->flags & ICTL_EXEC_TTY;
        r->tied = h->flags & ICTL_EXEC_TIED;
        r->timeout_ms = h->a;
        r->rows = (uint16_t) (h->b >> 16);
        r->cols = (uint16_t) (h->b & 0xffff);
        return 0;
}

static void report_exit(struct initd *d, struct proc *p) {
        ctl_send(d, ICTL_EXITED, 0, p->id, (uint64_t) p->wstatus, p->timed_out ? NS_EXIT_TIMEOUT : 0, NULL, 0);
}

static void handle_ctl(struct initd *d, const struct ictl_hdr *h, char *payload, size_t len, int fd) {
        struct proc *p;
        switch (h->type) {
        case ICTL_HELLO:
                for (p = d->procs; p; p = p->next)
                        ctl_send(d, ICTL_PROC, (p->exited ? ICTL_PROC_EXITED : 0) | (p->timed_out ? ICTL_PROC_TIMED_OUT : 0),
                                 p->id, (uint64_t) p->pid, (uint64_t) p->wstatus, NULL, 0);
                ctl_send(d, ICTL_HELLO_DONE, 0, 0, d->max_proc, 0, NULL, 0);
                break;
        case ICTL_EXEC: {
                char msg[200] = "";
                pid_t pid = 0;
                struct exec_req r = { 0 };
                int e;
                if (fd < 0 || proc_find(d, h->proc) || d->n_procs >= MAX_PROCS)
                        e = fd < 0 ? -EBADF : proc_find(d, h->proc) ? -EEXIST : -EAGAIN;
                else if ((e = parse_exec(h, payload, len, &r)) == 0) {
                        e = exec_start(d, &r, fd, &pid, msg, sizeof msg);
                        if (e == 0)
                                fd = -1; /* the proc owns it now */
                }
                if (h->proc > d->max_proc) {
                        d->max_proc = h->proc;
                }
                free(r.argv);
                if (e < 0)
                        ctl_send(d, ICTL_EXEC_FAIL, 0, h->proc, (uint64_t) -e, 0, msg, strlen(msg));
                else
                        ctl_send(d, ICTL_EXEC_OK, 0, h->proc, (uint64_t) pid, 0, NULL, 0);
                break;
        }
        case ICTL_ATTACH:
                p = proc_find(d, h->proc);
                if (!p || fd < 0) {
                        ctl_send(d, ICTL_ATTACH_FAIL, 0, h->proc, p ? EBADF : ENOENT, 0, NULL, 0);
                        break;
                }
                stream_detach(p);
                p->stream_fd = fd;
                fd = -1;
                p->w_stream = ns_loop_add(d->loop, p->stream_fd, EPOLLIN, on_stream, p, NULL);
                /* Resume exactly at `from`: what is below it was consumed by an earlier reader. */
                if (h->a < p->base) {
                        p->lost_from = h->a;
                        p->lost_len = p->base - h->a;
                        p->sent = p->base;
                } else {
                        p->lost_len = 0;
                        p->sent = h->a < p->end ? h->a : p->end;
                        buffer_trim_to(p, p->sent);
                }
                /* A reader that died after the EXIT frame was sent but before it acknowledged the
                 * end (a supervisor killed as the turn ended) attaches again: it must hear it. */
                p->exit_sent = false;
                ctl_send(d, ICTL_ATTACH_OK, 0, h->proc, 0, 0, NULL, 0);
                stream_flush(p);
                break;
        case ICTL_SIGNAL:
                p = proc_find(d, h->proc);
                if (!p || p->exited || h->a < 1 || h->a > 64) {
                        ctl_send(d, ICTL_SIGNAL_FAIL, 0, h->proc, p ? (p->exited ? ESRCH : EINVAL) : ENOENT, 0, NULL, 0);
                        break;
                }
                if (pidfd_send_signal(p->pidfd, (int) h->a, NULL, 0) < 0)
                        ctl_send(d, ICTL_SIGNAL_FAIL, 0, h->proc, (uint64_t) errno, 0, NULL, 0);
                else
                        ctl_send(d, ICTL_SIGNAL_OK, 0, h->proc, 0, 0, NULL, 0);
                break;
        case ICTL_EXIT_INFO:
                p = proc_find(d, h->proc);
                if (p && p->exited) {
                        p->extra_flags = (uint32_t) h->a & NS_EXIT_OOM;
                        p->info_known = true;
                        proc_pump(p);
                }
                break;
        default:
                break;
        }
        if (fd >= 0)
                close(fd);
}

static void ctl_drop(struct initd *d) {
        ns_loop_remove(d->loop, d->w_ctl);
        d->w_ctl = NULL;
        close(d->ctl_fd);
        d->ctl_fd = -1;
}

static void on_ctl(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct initd *d = data;
        char buf[ICTL_MAX_MSG];
        union {
                struct cmsghdr c;
                char b[CMSG_SPACE(sizeof(int) * 2)];
        } cbuf;
        struct iovec iov = { buf, sizeof buf };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        int rfd = -1, extra = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *fds = (int *) CMSG_DATA(c);
                        for (size_t i = 0; i < nfd; i++) {
                                if (rfd < 0)
                                        rfd = fds[i];
                                else {
                                        close(fds[i]);
                                        extra++;
                                }
                        }
                }
        if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || extra || (size_t) n < sizeof(struct ictl_hdr)) {
                if (rfd >= 0)
                        close(rfd);
                if (n <= 0)
                        ctl_drop(d);
                return;
        }
        struct ictl_hdr h;
        memcpy(&h, buf, sizeof h);
        handle_ctl(d, &h, buf + sizeof h, (size_t) n - sizeof h, rfd);
}

static void on_listen(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct initd *d = data;
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0)
                return;
        /* A (re)started sandboxd: the newest controller replaces the old one. */
        if (d->ctl_fd >= 0)
                ctl_drop(d);
        int fl = fcntl(c, F_GETFL);
        fcntl(c, F_SETFL, fl & ~O_NONBLOCK);
        d->ctl_fd = c;
        d->w_ctl = ns_loop_add(loop, c, EPOLLIN, on_ctl, d, NULL);
        /* Exits that happened while nobody listened are reported again after HELLO. */
        for (struct proc *p = d->procs; p; p = p->next)
                if (p->exited && !p->info_known)
                        report_exit(d, p);
}

static void on_sigchld(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct initd *d = data;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof si) > 0)
                ;
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG | __WALL);
                if (pid <= 0)
                        break;
                for (struct proc *p = d->procs; p; p = p->next)
                        if (p->pid == pid && !p->exited) {
                                p->exited = true;
                                p->wstatus = status;
                                /* Only a SIGKILL can be the OOM killer's: for anything else the exit
                                 * is complete without sandboxd's word on it. */
                                if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
                                        p->info_known = true;
                                p->drain_deadline = ns_now_ms() + DRAIN_AFTER_EXIT_MS;
                                ns_loop_remove(loop, p->w_timer);
                                p->w_timer = NULL;
                                /* Take what is already in the pipes before reporting the exit. */
                                if (p->out_fd >= 0 && !drain_fd(p, false))
                                        close_out(p, false);
                                if (p->err_fd >= 0 && !drain_fd(p, true))
                                        close_out(p, true);
                                report_exit(d, p);
                                if (p->info_known)
                                        proc_pump(p);
                                break;
                        }
        }
}

static int next_timeout(void *data) {
        struct initd *d = data;
        uint64_t now = ns_now_ms(), best = UINT64_MAX;
        for (struct proc *p = d->procs; p; p = p->next)
                if (p->exited && !proc_output_done(p) && p->drain_deadline < best)
                        best = p->drain_deadline;
        if (best == UINT64_MAX)
                return -1;
        return best <= now ? 0 : (int) (best - now);
}

static void tick(void *data) {
        struct initd *d = data;
        uint64_t now = ns_now_ms();
        struct proc *p = d->procs;
        while (p) {
                struct proc *next = p->next;
                /* A grandchild that keeps the pipes open does not hold the exit report hostage. */
                if (p->exited && !proc_output_done(p) && p->drain_deadline <= now) {
                        close_out(p, false);
                        close_out(p, true);
                        proc_pump(p);
                }
                p = next;
        }
}

_Noreturn void init_run(const struct init_config *cfg) {
        struct initd d = { .ctl_fd = cfg->ctl_fd, .listen_fd = cfg->listen_fd };
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        /* Whatever sandboxd inherited (a SIGINT ignored by a shell...) goes now, once, so that each
         * exec'd process starts with default dispositions without 64 syscalls per exec; from
         * here on init changes SIGPIPE only (exec_child restores it).  Keep the two in step. */
        for (int s = 1; s < NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        signal(s, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        d.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (d.sig_fd < 0 || ns_loop_new(&d.loop, NULL) < 0)
                _exit(1);
        if (!ns_loop_add(d.loop, d.sig_fd, EPOLLIN, on_sigchld, &d, NULL) ||
            !(d.w_ctl = ns_loop_add(d.loop, d.ctl_fd, EPOLLIN, on_ctl, &d, NULL)) ||
            !ns_loop_add(d.loop, d.listen_fd, EPOLLIN, on_listen, &d, NULL))
                _exit(1);
        ctl_send(&d, ICTL_READY, 0, 0, ICTL_VERSION, 0, NULL, 0);
        ns_loop_run(d.loop, next_timeout, tick, &d);
        _exit(0);
}
