/* For bench/egress-proxy.sh: the supervisor's egress proxy (supervisor/egress.c) alone on an event
 * loop, as a session's would run: `egress-proxy-serve [--relay NIGHTSHIFT] HOSTS-FILE ENTRY...`
 * prints its port and serves until SIGTERM.  With --relay, established tunnels are handed to a
 * proxy process (`NIGHTSHIFT proxy-process`, supervisor/proxyproc.h) as the server's are. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "supervisor/egress.h"
#include "supervisor/proxyproc.h"

static void on_signal(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        ns_loop_quit(loop);
}

int main(int argc, char **argv) {
        const char *relay_exe = NULL;
        if (argc > 2 && !strcmp(argv[1], "--relay")) {
                relay_exe = argv[2];
                argc -= 2;
                argv += 2;
        }
        if (argc < 3) {
                fprintf(stderr, "usage: egress-proxy-serve [--relay NIGHTSHIFT] HOSTS-FILE ENTRY...\n");
                return 2;
        }
        sv_proxyproc *relay = NULL;
        ns_error err = { 0 };
        sv_egress_hosts *hosts = NULL;
        ns_loop *loop = NULL;
        sv_egress_proxy *p = NULL;
        int port = 0;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (sv_egress_hosts_load(argv[1], &hosts, &err) < 0 || ns_loop_new(&loop, &err) < 0 ||
            sv_egress_proxy_new(loop, (const char *const *) argv + 2, (size_t) argc - 2, hosts, NULL, NULL, NULL, &p, &port, &err) < 0) {
                fprintf(stderr, "egress-proxy-serve: %s\n", err.msg);
                return 1;
        }
        sv_proxyproc_cfg pcfg = { .exe = relay_exe, .listen_fd = -1, .log_level = 5 };
        if (relay_exe && sv_proxyproc_new(loop, &pcfg, NULL, NULL, &relay, &err) < 0) {
                fprintf(stderr, "egress-proxy-serve: %s\n", err.msg);
                return 1;
        }
        sv_egress_proxy_set_relay(p, &relay);
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        ns_watch *sw = ns_loop_add(loop, sfd, EPOLLIN, on_signal, NULL, &err);
        printf("%d\n", port);
        fflush(stdout);
        ns_loop_run(loop, NULL, NULL, NULL);
        ns_loop_remove(loop, sw);
        sv_egress_proxy_free(p);
        sv_proxyproc_free(relay);
        sv_egress_hosts_free(hosts);
        ns_loop_free(loop);
        close(sfd);
        return 0;
}
