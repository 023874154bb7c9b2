/* nightshift supervisor — previews: the registry, the API routes, auto-publish (see preview.h).
 * The proxy runs in a process of its own: preview_proc.c starts it and keeps it told. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/jsonv.h"
#include "common/log.h"
#include "db_int.h"
#include "preview_int.h"
#include "repo_settings.h"
#include "sandboxd/client.h"
#include "state.h"
#include "workq.h"
#include "ws.h"

#define PV_PER_SESSION_MAX 16   /* sandboxd publishes at most NS_PUBLISH_MAX (32) per sandbox */
#define PV_TOTAL_MAX 4096
#define PV_POLL_MS 1500
#define PV_POLL_SESSIONS 256

/* ---- the registry -------------------------------------------------------------------------- */

sv_preview *pv_find(struct sv_previews *pv, const char *id) {
        for (sv_preview *p = pv ? pv->list : NULL; p; p = p->next)
                if (!strcmp(p->id, id))
                        return p;
        return NULL;
}

void pv_hash(const char *token, size_t len, unsigned char out[PV_HASH_LEN]) {
        crypto_generichash(out, PV_HASH_LEN, (const unsigned char *) token, len, NULL, 0);
}

static sv_preview *find_port(struct sv_previews *pv, const char *sid, int port) {
        for (sv_preview *p = pv->list; p; p = p->next)
                if (!strcmp(p->sid, sid) && p->port == port)
                        return p;
        return NULL;
}

static size_t count_session(struct sv_previews *pv, const char *sid) {
        size_t n = 0;
        for (sv_preview *p = pv->list; p; p = p->next)
                n += !strcmp(p->sid, sid);
        return n;
}

/* The preview's origin ("http://p-....localhost:8788") into buf. */
static void origin_of(struct sv_previews *pv, const sv_preview *p, char *buf, size_t cap) {
        const char *domain = pv->srv->cfg.preview_domain;
        if (domain)
                snprintf(buf, cap, "https://%s.preview.%s", p->id, domain);
        else
                snprintf(buf, cap, "http://%s.localhost:%d", p->id, pv->port);
}

/* A fresh token for the preview (its hash kept); the token itself into token (hex). */
static void new_token(sv_preview *p, char token[PV_TOKEN_HEX + 1]) {
        unsigned char raw[PV_TOKEN_HEX / 2];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(token, PV_TOKEN_HEX + 1, raw, sizeof raw);
        pv_hash(token, PV_TOKEN_HEX, p->token_hash);
}

static cJSON *preview_json(struct sv_previews *pv, const sv_preview *p, const char *token) {
        char origin[300], url[512];
        origin_of(pv, p, origin, sizeof origin);
        if (token)
                snprintf(url, sizeof url, "%s%s?token=%s", origin, PV_AUTH_PATH, token);
        else
                snprintf(url, sizeof url, "%s/", origin);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", p->id);
        cJSON_AddNumberToObject(o, "port", p->port);
        cJSON_AddStringToObject(o, "url", url);
        cJSON_AddStringToObject(o, "origin", origin);
        cJSON_AddBoolToObject(o, "automatic", p->automatic);
        sv_api_add_time(o, "created", p->created_ms);
        return o;
}

/* A `preview` event: never with the token (events are stored and broadcast). */
static void emit(struct sv_previews *pv, const sv_preview *p, const char *action) {
        cJSON *o = preview_json(pv, p, NULL);
        cJSON_AddStringToObject(o, "action", action);
        _cleanup_free_ char *json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        ns_error err;
        if (!json || db_event_append(pv->srv->db, p->sid, "preview", json, NULL, NULL, &err) < 0)
                log_warn("session %s: preview event: %s", p->sid, json ? err.msg : "out of memory");
        else
                sv_ws_notify(pv->srv);
}

/* ---- the table `previews`: the registry as it was, for the next start ------------------------ */

static void store(struct sv_previews *pv, const sv_preview *p) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        ns_error err;
        int r = db_stmt_prepare(pv->srv->db,
                                "INSERT OR REPLACE INTO previews (id, session_id, sandbox, port, host_port, token_hash, "
                                "automatic, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                &st, &err);
        if (r == 0) {
                db_bind_text(st, 1, p->id);
                db_bind_text(st, 2, p->sid);
                db_bind_text(st, 3, p->sandbox);
                sqlite3_bind_int(st, 4, p->port);
                sqlite3_bind_int(st, 5, p->host_port);
                sqlite3_bind_blob(st, 6, p->token_hash, PV_HASH_LEN, SQLITE_STATIC);
                sqlite3_bind_int(st, 7, p->automatic);
                sqlite3_bind_int64(st, 8, p->created_ms);
                r = db_stmt_run(pv->srv->db, st, &err, "store preview");
        }
        if (r < 0)
                log_warn("preview %s: %s (it will not outlive a restart)", p->id, err.msg);
}

