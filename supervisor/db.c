#include "db.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "db_int.h"

/* ---- schema ----------------------------------------------------------------------------- */

/* Versioned migrations: migrations[i] takes the schema from version i to i + 1 and runs in one
 * BEGIN IMMEDIATE transaction together with the PRAGMA user_version bump.  Append only: never
 * edit an entry that has shipped. */
static const char *const migrations[] = {
        /* 1: the initial schema */
        "CREATE TABLE repos ("
        "  id TEXT PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  url_or_path TEXT NOT NULL,"
        "  mirror_path TEXT NOT NULL,"
        "  default_branch TEXT,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE TABLE sessions ("
        "  id TEXT PRIMARY KEY,"
        "  repo_id TEXT NOT NULL REFERENCES repos(id),"
        "  base_ref TEXT NOT NULL,"
        "  base_sha TEXT,"
        "  branch TEXT NOT NULL,"
        "  agent TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN ('queued','provisioning','running','idle','waiting',"
        "                                       'paused','completed','failed','stopped','archived')),"
        "  state_reason TEXT,"
        "  title TEXT,"
        "  once INTEGER NOT NULL DEFAULT 0 CHECK (once IN (0, 1)),"
        "  model TEXT,"
        "  network TEXT NOT NULL DEFAULT 'none',"
        "  limits_json TEXT CHECK (limits_json IS NULL OR json_valid(limits_json)),"
        "  env_json TEXT CHECK (env_json IS NULL OR json_valid(env_json)),"
        "  sandbox_id TEXT,"
        "  workspace_path TEXT,"
        "  gitdir_path TEXT,"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  started_at INTEGER,"
        "  ended_at INTEGER,"
        "  agent_session_ref TEXT,"
        "  proc_id TEXT,"
        "  output_offset INTEGER NOT NULL DEFAULT 0 CHECK (output_offset >= 0),"
        "  last_commit_sha TEXT"
        ") STRICT;"
        "CREATE INDEX sessions_by_repo ON sessions(repo_id);"
        "CREATE INDEX sessions_by_state ON sessions(state);"
        "CREATE TABLE prompts ("
        "  id INTEGER PRIMARY KEY,"
        "  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
        "  seq INTEGER NOT NULL,"
        "  text TEXT NOT NULL CHECK (length(CAST(text AS BLOB)) BETWEEN 1 AND 262144),"
        "  state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','running','done','cancelled')),"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  UNIQUE (session_id, seq)"
        ") STRICT;"
        "CREATE INDEX prompts_queued ON prompts(session_id, seq) WHERE state = 'queued';"
        /* AUTOINCREMENT: the global event id must never be reused, even after the newest events
         * are deleted, or a client resuming "after id N" would miss events. */
        "CREATE TABLE events ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
        "  seq INTEGER NOT NULL,"
        "  ts INTEGER NOT NULL,"
        "  type TEXT NOT NULL,"
        "  data TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data)),"
        "  UNIQUE (session_id, seq)"
        ") STRICT;"
        "CREATE TABLE artifacts ("
        "  id INTEGER PRIMARY KEY,"
        "  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
        "  kind TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  path TEXT,"
        "  size INTEGER,"
        "  data TEXT CHECK (data IS NULL OR json_valid(data)),"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE INDEX artifacts_by_session ON artifacts(session_id);"
        "CREATE TABLE settings ("
        "  key TEXT PRIMARY KEY,"
        "  value TEXT NOT NULL"
        ") STRICT;",
        /* 2: API tokens (only their SHA-256 is kept) and the browser's login sessions, each tied
         * to the token it was opened with (revoking the token ends them). */
        "CREATE TABLE tokens ("
        "  id TEXT PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),"
        "  hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),"
        "  created_at INTEGER NOT NULL,"
        "  last_used_at INTEGER,"
        "  revoked_at INTEGER"
        ") STRICT;"
        "CREATE TABLE web_sessions ("
        "  hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
        "  token_id TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,"
        "  created_at INTEGER NOT NULL,"
        "  expires_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE INDEX web_sessions_by_token ON web_sessions(token_id);",
        /* 3 (vault.c): secrets, sealed with XChaCha20-Poly1305 (nonce + ciphertext and tag), global
         * (repo_id NULL) or per repository (gone with it); one name per scope. */
        "CREATE TABLE secrets ("
        "  repo_id TEXT REFERENCES repos(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
        "  nonce BLOB NOT NULL CHECK (length(nonce) = 24),"
        "  sealed BLOB NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE UNIQUE INDEX secrets_by_scope_name ON secrets(coalesce(repo_id, ''), name);",
        /* 4 (hooks.c, notify.c): the triggers' delivery ids seen (a replay is refused), and the
         * outgoing notifications' delivery log. */
        "CREATE TABLE hook_deliveries ("
        "  source TEXT NOT NULL,"
        "  delivery TEXT NOT NULL CHECK (length(delivery) BETWEEN 1 AND 80),"
        "  received_at INTEGER NOT NULL,"
        "  PRIMARY KEY (source, delivery)"
        ") STRICT;"
        "CREATE TABLE notifications ("
        "  id INTEGER PRIMARY KEY,"
        "  session_id TEXT NOT NULL,"
        "  event TEXT NOT NULL,"
        "  url TEXT NOT NULL,"
        "  status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  last_code INTEGER,"
        "  last_error TEXT,"
        "  created_at INTEGER NOT NULL,"
        "  finished_at INTEGER"
        ") STRICT;",
        /* 5 (notify.c, hooks_linear.c, auth.c): where notifications go (each endpoint's URL,
         * format, events, optional repository and the vault secret that signs its JSON); the
         * delivery log's retry state and payload (redacted before it is stored); the hook
         * deliveries' age index for pruning; a token's scope ('hook': POST /api/v1/hooks/generic
         * only). */
        "CREATE TABLE notify_endpoints ("
        "  id TEXT PRIMARY KEY,"
        "  url TEXT NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),"
        "  format TEXT NOT NULL CHECK (format IN ('slack', 'json')),"
        "  events TEXT NOT NULL,"
        "  repo_id TEXT REFERENCES repos(id) ON DELETE CASCADE,"
        "  secret TEXT,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "ALTER TABLE notifications ADD COLUMN endpoint_id TEXT;"
        "ALTER TABLE notifications ADD COLUMN format TEXT NOT NULL DEFAULT 'json';"
        "ALTER TABLE notifications ADD COLUMN secret TEXT;"
        "ALTER TABLE notifications ADD COLUMN payload TEXT;"
        "ALTER TABLE notifications ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE notifications ADD COLUMN updated_at INTEGER;"
        "CREATE INDEX notifications_due ON notifications(next_at) WHERE status = 'pending';"
        "CREATE INDEX hook_deliveries_by_age ON hook_deliveries(received_at);"
        "ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'api' CHECK (scope IN ('api', 'hook'));",
        /* 6 (preview.c): previews outlive a restart of the supervisor, as their sandboxes and
         * sandboxd's publishes do; only the token's hash is kept. */
        "CREATE TABLE previews ("
        "  id TEXT PRIMARY KEY,"
        "  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
        "  sandbox TEXT NOT NULL,"
        "  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),"
        "  host_port INTEGER NOT NULL,"
        "  token_hash BLOB NOT NULL,"
        "  automatic INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;",
};

