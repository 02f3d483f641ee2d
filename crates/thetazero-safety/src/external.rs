//! The hook for an external classifier (for example a hosted guard model); this crate defines it but ships no HTTP client.
//!
//! The trait returns a boxed future instead of using `async fn` so it stays
//! object-safe and needs no macro crate. The server implements it over
//! HTTP; the filter only combines the scores it returns.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use crate::Scores;

/// Why an external scorer gave no scores.
#[derive(Debug, Error)]
pub enum ExternalError {
    #[error("external scorer unavailable: {0}")]
    Unavailable(String),
    #[error("external scorer timed out")]
    Timeout,
    #[error("external scorer answered badly: {0}")]
    BadResponse(String),
}

/// A pluggable classifier consulted after the local layers. Off unless one
/// is attached with [`crate::Filter::with_external`].
pub trait ExternalScorer: Send + Sync {
    fn score<'a>(
        &'a self,
        text: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Scores, ExternalError>> + Send + 'a>>;
}
