/* Sandbox lifecycle: create (namespaces, cgroup, root filesystem, init), exec/attach/signal/wait
 * through init, freeze, destroy, and re-adoption after a restart.  Kernel work lives in ns.c,
 * mount.c, cgroup.c, caps.c, seccomp.c; this file decides the order and undoes on failure. */
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "sandboxd/caps.h"
#include "sandboxd/cgroup.h"
#include "sandboxd/daemon.h"
#include "sandboxd/disk.h"
#include "sandboxd/fsdel.h"
#include "sandboxd/init.h"
#include "sandboxd/initproto.h"
#include "sandboxd/mount.h"
#include "sandboxd/ns.h"
#include "sandboxd/pool.h"
#include "sandboxd/ports.h"
#include "sandboxd/seccomp.h"

#define INIT_READY_TIMEOUT_MS 10000
#define EXITED_KEPT_MAX 256 /* exit statuses remembered per sandbox for `wait` */

static void on_init_ctl(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);
static void on_init_exit(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);
static void on_pool_ctl(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);

struct sbx_sandbox *sandbox_find(struct sbx_daemon *d, const char *id, uid_t owner) {
        for (struct sbx_sandbox *s = d->sandboxes; s; s = s->next)
                if (strcmp(s->id, id) == 0 && s->owner == owner)
                        return s;
        return NULL;
}

static uid_t slot_uid(const struct sbx_daemon *d, uint32_t slot) {
        return (uid_t) (d->cfg.uid_base + (uint64_t) slot * SBX_UID_RANGE);
}

static int new_id(char out[NS_ID_MAX + 1], ns_error *err) {
        static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
        uint8_t rnd[10];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                return ns_err_sys(err, errno, "getrandom");
        out[0] = 's';
        for (size_t i = 0; i < sizeof rnd; i++)
                out[1 + i] = alphabet[rnd[i] & 31];
        out[1 + sizeof rnd] = '\0';
        return 0;
}

