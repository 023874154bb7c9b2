/* nightshift supervisor — outgoing notifications: queueing, delivery, retries (see notify.h). */
#include "notify.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "db_int.h"
#include "hooks.h"
#include "redact.h"
#include "serve.h"
#include "vault.h"

#define NOTIFY_INFLIGHT 2                 /* deliveries on workers at once: sessions' work comes first */
#define NOTIFY_POLL_MS 1000               /* how often the log is looked at for due retries */
#define NOTIFY_PRUNE_EVERY_MS (3600 * 1000)
#define NOTIFY_KEEP_MS (INT64_C(30) * 24 * 3600 * 1000) /* finished deliveries stay in the log this long */
#define NOTIFY_ERROR_MAX 200

struct sv_notifier {
        int64_t inflight[NOTIFY_INFLIGHT]; /* delivery ids on a worker; 0 = free slot */
        uint64_t next_poll_ms, next_prune_ms;
        bool curl_up;
        atomic_bool quitting; /* read by workers: an attempt in flight gives up (it stays pending) */
};

struct notify_job {
        sv_job base;
        sv_server *srv;
        atomic_bool *quitting; /* the notifier's (it outlives the workers) */
        int64_t id;
        char *url, *payload;
        bool slack;
        char event[16];
        char signature[7 + 64 + 1]; /* "sha256=<hex>", or empty (slack) */
        long timeout_s;
        /* outputs */
        bool ran;
        long code; /* HTTP status, 0 = none */
        char error[NOTIFY_ERROR_MAX];
};

/* ---- URLs ----------------------------------------------------------------------------------- */

static void curl_url_freep(CURLU **u) {
        curl_url_cleanup(*u);
}
static void curl_freep(char **p) {
        curl_free(*p);
}

bool sv_notify_url_ok(const char *url, ns_error *err) {
        size_t n = strlen(url);
        if (n < 8 || n > SV_NOTIFY_URL_MAX)
                return ns_err(err, EINVAL, "url: 8..%d bytes", SV_NOTIFY_URL_MAX), false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) url[i] <= ' ' || url[i] == 0x7f)
                        return ns_err(err, EINVAL, "url: no blanks or control characters"), false;
        /* libcurl's own parser: the one that will send the request decides what the URL means. */
        _cleanup_(curl_url_freep) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL;
        if (!u)
                return ns_err(err, ENOMEM, "out of memory"), false;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
                return ns_err(err, EINVAL, "url: not an absolute URL with a host"), false;
        if (strcmp(scheme, "http") && strcmp(scheme, "https"))
                return ns_err(err, EINVAL, "url: http or https only"), false;
        /* libcurl reads "https:///x" as host "x": what is written must be what is meant. */
        const char *sep = strstr(url, "://");
        if (!sep || sep[3] == '/')
                return ns_err(err, EINVAL, "url: not an absolute URL with a host"), false;
        if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
                return ns_err(err, EINVAL, "url: no user info (put credentials in the vault, not in a URL)"), false;
        return true;
}

/* ---- building and queueing ------------------------------------------------------------------ */

/* Slack mrkdwn: &, < and > are its control characters. */
static void slack_escape(const char *in, char *out, size_t cap) {
        size_t o = 0;
        for (; in && *in && o + 6 < cap; in++) {
                const char *rep = *in == '&' ? "&amp;" : *in == '<' ? "&lt;" : *in == '>' ? "&gt;" : NULL;
                if (rep) {
                        memcpy(out + o, rep, strlen(rep));
                        o += strlen(rep);
                } else {
                        out[o++] = *in;
                }
        }
        out[o] = '\0';
}

