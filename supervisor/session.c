/* nightshift supervisor — the session runner (loop thread).
 *
 * A session moves through DESIGN.md's states; this file decides when, and hands every blocking
 * step to a worker (session_jobs.c):
 *
 *   queued ──provision job──▶ provisioning ──exec job──▶ running ──stream──▶ EXIT
 *      ──commit job──▶ idle (or completed with `once`, waiting on a question) ──next prompt──▶ running
 *   stop / failure / completion ──teardown job (destroy the sandbox)──▶ completed|failed|stopped
 *
 * Output of the agent process is read from its stdio stream here, turned into events by the
 * agent adapter and stored in batches together with the output offset they cover (db.h's mark),
 * so after a restart the stream is re-attached at exactly that offset: no event lost or doubled.
 * The events of every session are held back at most OUT_GAP_US and stored in one transaction
 * (outq below): a busy agent's output comes a line per frame, a thousand frames a second.
 *
 * Concurrency: `slots_used` counts sessions provisioning or in a turn; at most max_concurrent.
 * Follow-ups of sessions that already have a sandbox go first, then queued sessions, oldest
 * first (FIFO). */
#include <fcntl.h>
#include <stddef.h>
#include <sys/timerfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "identity.h"
#include "pr.h"
#include "modelproxy.h"
#include "redact.h"
#include "egress.h"
#include "session_int.h"
#include "sockdir.h"
#include "notify.h"
#include "vault.h"
#include "ws.h"

static void job_done(sv_job *job);

sv_sjob *sv_sjob_new(sv_server *s, sv_job_kind kind, sv_live *l) {
        sv_sjob *j = calloc(1, sizeof *j);
        if (!j)
                return NULL;
        j->base.run = sv_sjob_run;
        j->base.done = job_done;
        j->kind = kind;
        j->srv = s;
        j->live = l;
        j->stream_fd = -1;
        j->proc = -1;
        if (l) {
                snprintf(j->sid, sizeof j->sid, "%s", l->id);
                snprintf(j->sandbox, sizeof j->sandbox, "%s", l->sandbox);
        }
        return j;
}

/* Wiped before release: an exec's environment holds resolved secrets. */
static void strv_free(char **v) {
        for (char **p = v; p && *p; p++) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
        free(v);
}

void sv_sjob_free(sv_sjob *j) {
        if (!j)
                return;
        sv_new_session_clear(j->req);
        free(j->req);
        free(j->url);
        free(j->name);
        free(j->mirror_path);
        free(j->branch);
        free(j->base_sha);
        free(j->last_commit);
        free(j->limits_json);
        free(j->message);
        strv_free(j->argv);
        strv_free(j->env);
        free(j->stdin_data);
        cJSON_Delete(j->body);
        free(j->setup_output);
        free(j->workspace);
        free(j->gitdir);
        free(j->git_name);
        free(j->git_email);
        free(j->commit_event);
        if (j->stream_fd >= 0)
                close(j->stream_fd);
        free(j);
}

void sv_new_session_clear(sv_new_session *n) {
        if (!n)
                return;
        free(n->repo);
        free(n->base);
        free(n->agent);
        free(n->prompt);
        free(n->model);
        free(n->title);
        free(n->env_json);
        free(n->egress_json);
        *n = (sv_new_session){ 0 };
}

/* ---- live records -------------------------------------------------------------------------- */

static sv_live *live_find(sv_server *s, const char *sid) {
        for (sv_live *l = s->live; l; l = l->next)
                if (!strcmp(l->id, sid))
                        return l;
        return NULL;
}

const char *sv_session_live_sandbox(sv_server *s, const char *sid) {
        sv_live *l = live_find(s, sid);
        if (!l || !l->sandbox[0] || l->phase == PH_TEARDOWN || l->phase == PH_PROVISION || sv_state_is_end(l->state))
                return NULL;
        return l->sandbox;
}

size_t sv_session_live_list(sv_server *s, char (*sids)[SV_ID_LEN + 1], char (*sandboxes)[NS_ID_MAX + 1],
                            char (*repos)[SV_ID_LEN + 1], size_t cap) {
        size_t n = 0;
        for (sv_live *l = s->live; l && n < cap; l = l->next)
                if (sv_session_live_sandbox(s, l->id)) {
                        snprintf(sids[n], SV_ID_LEN + 1, "%s", l->id);
                        snprintf(sandboxes[n], NS_ID_MAX + 1, "%s", l->sandbox);
                        snprintf(repos[n], SV_ID_LEN + 1, "%s", l->repo_id);
                        n++;
                }
        return n;
}

#define OUT_GAP_US 4000
#define OUT_HOLD_EVENTS 4096
#define OUT_HOLD_BYTES (256u * 1024)

struct sv_outq {
        sv_server *srv;
        int tfd;           /* timerfd: the deferred store */
        ns_watch *watch;
        bool armed;
        bool pending;      /* a session has something ready to store */
        uint64_t last_us;  /* the last store (ns_now_us) */
        size_t events, bytes; /* made since the last store */
};

static void batch_clear(sv_live *l) {
        for (size_t i = 0; i < 2 * l->n_batch; i++)
                free(l->batch_owned[i]);
        l->n_batch = 0;
        l->n_ready = 0;
}

/* Drop the first n_ready events (stored, or failed to be); the rest move to the front. */
static void batch_drop_ready(sv_live *l) {
        size_t k = l->n_ready;
        for (size_t i = 0; i < 2 * k; i++)
                free(l->batch_owned[i]);
        if (l->n_batch > k) { /* (memmove must not see the NULL of a batch never grown) */
                memmove(l->batch, l->batch + k, (l->n_batch - k) * sizeof *l->batch);
                memmove(l->batch_owned, l->batch_owned + 2 * k, 2 * (l->n_batch - k) * sizeof *l->batch_owned);
        }
        l->n_batch -= k;
        l->n_ready = 0;
}

static void stream_close(sv_live *l) {
        ns_loop_remove(l->srv->loop, l->watch);
        l->watch = NULL;
        if (l->stream_fd >= 0)
                close(l->stream_fd);
        l->stream_fd = -1;
        agent_parser_free(l->parser);
        l->parser = NULL;
}

static void live_free(sv_live *l) {
        sv_egress_proxy_free(l->egress); /* reports its open connections: before anything goes */
        l->egress = NULL;
        stream_close(l);
        batch_clear(l);
        free(l->batch);
        free(l->batch_owned);
        free(l->mirror_path);
        free(l->branch);
        free(l->base_sha);
        free(l->last_commit);
        free(l->agent_ref);
        free(l->model);
        free(l->env_json);
        free(l->limits_json);
        free(l->prompt_text);
        free(l->end_reason);
        free(l->git_name);
        free(l->git_email);
        free(l);
}

static void live_remove(sv_server *s, sv_live *l) {
        for (sv_live **p = &s->live; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        break;
                }
        if (l->holds_slot)
                s->slots_used--;
        live_free(l);
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void emit_now(sv_live *l, const char *type, cJSON *data);

static void emit_for(sv_server *s, const char *session_id, const char *type, cJSON *data);

/* An `egress` event's data: one connection through a session's egress proxy, allowed or denied. */
static cJSON *egress_json(const sv_egress_record *rec) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "host", rec->host);
        cJSON_AddNumberToObject(o, "port", rec->port);
        cJSON_AddNumberToObject(o, "bytes_up", (double) rec->bytes_up);
        cJSON_AddNumberToObject(o, "bytes_down", (double) rec->bytes_down);
        cJSON_AddStringToObject(o, "verdict", rec->allowed ? "allow" : "deny");
        if (rec->reason)
                cJSON_AddStringToObject(o, "reason", rec->reason);
        return o;
}

static void egress_report(void *data, const sv_egress_record *rec) {
        sv_live *l = data;
        emit_now(l, "egress", egress_json(rec));
}

/* A tunnel the proxy process relayed, cut when its session's proxy went (the live record may be
 * gone by now): reported once the process has said what it moved. */
