//! Executing agents: `POST /api/v1/sdk/agents/:id/execute` (synchronous) and
//! the execution history.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use thetazero_api::types::{ExecuteRequest, ExecutionList, ExecutionResponse, ExecutionView};
use thetazero_api::{ApiError, ErrorBody, ErrorCode};
use thetazero_core::audit::AuditAction;
use thetazero_core::model::{AccountId, AgentId, Execution, ExecutionId, ExecutionStatus};
use thetazero_runtime::{Caller as RunCaller, RuntimeError};
use utoipa::IntoParams;

use super::agents::ListParams;
use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, OptionalJsonBody, Query};
use crate::state::AppState;
use crate::views;

/// How an execution record is shown; `detail` adds logs, the host-call audit
/// and the input. The record is consumed: its output and input move into the
/// view rather than being copied (either may be near its size cap).
pub fn view(e: Execution, detail: bool, receipt: Option<(u64, [u8; 32])>) -> ExecutionView {
    let report = e.run_report();
    ExecutionView {
        execution_id: e.id.get(),
        agent_id: e.agent_id.get(),
        agent_version: e.agent_version.clone(),
        status: e.status.as_str().into(),
        output: e.output.unwrap_or(Value::Null),
        error: report.error.map(views::execution_error),
        limit: report.limit,
        resource_usage: report
            .resource_usage
            .map(views::resource_usage)
            .unwrap_or_default(),
        violation_count: e.violation_count,
        was_terminated: e.was_terminated,
        duration_ms: e.duration_ms,
        host_call_audit: detail.then(|| {
            report
                .host_call_audit
                .into_iter()
                .map(views::host_call)
                .collect()
        }),
        logs: detail.then(|| report.logs.into_iter().map(views::log_line).collect()),
        input: detail.then_some(e.input),
        content_safety: report.content_safety,
        // Records written before each entry carried its verdict hold the
        // source alone.
        content_withheld: report
            .content_withheld
            .into_iter()
            .map(|w| match w {
                Value::String(source) => json!({ "source": source }),
                other => other,
            })
            .collect(),
        code_sha256: e.code_sha256.clone(),
        started_at: views::rfc3339(e.started_at),
        finished_at: e.finished_at.map(views::rfc3339),
        audit_trail_url: format!("/api/v1/sdk/audit?executionId={}", e.id),
        leaf_index: receipt.map(|r| r.0),
        leaf_hash: receipt.map(|r| views::b64(&r.1)),
    }
}

impl From<RuntimeError> for HttpError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::AgentNotFound => HttpError::not_found("agent"),
            RuntimeError::AgentKilled => HttpError::new(ErrorCode::AgentKilled, e.to_string()),
            RuntimeError::AgentDisabled => HttpError::new(ErrorCode::AgentDisabled, e.to_string()),
            RuntimeError::Busy | RuntimeError::ShuttingDown => {
                let mut err = ApiError::new(ErrorCode::ServiceUnavailable, e.to_string());
                err.retry_after = Some(1);
                HttpError(err)
            }
            RuntimeError::AccountBusy(_) => {
                let mut err = ApiError::new(ErrorCode::RateLimited, e.to_string());
                err.retry_after = Some(1);
                HttpError(err)
            }
            RuntimeError::Halted(_) => {
                let mut err = ApiError::new(ErrorCode::GlobalHalt, e.to_string());
                err.retry_after = Some(30);
                HttpError(err)
            }
            RuntimeError::DevNotAllowed => HttpError::new(ErrorCode::InvalidConfig, e.to_string()),
            RuntimeError::RateLimited(r) => r.into(),
            RuntimeError::Invalid(m) => HttpError::invalid(m),
            RuntimeError::Forbidden(m) => HttpError::new(ErrorCode::Forbidden, m),
            RuntimeError::Store(s) => s.into(),
            RuntimeError::Sandbox(m) => HttpError::internal(m),
        }
    }
}

