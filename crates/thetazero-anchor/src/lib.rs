//! External anchors for thetazero's signed audit checkpoints: the `Anchor`
//! trait, its request and receipt, and the three kinds (none, C2SP
//! tlog-witness, command hook), plus the heartbeat that decides when to
//! anchor. Must not touch a database or sign checkpoints: the caller owns
//! the log, its keys and the stored anchor rows.
//!
//! # Kinds
//!
//! - `none` ([`NoneAnchor`], the default): no network, confirms nothing.
//!   [`Anchor::confirms`] is false, so the caller records no pending anchors
//!   and runs no heartbeat for it.
//! - `witness` ([`WitnessAnchor`]): the client side of C2SP `tlog-witness`.
//!   It sends `old <size>`, the proof lines, a blank line and the note to
//!   `<prefix>/add-checkpoint`, and reports success only once the witness's
//!   signature over the checkpoint body verifies. The signature form follows
//!   the witness key's type: 0x04 is a C2SP `tlog-cosignature` Ed25519
//!   cosignature/v1 (what the spec requires), 0x01 a plain signed-note
//!   Ed25519 signature. Lines from other keys are ignored. A 409 carrying a
//!   size becomes [`AnchorError::WitnessSizeMismatch`]; see
//!   [`anchor_resyncing`].
//! - `command` ([`CommandAnchor`]): an operator hook that publishes the
//!   note and prints a reference (for example a transaction hash).
//!
//! [`Heartbeat`] decides when each log is due; [`build`] turns an
//! [`AnchorConfig`] into an anchor.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

mod command;
mod config;
mod error;
pub mod heartbeat;
mod witness;

pub use command::{CommandAnchor, MAX_REF_BYTES, STDERR_TAIL_BYTES, STDOUT_LIMIT_BYTES};
pub use config::{build, AnchorConfig, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
pub use error::{AnchorError, ConfigError};
pub use heartbeat::{
    AnchorStatus, Attempt, Clock, Due, DueReason, Heartbeat, LogAnchorState, SystemClock,
};
pub use witness::{
    cosignature_v1_message, WitnessAnchor, WitnessKey, WitnessKeyKind, MAX_PROOF_LINES,
    MAX_RESPONSE_BYTES,
};

/// What to anchor: one signed checkpoint of one log, and the proof that it
/// extends the tree this anchor last confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorRequest {
    /// The log's origin line, which the checkpoint must carry.
    pub origin: String,
    /// The signed checkpoint note, exactly as the log signed it.
    pub checkpoint_note: String,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The size this anchor last confirmed for this log, 0 if none.
    pub previous_size: u64,
    /// RFC 6962 consistency proof from `previous_size` to `size`; empty when
    /// `previous_size` is 0 or equals `size`.
    pub consistency_proof: Vec<[u8; 32]>,
}

/// What an anchor confirmed. It is evidence to store beside the checkpoint,
/// not a verdict: a verifier re-checks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnchorReceipt {
    /// A reference outside the log (for example a transaction hash, which
    /// fills `anchor_tx_hash`).
    pub external_ref: Option<String>,
    /// A signed-note signature line (without its final newline) that a
    /// verifier can append to the checkpoint note.
    pub cosignature: Option<String>,
    /// Kind-specific facts worth keeping (witness name, timestamp, ...).
    pub detail: serde_json::Value,
}

/// An external anchor for checkpoints.
#[async_trait]
pub trait Anchor: Send + Sync {
    /// Stable name of the kind: `none`, `witness` or `command`.
    fn kind(&self) -> &'static str;

    /// Whether this anchor can confirm anything. The caller records pending
    /// anchors and runs the heartbeat only for anchors that do; for the
    /// `none` kind the signed checkpoints are all there is.
    fn confirms(&self) -> bool {
        true
    }

    async fn anchor(&self, req: AnchorRequest) -> Result<AnchorReceipt, AnchorError>;
}

/// The default anchor: none. It needs no network and confirms nothing, so
/// verifiers rely on signed checkpoints only. Calling it is a caller bug and
/// is refused rather than reported as a confirmation.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoneAnchor;

#[async_trait]
impl Anchor for NoneAnchor {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn confirms(&self) -> bool {
        false
    }

    async fn anchor(&self, _req: AnchorRequest) -> Result<AnchorReceipt, AnchorError> {
        Err(AnchorError::Disabled)
    }
}

/// Anchors `req`; if a witness answers that it holds another size, asks
/// `prove(old, new)` for a consistency proof from that size and tries once
/// more. `prove` returns `None` when it cannot prove from that size (for
/// example the witness is ahead of `req.size`), and the first error stands.
pub async fn anchor_resyncing<F>(
    anchor: &dyn Anchor,
    req: AnchorRequest,
    prove: F,
) -> Result<AnchorReceipt, AnchorError>
where
    F: FnOnce(u64, u64) -> Option<Vec<[u8; 32]>> + Send,
{
    let retry = req.clone();
    match anchor.anchor(req).await {
        Err(e) => {
            let Some(witness_size) = e.witness_size() else {
                return Err(e);
            };
            if witness_size > retry.size || witness_size == retry.previous_size {
                return Err(e);
            }
            let proof = if witness_size == 0 || witness_size == retry.size {
                Some(Vec::new())
            } else {
                prove(witness_size, retry.size)
            };
            let Some(consistency_proof) = proof else {
                return Err(e);
            };
            anchor
                .anchor(AnchorRequest {
                    previous_size: witness_size,
                    consistency_proof,
                    ..retry
                })
                .await
        }
        ok => ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn none_confirms_nothing() {
        let a = NoneAnchor;
        assert_eq!(a.kind(), "none");
        assert!(!a.confirms());
        let err = a
            .anchor(AnchorRequest {
                origin: "o".into(),
                checkpoint_note: String::new(),
                size: 1,
                previous_size: 0,
                consistency_proof: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "anchor_disabled");
        assert!(!err.is_retryable());
    }
}
