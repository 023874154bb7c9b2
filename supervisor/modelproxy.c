/* nightshift supervisor — the model-API proxy (see modelproxy.h). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "db.h"
#include "ids.h"
#include "modelproxy.h"
#include "sbxops.h"
#include "sockdir.h"

#define HEAD_MAX (32 * 1024)
#define BODY_MAX (32 * 1024 * 1024)
#define CONN_MAX 64
#define USAGE_LINE_MAX (1024 * 1024)

struct sv_modelproxy {
        sv_config *cfg;
        sv_vault *vault;
        pthread_mutex_t db_mu; /* one connection of our own, shared by the connection threads */
        db *db;
        int listen_fd;
        pthread_t acceptor;
        bool acceptor_started;
        unsigned char mac_key[crypto_auth_hmacsha256_KEYBYTES];
        char *path;             /* the listener's Unix socket */
        atomic_bool quitting;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int conns[CONN_MAX]; /* client fds in flight (-1 free) */
        int n_conns;
};

void sv_modelproxy_token(const sv_modelproxy *p, const char *sid, char out[SV_PROXY_TOKEN_MAX]) {
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256(mac, (const unsigned char *) sid, strlen(sid), p->mac_key);
        char hex[2 * 16 + 1];
        sodium_bin2hex(hex, sizeof hex, mac, 16);
        snprintf(out, SV_PROXY_TOKEN_MAX, "nsp-%s-%s", sid, hex);
}

/* The session a placeholder names, when its mac is right (constant-time compare). */
static bool token_session(const sv_modelproxy *p, const char *tok, char sid[SV_ID_LEN + 1]) {
        if (strncmp(tok, "nsp-", 4) || strlen(tok) != 4 + SV_ID_LEN + 1 + 32)
                return false;
        memcpy(sid, tok + 4, SV_ID_LEN);
        sid[SV_ID_LEN] = '\0';
        if (!sv_id_valid(sid, SV_ID_PREFIX_SESSION))
                return false;
        char want[SV_PROXY_TOKEN_MAX];
        sv_modelproxy_token(p, sid, want);
        return sodium_memcmp(want, tok, strlen(want)) == 0;
}

/* ---- one connection -------------------------------------------------------------------------- */

typedef struct conn {
        sv_modelproxy *p;
        int fd;
        char sid[SV_ID_LEN + 1];
        const char *provider; /* "anthropic" | "openai" */
        /* the upstream's answer */
        long status;
        char reason[64];
        struct curl_slist *resp_headers;
        bool head_sent, client_gone;
        /* usage, from the JSON or SSE lines of the answer */
        char *line;
        size_t line_len;
        bool line_overflow;
        int64_t in_tokens, out_tokens;
        char model[128];
} conn;

static bool send_all(int fd, const char *buf, size_t len) {
        while (len) {
                ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return false;
                buf += n;
                len -= (size_t) n;
        }
        return true;
}

static void reply_error(int fd, int status, const char *msg) {
        char body[512], out[1024];
        int bl = snprintf(body, sizeof body, "{\"type\":\"error\",\"error\":{\"type\":\"nightshift_proxy\",\"message\":\"%s\"}}",
                          msg);
        int n = snprintf(out, sizeof out,
                         "HTTP/1.1 %d Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                         status, bl, body);
        send_all(fd, out, (size_t) n);
}

/* Take the largest token counts in a usage object (Anthropic: input_tokens/output_tokens, the
 * latter cumulative in message_delta; OpenAI: the same names or prompt_/completion_tokens). */
static void take_usage(conn *c, const cJSON *u) {
        static const char *const in_names[] = { "input_tokens", "prompt_tokens" };
        static const char *const out_names[] = { "output_tokens", "completion_tokens" };
        for (int i = 0; i < 2; i++) {
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(u, in_names[i]);
                const cJSON *b = cJSON_GetObjectItemCaseSensitive(u, out_names[i]);
                if (cJSON_IsNumber(a) && a->valuedouble > (double) c->in_tokens)
                        c->in_tokens = (int64_t) a->valuedouble;
                if (cJSON_IsNumber(b) && b->valuedouble > (double) c->out_tokens)
                        c->out_tokens = (int64_t) b->valuedouble;
        }
}

static void scan_json(conn *c, const char *text, size_t len) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        if (!j)
                return;
        const cJSON *holders[] = { j, cJSON_GetObjectItemCaseSensitive(j, "message"),
                                   cJSON_GetObjectItemCaseSensitive(j, "response") };
        for (size_t i = 0; i < 3; i++) {
                if (!holders[i])
                        continue;
                const cJSON *u = cJSON_GetObjectItemCaseSensitive(holders[i], "usage");
                if (cJSON_IsObject(u))
                        take_usage(c, u);
                const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(holders[i], "model"));
                if (m && !c->model[0])
                        snprintf(c->model, sizeof c->model, "%s", m);
        }
        cJSON_Delete(j);
}

