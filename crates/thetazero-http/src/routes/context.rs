//! `/api/v1/sdk/agents/:id/context/:key`: the agent's context store, JSON
//! values under short keys, size-capped.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use thetazero_api::types::{ContextValue, SuccessResponse};
use thetazero_api::{ErrorBody, ErrorCode};
use thetazero_core::model::AgentId;
use thetazero_runtime::context::ContextError;

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::JsonValue;
use crate::state::AppState;
use crate::views;

fn parse_path(id: &str, key: &str) -> HttpResult<(AgentId, String)> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .map(AgentId::new)
        .ok_or_else(|| HttpError::not_found("agent"))?;
    thetazero_core::model::check_value_key(key)
        .map_err(|e| HttpError::invalid(format!("path parameter \"key\": context {e}")))?;
    Ok((id, key.to_string()))
}

impl From<ContextError> for HttpError {
    fn from(e: ContextError) -> Self {
        match e {
            ContextError::AgentNotFound => HttpError::not_found("agent"),
            ContextError::KeyNotFound => HttpError::not_found("context key"),
            ContextError::TooLarge { .. } => {
                HttpError::new(ErrorCode::PayloadTooLarge, e.to_string())
            }
            ContextError::Blocked(verdict) => HttpError::new(
                ErrorCode::ContentBlocked,
                format!(
                    "the value was {} (injection {:.2}, toxicity {:.2}); excerpt: {}",
                    thetazero_runtime::why_blocked(&verdict),
                    verdict.injection,
                    verdict.toxicity,
                    verdict.excerpt.as_deref().unwrap_or("")
                ),
            ),
            ContextError::OverQuota(over) => {
                HttpError::new(ErrorCode::QuotaExceeded, over.to_string())
            }
            ContextError::Store(e) => e.into(),
        }
    }
}

/// Read a context value.
#[utoipa::path(get, path = "/api/v1/sdk/agents/{id}/context/{key}", operation_id = "get_context", tag = "context",
    params(("id" = i64, Path, minimum = 1), ("key" = String, Path, min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")),
    responses((status = 200, body = ContextValue), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
) -> HttpResult<Json<ContextValue>> {
    let (id, key) = parse_path(&id, &key)?;
    let entry = state
        .runtime
        .read_context(crate::routes::run_caller(&caller), id, &key)
        .await?;
    Ok(Json(ContextValue {
        success: true,
        key: entry.key,
        value: entry.value,
        updated_at: views::rfc3339(entry.updated_at),
    }))
}

/// Set a context value; the body is the JSON value itself.
#[utoipa::path(put, path = "/api/v1/sdk/agents/{id}/context/{key}", operation_id = "put_context", tag = "context",
    params(("id" = i64, Path, minimum = 1), ("key" = String, Path, min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")),
    request_body(content = serde_json::Value, description = "Any JSON value"),
    responses((status = 200, body = ContextValue), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
    JsonValue(value): JsonValue,
) -> HttpResult<Json<ContextValue>> {
    let (id, key) = parse_path(&id, &key)?;
    let entry = state
        .runtime
        .write_context(crate::routes::run_caller(&caller), id, &key, value)
        .await?;
    Ok(Json(ContextValue {
        success: true,
        key: entry.key,
        value: entry.value,
        updated_at: views::rfc3339(entry.updated_at),
    }))
}

/// Delete a context value.
#[utoipa::path(delete, path = "/api/v1/sdk/agents/{id}/context/{key}", operation_id = "delete_context", tag = "context",
    params(("id" = i64, Path, minimum = 1), ("key" = String, Path, min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")),
    responses((status = 200, body = SuccessResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
) -> HttpResult<Json<SuccessResponse>> {
    let (id, key) = parse_path(&id, &key)?;
    state
        .runtime
        .delete_context(crate::routes::run_caller(&caller), id, &key)
        .await?;
    Ok(Json(SuccessResponse { success: true }))
}
