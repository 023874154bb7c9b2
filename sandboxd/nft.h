/* nftables rules for sandbox networking: one table of nightshift's own (`inet nightshift`),
 * written once by the daemon, matching sandbox links by interface group so that making a sandbox
 * adds no rule work.  Applied through the `nft` binary (Debian package nftables) with a script on
 * stdin, in one transaction; no other table is ever read or written. */
#pragma once

#include <stdint.h>

#include "common/err.h"

#define NFT_TABLE "nightshift"

/* Interface groups of the host ends of sandbox veth pairs: private links, and links of sandboxes
 * in `nat` mode (which also get masqueraded outbound through the uplink). */
#define NFT_GROUP_PRIVATE 1314062337u /* 0x4e530001: "NS" 1 */
#define NFT_GROUP_NAT 1314062338u     /* 0x4e530002 */

/* Replace (or create) table inet nightshift atomically: input from sandbox links dropped except
 * established/related replies; forward from and to sandbox links dropped (IPv4 and IPv6); with
 * `nat_uplink` (an interface name, or NULL) plus forward from NAT-mode links out of the uplink,
 * their replies, and masquerade of `pool` (CIDR text) there.  Idempotent. */
int nft_install(const char *nat_uplink, const char *pool, ns_error *err);

/* Delete table inet nightshift when it exists.  Idempotent. */
int nft_remove(ns_error *err);

/* True when `name` is a valid interface name for --nat-uplink (1..15 of [A-Za-z0-9_.-]). */
int nft_ifname_valid(const char *name);
