/* The daemon's socket: accept, check the peer, read one request per datagram, dispatch through
 * one whitelisted table, reply.  Every request is hostile until request.c and the handlers here
 * have checked it; a refused request changes nothing. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "sandboxd/cgroup.h"
#include "sandboxd/daemon.h"
#include "sandboxd/ports.h"

#define CLIENT_OUTQ_MAX 1024 /* replies and notices queued for a client that does not read */
#define CLIENTS_MAX 1024

struct outmsg {
        struct outmsg *next;
        int fd;
        size_t len;
        char data[];
};

struct sbx_client {
        struct sbx_client *next;
        struct sbx_daemon *d;
        int fd;
        ns_watch *w;
        uid_t uid;
        pid_t pid;
        struct outmsg *outq, *outq_tail;
        size_t outq_len;
        bool dead;
};

static void client_close(struct sbx_client *c) {
        struct sbx_daemon *d = c->d;
        for (struct sbx_client **pp = &d->clients; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        sandbox_forget_client(d, c);
        sandbox_forget_waiting(d, c);
        snapshot_forget_client(d, c);
        ns_loop_remove(d->loop, c->w);
        close(c->fd);
        while (c->outq) {
                struct outmsg *m = c->outq;
                c->outq = m->next;
                if (m->fd >= 0)
                        close(m->fd);
                free(m);
        }
        free(c);
}

static int send_one(struct sbx_client *c, const char *data, size_t len, int fd) {
        struct iovec iov = { (void *) data, len };
        return ns_send_fds(c->fd, &iov, 1, &fd, fd >= 0, MSG_DONTWAIT);
}

static void client_flush(struct sbx_client *c) {
        while (c->outq) {
                struct outmsg *m = c->outq;
                int r = send_one(c, m->data, m->len, m->fd);
                if (r == -EAGAIN || r == -ENOBUFS) {
                        ns_loop_modify(c->d->loop, c->w, EPOLLIN | EPOLLOUT, NULL);
                        return;
                }
                c->outq = m->next;
                if (!c->outq)
                        c->outq_tail = NULL;
                c->outq_len--;
                if (m->fd >= 0)
                        close(m->fd);
                free(m);
                if (r < 0) {
                        c->dead = true;
                        return;
                }
        }
        ns_loop_modify(c->d->loop, c->w, EPOLLIN, NULL);
}

/* Send `o` (consumed); fd is duplicated if it has to wait in the queue. */
static void client_send_json(struct sbx_client *c, cJSON *o, int fd) {
        _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!text || c->dead)
                return;
        size_t len = strlen(text);
        if (!c->outq) {
                int r = send_one(c, text, len, fd);
                if (r == 0)
                        return;
                if (r != -EAGAIN && r != -ENOBUFS) {
                        c->dead = true;
                        return;
                }
        }
        if (c->outq_len >= CLIENT_OUTQ_MAX) {
                c->dead = true; /* it stopped reading; it is dropped at the end of this batch */
                return;
        }
        struct outmsg *m = malloc(sizeof *m + len);
        if (!m) {
                c->dead = true;
                return;
        }
        m->next = NULL;
        m->len = len;
        m->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
        memcpy(m->data, text, len);
        if (c->outq_tail)
                c->outq_tail->next = m;
        else
                c->outq = m;
        c->outq_tail = m;
        c->outq_len++;
        ns_loop_modify(c->d->loop, c->w, EPOLLIN | EPOLLOUT, NULL);
}

void server_reply(struct sbx_client *c, int64_t id, cJSON *body, int fd) {
        if (!body)
                body = cJSON_CreateObject();
        cJSON_AddNumberToObject(body, "v", NS_PROTO_VERSION);
        cJSON_AddNumberToObject(body, "id", (double) id);
        cJSON_AddBoolToObject(body, "ok", true);
        client_send_json(c, body, fd);
}

