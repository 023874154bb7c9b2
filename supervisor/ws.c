/* nightshift supervisor — WebSocket event subscriptions (see ws.h). */
#include "ws.h"

#include <inttypes.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/loop.h"
#include "db.h"
#include "http.h"
#include "ids.h"
#include "serve.h"

#define WINDOW_EVENTS 16384            /* the shared window of newest events ... */
#define WINDOW_BYTES (16u * 1024 * 1024) /* ... bounded in count and in bytes */
#define REPLAY_BATCH 256               /* events read from the database per replay query */
#define LAG_CLOSE_S 5                  /* a lagged client that cannot take the notice is closed */
#define ROUND_GAP_US 4000             /* live rounds (load, wake subscribers) at most this often */
#define BATCH_BYTES (64u * 1024)       /* frames written at once per wake-up of a client ... */
#define BATCH_MESSAGES 256             /* ... at most this many */

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
        unsigned char *batch;   /* LWS_PRE + BATCH_BYTES: the frames of one write (sv_ws_client_writable) */
        lws_sorted_usec_list_t round_sul; /* a round put off to keep ROUND_GAP_US (sv_ws_notify) */
        bool round_pending;
        struct lws_context *ctx; /* where round_sul is scheduled */
        uint64_t last_round_us; /* ns_now_us (monotonic) */
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
        enum lws_close_status close_code; /* closing: the code and reason the close frame gives */
        const char *close_reason;
        unsigned char *ctl;        /* a control message to send first (LWS_PRE headroom) */
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
        if (!h || !(h->ring = calloc(WINDOW_EVENTS, sizeof *h->ring)) || !(h->batch = malloc(LWS_PRE + BATCH_BYTES))) {
                if (h)
                        free(h->ring);
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
        free(h->batch);
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
        c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
        c->close_reason = "lagged";
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

static void round_now(sv_ws_hub *h) {
        if (h->round_pending) { /* this round is that one */
                lws_sul_schedule(h->ctx, 0, &h->round_sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
                h->round_pending = false;
        }
        h->last_round_us = ns_now_us();
        round_run(h);
}

static void on_round_timer(lws_sorted_usec_list_t *sul) {
        sv_ws_hub *h = lws_container_of(sul, sv_ws_hub, round_sul);
        h->round_pending = false;
        round_now(h);
}

void sv_ws_notify(sv_server *s) {
        sv_ws_hub *h = s->ws;
        if (!h || !h->n_clients || h->round_pending)
                return; /* (a pending round finds these events too) */
        /* A busy session stores an event per line of output, a thousand a second and more.  A
         * round per event woke every subscriber per event: a send(2) and a reader's wake-up per
         * event per subscriber.  Rounds at most every ROUND_GAP_US batch what came meanwhile
         * (one write per subscriber per round); a lone event still goes out at once. */
        uint64_t now = ns_now_us();
        if (now - h->last_round_us >= ROUND_GAP_US) {
                round_now(h);
                return;
        }
        h->round_pending = true;
        h->ctx = lws_get_context(h->clients->wsi);
        lws_sul_schedule(h->ctx, 0, &h->round_sul, on_round_timer,
                         (lws_usec_t) (h->last_round_us + ROUND_GAP_US - now));
}


size_t sv_ws_clients(const sv_server *s) {
        return s->ws ? s->ws->n_clients : 0;
}

void sv_ws_tick(sv_server *s) {
        /* Events stored off the loop (a worker's state change) are found here at the latest. */
        if (s->ws)
                round_now(s->ws);
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

void sv_ws_client_close(sv_ws_client *c, int code, const char *reason) {
        if (c->closing)
                return;
        c->closing = true;
        c->close_code = (enum lws_close_status) code;
        c->close_reason = reason;
        free(c->ctl);
        c->ctl = NULL;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE, LAG_CLOSE_S);
        request_write(c);
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

/* The frames of one wake-up, written with one lws_write.  Why by hand: lws_write(TEXT) makes one
 * frame and one send(2) per message; at a thousand events a second to hundreds of subscribers the
 * syscalls (and the readers' wake-ups, one per message) were the cost.  A server's frames are
 * unmasked and no extension is negotiated on this protocol, so a text frame is its header (RFC
 * 6455 §5.2) and the payload; lws_write(RAW) sends the bytes as they are, and keeps what the socket
 * does not take to send before the next WRITEABLE, as it does for a frame of its own. */
struct batch {
        unsigned char *buf; /* the hub's: LWS_PRE + BATCH_BYTES */
        size_t len;
        unsigned n;
};

static size_t frame_header(unsigned char *hdr, size_t len) {
        hdr[0] = 0x81; /* FIN, text */
        if (len < 126) {
                hdr[1] = (unsigned char) len;
                return 2;
        }
        if (len <= 0xffff) {
                hdr[1] = 126;
                hdr[2] = (unsigned char) (len >> 8);
                hdr[3] = (unsigned char) len;
                return 4;
        }
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
                hdr[2 + i] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
        return 10;
}

/* Whether a message of `len` bytes fits in what is left of the batch. */
static bool batch_fits(const struct batch *b, size_t len) {
        return b->n < BATCH_MESSAGES && b->len + 10 + len <= BATCH_BYTES;
}

static void batch_add(struct batch *b, const unsigned char *msg, size_t len) {
        unsigned char *at = b->buf + LWS_PRE + b->len;
        size_t hl = frame_header(at, len);
        memcpy(at + hl, msg, len);
        b->len += hl + len;
        b->n++;
}

/* Write what the batch holds; -1 when the connection failed. */
static int batch_write(sv_ws_client *c, struct batch *b) {
        if (!b->len)
                return 0;
        int w = lws_write(c->wsi, b->buf + LWS_PRE, b->len, LWS_WRITE_RAW);
        size_t len = b->len;
        b->len = 0;
        b->n = 0;
        return w < (int) len ? -1 : 0;
}

/* Send one message (buf has LWS_PRE bytes of headroom in front of it) into the batch; one larger
 * than a batch goes alone, by its own write, when the batch is empty.  Returns 0 when it is sent,
 * FULL when it must wait for the next wake-up (the batch goes first: one write per wake-up, since
 * lws calls WRITEABLE only when it has sent all it held), -1 when the connection failed. */
#define FULL 2
static int send_text(sv_ws_client *c, struct batch *b, unsigned char *buf, size_t len) {
        if (batch_fits(b, len)) {
                batch_add(b, buf + LWS_PRE, len);
                return 0;
        }
        if (b->len || b->n)
                return FULL;
        b->n = BATCH_MESSAGES; /* nothing more this wake-up */
        int w = lws_write(c->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
        return w < (int) len ? -1 : 0;
}

static int deliver(sv_ws_client *c, struct batch *b, const struct wev *e) {
        int r = send_text(c, b, e->buf, e->len);
        if (r != 0)
                return r;
        c->last_id = e->id;
        c->last_seq = e->seq;
        return 0;
}

/* One message, if any is due: 1 sent (more may follow), 0 nothing to send now, FULL the batch is
 * full (more is due), -1 close. */
static int write_one(sv_ws_client *c, struct batch *b);

int sv_ws_client_writable(sv_ws_client *c) {
        /* Several messages per wake-up, written at once (struct batch).  What the socket cannot
         * take, lws keeps and sends before it calls us again, so a slow reader holds at most one
         * batch beside its place in the window. */
        struct batch b = { .buf = c->h->batch };
        int r = 1;
        for (int i = 0; r == 1 && b.n < BATCH_MESSAGES && i < 2 * BATCH_MESSAGES; i++)
                r = write_one(c, &b);
        if (r < 0 || batch_write(c, &b) < 0)
                return -1;
        /* More is due (the batch filled), or the close follows what was just written. */
        if (r != 0 || c->closing)
                request_write(c);
        return 0;
}

static int write_one(sv_ws_client *c, struct batch *b) {
        sv_ws_hub *h = c->h;
        if (c->closing) {
                /* Whatever is batched goes out first (the lagged notice); the close on the next
                 * wake-up, which comes once lws has sent all it holds: closing while it still
                 * held some, lws would flush it and drop the connection without a close frame. */
                if (b->len)
                        return 0;
                lws_close_reason(c->wsi, c->close_code, (unsigned char *) c->close_reason, strlen(c->close_reason));
                return -1;
        }
        if (c->ctl) {
                int r = send_text(c, b, c->ctl, c->ctl_len);
                if (r == FULL)
                        return FULL;
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
                        int r = deliver(c, b, &c->replay[c->i_replay]);
                        if (r != 0)
                                return r;
                        c->i_replay++;
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
        for (; c->pos < h->end; c->pos++) {
                const struct wev *e = &h->ring[c->pos % WINDOW_EVENTS];
                if (!wants(c, e))
                        continue;
                int r = deliver(c, b, e);
                if (r != 0)
                        return r;
                c->pos++;
                return 1;
        }
        return 0;
}