/* The payload of `format` (malloc'd JSON text, not yet redacted). */
static char *build_payload(sv_server *s, bool slack, const db_session *row, const char *repo_name, const char *event) {
        char base[1100];
        if (s->cfg.public_url)
                snprintf(base, sizeof base, "%s", s->cfg.public_url);
        else
                snprintf(base, sizeof base, "http://%s:%d", s->cfg.listen_addr, s->cfg.listen_port);
        size_t bl = strlen(base);
        while (bl && base[bl - 1] == '/')
                base[--bl] = '\0';
        char url[1200];
        snprintf(url, sizeof url, "%s/#/s/%s", base, row->id);
        const char *title = row->title && row->title[0] ? row->title : row->id;
        cJSON *o = cJSON_CreateObject();
        if (slack) {
                char t[800], reason[600], text[2800];
                slack_escape(title, t, sizeof t);
                slack_escape(row->state_reason, reason, sizeof reason);
                snprintf(text, sizeof text, "nightshift: <%s|%s> (%s, %s) is *%s*%s%s", url, t, row->id, repo_name, event,
                         reason[0] ? ": " : "", reason);
                cJSON_AddStringToObject(o, "text", text);
        } else {
                char ev[32], when[32];
                snprintf(ev, sizeof ev, "session.%s", event);
                time_t now = (time_t) (db_now_ms() / 1000);
                struct tm tm;
                gmtime_r(&now, &tm);
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
                cJSON_AddStringToObject(o, "event", ev);
                cJSON_AddStringToObject(o, "session_id", row->id);
                cJSON_AddStringToObject(o, "state", event);
                if (row->state_reason)
                        cJSON_AddStringToObject(o, "reason", row->state_reason);
                else
                        cJSON_AddNullToObject(o, "reason");
                cJSON_AddStringToObject(o, "title", title);
                cJSON *repo = cJSON_AddObjectToObject(o, "repo");
                cJSON_AddStringToObject(repo, "id", row->repo_id);
                cJSON_AddStringToObject(repo, "name", repo_name);
                cJSON_AddStringToObject(o, "url", url);
                cJSON_AddStringToObject(o, "time", when);
        }
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return txt;
}

static int queue_one(sv_server *s, const db_session *row, const char *repo_name, const char *event, const char *endpoint_id,
                     const char *url, const char *format, const char *secret, ns_error *err) {
        bool slack = !strcmp(format, "slack");
        _cleanup_free_ char *raw = build_payload(s, slack, row, repo_name, event);
        if (!raw)
                return ns_err(err, ENOMEM, "out of memory");
        /* Why: titles and reasons can quote what an agent printed; no secret value may leave in
         * a notification nor sit in the log's payload column. */
        _cleanup_free_ char *clean = NULL;
        int r = s->redact ? sv_redact_json(s->redact, raw, &clean) : 0;
        if (r < 0)
                return ns_err(err, -r, "redacting the payload failed");
        int64_t now = db_now_ms();
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if ((r = db_stmt_prepare(s->db,
                                 "INSERT INTO notifications (session_id, event, url, status, attempts, created_at, endpoint_id, "
                                 "format, secret, payload, next_at, updated_at) "
                                 "VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6, ?7, ?8, ?4, ?4)",
                                 &st, err)) < 0)
                return r;
        db_bind_text(st, 1, row->id);
        db_bind_text(st, 2, event);
        db_bind_text(st, 3, url);
        sqlite3_bind_int64(st, 4, now);
        db_bind_text(st, 5, endpoint_id);
        db_bind_text(st, 6, format);
        db_bind_text(st, 7, secret);
        db_bind_text(st, 8, clean ? clean : raw);
        return db_stmt_run(s->db, st, err, "queue a notification");
}

