'use strict';
// The spec's kill-switch snippets, verbatim but for the base URL, against a
// real `thetazero serve`. `fetch` with a string body declares
// `text/plain;charset=UTF-8`; the server must read it as JSON.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./_server');

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

async function api(method, path, body) {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${server.apiKey}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

test("the spec's per-agent kill snippet kills the agent", async () => {
  const created = await api('POST', '/api/v1/sdk/agents', { name: 'snippet-target', entry_code: 'return 1' });
  assert.ok(created.status === 200 || created.status === 201, JSON.stringify(created.body));
  const agentId = created.body.agent.id;
  const apiKey = server.apiKey;
  const baseUrl = server.baseUrl;

  const res = await fetch(`${baseUrl}/api/sdk/agents/${agentId}/kill`, { method: 'POST', headers: { 'Authorization': `Bearer ${apiKey}` }, body: JSON.stringify({ reason: 'Policy violation' }), });

  assert.equal(res.status, 200, await res.clone().text());
  const agent = await api('GET', `/api/v1/sdk/agents/${agentId}`);
  assert.equal(agent.body.agent.status, 'killed');
  const run = await api('POST', `/api/v1/sdk/agents/${agentId}/execute`, { input: {} });
  assert.notEqual(run.body.status, 'completed', JSON.stringify(run.body));
});

test("the spec's global kill snippet halts the deployment's agents", async () => {
  const created = await api('POST', '/api/v1/sdk/agents', { name: 'snippet-bystander', entry_code: 'return 1' });
  const agentId = created.body.agent.id;
  const apiKey = server.apiKey;
  const baseUrl = server.baseUrl;

  await fetch(`${baseUrl}/api/sdk/kill-switch/global`, { method: 'POST', headers: { 'Authorization': `Bearer ${apiKey}` }, body: JSON.stringify({ halted: true, reason: 'Emergency maintenance' }), });

  const state = await api('GET', '/api/sdk/kill-switch/global');
  assert.equal(state.status, 200, JSON.stringify(state.body));
  assert.equal(state.body.halted, true, JSON.stringify(state.body));
  const run = await api('POST', `/api/v1/sdk/agents/${agentId}/execute`, { input: {} });
  assert.notEqual(run.body.status, 'completed', JSON.stringify(run.body));
  const resumed = await api('POST', '/api/sdk/kill-switch/global', { halted: false, reason: 'maintenance over' });
  assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
  const again = await api('POST', `/api/v1/sdk/agents/${agentId}/execute`, { input: {} });
  assert.equal(again.body.status, 'completed', JSON.stringify(again.body));
});
