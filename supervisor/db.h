/* nightshift supervisor — the SQLite store: repos, sessions, prompts (the queue), events,
 * artifacts, settings.
 *
 * One `db` is one SQLite connection with its cached prepared statements; use it from one thread
 * at a time and open one per thread (SQLite serialises writers across connections; every write
 * starts with BEGIN IMMEDIATE and waits up to DB_BUSY_TIMEOUT_MS for the lock).  Every connection
 * gets WAL, synchronous=NORMAL, foreign keys, a busy timeout and defensive mode; opening applies pending migrations.
 *
 * Times are milliseconds since the Unix epoch.  Functions return 0 (or a documented non-negative
 * value) or -errno with *err filled: -ENOENT for a missing row, -EEXIST for a duplicate, -EINVAL
 * for a refused value or transition, -EBUSY when the database stayed locked.
 *
 * Transactions: each write function is atomic by itself.  A caller that needs several of them to
 * commit together wraps them in db_begin()/db_commit() (or db_rollback()); inside, the functions
 * use savepoints, so a failing one undoes only its own part and leaves the decision to the caller. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "ids.h"
#include "state.h"

#define DB_FILE_NAME "nightshift.db"
#define DB_BUSY_TIMEOUT_MS 5000
#define DB_PROMPT_MAX_BYTES (256 * 1024)
#define DB_EVENT_DATA_MAX_BYTES (1024 * 1024)

typedef struct db db;

/* Open (creating with mode 0600 if needed) the database at `path`, configure the connection and
 * migrate the schema to the newest version.  Refuses a database whose schema is newer than this
 * build knows (-EPROTO). */
int db_open(const char *path, db **out, ns_error *err);

/* Finalize the cached statements and close the connection.  NULL is allowed. */
void db_close(db *d);

/* This connection no longer checkpoints the write-ahead log when a commit of its own has grown it
 * past 1000 pages (SQLite's automatic checkpoint: pages copied back and an fsync or two, on the
 * committing thread, the event loop's); db_wal_frames says how long the log is after its last
 * commit, and db_checkpoint on another connection (a worker's) copies the log back. */
void db_wal_manual(db *d);
int db_wal_frames(const db *d);
/* A log a checkpoint copied back whole: the next commit starts it again from the beginning. */
void db_wal_frames_reset(db *d);
/* A PASSIVE checkpoint (never waits for readers or writers): copies what it can of the log into
 * the database; *complete when that was all of it. */
int db_checkpoint(db *d, bool *complete, ns_error *err);
static inline void db_closep(db **d) {
        db_close(*d);
}

/* The schema version (PRAGMA user_version) and the newest one this build knows. */
int db_schema_version(db *d, int *out, ns_error *err);
int db_schema_latest(void);

/* The value of a connection setting, for checks and diagnostics: `name` is one of
 * "journal_mode", "synchronous", "foreign_keys", "busy_timeout", "trusted_schema"; *out is a
 * malloc'd string. */
int db_pragma_get(db *d, const char *name, char **out, ns_error *err);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK of a caller-managed transaction (see the header comment). */
int db_begin(db *d, ns_error *err);
int db_commit(db *d, ns_error *err);
void db_rollback(db *d);

/* Wall-clock milliseconds since the epoch. */
int64_t db_now_ms(void);

/* ---- repositories ---------------------------------------------------------------------- */

typedef struct db_repo {
        char id[SV_ID_LEN + 1];
        char *name;
        char *url_or_path;    /* as the mirror fetches it: a canonical absolute path or a URL */
        char *mirror_path;
        char *default_branch; /* may be NULL (an empty repository) */
        int64_t created_at;
} db_repo;

/* Free the strings of *r and zero it; db_repos_free does that for an array of n and frees it. */
void db_repo_clear(db_repo *r);
void db_repos_free(db_repo *v, size_t n);

/* Insert *r.  An empty r->id gets a fresh "r-…" id; created_at 0 becomes now.  Names are unique
 * (-EEXIST). */
int db_repo_insert(db *d, db_repo *r, ns_error *err);
/* Fill *out (owned by the caller, db_repo_clear it) with the repo of that id / name. */
int db_repo_get(db *d, const char *id, db_repo *out, ns_error *err);
int db_repo_get_by_name(db *d, const char *name, db_repo *out, ns_error *err);
/* All repositories, oldest first; *out is an array of *n (db_repos_free). */
int db_repo_list(db *d, db_repo **out, size_t *n, ns_error *err);
int db_repo_set_default_branch(db *d, const char *id, const char *branch, ns_error *err);
/* Delete a repository row; -EBUSY while sessions still refer to it. */
int db_repo_delete(db *d, const char *id, ns_error *err);

