/* nightshift supervisor — checkpoints of the write-ahead log on a worker (see walckpt.h). */
#include "walckpt.h"

#include <stdlib.h>

#include "common/log.h"
#include "db.h"
#include "serve.h"

#define WAL_CHECKPOINT_FRAMES 1000 /* as SQLite's automatic checkpoint */
/* The log starts again from its beginning only at a commit that finds all of it copied back: a
 * worker's checkpoint with no commit during it.  While a session keeps committing (every
 * millisecond or so) that never happens, so the loop checkpoints itself once the log reaches
 * this (~32 MB), copying back only what came since the worker's last pass; the log file keeps
 * that size. */
#define WAL_INLINE_FRAMES 8000

struct wal_job {
        sv_job base;
        sv_server *srv;
        int r;
        bool complete;
        ns_error err;
};

static void wal_run(sv_job *job, sv_worker *w) {
        struct wal_job *j = (struct wal_job *) job;
        j->r = db_checkpoint(w->db, &j->complete, &j->err);
}

static void wal_done(sv_job *job) {
        struct wal_job *j = (struct wal_job *) job;
        sv_server *s = j->srv;
        s->wal_checkpointing = false;
        if (j->r < 0)
                log_warn("database: %s", j->err.msg);
        else if (j->complete)
                db_wal_frames_reset(s->db); /* the next commit starts the log again */
        free(j);
}

void sv_wal_start(sv_server *s) {
        db_wal_manual(s->db);
}

void sv_wal_tick(sv_server *s) {
        int frames = db_wal_frames(s->db);
        if (frames < WAL_CHECKPOINT_FRAMES)
                return;
        if (s->wal_checkpointing) {
                if (frames >= WAL_INLINE_FRAMES) {
                        bool complete = false;
                        ns_error err;
                        if (db_checkpoint(s->db, &complete, &err) < 0)
                                log_warn("database: %s", err.msg);
                        else if (complete)
                                db_wal_frames_reset(s->db);
                }
                return;
        }
        struct wal_job *j = calloc(1, sizeof *j);
        if (!j)
                return;
        j->base.run = wal_run;
        j->base.done = wal_done;
        j->srv = s;
        s->wal_checkpointing = true;
        sv_workq_submit(s->wq, &j->base);
}
