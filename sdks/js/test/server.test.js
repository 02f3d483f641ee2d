'use strict';
// The SDK against a real `thetazero serve` (see _server.js for the binary).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { startServer, SDK_DIR } = require('./_server');
const { SecureAgent, SDKError, verify } = require('..');

const HELLO = `await thetazero.log("Hello from the sandbox!");
await thetazero.write_result({ message: "Hello, " + (input.name || "world") + "!" });`;

let server;
const agentOpts = (extra = {}) => ({ apiKey: server.apiKey, baseUrl: server.baseUrl, ...extra });

before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

test('configure maps limits, sandbox and permissions onto the REST config', async () => {
  const agent = new SecureAgent(agentOpts({
    name: 'limits-agent',
    entryCode: HELLO,
    permissions: SecureAgent.permissions.CODER,
    limits: { maxMemoryMb: 512, maxExecutionTimeSec: 300, maxApiCallsPerRun: 20, maxApiCallsPerMinute: 30, allowNetwork: true, allowedDomains: ['api.example.com'] },
    sandbox: 'STANDARD',
    compliance: ['soc2'],
  }));
  const rec = await agent.configure();
  assert.equal(typeof agent.agentId, 'number');
  assert.equal(rec.name, 'limits-agent');
  assert.deepEqual(rec.permissions, [...SecureAgent.permissions.CODER]);
  assert.equal(rec.config.memory_limit_mb, 512);
  assert.equal(rec.config.cpu_time_limit_ms, 300_000);
  assert.equal(rec.config.max_api_calls_per_run, 20);
  assert.equal(rec.config.max_api_calls_per_minute, 30);
  assert.equal(rec.config.allow_network, true);
  assert.deepEqual(rec.config.allowed_domains, ['api.example.com']);
  // What it runs with now, beside what was written: no grant yet.
  assert.equal(rec.effective_config.memory_limit_mb, 512);
  assert.deepEqual(rec.effective_config.grants, []);
  assert.equal(rec.config.sandbox_template, 'STANDARD');
  assert.deepEqual(agent.compliance, ['soc2']);

  // Upsert by name keeps the id.
  const again = new SecureAgent(agentOpts({ name: 'limits-agent', entryCode: HELLO }));
  assert.equal((await again.configure()).id, agent.agentId);
});

test('run, executions, getExecution, getAgent, listAgents, update, delete', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'hello-js', entryCode: HELLO, description: 'hello' }));
  await agent.configure();
  const result = await agent.run({ name: 'Alice' });
  assert.equal(result.status, 'completed');
  assert.deepEqual(result.output, { message: 'Hello, Alice!' });
  assert.equal(typeof result.executionId, 'number');
  assert.equal(typeof result.durationMs, 'number');
  assert.equal(typeof result.resourceUsage.cpu_ms, 'number');
  assert.equal(typeof result.leafIndex, 'number');
  assert.equal(typeof result.leafHash, 'string');
  assert.equal(result.auditTrailUrl, `${server.baseUrl}/api/v1/sdk/audit?executionId=${result.executionId}`);
  assert.ok(result.hostCallAudit.some((c) => c.fn === 'write_result' && c.allowed));

  const list = await agent.executions();
  assert.equal(list[0].executionId, result.executionId);
  const one = await agent.getExecution(result.executionId);
  assert.deepEqual(one.output, { message: 'Hello, Alice!' });
  assert.ok(one.logs.length >= 1);

  assert.equal((await agent.getAgent()).description, 'hello');
  const all = await agent.listAgents();
  assert.ok(all.agents.some((a) => a.id === agent.agentId));
  const updated = await agent.update({ entry_code: 'return { v: 2 };', version: '2.0.0' });
  assert.equal(updated.version, '2.0.0');
  assert.deepEqual((await agent.run()).output, { v: 2 });

  await agent.delete();
  assert.equal(agent.agentId, null);
  await assert.rejects(() => agent.getAgent(), { code: 'NOT_CONFIGURED' });
});

