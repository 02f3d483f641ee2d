// Client-side verification of the audit log: C2SP signed notes (Ed25519),
// tlog checkpoints, and RFC 6962 / RFC 9162 Merkle inclusion and consistency
// proofs. Nothing here trusts the server: every check recomputes from bytes.
//
// One file for Node 18+ (CommonJS) and browsers (a classic script that
// defines `globalThis.thetazeroVerify`): it uses WebCrypto, so hashing and
// signature checks are asynchronous, and bytes are Uint8Arrays.

(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    // Node 18 has WebCrypto only as require('crypto').webcrypto; later
    // versions have it as a global, like browsers.
    module.exports = factory(globalThis.crypto && globalThis.crypto.subtle ? globalThis.crypto : require('crypto').webcrypto);
  } else {
    root.thetazeroVerify = factory(root.crypto);
  }
}(typeof self !== 'undefined' ? self : this, function (webcrypto) {
'use strict';

const MAX_PROOF_HASHES = 128;
const MAX_NOTE_BYTES = 64 * 1024;
const utf8 = new TextEncoder();

class VerifyError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'VerifyError';
    this.code = code;
  }
}

function subtle() {
  if (!webcrypto || !webcrypto.subtle) {
    throw new VerifyError('NO_WEBCRYPTO', 'WebCrypto is not available here (browsers offer it only over HTTPS or on localhost)');
  }
  return webcrypto.subtle;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** True when two byte arrays are equal. */
function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

function b64encode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const sha256 = async (...parts) => new Uint8Array(await subtle().digest('SHA-256', concat(parts)));

const leafHash = (bytes) => sha256(Uint8Array.of(0), bytes);
const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

// Strict base64: lenient decoders skip garbage, which would let a corrupted
// hash decode to something else.
function b64decode(s, what) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new VerifyError('MALFORMED', `${what} is not base64`);
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function decodeHash(s, what) {
  const h = b64decode(s, what);
  if (h.length !== 32) throw new VerifyError('MALFORMED', `${what} is not a base64 SHA-256 hash`);
  return h;
}

function decodeHashes(list, what) {
  if (!Array.isArray(list) || list.length > MAX_PROOF_HASHES) {
    throw new VerifyError('MALFORMED', `${what} is not a list of at most ${MAX_PROOF_HASHES} hashes`);
  }
  return list.map((s) => decodeHash(s, what));
}

const VERIFIER_KEY = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/;

/**
 * Checks the form of a C2SP verifier key `name+hex(keyid)+base64(0x01||pubkey)`
 * without hashing (synchronous); parseVerifierKey checks it in full.
 */
function checkVerifierKeyText(text) {
  const s = String(text).replace(/[\r\n]+$/, '');
  // The name holds no '+'; the base64 key may, so split at the first two.
  const m = VERIFIER_KEY.exec(s);
  if (!m) throw new VerifyError('BAD_VERIFIER_KEY', 'malformed verifier key');
  const [, name, hexId, keyB64] = m;
  const raw = b64decode(keyB64, 'verifier key');
  if (raw.length !== 33 || raw[0] !== 0x01) {
    throw new VerifyError('BAD_VERIFIER_KEY', 'verifier key is not an Ed25519 key');
  }
  return { text: s, name, hexId, raw };
}

/** Parses a C2SP verifier key `name+hex(keyid)+base64(0x01||pubkey)`. */
async function parseVerifierKey(text) {
  const { text: s, name, hexId, raw } = checkVerifierKeyText(text);
  // The key id binds the name to the key; recompute rather than trust it.
  const id = (await sha256(utf8.encode(name), utf8.encode('\n'), raw)).subarray(0, 4);
  if (toHex(id) !== hexId) {
    throw new VerifyError('BAD_VERIFIER_KEY', 'verifier key id does not match its name and key');
  }
  let publicKey;
  try {
    publicKey = await subtle().importKey('raw', raw.subarray(1), { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    if (e instanceof VerifyError) throw e;
    throw new VerifyError('BAD_VERIFIER_KEY', `verifier key cannot be used: ${e.message}`);
  }
  return { text: s, name, keyId: id, publicKey };
}

/**
 * A verifier key's fingerprint for comparison out of band: the SHA-256 of
 * its text, in hex, grouped by four.
 */
async function keyFingerprint(text) {
  const { text: s } = checkVerifierKeyText(text);
  return toHex(await sha256(utf8.encode(s))).match(/.{4}/g).join(' ');
}

/**
 * Opens a signed note with one verifier key and returns its text.
 * Fails with UNKNOWN_KEY when no signature line is by that key, and
 * BAD_SIGNATURE when one is but does not verify.
 */
async function openNote(note, key) {
  const buf = utf8.encode(String(note));
  if (buf.length > MAX_NOTE_BYTES) throw new VerifyError('MALFORMED_NOTE', 'note is too large');
  const s = String(note);
  const split = s.lastIndexOf('\n\n');
  if (split < 0 || !s.endsWith('\n')) throw new VerifyError('MALFORMED_NOTE', 'malformed signed note');
  const text = s.slice(0, split + 1);
  const sigLines = s.slice(split + 2, -1).split('\n');
  let matched = false;
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new VerifyError('MALFORMED_NOTE', 'malformed signature line');
    const sig = b64decode(m[2], 'note signature');
    if (sig.length < 5) throw new VerifyError('MALFORMED_NOTE', 'short note signature');
    if (m[1] !== key.name || !bytesEqual(sig.subarray(0, 4), key.keyId)) continue;
    matched = true;
    const ok = sig.length === 68
      && await subtle().verify({ name: 'Ed25519' }, key.publicKey, sig.subarray(4), utf8.encode(text));
    if (!ok) throw new VerifyError('BAD_SIGNATURE', 'checkpoint signature does not verify with the pinned key');
  }
  if (!matched) throw new VerifyError('UNKNOWN_KEY', 'checkpoint is not signed by the pinned key');
  return text;
}

/** Parses a tlog checkpoint body `origin\nsize\nbase64(root)\n` (no extension lines). */
function parseCheckpoint(text) {
  const lines = text.split('\n');
  if (lines.length !== 4 || lines[3] !== '' || !lines[0] || !/^(0|[1-9][0-9]*)$/.test(lines[1])) {
    throw new VerifyError('MALFORMED_CHECKPOINT', 'malformed checkpoint body');
  }
  const size = BigInt(lines[1]);
  if (size > 1n << 62n) throw new VerifyError('MALFORMED_CHECKPOINT', 'checkpoint size out of range');
  return { origin: lines[0], size: Number(size), root: decodeHash(lines[2], 'checkpoint root') };
}

async function openCheckpoint(note, key, origin, what = 'checkpoint') {
  const cp = parseCheckpoint(await openNote(note, key));
  if (origin !== undefined && cp.origin !== origin) {
    throw new VerifyError('ORIGIN_MISMATCH', `${what} origin ${JSON.stringify(cp.origin)} is not the record's log ${JSON.stringify(origin)}`);
  }
  return cp;
}

// Tree sizes fit in 2^62, past Number's exact range, so index arithmetic
// uses BigInt.
const big = (n) => BigInt(n);

/** RFC 9162 section 2.1.3.2: verify an inclusion proof. */
async function verifyInclusion(path, size, root, index, leaf) {
  let fn = big(index);
  let sn = big(size) - 1n;
  if (fn > sn) return false;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && bytesEqual(r, root);
}

/** RFC 9162 section 2.1.4.2: verify that tree (size1, root1) is a prefix of (size2, root2). */
async function verifyConsistency(path, size1, root1, size2, root2) {
  let n1 = big(size1);
  const n2 = big(size2);
  if (n1 === 0n || n1 > n2) return false;
  if (n1 === n2) return path.length === 0 && bytesEqual(root1, root2);
  // When size1 is a power of two the old root is itself a node of the new
  // tree and the proof leaves it out.
  const proof = (n1 & (n1 - 1n)) === 0n ? [root1, ...path] : path;
  if (proof.length === 0) return false;
  let fn = n1 - 1n;
  let sn = n2 - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = proof[0];
  let sr = proof[0];
  for (const c of proof.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && bytesEqual(fr, root1) && bytesEqual(sr, root2);
}

/**
 * Checks a record proof (the JSON of GET .../audit/records/:id/proof) against
 * a parsed verifier key. Returns the proven checkpoint and the latest one it
 * is consistent with; throws VerifyError otherwise. The caller reconciles the
 * result with the checkpoints it saw before.
 */
async function verifyRecordProof(p, key) {
  if (typeof p.leaf_b64 !== 'string' || p.leaf_b64.length > 4096 * 4 / 3 + 4) {
    throw new VerifyError('MALFORMED', 'leaf_b64 is not base64 or is too large');
  }
  const leaf = b64decode(p.leaf_b64, 'leaf_b64');
  const claimed = decodeHash(p.leaf_hash, 'leaf_hash');
  const lh = await leafHash(leaf);
  if (!bytesEqual(lh, claimed)) throw new VerifyError('LEAF_HASH_MISMATCH', 'leaf_hash does not match the hash of the leaf bytes');

  const cp = await openCheckpoint(p.checkpoint, key, p.log_origin);
  if (!Number.isSafeInteger(p.leaf_index) || p.leaf_index < 0 || p.leaf_index >= cp.size) {
    throw new VerifyError('INDEX_OUT_OF_RANGE', `leaf index ${p.leaf_index} is not below checkpoint size ${cp.size}`);
  }
  const path = decodeHashes(p.inclusion_proof, 'inclusion_proof');
  if (!(await verifyInclusion(path, cp.size, cp.root, p.leaf_index, lh))) {
    throw new VerifyError('INCLUSION_PROOF_INVALID', 'inclusion proof does not lead to the checkpoint root');
  }

  let latest = cp;
  const c = p.consistency_to_latest;
  if (c) {
    latest = await openCheckpoint(c.latest_checkpoint, key, p.log_origin, 'latest checkpoint');
    if (c.from !== cp.size) throw new VerifyError('CONSISTENCY_MISMATCH', `consistency proof starts at ${c.from}, not at the checkpoint size ${cp.size}`);
    if (c.to !== latest.size) throw new VerifyError('CONSISTENCY_MISMATCH', `consistency proof ends at ${c.to}, not at the latest checkpoint size ${latest.size}`);
    const proof = decodeHashes(c.proof, 'consistency_to_latest.proof');
    if (!(await verifyConsistency(proof, cp.size, cp.root, latest.size, latest.root))) {
      throw new VerifyError('CONSISTENCY_PROOF_INVALID', 'consistency proof to the latest checkpoint does not verify');
    }
  }
  return { leaf, leafHash: lh, checkpoint: cp, latest };
}

return {
  VerifyError,
  sha256,
  bytesEqual,
  b64encode,
  b64decode,
  toHex,
  checkVerifierKeyText,
  keyFingerprint,
  leafHash,
  nodeHash,
  decodeHashes,
  parseVerifierKey,
  openNote,
  parseCheckpoint,
  openCheckpoint,
  verifyInclusion,
  verifyConsistency,
  verifyRecordProof,
};
}));
