#include "common/outbox.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"

struct ns_outbox_item {
        ns_outbox_item *next;
        int fds[NS_OUTBOX_FDS];
        size_t nfds, len;
        unsigned char msg[];
};

static void close_all(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

void ns_outbox_init(ns_outbox *ob, ns_loop *loop, ns_watch *watch, int sock, size_t max) {
        *ob = (ns_outbox){ .loop = loop, .watch = watch, .sock = sock, .max = max };
        ob->tail = &ob->head;
}

/* One message, now: 0 (sent: the peer holds its own copies of the fds), -EAGAIN when the
 * channel is full, or -errno. */
static int send_one(int sock, const void *msg, size_t len, const int *fds, size_t nfds) {
        struct iovec iov = { (void *) msg, len };
        int r = ns_send_fds(sock, &iov, 1, nfds ? fds : NULL, nfds, MSG_DONTWAIT);
        /* ENOBUFS: the socket's memory, not this queue; it clears as the peer reads. */
        return r == -EWOULDBLOCK || r == -ENOBUFS ? -EAGAIN : r;
}

static void want_out(ns_outbox *ob, bool on) {
        if (ob->watch)
                (void) ns_loop_modify(ob->loop, ob->watch, on ? EPOLLIN | EPOLLOUT : EPOLLIN, NULL);
}

int ns_outbox_send(ns_outbox *ob, const void *msg, size_t len, const int *fds, size_t nfds) {
        if (nfds > NS_OUTBOX_FDS || len == 0 || len > NS_OUTBOX_MSG_MAX) {
                close_all(fds, nfds);
                return -EINVAL;
        }
        if (!ob->head) {
                int r = send_one(ob->sock, msg, len, fds, nfds);
                if (r != -EAGAIN) {
                        close_all(fds, nfds);
                        return r;
                }
        }
        ns_outbox_item *it = ob->n < ob->max ? malloc(sizeof *it + len) : NULL;
        if (!it) {
                close_all(fds, nfds);
                return -ENOBUFS;
        }
        *it = (ns_outbox_item){ .nfds = nfds, .len = len };
        if (nfds)
                memcpy(it->fds, fds, nfds * sizeof *fds);
        memcpy(it->msg, msg, len);
        *ob->tail = it;
        ob->tail = &it->next;
        if (ob->n++ == 0)
                want_out(ob, true);
        return 0;
}

int ns_outbox_flush(ns_outbox *ob) {
        int r = 0;
        while (ob->head) {
                ns_outbox_item *it = ob->head;
                r = send_one(ob->sock, it->msg, it->len, it->fds, it->nfds);
                if (r == -EAGAIN)
                        return 0;
                close_all(it->fds, it->nfds);
                if (!(ob->head = it->next))
                        ob->tail = &ob->head;
                ob->n--;
                free(it);
                if (r < 0)
                        break;
        }
        if (!ob->head)
                want_out(ob, false);
        return r;
}

size_t ns_outbox_pending(const ns_outbox *ob) {
        return ob->n;
}

void ns_outbox_clear(ns_outbox *ob) {
        while (ob->head) {
                ns_outbox_item *it = ob->head;
                ob->head = it->next;
                close_all(it->fds, it->nfds);
                free(it);
        }
        ob->tail = &ob->head;
        ob->n = 0;
}