static void unstore(struct sv_previews *pv, const sv_preview *p) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        ns_error err;
        int r = db_stmt_prepare(pv->srv->db, "DELETE FROM previews WHERE id = ?1", &st, &err);
        if (r == 0) {
                db_bind_text(st, 1, p->id);
                r = db_stmt_run(pv->srv->db, st, &err, "delete preview");
        }
        if (r < 0)
                log_warn("preview %s: %s", p->id, err.msg);
}

/* The previews of the last run.  Each is checked against its session's sandbox by the first
 * tick, like any other: one whose sandbox is gone is removed then. */
static int load(struct sv_previews *pv, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(pv->srv->db,
                                "SELECT id, session_id, sandbox, port, host_port, token_hash, automatic, created_at "
                                "FROM previews ORDER BY created_at",
                                &st, err);
        if (r < 0)
                return r;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && pv->n < PV_TOTAL_MAX) {
                const char *id = (const char *) sqlite3_column_text(st, 0), *sid = (const char *) sqlite3_column_text(st, 1),
                           *sandbox = (const char *) sqlite3_column_text(st, 2);
                if (!id || !sid || !sandbox || !sv_id_valid(id, 'p') || strlen(sid) > SV_ID_LEN ||
                    strlen(sandbox) > NS_ID_MAX || sqlite3_column_bytes(st, 5) != PV_HASH_LEN ||
                    sqlite3_column_int(st, 3) < 1 || sqlite3_column_int(st, 3) > 65535)
                        continue;
                sv_preview *p = calloc(1, sizeof *p);
                if (!p)
                        return ns_err(err, ENOMEM, "out of memory");
                snprintf(p->id, sizeof p->id, "%s", id);
                snprintf(p->sid, sizeof p->sid, "%s", sid);
                snprintf(p->sandbox, sizeof p->sandbox, "%s", sandbox);
                p->port = sqlite3_column_int(st, 3);
                p->host_port = sqlite3_column_int(st, 4);
                memcpy(p->token_hash, sqlite3_column_blob(st, 5), PV_HASH_LEN);
                p->automatic = sqlite3_column_int(st, 6);
                p->created_ms = sqlite3_column_int64(st, 7);
                p->next = pv->list;
                pv->list = p;
                pv->n++;
        }
        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_sql_err(pv->srv->db, rc, err, "load previews");
}

static sv_preview *preview_add(struct sv_previews *pv, const char *sid, const char *sandbox, int port, int host_port,
                               bool automatic) {
        sv_preview *p = calloc(1, sizeof *p);
        if (!p || sv_id_new('p', p->id, NULL) < 0) {
                free(p);
                return NULL;
        }
        snprintf(p->sid, sizeof p->sid, "%s", sid);
        snprintf(p->sandbox, sizeof p->sandbox, "%s", sandbox);
        p->port = port;
        p->host_port = host_port;
        p->created_ms = (int64_t) ns_now_ms();
        p->automatic = automatic;
        char unused[PV_TOKEN_HEX + 1];
        new_token(p, unused);
        sodium_memzero(unused, sizeof unused);
        p->next = pv->list;
        pv->list = p;
        pv->n++;
        store(pv, p);
        pv_proc_put(pv, p);
        emit(pv, p, "published");
        return p;
}

