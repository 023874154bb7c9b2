/* nightshift-sandbox: command-line client of nightshift-sandboxd.
 *
 *   nightshift-sandbox [--socket PATH] [--json] COMMAND [ARGS]
 *
 * Exit status: the command's own for run/exec/attach/wait (128+N when killed by signal N), 0 for
 * the others, 125 when the daemon refused the request or the command line is wrong. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/client.h"

#define PROG "nightshift-sandbox"
#define EXIT_FAIL 125 /* the daemon refused, or the command line is wrong (like docker run) */
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

#ifndef NS_VERSION
#define NS_VERSION "0"
#endif

struct globals {
        const char *socket;
        bool json;
};

static void cJSON_Deletep(cJSON **j) {
        cJSON_Delete(*j);
}
#define _cleanup_json_ __attribute__((cleanup(cJSON_Deletep)))

/* ---- Messages ------------------------------------------------------------------------------------ */

static void warn(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(const char *cmd, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, PROG ": %s%s", cmd ? cmd : "", cmd ? ": " : "");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, PROG ": %s: ", cmd);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\nTry '" PROG " %s --help'.\n", cmd);
        va_end(ap);
        return EXIT_FAIL;
}

static int fail(const char *what, const ns_error *err) {
        warn(what, "%s", err->msg);
        return EXIT_FAIL;
}

/* ---- Argument parsing ----------------------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
        if (!s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return false;
        *out = v;
        return true;
}

/* "512M", "4G", "1048576": binary suffixes K, M, G, T, optionally followed by "B" or "iB". */
static bool parse_bytes(const char *s, uint64_t *out) {
        if (!s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return false;
        unsigned shift = 0;
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        case '\0': break;
        default: return false;
        }
        if (shift) {
                end++;
                if (strcmp(end, "") && strcmp(end, "B") && strcmp(end, "iB"))
                        return false;
        } else if (*end)
                return false;
        if (shift && v > (UINT64_MAX >> shift))
                return false;
        *out = (uint64_t) v << shift;
        return true;
}

/* "8080" or "8080:40080" (inside port, host port). */
static bool parse_port_pair(const char *s, uint64_t *port, uint64_t *host_port) {
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return false;
        char *colon = strchr(copy, ':');
        if (colon)
                *colon = '\0';
        if (!parse_u64(copy, 1, 65535, port))
                return false;
        *host_port = *port;
        return !colon || parse_u64(colon + 1, 1, 65535, host_port);
}

/* A connector "PORT[:HOSTPORT]" or "PORT:/HOST/SOCKET" into `o` (port, host_port | host_path).
 * Returns 0, -EINVAL for a malformed one, -ENOMEM. */
static int connector_fields(const char *s, cJSON *o) {
        const char *colon = strchr(s, ':');
        uint64_t port, host_port;
        if (colon && colon[1] == '/') {
                _cleanup_free_ char *p = strndup(s, (size_t) (colon - s));
                if (!p)
                        return -ENOMEM;
                if (!parse_u64(p, 1, 65535, &port))
                        return -EINVAL;
                return cJSON_AddNumberToObject(o, "port", (double) port) && cJSON_AddStringToObject(o, "host_path", colon + 1)
                               ? 0
                               : -ENOMEM;
        }
        if (!parse_port_pair(s, &port, &host_port))
                return -EINVAL;
        return cJSON_AddNumberToObject(o, "port", (double) port) && cJSON_AddNumberToObject(o, "host_port", (double) host_port)
                       ? 0
                       : -ENOMEM;
}

/* "15", "TERM", "SIGTERM", "term". */
static int parse_signal(const char *s) {
        uint64_t n;
        if (parse_u64(s, 1, 64, &n))
                return (int) n;
        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (int i = 1; i < 65; i++) {
                const char *name = sigabbrev_np(i);
                if (name && strcasecmp(name, s) == 0)
                        return i;
        }
        return -1;
}

static int set_number(cJSON *obj, const char *key, double v) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        return cJSON_AddNumberToObject(obj, key, v) ? 0 : -ENOMEM;
}

static int set_string(cJSON *obj, const char *key, const char *v) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        return cJSON_AddStringToObject(obj, key, v) ? 0 : -ENOMEM;
}

static int set_bool(cJSON *obj, const char *key, bool v) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        return cJSON_AddBoolToObject(obj, key, v) ? 0 : -ENOMEM;
}

/* The array member `key`, created on first use. */
static cJSON *array_of(cJSON *obj, const char *key) {
        cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
        return a ? a : cJSON_AddArrayToObject(obj, key);
}

static int push_string(cJSON *obj, const char *key, const char *v) {
        cJSON *a = array_of(obj, key), *s = cJSON_CreateString(v);
        if (!a || !s || !cJSON_AddItemToArray(a, s)) {
                cJSON_Delete(s);
                return -ENOMEM;
        }
        return 0;
}

static int push_strv(cJSON *obj, const char *key, char **v, int n) {
        if (!array_of(obj, key))
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                if (push_string(obj, key, v[i]) < 0)
                        return -ENOMEM;
        return 0;
}

/* An absolute host path for a path given on the command line (relative to the cwd). */
static char *host_path(const char *p) {
        char *r = realpath(p, NULL);
        return r ? r : strdup(p);
}

/* Options shared by run and create (the sandbox), and by run and exec (the process). */
enum {
        OPT_HELP = 'h',
        OPT_WORKSPACE = 256,
        OPT_MEMORY,
        OPT_PIDS,
        OPT_CPUS,
        OPT_DISK,
        OPT_NET,
        OPT_CONNECT,
        OPT_PUBLISH,
        OPT_RO_BIND,
        OPT_LAYER,
        OPT_OVERLAY,
        OPT_TIMEOUT,
        OPT_ROOT,
        OPT_ENV,
        OPT_TTY,
        OPT_CWD,
        OPT_DETACH,
        OPT_TIED,
        OPT_FROM,
};

#define SANDBOX_OPTIONS                                                                                     \
        {"workspace", required_argument, NULL, OPT_WORKSPACE}, {"memory", required_argument, NULL, OPT_MEMORY}, \
        {"pids", required_argument, NULL, OPT_PIDS}, {"cpus", required_argument, NULL, OPT_CPUS},              \
        {"disk", required_argument, NULL, OPT_DISK}, {"net", required_argument, NULL, OPT_NET},                \
        {"connect", required_argument, NULL, OPT_CONNECT}, {"ro-bind", required_argument, NULL, OPT_RO_BIND},  \
        {"layer", required_argument, NULL, OPT_LAYER}, {"overlay", required_argument, NULL, OPT_OVERLAY},      \
        {"publish", required_argument, NULL, OPT_PUBLISH}
#define PROCESS_OPTIONS                                                                                     \
        {"timeout", required_argument, NULL, OPT_TIMEOUT}, {"root", no_argument, NULL, OPT_ROOT},              \
        {"env", required_argument, NULL, OPT_ENV}, {"tty", no_argument, NULL, OPT_TTY}

/* Apply one sandbox option to a create request.  Returns 1 when handled, 0 when `opt` is not a
 * sandbox option, EXIT_FAIL-style negative on a bad value (message printed). */
