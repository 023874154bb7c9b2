/* nightshift supervisor — the model-API proxy: model keys never enter a sandbox.
 *
 * A plain-HTTP listener on 127.0.0.1 (an ephemeral port), reached from sandboxes through a
 * sandboxd `connect` connector.  An agent gets
 *     ANTHROPIC_BASE_URL=http://127.0.0.1:PORT/anthropic   OPENAI_BASE_URL=http://127.0.0.1:PORT/openai/v1
 * and, as its API key, a placeholder that is a per-session capability: "nsp-<session>-<mac>", the
 * mac an HMAC-SHA256 (a random key of this process) of the session id.  The proxy checks it, looks
 * up the session's repository, takes the real key from the vault (secret names --model-key-*,
 * the repository's own first) and forwards the request to the upstream (--model-upstream-*) with
 * libcurl, replacing x-api-key / Authorization.  The response — status, headers, and the body as
 * it arrives (SSE streams included) — is passed through untouched, framed by the connection's
 * close.  Token counts seen in the response become a `usage` event of the session.
 *
 * Each connection runs on a thread of its own (bounded): blocking, never on the event loop.
 * Requests are bounded (head 32 KiB, body 32 MiB), GET/POST only, no chunked request bodies. */
#pragma once

#include "common/err.h"
#include "config.h"
#include "vault.h"

#define SV_PROXY_TOKEN_MAX 96

typedef struct sv_modelproxy sv_modelproxy;

/* Listen on the Unix socket <data_dir>/sockets/model.sock (replacing a stale one) and serve;
 * cfg->model_proxy_path receives its path and cfg->model_proxy_port SBX_MODEL_PORT, the port
 * sandboxes' connectors show it at.  A socket in the supervisor's private directory, not a
 * loopback port: no other local user reaches it or takes its place across a restart, and the
 * same path serves sandboxes made before one.  The sessions' placeholder keys are derived from
 * the vault's key, so they too survive a restart (an agent mid-turn keeps working).  `cfg` and
 * `vault` must outlive the proxy; it opens its own database connection at `db_path`. */
int sv_modelproxy_start(sv_config *cfg, const char *db_path, sv_vault *vault, sv_modelproxy **out, ns_error *err);
/* Stop accepting, end the connections in flight, free. */
void sv_modelproxy_stop(sv_modelproxy *p);
/* The placeholder key for session `sid` (NUL-terminated into out). */
void sv_modelproxy_token(const sv_modelproxy *p, const char *sid, char out[SV_PROXY_TOKEN_MAX]);