/* Feed answer bytes to the usage scanner: line by line (SSE "data: {...}"), the last line at
 * the end being a whole JSON answer. */
static void scan_bytes(conn *c, const char *b, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (b[i] == '\n') {
                        if (!c->line_overflow && c->line_len > 6 && !strncmp(c->line, "data: ", 6))
                                scan_json(c, c->line + 6, c->line_len - 6);
                        c->line_len = 0;
                        c->line_overflow = false;
                        continue;
                }
                if (c->line_overflow)
                        continue;
                if (c->line_len + 1 >= USAGE_LINE_MAX) {
                        c->line_overflow = true;
                        continue;
                }
                if (!c->line && !(c->line = malloc(USAGE_LINE_MAX))) {
                        c->line_overflow = true;
                        continue;
                }
                c->line[c->line_len++] = b[i];
        }
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
        conn *c = ud;
        size_t len = size * n;
        if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
                /* A new header block (after 100 Continue): start over. */
                curl_slist_free_all(c->resp_headers);
                c->resp_headers = NULL;
                const char *sp = memchr(buf, ' ', len);
                const char *sp2 = sp ? memchr(sp + 1, ' ', len - (size_t) (sp + 1 - buf)) : NULL;
                c->status = sp ? strtol(sp + 1, NULL, 10) : 502;
                size_t rl = sp2 ? len - (size_t) (sp2 + 1 - buf) : 0;
                while (rl && (sp2[rl] == '\r' || sp2[rl] == '\n' || sp2[rl] == '\0'))
                        rl--;
                snprintf(c->reason, sizeof c->reason, "%.*s", sp2 ? (int) rl : 0, sp2 ? sp2 + 1 : "");
                return len;
        }
        size_t l = len;
        while (l && (buf[l - 1] == '\r' || buf[l - 1] == '\n'))
                l--;
        if (!l)
                return len;
        static const char *const hop[] = { "transfer-encoding:", "connection:", "keep-alive:", "proxy-", "upgrade:" };
        for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
                if (l >= strlen(hop[i]) && !strncasecmp(buf, hop[i], strlen(hop[i])))
                        return len;
        char *h = strndup(buf, l);
        struct curl_slist *nl = h ? curl_slist_append(c->resp_headers, h) : NULL;
        free(h);
        if (nl)
                c->resp_headers = nl;
        return len;
}

static bool send_head(conn *c) {
        if (c->head_sent)
                return true;
        c->head_sent = true;
        char line[128];
        int n = snprintf(line, sizeof line, "HTTP/1.1 %ld %s\r\n", c->status ? c->status : 502, c->reason[0] ? c->reason : "-");
        if (!send_all(c->fd, line, (size_t) n))
                return false;
        for (struct curl_slist *h = c->resp_headers; h; h = h->next)
                if (!send_all(c->fd, h->data, strlen(h->data)) || !send_all(c->fd, "\r\n", 2))
                        return false;
        return send_all(c->fd, "Connection: close\r\n\r\n", 21);
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud) {
        conn *c = ud;
        size_t len = size * n;
        scan_bytes(c, buf, len);
        if (!send_head(c) || !send_all(c->fd, buf, len)) {
                c->client_gone = true;
                return 0; /* the agent went away: abort the upstream transfer */
        }
        return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t x, curl_off_t y) {
        (void) a, (void) b, (void) x, (void) y;
        conn *c = ud;
        return atomic_load(&c->p->quitting) ? 1 : 0;
}

