#include "sandboxd/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/pidfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "sandboxd/relayproc.h"

#define PORTS_ACCEPT_BURST 64
#define PORTS_BACKLOG 128
#define PORTS_FD_RETRY_MS 100      /* out of descriptors: pause accepting this long */
#define PORTS_RELAY_RETRY_MS 1000  /* the relay process could not be started: try again after */
#define PORTS_CTL_WAIT_MS 1000     /* a full channel for a drop: wait this long, then replace the relay */

typedef struct ports_sandbox ports_sandbox;
typedef struct ports_listener ports_listener;
typedef struct ports_conn ports_conn;

/* A connection while its far end is being dialled.  Once both ends are connected it is handed to
 * the relay process (relayproc.h) and nothing of it stays here but the sandbox's count. */
struct ports_conn {
        ports_sandbox *sb;
        ports_listener *l;      /* accepted on it; the connection dies with it */
        ports_conn *prev, *next;
        int fd[2];              /* 0: accepted (inside for connect, on the host for publish); 1: dialled */
        ns_watch *w;            /* fd[1] while its non-blocking connect is in progress */
        bool connecting;
        bool tried_v6;          /* publish: 127.0.0.1 refused, [::1] dialled instead */
};

struct ports_listener {
        ports_sandbox *sb;
        ports_listener *next;
        uint64_t key;           /* names it to the relay process */
        int fd;
        ns_watch *w;            /* NULL while paused */
        bool publish;           /* listens on the host, dials inside; else the reverse */
        int netns_fd;           /* publish: the sandbox's network namespace (owned), else -1 */
        uint16_t port, host_port;
        char *host_path;        /* a connector to a host Unix socket (then host_port is 0), else NULL */
        uid_t host_uid;         /* ... which must be owned by this uid (the sandbox's owner) */
};

struct ports_sandbox {
        ports_ctx *p;
        ports_sandbox *next;
        uint64_t key;           /* names it to the relay process */
        char id[NS_ID_MAX + 1];
        ports_listener *listeners; /* in the order added */
        size_t n_listeners;
        ports_conn *conns;      /* being dialled */
        size_t n_conns;         /* live: being dialled, and handed to the relay until it reports the end */
        bool dying;             /* being removed: no listener comes back to life */
};

struct ports_ctx {
        ns_loop *loop;
        int self_netns;         /* the daemon's own network namespace */
        struct stat self_ns_st;
        int timer_fd;           /* re-arms listeners paused for lack of descriptors */
        ns_watch *timer_w;
        ports_sandbox *sandboxes;
        struct in_addr publish_addr;    /* host address publish listeners bind */
        uint16_t publish_lo, publish_hi;
        uint16_t publish_next;          /* where the next automatic pick starts */
        uint64_t next_key;
        int relay_chan;                 /* the relay process's channel, -1 while there is none */
        int relay_pidfd;
        ns_watch *relay_w;
        uint64_t relay_retry_ms;        /* no new relay process before this */
};

static void conn_update(ports_conn *c);
static void sandbox_resume(ports_sandbox *sb);
static bool conn_redial(ports_conn *c, int e);
static void relay_stop(ports_ctx *p);
static void relay_drop(ports_ctx *p, uint32_t op, uint64_t key);
static int relay_start(ports_ctx *p, ns_error *err);

/* ---- connections ------------------------------------------------------------------------ */

static void conn_unlink(ports_conn *c) {
        ports_sandbox *sb = c->sb;
        ns_loop_remove(sb->p->loop, c->w);
        c->w = NULL;
        if (c->prev)
                c->prev->next = c->next;
        else
                sb->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
}

