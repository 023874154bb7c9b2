/* nightshift supervisor — WebSocket event subscriptions (see ws.h). */
#include "ws.h"

#include <inttypes.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "db.h"
#include "http.h"
#include "ids.h"
#include "serve.h"

#define WINDOW_EVENTS 16384            /* the shared window of newest events ... */
#define WINDOW_BYTES (16u * 1024 * 1024) /* ... bounded in count and in bytes */
#define REPLAY_BATCH 256               /* events read from the database per replay query */
#define LAG_CLOSE_S 5                  /* a lagged client that cannot take the notice is closed */

/* One event, serialised once, with the headroom lws_write needs in front of it.  Sent to every
 * subscriber from the same buffer: lws_write puts the same frame header there each time. */
struct wev {
        int64_t id, seq;
        char sid[SV_ID_LEN + 1];
        unsigned char *buf; /* LWS_PRE + len bytes */
        size_t len;
};

struct sv_ws_hub {
        sv_server *srv;
        struct wev *ring;       /* WINDOW_EVENTS slots; absolute index i lives in ring[i % WINDOW_EVENTS] */
        uint64_t start, end;    /* absolute indexes of the window [start, end) */
        size_t bytes;
        int64_t head_id;        /* the newest event id loaded (or skipped, with no one listening) */
        int64_t floor_id;       /* the window holds every event with floor_id < id <= head_id */
        sv_ws_client *clients;
        size_t n_clients;
};

struct sv_ws_client {
        sv_ws_hub *h;
        struct lws *wsi;
        sv_ws_client *prev, *next;
        bool all;                  /* every session (resume by id) or one (resume by seq) */
        char sid[SV_ID_LEN + 1];
        int64_t last_id, last_seq; /* the newest delivered: the resume point */
        bool live;                 /* replay done: following the window */
        uint64_t pos;              /* live: the window index to look at next */
        struct wev *replay;        /* replay: the batch read from the database */
        size_t n_replay, i_replay;
        bool replay_exhausted;     /* the last replay query came back short ... */
        int64_t replay_head;       /* ... when the hub had loaded up to this id */
        bool said_live, lagged, closing;
        unsigned char *ctl;        /* a control message to send first (LWS_PRE headroom) */
        size_t sent_bytes;         /* written so far (the per-wake-up budget) */
        size_t ctl_len;
};

static void wev_clear(struct wev *e) {
        free(e->buf);
        *e = (struct wev){ 0 };
}

/* {"id":…,"seq":…,"session":…,"ts":…,"type":…,"data":…}: the REST event shape plus its session.
 * type is one of the stored event names and data stored JSON (both checked on the way in). */
#define WEV_FMT "{\"id\":%" PRId64 ",\"seq\":%" PRId64 ",\"session\":\"%s\",\"ts\":%" PRId64 ",\"type\":\"%s\",\"data\":%s}"

int sv_event_text(const db_event *v, size_t headroom, unsigned char **buf, size_t *len) {
        int n = snprintf(NULL, 0, WEV_FMT, v->id, v->seq, v->session_id, v->ts, v->type, v->data);
        if (n < 0)
                return -EINVAL;
        unsigned char *b = malloc(headroom + (size_t) n + 1);
        if (!b)
                return -ENOMEM;
        snprintf((char *) b + headroom, (size_t) n + 1, WEV_FMT, v->id, v->seq, v->session_id, v->ts, v->type, v->data);
        *buf = b;
        *len = (size_t) n;
        return 0;
}

static int wev_from(const db_event *v, struct wev *out) {
        *out = (struct wev){ .id = v->id, .seq = v->seq };
        int r = sv_event_text(v, LWS_PRE, &out->buf, &out->len);
        if (r < 0)
                return r;
        snprintf(out->sid, sizeof out->sid, "%s", v->session_id);
        return 0;
}

static void window_drop_oldest(sv_ws_hub *h) {
        struct wev *e = &h->ring[h->start % WINDOW_EVENTS];
        h->floor_id = e->id;
        h->bytes -= e->len;
        wev_clear(e);
        h->start++;
}

static void window_push(sv_ws_hub *h, struct wev *e) {
        while (h->end - h->start >= WINDOW_EVENTS || (h->end > h->start && h->bytes + e->len > WINDOW_BYTES))
                window_drop_oldest(h);
        h->ring[h->end % WINDOW_EVENTS] = *e;
        h->bytes += e->len;
        h->end++;
        *e = (struct wev){ 0 };
}

int sv_ws_hub_new(sv_server *s, sv_ws_hub **out, ns_error *err) {
        sv_ws_hub *h = calloc(1, sizeof *h);
        if (!h || !(h->ring = calloc(WINDOW_EVENTS, sizeof *h->ring))) {
                free(h);
                return ns_err(err, ENOMEM, "out of memory");
        }
        h->srv = s;
        int r = db_events_max_id(s->db, &h->head_id, err);
        h->floor_id = h->head_id;
        if (r < 0) {
                sv_ws_hub_free(h);
                return r;
        }
        *out = h;
        return 0;
}

