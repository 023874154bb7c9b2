/* nightshift supervisor — the adapter registry and the byte handling every adapter shares.
 *
 * Event data (a JSON object per event; the same shapes for every agent):
 *
 *   message         {"role":"assistant","text":S}            a complete assistant text
 *   tool_call       {"id":S,"name":S,"input":{...}}           the agent started a tool
 *   tool_result     {"id":S,"output":S,"is_error":B}          ... and it finished (same id)
 *   command_output  {"stream":"stdout"|"stderr","text":S}     `command` agent output, a chunk each
 *   usage           {"input_tokens":N,"output_tokens":N,"cost_usd":N?}   once per turn when known;
 *                   input_tokens counts cached input too; cost_usd only when the agent reports it
 *   error           {"message":S}                             agent-reported or parser-found error
 *   question        {"text":S}                                the turn ended asking the user
 *
 * Strings are valid UTF-8 without NUL (bad bytes become U+FFFD); texts are cut at AGENT_TEXT_MAX and
 * tool inputs at AGENT_INPUT_MAX.  `status` is never emitted here: the session runner owns state.
 *
 * Tool names are the agent's own (claude "Write"/"Bash", codex "apply_patch"/"shell", opencode
 * "write"/"bash"); codex's input is {"command":S} for shell and {"changes":[{"path","kind"}]} for
 * apply_patch, since its output holds the outcome only.
 *
 * stdout is split into lines (at most AGENT_LINE_MAX bytes: a longer one is dropped up to its
 * newline and reported once); each line must be one JSON object, anything else is an `error` event
 * (the first AGENT_BAD_LINES_REPORTED per turn, then one note).  stderr of the CLI agents is only
 * kept as a tail for the error event of a failed turn.  The `command` agent is raw: every chunk of
 * either stream is a command_output event, with an incomplete UTF-8 sequence at a chunk's end held
 * back for the next one. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/agent_internal.h"

static const struct {
        const agent_adapter *adapter;
        const agent_ops *ops;
} registry[] = {
        { &agent_command_adapter, &agent_command_ops },
        { &agent_claude_adapter, &agent_claude_ops },
        { &agent_codex_adapter, &agent_codex_ops },
        { &agent_opencode_adapter, &agent_opencode_ops },
};

/* Raw chunks are passed on in slices of at most this many bytes. */
#define RAW_SLICE (64 * 1024)
/* A line buffer grown past this is released after its line, not kept for the next. */
#define LINE_KEEP (64 * 1024)

struct agent_parser {
        const agent_ops *ops;
        void *state;
        char *line; /* the partial stdout line (lines mode) */
        size_t len, cap;
        bool discarding; /* the current line passed AGENT_LINE_MAX: dropped up to its newline */
        char hold[2][4]; /* raw mode: an incomplete UTF-8 sequence per stream */
        size_t hold_len[2];
        char tail[AGENT_STDERR_TAIL]; /* lines mode: the last stderr bytes */
        size_t tail_len;
        unsigned bad_lines;
};

const agent_adapter *agent_find(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
                if (strcmp(registry[i].adapter->name, name) == 0)
                        return registry[i].adapter;
        return NULL;
}

void agent_cmd_clear(agent_cmd *c) {
        if (!c)
                return;
        strv_freep(&c->argv);
        strv_freep(&c->env);
        free(c->stdin_data);
        *c = (agent_cmd){ 0 };
}

int agent_parser_new(const agent_adapter *adapter, agent_parser **out, ns_error *err) {
        const agent_ops *ops = NULL;
        for (size_t i = 0; adapter && i < ARRAY_SIZE(registry); i++)
                if (registry[i].adapter == adapter || strcmp(registry[i].adapter->name, adapter->name) == 0)
                        ops = registry[i].ops;
        if (!ops)
                return ns_err(err, EINVAL, "unknown agent adapter");
        agent_parser *p = calloc(1, sizeof *p);
        if (!p || !(p->state = calloc(1, ops->state_size ? ops->state_size : 1))) {
                free(p);
                return ns_err(err, ENOMEM, "agent parser");
        }
        p->ops = ops;
        *out = p;
        return 0;
}