/* ---- sessions -------------------------------------------------------------------------- */

typedef struct db_session {
        char id[SV_ID_LEN + 1];
        char repo_id[SV_ID_LEN + 1];
        char *base_ref;
        char *base_sha;          /* NULL until resolved */
        char *branch;            /* "nightshift/<id>" */
        char *agent;             /* command | claude | codex | opencode */
        sv_state state;
        char *state_reason;
        char *title;
        bool once;
        char *model;
        char *network;           /* none | private | proxy | nat */
        char *limits_json;
        char *env_json;
        char *sandbox_id;
        char *workspace_path;
        char *gitdir_path;
        int64_t created_at, updated_at, started_at, ended_at; /* 0 = not yet */
        char *agent_session_ref; /* e.g. claude's session id for --resume */
        char *proc_id;           /* sandboxd exec id of the running agent process */
        int64_t output_offset;   /* bytes of that process's output already turned into events */
        char *last_commit_sha;
} db_session;

/* Free the strings of *s and zero it; db_sessions_free does that for an array of n and frees it. */
void db_session_clear(db_session *s);
void db_sessions_free(db_session *v, size_t n);

/* Insert a new session in state `queued` together with its first `status` event.  An empty
 * s->id gets a fresh "s-…" id; a NULL branch becomes "nightshift/<id>"; NULL network "none";
 * timestamps are set to now.  The repo must exist (-ENOENT). */
int db_session_insert(db *d, db_session *s, ns_error *err);
int db_session_get(db *d, const char *id, db_session *out, ns_error *err);

typedef struct db_session_filter {
        const char *repo_id; /* NULL = any */
        unsigned state_mask; /* bit (1u << sv_state); 0 = any */
        size_t limit;        /* 0 = no limit */
        const char *after_id;     /* paging: only sessions after (after_created_at, after_id) */
        int64_t after_created_at;
} db_session_filter;
/* Sessions matching the filter (NULL = all), oldest first. */
int db_session_list(db *d, const db_session_filter *f, db_session **out, size_t *n, ns_error *err);

/* Move session `id` to state `to` with `reason` (may be NULL), in one transaction with the
 * `status` event {"from","to","reason","time"} that records it.  Sets started_at on the first
 * entry into running and ended_at on completed/failed/stopped.  An illegal transition (state.c)
 * is refused with -EINVAL and nothing is written.  `expect_from` >= 0 additionally requires the
 * current state to be exactly that (-ESTALE otherwise), for compare-and-set callers; pass -1 to
 * skip.  The appended event's id and seq go to *ev_id / *ev_seq when non-NULL. */
int db_session_set_state(db *d, const char *id, sv_state to, const char *reason, int expect_from,
                         int64_t *ev_id, int64_t *ev_seq, ns_error *err);

/* Single-column updates of a session's runtime fields (NULL clears a text field). */
int db_session_set_base_sha(db *d, const char *id, const char *sha, ns_error *err);
int db_session_set_sandbox(db *d, const char *id, const char *sandbox_id, const char *workspace_path,
                           const char *gitdir_path, ns_error *err);
int db_session_set_agent_ref(db *d, const char *id, const char *agent_session_ref, ns_error *err);
/* The agent process and how much of its output has been consumed (restart-safe re-attach).
 * Prefer db_events_append_batch's `mark` to advance the offset in the same transaction as the
 * events made from that output. */
int db_session_set_proc(db *d, const char *id, const char *proc_id, int64_t output_offset, ns_error *err);
int db_session_set_last_commit(db *d, const char *id, const char *sha, ns_error *err);
/* Delete a session row; its prompts, events and artifacts go with it (ON DELETE CASCADE). */
int db_session_delete(db *d, const char *id, ns_error *err);

/* ---- prompts (the per-session queue) --------------------------------------------------- */

typedef enum db_prompt_state { DB_PROMPT_QUEUED, DB_PROMPT_RUNNING, DB_PROMPT_DONE, DB_PROMPT_CANCELLED } db_prompt_state;

