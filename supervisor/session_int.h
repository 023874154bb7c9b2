/* nightshift supervisor — what session.c (loop thread) and session_jobs.c (workers) share.
 * Private to those two files. */
#pragma once

#include "agent.h"
#include "import.h"
#include "sandboxd/proto.h"
#include "sbxops.h"
#include "serve.h"

#define SV_AGENTS_MOUNT "/opt/nightshift/agents"
#define SV_SETUP_OUTPUT_MAX (64 * 1024)

typedef enum sv_phase {
        PH_NONE,      /* idle, waiting, paused: nothing in flight */
        PH_PROVISION, /* worktree + sandbox + setup */
        PH_EXEC,      /* starting the agent's turn */
        PH_STREAM,    /* reading the agent's output */
        PH_COMMIT,    /* committing and importing the turn's work */
        PH_TEARDOWN,  /* destroying the sandbox at the end */
} sv_phase;

struct sv_live {
        sv_live *next;
        sv_server *srv;
        char id[SV_ID_LEN + 1];
        char sandbox[NS_ID_MAX + 1];
        char *mirror_path, *branch, *base_sha, *last_commit, *agent_ref, *model, *env_json, *limits_json;
        char repo_id[SV_ID_LEN + 1]; /* the scope of its secrets */
        char *git_name, *git_email;  /* its commit identity (identity.h); NULL after a restart: the server's */
        const agent_adapter *ad;
        bool once;
        sv_state state;
        sv_phase phase;
        bool holds_slot;
        /* the running turn */
        int64_t prompt_id;
        char *prompt_text;
        int stream_fd;
        ns_watch *watch;
        int64_t proc;
        uint64_t consumed; /* output bytes turned into events (persisted at boundaries) */
        agent_parser *parser;
        db_event_in *batch;
        char **batch_owned; /* type + data strings the batch points at */
        size_t n_batch, cap_batch;
        /* Held back for the next store (session.c, outq): batch[0, n_ready) is everything made
         * from the output below ready_off, the last parser boundary; stored_off is the mark the
         * database has (and init was acknowledged). */
        size_t n_ready;
        uint64_t ready_off, stored_off;
        bool turn_failed;
        bool turn_question;
        int64_t agent_pid;      /* the turn's process inside the sandbox (0 = unknown) */
        bool interrupted;       /* this turn was interrupted or stopped: kill what it left behind */
        /* control */
        bool stop_requested;
        sv_state end_state; /* where teardown leads */
        char *end_reason;
        uint64_t kill_deadline_ms; /* after an interrupt or stop: force at this time (0 = none) */
        struct sv_egress_proxy *egress; /* network "proxy": the session's own proxy listener */
        int egress_port;
        uint64_t idle_since_ms;
        uint64_t started_ms;
        sv_state paused_from;
};

typedef enum sv_job_kind {
        JOB_NEW_SESSION,
        JOB_REPO_REGISTER,
        JOB_PROVISION,
        JOB_EXEC,
        JOB_COMMIT,
        JOB_TEARDOWN,
        JOB_SIGNAL,
        JOB_RECOVER,
        JOB_FREEZE,
        JOB_DELETE,
} sv_job_kind;

typedef struct sv_sjob {
        sv_job base;
        sv_job_kind kind;
        sv_server *srv;
        sv_live *live; /* loop-owned; workers read only the copies below */
        char sid[SV_ID_LEN + 1];
        char sandbox[NS_ID_MAX + 1];
        /* inputs */
        sv_new_session *req;  /* JOB_NEW_SESSION */
        char *url, *name;     /* JOB_REPO_REGISTER */
        char *mirror_path, *branch, *base_sha, *last_commit, *limits_json, *message;
        char **argv, **env;   /* JOB_EXEC, JOB_COMMIT env */
        char *stdin_data;
        size_t stdin_len;
        int64_t proc, from, pid;
        int sig;
        bool freeze;
        bool keep_events;
        /* outputs */
        int rc;
        ns_error err;
        int status;         /* HTTP-like status for API jobs */
        const char *code;   /* API error code */
        cJSON *body;        /* API reply body */
        int stream_fd;
        bool proc_gone;     /* JOB_RECOVER: the sandbox is there, the process record is not */
        char *setup_output; /* JOB_PROVISION */
        int setup_exit;     /* -1 = no setup script (or a warm start: its layer replaced it) */
        bool setup_nonfatal;
        char setup_layer[48]; /* the setup layer the sandbox stacks, "" for none */
        bool setup_warm;      /* that layer was there already: setup did not run */
        char *workspace, *gitdir;
        const char *agent_name;        /* JOB_PROVISION: for the identity (a static adapter name) */
        char *git_name, *git_email;    /* JOB_PROVISION: the session's identity, expanded */
        char *commit_event;  /* JOB_COMMIT: the `commit` event data, NULL when nothing new */
        char new_tip[41];
        /* API completion */
        sv_reply_fn reply;
        void *reply_ctx;
} sv_sjob;

/* Allocate a job of `kind` whose done is session.c's dispatcher. */
sv_sjob *sv_sjob_new(sv_server *s, sv_job_kind kind, sv_live *l);
void sv_sjob_free(sv_sjob *j);

/* The worker side of each kind (session_jobs.c). */
void sv_sjob_run(sv_job *job, sv_worker *w);
