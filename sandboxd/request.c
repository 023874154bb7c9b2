/* Parsing and validation of protocol requests; see request.h and PROTOCOL.md. */
#include "sandboxd/request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/jsonv.h"
#include "sandboxd/layer.h"

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define TIB (1024ULL * GIB)
#define EXACT_MAX 9007199254740992LL /* 2^53 */

#define REQ_MAX_DEPTH 8         /* the deepest valid request is 3: {"ro_binds": [{...}]} */
#define MEMORY_MIN (4 * MIB)
#define MEMORY_MAX TIB
#define PIDS_MAX 1000000
#define CPUS_MIN 0.01
#define CPUS_MAX 1024.0
#define DISK_MIN (16 * MIB)
#define DISK_MAX (16 * TIB)
#define TIMEOUT_MAX 31536000    /* one year, in seconds */
#define TTY_DIM_MAX 1000
#define NET_NAME_MAX 32

static const char *const op_names[NS_OP__COUNT] = {
        [NS_OP_VERSION] = "version", [NS_OP_CREATE] = "create", [NS_OP_EXEC] = "exec",
        [NS_OP_ATTACH] = "attach",   [NS_OP_SIGNAL] = "signal", [NS_OP_WAIT] = "wait",
        [NS_OP_STATS] = "stats",     [NS_OP_FREEZE] = "freeze", [NS_OP_THAW] = "thaw",
        [NS_OP_CONNECT] = "connect", [NS_OP_DESTROY] = "destroy", [NS_OP_LIST] = "list",
        [NS_OP_SNAPSHOT] = "snapshot", [NS_OP_LAYERS] = "layers", [NS_OP_LAYER_REMOVE] = "layer_remove",
        [NS_OP_PUBLISH] = "publish", [NS_OP_UNPUBLISH] = "unpublish", [NS_OP_LISTENING] = "listening",
        [NS_OP_DIAL] = "dial",
};

/* Allowed members per op; every list starts with the envelope. */
#define ENVELOPE "v", "id", "op"
static const char *const keys_bare[] = {ENVELOPE, NULL};
static const char *const keys_sandbox[] = {ENVELOPE, "sandbox", NULL};
static const char *const keys_create[] = {ENVELOPE, "workspace", "layers", "memory", "pids", "cpus",
                                          "disk", "net", "ro_binds", "connect", "ephemeral",
                                          "overlays", "publish", NULL};
static const char *const keys_exec[] = {ENVELOPE, "sandbox", "argv", "env", "cwd", "root",
                                        "tty", "rows", "cols", "timeout", "tied", NULL};
static const char *const keys_attach[] = {ENVELOPE, "sandbox", "proc", "from", NULL};
static const char *const keys_signal[] = {ENVELOPE, "sandbox", "proc", "signal", NULL};
static const char *const keys_proc[] = {ENVELOPE, "sandbox", "proc", NULL};
static const char *const keys_connect[] = {ENVELOPE, "sandbox", "port", "host_port", "host_path", NULL};
static const char *const keys_list[] = {ENVELOPE, "after", NULL};
static const char *const keys_snapshot[] = {ENVELOPE, "sandbox", "layer", NULL};
static const char *const keys_layer[] = {ENVELOPE, "layer", NULL};
static const char *const keys_ro_bind[] = {"src", "dst", NULL};
static const char *const keys_connect_item[] = {"port", "host_port", "host_path", NULL};
static const char *const keys_publish_item[] = {"port", "host_port", NULL};
static const char *const keys_unpublish[] = {ENVELOPE, "sandbox", "port", NULL};

static const char *const *const op_keys[NS_OP__COUNT] = {
        [NS_OP_VERSION] = keys_bare,    [NS_OP_CREATE] = keys_create,   [NS_OP_EXEC] = keys_exec,
        [NS_OP_ATTACH] = keys_attach,   [NS_OP_SIGNAL] = keys_signal,   [NS_OP_WAIT] = keys_proc,
        [NS_OP_STATS] = keys_sandbox,   [NS_OP_FREEZE] = keys_sandbox,  [NS_OP_THAW] = keys_sandbox,
        [NS_OP_CONNECT] = keys_connect, [NS_OP_DESTROY] = keys_sandbox, [NS_OP_LIST] = keys_list,
        [NS_OP_SNAPSHOT] = keys_snapshot, [NS_OP_LAYERS] = keys_bare,   [NS_OP_LAYER_REMOVE] = keys_layer,
        [NS_OP_PUBLISH] = keys_connect, [NS_OP_UNPUBLISH] = keys_unpublish, [NS_OP_LISTENING] = keys_sandbox,
        [NS_OP_DIAL] = keys_unpublish,
};

