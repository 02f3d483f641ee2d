//! `/api/v1/accounts`: the deployment's first owner creates accounts for other
//! teams; each gets its own owner key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;
use thetazero_api::types::{CreateAccountRequest, CreatedAccount};
use thetazero_api::ErrorBody;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{AccountId, NewKey};

use super::check_text;
use crate::auth::{generate_key, Caller};
use crate::error::{HttpError, HttpResult};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::views;

/// Create an account and its owner key (shown once).
#[utoipa::path(post, path = "/api/v1/accounts", operation_id = "create_account", tag = "accounts", request_body = CreateAccountRequest,
    responses((status = 201, body = CreatedAccount), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateAccountRequest>,
) -> HttpResult<(StatusCode, Json<CreatedAccount>)> {
    check_text("name", &req.name, 128, false)?;
    let generated = generate_key();
    let owner = NewKey {
        // Filled in by the store.
        account_id: AccountId::new(0),
        name: "owner".into(),
        prefix: generated.prefix,
        hash: generated.hash,
        scopes: vec![],
        is_owner: true,
        created_by: None,
    };
    let (creator, key_id) = (caller.account(), caller.key_id());
    let (account, key) = state
        .store
        .create_account_audited(
            &req.name,
            Some(owner),
            Box::new(move |(account, _)| {
                vec![
                    AuditEvent::new(
                        creator,
                        AuditAction::AccountCreated,
                        format!("account {} created", account.name),
                    )
                    .key(key_id)
                    .payload(json!({"created_account_id": account.id})),
                    AuditEvent::new(
                        account.id,
                        AuditAction::AccountCreated,
                        format!("account {} created by the deployment owner", account.name),
                    ),
                ]
            }),
        )
        .await?;
    let key = key.ok_or_else(|| HttpError::internal("the owner key was not created"))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAccount {
            success: true,
            account: views::account(&account),
            owner_key: views::key(&key),
            secret: generated.secret,
        }),
    ))
}