static void egress_report_late(void *data, const char *session_id, const sv_egress_record *rec) {
        emit_for(data, session_id, "egress", egress_json(rec));
}

/* network "proxy": the session's own proxy listener on the loop, its allow-list from the session
 * (or the configured default).  It listens on a Unix socket in the data directory's sockets/,
 * recorded in limits_json ("proxy_path") for the sandbox's connector, so that a restarted
 * supervisor listens there again: no other local user can use it or take its place meanwhile.
 * Sessions made before that (or whose path would not fit a socket address) listen on 127.0.0.1,
 * on the port recorded as "proxy_port". */
static int egress_start(sv_live *l, ns_error *err) {
        sv_server *s = l->srv;
        cJSON *o = l->limits_json ? cJSON_Parse(l->limits_json) : NULL;
        const cJSON *net = cJSON_GetObjectItemCaseSensitive(o, "net");
        if (!cJSON_IsString(net) || strcmp(net->valuestring, "proxy")) {
                cJSON_Delete(o);
                return 0;
        }
        const char *allow[SV_EGRESS_MAX_ENTRIES];
        size_t n = 0;
        _cleanup_free_ char *dflt = s->cfg.egress_allow ? strdup(s->cfg.egress_allow) : NULL;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "egress"), *it;
        if (cJSON_IsArray(list)) {
                cJSON_ArrayForEach(it, list) if (cJSON_IsString(it) && n < SV_EGRESS_MAX_ENTRIES) allow[n++] = it->valuestring;
        } else if (dflt) {
                char *save = NULL;
                for (char *t = strtok_r(dflt, ",", &save); t && n < SV_EGRESS_MAX_ENTRIES; t = strtok_r(NULL, ",", &save))
                        allow[n++] = t;
        }
        int r = 0;
        if (s->cfg.egress_hosts && !s->egress_hosts)
                r = sv_egress_hosts_load(s->cfg.egress_hosts, &s->egress_hosts, err);
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(o, "proxy_port");
        l->egress_port = cJSON_IsNumber(pp) ? (int) pp->valuedouble : 0;
        char path[SV_SOCKET_PATH_MAX + 2];
        int pl = snprintf(path, sizeof path, "%s/sockets/egress-%s.sock", s->cfg.data_dir, l->id);
        bool on_unix = !cJSON_IsNumber(pp) && pl > 0 && pl <= SV_SOCKET_PATH_MAX;
        if (r == 0)
                r = sv_egress_proxy_new(s->loop, allow, n, s->egress_hosts, egress_report, l, on_unix ? path : NULL,
                                        &l->egress, &l->egress_port, err);
        char *json = NULL;
        if (r == 0) { /* established tunnels are relayed by the proxy process */
                sv_egress_proxy_set_relay(l->egress, &s->proxyproc);
                r = sv_egress_proxy_set_late_report(l->egress, egress_report_late, s, l->id);
        }
        if (r == 0) {
                cJSON_DeleteItemFromObjectCaseSensitive(o, "proxy_port");
                cJSON_DeleteItemFromObjectCaseSensitive(o, "proxy_path");
                if (on_unix)
                        cJSON_AddStringToObject(o, "proxy_path", path);
                else
                        cJSON_AddNumberToObject(o, "proxy_port", l->egress_port);
                if ((json = cJSON_PrintUnformatted(o))) {
                        free(l->limits_json);
                        l->limits_json = json;
                }
        }
        cJSON_Delete(o);
        return r;
}

/* A live record from the session row (and its repository's mirror). */
static sv_live *live_new(sv_server *s, const db_session *row, ns_error *err) {
        db_repo repo = { 0 };
        if (db_repo_get(s->db, row->repo_id, &repo, err) < 0)
                return NULL;
        sv_live *l = calloc(1, sizeof *l);
        if (!l) {
                db_repo_clear(&repo);
                ns_err(err, ENOMEM, "out of memory");
                return NULL;
        }
        l->srv = s;
        l->stream_fd = -1;
        l->proc = -1;
        snprintf(l->id, sizeof l->id, "%s", row->id);
        snprintf(l->repo_id, sizeof l->repo_id, "%s", row->repo_id);
        snprintf(l->sandbox, sizeof l->sandbox, "%s", row->sandbox_id ? row->sandbox_id : "");
        l->mirror_path = TAKE_PTR(repo.mirror_path);
        db_repo_clear(&repo);
        l->branch = dup_or_null(row->branch);
        l->base_sha = dup_or_null(row->base_sha);
        l->last_commit = dup_or_null(row->last_commit_sha);
        l->agent_ref = dup_or_null(row->agent_session_ref);
        l->model = dup_or_null(row->model);
        l->env_json = dup_or_null(row->env_json);
        l->limits_json = dup_or_null(row->limits_json);
        l->ad = agent_find(row->agent);
        l->once = row->once;
        l->state = row->state;
        l->started_ms = ns_now_ms();
        if (!l->branch || !l->base_sha || !l->ad) {
                live_free(l);
                ns_err(err, EINVAL, "session %s is incomplete (branch, base or agent)", row->id);
                return NULL;
        }
        if (egress_start(l, err) < 0) {
                live_free(l);
                return NULL;
        }
        l->next = s->live;
        s->live = l;
        return l;
}

/* ---- events -------------------------------------------------------------------------------- */

/* Event data as it may be stored and broadcast: a malloc'd copy of `json` with every vault
 * secret's forms replaced (redact.h).  Every event passes here (ev_emit, emit_now) before
 * db_events_append_batch: events are what the API, WebSocket and transcript serve.  The adapter
 * hands over whole events (a line, a message), so a value is caught when an event holds it
 * whole; one split across two output chunks that became two events is not (redact.h). */
static char *redacted_json(sv_server *s, const char *json) {
        char *out = NULL;
        int r = s->redact ? sv_redact_json(s->redact, json, &out) : 0;
        if (r == -EINVAL && sv_redact_text(s->redact, json, strlen(json), &out, NULL) > 0)
                return out; /* not JSON (the store refuses it anyway): redacted as text */
        if (r > 0)
                return out;
        return r == -ENOMEM ? NULL : strdup(json);
}

/* A free-text field stored with the session (state reasons): redacted, malloc'd. */
static char *redacted_text(sv_server *s, const char *text) {
        char *out = NULL;
        if (text && s->redact && sv_redact_text(s->redact, text, strlen(text), &out, NULL) > 0)
                return out;
        return text ? strdup(text) : NULL;
}

static int ev_emit(void *ctx, const char *type, const char *json) {
        sv_live *l = ctx;
        if (l->n_batch == l->cap_batch) {
                size_t cap = l->cap_batch ? 2 * l->cap_batch : 16;
                db_event_in *nb = realloc(l->batch, cap * sizeof *nb);
                if (!nb)
                        return -ENOMEM;
                l->batch = nb;
                char **no = realloc(l->batch_owned, 2 * cap * sizeof *no);
                if (!no)
                        return -ENOMEM;
                l->batch_owned = no;
                l->cap_batch = cap;
        }
        char *t = strdup(type), *d = redacted_json(l->srv, json ? json : "{}");
        if (!t || !d) {
                free(t);
                free(d);
                return -ENOMEM;
        }
        l->batch_owned[2 * l->n_batch] = t;
        l->batch_owned[2 * l->n_batch + 1] = d;
        l->batch[l->n_batch++] = (db_event_in){ .session_id = l->id, .type = t, .data = d };
        if (l->srv->outq)
                l->srv->outq->events++;
        return 0;
}

static void ev_agent_ref(void *ctx, const char *ref) {
        sv_live *l = ctx;
        if (ref && strlen(ref) <= 256 && (!l->agent_ref || strcmp(l->agent_ref, ref))) {
                free(l->agent_ref);
                l->agent_ref = strdup(ref);
                ns_error err;
                if (db_session_set_agent_ref(l->srv->db, l->id, ref, &err) < 0)
                        log_warn("session %s: saving the agent's session id: %s", l->id, err.msg);
        }
}

