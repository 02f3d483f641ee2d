//! Anchor errors with stable codes and a retryable/permanent split. Must not
//! carry secrets or unbounded text from the remote side.

use std::time::Duration;

use thiserror::Error;

/// Why an anchor did not confirm a checkpoint.
///
/// [`AnchorError::is_retryable`] says whether the same request may succeed
/// later (network, timeout, 5xx, a failing hook); the others need a change
/// first (a new proof, configuration, or an operator looking at a witness
/// that misbehaves).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AnchorError {
    #[error("anchoring is disabled (kind none): checkpoints are signed only")]
    Disabled,
    #[error("invalid anchor request: {0}")]
    InvalidRequest(String),
    #[error("network error: {0}")]
    Network(String),
    #[error("anchor did not answer within {0:?}")]
    Timeout(Duration),
    #[error("witness unavailable (HTTP {status})")]
    WitnessUnavailable { status: u16 },
    /// The witness holds another size for this log (HTTP 409 with a size).
    /// Retry with `previous_size = witness_size` and a proof from it.
    #[error("witness holds size {witness_size}, not the request's previous size")]
    WitnessSizeMismatch { witness_size: u64 },
    /// HTTP 409 at the size the witness already holds: its root differs from
    /// ours. Either the witness or this log forked; never retried.
    #[error("witness holds a different root at size {size}")]
    WitnessRootMismatch { size: u64 },
    #[error("witness conflict without a usable size: {0}")]
    WitnessConflict(String),
    #[error("witness rejected the consistency proof (HTTP 422)")]
    WitnessBadProof,
    #[error("witness does not trust this log's signature (HTTP 403)")]
    WitnessForbidden,
    #[error("witness does not know this log (HTTP 404)")]
    WitnessUnknownLog,
    #[error("witness refused the request as malformed (HTTP 400)")]
    WitnessBadRequest,
    #[error("witness answered with unexpected HTTP {status}")]
    WitnessUnexpectedStatus { status: u16 },
    #[error("witness cosignature does not verify: {0}")]
    WitnessBadCosignature(String),
    #[error("witness response is malformed: {0}")]
    WitnessBadResponse(String),
    #[error("could not start the anchor command: {0}")]
    CommandSpawn(String),
    #[error("anchor command failed ({status}): {stderr_tail}")]
    CommandFailed { status: String, stderr_tail: String },
    #[error("anchor command wrote more than {limit} bytes to stdout")]
    CommandOutputTooLarge { limit: usize },
    #[error("anchor command output is not a usable reference: {0}")]
    CommandBadOutput(String),
    #[error("anchor command I/O: {0}")]
    CommandIo(String),
}

impl AnchorError {
    /// A stable snake_case name for storage, metrics and the API.
    pub fn code(&self) -> &'static str {
        match self {
            AnchorError::Disabled => "anchor_disabled",
            AnchorError::InvalidRequest(_) => "anchor_invalid_request",
            AnchorError::Network(_) => "anchor_network",
            AnchorError::Timeout(_) => "anchor_timeout",
            AnchorError::WitnessUnavailable { .. } => "witness_unavailable",
            AnchorError::WitnessSizeMismatch { .. } => "witness_size_mismatch",
            AnchorError::WitnessRootMismatch { .. } => "witness_root_mismatch",
            AnchorError::WitnessConflict(_) => "witness_conflict",
            AnchorError::WitnessBadProof => "witness_bad_proof",
            AnchorError::WitnessForbidden => "witness_forbidden",
            AnchorError::WitnessUnknownLog => "witness_unknown_log",
            AnchorError::WitnessBadRequest => "witness_bad_request",
            AnchorError::WitnessUnexpectedStatus { .. } => "witness_unexpected_status",
            AnchorError::WitnessBadCosignature(_) => "witness_bad_cosignature",
            AnchorError::WitnessBadResponse(_) => "witness_bad_response",
            AnchorError::CommandSpawn(_) => "command_spawn",
            AnchorError::CommandFailed { .. } => "command_failed",
            AnchorError::CommandOutputTooLarge { .. } => "command_output_too_large",
            AnchorError::CommandBadOutput(_) => "command_bad_output",
            AnchorError::CommandIo(_) => "command_io",
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            AnchorError::Network(_)
            | AnchorError::Timeout(_)
            | AnchorError::WitnessUnavailable { .. }
            // A hook usually fails because what it publishes to is down;
            // the heartbeat's backoff bounds the cost of being wrong.
            | AnchorError::CommandFailed { .. }
            | AnchorError::CommandIo(_) => true,
            AnchorError::Disabled
            | AnchorError::InvalidRequest(_)
            | AnchorError::WitnessSizeMismatch { .. }
            | AnchorError::WitnessRootMismatch { .. }
            | AnchorError::WitnessConflict(_)
            | AnchorError::WitnessBadProof
            | AnchorError::WitnessForbidden
            | AnchorError::WitnessUnknownLog
            | AnchorError::WitnessBadRequest
            | AnchorError::WitnessUnexpectedStatus { .. }
            | AnchorError::WitnessBadCosignature(_)
            | AnchorError::WitnessBadResponse(_)
            | AnchorError::CommandSpawn(_)
            | AnchorError::CommandOutputTooLarge { .. }
            | AnchorError::CommandBadOutput(_) => false,
        }
    }

    /// The size a witness reported holding, so the caller can retry with a
    /// proof from it.
    pub fn witness_size(&self) -> Option<u64> {
        match self {
            AnchorError::WitnessSizeMismatch { witness_size } => Some(*witness_size),
            _ => None,
        }
    }
}

/// Why an anchor configuration was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("witness url {0:?} must be an absolute http or https URL")]
    BadUrl(String),
    #[error("witness key is not a C2SP verifier key of type 0x01 or 0x04: {0}")]
    BadKey(String),
    #[error("command program {0:?} must be an absolute path")]
    BadProgram(String),
    #[error("timeout_ms must be between 1 and {max}, got {got}")]
    BadTimeout { got: u64, max: u64 },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
}
