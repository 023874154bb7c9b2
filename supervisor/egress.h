/* nightshift supervisor — the egress proxy for sessions in network "proxy": an HTTP forward proxy
 * (absolute-form requests) and CONNECT proxy on the process's event loop, one loopback listener per
 * session (so every connection is known to be that session's), with an allow-list of host names.
 * The sandbox reaches its listener through a sandboxd connector; nothing else leaves it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/loop.h"

#define SV_EGRESS_MAX_ENTRIES 64
#define SV_EGRESS_ENTRY_MAX 260

/* Check one allow-list entry: "name", "*.suffix", either with ":port" (1..65535).  Names are DNS
 * host names (labels of [A-Za-z0-9-], 1..63 bytes, not starting or ending with '-', 253 bytes at
 * most, a last label that is not all digits: IP literals are not names).  0 or -EINVAL with a
 * message naming the entry. */
int sv_egress_entry_check(const char *entry, ns_error *err);

/* The create body's `egress` (may be NULL) for a session of network "proxy" (`proxy`): an array of
 * at most SV_EGRESS_MAX_ENTRIES checked entries, as JSON text into *out (NULL when absent).  -EINVAL
 * with a message for a bad entry, a non-array, or a list given without network "proxy". */
typedef struct cJSON cJSON;
int sv_egress_list_json(const cJSON *list, bool proxy, char **out, ns_error *err);

/* A static host map (tests): lines "name address" (IPv4 or IPv6 literal), '#' comments.  Names in
 * it resolve to its address, without DNS and without the private-address refusal. */
typedef struct sv_egress_hosts sv_egress_hosts;
int sv_egress_hosts_load(const char *path, sv_egress_hosts **out, ns_error *err);
void sv_egress_hosts_free(sv_egress_hosts *h);

/* One connection's outcome, reported once it is over (or refused). */
typedef struct sv_egress_record {
        const char *host;
        uint16_t port;
        uint64_t bytes_up, bytes_down; /* client → server, server → client */
        bool allowed;
        const char *reason;            /* why it was denied or failed; NULL when it went through */
} sv_egress_record;
typedef void (*sv_egress_report_fn)(void *data, const sv_egress_record *rec);

typedef struct sv_egress_proxy sv_egress_proxy;

/* Listen for one session: on the Unix socket `unix_path` when it is not NULL (sockdir.h: whatever
 * is at that path is replaced, and it is removed when the proxy is freed; *port_out becomes 0),
 * else on 127.0.0.1:
 * on *port_out when it is > 0 and free (a restarted supervisor keeps the port the sandbox's
 * connector points at), else on an ephemeral port; the port goes into *port_out.  A Unix socket is
 * what new sessions use: no other local user can reach it, nor take its place while the supervisor
 * restarts (a loopback port is anyone's to bind).  `allow` are entries
 * checked by sv_egress_entry_check (copied); `hosts` (may be NULL) is borrowed and must outlive the
 * proxy.  `report` is called on the loop thread for every connection. */
int sv_egress_proxy_new(ns_loop *loop, const char *const *allow, size_t n_allow, const sv_egress_hosts *hosts,
                        sv_egress_report_fn report, void *report_data, const char *unix_path, sv_egress_proxy **out,
                        int *port_out, ns_error *err);
/* Hand each tunnel that turns into a bulk transfer (established, a read that filled the buffer,
 * nothing buffered here) to the proxy process (proxyproc.h), which relays the rest at a lower
 * priority and reports its bytes, rather than relaying it on the loop.  `*relay` is read at each hand-off and
 * may be or become NULL (no process: tunnels are relayed here); `relay` must outlive the proxy. */
typedef struct sv_proxyproc sv_proxyproc;
void sv_egress_proxy_set_relay(sv_egress_proxy *p, sv_proxyproc *const *relay);

/* Where the record of a tunnel handed to the proxy process goes when this proxy is freed before
 * the tunnel ends: the process resets the tunnel, and once it has said how many bytes it moved,
 * `report(data, key, rec)` is called (on the loop), after the proxy is gone, so `data` must
 * outlive the proxy process (the supervisor's server: its proxy process stops before it).  `key`
 * (at most SV_EGRESS_LATE_KEY_MAX characters, copied) says whose it was: the session's id.
 * Without it such a tunnel is reported when the proxy is freed, without the bytes the process
 * moved.  Returns 0, or -EINVAL for a key too long. */
#define SV_EGRESS_LATE_KEY_MAX 63
typedef void (*sv_egress_late_fn)(void *data, const char *key, const sv_egress_record *rec);
int sv_egress_proxy_set_late_report(sv_egress_proxy *p, sv_egress_late_fn report, void *data, const char *key);

/* Close the listener and every connection (each reported: now, or for a handed tunnel as set by
 * sv_egress_proxy_set_late_report).  NULL is fine. */
void sv_egress_proxy_free(sv_egress_proxy *p);

/* True when `host`:`port` matches one of the proxy's entries (exported for the unit test). */
bool sv_egress_allowed(const sv_egress_proxy *p, const char *host, uint16_t port);
