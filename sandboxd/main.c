/* nightshift-sandboxd: the privileged sandbox daemon.  Flags and config file, start-up checks,
 * the event loop.  Runs in the foreground and logs to stderr (journald under systemd). */
#include <fcntl.h>
#include <getopt.h>
#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "common/cleanup.h"
#include "common/conffile.h"
#include "common/log.h"
#include "sandboxd/cgroup.h"
#include "sandboxd/daemon.h"
#include "sandboxd/hostlayer.h"
#include "sandboxd/mount.h"
#include "sandboxd/nft.h"
#include "sandboxd/pool.h"
#include "sandboxd/ports.h"
#include "sandboxd/seccomp.h"

#define DEFAULT_STATE_DIR "/run/nightshift"
#define DEFAULT_UPPER_DIR "/var/lib/nightshift/sandboxes"
#define DEFAULT_WORKSPACE_ROOT "/var/lib/nightshift/workspaces"
#define DEFAULT_UID_BASE 1000000000ull

static void usage(FILE *f) {
        fputs("usage: nightshift-sandboxd [--config FILE] [--socket PATH] [--socket-group GROUP]\n"
              "         [--state-dir DIR] [--upper-dir DIR] [--workspace-root DIR] [--allow-user USER|UID]...\n"
              "         [--layers-dir DIR] [--ro-root DIR]... [--uid-base N] [--max-sandboxes N]\n"
              "         [--max-memory BYTES] [--max-pids N] [--max-cpus N] [--max-disk BYTES] [--cgroup-base PATH]\n"
              "         [--warm-pool N] [--warm-pool-private N] [--pool-builds N]\n"
              "         [--publish-addr IPV4] [--publish-range LO-HI]\n"
              "         [--net-pool CIDR|none] [--nat-uplink IFACE] [--debug]\n"
              "       nightshift-sandboxd --hold-cgroup\n",
              f);
}

/* --hold-cgroup: the main process of nightshift-sandboxes.service, a second unit with Delegate=yes
 * that is never restarted with the daemon, whose cgroup holds the sandboxes (the daemon runs with
 * --cgroup-base pointing at it).  Why: on pure cgroup v2, systemd < 254 puts a restarted unit's
 * new main process into the unit's own cgroup, which it cannot do while the previous run made
 * that cgroup an inner node with controllers enabled (sandboxes alive): the start fails with
 * 219/CGROUP.  Keeping the sandboxes in a unit of their own leaves the daemon's cgroup a plain
 * leaf that a restart can always use.  This process sets the subtree up as the daemon would its
 * own (on pure v2 it moves itself into <own cgroup>/daemon so that controllers can be enabled for
 * the sandboxes' parent), says READY=1, and waits for SIGTERM or SIGINT. */
static int hold_cgroup(void) {
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        ns_log_set_level(NS_LOG_INFO);
        ns_error err = { 0 };
        cg_manager *m = NULL;
        if (cg_manager_open(&m, NULL, &err) < 0) {
                log_error("hold the sandboxes' cgroup: %s", err.msg);
                return 1;
        }
        log_notice("holding the sandboxes' cgroups (%s)", cg_manager_describe(m));
        int nr = sd_notify(1, "READY=1\nSTATUS=holding the sandboxes' cgroups");
        if (nr < 0)
                log_warn("sd_notify READY=1: %s", strerror(-nr));
        int sig = 0;
        while (sigwait(&mask, &sig) != 0)
                ;
        log_notice("signal %d: exiting; the sandboxes' cgroups stay (the service manager stops what is in them)", sig);
        cg_manager_free(m);
        return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
        char *end;
        errno = 0;
        if (!s || !*s || *s == '-')
                return -EINVAL;
        unsigned long long v = strtoull(s, &end, 10);
        uint64_t mult = 1;
        if (*end == 'K' || *end == 'k')
                mult = 1ull << 10, end++;
        else if (*end == 'M' || *end == 'm')
                mult = 1ull << 20, end++;
        else if (*end == 'G' || *end == 'g')
                mult = 1ull << 30, end++;
        if (errno || *end || v > max / mult)
                return -EINVAL;
        *out = v * mult;
        return 0;
}

