// The dashboard's pages. Each renders into `main` and may return a function
// that stops what it started (streams, timers).

import { api, apiRaw, can, qs, session } from './api.js';
import { announce, ask, clear, errorBox, fmtMs, fmtTime, h, json, kv, statusBadge, table } from './ui.js';
import { highlight } from './highlight.js';
import { stackedBars } from './charts.js';

const fmtMB = (mb) => (typeof mb === 'number' ? `${Math.round(mb * 100) / 100} MB` : '—');

const STATUSES = ['completed', 'failed', 'timed_out', 'killed', 'limit_exceeded', 'blocked'];

async function agentNames() {
  const res = await api('GET', '/api/v1/sdk/agents?limit=100');
  return new Map(res.agents.map((a) => [a.id, a]));
}

async function keyNames() {
  if (!can('keys')) return new Map();
  try {
    const res = await api('GET', '/api/v1/keys');
    return new Map(res.keys.map((k) => [k.id, k]));
  } catch { return new Map(); }
}

// ---- Overview -------------------------------------------------------------

export async function overview(main) {
  main.append(h('h1', {}, 'Overview'));
  const stats = h('div', { class: 'stats' });
  const charts = h('div', { class: 'charts' });
  main.append(stats, charts);
  const pending = (await api('GET', '/api/v1/sdk/permission-requests?status=pending&limit=500')).requests.length;
  const agents = await api('GET', '/api/v1/sdk/agents?limit=1');
  const stat = (label, n, id) => h('div', { class: 'stat', id }, h('div', { class: 'n' }, n), h('div', {}, label));
  stats.append(stat('agents', agents.total, 'stat-agents'), stat('approvals pending', pending, 'stat-pending'));
  if (!can('audit:read')) {
    charts.append(h('p', { class: 'muted' }, 'Charts of executions, violations and blocks need the audit:read scope.'));
    return null;
  }
  // The last 24 hours by hour, from the audit log.
  const now = Date.now();
  const hours = 24;
  const start = now - hours * 3600_000;
  const bucket = (t) => Math.floor((new Date(t).getTime() - start) / 3600_000);
  const mk = () => Array.from({ length: hours }, (_, i) => ({
    label: new Date(start + i * 3600_000).toLocaleTimeString([], { hour: '2-digit' }), values: {},
  }));
  const from = new Date(start).toISOString();
  const ended = await api('GET', '/api/v1/sdk/audit' + qs({ from, actionTypes: 'execution_completed', limit: 1000 }));
  const runs = mk();
  for (const e of ended.events) {
    const b = runs[bucket(e.timestamp)];
    if (b) b.values[e.permission_state] = (b.values[e.permission_state] || 0) + 1;
  }
  const viol = await api('GET', '/api/v1/sdk/audit' + qs({ from, violationsOnly: true, limit: 1000 }));
  const vb = mk();
  let blocks = 0;
  for (const e of viol.events) {
    const b = vb[bucket(e.timestamp)];
    const kind = e.action_type === 'content_blocked' || e.permission_state === 'blocked' ? 'blocked' : 'violations';
    if (kind === 'blocked') blocks++;
    if (b) b.values[kind] = (b.values[kind] || 0) + 1;
  }
  stats.append(
    stat('executions (24 h)', ended.events.length, 'stat-runs'),
    stat('violations (24 h)', viol.events.length, 'stat-violations'),
    stat('blocks (24 h)', blocks, 'stat-blocks'));
  charts.append(
    stackedBars({ title: 'Executions per hour by status, last 24 hours', buckets: runs, series: STATUSES }),
    stackedBars({ title: 'Violations and blocks per hour, last 24 hours', buckets: vb, series: ['violations', 'blocked'] }));
  return null;
}

// ---- Agents -----------------------------------------------------------------

export async function agents(main) {
  main.append(h('h1', {}, 'Agents'));
  const res = await api('GET', '/api/v1/sdk/agents?limit=100');
  if (res.agents.length === 0) main.append(h('p', {}, 'No agents yet.'));
  else {
    main.append(table(['Name', 'Status', 'Template', 'Version', 'Updated'], res.agents.map((a) => [
      h('a', { href: `#/agents/${a.id}` }, a.name), statusBadge(a.status), a.config.sandbox_template || '—', a.version, fmtTime(a.updated_at),
    ]), 'Agents'));
  }
  if (can('agents:write')) main.append(registerForm());
  return null;
}

