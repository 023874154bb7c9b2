/* The per-sandbox record under <state-dir>/sandboxes/<id>.json: what a restarted sandboxd needs to
 * re-adopt a sandbox.  Written atomically (temp file + rename); read back as untrusted input. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/jsonv.h"
#include "sandboxd/daemon.h"

#define STATE_MAX 65536

static void path_of(const struct sbx_daemon *d, const char *id, const char *suffix, char *out, size_t cap) {
        snprintf(out, cap, "%s/sandboxes/%s%s", d->cfg.state_dir, id, suffix);
}

int state_save(const struct sbx_sandbox *s, ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return ns_err(err, ENOMEM, "out of memory");
        cJSON_AddNumberToObject(o, "version", 1);
        cJSON_AddStringToObject(o, "id", s->id);
        cJSON_AddNumberToObject(o, "owner", s->owner);
        cJSON_AddNumberToObject(o, "slot", s->slot);
        cJSON_AddNumberToObject(o, "created", (double) s->created);
        cJSON_AddNumberToObject(o, "init_pid", s->init_pid);
        cJSON_AddNumberToObject(o, "init_start", (double) s->init_start);
        cJSON_AddNumberToObject(o, "memory", (double) s->limits.memory);
        cJSON_AddNumberToObject(o, "pids", (double) s->limits.pids);
        cJSON_AddNumberToObject(o, "cpu_millis", (double) s->limits.cpu_millis);
        cJSON_AddNumberToObject(o, "next_proc", (double) s->next_proc);
        if (s->pooled)
                cJSON_AddBoolToObject(o, "pool", true);
        if (s->ephemeral)
                cJSON_AddBoolToObject(o, "ephemeral", true);
        if (s->workspace[0])
                cJSON_AddStringToObject(o, "workspace", s->workspace);
        if (s->limits.disk)
                cJSON_AddNumberToObject(o, "disk", (double) s->limits.disk);
        if (s->n_layers) {
                cJSON *ls = cJSON_AddArrayToObject(o, "layers");
                for (size_t i = 0; i < s->n_layers; i++)
                        cJSON_AddItemToArray(ls, cJSON_CreateString(s->layers[i]));
        }
        if (s->n_overlays) {
                cJSON *ov = cJSON_AddArrayToObject(o, "overlays");
                for (size_t i = 0; i < s->n_overlays; i++)
                        cJSON_AddItemToArray(ov, cJSON_CreateString(s->overlays[i]));
        }
        if (s->net.mode != NET_NONE) {
                cJSON *net = cJSON_AddObjectToObject(o, "net");
                cJSON_AddStringToObject(net, "mode", net_mode_name(s->net.mode));
                cJSON_AddNumberToObject(net, "addr_slot", s->net.addr_slot);
                cJSON_AddNumberToObject(net, "ifindex", s->net.ifindex);
                cJSON_AddNumberToObject(net, "counter", s->net.counter);
        }
        cJSON *con = cJSON_AddArrayToObject(o, "connect");
        for (size_t i = 0; i < s->n_connects; i++)
                (void) ns_connect_to_json(con, &s->connects[i]);
        cJSON *pub = cJSON_AddArrayToObject(o, "publish");
        for (size_t i = 0; i < s->n_publishes; i++) {
                cJSON *c = cJSON_CreateObject();
                cJSON_AddNumberToObject(c, "port", s->publishes[i].port);
                cJSON_AddNumberToObject(c, "host_port", s->publishes[i].host_port);
                cJSON_AddItemToArray(pub, c);
        }
        _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!text)
                return ns_err(err, ENOMEM, "out of memory");
        char tmp[NS_PATH_MAX], final[NS_PATH_MAX];
        path_of(s->d, s->id, ".json.tmp", tmp, sizeof tmp);
        path_of(s->d, s->id, ".json", final, sizeof final);
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return ns_err_sys(err, errno, "create %s", tmp);
        size_t len = strlen(text);
        if (write(fd, text, len) != (ssize_t) len) {
                unlink(tmp);
                return ns_err_sys(err, errno ? errno : EIO, "write %s", tmp);
        }
        if (rename(tmp, final) < 0) {
                int e = errno;
                unlink(tmp);
                return ns_err_sys(err, e, "rename %s", final);
        }
        return 0;
}

int state_remove(struct sbx_daemon *d, const char *id) {
        char p[NS_PATH_MAX];
        path_of(d, id, ".json", p, sizeof p);
        return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
}

int state_load(struct sbx_daemon *d, const char *id, struct sbx_sandbox *s, ns_error *err) {
        char p[NS_PATH_MAX];
        path_of(d, id, ".json", p, sizeof p);
        _cleanup_close_ int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", p);
        _cleanup_free_ char *buf = malloc(STATE_MAX + 1);
        if (!buf)
                return ns_err(err, ENOMEM, "out of memory");
        ssize_t n = read(fd, buf, STATE_MAX + 1);
        if (n < 0 || n > STATE_MAX)
                return ns_err(err, EINVAL, "unreadable state %s", p);
        buf[n] = '\0';
        cJSON *o = cJSON_ParseWithLength(buf, (size_t) n);
        if (!o)
                return ns_err(err, EINVAL, "malformed state %s", p);
        int64_t v[10];
        const char *sid = NULL, *ws = NULL;
        int r = 0;
        if ((r = jv_str(o, "id", true, NS_ID_MAX, JV_ID_CHARS, &sid, err)) < 0 ||
            (r = jv_int(o, "owner", true, 0, UINT32_MAX, 0, &v[0], err)) < 0 ||
            (r = jv_int(o, "slot", true, 0, d->n_slots - 1, 0, &v[1], err)) < 0 ||
            (r = jv_int(o, "created", true, 0, INT64_C(1) << 40, 0, &v[2], err)) < 0 ||
            (r = jv_int(o, "init_pid", true, 1, INT32_MAX, 0, &v[3], err)) < 0 ||
            (r = jv_int(o, "init_start", true, 0, INT64_C(1) << 52, 0, &v[4], err)) < 0 ||
            (r = jv_int(o, "memory", false, 0, INT64_C(1) << 52, 0, &v[5], err)) < 0 ||
            (r = jv_int(o, "pids", false, 0, INT64_C(1) << 40, 0, &v[6], err)) < 0 ||
            (r = jv_int(o, "cpu_millis", false, 0, INT64_C(1) << 40, 0, &v[7], err)) < 0 ||
            (r = jv_int(o, "next_proc", false, 1, INT64_C(1) << 52, 1, &v[8], err)) < 0 ||
            (r = jv_int(o, "disk", false, 0, INT64_C(1) << 52, 0, &v[9], err)) < 0 ||
            (r = jv_str(o, "workspace", false, NS_PATH_MAX - 1, NULL, &ws, err)) < 0)
                goto out;
        if (strcmp(sid, id) != 0) {
                r = ns_err(err, EINVAL, "state %s names another sandbox", p);
                goto out;
        }
        const cJSON *pool = cJSON_GetObjectItemCaseSensitive(o, "pool");
        if (pool && !cJSON_IsBool(pool)) {
                r = ns_err(err, EINVAL, "field 'pool' of %s must be a boolean", p);
                goto out;
        }
        s->pooled = cJSON_IsTrue(pool);
        const cJSON *eph = cJSON_GetObjectItemCaseSensitive(o, "ephemeral");
        if (eph && !cJSON_IsBool(eph)) {
                r = ns_err(err, EINVAL, "field 'ephemeral' of %s must be a boolean", p);
                goto out;
        }
        s->ephemeral = cJSON_IsTrue(eph);
        snprintf(s->id, sizeof s->id, "%s", sid);
        s->owner = (uid_t) v[0];
        s->slot = (uint32_t) v[1];
        s->created = (uint64_t) v[2];
        s->init_pid = (pid_t) v[3];
        s->init_start = (uint64_t) v[4];
        s->limits.memory = (uint64_t) v[5];
        s->limits.pids = (uint64_t) v[6];
        s->limits.cpu_millis = (uint64_t) v[7];
        s->next_proc = (uint64_t) v[8];
        s->limits.disk = (uint64_t) v[9];
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(o, "layers"), *l;
        s->n_layers = 0;
        cJSON_ArrayForEach(l, ls) {
                if (s->n_layers >= NS_LAYERS_MAX || !cJSON_IsString(l) || !layer_name_valid(l->valuestring)) {
                        r = ns_err(err, EINVAL, "field 'layers' of %s is malformed", p);
                        goto out;
                }
                snprintf(s->layers[s->n_layers++], sizeof s->layers[0], "%s", l->valuestring);
        }
        s->n_overlays = 0;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(o, "overlays")) {
                if (s->n_overlays >= NS_OVERLAYS_MAX || !cJSON_IsString(l) ||
                    strlen(l->valuestring) > NS_OVERLAY_PATH_MAX || !ns_path_is_clean(l->valuestring, false) ||
                    strncmp(l->valuestring, "/workspace/", 11) != 0) {
                        r = ns_err(err, EINVAL, "field 'overlays' of %s is malformed", p);
                        goto out;
                }
                snprintf(s->overlays[s->n_overlays++], sizeof s->overlays[0], "%s", l->valuestring);
        }
        if (ws)
                snprintf(s->workspace, sizeof s->workspace, "%s", ws);
        const cJSON *net = cJSON_GetObjectItemCaseSensitive(o, "net");
        if (net) {
                const char *mode = NULL;
                int64_t slot, ifindex, counter;
                enum net_mode m;
                if ((r = jv_str(net, "mode", true, 16, NULL, &mode, err)) < 0 ||
                    (r = jv_int(net, "addr_slot", true, 0, INT32_MAX, 0, &slot, err)) < 0 ||
                    (r = jv_int(net, "ifindex", true, 1, INT32_MAX, 0, &ifindex, err)) < 0 ||
                    (r = jv_int(net, "counter", true, 0, UINT32_MAX - 1, 0, &counter, err)) < 0)
                        goto out;
                if (net_mode_parse(mode, &m) < 0) {
                        r = ns_err(err, EINVAL, "bad net mode in %s", p);
                        goto out;
                }
                s->net = (struct net_link){ .mode = m, .addr_slot = (int32_t) slot, .ifindex = (int) ifindex,
                                            .counter = (uint32_t) counter };
        }
        const cJSON *con = cJSON_GetObjectItemCaseSensitive(o, "connect");
        const cJSON *c;
        cJSON_ArrayForEach(c, con) {
                if (s->n_connects >= NS_CONNECTS_MAX || ns_connect_parse(c, &s->connects[s->n_connects], err) < 0)
                        break;
                s->n_connects++;
        }
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "publish")) {
                int64_t port, hp;
                if (s->n_publishes >= NS_PUBLISH_MAX || jv_int(c, "port", true, 1, 65535, 0, &port, err) < 0 ||
                    jv_int(c, "host_port", true, 1, 65535, 0, &hp, err) < 0)
                        break;
                s->publishes[s->n_publishes++] = (struct ns_publish){ (uint16_t) port, (uint16_t) hp };
        }
out:
        cJSON_Delete(o);
        return r;
}