static int sandbox_option(const char *cmd, int opt, const char *arg, cJSON *create) {
        uint64_t v, port, host_port;
        int r = 0;
        switch (opt) {
        case OPT_WORKSPACE: {
                _cleanup_free_ char *p = host_path(arg);
                r = p ? set_string(create, "workspace", p) : -ENOMEM;
                break;
        }
        case OPT_MEMORY:
        case OPT_DISK:
                if (!parse_bytes(arg, &v))
                        return usage_error(cmd, "--%s wants BYTES (e.g. 512M, 4G), not '%s'",
                                           opt == OPT_MEMORY ? "memory" : "disk", arg),
                               -1;
                r = set_number(create, opt == OPT_MEMORY ? "memory" : "disk", (double) v);
                break;
        case OPT_PIDS:
                if (!parse_u64(arg, 0, 1000000000, &v))
                        return usage_error(cmd, "--pids wants a number, not '%s'", arg), -1;
                r = set_number(create, "pids", (double) v);
                break;
        case OPT_CPUS: {
                char *end;
                errno = 0;
                double d = strtod(arg, &end);
                if (errno || *end || end == arg || !isfinite(d) || d <= 0)
                        return usage_error(cmd, "--cpus wants a positive number, not '%s'", arg), -1;
                r = set_number(create, "cpus", d);
                break;
        }
        case OPT_NET:
                r = set_string(create, "net", arg);
                break;
        case OPT_CONNECT: {
                cJSON *a = array_of(create, "connect"), *o = cJSON_CreateObject();
                int k = a && o ? connector_fields(arg, o) : -ENOMEM;
                if (k == -EINVAL) {
                        cJSON_Delete(o);
                        return usage_error(cmd, "--connect wants PORT[:HOSTPORT] or PORT:/HOST/SOCKET, not '%s'", arg), -1;
                }
                if (k < 0 || !cJSON_AddItemToArray(a, o)) {
                        cJSON_Delete(o);
                        r = -ENOMEM;
                }
                break;
        }
        case OPT_PUBLISH: {
                if (!parse_port_pair(arg, &port, &host_port))
                        return usage_error(cmd, "--publish wants PORT[:HOSTPORT] (1..65535), not '%s'", arg), -1;
                cJSON *a = array_of(create, "publish"), *o = cJSON_CreateObject();
                if (!a || !o || !cJSON_AddNumberToObject(o, "port", (double) port) ||
                    (strchr(arg, ':') && !cJSON_AddNumberToObject(o, "host_port", (double) host_port)) ||
                    !cJSON_AddItemToArray(a, o)) {
                        cJSON_Delete(o);
                        r = -ENOMEM;
                }
                break;
        }
        case OPT_RO_BIND: {
                const char *colon = strrchr(arg, ':');
                if (!colon || colon == arg || !colon[1])
                        return usage_error(cmd, "--ro-bind wants SRC:DST, not '%s'", arg), -1;
                _cleanup_free_ char *src_arg = strndup(arg, (size_t) (colon - arg));
                _cleanup_free_ char *src = src_arg ? host_path(src_arg) : NULL;
                cJSON *a = array_of(create, "ro_binds"), *o = cJSON_CreateObject();
                if (!src || !a || !o || !cJSON_AddStringToObject(o, "src", src) ||
                    !cJSON_AddStringToObject(o, "dst", colon + 1) || !cJSON_AddItemToArray(a, o)) {
                        cJSON_Delete(o);
                        r = -ENOMEM;
                }
                break;
        }
        case OPT_LAYER:
                r = push_string(create, "layers", arg);
                break;
        case OPT_OVERLAY:
                r = push_string(create, "overlays", arg);
                break;
        default:
                return 0;
        }
        if (r < 0) {
                warn(cmd, "out of memory");
                return -1;
        }
        return 1;
}

/* Apply one process option to an exec request; same return convention as sandbox_option. */
static int process_option(const char *cmd, int opt, const char *arg, cJSON *exec) {
        uint64_t v;
        int r = 0;
        switch (opt) {
        case OPT_TIMEOUT:
                if (!parse_u64(arg, 0, 31536000, &v))
                        return usage_error(cmd, "--timeout wants seconds (0 to 31536000), not '%s'", arg), -1;
                r = set_number(exec, "timeout", (double) v);
                break;
        case OPT_ROOT:
                r = set_bool(exec, "root", true);
                break;
        case OPT_ENV: {
                const char *eq = strchr(arg, '=');
                if (!eq || eq == arg)
                        return usage_error(cmd, "--env wants NAME=VALUE, not '%s'", arg), -1;
                r = push_string(exec, "env", arg);
                break;
        }
        case OPT_TTY:
                r = set_bool(exec, "tty", true);
                break;
        case OPT_CWD:
                r = set_string(exec, "cwd", arg);
                break;
        default:
                return 0;
        }
        if (r < 0) {
                warn(cmd, "out of memory");
                return -1;
        }
        return 1;
}

static int bad_option(const char *cmd, char **argv) {
        return usage_error(cmd, "unknown option or missing argument: '%s'", argv[optind - 1]);
}

/* ---- Talking to the daemon -------------------------------------------------------------------- */

static int connect_daemon(const struct globals *g, const char *cmd, ns_client **c) {
        ns_error err = {0};
        if (ns_client_connect(g->socket, c, &err) < 0)
                return fail(cmd, &err);
        return 0;
}

/* Send `req` (an object holding "op" and its fields); on failure print "op: message". */
static int call(ns_client *c, cJSON *req, cJSON **reply, int *fds, size_t *nfds, ns_error *err) {
        int r = ns_client_call(c, req, NULL, 0, reply, fds, nfds, err);
        if (r < 0) {
                const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
                warn(cJSON_IsString(op) ? op->valuestring : NULL, "%s", err->msg);
        }
        return r;
}

static cJSON *request(const char *op, const char *sandbox) {
        cJSON *req = cJSON_CreateObject();
        if (req && (!cJSON_AddStringToObject(req, "op", op) ||
                    (sandbox && !cJSON_AddStringToObject(req, "sandbox", sandbox)))) {
                cJSON_Delete(req);
                return NULL;
        }
        return req;
}

/* The result object of a reply: the reply without its envelope. */
static void print_result(cJSON *reply) {
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "v");
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "id");
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
        _cleanup_free_ char *s = cJSON_PrintUnformatted(reply);
        if (s)
                puts(s);
}

static int simple_call(const struct globals *g, const char *op, const char *sandbox, cJSON *fields,
                       cJSON **reply_out) {
        _cleanup_client_ ns_client *c = NULL;
        _cleanup_json_ cJSON *req = fields ? fields : request(op, sandbox);
        if (!req)
                return warn(op, "out of memory"), EXIT_FAIL;
        if (connect_daemon(g, op, &c))
                return EXIT_FAIL;
        ns_error err = {0};
        if (call(c, req, reply_out, NULL, NULL, &err) < 0)
                return EXIT_FAIL;
        return 0;
}

static double num(const cJSON *obj, const char *key, double def) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *str(const cJSON *obj, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- The stdio relay ------------------------------------------------------------------------------- */

/* A terminal in raw mode for --tty, restored on scope exit. */
struct raw_tty {
        bool active;
        struct termios saved;
};

static void raw_tty_restore(struct raw_tty *t) {
        if (t->active)
                tcsetattr(STDIN_FILENO, TCSADRAIN, &t->saved);
        t->active = false;
}

static void raw_tty_enter(struct raw_tty *t) {
        struct termios raw;
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &t->saved) < 0)
                return;
        raw = t->saved;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) == 0)
                t->active = true;
}

enum on_signal {
        SIG_RETURN,  /* run, attach: stop relaying, exit 128+N (run then destroys the sandbox) */
        SIG_FORWARD, /* exec: send the signal to the process, keep relaying */
};

