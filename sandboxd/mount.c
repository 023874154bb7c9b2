#include "sandboxd/mount.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/statfs.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"

static int clone_tree(int dirfd, const char *path, uint64_t attr, int userns_fd, ns_error *err);

static int openat2_fd(int dirfd, const char *path, int flags, uint64_t resolve) {
        struct open_how how = { .flags = (uint64_t) flags | O_CLOEXEC, .resolve = resolve };
        return (int) syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Open (creating directories as needed) `path` beneath `rootfd` as an O_PATH fd, never following a
 * symlink: layers from --layers-dir are not ours to trust, and a symlink planted at a mount point
 * would otherwise redirect the mount onto the host. */
static int open_mountpoint(int rootfd, const char *path, bool dir, ns_error *err) {
        _cleanup_close_ int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return ns_err_sys(err, errno, "dup");
        char buf[NS_PATH_MAX + 1];
        if (strlen(path) > NS_PATH_MAX)
                return ns_err(err, ENAMETOOLONG, "path too long");
        strcpy(buf, path);
        char *save = NULL;
        char *comp = strtok_r(buf, "/", &save);
        while (comp) {
                char *next = strtok_r(NULL, "/", &save);
                bool last = next == NULL;
                if (!last || dir) {
                        if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST)
                                return ns_err_sys(err, errno, "mkdir %s", path);
                } else {
                        int fd = openat2_fd(cur, comp, O_CREAT | O_WRONLY | O_NOFOLLOW,
                                            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
                        if (fd < 0 && errno != EEXIST && errno != EISDIR)
                                return ns_err_sys(err, errno, "create %s", path);
                        if (fd >= 0)
                                close(fd);
                }
                int fd = openat2_fd(cur, comp, O_PATH | O_NOFOLLOW,
                                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
                if (fd < 0)
                        return ns_err_sys(err, errno, "open mount point %s", path);
                close(cur);
                cur = fd;
                comp = next;
        }
        return TAKE_FD(cur);
}

static int attach_at(int mnt_fd, int target_fd, const char *what, ns_error *err) {
        if (move_mount(mnt_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return ns_err_sys(err, errno, "move_mount %s", what);
        return 0;
}

int mount_clone_detached(int dirfd, const char *path, uint64_t attr, int userns_fd, ns_error *err) {
        return clone_tree(dirfd, path, attr, userns_fd, err);
}

/* A detached clone of the tree at (dirfd, path), with `attr` set (and idmapped when userns_fd >= 0). */
static int clone_tree(int dirfd, const char *path, uint64_t attr, int userns_fd, ns_error *err) {
        unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_NO_AUTOMOUNT | AT_SYMLINK_NOFOLLOW;
        if (!*path)
                flags |= AT_EMPTY_PATH;
        _cleanup_close_ int fd = open_tree(dirfd, path, flags);
        if (fd < 0)
                return ns_err_sys(err, errno, "open_tree %s", *path ? path : "(fd)");
        struct mount_attr ma = { .attr_set = attr };
        if (userns_fd >= 0) {
                ma.attr_set |= MOUNT_ATTR_IDMAP;
                ma.userns_fd = (uint64_t) userns_fd;
        }
        if (ma.attr_set && mount_setattr(fd, "", AT_EMPTY_PATH, &ma, sizeof ma) < 0)
                return ns_err_sys(err, errno, "mount_setattr %s", *path ? path : "(fd)");
        return TAKE_FD(fd);
}

static int fs_new(const char *type, const char *const *opts, unsigned attrs, ns_error *err) {
        _cleanup_close_ int fs = fsopen(type, FSOPEN_CLOEXEC);
        if (fs < 0)
                return ns_err_sys(err, errno, "fsopen %s", type);
        for (const char *const *o = opts; o && *o; o += 2) {
                int r = o[1] ? fsconfig(fs, FSCONFIG_SET_STRING, o[0], o[1], 0)
                             : fsconfig(fs, FSCONFIG_SET_FLAG, o[0], NULL, 0);
                if (r < 0)
                        return ns_err_sys(err, errno, "%s option %s", type, o[0]);
        }
        if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return ns_err_sys(err, errno, "create %s", type);
        int m = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
        if (m < 0)
                return ns_err_sys(err, errno, "fsmount %s", type);
        return m;
}

static int mount_fs_at(int rootfd, const char *dst, const char *type, const char *const *opts, unsigned attrs,
                       ns_error *err) {
        _cleanup_close_ int m = fs_new(type, opts, attrs, err);
        if (m < 0)
                return m;
        _cleanup_close_ int t = open_mountpoint(rootfd, dst, true, err);
        if (t < 0)
                return t;
        return attach_at(m, t, dst, err);
}

int mount_prepare_scaffold(const char *scaffold, ns_error *err) {
        if (mkdir(scaffold, 0700) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir %s", scaffold);
        char p[NS_PATH_MAX];
        const char *fixed[] = { "root", "usr", "disk" };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                snprintf(p, sizeof p, "%s/%s", scaffold, fixed[i]);
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return ns_err_sys(err, errno, "mkdir %s", p);
        }
        for (int i = 0; i < 2 * NS_LAYERS_MAX; i++) {
                snprintf(p, sizeof p, "%s/%c%d", scaffold, i < NS_LAYERS_MAX ? 'l' : 'u', i % NS_LAYERS_MAX);
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return ns_err_sys(err, errno, "mkdir %s", p);
        }
        for (int i = 0; i < NS_OVERLAYS_MAX * NS_LAYERS_MAX; i++) {
                snprintf(p, sizeof p, "%s/o%d", scaffold, i);
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return ns_err_sys(err, errno, "mkdir %s", p);
        }
        /* The lower of an overlay that no layer has anything for. */
        snprintf(p, sizeof p, "%s/e", scaffold);
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir %s", p);
        return 0;
}

/* Overlay with the given lower dirs (top first in `lowerdir`) and the per-sandbox upper. */
static int overlay_new(const char *lowerdir, const char *upper, const char *name, ns_error *err) {
        char up[NS_PATH_MAX], work[NS_PATH_MAX];
        snprintf(up, sizeof up, "%s/%s/upper", upper, name);
        snprintf(work, sizeof work, "%s/%s/work", upper, name);
        /* volatile: the upper layer is thrown away with the sandbox, so the sync that overlayfs
         * would otherwise do on the upper filesystem at unmount (a journal commit when the state
         * dir sits on ext4) buys nothing; index off: no hard-link index to maintain either. */
        const char *opts[] = { "lowerdir", lowerdir, "upperdir", up, "workdir", work, "index", "off",
                               "volatile", NULL, NULL };
        return fs_new("overlay", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err);
}

/* crun's lists: kernel interfaces a sandbox must neither read nor write. */
static const char *const proc_masked[] = {
        "acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug", "scsi",
        "sysrq-trigger",
};
static const char *const proc_readonly[] = { "bus", "fs", "irq", "sys" };

static int setup_proc(int rootfd, ns_error *err) {
        const char *opts[] = { NULL };
        _cleanup_close_ int m = fs_new("proc", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
        if (m < 0)
                return m;
        _cleanup_close_ int t = open_mountpoint(rootfd, "proc", true, err);
        if (t < 0)
                return t;
        int r = attach_at(m, t, "/proc", err);
        if (r < 0)
                return r;
        _cleanup_close_ int proc = openat(rootfd, "proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (proc < 0)
                return ns_err_sys(err, errno, "open /proc");
        for (size_t i = 0; i < ARRAY_SIZE(proc_readonly); i++) {
                _cleanup_close_ int c = clone_tree(proc, proc_readonly[i], MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                                   MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, -1, err);
                if (c < 0)
                        return c;
                _cleanup_close_ int dst = openat(proc, proc_readonly[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (dst < 0)
                        return ns_err_sys(err, errno, "open /proc/%s", proc_readonly[i]);
                if ((r = attach_at(c, dst, proc_readonly[i], err)) < 0)
                        return r;
        }
        for (size_t i = 0; i < ARRAY_SIZE(proc_masked); i++) {
                struct stat st;
                if (fstatat(proc, proc_masked[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* not on this kernel */
                _cleanup_close_ int dst = openat(proc, proc_masked[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (dst < 0)
                        return ns_err_sys(err, errno, "open /proc/%s", proc_masked[i]);
                _cleanup_close_ int c = -1;
                if (S_ISDIR(st.st_mode)) {
                        const char *o[] = { "size", "0", "mode", "0555", NULL };
                        c = fs_new("tmpfs", o, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                   MOUNT_ATTR_NOEXEC, err);
                } else {
                        c = clone_tree(rootfd, "dev/null", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                                       -1, err);
                }
                if (c < 0)
                        return c;
                if ((r = attach_at(c, dst, proc_masked[i], err)) < 0)
                        return r;
        }
        return 0;
}

/* A tmpfs /dev with only the harmless character devices.  The nodes are made by host root on a
 * tmpfs owned by the initial user namespace: nothing inside can create more (mknod needs
 * CAP_MKNOD there), and the filter denies mknod of block devices anyway. */
static int setup_dev(int rootfd, ns_error *err) {
        const char *o[] = { "mode", "0755", "size", "65536", NULL };
        int r = mount_fs_at(rootfd, "dev", "tmpfs", o, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, err);
        if (r < 0)
                return r;
        _cleanup_close_ int dev = openat2_fd(rootfd, "dev", O_DIRECTORY | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
        if (dev < 0)
                return ns_err_sys(err, errno, "open /dev");
        static const struct { const char *name; unsigned maj, min; } nodes[] = {
                { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 },
                { "tty", 5, 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
                if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) < 0)
                        return ns_err_sys(err, errno, "mknod /dev/%s", nodes[i].name);
                if (fchmodat(dev, nodes[i].name, 0666, 0) < 0)
                        return ns_err_sys(err, errno, "chmod /dev/%s", nodes[i].name);
        }
        static const struct { const char *target, *name; } links[] = {
                { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" }, { "/proc/self/fd/1", "stdout" },
                { "/proc/self/fd/2", "stderr" }, { "pts/ptmx", "ptmx" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(links); i++)
                if (symlinkat(links[i].target, dev, links[i].name) < 0)
                        return ns_err_sys(err, errno, "symlink /dev/%s", links[i].name);
        const char *pts[] = { "newinstance", NULL, "ptmxmode", "0666", "mode", "0620", NULL };
        if ((r = mount_fs_at(rootfd, "dev/pts", "devpts", pts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, err)) < 0)
                return r;
        const char *shm[] = { "mode", "1777", NULL };
        if ((r = mount_fs_at(rootfd, "dev/shm", "tmpfs", shm, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err)) < 0)
                return r;
        const char *mq[] = { NULL };
        if ((r = mount_fs_at(rootfd, "dev/mqueue", "mqueue", mq, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                             MOUNT_ATTR_NOEXEC, err)) < 0)
                return r;
        return 0;
}

/* Mount the disk-limit filesystem inside this mount namespace only and lay out the upper dirs on
 * it; returns the path that replaces plan->upper. */
static int setup_disk(const struct mount_plan *p, char *upper, size_t cap, ns_error *err) {
        const char *opts[] = { "source", p->disk_dev, NULL };
        _cleanup_close_ int m = fs_new("ext4", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err);
        if (m < 0)
                return m;
        snprintf(upper, cap, "%s/disk", p->scaffold);
        if (move_mount(m, "", AT_FDCWD, upper, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return ns_err_sys(err, errno, "attach the disk");
        _cleanup_close_ int dir = open(upper, O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
                return ns_err_sys(err, errno, "open the disk");
        static const char *const names[] = { "root", "usr" };
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                if (mkdirat(dir, names[i], 0700) < 0)
                        return ns_err_sys(err, errno, "mkdir on the disk");
                _cleanup_close_ int sub = openat(dir, names[i], O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 || mkdirat(sub, "upper", 0755) < 0 || mkdirat(sub, "work", 0700) < 0 ||
                    fchownat(sub, "upper", p->upper_owner, p->upper_owner, AT_SYMLINK_NOFOLLOW) < 0)
                        return ns_err_sys(err, errno, "lay out the disk");
        }
        return 0;
}

int mount_attach_extras(int rootfd, int workspace_fd, const struct mount_bind *binds, size_t n_binds, ns_error *err) {
        int r;
        if (workspace_fd >= 0) {
                /* The workspace was opened and checked by the daemon, which cloned the mount from
                 * that very descriptor: it is never looked up by name again. */
                _cleanup_close_ int t = open_mountpoint(rootfd, "workspace", true, err);
                if (t < 0)
                        return t;
                if ((r = attach_at(workspace_fd, t, "/workspace", err)) < 0)
                        return r;
        }
        for (size_t i = 0; i < n_binds; i++) {
                _cleanup_close_ int t = open_mountpoint(rootfd, binds[i].dst + 1, true, err);
                if (t < 0)
                        return t;
                if ((r = attach_at(binds[i].src_fd, t, binds[i].dst, err)) < 0)
                        return r;
        }
        return 0;
}

/* Clone each of `lowers` (lowest first) idmapped, read-only, nosuid, nodev onto the scaffold's
 * "<prefix><i>" and write overlayfs's lowerdir (top first, ':'-separated) to `out`. */
static int attach_lowers(const char *scaffold, char prefix, size_t base, const char *const *lowers, size_t n,
                         int userns_fd, char *out, size_t cap, ns_error *err) {
        out[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                _cleanup_close_ int l = clone_tree(AT_FDCWD, lowers[i], MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                                   MOUNT_ATTR_NODEV, userns_fd, err);
                if (l < 0)
                        return ns_err_wrap(err, "layer %s", lowers[i]);
                char at[NS_PATH_MAX];
                snprintf(at, sizeof at, "%s/%c%zu", scaffold, prefix, base + i);
                if (move_mount(l, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        return ns_err_sys(err, errno, "attach layer %s", lowers[i]);
                /* lowerdir lists the top layer first: prepend */
                size_t al = strlen(at), ll = strlen(out);
                if (al + 1 + ll + 1 > cap)
                        return ns_err(err, ENAMETOOLONG, "layer paths too long");
                memmove(out + al + (ll ? 1 : 0), out, ll + 1);
                memcpy(out, at, al);
                if (ll)
                        out[al] = ':';
        }
        return 0;
}

/* The /usr overlay's lowers: the host's /usr on the scaffold's "usr", the layers' on "u<i>". */
static int attach_usr_lowers(const char *scaffold, const char *const *lowers, size_t n, int userns_fd, char *out,
                             size_t cap, ns_error *err) {
        _cleanup_close_ int u = clone_tree(AT_FDCWD, lowers[0], MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                           MOUNT_ATTR_NODEV, userns_fd, err);
        if (u < 0)
                return u;
        char at[NS_PATH_MAX];
        snprintf(at, sizeof at, "%s/usr", scaffold);
        if (move_mount(u, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return ns_err_sys(err, errno, "attach host /usr");
        int r = attach_lowers(scaffold, 'u', 0, lowers + 1, n - 1, userns_fd, out, cap, err);
        if (r < 0)
                return r;
        size_t al = strlen(at), ll = strlen(out);
        if (ll + 1 + al + 1 > cap)
                return ns_err(err, ENAMETOOLONG, "layer paths too long");
        if (ll)
                out[ll++] = ':';
        memcpy(out + ll, at, al + 1);
        return 0;
}

/* Overlay `i` of the plan over its mount point beneath the (attached) workspace.  The mount point
 * is not created through the idmapped workspace (root is not mapped there): the caller made it. */
static int mount_overlay_at(int rootfd, const struct mount_plan *p, size_t i, const char *upper, char *lowerdir,
                            size_t cap, ns_error *err) {
        const struct mount_overlay *ov = &p->overlays[i];
        int r;
        if (ov->n_lowers) {
                r = attach_lowers(p->scaffold, 'o', i * NS_LAYERS_MAX, ov->lowers, ov->n_lowers, p->userns_fd, lowerdir,
                                  cap, err);
                if (r < 0)
                        return r;
        } else {
                snprintf(lowerdir, cap, "%s/e", p->scaffold);
        }
        char name[24];
        snprintf(name, sizeof name, "ov%zu", i);
        _cleanup_close_ int ovl = overlay_new(lowerdir, upper, name, err);
        if (ovl < 0)
                return ovl;
        _cleanup_close_ int t = open_mountpoint(rootfd, ov->dst + 1, true, err);
        if (t < 0)
                return t;
        return attach_at(ovl, t, ov->dst, err);
}

bool mount_usr_is_lazy(bool host_usr, size_t n_usr_lowers, bool disk) {
        return host_usr && n_usr_lowers == 0 && !disk;
}

/* The detached /usr overlay: the host's /usr lowest, then the layers' usr/ dirs (attached on the
 * scaffold's "usr" and "u<i>"), under <upper>/usr. */
static int usr_overlay(const char *scaffold, const char *const *usr_lowers, size_t n_usr_lowers, int userns_fd,
                       const char *upper, ns_error *err) {
        const char *ulowers[NS_LAYERS_MAX + 1] = { "/usr" };
        if (n_usr_lowers) /* memcpy from NULL is undefined even for 0 bytes */
                memcpy(ulowers + 1, usr_lowers, n_usr_lowers * sizeof *ulowers);
        char at[(NS_LAYERS_MAX + 1) * (NS_PATH_MAX + 1)];
        int r = attach_usr_lowers(scaffold, ulowers, n_usr_lowers + 1, userns_fd, at, sizeof at, err);
        return r < 0 ? r : overlay_new(at, upper, "usr", err);
}

/* The detached mount for a host-based root's /usr.  Lazy (mount_usr_is_lazy): the host's /usr
 * alone, a read-only idmapped bind until something needs to write there.  Only root of the
 * sandbox ever can (the files are root's), and root processes come from --root execs, before the
 * first of which the daemon stacks the overlay on it (mount_usr_overlay).  An overlay per sandbox
 * that no exec writes to costs a superblock, its probes of the upper filesystem and its teardown:
 * about a third of a plain sandbox's start here.  Otherwise its overlay. */
static int usr_mount(const struct mount_plan *p, const char *upper, ns_error *err) {
        if (mount_usr_is_lazy(p->host_usr, p->n_usr_lowers, p->disk_dev != NULL))
                return clone_tree(AT_FDCWD, "/usr", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                                  p->userns_fd, err);
        return usr_overlay(p->scaffold, p->usr_lowers, p->n_usr_lowers, p->userns_fd, upper, err);
}

int mount_usr_overlay(const char *scaffold, const char *upper, int userns_fd, ns_error *err) {
        /* Our own copy of the mount namespace, private, so that the lower's mount point on the
         * scaffold is seen by nobody else. */
        if (unshare(CLONE_NEWNS) < 0)
                return ns_err_sys(err, errno, "unshare mount namespace");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return ns_err_sys(err, errno, "make mounts private");
        return usr_overlay(scaffold, NULL, 0, userns_fd, upper, err);
}

int mount_usr_attach(int ovl_fd, ns_error *err) {
        _cleanup_close_ int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return ns_err_sys(err, errno, "open the sandbox's root");
        _cleanup_close_ int t = open_mountpoint(rootfd, "usr", true, err);
        if (t < 0)
                return t;
        struct statfs sf;
        if (fstatfs(t, &sf) < 0)
                return ns_err_sys(err, errno, "statfs /usr");
        /* Already an overlay (a restarted daemon asking again): nothing to do. */
        if (sf.f_type == OVERLAYFS_SUPER_MAGIC)
                return 0;
        return attach_at(ovl_fd, t, "/usr", err);
}

int mount_build_root(const struct mount_plan *p, ns_error *err) {
        int r;
        /* Nothing we mount may propagate back to the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return ns_err_sys(err, errno, "make / private");
        char disk_upper[NS_PATH_MAX];
        const char *upper = p->upper;
        if (p->disk_dev) {
                if ((r = setup_disk(p, disk_upper, sizeof disk_upper, err)) < 0)
                        return r;
                upper = disk_upper;
        }

        /* Lower layers: idmapped so that files owned by root on disk belong to root inside. */
        /* Not zero-initialised: init runs on this stack for the sandbox's whole life, and 64 KiB of
         * zeroes would be 64 KiB of private memory per sandbox. */
        char lowerdir[NS_LAYERS_MAX * (NS_PATH_MAX + 1)];
        if ((r = attach_lowers(p->scaffold, 'l', 0, p->lowers, p->n_lowers, p->userns_fd, lowerdir, sizeof lowerdir,
                               err)) < 0)
                return r;
        _cleanup_close_ int ovl = overlay_new(lowerdir, upper, "root", err);
        if (ovl < 0)
                return ovl;
        char rootpath[NS_PATH_MAX];
        snprintf(rootpath, sizeof rootpath, "%s/root", p->scaffold);
        if (move_mount(ovl, "", AT_FDCWD, rootpath, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return ns_err_sys(err, errno, "attach root overlay");
        _cleanup_close_ int rootfd = open(rootpath, O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return ns_err_sys(err, errno, "open new root");

        if (p->host_usr) {
                _cleanup_close_ int u = usr_mount(p, upper, err);
                if (u < 0)
                        return u;
                _cleanup_close_ int t = open_mountpoint(rootfd, "usr", true, err);
                if (t < 0)
                        return t;
                if ((r = attach_at(u, t, "/usr", err)) < 0)
                        return r;
        }

        if ((r = setup_dev(rootfd, err)) < 0)
                return r;
        if ((r = setup_proc(rootfd, err)) < 0)
                return r;
        const char *tmp_opts[] = { "mode", "1777", NULL };
        if ((r = mount_fs_at(rootfd, "tmp", "tmpfs", tmp_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err)) < 0)
                return r;

        if ((r = mount_attach_extras(rootfd, p->workspace_fd, p->binds, p->n_binds, err)) < 0)
                return r;
        for (size_t i = 0; i < p->n_overlays; i++)
                if ((r = mount_overlay_at(rootfd, p, i, upper, lowerdir, sizeof lowerdir, err)) < 0)
                        return ns_err_wrap(err, "overlay %s", p->overlays[i].dst);

        /* pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours. */
        if (fchdir(rootfd) < 0)
                return ns_err_sys(err, errno, "chdir new root");
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return ns_err_sys(err, errno, "pivot_root");
        if (umount2(".", MNT_DETACH) < 0)
                return ns_err_sys(err, errno, "detach old root");
        if (chdir("/") < 0)
                return ns_err_sys(err, errno, "chdir /");
        return 0;
}