static int openat2_path(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
        struct open_how how = { .flags = flags | O_CLOEXEC, .resolve = resolve };
        return (int) syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Relative part of `path` beneath `root`, or NULL when it is not beneath it (component-wise). */
static const char *beneath(const char *root, const char *path) {
        size_t rl = strlen(root);
        while (rl > 1 && root[rl - 1] == '/')
                rl--;
        if (strncmp(root, path, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))
                return NULL;
        path += rl;
        while (*path == '/')
                path++;
        return path;
}

/* Open the workspace for `owner`: beneath --workspace-root, resolved by the kernel without
 * symlinks, "..", magic links or mount crossings, owned by the peer and never by root.  The fd
 * returned is what gets mounted, so a component swapped after this check changes nothing. */
static int open_workspace(struct sbx_daemon *d, uid_t owner, const char *path, struct stat *st, ns_error *err) {
        const char *rel = beneath(d->cfg.workspace_root, path);
        if (!rel || !*rel)
                return ns_err(err, EACCES, "workspace %s is not beneath the workspace root %s", path,
                              d->cfg.workspace_root);
        int fd = openat2_path(d->ws_root_fd, rel, O_PATH | O_DIRECTORY,
                              RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
        if (fd < 0)
                return ns_err_sys(err, errno, "workspace %s", path);
        if (fstat(fd, st) < 0) {
                int e = errno;
                close(fd);
                return ns_err_sys(err, e, "stat workspace");
        }
        if (st->st_uid == 0 || st->st_uid != owner) {
                close(fd);
                return ns_err(err, EACCES, "workspace %s is owned by uid %u, not by the caller (uid %u)%s", path,
                              (unsigned) st->st_uid, (unsigned) owner, st->st_uid == 0 ? "; root-owned workspaces are refused" : "");
        }
        return fd;
}

static int open_ro_bind(struct sbx_daemon *d, const char *src, ns_error *err) {
        for (size_t i = 0; i < d->cfg.n_ro_roots; i++) {
                const char *rel = beneath(d->cfg.ro_roots[i], src);
                if (!rel)
                        continue;
                int fd = openat2_path(d->ro_root_fds[i], *rel ? rel : ".", O_PATH,
                                      RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
                if (fd < 0)
                        return ns_err_sys(err, errno, "read-only bind %s", src);
                return fd;
        }
        return ns_err(err, EACCES, "read-only bind %s is not beneath any --ro-root", src);
}

static int check_limits(struct sbx_daemon *d, const struct ns_create_req *r, ns_error *err) {
        const struct sbx_config *c = &d->cfg;
        if (c->max_memory && r->memory > c->max_memory)
                return ns_err(err, E2BIG, "memory %llu is above the configured maximum %llu",
                              (unsigned long long) r->memory, (unsigned long long) c->max_memory);
        if (c->max_pids && r->pids > c->max_pids)
                return ns_err(err, E2BIG, "pids %llu is above the configured maximum %llu",
                              (unsigned long long) r->pids, (unsigned long long) c->max_pids);
        if (c->max_cpu_millis && r->cpu_millis > c->max_cpu_millis)
                return ns_err(err, E2BIG, "cpus %.2f is above the configured maximum %.2f", r->cpu_millis / 1000.0,
                              c->max_cpu_millis / 1000.0);
        if (c->max_disk && r->disk > c->max_disk)
                return ns_err(err, E2BIG, "disk %llu is above the configured maximum %llu",
                              (unsigned long long) r->disk, (unsigned long long) c->max_disk);
        enum net_mode mode;
        if (net_mode_parse(r->net, &mode) < 0)
                return ns_err(err, EINVAL, "net mode '%s' is not supported", r->net);
        if (r->n_overlays && r->disk)
                return ns_err(err, EOPNOTSUPP, "overlays and a disk limit cannot be combined");
        return net_check_mode(d->net, mode, err);
}

/* <upper dir>/<id>/<name>/{upper,work} (each made unless it exists). */
static int make_overlay_dirs(int dir, const char *name, uid_t root_uid, ns_error *err) {
        if (mkdirat(dir, name, 0700) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir upper");
        _cleanup_close_ int sub = openat(dir, name, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 || (mkdirat(sub, "upper", 0755) < 0 && errno != EEXIST) ||
            (mkdirat(sub, "work", 0700) < 0 && errno != EEXIST))
                return ns_err_sys(err, errno, "mkdir upper");
        /* The upper's root gives the merged root its owner: root of the sandbox. */
        if (fchownat(sub, "upper", root_uid, root_uid, AT_SYMLINK_NOFOLLOW) < 0)
                return ns_err_sys(err, errno, "chown upper");
        return 0;
}

static int make_upper(struct sbx_daemon *d, const char *id, uid_t root_uid, bool usr, size_t n_overlays,
                      ns_error *err) {
        if (mkdirat(d->upper_fd, id, 0700) < 0)
                return ns_err_sys(err, errno, "mkdir upper %s", id);
        _cleanup_close_ int dir = openat(d->upper_fd, id, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return ns_err_sys(err, errno, "open upper %s", id);
        int r = make_overlay_dirs(dir, "root", root_uid, err);
        if (r < 0 || (usr && (r = make_overlay_dirs(dir, "usr", root_uid, err)) < 0))
                return r;
        for (size_t i = 0; i < n_overlays; i++) {
                char name[24];
                snprintf(name, sizeof name, "ov%zu", i);
                if (mkdirat(dir, name, 0700) < 0)
                        return ns_err_sys(err, errno, "mkdir upper");
                _cleanup_close_ int sub = openat(dir, name, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                /* An overlay's dir belongs to the agent, like the working tree it sits in. */
                if (sub < 0 || mkdirat(sub, "upper", 0755) < 0 || mkdirat(sub, "work", 0700) < 0 ||
                    fchownat(sub, "upper", root_uid + SBX_AGENT_UID, root_uid + SBX_AGENT_UID, AT_SYMLINK_NOFOLLOW) < 0)
                        return ns_err_sys(err, errno, "make overlay upper");
        }
        return 0;
}

static int init_socket_path(struct sbx_daemon *d, const char *id, struct sockaddr_un *sa, ns_error *err) {
        memset(sa, 0, sizeof *sa);
        sa->sun_family = AF_UNIX;
        int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/sandboxes/%s.sock", d->cfg.state_dir, id);
        if (n < 0 || (size_t) n >= sizeof sa->sun_path)
                return ns_err(err, ENAMETOOLONG, "state dir path too long for a socket");
        return 0;
}

struct child_args {
        struct sbx_daemon *d;
        const char *id;
        int ctl_fd, listen_fd, userns_fd;
        struct mount_plan plan;
        bool idle_build; /* a pool build at nice 19: init goes back to `nice` */
        int nice;
};

_Noreturn static void child_fail(int ctl_fd, const ns_error *e) {
        struct ictl_hdr h = { .type = ICTL_FAILED, .a = (uint64_t) (e->code ? e->code : EIO) };
        struct iovec iov[2] = { { &h, sizeof h }, { (void *) e->msg, strlen(e->msg) } };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
        (void) sendmsg(ctl_fd, &mh, MSG_NOSIGNAL);
        _exit(1);
}

/* The sandbox's pid 1, from the clone until init_run: still host root here, in new mount, pid,
 * uts, ipc and net namespaces owned by the initial user namespace (so nothing inside can ever
 * reconfigure them).  It runs no code of the sandbox's before the parent has placed it in its
 * cgroup and said "go". */
_Noreturn static void sandbox_child(struct child_args *a) {
        ns_error err = { 0 };
        prctl(PR_SET_NAME, "nsd-init");
        /* Why 0, and not -1000 for init: every process of the sandbox is init's child and inherits
         * its oom_score_adj and its floor (oom_score_adj_min), and none can raise the floor back
         * (init is not dumpable, so its children's /proc files are not theirs to write).  An
         * exempt init would make the whole sandbox unkillable by its cgroup's OOM killer, and let
         * the agent set -1000 itself.  Written here, still host root, it also resets whatever the
         * daemon runs with (a unit's OOMScoreAdjust).  init's few hundred KiB make it the OOM
         * killer's last choice; if it is chosen anyway, the sandbox ends with it (on_init_exit). */
        int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (oom >= 0) {
                (void) !write(oom, "0", 1);
                close(oom);
        }
        if (sethostname(a->id, strlen(a->id)) < 0) {
                ns_err_sys(&err, errno, "sethostname");
                child_fail(a->ctl_fd, &err);
        }
        /* The filesystem is built while the parent places us in the cgroup. */
        if (ns_loopback_up(&err) < 0 || net_disable_ipv6_default(&err) < 0 || mount_build_root(&a->plan, &err) < 0)
                child_fail(a->ctl_fd, &err);
        /* A pool build runs at the lowest priority (builder_main); the sandbox itself runs as the
         * daemon's processes do.  Still host root here: raising it back needs CAP_SYS_NICE. */
        if (a->idle_build && setpriority(PRIO_PROCESS, 0, a->nice) < 0) {
                ns_err_sys(&err, errno, "restore the scheduling priority");
                child_fail(a->ctl_fd, &err);
        }
        char go;
        if (recv(a->ctl_fd, &go, 1, 0) != 1)
                _exit(1);
        /* Only now, inside the sandbox's cgroup, can its cgroup namespace be rooted there. */
        if (unshare(CLONE_NEWCGROUP) < 0) {
                ns_err_sys(&err, errno, "unshare cgroup namespace");
                child_fail(a->ctl_fd, &err);
        }
        /* Enter the sandbox's user namespace as its root: from here on, every privilege is
         * namespaced, and init holds only Docker's default set, which it hands to --root execs. */
        if (setns(a->userns_fd, CLONE_NEWUSER) < 0) {
                ns_err_sys(&err, errno, "setns user");
                child_fail(a->ctl_fd, &err);
        }
        if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0) {
                ns_err_sys(&err, errno, "become root of the user namespace");
                child_fail(a->ctl_fd, &err);
        }
        if (caps_enter_identity(true, &err) < 0)
                child_fail(a->ctl_fd, &err);
        /* Non-dumpable: processes of the same uid (--root) cannot ptrace or read init's memory. */
        prctl(PR_SET_DUMPABLE, 0);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0) {
                ns_err_sys(&err, errno, "open /dev/null");
                child_fail(a->ctl_fd, &err);
        }
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        /* Keep only the two sockets, at fds 3 and 4. */
        int ctl = fcntl(a->ctl_fd, F_DUPFD_CLOEXEC, 10);
        int lst = fcntl(a->listen_fd, F_DUPFD_CLOEXEC, 10);
        dup3(ctl, 3, O_CLOEXEC);
        dup3(lst, 4, O_CLOEXEC);
        close_range(5, ~0u, 0);
        /* The seccomp filter (with no_new_privs) goes on init itself, once, instead of on each
         * exec'd process: every process of the sandbox descends from init and inherits it, so
         * none runs a moment unfiltered, and an exec no longer pays for attaching and compiling
         * the program.  init needs none of the calls it denies from here on. */
        int sc = sc_filter_load(&a->d->filter);
        if (sc < 0) {
                ns_err_sys(&err, -sc, "load the seccomp filter");
                child_fail(3, &err);
        }
        struct init_config cfg = { .ctl_fd = 3, .listen_fd = 4 };
        init_run(&cfg);
}

/* `as_sibling`: init becomes a child of our parent (CLONE_PARENT), as the pool builder wants: init
 * must be the daemon's child, reaped and watched by it, whoever built it. */
static pid_t clone_init(int *pidfd, bool as_sibling) {
        return (pid_t) syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                               CLONE_PIDFD | (as_sibling ? CLONE_PARENT : 0) | SIGCHLD, NULL, pidfd, NULL, 0);
}

/* Kill init and wait for it to be gone: by waitpid when it is our child, else (a sibling, which
 * its parent reaps) until its pidfd reports the exit, for at most two seconds. */
static void kill_init(int pidfd, pid_t pid, bool ours) {
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        if (ours) {
                while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
                        ;
                return;
        }
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        while (poll(&p, 1, 2000) < 0 && errno == EINTR)
                ;
}

static int recv_ictl(int fd, struct ictl_hdr *h, char *payload, size_t cap, size_t *len, int timeout_ms) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int r = poll(&pfd, 1, timeout_ms);
        if (r == 0)
                return -ETIMEDOUT;
        if (r < 0)
                return -errno;
        char buf[ICTL_MAX_MSG];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        /* A child that failed and exited before reading our "go" leaves it unread: the socket
         * then reports ECONNRESET once, ahead of the failure message that is still queued. */
        if (n < 0 && errno == ECONNRESET)
                n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
                return -errno;
        if ((size_t) n < sizeof *h)
                return -EPROTO;
        memcpy(h, buf, sizeof *h);
        *len = (size_t) n - sizeof *h;
        if (*len >= cap)
                *len = cap - 1;
        memcpy(payload, buf + sizeof *h, *len);
        payload[*len] = '\0';
        return 0;
}

static void sandbox_free(struct sbx_sandbox *s) {
        while (s->procs) {
                struct sbx_proc *p = s->procs;
                s->procs = p->next;
                free(p);
        }
        while (s->pending) {
                struct sbx_pending *p = s->pending;
                s->pending = p->next;
                if (p->caller_fd >= 0)
                        close(p->caller_fd);
                free(p);
        }
        snapshot_drop(s->snap);
        free(s);
}

void sandbox_release(struct sbx_sandbox *s) {
        /* Unwatched before the close (the loop frees its watches when it is freed). */
        if (s->d && s->d->loop) {
                ns_loop_remove(s->d->loop, s->w_pidfd);
                ns_loop_remove(s->d->loop, s->w_ctl);
                s->w_pidfd = s->w_ctl = NULL;
        }
        if (s->init_pidfd >= 0)
                close(s->init_pidfd);
        if (s->ctl_fd >= 0)
                close(s->ctl_fd);
        sandbox_free(s);
}

/* Into the daemon's list: the clients' sandboxes, or the warm pool's (never listed, never found). */
static void sandbox_link(struct sbx_daemon *d, struct sbx_sandbox *s) {
        struct sbx_sandbox **head = s->pooled ? &d->pool : &d->sandboxes;
        s->next = *head;
        *head = s;
        if (s->pooled)
                d->n_pool++;
        else
                d->n_sandboxes++;
        d->slots[s->slot] = 1;
}

static int watch_init(struct sbx_sandbox *s, ns_error *err) {
        s->w_pidfd = ns_loop_add(s->d->loop, s->init_pidfd, EPOLLIN, on_init_exit, s, err);
        if (!s->w_pidfd)
                return -err->code;
        s->w_ctl = ns_loop_add(s->d->loop, s->ctl_fd, EPOLLIN, on_init_ctl, s, err);
        if (!s->w_ctl)
                return -err->code;
        return 0;
}

/* Everything a create request names, opened and checked before anything is created. */
struct opened {
        int ws_fd; /* the checked workspace (O_PATH), or -1 */
        struct stat ws_st;
        struct mount_bind binds[NS_RO_BINDS_MAX];
        size_t n_binds; /* binds[i].src_fd: detached read-only clones, owned here */
        char layer_paths[NS_LAYERS_MAX][NS_PATH_MAX];
        const char *lowers[NS_LAYERS_MAX];
        size_t n_lowers;
        bool host_usr;
        char usr_paths[NS_LAYERS_MAX][NS_PATH_MAX];
        const char *usr_lowers[NS_LAYERS_MAX]; /* layers' usr/ above the host's /usr, lowest first */
        size_t n_usr_lowers;
        char (*ov_paths)[NS_PATH_MAX]; /* the layers' copies of the overlays' dirs (malloc'd, or NULL) */
        struct mount_overlay overlays[NS_OVERLAYS_MAX];
        size_t n_overlays;
};

/* What a hand-out from the pool needs of `struct opened`: the workspace and the binds (a queued
 * create keeps only these, owned). */
struct sbx_opened {
        int ws_fd;
        struct stat ws_st;
        struct mount_bind binds[NS_RO_BINDS_MAX];
        size_t n_binds;
};

static void opened_close(struct opened *o) {
        free(o->ov_paths);
        o->ov_paths = NULL;
        if (o->ws_fd >= 0)
                close(o->ws_fd);
        o->ws_fd = -1;
        for (size_t j = 0; j < o->n_binds; j++)
                close(o->binds[j].src_fd);
        o->n_binds = 0;
}

/* The stacked layers' copies of each overlay's dir (a directory reached without a symlink), lowest
 * first: what a snapshot of a sandbox with the same overlays left there. */
static int open_overlays(struct sbx_daemon *d, const struct ns_create_req *req, struct opened *o, ns_error *err) {
        size_t first = req->n_layers && strcmp(req->layers[0], LAYER_HOST) == 0 ? 1 : 0;
        if (req->n_layers > first && !(o->ov_paths = malloc(NS_OVERLAYS_MAX * NS_LAYERS_MAX * sizeof *o->ov_paths)))
                return ns_err(err, ENOMEM, "out of memory");
        size_t used = 0;
        for (size_t i = 0; i < req->n_overlays; i++) {
                struct mount_overlay *ov = &o->overlays[i];
                ov->dst = req->overlays[i];
                ov->n_lowers = 0;
                for (size_t k = first; k < req->n_layers; k++) {
                        char rel[LAYER_NAME_MAX + NS_OVERLAY_PATH_MAX + 2];
                        snprintf(rel, sizeof rel, "%s%s", req->layers[k], ov->dst);
                        _cleanup_close_ int fd = openat2_path(d->layers_fd, rel, O_PATH | O_DIRECTORY,
                                                              RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
                        if (fd < 0)
                                continue;
                        snprintf(o->ov_paths[used], NS_PATH_MAX, "%s/%s", d->cfg.layers_dir, rel);
                        ov->lowers[ov->n_lowers++] = o->ov_paths[used++];
                }
        }
        o->n_overlays = req->n_overlays;
        return 0;
}

static int open_request(struct sbx_daemon *d, uid_t owner, const struct ns_create_req *req, struct opened *o,
                        ns_error *err) {
        o->ws_fd = -1;
        o->n_binds = 0;
        o->n_lowers = o->n_usr_lowers = o->n_overlays = 0;
        o->host_usr = false;
        o->ov_paths = NULL;
        size_t first = 0;
        if (req->n_layers == 0 || strcmp(req->layers[0], LAYER_HOST) == 0) {
                o->lowers[0] = d->host_layer;
                o->n_lowers = 1;
                o->host_usr = true;
                first = req->n_layers ? 1 : 0;
        }
        if (first < req->n_layers && d->layers_fd < 0)
                return ns_err(err, ENOENT, "no --layers-dir is configured");
        for (size_t i = first; i < req->n_layers; i++) {
                _cleanup_close_ int lf = openat2_path(d->layers_fd, req->layers[i], O_PATH | O_DIRECTORY,
                                                      RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
                if (lf < 0)
                        return ns_err_sys(err, errno, "layer '%s'", req->layers[i]);
                layer_touch(d->layers_fd, req->layers[i]);
                size_t k = o->n_lowers++;
                snprintf(o->layer_paths[k], NS_PATH_MAX, "%s/%s", d->cfg.layers_dir, req->layers[i]);
                o->lowers[k] = o->layer_paths[k];
                /* Above the host base, a layer's usr/ (a real directory, reached without a
                 * symlink) joins the lowers of the /usr overlay. */
                struct stat ust;
                _cleanup_close_ int uf = o->host_usr ? openat2_path(lf, "usr", O_PATH | O_DIRECTORY,
                                                                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
                                                     : -1;
                if (uf >= 0 && fstat(uf, &ust) == 0 && S_ISDIR(ust.st_mode)) {
                        snprintf(o->usr_paths[o->n_usr_lowers], NS_PATH_MAX, "%s/%s/usr", d->cfg.layers_dir,
                                 req->layers[i]);
                        o->usr_lowers[o->n_usr_lowers] = o->usr_paths[o->n_usr_lowers];
                        o->n_usr_lowers++;
                }
        }
        if (req->n_overlays) {
                int r = open_overlays(d, req, o, err);
                if (r < 0)
                        return r;
        }
        if (req->workspace) {
                int fd = open_workspace(d, owner, req->workspace, &o->ws_st, err);
                if (fd < 0)
                        return fd;
                o->ws_fd = fd;
        }
        for (size_t i = 0; i < req->n_ro_binds; i++) {
                _cleanup_close_ int fd = open_ro_bind(d, req->ro_binds[i].src, err);
                int m = fd < 0 ? fd : mount_clone_detached(fd, "", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                                                         -1, err);
                if (m < 0) {
                        opened_close(o);
                        return m;
                }
                o->binds[o->n_binds++] = (struct mount_bind){ .src_fd = m, .dst = req->ro_binds[i].dst };
        }
        return 0;
}

/* The workspace as it is mounted: a detached clone of the checked descriptor, made here in the
 * daemon's mount namespace, idmapped so that its owner on disk is the agent (uid 1000) inside. */
static int workspace_mount(int ws_fd, const struct stat *ws_st, uid_t root_uid, ns_error *err) {
        char map[96], gmap[96];
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned) ws_st->st_uid, (unsigned) (root_uid + SBX_AGENT_UID));
        snprintf(gmap, sizeof gmap, "%u %u 1\n", (unsigned) ws_st->st_gid, (unsigned) (root_uid + SBX_AGENT_UID));
        _cleanup_close_ int ws_userns = ns_userns_new(map, gmap, err);
        if (ws_userns < 0)
                return ws_userns;
        return mount_clone_detached(ws_fd, "", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, ws_userns, err);
}

static struct cg_limits limits_of(const struct ns_create_req *req) {
        struct cg_limits lim = { .memory_bytes = req->memory, .pids = req->pids };
        if (req->cpu_millis) {
                lim.cpu_period_us = 100000;
                lim.cpu_quota_us = (uint32_t) (req->cpu_millis * 100);
        }
        return lim;
}

static int free_slot(struct sbx_daemon *d, uint32_t *slot, ns_error *err) {
        uint32_t i = 0;
        while (i < d->n_slots && d->slots[i])
                i++;
        if (i >= d->n_slots)
                return ns_err(err, EAGAIN, "no free uid range");
        *slot = i;
        return 0;
}

/* Build a sandbox's kernel objects for `s` (id and slot set) and start its init: upper dirs (or
 * the disk image), cgroup with `lim`, user namespace, init socket, clone, cgroup placement, "go".
 * On success s->init_pid, init_pidfd and ctl_fd are set and init is building the root; on failure
 * everything this made is gone again. */
static int spawn(struct sbx_daemon *d, struct sbx_sandbox *s, const struct opened *o, const struct cg_limits *lim,
                 uint64_t disk, bool init_as_sibling, ns_error *err) {
        _cleanup_close_ int ws_mnt = -1, userns = -1, lst = -1, child_ctl = -1, loop_fd = -1;
        int r;
        struct mount_plan plan = { .scaffold = s->d->scaffold, .workspace_fd = -1, .n_lowers = o->n_lowers,
                                   .host_usr = o->host_usr, .binds = o->binds, .n_binds = o->n_binds };
        memcpy(plan.lowers, o->lowers, o->n_lowers * sizeof *plan.lowers);
        memcpy(plan.usr_lowers, o->usr_lowers, o->n_usr_lowers * sizeof *plan.usr_lowers);
        plan.n_usr_lowers = o->n_usr_lowers;
        memcpy(plan.overlays, o->overlays, o->n_overlays * sizeof *plan.overlays);
        plan.n_overlays = o->n_overlays;
        uid_t root_uid = slot_uid(d, s->slot);
        bool usr_lazy = mount_usr_is_lazy(plan.host_usr, plan.n_usr_lowers, disk != 0);
        if ((r = make_upper(d, s->id, root_uid, !usr_lazy, o->n_overlays, err)) < 0)
                goto out_upper;
        char loop_dev[64] = "";
        if (disk) {
                if ((r = disk_image_create(d->upper_fd, d->cfg.upper_dir, s->id, disk, err)) < 0)
                        goto out_upper;
                if ((loop_fd = disk_attach(d->upper_fd, s->id, err)) < 0) {
                        r = loop_fd;
                        goto out_disk;
                }
                char link[64];
                snprintf(link, sizeof link, "/proc/self/fd/%d", loop_fd);
                ssize_t n = readlink(link, loop_dev, sizeof loop_dev - 1);
                if (n <= 0) {
                        r = ns_err_sys(err, errno, "name of the loop device");
                        goto out_disk;
                }
                loop_dev[n] = '\0';
        }
        if ((r = cg_create(d->cg, s->id, lim, err)) < 0)
                goto out_disk;

        char map[96];
        snprintf(map, sizeof map, "0 %u %u\n", (unsigned) root_uid, SBX_UID_RANGE);
        userns = ns_userns_new(map, map, err);
        if (userns < 0) {
                r = userns;
                goto out_cgroup;
        }
        if (o->ws_fd >= 0 && (r = ws_mnt = workspace_mount(o->ws_fd, &o->ws_st, root_uid, err)) < 0)
                goto out_cgroup;
        char upper[NS_PATH_MAX];
        snprintf(upper, sizeof upper, "%s/%s", d->cfg.upper_dir, s->id);
        plan.upper = upper;
        plan.disk_dev = loop_dev[0] ? loop_dev : NULL;
        plan.upper_owner = root_uid;
        plan.userns_fd = userns;
        plan.workspace_fd = ws_mnt;

        struct sockaddr_un sa;
        if ((r = init_socket_path(d, s->id, &sa, err)) < 0)
                goto out_cgroup;
        lst = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (lst < 0 || bind(lst, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lst, 4) < 0) {
                r = ns_err_sys(err, errno, "init socket");
                goto out_socket;
        }
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
                r = ns_err_sys(err, errno, "socketpair");
                goto out_socket;
        }
        s->ctl_fd = sp[0];
        child_ctl = sp[1];

        struct child_args a = { .d = d, .id = s->id, .ctl_fd = child_ctl, .listen_fd = lst, .userns_fd = userns,
                                .plan = plan, .idle_build = s->idle_build, .nice = s->nice };
        int pidfd = -1;
        pid_t pid = clone_init(&pidfd, init_as_sibling);
        if (pid < 0) {
                r = ns_err_sys(err, errno, "clone");
                goto out_socket;
        }
        if (pid == 0)
                sandbox_child(&a);
        s->init_pid = pid;
        s->init_pidfd = pidfd;
        close(TAKE_FD(child_ctl));

        if ((r = cg_attach(d->cg, s->id, pid, err)) < 0)
                goto out_kill;
        /* A child that has failed already is gone without reading it: its report is queued on
         * the socket for whoever waits for init's first message, which says what went wrong. */
        if (send(s->ctl_fd, "g", 1, MSG_NOSIGNAL) != 1 && errno != EPIPE && errno != ECONNRESET) {
                r = ns_err_sys(err, errno, "start init");
                goto out_kill;
        }
        return 0;

out_kill:
        kill_init(s->init_pidfd, pid, !init_as_sibling);
        close(s->init_pidfd);
        s->init_pidfd = -1;
        cg_kill(d->cg, s->id, NULL);
        cg_wait_empty(d->cg, s->id, 2000, NULL);
out_socket:
        unlink(sa.sun_path);
        if (s->ctl_fd >= 0)
                close(s->ctl_fd);
        s->ctl_fd = -1;
out_cgroup:
        cg_destroy(d->cg, s->id, NULL);
out_disk:
        if (loop_fd >= 0)
                close(TAKE_FD(loop_fd));
        disk_remove(d->upper_fd, s->id);
out_upper:
        fsdel_tree_at(d->upper_fd, s->id, NULL);
        return r;
}

/* Check init's first message: READY with our protocol version, or FAILED with the reason. */
static int check_ready(const struct ictl_hdr *h, const char *msg, ns_error *err) {
        if (h->type == ICTL_FAILED) {
                int code = h->a > 0 && h->a < 4096 ? (int) h->a : EIO;
                return ns_err(err, code, "sandbox set-up: %s", msg);
        }
        if (h->type != ICTL_READY || h->a != ICTL_VERSION)
                return ns_err(err, EPROTO, "unexpected first message from init");
        return 0;
}

/* init's network namespace, opened (its pidfd keeps init from being another process meanwhile:
 * this runs before init is reaped). */
static int open_netns(const struct sbx_sandbox *s, ns_error *err) {
        char nspath[64];
        snprintf(nspath, sizeof nspath, "/proc/%d/ns/net", (int) s->init_pid);
        int netns = open(nspath, O_RDONLY | O_CLOEXEC);
        return netns < 0 ? ns_err_sys(err, errno, "open %s", nspath) : netns;
}

/* The request's veth pair (net "private" or "nat"), made in init's network namespace. */
static int add_net(struct sbx_sandbox *s, const struct ns_create_req *req, ns_error *err) {
        enum net_mode mode = NET_NONE;
        if (net_mode_parse(req->net, &mode) < 0 || mode == NET_NONE)
                return 0;
        if (s->net.mode == mode) { /* a pool sandbox whose pair was made ahead */
                log_debug("%s: its pair was made ahead (%s" "%u)", s->id, "nsv", s->net.counter);
                return 0;
        }
        _cleanup_close_ int netns = open_netns(s, err);
        if (netns < 0)
                return netns;
        return net_attach(s->d->net, netns, mode, &s->net, err);
}

int connector_check(const struct sbx_sandbox *s, const struct ns_connect *c, ns_error *err) {
        if (!c->host_path[0])
                return 0;
        int fd = ports_host_socket_open(c->host_path, s->owner, err);
        if (fd < 0)
                return fd;
        close(fd);
        return 0;
}

/* The request's connectors, in the sandbox's network namespace. */
static int add_connects(struct sbx_sandbox *s, const struct ns_create_req *req, ns_error *err) {
        if (req->n_connects == 0)
                return 0;
        _cleanup_close_ int netns = open_netns(s, err);
        if (netns < 0)
                return netns;
        for (size_t i = 0; i < req->n_connects; i++) {
                int r = connector_check(s, &req->connects[i], err);
                if (r < 0)
                        return r;
                r = ports_connect_add(s->d->ports, s->id, netns, &req->connects[i], s->owner, err);
                if (r < 0)
                        return r;
                s->connects[s->n_connects++] = req->connects[i];
        }
        return 0;
}

int sandbox_proc_dir(const struct sbx_sandbox *s, ns_error *err) {
        char path[32];
        snprintf(path, sizeof path, "/proc/%d", (int) s->init_pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", path);
        /* Why after the open: while the pidfd says init runs, its pid cannot have been reused, so
         * the directory opened before is init's. */
        if (s->init_pidfd < 0 || pidfd_send_signal(s->init_pidfd, 0, NULL, 0) < 0)
                return ns_err(err, ESRCH, "the sandbox's init is gone");
        return TAKE_FD(fd);
}

int sandbox_netns(const struct sbx_sandbox *s, ns_error *err) {
        _cleanup_close_ int proc = sandbox_proc_dir(s, err);
        if (proc < 0)
                return proc;
        int netns = openat(proc, "ns/net", O_RDONLY | O_CLOEXEC);
        if (netns < 0)
                return ns_err_sys(err, errno, "open the sandbox's network namespace");
        return netns;
}

int sandbox_publish(struct sbx_sandbox *s, const struct ns_publish *p, struct ns_publish *out, ns_error *err) {
        if (s->n_publishes >= NS_PUBLISH_MAX)
                return ns_err(err, E2BIG, "at most %d published ports per sandbox", NS_PUBLISH_MAX);
        _cleanup_close_ int netns = sandbox_netns(s, err);
        if (netns < 0)
                return netns;
        uint16_t hp = 0;
        int r = ports_publish_add(s->d->ports, s->id, netns, p->port, p->host_port, &hp, err);
        if (r < 0)
                return r;
        s->publishes[s->n_publishes++] = (struct ns_publish){ .port = p->port, .host_port = hp };
        if (out)
                *out = s->publishes[s->n_publishes - 1];
        return 0;
}

/* The request's publishes; any failure leaves the caller to destroy the sandbox. */
static int add_publishes(struct sbx_sandbox *s, const struct ns_create_req *req, ns_error *err) {
        for (size_t i = 0; i < req->n_publishes; i++) {
                int r = sandbox_publish(s, &req->publishes[i], NULL, err);
                if (r < 0)
                        return ns_err_wrap(err, "publish[%zu]", i);
        }
        return 0;
}

static void set_identity(struct sbx_sandbox *s, uid_t owner, const struct ns_create_req *req) {
        s->owner = owner;
        s->created = (uint64_t) time(NULL);
        s->limits.memory = req->memory;
        s->limits.pids = req->pids;
        s->limits.cpu_millis = req->cpu_millis;
        s->limits.disk = req->disk;
        s->ephemeral = req->ephemeral;
        if (req->workspace)
                snprintf(s->workspace, sizeof s->workspace, "%s", req->workspace);
        s->n_overlays = req->n_overlays;
        for (size_t i = 0; i < req->n_overlays; i++)
                snprintf(s->overlays[i], sizeof s->overlays[0], "%s", req->overlays[i]);
        s->n_layers = 0;
        for (size_t i = 0; i < req->n_layers; i++)
                if (strcmp(req->layers[i], LAYER_HOST) != 0)
                        snprintf(s->layers[s->n_layers++], sizeof s->layers[0], "%s", req->layers[i]);
}

/* Hand a ready warm-pool sandbox to `owner`: attach the workspace and read-only binds inside it,
 * write the limits into its cgroup, add the connectors, record it.  Nothing of the sandbox's has
 * run yet (init alone, no exec), so nothing inside can have prepared its filesystem.  On failure
 * the pool sandbox is destroyed (it may be half-configured) and the request fails. */
static int handout(struct sbx_daemon *d, struct sbx_sandbox *s, uid_t owner, const struct ns_create_req *req,
                   const struct sbx_opened *o, ns_error *err) {
        _cleanup_close_ int ws_mnt = -1;
        int r = 0;
        if (o->ws_fd >= 0 && (r = ws_mnt = workspace_mount(o->ws_fd, &o->ws_st, slot_uid(d, s->slot), err)) < 0)
                goto fail;
        if ((ws_mnt >= 0 || o->n_binds) && (r = pool_attach_extras(s->init_pidfd, ws_mnt, o->binds, o->n_binds, err)) < 0)
                goto fail;
        struct cg_limits lim = limits_of(req);
        if ((r = cg_set_limits(d->cg, s->id, &lim, err)) < 0)
                goto fail;
        set_identity(s, owner, req);
        s->pooled = false;
        s->from_pool = true;
        if ((r = add_net(s, req, err)) < 0 || (r = add_connects(s, req, err)) < 0 || (r = add_publishes(s, req, err)) < 0 ||
            (r = state_save(s, err)) < 0)
                goto fail;
        sandbox_link(d, s);
        return 0;
fail:
        /* Counted as ours for the moment of its destruction; it was never visible. */
        sandbox_link(d, s);
        sandbox_destroy(s);
        return r;
}

/* The part of `o` a hand-out uses (borrowed: `o` still owns the descriptors). */
static struct sbx_opened extras_of(const struct opened *o) {
        struct sbx_opened x = { .ws_fd = o->ws_fd, .ws_st = o->ws_st, .n_binds = o->n_binds };
        memcpy(x.binds, o->binds, o->n_binds * sizeof o->binds[0]);
        return x;
}

static void waiter_free(struct sbx_waiter *w) {
        if (w->o) {
                if (w->o->ws_fd >= 0)
                        close(w->o->ws_fd);
                for (size_t j = 0; j < w->o->n_binds; j++)
                        close(w->o->binds[j].src_fd);
                free(w->o);
        }
        ns_request_done(&w->req);
        free(w);
}

/* Queue create `r` (checked, its workspace and binds opened in `o`) for the pool's next build:
 * the descriptors move from `o` into the queue, `r` is moved and left empty.  1, or -errno. */
static int waiter_add(struct sbx_daemon *d, struct sbx_client *c, uid_t owner, enum net_mode mode,
                      struct ns_request *r, struct opened *o, ns_error *err) {
        struct sbx_waiter *w = calloc(1, sizeof *w);
        struct sbx_opened *x = malloc(sizeof *x);
        if (!w || !x) {
                free(w);
                free(x);
                return ns_err(err, ENOMEM, "out of memory");
        }
        *x = extras_of(o);
        o->ws_fd = -1;
        o->n_binds = 0;
        w->client = c;
        w->owner = owner;
        w->mode = mode;
        w->req = *r;
        *r = (struct ns_request){ .id = -1 };
        w->o = x;
        w->deadline = ns_now_ms() + 3 * INIT_READY_TIMEOUT_MS;
        if (!d->waiting_tail)
                d->waiting_tail = &d->waiting;
        *d->waiting_tail = w;
        d->waiting_tail = &w->next;
        d->n_waiting++;
        return 1;
}

static struct sbx_waiter *waiter_pop(struct sbx_daemon *d) {
        struct sbx_waiter *w = d->waiting;
        if (!w)
                return NULL;
        d->waiting = w->next;
        if (!d->waiting)
                d->waiting_tail = &d->waiting;
        d->n_waiting--;
        w->next = NULL;
        return w;
}

static void waiter_answer(struct sbx_waiter *w, struct sbx_sandbox *s, const ns_error *err) {
        if (!w->client)
                return;
        if (!s) {
                server_reply_error(w->client, w->req.id, err);
                return;
        }
        if (s->ephemeral)
                s->holder = w->client;
        log_debug("uid %u: created %s (from a pool build it waited for)", (unsigned) w->owner, s->id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "sandbox", sandbox_to_json(s));
        server_reply(w->client, w->req.id, o, -1);
}

void sandbox_serve_waiting(struct sbx_daemon *d) {
        uint64_t now = ns_now_ms();
        while (d->waiting) {
                struct sbx_waiter *w = d->waiting;
                ns_error err = { 0 };
                struct sbx_sandbox *s = NULL;
                if (w->deadline > now && !(s = pool_take(d, w->mode)))
                        break;
                w = waiter_pop(d);
                int r = s ? handout(d, s, w->owner, &w->req.u.create, w->o, &err)
                          : ns_err(&err, ETIMEDOUT, "no warm-pool sandbox became ready in time");
                waiter_answer(w, r == 0 ? s : NULL, &err);
                waiter_free(w);
        }
}

void sandbox_waiting_fail_one(struct sbx_daemon *d, const ns_error *err) {
        struct sbx_waiter *w = waiter_pop(d);
        if (!w)
                return;
        ns_error e;
        ns_err(&e, err->code ? err->code : EIO, "building the sandbox: %s", err->msg);
        waiter_answer(w, NULL, &e);
        waiter_free(w);
}

void sandbox_forget_waiting(struct sbx_daemon *d, struct sbx_client *c) {
        for (struct sbx_waiter **pp = &d->waiting; *pp;) {
                struct sbx_waiter *w = *pp;
                if (w->client != c) {
                        pp = &w->next;
                        continue;
                }
                *pp = w->next;
                d->n_waiting--;
                waiter_free(w);
        }
        d->waiting_tail = &d->waiting;
        while (*d->waiting_tail)
                d->waiting_tail = &(*d->waiting_tail)->next;
}

int sandbox_create(struct sbx_daemon *d, struct sbx_client *c, uid_t owner, struct ns_request *rq,
                   struct sbx_sandbox **out, ns_error *err) {
        const struct ns_create_req *req = &rq->u.create;
        int r = check_limits(d, req, err);
        if (r < 0)
                return r;
        if (d->n_sandboxes + d->n_waiting >= d->cfg.max_sandboxes)
                return ns_err(err, EAGAIN, "the sandbox limit (%u) is reached", d->cfg.max_sandboxes);

        /* Everything the request names is opened and checked before anything is created. */
        struct opened *o = malloc(sizeof *o);
        if (!o)
                return ns_err(err, ENOMEM, "out of memory");
        if ((r = open_request(d, owner, req, o, err)) < 0) {
                opened_close(o);
                free(o);
                return r;
        }
        /* A warm-pool sandbox has the host layer and no disk limit: anything else is built fresh. */
        enum net_mode mode = NET_NONE;
        (void) net_mode_parse(req->net, &mode); /* checked by check_limits */
        bool poolable = req->n_layers == 0 && req->disk == 0 && req->n_overlays == 0;
        /* Queued creates come first: a later one never overtakes them. */
        struct sbx_sandbox *s = poolable && !d->waiting ? pool_take(d, mode) : NULL;
        if (s) {
                struct sbx_opened x = extras_of(o);
                r = handout(d, s, owner, req, &x, err);
                goto out;
        }
        /* Why queue rather than build here: a build on the loop blocks it for the kernel work and
         * init's READY (every other client and exec waits), while the pool's builds run in the
         * zygotes, one per CPU, in parallel.  Only when the pool's builds can make room for it:
         * there is a pool, the queue is not full, and the slots it and the pool take stay under
         * the limit (pool_wants builds for the queue); otherwise built here, as before. */
        if (poolable && c && d->cfg.warm_pool && d->n_waiting < SBX_MAX_WAITING &&
            d->n_sandboxes + d->n_pool + d->n_waiting < d->cfg.max_sandboxes) {
                r = waiter_add(d, c, owner, mode, rq, o, err);
                goto out;
        }
        uint32_t slot = 0;
        if ((r = free_slot(d, &slot, err)) < 0)
                goto out;
        if (!(s = calloc(1, sizeof *s))) {
                r = ns_err(err, ENOMEM, "out of memory");
                goto out;
        }
        *s = (struct sbx_sandbox){ .d = d, .slot = slot, .init_pidfd = -1, .ctl_fd = -1, .build_fd = -1, .next_proc = 1 };
        set_identity(s, owner, req);
        if ((r = new_id(s->id, err)) < 0)
                goto out_free;
        struct cg_limits lim = limits_of(req);
        if ((r = spawn(d, s, o, &lim, req->disk, false, err)) < 0)
                goto out_free;
        /* Counted from here: a failure below destroys it like any other sandbox. */
        sandbox_link(d, s);
        struct ictl_hdr h = { 0 };
        char msg[NS_ERROR_MSG_MAX];
        size_t mlen;
        if ((r = recv_ictl(s->ctl_fd, &h, msg, sizeof msg, &mlen, INIT_READY_TIMEOUT_MS)) < 0)
                r = ns_err_sys(err, -r, "waiting for the sandbox's init");
        else if ((r = check_ready(&h, msg, err)) == 0 && (r = ns_proc_starttime(s->init_pid, &s->init_start, err)) == 0 &&
                 (r = add_net(s, req, err)) == 0 && (r = add_connects(s, req, err)) == 0 &&
                 (r = add_publishes(s, req, err)) == 0 &&
                 (r = state_save(s, err)) == 0)
                r = watch_init(s, err);
        if (r < 0) {
                sandbox_destroy(s);
                goto out;
        }
        goto out;
out_free:
        free(s);
out:
        opened_close(o);
        free(o);
        if (r == 0)
                *out = s;
        return r;
}

/* ---- the warm pool's side of the lifecycle ------------------------------------------------- */

static void on_pool_ctl(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct sbx_sandbox *s = data;
        struct ictl_hdr h = { 0 };
        char msg[NS_ERROR_MSG_MAX];
        size_t mlen;
        ns_error err = { 0 };
        int r = recv_ictl(fd, &h, msg, sizeof msg, &mlen, 0);
        if (r == -ETIMEDOUT || r == -EAGAIN)
                return;
        if (r < 0 || check_ready(&h, msg, &err) < 0) {
                fprintf(stderr, "<4>warm-pool sandbox %s failed: %s\n", s->id, r < 0 ? strerror(-r) : err.msg);
                struct sbx_daemon *d = s->d;
                if (r < 0)
                        ns_err(&err, -r, "the sandbox's init: %s", strerror(-r));
                sandbox_destroy(s);
                sandbox_waiting_fail_one(d, &err);
                return;
        }
        ns_loop_remove(loop, s->w_ctl);
        s->w_ctl = ns_loop_add(loop, s->ctl_fd, EPOLLIN, on_init_ctl, s, &err);
        if (!s->w_ctl) {
                sandbox_destroy(s);
                return;
        }
        s->pool_ready = true;
}

/* What a builder reports: 0 and the init's pid and start time (with its pidfd and control socket
 * attached), or the error of a build it has already undone. */
struct build_report {
        int32_t code;
        int32_t pid;
        uint64_t start;
        int32_t ready;   /* init's READY was read by the builder (a build with a pair) */
        int32_t ifindex; /* the pair's host end */
        char msg[NS_ERROR_MSG_MAX];
};

/* The builder: a process other than the daemon's (the zygote, or a child forked for the purpose
 * without one) that does a pool sandbox's kernel work (upper dirs, cgroup, user namespace, the
 * clone of init) while the daemon's loop goes on serving.  init is cloned as the builder's
 * sibling, a child of the daemon, which reaps and watches it like any other.  The caller runs at
 * the lowest priority (pool_zygote_start, builder_fork). */
/* For a build with a pair: init's READY read here, then the pair made (its inner end must be made
 * after init's set-up turned IPv6 off for new links in the namespace). */
static int build_pool_net(struct sbx_sandbox *s, const struct net_pair_plan *net, int *ifindex, ns_error *err) {
        struct ictl_hdr h = { 0 };
        char msg[NS_ERROR_MSG_MAX];
        size_t mlen;
        int r = recv_ictl(s->ctl_fd, &h, msg, sizeof msg, &mlen, INIT_READY_TIMEOUT_MS);
        if (r < 0)
                return ns_err_sys(err, -r, "waiting for the sandbox's init");
        if ((r = check_ready(&h, msg, err)) < 0)
                return r;
        _cleanup_close_ int netns = open_netns(s, err);
        if (netns < 0)
                return netns;
        return net_make_pair(net, netns, ifindex, err);
}

static void build_pool_sandbox(struct sbx_sandbox *s, const struct net_pair_plan *net, int report_fd) {
        struct sbx_daemon *d = s->d;
        /* Not calloc: in the zygote the page stays shared with the inits it clones, and 64 KiB of
         * zeroed layer paths would become each one's private memory for the sandbox's life. */
        struct opened *o = malloc(sizeof *o);
        const struct cg_limits none = { 0 };
        ns_error err = { 0 };
        struct build_report rep = { 0 };
        int r = o ? 0 : ns_err(&err, ENOMEM, "out of memory");
        if (r == 0) {
                o->ws_fd = -1;
                o->n_binds = 0;
                o->lowers[0] = d->host_layer;
                o->n_lowers = 1;
                o->host_usr = true;
                o->n_usr_lowers = 0;
                o->n_overlays = 0;
                o->ov_paths = NULL;
                r = spawn(d, s, o, &none, 0, true, &err);
        }
        free(o);
        /* Recorded at once (as a pool sandbox): a restart after a crash destroys it, never adopts it. */
        if (r == 0 && ((r = ns_proc_starttime(s->init_pid, &s->init_start, &err)) < 0 || (r = state_save(s, &err)) < 0 ||
                       (net && (r = build_pool_net(s, net, &rep.ifindex, &err)) < 0))) {
                kill_init(s->init_pidfd, s->init_pid, false);
                cg_kill(d->cg, s->id, NULL);
                cg_wait_empty(d->cg, s->id, 2000, NULL);
                cg_destroy(d->cg, s->id, NULL);
                fsdel_tree_at(d->upper_fd, s->id, NULL);
                struct sockaddr_un sa;
                if (init_socket_path(d, s->id, &sa, NULL) == 0)
                        unlink(sa.sun_path);
                state_remove(d, s->id);
        }
        rep.code = r < 0 ? (err.code ? err.code : EIO) : 0;
        rep.ready = net != NULL;
        rep.pid = (int32_t) s->init_pid;
        rep.start = s->init_start;
        snprintf(rep.msg, sizeof rep.msg, "%s", err.msg);
        struct iovec iov = { &rep, sizeof rep };
        int fds[2] = { s->init_pidfd, s->ctl_fd };
        (void) ns_send_fds(report_fd, &iov, 1, fds, r == 0 ? 2 : 0, 0);
        if (s->init_pidfd >= 0)
                close(s->init_pidfd);
        if (s->ctl_fd >= 0)
                close(s->ctl_fd);
}

void sandbox_build_pool(struct sbx_daemon *d, const char *id, uint32_t slot, const struct net_pair_plan *net, int nice,
                        bool idle, int report_fd) {
        struct sbx_sandbox s = { .d = d, .slot = slot, .init_pidfd = -1, .ctl_fd = -1, .build_fd = -1,
                                 .next_proc = 1, .pooled = true, .owner = (uid_t) -1, .nice = nice,
                                 .idle_build = idle };
        snprintf(s.id, sizeof s.id, "%s", id);
        build_pool_sandbox(&s, net, report_fd);
}

/* Take the builder's report: on success the sandbox gets its init and waits for READY. */
static int collect_build(struct sbx_sandbox *s, bool wait, ns_error *err) {
        struct sbx_daemon *d = s->d;
        struct build_report rep = { 0 };
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(sizeof(int) * 2)];
        } cbuf;
        struct iovec iov = { &rep, sizeof rep };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
        ssize_t n;
        while ((n = recvmsg(s->build_fd, &mh, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT))) < 0 && errno == EINTR)
                ;
        if (n < 0 && errno == EAGAIN)
                return -EAGAIN;
        int fds[2] = { -1, -1 };
        size_t nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                int fd;
                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                                if (nfds < 2)
                                        fds[nfds++] = fd;
                                else
                                        close(fd);
                        }
        ns_loop_remove(d->loop, s->w_build);
        s->w_build = NULL;
        close(s->build_fd);
        s->build_fd = -1;
        pool_zygote_done(d, s->zygote);
        s->zygote = -1;
        /* It exits right after reporting (or has died): reap it, if it is ours (the zygote's
         * builders are the zygote's). */
        while (s->builder > 0 && waitpid(s->builder, NULL, __WALL) < 0 && errno == EINTR)
                ;
        s->builder = 0;
        if (n != (ssize_t) sizeof rep || rep.code || nfds != 2 || rep.pid <= 0) {
                for (size_t i = 0; i < nfds; i++)
                        close(fds[i]);
                rep.msg[sizeof rep.msg - 1] = '\0';
                return ns_err(err, rep.code > 0 && rep.code < 4096 ? rep.code : EIO, "%s",
                              n == (ssize_t) sizeof rep ? rep.msg : "the builder died");
        }
        s->init_pid = rep.pid;
        s->init_start = rep.start;
        s->init_pidfd = fds[0];
        s->ctl_fd = fds[1];
        if (s->net.mode != NET_NONE)
                net_commit(d->net, &s->net, rep.ifindex);
        s->w_pidfd = ns_loop_add(d->loop, s->init_pidfd, EPOLLIN, on_init_exit, s, err);
        s->w_ctl = s->w_pidfd ? ns_loop_add(d->loop, s->ctl_fd, EPOLLIN, rep.ready ? on_init_ctl : on_pool_ctl, s, err)
                              : NULL;
        if (s->w_ctl && rep.ready)
                s->pool_ready = true;
        return s->w_ctl ? 0 : -err->code;
}

