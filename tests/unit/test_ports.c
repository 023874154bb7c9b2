/* sandboxd/ports.c: `connect` forwards into a real network namespace (root).
 *
 *   holder  — a child that unshares a network namespace (the "sandbox"), brings lo up, takes
 *             127.0.0.1:8081 for itself like an agent would, and lives until the test ends;
 *   echo    — a host echo server on 127.0.0.1:<ephemeral> that, once the client half-closes,
 *             sends "EOF-SEEN\n" after the echo and closes (so half-close is seen both ways);
 *   client  — a child that enters the namespace and exercises the forwards, reporting results
 *             over a pipe; the test's process drives ports.c with ns_loop_run until it exits.
 *
 * The namespace vanishes with the holder; every child is reaped; no fd is left. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/loop.h"
#include "sandboxd/ports.h"
#include "sandboxd/relayproc.h"
#include "fds.h"
#include "tap.h"

#define SB "t1"
#define AGENT_PORT 8081          /* taken inside by the "agent" before the forward */
#define ALIAS_PORT 80            /* a second forward to the same host service */
#define BULK_BYTES (10u << 20)
#define CONCURRENT 100

/* A connector to host 127.0.0.1:host_port (the sandbox's owner does not matter for TCP). */
static int connect_tcp(ports_ctx *p, const char *id, int netns, uint16_t port, uint16_t host_port, ns_error *err) {
        struct ns_connect c = { .port = port, .host_port = host_port };
        return ports_connect_add(p, id, netns, &c, 0, err);
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool write_all(int fd, const void *p, size_t n) {
        const char *c = p;
        while (n > 0) {
                ssize_t w = write(fd, c, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return false;
                c += w;
                n -= (size_t) w;
        }
        return true;
}

static int listen_loopback(uint16_t port, uint16_t *bound) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 512) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        if (bound)
                *bound = ntohs(sa.sin_port);
        return fd;
}

/* 0 or -errno */
static int connect_loopback(uint16_t port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        return fd;
}

/* Read exactly n bytes within timeout_ms (false on EOF, error or timeout). */
static bool read_exact(int fd, char *buf, size_t n, int timeout_ms) {
        int64_t end = now_ms() + timeout_ms;
        size_t have = 0;
        while (have < n) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int left = (int) (end - now_ms());
                if (left <= 0 || poll(&pfd, 1, left) <= 0)
                        return false;
                ssize_t r = read(fd, buf + have, n - have);
                if (r <= 0)
                        return false;
                have += (size_t) r;
        }
        return true;
}

/* ---- the namespace holder and the echo server ------------------------------------------- */

static int lo_up(void) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return -1;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        return ioctl(s, SIOCSIFFLAGS, &ifr);
}

/* Returns the holder's pid; *ready_fd gets its end of the life pipe (close it to end it). */
static pid_t start_holder(int *life_fd) {
        int ready[2], life[2];
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(life, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(ready[0]);
                close(life[1]);
                if (unshare(CLONE_NEWNET) < 0 || lo_up() < 0)
                        _exit(1);
                int agent = listen_loopback(AGENT_PORT, NULL);
                if (agent < 0 || write(ready[1], "k", 1) != 1)
                        _exit(1);
                char c;
                while (read(life[0], &c, 1) > 0) {
                }
                _exit(0);
        }
        close(ready[1]);
        close(life[0]);
        char c = 0;
        bool good = read(ready[0], &c, 1) == 1 && c == 'k';
        close(ready[0]);
        if (!good) {
                close(life[1]);
                waitpid(pid, NULL, 0);
                return -1;
        }
        *life_fd = life[1];
        return pid;
}

