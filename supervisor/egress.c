/* The egress proxy (see egress.h).  Everything runs on the loop thread but name resolution, which
 * runs getaddrinfo on a short-lived thread of its own and answers through a socketpair watched by
 * the loop: the loop never blocks.  Request heads are parsed with http-parser, bounded (8 KiB) and
 * strict; a request is either CONNECT host:port (then a tunnel) or an absolute-form http:// request
 * (rewritten to origin-form with "Connection: close", then a tunnel to the origin). */
#include "egress.h"
#include "proxyproc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <http_parser.h>

#include "common/cleanup.h"
#include "common/relay.h"
#include "sockdir.h"

#define HEAD_MAX 8192
#define HOST_MAX 253
/* Bounds per proxy (per session): what one sandbox can make the supervisor hold. */
#define CONNS_MAX 256      /* ~9 KiB each, and up to 64 KiB per direction while bytes move */
#define RESOLVING_MAX 16   /* name lookups in flight, each a short-lived thread */
/* Reading interest: with the peer's hang-up, so that its EOF is read in the same round as its
 * last bytes (a response and the origin's close usually come together). */
#define WANT_IN (EPOLLIN | EPOLLRDHUP)

struct allow_entry {
        char name[HOST_MAX + 1]; /* lower case; for a suffix entry, without the "*." */
        bool suffix;
        uint16_t port;           /* 0 = any */
};

struct host_entry {
        char name[HOST_MAX + 1];
        struct sockaddr_storage addr;
        socklen_t len;
};

struct sv_egress_hosts {
        struct host_entry *e;
        size_t n;
};

enum conn_state { ST_HEAD, ST_RESOLVING, ST_CONNECTING, ST_RELAY, ST_REPLY, ST_TUNNEL };

struct conn {
        struct conn *next, *prev;
        sv_egress_proxy *p;
        enum conn_state st;
        int cfd, sfd, dns_fd;
        ns_watch *cw, *sw, *dw;
        uint32_t cev, sev;
        char host[HOST_MAX + 1];
        uint16_t port;
        bool is_connect, allowed, c_shut, s_shut;
        bool relay_here;       /* the proxy process could not take the tunnel: relayed here to its end */
        const char *reason;
        uint64_t bytes_up, bytes_down;
        uint64_t tunnel;       /* ST_TUNNEL: the proxy process's tunnel, until its end is in */
        size_t head_len;
        ns_relay_dir up;       /* client → server (common/relay.h) */
        ns_relay_dir down;     /* server → client */
        /* the head last: not zeroed at accept */
        char head[HEAD_MAX];
};

struct sv_egress_proxy {
        ns_loop *loop;
        int lfd;
        char *unix_path;        /* the listener's Unix socket (removed when it goes), or NULL (127.0.0.1) */
        ns_watch *lw;
        struct allow_entry allow[SV_EGRESS_MAX_ENTRIES];
        size_t n_allow;
        const sv_egress_hosts *hosts;
        sv_egress_report_fn report;
        void *report_data;
        sv_proxyproc *const *relay;     /* where tunnels are handed, when it is not NULL */
        sv_egress_late_fn late;         /* where a handed tunnel cut by the proxy's end is reported */
        void *late_data;
        char late_key[SV_EGRESS_LATE_KEY_MAX + 1];
        struct conn *conns;
        int n_conns, n_resolving;
};

/* ---- names and the allow-list ---------------------------------------------------------------- */

static bool label_ok(const char *s, size_t n) {
        if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '-')
                        return false;
        return true;
}

/* A DNS host name: labels, 253 bytes at most, a last label that is not all digits. */
static bool hostname_ok(const char *s, size_t n) {
        if (n == 0 || n > HOST_MAX)
                return false;
        size_t start = 0, last = 0;
        for (size_t i = 0; i <= n; i++)
                if (i == n || s[i] == '.') {
                        if (!label_ok(s + start, i - start))
                                return false;
                        last = start;
                        start = i + 1;
                }
        for (size_t i = last; i < n; i++)
                if (!isdigit((unsigned char) s[i]))
                        return true;
        return false;
}

