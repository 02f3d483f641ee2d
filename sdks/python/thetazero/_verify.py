"""Client-side verification of the audit log: C2SP signed notes (Ed25519),
tlog checkpoints, and RFC 6962 / RFC 9162 Merkle inclusion and consistency
proofs. Nothing here trusts the server: every check recomputes from bytes."""

import base64
import binascii
import hashlib
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from . import _ed25519

MAX_PROOF_HASHES = 128
MAX_NOTE_BYTES = 64 * 1024
MAX_LEAF_BYTES = 4096


class VerifyError(Exception):
    """A proof, note or checkpoint that does not check out; `code` says which rule failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VerifierKey(NamedTuple):
    text: str
    name: str
    key_id: bytes
    public_key: bytes


class Checkpoint(NamedTuple):
    origin: str
    size: int
    root: bytes


class VerifiedRecord(NamedTuple):
    leaf: bytes
    leaf_hash: bytes
    checkpoint: Checkpoint
    latest: Checkpoint


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00", data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01", left, right)


def b64decode(s: Any, what: str) -> bytes:
    # validate=True: a corrupted hash must fail, not decode to something else.
    if not isinstance(s, str):
        raise VerifyError("MALFORMED", "%s is not base64" % what)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise VerifyError("MALFORMED", "%s is not base64" % what) from None


def decode_hash(s: Any, what: str) -> bytes:
    h = b64decode(s, what)
    if len(h) != 32:
        raise VerifyError("MALFORMED", "%s is not a base64 SHA-256 hash" % what)
    return h


def decode_hashes(items: Any, what: str) -> List[bytes]:
    if not isinstance(items, list) or len(items) > MAX_PROOF_HASHES:
        raise VerifyError("MALFORMED", "%s is not a list of at most %d hashes" % (what, MAX_PROOF_HASHES))
    return [decode_hash(s, what) for s in items]


def parse_verifier_key(text: str) -> VerifierKey:
    """Parses a C2SP verifier key `name+hex(keyid)+base64(0x01||pubkey)`."""
    s = text.rstrip("\r\n")
    # The name holds no '+'; the base64 key may, so split at the first two.
    m = re.fullmatch(r"([^+\s]+)\+([0-9a-f]{8})\+(\S+)", s)
    if not m:
        raise VerifyError("BAD_VERIFIER_KEY", "malformed verifier key")
    name, hex_id, key_b64 = m.groups()
    raw = b64decode(key_b64, "verifier key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise VerifyError("BAD_VERIFIER_KEY", "verifier key is not an Ed25519 key")
    # The key id binds the name to the key; recompute rather than trust it.
    key_id = _sha256(name.encode(), b"\n", raw)[:4]
    if key_id.hex() != hex_id:
        raise VerifyError("BAD_VERIFIER_KEY", "verifier key id does not match its name and key")
    return VerifierKey(s, name, key_id, raw[1:])


def open_note(note: Any, key: VerifierKey) -> str:
    """Returns the text of a signed note signed by `key`. Fails with
    UNKNOWN_KEY when no signature is by that key, BAD_SIGNATURE when one is
    but does not verify."""
    if not isinstance(note, str) or not note or len(note.encode()) > MAX_NOTE_BYTES:
        raise VerifyError("MALFORMED_NOTE", "malformed signed note")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerifyError("MALFORMED_NOTE", "malformed signed note")
    text = note[: split + 1]
    matched = False
    for line in note[split + 2 : -1].split("\n"):
        m = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        if not m:
            raise VerifyError("MALFORMED_NOTE", "malformed signature line")
        sig = b64decode(m.group(2), "note signature")
        if len(sig) < 5:
            raise VerifyError("MALFORMED_NOTE", "short note signature")
        if m.group(1) != key.name or sig[:4] != key.key_id:
            continue
        matched = True
        if len(sig) != 68 or not _ed25519.verify(key.public_key, text.encode(), sig[4:]):
            raise VerifyError("BAD_SIGNATURE", "checkpoint signature does not verify with the pinned key")
    if not matched:
        raise VerifyError("UNKNOWN_KEY", "checkpoint is not signed by the pinned key")
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Parses a tlog checkpoint body `origin\\nsize\\nbase64(root)\\n` (no extension lines)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "" or not lines[0] or not re.fullmatch(r"0|[1-9][0-9]*", lines[1]):
        raise VerifyError("MALFORMED_CHECKPOINT", "malformed checkpoint body")
    size = int(lines[1])
    if size > 1 << 62:
        raise VerifyError("MALFORMED_CHECKPOINT", "checkpoint size out of range")
    return Checkpoint(lines[0], size, decode_hash(lines[2], "checkpoint root"))


def open_checkpoint(note: Any, key: VerifierKey, origin: Optional[str] = None, what: str = "checkpoint") -> Checkpoint:
    cp = parse_checkpoint(open_note(note, key))
    if origin is not None and cp.origin != origin:
        raise VerifyError("ORIGIN_MISMATCH", "%s origin %r is not the record's log %r" % (what, cp.origin, origin))
    return cp


def verify_inclusion(path: Sequence[bytes], size: int, root: bytes, index: int, leaf: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    fn, sn = index, size - 1
    if fn > sn or fn < 0:
        return False
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(path: Sequence[bytes], size1: int, root1: bytes, size2: int, root2: bytes) -> bool:
    """RFC 9162 section 2.1.4.2: the tree (size1, root1) is a prefix of (size2, root2)."""
    if size1 <= 0 or size1 > size2:
        return False
    if size1 == size2:
        return len(path) == 0 and root1 == root2
    # When size1 is a power of two the old root is a node of the new tree and
    # the proof leaves it out.
    proof = [root1] + list(path) if size1 & (size1 - 1) == 0 else list(path)
    if not proof:
        return False
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


def verify_record_proof(p: Dict[str, Any], key: VerifierKey) -> VerifiedRecord:
    """Checks a record proof (the JSON of GET .../audit/records/:id/proof):
    leaf hash, checkpoint signature and origin, inclusion, and consistency to
    the latest checkpoint. The caller reconciles the result with the
    checkpoints it saw before."""
    leaf_b64 = p.get("leaf_b64")
    if not isinstance(leaf_b64, str) or len(leaf_b64) > MAX_LEAF_BYTES * 4 // 3 + 4:
        raise VerifyError("MALFORMED", "leaf_b64 is not base64 or is too large")
    leaf = b64decode(leaf_b64, "leaf_b64")
    claimed = decode_hash(p.get("leaf_hash"), "leaf_hash")
    lh = leaf_hash(leaf)
    if lh != claimed:
        raise VerifyError("LEAF_HASH_MISMATCH", "leaf_hash does not match the hash of the leaf bytes")

    origin = p.get("log_origin")
    cp = open_checkpoint(p.get("checkpoint"), key, origin)
    index = p.get("leaf_index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < cp.size:
        raise VerifyError("INDEX_OUT_OF_RANGE", "leaf index %r is not below checkpoint size %d" % (index, cp.size))
    path = decode_hashes(p.get("inclusion_proof"), "inclusion_proof")
    if not verify_inclusion(path, cp.size, cp.root, index, lh):
        raise VerifyError("INCLUSION_PROOF_INVALID", "inclusion proof does not lead to the checkpoint root")

    latest = cp
    c = p.get("consistency_to_latest")
    if c:
        latest = open_checkpoint(c.get("latest_checkpoint"), key, origin, "latest checkpoint")
        if c.get("from") != cp.size:
            raise VerifyError("CONSISTENCY_MISMATCH", "consistency proof starts at %r, not at the checkpoint size %d" % (c.get("from"), cp.size))
        if c.get("to") != latest.size:
            raise VerifyError("CONSISTENCY_MISMATCH", "consistency proof ends at %r, not at the latest checkpoint size %d" % (c.get("to"), latest.size))
        proof = decode_hashes(c.get("proof"), "consistency_to_latest.proof")
        if not verify_consistency(proof, cp.size, cp.root, latest.size, latest.root):
            raise VerifyError("CONSISTENCY_PROOF_INVALID", "consistency proof to the latest checkpoint does not verify")
    return VerifiedRecord(leaf, lh, cp, latest)
