/* The proxy process's boundary, from both sides.  The channel (supervisor/preview_chan.c): the
 * supervisor takes from a proxy only well-formed DIALs and TUNNEL_ENDs with no descriptor attached
 * (a proxy parses agent-made bytes, so it may be hostile); the proxy takes PUT, DROP, DIALED (a
 * socket exactly with a successful one), TUNNEL (two sockets) and TUNNEL_DROP; every descriptor
 * attached to a refused message is closed.  The
 * proxy's seccomp allow-list (preview_main.c), loaded in a child: it cannot open a file, make a
 * socket, execute or change identity, and can still do what it is for.  TAP. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/loop.h"
#include "common/seccomp_allow.h"
#include "supervisor/preview_chan.h"
#include "supervisor/preview_proxy.h"
#include "tap.h"

static int n_open_fds(void) {
        int n = 0;
        DIR *d = opendir("/proc/self/fd");
        for (struct dirent *e; d && (e = readdir(d));)
                n += e->d_name[0] != '.';
        if (d)
                closedir(d);
        return n;
}

/* Send raw bytes with `nfds` fresh pipe ends attached on s[0], receive on s[1] → pvc_recv's result. */
static int deliver(int s[2], bool from_proxy, const void *data, size_t len, int nfds, struct pvc_msg *m, int fd[2]) {
        int fds[4] = { -1, -1, -1, -1 }, p[2];
        for (int i = 0; i < nfds; i += 2) {
                if (pipe2(p, O_CLOEXEC) < 0)
                        return -999;
                fds[i] = p[0];
                if (i + 1 < nfds)
                        fds[i + 1] = p[1];
                else
                        close(p[1]);
        }
        struct iovec iov = { (void *) data, len };
        int r = ns_send_fds(s[0], &iov, 1, fds, (size_t) nfds, 0);
        for (int i = 0; i < nfds; i++)
                close(fds[i]);
        if (r < 0)
                return -998;
        return pvc_recv(s[1], from_proxy, m, fd);
}

static struct pvc_msg dial_msg(void) {
        struct pvc_msg m = { .op = PVC_DIAL, .dial = 7 };
        strcpy(m.id, "p-abcdefghijkl");
        return m;
}

