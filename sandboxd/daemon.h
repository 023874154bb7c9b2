/* sandboxd's context: configuration, the event loop, and every sandbox and client it knows.
 * There are no mutable globals; everything hangs off one struct sbx_daemon. */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/loop.h"
#include "sandboxd/net.h"
#include "sandboxd/proto.h"
#include "sandboxd/layer.h"
#include "sandboxd/request.h"

#define SBX_MAX_ALLOW 64
#define SBX_MAX_RO_ROOTS 16
#define SBX_UID_RANGE 65536u /* host uids per sandbox: in-sandbox 0..65535 */
#define SBX_AGENT_UID 1000u
#define SBX_MAX_ZYGOTES 4
#define SBX_MAX_WAITING 1024 /* creates queued for the warm pool's next builds (sandbox_create) */

struct cg_manager;
struct ports_ctx;
struct sbx_client;
struct sbx_snapshot;
struct sbx_opened;

/* A create that found the warm pool empty, checked and opened, waiting to be answered with the
 * next pool sandbox that becomes ready (sandbox_create, sandbox_serve_waiting). */
struct sbx_waiter {
        struct sbx_waiter *next;
        struct sbx_client *client;
        uid_t owner;
        enum net_mode mode;
        struct ns_request req;    /* owned: the create and the strings it borrows */
        struct sbx_opened *o;     /* its workspace and binds, opened at arrival */
        uint64_t deadline;        /* answered ETIMEDOUT if still waiting then (monotonic ms) */
};

struct sbx_config {
        char *socket_path;
        gid_t socket_gid;
        bool has_socket_gid;
        char *state_dir;
        char *workspace_root;
        char *layers_dir;
        char *upper_dir;  /* per-sandbox upper layers (a real filesystem, not tmpfs) */
        char *ro_roots[SBX_MAX_RO_ROOTS];
        size_t n_ro_roots;
        uid_t allow[SBX_MAX_ALLOW];
        size_t n_allow;
        uint64_t uid_base;
        uint32_t max_sandboxes;
        uint64_t max_memory, max_pids, max_cpu_millis, max_disk;
        char *cgroup_base;
        uint32_t warm_pool; /* pre-built sandboxes kept ready for plain creates; 0 = none */
        uint32_t warm_pool_private; /* more of them with their `private` veth pair made ahead; 0 = none */
        uint32_t pool_builds; /* pool builds at once (one zygote each): 0 = the CPU count, at most 4 */
        uint32_t publish_addr;  /* host IPv4 address of publish listeners, network order */
        uint16_t publish_lo, publish_hi; /* their host port range */
        int log_level;
        char *net_pool;   /* --net-pool CIDR, "none", or NULL (the default pool) */
        char *nat_uplink; /* --nat-uplink IFACE: enables net "nat"; NULL = off */
};

/* A process started by exec, as sandboxd knows it. */
struct sbx_proc {
        struct sbx_proc *next;
        uint64_t id;
        pid_t pid;
        bool exited;
        int wstatus;
        uint32_t flags; /* NS_EXIT_* */
        struct sbx_client *notify; /* the client that started it gets the exit notice */
};

/* A request waiting for init's answer, or a wait waiting for an exit. */
struct sbx_pending {
        struct sbx_pending *next;
        struct sbx_client *client;
        int64_t req_id;
        enum ns_op op;
        uint64_t proc;
        int caller_fd; /* the caller's end of the stream, sent with the reply */
};