/* Read the request head (to the blank line) into buf; returns its length, the bytes of the body
 * already read after it in *extra. */
static ssize_t read_head(int fd, char *buf, size_t cap, size_t *total) {
        size_t n = 0;
        while (n < cap - 1) {
                ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -1;
                n += (size_t) k;
                buf[n] = '\0';
                char *end = strstr(buf, "\r\n\r\n");
                if (end) {
                        *total = n;
                        return end + 4 - buf;
                }
        }
        return -1;
}

static void record_usage(conn *c) {
        if (!c->in_tokens && !c->out_tokens)
                return;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "source", "model-proxy");
        cJSON_AddStringToObject(o, "provider", c->provider);
        if (c->model[0])
                cJSON_AddStringToObject(o, "model", c->model);
        cJSON_AddNumberToObject(o, "input_tokens", (double) c->in_tokens);
        cJSON_AddNumberToObject(o, "output_tokens", (double) c->out_tokens);
        cJSON_AddNumberToObject(o, "status", (double) c->status);
        char *json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        ns_error e;
        pthread_mutex_lock(&c->p->db_mu);
        if (json && db_event_append(c->p->db, c->sid, "usage", json, NULL, NULL, &e) < 0)
                log_warn("model proxy: session %s: usage event: %s", c->sid, e.msg);
        pthread_mutex_unlock(&c->p->db_mu);
        free(json);
}