function registerForm() {
  const out = h('div', { role: 'status' });
  const name = h('input', { id: 'reg-name', type: 'text', required: true, autocomplete: 'off' });
  const code = h('textarea', { id: 'reg-code', required: true, spellcheck: 'false' });
  code.value = 'await thetazero.log("hello");\nreturn { hello: input.name || "world" };';
  const perms = h('select', { id: 'reg-perms' }, ['', 'READONLY', 'WRITER', 'RESEARCHER', 'CODER', 'ANALYST', 'FULL'].map((p) => h('option', { value: p }, p || '(none)')));
  const config = h('textarea', { id: 'reg-config', spellcheck: 'false' });
  config.value = '{}';
  const form = h('form', { class: 'panel', onsubmit: async (ev) => {
    ev.preventDefault();
    clear(out);
    let cfg;
    try { cfg = JSON.parse(config.value || '{}'); } catch { out.append(errorBox('Configuration is not valid JSON')); return; }
    const body = { name: name.value.trim(), entry_code: code.value, config: cfg };
    if (perms.value) body.permissions = perms.value;
    try {
      const res = await api('POST', '/api/v1/sdk/agents', body);
      announce(`Agent ${res.agent.name} registered`);
      location.hash = `#/agents/${res.agent.id}`;
    } catch (e) { out.append(errorBox(e)); }
  } },
  h('h2', {}, 'Register an agent'),
  h('label', { for: 'reg-name' }, 'Name'), name,
  h('label', { for: 'reg-code' }, 'Code (the body of an async function)'), code,
  h('label', { for: 'reg-perms' }, 'Permissions preset'), perms,
  h('label', { for: 'reg-config' }, 'Configuration (JSON)'), config,
  h('p', {}, h('button', { type: 'submit' }, 'Register')), out);
  return form;
}

export async function killAgent(agent) {
  const values = await ask({
    title: `Kill ${agent.name}?`,
    message: 'Every running execution stops at once and new runs are refused until its status is set to ready again.',
    fields: [
      { name: 'reason', label: 'Reason (recorded in the audit log)', type: 'textarea', required: true },
      { name: 'confirm', label: `Type the agent's name (${agent.name}) to confirm`, required: true },
    ],
    confirm: 'Kill agent',
    danger: true,
    check: (v) => (!v.reason ? 'A reason is required' : v.confirm !== agent.name ? 'The name does not match' : null),
  });
  if (!values) return null;
  const res = await api('POST', `/api/v1/sdk/agents/${agent.id}/kill`, { reason: values.reason });
  announce(`Agent ${agent.name} killed: ${res.terminated} execution(s) stopped`);
  return res;
}

