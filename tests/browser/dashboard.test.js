'use strict';
// The dashboard in Debian's headless Chromium against a real `thetazero
// serve`: sign-in, agents and runs, permission requests and the badge, a
// mid-run approval, a kill, API keys, verification in the browser, the live
// audit stream, compliance downloads, CSRF and CSP, sessions ending with
// their key, keyboard use,
// narrow screens, and axe-core on every page. Screenshots go to
// target/dashboard-screenshots.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer, client, until, textMatches, CHROMIUM, SHOTS } = require('./_harness');

const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const PAGES = ['#/overview', '#/agents', '#/agents/1', '#/agents/1/executions/1', '#/audit', '#/security/requests', '#/killswitch', '#/settings/keys', '#/verify', '#/compliance'];

let server;
let browser;
let context;
let page;
let owner; // the owner key, from Node
let second; // a second key, from Node
let secondKey;
const foreign = []; // requests the page made to anything but the server

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  owner = client(server.baseUrl, server.apiKey);
  const created = await owner('POST', '/api/v1/keys', { name: 'author', scopes: ['agents:read', 'agents:write', 'agents:execute'] });
  assert.equal(created.status, 201);
  secondKey = created.data.secret;
  second = client(server.baseUrl, secondKey);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on('request', (r) => { if (!r.url().startsWith(server.baseUrl) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('pageerror', (e) => { throw e; });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

const shot = (name, p = page) => p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

// Navigates and waits until the page is drawn in full: the dashboard marks
// `main` with the page it finished (`data-page`), after the page's own data
// loaded. (Its heading often comes before that data.)
async function go(hash, p = page) {
  await p.evaluate((h) => { location.hash = h; }, hash);
  await p.waitForFunction(() => {
    const m = document.getElementById('main');
    return m && m.dataset.page === (location.hash || '#/overview');
  });
  await p.locator('main h1').first().waitFor();
}

async function signIn(p, key) {
  await p.goto(server.baseUrl + '/');
  await p.locator('#api-key').fill(key);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.locator('#nav').waitFor();
}

test('the page is served by the binary with a strict policy and loads nothing from elsewhere', async () => {
  const res = await fetch(server.baseUrl + '/');
  assert.equal(res.status, 200);
  const csp = res.headers.get('content-security-policy');
  for (const d of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"]) assert.ok(csp.includes(d), d);
  assert.ok(!/unsafe-inline|unsafe-eval/.test(csp));
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('x-frame-options'), 'DENY');
  const html = await res.text();
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), 'no inline script');
  const js = await fetch(server.baseUrl + '/dashboard/app.js');
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  assert.ok(js.headers.get('content-security-policy'));
  assert.equal((await fetch(server.baseUrl + '/dashboard/nope.js')).status, 404);

  // The browser enforces the policy: an injected inline script does not run.
  await page.goto(server.baseUrl + '/');
  const ran = await page.evaluate(() => new Promise((resolve) => {
    window.__inline = false;
    document.addEventListener('securitypolicyviolation', () => resolve(window.__inline), { once: true });
    const s = document.createElement('script');
    s.textContent = 'window.__inline = true';
    document.body.append(s);
    setTimeout(() => resolve(window.__inline), 2000);
  }));
  assert.equal(ran, false);
});

test('signing in exchanges the key for an HttpOnly SameSite=Strict cookie; the key is not kept', async () => {
  await page.goto(server.baseUrl + '/');
  await page.locator('#api-key').fill('tzk_not-a-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await textMatches(page.locator('.signin [role=alert]'), /invalid API key/);
  await shot('sign-in');
  await signIn(page, server.apiKey);
  const cookies = await context.cookies();
  const c = cookies.find((x) => x.name === 'tz_session');
  assert.ok(c, 'session cookie');
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Strict');
  assert.notEqual(c.value, server.apiKey);
  const stored = await page.evaluate(() => JSON.stringify([document.cookie, { ...localStorage }, { ...sessionStorage }, document.documentElement.outerHTML]));
  assert.ok(!stored.includes(server.apiKey), 'the key is nowhere in the page or its storage');
  assert.equal(await page.evaluate(() => document.cookie), '');
});

test('a cookie request that changes state needs the CSRF token, whatever its content type', async () => {
  const results = await page.evaluate(async () => {
    const body = JSON.stringify({ name: 'csrf', entry_code: 'return 1' });
    const out = {};
    for (const type of ['text/plain', 'application/json', 'application/x-www-form-urlencoded']) {
      const r = await fetch('/api/v1/sdk/agents', { method: 'POST', headers: { 'Content-Type': type }, body });
      out[type] = [r.status, (await r.json()).error.code];
    }
    const wrong = await fetch('/api/v1/sdk/agents', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': 'forged' }, body });
    out.wrong = [wrong.status];
    const del = await fetch('/api/v1/session', { method: 'DELETE' });
    out.signOut = [del.status];
    const read = await fetch('/api/v1/sdk/agents');
    out.read = [read.status];
    return out;
  });
  assert.deepEqual(results['text/plain'], [403, 'forbidden']);
  assert.deepEqual(results['application/json'], [403, 'forbidden']);
  assert.deepEqual(results['application/x-www-form-urlencoded'], [403, 'forbidden']);
  assert.deepEqual(results.wrong, [403]);
  assert.deepEqual(results.signOut, [403], 'signing out needs the token too');
  assert.deepEqual(results.read, [200], 'reads need no token');
  assert.equal((await owner('GET', '/api/v1/sdk/agents?limit=100')).data.agents.length, 0, 'nothing was created');
  // Sign-in is refused from another origin.
  const cross = await fetch(server.baseUrl + '/api/v1/session', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'https://evil.example' }, body: JSON.stringify({ api_key: server.apiKey }),
  });
  assert.equal(cross.status, 403);
});

test('register an agent, run it, and see its execution with logs and the host-call timeline', async () => {
  await go('#/agents');
  await page.locator('#reg-name').fill('hello');
  await page.locator('#reg-code').fill('await thetazero.log("hi from the sandbox");\nreturn { hello: input.name };');
  await page.getByRole('button', { name: 'Register' }).click();
  await textMatches(page.locator('main h1'), /hello/);
  await page.locator('#run-input').fill('{"name": "Ada"}');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await textMatches(page.locator('#run-result'), /completed/);
  await textMatches(page.locator('#run-result'), /Ada/);
  await textMatches(page.locator('#executions'), /#1/);
  await shot('agent');
  await page.locator('#executions a', { hasText: '#1' }).click();
  await textMatches(page.locator('main h1'), /Execution #1/);
  await textMatches(page.locator('main'), /hi from the sandbox/);
  await textMatches(page.locator('.timeline'), /thetazero\.log/);
  await shot('execution');
});

test('a permission request raised with a second key lifts the badge, and approving it in the UI drops it', async () => {
  await go('#/overview');
  const badge = page.locator('#pending-badge');
  assert.equal(await badge.isHidden(), true);
  const asked = await second('POST', '/api/v1/sdk/permission-requests', {
    agent_id: 1, permissions: { max_api_calls_per_run: 100 }, justification: 'Needs more calls for the batch', timeout_ms: 120000,
  });
  assert.equal(asked.status, 201, JSON.stringify(asked.data));
  await until('badge shows 1', async () => (await badge.isVisible()) && (await badge.textContent()) === '1');
  await go('#/security/requests');
  const card = page.locator(`[data-request="${asked.data.request.id}"]`);
  await textMatches(card, /Needs more calls for the batch/);
  await textMatches(card, /author/);
  await textMatches(card, /max_api_calls_per_run/);
  await shot('permission-requests');
  await card.locator(`#exp-${asked.data.request.id}`).selectOption('3600000');
  await card.getByRole('button', { name: /^Approve/ }).click();
  await until('badge hidden', async () => badge.isHidden());
  const r = await owner('GET', `/api/v1/sdk/permission-requests/${asked.data.request.id}`);
  assert.equal(r.data.request.status, 'approved');
  assert.ok(r.data.request.grant_expires_at, 'approved with an expiry');
  // The agent's page shows the grant in force and what it widens.
  await go('#/agents/1');
  await textMatches(page.getByRole('region', { name: 'Grants' }), new RegExp(`#${asked.data.request.id}.*max_api_calls_per_run`));
  const row = page.locator('tr', { hasText: 'max_api_calls_per_run' });
  await textMatches(row, /max_api_calls_per_run\s*100\s*50/);
});

test('a call waiting mid-run is approved in the UI and the run finishes', async () => {
  const reg = await owner('POST', '/api/v1/sdk/agents', {
    name: 'asks', config: { approval_timeout_ms: 60000 },
    entry_code: 'const v = await thetazero.storage_get("greeting");\nreturn { got: v };',
  });
  assert.equal(reg.status, 201, JSON.stringify(reg.data));
  const run = second('POST', `/api/v1/sdk/agents/${reg.data.agent.id}/execute`, { input: {} });
  await go('#/security/requests');
  const waiting = page.locator('[data-request]', { hasText: 'A run is waiting' });
  await waiting.first().waitFor({ timeout: 20000 });
  await textMatches(waiting, /thetazero\.storage_get/);
  await shot('mid-run-request');
  await waiting.first().getByRole('button', { name: /^Approve/ }).click();
  const done = await run;
  assert.equal(done.status, 200, JSON.stringify(done.data));
  assert.equal(done.data.status, 'completed');
  assert.deepEqual(done.data.output, { got: null });

  // An HTTP call shows its method, URL with query, header names and a body
  // excerpt; denied with a reason, the call throws inside the run.
  const net = await owner('POST', '/api/v1/sdk/agents', {
    name: 'fetcher', permissions: ['network:outbound'],
    config: { allow_network: true, allowed_domains: ['api.example.com'], approval_timeout_ms: 60000, approval_calls: ['http_request'] },
    entry_code: 'try { await thetazero.http_request("https://other.example.net/data?q=forecast", "POST", {"X-Trace": "abc"}, "hello body"); } catch (e) { return { code: e.code }; } return { ok: true };',
  });
  assert.equal(net.status, 201, JSON.stringify(net.data));
  const netRun = second('POST', `/api/v1/sdk/agents/${net.data.agent.id}/execute`, { input: {} });
  const card = page.locator('[data-request]', { hasText: 'other.example.net' });
  await card.first().waitFor({ timeout: 20000 });
  await textMatches(card, /POST/);
  await textMatches(card, /https:\/\/other\.example\.net\/data\?q=forecast/);
  await textMatches(card, /x-trace/i);
  await textMatches(card, /hello body/);
  const id = await card.first().getAttribute('data-request');
  await card.first().locator(`#reason-${id}`).fill('Not on the allow-list');
  await card.first().getByRole('button', { name: /^Deny/ }).click();
  const denied = await netRun;
  assert.deepEqual(denied.data.output, { code: 'PERMISSION_DENIED' });
});

test('a running agent is killed from the UI with a typed reason and stops', async () => {
  const reg = await owner('POST', '/api/v1/sdk/agents', {
    name: 'spinner', config: { cpu_time_limit_ms: 120000 }, entry_code: 'for (;;) {}',
  });
  const id = reg.data.agent.id;
  const run = second('POST', `/api/v1/sdk/agents/${id}/execute`, { input: {} });
  await until('the run is running', async () => {
    const l = await owner('GET', `/api/v1/sdk/agents/${id}/executions`);
    return l.data.executions.some((x) => x.status === 'running');
  });
  await go(`#/agents/${id}`);
  await page.getByRole('button', { name: 'Kill…' }).click();
  const dlg = page.locator('dialog');
  await dlg.getByRole('button', { name: 'Kill agent' }).click();
  await textMatches(dlg.locator('.error'), /reason is required/);
  await dlg.locator('textarea').fill('Runaway loop seen in the dashboard');
  await dlg.locator('input').fill('wrong');
  await dlg.getByRole('button', { name: 'Kill agent' }).click();
  await textMatches(dlg.locator('.error'), /does not match/);
  await dlg.locator('input').fill('spinner');
  await shot('kill-dialog');
  await dlg.getByRole('button', { name: 'Kill agent' }).click();
  const done = await run;
  assert.equal(done.data.status, 'killed');
  await textMatches(page.locator('main h1'), /killed/);
  await textMatches(page.locator('#executions'), /killed/);
  assert.equal((await second('POST', `/api/v1/sdk/agents/${id}/execute`, {})).status, 409, 'a killed agent does not run');
  // Its status is set back to ready from the page.
  await page.locator('#agent-status').selectOption('ready');
  await page.getByRole('button', { name: 'Set status' }).click();
  await textMatches(page.locator('main h1'), /ready/);
  assert.equal((await owner('GET', `/api/v1/sdk/agents/${id}`)).data.agent.status, 'ready');
  const hist = await owner('GET', '/api/v1/sdk/audit?actionTypes=agent_kill_requested,agent_killed');
  assert.deepEqual(hist.data.events.filter((e) => e.agent_id === id).map((e) => e.action_type).sort(), ['agent_kill_requested', 'agent_killed']);
  await go('#/killswitch');
  await textMatches(page.locator('main'), /agent_killed/);
  await shot('killswitch');
});

test('create a key (secret shown once, with a copy button) and revoke it', async () => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.baseUrl });
  await go('#/settings/keys');
  await page.locator('#key-name').fill('reader');
  await page.getByLabel('agents:read').check();
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = (await page.locator('#new-secret').textContent()).trim();
  assert.match(secret, /^tzk_/);
  await page.getByRole('button', { name: 'Copy secret' }).click();
  await textMatches(page.locator('#key-msg'), /Copied/);
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  await shot('keys');
  const reader = client(server.baseUrl, secret);
  assert.equal((await reader('GET', '/api/v1/sdk/agents')).status, 200);
  await page.getByRole('button', { name: 'Revoke reader' }).click();
  await page.locator('dialog').getByRole('button', { name: 'Revoke' }).click();
  await textMatches(page.locator('#key-list'), /revoked/);
  assert.equal((await reader('GET', '/api/v1/sdk/agents')).status, 401);
  // Reloading the page never shows the secret again.
  await page.reload();
  await go('#/settings/keys');
  assert.ok(!(await page.content()).includes(secret));
});

