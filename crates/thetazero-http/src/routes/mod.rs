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
    // Counted in characters, as the OpenAPI document's maxLength is.
    if value.chars().count() > max {
        return Err(HttpError::invalid(format!(
            "field {field:?} is longer than {max} characters"
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
    if value.chars().any(invisible) {
        return Err(HttpError::invalid(format!(
            "field {field:?} contains invisible or direction-changing characters"
        )));
    }
    Ok(())
}

/// Characters that change how text around them displays without showing
/// themselves: bidirectional overrides and isolates, zero-width characters,
/// and other format characters. In a name or reason they let one string pass
/// for another in a list or the audit log.
pub(crate) fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{034F}'
        | '\u{061C}'
        | '\u{115F}'..='\u{1160}'
        | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}
