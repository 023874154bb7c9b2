/* Sandbox networking with libnl: veth pairs, addresses, routes.  See net.h.
 *
 * A pair costs about 0.7 ms when its inner end is created directly in the sandbox's namespace
 * (IFLA_NET_NS_FD on the peer); moving a link into a namespace afterwards costs ~20 ms, so it is
 * never done.  Deleting a link costs the kernel ~20 ms too, and its name stays taken meanwhile:
 * names are counters ("nsv<N>"), never reused within a run, and deletion is left to the kernel,
 * which removes both ends when the sandbox's namespace dies. */
#include "sandboxd/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "common/cleanup.h"
#include "sandboxd/nft.h"

#define NET_NAME_PREFIX "nsv"
#define NET_NAME_TRIES 64

enum slot_state { SLOT_FREE = 0, SLOT_USED = 1, SLOT_RELEASING = 2 };

struct net_ctx {
        bool enabled;         /* private networking available */
        char why_off[NS_ERROR_MSG_MAX];
        bool nat;             /* --nat-uplink given and the rules hold it */
        bool rules;           /* our table is installed */
        char pool_text[24];
        uint32_t pool_base;   /* host order */
        uint32_t n_slots;     /* /30s in the pool */
        uint8_t *state;       /* per slot: enum slot_state */
        int *ifindex;         /* per slot: the host end while used or releasing */
        uint32_t *counter;    /* per slot: the host end's name number */
        uint32_t cursor;      /* next slot to try: round robin, so addresses rest before reuse */
        uint32_t next_name;
        int host_netns;       /* the daemon's own network namespace */
        struct nl_sock *sock; /* NETLINK_ROUTE in the daemon's namespace */
};

int net_mode_parse(const char *s, enum net_mode *out) {
        if (!s || !strcmp(s, "none"))
                *out = NET_NONE;
        else if (!strcmp(s, "private"))
                *out = NET_PRIVATE;
        else if (!strcmp(s, "nat"))
                *out = NET_NAT;
        else
                return -EINVAL;
        return 0;
}

const char *net_mode_name(enum net_mode m) {
        return m == NET_PRIVATE ? "private" : m == NET_NAT ? "nat" : "none";
}

static int parse_pool(const char *pool, uint32_t *base, uint32_t *n_slots, ns_error *err) {
        char ip[32];
        const char *slash = strchr(pool, '/');
        if (!slash || (size_t) (slash - pool) >= sizeof ip)
                return ns_err(err, EINVAL, "--net-pool '%s' is not an IPv4 CIDR (like %s)", pool, NET_DEFAULT_POOL);
        memcpy(ip, pool, (size_t) (slash - pool));
        ip[slash - pool] = '\0';
        char *end;
        errno = 0;
        long plen = strtol(slash + 1, &end, 10);
        struct in_addr a;
        if (*end || errno || slash[1] == '\0' || inet_pton(AF_INET, ip, &a) != 1)
                return ns_err(err, EINVAL, "--net-pool '%s' is not an IPv4 CIDR (like %s)", pool, NET_DEFAULT_POOL);
        if (plen < 8 || plen > 24)
                return ns_err(err, EINVAL, "--net-pool '%s': the prefix must be /8../24", pool);
        uint32_t mask = plen == 0 ? 0 : ~0u << (32 - plen);
        uint32_t b = ntohl(a.s_addr);
        if (b & ~mask)
                return ns_err(err, EINVAL, "--net-pool '%s' has host bits set", pool);
        *base = b;
        *n_slots = (1u << (32 - plen)) / 4;
        return 0;
}

static bool our_group(uint32_t g) {
        return g == NFT_GROUP_PRIVATE || g == NFT_GROUP_NAT;
}