void agent_parser_free(agent_parser *p) {
        if (!p)
                return;
        if (p->ops->done)
                p->ops->done(p->state);
        free(p->state);
        free(p->line);
        free(p);
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), 0 if invalid; *incomplete when it is a valid
 * prefix cut by the end of the buffer. */
static size_t utf8_seq(const unsigned char *s, size_t n, bool *incomplete) {
        *incomplete = false;
        unsigned c = s[0];
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80)
                return c ? 1 : 0;
        if (c >= 0xc2 && c <= 0xdf)
                need = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                need = 3;
                if (c == 0xe0)
                        lo = 0xa0;
                if (c == 0xed)
                        hi = 0x9f; /* no surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
                need = 4;
                if (c == 0xf0)
                        lo = 0x90;
                if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;
        for (size_t i = 1; i < need; i++) {
                if (i >= n) {
                        *incomplete = true;
                        return 0;
                }
                unsigned b = s[i];
                if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf))
                        return 0;
        }
        return need;
}

size_t agent_utf8_incomplete_tail(const char *s, size_t len) {
        for (size_t k = 1; k <= 3 && k <= len; k++) {
                const unsigned char *q = (const unsigned char *) s + len - k;
                if ((*q & 0xc0) == 0x80)
                        continue;
                bool inc;
                utf8_seq(q, k, &inc);
                return inc ? k : 0;
        }
        return 0;
}

static bool utf8_valid(const char *s, size_t len) {
        for (size_t i = 0; i < len;) {
                bool inc;
                size_t n = utf8_seq((const unsigned char *) s + i, len - i, &inc);
                if (!n)
                        return false;
                i += n;
        }
        return true;
}

char *agent_utf8_repair(const char *s, size_t len) {
        if (len > SIZE_MAX / 3 - 1)
                return NULL;
        char *out = malloc(len * 3 + 1), *o = out; /* each bad byte becomes 3 */
        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                bool inc;
                size_t n = utf8_seq((const unsigned char *) s + i, len - i, &inc);
                if (n) {
                        memcpy(o, s + i, n);
                        o += n;
                        i += n;
                } else {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                        i++;
                }
        }
        *o = 0;
        return out;
}

/* The largest cut <= max that does not split a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
        if (len <= max)
                return len;
        size_t n = max;
        for (int k = 0; k < 3 && n > 0 && (((unsigned char) s[n]) & 0xc0) == 0x80; k++)
                n--;
        return n;
}

/* ---- events ---------------------------------------------------------------------------------- */

int agent_emit(const agent_emitter *em, const char *type, cJSON *data, ns_error *err) {
        if (!data)
                return ns_err(err, ENOMEM, "agent event %s", type);
        _cleanup_free_ char *s = cJSON_PrintUnformatted(data);
        cJSON_Delete(data);
        if (!s)
                return ns_err(err, ENOMEM, "agent event %s", type);
        size_t n = strlen(s);
        if (!utf8_valid(s, n)) {
                /* Bad bytes are >= 0x80, never JSON syntax: replacing them keeps the text valid. */
                char *t = agent_utf8_repair(s, n);
                if (!t)
                        return ns_err(err, ENOMEM, "agent event %s", type);
                free(s);
                s = t;
        }
        return em->event(em->ctx, type, s);
}

cJSON *agent_add_text(cJSON *obj, const char *key, const char *s, size_t len) {
        if (!s)
                s = "", len = 0;
        size_t keep = utf8_cut(s, len, AGENT_TEXT_MAX);
        _cleanup_free_ char *t = agent_utf8_repair(s, keep);
        if (!t)
                return NULL;
        if (keep < len) {
                size_t tl = strlen(t);
                char note[64];
                int m = snprintf(note, sizeof note, "\n[... %zu bytes cut]", len - keep);
                char *u = realloc(t, tl + (size_t) m + 1);
                if (!u)
                        return NULL;
                memcpy(u + tl, note, (size_t) m + 1);
                t = u;
        }
        return cJSON_AddStringToObject(obj, key, t);
}

