/* The client library and nightshift-sandbox against a scripted fake sandboxd: request envelope,
 * notices queued during a call, stale replies skipped, fds received, error replies, stdio frames,
 * and `run` end to end (create, exec, stdin/stdout/stderr relay, exit code, destroy).  TAP. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/client.h"
#include "tap.h"

/* ---- The fake daemon (a child process) ---------------------------------------------------------- */

static void send_json(int fd, const char *s, int pass_fd) {
        struct iovec iov = {.iov_base = (void *) s, .iov_len = strlen(s)};
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (pass_fd >= 0) {
                memset(&control, 0, sizeof control);
                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof control.buf;
                struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
        }
        if (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0)
                _exit(10);
}

/* Plays init on one end of a stdio stream: echoes STDIN frames as stdout, says "bye" on stderr at
 * STDIN_EOF, then exits with code 3. */
static void fake_init(int s) {
        uint64_t off = 0;
        char buf[NS_FRAME_MAX_PAYLOAD];
        for (;;) {
                struct ns_frame_hdr h;
                size_t len;
                int r = ns_stream_read(s, &h, buf, sizeof buf, &len, NULL);
                if (r <= 0)
                        _exit(11);
                if (h.type == NS_FRAME_STDIN) {
                        ns_stream_send(s, NS_FRAME_OUTPUT, 1, off, 0, buf, len, NULL);
                        off += len;
                } else if (h.type == NS_FRAME_STDIN_EOF) {
                        ns_stream_send(s, NS_FRAME_OUTPUT, 2, off, 0, "bye\n", 4, NULL);
                        off += 4;
                        struct ns_frame_exit e = {.code = 3};
                        ns_stream_send(s, NS_FRAME_EXIT, 0, off, 0, &e, sizeof e, NULL);
                        return;
                }
        }
}

/* Serve one connection; exits 0 when the client closed it after a destroy (or never needed one). */
static void fake_daemon(int listener, bool refuse_create) {
        int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
                _exit(12);
        bool created = false, destroyed = false, ephemeral = false;
        char buf[NS_PROTO_MAX_MSG + 1], out[512];
        for (;;) {
                ssize_t n = recv(c, buf, NS_PROTO_MAX_MSG, 0);
                if (n <= 0)
                        _exit(created && !destroyed && !ephemeral ? 13 : 0); /* the close destroys an ephemeral one */
                buf[n] = '\0';
                cJSON *req = cJSON_Parse(buf);
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "v");
                const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "op"));
                if (!cJSON_IsNumber(id) || !cJSON_IsNumber(v) || v->valueint != 1 || !op)
                        _exit(14);
                long long rid = (long long) id->valuedouble;
                if (strcmp(op, "ping") == 0) {
                        /* A notice and a stale reply first: the client must skip both. */
                        send_json(c, "{\"v\":1,\"notice\":\"exit\",\"sandbox\":\"x\",\"proc\":1,\"code\":0}", -1);
                        snprintf(out, sizeof out, "{\"v\":1,\"id\":%lld,\"ok\":true,\"stale\":true}", rid + 100);
                        send_json(c, out, -1);
                        int p[2];
                        if (pipe2(p, O_CLOEXEC) < 0)
                                _exit(15);
                        snprintf(out, sizeof out, "{\"v\":1,\"id\":%lld,\"ok\":true,\"pong\":%s}", rid,
                                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "x")) ? "true" : "false");
                        send_json(c, out, p[0]);
                        close(p[0]);
                        close(p[1]);
                } else if (strcmp(op, "fail") == 0) {
                        snprintf(out, sizeof out,
                                 "{\"v\":1,\"id\":%lld,\"ok\":false,\"error\":{\"errno\":2,\"code\":\"ENOENT\","
                                 "\"message\":\"no sandbox 'x'\"}}",
                                 rid);
                        send_json(c, out, -1);
                } else if (strcmp(op, "create") == 0) {
                        if (refuse_create)
                                snprintf(out, sizeof out,
                                         "{\"v\":1,\"id\":%lld,\"ok\":false,\"error\":{\"errno\":12,\"code\":"
                                         "\"ENOMEM\",\"message\":\"no memory for you\"}}",
                                         rid);
                        else
                                snprintf(out, sizeof out,
                                         "{\"v\":1,\"id\":%lld,\"ok\":true,\"sandbox\":{\"id\":\"fake1\"}}", rid);
                        created = !refuse_create;
                        ephemeral = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "ephemeral"));
                        send_json(c, out, -1);
                } else if (strcmp(op, "exec") == 0) {
                        int s[2];
                        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) < 0)
                                _exit(16);
                        snprintf(out, sizeof out, "{\"v\":1,\"id\":%lld,\"ok\":true,\"proc\":1,\"pid\":2}", rid);
                        send_json(c, out, s[1]);
                        close(s[1]);
                        fake_init(s[0]);
                        close(s[0]);
                } else if (strcmp(op, "destroy") == 0) {
                        destroyed = true;
                        snprintf(out, sizeof out, "{\"v\":1,\"id\":%lld,\"ok\":true,\"destroyed\":true}", rid);
                        send_json(c, out, -1);
                } else
                        _exit(17);
                cJSON_Delete(req);
        }
}

