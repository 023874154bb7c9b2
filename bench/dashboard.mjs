// bench/dashboard.sh's browser half: headless chromium, logged in by cookie.  Prints
// "figure NAME VALUE" lines.  Board: navigation start → every card rendered and the frame after
// painted ("interactive"), then the time for a search keystroke to filter.  Session: navigation
// start → the first timeline rows painted; then scrolling top to bottom 120 px per frame with
// frame times; the peer: rendering all rows at once (no virtualisation), in the same page.
import { launch } from '../tests/browser/lib.mjs';

const URL0 = process.env.NS_URL, TOKEN = process.env.NS_TOKEN, SID = process.env.NS_SID;
const RUNS = Number(process.env.RUNS || 5);
const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
await page.goto(URL0);
await page.fill('#token', TOKEN);
await page.keyboard.press('Enter');
await page.waitForSelector('.board .card');
const expected = await page.evaluate(async () => {
  let n = 0, cursor = '';
  for (;;) {
    const r = await (await fetch(`api/v1/sessions?limit=1000${cursor ? `&cursor=${cursor}` : ''}`)).json();
    n += r.sessions.filter((s) => s.state !== 'archived').length;
    if (!r.next_cursor) return n;
    cursor = encodeURIComponent(r.next_cursor);
  }
});
const cdp = await context.newCDPSession(page);
// The renderer's main-thread time (CDP Performance.TaskDuration) for a navigation: what the page
// itself costs, less sensitive than wall time to other load on the machine.
async function taskMs() {
  const { metrics } = await cdp.send('Performance.getMetrics');
  return 1000 * (metrics.find((m) => m.name === 'TaskDuration')?.value ?? NaN);
}
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

// --- board ---
const board = [], search = [], boardTask = [];
for (let i = 0; i < RUNS; i++) {
  await page.goto('about:blank');
  await cdp.send('Performance.disable').catch(() => {});
  await cdp.send('Performance.enable');
  const t0 = await taskMs();
  await page.goto(`${URL0}#/`);
  const t = await page.evaluate((want) => new Promise((resolve) => {
    const check = () => {
      // The board counts what it placed: "N sessions" once the list is in and rendered.
      if (document.querySelector('.toolbar .count')?.textContent === `${want} sessions` && document.querySelector('.card')) {
        requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now())));
      } else setTimeout(check, 2);
    };
    check();
  }), expected);
  board.push(t);
  boardTask.push((await taskMs()) - t0);
  const s = await page.evaluate(() => new Promise((resolve) => {
    const input = document.getElementById('search');
    const t0 = performance.now();
    input.value = 'flaky';
    input.dispatchEvent(new Event('input'));
    requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - t0)));
  }));
  search.push(s);
}
console.log(`figure board_cards ${expected}`);
console.log(`figure board_interactive_ms ${median(board).toFixed(0)}`);
console.log(`figure board_search_ms ${median(search).toFixed(0)}`);
console.log(`figure board_main_thread_ms ${median(boardTask).toFixed(0)}`);

// --- session ---
const first = [], firstTask = [];
let rows = 0, events = 0;
for (let i = 0; i < RUNS; i++) {
  await page.goto('about:blank');
  await cdp.send('Performance.disable').catch(() => {});
  await cdp.send('Performance.enable');
  const t0 = await taskMs();
  await page.goto(`${URL0}#/s/${SID}`);
  const t = await page.evaluate(() => new Promise((resolve) => {
    const check = () => {
      if (document.querySelector('.timeline .vl-row')) requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now())));
      else setTimeout(check, 2);
    };
    check();
  }));
  first.push(t);
  firstTask.push((await taskMs()) - t0);
}
rows = await page.$$eval('.timeline .vl-row', (e) => e.length);
events = await page.evaluate(async (sid) => (await (await fetch(`api/v1/sessions/${sid}/log`)).text()).split('\n').filter(Boolean).length, SID);
console.log(`figure session_events ${events}`);
console.log(`figure session_rows_in_dom ${rows}`);
console.log(`figure session_first_paint_ms ${median(first).toFixed(0)}`);
console.log(`figure session_main_thread_ms ${median(firstTask).toFixed(0)}`);

// Scroll from the top to the end, a step per frame, recording each frame's duration.
const frames = await page.evaluate(() => new Promise((resolve) => {
  const sc = document.querySelector('.timeline');
  sc.scrollTop = 0;
  const out = [];
  let last = 0, n = 0;
  const step = (ts) => {
    if (last) out.push(ts - last);
    last = ts;
    sc.scrollTop += 120;
    if (++n < 600 && sc.scrollTop + sc.clientHeight < sc.scrollHeight - 1) requestAnimationFrame(step);
    else resolve(out);
  };
  requestAnimationFrame(step);
}));
const sorted = [...frames].sort((a, b) => a - b);
const p = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
console.log(`figure scroll_frames ${frames.length}`);
console.log(`figure scroll_frame_p50_ms ${p(0.5).toFixed(1)}`);
console.log(`figure scroll_frame_p95_ms ${p(0.95).toFixed(1)}`);
console.log(`figure scroll_frame_max_ms ${sorted[sorted.length - 1].toFixed(1)}`);
console.log(`figure scroll_long_frames ${frames.filter((f) => f > 50).length}`);

// The peer: the same events rendered as one plain list (every row in the DOM), timed to paint.
const naive = await page.evaluate(async (sid) => {
  const { renderItem } = await import('./timeline.js');
  const text = await (await fetch(`api/v1/sessions/${sid}/log`)).text();
  const t0 = performance.now();
  const items = text.split('\n').filter(Boolean).map((l) => ({ kind: 'event', ev: JSON.parse(l) }));
  const box = document.createElement('div');
  box.className = 'timeline';
  for (const it of items) box.appendChild(renderItem(it));
  document.querySelector('main').replaceChildren(box);
  box.scrollTop = box.scrollHeight;
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - t0))));
}, SID);
console.log(`figure peer_all_rows_paint_ms ${naive.toFixed(0)}`);
await browser.close();
