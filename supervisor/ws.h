/* nightshift supervisor — WebSocket /api/v1/events: replay, then live events, one per message.
 *
 * A client subscribes when it connects, by query: `?session=ID&after=SEQ` (one session, resumed
 * by its per-session seq) or `?after_id=N` (every session, resumed by the global event id).  It
 * first gets what it missed, read from the database at its own pace, then live events as they are
 * stored.  Live events come from one shared window of the newest events (loaded once per round,
 * serialised once, sent to every subscriber from the same buffer), so a thousand subscribers cost
 * one query.  A client that stops reading holds nothing but its place in that window; once the
 * window has moved past it, it is sent {"control":"lagged","resume_after":N} and closed, and
 * resumes with after=N.  Messages from clients are bounded (SV_WS_RX_MAX) and otherwise ignored;
 * libwebsockets answers pings, and pings idle clients itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "db.h"

#define SV_WS_RX_MAX 4096

typedef struct sv_server sv_server;
typedef struct sv_ws_hub sv_ws_hub;
typedef struct sv_ws_client sv_ws_client;
struct lws;

/* An event as one line of JSON, {"id","seq","session","ts","type","data"} (the WebSocket message
 * and the transcript line), into a malloc'd buffer with `headroom` bytes free in front. */
int sv_event_text(const db_event *v, size_t headroom, unsigned char **buf, size_t *len);

/* The hub of s (s->ws), starting after the newest stored event. */
int sv_ws_hub_new(sv_server *s, sv_ws_hub **out, ns_error *err);
/* Free the hub; its clients must be gone (the lws context closes them first). */
void sv_ws_hub_free(sv_ws_hub *h);

/* New events may have been stored: load them and wake the subscribers (coalesced; cheap when
 * nothing is new).  Called by the session runner after it stores events, and from the tick. */
void sv_ws_notify(sv_server *s);
void sv_ws_tick(sv_server *s);
/* Subscribers connected now. */
size_t sv_ws_clients(const sv_server *s);

/* A client whose upgrade was authorised (http.c): parse its subscription from the request's
 * query; NULL with *err filled when it is invalid (the caller closes the connection). */
sv_ws_client *sv_ws_client_new(sv_server *s, struct lws *wsi, ns_error *err);
void sv_ws_client_free(sv_ws_client *c);

/* Close the connection with `code` (an lws_close_status) and `reason` (a static string) once what was sent so far has
 * gone out (the close frame after it), or after a few seconds if the client does not read. */
void sv_ws_client_close(sv_ws_client *c, int code, const char *reason);

/* The connection is writable: send the client's next messages.  Returns -1 to close it. */
int sv_ws_client_writable(sv_ws_client *c);
