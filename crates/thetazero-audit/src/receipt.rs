//! Signed execution receipts for `verifyExecution`: what ran (code hash,
//! input and output digests, limits, isolation mode) and where its audit
//! events sit in the log, signed as a note whose body is canonical JSON.
//! Must not claim more than it checks: `tee_mode` is reported, not attested.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::checkpoint::{AuditSigner, Checkpoint, CheckpointError, VerifierKey};
use crate::encoding::hex;
use crate::leaf::{Digest, MAX_SAFE_INTEGER};

pub const RECEIPT_TYPE: &str = "tz.execution-receipt.v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionReceipt {
    #[serde(rename = "type")]
    pub receipt_type: String,
    pub execution_id: i64,
    pub agent_id: i64,
    pub agent_version: String,
    pub code_hash: Digest,
    pub input_digest: Digest,
    pub output_digest: Option<Digest>,
    /// The limits in force, e.g. `{"memory_limit_mb":128,...}`.
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// How the code was isolated, e.g. `in_process`. Reported by the
    /// server, not proven by hardware.
    pub tee_mode: String,
    pub audit_first_leaf: u64,
    pub audit_last_leaf: u64,
    /// Signed checkpoint note covering the audit range.
    pub checkpoint: String,
}

#[derive(Debug, Error)]
pub enum ReceiptError {
    #[error("receipt body is not a valid {RECEIPT_TYPE}: {0}")]
    Malformed(String),
    #[error("receipt body is not canonical JSON")]
    NotCanonical,
    #[error("receipt signature: {0}")]
    Signature(CheckpointError),
    #[error("receipt checkpoint: {0}")]
    Checkpoint(CheckpointError),
    #[error("audit range {first}..={last} is not inside the checkpoint of size {size}")]
    RangeNotCovered { first: u64, last: u64, size: u64 },
    #[error("encoding: {0}")]
    Encode(String),
}

/// A receipt whose signature, embedded checkpoint and range all checked out.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReceipt {
    pub receipt: ExecutionReceipt,
    pub checkpoint: Checkpoint,
    /// Hex SHA-256 of the note body (canonical JSON plus its final newline).
    pub attestation_id: String,
}

impl ExecutionReceipt {
    fn validate(&self) -> Result<(), ReceiptError> {
        let bad = |m: &str| Err(ReceiptError::Malformed(m.to_owned()));
        if self.receipt_type != RECEIPT_TYPE {
            return bad("wrong type");
        }
        for v in [self.execution_id, self.agent_id] {
            if !(0..=MAX_SAFE_INTEGER).contains(&v) {
                return bad("id out of range");
            }
        }
        if self.audit_first_leaf > self.audit_last_leaf {
            return bad("audit range is reversed");
        }
        if self.tee_mode.is_empty() || self.tee_mode.len() > 64 || self.agent_version.len() > 128 {
            return bad("tee_mode or agent_version length");
        }
        Ok(())
    }

    /// The note body: canonical JSON and a newline.
    pub fn body(&self) -> Result<Vec<u8>, ReceiptError> {
        self.validate()?;
        let mut b = serde_jcs::to_vec(self).map_err(|e| ReceiptError::Encode(e.to_string()))?;
        b.push(b'\n');
        Ok(b)
    }

    /// Signs the receipt; returns the signed note and its attestation id.
    pub fn sign(&self, key: &AuditSigner) -> Result<(String, String), ReceiptError> {
        let body = self.body()?;
        let note = key.sign_note(&body).map_err(ReceiptError::Signature)?;
        Ok((note, attestation_id(&body)))
    }
}

