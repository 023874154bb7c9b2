/* Sandbox networking: a veth pair per `private` (or `nat`) sandbox, made with libnl, its inner end
 * created directly inside the sandbox's network namespace; IPv4 addresses from a pool; the rules
 * of nft.c installed once.  One context per daemon. */
#pragma once

#include <cjson/cJSON.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define NET_DEFAULT_POOL "10.200.0.0/16"
#define NET_INNER_NAME "eth0"

enum net_mode { NET_NONE = 0, NET_PRIVATE = 1, NET_NAT = 2 };

/* What a sandbox holds of the network: recorded in its state file for adoption. */
struct net_link {
        enum net_mode mode;
        int32_t addr_slot;    /* index of its /30 in the pool, -1 = none */
        int ifindex;          /* host end, in the daemon's network namespace */
        uint32_t counter;     /* the host end is named "nsv<counter>" */
};

struct net_ctx;

/* A pair to make elsewhere (a pool builder: net_make_pair), as the daemon reserved it. */
struct net_pair_plan {
        uint32_t group;   /* the host end's interface group */
        uint32_t counter; /* the host end is "nsv<counter>" */
        uint32_t host_ip, inner_ip; /* host order, /30 */
};

/* Parse "none" | "private" | "nat" (NULL = none).  -EINVAL for anything else. */
int net_mode_parse(const char *s, enum net_mode *out);
const char *net_mode_name(enum net_mode m);

/* Set up networking: parse `pool` (a CIDR of prefix /8../24, NULL = NET_DEFAULT_POOL; "none"
 * turns private networking off), open the daemon's netlink socket and install the rules.
 * `nat_uplink` (or NULL) enables `nat`.  On a failure to install the rules the context is still
 * made, with private networking refused and the reason kept for the error replies. */
int net_new(struct net_ctx **out, const char *pool, const char *nat_uplink, ns_error *err);

/* Daemon exit.  The table is removed only when no link of ours is left in the namespace (sandboxes
 * outlive the daemon and are re-adopted; their links must stay guarded meanwhile); else it stays,
 * and the next start replaces it atomically. */
void net_free(struct net_ctx *n);

/* Refuse a mode this daemon cannot give (with a message for the client). */
int net_check_mode(const struct net_ctx *n, enum net_mode mode, ns_error *err);

/* Give the sandbox whose network namespace is `netns_fd` a veth pair: host end "nsv<N>" in the
 * interface group of `mode`, IPv6 off, the pool's next free /30 (host .1, sandbox .2); inside,
 * NET_INNER_NAME with IPv6 off and the default route to the host end.  On failure nothing is left. */
int net_attach(struct net_ctx *n, int netns_fd, enum net_mode mode, struct net_link *out, ns_error *err);

/* net_attach in three steps, for a pair made by another process (a warm-pool builder, off the
 * daemon's loop: making a pair waits for the kernel's rtnl lock).  net_reserve takes the next free
 * address pair and name for `mode` and says what to make in `plan` (*out holds the reservation;
 * release it with net_unreserve unless net_commit records the pair made, whose host end has index
 * `host_ifindex`).  net_make_pair runs anywhere in the daemon's network namespace (own sockets;
 * no net_ctx): the pair, IPv6 off on the host end, addresses, links up, default route; on failure
 * nothing is left. */
int net_reserve(struct net_ctx *n, enum net_mode mode, struct net_link *out, struct net_pair_plan *plan, ns_error *err);
int net_make_pair(const struct net_pair_plan *plan, int netns_fd, int *host_ifindex, ns_error *err);
void net_commit(struct net_ctx *n, struct net_link *l, int host_ifindex);
void net_unreserve(struct net_ctx *n, struct net_link *l);

/* In a new sandbox's network namespace (its init's set-up): IPv6 off for every link made there
 * from now on, so the inner end of a pair never gets an IPv6 address; loopback keeps ::1.  A
 * kernel without IPv6 is fine. */
int net_disable_ipv6_default(ns_error *err);

/* The sandbox is being destroyed: its pair goes with its network namespace (the kernel deletes
 * both ends when the namespace dies, asynchronously, off every request), and its address pair is
 * reused only once the host end's ifindex is gone.  Safe on a link of mode NET_NONE. */
void net_detach(struct net_ctx *n, const struct net_link *l);

/* Delete the sandbox's pair now (both ends; the kernel takes ~20 ms) and free its address pair
 * at once: for a warm-pool sandbox destroyed at daemon exit.  Safe on a link of mode NET_NONE. */
void net_delete(struct net_ctx *n, const struct net_link *l);

/* A re-adopted sandbox's link (from its state file): its address pair is marked in use. */
void net_adopt(struct net_ctx *n, const struct net_link *l);

/* After adoption: delete, by ifindex, every link in our groups that no adopted sandbox holds (the
 * leftovers of a crash).  Start-up only: each delete takes the kernel ~20 ms. */
void net_sweep(struct net_ctx *n);

/* Addresses of a link as text ("10.200.0.1"), for list and create replies. */
void net_link_to_json(const struct net_ctx *n, const struct net_link *l, cJSON *o);
