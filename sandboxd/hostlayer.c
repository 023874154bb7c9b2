#include "sandboxd/hostlayer.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/fsdel.h"

#define HL_FILE_MAX (4u << 20)       /* bytes of one copied host file */
#define HL_DIR_ENTRIES_MAX 16384     /* entries of one copied host directory */
#define HL_STAMP_MAX 128

enum hl_kind {
        HL_DIR,         /* an empty directory (a mount point, or a place to write) */
        HL_HOSTLINK,    /* as the host has it: the same symlink, or an empty dir for a real dir */
        HL_FILE,        /* generated: `src` is the content */
        HL_LINK,        /* a fixed symlink: `src` is the target */
        HL_COPY,        /* a host regular file, opened with O_NOFOLLOW */
        HL_COPY_FOLLOW, /* a host regular file whose content we want even if /etc links to it */
        HL_COPY_DIR,    /* the regular files directly in a host directory */
        HL_LINK_DIR,    /* the symlinks directly in a host directory, copied as symlinks */
};

enum hl_flags {
        HL_NEED_PREV = 1u << 0,    /* only when the previous entry's path exists in the layer */
        HL_CERT_TARGETS = 1u << 1, /* HL_LINK_DIR: only targets in the dir or in the CA stores */
};

struct hl_entry {
        enum hl_kind kind;
        const char *path; /* inside the layer, relative */
        const char *src;  /* host path, generated content or link target */
        mode_t mode;
        uid_t uid;
        gid_t gid;
        unsigned flags;
};

static const char passwd_txt[] =
        "root:x:0:0:root:/root:/bin/bash\n"
        "agent:x:1000:1000:agent:/home/agent:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
static const char group_txt[] =
        "root:x:0:\n"
        "tty:x:5:\n"
        "agent:x:1000:\n"
        "nogroup:x:65534:\n";
static const char hosts_txt[] =
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n";
static const char resolv_txt[] = "# nightshift: no DNS inside the sandbox unless a connector provides one\n";
static const char nsswitch_txt[] =
        "# nightshift sandbox: local files only\n"
        "passwd:    files\n"
        "group:     files\n"
        "shadow:    files\n"
        "hosts:     files\n"
        "networks:  files\n"
        "protocols: files\n"
        "services:  files\n"
        "ethers:    files\n"
        "rpc:       files\n"
        "netgroup:  files\n";

#define D(p, m) { HL_DIR, p, NULL, m, 0, 0, 0 }
#define HOSTLINK(p) { HL_HOSTLINK, p, "/" p, 0755, 0, 0, 0 }
#define GEN(p, txt) { HL_FILE, p, txt, 0644, 0, 0, 0 }
#define COPY(p) { HL_COPY, p, "/" p, 0644, 0, 0, 0 }

/* Everything in the layer, parents before children.  Host files are copied as root-owned 0644
 * regular files; symlinks are copied only from alternatives (Debian's /usr/bin/awk, vi, editor,
 * which... point there) and from ssl/certs (OpenSSL's hashed CA lookup, the default of Python's
 * ssl module among others), whose targets are checked. */
