/* nightshift supervisor — the preview proxy's connections (see preview.h).  They live in the
 * preview proxy process (preview_main.c), never in the supervisor.
 *
 * One browser connection is relayed to one upstream connection: a socket connected to the port of
 * the preview it first asked for, inside that preview's sandbox, which the supervisor dials through
 * sandboxd and hands over (DIAL, DIALED: preview_chan.h).  Requests are parsed with libhttp-parser as they stream:
 * each head is checked (size, framing, Host, access) and rewritten; bodies are passed on with
 * their framing rebuilt from what the parser understood, so upstream never sees a framing the
 * proxy did not.  Responses are relayed as bytes.  After an upgrade both directions are relayed
 * as bytes.  Everything is non-blocking on the loop thread. */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/relay.h"
#include "preview_int.h"
#include "preview_proxy.h"

#define PV_HEAD_MAX 16384       /* a request head (request line + headers), bytes */
#define PV_HEADERS_MAX 100
#define PV_PENDING_MAX (256 * 1024) /* buffered one way before the source stops being read */
#define PV_READ 65536
#define PV_CONNS_MAX 2048

typedef struct pv_buf {
        char *d;
        size_t len, off, cap;
} pv_buf;

struct pv_hdr {
        uint32_t name, name_len, val, val_len; /* offsets into head[] */
};

struct pv_end {
        pv_conn *c;
        int i;
};

struct pv_conn {
        pv_proxy *px;
        uint64_t dial;          /* the DIAL whose answer is awaited; 0: none */
        pv_conn *prev, *next;
        int fd[2];              /* 0: the browser; 1: upstream (-1 until the first forwarded request) */
        ns_watch *w[2];
        uint32_t mask[2];
        struct pv_end end[2];
        pv_buf out[2];          /* out[i]: bytes waiting to be written to fd[i] */
        int pipe[2];            /* upstream → browser by splice(2); -1 until the first response */
        size_t piped;           /* bytes in the pipe: they go to fd[0] before out[0]'s */
        size_t pipe_size;       /* what one splice may move into it */
        bool pipe_full;         /* a top-up found no room (buffers, not bytes, run out): none until a write */
        bool bulk;              /* upstream's reads fill the buffer: splice instead of copying */
        bool eof[2];            /* fd[i] said EOF */
        bool shut[2];           /* fd[i] got shutdown(SHUT_WR) */
        bool connecting;
        bool upgraded;          /* raw both ways from here */
        bool closing;           /* a local answer is queued: read no more, close once it is out */
        bool got_upstream;      /* upstream sent something */
        char preview[SV_ID_LEN + 1]; /* bound to this preview by the first forwarded request */
        /* the request being parsed */
        http_parser hp;
        char head[PV_HEAD_MAX];
        size_t head_len;
        struct pv_hdr hdr[PV_HEADERS_MAX];
        size_t n_hdr;
        uint32_t url, url_len;
        bool in_value, headers_done, chunked;
        uint64_t chunk_len;
        int status;             /* a local error answer decided by a callback (400, 431...) */
};

static void conn_update(pv_conn *c);

/* ---- buffers ------------------------------------------------------------------------------ */

static int buf_add(pv_buf *b, const void *data, size_t n) {
        if (b->off && b->off == b->len)
                b->off = b->len = 0;
        if (b->len + n > b->cap) {
                if (b->off) {
                        memmove(b->d, b->d + b->off, b->len - b->off);
                        b->len -= b->off;
                        b->off = 0;
                }
                if (b->len + n > b->cap) {
                        size_t cap = b->cap ? b->cap : 16384;
                        while (cap < b->len + n)
                                cap *= 2;
                        char *d = realloc(b->d, cap);
                        if (!d)
                                return -ENOMEM;
                        b->d = d;
                        b->cap = cap;
                }
        }
        memcpy(b->d + b->len, data, n);
        b->len += n;
        return 0;
}

