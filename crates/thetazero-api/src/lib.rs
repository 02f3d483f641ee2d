//! Wire types of the thetazero REST API and the table of error codes.
//!
//! Shared by the HTTP server, the Rust client and tests, so that both sides of
//! the wire agree by construction. Only serde shapes live here: no validation
//! rules (those are in `thetazero-core`) and no transport.

pub mod error;
pub mod types;

pub use error::{ApiError, ErrorBody, ErrorCode};
