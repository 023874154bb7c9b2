// The dashboard in headless chromium against a real server (see tests/integration/test_dashboard.sh,
// which starts it and passes NS_URL, NS_TOKEN).  Prints `ok - ` / `not ok - ` lines.
import { launch, tap } from './lib.mjs';

const URL0 = process.env.NS_URL;
const TOKEN = process.env.NS_TOKEN;
const SHOTS = process.env.SHOTS || '/tmp/nightshift-screenshots';
const t = tap();
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const browser = await launch();
const context = await browser.newContext({ viewport: DESKTOP });
// Notifications: the page's Notification is replaced by a recorder that the user "allows", so
// the test sees what the dashboard would show (headless chromium shows none).
await context.addInitScript(() => {
  window.__notes = [];
  window.Notification = class {
    static permission = 'default';
    static async requestPermission() { this.permission = 'granted'; return 'granted'; }
    constructor(title, opts) { window.__notes.push(title); this.opts = opts; }
  };
});
const page = await context.newPage();
const dialogs = [];
page.on('dialog', async (d) => {
  dialogs.push(`${d.type()}: ${d.message()}`);
  // Our own confirm() for delete is accepted; anything else (an alert) is a failure, recorded.
  if (d.type() === 'confirm') await d.accept(); else await d.dismiss();
});
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
const cspViolations = [];
page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });

const api = async (method, path, body) => page.evaluate(async ([m, p, b]) => {
  const r = await fetch(new URL(`api/v1/${p}`, location.href.split('#')[0]), {
    method: m, credentials: 'same-origin', headers: { 'X-Nightshift-CSRF': '1', 'Content-Type': 'application/json' },
    body: b === undefined ? undefined : JSON.stringify(b) });
  return { status: r.status, body: await r.text() };
}, [method, path, body]);
const shot = async (name) => {
  const p = `${SHOTS}/${name}.png`;
  await page.screenshot({ path: p });
  t.note(`screenshot: ${p}`);
};
const waitText = (sel, text, timeout = 30000) =>
  page.waitForFunction(([s, x]) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(x)), [sel, text], { timeout, polling: 50 });
const step = async (name, fn) => {
  try { return await fn(); } catch (e) { t.ok(false, name, e.message.split('\n')[0]); return undefined; }
};
const state = () => page.$eval('.session-head .state', (e) => e.textContent).catch(() => '');
const waitState = (want, timeout = 30000) => page.waitForFunction((w) => {
  const e = document.querySelector('.session-head .state');
  return e && w.includes(e.textContent);
}, want, { timeout, polling: 50 });

// Create a session through the form; returns its id (the newest card).
async function createFromForm(prompt, { once = false } = {}) {
  await page.goto(`${URL0}#/new`);
  await page.waitForSelector('#f-prompt');
  await page.selectOption('#f-agent', 'command');
  await page.fill('#f-prompt', prompt);
  await page.check(once ? '#f-once' : '#f-keep');
  const resp = page.waitForResponse((r) => r.url().endsWith('/api/v1/sessions') && r.request().method() === 'POST');
  await page.focus('#f-prompt');
  await page.keyboard.press('Control+Enter');
  const r = await resp;
  const s = await r.json();
  await page.waitForSelector(`.card[data-id="${s.id}"]`, { timeout: 10000 });
  return s.id;
}

// Every card's columns are recorded every 20 ms from login on (the board updates in place).
const columnsSeen = (id) => page.evaluate((id) => (window.__cols?.[id] || []).join('>'), id);
// (Once the recorder runs, it has to have seen the column too: its 20 ms tick may come later.)
const waitColumn = (id, col, timeout = 60000) => page.waitForFunction(([id, col]) =>
  document.querySelector(`.card[data-id="${id}"]`)?.closest('[data-column]')?.dataset.column === col &&
  (!window.__cols || (window.__cols[id] || []).at(-1) === col), [id, col], { timeout, polling: 50 });

// --- without login ---------------------------------------------------------------------------
const first = await page.goto(URL0);
const csp = first.headers()['content-security-policy'] || '';
t.ok(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), 'the page is served with a strict CSP', csp);
await step('without login the page shows the login form', async () => {
  await page.waitForSelector('form.login #token', { timeout: 10000 });
  t.ok(true, 'without login the page shows the login form');
});
const anon = await api('GET', 'sessions');
t.ok(anon.status === 401, 'without login the API refuses (401)', anon.status);
t.ok(!(await page.$('.board')), 'and no board is shown');

