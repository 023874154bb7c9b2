#include "sandboxd/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/cleanup.h"

#define PORTS_BUF 65536            /* bytes in flight per direction of a connection */
#define PORTS_BURST 16             /* buffers moved per direction per wakeup, for fairness */
#define PORTS_ACCEPT_BURST 64
#define PORTS_BACKLOG 128
#define PORTS_FD_RETRY_MS 100      /* out of descriptors: pause accepting this long */

typedef struct ports_sandbox ports_sandbox;
typedef struct ports_listener ports_listener;
typedef struct ports_conn ports_conn;

/* One direction of a connection: bytes read from end `i` waiting to be written to end `1 - i`. */
struct ports_dir {
        char *buf;      /* allocated while data moves, freed when the source runs dry */
        size_t len, off;
        bool eof;       /* the source said EOF */
        bool shut;      /* and the destination got shutdown(SHUT_WR) */
};

struct ports_end {
        ports_conn *c;
        int i;
};

struct ports_conn {
        ports_sandbox *sb;
        ports_conn *prev, *next;
        int fd[2];              /* 0: accepted inside the sandbox; 1: to the host service */
        ns_watch *w[2];         /* NULL while nothing is wanted of that end */
        uint32_t mask[2];
        struct ports_end end[2];
        struct ports_dir d[2];  /* d[0]: sandbox → host; d[1]: host → sandbox */
        bool connecting;        /* fd[1]'s non-blocking connect is in progress */
};

struct ports_listener {
        ports_sandbox *sb;
        ports_listener *next;
        int fd;
        ns_watch *w;            /* NULL while paused */
        uint16_t port, host_port;
};

struct ports_sandbox {
        ports_ctx *p;
        ports_sandbox *next;
        char id[NS_ID_MAX + 1];
        ports_listener *listeners; /* in the order added */
        size_t n_listeners;
        ports_conn *conns;
        size_t n_conns;
        bool dying;             /* being removed: no listener comes back to life */
};

struct ports_ctx {
        ns_loop *loop;
        int self_netns;         /* the daemon's own network namespace */
        struct stat self_ns_st;
        int timer_fd;           /* re-arms listeners paused for lack of descriptors */
        ns_watch *timer_w;
        ports_sandbox *sandboxes;
};

static void conn_update(ports_conn *c);
static void sandbox_resume(ports_sandbox *sb);

/* ---- connections ------------------------------------------------------------------------ */

static void conn_free(ports_conn *c, bool reset) {
        ports_sandbox *sb = c->sb;
        for (int i = 0; i < 2; i++) {
                ns_loop_remove(sb->p->loop, c->w[i]);
                if (c->fd[i] < 0)
                        continue;
                if (reset) {
                        /* A relay that failed must not look like a clean end to either peer: an
                         * RST, not a FIN, so a truncated transfer is never taken for complete. */
                        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                        (void) setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                close(c->fd[i]);
                free(c->d[i].buf);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                sb->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        sb->n_conns--;
        free(c);
        sandbox_resume(sb);
}

/* Pass on the source's EOF once everything before it is written.  Half-close: the other
 * direction keeps flowing. */
static void dir_finish(ports_conn *c, int i) {
        struct ports_dir *d = &c->d[i];
        if (d->eof && !d->shut && d->off == d->len) {
                (void) shutdown(c->fd[1 - i], SHUT_WR);
                d->shut = true;
                free(d->buf);
                d->buf = NULL;
        }
}

/* Move what can be moved in direction i, at most PORTS_BURST buffers.  Whatever state it stops
 * in, conn_update asks for exactly the event that lets it go on.  Returns 0, or -errno when the
 * connection is broken. */
static int dir_pump(ports_conn *c, int i) {
        struct ports_dir *d = &c->d[i];
        int src = c->fd[i], dst = c->fd[1 - i];
        for (int burst = 0; burst < PORTS_BURST && !d->shut; burst++) {
                if (d->off < d->len) {
                        ssize_t n = send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno == EAGAIN || errno == EWOULDBLOCK)
                                        break;
                                return -errno;
                        }
                        d->off += (size_t) n;
                        if (d->off == d->len)
                                d->off = d->len = 0;
                        continue;
                }
                if (d->eof)
                        break;
                if (!d->buf && !(d->buf = malloc(PORTS_BUF)))
                        return -ENOMEM;
                ssize_t n = recv(src, d->buf, PORTS_BUF, MSG_DONTWAIT);
                if (n > 0) {
                        d->len = (size_t) n;
                        d->off = 0;
                } else if (n == 0) {
                        d->eof = true;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        free(d->buf); /* idle: hold no buffer */
                        d->buf = NULL;
                        break;
                } else if (errno != EINTR) {
                        return -errno;
                }
        }
        dir_finish(c, i);
        return 0;
}