struct fake {
        char dir[64];
        char path[128];
        pid_t pid;
};

static int fake_start(struct fake *f, bool refuse_create) {
        snprintf(f->dir, sizeof f->dir, "/tmp/ns-test-client-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof f->path, "%s/sock", f->dir);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, f->path);
        int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (l < 0 || bind(l, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(l, 4) < 0)
                return -1;
        f->pid = fork();
        if (f->pid == 0) {
                fake_daemon(l, refuse_create);
                _exit(0);
        }
        close(l);
        return f->pid < 0 ? -1 : 0;
}

static int fake_finish(struct fake *f) {
        int st = -1;
        waitpid(f->pid, &st, 0);
        unlink(f->path);
        rmdir(f->dir);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- Tests ------------------------------------------------------------------------------------------ */

static void test_call(void) {
        struct fake f;
        ns_error err = {0};
        ns_client *c = NULL;
        if (fake_start(&f, false) < 0 || ns_client_connect(f.path, &c, &err) < 0) {
                ok(0, "fake daemon: %s", err.msg);
                return;
        }
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "op", "ping");
        cJSON_AddTrueToObject(req, "x");
        cJSON *reply = NULL;
        int fds[2] = {-1, -1};
        size_t nfds = 2;
        int r = ns_client_call(c, req, NULL, 0, &reply, fds, &nfds, &err);
        ok(r == 0 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "pong")) &&
                   !cJSON_HasObjectItem(reply, "stale"),
           "call returns the reply with the matching id (%s)", err.msg);
        ok(nfds == 1 && fds[0] >= 0 && (fcntl(fds[0], F_GETFD) & FD_CLOEXEC), "one fd received, close-on-exec");
        if (nfds == 1)
                close(fds[0]);
        ok(!cJSON_HasObjectItem(req, "v") && !cJSON_HasObjectItem(req, "id"), "the caller's request is unchanged");
        cJSON_Delete(reply);

        cJSON *notice = NULL;
        r = ns_client_next_notice(c, &notice, &err);
        ok(r == 1 && strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(notice, "notice")), "exit") == 0,
           "the notice that came during the call is queued");
        cJSON_Delete(notice);
        ok(ns_client_next_notice(c, &notice, &err) == 0 && !notice, "no more notices");

        /* Without room for fds, the fd that comes is refused. */
        r = ns_client_call(c, req, NULL, 0, NULL, NULL, NULL, &err);
        ok(r == -EPROTO, "unexpected fd is EPROTO");
        cJSON_Delete(req);
        while (ns_client_next_notice(c, &notice, &err) == 1)
                cJSON_Delete(notice);

        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "op", "fail");
        r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, &err);
        ok(r == -ENOENT && err.code == ENOENT && strcmp(err.msg, "no sandbox 'x'") == 0 && !reply,
           "ok:false becomes the daemon's errno and message");
        cJSON_AddNumberToObject(req, "id", 3);
        ok(ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, &err) == -EINVAL, "a request with its own id is refused");
        cJSON_Delete(req);

        ns_client_free(c);
        ok(fake_finish(&f) == 0, "fake daemon saw well-formed requests");

        ok(ns_client_connect("/nonexistent/sock", &c, &err) == -ENOENT && strstr(err.msg, "/nonexistent/sock"),
           "connect to a missing socket: %s", err.msg);
}

