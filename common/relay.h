/* One direction of a byte relay between two non-blocking stream sockets: bytes read from a source
 * that wait to be written to a destination.
 *
 * Messages of a few KiB (requests, answers, keystrokes) are copied through a buffer: recv + send
 * is the cheapest for them.  Once reads fill the buffer (a bulk transfer) the bytes move by
 * splice(2) through a pipe instead, never copied into this process, until a read comes back small
 * again.  The mode changes only while nothing waits, so the order of the bytes is kept.  The
 * buffer and the pipe are made when first needed; the buffer is given back whenever the source
 * runs dry, so an idle connection holds neither memory nor (after ns_relay_release) descriptors.
 *
 * Used by sandboxd's forwards (ports.c) and by the supervisor's egress and preview proxies. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NS_RELAY_CHUNK 65536       /* one copying read at most: the buffer's size */
#define NS_RELAY_PIPE (1024 * 1024) /* the pipe asked for in bulk mode (fs.pipe-max-size's default) */

typedef struct ns_relay_dir {
        char *buf;      /* copy mode: [off, len) waits */
        size_t len, off;
        size_t cap;     /* the buffer's size: NS_RELAY_CHUNK once read into, less for a put */
        int pipe[2];    /* bulk mode: `piped` bytes wait in it; -1 until first needed */
        size_t piped;
        size_t pipe_size; /* what one splice may move into it */
        bool bulk;
        bool eof;       /* the source said EOF */
        bool pipe_full; /* a top-up found no room (the pipe counts buffers, not bytes): none until a write */
        uint64_t bytes_in; /* read from the source so far (what a caller put is not counted) */
} ns_relay_dir;

/* An empty direction (no buffer, no pipe). */
void ns_relay_init(ns_relay_dir *d);

/* Give back the buffer and close the pipe: what waited is dropped.  The sockets are the caller's. */
void ns_relay_release(ns_relay_dir *d);

/* Bytes waiting to be written. */
size_t ns_relay_pending(const ns_relay_dir *d);

/* Read once from `src` (only when nothing waits).  Returns 1 when bytes came, 0 when the source is
 * dry or said EOF (d->eof), or -errno. */
int ns_relay_read(ns_relay_dir *d, int src);

/* Read once from `src` and write to `dst` at once (only when nothing waits): in copy mode the
 * bytes pass through the caller's stack, and only what `dst` does not take is kept in a buffer
 * made for it, so a message that goes straight through costs no allocation.  Returns the number
 * of bytes read (> 0), 0 when the source is dry or said EOF (d->eof), or -errno (from either
 * socket).  What was read counts as read even when writing it failed. */
ssize_t ns_relay_move(ns_relay_dir *d, int src, int dst);

/* Write what waits to `dst`.  Returns 1 when all of it went, 0 when `dst` is full, or -errno. */
int ns_relay_write(ns_relay_dir *d, int dst);

/* Whether reading from the source can go on: nothing waits, or bytes wait in the pipe and it has
 * room for more (see ns_relay_top_up). */
bool ns_relay_wants_input(const ns_relay_dir *d);

/* While the destination is full in bulk mode: read more from `src` into the pipe behind what waits
 * there, up to its size, so that the source keeps flowing rather than stopping until the pipe has
 * drained.  Returns 1 when bytes came, 0 when nothing could (dry, full, not piping, EOF: d->eof),
 * or -errno. */
int ns_relay_top_up(ns_relay_dir *d, int src);

/* Queue `n` bytes of the caller's own behind what waits in copy mode (a reply, a rewritten
 * request head).  Returns 0, -ENOMEM, or -EBUSY while bytes wait in the pipe. */
int ns_relay_put(ns_relay_dir *d, const void *data, size_t n);
