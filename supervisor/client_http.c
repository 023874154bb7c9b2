/* nightshift — the HTTP client of the client commands (see client_http.h). */
#include "client_http.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/conffile.h"

#define SERVER_URL_MAX 2048
#define RETRIES_429 3
#define RETRY_AFTER_MAX_S 5

/* ---- settings ------------------------------------------------------------------------------ */

/* What the config file says; strings are NULL when it does not say. */
typedef struct client_conf {
        char *server;
        char *token;
} client_conf;

static void secret_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static void client_conf_clear(client_conf *conf) {
        free(conf->server);
        secret_free(conf->token);
        *conf = (client_conf){ 0 };
}

static int conf_apply(void *ctx, const char *key, const char *val, ns_error *err) {
        client_conf *conf = ctx;
        char **slot = !strcmp(key, "server") ? &conf->server : !strcmp(key, "token") ? &conf->token : NULL;
        if (!slot)
                return ns_err(err, EINVAL, "unknown key '%.64s' (the keys are server and token)", key);
        char *v = strdup(val);
        if (!v)
                return ns_err(err, ENOMEM, "out of memory");
        if (slot == &conf->token)
                secret_free(*slot);
        else
                free(*slot);
        *slot = v;
        return 0;
}

/* A file holding a secret must not be readable by anyone but its owner. */
static int check_private(const char *path, const struct stat *st, const char *what, ns_error *err) {
        if (S_ISREG(st->st_mode) && (st->st_mode & (S_IRGRP | S_IROTH)))
                return ns_err(err, EACCES, "%s holds %s but is readable by group or others (mode %04o): chmod 600 it",
                              path, what, (unsigned) (st->st_mode & 07777));
        return 0;
}

/* The config file's path in *out (NULL: no home to look in); *named when $NIGHTSHIFT_CONFIG
 * names it, so that it must exist. */
static int conf_path(char **out, bool *named, ns_error *err) {
        const char *env = getenv("NIGHTSHIFT_CONFIG");
        *named = env && *env;
        if (*named)
                return (*out = strdup(env)) ? 0 : ns_err(err, ENOMEM, "out of memory");
        const char *home = getenv("HOME");
        if (!home || !*home) {
                struct passwd *pw = getpwuid(getuid());
                home = pw ? pw->pw_dir : NULL;
        }
        *out = NULL;
        if (home && asprintf(out, "%s/.config/nightshift/client.conf", home) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

/* Read the config file into *conf.  A default path that does not exist (or lies in a directory we
 * may not search, as another user's home) is no config file. */
static int conf_load(client_conf *conf, ns_error *err) {
        _cleanup_free_ char *path = NULL;
        bool named;
        int r = conf_path(&path, &named, err);
        if (r < 0 || !path)
                return r;
        struct stat st;
        if (stat(path, &st) < 0) {
                if (!named && (errno == ENOENT || errno == ENOTDIR || errno == EACCES))
                        return 0;
                return ns_err_sys(err, errno, "config file %s", path);
        }
        if ((r = ns_conffile_load(path, conf_apply, conf, err)) < 0)
                return r;
        return conf->token ? check_private(path, &st, "a token", err) : 0;
}

/* The first line of a token file, which must be private to its owner. */
static int read_token_file(const char *path, char **out, ns_error *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return ns_err_sys(err, errno, "--token-file %s", path);
        int r = check_private(path, &st, "a token", err);
        if (r < 0)
                return r;
        char buf[CLIENT_TOKEN_MAX + 2];
        size_t len = 0;
        while (len < sizeof buf - 1) {
                ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return ns_err_sys(err, errno, "read %s", path);
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        *out = strdup(buf);
        explicit_bzero(buf, sizeof buf);
        return *out ? 0 : ns_err(err, ENOMEM, "out of memory");
}

/* A token goes into a header: visible ASCII only, so that no value can add a header line. */
static int check_token(const char *token, const char *source, ns_error *err) {
        size_t n = strlen(token);
        if (n == 0 || n > CLIENT_TOKEN_MAX)
                return ns_err(err, EINVAL, "the token from %s is empty or longer than %d bytes", source, CLIENT_TOKEN_MAX);
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) token[i] <= ' ' || (unsigned char) token[i] >= 0x7f)
                        return ns_err(err, EINVAL, "the token from %s holds a blank or a control character", source);
        return 0;
}

static int set_server(client_http *c, const char *url, const char *source, ns_error *err) {
        size_t n = strlen(url);
        if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
                return ns_err(err, EINVAL, "the server URL from %s must begin with http:// or https://, not '%.80s'",
                              source, url);
        if (n > SERVER_URL_MAX)
                return ns_err(err, EINVAL, "the server URL from %s is longer than %d bytes", source, SERVER_URL_MAX);
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) url[i] <= ' ' || (unsigned char) url[i] == 0x7f)
                        return ns_err(err, EINVAL, "the server URL from %s holds a blank or a control character", source);
        while (n > 0 && url[n - 1] == '/')
                n--;
        return (c->server = strndup(url, n)) ? 0 : ns_err(err, ENOMEM, "out of memory");
}

