// One row of the session timeline per item: user prompts, assistant text (markdown), tool calls
// (collapsible, with their result), command output (ANSI colours), status changes, commits,
// egress decisions, questions, errors, usage.  Every string goes in as text.

import { h, fmtTime } from './dom.js';
import { renderAnsi } from './ansi.js';
import { renderMarkdown } from './markdown.js';

const str = (v) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v, null, 2));

function time(ts) {
  return h('time', { class: 'tl-time', datetime: ts ? new Date(ts).toISOString() : undefined }, ts ? fmtTime(ts) : '');
}

/** The row element of timeline item `it` ({kind:'prompt', prompt} or {kind:'event', ev, result?}). */
export function renderItem(it, onToggle) {
  if (it.kind === 'prompt') {
    const p = it.prompt;
    return h('div', { class: 'tl tl-prompt' },
      h('div', { class: 'tl-head' }, h('span', { class: 'who' }, 'You'), time(p.created_at),
        p.state === 'cancelled' ? h('span', { class: 'tag' }, 'cancelled') : null),
      h('div', { class: 'tl-text' }, p.text));
  }
  const ev = it.ev, d = ev.data || {};
  switch (ev.type) {
    case 'message':
      if (d.role === 'user')
        return h('div', { class: 'tl tl-prompt' }, h('div', { class: 'tl-head' }, h('span', { class: 'who' }, 'You'), time(ev.ts)),
          h('div', { class: 'tl-text' }, str(d.text)));
      return h('div', { class: 'tl tl-assistant' },
        h('div', { class: 'tl-head' }, h('span', { class: 'who' }, 'Agent'), time(ev.ts)), renderMarkdown(str(d.text)));
    case 'command_output': {
      const pre = h('pre', { class: `tl-out ${d.stream === 'stderr' ? 'stderr' : ''}` });
      renderAnsi(pre, str(d.text));
      return h('div', { class: `tl tl-output${d.phase === 'setup' ? ' setup' : ''}` },
        d.phase === 'setup' ? h('span', { class: 'tag' }, 'setup') : null, pre);
    }
    case 'tool_call': {
      const det = h('details', { class: 'tool', open: it.open || undefined },
        h('summary', null, h('span', { class: 'tool-name' }, str(d.name) || 'tool'), ' ',
          h('span', { class: 'tool-brief' }, brief(d.input)),
          it.result ? h('span', { class: `tag ${it.result.is_error ? 'bad' : 'good'}` }, it.result.is_error ? 'error' : 'done')
                    : h('span', { class: 'tag' }, 'running')),
        h('div', { class: 'tool-body' },
          h('div', { class: 'tool-label' }, 'Input'), h('pre', { class: 'code' }, str(d.input)),
          it.result ? [h('div', { class: 'tool-label' }, 'Result'), h('pre', { class: `code ${it.result.is_error ? 'bad' : ''}` }, str(it.result.output))] : null));
      det.addEventListener('toggle', () => { it.open = det.open; onToggle?.(); });
      return h('div', { class: 'tl tl-tool' }, det);
    }
    case 'tool_result': {
      const det = h('details', { class: 'tool', open: it.open || undefined },
        h('summary', null, h('span', { class: 'tool-name' }, 'tool result'), ' ',
          h('span', { class: `tag ${d.is_error ? 'bad' : 'good'}` }, d.is_error ? 'error' : 'ok')),
        h('pre', { class: 'code' }, str(d.output)));
      det.addEventListener('toggle', () => { it.open = det.open; onToggle?.(); });
      return h('div', { class: 'tl tl-tool' }, det);
    }
    case 'status':
      return h('div', { class: 'tl tl-status' }, h('span', { class: `dot st-${str(d.to)}` }),
        d.from ? `${d.from} → ${d.to}` : `${d.to}`, d.reason ? h('span', { class: 'reason' }, ` — ${str(d.reason)}`) : null, ' ', time(ev.ts));
    case 'commit': {
      const files = Array.isArray(d.files) ? d.files : [];
      return h('div', { class: 'tl tl-commit' },
        h('div', { class: 'tl-head' }, h('span', { class: 'who' }, 'Commit'), ' ',
          h('code', { class: 'sha', title: str(d.sha) }, str(d.sha).slice(0, 12)), d.branch ? ` on ${d.branch}` : '', time(ev.ts)),
        d.summary ? h('div', { class: 'tl-text' }, str(d.summary)) : null,
        h('div', { class: 'commit-stats' }, `${d.files_changed ?? files.length} file(s) `,
          h('span', { class: 'add' }, `+${d.additions ?? 0}`), ' ', h('span', { class: 'del' }, `−${d.deletions ?? 0}`)),
        files.length ? h('ul', { class: 'commit-files' }, files.map((f) => h('li', null,
          h('span', { class: 'fstatus' }, str(f.status)), ' ', str(f.path),
          f.additions !== undefined ? [' ', h('span', { class: 'add' }, `+${f.additions}`), ' ', h('span', { class: 'del' }, `−${f.deletions ?? 0}`)] : null))) : null,
        d.files_truncated ? h('div', { class: 'muted' }, '… more files') : null);
    }
    case 'egress': {
      const allowed = d.allowed === true || d.action === 'allow' || d.verdict === 'allow' || d.decision === 'allow';
      return h('div', { class: `tl tl-egress ${allowed ? 'good' : 'bad'}` }, h('span', { class: `tag ${allowed ? 'good' : 'bad'}` }, allowed ? 'egress allowed' : 'egress denied'),
        ' ', str(d.host || d.url || d.target || ''), d.port ? `:${d.port}` : '', d.reason ? ` — ${str(d.reason)}` : '', ' ', time(ev.ts));
    }
    case 'question':
      return h('div', { class: 'tl tl-question' }, h('div', { class: 'tl-head' }, h('span', { class: 'who' }, 'Question'), time(ev.ts)),
        renderMarkdown(str(d.text)));
    case 'error':
      return h('div', { class: 'tl tl-error', role: 'note' }, h('span', { class: 'tag bad' }, 'error'), ' ', str(d.message || d.text || d));
    case 'usage':
      return h('div', { class: 'tl tl-status' }, `usage: ${d.input_tokens ?? '?'} in, ${d.output_tokens ?? '?'} out`,
        typeof d.cost_usd === 'number' ? `, $${d.cost_usd.toFixed(4)}` : '');
    case 'preview': {
      // {id, port, url (the site, never the token), origin, automatic, action: published|unpublished}
      const on = d.action !== 'unpublished';
      return h('div', { class: 'tl tl-status tl-preview' }, h('span', { class: `tag ${on ? 'good' : ''}` }, 'preview'), ' ',
        `port ${str(d.port)} ${on ? 'published' : 'unpublished'}${d.automatic ? ' (automatically)' : ''}`,
        d.origin ? [' on ', h('code', null, str(d.origin))] : null, ' ', time(ev.ts));
    }
    case 'push':
    case 'pr':
    default:
      return h('div', { class: 'tl tl-status' }, h('span', { class: 'tag' }, str(ev.type)), ' ', brief(d, 300), ' ', time(ev.ts));
  }
}

function brief(v, max = 120) {
  if (v === undefined || v === null) return '';
  let s;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'object' && typeof v.command === 'string') s = v.command;
  else if (typeof v === 'object' && typeof v.file_path === 'string') s = v.file_path;
  else s = JSON.stringify(v);
  s = s.replace(/\s+/g, ' ');
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}