static void preview_remove(struct sv_previews *pv, sv_preview *p, bool event) {
        pv_proc_drop(pv, p);
        for (sv_preview **pp = &pv->list; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        pv->n--;
        unstore(pv, p);
        if (event)
                emit(pv, p, "unpublished");
        free(p);
}

/* ---- sandboxd calls (workers) ----------------------------------------------------------------- */

/* publish `port` of `sandbox`; an already published port (an earlier run of the supervisor, or
 * a race with auto-publish) is adopted from the sandbox's stats.  *host_port gets the mapping. */
static int publish_port(ns_client *c, const char *sandbox, int port, int *host_port, ns_error *err) {
        cJSON *req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "op", "publish") || !cJSON_AddStringToObject(req, "sandbox", sandbox) ||
            !cJSON_AddNumberToObject(req, "port", port)) {
                cJSON_Delete(req);
                return ns_err(err, ENOMEM, "out of memory");
        }
        cJSON *reply = NULL;
        int r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
        cJSON_Delete(req);
        if (r == -EEXIST) {
                if (!(req = cJSON_CreateObject()) || !cJSON_AddStringToObject(req, "op", "stats") ||
                    !cJSON_AddStringToObject(req, "sandbox", sandbox)) {
                        cJSON_Delete(req);
                        return ns_err(err, ENOMEM, "out of memory");
                }
                r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
                cJSON_Delete(req);
                if (r < 0)
                        return r;
                const cJSON *it;
                r = ns_err(err, EPROTO, "sandboxd: port %d is published but not listed", port);
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "publish")) {
                        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(it, "port");
                        if (cJSON_IsNumber(pp) && pp->valueint == port) {
                                const cJSON *hp = cJSON_GetObjectItemCaseSensitive(it, "host_port");
                                *host_port = cJSON_IsNumber(hp) ? hp->valueint : 0;
                                r = 0;
                        }
                }
        } else if (r == 0) {
                const cJSON *hp = cJSON_GetObjectItemCaseSensitive(reply, "host_port");
                *host_port = cJSON_IsNumber(hp) ? hp->valueint : 0;
        }
        cJSON_Delete(reply);
        if (r == 0 && (*host_port < 1 || *host_port > 65535))
                return ns_err(err, EPROTO, "sandboxd: publish reply without a host port");
        return r;
}

static int sandbox_op_port(ns_client *c, const char *op, const char *sandbox, int port, cJSON **reply, ns_error *err) {
        cJSON *req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "op", op) || !cJSON_AddStringToObject(req, "sandbox", sandbox) ||
            (port && !cJSON_AddNumberToObject(req, "port", port))) {
                cJSON_Delete(req);
                return ns_err(err, ENOMEM, "out of memory");
        }
        int r = ns_client_call(c, req, NULL, 0, reply, NULL, NULL, err);
        cJSON_Delete(req);
        return r;
}

typedef enum { PJ_PUBLISH, PJ_UNPUBLISH, PJ_POLL } pv_job_kind;

typedef struct pv_job {
        sv_job base;
        pv_job_kind kind;
        sv_server *srv;
        sv_req *req;
        char sid[SV_ID_LEN + 1];
        char sandbox[NS_ID_MAX + 1];
        char preview[SV_ID_LEN + 1];
        int port, host_port;
        int rc;
        ns_error err;
        /* PJ_POLL: per session, the new ports published */
        size_t n_sessions;
        char (*sids)[SV_ID_LEN + 1];
        char (*sandboxes)[NS_ID_MAX + 1];
        char (*repos)[SV_ID_LEN + 1];
        bool server_default; /* --auto-publish, for repositories that do not say */
        struct pv_found { size_t session; int port, host_port; } *found;
        size_t n_found;
        int (*known)[2];     /* (session index, port) already previewed when the poll started */
        size_t n_known;
} pv_job;

static bool known_port(const pv_job *j, size_t si, int port) {
        for (size_t k = 0; k < j->n_known; k++)
                if ((size_t) j->known[k][0] == si && j->known[k][1] == port)
                        return true;
        return false;
}

/* Whether the sessions of repository `repo_id` get their ports published by themselves: the
 * repository's setting, else the server's. */
static bool auto_publish_for(pv_job *j, db *d, const char *repo_id) {
        sv_repo_settings rs;
        ns_error e;
        if (sv_repo_settings_get(d, repo_id, &rs, &e) < 0)
                return false; /* publishing is the exception: an unreadable setting does not */
        bool on = rs.auto_publish < 0 ? j->server_default : rs.auto_publish;
        sv_repo_settings_clear(&rs);
        return on;
}

