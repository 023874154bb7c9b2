/* nightshift supervisor — the channel between the supervisor and its proxy process.
 *
 * The proxy process (`nightshift proxy-process`, `ns-proxy`: preview_main.c) is exec'd by the
 * supervisor (proxyproc.c).  It serves the previews (preview_proxy.c: it parses what browsers
 * send and relays what agents' dev servers answer) and moves the bytes of the egress proxy's
 * tunnels once they are established, so that neither slows the supervisor's loop nor shares an
 * address space with the vault's key, the database or the API tokens.  It gets the preview
 * listener as fd 3 (when there is one) and one end of a SOCK_SEQPACKET socket pair as fd 4; over
 * it:
 *
 *   supervisor → proxy   PUT          a preview: id, port, the token's hash (again: a new token)
 *                        DROP         a preview is gone: its connections close
 *                        DIALED       the answer to a DIAL: a socket connected to the preview's
 *                                     port inside its sandbox (SCM_RIGHTS), or an errno
 *                        TUNNEL       relay between the two sockets attached (a sandbox's side,
 *                                     the origin's) until both ways end; `dial` numbers it
 *                        TUNNEL_DROP  reset tunnel `dial` now (its session went away); its
 *                                     TUNNEL_END follows, with the bytes it moved
 *   proxy → supervisor   DIAL         a socket for a browser connection to preview `id`, please
 *                        TUNNEL_END   tunnel `dial` is over: the bytes each way, and `error`
 *                                     ECONNRESET when a side broke
 *
 * Every message is one struct pvc_msg, exactly.  The supervisor trusts nothing the proxy sends:
 * the proxy handles agent-made bytes, so a DIAL is checked like a request from the network (its
 * size, its op, a well-formed id of a live preview, no descriptors attached, a bound on those
 * outstanding), a TUNNEL_END counts only for a tunnel the supervisor handed over and has not
 * heard the end of, and a proxy that breaks the protocol is killed and replaced. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ids.h"

#define PVC_HASH_LEN 32
#define PVC_LISTEN_FD 3
#define PVC_CHAN_FD 4

enum pvc_op {
        PVC_PUT = 1,
        PVC_DROP = 2,
        PVC_DIAL = 3,
        PVC_DIALED = 4,
        PVC_TUNNEL = 5,
        PVC_TUNNEL_DROP = 6,
        PVC_TUNNEL_END = 7,
};

struct pvc_msg {
        uint32_t op;
        int32_t port;                   /* PUT: the port in the sandbox, 1..65535; else 0 */
        int32_t error;                  /* DIALED: 0 with the socket attached, or a positive errno */
        uint32_t zero;
        uint64_t dial;                  /* DIAL, DIALED: the proxy's number for the request; TUNNEL*:
                                         * the supervisor's for the tunnel; ≠ 0 */
        uint64_t bytes[2];              /* TUNNEL_END: from the first socket to the second, and back */
        char id[SV_ID_LEN + 2];         /* the preview ("p-..."), NUL-terminated */
        unsigned char token_hash[PVC_HASH_LEN]; /* PUT */
};

/* Receive one message from `sock` (non-blocking) into *m, and the descriptors attached to it into
 * fds[0..1] (-1 where none).  Descriptors beyond those the message may carry, and any attached to
 * a message that is refused, are closed.  Returns 1 for a message that is well-formed for a
 * receiver on the given side (`from_proxy`: DIAL or TUNNEL_END, never a descriptor; else PUT,
 * DROP, TUNNEL_DROP without one, DIALED with one exactly when it says 0, TUNNEL with two), 0 at
 * EOF, -EAGAIN when nothing waits, -EBADMSG for a malformed message, or another -errno. */
int pvc_recv(int sock, bool from_proxy, struct pvc_msg *m, int fds[2]);

/* Send *m on `sock` without blocking, with fds[0..n) attached (n ≤ 2).  Returns 0 or -errno
 * (-EAGAIN: the channel is full; nothing was sent). */
int pvc_send(int sock, const struct pvc_msg *m, const int *fds, size_t n);
