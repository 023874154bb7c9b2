/* nightshift supervisor — the store's aggregate and listing queries for the API (see db.h). */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "db_int.h"

int db_session_counts(db *d, int64_t counts[SV_STATE_COUNT], ns_error *err) {
        memset(counts, 0, sizeof(int64_t) * SV_STATE_COUNT);
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT state, count(*) FROM sessions GROUP BY state", &st, err);
        if (r < 0)
                return r;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                sv_state s;
                const char *name = (const char *) sqlite3_column_text(st, 0);
                if (name && sv_state_parse(name, &s) == 0)
                        counts[s] = sqlite3_column_int64(st, 1);
        }
        return rc == SQLITE_DONE ? 0 : db_sql_err(d, rc, err, "count sessions");
}

int db_prompts_queued(db *d, int64_t *out, ns_error *err) {
        *out = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT count(*) FROM prompts WHERE state = 'queued'", &st, err);
        if (r < 0)
                return r;
        if (sqlite3_step(st) != SQLITE_ROW)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "count prompts");
        *out = sqlite3_column_int64(st, 0);
        return 0;
}

void db_artifacts_free(db_artifact *v, size_t n) {
        for (size_t i = 0; v && i < n; i++) {
                free(v[i].kind);
                free(v[i].name);
                free(v[i].path);
                free(v[i].data);
        }
        free(v);
}

int db_artifact_list(db *d, const char *sid, db_artifact **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d,
                                "SELECT id, kind, name, path, coalesce(size, -1), data, created_at FROM artifacts "
                                "WHERE session_id = ?1 ORDER BY id",
                                &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, sid);
        db_artifact *v = NULL;
        size_t cnt = 0, cap = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (cnt == cap) {
                        size_t nc = cap ? cap * 2 : 8;
                        db_artifact *nv = realloc(v, nc * sizeof *nv);
                        if (!nv)
                                goto oom;
                        v = nv;
                        cap = nc;
                }
                db_artifact *a = &v[cnt];
                *a = (db_artifact){ .id = sqlite3_column_int64(st, 0), .size = sqlite3_column_int64(st, 4),
                                    .created_at = sqlite3_column_int64(st, 6) };
                cnt++;
                if (db_col_dup(st, 1, &a->kind) < 0 || db_col_dup(st, 2, &a->name) < 0 ||
                    db_col_dup(st, 3, &a->path) < 0 || db_col_dup(st, 5, &a->data) < 0)
                        goto oom;
        }
        if (rc != SQLITE_DONE) {
                db_artifacts_free(v, cnt);
                return db_sql_err(d, rc, err, "list artifacts");
        }
        *out = v;
        *n = cnt;
        return 0;
oom:
        db_artifacts_free(v, cnt);
        return ns_err(err, ENOMEM, "out of memory");
}

int db_generation(db *d, db_generation_t *out, ns_error *err) {
        _cleanup_(db_stmt_resetp) sqlite3_stmt *st = NULL;
        int r = db_stmt_get(d, ST_DATA_VERSION, &st, err);
        if (r < 0)
                return r;
        if (sqlite3_step(st) != SQLITE_ROW)
                return db_sql_err(d, sqlite3_extended_errcode(d->conn), err, "data_version");
        out->others = sqlite3_column_int64(st, 0);
        out->own = sqlite3_total_changes64(d->conn);
        return 0;
}
