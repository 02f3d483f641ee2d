'use strict';
// Client-side verification of the audit log: C2SP signed notes (Ed25519),
// tlog checkpoints, and RFC 6962 / RFC 9162 Merkle inclusion and consistency
// proofs. Nothing here trusts the server: every check recomputes from bytes.

const crypto = require('node:crypto');

// DER prefix of an Ed25519 SubjectPublicKeyInfo; node:crypto takes raw keys
// only wrapped in one.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const MAX_PROOF_HASHES = 128;
const MAX_NOTE_BYTES = 64 * 1024;

class VerifyError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'VerifyError';
    this.code = code;
  }
}

const sha256 = (...parts) => {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

const leafHash = (bytes) => sha256(Buffer.from([0]), bytes);
const nodeHash = (l, r) => sha256(Buffer.from([1]), l, r);

// Strict base64: Buffer.from silently skips garbage, which would let a
// corrupted hash decode to something else.
function b64decode(s, what) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new VerifyError('MALFORMED', `${what} is not base64`);
  }
  return Buffer.from(s, 'base64');
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

/** Parses a C2SP verifier key `name+hex(keyid)+base64(0x01||pubkey)`. */
function parseVerifierKey(text) {
  const s = String(text).replace(/[\r\n]+$/, '');
  // The name holds no '+'; the base64 key may, so split at the first two.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(s);
  if (!m) throw new VerifyError('BAD_VERIFIER_KEY', 'malformed verifier key');
  const [, name, hexId, keyB64] = m;
  const raw = b64decode(keyB64, 'verifier key');
  if (raw.length !== 33 || raw[0] !== 0x01) {
    throw new VerifyError('BAD_VERIFIER_KEY', 'verifier key is not an Ed25519 key');
  }
  // The key id binds the name to the key; recompute rather than trust it.
  const id = sha256(Buffer.from(name, 'utf8'), Buffer.from('\n'), raw).subarray(0, 4);
  if (id.toString('hex') !== hexId) {
    throw new VerifyError('BAD_VERIFIER_KEY', 'verifier key id does not match its name and key');
  }
  const publicKey = crypto.createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, raw.subarray(1)]),
    format: 'der',
    type: 'spki',
  });
  return { text: s, name, keyId: id, publicKey };
}

/**
 * Opens a signed note with one verifier key and returns its text.
 * Fails with UNKNOWN_KEY when no signature line is by that key, and
 * BAD_SIGNATURE when one is but does not verify.
 */
function openNote(note, key) {
  const buf = Buffer.from(String(note), 'utf8');
  if (buf.length > MAX_NOTE_BYTES) throw new VerifyError('MALFORMED_NOTE', 'note is too large');
  const s = buf.toString('utf8');
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
    if (m[1] !== key.name || !sig.subarray(0, 4).equals(key.keyId)) continue;
    matched = true;
    const ok = sig.length === 68 && crypto.verify(null, Buffer.from(text, 'utf8'), key.publicKey, sig.subarray(4));
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

function openCheckpoint(note, key, origin, what = 'checkpoint') {
  const cp = parseCheckpoint(openNote(note, key));
  if (origin !== undefined && cp.origin !== origin) {
    throw new VerifyError('ORIGIN_MISMATCH', `${what} origin ${JSON.stringify(cp.origin)} is not the record's log ${JSON.stringify(origin)}`);
  }
  return cp;
}

// Tree sizes fit in 2^62, past Number's exact range, so index arithmetic
// uses BigInt.
const big = (n) => BigInt(n);

/** RFC 9162 section 2.1.3.2: verify an inclusion proof. */
function verifyInclusion(path, size, root, index, leaf) {
  let fn = big(index);
  let sn = big(size) - 1n;
  if (fn > sn) return false;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && r.equals(root);
}

/** RFC 9162 section 2.1.4.2: verify that tree (size1, root1) is a prefix of (size2, root2). */
function verifyConsistency(path, size1, root1, size2, root2) {
  let n1 = big(size1);
  const n2 = big(size2);
  if (n1 === 0n || n1 > n2) return false;
  if (n1 === n2) return path.length === 0 && root1.equals(root2);
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
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && fr.equals(root1) && sr.equals(root2);
}

/**
 * Checks a record proof (the JSON of GET .../audit/records/:id/proof) against
 * a parsed verifier key. Returns the proven checkpoint and the latest one it
 * is consistent with; throws VerifyError otherwise. The caller reconciles the
 * result with the checkpoints it saw before.
 */
function verifyRecordProof(p, key) {
  if (typeof p.leaf_b64 !== 'string' || p.leaf_b64.length > 4096 * 4 / 3 + 4) {
    throw new VerifyError('MALFORMED', 'leaf_b64 is not base64 or is too large');
  }
  const leaf = b64decode(p.leaf_b64, 'leaf_b64');
  const claimed = decodeHash(p.leaf_hash, 'leaf_hash');
  const lh = leafHash(leaf);
  if (!lh.equals(claimed)) throw new VerifyError('LEAF_HASH_MISMATCH', 'leaf_hash does not match the hash of the leaf bytes');

  const cp = openCheckpoint(p.checkpoint, key, p.log_origin);
  if (!Number.isSafeInteger(p.leaf_index) || p.leaf_index < 0 || p.leaf_index >= cp.size) {
    throw new VerifyError('INDEX_OUT_OF_RANGE', `leaf index ${p.leaf_index} is not below checkpoint size ${cp.size}`);
  }
  const path = decodeHashes(p.inclusion_proof, 'inclusion_proof');
  if (!verifyInclusion(path, cp.size, cp.root, p.leaf_index, lh)) {
    throw new VerifyError('INCLUSION_PROOF_INVALID', 'inclusion proof does not lead to the checkpoint root');
  }

  let latest = cp;
  const c = p.consistency_to_latest;
  if (c) {
    latest = openCheckpoint(c.latest_checkpoint, key, p.log_origin, 'latest checkpoint');
    if (c.from !== cp.size) throw new VerifyError('CONSISTENCY_MISMATCH', `consistency proof starts at ${c.from}, not at the checkpoint size ${cp.size}`);
    if (c.to !== latest.size) throw new VerifyError('CONSISTENCY_MISMATCH', `consistency proof ends at ${c.to}, not at the latest checkpoint size ${latest.size}`);
    const proof = decodeHashes(c.proof, 'consistency_to_latest.proof');
    if (!verifyConsistency(proof, cp.size, cp.root, latest.size, latest.root)) {
      throw new VerifyError('CONSISTENCY_PROOF_INVALID', 'consistency proof to the latest checkpoint does not verify');
    }
  }
  return { leaf, leafHash: lh, checkpoint: cp, latest };
}

module.exports = {
  VerifyError,
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