int net_new(struct net_ctx **out, const char *pool, const char *nat_uplink, ns_error *err) {
        struct net_ctx *n = calloc(1, sizeof *n);
        if (!n)
                return ns_err(err, ENOMEM, "out of memory");
        n->host_netns = -1;
        int r;
        if (!pool)
                pool = NET_DEFAULT_POOL;
        if (!strcmp(pool, "none")) {
                snprintf(n->why_off, sizeof n->why_off, "private networking is off (--net-pool none)");
                *out = n;
                return 0;
        }
        if ((r = parse_pool(pool, &n->pool_base, &n->n_slots, err)) < 0)
                goto fail;
        snprintf(n->pool_text, sizeof n->pool_text, "%s", pool);
        n->state = calloc(n->n_slots, 1);
        n->ifindex = calloc(n->n_slots, sizeof *n->ifindex);
        n->counter = calloc(n->n_slots, sizeof *n->counter);
        if (!n->state || !n->ifindex || !n->counter) {
                r = ns_err(err, ENOMEM, "out of memory");
                goto fail;
        }
        n->host_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (n->host_netns < 0) {
                r = ns_err_sys(err, errno, "open /proc/self/ns/net");
                goto fail;
        }
        n->sock = nl_socket_alloc();
        if (!n->sock || nl_connect(n->sock, NETLINK_ROUTE) < 0) {
                r = ns_err(err, EIO, "netlink socket");
                goto fail;
        }
        ns_error e = { 0 };
        if (nft_install(nat_uplink, n->pool_text, &e) < 0) {
                /* Fail closed: without the rules a private sandbox could reach the host. */
                snprintf(n->why_off, sizeof n->why_off, "private networking is unavailable: %.200s", e.msg);
        } else {
                n->rules = true;
                n->enabled = true;
                n->nat = nat_uplink != NULL;
        }
        *out = n;
        return 0;
fail:
        net_free(n);
        return r;
}

/* True when a link of one of our groups exists in the namespace (ours or another daemon's). */
static bool any_link_of_ours(struct net_ctx *n) {
        struct nl_cache *cache = NULL;
        if (rtnl_link_alloc_cache(n->sock, AF_UNSPEC, &cache) < 0)
                return true; /* unknown: keep the rules */
        bool found = false;
        for (struct nl_object *o = nl_cache_get_first(cache); o && !found; o = nl_cache_get_next(o))
                found = our_group(rtnl_link_get_group((struct rtnl_link *) o));
        nl_cache_free(cache);
        return found;
}

void net_free(struct net_ctx *n) {
        if (!n)
                return;
        if (n->rules && n->sock && !any_link_of_ours(n)) {
                ns_error e;
                if (nft_remove(&e) < 0)
                        fprintf(stderr, "<4>removing table inet %s: %s\n", NFT_TABLE, e.msg);
        }
        if (n->sock)
                nl_socket_free(n->sock);
        if (n->host_netns >= 0)
                close(n->host_netns);
        free(n->state);
        free(n->ifindex);
        free(n->counter);
        free(n);
}

int net_check_mode(const struct net_ctx *n, enum net_mode mode, ns_error *err) {
        if (mode == NET_NONE)
                return 0;
        if (!n || !n->enabled)
                return ns_err(err, EOPNOTSUPP, "%s", n ? n->why_off : "private networking is unavailable");
        if (mode == NET_NAT && !n->nat)
                return ns_err(err, EOPNOTSUPP, "net mode 'nat' is off: the operator has not configured --nat-uplink");
        return 0;
}

/* The host end's ifindex still names the link we made (it can vanish at any moment). */
static bool host_end_exists(int ifindex, uint32_t counter) {
        char name[IF_NAMESIZE], want[IF_NAMESIZE];
        if (!if_indextoname((unsigned) ifindex, name))
                return false;
        snprintf(want, sizeof want, NET_NAME_PREFIX "%u", counter);
        return strcmp(name, want) == 0;
}

/* The next free /30, round robin; a released one is free once its host end is gone. */
static int take_slot(struct net_ctx *n, uint32_t *out, ns_error *err) {
        for (uint32_t k = 0; k < n->n_slots; k++) {
                uint32_t i = (n->cursor + k) % n->n_slots;
                if (n->state[i] == SLOT_RELEASING && !host_end_exists(n->ifindex[i], n->counter[i]))
                        n->state[i] = SLOT_FREE;
                if (n->state[i] == SLOT_FREE) {
                        n->state[i] = SLOT_USED;
                        n->cursor = (i + 1) % n->n_slots;
                        *out = i;
                        return 0;
                }
        }
        return ns_err(err, EAGAIN, "the address pool %s is exhausted", n->pool_text);
}

