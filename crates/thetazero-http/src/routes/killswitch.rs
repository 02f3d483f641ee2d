//! The kill switch: stop one agent, halt the caller's account or the whole
//! deployment. Served under `/api/v1/sdk/...` and at the spec's paths
//! (`/api/sdk/...`, see `auth::SPEC_PATHS`).

use axum::extract::State;
use axum::{Extension, Json};
use thetazero_api::types::{
    HaltRequest, HaltResponse, HaltScopeName, HaltState, KillRequest, KillResponse,
};
use thetazero_core::model::{AgentId, KeyId};
use thetazero_runtime::governance::HaltScope;

use crate::auth::Caller;
use crate::error::HttpResult;
use crate::extract::{Id, JsonBody};
use crate::routes::run_caller;
use crate::state::AppState;

/// Stop an agent: its running executions are cancelled and new ones refused
/// (409 `agent_killed`) until a key with `killswitch` sets it ready again.
#[utoipa::path(post, path = "/api/v1/sdk/agents/{id}/kill", operation_id = "kill_agent", tag = "killswitch",
    request_body = KillRequest,
    params(("id" = i64, Path, minimum = 1, description = "Agent id")),
    responses((status = 200, description = "Killed: how many executions stopped and whether that was confirmed", body = KillResponse)),
    security(("bearer" = [])))]
pub async fn kill(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<AgentId>,
    JsonBody(req): JsonBody<KillRequest>,
) -> HttpResult<Json<KillResponse>> {
    let outcome = state
        .runtime
        .kill_agent(run_caller(&caller), id, req.reason)
        .await?;
    Ok(Json(KillResponse {
        success: true,
        agent_id: outcome.agent_id.get(),
        status: "killed".into(),
        terminated: outcome.terminated as u64,
        confirmed: outcome.confirmed,
        elapsed_ms: outcome.elapsed_ms,
    }))
}

/// Halt or resume every execution of the caller's account (or, for the
/// deployment's owner, of the deployment): running ones stop, new ones are
/// refused with 503 `global_halt` until cleared.
#[utoipa::path(post, path = "/api/v1/sdk/kill-switch/global", operation_id = "set_halt", tag = "killswitch",
    request_body = HaltRequest,
    responses((status = 200, description = "The halt as it is now", body = HaltResponse)),
    security(("bearer" = [])))]
pub async fn set_global(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<HaltRequest>,
) -> HttpResult<Json<HaltResponse>> {
    let scope = match req.scope {
        None | Some(HaltScopeName::Account) => HaltScope::Account,
        Some(HaltScopeName::Deployment) => HaltScope::Deployment,
    };
    let outcome = state
        .runtime
        .set_halt(&caller.key, scope, req.halted, req.reason)
        .await?;
    Ok(Json(HaltResponse {
        success: true,
        halted: outcome.halted,
        scope: match scope {
            HaltScope::Deployment => HaltScopeName::Deployment,
            HaltScope::Account => HaltScopeName::Account,
        },
        terminated: outcome.terminated as u64,
        confirmed: outcome.confirmed,
        elapsed_ms: outcome.elapsed_ms,
    }))
}

/// The halt in force for the caller, if any.
#[utoipa::path(get, path = "/api/v1/sdk/kill-switch/global", operation_id = "get_halt", tag = "killswitch",
    responses((status = 200, description = "`{halted}`, and while halted `{scope, reason, since, key_id}`", body = HaltState)),
    security(("bearer" = [])))]
pub async fn get_global(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<HaltState>> {
    let halt = state.runtime.halt(caller.account()).await?;
    Ok(Json(match halt {
        Some(h) => HaltState {
            success: true,
            halted: true,
            scope: Some(if h.account_id == caller.account() {
                HaltScopeName::Account
            } else {
                HaltScopeName::Deployment
            }),
            reason: Some(h.reason),
            since: Some(h.at),
            key_id: Some(h.key_id.map(KeyId::get)),
        },
        None => HaltState {
            success: true,
            halted: false,
            scope: None,
            reason: None,
            since: None,
            key_id: None,
        },
    }))
}
