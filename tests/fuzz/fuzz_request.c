/* libFuzzer harness: ns_request_parse on arbitrary bytes, exactly as sandboxd receives a datagram.
 *
 * Besides memory errors (ASan) and undefined behaviour (UBSan), it aborts when a request that
 * parsed breaks a promise of request.h, or when a failure is reported inconsistently. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandboxd/request.h"

#define CHECK(cond)              \
        do {                     \
                if (!(cond))     \
                        abort(); \
        } while (0)

static void check_strv(const char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                CHECK(v[i] && strlen(v[i]) <= NS_ARG_BYTES_MAX);
        CHECK(v[n] == NULL);
}

/* A connector goes to a host port or to a clean absolute Unix socket path that fits sun_path. */
static void check_connect(const struct ns_connect *c) {
        size_t n = strnlen(c->host_path, sizeof c->host_path);
        CHECK(c->port >= 1 && n < sizeof c->host_path);
        if (n)
                CHECK(c->host_port == 0 && n <= NS_HOST_PATH_MAX && ns_path_is_clean(c->host_path, false));
        else
                CHECK(c->host_port >= 1);
}

static void check_create(const struct ns_create_req *c) {
        CHECK(!c->workspace || ns_path_is_clean(c->workspace, false));
        if (c->layers) {
                CHECK(c->n_layers >= 1 && c->n_layers <= NS_LAYERS_MAX);
                check_strv(c->layers, c->n_layers);
                for (size_t i = 0; i < c->n_layers; i++) {
                        CHECK(strcmp(c->layers[i], ".") && strcmp(c->layers[i], "..") && !strchr(c->layers[i], '/'));
                        /* "@host" (the host layer) may only come first */
                        CHECK(c->layers[i][0] != '@' || (i == 0 && strcmp(c->layers[i], "@host") == 0));
                }
        }
        CHECK(c->memory == 0 || (c->memory >= (4ULL << 20) && c->memory <= (1ULL << 40)));
        CHECK(c->pids <= 1000000);
        CHECK(c->cpu_millis == 0 || (c->cpu_millis >= 10 && c->cpu_millis <= 1024000));
        CHECK(c->disk == 0 || (c->disk >= (16ULL << 20) && c->disk <= (16ULL << 40)));
        CHECK(c->net && (!strcmp(c->net, "none") || !strcmp(c->net, "private") || !strcmp(c->net, "nat")));
        CHECK(c->n_ro_binds <= NS_RO_BINDS_MAX && c->n_connects <= NS_CONNECTS_MAX);
        for (size_t i = 0; i < c->n_ro_binds; i++) {
                CHECK(ns_path_is_clean(c->ro_binds[i].src, false) && ns_path_is_clean(c->ro_binds[i].dst, false));
                CHECK(strncmp(c->ro_binds[i].dst, "/proc", 5) || (c->ro_binds[i].dst[5] && c->ro_binds[i].dst[5] != '/'));
        }
        for (size_t i = 0; i < c->n_connects; i++)
                check_connect(&c->connects[i]);
        CHECK(c->n_publishes <= NS_PUBLISH_MAX);
        for (size_t i = 0; i < c->n_publishes; i++) {
                CHECK(c->publishes[i].port >= 1);
                for (size_t k = 0; k < i; k++)
                        CHECK(c->publishes[k].port != c->publishes[i].port);
        }
        if (c->overlays) {
                CHECK(c->workspace && c->n_overlays <= NS_OVERLAYS_MAX);
                check_strv(c->overlays, c->n_overlays);
                for (size_t i = 0; i < c->n_overlays; i++)
                        CHECK(strncmp(c->overlays[i], "/workspace/", 11) == 0 && c->overlays[i][11] &&
                              ns_path_is_clean(c->overlays[i], false));
        }
}

/* A layer name as layer.h promises it: [a-z0-9][a-z0-9._-]{0,63} */
static void check_layer_name(const char *name) {
        size_t n = name ? strlen(name) : 0;
        CHECK(n >= 1 && n <= 64 && ((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')));
        for (size_t i = 1; i < n; i++)
                CHECK((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || strchr("._-", name[i]));
}

static void check_exec(const struct ns_exec_req *e) {
        CHECK(e->argc >= 1 && e->argc <= NS_ARGV_MAX && e->argv[0][0]);
        check_strv(e->argv, e->argc);
        CHECK(e->envc <= NS_ENV_MAX);
        if (e->env) {
                check_strv(e->env, e->envc);
                for (size_t i = 0; i < e->envc; i++)
                        CHECK(e->env[i][0] != '=' && strchr(e->env[i], '='));
        }
        CHECK(!e->cwd || ns_path_is_clean(e->cwd, true));
        CHECK(e->rows <= 1000 && e->cols <= 1000 && e->timeout_ms <= 31536000ULL * 1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct ns_request req;
        ns_error err = {0};
        int r = ns_request_parse((const char *) data, size, &req, &err);
        if (r < 0) {
                CHECK(err.code == -r && err.msg[0] && strlen(err.msg) < sizeof err.msg);
                CHECK(req.json == NULL && req.id >= -1 && req.id <= (1LL << 53));
        } else {
                CHECK(r == 0 && req.json && ns_op_name(req.op) && req.id >= 0 && req.id <= (1LL << 53));
                CHECK(!req.sandbox || ns_id_is_valid(req.sandbox));
                switch (req.op) {
                case NS_OP_CREATE:
                        check_create(&req.u.create);
                        break;
                case NS_OP_EXEC:
                        CHECK(req.sandbox);
                        check_exec(&req.u.exec);
                        break;
                case NS_OP_ATTACH:
                        CHECK(req.sandbox && req.u.attach.proc >= 1);
                        break;
                case NS_OP_SIGNAL:
                        CHECK(req.sandbox && req.u.signal.signal >= 1 && req.u.signal.signal <= 64);
                        break;
                case NS_OP_CONNECT:
                        CHECK(req.sandbox);
                        check_connect(&req.u.connect);
                        break;
                case NS_OP_SNAPSHOT:
                        CHECK(req.sandbox);
                        check_layer_name(req.u.layer);
                        break;
                case NS_OP_LAYER_REMOVE:
                        CHECK(!req.sandbox);
                        check_layer_name(req.u.layer);
                        break;
                case NS_OP_PUBLISH:
                case NS_OP_UNPUBLISH:
                case NS_OP_DIAL:
                        CHECK(req.sandbox && req.u.publish.port >= 1);
                        break;
                case NS_OP_VERSION:
                case NS_OP_LAYERS:
                        CHECK(!req.sandbox);
                        break;
                case NS_OP_LIST: /* "after" is the sandbox slot, and optional */
                        break;
                default:
                        CHECK(req.sandbox);
                        break;
                }
        }
        ns_request_done(&req);
        CHECK(req.json == NULL);
        return 0;
}