static void echo_conn(int c) {
        char buf[65536];
        for (;;) {
                ssize_t n = read(c, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        _exit(1);
                if (n == 0)
                        break;
                if (!write_all(c, buf, (size_t) n))
                        _exit(1);
        }
        /* Data after the client's FIN: only arrives if the half-close was relayed as one. */
        write_all(c, "EOF-SEEN\n", 9);
        close(c);
        _exit(0);
}

static pid_t start_echo(int lfd) {
        pid_t pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                signal(SIGCHLD, SIG_IGN); /* connection children reap themselves */
                for (;;) {
                        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        if (c < 0)
                                continue;
                        pid_t k = fork();
                        if (k == 0) {
                                prctl(PR_SET_PDEATHSIG, SIGKILL);
                                close(lfd);
                                echo_conn(c);
                        }
                        close(c);
                }
        }
        return pid;
}

/* ---- the client, inside the namespace --------------------------------------------------- */

static int res_fd;

static void report(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(bool cond, const char *fmt, ...) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(line, sizeof line, "%d ", cond ? 1 : 0);
        vsnprintf(line + n, sizeof line - (size_t) n - 1, fmt, ap);
        va_end(ap);
        strcat(line, "\n");
        write_all(res_fd, line, strlen(line));
}

static bool hello(uint16_t port, const char *msg) {
        _cleanup_close_ int fd = connect_loopback(port);
        if (fd < 0)
                return false;
        char buf[128] = { 0 };
        size_t n = strlen(msg);
        return write_all(fd, msg, n) && read_exact(fd, buf, n, 5000) && memcmp(buf, msg, n) == 0;
}

static unsigned char pattern(size_t i) {
        return (unsigned char) ((i * 131u + 7u) ^ (i >> 13));
}

/* 10 MB out and back at once, then a half-close: the echo must be complete and followed by
 * the trailer the server sends after our FIN, and then EOF. */
static char why[128];

static bool bulk(uint16_t port, size_t total) {
        _cleanup_close_ int fd = connect_loopback(port);
        if (fd < 0) {
                snprintf(why, sizeof why, "connect: %s", strerror(-fd));
                return false;
        }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        _cleanup_free_ unsigned char *out = malloc(total);
        if (!out)
                return false;
        for (size_t i = 0; i < total; i++)
                out[i] = pattern(i);
        size_t sent = 0, got = 0;
        char trailer[16] = { 0 };
        size_t tlen = 0;
        bool shut = false, eof = false;
        int64_t deadline = now_ms() + 60000;
        while (!eof) {
                if (sent == total && !shut) {
                        shutdown(fd, SHUT_WR);
                        shut = true;
                }
                struct pollfd pfd = { .fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT) };
                if (now_ms() > deadline || poll(&pfd, 1, 5000) <= 0) {
                        snprintf(why, sizeof why, "timeout: sent %zu got %zu", sent, got);
                        return false;
                }
                if ((pfd.revents & POLLOUT) && !shut) {
                        ssize_t n = write(fd, out + sent, total - sent > 262144 ? 262144 : total - sent);
                        if (n > 0)
                                sent += (size_t) n;
                        else if (errno != EAGAIN) {
                                snprintf(why, sizeof why, "write: %s (sent %zu got %zu)", strerror(errno), sent, got);
                                return false;
                        }
                }
                if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                        unsigned char buf[65536];
                        ssize_t n = read(fd, buf, sizeof buf);
                        if (n == 0) {
                                eof = true;
                        } else if (n < 0) {
                                if (errno != EAGAIN) {
                                        snprintf(why, sizeof why, "read: %s (sent %zu got %zu)", strerror(errno), sent, got);
                                        return false;
                                }
                        } else {
                                for (ssize_t k = 0; k < n; k++) {
                                        if (got < total) {
                                                if (buf[k] != out[got]) {
                                                        snprintf(why, sizeof why, "mismatch at %zu", got);
                                                        return false;
                                                }
                                                got++;
                                        } else if (tlen < sizeof trailer - 1) {
                                                trailer[tlen++] = (char) buf[k];
                                        } else {
                                                return false;
                                        }
                                }
                        }
                }
        }
        return got == total && strcmp(trailer, "EOF-SEEN\n") == 0;
}