static const agent_emitter *emitter_for(sv_live *l) {
        static __thread agent_emitter em; /* filled per call: ctx differs per session */
        em = (agent_emitter){ .event = ev_emit, .agent_ref = ev_agent_ref, .ctx = l };
        return &em;
}

/* ---- output held back for one transaction ------------------------------------------------- */

/* A busy agent's output comes a line per frame; a transaction per frame (a commit of ~3 log
 * pages, a notify and an ACK each) was most of the supervisor's CPU at a thousand lines a second
 * per session.  What every session made is held back and stored together, at most every
 * OUT_GAP_US (the WebSocket hub sends at most every 4 ms too, ws.c: a subscriber sees no later),
 * at once when nothing was stored for that long (a lone line is not delayed), and at once beyond
 * OUT_HOLD_* (bounded memory, and init's 1 MiB buffer is acknowledged well before it fills).
 * Held events are in memory only: a restart replays their output from the stored mark. */
static bool live_held(const sv_live *l) {
        return l->n_ready > 0 || l->ready_off != l->stored_off;
}

/* Everything made so far is complete: the output below `consumed` is at a parser boundary. */
static void mark_ready(sv_live *l) {
        l->n_ready = l->n_batch;
        l->ready_off = l->consumed;
        if (l->srv->outq && live_held(l))
                l->srv->outq->pending = true;
}

/* Store what every session holds ready, in one transaction; acknowledge each stream what was
 * stored of it; wake the subscribers once. */
static void outq_store(sv_server *s) {
        struct sv_outq *q = s->outq;
        size_t n = 0;
        for (sv_live *l = s->live; l; l = l->next)
                n += live_held(l);
        if (q) {
                q->pending = false;
                q->events = q->bytes = 0;
                if (n)
                        q->last_us = ns_now_us();
        }
        if (!n)
                return;
        _cleanup_free_ db_event_group *g = calloc(n, sizeof *g);
        _cleanup_free_ db_output_mark *m = calloc(n, sizeof *m);
        _cleanup_free_ char(*proc)[24] = calloc(n, sizeof *proc);
        _cleanup_free_ sv_live **who = calloc(n, sizeof *who);
        ns_error err;
        if (!g || !m || !proc || !who) {
                log_warn("events: out of memory storing agent output");
                return;
        }
        size_t k = 0;
        for (sv_live *l = s->live; l && k < n; l = l->next) {
                if (!live_held(l))
                        continue;
                snprintf(proc[k], sizeof proc[k], "%lld", (long long) l->proc);
                m[k] = (db_output_mark){ .session_id = l->id, .proc_id = proc[k], .output_offset = (int64_t) l->ready_off };
                g[k] = (db_event_group){ .ev = l->batch, .n = l->n_ready, .mark = &m[k] };
                who[k++] = l;
        }
        (void) db_events_append_groups(s->db, g, k, &err);
        bool any = false;
        for (size_t i = 0; i < k; i++) {
                sv_live *l = who[i];
                if (g[i].rc < 0) {
                        /* Dropped, as a failed write always was; the mark is tried again next time. */
                        log_warn("session %s: storing events: %s", l->id, g[i].err.msg);
                        batch_drop_ready(l);
                        continue;
                }
                any |= g[i].n > 0;
                batch_drop_ready(l);
                if (l->stored_off != l->ready_off && l->stream_fd >= 0)
                        ns_stream_send(l->stream_fd, NS_FRAME_ACK, 0, l->ready_off, 0, NULL, 0, &err);
                l->stored_off = l->ready_off;
        }
        if (any)
                sv_ws_notify(s);
}

/* Something became ready: store now, or arm the timer for the end of the gap. */
static void outq_due(sv_server *s) {
        struct sv_outq *q = s->outq;
        if (!q)
                return outq_store(s);
        uint64_t now = ns_now_us();
        if (now - q->last_us >= OUT_GAP_US || q->events >= OUT_HOLD_EVENTS || q->bytes >= OUT_HOLD_BYTES)
                return outq_store(s);
        if (q->armed)
                return;
        uint64_t wait = q->last_us + OUT_GAP_US - now;
        struct itimerspec its = { .it_value = { .tv_sec = (time_t) (wait / 1000000), .tv_nsec = (long) (wait % 1000000) * 1000 } };
        if (timerfd_settime(q->tfd, 0, &its, NULL) < 0)
                return outq_store(s);
        q->armed = true;
}

static void on_outq_timer(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) events;
        struct sv_outq *q = data;
        uint64_t ticks;
        if (read(fd, &ticks, sizeof ticks) < 0 && errno == EAGAIN)
                return;
        q->armed = false;
        if (q->pending)
                outq_store(q->srv);
}

/* db.h's event barrier: any other event of the loop's connection comes after what is held. */
static void outq_barrier(void *ctx) {
        sv_server *s = ctx;
        if (s->outq && s->outq->pending)
                outq_store(s);
}

static int outq_new(sv_server *s, ns_error *err) {
        struct sv_outq *q = calloc(1, sizeof *q);
        if (!q)
                return ns_err(err, ENOMEM, "out of memory");
        q->srv = s;
        q->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (q->tfd < 0) {
                free(q);
                return ns_err_sys(err, errno, "timerfd_create");
        }
        if (!(q->watch = ns_loop_add(s->loop, q->tfd, EPOLLIN, on_outq_timer, q, err))) {
                close(q->tfd);
                free(q);
                return -err->code;
        }
        s->outq = q;
        db_set_event_barrier(s->db, outq_barrier, s);
        return 0;
}

static void outq_free(sv_server *s) {
        struct sv_outq *q = s->outq;
        if (!q)
                return;
        db_set_event_barrier(s->db, NULL, NULL);
        ns_loop_remove(s->loop, q->watch);
        close(q->tfd);
        free(q);
        s->outq = NULL;
}

/* One event now (runner-made: errors, setup output, commits). */
static void emit_for(sv_server *s, const char *session_id, const char *type, cJSON *data) {
        _cleanup_free_ char *raw = data ? cJSON_PrintUnformatted(data) : NULL;
        cJSON_Delete(data);
        _cleanup_free_ char *json = raw ? redacted_json(s, raw) : NULL;
        ns_error err;
        if (db_event_append(s->db, session_id, type, json ? json : "{}", NULL, NULL, &err) < 0)
                log_warn("session %s: event %s: %s", session_id, type, err.msg);
        else
                sv_ws_notify(s);
}

static void emit_now(sv_live *l, const char *type, cJSON *data) {
        emit_for(l->srv, l->id, type, data);
}

static void emit_error(sv_live *l, const char *message) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "message", message);
        emit_now(l, "error", o);
}

/* ---- state --------------------------------------------------------------------------------- */

static int set_state(sv_live *l, sv_state to, const char *why) {
        ns_error err;
        _cleanup_free_ char *reason = redacted_text(l->srv, why); /* may quote setup output */
        int r = db_session_set_state(l->srv->db, l->id, to, reason, -1, NULL, NULL, &err);
        if (r < 0) {
                log_warn("session %s: %s → %s: %s", l->id, sv_state_name(l->state), sv_state_name(to), err.msg);
                return r;
        }
        bool resumed = l->state == SV_PAUSED;
        l->state = to;
        if (to == SV_IDLE || to == SV_WAITING)
                l->idle_since_ms = ns_now_ms();
        sv_ws_notify(l->srv);
        if (!resumed) /* completed, failed, waiting: the operator's webhooks (once, not again on a resume) */
                sv_notify_session(l->srv, l->id, to);
        if (to == SV_COMPLETED)
                sv_pr_on_complete(l->srv, l->id); /* the repository's on_complete policy (pr.c) */
        return 0;
}

static void release_slot(sv_live *l) {
        if (l->holds_slot) {
                l->holds_slot = false;
                l->srv->slots_used--;
        }
}

static void kick(sv_server *s);

static bool submit(sv_server *s, sv_sjob *j) {
        if (!j)
                return false;
        sv_workq_submit(s->wq, &j->base);
        return true;
}

