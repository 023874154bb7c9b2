#include "sandboxd/layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/fsdel.h"
#include "sandboxd/proto.h"

#define LAYER_DEPTH_MAX 512    /* deeper trees are refused: every level holds a descriptor */
#define LAYER_OVERFLOW_ID 65534 /* owner of what the sandbox's range did not own: nobody */
#define META_PREFIX ".meta-"
#define META_MAX 4096

bool layer_name_valid(const char *s) {
        size_t len = strlen(s);
        return len >= 1 && len <= LAYER_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") >= 1 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

static int random_name(const char *prefix, char *out, size_t cap, ns_error *err) {
        uint64_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                return ns_err_sys(err, errno ? errno : EIO, "getrandom");
        if ((size_t) snprintf(out, cap, "%s%016" PRIx64, prefix, rnd) >= cap)
                return ns_err(err, ENOBUFS, "name buffer too small");
        return 0;
}

/* ---- normalising a tree by descriptor ---------------------------------------------------------- */

struct walk {
        uid_t base;
        uint32_t range;
        dev_t dev;
        ino_t *linked; /* inodes with several links already normalised */
        size_t n_linked, cap_linked;
        struct layer_stats st;
};

static uint32_t inside_id(const struct walk *w, uint32_t id) {
        return id >= w->base && id - w->base < w->range ? id - w->base : LAYER_OVERFLOW_ID;
}

static int seen_link(struct walk *w, ino_t ino, bool *seen, ns_error *err) {
        for (size_t i = 0; i < w->n_linked; i++)
                if (w->linked[i] == ino) {
                        *seen = true;
                        return 0;
                }
        *seen = false;
        if (w->n_linked == w->cap_linked) {
                size_t cap = w->cap_linked ? w->cap_linked * 2 : 64;
                ino_t *n = realloc(w->linked, cap * sizeof *n);
                if (!n)
                        return ns_err(err, ENOMEM, "out of memory");
                w->linked = n;
                w->cap_linked = cap;
        }
        w->linked[w->n_linked++] = ino;
        return 0;
}

/* Normalise the entry `name` beneath `dirfd` (never following it).  Returns 1 for a directory to
 * descend into, 0 when done with it, or -errno. */
static int fix_entry(struct walk *w, int dirfd, const char *name, ns_error *err) {
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return ns_err_sys(err, errno, "stat %s", name);
        if (st.st_dev != w->dev)
                return ns_err(err, EXDEV, "a mount point inside the upper layer (%s)", name);
        switch (st.st_mode & S_IFMT) {
        case S_IFREG:
        case S_IFDIR:
        case S_IFLNK:
                break;
        case S_IFCHR:
                if (st.st_rdev == makedev(0, 0))
                        break; /* an overlayfs whiteout: the layer deletes what is beneath it */
                /* fall through */
        default:
                /* Device nodes (none can be made inside a sandbox anyway), FIFOs and sockets have
                 * no place in a read-only layer. */
                if (unlinkat(dirfd, name, 0) < 0)
                        return ns_err_sys(err, errno, "unlink %s", name);
                return 0;
        }
        if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
                bool seen;
                int r = seen_link(w, st.st_ino, &seen, err);
                if (r < 0 || seen)
                        return r;
        }
        if (fchownat(dirfd, name, inside_id(w, st.st_uid), inside_id(w, st.st_gid), AT_SYMLINK_NOFOLLOW) < 0)
                return ns_err_sys(err, errno, "chown %s", name);
        if (S_ISREG(st.st_mode)) {
                /* chown cleared them already; said again because a layer is shared by every
                 * sandbox that stacks it (which also mount it nosuid). */
                if ((st.st_mode & (S_ISUID | S_ISGID)) &&
                    fchmodat(dirfd, name, st.st_mode & 0777, AT_SYMLINK_NOFOLLOW) < 0)
                        return ns_err_sys(err, errno, "chmod %s", name);
                w->st.files++;
                w->st.bytes += (uint64_t) st.st_blocks * 512;
        }
        return S_ISDIR(st.st_mode) ? 1 : 0;
}

/* Normalise everything beneath the directory `top` (and `top` itself), depth-first with an
 * explicit stack of open directories. */