static int set_str(char **dst, const char *v) {
        free(*dst);
        *dst = strdup(v);
        return *dst ? 0 : -ENOMEM;
}

/* Apply one setting (from the command line or the config file). */
static int apply_option(struct sbx_config *c, const char *key, const char *val, ns_error *err) {
        uint64_t n;
        if (!strcmp(key, "socket"))
                return set_str(&c->socket_path, val);
        if (!strcmp(key, "state-dir"))
                return set_str(&c->state_dir, val);
        if (!strcmp(key, "upper-dir"))
                return set_str(&c->upper_dir, val);
        if (!strcmp(key, "workspace-root"))
                return set_str(&c->workspace_root, val);
        if (!strcmp(key, "layers-dir"))
                return set_str(&c->layers_dir, val);
        if (!strcmp(key, "cgroup-base"))
                return set_str(&c->cgroup_base, val);
        if (!strcmp(key, "net-pool"))
                return set_str(&c->net_pool, val);
        if (!strcmp(key, "nat-uplink")) {
                if (!nft_ifname_valid(val))
                        return ns_err(err, EINVAL, "'%s' is not an interface name", val);
                return set_str(&c->nat_uplink, val);
        }
        if (!strcmp(key, "socket-group")) {
                struct group *g = getgrnam(val);
                if (g)
                        c->socket_gid = g->gr_gid;
                else if (parse_u64(val, UINT32_MAX - 1, &n) == 0)
                        c->socket_gid = (gid_t) n;
                else
                        return ns_err(err, EINVAL, "unknown group '%s'", val);
                c->has_socket_gid = true;
                return 0;
        }
        if (!strcmp(key, "allow-user")) {
                if (c->n_allow >= SBX_MAX_ALLOW)
                        return ns_err(err, E2BIG, "too many --allow-user");
                struct passwd *pw = getpwnam(val);
                if (pw)
                        c->allow[c->n_allow++] = pw->pw_uid;
                else if (parse_u64(val, UINT32_MAX - 1, &n) == 0)
                        c->allow[c->n_allow++] = (uid_t) n;
                else
                        return ns_err(err, EINVAL, "unknown user '%s'", val);
                return 0;
        }
        if (!strcmp(key, "ro-root")) {
                if (c->n_ro_roots >= SBX_MAX_RO_ROOTS)
                        return ns_err(err, E2BIG, "too many --ro-root");
                if (val[0] != '/')
                        return ns_err(err, EINVAL, "--ro-root must be absolute");
                c->ro_roots[c->n_ro_roots] = strdup(val);
                return c->ro_roots[c->n_ro_roots++] ? 0 : -ENOMEM;
        }
        struct {
                const char *key;
                uint64_t max;
                uint64_t *dst;
        } nums[] = {
                { "uid-base", UINT32_MAX, &c->uid_base },
                { "max-memory", 1ull << 50, &c->max_memory },
                { "max-pids", 1u << 22, &c->max_pids },
                { "max-disk", 1ull << 50, &c->max_disk },
        };
        for (size_t i = 0; i < ARRAY_SIZE(nums); i++)
                if (!strcmp(key, nums[i].key)) {
                        if (parse_u64(val, nums[i].max, nums[i].dst) < 0)
                                return ns_err(err, EINVAL, "--%s: '%s' is not a number in range", key, val);
                        return 0;
                }
        if (!strcmp(key, "max-sandboxes")) {
                if (parse_u64(val, 16384, &n) < 0 || n == 0)
                        return ns_err(err, EINVAL, "--max-sandboxes must be 1..16384");
                c->max_sandboxes = (uint32_t) n;
                return 0;
        }
        if (!strcmp(key, "warm-pool")) {
                if (parse_u64(val, 64, &n) < 0)
                        return ns_err(err, EINVAL, "--warm-pool must be 0..64");
                c->warm_pool = (uint32_t) n;
                return 0;
        }
        if (!strcmp(key, "warm-pool-private")) {
                if (parse_u64(val, 64, &n) < 0)
                        return ns_err(err, EINVAL, "--warm-pool-private must be 0..64");
                c->warm_pool_private = (uint32_t) n;
                return 0;
        }
        if (!strcmp(key, "pool-builds")) {
                if (parse_u64(val, SBX_MAX_ZYGOTES, &n) < 0)
                        return ns_err(err, EINVAL, "--pool-builds must be 0..%d (0: one per CPU)", SBX_MAX_ZYGOTES);
                c->pool_builds = (uint32_t) n;
                return 0;
        }
        if (!strcmp(key, "publish-addr")) {
                struct in_addr a;
                if (inet_pton(AF_INET, val, &a) != 1)
                        return ns_err(err, EINVAL, "--publish-addr: '%s' is not an IPv4 address", val);
                c->publish_addr = a.s_addr;
                return 0;
        }
        if (!strcmp(key, "publish-range")) {
                unsigned lo, hi;
                char tail;
                if (sscanf(val, "%u-%u%c", &lo, &hi, &tail) != 2 || lo < 1 || hi > 65535 || lo > hi)
                        return ns_err(err, EINVAL, "--publish-range must be LO-HI with 1 <= LO <= HI <= 65535");
                c->publish_lo = (uint16_t) lo;
                c->publish_hi = (uint16_t) hi;
                return 0;
        }
        if (!strcmp(key, "max-cpus")) {
                char *end;
                double v = strtod(val, &end);
                if (*end || !(v >= 0.01 && v <= 1024))
                        return ns_err(err, EINVAL, "--max-cpus must be 0.01..1024");
                c->max_cpu_millis = (uint64_t) (v * 1000 + 0.5);
                return 0;
        }
        return ns_err(err, EINVAL, "unknown option '%s'", key);
}

