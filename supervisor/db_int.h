/* nightshift supervisor — the SQLite store's internals, shared by its files (db.c, db_auth.c):
 * the connection, the cached statements and the helpers every query uses.  Not for other code. */
#pragma once

#include <sqlite3.h>

#include "db.h"

enum stmt_id {
        ST_BEGIN,
        ST_COMMIT,
        ST_ROLLBACK,
        ST_SAVEPOINT,
        ST_RELEASE,
        ST_ROLLBACK_TO,
        ST_EVENT_INSERT,
        ST_EVENTS_AFTER_SEQ,
        ST_EVENTS_AFTER_ID,
        ST_SESSION_OUTPUT_MARK,
        ST_SESSION_GET,
        ST_SESSION_STATE_GET,
        ST_SESSION_STATE_SET,
        ST_REPO_GET,
        ST_REPO_GET_BY_NAME,
        ST_PROMPT_NEXT,
        ST_PROMPT_GET,
        ST_PROMPT_SET_STATE,
        ST_TOKEN_BY_HASH,
        ST_DATA_VERSION,
        ST_SESSION_LIST,
        ST__COUNT
};

struct db {
        sqlite3 *conn;
        sqlite3_stmt *stmts[ST__COUNT];
        int wal_frames; /* db_wal_manual: frames in the log after this connection's last commit */
        void (*event_barrier)(void *ctx); /* db_set_event_barrier */
        void *event_barrier_ctx;
        bool in_barrier;
};

/* errno-style error for SQLite result code `rc`, with the connection's message. */
int db_sql_err(db *d, int rc, ns_error *err, const char *what);

/* A cached statement, ready to bind.  The caller resets it through _cleanup_(db_stmt_resetp). */
int db_stmt_get(db *d, enum stmt_id id, sqlite3_stmt **out, ns_error *err);
void db_stmt_resetp(sqlite3_stmt **st);

/* A one-off statement (cold paths), finalized through _cleanup_(db_stmt_finalizep). */
int db_stmt_prepare(db *d, const char *sql, sqlite3_stmt **out, ns_error *err);
void db_stmt_finalizep(sqlite3_stmt **st);

/* Run a statement that returns no rows (or whose rows are ignored) to completion. */
int db_stmt_run(db *d, sqlite3_stmt *st, ns_error *err, const char *what);

/* Bind text, or NULL for a NULL pointer (SQLITE_STATIC: the string must outlive the step). */
int db_bind_text(sqlite3_stmt *st, int i, const char *s);

/* Duplicate a text column; NULL column → *out = NULL.  -ENOMEM on allocation failure. */
int db_col_dup(sqlite3_stmt *st, int i, char **out);
void db_col_copy_id(sqlite3_stmt *st, int i, char out[SV_ID_LEN + 1]);

/* Each write function is atomic: at top level it owns a BEGIN IMMEDIATE transaction (read-then-
 * write under the write lock, so no SQLITE_BUSY_SNAPSHOT), inside a caller's transaction it uses
 * a savepoint so that a failure undoes only its own writes. */
typedef struct db_tx {
        bool nested;
        bool open;
} db_tx;
int db_tx_begin(db *d, db_tx *t, ns_error *err);
/* Commit (r == 0) or roll back (r < 0) what db_tx_begin started; returns r or the commit error. */
int db_tx_end(db *d, db_tx *t, int r, ns_error *err);
