// The dashboard under a reverse proxy's path prefix (tests/integration/test_nginx.sh runs it
// against nginx's /nightshift/): its files, login, the board, the live WebSocket and a
// cookie-authenticated write all go through the prefix.  NS_URL ends in the prefix's slash.
import { launch, tap } from './lib.mjs';

const URL0 = process.env.NS_URL, TOKEN = process.env.NS_TOKEN, REPO = process.env.NS_REPO;
const t = tap();
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
const outside = [];
page.on('request', (r) => { const u = new URL(r.url()); if (!u.pathname.startsWith(new URL(URL0).pathname)) outside.push(u.pathname); });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
try {
  const res = await page.goto(URL0);
  t.ok(res.status() === 200 && /script-src 'self'/.test(res.headers()['content-security-policy'] || ''), 'the dashboard loads through the prefix, with its CSP');
  await page.waitForSelector('form.login #token', { timeout: 10000 });
  await page.fill('#token', TOKEN);
  await page.keyboard.press('Enter');
  await page.waitForSelector('.board .columns', { timeout: 10000 });
  await page.waitForFunction(() => /session/.test(document.querySelector('.toolbar .count')?.textContent || ''), null, { timeout: 10000 });
  t.ok(true, 'login and the board work through the prefix');
  // A write by cookie from the page (the form), which the proxy must pass with a matching Origin.
  await page.goto(`${URL0}#/new`);
  await page.waitForSelector('#f-prompt');
  await page.selectOption('#f-repo', REPO);
  await page.selectOption('#f-agent', 'command');
  await page.check('#f-once');
  await page.fill('#f-prompt', 'echo through-the-prefix');
  const resp = page.waitForResponse((r) => r.url().endsWith('/api/v1/sessions') && r.request().method() === 'POST');
  await page.click('form.new-session button[type=submit]');
  const r = await resp;
  t.ok(r.status() === 201, 'a session created from the form through the proxy (cookie, CSRF header, Origin)', r.status());
  const sid = (await r.json()).id;
  await page.waitForFunction((id) => document.querySelector(`.card[data-id="${id}"]`)?.closest('[data-column]')?.dataset.column === 'completed',
    sid, { timeout: 60000, polling: 100 });
  t.ok(true, 'its card reaches completed live (the WebSocket through the prefix)');
  await page.click(`.card[data-id="${sid}"]`);
  await page.waitForFunction(() => document.querySelector('.timeline')?.textContent.includes('through-the-prefix'), null, { timeout: 20000 });
  t.ok(true, 'the session view shows its output through the prefix');
} catch (e) {
  t.ok(false, 'the dashboard through the prefix', e.message.split('\n')[0]);
}
t.ok(outside.length === 0, 'no request left the prefix', outside.join(' '));
t.ok(errors.length === 0, 'no page errors', errors.join('; '));
await browser.close();
process.exit(t.failed ? 1 : 0);
