#include "sandboxd/fsdel.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Directory descriptors kept open on the walk's stack.  Levels deeper than this are closed and
 * reopened through ".." on the way back up (verified by device and inode), so a 10,000-deep tree
 * needs no more descriptors than a shallow one. */
#define FSDEL_KEEP_FDS 32
#define FSDEL_DENTS_BUF 32768

/* Flags for every directory we open: never a symlink, never block on a FIFO swapped in. */
#define FSDEL_OPEN_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)

struct linux_dirent64 {
        uint64_t d_ino;
        int64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
};

struct level {
        int fd;          /* -1 while closed (levels deeper than FSDEL_KEEP_FDS above the top) */
        dev_t dev;
        ino_t ino;
        char *name;      /* this directory's name in its parent; NULL for the walk's root */
};

struct walk {
        struct level *lv;
        size_t n, cap;
        dev_t dev;       /* the root's device and mount: the walk never leaves them */
        uint64_t mnt_id;
        bool have_mnt_id;
        bool no_openat2; /* kernel without openat2: openat + the statx checks alone */
        char *buf;
};

static bool name_ok(const char *name) {
        return name && *name && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Open directory `name` beneath `dirfd`.  Why openat2: RESOLVE_NO_XDEV makes the kernel refuse a
 * mount point (EXDEV) in the same step as the open, so there is no window between a check and the
 * use; RESOLVE_NO_SYMLINKS and O_NOFOLLOW refuse a symlink swapped in for a directory. */
static int open_dir(struct walk *w, int dirfd, const char *name, bool dotdot) {
        if (!w->no_openat2) {
                struct open_how how = {
                        .flags = FSDEL_OPEN_FLAGS,
                        .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                                   (dotdot ? 0 : RESOLVE_BENEATH),
                };
                int fd = (int) syscall(SYS_openat2, dirfd, name, &how, sizeof how);
                if (fd >= 0 || errno != ENOSYS)
                        return fd;
                w->no_openat2 = true;
        }
        return openat(dirfd, name, FSDEL_OPEN_FLAGS);
}

/* Identity of an open directory: type, device, inode and mount id. */
static int dir_ident(int fd, dev_t *dev, ino_t *ino, uint64_t *mnt_id, bool *have_mnt_id) {
        struct statx stx;
        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO | STATX_MNT_ID, &stx) < 0)
                return -errno;
        if (!S_ISDIR(stx.stx_mode))
                return -ENOTDIR;
        *dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        *ino = stx.stx_ino;
        *have_mnt_id = (stx.stx_mask & STATX_MNT_ID) != 0;
        *mnt_id = *have_mnt_id ? stx.stx_mnt_id : 0;
        return 0;
}

static int push(struct walk *w, int fd, const char *name, ns_error *err) {
        dev_t dev;
        ino_t ino;
        uint64_t mnt_id;
        bool have_mnt;
        int r = dir_ident(fd, &dev, &ino, &mnt_id, &have_mnt);
        if (r < 0) {
                close(fd);
                return ns_err_sys(err, -r, "statx directory '%s'", name);
        }
        if (w->n == 0) {
                w->dev = dev;
                w->mnt_id = mnt_id;
                w->have_mnt_id = have_mnt;
        } else if (dev != w->dev || (w->have_mnt_id && have_mnt && mnt_id != w->mnt_id)) {
                /* Why: a bind or a filesystem mounted inside the tree is not ours to delete (it
                 * could be the host's /usr); openat2 already refuses it, this covers the
                 * no-openat2 fallback. */
                close(fd);
                return ns_err(err, EXDEV, "'%s' is a mount point: not crossing it", name);
        }
        if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 64;
                struct level *lv = realloc(w->lv, cap * sizeof *lv);
                if (!lv) {
                        close(fd);
                        return ns_err(err, ENOMEM, "out of memory");
                }
                w->lv = lv;
                w->cap = cap;
        }
        char *copy = NULL;
        if (w->n > 0 && !(copy = strdup(name))) {
                close(fd);
                return ns_err(err, ENOMEM, "out of memory");
        }
        w->lv[w->n++] = (struct level){ .fd = fd, .dev = dev, .ino = ino, .name = copy };
        /* Slide the window of open descriptors. */
        if (w->n > FSDEL_KEEP_FDS) {
                struct level *old = &w->lv[w->n - 1 - FSDEL_KEEP_FDS];
                if (old->fd >= 0) {
                        close(old->fd);
                        old->fd = -1;
                }
        }
        return 0;
}