export async function agent(main, [id]) {
  const a = (await api('GET', `/api/v1/sdk/agents/${id}`)).agent;
  const msg = h('div', { role: 'status' });
  main.append(h('p', {}, h('a', { href: '#/agents' }, '← Agents')),
    h('h1', {}, a.name, ' ', statusBadge(a.status)),
    kv([['Version', a.version], ['Template', a.config.sandbox_template || '—'], ['Code SHA-256', h('code', {}, a.code_sha256)],
      ['Updated', fmtTime(a.updated_at)], ['Description', a.description || '—']]),
    msg);

  const actions = h('div', { class: 'row panel' });
  if (can('agents:write')) {
    const sel = h('select', { id: 'agent-status' }, ['ready', 'disabled'].map((s) => h('option', { value: s, selected: a.status === s }, s)));
    actions.append(h('form', { class: 'row', onsubmit: async (ev) => {
      ev.preventDefault();
      clear(msg);
      try {
        await api('PATCH', `/api/v1/sdk/agents/${a.id}`, { status: sel.value });
        announce(`Status set to ${sel.value}`);
        location.hash = `#/agents/${a.id}`;
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      } catch (e) { msg.append(errorBox(e)); }
    } }, h('div', {}, h('label', { for: 'agent-status' }, 'Status'), sel), h('button', { type: 'submit' }, 'Set status')));
  }
  if (can('killswitch') && a.status !== 'killed') {
    actions.append(h('button', { type: 'button', class: 'danger', onclick: async () => {
      clear(msg);
      try {
        if (await killAgent(a)) window.dispatchEvent(new HashChangeEvent('hashchange'));
      } catch (e) { msg.append(errorBox(e)); }
    } }, 'Kill…'));
  }
  if (actions.childNodes.length) main.append(actions);

  const runOut = h('div', { id: 'run-result', role: 'status' });
  if (can('agents:execute')) {
    const input = h('textarea', { id: 'run-input', spellcheck: 'false' });
    input.value = '{}';
    const btn = h('button', { type: 'submit' }, 'Run');
    main.append(h('form', { class: 'panel', onsubmit: async (ev) => {
      ev.preventDefault();
      clear(runOut);
      let value;
      try { value = JSON.parse(input.value || '{}'); } catch { runOut.append(errorBox('Input is not valid JSON')); return; }
      btn.disabled = true;
      runOut.append(h('p', {}, 'Running…'));
      const refresh = setInterval(() => loadExecutions(), 1500);
      try {
        const r = await api('POST', `/api/v1/sdk/agents/${a.id}/execute`, { input: value });
        clear(runOut).append(h('p', {}, 'Execution ', h('a', { href: `#/agents/${a.id}/executions/${r.execution_id}` }, `#${r.execution_id}`), ' ', statusBadge(r.status), ` in ${fmtMs(r.duration_ms)}`), json(r.output));
      } catch (e) {
        clear(runOut).append(errorBox(e));
      } finally {
        clearInterval(refresh);
        btn.disabled = false;
        loadExecutions();
      }
    } }, h('h2', {}, 'Run'), h('label', { for: 'run-input' }, 'Input (JSON)'), input, h('p', {}, btn), runOut));
  }

  main.append(h('h2', {}, 'Code'), highlight(a.entry_code, `Code of ${a.name}`));
  // What the agent runs with now: its configuration widened by the grants in
  // force and held to the operator's ceilings (the stored one as a fallback).
  const eff = a.effective_config && typeof a.effective_config === 'object' ? a.effective_config : { ...a.config, permissions: a.permissions, grants: [] };
  const fmtPerms = (p) => (Array.isArray(p) ? p.join(', ') || 'none' : String(p ?? 'none'));
  main.append(h('h2', {}, 'Effective configuration'),
    table(['Setting', 'Effective', 'As registered'], Object.entries(eff).filter(([k]) => k !== 'permissions' && k !== 'grants').map(([k, v]) => [
      h('code', {}, k), JSON.stringify(v), JSON.stringify(a.config[k]) === JSON.stringify(v) ? '' : JSON.stringify(a.config[k] ?? null)]), 'Configuration'));
  main.append(h('h2', {}, 'Permissions'),
    kv([['Effective', fmtPerms(eff.permissions)], ['As registered', fmtPerms(a.permissions)]]));
  const grants = eff.grants || [];
  main.append(h('h3', {}, 'Grants in force'),
    grants.length ? table(['Request', 'Grant', 'Until'], grants.map((g) => [`#${g.request_id}`, h('code', {}, JSON.stringify(g.permissions)), g.grant_expires_at ? fmtTime(g.grant_expires_at) : 'no expiry']), 'Grants')
      : h('p', { class: 'muted' }, 'No approved grant is in force.'));

  const execBox = h('div', { id: 'executions' });
  main.append(h('h2', {}, 'Executions'), execBox);
  async function loadExecutions() {
    try {
      const res = await api('GET', `/api/v1/sdk/agents/${a.id}/executions?limit=50`);
      clear(execBox).append(res.executions.length === 0 ? h('p', {}, 'No executions yet.')
        : table(['Execution', 'Status', 'Duration', 'CPU', 'Memory', 'Host calls', 'Started'], res.executions.map((x) => [
          h('a', { href: `#/agents/${a.id}/executions/${x.execution_id}` }, `#${x.execution_id}`), statusBadge(x.status), fmtMs(x.duration_ms),
          fmtMs(x.resource_usage.cpu_ms), fmtMB(x.resource_usage.memory_mb),
          String(x.resource_usage.host_calls ?? '—'), fmtTime(x.started_at)]), 'Executions'));
    } catch (e) { clear(execBox).append(errorBox(e)); }
  }
  await loadExecutions();
  const timer = setInterval(loadExecutions, 5000);
  return () => clearInterval(timer);
}