typedef struct db_prompt {
        int64_t id;
        char session_id[SV_ID_LEN + 1];
        int64_t seq; /* 1, 2, ... per session: the order prompts go to the agent */
        char *text;
        db_prompt_state state;
        int64_t created_at, updated_at;
} db_prompt;

/* Free p->text and zero *p; db_prompts_free does that for an array of n and frees it. */
void db_prompt_clear(db_prompt *p);
void db_prompts_free(db_prompt *v, size_t n);
/* "queued", "running", "done", "cancelled"; NULL out of range. */
const char *db_prompt_state_name(db_prompt_state s);

/* Queue `text` (1..DB_PROMPT_MAX_BYTES bytes, -E2BIG beyond) for session `sid`. */
int db_prompt_enqueue(db *d, const char *sid, const char *text, int64_t *id_out, int64_t *seq_out,
                      ns_error *err);
/* The oldest queued prompt of `sid` into *out, or -ENOENT.  With `claim`, it is marked running in
 * the same transaction; -EBUSY if another prompt of the session is already running. */
int db_prompt_next(db *d, const char *sid, bool claim, db_prompt *out, ns_error *err);
/* queued → cancelled; -EBUSY when the prompt is no longer queued. */
int db_prompt_cancel(db *d, int64_t id, ns_error *err);
/* Legal moves: queued → running | cancelled, running → done | cancelled; else -EINVAL. */
int db_prompt_mark(db *d, int64_t id, db_prompt_state to, ns_error *err);
/* All prompts of `sid` in seq order. */
int db_prompt_list(db *d, const char *sid, db_prompt **out, size_t *n, ns_error *err);

/* ---- events ---------------------------------------------------------------------------- */

typedef struct db_event_in {
        const char *session_id;
        const char *type; /* one of DESIGN.md's event types (db_event_type_valid) */
        const char *data; /* a JSON text, at most DB_EVENT_DATA_MAX_BYTES; NULL = "{}" */
        int64_t ts;       /* 0 = now */
} db_event_in;

/* Advance a session's output_offset in the same transaction as a batch of events. */
typedef struct db_output_mark {
        const char *session_id;
        const char *proc_id;
        int64_t output_offset;
} db_output_mark;

typedef struct db_event {
        int64_t id;  /* global, monotonic across sessions, never reused */
        int64_t seq; /* per session, 1, 2, ... */
        int64_t ts;
        char session_id[SV_ID_LEN + 1];
        char *type;
        char *data;
} db_event;

/* Free an array of n events as returned by the db_events_after_* functions. */
void db_events_free(db_event *v, size_t n);
/* True for one of DESIGN.md's event types: message, tool_call, tool_result, command_output,
 * status, question, commit, push, pr, preview, egress, error, usage. */
bool db_event_type_valid(const char *type);

/* Append one event; its id and seq (max + 1 for the session) go to *id_out / *seq_out. */
int db_event_append(db *d, const char *sid, const char *type, const char *data, int64_t *id_out,
                    int64_t *seq_out, ns_error *err);
/* Append n events (any mix of sessions) in one transaction; ids/seqs into ids_out/seqs_out
 * (arrays of n, each may be NULL).  With `mark`, that session's proc_id/output_offset are updated
 * in the same transaction, so events made from process output are never lost or duplicated
 * across a restart.  All or nothing. */
int db_events_append_batch(db *d, const db_event_in *ev, size_t n, const db_output_mark *mark,
                           int64_t *ids_out, int64_t *seqs_out, ns_error *err);
/* Several batches, each stored as db_events_append_batch stores one (its events and its mark,
 * all or nothing), in ONE transaction: one commit for all.  A group that fails is undone alone
 * (its rc and err say why) and the others are stored.  Returns 0, or -errno when the transaction
 * itself failed: then nothing is stored and every group's rc says so.  Does not run the event
 * barrier (it is what a barrier calls). */
typedef struct db_event_group {
        const db_event_in *ev;
        size_t n;
        const db_output_mark *mark; /* NULL: none */
        int rc;                     /* out: 0 or -errno */
        ns_error err;               /* out, when rc < 0 */
} db_event_group;
int db_events_append_groups(db *d, db_event_group *g, size_t n, ns_error *err);
/* A function run before an event is written on this connection (db_events_append_batch,
 * db_event_append, db_session_set_state's status event), not again from inside itself: the
 * session runner stores there the output events it holds back for a few milliseconds
 * (session.c), so that every event of a session gets its seq in the order things happened.
 * fn NULL removes it. */