void sv_notify_session(sv_server *s, const char *sid, sv_state to) {
        if (!s->notify || (to != SV_COMPLETED && to != SV_FAILED && to != SV_WAITING))
                return;
        const char *event = sv_state_name(to);
        ns_error e = { 0 };
        db_session row = { 0 };
        db_repo repo = { 0 };
        if (db_session_get(s->db, sid, &row, &e) < 0) {
                log_warn("notify %s: %s", sid, e.msg);
                return;
        }
        (void) db_repo_get(s->db, row.repo_id, &repo, NULL);
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(s->db,
                            "SELECT id, url, format, events, secret FROM notify_endpoints "
                            "WHERE repo_id IS NULL OR repo_id = ?1 ORDER BY created_at, id",
                            &st, &e) == 0) {
                db_bind_text(st, 1, row.repo_id);
                int rc, queued = 0;
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        const char *events = (const char *) sqlite3_column_text(st, 3);
                        if (!sv_list_has(events, event))
                                continue;
                        if (queue_one(s, &row, repo.name ? repo.name : row.repo_id, event, (const char *) sqlite3_column_text(st, 0),
                                      (const char *) sqlite3_column_text(st, 1), (const char *) sqlite3_column_text(st, 2),
                                      (const char *) sqlite3_column_text(st, 4), &e) < 0)
                                log_warn("notify %s: %s", sid, e.msg);
                        else
                                queued++;
                }
                if (queued)
                        s->notify->next_poll_ms = 0; /* deliver at the next tick */
        } else {
                log_warn("notify %s: %s", sid, e.msg);
        }
        db_repo_clear(&repo);
        db_session_clear(&row);
}

/* ---- delivery ------------------------------------------------------------------------------- */

static size_t discard_body(char *p, size_t size, size_t n, void *ud) {
        (void) p, (void) ud;
        return size * n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
        (void) dt, (void) dn, (void) ut, (void) un;
        return atomic_load((atomic_bool *) ud) ? 1 : 0;
}

static void curl_slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

/* On a worker: one attempt. */
static void job_run(sv_job *job, sv_worker *w) {
        (void) w;
        struct notify_job *j = (struct notify_job *) job;
        j->ran = true;
        CURL *h = curl_easy_init();
        if (!h) {
                snprintf(j->error, sizeof j->error, "libcurl could not make a handle");
                return;
        }
        _cleanup_(curl_slist_freep) struct curl_slist *hd = NULL;
        char line[128];
        hd = curl_slist_append(hd, "Content-Type: application/json");
        hd = curl_slist_append(hd, "User-Agent: nightshift-notify/1");
        snprintf(line, sizeof line, "X-Nightshift-Event: session.%s", j->event);
        hd = curl_slist_append(hd, line);
        snprintf(line, sizeof line, "X-Nightshift-Delivery: %lld", (long long) j->id);
        hd = curl_slist_append(hd, line);
        if (j->signature[0]) {
                snprintf(line, sizeof line, "X-Nightshift-Signature: %s", j->signature);
                hd = curl_slist_append(hd, line);
        }
        curl_easy_setopt(h, CURLOPT_URL, j->url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer, not an order */
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, j->timeout_s);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, j->timeout_s < 5 ? j->timeout_s : 5L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) strlen(j->payload));
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE, 1L << 20);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, j->quitting);
        CURLcode rc = curl_easy_perform(h);
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
                j->ran = false; /* cut short by a shutdown: not an attempt, the next start makes it */
                curl_easy_cleanup(h);
                return;
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &j->code);
        if (rc != CURLE_OK)
                snprintf(j->error, sizeof j->error, "%s", curl_easy_strerror(rc));
        curl_easy_cleanup(h);
}

static void job_free(struct notify_job *j) {
        free(j->url);
        if (j->payload)
                sodium_memzero(j->payload, strlen(j->payload));
        free(j->payload);
        free(j);
}

static void slot_release(sv_notifier *n, int64_t id) {
        for (int i = 0; n && i < NOTIFY_INFLIGHT; i++)
                if (n->inflight[i] == id)
                        n->inflight[i] = 0;
}

/* Record an attempt's outcome: succeeded, failed for good, or pending again after a backoff.  A
 * delivery given up meanwhile (its endpoint deleted) stays given up unless this attempt
 * succeeded. */
