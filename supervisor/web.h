/* nightshift supervisor — the dashboard's static files (web/), served beside the API.
 *
 * The files are embedded in the binary at build time (web_embed.cmake), so an installed server
 * needs nothing on disk; `--web-dir DIR` serves a directory instead (read once at start: editing
 * a file needs a restart).  Every page goes out with a strict Content-Security-Policy: scripts
 * only from this origin, no inline script, connections only to this origin (and its WebSocket),
 * no framing.  The dashboard uses relative URLs only, so it works under a reverse proxy's path
 * prefix. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

typedef struct sv_req sv_req;
typedef struct sv_web sv_web;

/* One embedded file (the generated web_files.c). */
typedef struct sv_web_embedded {
        const char *name;
        const unsigned char *data;
        size_t len;
} sv_web_embedded;
extern const sv_web_embedded sv_web_embedded_files[];
extern const size_t sv_web_embedded_count;

/* The file set: the embedded files, or (dir non-NULL) the regular files directly in `dir`. */
int sv_web_new(const char *dir, sv_web **out, ns_error *err);
void sv_web_free(sv_web *w);

/* The file that request path `path` names ("/" is index.html; "/v/VERSION/NAME" a script,
 * style or image NAME, any 16-hex-digit VERSION): its bytes, length, Content-Type and ETag; false
 * when there is none (only plain names of the set are ever found).  index.html is served with
 * its src/href references to the set's scripts, styles and images rewritten to
 * "v/<sv_web_version>/NAME": those URLs are cached by browsers for good (immutable), everything
 * else is revalidated on every load. */
bool sv_web_find(const sv_web *w, const char *path, const unsigned char **data, size_t *len, const char **type,
                 const char **etag);

/* The set's version: 16 hex digits, a hash of every file's name and content. */
const char *sv_web_version(const sv_web *w);

/* Whether the request is the dashboard's rather than the API's: a GET of a path outside /api/
 * and /metrics. */
bool sv_web_wants(const sv_req *r);
/* Answer such a request: the file (index.html for "/"), 304 when If-None-Match matches, 404
 * otherwise.  Needs no login: the files hold no data; the API behind them refuses without one. */
void sv_web_serve(const sv_web *w, sv_req *r);