static const struct hl_entry hl_table[] = {
        HOSTLINK("bin"), HOSTLINK("sbin"), HOSTLINK("lib"), HOSTLINK("lib64"), HOSTLINK("lib32"),
        HOSTLINK("libx32"),
        D("usr", 0755), D("proc", 0555), D("dev", 0755), D("sys", 0555), D("tmp", 01777),
        D("workspace", 0755), D("home", 0755), { HL_DIR, "home/agent", NULL, 0755, 1000, 1000, 0 },
        D("root", 0700), D("run", 0755), D("var", 0755), D("var/tmp", 01777), D("var/cache", 0755),
        D("var/lib", 0755), D("var/log", 0755), D("mnt", 0755), D("opt", 0755), D("srv", 0755),

        D("etc", 0755),
        GEN("etc/passwd", passwd_txt),
        GEN("etc/group", group_txt),
        GEN("etc/hosts", hosts_txt),
        GEN("etc/resolv.conf", resolv_txt),
        GEN("etc/nsswitch.conf", nsswitch_txt),
        GEN("etc/hostname", "sandbox\n"),
        GEN("etc/environment", ""),
        { HL_LINK, "etc/mtab", "../proc/self/mounts", 0777, 0, 0, 0 },

        D("etc/ssl", 0755), D("etc/ssl/certs", 0755),
        COPY("etc/ssl/certs/ca-certificates.crt"),
        { HL_LINK, "etc/ssl/cert.pem", "certs/ca-certificates.crt", 0777, 0, 0, HL_NEED_PREV },
        { HL_LINK_DIR, "etc/ssl/certs", "/etc/ssl/certs", 0777, 0, 0, HL_CERT_TARGETS },
        COPY("etc/ssl/openssl.cnf"),

        D("etc/alternatives", 0755),
        { HL_LINK_DIR, "etc/alternatives", "/etc/alternatives", 0777, 0, 0, 0 },

        COPY("etc/ld.so.cache"), COPY("etc/ld.so.conf"),
        D("etc/ld.so.conf.d", 0755),
        { HL_COPY_DIR, "etc/ld.so.conf.d", "/etc/ld.so.conf.d", 0644, 0, 0, 0 },

        { HL_COPY_FOLLOW, "etc/localtime", "/etc/localtime", 0644, 0, 0, 0 },
        { HL_COPY_FOLLOW, "etc/os-release", "/etc/os-release", 0644, 0, 0, 0 },
        COPY("etc/profile"), COPY("etc/bash.bashrc"), COPY("etc/inputrc"), COPY("etc/shells"),
        COPY("etc/protocols"), COPY("etc/services"), COPY("etc/mime.types"), COPY("etc/gai.conf"),
        COPY("etc/host.conf"), COPY("etc/login.defs"), COPY("etc/debian_version"), COPY("etc/timezone"),
};

/* ---- fingerprint of the table and the host inputs (FNV-1a, 64 bit) ---------------------- */

static void fp_bytes(uint64_t *h, const void *p, size_t n) {
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++) {
                *h ^= b[i];
                *h *= UINT64_C(0x100000001b3);
        }
}

static void fp_str(uint64_t *h, const char *s) {
        fp_bytes(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

static void fp_stat(uint64_t *h, const struct stat *st) {
        uint64_t v[] = { st->st_dev, st->st_ino, (uint64_t) st->st_size, (uint64_t) st->st_mode,
                         (uint64_t) st->st_mtim.tv_sec, (uint64_t) st->st_mtim.tv_nsec };
        fp_bytes(h, v, sizeof v);
}

/* lstat (and for a symlink, its target), or a "missing" mark. */
static void fp_path(uint64_t *h, int dirfd, const char *path, bool follow) {
        struct stat st;
        if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                fp_str(h, "missing");
                return;
        }
        fp_stat(h, &st);
        if (S_ISLNK(st.st_mode)) {
                char t[PATH_MAX];
                ssize_t n = readlinkat(dirfd, path, t, sizeof t - 1);
                t[n < 0 ? 0 : n] = '\0';
                fp_str(h, t);
                if (follow && fstatat(dirfd, path, &st, 0) == 0)
                        fp_stat(h, &st);
        }
}

static uint64_t fingerprint(void) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        int v = HOSTLAYER_VERSION;
        fp_bytes(&h, &v, sizeof v);
        for (size_t i = 0; i < ARRAY_SIZE(hl_table); i++) {
                const struct hl_entry *e = &hl_table[i];
                uint64_t meta[] = { e->kind, e->mode, e->uid, e->gid, e->flags };
                fp_bytes(&h, meta, sizeof meta);
                fp_str(&h, e->path);
                fp_str(&h, e->src);
                switch (e->kind) {
                case HL_HOSTLINK:
                case HL_COPY:
                case HL_COPY_FOLLOW:
                        fp_path(&h, AT_FDCWD, e->src, e->kind == HL_COPY_FOLLOW);
                        break;
                case HL_LINK_DIR:
                        /* Symlinks are replaced, never edited: the directory's mtime covers them. */
                        fp_path(&h, AT_FDCWD, e->src, false);
                        break;
                case HL_COPY_DIR: {
                        /* Files may be edited in place: every one of them counts. */
                        fp_path(&h, AT_FDCWD, e->src, false);
                        _cleanup_closedir_ DIR *d = opendir(e->src);
                        struct dirent *de;
                        while (d && (de = readdir(d)))
                                if (de->d_name[0] != '.')
                                        fp_path(&h, dirfd(d), de->d_name, false);
                        break;
                }
                default:
                        break;
                }
        }
        return h;
}