static int parse_entry(const char *entry, struct allow_entry *out, ns_error *err) {
        size_t len = strlen(entry);
        if (len == 0 || len > SV_EGRESS_ENTRY_MAX)
                return ns_err(err, EINVAL, "egress entry must be 1..%d bytes", SV_EGRESS_ENTRY_MAX);
        const char *name = entry;
        bool suffix = false;
        if (!strncmp(entry, "*.", 2)) {
                suffix = true;
                name += 2;
        }
        const char *colon = strchr(name, ':');
        size_t nlen = colon ? (size_t) (colon - name) : strlen(name);
        long port = 0;
        if (colon) {
                char *end;
                errno = 0;
                port = strtol(colon + 1, &end, 10);
                if (!isdigit((unsigned char) colon[1]) || *end || errno || port < 1 || port > 65535)
                        return ns_err(err, EINVAL, "egress entry '%.64s': the port must be 1..65535", entry);
        }
        if (!hostname_ok(name, nlen))
                return ns_err(err, EINVAL,
                              "egress entry '%.64s' is not a host name (a name, '*.suffix', optionally ':port')", entry);
        if (out) {
                for (size_t i = 0; i < nlen; i++)
                        out->name[i] = (char) tolower((unsigned char) name[i]);
                out->name[nlen] = '\0';
                out->suffix = suffix;
                out->port = (uint16_t) port;
        }
        return 0;
}

int sv_egress_entry_check(const char *entry, ns_error *err) {
        return parse_entry(entry, NULL, err);
}

int sv_egress_list_json(const cJSON *list, bool proxy, char **out, ns_error *err) {
        *out = NULL;
        if (!list)
                return 0;
        if (!proxy)
                return ns_err(err, EINVAL, "'egress' needs network \"proxy\"");
        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > SV_EGRESS_MAX_ENTRIES)
                return ns_err(err, EINVAL, "'egress' must be an array of at most %d host names", SV_EGRESS_MAX_ENTRIES);
        const cJSON *it;
        int r;
        cJSON_ArrayForEach(it, list) {
                if (!cJSON_IsString(it))
                        return ns_err(err, EINVAL, "'egress' entries must be strings");
                if ((r = parse_entry(it->valuestring, NULL, err)) < 0)
                        return r;
        }
        return (*out = cJSON_PrintUnformatted(list)) ? 0 : ns_err(err, ENOMEM, "out of memory");
}

bool sv_egress_allowed(const sv_egress_proxy *p, const char *host, uint16_t port) {
        char h[HOST_MAX + 1];
        size_t n = strlen(host);
        if (!hostname_ok(host, n))
                return false; /* IP literals and junk never match a name */
        for (size_t i = 0; i <= n; i++)
                h[i] = (char) tolower((unsigned char) host[i]);
        for (size_t i = 0; i < p->n_allow; i++) {
                const struct allow_entry *a = &p->allow[i];
                if (a->port && a->port != port)
                        continue;
                size_t an = strlen(a->name);
                if (!a->suffix && !strcmp(h, a->name))
                        return true;
                /* "*.example.com" matches names beneath example.com, not example.com itself. */
                if (a->suffix && n > an + 1 && h[n - an - 1] == '.' && !strcmp(h + n - an, a->name))
                        return true;
        }
        return false;
}

/* ---- the static host map ------------------------------------------------------------------- */

int sv_egress_hosts_load(const char *path, sv_egress_hosts **out, ns_error *err) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return ns_err_sys(err, errno, "egress hosts %s", path);
        sv_egress_hosts *h = calloc(1, sizeof *h);
        if (!h)
                return ns_err(err, ENOMEM, "out of memory");
        char line[512];
        int lineno = 0;
        while (fgets(line, sizeof line, f)) {
                lineno++;
                char name[300], addr[100];
                char *hash = strchr(line, '#');
                if (hash)
                        *hash = '\0';
                int k = sscanf(line, "%299s %99s", name, addr);
                if (k <= 0)
                        continue;
                struct host_entry e = { 0 };
                struct sockaddr_in *a4 = (struct sockaddr_in *) &e.addr;
                struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &e.addr;
                if (k != 2 || !hostname_ok(name, strlen(name))) {
                        sv_egress_hosts_free(h);
                        return ns_err(err, EINVAL, "%s:%d: want 'name address'", path, lineno);
                }
                if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
                        a4->sin_family = AF_INET;
                        e.len = sizeof *a4;
                } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
                        a6->sin6_family = AF_INET6;
                        e.len = sizeof *a6;
                } else {
                        sv_egress_hosts_free(h);
                        return ns_err(err, EINVAL, "%s:%d: '%s' is not an IP address", path, lineno, addr);
                }
                for (char *c = name; *c; c++)
                        *c = (char) tolower((unsigned char) *c);
                snprintf(e.name, sizeof e.name, "%.253s", name);
                struct host_entry *ne = realloc(h->e, (h->n + 1) * sizeof *ne);
                if (!ne) {
                        sv_egress_hosts_free(h);
                        return ns_err(err, ENOMEM, "out of memory");
                }
                h->e = ne;
                h->e[h->n++] = e;
        }
        *out = h;
        return 0;
}

void sv_egress_hosts_free(sv_egress_hosts *h) {
        if (!h)
                return;
        free(h->e);
        free(h);
}