/* n connections open at once, each echoing its own message. */
static bool concurrent(uint16_t port, int n) {
        int *fds = calloc((size_t) n, sizeof *fds);
        bool good = fds != NULL;
        for (int i = 0; good && i < n; i++)
                good = (fds[i] = connect_loopback(port)) >= 0;
        for (int i = 0; good && i < n; i++) {
                char msg[32];
                snprintf(msg, sizeof msg, "conn-%05d", i);
                good = write_all(fds[i], msg, strlen(msg));
        }
        for (int i = 0; good && i < n; i++) {
                char msg[32], buf[32] = { 0 };
                snprintf(msg, sizeof msg, "conn-%05d", i);
                good = read_exact(fds[i], buf, strlen(msg), 5000) && strcmp(buf, msg) == 0;
        }
        for (int i = 0; fds && i < n; i++)
                if (fds[i] > 0)
                        close(fds[i]);
        free(fds);
        return good;
}

/* PORTS_CONN_MAX live connections: one more waits unserved until one of them ends. */
static void bounded(uint16_t port) {
        int fds[PORTS_CONN_MAX];
        int opened = 0;
        bool good = true;
        for (; opened < PORTS_CONN_MAX && good; opened++) {
                fds[opened] = connect_loopback(port);
                char buf[2] = { 0 };
                good = fds[opened] >= 0 && write_all(fds[opened], "a", 1) && read_exact(fds[opened], buf, 1, 5000);
                if (fds[opened] < 0)
                        break;
        }
        report(good, "%d connections relayed at once (%d opened%s%s)", PORTS_CONN_MAX, opened, good ? "" : ", last: ",
               good ? "" : strerror(errno));
        int extra = connect_loopback(port);
        char buf[2] = { 0 };
        bool waited = extra >= 0 && write_all(extra, "b", 1) && !read_exact(extra, buf, 1, 700);
        report(waited, "connection %d waits while %d are live", PORTS_CONN_MAX + 1, PORTS_CONN_MAX);
        close(fds[0]);
        bool served = extra >= 0 && read_exact(extra, buf, 1, 5000) && buf[0] == 'b';
        report(served, "and is served once one ends");
        if (extra >= 0)
                close(extra);
        for (int i = 1; i < opened; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

static int run_client(int netns_fd, uint16_t port, uint16_t unconnected, int ctl_fd, int ack_fd) {
        if (setns(netns_fd, CLONE_NEWNET) < 0) {
                report(false, "setns into the sandbox: %s", strerror(errno));
                return 1;
        }
        report(hello(port, "hello"), "127.0.0.1:%u inside reaches the host echo server", (unsigned) port);
        report(hello(ALIAS_PORT, "alias"), "127.0.0.1:%u inside reaches it too", (unsigned) ALIAS_PORT);
        why[0] = '\0';
        bool bulk_ok = bulk(port, BULK_BYTES);
        report(bulk_ok, "10 MB both ways, half-close relayed in both directions%s%s", why[0] ? ": " : "", why);
        /* Odd sizes, so that EOF lands at every point of the relay's buffering. */
        bool odd_ok = true;
        for (size_t k = 0; k < 24 && odd_ok; k++)
                odd_ok = bulk(port, k * 65536 * 3 / 2 + k * 977 + 1);
        report(odd_ok, "24 transfers of odd sizes with half-close%s%s", why[0] ? ": " : "", why);
        int r = connect_loopback(unconnected);
        report(r == -ECONNREFUSED, "host port %u that was not connected is unreachable (%s)", (unsigned) unconnected,
               r < 0 ? strerror(-r) : "connected!");
        if (r >= 0)
                close(r);
        report(concurrent(port, CONCURRENT), "%d concurrent connections", CONCURRENT);
        bounded(port);

        /* A live connection, then ports_sandbox_remove in the daemon. */
        int live = connect_loopback(port);
        char buf[8] = { 0 };
        report(live >= 0 && write_all(live, "x", 1) && read_exact(live, buf, 1, 5000), "live connection before remove");
        char c = 'R';
        if (write(ctl_fd, &c, 1) != 1 || read(ack_fd, &c, 1) != 1 || c != 'r')
                report(false, "remove handshake");
        struct pollfd pfd = { .fd = live, .events = POLLIN };
        ssize_t n = poll(&pfd, 1, 3000) == 1 ? read(live, buf, sizeof buf) : 1;
        report(n == 0 || (n < 0 && errno == ECONNRESET), "live connection closed by remove");
        close(live);
        r = connect_loopback(port);
        report(r == -ECONNREFUSED, "listener closed by remove (%s)", r < 0 ? strerror(-r) : "connected!");
        if (r >= 0)
                close(r);
        return 0;
}

/* ---- the daemon side -------------------------------------------------------------------- */

struct drive {
        ports_ctx *p;
        int ctl_fd, ack_fd;
        ns_watch *w_ctl;
        bool removed;
};

static void on_client_exit(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ns_loop_remove(loop, w);
        ns_loop_quit(loop);
}

static void on_ctl(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        struct drive *d = data;
        char c;
        if (read(fd, &c, 1) != 1) {
                ns_loop_remove(loop, w);
                d->w_ctl = NULL;
                return;
        }
        if (c == 'R') {
                ports_sandbox_remove(d->p, SB);
                ports_sandbox_remove(d->p, SB); /* idempotent */
                d->removed = true;
                c = 'r';
                (void) !write(d->ack_fd, &c, 1);
        }
}

/* The relay process ports_new started: a child of this process named nsd-relay, or -1. */
static pid_t find_relay(void) {
        _cleanup_closedir_ DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t found = -1;
        while (d && (de = readdir(d))) {
                char path[300], buf[512];
                snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
                if (n <= 0)
                        continue;
                buf[n] = '\0';
                char *close_paren = strrchr(buf, ')');
                int ppid = 0;
                char state = 0;
                if (!strstr(buf, "(nsd-relay)") || !close_paren || sscanf(close_paren + 2, "%c %d", &state, &ppid) != 2 ||
                    ppid != getpid() || state == 'Z')
                        continue;
                found = atoi(de->d_name);
        }
        return found;
}

/* A line of /proc/PID/status ("Uid:" ...), the value after the tab, into out. */
static bool status_field(pid_t pid, const char *name, char *out, size_t cap) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == ':') {
                        snprintf(out, cap, "%s", line + strlen(name) + 2);
                        out[strcspn(out, "\n")] = '\0';
                        return true;
                }
        return false;
}