const char *ns_op_name(enum ns_op op) {
        if ((unsigned) op >= NS_OP__COUNT)
                return NULL;
        return op_names[op];
}

bool ns_path_is_clean(const char *path, bool allow_root) {
        if (!path || path[0] != '/')
                return false;
        size_t len = strnlen(path, NS_PATH_MAX + 1);
        if (len > NS_PATH_MAX)
                return false;
        if (len == 1)
                return allow_root;
        if (path[len - 1] == '/')
                return false;
        /* Each component sits between a '/' and the next '/' or the end. */
        for (const char *p = path; *p;) {
                const char *c = p + 1, *end = strchrnul(c, '/');
                size_t n = (size_t) (end - c);
                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                p = end;
        }
        return true;
}

bool ns_id_is_valid(const char *id) {
        if (!id || !id[0] || id[0] == '-')
                return false;
        size_t len = strnlen(id, NS_ID_MAX + 1);
        return len <= NS_ID_MAX && strspn(id, JV_ID_CHARS) == len;
}

/* Copy at most 32 bytes of an untrusted string for an error message, printable ASCII only. */
static const char *quote(const char *s, char buf[static 36]) {
        size_t i = 0;
        for (; s[i] && i < 32; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? s[i] : '?';
        if (s[i]) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

/* ---- The raw datagram ------------------------------------------------------------------------ */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len) {
        size_t i = 0;
        while (i < len) {
                unsigned char c = s[i];
                if (c < 0x80) {
                        i++;
                        continue;
                }
                size_t n;
                unsigned char lo = 0x80, hi = 0xbf;
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1;
                else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        if (c == 0xe0)
                                lo = 0xa0;
                        else if (c == 0xed)
                                hi = 0x9f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        if (c == 0xf0)
                                lo = 0x90;
                        else if (c == 0xf4)
                                hi = 0x8f;
                } else
                        return false;
                if (len - i - 1 < n || s[i + 1] < lo || s[i + 1] > hi)
                        return false;
                for (size_t k = 2; k <= n; k++)
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                i += n + 1;
        }
        return true;
}

/* Reject what cJSON would accept but we must not: nesting deeper than any valid request (cJSON
 * recurses up to 1000 levels) and "\u0000", which cJSON silently turns into a truncated string. */
