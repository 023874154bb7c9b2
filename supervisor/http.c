#include "http.h"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "api_int.h"
#include "auth.h"
#include "common/log.h"
#include "serve.h"
#include "preview.h"
#include "web.h"
#include "ws.h"

const double sv_http_bucket_bounds[SV_HTTP_BUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,   0.1,   0.25,   0.5,   1,    5 };

struct sv_http {
        sv_server *srv;
        sv_http_stats stats;
        struct lws_context *ctx;
        struct lws_vhost *vh;
        int listen_fd;
        ns_watch *listen_watch;
        int loop_fd; /* a dup of our epoll fd, adopted by lws as a raw file */
        lws_sorted_usec_list_t tick_sul;
        void (*tick)(sv_server *s);
        sv_web *web; /* the dashboard's files */
};

/* per connection: an HTTP request in flight, or (after the upgrade) an event subscriber */
struct pss {
        sv_req *req;
        sv_ws_client *ws;
        size_t rx_len; /* the WebSocket message being received, so far */
};

static void req_free(sv_req *r) {
        if (!r)
                return;
        free(r->body);
        free(r->resp);
        free(r);
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p, unsigned char *end) {
        return lws_add_http_header_by_name(wsi, (const unsigned char *) name, (const unsigned char *) value,
                                           (int) strlen(value), p, end);
}

