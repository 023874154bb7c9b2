// The board: sessions as cards in columns by state, updated live (app.js feeds it status
// events); filter by repository, search by title (the dashboard titles a session with its
// prompt's first line), id, repository or agent.

import { h, clear, fill, ago } from './dom.js';

export const COLUMNS = [
  { key: 'queued', label: 'Queued', states: ['queued', 'provisioning'] },
  { key: 'running', label: 'Running', states: ['running'] },
  { key: 'waiting', label: 'Waiting for input', states: ['waiting'] },
  { key: 'idle', label: 'Idle', states: ['idle'] },
  { key: 'paused', label: 'Paused', states: ['paused'] },
  { key: 'completed', label: 'Completed', states: ['completed'] },
  { key: 'failed', label: 'Failed / stopped', states: ['failed', 'stopped'] },
];
const COLUMN_OF = {};
// A column shows its newest cards; the rest on request (search and the filter reach them all).
const COLUMN_PAGE = 40;
for (const c of COLUMNS) for (const s of c.states) COLUMN_OF[s] = c.key;
let CARD = null; // the card every card is a copy of (card())

export class Board {
  constructor(root, store) {
    this.root = root;
    this.store = store; // {sessions: Map, repos: [], repoName(id)}
    this.cards = new Map(); // id → {el, key}
    this.frame = 0;
    this.filterRepo = sessionStorage.getItem('ns-filter-repo') || '';
    this.query = '';
    this.expanded = new Set(); // columns showing every card
  }

  mount() {
    const root = clear(this.root);
    this.repoSel = h('select', { id: 'filter-repo', onchange: () => { this.filterRepo = this.repoSel.value; sessionStorage.setItem('ns-filter-repo', this.filterRepo); this.render(); } });
    this.search = h('input', { id: 'search', type: 'search', placeholder: 'Search title, prompt, id…', autocomplete: 'off',
      oninput: () => { this.query = this.search.value.trim().toLowerCase(); this.render(); } });
    this.countEl = h('span', { class: 'muted count', 'aria-live': 'polite' });
    this.cols = new Map();
    const colEls = COLUMNS.map((c) => {
      const list = h('div', { class: 'cards', role: 'list' });
      const count = h('span', { class: 'col-count' }, '0');
      const more = h('button', { type: 'button', class: 'more small', hidden: true, onclick: () => { this.expanded.add(c.key); this.render(); } });
      const col = h('section', { class: `column col-${c.key}`, 'aria-label': c.label, dataset: { column: c.key } },
        h('h2', null, h('span', { class: `dot st-${c.states[0]}` }), c.label, ' ', count), list, more);
      this.cols.set(c.key, { list, count, col, more });
      return col;
    });
    root.append(h('div', { class: 'board' },
      h('div', { class: 'toolbar' },
        h('label', { for: 'filter-repo' }, 'Repository'), this.repoSel,
        h('label', { for: 'search', class: 'sr-only' }, 'Search'), this.search, this.countEl,
        h('span', { class: 'spacer' }),
        h('a', { class: 'btn primary', href: '#/new', 'aria-keyshortcuts': 'n' }, 'New session')),
      h('div', { class: 'columns' }, colEls)));
    this.renderRepos();
    this.render();
  }

  renderRepos() {
    if (!this.repoSel) return;
    fill(this.repoSel, h('option', { value: '' }, 'All repositories'),
      ...this.store.repos.map((r) => h('option', { value: r.id, selected: r.id === this.filterRepo }, r.name)));
    this.repoSel.value = this.filterRepo;
  }

  /** A session changed or appeared: redraw on the next frame. */
  update() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  destroy() { cancelAnimationFrame(this.frame); }

  card(s) {
    const key = `${s.state}|${s.updated_at}|${s.title}|${s.last_commit}`;
    const have = this.cards.get(s.id);
    if (have && have.key === key) return have.el;
    // A copy of one card made with h() once, its texts and attributes filled in: a deep clone
    // costs a fraction of building the same elements one by one (the board places ~80 at once).
    const el = (CARD ||= h('a', { class: 'card', role: 'listitem' },
      h('div', { class: 'card-title' }, ''),
      h('div', { class: 'card-meta' }, h('span', { class: 'badge' }, ''), h('span', { class: 'repo' }, ''), h('span', null, ''),
        h('span', { class: 'muted' }, '')),
      h('div', { class: 'card-id muted' }, ''))).cloneNode(true);
    el.className = `card st-${s.state}`;
    el.href = `#/s/${s.id}`;
    el.dataset.id = s.id;
    el.dataset.state = s.state;
    const [title, meta, id] = el.children;
    title.firstChild.data = s.title || s.id;
    const [badge, repo, agent, when] = meta.children;
    badge.className = `badge st-${s.state}`;
    badge.firstChild.data = s.state;
    repo.firstChild.data = this.store.repoName(s.repo);
    agent.firstChild.data = s.agent || '';
    when.firstChild.data = ago(s.updated_at || s.created_at);
    id.firstChild.data = s.last_commit ? `${s.id} · ${s.last_commit.slice(0, 7)}` : s.id;
    this.cards.set(s.id, { el, key });
    return el;
  }

  matches(s) {
    if (this.filterRepo && s.repo !== this.filterRepo) return false;
    if (!this.query) return true;
    const hay = `${s.title || ''}\n${s.id}\n${this.store.repoName(s.repo)}\n${s.agent || ''}\n${s.model || ''}`.toLowerCase();
    return hay.includes(this.query);
  }

  render() {
    if (!this.cols) return;
    const by = new Map(COLUMNS.map((c) => [c.key, []]));
    let shown = 0;
    for (const s of this.store.sessions.values()) {
      const col = COLUMN_OF[s.state];
      if (!col || !this.matches(s)) continue;
      by.get(col).push(s);
      shown++;
    }
    for (const [key, list] of by) {
      list.sort((a, b) => (b.updated_at || b.created_at || 0) - (a.updated_at || a.created_at || 0));
      const c = this.cols.get(key);
      c.count.textContent = String(list.length);
      const cap = this.expanded.has(key) ? list.length : COLUMN_PAGE;
      const els = list.slice(0, cap).map((s) => this.card(s));
      c.more.hidden = list.length <= cap;
      c.more.textContent = `Show ${list.length - cap} more`;
      // Only touch the DOM where the column's cards differ.
      const cur = c.list.children;
      let same = cur.length === els.length;
      for (let i = 0; same && i < els.length; i++) same = cur[i] === els[i];
      if (!same) c.list.replaceChildren(...els);
    }
    this.countEl.textContent = this.store.loaded ? `${shown} session${shown === 1 ? '' : 's'}` : 'loading…';
  }
}