int db_schema_latest(void) {
        return (int) ARRAY_SIZE(migrations);
}

/* ---- statements ------------------------------------------------------------------------- */

#define SESSION_COLS                                                                              \
        "id, repo_id, base_ref, base_sha, branch, agent, state, state_reason, title, once, model, " \
        "network, limits_json, env_json, sandbox_id, workspace_path, gitdir_path, created_at, "     \
        "updated_at, started_at, ended_at, agent_session_ref, proc_id, output_offset, last_commit_sha"
#define REPO_COLS "id, name, url_or_path, mirror_path, default_branch, created_at"
#define PROMPT_COLS "id, session_id, seq, text, state, created_at, updated_at"
#define EVENT_COLS "id, session_id, seq, ts, type, data"



static const char *const stmt_sql[ST__COUNT] = {
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_SAVEPOINT] = "SAVEPOINT ns_sp",
        [ST_RELEASE] = "RELEASE ns_sp",
        [ST_ROLLBACK_TO] = "ROLLBACK TO ns_sp",
        [ST_EVENT_INSERT] =
                "INSERT INTO events (session_id, seq, ts, type, data) VALUES "
                "(?1, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE session_id = ?1), ?2, ?3, ?4) "
                "RETURNING id, seq",
        [ST_EVENTS_AFTER_SEQ] = "SELECT " EVENT_COLS " FROM events WHERE session_id = ?1 AND seq > ?2 "
                                "ORDER BY seq LIMIT ?3",
        [ST_EVENTS_AFTER_ID] = "SELECT " EVENT_COLS " FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        [ST_SESSION_OUTPUT_MARK] = "UPDATE sessions SET proc_id = ?2, output_offset = ?3, updated_at = ?4 "
                                   "WHERE id = ?1",
        [ST_SESSION_GET] = "SELECT " SESSION_COLS " FROM sessions WHERE id = ?1",
        [ST_SESSION_STATE_GET] = "SELECT state, started_at FROM sessions WHERE id = ?1",
        [ST_SESSION_STATE_SET] =
                "UPDATE sessions SET state = ?2, state_reason = ?3, updated_at = ?4, "
                "started_at = coalesce(started_at, ?5), ended_at = coalesce(?6, ended_at) WHERE id = ?1",
        [ST_REPO_GET] = "SELECT " REPO_COLS " FROM repos WHERE id = ?1",
        [ST_REPO_GET_BY_NAME] = "SELECT " REPO_COLS " FROM repos WHERE name = ?1",
        [ST_PROMPT_NEXT] = "SELECT " PROMPT_COLS " FROM prompts WHERE session_id = ?1 AND state = 'queued' "
                           "ORDER BY seq LIMIT 1",
        [ST_PROMPT_GET] = "SELECT " PROMPT_COLS " FROM prompts WHERE id = ?1",
        [ST_PROMPT_SET_STATE] = "UPDATE prompts SET state = ?2, updated_at = ?3 WHERE id = ?1",
        [ST_DATA_VERSION] = "PRAGMA data_version",
        [ST_TOKEN_BY_HASH] = "SELECT id, name, created_at, last_used_at, revoked_at, scope FROM tokens "
                             "WHERE hash = ?1 AND revoked_at IS NULL",
        [ST_SESSION_LIST] = "SELECT " SESSION_COLS " FROM sessions WHERE (?1 IS NULL OR repo_id = ?1) "
                            "AND (?2 IS NULL OR (created_at, id) > (?3, ?2)) ORDER BY created_at, id",
};



static int sqlite_errno(int rc) {
        switch (rc) {
        case SQLITE_BUSY:
        case SQLITE_BUSY_SNAPSHOT:
        case SQLITE_BUSY_RECOVERY:
        case SQLITE_LOCKED: return EBUSY;
        case SQLITE_NOMEM: return ENOMEM;
        case SQLITE_READONLY: return EROFS;
        case SQLITE_FULL: return ENOSPC;
        case SQLITE_CANTOPEN: return EACCES;
        case SQLITE_TOOBIG: return E2BIG;
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY: return EEXIST;
        case SQLITE_CONSTRAINT_FOREIGNKEY: return ENOENT;
        case SQLITE_CONSTRAINT_CHECK:
        case SQLITE_CONSTRAINT_NOTNULL:
        case SQLITE_MISMATCH:
        case SQLITE_RANGE: return EINVAL;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB: return EBADMSG;
        default:
                if ((rc & 0xff) == SQLITE_CONSTRAINT)
                        return EINVAL;
                if ((rc & 0xff) == SQLITE_BUSY)
                        return EBUSY;
                return EIO;
        }
}

int db_sql_err(db *d, int rc, ns_error *err, const char *what) {
        return ns_err(err, sqlite_errno(rc), "%s: %s", what, d && d->conn ? sqlite3_errmsg(d->conn) : sqlite3_errstr(rc));
}

/* A cached statement, ready to bind.  The caller resets it through _cleanup_(db_stmt_resetp). */
int db_stmt_get(db *d, enum stmt_id id, sqlite3_stmt **out, ns_error *err) {
        if (!d->stmts[id]) {
                int rc = sqlite3_prepare_v3(d->conn, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->stmts[id], NULL);
                if (rc != SQLITE_OK)
                        return db_sql_err(d, rc, err, "prepare");
        }
        *out = d->stmts[id];
        return 0;
}

void db_stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}
void db_stmt_finalizep(sqlite3_stmt **st) {
        sqlite3_finalize(*st);
}

/* A one-off statement (cold paths), finalized through _cleanup_(db_stmt_finalizep). */
int db_stmt_prepare(db *d, const char *sql, sqlite3_stmt **out, ns_error *err) {
        int rc = sqlite3_prepare_v2(d->conn, sql, -1, out, NULL);
        if (rc != SQLITE_OK)
                return db_sql_err(d, rc, err, "prepare");
        return 0;
}

/* Run a statement that returns no rows (or whose rows are ignored) to completion. */
int db_stmt_run(db *d, sqlite3_stmt *st, ns_error *err, const char *what) {
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                ;
        if (rc != SQLITE_DONE)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, what);
        return 0;
}

static int exec_cached(db *d, enum stmt_id id, ns_error *err) {
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, id, &st, err);
        if (r < 0)
                return r;
        return db_stmt_run(d, st, err, stmt_sql[id]);
}

