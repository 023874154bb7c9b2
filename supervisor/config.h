/* nightshift supervisor — `nightshift serve`'s settings: defaults, the config file, flags.
 *
 * Every setting has a long flag of the same name; the config file (common/conffile.h) is read
 * first, flags override it.  Defaults suit one server: listen on 127.0.0.1:8787, data in
 * /var/lib/nightshift/data, working trees in /var/lib/nightshift/workspaces, sandboxd at
 * /run/nightshift/sandboxd.sock. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define SV_MAX_CONNECTS 16

typedef struct sv_config {
        char *listen_addr;       /* "127.0.0.1" */
        int listen_port;         /* 8787; 0 = pick one (printed at start) */
        char *data_dir;          /* database, mirrors */
        char *workspace_root;    /* working trees; must be sandboxd's --workspace-root */
        char *sandboxd_socket;
        char *agents_dir;        /* the agent-CLI layer on the host (rootfs/agents/install.sh) */
        int max_concurrent;      /* sessions whose turn runs at once; the rest wait in FIFO order */
        int workers;             /* worker threads for git and sandboxd calls */
        int64_t idle_timeout_s;  /* an idle session completes after this; 0 = never */
        int64_t max_runtime_s;   /* a session is stopped after this long; 0 = no limit */
        int64_t setup_timeout_s; /* default for .nightshift/setup.sh */
        bool setup_layers;       /* keep a successful setup as a layer, stack it next time (setup_layer.h) */
        int64_t layers_max_bytes;    /* after a new layer: the least recently used go above this (0: no cap) */
        int64_t layers_max_age_days; /* and those unused for this long (0: no limit) */
        int64_t stop_grace_s;    /* interrupt → forced kill */
        int spare_trees;         /* spare working trees kept per repository (spare.h); 0 = none */
        int64_t memory_bytes;    /* per-sandbox defaults; 0 = sandboxd's */
        int64_t pids;
        double cpus;
        bool keep_events;        /* on delete: keep the events (true) or drop them */
        int connects[SV_MAX_CONNECTS]; /* host loopback ports every sandbox reaches (--connect) */
        int n_connects;
        char *git_name_template;  /* commit identity; "%s" = the session id */
        char *git_email_template;
        int log_level;
        bool allow_remote;       /* listen beyond loopback */
        double rate_limit;       /* API requests per second per token; 0 = no limit */
        char *preview_addr;      /* the preview proxy's listener: "127.0.0.1" */
        int preview_port;        /* 8788; 0 = pick one (logged at start) */
        char *preview_domain;    /* NULL: previews at <id>.localhost; else <id>.preview.<domain> (https) */
        bool auto_publish;       /* publish every new listening port of a session's sandbox */
        char *web_dir;           /* serve the dashboard from here; NULL = the embedded files */
        /* The model-API proxy (modelproxy.c): upstream base URLs, the vault secrets holding the
         * real keys; set at its start: the port it appears at inside sandboxes (0 = not running)
         * and its Unix socket on the host. */
        bool model_proxy;
        char *model_upstream_anthropic, *model_upstream_openai;
        char *model_key_anthropic, *model_key_openai;
        int model_proxy_port;
        char *model_proxy_path;
        char *egress_allow;      /* network "proxy": the default allow-list, comma-separated */
        char *egress_hosts;      /* a static host map file for the egress proxy (tests), or NULL */
        /* triggers (hooks.h) */
        char *hook_command_prefix; /* a GitHub comment that starts with this starts a session: "/nightshift" */
        char *hook_associations;   /* comma list of GitHub author_association values allowed to trigger */
        char *hook_agent;          /* the agent hook-started sessions run: "claude" */
        char *hook_ci_repos;       /* comma list of repository names that opt in to fix-CI sessions, or NULL */
        char *public_url;          /* the dashboard's address for links sent out, or NULL (the request's Host) */
        char *hook_linear_label;   /* a Linear issue with this label starts a session: "nightshift" */
        char *hook_linear_teams;   /* comma list TEAM=REPO (team key or id → registered repository), or NULL */
        /* outgoing notifications (notify.h) */
        int notify_max_attempts;   /* deliveries tried at most this often: 6 */
        int64_t notify_timeout_s;  /* one attempt's time limit: 10 */
        int64_t notify_backoff_max_s; /* the wait between attempts doubles from 1 s up to this: 300 */
        char *github_api_url;      /* the GitHub REST API (pr.c), NULL = https://api.github.com */
} sv_config;

/* Fill *c with the defaults (strings malloc'd). */
int sv_config_init(sv_config *c, ns_error *err);
void sv_config_clear(sv_config *c);

/* Apply one setting by its flag name without "--" ("listen", "data-dir", ...). */
int sv_config_apply(sv_config *c, const char *key, const char *val, ns_error *err);

/* Parse `nightshift serve`'s arguments (after "serve"): --config FILE first, then the flags.
 * Returns 0, 1 when --help was printed, or -errno. */
int sv_config_parse_args(sv_config *c, int argc, char **argv, ns_error *err);

/* Apply the settings of config file `file` (the same names as the flags). */
int sv_config_load_file(sv_config *c, const char *file, ns_error *err);

/* The data dir's derived paths, malloc'd. */
char *sv_config_db_path(const sv_config *c);

/* True when the comma-separated `list` (a setting such as --hook-associations; NULL is empty)
 * holds `item` exactly. */
bool sv_list_has(const char *list, const char *item);
