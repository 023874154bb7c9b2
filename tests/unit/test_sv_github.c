/* Unit tests of supervisor/hostkey.c (SSH host key pins: URL targets, known_hosts lines and SHA256
 * fingerprints, host and port matching, other keys and types refused) and of github_api.c: OWNER/NAME
 * derivation from repository URLs, an unreachable API and an oversized answer (a forked server on
 * loopback) failing cleanly. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/github_api.h"
#include "supervisor/hostkey.h"
#include "tap.h"

/* Two ed25519 public keys as ssh-keygen writes them. */
#define KEY_A "AAAAC3NzaC1lZDI1NTE5AAAAIJzjbw5kWLVbK8Q5vO7MvAYJf0e6kU0x9WcN8b9mW3cW"
#define KEY_B "AAAAC3NzaC1lZDI1NTE5AAAAIOqg3Tw0N3dM5ZPx2n8Q0bSboKcS2u8o6n3Vx6q0b7rT"

static git_cert_hostkey cert_of(const char *b64, unsigned char *raw, size_t cap) {
        size_t n = 0;
        sodium_base642bin(raw, cap, b64, strlen(b64), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL);
        git_cert_hostkey c = { .parent.cert_type = GIT_CERT_HOSTKEY_LIBSSH2,
                               .type = GIT_CERT_SSH_RAW | GIT_CERT_SSH_SHA256,
                               .raw_type = GIT_CERT_SSH_RAW_TYPE_KEY_ED25519,
                               .hostkey = (const char *) raw,
                               .hostkey_len = n };
        crypto_hash_sha256(c.hash_sha256, raw, n);
        return c;
}

static int check(const char *pins, const char *host, int port, const git_cert_hostkey *c, char *why) {
        return sv_hostkey_check(pins, host, port, c, why, 300);
}

/* A socket on 127.0.0.1 (listening or not); its port into *port. */
static int loopback(bool listening, int *port) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof a;
        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *) &a, &l) < 0 ||
            (listening && listen(fd, 4) < 0))
                return -1;
        *port = ntohs(a.sin_port);
        return fd;
}

/* Answer one request with 200 and a body of `n` bytes, then exit. */
static pid_t serve_big(int lfd, size_t n) {
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        int c = accept(lfd, NULL, NULL);
        char buf[4096];
        ssize_t got = read(c, buf, sizeof buf);
        (void) got;
        int hl = snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
        if (write(c, buf, (size_t) hl) < 0)
                _exit(1);
        memset(buf, 'x', sizeof buf);
        for (size_t sent = 0; sent < n;) {
                ssize_t w = write(c, buf, n - sent < sizeof buf ? n - sent : sizeof buf);
                if (w <= 0)
                        break;
                sent += (size_t) w;
        }
        _exit(0);
}

