#include "fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

size_t ns_take_fds(struct msghdr *mh, int *fds, size_t max) {
        size_t n = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++, n++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                        if (n < max)
                                fds[n] = fd;
                        else
                                close(fd);
                }
        }
        return n;
}

int ns_send_fds(int sock, const struct iovec *iov, size_t iovcnt, const int *fds, size_t nfds, int flags) {
        if (nfds > NS_FDPASS_MAX)
                return -EINVAL;
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * NS_FDPASS_MAX)];
        } control;
        struct msghdr mh = { .msg_iov = (struct iovec *) iov, .msg_iovlen = iovcnt };
        if (nfds > 0) {
                memset(&control, 0, sizeof control);
                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        while (sendmsg(sock, &mh, MSG_NOSIGNAL | flags) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}
