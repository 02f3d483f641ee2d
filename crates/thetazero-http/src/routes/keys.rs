//! `/api/v1/keys`: create (the secret is shown once), list, get, change
//! scopes, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;
use thetazero_api::types::{
    CreateKeyRequest, CreatedKey, KeyList, KeyResponse, SetKeyScopesRequest,
};
use thetazero_api::{ErrorBody, ErrorCode};
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{KeyId, NewKey};
use thetazero_core::KeyScope;

use super::check_text;
use crate::auth::{generate_key, Caller};
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody};
use crate::state::AppState;
use crate::views;

/// Parses scopes a caller may grant: known, at least one, each held by the
/// caller itself; sorted, without repeats.
fn grantable_scopes(caller: &Caller, raw_scopes: &[String]) -> Result<Vec<KeyScope>, HttpError> {
    if raw_scopes.is_empty() {
        return Err(HttpError::invalid(
            "field \"scopes\" must name at least one scope",
        ));
    }
    let mut scopes = Vec::new();
    for raw in raw_scopes {
        let scope = KeyScope::parse(raw).ok_or_else(|| {
            HttpError::invalid(format!(
                "field \"scopes\": unknown scope {raw:?}; expected one of {}",
                KeyScope::ALL.map(|s| s.as_str()).join(", ")
            ))
        })?;
        // A key can only hand out what it holds itself.
        if !caller.key.has_scope(scope) {
            return Err(HttpError::new(
                ErrorCode::MissingScope,
                format!("this API key lacks the scope {scope}, so it cannot grant it"),
            ));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.sort();
    Ok(scopes)
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
    let scopes = grantable_scopes(&caller, &req.scopes)?;
    let generated = generate_key();
    let (account, key_id) = (caller.account(), caller.key_id());
    let key = state
        .store
        .create_key_audited(
            NewKey {
            account_id: caller.account(),
            name: req.name,
            prefix: generated.prefix,
            hash: generated.hash,
            scopes,
            is_owner: false,
            created_by: key_id,
            },
            Box::new(move |key| {
                vec![AuditEvent::new(account, AuditAction::KeyCreated, format!("API key {} ({}) created", key.name, key.prefix))
                    .key(key_id)
                    .payload(json!({"created_key_id": key.id, "scopes": key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>()}))]
            }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            success: true,
            key: views::key(&key),
            secret: generated.secret,
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
    let target = state
        .store
        .get_key(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("API key"))?;
    if target.is_owner && !caller.key.is_owner {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            "only an owner key may revoke an owner key",
        ));
    }
    let (account, key_id, already) = (
        caller.account(),
        caller.key_id(),
        target.revoked_at.is_some(),
    );
    let key = state
        .store
        .revoke_key_audited(
            account,
            id,
            Box::new(move |key| {
                if already {
                    return Vec::new();
                }
                vec![AuditEvent::new(
                    account,
                    AuditAction::KeyRevoked,
                    format!("API key {} ({}) revoked", key.name, key.prefix),
                )
                .key(key_id)
                .payload(json!({"revoked_key_id": key.id}))]
            }),
        )
        .await?
        .ok_or_else(|| HttpError::not_found("API key"))?;
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
    let scopes = grantable_scopes(&caller, &req.scopes)?;
    let (account, key_id) = (caller.account(), caller.key_id());
    let key = state
        .store
        .set_key_scopes_audited(
            account,
            id,
            scopes,
            Box::new(move |(before, after)| {
                let names = |k: &thetazero_core::model::ApiKey| {
                    k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                };
                vec![AuditEvent::new(
                    account,
                    AuditAction::KeyScopesChanged,
                    format!(
                        "API key {} ({}) scopes changed to {}",
                        after.name,
                        after.prefix,
                        names(after).join(" ")
                    ),
                )
                .key(key_id)
                .payload(json!({"changed_key_id": after.id, "scopes_before": names(before), "scopes": names(after)}))]
            }),
        )
        .await?
        .ok_or_else(|| HttpError::not_found("API key"))?;
    // Streams opened with the key look again at what it may read.
    let _ = state.revoked_keys.send(key.id);
    // Its dashboard sessions end: they were opened with other authority.
    state.sessions.end_key(key.id);
    Ok(Json(KeyResponse {
        success: true,
        key: views::key(&key),
    }))
}
