/* nightshift supervisor — what preview.c (previews, API, auto-publish) and preview_proxy.c (the
 * proxy's connections) share.  Private to those two files. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "preview.h"
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

typedef struct pv_conn pv_conn;

struct sv_previews {
        sv_server *srv;
        int listen_fd;
        ns_watch *listen_w;
        int port;                       /* bound */
        sv_preview *list;
        size_t n;
        pv_conn *conns;
        size_t n_conns;
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

/* The preview id a Host header value names (`<id>.localhost[:port]`, `<id>.preview.<domain>`). */
bool pv_host_preview(const sv_config *cfg, const char *host, size_t len, char id[SV_ID_LEN + 1]);

/* preview_proxy.c: accept on the listener; close every connection (of one preview: `only`). */
void pv_on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);
void pv_conns_close(struct sv_previews *pv, const sv_preview *only);
