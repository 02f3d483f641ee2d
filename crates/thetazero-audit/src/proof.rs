//! The proof for one audit record as served by
//! `GET .../audit/records/:id/proof`, and the client-side check of it.
//! The check must rely only on the pinned verifier key and what the client
//! saw before, never on the server's own `chain_valid` claim.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::checkpoint::{Checkpoint, CheckpointError, VerifierKey};
use crate::encoding::{hash_b64, hash_from_b64, unb64};
use crate::leaf::MAX_LEAF_BYTES;
use crate::merkle::{self, Hash, MAX_PROOF_HASHES};

/// Wire shape of a record proof. Field names are part of the API. Unknown
/// fields are ignored so a newer server can add some; nothing here is
/// trusted until [`verify_record_proof`] has checked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordProof {
    pub record_id: i64,
    pub log_origin: String,
    pub leaf_index: u64,
    /// The exact leaf bytes, base64.
    pub leaf_b64: String,
    /// `SHA-256(0x00 || leaf)`, base64.
    pub leaf_hash: String,
    /// Signed checkpoint note the inclusion proof is against.
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
    pub consistency_to_latest: Option<ConsistencyToLatest>,
    pub anchors: Vec<Anchor>,
    pub anchor_tx_hash: Option<String>,
    /// The server's own verdict, kept for the spec's shape. Clients compute
    /// theirs with [`verify_record_proof`].
    pub chain_valid: bool,
    pub verified_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyToLatest {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
    pub latest_checkpoint: String,
}

/// An external anchor of a checkpoint (witness cosignature, timestamp,
/// published transaction, write-once file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub kind: String,
    pub checkpoint_size: u64,
    /// `pending`, `confirmed` or `failed`.
    pub status: String,
    pub external_ref: Option<String>,
}

/// What a successful check established.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub leaf_index: u64,
    pub leaf_hash: Hash,
    pub leaf: Vec<u8>,
    /// The checkpoint the record was proven against.
    pub checkpoint: Checkpoint,
    /// The newest checkpoint proven consistent with it; the client should
    /// remember it if it is larger than what it had.
    pub latest: Checkpoint,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("leaf_b64 is not base64 or is too large")]
    MalformedLeaf,
    #[error("{0} is not a base64 SHA-256 hash")]
    MalformedHash(&'static str),
    #[error("leaf_hash does not match the hash of the leaf bytes")]
    LeafHashMismatch,
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("checkpoint signature does not verify with the pinned key")]
    BadSignature,
    #[error("checkpoint is not signed by the pinned key")]
    UnknownKey,
    #[error("checkpoint origin {got:?} is not the record's log {want:?}")]
    OriginMismatch { want: String, got: String },
    #[error("leaf index {index} is not below checkpoint size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("inclusion proof does not lead to the checkpoint root")]
    InclusionProofInvalid,
    #[error("consistency proof starts at {from}, not at the checkpoint size {size}")]
    ConsistencyFromMismatch { from: u64, size: u64 },
    #[error("consistency proof ends at {to}, not at the latest checkpoint size {size}")]
    ConsistencyToMismatch { to: u64, size: u64 },
    #[error("latest checkpoint: {0}")]
    LatestCheckpoint(String),
    #[error("consistency proof to the latest checkpoint does not verify")]
    ConsistencyProofInvalid,
    #[error("checkpoint seen before (size {seen}) is for another log")]
    SeenOriginMismatch { seen: u64 },
    #[error("log forked: the checkpoint seen before at size {size} has another root")]
    SeenFork { size: u64 },
    #[error("no proof links the checkpoint seen before (size {seen}) to the latest (size {latest}); fetch a consistency proof and check it with merkle::verify_consistency")]
    SeenNotLinked { seen: u64, latest: u64 },
}

fn decode_hashes(list: &[String], what: &'static str) -> Result<Vec<Hash>, VerifyError> {
    if list.len() > MAX_PROOF_HASHES {
        return Err(VerifyError::MalformedHash(what));
    }
    list.iter()
        .map(|s| hash_from_b64(s).ok_or(VerifyError::MalformedHash(what)))
        .collect()
}

