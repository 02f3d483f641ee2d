//! The kill switch: stop one agent, halt the caller's account or the whole
//! deployment. Served at the spec's paths (`/api/sdk/...`) and under
//! `/api/v1/sdk/...`.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use thetazero_api::{ErrorBody, ErrorCode};
use thetazero_runtime::governance::HaltScope;
use utoipa::ToSchema;

use super::check_text;
use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody};
use crate::routes::run_caller;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// Why; recorded in the audit log.
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    /// `true` stops everything and refuses new executions; `false` clears it.
    pub halted: bool,
    pub reason: String,
    /// `account` (default): the caller's account. `deployment`: every account
    /// (an owner key of the deployment's first account only).
    #[serde(default)]
    pub scope: Option<String>,
}

async fn kill(
    state: AppState,
    caller: Caller,
    id: i64,
    req: KillRequest,
) -> HttpResult<Json<Value>> {
    check_text("reason", &req.reason, 1024, false)?;
    let outcome = state
        .runtime
        .kill_agent(run_caller(&caller), id, req.reason)
        .await?;
    Ok(Json(json!({
        "success": true,
        "agent_id": outcome.agent_id,
        "status": "killed",
        "terminated": outcome.terminated,
        "confirmed": outcome.confirmed,
        "elapsed_ms": outcome.elapsed_ms,
    })))
}

/// Stop an agent: its running executions are cancelled and new ones refused
/// (409 `agent_killed`) until a key with `killswitch` sets it ready again.
#[utoipa::path(post, path = "/api/sdk/agents/{id}/kill", tag = "killswitch", request_body = KillRequest,
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, description = "Killed: how many executions stopped and whether that was confirmed"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn kill_spec(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    JsonBody(req): JsonBody<KillRequest>,
) -> HttpResult<Json<Value>> {
    kill(state, caller, id, req).await
}

/// Stop an agent (same as `/api/sdk/agents/{id}/kill`).
#[utoipa::path(post, path = "/api/v1/sdk/agents/{id}/kill", tag = "killswitch", request_body = KillRequest,
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, description = "Killed"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn kill_v1(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    JsonBody(req): JsonBody<KillRequest>,
) -> HttpResult<Json<Value>> {
    kill(state, caller, id, req).await
}

async fn set_global(state: AppState, caller: Caller, req: HaltRequest) -> HttpResult<Json<Value>> {
    check_text("reason", &req.reason, 1024, false)?;
    let scope = match req.scope.as_deref() {
        None | Some("account") => HaltScope::Account,
        Some("deployment") => {
            let first = state.store.first_account_id().await?;
            if !(caller.key.is_owner && Some(caller.account()) == first) {
                return Err(HttpError::new(
                    ErrorCode::Forbidden,
                    "only an owner key of the deployment's first account may halt the whole deployment",
                ));
            }
            HaltScope::Deployment
        }
        Some(other) => {
            return Err(HttpError::invalid(format!(
                "field \"scope\" must be \"account\" or \"deployment\", not {other:?}"
            )))
        }
    };
    let outcome = state
        .runtime
        .set_halt(run_caller(&caller), scope, req.halted, req.reason)
        .await?;
    Ok(Json(json!({
        "success": true,
        "halted": outcome.halted,
        "scope": if scope == HaltScope::Deployment { "deployment" } else { "account" },
        "terminated": outcome.terminated,
        "confirmed": outcome.confirmed,
        "elapsed_ms": outcome.elapsed_ms,
    })))
}

async fn get_global(state: AppState, caller: Caller) -> HttpResult<Json<Value>> {
    let halt = state.runtime.halt(caller.account()).await?;
    Ok(Json(match halt {
        Some(h) => json!({
            "success": true, "halted": true,
            "scope": if h.account_id == caller.account() { "account" } else { "deployment" },
            "reason": h.reason, "since": h.at, "key_id": h.key_id,
        }),
        None => json!({"success": true, "halted": false}),
    }))
}

/// Halt or resume every execution of the caller's account (or, for the
/// deployment's owner, of the deployment): running ones stop, new ones are
/// refused with 503 `global_halt` until cleared.
#[utoipa::path(post, path = "/api/sdk/kill-switch/global", tag = "killswitch", request_body = HaltRequest,
    responses((status = 200, description = "The halt as it is now"), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn global_spec(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<HaltRequest>,
) -> HttpResult<Json<Value>> {
    set_global(state, caller, req).await
}

/// Halt or resume (same as `/api/sdk/kill-switch/global`).
#[utoipa::path(post, path = "/api/v1/sdk/kill-switch/global", tag = "killswitch", request_body = HaltRequest,
    responses((status = 200, description = "The halt as it is now"), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn global_v1(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<HaltRequest>,
) -> HttpResult<Json<Value>> {
    set_global(state, caller, req).await
}

/// The halt in force for the caller, if any.
#[utoipa::path(get, path = "/api/sdk/kill-switch/global", tag = "killswitch",
    responses((status = 200, description = "`{halted, scope, reason, since}`")), security(("bearer" = [])))]
pub async fn global_state_spec(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<Value>> {
    get_global(state, caller).await
}

/// The halt in force for the caller (same as `/api/sdk/kill-switch/global`).
#[utoipa::path(get, path = "/api/v1/sdk/kill-switch/global", tag = "killswitch",
    responses((status = 200, description = "`{halted, scope, reason, since}`")), security(("bearer" = [])))]
pub async fn global_state_v1(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<Value>> {
    get_global(state, caller).await
}
