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
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{
    AccountId, AgentId, KeyId, NewPermissionRequest, PermissionRequest, PermissionRequestId,
    PermissionRequestStatus, RequestDecision,
};
use thetazero_core::permissions::Grant;
use time::{Duration, OffsetDateTime};
use utoipa::IntoParams;

use super::check_text;
use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody, OptionalJsonBody, Query};
use crate::state::AppState;
use crate::views;

const DEFAULT_TIMEOUT_MS: u64 = 120_000;
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

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

/// Marks overdue pending requests expired, each with its audit event.
async fn expire_overdue(
    state: &AppState,
    account: AccountId,
    requests: Vec<PermissionRequest>,
) -> HttpResult<Vec<PermissionRequest>> {
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        if r.is_overdue(now) {
            let decided = thetazero_runtime::approvals::expire(
                &*state.store,
                account,
                r.id,
                "no decision before the timeout",
            )
            .await?;
            out.push(decided.unwrap_or(r));
        } else {
            out.push(r);
        }
    }
    Ok(out)
}

async fn one(
    state: &AppState,
    account: AccountId,
    id: PermissionRequestId,
) -> HttpResult<PermissionRequest> {
    let found = state
        .store
        .permission_requests(account, Some(id), None, None, 1)
        .await?;
    expire_overdue(state, account, found)
        .await?
        .pop()
        .ok_or_else(|| HttpError::not_found("permission request"))
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
    check_text("justification", &req.justification, 4096, false)?;
    Grant::from_json(&req.permissions, &state.settings.ceilings)
        .map_err(|e| HttpError::invalid(format!("field \"permissions\": {e}")))?;
    let timeout = req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout == 0 || timeout > MAX_TIMEOUT_MS {
        return Err(HttpError::invalid(format!(
            "field \"timeout_ms\" must be between 1 and {MAX_TIMEOUT_MS}"
        )));
    }
    let account = caller.account();
    let agent_id = AgentId::new(req.agent_id);
    let Some(agent) = state.store.get_agent(account, agent_id).await? else {
        return Err(HttpError::not_found("agent"));
    };
    let per_agent = state.runtime.quotas().pending_requests_per_agent;
    if per_agent > 0 {
        let pending = state
            .store
            .permission_requests(
                account,
                None,
                Some(PermissionRequestStatus::Pending),
                Some(agent_id),
                per_agent,
            )
            .await?;
        let pending = expire_overdue(&state, account, pending).await?;
        let open = pending
            .iter()
            .filter(|r| r.status == PermissionRequestStatus::Pending)
            .count() as u64;
        if open >= per_agent {
            return Err(HttpError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "pending_requests_per_agent is {per_agent}; agent {} has {open} pending",
                    agent_id
                ),
            ));
        }
    }
    let key_id = caller.key_id();
    let request = state
        .store
        .create_permission_request_audited(
            NewPermissionRequest {
                account_id: account,
                agent_id,
                requested_by: key_id,
                grant: req.permissions,
                justification: req.justification,
                expires_at: OffsetDateTime::now_utc() + Duration::milliseconds(timeout as i64),
                code_sha256: Some(thetazero_runtime::sha256_hex(agent.entry_code.as_bytes())),
            },
            Box::new(move |r| {
                vec![AuditEvent::approval(
                    account,
                    AuditAction::PermissionRequested,
                    r,
                    key_id,
                    format!(
                        "permission request {} for agent {}: {}",
                        r.id, r.agent_id, r.justification
                    ),
                )]
            }),
        )
        .await
        .map_err(|e| match e {
            thetazero_core::store::StoreError::Conflict(_) => HttpError::not_found("agent"),
            other => other.into(),
        })?;
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
    let agent = params.agent_id.map(AgentId::new);
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > 500 {
        return Err(HttpError::invalid(
            "query parameter \"limit\" must be between 1 and 500",
        ));
    }
    let account = caller.account();
    // Expire overdue requests first, so a pending list never shows one.
    let pending = state
        .store
        .permission_requests(
            account,
            None,
            Some(PermissionRequestStatus::Pending),
            agent,
            500,
        )
        .await?;
    expire_overdue(&state, account, pending).await?;
    let found = state
        .store
        .permission_requests(account, None, status, agent, limit)
        .await?;
    Ok(Json(PermissionRequestList {
        success: true,
        requests: found.iter().map(view).collect(),
    }))
}

/// How the deciding key stands to the key that made a request, through the
/// chain of keys that created keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Requester,
    /// Created by the requester, directly or through other keys.
    Descendant,
    /// Created the requester, directly or through other keys (an owner key,
    /// as the spec's flow has the owner approve).
    Ancestor,
    Unrelated,
}