static void on_conn(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct ports_end *e = data;
        ports_conn *c = e->c;
        if (c->connecting) {
                if (e->i != 1)
                        return;
                int soerr = 0;
                socklen_t len = sizeof soerr;
                if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
                        conn_free(c, true); /* the host service refused: the sandbox sees a reset */
                        return;
                }
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                c->connecting = false;
        }
        for (int i = 0; i < 2; i++)
                if (dir_pump(c, i) < 0) {
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
static void conn_update(ports_conn *c) {
        ns_loop *loop = c->sb->p->loop;
        for (int k = 0; k < 2; k++) {
                uint32_t want = 0;
                if (!c->connecting && !c->d[k].eof && c->d[k].len == 0)
                        want |= EPOLLIN;
                if (c->d[1 - k].off < c->d[1 - k].len || (k == 1 && c->connecting))
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

static void conn_start(ports_sandbox *sb, int inside_fd, uint16_t host_port) {
        ports_conn *c = calloc(1, sizeof *c);
        if (!c) {
                close(inside_fd);
                return;
        }
        c->sb = sb;
        c->fd[0] = inside_fd;
        c->fd[1] = -1;
        for (int i = 0; i < 2; i++)
                c->end[i] = (struct ports_end){ .c = c, .i = i };
        c->next = sb->conns;
        if (sb->conns)
                sb->conns->prev = c;
        sb->conns = c;
        sb->n_conns++;

        /* This thread is in the daemon's own namespace (ports_connect_add always returns to it),
         * so this socket reaches the host's loopback, and only the one port configured. */
        c->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd[1] < 0) {
                conn_free(c, true);
                return;
        }
        int one = 1;
        for (int i = 0; i < 2; i++)
                (void) setsockopt(c->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(host_port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (connect(c->fd[1], (struct sockaddr *) &sa, sizeof sa) < 0) {
                if (errno != EINPROGRESS) {
                        conn_free(c, true);
                        return;
                }
                c->connecting = true;
        }
        conn_update(c);
}

/* ---- listeners -------------------------------------------------------------------------- */

static void on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);

static void listener_pause(ports_listener *l) {
        ns_loop_remove(l->sb->p->loop, l->w);
        l->w = NULL;
}

static void sandbox_resume(ports_sandbox *sb) {
        if (sb->dying || sb->n_conns >= PORTS_CONN_MAX)
                return;
        for (ports_listener *l = sb->listeners; l; l = l->next)
                if (!l->w)
                        l->w = ns_loop_add(sb->p->loop, l->fd, EPOLLIN, on_accept, l, NULL);
}

static void on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ports_listener *l = data;
        ports_sandbox *sb = l->sb;
        for (int i = 0; i < PORTS_ACCEPT_BURST; i++) {
                if (sb->n_conns >= PORTS_CONN_MAX) {
                        /* Bounded: stop accepting; further connections wait in the backlog
                         * until one of this sandbox's connections ends. */
                        for (ports_listener *o = sb->listeners; o; o = o->next)
                                listener_pause(o);
                        return;
                }
                int cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Level-triggered: retrying now would spin.  Try again shortly. */
                                listener_pause(l);
                                struct itimerspec its = { .it_value.tv_nsec = PORTS_FD_RETRY_MS * 1000000L };
                                (void) timerfd_settime(sb->p->timer_fd, 0, &its, NULL);
                        }
                        return;
                }
                conn_start(sb, cfd, l->host_port);
        }
}

static void on_timer(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ports_ctx *p = data;
        uint64_t ticks;
        (void) !read(fd, &ticks, sizeof ticks);
        for (ports_sandbox *sb = p->sandboxes; sb; sb = sb->next)
                sandbox_resume(sb);
}

/* ---- sandboxes -------------------------------------------------------------------------- */

static ports_sandbox *sandbox_find(ports_ctx *p, const char *id) {
        for (ports_sandbox *sb = p->sandboxes; sb; sb = sb->next)
                if (strcmp(sb->id, id) == 0)
                        return sb;
        return NULL;
}

static void sandbox_free(ports_sandbox *sb) {
        ports_ctx *p = sb->p;
        sb->dying = true;
        while (sb->conns)
                conn_free(sb->conns, true);
        while (sb->listeners) {
                ports_listener *l = sb->listeners;
                sb->listeners = l->next;
                ns_loop_remove(p->loop, l->w);
                close(l->fd);
                free(l);
        }
        for (ports_sandbox **pp = &p->sandboxes; *pp; pp = &(*pp)->next)
                if (*pp == sb) {
                        *pp = sb->next;
                        break;
                }
        free(sb);
}

/* A TCP socket created inside the network namespace `netns_fd`.  A socket belongs to the
 * namespace it was created in for good, so only socket() needs to run there. */
static int socket_in_netns(ports_ctx *p, int netns_fd, ns_error *err) {
        if (setns(netns_fd, CLONE_NEWNET) < 0)
                return ns_err_sys(err, errno == EINVAL ? EINVAL : errno, "enter the sandbox's network namespace");
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int e = errno;
        /* Why abort: a daemon thread left in a sandbox's namespace would make every later
         * "host" connection (this loop's relays included) land inside that sandbox, where the
         * sandbox could answer as the supervisor's proxies.  There is no safe way to go on. */
        if (setns(p->self_netns, CLONE_NEWNET) < 0)
                abort();
        if (fd < 0)
                return ns_err_sys(err, e, "socket in the sandbox's network namespace");
        return fd;
}