int db_bind_text(sqlite3_stmt *st, int i, const char *s) {
        return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Duplicate a text column; NULL column → *out = NULL.  -ENOMEM on allocation failure. */
int db_col_dup(sqlite3_stmt *st, int i, char **out) {
        const unsigned char *s = sqlite3_column_text(st, i);
        if (!s) {
                *out = NULL;
                return 0;
        }
        *out = strdup((const char *) s);
        return *out ? 0 : -ENOMEM;
}

void db_col_copy_id(sqlite3_stmt *st, int i, char out[SV_ID_LEN + 1]) {
        const unsigned char *s = sqlite3_column_text(st, i);
        snprintf(out, SV_ID_LEN + 1, "%s", s ? (const char *) s : "");
}

int64_t db_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- transactions ----------------------------------------------------------------------- */

/* Each write function is atomic: at top level it owns a BEGIN IMMEDIATE transaction (read-then-
 * write under the write lock, so no SQLITE_BUSY_SNAPSHOT), inside a caller's transaction it uses
 * a savepoint so that a failure undoes only its own writes. */

int db_tx_begin(db *d, db_tx *t, ns_error *err) {
        t->nested = !sqlite3_get_autocommit(d->conn);
        int r = exec_cached(d, t->nested ? ST_SAVEPOINT : ST_BEGIN, err);
        t->open = r == 0;
        return r;
}

/* Commit (r == 0) or roll back (r < 0) what db_tx_begin started; returns r or the commit error. */
int db_tx_end(db *d, db_tx *t, int r, ns_error *err) {
        if (!t->open)
                return r;
        t->open = false;
        if (r >= 0) {
                int c = exec_cached(d, t->nested ? ST_RELEASE : ST_COMMIT, err);
                if (c == 0)
                        return r;
                r = c;
        }
        if (t->nested) {
                (void) exec_cached(d, ST_ROLLBACK_TO, NULL);
                (void) exec_cached(d, ST_RELEASE, NULL);
        } else if (!sqlite3_get_autocommit(d->conn)) {
                (void) exec_cached(d, ST_ROLLBACK, NULL);
        }
        return r;
}

int db_begin(db *d, ns_error *err) {
        if (!sqlite3_get_autocommit(d->conn))
                return ns_err(err, EBUSY, "a transaction is already open on this connection");
        return exec_cached(d, ST_BEGIN, err);
}

int db_commit(db *d, ns_error *err) {
        return exec_cached(d, ST_COMMIT, err);
}

void db_rollback(db *d) {
        if (!sqlite3_get_autocommit(d->conn))
                (void) exec_cached(d, ST_ROLLBACK, NULL);
}

/* ---- open, configure, migrate ----------------------------------------------------------- */

static int exec_sql(db *d, const char *sql, ns_error *err) {
        char *msg = NULL;
        int rc = sqlite3_exec(d->conn, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
                int r = ns_err(err, sqlite_errno(sqlite3_extended_errcode(d->conn)), "%.60s: %s", sql,
                               msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return r;
        }
        return 0;
}

int db_schema_version(db *d, int *out, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "PRAGMA user_version", &st, err);
        if (r < 0)
                return r;
        if (sqlite3_step(st) != SQLITE_ROW)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "PRAGMA user_version");
        *out = sqlite3_column_int(st, 0);
        return 0;
}

int db_pragma_get(db *d, const char *name, char **out, ns_error *err) {
        static const char *const allowed[] = { "journal_mode", "synchronous", "foreign_keys", "busy_timeout",
                                               "trusted_schema" };
        *out = NULL;
        bool known = false;
        for (size_t i = 0; name && i < ARRAY_SIZE(allowed); i++)
                known |= strcmp(name, allowed[i]) == 0;
        if (!known)
                return ns_err(err, EINVAL, "unknown pragma '%s'", name ? name : "");
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA %s", name);
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, sql, &st, err);
        if (r < 0)
                return r;
        if (sqlite3_step(st) != SQLITE_ROW)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, sql);
        if (db_col_dup(st, 0, out) < 0 || !*out)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