test('errors carry the server code, message, request id and status', async () => {
  const bad = new SecureAgent(agentOpts({ apiKey: 'tzk_not_a_real_key', name: 'x', entryCode: HELLO }));
  await assert.rejects(() => bad.configure(), (e) => {
    assert.ok(e instanceof SDKError);
    assert.equal(e.code, 'unauthorized');
    assert.equal(e.status, 401);
    assert.match(e.requestId, /^req_/);
    assert.ok(e.message.length > 0);
    return true;
  });
  const ghost = new SecureAgent(agentOpts({ agentId: 999999 }));
  await assert.rejects(() => ghost.getAgent(), { code: 'not_found', status: 404 });
  const tooBig = new SecureAgent(agentOpts({ name: 'too-big', entryCode: HELLO, limits: { maxMemoryMb: 100000 } }));
  await assert.rejects(() => tooBig.configure(), { code: 'limit_above_ceiling', status: 400 });
  assert.throws(() => new SecureAgent(agentOpts({ limits: { maxMemory: 1 } })), { code: 'INVALID_OPTION' });
  const down = new SecureAgent({ apiKey: 'tzk_x', baseUrl: 'http://127.0.0.1:9' });
  await assert.rejects(() => down.listAgents(), { code: 'NETWORK_ERROR' });
});

test('a failed run rejects with an SDKError that carries the execution', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'thrower', entryCode: 'throw new TypeError("boom");' }));
  await agent.configure();
  await assert.rejects(() => agent.run({}), (e) => {
    assert.ok(e instanceof SDKError);
    assert.equal(e.code, 'EXECUTION_FAILED');
    assert.match(e.message, /TypeError: boom/);
    assert.equal(e.execution.status, 'failed');
    return true;
  });
});

test('a run past its deadline rejects with EXECUTION_TIMED_OUT', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'looper', entryCode: 'while (true) {}', limits: { maxExecutionTimeSec: 0.5 } }));
  assert.equal((await agent.configure()).config.cpu_time_limit_ms, 500);
  await assert.rejects(() => agent.run(), (e) => {
    assert.equal(e.code, 'EXECUTION_TIMED_OUT');
    assert.match(e.message, /^execution \d+ timed_out: LimitExceeded: deadline of 500 ms reached$/);
    assert.equal(e.execution.limit, 'cpu_time');
    return true;
  });
});

test('the built-in task agent surfaces the missing inference host call as an SDKError', async () => {
  const agent = new SecureAgent(agentOpts({ permissions: SecureAgent.permissions.CODER }));
  await agent.configure();
  await assert.rejects(() => agent.run({ task: 'say hi', data: { a: 1 } }), (e) => {
    assert.ok(e instanceof SDKError);
    // The code the host call failed with, which the agent let escape.
    assert.equal(e.code, 'HOST_REFUSED');
    // The server's own words: no inference provider is configured.
    assert.match(e.message, /^execution \d+ failed: Error: .*inference/);
    assert.deepEqual(e.execution.hostCallAudit.map((c) => c.fn), ['inference']);
    return true;
  });
});

test('the spec Quick Start runs unchanged and ends in a clear inference error', async () => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(SDK_DIR, 'examples/quickstart.js')], {
    env: { ...process.env, THETAZERO_API_KEY: server.apiKey, THETAZERO_BASE_URL: server.baseUrl },
  }).catch((e) => e);
  assert.equal(stdout, '');
  assert.match(stderr, /^SDKError \[HOST_REFUSED\]: execution \d+ failed: Error: .*inference/);
});