static int prescan(const char *buf, size_t len, ns_error *err) {
        unsigned depth = 0;
        bool in_string = false;
        for (size_t i = 0; i < len; i++) {
                char c = buf[i];
                if (in_string) {
                        if (c == '"')
                                in_string = false;
                        else if (c == '\\' && i + 1 < len) {
                                i++;
                                if (buf[i] == 'u' && len - i > 4 && memcmp(buf + i + 1, "0000", 4) == 0)
                                        return ns_err(err, EINVAL, "message contains an escaped NUL character");
                        }
                } else if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        if (++depth > REQ_MAX_DEPTH)
                                return ns_err(err, EINVAL, "message is nested more than %d levels deep",
                                              REQ_MAX_DEPTH);
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return 0;
}

static int parse_json(const char *buf, size_t len, cJSON **out, ns_error *err) {
        if (len == 0)
                return ns_err(err, EINVAL, "empty message");
        if (len > NS_PROTO_MAX_MSG)
                return ns_err(err, EMSGSIZE, "message larger than %d bytes", NS_PROTO_MAX_MSG);
        if (memchr(buf, '\0', len))
                return ns_err(err, EINVAL, "message contains a NUL byte");
        if (!utf8_valid((const unsigned char *) buf, len))
                return ns_err(err, EINVAL, "message is not valid UTF-8");
        int r = prescan(buf, len, err);
        if (r < 0)
                return r;
        /* cJSON wants a terminated string to detect trailing garbage; give it a copy. */
        _cleanup_free_ char *copy = malloc(len + 1);
        if (!copy)
                return ns_err(err, ENOMEM, "out of memory");
        memcpy(copy, buf, len);
        copy[len] = '\0';
        const char *end = NULL;
        cJSON *json = cJSON_ParseWithOpts(copy, &end, 1);
        if (!json) {
                size_t at = end && end >= copy && end <= copy + len ? (size_t) (end - copy) : 0;
                return ns_err(err, EINVAL, "message is not valid JSON (at byte %zu)", at);
        }
        if (!cJSON_IsObject(json)) {
                cJSON_Delete(json);
                return ns_err(err, EINVAL, "message is not a JSON object");
        }
        *out = json;
        return 0;
}

/* ---- Field helpers ----------------------------------------------------------------------------- */

/* jv_int and jv_double report a value out of range as ERANGE; the protocol's word for every bad
 * field is EINVAL. */
static int as_einval(int r, ns_error *err) {
        if (r == -ERANGE && err)
                err->code = EINVAL;
        return r == -ERANGE ? -EINVAL : r;
}

static int get_int(const cJSON *obj, const char *key, bool required, int64_t min, int64_t max, int64_t def,
                   int64_t *out, ns_error *err) {
        return as_einval(jv_int(obj, key, required, min, max, def, out, err), err);
}

/* Optional limit: missing or 0 means none, otherwise [min, max]. */
static int get_limit(const cJSON *obj, const char *key, uint64_t min, uint64_t max, uint64_t *out,
                     ns_error *err) {
        int64_t v = 0;
        int r = jv_int(obj, key, false, 0, (int64_t) max, 0, &v, err);
        if (r == -ERANGE || (r == 0 && v != 0 && (uint64_t) v < min))
                return ns_err(err, EINVAL, "field '%s' must be 0 or an integer in [%llu, %llu]", key,
                              (unsigned long long) min, (unsigned long long) max);
        if (r < 0)
                return r;
        *out = (uint64_t) v;
        return 0;
}

static int get_path(const cJSON *obj, const char *key, bool required, bool allow_root, const char **out,
                    ns_error *err) {
        int r = jv_str(obj, key, required, NS_PATH_MAX, NULL, out, err);
        if (r < 0)
                return r;
        if (*out && !ns_path_is_clean(*out, allow_root))
                return ns_err(err, EINVAL,
                              "field '%s' must be an absolute path without '.', '..', '//' or a trailing '/'%s",
                              key, allow_root ? "" : ", and not '/'");
        return 0;
}

static int get_sandbox(const cJSON *obj, const char **out, ns_error *err) {
        int r = jv_str(obj, "sandbox", true, NS_ID_MAX, NULL, out, err);
        if (r < 0)
                return r;
        if (!ns_id_is_valid(*out))
                return ns_err(err, EINVAL, "field 'sandbox' is not a valid sandbox id");
        return 0;
}

static int get_port(const cJSON *obj, const char *key, bool required, uint16_t def, uint16_t *out,
                    ns_error *err) {
        int64_t v;
        int r = get_int(obj, key, required, 1, 65535, def, &v, err);
        if (r < 0)
                return r;
        *out = (uint16_t) v;
        return 0;
}

/* An array member, at most `max` items; missing → *out = NULL. */
static int get_array(const cJSON *obj, const char *key, size_t max, const cJSON **out, size_t *n,
                     ns_error *err) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        *out = NULL;
        *n = 0;
        if (!v || cJSON_IsNull(v))
                return 0;
        if (!cJSON_IsArray(v))
                return ns_err(err, EINVAL, "field '%s' must be an array", key);
        size_t count = (size_t) cJSON_GetArraySize(v);
        if (count > max)
                return ns_err(err, E2BIG, "field '%s' has more than %zu items", key, max);
        *out = v;
        *n = count;
        return 0;
}