fn open(
    key: &VerifierKey,
    note: &str,
    origin: &str,
    wrap: fn(String) -> VerifyError,
) -> Result<Checkpoint, VerifyError> {
    key.open_checkpoint(note, Some(origin))
        .map_err(|e| match e {
            CheckpointError::BadSignature => VerifyError::BadSignature,
            CheckpointError::UnknownKey => VerifyError::UnknownKey,
            CheckpointError::OriginMismatch { want, got } => {
                VerifyError::OriginMismatch { want, got }
            }
            other => wrap(other.to_string()),
        })
}

/// Checks a record proof against the pinned verifier key: the leaf hash, the
/// checkpoint signature and origin, inclusion, consistency to the latest
/// checkpoint, and consistency with `largest_seen`, the largest checkpoint
/// this client accepted before for the same log.
pub fn verify_record_proof(
    p: &RecordProof,
    key: &VerifierKey,
    largest_seen: Option<&Checkpoint>,
) -> Result<Verified, VerifyError> {
    // Base64 inflates by 4/3; refuse oversized text before decoding it.
    if p.leaf_b64.len() > MAX_LEAF_BYTES * 4 / 3 + 4 {
        return Err(VerifyError::MalformedLeaf);
    }
    let leaf = unb64(&p.leaf_b64).ok_or(VerifyError::MalformedLeaf)?;
    let claimed = hash_from_b64(&p.leaf_hash).ok_or(VerifyError::MalformedHash("leaf_hash"))?;
    let leaf_hash = merkle::leaf_hash(&leaf);
    if leaf_hash != claimed {
        return Err(VerifyError::LeafHashMismatch);
    }

    let cp = open(key, &p.checkpoint, &p.log_origin, VerifyError::Checkpoint)?;
    if p.leaf_index >= cp.size {
        return Err(VerifyError::IndexOutOfRange {
            index: p.leaf_index,
            size: cp.size,
        });
    }
    let path = decode_hashes(&p.inclusion_proof, "inclusion_proof")?;
    merkle::verify_inclusion(&path, cp.size, cp.root, p.leaf_index, leaf_hash)
        .map_err(|_| VerifyError::InclusionProofInvalid)?;

    let latest = match &p.consistency_to_latest {
        None => cp.clone(),
        Some(c) => {
            let latest = open(
                key,
                &c.latest_checkpoint,
                &p.log_origin,
                VerifyError::LatestCheckpoint,
            )?;
            if c.from != cp.size {
                return Err(VerifyError::ConsistencyFromMismatch {
                    from: c.from,
                    size: cp.size,
                });
            }
            if c.to != latest.size {
                return Err(VerifyError::ConsistencyToMismatch {
                    to: c.to,
                    size: latest.size,
                });
            }
            let proof = decode_hashes(&c.proof, "consistency_to_latest.proof")?;
            merkle::verify_consistency(&proof, cp.size, cp.root, latest.size, latest.root)
                .map_err(|_| VerifyError::ConsistencyProofInvalid)?;
            latest
        }
    };

    if let Some(seen) = largest_seen {
        check_seen(seen, &cp, &latest)?;
    }

    Ok(Verified {
        leaf_index: p.leaf_index,
        leaf_hash,
        leaf,
        checkpoint: cp,
        latest,
    })
}

/// The proof material links the checkpoint and the latest one; a checkpoint
/// seen before is linked when it is one of them (same size, same root).
/// Anything else needs a separate consistency proof, and guessing would let
/// a forked view through.
fn check_seen(seen: &Checkpoint, cp: &Checkpoint, latest: &Checkpoint) -> Result<(), VerifyError> {
    if seen.origin != cp.origin {
        return Err(VerifyError::SeenOriginMismatch { seen: seen.size });
    }
    for known in [cp, latest] {
        if known.size == seen.size {
            return if known.root == seen.root {
                Ok(())
            } else {
                Err(VerifyError::SeenFork { size: seen.size })
            };
        }
    }
    Err(VerifyError::SeenNotLinked {
        seen: seen.size,
        latest: latest.size,
    })
}

