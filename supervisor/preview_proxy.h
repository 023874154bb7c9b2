/* nightshift supervisor — the proxy process's state: what preview_main.c (the process, its
 * channel, the tunnels) and preview_proxy.c (the previews' connections) share.  Private to those
 * two files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "common/outbox.h"
#include "preview_chan.h"

/* A preview as the proxy knows it: what it needs to check a request and ask for its socket. */
typedef struct pv_site {
        struct pv_site *next;
        char id[SV_ID_LEN + 1];
        int port;
        unsigned char token_hash[PVC_HASH_LEN];
} pv_site;

typedef struct pv_conn pv_conn;
typedef struct pv_tunnel pv_tunnel;

typedef struct pv_proxy {
        ns_loop *loop;
        int listen_fd;
        ns_watch *listen_w;
        int chan;                       /* to the supervisor */
        ns_watch *chan_w;
        ns_outbox out;                  /* messages the channel had no room for, in order */
        const char *domain;             /* previews at <id>.preview.<domain>; NULL: <id>.localhost */
        pv_site *sites;
        size_t n_sites;
        pv_conn *conns;
        size_t n_conns;
        uint64_t last_dial;             /* the number of the last DIAL sent */
        pv_tunnel *tunnels;             /* the egress tunnels relayed here */
        size_t n_tunnels;
} pv_proxy;

/* The system calls the proxy process allows itself (its seccomp allow-list), `*n` of them. */
const char *const *sv_preview_proxy_calls(size_t *n);

/* Watch the channel (px->chan, non-blocking) on px->loop: the supervisor's messages are acted on,
 * and what pv_chan_send queued goes out as room comes.  Returns 0 or -errno. */
int pv_chan_attach(pv_proxy *px, ns_error *err);

/* Send m (no descriptor) to the supervisor: at once, or once the channel has room, after what
 * waits.  Returns 0, or -ENOBUFS when too much waits already (the supervisor is not reading). */
int pv_chan_send(pv_proxy *px, const struct pvc_msg *m);

/* The site of preview `id`, or NULL. */
pv_site *pv_site_find(pv_proxy *px, const char *id);

/* The listener's callback (data: the pv_proxy): accept browser connections. */
void pv_on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);

/* The supervisor's answer to DIAL `dial`: `fd` (owned from here on) connected to the preview's
 * server, or `error` (fd -1).  An answer for a connection that is gone closes fd. */
void pv_dialed(pv_proxy *px, uint64_t dial, int fd, int error);

/* Close every connection, or those of preview `only`. */
void pv_conns_close(pv_proxy *px, const char *only);