int agent_emit_error(const agent_emitter *em, ns_error *err, const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        size_t len = (size_t) n < sizeof msg ? (size_t) n : sizeof msg - 1;
        cJSON *o = cJSON_CreateObject();
        if (o && !agent_add_text(o, "message", msg, len)) {
                cJSON_Delete(o);
                o = NULL;
        }
        return agent_emit(em, "error", o, err);
}

int agent_emit_message(const agent_emitter *em, const char *text, ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        if (o && (!cJSON_AddStringToObject(o, "role", "assistant") || !agent_add_text(o, "text", text, strlen(text)))) {
                cJSON_Delete(o);
                o = NULL;
        }
        return agent_emit(em, "message", o, err);
}

int agent_emit_tool_call(const agent_emitter *em, const char *id, const char *name, const cJSON *input,
                         ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        cJSON *in = input ? cJSON_Duplicate(input, true) : cJSON_CreateObject();
        if (in) {
                _cleanup_free_ char *s = cJSON_PrintUnformatted(in);
                size_t n = s ? strlen(s) : 0;
                if (n > AGENT_INPUT_MAX) {
                        /* Too big to keep as JSON: a cut string of it says what it was. */
                        cJSON_Delete(in);
                        in = cJSON_CreateObject();
                        if (in && !agent_add_text(in, "truncated", s, utf8_cut(s, n, AGENT_INPUT_MAX))) {
                                cJSON_Delete(in);
                                in = NULL;
                        }
                } else if (!s) {
                        cJSON_Delete(in);
                        in = NULL;
                }
        }
        if (!o || !in || !agent_add_text(o, "id", id ? id : "", id ? strlen(id) : 0) ||
            !agent_add_text(o, "name", name ? name : "", name ? strlen(name) : 0) ||
            !cJSON_AddItemToObject(o, "input", in)) {
                cJSON_Delete(in);
                cJSON_Delete(o);
                return agent_emit(em, "tool_call", NULL, err);
        }
        return agent_emit(em, "tool_call", o, err);
}

int agent_emit_tool_result(const agent_emitter *em, const char *id, const char *output, bool is_error,
                           ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        if (!output)
                output = "";
        if (o && (!agent_add_text(o, "id", id ? id : "", id ? strlen(id) : 0) ||
                  !agent_add_text(o, "output", output, strlen(output)) || !cJSON_AddBoolToObject(o, "is_error", is_error))) {
                cJSON_Delete(o);
                o = NULL;
        }
        return agent_emit(em, "tool_result", o, err);
}

int agent_emit_question(const agent_emitter *em, const char *text, ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        if (o && !agent_add_text(o, "text", text, strlen(text))) {
                cJSON_Delete(o);
                o = NULL;
        }
        return agent_emit(em, "question", o, err);
}

int agent_emit_usage(const agent_emitter *em, double input_tokens, double output_tokens, double cost_usd,
                     ns_error *err) {
        cJSON *o = cJSON_CreateObject();
        if (o && (!cJSON_AddNumberToObject(o, "input_tokens", input_tokens) ||
                  !cJSON_AddNumberToObject(o, "output_tokens", output_tokens) ||
                  (cost_usd >= 0 && !cJSON_AddNumberToObject(o, "cost_usd", cost_usd)))) {
                cJSON_Delete(o);
                o = NULL;
        }
        return agent_emit(em, "usage", o, err);
}