test('getAuditLog applies the spec filters; exportAuditLog returns csv and bundle', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'audited', entryCode: HELLO }));
  await agent.configure();
  const { executionId } = await agent.run({ name: 'Bob' });
  const all = await agent.getAuditLog({ executionId });
  assert.ok(all.total >= 2);
  assert.equal(typeof all.anchored, 'boolean');
  assert.ok(all.events.every((e) => e.execution_id === executionId));
  const completed = await agent.getAuditLog({
    from: '2020-01-01', to: new Date(Date.now() + 86_400_000), actionTypes: ['execution_completed'],
    violationsOnly: false, limit: 200, agentId: agent.agentId,
  });
  assert.ok(completed.events.length >= 1);
  assert.ok(completed.events.every((e) => e.action_type === 'execution_completed'));
  assert.equal((await agent.getAuditLog({ limit: 1 })).events.length, 1);
  assert.equal((await agent.getAuditLog({ violationsOnly: true, executionId })).events.length, 0);
  await assert.rejects(() => agent.getAuditLog({ limit: 0 }), { code: 'invalid_request' });
  await assert.rejects(() => agent.getAuditLog({ nope: 1 }), { code: 'INVALID_OPTION' });

  const csv = await agent.exportAuditLog('csv', { from: '2020-01-01', to: '2099-12-31' });
  assert.match(csv, /^leaf_index,leaf_hash,/);
  assert.match(csv, /execution_completed/);
  const bundle = await agent.exportAuditLog('bundle');
  assert.ok(bundle.trim().split('\n').every((l) => JSON.parse(l)));
});

// A fetch that lets a test rewrite the server's proof JSON on its way in.
function tamperingFetch(edit) {
  return async (url, init) => {
    const res = await fetch(url, init);
    if (!String(url).includes('/proof')) return res;
    const body = await res.json();
    edit(body);
    return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
  };
}

function otherKeySignature(note) {
  // Re-sign the checkpoint body with a fresh key under the same name.
  const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
  const name = /\n\u2014 (\S+) /.exec(note)[1];
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const keyId = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(name + '\n'), Buffer.from([1]), pub])).digest().subarray(0, 4);
  const sig = crypto.sign(null, Buffer.from(text), privateKey);
  return `${text}\n\u2014 ${name} ${Buffer.concat([keyId, sig]).toString('base64')}\n`;
}

test('verifyAuditRecord accepts the real proof and rejects tampered ones', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'verified', entryCode: HELLO }));
  await agent.configure();
  const { executionId } = await agent.run({ name: 'Carol' });
  const [event] = (await agent.getAuditLog({ executionId, actionTypes: ['execution_completed'] })).events;

  const good = await agent.verifyAuditRecord(event.id);
  assert.equal(good.chain_valid, true, JSON.stringify(good.failure));
  assert.equal(good.record_id, event.id);
  assert.equal(good.leaf_index, event.leaf_index);
  assert.ok('anchor_tx_hash' in good);
  assert.ok(!Number.isNaN(Date.parse(good.verified_at)));
  assert.match(good.leaf, /"type":"tz\.audit\.v1"/);
  assert.ok(agent.checkpoints.size === 1);

  // The key the client pinned is the server's published one.
  const keyRes = await (await fetch(`${server.baseUrl}/api/v1/sdk/audit/key`)).json();
  assert.equal(await agent.getVerifierKey(), keyRes.verifier_key);

  const cases = {
    LEAF_HASH_MISMATCH: (p) => { p.leaf_b64 = Buffer.from(Buffer.from(p.leaf_b64, 'base64').toString().replace('execution_completed', 'execution_started__')).toString('base64'); },
    INCLUSION_PROOF_INVALID: (p) => {
      if (p.inclusion_proof.length) p.inclusion_proof[0] = Buffer.alloc(32).toString('base64');
      else p.leaf_index += 1; // a one-leaf tree has no path: move the leaf instead
    },
    BAD_SIGNATURE: (p) => { p.checkpoint = p.checkpoint.replace(/\n(\d+)\n/, (_, n) => `\n${Number(n) + 1}\n`); },
    UNKNOWN_KEY: (p) => { p.checkpoint = otherKeySignature(p.checkpoint); },
    ORIGIN_MISMATCH: (p) => { p.log_origin += 'x'; },
    MALFORMED: (p) => { p.leaf_hash = 'not base64!'; },
  };
  for (const [code, edit] of Object.entries(cases)) {
    const a = new SecureAgent(agentOpts({ fetch: tamperingFetch(edit), verifierKey: keyRes.verifier_key }));
    const r = await a.verifyAuditRecord(event.id);
    assert.equal(r.chain_valid, false, code);
    assert.equal(r.failure.code, code, `${code}: ${r.failure.message}`);
    assert.equal(r.server_chain_valid, true); // the server's claim is not what decides
  }
  // Only an inclusion proof that leads to the root is accepted even when the
  // server says chain_valid: true.
  const liar = new SecureAgent(agentOpts({ fetch: tamperingFetch((p) => { p.inclusion_proof.push(Buffer.alloc(32).toString('base64')); p.chain_valid = true; }) }));
  assert.equal((await liar.verifyAuditRecord(event.id)).chain_valid, false);

  // A pinned key that is not the server's rejects every checkpoint.
  const { publicKey } = crypto.generateKeyPairSync('ed25519');
  const raw = Buffer.concat([Buffer.from([1]), publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)]);
  const name = keyRes.key_name;
  const id = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(name + '\n'), raw])).digest().subarray(0, 4).toString('hex');
  const pinnedOther = new SecureAgent(agentOpts({ verifierKey: `${name}+${id}+${raw.toString('base64')}` }));
  const r = await pinnedOther.verifyAuditRecord(event.id);
  assert.equal(r.chain_valid, false);
  assert.equal(r.failure.code, 'UNKNOWN_KEY');
});

