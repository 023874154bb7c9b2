/* The egress proxy (supervisor/egress.c) on a real event loop, driven by real curl through it to a
 * real HTTP server on loopback: allow-list checks, forward and CONNECT, 403 for denied names, the
 * refusal of internal addresses from DNS, and the per-connection records; an IP literal refused by
 * the name-only allow-list, a head that comes in two pieces, an 8 MiB body both ways of relaying
 * (forward and CONNECT, through the spliced bulk path), and an origin that never answers the
 * connect, which must not hold up anyone else's requests.  The proxy is given a proxy process to
 * hand bulk tunnels to that cannot take them (/bin/true): the 8 MiB transfers are then relayed
 * here to their end (a hand-over that keeps failing must neither stall nor spin them).  Then a real
 * proxy process: a download's tunnel is handed to it, its session's proxy is freed mid-transfer,
 * the record says so, and the process resets the tunnel. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "supervisor/egress.h"
#include "supervisor/proxyproc.h"
#include "tap.h"

#define MAX_RECS 32
static sv_egress_record recs[MAX_RECS];
static char rec_hosts[MAX_RECS][256];
static char rec_reasons[MAX_RECS][128];
static int n_recs;

static void on_report(void *data, const sv_egress_record *r) {
        if (n_recs >= MAX_RECS)
                return;
        recs[n_recs] = *r;
        snprintf(rec_hosts[n_recs], sizeof rec_hosts[0], "%s", r->host);
        recs[n_recs].host = rec_hosts[n_recs];
        snprintf(rec_reasons[n_recs], sizeof rec_reasons[0], "%s", r->reason ? r->reason : "");
        recs[n_recs].reason = r->reason ? rec_reasons[n_recs] : NULL;
        n_recs++;
}

/* The late report (sv_egress_proxy_set_late_report): a record with whose it was. */
static char late_key[64];
static void on_late(void *data, const char *key, const sv_egress_record *r) {
        snprintf(late_key, sizeof late_key, "%s", key);
        on_report(data, r);
}

struct client {
        int proxy_port, origin_port, stall_port;
        int quit_fd;
        const char *dir;
        char out[16][4096];
        double stalled_fetch_s;
};

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void run(char *out, size_t cap, const char *cmd) {
        FILE *f = popen(cmd, "r");
        size_t n = f ? fread(out, 1, cap - 1, f) : 0;
        out[n] = '\0';
        if (f)
                pclose(f);
}