static int apply_cb(void *ctx, const char *key, const char *val, ns_error *err) {
        return apply_option(ctx, key, val, err);
}

static int load_config(struct sbx_config *c, const char *path, ns_error *err) {
        return ns_conffile_load(path, apply_cb, c, err);
}

static bool path_is_plain(const char *p) {
        /* These paths end up in overlay mount options, where ',' ':' and '\' are separators. */
        return p[0] == '/' && !strpbrk(p, ",:\\ \t\n");
}

static int mkdir_p(const char *path, mode_t mode) {
        char buf[NS_PATH_MAX];
        snprintf(buf, sizeof buf, "%s", path);
        for (char *s = buf + 1; *s; s++)
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                                return -errno;
                        *s = '/';
                }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int daemon_setup(struct sbx_daemon *d, ns_error *err) {
        struct sbx_config *c = &d->cfg;
        if (geteuid() != 0)
                return ns_err(err, EPERM, "nightshift-sandboxd must run as root");
        const char *paths[] = { c->state_dir, c->upper_dir, c->workspace_root };
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
                if (!path_is_plain(paths[i]) || strlen(paths[i]) > 200)
                        return ns_err(err, EINVAL, "%s must be an absolute path without , : \\ or spaces", paths[i]);
        if (c->layers_dir && !path_is_plain(c->layers_dir))
                return ns_err(err, EINVAL, "--layers-dir must be an absolute path without , : \\ or spaces");
        if (c->n_allow == 0)
                c->allow[c->n_allow++] = 0;
        /* The per-sandbox uid ranges must never include root or an allowed peer. */
        uint64_t end = c->uid_base + (uint64_t) c->max_sandboxes * SBX_UID_RANGE;
        if (c->uid_base == 0 || end > UINT32_MAX)
                return ns_err(err, ERANGE, "--uid-base %llu leaves no room for %u sandboxes",
                              (unsigned long long) c->uid_base, c->max_sandboxes);
        for (size_t i = 0; i < c->n_allow; i++)
                if (c->allow[i] >= c->uid_base && c->allow[i] < end)
                        return ns_err(err, ERANGE, "allowed uid %u lies inside the sandbox uid range", (unsigned) c->allow[i]);

        int r;
        if ((r = mkdir_p(c->state_dir, 0755)) < 0)
                return ns_err_sys(err, -r, "create %s", c->state_dir);
        if ((r = mkdir_p(c->upper_dir, 0700)) < 0)
                return ns_err_sys(err, -r, "create %s", c->upper_dir);
        char p[NS_PATH_MAX];
        snprintf(p, sizeof p, "%s/sandboxes", c->state_dir);
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "create %s", p);
        d->state_fd = open(c->state_dir, O_DIRECTORY | O_CLOEXEC);
        d->upper_fd = open(c->upper_dir, O_DIRECTORY | O_CLOEXEC);
        d->ws_root_fd = open(c->workspace_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (d->state_fd < 0 || d->upper_fd < 0)
                return ns_err_sys(err, errno, "open state or upper dir");
        if (d->ws_root_fd < 0)
                return ns_err_sys(err, errno, "open workspace root %s", c->workspace_root);
        d->layers_fd = -1;
        if (c->layers_dir && (d->layers_fd = open(c->layers_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return ns_err_sys(err, errno, "open layers dir %s", c->layers_dir);
        /* Interrupted snapshots and removals of an earlier run: nothing can be using them. */
        if (d->layers_fd >= 0)
                layer_cleanup(d->layers_fd);
        for (size_t i = 0; i < c->n_ro_roots; i++)
                if ((d->ro_root_fds[i] = open(c->ro_roots[i], O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
                        return ns_err_sys(err, errno, "open --ro-root %s", c->ro_roots[i]);

        snprintf(d->scaffold, sizeof d->scaffold, "%s/scaffold", c->state_dir);
        if ((r = mount_prepare_scaffold(d->scaffold, err)) < 0)
                return r;
        if ((r = hostlayer_build(d->state_fd, "host-layer", err)) < 0)
                return ns_err_wrap(err, "host layer");
        snprintf(d->host_layer, sizeof d->host_layer, "%s/host-layer", c->state_dir);

        d->n_slots = c->max_sandboxes;
        d->slots = calloc(d->n_slots, 1);
        if (!d->slots)
                return ns_err(err, ENOMEM, "out of memory");
        if ((r = sc_filter_build(&d->filter, err)) < 0)
                return ns_err_wrap(err, "seccomp filter");
        if ((r = ns_loop_new(&d->loop, err)) < 0)
                return r;
        if ((r = cg_manager_open(&d->cg, c->cgroup_base, err)) < 0)
                return ns_err_wrap(err, "cgroups");
        if ((r = ports_new(d->loop, &d->ports, err)) < 0)
                return r;
        ports_publish_config(d->ports, (struct in_addr){ c->publish_addr }, c->publish_lo, c->publish_hi);
        return 0;
}

static void on_signal(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                        log_notice("signal %u: exiting; sandboxes keep running and are re-adopted at the next start",
                                   si.ssi_signo);
                        ns_loop_quit(loop);
                } else if (si.ssi_signo == SIGCHLD) {
                        /* As a subreaper we may be handed orphans (a forked builder's leftovers, a
                         * helper whose parent died): reap what has exited.  Every sandbox holds a
                         * pidfd of its init, so an early reaping loses nothing and no pid number
                         * is ever used after it. */
                        siginfo_t ci;
                        for (;;) {
                                ci.si_pid = 0;
                                if (waitid(P_ALL, 0, &ci, WEXITED | WNOHANG) < 0 || ci.si_pid == 0)
                                        break;
                        }
                }
        }
}

static void daemon_free(struct sbx_daemon *d) {
        server_close_all(d);
        /* Pool sandboxes are nobody's: destroyed, and destroyed sandboxes finished. */
        if (d->slots)
                sandbox_reap_all(d);
        pool_zygote_stop(d);
        snapshot_free_all(d);
        /* Sandboxes are NOT destroyed: a restarted daemon re-adopts them. */
        while (d->sandboxes) {
                struct sbx_sandbox *s = d->sandboxes;
                d->sandboxes = s->next;
                sandbox_release(s);
        }
        if (d->ports)
                ports_free(d->ports);
        net_free(d->net);
        if (d->cg)
                cg_manager_free(d->cg);
        if (d->loop) {
                ns_loop_remove(d->loop, d->sig_w);
                ns_loop_free(d->loop);
        }
        sc_filter_free(&d->filter);
        free(d->slots);
        struct sbx_config *c = &d->cfg;
        free(c->socket_path);
        free(c->state_dir);
        free(c->upper_dir);
        free(c->workspace_root);
        free(c->layers_dir);
        free(c->cgroup_base);
        free(c->net_pool);
        free(c->nat_uplink);
        for (size_t i = 0; i < c->n_ro_roots; i++) {
                free(c->ro_roots[i]);
                if (d->ro_root_fds[i] >= 0)
                        close(d->ro_root_fds[i]);
        }
        int fds[] = { d->state_fd, d->upper_fd, d->ws_root_fd, d->layers_fd, d->sig_fd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int main(int argc, char **argv) {
        struct sbx_daemon d = { .listen_fd = -1, .sig_fd = -1, .state_fd = -1, .upper_fd = -1, .ws_root_fd = -1,
                                .layers_fd = -1 };
        for (size_t i = 0; i < SBX_MAX_RO_ROOTS; i++)
                d.ro_root_fds[i] = -1;
        struct sbx_config *c = &d.cfg;
        c->uid_base = DEFAULT_UID_BASE;
        c->max_sandboxes = 1024;
        c->warm_pool = 2;
        c->warm_pool_private = 1;
        c->publish_addr = htonl(INADDR_LOOPBACK);
        c->publish_lo = 20000;
        c->publish_hi = 29999;
        ns_error err = { 0 };
        int rc = 1;

        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' }, { "socket", required_argument, NULL, 1 },
                { "socket-group", required_argument, NULL, 1 }, { "state-dir", required_argument, NULL, 1 },
                { "upper-dir", required_argument, NULL, 1 }, { "workspace-root", required_argument, NULL, 1 },
                { "allow-user", required_argument, NULL, 1 }, { "layers-dir", required_argument, NULL, 1 },
                { "ro-root", required_argument, NULL, 1 }, { "uid-base", required_argument, NULL, 1 },
                { "max-sandboxes", required_argument, NULL, 1 }, { "max-memory", required_argument, NULL, 1 },
                { "max-pids", required_argument, NULL, 1 }, { "max-cpus", required_argument, NULL, 1 },
                { "max-disk", required_argument, NULL, 1 },
                { "cgroup-base", required_argument, NULL, 1 }, { "warm-pool", required_argument, NULL, 1 },
                { "warm-pool-private", required_argument, NULL, 1 }, { "pool-builds", required_argument, NULL, 1 },
                { "publish-addr", required_argument, NULL, 1 }, { "publish-range", required_argument, NULL, 1 },
                { "net-pool", required_argument, NULL, 1 }, { "nat-uplink", required_argument, NULL, 1 },
                { "debug", no_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { 0 },
        };
        if (argc == 2 && !strcmp(argv[1], "--hold-cgroup"))
                return hold_cgroup();
        /* The config file first, so that flags override it. */
        for (int i = 1; i < argc - 1; i++)
                if (!strcmp(argv[i], "--config") && load_config(c, argv[i + 1], &err) < 0) {
                        log_error("%s", err.msg);
                        goto out;
                }
        int o, idx;
        while ((o = getopt_long(argc, argv, "", opts, &idx)) != -1) {
                switch (o) {
                case 'c':
                        break;
                case 1:
                        if (apply_option(c, opts[idx].name, optarg, &err) < 0) {
                                log_error("--%s: %s", opts[idx].name, err.msg);
                                goto out;
                        }
                        break;
                case 'd':
                        c->log_level = NS_LOG_DEBUG;
                        break;
                case 'h':
                        usage(stdout);
                        rc = 0;
                        goto out;
                case 'V':
                        printf("nightshift-sandboxd %s\n", NS_VERSION);
                        rc = 0;
                        goto out;
                default:
                        usage(stderr);
                        goto out;
                }
        }
        if (optind != argc) {
                usage(stderr);
                goto out;
        }
        if (!c->socket_path)
                c->socket_path = strdup(NS_DEFAULT_SOCKET);
        if (!c->state_dir)
                c->state_dir = strdup(DEFAULT_STATE_DIR);
        if (!c->upper_dir)
                c->upper_dir = strdup(DEFAULT_UPPER_DIR);
        if (!c->workspace_root)
                c->workspace_root = strdup(DEFAULT_WORKSPACE_ROOT);
        ns_log_set_level(c->log_level ? c->log_level : NS_LOG_INFO);

        /* Children (each sandbox's init) are reaped through their pidfds; SIGCHLD only for orphans. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        d.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

        if (daemon_setup(&d, &err) < 0) {
                log_error("%s", err.msg);
                goto out;
        }
        /* Warm-pool inits are cloned as our children by the zygote (CLONE_PARENT); whatever else
         * a builder leaves orphaned comes to us too, to be reaped rather than left to pid 1. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
                log_error("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
                goto out;
        }
        /* Before the socket, the clients and the adopted sandboxes exist: the zygote holds none
         * of their descriptors. */
        if ((c->warm_pool || c->warm_pool_private) && pool_zygote_start(&d, &err) < 0)
                log_warn("warm pool without a zygote: %s", err.msg);
        /* After the zygote (which needs none of it), before any sandbox: the rules are in place
         * before the first link can exist. */
        if (net_new(&d.net, c->net_pool, c->nat_uplink, &err) < 0) {
                log_error("%s", err.msg);
                goto out;
        }
        if (net_check_mode(d.net, NET_PRIVATE, &err) < 0)
                log_warn("%s", err.msg);
        if (server_listen(&d, &err) < 0) {
                log_error("%s", err.msg);
                goto out;
        }
        if (!(d.sig_w = ns_loop_add(d.loop, d.sig_fd, EPOLLIN, on_signal, &d, &err))) {
                log_error("%s", err.msg);
                goto out;
        }
        sandbox_adopt_all(&d);
        net_sweep(d.net);
        log_notice("nightshift-sandboxd %s listening on %s; %s", NS_VERSION, c->socket_path, cg_manager_describe(d.cg));
        /* Under systemd (Type=notify) the supervisor's unit, ordered after ours, starts once this
         * arrives: the socket listens and a previous run's sandboxes are adopted.  Without
         * NOTIFY_SOCKET it does nothing.  unset_environment = 1: nothing we start from here on has
         * any business with the service manager's socket (sandbox processes get an environment
         * built from the request anyway, never ours). */
        int nr = sd_notifyf(1, "READY=1\nSTATUS=listening on %s", c->socket_path);
        if (nr < 0)
                log_warn("sd_notify READY=1: %s", strerror(-nr));
        ns_loop_run(d.loop, pool_next_timeout, pool_tick, &d);
        rc = 0;
out:
        daemon_free(&d);
        return rc;
}
