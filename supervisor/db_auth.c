/* nightshift supervisor — the store's tokens and login sessions (see db.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "db_int.h"

#define TOKEN_COLS "id, name, created_at, last_used_at, revoked_at, scope"

void db_token_clear(db_token *t) {
        if (!t)
                return;
        free(t->name);
        *t = (db_token){ 0 };
}

void db_tokens_free(db_token *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                db_token_clear(&v[i]);
        free(v);
}

static int token_from_row(sqlite3_stmt *st, db_token *out) {
        *out = (db_token){ 0 };
        db_col_copy_id(st, 0, out->id);
        if (db_col_dup(st, 1, &out->name) < 0)
                return -ENOMEM;
        out->created_at = sqlite3_column_int64(st, 2);
        out->last_used_at = sqlite3_column_int64(st, 3);
        out->revoked_at = sqlite3_column_int64(st, 4);
        const unsigned char *scope = sqlite3_column_text(st, 5);
        snprintf(out->scope, sizeof out->scope, "%s", scope ? (const char *) scope : "api");
        return 0;
}

/* Run `st` (bound by the caller) expecting at most one token row. */
static int one_token(db *d, sqlite3_stmt *st, db_token *out, ns_error *err, const char *what) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return ns_err(err, ENOENT, "no such token");
        if (rc != SQLITE_ROW)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, what);
        if (token_from_row(st, out) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

int db_token_insert(db *d, const char *name, const char *scope, const uint8_t hash[DB_TOKEN_HASH_LEN], db_token *out,
                    ns_error *err) {
        db_token t = { 0 };
        if (!scope)
                scope = "api";
        if (strcmp(scope, "api") && strcmp(scope, "hook"))
                return ns_err(err, EINVAL, "a token's scope is 'api' or 'hook', not '%s'", scope);
        snprintf(t.scope, sizeof t.scope, "%s", scope);
        int r = sv_id_new(SV_ID_PREFIX_TOKEN, t.id, err);
        if (r < 0)
                return r;
        t.created_at = db_now_ms();
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if ((r = db_stmt_prepare(d, "INSERT INTO tokens (id, name, hash, created_at, scope) VALUES (?1, ?2, ?3, ?4, ?5)", &st,
                                 err)) < 0)
                return r;
        db_bind_text(st, 1, t.id);
        db_bind_text(st, 2, name);
        sqlite3_bind_blob(st, 3, hash, DB_TOKEN_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, t.created_at);
        db_bind_text(st, 5, t.scope);
        if ((r = db_stmt_run(d, st, err, "insert token")) < 0) {
                if (r == -EEXIST)
                        return ns_err(err, EEXIST, "a token named '%s' exists already", name);
                return r;
        }
        if (out) {
                *out = t;
                if (!(out->name = strdup(name)))
                        return ns_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

int db_token_by_hash(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], db_token *out, ns_error *err) {
        /* Cached: every API request asks. */
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_TOKEN_BY_HASH, &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_blob(st, 1, hash, DB_TOKEN_HASH_LEN, SQLITE_STATIC);
        return one_token(d, st, out, err, "look up token");
}

int db_token_list(db *d, db_token **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT " TOKEN_COLS " FROM tokens ORDER BY created_at DESC, id", &st, err);
        if (r < 0)
                return r;
        db_token *v = NULL;
        size_t cnt = 0, cap = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (cnt == cap) {
                        size_t nc = cap ? cap * 2 : 8;
                        db_token *nv = realloc(v, nc * sizeof *nv);
                        if (!nv) {
                                db_tokens_free(v, cnt);
                                return ns_err(err, ENOMEM, "out of memory");
                        }
                        v = nv;
                        cap = nc;
                }
                if (token_from_row(st, &v[cnt]) < 0) {
                        db_tokens_free(v, cnt);
                        return ns_err(err, ENOMEM, "out of memory");
                }
                cnt++;
        }
        if (rc != SQLITE_DONE) {
                db_tokens_free(v, cnt);
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "list tokens");
        }
        *out = v;
        *n = cnt;
        return 0;
}

int db_token_revoke(db *d, const char *name_or_id, ns_error *err) {
        db_tx t = { 0 };
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *up = NULL, *del = NULL;
        if ((r = db_stmt_prepare(d,
                                 "UPDATE tokens SET revoked_at = ?2 WHERE (name = ?1 OR id = ?1) AND revoked_at IS NULL "
                                 "RETURNING id",
                                 &up, err)) < 0)
                return db_tx_end(d, &t, r, err);
        db_bind_text(up, 1, name_or_id);
        sqlite3_bind_int64(up, 2, db_now_ms());
        int rc = sqlite3_step(up);
        if (rc == SQLITE_DONE)
                return db_tx_end(d, &t, ns_err(err, ENOENT, "no live token named '%s'", name_or_id), err);
        if (rc != SQLITE_ROW)
                return db_tx_end(d, &t, db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "revoke token"), err);
        char id[SV_ID_LEN + 1];
        db_col_copy_id(up, 0, id);
        while ((rc = sqlite3_step(up)) == SQLITE_ROW)
                ;
        if ((r = db_stmt_prepare(d, "DELETE FROM web_sessions WHERE token_id = ?1", &del, err)) == 0) {
                db_bind_text(del, 1, id);
                r = db_stmt_run(d, del, err, "end login sessions");
        }
        return db_tx_end(d, &t, r, err);
}

int db_token_touch(db *d, const char *id, int64_t now_ms, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1", &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, id);
        sqlite3_bind_int64(st, 2, now_ms);
        return db_stmt_run(d, st, err, "touch token");
}

int db_websession_insert(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], const char *token_id, int64_t expires_at,
                         ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL, *gc = NULL;
        int r = db_stmt_prepare(d, "INSERT INTO web_sessions (hash, token_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                                &st, err);
        if (r < 0)
                return r;
        int64_t now = db_now_ms();
        sqlite3_bind_blob(st, 1, hash, DB_TOKEN_HASH_LEN, SQLITE_STATIC);
        db_bind_text(st, 2, token_id);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_int64(st, 4, expires_at);
        if ((r = db_stmt_run(d, st, err, "insert login session")) < 0)
                return r;
        /* Expired ones go whenever a new one comes: the table stays as small as its live part. */
        if (db_stmt_prepare(d, "DELETE FROM web_sessions WHERE expires_at <= ?1", &gc, NULL) == 0) {
                sqlite3_bind_int64(gc, 1, now);
                (void) db_stmt_run(d, gc, NULL, "expire login sessions");
        }
        return 0;
}

int db_websession_token(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], int64_t now_ms, db_token *out, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d,
                                "SELECT t.id, t.name, t.created_at, t.last_used_at, t.revoked_at, t.scope FROM web_sessions w "
                                "JOIN tokens t ON t.id = w.token_id "
                                "WHERE w.hash = ?1 AND w.expires_at > ?2 AND t.revoked_at IS NULL",
                                &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_blob(st, 1, hash, DB_TOKEN_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now_ms);
        return one_token(d, st, out, err, "look up login session");
}

int db_websession_delete(db *d, const uint8_t hash[DB_TOKEN_HASH_LEN], ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "DELETE FROM web_sessions WHERE hash = ?1", &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_blob(st, 1, hash, DB_TOKEN_HASH_LEN, SQLITE_STATIC);
        return db_stmt_run(d, st, err, "delete login session");
}
