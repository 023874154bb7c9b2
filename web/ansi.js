// ANSI SGR colours in command output → <span>s with classes (text only, via textContent).  Other
// escape sequences (cursor movement, OSC titles, ...) are dropped.

const ESC_RE = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b./g;

function xterm256(n) {
  if (n < 16) return null;
  if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
  n -= 16;
  const c = (x) => (x ? 55 + x * 40 : 0);
  return `rgb(${c(Math.floor(n / 36))},${c(Math.floor(n / 6) % 6)},${c(n % 6)})`;
}

function applySgr(st, params) {
  const p = params === '' ? [0] : params.split(';').map((x) => (x === '' ? 0 : parseInt(x, 10)));
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    if (v === 0) { st.fg = st.bg = null; st.bold = st.dim = st.italic = st.underline = false; st.fgRgb = st.bgRgb = null; }
    else if (v === 1) st.bold = true;
    else if (v === 2) st.dim = true;
    else if (v === 3) st.italic = true;
    else if (v === 4) st.underline = true;
    else if (v === 22) st.bold = st.dim = false;
    else if (v === 23) st.italic = false;
    else if (v === 24) st.underline = false;
    else if (v >= 30 && v <= 37) { st.fg = v - 30; st.fgRgb = null; }
    else if (v >= 90 && v <= 97) { st.fg = v - 90 + 8; st.fgRgb = null; }
    else if (v === 39) { st.fg = null; st.fgRgb = null; }
    else if (v >= 40 && v <= 47) { st.bg = v - 40; st.bgRgb = null; }
    else if (v >= 100 && v <= 107) { st.bg = v - 100 + 8; st.bgRgb = null; }
    else if (v === 49) { st.bg = null; st.bgRgb = null; }
    else if ((v === 38 || v === 48) && p[i + 1] === 5 && i + 2 < p.length) {
      const n = p[i + 2];
      const rgb = n < 16 ? null : xterm256(n);
      if (v === 38) { st.fg = n < 16 ? n : null; st.fgRgb = rgb; } else { st.bg = n < 16 ? n : null; st.bgRgb = rgb; }
      i += 2;
    } else if ((v === 38 || v === 48) && p[i + 1] === 2 && i + 4 < p.length) {
      const clamp = (x) => Math.max(0, Math.min(255, x | 0));
      const rgb = `rgb(${clamp(p[i + 2])},${clamp(p[i + 3])},${clamp(p[i + 4])})`;
      if (v === 38) { st.fg = null; st.fgRgb = rgb; } else { st.bg = null; st.bgRgb = rgb; }
      i += 4;
    }
  }
}

function span(text, st) {
  const plain = st.fg === null && st.bg === null && !st.fgRgb && !st.bgRgb && !st.bold && !st.dim && !st.italic && !st.underline;
  if (plain) return document.createTextNode(text);
  const s = document.createElement('span');
  const cls = [];
  if (st.fg !== null) cls.push(`ansi-fg${st.fg}`);
  if (st.bg !== null) cls.push(`ansi-bg${st.bg}`);
  if (st.bold) cls.push('ansi-bold');
  if (st.dim) cls.push('ansi-dim');
  if (st.italic) cls.push('ansi-italic');
  if (st.underline) cls.push('ansi-underline');
  s.className = cls.join(' ');
  // CSSOM, not a style attribute: allowed under the page's style-src 'self'.
  if (st.fgRgb) s.style.color = st.fgRgb;
  if (st.bgRgb) s.style.backgroundColor = st.bgRgb;
  s.textContent = text;
  return s;
}

export function newAnsiState() {
  return { fg: null, bg: null, fgRgb: null, bgRgb: null, bold: false, dim: false, italic: false, underline: false };
}

/** Append `text` (with ANSI escapes) to `parent` as text nodes and spans; `st` carries the state. */
export function renderAnsi(parent, text, st = newAnsiState()) {
  text = text.replace(/\r+\n/g, '\n');
  let last = 0, m;
  ESC_RE.lastIndex = 0;
  while ((m = ESC_RE.exec(text))) {
    if (m.index > last) parent.appendChild(span(text.slice(last, m.index).replace(/\r/g, ''), st));
    if (m[2] === 'm') applySgr(st, m[1]);
    last = ESC_RE.lastIndex;
  }
  if (last < text.length) parent.appendChild(span(text.slice(last).replace(/\r/g, ''), st));
  return st;
}

/** The text without escapes (for search and copying). */
export function stripAnsi(text) {
  return text.replace(ESC_RE, '');
}