export async function execution(main, [agentId, eid]) {
  const x = await api('GET', `/api/v1/sdk/agents/${agentId}/executions/${eid}`);
  main.append(h('p', {}, h('a', { href: `#/agents/${agentId}` }, '← Agent')),
    h('h1', {}, `Execution #${x.execution_id} `, statusBadge(x.status)),
    kv([['Duration', fmtMs(x.duration_ms)], ['CPU', fmtMs(x.resource_usage.cpu_ms)], ['Memory', fmtMB(x.resource_usage.memory_mb)],
      ['Host calls', String(x.resource_usage.host_calls ?? '—')], ['Violations', String(x.violation_count)],
      ['Started', fmtTime(x.started_at)], ['Finished', fmtTime(x.finished_at)], ['Code SHA-256', h('code', {}, x.code_sha256)],
      ['Audit receipt', x.leaf_index !== null && x.leaf_index !== undefined ? `leaf ${x.leaf_index}` : '—']]));
  main.append(h('h2', {}, 'Input'), json(x.input ?? null), h('h2', {}, 'Output'), json(x.output));
  if (x.error) main.append(h('h2', {}, 'Error'), json(x.error));
  const logs = x.logs || [];
  main.append(h('h2', {}, 'Logs'), logs.length ? table(['Time', 'Level', 'Message'], logs.map((l) => [fmtTime(l.at), l.level, l.message]), 'Logs') : h('p', { class: 'muted' }, 'No logs.'));
  const calls = x.host_call_audit || [];
  const t0 = calls.length ? new Date(calls[0].at).getTime() : 0;
  main.append(h('h2', {}, 'Host-call audit'), calls.length
    ? h('ol', { class: 'timeline', 'aria-label': 'Host calls in order' }, calls.map((c) => h('li', { class: c.allowed ? '' : 'denied' },
      h('strong', {}, `thetazero.${c.fn}`), ' ', statusBadge(c.allowed ? 'allowed' : 'denied'),
      ` +${Math.max(0, new Date(c.at).getTime() - t0)} ms, took ${fmtMs(c.duration_ms)}`,
      h('div', { class: 'muted' }, c.args_summary))))
    : h('p', { class: 'muted' }, 'No host calls.'));
  return null;
}

// ---- Live audit -------------------------------------------------------------

