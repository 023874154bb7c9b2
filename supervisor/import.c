#include "import.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fsutil.h"
#include "gitx.h"

#define IMPORT_READ_CHUNK (64 * 1024)
#define IMPORT_SUMMARY_MAX 200

void import_result_clear(import_result *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_files; i++)
                free(r->files[i].path);
        free(r->files);
        free(r->summary);
        memset(r, 0, sizeof *r);
}

/* The quarantine: <mirror>/objects/ns-incoming-XXXXXX, an objects directory of its own (so that it
 * can be added to the odb as an alternate while we check) on the mirror's file system (so that
 * accepting is a rename).  Removed whatever happens. */
typedef struct quarantine {
        char *dir;     /* absolute */
        char *packdir; /* dir/pack */
        int objfd;     /* <mirror>/objects */
} quarantine;

static void quarantine_done(quarantine *q) {
        if (q->dir && q->objfd >= 0) {
                const char *base = strrchr(q->dir, '/') + 1;
                (void) fs_remove_tree_at(q->objfd, base, NULL);
        }
        if (q->objfd >= 0)
                close(q->objfd);
        free(q->dir);
        free(q->packdir);
        *q = (quarantine){ .objfd = -1 };
}

static int quarantine_make(quarantine *q, const char *mirror_path, ns_error *err) {
        *q = (quarantine){ .objfd = -1 };
        if (asprintf(&q->dir, "%s/objects/ns-incoming-XXXXXX", mirror_path) < 0) {
                q->dir = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        if (!mkdtemp(q->dir)) {
                int e = errno;
                free(q->dir);
                q->dir = NULL;
                return ns_err_sys(err, e, "create quarantine in %s/objects", mirror_path);
        }
        _cleanup_free_ char *objdir = NULL;
        if (asprintf(&objdir, "%s/objects", mirror_path) < 0 || asprintf(&q->packdir, "%s/pack", q->dir) < 0) {
                q->packdir = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        q->objfd = fs_open_trusted_dir(objdir, err);
        if (q->objfd < 0)
                return q->objfd;
        if (mkdir(q->packdir, 0755) < 0)
                return ns_err_sys(err, errno, "mkdir %s", q->packdir);
        return 0;
}

/* Move the indexed pack-<name>.{pack,idx} from the quarantine into <mirror>/objects/pack: the
 * .pack first, the .idx last, so a concurrent reader never sees an index without its pack. */
static int quarantine_accept(quarantine *q, const char *name, ns_error *err) {
        static const char *const exts[] = { "pack", "idx" };
        _cleanup_close_ int from = fs_open_trusted_dir(q->packdir, err);
        if (from < 0)
                return from;
        _cleanup_close_ int to = fs_open_dir_beneath(q->objfd, "pack", err);
        if (to < 0)
                return to;
        for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
                char fn[128];
                snprintf(fn, sizeof fn, "pack-%s.%s", name, exts[i]);
                if (renameat(from, fn, to, fn) < 0)
                        return ns_err_sys(err, errno, "move %s into the mirror", fn);
        }
        return 0;
}

struct progress_limit {
        uint32_t max_objects;
        bool exceeded;
};

static int on_progress(const git_indexer_progress *st, void *payload) {
        struct progress_limit *l = payload;
        if (st->total_objects > l->max_objects) {
                l->exceeded = true;
                return -1;
        }
        return 0;
}

/* Read the pack stream into the indexer, enforcing the byte and object bounds. */
static int index_stream(git_indexer *idx, int fd, const import_opts *o, struct progress_limit *lim,
                        ns_error *err) {
        _cleanup_free_ unsigned char *buf = malloc(IMPORT_READ_CHUNK);
        if (!buf)
                return ns_err(err, ENOMEM, "out of memory");
        uint64_t total = 0;
        unsigned char header[12];
        size_t have_header = 0;
        git_indexer_progress stats = { 0 };
        for (;;) {
                ssize_t n = read(fd, buf, IMPORT_READ_CHUNK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return ns_err_sys(err, errno, "read pack");
                }
                if (n == 0)
                        break;
                total += (uint64_t) n;
                if (total > o->max_pack_bytes)
                        return ns_err(err, EFBIG, "pack larger than %llu bytes", (unsigned long long) o->max_pack_bytes);
                /* Check the announced object count ourselves before the indexer sizes its tables
                 * by it: "PACK", version, count (network byte order). */
                if (have_header < sizeof header) {
                        size_t take = sizeof header - have_header < (size_t) n ? sizeof header - have_header : (size_t) n;
                        memcpy(header + have_header, buf, take);
                        have_header += take;
                        if (have_header == sizeof header) {
                                uint32_t count = (uint32_t) header[8] << 24 | (uint32_t) header[9] << 16 |
                                                 (uint32_t) header[10] << 8 | header[11];
                                if (memcmp(header, "PACK", 4) != 0)
                                        return ns_err(err, EBADMSG, "not a pack stream");
                                if (count > o->max_objects)
                                        return ns_err(err, EFBIG, "pack announces %u objects, more than %u", count,
                                                      o->max_objects);
                        }
                }
                int r = git_indexer_append(idx, buf, (size_t) n, &stats);
                if (r < 0) {
                        if (lim->exceeded)
                                return ns_err(err, EFBIG, "pack has more than %u objects", lim->max_objects);
                        return gitx_err(err, r, "index pack");
                }
        }
        if (have_header < sizeof header)
                return ns_err(err, EBADMSG, "truncated pack stream (%llu bytes)", (unsigned long long) total);
        int r = git_indexer_commit(idx, &stats);
        if (r < 0)
                return gitx_err(err, r, "index pack");
        return 0;
}

/* Every object the new commits (tip, hiding old) reach must exist.  Commits are parsed by the
 * walk; for each, the entries that differ from its first parent are checked (trees are loaded by
 * the diff itself, blobs are probed); what equals the parent is reachable from older, already
 * checked history.  Also counts the new commits. */
static int check_connected(git_repository *repo, git_odb *odb, const git_oid *tip, const git_oid *old,
                           uint32_t max_commits, size_t *ncommits, ns_error *err) {
        _cleanup_(git_revwalk_freep) git_revwalk *walk = NULL;
        int r = git_revwalk_new(&walk, repo);
        if (r == 0)
                r = git_revwalk_push(walk, tip);
        if (r == 0)
                r = git_revwalk_hide(walk, old);
        if (r < 0)
                return gitx_err(err, r, "walk new commits");
        git_oid id;
        size_t n = 0;
        while ((r = git_revwalk_next(&id, walk)) == 0) {
                if (++n > max_commits)
                        return ns_err(err, EFBIG, "more than %u new commits", max_commits);
                _cleanup_(git_commit_freep) git_commit *c = NULL;
                _cleanup_(git_tree_freep) git_tree *tree = NULL, *ptree = NULL;
                _cleanup_(git_commit_freep) git_commit *parent = NULL;
                r = git_commit_lookup(&c, repo, &id);
                if (r == 0)
                        r = git_commit_tree(&tree, c);
                if (r == 0 && git_commit_parentcount(c) > 0) {
                        r = git_commit_parent(&parent, c, 0);
                        if (r == 0)
                                r = git_commit_tree(&ptree, parent);
                }
                if (r < 0)
                        return gitx_err(err, r, "incomplete pack: commit %.12s", git_oid_tostr_s(&id));
                git_diff_options dopts = GIT_DIFF_OPTIONS_INIT;
                dopts.flags = GIT_DIFF_SKIP_BINARY_CHECK;
                _cleanup_(git_diff_freep) git_diff *diff = NULL;
                r = git_diff_tree_to_tree(&diff, repo, ptree, tree, &dopts);
                if (r < 0)
                        return gitx_err(err, r, "incomplete pack: trees of %.12s", git_oid_tostr_s(&id));
                size_t nd = git_diff_num_deltas(diff);
                for (size_t i = 0; i < nd; i++) {
                        const git_diff_delta *d = git_diff_get_delta(diff, i);
                        if (d->new_file.mode == 0 || d->new_file.mode == GIT_FILEMODE_COMMIT)
                                continue; /* deleted, or a submodule (its commit lives elsewhere) */
                        if (!git_odb_exists(odb, &d->new_file.id))
                                return ns_err(err, EBADMSG, "incomplete pack: %s of %.12s is missing", d->new_file.path,
                                              git_oid_tostr_s(&id));
                }
        }
        if (r != GIT_ITEROVER)
                return gitx_err(err, r, "incomplete pack: walking new commits");
        *ncommits = n;
        return 0;
}

static char status_letter(git_delta_t s) {
        switch (s) {
        case GIT_DELTA_ADDED: return 'A';
        case GIT_DELTA_DELETED: return 'D';
        case GIT_DELTA_MODIFIED: return 'M';
        case GIT_DELTA_TYPECHANGE: return 'T';
        case GIT_DELTA_RENAMED: return 'R';
        case GIT_DELTA_COPIED: return 'C';
        default: return 'X';
        }
}

/* Files and +/− from the old tip's tree to the new tip's tree. */
static int diff_stats(git_repository *repo, const git_oid *old, const git_oid *tip, size_t max_files,
                      import_result *res, ns_error *err) {
        _cleanup_(git_commit_freep) git_commit *oc = NULL, *nc = NULL;
        _cleanup_(git_tree_freep) git_tree *ot = NULL, *nt = NULL;
        int r = git_commit_lookup(&oc, repo, old);
        if (r == 0)
                r = git_commit_lookup(&nc, repo, tip);
        if (r == 0)
                r = git_commit_tree(&ot, oc);
        if (r == 0)
                r = git_commit_tree(&nt, nc);
        if (r < 0)
                return gitx_err(err, r, "load trees for the diff");
        const char *summary = git_commit_summary(nc);
        if (summary && !(res->summary = strndup(summary, IMPORT_SUMMARY_MAX)))
                return ns_err(err, ENOMEM, "out of memory");

        git_diff_options dopts = GIT_DIFF_OPTIONS_INIT;
        _cleanup_(git_diff_freep) git_diff *diff = NULL;
        r = git_diff_tree_to_tree(&diff, repo, ot, nt, &dopts);
        if (r < 0)
                return gitx_err(err, r, "diff");
        size_t nd = git_diff_num_deltas(diff);
        res->files_changed = nd;
        size_t nlist = nd < max_files ? nd : max_files;
        res->files_truncated = nd > max_files;
        if (nlist && !(res->files = calloc(nlist, sizeof *res->files)))
                return ns_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < nd; i++) {
                _cleanup_(git_patch_freep) git_patch *patch = NULL;
                r = git_patch_from_diff(&patch, diff, i);
                if (r < 0)
                        return gitx_err(err, r, "diff of file %zu", i);
                size_t adds = 0, dels = 0;
                if (patch && git_patch_line_stats(NULL, &adds, &dels, patch) < 0)
                        return gitx_err(err, -1, "line stats");
                res->additions += adds;
                res->deletions += dels;
                if (i >= nlist)
                        continue;
                const git_diff_delta *d = git_diff_get_delta(diff, i);
                import_file *f = &res->files[res->n_files];
                const char *path = d->new_file.path ? d->new_file.path : d->old_file.path;
                if (!(f->path = strdup(path ? path : "")))
                        return ns_err(err, ENOMEM, "out of memory");
                res->n_files++;
                f->status = status_letter(d->status);
                f->binary = (d->flags & GIT_DIFF_FLAG_BINARY) != 0;
                f->additions = adds;
                f->deletions = dels;
        }
        return 0;
}