static const struct host_entry *hosts_find(const sv_egress_hosts *h, const char *name) {
        for (size_t i = 0; h && i < h->n; i++)
                if (!strcasecmp(h->e[i].name, name))
                        return &h->e[i];
        return NULL;
}

/* Why: the allow-list is of names, and a name is whatever DNS says.  An allowed name that resolves
 * (by accident, or by an attacker's DNS record) to loopback, a private or link-local network or the
 * cloud metadata address (169.254.169.254) would hand the sandbox the host's own services, the LAN
 * or the instance's credentials.  So such addresses are refused for names from DNS; only the
 * operator's static map may point a name there (tests use it for loopback servers).  The address
 * checked is the address connected to: there is no second lookup to rebind. */
static bool addr_is_internal(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET) {
                uint32_t a = ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr);
                return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 20) == 0xac1 /* 172.16/12 */ ||
                       (a >> 16) == 0xc0a8 || (a >> 16) == 0xa9fe /* 169.254/16 */ || (a >> 22) == 0x191 /* 100.64/10 */ ||
                       (a >> 28) >= 0xe;
        }
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
                        struct sockaddr_in v4 = { .sin_family = AF_INET };
                        memcpy(&v4.sin_addr, a->s6_addr + 12, 4);
                        return addr_is_internal((struct sockaddr *) &v4);
                }
                return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
                       IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (a->s6_addr[0] & 0xfe) == 0xfc;
        }
        return true;
}

/* ---- connections ------------------------------------------------------------------------------ */

#define CUT_REASON "closed with the session's proxy"

/* A handed tunnel whose proxy went first: its record, completed once the process reports. */
struct late_record {
        sv_egress_late_fn report;
        void *data;
        char key[SV_EGRESS_LATE_KEY_MAX + 1];
        char host[HOST_MAX + 1];
        uint16_t port;
        uint64_t bytes_up, bytes_down;
};

static void late_end(void *data, const uint64_t bytes[2], const char *reason) {
        (void) reason; /* a reset, which the drop asked for: the record says why */
        struct late_record *lr = data;
        sv_egress_record rec = { .host = lr->host, .port = lr->port, .bytes_up = lr->bytes_up + bytes[0],
                                 .bytes_down = lr->bytes_down + bytes[1], .allowed = true, .reason = CUT_REASON };
        lr->report(lr->data, lr->key, &rec);
        free(lr);
}

/* The proxy goes while tunnel c->tunnel is the process's: reset it there, and report it once the
 * process says what it moved since the hand-off (else the record would miss those bytes: an
 * agent's upload cut short by its session's end would look smaller than it was).  False when
 * that cannot be (no late report set, no process, out of memory): the caller reports now. */
static bool drop_tunnel_late(struct conn *c) {
        sv_egress_proxy *p = c->p;
        sv_proxyproc *pp = p->relay ? *p->relay : NULL;
        struct late_record *lr = p->late && pp ? malloc(sizeof *lr) : NULL;
        if (!lr) {
                (void) sv_proxyproc_tunnel_drop(pp, c->tunnel, NULL, NULL);
                return false;
        }
        *lr = (struct late_record){ .report = p->late, .data = p->late_data, .port = c->port,
                                    .bytes_up = c->bytes_up, .bytes_down = c->bytes_down };
        memcpy(lr->key, p->late_key, sizeof lr->key);
        memcpy(lr->host, c->host, sizeof lr->host);
        if (!sv_proxyproc_tunnel_drop(pp, c->tunnel, late_end, lr)) {
                free(lr);
                return false;
        }
        return true;
}

static void conn_free(struct conn *c) {
        sv_egress_proxy *p = c->p;
        bool reported_later = false;
        if (c->tunnel) { /* the session's proxy goes: so does the tunnel */
                reported_later = drop_tunnel_late(c);
                c->tunnel = 0;
                if (!c->reason)
                        c->reason = CUT_REASON;
        }
        if (!reported_later && (c->host[0] || c->reason)) {
                sv_egress_record rec = { .host = c->host[0] ? c->host : "?", .port = c->port, .bytes_up = c->bytes_up,
                                         .bytes_down = c->bytes_down, .allowed = c->allowed, .reason = c->reason };
                if (p->report)
                        p->report(p->report_data, &rec);
        }
        ns_loop_remove(p->loop, c->cw);
        ns_loop_remove(p->loop, c->sw);
        ns_loop_remove(p->loop, c->dw);
        if (c->cfd >= 0)
                close(c->cfd);
        if (c->sfd >= 0)
                close(c->sfd);
        if (c->dns_fd >= 0) {
                close(c->dns_fd);
                p->n_resolving--;
        }
        p->n_conns--;
        if (c->prev)
                c->prev->next = c->next;
        else
                p->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        ns_relay_release(&c->up);
        ns_relay_release(&c->down);
        free(c);
}