static void *client_main(void *arg) {
        struct client *c = arg;
        char cmd[512];
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -x http://127.0.0.1:%d http://allowed.test:%d/hello.txt", c->proxy_port,
                 c->origin_port);
        run(c->out[0], sizeof c->out[0], cmd);
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -o /dev/null -w '%%{http_code}' -x http://127.0.0.1:%d http://denied.test:%d/",
                 c->proxy_port, c->origin_port);
        run(c->out[1], sizeof c->out[1], cmd);
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -p -x http://127.0.0.1:%d http://allowed.test:%d/hello.txt", c->proxy_port,
                 c->origin_port);
        run(c->out[2], sizeof c->out[2], cmd);
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -o /dev/null -w '%%{http_code}' -p -x http://127.0.0.1:%d http://denied.test:%d/",
                 c->proxy_port, c->origin_port);
        run(c->out[3], sizeof c->out[3], cmd);
        /* "localhost" is allowed by name, but DNS gives a loopback address: refused. */
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -o /dev/null -w '%%{http_code}' -x http://127.0.0.1:%d http://localhost:%d/",
                 c->proxy_port, c->origin_port);
        run(c->out[4], sizeof c->out[4], cmd);
        snprintf(cmd, sizeof cmd, "printf 'GARBAGE\\r\\n\\r\\n' | curl -s -m 5 telnet://127.0.0.1:%d 2>/dev/null | head -1",
                 c->proxy_port);
        run(c->out[5], sizeof c->out[5], cmd);
        /* a wildcard entry limited to the origin's port */
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -x http://127.0.0.1:%d http://api.wild.test:%d/hello.txt", c->proxy_port,
                 c->origin_port);
        run(c->out[6], sizeof c->out[6], cmd);
        /* An IP literal: the allow-list holds names only, so it is refused, not resolved. */
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -o /dev/null -w '%%{http_code}' -x http://127.0.0.1:%d http://127.0.0.1:%d/hello.txt",
                 c->proxy_port, c->origin_port);
        run(c->out[7], sizeof c->out[7], cmd);
        /* A head in two pieces, 300 ms apart: the proxy waits for the rest. */
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'import socket,time; s=socket.create_connection((\"127.0.0.1\",%d)); "
                 "s.sendall(b\"GET http://split.test:%d/hello.txt HTTP/1.1\\r\\nHost: split.test\\r\\n\"); time.sleep(0.3); "
                 "s.sendall(b\"Accept: */*\\r\\n\\r\\n\"); d=b\"\"\n"
                 "while True:\n k=s.recv(65536)\n if not k: break\n d+=k\n"
                 "print(d.split(b\"\\r\\n\")[0].decode(), d.endswith(b\"hello through the proxy\\n\"))'",
                 c->proxy_port, c->origin_port);
        run(c->out[8], sizeof c->out[8], cmd);
        /* 8 MiB, forward and CONNECT: sizes as sent. */
        snprintf(cmd, sizeof cmd, "curl -s -m 20 -o /dev/null -w '%%{http_code} %%{size_download}' -x http://127.0.0.1:%d http://big.test:%d/big.bin",
                 c->proxy_port, c->origin_port);
        run(c->out[9], sizeof c->out[9], cmd);
        snprintf(cmd, sizeof cmd, "curl -s -m 20 -p -o /dev/null -w '%%{http_code} %%{size_download}' -x http://127.0.0.1:%d http://big.test:%d/big.bin",
                 c->proxy_port, c->origin_port);
        run(c->out[10], sizeof c->out[10], cmd);
        /* An origin whose listen queue is full never answers the SYN: while that connect hangs,
         * another request through the same proxy must go through at once. */
        snprintf(cmd, sizeof cmd, "curl -s -m 3 -o /dev/null -w '%%{http_code}' -x http://127.0.0.1:%d http://stall.test:%d/ > %s/stall.out 2>&1 &",
                 c->proxy_port, c->stall_port, c->dir);
        (void) !system(cmd);
        usleep(300 * 1000);
        double t0 = now_s();
        snprintf(cmd, sizeof cmd, "curl -s -m 5 -x http://127.0.0.1:%d http://split.test:%d/hello.txt", c->proxy_port,
                 c->origin_port);
        run(c->out[11], sizeof c->out[11], cmd);
        c->stalled_fetch_s = now_s() - t0;
        snprintf(cmd, sizeof cmd, "for i in $(seq 60); do [ -s %s/stall.out ] && break; sleep 0.1; done; cat %s/stall.out", c->dir, c->dir);
        run(c->out[12], sizeof c->out[12], cmd);
        (void) !write(c->quit_fd, "q", 1);
        return NULL;
}

/* Read from `fd` into *got while running the loop's ready watchers, until `want` bytes came, the
 * end, or `secs` passed.  Returns 1 at EOF, 2 at a reset, 0 otherwise. */
static int read_driving(ns_loop *loop, int fd, size_t want, double secs, size_t *got) {
        static char buf[65536];
        for (double t0 = now_s(); *got < want && now_s() - t0 < secs;) {
                struct pollfd pf[2] = { { ns_loop_fd(loop), POLLIN, 0 }, { fd, POLLIN, 0 } };
                (void) poll(pf, 2, 100);
                ns_loop_dispatch(loop);
                ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (k > 0)
                        *got += (size_t) k;
                else if (k == 0)
                        return 1;
                else if (errno == ECONNRESET)
                        return 2;
        }
        return 0;
}

