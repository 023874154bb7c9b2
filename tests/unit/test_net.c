/* sandboxd/net.c and nft.c: the validation that runs before anything touches the kernel (net
 * modes, --net-pool, --nat-uplink, `nat` refused unless configured).  Nothing here creates a link
 * or a rule; test_net_private.sh does that inside a namespace of its own. */
#include <string.h>

#include "sandboxd/net.h"
#include "sandboxd/nft.h"
#include "tap.h"

int main(void) {
        enum net_mode m;
        ok(net_mode_parse(NULL, &m) == 0 && m == NET_NONE, "no net mode is none");
        ok(net_mode_parse("private", &m) == 0 && m == NET_PRIVATE, "private parses");
        ok(net_mode_parse("nat", &m) == 0 && m == NET_NAT, "nat parses");
        ok(net_mode_parse("bridge", &m) == -EINVAL && net_mode_parse("", &m) == -EINVAL, "anything else is refused");

        ok(nft_ifname_valid("eth0") && nft_ifname_valid("enp0s31f6") && nft_ifname_valid("br-lan.10"), "uplink names");
        ok(!nft_ifname_valid("") && !nft_ifname_valid("sixteen-chars-xx") && !nft_ifname_valid("a\"b") &&
                   !nft_ifname_valid("a b") && !nft_ifname_valid("x;y") && !nft_ifname_valid("a}"),
           "uplink names that could not be interfaces (or would break the nft script) are refused");
        ns_error err = { 0 };
        ok(nft_install("bad name", "10.200.0.0/16", &err) == -EINVAL && strstr(err.msg, "nat-uplink"),
           "the rules refuse a bad uplink before running nft: %s", err.msg);
        ok(nft_install(NULL, "10.200.0.0/16; flush ruleset", &err) == -EINVAL, "and a pool that is not a CIDR");

        static const char *const bad_pools[] = { "10.200.0.0", "10.200.0.0/33", "10.200.0.1/16", "abc/16", "10.0.0.0/4",
                                                 "10.0.0.0/25", "10.0.0.0/", "10.0.0.0/16x", "::1/64" };
        for (size_t i = 0; i < sizeof bad_pools / sizeof *bad_pools; i++) {
                struct net_ctx *n = NULL;
                ok(net_new(&n, bad_pools[i], NULL, &err) == -EINVAL && !n && strstr(err.msg, "--net-pool"),
                   "--net-pool '%s' is refused: %s", bad_pools[i], err.msg);
        }
        struct net_ctx *off = NULL;
        ok(net_new(&off, "none", NULL, &err) == 0 && off, "--net-pool none turns private networking off");
        ok(net_check_mode(off, NET_NONE, &err) == 0, "none is always available");
        ok(net_check_mode(off, NET_PRIVATE, &err) == -EOPNOTSUPP && strstr(err.msg, "off"),
           "private is refused with the reason: %s", err.msg);
        ok(net_check_mode(off, NET_NAT, &err) == -EOPNOTSUPP, "and so is nat");
        struct net_link l = { .mode = NET_NONE, .addr_slot = -1 };
        net_detach(off, &l);
        net_free(off);
        ok(net_check_mode(NULL, NET_PRIVATE, &err) == -EOPNOTSUPP, "no context: refused, never unguarded");
        return tap_done();
}
