/* The nightshift nftables table, applied with `nft -f -`.  See nft.h. */
#include "sandboxd/nft.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

#define NFT_SCRIPT_MAX 4096
#define NFT_TIMEOUT_MS 10000

static const char *nft_path(void) {
        static const char *const paths[] = { "/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft" };
        for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

/* Run `nft -f -` with `script` on stdin; its stderr (bounded) becomes the error message. */
static int nft_run(const char *script, ns_error *err) {
        const char *nft = nft_path();
        if (!nft)
                return ns_err(err, ENOENT, "the nft binary is not installed (Debian package nftables)");
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return ns_err_sys(err, errno, "pipe");
        if (pipe2(out, O_CLOEXEC) < 0) {
                int e = errno;
                close(in[0]);
                close(in[1]);
                return ns_err_sys(err, e, "pipe");
        }
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(in[0]), close(in[1]), close(out[0]), close(out[1]);
                return ns_err_sys(err, e, "fork nft");
        }
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                dup2(in[0], 0);
                dup2(out[1], 1);
                dup2(out[1], 2);
                char *const argv[] = { (char *) nft, (char *) "-f", (char *) "-", NULL };
                char *const envp[] = { (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
                execve(nft, argv, envp);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        _cleanup_close_ int wfd = in[1];
        _cleanup_close_ int rfd = out[0];
        size_t len = strlen(script), off = 0;
        while (off < len) {
                ssize_t n = write(wfd, script + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                off += (size_t) n;
        }
        close(TAKE_FD(wfd));
        char msg[512];
        size_t mlen = 0;
        struct pollfd p = { .fd = rfd, .events = POLLIN };
        for (;;) {
                int pr = poll(&p, 1, NFT_TIMEOUT_MS);
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr <= 0) {
                        kill(pid, SIGKILL);
                        break;
                }
                char buf[256];
                ssize_t n = read(rfd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                size_t take = (size_t) n < sizeof msg - 1 - mlen ? (size_t) n : sizeof msg - 1 - mlen;
                memcpy(msg + mlen, buf, take);
                mlen += take;
        }
        msg[mlen] = '\0';
        for (char *c = msg; *c; c++)
                if (*c == '\n')
                        *c = ' ';
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return ns_err(err, EIO, "nft failed (status %d): %s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                              mlen ? msg : "no message");
        return 0;
}

int nft_ifname_valid(const char *name) {
        size_t n = strlen(name);
        if (n == 0 || n > 15)
                return 0;
        for (const char *c = name; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                      *c == '.' || *c == '-'))
                        return 0;
        return 1;
}

static bool cidr_plain(const char *s) {
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || *s == '.' || *s == '/'))
                        return false;
        return true;
}

int nft_install(const char *nat_uplink, const char *pool, ns_error *err) {
        if (nat_uplink && !nft_ifname_valid(nat_uplink))
                return ns_err(err, EINVAL, "--nat-uplink: '%s' is not an interface name", nat_uplink);
        if (!pool || !cidr_plain(pool) || strlen(pool) > 18)
                return ns_err(err, EINVAL, "bad address pool");
        char nat_fwd[256] = "", nat_chain[512] = "";
        if (nat_uplink) {
                snprintf(nat_fwd, sizeof nat_fwd,
                         "    iifgroup %u oifname \"%s\" meta nfproto ipv4 accept\n"
                         "    oifgroup %u iifname \"%s\" ct state established,related accept\n",
                         NFT_GROUP_NAT, nat_uplink, NFT_GROUP_NAT, nat_uplink);
                snprintf(nat_chain, sizeof nat_chain,
                         "  chain postrouting {\n"
                         "    type nat hook postrouting priority srcnat; policy accept;\n"
                         "    oifname \"%s\" ip saddr %s masquerade\n"
                         "  }\n",
                         nat_uplink, pool);
        }
        /* Why these rules: a sandbox link is a way into the host.  Without them, a process in a
         * private sandbox reaches every host service bound to 0.0.0.0 or to the host end's
         * address (the supervisor's API, databases, sshd), and, on hosts with ip_forward on (every
         * Docker host), other sandboxes, the LAN and the cloud metadata address.  Everything the
         * sandbox is meant to reach goes through sockets made inside its namespace (connectors),
         * which never cross the link.  "drop" is final in every table, so no other table's accept
         * can undo it; our "accept"s only end our own chain. */
        char script[NFT_SCRIPT_MAX];
        int n = snprintf(script, sizeof script,
                         "table inet " NFT_TABLE "\n"
                         "delete table inet " NFT_TABLE "\n"
                         "table inet " NFT_TABLE " {\n"
                         "  chain input {\n"
                         "    type filter hook input priority filter - 10; policy accept;\n"
                         "    iifgroup { %u, %u } ct state established,related accept\n"
                         "    iifgroup { %u, %u } drop\n"
                         "  }\n"
                         "  chain forward {\n"
                         "    type filter hook forward priority filter - 10; policy accept;\n"
                         "%s"
                         "    iifgroup { %u, %u } drop\n"
                         "    oifgroup { %u, %u } drop\n"
                         "  }\n"
                         "%s"
                         "}\n",
                         NFT_GROUP_PRIVATE, NFT_GROUP_NAT, NFT_GROUP_PRIVATE, NFT_GROUP_NAT, nat_fwd, NFT_GROUP_PRIVATE,
                         NFT_GROUP_NAT, NFT_GROUP_PRIVATE, NFT_GROUP_NAT, nat_chain);
        if (n < 0 || (size_t) n >= sizeof script)
                return ns_err(err, E2BIG, "nft script too long");
        return nft_run(script, err);
}

int nft_remove(ns_error *err) {
        /* "table" first makes the delete succeed when the table is already gone. */
        return nft_run("table inet " NFT_TABLE "\ndelete table inet " NFT_TABLE "\n", err);
}
