/* nightshift supervisor — the server context of `nightshift serve` and the session runner's
 * entry points used by the API.
 *
 * Everything here runs on the one event loop thread; blocking work goes to sv_workq jobs
 * (session_jobs.c).  A session that has a sandbox or is about to get one has an sv_live record
 * here; the database is the truth about state, the live record holds what only a running
 * process has (its stream fd, the adapter's parser, the pending batch of events). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/loop.h"
#include "config.h"
#include "db.h"
#include "ids.h"
#include "workq.h"

typedef struct sv_live sv_live;
typedef struct sv_http sv_http;
typedef struct sv_auth sv_auth;
typedef struct sv_ws_hub sv_ws_hub;

typedef struct sv_server {
        sv_config cfg;
        ns_loop *loop;
        db *db; /* the loop thread's connection */
        sv_workq *wq;
        sv_http *http;
        sv_auth *auth;      /* rate limits (auth.h) */
        sv_ws_hub *ws;      /* event subscribers (ws.h) */
        struct sv_list_cache *list_cache; /* the last session list answered (api.c) */
        sv_live *live;      /* sessions with a sandbox (or provisioning one) */
        int slots_used;     /* turns running or provisioning, ≤ cfg.max_concurrent */
        bool quitting;
        uint64_t last_tick_ms;
        bool wal_checkpointing;       /* a checkpoint job is queued or running (walckpt.h) */
        char *mirrors_dir;
        struct sv_previews *previews; /* the preview proxy and its previews (preview.c) */
        struct sv_proxyproc *proxyproc; /* the proxy process (previews, egress tunnels); NULL once stopped */
        struct sv_vault *vault;       /* secrets (vault.h) */
        struct sv_redactor *redact;   /* their forms, replaced in everything stored (redact.h) */
        struct sv_modelproxy *proxy;  /* the model-API proxy (modelproxy.h), NULL when off */
        struct sv_egress_hosts *egress_hosts; /* --egress-hosts, loaded at the first proxy session */
        struct sv_notifier *notify;   /* outgoing notifications (notify.h) */
        struct sv_spares *spares;     /* spare working trees (spare.h); made before the workers, freed after */
        struct sv_outq *outq;         /* agent output held back for one transaction (session.c) */
} sv_server;

/* What a create request asks for, validated by the API layer (sizes, charset, agent name). */
typedef struct sv_new_session {
        char *repo;   /* id or name */
        char *base;   /* NULL = the repository's default branch */
        char *agent;  /* "command" default */
        char *prompt;
        char *model, *title;
        bool once;
        char *env_json; /* a JSON object of strings, or NULL */
        int connects[SV_MAX_CONNECTS];
        int n_connects;
        int64_t memory, pids;
        double cpus;
        bool net_private; /* network "private": a veth pair guarded by sandboxd's rules */
        bool net_proxy;   /* network "proxy": outbound HTTP(S) only through the egress proxy */
        char *egress_json; /* its allow-list (a JSON array of checked entries), or NULL = the default */
} sv_new_session;
void sv_new_session_clear(sv_new_session *n);

/* Completion of an asynchronous API call: status (HTTP-like: 201, 400, 404, 409, 500...) and a
 * JSON body (owned by the callee after the call) or an error code/message. */
typedef void (*sv_reply_fn)(void *ctx, int status, cJSON *body, const char *code, const char *message);

/* Validate against the repository (fetch, resolve the base), insert the session and its first
 * prompt, and schedule it.  `reply` is called exactly once, from the loop. */
void sv_session_create(sv_server *s, sv_new_session *req, sv_reply_fn reply, void *ctx);

/* Register a repository (clone into a mirror) off the loop; reply as above. */
void sv_repo_register(sv_server *s, const char *url_or_path, const char *name, sv_reply_fn reply, void *ctx);

/* Queue a follow-up; -ENOENT unknown session, -EINVAL when the session is over, -E2BIG too big. */
int sv_session_prompt(sv_server *s, const char *sid, const char *text, int64_t *prompt_id, ns_error *err);

/* Interrupt the current turn (keeps the session); stop (graceful or forced); pause/resume;
 * delete.  Return 0 or -errno (-ENOENT, -EINVAL for a state where it makes no sense). */
int sv_session_interrupt(sv_server *s, const char *sid, ns_error *err);
int sv_session_stop(sv_server *s, const char *sid, bool force, ns_error *err);
int sv_session_pause(sv_server *s, const char *sid, bool pause, ns_error *err);
int sv_session_complete(sv_server *s, const char *sid, ns_error *err);
void sv_session_delete(sv_server *s, const char *sid, sv_reply_fn reply, void *ctx);
/* An ended session (completed, failed, stopped) → archived.  -EINVAL otherwise. */
int sv_session_archive(sv_server *s, const char *sid, ns_error *err);
/* Sessions with a sandbox now (running, idle, provisioning...). */
size_t sv_sessions_live(const sv_server *s);

/* The session as API JSON: written into w (jsonw.h), or as a cJSON tree. */
typedef struct jw jw;
void sv_session_write(jw *w, const db_session *row);
cJSON *sv_session_json(const db_session *row);

/* The sandbox id of a session whose sandbox is up and not being torn down, else NULL (the
 * pointer lives as long as the session's live record: copy it). */
const char *sv_session_live_sandbox(sv_server *s, const char *sid);
/* Up to `cap` sessions with a sandbox up: their ids, sandbox ids and repository ids; returns how
 * many. */
size_t sv_session_live_list(sv_server *s, char (*sids)[SV_ID_LEN + 1], char (*sandboxes)[32 + 1],
                            char (*repos)[SV_ID_LEN + 1], size_t cap);

/* Start: recover live sessions from the database and schedule queued ones. */
int sv_runner_start(sv_server *s, ns_error *err);
/* Periodic work: timeouts, grace periods.  Called from the loop's tick. */
void sv_runner_tick(sv_server *s);
/* Stop reading streams and drop live records (sandboxes keep running for the next start). */
void sv_runner_shutdown(sv_server *s);