static int resolve_settings(client_http *c, const char *server_flag, const char *token_file, ns_error *err) {
        const char *server_env = getenv("NIGHTSHIFT_URL"), *token_env = getenv("NIGHTSHIFT_TOKEN");
        const char *server = server_flag ? server_flag : server_env && *server_env ? server_env : NULL;
        const char *server_src = server_flag ? "--server" : "$NIGHTSHIFT_URL";
        const char *token_src = token_file ? "--token-file" : "$NIGHTSHIFT_TOKEN";
        int r = 0;
        if (token_file)
                r = read_token_file(token_file, &c->token, err);
        else if (token_env && *token_env && !(c->token = strdup(token_env)))
                r = ns_err(err, ENOMEM, "out of memory");
        if (r < 0)
                return r;
        _cleanup_(client_conf_clear) client_conf conf = { 0 };
        if ((!server || !c->token) && (r = conf_load(&conf, err)) < 0)
                return r;
        if (!server) {
                server = conf.server ? conf.server : CLIENT_DEFAULT_SERVER;
                server_src = conf.server ? "the config file" : "the default";
        }
        if (!c->token && conf.token) {
                c->token = TAKE_PTR(conf.token);
                token_src = "the config file";
        }
        if ((r = set_server(c, server, server_src, err)) < 0)
                return r;
        return c->token ? check_token(c->token, token_src, err) : 0;
}

int client_http_open(client_http *c, const char *server_flag, const char *token_file, ns_error *err) {
        *c = (client_http){ 0 };
        int r = resolve_settings(c, server_flag, token_file, err);
        if (r < 0)
                return r;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return ns_err(err, EIO, "libcurl failed to initialise");
        if (!(c->curl = curl_easy_init())) {
                curl_global_cleanup();
                return ns_err(err, ENOMEM, "libcurl failed to make a handle");
        }
        return 0;
}

void client_http_close(client_http *c) {
        if (c->curl) {
                curl_easy_cleanup(c->curl);
                curl_global_cleanup();
        }
        free(c->server);
        secret_free(c->token);
        *c = (client_http){ 0 };
}

/* ---- requests ------------------------------------------------------------------------------ */

typedef struct body_sink {
        client_reply *reply;
        size_t cap;
        bool too_large;
} body_sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
        body_sink *s = ud;
        client_reply *r = s->reply;
        size_t n = size * nmemb;
        if (n > CLIENT_RESPONSE_MAX - r->len) {
                s->too_large = true;
                return 0;
        }
        if (r->len + n + 1 > s->cap) {
                size_t cap = s->cap ? s->cap : 16384;
                while (cap < r->len + n + 1)
                        cap *= 2;
                char *p = realloc(r->body, cap);
                if (!p)
                        return 0;
                r->body = p;
                s->cap = cap;
        }
        memcpy(r->body + r->len, data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return n;
}