static int write_response(struct lws *wsi, sv_req *r) {
        if (!r->headers_sent) {
                unsigned char hdr[LWS_PRE + 2048];
                unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
                char ra[24];
                snprintf(ra, sizeof ra, "%d", r->retry_after_s);
                if (lws_add_http_common_headers(wsi, (unsigned int) r->status,
                                                r->content_type ? r->content_type : "application/json",
                                                (lws_filepos_t) r->resp_len, &p, end) ||
                    add_header(wsi, "cache-control:", r->cache_control ? r->cache_control : "no-store", &p, end) ||
                    add_header(wsi, "x-content-type-options:", "nosniff", &p, end) ||
                    (r->etag[0] && add_header(wsi, "etag:", r->etag, &p, end)) ||
                    (r->csp[0] && (add_header(wsi, "content-security-policy:", r->csp, &p, end) ||
                                   add_header(wsi, "referrer-policy:", "no-referrer", &p, end) ||
                                   add_header(wsi, "x-frame-options:", "DENY", &p, end))) ||
                    (r->set_cookie[0] && add_header(wsi, "set-cookie:", r->set_cookie, &p, end)) ||
                    (r->status == 401 && add_header(wsi, "www-authenticate:", "Bearer realm=\"nightshift\"", &p, end)) ||
                    (r->retry_after_s > 0 && add_header(wsi, "retry-after:", ra, &p, end)) ||
                    lws_finalize_write_http_header(wsi, start, &p, end))
                        return -1;
                r->headers_sent = true;
                if (!r->resp_len)
                        goto done;
                /* A small body follows at once, in the same turn: no second trip through the loop
                 * (lws queues what the socket does not take). */
                if (r->resp_len > 16384) {
                        lws_callback_on_writable(wsi);
                        return 0;
                }
        }
        size_t chunk = r->resp_len - r->resp_sent;
        if (chunk > 16384)
                chunk = 16384;
        unsigned char *buf = malloc(LWS_PRE + chunk);
        if (!buf)
                return -1;
        memcpy(buf + LWS_PRE, r->resp + r->resp_sent, chunk);
        bool last = r->resp_sent + chunk == r->resp_len;
        int w = lws_write(wsi, buf + LWS_PRE, chunk, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        free(buf);
        if (w < (int) chunk)
                return -1;
        r->resp_sent += chunk;
        if (!last) {
                lws_callback_on_writable(wsi);
                return 0;
        }
done:;
        sv_http *h = r->srv ? r->srv->http : NULL;
        if (h && r->started_us) {
                double secs = (double) (ns_now_us() - r->started_us) / 1e6;
                for (int i = 0; i < SV_HTTP_BUCKETS; i++)
                        if (secs <= sv_http_bucket_bounds[i])
                                h->stats.bucket[i]++;
                h->stats.count++;
                h->stats.sum_s += secs;
                if (r->status >= 100 && r->status < 600)
                        h->stats.by_class[r->status / 100]++;
        }
        struct pss *ps = lws_wsi_user(wsi);
        if (ps && ps->req == r)
                ps->req = NULL;
        req_free(r);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Copy header `tok` (or the custom header `name`) into buf; false when absent.  One longer than
 * buf is not cut: it marks the request (header_too_long) and reads as absent. */
static bool copy_header(struct lws *wsi, sv_req *r, enum lws_token_indexes tok, const char *name, char *buf, size_t cap) {
        buf[0] = '\0';
        int n = name ? lws_hdr_custom_length(wsi, name, (int) strlen(name)) : lws_hdr_total_length(wsi, tok);
        if (n <= 0)
                return false;
        if ((size_t) n >= cap) {
                r->header_too_long = true;
                return false;
        }
        int c = name ? lws_hdr_custom_copy(wsi, buf, (int) cap, name, (int) strlen(name)) : lws_hdr_copy(wsi, buf, (int) cap, tok);
        if (c < 0) {
                buf[0] = '\0';
                return false;
        }
        return true;
}

static void capture_headers(struct lws *wsi, sv_req *r) {
        char small[16];
        copy_header(wsi, r, WSI_TOKEN_HTTP_AUTHORIZATION, NULL, r->authorization, sizeof r->authorization);
        copy_header(wsi, r, WSI_TOKEN_ORIGIN, NULL, r->origin, sizeof r->origin);
        copy_header(wsi, r, WSI_TOKEN_HOST, NULL, r->host, sizeof r->host);
        r->csrf_header = copy_header(wsi, r, 0, "x-nightshift-csrf:", small, sizeof small) && !strcmp(small, "1");
        r->forwarded_https = copy_header(wsi, r, 0, "x-forwarded-proto:", small, sizeof small) && !strcmp(small, "https");
        if (!strcmp(r->path, "/api/v1/hooks/github")) {
                copy_header(wsi, r, 0, "x-hub-signature-256:", r->hook_signature, sizeof r->hook_signature);
                copy_header(wsi, r, 0, "x-github-delivery:", r->hook_delivery, sizeof r->hook_delivery);
                copy_header(wsi, r, 0, "x-github-event:", r->hook_event, sizeof r->hook_event);
        } else if (!strcmp(r->path, "/api/v1/hooks/linear")) {
                copy_header(wsi, r, 0, "linear-signature:", r->hook_signature, sizeof r->hook_signature);
                copy_header(wsi, r, 0, "linear-delivery:", r->hook_delivery, sizeof r->hook_delivery);
                copy_header(wsi, r, 0, "linear-event:", r->hook_event, sizeof r->hook_event);
        } else if (!strcmp(r->path, "/api/v1/hooks/slack")) {
                copy_header(wsi, r, 0, "x-slack-signature:", r->hook_signature, sizeof r->hook_signature);
                copy_header(wsi, r, 0, "x-slack-request-timestamp:", r->hook_timestamp, sizeof r->hook_timestamp);
        }
        size_t cl = sizeof r->session_cookie;
        if (lws_http_cookie_get(wsi, SV_COOKIE_NAME, r->session_cookie, &cl) != 0)
                r->session_cookie[0] = '\0';
}

static void dispatch(sv_req *r) {
        /* Once: lws also reports a body completion for a POST without a body, which was
         * dispatched already; a handler still working on a worker must not get it twice. */
        if (r->dispatched)
                return;
        r->dispatched = true;
        if (r->body_too_large)
                return sv_req_reply_error(r, 413, "too_large", "request body larger than %d bytes", SV_HTTP_BODY_MAX);
        /* Why: a preview's origin must never serve the API or the dashboard (its pages would share
         * their origin); preview sites are the preview proxy's alone (preview.h). */
        if (sv_preview_host(r->srv, r->host))
                return sv_req_reply_error(r, 421, "misdirected", "this host name is a preview's: see --preview-listen");
        sv_api_dispatch(r);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
        struct lws_context *ctx = lws_get_context(wsi);
        sv_server *s = lws_context_user(ctx);
        struct pss *ps = user;
        ns_error err;
        (void) err;

        switch (reason) {
        case LWS_CALLBACK_RAW_RX_FILE:
                /* Our epoll loop has something ready: run it without waiting. */
                if (s)
                        ns_loop_dispatch(s->loop);
                return 0;
        case LWS_CALLBACK_RAW_CLOSE_FILE:
                return 0;
        case LWS_CALLBACK_HTTP: {
                sv_req *r = calloc(1, sizeof *r);
                if (!r)
                        return -1;
                r->srv = s;
                r->wsi = wsi;
                r->started_us = ns_now_us();
                ps->req = r;
                char *uri = NULL;
                int ulen = 0;
                int m = lws_http_get_uri_and_method(wsi, &uri, &ulen);
                static const char *const names[] = { [LWSHUMETH_GET] = "GET", [LWSHUMETH_POST] = "POST",
                                                     [LWSHUMETH_PUT] = "PUT", [LWSHUMETH_PATCH] = "PATCH",
                                                     [LWSHUMETH_DELETE] = "DELETE" };
                if (m < 0 || (size_t) m >= ARRAY_SIZE(names) || !names[m]) {
                        snprintf(r->method, sizeof r->method, "?");
                } else {
                        snprintf(r->method, sizeof r->method, "%s", names[m]);
                }
                if ((size_t) ulen >= sizeof r->path) {
                        sv_req_reply_error(r, 414, "uri_too_long", "URI too long");
                        return 0;
                }
                snprintf(r->path, sizeof r->path, "%.*s", ulen, uri ? uri : "");
                if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) >= (int) sizeof r->query) {
                        sv_req_reply_error(r, 414, "uri_too_long", "query too long");
                        return 0;
                }
                /* One fragment per name=value; we join them with '&' for sv_req_query. */
                size_t qn = 0;
                for (int f = 0; f < 64; f++) {
                        char frag[sizeof r->query];
                        int fl = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, f);
                        if (fl < 0)
                                break;
                        if (qn + (size_t) fl + 2 > sizeof r->query) {
                                sv_req_reply_error(r, 414, "uri_too_long", "query too long");
                                return 0;
                        }
                        qn += (size_t) snprintf(r->query + qn, sizeof r->query - qn, "%s%s", qn ? "&" : "", frag);
                }
                char cl[32] = "";
                if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
                        lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
                if (cl[0] && strtoull(cl, NULL, 10) > SV_HTTP_BODY_MAX) {
                        sv_req_reply_error(r, 413, "too_large", "request body larger than %d bytes", SV_HTTP_BODY_MAX);
                        return 0;
                }
                /* Who is asking, before any body is read: an unauthenticated client gets its 401
                 * without the server buffering a megabyte for it. */
                capture_headers(wsi, r);
                /* Why: a preview's origin must never serve the dashboard or the API (its pages would
                 * share their origin); preview sites are the preview proxy's alone (preview.h). */
                if (sv_preview_host(s, r->host)) {
                        sv_req_reply_error(r, 421, "misdirected", "this host name is a preview's: see --preview-listen");
                        return 0;
                }
                /* The dashboard's files need no login (they hold no data): served before auth. */
                if (sv_web_wants(r)) {
                        /* (read here only: an odd If-None-Match must not make an API call a 431) */
                        copy_header(wsi, r, WSI_TOKEN_HTTP_IF_NONE_MATCH, NULL, r->if_none_match, sizeof r->if_none_match);
                        sv_web_serve(s->http->web, r);
                        return 0;
                }
                if (sv_auth_request(s, r) < 0)
                        return 0;
                bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
                if (!strcmp(r->method, "GET") || !strcmp(r->method, "?") || ((!cl[0] || !strcmp(cl, "0")) && !chunked))
                        dispatch(r);
                /* else: the body follows (HTTP_BODY, then HTTP_BODY_COMPLETION) */
                return 0;
        }
        case LWS_CALLBACK_HTTP_BODY: {
                sv_req *r = ps ? ps->req : NULL;
                if (!r || r->body_too_large || r->answered)
                        return 0;
                if (r->body_len + len > SV_HTTP_BODY_MAX) {
                        r->body_too_large = true;
                        return 0;
                }
                char *nb = realloc(r->body, r->body_len + len + 1);
                if (!nb)
                        return -1;
                if (len)
                        memcpy(nb + r->body_len, in, len);
                r->body_len += len;
                nb[r->body_len] = '\0';
                r->body = nb;
                return 0;
        }
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (ps && ps->req && !ps->req->answered)
                        dispatch(ps->req);
                return 0;
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
                /* Only the event stream upgrades, and only for who may read it. */
                sv_req *r = calloc(1, sizeof *r);
                if (!r)
                        return -1;
                r->srv = s;
                snprintf(r->method, sizeof r->method, "GET");
                int ul = lws_hdr_copy(wsi, r->path, sizeof r->path, WSI_TOKEN_GET_URI);
                int status = 0;
                if (ul <= 0 || strcmp(r->path, "/api/v1/events") || !in || strcmp(in, "websocket"))
                        status = HTTP_STATUS_NOT_FOUND;
                if (!status) {
                        capture_headers(wsi, r);
                        status = sv_preview_host(s, r->host) ? 421 : sv_auth_websocket(s, r);
                }
                free(r);
                if (!status)
                        return 0;
                lws_return_http_status(wsi, (unsigned int) status, NULL);
                return 1;
        }
        case LWS_CALLBACK_ESTABLISHED: {
                ns_error e = { 0 };
                ps->ws = sv_ws_client_new(s, wsi, &e);
                if (!ps->ws) {
                        lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *) e.msg, strlen(e.msg));
                        return -1;
                }
                return 0;
        }
        case LWS_CALLBACK_SERVER_WRITEABLE:
                return ps && ps->ws ? sv_ws_client_writable(ps->ws) : 0;
        case LWS_CALLBACK_RECEIVE:
                /* Nothing is expected from subscribers; anything large is refused, not buffered. */
                ps->rx_len += len;
                if (ps->rx_len + lws_remaining_packet_payload(wsi) > SV_WS_RX_MAX) {
                        if (ps->ws) { /* after the events already written (ws.c), not cutting them off */
                                sv_ws_client_close(ps->ws, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "too large");
                                return 0;
                        }
                        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *) "too large", 9);
                        return -1;
                }
                if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
                        ps->rx_len = 0;
                return 0;
        case LWS_CALLBACK_CLOSED:
                if (ps && ps->ws) {
                        sv_ws_client_free(ps->ws);
                        ps->ws = NULL;
                }
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                if (!ps || !ps->req || !ps->req->answered)
                        return 0;
                return write_response(wsi, ps->req);
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
                if (ps && ps->req) {
                        sv_req *r = ps->req;
                        ps->req = NULL;
                        if (r->answered)
                                req_free(r);
                        else
                                r->wsi = NULL; /* a worker still owes the answer; sv_req_reply frees it */
                }
                return 0;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}

