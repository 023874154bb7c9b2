#include "fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Directories held open at once while deleting; deeper ones are moved up (see below). */
#define FS_DEL_MAX_DEPTH 64
/* How often one directory is rescanned when entries keep appearing in it (a live writer). */
#define FS_DEL_MAX_RESCANS 8

static bool is_single_component(const char *name) {
        return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int fs_open_dir_beneath(int dirfd, const char *name, ns_error *err) {
        if (!is_single_component(name))
                return ns_err(err, EINVAL, "not a single path component: '%s'", name ? name : "(null)");
        struct open_how how = {
                .flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
        };
        long fd;
        int tries = 0;
        /* EAGAIN: the kernel saw a concurrent rename while resolving; retry a bounded number of
         * times (a writer racing us forever must not pin this thread). */
        do
                fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
        while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 16);
        if (fd < 0)
                return ns_err_sys(err, errno, "openat2 '%s'", name);
        return (int) fd;
}

int fs_open_trusted_dir(const char *path, ns_error *err) {
        int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", path);
        return fd;
}

struct del_level {
        DIR *dir;        /* owns the descriptor of this directory */
        char *name;      /* its name within the previous level (level 0: within the caller's dirfd) */
        int rescans;
};

struct del_ctx {
        struct del_level lv[FS_DEL_MAX_DEPTH];
        int depth;
        unsigned long moved; /* counter for names of subtrees moved up */
};

static void del_pop(struct del_ctx *c) {
        struct del_level *l = &c->lv[--c->depth];
        closedir(l->dir);
        free(l->name);
        l->dir = NULL;
        l->name = NULL;
}

static int del_push(struct del_ctx *c, int parentfd, const char *name, ns_error *err) {
        int fd = fs_open_dir_beneath(parentfd, name, err);
        if (fd < 0)
                return fd;
        DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                return ns_err_sys(err, e, "fdopendir '%s'", name);
        }
        char *copy = strdup(name);
        if (!copy) {
                closedir(d);
                return ns_err(err, ENOMEM, "out of memory");
        }
        c->lv[c->depth++] = (struct del_level){ .dir = d, .name = copy };
        return 0;
}

/* `name` inside the deepest open directory is a directory but we hold as many descriptors as we
 * allow: move it (by descriptor, RENAME_NOREPLACE) into the top directory of the tree under a
 * fresh name, where a later pass of the top level will find it. */
static int del_move_up(struct del_ctx *c, const char *name, ns_error *err) {
        int from = dirfd(c->lv[c->depth - 1].dir), to = dirfd(c->lv[0].dir);
        for (int tries = 0; tries < 100; tries++) {
                char fresh[64];
                snprintf(fresh, sizeof fresh, ".ns-del-%lu", c->moved++);
                if (syscall(SYS_renameat2, from, name, to, fresh, RENAME_NOREPLACE) == 0) {
                        /* The top level's readdir may already be past the new name: rescan it. */
                        c->lv[0].rescans = 0;
                        return 0;
                }
                if (errno != EEXIST)
                        return ns_err_sys(err, errno, "renameat2 '%s'", name);
        }
        return ns_err(err, EEXIST, "no free name to move '%s' up", name);
}

int fs_remove_tree_at(int topfd, const char *name, ns_error *err) {
        if (!is_single_component(name))
                return ns_err(err, EINVAL, "not a single path component: '%s'", name ? name : "(null)");

        /* The root itself: a symlink or a file is simply unlinked (its target is never touched). */
        if (unlinkat(topfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR && errno != EPERM)
                return ns_err_sys(err, errno, "unlink '%s'", name);

        struct del_ctx c = { 0 };
        int r = del_push(&c, topfd, name, err);
        if (r < 0)
                return r == -ENOENT ? 0 : r;

        while (c.depth > 0) {
                struct del_level *l = &c.lv[c.depth - 1];
                int fd = dirfd(l->dir);
                errno = 0;
                struct dirent *de = readdir(l->dir);
                if (!de) {
                        if (errno != 0) {
                                r = ns_err_sys(err, errno, "readdir '%s'", l->name);
                                goto out;
                        }
                        int parentfd = c.depth == 1 ? topfd : dirfd(c.lv[c.depth - 2].dir);
                        if (unlinkat(parentfd, l->name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
                                del_pop(&c);
                                continue;
                        }
                        /* Not empty: something was added while we walked (or moved up into the
                         * top level).  Rescan a bounded number of times. */
                        if (errno == ENOTEMPTY && l->rescans++ < FS_DEL_MAX_RESCANS) {
                                rewinddir(l->dir);
                                continue;
                        }
                        r = ns_err_sys(err, errno, "rmdir '%s'", l->name);
                        goto out;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                /* unlinkat without AT_REMOVEDIR removes anything but a directory — including a
                 * symlink to a directory — and never follows the last component.  EISDIR tells us
                 * it is a real directory, with no stat/open race in between. */
                if (unlinkat(fd, de->d_name, 0) == 0 || errno == ENOENT)
                        continue;
                if (errno != EISDIR) {
                        r = ns_err_sys(err, errno, "unlink '%s'", de->d_name);
                        goto out;
                }
                if (c.depth == FS_DEL_MAX_DEPTH) {
                        r = del_move_up(&c, de->d_name, err);
                        if (r < 0)
                                goto out;
                        continue;
                }
                r = del_push(&c, fd, de->d_name, err);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        while (c.depth > 0)
                del_pop(&c);
        return r;
}