int import_pack(const char *mirror_path, const char *branch, int pack_fd, const char *expected_tip_sha,
                const char *base_sha, const import_opts *opts, import_result *out, ns_error *err) {
        import_opts o = opts ? *opts : (import_opts){ 0 };
        if (!o.max_pack_bytes)
                o.max_pack_bytes = IMPORT_DEFAULT_MAX_PACK_BYTES;
        if (!o.max_objects)
                o.max_objects = IMPORT_DEFAULT_MAX_OBJECTS;
        if (!o.max_commits)
                o.max_commits = IMPORT_DEFAULT_MAX_COMMITS;
        if (!o.max_files)
                o.max_files = IMPORT_DEFAULT_MAX_FILES;
        import_result res = { 0 };
        if (out)
                *out = res;

        /* Why: the agent chooses the branch name it reports; only its own session namespace may
         * ever be written, never main or another upstream branch. */
        if (!mirror_branch_is_session(branch))
                return ns_err(err, EPERM, "refusing to import into '%s': not a nightshift/<session> branch",
                              branch ? branch : "");
        if (!gitx_is_sha_hex(expected_tip_sha))
                return ns_err(err, EINVAL, "tip must be 40 lowercase hex digits");
        if (base_sha && !gitx_is_sha_hex(base_sha))
                return ns_err(err, EINVAL, "base must be 40 lowercase hex digits");

        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        int r = gitx_open_exact(&repo, mirror_path, err);
        if (r < 0)
                return r;
        _cleanup_(git_odb_freep) git_odb *odb = NULL;
        r = git_repository_odb(&odb, repo);
        if (r < 0)
                return gitx_err(err, r, "open the mirror's objects");

        char refname[128];
        snprintf(refname, sizeof refname, "refs/heads/%s", branch);
        git_oid old, tip;
        git_oid_fromstr(&tip, expected_tip_sha);
        r = git_reference_name_to_id(&old, repo, refname);
        if (r == GIT_ENOTFOUND) {
                if (!base_sha)
                        return ns_err(err, EINVAL, "branch '%s' is new and no base was given", branch);
                git_oid_fromstr(&old, base_sha);
                res.created = true;
        } else if (r < 0) {
                return gitx_err(err, r, "look up %s", refname);
        }
        git_oid_tostr(res.old_sha, sizeof res.old_sha, &old);
        git_oid_tostr(res.new_sha, sizeof res.new_sha, &tip);
        {
                _cleanup_(git_commit_freep) git_commit *c = NULL;
                r = git_commit_lookup(&c, repo, &old);
                if (r < 0)
                        return gitx_err(err, r, "%s %s is not a commit in the mirror", res.created ? "base" : "branch tip",
                                        res.old_sha);
        }

        quarantine q = { .objfd = -1 };
        if (!git_oid_equal(&old, &tip)) {
                r = quarantine_make(&q, mirror_path, err);
                if (r < 0)
                        goto out;
                struct progress_limit lim = { .max_objects = o.max_objects };
                git_indexer_options io = GIT_INDEXER_OPTIONS_INIT;
                io.progress_cb = on_progress;
                io.progress_cb_payload = &lim;
                _cleanup_(git_indexer_freep) git_indexer *idx = NULL;
                /* The mirror's odb lets the indexer complete a thin pack with bases it already has. */
                r = git_indexer_new(&idx, q.packdir, 0, odb, &io);
                if (r < 0) {
                        r = gitx_err(err, r, "indexer");
                        goto out;
                }
                r = index_stream(idx, pack_fd, &o, &lim, err);
                if (r < 0)
                        goto out;
                char name[GIT_OID_HEXSZ + 1];
                snprintf(name, sizeof name, "%s", git_indexer_name(idx));

                /* Look at the quarantined objects through this handle only (in memory). */
                r = git_odb_add_disk_alternate(odb, q.dir);
                if (r < 0) {
                        r = gitx_err(err, r, "open quarantine");
                        goto out;
                }
                {
                        _cleanup_(git_object_freep) git_object *obj = NULL;
                        r = git_object_lookup(&obj, repo, &tip, GIT_OBJECT_ANY);
                        if (r == GIT_ENOTFOUND) {
                                r = ns_err(err, ENOENT, "tip %s is not in the pack", res.new_sha);
                                goto out;
                        }
                        if (r < 0) {
                                r = gitx_err(err, r, "look up tip %s", res.new_sha);
                                goto out;
                        }
                        if (git_object_type(obj) != GIT_OBJECT_COMMIT) {
                                r = ns_err(err, EINVAL, "tip %s is not a commit", res.new_sha);
                                goto out;
                        }
                }
                r = git_graph_descendant_of(repo, &tip, &old);
                if (r < 0) {
                        r = gitx_err(err, r, "ancestry of %s", res.new_sha);
                        goto out;
                }
                if (r == 0) {
                        r = ns_err(err, EAGAIN, "not a fast-forward: %.12s does not descend from %.12s", res.new_sha,
                                   res.old_sha);
                        goto out;
                }
                r = check_connected(repo, odb, &tip, &old, o.max_commits, &res.commits, err);
                if (r < 0)
                        goto out;
                r = diff_stats(repo, &old, &tip, o.max_files, &res, err);
                if (r < 0)
                        goto out;
                r = quarantine_accept(&q, name, err);
                if (r < 0)
                        goto out;
                r = git_odb_refresh(odb);
                if (r < 0) {
                        r = gitx_err(err, r, "refresh the mirror's objects");
                        goto out;
                }
        }

        /* Compare-and-swap, so two imports (or an import and a delete) cannot interleave. */
        {
                _cleanup_(git_reference_freep) git_reference *ref = NULL;
                if (res.created)
                        r = git_reference_create(&ref, repo, refname, &tip, 0, "nightshift: import");
                else if (!git_oid_equal(&old, &tip))
                        r = git_reference_create_matching(&ref, repo, refname, &tip, 1, &old, "nightshift: import");
                else
                        r = 0;
                if (r == GIT_EEXISTS || r == GIT_EMODIFIED) {
                        r = ns_err(err, ESTALE, "branch '%s' moved during the import", branch);
                        goto out;
                }
                if (r < 0) {
                        r = gitx_err(err, r, "update %s", refname);
                        goto out;
                }
        }
        r = 0;
out:
        quarantine_done(&q);
        if (r < 0 || !out)
                import_result_clear(&res);
        else
                *out = res;
        return r;
}