struct sbx_sandbox {
        struct sbx_sandbox *next;
        struct sbx_daemon *d;
        char id[NS_ID_MAX + 1];
        uid_t owner;
        uint32_t slot;
        uint64_t created;       /* unix seconds */
        pid_t init_pid;
        uint64_t init_start;    /* start time in ticks: re-adoption checks it */
        int init_pidfd;
        ns_watch *w_pidfd;
        int ctl_fd;
        ns_watch *w_ctl;
        bool adopting;          /* HELLO sent, HELLO_DONE not yet seen */
        bool pooled;            /* in the warm pool: nobody's yet, never listed or found */
        bool pool_ready;        /* pooled, and its init reported READY */
        bool from_pool;         /* handed out of the warm pool (for the debug log) */
        enum net_mode pool_net; /* pooled: NET_PRIVATE when its veth pair is made ahead (pool.c) */
        int zygote;             /* pooled and building: the zygote building it, else -1 */
        uint64_t pool_deadline; /* pooled: destroyed if not ready by then (monotonic ms) */
        bool dying;             /* destroyed; waiting for init's death to remove the rest */
        pid_t builder;          /* pooled and building: a builder forked by the daemon (no zygote), else 0 */
        bool idle_build;        /* in the builder: building at nice 19, init restores `nice` */
        int nice;
        int build_fd;           /* its report socket, or -1 */
        ns_watch *w_build;
        bool frozen;
        bool usr_rw;            /* /usr known to be an overlay (see mount_usr_is_lazy) */
        bool adopted;           /* from an earlier run: init is not our child, its pid may be reused once it dies */
        /* Ephemeral: destroyed when `holder`, the connection that created it, closes (a CLI
         * `run` killed by SIGKILL leaves nothing behind); never re-adopted after a restart,
         * since that connection died with the daemon. */
        bool ephemeral;
        struct sbx_client *holder;
        uint64_t oom_seen;
        uint64_t next_proc;
        struct ns_create_req limits; /* memory, pids, cpu_millis, disk only */
        struct ns_connect connects[NS_CONNECTS_MAX];
        size_t n_connects;
        struct ns_publish publishes[NS_PUBLISH_MAX]; /* host_port: the one chosen */
        size_t n_publishes;
        char workspace[NS_PATH_MAX];
        struct net_link net;    /* its veth pair (net.c), mode NET_NONE without one */
        struct sbx_proc *procs;
        size_t n_exited_kept;
        struct sbx_pending *pending;
        /* The layers from --layers-dir it stacks (not the host layer): never removed under it. */
        char layers[NS_LAYERS_MAX][LAYER_NAME_MAX + 1];
        size_t n_layers;
        char overlays[NS_OVERLAYS_MAX][NS_OVERLAY_PATH_MAX + 1]; /* create's `overlays`: upper <id>/ov<i> */
        size_t n_overlays;
        struct sbx_snapshot *snap; /* destroyed by `snapshot`: its upper becomes this layer */
};

struct sbx_daemon {
        struct sbx_config cfg;
        ns_loop *loop;
        struct cg_manager *cg;
        struct ports_ctx *ports;
        struct net_ctx *net;
        struct sock_fprog filter;
        int state_fd, upper_fd, ws_root_fd, layers_fd;
        int ro_root_fds[SBX_MAX_RO_ROOTS];
        char host_layer[NS_PATH_MAX];
        char scaffold[NS_PATH_MAX];
        int listen_fd;
        ns_watch *w_listen;
        int sig_fd;
        ns_watch *sig_w;
        struct sbx_sandbox *sandboxes;
        size_t n_sandboxes;
        struct sbx_sandbox *pool;  /* warm pool: ready and still building (pool.c) */
        size_t n_pool;
        uint64_t pool_demand_until; /* a create found the pool empty: refill at once until then (ms) */
        uint64_t pool_private_demand_until; /* the same for the pairs made ahead */
        uint64_t pool_retry_at;    /* after a failed refill, none before this (monotonic ms) */
        uint64_t pool_idle_since;  /* when the loop last went to sleep (pool_next_timeout) */
        struct sbx_sandbox *dying; /* destroyed, init not yet dead */
        struct sbx_waiter *waiting, **waiting_tail; /* creates waiting for pool builds, oldest first */
        size_t n_waiting;
        int zygote_fd[SBX_MAX_ZYGOTES]; /* the pool's zygotes (pool.c), or -1 */
        pid_t zygote_pid[SBX_MAX_ZYGOTES];
        uint32_t zygote_busy[SBX_MAX_ZYGOTES]; /* builds sent to each and not yet reported */
        size_t n_zygotes;
        struct sbx_client *clients;
        struct sbx_snapshot *snapshots; /* upper layers being turned into layers (snapshot.c) */
        uint8_t *slots; /* one byte per uid slot: in use */
        uint32_t n_slots;
};

