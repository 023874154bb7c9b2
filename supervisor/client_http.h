/* nightshift — the HTTP client the `nightshift` client commands share (libcurl).
 *
 * Where the server is: `--server URL`, else $NIGHTSHIFT_URL, else the `server` key of the client
 * config file, else http://127.0.0.1:8787.  Which token to send: `--token-file FILE`, else
 * $NIGHTSHIFT_TOKEN, else the `token` key of the config file.  The config file is
 * $NIGHTSHIFT_CONFIG or ~/.config/nightshift/client.conf, `key value` lines and `#` comments
 * (common/conffile.h); it is read only when a flag or the environment leaves something open, and
 * refused when it holds a token but is readable by group or others (so is a token file).
 *
 * A command opens one client (one libcurl easy handle, reused for every request so that the
 * connection is kept) and makes its requests one at a time.  Every request sends
 * `Authorization: Bearer TOKEN` when a token is known; the API's errors,
 * {"error":{"code","message"}}, come back as ns_error "MESSAGE (HTTP STATUS)". */
#pragma once

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define CLIENT_DEFAULT_SERVER "http://127.0.0.1:8787"
#define CLIENT_RESPONSE_MAX (64u * 1024 * 1024) /* a larger response is refused */
#define CLIENT_TOKEN_MAX 256

/* Exit statuses of the client commands. */
#define CLIENT_EXIT_FAILED 1      /* the server refused, or something else went wrong */
#define CLIENT_EXIT_USAGE 2       /* bad flags or arguments */
#define CLIENT_EXIT_UNREACHABLE 3 /* no answer from the server */
#define CLIENT_EXIT_INTERRUPTED 130

/* The errno of the failures that map to CLIENT_EXIT_UNREACHABLE and CLIENT_EXIT_INTERRUPTED. */
#define CLIENT_E_UNREACHABLE EHOSTUNREACH
#define CLIENT_E_INTERRUPTED EINTR

typedef struct client_http {
        CURL *curl;
        char *server;   /* base URL, no trailing '/' */
        char *token;    /* NULL when none is known */
        char curl_error[CURL_ERROR_SIZE];
} client_http;

typedef struct client_reply {
        long status; /* the HTTP status; 0 when no answer came */
        char *body;  /* NUL-terminated (NULL when empty) */
        size_t len;
        cJSON *json; /* the body parsed, or NULL when it is empty or not JSON */
} client_reply;

/* Resolve the server and the token as described above (`server_flag` and `token_file` may be
 * NULL: not given) and set up *c with a fresh easy handle.  Returns 0, or -errno with *err saying
 * which setting is wrong and why.  *c is cleared either way; release it with client_http_close. */
int client_http_open(client_http *c, const char *server_flag, const char *token_file, ns_error *err);

/* Release what *c holds (safe on a zeroed or already closed client). */
void client_http_close(client_http *c);

/* One request: `method` on the server's `path` (beginning with '/', query included, already
 * escaped: see client_http_escape), with `body` as its JSON body when not NULL.  *reply receives
 * the answer, whatever its status (it must be zeroed or hold an earlier answer, which is freed
 * first; free it with client_reply_clear).  Returns 0 for
 * a 2xx answer; otherwise -errno and *err:
 *   -CLIENT_E_UNREACHABLE   no answer (refused, unresolvable, timed out); the message names the URL
 *   -CLIENT_E_INTERRUPTED   SIGINT is pending (a caller that blocks SIGINT gets control back)
 *   -EREMOTEIO              an error status: the API's message, then " (HTTP STATUS)"
 *   -EFBIG                  the response is larger than CLIENT_RESPONSE_MAX
 * A 429 answer is retried (up to 3 times, after its Retry-After of at most 5 seconds). */
int client_http_request(client_http *c, const char *method, const char *path, const cJSON *body,
                        client_reply *reply, ns_error *err);

/* `s` percent-escaped for a path segment or a query value, malloc'd; NULL when out of memory. */
char *client_http_escape(client_http *c, const char *s);

/* Free what *r holds and zero it. */
void client_reply_clear(client_reply *r);

/* Sleep `ms` milliseconds.  A caller that blocks SIGINT is woken by it: the signal is taken and
 * -CLIENT_E_INTERRUPTED returned.  Returns 0 otherwise. */
int client_wait_ms(unsigned ms, ns_error *err);

/* The exit status for the result `rc` of a command: 0 when rc >= 0, else by the errno (above). */
int client_exit_status(int rc);

static inline void client_json_deletep(cJSON **j) {
        cJSON_Delete(*j);
}
#define _cleanup_cjson_ __attribute__((cleanup(client_json_deletep)))
