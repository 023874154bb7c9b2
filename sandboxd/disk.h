/* Disk limits: a sandbox created with `disk` gets its upper layer on an ext4 filesystem of exactly
 * that size, in a sparse image on a loop device.  The filesystem is mounted only inside the
 * sandbox's own mount namespace, and the loop device clears itself when that namespace goes, so a
 * disk-limited sandbox leaves no mount on the host; filling it gives ENOSPC inside and nothing
 * outside.  Not tmpfs: its pages would count against the memory limit. */
#pragma once

#include <stdint.h>

#include "common/err.h"

/* Create <upper_dir>/<id>.img (sparse, `bytes` long) holding a fresh ext4 filesystem. */
int disk_image_create(int upper_dirfd, const char *upper_dir, const char *id, uint64_t bytes, ns_error *err);

/* Attach the image to a free loop device with autoclear; returns an O_RDWR fd of the device. */
int disk_attach(int upper_dirfd, const char *id, ns_error *err);

/* Remove the image (after the sandbox is gone).  Idempotent. */
void disk_remove(int upper_dirfd, const char *id);
