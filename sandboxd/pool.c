/* The warm pool: see pool.h.  The kernel work of building is sandbox.c's (sandbox_prestart,
 * sandbox_builder_run); this file decides when, runs the zygote that forks the builders, and does
 * the one thing a hand-out needs that a fresh build does not: mounting into a running sandbox. */
#include "sandboxd/pool.h"

#include <fcntl.h>
#include <sched.h>
#include <errno.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdpass.h"
#include "sandboxd/ports.h"

#define POOL_IDLE_MS 1       /* refills wait for this much quiet: requests in flight come first */
#define POOL_RETRY_MS 1000   /* after a failed build */
#define HELPER_STACK (64u << 10)
#define POOL_DEMAND_MS 1000  /* after a create found the pool empty: refill without waiting for quiet */

/* The first ready pool sandbox of kind `net` (NET_NONE or NET_PRIVATE), unlinked. */
static struct sbx_sandbox *take_kind(struct sbx_daemon *d, enum net_mode net) {
        for (struct sbx_sandbox **pp = &d->pool; *pp; pp = &(*pp)->next) {
                struct sbx_sandbox *s = *pp;
                if (!s->pool_ready || s->pool_net != net)
                        continue;
                *pp = s->next;
                s->next = NULL;
                d->n_pool--;
                return s;
        }
        return NULL;
}

struct sbx_sandbox *pool_take(struct sbx_daemon *d, enum net_mode net) {
        /* Why a `none` request never gets a private pool sandbox: it must have no link at all.  A
         * `private` one prefers a pair made ahead, else takes a plain one and gets its pair at
         * hand-out (as `nat` always does). */
        struct sbx_sandbox *s = net == NET_PRIVATE ? take_kind(d, NET_PRIVATE) : NULL;
        if (!s && net == NET_PRIVATE && d->cfg.warm_pool_private)
                d->pool_private_demand_until = ns_now_ms() + POOL_DEMAND_MS;
        if (!s)
                s = take_kind(d, NET_NONE);
        if (!s && d->cfg.warm_pool)
                d->pool_demand_until = ns_now_ms() + POOL_DEMAND_MS;
        return s;
}

struct helper_args {
        int init_pidfd, report_fd;
        /* attach extras */
        int ws_mnt;
        const struct mount_bind *binds;
        size_t n_binds;
        /* /usr overlay */
        int userns_fd;
        const char *scaffold, *upper;
};

static _Noreturn void helper_exit(const struct helper_args *a, int r, const ns_error *err) {
        if (r < 0)
                (void) !write(a->report_fd, err, sizeof *err);
        _exit(r < 0 ? 1 : 0);
}

/* Runs in a child of its own (no CLONE_FS): only its mount namespace, root and cwd change. */
static int extras_main(void *arg) {
        struct helper_args *a = arg;
        ns_error err = { 0 };
        int r;
        prctl(PR_SET_NAME, "nsd-attach");
        if (setns(a->init_pidfd, CLONE_NEWNS) < 0)
                r = ns_err_sys(&err, errno, "enter the sandbox's mount namespace");
        else {
                /* setns made the namespace's root (the sandbox's /) our root and cwd. */
                _cleanup_close_ int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                r = rootfd < 0 ? ns_err_sys(&err, errno, "open the sandbox's root")
                               : mount_attach_extras(rootfd, a->ws_mnt, a->binds, a->n_binds, &err);
        }
        helper_exit(a, r, &err);
}

/* The overlay is made in a private copy of the daemon's mount namespace (where the upper dir and
 * the host's /usr are), then the helper enters the sandbox's and stacks it on /usr. */
static int usr_main(void *arg) {
        struct helper_args *a = arg;
        ns_error err = { 0 };
        int r;
        prctl(PR_SET_NAME, "nsd-usr");
        _cleanup_close_ int ovl = mount_usr_overlay(a->scaffold, a->upper, a->userns_fd, &err);
        if (ovl < 0)
                r = ovl;
        else if (setns(a->init_pidfd, CLONE_NEWNS) < 0)
                r = ns_err_sys(&err, errno, "enter the sandbox's mount namespace");
        else
                r = mount_usr_attach(ovl, &err);
        helper_exit(a, r, &err);
}

