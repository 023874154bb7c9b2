#include "sbxops.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"

static void cjson_deletep(cJSON **j) {
        cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(cjson_deletep)

static cJSON *request(const char *op, const char *sandbox) {
        cJSON *req = cJSON_CreateObject();
        if (req && (!cJSON_AddStringToObject(req, "op", op) ||
                    (sandbox && !cJSON_AddStringToObject(req, "sandbox", sandbox)))) {
                cJSON_Delete(req);
                return NULL;
        }
        return req;
}

static int add_strv(cJSON *obj, const char *key, const char *const *v) {
        cJSON *a = cJSON_AddArrayToObject(obj, key);
        if (!a)
                return -ENOMEM;
        for (; v && *v; v++) {
                cJSON *s = cJSON_CreateString(*v);
                if (!s || !cJSON_AddItemToArray(a, s)) {
                        cJSON_Delete(s);
                        return -ENOMEM;
                }
        }
        return 0;
}

int sbx_layer_exists(ns_client *c, const char *name, bool *exists, ns_error *err) {
        _cleanup_json_ cJSON *req = request("layers", NULL);
        if (!req)
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_json_ cJSON *reply = NULL;
        int r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
        if (r < 0)
                return r;
        *exists = false;
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(reply, "layers")) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(l, "name");
                if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
                        *exists = true;
        }
        return 0;
}

int sbx_snapshot(ns_client *c, const char *sandbox, const char *layer, ns_error *err) {
        _cleanup_json_ cJSON *req = request("snapshot", sandbox);
        if (!req || !cJSON_AddStringToObject(req, "layer", layer))
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_json_ cJSON *reply = NULL;
        return ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
}

/* A connector {port, host_port | host_path} into `arr`: inside at `port`, to host_path when it is
 * set, else to 127.0.0.1:host_port.  False when out of memory. */
static bool connector_add(cJSON *arr, int port, int host_port, const char *host_path) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o))
                return cJSON_Delete(o), false;
        return cJSON_AddNumberToObject(o, "port", port) &&
               (host_path ? cJSON_AddStringToObject(o, "host_path", host_path) != NULL
                          : cJSON_AddNumberToObject(o, "host_port", host_port) != NULL);
}

int sbx_create(ns_client *c, const sbx_create_spec *spec, char id_out[NS_ID_MAX + 1], ns_error *err) {
        _cleanup_json_ cJSON *req = request("create", NULL);
        if (!req || !cJSON_AddStringToObject(req, "workspace", spec->workspace) ||
            !cJSON_AddStringToObject(req, "net", spec->net ? spec->net : "none"))
                return ns_err(err, ENOMEM, "out of memory");
        if ((spec->memory && !cJSON_AddNumberToObject(req, "memory", (double) spec->memory)) ||
            (spec->pids && !cJSON_AddNumberToObject(req, "pids", (double) spec->pids)) ||
            (spec->cpus > 0 && !cJSON_AddNumberToObject(req, "cpus", spec->cpus)))
                return ns_err(err, ENOMEM, "out of memory");
        if (spec->n_layers) {
                const char *names[NS_LAYERS_MAX + 1];
                size_t n = spec->n_layers < NS_LAYERS_MAX ? spec->n_layers : NS_LAYERS_MAX;
                memcpy(names, spec->layers, n * sizeof *names);
                names[n] = NULL;
                if (add_strv(req, "layers", names) < 0)
                        return ns_err(err, ENOMEM, "out of memory");
        }
        if (spec->n_overlays) {
                const char *paths[NS_OVERLAYS_MAX + 1];
                size_t n = spec->n_overlays < NS_OVERLAYS_MAX ? spec->n_overlays : NS_OVERLAYS_MAX;
                memcpy(paths, spec->overlays, n * sizeof *paths);
                paths[n] = NULL;
                if (add_strv(req, "overlays", paths) < 0)
                        return ns_err(err, ENOMEM, "out of memory");
        }
        if (spec->n_ro_binds) {
                cJSON *a = cJSON_AddArrayToObject(req, "ro_binds");
                for (size_t i = 0; a && i < spec->n_ro_binds; i++) {
                        cJSON *o = cJSON_CreateObject();
                        if (!o || !cJSON_AddItemToArray(a, o) || !cJSON_AddStringToObject(o, "src", spec->ro_binds[i].src) ||
                            !cJSON_AddStringToObject(o, "dst", spec->ro_binds[i].dst))
                                return ns_err(err, ENOMEM, "out of memory");
                }
                if (!a)
                        return ns_err(err, ENOMEM, "out of memory");
        }
        if (spec->n_connects || spec->proxy_port || spec->proxy_path || spec->model_path) {
                cJSON *a = cJSON_AddArrayToObject(req, "connect");
                bool ok = a && (!spec->model_path || connector_add(a, SBX_MODEL_PORT, 0, spec->model_path)) &&
                          (!(spec->proxy_port || spec->proxy_path) ||
                           connector_add(a, SBX_PROXY_PORT, spec->proxy_port, spec->proxy_path));
                for (size_t i = 0; ok && i < spec->n_connects; i++)
                        ok = connector_add(a, spec->connects[i], spec->connects[i], NULL);
                if (!ok)
                        return ns_err(err, ENOMEM, "out of memory");
        }
        _cleanup_json_ cJSON *reply = NULL;
        int r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
        if (r < 0)
                return r;
        const cJSON *sb = cJSON_GetObjectItemCaseSensitive(reply, "sandbox");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(sb, "id");
        if (!cJSON_IsString(id) || strlen(id->valuestring) > NS_ID_MAX || !id->valuestring[0])
                return ns_err(err, EPROTO, "sandboxd: create reply without a valid id");
        strcpy(id_out, id->valuestring);
        return 0;
}

