/* nightshift supervisor — the dashboard's static files (see web.h). */
#include "web.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "http.h"

#define WEB_FILES_MAX 128
#define WEB_FILE_MAX (4 * 1024 * 1024)

struct web_file {
        char name[64];
        const unsigned char *data; /* embedded, or owned (`owned`) */
        size_t len;
        bool owned;
        char etag[24];
        const char *type;
};

struct sv_web {
        struct web_file f[WEB_FILES_MAX];
        size_t n;
        char version[17]; /* of the whole set: the path segment of /v/VERSION/NAME (web.h) */
};

static const struct {
        const char *ext, *type;
} types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".mjs", "text/javascript; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".webmanifest", "application/manifest+json" },
        { ".json", "application/json" },
        { ".txt", "text/plain; charset=utf-8" },
};

/* A file's name is served only when it is plain: letters, digits, '-', '_', '.', not starting
 * with '.'; nothing else of a request path can name a file. */
static bool plain_name(const char *s) {
        if (!*s || *s == '.' || strlen(s) >= sizeof(((struct web_file *) 0)->name))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
                      *s == '_' || *s == '.'))
                        return false;
        return true;
}

static const char *type_of(const char *name) {
        const char *dot = strrchr(name, '.');
        for (size_t i = 0; dot && i < ARRAY_SIZE(types); i++)
                if (!strcmp(dot, types[i].ext))
                        return types[i].type;
        return NULL;
}

#define FNV_SEED 1469598103934665603ULL
static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ULL;
        return h;
}

static int add_file(sv_web *w, const char *name, const unsigned char *data, size_t len, bool owned, ns_error *err) {
        if (w->n == WEB_FILES_MAX)
                return ns_err(err, E2BIG, "web: more than %d files", WEB_FILES_MAX);
        struct web_file *f = &w->f[w->n++];
        snprintf(f->name, sizeof f->name, "%s", name);
        f->data = data;
        f->len = len;
        f->owned = owned;
        f->type = type_of(name);
        /* FNV-1a of the content: the validator a browser revalidates with. */
        snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long) fnv1a(FNV_SEED, data, len));
        return 0;
}

static struct web_file *file_named(sv_web *w, const char *name) {
        for (size_t i = 0; i < w->n; i++)
                if (!strcmp(w->f[i].name, name))
                        return &w->f[i];
        return NULL;
}

/* Whether a file is served under /v/VERSION/ too: what a page loads (scripts, styles, images),
 * not the page itself nor the manifest (whose start_url and scope are relative to it). */
static bool versioned(const struct web_file *f) {
        const char *dot = strrchr(f->name, '.');
        return dot && (!strcmp(dot, ".js") || !strcmp(dot, ".mjs") || !strcmp(dot, ".css") || !strcmp(dot, ".svg") ||
                       !strcmp(dot, ".png"));
}

/* The set's version (a hash of every file's name and content) and index.html as served: each
 * src="NAME" / href="NAME" naming a versioned file of the set becomes "v/VERSION/NAME", so that
 * the page's scripts, styles and images (and the modules they import, by relative URLs) come
 * from URLs that change whenever any file does, and can be cached for good. */
static int finish_set(sv_web *w, ns_error *err) {
        uint64_t h = FNV_SEED;
        for (size_t i = 0; i < w->n; i++) {
                h = fnv1a(h, (const unsigned char *) w->f[i].name, strlen(w->f[i].name) + 1);
                h = fnv1a(h, (const unsigned char *) w->f[i].etag, strlen(w->f[i].etag));
        }
        snprintf(w->version, sizeof w->version, "%016llx", (unsigned long long) h);
        struct web_file *index = file_named(w, "index.html");
        if (!index)
                return 0;
        const char *in = (const char *) index->data, *end = in + index->len;
        size_t cap = index->len + 1, len = 0;
        for (const char *p = in; p < end; p++) /* an upper bound: every quote prefixed */
                if (*p == '"')
                        cap += sizeof "v/0123456789abcdef/";
        _cleanup_free_ char *out = malloc(cap);
        if (!out)
                return ns_err(err, ENOMEM, "out of memory");
        for (const char *p = in; p < end;) {
                const char *q = NULL;
                if ((size_t) (end - p) > 5 && !memcmp(p, "src=\"", 5))
                        q = p + 5;
                else if ((size_t) (end - p) > 6 && !memcmp(p, "href=\"", 6))
                        q = p + 6;
                if (!q) {
                        out[len++] = *p++;
                        continue;
                }
                memcpy(out + len, p, (size_t) (q - p));
                len += (size_t) (q - p);
                p = q;
                const char *close = memchr(q, '"', (size_t) (end - q));
                char name[sizeof index->name];
                if (close && (size_t) (close - q) < sizeof name) {
                        memcpy(name, q, (size_t) (close - q));
                        name[close - q] = '\0';
                        const struct web_file *f = plain_name(name) ? file_named(w, name) : NULL;
                        if (f && versioned(f))
                                len += (size_t) snprintf(out + len, cap - len, "v/%s/", w->version);
                }
        }
        if (index->owned)
                free((void *) index->data);
        index->data = (const unsigned char *) TAKE_PTR(out);
        index->len = len;
        index->owned = true;
        snprintf(index->etag, sizeof index->etag, "\"%016llx\"",
                 (unsigned long long) fnv1a(FNV_SEED, index->data, index->len));
        return 0;
}