await step('a wrong token is refused', async () => {
  await page.fill('#token', 'nst_' + 'A'.repeat(43));
  await page.click('form.login button[type=submit]');
  await waitText('form.login .error', 'unknown', 5000);
  t.ok(true, 'a wrong token is refused with a message');
});

// --- login -----------------------------------------------------------------------------------
await step('login with the token', async () => {
  await page.fill('#token', TOKEN);
  await page.keyboard.press('Enter');
  await page.waitForSelector('.board .columns', { timeout: 10000 });
  const cookies = await context.cookies();
  const c = cookies.find((x) => x.name === 'nightshift_session');
  t.ok(c && c.httpOnly, 'login with the token opens the board; the session cookie is HttpOnly');
  t.ok(!(await page.evaluate(() => document.cookie)).includes('nightshift_session'), 'the page script cannot read the cookie');
});
await page.evaluate(() => { window.__noReload = 'still here'; });

// --- a kept-open command session: queued → running → idle, live --------------------------------
// The server runs one turn at a time (--max-concurrent 1): a session started just before holds
// the slot for 3 s, so the form's session visibly waits in the queue first.
await page.evaluate(() => {
  window.__cols = {};
  setInterval(() => {
    for (const c of document.querySelectorAll('.card')) {
      const seen = (window.__cols[c.dataset.id] ||= []);
      const col = c.closest('[data-column]')?.dataset.column;
      if (col && seen[seen.length - 1] !== col) seen.push(col);
    }
  }, 20);
});
const repos = JSON.parse((await api('GET', 'repos')).body).repos;
const blocker = await api('POST', 'sessions', { repo: repos[0].id, agent: 'command', prompt: 'sleep 3', once: true });
t.ok(blocker.status === 201, 'a session holding the one turn slot for 3 s', blocker.body.slice(0, 100));
const sid = await step('create a session from the form', async () => {
  const id = await createFromForm("sleep 2; printf 'hello from the agent\\n' > hello.txt; cat hello.txt; printf '\\033[31mred text\\033[0m\\n'");
  t.ok(/^s-/.test(id), 'the form (Ctrl+Enter) creates a command session and its card appears', id);
  return id;
});
if (sid) {
  await step('its card moves queued → running → idle', async () => {
    await waitColumn(sid, 'idle', 60000);
    const seen = await columnsSeen(sid);
    t.ok(seen === 'queued>running>idle', 'its card moves queued → running → idle on the board without reload', seen);
    t.ok((await page.evaluate(() => window.__noReload)) === 'still here', 'the page was not reloaded');
  });
  await page.waitForTimeout(300);
  await shot('board-desktop');
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(200);
  await shot('board-phone');
  await page.setViewportSize(DESKTOP);
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('board-desktop-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  await step('open the session', async () => {
    await page.click(`.card[data-id="${sid}"]`);
    await waitText('.timeline', 'hello from the agent');
    t.ok(true, 'opening the card shows its output in the timeline');
    await page.waitForSelector('.timeline span.ansi-fg1', { timeout: 10000 });
    const red = await page.$$eval('.timeline span.ansi-fg1', (els) => els.map((e) => e.textContent).join('|'));
    t.ok(red.includes('red text'), 'ANSI colours become styled spans', red);
    await page.waitForSelector('.tl-commit', { timeout: 10000 });
    const commit = await page.$eval('.tl-commit', (e) => e.textContent);
    t.ok(/[0-9a-f]{12}/.test(commit) && commit.includes('hello.txt'), 'its commit is shown with sha and file', commit);
    t.ok((await state()) === 'idle', 'the sticky status says idle', await state());
  });
  await step('a follow-up', async () => {
    await page.fill('#followup', 'echo second > two.txt; echo follow-up-ran');
    await page.keyboard.press('Control+Enter');
    await waitText('.timeline', 'follow-up-ran', 30000);
    await waitState(['idle'], 30000);
    t.ok(true, 'a follow-up sent from the box runs and its output appears live');
    const prompts = await page.$$eval('.tl-prompt', (els) => els.map((e) => e.textContent).join('|'));
    t.ok(prompts.includes('follow-up-ran'), 'the prompts are in the timeline', prompts.slice(0, 200));
  });
  await page.waitForTimeout(300);
  await shot('session-desktop');
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300);
  await shot('session-phone');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('session-phone-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize(DESKTOP);
  await step('the diff', async () => {
    await page.click('#tab-diff');
    await page.waitForSelector('.diff-files li', { timeout: 10000 });
    const files = await page.$$eval('.diff-files li', (els) => els.map((e) => e.textContent).join('|'));
    t.ok(files.includes('hello.txt') && files.includes('two.txt'), 'the diff tab lists the changed files', files);
    const adds = await page.$$eval('.dl-add', (els) => els.map((e) => e.textContent).join(''));
    t.ok(adds.includes('+hello from the agent') && adds.includes('+second'), 'and shows the added lines highlighted', adds.slice(0, 200));
    await shot('diff-desktop');
    await page.click('#tab-timeline');
  });
  await step('downloads', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('.tabs a[download]')]);
    const log = await (await import('node:fs/promises')).readFile(await dl.path(), 'utf8');
    t.ok(log.split('\n').filter(Boolean).every((l) => JSON.parse(l).session === sid) && log.includes('follow-up-ran'),
      'Transcript downloads the JSONL transcript', log.slice(0, 100));
    const [dp] = await Promise.all([page.waitForEvent('download'), page.click('button[data-action="patch"]')]);
    const patch = await (await import('node:fs/promises')).readFile(await dp.path(), 'utf8');
    t.ok(patch.startsWith('diff --git') && patch.includes('+second') && dp.suggestedFilename() === `${sid}.patch`,
      'Patch downloads the unified diff', patch.slice(0, 100));
  });
  await step('previews', async () => {
    const p = JSON.parse((await api('GET', `sessions/${sid}/previews`)).body).previews || [];
    const links = await page.$$eval('.previews a', (els) => els.map((e) => e.href));
    t.ok(links.length === p.length && links.every((l) => new URL(l).origin !== new URL(location.href).origin),
      `preview links are those the API lists (${p.length}), none on the dashboard's origin`, links.join(' '));
  });
  await step('end it', async () => {
    await page.click('button[data-action="complete"]');
    await waitState(['completed'], 30000);
    t.ok(true, 'End completes the session');
    await page.goto(`${URL0}#/`);
    await waitColumn(sid, 'completed', 10000);
    t.ok(true, 'and its card is in the completed column');
  });
}

