/* nightshift supervisor — who may use the API.
 *
 * Every route but GET /api/v1/healthz, POST /api/v1/login and the hooks (hooks.h: signed instead) needs a bearer token
 * (`Authorization: Bearer nst_…`), on loopback too, or the browser's login cookie.  Tokens are 32
 * random bytes; only their SHA-256 is stored (db.h), so the value is shown once, at creation.  A
 * browser exchanges a token for a login session (POST /api/v1/login): an HttpOnly, SameSite=Strict
 * cookie whose hash is stored, tied to the token.  A request authenticated by that cookie and
 * changing state must also carry `X-Nightshift-CSRF: 1` (a header no cross-site form can send and
 * no cross-origin script may without a CORS grant, which this server never gives) and, when it
 * has an Origin, one naming this server.  Requests per token are rate-limited (token bucket).
 * A token of scope "hook" (nightshift token create NAME --scope hook) is good for one thing only:
 * POST /api/v1/hooks/generic with a bearer header (403 elsewhere, no login, no event stream). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "db.h"
#include "http.h"

#define SV_TOKEN_PREFIX "nst_"
#define SV_TOKEN_LEN (4 + 43) /* the prefix and 32 bytes in unpadded base64url */
#define SV_COOKIE_NAME "nightshift_session"
#define SV_COOKIE_VALUE_LEN 43
#define SV_LOGIN_TTL_MS (INT64_C(7) * 24 * 3600 * 1000)

typedef struct sv_server sv_server;
typedef struct sv_auth sv_auth;

/* A fresh token value (NUL-terminated) and its hash, for db_token_insert.  Returns 0 or -errno. */
int sv_token_new(char value[SV_TOKEN_LEN + 1], uint8_t hash[DB_TOKEN_HASH_LEN], ns_error *err);

/* The stored form of a token or cookie value. */
void sv_secret_hash(const char *value, size_t len, uint8_t hash[DB_TOKEN_HASH_LEN]);

/* The request limiter: `rate` requests per second per token (0 = none), bursts of twice that. */
int sv_auth_new(double rate, sv_auth **out, ns_error *err);
void sv_auth_free(sv_auth *a);

/* Decide on a request whose headers are in: 0 when it may go on (r->token_id names the token;
 * empty for the routes that need none), or -1 when it has been answered (401, 403 or 429). */
int sv_auth_request(sv_server *s, sv_req *r);

/* The same decision for a WebSocket upgrade (no reply written): 0 when it may proceed, else the
 * HTTP status to refuse it with.  A cookie-authenticated upgrade must come from our own origin. */
int sv_auth_websocket(sv_server *s, sv_req *r);

/* POST /api/v1/login {"token"} and POST /api/v1/logout: open or end the browser's login session
 * (the Set-Cookie goes with the reply). */
void sv_auth_login(sv_server *s, sv_req *r);
void sv_auth_logout(sv_server *s, sv_req *r);
