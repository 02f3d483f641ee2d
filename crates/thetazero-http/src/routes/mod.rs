//! Route handlers, one module per resource.

pub mod accounts;
pub mod agents;
pub mod audit;
pub mod audit_proofs;
pub mod compliance;
pub mod context;
pub mod executions;
pub mod keys;
pub mod killswitch;
pub mod ops;
pub mod permission_requests;
pub mod stream;

use crate::auth::Caller;
use crate::error::HttpError;

/// The runtime's view of who is calling.
pub(crate) fn run_caller(c: &Caller) -> thetazero_runtime::Caller {
    thetazero_runtime::Caller {
        account: c.account(),
        key_id: c.key_id(),
    }
}

/// Checks a short human-facing string field (the rule is core's
/// `check_text`).
pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), HttpError> {
    thetazero_core::model::check_text(field, value, max, allow_empty).map_err(HttpError::invalid)
}