static void conn_free(ports_conn *c, bool reset) {
        ports_sandbox *sb = c->sb;
        ns_loop_remove(sb->p->loop, c->w);
        c->w = NULL;
        for (int i = 0; i < 2; i++) {
                if (c->fd[i] < 0)
                        continue;
                if (reset) {
                        /* A connection that could not be relayed must not look like a clean end
                         * to its peer: an RST, not a FIN. */
                        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                        (void) setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                close(c->fd[i]);
        }
        conn_unlink(c);
        sb->n_conns--;
        sandbox_resume(sb);
}

/* Both ends are connected: give them to the relay process, which from now on owns the bytes.
 * Without a relay process (it could not be started) the connection is reset. */
static void conn_hand_over(ports_conn *c) {
        ports_ctx *p = c->sb->p;
        ns_error e = { 0 };
        if (p->relay_chan < 0 && ns_now_ms() >= p->relay_retry_ms && relay_start(p, &e) < 0) {
                log_error("%s: %s", RELAYPROC_NAME, e.msg);
                p->relay_retry_ms = ns_now_ms() + PORTS_RELAY_RETRY_MS;
        }
        struct relay_msg m = { .op = RELAY_ADD, .sandbox = c->sb->key, .listener = c->l->key };
        struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
        if (p->relay_chan < 0 || ns_send_fds(p->relay_chan, &iov, 1, c->fd, 2, MSG_DONTWAIT) < 0) {
                conn_free(c, true);
                return;
        }
        /* The watch first: an epoll registration outlives close() while another process holds
         * the file, and this loop must never hear of these sockets again. */
        int fds[2] = { c->fd[0], c->fd[1] };
        conn_unlink(c); /* still counted in n_conns until the relay reports its end */
        close(fds[0]);
        close(fds[1]);
}

static void on_conn(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ports_conn *c = data;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
                if (conn_redial(c, soerr))
                        conn_update(c);
                return;
        }
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                conn_hand_over(c);
}

/* While the dial is in progress, wait for it; once it is done, hand the connection over. */
static void conn_update(ports_conn *c) {
        if (c->w) {
                ns_loop_remove(c->sb->p->loop, c->w);
                c->w = NULL;
        }
        if (c->fd[1] < 0)
                return;
        if (!c->connecting) {
                conn_hand_over(c);
                return;
        }
        c->w = ns_loop_add(c->sb->p->loop, c->fd[1], EPOLLOUT, on_conn, c, NULL);
        if (!c->w)
                conn_free(c, true);
}

static int socket_in_netns(ports_ctx *p, int netns_fd, int family, ns_error *err);

int ports_host_socket_open(const char *path, uid_t owner, ns_error *err) {
        int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "host socket %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int e = errno;
                close(fd);
                return ns_err_sys(err, e, "host socket %s", path);
        }
        if (!S_ISSOCK(st.st_mode)) {
                close(fd);
                return ns_err(err, ENOTSOCK, "host_path %s is not a Unix socket", path);
        }
        /* Why the owner: sandboxd is root and would reach any socket on the host (a container
         * engine's, the init system's); a sandbox may be pointed only at sockets its owner owns. */
        if (st.st_uid != owner) {
                close(fd);
                return ns_err(err, EACCES, "host_path %s is not owned by the sandbox's owner (uid %u)", path,
                              (unsigned) owner);
        }
        return fd;
}

/* A connector's dial to its host Unix socket, checked again on every connection (what the path
 * names may have changed since) through the O_PATH descriptor of what was checked: connect()
 * through /proc/self/fd dials that very inode.  Returns 0 or -errno. */
static int conn_dial_unix(ports_conn *c) {
        _cleanup_close_ int target = ports_host_socket_open(c->l->host_path, c->l->host_uid, NULL);
        if (target < 0)
                return target;
        c->fd[1] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd[1] < 0)
                return -errno;
        struct sockaddr_un su = { .sun_family = AF_UNIX };
        snprintf(su.sun_path, sizeof su.sun_path, "/proc/self/fd/%d", target);
        c->connecting = false;
        if (connect(c->fd[1], (struct sockaddr *) &su, sizeof su) < 0)
                return errno == EAGAIN ? -ECONNREFUSED : -errno; /* EAGAIN: its backlog is full */
        return 0;
}

/* Start dialling the connection's far end: for a connector the host service on 127.0.0.1 in the
 * daemon's own namespace; for a publish the sandbox's port on its loopback, from a socket made in
 * its namespace (which reaches a server bound to 0.0.0.0 as well as one bound to 127.0.0.1 only),
 * over IPv6 ([::1]) when `v6`.  Returns 0 or -errno. */
