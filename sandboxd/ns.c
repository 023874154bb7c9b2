#include "sandboxd/ns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

struct userns_child {
        int wait_fd;
        int parent_fd; /* the child's copy of the write end: closed, so EOF can arrive */
};

/* The child only exists so that its user namespace can be mapped and opened; it shares our memory
 * (CLONE_VM), so it touches nothing but its own stack and blocks until the parent is done. */
static int userns_child_main(void *arg) {
        struct userns_child *c = arg;
        char b;
        close(c->parent_fd);
        while (read(c->wait_fd, &b, 1) < 0 && errno == EINTR)
                ;
        _exit(0);
}

static int write_file_at(const char *path, const char *data, ns_error *err) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", path);
        size_t len = strlen(data);
        ssize_t n = write(fd, data, len);
        if (n < 0)
                return ns_err_sys(err, errno, "write %s", path);
        if ((size_t) n != len)
                return ns_err(err, EIO, "short write to %s", path);
        return 0;
}

int ns_userns_new(const char *uid_map, const char *gid_map, ns_error *err) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return ns_err_sys(err, errno, "pipe2");
        _cleanup_close_ int rd = pipefd[0];
        _cleanup_close_ int wr = pipefd[1];
        struct userns_child c = { .wait_fd = rd, .parent_fd = wr };
        /* 16 KiB is plenty: the child calls read() and _exit() only. */
        static _Thread_local char stack[16384] __attribute__((aligned(16)));
        pid_t pid = clone(userns_child_main, stack + sizeof stack, CLONE_NEWUSER | CLONE_VM | SIGCHLD, &c);
        if (pid < 0)
                return ns_err_sys(err, errno, "clone(CLONE_NEWUSER)");

        char path[64];
        int r = 0, fd = -1;
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int) pid);
        r = write_file_at(path, uid_map, err);
        if (r == 0) {
                snprintf(path, sizeof path, "/proc/%d/gid_map", (int) pid);
                r = write_file_at(path, gid_map, err);
        }
        if (r == 0) {
                snprintf(path, sizeof path, "/proc/%d/ns/user", (int) pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        r = ns_err_sys(err, errno, "open %s", path);
        }
        /* The child is ours and unreaped, so its pid cannot be reused before waitpid below. */
        close(TAKE_FD(wr));
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
                ;
        return r < 0 ? r : fd;
}

int ns_loopback_up(ns_error *err) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return ns_err_sys(err, errno, "socket");
        struct ifreq ifr = { 0 };
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return ns_err_sys(err, errno, "SIOCGIFFLAGS lo");
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return ns_err_sys(err, errno, "SIOCSIFFLAGS lo");
        return 0;
}

int ns_proc_starttime(pid_t pid, uint64_t *out, ns_error *err) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", path);
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return ns_err_sys(err, n < 0 ? errno : EIO, "read %s", path);
        buf[n] = '\0';
        /* comm may hold spaces and parentheses: fields start after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return ns_err(err, EIO, "malformed %s", path);
        p++;
        unsigned long long v = 0;
        /* after ')': state(3) ... starttime is field 22, i.e. the 20th field after ')' */
        int field = 2;
        char *save = NULL;
        for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                field++;
                if (field == 22) {
                        v = strtoull(tok, NULL, 10);
                        *out = v;
                        return 0;
                }
        }
        return ns_err(err, EIO, "no start time in %s", path);
}