static int db_migrate(db *d, ns_error *err) {
        int latest = db_schema_latest(), v;
        int r = db_schema_version(d, &v, err);
        if (r < 0)
                return r;
        if (v > latest)
                return ns_err(err, EPROTO, "database schema version %d is newer than this build's %d", v, latest);
        while (v < latest) {
                r = exec_cached(d, ST_BEGIN, err);
                if (r < 0)
                        return r;
                /* Another process or connection may have migrated between our read and our lock. */
                r = db_schema_version(d, &v, err);
                if (r == 0 && v < latest) {
                        char bump[64];
                        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
                        r = exec_sql(d, migrations[v], err);
                        if (r == 0)
                                r = exec_sql(d, bump, err);
                        if (r < 0)
                                ns_err_wrap(err, "migration %d", v + 1);
                }
                if (r < 0) {
                        db_rollback(d);
                        return r;
                }
                r = exec_cached(d, ST_COMMIT, err);
                if (r < 0) {
                        db_rollback(d);
                        return r;
                }
                r = db_schema_version(d, &v, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int db_open(const char *path, db **out, ns_error *err) {
        *out = NULL;
        /* Create the file ourselves so that it (and the -wal/-shm files SQLite derives from its
         * mode) is private to the supervisor's user: sessions' env_json may hold secrets.  Only
         * when it does not exist yet: closing any descriptor of the file drops every POSIX lock
         * this process holds on it, including those of the connections already open (each worker
         * has one), after which another process closing its connection (`nightshift token`, a
         * sqlite3 shell) believes it is the last one and deletes the WAL under us. */
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "create %s", path);
        if (fd >= 0)
                close(fd);

        _cleanup_(db_closep) db *d = calloc(1, sizeof *d);
        if (!d)
                return ns_err(err, ENOMEM, "out of memory");
        int rc = sqlite3_open_v2(path, &d->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return db_sql_err(d, rc, err, path);
        sqlite3_extended_result_codes(d->conn, 1);
        sqlite3_busy_timeout(d->conn, DB_BUSY_TIMEOUT_MS);
        /* Defence in depth: no writes to the schema or to the raw file through ordinary SQL.
         * (trusted_schema stays on: the CHECK constraints use json_valid(), which SQLite 3.40 does
         * not mark innocuous; the file is ours, mode 0600.) */
        sqlite3_db_config(d->conn, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

        /* journal_mode persists in the file; synchronous and foreign_keys are per connection and
         * must be set on every one (synchronous would default to FULL here). */
        int r = exec_sql(d, "PRAGMA journal_mode = WAL", err);
        if (r == 0)
                r = exec_sql(d, "PRAGMA synchronous = NORMAL", err);
        if (r == 0)
                r = exec_sql(d, "PRAGMA foreign_keys = ON", err);
        if (r == 0)
                r = db_migrate(d, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(d);
        return 0;
}

void db_close(db *d) {
        if (!d)
                return;
        for (size_t i = 0; i < ST__COUNT; i++)
                sqlite3_finalize(d->stmts[i]);
        sqlite3_close_v2(d->conn);
        free(d);
}

static int wal_hook(void *arg, sqlite3 *conn, const char *name, int frames) {
        (void) conn, (void) name;
        ((db *) arg)->wal_frames = frames;
        return SQLITE_OK;
}

void db_wal_manual(db *d) {
        sqlite3_wal_hook(d->conn, wal_hook, d); /* replaces the automatic checkpoint's hook */
}

int db_wal_frames(const db *d) {
        return d->wal_frames;
}

void db_wal_frames_reset(db *d) {
        d->wal_frames = 0;
}

int db_checkpoint(db *d, bool *complete, ns_error *err) {
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(d->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                return db_sql_err(d, rc, err, "checkpoint");
        *complete = rc == SQLITE_OK && done == log;
        return 0;
}

/* ---- repos ------------------------------------------------------------------------------ */

void db_repo_clear(db_repo *r) {
        if (!r)
                return;
        free(r->name);
        free(r->url_or_path);
        free(r->mirror_path);
        free(r->default_branch);
        memset(r, 0, sizeof *r);
}

void db_repos_free(db_repo *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                db_repo_clear(&v[i]);
        free(v);
}

static int repo_from_row(sqlite3_stmt *st, db_repo *r) {
        memset(r, 0, sizeof *r);
        db_col_copy_id(st, 0, r->id);
        if (db_col_dup(st, 1, &r->name) < 0 || db_col_dup(st, 2, &r->url_or_path) < 0 ||
            db_col_dup(st, 3, &r->mirror_path) < 0 || db_col_dup(st, 4, &r->default_branch) < 0) {
                db_repo_clear(r);
                return -ENOMEM;
        }
        r->created_at = sqlite3_column_int64(st, 5);
        return 0;
}

int db_repo_insert(db *d, db_repo *r, ns_error *err) {
        if (!r->name || !r->url_or_path || !r->mirror_path)
                return ns_err(err, EINVAL, "repo needs a name, a url or path, and a mirror path");
        if (!r->id[0]) {
                int q = sv_id_new(SV_ID_PREFIX_REPO, r->id, err);
                if (q < 0)
                        return q;
        } else if (!sv_id_valid(r->id, SV_ID_PREFIX_REPO)) {
                return ns_err(err, EINVAL, "invalid repo id '%s'", r->id);
        }
        if (!r->created_at)
                r->created_at = db_now_ms();
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int q = db_stmt_prepare(d, "INSERT INTO repos (" REPO_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &st, err);
        if (q < 0)
                return q;
        db_bind_text(st, 1, r->id);
        db_bind_text(st, 2, r->name);
        db_bind_text(st, 3, r->url_or_path);
        db_bind_text(st, 4, r->mirror_path);
        db_bind_text(st, 5, r->default_branch);
        sqlite3_bind_int64(st, 6, r->created_at);
        q = db_stmt_run(d, st, err, "insert repo");
        if (q == -EEXIST)
                return ns_err(err, EEXIST, "a repository named '%s' already exists", r->name);
        return q;
}

static int repo_get_by(db *d, enum stmt_id id, const char *key, db_repo *out, ns_error *err) {
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, id, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, key);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return ns_err(err, ENOENT, "repository '%s' not found", key);
        if (rc != SQLITE_ROW)
                return db_sql_err(d, rc, err, "get repo");
        if (repo_from_row(st, out) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

int db_repo_get(db *d, const char *id, db_repo *out, ns_error *err) {
        return repo_get_by(d, ST_REPO_GET, id, out, err);
}

int db_repo_get_by_name(db *d, const char *name, db_repo *out, ns_error *err) {
        return repo_get_by(d, ST_REPO_GET_BY_NAME, name, out, err);
}

/* Grow *v (of *cap elements of size `sz`) to hold at least n + 1. */
static int grow(void **v, size_t *cap, size_t n, size_t sz) {
        if (n < *cap)
                return 0;
        size_t ncap = *cap ? *cap * 2 : 16;
        void *p = realloc(*v, ncap * sz);
        if (!p)
                return -ENOMEM;
        memset((char *) p + *cap * sz, 0, (ncap - *cap) * sz);
        *v = p;
        *cap = ncap;
        return 0;
}

/* Defines `static int NAME(db *d, sqlite3_stmt *st, TYPE **out, size_t *n, ns_error *err)`: steps
 * `st` to its end, converting each row with FROM_ROW into a growing array that FREE releases on
 * failure. */
#define DEFINE_COLLECT(NAME, TYPE, FROM_ROW, FREE, WHAT)                                          \
        static int NAME(db *d, sqlite3_stmt *st, TYPE **out, size_t *n, ns_error *err) {          \
                TYPE *v = NULL;                                                                   \
                size_t cap = 0, cnt = 0;                                                          \
                int rc;                                                                           \
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {                                   \
                        if (grow((void **) &v, &cap, cnt, sizeof *v) < 0 || FROM_ROW(st, &v[cnt]) < 0) { \
                                FREE(v, cnt);                                                     \
                                return ns_err(err, ENOMEM, "out of memory");                      \
                        }                                                                         \
                        cnt++;                                                                    \
                }                                                                                 \
                if (rc != SQLITE_DONE) {                                                          \
                        FREE(v, cnt);                                                             \
                        return db_sql_err(d, rc, err, WHAT);                                      \
                }                                                                                 \
                *out = v;                                                                         \
                *n = cnt;                                                                         \
                return 0;                                                                         \
        }

DEFINE_COLLECT(collect_repos, db_repo, repo_from_row, db_repos_free, "list repos")

int db_repo_list(db *d, db_repo **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT " REPO_COLS " FROM repos ORDER BY created_at, id", &st, err);
        if (r < 0)
                return r;
        return collect_repos(d, st, out, n, err);
}

/* UPDATE that must hit exactly one row (else -ENOENT "<what> '<key>' not found"). */
static int update_one(db *d, sqlite3_stmt *st, const char *what, const char *key, ns_error *err) {
        int r = db_stmt_run(d, st, err, what);
        if (r < 0)
                return r;
        if (sqlite3_changes(d->conn) != 1)
                return ns_err(err, ENOENT, "%s '%s' not found", what, key);
        return 0;
}

int db_repo_set_default_branch(db *d, const char *id, const char *branch, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "UPDATE repos SET default_branch = ?2 WHERE id = ?1", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, id);
        db_bind_text(st, 2, branch);
        return update_one(d, st, "repository", id, err);
}

int db_repo_delete(db *d, const char *id, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "DELETE FROM repos WHERE id = ?1", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, id);
        r = db_stmt_run(d, st, err, "delete repository");
        if (r < 0 && sqlite3_extended_errcode(d->conn) == SQLITE_CONSTRAINT_FOREIGNKEY)
                return ns_err(err, EBUSY, "repository '%s' still has sessions", id);
        if (r == 0 && sqlite3_changes(d->conn) != 1)
                return ns_err(err, ENOENT, "repository '%s' not found", id);
        return r;
}

/* ---- events ----------------------------------------------------------------------------- */

static const char *const event_types[] = {
        "message", "tool_call", "tool_result", "command_output", "status", "question", "commit",
        "push",    "pr",        "preview",     "egress",         "error",  "usage",
};

bool db_event_type_valid(const char *type) {
        for (size_t i = 0; type && i < ARRAY_SIZE(event_types); i++)
                if (strcmp(type, event_types[i]) == 0)
                        return true;
        return false;
}

void db_events_free(db_event *v, size_t n) {
        for (size_t i = 0; v && i < n; i++) {
                free(v[i].type);
                free(v[i].data);
        }
        free(v);
}

/* Insert one event inside an open transaction or savepoint. */
static int event_insert(db *d, const db_event_in *e, int64_t now, int64_t *id_out, int64_t *seq_out, ns_error *err) {
        if (!db_event_type_valid(e->type))
                return ns_err(err, EINVAL, "unknown event type '%s'", e->type ? e->type : "(null)");
        if (e->data && strlen(e->data) > DB_EVENT_DATA_MAX_BYTES)
                return ns_err(err, E2BIG, "event data over %d bytes", DB_EVENT_DATA_MAX_BYTES);
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_EVENT_INSERT, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, e->session_id);
        sqlite3_bind_int64(st, 2, e->ts ? e->ts : now);
        db_bind_text(st, 3, e->type);
        db_bind_text(st, 4, e->data ? e->data : "{}");
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                rc = sqlite3_extended_errcode(d->conn);
                if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                        return ns_err(err, ENOENT, "session '%s' not found", e->session_id ? e->session_id : "");
                if (rc == SQLITE_CONSTRAINT_CHECK)
                        return ns_err(err, EINVAL, "event data is not valid JSON");
                return db_sql_err(d, rc, err, "insert event");
        }
        if (id_out)
                *id_out = sqlite3_column_int64(st, 0);
        if (seq_out)
                *seq_out = sqlite3_column_int64(st, 1);
        return db_stmt_run(d, st, err, "insert event");
}

int db_event_append(db *d, const char *sid, const char *type, const char *data, int64_t *id_out,
                    int64_t *seq_out, ns_error *err) {
        db_event_in e = { .session_id = sid, .type = type, .data = data };
        return db_events_append_batch(d, &e, 1, NULL, id_out, seq_out, err);
}

void db_set_event_barrier(db *d, void (*fn)(void *ctx), void *ctx) {
        d->event_barrier = fn;
        d->event_barrier_ctx = ctx;
}

/* Before an event is written on this connection: the barrier stores what is held back first. */
static void event_barrier(db *d) {
        if (!d->event_barrier || d->in_barrier)
                return;
        d->in_barrier = true;
        d->event_barrier(d->event_barrier_ctx);
        d->in_barrier = false;
}

static int append_batch(db *d, const db_event_in *ev, size_t n, const db_output_mark *mark, int64_t *ids_out,
                        int64_t *seqs_out, ns_error *err);

int db_events_append_batch(db *d, const db_event_in *ev, size_t n, const db_output_mark *mark,
                           int64_t *ids_out, int64_t *seqs_out, ns_error *err) {
        event_barrier(d);
        return append_batch(d, ev, n, mark, ids_out, seqs_out, err);
}

int db_events_append_groups(db *d, db_event_group *g, size_t n, ns_error *err) {
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        for (size_t i = 0; i < n; i++) {
                g[i].rc = r < 0 ? r : append_batch(d, g[i].ev, g[i].n, g[i].mark, NULL, NULL, &g[i].err);
                if (r < 0)
                        g[i].err = *err;
        }
        if (r < 0)
                return r;
        if ((r = db_tx_end(d, &t, 0, err)) < 0)
                for (size_t i = 0; i < n; i++)
                        if (g[i].rc == 0) {
                                g[i].rc = r;
                                g[i].err = *err;
                        }
        return r;
}

static int append_batch(db *d, const db_event_in *ev, size_t n, const db_output_mark *mark, int64_t *ids_out,
                        int64_t *seqs_out, ns_error *err) {
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        int64_t now = db_now_ms();
        for (size_t i = 0; r == 0 && i < n; i++)
                r = event_insert(d, &ev[i], now, ids_out ? &ids_out[i] : NULL, seqs_out ? &seqs_out[i] : NULL, err);
        if (r == 0 && mark) {
                _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
                r = db_stmt_get(d, ST_SESSION_OUTPUT_MARK, &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, mark->session_id);
                        db_bind_text(st, 2, mark->proc_id);
                        sqlite3_bind_int64(st, 3, mark->output_offset);
                        sqlite3_bind_int64(st, 4, now);
                        r = update_one(d, st, "session", mark->session_id, err);
                }
        }
        return db_tx_end(d, &t, r, err);
}

static int events_collect(db *d, sqlite3_stmt *st, db_event **out, size_t *n, ns_error *err) {
        db_event *v = NULL;
        size_t cap = 0, cnt = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (grow((void **) &v, &cap, cnt, sizeof *v) < 0)
                        goto oom;
                db_event *e = &v[cnt++];
                e->id = sqlite3_column_int64(st, 0);
                db_col_copy_id(st, 1, e->session_id);
                e->seq = sqlite3_column_int64(st, 2);
                e->ts = sqlite3_column_int64(st, 3);
                if (db_col_dup(st, 4, &e->type) < 0 || db_col_dup(st, 5, &e->data) < 0)
                        goto oom;
        }
        if (rc != SQLITE_DONE) {
                db_events_free(v, cnt);
                return db_sql_err(d, rc, err, "list events");
        }
        *out = v;
        *n = cnt;
        return 0;
oom:
        db_events_free(v, cnt);
        return ns_err(err, ENOMEM, "out of memory");
}

int db_events_after_seq(db *d, const char *sid, int64_t after_seq, size_t limit, db_event **out,
                        size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_EVENTS_AFTER_SEQ, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, sid);
        sqlite3_bind_int64(st, 2, after_seq);
        sqlite3_bind_int64(st, 3, limit ? (int64_t) limit : 1000);
        return events_collect(d, st, out, n, err);
}