/* Make sure the parent of the top level is open.  Why verify: ".." is resolved by the kernel at
 * the moment of the call; had the directory been moved meanwhile it would lead elsewhere, so the
 * result must be the very directory (device and inode) we descended from. */
static int reopen_parent(struct walk *w, ns_error *err) {
        struct level *child = &w->lv[w->n - 1], *parent = &w->lv[w->n - 2];
        if (parent->fd >= 0)
                return 0;
        int fd = open_dir(w, child->fd, "..", true);
        if (fd < 0)
                return ns_err_sys(err, errno, "open '..' of '%s'", child->name);
        dev_t dev;
        ino_t ino;
        uint64_t mnt_id;
        bool have_mnt;
        int r = dir_ident(fd, &dev, &ino, &mnt_id, &have_mnt);
        if (r < 0 || dev != parent->dev || ino != parent->ino) {
                close(fd);
                return ns_err(err, ESTALE, "the tree moved while it was being deleted");
        }
        parent->fd = fd;
        return 0;
}

static void walk_free(struct walk *w) {
        for (size_t i = 0; i < w->n; i++) {
                if (w->lv[i].fd >= 0)
                        close(w->lv[i].fd);
                free(w->lv[i].name);
        }
        free(w->lv);
        free(w->buf);
}

/* Remove one entry that is not a directory, or an empty directory.  Returns 0 when it is gone,
 * 1 when it is a non-empty directory to descend into, or -errno. */
static int remove_entry(int dirfd, const char *name, unsigned char type, bool *fixed_mode, ns_error *err) {
        if (type == DT_UNKNOWN) {
                struct stat st;
                if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return errno == ENOENT ? 0 : ns_err_sys(err, errno, "stat '%s'", name);
                type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
        }
        for (int attempt = 0; attempt < 3; attempt++) {
                int flags = type == DT_DIR ? AT_REMOVEDIR : 0;
                if (unlinkat(dirfd, name, flags) == 0 || errno == ENOENT)
                        return 0;
                switch (errno) {
                case EISDIR: /* was a directory after all (it changed, or d_type lied) */
                        type = DT_DIR;
                        continue;
                case ENOTDIR:
                        type = DT_REG;
                        continue;
                case ENOTEMPTY:
                case EEXIST:
                        return 1;
                case EBUSY:
                        return ns_err(err, EXDEV, "'%s' is a mount point: not crossing it", name);
                case EACCES:
                case EPERM:
                        /* Only without CAP_DAC_OVERRIDE: a directory of our own made read-only.
                         * fchmod on the descriptor, never a path. */
                        if (!*fixed_mode && fchmod(dirfd, 0700) == 0) {
                                *fixed_mode = true;
                                continue;
                        }
                        return ns_err_sys(err, errno, "unlink '%s'", name);
                default:
                        return ns_err_sys(err, errno, "unlink '%s'", name);
                }
        }
        return ns_err(err, EAGAIN, "'%s' keeps changing type", name);
}

/* Open child directory `name` of the top level and push it.  Returns 0 pushed, 1 when it turned
 * out not to be a directory and was unlinked instead, or -errno. */
static int descend(struct walk *w, const char *name, ns_error *err) {
        int dirfd = w->lv[w->n - 1].fd;
        int fd = open_dir(w, dirfd, name, false);
        if (fd < 0 && errno == EACCES) {
                /* Unprivileged owner of a mode-000 directory; root never gets here. */
                if (fchmodat(dirfd, name, 0700, AT_SYMLINK_NOFOLLOW) == 0)
                        fd = open_dir(w, dirfd, name, false);
                else
                        errno = EACCES;
        }
        if (fd < 0) {
                switch (errno) {
                case ENOENT:
                        return 1;
                case ENOTDIR:
                case ELOOP: /* swapped for a file or a symlink: unlink that, never follow it */
                        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
                                return ns_err_sys(err, errno, "unlink '%s'", name);
                        return 1;
                case EXDEV:
                        return ns_err(err, EXDEV, "'%s' is a mount point: not crossing it", name);
                default:
                        return ns_err_sys(err, errno, "open directory '%s'", name);
                }
        }
        int r = push(w, fd, name, err);
        return r < 0 ? r : 0;
}

/* Empty the top level's directory.  Returns 0 when it is empty, 1 after pushing a subdirectory to
 * empty first, or -errno. */
