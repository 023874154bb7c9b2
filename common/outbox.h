/* nightshift — an outbox for a channel between a process and its helper process: small messages,
 * each with up to NS_OUTBOX_FDS descriptors attached, go out at once when the channel has room
 * and wait, in order, when it has none, instead of being lost.
 *
 * Used on both sides of the helper channels: sandboxd's relay process (its ENDs), the
 * supervisor's proxy process (DIALs, TUNNEL_ENDs) and the supervisor itself (PUTs, DIALED
 * sockets, TUNNELs to the proxy process).  Why a helper needs one: its parent may be busy (a
 * slow disk, a burst of requests) while thousands of connections end; a lost END leaves sandboxd
 * counting a connection that is gone (its per-sandbox bound) or an egress event without its
 * bytes.  Bounded: past `max` waiting messages a send fails, so a peer that never reads cannot
 * grow this process's memory or descriptor table without end.
 *
 * The channel is a non-blocking SOCK_SEQPACKET socket watched on the loop with EPOLLIN; the
 * outbox adds EPOLLOUT to that watch while messages wait, and the watch's callback calls
 * ns_outbox_flush when it sees EPOLLOUT. */
#pragma once

#include <stddef.h>

#include "common/loop.h"

#define NS_OUTBOX_MSG_MAX 256 /* the largest message an outbox holds */
#define NS_OUTBOX_FDS 2       /* the most descriptors one message carries */

typedef struct ns_outbox_item ns_outbox_item;

typedef struct ns_outbox {
        ns_loop *loop;
        ns_watch *watch; /* the channel's watch (EPOLLIN); EPOLLOUT added while items wait */
        int sock;
        size_t max, n;
        ns_outbox_item *head, **tail;
} ns_outbox;

/* Set up an empty outbox for `sock`, whose watch on `loop` is `watch` (NULL: none yet; then
 * EPOLLOUT is not asked for), holding at most `max` waiting messages.  An outbox that held
 * messages must be cleared first.  Allocates nothing. */
void ns_outbox_init(ns_outbox *ob, ns_loop *loop, ns_watch *watch, int sock, size_t max);

/* Send `len` bytes (1..NS_OUTBOX_MSG_MAX) as one message with fds[0..nfds) attached (nfds ≤
 * NS_OUTBOX_FDS; each is owned from here on and closed once sent or dropped): now when nothing
 * waits and the channel has room, else after what waits.  Returns 0 (sent, or queued), -ENOBUFS
 * (the outbox is full or out of memory), -EINVAL (a bad length or count), or the send's -errno
 * (the peer is gone: EPIPE, ECONNRESET).  On an error the message is lost and its fds closed. */
int ns_outbox_send(ns_outbox *ob, const void *msg, size_t len, const int *fds, size_t nfds);

/* Send what waits, in order, until the channel is full again; stop asking for EPOLLOUT once
 * nothing waits.  Returns 0, or the -errno of a send that failed (the message is dropped; the
 * rest still wait): the peer is gone or broken, which the caller handles. */
int ns_outbox_flush(ns_outbox *ob);

/* How many messages wait. */
size_t ns_outbox_pending(const ns_outbox *ob);

/* Drop what waits (unsent; their fds closed) and leave the outbox empty. */
void ns_outbox_clear(ns_outbox *ob);
