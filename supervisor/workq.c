#include "workq.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "config.h"
#include "db.h"
#include "sandboxd/client.h"

struct sv_workq {
        ns_loop *loop;
        ns_watch *watch;
        int efd;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        sv_job *todo_head, *todo_tail; /* guarded by mu */
        sv_job *done_head, *done_tail; /* guarded by mu */
        bool stopping;                 /* guarded by mu */
        int pending;                   /* loop thread only */
        int n;       /* threads started */
        int n_alloc; /* workers[] entries */
        pthread_t *threads;
        sv_worker *workers;
};

int sv_worker_sandboxd(sv_worker *w, ns_client **out, ns_error *err) {
        if (w->sbx) {
                /* Exit notices of our execs pile up here unread (we follow processes through their
                 * streams); drop them, and notice a daemon that went away since the last job. */
                cJSON *n = NULL;
                ns_error e2;
                int r;
                while ((r = ns_client_next_notice(w->sbx, &n, &e2)) > 0)
                        cJSON_Delete(n);
                if (r < 0) {
                        log_debug("worker %d: sandboxd connection lost (%s); reconnecting", w->index, e2.msg);
                        ns_client_free(w->sbx);
                        w->sbx = NULL;
                }
        }
        if (!w->sbx) {
                log_debug("worker %d: connecting to sandboxd", w->index);
                int r = ns_client_connect(w->cfg->sandboxd_socket, &w->sbx, err);
                if (r < 0)
                        return ns_err_wrap(err, "sandboxd at %s", w->cfg->sandboxd_socket);
        }
        *out = w->sbx;
        return 0;
}

void sv_worker_sandboxd_reset(sv_worker *w, int error_code) {
        if (error_code < 0)
                error_code = -error_code;
        /* Errors the daemon answered keep the connection; transport failures drop it. */
        if (error_code == ECONNRESET || error_code == EPIPE || error_code == EPROTO || error_code == ENOTCONN ||
            error_code == EMSGSIZE) {
                log_debug("worker %d: dropping the sandboxd connection (%s)", w->index, ns_errno_name(error_code));
                ns_client_free(w->sbx);
                w->sbx = NULL;
        }
}

static void push(sv_job **head, sv_job **tail, sv_job *j) {
        j->next_ = NULL;
        if (*tail)
                (*tail)->next_ = j;
        else
                *head = j;
        *tail = j;
}

static sv_job *pop(sv_job **head, sv_job **tail) {
        sv_job *j = *head;
        if (j) {
                *head = j->next_;
                if (!*head)
                        *tail = NULL;
                j->next_ = NULL;
        }
        return j;
}

struct worker_arg {
        sv_workq *q;
        sv_worker *w;
};

static void *worker_thread(void *arg) {
        struct worker_arg *a = arg;
        sv_workq *q = a->q;
        sv_worker *w = a->w;
        free(a);
        for (;;) {
                pthread_mutex_lock(&q->mu);
                while (!q->todo_head && !q->stopping)
                        pthread_cond_wait(&q->cv, &q->mu);
                if (q->stopping) {
                        pthread_mutex_unlock(&q->mu);
                        return NULL;
                }
                sv_job *j = pop(&q->todo_head, &q->todo_tail);
                pthread_mutex_unlock(&q->mu);

                j->run(j, w);

                pthread_mutex_lock(&q->mu);
                push(&q->done_head, &q->done_tail, j);
                pthread_mutex_unlock(&q->mu);
                uint64_t one = 1;
                ssize_t wr = write(q->efd, &one, sizeof one);
                (void) wr; /* the counter cannot overflow at our rates; a failed wake is retried by the next */
        }
}

static void deliver(sv_workq *q) {
        for (;;) {
                pthread_mutex_lock(&q->mu);
                sv_job *j = pop(&q->done_head, &q->done_tail);
                pthread_mutex_unlock(&q->mu);
                if (!j)
                        return;
                q->pending--;
                j->done(j);
        }
}

static void on_efd(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) loop, (void) w, (void) events;
        uint64_t v;
        ssize_t rd = read(fd, &v, sizeof v);
        (void) rd;
        deliver(data);
}

int sv_workq_new(ns_loop *loop, const sv_config *cfg, const char *db_path, int n, sv_workq **out, ns_error *err) {
        sv_workq *q = calloc(1, sizeof *q);
        if (!q)
                return ns_err(err, ENOMEM, "out of memory");
        q->loop = loop;
        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, NULL);
        q->threads = calloc((size_t) n, sizeof *q->threads);
        q->workers = calloc((size_t) n, sizeof *q->workers);
        int r;
        if (q->efd < 0 || !q->threads || !q->workers) {
                r = q->efd < 0 ? ns_err_sys(err, errno, "eventfd") : ns_err(err, ENOMEM, "out of memory");
                goto fail;
        }
        if (!(q->watch = ns_loop_add(loop, q->efd, EPOLLIN, on_efd, q, err))) {
                r = -err->code;
                goto fail;
        }
        q->n_alloc = n;
        for (int i = 0; i < n; i++)
                q->workers[i] = (sv_worker){ .index = i, .cfg = cfg };
        for (int i = 0; i < n; i++) {
                if ((r = db_open(db_path, &q->workers[i].db, err)) < 0)
                        goto fail;
        }
        for (int i = 0; i < n; i++) {
                struct worker_arg *a = malloc(sizeof *a);
                if (!a) {
                        r = ns_err(err, ENOMEM, "out of memory");
                        goto fail;
                }
                *a = (struct worker_arg){ q, &q->workers[i] };
                int e = pthread_create(&q->threads[i], NULL, worker_thread, a);
                if (e) {
                        free(a);
                        r = ns_err_sys(err, e, "pthread_create");
                        goto fail;
                }
                q->n = i + 1;
        }
        *out = q;
        return 0;
fail:
        sv_workq_free(q);
        return r;
}

void sv_workq_submit(sv_workq *q, sv_job *job) {
        q->pending++;
        pthread_mutex_lock(&q->mu);
        push(&q->todo_head, &q->todo_tail, job);
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
}

int sv_workq_pending(const sv_workq *q) {
        return q->pending;
}

void sv_workq_free(sv_workq *q) {
        if (!q)
                return;
        pthread_mutex_lock(&q->mu);
        q->stopping = true;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < q->n; i++)
                pthread_join(q->threads[i], NULL);
        /* Finished jobs first, then the ones no worker took: every owner gets its done. */
        deliver(q);
        for (sv_job *j; (j = pop(&q->todo_head, &q->todo_tail));) {
                q->pending--;
                j->done(j);
        }
        for (int i = 0; i < q->n_alloc; i++) {
                db_close(q->workers[i].db);
                ns_client_free(q->workers[i].sbx);
        }
        ns_loop_remove(q->loop, q->watch);
        if (q->efd >= 0)
                close(q->efd);
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        free(q->threads);
        free(q->workers);
        free(q);
}
