// Small DOM helpers: elements are built with textContent, never from HTML
// strings, so nothing the server returns is ever parsed as markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function announce(text) {
  const el = document.getElementById('announce');
  el.textContent = '';
  setTimeout(() => { el.textContent = text; }, 50);
}

export function errorBox(e) {
  return h('div', { class: 'error', role: 'alert' }, e && e.message ? e.message : String(e));
}

const GOOD = new Set(['completed', 'ready', 'approved', 'confirmed', 'allowed', 'active']);
const BAD = new Set(['failed', 'killed', 'timed_out', 'limit_exceeded', 'blocked', 'denied', 'revoked', 'halted', 'disabled']);

export function statusBadge(status) {
  const cls = GOOD.has(status) ? 'ok' : BAD.has(status) ? 'bad' : status === 'pending' || status === 'expired' ? 'warn' : 'info';
  return h('span', { class: 'status ' + cls }, status);
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

export function fmtMs(ms) {
  if (ms === undefined || ms === null) return '—';
  return ms < 1000 ? `${Math.round(ms * 10) / 10} ms` : `${Math.round(ms / 100) / 10} s`;
}

export function table(headers, rows, caption) {
  // The wrapper scrolls sideways on narrow screens, never the page; it can
  // take focus so that keyboards can scroll it too.
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || 'Table' },
    h('table', {},
      caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function json(value) {
  return h('pre', { class: 'wrap' }, JSON.stringify(value, null, 2));
}

let dialogSeq = 0;

/**
 * A modal dialog with fields; resolves with their values when confirmed,
 * null when cancelled. `check(values)` returns an error text or null.
 */
export function ask({ title, message, fields = [], confirm = 'Confirm', danger = false, check }) {
  return new Promise((resolve) => {
    const id = 'dlg' + ++dialogSeq;
    const inputs = fields.map((f, i) => {
      const fid = `${id}-f${i}`;
      const input = f.type === 'textarea'
        ? h('textarea', { id: fid, name: f.name, required: f.required })
        : h('input', { id: fid, name: f.name, type: 'text', required: f.required, autocomplete: 'off' });
      return [f, h('div', {}, h('label', { for: fid }, f.label), input), input];
    });
    const err = h('p', { class: 'error', role: 'alert', hidden: true });
    const dlg = h('dialog', { 'aria-labelledby': id + '-t' });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    const form = h('form', { method: 'dialog', novalidate: true, onsubmit: (ev) => {
      ev.preventDefault();
      const values = Object.fromEntries(inputs.map(([f, , input]) => [f.name, input.value.trim()]));
      const problem = check ? check(values) : null;
      if (problem) { err.hidden = false; err.textContent = problem; return; }
      done(values);
    } },
    h('h2', { id: id + '-t' }, title),
    message ? h('p', {}, message) : null,
    inputs.map(([, wrap]) => wrap),
    err,
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: danger ? 'danger' : '' }, confirm),
      h('button', { type: 'button', class: 'secondary', onclick: () => done(null) }, 'Cancel')));
    dlg.append(form);
    dlg.addEventListener('cancel', (ev) => { ev.preventDefault(); done(null); });
    document.body.append(dlg);
    dlg.showModal();
  });
}