test('verifyAuditRecord requires consistency with the largest checkpoint seen', async () => {
  const urls = [];
  const recording = (url, init) => { urls.push(String(url)); return fetch(url, init); };
  const agent = new SecureAgent(agentOpts({ name: 'consistent', entryCode: HELLO, fetch: recording }));
  await agent.configure();
  const first = await agent.run({ name: 'Dan' });
  const [e1] = (await agent.getAuditLog({ executionId: first.executionId, actionTypes: ['execution_completed'] })).events;
  assert.equal((await agent.verifyAuditRecord(e1.id)).chain_valid, true);
  const [origin, seen1] = [...agent.checkpoints][0];

  // The log grows; the next proof is against a larger checkpoint, which the
  // client links to the one it remembered with a consistency proof.
  for (let i = 0; i < 3; i++) await agent.run({ name: `n${i}` });
  const [e2] = (await agent.getAuditLog({ actionTypes: ['execution_completed'], agentId: agent.agentId, limit: 1000 })).events.slice(-1);
  const second = await agent.verifyAuditRecord(e2.id);
  assert.equal(second.chain_valid, true, JSON.stringify(second.failure));
  assert.ok(agent.checkpoints.get(origin).size > seen1.size);
  assert.ok(urls.some((u) => u.includes(`/api/v1/sdk/audit/consistency?from=${seen1.size}&to=`)), 'fetched a consistency proof');
  // Verifying the older record again still works against the larger memory.
  assert.equal((await agent.verifyAuditRecord(e1.id)).chain_valid, true);

  // A client that remembers a different root at some size sees a fork.
  const size = agent.checkpoints.get(origin).size;
  const forked = new SecureAgent(agentOpts({ checkpointStore: new Map([[origin, { size, root: Buffer.alloc(32, 9).toString('base64') }]]) }));
  const r = await forked.verifyAuditRecord(e1.id);
  assert.equal(r.chain_valid, false);
  assert.equal(r.failure.code, 'FORK');
  const forkedSmaller = new SecureAgent(agentOpts({ checkpointStore: new Map([[origin, { size: 2, root: Buffer.alloc(32, 9).toString('base64') }]]) }));
  assert.equal((await forkedSmaller.verifyAuditRecord(e2.id)).failure.code, 'FORK');
  // A client that saw a larger log than the server can now prove: truncated.
  const truncated = new SecureAgent(agentOpts({ checkpointStore: new Map([[origin, { size: 100000, root: Buffer.alloc(32, 9).toString('base64') }]]) }));
  const t = await truncated.verifyAuditRecord(e2.id);
  assert.equal(t.chain_valid, false);
  assert.equal(t.failure.code, 'FORK');
  assert.match(t.failure.message, /cannot prove consistency/);
});