static void on_client(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);
static void on_server(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);

/* Watch `fd` for `ev` (0: not at all, so a hung-up socket cannot spin the loop). */
static int set_watch(struct conn *c, bool server, uint32_t ev) {
        ns_watch **w = server ? &c->sw : &c->cw;
        uint32_t *cur = server ? &c->sev : &c->cev;
        int fd = server ? c->sfd : c->cfd;
        if (*w && ev == *cur)
                return 0;
        ns_error e;
        if (ev == 0) {
                ns_loop_remove(c->p->loop, *w);
                *w = NULL;
        } else if (!*w) {
                if (!(*w = ns_loop_add(c->p->loop, fd, ev, server ? on_server : on_client, c, &e)))
                        return -1;
        } else if (ns_loop_modify(c->p->loop, *w, ev, &e) < 0) {
                return -1;
        }
        *cur = ev;
        return 0;
}

/* A bulk transfer (a read filled the buffer), nothing waiting here, neither side finished, and a
 * proxy process to take it: the rest goes there.  Not before: for a small exchange the hand-over
 * costs more than relaying it here (measured: +25 µs a request). */
static bool hand_off_ready(const struct conn *c) {
        return c->st == ST_RELAY && !c->relay_here && c->p->relay && *c->p->relay && (c->up.bulk || c->down.bulk) &&
               !ns_relay_pending(&c->up) && !ns_relay_pending(&c->down) && !c->up.eof && !c->down.eof;
}

/* The proxy process is done with the tunnel: its bytes are added, and the connection reported. */
static void tunnel_end(void *data, const uint64_t bytes[2], const char *reason) {
        struct conn *c = data;
        c->tunnel = 0;
        c->bytes_up += bytes[0];
        c->bytes_down += bytes[1];
        if (reason && !c->reason)
                c->reason = reason;
        conn_free(c);
}

/* Hand the established tunnel to the proxy process.  False when it cannot take it: the tunnel
 * is then relayed here. */
static bool hand_off(struct conn *c) {
        sv_proxyproc *pp = c->p->relay ? *c->p->relay : NULL;
        if (!pp)
                return false;
        /* Why the watches go first: an epoll registration belongs to the open file, which the
         * proxy process keeps; one left here would fire for a socket nothing here reads. */
        set_watch(c, false, 0);
        set_watch(c, true, 0);
        uint64_t id;
        if (sv_proxyproc_tunnel(pp, c->cfd, c->sfd, tunnel_end, c, &id) < 0) {
                c->relay_here = true; /* not asked again: pump would otherwise stop for it each time */
                return false;         /* conn_update watches them again */
        }
        c->cfd = c->sfd = -1;
        c->tunnel = id;
        c->st = ST_TUNNEL;
        ns_relay_release(&c->up);
        ns_relay_release(&c->down);
        return true;
}

/* After any progress: the right interest on both sockets, half-closes passed on, or the end. */
static void conn_update(struct conn *c) {
        bool up_pending = ns_relay_pending(&c->up) > 0, down_pending = ns_relay_pending(&c->down) > 0;
        if (c->st == ST_REPLY) {
                if (!down_pending)
                        return conn_free(c);
                if (set_watch(c, false, EPOLLOUT) < 0)
                        conn_free(c);
                return;
        }
        if (c->st != ST_RELAY)
                return;
        /* Both ways at their end: close() passes both EOFs on (nothing is left unread). */
        if (c->up.eof && !up_pending && c->down.eof && !down_pending)
                return conn_free(c);
        if (c->up.eof && !up_pending && !c->s_shut) {
                shutdown(c->sfd, SHUT_WR);
                c->s_shut = true;
        }
        if (c->down.eof && !down_pending && !c->c_shut) {
                shutdown(c->cfd, SHUT_WR);
                c->c_shut = true;
        }
        if (c->c_shut && c->s_shut)
                return conn_free(c);
        if (hand_off_ready(c) && hand_off(c))
                return;
        uint32_t cev = (!c->up.eof && !up_pending ? WANT_IN : 0) | (down_pending ? EPOLLOUT : 0);
        uint32_t sev = (!c->down.eof && !down_pending ? WANT_IN : 0) | (up_pending ? EPOLLOUT : 0);
        if (set_watch(c, false, cev) < 0 || set_watch(c, true, sev) < 0)
                conn_free(c);
}

