//! Tamper matrix for the verifiable export: a real bundle of a few hundred
//! leaves, changed in one way at a time, must be reported by name. Tests
//! only.

// Tests may unwrap: a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;
use thetazero_audit::bundle::{verify_bundle, verify_bundle_with, BundleWriter, VerifyOptions};
use thetazero_audit::checkpoint::{AuditSigner, CheckpointSigner, VerifierKey};
use thetazero_audit::leaf::{AuditLeaf, Decision, Digest, LEAF_TYPE};
use thetazero_audit::merkle::{self, MemoryHashStore};
use thetazero_audit::proof::Anchor;

const ORIGIN: &str = "tz.example/audit/7";
const N: u64 = 300;
const CHECKPOINTS: [u64; 4] = [50, 100, 200, 300];

fn leaf(i: u64) -> Vec<u8> {
    AuditLeaf {
        leaf_type: LEAF_TYPE.into(),
        account_id: 7,
        agent_id: Some(42),
        execution_id: Some(i as i64 / 10),
        action_type: if i.is_multiple_of(7) {
            "permission_denied"
        } else {
            "api_call"
        }
        .into(),
        action_category: "network".into(),
        time: format!("2026-01-31T12:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
        permission_state: "granted".into(),
        decision: if i.is_multiple_of(7) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        is_violation: i.is_multiple_of(7),
        key_id: Some(3),
        input_digest: Some(Digest::of(&i.to_be_bytes())),
        output_digest: None,
        summary: format!("call number {i}"),
        payload_commitment: Digest::of(format!("payload {i}").as_bytes()),
    }
    .to_bytes()
    .unwrap()
}

struct Fixture {
    lines: Vec<String>,
    key: AuditSigner,
    vkey: VerifierKey,
}

fn build() -> Fixture {
    let key = AuditSigner::generate(ORIGIN).unwrap();
    let vkey = key.verifier_key();
    let mut signer =
        CheckpointSigner::new(AuditSigner::parse(&key.to_key_string()).unwrap(), ORIGIN);
    let mut store = MemoryHashStore::new();
    let mut notes = Vec::new();
    let mut w = BundleWriter::new(Vec::new(), ORIGIN, &vkey).unwrap();
    for i in 0..N {
        let l = leaf(i);
        store.push(&l).unwrap();
        w.entry(i, &l).unwrap();
        if CHECKPOINTS.contains(&(i + 1)) {
            let note = signer.sign_from_store(i + 1, &store).unwrap();
            w.checkpoint(&note).unwrap();
            notes.push(i + 1);
        }
    }
    for pair in CHECKPOINTS.windows(2) {
        let p = merkle::consistency_proof(pair[0], pair[1], &store).unwrap();
        w.consistency(pair[0], pair[1], &p).unwrap();
    }
    w.anchor(&Anchor {
        kind: "command".into(),
        checkpoint_size: 300,
        status: "confirmed".into(),
        external_ref: Some("0xabc".into()),
    })
    .unwrap();
    for r in [17u64, 250] {
        w.receipt(r, &store.leaf_hash(r).unwrap()).unwrap();
    }
    let bytes = w.finish().unwrap();
    let lines = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    Fixture { lines, key, vkey }
}

fn line_of(lines: &[String], pred: impl Fn(&Value) -> bool) -> usize {
    lines
        .iter()
        .position(|l| pred(&serde_json::from_str::<Value>(l).unwrap()))
        .unwrap()
}

fn entry_line(lines: &[String], index: u64) -> usize {
    line_of(lines, |v| v["type"] == "entry" && v["leaf_index"] == index)
}

fn checkpoint_line(lines: &[String], size: u64) -> usize {
    line_of(lines, |v| {
        v["type"] == "checkpoint" && v["note"].as_str().unwrap().contains(&format!("\n{size}\n"))
    })
}

fn set(lines: &mut [String], i: usize, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&lines[i]).unwrap();
    f(&mut v);
    lines[i] = v.to_string();
}