static void poll_run(pv_job *j, ns_client *c, db *d) {
        j->found = calloc(PV_POLL_SESSIONS * 8, sizeof *j->found);
        if (!j->found)
                return;
        for (size_t si = 0; si < j->n_sessions; si++) {
                cJSON *reply = NULL;
                ns_error e;
                if (!auto_publish_for(j, d, j->repos[si]))
                        continue;
                if (sandbox_op_port(c, "listening", j->sandboxes[si], 0, &reply, &e) < 0)
                        continue;
                const cJSON *it;
                size_t added = 0;
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "ports")) {
                        if (!cJSON_IsNumber(it) || it->valueint < 1 || it->valueint > 65535 || added >= 8 ||
                            known_port(j, si, it->valueint))
                                continue;
                        int hp = 0;
                        if (publish_port(c, j->sandboxes[si], it->valueint, &hp, &e) == 0) {
                                j->found[j->n_found++] = (struct pv_found){ si, it->valueint, hp };
                                added++;
                        }
                }
                cJSON_Delete(reply);
        }
}

static void job_run(sv_job *base, sv_worker *w) {
        pv_job *j = (pv_job *) base;
        ns_client *c;
        if ((j->rc = sv_worker_sandboxd(w, &c, &j->err)) < 0)
                return;
        switch (j->kind) {
        case PJ_PUBLISH:
                j->rc = publish_port(c, j->sandbox, j->port, &j->host_port, &j->err);
                break;
        case PJ_UNPUBLISH:
                j->rc = sandbox_op_port(c, "unpublish", j->sandbox, j->port, NULL, &j->err);
                break;
        case PJ_POLL:
                poll_run(j, c, w->db);
                j->rc = 0;
                break;
        }
        if (j->rc < 0 && (j->rc == -ECONNRESET || j->rc == -EPIPE || j->rc == -EPROTO || j->rc == -ENOTCONN))
                sv_worker_sandboxd_reset(w, -j->rc);
}

static void job_free(pv_job *j) {
        free(j->sids);
        free(j->sandboxes);
        free(j->repos);
        free(j->found);
        free(j->known);
        free(j);
}

static void job_done(sv_job *base) {
        pv_job *j = (pv_job *) base;
        struct sv_previews *pv = j->srv->previews;
        if (!pv) { /* shutting down */
                if (j->req)
                        sv_req_reply_error(j->req, 503, "unavailable", "shutting down");
                job_free(j);
                return;
        }
        switch (j->kind) {
        case PJ_PUBLISH: {
                if (j->rc < 0) {
                        int st = j->rc == -ENOENT ? 409 : j->rc == -EADDRINUSE || j->rc == -E2BIG ? 409 : 502;
                        sv_req_reply_error(j->req, st, st == 409 ? "conflict" : "sandboxd", "%s", j->err.msg);
                        break;
                }
                /* The session may have lost its sandbox meanwhile, or the port been previewed. */
                const char *sb = sv_session_live_sandbox(j->srv, j->sid);
                if (!sb || strcmp(sb, j->sandbox)) {
                        sv_req_reply_error(j->req, 409, "no_sandbox", "the session has no sandbox now");
                        break;
                }
                sv_preview *p = find_port(pv, j->sid, j->port);
                bool fresh = !p;
                if (!p && !(p = preview_add(pv, j->sid, j->sandbox, j->port, j->host_port, false))) {
                        sv_req_reply_error(j->req, 500, "internal", "out of memory");
                        break;
                }
                char token[PV_TOKEN_HEX + 1];
                new_token(p, token); /* a new link: the earlier one stops working */
                store(pv, p);
                pv_proc_put(pv, p);
                sv_req_reply_json(j->req, fresh ? 201 : 200, preview_json(pv, p, token));
                sodium_memzero(token, sizeof token);
                break;
        }
        case PJ_UNPUBLISH: {
                sv_preview *p = pv_find(pv, j->preview);
                if (j->rc < 0 && j->rc != -ENOENT) {
                        sv_req_reply_error(j->req, 502, "sandboxd", "%s", j->err.msg);
                        break;
                }
                if (p) {
                        size_t k = pv->n_ignored++ % 64;
                        snprintf(pv->ignored[k].sid, sizeof pv->ignored[k].sid, "%s", p->sid);
                        pv->ignored[k].port = p->port;
                        preview_remove(pv, p, true);
                }
                sv_req_reply_json(j->req, 204, NULL);
                break;
        }
        case PJ_POLL:
                pv->polling = false;
                for (size_t k = 0; k < j->n_found; k++) {
                        struct pv_found *f = &j->found[k];
                        const char *sb = sv_session_live_sandbox(j->srv, j->sids[f->session]);
                        if (!sb || strcmp(sb, j->sandboxes[f->session]) || find_port(pv, j->sids[f->session], f->port) ||
                            count_session(pv, j->sids[f->session]) >= PV_PER_SESSION_MAX || pv->n >= PV_TOTAL_MAX)
                                continue;
                        preview_add(pv, j->sids[f->session], sb, f->port, f->host_port, true);
                }
                break;
        }
        job_free(j);
}