void sv_ws_hub_free(sv_ws_hub *h) {
        if (!h)
                return;
        while (h->end > h->start)
                window_drop_oldest(h);
        free(h->ring);
        free(h);
}

static void request_write(sv_ws_client *c) {
        if (c->wsi)
                lws_callback_on_writable(c->wsi);
}

static void set_control(sv_ws_client *c, const char *json) {
        free(c->ctl);
        size_t n = strlen(json);
        c->ctl = malloc(LWS_PRE + n);
        c->ctl_len = c->ctl ? n : 0;
        if (c->ctl)
                memcpy(c->ctl + LWS_PRE, json, n);
}

static void mark_lagged(sv_ws_client *c) {
        if (c->lagged)
                return;
        c->lagged = true;
        char msg[128];
        snprintf(msg, sizeof msg, "{\"control\":\"lagged\",\"resume_after\":%" PRId64 "}", c->all ? c->last_id : c->last_seq);
        set_control(c, msg);
        /* It may not read even this: the connection goes after LAG_CLOSE_S either way. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE, LAG_CLOSE_S);
        request_write(c);
}

/* Load what was stored since the last round into the window and wake whoever it concerns. */
static void round_run(sv_ws_hub *h) {
        db *d = h->srv->db;
        ns_error err;
        if (!h->n_clients) {
                /* No one listens: skip ahead instead of loading what nobody reads. */
                while (h->end > h->start)
                        window_drop_oldest(h);
                if (db_events_max_id(d, &h->head_id, &err) < 0)
                        log_warn("events: %s", err.msg);
                h->floor_id = h->head_id;
                return;
        }
        for (;;) {
                db_event *v = NULL;
                size_t n = 0;
                if (db_events_after_id(d, h->head_id, 1000, &v, &n, &err) < 0) {
                        log_warn("events: %s", err.msg);
                        return;
                }
                for (size_t i = 0; i < n; i++) {
                        struct wev e;
                        if (wev_from(&v[i], &e) == 0)
                                window_push(h, &e);
                        h->head_id = v[i].id;
                }
                db_events_free(v, n);
                if (n < 1000)
                        break;
        }
        for (sv_ws_client *c = h->clients; c; c = c->next) {
                if (!c->live)
                        continue;
                if (c->pos < h->start)
                        mark_lagged(c);
                else if (c->pos < h->end)
                        request_write(c);
        }
}

void sv_ws_notify(sv_server *s) {
        if (s->ws && s->ws->n_clients)
                round_run(s->ws);
}


size_t sv_ws_clients(const sv_server *s) {
        return s->ws ? s->ws->n_clients : 0;
}

void sv_ws_tick(sv_server *s) {
        /* Events stored off the loop (a worker's state change) are found here at the latest. */
        if (s->ws)
                round_run(s->ws);
}

static bool query_int(struct lws *wsi, const char *name, int64_t *out, bool *present) {
        char buf[64];
        *present = false;
        if (lws_get_urlarg_by_name(wsi, name, buf, sizeof buf) == NULL)
                return true;
        *present = true;
        const char *v = buf + strlen(name);
        char *end;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || x < 0)
                return false;
        *out = x;
        return true;
}

sv_ws_client *sv_ws_client_new(sv_server *s, struct lws *wsi, ns_error *err) {
        sv_ws_hub *h = s->ws;
        char sid[SV_ID_LEN + 16] = "";
        bool has_sid = lws_get_urlarg_by_name(wsi, "session=", sid, sizeof sid) != NULL;
        int64_t after = 0, after_id = 0;
        bool has_after, has_after_id;
        if (!query_int(wsi, "after=", &after, &has_after) || !query_int(wsi, "after_id=", &after_id, &has_after_id)) {
                ns_err(err, EINVAL, "after and after_id must be non-negative integers");
                return NULL;
        }
        const char *sv = has_sid ? sid + strlen("session=") : NULL;
        if (has_sid && !sv_id_valid(sv, SV_ID_PREFIX_SESSION)) {
                ns_err(err, EINVAL, "no such session");
                return NULL;
        }
        if ((has_sid && has_after_id) || (!has_sid && has_after)) {
                ns_err(err, EINVAL, "subscribe with session=ID&after=SEQ, or after_id=N for every session");
                return NULL;
        }
        if (has_sid) {
                db_session row = { 0 };
                int r = db_session_get(s->db, sv, &row, err);
                db_session_clear(&row);
                if (r < 0)
                        return NULL;
        }
        sv_ws_client *c = calloc(1, sizeof *c);
        if (!c) {
                ns_err(err, ENOMEM, "out of memory");
                return NULL;
        }
        c->h = h;
        c->wsi = wsi;
        c->all = !has_sid;
        if (has_sid)
                memcpy(c->sid, sv, SV_ID_LEN + 1); /* checked by sv_id_valid: exactly SV_ID_LEN */
        c->last_seq = after;
        c->last_id = after_id;
        c->next = h->clients;
        if (h->clients)
                h->clients->prev = c;
        h->clients = c;
        h->n_clients++;
        char msg[128];
        snprintf(msg, sizeof msg, "{\"control\":\"subscribed\",\"session\":%s%s%s,\"after\":%" PRId64 "}",
                 c->all ? "" : "\"", c->all ? "null" : c->sid, c->all ? "" : "\"", c->all ? c->last_id : c->last_seq);
        set_control(c, msg);
        request_write(c);
        return c;
}