test('what a key may not do is hidden and refused; its session ends when it is revoked: the next request is 401 and its stream closes', async () => {
  const made = await owner('POST', '/api/v1/keys', { name: 'watcher', scopes: ['agents:read', 'audit:read'] });
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await signIn(p, made.data.secret);
  // The key's scopes decide what is shown.
  assert.equal(await p.locator('#nav a[href="#/settings/keys"]').isVisible(), false);
  assert.equal(await p.locator('#nav a[href="#/killswitch"]').isVisible(), false);
  assert.equal(await p.locator('#nav a[href="#/audit"]').isVisible(), true);
  await go('#/agents/1', p);
  assert.equal(await p.locator('#run-input').count(), 0, 'no run form without agents:execute');
  assert.equal(await p.getByRole('button', { name: 'Kill…' }).count(), 0);
  // And the server refuses the rest anyway.
  const refused = await p.evaluate(async () => {
    const s = await (await fetch('/api/v1/session')).json();
    const r = await fetch('/api/v1/keys', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token }, body: '{"name":"x","scopes":["keys"]}' });
    return [r.status, (await r.json()).error.code];
  });
  assert.deepEqual(refused, [403, 'missing_scope']);
  // A stream opened with the session closes when the key is revoked.
  await p.evaluate(() => {
    window.__streamClosed = false;
    window.__streamOpen = false;
    fetch('/api/v1/sdk/audit/stream').then(async (r) => {
      window.__streamOpen = r.status === 200;
      const reader = r.body.getReader();
      for (;;) { const { done } = await reader.read(); if (done) break; }
      window.__streamClosed = true;
    }).catch(() => { window.__streamClosed = true; });
  });
  await until('stream open', () => p.evaluate(() => window.__streamOpen));
  await go('#/audit', p);
  assert.equal((await owner('DELETE', `/api/v1/keys/${made.data.key.id}`)).status, 200);
  await until('stream closed', () => p.evaluate(() => window.__streamClosed), 10000);
  assert.equal(await p.evaluate(async () => (await fetch('/api/v1/sdk/agents')).status), 401);
  await textMatches(p.locator('main'), /session has ended/i, 20000);
  await ctx.close();
});