int sbx_destroy(ns_client *c, const char *sandbox, bool *existed, ns_error *err) {
        _cleanup_json_ cJSON *req = request("destroy", sandbox);
        _cleanup_json_ cJSON *reply = NULL;
        if (!req)
                return ns_err(err, ENOMEM, "out of memory");
        int r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
        if (r < 0)
                return r;
        if (existed)
                *existed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "destroyed"));
        return 0;
}

int sbx_stats(ns_client *c, const char *sandbox, cJSON **stats, ns_error *err) {
        _cleanup_json_ cJSON *req = request("stats", sandbox);
        if (!req)
                return ns_err(err, ENOMEM, "out of memory");
        return ns_client_call(c, req, NULL, 0, stats, NULL, NULL, err);
}

int sbx_simple(ns_client *c, const char *op, const char *sandbox, ns_error *err) {
        _cleanup_json_ cJSON *req = request(op, sandbox);
        if (!req)
                return ns_err(err, ENOMEM, "out of memory");
        return ns_client_call(c, req, NULL, 0, NULL, NULL, NULL, err);
}

int sbx_signal(ns_client *c, const char *sandbox, int64_t proc, int sig, ns_error *err) {
        _cleanup_json_ cJSON *req = request("signal", sandbox);
        if (!req || !cJSON_AddNumberToObject(req, "proc", (double) proc) || !cJSON_AddNumberToObject(req, "signal", sig))
                return ns_err(err, ENOMEM, "out of memory");
        return ns_client_call(c, req, NULL, 0, NULL, NULL, NULL, err);
}

/* exec and attach: the reply names the process and carries its stdio stream. */
static int call_for_stream(ns_client *c, const cJSON *req, int64_t *proc, int64_t *pid, int *stream_fd,
                           ns_error *err) {
        _cleanup_json_ cJSON *reply = NULL;
        int fds[NS_PROTO_MAX_FDS];
        size_t nfds = NS_PROTO_MAX_FDS;
        int r = ns_client_call(c, req, NULL, 0, &reply, fds, &nfds, err);
        if (r < 0)
                return r;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(reply, "proc");
        if (nfds != 1 || !cJSON_IsNumber(p) || p->valuedouble < 0 || p->valuedouble > 9007199254740992.0) {
                for (size_t i = 0; i < nfds; i++)
                        close(fds[i]);
                return ns_err(err, EPROTO, "sandboxd: reply without proc and stream");
        }
        if (proc)
                *proc = (int64_t) p->valuedouble;
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(reply, "pid");
        if (pid)
                *pid = cJSON_IsNumber(pp) && pp->valuedouble >= 1 && pp->valuedouble <= 4194304 ? (int64_t) pp->valuedouble
                                                                                               : 0;
        *stream_fd = fds[0];
        return 0;
}

int sbx_exec(ns_client *c, const char *sandbox, const sbx_exec_spec *spec, int64_t *proc, int64_t *pid,
             int *stream_fd, ns_error *err) {
        _cleanup_json_ cJSON *req = request("exec", sandbox);
        if (!req || add_strv(req, "argv", spec->argv) < 0 || (spec->env && add_strv(req, "env", spec->env) < 0) ||
            (spec->cwd && !cJSON_AddStringToObject(req, "cwd", spec->cwd)) ||
            (spec->timeout_s && !cJSON_AddNumberToObject(req, "timeout", (double) spec->timeout_s)) ||
            (spec->tied && !cJSON_AddBoolToObject(req, "tied", true)))
                return ns_err(err, ENOMEM, "out of memory");
        return call_for_stream(c, req, proc, pid, stream_fd, err);
}