/* Run `fn` in a helper child and wait for it; its error report comes back through a pipe. */
static int helper_run(int (*fn)(void *), struct helper_args *a, ns_error *err) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return ns_err_sys(err, errno, "pipe2");
        _cleanup_close_ int rd = p[0];
        _cleanup_close_ int wr = p[1];
        a->report_fd = wr;
#ifdef NS_SANITIZER_BUILD
        /* The sanitizers' runtimes break under CLONE_VM children (as in init.c). */
        pid_t pid = fork();
        if (pid == 0)
                fn(a);
#else
        _cleanup_free_ char *stack = malloc(HELPER_STACK);
        if (!stack)
                return ns_err(err, ENOMEM, "out of memory");
        /* CLONE_VFORK: we sleep until it is done, so sharing our memory is safe and cheap. */
        pid_t pid = clone(fn, stack + HELPER_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
#endif
        if (pid < 0)
                return ns_err_sys(err, errno, "clone the mount helper");
        close(TAKE_FD(wr));
        int status = 0;
        while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
                ;
        ns_error child = { 0 };
        ssize_t n = read(rd, &child, sizeof child);
        if (n == (ssize_t) sizeof child && child.code) {
                child.msg[sizeof child.msg - 1] = '\0';
                return ns_err(err, child.code, "%s", child.msg);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return ns_err(err, EIO, "the mount helper failed");
        return 0;
}

int pool_attach_extras(int init_pidfd, int ws_mnt, const struct mount_bind *binds, size_t n_binds, ns_error *err) {
        struct helper_args a = { .init_pidfd = init_pidfd, .ws_mnt = ws_mnt, .binds = binds, .n_binds = n_binds,
                                 .userns_fd = -1 };
        return helper_run(extras_main, &a, err);
}

int pool_usr_overlay(int init_pidfd, int userns_fd, const char *scaffold, const char *upper, ns_error *err) {
        struct helper_args a = { .init_pidfd = init_pidfd, .ws_mnt = -1, .userns_fd = userns_fd,
                                 .scaffold = scaffold, .upper = upper };
        return helper_run(usr_main, &a, err);
}

static size_t pool_count(const struct sbx_daemon *d, int building, int net) {
        size_t n = 0;
        for (const struct sbx_sandbox *s = d->pool; s; s = s->next)
                if ((building < 0 || s->pool_ready == !building) && (net < 0 || s->pool_net == (enum net_mode) net))
                        n++;
        return n;
}

static bool pool_in_demand(const struct sbx_daemon *d, uint64_t now) {
        return d->n_waiting || d->pool_demand_until > now || d->pool_private_demand_until > now;
}

/* Builds at once: one per zygote (each builds one at a time), one without. */
static size_t pool_max_builds(const struct sbx_daemon *d) {
        return d->n_zygotes ? d->n_zygotes : 1;
}

/* The kind of pool sandbox wanted next (NET_NONE or NET_PRIVATE), or -1: below its pool size,
 * a builder free, room under the limit (pool sandboxes take uid slots, so they never crowd out a
 * client's sandbox).  The pool never grows past its size: in a burst its builds run in parallel
 * (one per zygote) and at once, not more of them. */
static int pool_wants(const struct sbx_daemon *d, uint64_t now) {
        (void) now;
        if (pool_count(d, 1, -1) >= pool_max_builds(d) || d->n_sandboxes + d->n_pool >= d->cfg.max_sandboxes)
                return -1;
        /* Queued creates (sandbox_create) are served by plain pool sandboxes: the pool builds for
         * them on top of its size (their slots were counted when they were queued). */
        if (pool_count(d, -1, NET_NONE) < d->cfg.warm_pool + d->n_waiting)
                return NET_NONE;
        if (pool_count(d, -1, NET_PRIVATE) < d->cfg.warm_pool_private && net_check_mode(d->net, NET_PRIVATE, NULL) == 0)
                return NET_PRIVATE;
        return -1;
}

int pool_next_timeout(void *daemon) {
        struct sbx_daemon *d = daemon;
        uint64_t now = ns_now_ms();
        int64_t t = -1;
        for (const struct sbx_sandbox *s = d->pool; s; s = s->next)
                if (!s->pool_ready)
                        t = s->pool_deadline > now ? (int64_t) (s->pool_deadline - now) : 0;
        if (d->waiting) { /* the oldest has the earliest deadline */
                int64_t w = d->waiting->deadline > now ? (int64_t) (d->waiting->deadline - now) : 0;
                if (t < 0 || w < t)
                        t = w;
        }
        /* Idle is measured from here: this sleep is the quiet spell a refill waits for. */
        d->pool_idle_since = 0;
        if (pool_wants(d, now) >= 0) {
                int64_t w = d->pool_retry_at > now ? (int64_t) (d->pool_retry_at - now)
                            : pool_in_demand(d, now) ? 0 : POOL_IDLE_MS;
                if (t < 0 || w < t)
                        t = w;
                d->pool_idle_since = now;
        } else if (pool_in_demand(d, now)) {
                /* A builder may come free before anything else wakes us. */
                uint64_t until = d->pool_demand_until > d->pool_private_demand_until ? d->pool_demand_until
                                                                                    : d->pool_private_demand_until;
                int64_t w = (int64_t) (until - now);
                if (t < 0 || w < t)
                        t = w;
        }
        return (int) t;
}

void pool_tick(void *daemon) {
        struct sbx_daemon *d = daemon;
        uint64_t now = ns_now_ms();
        for (struct sbx_sandbox *s = d->pool, *next; s; s = next) {
                next = s->next;
                if (!s->pool_ready && s->pool_deadline <= now) {
                        fprintf(stderr, "<4>warm-pool sandbox %s did not become ready; destroyed\n", s->id);
                        ns_error e;
                        ns_err(&e, ETIMEDOUT, "the sandbox's init did not become ready");
                        sandbox_destroy(s);
                        sandbox_waiting_fail_one(d, &e);
                }
        }
        /* Creates waiting for builds get the ready ones first (the loop has just run: a READY
         * may have arrived), oldest first. */
        sandbox_serve_waiting(d);
        /* Builds started for creates that went away (their client closed) leave the pool above
         * its size: the extra ready ones go, so that it never holds more than its sizes. */
        if (!d->waiting && pool_count(d, 0, NET_NONE) > d->cfg.warm_pool)
                for (struct sbx_sandbox *s = d->pool; s; s = s->next)
                        if (s->pool_ready && s->pool_net == NET_NONE) {
                                sandbox_destroy(s);
                                break;
                        }
        /* Only after a quiet spell, unless creates are waiting on the pool: the build runs in a
         * zygote, but its CPU time should not land on a request just arriving.  In a burst the
         * requests themselves are what the builds are for. */
        for (int kind; (kind = pool_wants(d, now)) >= 0;) {
                if (now < d->pool_retry_at)
                        return;
                if (!pool_in_demand(d, now) && (!d->pool_idle_since || now - d->pool_idle_since < POOL_IDLE_MS))
                        return;
                ns_error err = { 0 };
                if (sandbox_prestart(d, (enum net_mode) kind, &err) < 0) {
                        fprintf(stderr, "<4>warm pool: %s\n", err.msg);
                        sandbox_waiting_fail_one(d, &err);
                        d->pool_retry_at = now + POOL_RETRY_MS;
                        return;
                }
        }
}

/* A request to the zygote: build a pool sandbox (the report socket rides along), or remove what a
 * dead sandbox left (its cgroup, upper layer, disk image and record). */
enum zygote_job { ZYGOTE_BUILD = 1, ZYGOTE_CLEAN = 2 };
#define ZYGOTE_CLEAN_QUEUE 256
struct zygote_req {
        uint32_t job;
        char id[NS_ID_MAX + 1];
        uint32_t slot;
        uint32_t with_net;          /* build: make this pair too */
        uint32_t urgent;            /* build: creates are waiting (a burst): at the daemon's priority */
        struct net_pair_plan net;
};

_Noreturn static void zygote_main(struct sbx_daemon *d, int fd) {
        /* Gone with the daemon, whichever way it goes.  It builds pool sandboxes itself, one at a
         * time, behind every request: at the lowest priority.  Nice 19 rather than SCHED_IDLE: a
         * starved build holding the cgroup or mount locks would hold up the requests it is meant
         * to stay out of the way of. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "nsd-zygote");
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, 0);
        bool idle = errno == 0 && setpriority(PRIO_PROCESS, 0, 19) == 0;
        /* Cleanups wait behind builds: a sandbox someone may ask for next comes before tidying
         * up after one nobody will see again. */
        static char cleanups[ZYGOTE_CLEAN_QUEUE][NS_ID_MAX + 1];
        size_t n_clean = 0;
        for (;;) {
                struct zygote_req req;
                int report = -1;
                union {
                        struct cmsghdr align;
                        char b[CMSG_SPACE(sizeof(int))];
                } cbuf;
                struct iovec iov = { &req, sizeof req };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
                                     .msg_controllen = sizeof cbuf.b };
                ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | (n_clean ? MSG_DONTWAIT : 0));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        sandbox_remove_leftovers(d, cleanups[--n_clean]);
                        continue;
                }
                if (n <= 0) {
                        while (n_clean)
                                sandbox_remove_leftovers(d, cleanups[--n_clean]);
                        _exit(0);
                }
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&report, CMSG_DATA(c), sizeof report);
                req.id[NS_ID_MAX] = '\0';
                if (n == (ssize_t) sizeof req && req.job == ZYGOTE_CLEAN && report < 0 && ns_id_is_valid(req.id)) {
                        if (n_clean == ZYGOTE_CLEAN_QUEUE)
                                sandbox_remove_leftovers(d, cleanups[--n_clean]);
                        memcpy(cleanups[n_clean++], req.id, sizeof cleanups[0]);
                        continue;
                }
                if (n != (ssize_t) sizeof req || req.job != ZYGOTE_BUILD || report < 0 || !ns_id_is_valid(req.id) ||
                    req.slot >= d->n_slots) {
                        if (report >= 0)
                                close(report);
                        continue; /* the builder's absence is the daemon's error report */
                }
                /* No fork: init is cloned from here straight away (as the daemon's child), which
                 * spares a process and its page tables per sandbox. */
                /* In a burst the build is what requests wait for: at the daemon's own priority (a
                 * nice-19 build starves behind any other load on the machine). */
                bool urgent = idle && req.urgent && setpriority(PRIO_PROCESS, 0, nice) == 0;
                sandbox_build_pool(d, req.id, req.slot, req.with_net ? &req.net : NULL, nice, idle && !urgent, report);
                if (urgent)
                        setpriority(PRIO_PROCESS, 0, 19);
                close(report);
        }
}

