/* nightshift supervisor — outgoing notifications: webhooks on a session's `completed`, `failed`
 * and `waiting` (the agent asked the user something).
 *
 * Endpoints (table notify_endpoints; API /api/v1/notifications/endpoints, CLI `nightshift notify`)
 * name an http(s) URL, a format and the events they want, optionally one repository's sessions
 * only.  Formats:
 *   slack  {"text": "..."}: an incoming-webhook message with the title, the state, the reason and
 *          a link to the session in the dashboard (--public-url, else the listen address);
 *   json   {"event": "session.completed", "session_id", "state", "reason", "title", "repo":
 *          {"id", "name"}, "url", "time"}, signed: `X-Nightshift-Signature: sha256=<hex>` is the
 *          HMAC-SHA256 of the exact body under the global vault secret the endpoint names
 *          (default NOTIFY_SIGNING_SECRET); `X-Nightshift-Event` and `X-Nightshift-Delivery`
 *          (the delivery's id, the same on every retry: receivers dedupe on it) go along.
 * A state change queues one delivery per matching endpoint (table notifications): its payload is
 * built once, passed through the redactor (no secret value leaves in a notification, nor is
 * stored) and kept, so a restart resumes pending deliveries where they were.
 *
 * Delivery: libcurl on a worker thread (never the loop), at most NOTIFY_INFLIGHT at once, each
 * attempt bounded by --notify-timeout; no redirects followed.  A 2xx is success; a connection
 * error, a timeout, 408, 429 or 5xx is retried after 1 s, 2 s, 4 s ... (doubling up to
 * --notify-backoff-max) until --notify-max-attempts; another 4xx fails at once (the receiver
 * refuses it: retrying would not help).  The log keeps status, attempts, the last HTTP status or
 * error and the times (GET /api/v1/notifications/deliveries). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "http.h"
#include "state.h"

typedef struct sv_server sv_server;
typedef struct sv_route_args sv_route_args;
typedef struct sv_notifier sv_notifier;

#define SV_NOTIFY_DEFAULT_SECRET "NOTIFY_SIGNING_SECRET"
#define SV_NOTIFY_ENDPOINTS_MAX 64
#define SV_NOTIFY_URL_MAX 2048

/* Set up s->notify (libcurl's global state included: call before any worker runs) and prune the
 * hook deliveries past their replay window. */
int sv_notify_start(sv_server *s, ns_error *err);
void sv_notify_stop(sv_server *s);
/* At shutdown, before the workers are stopped: attempts in flight give up at once and stay
 * pending (no attempt counted) for the next start. */
void sv_notify_quiesce(sv_server *s);

/* Session `sid` has just entered state `to`: queue its notifications (completed, failed, waiting;
 * other states are ignored).  Loop thread.  Failures are logged, never returned: a notification
 * must not stop a session's state change. */
void sv_notify_session(sv_server *s, const char *sid, sv_state to);

/* From the loop's tick: start due deliveries, prune old hook deliveries now and then. */
void sv_notify_tick(sv_server *s);

/* True for a URL an endpoint may have: http or https, a host, no user info, no blanks or control
 * characters, at most SV_NOTIFY_URL_MAX bytes.  Sets *err's message when false. */
bool sv_notify_url_ok(const char *url, ns_error *err);

/* api_notify.c: the routes. */
void sv_api_notify_endpoints_get(sv_req *r, const sv_route_args *a);
void sv_api_notify_endpoint_post(sv_req *r, const sv_route_args *a);
void sv_api_notify_endpoint_delete(sv_req *r, const sv_route_args *a);
void sv_api_notify_deliveries(sv_req *r, const sv_route_args *a);