#define SV_HTTP_TX_PACKET (256u * 1024)

static const struct lws_protocols protocols[] = {
        /* tx_packet_size: what one send(2) may carry; left 0, lws would cut every write to the
         * 4 kB receive buffer and buffer the rest for as many more trips through the loop. */
        { "http", callback, sizeof(struct pss), SV_WS_RX_MAX, 0, NULL, SV_HTTP_TX_PACKET },
        { NULL, NULL, 0, 0, 0, NULL, 0 },
};

void sv_req_reply_json(sv_req *r, int status, cJSON *body) {
        if (r->answered) {
                cJSON_Delete(body);
                return;
        }
        r->answered = true;
        r->status = status;
        if (body) {
                r->resp = cJSON_PrintUnformatted(body);
                cJSON_Delete(body);
                r->resp_len = r->resp ? strlen(r->resp) : 0;
        } else if (status != 204) {
                r->resp = strdup("{}");
                r->resp_len = r->resp ? 2 : 0;
        }
        if (!r->wsi) {
                req_free(r);
                return;
        }
        lws_callback_on_writable(r->wsi);
}

void sv_req_reply_raw(sv_req *r, int status, const char *content_type, char *body, size_t len) {
        if (r->answered) {
                free(body);
                return;
        }
        r->answered = true;
        r->status = status;
        r->content_type = content_type;
        r->resp = body;
        r->resp_len = body ? len : 0;
        if (!r->wsi) {
                req_free(r);
                return;
        }
        lws_callback_on_writable(r->wsi);
}