/* How many zygotes: --pool-builds, else one per CPU (at most SBX_MAX_ZYGOTES). */
static size_t zygote_count(const struct sbx_daemon *d) {
        long n = d->cfg.pool_builds ? (long) d->cfg.pool_builds : sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
                n = 1;
        return n > SBX_MAX_ZYGOTES ? SBX_MAX_ZYGOTES : (size_t) n;
}

int pool_zygote_start(struct sbx_daemon *d, ns_error *err) {
        size_t want = zygote_count(d);
        pid_t daemon_pid = getpid();
        for (size_t i = 0; i < want; i++) {
                int sp[2];
                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                        return d->n_zygotes ? 0 : ns_err_sys(err, errno, "socketpair");
                pid_t pid = fork();
                if (pid < 0) {
                        int e = errno;
                        close(sp[0]);
                        close(sp[1]);
                        return d->n_zygotes ? 0 : ns_err_sys(err, e, "fork the zygote");
                }
                if (pid == 0) {
                        close(sp[0]);
                        /* The earlier zygotes' sockets: held here, they would never see the
                         * daemon close them. */
                        for (size_t j = 0; j < d->n_zygotes; j++)
                                close(d->zygote_fd[j]);
                        d->n_zygotes = 0;
                        /* Nor the relay process's channel: it is the daemon's to hold alone. */
                        ports_close_inherited(d->ports);
                        if (getppid() != daemon_pid) /* the daemon died before PDEATHSIG was set */
                                _exit(0);
                        zygote_main(d, sp[1]);
                }
                close(sp[1]);
                d->zygote_fd[d->n_zygotes] = sp[0];
                d->zygote_pid[d->n_zygotes] = pid;
                d->zygote_busy[d->n_zygotes] = 0;
                d->n_zygotes++;
        }
        return 0;
}