int main(void) {
        if (sodium_init() < 0)
                return 1;
        char host[256], why[300];
        int port;
        ok(sv_hostkey_url_target("ssh://git@127.0.0.1:2222/srv/r.git", host, sizeof host, &port) && !strcmp(host, "127.0.0.1") &&
                   port == 2222,
           "ssh://user@host:port/path");
        ok(sv_hostkey_url_target("ssh://example.com/r.git", host, sizeof host, &port) && !strcmp(host, "example.com") && port == 22,
           "ssh://host/path: port 22");
        ok(sv_hostkey_url_target("git@github.com:o/r.git", host, sizeof host, &port) && !strcmp(host, "github.com") && port == 22,
           "scp-like user@host:path");
        ok(sv_hostkey_url_target("ssh://git@[::1]:2200/r", host, sizeof host, &port) && !strcmp(host, "::1") && port == 2200,
           "ssh://[v6]:port");
        ok(!sv_hostkey_url_target("https://github.com/o/r", host, sizeof host, &port), "https is not SSH");
        ok(!sv_hostkey_url_target("/srv/r.git", host, sizeof host, &port), "a path is not SSH");
        ok(!sv_hostkey_url_target("ssh://h:99999/r", host, sizeof host, &port), "a bad port is refused");

        unsigned char ra[128], rb[128];
        git_cert_hostkey a = cert_of(KEY_A, ra, sizeof ra), b = cert_of(KEY_B, rb, sizeof rb);
        ok(a.hostkey_len == 51, "the test key decodes (%zu bytes)", a.hostkey_len);
        ok(check("[127.0.0.1]:2222 ssh-ed25519 " KEY_A "\n", "127.0.0.1", 2222, &a, why) == 0, "a known_hosts line matches");
        ok(check("[127.0.0.1]:2222 ssh-ed25519 " KEY_A, "127.0.0.1", 2222, &b, why) < 0 && strstr(why, "matches no pin"),
           "another key does not: %s", why);
        ok(check("127.0.0.1 ssh-ed25519 " KEY_A, "127.0.0.1", 2222, &a, why) < 0 && strstr(why, "no pinned host key"),
           "a pin for port 22 is not one for 2222: %s", why);
        ok(check("other.example,[127.0.0.1]:2222 ssh-ed25519 " KEY_A, "127.0.0.1", 2222, &a, why) == 0, "host lists");
        ok(check("* ssh-ed25519 " KEY_A, "h.example", 22, &a, why) == 0, "'*' names every host");
        ok(check("github.com ssh-ed25519 " KEY_A " comment here\r\n", "GitHub.com", 22, &a, why) == 0,
           "names compare case-insensitively; comments and CRLF");
        ok(check("github.com ssh-rsa " KEY_A, "github.com", 22, &a, why) < 0, "the key type must match");
        ok(check("# github.com ssh-ed25519 " KEY_A, "github.com", 22, &a, why) < 0, "comment lines are not pins");
        ok(check("@revoked github.com ssh-ed25519 " KEY_A, "github.com", 22, &a, why) < 0, "markers are not pins");
        ok(check("github.com ssh-ed25519 !!notbase64", "github.com", 22, &a, why) < 0, "bad base64 matches nothing");
        ok(check("", "github.com", 22, &a, why) < 0, "no pins: refused");
        char fp[128] = "SHA256:";
        sodium_bin2base64(fp + 7, sizeof fp - 7, a.hash_sha256, 32, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
        ok(check(fp, "any.example", 2222, &a, why) == 0, "a SHA256 fingerprint matches any host (%s)", fp);
        ok(check(fp, "any.example", 2222, &b, why) < 0, "another key's fingerprint does not");
        git_cert_hostkey sha_only = a;
        sha_only.type = GIT_CERT_SSH_SHA256;
        ok(check("[127.0.0.1]:2222 ssh-ed25519 " KEY_A, "127.0.0.1", 2222, &sha_only, why) < 0,
           "without the raw key a known_hosts line cannot be checked: refused");

        char o[256];
        const char *api = SV_GH_API_DEFAULT;
        ok(sv_gh_repo_from_url("https://github.com/octo/app.git", api, o, sizeof o) && !strcmp(o, "octo/app"), "https .git");
        ok(sv_gh_repo_from_url("https://x-access-token@github.com/octo/app", api, o, sizeof o) && !strcmp(o, "octo/app"),
           "https with a user");
        ok(sv_gh_repo_from_url("git@github.com:octo/app.git", api, o, sizeof o) && !strcmp(o, "octo/app"), "scp-like");
        ok(sv_gh_repo_from_url("ssh://git@github.com/octo/app.git", api, o, sizeof o) && !strcmp(o, "octo/app"), "ssh://");
        ok(!sv_gh_repo_from_url("https://gitlab.com/octo/app.git", api, o, sizeof o), "another host: no");
        ok(sv_gh_repo_from_url("https://ghe.corp/octo/app", "https://ghe.corp/api/v3", o, sizeof o) && !strcmp(o, "octo/app"),
           "GitHub Enterprise: the API's host");
        ok(!sv_gh_repo_from_url("https://github.com/octo/app/tree/x", api, o, sizeof o), "more than OWNER/NAME: no");
        ok(!sv_gh_repo_from_url("https://github.com/octo/..", api, o, sizeof o), "'..': no");
        ok(!sv_gh_repo_from_url("/srv/app.git", api, o, sizeof o), "a path: no");

        ns_error e;
        sv_gh_resp resp;
        char base[64];
        int fd;
        ok(sv_gh_global_init(&e) == 0, "libcurl initialises");
        fd = loopback(false, &port);
        snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
        ok(sv_gh_call(base, "GET", "/x", "t", NULL, &resp, &e) < 0 && resp.status == 0 && !resp.body,
           "nothing listening: an error, no answer (%s)", e.msg);
        close(fd);
        fd = loopback(true, &port);
        snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
        signal(SIGPIPE, SIG_IGN);
        pid_t pid = serve_big(fd, 2 * 1024 * 1024);
        int r = sv_gh_call(base, "GET", "/x", "t", NULL, &resp, &e);
        ok(r == -EFBIG && !resp.body && strstr(e.msg, "1 MiB"), "a 2 MiB answer is cut off (%s)", e.msg);
        if (pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
        }
        pid = serve_big(fd, 1000);
        r = sv_gh_call(base, "GET", "/x", "t", NULL, &resp, &e);
        ok(r == 0 && resp.status == 200 && resp.len == 1000, "a small answer is read whole (%zu bytes)", resp.len);
        sv_gh_resp_clear(&resp);
        waitpid(pid, NULL, 0);
        close(fd);
        return tap_done();
}