/* The sockets among a process's descriptors (dir: /proc/PID/fd). */
static int count_sockets(const char *dir) {
        int n = 0;
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));) {
                char p[512], t[64];
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                ssize_t l = readlink(p, t, sizeof t - 1);
                n += l > 7 && !strncmp(t, "socket:", 7);
        }
        if (d)
                closedir(d);
        return n;
}

static void on_quit(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ns_loop_quit(loop);
}

static int free_port(void) {
        FILE *f = popen("/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
                        "print(s.getsockname()[1])'",
                        "r");
        int p = 0;
        if (!f || fscanf(f, "%d", &p) != 1)
                p = 0;
        if (f)
                pclose(f);
        return p;
}

int main(void) {
        if (access("/usr/bin/curl", X_OK) != 0 || access("/usr/bin/python3", X_OK) != 0) {
                printf("1..0 # SKIP needs curl and python3\n");
                return 77;
        }
        signal(SIGPIPE, SIG_IGN);
        ns_error err = { 0 };
        /* allow-list entries */
        static const char *const good[] = { "registry.npmjs.org", "*.github.com:443", "localhost", "a-b.example:8080",
                                            "X.ORG" };
        static const char *const bad[] = { "", "foo bar", "1.2.3.4", "a..b", "-a.com", "a.com:0", "a.com:70000",
                                           "*.", "http://x.com", "a.com:", "*.*.com", "a_b.com", "10.0.0.1:80" };
        for (size_t i = 0; i < sizeof good / sizeof *good; i++)
                ok(sv_egress_entry_check(good[i], &err) == 0, "entry '%s' is accepted", good[i]);
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                ok(sv_egress_entry_check(bad[i], &err) == -EINVAL && strstr(err.msg, "egress entry"),
                   "entry '%s' is refused (%s)", bad[i], err.msg);

        char dir[] = "/tmp/ns-egress.XXXXXX";
        if (!mkdtemp(dir))
                return 1;
        char path[256];
        snprintf(path, sizeof path, "%s/hello.txt", dir);
        FILE *f = fopen(path, "w");
        fputs("hello through the proxy\n", f);
        fclose(f);
        snprintf(path, sizeof path, "%s/hosts", dir);
        f = fopen(path, "w");
        fputs("# test map\nallowed.test 127.0.0.1\ndenied.test 127.0.0.1\napi.wild.test 127.0.0.1\n"
              "split.test 127.0.0.1\nbig.test 127.0.0.1\nstall.test 127.0.0.1\n",
              f);
        fclose(f);
        snprintf(path, sizeof path, "%s/big.bin", dir);
        f = fopen(path, "w");
        static char chunk[65536];
        for (size_t i = 0; i < sizeof chunk; i++)
                chunk[i] = (char) ('a' + i % 26);
        for (int i = 0; i < 128; i++)
                fwrite(chunk, 1, sizeof chunk, f);
        fclose(f);
        /* 64 MiB (sparse): more than the buffers between a relay and a client that stopped reading */
        snprintf(path, sizeof path, "%s/huge.bin", dir);
        if (!(f = fopen(path, "w")) || fclose(f) != 0 || truncate(path, 64L << 20) < 0)
                return 1;
        snprintf(path, sizeof path, "%s/hosts", dir);
        sv_egress_hosts *hosts = NULL;
        ok(sv_egress_hosts_load(path, &hosts, &err) == 0, "the host map loads");

        int oport = free_port();
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", oport);
        pid_t srv = fork();
        if (srv == 0) {
                int dn = open("/dev/null", O_WRONLY);
                dup2(dn, 1);
                dup2(dn, 2);
                execl("/usr/bin/python3", "python3", "-m", "http.server", portstr, "--bind", "127.0.0.1", "--directory", dir,
                      (char *) NULL);
                _exit(127);
        }
        char wait_cmd[256];
        snprintf(wait_cmd, sizeof wait_cmd, "for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:%d/ && exit 0; sleep 0.05; done; exit 1",
                 oport);
        ok(system(wait_cmd) == 0, "the origin server is up");

        ns_loop *loop = NULL;
        ns_loop_new(&loop, &err);
        char wild[64];
        snprintf(wild, sizeof wild, "*.wild.test:%d", oport);
        const char *allow[] = { "allowed.test", "localhost", wild, "split.test", "big.test", "stall.test" };
        sv_egress_proxy *p = NULL;
        int pport = 0;
        int r = sv_egress_proxy_new(loop, allow, 6, hosts, on_report, NULL, NULL, &p, &pport, &err);
        ok(r == 0 && pport > 0, "the proxy listens on 127.0.0.1:%d (%s)", pport, r ? err.msg : "ok");
        ok(sv_egress_allowed(p, "ALLOWED.test", 1), "exact names match case-insensitively, any port");
        ok(sv_egress_allowed(p, "a.b.wild.test", (uint16_t) oport) && !sv_egress_allowed(p, "a.wild.test", 443),
           "a suffix entry matches names beneath it, on its port only");
        ok(!sv_egress_allowed(p, "wild.test", (uint16_t) oport), "a suffix entry does not match the bare suffix");
        ok(!sv_egress_allowed(p, "xallowed.test", 80) && !sv_egress_allowed(p, "127.0.0.1", 80), "no partial or IP matches");
        /* A proxy process that cannot take tunnels (it is /bin/true: gone at once, as one being
         * restarted is): every bulk transfer below must then be relayed here, to its end, without
         * the loop spinning on a hand-over that keeps failing. */
        sv_proxyproc *relay = NULL;
        sv_proxyproc_cfg rcfg = { .exe = "/bin/true", .listen_fd = -1, .log_level = 3 };
        ok(sv_proxyproc_new(loop, &rcfg, NULL, NULL, &relay, &err) == 0, "a proxy process that exits at once");
        sv_egress_proxy_set_relay(p, &relay);
        const char *bad_allow[] = { "ok.com", "not a name" };
        sv_egress_proxy *p2 = NULL;
        int port2;
        ok(sv_egress_proxy_new(loop, bad_allow, 2, hosts, on_report, NULL, NULL, &p2, &port2, &err) == -EINVAL && !p2,
           "a proxy with a bad entry is refused: %s", err.msg);

        int qp[2];
        if (pipe2(qp, O_CLOEXEC) < 0)
                return 1;
        ns_watch *qw = ns_loop_add(loop, qp[0], EPOLLIN, on_quit, NULL, &err);
        /* the stalled origin: a listen queue of one, filled by a connection never accepted */
        int stall = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in ssa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t ssl = sizeof ssa;
        ok(stall >= 0 && bind(stall, (struct sockaddr *) &ssa, sizeof ssa) == 0 && listen(stall, 0) == 0 &&
                   getsockname(stall, (struct sockaddr *) &ssa, &ssl) == 0 && connect(filler, (struct sockaddr *) &ssa, sizeof ssa) == 0,
           "a stalled origin on port %d", ntohs(ssa.sin_port));
        struct client c = { .proxy_port = pport, .origin_port = oport, .stall_port = ntohs(ssa.sin_port), .quit_fd = qp[1], .dir = dir };
        pthread_t t;
        pthread_create(&t, NULL, client_main, &c);
        ns_loop_run(loop, NULL, NULL, NULL);
        pthread_join(t, NULL);

        ok(!strcmp(c.out[0], "hello through the proxy\n"), "an allowed name is fetched through the proxy (got '%s')", c.out[0]);
        ok(!strcmp(c.out[1], "403"), "a denied name gets 403 (got '%s')", c.out[1]);
        ok(!strcmp(c.out[2], "hello through the proxy\n"), "CONNECT to an allowed name tunnels (got '%s')", c.out[2]);
        ok(strstr(c.out[3], "403") || !strcmp(c.out[3], "000"), "CONNECT to a denied name is refused (got '%s')", c.out[3]);
        ok(!strcmp(c.out[4], "403"), "an allowed name that DNS resolves to loopback is refused (got '%s')", c.out[4]);
        ok(!strncmp(c.out[5], "HTTP/1.1 400", 12), "a malformed head gets 400 (got '%.40s')", c.out[5]);
        ok(!strcmp(c.out[6], "hello through the proxy\n"), "a wildcard entry on its port is fetched (got '%s')", c.out[6]);
        ok(!strcmp(c.out[7], "403"), "an IP literal is refused with 403 (got '%s')", c.out[7]);
        ok(!strcmp(c.out[8], "HTTP/1.0 200 OK True\n"), "a head sent in two pieces is answered in full (got '%s')", c.out[8]);
        ok(!strcmp(c.out[9], "200 8388608"), "8 MiB come through the forward proxy whole (got '%s')", c.out[9]);
        ok(!strcmp(c.out[10], "200 8388608"), "8 MiB come through a CONNECT tunnel whole (got '%s')", c.out[10]);
        ok(!strcmp(c.out[11], "hello through the proxy\n") && c.stalled_fetch_s < 1.5,
           "while a connect hangs, another request goes through in %.3f s (got '%s')", c.stalled_fetch_s, c.out[11]);
        ok(!strcmp(c.out[12], "000"), "the client of the stalled origin gave up on its own (got '%s')", c.out[12]);

        int before_free = n_recs;
        bool stall_open = true;
        for (int i = 0; i < n_recs; i++)
                if (!strcmp(recs[i].host, "stall.test"))
                        stall_open = false;
        sv_egress_proxy_free(p);
        ns_loop_remove(loop, qw);
        int allowed_big = 0, denied = 0, literal = 0, big = 0, stalled = 0;
        for (int i = 0; i < n_recs; i++) {
                if (!recs[i].allowed && !strcmp(recs[i].host, "127.0.0.1") && recs[i].port == oport)
                        literal++;
                if (recs[i].allowed && !strcmp(recs[i].host, "big.test") && recs[i].bytes_down >= 8388608 && recs[i].bytes_up > 0)
                        big++;
                if (i >= before_free && recs[i].allowed && !strcmp(recs[i].host, "stall.test") && recs[i].bytes_down == 0)
                        stalled++;
                if (recs[i].allowed && !strcmp(recs[i].host, "allowed.test") && recs[i].port == oport && recs[i].bytes_down > 24 &&
                    recs[i].bytes_up > 0)
                        allowed_big++;
                if (!recs[i].allowed && !strcmp(recs[i].host, "denied.test"))
                        denied++;
        }
        ok(allowed_big == 2, "both allowed fetches are recorded with their bytes each way (%d)", allowed_big);
        ok(denied == 2, "both denied attempts are recorded as denied (%d)", denied);
        ok(literal == 1, "the IP literal is recorded as denied (%d)", literal);
        ok(big == 2, "both 8 MiB transfers are recorded with their bytes (%d)", big);
        ok(stall_open && stalled == 1, "the hanging connect stayed open until the proxy closed, then was recorded (%d)", stalled);
        close(filler);
        close(stall);

        /* A tunnel handed to a real proxy process (the nightshift binary built beside this test),
         * then its session's proxy freed mid-transfer: the process resets the tunnel
         * (TUNNEL_DROP) and says what it moved (TUNNEL_END); the record, reported then through the
         * late report, counts the bytes before the hand-over and after it. */
        char exe[4096];
        ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 16);
        char *slash = el > 0 ? (exe[el] = '\0', strrchr(exe, '/')) : NULL;
        if (slash)
                strcpy(slash + 1, "nightshift");
        if (!slash || access(exe, X_OK) != 0) {
                printf("ok %d - # SKIP no nightshift binary beside the test\n", ++tap_num);
        } else {
                sv_proxyproc *real = NULL;
                sv_proxyproc_cfg pcfg = { .exe = exe, .listen_fd = -1, .log_level = 3 };
                const char *big_only[] = { "big.test" };
                sv_egress_proxy *p3 = NULL;
                int port3 = 0;
                ok(sv_proxyproc_new(loop, &pcfg, NULL, NULL, &real, &err) == 0 &&
                           sv_egress_proxy_new(loop, big_only, 1, hosts, on_report, NULL, NULL, &p3, &port3, &err) == 0,
                   "a proxy process and a second proxy handing tunnels to it");
                sv_egress_proxy_set_relay(p3, &real);
                char long_key[80];
                memset(long_key, 'k', sizeof long_key - 1);
                long_key[sizeof long_key - 1] = '\0';
                ok(sv_egress_proxy_set_late_report(p3, on_late, NULL, long_key) == -EINVAL &&
                           sv_egress_proxy_set_late_report(p3, on_late, NULL, "s-late") == 0,
                   "a late report with a key of %zu characters is refused, one with 6 taken", strlen(long_key));
                int cs = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in psa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port3),
                                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                char req[256];
                int rl = snprintf(req, sizeof req, "GET http://big.test:%d/huge.bin HTTP/1.1\r\nHost: big.test\r\n\r\n", oport);
                bool sent = connect(cs, (struct sockaddr *) &psa, sizeof psa) == 0 && send(cs, req, (size_t) rl, 0) == rl;
                /* Read 1 MiB of the 64, driving the loop meanwhile; then stop reading. */
                size_t got = 0;
                if (sent)
                        (void) read_driving(loop, cs, 1u << 20, 10, &got);
                ok(got >= (1u << 20), "1 MiB of a download came through (%zu bytes)", got);
                /* The process holds its channel and, once handed over, the tunnel's two sockets. */
                char fdd[64];
                snprintf(fdd, sizeof fdd, "/proc/%d/fd", (int) sv_proxyproc_pid(real));
                int socks = 0;
                for (double t0 = now_s(); now_s() - t0 < 3; usleep(20000)) {
                        ns_loop_dispatch(loop);
                        socks = count_sockets(fdd);
                        if (socks >= 3)
                                break;
                }
                ok(socks >= 3, "the tunnel was handed to the proxy process (it holds %d sockets)", socks);
                int recs_before = n_recs;
                size_t got_before = got;
                sv_egress_proxy_free(p3);
                ok(n_recs == recs_before, "freeing the session's proxy reports nothing yet: the process has the bytes");
                /* The client drains what was already on its way, then hears the reset. */
                int end = read_driving(loop, cs, SIZE_MAX, 5, &got);
                for (double t0 = now_s(); now_s() - t0 < 3 && n_recs == recs_before; usleep(10000))
                        ns_loop_dispatch(loop);
                const sv_egress_record *last = n_recs == recs_before + 1 ? &recs[n_recs - 1] : NULL;
                ok(last && last->allowed && last->reason && !strcmp(last->reason, "closed with the session's proxy") &&
                           !strcmp(late_key, "s-late"),
                   "then the tunnel is reported, late, for its key: '%s', '%s'", last && last->reason ? last->reason : "-",
                   late_key);
                /* What the client read came through the process, after the hand-over: counted. */
                ok(last && last->bytes_down >= got && got > got_before && last->bytes_down < (64u << 20) + 4096,
                   "with the bytes the process moved: %llu down, the client had read %zu before the cut and %zu in all",
                   last ? (unsigned long long) last->bytes_down : 0ULL, got_before, got);
                ok(end == 2 && got < (64u << 20), "the process reset the dropped tunnel: the client got %zu of 64 MiB, then %s",
                   got, end == 2 ? "a reset" : end == 1 ? "an EOF" : "nothing");
                for (double t0 = now_s(); now_s() - t0 < 3 && (socks = count_sockets(fdd)) > 1; usleep(20000))
                        ns_loop_dispatch(loop);
                ok(socks == 1, "and holds only its channel again (%d sockets)", socks);
                close(cs);
                sv_proxyproc_free(real);
        }

        sv_proxyproc_free(relay);
        if (srv > 0) {
                kill(srv, SIGTERM);
                waitpid(srv, NULL, 0);
        }
        sv_egress_hosts_free(hosts);
        ns_loop_free(loop);
        char rm[300];
        snprintf(rm, sizeof rm, "rm -rf %s", dir);
        (void) !system(rm);
        return tap_done();
}