// --- run once: straight to completed -----------------------------------------------------------
await step('run once', async () => {
  await page.evaluate(() => { window.__noReload = 'still here'; });
  await page.click('#notify-btn');
  t.ok((await page.getAttribute('#notify-btn', 'aria-pressed')) === 'true', 'notifications can be switched on');
  const id = await createFromForm('echo once-only', { once: true });
  await waitColumn(id, 'completed', 60000);
  const seen = await columnsSeen(id);
  t.ok(!seen.includes('idle') && seen.endsWith('completed'), 'a run-once session goes straight to completed (never idle)', seen);
  await page.waitForFunction(() => window.__notes.some((n) => n.includes('once-only') && n.includes('completed')), null, { timeout: 5000 });
  t.ok(true, 'a notification says it completed');
});

// --- stop a long-running session; queued prompts; pause and resume -----------------------------
await step('stop', async () => {
  const id = await createFromForm('echo long-running-started; sleep 600');
  await page.click(`.card[data-id="${id}"]`);
  await waitText('.timeline', 'long-running-started', 60000);
  await waitState(['running']);
  await page.fill('#followup', 'echo queued-follow-up');
  await page.keyboard.press('Control+Enter');
  await page.waitForSelector('.queue li', { timeout: 10000 });
  t.ok((await page.$eval('.queue li', (e) => e.textContent)).includes('queued-follow-up'), 'a follow-up sent while the turn runs is listed as queued');
  await page.click('.queue li button');
  await page.waitForFunction(() => !document.querySelector('.queue li'), null, { timeout: 10000 });
  const pr = JSON.parse((await api('GET', `sessions/${id}/prompts`)).body).prompts;
  t.ok(pr.some((p) => p.text.includes('queued-follow-up') && p.state === 'cancelled'), 'Cancel cancels the queued prompt', JSON.stringify(pr));
  await page.click('button[data-action="interrupt"]');
  await waitState(['idle', 'failed'], 20000);
  t.ok((await state()) === 'idle', 'Interrupt ends the turn and keeps the session (idle)', await state());
  await page.fill('#followup', 'echo second-long-turn; sleep 600');
  await page.keyboard.press('Control+Enter');
  await waitText('.timeline', 'second-long-turn', 30000);
  await waitState(['running']);
  await page.click('button[data-action="stop"]');
  await waitState(['stopped'], 30000);
  t.ok(true, 'Stop (graceful) stops a long-running session');
});