static void record(sv_server *s, int64_t id, int attempts, long code, const char *error) {
        bool ok = code >= 200 && code < 300 && !error[0];
        bool retry = !ok && (code == 0 || code == 408 || code == 429 || code >= 500) && attempts < s->cfg.notify_max_attempts;
        int64_t now = db_now_ms();
        int64_t delay = INT64_C(1000) << (attempts - 1 < 30 ? attempts - 1 : 30);
        if (delay > s->cfg.notify_backoff_max_s * 1000)
                delay = s->cfg.notify_backoff_max_s * 1000;
        ns_error e;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(s->db,
                            "UPDATE notifications SET status = ?2, attempts = ?3, last_code = ?4, last_error = ?5, "
                            "updated_at = ?6, next_at = ?7, finished_at = ?8 WHERE id = ?1 AND (status = 'pending' OR ?2 = 'succeeded')",
                            &st, &e) < 0) {
                log_warn("notification %lld: %s", (long long) id, e.msg);
                return;
        }
        sqlite3_bind_int64(st, 1, id);
        db_bind_text(st, 2, ok ? "succeeded" : retry ? "pending" : "failed");
        sqlite3_bind_int(st, 3, attempts);
        if (code)
                sqlite3_bind_int64(st, 4, code);
        char msg[NOTIFY_ERROR_MAX + 16];
        if (error[0])
                snprintf(msg, sizeof msg, "%s", error);
        else if (!ok)
                snprintf(msg, sizeof msg, "HTTP %ld", code);
        if (!ok)
                db_bind_text(st, 5, msg);
        sqlite3_bind_int64(st, 6, now);
        sqlite3_bind_int64(st, 7, retry ? now + delay : now);
        if (!retry)
                sqlite3_bind_int64(st, 8, now);
        if (db_stmt_run(s->db, st, &e, "record a notification attempt") < 0)
                log_warn("notification %lld: %s", (long long) id, e.msg);
        if (!ok)
                log_info("notification %lld to its endpoint: attempt %d failed (%s)%s", (long long) id, attempts, msg,
                         retry ? "; retrying" : "");
}

/* On the loop: the attempt is over (or, at shutdown, never ran: then it stays pending). */
static void job_done(sv_job *job) {
        struct notify_job *j = (struct notify_job *) job;
        sv_server *s = j->srv;
        slot_release(s->notify, j->id);
        if (j->ran) {
                _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
                int attempts = 1;
                if (db_stmt_prepare(s->db, "SELECT attempts FROM notifications WHERE id = ?1", &st, NULL) == 0) {
                        sqlite3_bind_int64(st, 1, j->id);
                        if (sqlite3_step(st) == SQLITE_ROW)
                                attempts = sqlite3_column_int(st, 0) + 1;
                }
                record(s, j->id, attempts, j->code, j->error);
                if (s->notify)
                        s->notify->next_poll_ms = 0;
        }
        job_free(j);
}

/* The signature header's value for `payload` under global vault secret `name`; -ENOENT when it
 * is not in the vault. */
static int sign(sv_server *s, const char *name, const char *payload, char out[7 + 64 + 1], ns_error *err) {
        sv_secret key = { 0 };
        int r = s->vault ? sv_vault_get(s->vault, s->db, NULL, name, &key, err) : -ENOENT;
        if (r < 0)
                return r;
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, (const unsigned char *) key.value, key.len);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *) payload, strlen(payload));
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_memzero(&st, sizeof st);
        sv_secret_clear(&key);
        memcpy(out, "sha256=", 7);
        sodium_bin2hex(out + 7, 64 + 1, mac, sizeof mac);
        return 0;
}

static bool inflight(const sv_notifier *n, int64_t id) {
        for (int i = 0; i < NOTIFY_INFLIGHT; i++)
                if (n->inflight[i] == id)
                        return true;
        return false;
}

static int free_slot(const sv_notifier *n) {
        for (int i = 0; i < NOTIFY_INFLIGHT; i++)
                if (!n->inflight[i])
                        return i;
        return -1;
}

