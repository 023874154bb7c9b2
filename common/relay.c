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
        d->len = d->off = d->piped = d->cap = 0;
        d->pipe_full = false;
}

/* The copy buffer, at least `need` bytes (NS_RELAY_CHUNK at most); what waits in it is kept. */
static int buf_reserve(ns_relay_dir *d, size_t need) {
        if (d->buf && d->cap >= need)
                return 0;
        char *b = realloc(d->buf, need);
        if (!b)
                return -ENOMEM;
        d->buf = b;
        d->cap = need;
        return 0;
}

static void buf_drop(ns_relay_dir *d) {
        free(d->buf); /* idle: hold no buffer */
        d->buf = NULL;
        d->cap = 0;
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
                if (buf_reserve(d, NS_RELAY_CHUNK) < 0)
                        return -ENOMEM;
                n = recv(src, d->buf, NS_RELAY_CHUNK, MSG_DONTWAIT);
                if (n > 0) {
                        d->len = (size_t) n;
                        d->off = 0;
                        d->bulk = (size_t) n == NS_RELAY_CHUNK;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        buf_drop(d);
                }
        }
        if (n > 0) {
                d->bytes_in += (uint64_t) n;
                return 1;
        }
        if (n == 0) {
                d->eof = true;
                return 0;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
}

bool ns_relay_wants_input(const ns_relay_dir *d) {
        if (d->eof)
                return false;
        return ns_relay_pending(d) == 0 || (d->piped && d->len == d->off && d->piped < d->pipe_size && !d->pipe_full);
}

int ns_relay_top_up(ns_relay_dir *d, int src) {
        if (!d->piped || d->len != d->off || d->piped >= d->pipe_size || d->eof || d->pipe_full)
                return 0;
        /* Behind bytes still in the pipe, so the mode stays bulk whatever this read brings: it may
         * change only once the pipe is empty (the order of the bytes). */
        ssize_t n = splice(src, NULL, d->pipe[1], NULL, d->pipe_size - d->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
                d->piped += (size_t) n;
                d->bytes_in += (uint64_t) n;
                return 1;
        }
        if (n == 0) {
                d->eof = true;
                return 0;
        }
        /* EAGAIN with the source readable: the pipe's buffers are all taken (a buffer per socket
         * fragment, however small), whatever its byte count says.  Reading again before a write
         * frees some would only spin. */
        if (errno == EAGAIN || errno == EWOULDBLOCK)
                d->pipe_full = true;
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
                if (d->piped) {
                        d->piped -= (size_t) n;
                        d->pipe_full = false;
                } else if ((d->off += (size_t) n) == d->len)
                        d->off = d->len = 0;
        }
        return 1;
}

int ns_relay_put(ns_relay_dir *d, const void *data, size_t n) {
        if (d->piped)
                return -EBUSY;
        if (n == 0)
                return 0;
        if (d->off) {
                memmove(d->buf, d->buf + d->off, d->len - d->off);
                d->len -= d->off;
                d->off = 0;
        }
        if (d->len + n > NS_RELAY_CHUNK)
                return -E2BIG;
        /* sized to what it holds: a put (a reply, a request head) needs no 64 KiB buffer */
        if (buf_reserve(d, d->len + n) < 0)
                return -ENOMEM;
        memcpy(d->buf + d->len, data, n);
        d->len += n;
        return 0;
}

ssize_t ns_relay_move(ns_relay_dir *d, int src, int dst) {
        if (ns_relay_pending(d))
                return 0;
        if (d->bulk) {
                int r = ns_relay_read(d, src);
                if (r <= 0)
                        return r;
                size_t n = d->piped;
                r = ns_relay_write(d, dst);
                return r < 0 ? r : (ssize_t) n;
        }
        /* Why through the stack: a buffer malloc'ed for each message and freed when the source
         * runs dry makes glibc grow and trim the heap every time (brk, page faults, a TLB
         * shootdown) — measured as about a quarter of the egress proxy's CPU per small request. */
        char stack[NS_RELAY_CHUNK];
        ssize_t n = recv(src, stack, sizeof stack, MSG_DONTWAIT);
        if (n == 0) {
                d->eof = true;
                return 0;
        }
        if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                        buf_drop(d);
                        return 0;
                }
                return -errno;
        }
        d->bulk = (size_t) n == NS_RELAY_CHUNK;
        d->bytes_in += (uint64_t) n;
        size_t off = 0;
        while (off < (size_t) n) {
                ssize_t w = send(dst, stack + off, (size_t) n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return -errno;
                        break;
                }
                off += (size_t) w;
        }
        if (off < (size_t) n) { /* dst is full: the rest waits (nothing waited before it) */
                if (buf_reserve(d, NS_RELAY_CHUNK) < 0)
                        return -ENOMEM;
                memcpy(d->buf, stack + off, (size_t) n - off);
                d->off = 0;
                d->len = (size_t) n - off;
        }
        return n;
}
