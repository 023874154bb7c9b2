/* nightshift — a relay between two sockets (see relaypair.h). */
#include "common/relaypair.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/relay.h"

#define PAIR_BURST 16 /* buffers moved per direction per wake-up, for fairness */

struct pair_end {
        ns_relay_pair *p;
        int i;
};

/* One direction: bytes read from end `i` waiting to be written to end `1 - i`. */
struct pair_dir {
        ns_relay_dir r;
        bool shut;      /* the source said EOF and the destination got shutdown(SHUT_WR) */
};

struct ns_relay_pair {
        ns_loop *loop;
        int fd[2];
        ns_watch *w[2];         /* NULL while nothing is wanted of that end */
        uint32_t mask[2];
        struct pair_end end[2];
        struct pair_dir d[2];   /* d[0]: fd0 → fd1; d[1]: fd1 → fd0 */
        ns_relay_pair_end_fn on_end;
        void *data;
};

static void pair_free(ns_relay_pair *p, bool broken) {
        uint64_t bytes[2] = { p->d[0].r.bytes_in, p->d[1].r.bytes_in };
        for (int i = 0; i < 2; i++) {
                ns_loop_remove(p->loop, p->w[i]);
                if (broken) {
                        /* A relay that failed must not look like a clean end to either peer: an
                         * RST, not a FIN, so a truncated transfer is never taken for complete. */
                        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                        (void) setsockopt(p->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                close(p->fd[i]);
                ns_relay_release(&p->d[i].r);
        }
        if (p->on_end)
                p->on_end(p->data, bytes, broken);
        free(p);
}

/* Pass on the source's EOF once everything before it is written.  Half-close: the other
 * direction keeps flowing. */
static void dir_finish(ns_relay_pair *p, int i) {
        struct pair_dir *d = &p->d[i];
        if (d->r.eof && !d->shut && ns_relay_pending(&d->r) == 0) {
                (void) shutdown(p->fd[1 - i], SHUT_WR);
                d->shut = true;
                ns_relay_release(&d->r);
        }
}

/* Move what can be moved in direction i, at most PAIR_BURST reads.  Whatever state it stops in,
 * pair_update asks for exactly the event that lets it go on.  Returns 0, or -errno when the
 * connection is broken. */
static int dir_pump(ns_relay_pair *p, int i) {
        struct pair_dir *d = &p->d[i];
        int r = 1;
        for (int burst = 0; burst < PAIR_BURST && !d->shut && r > 0; burst++) {
                if ((r = ns_relay_write(&d->r, p->fd[1 - i])) < 0 || d->r.eof)
                        break;
                if (r == 0) {
                        /* The destination is full: the source goes on into the pipe meanwhile. */
                        r = ns_relay_top_up(&d->r, p->fd[i]);
                        break;
                }
                /* read and written at once: a message that goes straight through is never
                 * buffered (no allocation per message, see relay.h) */
                ssize_t n = ns_relay_move(&d->r, p->fd[i], p->fd[1 - i]);
                if (n <= 0) {
                        r = (int) n;
                        break;
                }
                /* A short read drained the socket: wait for the next readiness rather than read
                 * again only to hear EAGAIN (level-triggered: nothing is lost). */
                if ((size_t) n < NS_RELAY_CHUNK && !d->r.bulk)
                        break;
        }
        if (r < 0)
                return r;
        dir_finish(p, i);
        return 0;
}

static bool pair_update(ns_relay_pair *p);

static void on_io(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) fd;
        struct pair_end *e = data;
        ns_relay_pair *p = e->p;
        /* d[i] reads end i and writes end 1 - i: it can move when end i became readable or end
         * 1 - i writable (an error or hang-up: both, to see it).  Pumping only those spares a
         * read that would find nothing, a syscall per event. */
        uint32_t any = EPOLLERR | EPOLLHUP;
        for (int i = 0; i < 2; i++)
                if ((events & (any | (e->i == i ? EPOLLIN : EPOLLOUT))) && dir_pump(p, i) < 0) {
                        pair_free(p, true);
                        return;
                }
        if (p->d[0].shut && p->d[1].shut) {
                pair_free(p, false);
                return;
        }
        (void) pair_update(p);
}

/* Register exactly the events the pair waits for.  An end nothing is wanted of has no watcher
 * at all, so a hung-up socket cannot wake the loop over and over.  False when the loop refused
 * and the pair is gone. */
static bool pair_update(ns_relay_pair *p) {
        for (int k = 0; k < 2; k++) {
                uint32_t want = 0;
                if (ns_relay_wants_input(&p->d[k].r))
                        want |= EPOLLIN;
                if (ns_relay_pending(&p->d[1 - k].r) > 0)
                        want |= EPOLLOUT;
                if (want == 0) {
                        ns_loop_remove(p->loop, p->w[k]);
                        p->w[k] = NULL;
                } else if (!p->w[k]) {
                        if (!(p->w[k] = ns_loop_add(p->loop, p->fd[k], want, on_io, &p->end[k], NULL))) {
                                pair_free(p, true);
                                return false;
                        }
                } else if (want != p->mask[k] && ns_loop_modify(p->loop, p->w[k], want, NULL) < 0) {
                        pair_free(p, true);
                        return false;
                }
                p->mask[k] = want;
        }
        return true;
}

ns_relay_pair *ns_relay_pair_start(ns_loop *loop, int fd0, int fd1, ns_relay_pair_end_fn end, void *data) {
        ns_relay_pair *p = calloc(1, sizeof *p);
        if (!p) {
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                (void) setsockopt(fd0, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                (void) setsockopt(fd1, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(fd0);
                close(fd1);
                if (end)
                        end(data, (const uint64_t[2]){ 0, 0 }, true);
                return NULL;
        }
        *p = (ns_relay_pair){ .loop = loop, .fd = { fd0, fd1 }, .on_end = end, .data = data };
        for (int i = 0; i < 2; i++) {
                p->end[i] = (struct pair_end){ .p = p, .i = i };
                ns_relay_init(&p->d[i].r);
        }
        /* Bytes may already wait on either end: look at both at once.  A loop that refuses a
         * socket frees the pair in pair_update: the caller learns it from `end`. */
        return pair_update(p) ? p : NULL;
}

void ns_relay_pair_reset(ns_relay_pair *p) {
        if (p)
                pair_free(p, true);
}