static uint32_t slot_addr(const struct net_ctx *n, uint32_t slot, uint32_t host) {
        return n->pool_base + slot * 4 + host;
}

static int write_sysctl(const char *path, const char *val) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno; /* no IPv6 in this kernel: nothing to disable */
        return write(fd, val, strlen(val)) == (ssize_t) strlen(val) ? 0 : -errno;
}

static int add_addr(struct nl_sock *sk, int ifindex, uint32_t ip, ns_error *err) {
        struct rtnl_addr *a = rtnl_addr_alloc();
        uint32_t be = htonl(ip);
        struct nl_addr *local = nl_addr_build(AF_INET, &be, 4);
        int r = -ENOMEM;
        if (a && local) {
                nl_addr_set_prefixlen(local, 30);
                rtnl_addr_set_ifindex(a, ifindex);
                rtnl_addr_set_family(a, AF_INET);
                r = rtnl_addr_set_local(a, local);
                if (r == 0)
                        r = rtnl_addr_add(sk, a, 0);
        }
        if (local)
                nl_addr_put(local);
        if (a)
                rtnl_addr_put(a);
        return r < 0 ? ns_err(err, EIO, "add address: %s", nl_geterror(r)) : 0;
}

static int add_default_route(struct nl_sock *sk, int ifindex, uint32_t gw, ns_error *err) {
        struct rtnl_route *rt = rtnl_route_alloc();
        struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
        uint32_t zero = 0, be = htonl(gw);
        struct nl_addr *dst = nl_addr_build(AF_INET, &zero, 4);
        struct nl_addr *via = nl_addr_build(AF_INET, &be, 4);
        int r = -ENOMEM;
        if (rt && nh && dst && via) {
                nl_addr_set_prefixlen(dst, 0);
                rtnl_route_set_family(rt, AF_INET);
                rtnl_route_set_table(rt, RT_TABLE_MAIN);
                rtnl_route_set_scope(rt, RT_SCOPE_UNIVERSE);
                rtnl_route_set_protocol(rt, RTPROT_BOOT);
                rtnl_route_set_type(rt, RTN_UNICAST);
                rtnl_route_set_dst(rt, dst);
                rtnl_route_nh_set_ifindex(nh, ifindex);
                rtnl_route_nh_set_gateway(nh, via);
                rtnl_route_add_nexthop(rt, nh);
                nh = NULL; /* the route owns it */
                r = rtnl_route_add(sk, rt, NLM_F_CREATE | NLM_F_EXCL);
        }
        if (nh)
                rtnl_route_nh_free(nh);
        if (dst)
                nl_addr_put(dst);
        if (via)
                nl_addr_put(via);
        if (rt)
                rtnl_route_put(rt);
        return r < 0 ? ns_err(err, EIO, "add default route: %s", nl_geterror(r)) : 0;
}

/* Bring link `name` up in the namespace of `sock` (an AF_INET socket made there). */
static int set_up(int sock, const char *name, ns_error *err) {
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
        if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
                return ns_err_sys(err, errno, "link %s flags", name);
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
                return ns_err_sys(err, errno, "set link %s up", ifr.ifr_name);
        return 0;
}

/* Inside the sandbox's namespace: a netlink socket and an ioctl socket bound there for the inner
 * configuration (sockets stay in the namespace they were made in); the thread returns to
 * `host_netns` before anything else.  IPv6 is already off for links made there: init's set-up
 * wrote net.ipv6.conf.default.disable_ipv6 (net_disable_ipv6_default) before anything of the
 * sandbox's ran, off this request's path (~0.3 ms: a fresh namespace's first sysctl). */
