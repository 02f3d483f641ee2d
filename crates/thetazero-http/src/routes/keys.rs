//! `/api/v1/keys`: create (the secret is shown once), list, get, change
//! scopes, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use thetazero_api::types::{
    CreateKeyRequest, CreatedKey, KeyList, KeyResponse, SetKeyScopesRequest,
};
use thetazero_api::{ErrorBody, ErrorCode};
use thetazero_core::model::KeyId;
use thetazero_runtime::keys::KeyError;

use super::check_text;
use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody};
use crate::state::AppState;
use crate::views;

impl From<KeyError> for HttpError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound => HttpError::not_found("API key"),
            KeyError::InvalidScopes(message) => HttpError::invalid(message),
            KeyError::CannotGrant(_) => HttpError::new(ErrorCode::MissingScope, e.to_string()),
            KeyError::OwnerOnly => HttpError::new(ErrorCode::Forbidden, e.to_string()),
            KeyError::Store(e) => e.into(),
        }
    }
}

/// Create an API key. The answer holds its secret; nothing else ever will.
#[utoipa::path(post, path = "/api/v1/keys", operation_id = "create_key", tag = "keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> HttpResult<(StatusCode, Json<CreatedKey>)> {
    check_text("name", &req.name, 128, false)?;
    let (key, secret) = state
        .runtime
        .create_key(&caller.key, req.name, &req.scopes)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            success: true,
            key: views::key(&key),
            secret,
        }),
    ))
}

/// List the account's keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/keys", operation_id = "list_keys", tag = "keys",
    responses((status = 200, body = KeyList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<KeyList>> {
    let keys = state.store.list_keys(caller.account()).await?;
    Ok(Json(KeyList {
        success: true,
        keys: keys.iter().map(views::key).collect(),
    }))
}

/// Get one key.
#[utoipa::path(get, path = "/api/v1/keys/{id}", operation_id = "get_key", tag = "keys", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = KeyResponse), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<KeyId>,
) -> HttpResult<Json<KeyResponse>> {
    let key = state
        .store
        .get_key(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("API key"))?;
    Ok(Json(KeyResponse {
        success: true,
        key: views::key(&key),
    }))
}

/// Revoke a key. It stops working at once; it stays listed, marked revoked.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", operation_id = "revoke_key", tag = "keys", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = KeyResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<KeyId>,
) -> HttpResult<Json<KeyResponse>> {
    let key = state.runtime.revoke_key(&caller.key, id).await?;
    // Streams opened with the key end now; its stream tokens no longer open any.
    let _ = state.revoked_keys.send(key.id);
    // Dashboard sessions of the key end now, their streams with them.
    state.sessions.end_key(id);
    Ok(Json(KeyResponse {
        success: true,
        key: views::key(&key),
    }))
}

/// Replace a key's scopes, within those the caller holds. An owner key's
/// cannot change; nor can the account's last key that can manage keys lose
/// the `keys` scope (409 `last_key_manager`).
#[utoipa::path(patch, path = "/api/v1/keys/{id}", operation_id = "set_key_scopes", tag = "keys", params(("id" = i64, Path, minimum = 1)),
    request_body = SetKeyScopesRequest,
    responses((status = 200, body = KeyResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_scopes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<KeyId>,
    JsonBody(req): JsonBody<SetKeyScopesRequest>,
) -> HttpResult<Json<KeyResponse>> {
    let key = state
        .runtime
        .set_key_scopes(&caller.key, id, &req.scopes)
        .await?;
    // Streams opened with the key look again at what it may read.
    let _ = state.revoked_keys.send(key.id);
    // Its dashboard sessions end: they were opened with other authority.
    state.sessions.end_key(key.id);
    Ok(Json(KeyResponse {
        success: true,
        key: views::key(&key),
    }))
}
