/* Client side of the sandboxd protocol (PROTOCOL.md): the control connection and the stdio stream.
 *
 * Linked by the supervisor and by nightshift-sandbox; depends on nothing of sandboxd but proto.h.
 * A client is not thread-safe: one thread calls at a time.  Every fd it hands out is O_CLOEXEC. */
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "sandboxd/proto.h"

typedef struct ns_client ns_client;

/* Connect to the daemon's SOCK_SEQPACKET socket at `path` (NULL: NS_DEFAULT_SOCKET).  On success
 * *out is a new client; release it with ns_client_free. */
int ns_client_connect(const char *path, ns_client **out, ns_error *err);

/* Close the connection, drop queued notices.  NULL is a no-op. */
void ns_client_free(ns_client *c);

static inline void ns_client_freep(ns_client **c) {
        ns_client_free(*c);
}
#define _cleanup_client_ __attribute__((cleanup(ns_client_freep)))

/* The connection's fd, for polling: readable when a notice (or EOF) is waiting.  Notices that
 * arrived during ns_client_call are already queued and do not make it readable: drain them with
 * ns_client_next_notice after every call, before polling. */
int ns_client_fd(const ns_client *c);

/* Send one request and wait for its reply.
 *
 * `req` holds "op" and the operation's fields, and neither "v" nor "id": the client adds both
 * (req itself is not modified).  `fds` (nfds ≤ NS_PROTO_MAX_FDS) ride along as SCM_RIGHTS and stay
 * owned by the caller.  Notices that arrive meanwhile are queued; replies to other ids are dropped.
 *
 * On success *reply (may be NULL when the caller does not want it) is the whole reply object, to be
 * cJSON_Delete()d.  `reply_fds` receives the fds that came with the reply (O_CLOEXEC, owned by the
 * caller); *n_reply_fds is its capacity on entry and the count on return.  Passing NULL for both
 * closes any fds that came.  More fds than the capacity is EPROTO (all are closed).
 *
 * A reply with "ok": false fails with the daemon's errno and message (fds are closed, *reply is
 * NULL).  Transport failures: ECONNRESET when the daemon closed the connection, EMSGSIZE when a
 * datagram exceeds NS_PROTO_MAX_MSG, EPROTO for malformed replies.  EINTR is retried. */
int ns_client_call(ns_client *c, const cJSON *req, const int *fds, size_t nfds, cJSON **reply, int *reply_fds,
                   size_t *n_reply_fds, ns_error *err);

/* Take the oldest notice: from the queue, else one already waiting on the socket (never blocks).
 * Returns 1 and *notice (cJSON_Delete it) when there was one, 0 when there is none, or -errno
 * (ECONNRESET once the daemon closed the connection). */
int ns_client_next_notice(ns_client *c, cJSON **notice, ns_error *err);

/* ---- The stdio stream (proto.h, "The stdio stream") ------------------------------------------ */

/* Receive one frame from a stream fd.  hdr is converted to host byte order; up to `cap` payload
 * bytes go to `payload`, *len is their count.  Returns 1 for a frame, 0 at end of stream (the
 * peer closed), -EAGAIN when a non-blocking fd has nothing, -EMSGSIZE when the payload exceeds
 * `cap`, -EPROTO for a datagram shorter than the header.  Any fds that ride along are closed. */
int ns_stream_read(int fd, struct ns_frame_hdr *hdr, void *payload, size_t cap, size_t *len, ns_error *err);

/* Send one frame (`len` ≤ NS_FRAME_MAX_PAYLOAD payload bytes) in one datagram, without SIGPIPE.
 * -EAGAIN when a non-blocking fd is full (nothing was sent), -EPIPE when the peer is gone. */
int ns_stream_send(int fd, uint32_t type, uint32_t stream, uint64_t offset, uint64_t value, const void *payload,
                   size_t len, ns_error *err);

/* Decode the payload of an EXIT frame into host byte order.  -EPROTO when it has the wrong size. */
int ns_frame_exit_decode(const void *payload, size_t len, struct ns_frame_exit *out, ns_error *err);
