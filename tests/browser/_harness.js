'use strict';
// The browser tests' harness: a real `thetazero serve` (THETAZERO_BIN, else
// the workspace's debug build) on a free port with a fresh data directory,
// Debian's Chromium (/usr/bin/chromium, or THETAZERO_CHROMIUM) driven by
// playwright-core, and small polling helpers (playwright-core has no
// `expect`).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '../..');
const BIN = process.env.THETAZERO_BIN ? path.resolve(process.env.THETAZERO_BIN) : path.join(ROOT, 'target/debug/thetazero');
const CHROMIUM = process.env.THETAZERO_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.THETAZERO_SCREENSHOTS || path.join(ROOT, 'target/dashboard-screenshots');

function serverEnv() {
  const env = { ...process.env, THETAZERO_LOG: process.env.THETAZERO_LOG || 'warn' };
  for (const k of Object.keys(env)) if (k.startsWith('THETAZERO_') && k !== 'THETAZERO_LOG') delete env[k];
  return env;
}

async function startServer() {
  if (!fs.existsSync(BIN)) throw new Error(`thetazero binary not found at ${BIN}: cargo build -p thetazero, or set THETAZERO_BIN`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tz-browser-'));
  const config = path.join(dataDir, 'thetazero.toml');
  fs.writeFileSync(config, 'checkpoint_interval_ms = 200\nstream_keepalive_ms = 1000\n');
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dataDir, 'data'), '--config', config],
    { stdio: ['ignore', 'pipe', 'pipe'], env: serverEnv() });
  let out = '';
  let err = '';
  const info = await new Promise((resolve, reject) => {
    const check = () => {
      const apiKey = (/owner API key: (tzk_\S+)\r?\n/.exec(out) || [])[1];
      const baseUrl = (/listening on (http:\/\/\S+)\r?\n/.exec(err) || [])[1];
      if (apiKey && baseUrl) resolve({ apiKey, baseUrl });
    };
    child.stdout.on('data', (d) => { out += d; check(); });
    child.stderr.on('data', (d) => { err += d; check(); });
    child.on('exit', (code) => reject(new Error(`thetazero exited with ${code}\n${out}\n${err}`)));
    setTimeout(() => reject(new Error(`thetazero did not start in 30 s\n${out}\n${err}`)), 30_000).unref();
  }).catch((e) => { child.kill('SIGKILL'); throw e; });
  return {
    ...info,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The API with a Bearer key, from Node (not the browser). */
function client(baseUrl, key) {
  return async (method, p, body, headers = {}) => {
    const init = { method, headers: { Authorization: `Bearer ${key}`, ...headers } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(baseUrl + p, init);
    const data = await res.json().catch(() => null);
    return { status: res.status, data, headers: res.headers };
  };
}

async function until(what, fn, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the locator's text matches; the error says what it held. */
async function textMatches(locator, re, timeoutMs) {
  let seen = '(nothing)';
  try {
    return await until(`text ${re}`, async () => {
      seen = (await locator.first().textContent({ timeout: 1000 })) || '';
      return re.test(seen);
    }, timeoutMs);
  } catch (e) {
    const page = await locator.page().locator('main').textContent({ timeout: 1000 }).catch(() => '?');
    throw new Error(`${e.message}; it held ${JSON.stringify(seen.slice(0, 300))}; the page: ${JSON.stringify(page.slice(0, 600))}`);
  }
}

module.exports = { startServer, client, until, textMatches, CHROMIUM, SHOTS, ROOT };