static bool ref_valid(const char *ref) {
        size_t n = ref ? strlen(ref) : 0;
        if (n == 0 || n > 128 || !((ref[0] >= 'a' && ref[0] <= 'z') || (ref[0] >= 'A' && ref[0] <= 'Z') ||
                                   (ref[0] >= '0' && ref[0] <= '9')))
                return false;
        return strspn(ref, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

void agent_report_ref(const agent_emitter *em, const char *ref) {
        if (em->agent_ref && ref_valid(ref))
                em->agent_ref(em->ctx, ref);
}

const char *agent_json_str(const cJSON *obj, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

double agent_json_num(const cJSON *obj, const char *key, double def) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 ? v->valuedouble : def;
}

bool agent_text_is_question(const char *text) {
        size_t n = text ? strlen(text) : 0;
        while (n > 0 && is_space(text[n - 1]))
                n--;
        return (n >= 1 && text[n - 1] == '?') || (n >= 3 && memcmp(text + n - 3, "\xef\xbc\x9f", 3) == 0);
}

/* ---- argv/env -------------------------------------------------------------------------------- */

static void strv_push(agent_strv *s, char *str) {
        if (!str) {
                s->oom = true;
                return;
        }
        if (s->n + 2 > s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                char **v = realloc(s->v, cap * sizeof *v);
                if (!v) {
                        free(str);
                        s->oom = true;
                        return;
                }
                s->v = v;
                s->cap = cap;
        }
        s->v[s->n++] = str;
        s->v[s->n] = NULL;
}

void agent_strv_add(agent_strv *s, const char *str) {
        strv_push(s, strdup(str));
}

void agent_strv_addf(agent_strv *s, const char *fmt, ...) {
        char *str = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&str, fmt, ap) < 0)
                str = NULL;
        va_end(ap);
        strv_push(s, str);
}

void agent_strv_clear(agent_strv *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (agent_strv){ 0 };
}

int agent_strv_take(agent_strv *s, char ***out, ns_error *err) {
        if (s->oom || !s->v) {
                agent_strv_clear(s);
                return ns_err(err, ENOMEM, "agent command");
        }
        *out = s->v;
        *s = (agent_strv){ 0 };
        return 0;
}

static bool model_valid(const char *m) {
        size_t n = strlen(m);
        return n > 0 && n <= 128 && m[0] != '-' && m[0] != '.' &&
               strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-") == n;
}

static bool path_valid(const char *p) {
        return p && p[0] == '/' && strlen(p) < 4096 && !strpbrk(p, "\n\"\\$`");
}

int agent_check_spec(const agent_turn_spec *spec, bool need_agents_dir, ns_error *err) {
        if (!spec->prompt || !spec->prompt[0])
                return ns_err(err, EINVAL, "empty prompt");
        if (spec->resume_ref && !ref_valid(spec->resume_ref))
                return ns_err(err, EINVAL, "invalid agent session reference");
        if (spec->model && !model_valid(spec->model))
                return ns_err(err, EINVAL, "invalid model name");
        if (spec->workspace && !path_valid(spec->workspace))
                return ns_err(err, EINVAL, "invalid workspace path");
        if (need_agents_dir && !path_valid(spec->agents_dir))
                return ns_err(err, EINVAL, "invalid agents directory");
        return 0;
}

/* ---- parsing --------------------------------------------------------------------------------- */

static int report_bad(agent_parser *p, const agent_emitter *em, ns_error *err, const char *what, const char *s,
                      size_t len) {
        p->bad_lines++;
        if (p->bad_lines > AGENT_BAD_LINES_REPORTED + 1)
                return 0;
        if (p->bad_lines == AGENT_BAD_LINES_REPORTED + 1)
                return agent_emit_error(em, err, "more unparsable agent output not reported");
        size_t n = utf8_cut(s, len, 200);
        _cleanup_free_ char *preview = agent_utf8_repair(s, n);
        if (!preview)
                return ns_err(err, ENOMEM, "agent output");
        return agent_emit_error(em, err, "%s: %s%s", what, preview, n < len ? "..." : "");
}

static int process_line(agent_parser *p, const char *s, size_t len, const agent_emitter *em, ns_error *err) {
        while (len > 0 && is_space(s[len - 1]))
                len--;
        while (len > 0 && is_space(s[0]))
                s++, len--;
        if (len == 0)
                return 0;
        if (memchr(s, 0, len))
                return report_bad(p, em, err, "agent output with a NUL byte", s, len);
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, false);
        if (j && end && (size_t) (end - s) < len) {
                cJSON_Delete(j);
                j = NULL;
        }
        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return report_bad(p, em, err, "unparsable agent output", s, len);
        }
        int r = p->ops->json(p->state, j, em, err);
        cJSON_Delete(j);
        return r;
}

