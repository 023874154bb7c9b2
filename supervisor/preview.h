/* nightshift supervisor — previews: a session's published ports, served to browsers.
 *
 * A preview is a port of a session's sandbox that sandboxd publishes on a host loopback port
 * (the `publish` op).  The preview proxy serves each on a site of its own — Host
 * `<preview-id>.localhost[:port]`, or `<preview-id>.preview.<domain>` behind a reverse proxy's
 * wildcard — on its own listener (--preview-listen), never on the API's: a preview page never
 * shares an origin (and so never a cookie) with the dashboard or with another preview.
 *
 * Access: the URL the API hands out once carries the preview's token
 * (/__nightshift/auth?token=...), which sets an HttpOnly, host-only cookie on the preview's origin
 * and redirects to /; every later request must carry that cookie (its hash compared in constant
 * time).  The proxy runs in a process of its own (preview_chan.h).  Upstream, it strips its own
 * cookie and the dashboard's (nightshift_session), rewrites Host to `localhost:PORT`, re-frames request bodies it parsed (libhttp-parser, heads at
 * most 16 KiB, ambiguous framing refused with 400), and after a WebSocket upgrade relays bytes
 * both ways.  Everything runs on the process's loop without blocking; it asks the supervisor for
 * each upstream socket, which dials it through sandboxd on a worker.
 *
 * Previews are kept in the database: a restarted supervisor serves them again, with the same
 * tokens, while their sandboxes live (sandboxd keeps publishing the ports). */
#pragma once

#include "api_int.h"
#include "serve.h"

/* Bind the preview listener (cfg.preview_addr:preview_port) and attach it to the loop.
 * *port_out gets the bound port.  Returns 0 or -errno. */
int sv_preview_start(sv_server *s, int *port_out, ns_error *err);

/* Close the listener and every proxied connection; free the previews. */
void sv_preview_stop(sv_server *s);

/* True when `host` (a Host header value) names a preview site: the API and the dashboard refuse
 * such requests, so that they are never served on a preview's origin. */
bool sv_preview_host(const sv_server *s, const char *host);

/* Periodic work from the loop's tick: forget previews whose session lost its sandbox; with
 * --auto-publish, ask sandboxd (on a worker, every ~1.5 s) which ports listen in each live
 * sandbox and publish the new ones. */
void sv_preview_tick(sv_server *s);

/* `nightshift proxy-process --parent PID [--domain D] [--log-level N]`: the proxy process,
 * started by the supervisor with its channel as fd 4 and the preview listener as fd 3
 * (preview_chan.h); refuses to run without the channel.  Returns the exit status. */
int sv_preview_proxy_main(int argc, char **argv);

/* The API: GET and POST /api/v1/sessions/{id}/previews, DELETE .../previews/{preview_id}. */
void sv_api_previews_get(sv_req *r, const sv_route_args *a);
void sv_api_previews_post(sv_req *r, const sv_route_args *a);
void sv_api_preview_delete(sv_req *r, const sv_route_args *a);
