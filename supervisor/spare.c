/* The spare-tree pool: see spare.h.  The git work is worktree.c's; this file decides when. */
#include "spare.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/loop.h"
#include "fsutil.h"

/* A refill waits this long after it was asked for: the session that asked is starting its
 * sandbox and its agent right then, and a checkout of thousands of files would compete with them
 * for the same disk. */
#define SPARE_REFILL_DELAY_MS 500
/* Disk use is counted this deep at most (a spare is ours, but its files are the repository's). */
#define SPARE_DU_MAX_DEPTH 64

typedef enum spare_state { SP_BUILDING, SP_READY, SP_MOVING } spare_state;

typedef struct spare {
        struct spare *next;
        char name[WORKTREE_SPARE_NAME_LEN + 1];
        char *mirror_path;
        char sha[41];
        char to_sha[41]; /* SP_MOVING: where to */
        uint64_t bytes;
        spare_state state;
        bool doomed; /* its repository was forgotten while the thread worked on it */
} spare;

typedef struct want {
        struct want *next;
        char *mirror_path;
        char sha[41];
        uint64_t not_before_ms;
} want;

struct sv_spares {
        char *root;
        int per_repo;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* the thread's work, and the end of a job (sv_spares_forget waits) */
        pthread_t thread;
        bool thread_up, stopping;
        spare *spares;
        want *wants;
        uint64_t taken, missed, discarded;
};

static void spare_free(spare *s) {
        if (s) {
                free(s->mirror_path);
                free(s);
        }
}

static void want_free(want *w) {
        if (w) {
                free(w->mirror_path);
                free(w);
        }
}

static void remove_spare_dir(sv_spares *sp, const char *name) {
        ns_error err;
        if (worktree_spare_remove(sp->root, name, &err) < 0)
                log_warn("spare trees: %s", err.msg);
}

/* Bytes of disk under directory `fd` (closed here), without following links. */
static uint64_t disk_usage(int fd, int depth) {
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return 0;
        }
        uint64_t total = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                total += (uint64_t) st.st_blocks * 512;
                if (S_ISDIR(st.st_mode) && depth < SPARE_DU_MAX_DEPTH) {
                        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                total += disk_usage(sub, depth + 1);
                }
        }
        closedir(d);
        return total;
}

static uint64_t spare_bytes(sv_spares *sp, const char *name) {
        ns_error err;
        _cleanup_close_ int rootfd = fs_open_trusted_dir(sp->root, &err);
        int fd = rootfd < 0 ? -1 : fs_open_dir_beneath(rootfd, name, &err);
        return fd < 0 ? 0 : disk_usage(fd, 0);
}

/* Every spare in the workspace root: none is known to be whole after a restart. */
static void sweep(sv_spares *sp) {
        ns_error err;
        _cleanup_close_ int rootfd = fs_open_trusted_dir(sp->root, &err);
        int fd = rootfd < 0 ? -1 : openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_closedir_ DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (!d) {
                if (fd >= 0)
                        close(fd);
                log_warn("spare trees: cannot read %s: %s", sp->root, rootfd < 0 ? err.msg : "fdopendir failed");
                return;
        }
        /* Names first, removal after: the directory does not change under readdir. */
        char (*names)[WORKTREE_SPARE_NAME_LEN + 1] = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!worktree_spare_name_valid(de->d_name))
                        continue;
                void *grown = realloc(names, (n + 1) * sizeof *names);
                if (!grown)
                        break;
                names = grown;
                memcpy(names[n++], de->d_name, sizeof names[0]); /* valid: exactly that long */
        }
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
                bytes += spare_bytes(sp, names[i]);
                remove_spare_dir(sp, names[i]);
        }
        if (n)
                log_info("spare trees: %zu stale spares removed from %s (%llu bytes)", n, sp->root,
                         (unsigned long long) bytes);
        free(names);
}

static void drop_want(sv_spares *sp, const char *mirror_path) {
        for (want **pp = &sp->wants; *pp;) {
                if (!strcmp((*pp)->mirror_path, mirror_path)) {
                        want *w = *pp;
                        *pp = w->next;
                        want_free(w);
                } else {
                        pp = &(*pp)->next;
                }
        }
}

static void unlink_spare(sv_spares *sp, spare *s) {
        for (spare **pp = &sp->spares; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        return;
                }
}

/* The next job, under the lock: a spare set to SP_MOVING or a new one in SP_BUILDING, or NULL
 * with *wait_ms the time until a delayed want is due (-1: none). */
