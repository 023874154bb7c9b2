/* nightshift supervisor — GitHub REST API calls (see github_api.h). */
#include "github_api.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

#define RESP_MAX (1024 * 1024)

void sv_gh_resp_clear(sv_gh_resp *r) {
        free(r->body);
        *r = (sv_gh_resp){ 0 };
}

int sv_gh_global_init(ns_error *err) {
        /* reference-counted by libcurl: safe to repeat */
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : ns_err(err, EIO, "curl_global_init failed");
}

static size_t on_body(char *p, size_t size, size_t n, void *data) {
        sv_gh_resp *r = data;
        size_t add = size * n;
        if (r->len + add > RESP_MAX)
                return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        char *nb = realloc(r->body, r->len + add + 1);
        if (!nb)
                return 0;
        memcpy(nb + r->len, p, add);
        r->len += add;
        nb[r->len] = '\0';
        r->body = nb;
        return add;
}

int sv_gh_call(const char *api_base, const char *method, const char *path, const char *token, const char *json,
               sv_gh_resp *out, ns_error *err) {
        *out = (sv_gh_resp){ 0 };
        size_t bl = strlen(api_base);
        while (bl && api_base[bl - 1] == '/')
                bl--;
        _cleanup_free_ char *url = NULL, *auth = NULL;
        if (asprintf(&url, "%.*s%s", (int) bl, api_base, path) < 0 || asprintf(&auth, "Authorization: Bearer %s", token) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        CURL *h = curl_easy_init();
        if (!h)
                return ns_err(err, ENOMEM, "libcurl failed to make a handle");
        struct curl_slist *hdrs = NULL, *t;
        const char *lines[] = { auth, "Accept: application/vnd.github+json", "X-GitHub-Api-Version: 2022-11-28",
                                "User-Agent: nightshift", json ? "Content-Type: application/json" : NULL };
        for (size_t i = 0; i < sizeof lines / sizeof lines[0] && lines[i]; i++) {
                if (!(t = curl_slist_append(hdrs, lines[i]))) {
                        curl_slist_free_all(hdrs);
                        curl_easy_cleanup(h);
                        return ns_err(err, ENOMEM, "out of memory");
                }
                hdrs = t;
        }
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (json) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(json));
        }
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
        CURLcode cc = curl_easy_perform(h);
        int r = 0;
        if (cc != CURLE_OK) {
                r = ns_err(err, cc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : cc == CURLE_WRITE_ERROR ? EFBIG : EIO,
                           "GitHub API %s %s: %s%s", method, path, curl_easy_strerror(cc),
                           cc == CURLE_WRITE_ERROR ? " (answer larger than 1 MiB)" : "");
                sv_gh_resp_clear(out);
        } else {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
                if (!out->body && !(out->body = strdup("")))
                        r = ns_err(err, ENOMEM, "out of memory");
        }
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        return r;
}

/* The host of an http(s) URL into host (lower-case kept as given). */
static bool url_host(const char *url, char *host, size_t cap) {
        const char *p = strstr(url, "://");
        if (!p)
                return false;
        p += 3;
        size_t n = strcspn(p, "/:?#");
        if (!n || n >= cap)
                return false;
        memcpy(host, p, n);
        host[n] = '\0';
        return true;
}

bool sv_gh_repo_from_url(const char *url, const char *api_base, char *out, size_t cap) {
        char api_host[256] = "";
        url_host(api_base, api_host, sizeof api_host);
        if (!strcmp(api_host, "api.github.com"))
                snprintf(api_host, sizeof api_host, "github.com");
        const char *rest = NULL, *p;
        char host[256];
        if (!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7) || !strncmp(url, "ssh://", 6)) {
                p = strstr(url, "://") + 3;
                const char *slash = strchr(p, '/'), *at = memchr(p, '@', slash ? (size_t) (slash - p) : strlen(p));
                if (!slash)
                        return false;
                if (at)
                        p = at + 1;
                size_t n = strcspn(p, ":/");
                if (!n || n >= sizeof host)
                        return false;
                memcpy(host, p, n);
                host[n] = '\0';
                rest = slash + 1;
        } else if ((p = strchr(url, '@')) && strchr(p, ':') && !strstr(url, "://")) {
                p++;
                size_t n = strcspn(p, ":");
                if (!n || n >= sizeof host)
                        return false;
                memcpy(host, p, n);
                host[n] = '\0';
                rest = p + n + 1;
        } else {
                return false;
        }
        if (strcasecmp(host, "github.com") && strcasecmp(host, api_host))
                return false;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", rest);
        size_t n = strlen(buf);
        while (n && buf[n - 1] == '/')
                buf[--n] = '\0';
        if (n > 4 && !strcmp(buf + n - 4, ".git"))
                buf[n -= 4] = '\0';
        char *slash = strchr(buf, '/');
        if (!slash || slash == buf || !slash[1] || strchr(slash + 1, '/') || strstr(buf, "..") ||
            strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") != n || n >= cap)
                return false;
        memcpy(out, buf, n + 1);
        return true;
}