static int scan_top(struct walk *w, ns_error *err) {
        int fd = w->lv[w->n - 1].fd;
        bool fixed_mode = false;
        /* Rescan from the start each time: what was deleted is gone, what is left is exactly the
         * work remaining, and no stale readdir position survives a descent. */
        if (lseek(fd, 0, SEEK_SET) < 0)
                return ns_err_sys(err, errno, "rewind directory");
        for (;;) {
                long n = syscall(SYS_getdents64, fd, w->buf, FSDEL_DENTS_BUF);
                if (n < 0)
                        return ns_err_sys(err, errno, "getdents64");
                if (n == 0)
                        return 0;
                for (long off = 0; off < n;) {
                        struct linux_dirent64 *d = (struct linux_dirent64 *) (w->buf + off);
                        off += d->d_reclen;
                        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
                                continue;
                        int r = remove_entry(fd, d->d_name, d->d_type, &fixed_mode, err);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                continue;
                        r = descend(w, d->d_name, err);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return 1;
                }
        }
}

int fsdel_tree_at(int parent_dirfd, const char *name, ns_error *err) {
        if (!name_ok(name))
                return ns_err(err, EINVAL, "not a single path component: '%s'", name ? name : "(null)");

        struct walk w = { 0 };
        w.buf = malloc(FSDEL_DENTS_BUF);
        if (!w.buf)
                return ns_err(err, ENOMEM, "out of memory");

        int r;
        int fd = open_dir(&w, parent_dirfd, name, false);
        if (fd < 0) {
                r = errno;
                if (r == ENOTDIR || r == ELOOP) {
                        /* Not a directory (or a symlink): the link itself is what goes. */
                        r = unlinkat(parent_dirfd, name, 0) < 0 ? ns_err_sys(err, errno, "unlink '%s'", name) : 0;
                } else if (r == EXDEV) {
                        r = ns_err(err, EXDEV, "'%s' is a mount point: not crossing it", name);
                } else {
                        r = ns_err_sys(err, r, "open directory '%s'", name);
                }
                walk_free(&w);
                return r;
        }
        if ((r = push(&w, fd, name, err)) < 0)
                goto out;

        while (w.n > 0) {
                r = scan_top(&w, err);
                if (r < 0)
                        goto out;
                if (r == 1)
                        continue;
                /* The top level is empty: go up and remove it. */
                if (w.n == 1) {
                        close(w.lv[0].fd);
                        w.lv[0].fd = -1;
                        w.n = 0;
                        if (unlinkat(parent_dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                                r = ns_err_sys(err, errno, "remove directory '%s'", name);
                                goto out;
                        }
                        break;
                }
                if ((r = reopen_parent(&w, err)) < 0)
                        goto out;
                struct level *child = &w.lv[w.n - 1];
                int pfd = w.lv[w.n - 2].fd;
                close(child->fd);
                child->fd = -1;
                if (unlinkat(pfd, child->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                        r = ns_err_sys(err, errno, "remove directory '%s'", child->name);
                        goto out;
                }
                free(child->name);
                child->name = NULL;
                w.n--;
        }
        r = 0;
out:
        walk_free(&w);
        return r;
}

int fsdel_rename_to_trash(int dirfd, const char *name, int trash_dirfd, char *out_name, size_t cap,
                          ns_error *err) {
        if (!name_ok(name))
                return ns_err(err, EINVAL, "not a single path component: '%s'", name ? name : "(null)");
        if (!out_name || cap < 21)
                return ns_err(err, ENOBUFS, "trash name buffer too small");
        for (int attempt = 0; attempt < 8; attempt++) {
                uint64_t rnd;
                if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                        return ns_err_sys(err, errno ? errno : EIO, "getrandom");
                snprintf(out_name, cap, "del-%016llx", (unsigned long long) rnd);
                /* RENAME_NOREPLACE: never clobber an earlier trash entry (or anything planted in the
                 * trash dir); the rename moves a symlink itself, never its target. */
                if (renameat2(dirfd, name, trash_dirfd, out_name, RENAME_NOREPLACE) == 0)
                        return 0;
                if (errno != EEXIST) {
                        int e = errno;
                        out_name[0] = '\0';
                        return ns_err_sys(err, e, "rename '%s' to the trash", name);
                }
        }
        out_name[0] = '\0';
        return ns_err(err, EEXIST, "no free trash name");
}