static int load_dir(sv_web *w, const char *dir, ns_error *err) {
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return ns_err_sys(err, errno, "--web-dir %s", dir);
        int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return ns_err_sys(err, errno, "dup");
        _cleanup_(closedirp) DIR *d = fdopendir(dup_fd);
        if (!d) {
                close(dup_fd);
                return ns_err_sys(err, errno, "--web-dir %s", dir);
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!plain_name(de->d_name) || !type_of(de->d_name))
                        continue;
                _cleanup_close_ int fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (st.st_size > WEB_FILE_MAX)
                        return ns_err(err, EFBIG, "--web-dir: %s is larger than %d bytes", de->d_name, WEB_FILE_MAX);
                unsigned char *buf = malloc((size_t) st.st_size + 1);
                if (!buf)
                        return ns_err(err, ENOMEM, "out of memory");
                size_t got = 0;
                while (got < (size_t) st.st_size) {
                        ssize_t k = read(fd, buf + got, (size_t) st.st_size - got);
                        if (k <= 0)
                                break;
                        got += (size_t) k;
                }
                int r = add_file(w, de->d_name, buf, got, true, err);
                if (r < 0) {
                        free(buf);
                        return r;
                }
        }
        return 0;
}

int sv_web_new(const char *dir, sv_web **out, ns_error *err) {
        sv_web *w = calloc(1, sizeof *w);
        if (!w)
                return ns_err(err, ENOMEM, "out of memory");
        int r = 0;
        if (dir)
                r = load_dir(w, dir, err);
        else
                for (size_t i = 0; i < sv_web_embedded_count && r == 0; i++)
                        if (plain_name(sv_web_embedded_files[i].name) && type_of(sv_web_embedded_files[i].name))
                                r = add_file(w, sv_web_embedded_files[i].name, sv_web_embedded_files[i].data,
                                             sv_web_embedded_files[i].len, false, err);
        if (r == 0)
                r = finish_set(w, err);
        if (r < 0) {
                sv_web_free(w);
                return r;
        }
        *out = w;
        return 0;
}

void sv_web_free(sv_web *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n; i++)
                if (w->f[i].owned)
                        free((void *) w->f[i].data);
        free(w);
}

/* The file `path` names, and whether it names it by the set's current version; NULL when none. */
static const struct web_file *resolve(const sv_web *w, const char *path, bool *current) {
        *current = false;
        if (!w || path[0] != '/')
                return NULL;
        const char *name = path + 1;
        bool under_v = false;
        if (!strncmp(name, "v/", 2)) {
                /* /v/VERSION/NAME: VERSION is 16 hex digits; another set's version (a page loaded
                 * before an upgrade) still finds the file, only not as one to cache for good. */
                const char *ver = name + 2;
                size_t k = strspn(ver, "0123456789abcdef");
                if (k != 16 || ver[16] != '/')
                        return NULL;
                *current = !memcmp(ver, w->version, 16);
                name = ver + 17;
                under_v = true;
        }
        if (!*name && !under_v)
                name = "index.html";
        if (!plain_name(name))
                return NULL;
        for (size_t i = 0; i < w->n; i++)
                if (!strcmp(w->f[i].name, name))
                        return under_v && !versioned(&w->f[i]) ? NULL : &w->f[i];
        return NULL;
}

bool sv_web_find(const sv_web *w, const char *path, const unsigned char **data, size_t *len, const char **type,
                 const char **etag) {
        bool current;
        const struct web_file *f = resolve(w, path, &current);
        if (!f)
                return false;
        *data = f->data;
        *len = f->len;
        *type = f->type;
        *etag = f->etag;
        return true;
}

const char *sv_web_version(const sv_web *w) {
        return w->version;
}

bool sv_web_wants(const sv_req *r) {
        return !strcmp(r->method, "GET") && strncmp(r->path, "/api/", 5) && strcmp(r->path, "/api") &&
               strcmp(r->path, "/metrics");
}

/* The Host header as it may stand in the policy: a host name or address and a port, nothing that
 * could end the directive or add a source. */
static bool policy_safe_host(const char *h) {
        if (!*h || strlen(h) > 200)
                return false;
        for (; *h; h++)
                if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') || *h == '-' ||
                      *h == '.' || *h == ':' || *h == '[' || *h == ']'))
                        return false;
        return true;
}

void sv_web_serve(const sv_web *w, sv_req *r) {
        /* Why this policy: agent output is hostile and shown on these pages.  Should any of it
         * ever reach the DOM as markup, nothing of it runs (no inline script, no eval, no foreign
         * origin), it cannot send data elsewhere (connect-src), inject a <base>, or frame us. */
        char ws[512] = "";
        if (policy_safe_host(r->host))
                snprintf(ws, sizeof ws, " ws://%.200s wss://%.200s", r->host, r->host);
        snprintf(r->csp, sizeof r->csp,
                 "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'%s; manifest-src 'self'; object-src 'none'; base-uri 'none'; "
                 "form-action 'self'; frame-ancestors 'none'",
                 ws);
        bool current;
        const struct web_file *f = resolve(w, r->path, &current);
        if (!f) {
                char *body = strdup("not found\n");
                return sv_req_reply_raw(r, 404, "text/plain; charset=utf-8", body, body ? strlen(body) : 0);
        }
        /* A file named by the current version never changes under that name (any change makes a
         * new version, and index.html names the new one): cached for good, no revalidation.
         * Everything else (index.html, the plain names, another version's) is revalidated on
         * every load: an upgraded server's files show at once, an unchanged one costs a 304. */
        r->cache_control = current ? "public, max-age=31536000, immutable" : "no-cache";
        snprintf(r->etag, sizeof r->etag, "%s", f->etag);
        if (r->if_none_match[0] && !strcmp(r->if_none_match, f->etag))
                return sv_req_reply_raw(r, 304, f->type, NULL, 0);
        char *body = malloc(f->len ? f->len : 1);
        if (!body)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        memcpy(body, f->data, f->len);
        sv_req_reply_raw(r, 200, f->type, body, f->len);
}