void server_reply_error(struct sbx_client *c, int64_t id, const ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "v", NS_PROTO_VERSION);
        if (id >= 0)
                cJSON_AddNumberToObject(o, "id", (double) id);
        else
                cJSON_AddNullToObject(o, "id");
        cJSON_AddBoolToObject(o, "ok", false);
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddNumberToObject(e, "errno", err->code);
        cJSON_AddStringToObject(e, "code", ns_errno_name(err->code));
        cJSON_AddStringToObject(e, "message", err->msg);
        client_send_json(c, o, -1);
}

void server_notice(struct sbx_client *c, cJSON *body) {
        cJSON_AddNumberToObject(body, "v", NS_PROTO_VERSION);
        client_send_json(c, body, -1);
}

/* ---- operations ---------------------------------------------------------------------------- */

static struct sbx_sandbox *need_sandbox(struct sbx_client *c, const char *id, ns_error *err) {
        struct sbx_sandbox *s = sandbox_find(c->d, id, c->uid);
        if (!s)
                ns_err(err, ENOENT, "no sandbox '%s'", id);
        return s;
}

static int op_version(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "version", NS_VERSION);
        cJSON_AddNumberToObject(o, "protocol", NS_PROTO_VERSION);
        cJSON_AddStringToObject(o, "cgroup", cg_manager_describe(c->d->cg));
        server_reply(c, r->id, o, -1);
        return 0;
}

static int op_create(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s;
        int ret = sandbox_create(c->d, c, c->uid, r, &s, err);
        if (ret < 0)
                return ret;
        if (ret > 0) /* queued for the warm pool's next build: answered from the loop */
                return 0;
        if (s->ephemeral)
                s->holder = c;
        log_debug("uid %u: created %s%s", (unsigned) c->uid, s->id, s->from_pool ? " (from the warm pool)" : "");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "sandbox", sandbox_to_json(s));
        server_reply(c, r->id, o, -1);
        return 0;
}

static int op_exec(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        return s ? sandbox_exec(s, c, r->id, &r->u.exec, err) : -err->code;
}

static int op_attach(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        return s ? sandbox_attach(s, c, r->id, r->u.attach.proc, r->u.attach.from, err) : -err->code;
}

static int op_signal(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        return s ? sandbox_signal(s, c, r->id, r->u.signal.proc, r->u.signal.signal, err) : -err->code;
}

static int op_wait(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        return s ? sandbox_wait(s, c, r->id, r->u.wait.proc, err) : -err->code;
}

static int op_stats(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        struct cg_stats st;
        int ret = cg_stats(c->d->cg, s->id, &st, err);
        if (ret < 0)
                return ret;
        cJSON *o = cJSON_CreateObject();
        cJSON *m = cJSON_AddObjectToObject(o, "memory");
        cJSON_AddNumberToObject(m, "current", (double) st.memory_current);
        cJSON_AddNumberToObject(m, "max", (double) st.memory_max);
        cJSON_AddNumberToObject(m, "oom_kills", (double) st.oom_kills);
        cJSON *cpu = cJSON_AddObjectToObject(o, "cpu");
        cJSON_AddNumberToObject(cpu, "usage_usec", (double) st.cpu_usage_usec);
        cJSON *p = cJSON_AddObjectToObject(o, "pids");
        cJSON_AddNumberToObject(p, "current", (double) st.pids_current);
        cJSON_AddNumberToObject(p, "max", (double) st.pids_max);
        cJSON_AddBoolToObject(o, "frozen", s->frozen);
        cJSON *sb = sandbox_to_json(s);
        cJSON_AddItemToObject(o, "procs", cJSON_DetachItemFromObject(sb, "procs"));
        cJSON_AddItemToObject(o, "connect", cJSON_DetachItemFromObject(sb, "connect"));
        cJSON_AddItemToObject(o, "publish", cJSON_DetachItemFromObject(sb, "publish"));
        cJSON_Delete(sb);
        server_reply(c, r->id, o, -1);
        return 0;
}

static int op_freeze(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        int ret = sandbox_freeze(s, r->op == NS_OP_FREEZE, err);
        if (ret == 0)
                server_reply(c, r->id, NULL, -1);
        return ret;
}

