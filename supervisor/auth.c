/* nightshift supervisor — tokens, login sessions, CSRF and rate limits (see auth.h). */
#include "auth.h"
#include "hooks.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/jsonv.h"
#include "common/loop.h"
#include "serve.h"

#define BUCKETS_MAX 256             /* tokens tracked at once; the least recently seen makes room */
#define TOUCH_EVERY_MS (60 * 1000)  /* last_used_at is recorded at most this often per token */

struct bucket {
        char token_id[SV_ID_LEN + 1];
        double level;        /* requests available */
        uint64_t refilled;   /* monotonic ms of the last refill */
        int64_t touched;     /* wall ms of the last last_used_at update */
};

struct sv_auth {
        double rate, burst; /* rate 0: no limit */
        struct bucket b[BUCKETS_MAX];
        size_t n;
};

int sv_token_new(char value[SV_TOKEN_LEN + 1], uint8_t hash[DB_TOKEN_HASH_LEN], ns_error *err) {
        if (sodium_init() < 0)
                return ns_err(err, EIO, "libsodium did not initialise");
        uint8_t raw[32];
        randombytes_buf(raw, sizeof raw);
        memcpy(value, SV_TOKEN_PREFIX, 4);
        sodium_bin2base64(value + 4, SV_TOKEN_LEN + 1 - 4, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(raw, sizeof raw);
        sv_secret_hash(value, SV_TOKEN_LEN, hash);
        return 0;
}

void sv_secret_hash(const char *value, size_t len, uint8_t hash[DB_TOKEN_HASH_LEN]) {
        /* A plain hash is enough: the values are 256 random bits, not passwords to stretch. */
        crypto_hash_sha256(hash, (const unsigned char *) value, len);
}

int sv_auth_new(double rate, sv_auth **out, ns_error *err) {
        if (sodium_init() < 0)
                return ns_err(err, EIO, "libsodium did not initialise");
        sv_auth *a = calloc(1, sizeof *a);
        if (!a)
                return ns_err(err, ENOMEM, "out of memory");
        a->rate = rate;
        a->burst = rate > 0 ? fmax(2 * rate, 10) : 0;
        *out = a;
        return 0;
}

void sv_auth_free(sv_auth *a) {
        free(a);
}

static bool well_formed(const char *v, size_t prefix_len, size_t len) {
        if (strlen(v) != len)
                return false;
        for (size_t i = prefix_len; i < len; i++) {
                char c = v[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
                        return false;
        }
        return true;
}

/* The bucket of `token_id`, made (full) when new; the least recently refilled one is reused when
 * the table is full (it loses nothing but its history). */
static struct bucket *bucket_of(sv_auth *a, const char *token_id, uint64_t now) {
        struct bucket *oldest = NULL;
        for (size_t i = 0; i < a->n; i++) {
                if (!strcmp(a->b[i].token_id, token_id))
                        return &a->b[i];
                if (!oldest || a->b[i].refilled < oldest->refilled)
                        oldest = &a->b[i];
        }
        struct bucket *b = a->n < BUCKETS_MAX ? &a->b[a->n++] : oldest;
        *b = (struct bucket){ .level = a->burst, .refilled = now };
        snprintf(b->token_id, sizeof b->token_id, "%s", token_id);
        return b;
}

static bool unsafe_method(const char *m) {
        return strcmp(m, "GET") && strcmp(m, "HEAD") && strcmp(m, "OPTIONS");
}

/* Origin ("scheme://host[:port]") names the host the request was sent to. */
static bool origin_matches(const sv_req *r) {
        const char *o = r->origin;
        const char *sep = strstr(o, "://");
        if (!sep || !r->host[0])
                return false;
        return !strcasecmp(sep + 3, r->host);
}

struct verdict {
        int status;
        const char *code, *msg;
};

static int deny(struct verdict *v, int status, const char *code, const char *msg) {
        *v = (struct verdict){ status, code, msg };
        return -1;
}

/* 0 and r->token_id set, or -1 and why in *v.  `websocket`: an upgrade to the event stream. */
static int decide(sv_server *s, sv_req *r, bool websocket, struct verdict *v) {
        r->token_id[0] = '\0';
        if (!websocket && ((!strcmp(r->path, "/api/v1/healthz") && !strcmp(r->method, "GET")) ||
                           (!strcmp(r->path, "/api/v1/login") && !strcmp(r->method, "POST"))))
                return 0;
        /* Why: the triggers' senders (GitHub, Slack) hold no token; hooks.c verifies each one's
         * HMAC signature with a vault secret before anything else, in place of a token. */
        if (!websocket && sv_hook_route(r->method, r->path))
                return 0;
        if (r->header_too_long)
                return deny(v, 431, "header_too_large", "a request header is too long");
        db_token tok = { 0 };
        ns_error e;
        int rc = -ENOENT;
        bool by_cookie = false;
        if (r->authorization[0]) {
                /* A malformed or unknown bearer token is refused even when a cookie came too. */
                const char *a = r->authorization;
                if (strncasecmp(a, "Bearer ", 7) != 0 || !well_formed(a + 7, 4, SV_TOKEN_LEN) ||
                    strncmp(a + 7, SV_TOKEN_PREFIX, 4) != 0)
                        return deny(v, 401, "unauthorized", "the Authorization header must be 'Bearer nst_…'");
                uint8_t h[DB_TOKEN_HASH_LEN];
                sv_secret_hash(a + 7, SV_TOKEN_LEN, h);
                rc = db_token_by_hash(s->db, h, &tok, &e);
        } else if (r->session_cookie[0] && well_formed(r->session_cookie, 0, SV_COOKIE_VALUE_LEN)) {
                uint8_t h[DB_TOKEN_HASH_LEN];
                sv_secret_hash(r->session_cookie, SV_COOKIE_VALUE_LEN, h);
                rc = db_websession_token(s->db, h, db_now_ms(), &tok, &e);
                by_cookie = true;
        }
        if (rc == -ENOENT)
                return deny(v, 401, "unauthorized", "a valid API token is required (nightshift token create NAME)");
        if (rc < 0)
                return deny(v, 500, "internal", "the token store failed");
        char token_id[SV_ID_LEN + 1];
        snprintf(token_id, sizeof token_id, "%s", tok.id);
        bool hook_only = !strcmp(tok.scope, "hook");
        db_token_clear(&tok);
        /* Why: a hook token is handed to a third party (a CI system, a chat bot) to start
         * sessions; it must not read sessions, secrets or events, nor log a browser in.  It is
         * good for exactly one route, as a bearer header. */
        if (hook_only && (websocket || by_cookie || strcmp(r->method, "POST") || strcmp(r->path, SV_HOOK_GENERIC_PATH)))
                return deny(v, 403, "forbidden", "a hook token may only POST " SV_HOOK_GENERIC_PATH);
        /* A cookie rides along with any request the browser makes, including ones another site
         * triggers: state changes need proof that our own page sent them. */
        if (by_cookie && websocket && !origin_matches(r))
                return deny(v, 403, "csrf", "cross-origin WebSocket refused");
        if (by_cookie && unsafe_method(r->method)) {
                if (!r->csrf_header)
                        return deny(v, 403, "csrf", "this request needs the X-Nightshift-CSRF: 1 header");
                if (r->origin[0] && !origin_matches(r))
                        return deny(v, 403, "csrf", "cross-origin request refused");
        }
        sv_auth *a = s->auth;
        uint64_t now = ns_now_ms();
        struct bucket *b = bucket_of(a, token_id, now);
        if (a->rate > 0) {
                b->level = fmin(a->burst, b->level + (double) (now - b->refilled) * a->rate / 1000.0);
                b->refilled = now;
                if (b->level < 1) {
                        r->retry_after_s = (int) ceil((1 - b->level) / a->rate);
                        if (r->retry_after_s < 1)
                                r->retry_after_s = 1;
                        return deny(v, 429, "rate_limited", "too many requests for this token; retry later");
                }
                b->level -= 1;
        }
        int64_t wall = db_now_ms();
        if (wall - b->touched >= TOUCH_EVERY_MS) {
                b->touched = wall;
                (void) db_token_touch(s->db, token_id, wall, NULL);
        }
        snprintf(r->token_id, sizeof r->token_id, "%s", token_id);
        return 0;
}

int sv_auth_request(sv_server *s, sv_req *r) {
        struct verdict v;
        if (decide(s, r, false, &v) == 0)
                return 0;
        sv_req_reply_error(r, v.status, v.code, "%s", v.msg);
        return -1;
}

int sv_auth_websocket(sv_server *s, sv_req *r) {
        struct verdict v;
        return decide(s, r, true, &v) == 0 ? 0 : v.status;
}

static void set_cookie(sv_req *r, const char *value, int64_t max_age_s) {
        /* Path=/: behind a reverse proxy under a prefix the browser still sends it to the API. */
        snprintf(r->set_cookie, sizeof r->set_cookie, SV_COOKIE_NAME "=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
                 value, (long long) max_age_s, r->forwarded_https ? "; Secure" : "");
}

void sv_auth_login(sv_server *s, sv_req *r) {
        cJSON *j = r->body ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
        static const char *const keys[] = { "token", NULL };
        const char *token = NULL;
        ns_error e;
        if (!cJSON_IsObject(j) || jv_only_keys(j, keys, &e) < 0 || jv_str(j, "token", true, 128, NULL, &token, &e) < 0) {
                cJSON_Delete(j);
                return sv_req_reply_error(r, 400, "invalid", "the body must be {\"token\": \"nst_…\"}");
        }
        uint8_t h[DB_TOKEN_HASH_LEN];
        bool ok = well_formed(token, 4, SV_TOKEN_LEN) && !strncmp(token, SV_TOKEN_PREFIX, 4);
        if (ok)
                sv_secret_hash(token, SV_TOKEN_LEN, h);
        cJSON_Delete(j);
        db_token tok = { 0 };
        int rc = ok ? db_token_by_hash(s->db, h, &tok, &e) : -ENOENT;
        if (rc == 0 && !strcmp(tok.scope, "hook")) {
                db_token_clear(&tok);
                return sv_req_reply_error(r, 403, "forbidden", "a hook token cannot log in");
        }
        if (rc == -ENOENT)
                return sv_req_reply_error(r, 401, "unauthorized", "unknown or revoked token");
        if (rc < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        uint8_t raw[32];
        char cookie[SV_COOKIE_VALUE_LEN + 1];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2base64(cookie, sizeof cookie, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sv_secret_hash(cookie, SV_COOKIE_VALUE_LEN, h);
        rc = db_websession_insert(s->db, h, tok.id, db_now_ms() + SV_LOGIN_TTL_MS, &e);
        cJSON *o = NULL;
        if (rc == 0) {
                o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "token", tok.name);
                set_cookie(r, cookie, SV_LOGIN_TTL_MS / 1000);
        }
        sodium_memzero(cookie, sizeof cookie);
        db_token_clear(&tok);
        if (rc < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        sv_req_reply_json(r, 200, o);
}

void sv_auth_logout(sv_server *s, sv_req *r) {
        if (r->session_cookie[0] && well_formed(r->session_cookie, 0, SV_COOKIE_VALUE_LEN)) {
                uint8_t h[DB_TOKEN_HASH_LEN];
                sv_secret_hash(r->session_cookie, SV_COOKIE_VALUE_LEN, h);
                (void) db_websession_delete(s->db, h, NULL);
        }
        set_cookie(r, "", 0);
        sv_req_reply_json(r, 204, NULL);
}
