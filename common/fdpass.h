/* nightshift — sending one datagram with file descriptors attached (SCM_RIGHTS). */
#pragma once

#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define NS_FDPASS_MAX 4

/* sendmsg() the iovecs on `sock` with `nfds` (0..NS_FDPASS_MAX) descriptors attached, with
 * MSG_NOSIGNAL | `flags`.  Returns 0 or -errno (EINTR is retried); sends nothing on -EINVAL. */
int ns_send_fds(int sock, const struct iovec *iov, size_t iovcnt, const int *fds, size_t nfds, int flags);

/* The descriptors that came with a message recvmsg() received into *mh (SCM_RIGHTS): the first
 * `max` into fds[], any beyond them closed.  Returns how many came in all, so a count above `max`
 * says some were closed. */
size_t ns_take_fds(struct msghdr *mh, int *fds, size_t max);
