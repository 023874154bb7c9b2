#include "sockdir.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"

int sv_sock_listen(const char *path, int flags, int backlog, ns_error *err) {
        struct sockaddr_un su = { .sun_family = AF_UNIX };
        size_t n = strlen(path);
        if (n > SV_SOCKET_PATH_MAX || n >= sizeof su.sun_path)
                return ns_err(err, ENAMETOOLONG, "socket path %s is too long", path);
        memcpy(su.sun_path, path, n + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | flags, 0);
        if (fd < 0)
                return ns_err_sys(err, errno, "socket for %s", path);
        /* Its mode does not matter: the directory is the gate.  What is there is ours (only the
         * supervisor writes in it): an earlier run's socket, gone with that run. */
        if (unlink(path) < 0 && errno != ENOENT)
                return ns_err_sys(err, errno, "replace %s", path);
        if (bind(fd, (struct sockaddr *) &su, sizeof su) < 0)
                return ns_err_sys(err, errno, "bind %s", path);
        if (listen(fd, backlog) < 0) {
                int e = errno;
                (void) unlink(path);
                return ns_err_sys(err, e, "listen on %s", path);
        }
        return TAKE_FD(fd);
}