/* End the session: destroy its sandbox, then enter `end` (completed, failed, stopped). */
static void begin_teardown(sv_live *l, sv_state end, const char *reason) {
        if (l->phase == PH_TEARDOWN)
                return;
        if (live_held(l))
                outq_store(l->srv); /* while the stream is there to be acknowledged */
        stream_close(l);
        l->end_state = end;
        free(l->end_reason);
        l->end_reason = dup_or_null(reason);
        l->phase = PH_TEARDOWN;
        l->kill_deadline_ms = 0;
        if (!submit(l->srv, sv_sjob_new(l->srv, JOB_TEARDOWN, l)))
                log_error("session %s: out of memory for teardown", l->id);
}

static void fail(sv_live *l, const char *why) {
        emit_error(l, why);
        begin_teardown(l, SV_FAILED, why);
}

/* ---- turns --------------------------------------------------------------------------------- */

static char **env_from_json(const char *json, char **extra) {
        size_t n = 0;
        for (char **p = extra; p && *p; p++)
                n++;
        cJSON *o = json ? cJSON_Parse(json) : NULL;
        size_t m = (size_t) (o ? cJSON_GetArraySize(o) : 0);
        char **v = calloc(n + m + 1, sizeof *v);
        size_t k = 0;
        for (size_t i = 0; v && i < n; i++)
                v[k++] = strdup(extra[i]);
        const cJSON *it;
        cJSON_ArrayForEach(it, o) {
                if (v && cJSON_IsString(it) && asprintf(&v[k], "%s=%s", it->string, it->valuestring) >= 0)
                        k++;
        }
        cJSON_Delete(o);
        return v;
}

/* The session's identity as GIT_AUTHOR_* / GIT_COMMITTER_* (4 malloc'd strings into v), from
 * what provisioning wrote into its git config, or the server's templates after a restart. */
static int identity_env(sv_live *l, char *v[4], ns_error *err) {
        _cleanup_free_ char *name = NULL, *email = NULL;
        int r = 0;
        if (l->git_name && l->git_email) {
                name = strdup(l->git_name);
                email = strdup(l->git_email);
        } else if ((r = sv_identity_expand(l->srv->cfg.git_name_template, l->id, l->ad->name, &name, err)) < 0 ||
                   (r = sv_identity_expand(l->srv->cfg.git_email_template, l->id, l->ad->name, &email, err)) < 0) {
                return r;
        }
        if (!name || !email || asprintf(&v[0], "GIT_AUTHOR_NAME=%s", name) < 0 ||
            asprintf(&v[1], "GIT_AUTHOR_EMAIL=%s", email) < 0 || asprintf(&v[2], "GIT_COMMITTER_NAME=%s", name) < 0 ||
            asprintf(&v[3], "GIT_COMMITTER_EMAIL=%s", email) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

/* The model-API proxy's env for this session (modelproxy.h): for each provider whose key the
 * vault holds (for the session's repository), its base URL through the connector and the
 * session's placeholder key, appended to v (n entries so far, room for 4 more).  The session's
 * own env entries of those names are dropped from *env_json: the proxy wins, so a real key set
 * by hand never reaches the agent either. */
static int proxy_env(sv_live *l, char **v, size_t *n, char **env_json, ns_error *err) {
        sv_server *s = l->srv;
        if (!s->proxy || !s->cfg.model_proxy_port)
                return 0;
        static const struct {
                const char *base_var, *key_var, *path;
                size_t key_off;
        } prov[] = {
                { "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "/anthropic", offsetof(sv_config, model_key_anthropic) },
                { "OPENAI_BASE_URL", "OPENAI_API_KEY", "/openai/v1", offsetof(sv_config, model_key_openai) },
        };
        cJSON *o = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(prov); i++) {
                const char *key_name = *(char *const *) ((const char *) &s->cfg + prov[i].key_off);
                sv_secret sec = { 0 };
                int r = sv_vault_get(s->vault, s->db, l->repo_id, key_name, &sec, err);
                sv_secret_clear(&sec);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                char tok[SV_PROXY_TOKEN_MAX];
                sv_modelproxy_token(s->proxy, l->id, tok);
                if (asprintf(&v[(*n)++], "%s=http://127.0.0.1:%d%s", prov[i].base_var, s->cfg.model_proxy_port,
                             prov[i].path) < 0 ||
                    asprintf(&v[(*n)++], "%s=%s", prov[i].key_var, tok) < 0)
                        return ns_err(err, ENOMEM, "out of memory");
                if (!o && *env_json)
                        o = cJSON_Parse(*env_json);
                cJSON_DeleteItemFromObjectCaseSensitive(o, prov[i].base_var);
                cJSON_DeleteItemFromObjectCaseSensitive(o, prov[i].key_var);
        }
        if (o) {
                char *j = cJSON_PrintUnformatted(o);
                cJSON_Delete(o);
                if (!j)
                        return ns_err(err, ENOMEM, "out of memory");
                *env_json = j;
        }
        return 0;
}

/* Replace each ${secret:NAME} in the values of env (NAME=VALUE strings, in place) by the vault's
 * value for the session's repository.  Only here, as the exec request is made: the stored env
 * keeps the reference, never the value. */
static int resolve_secret_refs(sv_live *l, char **env, ns_error *err) {
        static const char open_tag[] = "${secret:";
        for (char **p = env; p && *p; p++) {
                if (!strstr(*p, open_tag))
                        continue;
                if (!l->srv->vault)
                        return ns_err(err, ENOENT, "the environment references a secret but the vault is not open");
                char *out = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&out, &len);
                if (!f)
                        return ns_err(err, ENOMEM, "out of memory");
                int r = 0;
                const char *s = *p;
                for (const char *at; r == 0 && (at = strstr(s, open_tag));) {
                        fwrite(s, 1, (size_t) (at - s), f);
                        const char *name = at + sizeof open_tag - 1, *close = strchr(name, '}');
                        char nm[SV_SECRET_NAME_MAX + 1];
                        size_t nl = close ? (size_t) (close - name) : 0;
                        if (!close || nl > SV_SECRET_NAME_MAX) {
                                r = ns_err(err, EINVAL, "environment: an unterminated or over-long ${secret:...}");
                                break;
                        }
                        memcpy(nm, name, nl);
                        nm[nl] = '\0';
                        sv_secret sec = { 0 };
                        if (!sv_secret_name_valid(nm))
                                r = ns_err(err, EINVAL, "environment: '%s' is not a secret name", nm);
                        else if ((r = sv_vault_get(l->srv->vault, l->srv->db, l->repo_id, nm, &sec, err)) == 0)
                                fwrite(sec.value, 1, sec.len, f);
                        sv_secret_clear(&sec);
                        s = close + 1;
                }
                if (r == 0)
                        fputs(s, f);
                if (fclose(f) != 0 && r == 0)
                        r = ns_err(err, ENOMEM, "out of memory");
                if (r < 0) {
                        explicit_bzero(out, len);
                        free(out);
                        return r;
                }
                explicit_bzero(*p, strlen(*p));
                free(*p);
                *p = out;
        }
        return 0;
}

/* network "proxy": every process of the session's finds the proxy through the usual variables. */
static char **env_add_proxy(char **env) {
        static const char *const add[] = { "HTTP_PROXY=http://127.0.0.1:3128", "HTTPS_PROXY=http://127.0.0.1:3128",
                                           "http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
                                           "NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1" };
        size_t n = 0;
        while (env && env[n])
                n++;
        char **v = env ? realloc(env, (n + ARRAY_SIZE(add) + 1) * sizeof *v) : NULL;
        if (!v)
                return env;
        for (size_t i = 0; i < ARRAY_SIZE(add); i++)
                if ((v[n] = strdup(add[i])))
                        n++;
        v[n] = NULL;
        return v;
}

static void start_turn(sv_live *l) {
        sv_server *s = l->srv;
        ns_error err;
        db_prompt p = { 0 };
        int r = db_prompt_next(s->db, l->id, true, &p, &err);
        if (r < 0) {
                if (r != -ENOENT)
                        log_warn("session %s: next prompt: %s", l->id, err.msg);
                release_slot(l);
                return;
        }
        l->prompt_id = p.id;
        free(l->prompt_text);
        l->prompt_text = TAKE_PTR(p.text);
        db_prompt_clear(&p);
        agent_turn_spec spec = { .prompt = l->prompt_text, .resume_ref = l->agent_ref, .model = l->model,
                                 .workspace = "/workspace", .agents_dir = SV_AGENTS_MOUNT };
        agent_cmd cmd = { 0 };
        if ((r = l->ad->build_turn(&spec, &cmd, &err)) < 0) {
                db_prompt_mark(s->db, l->prompt_id, DB_PROMPT_CANCELLED, NULL);
                release_slot(l);
                return fail(l, err.msg);
        }
        sv_sjob *j = sv_sjob_new(s, JOB_EXEC, l);
        if (!j) {
                agent_cmd_clear(&cmd);
                return fail(l, "out of memory");
        }
        j->argv = TAKE_PTR(cmd.argv);
        /* The turn's env: the adapter's, the session identity's, then the session's own. */
        char *extra[72] = { 0 };
        size_t ne = 0;
        for (char **e = cmd.env; e && *e && ne < 59; e++)
                extra[ne++] = *e;
        char *ident[8] = { 0 };
        size_t ni = 0;
        char *session_env = l->env_json;
        r = identity_env(l, ident, &err);
        ni = r == 0 ? 4 : 0;
        if (r == 0)
                r = proxy_env(l, ident, &ni, &session_env, &err);
        for (size_t i = 0; i < ni && r == 0; i++)
                extra[ne++] = ident[i];
        j->env = r == 0 ? env_from_json(session_env, extra) : NULL;
        if (session_env != l->env_json)
                free(session_env);
        for (size_t i = 0; i < 8; i++)
                free(ident[i]);
        if (!j->env && r == 0)
                ns_err(&err, ENOMEM, "out of memory");
        if (!j->env || resolve_secret_refs(l, j->env, &err) < 0) {
                agent_cmd_clear(&cmd);
                sv_sjob_free(j);
                db_prompt_mark(s->db, l->prompt_id, DB_PROMPT_CANCELLED, NULL);
                release_slot(l);
                return fail(l, err.msg);
        }
        if (l->egress)
                j->env = env_add_proxy(j->env);
        j->stdin_data = TAKE_PTR(cmd.stdin_data);
        j->stdin_len = cmd.stdin_len;
        agent_cmd_clear(&cmd);
        if (l->state != SV_RUNNING && set_state(l, SV_RUNNING, "turn started") < 0) {
                sv_sjob_free(j);
                return fail(l, "cannot enter running");
        }
        l->phase = PH_EXEC;
        l->turn_failed = l->turn_question = l->interrupted = false;
        l->agent_pid = 0;
        submit(s, j);
}

static void on_stream(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);

static int stream_open(sv_live *l, int fd, int64_t proc, uint64_t from, ns_error *err) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return ns_err_sys(err, errno, "fcntl");
        int r = agent_parser_new(l->ad, &l->parser, err);
        if (r < 0)
                return r;
        batch_clear(l);
        l->stream_fd = fd;
        l->proc = proc;
        l->consumed = l->ready_off = l->stored_off = from;
        if (!(l->watch = ns_loop_add(l->srv->loop, fd, EPOLLIN, on_stream, l, err))) {
                l->stream_fd = -1;
                agent_parser_free(l->parser);
                l->parser = NULL;
                return -err->code;
        }
        l->phase = PH_STREAM;
        return 0;
}

