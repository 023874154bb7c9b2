// The new-session form: repository (registered, or add one), base branch, agent, model, prompt,
// run once or keep open; Ctrl/Cmd+Enter submits.

import { h, clear, fill } from './dom.js';
import * as api from './api.js';

const AGENTS = ['command', 'claude', 'codex', 'opencode'];

export class NewSessionForm {
  constructor(root, store, ctx) {
    this.root = root;
    this.store = store;
    this.ctx = ctx;
  }

  mount() {
    const root = clear(this.root);
    const last = (k, d) => localStorage.getItem(`ns-last-${k}`) || d;
    this.repo = h('select', { id: 'f-repo', name: 'repo', required: true });
    this.addBox = h('div', { class: 'add-repo', hidden: true },
      h('label', { for: 'f-repo-url' }, 'Repository URL or server path'),
      h('input', { id: 'f-repo-url', name: 'repo_url', placeholder: 'https://… or /srv/git/app', autocomplete: 'off' }),
      h('label', { for: 'f-repo-name' }, 'Name (optional)'),
      h('input', { id: 'f-repo-name', name: 'repo_name', placeholder: 'app', autocomplete: 'off' }));
    this.base = h('input', { id: 'f-base', name: 'base', placeholder: 'default branch', autocomplete: 'off' });
    this.agent = h('select', { id: 'f-agent', name: 'agent' }, AGENTS.map((a) => h('option', { value: a, selected: a === last('agent', 'claude') }, a)));
    this.model = h('input', { id: 'f-model', name: 'model', placeholder: "the agent's default", autocomplete: 'off' });
    this.prompt = h('textarea', { id: 'f-prompt', name: 'prompt', rows: '8', required: true, placeholder: 'What should the agent do? (Ctrl+Enter to start)' });
    this.onceKeep = h('input', { type: 'radio', name: 'once', id: 'f-keep', value: 'keep', checked: true });
    this.onceOnce = h('input', { type: 'radio', name: 'once', id: 'f-once', value: 'once' });
    this.submitBtn = h('button', { type: 'submit', class: 'primary' }, 'Start session');
    this.err = h('p', { class: 'error', role: 'alert' });
    this.form = h('form', { class: 'new-session', onsubmit: (e) => { e.preventDefault(); this.submit(); } },
      h('h1', null, 'New session'),
      h('div', { class: 'grid' },
        h('div', { class: 'field' }, h('label', { for: 'f-repo' }, 'Repository'), this.repo, this.addBox),
        h('div', { class: 'field' }, h('label', { for: 'f-base' }, 'Base branch'), this.base),
        h('div', { class: 'field' }, h('label', { for: 'f-agent' }, 'Agent'), this.agent),
        h('div', { class: 'field' }, h('label', { for: 'f-model' }, 'Model'), this.model)),
      h('div', { class: 'field' }, h('label', { for: 'f-prompt' }, 'Prompt'), this.prompt),
      h('fieldset', { class: 'once' }, h('legend', null, 'When the turn ends'),
        h('label', { for: 'f-keep' }, this.onceKeep, ' Keep open for follow-ups'),
        h('label', { for: 'f-once' }, this.onceOnce, ' Run once, then complete')),
      this.err,
      h('div', { class: 'form-actions' }, this.submitBtn, h('a', { class: 'btn', href: '#/' }, 'Cancel'),
        h('span', { class: 'muted' }, 'Ctrl+Enter starts it')));
    this.form.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.submit(); }
    });
    this.repo.addEventListener('change', () => { this.addBox.hidden = this.repo.value !== '+'; });
    root.append(this.form);
    this.renderRepos();
    (this.store.repos.length ? this.prompt : this.repo).focus();
  }

  renderRepos() {
    const want = this.repo.value || localStorage.getItem('ns-last-repo') || '';
    fill(this.repo, ...this.store.repos.map((r) => h('option', { value: r.id }, r.name)),
      h('option', { value: '+' }, 'Add a repository…'));
    if ([...this.repo.options].some((o) => o.value === want)) this.repo.value = want;
    else this.repo.value = this.store.repos.length ? this.store.repos[0].id : '+';
    this.addBox.hidden = this.repo.value !== '+';
  }

  async submit() {
    if (this.busy) return;
    const prompt = this.prompt.value;
    this.err.textContent = '';
    if (!prompt.trim()) { this.err.textContent = 'A prompt is needed.'; this.prompt.focus(); return; }
    this.busy = true;
    this.submitBtn.disabled = true;
    try {
      let repo = this.repo.value;
      if (repo === '+') {
        const where = this.form.querySelector('#f-repo-url').value.trim();
        const name = this.form.querySelector('#f-repo-name').value.trim();
        if (!where) throw new Error('Give the repository URL or path.');
        const body = where.startsWith('/') ? { path: where } : { url: where };
        if (name) body.name = name;
        const r = await api.post('repos', body);
        await this.ctx.reloadRepos();
        repo = r.id;
      }
      const body = { repo, prompt, agent: this.agent.value, once: this.onceOnce.checked };
      // The list has no prompt text: the title (its first line) is what the board searches.
      const first = prompt.trim().split('\n')[0].slice(0, 200);
      if (first) body.title = first;
      if (this.base.value.trim()) body.base = this.base.value.trim();
      if (this.model.value.trim()) body.model = this.model.value.trim();
      const s = await api.post('sessions', body);
      localStorage.setItem('ns-last-repo', repo);
      localStorage.setItem('ns-last-agent', this.agent.value);
      this.ctx.added(s);
      this.ctx.navigate('#/');
    } catch (e) {
      this.err.textContent = e.message;
    } finally {
      this.busy = false;
      this.submitBtn.disabled = false;
    }
  }
}