/* The live zygote with the fewest builds outstanding, or -1. */
static int zygote_pick(const struct sbx_daemon *d) {
        int best = -1;
        for (size_t i = 0; i < d->n_zygotes; i++)
                if (d->zygote_fd[i] >= 0 && (best < 0 || d->zygote_busy[i] < d->zygote_busy[best]))
                        best = (int) i;
        return best;
}

static void zygote_stop_one(struct sbx_daemon *d, size_t i) {
        if (d->zygote_fd[i] < 0)
                return;
        close(d->zygote_fd[i]);
        d->zygote_fd[i] = -1;
        while (waitpid(d->zygote_pid[i], NULL, __WALL) < 0 && errno == EINTR)
                ;
        d->zygote_pid[i] = 0;
}

int pool_zygote_build(struct sbx_daemon *d, const char *id, uint32_t slot, const struct net_pair_plan *net,
                      int report_fd) {
        int z = zygote_pick(d);
        if (z < 0)
                return -ENOENT;
        struct zygote_req req = { .job = ZYGOTE_BUILD, .slot = slot, .with_net = net != NULL,
                                  .urgent = pool_in_demand(d, ns_now_ms()) };
        if (net)
                req.net = *net;
        snprintf(req.id, sizeof req.id, "%s", id);
        struct iovec iov = { &req, sizeof req };
        int r = ns_send_fds(d->zygote_fd[z], &iov, 1, &report_fd, 1, MSG_DONTWAIT);
        if (r < 0) {
                /* Gone (or wedged): the others build from now on (the daemon's own builders once
                 * none is left). */
                zygote_stop_one(d, (size_t) z);
                return r;
        }
        d->zygote_busy[z]++;
        return z;
}

