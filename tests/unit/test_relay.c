/* common/relay.c's bulk mode against real loopback TCP: a destination that stops reading fills
 * up, the source then keeps flowing into the pipe (ns_relay_top_up) up to its size and no
 * further, and every byte arrives once, in order, with EOF after the last.  Twice: with a source
 * over TCP that writes 64 KiB at a time, and with a source socket that keeps each 100-byte write
 * apart (a Unix stream socket: TCP merges small segments on receipt): the pipe, which counts
 * buffers, is then full long before its byte count says so, and the relay must stop asking for
 * input rather than spin.  TAP. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/relay.h"
#include "tap.h"

#define TOTAL (6u << 20) /* more than the pipe and both sockets' buffers hold */

static unsigned char pattern(size_t i) { return (unsigned char) (i * 131 + (i >> 13)); }

/* A connected loopback TCP pair: *a (the connecting end) and *b (the accepted end). */
static int tcp_pair(int *a, int *b) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        if (l < 0 || bind(l, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
            getsockname(l, (struct sockaddr *) &sa, &len) < 0)
                return -1;
        *a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (*a < 0 || connect(*a, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -1;
        *b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        close(l);
        return *b < 0 ? -1 : 0;
}

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static size_t sent, chunk;

/* Write as much of the pattern as the source takes now, `chunk` bytes a call. */
static void feed(int fd) {
        static unsigned char buf[65536];
        while (sent < TOTAL) {
                size_t n = TOTAL - sent < chunk ? TOTAL - sent : chunk;
                for (size_t k = 0; k < n; k++)
                        buf[k] = pattern(sent + k);
                ssize_t w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w <= 0)
                        return;
                sent += (size_t) w;
        }
}

/* Read what the destination has now, checking it against the pattern. */
static void drain(int fd, unsigned char *buf, size_t cap, size_t *got, bool *order, bool *eof) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) != 1)
                return;
        ssize_t n = read(fd, buf, cap);
        if (n == 0)
                *eof = true;
        for (ssize_t i = 0; i < n && *order; i++, (*got)++)
                *order = buf[i] == pattern(*got);
}

static int scenario(size_t write_size, bool unix_src) {
        int src_w, src_r, dst_w, dst_r, sp[2];
        if (unix_src) {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                        return -1;
                src_w = sp[0];
                src_r = sp[1];
        } else if (tcp_pair(&src_w, &src_r) < 0) {
                return -1;
        }
        if (tcp_pair(&dst_w, &dst_r) < 0)
                return -1;
        sent = 0;
        chunk = write_size;
        printf("# the source (%s) writes %zu bytes at a time\n", unix_src ? "Unix stream" : "TCP", write_size);
        nonblock(src_w);
        nonblock(src_r);
        nonblock(dst_w);
        /* Small buffers on the way out, so that the destination is full long before the pipe. */
        int small = 64 << 10;
        setsockopt(dst_w, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(dst_r, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);

        ns_relay_dir d;
        ns_relay_init(&d);
        /* 100-byte writes never fill a 64 KiB copying read, which is what turns bulk mode on: on
         * from the start here (the state a long transfer leaves a direction in). */
        d.bulk = unix_src;
        unsigned char buf[65536];
        size_t got = 0;
        bool order = true, eof = false;
        /* Move until the destination is full with bulk bytes waiting in the pipe (nobody reads it
         * meanwhile, but for what fills it before the relay has gone over to the pipe). */
        int rounds = 0, full = 0;
        for (; rounds < 10000 && !full && order; rounds++) {
                feed(src_w);
                int w = ns_relay_write(&d, dst_w);
                if (w == 0 && d.piped)
                        full = 1;
                else if (w == 0)
                        drain(dst_r, buf, sizeof buf, &got, &order, &eof);
                else if (ns_relay_move(&d, src_r, dst_w) < 0)
                        break;
        }
        ok(full && d.bulk && d.piped > 0, "the destination fills while bulk bytes wait in the pipe (%zu)", d.piped);
        size_t before = d.piped;
        int tops = 0;
        for (int k = 0; k < 1000 && ns_relay_wants_input(&d); k++) {
                feed(src_w);
                if (ns_relay_top_up(&d, src_r) > 0)
                        tops++;
        }
        ok(tops > 0 && d.piped > before, "the source keeps flowing into the pipe meanwhile (%zu -> %zu bytes)", before,
           d.piped);
        ok(d.piped <= d.pipe_size && !ns_relay_wants_input(&d), "up to the pipe's size and no further (%zu of %zu%s)",
           d.piped, d.pipe_size, d.pipe_full ? ", its buffers all taken" : "");
        if (unix_src)
                ok(d.pipe_full && d.piped < d.pipe_size / 4,
                   "small writes: the pipe's buffers run out first, and input stops there (%zu bytes)", d.piped);
        ok(ns_relay_top_up(&d, src_r) == 0, "a top-up of a full pipe moves nothing");
        ok(ns_relay_move(&d, src_r, dst_w) == 0, "nor does a move while bytes wait");

        /* Now drain: read the destination, relay the rest, close the source after the last byte. */
        for (int k = 0; k < 2000000 && !eof && order; k++) {
                feed(src_w);
                if (sent == TOTAL && src_w >= 0) {
                        shutdown(src_w, SHUT_WR);
                        close(src_w);
                        src_w = -1;
                }
                int w = ns_relay_write(&d, dst_w);
                if (w < 0)
                        break;
                if (w == 0)
                        (void) ns_relay_top_up(&d, src_r);
                else if (!d.eof && ns_relay_move(&d, src_r, dst_w) < 0)
                        break;
                if (d.eof && ns_relay_pending(&d) == 0 && dst_w >= 0) {
                        shutdown(dst_w, SHUT_WR);
                        close(dst_w);
                        dst_w = -1;
                }
                drain(dst_r, buf, sizeof buf, &got, &order, &eof);
        }
        ok(order && got == TOTAL, "every byte arrived once, in order (%zu of %u)", got, TOTAL);
        ok(eof && d.eof, "and EOF after the last");
        ok(d.bytes_in == TOTAL, "the direction counted every byte it read, once (%llu)", (unsigned long long) d.bytes_in);
        ns_relay_release(&d);
        ok(d.pipe[0] == -1 && d.buf == NULL, "released: no pipe, no buffer");
        close(src_r);
        close(dst_r);
        return 0;
}

int main(void) {
        if (scenario(65536, false) < 0) {
                printf("1..0 # SKIP no loopback TCP: %s\n", strerror(errno));
                return 77;
        }
        if (scenario(100, true) < 0)
                ok(0, "a Unix stream socket pair and a loopback TCP pair: %s", strerror(errno));
        return tap_done();
}
