/* nightshift supervisor — the preview proxy's channel (see preview_chan.h). */
#include "preview_chan.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"

static bool id_ok(const char id[SV_ID_LEN + 2]) {
        return memchr(id, '\0', SV_ID_LEN + 2) && sv_id_valid(id, 'p');
}

static bool msg_ok(const struct pvc_msg *m, bool from_proxy, size_t n_fds) {
        if (m->zero != 0)
                return false;
        if (from_proxy) { /* a proxy asks for sockets and reports tunnels' ends, and nothing else */
                if (n_fds || m->dial == 0 || m->port != 0)
                        return false;
                if (m->op == PVC_DIAL)
                        return m->error == 0 && id_ok(m->id);
                return m->op == PVC_TUNNEL_END && (m->error == 0 || m->error == ECONNRESET);
        }
        switch (m->op) {
        case PVC_PUT:
                return n_fds == 0 && m->port >= 1 && m->port <= 65535 && m->error == 0 && id_ok(m->id);
        case PVC_DROP:
                return n_fds == 0 && m->error == 0 && id_ok(m->id);
        case PVC_DIALED:
                return m->dial != 0 && m->error >= 0 && n_fds == (m->error == 0 ? 1u : 0u);
        case PVC_TUNNEL:
                return m->dial != 0 && n_fds == 2;
        case PVC_TUNNEL_DROP:
                return m->dial != 0 && n_fds == 0;
        default:
                return false;
        }
}

int pvc_recv(int sock, bool from_proxy, struct pvc_msg *m, int fds[2]) {
        fds[0] = fds[1] = -1;
        union {
                char buf[CMSG_SPACE(sizeof(int) * NS_FDPASS_MAX)];
                struct cmsghdr align;
        } cbuf;
        char extra; /* a datagram longer than a message is noticed, not cut silently */
        struct iovec iov[2] = { { m, sizeof *m }, { &extra, 1 } };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = cbuf.buf, .msg_controllen = sizeof cbuf.buf };
        ssize_t n;
        do
                n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        int got[2] = { -1, -1 };
        size_t n_got = ns_take_fds(&mh, got, 2); /* any beyond two are closed */
        if (n == 0 && n_got == 0)
                return 0;
        bool ok = (size_t) n == sizeof *m && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && n_got <= 2 &&
                  msg_ok(m, from_proxy, n_got);
        if (!ok) {
                for (size_t i = 0; i < n_got && i < 2; i++)
                        close(got[i]);
                return -EBADMSG;
        }
        fds[0] = got[0];
        fds[1] = got[1];
        return 1;
}

int pvc_send(int sock, const struct pvc_msg *m, const int *fds, size_t n) {
        struct iovec iov = { (void *) m, sizeof *m };
        return ns_send_fds(sock, &iov, 1, n ? fds : NULL, n, MSG_DONTWAIT);
}
