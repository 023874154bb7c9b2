/* pid 1 of a sandbox: a tiny, non-dumpable init that forks every exec'd process, reaps every
 * orphan, enforces per-process timeouts, and relays each process's stdio through a bounded buffer
 * that survives a restart of sandboxd or of the caller (PROTOCOL.md, "The stdio stream"). */
#pragma once

struct init_config {
        int ctl_fd;    /* connected control socket to sandboxd */
        int listen_fd; /* listening socket a restarted sandboxd connects to */
};

/* Run the init loop; never returns.  The caller has already entered the sandbox's user namespace
 * as its root, dropped to the capability set init needs, loaded the sandbox's seccomp filter
 * (which every exec'd process inherits) and closed every other fd. */
_Noreturn void init_run(const struct init_config *cfg);