impl RecordProof {
    /// Builds the wire form; the server fills `anchors`, `anchor_tx_hash`,
    /// `chain_valid` and `verified_at` afterwards.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        record_id: i64,
        log_origin: &str,
        leaf_index: u64,
        leaf: &[u8],
        checkpoint_note: &str,
        inclusion: &[Hash],
        consistency: Option<(u64, u64, &[Hash], &str)>,
    ) -> Self {
        RecordProof {
            record_id,
            log_origin: log_origin.to_owned(),
            leaf_index,
            leaf_b64: crate::encoding::b64(leaf),
            leaf_hash: hash_b64(&merkle::leaf_hash(leaf)),
            checkpoint: checkpoint_note.to_owned(),
            inclusion_proof: inclusion.iter().map(hash_b64).collect(),
            consistency_to_latest: consistency.map(|(from, to, proof, note)| ConsistencyToLatest {
                from,
                to,
                proof: proof.iter().map(hash_b64).collect(),
                latest_checkpoint: note.to_owned(),
            }),
            anchors: Vec::new(),
            anchor_tx_hash: None,
            chain_valid: false,
            verified_at: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{AuditSigner, CheckpointSigner};
    use crate::merkle::MemoryHashStore;

    const ORIGIN: &str = "tz.example/audit/7";

    struct Fixture {
        store: MemoryHashStore,
        leaves: Vec<Vec<u8>>,
        signer: CheckpointSigner,
        vkey: VerifierKey,
        notes: Vec<(u64, String)>,
    }

    fn fixture() -> Fixture {
        let key = AuditSigner::generate(ORIGIN).unwrap();
        let vkey = key.verifier_key();
        let mut signer = CheckpointSigner::new(key, ORIGIN);
        let mut store = MemoryHashStore::new();
        let mut leaves = Vec::new();
        let mut notes = Vec::new();
        for i in 0..120u64 {
            let leaf = crate::leaf::tests::sample(i as i64).to_bytes().unwrap();
            store.push(&leaf).unwrap();
            leaves.push(leaf);
            if [10, 64, 100, 120].contains(&(i + 1)) {
                notes.push((i + 1, signer.sign_from_store(i + 1, &store).unwrap()));
            }
        }
        Fixture {
            store,
            leaves,
            signer,
            vkey,
            notes,
        }
    }

    fn note(f: &Fixture, size: u64) -> &str {
        &f.notes.iter().find(|(s, _)| *s == size).unwrap().1
    }

    fn proof(f: &Fixture, index: u64, at: u64, latest: Option<u64>) -> RecordProof {
        let inc = merkle::inclusion_proof(at, index, &f.store).unwrap();
        let cons = latest.map(|l| merkle::consistency_proof(at, l, &f.store).unwrap());
        RecordProof::new(
            1000 + index as i64,
            ORIGIN,
            index,
            &f.leaves[index as usize],
            note(f, at),
            &inc,
            latest.map(|l| (at, l, cons.as_deref().unwrap(), note(f, l))),
        )
    }

    fn cp(f: &Fixture, size: u64) -> Checkpoint {
        f.vkey.open_checkpoint(note(f, size), Some(ORIGIN)).unwrap()
    }

    fn check(
        p: &RecordProof,
        f: &Fixture,
        seen: Option<&Checkpoint>,
        want: Result<u64, VerifyError>,
    ) {
        let got = verify_record_proof(p, &f.vkey, seen).map(|v| v.latest.size);
        assert_eq!(got, want);
    }

    #[test]
    fn record_proofs() {
        let f = fixture();
        let good = proof(&f, 42, 64, Some(120));
        check(&good, &f, None, Ok(120));
        check(&proof(&f, 5, 10, None), &f, None, Ok(10));
        check(&good, &f, Some(&cp(&f, 64)), Ok(120));
        check(&good, &f, Some(&cp(&f, 120)), Ok(120));
        check(
            &good,
            &f,
            Some(&cp(&f, 100)),
            Err(VerifyError::SeenNotLinked {
                seen: 100,
                latest: 120,
            }),
        );

        // JSON round trip keeps the exact field names.
        let json = serde_json::to_value(&good).unwrap();
        for k in [
            "record_id",
            "log_origin",
            "leaf_index",
            "leaf_b64",
            "leaf_hash",
            "checkpoint",
            "inclusion_proof",
            "consistency_to_latest",
            "anchors",
            "anchor_tx_hash",
            "chain_valid",
            "verified_at",
        ] {
            assert!(json.get(k).is_some(), "missing {k}");
        }
        let back: RecordProof = serde_json::from_value(json).unwrap();
        assert_eq!(back, good);

        let mut p = good.clone();
        p.leaf_index = 43;
        check(&p, &f, None, Err(VerifyError::InclusionProofInvalid));
        p.leaf_index = 41;
        check(&p, &f, None, Err(VerifyError::InclusionProofInvalid));
        p.leaf_index = 64;
        check(
            &p,
            &f,
            None,
            Err(VerifyError::IndexOutOfRange {
                index: 64,
                size: 64,
            }),
        );

        let mut p = good.clone();
        p.leaf_b64 = crate::encoding::b64(&f.leaves[43]);
        check(&p, &f, None, Err(VerifyError::LeafHashMismatch));
        p.leaf_hash = hash_b64(&merkle::leaf_hash(&f.leaves[43]));
        check(&p, &f, None, Err(VerifyError::InclusionProofInvalid));

        let mut p = good.clone();
        p.inclusion_proof[2] = hash_b64(&Hash([0; 32]));
        check(&p, &f, None, Err(VerifyError::InclusionProofInvalid));
        p.inclusion_proof[2] = "!!".into();
        check(
            &p,
            &f,
            None,
            Err(VerifyError::MalformedHash("inclusion_proof")),
        );

        let mut p = good.clone();
        p.checkpoint = note(&f, 100).to_owned();
        check(&p, &f, None, Err(VerifyError::InclusionProofInvalid));

        let mut p = good.clone();
        p.checkpoint = p.checkpoint.replacen("\n64\n", "\n65\n", 1);
        check(&p, &f, None, Err(VerifyError::BadSignature));

        let other = AuditSigner::generate(ORIGIN).unwrap();
        let mut p = good.clone();
        p.checkpoint = cp(&f, 64).sign(&other).unwrap();
        check(&p, &f, None, Err(VerifyError::UnknownKey));

        let mut p = good.clone();
        p.log_origin = "tz.example/audit/8".into();
        assert!(matches!(
            verify_record_proof(&p, &f.vkey, None),
            Err(VerifyError::OriginMismatch { .. })
        ));

        let mut p = good.clone();
        p.consistency_to_latest.as_mut().unwrap().proof[0] = hash_b64(&Hash([1; 32]));
        check(&p, &f, None, Err(VerifyError::ConsistencyProofInvalid));
        let mut p = good.clone();
        p.consistency_to_latest.as_mut().unwrap().from = 63;
        check(
            &p,
            &f,
            None,
            Err(VerifyError::ConsistencyFromMismatch { from: 63, size: 64 }),
        );
        let mut p = good.clone();
        p.consistency_to_latest.as_mut().unwrap().latest_checkpoint = note(&f, 100).to_owned();
        check(
            &p,
            &f,
            None,
            Err(VerifyError::ConsistencyToMismatch { to: 120, size: 100 }),
        );

        // A client that saw a checkpoint from a forked view rejects this one.
        let forked = Checkpoint {
            root: Hash([5; 32]),
            ..cp(&f, 120)
        };
        check(
            &good,
            &f,
            Some(&forked),
            Err(VerifyError::SeenFork { size: 120 }),
        );
        let elsewhere = Checkpoint {
            origin: "x".into(),
            ..cp(&f, 120)
        };
        check(
            &good,
            &f,
            Some(&elsewhere),
            Err(VerifyError::SeenOriginMismatch { seen: 120 }),
        );
        let _ = &f.signer;
    }

    #[test]
    fn garbage_never_panics() {
        let f = fixture();
        let good = proof(&f, 42, 64, Some(120));
        let mut p = good.clone();
        p.leaf_b64 = "A".repeat(100_000);
        check(&p, &f, None, Err(VerifyError::MalformedLeaf));
        let mut p = good.clone();
        p.inclusion_proof = vec![hash_b64(&Hash([0; 32])); 10_000];
        check(
            &p,
            &f,
            None,
            Err(VerifyError::MalformedHash("inclusion_proof")),
        );
        let mut p = good;
        p.checkpoint = "\u{2014}\n\n\n".into();
        assert!(verify_record_proof(&p, &f.vkey, None).is_err());
        for s in ["", "{}", "[]", "{\"record_id\":1}", "null"] {
            assert!(serde_json::from_str::<RecordProof>(s).is_err());
        }
    }
}
