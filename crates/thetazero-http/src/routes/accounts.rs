//! `/api/v1/accounts`: the deployment's first owner creates accounts for other
//! teams; each gets its own owner key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use thetazero_api::types::{CreateAccountRequest, CreatedAccount};
use thetazero_api::ErrorBody;

use super::check_text;
use crate::auth::Caller;
use crate::error::HttpResult;
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
    let (account, key, secret) = state.runtime.create_account(&caller.key, &req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAccount {
            success: true,
            account: views::account(&account),
            owner_key: views::key(&key),
            secret,
        }),
    ))
}