static void start_commit(sv_live *l) {
        sv_server *s = l->srv;
        sv_sjob *j = sv_sjob_new(s, JOB_COMMIT, l);
        if (!j)
                return fail(l, "out of memory");
        char *ident[6] = { 0 };
        ns_error ierr;
        if (identity_env(l, ident, &ierr) == 0 && (!l->interrupted || (ident[4] = strdup("NS_KILL_LEFTOVERS=1"))))
                j->env = env_from_json(NULL, ident);
        for (int i = 0; i < 5; i++)
                free(ident[i]);
        j->mirror_path = dup_or_null(l->mirror_path);
        j->branch = dup_or_null(l->branch);
        j->base_sha = dup_or_null(l->base_sha);
        j->message = dup_or_null(l->prompt_text ? l->prompt_text : "nightshift turn");
        if (!j->env || !j->mirror_path || !j->branch || !j->base_sha || !j->message) {
                sv_sjob_free(j);
                return fail(l, "out of memory");
        }
        l->phase = PH_COMMIT;
        submit(s, j);
}

/* The agent process exited: close its parser's books and go commit. */
static void turn_exited(sv_live *l, const struct ns_frame_exit *ex) {
        ns_error err;
        agent_outcome out = AGENT_TURN_OK;
        int r = agent_parser_finish(l->parser, ex->code, ex->signal, emitter_for(l), &out, &err);
        if (r < 0)
                out = AGENT_TURN_FAILED;
        if (ex->flags & NS_EXIT_OOM)
                ev_emit(l, "error", "{\"message\":\"the agent was killed: out of memory\"}");
        else if (ex->flags & NS_EXIT_TIMEOUT)
                ev_emit(l, "error", "{\"message\":\"the agent's turn timed out\"}");
        /* An interrupted turn ends however the agent takes the signal; it is not a failure. */
        l->turn_failed = out == AGENT_TURN_FAILED && !l->interrupted;
        l->turn_question = out == AGENT_TURN_QUESTION;
        mark_ready(l);
        outq_store(l->srv); /* now: the turn's commit follows */
        stream_close(l);
        l->kill_deadline_ms = 0;
        start_commit(l);
}

static void on_stream(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) events;
        sv_live *l = data;
        static __thread char payload[NS_FRAME_MAX_PAYLOAD];
        ns_error err;
        for (int budget = 0; budget < 256; budget++) {
                struct ns_frame_hdr h;
                size_t len = 0;
                int r = ns_stream_read(fd, &h, payload, sizeof payload, &len, &err);
                if (r == -EAGAIN)
                        break;
                if (r <= 0) {
                        /* init went away without an EXIT: the sandbox is gone.  What was made is
                         * stored (the mark stays at the last boundary: nothing re-attaches). */
                        l->n_ready = l->n_batch;
                        outq_store(l->srv);
                        return fail(l, r == 0 ? "the agent's sandbox went away" : err.msg);
                }
                if (h.type == NS_FRAME_EXIT) {
                        struct ns_frame_exit ex = { 0 };
                        if (ns_frame_exit_decode(payload, len, &ex, &err) < 0)
                                ex.code = 255;
                        return turn_exited(l, &ex);
                }
                if (h.type == NS_FRAME_LOST) {
                        char msg[128];
                        snprintf(msg, sizeof msg, "{\"message\":\"%llu bytes of agent output were lost\"}",
                                 (unsigned long long) h.value);
                        ev_emit(l, "error", msg);
                        if (h.offset + h.value > l->consumed)
                                l->consumed = h.offset + h.value;
                        if (agent_parser_at_boundary(l->parser))
                                mark_ready(l);
                        continue;
                }
                if (h.type != NS_FRAME_OUTPUT)
                        continue;
                /* Replays after a re-attach start at our offset; never feed a byte twice. */
                if (h.offset + len <= l->consumed)
                        continue;
                size_t skip = h.offset < l->consumed ? (size_t) (l->consumed - h.offset) : 0;
                r = h.stream == 2 ? agent_parser_feed_stderr(l->parser, payload + skip, len - skip, emitter_for(l), &err)
                                  : agent_parser_feed(l->parser, payload + skip, len - skip, emitter_for(l), &err);
                l->consumed = h.offset + len;
                if (r < 0)
                        log_warn("session %s: parsing agent output: %s", l->id, err.msg);
                if (agent_parser_at_boundary(l->parser))
                        mark_ready(l);
                if (l->srv->outq && (l->srv->outq->bytes += len - skip) >= OUT_HOLD_BYTES && live_held(l))
                        outq_store(l->srv); /* bounded: a burst does not wait for the gap */
        }
        /* Every frame there was is read (or the budget is spent: the loop comes back). */
        if (live_held(l))
                outq_due(l->srv);
}

