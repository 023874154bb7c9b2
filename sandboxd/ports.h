/* Port forwards between the host and sandboxes.
 *
 * `publish` (PROTOCOL.md) is the mirror direction: a host listener on the configured publish
 * address (default 127.0.0.1) and a port of the configured range, each accepted connection
 * relayed to 127.0.0.1:PORT inside the sandbox from a socket created in its network namespace,
 * so that a server inside bound to 0.0.0.0 or to 127.0.0.1 only is reached alike (when
 * 127.0.0.1 refuses, [::1] is tried once: dev servers that resolve "localhost" to ::1).
 *
 * `connect` (PROTOCOL.md) makes a host loopback TCP service appear inside a sandbox at
 * 127.0.0.1:PORT, whatever the sandbox's network mode: sandboxd creates the listening socket
 * inside the sandbox's network namespace and relays every connection accepted on it to
 * 127.0.0.1:HOST_PORT in its own namespace (or to a host Unix socket).
 *
 * Here, on the daemon's loop, connections are accepted and their far end dialled; once both ends
 * are connected the pair goes to the relay process (relayproc.h: unprivileged, niced), which moves
 * the bytes.  Nothing blocks.  Per sandbox at most PORTS_CONN_MAX connections are live at once
 * (dialled here or relayed there); further ones wait in the listen backlog until one ends. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/loop.h"
#include "sandboxd/request.h"

#define PORTS_CONN_MAX 256      /* live relayed connections per sandbox */
#define PORTS_LISTENERS_MAX (NS_CONNECTS_MAX + NS_PUBLISH_MAX)

#include <netinet/in.h>

typedef struct ports_ctx ports_ctx;

/* Create the forwarding context on `loop`.  Remembers the calling thread's network namespace
 * (/proc/thread-self/ns/net) as "the host side": call it on the loop's thread, before any setns.
 * Returns 0 or -errno. */
int ports_new(ns_loop *loop, ports_ctx **out, ns_error *err);

/* In a process forked from the daemon that does not relay (the warm pool's zygote): close its
 * copies of the relay process's channel and pidfd, leaving the relay alone.  Nothing else of `p`
 * may be used afterwards in that process.  NULL is fine. */
void ports_close_inherited(ports_ctx *p);

/* Close every listener and connection, remove every watcher from the loop, free.  NULL is fine. */
void ports_free(ports_ctx *p);

/* Listen on 127.0.0.1:spec->port inside the network namespace `netns_fd` (an fd of
 * /proc/PID/ns/net, not consumed) on behalf of sandbox `sandbox_id`, and relay each accepted
 * connection to 127.0.0.1:spec->host_port in the daemon's own namespace, or, when spec->host_path
 * is set, to that Unix stream socket on the host, which must be a socket owned by `owner` (the
 * sandbox's owner) each time it is dialled (ports_host_socket_open); both directions, with
 * half-closes passed on (EOF one way becomes shutdown(SHUT_WR) on the other) and resets passed
 * on as resets.  A host service that refuses the connection shows up inside as a reset.  The
 * host socket need not exist yet (a restarted daemon re-adds connectors of a supervisor that is
 * still down): callers acting on a request check it first.
 *
 * Errors: EINVAL (bad id, port 0, netns_fd not a network namespace, or the daemon's own
 * namespace: a forward must never listen on the host), EADDRINUSE (the port is taken inside),
 * E2BIG (more than PORTS_LISTENERS_MAX forwards for the sandbox), ENOMEM, or the errno of the
 * failing call.  On error nothing is left. */
int ports_connect_add(ports_ctx *p, const char *sandbox_id, int netns_fd, const struct ns_connect *spec, uid_t owner,
                      ns_error *err);

/* Open the host Unix socket `path` as an O_PATH descriptor, checked: not a symlink at the end, a
 * socket, owned by `owner`.  Returns the fd, or -errno: ENOENT and the like from open(2),
 * ENOTSOCK, EACCES (another owner). */
int ports_host_socket_open(const char *path, uid_t owner, ns_error *err);

/* A TCP socket made inside the network namespace `netns_fd` (not consumed) and connecting to
 * `port` on its loopback: 127.0.0.1, or [::1] when 127.0.0.1 refuses at once (dev servers that
 * resolve "localhost" to ::1 listen there only).  Non-blocking: the connect may still be in
 * progress, and its outcome is the caller's to read (SO_ERROR).  For the supervisor's preview
 * proxy, which then speaks to the sandbox's server without a relay in between.  Returns the fd,
 * or -errno: EINVAL (not a network namespace, or the daemon's own), ECONNREFUSED (nothing
 * listens on either address), or the failing call's. */
int ports_dial(ports_ctx *p, int netns_fd, uint16_t port, ns_error *err);

/* Close the sandbox's listeners and live connections (connections get a reset).  Unknown ids are
 * ignored; idempotent. */
void ports_sandbox_remove(ports_ctx *p, const char *sandbox_id);

/* The sandbox's forwards in the order they were added: fills out[0 .. min(n, cap)) and returns
 * n, the total (so cap = 0 counts them). */
size_t ports_sandbox_list(ports_ctx *p, const char *sandbox_id, struct ns_connect *out, size_t cap);

/* Where publish listeners go: host address `addr`, ports lo..hi (1 <= lo <= hi).  Until this is
 * called ports_publish_add fails with EOPNOTSUPP. */
void ports_publish_config(ports_ctx *p, struct in_addr addr, uint16_t lo, uint16_t hi);

/* Listen on the publish address at `host_port` (0: the first free port of the range) on behalf of
 * sandbox `sandbox_id`, and relay each accepted connection to port `port` on the loopback of the
 * network namespace `netns_fd` (not consumed; a copy is kept while the publish lives).  The
 * chosen host port goes to *out_host_port.
 *
 * Errors: EINVAL (bad id, port 0, not a sandbox's network namespace), ERANGE (host_port outside
 * the range), EEXIST (port already published for this sandbox), E2BIG (more than NS_PUBLISH_MAX),
 * EADDRINUSE (host_port taken, or no free port in the range), EOPNOTSUPP (no range configured),
 * or the errno of the failing call.  On error nothing is left. */
int ports_publish_add(ports_ctx *p, const char *sandbox_id, int netns_fd, uint16_t port, uint16_t host_port,
                      uint16_t *out_host_port, ns_error *err);

/* Close the publish of `port` and reset its live connections.  ENOENT when it is not published. */
int ports_publish_remove(ports_ctx *p, const char *sandbox_id, uint16_t port, ns_error *err);

/* The sandbox's publishes in the order added: fills out[0 .. min(n, cap)), returns n. */
size_t ports_publish_list(ports_ctx *p, const char *sandbox_id, struct ns_publish *out, size_t cap);

/* The publish address as text, in `buf`. */
const char *ports_publish_addr(ports_ctx *p, char buf[static 16]);

/* The TCP ports in LISTEN state in the network namespace of the process whose /proc directory is
 * `proc_fd` (read from its net/tcp and net/tcp6), sorted, deduplicated, at most `cap`. */
size_t ports_listening(int proc_fd, uint16_t *out, size_t cap);