static int conn_dial(ports_conn *c, bool v6) {
        ports_listener *l = c->l;
        if (c->fd[1] >= 0) {
                ns_loop_remove(c->sb->p->loop, c->w);
                c->w = NULL;
                close(c->fd[1]);
        }
        if (l->host_path)
                return conn_dial_unix(c);
        int family = v6 ? AF_INET6 : AF_INET;
        /* This thread is in the daemon's own namespace (every setns here returns to it), so a
         * connector's socket reaches the host's loopback, and only the one port configured. */
        int fd = l->publish ? socket_in_netns(c->sb->p, l->netns_fd, family, NULL)
                            : socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                c->fd[1] = -1;
                return l->publish ? fd : -errno;
        }
        c->fd[1] = fd;
        int one = 1;
        (void) setsockopt(c->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint16_t port = l->publish ? l->port : l->host_port;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        int r = v6 ? connect(c->fd[1], (struct sockaddr *) &sa6, sizeof sa6)
                   : connect(c->fd[1], (struct sockaddr *) &sa, sizeof sa);
        c->connecting = false;
        if (r < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                c->connecting = true;
        }
        return 0;
}

/* The dial failed with `e`: a publish whose server is not on 127.0.0.1 tries [::1] once (dev
 * servers that resolve "localhost" to ::1 listen there only); anything else resets the accepted
 * end.  Returns true when the connection lives on. */
static bool conn_redial(ports_conn *c, int e) {
        if (c->l->publish && !c->tried_v6 && e == ECONNREFUSED) {
                c->tried_v6 = true;
                if (conn_dial(c, true) == 0)
                        return true;
        }
        conn_free(c, true); /* refused: the peer sees a reset */
        return false;
}