const sv_http_stats *sv_http_get_stats(const sv_server *s) {
        return s->http ? &s->http->stats : NULL;
}

void sv_req_reply_error(sv_req *r, int status, const char *code, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", msg);
        sv_req_reply_json(r, status, o);
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool sv_req_query(const sv_req *r, const char *name, char *buf, size_t cap) {
        size_t nl = strlen(name);
        for (const char *p = r->query; *p;) {
                const char *amp = strchr(p, '&');
                size_t seg = amp ? (size_t) (amp - p) : strlen(p);
                if (seg > nl && !strncmp(p, name, nl) && p[nl] == '=') {
                        size_t o = 0;
                        for (size_t i = nl + 1; i < seg && o + 1 < cap; i++) {
                                char c = p[i];
                                if (c == '+')
                                        c = ' ';
                                else if (c == '%' && i + 2 < seg + 1 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
                                        c = (char) (hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                                        i += 2;
                                }
                                buf[o++] = c;
                        }
                        buf[o] = '\0';
                        return true;
                }
                p += seg + (amp ? 1 : 0);
        }
        return false;
}

static void on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) events;
        sv_http *h = data;
        for (int i = 0; i < 64; i++) {
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (c < 0)
                        return;
                /* A response goes out as headers then body: without NODELAY, Nagle holds the body
                 * back until the client's delayed ACK of the headers, 40 ms per request. */
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (!lws_adopt_socket_vhost(h->vh, c))
                        close(c);
        }
}