test('the audit record is verified in the browser; a tampered proof and another key are rejected', async () => {
  await go('#/verify');
  await textMatches(page.locator('#trust-note'), /served by this same server/);
  await page.getByRole('button', { name: 'Pin this key' }).click();
  await page.locator('#pinned-fp').waitFor();
  const offered = (await owner('GET', '/api/v1/sdk/audit/key')).data.verifier_key;
  assert.equal(await page.evaluate(() => localStorage.getItem('thetazero.verifierKey')), offered);
  await until('a checkpoint covers record 1', async () => (await owner('GET', '/api/v1/sdk/audit/checkpoint')).data.size > 1);
  await page.locator('#record-id').fill('1');
  await page.getByRole('button', { name: 'Fetch and verify' }).click();
  const verdict = page.locator('#verdict');
  await verdict.waitFor();
  assert.equal(await verdict.getAttribute('data-ok'), 'true', await verdict.textContent());
  await textMatches(verdict, /Verified in this browser/);
  await textMatches(verdict, /inclusion proof/);
  await shot('verify');
  const proof = JSON.parse(await page.locator('#proof-json').inputValue());

  // Tampered: the leaf's bytes changed.
  const tampered = { ...proof, leaf_b64: Buffer.from(Buffer.from(proof.leaf_b64, 'base64').toString('utf8').replace(/"/, '"x')).toString('base64') };
  await page.locator('#proof-json').fill(JSON.stringify(tampered));
  await page.getByRole('button', { name: 'Verify this proof' }).click();
  await until('rejected', async () => (await verdict.getAttribute('data-ok')) === 'false');
  assert.equal(await verdict.getAttribute('data-code'), 'LEAF_HASH_MISMATCH');

  // Tampered: an inclusion path that does not lead to the root.
  const badPath = { ...proof, inclusion_proof: [...proof.inclusion_proof, Buffer.alloc(32).toString('base64')] };
  await page.locator('#proof-json').fill(JSON.stringify(badPath));
  await page.getByRole('button', { name: 'Verify this proof' }).click();
  await until('rejected', async () => (await verdict.getAttribute('data-ok')) === 'false' && (await verdict.getAttribute('data-code')) !== 'LEAF_HASH_MISMATCH');
  assert.equal(await verdict.getAttribute('data-code'), 'INCLUSION_PROOF_INVALID');
  await textMatches(verdict, /✓ passed: the leaf bytes hash.*✗ failed: the inclusion proof/s);

  // Signed by another key under the same name: not the pinned key.
  const name = offered.split('+')[0];
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const raw = Buffer.concat([Buffer.from([1]), publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)]);
  const keyId = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(name + '\n'), raw])).digest().subarray(0, 4);
  const resign = (note) => {
    const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
    const sig = crypto.sign(null, Buffer.from(text), privateKey);
    return `${text}\n\u2014 ${name} ${Buffer.concat([keyId, sig]).toString('base64')}\n`;
  };
  const forged = { ...proof, checkpoint: resign(proof.checkpoint) };
  if (forged.consistency_to_latest) forged.consistency_to_latest = { ...forged.consistency_to_latest, latest_checkpoint: resign(forged.consistency_to_latest.latest_checkpoint) };
  await page.locator('#proof-json').fill(JSON.stringify(forged));
  await page.getByRole('button', { name: 'Verify this proof' }).click();
  await until('rejected', async () => (await verdict.getAttribute('data-code')) === 'UNKNOWN_KEY');
  await shot('verify-rejected');

  // The untouched proof still verifies.
  await page.locator('#proof-json').fill(JSON.stringify(proof));
  await page.getByRole('button', { name: 'Verify this proof' }).click();
  await until('verified', async () => (await verdict.getAttribute('data-ok')) === 'true');

  // A server that offers another key than the pinned one raises an alarm.
  const other = `${name}+${keyId.toString('hex')}+${raw.toString('base64')}`;
  await page.evaluate((k) => localStorage.setItem('thetazero.verifierKey', k), other);
  await page.reload();
  await go('#/verify');
  await textMatches(page.locator('#key-alarm'), /different verifier key/);
  await textMatches(page.locator('#cp-verdict'), /UNKNOWN_KEY/);
  await shot('verify-alarm');
  await page.evaluate((k) => localStorage.setItem('thetazero.verifierKey', k), offered);
});

