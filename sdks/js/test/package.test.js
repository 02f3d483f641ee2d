'use strict';
// `npm pack` produces a package that installs into a clean directory and
// loads through both require and import, with its type declarations.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { SDK_DIR } = require('./_server');

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

test('npm pack produces an installable package (CommonJS, ESM, types)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tz-js-pack-'));
  try {
    const out = execFileSync(npm, ['pack', '--json', '--pack-destination', tmp], { cwd: SDK_DIR, encoding: 'utf8' });
    const [info] = JSON.parse(out);
    const files = info.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['README.md', 'index.d.ts', 'package.json', 'src/index.js', 'src/index.mjs', 'src/sse.js', 'src/verify.js']);

    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
    execFileSync(npm, ['install', '--offline', '--no-audit', '--no-fund', path.join(tmp, info.filename)], { cwd: app, stdio: 'pipe' });
    const pkgDir = path.join(app, 'node_modules/@thetazero/agent-sdk');
    assert.ok(fs.existsSync(path.join(pkgDir, 'index.d.ts')));
    assert.ok(!fs.existsSync(path.join(pkgDir, 'test')));

    const cjs = execFileSync(process.execPath, ['-e', "const {SecureAgent, SDKError} = require('@thetazero/agent-sdk'); console.log(SecureAgent.permissions.CODER.length, typeof SDKError)"], { cwd: app, encoding: 'utf8' });
    assert.equal(cjs.trim(), '5 function');
    const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import {SecureAgent} from '@thetazero/agent-sdk'; import sdk from '@thetazero/agent-sdk'; console.log(SecureAgent === sdk.SecureAgent, SecureAgent.permissions.FULL.length)"], { cwd: app, encoding: 'utf8' });
    assert.equal(esm.trim(), 'true 10');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