/* A build that produced nothing left nothing behind (the builder undid it): only the slot and
 * the record in memory go. */
static void build_failed(struct sbx_sandbox *s) {
        struct sbx_daemon *d = s->d;
        if (s->init_pidfd >= 0) { /* built, but not watchable: a normal destruction */
                sandbox_destroy(s);
                return;
        }
        for (struct sbx_sandbox **pp = &d->pool; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        d->n_pool--;
                        break;
                }
        net_unreserve(d->net, &s->net); /* the builder deleted whatever pair it made */
        d->slots[s->slot] = 0;
        sandbox_free(s);
}

static void on_pool_built(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct sbx_sandbox *s = data;
        ns_error err = { 0 };
        int r = collect_build(s, false, &err);
        if (r == -EAGAIN)
                return;
        if (r < 0) {
                fprintf(stderr, "<4>warm pool: %s\n", err.msg);
                struct sbx_daemon *d = s->d;
                d->pool_retry_at = ns_now_ms() + 1000;
                build_failed(s);
                sandbox_waiting_fail_one(d, &err);
        }
}

int sandbox_prestart(struct sbx_daemon *d, enum net_mode net, ns_error *err) {
        uint32_t slot = 0;
        int r = free_slot(d, &slot, err);
        if (r < 0)
                return r;
        struct sbx_sandbox *s = calloc(1, sizeof *s);
        if (!s)
                return ns_err(err, ENOMEM, "out of memory");
        *s = (struct sbx_sandbox){ .d = d, .slot = slot, .init_pidfd = -1, .ctl_fd = -1, .build_fd = -1,
                                   .next_proc = 1, .pooled = true, .owner = (uid_t) -1, .pool_net = net,
                                   .zygote = -1, .pool_deadline = ns_now_ms() + INIT_READY_TIMEOUT_MS };
        int sp[2] = { -1, -1 };
        if ((r = new_id(s->id, err)) < 0 ||
            (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0 && (r = ns_err_sys(err, errno, "socketpair")) < 0)) {
                free(s);
                return r;
        }
        /* By the zygote when there is one: its memory is the daemon's as it was at start-up, so
         * the inits it clones share those pages instead of each keeping its own copy of whatever
         * the busy daemon has changed since. */
        struct net_pair_plan plan;
        if (net != NET_NONE && (r = net_reserve(d->net, net, &s->net, &plan, err)) < 0) {
                close(sp[0]);
                close(sp[1]);
                free(s);
                return r;
        }
        const struct net_pair_plan *with_net = net != NET_NONE ? &plan : NULL;
        int z = pool_zygote_build(d, s->id, s->slot, with_net, sp[1]);
        bool via_zygote = z >= 0;
        s->zygote = via_zygote ? z : -1;
        pid_t pid = via_zygote ? 0 : fork();
        if (pid < 0) {
                r = ns_err_sys(err, errno, "fork the pool builder");
                close(sp[0]);
                close(sp[1]);
                net_unreserve(d->net, &s->net);
                free(s);
                return r;
        }
        if (!via_zygote && pid == 0) {
                close(sp[0]);
                prctl(PR_SET_NAME, "nsd-builder");
                errno = 0;
                s->nice = getpriority(PRIO_PROCESS, 0);
                s->idle_build = errno == 0 && setpriority(PRIO_PROCESS, 0, 19) == 0;
                build_pool_sandbox(s, with_net, sp[1]);
                _exit(0);
        }
        close(sp[1]);
        s->builder = pid;
        s->build_fd = sp[0];
        sandbox_link(d, s); /* takes the slot */
        s->w_build = ns_loop_add(d->loop, s->build_fd, EPOLLIN, on_pool_built, s, err);
        if (!s->w_build) {
                r = -err->code;
                ns_error e2;
                if (collect_build(s, true, &e2) < 0)
                        build_failed(s);
                else
                        sandbox_destroy(s);
                return r;
        }
        return 0;
}