test('the live audit stream filters, highlights violations, and pauses and resumes without loss', async () => {
  await go('#/audit');
  await textMatches(page.locator('#stream-state'), /Live/);
  await owner('POST', '/api/v1/sdk/agents/1/execute', { input: { name: 'one' } });
  const list = page.locator('#events');
  await textMatches(list, /execution_completed/);
  await page.getByRole('button', { name: 'Pause' }).click();
  await textMatches(page.locator('#stream-state'), /Paused/);
  const before = await list.locator('li').count();
  await owner('POST', '/api/v1/sdk/agents/1/execute', { input: { name: 'two' } });
  // A refused call is a violation.
  const bad = await owner('POST', '/api/v1/sdk/agents', { name: 'nosy', entry_code: 'try { await thetazero.storage_get("x"); } catch (e) {} return 1;' });
  await owner('POST', `/api/v1/sdk/agents/${bad.data.agent.id}/execute`, {});
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await list.locator('li').count(), before, 'nothing is shown while paused');
  await page.getByRole('button', { name: 'Resume' }).click();
  await textMatches(page.locator('#stream-state'), /^Live \(resumed/);
  await until('the missed events arrive', async () => (await list.locator('li').count()) > before + 2);
  const leaves = await list.locator('li').evaluateAll((els) => els.map((e) => Number(e.dataset.leaf)));
  assert.deepEqual([...leaves].sort((a, b) => b - a), leaves, 'newest first, in order');
  assert.equal(new Set(leaves).size, leaves.length, 'no duplicate');
  for (let i = 1; i < leaves.length; i++) assert.equal(leaves[i - 1] - leaves[i], 1, 'no gap');
  await list.locator('li.violation').first().waitFor();
  // The agent filter is applied by the server.
  await page.locator('#f-agent').fill(String(bad.data.agent.id));
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await textMatches(page.locator('#stream-state'), /^Live/);
  await owner('POST', '/api/v1/sdk/agents/1/execute', {});
  await owner('POST', `/api/v1/sdk/agents/${bad.data.agent.id}/execute`, {});
  await until('the agent\'s events', async () => (await list.locator('li').count()) > 0);
  await textMatches(list, new RegExp(`agent ${bad.data.agent.id}`));
  assert.ok(!/agent 1 /.test(await list.textContent()), 'no other agent');
  await page.locator('#f-agent').fill('');
  await page.getByLabel('Violations only').check();
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await textMatches(page.locator('#stream-state'), /^Live/);
  await owner('POST', `/api/v1/sdk/agents/${bad.data.agent.id}/execute`, {});
  await list.locator('li.violation').first().waitFor();
  assert.equal(await list.locator('li:not(.violation)').count(), 0);
  await shot('live-audit');
});

