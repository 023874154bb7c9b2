// nightshift's dashboard: login, routing (#/, #/new, #/s/ID), the all-sessions event stream that
// keeps the board live and raises notifications, keyboard shortcuts.

import { h, clear, fill } from './dom.js';
import * as api from './api.js';
import { Board } from './board.js';
import { NewSessionForm } from './form.js';
import { SessionView } from './session.js';

const main = document.getElementById('main');
const store = {
  sessions: new Map(),
  repos: [],
  repoName(id) { return this.repos.find((r) => r.id === id)?.name || id || ''; },
};
let view = null;
let stream = null;
let loggedIn = false;

function toast(msg, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.className = `toast show${bad ? ' bad' : ''}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = 'toast'; }, 4000);
}

function navigate(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

const ctx = {
  toast,
  navigate,
  repoName: (id) => store.repoName(id),
  reloadRepos: async () => { store.repos = (await api.get('repos')).repos; },
  // The POST's answer is the session as it was created: the event stream may have brought it (and
  // its later states) first, and what is in the store then is newer.
  added: (s) => { if (!store.sessions.has(s.id)) store.sessions.set(s.id, s); },
};

// ---- login -------------------------------------------------------------------------------------

function showLogin(message) {
  loggedIn = false;
  stream?.close();
  stream = null;
  view?.destroy?.();
  view = null;
  document.body.classList.add('logged-out');
  const input = h('input', { id: 'token', type: 'password', name: 'token', autocomplete: 'current-password', required: true, placeholder: 'nst_…', spellcheck: 'false' });
  const err = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      await api.login(input.value.trim());
      input.value = '';
      start();
    } catch (ex) {
      err.textContent = ex.status === 401 ? 'That token is unknown or revoked.' : ex.message;
      input.select();
    }
  } },
  h('img', { src: 'icon.svg', alt: '', width: '56', height: '56' }),
  h('h1', null, 'nightshift'),
  h('p', { class: 'muted' }, 'Sign in with an API token (', h('code', null, 'nightshift token create NAME'), ').'),
  h('label', { for: 'token' }, 'API token'), input, err,
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  fill(main, form);
  input.focus();
}

api.setUnauthorizedHandler(() => { if (loggedIn) showLogin(store.loaded ? 'Your login has ended; sign in again.' : ''); });

// ---- notifications -----------------------------------------------------------------------------

const NOTIFY_KEY = 'ns-notify';
function notifyEnabled() { return localStorage.getItem(NOTIFY_KEY) === '1' && 'Notification' in window && Notification.permission === 'granted'; }
function renderNotifyBtn() {
  const b = document.getElementById('notify-btn');
  if (!('Notification' in window)) { b.hidden = true; return; }
  const on = notifyEnabled();
  b.textContent = on ? 'Notifications on' : 'Notifications off';
  b.setAttribute('aria-pressed', String(on));
}
async function toggleNotify() {
  if (notifyEnabled()) localStorage.setItem(NOTIFY_KEY, '0');
  else if ((await Notification.requestPermission()) === 'granted') localStorage.setItem(NOTIFY_KEY, '1');
  else toast('The browser refused notifications.', true);
  renderNotifyBtn();
}
function notifyState(s, to) {
  if (!notifyEnabled() || !['completed', 'failed', 'waiting'].includes(to)) return;
  const what = to === 'waiting' ? 'is waiting for input' : to;
  const n = new Notification(`nightshift: ${s?.title || s?.id || 'a session'} ${what}`, { body: s ? `${store.repoName(s.repo)} · ${s.id}` : '', tag: `ns-${s?.id}`, icon: 'icon.svg' });
  n.onclick = () => { window.focus(); if (s) navigate(`#/s/${s.id}`); };
}

// ---- the live stream of every session ----------------------------------------------------------

// A session the stream speaks of before we have it is fetched.  Events that come while its fetch
// is out are not lost: the answer may predate them, so it is asked again until one comes back with
// nothing arrived meanwhile, and only that one is stored (a run-once session can go from queued to
// completed within one round trip).
const pending = new Map(); // id → the newest event that came while its fetch was out, or null
async function fetchSession(id, ev) {
  if (pending.has(id)) { if (ev) pending.set(id, ev); return; }
  pending.set(id, null);
  let last = ev;
  try {
    for (let round = 1; ; round++) {
      const s = await api.get(`sessions/${id}`);
      const more = pending.get(id);
      if (more && round < 5) { pending.set(id, null); last = more; continue; }
      const before = store.sessions.get(id)?.state; // events applied meanwhile were notified already
      if (s.state === 'archived') store.sessions.delete(id); else store.sessions.set(id, s);
      if (more) last = more;
      if (before !== s.state && last?.type === 'status' && last.data?.to === s.state) notifyState(s, s.state);
      view?.update?.();
      return;
    }
  } catch { /* deleted meanwhile */ } finally { pending.delete(id); }
}