struct relay {
        int stream;
        int sigfd;
        bool tty;
        bool forward_stdin; /* run, exec: our stdin goes to the process (attach leaves it alone) */
        enum on_signal on_signal;
        ns_client *c;        /* for SIG_FORWARD */
        const char *sandbox; /* for SIG_FORWARD */
        uint64_t proc;
        uint64_t consumed, acked;
        bool stdin_open, eof_pending;
        bool exited;                 /* the EXIT frame came: */
        struct ns_frame_exit exit;   /* its contents */
        size_t in_len;
        /* NS_FRAME_MAX_PAYLOAD each, from relay_run: malloc'd, not zeroed, so that the pages
         * are touched only as far as data arrives (a zeroed 64 KiB is 16 page faults in every
         * short-lived `run`). */
        char *in, *out;
};

/* Write all of buf, waiting when fd is non-blocking and full. */
static int write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd p = {.fd = fd, .events = POLLOUT};
                                poll(&p, 1, -1);
                                continue;
                        }
                        return -errno;
                }
                buf += n;
                len -= (size_t) n;
        }
        return 0;
}

static int exit_status(int code, int sig, bool oom, bool timed_out, bool destroyed) {
        if (oom)
                warn(NULL, "out of memory");
        if (timed_out)
                warn(NULL, "timed out");
        if (destroyed && !oom && !timed_out)
                warn(NULL, "the sandbox was destroyed");
        if (sig > 0)
                return 128 + (sig & 0x7f);
        return code & 0xff;
}

static void send_resize(struct relay *r) {
        struct winsize ws;
        int fd = isatty(STDIN_FILENO) ? STDIN_FILENO : STDOUT_FILENO;
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
                ns_stream_send(r->stream, NS_FRAME_RESIZE, 0, 0, (uint64_t) ws.ws_row << 16 | ws.ws_col, NULL, 0,
                               NULL);
}

/* Send what stdin gave us; keeps it pending when the stream is full. */
static int flush_stdin(struct relay *r, ns_error *err) {
        int k;
        if (r->in_len > 0) {
                k = ns_stream_send(r->stream, NS_FRAME_STDIN, 0, 0, 0, r->in, r->in_len, err);
                if (k == -EAGAIN)
                        return 0;
                if (k == -EPIPE || k == -ECONNRESET) { /* gone: the EXIT frame is still to be read */
                        r->in_len = 0;
                        r->stdin_open = r->eof_pending = false;
                        return 0;
                }
                if (k < 0)
                        return k;
                r->in_len = 0;
        }
        if (r->eof_pending) {
                k = ns_stream_send(r->stream, NS_FRAME_STDIN_EOF, 0, 0, 0, NULL, 0, err);
                if (k == -EAGAIN)
                        return 0;
                if (k < 0 && k != -EPIPE && k != -ECONNRESET)
                        return k;
                r->eof_pending = false;
        }
        return 0;
}

/* Returns 1 and *status on EXIT, 0 when the stream has nothing more for now, or an exit status
 * (negated) after printing why the relay cannot go on. */
static int drain_stream(struct relay *r, int *status) {
        ns_error err = {0};
        for (;;) {
                struct ns_frame_hdr h;
                size_t len;
                int k = ns_stream_read(r->stream, &h, r->out, NS_FRAME_MAX_PAYLOAD, &len, &err);
                if (k == -EAGAIN)
                        break;
                if (k < 0) {
                        warn(NULL, "%s", err.msg);
                        return -EXIT_FAIL;
                }
                if (k == 0) {
                        warn(NULL, "the process's stdio stream closed before it exited");
                        return -EXIT_FAIL;
                }
                switch (h.type) {
                case NS_FRAME_OUTPUT: {
                        int fd = (h.stream == 2 && !r->tty) ? STDERR_FILENO : STDOUT_FILENO;
                        int w = write_all(fd, r->out, len);
                        if (w == -EPIPE) {
                                *status = 128 + SIGPIPE;
                                return 1;
                        }
                        r->consumed = h.offset + len;
                        break;
                }
                case NS_FRAME_LOST:
                        warn(NULL, "%" PRIu64 " bytes of output were lost (buffer overflow)", h.value);
                        r->consumed = h.offset + h.value;
                        break;
                case NS_FRAME_EXIT: {
                        struct ns_frame_exit e;
                        if (ns_frame_exit_decode(r->out, len, &e, &err) < 0) {
                                warn(NULL, "%s", err.msg);
                                return -EXIT_FAIL;
                        }
                        r->consumed = h.offset;
                        ns_stream_send(r->stream, NS_FRAME_ACK, 0, r->consumed, 0, NULL, 0, NULL);
                        r->exited = true;
                        r->exit = e;
                        *status = 0;
                        return 1;
                }
                default:
                        break; /* frames of a newer protocol */
                }
        }
        if (r->consumed > r->acked &&
            ns_stream_send(r->stream, NS_FRAME_ACK, 0, r->consumed, 0, NULL, 0, NULL) == 0)
                r->acked = r->consumed;
        return 0;
}

/* A signal arrived: returns an exit status to stop with, or -1 to go on. */
static int handle_signal(struct relay *r) {
        struct signalfd_siginfo si;
        if (read(r->sigfd, &si, sizeof si) != sizeof si)
                return -1;
        int sig = (int) si.ssi_signo;
        if (sig == SIGWINCH) {
                if (r->tty)
                        send_resize(r);
                return -1;
        }
        if (r->on_signal == SIG_RETURN)
                return 128 + sig;
        _cleanup_json_ cJSON *req = request("signal", r->sandbox);
        ns_error err = {0};
        if (req && cJSON_AddNumberToObject(req, "proc", (double) r->proc) &&
            cJSON_AddNumberToObject(req, "signal", sig))
                call(r->c, req, NULL, NULL, NULL, &err);
        return -1;
}

static int relay_loop(struct relay *r) {
        int status = EXIT_FAIL;
        int flags = fcntl(r->stream, F_GETFL);
        if (flags < 0 || fcntl(r->stream, F_SETFL, flags | O_NONBLOCK) < 0) {
                warn(NULL, "cannot make the stdio stream non-blocking: %s", strerror(errno));
                return EXIT_FAIL;
        }
        r->stdin_open = r->forward_stdin;
        if (r->tty)
                send_resize(r);

        for (;;) {
                bool pending = r->in_len > 0 || r->eof_pending;
                struct pollfd p[3] = {
                        {.fd = r->stream, .events = POLLIN | (pending ? POLLOUT : 0)},
                        {.fd = (r->stdin_open && !pending) ? STDIN_FILENO : -1, .events = POLLIN},
                        {.fd = r->sigfd, .events = POLLIN},
                };
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        warn(NULL, "poll: %s", strerror(errno));
                        return EXIT_FAIL;
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        int k = drain_stream(r, &status);
                        if (k < 0)
                                return -k;
                        if (k > 0)
                                return status;
                }
                ns_error err = {0};
                if (p[1].revents) {
                        ssize_t n = read(STDIN_FILENO, r->in, NS_FRAME_MAX_PAYLOAD);
                        if (n > 0)
                                r->in_len = (size_t) n;
                        else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                                r->stdin_open = false; /* EOF, a hung-up terminal, a closed fd */
                                r->eof_pending = true;
                        }
                }
                if ((r->in_len > 0 || r->eof_pending) && flush_stdin(r, &err) < 0) {
                        warn(NULL, "%s", err.msg);
                        return EXIT_FAIL;
                }
                if (p[2].revents & POLLIN) {
                        int s = handle_signal(r);
                        if (s >= 0)
                                return s;
                }
        }
}

/* Relay stdio between us and the process until its EXIT frame (with the terminal in raw mode for
 * --tty); returns our exit status. */
