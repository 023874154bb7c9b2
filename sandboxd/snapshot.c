/* Snapshots and the layers they make (PROTOCOL.md: `snapshot`, `layers`, `layer_remove`).
 *
 * A snapshot destroys its sandbox like `destroy` does, and once the sandbox's init is dead (so no
 * overlay has the upper layer mounted: the trust rule is never to read the upper of a live
 * overlay) a child process turns the upper layer into a read-only layer (layer.c) and removes the
 * rest.  The reply waits for the layer.  Layers are removed the same way: renamed out of sight on
 * the request, deleted by a child. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "sandboxd/cgroup.h"
#include "sandboxd/pool.h"
#include "sandboxd/daemon.h"
#include "sandboxd/fsdel.h"
#include "sandboxd/layer.h"

#define SNAPSHOT_DRAIN_MS 10000 /* the sandbox's last processes leave its cgroup within this */

struct sbx_snapshot {
        struct sbx_snapshot *next;
        struct sbx_daemon *d;
        struct sbx_client *client; /* NULL once it went away */
        int64_t req_id;
        char layer[LAYER_NAME_MAX + 1];
        char sandbox[NS_ID_MAX + 1];
        char overlays[NS_OVERLAYS_MAX][NS_OVERLAY_PATH_MAX + 1];
        size_t n_overlays;
        int result_fd;
        ns_watch *w;
};

/* What the child reports: one write, below PIPE_BUF. */
struct snapshot_result {
        ns_error err;
        struct layer_stats st;
};

bool layer_in_use(const struct sbx_daemon *d, const char *name) {
        /* Not the dying: a destroyed sandbox is gone for every client the moment destroy answers,
         * its layers with it, though the kernel may still be tearing its namespaces down after
         * init's death (asynchronously, off the request).  Unlinking a layer's files under such
         * an overlay is safe: every process that could read them has been killed. */
        for (const struct sbx_sandbox *s = d->sandboxes; s; s = s->next)
                for (size_t i = 0; i < s->n_layers; i++)
                        if (!strcmp(s->layers[i], name))
                                return true;
        for (const struct sbx_snapshot *j = d->snapshots; j; j = j->next)
                if (!strcmp(j->layer, name))
                        return true;
        for (const struct sbx_sandbox *s = d->dying; s; s = s->next)
                if (s->snap && !strcmp(s->snap->layer, name))
                        return true;
        return false;
}

int snapshot_start(struct sbx_sandbox *s, struct sbx_client *c, int64_t req_id, const char *layer, ns_error *err) {
        struct sbx_daemon *d = s->d;
        if (d->layers_fd < 0)
                return ns_err(err, ENOENT, "no --layers-dir is configured");
        if (s->limits.disk)
                return ns_err(err, EOPNOTSUPP, "a sandbox with a disk limit cannot be snapshotted");
        struct stat st;
        if (fstatat(d->layers_fd, layer, &st, AT_SYMLINK_NOFOLLOW) == 0 || layer_in_use(d, layer))
                return ns_err(err, EEXIST, "layer '%s' exists", layer);
        struct sbx_snapshot *j = calloc(1, sizeof *j);
        if (!j)
                return ns_err(err, ENOMEM, "out of memory");
        *j = (struct sbx_snapshot){ .d = d, .client = c, .req_id = req_id, .result_fd = -1 };
        snprintf(j->layer, sizeof j->layer, "%s", layer);
        snprintf(j->sandbox, sizeof j->sandbox, "%s", s->id);
        memcpy(j->overlays, s->overlays, sizeof j->overlays);
        j->n_overlays = s->n_overlays;
        s->snap = j;
        /* The rest happens in snapshot_take_over, once init is dead. */
        sandbox_destroy(s);
        return 0;
}

static void snapshot_free(struct sbx_snapshot *j) {
        if (j->w)
                ns_loop_remove(j->d->loop, j->w);
        if (j->result_fd >= 0)
                close(j->result_fd);
        free(j);
}

