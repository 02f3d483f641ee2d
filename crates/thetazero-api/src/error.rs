//! The one table that maps each error code to its HTTP status and stable name.
//!
//! Codes are part of the public contract: clients branch on `code`, so a name
//! is never reused for another meaning. Every code has an explicit status; there
//! is no default arm.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidJson,
    UnsupportedMediaType,
    InvalidRequest,
    InvalidConfig,
    LimitAboveCeiling,
    PayloadTooLarge,
    Unauthorized,
    MissingScope,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    LastKeyManager,
    AgentKilled,
    AgentDisabled,
    RateLimited,
    GlobalHalt,
    ServiceUnavailable,
    Internal,
    ContentBlocked,
    QuotaExceeded,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidConfig,
        ErrorCode::LimitAboveCeiling,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::MissingScope,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::LastKeyManager,
        ErrorCode::AgentKilled,
        ErrorCode::AgentDisabled,
        ErrorCode::RateLimited,
        ErrorCode::GlobalHalt,
        ErrorCode::ServiceUnavailable,
        ErrorCode::Internal,
        ErrorCode::ContentBlocked,
        ErrorCode::QuotaExceeded,
    ];

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson => 400,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidRequest => 400,
            ErrorCode::InvalidConfig => 400,
            ErrorCode::LimitAboveCeiling => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::MissingScope => 403,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::LastKeyManager => 409,
            ErrorCode::AgentKilled => 409,
            ErrorCode::AgentDisabled => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::GlobalHalt => 503,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::ContentBlocked => 422,
            ErrorCode::QuotaExceeded => 403,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::LimitAboveCeiling => "limit_above_ceiling",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::MissingScope => "missing_scope",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LastKeyManager => "last_key_manager",
            ErrorCode::AgentKilled => "agent_killed",
            ErrorCode::AgentDisabled => "agent_disabled",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::GlobalHalt => "global_halt",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::Internal => "internal_error",
            ErrorCode::ContentBlocked => "content_blocked",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }

    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds a client should wait before retrying, where that is known.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// `{"success": false, "error": {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub success: bool,
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `missing_scope`.
    pub code: String,
    pub message: String,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.name();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(ErrorCode::from_name(name), Some(code));
            assert!((400..600).contains(&code.status()), "{name}");
        }
    }
}