static void test_frames(void) {
        int s[2];
        ns_error err = {0};
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) < 0) {
                ok(0, "socketpair");
                return;
        }
        char buf[64];
        struct ns_frame_hdr h;
        size_t len;
        ok(ns_stream_send(s[0], NS_FRAME_OUTPUT, 2, 1ULL << 40, 77, "hello", 5, &err) == 0, "send a frame");
        int r = ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err);
        ok(r == 1 && h.type == NS_FRAME_OUTPUT && h.stream == 2 && h.offset == 1ULL << 40 && h.value == 77 &&
                   len == 5 && memcmp(buf, "hello", 5) == 0,
           "read it back");
        ok(ns_stream_send(s[0], NS_FRAME_ACK, 0, 5, 0, NULL, 0, &err) == 0 &&
                   ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err) == 1 && h.type == NS_FRAME_ACK && len == 0,
           "header-only frame");
        ok(ns_stream_send(s[0], NS_FRAME_OUTPUT, 1, 0, 0, buf, NS_FRAME_MAX_PAYLOAD + 1, &err) == -EMSGSIZE,
           "oversized payload refused");
        ns_stream_send(s[0], NS_FRAME_OUTPUT, 1, 0, 0, "0123456789", 10, &err);
        ok(ns_stream_read(s[1], &h, buf, 4, &len, &err) == -EMSGSIZE, "frame larger than the buffer");
        if (send(s[0], "abc", 3, 0) == 3)
                ok(ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err) == -EPROTO, "runt frame");
        struct ns_frame_exit e = {.code = -1, .signal = 9, .flags = NS_EXIT_OOM}, d;
        ns_stream_send(s[0], NS_FRAME_EXIT, 0, 10, 0, &e, sizeof e, &err);
        ok(ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err) == 1 && h.type == NS_FRAME_EXIT &&
                   ns_frame_exit_decode(buf, len, &d, &err) == 0 && d.code == -1 && d.signal == 9 &&
                   d.flags == NS_EXIT_OOM,
           "EXIT frame decodes");
        ok(ns_frame_exit_decode(buf, 3, &d, &err) == -EPROTO, "short EXIT payload");
        fcntl(s[1], F_SETFL, O_NONBLOCK);
        ok(ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err) == -EAGAIN, "nothing waiting: EAGAIN");
        close(s[0]);
        ok(ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err) == 0, "peer closed: 0");
        close(s[1]);

        /* init closes its end with our ACK unread: the kernel reports ECONNRESET ahead of the
         * frames still queued for us; they must be read all the same. */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) < 0)
                return;
        ns_stream_send(s[1], NS_FRAME_ACK, 0, 1, 0, NULL, 0, &err);
        ns_stream_send(s[0], NS_FRAME_OUTPUT, 1, 0, 0, "x", 1, &err);
        ns_stream_send(s[0], NS_FRAME_EXIT, 0, 1, 0, &e, sizeof e, &err);
        close(s[0]);
        r = ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err);
        int r2 = ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err);
        ok(r == 1 && r2 == 1 && h.type == NS_FRAME_EXIT && ns_stream_read(s[1], &h, buf, sizeof buf, &len, &err) == 0,
           "frames queued before a reset are still read (%d %d %s)", r, r2, err.msg);
        close(s[1]);
}

static char *slurp(const char *path) {
        static char buf[4096];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0)
                close(fd);
        buf[n > 0 ? n : 0] = '\0';
        return buf;
}

/* Run the CLI with stdin from `input`; returns its exit status, stdout/stderr in files. */
static int run_cli(const char *cli, const struct fake *f, const char *input, char **argv_tail) {
        char in[160], out[160], errp[160];
        snprintf(in, sizeof in, "%s/in", f->dir);
        snprintf(out, sizeof out, "%s/out", f->dir);
        snprintf(errp, sizeof errp, "%s/err", f->dir);
        FILE *fi = fopen(in, "w");
        if (!fi)
                return -1;
        fputs(input, fi);
        fclose(fi);
        pid_t pid = fork();
        if (pid == 0) {
                int i = open(in, O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600),
                    e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
                        _exit(99);
                char *argv[16] = {(char *) cli, "--socket", (char *) f->path};
                int k = 3;
                for (char **t = argv_tail; *t && k < 15; t++)
                        argv[k++] = *t;
                argv[k] = NULL;
                execv(cli, argv);
                _exit(98);
        }
        int st;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
        char self[PATH_MAX], cli[PATH_MAX + 32];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
                return;
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        snprintf(cli, sizeof cli, "%s/nightshift-sandbox", self);
        if (access(cli, X_OK) < 0) {
                printf("# %s not built; skipping the CLI tests\n", cli);
                return;
        }
        char path[200];
        struct fake f;
        char *run[] = {"run", "--memory", "64M", "--", "cat", NULL};
        if (fake_start(&f, false) < 0)
                return;
        int st = run_cli(cli, &f, "hello\n", run);
        snprintf(path, sizeof path, "%s/err", f.dir);
        ok(st == 3, "run exits with the command's code (got %d)", st);
        if (st != 3)
                printf("# stderr: %s\n", slurp(path));
        snprintf(path, sizeof path, "%s/out", f.dir);
        ok(strcmp(slurp(path), "hello\n") == 0, "stdin went in, stdout came out");
        snprintf(path, sizeof path, "%s/err", f.dir);
        ok(strcmp(slurp(path), "bye\n") == 0, "stderr came out on stderr");
        unlink(path);
        snprintf(path, sizeof path, "%s/out", f.dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/in", f.dir);
        unlink(path);
        ok(fake_finish(&f) == 0, "run's sandbox was destroyed (ephemeral: by the close)");

        if (fake_start(&f, true) < 0)
                return;
        st = run_cli(cli, &f, "", run);
        snprintf(path, sizeof path, "%s/err", f.dir);
        bool refused = st == 125 && strcmp(slurp(path), "nightshift-sandbox: create: no memory for you\n") == 0;
        ok(refused, "a refused create: exit 125 and the daemon's message (got %d)", st);
        if (!refused)
                printf("# stderr: %s\n", slurp(path));
        unlink(path);
        snprintf(path, sizeof path, "%s/out", f.dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/in", f.dir);
        unlink(path);
        ok(fake_finish(&f) == 0, "fake daemon done");
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        test_call();
        test_frames();
        test_cli();
        return tap_done();
}