int db_events_max_id(db *d, int64_t *out, ns_error *err) {
        *out = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT coalesce(max(id), 0) FROM events", &st, err);
        if (r < 0)
                return r;
        if (sqlite3_step(st) != SQLITE_ROW)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "newest event");
        *out = sqlite3_column_int64(st, 0);
        return 0;
}

int db_events_after_id(db *d, int64_t after_id, size_t limit, db_event **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_EVENTS_AFTER_ID, &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, after_id);
        sqlite3_bind_int64(st, 2, limit ? (int64_t) limit : 1000);
        return events_collect(d, st, out, n, err);
}

/* ---- sessions --------------------------------------------------------------------------- */

void db_session_clear(db_session *s) {
        if (!s)
                return;
        char **fields[] = { &s->base_ref,       &s->base_sha,    &s->branch,     &s->agent,
                            &s->state_reason,   &s->title,       &s->model,      &s->network,
                            &s->limits_json,    &s->env_json,    &s->sandbox_id, &s->workspace_path,
                            &s->gitdir_path,    &s->agent_session_ref, &s->proc_id, &s->last_commit_sha };
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
                free(*fields[i]);
        memset(s, 0, sizeof *s);
}

void db_sessions_free(db_session *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                db_session_clear(&v[i]);
        free(v);
}