static int line_too_long(agent_parser *p, const agent_emitter *em, ns_error *err) {
        free(p->line);
        p->line = NULL;
        p->len = p->cap = 0;
        p->bad_lines++;
        if (p->bad_lines > AGENT_BAD_LINES_REPORTED + 1)
                return 0;
        return agent_emit_error(em, err, "agent output line longer than %d bytes dropped", AGENT_LINE_MAX);
}

static int feed_lines(agent_parser *p, const char *buf, size_t len, const agent_emitter *em, ns_error *err) {
        while (len > 0) {
                const char *nl = memchr(buf, '\n', len);
                size_t seg = nl ? (size_t) (nl - buf) : len;
                int r = 0;
                if (p->discarding) {
                        if (nl)
                                p->discarding = false;
                } else if (p->len + seg > AGENT_LINE_MAX) {
                        r = line_too_long(p, em, err);
                        p->discarding = !nl;
                } else if (nl && p->len == 0) {
                        r = process_line(p, buf, seg, em, err); /* whole line in buf: no copy */
                } else {
                        if (p->len + seg > p->cap) {
                                size_t cap = p->cap ? p->cap : 4096;
                                while (cap < p->len + seg)
                                        cap *= 2;
                                if (cap > AGENT_LINE_MAX)
                                        cap = AGENT_LINE_MAX;
                                char *l = realloc(p->line, cap);
                                if (!l)
                                        return ns_err(err, ENOMEM, "agent output line");
                                p->line = l;
                                p->cap = cap;
                        }
                        memcpy(p->line + p->len, buf, seg);
                        p->len += seg;
                        if (nl) {
                                r = process_line(p, p->line, p->len, em, err);
                                p->len = 0;
                                if (p->cap > LINE_KEEP) {
                                        free(p->line);
                                        p->line = NULL;
                                        p->cap = 0;
                                }
                        }
                }
                if (r != 0)
                        return r;
                if (!nl)
                        break;
                buf = nl + 1;
                len -= seg + 1;
        }
        return 0;
}

static int raw_emit(agent_parser *p, int stream, const char *s, size_t len, const agent_emitter *em, ns_error *err) {
        while (len > 0) {
                size_t n = utf8_cut(s, len, RAW_SLICE);
                if (n == 0)
                        n = len < RAW_SLICE ? len : RAW_SLICE;
                _cleanup_free_ char *t = agent_utf8_repair(s, n);
                if (!t)
                        return ns_err(err, ENOMEM, "agent output");
                int r = p->ops->chunk(p->state, stream, t, strlen(t), em, err);
                if (r != 0)
                        return r;
                s += n;
                len -= n;
        }
        return 0;
}

static int feed_raw(agent_parser *p, int stream, const char *buf, size_t len, const agent_emitter *em,
                    ns_error *err) {
        char *hold = p->hold[stream - 1];
        size_t h = p->hold_len[stream - 1];
        _cleanup_free_ char *joined = NULL;
        if (h > 0 && len > 0) {
                char tmp[8];
                size_t take = len < 4 ? len : 4;
                memcpy(tmp, hold, h);
                memcpy(tmp + h, buf, take);
                bool inc;
                utf8_seq((const unsigned char *) tmp, h + take, &inc);
                if (inc) { /* still incomplete: h + len < 4 */
                        memcpy(hold + h, buf, len);
                        p->hold_len[stream - 1] += len;
                        return 0;
                }
                /* Completed (or proven invalid): the held bytes go out with this chunk. */
                if (!(joined = malloc(h + len)))
                        return ns_err(err, ENOMEM, "agent output");
                memcpy(joined, hold, h);
                memcpy(joined + h, buf, len);
                buf = joined;
                len += h;
                p->hold_len[stream - 1] = 0;
        }
        size_t tail = agent_utf8_incomplete_tail(buf, len);
        int r = raw_emit(p, stream, buf, len - tail, em, err);
        if (r != 0)
                return r;
        memcpy(hold, buf + len - tail, tail);
        p->hold_len[stream - 1] = tail;
        return 0;
}

