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

use crate::error::HttpError;

/// Checks a short human-facing string field.
pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), HttpError> {
    if !allow_empty && value.trim().is_empty() {
        return Err(HttpError::invalid(format!(
            "field {field:?} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(HttpError::invalid(format!(
            "field {field:?} is longer than {max} bytes"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(HttpError::invalid(format!(
            "field {field:?} contains control characters"
        )));
    }
    Ok(())
}