static bool is_under(const char *path, const char *dir) {
        size_t n = strlen(dir);
        return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* ---- Operations ------------------------------------------------------------------------------- */

/* `overlays`: directories strictly beneath /workspace/, none inside another, that the sandbox sees
 * copy-on-write: the stacked layers' copies of them beneath, writes in the sandbox's upper layer
 * (and in a snapshot's layer), never in the working tree. */
static int parse_overlays(const cJSON *j, struct ns_create_req *c, ns_error *err) {
        char q[36];
        int r = jv_strv(j, "overlays", false, NS_OVERLAYS_MAX, NS_OVERLAY_PATH_MAX, SIZE_MAX, &c->overlays, &c->n_overlays,
                        err);
        if (r < 0 || !c->overlays)
                return r;
        if (!c->workspace)
                return ns_err(err, EINVAL, "field 'overlays' needs a workspace");
        for (size_t i = 0; i < c->n_overlays; i++) {
                const char *p = c->overlays[i];
                if (!ns_path_is_clean(p, false) || strncmp(p, "/workspace/", 11) != 0)
                        return ns_err(err, EINVAL, "overlays[%zu] '%s' must be a clean path beneath /workspace/", i,
                                      quote(p, q));
                for (size_t k = 0; k < i; k++) {
                        const char *a = c->overlays[k], *b = p;
                        size_t la = strlen(a), lb = strlen(b);
                        if ((la <= lb && !strncmp(a, b, la) && (b[la] == '/' || b[la] == '\0')) ||
                            (lb < la && !strncmp(a, b, lb) && a[lb] == '/'))
                                return ns_err(err, EINVAL, "overlays[%zu] '%s' overlaps another overlay", i, quote(p, q));
                }
        }
        return 0;
}

static int parse_create(const cJSON *j, struct ns_create_req *c, ns_error *err) {
        int r;
        char q[36];

        if ((r = get_path(j, "workspace", false, false, &c->workspace, err)) < 0)
                return r;

        if ((r = jv_strv(j, "layers", false, NS_LAYERS_MAX, LAYER_NAME_MAX, SIZE_MAX, &c->layers, &c->n_layers,
                         err)) < 0)
                return r;
        if (c->layers) {
                if (c->n_layers == 0)
                        return ns_err(err, EINVAL, "field 'layers' must not be empty (omit it for the host layer)");
                for (size_t i = 0; i < c->n_layers; i++) {
                        if (i == 0 && strcmp(c->layers[i], LAYER_HOST) == 0) {
                                if (c->n_layers == 1)
                                        return ns_err(err, EINVAL, "field 'layers' is only \"" LAYER_HOST
                                                                   "\": omit it for the host layer");
                                continue;
                        }
                        if (!layer_name_valid(c->layers[i]))
                                return ns_err(err, EINVAL,
                                              "layer name '%s' is not valid (want [a-z0-9][a-z0-9._-]{0,63}, or "
                                              "\"" LAYER_HOST "\" first)",
                                              quote(c->layers[i], q));
                        for (size_t k = 0; k < i; k++)
                                if (strcmp(c->layers[k], c->layers[i]) == 0)
                                        return ns_err(err, EINVAL, "layer '%s' is listed twice",
                                                      quote(c->layers[i], q));
                }
        }

        if ((r = parse_overlays(j, c, err)) < 0)
                return r;

        if ((r = get_limit(j, "memory", MEMORY_MIN, MEMORY_MAX, &c->memory, err)) < 0 ||
            (r = get_limit(j, "pids", 1, PIDS_MAX, &c->pids, err)) < 0 ||
            (r = get_limit(j, "disk", DISK_MIN, DISK_MAX, &c->disk, err)) < 0)
                return r;

        double cpus = 0;
        if ((r = as_einval(jv_double(j, "cpus", false, CPUS_MIN, CPUS_MAX, 0, &cpus, err), err)) < 0)
                return r;
        if (cpus > 0) {
                long long m = llround(cpus * 1000.0);
                c->cpu_millis = m < 10 ? 10 : (uint64_t) m;
        }

        if ((r = jv_str(j, "net", false, NET_NAME_MAX, NULL, &c->net, err)) < 0 ||
            (r = jv_bool(j, "ephemeral", false, &c->ephemeral, err)) < 0)
                return r;
        if (!c->net)
                c->net = "none";
        else if (strcmp(c->net, "none") != 0 && strcmp(c->net, "private") != 0 && strcmp(c->net, "nat") != 0)
                return ns_err(err, EINVAL, "net mode '%s' is not supported (none, private or nat)", quote(c->net, q));

        const cJSON *arr;
        size_t n;
        if ((r = get_array(j, "ro_binds", NS_RO_BINDS_MAX, &arr, &n, err)) < 0)
                return r;
        if (arr) {
                size_t i = 0;
                for (const cJSON *it = arr->child; it; it = it->next, i++) {
                        struct ns_ro_bind *b = &c->ro_binds[i];
                        if (!cJSON_IsObject(it))
                                return ns_err(err, EINVAL, "ro_binds[%zu] must be an object", i);
                        if ((r = jv_only_keys(it, keys_ro_bind, err)) < 0 ||
                            (r = get_path(it, "src", true, false, &b->src, err)) < 0 ||
                            (r = get_path(it, "dst", true, false, &b->dst, err)) < 0) {
                                ns_err_wrap(err, "ro_binds[%zu]", i);
                                return r;
                        }
                        if (is_under(b->dst, "/proc") || is_under(b->dst, "/dev") || is_under(b->dst, "/sys"))
                                return ns_err(err, EINVAL, "ro_binds[%zu]: dst must not be under /proc, /dev or /sys",
                                              i);
                }
                c->n_ro_binds = i;
        }

        if ((r = get_array(j, "connect", NS_CONNECTS_MAX, &arr, &n, err)) < 0)
                return r;
        if (arr) {
                size_t i = 0;
                for (const cJSON *it = arr->child; it; it = it->next, i++) {
                        struct ns_connect *p = &c->connects[i];
                        if (!cJSON_IsObject(it))
                                return ns_err(err, EINVAL, "connect[%zu] must be an object", i);
                        if ((r = jv_only_keys(it, keys_connect_item, err)) < 0 || (r = ns_connect_parse(it, p, err)) < 0) {
                                ns_err_wrap(err, "connect[%zu]", i);
                                return r;
                        }
                }
                c->n_connects = i;
        }

        if ((r = get_array(j, "publish", NS_PUBLISH_MAX, &arr, &n, err)) < 0)
                return r;
        if (arr) {
                size_t i = 0;
                for (const cJSON *it = arr->child; it; it = it->next, i++) {
                        struct ns_publish *p = &c->publishes[i];
                        if (!cJSON_IsObject(it))
                                return ns_err(err, EINVAL, "publish[%zu] must be an object", i);
                        if ((r = jv_only_keys(it, keys_publish_item, err)) < 0 ||
                            (r = get_port(it, "port", true, 0, &p->port, err)) < 0 ||
                            (r = get_port(it, "host_port", false, 0, &p->host_port, err)) < 0) {
                                ns_err_wrap(err, "publish[%zu]", i);
                                return r;
                        }
                        for (size_t k = 0; k < i; k++)
                                if (c->publishes[k].port == p->port ||
                                    (p->host_port && c->publishes[k].host_port == p->host_port))
                                        return ns_err(err, EINVAL, "publish[%zu]: port %u or its host port is named twice",
                                                      i, (unsigned) p->port);
                }
                c->n_publishes = i;
        }
        return 0;
}

int ns_connect_parse(const cJSON *obj, struct ns_connect *out, ns_error *err) {
        struct ns_connect c = { 0 };
        const char *path = NULL;
        int r;
        if ((r = get_port(obj, "port", true, 0, &c.port, err)) < 0 ||
            (r = get_path(obj, "host_path", false, false, &path, err)) < 0)
                return r;
        if (path) {
                if (cJSON_GetObjectItemCaseSensitive(obj, "host_port"))
                        return ns_err(err, EINVAL, "a connector goes to host_port or to host_path, not both");
                if (strlen(path) > NS_HOST_PATH_MAX)
                        return ns_err(err, EINVAL, "field 'host_path' is longer than a Unix socket path (%d bytes)",
                                      NS_HOST_PATH_MAX);
                memcpy(c.host_path, path, strlen(path) + 1);
        } else if ((r = get_port(obj, "host_port", false, c.port, &c.host_port, err)) < 0) {
                return r;
        }
        *out = c;
        return 0;
}

int ns_connect_to_json(cJSON *arr, const struct ns_connect *c) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddNumberToObject(o, "port", c->port) ||
            !(c->host_path[0] ? cJSON_AddStringToObject(o, "host_path", c->host_path)
                              : cJSON_AddNumberToObject(o, "host_port", c->host_port)))
                return -ENOMEM;
        return 0;
}