static void pending_fail(struct sbx_pending *p, int code, const char *msg) {
        ns_error e;
        ns_err(&e, code, "%s", msg);
        if (p->client)
                server_reply_error(p->client, p->req_id, &e);
        if (p->caller_fd >= 0)
                close(p->caller_fd);
        free(p);
}

/* The part of a destruction that waits for init's death: its cgroup, upper layer, disk image and
 * record, and the uid range, which stays taken until no process of the sandbox can hold it. */
static void sandbox_finish(struct sbx_sandbox *s) {
        struct sbx_daemon *d = s->d;
        if (s->dying) {
                for (struct sbx_sandbox **pp = &d->dying; *pp; pp = &(*pp)->next)
                        if (*pp == s) {
                                *pp = s->next;
                                break;
                        }
                ns_loop_remove(d->loop, s->w_pidfd);
        }
        if (s->init_pidfd >= 0) {
                /* Our own child unless we were restarted since its creation. */
                siginfo_t si;
                waitid(P_PIDFD, (id_t) s->init_pidfd, &si, WEXITED | WNOHANG);
                close(s->init_pidfd);
        }
        /* Its uid slot is free from here: the cgroup and upper layer still to go are named by the
         * id, not the slot, and nothing can reach them any more. */
        if (!(s->snap && snapshot_take_over(s, slot_uid(d, s->slot))) && pool_zygote_clean(d, s->id) < 0)
                sandbox_remove_leftovers(d, s->id);
        d->slots[s->slot] = 0;
        sandbox_free(s);
}

