"""Offline tests of the proof verifier against an independent reference
implementation of RFC 6962 (MTH, PATH, PROOF written straight from the RFC),
its known-answer roots, the C2SP signed-note example, and RFC 8032 vectors."""

import hashlib
import unittest

from thetazero import _ed25519
from thetazero import _verify as v
from thetazero._sse import SSEParser


def H(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def k(n: int) -> int:
    x = 1
    while x * 2 < n:
        x *= 2
    return x


def mth(leaves):
    if not leaves:
        return H(b"")
    if len(leaves) == 1:
        return H(b"\x00", leaves[0])
    s = k(len(leaves))
    return H(b"\x01", mth(leaves[:s]), mth(leaves[s:]))


def path_of(m, leaves):
    if len(leaves) <= 1:
        return []
    s = k(len(leaves))
    if m < s:
        return path_of(m, leaves[:s]) + [mth(leaves[s:])]
    return path_of(m - s, leaves[s:]) + [mth(leaves[:s])]


def subproof(m, leaves, b):
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    s = k(n)
    if m <= s:
        return subproof(m, leaves[:s], b) + [mth(leaves[s:])]
    return subproof(m - s, leaves[s:], False) + [mth(leaves[:s])]


TEST_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
LEAVES = [b"leaf %d" % i for i in range(29)]

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_NOTE = PETER_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


class MerkleTest(unittest.TestCase):
    def test_known_answers(self) -> None:
        self.assertEqual(mth(TEST_LEAVES[:1]).hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        self.assertEqual(mth(TEST_LEAVES).hex(), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
        self.assertEqual(v.leaf_hash(b"").hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")

    def test_inclusion(self) -> None:
        for n in range(1, len(LEAVES) + 1):
            tree = LEAVES[:n]
            root = mth(tree)
            for i in range(n):
                p = path_of(i, tree)
                lh = v.leaf_hash(tree[i])
                self.assertTrue(v.verify_inclusion(p, n, root, i, lh), (n, i))
                if i + 1 < n:
                    self.assertFalse(v.verify_inclusion(p, n, root, i + 1, lh))
                self.assertFalse(v.verify_inclusion(p, n, root, i, v.leaf_hash(b"x")))
                if p:
                    self.assertFalse(v.verify_inclusion(p[:-1] + [flip(p[-1])], n, root, i, lh))
                    self.assertFalse(v.verify_inclusion(p[1:], n, root, i, lh))
                    self.assertFalse(v.verify_inclusion(p + [p[0]], n, root, i, lh))

    def test_consistency(self) -> None:
        for n2 in range(1, len(LEAVES) + 1):
            r2 = mth(LEAVES[:n2])
            for n1 in range(1, n2 + 1):
                r1 = mth(LEAVES[:n1])
                p = subproof(n1, LEAVES[:n2], True)
                self.assertTrue(v.verify_consistency(p, n1, r1, n2, r2), (n1, n2))
                self.assertFalse(v.verify_consistency(p, n1, H(b"x"), n2, r2))
                self.assertFalse(v.verify_consistency(p, n1, r1, n2, H(b"x")))
                if p:
                    self.assertFalse(v.verify_consistency([flip(p[0])] + p[1:], n1, r1, n2, r2))
                    self.assertFalse(v.verify_consistency(p[:-1], n1, r1, n2, r2))
        self.assertFalse(v.verify_consistency([], 0, H(b""), 5, mth(LEAVES[:5])))


class NoteTest(unittest.TestCase):
    def test_c2sp_example(self) -> None:
        key = v.parse_verifier_key(PETER_VKEY)
        self.assertEqual(key.name, "PeterNeumann")
        self.assertEqual(v.open_note(PETER_NOTE, key), PETER_TEXT)

        def code(note: str) -> str:
            try:
                v.open_note(note, key)
                return "OK"
            except v.VerifyError as e:
                return e.code

        self.assertEqual(code(PETER_NOTE.replace("problem,", "problem;")), "BAD_SIGNATURE")
        self.assertEqual(code(PETER_NOTE.replace("x08go", "x08gp")), "UNKNOWN_KEY")
        self.assertEqual(code(PETER_NOTE.replace("yBwJnAM", "yBwKnAM")), "BAD_SIGNATURE")
        self.assertEqual(code(PETER_NOTE.replace("\u2014 PeterNeumann", "\u2014 PeterNeuman")), "UNKNOWN_KEY")
        self.assertEqual(code(PETER_NOTE.replace("\n\n\u2014", "\n\u2014")), "MALFORMED_NOTE")
        with self.assertRaises(v.VerifyError):
            v.parse_verifier_key(PETER_VKEY.replace("c74f20a3", "c74f20a4"))

    def test_checkpoint_body(self) -> None:
        import base64

        root = base64.b64encode(bytes([7]) * 32).decode()
        self.assertEqual(v.parse_checkpoint("o/audit/1\n12\n%s\n" % root).size, 12)
        for bad in ["o\n012\n%s\n" % root, "o\n12\n%s" % root, "o\n12\n%s\nx\n" % root, "\n12\n%s\n" % root, "o\n12\nAAAA\n"]:
            with self.assertRaises(v.VerifyError):
                v.parse_checkpoint(bad)


class Ed25519Test(unittest.TestCase):
    # RFC 8032 section 7.1, tests 1 and 2.
    VECTORS = [
        ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ]

    def test_rfc8032_vectors(self) -> None:
        for pk, msg, sig in self.VECTORS:
            pk_b, msg_b, sig_b = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
            self.assertTrue(_ed25519.verify(pk_b, msg_b, sig_b))
            self.assertFalse(_ed25519.verify(pk_b, msg_b + b"x", sig_b))
            self.assertFalse(_ed25519.verify(pk_b, msg_b, flip(sig_b)))
            self.assertFalse(_ed25519.verify(pk_b, msg_b, sig_b[:32] + (int.from_bytes(sig_b[32:], "little") + _ed25519._L).to_bytes(32, "little")))
            self.assertFalse(_ed25519.verify(pk_b[:31], msg_b, sig_b))


class SSETest(unittest.TestCase):
    def test_parser(self) -> None:
        p = SSEParser()
        got = p.feed(': keepalive\n\nevent: connected\ndata: {"position":0}\n\nid: 4\nevent: audit\ndata: {"a":\ndata: 1}\r\n\r\nretry: 250\nid: 5\ndata: plain\n\n')
        self.assertEqual([(m.type, m.data, m.id) for m in got], [
            ("connected", '{"position":0}', ""),
            ("audit", '{"a":\n1}', "4"),
            ("message", "plain", "5"),
        ])
        self.assertEqual(p.last_event_id, "5")
        self.assertEqual(p.retry_ms, 250)


if __name__ == "__main__":
    unittest.main()