static int parse_exec(const cJSON *j, struct ns_exec_req *e, ns_error *err) {
        int r;
        if ((r = get_sandbox(j, &e->sandbox, err)) < 0)
                return r;
        if ((r = jv_strv(j, "argv", true, NS_ARGV_MAX, NS_ARG_BYTES_MAX, NS_ARG_BYTES_MAX, &e->argv, &e->argc,
                         err)) < 0 ||
            (r = jv_strv(j, "env", false, NS_ENV_MAX, NS_ARG_BYTES_MAX, NS_ARG_BYTES_MAX, &e->env, &e->envc,
                         err)) < 0)
                return r;
        if (!e->argv[0][0])
                return ns_err(err, EINVAL, "argv[0] must not be empty");
        size_t total = 0;
        for (size_t i = 0; i < e->argc; i++)
                total += strlen(e->argv[i]) + 1;
        for (size_t i = 0; i < e->envc; i++) {
                const char *eq = strchr(e->env[i], '=');
                if (!eq || eq == e->env[i])
                        return ns_err(err, EINVAL, "env[%zu] must have the form NAME=VALUE with a non-empty NAME",
                                      i);
                total += strlen(e->env[i]) + 1;
        }
        if (total > NS_ARG_BYTES_MAX)
                return ns_err(err, E2BIG, "argv and env together exceed %d bytes", NS_ARG_BYTES_MAX);

        if ((r = get_path(j, "cwd", false, true, &e->cwd, err)) < 0 ||
            (r = jv_bool(j, "root", false, &e->root, err)) < 0 || (r = jv_bool(j, "tty", false, &e->tty, err)) < 0 ||
            (r = jv_bool(j, "tied", false, &e->tied, err)) < 0)
                return r;
        int64_t rows, cols, timeout;
        if ((r = get_int(j, "rows", false, 1, TTY_DIM_MAX, 0, &rows, err)) < 0 ||
            (r = get_int(j, "cols", false, 1, TTY_DIM_MAX, 0, &cols, err)) < 0 ||
            (r = get_int(j, "timeout", false, 0, TIMEOUT_MAX, 0, &timeout, err)) < 0)
                return r;
        e->rows = (uint16_t) rows;
        e->cols = (uint16_t) cols;
        e->timeout_ms = (uint64_t) timeout * 1000;
        return 0;
}