static int op_connect(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        if (s->n_connects >= NS_CONNECTS_MAX)
                return ns_err(err, E2BIG, "at most %d connectors per sandbox", NS_CONNECTS_MAX);
        int ret = connector_check(s, &r->u.connect, err);
        if (ret < 0)
                return ret;
        _cleanup_close_ int netns = sandbox_netns(s, err);
        if (netns < 0)
                return netns;
        ret = ports_connect_add(c->d->ports, s->id, netns, &r->u.connect, s->owner, err);
        if (ret < 0)
                return ret;
        s->connects[s->n_connects++] = r->u.connect;
        state_save(s, NULL);
        server_reply(c, r->id, NULL, -1);
        return 0;
}

static cJSON *publish_json(struct sbx_daemon *d, const struct ns_publish *p) {
        char addr[16];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "port", p->port);
        cJSON_AddStringToObject(o, "host_addr", ports_publish_addr(d->ports, addr));
        cJSON_AddNumberToObject(o, "host_port", p->host_port);
        return o;
}

static int op_publish(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        struct ns_publish got;
        int ret = sandbox_publish(s, &r->u.publish, &got, err);
        if (ret < 0)
                return ret;
        state_save(s, NULL);
        server_reply(c, r->id, publish_json(c->d, &got), -1);
        return 0;
}

static int op_unpublish(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        int ret = ports_publish_remove(c->d->ports, s->id, r->u.publish.port, err);
        if (ret < 0)
                return ret;
        for (size_t i = 0; i < s->n_publishes; i++)
                if (s->publishes[i].port == r->u.publish.port) {
                        memmove(&s->publishes[i], &s->publishes[i + 1], (s->n_publishes - i - 1) * sizeof s->publishes[0]);
                        s->n_publishes--;
                        break;
                }
        state_save(s, NULL);
        server_reply(c, r->id, NULL, -1);
        return 0;
}

/* A socket connecting to `port` on the sandbox's loopback, handed to the client: the preview
 * proxy's upstream without a relay in between.  It reaches nothing a publish of that port would
 * not, and it is made inside the sandbox's own namespace (ports_dial refuses the daemon's). */
static int op_dial(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        _cleanup_close_ int netns = sandbox_netns(s, err);
        if (netns < 0)
                return netns;
        _cleanup_close_ int fd = ports_dial(c->d->ports, netns, r->u.publish.port, err);
        if (fd < 0)
                return fd;
        server_reply(c, r->id, NULL, fd); /* sends a copy of fd */
        return 0;
}

/* The TCP ports listening inside the sandbox, but for sandboxd's own connector listeners. */
static int op_listening(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        _cleanup_close_ int proc = sandbox_proc_dir(s, err);
        if (proc < 0)
                return proc;
        uint16_t ports[NS_LISTENING_MAX];
        size_t n = ports_listening(proc, ports, NS_LISTENING_MAX);
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "ports");
        for (size_t i = 0; i < n; i++) {
                bool connector = false;
                for (size_t k = 0; k < s->n_connects; k++)
                        connector |= s->connects[k].port == ports[i];
                if (!connector)
                        cJSON_AddItemToArray(arr, cJSON_CreateNumber(ports[i]));
        }
        server_reply(c, r->id, o, -1);
        return 0;
}

static int op_destroy(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = sandbox_find(c->d, r->sandbox, c->uid);
        if (s)
                sandbox_destroy(s);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "destroyed", s != NULL);
        server_reply(c, r->id, o, -1);
        return 0;
}

static int op_snapshot(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        struct sbx_sandbox *s = need_sandbox(c, r->sandbox, err);
        if (!s)
                return -err->code;
        log_debug("uid %u: snapshot of %s into layer %s", (unsigned) c->uid, s->id, r->u.layer);
        return snapshot_start(s, c, r->id, r->u.layer, err);
}

#define LAYERS_MAX_LISTED 1024

static int op_layers(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        if (c->d->layers_fd < 0)
                return ns_err(err, ENOENT, "no --layers-dir is configured");
        cJSON *arr = layer_list(c->d->layers_fd, LAYERS_MAX_LISTED, err);
        if (!arr)
                return -err->code;
        cJSON *it;
        cJSON_ArrayForEach(it, arr) {
                cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
                cJSON_AddBoolToObject(it, "in_use", layer_in_use(c->d, name->valuestring));
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "layers", arr);
        server_reply(c, r->id, o, -1);
        return 0;
}

