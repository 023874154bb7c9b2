/* sandboxd/hostlayer.c: builds the host layer from this host into a temp dir (root) and checks
 * its entries, the up-to-date check, the atomic rebuild and the cleanup of interrupted builds. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/fsdel.h"
#include "sandboxd/hostlayer.h"
#include "tap.h"


static bool lstat_at(int dirfd, const char *path, struct stat *st) {
        return fstatat(dirfd, path, st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Whole content of a file (at most 4 MiB), NUL-terminated, or NULL. */
static char *slurp_at(int dirfd, const char *path, bool follow, size_t *len) {
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
        if (fd < 0)
                return NULL;
        size_t cap = 4u << 20, have = 0;
        char *buf = malloc(cap + 1);
        ssize_t n;
        while (buf && have < cap && (n = read(fd, buf + have, cap - have)) > 0)
                have += (size_t) n;
        if (buf)
                buf[have] = '\0';
        if (len)
                *len = have;
        return buf;
}

static bool same_content(int layer, const char *lpath, const char *host_path) {
        size_t a_len = 0, b_len = 0;
        _cleanup_free_ char *a = slurp_at(layer, lpath, false, &a_len);
        _cleanup_free_ char *b = slurp_at(AT_FDCWD, host_path, true, &b_len);
        return a && b && a_len == b_len && memcmp(a, b, a_len) == 0;
}

static void check_mode(int layer, const char *path, mode_t type, mode_t mode, uid_t uid, gid_t gid) {
        struct stat st;
        bool found = lstat_at(layer, path, &st);
        ok(found && (st.st_mode & S_IFMT) == type && (st.st_mode & 07777) == mode && st.st_uid == uid &&
                   st.st_gid == gid,
           "%s: type %o mode %04o owner %u:%u (have %o %04o %u:%u)", path, (unsigned) type, (unsigned) mode,
           (unsigned) uid, (unsigned) gid, found ? (unsigned) (st.st_mode & S_IFMT) : 0u,
           found ? (unsigned) (st.st_mode & 07777) : 0u, found ? (unsigned) st.st_uid : 0u,
           found ? (unsigned) st.st_gid : 0u);
}

/* Resolve a symlink chain the way the sandbox would see it: paths under /usr (and the
 * merged-/usr links) are the host's, everything else is the layer.  Returns the final absolute
 * path, or "" when the chain leaves that world or is too long. */
static void resolve_in_sandbox(int layer, const char *start, char *out, size_t cap) {
        char cur[PATH_MAX];
        snprintf(cur, sizeof cur, "%s", start);
        for (int hops = 0; hops < 16; hops++) {
                bool in_usr = strncmp(cur, "/usr/", 5) == 0;
                char target[PATH_MAX];
                ssize_t n = in_usr ? readlink(cur, target, sizeof target - 1)
                                   : readlinkat(layer, cur + 1, target, sizeof target - 1);
                if (n < 0) {
                        snprintf(out, cap, "%s", errno == EINVAL ? cur : "");
                        return;
                }
                target[n] = '\0';
                if (target[0] == '/') {
                        snprintf(cur, sizeof cur, "%s", target);
                } else {
                        char *slash = strrchr(cur, '/');
                        slash[1] = '\0';
                        size_t dl = strlen(cur), tl = strlen(target);
                        if (dl + tl >= sizeof cur)
                                break;
                        memcpy(cur + dl, target, tl + 1);
                }
        }
        snprintf(out, cap, "%s", "");
}