export async function liveAudit(main) {
  main.append(h('h1', {}, 'Live audit'));
  const agentF = h('input', { id: 'f-agent', type: 'number', min: 1, inputmode: 'numeric' });
  const execF = h('input', { id: 'f-exec', type: 'number', min: 1, inputmode: 'numeric' });
  const actionF = h('input', { id: 'f-action', type: 'text', placeholder: 'e.g. permission_denied' });
  const violF = h('input', { id: 'f-viol', type: 'checkbox' });
  const state = h('p', { id: 'stream-state', role: 'status' }, 'Connecting…');
  const list = h('ol', { class: 'events', id: 'events', 'aria-label': 'Audit events, newest first', reversed: true });
  const pause = h('button', { type: 'button', id: 'pause' }, 'Pause');
  let es = null;
  let lastId = null;
  let paused = false;
  let seen = 0;

  const keep = (e) => (!actionF.value.trim() || e.action_type === actionF.value.trim()) && (!violF.checked || e.is_violation);
  function add(e) {
    seen++;
    if (!keep(e)) return;
    const li = h('li', { class: e.is_violation ? 'violation' : '', 'data-leaf': e.leaf_index },
      e.is_violation ? h('strong', {}, 'Violation: ') : null,
      h('code', {}, e.action_type), ' ', e.description,
      h('div', { class: 'muted' }, `#${e.leaf_index} · ${fmtTime(e.timestamp)}`,
        e.agent_id ? ` · agent ${e.agent_id}` : '', e.execution_id ? ` · execution ${e.execution_id}` : ''));
    list.prepend(li);
    while (list.childNodes.length > 500) list.lastChild.remove();
  }
  function open() {
    if (es) es.close();
    state.textContent = 'Connecting…';
    const params = { agentId: agentF.value || undefined, executionId: execF.value || undefined };
    if (lastId !== null) params.after = lastId;
    es = new EventSource('/api/v1/sdk/audit/stream' + qs(params));
    es.addEventListener('connected', () => { state.textContent = lastId === null ? 'Live' : `Live (resumed after #${lastId})`; });
    es.addEventListener('audit', (ev) => {
      lastId = Number(ev.lastEventId);
      try { add(JSON.parse(ev.data)); } catch { /* malformed events are skipped */ }
    });
    es.addEventListener('timeout', () => { /* the browser reconnects with Last-Event-ID */ });
    es.addEventListener('error', () => { if (!paused) state.textContent = es.readyState === EventSource.CLOSED ? 'Disconnected' : 'Reconnecting…'; });
  }
  pause.addEventListener('click', () => {
    paused = !paused;
    if (paused) {
      es.close();
      state.textContent = `Paused after #${lastId ?? '—'}; events that arrive meanwhile are shown on resume`;
      pause.textContent = 'Resume';
    } else {
      pause.textContent = 'Pause';
      open();
    }
  });
  const apply = h('button', { type: 'submit', class: 'secondary' }, 'Apply filters');
  main.append(h('form', { class: 'panel', onsubmit: (ev) => {
    ev.preventDefault();
    clear(list);
    lastId = null;
    if (!paused) open();
  } },
  h('div', { class: 'row' },
    h('div', {}, h('label', { for: 'f-agent' }, 'Agent id'), agentF),
    h('div', {}, h('label', { for: 'f-exec' }, 'Execution id'), execF),
    h('div', {}, h('label', { for: 'f-action' }, 'Action type'), actionF),
    h('label', { class: 'inline', for: 'f-viol' }, violF, 'Violations only'),
    apply, pause)), state, list);
  open();
  return () => { if (es) es.close(); };
}

// ---- Permission requests ----------------------------------------------------

function describeRequest(r) {
  const call = r.permissions && r.permissions.call;
  if (call) {
    const d = call.detail || {};
    const parts = [h('p', { class: 'status warn' }, `A run is waiting: execution #${call.execution_id}`),
      h('p', {}, 'Exact call sought: ', h('code', {}, `thetazero.${call.fn}`))];
    if (d.url) {
      parts.push(kv([
        ['Method', String(d.method || 'GET')],
        ['URL', h('code', {}, d.url)],
        ['Headers', (d.header_names || []).join(', ') || 'none'],
        ['Body', d.body ? [`${d.body.bytes} bytes: `, h('code', {}, d.body.excerpt)] : 'none'],
      ]));
    } else {
      parts.push(h('pre', { class: 'wrap' }, call.summary || ''));
      if (call.detail !== undefined) parts.push(json(call.detail));
    }
    parts.push(h('p', { class: 'muted' }, 'Arguments SHA-256: ', h('code', {}, call.args_sha256 || '—')));
    return parts;
  }
  return [h('p', {}, 'Permissions sought:'), json(r.permissions)];
}