static int enter_inner(int host_netns, int netns_fd, struct nl_sock **inner, int *inner_ioctl, ns_error *err) {
        if (setns(netns_fd, CLONE_NEWNET) < 0)
                return ns_err_sys(err, errno, "enter the sandbox's network namespace");
        int r = 0;
        struct nl_sock *sk = nl_socket_alloc();
        if (r == 0 && (!sk || nl_connect(sk, NETLINK_ROUTE) < 0))
                r = ns_err(err, EIO, "netlink socket in the sandbox");
        int io = r < 0 ? -1 : socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (r == 0 && io < 0)
                r = ns_err_sys(err, errno, "socket in the sandbox");
        /* Back home, whatever happened: a daemon left in a sandbox's namespace would make every
         * later link there. */
        if (setns(host_netns, CLONE_NEWNET) < 0) {
                fprintf(stderr, "<2>cannot return to the daemon's network namespace: %s\n", strerror(errno));
                abort();
        }
        if (r < 0) {
                if (sk)
                        nl_socket_free(sk);
                if (io >= 0)
                        close(io);
                return r;
        }
        *inner = sk;
        *inner_ioctl = io;
        return 0;
}

/* Create the pair: host end `name` in `group`, inner end directly in the sandbox's namespace; both
 * down (IFF_UP on the peer at creation is refused by recent kernels: ENOTCONN). */
static int make_pair(struct nl_sock *sock, const char *name, uint32_t group, int netns_fd) {
        struct rtnl_link *link = rtnl_link_veth_alloc();
        if (!link)
                return -NLE_NOMEM;
        rtnl_link_set_name(link, name);
        rtnl_link_set_group(link, group);
        struct rtnl_link *peer = rtnl_link_veth_get_peer(link);
        rtnl_link_set_name(peer, NET_INNER_NAME);
        rtnl_link_set_ns_fd(peer, netns_fd);
        rtnl_link_put(peer);
        int r = rtnl_link_add(sock, link, NLM_F_CREATE | NLM_F_EXCL);
        rtnl_link_veth_release(link);
        return r;
}

static void delete_link_on(struct nl_sock *sock, int ifindex) {
        struct rtnl_link *l = rtnl_link_alloc();
        if (!l)
                return;
        rtnl_link_set_ifindex(l, ifindex);
        rtnl_link_delete(sock, l);
        rtnl_link_put(l);
}

static void delete_link(struct net_ctx *n, int ifindex) {
        delete_link_on(n->sock, ifindex);
}

/* Everything after the pair's creation: IPv6 off on the host end, addresses, links up, route. */
static int configure_pair(struct nl_sock *host_sock, int host_netns, const struct net_pair_plan *p, const char *name,
                          int host_if, int netns_fd, ns_error *err) {
        struct nl_sock *inner = NULL;
        _cleanup_close_ int inner_io = -1, host_io = -1;
        int r = enter_inner(host_netns, netns_fd, &inner, &inner_io, err);
        if (r < 0)
                return r;
        /* IPv6 off on the host end before it is up: with a link-local address there, a sandbox
         * could reach host services bound to [::] (the rules drop IPv6 too; this is the second
         * wall). */
        char path[96];
        snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
        if ((r = write_sysctl(path, "1")) < 0) {
                r = ns_err_sys(err, -r, "disable IPv6 on %s", name);
                goto out;
        }
        host_io = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (host_io < 0) {
                r = ns_err_sys(err, errno, "socket");
                goto out;
        }
        if ((r = add_addr(host_sock, host_if, p->host_ip, err)) < 0 || (r = set_up(host_io, name, err)) < 0 ||
            (r = set_up(inner_io, NET_INNER_NAME, err)) < 0)
                goto out;
        /* The inner end's index, asked of a socket that lives in the sandbox's namespace. */
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", NET_INNER_NAME);
        if (ioctl(inner_io, SIOCGIFINDEX, &ifr) < 0) {
                r = ns_err_sys(err, errno, "find %s in the sandbox", NET_INNER_NAME);
                goto out;
        }
        int in_if = ifr.ifr_ifindex;
        if ((r = add_addr(inner, in_if, p->inner_ip, err)) < 0 || (r = add_default_route(inner, in_if, p->host_ip, err)) < 0)
                goto out;
out:
        nl_socket_free(inner);
        return r;
}