static pv_job *job_new(sv_server *s, pv_job_kind kind) {
        pv_job *j = calloc(1, sizeof *j);
        if (!j)
                return NULL;
        j->base.run = job_run;
        j->base.done = job_done;
        j->kind = kind;
        j->srv = s;
        return j;
}

/* ---- the API ------------------------------------------------------------------------------- */

/* The session's sandbox, or a reply (404, 409) and NULL. */
static const char *need_sandbox(sv_req *r, const char *sid) {
        db_session row = { 0 };
        ns_error e;
        int rc = db_session_get(r->srv->db, sid, &row, &e);
        if (rc < 0) {
                sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s", e.msg);
                return NULL;
        }
        db_session_clear(&row);
        const char *sb = sv_session_live_sandbox(r->srv, sid);
        if (!sb)
                sv_req_reply_error(r, 409, "no_sandbox", "the session has no sandbox now");
        return sb;
}

void sv_api_previews_get(sv_req *r, const sv_route_args *a) {
        db_session row = { 0 };
        ns_error e;
        int rc = db_session_get(r->srv->db, a->id, &row, &e);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s",
                                          e.msg);
        db_session_clear(&row);
        struct sv_previews *pv = r->srv->previews;
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "previews");
        for (sv_preview *p = pv ? pv->list : NULL; p; p = p->next)
                if (!strcmp(p->sid, a->id))
                        cJSON_AddItemToArray(arr, preview_json(pv, p, NULL));
        sv_req_reply_json(r, 200, o);
}

void sv_api_previews_post(sv_req *r, const sv_route_args *a) {
        struct sv_previews *pv = r->srv->previews;
        if (!pv)
                return sv_req_reply_error(r, 503, "unavailable", "the preview proxy is not running");
        _cleanup_json_ cJSON *body = sv_api_parse_body(r);
        if (!body)
                return;
        static const char *const keys[] = { "port", NULL };
        int64_t port;
        ns_error e;
        if (jv_only_keys(body, keys, &e) < 0 || jv_int(body, "port", true, 1, 65535, 0, &port, &e) < 0)
                return sv_api_bad(r, &e);
        const char *sb = need_sandbox(r, a->id);
        if (!sb)
                return;
        if (!find_port(pv, a->id, (int) port) &&
            (count_session(pv, a->id) >= PV_PER_SESSION_MAX || pv->n >= PV_TOTAL_MAX))
                return sv_req_reply_error(r, 409, "too_many", "at most %d previews per session", PV_PER_SESSION_MAX);
        pv_job *j = job_new(r->srv, PJ_PUBLISH);
        if (!j)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        j->req = r;
        snprintf(j->sid, sizeof j->sid, "%s", a->id);
        snprintf(j->sandbox, sizeof j->sandbox, "%s", sb);
        j->port = (int) port;
        sv_workq_submit(r->srv->wq, &j->base);
}

void sv_api_preview_delete(sv_req *r, const sv_route_args *a) {
        struct sv_previews *pv = r->srv->previews;
        sv_preview *p = sv_id_valid(a->sub, 'p') ? pv_find(pv, a->sub) : NULL;
        if (!p || strcmp(p->sid, a->id))
                return sv_req_reply_error(r, 404, "not_found", "no such preview");
        pv_job *j = job_new(r->srv, PJ_UNPUBLISH);
        if (!j)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        j->req = r;
        snprintf(j->sid, sizeof j->sid, "%s", p->sid);
        snprintf(j->sandbox, sizeof j->sandbox, "%s", p->sandbox);
        snprintf(j->preview, sizeof j->preview, "%s", p->id);
        j->port = p->port;
        sv_workq_submit(r->srv->wq, &j->base);
}

