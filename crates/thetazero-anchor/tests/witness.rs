//! Witness anchor against a local `TestWitness`: first anchor, growth with
//! a proof, forged proofs, stale sizes, bad cosignatures, and a witness that
//! is down or hangs. Must not send traffic beyond 127.0.0.1.

// Tests may unwrap: a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use thetazero_anchor::{
    anchor_resyncing, Anchor, AnchorError, AnchorRequest, WitnessAnchor, WitnessKey,
};
use thetazero_audit::{merkle, AuditSigner, Checkpoint, MemoryHashStore};

use support::test_witness::{cosigner_vkey, Mode, TestWitness};

const ORIGIN: &str = "tz.example/audit/1";

struct Log {
    key: AuditSigner,
    store: MemoryHashStore,
}

impl Log {
    fn new(leaves: u32) -> Self {
        let mut store = MemoryHashStore::new();
        for i in 0..leaves {
            store.push(format!("leaf {i}").as_bytes()).unwrap();
        }
        Log {
            key: AuditSigner::generate(ORIGIN).unwrap(),
            store,
        }
    }

    fn grow(&mut self, to: u32) {
        for i in self.store.len() as u32..to {
            self.store.push(format!("leaf {i}").as_bytes()).unwrap();
        }
    }

    fn note(&self, size: u64) -> String {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: merkle::root(size, &self.store).unwrap(),
        }
        .sign(&self.key)
        .unwrap()
    }

    fn proof(&self, old: u64, new: u64) -> Vec<[u8; 32]> {
        if old == 0 || old == new {
            return Vec::new();
        }
        merkle::consistency_proof(old, new, &self.store)
            .unwrap()
            .into_iter()
            .map(|h| h.0)
            .collect()
    }

    fn request(&self, previous_size: u64) -> AnchorRequest {
        let size = self.store.len();
        AnchorRequest {
            origin: ORIGIN.into(),
            checkpoint_note: self.note(size),
            size,
            previous_size,
            consistency_proof: self.proof(previous_size, size),
        }
    }
}

async fn setup(leaves: u32) -> (Log, TestWitness, WitnessAnchor) {
    let log = Log::new(leaves);
    let witness =
        TestWitness::start("witness.test/w1", 42, &[(ORIGIN, log.key.verifier_key())]).await;
    let anchor = client(&witness.url, &witness.vkey(), Duration::from_secs(10));
    (log, witness, anchor)
}

fn client(url: &str, vkey: &str, timeout: Duration) -> WitnessAnchor {
    WitnessAnchor::new(url, WitnessKey::parse(vkey).unwrap(), timeout).unwrap()
}

#[tokio::test]
async fn first_anchor_then_growth_then_same_size() {
    let (mut log, witness, anchor) = setup(5).await;
    assert_eq!(anchor.kind(), "witness");

    let req = log.request(0);
    let receipt = anchor.anchor(req.clone()).await.unwrap();
    assert_eq!(witness.size(ORIGIN), 5);
    // The wire body is exactly the spec's: old line, no proof, blank line,
    // then the note as signed.
    assert_eq!(
        witness.requests()[0],
        format!("old 0\n\n{}", req.checkpoint_note)
    );
    let line = receipt.cosignature.unwrap();
    assert!(line.starts_with("— witness.test/w1 "), "{line}");
    assert_eq!(receipt.external_ref, None);
    assert_eq!(receipt.detail["signature_type"], "cosignature/v1");
    assert_eq!(receipt.detail["timestamp"], 1_700_000_001u64);

    log.grow(12);
    let receipt = anchor.anchor(log.request(5)).await.unwrap();
    assert_eq!(witness.size(ORIGIN), 12);
    assert_eq!(receipt.detail["previous_size"], 5);
    assert!(witness.requests()[1].starts_with("old 5\n"));

    // Nothing changed: the same checkpoint is cosigned again (the
    // heartbeat's "silence is visible" case).
    anchor.anchor(log.request(12)).await.unwrap();
    assert_eq!(witness.size(ORIGIN), 12);
}

#[tokio::test]
async fn forged_proof_is_a_permanent_error() {
    let (mut log, witness, anchor) = setup(5).await;
    anchor.anchor(log.request(0)).await.unwrap();
    log.grow(12);

    let mut req = log.request(5);
    req.consistency_proof[0][0] ^= 1;
    let err = anchor.anchor(req).await.unwrap_err();
    assert_eq!(err, AnchorError::WitnessBadProof);
    assert!(!err.is_retryable());
    assert_eq!(witness.size(ORIGIN), 5);

    // A history rewritten after leaf 3: its own proof is valid for its own
    // tree, but not from the witnessed root.
    let mut forked = Log {
        key: AuditSigner::parse(&log.key.to_key_string()).unwrap(),
        store: MemoryHashStore::new(),
    };
    for i in 0..12u32 {
        let leaf = if i == 3 {
            "rewritten".to_owned()
        } else {
            format!("leaf {i}")
        };
        forked.store.push(leaf.as_bytes()).unwrap();
    }
    let err = anchor.anchor(forked.request(5)).await.unwrap_err();
    assert_eq!(err.code(), "witness_bad_proof");
    assert_eq!(witness.size(ORIGIN), 5);

    // The honest extension still goes through.
    anchor.anchor(log.request(5)).await.unwrap();
    assert_eq!(witness.size(ORIGIN), 12);
}

