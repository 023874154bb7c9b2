#include "loop.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct ns_watch {
        int fd;
        ns_io_cb cb;
        void *data;
        bool dead;
        ns_watch *next_dead;
};

struct ns_loop {
        int epfd;
        bool quit;
        ns_watch *dead; /* removed during a batch; freed after it */
};

uint64_t ns_now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

uint64_t ns_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

int ns_loop_new(ns_loop **out, ns_error *err) {
        ns_loop *l = calloc(1, sizeof *l);
        if (!l)
                return ns_err(err, ENOMEM, "out of memory");
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0) {
                int e = errno;
                free(l);
                return ns_err_sys(err, e, "epoll_create1");
        }
        *out = l;
        return 0;
}

static void loop_reap(ns_loop *l) {
        while (l->dead) {
                ns_watch *w = l->dead;
                l->dead = w->next_dead;
                free(w);
        }
}

void ns_loop_free(ns_loop *l) {
        if (!l)
                return;
        loop_reap(l);
        close(l->epfd);
        free(l);
}

ns_watch *ns_loop_add(ns_loop *l, int fd, uint32_t events, ns_io_cb cb, void *data, ns_error *err) {
        ns_watch *w = calloc(1, sizeof *w);
        if (!w) {
                ns_err(err, ENOMEM, "out of memory");
                return NULL;
        }
        *w = (ns_watch){ .fd = fd, .cb = cb, .data = data };
        struct epoll_event ev = { .events = events, .data.ptr = w };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                ns_err_sys(err, errno, "epoll_ctl add fd %d", fd);
                free(w);
                return NULL;
        }
        return w;
}

int ns_loop_modify(ns_loop *l, ns_watch *w, uint32_t events, ns_error *err) {
        struct epoll_event ev = { .events = events, .data.ptr = w };
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
                return ns_err_sys(err, errno, "epoll_ctl mod fd %d", w->fd);
        return 0;
}

void ns_loop_remove(ns_loop *l, ns_watch *w) {
        if (!w || w->dead)
                return;
        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->dead = true;
        w->next_dead = l->dead;
        l->dead = w;
}

void ns_loop_quit(ns_loop *l) {
        l->quit = true;
}

bool ns_loop_quitting(const ns_loop *l) {
        return l->quit;
}

int ns_loop_fd(const ns_loop *l) {
        return l->epfd;
}

/* Wait up to timeout ms (-1 forever, 0 not at all) and run what is ready. */
static int loop_once(ns_loop *l, int timeout) {
        struct epoll_event evs[64];
        int n = epoll_wait(l->epfd, evs, (int) (sizeof evs / sizeof evs[0]), timeout);
        if (n < 0 && errno != EINTR)
                return -errno;
        for (int i = 0; i < n; i++) {
                ns_watch *w = evs[i].data.ptr;
                if (!w->dead)
                        w->cb(l, w, w->fd, evs[i].events, w->data);
        }
        loop_reap(l);
        return 0;
}

int ns_loop_dispatch(ns_loop *l) {
        return loop_once(l, 0);
}

int ns_loop_run(ns_loop *l, int (*next_timeout_ms)(void *), void (*tick)(void *), void *tick_data) {
        while (!l->quit) {
                int r = loop_once(l, next_timeout_ms ? next_timeout_ms(tick_data) : -1);
                if (r < 0)
                        return r;
                if (tick)
                        tick(tick_data);
        }
        return 0;
}