static int session_from_row(sqlite3_stmt *st, db_session *s) {
        memset(s, 0, sizeof *s);
        db_col_copy_id(st, 0, s->id);
        db_col_copy_id(st, 1, s->repo_id);
        int r = 0;
        r |= db_col_dup(st, 2, &s->base_ref);
        r |= db_col_dup(st, 3, &s->base_sha);
        r |= db_col_dup(st, 4, &s->branch);
        r |= db_col_dup(st, 5, &s->agent);
        if (sv_state_parse((const char *) sqlite3_column_text(st, 6), &s->state) < 0)
                s->state = SV_FAILED; /* unreachable: the CHECK constraint lists the same names */
        r |= db_col_dup(st, 7, &s->state_reason);
        r |= db_col_dup(st, 8, &s->title);
        s->once = sqlite3_column_int(st, 9) != 0;
        r |= db_col_dup(st, 10, &s->model);
        r |= db_col_dup(st, 11, &s->network);
        r |= db_col_dup(st, 12, &s->limits_json);
        r |= db_col_dup(st, 13, &s->env_json);
        r |= db_col_dup(st, 14, &s->sandbox_id);
        r |= db_col_dup(st, 15, &s->workspace_path);
        r |= db_col_dup(st, 16, &s->gitdir_path);
        s->created_at = sqlite3_column_int64(st, 17);
        s->updated_at = sqlite3_column_int64(st, 18);
        s->started_at = sqlite3_column_int64(st, 19);
        s->ended_at = sqlite3_column_int64(st, 20);
        r |= db_col_dup(st, 21, &s->agent_session_ref);
        r |= db_col_dup(st, 22, &s->proc_id);
        s->output_offset = sqlite3_column_int64(st, 23);
        r |= db_col_dup(st, 24, &s->last_commit_sha);
        if (r < 0) {
                db_session_clear(s);
                return -ENOMEM;
        }
        return 0;
}

/* The JSON of a `status` event. */
static char *status_json(sv_state from, bool has_from, sv_state to, const char *reason, int64_t now) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return NULL;
        bool ok = (has_from ? cJSON_AddStringToObject(o, "from", sv_state_name(from)) != NULL
                            : cJSON_AddNullToObject(o, "from") != NULL) &&
                  cJSON_AddStringToObject(o, "to", sv_state_name(to)) &&
                  (reason ? cJSON_AddStringToObject(o, "reason", reason) != NULL
                          : cJSON_AddNullToObject(o, "reason") != NULL) &&
                  cJSON_AddNumberToObject(o, "time", (double) now);
        char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        return s;
}

int db_session_insert(db *d, db_session *s, ns_error *err) {
        if (!s->base_ref || !s->agent || !s->repo_id[0])
                return ns_err(err, EINVAL, "session needs a repo, a base ref and an agent");
        if (!s->id[0]) {
                int q = sv_id_new(SV_ID_PREFIX_SESSION, s->id, err);
                if (q < 0)
                        return q;
        } else if (!sv_id_valid(s->id, SV_ID_PREFIX_SESSION)) {
                return ns_err(err, EINVAL, "invalid session id '%s'", s->id);
        }
        if (!s->branch && asprintf(&s->branch, "nightshift/%s", s->id) < 0) {
                s->branch = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        if (!s->network && !(s->network = strdup("none")))
                return ns_err(err, ENOMEM, "out of memory");
        int64_t now = db_now_ms();
        s->state = SV_QUEUED;
        s->created_at = s->updated_at = now;
        s->started_at = s->ended_at = 0;

        _cleanup_free_ char *ev = status_json(SV_QUEUED, false, SV_QUEUED, s->state_reason ? s->state_reason : "created", now);
        if (!ev)
                return ns_err(err, ENOMEM, "out of memory");
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        {
                _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
                r = db_stmt_prepare(d,
                                 "INSERT INTO sessions (id, repo_id, base_ref, base_sha, branch, agent, state, "
                                 "state_reason, title, once, model, network, limits_json, env_json, created_at, "
                                 "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?10, ?11, ?12, "
                                 "?13, ?14, ?14)",
                                 &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, s->id);
                        db_bind_text(st, 2, s->repo_id);
                        db_bind_text(st, 3, s->base_ref);
                        db_bind_text(st, 4, s->base_sha);
                        db_bind_text(st, 5, s->branch);
                        db_bind_text(st, 6, s->agent);
                        db_bind_text(st, 7, s->state_reason);
                        db_bind_text(st, 8, s->title);
                        sqlite3_bind_int(st, 9, s->once ? 1 : 0);
                        db_bind_text(st, 10, s->model);
                        db_bind_text(st, 11, s->network);
                        db_bind_text(st, 12, s->limits_json);
                        db_bind_text(st, 13, s->env_json);
                        sqlite3_bind_int64(st, 14, now);
                        r = db_stmt_run(d, st, err, "insert session");
                        if (r == -ENOENT)
                                r = ns_err(err, ENOENT, "repository '%s' not found", s->repo_id);
                        else if (r == -EEXIST)
                                r = ns_err(err, EEXIST, "session '%s' already exists", s->id);
                }
        }
        if (r == 0) {
                db_event_in e = { .session_id = s->id, .type = "status", .data = ev, .ts = now };
                r = event_insert(d, &e, now, NULL, NULL, err);
        }
        return db_tx_end(d, &t, r, err);
}

int db_session_get(db *d, const char *id, db_session *out, ns_error *err) {
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_SESSION_GET, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return ns_err(err, ENOENT, "session '%s' not found", id);
        if (rc != SQLITE_ROW)
                return db_sql_err(d, rc, err, "get session");
        if (session_from_row(st, out) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

int db_session_list(db *d, const db_session_filter *f, db_session **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_SESSION_LIST, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, f ? f->repo_id : NULL);
        if (f && f->after_id) {
                db_bind_text(st, 2, f->after_id);
                sqlite3_bind_int64(st, 3, f->after_created_at);
        }
        db_session *v = NULL;
        size_t cap = 0, cnt = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (f && f->limit && cnt >= f->limit)
                        break;
                if (grow((void **) &v, &cap, cnt, sizeof *v) < 0 || session_from_row(st, &v[cnt]) < 0) {
                        db_sessions_free(v, cnt);
                        return ns_err(err, ENOMEM, "out of memory");
                }
                if (f && f->state_mask && !(f->state_mask & (1u << v[cnt].state))) {
                        db_session_clear(&v[cnt]);
                        continue;
                }
                cnt++;
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
                db_sessions_free(v, cnt);
                return db_sql_err(d, rc, err, "list sessions");
        }
        *out = v;
        *n = cnt;
        return 0;
}