test('verifyExecution returns the signed receipt, checked locally', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'receipt', entryCode: HELLO }));
  await agent.configure();
  const { executionId } = await agent.run({ name: 'Eve' });
  const proof = await agent.verifyExecution(executionId);
  assert.equal(typeof proof.tee_mode, 'string');
  assert.match(proof.attestation_id, /^[0-9a-f]{64}$/);
  assert.equal(typeof proof.chain_valid, 'boolean');
  assert.equal(typeof proof.receipt, 'string');
  assert.equal(proof.receipt_verified, true, JSON.stringify(proof.failure));
  await assert.rejects(() => agent.verifyExecution(987654), { code: 'not_found' });
});

test('stop kills the agent: its running execution ends and new runs are refused', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'killable', entryCode: 'while (true) {}', limits: { maxExecutionTimeSec: 30 } }));
  await agent.configure();
  const running = agent.run().then(() => null, (e) => e);
  for (let i = 0; i < 200 && (await agent.executions({ status: 'running' })).length === 0; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  const killed = await agent.stop('Suspicious output detected — halting for review');
  assert.equal(killed.status, 'killed');
  assert.equal(killed.agent_id, agent.agentId);
  assert.equal(killed.terminated, 1);
  assert.equal(killed.confirmed, true);
  const err = await running;
  assert.ok(err instanceof SDKError);
  assert.equal(err.code, 'EXECUTION_KILLED');
  assert.ok(err.execution.durationMs < 30_000);
  await assert.rejects(() => agent.run(), { name: 'SDKError', code: 'agent_killed', status: 409 });
  const { events } = await agent.getAuditLog({ agentId: agent.agentId, actionTypes: ['agent_kill_requested', 'agent_killed'] });
  assert.deepEqual([...new Set(events.map((e) => e.action_type))].sort(), ['agent_kill_requested', 'agent_killed']);
  await assert.rejects(() => agent.stop(''), { code: 'invalid_request' });

  // The owner key holds the killswitch scope, so it may set the agent ready again.
  await agent.update({ status: 'ready', entry_code: 'return 1;' });
  assert.equal((await agent.run()).output, 1);
});

test('setGlobalHalt refuses new runs until cleared', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'halted', entryCode: HELLO }));
  await agent.configure();
  try {
    const h = await agent.setGlobalHalt(true, 'Emergency maintenance');
    assert.equal(h.halted, true);
    assert.equal(h.scope, 'account');
    const now = await agent.getGlobalHalt();
    assert.equal(now.halted, true);
    assert.equal(now.reason, 'Emergency maintenance');
    await assert.rejects(() => agent.run({}), { code: 'global_halt', status: 503 });
  } finally {
    assert.equal((await agent.setGlobalHalt(false, 'maintenance over')).halted, false);
  }
  assert.deepEqual((await agent.run({ name: 'Zed' })).output, { message: 'Hello, Zed!' });
});