void sandbox_remove_leftovers(struct sbx_daemon *d, const char *id) {
        cg_kill(d->cg, id, NULL);
        cg_wait_empty(d->cg, id, 2000, NULL);
        cg_destroy(d->cg, id, NULL);
        fsdel_tree_at(d->upper_fd, id, NULL);
        disk_remove(d->upper_fd, id);
        state_remove(d, id);
}

static void on_init_dead(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        sandbox_finish(data);
}

void sandbox_destroy(struct sbx_sandbox *s) {
        struct sbx_daemon *d = s->d;
        if (s->build_fd >= 0) {
                /* Still with its builder, which is bounded (no waits on the sandbox): let it finish
                 * so that whatever it made is known, then destroy that. */
                ns_error err;
                if (collect_build(s, true, &err) < 0) {
                        build_failed(s);
                        return;
                }
        }
        struct sbx_sandbox **head = s->pooled ? &d->pool : &d->sandboxes;
        for (struct sbx_sandbox **pp = head; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        if (s->pooled)
                                d->n_pool--;
                        else
                                d->n_sandboxes--;
                        break;
                }
        ports_sandbox_remove(d->ports, s->id);
        net_detach(d->net, &s->net);
        s->net.mode = NET_NONE;
        ns_loop_remove(d->loop, s->w_pidfd);
        ns_loop_remove(d->loop, s->w_ctl);
        s->w_pidfd = s->w_ctl = NULL;
        /* Thaw first: a frozen cgroup would hold the kill until thawed. */
        if (s->frozen)
                cg_freeze(d->cg, s->id, false, 1000, NULL);
        /* Init is pid 1 of the sandbox's pid namespace, which every process of the sandbox is in:
         * its death makes the kernel kill and reap all of them before the pidfd reports it.  So
         * the cgroup-wide kill, which waits on the kernel's global cgroup lock (milliseconds
         * while builds and teardowns elsewhere hold it), stays off this loop: the teardown after
         * init's death repeats it for good measure.  Without a pidfd there is nothing else.
         * Init keeps its priority: the kill of everything else happens in its exit path, so a
         * lowered init would be the sandbox's slowest process to go. */
        if (s->init_pidfd < 0 || pidfd_send_signal(s->init_pidfd, SIGKILL, NULL, 0) < 0)
                cg_kill(d->cg, s->id, NULL);
        if (s->ctl_fd >= 0)
                close(s->ctl_fd);
        s->ctl_fd = -1;
        /* Without its socket the sandbox can no longer be re-adopted by a restarted daemon: from
         * here on it is gone for every client, whatever happens to us. */
        struct sockaddr_un sa;
        if (init_socket_path(d, s->id, &sa, NULL) == 0)
                unlink(sa.sun_path);
        while (s->pending) {
                struct sbx_pending *p = s->pending;
                s->pending = p->next;
                pending_fail(p, ECANCELED, "the sandbox was destroyed");
        }
        for (struct sbx_proc *p = s->procs; p; p = p->next)
                if (!p->exited && p->notify) {
                        cJSON *n = cJSON_CreateObject();
                        cJSON_AddStringToObject(n, "notice", "exit");
                        cJSON_AddStringToObject(n, "sandbox", s->id);
                        cJSON_AddNumberToObject(n, "proc", (double) p->id);
                        cJSON_AddNumberToObject(n, "code", -1);
                        cJSON_AddNumberToObject(n, "signal", SIGKILL);
                        cJSON_AddBoolToObject(n, "destroyed", true);
                        server_notice(p->notify, n);
                }
        /* Tearing down init's namespaces takes the kernel milliseconds (more than the rest of a
         * destroy): the remainder runs when its pidfd says it is dead, off this request. */
        struct pollfd pfd = { .fd = s->init_pidfd, .events = POLLIN };
        if (s->init_pidfd >= 0 && poll(&pfd, 1, 0) == 0) {
                s->w_pidfd = ns_loop_add(d->loop, s->init_pidfd, EPOLLIN, on_init_dead, s, NULL);
                if (s->w_pidfd) {
                        s->dying = true;
                        s->next = d->dying;
                        d->dying = s;
                        return;
                }
                poll(&pfd, 1, 2000);
        }
        sandbox_finish(s);
}