static int relay_run(struct relay *r) {
        _cleanup_free_ char *in = malloc(NS_FRAME_MAX_PAYLOAD), *out = malloc(NS_FRAME_MAX_PAYLOAD);
        if (!in || !out)
                return warn("relay", "out of memory"), EXIT_FAIL;
        r->in = in;
        r->out = out;
        struct raw_tty t = {0};
        if (r->tty)
                raw_tty_enter(&t);
        int status = relay_loop(r);
        raw_tty_restore(&t);
        if (r->exited && status == 0)
                status = exit_status(r->exit.code, r->exit.signal, r->exit.flags & NS_EXIT_OOM,
                                     r->exit.flags & NS_EXIT_TIMEOUT, r->exit.flags & NS_EXIT_DESTROYED);
        return status;
}

/* Block the signals the relay handles and return a signalfd for them. */
static int signals_to_fd(bool tty, bool quit) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        if (quit)
                sigaddset(&set, SIGQUIT);
        if (tty)
                sigaddset(&set, SIGWINCH);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return -errno;
        int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        return fd < 0 ? -errno : fd;
}

/* Complete an exec request with the terminal's size and TERM for --tty. */
static int add_tty_fields(cJSON *exec) {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(exec, "tty")))
                return 0;
        struct winsize ws;
        int fd = isatty(STDIN_FILENO) ? STDIN_FILENO : STDOUT_FILENO;
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
                if (set_number(exec, "rows", ws.ws_row > 1000 ? 1000 : ws.ws_row) < 0 ||
                    set_number(exec, "cols", ws.ws_col > 1000 ? 1000 : ws.ws_col) < 0)
                        return -ENOMEM;
        }
        const char *term = getenv("TERM");
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(exec, "env"), *it;
        cJSON_ArrayForEach(it, env) if (cJSON_IsString(it) && strncmp(it->valuestring, "TERM=", 5) == 0) return 0;
        if (term && *term) {
                _cleanup_free_ char *kv = NULL;
                if (asprintf(&kv, "TERM=%s", term) < 0 || push_string(exec, "env", kv) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Start `exec` and return the stdio stream; *proc is the process number. */
static int start_exec(ns_client *c, cJSON *exec, uint64_t *proc, int *stream, cJSON **reply, ns_error *err) {
        int fds[NS_PROTO_MAX_FDS];
        size_t nfds = NS_PROTO_MAX_FDS;
        int r = call(c, exec, reply, fds, &nfds, err);
        if (r < 0)
                return r;
        for (size_t i = 1; i < nfds; i++)
                close(fds[i]);
        *proc = (uint64_t) num(*reply, "proc", 0);
        if (nfds == 0) {
                warn("exec", "sandboxd sent no stdio stream");
                return ns_err(err, EPROTO, "sandboxd sent no stdio stream");
        }
        *stream = fds[0];
        return 0;
}

static int exec_failure_status(int code) {
        if (code == ENOENT)
                return EXIT_NOT_FOUND;
        if (code == EACCES || code == ENOEXEC || code == EISDIR || code == EPERM)
                return EXIT_CANNOT_EXEC;
        return EXIT_FAIL;
}

/* ---- Commands ------------------------------------------------------------------------------------ */

static const char help_run[] =
        "Usage: " PROG " run [OPTIONS] -- CMD [ARG...]\n"
        "Create a sandbox, run CMD in it with stdio relayed, destroy it; exit with CMD's status.\n"
        "\n"
        "  --workspace DIR        bind DIR as /workspace\n"
        "  --memory BYTES         memory limit (K/M/G/T suffixes, binary)\n"
        "  --pids N               process limit\n"
        "  --cpus N               CPU limit (fractional, e.g. 1.5)\n"
        "  --disk BYTES           size limit of the writable layer\n"
        "  --net MODE             none (loopback only), private (a veth pair, nothing reachable but\n"
        "                         connectors and published ports) or nat (operator opt-in)\n"
        "  --connect PORT[:HOSTPORT]  make host 127.0.0.1:HOSTPORT appear inside at 127.0.0.1:PORT\n"
        "  --connect PORT:/SOCKET  or the host Unix socket SOCKET (it must be yours)\n"
        "  --publish PORT[:HOSTPORT]  serve port PORT inside on the daemon's publish address (default\n"
        "                         127.0.0.1) at HOSTPORT (default: a free port of its range); each\n"
        "                         mapping is printed to stderr as 'publish PORT HOSTADDR:HOSTPORT'\n"
        "  --ro-bind SRC:DST      bind host SRC read-only at DST\n"
        "  --layer NAME           root filesystem layer, lowest first (default: the host layer;\n"
        "                         @host first: the host layer as the base of the others)\n"
        "  --overlay /workspace/DIR  see DIR copy-on-write: the layers' copy beneath, writes kept\n"
        "                         out of the working tree (and in a snapshot's layer)\n"
        "  --timeout SEC          kill CMD after SEC seconds\n"
        "  --root                 run as root of the sandbox (namespaced)\n"
        "  --env K=V              set an environment variable\n"
        "  --tty                  give CMD a terminal\n"
        "\n"
        "Exit status: CMD's, 128+N when killed by signal N, 125 when sandboxd refused,\n"
        "126 when CMD cannot be executed, 127 when it is not found.\n";

static const char help_create[] =
        "Usage: " PROG " create [--workspace DIR] [--memory BYTES] [--pids N] [--cpus N] [--disk BYTES]\n"
        "       [--net none|private|nat] [--connect PORT[:HOSTPORT]]... [--publish PORT[:HOSTPORT]]...\n"
        "       [--ro-bind SRC:DST]... [--layer NAME]... [--overlay /workspace/DIR]...\n"
        "Create a sandbox and print its id (see '" PROG " run --help' for the options).\n";

static const char help_exec[] =
        "Usage: " PROG " exec [--root] [--tty] [--env K=V]... [--cwd DIR] [--timeout SEC] [--detach|--tied] ID -- CMD [ARG...]\n"
        "Run CMD in sandbox ID with stdio relayed and exit with its status; INT, TERM, HUP and QUIT\n"
        "are forwarded to it.  --detach prints the process number and leaves it running.  --tied\n"
        "kills CMD's process group if this command goes away before CMD ends (by default CMD runs\n"
        "on, and 'attach' reads the rest).\n";

static const char help_attach[] =
        "Usage: " PROG " attach ID PROC [--from OFFSET]\n"
        "Relay the output of process PROC from byte OFFSET (default 0) until it exits; exit with\n"
        "its status.  Ctrl-C detaches.\n";

static const char help_wait[] =
        "Usage: " PROG " wait ID PROC\n"
        "Wait for process PROC to exit and exit with its status.\n";

static const char help_signal[] =
        "Usage: " PROG " signal ID PROC SIG\n"
        "Send SIG (a number or a name such as TERM) to process PROC.\n";

static const char help_connect[] =
        "Usage: " PROG " connect ID PORT[:HOSTPORT|:/SOCKET]\n"
        "Make host 127.0.0.1:HOSTPORT (default PORT), or the host Unix socket SOCKET (which must be\n"
        "owned by the sandbox's owner), appear inside sandbox ID at 127.0.0.1:PORT.\n";

static const char help_publish[] =
        "Usage: " PROG " publish ID PORT [HOSTPORT]\n"
        "Serve port PORT of sandbox ID (127.0.0.1 inside, or [::1]) on the daemon's publish address at\n"
        "HOSTPORT (default: a free port of its range); prints 'HOSTADDR:HOSTPORT'.\n";

static const char help_unpublish[] =
        "Usage: " PROG " unpublish ID PORT\nStop serving port PORT of sandbox ID; its connections are reset.\n";

static const char help_listening[] =
        "Usage: " PROG " listening ID\nPrint the TCP ports listening inside sandbox ID (but its connectors), one a line.\n";

static const char help_ls[] = "Usage: " PROG " ls\nList your sandboxes.\n";
static const char help_stats[] = "Usage: " PROG " stats ID\nShow the resource use of a sandbox.\n";
static const char help_freeze[] = "Usage: " PROG " freeze ID\nFreeze every process of a sandbox.\n";
static const char help_thaw[] = "Usage: " PROG " thaw ID\nThaw a frozen sandbox.\n";
static const char help_destroy[] =
        "Usage: " PROG " destroy ID\nKill every process of a sandbox and remove it (succeeds when it is gone).\n";
static const char help_snapshot[] =
        "Usage: " PROG " snapshot ID LAYER\n"
        "Destroy sandbox ID and turn what it wrote outside its binds into the read-only layer LAYER\n"
        "(in the daemon's --layers-dir), for later sandboxes to stack: --layer @host --layer LAYER.\n";
static const char help_layers[] = "Usage: " PROG " layers\nList the layers in the daemon's --layers-dir.\n";
static const char help_layer_rm[] =
        "Usage: " PROG " layer-rm LAYER\nRemove a layer you made by snapshot (refused while a sandbox uses it).\n";
static const char help_version[] = "Usage: " PROG " version\nPrint the client's and the daemon's versions.\n";

/* Parse options that take none but --help; returns 1 for --help, 0 to go on, EXIT_FAIL on error. */
static int no_options(const char *cmd, int argc, char **argv, const char *help) {
        static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0}};
        int o;
        optind = 0;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
                if (o == 'h') {
                        fputs(help, stdout);
                        return 1;
                }
                bad_option(cmd, argv);
                return -1;
        }
        return 0;
}