/* Answer the client with a short error and close once it is written. */
static void reply_error(struct conn *c, int status, const char *text, const char *reason) {
        c->reason = reason;
        char buf[512];
        int n = snprintf(buf, sizeof buf,
                         "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                         status, text, strlen(reason) + 1, reason);
        ns_relay_release(&c->down); /* nothing of the origin's goes before or after it */
        if (n > 0 && (size_t) n < sizeof buf)
                (void) ns_relay_put(&c->down, buf, (size_t) n);
        c->st = ST_REPLY;
        if (ns_relay_write(&c->down, c->cfd) < 0) /* usually all of it, without a loop round */
                return conn_free(c);
        set_watch(c, true, 0);
        conn_update(c);
}

/* Move what can move in one direction (up: client → origin), a few buffers at most.  A read is
 * written out at once (ns_relay_move), and reading stops at a short read unless the source also
 * hung up (`rdhup`: its EOF is then read in the same round rather than one loop round later).
 * Returns 0, or -1 when the connection is broken. */
static int pump(struct conn *c, bool up, bool rdhup) {
        ns_relay_dir *d = up ? &c->up : &c->down;
        int from = up ? c->cfd : c->sfd, to = up ? c->sfd : c->cfd;
        uint64_t *count = up ? &c->bytes_up : &c->bytes_down;
        for (int burst = 0; burst < 16; burst++) {
                int r = ns_relay_write(d, to);
                if (r <= 0 || d->eof)
                        return r < 0 ? -1 : 0;
                /* All written: a bulk tunnel is handed over now (conn_update) rather than read on,
                 * which against a slow reader would keep bytes waiting here for ever. */
                if (hand_off_ready(c))
                        return 0;
                ssize_t n = ns_relay_move(d, from, to);
                if (n < 0)
                        return -1;
                if (n == 0)
                        break;
                *count += (uint64_t) n;
                /* A short read drained the socket (level-triggered: nothing is lost by waiting). */
                if ((size_t) n < NS_RELAY_CHUNK && !d->bulk && !rdhup)
                        break;
        }
        return 0;
}

/* Both directions after an event on one end: reads from the end that became readable, writes
 * to the one that became writable (an error or hang-up: both, to see it). */
static int pump_events(struct conn *c, bool server, uint32_t events) {
        uint32_t any = EPOLLERR | EPOLLHUP;
        bool rdhup = events & (EPOLLRDHUP | EPOLLHUP);
        /* up reads the client and writes the origin; down the reverse */
        if ((events & (any | (server ? EPOLLOUT : EPOLLIN))) && pump(c, true, !server && rdhup) < 0)
                return -1;
        if ((events & (any | (server ? EPOLLIN : EPOLLOUT))) && pump(c, false, server && rdhup) < 0)
                return -1;
        return 0;
}

/* The origin answered the connect: what waits goes out now (the rewritten head, or CONNECT's
 * 200), then each end is watched for what it can do next. */
static void connected(struct conn *c) {
        c->st = ST_RELAY;
        if (c->is_connect) {
                static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                (void) ns_relay_put(&c->down, ok, sizeof ok - 1);
        }
        if (ns_relay_write(&c->up, c->sfd) < 0 || ns_relay_write(&c->down, c->cfd) < 0)
                return conn_free(c);
        conn_update(c);
}

static void on_server(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct conn *c = data;
        if (c->st == ST_CONNECTING) {
                int e = 0;
                socklen_t el = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e != 0) {
                        c->allowed = true;
                        return reply_error(c, 502, "Bad Gateway", "connection to the origin failed");
                }
                return connected(c);
        }
        if (c->st == ST_RELAY && pump_events(c, true, events) < 0)
                return conn_free(c);
        if ((events & EPOLLIN) == 0 && (events & (EPOLLHUP | EPOLLERR)) && ns_relay_pending(&c->up))
                return conn_free(c);
        conn_update(c);
}

static void start_connect(struct conn *c, const struct sockaddr *sa, socklen_t len) {
        struct sockaddr_storage ss;
        memcpy(&ss, sa, len);
        if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *) &ss)->sin_port = htons(c->port);
        else
                ((struct sockaddr_in6 *) &ss)->sin6_port = htons(c->port);
        c->sfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->sfd < 0)
                return reply_error(c, 502, "Bad Gateway", "no socket");
        /* Relayed messages go out as they come: no Nagle delay behind the peer's delayed ACK. */
        int one = 1;
        (void) setsockopt(c->sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->st = ST_CONNECTING;
        if (connect(c->sfd, (struct sockaddr *) &ss, len) == 0)
                return connected(c);
        if (errno != EINPROGRESS)
                return reply_error(c, 502, "Bad Gateway", "connection to the origin failed");
        /* A nearby origin (loopback, the static map's addresses) has usually answered the SYN
         * before connect() returns: the head then goes out now, with no loop round for EPOLLOUT.
         * Otherwise the loop waits for the connect and never blocks on it. */
        if (ns_relay_pending(&c->up)) {
                int r = ns_relay_write(&c->up, c->sfd);
                if (r < 0)
                        return reply_error(c, 502, "Bad Gateway", "connection to the origin failed");
                if (r > 0)
                        return connected(c);
        } else {
                struct pollfd pf = { .fd = c->sfd, .events = POLLOUT };
                if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLERR | POLLHUP)))
                        return reply_error(c, 502, "Bad Gateway", "connection to the origin failed");
                if (pf.revents & POLLOUT)
                        return connected(c);
        }
        set_watch(c, false, 0); /* nothing from the client until the origin answers */
        if (set_watch(c, true, EPOLLOUT) < 0)
                conn_free(c);
}

