//! `/api/v1/sdk/agents`: register (upsert by name), list, get, patch, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use thetazero_api::types::{
    AgentList, AgentResponse, PatchAgentRequest, RegisterAgentRequest, SuccessResponse,
};
use thetazero_api::{ApiError, ErrorBody, ErrorCode};
use thetazero_core::model::{AccountId, AgentId, PageRequest};
use thetazero_runtime::agents::{AgentError, Changes, Registration};
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody, Query};
use crate::state::AppState;
use crate::views;

impl From<AgentError> for HttpError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Invalid(message) => HttpError::invalid(message),
            AgentError::Config(c) => c.into(),
            AgentError::DevNotAllowed(_) => HttpError::new(ErrorCode::InvalidConfig, e.to_string()),
            AgentError::NotFound => HttpError::not_found("agent"),
            AgentError::Killed => HttpError::new(ErrorCode::AgentKilled, e.to_string()),
            AgentError::RateLimited(r) => r.into(),
            AgentError::Store(s) => s.into(),
        }
    }
}

impl From<thetazero_runtime::rates::RateRefused> for HttpError {
    fn from(r: thetazero_runtime::rates::RateRefused) -> Self {
        let mut err = ApiError::new(ErrorCode::RateLimited, r.to_string());
        err.retry_after = Some(r.retry_after_secs);
        HttpError(err)
    }
}

pub const MAX_PAGE_SIZE: u64 = 100;

/// An agent as the API shows it, with the configuration it runs with now.
async fn shown(
    state: &AppState,
    account: AccountId,
    agent: &thetazero_core::model::Agent,
) -> HttpResult<thetazero_api::types::AgentView> {
    let mut view = views::agent(agent);
    view.effective_config = state.runtime.effective_config(account, agent).await?;
    Ok(view)
}

/// Register an agent, or replace the agent of the same name.
#[utoipa::path(post, path = "/api/v1/sdk/agents", operation_id = "register_agent", tag = "agents",
    request_body = RegisterAgentRequest,
    responses((status = 201, description = "Created", body = AgentResponse),
               (status = 200, description = "Replaced the agent of the same name", body = AgentResponse),
               (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<RegisterAgentRequest>,
) -> HttpResult<(StatusCode, Json<AgentResponse>)> {
    let (agent, created) = state
        .runtime
        .register_agent(
            &caller.key,
            Registration {
                name: req.name,
                version: req.version,
                description: req.description,
                status: req.status,
                entry_code: req.entry_code,
                config: req.config,
                permissions: req.permissions,
                compliance: req.compliance,
            },
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(AgentResponse {
            success: true,
            agent: shown(&state, caller.account(), &agent).await?,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

impl ListParams {
    pub fn page_request(&self) -> HttpResult<PageRequest> {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(20);
        if page == 0 {
            return Err(HttpError::invalid("query parameter \"page\" starts at 1"));
        }
        // The document states an int64; a larger page is refused rather
        // than read as the last one.
        if page > i64::MAX as u64 {
            return Err(HttpError::invalid(format!(
                "query parameter \"page\" must be at most {}",
                i64::MAX
            )));
        }
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(HttpError::invalid(format!(
                "query parameter \"limit\" must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(PageRequest { page, limit })
    }
}

/// List the account's agents.
#[utoipa::path(get, path = "/api/v1/sdk/agents", operation_id = "list_agents", tag = "agents", params(ListParams),
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ListParams>,
) -> HttpResult<Json<AgentList>> {
    let page = params.page_request()?;
    let result = state.store.list_agents(caller.account(), page).await?;
    Ok(Json(AgentList {
        success: true,
        agents: {
            let mut agents = Vec::with_capacity(result.items.len());
            for a in &result.items {
                agents.push(shown(&state, caller.account(), a).await?);
            }
            agents
        },
        total: result.total,
        page: page.page,
        limit: page.limit,
    }))
}

/// Get one agent.
#[utoipa::path(get, path = "/api/v1/sdk/agents/{id}", operation_id = "get_agent", tag = "agents",
    params(("id" = i64, Path, minimum = 1, description = "Agent id")),
    responses((status = 200, body = AgentResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<AgentId>,
) -> HttpResult<Json<AgentResponse>> {
    let agent = state
        .store
        .get_agent(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("agent"))?;
    Ok(Json(AgentResponse {
        success: true,
        agent: shown(&state, caller.account(), &agent).await?,
    }))
}

/// Update an agent's code, configuration, permissions, status, version or description.
#[utoipa::path(patch, path = "/api/v1/sdk/agents/{id}", operation_id = "patch_agent", tag = "agents",
    params(("id" = i64, Path, minimum = 1, description = "Agent id")),
    request_body = PatchAgentRequest,
    responses((status = 200, body = AgentResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<AgentId>,
    JsonBody(req): JsonBody<PatchAgentRequest>,
) -> HttpResult<Json<AgentResponse>> {
    let agent = state
        .runtime
        .change_agent(
            &caller.key,
            id,
            Changes {
                version: req.version,
                description: req.description,
                status: req.status,
                entry_code: req.entry_code,
                config: req.config,
                permissions: req.permissions,
            },
        )
        .await?;
    Ok(Json(AgentResponse {
        success: true,
        agent: shown(&state, caller.account(), &agent).await?,
    }))
}

/// Delete an agent and its executions. Audit records stay.
#[utoipa::path(delete, path = "/api/v1/sdk/agents/{id}", operation_id = "delete_agent", tag = "agents",
    params(("id" = i64, Path, minimum = 1, description = "Agent id")),
    responses((status = 200, body = SuccessResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<AgentId>,
) -> HttpResult<Json<SuccessResponse>> {
    state.runtime.delete_agent(&caller.key, id).await?;
    Ok(Json(SuccessResponse { success: true }))
}
