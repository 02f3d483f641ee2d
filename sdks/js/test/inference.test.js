'use strict';
// The spec's Quick Start end to end: a server whose inference provider is a
// local stand-in for an OpenAI-compatible API, so that the built-in task
// agent's `thetazero.inference` call gets an answer.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { startServer, SDK_DIR } = require('./_server');

const ANSWER = 'Top 3 risk factors: short tenure, many support tickets, basic plan.';
let server;
let provider;
const requests = [];

before(async () => {
  provider = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      requests.push({ url: req.url, auth: req.headers.authorization, body: JSON.parse(body) });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({
        id: 'chatcmpl-1', object: 'chat.completion', model: 'stand-in',
        choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 42, completion_tokens: 12, total_tokens: 54 },
      }));
    });
  });
  await new Promise((r) => provider.listen(0, '127.0.0.1', r));
  server = await startServer({ inference: { baseUrl: `http://127.0.0.1:${provider.address().port}/v1`, model: 'stand-in' } });
});
after(async () => {
  if (server) await server.stop();
  if (provider) provider.close();
});

test('the spec Quick Start runs unchanged and prints the model\'s answer', async () => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(SDK_DIR, 'examples/quickstart.js')], {
    env: { ...process.env, THETAZERO_API_KEY: server.apiKey, THETAZERO_BASE_URL: server.baseUrl },
  });
  assert.equal(stderr, '');
  assert.equal(stdout, ANSWER + '\n');
  assert.equal(requests.length, 1);
  const { url, auth, body } = requests[0];
  assert.equal(url, '/v1/chat/completions');
  assert.equal(auth, undefined);
  assert.equal(body.model, 'stand-in');
  const user = body.messages.find((m) => m.role === 'user').content;
  assert.match(user, /^Analyze the user churn data and identify top 3 risk factors/);
  assert.match(user, /"tenureMonths":2/);
});