test('the kill switch halts and clears the account, with state and history', async () => {
  await go('#/killswitch');
  // The deployment's first owner may halt the whole deployment; another
  // account's owner may not, and is not offered it. The page draws the
  // form once it has read the halt state: wait for it, not for the heading.
  await page.locator('#halt-scope').waitFor();
  assert.deepEqual(await page.locator('#halt-scope option').evaluateAll((os) => os.map((o) => o.value)), ['account', 'deployment']);
  const team = await owner('POST', '/api/v1/accounts', { name: 'team b' });
  assert.equal(team.status, 201, JSON.stringify(team.data));
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await signIn(p, team.data.secret);
  await go('#/killswitch', p);
  await p.locator('#halt-scope').waitFor();
  assert.deepEqual(await p.locator('#halt-scope option').evaluateAll((os) => os.map((o) => o.value)), ['account']);
  await ctx.close();
  await page.locator('#halt-reason').fill('Maintenance window');
  await page.getByRole('button', { name: 'Halt everything' }).click();
  await textMatches(page.locator('#halt-state'), /halted.*Maintenance window/);
  assert.equal((await second('POST', '/api/v1/sdk/agents/1/execute', {})).status, 503);
  await textMatches(page.locator('main'), /global_halt_set/);
  await page.locator('#halt-reason').fill('Done');
  await page.getByRole('button', { name: 'Clear the halt' }).click();
  await textMatches(page.locator('#halt-state'), /run normally/);
  assert.equal((await second('POST', '/api/v1/sdk/agents/1/execute', {})).status, 200);
});