int ports_new(ns_loop *loop, ports_ctx **out, ns_error *err) {
        ports_ctx *p = calloc(1, sizeof *p);
        if (!p)
                return ns_err(err, ENOMEM, "out of memory");
        p->loop = loop;
        p->timer_fd = -1;
        int r;
        p->self_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (p->self_netns < 0 || fstat(p->self_netns, &p->self_ns_st) < 0) {
                r = ns_err_sys(err, errno, "open the daemon's network namespace");
                goto fail;
        }
        p->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (p->timer_fd < 0) {
                r = ns_err_sys(err, errno, "timerfd_create");
                goto fail;
        }
        p->timer_w = ns_loop_add(loop, p->timer_fd, EPOLLIN, on_timer, p, err);
        if (!p->timer_w) {
                r = -err->code;
                goto fail;
        }
        *out = p;
        return 0;
fail:
        if (p->timer_fd >= 0)
                close(p->timer_fd);
        if (p->self_netns >= 0)
                close(p->self_netns);
        free(p);
        return r;
}

void ports_free(ports_ctx *p) {
        if (!p)
                return;
        while (p->sandboxes)
                sandbox_free(p->sandboxes);
        ns_loop_remove(p->loop, p->timer_w);
        close(p->timer_fd);
        close(p->self_netns);
        free(p);
}

int ports_connect_add(ports_ctx *p, const char *sandbox_id, int netns_fd, uint16_t port, uint16_t host_port,
                      ns_error *err) {
        if (!sandbox_id || !ns_id_is_valid(sandbox_id))
                return ns_err(err, EINVAL, "bad sandbox id");
        if (port == 0 || host_port == 0)
                return ns_err(err, EINVAL, "port 0");
        struct stat st;
        if (netns_fd < 0 || fstat(netns_fd, &st) < 0)
                return ns_err(err, EINVAL, "bad network namespace descriptor");
        /* Why: a sandbox sharing the daemon's namespace would get a listener on the host's own
         * loopback, reachable by every local user; forwards only ever go into a sandbox. */
        if (st.st_dev == p->self_ns_st.st_dev && st.st_ino == p->self_ns_st.st_ino)
                return ns_err(err, EINVAL, "the sandbox shares the daemon's network namespace");

        ports_sandbox *sb = sandbox_find(p, sandbox_id);
        if (sb && sb->n_listeners >= PORTS_LISTENERS_MAX)
                return ns_err(err, E2BIG, "at most %d forwards per sandbox", PORTS_LISTENERS_MAX);

        _cleanup_close_ int fd = socket_in_netns(p, netns_fd, err);
        if (fd < 0)
                return fd;
        /* SO_REUSEADDR lets a restarted daemon bind again over TIME_WAIT leftovers.  It does not
         * let anyone share a live listener (that would need SO_REUSEPORT, which is never set), so
         * a process inside cannot steal the port from us, nor we from it: EADDRINUSE. */
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return ns_err_sys(err, errno, "bind 127.0.0.1:%u inside the sandbox", (unsigned) port);
        if (listen(fd, PORTS_BACKLOG) < 0)
                return ns_err_sys(err, errno, "listen on 127.0.0.1:%u inside the sandbox", (unsigned) port);

        bool new_sb = !sb;
        if (new_sb) {
                if (!(sb = calloc(1, sizeof *sb)))
                        return ns_err(err, ENOMEM, "out of memory");
                sb->p = p;
                snprintf(sb->id, sizeof sb->id, "%s", sandbox_id);
        }
        ports_listener *l = calloc(1, sizeof *l);
        if (!l) {
                if (new_sb)
                        free(sb);
                return ns_err(err, ENOMEM, "out of memory");
        }
        *l = (ports_listener){ .sb = sb, .fd = fd, .port = port, .host_port = host_port };
        if (sb->n_conns < PORTS_CONN_MAX) {
                l->w = ns_loop_add(p->loop, fd, EPOLLIN, on_accept, l, err);
                if (!l->w) {
                        free(l);
                        if (new_sb)
                                free(sb);
                        return -err->code;
                }
        }
        TAKE_FD(fd);
        ports_listener **tail = &sb->listeners;
        while (*tail)
                tail = &(*tail)->next;
        *tail = l;
        sb->n_listeners++;
        if (new_sb) {
                sb->next = p->sandboxes;
                p->sandboxes = sb;
        }
        return 0;
}

void ports_sandbox_remove(ports_ctx *p, const char *sandbox_id) {
        if (!p || !sandbox_id)
                return;
        ports_sandbox *sb = sandbox_find(p, sandbox_id);
        if (sb)
                sandbox_free(sb);
}

size_t ports_sandbox_list(ports_ctx *p, const char *sandbox_id, struct ns_connect *out, size_t cap) {
        ports_sandbox *sb = p && sandbox_id ? sandbox_find(p, sandbox_id) : NULL;
        size_t n = 0;
        for (ports_listener *l = sb ? sb->listeners : NULL; l; l = l->next, n++)
                if (n < cap)
                        out[n] = (struct ns_connect){ .port = l->port, .host_port = l->host_port };
        return n;
}