int db_session_set_state(db *d, const char *id, sv_state to, const char *reason, int expect_from,
                         int64_t *ev_id, int64_t *ev_seq, ns_error *err) {
        if (!sv_state_name(to))
                return ns_err(err, EINVAL, "invalid state %d", (int) to);
        event_barrier(d); /* its status event follows what was held back */
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        sv_state from = SV_QUEUED;
        {
                _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
                r = db_stmt_get(d, ST_SESSION_STATE_GET, &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, id);
                        int rc = sqlite3_step(st);
                        if (rc == SQLITE_DONE)
                                r = ns_err(err, ENOENT, "session '%s' not found", id);
                        else if (rc != SQLITE_ROW)
                                r = db_sql_err(d, rc, err, "get session state");
                        else if (sv_state_parse((const char *) sqlite3_column_text(st, 0), &from) < 0)
                                r = ns_err(err, EBADMSG, "session '%s' has an unknown state", id);
                }
        }
        if (r == 0 && expect_from >= 0 && (int) from != expect_from)
                r = ns_err(err, ESTALE, "session '%s' is %s, not %s", id, sv_state_name(from),
                           sv_state_name((sv_state) expect_from) ? sv_state_name((sv_state) expect_from) : "?");
        if (r == 0 && !sv_state_can_transition(from, to))
                r = ns_err(err, EINVAL, "session '%s': illegal transition %s -> %s", id, sv_state_name(from),
                           sv_state_name(to));
        int64_t now = db_now_ms();
        if (r == 0) {
                _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
                r = db_stmt_get(d, ST_SESSION_STATE_SET, &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, id);
                        db_bind_text(st, 2, sv_state_name(to));
                        db_bind_text(st, 3, reason);
                        sqlite3_bind_int64(st, 4, now);
                        if (to == SV_RUNNING)
                                sqlite3_bind_int64(st, 5, now);
                        if (sv_state_is_end(to))
                                sqlite3_bind_int64(st, 6, now);
                        r = update_one(d, st, "session", id, err);
                }
        }
        if (r == 0) {
                _cleanup_free_ char *ev = status_json(from, true, to, reason, now);
                if (!ev) {
                        r = ns_err(err, ENOMEM, "out of memory");
                } else {
                        db_event_in e = { .session_id = id, .type = "status", .data = ev, .ts = now };
                        r = event_insert(d, &e, now, ev_id, ev_seq, err);
                }
        }
        return db_tx_end(d, &t, r, err);
}

/* UPDATE sessions SET <sql> WHERE id = ?1, with text parameters ?2.. and updated_at = ?N. */
static int session_update(db *d, const char *id, const char *sql, const char *const *texts, size_t ntexts,
                          const int64_t *num, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, sql, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, id);
        int i = 2;
        for (size_t k = 0; k < ntexts; k++)
                db_bind_text(st, i++, texts[k]);
        if (num)
                sqlite3_bind_int64(st, i++, *num);
        sqlite3_bind_int64(st, i, db_now_ms());
        return update_one(d, st, "session", id, err);
}

int db_session_set_base_sha(db *d, const char *id, const char *sha, ns_error *err) {
        const char *t[] = { sha };
        return session_update(d, id, "UPDATE sessions SET base_sha = ?2, updated_at = ?3 WHERE id = ?1", t, 1, NULL, err);
}

int db_session_set_sandbox(db *d, const char *id, const char *sandbox_id, const char *workspace_path,
                           const char *gitdir_path, ns_error *err) {
        const char *t[] = { sandbox_id, workspace_path, gitdir_path };
        return session_update(d, id,
                              "UPDATE sessions SET sandbox_id = ?2, workspace_path = ?3, gitdir_path = ?4, "
                              "updated_at = ?5 WHERE id = ?1",
                              t, 3, NULL, err);
}

int db_session_set_agent_ref(db *d, const char *id, const char *agent_session_ref, ns_error *err) {
        const char *t[] = { agent_session_ref };
        return session_update(d, id, "UPDATE sessions SET agent_session_ref = ?2, updated_at = ?3 WHERE id = ?1",
                              t, 1, NULL, err);
}

int db_session_set_proc(db *d, const char *id, const char *proc_id, int64_t output_offset, ns_error *err) {
        if (output_offset < 0)
                return ns_err(err, EINVAL, "negative output offset");
        const char *t[] = { proc_id };
        return session_update(d, id,
                              "UPDATE sessions SET proc_id = ?2, output_offset = ?3, updated_at = ?4 WHERE id = ?1",
                              t, 1, &output_offset, err);
}

int db_session_set_last_commit(db *d, const char *id, const char *sha, ns_error *err) {
        const char *t[] = { sha };
        return session_update(d, id, "UPDATE sessions SET last_commit_sha = ?2, updated_at = ?3 WHERE id = ?1",
                              t, 1, NULL, err);
}

int db_session_delete(db *d, const char *id, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "DELETE FROM sessions WHERE id = ?1", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, id);
        return update_one(d, st, "session", id, err);
}

/* ---- prompts ---------------------------------------------------------------------------- */

static const char *const prompt_state_names[] = { "queued", "running", "done", "cancelled" };

const char *db_prompt_state_name(db_prompt_state s) {
        return (unsigned) s < ARRAY_SIZE(prompt_state_names) ? prompt_state_names[s] : NULL;
}

static int prompt_state_parse(const char *s, db_prompt_state *out) {
        for (unsigned i = 0; s && i < ARRAY_SIZE(prompt_state_names); i++)
                if (strcmp(s, prompt_state_names[i]) == 0) {
                        *out = (db_prompt_state) i;
                        return 0;
                }
        return -EINVAL;
}

void db_prompt_clear(db_prompt *p) {
        if (!p)
                return;
        free(p->text);
        memset(p, 0, sizeof *p);
}

void db_prompts_free(db_prompt *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                db_prompt_clear(&v[i]);
        free(v);
}

static int prompt_from_row(sqlite3_stmt *st, db_prompt *p) {
        memset(p, 0, sizeof *p);
        p->id = sqlite3_column_int64(st, 0);
        db_col_copy_id(st, 1, p->session_id);
        p->seq = sqlite3_column_int64(st, 2);
        if (db_col_dup(st, 3, &p->text) < 0)
                return -ENOMEM;
        if (prompt_state_parse((const char *) sqlite3_column_text(st, 4), &p->state) < 0)
                p->state = DB_PROMPT_CANCELLED;
        p->created_at = sqlite3_column_int64(st, 5);
        p->updated_at = sqlite3_column_int64(st, 6);
        return 0;
}

int db_prompt_enqueue(db *d, const char *sid, const char *text, int64_t *id_out, int64_t *seq_out,
                      ns_error *err) {
        size_t len = text ? strlen(text) : 0;
        if (len == 0)
                return ns_err(err, EINVAL, "empty prompt");
        if (len > DB_PROMPT_MAX_BYTES)
                return ns_err(err, E2BIG, "prompt of %zu bytes is over the limit of %d", len, DB_PROMPT_MAX_BYTES);
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        {
                _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
                r = db_stmt_prepare(d,
                                 "INSERT INTO prompts (session_id, seq, text, state, created_at, updated_at) VALUES "
                                 "(?1, (SELECT coalesce(max(seq), 0) + 1 FROM prompts WHERE session_id = ?1), ?2, "
                                 "'queued', ?3, ?3) RETURNING id, seq",
                                 &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, sid);
                        db_bind_text(st, 2, text);
                        sqlite3_bind_int64(st, 3, db_now_ms());
                        int rc = sqlite3_step(st);
                        if (rc == SQLITE_ROW) {
                                if (id_out)
                                        *id_out = sqlite3_column_int64(st, 0);
                                if (seq_out)
                                        *seq_out = sqlite3_column_int64(st, 1);
                                r = db_stmt_run(d, st, err, "enqueue prompt");
                        } else if (sqlite3_extended_errcode(d->conn) == SQLITE_CONSTRAINT_FOREIGNKEY) {
                                r = ns_err(err, ENOENT, "session '%s' not found", sid);
                        } else {
                                r = db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "enqueue prompt");
                        }
                }
        }
        return db_tx_end(d, &t, r, err);
}

