/* nightshift supervisor — pushing a session's branch (push.c), reusable by pr.c. */
#pragma once

#include <git2.h>

#include "common/err.h"
#include "ids.h"

typedef struct sv_server sv_server;
typedef struct sv_worker sv_worker;

/* One push: inputs set by sv_push_init on the loop, results by sv_push_run on a worker. */
typedef struct sv_push {
        sv_server *srv;
        char sid[SV_ID_LEN + 1], repo_id[SV_ID_LEN + 1];
        char *mirror_path, *branch, *base_sha, *url;
        /* results */
        int status;       /* 200, or the HTTP status of the failure */
        const char *code; /* NULL on success */
        ns_error err;
        char *event_type, *event_json; /* the event to store, on the loop */
        char sha[GIT_OID_HEXSZ + 1];
        char *rejected; /* the remote's status for our ref, when it refused */
        char hostkey_why[600]; /* why the SSH host key was refused */
} sv_push;

/* Loop thread: fill *p for session `sid` from the database.  0, or -errno with status and code
 * (404 not_found, 409 no_branch, 500 internal) and err set. */
int sv_push_init(sv_push *p, sv_server *s, const char *sid, int *status, const char **code, ns_error *err);
/* Worker thread: gate and push; results into *p (p->code NULL on success). */
void sv_push_run(sv_push *p, sv_worker *w);
/* Loop thread: store the push's event (redacted) on the session. */
void sv_push_store_event(sv_push *p);
void sv_push_clear(sv_push *p);