/// Verifies the tampered lines and checks every expected finding is named
/// (and, for the untampered bundle, that there are none).
fn check(name: &str, lines: &[String], vkey: &VerifierKey, expected: &[&str]) {
    let text = lines.join("\n") + "\n";
    let report = verify_bundle(text.as_bytes(), vkey);
    let got: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    if expected.is_empty() {
        assert!(report.is_valid(), "{name}: unexpected findings {got:#?}");
        return;
    }
    assert!(!report.is_valid(), "{name}: tampering not detected");
    for want in expected {
        assert!(
            got.iter().any(|g| g == want),
            "{name}: missing finding {want:?}; got {got:#?}"
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn tamper_matrix() {
    let f = build();
    let vkey = &f.vkey;
    check("untouched", &f.lines, vkey, &[]);
    let report = verify_bundle(f.lines.join("\n").as_bytes(), vkey);
    assert_eq!(report.entries, N);
    assert_eq!(
        report.largest_verified_checkpoint.as_ref().map(|c| c.size),
        Some(300)
    );
    for c in [
        "checkpoint_root size 300: ok",
        "consistency 100->200: ok",
        "receipt 250: included",
    ] {
        assert!(
            report.checks.iter().any(|x| x == c),
            "missing check {c}: {:#?}",
            report.checks
        );
    }

    // One byte of a leaf changed; the stored hash left as it was.
    let mut l = f.lines.clone();
    let i = entry_line(&l, 17);
    set(&mut l, i, |v| {
        let mut leaf = unb64(v["leaf_b64"].as_str().unwrap());
        let pos = leaf.iter().position(|&b| b == b'c').unwrap(); // in "call number 17"
        leaf[pos] = b'C';
        v["leaf_b64"] = b64(&leaf).into();
    });
    check(
        "leaf byte",
        &l,
        vkey,
        &[
            "leaf_hash_mismatch at 17",
            "checkpoint_root_mismatch size 50",
            "checkpoint_root_mismatch size 300",
            "receipt_hash_mismatch 17",
        ],
    );

    // The same change with the stored hash recomputed to match.
    let mut l2 = l.clone();
    set(&mut l2, i, |v| {
        let leaf = unb64(v["leaf_b64"].as_str().unwrap());
        v["leaf_hash"] = b64(&merkle::leaf_hash(&leaf).0).into();
    });
    check(
        "leaf byte and hash",
        &l2,
        vkey,
        &[
            "checkpoint_root_mismatch size 50",
            "receipt_hash_mismatch 17",
        ],
    );

    // A leaf that is not a canonical tz.audit.v1 leaf, with a matching
    // hash: the tree is fine where it sits, the schema check is not.
    let mut l = f.lines.clone();
    let i = entry_line(&l, 77);
    set(&mut l, i, |v| {
        let mut leaf = unb64(v["leaf_b64"].as_str().unwrap());
        leaf.insert(1, b' ');
        v["leaf_b64"] = b64(&leaf).into();
        v["leaf_hash"] = b64(&merkle::leaf_hash(&leaf).0).into();
    });
    check(
        "non-canonical leaf",
        &l,
        vkey,
        &["leaf_invalid at 77: leaf bytes are not in canonical (RFC 8785) form"],
    );
    let text = l.join("\n");
    let sequential = verify_bundle_with(
        text.as_bytes(),
        vkey,
        VerifyOptions {
            check_leaf_schema: true,
            parallel: false,
        },
    );
    assert!(sequential
        .findings
        .iter()
        .any(|f| f.to_string().starts_with("leaf_invalid at 77")));
    let tree_only = verify_bundle_with(
        text.as_bytes(),
        vkey,
        VerifyOptions {
            check_leaf_schema: false,
            parallel: true,
        },
    );
    assert!(!tree_only.has("leaf_invalid"));
    assert!(tree_only.has("checkpoint_root_mismatch"));

    // A middle entry deleted.
    let mut l = f.lines.clone();
    l.remove(entry_line(&l, 42));
    check(
        "delete",
        &l,
        vkey,
        &["index_gap 41->43", "checkpoint_root_mismatch size 50"],
    );

    // Two entries swapped.
    let mut l = f.lines.clone();
    let (a, b) = (entry_line(&l, 120), entry_line(&l, 121));
    l.swap(a, b);
    check(
        "reorder",
        &l,
        vkey,
        &[
            "index_gap 119->121",
            "index_out_of_order 121->120",
            "checkpoint_root_mismatch size 200",
        ],
    );

    // The tail cut past an issued receipt, with the later checkpoint,
    // proof and anchor removed too so that what remains is self-consistent.
    let mut l = f.lines.clone();
    let cut = entry_line(&l, 240);
    l.retain(|line| {
        let v: Value = serde_json::from_str(line).unwrap();
        let later_entry = v["type"] == "entry" && v["leaf_index"].as_u64().unwrap() >= 240;
        let later_cp = v["type"] == "checkpoint" && v["note"].as_str().unwrap().contains("\n300\n");
        let later_proof = v["type"] == "consistency" && v["to"] == 300;
        let anchor = v["type"] == "anchor";
        !(later_entry || later_cp || later_proof || anchor)
    });
    assert!(cut < l.len());
    check(
        "truncate",
        &l,
        vkey,
        &[
            "receipt_not_included 250",
            "unsigned_tail entries 200..240 are in no checkpoint",
        ],
    );

    // A checkpoint replaced by one with the same content signed by another key.
    let mut l = f.lines.clone();
    let other = AuditSigner::generate(ORIGIN).unwrap();
    let c = checkpoint_line(&l, 100);
    set(&mut l, c, |v| {
        let cp = vkey
            .open_checkpoint(v["note"].as_str().unwrap(), Some(ORIGIN))
            .unwrap();
        v["note"] = cp.sign(&other).unwrap().into();
    });
    let line_no = c + 1;
    check(
        "other key",
        &l,
        vkey,
        &[
            &format!("bad_signature line {line_no}"),
            "consistency_proof_unknown_checkpoint 50->100",
        ],
    );

    // A forged consistency proof.
    let mut l = f.lines.clone();
    let p = line_of(&l, |v| v["type"] == "consistency" && v["from"] == 100);
    set(&mut l, p, |v| {
        let first = v["proof"][0].as_str().unwrap().to_owned();
        let mut h = unb64(&first);
        h[5] ^= 0x40;
        v["proof"][0] = b64(&h).into();
    });
    check(
        "forged consistency",
        &l,
        vkey,
        &["consistency_proof_invalid 100->200"],
    );

    // A consistency proof dropped.
    let mut l = f.lines.clone();
    l.remove(p);
    check(
        "missing consistency",
        &l,
        vkey,
        &["consistency_proof_missing 100->200"],
    );

    // A checkpoint at a size beyond the entries (log grew, export cut).
    let mut l = f.lines.clone();
    l.retain(|line| !line.contains("\"leaf_index\":299,"));
    check(
        "entries beyond",
        &l,
        vkey,
        &["checkpoint_beyond_entries size 300 > 299 entries"],
    );

    // The whole bundle checked against another pinned key.
    check(
        "pinned other key",
        &f.lines,
        &other.verifier_key(),
        &[
            "bad_signature line 52",
            "no_checkpoint no signed checkpoint covers the entries",
        ],
    );
    let _ = &f.key;
}

#[test]
fn malformed_bundles_never_panic() {
    let f = build();
    for text in [
        "",
        "\n\n",
        "{}",
        "not json",
        "{\"type\":\"entry\"}",
        "[1,2,3]",
        "{\"type\":\"header\",\"format\":1}",
    ] {
        let r = verify_bundle(text.as_bytes(), &f.vkey);
        assert!(!r.is_valid(), "{text:?} accepted");
    }
    let r = verify_bundle(&[0xff, 0xfe, b'\n', 0x00][..], &f.vkey);
    assert!(r.has("line_malformed"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_bundles_never_panic_and_are_caught(line in 0usize..400, pos in any::<usize>(), byte in any::<u8>()) {
        use std::sync::OnceLock;
        static F: OnceLock<(Vec<u8>, String)> = OnceLock::new();
        let (bytes, vk) = F.get_or_init(|| {
            let f = build();
            ((f.lines.join("\n") + "\n").into_bytes(), f.vkey.as_str().to_owned())
        });
        let vkey = VerifierKey::parse(vk).unwrap();
        let mut m = bytes.clone();
        // Pick a byte inside line `line % lines`.
        let starts: Vec<usize> = std::iter::once(0).chain(m.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).filter(|&i| i < m.len()).collect();
        let start = starts[line % starts.len()];
        let end = m[start..].iter().position(|&b| b == b'\n').map_or(m.len(), |e| start + e);
        let i = start + pos % (end - start).max(1);
        let old = m[i];
        m[i] = byte;
        let r = verify_bundle(&m[..], &vkey);
        // Any real change to the signed content, the leaves or the proofs
        // must be caught; a change JSON ignores (like escaping) may not be.
        if old != byte && r.is_valid() {
            let v: Result<Value, _> = serde_json::from_slice(&m[start..end]);
            let orig: Value = serde_json::from_slice(&bytes[start..end]).unwrap();
            prop_assert!(v.map(|v| v == orig || v["type"] == "anchor" || v["type"] == "header").unwrap_or(false), "undetected change at byte {i}");
        }
    }
}
