#include "fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

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
