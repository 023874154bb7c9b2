/* The dashboard's file set (supervisor/web.c): the embedded copy holds the app with the right
 * types; a --web-dir serves only plain regular files directly in it (no dotfiles, no symlinks, no
 * subdirectories, nothing of an unknown type), and no request path reaches beyond them. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/http.h"
#include "supervisor/web.h"
#include "tap.h"

static bool has(const sv_web *w, const char *path, const char **type) {
        const unsigned char *d;
        size_t n;
        const char *t, *e;
        bool r = sv_web_find(w, path, &d, &n, &t, &e);
        if (type)
                *type = r ? t : NULL;
        return r;
}

static void put(const char *dir, const char *name, const char *text) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        FILE *f = fopen(p, "w");
        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

int main(void) {
        sv_web *w = NULL;
        ns_error err;
        ok(sv_web_new(NULL, &w, &err) == 0, "the embedded set loads");
        const char *type = NULL;
        ok(has(w, "/", &type) && !strcmp(type, "text/html; charset=utf-8"), "/ is index.html, as HTML");
        ok(has(w, "/app.js", &type) && !strcmp(type, "text/javascript; charset=utf-8"), "app.js is JavaScript");
        ok(has(w, "/style.css", &type) && !strcmp(type, "text/css; charset=utf-8"), "style.css is CSS");
        ok(has(w, "/manifest.webmanifest", &type) && !strcmp(type, "application/manifest+json"), "the manifest has its type");
        ok(has(w, "/icon.svg", &type) && !strcmp(type, "image/svg+xml"), "the icon is SVG");
        ok(!has(w, "/../web/app.js", NULL) && !has(w, "/./app.js", NULL) && !has(w, "//app.js", NULL) &&
                   !has(w, "/app.js/", NULL) && !has(w, "/APP.JS", NULL) && !has(w, "/nope.js", NULL),
           "only exact plain names are found");
        const unsigned char *d1, *d2;
        size_t n1, n2;
        const char *t, *e1, *e2;
        sv_web_find(w, "/app.js", &d1, &n1, &t, &e1);
        sv_web_find(w, "/api.js", &d2, &n2, &t, &e2);
        ok(e1[0] == '"' && strcmp(e1, e2) != 0, "files have distinct quoted ETags");
        /* Versioned URLs: index.html names the set's scripts, styles and images under
         * v/VERSION/, which finds the same files; the page and the manifest are not there. */
        const char *ver = sv_web_version(w);
        ok(strlen(ver) == 16 && strspn(ver, "0123456789abcdef") == 16, "the set has a 16-hex-digit version");
        const unsigned char *idx;
        size_t nidx;
        sv_web_find(w, "/", &idx, &nidx, &t, &e1);
        char want[64];
        snprintf(want, sizeof want, "src=\"v/%s/app.js\"", ver);
        ok(memmem(idx, nidx, want, strlen(want)) != NULL, "index.html loads app.js from v/VERSION/");
        snprintf(want, sizeof want, "href=\"v/%s/style.css\"", ver);
        ok(memmem(idx, nidx, want, strlen(want)) != NULL, "... and style.css");
        ok(memmem(idx, nidx, "href=\"manifest.webmanifest\"", 27) != NULL, "... but not the manifest (its start_url is relative)");
        ok(memmem(idx, nidx, "src=\"app.js\"", 12) == NULL, "... and no plain name of a versioned file is left");
        char vp[128];
        snprintf(vp, sizeof vp, "/v/%s/app.js", ver);
        ok(sv_web_find(w, vp, &d2, &n2, &t, &e2) && d2 == d1 && n2 == n1, "/v/VERSION/app.js is app.js");
        ok(has(w, "/v/0000000000000000/dom.js", NULL), "another version's URL finds the file too (a page from before an upgrade)");
        snprintf(vp, sizeof vp, "/v/%s/index.html", ver);
        bool idx_v = has(w, vp, NULL);
        snprintf(vp, sizeof vp, "/v/%s/manifest.webmanifest", ver);
        bool man_v = has(w, vp, NULL);
        snprintf(vp, sizeof vp, "/v/%s/", ver);
        bool dir_v = has(w, vp, NULL);
        ok(!idx_v && !man_v && !dir_v, "the page and the manifest are not served under v/");
        ok(!has(w, "/v/abc/app.js", NULL) && !has(w, "/v/0000000000000000x/app.js", NULL) &&
                   !has(w, "/v/0000000000000000/../app.js", NULL) && !has(w, "/v/0000000000000000/v/0000000000000000/app.js", NULL) &&
                   !has(w, "/v/ABCDEF0000000000/app.js", NULL),
           "only v/<16 lowercase hex digits>/<plain name> is a versioned URL");
        sv_web_free(w);

        char dir[] = "/tmp/ns-web-XXXXXX";
        ok(mkdtemp(dir) != NULL, "a directory to serve");
        put(dir, "index.html", "<!doctype html>");
        put(dir, "a.js", "export {}");
        put(dir, ".secret.js", "x");
        put(dir, "notes.bin", "x");
        char p[512], q[512];
        snprintf(p, sizeof p, "%s/sub", dir);
        mkdir(p, 0700);
        put(p, "b.js", "x");
        snprintf(p, sizeof p, "%s/link.js", dir);
        ok(symlink("/etc/passwd", p) == 0, "a symlink in it");
        w = NULL;
        ok(sv_web_new(dir, &w, &err) == 0, "--web-dir loads");
        ok(has(w, "/", NULL) && has(w, "/a.js", NULL), "its plain files are served");
        ok(!has(w, "/.secret.js", NULL), "dotfiles are not");
        ok(!has(w, "/notes.bin", NULL), "files of unknown type are not");
        ok(!has(w, "/link.js", NULL), "symlinks are not followed");
        ok(!has(w, "/sub/b.js", NULL) && !has(w, "/sub", NULL), "subdirectories are not served");
        sv_web_free(w);
        w = NULL;
        ok(sv_web_new("/nonexistent-dir", &w, &err) < 0 && w == NULL, "a missing --web-dir is an error at start");

        sv_req r = { 0 };
        snprintf(r.method, sizeof r.method, "GET");
        snprintf(r.path, sizeof r.path, "/");
        bool page = sv_web_wants(&r);
        snprintf(r.path, sizeof r.path, "/api/v1/sessions");
        bool api = sv_web_wants(&r);
        snprintf(r.path, sizeof r.path, "/metrics");
        bool metrics = sv_web_wants(&r);
        snprintf(r.path, sizeof r.path, "/app.js");
        snprintf(r.method, sizeof r.method, "POST");
        bool post = sv_web_wants(&r);
        ok(page && !api && !metrics && !post, "GETs outside /api/ and /metrics are the dashboard's; nothing else is");

        snprintf(q, sizeof q, "rm -rf %s", dir);
        if (system(q) != 0)
                printf("# cleanup of %s failed\n", dir);
        return tap_done();
}