export async function requests(main) {
  main.append(h('h1', {}, 'Permission requests'));
  const filter = h('select', { id: 'req-filter' }, ['pending', 'approved', 'denied', 'expired', ''].map((s) => h('option', { value: s }, s || 'all')));
  const box = h('div', { id: 'requests' });
  const msg = h('div', { role: 'status' });
  main.append(h('div', { class: 'row' }, h('div', {}, h('label', { for: 'req-filter' }, 'Show'), filter)), msg, box);
  let agentsById = new Map();
  let keysById = new Map();
  async function load() {
    try {
      [agentsById, keysById] = await Promise.all([agentNames(), keyNames()]);
      const res = await api('GET', '/api/v1/sdk/permission-requests' + qs({ status: filter.value, limit: 200 }));
      clear(box);
      if (res.requests.length === 0) { box.append(h('p', {}, `No ${filter.value || ''} requests.`)); return; }
      box.append(h('div', { class: 'cards' }, res.requests.map(card)));
    } catch (e) { clear(box).append(errorBox(e)); }
  }
  function card(r) {
    const ag = agentsById.get(r.agent_id);
    const who = keysById.get(r.requested_by_key_id);
    const c = h('article', { class: 'card', 'aria-labelledby': `req-${r.id}`, 'data-request': r.id },
      h('h2', { id: `req-${r.id}` }, `Request #${r.id} `, statusBadge(r.status)),
      kv([['Agent', ag ? h('a', { href: `#/agents/${ag.id}` }, ag.name) : `#${r.agent_id}`],
        ['Requested by', who ? `${who.name} (${who.prefix}…)` : `key #${r.requested_by_key_id}`],
        ['Justification', r.justification || '—'], ['Asked', fmtTime(r.created_at)],
        [r.status === 'pending' ? 'Expires' : 'Decided', r.status === 'pending' ? fmtTime(r.expires_at) : fmtTime(r.decided_at)],
        ...(r.decision_reason ? [['Reason', r.decision_reason]] : [])]),
      describeRequest(r));
    if (r.status === 'pending' && can('approvals')) {
      const expiry = h('select', { id: `exp-${r.id}` },
        [['', 'no expiry'], ['3600000', '1 hour'], ['86400000', '24 hours'], ['604800000', '7 days']].map(([v, t]) => h('option', { value: v }, t)));
      const reason = h('input', { id: `reason-${r.id}`, type: 'text', autocomplete: 'off' });
      const decide = async (verb) => {
        clear(msg);
        const body = {};
        if (reason.value.trim()) body.reason = reason.value.trim();
        if (verb === 'approve' && expiry.value) body.grant_expires_in_ms = Number(expiry.value);
        try {
          await api('POST', `/api/v1/sdk/permission-requests/${r.id}/${verb}`, body);
          announce(`Request #${r.id} ${verb === 'approve' ? 'approved' : 'denied'}`);
          window.dispatchEvent(new Event('tz:badge'));
          await load();
        } catch (e) { msg.append(errorBox(e)); }
      };
      c.append(h('div', { class: 'row' },
        r.permissions && r.permissions.call ? null : h('div', {}, h('label', { for: `exp-${r.id}` }, 'Grant expires after'), expiry),
        h('div', {}, h('label', { for: `reason-${r.id}` }, 'Reason'), reason)),
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => decide('approve'), 'aria-label': `Approve request #${r.id}` }, 'Approve'),
        h('button', { type: 'button', class: 'danger', onclick: () => decide('deny'), 'aria-label': `Deny request #${r.id}` }, 'Deny')));
    }
    return c;
  }
  filter.addEventListener('change', load);
  await load();
  const onEvent = () => load();
  window.addEventListener('tz:permissions', onEvent);
  const timer = setInterval(load, 10_000);
  return () => { window.removeEventListener('tz:permissions', onEvent); clearInterval(timer); };
}

// ---- Kill switch ------------------------------------------------------------

