#include "sandboxd/disk.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

static void image_name(const char *id, char *out, size_t cap) {
        snprintf(out, cap, "%s.img", id);
}

int disk_image_create(int upper_dirfd, const char *upper_dir, const char *id, uint64_t bytes, ns_error *err) {
        char name[64], path[4096];
        image_name(id, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", upper_dir, name);
        _cleanup_close_ int fd = openat(upper_dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return ns_err_sys(err, errno, "create %s", path);
        if (ftruncate(fd, (off_t) bytes) < 0) {
                int e = errno;
                unlinkat(upper_dirfd, name, 0);
                return ns_err_sys(err, e, "size %s", path);
        }
        /* No journal, no reserved blocks, lazy inode tables: a throw-away upper layer that must be
         * fast to make.  The path is ours (root-owned dir, generated id), never a request's. */
        char *const argv[] = { "mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
                               "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path, NULL };
        char *const envp[] = { "PATH=/usr/sbin:/sbin:/usr/bin:/bin", NULL };
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        pid_t pid;
        int r = posix_spawnp(&pid, "mke2fs", &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        int status = 0;
        if (r == 0)
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
        if (r != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                unlinkat(upper_dirfd, name, 0);
                return r ? ns_err_sys(err, r, "run mke2fs") : ns_err(err, EIO, "mke2fs failed for %s", path);
        }
        return 0;
}

int disk_attach(int upper_dirfd, const char *id, ns_error *err) {
        char name[64];
        image_name(id, name, sizeof name);
        _cleanup_close_ int img = openat(upper_dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (img < 0)
                return ns_err_sys(err, errno, "open disk image");
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        if (ctl < 0)
                return ns_err_sys(err, errno, "open /dev/loop-control");
        for (int attempt = 0; attempt < 16; attempt++) {
                int n = ioctl(ctl, LOOP_CTL_GET_FREE);
                if (n < 0)
                        return ns_err_sys(err, errno, "LOOP_CTL_GET_FREE");
                char dev[32];
                snprintf(dev, sizeof dev, "/dev/loop%d", n);
                int fd = open(dev, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                        return ns_err_sys(err, errno, "open %s", dev);
                struct loop_config cfg = { .fd = (uint32_t) img };
                cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
                if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
                        return fd;
                int e = errno;
                if (e == EINVAL) { /* no direct I/O on this filesystem */
                        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
                        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
                                return fd;
                        e = errno;
                }
                close(fd);
                if (e != EBUSY) /* EBUSY: another process took it first */
                        return ns_err_sys(err, e, "LOOP_CONFIGURE %s", dev);
        }
        return ns_err(err, EBUSY, "no free loop device");
}

void disk_remove(int upper_dirfd, const char *id) {
        char name[64];
        image_name(id, name, sizeof name);
        unlinkat(upper_dirfd, name, 0);
}