int sbx_attach(ns_client *c, const char *sandbox, int64_t proc, int64_t from, int *stream_fd, ns_error *err) {
        _cleanup_json_ cJSON *req = request("attach", sandbox);
        if (!req || !cJSON_AddNumberToObject(req, "proc", (double) proc) ||
            !cJSON_AddNumberToObject(req, "from", (double) from))
                return ns_err(err, ENOMEM, "out of memory");
        return call_for_stream(c, req, NULL, NULL, stream_fd, err);
}

int sbx_stdin_all(int stream_fd, const void *data, size_t len, ns_error *err) {
        const char *p = data;
        while (len) {
                size_t n = len < NS_FRAME_MAX_PAYLOAD ? len : NS_FRAME_MAX_PAYLOAD;
                int r = ns_stream_send(stream_fd, NS_FRAME_STDIN, 0, 0, 0, p, n, err);
                if (r < 0)
                        return r;
                p += n;
                len -= n;
        }
        return ns_stream_send(stream_fd, NS_FRAME_STDIN_EOF, 0, 0, 0, NULL, 0, err);
}

void sbx_output_clear(sbx_output *o) {
        free(o->out);
        free(o->errout);
        *o = (sbx_output){ 0 };
}

static int append(char **buf, size_t *len, size_t cap, const char *p, size_t n, bool *trunc) {
        if (*len + n > cap) {
                *trunc = true;
                n = cap > *len ? cap - *len : 0;
        }
        char *nb = realloc(*buf, *len + n + 1);
        if (!nb)
                return -ENOMEM;
        memcpy(nb + *len, p, n);
        *len += n;
        nb[*len] = '\0';
        *buf = nb;
        return 0;
}

int sbx_collect(int stream_fd, int out_fd, size_t max_out, size_t max_err, sbx_output *o, ns_error *err) {
        _cleanup_free_ char *payload = malloc(NS_FRAME_MAX_PAYLOAD);
        if (!payload)
                return ns_err(err, ENOMEM, "out of memory");
        *o = (sbx_output){ 0 };
        if (!(o->out = calloc(1, 1)) || !(o->errout = calloc(1, 1)))
                return ns_err(err, ENOMEM, "out of memory");
        uint64_t streamed = 0;
        for (;;) {
                struct ns_frame_hdr h;
                size_t len = 0;
                int r = ns_stream_read(stream_fd, &h, payload, NS_FRAME_MAX_PAYLOAD, &len, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        return ns_err(err, EPIPE, "the process's stream ended without an exit status");
                if (h.type == NS_FRAME_EXIT)
                        return ns_frame_exit_decode(payload, len, &o->exit, err);
                if (h.type == NS_FRAME_LOST) {
                        o->truncated = true;
                        continue;
                }
                if (h.type != NS_FRAME_OUTPUT)
                        continue;
                if (h.stream == 2) {
                        if (append(&o->errout, &o->err_len, max_err, payload, len, &o->truncated) < 0)
                                return ns_err(err, ENOMEM, "out of memory");
                } else if (out_fd >= 0) {
                        if (streamed + len > max_out)
                                return ns_err(err, EFBIG, "output larger than %zu bytes", max_out);
                        for (size_t off = 0; off < len;) {
                                ssize_t w = write(out_fd, payload + off, len - off);
                                if (w < 0) {
                                        if (errno == EINTR)
                                                continue;
                                        return ns_err_sys(err, errno, "write output");
                                }
                                off += (size_t) w;
                        }
                        streamed += len;
                } else if (append(&o->out, &o->out_len, max_out, payload, len, &o->truncated) < 0) {
                        return ns_err(err, ENOMEM, "out of memory");
                }
                /* Acknowledge so init can free its buffer and keep the process writing. */
                r = ns_stream_send(stream_fd, NS_FRAME_ACK, 0, h.offset + len, 0, NULL, 0, err);
                if (r < 0)
                        return r;
        }
}

int sbx_run(ns_client *c, const char *sandbox, const sbx_exec_spec *spec, const void *stdin_data, size_t stdin_len,
            int out_fd, size_t max_out, size_t max_err, sbx_output *o, ns_error *err) {
        _cleanup_close_ int fd = -1;
        /* Tied: nobody but this call reads the process, so it must not outlive it (a supervisor
         * that dies mid-commit must not leave a git holding index.lock for the retry). */
        sbx_exec_spec tied = *spec;
        tied.tied = true;
        int r = sbx_exec(c, sandbox, &tied, NULL, NULL, &fd, err);
        if (r < 0)
                return r;
        if ((r = sbx_stdin_all(fd, stdin_data, stdin_len, err)) < 0)
                return r;
        return sbx_collect(fd, out_fd, max_out, max_err, o, err);
}