export async function killSwitch(main) {
  main.append(h('h1', {}, 'Kill switch'));
  const msg = h('div', { role: 'status' });
  main.append(msg);
  const halt = await api('GET', '/api/v1/sdk/kill-switch/global');
  main.append(h('h2', {}, 'Account and deployment'),
    h('p', { id: 'halt-state' }, halt.halted
      ? [statusBadge('halted'), ` ${halt.scope === 'deployment' ? 'The whole deployment' : 'This account'} is halted since ${fmtTime(halt.since)}: ${halt.reason}`]
      : [statusBadge('active'), ' Executions run normally.']));
  const reason = h('input', { id: 'halt-reason', type: 'text', required: true, autocomplete: 'off' });
  const scope = h('select', { id: 'halt-scope' }, h('option', { value: 'account' }, 'this account'),
    session.deploymentOwner ? h('option', { value: 'deployment' }, 'the whole deployment') : null);
  const set = async (halted) => {
    clear(msg);
    if (!reason.value.trim()) { msg.append(errorBox('A reason is required')); reason.focus(); return; }
    try {
      await api('POST', '/api/v1/sdk/kill-switch/global', { halted, reason: reason.value.trim(), scope: scope.value });
      announce(halted ? 'Halted' : 'Halt cleared');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (e) { msg.append(errorBox(e)); }
  };
  main.append(h('form', { class: 'panel', onsubmit: (ev) => { ev.preventDefault(); set(!halt.halted); } },
    h('div', { class: 'row' },
      h('div', {}, h('label', { for: 'halt-scope' }, 'Scope'), scope),
      h('div', {}, h('label', { for: 'halt-reason' }, 'Reason'), reason)),
    h('p', {}, halt.halted ? h('button', { type: 'submit' }, 'Clear the halt') : h('button', { type: 'submit', class: 'danger' }, 'Halt everything'))));

  main.append(h('h2', {}, 'Agents'));
  const list = (await api('GET', '/api/v1/sdk/agents?limit=100')).agents;
  main.append(list.length === 0 ? h('p', {}, 'No agents.') : table(['Agent', 'Status', ''], list.map((a) => [
    h('a', { href: `#/agents/${a.id}` }, a.name), statusBadge(a.status),
    a.status === 'killed' ? h('span', { class: 'muted' }, 'set it ready on its page to run again')
      : h('button', { type: 'button', class: 'danger', 'aria-label': `Kill ${a.name}`, onclick: async () => {
        clear(msg);
        try { if (await killAgent(a)) window.dispatchEvent(new HashChangeEvent('hashchange')); } catch (e) { msg.append(errorBox(e)); }
      } }, 'Kill…')]), 'Agents'));

  main.append(h('h2', {}, 'History'));
  if (!can('audit:read')) { main.append(h('p', { class: 'muted' }, 'The history needs the audit:read scope.')); return null; }
  const hist = await api('GET', '/api/v1/sdk/audit' + qs({ actionTypes: 'agent_kill_requested,agent_killed,global_halt_set,global_halt_cleared', limit: 1000 }));
  const events = hist.events.slice(-50).reverse();
  main.append(events.length === 0 ? h('p', {}, 'No kill or halt yet.')
    : table(['Time', 'Action', 'What'], events.map((e) => [fmtTime(e.timestamp), h('code', {}, e.action_type), e.description]), 'Kill switch history'));
  return null;
}

// ---- API keys ---------------------------------------------------------------

const SCOPES = ['agents:read', 'agents:write', 'agents:execute', 'audit:read', 'approvals', 'killswitch', 'compliance', 'keys'];

export async function keys(main) {
  main.append(h('h1', {}, 'API keys'));
  const msg = h('div', { role: 'status', id: 'key-msg' });
  const name = h('input', { id: 'key-name', type: 'text', required: true, autocomplete: 'off' });
  const boxes = SCOPES.filter(can).map((s) => h('input', { type: 'checkbox', value: s, id: `scope-${s.replace(':', '-')}` }));
  const form = h('form', { class: 'panel', onsubmit: async (ev) => {
    ev.preventDefault();
    clear(msg);
    const scopes = boxes.filter((b) => b.checked).map((b) => b.value);
    if (scopes.length === 0) { msg.append(errorBox('Choose at least one scope')); return; }
    try {
      const res = await api('POST', '/api/v1/keys', { name: name.value.trim(), scopes });
      const secret = h('div', { class: 'secret', id: 'new-secret' }, res.secret);
      const copied = h('span', { role: 'status' });
      msg.append(h('div', { class: 'okbox' },
        h('p', {}, h('strong', {}, `Key ${res.key.name} created. `), 'Copy its secret now: it is shown this once and never again.'),
        secret,
        h('p', {}, h('button', { type: 'button', onclick: async () => {
          try { await navigator.clipboard.writeText(res.secret); copied.textContent = ' Copied.'; } catch { copied.textContent = ' Copy failed: select the text instead.'; }
        } }, 'Copy secret'), copied)));
      name.value = '';
      boxes.forEach((b) => { b.checked = false; });
      await load();
    } catch (e) { msg.append(errorBox(e)); }
  } },
  h('h2', {}, 'Create a key'),
  h('label', { for: 'key-name' }, 'Name'), name,
  h('fieldset', {}, h('legend', {}, 'Scopes (only those this key holds can be granted)'),
    boxes.map((b) => h('label', { class: 'inline', for: b.id }, b, b.value))),
  h('p', {}, h('button', { type: 'submit' }, 'Create key')));
  const listBox = h('div', { id: 'key-list' });
  main.append(form, msg, h('h2', {}, 'Keys'), listBox);
  async function load() {
    const res = await api('GET', '/api/v1/keys');
    clear(listBox).append(table(['Name', 'Prefix', 'Scopes', 'Created', 'Last used', 'State', ''], res.keys.map((k) => [
      k.name, h('code', {}, k.prefix + '…'), k.is_owner ? 'owner (every scope)' : k.scopes.join(', '), fmtTime(k.created_at), fmtTime(k.last_used_at),
      k.revoked_at ? statusBadge('revoked') : statusBadge('active'),
      k.revoked_at || k.id === session.key.id ? '' : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name}`, onclick: async () => {
        const ok = await ask({ title: `Revoke ${k.name}?`, message: 'It stops working at once, and its dashboard sessions end.', confirm: 'Revoke', danger: true });
        if (!ok) return;
        try { await api('DELETE', `/api/v1/keys/${k.id}`); announce(`Key ${k.name} revoked`); await load(); } catch (e) { msg.append(errorBox(e)); }
      } }, 'Revoke')]), 'API keys'));
  }
  await load();
  return null;
}


// ---- Compliance -------------------------------------------------------------

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
}

export async function compliance(main) {
  main.append(h('h1', {}, 'Compliance'));
  const [list, status] = await Promise.all([
    api('GET', '/api/v1/sdk/compliance/frameworks'),
    api('GET', '/api/v1/sdk/compliance/status'),
  ]);
  const titles = new Map(list.frameworks.map((f) => [f.id, f.title]));
  const msg = h('div', { role: 'status', id: 'compliance-msg' });
  main.append(h('p', { class: 'panel' }, `${status.disclaimer}. Results are per control, never merged into a score; organisational controls are for you to assess.`), msg);
  const busy = async (label, fn) => {
    clear(msg).append(h('p', {}, `${label}…`));
    try { clear(msg).append(h('p', { class: 'okbox' }, await fn())); } catch (e) { clear(msg).append(errorBox(e)); }
  };
  main.append(h('div', { class: 'row' },
    h('button', { type: 'button', class: 'secondary', onclick: () => busy('Building the report', async () => {
      const res = await apiRaw('GET', '/api/v1/sdk/compliance/report');
      download(await res.blob(), 'compliance-report.json');
      return 'Report downloaded (compliance-report.json).';
    }) }, 'Download report (JSON)'),
    h('button', { type: 'button', class: 'secondary', onclick: () => busy('Building the OSCAL report', async () => {
      const res = await apiRaw('GET', '/api/v1/sdk/compliance/report?format=oscal');
      download(await res.blob(), 'compliance-assessment-results.oscal.json');
      return 'OSCAL assessment results downloaded.';
    }) }, 'Download report (OSCAL)')));
  main.append(h('div', { class: 'cards', id: 'frameworks' }, status.frameworks.map((f) => {
    const r = f.summary.result;
    const c = f.summary.coverage;
    const failing = f.controls.filter((x) => x.result === 'not_satisfied');
    return h('article', { class: 'card', 'aria-labelledby': `fw-${f.id}`, 'data-framework': f.id },
      h('h2', { id: `fw-${f.id}` }, titles.get(f.id) || f.id),
      kv([['Satisfied', String(r.satisfied)], ['Not satisfied', String(r.not_satisfied)], ['Not assessed', String(r.not_assessed)],
        ['Coverage', `${c.automated} automated, ${c.partial} partial, ${c.organizational} organisational`],
        ['Catalog', `${f.catalog_version}`]]),
      failing.length ? h('details', {}, h('summary', {}, `${failing.length} control(s) not satisfied`),
        h('ul', {}, failing.map((x) => h('li', {}, h('strong', {}, x.id), ': ', (x.reasons || []).join('; ') || 'see the report')))) : null,
      h('p', {}, h('button', { type: 'button', 'aria-label': `Evidence package for ${titles.get(f.id) || f.id}`, onclick: () => busy('Building the evidence package', async () => {
        const res = await apiRaw('POST', `/api/v1/sdk/compliance/packages/${encodeURIComponent(f.id)}`, {});
        const name = (/filename="?([^";]+)"?/.exec(res.headers.get('content-disposition') || '') || [])[1] || `${f.id}-evidence.zip`;
        download(await res.blob(), name);
        return `Evidence package ${name} downloaded (sha256 ${res.headers.get('x-content-sha256') || '—'}); its generation is in the audit log.`;
      }) }, 'Evidence package')));
  })));
  return null;
}
