// The diff viewer: a unified diff split per file, a file list with +/− counts, and the hunks
// with added/removed/context lines highlighted.  Text only (textContent).

import { h } from './dom.js';

/** Parse a unified diff (git format) into [{name, oldName, add, del, lines: [{kind, text}]}]. */
export function parseDiff(text) {
  const files = [];
  let f = null;
  for (const line of String(text).split('\n')) {
    if (line.startsWith('diff --git ')) {
      const m = /^diff --git a\/(.*?) b\/(.*)$/.exec(line);
      f = { name: m ? m[2] : line.slice(11), oldName: m ? m[1] : '', add: 0, del: 0, lines: [] };
      files.push(f);
      f.lines.push({ kind: 'meta', text: line });
      continue;
    }
    if (!f) {
      if (!line) continue;
      f = { name: '(diff)', oldName: '', add: 0, del: 0, lines: [] };
      files.push(f);
    }
    let kind = 'ctx';
    if (line.startsWith('+++ ') || line.startsWith('--- ')) {
      kind = 'meta';
      const m = /^\+\+\+ b\/(.*)$/.exec(line);
      if (m) f.name = m[1];
    } else if (line.startsWith('@@')) kind = 'hunk';
    else if (line.startsWith('+')) { kind = 'add'; f.add++; }
    else if (line.startsWith('-')) { kind = 'del'; f.del++; }
    else if (/^(index |new file|deleted file|similarity|rename |old mode|new mode|Binary files)/.test(line)) kind = 'meta';
    f.lines.push({ kind, text: line });
  }
  return files;
}

/** The viewer for diff `text`: a file list that jumps to each file, and the files. */
export function renderDiff(text) {
  const files = parseDiff(text);
  if (!files.length) return h('p', { class: 'empty' }, 'No changes against the base.');
  const list = h('ul', { class: 'diff-files', 'aria-label': 'Changed files' });
  const body = h('div', { class: 'diff-body' });
  files.forEach((f, i) => {
    const id = `diff-file-${i}`;
    list.appendChild(h('li', null,
      h('a', { href: '#', onclick: (e) => { e.preventDefault(); document.getElementById(id)?.scrollIntoView({ block: 'start' }); } },
        h('span', { class: 'diff-name' }, f.name), ' ',
        h('span', { class: 'add' }, `+${f.add}`), ' ', h('span', { class: 'del' }, `−${f.del}`))));
    const pre = h('pre', { class: 'diff' });
    for (const l of f.lines) pre.appendChild(h('span', { class: `dl dl-${l.kind}` }, l.text + '\n'));
    body.appendChild(h('section', { class: 'diff-file', id },
      h('h3', null, f.name, ' ', h('span', { class: 'add' }, `+${f.add}`), ' ', h('span', { class: 'del' }, `−${f.del}`)), pre));
  });
  return h('div', { class: 'diff-view' }, list, body);
}