static void channel_checks(void) {
        int s[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) < 0) {
                ok(0, "socketpair: %s", strerror(errno));
                return;
        }
        int before = n_open_fds();
        struct pvc_msg in, out;
        int fd[2];

        in = dial_msg();
        ok(deliver(s, true, &in, sizeof in, 0, &out, fd) == 1 && fd[0] == -1 && out.dial == 7 && !strcmp(out.id, in.id),
           "the supervisor takes a well-formed DIAL");
        ok(deliver(s, true, &in, sizeof in, 1, &out, fd) == -EBADMSG, "a DIAL with a descriptor attached is refused");
        ok(deliver(s, true, &in, sizeof in, 3, &out, fd) == -EBADMSG, "... with three attached too");
        ok(deliver(s, true, &in, sizeof in - 1, 0, &out, fd) == -EBADMSG, "a short message is refused");
        char big[sizeof in + 8] = { 0 };
        memcpy(big, &in, sizeof in);
        ok(deliver(s, true, big, sizeof big, 0, &out, fd) == -EBADMSG, "a long message is refused (not cut to size)");
        in = dial_msg();
        in.op = PVC_PUT;
        in.port = 80;
        ok(deliver(s, true, &in, sizeof in, 0, &out, fd) == -EBADMSG, "a PUT from a proxy is refused");
        in = dial_msg();
        in.op = 99;
        ok(deliver(s, true, &in, sizeof in, 0, &out, fd) == -EBADMSG, "an unknown op is refused");
        in = dial_msg();
        in.dial = 0;
        ok(deliver(s, true, &in, sizeof in, 0, &out, fd) == -EBADMSG, "a DIAL numbered 0 is refused");
        in = dial_msg();
        in.zero = 1;
        ok(deliver(s, true, &in, sizeof in, 0, &out, fd) == -EBADMSG, "a reserved field not 0 is refused");
        in = dial_msg();
        memset(in.id, 'a', sizeof in.id);
        ok(deliver(s, true, &in, sizeof in, 0, &out, fd) == -EBADMSG, "an id without its NUL is refused");
        const char *bad_ids[] = { "s-abcdefghijkl", "p-ABCDEFGHIJKL", "p-abc/../efghi", "p-abcdefghijk", "" };
        bool all = true;
        for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
                in = dial_msg();
                memset(in.id, 0, sizeof in.id);
                memcpy(in.id, bad_ids[i], strlen(bad_ids[i]));
                all &= deliver(s, true, &in, sizeof in, 0, &out, fd) == -EBADMSG;
        }
        ok(all, "ids not of a preview (another kind, upper case, a path, short, empty) are refused");

        /* the proxy's side */
        struct pvc_msg put = { .op = PVC_PUT, .port = 5173 };
        strcpy(put.id, "p-abcdefghijkl");
        memset(put.token_hash, 0xab, sizeof put.token_hash);
        ok(deliver(s, false, &put, sizeof put, 0, &out, fd) == 1 && out.port == 5173 && out.token_hash[31] == 0xab,
           "the proxy takes a PUT");
        put.port = 0;
        ok(deliver(s, false, &put, sizeof put, 0, &out, fd) == -EBADMSG, "a PUT of port 0 is refused");
        put.port = 65536;
        ok(deliver(s, false, &put, sizeof put, 0, &out, fd) == -EBADMSG, "a PUT of port 65536 is refused");
        in = dial_msg();
        ok(deliver(s, false, &in, sizeof in, 0, &out, fd) == -EBADMSG, "a DIAL sent to the proxy is refused");
        struct pvc_msg dialed = { .op = PVC_DIALED, .dial = 7 };
        ok(deliver(s, false, &dialed, sizeof dialed, 1, &out, fd) == 1 && fd[0] >= 0 && fd[1] == -1,
           "a DIALED with its socket is taken");
        if (fd[0] >= 0)
                close(fd[0]);
        ok(deliver(s, false, &dialed, sizeof dialed, 0, &out, fd) == -EBADMSG, "a DIALED saying 0 without a socket is refused");
        dialed.error = ECONNREFUSED;
        ok(deliver(s, false, &dialed, sizeof dialed, 0, &out, fd) == 1 && fd[0] == -1 && out.error == ECONNREFUSED,
           "a DIALED with an errno and no socket is taken");
        ok(deliver(s, false, &dialed, sizeof dialed, 1, &out, fd) == -EBADMSG, "a DIALED with an errno and a socket is refused");
        dialed.error = 0;
        ok(deliver(s, false, &dialed, sizeof dialed, 2, &out, fd) == -EBADMSG, "a DIALED with two descriptors is refused");

        /* tunnels */
        struct pvc_msg tun = { .op = PVC_TUNNEL, .dial = 9 };
        ok(deliver(s, false, &tun, sizeof tun, 2, &out, fd) == 1 && fd[0] >= 0 && fd[1] >= 0 && out.dial == 9,
           "the proxy takes a TUNNEL with its two sockets");
        for (int i = 0; i < 2; i++)
                if (fd[i] >= 0)
                        close(fd[i]);
        ok(deliver(s, false, &tun, sizeof tun, 1, &out, fd) == -EBADMSG, "a TUNNEL with one socket is refused");
        ok(deliver(s, false, &tun, sizeof tun, 3, &out, fd) == -EBADMSG, "a TUNNEL with three is refused");
        tun.dial = 0;
        ok(deliver(s, false, &tun, sizeof tun, 2, &out, fd) == -EBADMSG, "a TUNNEL numbered 0 is refused");
        struct pvc_msg tdrop = { .op = PVC_TUNNEL_DROP, .dial = 9 };
        ok(deliver(s, false, &tdrop, sizeof tdrop, 0, &out, fd) == 1, "the proxy takes a TUNNEL_DROP");
        ok(deliver(s, false, &tdrop, sizeof tdrop, 1, &out, fd) == -EBADMSG, "a TUNNEL_DROP with a descriptor is refused");
        struct pvc_msg tend = { .op = PVC_TUNNEL_END, .dial = 9, .bytes = { 10, 20 } };
        ok(deliver(s, true, &tend, sizeof tend, 0, &out, fd) == 1 && out.bytes[1] == 20,
           "the supervisor takes a TUNNEL_END with its counts");
        ok(deliver(s, true, &tend, sizeof tend, 2, &out, fd) == -EBADMSG, "a TUNNEL_END with descriptors is refused");
        tend.error = EPERM;
        ok(deliver(s, true, &tend, sizeof tend, 0, &out, fd) == -EBADMSG, "a TUNNEL_END with an error other than a reset is refused");
        tend.error = 0;
        tend.dial = 0;
        ok(deliver(s, true, &tend, sizeof tend, 0, &out, fd) == -EBADMSG, "a TUNNEL_END numbered 0 is refused");
        tun.dial = 9;
        ok(deliver(s, true, &tun, sizeof tun, 2, &out, fd) == -EBADMSG, "a TUNNEL from a proxy is refused");
        ok(n_open_fds() == before, "every descriptor of a refused message was closed (%d open, %d before)", n_open_fds(), before);
        ok(pvc_recv(s[1], true, &out, fd) == -EAGAIN, "nothing waiting: EAGAIN");
        close(s[0]);
        ok(pvc_recv(s[1], true, &out, fd) == 0, "the other end closed: 0");
        close(s[1]);
}

