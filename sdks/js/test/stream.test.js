'use strict';
// streamAuditLog's reconnect logic against a minimal local SSE endpoint
// (thetazero serves the stream in a later release; this checks the client's
// side of the protocol: Last-Event-ID resume, comments, timeout events).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { SecureAgent } = require('..');

test('streamAuditLog resumes from the last event id after a disconnect', async () => {
  const seen = [];
  const srv = http.createServer((req, res) => {
    seen.push({ url: req.url, lastEventId: req.headers['last-event-id'], auth: req.headers.authorization });
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    const after = Number(req.headers['last-event-id'] ?? -1);
    if (after < 0) res.write('retry: 10\nevent: connected\ndata: {"position":0}\n\n');
    res.write(': keepalive\n\n');
    res.write(`id: ${after + 1}\nevent: audit\ndata: ${JSON.stringify({ leaf_index: after + 1, description: 'e' })}\n\n`);
    if (after + 1 === 1) res.write('event: timeout\ndata: {"resume_after":1}\n\n');
    res.end();
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const agent = new SecureAgent({ apiKey: 'tzk_test', baseUrl: `http://127.0.0.1:${srv.address().port}` });
  const events = [];
  let stream;
  await new Promise((resolve) => {
    stream = agent.streamAuditLog({ executionId: 7 }, (type, data) => {
      events.push([type, data]);
      if (type === 'audit' && data.leaf_index === 2) resolve();
    });
  });
  stream.close();
  await stream.done;
  srv.close();
  assert.deepEqual(events.filter(([t]) => t === 'audit').map(([, d]) => d.leaf_index), [0, 1, 2]);
  assert.equal(events[0][0], 'connected');
  assert.ok(events.some(([t]) => t === 'timeout'));
  assert.deepEqual(seen.map((s) => s.lastEventId), [undefined, '0', '1']);
  assert.ok(seen.every((s) => s.url === '/api/sdk/audit/stream?executionId=7' && s.auth === 'Bearer tzk_test'));
  assert.equal(stream.lastEventId, '2');
});

test('requestPermission waits for the decision and maps it to SDKError codes', async () => {
  let decision = 'approved';
  let polls = 0;
  const srv = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    if (req.method === 'POST') return res.end(JSON.stringify({ success: true, request: { id: 5, status: 'pending' } }));
    polls += 1;
    res.end(JSON.stringify({ success: true, request: { id: 5, status: polls < 2 ? 'pending' : decision } }));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const agent = new SecureAgent({ apiKey: 'tzk_test', baseUrl: `http://127.0.0.1:${srv.address().port}`, agentId: 3 });
  const ask = (timeoutMs = 5000) => agent.requestPermission({ permissions: { allow_network: true }, justification: 'j', timeoutMs, pollIntervalMs: 10 });
  assert.equal((await ask()).status, 'approved');
  for (const [d, code] of [['denied', 'PERMISSION_DENIED'], ['expired', 'PERMISSION_EXPIRED'], ['pending', 'PERMISSION_TIMEOUT']]) {
    decision = d;
    polls = 0;
    await assert.rejects(() => ask(d === 'pending' ? 100 : 5000), { name: 'SDKError', code });
  }
  srv.close();
});