static int fix_tree(struct walk *w, int top, ns_error *err) {
        struct stat st;
        if (fstat(top, &st) < 0)
                return ns_err_sys(err, errno, "stat the layer");
        w->dev = st.st_dev;
        if (fchown(top, inside_id(w, st.st_uid), inside_id(w, st.st_gid)) < 0)
                return ns_err_sys(err, errno, "chown the layer");
        DIR *stack[LAYER_DEPTH_MAX];
        size_t depth = 0;
        int r = 0;
        int fd = fcntl(top, F_DUPFD_CLOEXEC, 3);
        if (fd < 0 || !(stack[depth] = fdopendir(fd))) {
                r = ns_err_sys(err, errno, "open the layer");
                if (fd >= 0)
                        close(fd);
                return r;
        }
        depth++;
        while (depth > 0) {
                DIR *dir = stack[depth - 1];
                errno = 0;
                struct dirent *de = readdir(dir);
                if (!de) {
                        if (errno) {
                                r = ns_err_sys(err, errno, "read a directory of the layer");
                                break;
                        }
                        closedir(dir);
                        depth--;
                        continue;
                }
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                int dfd = dirfd(dir);
                if ((r = fix_entry(w, dfd, de->d_name, err)) < 0)
                        break;
                if (r == 0)
                        continue;
                if (depth == LAYER_DEPTH_MAX) {
                        r = ns_err(err, ELOOP, "the tree is deeper than %d levels", LAYER_DEPTH_MAX);
                        break;
                }
                int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                if (sub < 0 || !(stack[depth] = fdopendir(sub))) {
                        r = ns_err_sys(err, errno, "open %s", de->d_name);
                        if (sub >= 0)
                                close(sub);
                        break;
                }
                depth++;
                r = 0;
        }
        while (depth > 0)
                closedir(stack[--depth]);
        return r < 0 ? r : 0;
}

/* ---- snapshot ------------------------------------------------------------------------------------ */

static bool dir_is_empty(int dirfd, const char *name) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return true;
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return true;
        }
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        return false;
        return true;
}

