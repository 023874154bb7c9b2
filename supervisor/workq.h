/* nightshift supervisor — worker threads for blocking work (git, file walks, sandboxd calls).
 *
 * The event loop submits jobs; a worker runs job->run on its own thread with its own resources
 * (a database connection and a sandboxd connection, see sv_worker), then the loop thread runs
 * job->done, which owns the job from then on.  Nothing else crosses threads: a job's fields are
 * written by the loop before submit, by the worker during run, and read by the loop in done. */
#pragma once

#include <stdbool.h>

#include "common/err.h"
#include "common/loop.h"

typedef struct db db;
typedef struct ns_client ns_client;
typedef struct sv_config sv_config;

/* One worker thread's resources.  `sbx` is connected lazily by sv_worker_sandboxd and reset after
 * a transport error, so a restarted sandboxd is picked up by the next job. */
typedef struct sv_worker {
        int index;
        const sv_config *cfg;
        db *db;
        ns_client *sbx;
} sv_worker;

/* The worker's sandboxd connection, connecting it if needed.  Returns 0 or -errno. */
int sv_worker_sandboxd(sv_worker *w, ns_client **out, ns_error *err);
/* Drop the connection after a transport error (ECONNRESET, EPIPE, EPROTO...). */
void sv_worker_sandboxd_reset(sv_worker *w, int error_code);

typedef struct sv_job sv_job;
struct sv_job {
        void (*run)(sv_job *job, sv_worker *w); /* on a worker thread */
        void (*done)(sv_job *job);              /* on the loop thread; owns and frees the job */
        sv_job *next_;                          /* the queue's */
};

typedef struct sv_workq sv_workq;

/* Start `n` workers, each opening the database at `db_path`.  Completions are delivered through
 * an eventfd watched on `loop`.  Returns 0 or -errno. */
int sv_workq_new(ns_loop *loop, const sv_config *cfg, const char *db_path, int n, sv_workq **out, ns_error *err);

/* Queue a job (FIFO).  Loop thread only. */
void sv_workq_submit(sv_workq *q, sv_job *job);

/* Jobs submitted and not yet done. */
int sv_workq_pending(const sv_workq *q);

/* Stop: workers finish their current job and exit; queued and finished-but-undelivered jobs get
 * their `done` run on the calling (loop) thread, so owners can free them. */
void sv_workq_free(sv_workq *q);