/* Common front of simple commands: options, then exactly `want` positional arguments. */
static int positional(const char *cmd, int argc, char **argv, const char *help, int want, int *status) {
        int r = no_options(cmd, argc, argv, help);
        if (r != 0) {
                *status = r > 0 ? 0 : EXIT_FAIL;
                return -1;
        }
        if (argc - optind != want) {
                *status = usage_error(cmd, "expected %d argument%s, got %d", want, want == 1 ? "" : "s",
                                      argc - optind);
                return -1;
        }
        return optind;
}

static int cmd_create(const struct globals *g, int argc, char **argv, bool run);

static int cmd_run(const struct globals *g, int argc, char **argv) {
        return cmd_create(g, argc, argv, true);
}

/* create, and run (create an ephemeral sandbox + exec + relay; closing the connection destroys it). */
static int cmd_create(const struct globals *g, int argc, char **argv, bool run) {
        const char *cmd = run ? "run" : "create";
        static const struct option run_opts[] = {SANDBOX_OPTIONS, PROCESS_OPTIONS,
                                                 {"help", no_argument, NULL, OPT_HELP}, {0}};
        static const struct option create_opts[] = {SANDBOX_OPTIONS, {"help", no_argument, NULL, OPT_HELP}, {0}};
        _cleanup_json_ cJSON *create = request("create", NULL);
        _cleanup_json_ cJSON *exec = request("exec", NULL);
        if (!create || !exec)
                return warn(cmd, "out of memory"), EXIT_FAIL;

        int o;
        optind = 0;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+h", run ? run_opts : create_opts, NULL)) != -1) {
                if (o == OPT_HELP) {
                        fputs(run ? help_run : help_create, stdout);
                        return 0;
                }
                int k = sandbox_option(cmd, o, optarg, create);
                if (k == 0 && run)
                        k = process_option(cmd, o, optarg, exec);
                if (k < 0)
                        return EXIT_FAIL;
                if (k == 0)
                        return bad_option(cmd, argv);
        }
        if (!run && optind < argc)
                return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        if (run && optind >= argc)
                return usage_error(cmd, "no command given");

        _cleanup_client_ ns_client *c = NULL;
        _cleanup_close_ int sigfd = -1;
        ns_error err = {0};
        if (run) {
                /* From here on, INT/TERM/HUP only ever end the relay, so the sandbox is destroyed. */
                if (!cJSON_AddBoolToObject(create, "ephemeral", true))
                        return warn(cmd, "out of memory"), EXIT_FAIL;
                bool tty = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(exec, "tty"));
                sigfd = signals_to_fd(tty, false);
                if (sigfd < 0)
                        return warn(cmd, "signalfd: %s", strerror(-sigfd)), EXIT_FAIL;
                if (push_strv(exec, "argv", argv + optind, argc - optind) < 0 || add_tty_fields(exec) < 0)
                        return warn(cmd, "out of memory"), EXIT_FAIL;
        }
        if (connect_daemon(g, cmd, &c))
                return EXIT_FAIL;

        _cleanup_json_ cJSON *reply = NULL;
        if (call(c, create, &reply, NULL, NULL, &err) < 0)
                return EXIT_FAIL;
        const cJSON *sb = cJSON_GetObjectItemCaseSensitive(reply, "sandbox");
        const char *id = str(sb, "id");
        if (!id)
                return warn("create", "sandboxd sent no sandbox id"), EXIT_FAIL;
        const cJSON *pub;
        cJSON_ArrayForEach(pub, cJSON_GetObjectItemCaseSensitive(sb, "publish")) {
                const char *addr = str(pub, "host_addr");
                fprintf(stderr, "publish %.0f %s:%.0f\n", num(pub, "port", 0), addr ? addr : "?",
                        num(pub, "host_port", 0));
        }
        if (!run) {
                if (g->json)
                        print_result(reply);
                else
                        puts(id);
                return 0;
        }

        int status;
        _cleanup_json_ cJSON *exec_reply = NULL;
        _cleanup_close_ int stream = -1;
        uint64_t proc = 0;
        if (!cJSON_AddStringToObject(exec, "sandbox", id)) {
                warn(cmd, "out of memory");
                status = EXIT_FAIL;
        } else if (start_exec(c, exec, &proc, &stream, &exec_reply, &err) < 0) {
                status = exec_failure_status(err.code);
        } else {
                struct relay r = {.stream = stream, .sigfd = sigfd, .on_signal = SIG_RETURN,
                                  .forward_stdin = true, .tty = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(exec, "tty"))};
                status = relay_run(&r);
        }

        /* No destroy request: the sandbox is ephemeral, and our connection's close (here, or
         * the kernel's when we are killed) destroys it without a round trip. */
        return status;
}

/* Parse exec's options from argv[1..] (argv[0] is a command name or the id) into `exec`; returns
 * -1 to go on (optind is where they stopped), else the status to exit with (help, or an error). */
static int exec_options(const char *cmd, const struct option *opts, int argc, char **argv, cJSON *exec, bool *detach) {
        int o;
        optind = 0;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
                if (o == OPT_HELP) {
                        fputs(help_exec, stdout);
                        return 0;
                }
                if (o == OPT_DETACH) {
                        *detach = true;
                        continue;
                }
                if (o == OPT_TIED) {
                        if (set_bool(exec, "tied", true) < 0)
                                return warn(cmd, "out of memory"), EXIT_FAIL;
                        continue;
                }
                int k = process_option(cmd, o, optarg, exec);
                if (k < 0)
                        return EXIT_FAIL;
                if (k == 0)
                        return bad_option(cmd, argv);
        }
        return -1;
}

