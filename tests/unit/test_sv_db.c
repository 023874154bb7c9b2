/* Unit tests of supervisor/db.c: schema and migrations, the session state machine, the prompt
 * queue, event sequencing under concurrency and batch throughput.  TAP output; temp files under
 * /tmp, removed at the end. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/db.h"
#include "tap.h"


static char dir[64], path[128];

static void cleanup_files(void) {
        char p[160];
        static const char *const sfx[] = { "", "-wal", "-shm" };
        for (size_t i = 0; i < 3; i++) {
                snprintf(p, sizeof p, "%s%s", path, sfx[i]);
                unlink(p);
        }
        rmdir(dir);
}

static int64_t count_rows(const char *sql) {
        sqlite3 *c = NULL;
        int64_t n = -1;
        if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
                sqlite3_stmt *st = NULL;
                if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                        n = sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
        }
        sqlite3_close(c);
        return n;
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- concurrency -------------------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 1500

struct worker {
        const char *sid;
        int rc;
        char msg[NS_ERROR_MSG_MAX];
        int64_t last_seq;
        int monotonic;
};

static void *append_worker(void *arg) {
        struct worker *w = arg;
        ns_error err = { 0 };
        db *d = NULL;
        w->monotonic = 1;
        if ((w->rc = db_open(path, &d, &err)) < 0) {
                snprintf(w->msg, sizeof w->msg, "%s", err.msg);
                return NULL;
        }
        int64_t prev_id = 0, prev_seq = 0;
        for (int i = 0; i < PER_THREAD; i++) {
                int64_t id, seq;
                char data[64];
                snprintf(data, sizeof data, "{\"i\":%d}", i);
                if ((w->rc = db_event_append(d, w->sid, "command_output", data, &id, &seq, &err)) < 0) {
                        snprintf(w->msg, sizeof w->msg, "%s", err.msg);
                        break;
                }
                if (id <= prev_id || (prev_seq != 0 && seq != prev_seq + 1))
                        w->monotonic = 0;
                prev_id = id;
                prev_seq = seq;
        }
        w->last_seq = prev_seq;
        db_close(d);
        return NULL;
}

/* Seqs of `sid` are exactly 1..n, with ids increasing along seq. */
static int seqs_contiguous(db *d, const char *sid, int64_t *n_out) {
        int64_t after = 0, prev_id = 0, expect = 1;
        for (;;) {
                db_event *ev = NULL;
                size_t n = 0;
                if (db_events_after_seq(d, sid, after, 500, &ev, &n, NULL) < 0)
                        return 0;
                if (n == 0)
                        break;
                for (size_t i = 0; i < n; i++) {
                        if (ev[i].seq != expect++ || ev[i].id <= prev_id || strcmp(ev[i].session_id, sid) != 0) {
                                db_events_free(ev, n);
                                return 0;
                        }
                        prev_id = ev[i].id;
                }
                after = ev[n - 1].seq;
                db_events_free(ev, n);
        }
        *n_out = expect - 1;
        return 1;
}

