//! Turning failures into the one error shape the API speaks.
//!
//! Every error response is `{"success": false, "error": {"code", "message",
//! "request_id"}}` with the status from the code table. Server-side failures
//! are logged in full and answered with a generic message: internals never
//! reach the caller.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use thetazero_api::error::ErrorDetail;
use thetazero_api::{ApiError, ErrorBody, ErrorCode};
use thetazero_core::store::StoreError;
use thetazero_core::ConfigError;

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "unknown".into())
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

pub type HttpResult<T> = Result<T, HttpError>;

impl HttpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError(ApiError::new(code, message))
    }

    pub fn not_found(what: &str) -> Self {
        HttpError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        HttpError::new(ErrorCode::InvalidRequest, message)
    }

    /// A failure the caller cannot fix: logged here with its cause, answered
    /// without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = %current_request_id(), error = %cause, "internal error");
        HttpError::new(
            ErrorCode::Internal,
            "internal error; see the server log for this request id",
        )
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => HttpError::new(ErrorCode::Conflict, m),
            StoreError::LastKeyManager(m) => HttpError::new(ErrorCode::LastKeyManager, m),
            e @ StoreError::PendingLimit { .. } => {
                HttpError::new(ErrorCode::QuotaExceeded, e.to_string())
            }
            StoreError::Unavailable(m) => {
                tracing::warn!(request_id = %current_request_id(), error = %m, "storage unavailable");
                let mut err = ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "storage is unavailable; retry shortly",
                );
                err.retry_after = Some(1);
                HttpError(err)
            }
            StoreError::Internal(m) => HttpError::internal(m),
        }
    }
}

impl From<ConfigError> for HttpError {
    fn from(e: ConfigError) -> Self {
        let code = match e {
            ConfigError::AboveCeiling { .. } => ErrorCode::LimitAboveCeiling,
            _ => ErrorCode::InvalidConfig,
        };
        HttpError::new(code, e.to_string())
    }
}

pub fn error_response(err: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(err.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        success: false,
        error: ErrorDetail {
            code: err.code.name().into(),
            message: err.message.clone(),
            request_id: current_request_id(),
        },
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.extensions_mut().insert(crate::Outcome {
        execution: None,
        outcome: err.code.name(),
    });
    if let Some(secs) = err.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}