void sandbox_reap_all(struct sbx_daemon *d) {
        while (d->pool) {
                /* A private pool sandbox's pair is deleted now rather than with its namespace
                 * (which the kernel tears down later, asynchronously): at exit no link of ours may
                 * be left, or the rules would stay behind (net_free). */
                net_delete(d->net, &d->pool->net);
                d->pool->net.mode = NET_NONE;
                sandbox_destroy(d->pool);
        }
        while (d->dying) {
                struct pollfd pfd = { .fd = d->dying->init_pidfd, .events = POLLIN };
                poll(&pfd, 1, 2000);
                sandbox_finish(d->dying);
        }
}

/* ---- talking to init ------------------------------------------------------------------------ */

static int ictl_send(struct sbx_sandbox *s, uint32_t type, uint32_t flags, uint64_t proc, uint64_t a, uint64_t b,
                     const void *payload, size_t len, int fd, ns_error *err) {
        if (s->ctl_fd < 0)
                return ns_err(err, ENOTCONN, "the sandbox's init is not connected");
        struct ictl_hdr h = { .type = type, .flags = flags, .proc = proc, .a = a, .b = b };
        struct iovec iov[2] = { { &h, sizeof h }, { (void *) payload, len } };
        /* Bounded: a sandbox that stops reading its control socket only hurts itself. */
        int r = ns_send_fds(s->ctl_fd, iov, len ? 2 : 1, &fd, fd >= 0, MSG_DONTWAIT);
        if (r < 0)
                return ns_err_sys(err, -r, "send to init");
        return 0;
}

static struct sbx_pending *pending_add(struct sbx_sandbox *s, struct sbx_client *c, int64_t id, enum ns_op op,
                                       uint64_t proc, int caller_fd) {
        struct sbx_pending *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        *p = (struct sbx_pending){ .client = c, .req_id = id, .op = op, .proc = proc, .caller_fd = caller_fd };
        struct sbx_pending **tail = &s->pending;
        while (*tail)
                tail = &(*tail)->next;
        *tail = p;
        return p;
}