/* In a child under the proxy's filter: each bit set is a check that failed. */
static int filtered_child(void) {
        size_t n;
        const char *const *calls = sv_preview_proxy_calls(&n);
        ns_error err = { 0 };
        if (ns_seccomp_allow_only(calls, n, &err) < 0)
                return 0x80;
        int bad = 0;
        errno = 0;
        if (open("/etc/passwd", O_RDONLY | O_CLOEXEC) >= 0 || errno != EPERM)
                bad |= 1;
        errno = 0;
        if (socket(AF_INET, SOCK_STREAM, 0) >= 0 || errno != EPERM)
                bad |= 2;
        char *argv[] = { "/bin/true", NULL };
        errno = 0;
        execv("/bin/true", argv);
        if (errno != EPERM)
                bad |= 4;
        errno = 0;
        if (setuid(0) == 0 || errno != EPERM)
                bad |= 8;
        int p[2];
        char c = 'x';
        if (pipe2(p, O_CLOEXEC) < 0 || write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1)
                bad |= 16;
        return bad;
}

static void filter_checks(void) {
        pid_t pid = fork();
        if (pid == 0)
                _exit(filtered_child());
        int st = 0;
        waitpid(pid, &st, 0);
        int bad = WIFEXITED(st) ? WEXITSTATUS(st) : 0xff;
        ok(bad != 0x80 && bad != 0xff, "the proxy's allow-list loads (status %#x)", bad);
        ok(!(bad & 1), "under it a file cannot be opened (EPERM)");
        ok(!(bad & 2), "a socket cannot be made (EPERM)");
        ok(!(bad & 4), "nothing can be executed (EPERM)");
        ok(!(bad & 8), "the identity cannot change (EPERM)");
        ok(!(bad & 16), "and pipes, reads and writes still work");
}

/* The process's outbox (pv_chan_send): with the supervisor not reading, messages beyond what the
 * channel holds wait, and all of them arrive, in order, once it reads again. */
static void outbox_checks(void) {
        int s[2];
        ns_loop *loop = NULL;
        ns_error err = { 0 };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s) < 0 || ns_loop_new(&loop, &err) < 0) {
                ok(0, "socketpair and loop");
                return;
        }
        pv_proxy px = { .loop = loop, .chan = s[0], .listen_fd = -1 };
        ok(pv_chan_attach(&px, &err) == 0, "the channel is watched");
        enum { N = 3000 };
        bool all_taken = true;
        for (uint64_t i = 1; i <= N; i++) {
                struct pvc_msg m = { .op = PVC_DIAL, .dial = i };
                strcpy(m.id, "p-abcdefghijkl");
                all_taken &= pv_chan_send(&px, &m) == 0;
        }
        ok(all_taken && ns_outbox_pending(&px.out) > 0, "%d messages taken while the supervisor does not read (%zu wait)",
           N, ns_outbox_pending(&px.out));
        uint64_t next = 1;
        bool in_order = true;
        for (int idle = 0; next <= N && idle < 200;) {
                (void) ns_loop_dispatch(loop);
                struct pvc_msg m;
                int fds[2];
                int r = pvc_recv(s[1], true, &m, fds);
                if (r == 1) {
                        in_order &= m.dial == next++;
                        idle = 0;
                } else {
                        usleep(1000);
                        idle++;
                }
        }
        ok(next == N + 1 && in_order, "all arrive once the supervisor reads, in order (%llu of %d)",
           (unsigned long long) (next - 1), N);
        ok(ns_outbox_pending(&px.out) == 0, "and nothing waits any more");
        ns_loop_remove(loop, px.chan_w);
        ns_loop_free(loop);
        close(s[0]);
        close(s[1]);
}

int main(void) {
        channel_checks();
        outbox_checks();
        filter_checks();
        return tap_done();
}