await step('pause and resume', async () => {
  const id = await createFromForm('echo pausable; sleep 600');
  await page.click(`.card[data-id="${id}"]`);
  await waitText('.timeline', 'pausable', 60000);
  await waitState(['running']);
  await page.click('button[data-action="pause"]');
  await waitState(['paused'], 20000);
  t.ok(true, 'Pause freezes it (paused)');
  await page.click('button[data-action="resume"]');
  await waitState(['running'], 20000);
  t.ok(true, 'Resume thaws it (running)');
  await page.click('button[data-action="force-stop"]');
  await waitState(['stopped'], 20000);
  t.ok(true, 'Force stop ends it at once');
  await page.click('button[data-action="delete"]');
  await page.waitForSelector('.board', { timeout: 10000 });
  const g = await api('GET', `sessions/${id}`);
  t.ok(g.status === 404 || JSON.parse(g.body).state === 'archived', 'Delete (confirmed) removes it and returns to the board', g.body.slice(0, 100));
});

// --- a preview: a dev server inside the sandbox, published from the UI, opened on its own origin ---
await step('preview', async () => {
  // The dev server (tests/helpers/ws_echo.py, committed in the repository) answers "hello 8000" and
  // GET /headers with the request's head; the turn says when it listens and keeps it running.
  const id = await createFromForm('python3 ws_echo.py serve 8000 --bind 127.0.0.1 & ' +
    'until python3 ws_echo.py echo ws://127.0.0.1:8000/ws up >/dev/null 2>&1; do sleep 0.2; done; echo dev-server-up; wait');
  await page.click(`.card[data-id="${id}"]`);
  await waitText('.timeline', 'dev-server-up', 60000);
  await waitState(['running']);
  await page.waitForSelector('form.publish:not([hidden]) #preview-port', { timeout: 5000 });
  t.ok((await page.$eval('label[for="preview-port"]', (e) => e.textContent)) === 'Port', 'the port field has its label');
  // A port the server refuses: its answer is shown as text, nothing is published.
  await page.fill('#preview-port', '70000');
  await page.click('button[data-action="publish"]');
  await waitText('.publish-error', 'publish:', 10000);
  t.ok((await page.$$('.previews a')).length === 0, 'a refused port shows the error as text and publishes nothing',
    await page.$eval('.publish-error', (e) => e.textContent));
  // Port 8000, from the keyboard.
  await page.fill('#preview-port', '8000');
  const posted = page.waitForResponse((r) => /\/previews$/.test(r.url()) && r.request().method() === 'POST');
  await page.press('#preview-port', 'Enter');
  const preq = (await posted).request();
  t.ok(preq.headers()['x-nightshift-csrf'] === '1', 'Publish posts the port with the CSRF header', JSON.stringify(preq.postData()));
  await page.waitForSelector('.previews a.preview', { timeout: 10000 });
  const link = await page.$eval('.previews a.preview', (a) => ({ href: a.href, text: a.textContent, target: a.target, rel: a.rel, focused: document.activeElement === a }));
  const u = new URL(link.href);
  const dash = new URL(URL0);
  t.ok(/^p-[a-z2-7]{12}\.localhost$/.test(u.hostname) && u.origin !== dash.origin && u.pathname === '/__nightshift/auth',
    "the preview link is its one-time link on the preview's own origin (<preview-id>.localhost:<port>)", link.href.replace(/token=.*/, 'token=…'));
  t.ok(link.text === 'Preview :8000' && link.target === '_blank' && /noopener/.test(link.rel) && /noreferrer/.test(link.rel) && link.focused,
    'it says its port, opens a new context without opener or referrer, and takes the focus', JSON.stringify({ ...link, href: undefined }));
  await page.waitForSelector('.tl-preview', { timeout: 10000 });
  const ev = await page.$eval('.tl-preview', (e) => e.textContent);
  t.ok(ev.includes('port 8000 published') && ev.includes(u.origin) && !ev.includes('token'), 'the preview event is in the timeline (without the token)', ev);
  await page.waitForTimeout(200);
  await shot('session-preview-desktop');
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(200);
  await shot('session-preview-phone');
  await page.setViewportSize(DESKTOP);

  // Click it: a new page on the preview origin, served from inside the sandbox.
  const sent = [];
  const onReq = (r) => { if (new URL(r.url()).origin === u.origin) sent.push(r); };
  context.on('request', onReq);
  const [popup] = await Promise.all([context.waitForEvent('page'), page.click('.previews a.preview')]);
  await popup.waitForLoadState('load');
  await popup.waitForFunction(() => document.body && document.body.innerText.includes('hello 8000'), null, { timeout: 15000 });
  const pu = new URL(popup.url());
  t.ok(pu.origin === u.origin && pu.pathname === '/', 'the link opens the page served from inside the sandbox, on the preview origin', popup.url());
  t.ok(pu.origin !== dash.origin, "not on the dashboard's origin", `${pu.origin} vs ${dash.origin}`);
  t.ok((await popup.evaluate(() => window.opener)) === null, 'the preview has no opener (no handle on the dashboard)');
  const pc = (await context.cookies(u.origin)).map((c) => `${c.name}@${c.domain}${c.httpOnly ? ' HttpOnly' : ''}`);
  t.ok(pc.some((c) => /^nightshift_preview@p-.*HttpOnly$/.test(c)) && !pc.some((c) => c.startsWith('nightshift_session')),
    "the preview's own HttpOnly cookie is set for its origin; the dashboard's is not sent there", pc.join(', '));
  await popup.goto(`${u.origin}/headers`);
  const head = JSON.parse(await popup.evaluate(() => document.body.innerText));
  const hv = (n) => head.headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v).join(';');
  t.ok(hv('host') === 'localhost:8000', 'the dev server inside sees Host localhost:8000', hv('host'));
  t.ok(!hv('cookie').includes('nightshift_session') && !hv('cookie').includes('nightshift_preview'),
    "neither the dashboard's cookie nor the preview's reaches the dev server", hv('cookie'));
  context.off('request', onReq);
  const heads = await Promise.all(sent.map((r) => r.allHeaders()));
  t.ok(heads.length >= 3 && heads.every((hd) => !String(hd.cookie || '').includes('nightshift_session')),
    "the browser sends the dashboard's cookie to no request on the preview origin", heads.map((hd) => hd.cookie || '-').join(' | '));
  await popup.close();

  // After a reload the page has no one-time link: clicking asks for a fresh one and opens that.
  await page.reload();
  await page.waitForSelector('.previews a.preview', { timeout: 10000 });
  const [popup2] = await Promise.all([context.waitForEvent('page'), page.click('.previews a.preview')]);
  await popup2.waitForFunction(() => document.body && document.body.innerText.includes('hello 8000'), null, { timeout: 15000 });
  t.ok(new URL(popup2.url()).origin === u.origin, 'after a reload the link still opens the preview (a fresh link)', popup2.url());
  await popup2.close();
  await page.click('button[data-action="force-stop"]');
  await waitState(['stopped'], 20000);
  await page.waitForFunction(() => !document.querySelector('.previews a'), null, { timeout: 10000 });
  t.ok(await page.$eval('form.publish', (f) => f.hidden), 'a stopped session has no preview links and no publish form');
});