static struct sbx_pending *pending_take(struct sbx_sandbox *s, enum ns_op op, uint64_t proc) {
        for (struct sbx_pending **pp = &s->pending; *pp; pp = &(*pp)->next)
                if ((*pp)->op == op && (*pp)->proc == proc) {
                        struct sbx_pending *p = *pp;
                        *pp = p->next;
                        return p;
                }
        return NULL;
}

static struct sbx_proc *proc_find(struct sbx_sandbox *s, uint64_t id) {
        for (struct sbx_proc *p = s->procs; p; p = p->next)
                if (p->id == id)
                        return p;
        return NULL;
}

static int stream_pair(int *mine, int *theirs, ns_error *err) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return ns_err_sys(err, errno, "socketpair");
        *mine = sp[0];
        *theirs = sp[1];
        return 0;
}

/* Before a --root exec: /usr writable, i.e. an overlay (a sandbox built with a read-only /usr gets
 * it now; see mount_usr_is_lazy).  Asked of the sandbox itself, so that it holds for sandboxes
 * built with layers or a disk limit, and after a restart of the daemon. */
static int usr_make_writable(struct sbx_sandbox *s, ns_error *err) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/root", (int) s->init_pid);
        _cleanup_close_ int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int) s->init_pid);
        _cleanup_close_ int userns = open(path, O_RDONLY | O_CLOEXEC);
        /* Opened by pid: only if init is still alive afterwards did the pid name it. */
        struct pollfd pfd = { .fd = s->init_pidfd, .events = POLLIN };
        if (root < 0 || userns < 0 || s->init_pidfd < 0 || poll(&pfd, 1, 0) != 0)
                return ns_err(err, ESRCH, "the sandbox's init is gone");
        struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
        _cleanup_close_ int usr = (int) syscall(SYS_openat2, root, "usr", &how, sizeof how);
        struct statfs sf;
        if (usr < 0 || fstatfs(usr, &sf) < 0)
                return ns_err_sys(err, errno, "the sandbox's /usr");
        if (sf.f_type != OVERLAYFS_SUPER_MAGIC) {
                char upper[NS_PATH_MAX];
                snprintf(upper, sizeof upper, "%s/%s", s->d->cfg.upper_dir, s->id);
                _cleanup_close_ int dir = openat(s->d->upper_fd, s->id, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int r = dir < 0 ? ns_err_sys(err, errno, "open upper %s", s->id)
                                : make_overlay_dirs(dir, "usr", slot_uid(s->d, s->slot), err);
                if (r >= 0)
                        r = pool_usr_overlay(s->init_pidfd, userns, s->d->scaffold, upper, err);
                if (r < 0)
                        return ns_err_wrap(err, "make /usr writable");
        }
        s->usr_rw = true;
        return 0;
}

int sandbox_exec(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, const struct ns_exec_req *req,
                 ns_error *err) {
        if (s->frozen)
                return ns_err(err, EBUSY, "the sandbox is frozen");
        int r;
        if (req->root && !s->usr_rw && (r = usr_make_writable(s, err)) < 0)
                return r;
        size_t need = sizeof(struct ictl_exec);
        const char *cwd = req->cwd ? req->cwd : (s->workspace[0] ? "/workspace" : "/");
        need += strlen(cwd) + 1;
        for (size_t i = 0; i < req->argc; i++)
                need += strlen(req->argv[i]) + 1;
        for (size_t i = 0; i < req->envc; i++)
                need += strlen(req->env[i]) + 1;
        /* Defaults the process would otherwise lack; the caller's values win. */
        const char *defaults[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                   req->root ? "HOME=/root" : "HOME=/home/agent", req->root ? "USER=root" : "USER=agent",
                                   req->tty ? "TERM=xterm-256color" : NULL };
        size_t n_def = 0;
        const char *def_use[ARRAY_SIZE(defaults)];
        for (size_t i = 0; i < ARRAY_SIZE(defaults); i++) {
                if (!defaults[i])
                        continue;
                size_t kl = strchr(defaults[i], '=') - defaults[i];
                bool have = false;
                for (size_t j = 0; j < req->envc && !have; j++)
                        have = strncmp(req->env[j], defaults[i], kl + 1) == 0;
                if (!have) {
                        def_use[n_def++] = defaults[i];
                        need += strlen(defaults[i]) + 1;
                }
        }
        if (need + sizeof(struct ictl_hdr) > ICTL_MAX_MSG)
                return ns_err(err, E2BIG, "argv and env are too large");
        _cleanup_free_ char *buf = malloc(need);
        if (!buf)
                return ns_err(err, ENOMEM, "out of memory");
        struct ictl_exec ex = { .argc = (uint32_t) req->argc, .envc = (uint32_t) (req->envc + n_def) };
        memcpy(buf, &ex, sizeof ex);
        char *w = buf + sizeof ex;
        w = stpcpy(w, cwd) + 1;
        for (size_t i = 0; i < req->argc; i++)
                w = stpcpy(w, req->argv[i]) + 1;
        for (size_t i = 0; i < n_def; i++)
                w = stpcpy(w, def_use[i]) + 1;
        for (size_t i = 0; i < req->envc; i++)
                w = stpcpy(w, req->env[i]) + 1;

        int mine = -1, theirs = -1;
        r = stream_pair(&mine, &theirs, err);
        if (r < 0)
                return r;
        uint64_t proc = s->next_proc++;
        uint32_t flags = (req->root ? ICTL_EXEC_ROOT : 0) | (req->tty ? ICTL_EXEC_TTY : 0) | (req->tied ? ICTL_EXEC_TIED : 0);
        r = ictl_send(s, ICTL_EXEC, flags, proc, req->timeout_ms, (uint64_t) req->rows << 16 | req->cols, buf, need,
                      theirs, err);
        close(theirs);
        if (r < 0 || !pending_add(s, client, req_id, NS_OP_EXEC, proc, mine)) {
                close(mine);
                return r < 0 ? r : ns_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

int sandbox_attach(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, uint64_t proc, uint64_t from,
                   ns_error *err) {
        int mine = -1, theirs = -1;
        int r = stream_pair(&mine, &theirs, err);
        if (r < 0)
                return r;
        r = ictl_send(s, ICTL_ATTACH, 0, proc, from, 0, NULL, 0, theirs, err);
        close(theirs);
        if (r < 0 || !pending_add(s, client, req_id, NS_OP_ATTACH, proc, mine)) {
                close(mine);
                return r < 0 ? r : ns_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

int sandbox_signal(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, uint64_t proc, int sig,
                   ns_error *err) {
        int r = ictl_send(s, ICTL_SIGNAL, 0, proc, (uint64_t) sig, 0, NULL, 0, -1, err);
        if (r < 0)
                return r;
        if (!pending_add(s, client, req_id, NS_OP_SIGNAL, proc, -1))
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

static cJSON *exit_json(const struct sbx_proc *p) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "proc", (double) p->id);
        cJSON_AddNumberToObject(o, "code", WIFEXITED(p->wstatus) ? WEXITSTATUS(p->wstatus) : -1);
        cJSON_AddNumberToObject(o, "signal", WIFSIGNALED(p->wstatus) ? WTERMSIG(p->wstatus) : 0);
        cJSON_AddBoolToObject(o, "oom", p->flags & NS_EXIT_OOM);
        cJSON_AddBoolToObject(o, "timed_out", p->flags & NS_EXIT_TIMEOUT);
        return o;
}

int sandbox_wait(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, uint64_t proc, ns_error *err) {
        struct sbx_proc *p = proc_find(s, proc);
        if (!p)
                return ns_err(err, ENOENT, "no process %llu in sandbox %s", (unsigned long long) proc, s->id);
        if (p->exited) {
                server_reply(client, req_id, exit_json(p), -1);
                return 0;
        }
        if (!pending_add(s, client, req_id, NS_OP_WAIT, proc, -1))
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

int sandbox_freeze(struct sbx_sandbox *s, bool frozen, ns_error *err) {
        int r = cg_freeze(s->d->cg, s->id, frozen, 5000, err);
        if (r < 0)
                return r;
        s->frozen = frozen;
        return 0;
}

void sandbox_forget_client(struct sbx_daemon *d, struct sbx_client *c) {
        /* Its ephemeral sandboxes go with it.  sandbox_destroy unlinks: start over after each. */
        for (struct sbx_sandbox *s = d->sandboxes; s;) {
                if (s->ephemeral && s->holder == c) {
                        s->holder = NULL;
                        sandbox_destroy(s);
                        s = d->sandboxes;
                } else {
                        s = s->next;
                }
        }
        for (struct sbx_sandbox *s = d->sandboxes; s; s = s->next) {
                for (struct sbx_pending *p = s->pending; p; p = p->next)
                        if (p->client == c)
                                p->client = NULL;
                for (struct sbx_proc *p = s->procs; p; p = p->next)
                        if (p->notify == c)
                                p->notify = NULL;
        }
}

static void proc_exited(struct sbx_sandbox *s, uint64_t id, int wstatus, uint32_t init_flags) {
        struct sbx_proc *p = proc_find(s, id);
        if (!p) {
                if (!(p = calloc(1, sizeof *p)))
                        return;
                p->id = id;
                p->next = s->procs;
                s->procs = p;
        }
        if (p->exited)
                return;
        p->exited = true;
        p->wstatus = wstatus;
        p->flags = init_flags & NS_EXIT_TIMEOUT;
        /* Only the kernel knows about the OOM killer: a SIGKILL that came with a new oom_kill event
         * in the sandbox's cgroup is reported as out of memory. */
        uint64_t ooms = 0;
        if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL && !(p->flags & NS_EXIT_TIMEOUT) &&
            cg_oom_kills(s->d->cg, s->id, &ooms, NULL) == 0 && ooms > s->oom_seen) {
                s->oom_seen = ooms;
                p->flags |= NS_EXIT_OOM;
        }
        ictl_send(s, ICTL_EXIT_INFO, 0, id, p->flags & NS_EXIT_OOM, 0, NULL, 0, -1, NULL);
        struct sbx_pending *w;
        while ((w = pending_take(s, NS_OP_WAIT, id))) {
                if (w->client)
                        server_reply(w->client, w->req_id, exit_json(p), -1);
                free(w);
        }
        if (p->notify) {
                cJSON *n = exit_json(p);
                cJSON_AddStringToObject(n, "notice", "exit");
                cJSON_AddStringToObject(n, "sandbox", s->id);
                server_notice(p->notify, n);
        }
        /* Remember a bounded number of exits for later `wait`s. */
        s->n_exited_kept++;
        if (s->n_exited_kept > EXITED_KEPT_MAX) {
                struct sbx_proc **pp = &s->procs, **oldest = NULL;
                for (; *pp; pp = &(*pp)->next)
                        if ((*pp)->exited)
                                oldest = pp;
                if (oldest) {
                        struct sbx_proc *o = *oldest;
                        *oldest = o->next;
                        free(o);
                        s->n_exited_kept--;
                }
        }
}

static void on_init_msg(struct sbx_sandbox *s, const struct ictl_hdr *h, const char *payload, size_t len) {
        struct sbx_pending *p;
        switch (h->type) {
        case ICTL_EXEC_OK:
                if (!(p = pending_take(s, NS_OP_EXEC, h->proc)))
                        return;
                {
                        struct sbx_proc *sp = calloc(1, sizeof *sp);
                        if (sp) {
                                sp->id = h->proc;
                                sp->pid = (pid_t) h->a;
                                sp->notify = p->client;
                                sp->next = s->procs;
                                s->procs = sp;
                        }
                        if (p->client) {
                                cJSON *o = cJSON_CreateObject();
                                cJSON_AddNumberToObject(o, "proc", (double) h->proc);
                                cJSON_AddNumberToObject(o, "pid", (double) (h->a & 0x7fffffff));
                                server_reply(p->client, p->req_id, o, p->caller_fd);
                        }
                        close(p->caller_fd);
                        free(p);
                }
                return;
        case ICTL_EXEC_FAIL:
        case ICTL_ATTACH_FAIL:
        case ICTL_SIGNAL_FAIL: {
                enum ns_op op = h->type == ICTL_EXEC_FAIL ? NS_OP_EXEC : h->type == ICTL_ATTACH_FAIL ? NS_OP_ATTACH : NS_OP_SIGNAL;
                if (!(p = pending_take(s, op, h->proc)))
                        return;
                int code = h->a > 0 && h->a < 4096 ? (int) h->a : EIO;
                char msg[NS_ERROR_MSG_MAX];
                if (len)
                        snprintf(msg, sizeof msg, "%.*s", (int) (len < 200 ? len : 200), payload);
                else
                        snprintf(msg, sizeof msg, "%s: %s", ns_op_name(op), code == ENOENT ? "no such process" : strerror(code));
                pending_fail(p, code, msg);
                return;
        }
        case ICTL_ATTACH_OK:
                if (!(p = pending_take(s, NS_OP_ATTACH, h->proc)))
                        return;
                if (p->client) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddNumberToObject(o, "proc", (double) h->proc);
                        server_reply(p->client, p->req_id, o, p->caller_fd);
                }
                close(p->caller_fd);
                free(p);
                return;
        case ICTL_SIGNAL_OK:
                if (!(p = pending_take(s, NS_OP_SIGNAL, h->proc)))
                        return;
                if (p->client)
                        server_reply(p->client, p->req_id, cJSON_CreateObject(), -1);
                free(p);
                return;
        case ICTL_EXITED:
                proc_exited(s, h->proc, (int) h->a, (uint32_t) h->b);
                return;
        case ICTL_PROC:
                if (!proc_find(s, h->proc)) {
                        struct sbx_proc *sp = calloc(1, sizeof *sp);
                        if (!sp)
                                return;
                        sp->id = h->proc;
                        sp->pid = (pid_t) h->a;
                        sp->next = s->procs;
                        s->procs = sp;
                }
                if (h->proc >= s->next_proc)
                        s->next_proc = h->proc + 1;
                if (h->flags & ICTL_PROC_EXITED)
                        proc_exited(s, h->proc, (int) h->b, h->flags & ICTL_PROC_TIMED_OUT ? NS_EXIT_TIMEOUT : 0);
                return;
        case ICTL_HELLO_DONE:
                s->adopting = false;
                if (h->a < (UINT64_C(1) << 53) && h->a >= s->next_proc)
                        s->next_proc = h->a + 1;
                return;
        default:
                return; /* unknown or out-of-place messages from inside are ignored */
        }
}

static void on_init_ctl(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct sbx_sandbox *s = data;
        char buf[ICTL_MAX_MSG];
        for (int i = 0; i < 64; i++) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        /* init went away; on_init_exit cleans up */
                        ns_loop_remove(loop, s->w_ctl);
                        s->w_ctl = NULL;
                        return;
                }
                if ((size_t) n < sizeof(struct ictl_hdr) || (size_t) n > sizeof buf)
                        continue;
                struct ictl_hdr h;
                memcpy(&h, buf, sizeof h);
                on_init_msg(s, &h, buf + sizeof h, (size_t) n - sizeof h);
        }
}

