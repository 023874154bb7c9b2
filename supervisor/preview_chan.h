/* nightshift supervisor — the channel between the supervisor and its preview proxy process.
 *
 * The preview proxy (preview_proxy.c) runs in a process of its own (`nightshift preview-proxy`,
 * preview_main.c), exec'd by the supervisor (preview_proc.c): it parses what browsers send and
 * relays what agents' dev servers answer, so it must neither slow the supervisor's loop nor share
 * an address space with the vault's key, the database or the API tokens.  It gets the preview
 * listener as fd 3 and one end of a SOCK_SEQPACKET socket pair as fd 4; over it:
 *
 *   supervisor → proxy   PUT     a preview: id, port, the token's hash (again: a new token)
 *                        DROP    a preview is gone: its connections close
 *                        DIALED  the answer to a DIAL: a socket connected to the preview's port
 *                                inside its sandbox (SCM_RIGHTS), or an errno
 *   proxy → supervisor   DIAL    a socket for a browser connection to preview `id`, please
 *
 * Every message is one struct pvc_msg, exactly.  The supervisor trusts nothing the proxy sends:
 * the proxy handles agent-made bytes, so a DIAL is checked like a request from the network (its
 * size, its op, a well-formed id of a live preview, no descriptors attached, a bound on those
 * outstanding), and a proxy that breaks the protocol is killed and replaced. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ids.h"

#define PVC_HASH_LEN 32
#define PVC_LISTEN_FD 3
#define PVC_CHAN_FD 4

enum pvc_op { PVC_PUT = 1, PVC_DROP = 2, PVC_DIAL = 3, PVC_DIALED = 4 };

struct pvc_msg {
        uint32_t op;
        int32_t port;                   /* PUT: the port in the sandbox, 1..65535; else 0 */
        int32_t error;                  /* DIALED: 0 with the socket attached, or a positive errno */
        uint32_t zero;
        uint64_t dial;                  /* DIAL, DIALED: the proxy's number for the request, ≠ 0 */
        char id[SV_ID_LEN + 2];         /* the preview ("p-..."), NUL-terminated */
        unsigned char token_hash[PVC_HASH_LEN]; /* PUT */
};

/* Receive one message from `sock` (non-blocking) into *m, and the descriptor attached to it into
 * *fd (-1 when none).  Descriptors beyond one, and any attached to a message that is refused, are
 * closed.  Returns 1 for a message that is well-formed for a receiver on the given side
 * (`from_proxy`: only DIAL, never a descriptor; else PUT, DROP, DIALED, a descriptor exactly when
 * a DIALED says 0), 0 at EOF, -EAGAIN when nothing waits, -EBADMSG for a malformed message, or
 * another -errno. */
int pvc_recv(int sock, bool from_proxy, struct pvc_msg *m, int *fd);

/* Send *m on `sock` without blocking, with `fd` attached when ≥ 0.  Returns 0 or -errno
 * (-EAGAIN: the channel is full; nothing was sent). */
int pvc_send(int sock, const struct pvc_msg *m, int fd);
