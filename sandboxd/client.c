/* Client side of the sandboxd protocol; see client.h. */
#include "sandboxd/client.h"

#include <endian.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/cleanup.h"
#include "common/fdpass.h"

struct ns_client {
        int fd;
        uint64_t next_id;
        cJSON *notices; /* array used as a FIFO */
        char *buf;      /* one datagram, NS_PROTO_MAX_MSG bytes */
};

int ns_client_connect(const char *path, ns_client **out, ns_error *err) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (!path)
                path = NS_DEFAULT_SOCKET;
        if (strlen(path) >= sizeof sa.sun_path)
                return ns_err(err, ENAMETOOLONG, "socket path '%s' is too long", path);
        strcpy(sa.sun_path, path);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return ns_err_sys(err, errno, "socket");
        while (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                if (errno != EINTR)
                        return ns_err_sys(err, errno, "cannot connect to sandboxd at %s", path);

        _cleanup_free_ ns_client *c = calloc(1, sizeof *c);
        _cleanup_free_ char *buf = malloc(NS_PROTO_MAX_MSG);
        cJSON *q = cJSON_CreateArray();
        if (!c || !buf || !q) {
                cJSON_Delete(q);
                return ns_err(err, ENOMEM, "out of memory");
        }
        c->fd = TAKE_FD(fd);
        c->next_id = 1;
        c->notices = q;
        c->buf = TAKE_PTR(buf);
        *out = TAKE_PTR(c);
        return 0;
}

void ns_client_free(ns_client *c) {
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        cJSON_Delete(c->notices);
        free(c->buf);
        free(c);
}

int ns_client_fd(const ns_client *c) {
        return c->fd;
}

static void close_all(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

/* Collect the SCM_RIGHTS fds of a received message into fds[NS_PROTO_MAX_FDS]. */
/* What came with the message; more than the control buffer holds cannot come (MSG_CTRUNC). */
static size_t take_fds(struct msghdr *mh, int *fds) {
        size_t n = ns_take_fds(mh, fds, NS_PROTO_MAX_FDS);
        return n < NS_PROTO_MAX_FDS ? n : NS_PROTO_MAX_FDS;
}

/* Receive one message from the daemon: *json is an object, fds[*nfds] what came with it. */
static int recv_msg(ns_client *c, int flags, cJSON **json, int *fds, size_t *nfds, ns_error *err) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * NS_PROTO_MAX_FDS)];
        } control;
        struct iovec iov = {.iov_base = c->buf, .iov_len = NS_PROTO_MAX_MSG};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n;
        bool reset = false;
        *nfds = 0;
        /* ECONNRESET comes once, ahead of messages still queued (see ns_stream_read). */
        while ((n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | flags)) < 0)
                if (errno == ECONNRESET && !reset)
                        reset = true;
                else if (errno != EINTR) {
                        if (errno == EAGAIN)
                                return -EAGAIN;
                        return ns_err_sys(err, errno, "receive from sandboxd");
                }
        *nfds = take_fds(&mh, fds);
        int r = 0;
        if (n == 0)
                r = ns_err(err, ECONNRESET, "sandboxd closed the connection");
        else if (mh.msg_flags & MSG_CTRUNC)
                r = ns_err(err, EPROTO, "sandboxd sent more file descriptors than a message may carry");
        else if (mh.msg_flags & MSG_TRUNC)
                r = ns_err(err, EMSGSIZE, "sandboxd sent a message larger than %d bytes", NS_PROTO_MAX_MSG);
        else if (!(*json = cJSON_ParseWithLength(c->buf, (size_t) n)) || !cJSON_IsObject(*json)) {
                cJSON_Delete(*json);
                *json = NULL;
                r = ns_err(err, EPROTO, "sandboxd sent a message that is not a JSON object");
        }
        if (r < 0) {
                close_all(fds, *nfds);
                *nfds = 0;
        }
        return r;
}

