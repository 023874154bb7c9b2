/* common/outbox.c on a real SOCK_SEQPACKET socketpair and a real loop: while the peer does not
 * read, messages (with descriptors) beyond what the socket holds wait; once it reads, every one
 * arrives, in order, each with its own descriptor; past the bound a send fails and closes what
 * it was given; clearing closes what waited; a peer that is gone is an error, not a hang.  No
 * descriptor is leaked on any path.  TAP. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdpass.h"
#include "common/loop.h"
#include "common/outbox.h"
#include "fds.h"
#include "tap.h"

struct msg {
        uint64_t seq;
        uint64_t ino; /* the inode of the descriptor sent with it */
};

struct side {
        ns_outbox out;
        int flushes;
};

static void on_chan(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct side *sd = data;
        if (events & EPOLLOUT) {
                sd->flushes++;
                (void) ns_outbox_flush(&sd->out);
        }
}

/* Receive one message and its descriptor: 1, 0 when none waits, -1 on a malformed one. */
static int recv_one(int sock, struct msg *m, int *fd) {
        struct iovec iov = { m, sizeof *m };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 2)];
        } control;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf };
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == EAGAIN ? 0 : -1;
        *fd = -1;
        size_t got = ns_take_fds(&mh, fd, 1);
        return n == (ssize_t) sizeof *m && got == 1 ? 1 : -1;
}

static uint64_t ino_of(int fd) {
        struct stat st;
        return fstat(fd, &st) == 0 ? (uint64_t) st.st_ino : 0;
}

int main(void) {
        int s[2];
        ns_loop *loop = NULL;
        ns_error err = { 0 };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s) < 0 || ns_loop_new(&loop, &err) < 0) {
                ok(0, "socketpair and loop");
                return tap_done();
        }
        /* A small send buffer: the socket holds a few messages, the outbox the rest (and the
         * descriptors stay well under a 1024 RLIMIT_NOFILE). */
        int small = 4096;
        (void) setsockopt(s[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        int fds_before = count_fds();
        enum { N = 600, MAX = 400 };
        struct side sd = { 0 };
        ns_watch *w = ns_loop_add(loop, s[0], EPOLLIN, on_chan, &sd, &err);
        ok(w != NULL, "the channel is watched");
        ns_outbox_init(&sd.out, loop, w, s[0], MAX);

        /* Each message carries a new pipe's read end; its inode says which one arrived. */
        int sent = 0, refused = 0;
        bool refusals_closed = true;
        for (int i = 0; i < N; i++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        break;
                struct msg m = { .seq = (uint64_t) i, .ino = ino_of(p[0]) };
                int fds_then = count_fds();
                int r = ns_outbox_send(&sd.out, &m, sizeof m, &p[0], 1);
                close(p[1]);
                if (r == 0) {
                        sent++;
                } else {
                        refused++;
                        refusals_closed &= r == -ENOBUFS && count_fds() == fds_then - 2; /* both ends gone */
                }
        }
        size_t waiting = ns_outbox_pending(&sd.out);
        ok(waiting == MAX, "with the peer not reading, %zu messages wait (the bound)", waiting);
        ok(sent > MAX && refused == N - sent, "%d sent or queued, %d refused once %d waited", sent, refused, MAX);
        ok(refused > 0 && refusals_closed, "a refused message gets -ENOBUFS and its descriptor is closed");

        uint64_t next = 0;
        bool in_order = true, right_fd = true;
        for (int idle = 0; next < (uint64_t) sent && idle < 200;) {
                (void) ns_loop_dispatch(loop);
                struct msg m;
                int fd;
                int r = recv_one(s[1], &m, &fd);
                if (r == 1) {
                        in_order &= m.seq == next++;
                        right_fd &= ino_of(fd) == m.ino;
                        close(fd);
                        idle = 0;
                } else {
                        if (r < 0)
                                in_order = false;
                        usleep(1000);
                        idle++;
                }
        }
        ok(next == (uint64_t) sent && in_order, "every message taken arrives once the peer reads, in order (%llu of %d)",
           (unsigned long long) next, sent);
        ok(right_fd, "each with its own descriptor");
        ok(ns_outbox_pending(&sd.out) == 0 && sd.flushes > 0, "nothing waits any more (%d flushes on EPOLLOUT)",
           sd.flushes);
        /* EPOLLOUT is no longer asked for: a dispatch with nothing to read does not call back. */
        int flushes = sd.flushes;
        for (int i = 0; i < 5; i++)
                (void) ns_loop_dispatch(loop);
        ok(sd.flushes == flushes, "and EPOLLOUT is no longer asked for once the outbox is empty");
        ok(count_fds() == fds_before, "no descriptor left behind (%d, %d before)", count_fds(), fds_before);

        /* Fill it again, then clear: the waiting descriptors are closed. */
        for (int i = 0; i < N; i++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        break;
                struct msg m = { .seq = (uint64_t) i };
                (void) ns_outbox_send(&sd.out, &m, sizeof m, &p[0], 1);
                close(p[1]);
        }
        ok(ns_outbox_pending(&sd.out) > 0, "full again (%zu wait)", ns_outbox_pending(&sd.out));
        ns_outbox_clear(&sd.out);
        /* What the socket itself still holds in flight is the peer's to read: drain it. */
        struct msg m;
        int fd, r;
        while ((r = recv_one(s[1], &m, &fd)) == 1)
                close(fd);
        ok(ns_outbox_pending(&sd.out) == 0 && count_fds() == fds_before,
           "clearing closes every waiting descriptor (%d, %d before)", count_fds(), fds_before);

        /* Bad arguments and a peer that is gone. */
        int p[2];
        ok(pipe2(p, O_CLOEXEC) == 0, "a pipe");
        int three[3] = { p[0], -1, -1 };
        ok(ns_outbox_send(&sd.out, &m, 0, NULL, 0) == -EINVAL, "an empty message: -EINVAL");
        ok(ns_outbox_send(&sd.out, &m, NS_OUTBOX_MSG_MAX + 1, NULL, 0) == -EINVAL, "an oversized message: -EINVAL");
        ok(ns_outbox_send(&sd.out, &m, sizeof m, three, 3) == -EINVAL && fcntl(p[0], F_GETFD) < 0,
           "three descriptors: -EINVAL, and the one given is closed");
        close(s[1]);
        r = ns_outbox_send(&sd.out, &m, sizeof m, &p[1], 1);
        ok(r == -EPIPE || r == -ECONNRESET, "the peer gone: an error, not a queued message (%s)", strerror(-r));
        ok(ns_outbox_pending(&sd.out) == 0 && count_fds() == fds_before - 1,
           "and every descriptor given was closed (%d, %d before less the peer's end)", count_fds(), fds_before);

        ns_loop_remove(loop, w);
        ns_loop_free(loop);
        close(s[0]);
        return tap_done();
}