void pool_zygote_done(struct sbx_daemon *d, int z) {
        if (z >= 0 && (size_t) z < d->n_zygotes && d->zygote_busy[z])
                d->zygote_busy[z]--;
}

int pool_zygote_clean(struct sbx_daemon *d, const char *id) {
        int z = zygote_pick(d);
        if (z < 0)
                return -ENOENT;
        struct zygote_req req = { .job = ZYGOTE_CLEAN };
        snprintf(req.id, sizeof req.id, "%s", id);
        /* Never blocks: with the zygote's queue full, the caller does the work itself. */
        return send(d->zygote_fd[z], &req, sizeof req, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t) sizeof req ? 0 : -errno;
}

void pool_zygote_close_in_child(struct sbx_daemon *d) {
        for (size_t i = 0; i < d->n_zygotes; i++)
                if (d->zygote_fd[i] >= 0)
                        close(d->zygote_fd[i]);
}

void pool_zygote_stop(struct sbx_daemon *d) {
        /* Closed all first: each finishes its queue while the next is waited for. */
        for (size_t i = 0; i < d->n_zygotes; i++)
                if (d->zygote_fd[i] >= 0) {
                        close(d->zygote_fd[i]);
                        d->zygote_fd[i] = -2;
                }
        for (size_t i = 0; i < d->n_zygotes; i++) {
                if (d->zygote_fd[i] == -2)
                        while (waitpid(d->zygote_pid[i], NULL, __WALL) < 0 && errno == EINTR)
                                ;
                d->zygote_fd[i] = -1;
                d->zygote_pid[i] = 0;
        }
        d->n_zygotes = 0;
}