/* ---- name resolution off the loop -------------------------------------------------------------- */

struct dns_answer {
        int rc; /* 0, or an errno-ish code: ENOENT (no address), EACCES (internal only) */
        struct sockaddr_storage addr;
        socklen_t len;
};

struct dns_job {
        char host[HOST_MAX + 1];
        int fd;
};

static void *dns_thread(void *arg) {
        struct dns_job *j = arg;
        struct dns_answer a = { .rc = ENOENT };
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res = NULL;
        if (getaddrinfo(j->host, NULL, &hints, &res) == 0) {
                for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                        if (addr_is_internal(ai->ai_addr)) {
                                a.rc = EACCES;
                                continue;
                        }
                        memcpy(&a.addr, ai->ai_addr, ai->ai_addrlen);
                        a.len = ai->ai_addrlen;
                        a.rc = 0;
                        break;
                }
                freeaddrinfo(res);
        }
        (void) !send(j->fd, &a, sizeof a, MSG_NOSIGNAL);
        close(j->fd);
        free(j);
        return NULL;
}

static void on_dns(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct conn *c = data;
        struct dns_answer a;
        ssize_t n = recv(fd, &a, sizeof a, 0);
        ns_loop_remove(loop, c->dw);
        c->dw = NULL;
        close(c->dns_fd);
        c->dns_fd = -1;
        c->p->n_resolving--;
        if (n != (ssize_t) sizeof a || a.rc == ENOENT)
                return reply_error(c, 502, "Bad Gateway", "the name does not resolve");
        if (a.rc == EACCES)
                return reply_error(c, 403, "Forbidden", "the name resolves to an internal address");
        start_connect(c, (struct sockaddr *) &a.addr, a.len);
}

static void resolve(struct conn *c) {
        const struct host_entry *h = hosts_find(c->p->hosts, c->host);
        if (h)
                return start_connect(c, (const struct sockaddr *) &h->addr, h->len);
        if (c->p->n_resolving >= RESOLVING_MAX)
                return reply_error(c, 503, "Service Unavailable", "too many name lookups at once");
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return reply_error(c, 502, "Bad Gateway", "cannot resolve");
        struct dns_job *j = calloc(1, sizeof *j);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (j) {
                snprintf(j->host, sizeof j->host, "%s", c->host);
                j->fd = sp[1];
        }
        if (!j || pthread_create(&t, &at, dns_thread, j) != 0) {
                pthread_attr_destroy(&at);
                free(j);
                close(sp[0]);
                close(sp[1]);
                return reply_error(c, 502, "Bad Gateway", "cannot resolve");
        }
        pthread_attr_destroy(&at);
        c->dns_fd = sp[0];
        c->p->n_resolving++;
        c->st = ST_RESOLVING;
        set_watch(c, false, 0);
        ns_error e;
        if (!(c->dw = ns_loop_add(c->p->loop, c->dns_fd, EPOLLIN, on_dns, c, &e)))
                conn_free(c);
}

/* ---- the request head ------------------------------------------------------------------------ */

struct head_parse {
        const char *url;
        size_t url_len;
        bool done, bad;
};

static int hp_url(http_parser *hp, const char *at, size_t len) {
        struct head_parse *h = hp->data;
        if (!h->url)
                h->url = at;
        h->url_len = (size_t) (at + len - h->url); /* the head is one contiguous buffer */
        return 0;
}

static int hp_headers_done(http_parser *hp) {
        ((struct head_parse *) hp->data)->done = true;
        return 0;
}

static bool header_dropped(const char *line, size_t n) {
        static const char *const drop[] = { "proxy-", "connection:", "keep-alive:" };
        for (size_t i = 0; i < ARRAY_SIZE(drop); i++)
                if (n >= strlen(drop[i]) && !strncasecmp(line, drop[i], strlen(drop[i])))
                        return true;
        return false;
}