/* The API can change code on this machine: it leaves loopback only when the operator says so. */
static bool is_loopback(const struct sockaddr_storage *ss) {
        if (ss->ss_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) ss)->sin_addr.s_addr) >> 24) == 127;
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) ss)->sin6_addr);
}

static int listen_socket(const char *addr, int port, bool allow_remote, int *port_out, ns_error *err) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) port);
                sl = sizeof *in4;
        } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) port);
                sl = sizeof *in6;
        } else {
                return ns_err(err, EINVAL, "--listen: '%s' is not an IP address", addr);
        }
        if (!is_loopback(&ss) && !allow_remote)
                return ns_err(err, EPERM,
                              "--listen %s is not a loopback address: set allow-remote true to listen there "
                              "(and put TLS in front: tokens travel in every request)",
                              addr);
        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return ns_err_sys(err, errno, "socket");
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss.ss_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, sl) < 0)
                return ns_err_sys(err, errno, "bind %s:%d", addr, port);
        if (listen(fd, 128) < 0)
                return ns_err_sys(err, errno, "listen");
        struct sockaddr_storage got;
        socklen_t gl = sizeof got;
        getsockname(fd, (struct sockaddr *) &got, &gl);
        *port_out = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *) &got)->sin_port
                                                   : ((struct sockaddr_in6 *) &got)->sin6_port);
        return TAKE_FD(fd);
}

