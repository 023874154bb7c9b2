// A small, safe Markdown renderer for assistant text: it builds DOM nodes and sets only
// textContent, so nothing the agent writes can become markup.  Supports headings, paragraphs,
// fenced and indented code, lists, block quotes, rules, and inline code, bold, italic and links
// (http/https/mailto only; everything else stays text).

import { h } from './dom.js';

const SAFE_URL = /^(https?:|mailto:)/i;

function inline(parent, text) {
  // tokens: `code`, **bold**, *italic* / _italic_, [text](url), bare https:// URLs
  const re = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*([^*\n]+)\*\*|__([^_\n]+)__|\*([^*\n]+)\*|(?<![A-Za-z0-9])_([^_\n]+)_(?![A-Za-z0-9])|\[([^\]\n]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) parent.appendChild(h('code', null, m[2]));
    else if (m[3] || m[4]) inline(parent.appendChild(h('strong')), m[3] || m[4]);
    else if (m[5] || m[6]) inline(parent.appendChild(h('em')), m[5] || m[6]);
    else if (m[7]) {
      if (SAFE_URL.test(m[8])) inline(parent.appendChild(h('a', { href: m[8], target: '_blank', rel: 'noopener noreferrer nofollow' })), m[7]);
      else parent.appendChild(document.createTextNode(m[0]));
    } else if (m[9]) parent.appendChild(h('a', { href: m[9], target: '_blank', rel: 'noopener noreferrer nofollow' }, m[9]));
    last = re.lastIndex;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

/** Render markdown `src` into a new <div class="md">. */
export function renderMarkdown(src) {
  const root = h('div', { class: 'md' });
  const lines = String(src).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  const isBlank = (l) => /^\s*$/.test(l);
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) { i++; continue; }
    let m;
    if ((m = /^\s*(```+|~~~+)\s*([\w+-]*)/.exec(line))) {
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence)) body.push(lines[i++]);
      i++;
      root.appendChild(h('pre', { class: 'code', dataset: m[2] ? { lang: m[2] } : undefined }, h('code', null, body.join('\n'))));
      continue;
    }
    if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
      inline(root.appendChild(h(`h${Math.min(6, m[1].length + 2)}`)), m[2].replace(/\s+#+\s*$/, ''));
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { root.appendChild(h('hr')); i++; continue; }
    if (/^ {4}|\t/.test(line)) {
      const body = [];
      while (i < lines.length && (/^ {4}|\t/.test(lines[i]) || isBlank(lines[i]))) body.push(lines[i++].replace(/^ {4}|\t/, ''));
      root.appendChild(h('pre', { class: 'code' }, h('code', null, body.join('\n').replace(/\n+$/, ''))));
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ''));
      const q = renderMarkdown(body.join('\n'));
      root.appendChild(h('blockquote', null, ...q.childNodes));
      continue;
    }
    if ((m = /^\s*([-*+]|\d+[.)])\s+/.exec(line))) {
      const ordered = /\d/.test(m[1]);
      const list = h(ordered ? 'ol' : 'ul');
      while (i < lines.length && (m = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(lines[i])) && /\d/.test(m[1]) === ordered) {
        const li = h('li');
        let text = m[2];
        i++;
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !/^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) text += ' ' + lines[i++].trim();
        const task = /^\[([ xX])\]\s+/.exec(text);
        if (task) { li.appendChild(h('input', { type: 'checkbox', disabled: true, checked: task[1] !== ' ', 'aria-label': 'task' })); text = text.slice(task[0].length); }
        inline(li, text);
        list.appendChild(li);
      }
      root.appendChild(list);
      continue;
    }
    const para = [];
    while (i < lines.length && !isBlank(lines[i]) && !/^(#{1,6}\s|\s*```|\s*~~~|\s*>|\s*([-*+]|\d+[.)])\s+)/.test(lines[i])) para.push(lines[i++]);
    if (!para.length) para.push(lines[i++]);
    const p = h('p');
    para.forEach((l, k) => {
      if (k) p.appendChild(/ {2}$/.test(para[k - 1]) ? h('br') : document.createTextNode(' '));
      inline(p, l.replace(/ {2}$/, ''));
    });
    root.appendChild(p);
  }
  return root;
}