static spare *next_job(sv_spares *sp, uint64_t now, int64_t *wait_ms) {
        *wait_ms = -1;
        for (want **pp = &sp->wants; *pp;) {
                want *w = *pp;
                if (now < w->not_before_ms) {
                        int64_t left = (int64_t) (w->not_before_ms - now);
                        if (*wait_ms < 0 || left < *wait_ms)
                                *wait_ms = left;
                        pp = &w->next;
                        continue;
                }
                int count = 0;
                for (spare *s = sp->spares; s; s = s->next) {
                        if (s->doomed || strcmp(s->mirror_path, w->mirror_path))
                                continue;
                        count++;
                        if (s->state == SP_READY && strcmp(s->sha, w->sha)) {
                                s->state = SP_MOVING;
                                memcpy(s->to_sha, w->sha, sizeof s->to_sha);
                                return s;
                        }
                }
                if (count < sp->per_repo) {
                        spare *s = calloc(1, sizeof *s);
                        ns_error err;
                        if (!s || !(s->mirror_path = strdup(w->mirror_path)) || worktree_spare_name_new(s->name, &err) < 0) {
                                spare_free(s);
                                return NULL; /* tried again at the next want */
                        }
                        memcpy(s->sha, w->sha, sizeof s->sha);
                        s->state = SP_BUILDING;
                        s->next = sp->spares;
                        sp->spares = s;
                        return s;
                }
                /* Satisfied: the next session that takes a spare asks again. */
                *pp = w->next;
                want_free(w);
        }
        return NULL;
}

static void *spare_thread(void *arg) {
        sv_spares *sp = arg;
        sweep(sp);
        pthread_mutex_lock(&sp->lock);
        while (!sp->stopping) {
                int64_t wait_ms;
                spare *s = next_job(sp, ns_now_ms(), &wait_ms);
                if (!s) {
                        if (wait_ms < 0) {
                                pthread_cond_wait(&sp->cond, &sp->lock);
                        } else {
                                struct timespec ts;
                                clock_gettime(CLOCK_REALTIME, &ts);
                                ts.tv_sec += wait_ms / 1000;
                                ts.tv_nsec += (wait_ms % 1000) * 1000000;
                                if (ts.tv_nsec >= 1000000000) {
                                        ts.tv_sec++;
                                        ts.tv_nsec -= 1000000000;
                                }
                                pthread_cond_timedwait(&sp->cond, &sp->lock, &ts);
                        }
                        continue;
                }
                /* The entry is ours while it is busy: nobody else touches it but to set doomed. */
                bool moving = s->state == SP_MOVING;
                pthread_mutex_unlock(&sp->lock);
                ns_error err = { 0 };
                uint64_t t0 = ns_now_ms();
                int r = moving ? worktree_spare_move(sp->root, s->name, s->mirror_path, s->sha, s->to_sha, &err)
                               : worktree_spare_create(sp->root, s->name, s->mirror_path, s->sha, &err);
                uint64_t bytes = r < 0 ? 0 : spare_bytes(sp, s->name);
                if (r < 0)
                        log_warn("spare trees: %s %s for %s: %s", moving ? "moving" : "making", s->name, s->mirror_path,
                                 err.msg);
                else
                        log_debug("spare trees: %s %s for %s at %.12s in %llu ms (%llu bytes)", moving ? "moved" : "made",
                                  s->name, s->mirror_path, moving ? s->to_sha : s->sha,
                                  (unsigned long long) (ns_now_ms() - t0), (unsigned long long) bytes);
                pthread_mutex_lock(&sp->lock);
                if (r < 0 || s->doomed) {
                        /* A spare that failed to move may be half-moved: not trusted to be whole. */
                        if (r < 0 && !moving)
                                drop_want(sp, s->mirror_path); /* no retry loop: the next session asks again */
                        if (r < 0 && moving)
                                sp->discarded++; /* its commit gone from the mirror, or an I/O error */
                        unlink_spare(sp, s);
                        pthread_mutex_unlock(&sp->lock);
                        if (r == 0 || moving)
                                remove_spare_dir(sp, s->name); /* a failed create left nothing */
                        spare_free(s);
                        pthread_mutex_lock(&sp->lock);
                } else {
                        if (moving)
                                memcpy(s->sha, s->to_sha, sizeof s->sha);
                        s->bytes = bytes;
                        s->state = SP_READY;
                }
                pthread_cond_broadcast(&sp->cond);
        }
        pthread_mutex_unlock(&sp->lock);
        return NULL;
}

int sv_spares_new(const char *workspace_root, int per_repo, sv_spares **out, ns_error *err) {
        *out = NULL;
        sv_spares *sp = calloc(1, sizeof *sp);
        if (!sp || !(sp->root = strdup(workspace_root))) {
                free(sp);
                return ns_err(err, ENOMEM, "out of memory");
        }
        sp->per_repo = per_repo;
        pthread_mutex_init(&sp->lock, NULL);
        pthread_cond_init(&sp->cond, NULL);
        int r = pthread_create(&sp->thread, NULL, spare_thread, sp);
        if (r) {
                sv_spares_free(sp);
                return ns_err_sys(err, r, "start the spare-tree thread");
        }
        sp->thread_up = true;
        *out = sp;
        return 0;
}

