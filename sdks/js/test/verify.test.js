'use strict';
// Offline tests of the proof verifier against an independent reference
// implementation of RFC 6962 (MTH, PATH, PROOF written straight from the
// RFC), its known-answer roots, and the C2SP signed-note example.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const v = require('../src/verify');
const { SSEParser } = require('../src/sse');

const H = (...p) => { const h = crypto.createHash('sha256'); p.forEach((x) => h.update(x)); return h.digest(); };
const k = (n) => { let x = 1; while (x * 2 < n) x *= 2; return x; }; // largest power of 2 < n
function mth(leaves) {
  if (leaves.length === 0) return H(Buffer.alloc(0));
  if (leaves.length === 1) return H(Buffer.from([0]), leaves[0]);
  const s = k(leaves.length);
  return H(Buffer.from([1]), mth(leaves.slice(0, s)), mth(leaves.slice(s)));
}
function pathOf(m, leaves) {
  if (leaves.length <= 1) return [];
  const s = k(leaves.length);
  return m < s
    ? [...pathOf(m, leaves.slice(0, s)), mth(leaves.slice(s))]
    : [...pathOf(m - s, leaves.slice(s)), mth(leaves.slice(0, s))];
}
function subproof(m, leaves, b) {
  const n = leaves.length;
  if (m === n) return b ? [] : [mth(leaves)];
  const s = k(n);
  return m <= s
    ? [...subproof(m, leaves.slice(0, s), b), mth(leaves.slice(s))]
    : [...subproof(m - s, leaves.slice(s), false), mth(leaves.slice(0, s))];
}

// The RFC 6962 test leaves and their known roots.
const TEST_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => Buffer.from(h, 'hex'));
const ROOTS = {
  1: '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  8: '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
};

test('reference tree matches RFC 6962 known answers', async () => {
  for (const [n, root] of Object.entries(ROOTS)) {
    assert.equal(mth(TEST_LEAVES.slice(0, Number(n))).toString('hex'), root);
  }
  assert.equal(Buffer.from(await v.leafHash(Buffer.alloc(0))).toString('hex'), ROOTS[1]);
});

const leaves = Array.from({ length: 37 }, (_, i) => Buffer.from(`leaf ${i}`));

test('inclusion proofs verify, and every tampering fails', async () => {
  for (let n = 1; n <= leaves.length; n++) {
    const tree = leaves.slice(0, n);
    const root = mth(tree);
    for (let i = 0; i < n; i++) {
      const p = pathOf(i, tree);
      const lh = await v.leafHash(tree[i]);
      assert.ok(await v.verifyInclusion(p, n, root, i, lh), `n=${n} i=${i}`);
      if (i + 1 < n) assert.ok(!(await v.verifyInclusion(p, n, root, i + 1, lh)));
      assert.ok(!(await v.verifyInclusion(p, n, root, i, await v.leafHash(Buffer.from('x')))));
      if (p.length) {
        const bad = p.map((h) => Buffer.from(h));
        bad[bad.length - 1][0] ^= 1;
        assert.ok(!(await v.verifyInclusion(bad, n, root, i, lh)));
        assert.ok(!(await v.verifyInclusion(p.slice(1), n, root, i, lh)));
        assert.ok(!(await v.verifyInclusion([...p, p[0]], n, root, i, lh)));
      }
    }
  }
});

test('consistency proofs verify, and every tampering fails', async () => {
  for (let n2 = 1; n2 <= leaves.length; n2++) {
    const r2 = mth(leaves.slice(0, n2));
    for (let n1 = 1; n1 <= n2; n1++) {
      const r1 = mth(leaves.slice(0, n1));
      const p = subproof(n1, leaves.slice(0, n2), true);
      assert.ok(await v.verifyConsistency(p, n1, r1, n2, r2), `${n1}->${n2}`);
      assert.ok(!(await v.verifyConsistency(p, n1, H(Buffer.from("x")), n2, r2)));
      assert.ok(!(await v.verifyConsistency(p, n1, r1, n2, H(Buffer.from('x')))));
      if (p.length) {
        const bad = p.map((h) => Buffer.from(h));
        bad[0][5] ^= 1;
        assert.ok(!(await v.verifyConsistency(bad, n1, r1, n2, r2)));
        assert.ok(!(await v.verifyConsistency(p.slice(0, -1), n1, r1, n2, r2)));
      }
    }
  }
  assert.ok(!(await v.verifyConsistency([], 0, H(), 5, mth(leaves.slice(0, 5)))));
});