static int buf_addf(pv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_addf(pv_buf *b, const char *fmt, ...) {
        char tmp[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof tmp)
                return -EINVAL;
        return buf_add(b, tmp, (size_t) n);
}

static size_t buf_pending(const pv_buf *b) {
        return b->len - b->off;
}

/* Everything waiting to be written to fd[i]: for the browser, the pipe's bytes and then out[0]'s. */
static size_t pending_to(const pv_conn *c, int i) {
        return buf_pending(&c->out[i]) + (i == 0 ? c->piped : 0);
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_free(pv_conn *c) {
        pv_proxy *px = c->px;
        for (int i = 0; i < 2; i++)
                if (c->pipe[i] >= 0)
                        close(c->pipe[i]);
        for (int i = 0; i < 2; i++) {
                ns_loop_remove(px->loop, c->w[i]);
                if (c->fd[i] >= 0)
                        close(c->fd[i]);
                free(c->out[i].d);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                px->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        px->n_conns--;
        free(c);
}

/* Queue a complete local answer to the browser and stop reading: the connection closes once it
 * is written (a request the proxy answers itself never leaves a half-parsed stream behind). */
static void answer(pv_conn *c, int status, const char *reason, const char *extra_headers, const char *body) {
        if (c->closing)
                return;
        c->closing = true;
        size_t bl = strlen(body);
        (void) buf_addf(&c->out[0],
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
                        status, reason, bl);
        if (extra_headers)
                (void) buf_add(&c->out[0], extra_headers, strlen(extra_headers));
        (void) buf_add(&c->out[0], "\r\n", 2);
        (void) buf_add(&c->out[0], body, bl);
        if (HTTP_PARSER_ERRNO(&c->hp) == HPE_OK) /* inside a callback: stop parsing here */
                http_parser_pause(&c->hp, 1);
}

/* ---- the request head ---------------------------------------------------------------------- */

static int head_add(pv_conn *c, const char *at, size_t len) {
        if (c->head_len + len > PV_HEAD_MAX) {
                c->status = 431;
                return -1;
        }
        memcpy(c->head + c->head_len, at, len);
        c->head_len += len;
        return 0;
}

static int on_message_begin(http_parser *hp) {
        pv_conn *c = hp->data;
        c->head_len = c->n_hdr = 0;
        c->url = c->url_len = 0;
        c->in_value = c->headers_done = c->chunked = false;
        return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len) {
        pv_conn *c = hp->data;
        if (c->url_len == 0)
                c->url = (uint32_t) c->head_len;
        if (head_add(c, at, len) < 0)
                return -1;
        c->url_len += (uint32_t) len;
        return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len) {
        pv_conn *c = hp->data;
        if (c->headers_done)
                return 0; /* trailers: dropped */
        if (c->in_value || c->n_hdr == 0) {
                if (c->n_hdr == PV_HEADERS_MAX) {
                        c->status = 431;
                        return -1;
                }
                c->hdr[c->n_hdr++] = (struct pv_hdr){ .name = (uint32_t) c->head_len };
                c->in_value = false;
        }
        struct pv_hdr *h = &c->hdr[c->n_hdr - 1];
        if (head_add(c, at, len) < 0)
                return -1;
        h->name_len += (uint32_t) len;
        return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len) {
        pv_conn *c = hp->data;
        if (c->headers_done)
                return 0;
        struct pv_hdr *h = &c->hdr[c->n_hdr - 1];
        if (!c->in_value) {
                h->val = (uint32_t) c->head_len;
                c->in_value = true;
        }
        if (head_add(c, at, len) < 0)
                return -1;
        h->val_len += (uint32_t) len;
        return 0;
}

static bool hdr_is(const pv_conn *c, const struct pv_hdr *h, const char *name) {
        return h->name_len == strlen(name) && !strncasecmp(c->head + h->name, name, h->name_len);
}

/* The cookie value `name` in the request's Cookie headers into out (≤ cap - 1 bytes). */
static bool cookie_get(const pv_conn *c, const char *name, char *out, size_t cap) {
        size_t nl = strlen(name);
        for (size_t i = 0; i < c->n_hdr; i++) {
                if (!hdr_is(c, &c->hdr[i], "cookie"))
                        continue;
                const char *p = c->head + c->hdr[i].val, *end = p + c->hdr[i].val_len;
                while (p < end) {
                        while (p < end && (*p == ' ' || *p == ';'))
                                p++;
                        const char *e = memchr(p, ';', (size_t) (end - p));
                        if (!e)
                                e = end;
                        if ((size_t) (e - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
                                size_t vl = (size_t) (e - p) - nl - 1;
                                if (vl >= cap)
                                        return false;
                                memcpy(out, p + nl + 1, vl);
                                out[vl] = '\0';
                                return true;
                        }
                        p = e;
                }
        }
        return false;
}

/* Why constant time: the cookie is the preview's only credential; its hash is compared so that
 * neither timing nor a memory dump of the proxy gives the token away. */
static bool token_ok(const pv_site *p, const char *token) {
        if (strlen(token) != PV_TOKEN_HEX)
                return false;
        unsigned char h[PV_HASH_LEN];
        pv_hash(token, PV_TOKEN_HEX, h);
        return sodium_memcmp(h, p->token_hash, PV_HASH_LEN) == 0;
}

/* The preview id the Host names: `<id>.localhost[:port]` or `<id>.preview.<domain>[:port]`. */
bool pv_host_preview(const char *domain, const char *host, size_t len, char id[SV_ID_LEN + 1]) {
        char h[256];
        if (len == 0 || len >= sizeof h)
                return false;
        for (size_t i = 0; i < len; i++)
                h[i] = (char) tolower((unsigned char) host[i]);
        h[len] = '\0';
        char *colon = strrchr(h, ':');
        if (colon) {
                if (strspn(colon + 1, "0123456789") != strlen(colon + 1))
                        return false;
                *colon = '\0';
        }
        char *dot = strchr(h, '.');
        if (!dot || (size_t) (dot - h) != SV_ID_LEN)
                return false;
        const char *rest = dot + 1;
        if (domain) {
                if (strncmp(rest, "preview.", 8) || strcmp(rest + 8, domain))
                        return false;
        } else if (strcmp(rest, "localhost")) {
                return false;
        }
        memcpy(id, h, SV_ID_LEN);
        id[SV_ID_LEN] = '\0';
        return sv_id_valid(id, 'p');
}

/* Ask the supervisor for the upstream connection; requests forwarded meanwhile wait in out[1]. */
static int upstream_connect(pv_conn *c, const pv_site *p) {
        pv_proxy *px = c->px;
        struct pvc_msg m = { .op = PVC_DIAL, .dial = px->last_dial + 1 };
        snprintf(m.id, sizeof m.id, "%s", p->id);
        int r = pv_chan_send(px, &m);
        if (r < 0)
                return r;
        c->dial = ++px->last_dial;
        c->connecting = true;
        return 0;
}

void pv_dialed(pv_proxy *px, uint64_t dial, int fd, int error) {
        pv_conn *c = px->conns;
        while (c && c->dial != dial)
                c = c->next;
        if (!c) { /* the browser went away meanwhile */
                if (fd >= 0)
                        close(fd);
                return;
        }
        c->dial = 0;
        if (fd < 0) {
                log_debug("preview proxy: %s: dial port: %s", c->preview, strerror(error));
                c->connecting = false;
                c->out[1].off = c->out[1].len = 0;
                answer(c, 502, "Bad Gateway", NULL,
                       error == ESRCH ? "the session's sandbox is gone\n" : "the preview's server cannot be reached\n");
        } else {
                c->fd[1] = fd; /* still connecting: on_io reads the outcome at EPOLLOUT */
        }
        conn_update(c);
}

/* Write the request's head, rewritten, to upstream: Host becomes localhost:PORT; the Cookie
 * headers lose the proxy's own cookie and the dashboard's. */
static int forward_head(pv_conn *c, const pv_site *p) {
        pv_buf *b = &c->out[1];
        int r = buf_addf(b, "%s ", http_method_str((enum http_method) c->hp.method));
        if (r == 0)
                r = buf_add(b, c->head + c->url, c->url_len);
        if (r == 0)
                r = buf_addf(b, " HTTP/%u.%u\r\nHost: localhost:%d\r\n", c->hp.http_major, c->hp.http_minor, p->port);
        for (size_t i = 0; i < c->n_hdr && r == 0; i++) {
                const struct pv_hdr *h = &c->hdr[i];
                if (hdr_is(c, h, "host"))
                        continue;
                if (hdr_is(c, h, "cookie")) {
                        char kept[PV_HEAD_MAX];
                        size_t kl = 0;
                        const char *q = c->head + h->val, *end = q + h->val_len;
                        while (q < end) {
                                while (q < end && (*q == ' ' || *q == ';'))
                                        q++;
                                const char *e = memchr(q, ';', (size_t) (end - q));
                                if (!e)
                                        e = end;
                                size_t n = (size_t) (e - q);
                                /* Why: the preview's token and the dashboard's session must never
                                 * reach code running in a sandbox. */
                                bool drop = (n >= sizeof PV_COOKIE && !memcmp(q, PV_COOKIE "=", sizeof PV_COOKIE)) ||
                                            (n >= 19 && !memcmp(q, "nightshift_session=", 19));
                                if (n && !drop) {
                                        if (kl) {
                                                memcpy(kept + kl, "; ", 2);
                                                kl += 2;
                                        }
                                        memcpy(kept + kl, q, n);
                                        kl += n;
                                }
                                q = e;
                        }
                        if (kl && (r = buf_add(b, "Cookie: ", 8)) == 0 && (r = buf_add(b, kept, kl)) == 0)
                                r = buf_add(b, "\r\n", 2);
                        continue;
                }
                if ((r = buf_add(b, c->head + h->name, h->name_len)) == 0 && (r = buf_add(b, ": ", 2)) == 0 &&
                    (r = buf_add(b, c->head + h->val, h->val_len)) == 0)
                        r = buf_add(b, "\r\n", 2);
        }
        return r == 0 ? buf_add(b, "\r\n", 2) : r;
}

static int on_headers_complete(http_parser *hp) {
        pv_conn *c = hp->data;
        c->headers_done = true;
        /* Framing the proxy and the server could read differently is refused (request smuggling):
         * one Content-Length at most, never with Transfer-Encoding, which must be "chunked". */
        size_t n_cl = 0, n_te = 0, n_host = 0, host_i = 0;
        for (size_t i = 0; i < c->n_hdr; i++) {
                const struct pv_hdr *h = &c->hdr[i];
                if (hdr_is(c, h, "content-length"))
                        n_cl++;
                else if (hdr_is(c, h, "transfer-encoding")) {
                        n_te++;
                        if (h->val_len != 7 || strncasecmp(c->head + h->val, "chunked", 7))
                                n_te += 100;
                } else if (hdr_is(c, h, "host")) {
                        n_host++;
                        host_i = i;
                }
        }
        if (n_cl > 1 || n_te > 1 || (n_cl && n_te) || n_host != 1 || hp->http_major != 1) {
                answer(c, 400, "Bad Request", NULL, "bad request framing\n");
                return 0;
        }
        c->chunked = n_te == 1;
        if (hp->method == HTTP_CONNECT) {
                answer(c, 405, "Method Not Allowed", NULL, "CONNECT is not served here\n");
                return 0;
        }
        char id[SV_ID_LEN + 1];
        if (!pv_host_preview(c->px->domain, c->head + c->hdr[host_i].val, c->hdr[host_i].val_len, id)) {
                answer(c, 421, "Misdirected Request", NULL, "this is the preview proxy: no preview is named by this Host\n");
                return 0;
        }
        pv_site *p = pv_site_find(c->px, id);
        if (!p) {
                answer(c, 404, "Not Found", NULL, "no such preview\n");
                return 0;
        }
        if (c->preview[0] && strcmp(c->preview, id)) {
                answer(c, 421, "Misdirected Request", NULL, "one connection serves one preview\n");
                return 0;
        }
        /* The sign-in link: /__nightshift/auth?token=T sets the cookie and sends the browser on to /. */
        size_t al = strlen(PV_AUTH_PATH);
        const char *url = c->head + c->url;
        if (c->url_len >= al && !memcmp(url, PV_AUTH_PATH, al) && (c->url_len == al || url[al] == '?')) {
                char token[PV_TOKEN_HEX + 1] = "";
                const char *q = memmem(url, c->url_len, "token=", 6);
                if (q && (size_t) (url + c->url_len - (q + 6)) >= PV_TOKEN_HEX) {
                        memcpy(token, q + 6, PV_TOKEN_HEX);
                        token[PV_TOKEN_HEX] = '\0';
                }
                if (hp->method != HTTP_GET || !token_ok(p, token)) {
                        answer(c, 403, "Forbidden", NULL, "this preview link is not valid\n");
                        return 0;
                }
                char hdrs[256];
                /* Host-only (no Domain), HttpOnly, SameSite=Lax: scoped to this preview's origin. */
                snprintf(hdrs, sizeof hdrs, "Location: /\r\nSet-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax%s\r\n",
                         PV_COOKIE, token, c->px->domain ? "; Secure" : "");
                answer(c, 302, "Found", hdrs, "");
                return 0;
        }
        char cookie[PV_TOKEN_HEX + 2];
        if (!cookie_get(c, PV_COOKIE, cookie, sizeof cookie)) {
                answer(c, 401, "Unauthorized", NULL, "open this preview through its link from nightshift\n");
                return 0;
        }
        if (!token_ok(p, cookie)) {
                answer(c, 403, "Forbidden", NULL, "this preview's access cookie is not valid\n");
                return 0;
        }
        if (c->fd[1] < 0 && !c->dial) {
                int r = upstream_connect(c, p);
                if (r < 0) { /* the supervisor has not read its channel for a long while */
                        answer(c, 502, "Bad Gateway", NULL, "the preview's server cannot be reached\n");
                        return 0;
                }
                snprintf(c->preview, sizeof c->preview, "%s", id);
        }
        if (forward_head(c, p) < 0) {
                c->status = 500;
                return -1;
        }
        return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len) {
        pv_conn *c = hp->data;
        return c->closing || buf_add(&c->out[1], at, len) == 0 ? 0 : -1;
}

static int on_chunk_header(http_parser *hp) {
        pv_conn *c = hp->data;
        c->chunk_len = hp->content_length;
        if (c->closing || c->chunk_len == 0)
                return 0;
        return buf_addf(&c->out[1], "%llx\r\n", (unsigned long long) c->chunk_len) == 0 ? 0 : -1;
}

static int on_chunk_complete(http_parser *hp) {
        pv_conn *c = hp->data;
        if (c->closing || c->chunk_len == 0)
                return 0;
        return buf_add(&c->out[1], "\r\n", 2) == 0 ? 0 : -1;
}

static int on_message_complete(http_parser *hp) {
        pv_conn *c = hp->data;
        if (!c->closing && c->chunked && buf_add(&c->out[1], "0\r\n\r\n", 5) < 0)
                return -1;
        return 0;
}

static const http_parser_settings parser_settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
        .on_chunk_header = on_chunk_header,
        .on_chunk_complete = on_chunk_complete,
};

/* Bytes from the browser: parsed and forwarded, or (upgraded) forwarded as they are. */
static void from_browser(pv_conn *c, const char *data, size_t n) {
        if (c->upgraded) {
                if (buf_add(&c->out[1], data, n) < 0)
                        answer(c, 500, "Internal Server Error", NULL, "out of memory\n");
                return;
        }
        size_t used = http_parser_execute(&c->hp, &parser_settings, data, n);
        if (c->closing)
                return;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->hp);
        if (e != HPE_OK) {
                if (c->status == 431)
                        answer(c, 431, "Request Header Fields Too Large", NULL, "request head over 16 KiB\n");
                else if (c->status == 500)
                        answer(c, 500, "Internal Server Error", NULL, "out of memory\n");
                else
                        answer(c, 400, "Bad Request", NULL, "malformed request\n");
                return;
        }
        if (c->hp.upgrade) {
                /* An upgrade (WebSocket) was forwarded: what follows the head is the new
                 * protocol's, relayed as bytes from here on. */
                c->upgraded = true;
                if (used < n && buf_add(&c->out[1], data + used, n - used) < 0)
                        answer(c, 500, "Internal Server Error", NULL, "out of memory\n");
        }
}

/* ---- I/O ------------------------------------------------------------------------------------ */

/* Write what is pending to fd[i].  Returns 0 or -errno. */
static int flush_to(pv_conn *c, int i) {
        pv_buf *b = &c->out[i];
        while (i == 0 && c->piped) {
                ssize_t n = splice(c->pipe[0], NULL, c->fd[0], NULL, c->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
                }
                c->piped -= (size_t) n;
                c->pipe_full = false;
        }
        while (buf_pending(b)) {
                ssize_t n = send(c->fd[i], b->d + b->off, buf_pending(b), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                b->off += (size_t) n;
        }
        b->off = b->len = 0;
        if (b->cap > 4 * PV_READ) { /* do not keep a burst's buffer */
                free(b->d);
                *b = (pv_buf){ 0 };
        }
        return 0;
}

/* More of upstream into the pipe, behind what waits there, up to its size.  Returns 0 or -errno. */
static int pipe_top_up(pv_conn *c) {
        if (c->piped >= c->pipe_size || c->eof[1] || c->pipe_full)
                return 0;
        ssize_t n = splice(c->fd[1], NULL, c->pipe[1], NULL, c->pipe_size - c->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
                c->piped += (size_t) n;
        else if (n == 0)
                c->eof[1] = true;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
                c->pipe_full = true; /* upstream is readable: the pipe's buffers are taken (relay.c) */
        else if (errno != EINTR)
                return -errno;
        return 0;
}

/* Upstream → browser in bulk (reads that fill the buffer) while nothing of the proxy's own waits
 * for the browser: response bytes are relayed unparsed, so they move by splice(2) through a pipe,
 * never copied into this process; small answers are cheaper copied (read_from).  While the browser
 * is full, upstream goes on into the pipe behind what waits there, up to the pipe's size (as
 * common/relay.c's ns_relay_top_up), rather than stopping until it drains.  Returns 0 or -errno. */
static int splice_upstream(pv_conn *c) {
        for (int burst = 0; burst < 16; burst++) {
                if (c->piped) {
                        int r = flush_to(c, 0);
                        if (r < 0)
                                return r;
                        if (c->piped)
                                return pipe_top_up(c); /* the browser is full */
                }
                if (c->pipe[0] < 0) {
                        if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
                                c->pipe[0] = c->pipe[1] = -1;
                                return -errno;
                        }
                        /* fewer, larger moves; the default size where the allowance is spent */
                        int sz = fcntl(c->pipe[1], F_SETPIPE_SZ, NS_RELAY_PIPE);
                        c->pipe_size = sz > 0 ? (size_t) sz : PV_READ;
                }
                ssize_t n = splice(c->fd[1], NULL, c->pipe[1], NULL, c->pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0) {
                        c->piped = (size_t) n;
                        c->got_upstream = true;
                        if ((size_t) n < PV_READ / 4) { /* back to copying once this is out */
                                c->bulk = false;
                                return flush_to(c, 0);
                        }
                } else if (n == 0) {
                        c->eof[1] = true;
                        return 0;
                } else if (errno != EINTR) {
                        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
                }
        }
        return 0;
}

/* Read from fd[i] until it runs dry, a few buffers at most (fewer wakeups for bulk transfers),
 * or until enough waits to be written.  Returns 0, or -errno when the connection is broken. */
static int read_from(pv_conn *c, int i) {
        if (i == 1 && c->bulk && !buf_pending(&c->out[0]))
                return splice_upstream(c);
        char buf[PV_READ];
        for (int burst = 0; burst < 4 && !c->eof[i] && !(i == 0 && c->closing) &&
                            buf_pending(&c->out[1 - i]) < PV_PENDING_MAX;
             burst++) {
                ssize_t n = recv(c->fd[i], buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0)
                        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
                if (n == 0) {
                        c->eof[i] = true;
                        return 0;
                }
                if (i == 0)
                        from_browser(c, buf, (size_t) n);
                else {
                        c->got_upstream = true;
                        if (buf_add(&c->out[0], buf, (size_t) n) < 0)
                                return -ENOMEM;
                        if ((size_t) n == sizeof buf) { /* a bulk transfer: splice from the next read on */
                                c->bulk = true;
                                return 0;
                        }
                }
                if ((size_t) n < sizeof buf)
                        return 0;
        }
        return 0;
}

static void on_io(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) fd;
        struct pv_end *e = data;
        pv_conn *c = e->c;
        if (e->i == 1 && c->connecting) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
                        close(c->fd[1]);
                        c->fd[1] = -1;
                        ns_loop_remove(loop, c->w[1]);
                        c->w[1] = NULL;
                        c->connecting = false;
                        c->out[1].off = c->out[1].len = 0;
                        answer(c, 502, "Bad Gateway", NULL, "the preview's server cannot be reached\n");
                        conn_update(c);
                        return;
                }
                if (!(events & EPOLLOUT))
                        return;
                c->connecting = false;
        }
        int r = 0;
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (!c->eof[e->i] && !(e->i == 0 && c->closing))
                        r = read_from(c, e->i);
        }
        /* The browser took more of a bulk response: write the pipe out and read on from upstream
         * in the same wakeup, rather than in the next one that upstream's readiness would bring. */
        if (r == 0 && e->i == 0 && (events & EPOLLOUT) && c->bulk && c->fd[1] >= 0 && !c->connecting && !c->eof[1] &&
            !buf_pending(&c->out[0]))
                r = splice_upstream(c);
        if (r < 0) {
                conn_free(c);
                return;
        }
        conn_update(c);
}