static int cmd_exec(const struct globals *g, int argc, char **argv) {
        const char *cmd = "exec";
        static const struct option opts[] = {PROCESS_OPTIONS,
                                             {"cwd", required_argument, NULL, OPT_CWD},
                                             {"detach", no_argument, NULL, OPT_DETACH},
                                             {"tied", no_argument, NULL, OPT_TIED},
                                             {"help", no_argument, NULL, OPT_HELP},
                                             {0}};
        _cleanup_json_ cJSON *exec = request("exec", NULL);
        if (!exec)
                return warn(cmd, "out of memory"), EXIT_FAIL;
        bool detach = false;
        /* exec's options come before the id, after it, or both ("exec --root ID --tty -- CMD"). */
        int st = exec_options(cmd, opts, argc, argv, exec, &detach);
        if (st >= 0)
                return st;
        if (optind >= argc)
                return usage_error(cmd, "no sandbox id given");
        const char *id = argv[optind++];
        if (optind < argc && argv[optind][0] == '-' && strcmp(argv[optind], "--") != 0) {
                int base = optind - 1;
                st = exec_options(cmd, opts, argc - base, argv + base, exec, &detach);
                if (st >= 0)
                        return st;
                optind += base;
        }
        if (optind < argc && strcmp(argv[optind], "--") == 0)
                optind++;
        if (optind >= argc)
                return usage_error(cmd, "no command given");
        if (detach && cJSON_GetObjectItemCaseSensitive(exec, "tied"))
                return usage_error(cmd, "--tied and --detach exclude each other: a tied process dies when this command ends");
        bool tty = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(exec, "tty"));
        if (!cJSON_AddStringToObject(exec, "sandbox", id) || push_strv(exec, "argv", argv + optind, argc - optind) < 0 ||
            add_tty_fields(exec) < 0)
                return warn(cmd, "out of memory"), EXIT_FAIL;

        _cleanup_close_ int sigfd = -1;
        if (!detach) {
                sigfd = signals_to_fd(tty, true);
                if (sigfd < 0)
                        return warn(cmd, "signalfd: %s", strerror(-sigfd)), EXIT_FAIL;
        }
        _cleanup_client_ ns_client *c = NULL;
        if (connect_daemon(g, cmd, &c))
                return EXIT_FAIL;
        ns_error err = {0};
        _cleanup_json_ cJSON *reply = NULL;
        _cleanup_close_ int stream = -1;
        uint64_t proc = 0;
        if (start_exec(c, exec, &proc, &stream, &reply, &err) < 0)
                return EXIT_FAIL;
        if (detach) {
                if (g->json)
                        print_result(reply);
                else
                        printf("%" PRIu64 "\n", proc);
                return 0;
        }
        struct relay rl = {.stream = stream, .sigfd = sigfd, .tty = tty, .forward_stdin = true,
                           .on_signal = SIG_FORWARD, .c = c, .sandbox = id, .proc = proc};
        struct relay *r = &rl;
        return relay_run(r);
}

static int cmd_attach(const struct globals *g, int argc, char **argv) {
        const char *cmd = "attach";
        static const struct option opts[] = {{"from", required_argument, NULL, OPT_FROM},
                                             {"help", no_argument, NULL, OPT_HELP},
                                             {0}};
        uint64_t from = 0, proc;
        int o;
        optind = 0;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) { /* options may follow ID PROC */
                if (o == OPT_HELP) {
                        fputs(help_attach, stdout);
                        return 0;
                }
                if (o != OPT_FROM)
                        return bad_option(cmd, argv);
                if (!parse_u64(optarg, 0, 1ULL << 53, &from))
                        return usage_error(cmd, "--from wants a byte offset, not '%s'", optarg);
        }
        if (argc - optind != 2)
                return usage_error(cmd, "expected ID PROC");
        const char *id = argv[optind];
        if (!parse_u64(argv[optind + 1], 1, 1ULL << 53, &proc))
                return usage_error(cmd, "PROC must be a process number, not '%s'", argv[optind + 1]);

        _cleanup_close_ int sigfd = signals_to_fd(false, false);
        if (sigfd < 0)
                return warn(cmd, "signalfd: %s", strerror(-sigfd)), EXIT_FAIL;
        _cleanup_json_ cJSON *req = request("attach", id);
        if (!req || !cJSON_AddNumberToObject(req, "proc", (double) proc) ||
            !cJSON_AddNumberToObject(req, "from", (double) from))
                return warn(cmd, "out of memory"), EXIT_FAIL;
        _cleanup_client_ ns_client *c = NULL;
        if (connect_daemon(g, cmd, &c))
                return EXIT_FAIL;
        int fds[NS_PROTO_MAX_FDS];
        size_t nfds = NS_PROTO_MAX_FDS;
        ns_error err = {0};
        _cleanup_json_ cJSON *reply = NULL;
        if (call(c, req, &reply, fds, &nfds, &err) < 0)
                return EXIT_FAIL;
        for (size_t i = 1; i < nfds; i++)
                close(fds[i]);
        if (nfds == 0)
                return warn(cmd, "sandboxd sent no stdio stream"), EXIT_FAIL;
        _cleanup_close_ int stream = fds[0];
        struct relay r = {.stream = stream, .sigfd = sigfd, .on_signal = SIG_RETURN, .consumed = from, .acked = from};
        return relay_run(&r);
}

static int cmd_wait(const struct globals *g, int argc, char **argv) {
        int status, i = positional("wait", argc, argv, help_wait, 2, &status);
        if (i < 0)
                return status;
        uint64_t proc;
        if (!parse_u64(argv[i + 1], 1, 1ULL << 53, &proc))
                return usage_error("wait", "PROC must be a process number, not '%s'", argv[i + 1]);
        cJSON *req = request("wait", argv[i]);
        if (req && !cJSON_AddNumberToObject(req, "proc", (double) proc)) {
                cJSON_Delete(req);
                req = NULL;
        }
        if (!req)
                return warn("wait", "out of memory"), EXIT_FAIL;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "wait", NULL, req, &reply))
                return EXIT_FAIL;
        status = exit_status((int) num(reply, "code", 0), (int) num(reply, "signal", 0),
                             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "oom")),
                             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "timed_out")), false);
        if (g->json)
                print_result(reply);
        return status;
}

static int cmd_signal(const struct globals *g, int argc, char **argv) {
        int status, i = positional("signal", argc, argv, help_signal, 3, &status);
        if (i < 0)
                return status;
        uint64_t proc;
        if (!parse_u64(argv[i + 1], 1, 1ULL << 53, &proc))
                return usage_error("signal", "PROC must be a process number, not '%s'", argv[i + 1]);
        int sig = parse_signal(argv[i + 2]);
        if (sig < 0)
                return usage_error("signal", "unknown signal '%s'", argv[i + 2]);
        cJSON *req = request("signal", argv[i]);
        if (req && (!cJSON_AddNumberToObject(req, "proc", (double) proc) ||
                    !cJSON_AddNumberToObject(req, "signal", sig))) {
                cJSON_Delete(req);
                req = NULL;
        }
        if (!req)
                return warn("signal", "out of memory"), EXIT_FAIL;
        return simple_call(g, "signal", NULL, req, NULL);
}

static int cmd_connect(const struct globals *g, int argc, char **argv) {
        int status, i = positional("connect", argc, argv, help_connect, 2, &status);
        if (i < 0)
                return status;
        cJSON *req = request("connect", argv[i]);
        int k = req ? connector_fields(argv[i + 1], req) : -ENOMEM;
        if (k < 0)
                cJSON_Delete(req);
        if (k == -EINVAL)
                return usage_error("connect", "expected PORT[:HOSTPORT] or PORT:/HOST/SOCKET, not '%s'", argv[i + 1]);
        if (k < 0)
                return warn("connect", "out of memory"), EXIT_FAIL;
        return simple_call(g, "connect", NULL, req, NULL);
}