test('compliance: status per framework, the report and an evidence package downloaded', async () => {
  await go('#/compliance');
  const fw = page.locator('[data-framework="eu_ai_act"]');
  await textMatches(fw, /EU Artificial Intelligence Act/);
  await textMatches(fw, /Satisfied\s*\d+/);
  await textMatches(page.locator('main'), /not a certification/);
  const [report] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download report (JSON)' }).click()]);
  const json = JSON.parse(fs.readFileSync(await report.path(), 'utf8'));
  assert.ok(Array.isArray(json.frameworks) && json.frameworks.length > 0);
  const [pkg] = await Promise.all([page.waitForEvent('download'), fw.getByRole('button', { name: /Evidence package/ }).click()]);
  assert.match(pkg.suggestedFilename(), /\.zip$/);
  const zip = fs.readFileSync(await pkg.path());
  assert.equal(zip.subarray(0, 2).toString(), 'PK');
  await textMatches(page.locator('#compliance-msg'), /sha256 [0-9a-f]{64}/);
  const sha = (await page.locator('#compliance-msg').textContent()).match(/sha256 ([0-9a-f]{64})/)[1];
  assert.equal(crypto.createHash('sha256').update(zip).digest('hex'), sha, 'the digest the server announced');
  const events = await owner('GET', '/api/v1/sdk/audit?actionTypes=compliance_package_generated');
  assert.ok(events.data.events.some((e) => e.description.includes(sha)), 'its generation is in the audit log');
  await shot('compliance');
});

