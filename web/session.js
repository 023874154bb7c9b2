// The session view: a sticky header (state, stats, actions, downloads, previews and a form to
// publish a port as one), the live timeline (virtualised), the diff, and the follow-up box with
// the queued prompts.

import { h, clear, fill, fmtBytes } from './dom.js';
import * as api from './api.js';
import { VList } from './vlist.js';
import { renderItem } from './timeline.js';
import { renderDiff } from './diff.js';

const ACTIVE = new Set(['queued', 'provisioning', 'running', 'idle', 'waiting', 'paused']);
const STATS_EVERY_MS = 3000;

export class SessionView {
  constructor(root, id, ctx) {
    this.root = root;
    this.id = id;
    this.ctx = ctx; // {toast(msg, bad), repoName(id), navigate(hash)}
    this.items = [];
    this.toolIdx = new Map(); // tool call id → item index
    this.lastSeq = 0;
    this.session = null;
    this.prompts = [];
    this.promptShown = new Set();
    this.tab = 'timeline';
    this.sub = null;
    this.timers = [];
    this.painted = new Promise((resolve) => { this.onPainted = resolve; });
  }

  destroy() {
    this.dead = true;
    this.sub?.close();
    this.vlist?.destroy();
    for (const t of this.timers) clearInterval(t);
  }