function onStreamEvent(ev) {
  if (ev.type !== 'status' && ev.type !== 'commit') return;
  const s = store.sessions.get(ev.session);
  if (!s || pending.has(ev.session)) fetchSession(ev.session, ev);
  if (!s) return;
  if (ev.type === 'status' && ev.data?.to) {
    const was = s.state;
    s.state = ev.data.to;
    s.updated_at = ev.ts || s.updated_at;
    if (ev.data.reason !== undefined) s.state_reason = ev.data.reason;
    if (was !== s.state) notifyState(s, s.state);
    if (s.state === 'archived') store.sessions.delete(s.id);
  } else if (ev.type === 'commit') {
    s.last_commit = ev.data?.sha || s.last_commit;
  }
  view?.update?.();
}

function setConn(state) {
  const el = document.getElementById('conn');
  el.textContent = state === 'closed' ? 'reconnecting…' : '';
  el.className = `conn ${state}`;
}

async function start() {
  // On the board, the repositories and the session list leave at once (the repositories' small
  // answer also says whether we are logged in).  A session view routes at once: its own requests
  // say that too (a 401 brings the login form), and the long list of every session is read only
  // after it painted.
  const onBoard = !/^#\/s\//.test(location.hash);
  let list = onBoard ? api.listSessions() : null;
  list?.catch(() => {});
  const repos = api.get('repos');
  repos.catch(() => {});
  if (!onBoard) enter();
  try {
    store.repos = (await repos).repos;
    // The board is drawn once, with its sessions (not empty first, then again: two layouts).
    if (onBoard) await list.catch(() => {});
  } catch (e) {
    if (e.status === 401) showLogin();
    else fill(main, h('div', { class: 'empty' }, h('h1', null, 'nightshift is not answering'), h('p', null, e.message),
      h('button', { onclick: start }, 'Try again')));
    return;
  }
  if (onBoard) enter(); else view?.update?.();
  try {
    if (!list) {
      await view?.painted;
      list = api.listSessions();
    }
    const { sessions, lastEventId } = await list;
    for (const s of sessions) if (s.state !== 'archived' && !store.sessions.has(s.id)) store.sessions.set(s.id, s);
    store.loaded = true;
    stream?.close();
    stream = api.subscribe({ after_id: lastEventId }, onStreamEvent, setConn);
    // The whole list at once: drawn now, not a frame later (update() waits for one).
    if (view?.render) view.render(); else view?.update?.();
  } catch (e) {
    if (e.status !== 401) toast(`sessions: ${e.message}`, true);
  }
}

function enter() {
  loggedIn = true;
  document.body.classList.remove('logged-out');
  renderNotifyBtn();
  store.loaded = false;
  route();
}

// ---- routing -----------------------------------------------------------------------------------

function route() {
  if (!loggedIn) return;
  view?.destroy?.();
  view = null;
  const hash = location.hash || '#/';
  let m;
  document.querySelectorAll('.topbar nav a').forEach((a) => a.setAttribute('aria-current', a.getAttribute('href') === hash ? 'page' : 'false'));
  if ((m = /^#\/s\/([a-z0-9-]+)$/.exec(hash))) {
    view = new SessionView(main, m[1], ctx);
    document.title = `${m[1]} · nightshift`;
    view.mount();
  } else if (hash === '#/new') {
    view = new NewSessionForm(main, store, ctx);
    document.title = 'New session · nightshift';
    view.mount();
  } else {
    view = new Board(main, store);
    document.title = 'nightshift';
    view.mount();
  }
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);

document.addEventListener('keydown', (e) => {
  const t = e.target;
  const typing = t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  if (typing || e.ctrlKey || e.metaKey || e.altKey || !loggedIn) {
    if (e.key === 'Escape' && typing) t.blur();
    return;
  }
  if (e.key === 'n') { e.preventDefault(); navigate('#/new'); }
  else if (e.key === '/') { const s = document.getElementById('search'); if (s) { e.preventDefault(); s.focus(); } }
  else if (e.key === 'b' || e.key === 'Escape') navigate('#/');
  else if ((e.key === 'j' || e.key === 'k') && view instanceof Board) {
    const cards = [...document.querySelectorAll('.card')];
    if (!cards.length) return;
    const i = cards.indexOf(document.activeElement);
    const next = e.key === 'j' ? Math.min(cards.length - 1, i + 1) : Math.max(0, i < 0 ? 0 : i - 1);
    cards[next].focus();
    e.preventDefault();
  }
});

document.getElementById('logout-btn').addEventListener('click', async () => {
  try { await api.logout(); } catch { /* the cookie is gone either way */ }
  showLogin('Signed out.');
});
document.getElementById('notify-btn').addEventListener('click', toggleNotify);

start();
