// The API client.  Every URL is relative to the page, so the dashboard works under a reverse
// proxy's path prefix (/nightshift/ → /nightshift/api/v1/...).  The login is an HttpOnly cookie;
// writes carry X-Nightshift-CSRF: 1 (the server refuses cookie-authenticated writes without it).

export const apiBase = new URL('api/v1/', location.href.split('#')[0]);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export function url(path) {
  return new URL(path.replace(/^\//, ''), apiBase).href;
}

export async function request(method, path, body, { raw = false, quiet401 = false } = {}) {
  const headers = {};
  if (method !== 'GET') headers['X-Nightshift-CSRF'] = '1';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url(path), {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    let code = '', message = '';
    try {
      const j = await res.json();
      code = j?.error?.code || '';
      message = j?.error?.message || '';
    } catch { /* not JSON */ }
    if (res.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(res.status, code, message);
  }
  if (raw) return res.text();
  if (res.status === 204) return null;
  return res.json();
}

export const get = (p, o) => request('GET', p, undefined, o);
export const post = (p, b, o) => request('POST', p, b, o);
export const del = (p, o) => request('DELETE', p, undefined, o);

export async function login(token) {
  return request('POST', 'login', { token }, { quiet401: true });
}
export async function logout() {
  return request('POST', 'logout');
}

// What the board shows and searches of every session (the list's other fields are the session
// view's, which reads its session whole): half the bytes to receive and parse.
export const BOARD_FIELDS = 'id,repo,agent,state,title,model,last_commit,created_at,updated_at';

/** All sessions (their BOARD_FIELDS), page by page; resolves {sessions, lastEventId}. */
export async function listSessions() {
  const out = [];
  let cursor = null, lastEventId = null;
  for (let i = 0; i < 1000; i++) {
    const q = new URLSearchParams({ limit: '1000', fields: BOARD_FIELDS });
    if (cursor) q.set('cursor', cursor);
    const page = await get(`sessions?${q}`);
    if (lastEventId === null) lastEventId = page.last_event_id ?? 0;
    out.push(...page.sessions);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { sessions: out, lastEventId };
}

/**
 * The live event stream (WebSocket /api/v1/events), reconnecting and resuming where it left off.
 * `query` is {session, after} or {after_id}; onEvent(ev) per event; returns {close()}.
 */
export function subscribe(query, onEvent, onState = () => {}) {
  let ws = null, closed = false, delay = 500, timer = null;
  const q = { ...query };
  const open = () => {
    const u = new URL('events', apiBase);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    for (const [k, v] of Object.entries(q)) u.searchParams.set(k, String(v));
    ws = new WebSocket(u.href);
    ws.onopen = () => { delay = 500; onState('open'); };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      if (ev.control) {
        if (ev.control === 'lagged' && typeof ev.resume_after === 'number') {
          if ('after_id' in q) q.after_id = ev.resume_after; else q.after = ev.resume_after;
        }
        if (ev.control === 'live') onState('live');
        return;
      }
      if ('after_id' in q) q.after_id = Math.max(q.after_id, ev.id);
      else q.after = Math.max(q.after, ev.seq);
      onEvent(ev);
    };
    ws.onclose = () => {
      onState('closed');
      if (closed) return;
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
  return {
    close() { closed = true; clearTimeout(timer); if (ws) ws.close(); },
  };
}