#[tokio::test]
async fn stale_previous_size_reports_the_witness_size() {
    let (mut log, witness, anchor) = setup(5).await;
    anchor.anchor(log.request(0)).await.unwrap();
    log.grow(12);
    anchor.anchor(log.request(5)).await.unwrap();
    log.grow(20);

    // The caller believes the witness is still at 5 (or knows nothing).
    for stale in [5, 0] {
        let err = anchor.anchor(log.request(stale)).await.unwrap_err();
        assert_eq!(err, AnchorError::WitnessSizeMismatch { witness_size: 12 });
        assert_eq!(err.witness_size(), Some(12));
        assert!(!err.is_retryable());
    }
    assert_eq!(witness.size(ORIGIN), 12);

    // With a proof from the witness's size the retry succeeds.
    let mut asked = None;
    let receipt = anchor_resyncing(&anchor, log.request(5), |old, new| {
        asked = Some((old, new));
        Some(log.proof(old, new))
    })
    .await
    .unwrap();
    assert_eq!(asked, Some((12, 20)));
    assert_eq!(receipt.detail["previous_size"], 12);
    assert_eq!(witness.size(ORIGIN), 20);

    // A caller that cannot prove from there keeps the first error.
    log.grow(25);
    let err = anchor_resyncing(&anchor, log.request(12), |_, _| None)
        .await
        .unwrap_err();
    assert_eq!(err.witness_size(), Some(20));
}

#[tokio::test]
async fn same_size_with_another_root_is_a_fork() {
    let (log, witness, anchor) = setup(5).await;
    anchor.anchor(log.request(0)).await.unwrap();
    let mut other = Log {
        key: AuditSigner::parse(&log.key.to_key_string()).unwrap(),
        store: MemoryHashStore::new(),
    };
    for i in 0..5u32 {
        other.store.push(format!("other {i}").as_bytes()).unwrap();
    }
    let err = anchor.anchor(other.request(5)).await.unwrap_err();
    assert_eq!(err, AnchorError::WitnessRootMismatch { size: 5 });
    assert_eq!(witness.size(ORIGIN), 5);
}

#[tokio::test]
async fn unknown_log_and_untrusted_signature() {
    let (log, witness, anchor) = setup(5).await;
    let mut req = log.request(0);
    let stranger = AuditSigner::generate("tz.example/audit/2").unwrap();
    req.origin = "tz.example/audit/2".into();
    req.checkpoint_note = Checkpoint {
        origin: req.origin.clone(),
        size: 5,
        root: merkle::root(5, &log.store).unwrap(),
    }
    .sign(&stranger)
    .unwrap();
    assert_eq!(
        anchor.anchor(req).await.unwrap_err(),
        AnchorError::WitnessUnknownLog
    );

    // The right origin signed by a key the witness does not trust.
    let impostor = AuditSigner::generate(ORIGIN).unwrap();
    let mut req = log.request(0);
    req.checkpoint_note = Checkpoint {
        origin: ORIGIN.into(),
        size: 5,
        root: merkle::root(5, &log.store).unwrap(),
    }
    .sign(&impostor)
    .unwrap();
    let err = anchor.anchor(req).await.unwrap_err();
    assert_eq!(err, AnchorError::WitnessForbidden);
    assert!(!err.is_retryable());
    assert_eq!(witness.size(ORIGIN), 0);
}

#[tokio::test]
async fn bad_cosignatures_are_rejected() {
    let (log, witness, anchor) = setup(5).await;
    witness.set_mode(Mode::BadCosignature);
    let err = anchor.anchor(log.request(0)).await.unwrap_err();
    assert_eq!(err.code(), "witness_bad_cosignature");
    assert!(!err.is_retryable());

    // An honest witness whose key is not the one configured: its line is
    // from an unknown key, so nothing vouches for the checkpoint.
    witness.set_mode(Mode::Honest);
    let other = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let wrong = client(
        &witness.url,
        &cosigner_vkey("witness.test/w1", &other),
        Duration::from_secs(10),
    );
    let err = wrong.anchor(log.request(5)).await.unwrap_err();
    assert_eq!(err.code(), "witness_bad_cosignature");
}

#[tokio::test]
async fn witness_down_or_overloaded_is_retryable() {
    let log = Log::new(3);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = cosigner_vkey(
        "witness.test/w1",
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
    );
    let down = client(&format!("http://{addr}/w"), &key, Duration::from_secs(10));
    let err = down.anchor(log.request(0)).await.unwrap_err();
    assert_eq!(err.code(), "anchor_network", "{err}");
    assert!(err.is_retryable());

    let (log, witness, anchor) = setup(3).await;
    for (code, want, retryable) in [
        (503, "witness_unavailable", true),
        (500, "witness_unavailable", true),
        (429, "witness_unavailable", true),
        (400, "witness_bad_request", false),
        (418, "witness_unexpected_status", false),
        (301, "witness_unexpected_status", false),
    ] {
        witness.set_mode(Mode::Status(code));
        let err = anchor.anchor(log.request(0)).await.unwrap_err();
        assert_eq!(
            (err.code(), err.is_retryable()),
            (want, retryable),
            "HTTP {code}"
        );
    }
}

#[tokio::test]
async fn hanging_witness_times_out() {
    let (log, witness, _) = setup(3).await;
    witness.set_mode(Mode::Hang);
    let anchor = client(&witness.url, &witness.vkey(), Duration::from_millis(300));
    let err = anchor.anchor(log.request(0)).await.unwrap_err();
    assert_eq!(err, AnchorError::Timeout(Duration::from_millis(300)));
    assert!(err.is_retryable());
    assert_eq!(witness.requests().len(), 1);
}
