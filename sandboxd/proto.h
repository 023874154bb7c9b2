/* nightshift-sandboxd wire protocol: the only sandboxd header the supervisor includes.
 * The full description is sandboxd/PROTOCOL.md; keep both in step. */
#pragma once

#include <stdint.h>

#define NS_PROTO_VERSION 1
#define NS_PROTO_MAX_MSG 65536        /* one request, reply or notice: one datagram, at most this */
#define NS_PROTO_MAX_FDS 4            /* fds that may ride on one message */
#define NS_DEFAULT_SOCKET "/run/nightshift/sandboxd.sock"

/* Limits on request contents (sandboxd also clamps to its own configured maxima). */
#define NS_ID_MAX 32                  /* sandbox ids: [a-z0-9-], 1..32 */
#define NS_PATH_MAX 1024
#define NS_ARGV_MAX 1024              /* items */
#define NS_ENV_MAX 1024               /* items */
#define NS_ARG_BYTES_MAX 32768        /* argv + env together */
#define NS_RO_BINDS_MAX 32
#define NS_CONNECTS_MAX 32
#define NS_OVERLAYS_MAX 4 /* copy-on-write dirs beneath /workspace (create's `overlays`) */
#define NS_OVERLAY_PATH_MAX 255
#define NS_PUBLISH_MAX 32             /* published ports per sandbox */
#define NS_LISTENING_MAX 256          /* ports a `listening` reply names at most */
#define NS_LAYERS_MAX 16

/* ---- The stdio stream --------------------------------------------------------------------
 * exec and attach return one fd: a SOCK_SEQPACKET socket connected to the sandbox's init.  Each
 * datagram is one frame: this header, then `len` payload bytes (at most NS_FRAME_MAX_PAYLOAD). */
#define NS_FRAME_MAX_PAYLOAD 32768

enum ns_frame_type {
        /* init → caller */
        NS_FRAME_OUTPUT = 1, /* stream = 1 stdout / 2 stderr (pty: 1); offset = position of the first
                              * payload byte in the process's output (both streams share one count) */
        NS_FRAME_LOST = 2,   /* bytes [offset, offset + value) were dropped before anyone read them */
        NS_FRAME_EXIT = 3,   /* payload: struct ns_frame_exit; offset = total output length; last frame */
        /* caller → init */
        NS_FRAME_STDIN = 16,     /* payload → the process's stdin */
        NS_FRAME_STDIN_EOF = 17, /* close the process's stdin */
        NS_FRAME_ACK = 18,       /* every byte below `offset` was consumed; init may free it */
        NS_FRAME_RESIZE = 19,    /* pty only: value = rows << 16 | cols */
};

struct ns_frame_hdr {
        uint32_t type;
        uint32_t stream;
        uint64_t offset;
        uint64_t value;
} __attribute__((packed));

enum ns_exit_flags {
        NS_EXIT_OOM = 1u << 0,     /* killed by the OOM killer inside the sandbox's cgroup */
        NS_EXIT_TIMEOUT = 1u << 1, /* killed because its wall-clock timeout elapsed */
        NS_EXIT_DESTROYED = 1u << 2,
};

struct ns_frame_exit {
        int32_t code;   /* exit code, or -1 when killed by a signal */
        int32_t signal; /* terminating signal, 0 when it exited */
        uint32_t flags; /* enum ns_exit_flags */
        uint32_t reserved;
} __attribute__((packed));