int net_make_pair(const struct net_pair_plan *p, int netns_fd, int *host_ifindex, ns_error *err) {
        _cleanup_close_ int host_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (host_netns < 0)
                return ns_err_sys(err, errno, "open /proc/self/ns/net");
        struct nl_sock *sock = nl_socket_alloc();
        if (!sock || nl_connect(sock, NETLINK_ROUTE) < 0) {
                if (sock)
                        nl_socket_free(sock);
                return ns_err(err, EIO, "netlink socket");
        }
        char name[IF_NAMESIZE];
        snprintf(name, sizeof name, NET_NAME_PREFIX "%u", p->counter);
        int r = make_pair(sock, name, p->group, netns_fd);
        int host_if = 0;
        if (r < 0)
                r = ns_err(err, EIO, "create veth pair: %s", nl_geterror(r));
        else if ((host_if = (int) if_nametoindex(name)) <= 0)
                r = ns_err_sys(err, errno, "veth %s vanished", name);
        else
                r = configure_pair(sock, host_netns, p, name, host_if, netns_fd, err);
        if (r < 0 && host_if > 0)
                delete_link_on(sock, host_if);
        nl_socket_free(sock);
        if (r == 0)
                *host_ifindex = host_if;
        return r;
}

int net_reserve(struct net_ctx *n, enum net_mode mode, struct net_link *out, struct net_pair_plan *plan, ns_error *err) {
        int r = net_check_mode(n, mode, err);
        if (r < 0)
                return r;
        uint32_t slot = 0;
        if ((r = take_slot(n, &slot, err)) < 0)
                return r;
        uint32_t counter = n->next_name++;
        n->ifindex[slot] = 0;
        n->counter[slot] = counter;
        *out = (struct net_link){ .mode = mode, .addr_slot = (int32_t) slot, .ifindex = 0, .counter = counter };
        *plan = (struct net_pair_plan){ .group = mode == NET_NAT ? NFT_GROUP_NAT : NFT_GROUP_PRIVATE, .counter = counter,
                                        .host_ip = slot_addr(n, slot, 1), .inner_ip = slot_addr(n, slot, 2) };
        return 0;
}

void net_commit(struct net_ctx *n, struct net_link *l, int host_ifindex) {
        l->ifindex = host_ifindex;
        if (n && l->addr_slot >= 0 && (uint32_t) l->addr_slot < n->n_slots)
                n->ifindex[l->addr_slot] = host_ifindex;
}

void net_unreserve(struct net_ctx *n, struct net_link *l) {
        if (n && l->mode != NET_NONE && l->addr_slot >= 0 && (uint32_t) l->addr_slot < n->n_slots)
                n->state[l->addr_slot] = SLOT_FREE;
        *l = (struct net_link){ .mode = NET_NONE, .addr_slot = -1 };
}

int net_attach(struct net_ctx *n, int netns_fd, enum net_mode mode, struct net_link *out, ns_error *err) {
        int r = net_check_mode(n, mode, err);
        if (r < 0)
                return r;
        uint32_t slot = 0;
        if ((r = take_slot(n, &slot, err)) < 0)
                return r;
        struct net_pair_plan p = { .group = mode == NET_NAT ? NFT_GROUP_NAT : NFT_GROUP_PRIVATE,
                                   .host_ip = slot_addr(n, slot, 1), .inner_ip = slot_addr(n, slot, 2) };
        int host_if = 0;
        char name[IF_NAMESIZE];
        int nr = -NLE_EXIST;
        for (int t = 0; t < NET_NAME_TRIES && nr == -NLE_EXIST; t++) {
                p.counter = n->next_name++;
                snprintf(name, sizeof name, NET_NAME_PREFIX "%u", p.counter);
                nr = make_pair(n->sock, name, p.group, netns_fd);
        }
        if (nr < 0) {
                r = ns_err(err, EIO, "create veth pair: %s", nl_geterror(nr));
                goto fail;
        }
        host_if = (int) if_nametoindex(name);
        if (host_if <= 0) {
                r = ns_err_sys(err, errno, "veth %s vanished", name);
                goto fail;
        }
        if ((r = configure_pair(n->sock, n->host_netns, &p, name, host_if, netns_fd, err)) < 0)
                goto fail;
        n->ifindex[slot] = host_if;
        n->counter[slot] = p.counter;
        *out = (struct net_link){ .mode = mode, .addr_slot = (int32_t) slot, .ifindex = host_if, .counter = p.counter };
        return 0;
fail:
        /* A failed create is not the common path: delete the pair now (both ends go). */
        if (host_if > 0)
                delete_link(n, host_if);
        n->state[slot] = SLOT_FREE;
        return r;
}