static int write_meta(int layers_dirfd, const char *name, const struct layer_stats *st, uid_t owner,
                      const char *source, ns_error *err) {
        char path[sizeof META_PREFIX + LAYER_NAME_MAX + 8], tmp[sizeof path + 8];
        snprintf(path, sizeof path, META_PREFIX "%s", name);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        char buf[512];
        int n = snprintf(buf, sizeof buf,
                         "{\"bytes\":%" PRIu64 ",\"files\":%" PRIu64 ",\"created\":%lld,\"owner\":%u,\"source\":\"%s\"}\n",
                         st->bytes, st->files, (long long) time(NULL), (unsigned) owner, source);
        unlinkat(layers_dirfd, tmp, 0);
        _cleanup_close_ int fd = openat(layers_dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return ns_err_sys(err, errno, "create %s", tmp);
        if (write(fd, buf, (size_t) n) != n || fsync(fd) < 0) {
                int e = errno ? errno : EIO;
                unlinkat(layers_dirfd, tmp, 0);
                return ns_err_sys(err, e, "write %s", tmp);
        }
        if (renameat(layers_dirfd, tmp, layers_dirfd, path) < 0) {
                int e = errno;
                unlinkat(layers_dirfd, tmp, 0);
                return ns_err_sys(err, e, "rename %s", tmp);
        }
        return 0;
}

static void remove_meta(int layers_dirfd, const char *name) {
        char path[sizeof META_PREFIX + LAYER_NAME_MAX + 8];
        snprintf(path, sizeof path, META_PREFIX "%s", name);
        unlinkat(layers_dirfd, path, 0);
}

/* Open the directory `path` (relative, clean) beneath `top`, making missing components as
 * directories owned by `uid` (mode 0755) and replacing a component that is not one.  Never
 * follows a link.  Returns an fd or -errno. */
static int open_dirs(int top, const char *path, uid_t uid, ns_error *err) {
        char buf[NS_OVERLAY_PATH_MAX + 1];
        snprintf(buf, sizeof buf, "%s", path);
        int cur = fcntl(top, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return ns_err_sys(err, errno, "dup");
        for (char *save = NULL, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int fd = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 && errno != ENOENT) {
                        fsdel_tree_at(cur, c, NULL);
                        errno = ENOENT;
                }
                if (fd < 0 && errno == ENOENT) {
                        if (mkdirat(cur, c, 0755) < 0 || fchownat(cur, c, uid, uid, AT_SYMLINK_NOFOLLOW) < 0 ||
                            (fd = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                                int e = errno;
                                close(cur);
                                return ns_err_sys(err, e, "make %s in the layer", path);
                        }
                }
                close(cur);
                cur = fd;
        }
        return cur;
}

/* Move each non-empty overlay upper <id>/ov<i>/upper to its path in the layer. */
static int move_overlays(int sbx, int top, const char *const *overlays, size_t n, uid_t uid_base, ns_error *err) {
        for (size_t i = 0; i < n; i++) {
                char ov[24];
                snprintf(ov, sizeof ov, "ov%zu", i);
                _cleanup_close_ int ovfd = openat(sbx, ov, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (ovfd < 0 || dir_is_empty(ovfd, "upper"))
                        continue;
                /* "/workspace/a/b": parent "workspace/a", last "b" */
                char parent[NS_OVERLAY_PATH_MAX + 1];
                snprintf(parent, sizeof parent, "%s", overlays[i] + 1);
                char *slash = strrchr(parent, '/');
                if (!slash)
                        return ns_err(err, EINVAL, "overlay %s is not beneath a directory", overlays[i]);
                *slash = '\0';
                const char *last = slash + 1;
                _cleanup_close_ int pfd = open_dirs(top, parent, uid_base, err);
                if (pfd < 0)
                        return pfd;
                ns_error e2;
                if (fsdel_tree_at(pfd, last, &e2) < 0 && e2.code != ENOENT)
                        return ns_err(err, e2.code, "%s", e2.msg);
                if (renameat(ovfd, "upper", pfd, last) < 0)
                        return ns_err_sys(err, errno, "move the overlay upper of %s", overlays[i]);
        }
        return 0;
}

int layer_from_upper(int upper_dirfd, const char *id, int layers_dirfd, const char *name, uid_t uid_base,
                     uint32_t range, uid_t owner, const char *const *overlays, size_t n_overlays,
                     struct layer_stats *st, ns_error *err) {
        if (!layer_name_valid(name))
                return ns_err(err, EINVAL, "layer name '%s' is not valid", name);
        struct stat exist;
        if (fstatat(layers_dirfd, name, &exist, AT_SYMLINK_NOFOLLOW) == 0)
                return ns_err(err, EEXIST, "layer '%s' exists", name);
        _cleanup_close_ int sbx = openat(upper_dirfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int root = sbx < 0 ? -1 : openat(sbx, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int usr = sbx < 0 ? -1 : openat(sbx, "usr", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0)
                return ns_err_sys(err, errno, "open the upper layer of %s", id);
        char tmp[32];
        int r = random_name(".snap-", tmp, sizeof tmp, err);
        if (r < 0)
                return r;
        if (renameat(root, "upper", layers_dirfd, tmp) < 0) {
                if (errno == EXDEV)
                        return ns_err(err, EXDEV, "the layers dir and the upper dir are on different filesystems");
                return ns_err_sys(err, errno, "move the upper layer of %s", id);
        }
        /* From here on the moved tree is ours to delete on failure. */
        _cleanup_close_ int top = openat(layers_dirfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (top < 0) {
                r = ns_err_sys(err, errno, "open the snapshot");
                goto fail;
        }
        /* The host's /usr had an overlay of its own: its upper becomes the layer's usr/, in place
         * of whatever the root overlay had at the mount point. */
        if (usr >= 0 && !dir_is_empty(usr, "upper")) {
                ns_error e2;
                if (fsdel_tree_at(top, "usr", &e2) < 0 && e2.code != ENOENT) {
                        r = ns_err(err, e2.code, "%s", e2.msg);
                        goto fail;
                }
                if (renameat(usr, "upper", top, "usr") < 0) {
                        r = ns_err_sys(err, errno, "move the /usr upper layer of %s", id);
                        goto fail;
                }
        }
        if ((r = move_overlays(sbx, top, overlays, n_overlays, uid_base, err)) < 0)
                goto fail;
        struct walk w = { .base = uid_base, .range = range };
        r = fix_tree(&w, top, err);
        free(w.linked);
        if (r < 0)
                goto fail;
        if ((r = write_meta(layers_dirfd, name, &w.st, owner, id, err)) < 0)
                goto fail;
        if (syncfs(top) < 0) {
                r = ns_err_sys(err, errno, "sync the layers dir");
                goto fail_meta;
        }
        if (renameat2(layers_dirfd, tmp, layers_dirfd, name, RENAME_NOREPLACE) < 0) {
                r = errno == EEXIST ? ns_err(err, EEXIST, "layer '%s' exists", name)
                                    : ns_err_sys(err, errno, "rename the snapshot to %s", name);
                goto fail_meta;
        }
        if (st)
                *st = w.st;
        return 0;
fail_meta:
        remove_meta(layers_dirfd, name);
fail:
        fsdel_tree_at(layers_dirfd, tmp, NULL);
        return r;
}

/* ---- listing and removal ------------------------------------------------------------------------- */

/* The layer's metadata, or NULL (none, unreadable, or not an object). */
static cJSON *read_meta(int layers_dirfd, const char *name) {
        char path[sizeof META_PREFIX + LAYER_NAME_MAX + 8];
        snprintf(path, sizeof path, META_PREFIX "%s", name);
        _cleanup_close_ int fd = openat(layers_dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        char buf[META_MAX + 1];
        ssize_t n = read(fd, buf, META_MAX);
        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        cJSON *j = cJSON_Parse(buf);
        if (j && !cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return NULL;
        }
        return j;
}

void layer_touch(int layers_dirfd, const char *name) {
        char path[sizeof META_PREFIX + LAYER_NAME_MAX + 8];
        snprintf(path, sizeof path, META_PREFIX "%s", name);
        utimensat(layers_dirfd, path, NULL, AT_SYMLINK_NOFOLLOW);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

cJSON *layer_list(int layers_dirfd, size_t max, ns_error *err) {
        int fd = openat(layers_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                ns_err_sys(err, errno, "open the layers dir");
                return NULL;
        }
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                ns_err_sys(err, errno, "open the layers dir");
                close(fd);
                return NULL;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                struct stat st;
                if (!layer_name_valid(de->d_name) || fstatat(layers_dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                if (n == cap) {
                        cap = cap ? cap * 2 : 32;
                        char **nn = realloc(names, cap * sizeof *nn);
                        if (!nn)
                                goto oom;
                        names = nn;
                }
                if (!(names[n] = strdup(de->d_name)))
                        goto oom;
                n++;
        }
        if (n)
                qsort(names, n, sizeof *names, cmp_str);
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < n && i < max; i++) {
                cJSON *o = read_meta(layers_dirfd, names[i]);
                cJSON *item = cJSON_CreateObject();
                cJSON_AddStringToObject(item, "name", names[i]);
                static const char *const fields[] = { "bytes", "files", "created", "owner" };
                for (size_t k = 0; o && k < ARRAY_SIZE(fields); k++) {
                        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, fields[k]);
                        if (cJSON_IsNumber(v))
                                cJSON_AddNumberToObject(item, fields[k], v->valuedouble);
                }
                char mpath[sizeof META_PREFIX + LAYER_NAME_MAX + 8];
                snprintf(mpath, sizeof mpath, META_PREFIX "%s", names[i]);
                struct stat mst;
                if (o && fstatat(layers_dirfd, mpath, &mst, AT_SYMLINK_NOFOLLOW) == 0)
                        cJSON_AddNumberToObject(item, "last_used", (double) mst.st_mtim.tv_sec);
                cJSON *src = o ? cJSON_GetObjectItemCaseSensitive(o, "source") : NULL;
                if (cJSON_IsString(src) && strlen(src->valuestring) <= 64)
                        cJSON_AddStringToObject(item, "source", src->valuestring);
                cJSON_Delete(o);
                cJSON_AddItemToArray(arr, item);
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return arr;
oom:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        ns_err(err, ENOMEM, "out of memory");
        return NULL;
}

int layer_remove(int layers_dirfd, const char *name, uid_t peer, char *trash, size_t cap, ns_error *err) {
        if (!layer_name_valid(name))
                return ns_err(err, EINVAL, "layer name '%s' is not valid", name);
        struct stat st;
        if (fstatat(layers_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                return ns_err(err, ENOENT, "no layer '%s'", name);
        cJSON *meta = read_meta(layers_dirfd, name);
        cJSON *owner = meta ? cJSON_GetObjectItemCaseSensitive(meta, "owner") : NULL;
        bool allowed = cJSON_IsNumber(owner) && (peer == 0 || owner->valuedouble == (double) peer);
        bool by_hand = !meta;
        cJSON_Delete(meta);
        if (!allowed)
                return ns_err(err, EPERM, by_hand ? "layer '%s' was not made by a snapshot: remove it by hand"
                                                  : "layer '%s' belongs to another user",
                              name);
        int r = random_name(".del-", trash, cap, err);
        if (r < 0)
                return r;
        if (renameat2(layers_dirfd, name, layers_dirfd, trash, RENAME_NOREPLACE) < 0)
                return ns_err_sys(err, errno, "move layer '%s' aside", name);
        remove_meta(layers_dirfd, name);
        return 0;
}

void layer_cleanup(int layers_dirfd) {
        int fd = openat(layers_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strncmp(de->d_name, ".snap-", 6) || !strncmp(de->d_name, ".del-", 5))
                        fsdel_tree_at(layers_dirfd, de->d_name, NULL);
                else if (!strncmp(de->d_name, META_PREFIX, strlen(META_PREFIX))) {
                        /* metadata whose layer is gone (a crash between the two renames) */
                        const char *layer = de->d_name + strlen(META_PREFIX);
                        struct stat st;
                        if (layer_name_valid(layer) && fstatat(layers_dirfd, layer, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                unlinkat(layers_dirfd, de->d_name, 0);
                }
        }
}
