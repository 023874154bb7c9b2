/* nightshift supervisor — what preview.c (previews, API, auto-publish), preview_proc.c (the
 * previews' side of the proxy process) and preview_proxy.c (the proxy's connections, in that
 * process) share.  Private to those files. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "preview.h"
#include "preview_chan.h"
#include "proxyproc.h"
#include "sandboxd/proto.h"

#define PV_TOKEN_HEX 64         /* 32 random bytes, hex */
#define PV_HASH_LEN 32
#define PV_COOKIE "nightshift_preview"
#define PV_AUTH_PATH "/__nightshift/auth"

typedef struct sv_preview {
        struct sv_preview *next;
        char id[SV_ID_LEN + 1];         /* "p-" + 12 base32: a DNS label */
        char sid[SV_ID_LEN + 1];
        char sandbox[NS_ID_MAX + 1];
        int port, host_port;
        unsigned char token_hash[PV_HASH_LEN]; /* BLAKE2b of the token: the token itself is not kept */
        int64_t created_ms;
        bool automatic;
} sv_preview;

_Static_assert(PV_HASH_LEN == PVC_HASH_LEN, "the channel carries the whole hash");

struct sv_previews {
        sv_server *srv;
        int listen_fd;                  /* held here, served by the proxy process (its fd 3) */
        int port;                       /* bound */
        sv_preview *list;
        size_t n;
        sv_proxyproc *proc;             /* the proxy process: serves previews, relays egress tunnels */
        size_t n_dials;                 /* its DIALs being dialled */
        struct pv_dial_job *waiting, **waiting_tail; /* DIALs beyond those, in order */
        size_t n_waiting;
        uint64_t next_poll_ms;
        bool polling;                   /* an auto-publish job is out */
        /* auto-publish leaves alone what a user unpublished: (session, port), oldest overwritten */
        struct { char sid[SV_ID_LEN + 1]; int port; } ignored[64];
        size_t n_ignored;
};

/* The preview named `id`, or NULL. */
sv_preview *pv_find(struct sv_previews *pv, const char *id);

/* The token's hash. */
void pv_hash(const char *token, size_t len, unsigned char out[PV_HASH_LEN]);

/* The preview id a Host header value names (`<id>.localhost[:port]`, or `<id>.preview.<domain>`
 * when `domain` is not NULL). */
bool pv_host_preview(const char *domain, const char *host, size_t len, char id[SV_ID_LEN + 1]);

/* preview_proc.c.  Start the proxy process on pv->listen_fd and tell it every preview (again
 * whenever it is started again).  Returns 0 or -errno. */
int pv_proc_start(struct sv_previews *pv, ns_error *err);

/* Kill the proxy process (its connections and tunnels go with it) and reap it. */
void pv_proc_stop(struct sv_previews *pv);

/* Tell the proxy about preview p: new, or with a new token. */
void pv_proc_put(struct sv_previews *pv, const sv_preview *p);

/* Tell the proxy that preview p is gone: it closes p's connections and serves p no more. */
void pv_proc_drop(struct sv_previews *pv, const sv_preview *p);

/* From the loop's tick: start the proxy process again once the last one died. */
void pv_proc_tick(struct sv_previews *pv);