static int op_layer_remove(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        int ret = layer_remove_op(c->d, c->uid, r->u.layer, err);
        if (ret == 0)
                server_reply(c, r->id, NULL, -1);
        return ret;
}

#define LIST_PAGE 128 /* sandboxes per reply: a page stays far below NS_PROTO_MAX_MSG */

/* The caller's sandboxes in id order, LIST_PAGE at a time after `after`; "next" names the last id
 * of a full page (pass it as "after"). */
static int op_list(struct sbx_client *c, struct ns_request *r, ns_error *err) {
        const struct sbx_sandbox *page[LIST_PAGE];
        size_t n = 0;
        bool more = false;
        for (const struct sbx_sandbox *s = c->d->sandboxes; s; s = s->next) {
                if (s->owner != c->uid || (r->sandbox && strcmp(s->id, r->sandbox) <= 0))
                        continue;
                /* keep the LIST_PAGE smallest ids: insertion into a sorted window */
                size_t pos = n;
                while (pos > 0 && strcmp(page[pos - 1]->id, s->id) > 0)
                        pos--;
                if (pos >= LIST_PAGE) {
                        more = true;
                        continue;
                }
                if (n == LIST_PAGE) {
                        more = true;
                        n--;
                }
                memmove(page + pos + 1, page + pos, (n - pos) * sizeof *page);
                page[pos] = s;
                n++;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "sandboxes");
        for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(arr, sandbox_to_json(page[i]));
        if (more)
                cJSON_AddStringToObject(o, "next", page[n - 1]->id);
        server_reply(c, r->id, o, -1);
        return 0;
}

/* The whole privileged surface: one handler per operation, nothing else is reachable. */
static int (*const handlers[NS_OP__COUNT])(struct sbx_client *, struct ns_request *, ns_error *) = {
        [NS_OP_VERSION] = op_version, [NS_OP_CREATE] = op_create, [NS_OP_EXEC] = op_exec,
        [NS_OP_ATTACH] = op_attach,   [NS_OP_SIGNAL] = op_signal, [NS_OP_WAIT] = op_wait,
        [NS_OP_STATS] = op_stats,     [NS_OP_FREEZE] = op_freeze, [NS_OP_THAW] = op_freeze,
        [NS_OP_CONNECT] = op_connect, [NS_OP_DESTROY] = op_destroy, [NS_OP_LIST] = op_list,
        [NS_OP_SNAPSHOT] = op_snapshot, [NS_OP_LAYERS] = op_layers,   [NS_OP_LAYER_REMOVE] = op_layer_remove,
        [NS_OP_PUBLISH] = op_publish, [NS_OP_UNPUBLISH] = op_unpublish, [NS_OP_LISTENING] = op_listening,
        [NS_OP_DIAL] = op_dial,
};

static void on_client(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct sbx_client *c = data;
        if (events & EPOLLOUT)
                client_flush(c);
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                _cleanup_free_ char *buf = malloc(NS_PROTO_MAX_MSG + 1);
                if (!buf) {
                        client_close(c);
                        return;
                }
                union {
                        struct cmsghdr h;
                        char b[CMSG_SPACE(sizeof(int) * NS_PROTO_MAX_FDS)];
                } cbuf;
                struct iovec iov = { buf, NS_PROTO_MAX_MSG + 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
                                     .msg_controllen = sizeof cbuf.b };
                ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        goto out;
                if (n <= 0) {
                        client_close(c);
                        return;
                }
                /* No operation takes descriptors: any that arrive are closed and the request refused. */
                size_t nfds = 0;
                for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h))
                        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                                size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (size_t i = 0; i < k; i++) {
                                        int x;
                                        memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof x);
                                        close(x);
                                }
                                nfds += k;
                        }
                struct ns_request req = { .id = -1 };
                ns_error err = { 0 };
                int r;
                if (n > NS_PROTO_MAX_MSG || (mh.msg_flags & MSG_TRUNC))
                        r = ns_err(&err, EMSGSIZE, "message larger than %d bytes", NS_PROTO_MAX_MSG);
                else if (mh.msg_flags & MSG_CTRUNC)
                        r = ns_err(&err, EINVAL, "truncated control data");
                else
                        r = ns_request_parse(buf, (size_t) n, &req, &err);
                if (r == 0 && nfds)
                        r = ns_err(&err, EINVAL, "unexpected file descriptors");
                if (r == 0)
                        r = handlers[req.op](c, &req, &err);
                if (r < 0) {
                        log_debug("uid %u: %s refused: %s", (unsigned) c->uid, ns_op_name(req.op), err.msg);
                        server_reply_error(c, req.id, &err);
                }
                ns_request_done(&req);
        }