fn attestation_id(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// Verifies a signed receipt with the pinned key: signature, canonical body,
/// the embedded checkpoint (same key), and that the audit range lies inside
/// that checkpoint, so the events can then be proven with record proofs.
pub fn verify_receipt(note: &str, key: &VerifierKey) -> Result<VerifiedReceipt, ReceiptError> {
    let body = key.open(note.as_bytes()).map_err(ReceiptError::Signature)?;
    let json = body
        .strip_suffix(b"\n")
        .ok_or_else(|| ReceiptError::Malformed("no final newline".into()))?;
    let receipt: ExecutionReceipt =
        serde_json::from_slice(json).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if receipt.body()? != body {
        return Err(ReceiptError::NotCanonical);
    }
    let checkpoint = key
        .open_checkpoint(&receipt.checkpoint, None)
        .map_err(ReceiptError::Checkpoint)?;
    if receipt.audit_last_leaf >= checkpoint.size {
        return Err(ReceiptError::RangeNotCovered {
            first: receipt.audit_first_leaf,
            last: receipt.audit_last_leaf,
            size: checkpoint.size,
        });
    }
    Ok(VerifiedReceipt {
        attestation_id: attestation_id(&body),
        receipt,
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::Hash;

    fn setup() -> (AuditSigner, ExecutionReceipt) {
        let key = AuditSigner::generate("tz.example/audit/7").unwrap();
        let cp = Checkpoint {
            origin: "tz.example/audit/7".into(),
            size: 50,
            root: Hash([3; 32]),
        };
        let mut limits = serde_json::Map::new();
        limits.insert("memory_limit_mb".into(), 128.into());
        limits.insert("cpu_time_limit_ms".into(), 30000.into());
        limits.insert("allow_network".into(), false.into());
        let r = ExecutionReceipt {
            receipt_type: RECEIPT_TYPE.into(),
            execution_id: 4821,
            agent_id: 42,
            agent_version: "1.0.0".into(),
            code_hash: Digest::of(b"code"),
            input_digest: Digest::of(b"in"),
            output_digest: Some(Digest::of(b"out")),
            limits,
            tee_mode: "in_process".into(),
            audit_first_leaf: 40,
            audit_last_leaf: 49,
            checkpoint: cp.sign(&key).unwrap(),
        };
        (key, r)
    }

    #[test]
    fn sign_and_verify() {
        let (key, r) = setup();
        let (note, id) = r.sign(&key).unwrap();
        assert_eq!(id.len(), 64);
        let v = verify_receipt(&note, &key.verifier_key()).unwrap();
        assert_eq!(v.receipt, r);
        assert_eq!(v.attestation_id, id);
        assert_eq!(v.checkpoint.size, 50);
        // The body is canonical JSON: keys sorted, checkpoint newlines escaped.
        assert!(
            note.starts_with(
                "{\"agent_id\":42,\"agent_version\":\"1.0.0\",\"audit_first_leaf\":40,"
            ),
            "{note}"
        );
    }

    #[test]
    fn rejections() {
        let (key, r) = setup();
        let vkey = key.verifier_key();
        let (note, _) = r.sign(&key).unwrap();

        let tampered = note.replace("\"tee_mode\":\"in_process\"", "\"tee_mode\":\"theta_tee\"");
        assert!(matches!(
            verify_receipt(&tampered, &vkey),
            Err(ReceiptError::Signature(CheckpointError::BadSignature))
        ));

        let other = AuditSigner::generate("tz.example/audit/7").unwrap();
        assert!(matches!(
            verify_receipt(&note, &other.verifier_key()),
            Err(ReceiptError::Signature(CheckpointError::UnknownKey))
        ));

        let mut r2 = r.clone();
        r2.audit_last_leaf = 50;
        let (n2, _) = r2.sign(&key).unwrap();
        assert!(matches!(
            verify_receipt(&n2, &vkey),
            Err(ReceiptError::RangeNotCovered { size: 50, .. })
        ));

        let mut r3 = r.clone();
        r3.checkpoint = Checkpoint {
            origin: "x".into(),
            size: 99,
            root: Hash([0; 32]),
        }
        .sign(&other)
        .unwrap();
        let (n3, _) = r3.sign(&key).unwrap();
        assert!(matches!(
            verify_receipt(&n3, &vkey),
            Err(ReceiptError::Checkpoint(_))
        ));

        let mut r4 = r.clone();
        r4.audit_first_leaf = 60;
        assert!(r4.sign(&key).is_err());

        // A validly signed but non-canonical body is refused.
        let body = format!(
            "{} \n",
            String::from_utf8(r.body().unwrap()).unwrap().trim_end()
        );
        let n5 = key.sign_note(body.as_bytes()).unwrap();
        assert!(matches!(
            verify_receipt(&n5, &vkey),
            Err(ReceiptError::NotCanonical)
        ));
        let n6 = key.sign_note(b"{}\n").unwrap();
        assert!(matches!(
            verify_receipt(&n6, &vkey),
            Err(ReceiptError::Malformed(_))
        ));
    }
}