  async mount() {
    const root = clear(this.root);
    this.stateEl = h('span', { class: 'state', role: 'status', 'aria-live': 'polite' }, '…');
    this.titleEl = h('h1', { class: 'title' }, this.id);
    this.metaEl = h('div', { class: 'meta' });
    this.statsEl = h('div', { class: 'stats', 'aria-label': 'Resource use' });
    this.previewsEl = h('div', { class: 'previews', 'aria-label': 'Previews' });
    // Publish a port of the sandbox as a preview (its own origin, served by the preview proxy).
    this.portInput = h('input', { id: 'preview-port', type: 'number', inputmode: 'numeric', placeholder: '5173', autocomplete: 'off' });
    this.publishErr = h('span', { class: 'publish-error', role: 'alert' });
    this.publishEl = h('form', { class: 'publish', 'aria-label': 'Publish a port as a preview', hidden: true,
      onsubmit: (e) => { e.preventDefault(); this.publish(); } },
      h('label', { for: 'preview-port' }, 'Port'), this.portInput,
      h('button', { type: 'submit', class: 'small', 'data-action': 'publish' }, 'Publish'), this.publishErr);
    this.previewLinks = new Map(); // preview id → the one-time link from our own POST, not yet opened
    this.actionsEl = h('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Session actions' });
    this.tabTimeline = h('button', { class: 'tab', role: 'tab', 'aria-selected': 'true', id: 'tab-timeline', onclick: () => this.showTab('timeline') }, 'Timeline');
    this.tabDiff = h('button', { class: 'tab', role: 'tab', 'aria-selected': 'false', id: 'tab-diff', onclick: () => this.showTab('diff') }, 'Diff');
    const header = h('header', { class: 'session-head' },
      h('div', { class: 'row1' }, h('a', { class: 'back', href: '#/', 'aria-label': 'Back to the board' }, '←'), this.titleEl, this.stateEl),
      this.metaEl,
      h('div', { class: 'row2' }, this.statsEl, this.previewsEl, this.publishEl),
      this.actionsEl,
      h('div', { class: 'tabs', role: 'tablist' }, this.tabTimeline, this.tabDiff,
        h('span', { class: 'spacer' }),
        h('a', { class: 'btn small', href: api.url(`sessions/${this.id}/log`), download: `${this.id}.jsonl` }, 'Transcript'),
        h('button', { type: 'button', class: 'small', 'data-action': 'patch', onclick: () => this.downloadPatch() }, 'Patch')));
    this.scroller = h('div', { class: 'timeline', role: 'log', 'aria-label': 'Session timeline', tabindex: '0' });
    this.diffEl = h('div', { class: 'diff-pane', role: 'tabpanel', 'aria-labelledby': 'tab-diff', hidden: true });
    this.queueEl = h('ul', { class: 'queue', 'aria-label': 'Queued prompts' });
    this.questionEl = h('div', { class: 'question-banner', hidden: true, role: 'alert' });
    this.input = h('textarea', { id: 'followup', rows: '2', placeholder: 'Send a follow-up… (Ctrl+Enter)', 'aria-label': 'Follow-up prompt' });
    this.sendBtn = h('button', { type: 'submit', class: 'primary' }, 'Send');
    const form = h('form', { class: 'followup', onsubmit: (e) => { e.preventDefault(); this.send(); } },
      this.questionEl, this.queueEl, h('div', { class: 'followup-row' }, this.input, this.sendBtn));
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.send(); }
    });
    this.footer = form;
    root.append(h('div', { class: 'session' }, header, this.scroller, this.diffEl, form));
    this.vlist = new VList(this.scroller, (it) => renderItem(it, () => {
      const i = this.items.indexOf(it);
      if (i >= 0) this.vlist.remeasure(i);
    }));

    // The session and its first events at once.
    const events = this.loadEvents();
    events.catch(() => {});
    try {
      this.session = await api.get(`sessions/${this.id}`);
    } catch (e) {
      this.onPainted();
      if (this.dead) return; // logged out meanwhile: the login form has the page
      fill(root, h('div', { class: 'empty' }, h('h1', null, 'Session not found'), h('p', null, e.message), h('a', { href: '#/' }, 'Back to the board')));
      return;
    }
    this.renderHeader();
    try { await events; } catch (e) { if (!this.dead) this.ctx.toast(`events: ${e.message}`, true); } finally { this.onPainted(); }
    if (this.dead) return;
    await this.loadPrompts();
    if (this.dead) return;
    this.sub = api.subscribe({ session: this.id, after: this.lastSeq }, (ev) => this.onEvent(ev, true));
    this.loadPreviews();
    this.loadStats();
    this.timers.push(setInterval(() => this.loadStats(), STATS_EVERY_MS));
  }

  async loadEvents() {
    // A small first page paints at once; the rest is read in large pages and placed in one go.
    let after = 0, limit = 60;
    const rest = [];
    for (;;) {
      const page = await api.get(`sessions/${this.id}/events?after=${after}&limit=${limit}`);
      if (this.dead) return;
      const batch = [];
      for (const ev of page.events) this.onEvent(ev, false, batch);
      if (after === 0) this.vlist.push(batch, true); else rest.push(...batch);
      if (page.events.length < limit) break;
      after = page.events[page.events.length - 1].seq;
      limit = 1000;
    }
    this.vlist.push(rest);
  }

  async loadPrompts() {
    try {
      const r = await api.get(`sessions/${this.id}/prompts`);
      this.prompts = r.prompts;
      this.renderQueue();
      // Prompts that went to the agent appear in the timeline, at the time they were sent.
      const sent = this.prompts.filter((p) => p.state !== 'queued' && !this.promptShown.has(p.id));
      if (sent.length) this.insertPrompts(sent);
    } catch { /* the timeline still works */ }
  }

  insertPrompts(prompts) {
    for (const p of prompts) this.promptShown.add(p.id);
    // Placed before the first event newer than the prompt: rebuild the item list once.
    const merged = [];
    const ps = [...prompts].sort((a, b) => (a.created_at || 0) - (b.created_at || 0));
    let k = 0;
    for (const it of this.items) {
      const ts = it.kind === 'event' ? it.ev.ts : it.prompt.created_at;
      while (k < ps.length && (ps[k].created_at || 0) <= ts) merged.push({ kind: 'prompt', prompt: ps[k++] });
      merged.push(it);
    }
    while (k < ps.length) merged.push({ kind: 'prompt', prompt: ps[k++] });
    this.items = merged;
    this.toolIdx.clear();
    merged.forEach((it, i) => { if (it.kind === 'event' && it.ev.type === 'tool_call') this.toolIdx.set(it.ev.data?.id, i); });
    this.vlist.replace(this.items);
  }

  onEvent(ev, live, batch) {
    if (ev.seq <= this.lastSeq) return;
    this.lastSeq = ev.seq;
    const d = ev.data || {};
    if (ev.type === 'tool_result' && this.toolIdx.has(d.id)) {
      const i = this.toolIdx.get(d.id);
      this.items[i].result = d;
      if (i < this.vlist.items.length) this.vlist.invalidate(i);
      return;
    }
    const it = { kind: 'event', ev };
    if (ev.type === 'tool_call' && d.id) this.toolIdx.set(d.id, this.items.length);
    this.items.push(it);
    if (batch) batch.push(it); else this.vlist.push([it]);
    if (ev.type === 'status' && d.to && this.session) {
      this.session.state = d.to;
      if (d.reason !== undefined) this.session.state_reason = d.reason;
      this.renderHeader();
      if (live) {
        this.loadPrompts();
        if (this.tab === 'diff') this.loadDiff();
        if (d.to === 'idle' || d.to === 'running') this.loadPreviews();
      }
    }
    if (ev.type === 'preview' && live) this.loadPreviews();
    if (ev.type === 'question') this.showQuestion(d.text);
    if (ev.type === 'commit' && live && this.session) {
      this.session.last_commit = d.sha;
      this.renderHeader();
    }
  }

  /** Something outside changed (the repositories arrived, a status event): redraw the header. */
  update() { this.renderHeader(); }

  showQuestion(text) {
    fill(this.questionEl, h('strong', null, 'The agent asks: '), String(text ?? ''),
      h('div', { class: 'muted' }, 'Reply below.'));
    this.questionEl.hidden = this.session?.state !== 'waiting';
  }

  renderHeader() {
    const s = this.session;
    if (!s) return;
    this.titleEl.textContent = s.title || s.id;
    this.stateEl.textContent = s.state;
    this.stateEl.className = `state st-${s.state}`;
    this.root.querySelector('.session')?.setAttribute('data-state', s.state);
    fill(this.metaEl, 
      h('span', null, h('span', { class: 'muted' }, 'id '), h('code', null, s.id)),
      h('span', null, h('span', { class: 'muted' }, 'repo '), this.ctx.repoName(s.repo)),
      h('span', null, h('span', { class: 'muted' }, 'agent '), s.agent || '?', s.model ? ` (${s.model})` : ''),
      s.branch ? h('span', null, h('span', { class: 'muted' }, 'branch '), h('code', null, s.branch)) : null,
      s.last_commit ? h('span', null, h('span', { class: 'muted' }, 'commit '), h('code', null, s.last_commit.slice(0, 12))) : null,
      s.state_reason ? h('span', { class: 'muted' }, s.state_reason) : null);
    this.questionEl.hidden = s.state !== 'waiting' || !this.questionEl.firstChild;
    const st = s.state;
    const act = (label, fn, opts = {}) => h('button', { type: 'button', class: opts.cls || '', title: opts.title, onclick: fn, 'data-action': opts.name || label.toLowerCase() }, label);
    const btns = [];
    if (st === 'running' || st === 'waiting') btns.push(act('Interrupt', () => this.action('interrupt'), { title: 'End the current turn, keep the session' }));
    if (ACTIVE.has(st) && st !== 'paused') btns.push(act('Pause', () => this.action('pause'), { title: 'Freeze the sandbox' }));
    if (st === 'paused') btns.push(act('Resume', () => this.action('resume')));
    if (st === 'idle' || st === 'waiting') btns.push(act('End', () => this.action('complete'), { name: 'complete', title: 'Complete the session' }));
    if (ACTIVE.has(st)) {
      btns.push(act('Stop', () => this.action('stop', { force: false }), { title: 'Interrupt, wait a grace period, then kill' }));
      btns.push(act('Force stop', () => this.action('stop', { force: true }), { name: 'force-stop', cls: 'danger', title: 'Kill at once' }));
    }
    btns.push(act('Delete', () => this.remove(), { cls: 'danger' }));
    fill(this.actionsEl, ...btns);
    const open = ACTIVE.has(st);
    this.input.disabled = !open;
    this.sendBtn.disabled = !open;
    this.input.placeholder = open ? (st === 'waiting' ? 'Reply to the agent… (Ctrl+Enter)' : 'Send a follow-up… (Ctrl+Enter)') : `The session is ${st}.`;
    if (!open) { clear(this.statsEl); clear(this.previewsEl); }
    this.publishEl.hidden = !open || st === 'queued' || st === 'paused';
  }

  async action(name, body) {
    try {
      // The answer may predate the state change it started (and the stream's status event may
      // have come first): the state shown is the stream's, the rest is taken from the answer.
      const r = await api.post(`sessions/${this.id}/${name}`, body);
      if (r && r.id === this.id) { this.session = { ...r, state: this.session.state, state_reason: this.session.state_reason }; this.renderHeader(); }
    } catch (e) {
      this.ctx.toast(`${name}: ${e.message}`, true);
    }
  }

  async remove() {
    if (!confirm(`Delete session ${this.id}? Its working tree, sandbox and unpushed branch go.`)) return;
    try {
      await api.del(`sessions/${this.id}`);
      this.ctx.toast('Session deleted');
      this.ctx.navigate('#/');
    } catch (e) {
      this.ctx.toast(`delete: ${e.message}`, true);
    }
  }

  async send() {
    const text = this.input.value.trim();
    if (!text || this.input.disabled) return;
    this.sendBtn.disabled = true;
    try {
      await api.post(`sessions/${this.id}/prompts`, { text });
      this.input.value = '';
      await this.loadPrompts();
    } catch (e) {
      this.ctx.toast(`send: ${e.message}`, true);
    } finally {
      this.sendBtn.disabled = !ACTIVE.has(this.session?.state);
    }
  }

  renderQueue() {
    const queued = this.prompts.filter((p) => p.state === 'queued');
    fill(this.queueEl, ...queued.map((p) => h('li', { class: 'queued', dataset: { prompt: p.id } },
      h('span', { class: 'tag' }, 'queued'), ' ', h('span', { class: 'q-text' }, p.text),
      h('button', { type: 'button', class: 'small', 'aria-label': `Cancel queued prompt ${p.seq}`, onclick: () => this.cancelPrompt(p.id) }, 'Cancel'))));
  }

  async cancelPrompt(pid) {
    try {
      await api.del(`sessions/${this.id}/prompts/${pid}`);
    } catch (e) {
      this.ctx.toast(`cancel: ${e.message}`, true);
    }
    this.loadPrompts();
  }

  showTab(tab) {
    this.tab = tab;
    this.tabTimeline.setAttribute('aria-selected', String(tab === 'timeline'));
    this.tabDiff.setAttribute('aria-selected', String(tab === 'diff'));
    this.scroller.hidden = tab !== 'timeline';
    this.diffEl.hidden = tab !== 'diff';
    if (tab === 'diff') this.loadDiff();
    else this.vlist.schedule();
  }

  async downloadPatch() {
    try {
      const d = await api.get(`sessions/${this.id}/diff`);
      const a = h('a', { href: URL.createObjectURL(new Blob([d.diff || ''], { type: 'text/x-diff' })), download: `${this.id}.patch` });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      this.ctx.toast(`patch: ${e.message}`, true);
    }
  }

  async loadDiff() {
    try {
      const d = await api.get(`sessions/${this.id}/diff`);
      fill(this.diffEl, 
        h('p', { class: 'muted diff-range' }, `${d.files ?? 0} file(s) · `, h('code', null, String(d.base || '').slice(0, 12)), ' → ',
          h('code', null, String(d.head || '').slice(0, 12)), d.truncated ? ' · truncated' : ''),
        renderDiff(d.diff || ''));
    } catch (e) {
      fill(this.diffEl, h('p', { class: 'empty' }, `No diff: ${e.message}`));
    }
  }

  async loadStats() {
    if (!this.session || !ACTIVE.has(this.session.state) || this.session.state === 'queued' || document.hidden) return;
    try {
      const st = await api.get(`sessions/${this.id}/stats`);
      const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
      const mem = num(st.memory?.current), memMax = num(st.memory?.max);
      const cpuUs = num(st.cpu?.usage_usec), pids = num(st.pids?.current), pidsMax = num(st.pids?.max);
      // CPU as a share of one core since the last sample, and the total.
      let cpuPct = '';
      const now = performance.now();
      if (cpuUs !== null && this.lastCpu) {
        const dt = (now - this.lastCpu.t) * 1000;
        if (dt > 0) cpuPct = `${Math.max(0, ((cpuUs - this.lastCpu.us) / dt) * 100).toFixed(0)}% · `;
      }
      if (cpuUs !== null) this.lastCpu = { t: now, us: cpuUs };
      fill(this.statsEl, 
        h('span', { dataset: { stat: 'memory' } }, h('span', { class: 'muted' }, 'memory '), mem !== null ? fmtBytes(mem) : '–', memMax ? ` / ${fmtBytes(memMax)}` : ''),
        h('span', { dataset: { stat: 'cpu' } }, h('span', { class: 'muted' }, 'cpu '), cpuUs !== null ? `${cpuPct}${(cpuUs / 1e6).toFixed(2)} s` : '–'),
        h('span', { dataset: { stat: 'pids' } }, h('span', { class: 'muted' }, 'pids '), pids !== null ? String(pids) : '–', pidsMax ? ` / ${pidsMax}` : ''),
        st.frozen ? h('span', { class: 'tag' }, 'frozen') : null);
    } catch { clear(this.statsEl); }
  }

  async loadPreviews() {
    const seq = (this.previewsSeq = (this.previewsSeq || 0) + 1); // only the latest answer is shown
    try {
      const r = await api.get(`sessions/${this.id}/previews`);
      if (this.dead || seq !== this.previewsSeq) return;
      if (!ACTIVE.has(this.session?.state)) { clear(this.previewsEl); return; } // ended meanwhile
      const list = Array.isArray(r.previews) ? r.previews : [];
      const links = list.map((p) => this.previewLink(p)).filter(Boolean);
      // A redraw keeps the keyboard focus on the same preview; a port just published takes it.
      const focused = this.previewsEl.contains(document.activeElement) ? document.activeElement.dataset.preview : null;
      fill(this.previewsEl, ...links);
      const want = links.find((a) => a.dataset.preview === (this.focusPreview || focused));
      if (want) { want.focus(); this.focusPreview = null; }
    } catch { if (seq === this.previewsSeq) clear(this.previewsEl); }
  }

  /** The link of preview p, or null when its URL is not an http(s) URL of another origin. */
  previewLink(p) {
    // A preview is served from its own origin (never the dashboard's), opened in a new browsing
    // context without a referrer or an opener.  The URL the list gives needs the preview's own
    // cookie; the one-time link a POST answers sets it (on the preview's origin, not here).
    const fresh = this.previewLinks.get(p.id);
    const href = fresh || (typeof p.url === 'string' ? p.url : '');
    if (!otherOrigin(href)) return null;
    const port = Number.isInteger(p.port) ? p.port : null;
    const a = h('a', { class: 'btn small preview', href, target: '_blank', rel: 'noopener noreferrer', dataset: { preview: String(p.id ?? '') },
      title: `Open the preview of port ${port ?? '?'} (its own site)` }, `Preview${port ? ` :${port}` : ''}`);
    a.addEventListener('click', (e) => {
      if (this.previewLinks.has(p.id)) { // our link, unused: the browser follows it
        this.previewLinks.delete(p.id);
        setTimeout(() => { if (otherOrigin(p.url)) a.href = p.url; }, 0);
        return;
      }
      if (!port || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      // No link of ours: ask for a fresh one (the earlier one stops working) and open that.
      e.preventDefault();
      this.openFresh(port);
    });
    return a;
  }

  async openFresh(port) {
    try {
      const r = await api.post(`sessions/${this.id}/previews`, { port });
      if (!otherOrigin(r?.url)) throw new Error('the server gave no preview link');
      window.open(r.url, '_blank', 'noopener,noreferrer');
    } catch (e) {
      this.publishErr.textContent = `preview: ${e.message}`;
    }
  }

  async publish() {
    const port = Number(this.portInput.value);
    this.publishErr.textContent = '';
    // The range is the server's to check (its answer is shown); only a non-number stops here.
    if (this.portInput.value.trim() === '' || !Number.isInteger(port)) {
      this.publishErr.textContent = 'Enter the port the dev server listens on in the sandbox.';
      this.portInput.focus();
      return;
    }
    try {
      const r = await api.post(`sessions/${this.id}/previews`, { port });
      if (r && typeof r.id === 'string' && otherOrigin(r.url)) {
        this.previewLinks.set(r.id, r.url);
        this.focusPreview = r.id;
      }
      this.portInput.value = '';
      await this.loadPreviews();
    } catch (e) {
      this.publishErr.textContent = `publish: ${e.message}`;
    }
  }
}

/** Whether url is an http(s) URL on an origin other than the dashboard's. */
function otherOrigin(url) {
  try {
    const u = new URL(String(url ?? ''));
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin !== location.origin;
  } catch { return false; }
}