/* ---- building -------------------------------------------------------------------------- */

static int set_owner_mode(int layer, const char *path, const struct hl_entry *e, ns_error *err) {
        /* Our own fresh tree: no one else can have put a symlink in it; still, never follow. */
        if (fchownat(layer, path, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return ns_err_sys(err, errno, "chown %s", path);
        return 0;
}

static int make_dir(int layer, const char *path, mode_t mode, uid_t uid, gid_t gid, ns_error *err) {
        if (mkdirat(layer, path, 0700) < 0)
                return ns_err_sys(err, errno, "mkdir %s", path);
        _cleanup_close_ int fd = openat(layer, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", path);
        /* fchmod after creation: the umask must not eat the sticky 1777 of tmp. */
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
                return ns_err_sys(err, errno, "chown/chmod %s", path);
        return 0;
}

static int write_file(int layer, const char *path, const void *data, size_t len, mode_t mode, ns_error *err) {
        _cleanup_close_ int fd = openat(layer, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return ns_err_sys(err, errno, "create %s", path);
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return ns_err_sys(err, errno, "write %s", path);
                }
                p += n;
                len -= (size_t) n;
        }
        if (fchown(fd, 0, 0) < 0 || fchmod(fd, mode) < 0)
                return ns_err_sys(err, errno, "chown/chmod %s", path);
        return 0;
}

/* Copy the host regular file `name` beneath `srcdir` to `dst` in the layer.  Returns 0 copied,
 * 1 skipped (missing, a symlink where not followed, not a regular file), or -errno. */
static int copy_file(int srcdir, const char *name, bool follow, int layer, const char *dst, mode_t mode,
                     ns_error *err) {
        /* O_NONBLOCK: a FIFO in the host's /etc must not hang the daemon's start. */
        _cleanup_close_ int fd = openat(srcdir, name,
                                        O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
        if (fd < 0) {
                if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR || errno == ENXIO)
                        return 1;
                return ns_err_sys(err, errno, "open host %s", name);
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return ns_err_sys(err, errno, "stat host %s", name);
        if (!S_ISREG(st.st_mode))
                return 1;
        if (st.st_size > HL_FILE_MAX)
                return ns_err(err, EFBIG, "host %s is larger than %u bytes", name, HL_FILE_MAX);
        /* Read at most the bound plus one byte: a file growing meanwhile is caught too. */
        _cleanup_free_ char *buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return ns_err(err, ENOMEM, "out of memory");
        size_t have = 0, cap = (size_t) st.st_size + 1;
        for (;;) {
                if (have == cap) {
                        if (cap > HL_FILE_MAX)
                                return ns_err(err, EFBIG, "host %s is larger than %u bytes", name, HL_FILE_MAX);
                        size_t ncap = cap * 2 > HL_FILE_MAX + 1 ? HL_FILE_MAX + 1 : cap * 2;
                        char *nb = realloc(buf, ncap);
                        if (!nb)
                                return ns_err(err, ENOMEM, "out of memory");
                        buf = nb;
                        cap = ncap;
                }
                ssize_t n = read(fd, buf + have, cap - have);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return ns_err_sys(err, errno, "read host %s", name);
                }
                if (n == 0)
                        break;
                have += (size_t) n;
        }
        return write_file(layer, dst, buf, have, mode, err);
}

static int copy_host_path(const char *src, bool follow, int layer, const char *dst, mode_t mode, ns_error *err) {
        return copy_file(AT_FDCWD, src, follow, layer, dst, mode, err);
}

/* Why a check on certificate links: these are the only host symlinks besides alternatives that
 * enter the layer, so they may only name a file in the same directory or one of the CA stores. */
static bool cert_target_ok(const char *t) {
        if (!strchr(t, '/'))
                return strcmp(t, ".") != 0 && strcmp(t, "..") != 0;
        static const char *const roots[] = { "/usr/share/ca-certificates/", "/usr/local/share/ca-certificates/" };
        for (size_t i = 0; i < ARRAY_SIZE(roots); i++)
                if (strncmp(t, roots[i], strlen(roots[i])) == 0 && !strstr(t, "/../") && !strstr(t, "/./"))
                        return true;
        return false;
}

/* HL_COPY_DIR and HL_LINK_DIR: one level of a host directory. */
static int copy_dir(const struct hl_entry *e, int layer, ns_error *err) {
        _cleanup_close_ int ldir = openat(layer, e->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ldir < 0)
                return ns_err_sys(err, errno, "open %s", e->path);
        int hfd = open(e->src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (hfd < 0)
                return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0
                                                                               : ns_err_sys(err, errno, "open host %s", e->src);
        _cleanup_closedir_ DIR *d = fdopendir(hfd);
        if (!d) {
                close(hfd);
                return ns_err_sys(err, errno, "fdopendir %s", e->src);
        }
        size_t count = 0;
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (++count > HL_DIR_ENTRIES_MAX)
                        return ns_err(err, E2BIG, "host %s has more than %d entries", e->src, HL_DIR_ENTRIES_MAX);
                if (e->kind == HL_COPY_DIR) {
                        int r = copy_file(dirfd(d), de->d_name, false, ldir, de->d_name, e->mode, err);
                        if (r < 0)
                                return ns_err_wrap(err, "%s", e->src);
                        continue;
                }
                char target[PATH_MAX];
                ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof target - 1);
                if (n < 0) {
                        if (errno == EINVAL || errno == ENOENT) /* not a symlink, or gone */
                                continue;
                        return ns_err_sys(err, errno, "readlink host %s/%s", e->src, de->d_name);
                }
                target[n] = '\0';
                if ((e->flags & HL_CERT_TARGETS) && !cert_target_ok(target))
                        continue;
                if (symlinkat(target, ldir, de->d_name) < 0) {
                        if (errno == EEXIST) /* a regular file of ours already has the name */
                                continue;
                        return ns_err_sys(err, errno, "symlink %s/%s", e->path, de->d_name);
                }
                if (fchownat(ldir, de->d_name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
                        return ns_err_sys(err, errno, "chown %s/%s", e->path, de->d_name);
        }
        if (errno)
                return ns_err_sys(err, errno, "readdir %s", e->src);
        return 0;
}

static int build_entry(const struct hl_entry *e, const struct hl_entry *prev, int layer, ns_error *err) {
        if ((e->flags & HL_NEED_PREV) && prev && faccessat(layer, prev->path, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;
        switch (e->kind) {
        case HL_DIR:
                return make_dir(layer, e->path, e->mode, e->uid, e->gid, err);
        case HL_HOSTLINK: {
                struct stat st;
                if (lstat(e->src, &st) < 0)
                        return errno == ENOENT ? 0 : ns_err_sys(err, errno, "lstat host %s", e->src);
                if (S_ISDIR(st.st_mode)) /* not merged-/usr: a mount point for the host's dir */
                        return make_dir(layer, e->path, 0755, 0, 0, err);
                if (!S_ISLNK(st.st_mode))
                        return 0;
                char target[PATH_MAX];
                ssize_t n = readlink(e->src, target, sizeof target - 1);
                if (n < 0)
                        return ns_err_sys(err, errno, "readlink host %s", e->src);
                target[n] = '\0';
                if (symlinkat(target, layer, e->path) < 0)
                        return ns_err_sys(err, errno, "symlink %s", e->path);
                return set_owner_mode(layer, e->path, e, err);
        }
        case HL_FILE:
                return write_file(layer, e->path, e->src, strlen(e->src), e->mode, err);
        case HL_LINK:
                if (symlinkat(e->src, layer, e->path) < 0)
                        return ns_err_sys(err, errno, "symlink %s", e->path);
                return set_owner_mode(layer, e->path, e, err);
        case HL_COPY:
        case HL_COPY_FOLLOW: {
                int r = copy_host_path(e->src, e->kind == HL_COPY_FOLLOW, layer, e->path, e->mode, err);
                return r < 0 ? r : 0;
        }
        case HL_COPY_DIR:
        case HL_LINK_DIR:
                return copy_dir(e, layer, err);
        }
        return ns_err(err, EINVAL, "bad host layer table entry %s", e->path);
}

static bool name_ok(const char *name) {
        return name && *name && strlen(name) <= NAME_MAX - 32 && !strchr(name, '/') && strcmp(name, ".") != 0 &&
               strcmp(name, "..") != 0;
}

static bool stamp_matches(int state_dirfd, const char *name, const char *want) {
        _cleanup_close_ int layer = openat(state_dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (layer < 0)
                return false;
        _cleanup_close_ int fd = openat(layer, HOSTLAYER_STAMP, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return false;
        char have[HL_STAMP_MAX + 1];
        ssize_t n = read(fd, have, HL_STAMP_MAX);
        if (n < 0)
                return false;
        have[n] = '\0';
        return strcmp(have, want) == 0;
}

/* Delete every ".<name><suffix>*" beneath the state dir. */
static int remove_prefixed(int state_dirfd, const char *name, const char *suffix, ns_error *err) {
        char prefix[NAME_MAX + 1];
        snprintf(prefix, sizeof prefix, ".%s%s", name, suffix);
        int fd = openat(state_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open state dir");
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return ns_err_sys(err, errno, "fdopendir state dir");
        }
        for (;;) {
                bool removed = false;
                rewinddir(d);
                struct dirent *de;
                while ((de = readdir(d)))
                        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
                                int r = fsdel_tree_at(state_dirfd, de->d_name, err);
                                if (r < 0 && r != -ENOENT)
                                        return r;
                                removed = true;
                                break; /* the directory changed: rescan */
                        }
                if (!removed)
                        return 0;
        }
}

int hostlayer_build(int state_dirfd, const char *name, ns_error *err) {
        if (!name_ok(name))
                return ns_err(err, EINVAL, "bad host layer name '%s'", name ? name : "(null)");

        char stamp[HL_STAMP_MAX];
        snprintf(stamp, sizeof stamp, "nightshift host layer v%d inputs %016" PRIx64 "\n", HOSTLAYER_VERSION,
                 fingerprint());
        if (stamp_matches(state_dirfd, name, stamp))
                return 0;

        /* Temporary directories of an interrupted build. */
        int r = remove_prefixed(state_dirfd, name, ".tmp-", err);
        if (r < 0)
                return r;

        uint64_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                return ns_err_sys(err, errno ? errno : EIO, "getrandom");
        char tmp[NAME_MAX + 1];
        snprintf(tmp, sizeof tmp, ".%s.tmp-%016" PRIx64, name, rnd);
        if (mkdirat(state_dirfd, tmp, 0700) < 0)
                return ns_err_sys(err, errno, "mkdir %s", tmp);
        _cleanup_close_ int layer = openat(state_dirfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (layer < 0) {
                r = ns_err_sys(err, errno, "open %s", tmp);
                goto fail;
        }
        for (size_t i = 0; i < ARRAY_SIZE(hl_table); i++)
                if ((r = build_entry(&hl_table[i], i ? &hl_table[i - 1] : NULL, layer, err)) < 0)
                        goto fail;
        /* The stamp last: a layer that has one is complete. */
        if ((r = write_file(layer, HOSTLAYER_STAMP, stamp, strlen(stamp), 0644, err)) < 0)
                goto fail;
        if (fchown(layer, 0, 0) < 0 || fchmod(layer, 0755) < 0) {
                r = ns_err_sys(err, errno, "chmod %s", tmp);
                goto fail;
        }

        /* Swap atomically: a reader sees the old complete layer or the new complete one. */
        if (renameat2(state_dirfd, tmp, state_dirfd, name, RENAME_NOREPLACE) == 0)
                return 0;
        if (errno != EEXIST) {
                r = ns_err_sys(err, errno, "rename %s to %s", tmp, name);
                goto fail;
        }
        if (renameat2(state_dirfd, tmp, state_dirfd, name, RENAME_EXCHANGE) < 0) {
                r = ns_err_sys(err, errno, "exchange %s and %s", tmp, name);
                goto fail;
        }
        /* `tmp` now names the old layer: set it aside for hostlayer_prune (see the header). */
        char old[NAME_MAX + 1];
        snprintf(old, sizeof old, ".%s.old-%016" PRIx64, name, rnd);
        if (renameat2(state_dirfd, tmp, state_dirfd, old, RENAME_NOREPLACE) < 0) {
                r = ns_err_sys(err, errno, "move the old host layer aside");
                ns_error e2;
                fsdel_tree_at(state_dirfd, tmp, &e2);
                return r;
        }
        return 0;

fail:;
        ns_error e2;
        fsdel_tree_at(state_dirfd, tmp, &e2);
        return r;
}

int hostlayer_prune(int state_dirfd, const char *name, ns_error *err) {
        if (!name_ok(name))
                return ns_err(err, EINVAL, "bad host layer name '%s'", name ? name : "(null)");
        return remove_prefixed(state_dirfd, name, ".old-", err);
}
