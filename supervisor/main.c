/* nightshift: the supervisor (`nightshift serve`) and its command-line client.
 *
 *   nightshift serve [flags]          run the server (see config.h)
 *   nightshift run [flags] PROMPT     start a session through a running server (cli_run.c)
 *   nightshift ls|show|logs|prompt|stop|pause|resume|diff ...   the other client commands (cli_cmds.c)
 *   nightshift token create|ls|revoke API tokens, on the data dir directly (cli_token.c)
 *   nightshift layers ls|rm|gc      the layer store, through sandboxd (cli_layers.c)
 *   nightshift secret set|ls|rm       the secrets vault, through the server (cli_secret.c)
 *   nightshift notify add|ls|rm|log   notification webhooks, through the server (cli_notify.c)
 *   nightshift version */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "gitx.h"
#include "http.h"
#include "sdnotify.h"
#include "preview.h"
#include "modelproxy.h"
#include "notify.h"
#include "egress.h"
#include "serve.h"
#include "spare.h"
#include "vault.h"
#include "walckpt.h"

#define NIGHTSHIFT_VERSION "0.1.0"

void sv_runner_free(sv_server *s);

static int mkdir_private(const char *path, ns_error *err) {
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir %s", path);
        struct stat st;
        if (stat(path, &st) < 0)
                return ns_err_sys(err, errno, "stat %s", path);
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
                return ns_err(err, EPERM, "%s must be a directory owned by uid %u", path, (unsigned) geteuid());
        return 0;
}

static void on_signal(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data) {
        (void) w, (void) events, (void) data;
        struct signalfd_siginfo si;
        if (read(fd, &si, sizeof si) == sizeof si)
                log_notice("signal %u: shutting down (sessions keep running in their sandboxes)", si.ssi_signo);
        ns_loop_quit(loop);
}

static void tick(sv_server *s) {
        s->last_tick_ms = ns_now_ms();
        sv_runner_tick(s);
        sv_preview_tick(s);
        sv_notify_tick(s);
        sv_wal_tick(s);
}

static int serve(int argc, char **argv) {
        sv_server s = { 0 };
        ns_error err = { 0 };
        int rc = 1, r;
        _cleanup_free_ char *db_path = NULL;
        ns_watch *sigw = NULL;
        _cleanup_close_ int sfd = -1;
        bool git_up = false;
        if (sv_config_init(&s.cfg, &err) < 0)
                goto out;
        if ((r = sv_config_parse_args(&s.cfg, argc, argv, &err)) != 0) {
                rc = r > 0 ? 0 : 2;
                goto out;
        }
        ns_log_set_level(s.cfg.log_level);
        signal(SIGPIPE, SIG_IGN);
        if (mkdir_private(s.cfg.data_dir, &err) < 0)
                goto out;
        if (asprintf(&s.mirrors_dir, "%s/mirrors", s.cfg.data_dir) < 0 || mkdir_private(s.mirrors_dir, &err) < 0)
                goto out;
        /* The sockets sandboxes reach through their connectors (egress proxies): private, so that
         * no other local user can use them or bind in their place. */
        _cleanup_free_ char *sockets_dir = NULL;
        if (asprintf(&sockets_dir, "%s/sockets", s.cfg.data_dir) < 0 || mkdir_private(sockets_dir, &err) < 0)
                goto out;
        struct stat st;
        if (stat(s.cfg.workspace_root, &st) < 0 || !S_ISDIR(st.st_mode)) {
                ns_err(&err, ENOENT, "--workspace-root %s is not a directory", s.cfg.workspace_root);
                goto out;
        }
        if (gitx_init(&err) < 0)
                goto out;
        git_up = true;
        if (!(db_path = sv_config_db_path(&s.cfg)) || db_open(db_path, &s.db, &err) < 0)
                goto out;
        if (sv_secrets_start(&s, &err) < 0)
                goto out;
        if (sv_notify_start(&s, &err) < 0) /* libcurl's global state: before any thread */
                goto out;
        if (ns_loop_new(&s.loop, &err) < 0)
                goto out;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
                ns_err_sys(&err, errno, "signalfd");
                goto out;
        }
        if (!(sigw = ns_loop_add(s.loop, sfd, EPOLLIN, on_signal, &s, &err)))
                goto out;
        /* Before the workers: they read the proxy's port from the config. */
        if (s.cfg.model_proxy && sv_modelproxy_start(&s.cfg, db_path, s.vault, &s.proxy, &err) < 0)
                goto out;
        /* Before the workers, which take spares; it removes the stale ones of an earlier run. */
        if (sv_spares_new(s.cfg.workspace_root, s.cfg.spare_trees, &s.spares, &err) < 0)
                goto out;
        if (sv_workq_new(s.loop, &s.cfg, db_path, s.cfg.workers, &s.wq, &err) < 0)
                goto out;
        sv_wal_start(&s);
        int port = 0;
        if (sv_http_start(&s, &port, &err) < 0)
                goto out;
        log_notice("nightshift %s listening on http://%s:%d (data %s, workspaces %s, sandboxd %s)", NIGHTSHIFT_VERSION,
                   s.cfg.listen_addr, port, s.cfg.data_dir, s.cfg.workspace_root, s.cfg.sandboxd_socket);
        int preview_port = 0;
        if (sv_preview_start(&s, &preview_port, &err) < 0)
                goto out;
        log_notice("previews on http://<preview-id>.localhost:%d (listening on %s:%d)", preview_port,
                   s.cfg.preview_addr, preview_port);
        if (sv_runner_start(&s, &err) < 0)
                goto out;
        s.last_tick_ms = ns_now_ms();
        /* Under systemd (Type=notify) `systemctl start` returns, and units ordered after this one
         * start, only now: the listener is bound and the loop serves it from the next line on. */
        char status[128];
        snprintf(status, sizeof status, "listening on http://%s:%d", s.cfg.listen_addr, port);
        if (sv_notify_ready(status, &err) < 0) {
                log_warn("%s", err.msg);
                ns_err_clear(&err);
        }
        sv_http_run(&s, tick);
        if (sv_notify_stopping("shutting down; sessions keep running in their sandboxes", &err) < 0) {
                log_warn("%s", err.msg);
                ns_err_clear(&err);
        }
        rc = 0;