/* ---- scheduling ---------------------------------------------------------------------------- */

/* A session that fails before it has a live record (nothing of it runs): the state, its event
 * and the operator's notification, as set_state gives the others. */
static void fail_unlived(sv_server *s, const char *sid, const char *why) {
        if (db_session_set_state(s->db, sid, SV_FAILED, why, -1, NULL, NULL, NULL) == 0)
                sv_notify_session(s, sid, SV_FAILED);
        sv_ws_notify(s);
}

static void start_provision(sv_server *s, const db_session *row) {
        ns_error err;
        sv_live *l = live_new(s, row, &err);
        if (!l) {
                log_warn("session %s: %s", row->id, err.msg);
                fail_unlived(s, row->id, err.msg);
                return;
        }
        if (set_state(l, SV_PROVISIONING, "provisioning a sandbox") < 0) {
                live_remove(s, l);
                return;
        }
        sv_sjob *j = sv_sjob_new(s, JOB_PROVISION, l);
        if (!j || !(j->mirror_path = strdup(l->mirror_path)) || !(j->base_sha = strdup(l->base_sha)) ||
            (l->limits_json && !(j->limits_json = strdup(l->limits_json)))) {
                sv_sjob_free(j);
                return fail(l, "out of memory");
        }
        j->agent_name = l->ad->name;
        l->holds_slot = true;
        s->slots_used++;
        l->phase = PH_PROVISION;
        submit(s, j);
}

static void kick(sv_server *s) {
        if (s->quitting)
                return;
        /* Follow-ups of sessions that have a sandbox. */
        for (sv_live *l = s->live; l && s->slots_used < s->cfg.max_concurrent; l = l->next) {
                if (l->phase != PH_NONE || (l->state != SV_IDLE && l->state != SV_WAITING))
                        continue;
                db_prompt p = { 0 };
                if (db_prompt_next(s->db, l->id, false, &p, NULL) == 0) {
                        db_prompt_clear(&p);
                        l->holds_slot = true;
                        s->slots_used++;
                        start_turn(l);
                }
        }
        /* Then queued sessions, oldest first. */
        while (s->slots_used < s->cfg.max_concurrent) {
                db_session *v = NULL;
                size_t n = 0;
                db_session_filter f = { .state_mask = 1u << SV_QUEUED, .limit = 1 };
                ns_error err;
                if (db_session_list(s->db, &f, &v, &n, &err) < 0 || n == 0) {
                        db_sessions_free(v, n);
                        break;
                }
                start_provision(s, &v[0]);
                db_sessions_free(v, n);
        }
}

/* ---- job completions ----------------------------------------------------------------------- */

static void provision_done(sv_sjob *j) {
        sv_live *l = j->live;
        sv_server *s = j->srv;
        ns_error err;
        if (j->rc < 0) {
                release_slot(l);
                return fail(l, j->err.msg);
        }
        snprintf(l->sandbox, sizeof l->sandbox, "%s", j->sandbox);
        free(l->git_name);
        free(l->git_email);
        l->git_name = TAKE_PTR(j->git_name);
        l->git_email = TAKE_PTR(j->git_email);
        if (db_session_set_sandbox(s->db, l->id, l->sandbox, j->workspace, j->gitdir, &err) < 0) {
                release_slot(l);
                return fail(l, err.msg);
        }
        if (j->env) {
                /* .nightshift/config's env.* join the session's own environment. */
                cJSON *o = l->env_json ? cJSON_Parse(l->env_json) : cJSON_CreateObject();
                for (char **p = j->env; o && *p; p++) {
                        char *eq = strchr(*p, '=');
                        *eq = '\0';
                        /* The repository's own file is not trusted to pull secrets: an agent's
                         * commit may change it, and the next session would print them. */
                        if (strstr(eq + 1, "${secret:")) {
                                emit_error(l, "ignored an env entry of .nightshift/config that references a secret "
                                              "(only a session's own env may)");
                                continue;
                        }
                        if (!cJSON_GetObjectItemCaseSensitive(o, *p))
                                cJSON_AddStringToObject(o, *p, eq + 1);
                }
                char *json = o ? cJSON_PrintUnformatted(o) : NULL;
                cJSON_Delete(o);
                if (json) {
                        free(l->env_json);
                        l->env_json = json;
                }
        }
        if (j->setup_warm) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "phase", "setup");
                cJSON_AddStringToObject(o, "stream", "stdout");
                char text[128];
                snprintf(text, sizeof text, "setup skipped: its layer %s from an earlier run is stacked\n",
                         j->setup_layer);
                cJSON_AddStringToObject(o, "text", text);
                cJSON_AddNumberToObject(o, "exit_code", 0);
                cJSON_AddStringToObject(o, "layer", j->setup_layer);
                cJSON_AddBoolToObject(o, "cached", true);
                emit_now(l, "command_output", o);
        }
        if (j->setup_exit >= 0) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "phase", "setup");
                cJSON_AddStringToObject(o, "stream", "stdout");
                cJSON_AddStringToObject(o, "text", j->setup_output ? j->setup_output : "");
                cJSON_AddNumberToObject(o, "exit_code", j->setup_exit);
                if (j->setup_layer[0]) {
                        cJSON_AddStringToObject(o, "layer", j->setup_layer);
                        cJSON_AddBoolToObject(o, "cached", false);
                }
                emit_now(l, "command_output", o);
                if (j->setup_exit != 0) {
                        char msg[512];
                        snprintf(msg, sizeof msg, "setup script .nightshift/setup.sh failed with exit code %d: %.300s",
                                 j->setup_exit, j->setup_output ? j->setup_output : "");
                        if (!j->setup_nonfatal) {
                                release_slot(l);
                                return fail(l, msg);
                        }
                        emit_error(l, msg);
                }
        }
        l->phase = PH_NONE;
        start_turn(l);
}

static void exec_done(sv_sjob *j) {
        sv_live *l = j->live;
        ns_error err;
        if (j->stream_fd < 0) {
                db_prompt_mark(j->srv->db, l->prompt_id, DB_PROMPT_CANCELLED, NULL);
                release_slot(l);
                return fail(l, j->err.msg);
        }
        char proc[32];
        snprintf(proc, sizeof proc, "%lld", (long long) j->proc);
        if (db_session_set_proc(j->srv->db, l->id, proc, 0, &err) < 0)
                log_warn("session %s: saving the process: %s", l->id, err.msg);
        if (stream_open(l, j->stream_fd, j->proc, 0, &err) < 0) {
                release_slot(l);
                return fail(l, err.msg);
        }
        j->stream_fd = -1; /* the live record owns it now */
        l->agent_pid = j->pid;
        if (l->stop_requested)
                l->kill_deadline_ms = ns_now_ms();
}

static void commit_done(sv_sjob *j) {
        sv_live *l = j->live;
        sv_server *s = j->srv;
        ns_error err;
        if (j->rc < 0)
                emit_error(l, j->err.msg);
        else if (j->commit_event && (!l->last_commit || strcmp(l->last_commit, j->new_tip))) {
                emit_now(l, "commit", cJSON_Parse(j->commit_event));
                free(l->last_commit);
                l->last_commit = strdup(j->new_tip);
                db_session_set_last_commit(s->db, l->id, j->new_tip, NULL);
        }
        db_prompt_mark(s->db, l->prompt_id, DB_PROMPT_DONE, NULL);
        db_session_set_proc(s->db, l->id, NULL, 0, &err);
        l->proc = -1;
        l->phase = PH_NONE;
        /* A session that ends here keeps its slot until its sandbox is gone (teardown_done →
         * live_remove): it shows as running until then, and the limit counts it, so that no
         * more than max_concurrent sessions are ever seen active at once. */
        if (l->stop_requested)
                return begin_teardown(l, SV_STOPPED, "stopped by the user");
        if (l->once)
                return begin_teardown(l, l->turn_failed ? SV_FAILED : SV_COMPLETED,
                                      l->turn_failed ? "turn failed" : "completed after one turn");
        release_slot(l);
        if (l->turn_question)
                set_state(l, SV_WAITING, "the agent asked a question");
        else
                set_state(l, SV_IDLE, l->interrupted ? "turn interrupted" : l->turn_failed ? "turn failed" : "turn succeeded");
        kick(s);
}