static void replay_clear(sv_ws_client *c) {
        for (size_t i = 0; i < c->n_replay; i++)
                wev_clear(&c->replay[i]);
        free(c->replay);
        c->replay = NULL;
        c->n_replay = c->i_replay = 0;
}

void sv_ws_client_free(sv_ws_client *c) {
        if (!c)
                return;
        sv_ws_hub *h = c->h;
        if (c->prev)
                c->prev->next = c->next;
        else if (h->clients == c)
                h->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        h->n_clients--;
        replay_clear(c);
        free(c->ctl);
        free(c);
}

/* The next replay batch from the database; false when there is none left. */
static bool replay_fill(sv_ws_client *c) {
        replay_clear(c);
        if (c->replay_exhausted)
                return false;
        db_event *v = NULL;
        size_t n = 0;
        ns_error err;
        /* Everything stored up to the hub's head is in the database for this query to find. */
        c->replay_head = c->h->head_id;
        int r = c->all ? db_events_after_id(c->h->srv->db, c->last_id, REPLAY_BATCH, &v, &n, &err)
                       : db_events_after_seq(c->h->srv->db, c->sid, c->last_seq, REPLAY_BATCH, &v, &n, &err);
        if (r < 0) {
                log_warn("events: replay: %s", err.msg);
                c->replay_exhausted = true;
                return false;
        }
        if (n < REPLAY_BATCH)
                c->replay_exhausted = true;
        c->replay = calloc(n ? n : 1, sizeof *c->replay);
        for (size_t i = 0; c->replay && i < n; i++)
                if (wev_from(&v[i], &c->replay[c->n_replay]) == 0)
                        c->n_replay++;
        db_events_free(v, n);
        return c->n_replay > 0;
}

static bool wants(const sv_ws_client *c, const struct wev *e) {
        return c->all ? e->id > c->last_id : (!strcmp(e->sid, c->sid) && e->seq > c->last_seq);
}

static int send_text(sv_ws_client *c, unsigned char *buf, size_t len) {
        c->sent_bytes += len;
        int w = lws_write(c->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
        return w < (int) len ? -1 : 0;
}

static int deliver(sv_ws_client *c, const struct wev *e) {
        if (send_text(c, e->buf, e->len) < 0)
                return -1;
        c->last_id = e->id;
        c->last_seq = e->seq;
        return 0;
}

/* One message, if any is due: 1 sent (more may follow), 0 nothing to send now, -1 close. */
static int write_one(sv_ws_client *c);

int sv_ws_client_writable(sv_ws_client *c) {
        /* Several messages per wake-up while the socket takes them (libwebsockets' pattern for a
         * fast reader): one syscall-bound round trip through the loop per message would cap a
         * subscriber far below what its connection carries. */
        size_t before = c->sent_bytes;
        for (int i = 0; i < 64 && c->sent_bytes - before < 48 * 1024; i++) {
                int r = write_one(c);
                if (r <= 0)
                        return r;
                /* Asking the socket (a poll per message) costs as much as the send itself: ask
                 * every 16 messages.  What it cannot take, lws keeps, and calls us again only when
                 * that has gone out, so a slow reader holds at most one round's worth. */
                if ((i & 15) == 15 && lws_send_pipe_choked(c->wsi))
                        break;
        }
        request_write(c);
        return 0;
}

static int write_one(sv_ws_client *c) {
        sv_ws_hub *h = c->h;
        if (c->closing) {
                lws_close_reason(c->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *) "lagged", 6);
                return -1;
        }
        if (c->ctl) {
                int r = send_text(c, c->ctl, c->ctl_len);
                free(c->ctl);
                c->ctl = NULL;
                if (r < 0)
                        return -1;
                if (c->lagged) {
                        c->closing = true;
                        request_write(c);
                        return 0;
                }
                return 1;
        }
        if (!c->live) {
                if (c->i_replay < c->n_replay || replay_fill(c)) {
                        if (deliver(c, &c->replay[c->i_replay++]) < 0)
                                return -1;
                        return 1;
                }
                /* Caught up with the database.  The window takes over if it reaches back to what the
                 * last query could see; if it has moved on since (events evicted), read more. */
                if (h->floor_id > c->replay_head) {
                        c->replay_exhausted = false;
                        return 1; /* nothing sent, but more to read: go round again */
                }
                /* Follow the window from its oldest event: what this client has is skipped by its
                 * cursor. */
                replay_clear(c);
                c->live = true;
                c->pos = h->start;
                set_control(c, "{\"control\":\"live\"}");
                return 1;
        }
        if (c->pos < h->start) {
                mark_lagged(c);
                return 0;
        }
        while (c->pos < h->end) {
                const struct wev *e = &h->ring[c->pos++ % WINDOW_EVENTS];
                if (!wants(c, e))
                        continue;
                if (deliver(c, e) < 0)
                        return -1;
                return 1;
        }
        return 0;
}