/* What the relay process is allowed (relayproc.h): nobody, no capability, no_new_privs, a seccomp
 * filter, nice RELAYPROC_NICE, not dumpable, nothing open but stdio, its channel and its loop. */
static void check_relay_confined(pid_t pid) {
        char probe[16] = "";
        /* it confines itself after the fork: give it a moment to get there */
        for (int i = 0; i < 200 && !(status_field(pid, "Seccomp", probe, sizeof probe) && strcmp(probe, "2") == 0); i++)
                usleep(10000);
        char uid[128] = "", gid[128] = "", capeff[64] = "", capprm[64] = "", nnp[16] = "", sc[16] = "";
        status_field(pid, "Uid", uid, sizeof uid);
        status_field(pid, "Gid", gid, sizeof gid);
        status_field(pid, "CapEff", capeff, sizeof capeff);
        status_field(pid, "CapPrm", capprm, sizeof capprm);
        status_field(pid, "NoNewPrivs", nnp, sizeof nnp);
        status_field(pid, "Seccomp", sc, sizeof sc);
        ok(strcmp(uid, "65534\t65534\t65534\t65534") == 0 && strcmp(gid, "65534\t65534\t65534\t65534") == 0,
           "relay process runs as nobody (Uid %s, Gid %s)", uid, gid);
        ok(strcmp(capeff, "0000000000000000") == 0 && strcmp(capprm, "0000000000000000") == 0,
           "relay process holds no capability (CapEff %s, CapPrm %s)", capeff, capprm);
        ok(strcmp(nnp, "1") == 0 && strcmp(sc, "2") == 0, "relay process: no_new_privs %s, seccomp mode %s", nnp, sc);
        char path[64], buf[512] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_close_ int sfd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = sfd >= 0 ? read(sfd, buf, sizeof buf - 1) : -1;
        buf[n > 0 ? n : 0] = '\0';
        char *rp = strrchr(buf, ')');
        int nice_v = -100;
        /* after ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
         * stime cutime cstime priority nice */
        if (rp)
                sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %d", &nice_v);
        ok(nice_v == RELAYPROC_NICE, "relay process runs at nice %d (%d)", nice_v, RELAYPROC_NICE);
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        ok(stat(path, &st) == 0 && st.st_uid == 0, "relay process is not dumpable (its /proc files are root's)");
        int highest = -1, count = 0;
        _cleanup_closedir_ DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (de->d_name[0] != '.') {
                        count++;
                        if (atoi(de->d_name) > highest)
                                highest = atoi(de->d_name);
                }
        ok(count > 0 && highest <= 4, "relay process holds only stdio, its channel and its loop (%d fds, highest %d)",
           count, highest);
}