out:
        if (c->dead)
                client_close(c);
}

static void on_accept(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct sbx_daemon *d = data;
        for (int i = 0; i < 16; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (cfd < 0)
                        return;
                struct ucred cred;
                socklen_t len = sizeof cred;
                bool allowed = false;
                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
                        for (size_t k = 0; k < d->cfg.n_allow; k++)
                                allowed |= d->cfg.allow[k] == cred.uid;
                size_t n_clients = 0;
                for (struct sbx_client *c = d->clients; c; c = c->next)
                        n_clients++;
                if (!allowed || n_clients >= CLIENTS_MAX) {
                        /* Refused before a byte is read. */
                        log_notice("refused connection from uid %u pid %d", (unsigned) cred.uid, (int) cred.pid);
                        close(cfd);
                        continue;
                }
                struct sbx_client *c = calloc(1, sizeof *c);
                if (!c) {
                        close(cfd);
                        continue;
                }
                *c = (struct sbx_client){ .d = d, .fd = cfd, .uid = cred.uid, .pid = cred.pid };
                c->w = ns_loop_add(loop, cfd, EPOLLIN, on_client, c, NULL);
                if (!c->w) {
                        close(cfd);
                        free(c);
                        continue;
                }
                c->next = d->clients;
                d->clients = c;
        }
}

int server_listen(struct sbx_daemon *d, ns_error *err) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(d->cfg.socket_path) >= sizeof sa.sun_path)
                return ns_err(err, ENAMETOOLONG, "socket path too long");
        strcpy(sa.sun_path, d->cfg.socket_path);
        struct stat st;
        if (lstat(sa.sun_path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return ns_err(err, EEXIST, "%s exists and is not a socket", sa.sun_path);
                unlink(sa.sun_path);
        }
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return ns_err_sys(err, errno, "socket");
        /* Bind with a umask that leaves no window in which others could connect. */
        mode_t old = umask(0177);
        int r = bind(fd, (struct sockaddr *) &sa, sizeof sa);
        umask(old);
        if (r < 0 || listen(fd, 128) < 0) {
                int e = errno;
                close(fd);
                return ns_err_sys(err, e, "listen on %s", sa.sun_path);
        }
        if (d->cfg.has_socket_gid && (chown(sa.sun_path, 0, d->cfg.socket_gid) < 0 || chmod(sa.sun_path, 0660) < 0)) {
                int e = errno;
                close(fd);
                return ns_err_sys(err, e, "set owner of %s", sa.sun_path);
        }
        d->listen_fd = fd;
        d->w_listen = ns_loop_add(d->loop, fd, EPOLLIN, on_accept, d, err);
        if (!d->w_listen) {
                close(fd);
                return -err->code;
        }
        return 0;
}

void server_close_fds_in_child(struct sbx_daemon *d) {
        for (struct sbx_client *c = d->clients; c; c = c->next)
                close(c->fd);
        if (d->listen_fd >= 0)
                close(d->listen_fd);
}

void server_close_all(struct sbx_daemon *d) {
        while (d->clients)
                client_close(d->clients);
        if (d->listen_fd >= 0) {
                ns_loop_remove(d->loop, d->w_listen);
                close(d->listen_fd);
                unlink(d->cfg.socket_path);
        }
}