int sv_http_start(sv_server *s, int *port_out, ns_error *err) {
        sv_http *h = calloc(1, sizeof *h);
        if (!h)
                return ns_err(err, ENOMEM, "out of memory");
        h->srv = s;
        h->listen_fd = -1;
        h->loop_fd = -1;
        s->http = h;
        int r;
        lws_set_log_level(LLL_ERR, NULL);
        struct lws_context_creation_info info = { 0 };
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = protocols;
        info.user = s;
        info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
        info.timeout_secs = 30;
        /* Subscribers idle for 30 s are pinged; one silent for 60 s (no pong, nothing) is gone. */
        static const lws_retry_bo_t idle = { .secs_since_valid_ping = 30, .secs_since_valid_hangup = 60 };
        info.retry_and_idle_policy = &idle;
        info.max_http_header_data = 4096;
        if (!(h->ctx = lws_create_context(&info))) {
                r = ns_err(err, EIO, "libwebsockets: cannot create the context");
                goto fail;
        }
        info.vhost_name = "nightshift";
        if (!(h->vh = lws_create_vhost(h->ctx, &info))) {
                r = ns_err(err, EIO, "libwebsockets: cannot create the vhost");
                goto fail;
        }
        if ((r = sv_auth_new(s->cfg.rate_limit, &s->auth, err)) < 0 || (r = sv_ws_hub_new(s, &s->ws, err)) < 0 ||
            (r = sv_web_new(s->cfg.web_dir, &h->web, err)) < 0)
                goto fail;
        if ((r = listen_socket(s->cfg.listen_addr, s->cfg.listen_port, s->cfg.allow_remote, port_out, err)) < 0)
                goto fail;
        h->listen_fd = r;
        if (!(h->listen_watch = ns_loop_add(s->loop, h->listen_fd, EPOLLIN, on_accept, h, err))) {
                r = -err->code;
                goto fail;
        }
        /* libwebsockets 4.1 as Debian builds it has no external-poll support, so its service loop
         * owns the thread and our epoll fd joins it as one more descriptor. */
        if ((h->loop_fd = fcntl(ns_loop_fd(s->loop), F_DUPFD_CLOEXEC, 3)) < 0) {
                r = ns_err_sys(err, errno, "dup");
                goto fail;
        }
        lws_sock_file_fd_type u = { .filefd = h->loop_fd };
        if (!lws_adopt_descriptor_vhost(h->vh, LWS_ADOPT_RAW_FILE_DESC, u, NULL, NULL)) {
                close(h->loop_fd);
                r = ns_err(err, EIO, "libwebsockets: cannot adopt the event loop's fd");
                goto fail;
        }
        return 0;
fail:
        sv_http_stop(s);
        return r;
}

void sv_http_stop(sv_server *s) {
        sv_http *h = s->http;
        if (!h)
                return;
        ns_loop_remove(s->loop, h->listen_watch);
        if (h->listen_fd >= 0)
                close(h->listen_fd);
        if (h->ctx)
                lws_context_destroy(h->ctx); /* closes the adopted loop_fd */
        sv_web_free(h->web);
        free(h);
        s->http = NULL;
        sv_auth_free(s->auth);
        s->auth = NULL;
        sv_ws_hub_free(s->ws); /* after the context: its clients are closed and freed by then */
        s->ws = NULL;
        sv_api_cache_free(s);
}

static void on_tick(lws_sorted_usec_list_t *sul) {
        sv_http *h = lws_container_of(sul, sv_http, tick_sul);
        h->tick(h->srv);
        sv_ws_tick(h->srv);
        lws_sul_schedule(h->ctx, 0, &h->tick_sul, on_tick, 250 * LWS_US_PER_MS);
}

void sv_http_run(sv_server *s, void (*tick)(sv_server *s)) {
        sv_http *h = s->http;
        h->tick = tick;
        lws_sul_schedule(h->ctx, 0, &h->tick_sul, on_tick, 250 * LWS_US_PER_MS);
        while (!ns_loop_quitting(s->loop))
                if (lws_service(h->ctx, 0) < 0)
                        break;
        lws_sul_cancel(&h->tick_sul);
}