/// Run an agent in the sandbox and wait for it to end.
#[utoipa::path(post, path = "/api/v1/sdk/agents/{id}/execute", operation_id = "execute_agent", tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Agent id")),
    request_body(content = Option<ExecuteRequest>, description = "May be absent: no input"),
    responses((status = 200, description = "The execution ran (whatever its status)", body = ExecutionResponse),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn execute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<AgentId>,
    OptionalJsonBody(req): OptionalJsonBody<ExecuteRequest>,
) -> HttpResult<(Extension<crate::Outcome>, Json<ExecutionResponse>)> {
    let input = req.input.unwrap_or_else(|| json!({}));
    let executed = state
        .runtime
        .execute_requested(
            RunCaller {
                account: caller.account(),
                key_id: caller.key_id(),
            },
            id,
            input,
        )
        .await?;
    let outcome = crate::Outcome {
        execution: Some(executed.execution.id.get()),
        outcome: executed.execution.status.as_str(),
    };
    Ok((
        Extension(outcome),
        Json(ExecutionResponse {
            success: true,
            execution: view(executed.execution, true, Some(executed.receipt)),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionParams {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Only executions with this status: `running`, `completed`, `failed`,
    /// `timed_out`, `killed`, `limit_exceeded`, `blocked`.
    #[param(pattern = "^(running|completed|failed|timed_out|killed|limit_exceeded|blocked)$")]
    pub status: Option<String>,
}

/// An agent's executions, newest first.
#[utoipa::path(get, path = "/api/v1/sdk/agents/{id}/executions", operation_id = "list_executions", tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Agent id"), ExecutionParams),
    responses((status = 200, body = ExecutionList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<AgentId>,
    Query(params): Query<ExecutionParams>,
) -> HttpResult<Json<ExecutionList>> {
    let page = ListParams {
        page: params.page,
        limit: params.limit,
    }
    .page_request()?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            ExecutionStatus::parse(s).ok_or_else(|| {
                HttpError::invalid(format!(
                    "query parameter \"status\" must be one of {}",
                    ExecutionStatus::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
        })
        .transpose()?;
    if state.store.get_agent(caller.account(), id).await?.is_none() {
        return Err(HttpError::not_found("agent"));
    }
    let result = state
        .store
        .list_executions(caller.account(), id, status, page)
        .await?;
    Ok(Json(ExecutionList {
        success: true,
        executions: result
            .items
            .into_iter()
            .map(|e| view(e, false, None))
            .collect(),
        total: result.total,
        page: page.page,
        limit: page.limit,
    }))
}

/// One execution in full: output, logs, host-call audit, input.
#[utoipa::path(get, path = "/api/v1/sdk/agents/{id}/executions/{eid}", operation_id = "get_execution", tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Agent id"), ("eid" = i64, Path, minimum = 1, description = "Execution id")),
    responses((status = 200, body = ExecutionResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, eid)): Path<(String, String)>,
) -> HttpResult<Json<ExecutionResponse>> {
    let parse = |s: &str| s.parse::<i64>().ok().filter(|v| *v > 0);
    let (Some(id), Some(eid)) = (parse(&id), parse(&eid)) else {
        return Err(HttpError::not_found("execution"));
    };
    let (id, eid) = (AgentId::new(id), ExecutionId::new(eid));
    let execution = state
        .store
        .get_execution(caller.account(), eid)
        .await?
        .filter(|e| e.agent_id == id)
        .ok_or_else(|| HttpError::not_found("execution"))?;
    let receipt = receipt_of(&state, caller.account(), eid).await?;
    Ok(Json(ExecutionResponse {
        success: true,
        execution: view(execution, true, receipt),
    }))
}

/// The receipt of an execution: its final audit event's leaf.
async fn receipt_of(
    state: &AppState,
    account: AccountId,
    execution: ExecutionId,
) -> HttpResult<Option<(u64, [u8; 32])>> {
    let query = thetazero_core::audit::AuditQuery {
        action_types: vec![AuditAction::ExecutionCompleted.to_string()],
        execution_id: Some(execution),
        limit: 1,
        ..Default::default()
    };
    let page = state.store.query_audit(account, &query).await?;
    Ok(page.items.first().map(|r| (r.leaf_index, r.leaf_hash)))
}