test('overview charts are drawn', async () => {
  await go('#/overview');
  await page.locator('svg.chart').first().waitFor();
  assert.ok(await page.locator('svg.chart rect').count() > 0, 'bars');
  await textMatches(page.locator('#stat-runs'), /[1-9]/);
  await shot('overview');
});

test('keyboard alone: sign in, move between pages, and do one thing on each', async () => {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await p.goto(server.baseUrl + '/');
  await p.locator('#api-key').waitFor();
  await p.keyboard.type(server.apiKey); // the key field has focus
  await p.keyboard.press('Enter');
  await p.locator('#nav').waitFor();
  const tabTo = async (pred, max = 80) => {
    for (let i = 0; i < max; i++) {
      await p.keyboard.press('Tab');
      if (await p.evaluate(pred)) return;
    }
    throw new Error('could not reach it by Tab: ' + pred);
  };
  const navTo = async (href) => {
    await p.evaluate(() => document.activeElement && document.activeElement.blur());
    await tabTo(new Function(`return document.activeElement && document.activeElement.getAttribute('href') === '${href}'`));
    await p.keyboard.press('Enter');
    // The new page, not the one before it.
    await until(`page ${href}`, () => p.evaluate((h) => location.hash === h && !!document.querySelector('main h1') && document.title !== '', href));
    await p.waitForLoadState('networkidle').catch(() => {});
  };
  // Agents: register by keyboard.
  await navTo('#/agents');
  await tabTo(() => document.activeElement.id === 'reg-name');
  await p.keyboard.type('typed');
  await tabTo(() => document.activeElement.textContent === 'Register');
  await p.keyboard.press('Enter');
  await textMatches(p.locator('main h1'), /typed/);
  // Agent page: run by keyboard.
  await tabTo(() => document.activeElement.textContent === 'Run');
  await p.keyboard.press('Enter');
  await textMatches(p.locator('#run-result'), /completed/);
  // Execution: open it from the result by keyboard.
  await tabTo(() => /^#\/agents\/\d+\/executions\/\d+$/.test(document.activeElement.getAttribute('href') || ''));
  await p.keyboard.press('Enter');
  await textMatches(p.locator('main h1'), /Execution #/);
  // Live audit: pause by keyboard.
  await navTo('#/audit');
  await tabTo(() => document.activeElement.id === 'pause');
  await p.keyboard.press('Enter');
  await textMatches(p.locator('#stream-state'), /Paused/);
  // Permission requests: deny by keyboard.
  const asked = await second('POST', '/api/v1/sdk/permission-requests', { agent_id: 1, permissions: { memory_limit_mb: 64 }, justification: 'keyboard', timeout_ms: 60000 });
  await navTo('#/security/requests');
  await p.locator(`[data-request="${asked.data.request.id}"]`).waitFor();
  await tabTo(new Function(`return document.activeElement.getAttribute('aria-label') === 'Deny request #${asked.data.request.id}'`));
  await p.keyboard.press('Enter');
  await until('denied', async () => (await owner('GET', `/api/v1/sdk/permission-requests/${asked.data.request.id}`)).data.request.status === 'denied');
  // Kill switch: open the kill dialog and leave it with Escape.
  await navTo('#/killswitch');
  await tabTo(() => (document.activeElement.getAttribute('aria-label') || '').startsWith('Kill '));
  await p.keyboard.press('Enter');
  await p.locator('dialog[open]').waitFor();
  await p.keyboard.press('Escape');
  await until('dialog closed', async () => (await p.locator('dialog[open]').count()) === 0);
  // API keys: create one by keyboard.
  await navTo('#/settings/keys');
  await tabTo(() => document.activeElement.id === 'key-name');
  await p.keyboard.type('kbd');
  assert.equal(await p.locator('#key-name').inputValue(), 'kbd');
  await tabTo(() => document.activeElement.id === 'scope-agents-read');
  await p.keyboard.press('Space');
  assert.equal(await p.locator('#scope-agents-read').isChecked(), true);
  await tabTo(() => document.activeElement.textContent === 'Create key');
  await p.keyboard.press('Enter');
  await textMatches(p.locator('#key-msg'), /tzk_/);
  // Verification: fetch and verify by keyboard.
  await navTo('#/verify');
  await tabTo(() => document.activeElement.id === 'pin-offered');
  await p.keyboard.press('Enter');
  await p.locator('#pinned-fp').waitFor();
  await tabTo(() => document.activeElement.id === 'record-id');
  await p.keyboard.type('1');
  await p.keyboard.press('Enter');
  await p.locator('#verdict').waitFor();
  // Compliance: download the report by keyboard.
  await navTo('#/compliance');
  await p.locator('[data-framework]').first().waitFor();
  await tabTo(() => document.activeElement.textContent === 'Download report (JSON)');
  const [report] = await Promise.all([p.waitForEvent('download'), p.keyboard.press('Enter')]);
  assert.equal(report.suggestedFilename(), 'compliance-report.json');
  // Overview.
  await navTo('#/overview');
  await p.locator('svg.chart').first().waitFor();
  await ctx.close();
});

test('every page passes axe-core (no serious or critical violation) and fits 360 px without sideways scrolling', async () => {
  for (const width of [1280, 360]) {
    await page.setViewportSize({ width, height: 800 });
    for (const hash of PAGES) {
      await go(hash);
      await page.evaluate(AXE);
      const found = await page.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ['violations'] });
        return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
      });
      assert.deepEqual(found, [], `${hash} at ${width}px`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${hash} scrolls sideways by ${overflow}px at ${width}px`);
      if (width === 360) await shot(`narrow-${hash.replace(/[#/]+/g, '-').replace(/^-|-$/g, '')}`);
    }
  }
  // The sign-in page too.
  const ctx = await browser.newContext({ viewport: { width: 360, height: 800 } });
  const p = await ctx.newPage();
  await p.goto(server.baseUrl + '/');
  await p.locator('#api-key').waitFor();
  await p.evaluate(AXE);
  const found = await p.evaluate(async () => (await window.axe.run(document)).violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id));
  assert.deepEqual(found, []);
  await ctx.close();
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('signing out ends the session on the server', async () => {
  const cookie = (await context.cookies()).find((x) => x.name === 'tz_session').value;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#api-key').waitFor();
  const res = await fetch(server.baseUrl + '/api/v1/sdk/agents', { headers: { Cookie: `tz_session=${cookie}` } });
  assert.equal(res.status, 401);
  assert.deepEqual(foreign, [], 'the page fetched nothing from elsewhere');
});