static int parse_proc(const cJSON *j, uint64_t *proc, ns_error *err) {
        int64_t v;
        int r = get_int(j, "proc", true, 1, EXACT_MAX, 0, &v, err);
        if (r < 0)
                return r;
        *proc = (uint64_t) v;
        return 0;
}

static int parse_op(const cJSON *j, struct ns_request *req, ns_error *err) {
        int r;
        int64_t v;

        if (req->op != NS_OP_VERSION && req->op != NS_OP_LIST && req->op != NS_OP_CREATE &&
            req->op != NS_OP_EXEC && req->op != NS_OP_LAYERS && req->op != NS_OP_LAYER_REMOVE &&
            (r = get_sandbox(j, &req->sandbox, err)) < 0)
                return r;

        switch (req->op) {
        case NS_OP_LIST:
                /* paging: "after" is the last id of the previous page */
                if ((r = jv_str(j, "after", false, NS_ID_MAX, NULL, &req->sandbox, err)) < 0)
                        return r;
                if (req->sandbox && !ns_id_is_valid(req->sandbox))
                        return ns_err(err, EINVAL, "field 'after' is not a valid sandbox id");
                return 0;
        case NS_OP_VERSION:
        case NS_OP_STATS:
        case NS_OP_FREEZE:
        case NS_OP_THAW:
        case NS_OP_DESTROY:
                return 0;
        case NS_OP_CREATE:
                return parse_create(j, &req->u.create, err);
        case NS_OP_EXEC:
                r = parse_exec(j, &req->u.exec, err);
                req->sandbox = req->u.exec.sandbox;
                return r;
        case NS_OP_ATTACH:
                if ((r = parse_proc(j, &req->u.attach.proc, err)) < 0 ||
                    (r = get_int(j, "from", false, 0, EXACT_MAX, 0, &v, err)) < 0)
                        return r;
                req->u.attach.from = (uint64_t) v;
                return 0;
        case NS_OP_SIGNAL:
                if ((r = parse_proc(j, &req->u.signal.proc, err)) < 0 ||
                    (r = get_int(j, "signal", true, 1, 64, 0, &v, err)) < 0)
                        return r;
                req->u.signal.signal = (int) v;
                return 0;
        case NS_OP_WAIT:
                return parse_proc(j, &req->u.wait.proc, err);
        case NS_OP_CONNECT:
                return ns_connect_parse(j, &req->u.connect, err);
        case NS_OP_LAYERS:
                return 0;
        case NS_OP_SNAPSHOT:
        case NS_OP_LAYER_REMOVE: {
                char q[36];
                if ((r = jv_str(j, "layer", true, LAYER_NAME_MAX, NULL, &req->u.layer, err)) < 0)
                        return r;
                if (!layer_name_valid(req->u.layer))
                        return ns_err(err, EINVAL, "layer name '%s' is not valid (want [a-z0-9][a-z0-9._-]{0,63})",
                                      quote(req->u.layer, q));
                return 0;
        }
        case NS_OP_PUBLISH:
                if ((r = get_port(j, "port", true, 0, &req->u.publish.port, err)) < 0)
                        return r;
                return get_port(j, "host_port", false, 0, &req->u.publish.host_port, err);
        case NS_OP_UNPUBLISH:
        case NS_OP_DIAL:
                return get_port(j, "port", true, 0, &req->u.publish.port, err);
        case NS_OP_LISTENING:
                return 0;
        case NS_OP__COUNT:
                break;
        }
        return ns_err(err, EINVAL, "unknown op");
}