static void serve_conn(conn *c) {
        sv_modelproxy *p = c->p;
        _cleanup_free_ char *head = malloc(HEAD_MAX);
        size_t total = 0;
        ssize_t hl = head ? read_head(c->fd, head, HEAD_MAX, &total) : -1;
        if (hl < 0)
                return reply_error(c->fd, 400, "a request head of at most 32 KiB was expected");
        head[hl - 2] = '\0'; /* the head's lines, without the blank one */
        char *save = NULL, *reqline = strtok_r(head, "\r\n", &save);
        char method[8] = "", target[2048] = "";
        if (!reqline || sscanf(reqline, "%7s %2047s HTTP/1.", method, target) != 2 ||
            (strcmp(method, "POST") && strcmp(method, "GET")))
                return reply_error(c->fd, 400, "only GET and POST requests");
        const char *rest = NULL;
        const char *upstream = NULL, *key_name = NULL;
        if (!strncmp(target, "/anthropic/", 11)) {
                c->provider = "anthropic", rest = target + 10;
                upstream = p->cfg->model_upstream_anthropic, key_name = p->cfg->model_key_anthropic;
        } else if (!strncmp(target, "/openai/", 8)) {
                c->provider = "openai", rest = target + 7;
                upstream = p->cfg->model_upstream_openai, key_name = p->cfg->model_key_openai;
        } else {
                return reply_error(c->fd, 404, "routes: /anthropic/... and /openai/...");
        }
        struct curl_slist *hdrs = NULL;
        long long clen = 0;
        char tok[SV_PROXY_TOKEN_MAX] = "";
        bool bad = false;
        for (char *h = strtok_r(NULL, "\r\n", &save); h; h = strtok_r(NULL, "\r\n", &save)) {
                char *colon = strchr(h, ':');
                if (!colon) {
                        bad = true;
                        break;
                }
                const char *v = colon + 1 + strspn(colon + 1, " \t");
                size_t nl = (size_t) (colon - h);
#define IS(name) (nl == strlen(name) && !strncasecmp(h, name, nl))
                if (IS("x-api-key")) {
                        snprintf(tok, sizeof tok, "%s", v);
                } else if (IS("authorization")) {
                        if (!strncasecmp(v, "Bearer ", 7))
                                snprintf(tok, sizeof tok, "%s", v + 7);
                } else if (IS("content-length")) {
                        char *end;
                        clen = strtoll(v, &end, 10);
                        bad |= *end || clen < 0 || clen > BODY_MAX;
                } else if (IS("transfer-encoding")) {
                        bad = true; /* chunked request bodies are not taken (411 below) */
                } else if (!IS("host") && !IS("connection") && !IS("keep-alive") && !IS("expect") &&
                           !IS("proxy-authorization") && !IS("upgrade") && !IS("te")) {
                        struct curl_slist *n2 = curl_slist_append(hdrs, h);
                        if (n2)
                                hdrs = n2;
                }
#undef IS
        }
        if (bad) {
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 411, "a well-formed head with a Content-Length (≤ 32 MiB) is required");
        }
        /* Who is asking: the placeholder is the session's capability. */
        if (!token_session(p, tok, c->sid)) {
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 401, "not a nightshift session's key");
        }
        db_session row = { 0 };
        ns_error e;
        sv_secret key = { 0 };
        pthread_mutex_lock(&p->db_mu);
        int r = db_session_get(p->db, c->sid, &row, &e);
        if (r == 0)
                r = sv_vault_get(p->vault, p->db, row.repo_id, key_name, &key, &e);
        pthread_mutex_unlock(&p->db_mu);
        db_session_clear(&row);
        if (r < 0) {
                curl_slist_free_all(hdrs);
                sv_secret_clear(&key);
                return reply_error(c->fd, 502, r == -ENOENT ? "the vault holds no key for this provider" : "vault error");
        }
        char *auth = NULL;
        if (!strcmp(c->provider, "anthropic") ? asprintf(&auth, "x-api-key: %s", key.value) < 0
                                              : asprintf(&auth, "Authorization: Bearer %s", key.value) < 0)
                auth = NULL;
        sv_secret_clear(&key);
        struct curl_slist *n2 = auth ? curl_slist_append(hdrs, auth) : NULL;
        if (auth) {
                sodium_memzero(auth, strlen(auth));
                free(auth);
        }
        if (!n2) {
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 500, "out of memory");
        }
        hdrs = n2;
        hdrs = curl_slist_append(hdrs, "Expect:");
        /* The body: what came with the head, then the rest. */
        size_t have = total - (size_t) hl;
        _cleanup_free_ char *body = malloc((size_t) clen + 1);
        if (!body || have > (size_t) clen) {
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 400, "the body does not match its Content-Length");
        }
        memcpy(body, head + hl, have);
        while (have < (size_t) clen) {
                ssize_t k = recv(c->fd, body + have, (size_t) clen - have, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                have += (size_t) k;
        }
        if (have != (size_t) clen) {
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 400, "the body ended early");
        }
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s%s", upstream, rest) < 0) {
                url = NULL;
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 500, "out of memory");
        }
        CURL *h = curl_easy_init();
        if (!h) {
                curl_slist_free_all(hdrs);
                return reply_error(c->fd, 500, "libcurl");
        }
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        if (!strcmp(method, "POST")) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) clen);
        }
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 600L);
        CURLcode cc = curl_easy_perform(h);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdrs);
        if (cc != CURLE_OK && !c->head_sent && !c->client_gone) {
                log_warn("model proxy: session %s: upstream %s: %s", c->sid, c->provider, curl_easy_strerror(cc));
                reply_error(c->fd, 502, "the upstream model API could not be reached");
        } else if (cc == CURLE_OK) {
                send_head(c); /* an answer without a body */
        }
        if (c->line_len && !c->line_overflow)
                scan_json(c, c->line, c->line_len);
        record_usage(c);
}

static void *conn_thread(void *arg) {
        conn *c = arg;
        serve_conn(c);
        sv_modelproxy *p = c->p;
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < CONN_MAX; i++)
                if (p->conns[i] == c->fd)
                        p->conns[i] = -1;
        p->n_conns--;
        close(c->fd);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        curl_slist_free_all(c->resp_headers);
        free(c->line);
        free(c);
        return NULL;
}