static void snapshot_reply(struct sbx_snapshot *j, const struct snapshot_result *res) {
        if (!j->client)
                return;
        if (res->err.code) {
                server_reply_error(j->client, j->req_id, &res->err);
                return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *l = cJSON_AddObjectToObject(o, "layer");
        cJSON_AddStringToObject(l, "name", j->layer);
        cJSON_AddNumberToObject(l, "bytes", (double) res->st.bytes);
        cJSON_AddNumberToObject(l, "files", (double) res->st.files);
        server_reply(j->client, j->req_id, o, -1);
}

static void on_snapshot_done(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct sbx_snapshot *j = data;
        struct sbx_daemon *d = j->d;
        struct snapshot_result res = { 0 };
        ssize_t n = read(fd, &res, sizeof res);
        if (n != (ssize_t) sizeof res) {
                memset(&res, 0, sizeof res);
                ns_err(&res.err, EIO, "the snapshot process of %s died", j->sandbox);
        }
        res.err.msg[sizeof res.err.msg - 1] = '\0';
        if (res.err.code)
                log_warn("snapshot of %s into layer %s: %s", j->sandbox, j->layer, res.err.msg);
        else
                log_info("snapshot of %s: layer %s, %llu files", j->sandbox, j->layer,
                         (unsigned long long) res.st.files);
        snapshot_reply(j, &res);
        for (struct sbx_snapshot **pp = &d->snapshots; *pp; pp = &(*pp)->next)
                if (*pp == j) {
                        *pp = j->next;
                        break;
                }
        snapshot_free(j);
}

/* In a forked child: nothing of the daemon's clients may be held here, or a client that closes
 * would not be seen to (its ephemeral sandboxes would outlive it) until we exit. */
static void child_drop_daemon_fds(struct sbx_daemon *d) {
        server_close_fds_in_child(d);
        for (struct sbx_sandbox *s = d->sandboxes; s; s = s->next)
                if (s->ctl_fd >= 0)
                        close(s->ctl_fd);
        pool_zygote_close_in_child(d);
}

_Noreturn static void snapshot_child(struct sbx_daemon *d, const struct sbx_snapshot *j, uid_t uid_base, uid_t owner,
                                     int wfd) {
        prctl(PR_SET_NAME, "nsd-snapshot");
        child_drop_daemon_fds(d);
        /* One descriptor per directory level while walking. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        struct snapshot_result res = { 0 };
        int r = cg_wait_empty(d->cg, j->sandbox, SNAPSHOT_DRAIN_MS, &res.err);
        const char *ov[NS_OVERLAYS_MAX];
        for (size_t i = 0; i < j->n_overlays; i++)
                ov[i] = j->overlays[i];
        if (r == 0)
                r = layer_from_upper(d->upper_fd, j->sandbox, d->layers_fd, j->layer, uid_base, SBX_UID_RANGE, owner,
                                     ov, j->n_overlays, &res.st, &res.err);
        sandbox_remove_leftovers(d, j->sandbox);
        (void) !write(wfd, &res, sizeof res);
        _exit(r < 0 ? 1 : 0);
}

bool snapshot_take_over(struct sbx_sandbox *s, uid_t uid_base) {
        struct sbx_daemon *d = s->d;
        struct sbx_snapshot *j = s->snap;
        s->snap = NULL;
        int p[2];
        struct snapshot_result res = { 0 };
        if (pipe2(p, O_CLOEXEC) < 0) {
                ns_err_sys(&res.err, errno, "pipe2");
                goto fail;
        }
        pid_t pid = fork();
        if (pid < 0) {
                ns_err_sys(&res.err, errno, "fork the snapshot process");
                close(p[0]);
                close(p[1]);
                goto fail;
        }
        if (pid == 0) {
                close(p[0]);
                snapshot_child(d, j, uid_base, s->owner, p[1]);
        }
        /* The child is reaped with the daemon's other orphans (SIGCHLD); its result comes here. */
        close(p[1]);
        j->result_fd = p[0];
        if (!(j->w = ns_loop_add(d->loop, j->result_fd, EPOLLIN, on_snapshot_done, j, NULL))) {
                /* Cannot watch it: wait here rather than lose the reply. */
                ssize_t n = read(j->result_fd, &res, sizeof res);
                if (n != (ssize_t) sizeof res)
                        ns_err(&res.err, EIO, "the snapshot process of %s died", j->sandbox);
                snapshot_reply(j, &res);
                snapshot_free(j);
                return true;
        }
        j->next = d->snapshots;
        d->snapshots = j;
        return true;
fail:
        snapshot_reply(j, &res);
        snapshot_free(j);
        return false;
}

void snapshot_drop(struct sbx_snapshot *j) {
        if (j)
                snapshot_free(j);
}

void snapshot_forget_client(struct sbx_daemon *d, struct sbx_client *c) {
        for (struct sbx_snapshot *j = d->snapshots; j; j = j->next)
                if (j->client == c)
                        j->client = NULL;
        for (struct sbx_sandbox *s = d->dying; s; s = s->next)
                if (s->snap && s->snap->client == c)
                        s->snap->client = NULL;
}

void snapshot_free_all(struct sbx_daemon *d) {
        while (d->snapshots) {
                struct sbx_snapshot *j = d->snapshots;
                d->snapshots = j->next;
                snapshot_free(j);
        }
}

int layer_remove_op(struct sbx_daemon *d, uid_t peer, const char *name, ns_error *err) {
        if (d->layers_fd < 0)
                return ns_err(err, ENOENT, "no --layers-dir is configured");
        if (layer_in_use(d, name))
                return ns_err(err, EBUSY, "layer '%s' is in use by a sandbox", name);
        char trash[32];
        int r = layer_remove(d->layers_fd, name, peer, trash, sizeof trash, err);
        if (r < 0)
                return r;
        /* Gone for everyone already; the tree may be large: delete it in a child. */
        pid_t pid = fork();
        if (pid == 0) {
                prctl(PR_SET_NAME, "nsd-layer-rm");
                child_drop_daemon_fds(d);
                fsdel_tree_at(d->layers_fd, trash, NULL);
                _exit(0);
        }
        if (pid < 0)
                fsdel_tree_at(d->layers_fd, trash, NULL);
        return 0;
}