out:
        if (rc && err.code)
                log_error("%s", err.msg);
        sv_runner_shutdown(&s);
        sv_preview_stop(&s);
        if (s.loop)
                sv_http_stop(&s);
        sv_notify_quiesce(&s);
        sv_workq_free(s.wq);
        sv_spares_free(s.spares);
        sv_runner_free(&s);
        if (s.loop)
                ns_loop_remove(s.loop, sigw);
        ns_loop_free(s.loop);
        sv_modelproxy_stop(s.proxy);
        sv_notify_stop(&s);
        sv_secrets_stop(&s);
        db_close(s.db);
        if (git_up)
                gitx_shutdown();
        free(s.mirrors_dir);
        sv_egress_hosts_free(s.egress_hosts);
        sv_config_clear(&s.cfg);
        return rc;
}

static void usage(FILE *f) {
        fputs("usage: nightshift serve [flags]        run the server (nightshift serve --help)\n"
              "       nightshift run [flags] PROMPT   start a session (nightshift run --help)\n"
              "       nightshift token create|ls|revoke  API tokens (nightshift token --help)\n"
              "       nightshift layers ls|rm|gc         the layer store of warm starts (nightshift layers --help)\n"
              "       nightshift ls [--state S] [--repo R] [--limit N]   sessions\n"
              "       nightshift show ID                 one session\n"
              "       nightshift logs ID [-f] [--after SEQ]  its events (-f: until it is over)\n"
              "       nightshift prompt ID TEXT|-        queue a follow-up prompt\n"
              "       nightshift stop ID [--force] | pause ID | resume ID\n"
              "       nightshift diff ID                 its changes against its base\n"
              "       nightshift push ID | pr ID [--draft]  push its branch / and open its pull request\n"
              "       nightshift secret set NAME [--repo R] | ls | rm NAME   the vault (value from stdin)\n"
              "       nightshift notify add URL [--format json|slack] | ls | rm ID | log   notification webhooks\n"
              "       nightshift version\n"
              "Each command takes --help; the client commands take --server URL, --token-file FILE and,\n"
              "where they print data, --json.\n",
              f);
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (!strcmp(argv[1], "serve"))
                return serve(argc - 1, argv + 1);
        if (!strcmp(argv[1], "proxy-process")) /* internal: started by serve (proxyproc.c) */
                return sv_preview_proxy_main(argc - 1, argv + 1);
        if (!strcmp(argv[1], "run"))
                return cli_run(argc - 1, argv + 1);
        if (!strcmp(argv[1], "token"))
                return cli_token(argc - 1, argv + 1);
        if (!strcmp(argv[1], "layers"))
                return cli_layers(argc - 1, argv + 1);
        if (!strcmp(argv[1], "secret"))
                return cli_secret(argc - 1, argv + 1);
        if (!strcmp(argv[1], "notify"))
                return cli_notify(argc - 1, argv + 1);
        if (cli_session_command_exists(argv[1]))
                return cli_session_command(argc - 1, argv + 1);
        if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
                printf("nightshift %s\n", NIGHTSHIFT_VERSION);
                return 0;
        }
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
                usage(stdout);
                return 0;
        }
        usage(stderr);
        return 2;
}
