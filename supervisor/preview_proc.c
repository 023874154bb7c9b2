/* nightshift supervisor — the previews' side of the proxy process (proxyproc.h): it is told every
 * preview (PUT, DROP), and its DIALs are answered by asking sandboxd on a worker for a socket
 * connected to the preview's port inside its sandbox, as the proxy did when it ran here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_int.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "preview_int.h"
#include "sandboxd/client.h"
#include "workq.h"

#define PV_PROC_DIALS_MAX 64    /* DIALs on the workers at once: the process cannot crowd out other jobs */
#define PV_PROC_WAITING_MAX 4096 /* and waiting their turn (the process holds at most 2048 connections) */

/* Asking sandboxd, on a worker, for a socket connected to the preview's port inside its sandbox
 * (op dial).  The answer goes to the proxy process that asked, if it is still the one running. */
typedef struct pv_dial_job {
        sv_job base;
        struct pv_dial_job *next_waiting;
        sv_server *srv;
        uint64_t gen, dial;
        char sandbox[NS_ID_MAX + 1];
        int port;
        int fd, rc;
        ns_error err;
} pv_dial_job;

static void dialed(struct sv_previews *pv, uint64_t dial, int fd, int error) {
        struct pvc_msg m = { .op = PVC_DIALED, .dial = dial, .error = fd >= 0 ? 0 : error > 0 ? error : EIO };
        sv_proxyproc_send(pv->proc, &m, fd);
}

static void dial_run(sv_job *base, sv_worker *w) {
        pv_dial_job *j = (pv_dial_job *) base;
        ns_client *sbx;
        if ((j->rc = sv_worker_sandboxd(w, &sbx, &j->err)) < 0)
                return;
        _cleanup_json_ cJSON *req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "op", "dial") || !cJSON_AddStringToObject(req, "sandbox", j->sandbox) ||
            !cJSON_AddNumberToObject(req, "port", j->port)) {
                j->rc = ns_err(&j->err, ENOMEM, "out of memory");
                return;
        }
        cJSON *reply = NULL;
        int fds[1];
        size_t n_fds = 1;
        j->rc = ns_client_call(sbx, req, NULL, 0, &reply, fds, &n_fds, &j->err);
        cJSON_Delete(reply);
        if (j->rc == 0 && n_fds == 1)
                j->fd = fds[0];
        else if (j->rc == 0)
                j->rc = ns_err(&j->err, EPROTO, "sandboxd: dial answered without a socket");
        if (j->rc == -ECONNRESET || j->rc == -EPIPE || j->rc == -EPROTO || j->rc == -ENOTCONN)
                sv_worker_sandboxd_reset(w, -j->rc);
}

static void dial_submit(struct sv_previews *pv, pv_dial_job *j) {
        pv->n_dials++;
        sv_workq_submit(pv->srv->wq, &j->base);
}

static void dial_done(sv_job *base) {
        pv_dial_job *j = (pv_dial_job *) base;
        struct sv_previews *pv = j->srv->previews;
        if (pv) {
                pv->n_dials--;
                pv_dial_job *next = pv->waiting;
                if (next) { /* its turn */
                        if (!(pv->waiting = next->next_waiting))
                                pv->waiting_tail = &pv->waiting;
                        pv->n_waiting--;
                        dial_submit(pv, next);
                }
                if (j->rc < 0)
                        log_debug("proxy process: dial %s port %d: %s", j->sandbox, j->port, j->err.msg);
                if (sv_proxyproc_gen(pv->proc) == j->gen) { /* else the process that asked is gone */
                        dialed(pv, j->dial, j->rc < 0 ? -1 : j->fd, -j->rc);
                        j->fd = -1;
                }
        }
        if (j->fd >= 0)
                close(j->fd);
        free(j);
}

/* A DIAL from the process: checked here as much as any request from the network. */
static void on_dial(void *data, uint64_t dial, const char *preview_id) {
        struct sv_previews *pv = data;
        sv_preview *p = pv_find(pv, preview_id);
        if (!p) /* unpublished meanwhile (the DROP crossed the DIAL) */
                return dialed(pv, dial, -1, ENOENT);
        /* Only while the session still has this sandbox: a preview dies with it. */
        const char *sb = sv_session_live_sandbox(pv->srv, p->sid);
        if (!sb || strcmp(sb, p->sandbox))
                return dialed(pv, dial, -1, ESRCH);
        pv_dial_job *j = pv->n_waiting < PV_PROC_WAITING_MAX ? calloc(1, sizeof *j) : NULL;
        if (!j)
                return dialed(pv, dial, -1, EAGAIN);
        j->base.run = dial_run;
        j->base.done = dial_done;
        j->srv = pv->srv;
        j->gen = sv_proxyproc_gen(pv->proc);
        j->dial = dial;
        j->fd = -1;
        j->port = p->port;
        snprintf(j->sandbox, sizeof j->sandbox, "%s", p->sandbox);
        if (pv->n_dials < PV_PROC_DIALS_MAX)
                return dial_submit(pv, j);
        *pv->waiting_tail = j;
        pv->waiting_tail = &j->next_waiting;
        pv->n_waiting++;
}

static void on_start(void *data) {
        struct sv_previews *pv = data;
        for (const sv_preview *p = pv->list; p; p = p->next)
                pv_proc_put(pv, p);
}

static const sv_proxyproc_ops pv_ops = { .on_start = on_start, .on_dial = on_dial };

int pv_proc_start(struct sv_previews *pv, ns_error *err) {
        pv->waiting_tail = &pv->waiting;
        sv_proxyproc_cfg cfg = { .exe = "/proc/self/exe", .listen_fd = pv->listen_fd,
                                 .domain = pv->srv->cfg.preview_domain, .log_level = pv->srv->cfg.log_level };
        return sv_proxyproc_new(pv->srv->loop, &cfg, &pv_ops, pv, &pv->proc, err);
}

void pv_proc_stop(struct sv_previews *pv) {
        sv_proxyproc_free(pv->proc);
        pv->proc = NULL;
        while (pv->waiting) { /* never submitted: nothing of theirs is open */
                pv_dial_job *j = pv->waiting;
                pv->waiting = j->next_waiting;
                free(j);
        }
        pv->waiting_tail = &pv->waiting;
        pv->n_waiting = 0;
}

void pv_proc_put(struct sv_previews *pv, const sv_preview *p) {
        struct pvc_msg m = { .op = PVC_PUT, .port = p->port };
        snprintf(m.id, sizeof m.id, "%s", p->id);
        memcpy(m.token_hash, p->token_hash, sizeof m.token_hash);
        sv_proxyproc_send(pv->proc, &m, -1);
}

void pv_proc_drop(struct sv_previews *pv, const sv_preview *p) {
        struct pvc_msg m = { .op = PVC_DROP };
        snprintf(m.id, sizeof m.id, "%s", p->id);
        sv_proxyproc_send(pv->proc, &m, -1);
}

void pv_proc_tick(struct sv_previews *pv) {
        sv_proxyproc_tick(pv->proc);
}