test('streamAuditLog delivers live events and resumes after the server ends the stream', async () => {
  const agent = new SecureAgent(agentOpts({ name: 'streamed', entryCode: HELLO }));
  await agent.configure();
  const events = [];
  let check = () => {};
  const waitFor = (pred, what) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} in ${JSON.stringify(events.map(([t]) => t))}`)), 15_000);
    check = () => { if (pred()) { clearTimeout(timer); check = () => {}; resolve(); } };
    check();
  });
  const completed = (id) => () => events.some(([t, d]) => t === 'audit' && d.execution_id === id && d.action_type === 'execution_completed');
  const stream = agent.streamAuditLog({ agentId: agent.agentId }, (type, data) => { events.push([type, data]); check(); });
  try {
    await waitFor(() => events.some(([t]) => t === 'connected'), 'connected');
    const first = await agent.run({ name: 'S1' });
    await waitFor(completed(first.executionId), 'first execution');
    // The test server ends every stream after 2 s with `timeout`; the
    // client reconnects and resumes where it stopped.
    await waitFor(() => events.filter(([t]) => t === 'connected').length >= 2, 'reconnect');
    const second = await agent.run({ name: 'S2' });
    await waitFor(completed(second.executionId), 'second execution');
  } finally {
    stream.close();
  }
  await stream.done;
  const audits = events.filter(([t]) => t === 'audit').map(([, d]) => d);
  const idx = audits.map((d) => d.leaf_index);
  assert.deepEqual(idx, [...new Set(idx)].sort((a, b) => a - b), 'in order, no duplicates');
  assert.ok(audits.every((d) => d.agent_id === agent.agentId));
  assert.ok(audits.some((d) => d.action_type === 'execution_started'));
  for (const k of ['id', 'leaf_index', 'leaf_hash', 'action_type', 'action_category', 'description', 'is_violation']) assert.ok(k in audits[0], k);
  assert.ok(events.some(([t]) => t === 'timeout'));
  assert.ok(events.some(([t]) => t === 'keepalive'));
  assert.ok(!events.some(([t]) => t === 'error'));
  // Streamed checkpoints are signed by the key the client pins.
  const key = await verify.parseVerifierKey(await agent.getVerifierKey());
  const cps = events.filter(([t]) => t === 'checkpoint').map(([, d]) => d);
  assert.ok(cps.length >= 1);
  for (const c of cps) assert.equal((await verify.openCheckpoint(c.note, key)).size, c.size);

  // `after` replays from the log.
  const replay = [];
  const again = agent.streamAuditLog({ agentId: agent.agentId, after: idx[0] }, (type, data) => { replay.push([type, data]); check(); });
  try {
    await waitFor(() => replay.filter(([t]) => t === 'audit').length >= idx.length - 1, 'replay');
  } finally {
    again.close();
  }
  assert.deepEqual(replay.filter(([t]) => t === 'audit').map(([, d]) => d.leaf_index).slice(0, idx.length - 1), idx.slice(1));
});

// requestPermission waits for a human's decision, made here by the owner key
// (the key that asks may not decide its own request).
test('requestPermission resolves on approval and rejects on denial and expiry', async () => {
  const owner = { Authorization: `Bearer ${server.apiKey}`, 'Content-Type': 'application/json' };
  const keyRes = await fetch(`${server.baseUrl}/api/v1/keys`, {
    method: 'POST', headers: owner,
    body: JSON.stringify({ name: 'author', scopes: ['agents:read', 'agents:write', 'agents:execute'] }),
  });
  const author = (await keyRes.json()).secret;
  const agent = new SecureAgent(agentOpts({ apiKey: author, name: 'asker', entryCode: HELLO }));
  await agent.configure();
  const decideNext = async (verb, body) => {
    for (let i = 0; i < 500; i++) {
      const list = await (await fetch(`${server.baseUrl}/api/sdk/permission-requests?status=pending`, { headers: owner })).json();
      const pending = list.requests.find((r) => r.agent_id === agent.agentId);
      if (pending) {
        const res = await fetch(`${server.baseUrl}/api/sdk/permission-requests/${pending.id}/${verb}`, { method: 'POST', headers: owner, body: JSON.stringify(body) });
        assert.equal(res.status, 200);
        return pending.id;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the request never appeared');
  };
  const ask = (timeoutMs) => agent.requestPermission({
    permissions: { allow_network: true, allow_external_apis: true, max_api_calls_per_run: 500 },
    justification: 'Needs to call OpenWeatherMap for forecast data',
    timeoutMs,
    pollIntervalMs: 50,
  });
  const [approved] = await Promise.all([ask(10_000), decideNext('approve', { reason: 'ok' })]);
  assert.equal(approved.status, 'approved');
  assert.equal(approved.permissions.max_api_calls_per_run, 500);
  await assert.rejects(
    () => Promise.all([ask(10_000), decideNext('deny', { reason: 'no' })]),
    { name: 'SDKError', code: 'PERMISSION_DENIED' },
  );
  // Nobody decides: the server expires it, or the client's own deadline passes.
  await assert.rejects(() => ask(300), (e) => e.name === 'SDKError' && ['PERMISSION_EXPIRED', 'PERMISSION_TIMEOUT'].includes(e.code));
});
