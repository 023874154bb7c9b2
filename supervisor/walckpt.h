/* nightshift supervisor — checkpoints of the database's write-ahead log on a worker.
 *
 * SQLite checkpoints the log on the connection whose commit grew it past 1000 pages: the pages
 * copied back into the database file and an fsync of each, on the committing thread.  The loop
 * thread commits every event a session prints (a transaction per output chunk, a few pages each),
 * so at a thousand events a second it stopped several times a second for 1–40 ms of fsync, and
 * every subscriber's events with it.  Its connection checkpoints no more (db_wal_manual); the tick
 * hands the checkpoint to a worker's connection once the log has 1000 pages.  Commits go on
 * meanwhile (a checkpoint and a writer do not exclude each other in WAL mode).  During a busy
 * session the loop still checkpoints once per 8,000 pages (walckpt.c: so that the log starts
 * again), copying back only the little the worker has not, instead of once per 1,000. */
#pragma once

typedef struct sv_server sv_server;

/* Take over the loop connection's checkpoints (at start, once the workers run). */
void sv_wal_start(sv_server *s);
/* From the tick: a checkpoint on a worker when the log has grown (one at a time); on the loop
 * thread itself only if the log grew far past that meanwhile (the workers busy for long). */
void sv_wal_tick(sv_server *s);