/* The head is complete (head[0..end) ends with CRLFCRLF): decide and start. */
static void handle_head(struct conn *c, size_t end) {
        http_parser hp;
        http_parser_init(&hp, HTTP_REQUEST);
        struct head_parse h = { 0 };
        hp.data = &h;
        http_parser_settings st = { .on_url = hp_url, .on_headers_complete = hp_headers_done };
        http_parser_execute(&hp, &st, c->head, end);
        if (!h.done || !h.url || (HTTP_PARSER_ERRNO(&hp) != HPE_OK && HTTP_PARSER_ERRNO(&hp) != HPE_PAUSED))
                return reply_error(c, 400, "Bad Request", "malformed request");
        c->is_connect = hp.method == HTTP_CONNECT;
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(h.url, h.url_len, c->is_connect, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
            u.field_data[UF_HOST].len > HOST_MAX)
                return reply_error(c, 400, "Bad Request", "the request must name a host (CONNECT host:port or http://host/...)");
        if (!c->is_connect) {
                if (!(u.field_set & (1 << UF_SCHEMA)) || u.field_data[UF_SCHEMA].len != 4 ||
                    strncasecmp(h.url + u.field_data[UF_SCHEMA].off, "http", 4) != 0)
                        return reply_error(c, 400, "Bad Request", "only http:// URLs, or CONNECT for https");
        }
        memcpy(c->host, h.url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
        c->host[u.field_data[UF_HOST].len] = '\0';
        c->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
        if (!sv_egress_allowed(c->p, c->host, c->port))
                return reply_error(c, 403, "Forbidden", "this host is not on the session's egress allow-list");
        c->allowed = true;
        /* Everything after the head (a body's start) follows the rewritten head to the origin. */
        size_t rest = c->head_len - end;
        if (!c->is_connect) {
                const char *path = "/";
                size_t plen = 1;
                if (u.field_set & (1 << UF_PATH)) {
                        path = h.url + u.field_data[UF_PATH].off;
                        plen = (size_t) (h.url + h.url_len - path); /* path, query and fragment as sent */
                }
                char out[2 * HEAD_MAX];
                int n = snprintf(out, sizeof out, "%s %.*s HTTP/%d.%d\r\n", http_method_str(hp.method), (int) plen, path,
                                 hp.http_major, hp.http_minor);
                size_t len = n > 0 && (size_t) n < sizeof out ? (size_t) n : 0;
                const char *line = memchr(c->head, '\n', end) + 1;
                while (line < c->head + end - 2) {
                        const char *nl = memchr(line, '\n', (size_t) (c->head + end - line));
                        size_t ln = (size_t) (nl - line + 1);
                        if (!header_dropped(line, ln) && len + ln < sizeof out - 32) {
                                memcpy(out + len, line, ln);
                                len += ln;
                        }
                        line = nl + 1;
                }
                static const char tail[] = "Connection: close\r\n\r\n";
                memcpy(out + len, tail, sizeof tail - 1);
                len += sizeof tail - 1;
                if (ns_relay_put(&c->up, out, len) < 0)
                        return reply_error(c, 500, "Internal Server Error", "out of memory");
                c->bytes_up = len; /* the head as sent to the origin */
        }
        if (rest) {
                if (ns_relay_put(&c->up, c->head + end, rest) < 0)
                        return reply_error(c, 500, "Internal Server Error", "out of memory");
                c->bytes_up += rest;
        }
        resolve(c);
}

/* Read what the client sent of its head (one read of up to the head's bound); a complete head is
 * handled at once, else the client's socket is watched for more. */
static void read_head(struct conn *c) {
        ssize_t n = recv(c->cfd, c->head + c->head_len, sizeof c->head - c->head_len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (set_watch(c, false, WANT_IN) < 0)
                        conn_free(c);
                return;
        }
        if (n <= 0)
                return conn_free(c);
        size_t scan = c->head_len > 3 ? c->head_len - 3 : 0;
        c->head_len += (size_t) n;
        char *e = memmem(c->head + scan, c->head_len - scan, "\r\n\r\n", 4);
        if (e)
                return handle_head(c, (size_t) (e - c->head) + 4);
        if (c->head_len == sizeof c->head)
                return reply_error(c, 431, "Request Header Fields Too Large", "request head over 8 KiB");
        if (set_watch(c, false, WANT_IN) < 0)
                conn_free(c);
}

static void on_client(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct conn *c = data;
        if (c->st == ST_HEAD)
                return read_head(c);
        if (c->st == ST_REPLY) {
                if (ns_relay_write(&c->down, fd) < 0)
                        return conn_free(c);
                return conn_update(c);
        }
        if (c->st == ST_RELAY && pump_events(c, false, events) < 0)
                return conn_free(c);
        if ((events & EPOLLIN) == 0 && (events & (EPOLLHUP | EPOLLERR)) && ns_relay_pending(&c->down))
                return conn_free(c);
        conn_update(c);
}

static void on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        sv_egress_proxy *p = data;
        /* One connection per wake-up: the listener is level-triggered, so others waiting wake the
         * loop again, and a lone connection costs no accept() that finds nothing. */
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return;
        struct conn *c = p->n_conns < CONNS_MAX ? malloc(sizeof *c) : NULL;
        if (!c) {
                close(cfd);
                return;
        }
        memset(c, 0, offsetof(struct conn, head));
        ns_relay_init(&c->up);
        ns_relay_init(&c->down);
        c->p = p;
        c->cfd = cfd;
        c->sfd = c->dns_fd = -1;
        c->st = ST_HEAD;
        p->n_conns++;
        c->next = p->conns;
        if (p->conns)
                p->conns->prev = c;
        p->conns = c;
        /* With TCP_DEFER_ACCEPT the head has usually arrived with the connection. */
        read_head(c);
}

