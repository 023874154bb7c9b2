/* nightshift — the one event loop of a process (epoll).  Watchers are callbacks on fds; other
 * threads never touch the loop except through an eventfd they are given. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "err.h"

typedef struct ns_loop ns_loop;
typedef struct ns_watch ns_watch;
typedef void (*ns_io_cb)(ns_loop *loop, ns_watch *w, int fd, uint32_t events, void *data);

/* Create a loop.  Returns 0 or -errno. */
int ns_loop_new(ns_loop **out, ns_error *err);
/* Free the loop and every watcher still registered (their fds are not closed). */
void ns_loop_free(ns_loop *loop);

/* Watch `fd` for `events` (EPOLLIN, EPOLLOUT, ...).  The watcher stays valid until
 * ns_loop_remove(); it may be removed from inside any callback, including its own. */
ns_watch *ns_loop_add(ns_loop *loop, int fd, uint32_t events, ns_io_cb cb, void *data, ns_error *err);
/* Change the event mask of a watcher. */
int ns_loop_modify(ns_loop *loop, ns_watch *w, uint32_t events, ns_error *err);
/* Stop watching; the fd is not closed.  Safe on NULL. */
void ns_loop_remove(ns_loop *loop, ns_watch *w);

/* Dispatch until ns_loop_quit(); timeout_ms < 0 waits forever between events.  `tick`, when
 * non-NULL, runs after every batch (timers are done there by the caller). */
int ns_loop_run(ns_loop *loop, int (*next_timeout_ms)(void *), void (*tick)(void *), void *tick_data);
void ns_loop_quit(ns_loop *loop);
/* True once ns_loop_quit() was called. */
bool ns_loop_quitting(const ns_loop *loop);

/* Nesting this loop inside another poller that owns the thread (libwebsockets' service loop in
 * the supervisor): the epoll fd is readable whenever a watcher is ready, and ns_loop_dispatch runs
 * the ready watchers without waiting.  Still one event loop: one thread, one wait. */
int ns_loop_fd(const ns_loop *loop);
int ns_loop_dispatch(ns_loop *loop);

/* Monotonic clock in milliseconds. */
uint64_t ns_now_ms(void);
/* The monotonic clock in microseconds. */
uint64_t ns_now_us(void);