int import_commit_event_json(const import_result *r, const char *branch, char **json, ns_error *err) {
        *json = NULL;
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return ns_err(err, ENOMEM, "out of memory");
        bool ok = cJSON_AddStringToObject(o, "sha", r->new_sha) && cJSON_AddStringToObject(o, "parent", r->old_sha) &&
                  cJSON_AddStringToObject(o, "branch", branch ? branch : "") &&
                  cJSON_AddBoolToObject(o, "created", r->created) &&
                  cJSON_AddNumberToObject(o, "commits", (double) r->commits) &&
                  (r->summary ? cJSON_AddStringToObject(o, "summary", r->summary) != NULL
                              : cJSON_AddNullToObject(o, "summary") != NULL) &&
                  cJSON_AddNumberToObject(o, "files_changed", (double) r->files_changed) &&
                  cJSON_AddNumberToObject(o, "additions", (double) r->additions) &&
                  cJSON_AddNumberToObject(o, "deletions", (double) r->deletions) &&
                  cJSON_AddBoolToObject(o, "files_truncated", r->files_truncated);
        cJSON *files = ok ? cJSON_AddArrayToObject(o, "files") : NULL;
        ok = ok && files;
        for (size_t i = 0; ok && i < r->n_files; i++) {
                const import_file *f = &r->files[i];
                cJSON *e = cJSON_CreateObject();
                char st[2] = { f->status, '\0' };
                ok = e && cJSON_AddItemToArray(files, e) && cJSON_AddStringToObject(e, "path", f->path) &&
                     cJSON_AddStringToObject(e, "status", st) &&
                     cJSON_AddNumberToObject(e, "additions", (double) f->additions) &&
                     cJSON_AddNumberToObject(e, "deletions", (double) f->deletions) &&
                     cJSON_AddBoolToObject(e, "binary", f->binary);
        }
        *json = ok ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        return *json ? 0 : ns_err(err, ENOMEM, "out of memory");
}