int sv_egress_proxy_new(ns_loop *loop, const char *const *allow, size_t n_allow, const sv_egress_hosts *hosts,
                        sv_egress_report_fn report, void *report_data, const char *unix_path, sv_egress_proxy **out,
                        int *port_out, ns_error *err) {
        if (n_allow > SV_EGRESS_MAX_ENTRIES)
                return ns_err(err, E2BIG, "at most %d egress entries", SV_EGRESS_MAX_ENTRIES);
        sv_egress_proxy *p = calloc(1, sizeof *p);
        if (!p)
                return ns_err(err, ENOMEM, "out of memory");
        p->loop = loop;
        p->hosts = hosts;
        p->report = report;
        p->report_data = report_data;
        p->lfd = -1;
        int r;
        for (size_t i = 0; i < n_allow; i++)
                if ((r = parse_entry(allow[i], &p->allow[p->n_allow++], err)) < 0)
                        goto fail;
        if (unix_path) {
                if (!(p->unix_path = strdup(unix_path))) {
                        r = ns_err(err, ENOMEM, "out of memory");
                        goto fail;
                }
                if ((r = p->lfd = sv_sock_listen(unix_path, SOCK_NONBLOCK | SOCK_CLOEXEC, 128, err)) < 0)
                        goto fail;
                if (!(p->lw = ns_loop_add(loop, p->lfd, EPOLLIN, on_accept, p, err))) {
                        r = -err->code;
                        goto fail;
                }
                *port_out = 0;
                *out = p;
                return 0;
        }
        p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        /* The port a sandbox's connector already points at (after a restart), when still free. */
        if (p->lfd >= 0 && *port_out > 0 && *port_out <= 65535) {
                sa.sin_port = htons((uint16_t) *port_out);
                if (bind(p->lfd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                        close(p->lfd);
                        p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                        sa.sin_port = 0;
                }
        }
        /* Accepted connections inherit TCP_NODELAY; TCP_DEFER_ACCEPT wakes the loop once a
         * connection has data (a client always speaks first here): accept and head in one round. */
        int one = 1, defer = 5;
        if (p->lfd >= 0) {
                (void) setsockopt(p->lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                (void) setsockopt(p->lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
        }
        if (p->lfd < 0 || (sa.sin_port == 0 && bind(p->lfd, (struct sockaddr *) &sa, sizeof sa) < 0) || listen(p->lfd, 128) < 0 ||
            getsockname(p->lfd, (struct sockaddr *) &sa, &sl) < 0) {
                r = ns_err_sys(err, errno, "egress proxy listener");
                goto fail;
        }
        if (!(p->lw = ns_loop_add(loop, p->lfd, EPOLLIN, on_accept, p, err))) {
                r = -err->code;
                goto fail;
        }
        *port_out = ntohs(sa.sin_port);
        *out = p;
        return 0;
fail:
        sv_egress_proxy_free(p);
        return r;
}

void sv_egress_proxy_set_relay(sv_egress_proxy *p, sv_proxyproc *const *relay) {
        p->relay = relay;
}

int sv_egress_proxy_set_late_report(sv_egress_proxy *p, sv_egress_late_fn report, void *data, const char *key) {
        if (!key || strlen(key) > SV_EGRESS_LATE_KEY_MAX)
                return -EINVAL;
        p->late = report;
        p->late_data = data;
        snprintf(p->late_key, sizeof p->late_key, "%s", key);
        return 0;
}

void sv_egress_proxy_free(sv_egress_proxy *p) {
        if (!p)
                return;
        while (p->conns)
                conn_free(p->conns);
        ns_loop_remove(p->loop, p->lw);
        if (p->lfd >= 0)
                close(p->lfd);
        if (p->unix_path && p->lfd >= 0)
                (void) unlink(p->unix_path); /* ours: nothing else binds in the supervisor's directory */
        free(p->unix_path);
        free(p);
}