bool sv_preview_host(const sv_server *s, const char *host) {
        char id[SV_ID_LEN + 1];
        return host && pv_host_preview(s->cfg.preview_domain, host, strlen(host), id);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static void list_free(struct sv_previews *pv) {
        while (pv->list) {
                sv_preview *p = pv->list;
                pv->list = p->next;
                free(p);
        }
        pv->n = 0;
}

int sv_preview_start(sv_server *s, int *port_out, ns_error *err) {
        if (sodium_init() < 0)
                return ns_err(err, EIO, "libsodium did not initialise");
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) s->cfg.preview_port) };
        if (inet_pton(AF_INET, s->cfg.preview_addr, &sa.sin_addr) != 1)
                return ns_err(err, EINVAL, "--preview-listen: '%s' is not an IPv4 address", s->cfg.preview_addr);
        if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127 && !s->cfg.allow_remote)
                return ns_err(err, EPERM, "--preview-listen %s is not a loopback address: set allow-remote true",
                              s->cfg.preview_addr);
        struct sv_previews *pv = calloc(1, sizeof *pv);
        if (!pv)
                return ns_err(err, ENOMEM, "out of memory");
        pv->srv = s;
        int r = load(pv, err);
        if (r < 0) {
                list_free(pv);
                free(pv);
                return r;
        }
        int one = 1;
        socklen_t sl = sizeof sa;
        pv->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (pv->listen_fd < 0 || setsockopt(pv->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(pv->listen_fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(pv->listen_fd, 512) < 0 ||
            getsockname(pv->listen_fd, (struct sockaddr *) &sa, &sl) < 0) {
                r = ns_err_sys(err, errno, "preview listener %s:%d", s->cfg.preview_addr, s->cfg.preview_port);
                if (pv->listen_fd >= 0)
                        close(pv->listen_fd);
                list_free(pv);
                free(pv);
                return r;
        }
        pv->port = ntohs(sa.sin_port);
        if ((r = pv_proc_start(pv, err)) < 0) {
                close(pv->listen_fd);
                list_free(pv);
                free(pv);
                return r;
        }
        s->previews = pv;
        s->proxyproc = pv->proc;
        *port_out = pv->port;
        return 0;
}

void sv_preview_stop(sv_server *s) {
        struct sv_previews *pv = s->previews;
        if (!pv)
                return;
        s->proxyproc = NULL; /* the egress proxies read it at each hand-off */
        pv_proc_stop(pv);
        list_free(pv);
        close(pv->listen_fd);
        free(pv);
        s->previews = NULL;
}

void sv_preview_tick(sv_server *s) {
        struct sv_previews *pv = s->previews;
        if (!pv)
                return;
        /* A preview lives as long as its session's sandbox (sandboxd closed its listener). */
        for (sv_preview *p = pv->list, *next; p; p = next) {
                next = p->next;
                const char *sb = sv_session_live_sandbox(s, p->sid);
                if (!sb || strcmp(sb, p->sandbox))
                        preview_remove(pv, p, true);
        }
        pv_proc_tick(pv);
        uint64_t now = ns_now_ms();
        /* Polled whatever --auto-publish says: a repository's settings may turn it on. */
        if (pv->polling || now < pv->next_poll_ms)
                return;
        pv->next_poll_ms = now + PV_POLL_MS;
        pv_job *j = job_new(s, PJ_POLL);
        if (!j)
                return;
        j->sids = calloc(PV_POLL_SESSIONS, sizeof *j->sids);
        j->sandboxes = calloc(PV_POLL_SESSIONS, sizeof *j->sandboxes);
        j->repos = calloc(PV_POLL_SESSIONS, sizeof *j->repos);
        j->server_default = s->cfg.auto_publish;
        if (!j->sids || !j->sandboxes || !j->repos) {
                job_free(j);
                return;
        }
        j->n_sessions = sv_session_live_list(s, j->sids, j->sandboxes, j->repos, PV_POLL_SESSIONS);
        if (!j->n_sessions) {
                job_free(j);
                return;
        }
        j->known = calloc(pv->n + 64 + 1, sizeof *j->known);
        if (!j->known) {
                job_free(j);
                return;
        }
        for (sv_preview *p = pv->list; p; p = p->next)
                for (size_t si = 0; si < j->n_sessions; si++)
                        if (!strcmp(p->sid, j->sids[si]))
                                j->known[j->n_known][0] = (int) si, j->known[j->n_known++][1] = p->port;
        for (size_t k = 0; k < pv->n_ignored && k < 64; k++)
                for (size_t si = 0; si < j->n_sessions; si++)
                        if (!strcmp(pv->ignored[k].sid, j->sids[si]))
                                j->known[j->n_known][0] = (int) si, j->known[j->n_known++][1] = pv->ignored[k].port;
        pv->polling = true;
        sv_workq_submit(s->wq, &j->base);
}