// The example in C2SP signed-note / golang.org/x/mod/sumdb/note.
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_NOTE = PETER_TEXT + '\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';

test('signed notes: the C2SP example and its negative cases', async () => {
  const key = await v.parseVerifierKey(PETER_VKEY);
  assert.equal(key.name, 'PeterNeumann');
  assert.equal(await v.openNote(PETER_NOTE, key), PETER_TEXT);
  const code = async (note) => { try { await v.openNote(note, key); return 'OK'; } catch (e) { return e.code; } };
  assert.equal(await code(PETER_NOTE.replace('problem,', 'problem;')), 'BAD_SIGNATURE');
  assert.equal(await code(PETER_NOTE.replace('x08go', 'x08gp')), 'UNKNOWN_KEY');
  assert.equal(await code(PETER_NOTE.replace('yBwJnAM', 'yBwKnAM')), 'BAD_SIGNATURE');
  assert.equal(await code(PETER_NOTE.replace('\u2014 PeterNeumann', '\u2014 PeterNeuman')), 'UNKNOWN_KEY');
  assert.equal(await code(PETER_NOTE.replace('\n\n\u2014', '\n\u2014')), 'MALFORMED_NOTE');
  await assert.rejects(v.parseVerifierKey(PETER_VKEY.replace('c74f20a3', 'c74f20a4')), { code: 'BAD_VERIFIER_KEY' });
  await assert.rejects(v.parseVerifierKey('nonsense'), { code: 'BAD_VERIFIER_KEY' });
  assert.throws(() => v.checkVerifierKeyText('nonsense'), { code: 'BAD_VERIFIER_KEY' });
  assert.match(await v.keyFingerprint(PETER_VKEY), /^([0-9a-f]{4} ){15}[0-9a-f]{4}$/);
});

test('checkpoint bodies parse strictly', () => {
  const root = Buffer.alloc(32, 7).toString('base64');
  assert.deepEqual(v.parseCheckpoint(`o/audit/1\n12\n${root}\n`).size, 12);
  for (const bad of [`o\n012\n${root}\n`, `o\n12\n${root}`, `o\n12\n${root}\nextra\n`, `\n12\n${root}\n`, 'o\n12\nAAAA\n']) {
    assert.throws(() => v.parseCheckpoint(bad), /checkpoint|base64/);
  }
});

test('the verifier imports nothing from Node and runs as a browser script', () => {
  const fs = require('node:fs');
  const vm = require('node:vm');
  const src = fs.readFileSync(require.resolve('../src/verify'), 'utf8');
  assert.doesNotMatch(src, /node:/);
  // As a classic script in a browser-like global (no module, no require).
  const sandbox = { crypto: globalThis.crypto || require('node:crypto').webcrypto, TextEncoder, atob, btoa };
  sandbox.self = sandbox;
  vm.runInNewContext(src, sandbox);
  assert.equal(typeof sandbox.thetazeroVerify.verifyRecordProof, 'function');
});

test('SSE parser: events, ids, comments, split chunks', () => {
  const got = [];
  const p = new SSEParser((m) => got.push(m));
  p.push(': keepalive\n\nevent: connected\ndata: {"position":0}\n\nid: 4\nevent: au');
  p.push('dit\ndata: {"a":\ndata: 1}\r');
  p.push('\n\r\nretry: 250\nid: 5\ndata: plain\n\n');
  assert.deepEqual(got.map((m) => [m.type, m.data, m.id]), [
    ['connected', '{"position":0}', ''],
    ['audit', '{"a":\n1}', '4'],
    ['message', 'plain', '5'],
  ]);
  assert.equal(p.lastEventId, '5');
  assert.equal(p.retry, 250);
});