static void teardown_done(sv_sjob *j) {
        sv_live *l = j->live;
        sv_server *s = j->srv;
        if (j->rc < 0 && j->rc != -ENOENT)
                log_warn("session %s: destroying sandbox %s: %s", l->id, l->sandbox, j->err.msg);
        if (!sv_state_is_end(l->state))
                set_state(l, l->end_state, l->end_reason);
        live_remove(s, l);
        kick(s);
}

static void recover_done(sv_sjob *j) {
        sv_live *l = j->live;
        ns_error err;
        if (j->rc == -ENOENT) {
                l->sandbox[0] = '\0';
                return fail(l, "the sandbox is gone (sandboxd lost it while the supervisor was down)");
        }
        if (j->rc < 0)
                return fail(l, j->err.msg);
        if (l->state != SV_RUNNING) {
                l->phase = PH_NONE;
                return kick(j->srv);
        }
        l->holds_slot = true;
        j->srv->slots_used++;
        /* A turn was under way: its prompt is the running one. */
        db_prompt *v = NULL;
        size_t n = 0;
        if (db_prompt_list(j->srv->db, l->id, &v, &n, &err) == 0)
                for (size_t i = 0; i < n; i++)
                        if (v[i].state == DB_PROMPT_RUNNING) {
                                l->prompt_id = v[i].id;
                                l->prompt_text = TAKE_PTR(v[i].text);
                        }
        db_prompts_free(v, n);
        if (j->stream_fd >= 0) {
                if (stream_open(l, j->stream_fd, j->proc, (uint64_t) j->from, &err) < 0)
                        return fail(l, err.msg);
                j->stream_fd = -1;
                return;
        }
        /* The process's record is gone (its exit was read) or there never was one: finish the turn. */
        l->proc = j->proc;
        start_commit(l);
}

static void simple_done(sv_sjob *j) {
        if (j->rc < 0 && j->live)
                log_warn("session %s: %s", j->sid, j->err.msg);
}

static void api_reply(sv_sjob *j) {
        if (j->reply) {
                if (j->rc < 0)
                        j->reply(j->reply_ctx, j->status ? j->status : 500, NULL, j->code ? j->code : "internal",
                                 j->err.msg);
                else
                        j->reply(j->reply_ctx, j->status ? j->status : 200, TAKE_PTR(j->body), NULL, NULL);
        }
}

static void job_done(sv_job *job) {
        sv_sjob *j = (sv_sjob *) job;
        sv_server *s = j->srv;
        if (s->quitting) {
                /* Shutting down: nothing is applied; the next start recovers from the database. */
                if (j->reply)
                        j->reply(j->reply_ctx, 503, NULL, "shutting_down", "the server is shutting down");
                sv_sjob_free(j);
                return;
        }
        switch (j->kind) {
        case JOB_NEW_SESSION:
                api_reply(j);
                if (j->rc == 0)
                        kick(s);
                break;
        case JOB_REPO_REGISTER:
                api_reply(j);
                break;
        case JOB_PROVISION:
                provision_done(j);
                break;
        case JOB_EXEC:
                exec_done(j);
                break;
        case JOB_COMMIT:
                commit_done(j);
                break;
        case JOB_TEARDOWN:
                teardown_done(j);
                break;
        case JOB_RECOVER:
                recover_done(j);
                break;
        case JOB_DELETE:
                if (j->rc == 0) {
                        ns_error err;
                        if (s->cfg.keep_events) {
                                db_session row = { 0 };
                                if (db_session_get(s->db, j->sid, &row, NULL) == 0 && row.state != SV_ARCHIVED)
                                        db_session_set_state(s->db, j->sid, SV_ARCHIVED, "deleted", -1, NULL, NULL, NULL);
                                db_session_clear(&row);
                        }
                        if (!s->cfg.keep_events && db_session_delete(s->db, j->sid, &err) < 0) {
                                j->rc = -err.code;
                                j->err = err;
                                j->status = 500;
                        } else {
                                j->status = 204;
                        }
                } else {
                        j->status = 500;
                }
                api_reply(j);
                break;
        default:
                simple_done(j);
        }
        sv_sjob_free(j);
}

/* ---- API entry points ---------------------------------------------------------------------- */

void sv_session_create(sv_server *s, sv_new_session *req, sv_reply_fn reply, void *ctx) {
        sv_sjob *j = sv_sjob_new(s, JOB_NEW_SESSION, NULL);
        if (!j) {
                sv_new_session_clear(req);
                free(req);
                return reply(ctx, 500, NULL, "internal", "out of memory");
        }
        j->req = req;
        j->reply = reply;
        j->reply_ctx = ctx;
        submit(s, j);
}

void sv_repo_register(sv_server *s, const char *url_or_path, const char *name, sv_reply_fn reply, void *ctx) {
        sv_sjob *j = sv_sjob_new(s, JOB_REPO_REGISTER, NULL);
        if (!j || !(j->url = strdup(url_or_path)) || (name && !(j->name = strdup(name)))) {
                sv_sjob_free(j);
                return reply(ctx, 500, NULL, "internal", "out of memory");
        }
        j->reply = reply;
        j->reply_ctx = ctx;
        submit(s, j);
}

int sv_session_prompt(sv_server *s, const char *sid, const char *text, int64_t *prompt_id, ns_error *err) {
        db_session row = { 0 };
        int r = db_session_get(s->db, sid, &row, err);
        if (r < 0)
                return r;
        sv_state st = row.state;
        db_session_clear(&row);
        if (sv_state_is_end(st) || st == SV_ARCHIVED)
                return ns_err(err, EINVAL, "session %s is %s", sid, sv_state_name(st));
        if ((r = db_prompt_enqueue(s->db, sid, text, prompt_id, NULL, err)) < 0)
                return r;
        kick(s);
        return 0;
}

static int live_for_op(sv_server *s, const char *sid, sv_live **out, ns_error *err) {
        db_session row = { 0 };
        int r = db_session_get(s->db, sid, &row, err);
        if (r < 0)
                return r;
        sv_state st = row.state;
        db_session_clear(&row);
        *out = live_find(s, sid);
        if (!*out && st != SV_QUEUED)
                return ns_err(err, EINVAL, "session %s is %s", sid, sv_state_name(st));
        return 0;
}

static void signal_proc(sv_live *l, int sig) {
        sv_sjob *j = sv_sjob_new(l->srv, JOB_SIGNAL, l);
        if (j) {
                j->proc = l->proc;
                j->sig = sig;
                submit(l->srv, j);
        }
}

int sv_session_interrupt(sv_server *s, const char *sid, ns_error *err) {
        sv_live *l;
        int r = live_for_op(s, sid, &l, err);
        if (r < 0)
                return r;
        if (!l || l->phase != PH_STREAM)
                return ns_err(err, EINVAL, "session %s has no turn running", sid);
        signal_proc(l, l->ad->interrupt_signal ? l->ad->interrupt_signal : SIGINT);
        l->interrupted = true;
        l->kill_deadline_ms = ns_now_ms() + (uint64_t) s->cfg.stop_grace_s * 1000;
        return 0;
}

int sv_session_stop(sv_server *s, const char *sid, bool force, ns_error *err) {
        sv_live *l;
        int r = live_for_op(s, sid, &l, err);
        if (r < 0)
                return r;
        if (!l) /* queued: nothing to tear down */
                return db_session_set_state(s->db, sid, SV_STOPPED, "stopped by the user", -1, NULL, NULL, err);
        if (l->phase == PH_TEARDOWN)
                return 0;
        l->stop_requested = true;
        if (force || l->phase == PH_NONE || l->phase == PH_PROVISION) {
                if (l->phase == PH_PROVISION)
                        return 0; /* provision_done → start_turn sees stop_requested via exec_done */
                release_slot(l);
                begin_teardown(l, SV_STOPPED, force ? "stopped by the user (forced)" : "stopped by the user");
                return 0;
        }
        if (l->phase == PH_STREAM) {
                signal_proc(l, l->ad->interrupt_signal ? l->ad->interrupt_signal : SIGINT);
                l->interrupted = true;
                l->kill_deadline_ms = ns_now_ms() + (uint64_t) s->cfg.stop_grace_s * 1000;
        }
        return 0;
}

