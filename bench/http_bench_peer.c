/* For bench/egress-proxy.sh: the same HTTP origin and the same client on both paths (direct and
 * through the proxy), in C so that neither is slower than what it measures, and the least a relay
 * can do, as the floor a relay on this machine can reach.
 *
 *   http-bench-peer serve PORT
 *       an origin on 127.0.0.1:PORT, one connection at a time: reads a request head, answers a
 *       request line with "/big " in it (origin- or absolute-form) with 1 GiB of zeros (1 MiB
 *       writes) and anything else with "ok", then closes.
 *   http-bench-peer relay PORT ORIGIN-PORT
 *       the minimal relay: one connection at a time, blocking; reads the client's first bytes,
 *       connects to 127.0.0.1:ORIGIN-PORT, passes them on unchanged and splices the answer back
 *       through a 1 MiB pipe until the origin closes.  No parsing, no policy, no event loop.
 *   http-bench-peer get PORT N TARGET HOST
 *       N requests, one connection each, one after another ("GET TARGET", "Host: HOST"), each
 *       read to the end; prints "MEAN_US BYTES SECONDS" (mean time per request, bytes of the
 *       last response, wall time of all N).  Exit 1 when an answer is not "HTTP/1.1 200". */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BIG (1UL << 30)
#define CHUNK (1UL << 20)

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int send_all(int fd, const char *p, size_t n) {
        while (n) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k <= 0)
                        return -1;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void serve_one(int fd, const char *zeros) {
        char head[8192];
        size_t len = 0;
        struct timeval tv = { .tv_sec = 10 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        while (len < sizeof head - 1) {
                ssize_t k = recv(fd, head + len, sizeof head - 1 - len, 0);
                if (k <= 0)
                        return;
                len += (size_t) k;
                head[len] = '\0';
                if (strstr(head, "\r\n\r\n"))
                        break;
        }
        char hdr[128];
        char *eol = strstr(head, "\r\n");
        if (eol)
                *eol = '\0';
        if (strstr(head, "/big ")) {
                int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %lu\r\nConnection: close\r\n\r\n", BIG);
                if (send_all(fd, hdr, (size_t) n) < 0)
                        return;
                for (size_t sent = 0; sent < BIG; sent += CHUNK)
                        if (send_all(fd, zeros, CHUNK) < 0)
                                return;
        } else {
                static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                (void) send_all(fd, ok, sizeof ok - 1);
        }
}

static int listen_on(int port) {
        int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 512) < 0) {
                perror("http-bench-peer: listen");
                return -1;
        }
        return lfd;
}

static int serve(int port) {
        int lfd = listen_on(port);
        if (lfd < 0)
                return 2;
        char *zeros = calloc(1, CHUNK);
        if (!zeros)
                return 2;
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                serve_one(fd, zeros);
                close(fd);
        }
}

static int relay(int port, int oport) {
        int lfd = listen_on(port), pp[2];
        if (lfd < 0 || pipe2(pp, O_CLOEXEC) < 0)
                return 2;
        (void) fcntl(pp[1], F_SETPIPE_SZ, (int) CHUNK);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) oport),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char head[8192];
        for (;;) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), s = -1;
                ssize_t n = c < 0 ? -1 : recv(c, head, sizeof head, 0);
                if (n > 0 && (s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 &&
                    connect(s, (struct sockaddr *) &sa, sizeof sa) == 0 && send_all(s, head, (size_t) n) == 0)
                        for (ssize_t k; (k = splice(s, NULL, pp[1], NULL, CHUNK, SPLICE_F_MOVE)) > 0;)
                                while (k > 0) {
                                        ssize_t w = splice(pp[0], NULL, c, NULL, (size_t) k, SPLICE_F_MOVE);
                                        if (w <= 0)
                                                return 1; /* the pipe holds bytes no one takes */
                                        k -= w;
                                }
                if (s >= 0)
                        close(s);
                if (c >= 0)
                        close(c);
        }
}

static int get(int port, long n, const char *target, const char *host) {
        char req[1024];
        int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: http-bench-peer\r\n\r\n", target, host);
        if (rl <= 0 || (size_t) rl >= sizeof req)
                return 2;
        char *buf = malloc(CHUNK);
        if (!buf)
                return 2;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        size_t total = 0;
        double t0 = now_s();
        for (long i = 0; i < n; i++) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || send_all(fd, req, (size_t) rl) < 0) {
                        perror("http-bench-peer: request");
                        return 1;
                }
                total = 0;
                char first[13] = { 0 };
                for (;;) {
                        ssize_t k = recv(fd, buf, CHUNK, 0);
                        if (k < 0) {
                                perror("http-bench-peer: recv");
                                return 1;
                        }
                        if (k == 0)
                                break;
                        if (total < 12)
                                memcpy(first + total, buf, (size_t) k < 12 - total ? (size_t) k : 12 - total);
                        total += (size_t) k;
                }
                close(fd);
                if (strncmp(first, "HTTP/1.1 200", 12) != 0) {
                        fprintf(stderr, "http-bench-peer: answer %d: '%.12s'\n", (int) i, first);
                        return 1;
                }
        }
        double dt = now_s() - t0;
        printf("%.2f %zu %.6f\n", dt / (double) n * 1e6, total, dt);
        return 0;
}

int main(int argc, char **argv) {
        signal(SIGPIPE, SIG_IGN);
        if (argc == 3 && !strcmp(argv[1], "serve"))
                return serve(atoi(argv[2]));
        if (argc == 4 && !strcmp(argv[1], "relay"))
                return relay(atoi(argv[2]), atoi(argv[3]));
        if (argc == 6 && !strcmp(argv[1], "get"))
                return get(atoi(argv[2]), atol(argv[3]), argv[4], argv[5]);
        fprintf(stderr, "usage: http-bench-peer serve PORT | relay PORT ORIGIN-PORT | get PORT N TARGET HOST\n");
        return 2;
}