static int cmd_publish(const struct globals *g, int argc, char **argv) {
        int r = no_options("publish", argc, argv, help_publish);
        if (r != 0)
                return r > 0 ? 0 : EXIT_FAIL;
        int i = optind, n = argc - optind;
        if (n != 2 && n != 3)
                return usage_error("publish", "expected ID PORT [HOSTPORT], got %d arguments", n);
        uint64_t port, host_port = 0;
        if (!parse_u64(argv[i + 1], 1, 65535, &port))
                return usage_error("publish", "PORT must be 1..65535, not '%s'", argv[i + 1]);
        if (n == 3 && !parse_u64(argv[i + 2], 1, 65535, &host_port))
                return usage_error("publish", "HOSTPORT must be 1..65535, not '%s'", argv[i + 2]);
        cJSON *req = request("publish", argv[i]);
        if (req && (!cJSON_AddNumberToObject(req, "port", (double) port) ||
                    (host_port && !cJSON_AddNumberToObject(req, "host_port", (double) host_port)))) {
                cJSON_Delete(req);
                req = NULL;
        }
        if (!req)
                return warn("publish", "out of memory"), EXIT_FAIL;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "publish", NULL, req, &reply))
                return EXIT_FAIL;
        if (g->json)
                print_result(reply);
        else
                printf("%s:%.0f\n", str(reply, "host_addr") ? str(reply, "host_addr") : "?", num(reply, "host_port", 0));
        return 0;
}

static int cmd_unpublish(const struct globals *g, int argc, char **argv) {
        int status, i = positional("unpublish", argc, argv, help_unpublish, 2, &status);
        if (i < 0)
                return status;
        uint64_t port;
        if (!parse_u64(argv[i + 1], 1, 65535, &port))
                return usage_error("unpublish", "PORT must be 1..65535, not '%s'", argv[i + 1]);
        cJSON *req = request("unpublish", argv[i]);
        if (req && !cJSON_AddNumberToObject(req, "port", (double) port)) {
                cJSON_Delete(req);
                req = NULL;
        }
        if (!req)
                return warn("unpublish", "out of memory"), EXIT_FAIL;
        return simple_call(g, "unpublish", NULL, req, NULL);
}

static int cmd_listening(const struct globals *g, int argc, char **argv) {
        int status, i = positional("listening", argc, argv, help_listening, 1, &status);
        if (i < 0)
                return status;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "listening", argv[i], NULL, &reply))
                return EXIT_FAIL;
        if (g->json) {
                print_result(reply);
                return 0;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "ports"))
                if (cJSON_IsNumber(it))
                        printf("%.0f\n", it->valuedouble);
        return 0;
}

/* freeze, thaw, destroy: ID in, nothing out (but --json). */
static int sandbox_command(const struct globals *g, const char *op, const char *help, int argc, char **argv) {
        int status, i = positional(op, argc, argv, help, 1, &status);
        if (i < 0)
                return status;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, op, argv[i], NULL, &reply))
                return EXIT_FAIL;
        if (g->json)
                print_result(reply);
        return 0;
}

static int cmd_freeze(const struct globals *g, int argc, char **argv) {
        return sandbox_command(g, "freeze", help_freeze, argc, argv);
}

static int cmd_thaw(const struct globals *g, int argc, char **argv) {
        return sandbox_command(g, "thaw", help_thaw, argc, argv);
}

static int cmd_destroy(const struct globals *g, int argc, char **argv) {
        return sandbox_command(g, "destroy", help_destroy, argc, argv);
}

static int cmd_snapshot(const struct globals *g, int argc, char **argv) {
        int status, i = positional("snapshot", argc, argv, help_snapshot, 2, &status);
        if (i < 0)
                return status;
        cJSON *req = request("snapshot", argv[i]);
        if (req && !cJSON_AddStringToObject(req, "layer", argv[i + 1])) {
                cJSON_Delete(req);
                req = NULL;
        }
        if (!req)
                return warn("snapshot", "out of memory"), EXIT_FAIL;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "snapshot", NULL, req, &reply))
                return EXIT_FAIL;
        if (g->json) {
                print_result(reply);
                return 0;
        }
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(reply, "layer");
        printf("%s: %.0f files, %.0f bytes\n", argv[i + 1], num(l, "files", 0), num(l, "bytes", 0));
        return 0;
}

static int cmd_layer_rm(const struct globals *g, int argc, char **argv) {
        int status, i = positional("layer-rm", argc, argv, help_layer_rm, 1, &status);
        if (i < 0)
                return status;
        cJSON *req = request("layer_remove", NULL);
        if (req && !cJSON_AddStringToObject(req, "layer", argv[i])) {
                cJSON_Delete(req);
                req = NULL;
        }
        if (!req)
                return warn("layer-rm", "out of memory"), EXIT_FAIL;
        return simple_call(g, "layer-rm", NULL, req, NULL);
}

static void format_time(const cJSON *v, char *buf, size_t size) {
        if (cJSON_IsString(v)) {
                snprintf(buf, size, "%s", v->valuestring);
                return;
        }
        if (!cJSON_IsNumber(v)) {
                snprintf(buf, size, "-");
                return;
        }
        time_t t = (time_t) v->valuedouble;
        struct tm tm;
        if (!localtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm))
                snprintf(buf, size, "%.0f", v->valuedouble);
}

static int cmd_ls(const struct globals *g, int argc, char **argv) {
        int status, i = positional("ls", argc, argv, help_ls, 0, &status);
        if (i < 0)
                return status;
        /* The daemon answers a page at a time; gather every page into one reply. */
        _cleanup_json_ cJSON *reply = NULL;
        _cleanup_client_ ns_client *c = NULL;
        if (connect_daemon(g, "ls", &c))
                return EXIT_FAIL;
        char after[NS_ID_MAX + 1] = "";
        for (;;) {
                _cleanup_json_ cJSON *req = request("list", NULL);
                _cleanup_json_ cJSON *page = NULL;
                ns_error err = {0};
                if (!req || (after[0] && !cJSON_AddStringToObject(req, "after", after)))
                        return warn("ls", "out of memory"), EXIT_FAIL;
                if (call(c, req, &page, NULL, NULL, &err) < 0)
                        return EXIT_FAIL;
                cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "sandboxes");
                char next[NS_ID_MAX + 1] = "";
                const char *nx = str(page, "next");
                if (nx && strlen(nx) <= NS_ID_MAX)
                        strcpy(next, nx);
                if (!reply) {
                        reply = TAKE_PTR(page);
                        cJSON_DeleteItemFromObjectCaseSensitive(reply, "next");
                } else {
                        cJSON *all = cJSON_GetObjectItemCaseSensitive(reply, "sandboxes");
                        cJSON *it;
                        while (cJSON_IsArray(items) && (it = cJSON_DetachItemFromArray(items, 0)))
                                cJSON_AddItemToArray(all, it);
                }
                if (!next[0] || strcmp(next, after) <= 0)
                        break;
                snprintf(after, sizeof after, "%s", next);
        }
        if (g->json) {
                print_result(reply);
                return 0;
        }
        printf("%-32s  %-19s  %5s  %s\n", "ID", "CREATED", "PROCS", "FROZEN");
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "sandboxes")) {
                char created[64];
                format_time(cJSON_GetObjectItemCaseSensitive(it, "created"), created, sizeof created);
                const char *id = str(it, "id");
                printf("%-32s  %-19s  %5.0f  %s\n", id ? id : "?", created, num(it, "procs", 0),
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "frozen")) ? "yes" : "no");
        }
        return 0;
}