void db_set_event_barrier(db *d, void (*fn)(void *ctx), void *ctx);
/* The id of the newest event (0 when there is none). */
int db_events_max_id(db *d, int64_t *out, ns_error *err);
/* Events of session `sid` with seq > after_seq, in seq order, at most `limit` (0 → 1000). */
int db_events_after_seq(db *d, const char *sid, int64_t after_seq, size_t limit, db_event **out,
                        size_t *n, ns_error *err);
/* Events of all sessions with id > after_id, in id order, at most `limit` (0 → 1000). */
int db_events_after_id(db *d, int64_t after_id, size_t limit, db_event **out, size_t *n, ns_error *err);

/* ---- artifacts and settings ------------------------------------------------------------ */

/* Record an artifact (a file the session produced, a log, a snapshot...) of session `sid`.
 * `data` is optional JSON metadata. */
int db_artifact_add(db *d, const char *sid, const char *kind, const char *name, const char *path,
                    int64_t size, const char *data, int64_t *id_out, ns_error *err);

/* *value_out = a malloc'd copy of the setting, or -ENOENT. */
int db_setting_get(db *d, const char *key, char **value_out, ns_error *err);
int db_setting_set(db *d, const char *key, const char *value, ns_error *err);
int db_setting_delete(db *d, const char *key, ns_error *err);

/* ---- tokens and login sessions (db_auth.c) ------------------------------------------------ */

#define DB_TOKEN_HASH_LEN 32

typedef struct db_token {
        char id[SV_ID_LEN + 1];
        char *name;
        int64_t created_at, last_used_at, revoked_at; /* 0 = never */
        char scope[8]; /* "api": every route; "hook": POST /api/v1/hooks/generic only (auth.c) */
} db_token;
void db_token_clear(db_token *t);
void db_tokens_free(db_token *v, size_t n);

/* Store a new token by the hash of its value; its id into t->id.  `scope` "api" (NULL) or "hook".
 * -EEXIST when `name` is taken, -EINVAL for another scope. */
int db_token_insert(db *d, const char *name, const char *scope, const uint8_t hash[DB_TOKEN_HASH_LEN], db_token *out,
                    ns_error *err);

/* The live (not revoked) token with this hash.  -ENOENT when there is none. */
int db_token_by_hash(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], db_token *out, ns_error *err);

/* Every token, newest first, revoked ones included (values are never stored). */
int db_token_list(db *d, db_token **out, size_t *n, ns_error *err);

/* Revoke the token named (or with the id) `name_or_id` and end its login sessions.  -ENOENT when
 * there is no such live token. */
int db_token_revoke(db *d, const char *name_or_id, ns_error *err);

/* Record a use (at most once a minute per token is enough: the caller decides). */
int db_token_touch(db *d, const char *id, int64_t now_ms, ns_error *err);

/* A login session for token `token_id`, by the hash of its cookie value. */
int db_websession_insert(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], const char *token_id, int64_t expires_at,
                         ns_error *err);
/* The token behind a live (unexpired, token not revoked) login session.  -ENOENT otherwise. */
int db_websession_token(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], int64_t now_ms, db_token *out, ns_error *err);
int db_websession_delete(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], ns_error *err);

/* ---- aggregates for the API (db_query.c) --------------------------------------------------- */

/* What changes whenever anything in the database changes: commits of other connections (SQLite's
 * data_version) and this connection's own row changes.  Equal generations mean equal contents. */
typedef struct db_generation_t {
        int64_t others, own;
} db_generation_t;
int db_generation(db *d, db_generation_t *out, ns_error *err);

/* Sessions per state: counts[sv_state]. */
int db_session_counts(db *d, int64_t counts[SV_STATE_COUNT], ns_error *err);
/* Prompts waiting in every session's queue. */
int db_prompts_queued(db *d, int64_t *out, ns_error *err);

typedef struct db_artifact {
        int64_t id;
        char *kind, *name, *path, *data;
        int64_t size; /* -1 unknown */
        int64_t created_at;
} db_artifact;
void db_artifacts_free(db_artifact *v, size_t n);
/* The artifacts of session `sid`, oldest first. */
int db_artifact_list(db *d, const char *sid, db_artifact **out, size_t *n, ns_error *err);