static void check_layer(int layer) {
        /* merged-/usr links exactly as the host has them */
        static const char *const links[] = { "bin", "sbin", "lib", "lib64", "lib32", "libx32" };
        for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
                char hp[32], ht[PATH_MAX] = "", lt[PATH_MAX] = "";
                snprintf(hp, sizeof hp, "/%s", links[i]);
                struct stat hst, lst;
                if (lstat(hp, &hst) < 0) {
                        ok(!lstat_at(layer, links[i], &lst), "%s: absent on the host, absent in the layer", links[i]);
                        continue;
                }
                if (S_ISLNK(hst.st_mode)) {
                        ssize_t a = readlink(hp, ht, sizeof ht - 1), b = readlinkat(layer, links[i], lt, sizeof lt - 1);
                        ht[a < 0 ? 0 : a] = '\0';
                        lt[b < 0 ? 0 : b] = '\0';
                        ok(b > 0 && strcmp(ht, lt) == 0, "%s -> %s as on the host", links[i], lt);
                } else {
                        ok(lstat_at(layer, links[i], &lst) && S_ISDIR(lst.st_mode), "%s: real dir on the host, mount point in the layer", links[i]);
                }
        }
        check_mode(layer, "usr", S_IFDIR, 0755, 0, 0);
        check_mode(layer, "proc", S_IFDIR, 0555, 0, 0);
        check_mode(layer, "dev", S_IFDIR, 0755, 0, 0);
        check_mode(layer, "sys", S_IFDIR, 0555, 0, 0);
        check_mode(layer, "tmp", S_IFDIR, 01777, 0, 0);
        check_mode(layer, "var/tmp", S_IFDIR, 01777, 0, 0);
        check_mode(layer, "workspace", S_IFDIR, 0755, 0, 0);
        check_mode(layer, "home/agent", S_IFDIR, 0755, 1000, 1000);
        check_mode(layer, "root", S_IFDIR, 0700, 0, 0);
        for (const char *const *d = (const char *const[]){ "run", "var/cache", "mnt", "opt", "srv", "etc", NULL }; *d; d++)
                check_mode(layer, *d, S_IFDIR, 0755, 0, 0);
        check_mode(layer, "etc/passwd", S_IFREG, 0644, 0, 0);
        check_mode(layer, "etc/group", S_IFREG, 0644, 0, 0);

        _cleanup_free_ char *passwd = slurp_at(layer, "etc/passwd", false, NULL);
        ok(passwd && strstr(passwd, "root:x:0:0:root:/root:/bin/bash\n") &&
                   strstr(passwd, "agent:x:1000:1000:agent:/home/agent:/bin/bash\n") &&
                   strstr(passwd, "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
           "passwd: root, agent 1000, nobody");
        _cleanup_free_ char *group = slurp_at(layer, "etc/group", false, NULL);
        ok(group && strstr(group, "root:x:0:") && strstr(group, "agent:x:1000:") && strstr(group, "nogroup:x:65534:") &&
                   strstr(group, "tty:x:5:"),
           "group: root, tty 5, agent 1000, nogroup");
        _cleanup_free_ char *hosts = slurp_at(layer, "etc/hosts", false, NULL);
        ok(hosts && strstr(hosts, "127.0.0.1\tlocalhost") && strstr(hosts, "::1\tlocalhost"), "hosts: localhost v4 and v6");
        _cleanup_free_ char *resolv = slurp_at(layer, "etc/resolv.conf", false, NULL);
        ok(resolv && !strstr(resolv, "nameserver"), "resolv.conf: no nameserver");
        _cleanup_free_ char *nss = slurp_at(layer, "etc/nsswitch.conf", false, NULL);
        ok(nss && strstr(nss, "hosts:     files\n") && !strstr(nss, "dns") && !strstr(nss, "systemd"), "nsswitch: files only");
        struct stat st;
        ok(lstat_at(layer, "etc/environment", &st) && S_ISREG(st.st_mode) && st.st_size == 0, "environment: empty");
        ok(!lstat_at(layer, "etc/shadow", &st) && !lstat_at(layer, "etc/gitconfig", &st) && !lstat_at(layer, "etc/npmrc", &st),
           "no shadow, gitconfig or npmrc");

        /* Copies of the host's files */
        static const char *const copies[] = { "etc/ld.so.cache", "etc/ld.so.conf", "etc/profile", "etc/bash.bashrc",
                                              "etc/services", "etc/protocols", "etc/shells", "etc/login.defs" };
        for (size_t i = 0; i < ARRAY_SIZE(copies); i++) {
                char hp[PATH_MAX];
                snprintf(hp, sizeof hp, "/%s", copies[i]);
                if (access(hp, F_OK) == 0)
                        ok(same_content(layer, copies[i], hp) && lstat_at(layer, copies[i], &st) && S_ISREG(st.st_mode) &&
                                   (st.st_mode & 07777) == 0644 && st.st_uid == 0,
                           "%s copied, root 0644", copies[i]);
        }
        ok(lstat_at(layer, "etc/localtime", &st) && S_ISREG(st.st_mode) && same_content(layer, "etc/localtime", "/etc/localtime"),
           "localtime: the content, not a link");
        ok(lstat_at(layer, "etc/os-release", &st) && S_ISREG(st.st_mode) && same_content(layer, "etc/os-release", "/etc/os-release"),
           "os-release: the content");
        if (access("/etc/ld.so.conf.d/libc.conf", F_OK) == 0)
                ok(same_content(layer, "etc/ld.so.conf.d/libc.conf", "/etc/ld.so.conf.d/libc.conf"), "ld.so.conf.d copied");

        if (access("/etc/ssl/certs/ca-certificates.crt", F_OK) == 0) {
                ok(same_content(layer, "etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"),
                   "CA bundle copied");
                char t[PATH_MAX];
                ssize_t n = readlinkat(layer, "etc/ssl/cert.pem", t, sizeof t - 1);
                t[n < 0 ? 0 : n] = '\0';
                ok(strcmp(t, "certs/ca-certificates.crt") == 0, "etc/ssl/cert.pem -> certs/ca-certificates.crt");
        }

        /* Debian's /usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk (or gawk): the chain must
         * end in the host's /usr, at something that exists. */
        if (access("/etc/alternatives/awk", F_OK) == 0) {
                char end[PATH_MAX];
                resolve_in_sandbox(layer, "/usr/bin/awk", end, sizeof end);
                ok(strncmp(end, "/usr/", 5) == 0 && access(end, X_OK) == 0, "/usr/bin/awk resolves inside the layer to %s", end);
                ok(lstat_at(layer, "etc/alternatives/awk", &st) && S_ISLNK(st.st_mode), "alternatives are symlinks");
                ok(!lstat_at(layer, "etc/alternatives/README", &st), "only symlinks from alternatives");
        }
        /* OpenSSL's hashed lookup: 1a2b3c4d.0 -> Name.pem -> /usr/share/ca-certificates/... */
        char first_hash[NAME_MAX + 1] = "";
        {
                _cleanup_closedir_ DIR *d = opendir("/etc/ssl/certs");
                struct dirent *de;
                while (d && (de = readdir(d)))
                        if (strlen(de->d_name) == 10 && strcmp(de->d_name + 8, ".0") == 0 && de->d_type == DT_LNK) {
                                snprintf(first_hash, sizeof first_hash, "%s", de->d_name);
                                break;
                        }
        }
        if (first_hash[0]) {
                char start[PATH_MAX], end[PATH_MAX];
                snprintf(start, sizeof start, "/etc/ssl/certs/%s", first_hash);
                resolve_in_sandbox(layer, start, end, sizeof end);
                ok(strncmp(end, "/usr/share/ca-certificates/", 27) == 0 && access(end, R_OK) == 0,
                   "hashed CA link %s resolves to %s", first_hash, end);
        }
        _cleanup_free_ char *stamp = slurp_at(layer, HOSTLAYER_STAMP, false, NULL);
        if (stamp && strchr(stamp, '\n'))
                *strchr(stamp, '\n') = '\0';
        ok(stamp && strncmp(stamp, "nightshift host layer v", 23) == 0, "stamp present: %s", stamp ? stamp : "(none)");
}