int main(void) {
        snprintf(dir, sizeof dir, "/tmp/ns-svdb-XXXXXX");
        if (!mkdtemp(dir)) {
                printf("Bail out! mkdtemp\n");
                return 1;
        }
        snprintf(path, sizeof path, "%s/" DB_FILE_NAME, dir);
        ns_error err = { 0 };
        db *d = NULL;

        /* -- schema, migrations, connection settings */
        int r = db_open(path, &d, &err);
        ok(r == 0, "db_open creates and migrates (%s)", err.msg);
        if (r < 0) {
                cleanup_files();
                printf("1..%d\n", tap_num);
                return 1;
        }
        int ver = -1;
        r = db_schema_version(d, &ver, &err);
        ok(r == 0 && ver == db_schema_latest() && ver >= 1, "schema version %d = latest", ver);
        struct stat st = { 0 };
        r = stat(path, &st);
        ok(r == 0 && (st.st_mode & 0777) == 0600, "database file is private (0%o)", st.st_mode & 0777);
        {
                char *jm = NULL, *sync = NULL, *fk = NULL, *bt = NULL;
                db_pragma_get(d, "journal_mode", &jm, NULL);
                db_pragma_get(d, "synchronous", &sync, NULL);
                db_pragma_get(d, "foreign_keys", &fk, NULL);
                db_pragma_get(d, "busy_timeout", &bt, NULL);
                ok(jm && strcmp(jm, "wal") == 0 && sync && strcmp(sync, "1") == 0 && fk && strcmp(fk, "1") == 0 && bt &&
                           atoi(bt) == DB_BUSY_TIMEOUT_MS,
                   "connection: journal_mode=%s synchronous=%s foreign_keys=%s busy_timeout=%s", jm, sync, fk, bt);
                free(jm), free(sync), free(fk), free(bt);
                ok(db_pragma_get(d, "user_version; DROP TABLE x", &jm, NULL) == -EINVAL, "db_pragma_get only knows its list");
        }

        db_repo repo = { 0 };
        repo.name = strdup("demo");
        repo.url_or_path = strdup("/srv/demo");
        repo.mirror_path = strdup("/data/mirrors/x.git");
        repo.default_branch = strdup("main");
        r = db_repo_insert(d, &repo, &err);
        ok(r == 0 && sv_id_valid(repo.id, 'r'), "repo inserted with id %s", repo.id);
        {
                db_repo dup = { 0 };
                dup.name = "demo", dup.url_or_path = "/x", dup.mirror_path = "/y";
                ok(db_repo_insert(d, &dup, &err) == -EEXIST, "duplicate repo name refused: %s", err.msg);
        }

        db_close(d);
        d = NULL;
        r = db_open(path, &d, &err);
        ver = -1;
        if (r == 0)
                db_schema_version(d, &ver, &err);
        ok(r == 0 && ver == db_schema_latest(), "reopen: migrations are idempotent (version %d)", ver);
        {
                db_repo got = { 0 };
                ok(db_repo_get(d, repo.id, &got, &err) == 0 && strcmp(got.name, "demo") == 0 &&
                           strcmp(got.default_branch, "main") == 0,
                   "repo survives reopen");
                db_repo_clear(&got);
                ok(db_repo_get_by_name(d, "nope", &got, &err) == -ENOENT, "unknown repo: %s", err.msg);
        }

        /* -- sessions and the state machine */
        db_session s = { 0 };
        snprintf(s.repo_id, sizeof s.repo_id, "%s", repo.id);
        s.base_ref = strdup("main");
        s.agent = strdup("command");
        s.once = true;
        s.env_json = strdup("{\"A\":\"1\"}");
        r = db_session_insert(d, &s, &err);
        ok(r == 0 && sv_id_valid(s.id, 's'), "session inserted: %s (%s)", s.id, err.msg);
        {
                db_session got = { 0 };
                r = db_session_get(d, s.id, &got, &err);
                char want_branch[64];
                snprintf(want_branch, sizeof want_branch, "nightshift/%s", s.id);
                ok(r == 0 && got.state == SV_QUEUED && got.once && strcmp(got.branch, want_branch) == 0 &&
                           strcmp(got.network, "none") == 0 && got.base_sha == NULL && got.created_at > 0,
                   "session reads back queued on %s", got.branch);
                db_session_clear(&got);
        }
        {
                db_event *ev = NULL;
                size_t n = 0;
                r = db_events_after_seq(d, s.id, 0, 0, &ev, &n, &err);
                ok(r == 0 && n == 1 && ev[0].seq == 1 && strcmp(ev[0].type, "status") == 0 &&
                           strstr(ev[0].data, "\"to\":\"queued\""),
                   "creation is a status event: %s", n ? ev[0].data : "-");
                db_events_free(ev, n);
        }
        {
                db_session bad = { 0 };
                snprintf(bad.repo_id, sizeof bad.repo_id, "r-aaaaaaaaaaaa");
                bad.base_ref = "main", bad.agent = "command";
                ok(db_session_insert(d, &bad, &err) == -ENOENT, "session of unknown repo refused: %s", err.msg);
                free(bad.branch), free(bad.network);
                ok(count_rows("SELECT count(*) FROM sessions") == 1, "and nothing written");
        }

        static const sv_state path_ok[] = { SV_PROVISIONING, SV_RUNNING, SV_IDLE, SV_RUNNING, SV_WAITING, SV_RUNNING,
                                            SV_PAUSED, SV_RUNNING, SV_IDLE };
        int all = 1;
        int64_t last_seq = 1;
        for (size_t i = 0; i < ARRAY_SIZE(path_ok); i++) {
                int64_t eid = 0, eseq = 0;
                if (db_session_set_state(d, s.id, path_ok[i], "test", -1, &eid, &eseq, &err) < 0 || eseq != last_seq + 1) {
                        all = 0;
                        printf("# step %zu: %s\n", i, err.msg);
                }
                last_seq = eseq;
        }
        ok(all, "legal path queued→provisioning→running→idle→running→waiting→running→paused→running→idle");

        int64_t events_before = count_rows("SELECT count(*) FROM events");
        int64_t updated_before = count_rows("SELECT updated_at FROM sessions");
        r = db_session_set_state(d, s.id, SV_QUEUED, "back", -1, NULL, NULL, &err);
        ok(r == -EINVAL && strstr(err.msg, "illegal transition idle -> queued"), "idle → queued refused: %s", err.msg);
        r = db_session_set_state(d, s.id, SV_IDLE, "same", -1, NULL, NULL, &err);
        ok(r == -EINVAL, "idle → idle refused");
        r = db_session_set_state(d, s.id, SV_ARCHIVED, "early", -1, NULL, NULL, &err);
        ok(r == -EINVAL, "idle → archived refused (archive only after an end)");
        r = db_session_set_state(d, s.id, SV_RUNNING, "cas", SV_WAITING, NULL, NULL, &err);
        ok(r == -ESTALE, "compare-and-set with a wrong expected state refused: %s", err.msg);
        {
                db_session got = { 0 };
                db_session_get(d, s.id, &got, &err);
                ok(got.state == SV_IDLE && count_rows("SELECT count(*) FROM events") == events_before &&
                           count_rows("SELECT updated_at FROM sessions") == updated_before,
                   "refused transitions wrote nothing (state %s, %lld events)", sv_state_name(got.state),
                   (long long) events_before);
                db_session_clear(&got);
        }
        r = db_session_set_state(d, s.id, SV_COMPLETED, "once", SV_IDLE, NULL, NULL, &err);
        ok(r == 0, "idle → completed");
        r = db_session_set_state(d, s.id, SV_RUNNING, "zombie", -1, NULL, NULL, &err);
        ok(r == -EINVAL, "completed → running refused");
        ok(db_session_set_state(d, s.id, SV_ARCHIVED, NULL, -1, NULL, NULL, &err) == 0, "completed → archived");
        {
                db_session got = { 0 };
                db_session_get(d, s.id, &got, &err);
                ok(got.state == SV_ARCHIVED && got.started_at > 0 && got.ended_at >= got.started_at,
                   "started_at and ended_at recorded");
                db_session_clear(&got);
        }
        /* every state of the table can end in failed, and an end can only be archived */
        {
                int fine = 1;
                for (int f = 0; f < SV_STATE_COUNT; f++)
                        for (int t = 0; t < SV_STATE_COUNT; t++) {
                                bool can = sv_state_can_transition(f, t);
                                if (f == t && can)
                                        fine = 0;
                                if (sv_state_is_end(f) && can && t != SV_ARCHIVED)
                                        fine = 0;
                                if (!sv_state_is_end(f) && f != SV_ARCHIVED && t == SV_FAILED && !can)
                                        fine = 0;
                                if (f == SV_ARCHIVED && can)
                                        fine = 0;
                        }
                ok(fine, "transition table: no self-loops, every live state can fail, ends only archive");
        }

        /* -- caller-managed transaction, rolled back */
        db_session s2 = { 0 };
        snprintf(s2.repo_id, sizeof s2.repo_id, "%s", repo.id);
        s2.base_ref = strdup("main");
        s2.agent = strdup("claude");
        ok(db_session_insert(d, &s2, &err) == 0, "second session %s", s2.id);
        {
                int64_t before = count_rows("SELECT count(*) FROM events");
                r = db_begin(d, &err);
                if (r == 0)
                        r = db_event_append(d, s2.id, "message", "{\"text\":\"hi\"}", NULL, NULL, &err);
                if (r == 0)
                        r = db_session_set_state(d, s2.id, SV_PROVISIONING, "x", -1, NULL, NULL, &err);
                int inner = db_session_set_state(d, s2.id, SV_QUEUED, "illegal", -1, NULL, NULL, NULL);
                db_rollback(d);
                db_session got = { 0 };
                db_session_get(d, s2.id, &got, &err);
                ok(r == 0 && inner == -EINVAL && got.state == SV_QUEUED &&
                           count_rows("SELECT count(*) FROM events") == before,
                   "a caller transaction rolls back as a whole");
                db_session_clear(&got);
        }

        /* -- prompts */
        int64_t p1, p2, p3, seq;
        r = db_prompt_enqueue(d, s2.id, "first", &p1, &seq, &err);
        ok(r == 0 && seq == 1, "enqueue prompt 1");
        db_prompt_enqueue(d, s2.id, "second", &p2, &seq, &err);
        r = db_prompt_enqueue(d, s2.id, "third", &p3, &seq, &err);
        ok(r == 0 && seq == 3, "enqueue prompts 2, 3");
        ok(db_prompt_cancel(d, p2, &err) == 0, "cancel queued prompt 2");
        {
                db_prompt p = { 0 };
                r = db_prompt_next(d, s2.id, true, &p, &err);
                ok(r == 0 && p.id == p1 && p.state == DB_PROMPT_RUNNING && strcmp(p.text, "first") == 0,
                   "next(claim) gives prompt 1, now running");
                db_prompt_clear(&p);
                ok(db_prompt_next(d, s2.id, true, &p, &err) == -EBUSY, "no second claim while one runs");
                ok(db_prompt_cancel(d, p1, &err) == -EBUSY, "a running prompt is not cancelled by cancel: %s", err.msg);
                ok(db_prompt_mark(d, p1, DB_PROMPT_QUEUED, &err) == -EINVAL, "running → queued refused");
                ok(db_prompt_mark(d, p1, DB_PROMPT_DONE, &err) == 0, "running → done");
                r = db_prompt_next(d, s2.id, false, &p, &err);
                ok(r == 0 && p.id == p3 && p.state == DB_PROMPT_QUEUED, "peek skips the cancelled prompt 2");
                db_prompt_clear(&p);
        }
        {
                size_t big = DB_PROMPT_MAX_BYTES + 1;
                char *t = malloc(big + 1);
                memset(t, 'x', big);
                t[big] = '\0';
                ok(db_prompt_enqueue(d, s2.id, t, NULL, NULL, &err) == -E2BIG, "prompt over 256 KiB refused: %s", err.msg);
                t[DB_PROMPT_MAX_BYTES] = '\0';
                ok(db_prompt_enqueue(d, s2.id, t, NULL, NULL, &err) == 0, "prompt of exactly 256 KiB accepted");
                free(t);
                ok(db_prompt_enqueue(d, "s-aaaaaaaaaaaa", "x", NULL, NULL, &err) == -ENOENT, "prompt for unknown session refused");
                db_prompt *v = NULL;
                size_t n = 0;
                r = db_prompt_list(d, s2.id, &v, &n, &err);
                ok(r == 0 && n == 4 && v[0].state == DB_PROMPT_DONE && v[1].state == DB_PROMPT_CANCELLED &&
                           v[2].state == DB_PROMPT_QUEUED,
                   "prompt list: done, cancelled, queued, queued");
                db_prompts_free(v, n);
        }

        /* -- events */
        {
                int64_t id1, seq1, id2, seq2;
                db_event_append(d, s2.id, "message", "{\"text\":\"a\"}", &id1, &seq1, &err);
                r = db_event_append(d, s2.id, "tool_call", NULL, &id2, &seq2, &err);
                ok(r == 0 && id2 > id1 && seq2 == seq1 + 1, "append: id and seq grow (%lld/%lld)", (long long) id2,
                   (long long) seq2);
                ok(db_event_append(d, s2.id, "bogus", "{}", NULL, NULL, &err) == -EINVAL, "unknown type refused");
                ok(db_event_append(d, s2.id, "message", "{not json", NULL, NULL, &err) == -EINVAL, "invalid JSON refused: %s",
                   err.msg);
                ok(db_event_append(d, "s-aaaaaaaaaaaa", "message", "{}", NULL, NULL, &err) == -ENOENT,
                   "event of unknown session refused");
                db_event *ev = NULL;
                size_t n = 0;
                r = db_events_after_id(d, id1 - 1, 2, &ev, &n, &err);
                ok(r == 0 && n == 2 && ev[0].id == id1 && ev[1].id == id2 && strcmp(ev[1].data, "{}") == 0,
                   "events after global id, with limit");
                db_events_free(ev, n);
        }
        {
                int64_t before = count_rows("SELECT count(*) FROM events");
                db_event_in batch[3] = {
                        { .session_id = s2.id, .type = "command_output", .data = "{\"o\":1}" },
                        { .session_id = s2.id, .type = "command_output", .data = "{\"o\":2}" },
                        { .session_id = s2.id, .type = "command_output", .data = "{broken" },
                };
                db_output_mark mark = { .session_id = s2.id, .proc_id = "p-1", .output_offset = 4096 };
                r = db_events_append_batch(d, batch, 3, &mark, NULL, NULL, &err);
                db_session got = { 0 };
                db_session_get(d, s2.id, &got, &err);
                ok(r == -EINVAL && count_rows("SELECT count(*) FROM events") == before && got.output_offset == 0 &&
                           got.proc_id == NULL,
                   "a batch with one bad event writes nothing, offset unchanged");
                db_session_clear(&got);
                int64_t seqs[2];
                r = db_events_append_batch(d, batch, 2, &mark, NULL, seqs, &err);
                db_session_get(d, s2.id, &got, &err);
                ok(r == 0 && seqs[1] == seqs[0] + 1 && got.output_offset == 4096 && got.proc_id &&
                           strcmp(got.proc_id, "p-1") == 0,
                   "batch and output offset committed together");
                db_session_clear(&got);
        }

        /* -- concurrency: 4 connections on 4 threads, each appending to its own session, plus a
         * pair sharing one session */
        {
                db_session ss[THREADS + 1];
                memset(ss, 0, sizeof ss);
                for (int i = 0; i < THREADS + 1; i++) {
                        snprintf(ss[i].repo_id, sizeof ss[i].repo_id, "%s", repo.id);
                        ss[i].base_ref = strdup("main");
                        ss[i].agent = strdup("command");
                        db_session_insert(d, &ss[i], &err);
                }
                struct worker w[THREADS + 2];
                pthread_t th[THREADS + 2];
                memset(w, 0, sizeof w);
                double t0 = now_s();
                for (int i = 0; i < THREADS + 2; i++) {
                        w[i].sid = ss[i < THREADS ? i : THREADS].id;
                        pthread_create(&th[i], NULL, append_worker, &w[i]);
                }
                for (int i = 0; i < THREADS + 2; i++)
                        pthread_join(th[i], NULL);
                double dt = now_s() - t0;
                int errs = 0, mono = 1;
                for (int i = 0; i < THREADS + 2; i++) {
                        if (w[i].rc < 0) {
                                errs++;
                                printf("# worker %d: %s\n", i, w[i].msg);
                        }
                        if (i < THREADS)
                                mono &= w[i].monotonic;
                }
                ok(errs == 0, "6 threads appended %d events each without error (%.2f s, %.0f single-event txn/s)", PER_THREAD,
                   dt, (THREADS + 2) * PER_THREAD / dt);
                ok(mono, "each single-writer session saw seq +1 and increasing global ids");
                int contiguous = 1;
                for (int i = 0; i < THREADS; i++) {
                        int64_t n = 0;
                        contiguous &= seqs_contiguous(d, ss[i].id, &n) && n == PER_THREAD + 1;
                }
                ok(contiguous, "per-session seqs are exactly 1..%d, ids increase with seq", PER_THREAD + 1);
                int64_t n = 0;
                int shared = seqs_contiguous(d, ss[THREADS].id, &n);
                ok(shared && n == 2 * PER_THREAD + 1,
                   "two writers on one session: seqs 1..%lld with no gap or duplicate", (long long) n);
                for (int i = 0; i < THREADS + 1; i++)
                        db_session_clear(&ss[i]);
        }

        /* -- throughput: 20,000 events in batches */
        {
                db_session bs = { 0 };
                snprintf(bs.repo_id, sizeof bs.repo_id, "%s", repo.id);
                bs.base_ref = strdup("main");
                bs.agent = strdup("command");
                db_session_insert(d, &bs, &err);
                enum { TOTAL = 20000, BATCH = 250 };
                db_event_in *b = calloc(BATCH, sizeof *b);
                char(*datas)[48] = calloc(BATCH, 48);
                int64_t start_id = count_rows("SELECT coalesce(max(id), 0) FROM events");
                double t0 = now_s();
                int fails = 0;
                for (int k = 0; k < TOTAL / BATCH; k++) {
                        for (int i = 0; i < BATCH; i++) {
                                snprintf(datas[i], 48, "{\"line\":%d}", k * BATCH + i);
                                b[i] = (db_event_in){ .session_id = bs.id, .type = "command_output", .data = datas[i] };
                        }
                        db_output_mark m = { .session_id = bs.id, .proc_id = "p", .output_offset = (k + 1) * 100 };
                        if (db_events_append_batch(d, b, BATCH, &m, NULL, NULL, &err) < 0)
                                fails++;
                }
                double dt = now_s() - t0;
                ok(fails == 0, "20,000 events in batches of %d: %.3f s = %.0f events/s", BATCH, dt, TOTAL / dt);
                /* A figure, not a check: a timed assertion fails on a loaded machine or under the
                 * sanitizers (bench/session-events.sh measures persistence against its target). */
                printf("# persisted %.0f events/s\n", TOTAL / dt);
                db_close(d);
                d = NULL;
                r = db_open(path, &d, &err);
                int64_t n = 0;
                int cont = r == 0 && seqs_contiguous(d, bs.id, &n);
                db_session got = { 0 };
                if (r == 0)
                        db_session_get(d, bs.id, &got, &err);
                ok(cont && n == TOTAL + 1 && got.output_offset == (TOTAL / BATCH) * 100,
                   "after reopen: %lld events of the batch session, offset %lld", (long long) n, (long long) got.output_offset);
                /* resume by global id in pages */
                int64_t after = start_id, seen = 0;
                for (;;) {
                        db_event *ev = NULL;
                        size_t k = 0;
                        if (db_events_after_id(d, after, 1000, &ev, &k, &err) < 0 || k == 0) {
                                db_events_free(ev, k);
                                break;
                        }
                        seen += (int64_t) k;
                        after = ev[k - 1].id;
                        db_events_free(ev, k);
                }
                ok(seen == TOTAL, "paging by global id returns all %lld", (long long) seen);
                db_session_clear(&got);
                free(b);
                free(datas);
                db_session_clear(&bs);
        }

        /* -- the loop's connection leaves checkpoints to another (walckpt.h) */
        {
                db_wal_manual(d);
                int grew = 1, last = -1, fails = 0;
                for (int i = 0; i < 1500; i++) { /* a transaction each, as a busy session's output */
                        db_event_in e = { .session_id = s.id, .type = "command_output", .data = "{\"text\":\"x\"}" };
                        if (db_events_append_batch(d, &e, 1, NULL, NULL, NULL, &err) < 0)
                                fails++;
                        grew &= db_wal_frames(d) > last;
                        last = db_wal_frames(d);
                }
                ok(fails == 0 && grew && last >= 1000,
                   "1,500 commits grow the log past 1,000 pages without a checkpoint (%d pages)", last);
                db *other = NULL;
                bool complete = false;
                r = db_open(path, &other, &err);
                ok(r == 0 && db_checkpoint(other, &complete, &err) == 0 && complete, "another connection checkpoints all of it");
                db_close(other);
                db_wal_frames_reset(d);
                db_event_in e = { .session_id = s.id, .type = "command_output", .data = "{\"text\":\"y\"}" };
                r = db_events_append_batch(d, &e, 1, NULL, NULL, NULL, &err);
                ok(r == 0 && db_wal_frames(d) > 0 && db_wal_frames(d) < 50, "the next commit starts the log again (%d pages)",
                   db_wal_frames(d));
        }

        /* -- artifacts, settings, deletes */
        {
                int64_t aid = 0;
                ok(db_artifact_add(d, s2.id, "log", "setup.log", "/data/x", 12, "{\"k\":1}", &aid, &err) == 0 && aid > 0,
                   "artifact added");
                char *val = NULL;
                ok(db_setting_set(d, "retention", "keep", &err) == 0 && db_setting_set(d, "retention", "drop", &err) == 0 &&
                           db_setting_get(d, "retention", &val, &err) == 0 && strcmp(val, "drop") == 0,
                   "settings upsert");
                free(val);
                ok(db_setting_delete(d, "retention", &err) == 0 && db_setting_get(d, "retention", &val, &err) == -ENOENT,
                   "settings delete");
                ok(db_repo_delete(d, repo.id, &err) == -EBUSY, "repo with sessions not deleted: %s", err.msg);
                char q[200];
                snprintf(q, sizeof q, "SELECT count(*) FROM events WHERE session_id = '%s'", s2.id);
                ok(count_rows(q) > 0 && db_session_delete(d, s2.id, &err) == 0 && count_rows(q) == 0,
                   "session delete cascades to its events");
                db_session_filter f = { .state_mask = 1u << SV_ARCHIVED };
                db_session *v = NULL;
                size_t n = 0;
                r = db_session_list(d, &f, &v, &n, &err);
                ok(r == 0 && n == 1 && strcmp(v[0].id, s.id) == 0, "list sessions by state");
                db_sessions_free(v, n);
        }

        /* -- a newer schema is refused */
        db_close(d);
        d = NULL;
        {
                sqlite3 *c = NULL;
                sqlite3_open(path, &c);
                sqlite3_exec(c, "PRAGMA user_version = 999", NULL, NULL, NULL);
                sqlite3_close(c);
                r = db_open(path, &d, &err);
                ok(r == -EPROTO && d == NULL, "a newer schema is refused: %s", err.msg);
        }

        db_repo_clear(&repo);
        db_session_clear(&s);
        db_session_clear(&s2);
        cleanup_files();
        return tap_done();
}