// --- hostile output ----------------------------------------------------------------------------
await step('hostile output', async () => {
  const evil = `printf '%s\\n' '<img src=x onerror=alert(1)>' '<script>alert(2)</script>' '**bold** [x](javascript:alert(3))'`;
  const id = await createFromForm(evil, { once: true });
  await page.click(`.card[data-id="${id}"]`);
  await waitText('.timeline', '<script>alert(2)</script>', 60000);
  await page.waitForTimeout(500);
  const scripts = await page.$$eval('script', (els) => els.map((e) => e.getAttribute('src') || 'inline'));
  t.ok(scripts.length === 1 && /^v\/[0-9a-f]{16}\/app\.js$/.test(scripts[0]), 'no script element comes from agent text', scripts.join(','));
  t.ok((await page.$$('img[src="x"]')).length === 0, 'no img element comes from agent text');
  const text = await page.$eval('.timeline', (e) => e.textContent);
  t.ok(text.includes('<img src=x onerror=alert(1)>') && text.includes('<script>alert(2)</script>'), 'the hostile text is visible as text');
  // The card's title (the prompt's first line) is agent-adjacent text too.
  await page.goto(`${URL0}#/`);
  await page.waitForSelector(`.card[data-id="${id}"]`);
  const cardText = await page.$eval(`.card[data-id="${id}"] .card-title`, (e) => e.textContent);
  t.ok(cardText.includes("'<img src=x onerror=alert(1)>'"), 'the card shows the prompt as text too', cardText);
  t.ok(dialogs.filter((d) => !d.startsWith('confirm')).length === 0, 'no dialog fired', dialogs.join('; '));
});

