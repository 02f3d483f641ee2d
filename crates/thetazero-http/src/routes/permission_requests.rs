//! Permission requests: an agent asks for more than it holds (network,
//! scopes, higher limits) with a justification and a timeout; a key with the
//! `approvals` scope, never the requesting key, approves or denies. An
//! approval is a grant laid over the agent while it lasts (optionally with an
//! expiry); a pending request that outlives its timeout expires. Served under
//! `/api/v1/sdk/` and at the spec's paths (`/api/sdk/permission-requests...`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use thetazero_api::types::{
    CreatePermissionRequest, PermissionDecision, PermissionRequestList, PermissionRequestResponse,
    PermissionRequestView,
};
use thetazero_api::ErrorCode;
use thetazero_core::model::{
    AgentId, KeyId, PermissionRequest, PermissionRequestId, PermissionRequestStatus,
};
use thetazero_runtime::approvals::{ApprovalError, Decision, NewRequest};
use time::OffsetDateTime;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody, OptionalJsonBody, Query};
use crate::state::AppState;
use crate::views;

impl From<ApprovalError> for HttpError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::Invalid(message) => HttpError::invalid(message),
            ApprovalError::AgentNotFound => HttpError::not_found("agent"),
            ApprovalError::NotFound => HttpError::not_found("permission request"),
            ApprovalError::Quota { .. } => HttpError::new(ErrorCode::QuotaExceeded, e.to_string()),
            ApprovalError::Forbidden(m) => HttpError::new(ErrorCode::Forbidden, m),
            ApprovalError::NotPending(_) | ApprovalError::DecidedMeanwhile => {
                HttpError::new(ErrorCode::Conflict, e.to_string())
            }
            ApprovalError::Store(s) => s.into(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `pending`, `approved`, `denied` or `expired`.
    #[param(pattern = "^(pending|approved|denied|expired)$")]
    pub status: Option<String>,
    /// Only this agent's requests (also accepted as `agentId`).
    #[serde(alias = "agentId")]
    pub agent_id: Option<i64>,
    /// At most 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

fn view(r: &PermissionRequest) -> PermissionRequestView {
    let now = OffsetDateTime::now_utc();
    PermissionRequestView {
        id: r.id.get(),
        agent_id: r.agent_id.get(),
        requested_by_key_id: r.requested_by.map(KeyId::get),
        permissions: r.grant.clone(),
        justification: r.justification.clone(),
        status: r.status.as_str().into(),
        expires_at: views::rfc3339(r.expires_at),
        decided_by_key_id: r.decided_by.map(KeyId::get),
        decision_reason: r.decision_reason.clone(),
        decided_at: r.decided_at.map(views::rfc3339),
        grant_expires_at: r.grant_expires_at.map(views::rfc3339),
        grant_active: r.grant_unexpired(now),
        created_at: views::rfc3339(r.created_at),
        approver_relation: None,
    }
}

/// Ask for permissions for an agent, with a justification and a timeout.
#[utoipa::path(post, path = "/api/v1/sdk/permission-requests", operation_id = "create_permission_request", tag = "approvals",
    request_body = CreatePermissionRequest,
    responses((status = 201, body = PermissionRequestResponse)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreatePermissionRequest>,
) -> HttpResult<(StatusCode, Json<PermissionRequestResponse>)> {
    let request = state
        .runtime
        .request_permissions(
            &caller.key,
            NewRequest {
                agent_id: AgentId::new(req.agent_id),
                permissions: req.permissions,
                justification: req.justification,
                timeout_ms: req.timeout_ms,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PermissionRequestResponse {
            success: true,
            request: view(&request),
        }),
    ))
}

/// The account's permission requests, newest first (`?status=pending`).
#[utoipa::path(get, path = "/api/v1/sdk/permission-requests", operation_id = "list_permission_requests", tag = "approvals",
    params(ListParams),
    responses((status = 200, body = PermissionRequestList)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ListParams>,
) -> HttpResult<Json<PermissionRequestList>> {
    let status = params
        .status
        .as_deref()
        .map(str::parse::<PermissionRequestStatus>)
        .transpose()
        .map_err(|_| {
            HttpError::invalid(
                "query parameter \"status\" must be pending, approved, denied or expired",
            )
        })?;
    let found = state
        .runtime
        .permission_requests(
            caller.account(),
            status,
            params.agent_id.map(AgentId::new),
            params.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(PermissionRequestList {
        success: true,
        requests: found.iter().map(view).collect(),
    }))
}

/// One permission request.
#[utoipa::path(get, path = "/api/v1/sdk/permission-requests/{id}", operation_id = "get_permission_request", tag = "approvals",
    params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = PermissionRequestResponse)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<PermissionRequestId>,
) -> HttpResult<Json<PermissionRequestResponse>> {
    let r = state
        .runtime
        .permission_request(caller.account(), id)
        .await?;
    Ok(Json(PermissionRequestResponse {
        success: true,
        request: view(&r),
    }))
}

/// Approve a pending request (never with the key that made it).
#[utoipa::path(post, path = "/api/v1/sdk/permission-requests/{id}/approve", operation_id = "approve_permission_request", tag = "approvals",
    params(("id" = i64, Path, minimum = 1)),
    request_body(content = Option<PermissionDecision>, description = "May be absent"),
    responses((status = 200, body = PermissionRequestResponse)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<PermissionRequestId>,
    OptionalJsonBody(d): OptionalJsonBody<PermissionDecision>,
) -> HttpResult<Json<PermissionRequestResponse>> {
    decide(state, caller, id, true, d).await
}

/// Deny a pending request.
#[utoipa::path(post, path = "/api/v1/sdk/permission-requests/{id}/deny", operation_id = "deny_permission_request", tag = "approvals",
    params(("id" = i64, Path, minimum = 1)),
    request_body(content = Option<PermissionDecision>, description = "May be absent"),
    responses((status = 200, body = PermissionRequestResponse)),
    security(("bearer" = [])))]
pub async fn deny(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<PermissionRequestId>,
    OptionalJsonBody(d): OptionalJsonBody<PermissionDecision>,
) -> HttpResult<Json<PermissionRequestResponse>> {
    decide(state, caller, id, false, d).await
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: PermissionRequestId,
    approve: bool,
    decision: PermissionDecision,
) -> HttpResult<Json<PermissionRequestResponse>> {
    let (decided, relation) = state
        .runtime
        .decide_permission_request(
            &caller.key,
            id,
            approve,
            Decision {
                reason: decision.reason,
                grant_expires_in_ms: decision.grant_expires_in_ms,
            },
        )
        .await?;
    let mut shown = view(&decided);
    shown.approver_relation = Some(relation.as_str().into());
    Ok(Json(PermissionRequestResponse {
        success: true,
        request: shown,
    }))
}