static int send_request(ns_client *c, const cJSON *req, uint64_t id, const int *fds, size_t nfds, ns_error *err) {
        _cleanup_free_ char *body = cJSON_PrintUnformatted(req);
        if (!body)
                return ns_err(err, ENOMEM, "out of memory");
        /* body is "{...}": splice the envelope in front of its members. */
        bool empty = strcmp(body, "{}") == 0;
        _cleanup_free_ char *msg = NULL;
        int len = asprintf(&msg, "{\"v\":%d,\"id\":%" PRIu64 "%s%s", NS_PROTO_VERSION, id, empty ? "}" : ",",
                           empty ? "" : body + 1);
        if (len < 0)
                return ns_err(err, ENOMEM, "out of memory");
        if ((size_t) len > NS_PROTO_MAX_MSG)
                return ns_err(err, EMSGSIZE, "request is larger than %d bytes", NS_PROTO_MAX_MSG);

        struct iovec iov = {.iov_base = msg, .iov_len = (size_t) len};
        int r = ns_send_fds(c->fd, &iov, 1, fds, nfds, 0);
        if (r == -EPIPE || r == -ECONNRESET)
                return ns_err(err, ECONNRESET, "sandboxd closed the connection");
        if (r < 0)
                return ns_err_sys(err, -r, "send to sandboxd");
        return 0;
}

/* The error of an "ok": false reply. */
static int reply_error(const cJSON *reply, ns_error *err) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
        const cJSON *no = cJSON_GetObjectItemCaseSensitive(e, "errno");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        int code = EIO;
        if (cJSON_IsNumber(no) && no->valuedouble >= 1 && no->valuedouble <= 4095)
                code = (int) no->valuedouble;
        if (cJSON_IsString(msg) && msg->valuestring && msg->valuestring[0])
                return ns_err(err, code, "%s", msg->valuestring);
        return ns_err_sys(err, code, "sandboxd refused the request");
}

static bool is_notice(const cJSON *m) {
        return cJSON_HasObjectItem(m, "notice");
}

int ns_client_call(ns_client *c, const cJSON *req, const int *fds, size_t nfds, cJSON **reply, int *reply_fds,
                   size_t *n_reply_fds, ns_error *err) {
        size_t cap = n_reply_fds ? *n_reply_fds : 0;
        if (reply)
                *reply = NULL;
        if (n_reply_fds)
                *n_reply_fds = 0;
        if (!cJSON_IsObject(req) || cJSON_HasObjectItem(req, "v") || cJSON_HasObjectItem(req, "id"))
                return ns_err(err, EINVAL, "a request is an object without 'v' and 'id'");
        if (nfds > NS_PROTO_MAX_FDS)
                return ns_err(err, EINVAL, "at most %d fds ride on one request", NS_PROTO_MAX_FDS);

        uint64_t id = c->next_id++;
        int r = send_request(c, req, id, fds, nfds, err);
        if (r < 0)
                return r;

        for (;;) {
                cJSON *m = NULL;
                int got[NS_PROTO_MAX_FDS];
                size_t ngot = 0;
                r = recv_msg(c, 0, &m, got, &ngot, err);
                if (r < 0)
                        return r;
                if (is_notice(m)) {
                        close_all(got, ngot);
                        cJSON_AddItemToArray(c->notices, m);
                        continue;
                }
                const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
                if (!cJSON_IsNumber(mid) || mid->valuedouble != (double) id) {
                        /* A reply to a request we gave up on (or garbage): not ours. */
                        close_all(got, ngot);
                        cJSON_Delete(m);
                        continue;
                }
                const cJSON *ok = cJSON_GetObjectItemCaseSensitive(m, "ok");
                if (!cJSON_IsBool(ok))
                        r = ns_err(err, EPROTO, "sandboxd sent a reply without 'ok'");
                else if (!cJSON_IsTrue(ok))
                        r = reply_error(m, err);
                else if (ngot > cap)
                        r = ns_err(err, EPROTO, "sandboxd sent %zu file descriptors, expected at most %zu", ngot,
                                   cap);
                if (r < 0) {
                        close_all(got, ngot);
                        cJSON_Delete(m);
                        return r;
                }
                if (ngot > 0)
                        memcpy(reply_fds, got, ngot * sizeof(int));
                if (n_reply_fds)
                        *n_reply_fds = ngot;
                if (reply)
                        *reply = m;
                else
                        cJSON_Delete(m);
                return 0;
        }
}