/* Write what can be written, pass EOFs on, and register exactly the events each end waits for. */
static void conn_update(pv_conn *c) {
        ns_loop *loop = c->px->loop;
        for (int i = 0; i < 2; i++)
                if (c->fd[i] >= 0 && !(i == 1 && c->connecting) && flush_to(c, i) < 0) {
                        if (i == 1 && !c->got_upstream && !c->closing) {
                                answer(c, 502, "Bad Gateway", NULL, "the preview's server went away\n");
                                continue;
                        }
                        conn_free(c);
                        return;
                }
        /* A local answer written: done.  EOFs: passed on once everything before them is out. */
        if (c->closing && !pending_to(c, 0)) {
                conn_free(c);
                return;
        }
        if (c->eof[0] && !c->shut[1] && c->fd[1] >= 0 && !c->connecting && !buf_pending(&c->out[1])) {
                (void) shutdown(c->fd[1], SHUT_WR);
                c->shut[1] = true;
        }
        if ((c->eof[1] || (c->eof[0] && c->fd[1] < 0 && !c->dial)) && !c->shut[0] && !pending_to(c, 0)) {
                (void) shutdown(c->fd[0], SHUT_WR);
                c->shut[0] = true;
        }
        if (c->shut[0] && (c->shut[1] || c->fd[1] < 0 || c->eof[0])) {
                conn_free(c);
                return;
        }
        for (int i = 0; i < 2; i++) {
                if (c->fd[i] < 0)
                        continue;
                uint32_t want = 0;
                /* upstream: into the pipe while it has room (see splice_upstream) */
                bool reading_other_ok = i == 1 && c->piped ? c->piped < c->pipe_size && !c->pipe_full && !buf_pending(&c->out[0])
                                                           : pending_to(c, 1 - i) < PV_PENDING_MAX;
                if (!c->eof[i] && reading_other_ok && !(i == 0 && c->closing) && !(i == 1 && c->connecting))
                        want |= EPOLLIN;
                if (pending_to(c, i) || (i == 1 && c->connecting))
                        want |= EPOLLOUT;
                if (want == 0) {
                        ns_loop_remove(loop, c->w[i]);
                        c->w[i] = NULL;
                } else if (!c->w[i]) {
                        if (!(c->w[i] = ns_loop_add(loop, c->fd[i], want, on_io, &c->end[i], NULL))) {
                                conn_free(c);
                                return;
                        }
                } else if (want != c->mask[i] && ns_loop_modify(loop, c->w[i], want, NULL) < 0) {
                        conn_free(c);
                        return;
                }
                c->mask[i] = want;
        }
}

void pv_on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) events;
        pv_proxy *px = data;
        for (int k = 0; k < 64; k++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0)
                        return;
                pv_conn *c = px->n_conns < PV_CONNS_MAX ? calloc(1, sizeof *c) : NULL;
                if (!c) {
                        close(cfd);
                        continue;
                }
                int one = 1;
                (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c->px = px;
                c->fd[0] = cfd;
                c->fd[1] = -1;
                c->pipe[0] = c->pipe[1] = -1;
                for (int i = 0; i < 2; i++)
                        c->end[i] = (struct pv_end){ .c = c, .i = i };
                http_parser_init(&c->hp, HTTP_REQUEST);
                c->hp.data = c;
                c->next = px->conns;
                if (px->conns)
                        px->conns->prev = c;
                px->conns = c;
                px->n_conns++;
                conn_update(c);
        }
}

void pv_conns_close(pv_proxy *px, const char *only) {
        for (pv_conn *c = px->conns, *next; c; c = next) {
                next = c->next;
                if (!only || !strcmp(c->preview, only))
                        conn_free(c);
        }
}