static int count_prefixed(int dirfd, const char *prefix) {
        _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fdopendir(TAKE_FD(fd));
        int n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
        if (d)
                closedir(d);
        return n;
}

static int count_temps(int dirfd) {
        _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fdopendir(TAKE_FD(fd));
        int n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                n += strstr(de->d_name, ".tmp-") != NULL;
        if (d)
                closedir(d);
        return n;
}

int main(void) {
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 77;
        }
        char dir[] = "/tmp/ns-test-hostlayer.XXXXXX";
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        int state = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC); /* O_PATH is enough for the API */
        ns_error e = { 0 };

        ok(hostlayer_build(state, "a/b", &e) == -EINVAL, "bad name refused");
        int r = hostlayer_build(state, "host-layer", &e);
        if (r < 0)
                printf("# %s\n", e.msg);
        ok(r == 0, "host layer built");
        _cleanup_close_ int layer = openat(state, "host-layer", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        ok(layer >= 0, "host layer is a directory");
        if (layer >= 0)
                check_layer(layer);
        ok(count_temps(state) == 0, "no temporary directory left");

        /* Up to date: kept as it is (same inode). */
        struct stat a, b;
        fstat(layer, &a);
        r = hostlayer_build(state, "host-layer", &e);
        ok(r == 0 && fstatat(state, "host-layer", &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino,
           "up-to-date layer kept");

        /* A stale stamp and the leftovers of an interrupted build: rebuilt atomically, cleaned. */
        unlinkat(layer, HOSTLAYER_STAMP, 0);
        int wfd = openat(layer, HOSTLAYER_STAMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (write(wfd, "nightshift host layer v0 inputs 0\n", 34) != 34)
                printf("# short write\n");
        close(wfd);
        mkdirat(state, ".host-layer.tmp-0123456789abcdef", 0700);
        mkdirat(state, ".host-layer.tmp-0123456789abcdef/junk", 0);
        r = hostlayer_build(state, "host-layer", &e);
        if (r < 0)
                printf("# %s\n", e.msg);
        ok(r == 0 && fstatat(state, "host-layer", &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino != b.st_ino,
           "stale layer replaced");
        ok(count_temps(state) == 0, "interrupted build's leftovers removed");
        ok(fstat(layer, &a) == 0 && a.st_nlink >= 2 && faccessat(layer, "etc/passwd", R_OK, 0) == 0,
           "old layer kept intact for sandboxes still on it");
        ok(count_prefixed(state, ".host-layer.old-") == 1, "old layer set aside as .host-layer.old-*");
        ok(hostlayer_prune(state, "host-layer", &e) == 0 && count_prefixed(state, ".host-layer.old-") == 0,
           "hostlayer_prune removes it");
        ok(fstat(layer, &a) == 0 && a.st_nlink == 0, "old layer deleted");
        ok(hostlayer_prune(state, "host-layer", &e) == 0, "prune with nothing to prune");
        close(TAKE_FD(layer));

        ok(fsdel_tree_at(state, "host-layer", &e) == 0, "layer removed");
        close(state);
        ok(rmdir(dir) == 0, "temp dir empty at the end");
        return tap_done();
}