int ns_request_parse(const char *buf, size_t len, struct ns_request *req, ns_error *err) {
        struct ns_request r = {.id = -1};
        int64_t v;
        int rc;

        *req = (struct ns_request){.id = -1};
        rc = parse_json(buf, len, &r.json, err);
        if (rc < 0)
                return rc;

        /* The id first, so that every later error can be matched to its request. */
        rc = get_int(r.json, "id", true, 0, EXACT_MAX, 0, &r.id, err);
        if (rc < 0) {
                r.id = -1;
                goto fail;
        }
        req->id = r.id;

        rc = get_int(r.json, "v", true, 0, EXACT_MAX, 0, &v, err);
        if (rc < 0)
                goto fail;
        if (v != NS_PROTO_VERSION) {
                rc = ns_err(err, EPROTONOSUPPORT, "protocol version %lld is not supported (want %d)", (long long) v,
                            NS_PROTO_VERSION);
                goto fail;
        }

        const char *op = NULL;
        rc = jv_str(r.json, "op", true, 16, NULL, &op, err);
        if (rc < 0)
                goto fail;
        r.op = NS_OP__COUNT;
        for (int i = 0; i < NS_OP__COUNT; i++)
                if (strcmp(op, op_names[i]) == 0)
                        r.op = (enum ns_op) i;
        if (r.op == NS_OP__COUNT) {
                char q[36];
                rc = ns_err(err, EOPNOTSUPP, "unknown op '%s'", quote(op, q));
                r.op = NS_OP_VERSION; /* nothing to release */
                goto fail;
        }

        rc = jv_only_keys(r.json, op_keys[r.op], err);
        if (rc < 0)
                goto fail;
        rc = parse_op(r.json, &r, err);
        if (rc < 0)
                goto fail;

        *req = r;
        return 0;
fail:
        ns_request_done(&r);
        return rc;
}

void ns_request_done(struct ns_request *req) {
        if (!req)
                return;
        if (req->op == NS_OP_CREATE) {
                free(req->u.create.layers);
                free(req->u.create.overlays);
        }
        else if (req->op == NS_OP_EXEC) {
                free(req->u.exec.argv);
                free(req->u.exec.env);
        }
        cJSON_Delete(req->json);
        *req = (struct ns_request){.id = -1};
}