static void format_bytes(const cJSON *v, char *buf, size_t size) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        if (!cJSON_IsNumber(v)) {
                snprintf(buf, size, "%s", cJSON_IsString(v) ? v->valuestring : "-");
                return;
        }
        double d = v->valuedouble;
        size_t u = 0;
        while (d >= 1024 && u + 1 < ARRAY_SIZE(units)) {
                d /= 1024;
                u++;
        }
        snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

static void format_count(const cJSON *v, char *buf, size_t size) {
        if (cJSON_IsNumber(v))
                snprintf(buf, size, "%.0f", v->valuedouble);
        else
                snprintf(buf, size, "%s", cJSON_IsString(v) ? v->valuestring : "-");
}

static int cmd_layers(const struct globals *g, int argc, char **argv) {
        int status, i = positional("layers", argc, argv, help_layers, 0, &status);
        if (i < 0)
                return status;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "layers", NULL, NULL, &reply))
                return EXIT_FAIL;
        if (g->json) {
                print_result(reply);
                return 0;
        }
        printf("%-32s %-19s %10s %10s %s\n", "LAYER", "CREATED", "FILES", "BYTES", "IN USE");
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(reply, "layers")) {
                char t[32], files[32], bytes[32];
                format_time(cJSON_GetObjectItemCaseSensitive(l, "created"), t, sizeof t);
                format_count(cJSON_GetObjectItemCaseSensitive(l, "files"), files, sizeof files);
                format_count(cJSON_GetObjectItemCaseSensitive(l, "bytes"), bytes, sizeof bytes);
                const char *name = str(l, "name");
                printf("%-32s %-19s %10s %10s %s\n", name ? name : "?", t, files, bytes,
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "in_use")) ? "yes" : "no");
        }
        return 0;
}

static int cmd_stats(const struct globals *g, int argc, char **argv) {
        int status, i = positional("stats", argc, argv, help_stats, 1, &status);
        if (i < 0)
                return status;
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "stats", argv[i], NULL, &reply))
                return EXIT_FAIL;
        if (g->json) {
                print_result(reply);
                return 0;
        }
        const cJSON *mem = cJSON_GetObjectItemCaseSensitive(reply, "memory");
        const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(reply, "cpu");
        const cJSON *pids = cJSON_GetObjectItemCaseSensitive(reply, "pids");
        char a[64], b[64], k[64];
        format_bytes(cJSON_GetObjectItemCaseSensitive(mem, "current"), a, sizeof a);
        format_bytes(cJSON_GetObjectItemCaseSensitive(mem, "max"), b, sizeof b);
        format_count(cJSON_GetObjectItemCaseSensitive(mem, "oom_kills"), k, sizeof k);
        printf("memory  %s of %s, %s OOM kills\n", a, b, k);
        printf("cpu     %.3f s\n", num(cpu, "usage_usec", 0) / 1e6);
        format_count(cJSON_GetObjectItemCaseSensitive(pids, "current"), a, sizeof a);
        format_count(cJSON_GetObjectItemCaseSensitive(pids, "max"), b, sizeof b);
        printf("pids    %s of %s\n", a, b);
        format_count(cJSON_GetObjectItemCaseSensitive(reply, "procs"), a, sizeof a);
        printf("procs   %s\n", a);
        printf("frozen  %s\n", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "frozen")) ? "yes" : "no");
        return 0;
}

static int cmd_version(const struct globals *g, int argc, char **argv) {
        int status, i = positional("version", argc, argv, help_version, 0, &status);
        if (i < 0)
                return status;
        if (!g->json)
                printf(PROG " %s (protocol %d)\n", NS_VERSION, NS_PROTO_VERSION);
        _cleanup_json_ cJSON *reply = NULL;
        if (simple_call(g, "version", NULL, NULL, &reply))
                return EXIT_FAIL;
        if (g->json) {
                print_result(reply);
                return 0;
        }
        const char *v = str(reply, "version"), *cg = str(reply, "cgroup");
        printf("nightshift-sandboxd %s (protocol %.0f, cgroup %s)\n", v ? v : "?", num(reply, "protocol", 0),
               cg ? cg : "?");
        return 0;
}

static const struct command {
        const char *name;
        int (*fn)(const struct globals *g, int argc, char **argv);
        const char *summary;
} commands[] = {
        {"run", cmd_run, "create a sandbox, run a command in it, destroy it"},
        {"create", NULL, "create a sandbox and print its id"},
        {"exec", cmd_exec, "run a command in a sandbox"},
        {"attach", cmd_attach, "follow the output of a process"},
        {"wait", cmd_wait, "wait for a process to exit"},
        {"signal", cmd_signal, "send a signal to a process"},
        {"connect", cmd_connect, "make a host loopback port appear inside a sandbox"},
        {"publish", cmd_publish, "serve a sandbox's port on a host port"},
        {"unpublish", cmd_unpublish, "stop serving a published port"},
        {"listening", cmd_listening, "list the TCP ports listening inside a sandbox"},
        {"ls", cmd_ls, "list sandboxes"},
        {"stats", cmd_stats, "show a sandbox's resource use"},
        {"freeze", cmd_freeze, "freeze a sandbox"},
        {"thaw", cmd_thaw, "thaw a sandbox"},
        {"destroy", cmd_destroy, "destroy a sandbox"},
        {"snapshot", cmd_snapshot, "destroy a sandbox, keeping what it wrote as a layer"},
        {"layers", cmd_layers, "list layers"},
        {"layer-rm", cmd_layer_rm, "remove a layer made by snapshot"},
        {"version", cmd_version, "show versions"},
};

static void usage(FILE *f) {
        fprintf(f, "Usage: " PROG " [--socket PATH] [--json] COMMAND [ARGS]\n"
                   "Drive nightshift-sandboxd (default socket " NS_DEFAULT_SOCKET ").\n\nCommands:\n");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\n  --socket PATH  the daemon's socket\n"
                   "  --json         print results as JSON\n\n"
                   "'" PROG " COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
        struct globals g = {.socket = getenv("NIGHTSHIFT_SANDBOXD_SOCKET")};
        int o;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
                switch (o) {
                case 's':
                        g.socket = optarg;
                        break;
                case 'j':
                        g.json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        warn(NULL, "unknown option or missing argument: '%s'", argv[optind - 1]);
                        usage(stderr);
                        return EXIT_FAIL;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return EXIT_FAIL;
        }
        const char *name = argv[optind];
        if (strcmp(name, "help") == 0) {
                usage(stdout);
                return 0;
        }
        /* A closed stdout must not kill us before the sandbox is destroyed. */
        signal(SIGPIPE, SIG_IGN);
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (strcmp(name, commands[i].name) == 0) {
                        int sub_argc = argc - optind;
                        char **sub_argv = argv + optind;
                        /* --json may also follow the command ("ls --json"): take it out of the
                         * command's own arguments, up to a "--". */
                        for (int k = 1; k < sub_argc && strcmp(sub_argv[k], "--") != 0; k++)
                                if (strcmp(sub_argv[k], "--json") == 0) {
                                        g.json = true;
                                        memmove(sub_argv + k, sub_argv + k + 1, (size_t) (sub_argc - k) * sizeof *sub_argv);
                                        sub_argc--;
                                        k--;
                                }
                        int status = commands[i].fn ? commands[i].fn(&g, sub_argc, sub_argv)
                                                    : cmd_create(&g, sub_argc, sub_argv, false);
                        if (fflush(stdout) != 0 && status == 0) {
                                warn(name, "cannot write the output: %s", strerror(errno));
                                status = EXIT_FAIL;
                        }
                        return status;
                }
        warn(NULL, "unknown command '%s'", name);
        usage(stderr);
        return EXIT_FAIL;
}