int ns_client_next_notice(ns_client *c, cJSON **notice, ns_error *err) {
        *notice = NULL;
        for (;;) {
                if (cJSON_GetArraySize(c->notices) > 0) {
                        *notice = cJSON_DetachItemFromArray(c->notices, 0);
                        return 1;
                }
                cJSON *m = NULL;
                int got[NS_PROTO_MAX_FDS];
                size_t ngot = 0;
                int r = recv_msg(c, MSG_DONTWAIT, &m, got, &ngot, err);
                if (r == -EAGAIN)
                        return 0;
                if (r < 0)
                        return r;
                close_all(got, ngot);
                if (is_notice(m)) {
                        *notice = m;
                        return 1;
                }
                cJSON_Delete(m); /* a stale reply */
        }
}

/* ---- The stdio stream ---------------------------------------------------------------------------- */

int ns_stream_read(int fd, struct ns_frame_hdr *hdr, void *payload, size_t cap, size_t *len, ns_error *err) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * NS_PROTO_MAX_FDS)];
        } control;
        struct ns_frame_hdr h;
        struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof h}, {.iov_base = payload, .iov_len = cap}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n;
        bool reset = false;
        *len = 0;
        /* A peer that closes with frames of ours unread (init after EXIT, with an ACK still queued)
         * makes the next recvmsg fail with ECONNRESET even though frames wait in our queue; the
         * error is reported once, so read on to get them (or 0 at the end). */
        while ((n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) < 0)
                if (errno == ECONNRESET && !reset)
                        reset = true;
                else if (errno != EINTR) {
                        if (errno == EAGAIN)
                                return ns_err(err, EAGAIN, "no frame waiting");
                        return ns_err_sys(err, errno, "read from the stdio stream");
                }
        int fds[NS_PROTO_MAX_FDS];
        close_all(fds, take_fds(&mh, fds));
        if (n == 0)
                return 0;
        if (mh.msg_flags & MSG_TRUNC)
                return ns_err(err, EMSGSIZE, "stdio frame larger than %zu bytes", cap);
        if ((size_t) n < sizeof h)
                return ns_err(err, EPROTO, "stdio frame shorter than its header (%zd bytes)", n);
        hdr->type = le32toh(h.type);
        hdr->stream = le32toh(h.stream);
        hdr->offset = le64toh(h.offset);
        hdr->value = le64toh(h.value);
        *len = (size_t) n - sizeof h;
        return 1;
}

int ns_stream_send(int fd, uint32_t type, uint32_t stream, uint64_t offset, uint64_t value, const void *payload,
                   size_t len, ns_error *err) {
        if (len > NS_FRAME_MAX_PAYLOAD)
                return ns_err(err, EMSGSIZE, "stdio frame payload larger than %d bytes", NS_FRAME_MAX_PAYLOAD);
        struct ns_frame_hdr h = {.type = htole32(type), .stream = htole32(stream), .offset = htole64(offset),
                                 .value = htole64(value)};
        struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof h},
                               {.iov_base = (void *) payload, .iov_len = len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len > 0 ? 2 : 1};
        while (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0)
                if (errno != EINTR) {
                        if (errno == EAGAIN)
                                return ns_err(err, EAGAIN, "the stdio stream is full");
                        return ns_err_sys(err, errno, "write to the stdio stream");
                }
        return 0;
}

int ns_frame_exit_decode(const void *payload, size_t len, struct ns_frame_exit *out, ns_error *err) {
        struct ns_frame_exit e;
        if (len != sizeof e)
                return ns_err(err, EPROTO, "EXIT frame of %zu bytes, expected %zu", len, sizeof e);
        memcpy(&e, payload, sizeof e);
        out->code = (int32_t) le32toh((uint32_t) e.code);
        out->signal = (int32_t) le32toh((uint32_t) e.signal);
        out->flags = le32toh(e.flags);
        out->reserved = le32toh(e.reserved);
        return 0;
}