/* ---- sandbox.c: lifecycle -------------------------------------------------------------------- */

/* Create a sandbox for client `c` (uid `owner`) as `r` (a parsed create, already validated for
 * form; checked here against the configuration).  Returns 0 with *out set; or 1 when the request
 * was checked and opened but the warm pool, which could serve it, has nothing ready: it is then
 * queued (r moved into the queue, left empty) and answered from the loop by
 * sandbox_serve_waiting when a pool build is ready (or with an error); or -errno.  On failure
 * nothing is left behind. */
int sandbox_create(struct sbx_daemon *d, struct sbx_client *c, uid_t owner, struct ns_request *r,
                   struct sbx_sandbox **out, ns_error *err);

/* Answer the queued creates from the ready pool sandboxes, and those past their deadline with
 * ETIMEDOUT.  Called from the loop (pool_tick). */
void sandbox_serve_waiting(struct sbx_daemon *d);

/* A pool build failed with `err`: the oldest queued create (if any) is answered with it. */
void sandbox_waiting_fail_one(struct sbx_daemon *d, const ns_error *err);

/* Drop client `c`'s queued creates (it went away): nothing was made for them. */
void sandbox_forget_waiting(struct sbx_daemon *d, struct sbx_client *c);

/* Kill everything in the sandbox and remove its cgroup, upper layer, state and connectors.  The
 * sandbox is gone for clients (and for a restarted daemon) on return; what needs init to be dead
 * (cgroup, upper layer, record, uid range) is removed once its pidfd says so, from the loop. */
void sandbox_destroy(struct sbx_sandbox *s);

/* Start building one warm-pool sandbox (host layer, no limits, no workspace); it joins d->pool and
 * becomes ready when its init reports READY (and, for `net` NET_PRIVATE, once its veth pair is
 * made), without blocking the loop in between. */
int sandbox_prestart(struct sbx_daemon *d, enum net_mode net, ns_error *err);

/* Remove what a sandbox whose processes are all dead left on the host: wait (2 s at most) for its
 * cgroup to empty and remove it, delete its upper layer by descriptor, its disk image, its record.
 * Runs in the daemon or in the zygote (pool_zygote_clean); idempotent. */
void sandbox_remove_leftovers(struct sbx_daemon *d, const char *id);

/* Daemon exit: destroy the warm pool and wait for every destroyed sandbox's init to be gone. */
void sandbox_reap_all(struct sbx_daemon *d);

/* In the pool's zygote: build warm-pool sandbox `id` in uid slot `slot` and report to `report_fd`
 * (init's pidfd and control socket attached).  With `net`: wait for init's READY, then make the
 * veth pair as planned (net_make_pair), and report the sandbox ready with its host end's index.  init is cloned as a child of the daemon.  `idle`:
 * the caller runs at nice 19, and init goes back to `nice` before anything of the sandbox's runs. */
void sandbox_build_pool(struct sbx_daemon *d, const char *id, uint32_t slot, const struct net_pair_plan *net, int nice,
                        bool idle, int report_fd);

/* Forget a sandbox without touching it (daemon exit: its processes keep running and are
 * re-adopted by the next start).  The caller has unlinked it. */
void sandbox_release(struct sbx_sandbox *s);

/* Find a sandbox by id visible to `owner`. */
struct sbx_sandbox *sandbox_find(struct sbx_daemon *d, const char *id, uid_t owner);

/* A connector the client asks for: when it goes to a host Unix socket, that socket exists now and
 * is owned by the sandbox's owner (ports_host_socket_open; every dial checks again).  0 or -errno. */
int connector_check(const struct sbx_sandbox *s, const struct ns_connect *c, ns_error *err);

/* Start a process: sends EXEC to init; the reply goes to `client` when init answers. */
int sandbox_exec(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, const struct ns_exec_req *req,
                 ns_error *err);
int sandbox_attach(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, uint64_t proc, uint64_t from,
                   ns_error *err);
int sandbox_signal(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, uint64_t proc, int sig,
                   ns_error *err);