static void on_init_exit(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        /* init died (it never exits on its own): everything in the sandbox is gone with it. */
        sandbox_destroy(data);
}

/* ---- restart ----------------------------------------------------------------------------- */

static int adopt_one(struct sbx_daemon *d, const char *id, ns_error *err) {
        struct sbx_sandbox *s = calloc(1, sizeof *s);
        if (!s)
                return ns_err(err, ENOMEM, "out of memory");
        s->d = d;
        s->init_pidfd = -1;
        s->ctl_fd = -1;
        s->build_fd = -1;
        s->next_proc = 1;
        int r = state_load(d, id, s, err);
        if (r < 0 || s->slot >= d->n_slots || d->slots[s->slot]) {
                free(s);
                return r < 0 ? r : ns_err(err, EINVAL, "bad slot in state of %s", id);
        }
        /* The recorded pid is trusted only if it is still the process we started: open a pidfd
         * first, then compare the start time, so a reused pid is never signalled. */
        uint64_t start = 0;
        s->init_pidfd = pidfd_open(s->init_pid, 0);
        if (s->init_pidfd < 0 || ns_proc_starttime(s->init_pid, &start, err) < 0 || start != s->init_start) {
                if (s->init_pidfd >= 0)
                        close(s->init_pidfd);
                s->init_pidfd = -1;
                r = ns_err(err, ESRCH, "init of %s is gone", id);
                goto gone;
        }
        struct sockaddr_un sa;
        if ((r = init_socket_path(d, id, &sa, err)) < 0)
                goto gone;
        s->ctl_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s->ctl_fd < 0 || connect(s->ctl_fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                r = ns_err_sys(err, errno, "connect to init of %s", id);
                goto gone;
        }
        if (s->pooled) {
                /* A warm-pool sandbox nobody was given: destroyed, never adopted. */
                r = ns_err(err, ESTALE, "warm-pool sandbox %s of an earlier run", id);
                goto gone;
        }
        if (s->ephemeral) {
                /* Its creator's connection died with the earlier daemon. */
                r = ns_err(err, ESTALE, "ephemeral sandbox %s of an earlier run", id);
                goto gone;
        }
        s->adopted = true;
        sandbox_link(d, s);
        net_adopt(d->net, &s->net);
        if ((r = watch_init(s, err)) < 0) {
                sandbox_destroy(s);
                return r;
        }
        cg_oom_kills(d->cg, s->id, &s->oom_seen, NULL);
        int netns = open_netns(s, NULL);
        size_t n = s->n_connects;
        s->n_connects = 0;
        for (size_t i = 0; i < n && netns >= 0; i++)
                if (ports_connect_add(d->ports, s->id, netns, &s->connects[i], s->owner, NULL) == 0)
                        s->connects[s->n_connects++] = s->connects[i];
        /* Published ports come back on the same host ports when they are still free. */
        size_t np = s->n_publishes;
        s->n_publishes = 0;
        for (size_t i = 0; i < np && netns >= 0; i++) {
                uint16_t hp = 0;
                if (ports_publish_add(d->ports, s->id, netns, s->publishes[i].port, s->publishes[i].host_port, &hp,
                                      NULL) == 0)
                        s->publishes[s->n_publishes++] = (struct ns_publish){ s->publishes[i].port, hp };
        }
        if (netns >= 0)
                close(netns);
        s->adopting = true;
        ictl_send(s, ICTL_HELLO, 0, 0, 0, 0, NULL, 0, -1, NULL);
        return 0;
gone:
        /* Its processes are gone; leave nothing of it behind. */
        sandbox_link(d, s);
        sandbox_destroy(s);
        return r;
}

void sandbox_adopt_all(struct sbx_daemon *d) {
        char dir[NS_PATH_MAX];
        snprintf(dir, sizeof dir, "%s/sandboxes", d->cfg.state_dir);
        _cleanup_closedir_ DIR *dh = opendir(dir);
        if (!dh)
                return;
        struct dirent *de;
        while ((de = readdir(dh))) {
                size_t l = strlen(de->d_name);
                if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
                        continue;
                char id[NS_ID_MAX + 1];
                if (l - 5 > NS_ID_MAX)
                        continue;
                memcpy(id, de->d_name, l - 5);
                id[l - 5] = '\0';
                if (!ns_id_is_valid(id))
                        continue;
                ns_error err;
                if (adopt_one(d, id, &err) < 0)
                        fprintf(stderr, "<4>sandbox %s not re-adopted: %s\n", id, err.msg);
                else
                        fprintf(stderr, "<6>re-adopted sandbox %s\n", id);
        }
}

cJSON *sandbox_to_json(const struct sbx_sandbox *s) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", s->id);
        cJSON_AddNumberToObject(o, "created", (double) s->created);
        cJSON_AddNumberToObject(o, "uid_base", (double) slot_uid(s->d, s->slot));
        cJSON_AddBoolToObject(o, "frozen", s->frozen);
        if (s->ephemeral)
                cJSON_AddBoolToObject(o, "ephemeral", true);
        if (s->workspace[0])
                cJSON_AddStringToObject(o, "workspace", s->workspace);
        cJSON *lim = cJSON_AddObjectToObject(o, "limits");
        cJSON_AddNumberToObject(lim, "memory", (double) s->limits.memory);
        cJSON_AddNumberToObject(lim, "pids", (double) s->limits.pids);
        cJSON_AddNumberToObject(lim, "cpus", s->limits.cpu_millis / 1000.0);
        cJSON_AddNumberToObject(lim, "disk", (double) s->limits.disk);
        size_t running = 0;
        for (const struct sbx_proc *p = s->procs; p; p = p->next)
                running += !p->exited;
        cJSON_AddNumberToObject(o, "procs", (double) running);
        net_link_to_json(s->d->net, &s->net, o);
        cJSON *con = cJSON_AddArrayToObject(o, "connect");
        for (size_t i = 0; i < s->n_connects; i++)
                (void) ns_connect_to_json(con, &s->connects[i]);
        cJSON *pub = cJSON_AddArrayToObject(o, "publish");
        char addr[16];
        ports_publish_addr(s->d->ports, addr);
        for (size_t i = 0; i < s->n_publishes; i++) {
                cJSON *c = cJSON_CreateObject();
                cJSON_AddNumberToObject(c, "port", s->publishes[i].port);
                cJSON_AddStringToObject(c, "host_addr", addr);
                cJSON_AddNumberToObject(c, "host_port", s->publishes[i].host_port);
                cJSON_AddItemToArray(pub, c);
        }
        return o;
}
