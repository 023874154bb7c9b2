/* Cgroups on pure v2, systemd's hybrid layout and pure v1: see cgroup.h.
 *
 * Each hierarchy in use is kept open as two directory fds: the base cgroup and its
 * "nightshift-sandboxes" child; every sandbox path is reached with openat from the latter
 * (O_NOFOLLOW), never by a path string.  Controllers that share a v1 hierarchy ("cpu,cpuacct")
 * share one entry, found through the mount's device number. */
#include "sandboxd/cgroup.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

#define PARENT_NAME "nightshift-sandboxes"
#define DAEMON_NAME "daemon"
#define CG_ID_MAX 32
#define CG_MAXH 6
#define CG_V1_UNLIMITED (UINT64_C(1) << 62) /* v1 reports "no limit" as ~2^63 rounded to a page */

struct cg_hier {
        char *mnt;       /* mount point, for messages and describe */
        char *base;      /* base cgroup relative to the mount ("" = the mount's own root) */
        char devid[32];  /* major:minor of the mount: one hierarchy, one entry */
        int base_fd;     /* <mnt>/<base> */
        int dir_fd;      /* <mnt>/<base>/nightshift-sandboxes */
        bool v2;
};

struct cg_manager {
        struct cg_hier h[CG_MAXH];
        int nh;
        int v2, mem, pids, cpu, cpuacct, freezer; /* index into h, or -1 = unavailable */
        bool hybrid, pure_v2;
        char desc[320];
};

/* One cgroup mount found in mountinfo, with this process's cgroup in it. */
struct found {
        char *root, *point, *own;
        char devid[32];
};

static void found_clear(struct found *f) {
        free(f->root);
        free(f->point);
        free(f->own);
        *f = (struct found){ 0 };
}

static bool id_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;
        if (n < 1 || n > CG_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
                        return false;
        return true;
}

#define CHECK_ID(id, err)                                                               \
        do {                                                                            \
                if (!id_valid(id))                                                      \
                        return ns_err(err, EINVAL, "invalid cgroup id (want [a-z0-9-]{1,32})"); \
        } while (0)

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