impl Relation {
    fn as_str(self) -> &'static str {
        match self {
            Relation::Requester => "requester",
            Relation::Descendant => "descendant",
            Relation::Ancestor => "ancestor",
            Relation::Unrelated => "unrelated",
        }
    }
}

/// Keys created through more steps than this are treated as unrelated
/// beyond it; a chain this long is not made by hand.
const MAX_LINEAGE: usize = 64;

/// The chain of keys that created `key`, nearest first.
async fn ancestors(state: &AppState, account: AccountId, key: KeyId) -> HttpResult<Vec<KeyId>> {
    let mut chain = Vec::new();
    let mut at = key;
    while chain.len() < MAX_LINEAGE {
        let Some(parent) = state
            .store
            .get_key(account, at)
            .await?
            .and_then(|k| k.created_by)
        else {
            break;
        };
        if parent == key || chain.contains(&parent) {
            break;
        }
        chain.push(parent);
        at = parent;
    }
    Ok(chain)
}

async fn relation(
    state: &AppState,
    account: AccountId,
    decider: KeyId,
    requester: Option<KeyId>,
) -> HttpResult<Relation> {
    let Some(requester) = requester else {
        return Ok(Relation::Unrelated);
    };
    if decider == requester {
        return Ok(Relation::Requester);
    }
    if ancestors(state, account, decider)
        .await?
        .contains(&requester)
    {
        return Ok(Relation::Descendant);
    }
    if ancestors(state, account, requester)
        .await?
        .contains(&decider)
    {
        return Ok(Relation::Ancestor);
    }
    Ok(Relation::Unrelated)
}

/// The longest a grant may be approved for: one year.
const MAX_GRANT_MS: u64 = 365 * 24 * 3600 * 1000;

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
    let r = one(&state, caller.account(), id).await?;
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
    if let Some(r) = &decision.reason {
        check_text("reason", r, 1024, true)?;
    }
    let account = caller.account();
    let current = one(&state, account, id).await?;
    let relation = relation(&state, account, caller.key.id, current.requested_by).await?;
    match relation {
        Relation::Requester => {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "a key cannot decide a permission request it made",
            ))
        }
        Relation::Descendant => {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "a key created (directly or through other keys) by the key that made a permission request cannot decide it",
            ))
        }
        Relation::Ancestor if state.settings.approvals_forbid_ancestors => {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "this deployment forbids a key to decide requests made by keys it created (approvals_forbid_ancestors)",
            ))
        }
        Relation::Ancestor | Relation::Unrelated => {}
    }
    if current.status != PermissionRequestStatus::Pending {
        return Err(HttpError::new(
            ErrorCode::Conflict,
            format!("the request is {}, not pending", current.status),
        ));
    }
    if !approve && decision.grant_expires_in_ms.is_some() {
        return Err(HttpError::invalid(
            "grant_expires_in_ms applies to approvals",
        ));
    }
    if let Some(ms) = decision.grant_expires_in_ms {
        if !(1..=MAX_GRANT_MS).contains(&ms) {
            return Err(HttpError::invalid(format!(
                "field \"grant_expires_in_ms\" must be between 1 and {MAX_GRANT_MS} (one year), not {ms}"
            )));
        }
    }
    let grant_expires_at = decision
        .grant_expires_in_ms
        .map(|ms| OffsetDateTime::now_utc() + Duration::milliseconds(ms as i64));
    let key_id = caller.key_id();
    let (status, action) = if approve {
        (
            PermissionRequestStatus::Approved,
            AuditAction::PermissionApproved,
        )
    } else {
        (
            PermissionRequestStatus::Denied,
            AuditAction::PermissionDeniedByOwner,
        )
    };
    let decided = state
        .store
        .decide_permission_request_audited(
            account,
            id,
            RequestDecision {
                status,
                decided_by: key_id,
                reason: decision.reason,
                grant_expires_at,
            },
            Box::new(move |r| {
                let mut e = AuditEvent::approval(
                    account,
                    action,
                    r,
                    key_id,
                    format!("permission request {} {status}", r.id),
                );
                e.payload["approver_relation"] = relation.as_str().into();
                vec![e]
            }),
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::Conflict, "the request was decided meanwhile"))?;
    let mut shown = view(&decided);
    shown.approver_relation = Some(relation.as_str().into());
    Ok(Json(PermissionRequestResponse {
        success: true,
        request: shown,
    }))
}
