/* nightshift — a relay between two connected stream sockets on an event loop, until both
 * directions have ended: half-closes passed on (a direction's EOF becomes shutdown(SHUT_WR) of
 * its destination once everything before it is written), a broken side resetting both peers, and
 * the bytes counted each way.  Each direction is a common/relay.c ns_relay_dir (copied while
 * messages are small, spliced through a pipe in bulk, the source kept flowing into the pipe while
 * the destination is full).
 *
 * Used by the helper processes that move agent-facing bytes: sandboxd's relay process (its
 * forwards) and the supervisor's proxy process (egress tunnels). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/loop.h"

typedef struct ns_relay_pair ns_relay_pair;

/* Called once when the pair is over, just before it is freed: `bytes[0]` went from fd0 to fd1,
 * `bytes[1]` from fd1 to fd0; `broken` when a side failed (or ns_relay_pair_reset ended it) and
 * both peers got a reset rather than an EOF. */
typedef void (*ns_relay_pair_end_fn)(void *data, const uint64_t bytes[2], bool broken);

/* Relay between fd0 and fd1 (non-blocking stream sockets; owned from here on, closed at the end)
 * on `loop`.  Bytes already waiting on either side are taken at once.  Returns the pair, or NULL
 * when out of memory or the loop refuses the sockets: then both are closed and `end` is called
 * (broken) before this returns. */
ns_relay_pair *ns_relay_pair_start(ns_loop *loop, int fd0, int fd1, ns_relay_pair_end_fn end, void *data);

/* End the pair now: both peers get a reset (never an EOF that could pass a truncated transfer
 * for a complete one); `end` is called (broken) and the pair freed. */
void ns_relay_pair_reset(ns_relay_pair *p);