static int open_dir_at(int dfd, const char *name) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Read a whole cgroup file into *out (NUL-terminated, caller frees). */
static int read_at(int dfd, const char *file, char **out) {
        _cleanup_close_ int fd = openat(dfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t cap = 512, n = 0;
        _cleanup_free_ char *buf = malloc(cap);
        for (ssize_t k = 1; buf && k;) {
                if ((k = read(fd, buf + n, cap - 1 - n)) < 0 && errno != EINTR)
                        return -errno;
                n += k > 0 ? (size_t) k : 0;
                if (n + 1 == cap) {
                        char *nb = realloc(buf, cap *= 2);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
        }
        if (!buf)
                return -ENOMEM;
        buf[n] = '\0';
        *out = TAKE_PTR(buf);
        return 0;
}

/* Write `val` to a cgroup file in one write(2) (cgroup files take one value per write). */
static int write_at(int dfd, const char *file, const char *val) {
        _cleanup_close_ int fd = openat(dfd, file, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t n = strlen(val);
        ssize_t k = write(fd, val, n);
        if (k < 0)
                return -errno;
        return (size_t) k == n ? 0 : -EIO;
}

/* "12345\n" or "max\n" (= UINT64_MAX). */
static int parse_u64(const char *s, uint64_t *out) {
        if (strncmp(s, "max", 3) == 0 && (s[3] == '\n' || s[3] == '\0' || s[3] == ' ')) {
                *out = UINT64_MAX;
                return 0;
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || (*end && *end != '\n' && *end != ' '))
                return -EINVAL;
        *out = v;
        return 0;
}

/* Value of a "key N" line in a flat-keyed file such as memory.events or cgroup.events. */
static int kv_get(const char *buf, const char *key, uint64_t *out) {
        size_t kl = strlen(key);
        for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
                        return parse_u64(p + kl + 1, out);
        return -ENOENT;
}

static int read_u64_at(int dfd, const char *file, uint64_t *out) {
        _cleanup_free_ char *buf = NULL;
        int r = read_at(dfd, file, &buf);
        return r < 0 ? r : parse_u64(buf, out);
}

static int read_key_at(int dfd, const char *file, const char *key, uint64_t *out) {
        _cleanup_free_ char *buf = NULL;
        int r = read_at(dfd, file, &buf);
        return r < 0 ? r : kv_get(buf, key, out);
}

/* Is `word` an element of the `sep`-separated list? */
static bool list_has(const char *list, const char *word, char sep) {
        size_t wl = strlen(word);
        for (const char *p = list; p; p = strchr(p, sep), p = p ? p + 1 : NULL)
                if (strncmp(p, word, wl) == 0 && (p[wl] == sep || p[wl] == '\0' || p[wl] == '\n'))
                        return true;
        return false;
}

/* Turn "/a//b/" into "a/b"; reject "." and ".." components. */
static int normalize_rel(const char *in, char **out) {
        _cleanup_free_ char *o = malloc(strlen(in) + 1);
        if (!o)
                return -ENOMEM;
        size_t n = 0;
        for (const char *p = in; *p;) {
                while (*p == '/')
                        p++;
                size_t l = strcspn(p, "/");
                if (l == 0)
                        break;
                if ((l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
                        return -EINVAL;
                if (n)
                        o[n++] = '/';
                memcpy(o + n, p, l);
                n += l;
                p += l;
        }
        o[n] = '\0';
        *out = TAKE_PTR(o);
        return 0;
}

static int pick_base(const char *override, const char *own, char **base) {
        if (!override)
                return normalize_rel(own, base);
        return (*base = strdup(override)) ? 0 : -ENOMEM;
}

/* Open <mnt>/<rel> one component at a time, never following a symlink. */
static int open_walk(const char *mnt, const char *rel) {
        _cleanup_close_ int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_free_ char *copy = strdup(rel);
        if (!copy)
                return -ENOMEM;
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int next = open_dir_at(fd, c);
                if (next < 0)
                        return next;
                close(fd);
                fd = next;
        }
        return TAKE_FD(fd);
}

/* Undo mountinfo's octal escapes (\040 etc.) in place. */
static void unescape(char *s) {
        char *w = s;
        for (char *r = s; *r; r++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w++ = (char) ((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 3;
                } else
                        *w++ = *r;
        }
        *w = '\0';
}

/* This process's cgroup in the hierarchy named by `ctrl` (NULL = cgroup2), from /proc/self/cgroup. */
static int own_cgroup(const char *ctrl, char **out) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                line[strcspn(line, "\n")] = '\0';
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = '\0';
                bool match = ctrl ? list_has(c1 + 1, ctrl, ',') : (strcmp(line, "0:") == 0 && c1[1] == '\0');
                if (match)
                        return (*out = strdup(c2 + 1)) ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

/* Find the first cgroup2 mount (ctrl NULL) or the first v1 mount holding `ctrl`, with our cgroup
 * in it.  Returns 1 when found, 0 when not, -errno on failure. */
static int find_mount(const char *ctrl, struct found *out) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                char *fld[7] = { 0 }, *save = NULL, *sep = strstr(line, " - ");
                if (!sep)
                        continue;
                *sep = '\0';
                char *tail = sep + 3;
                int n = 0;
                for (char *t = strtok_r(line, " ", &save); t && n < 5; t = strtok_r(NULL, " ", &save))
                        fld[n++] = t;
                char *fstype = strtok_r(tail, " ", &save), *src = strtok_r(NULL, " ", &save);
                char *sopts = strtok_r(NULL, " \n", &save);
                if (n < 5 || !fstype || !src || !sopts)
                        continue;
                if (ctrl ? strcmp(fstype, "cgroup") != 0 || !list_has(sopts, ctrl, ',')
                         : strcmp(fstype, "cgroup2") != 0)
                        continue;
                unescape(fld[3]);
                unescape(fld[4]);
                _cleanup_free_ char *own = NULL;
                int r = own_cgroup(ctrl, &own);
                if (r < 0)
                        return r == -ENOENT ? 0 : r;
                size_t rl = strcmp(fld[3], "/") == 0 ? 0 : strlen(fld[3]);
                if (strncmp(own, fld[3], rl) != 0 || (own[rl] != '/' && own[rl] != '\0'))
                        continue; /* a bind of another subtree: our cgroup is not under it */
                *out = (struct found){ .root = strdup(fld[3]), .point = strdup(fld[4]), .own = strdup(own + rl) };
                snprintf(out->devid, sizeof out->devid, "%s", fld[2]);
                if (!out->root || !out->point || !out->own) {
                        found_clear(out);
                        return -ENOMEM;
                }
                return 1;
        }
        return 0;
}

/* Add (or find, by device) the hierarchy of `f` with base `base` (relative, normalized). */
static int add_hier(cg_manager *m, const struct found *f, const char *base, bool v2, ns_error *err) {
        for (int i = 0; i < m->nh; i++)
                if (strcmp(m->h[i].devid, f->devid) == 0)
                        return i;
        if (m->nh == CG_MAXH)
                return ns_err(err, E2BIG, "too many cgroup hierarchies");
        struct cg_hier *h = &m->h[m->nh];
        *h = (struct cg_hier){ .mnt = strdup(f->point), .base = strdup(base), .base_fd = -1, .dir_fd = -1, .v2 = v2 };
        snprintf(h->devid, sizeof h->devid, "%s", f->devid);
        m->nh++;
        if (!h->mnt || !h->base)
                return ns_err(err, ENOMEM, "out of memory");
        h->base_fd = open_walk(h->mnt, h->base);
        if (h->base_fd < 0)
                return ns_err_sys(err, -h->base_fd, "open cgroup %s/%s", h->mnt, h->base);
        return m->nh - 1;
}

static int enable_controllers(cg_manager *m, int dfd, const char *where, ns_error *err) {
        static const char *const names[] = { "memory", "pids", "cpu" };
        const int idx[] = { m->mem, m->pids, m->cpu };
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                if (idx[i] != m->v2)
                        continue;
                char val[16];
                snprintf(val, sizeof val, "+%s", names[i]);
                int r = write_at(dfd, "cgroup.subtree_control", val);
                if (r < 0)
                        return ns_err_sys(err, -r, "enable %s in %s/cgroup.subtree_control%s", names[i], where,
                                          r == -EBUSY ? " (processes left in it? run with Delegate=yes)" : "");
        }
        return 0;
}

/* (Re)create and open <base>/nightshift-sandboxes of hierarchy i. */
static int ensure_parent(cg_manager *m, int i, ns_error *err) {
        struct cg_hier *h = &m->h[i];
        if (mkdirat(h->base_fd, PARENT_NAME, 0755) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir %s/%s/" PARENT_NAME, h->mnt, h->base);
        int fd = open_dir_at(h->base_fd, PARENT_NAME);
        if (fd < 0)
                return ns_err_sys(err, -fd, "open %s/%s/" PARENT_NAME, h->mnt, h->base);
        if (h->dir_fd >= 0)
                close(h->dir_fd);
        h->dir_fd = fd;
        return m->pure_v2 && h->v2 ? enable_controllers(m, fd, PARENT_NAME, err) : 0;
}

/* Pure v2: pick the base and move ourselves into <base>/daemon (see cg_manager_open). */
static int v2_delegate(const char *override, const struct found *f, char **base, ns_error *err) {
        _cleanup_free_ char *own = NULL;
        if (normalize_rel(f->own, &own) < 0)
                return ns_err(err, EINVAL, "bad own cgroup path %s", f->own);
        if (override) {
                *base = strdup(override);
        } else {
                char *slash = strrchr(own, '/');
                const char *last = slash ? slash + 1 : own;
                if (strcmp(last, DAEMON_NAME) == 0)
                        *base = slash ? strndup(own, (size_t) (slash - own)) : strdup("");
                else
                        *base = strdup(own);
        }
        if (!*base)
                return ns_err(err, ENOMEM, "out of memory");
        if (strcmp(own, *base) != 0)
                return 0; /* already in <base>/daemon, or not in the base at all */
        _cleanup_close_ int bfd = open_walk(f->point, *base);
        if (bfd < 0)
                return ns_err_sys(err, -bfd, "open cgroup %s/%s", f->point, *base);
        if (mkdirat(bfd, DAEMON_NAME, 0755) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir %s/%s/" DAEMON_NAME, f->point, *base);
        _cleanup_close_ int dfd = open_dir_at(bfd, DAEMON_NAME);
        char pid[24];
        snprintf(pid, sizeof pid, "%d", (int) getpid());
        int r = dfd < 0 ? dfd : write_at(dfd, "cgroup.procs", pid);
        return r < 0 ? ns_err_sys(err, -r, "move sandboxd into %s/%s/" DAEMON_NAME, f->point, *base) : 0;
}

static void describe(cg_manager *m) {
        static const char *const names[] = { "memory", "pids", "cpu", "cpuacct" };
        const int idx[] = { m->mem, m->pids, m->cpu, m->cpuacct };
        char list[96] = "";
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (idx[i] >= 0 && idx[i] != m->v2)
                        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", *list ? ", " : "", names[i]);
        if (m->pure_v2) {
                char v2l[64] = "";
                for (size_t i = 0; i < 3; i++)
                        if (idx[i] == m->v2)
                                snprintf(v2l + strlen(v2l), sizeof v2l - strlen(v2l), " %s", names[i]);
                snprintf(m->desc, sizeof m->desc, "v2:%s", *v2l ? v2l : " no controllers");
        } else if (m->hybrid)
                snprintf(m->desc, sizeof m->desc, "hybrid: cgroup2 %s for grouping, kill, freeze, events; v1 %s",
                         m->h[m->v2].mnt, list);
        else
                snprintf(m->desc, sizeof m->desc, "v1: %s%s (no cgroup2: freeze by v1 freezer, kill by pidfd)",
                         list, m->freezer >= 0 ? ", freezer" : "");
}

int cg_manager_open(cg_manager **out, const char *base_override, ns_error *err) {
        static const char *const v1names[] = { "memory", "pids", "cpu", "cpuacct", "freezer" };
        _cleanup_free_ char *override = NULL;
        if (base_override && normalize_rel(base_override, &override) < 0)
                return ns_err(err, EINVAL, "bad cgroup base %s", base_override);
        cg_manager *m = calloc(1, sizeof *m);
        if (!m)
                return ns_err(err, ENOMEM, "out of memory");
        m->v2 = m->mem = m->pids = m->cpu = m->cpuacct = m->freezer = -1;
        int *v1idx[] = { &m->mem, &m->pids, &m->cpu, &m->cpuacct, &m->freezer };
        struct found f2 = { 0 }, f1[5] = { 0 };
        bool any_v1 = false;
        int r = find_mount(NULL, &f2);
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(v1names); i++) {
                int k = find_mount(v1names[i], &f1[i]);
                r = k < 0 ? k : r;
                any_v1 |= k > 0 && i < 4;
        }
        if (r < 0) {
                r = ns_err_sys(err, -r, "read /proc/self/mountinfo or /proc/self/cgroup");
                goto fail;
        }
        m->hybrid = f2.point && any_v1;
        m->pure_v2 = f2.point && !any_v1;
        if (!f2.point && !any_v1 && !f1[4].point) {
                r = ns_err(err, EOPNOTSUPP, "no usable cgroup hierarchy is mounted");
                goto fail;
        }
        if (f2.point) {
                _cleanup_free_ char *base = NULL;
                if (m->pure_v2)
                        r = v2_delegate(override, &f2, &base, err);
                else if ((r = pick_base(override, f2.own, &base)) < 0)
                        r = ns_err(err, -r, "cgroup2 base of %s", f2.own);
                if (r < 0)
                        goto fail;
                if ((r = m->v2 = add_hier(m, &f2, base, true, err)) < 0)
                        goto fail;
        }
        if (m->pure_v2) {
                _cleanup_free_ char *ctl = NULL;
                r = read_at(m->h[m->v2].base_fd, "cgroup.controllers", &ctl);
                if (r < 0) {
                        r = ns_err_sys(err, -r, "read %s/cgroup.controllers", m->h[m->v2].mnt);
                        goto fail;
                }
                for (size_t i = 0; i < 3; i++)
                        if (list_has(ctl, v1names[i], ' '))
                                *v1idx[i] = m->v2;
                m->cpuacct = m->v2; /* cpu.stat usage_usec needs no controller */
                if ((r = enable_controllers(m, m->h[m->v2].base_fd, m->h[m->v2].base, err)) < 0)
                        goto fail;
        } else {
                for (size_t i = 0; i < ARRAY_SIZE(v1names); i++) {
                        if (!f1[i].point || (i == 4 && f2.point))
                                continue; /* the v1 freezer only when there is no cgroup2 */
                        _cleanup_free_ char *base = NULL;
                        r = pick_base(override, f1[i].own, &base);
                        if (r < 0) {
                                r = ns_err(err, -r, "cgroup base in %s", f1[i].point);
                                goto fail;
                        }
                        if ((r = *v1idx[i] = add_hier(m, &f1[i], base, false, err)) < 0)
                                goto fail;
                }
                if (m->cpuacct < 0 && m->v2 >= 0)
                        m->cpuacct = m->v2;
        }
        for (int i = 0; i < m->nh; i++)
                if ((r = ensure_parent(m, i, err)) < 0)
                        goto fail;
        describe(m);
        *out = m;
        r = 0;
fail:
        found_clear(&f2);
        for (size_t i = 0; i < ARRAY_SIZE(f1); i++)
                found_clear(&f1[i]);
        if (r < 0)
                cg_manager_free(m);
        return r;
}

void cg_manager_free(cg_manager *m) {
        if (!m)
                return;
        for (int i = 0; i < m->nh; i++) {
                struct cg_hier *h = &m->h[i];
                if (h->dir_fd >= 0) {
                        close(h->dir_fd);
                        (void) unlinkat(h->base_fd, PARENT_NAME, AT_REMOVEDIR); /* EBUSY: still in use */
                }
                if (h->base_fd >= 0)
                        close(h->base_fd);
                free(h->mnt);
                free(h->base);
        }
        free(m);
}

const char *cg_manager_describe(const cg_manager *m) {
        return m->desc;
}

bool cg_manager_is_hybrid(const cg_manager *m) {
        return m->hybrid;
}

/* The hierarchy that groups a sandbox: cgroup2, else the v1 freezer, else any. */
static int group_hier(const cg_manager *m) {
        return m->v2 >= 0 ? m->v2 : m->freezer >= 0 ? m->freezer : 0;
}

/* Open the sandbox's directory in hierarchy i. */
static int open_sb(cg_manager *m, int i, const char *id, ns_error *err) {
        int fd = open_dir_at(m->h[i].dir_fd, id);
        if (fd == -ENOENT)
                return ns_err(err, ENOENT, "cgroup %s does not exist in %s", id, m->h[i].mnt);
        return fd < 0 ? ns_err_sys(err, -fd, "open cgroup %s in %s", id, m->h[i].mnt) : fd;
}

static int set_limit(cg_manager *m, int i, const char *id, const char *file, const char *val, bool optional,
                     ns_error *err) {
        _cleanup_close_ int fd = open_sb(m, i, id, err);
        if (fd < 0)
                return fd;
        int r = write_at(fd, file, val);
        if (r == -ENOENT && optional)
                return 0;
        return r < 0 ? ns_err_sys(err, -r, "write %s to %s of cgroup %s", val, file, id) : 0;
}

static int write_limits(cg_manager *m, const char *id, const struct cg_limits *lim, ns_error *err) {
        char v[48];
        int r = 0;
        if (lim->memory_bytes) {
                bool v2 = m->h[m->mem].v2;
                snprintf(v, sizeof v, "%llu", (unsigned long long) lim->memory_bytes);
                r = set_limit(m, m->mem, id, v2 ? "memory.max" : "memory.limit_in_bytes", v, false, err);
                if (r >= 0) /* no swap: memsw (memory + swap) equal to the memory limit */
                        r = set_limit(m, m->mem, id, v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes",
                                      v2 ? "0" : v, true, err);
        }
        if (r >= 0 && lim->pids) {
                snprintf(v, sizeof v, "%llu", (unsigned long long) lim->pids);
                r = set_limit(m, m->pids, id, "pids.max", v, false, err);
        }
        if (r >= 0 && lim->cpu_quota_us) {
                uint32_t period = lim->cpu_period_us ? lim->cpu_period_us : 100000;
                if (m->h[m->cpu].v2) {
                        snprintf(v, sizeof v, "%u %u", lim->cpu_quota_us, period);
                        return set_limit(m, m->cpu, id, "cpu.max", v, false, err);
                }
                snprintf(v, sizeof v, "%u", period);
                r = set_limit(m, m->cpu, id, "cpu.cfs_period_us", v, false, err);
                snprintf(v, sizeof v, "%u", lim->cpu_quota_us);
                if (r >= 0)
                        r = set_limit(m, m->cpu, id, "cpu.cfs_quota_us", v, false, err);
        }
        return r;
}

static int check_limits(const cg_manager *m, const struct cg_limits *lim, ns_error *err) {
        if (lim->memory_bytes > INT64_MAX || lim->pids > INT32_MAX)
                return ns_err(err, EINVAL, "limit out of range");
        if (lim->cpu_quota_us && (lim->cpu_quota_us < 1000 ||
                                  (lim->cpu_period_us && (lim->cpu_period_us < 1000 || lim->cpu_period_us > 1000000))))
                return ns_err(err, EINVAL, "cpu quota must be >= 1000 us, period 1000..1000000 us");
        if ((lim->memory_bytes && m->mem < 0) || (lim->pids && m->pids < 0) || (lim->cpu_quota_us && m->cpu < 0))
                return ns_err(err, EOPNOTSUPP, "a requested limit's controller is not available (%s)", m->desc);
        return 0;
}

int cg_set_limits(cg_manager *m, const char *id, const struct cg_limits *lim, ns_error *err) {
        CHECK_ID(id, err);
        int r = check_limits(m, lim, err);
        if (r >= 0)
                r = write_limits(m, id, lim, err);
        return r < 0 ? r : 0;
}

int cg_create(cg_manager *m, const char *id, const struct cg_limits *lim, ns_error *err) {
        CHECK_ID(id, err);
        const struct cg_limits none = { 0 };
        lim = lim ? lim : &none;
        int r = check_limits(m, lim, err);
        if (r < 0)
                return r;
        bool made[CG_MAXH] = { false };
        for (int i = 0; i < m->nh && r >= 0; i++) {
                for (int attempt = 0; attempt < 3; attempt++) {
                        if (mkdirat(m->h[i].dir_fd, id, 0755) == 0) {
                                made[i] = true;
                                break;
                        }
                        if (errno != ENOENT) /* ENOENT: our parent was removed by another manager's free */
                                break;
                        if ((r = ensure_parent(m, i, err)) < 0)
                                break;
                }
                if (!made[i] && r >= 0)
                        r = ns_err_sys(err, errno, "mkdir cgroup %s in %s", id, m->h[i].mnt);
        }
        if (r >= 0)
                r = write_limits(m, id, lim, err);
        if (r < 0)
                for (int i = 0; i < m->nh; i++)
                        if (made[i])
                                (void) unlinkat(m->h[i].dir_fd, id, AT_REMOVEDIR);
        return r < 0 ? r : 0;
}

int cg_attach(cg_manager *m, const char *id, pid_t pid, ns_error *err) {
        CHECK_ID(id, err);
        if (pid <= 0)
                return ns_err(err, EINVAL, "bad pid %d", (int) pid);
        char v[24];
        snprintf(v, sizeof v, "%d", (int) pid);
        for (int i = 0; i < m->nh; i++) {
                int r = set_limit(m, i, id, "cgroup.procs", v, false, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int cg_open_procs_v2(cg_manager *m, const char *id, ns_error *err) {
        CHECK_ID(id, err);
        if (m->v2 < 0)
                return ns_err(err, EOPNOTSUPP, "no cgroup2 hierarchy");
        return open_sb(m, m->v2, id, err);
}

/* Wait until the "key N" line of cgroup.events reads `want`, woken by POLLPRI. */
static int wait_events(int sbfd, const char *key, uint64_t want, int timeout_ms, const char *id, ns_error *err) {
        _cleanup_close_ int fd = openat(sbfd, "cgroup.events", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open cgroup.events of %s", id);
        int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
        for (;;) {
                char buf[256];
                ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
                if (n < 0)
                        return ns_err_sys(err, errno, "read cgroup.events of %s", id);
                buf[n] = '\0';
                uint64_t v;
                if (kv_get(buf, key, &v) < 0)
                        return ns_err(err, EIO, "cgroup.events of %s has no \"%s\"", id, key);
                if (v == want)
                        return 0;
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return ns_err(err, ETIMEDOUT, "cgroup %s: timed out waiting for %s %llu", id, key,
                                      (unsigned long long) want);
                struct pollfd p = { .fd = fd, .events = POLLPRI };
                if (poll(&p, 1, (int) (left < 100 ? left : 100)) < 0 && errno != EINTR) /* 100: belt and braces */
                        return ns_err_sys(err, errno, "poll cgroup.events of %s", id);
        }
}

/* Poll a v1 file until `done` returns true. */
static int wait_v1(int sbfd, const char *file, bool (*done)(const char *), int timeout_ms, const char *id,
                   ns_error *err) {
        int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
        for (;;) {
                _cleanup_free_ char *buf = NULL;
                int r = read_at(sbfd, file, &buf);
                if (r < 0)
                        return ns_err_sys(err, -r, "read %s of %s", file, id);
                if (done(buf))
                        return 0;
                if (now_ms() >= deadline)
                        return ns_err(err, ETIMEDOUT, "cgroup %s: timed out waiting on %s", id, file);
                sleep_ms(5);
        }
}

static bool state_frozen(const char *s) { return strncmp(s, "FROZEN", 6) == 0; }
static bool state_thawed(const char *s) { return strncmp(s, "THAWED", 6) == 0; }
static bool procs_empty(const char *s) { return s[0] == '\0'; }

int cg_freeze(cg_manager *m, const char *id, bool frozen, int timeout_ms, ns_error *err) {
        CHECK_ID(id, err);
        int i = m->v2 >= 0 ? m->v2 : m->freezer;
        if (i < 0)
                return ns_err(err, EOPNOTSUPP, "no freezer (%s)", m->desc);
        _cleanup_close_ int fd = open_sb(m, i, id, err);
        if (fd < 0)
                return fd;
        bool v2 = m->h[i].v2;
        const char *file = v2 ? "cgroup.freeze" : "freezer.state";
        int r = write_at(fd, file, v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED"));
        if (r < 0)
                return ns_err_sys(err, -r, "write %s of %s", file, id);
        if (v2)
                return wait_events(fd, "frozen", frozen, timeout_ms, id, err);
        return wait_v1(fd, file, frozen ? state_frozen : state_thawed, timeout_ms, id, err);
}

static bool procs_has(const char *procs, pid_t pid) {
        for (const char *p = procs; *p; p += strcspn(p, "\n"), p += *p == '\n')
                if (atoi(p) == pid)
                        return true;
        return false;
}

/* One pass of the fallback kill: SIGKILL each process listed in cgroup.procs through a pidfd,
 * after checking that the pid is still listed once the pidfd is open (so that the pidfd names a
 * process of ours, not a recycled pid).  Returns how many were listed. */
static int kill_round(int sbfd) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        int r = read_at(sbfd, "cgroup.procs", &before), n = 0;
        for (const char *p = before; r >= 0 && *p; p += strcspn(p, "\n"), p += *p == '\n', n++) {
                pid_t pid = atoi(p);
                _cleanup_close_ int fd = pid > 0 ? pidfd_open(pid, 0) : -1;
                free(after);
                after = NULL;
                if (fd >= 0 && (r = read_at(sbfd, "cgroup.procs", &after)) >= 0 && procs_has(after, pid))
                        (void) pidfd_send_signal(fd, SIGKILL, NULL, 0);
        }
        return r < 0 ? r : n;
}

int cg_kill(cg_manager *m, const char *id, ns_error *err) {
        CHECK_ID(id, err);
        int g = group_hier(m);
        _cleanup_close_ int fd = open_sb(m, g, id, err);
        if (fd < 0)
                return fd;
        if (m->h[g].v2) {
                int r = write_at(fd, "cgroup.kill", "1");
                if (r != -ENOENT)
                        return r < 0 ? ns_err_sys(err, -r, "write cgroup.kill of %s", id) : 0;
        }
        /* No cgroup.kill: freeze so that nothing forks, kill every listed process, thaw so that
         * they die, and repeat until the list is empty (forks that raced the freeze, or no freezer). */
        bool froze = (m->v2 >= 0 || m->freezer >= 0) && cg_freeze(m, id, true, 1000, NULL) == 0;
        int r = 0;
        for (int round = 0; round < 200; round++) {
                if ((r = kill_round(fd)) <= 0)
                        break;
                if (froze)
                        froze = cg_freeze(m, id, false, 1000, NULL) < 0;
                sleep_ms(5);
        }
        if (froze)
                (void) cg_freeze(m, id, false, 1000, NULL);
        return r < 0 ? ns_err_sys(err, -r, "kill the processes of cgroup %s", id) : r > 0 ? ns_err(err, EBUSY, "cgroup %s: processes survive SIGKILL", id) : 0;
}

int cg_wait_empty(cg_manager *m, const char *id, int timeout_ms, ns_error *err) {
        CHECK_ID(id, err);
        int g = group_hier(m);
        _cleanup_close_ int fd = open_sb(m, g, id, err);
        if (fd < 0)
                return fd;
        if (m->h[g].v2)
                return wait_events(fd, "populated", 0, timeout_ms, id, err);
        return wait_v1(fd, "cgroup.procs", procs_empty, timeout_ms, id, err);
}

static int oom_kills(cg_manager *m, const char *id, uint64_t *out, ns_error *err) {
        *out = 0;
        if (m->mem < 0)
                return 0;
        _cleanup_close_ int fd = open_sb(m, m->mem, id, err);
        if (fd < 0)
                return fd;
        bool v2 = m->h[m->mem].v2;
        const char *file = v2 ? "memory.events" : "memory.oom_control";
        int r = read_key_at(fd, file, "oom_kill", out);
        return r < 0 ? ns_err_sys(err, -r, "read oom_kill from %s of %s", file, id) : 0;
}

int cg_oom_kills(cg_manager *m, const char *id, uint64_t *out, ns_error *err) {
        CHECK_ID(id, err);
        if (m->mem < 0)
                return ns_err(err, EOPNOTSUPP, "no memory controller (%s)", m->desc);
        return oom_kills(m, id, out, err);
}

static uint64_t limit_or_none(uint64_t v) {
        return v >= CG_V1_UNLIMITED ? 0 : v;
}

int cg_stats(cg_manager *m, const char *id, struct cg_stats *out, ns_error *err) {
        CHECK_ID(id, err);
        *out = (struct cg_stats){ 0 };
        int g = group_hier(m), r;
        _cleanup_close_ int gfd = open_sb(m, g, id, err);
        if (gfd < 0)
                return gfd;
        uint64_t v;
#define STAT_FILE(idx, file, field, xform)                                                                   \
        do {                                                                                                   \
                _cleanup_close_ int sfd = open_sb(m, (idx), id, err);                                         \
                if (sfd < 0)                                                                                   \
                        return sfd;                                                                            \
                if ((r = read_u64_at(sfd, (file), &v)) < 0)                                                   \
                        return ns_err_sys(err, -r, "read %s of %s", (file), id);                               \
                out->field = xform;                                                                            \
        } while (0)
        if (m->mem >= 0) {
                bool v2 = m->h[m->mem].v2;
                STAT_FILE(m->mem, v2 ? "memory.current" : "memory.usage_in_bytes", memory_current, v);
                STAT_FILE(m->mem, v2 ? "memory.max" : "memory.limit_in_bytes", memory_max, limit_or_none(v));
                if ((r = oom_kills(m, id, &out->oom_kills, err)) < 0)
                        return r;
        }
        if (m->pids >= 0) {
                STAT_FILE(m->pids, "pids.current", pids_current, v);
                STAT_FILE(m->pids, "pids.max", pids_max, limit_or_none(v));
        }
        if (m->cpuacct >= 0 && !m->h[m->cpuacct].v2)
                STAT_FILE(m->cpuacct, "cpuacct.usage", cpu_usage_usec, v / 1000);
#undef STAT_FILE
        if (m->cpuacct >= 0 && m->h[m->cpuacct].v2) {
                _cleanup_close_ int cfd = open_sb(m, m->cpuacct, id, err);
                if (cfd < 0)
                        return cfd;
                if ((r = read_key_at(cfd, "cpu.stat", "usage_usec", &out->cpu_usage_usec)) < 0)
                        return ns_err_sys(err, -r, "read cpu.stat of %s", id);
        }
        if (m->h[g].v2) {
                if ((r = read_key_at(gfd, "cgroup.events", "frozen", &v)) < 0)
                        return ns_err_sys(err, -r, "read cgroup.events of %s", id);
                out->frozen = v == 1;
        } else if (g == m->freezer) {
                _cleanup_free_ char *buf = NULL;
                if ((r = read_at(gfd, "freezer.state", &buf)) < 0)
                        return ns_err_sys(err, -r, "read freezer.state of %s", id);
                out->frozen = state_frozen(buf);
        }
        return 0;
}

/* rmdir, retrying EBUSY for about a second (tasks still exiting); a missing cgroup is fine. */
static int rm_cgroup(int dfd, const char *name) {
        for (int attempt = 0;; attempt++) {
                if (unlinkat(dfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY || attempt >= 100)
                        return -errno;
                sleep_ms(10);
        }
}

int cg_destroy(cg_manager *m, const char *id, ns_error *err) {
        CHECK_ID(id, err);
        int ret = 0;
        for (int i = 0; i < m->nh; i++) {
                int r = rm_cgroup(m->h[i].dir_fd, id);
                if (r < 0 && ret == 0)
                        ret = ns_err_sys(err, -r, "rmdir cgroup %s in %s", id, m->h[i].mnt);
        }
        return ret;
}
