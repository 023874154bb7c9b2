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
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < len; i++)
                h = (h ^ data[i]) * 1099511628211ULL;
        snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long) h);
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

bool sv_web_find(const sv_web *w, const char *path, const unsigned char **data, size_t *len, const char **type,
                 const char **etag) {
        const char *name = path[0] == '/' ? path + 1 : path;
        if (!*name)
                name = "index.html";
        if (!w || !plain_name(name))
                return false;
        for (size_t i = 0; i < w->n; i++)
                if (!strcmp(w->f[i].name, name)) {
                        *data = w->f[i].data;
                        *len = w->f[i].len;
                        *type = w->f[i].type;
                        *etag = w->f[i].etag;
                        return true;
                }
        return false;
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
        const unsigned char *data;
        size_t len;
        const char *type, *etag;
        if (!sv_web_find(w, r->path, &data, &len, &type, &etag)) {
                char *body = strdup("not found\n");
                return sv_req_reply_raw(r, 404, "text/plain; charset=utf-8", body, body ? strlen(body) : 0);
        }
        /* Revalidated on every load (no hashed names): an upgraded server's files show at once,
         * an unchanged one costs a 304. */
        r->cache_control = "no-cache";
        snprintf(r->etag, sizeof r->etag, "%s", etag);
        if (r->if_none_match[0] && !strcmp(r->if_none_match, etag))
                return sv_req_reply_raw(r, 304, type, NULL, 0);
        char *body = malloc(len ? len : 1);
        if (!body)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        memcpy(body, data, len);
        sv_req_reply_raw(r, 200, type, body, len);
}
