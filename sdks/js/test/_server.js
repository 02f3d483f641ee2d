'use strict';
// Starts a real `thetazero serve` on a free port with a fresh data
// directory, for the tests. The binary comes from THETAZERO_BIN, else the
// repository's own release build (../../target/release/thetazero from the
// SDK folder).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SDK_DIR = path.resolve(__dirname, '..');
const BIN = process.env.THETAZERO_BIN
  ? path.resolve(process.env.THETAZERO_BIN)
  : path.resolve(SDK_DIR, '../../target/release/thetazero');

// The server's settings come from these flags alone, not from whatever
// THETAZERO_* variables the developer's shell holds.
function serverEnv() {
  const env = { ...process.env, THETAZERO_LOG: process.env.THETAZERO_LOG || 'warn' };
  for (const k of Object.keys(env)) {
    if (k.startsWith('THETAZERO_') && k !== 'THETAZERO_LOG') delete env[k];
  }
  return env;
}

/**
 * @param {{inference?: {baseUrl: string, model: string}}} [opts]
 */
async function startServer({ inference } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`thetazero binary not found at ${BIN}: build it (cargo build --release -p thetazero) or set THETAZERO_BIN`);
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tz-js-test-'));
  // Short stream keepalives and time limits, so that the tests see the live
  // stream end with `timeout` and the client resume within seconds.
  const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tz-js-config-'));
  const config = path.join(configDir, 'thetazero.toml');
  fs.writeFileSync(config, 'stream_keepalive_ms = 200\nstream_max_duration_ms = 2000\n');
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--config', config];
  if (inference) args.push('--inference-base-url', inference.baseUrl, '--inference-model', inference.model);
  const child = spawn(BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: serverEnv(),
  });
  let out = '';
  let err = '';
  const ready = new Promise((resolve, reject) => {
    let apiKey;
    let baseUrl;
    const check = () => {
      apiKey = apiKey || (/owner API key: (tzk_\S+)\r?\n/.exec(out) || [])[1];
      baseUrl = baseUrl || (/listening on (http:\/\/\S+)\r?\n/.exec(err) || [])[1];
      if (apiKey && baseUrl) resolve({ apiKey, baseUrl });
    };
    child.stdout.on('data', (d) => { out += d; check(); });
    child.stderr.on('data', (d) => { err += d; check(); });
    child.on('exit', (code) => reject(new Error(`thetazero exited with ${code}\n${out}\n${err}`)));
    setTimeout(() => reject(new Error(`thetazero did not start in 30 s\n${out}\n${err}`)), 30_000).unref();
  });
  let info;
  try {
    info = await ready;
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    ...info,
    dataDir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
      fs.rmSync(configDir, { recursive: true, force: true });
    },
  };
}

module.exports = { startServer, BIN, SDK_DIR };