static int prompt_get(db *d, int64_t id, db_prompt *out, ns_error *err) {
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_PROMPT_GET, &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return ns_err(err, ENOENT, "prompt %lld not found", (long long) id);
        if (rc != SQLITE_ROW)
                return db_sql_err(d, rc, err, "get prompt");
        if (prompt_from_row(st, out) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

static int prompt_set_state(db *d, int64_t id, db_prompt_state to, int64_t now, ns_error *err) {
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_PROMPT_SET_STATE, &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, id);
        db_bind_text(st, 2, db_prompt_state_name(to));
        sqlite3_bind_int64(st, 3, now);
        return db_stmt_run(d, st, err, "update prompt");
}

int db_prompt_next(db *d, const char *sid, bool claim, db_prompt *out, ns_error *err) {
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        db_prompt p = { 0 };
        if (claim) {
                _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
                r = db_stmt_prepare(d, "SELECT id FROM prompts WHERE session_id = ?1 AND state = 'running' LIMIT 1", &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, sid);
                        int rc = sqlite3_step(st);
                        if (rc == SQLITE_ROW)
                                r = ns_err(err, EBUSY, "session '%s' already has a running prompt", sid);
                        else if (rc != SQLITE_DONE)
                                r = db_sql_err(d, rc, err, "find running prompt");
                }
        }
        if (r == 0) {
                _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
                r = db_stmt_get(d, ST_PROMPT_NEXT, &st, err);
                if (r == 0) {
                        db_bind_text(st, 1, sid);
                        int rc = sqlite3_step(st);
                        if (rc == SQLITE_DONE)
                                r = ns_err(err, ENOENT, "no queued prompt for session '%s'", sid);
                        else if (rc != SQLITE_ROW)
                                r = db_sql_err(d, rc, err, "next prompt");
                        else if (prompt_from_row(st, &p) < 0)
                                r = ns_err(err, ENOMEM, "out of memory");
                }
        }
        if (r == 0 && claim) {
                p.updated_at = db_now_ms();
                r = prompt_set_state(d, p.id, DB_PROMPT_RUNNING, p.updated_at, err);
                p.state = DB_PROMPT_RUNNING;
        }
        r = db_tx_end(d, &t, r, err);
        if (r < 0) {
                db_prompt_clear(&p);
                return r;
        }
        *out = p;
        return 0;
}

static bool prompt_can_move(db_prompt_state from, db_prompt_state to) {
        return (from == DB_PROMPT_QUEUED && (to == DB_PROMPT_RUNNING || to == DB_PROMPT_CANCELLED)) ||
               (from == DB_PROMPT_RUNNING && (to == DB_PROMPT_DONE || to == DB_PROMPT_CANCELLED));
}

int db_prompt_mark(db *d, int64_t id, db_prompt_state to, ns_error *err) {
        if (!db_prompt_state_name(to))
                return ns_err(err, EINVAL, "invalid prompt state %d", (int) to);
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        db_prompt p = { 0 };
        r = prompt_get(d, id, &p, err);
        if (r == 0 && !prompt_can_move(p.state, to))
                r = ns_err(err, EINVAL, "prompt %lld: illegal transition %s -> %s", (long long) id,
                           db_prompt_state_name(p.state), db_prompt_state_name(to));
        if (r == 0)
                r = prompt_set_state(d, id, to, db_now_ms(), err);
        db_prompt_clear(&p);
        return db_tx_end(d, &t, r, err);
}

int db_prompt_cancel(db *d, int64_t id, ns_error *err) {
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        db_prompt p = { 0 };
        r = prompt_get(d, id, &p, err);
        if (r == 0 && p.state != DB_PROMPT_QUEUED)
                r = ns_err(err, EBUSY, "prompt %lld is %s, not queued", (long long) id, db_prompt_state_name(p.state));
        if (r == 0)
                r = prompt_set_state(d, id, DB_PROMPT_CANCELLED, db_now_ms(), err);
        db_prompt_clear(&p);
        return db_tx_end(d, &t, r, err);
}

DEFINE_COLLECT(collect_prompts, db_prompt, prompt_from_row, db_prompts_free, "list prompts")

int db_prompt_list(db *d, const char *sid, db_prompt **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT " PROMPT_COLS " FROM prompts WHERE session_id = ?1 ORDER BY seq", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, sid);
        return collect_prompts(d, st, out, n, err);
}

/* ---- artifacts and settings ------------------------------------------------------------- */

int db_artifact_add(db *d, const char *sid, const char *kind, const char *name, const char *path,
                    int64_t size, const char *data, int64_t *id_out, ns_error *err) {
        if (!kind || !name)
                return ns_err(err, EINVAL, "artifact needs a kind and a name");
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d,
                             "INSERT INTO artifacts (session_id, kind, name, path, size, data, created_at) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, sid);
        db_bind_text(st, 2, kind);
        db_bind_text(st, 3, name);
        db_bind_text(st, 4, path);
        if (size >= 0)
                sqlite3_bind_int64(st, 5, size);
        db_bind_text(st, 6, data);
        sqlite3_bind_int64(st, 7, db_now_ms());
        r = db_stmt_run(d, st, err, "add artifact");
        if (r == -ENOENT)
                return ns_err(err, ENOENT, "session '%s' not found", sid);
        if (r == 0 && id_out)
                *id_out = sqlite3_last_insert_rowid(d->conn);
        return r;
}

int db_setting_get(db *d, const char *key, char **value_out, ns_error *err) {
        *value_out = NULL;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT value FROM settings WHERE key = ?1", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, key);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return ns_err(err, ENOENT, "setting '%s' not set", key);
        if (rc != SQLITE_ROW)
                return db_sql_err(d, rc, err, "get setting");
        if (db_col_dup(st, 0, value_out) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

int db_setting_set(db *d, const char *key, const char *value, ns_error *err) {
        if (!key || !value)
                return ns_err(err, EINVAL, "setting needs a key and a value");
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d,
                             "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, key);
        db_bind_text(st, 2, value);
        return db_stmt_run(d, st, err, "set setting");
}

int db_setting_delete(db *d, const char *key, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "DELETE FROM settings WHERE key = ?1", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, key);
        return update_one(d, st, "setting", key, err);
}
