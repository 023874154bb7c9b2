/* Parsing and validation of protocol requests (PROTOCOL.md) into typed structs.
 *
 * Everything here is pure: no syscalls but allocation, so the fuzzer drives exactly the code the
 * daemon runs.  sandboxd trusts nothing the supervisor sends: every field is checked for type,
 * range and size here, and again against the daemon's configuration by the dispatcher. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "sandboxd/proto.h"

enum ns_op {
        NS_OP_VERSION,
        NS_OP_CREATE,
        NS_OP_EXEC,
        NS_OP_ATTACH,
        NS_OP_SIGNAL,
        NS_OP_WAIT,
        NS_OP_STATS,
        NS_OP_FREEZE,
        NS_OP_THAW,
        NS_OP_CONNECT,
        NS_OP_DESTROY,
        NS_OP_LIST,
        NS_OP_SNAPSHOT,
        NS_OP_LAYERS,
        NS_OP_LAYER_REMOVE,
        NS_OP_PUBLISH,
        NS_OP_UNPUBLISH,
        NS_OP_LISTENING,
        NS_OP_DIAL,
        NS_OP__COUNT
};

struct ns_ro_bind {
        const char *src; /* absolute host path, no "..", no "//", no trailing "/" */
        const char *dst; /* absolute sandbox path, same rules, not "/" */
};

#define NS_HOST_PATH_MAX 107 /* a Unix socket path: sun_path less its NUL */

struct ns_connect {
        uint16_t port;      /* inside the sandbox, 127.0.0.1:port */
        uint16_t host_port; /* host 127.0.0.1:host_port; 0 when host_path is set */
        char host_path[NS_HOST_PATH_MAX + 1]; /* or a Unix stream socket on the host ("" = none) */
};

struct ns_publish {
        uint16_t port;      /* inside the sandbox, 127.0.0.1:port */
        uint16_t host_port; /* on the daemon's publish address; 0 = any port of its range */
};

struct ns_create_req {
        const char *workspace;          /* NULL: no /workspace bind */
        const char **layers;            /* NULL-terminated, lowest first; NULL = the host layer.  The
                                         * first may be LAYER_HOST ("@host"): the host layer as base */
        size_t n_layers;
        uint64_t memory;                /* bytes, 0 = no limit */
        uint64_t pids;                  /* 0 = no limit */
        uint64_t cpu_millis;            /* cpus * 1000, 0 = no limit */
        uint64_t disk;                  /* bytes, 0 = no limit */
        const char *net;                /* "none", "private" or "nat" */
        struct ns_ro_bind ro_binds[NS_RO_BINDS_MAX];
        size_t n_ro_binds;
        struct ns_connect connects[NS_CONNECTS_MAX];
        size_t n_connects;
        struct ns_publish publishes[NS_PUBLISH_MAX];
        size_t n_publishes;
        bool ephemeral;                 /* destroyed when the creating connection closes */
        const char **overlays;          /* NULL-terminated: dirs beneath /workspace/ made copy-on-write */
        size_t n_overlays;
};

struct ns_exec_req {
        const char *sandbox;
        const char **argv; /* NULL-terminated */
        size_t argc;
        const char **env;  /* NULL-terminated, each "K=V" with a non-empty K free of '=' */
        size_t envc;
        const char *cwd;   /* absolute or NULL */
        bool root;
        bool tty;
        bool tied;         /* killed when its stdio stream's reader goes away (PROTOCOL.md) */
        uint16_t rows, cols;
        uint64_t timeout_ms; /* 0 = none */
};

struct ns_request {
        enum ns_op op;
        int64_t id;
        cJSON *json; /* owns every borrowed string below */
        const char *sandbox; /* for every op that names one */
        union {
                struct ns_create_req create;
                struct ns_exec_req exec;
                struct { uint64_t proc; uint64_t from; } attach;
                struct { uint64_t proc; int signal; } signal;
                struct { uint64_t proc; } wait;
                struct ns_connect connect;
                const char *layer; /* snapshot, layer_remove: a valid layer name */
                struct ns_publish publish; /* publish; unpublish and dial: port only */
        } u;
};

/* Parse one datagram.  On success *req owns a cJSON tree (release with ns_request_done).  On
 * failure *req is left empty except req->id, which holds the request's id when it could be read
 * (else -1) so the error reply can echo it.
 *
 * Errors: EMSGSIZE (len > NS_PROTO_MAX_MSG), EPROTONOSUPPORT ("v" is not 1), EOPNOTSUPP (unknown
 * "op"), E2BIG (too many items in a list, or argv + env over NS_ARG_BYTES_MAX), EINVAL for
 * everything else: empty, NUL bytes (raw or "\u0000"), invalid UTF-8 or JSON, not an object,
 * nesting deeper than 8, unknown, duplicate, missing or mistyped fields, values out of range
 * (jv_*'s ERANGE is reported as EINVAL, as PROTOCOL.md shows), unclean paths, bad ids and names. */
int ns_request_parse(const char *buf, size_t len, struct ns_request *req, ns_error *err);

/* Release what ns_request_parse allocated.  Safe on a zeroed or already released request. */
void ns_request_done(struct ns_request *req);

/* Name of an operation ("create"), or NULL when out of range. */
const char *ns_op_name(enum ns_op op);

/* True when `path` is absolute, at most NS_PATH_MAX bytes, and has no empty, "." or ".."
 * component and no trailing slash ("/" itself is accepted only when allow_root). */
bool ns_path_is_clean(const char *path, bool allow_root);

/* True when `id` matches [a-z0-9][a-z0-9-]{0,31}. */
bool ns_id_is_valid(const char *id);

/* A connector from JSON {port, host_port | host_path} (an item of create's `connect`, the connect
 * op, or the state file): port 1..65535; host_port 1..65535 (default: port) or host_path, an
 * absolute clean path of at most NS_HOST_PATH_MAX bytes, never both.  Returns 0 or -EINVAL. */
int ns_connect_parse(const cJSON *obj, struct ns_connect *out, ns_error *err);

/* The JSON form ns_connect_parse reads, added to `arr`.  Returns 0 or -ENOMEM. */
int ns_connect_to_json(cJSON *arr, const struct ns_connect *c);