/* Reply now when the process has exited, else when it does. */
int sandbox_wait(struct sbx_sandbox *s, struct sbx_client *client, int64_t req_id, uint64_t proc, ns_error *err);
int sandbox_freeze(struct sbx_sandbox *s, bool frozen, ns_error *err);

/* Drop every pending reply addressed to a client that went away. */
void sandbox_forget_client(struct sbx_daemon *d, struct sbx_client *c);

/* Re-adopt the sandboxes recorded in the state dir (after a restart). */
void sandbox_adopt_all(struct sbx_daemon *d);

/* The sandbox's /proc/<init> directory, checked to be its live init's (opened, then the pidfd
 * asked whether init still runs, so a reused pid is never read); -errno when init is gone. */
int sandbox_proc_dir(const struct sbx_sandbox *s, ns_error *err);

/* An fd of the sandbox's network namespace, opened through sandbox_proc_dir (so it is init's,
 * never a reused pid's).  Returns the fd or -errno (ESRCH: init is gone). */
int sandbox_netns(const struct sbx_sandbox *s, ns_error *err);

/* Publish the sandbox's port `p->port` (host port `p->host_port`, 0 = any) and record it. */
int sandbox_publish(struct sbx_sandbox *s, const struct ns_publish *p, struct ns_publish *out, ns_error *err);

/* JSON description of a sandbox (list, create). */
cJSON *sandbox_to_json(const struct sbx_sandbox *s);

/* ---- snapshot.c: snapshots and layer removal ------------------------------------------------ */

/* `snapshot`: destroy `s` (as destroy does) and, once its init is dead, turn its upper layer into
 * the layer `layer`; the reply ({layer: {name, bytes, files}} or the error) goes to `c` then.
 * Checked first: a layers dir is configured, the sandbox has no disk limit, the name is free. */
int snapshot_start(struct sbx_sandbox *s, struct sbx_client *c, int64_t req_id, const char *layer, ns_error *err);

/* From sandbox_finish, for a sandbox with `snap` set: start the child that makes the layer and
 * removes the rest of the sandbox (cgroup, upper, record).  Returns false when no child could be
 * started (the client got the error; the caller removes the leftovers itself). */
bool snapshot_take_over(struct sbx_sandbox *s, uid_t uid_base);

/* Free a snapshot request that never started (its sandbox was freed another way). */
void snapshot_drop(struct sbx_snapshot *j);

/* True when a live or dying sandbox stacks layer `name`, or a snapshot is making it. */
bool layer_in_use(const struct sbx_daemon *d, const char *name);

/* `layer_remove`: refuse a layer in use (EBUSY), else hide it at once and delete it in a child. */
int layer_remove_op(struct sbx_daemon *d, uid_t peer, const char *name, ns_error *err);

/* A client went away: its snapshots still complete, unanswered. */
void snapshot_forget_client(struct sbx_daemon *d, struct sbx_client *c);

/* Daemon exit: forget the running snapshots (their children finish on their own). */
void snapshot_free_all(struct sbx_daemon *d);

/* ---- state.c: the per-sandbox record in the state dir ------------------------------------- */

int state_save(const struct sbx_sandbox *s, ns_error *err);
int state_remove(struct sbx_daemon *d, const char *id);
/* Parse a record; fills the persistent fields of `s`. */
int state_load(struct sbx_daemon *d, const char *id, struct sbx_sandbox *s, ns_error *err);

/* ---- server.c: the socket, clients, dispatch ---------------------------------------------- */

int server_listen(struct sbx_daemon *d, ns_error *err);
/* Send a reply object to a client (adds v and id); `fd` (or -1) rides along. Consumes `body`. */
void server_reply(struct sbx_client *c, int64_t id, cJSON *body, int fd);
void server_reply_error(struct sbx_client *c, int64_t id, const ns_error *err);
/* In a child forked from the daemon: close the listening socket and every client's. */
void server_close_fds_in_child(struct sbx_daemon *d);
void server_notice(struct sbx_client *c, cJSON *body);
/* Notify the clients subscribed to a sandbox's process exits. */
void server_close_all(struct sbx_daemon *d);