int net_disable_ipv6_default(ns_error *err) {
        int r = write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        return r < 0 ? ns_err_sys(err, -r, "disable IPv6 for new links") : 0;
}

void net_detach(struct net_ctx *n, const struct net_link *l) {
        if (!n || l->mode == NET_NONE || l->addr_slot < 0 || (uint32_t) l->addr_slot >= n->n_slots)
                return;
        n->state[l->addr_slot] = SLOT_RELEASING;
        n->ifindex[l->addr_slot] = l->ifindex;
        n->counter[l->addr_slot] = l->counter;
}

void net_delete(struct net_ctx *n, const struct net_link *l) {
        if (!n || l->mode == NET_NONE || l->addr_slot < 0 || (uint32_t) l->addr_slot >= n->n_slots)
                return;
        if (host_end_exists(l->ifindex, l->counter))
                delete_link(n, l->ifindex);
        n->state[l->addr_slot] = SLOT_FREE;
}

void net_adopt(struct net_ctx *n, const struct net_link *l) {
        if (!n || l->mode == NET_NONE || l->addr_slot < 0 || (uint32_t) l->addr_slot >= n->n_slots)
                return;
        n->state[l->addr_slot] = SLOT_USED;
        n->ifindex[l->addr_slot] = l->ifindex;
        n->counter[l->addr_slot] = l->counter;
        if (l->counter >= n->next_name)
                n->next_name = l->counter + 1;
}

void net_sweep(struct net_ctx *n) {
        if (!n || !n->sock || !n->state)
                return;
        struct nl_cache *cache = NULL;
        if (rtnl_link_alloc_cache(n->sock, AF_UNSPEC, &cache) < 0)
                return;
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_link *l = (struct rtnl_link *) o;
                if (!our_group(rtnl_link_get_group(l)))
                        continue;
                int idx = rtnl_link_get_ifindex(l);
                bool held = false;
                for (uint32_t i = 0; i < n->n_slots && !held; i++)
                        held = n->state[i] == SLOT_USED && n->ifindex[i] == idx;
                const char *nm = rtnl_link_get_name(l);
                if (held)
                        continue;
                unsigned long c;
                if (nm && !strncmp(nm, NET_NAME_PREFIX, 3) && (c = strtoul(nm + 3, NULL, 10)) >= n->next_name &&
                    c < UINT32_MAX)
                        n->next_name = (uint32_t) c + 1;
                fprintf(stderr, "<5>deleting stale sandbox link %s\n", nm ? nm : "?");
                delete_link(n, idx);
        }
        nl_cache_free(cache);
}

void net_link_to_json(const struct net_ctx *n, const struct net_link *l, cJSON *o) {
        cJSON_AddStringToObject(o, "net", net_mode_name(l->mode));
        if (!n || l->mode == NET_NONE || l->addr_slot < 0 || (uint32_t) l->addr_slot >= n->n_slots)
                return;
        char host[INET_ADDRSTRLEN], inner[INET_ADDRSTRLEN];
        uint32_t h = htonl(slot_addr(n, (uint32_t) l->addr_slot, 1)), s = htonl(slot_addr(n, (uint32_t) l->addr_slot, 2));
        inet_ntop(AF_INET, &h, host, sizeof host);
        inet_ntop(AF_INET, &s, inner, sizeof inner);
        cJSON *a = cJSON_AddObjectToObject(o, "net_addr");
        cJSON_AddStringToObject(a, "host", host);
        cJSON_AddStringToObject(a, "sandbox", inner);
        char ifname[IF_NAMESIZE];
        snprintf(ifname, sizeof ifname, NET_NAME_PREFIX "%u", l->counter);
        cJSON_AddStringToObject(a, "link", ifname);
}