void sv_spares_free(sv_spares *sp) {
        if (!sp)
                return;
        if (sp->thread_up) {
                pthread_mutex_lock(&sp->lock);
                sp->stopping = true;
                pthread_cond_broadcast(&sp->cond);
                pthread_mutex_unlock(&sp->lock);
                pthread_join(sp->thread, NULL);
        }
        /* Spares do not outlive the process that knows they are whole. */
        size_t n = 0;
        while (sp->spares) {
                spare *s = sp->spares;
                sp->spares = s->next;
                remove_spare_dir(sp, s->name);
                spare_free(s);
                n++;
        }
        if (n)
                log_info("spare trees: %zu removed at shutdown", n);
        while (sp->wants) {
                want *w = sp->wants;
                sp->wants = w->next;
                want_free(w);
        }
        pthread_cond_destroy(&sp->cond);
        pthread_mutex_destroy(&sp->lock);
        free(sp->root);
        free(sp);
}

bool sv_spares_take(sv_spares *sp, const char *mirror_path, char name[WORKTREE_SPARE_NAME_LEN + 1], char sha[41]) {
        if (!sp || sp->per_repo <= 0)
                return false;
        pthread_mutex_lock(&sp->lock);
        spare *found = NULL;
        for (spare *s = sp->spares; s && !found; s = s->next)
                if (s->state == SP_READY && !s->doomed && !strcmp(s->mirror_path, mirror_path))
                        found = s;
        if (found) {
                unlink_spare(sp, found);
                sp->taken++;
        } else {
                sp->missed++;
        }
        pthread_mutex_unlock(&sp->lock);
        if (!found)
                return false;
        memcpy(name, found->name, WORKTREE_SPARE_NAME_LEN + 1);
        memcpy(sha, found->sha, 41);
        spare_free(found);
        return true;
}

void sv_spares_unusable(sv_spares *sp) {
        if (!sp)
                return;
        pthread_mutex_lock(&sp->lock);
        sp->taken--;
        sp->missed++;
        sp->discarded++;
        pthread_mutex_unlock(&sp->lock);
}

void sv_spares_want(sv_spares *sp, const char *mirror_path, const char *sha) {
        if (!sp || sp->per_repo <= 0 || !mirror_path || !sha || strlen(sha) != 40)
                return;
        pthread_mutex_lock(&sp->lock);
        want *w = sp->wants;
        while (w && strcmp(w->mirror_path, mirror_path))
                w = w->next;
        if (!w && (w = calloc(1, sizeof *w))) {
                if ((w->mirror_path = strdup(mirror_path))) {
                        w->next = sp->wants;
                        sp->wants = w;
                } else {
                        free(w);
                        w = NULL;
                }
        }
        if (w) {
                memcpy(w->sha, sha, 41);
                w->not_before_ms = ns_now_ms() + SPARE_REFILL_DELAY_MS;
                pthread_cond_broadcast(&sp->cond);
        }
        pthread_mutex_unlock(&sp->lock);
}

void sv_spares_forget(sv_spares *sp, const char *mirror_path) {
        if (!sp)
                return;
        spare *gone = NULL;
        pthread_mutex_lock(&sp->lock);
        drop_want(sp, mirror_path);
        for (;;) {
                bool busy = false;
                for (spare **pp = &sp->spares; *pp;) {
                        spare *s = *pp;
                        if (strcmp(s->mirror_path, mirror_path)) {
                                pp = &s->next;
                        } else if (s->state == SP_READY) {
                                *pp = s->next;
                                s->next = gone;
                                gone = s;
                        } else {
                                s->doomed = true; /* the thread removes it when done */
                                busy = true;
                                pp = &s->next;
                        }
                }
                if (!busy || !sp->thread_up)
                        break;
                pthread_cond_wait(&sp->cond, &sp->lock);
        }
        pthread_mutex_unlock(&sp->lock);
        while (gone) {
                spare *s = gone;
                gone = s->next;
                remove_spare_dir(sp, s->name);
                spare_free(s);
        }
}

void sv_spares_stats(sv_spares *sp, sv_spare_stats *out) {
        *out = (sv_spare_stats){ 0 };
        if (!sp)
                return;
        pthread_mutex_lock(&sp->lock);
        for (const spare *s = sp->spares; s; s = s->next) {
                if (s->state == SP_READY) {
                        out->ready++;
                        out->bytes += s->bytes;
                } else {
                        out->busy++;
                }
        }
        out->taken = sp->taken;
        out->missed = sp->missed;
        out->discarded = sp->discarded;
        pthread_mutex_unlock(&sp->lock);
}
