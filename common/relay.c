#include "common/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void ns_relay_init(ns_relay_dir *d) {
        *d = (ns_relay_dir){ .pipe = { -1, -1 } };
}

void ns_relay_release(ns_relay_dir *d) {
        for (int k = 0; k < 2; k++)
                if (d->pipe[k] >= 0) {
                        close(d->pipe[k]);
                        d->pipe[k] = -1;
                }
        free(d->buf);
        d->buf = NULL;
        d->len = d->off = d->piped = 0;
}

size_t ns_relay_pending(const ns_relay_dir *d) {
        return d->len - d->off + d->piped;
}

int ns_relay_read(ns_relay_dir *d, int src) {
        ssize_t n;
        if (ns_relay_pending(d))
                return 0;
        if (d->bulk) {
                if (d->pipe[0] < 0) {
                        if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
                                d->pipe[0] = d->pipe[1] = -1;
                                return -errno;
                        }
                        /* A larger pipe moves a bulk transfer in fewer calls; where the owner's
                         * pipe allowance is spent, the default size does (the call just fails). */
                        int sz = fcntl(d->pipe[1], F_SETPIPE_SZ, NS_RELAY_PIPE);
                        d->pipe_size = sz > 0 ? (size_t) sz : NS_RELAY_CHUNK;
                }
                n = splice(src, NULL, d->pipe[1], NULL, d->pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0) {
                        d->piped = (size_t) n;
                        d->bulk = (size_t) n >= NS_RELAY_CHUNK / 4;
                }
        } else {
                if (!d->buf && !(d->buf = malloc(NS_RELAY_CHUNK)))
                        return -ENOMEM;
                n = recv(src, d->buf, NS_RELAY_CHUNK, MSG_DONTWAIT);
                if (n > 0) {
                        d->len = (size_t) n;
                        d->off = 0;
                        d->bulk = (size_t) n == NS_RELAY_CHUNK;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        free(d->buf); /* idle: hold no buffer */
                        d->buf = NULL;
                }
        }
        if (n > 0)
                return 1;
        if (n == 0) {
                d->eof = true;
                return 0;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
}

int ns_relay_write(ns_relay_dir *d, int dst) {
        while (ns_relay_pending(d)) {
                /* never both: reads wait for nothing pending, and ns_relay_put for an empty pipe */
                ssize_t n = d->piped ? splice(d->pipe[0], NULL, dst, NULL, d->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                     : send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
                }
                if (d->piped)
                        d->piped -= (size_t) n;
                else if ((d->off += (size_t) n) == d->len)
                        d->off = d->len = 0;
        }
        return 1;
}

int ns_relay_put(ns_relay_dir *d, const void *data, size_t n) {
        if (d->piped)
                return -EBUSY;
        if (d->off) {
                memmove(d->buf, d->buf + d->off, d->len - d->off);
                d->len -= d->off;
                d->off = 0;
        }
        if (d->len + n > NS_RELAY_CHUNK)
                return -E2BIG;
        if (!d->buf && !(d->buf = malloc(NS_RELAY_CHUNK)))
                return -ENOMEM;
        memcpy(d->buf + d->len, data, n);
        d->len += n;
        return 0;
}
