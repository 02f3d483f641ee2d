//! `/api/v1/sdk/agents/:id/context/:key`: the agent's context store, JSON
//! values under short keys, size-capped.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use thetazero_api::types::{ContextValue, SuccessResponse};
use thetazero_api::{ErrorBody, ErrorCode};
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::AgentId;

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

async fn require_agent(state: &AppState, caller: &Caller, id: AgentId) -> HttpResult<()> {
    match state.store.get_agent(caller.account(), id).await? {
        Some(_) => Ok(()),
        None => Err(HttpError::not_found("agent")),
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
    require_agent(&state, &caller, id).await?;
    let entry = state
        .store
        .get_context(caller.account(), id, &key)
        .await?
        .ok_or_else(|| HttpError::not_found("context key"))?;
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
    let size = value.to_string().len();
    let max = state.settings.max_context_value_bytes;
    if size > max {
        return Err(HttpError::new(
            ErrorCode::PayloadTooLarge,
            format!("context values are at most {max} bytes of JSON; this one is {size}"),
        ));
    }
    let agent = state
        .store
        .get_agent(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("agent"))?;
    // The agent reads this value: it is input, screened as such.
    if let Err(verdict) = state
        .runtime
        .screen_write(
            crate::routes::run_caller(&caller),
            Some(&agent),
            &format!("value written to context key {key:?}"),
            &value,
        )
        .await
    {
        return Err(HttpError::new(
            ErrorCode::ContentBlocked,
            format!(
                "the value was blocked by content safety ({}; injection {:.2}, toxicity {:.2}); excerpt: {}",
                verdict.rule.as_deref().unwrap_or("model"),
                verdict.injection,
                verdict.toxicity,
                verdict.excerpt.as_deref().unwrap_or("")
            ),
        ));
    }
    if let Err(over) = state
        .runtime
        .check_quota(
            caller.account(),
            thetazero_runtime::quotas::Kept::Context(id),
            &key,
            &value,
        )
        .await?
    {
        return Err(HttpError::new(ErrorCode::QuotaExceeded, over.to_string()));
    }
    let (account, key_id) = (caller.account(), caller.key_id());
    let entry = state
        .store
        .put_context_audited(
            account,
            id,
            &key,
            &value,
            Box::new(move |entry| {
                vec![AuditEvent::new(
                    account,
                    AuditAction::ContextWritten,
                    format!("context key {:?} written", entry.key),
                )
                .agent(id)
                .key(key_id)]
            }),
        )
        .await
        .map_err(|e| match e {
            thetazero_core::store::StoreError::Conflict(_) => HttpError::not_found("agent"),
            other => other.into(),
        })?;
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
    require_agent(&state, &caller, id).await?;
    let (account, key_id) = (caller.account(), caller.key_id());
    let deleted = state
        .store
        .delete_context_audited(
            account,
            id,
            &key,
            Box::new(move |key| {
                vec![AuditEvent::new(
                    account,
                    AuditAction::ContextDeleted,
                    format!("context key {key:?} deleted"),
                )
                .agent(id)
                .key(key_id)]
            }),
        )
        .await?;
    if !deleted {
        return Err(HttpError::not_found("context key"));
    }
    Ok(Json(SuccessResponse { success: true }))
}