static void *accept_thread(void *arg) {
        sv_modelproxy *p = arg;
        while (!atomic_load(&p->quitting)) {
                int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        break; /* shut down */
                }
                struct timeval tv = { .tv_sec = 60 };
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                conn *c = calloc(1, sizeof *c);
                pthread_mutex_lock(&p->mu);
                int slot = -1;
                for (int i = 0; c && i < CONN_MAX && slot < 0; i++)
                        if (p->conns[i] < 0)
                                slot = i;
                if (slot < 0 || atomic_load(&p->quitting)) {
                        pthread_mutex_unlock(&p->mu);
                        reply_error(fd, 503, "too many requests in flight");
                        close(fd);
                        free(c);
                        continue;
                }
                p->conns[slot] = fd;
                p->n_conns++;
                pthread_mutex_unlock(&p->mu);
                c->p = p;
                c->fd = fd;
                pthread_t t;
                pthread_attr_t at;
                pthread_attr_init(&at);
                pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
                if (pthread_create(&t, &at, conn_thread, c) != 0) {
                        pthread_mutex_lock(&p->mu);
                        p->conns[slot] = -1;
                        p->n_conns--;
                        pthread_mutex_unlock(&p->mu);
                        close(fd);
                        free(c);
                }
                pthread_attr_destroy(&at);
        }
        return NULL;
}

int sv_modelproxy_start(sv_config *cfg, const char *db_path, sv_vault *vault, sv_modelproxy **out, ns_error *err) {
        *out = NULL;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return ns_err(err, EIO, "curl_global_init");
        sv_modelproxy *p = calloc(1, sizeof *p);
        if (!p)
                return ns_err(err, ENOMEM, "out of memory");
        p->cfg = cfg;
        p->vault = vault;
        p->listen_fd = -1;
        for (int i = 0; i < CONN_MAX; i++)
                p->conns[i] = -1;
        pthread_mutex_init(&p->db_mu, NULL);
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        int r = sv_vault_derive(vault, "nsmodelp", 1, p->mac_key, sizeof p->mac_key, err);
        if (r < 0)
                goto fail;
        if ((r = db_open(db_path, &p->db, err)) < 0)
                goto fail;
        /* Sandboxes reach it through their connector, nothing else should: a socket in the
         * supervisor's private directory (mode 0700), whose own mode then does not matter. */
        if (asprintf(&p->path, "%s/sockets/model.sock", cfg->data_dir) < 0) {
                p->path = NULL;
                r = ns_err(err, ENOMEM, "out of memory");
                goto fail;
        }
        if ((r = p->listen_fd = sv_sock_listen(p->path, SOCK_CLOEXEC, 64, err)) < 0) {
                ns_err_wrap(err, "model proxy");
                goto fail;
        }
        if (pthread_create(&p->acceptor, NULL, accept_thread, p) != 0) {
                r = ns_err(err, EAGAIN, "model proxy: thread");
                goto fail;
        }
        p->acceptor_started = true;
        cfg->model_proxy_port = SBX_MODEL_PORT;
        cfg->model_proxy_path = p->path;
        *out = p;
        return 0;
fail:
        sv_modelproxy_stop(p);
        return r;
}

void sv_modelproxy_stop(sv_modelproxy *p) {
        if (!p)
                return;
        atomic_store(&p->quitting, true);
        if (p->listen_fd >= 0)
                shutdown(p->listen_fd, SHUT_RDWR);
        if (p->acceptor_started)
                pthread_join(p->acceptor, NULL);
        /* End the connections in flight (their transfers abort on the progress callback or on
         * the failed write) and wait for their threads: they use the vault and the database. */
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < CONN_MAX; i++)
                if (p->conns[i] >= 0)
                        shutdown(p->conns[i], SHUT_RDWR);
        while (p->n_conns > 0)
                pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        if (p->listen_fd >= 0)
                close(p->listen_fd);
        db_close(p->db);
        p->cfg->model_proxy_port = 0;
        p->cfg->model_proxy_path = NULL;
        if (p->path && p->listen_fd >= 0)
                (void) unlink(p->path);
        free(p->path);
        sodium_memzero(p->mac_key, sizeof p->mac_key);
        pthread_mutex_destroy(&p->db_mu);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
}