int agent_parser_feed(agent_parser *p, const char *buf, size_t len, const agent_emitter *em, ns_error *err) {
        if (p->ops->chunk)
                return feed_raw(p, 1, buf, len, em, err);
        return feed_lines(p, buf, len, em, err);
}

int agent_parser_feed_stderr(agent_parser *p, const char *buf, size_t len, const agent_emitter *em,
                             ns_error *err) {
        if (p->ops->chunk)
                return feed_raw(p, 2, buf, len, em, err);
        if (len >= AGENT_STDERR_TAIL) {
                memcpy(p->tail, buf + len - AGENT_STDERR_TAIL, AGENT_STDERR_TAIL);
                p->tail_len = AGENT_STDERR_TAIL;
        } else {
                size_t drop = p->tail_len + len > AGENT_STDERR_TAIL ? p->tail_len + len - AGENT_STDERR_TAIL : 0;
                memmove(p->tail, p->tail + drop, p->tail_len - drop);
                memcpy(p->tail + p->tail_len - drop, buf, len);
                p->tail_len += len - drop;
        }
        return 0;
}

bool agent_parser_at_boundary(const agent_parser *p) {
        return p->len == 0 && !p->discarding && p->hold_len[0] == 0 && p->hold_len[1] == 0;
}

int agent_parser_finish(agent_parser *p, int exit_code, int signal, const agent_emitter *em, agent_outcome *out,
                        ns_error *err) {
        int r = 0;
        if (p->ops->chunk) {
                for (int s = 1; s <= 2 && r == 0; s++) {
                        size_t h = p->hold_len[s - 1];
                        p->hold_len[s - 1] = 0;
                        r = raw_emit(p, s, p->hold[s - 1], h, em, err);
                }
        } else if (p->len > 0 && !p->discarding) {
                r = process_line(p, p->line, p->len, em, err); /* a last line without newline */
        }
        p->len = 0;
        p->discarding = false;
        if (r != 0)
                return r;
        /* The tail without a leading partial character, trimmed. */
        size_t start = 0;
        while (start < p->tail_len && start < 3 && (((unsigned char) p->tail[start]) & 0xc0) == 0x80)
                start++;
        _cleanup_free_ char *tail = agent_utf8_repair(p->tail + start, p->tail_len - start);
        if (!tail)
                return ns_err(err, ENOMEM, "agent stderr");
        size_t tl = strlen(tail);
        while (tl > 0 && is_space(tail[tl - 1]))
                tail[--tl] = 0;
        agent_exit x = { .code = exit_code, .signal = signal, .stderr_tail = tail };
        *out = AGENT_TURN_FAILED;
        return p->ops->finish(p->state, &x, em, out, err);
}

int agent_cmd_build(agent_strv *argv, agent_strv *env, const char *prompt, agent_cmd *out, ns_error *err) {
        int r;
        *out = (agent_cmd){ 0 };
        if ((r = agent_strv_take(argv, &out->argv, err)) < 0 || (r = agent_strv_take(env, &out->env, err)) < 0) {
                agent_strv_clear(argv);
                agent_strv_clear(env);
                agent_cmd_clear(out);
                return r;
        }
        if (!(out->stdin_data = strdup(prompt))) {
                agent_cmd_clear(out);
                return ns_err(err, ENOMEM, "out of memory building the agent's command");
        }
        out->stdin_len = strlen(out->stdin_data);
        return 0;
}

int agent_set_str(char **dst, const char *src, ns_error *err) {
        char *s = strdup(src ? src : "");
        if (!s)
                return ns_err(err, ENOMEM, "out of memory reading the agent's output");
        free(*dst);
        *dst = s;
        return 0;
}
