/* The private protocol between sandboxd and a sandbox's init (pid 1): SOCK_SEQPACKET, one message
 * per datagram: this header, then a payload.  Both ends are ours, but init runs inside the sandbox,
 * so sandboxd validates everything it reads from init as it would from any other peer. */
#pragma once

#include <stdint.h>

#define ICTL_MAX_MSG 65536

enum ictl_type {
        /* sandboxd → init */
        ICTL_HELLO = 1,     /* (re)connected: init answers with ICTL_PROC for every process, then HELLO_DONE */
        ICTL_EXEC = 2,      /* proc = new id; flags: ICTL_EXEC_*; a = timeout ms; b = rows<<16|cols;
                             * payload: struct ictl_exec + cwd\0 argv...\0 env...\0; fd: the stream end */
        ICTL_ATTACH = 3,    /* proc; a = from offset; fd: the stream end */
        ICTL_SIGNAL = 4,    /* proc; a = signal */
        ICTL_EXIT_INFO = 5, /* proc; a = extra exit flags (NS_EXIT_OOM) known only to sandboxd */
        /* init → sandboxd */
        ICTL_READY = 32,     /* init is up; a = protocol version */
        ICTL_FAILED = 33,    /* set-up failed; a = errno; payload: message */
        ICTL_EXEC_OK = 34,   /* proc; a = pid inside */
        ICTL_EXEC_FAIL = 35, /* proc; a = errno; payload: message */
        ICTL_EXITED = 36,    /* proc; a = wait status; b = NS_EXIT_* flags known to init (TIMEOUT) */
        ICTL_ATTACH_OK = 37,
        ICTL_ATTACH_FAIL = 38, /* proc; a = errno */
        ICTL_SIGNAL_OK = 39,
        ICTL_SIGNAL_FAIL = 40, /* proc; a = errno */
        ICTL_PROC = 41,        /* proc; a = pid; b = wait status; flags: ICTL_PROC_* */
        ICTL_HELLO_DONE = 42,
};

enum { ICTL_EXEC_ROOT = 1, ICTL_EXEC_TTY = 2, ICTL_EXEC_TIED = 4 };
enum { ICTL_PROC_EXITED = 1, ICTL_PROC_TIMED_OUT = 2 };

#define ICTL_VERSION 1

struct ictl_hdr {
        uint32_t type;
        uint32_t flags;
        uint64_t proc;
        uint64_t a;
        uint64_t b;
} __attribute__((packed));

struct ictl_exec {
        uint32_t argc;
        uint32_t envc;
} __attribute__((packed));