int sv_session_complete(sv_server *s, const char *sid, ns_error *err) {
        sv_live *l;
        int r = live_for_op(s, sid, &l, err);
        if (r < 0)
                return r;
        if (!l || (l->state != SV_IDLE && l->state != SV_WAITING) || l->phase != PH_NONE)
                return ns_err(err, EINVAL, "only an idle session can be completed");
        begin_teardown(l, SV_COMPLETED, "completed by the user");
        return 0;
}

size_t sv_sessions_live(const sv_server *s) {
        size_t n = 0;
        for (const sv_live *l = s->live; l; l = l->next)
                n++;
        return n;
}

int sv_session_archive(sv_server *s, const char *sid, ns_error *err) {
        db_session row = { 0 };
        int r = db_session_get(s->db, sid, &row, err);
        if (r < 0)
                return r;
        sv_state st = row.state;
        db_session_clear(&row);
        if (live_find(s, sid) || !sv_state_is_end(st))
                return ns_err(err, EINVAL, "only a session that has ended can be archived (it is %s)", sv_state_name(st));
        if ((r = db_session_set_state(s->db, sid, SV_ARCHIVED, "archived by the user", -1, NULL, NULL, err)) == 0)
                sv_ws_notify(s);
        return r;
}

int sv_session_pause(sv_server *s, const char *sid, bool pause, ns_error *err) {
        sv_live *l;
        int r = live_for_op(s, sid, &l, err);
        if (r < 0)
                return r;
        if (!l || !l->sandbox[0] || l->phase == PH_TEARDOWN || l->phase == PH_PROVISION)
                return ns_err(err, EINVAL, "session %s cannot be %s now", sid, pause ? "paused" : "resumed");
        if (pause == (l->state == SV_PAUSED))
                return 0;
        sv_sjob *j = sv_sjob_new(s, JOB_FREEZE, l);
        if (!j)
                return ns_err(err, ENOMEM, "out of memory");
        j->freeze = pause;
        if (pause) {
                l->paused_from = l->state;
                set_state(l, SV_PAUSED, "paused by the user");
        } else {
                set_state(l, l->paused_from, "resumed by the user");
        }
        submit(s, j);
        return 0;
}

void sv_session_delete(sv_server *s, const char *sid, sv_reply_fn reply, void *ctx) {
        db_session row = { 0 };
        ns_error err;
        int r = db_session_get(s->db, sid, &row, &err);
        if (r < 0)
                return reply(ctx, r == -ENOENT ? 404 : 500, NULL, r == -ENOENT ? "not_found" : "internal", err.msg);
        sv_live *l = live_find(s, sid);
        if (l || (!sv_state_is_end(row.state) && row.state != SV_ARCHIVED && row.state != SV_QUEUED)) {
                db_session_clear(&row);
                return reply(ctx, 409, NULL, "session_live", "stop the session before deleting it");
        }
        if (row.state == SV_QUEUED)
                db_session_set_state(s->db, sid, SV_STOPPED, "deleted", -1, NULL, NULL, NULL);
        sv_sjob *j = sv_sjob_new(s, JOB_DELETE, NULL);
        db_repo repo = { 0 };
        if (!j) {
                db_session_clear(&row);
                return reply(ctx, 500, NULL, "internal", "out of memory");
        }
        snprintf(j->sid, sizeof j->sid, "%s", sid);
        if (db_repo_get(s->db, row.repo_id, &repo, NULL) == 0)
                j->mirror_path = TAKE_PTR(repo.mirror_path);
        db_repo_clear(&repo);
        j->branch = dup_or_null(row.branch);
        j->reply = reply;
        j->reply_ctx = ctx;
        db_session_clear(&row);
        submit(s, j);
}

/* ---- start, tick, shutdown ----------------------------------------------------------------- */

int sv_runner_start(sv_server *s, ns_error *err) {
        db_session *v = NULL;
        size_t n = 0;
        if (!s->outq && outq_new(s, err) < 0)
                return -err->code;
        unsigned live_mask = (1u << SV_PROVISIONING) | (1u << SV_RUNNING) | (1u << SV_IDLE) | (1u << SV_WAITING) |
                             (1u << SV_PAUSED);
        db_session_filter f = { .state_mask = live_mask };
        int r = db_session_list(s->db, &f, &v, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                db_session *row = &v[i];
                if (row->state == SV_PROVISIONING) {
                        /* Half-made: the sandbox (if any) is destroyed by the teardown. */
                        sv_live *l = live_new(s, row, err);
                        if (!l) {
                                fail_unlived(s, row->id, "supervisor restarted while provisioning");
                                continue;
                        }
                        fail(l, "the supervisor restarted while the session was provisioning");
                        continue;
                }
                sv_live *l = live_new(s, row, err);
                if (!l) {
                        fail_unlived(s, row->id, err->msg);
                        continue;
                }
                if (row->state == SV_PAUSED)
                        l->paused_from = SV_IDLE;
                sv_sjob *j = sv_sjob_new(s, JOB_RECOVER, l);
                if (!j)
                        continue;
                j->proc = -1;
                if (row->state == SV_RUNNING && row->proc_id) {
                        char *end;
                        long long p = strtoll(row->proc_id, &end, 10);
                        if (!*end && p >= 0) {
                                j->proc = p;
                                j->from = row->output_offset;
                        }
                }
                l->phase = PH_EXEC; /* busy until the recovery job is done */
                submit(s, j);
        }
        db_sessions_free(v, n);
        ns_err_clear(err);
        kick(s);
        return 0;
}

void sv_runner_tick(sv_server *s) {
        uint64_t now = ns_now_ms();
        for (sv_live *l = s->live, *next; l; l = next) {
                next = l->next;
                if (l->kill_deadline_ms && now >= l->kill_deadline_ms && l->phase == PH_STREAM) {
                        l->kill_deadline_ms = 0;
                        if (l->stop_requested) {
                                release_slot(l);
                                begin_teardown(l, SV_STOPPED, "stopped by the user (killed after the grace period)");
                        } else {
                                signal_proc(l, SIGKILL);
                        }
                        continue;
                }
                if (s->cfg.max_runtime_s && l->phase != PH_TEARDOWN &&
                    now - l->started_ms > (uint64_t) s->cfg.max_runtime_s * 1000 && !l->stop_requested) {
                        emit_error(l, "the session reached its maximum runtime");
                        l->stop_requested = true;
                        if (l->phase == PH_STREAM) {
                                signal_proc(l, l->ad->interrupt_signal ? l->ad->interrupt_signal : SIGINT);
                                l->interrupted = true;
                                l->kill_deadline_ms = now + (uint64_t) s->cfg.stop_grace_s * 1000;
                        } else if (l->phase == PH_NONE) {
                                begin_teardown(l, SV_STOPPED, "maximum runtime reached");
                        }
                        continue;
                }
                if (s->cfg.idle_timeout_s && l->phase == PH_NONE && (l->state == SV_IDLE || l->state == SV_WAITING) &&
                    now - l->idle_since_ms > (uint64_t) s->cfg.idle_timeout_s * 1000)
                        begin_teardown(l, SV_COMPLETED, "idle timeout");
        }
}

void sv_runner_shutdown(sv_server *s) {
        s->quitting = true;
        /* What is held is stored with its mark; output after the last boundary is replayed to
         * the next start (re-attach at the mark). */
        outq_store(s);
}

void sv_runner_free(sv_server *s);
void sv_runner_free(sv_server *s) {
        while (s->live)
                live_remove(s, s->live);
        outq_free(s);
}