static void conn_start(ports_listener *l, int accepted_fd) {
        ports_sandbox *sb = l->sb;
        ports_conn *c = calloc(1, sizeof *c);
        if (!c) {
                close(accepted_fd);
                return;
        }
        c->sb = sb;
        c->l = l;
        c->fd[0] = accepted_fd;
        c->fd[1] = -1;
        c->next = sb->conns;
        if (sb->conns)
                sb->conns->prev = c;
        sb->conns = c;
        sb->n_conns++;

        int one = 1;
        (void) setsockopt(c->fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = conn_dial(c, false);
        if (r < 0 && !conn_redial(c, -r))
                return;
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
                conn_start(l, cfd);
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

static void listener_close(ports_listener *l) {
        ns_loop_remove(l->sb->p->loop, l->w);
        close(l->fd);
        if (l->netns_fd >= 0)
                close(l->netns_fd);
        free(l->host_path);
        free(l);
}

static void sandbox_free(ports_sandbox *sb) {
        ports_ctx *p = sb->p;
        sb->dying = true;
        while (sb->conns)
                conn_free(sb->conns, true);
        relay_drop(p, RELAY_DROP_SANDBOX, sb->key);
        while (sb->listeners) {
                ports_listener *l = sb->listeners;
                sb->listeners = l->next;
                listener_close(l);
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
static int socket_in_netns(ports_ctx *p, int netns_fd, int family, ns_error *err) {
        if (setns(netns_fd, CLONE_NEWNET) < 0)
                return ns_err_sys(err, errno == EINVAL ? EINVAL : errno, "enter the sandbox's network namespace");
        int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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

/* ---- the relay process ------------------------------------------------------------------- */

static ports_sandbox *sandbox_by_key(ports_ctx *p, uint64_t key) {
        for (ports_sandbox *sb = p->sandboxes; sb; sb = sb->next)
                if (sb->key == key)
                        return sb;
        return NULL;
}

/* The sandbox's connections still being dialled here (the others are the relay process's). */
static size_t n_dialling(const ports_sandbox *sb) {
        size_t n = 0;
        for (const ports_conn *c = sb->conns; c; c = c->next)
                n++;
        return n;
}

/* Every connection handed over died with the relay process (or is about to): none is counted. */
static void relay_forget(ports_ctx *p) {
        for (ports_sandbox *sb = p->sandboxes; sb; sb = sb->next) {
                sb->n_conns = n_dialling(sb);
                sandbox_resume(sb);
        }
}

/* What the relay process says.  It runs as nobody and is trusted with nothing: an END is only a
 * count going down (never below what is being dialled here), for a key that may be long gone. */
static void on_relay(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ports_ctx *p = data;
        for (int k = 0; k < 256; k++) {
                struct relay_msg m;
                ssize_t n = recv(fd, &m, sizeof m, MSG_DONTWAIT);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        return;
                if (n <= 0) {
                        log_warn("%s: the relay process ended; its connections are gone; starting another",
                                 RELAYPROC_NAME);
                        relay_stop(p);
                        relay_forget(p);
                        ns_error e = { 0 };
                        if (relay_start(p, &e) < 0) {
                                log_error("%s: %s", RELAYPROC_NAME, e.msg);
                                p->relay_retry_ms = ns_now_ms() + PORTS_RELAY_RETRY_MS;
                        }
                        return;
                }
                if (n != (ssize_t) sizeof m || m.op != RELAY_END)
                        continue;
                ports_sandbox *sb = sandbox_by_key(p, m.sandbox);
                if (!sb)
                        continue;
                if (sb->n_conns > n_dialling(sb))
                        sb->n_conns--;
                sandbox_resume(sb);
        }
}

static int relay_start(ports_ctx *p, ns_error *err) {
        int r = relayproc_spawn(&p->relay_chan, &p->relay_pidfd, err);
        if (r < 0) {
                p->relay_chan = p->relay_pidfd = -1;
                return r;
        }
        p->relay_w = ns_loop_add(p->loop, p->relay_chan, EPOLLIN, on_relay, p, err);
        if (!p->relay_w) {
                r = -err->code;
                relay_stop(p);
                return r;
        }
        return 0;
}

/* Kill the relay process (if it still runs) and reap it unless the daemon's SIGCHLD handler did. */
static void relay_stop(ports_ctx *p) {
        ns_loop_remove(p->loop, p->relay_w);
        p->relay_w = NULL;
        if (p->relay_chan >= 0)
                close(p->relay_chan);
        p->relay_chan = -1;
        if (p->relay_pidfd >= 0) {
                (void) pidfd_send_signal(p->relay_pidfd, SIGKILL, NULL, 0);
                siginfo_t si;
                (void) waitid(P_PIDFD, (id_t) p->relay_pidfd, &si, WEXITED);
                close(p->relay_pidfd);
        }
        p->relay_pidfd = -1;
}

/* Tell the relay process to reset a sandbox's or a listener's connections.  This must not be
 * lost (destroy promises that no connection outlives it): on a full channel, wait a moment; if it
 * is still full, replace the relay process, which resets every connection. */
static void relay_drop(ports_ctx *p, uint32_t op, uint64_t key) {
        if (p->relay_chan < 0)
                return;
        struct relay_msg m = { .op = op, .sandbox = key, .listener = key };
        if (send(p->relay_chan, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t) sizeof m)
                return;
        struct pollfd pfd = { .fd = p->relay_chan, .events = POLLOUT };
        if (errno == EAGAIN && poll(&pfd, 1, PORTS_CTL_WAIT_MS) == 1 &&
            send(p->relay_chan, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t) sizeof m)
                return;
        relay_stop(p);
        relay_forget(p);
        p->relay_retry_ms = 0; /* the next connection starts another */
}

int ports_new(ns_loop *loop, ports_ctx **out, ns_error *err) {
        ports_ctx *p = calloc(1, sizeof *p);
        if (!p)
                return ns_err(err, ENOMEM, "out of memory");
        p->loop = loop;
        p->timer_fd = -1;
        p->relay_chan = p->relay_pidfd = -1;
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
        if ((r = relay_start(p, err)) < 0)
                goto fail;
        *out = p;
        return 0;
fail:
        ns_loop_remove(loop, p->timer_w);
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
        relay_stop(p);
        ns_loop_remove(p->loop, p->timer_w);
        close(p->timer_fd);
        close(p->self_netns);
        free(p);
}

void ports_close_inherited(ports_ctx *p) {
        if (!p)
                return;
        if (p->relay_chan >= 0)
                close(p->relay_chan);
        if (p->relay_pidfd >= 0)
                close(p->relay_pidfd);
        p->relay_chan = p->relay_pidfd = -1;
}

/* A descriptor of a sandbox's network namespace that is not the daemon's own. */
static int check_netns(ports_ctx *p, int netns_fd, ns_error *err) {
        struct stat st;
        if (netns_fd < 0 || fstat(netns_fd, &st) < 0)
                return ns_err(err, EINVAL, "bad network namespace descriptor");
        /* Why: a sandbox sharing the daemon's namespace would get a listener on the host's own
         * loopback, reachable by every local user, and a publish (or a dial) would reach the
         * host's own ports; forwards only ever go into a sandbox. */
        if (st.st_dev == p->self_ns_st.st_dev && st.st_ino == p->self_ns_st.st_ino)
                return ns_err(err, EINVAL, "the sandbox shares the daemon's network namespace");
        return 0;
}

/* Checks shared by both directions: a valid id and check_netns. */
static int check_target(ports_ctx *p, const char *sandbox_id, int netns_fd, ns_error *err) {
        if (!sandbox_id || !ns_id_is_valid(sandbox_id))
                return ns_err(err, EINVAL, "bad sandbox id");
        return check_netns(p, netns_fd, err);
}

static size_t count_kind(const ports_sandbox *sb, bool publish) {
        size_t n = 0;
        for (const ports_listener *l = sb ? sb->listeners : NULL; l; l = l->next)
                n += l->publish == publish;
        return n;
}

static ports_listener *find_publish(ports_sandbox *sb, uint16_t port) {
        for (ports_listener *l = sb ? sb->listeners : NULL; l; l = l->next)
                if (l->publish && l->port == port)
                        return l;
        return NULL;
}

/* Take ownership of the bound, listening `fd` as a listener of the sandbox (made on first use);
 * the listener goes to *out when `out` is not NULL.  On error `fd` is still the caller's. */
static int listener_add(ports_ctx *p, const char *sandbox_id, int fd, bool publish, int netns_fd, uint16_t port,
                        uint16_t host_port, ports_listener **out, ns_error *err) {
        ports_sandbox *sb = sandbox_find(p, sandbox_id);
        bool new_sb = !sb;
        if (new_sb) {
                if (!(sb = calloc(1, sizeof *sb)))
                        return ns_err(err, ENOMEM, "out of memory");
                sb->p = p;
                sb->key = ++p->next_key;
                snprintf(sb->id, sizeof sb->id, "%s", sandbox_id);
        }
        ports_listener *l = calloc(1, sizeof *l);
        if (!l) {
                if (new_sb)
                        free(sb);
                return ns_err(err, ENOMEM, "out of memory");
        }
        *l = (ports_listener){ .sb = sb, .key = ++p->next_key, .fd = fd, .publish = publish, .netns_fd = -1,
                               .port = port, .host_port = host_port };
        if (publish && (l->netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
                int e = errno;
                free(l);
                if (new_sb)
                        free(sb);
                return ns_err_sys(err, e, "dup the network namespace descriptor");
        }
        if (sb->n_conns < PORTS_CONN_MAX) {
                l->w = ns_loop_add(p->loop, fd, EPOLLIN, on_accept, l, err);
                if (!l->w) {
                        if (l->netns_fd >= 0)
                                close(l->netns_fd);
                        free(l);
                        if (new_sb)
                                free(sb);
                        return -err->code;
                }
        }
        ports_listener **tail = &sb->listeners;
        while (*tail)
                tail = &(*tail)->next;
        *tail = l;
        sb->n_listeners++;
        if (new_sb) {
                sb->next = p->sandboxes;
                p->sandboxes = sb;
        }
        if (out)
                *out = l;
        return 0;
}

int ports_connect_add(ports_ctx *p, const char *sandbox_id, int netns_fd, const struct ns_connect *spec, uid_t owner,
                      ns_error *err) {
        int r = check_target(p, sandbox_id, netns_fd, err);
        if (r < 0)
                return r;
        uint16_t port = spec->port, host_port = spec->host_port;
        if (port == 0 || (host_port == 0 && !spec->host_path[0]))
                return ns_err(err, EINVAL, "port 0");
        if (spec->host_path[0] && spec->host_path[0] != '/')
                return ns_err(err, EINVAL, "host_path must be absolute");
        _cleanup_free_ char *host_path = spec->host_path[0] ? strdup(spec->host_path) : NULL;
        if (spec->host_path[0] && !host_path)
                return ns_err(err, ENOMEM, "out of memory");
        ports_sandbox *sb = sandbox_find(p, sandbox_id);
        if (count_kind(sb, false) >= NS_CONNECTS_MAX)
                return ns_err(err, E2BIG, "at most %d forwards per sandbox", NS_CONNECTS_MAX);

        _cleanup_close_ int fd = socket_in_netns(p, netns_fd, AF_INET, err);
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
        ports_listener *l;
        if ((r = listener_add(p, sandbox_id, fd, false, -1, port, host_port, &l, err)) < 0)
                return r;
        TAKE_FD(fd);
        l->host_path = TAKE_PTR(host_path);
        l->host_uid = owner;
        return 0;
}

void ports_publish_config(ports_ctx *p, struct in_addr addr, uint16_t lo, uint16_t hi) {
        p->publish_addr = addr;
        p->publish_lo = lo;
        p->publish_hi = hi;
        p->publish_next = lo;
}

/* A host socket listening on publish_addr:port, or -errno (EADDRINUSE: taken). */
static int publish_listen(ports_ctx *p, uint16_t port, ns_error *err) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return ns_err_sys(err, errno, "socket");
        /* As for connectors: TIME_WAIT leftovers only, never a live listener of someone else's. */
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = p->publish_addr };
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &p->publish_addr, a, sizeof a);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                if (errno == EADDRINUSE)
                        return ns_err(err, EADDRINUSE, "host port %s:%u is already in use", a, (unsigned) port);
                return ns_err_sys(err, errno, "bind %s:%u", a, (unsigned) port);
        }
        if (listen(fd, PORTS_BACKLOG) < 0)
                return ns_err_sys(err, errno, "listen on %s:%u", a, (unsigned) port);
        return TAKE_FD(fd);
}

/* One non-blocking connect from inside the namespace; -ECONNREFUSED when the refusal is already
 * known (on loopback a closed port answers with a reset before connect() returns to us). */
static int dial_once(ports_ctx *p, int netns_fd, bool v6, uint16_t port, ns_error *err) {
        _cleanup_close_ int fd = socket_in_netns(p, netns_fd, v6 ? AF_INET6 : AF_INET, err);
        if (fd < 0)
                return fd;
        int one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        int r = v6 ? connect(fd, (struct sockaddr *) &sa6, sizeof sa6) : connect(fd, (struct sockaddr *) &sa, sizeof sa);
        if (r < 0 && errno != EINPROGRESS)
                return ns_err_sys(err, errno, "connect to port %u inside the sandbox", (unsigned) port);
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r < 0 && poll(&pfd, 1, 0) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
                return ns_err(err, soerr, "connect to port %u inside the sandbox: %s", (unsigned) port, strerror(soerr));
        return TAKE_FD(fd);
}

int ports_dial(ports_ctx *p, int netns_fd, uint16_t port, ns_error *err) {
        int r = check_netns(p, netns_fd, err);
        if (r < 0)
                return r;
        if (port == 0)
                return ns_err(err, EINVAL, "port 0");
        r = dial_once(p, netns_fd, false, port, err);
        if (r == -ECONNREFUSED)
                r = dial_once(p, netns_fd, true, port, err);
        return r;
}

int ports_publish_add(ports_ctx *p, const char *sandbox_id, int netns_fd, uint16_t port, uint16_t host_port,
                      uint16_t *out_host_port, ns_error *err) {
        int r = check_target(p, sandbox_id, netns_fd, err);
        if (r < 0)
                return r;
        if (port == 0)
                return ns_err(err, EINVAL, "port 0");
        if (p->publish_lo == 0 || p->publish_hi < p->publish_lo)
                return ns_err(err, EOPNOTSUPP, "publishing is not configured");
        if (host_port && (host_port < p->publish_lo || host_port > p->publish_hi))
                return ns_err(err, ERANGE, "host port %u is outside the publish range %u-%u", (unsigned) host_port,
                              (unsigned) p->publish_lo, (unsigned) p->publish_hi);
        ports_sandbox *sb = sandbox_find(p, sandbox_id);
        if (find_publish(sb, port))
                return ns_err(err, EEXIST, "port %u is already published", (unsigned) port);
        if (count_kind(sb, true) >= NS_PUBLISH_MAX)
                return ns_err(err, E2BIG, "at most %d published ports per sandbox", NS_PUBLISH_MAX);

        _cleanup_close_ int fd = -1;
        if (host_port) {
                if ((fd = publish_listen(p, host_port, err)) < 0)
                        return fd;
        } else {
                /* The first free port of the range from a moving cursor, so that a port just given
                 * up is not handed to the next sandbox at once. */
                uint32_t span = (uint32_t) p->publish_hi - p->publish_lo + 1;
                for (uint32_t k = 0; k < span && fd < 0; k++) {
                        uint16_t cand = p->publish_next;
                        p->publish_next = cand >= p->publish_hi ? p->publish_lo : (uint16_t) (cand + 1);
                        fd = publish_listen(p, cand, err);
                        if (fd >= 0)
                                host_port = cand;
                        else if (fd != -EADDRINUSE)
                                return fd;
                }
                if (fd < 0)
                        return ns_err(err, EADDRINUSE, "no free host port in %u-%u", (unsigned) p->publish_lo,
                                      (unsigned) p->publish_hi);
        }
        if ((r = listener_add(p, sandbox_id, fd, true, netns_fd, port, host_port, NULL, err)) < 0)
                return r;
        TAKE_FD(fd);
        if (out_host_port)
                *out_host_port = host_port;
        return 0;
}

int ports_publish_remove(ports_ctx *p, const char *sandbox_id, uint16_t port, ns_error *err) {
        ports_sandbox *sb = sandbox_id ? sandbox_find(p, sandbox_id) : NULL;
        ports_listener *l = find_publish(sb, port);
        if (!l)
                return ns_err(err, ENOENT, "port %u is not published", (unsigned) port);
        for (ports_conn *c = sb->conns, *next; c; c = next) {
                next = c->next;
                if (c->l == l)
                        conn_free(c, true);
        }
        relay_drop(p, RELAY_DROP_LISTENER, l->key);
        for (ports_listener **pp = &sb->listeners; *pp; pp = &(*pp)->next)
                if (*pp == l) {
                        *pp = l->next;
                        break;
                }
        sb->n_listeners--;
        listener_close(l);
        return 0;
}

size_t ports_publish_list(ports_ctx *p, const char *sandbox_id, struct ns_publish *out, size_t cap) {
        ports_sandbox *sb = p && sandbox_id ? sandbox_find(p, sandbox_id) : NULL;
        size_t n = 0;
        for (ports_listener *l = sb ? sb->listeners : NULL; l; l = l->next)
                if (l->publish) {
                        if (n < cap)
                                out[n] = (struct ns_publish){ .port = l->port, .host_port = l->host_port };
                        n++;
                }
        return n;
}

const char *ports_publish_addr(ports_ctx *p, char buf[static 16]) {
        return inet_ntop(AF_INET, &p->publish_addr, buf, 16);
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
        for (ports_listener *l = sb ? sb->listeners : NULL; l; l = l->next)
                if (!l->publish) {
                        if (n < cap) {
                                out[n] = (struct ns_connect){ .port = l->port, .host_port = l->host_port };
                                if (l->host_path)
                                        snprintf(out[n].host_path, sizeof out[n].host_path, "%s", l->host_path);
                        }
                        n++;
                }
        return n;
}

/* One /proc/net/tcp{,6} table: add each LISTEN socket's local port to out[] (deduplicated). */
static void listening_table(int proc_fd, const char *name, uint16_t *out, size_t cap, size_t *n) {
        int fd = openat(proc_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        FILE *f = fdopen(fd, "re");
        if (!f) {
                close(fd);
                return;
        }
        char line[512];
        /* The kernel writes this table; still, every line is parsed within its bounds and lines
         * too long for the buffer are skipped whole. */
        bool first = true, partial = false;
        while (fgets(line, sizeof line, f)) {
                bool whole = strchr(line, '\n') != NULL;
                bool skip = partial || first;
                partial = !whole;
                first = false;
                if (skip)
                        continue;
                unsigned port, st;
                char addr[65];
                if (sscanf(line, " %*u: %64[0-9A-Fa-f]:%4x %*[0-9A-Fa-f]:%*4x %2x", addr, &port, &st) != 3)
                        continue;
                if (st != 0x0A || port == 0 || port > 65535) /* TCP_LISTEN */
                        continue;
                size_t k = 0;
                while (k < *n && out[k] != port)
                        k++;
                if (k == *n && *n < cap)
                        out[(*n)++] = (uint16_t) port;
        }
        fclose(f);
}

static int cmp_u16(const void *a, const void *b) {
        return (int) *(const uint16_t *) a - (int) *(const uint16_t *) b;
}

size_t ports_listening(int proc_fd, uint16_t *out, size_t cap) {
        size_t n = 0;
        listening_table(proc_fd, "net/tcp", out, cap, &n);
        listening_table(proc_fd, "net/tcp6", out, cap, &n);
        qsort(out, n, sizeof *out, cmp_u16);
        return n;
}