// --- a repository added from the form; the repository filter --------------------------------
await step('add a repository from the form', async () => {
  await page.goto(`${URL0}#/new`);
  await page.waitForSelector('#f-prompt');
  await page.selectOption('#f-repo', '+');
  await page.fill('#f-repo-url', process.env.NS_REPO2);
  await page.fill('#f-repo-name', 'app2');
  await page.selectOption('#f-agent', 'command');
  await page.check('#f-once');
  await page.fill('#f-prompt', 'echo from-app2');
  const resp = page.waitForResponse((r) => r.url().endsWith('/api/v1/sessions') && r.request().method() === 'POST', { timeout: 60000 });
  await page.click('form.new-session button[type=submit]');
  const s = await (await resp).json();
  await page.waitForSelector(`.card[data-id="${s.id}"]`, { timeout: 10000 });
  t.ok((await page.$eval(`.card[data-id="${s.id}"] .repo`, (e) => e.textContent)) === 'app2', 'a repository added in the form is registered and used');
  await page.selectOption('#filter-repo', { label: 'app2' });
  const ids = await page.$$eval('.card', (els) => els.map((e) => e.dataset.id));
  t.ok(ids.length === 1 && ids[0] === s.id, 'the repository filter shows only its sessions', ids.join(','));
  await page.selectOption('#filter-repo', '');
});

// --- search and filter -------------------------------------------------------------------------
await step('search', async () => {
  await page.goto(`${URL0}#/`);
  await page.waitForSelector('.card');
  await page.keyboard.press('/');
  await page.keyboard.type('once-only');
  const n = await page.$$eval('.card', (els) => els.length);
  t.ok(n === 1, 'search filters the cards by title/prompt (/ focuses it)', n);
  await page.fill('#search', '');
  const repoOpts = await page.$$eval('#filter-repo option', (els) => els.map((e) => e.textContent));
  t.ok(repoOpts.includes('app') && repoOpts.includes('app2'), 'the repository filter lists the repositories', repoOpts.join(','));
});

// --- logout ------------------------------------------------------------------------------------
await step('logout', async () => {
  await page.click('#logout-btn');
  await page.waitForSelector('form.login #token', { timeout: 10000 });
  const r = await api('GET', 'sessions');
  t.ok(r.status === 401, 'after logout the login form shows and the API refuses (401)', r.status);
  await page.reload();
  await page.waitForSelector('form.login #token', { timeout: 10000 });
  t.ok(true, 'and a reload still shows the login form');
  await page.goto('about:blank');
  await page.goto(`${URL0}#/s/${sid}`);
  await page.waitForSelector('form.login #token', { timeout: 10000 });
  await page.waitForTimeout(500);
  t.ok(!(await page.$('.session')) && (await page.$('form.login')), "a session's address without login shows the login form, not the session");
});

t.ok(pageErrors.length === 0, 'no uncaught errors in the page', pageErrors.join('; '));
t.ok(cspViolations.length === 0, 'no CSP violations reported', cspViolations.join('; '));
await browser.close();
process.exit(t.failed ? 1 : 0);
