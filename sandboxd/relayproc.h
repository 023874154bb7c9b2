/* sandboxd's relay process: the bytes of every forward (publish and connect, ports.c) move here,
 * not in the daemon.  ports.c keeps the listeners, accepts, dials (and redials) the far end, and
 * once both sockets are connected hands the pair over on a SOCK_SEQPACKET channel (SCM_RIGHTS);
 * the relay moves bytes both ways (common/relay.h: copied when small, spliced in bulk), passes on
 * half-closes and resets, and reports each connection's end so that the daemon can count a
 * sandbox's live connections (PORTS_CONN_MAX).
 *
 * Why a process of its own:
 *   - privilege: the daemon is root, and every byte relayed comes from a socket whose other end a
 *     sandbox holds.  The relay runs as nobody, with no capability, no_new_privs, not dumpable,
 *     no descriptor but its channel and the connections handed to it, and a seccomp allow-list of
 *     the calls a relay makes (nothing that opens, dials or executes);
 *   - CPU: it runs at nice RELAYPROC_NICE, so that bulk bytes yield to the endpoints they serve
 *     and to the daemon's own loop (sandbox starts, requests).  A relay at nice 0 wakes for every
 *     64 KiB segment, preempting the server and the client; a lower weight lets bytes gather and
 *     move in larger batches.  1 GiB through a forward on 2 vCPUs, median of 5 rounds against
 *     direct: 62–68 % at nice 0, 71–81 % at 5, 83–90 % at 10, 88–94 % at 19 (bench/README.md).
 *     10, not 19: under a sandbox's full CPU load a relay at 19 would get 1.5 % of a CPU and a
 *     preview would crawl; at 10 it keeps about 10 %, some 300 MB/s at its 0.3 CPU-s per GiB.
 *
 * The relay dies with the daemon (PR_SET_PDEATHSIG) and every relayed connection with it, as
 * before: a restarted daemon re-adopts sandboxes and their listeners, not live connections. */
#pragma once

#include <stdint.h>

#include "common/err.h"

#define RELAYPROC_NICE 10
#define RELAYPROC_UID 65534     /* nobody */
#define RELAYPROC_NAME "nsd-relay"

enum relay_op {
        RELAY_ADD = 1,            /* daemon → relay, with two descriptors: accepted end, dialled end */
        RELAY_DROP_SANDBOX = 2,   /* daemon → relay: reset every connection of `sandbox` */
        RELAY_DROP_LISTENER = 3,  /* daemon → relay: reset every connection of `listener` */
        RELAY_END = 4,            /* relay → daemon: one connection of `sandbox`/`listener` ended */
};

/* One message on the channel, either way.  Keys are the daemon's: never reused while it runs. */
struct relay_msg {
        uint32_t op;
        uint32_t zero;
        uint64_t sandbox;
        uint64_t listener;
};

/* Fork the relay process from the calling process, which must be single-threaded (the child runs
 * on without exec).  *chan gets the daemon's end of the channel (non-blocking, close-on-exec,
 * with a send buffer that holds thousands of hand-overs), *pidfd a pidfd of the child.  The
 * child never returns: it sets itself up (identity, nice, seccomp) and relays until the channel
 * closes.  Returns 0 or -errno with *err filled. */
int relayproc_spawn(int *chan, int *pidfd, ns_error *err);