/* A transfer stops when SIGINT is pending: only a caller that blocks it gets here with one. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        sigset_t pending;
        return sigpending(&pending) == 0 && sigismember(&pending, SIGINT) == 1;
}

static void curl_slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

static bool add_header(struct curl_slist **list, const char *line) {
        struct curl_slist *l = curl_slist_append(*list, line);
        if (l)
                *list = l;
        return l != NULL;
}

static int perform(client_http *c, const char *method, const char *url, const char *json, client_reply *reply,
                   ns_error *err) {
        client_reply_clear(reply);
        CURL *h = c->curl;
        body_sink sink = { .reply = reply };
        /* "Expect:" (empty) turns off 100-continue: bodies go with their request. */
        _cleanup_(curl_slist_freep) struct curl_slist *headers = NULL;
        bool ok = add_header(&headers, "Accept: application/json") && add_header(&headers, "Expect:") &&
                  (!json || add_header(&headers, "Content-Type: application/json"));
        if (ok && c->token) {
                char auth[CLIENT_TOKEN_MAX + 32];
                snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
                ok = add_header(&headers, auth);
                explicit_bzero(auth, sizeof auth);
        }
        if (!ok)
                return ns_err(err, ENOMEM, "out of memory");
        curl_easy_reset(h); /* keeps the connection for the next request */
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        if (json || strcmp(method, "GET")) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, json ? json : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (json ? strlen(json) : 0));
        }
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) CLIENT_RESPONSE_MAX);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "nightshift/" NS_VERSION);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_error);
        c->curl_error[0] = '\0';
        CURLcode cr = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        if (sink.too_large || cr == CURLE_FILESIZE_EXCEEDED)
                return ns_err(err, EFBIG, "the answer to %s %s is larger than %u MiB: refused", method, url,
                              CLIENT_RESPONSE_MAX >> 20);
        if (cr == CURLE_ABORTED_BY_CALLBACK)
                return ns_err(err, CLIENT_E_INTERRUPTED, "interrupted");
        if (cr == CURLE_OUT_OF_MEMORY || (cr == CURLE_WRITE_ERROR && !sink.too_large))
                return ns_err(err, ENOMEM, "out of memory reading the answer to %s %s", method, url);
        if (cr != CURLE_OK)
                return ns_err(err, CLIENT_E_UNREACHABLE, "cannot reach the server at %s: %s", c->server,
                              c->curl_error[0] ? c->curl_error : curl_easy_strerror(cr));
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply->status);
        if (reply->body)
                reply->json = cJSON_ParseWithLength(reply->body, reply->len);
        return 0;
}

/* The API's error as "MESSAGE (HTTP STATUS)", control characters made visible. */
static int http_error(const client_reply *reply, const char *method, const char *path, ns_error *err) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply->json, "error");
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
        if (!msg || !*msg)
                return ns_err(err, EREMOTEIO, "%s %s failed (HTTP %ld)", method, path, reply->status);
        char clean[NS_ERROR_MSG_MAX];
        snprintf(clean, sizeof clean, "%s", msg);
        for (char *p = clean; *p; p++)
                if ((unsigned char) *p < ' ' || *p == 0x7f)
                        *p = '?';
        return ns_err(err, EREMOTEIO, "%s (HTTP %ld)", clean, reply->status);
}

int client_http_request(client_http *c, const char *method, const char *path, const cJSON *body,
                        client_reply *reply, ns_error *err) {
        _cleanup_free_ char *url = NULL, *json = NULL;
        if (asprintf(&url, "%s%s", c->server, path) < 0 || (body && !(json = cJSON_PrintUnformatted(body))))
                return ns_err(err, ENOMEM, "out of memory");
        for (int attempt = 0;; attempt++) {
                int r = perform(c, method, url, json, reply, err);
                if (r < 0)
                        return r;
                curl_off_t wait_s = 0;
                if (reply->status != 429 || attempt == RETRIES_429 ||
                    curl_easy_getinfo(c->curl, CURLINFO_RETRY_AFTER, &wait_s) != CURLE_OK || wait_s > RETRY_AFTER_MAX_S)
                        break;
                if ((r = client_wait_ms(wait_s > 0 ? (unsigned) wait_s * 1000 : 1000, err)) < 0)
                        return r;
        }
        if (reply->status >= 200 && reply->status < 300)
                return 0;
        return http_error(reply, method, path, err);
}

char *client_http_escape(client_http *c, const char *s) {
        char *e = curl_easy_escape(c->curl, s, 0);
        char *out = e ? strdup(e) : NULL;
        curl_free(e);
        return out;
}

void client_reply_clear(client_reply *r) {
        free(r->body);
        cJSON_Delete(r->json);
        *r = (client_reply){ 0 };
}

int client_wait_ms(unsigned ms, ns_error *err) {
        sigset_t interrupt;
        sigemptyset(&interrupt);
        sigaddset(&interrupt, SIGINT);
        struct timespec left = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000L };
        int sig;
        while ((sig = sigtimedwait(&interrupt, NULL, &left)) < 0 && errno == EINTR)
                ;
        return sig == SIGINT ? ns_err(err, CLIENT_E_INTERRUPTED, "interrupted") : 0;
}

int client_exit_status(int rc) {
        if (rc >= 0)
                return 0;
        if (rc == -CLIENT_E_UNREACHABLE)
                return CLIENT_EXIT_UNREACHABLE;
        if (rc == -CLIENT_E_INTERRUPTED)
                return CLIENT_EXIT_INTERRUPTED;
        return CLIENT_EXIT_FAILED;
}