static void dispatch_due(sv_server *s) {
        sv_notifier *n = s->notify;
        int64_t now = db_now_ms();
        ns_error e;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(s->db,
                            "SELECT id, url, format, secret, payload, event, attempts FROM notifications "
                            "WHERE status = 'pending' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
                            &st, &e) < 0) {
                log_warn("notifications: %s", e.msg);
                return;
        }
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int(st, 2, 2 * NOTIFY_INFLIGHT);
        int slot;
        while ((slot = free_slot(n)) >= 0 && sqlite3_step(st) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(st, 0);
                if (inflight(n, id))
                        continue;
                const char *payload = (const char *) sqlite3_column_text(st, 4);
                const char *format = (const char *) sqlite3_column_text(st, 2);
                const char *secret = (const char *) sqlite3_column_text(st, 3);
                struct notify_job *j = calloc(1, sizeof *j);
                if (!j || !(j->url = strdup((const char *) sqlite3_column_text(st, 1))) ||
                    !(j->payload = strdup(payload ? payload : "{}"))) {
                        if (j)
                                job_free(j);
                        return;
                }
                j->srv = s;
                j->id = id;
                j->slack = format && !strcmp(format, "slack");
                snprintf(j->event, sizeof j->event, "%s", (const char *) sqlite3_column_text(st, 5));
                j->timeout_s = (long) s->cfg.notify_timeout_s;
                if (!j->slack) {
                        ns_error se = { 0 };
                        int r = sign(s, secret ? secret : SV_NOTIFY_DEFAULT_SECRET, j->payload, j->signature, &se);
                        if (r < 0) {
                                /* Never unsigned: the attempt fails (and is retried: the operator may
                                 * set the secret meanwhile). */
                                char why[NOTIFY_ERROR_MAX];
                                snprintf(why, sizeof why, r == -ENOENT ? "the signing secret %s is not in the vault" : "%s",
                                         r == -ENOENT ? (secret ? secret : SV_NOTIFY_DEFAULT_SECRET) : se.msg);
                                record(s, id, sqlite3_column_int(st, 6) + 1, 0, why);
                                job_free(j);
                                continue;
                        }
                }
                j->quitting = &n->quitting;
                j->base.run = job_run;
                j->base.done = job_done;
                n->inflight[slot] = id;
                sv_workq_submit(s->wq, &j->base);
        }
}

static void prune(sv_server *s, int64_t now) {
        ns_error e;
        int r = sv_hook_deliveries_prune(s->db, now, &e);
        if (r < 0)
                log_warn("hook deliveries: %s", e.msg);
        else if (r > 0)
                log_info("hook deliveries: %d past the replay window pruned", r);
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(s->db, "DELETE FROM notifications WHERE status != 'pending' AND finished_at < ?1", &st, &e) == 0) {
                sqlite3_bind_int64(st, 1, now - NOTIFY_KEEP_MS);
                (void) db_stmt_run(s->db, st, NULL, "prune notifications");
        }
}

void sv_notify_tick(sv_server *s) {
        sv_notifier *n = s->notify;
        if (!n || !s->wq)
                return;
        uint64_t now = ns_now_ms();
        if (now >= n->next_prune_ms) {
                n->next_prune_ms = now + NOTIFY_PRUNE_EVERY_MS;
                prune(s, db_now_ms());
        }
        if (now < n->next_poll_ms || free_slot(n) < 0)
                return;
        n->next_poll_ms = now + NOTIFY_POLL_MS;
        dispatch_due(s);
}

int sv_notify_start(sv_server *s, ns_error *err) {
        sv_notifier *n = calloc(1, sizeof *n);
        if (!n)
                return ns_err(err, ENOMEM, "out of memory");
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                free(n);
                return ns_err(err, EIO, "libcurl failed to initialise");
        }
        n->curl_up = true;
        s->notify = n;
        return 0;
}

void sv_notify_quiesce(sv_server *s) {
        if (s->notify)
                atomic_store(&s->notify->quitting, true);
}

void sv_notify_stop(sv_server *s) {
        sv_notifier *n = s->notify;
        if (!n)
                return;
        if (n->curl_up)
                curl_global_cleanup();
        free(n);
        s->notify = NULL;
}
