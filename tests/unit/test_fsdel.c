/* sandboxd/fsdel.c against hostile trees on the real filesystem (root; parts run unprivileged).
 *
 * The test runs in a mount namespace of its own, so the tmpfs it mounts to play a mount point
 * inside a tree vanishes with it whatever happens. */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/fsdel.h"
#include "fds.h"
#include "tap.h"


static void diag_err(const char *what, int r, const ns_error *e) {
        if (r < 0)
                printf("# %s: %d %s\n", what, r, e->msg);
}

static bool exists_at(int dirfd, const char *name) {
        struct stat st;
        return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int write_file_at(int dirfd, const char *name, const char *content, mode_t mode) {
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        size_t len = strlen(content);
        if (write(fd, content, len) != (ssize_t) len)
                return -EIO;
        return fchmod(fd, mode) < 0 ? -errno : 0;
}

#define CHECK(call)                                                                   \
        do {                                                                          \
                if ((call) < 0) {                                                     \
                        printf("# setup failed: %s: %s (line %d)\n", #call, strerror(errno), __LINE__); \
                        return -1;                                                    \
                }                                                                     \
        } while (0)

/* A chain of `depth` directories named "d" beneath dirfd/name, built by descriptor (no path could
 * name the bottom), with a file at the bottom. */
static int make_deep(int dirfd, const char *name, int depth) {
        CHECK(mkdirat(dirfd, name, 0755));
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(fd);
        for (int i = 0; i < depth; i++) {
                CHECK(mkdirat(fd, "d", 0755));
                int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                CHECK(next);
                fd = next;
        }
        int r = write_file_at(fd, "bottom", "x", 0644);
        close(fd);
        return r;
}

/* The hostile tree: links out, hard links, special files, modes 000, deep nesting, many files. */
static int make_hostile(int base, const char *base_path) {
        CHECK(mkdirat(base, "victim", 0755));
        _cleanup_close_ int v = openat(base, "victim", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(v);
        char abs[PATH_MAX];
        snprintf(abs, sizeof abs, "%s/outside", base_path);
        CHECK(symlinkat("../outside", v, "link-out"));
        CHECK(symlinkat(abs, v, "abs-out"));
        CHECK(symlinkat("/", v, "root-link"));
        CHECK(symlinkat("dangling/nowhere", v, "dangling"));
        CHECK(linkat(base, "outside/hardlinked", v, "hardlink", 0));
        CHECK(mkfifoat(v, "fifo", 0600));
        CHECK(mknodat(v, "sock", S_IFSOCK | 0600, 0));
        CHECK(mknodat(v, "null-dev", S_IFCHR | 0666, makedev(1, 3)));
        CHECK(mknodat(v, "blk-dev", S_IFBLK | 0600, makedev(7, 0)));
        CHECK(write_file_at(v, "file-000", "secret", 0));

        /* A mode-000 directory holding a mode-000 directory with a file and a symlink out. */
        CHECK(mkdirat(v, "locked", 0755));
        _cleanup_close_ int l = openat(v, "locked", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(l);
        CHECK(mkdirat(l, "inner", 0755));
        _cleanup_close_ int li = openat(l, "inner", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(li);
        CHECK(write_file_at(li, "f", "x", 0644));
        CHECK(symlinkat("../../../outside", li, "up-out"));
        CHECK(fchmod(li, 0));
        CHECK(fchmod(l, 0));

        /* A read-only directory and a sticky one. */
        CHECK(mkdirat(v, "ro", 0755));
        _cleanup_close_ int ro = openat(v, "ro", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(ro);
        CHECK(write_file_at(ro, "a", "a", 0444));
        CHECK(fchmod(ro, 0555));
        CHECK(mkdirat(v, "sticky", 01777));

        /* Many files, and many empty directories. */
        CHECK(mkdirat(v, "many", 0755));
        _cleanup_close_ int m = openat(v, "many", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(m);
        for (int i = 0; i < 2000; i++) {
                char n[32];
                snprintf(n, sizeof n, "f%04d", i);
                if (i % 4 == 0)
                        CHECK(mkdirat(m, n, 0755));
                else
                        CHECK(write_file_at(m, n, "y", 0644));
        }
        CHECK(make_deep(v, "deep", 10000));
        return 0;
}

static void test_hostile(int base, const char *base_path) {
        ok(mkdirat(base, "outside", 0755) == 0, "outside dir made");
        _cleanup_close_ int out = openat(base, "outside", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ok(write_file_at(out, "keep", "precious", 0644) == 0, "outside/keep written");
        ok(write_file_at(out, "hardlinked", "linked", 0644) == 0, "outside/hardlinked written");
        ok(make_hostile(base, base_path) == 0, "hostile tree built (10,000 deep, 000 modes, specials)");

        struct stat st;
        fstatat(out, "hardlinked", &st, 0);
        ok(st.st_nlink == 2, "hard link counted before");

        int fds_before = count_fds();
        ns_error e = { 0 };
        int r = fsdel_tree_at(base, "victim", &e);
        diag_err("fsdel_tree_at victim", r, &e);
        ok(r == 0, "hostile tree deleted");
        ok(!exists_at(base, "victim"), "victim is gone");
        ok(count_fds() == fds_before, "no descriptor leaked (%d before)", fds_before);

        char buf[32] = { 0 };
        _cleanup_close_ int kfd = openat(out, "keep", O_RDONLY | O_CLOEXEC);
        ok(kfd >= 0 && read(kfd, buf, sizeof buf - 1) == 8 && strcmp(buf, "precious") == 0,
           "file behind the symlinks survived intact");
        ok(fstatat(out, "hardlinked", &st, 0) == 0 && st.st_nlink == 1, "hard-linked file survived, one link left");
        ok(fstatat(base, "outside", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode),
           "directory the symlinks pointed at survived");
        ok(access("/", F_OK) == 0 && access("/usr/bin", F_OK) == 0, "the root the symlink named is intact");
}

static void test_simple_cases(int base) {
        ns_error e = { 0 };
        ok(fsdel_tree_at(base, "no-such", &e) == -ENOENT && e.code == ENOENT, "missing name: ENOENT");
        ok(fsdel_tree_at(base, "a/b", &e) == -EINVAL, "two components: EINVAL");
        ok(fsdel_tree_at(base, "..", &e) == -EINVAL, "'..': EINVAL");
        ok(fsdel_tree_at(base, "", &e) == -EINVAL, "empty name: EINVAL");

        /* The top name a symlink to a directory: the link goes, the directory stays. */
        mkdirat(base, "target", 0755);
        _cleanup_close_ int t = openat(base, "target", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        write_file_at(t, "f", "z", 0644);
        symlinkat("target", base, "toplink");
        int r = fsdel_tree_at(base, "toplink", &e);
        diag_err("toplink", r, &e);
        ok(r == 0 && !exists_at(base, "toplink") && exists_at(t, "f"), "top-level symlink unlinked, target kept");

        /* The top name a plain file. */
        write_file_at(base, "plain", "p", 0644);
        ok(fsdel_tree_at(base, "plain", &e) == 0 && !exists_at(base, "plain"), "top-level file unlinked");
        ok(fsdel_tree_at(base, "target", &e) == 0 && !exists_at(base, "target"), "plain tree deleted");
}

static void test_mount_points(int base) {
        ns_error e = { 0 };
        mkdirat(base, "mvictim", 0755);
        _cleanup_close_ int v = openat(base, "mvictim", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        mkdirat(v, "a", 0755);
        _cleanup_close_ int a = openat(v, "a", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        mkdirat(a, "mnt", 0755);
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d/mnt", a);
        if (mount("tmpfs", path, "tmpfs", 0, "size=1m") < 0) {
                printf("ok %d # SKIP mount tmpfs: %s\n", ++tap_num, strerror(errno));
                return;
        }
        {
                _cleanup_close_ int m = openat(a, "mnt", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                write_file_at(m, "precious", "p", 0644);
        }
        int r = fsdel_tree_at(base, "mvictim", &e);
        ok(r == -EXDEV, "a mount point inside the tree: EXDEV (%d: %s)", r, e.msg);
        {
                _cleanup_close_ int m = openat(a, "mnt", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ok(m >= 0 && exists_at(m, "precious"), "nothing on the mounted filesystem was touched");
        }
        /* The mount point as the top name itself. */
        r = fsdel_tree_at(a, "mnt", &e);
        ok(r == -EXDEV, "the top name a mount point: EXDEV");

        /* A bind mount of the same filesystem (same st_dev, other mount id). */
        umount2(path, MNT_DETACH);
        mkdirat(a, "bind", 0755);
        mkdirat(base, "bsrc", 0755);
        _cleanup_close_ int bs = openat(base, "bsrc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        write_file_at(bs, "precious", "p", 0644);
        char src[64], dst[64];
        snprintf(src, sizeof src, "/proc/self/fd/%d", bs);
        snprintf(dst, sizeof dst, "/proc/self/fd/%d/bind", a);
        if (mount(src, dst, NULL, MS_BIND, NULL) == 0) {
                r = fsdel_tree_at(base, "mvictim", &e);
                ok(r == -EXDEV, "a bind mount of the same filesystem inside: EXDEV");
                ok(exists_at(bs, "precious"), "bind source untouched");
                umount2(dst, MNT_DETACH);
        }
        r = fsdel_tree_at(base, "mvictim", &e);
        diag_err("mvictim after umount", r, &e);
        ok(r == 0 && !exists_at(base, "mvictim"), "deleted once unmounted");
        ok(fsdel_tree_at(base, "bsrc", &e) == 0, "bind source removed");
}

static void test_trash(int base) {
        ns_error e = { 0 };
        mkdirat(base, "trash", 0700);
        _cleanup_close_ int trash = openat(base, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        mkdirat(base, "frozen", 0755);
        _cleanup_close_ int fz = openat(base, "frozen", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        write_file_at(fz, "f", "x", 0644);
        symlinkat("/etc", fz, "etc-link");
        char name[64];
        int r = fsdel_rename_to_trash(base, "frozen", trash, name, sizeof name, &e);
        diag_err("rename_to_trash", r, &e);
        ok(r == 0 && strncmp(name, "del-", 4) == 0 && strlen(name) == 20, "renamed into the trash as %s", name);
        ok(!exists_at(base, "frozen") && exists_at(trash, name), "gone from its place, present in the trash");
        char name2[64];
        symlinkat("/etc", base, "lnk");
        r = fsdel_rename_to_trash(base, "lnk", trash, name2, sizeof name2, &e);
        struct stat st;
        ok(r == 0 && fstatat(trash, name2, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode),
           "a symlink is moved itself, not its target");
        ok(access("/etc/passwd", F_OK) == 0, "symlink target untouched");
        char small[8];
        ok(fsdel_rename_to_trash(base, "x", trash, small, sizeof small, &e) == -ENOBUFS, "small buffer: ENOBUFS");
        ok(fsdel_rename_to_trash(base, "no-such", trash, name2, sizeof name2, &e) == -ENOENT, "missing: ENOENT");
        ok(fsdel_tree_at(trash, name, &e) == 0, "trash entry deleted");
        ok(fsdel_tree_at(base, "trash", &e) == 0, "trash deleted");
}

/* An unprivileged owner deleting its own tree with 000 and read-only directories. */
static void test_unprivileged(int base) {
        mkdirat(base, "unpriv", 0755);
        fchownat(base, "unpriv", 65534, 65534, AT_SYMLINK_NOFOLLOW);
        _cleanup_close_ int u = openat(base, "unpriv", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        pid_t pid = fork();
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(2);
                mkdirat(u, "t", 0755);
                int t = openat(u, "t", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                mkdirat(t, "zero", 0755);
                int z = openat(t, "zero", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                mkdirat(z, "sub", 0755);
                write_file_at(z, "f", "x", 0644);
                fchmod(z, 0);
                mkdirat(t, "ro", 0755);
                int ro = openat(t, "ro", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                write_file_at(ro, "f", "x", 0644);
                fchmod(ro, 0555);
                if (make_deep(t, "deep", 300) < 0)
                        _exit(3);
                close(z);
                close(ro);
                close(t);
                ns_error e = { 0 };
                int r = fsdel_tree_at(u, "t", &e);
                if (r < 0)
                        printf("# unprivileged: %s\n", e.msg);
                _exit(r == 0 && !exists_at(u, "t") ? 0 : 1);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged owner deletes its own 000/0555 tree");
        ns_error e = { 0 };
        ok(fsdel_tree_at(base, "unpriv", &e) == 0, "unpriv dir removed");
}

int main(void) {
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 77;
        }
        /* A private mount namespace: test mounts vanish with the process. */
        bool own_mntns = unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;

        char base_path[] = "/tmp/ns-test-fsdel.XXXXXX";
        if (!mkdtemp(base_path)) {
                perror("mkdtemp");
                return 1;
        }
        chmod(base_path, 0711);
        int base = open(base_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        test_hostile(base, base_path);
        test_simple_cases(base);
        if (own_mntns)
                test_mount_points(base);
        else
                printf("ok %d # SKIP no private mount namespace\n", ++tap_num);
        test_trash(base);
        test_unprivileged(base);

        ns_error e = { 0 };
        ok(fsdel_tree_at(base, "outside", &e) == 0, "outside removed");
        close(base);
        int rr = rmdir(base_path);
        ok(rr == 0, "temp dir empty at the end%s%s", rr ? ": " : "", rr ? strerror(errno) : "");
        return tap_done();
}
