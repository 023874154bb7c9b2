/* nightshift supervisor — the sandboxd calls a session needs, on top of sandboxd/client.h.
 *
 * Blocking: worker threads only, each with its own ns_client.  Output read back from a sandbox is
 * the agent's (hostile): every collector is bounded and says when it truncated. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "sandboxd/client.h"

typedef struct sbx_bind {
        const char *src, *dst;
} sbx_bind;

#define SBX_PROXY_PORT 3128
#define SBX_MODEL_PORT 3129

typedef struct sbx_create_spec {
        const char *workspace; /* absolute, beneath sandboxd's --workspace-root */
        int64_t memory;        /* 0 = daemon default */
        int64_t pids;
        double cpus;
        const sbx_bind *ro_binds;
        size_t n_ro_binds;
        const int *connects; /* host loopback ports, appearing at the same port inside */
        size_t n_connects;
        const char *const *layers; /* lowest first ("@host" first: over the host layer); NULL = host */
        size_t n_layers;
        const char *const *overlays; /* dirs beneath /workspace/ seen copy-on-write (they must exist) */
        size_t n_overlays;
        const char *net;     /* sandboxd's net mode; NULL = "none" */
        int proxy_port;      /* the session's egress proxy on host loopback, 0 = none: inside at SBX_PROXY_PORT */
        const char *proxy_path; /* or on this Unix socket of ours (NULL = none), inside at SBX_PROXY_PORT */
        const char *model_path; /* the model-API proxy's Unix socket (NULL = none), inside at SBX_MODEL_PORT */
} sbx_create_spec;

/* Create a sandbox; its id (≤ NS_ID_MAX) goes to id_out. */
int sbx_create(ns_client *c, const sbx_create_spec *spec, char id_out[NS_ID_MAX + 1], ns_error *err);

/* Whether the layer `name` exists in sandboxd's --layers-dir (-ENOENT when none is configured). */
int sbx_layer_exists(ns_client *c, const char *name, bool *exists, ns_error *err);

/* Destroy `sandbox` and keep what it wrote outside its binds as the layer `layer` (sandboxd's
 * `snapshot`); returns when the layer exists. */
int sbx_snapshot(ns_client *c, const char *sandbox, const char *layer, ns_error *err);

/* Destroy (idempotent).  *existed (may be NULL) says whether it was there. */
int sbx_destroy(ns_client *c, const char *sandbox, bool *existed, ns_error *err);

/* stats: 0 when the sandbox exists (its JSON in *stats when non-NULL), -ENOENT when not. */
int sbx_stats(ns_client *c, const char *sandbox, cJSON **stats, ns_error *err);

/* freeze / thaw / signal a process. */
int sbx_simple(ns_client *c, const char *op, const char *sandbox, ns_error *err);
int sbx_signal(ns_client *c, const char *sandbox, int64_t proc, int sig, ns_error *err);

typedef struct sbx_exec_spec {
        const char *const *argv; /* NULL-terminated */
        const char *const *env;  /* NULL-terminated or NULL */
        const char *cwd;         /* NULL = /workspace */
        int64_t timeout_s;       /* 0 = none */
        bool tied;               /* killed when the stream closes: a caller that reads it to the end */
} sbx_exec_spec;

/* Start a process; *proc is its number, *pid (may be NULL) its pid inside the sandbox (also its
 * session id: init starts every process with setsid), *stream_fd the stdio stream (blocking,
 * O_CLOEXEC). */
int sbx_exec(ns_client *c, const char *sandbox, const sbx_exec_spec *spec, int64_t *proc, int64_t *pid,
             int *stream_fd, ns_error *err);

/* Re-open a process's stdio stream from output byte `from`. */
int sbx_attach(ns_client *c, const char *sandbox, int64_t proc, int64_t from, int *stream_fd, ns_error *err);

/* Write `len` bytes to the process's stdin in frames, then STDIN_EOF (blocking fd). */
int sbx_stdin_all(int stream_fd, const void *data, size_t len, ns_error *err);

/* A finished process's output: up to the caps, the rest counted but dropped. */
typedef struct sbx_output {
        char *out, *errout; /* NUL-terminated */
        size_t out_len, err_len;
        bool truncated;
        struct ns_frame_exit exit;
} sbx_output;
void sbx_output_clear(sbx_output *o);

/* Read a blocking stream to its EXIT frame, acknowledging as it goes.  stdout goes to `out_fd`
 * when >= 0 (at most max_out bytes: -EFBIG beyond, the process is not waited for then), else into
 * o->out (max_out bytes kept).  stderr is kept up to max_err bytes. */
int sbx_collect(int stream_fd, int out_fd, size_t max_out, size_t max_err, sbx_output *o, ns_error *err);

/* exec + optional stdin + collect, for short helper commands: the process is tied to this call
 * (killed if the stream closes before its end, e.g. when the caller dies). */
int sbx_run(ns_client *c, const char *sandbox, const sbx_exec_spec *spec, const void *stdin_data, size_t stdin_len,
            int out_fd, size_t max_out, size_t max_err, sbx_output *o, ns_error *err);