int main(void) {
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 77;
        }
        signal(SIGPIPE, SIG_IGN);
        alarm(240);
        int fds_before = count_fds();

        int life_fd = -1;
        pid_t holder = start_holder(&life_fd);
        if (holder < 0) {
                printf("1..0 # SKIP cannot make a network namespace\n");
                return 77;
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int) holder);
        int netns = open(path, O_RDONLY | O_CLOEXEC);
        ok(netns >= 0, "sandbox network namespace opened");

        uint16_t port = 0, unconnected = 0;
        int echo_l = listen_loopback(0, &port);
        int other_l = listen_loopback(0, &unconnected);
        ok(echo_l >= 0 && other_l >= 0, "host echo server on 127.0.0.1:%u, another service on :%u", (unsigned) port,
           (unsigned) unconnected);
        pid_t echo = start_echo(echo_l);
        int echo_pidfd = (int) syscall(SYS_pidfd_open, echo, 0);

        /* The client is forked before any forward exists, so that it holds no copy of a listener
         * (a copy would keep the port open after ports_sandbox_remove). */
        int res[2], ctl[2], ack[2];
        if (pipe2(res, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0)
                return 1;
        fflush(stdout);
        pid_t client = fork();
        if (client == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                res_fd = res[1];
                char c;
                if (read(ack[0], &c, 1) != 1 || c != 'g')
                        _exit(1);
                _exit(run_client(netns, port, unconnected, ctl[1], ack[0]));
        }
        close(res[1]);
        close(ctl[1]);
        close(ack[0]);

        ns_loop *loop = NULL;
        ports_ctx *p = NULL;
        ns_error e = { 0 };
        ok(ns_loop_new(&loop, &e) == 0 && ports_new(loop, &p, &e) == 0, "ports_new");
        /* The relay names itself after fork: until then it is not found (slower under a sanitizer). */
        pid_t relay = -1;
        int polls = 0;
        for (; polls < 500 && (relay = find_relay()) <= 0; polls++)
                usleep(10000);
        ok(relay > 0, "a relay process runs (pid %d, named after %d polls of 10 ms)", (int) relay, polls);
        if (relay > 0)
                check_relay_confined(relay);
        /* A relay process that dies is replaced: every relayed byte below goes through the new one.
         * Only a pid that was found is signalled: kill(-1, ...) as root would end every process. */
        if (relay > 0)
                kill(relay, SIGKILL);
        pid_t relay2 = -1;
        for (int i = 0; i < 200 && ((relay2 = find_relay()) <= 0 || relay2 == relay); i++) {
                ns_loop_dispatch(loop);
                usleep(10000);
        }
        ok(relay2 > 0 && relay2 != relay, "a killed relay process is replaced (pid %d -> %d)", (int) relay,
           (int) relay2);

        int r = connect_tcp(p, SB, netns, port, port, &e);
        if (r < 0)
                printf("# %s\n", e.msg);
        ok(r == 0, "connect %u -> host %u", (unsigned) port, (unsigned) port);
        ok(connect_tcp(p, SB, netns, ALIAS_PORT, port, &e) == 0, "connect %u -> host %u", (unsigned) ALIAS_PORT,
           (unsigned) port);
        ok(connect_tcp(p, SB, netns, port, port, &e) == -EADDRINUSE, "the same port again: EADDRINUSE");
        ok(connect_tcp(p, SB, netns, AGENT_PORT, port, &e) == -EADDRINUSE,
           "a port an agent holds inside: EADDRINUSE (%s)", e.msg);
        int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        ok(connect_tcp(p, SB, self, 9999, port, &e) == -EINVAL, "the daemon's own namespace: EINVAL");
        close(self);
        int notns = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
        ok(connect_tcp(p, SB, notns, 9999, port, &e) == -EINVAL, "not a network namespace: EINVAL");
        close(notns);
        ok(connect_tcp(p, "Bad/Id", netns, 9999, port, &e) == -EINVAL, "bad sandbox id: EINVAL");
        ok(connect_tcp(p, SB, netns, 0, port, &e) == -EINVAL, "port 0: EINVAL");
        int probe = connect_loopback(ALIAS_PORT == port ? 1 : ALIAS_PORT);
        ok(probe < 0, "nothing listens on the host's own 127.0.0.1:%u", (unsigned) ALIAS_PORT);
        if (probe >= 0)
                close(probe);

        struct ns_connect list[4];
        size_t n = ports_sandbox_list(p, SB, list, 4);
        ok(n == 2 && list[0].port == port && list[0].host_port == port && list[1].port == ALIAS_PORT &&
                   list[1].host_port == port,
           "list: the two forwards in order");
        ok(ports_sandbox_list(p, SB, NULL, 0) == 2 && ports_sandbox_list(p, "other", list, 4) == 0, "list counts");

        char go = 'g';
        ok(write(ack[1], &go, 1) == 1, "client told to start");
        int client_pidfd = (int) syscall(SYS_pidfd_open, client, 0);
        struct drive d = { .p = p, .ctl_fd = ctl[0], .ack_fd = ack[1] };
        ns_watch *wc = ns_loop_add(loop, client_pidfd, EPOLLIN, on_client_exit, NULL, &e);
        d.w_ctl = ns_loop_add(loop, ctl[0], EPOLLIN, on_ctl, &d, &e);
        ok(wc && d.w_ctl, "driving the loop");
        ns_loop_run(loop, NULL, NULL, NULL);
        ns_loop_remove(loop, d.w_ctl);

        int status = -1;
        waitpid(client, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client exited cleanly");
        FILE *rf = fdopen(res[0], "r");
        char line[600];
        int reported = 0;
        while (rf && fgets(line, sizeof line, rf)) {
                line[strcspn(line, "\n")] = '\0';
                ok(line[0] == '1', "%s", line + 2);
                reported++;
        }
        if (rf)
                fclose(rf);
        ok(reported == 12, "client reported %d results", reported);
        ok(d.removed && ports_sandbox_list(p, SB, NULL, 0) == 0, "sandbox removed from the list");

        ports_free(p);
        ok(find_relay() < 0, "ports_free ended the relay process");
        ns_loop_free(loop);
        close(client_pidfd);
        close(ctl[0]);
        close(ack[1]);
        syscall(SYS_pidfd_send_signal, echo_pidfd, SIGKILL, NULL, 0);
        waitpid(echo, NULL, 0);
        close(echo_pidfd);
        close(echo_l);
        close(other_l);
        close(netns);
        close(life_fd);
        waitpid(holder, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "namespace holder ended");
        ok(count_fds() == fds_before, "no descriptor left (%d)", fds_before);
        return tap_done();
}
