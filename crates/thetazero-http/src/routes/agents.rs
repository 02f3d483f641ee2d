//! `/api/v1/sdk/agents`: register (upsert by name), list, get, patch, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use thetazero_api::types::{
    AgentList, AgentResponse, PatchAgentRequest, RegisterAgentRequest, SuccessResponse,
};
use thetazero_api::ErrorBody;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{AccountId, AgentId, AgentPatch, AgentSpec, AgentStatus, PageRequest};
use thetazero_core::{AgentConfig, Permissions};
use utoipa::IntoParams;

use super::check_text;
use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, JsonBody, Query};
use crate::state::AppState;
use crate::views;

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

fn check_name(name: &str) -> HttpResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(HttpError::invalid(
            "field \"name\" must be 1-128 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Statuses an author may set; `killed` is set and cleared by the kill switch.
/// The DEV template and `allow_localhost` reach the server's own loopback
/// services: only accounts the operator names in `dev_accounts` may use them.
fn check_dev(state: &AppState, account: AccountId, config: &AgentConfig) -> HttpResult<()> {
    if config.needs_dev() && !state.settings.dev_accounts.contains(&account) {
        let field = if config.allow_localhost == Some(true) {
            "config.allow_localhost"
        } else {
            "config.sandbox_template"
        };
        return Err(HttpError::new(
            thetazero_api::ErrorCode::InvalidConfig,
            format!(
                "field \"{field}\": the DEV template and allow_localhost are off for this account; the operator enables them with dev_accounts"
            ),
        ));
    }
    Ok(())
}

fn parse_status(raw: &str) -> HttpResult<AgentStatus> {
    match AgentStatus::parse(raw) {
        Some(s @ (AgentStatus::Ready | AgentStatus::Disabled)) => Ok(s),
        _ => Err(HttpError::invalid(format!(
            "field \"status\" must be \"ready\" or \"disabled\", not {raw:?}"
        ))),
    }
}

fn parse_permissions(value: &serde_json::Value) -> HttpResult<Permissions> {
    Permissions::from_json(value)
        .map_err(|e| HttpError::invalid(format!("field \"permissions\": {e}")))
}

fn check_code(state: &AppState, code: &str) -> HttpResult<()> {
    let max = state.settings.max_code_bytes;
    if code.len() > max {
        return Err(HttpError::invalid(format!(
            "field \"entry_code\" is longer than {max} bytes"
        )));
    }
    if code.trim().is_empty() {
        return Err(HttpError::invalid("field \"entry_code\" must not be empty"));
    }
    // PostgreSQL text cannot hold NUL, and JavaScript source has no use for
    // a raw one (write "\\u0000" in a string literal): refuse it on every
    // backend alike.
    if code.contains('\0') {
        return Err(HttpError::invalid(
            "field \"entry_code\" must not contain NUL characters",
        ));
    }
    Ok(())
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
    check_name(&req.name)?;
    check_code(&state, &req.entry_code)?;
    let version = req.version.unwrap_or_else(|| "1.0.0".into());
    check_text("version", &version, 64, false)?;
    let description = req.description.unwrap_or_default();
    check_text("description", &description, 4096, true)?;
    let status = match req.status.as_deref() {
        None => AgentStatus::Ready,
        Some(s) => parse_status(s)?,
    };
    let config = AgentConfig::from_json(
        req.config.as_ref().unwrap_or(&serde_json::Value::Null),
        &state.settings.ceilings,
    )?;
    check_dev(&state, caller.account(), &config)?;
    let permissions =
        parse_permissions(req.permissions.as_ref().unwrap_or(&serde_json::Value::Null))?;
    if let Some(list) = &req.compliance {
        thetazero_compliance::catalog::validate_ids(list)
            .map_err(|e| HttpError::invalid(format!("field \"compliance\": {e}")))?;
    }
    // New code under a name counts against the evolution rate, whether the
    // name is re-registered or registered afresh after a delete: the
    // counter belongs to the name, not to the record.
    let existing = state
        .store
        .get_agent_by_name(caller.account(), &req.name)
        .await?;
    if existing
        .as_ref()
        .is_none_or(|e| e.entry_code != req.entry_code)
    {
        crate::rate::enforce(
            &state,
            &caller,
            crate::rate::Limited::CodeUpdatesPerAgent,
            Some((existing.as_ref().map(|e| e.id), &req.name)),
        )
        .await?;
    }
    let spec = AgentSpec {
        name: req.name,
        version,
        description,
        status,
        entry_code: req.entry_code,
        config,
        permissions,
    };
    let (account, key_id) = (caller.account(), caller.key_id());
    let (agent, created) = state
        .store
        .upsert_agent_audited(
            account,
            spec,
            Box::new(move |(agent, created)| {
                let (action, verb) = if *created {
                    (AuditAction::AgentCreated, "registered")
                } else {
                    (AuditAction::AgentUpdated, "re-registered")
                };
                vec![AuditEvent::new(account, action, format!("agent {} {verb}", agent.name))
                    .agent(agent.id)
                    .key(key_id)
                    .payload(json!({"version": agent.version, "config": agent.config.to_json(), "permissions": agent.permissions.to_json()}))]
            }),
        )
        .await?;
    if let Some(mut list) = req.compliance {
        list.dedup();
        let setting = thetazero_compliance::frameworks_setting(account, agent.id);
        let (agent_id, name) = (agent.id, agent.name.clone());
        let value = (!list.is_empty()).then(|| json!(list).to_string());
        state
            .store
            .put_setting_audited(
                &setting,
                value,
                Box::new(move |_| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::ComplianceFrameworksSet,
                        format!(
                            "agent {name} assessed against {}",
                            if list.is_empty() {
                                "no framework".to_string()
                            } else {
                                list.join(", ")
                            }
                        ),
                    )
                    .agent(agent_id)
                    .key(key_id)
                    .payload(json!({"frameworks": list}))]
                }),
            )
            .await?;
    }
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
    let current = state
        .store
        .get_agent(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("agent"))?;
    if let Some(code) = &req.entry_code {
        check_code(&state, code)?;
    }
    if let Some(v) = &req.version {
        check_text("version", v, 64, false)?;
    }
    if let Some(d) = &req.description {
        check_text("description", d, 4096, true)?;
    }
    let status = req.status.as_deref().map(parse_status).transpose()?;
    // A killed agent comes back only through a key that holds the kill
    // switch; any other change leaves it killed.
    if current.status == AgentStatus::Killed
        && status.is_some()
        && !caller.key.has_scope(thetazero_core::KeyScope::Killswitch)
    {
        return Err(HttpError::new(
            thetazero_api::ErrorCode::AgentKilled,
            "this agent was killed; only a key with the killswitch scope can set its status",
        ));
    }
    let config = match &req.config {
        None => None,
        Some(value) => {
            let patch = AgentConfig::from_json(value, &state.settings.ceilings)?;
            let merged = current.config.merged(&patch, &state.settings.ceilings)?;
            check_dev(&state, caller.account(), &merged)?;
            Some(merged)
        }
    };
    let permissions = req
        .permissions
        .as_ref()
        .map(parse_permissions)
        .transpose()?;
    let patch = AgentPatch {
        version: req.version.clone(),
        description: req.description.clone(),
        status,
        entry_code: req.entry_code.clone(),
        config,
        permissions,
    };
    if patch.is_empty() {
        return Err(HttpError::invalid(
            "the request changes nothing: give at least one field",
        ));
    }
    let changed: Vec<&str> = [
        ("version", req.version.is_some()),
        ("description", req.description.is_some()),
        ("status", req.status.is_some()),
        ("entry_code", req.entry_code.is_some()),
        ("config", req.config.is_some()),
        ("permissions", req.permissions.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    // A change of code counts against the evolution rate.
    if req
        .entry_code
        .as_ref()
        .is_some_and(|code| *code != current.entry_code)
    {
        crate::rate::enforce(
            &state,
            &caller,
            crate::rate::Limited::CodeUpdatesPerAgent,
            Some((Some(current.id), &current.name)),
        )
        .await?;
    }
    let (account, key_id) = (caller.account(), caller.key_id());
    let changed: Vec<String> = changed.into_iter().map(str::to_string).collect();
    let agent = state
        .store
        .update_agent_audited(
            account,
            id,
            patch,
            Box::new(move |agent| {
                vec![AuditEvent::new(
                    account,
                    AuditAction::AgentUpdated,
                    format!("agent {} updated: {}", agent.name, changed.join(", ")),
                )
                .agent(agent.id)
                .key(key_id)
                .payload(json!({"changed": changed, "version": agent.version, "config": agent.config.to_json(), "permissions": agent.permissions.to_json()}))]
            }),
        )
        .await?
        .ok_or_else(|| HttpError::not_found("agent"))?;
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
    let agent = state
        .store
        .get_agent(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("agent"))?;
    let (account, key_id, name) = (caller.account(), caller.key_id(), agent.name);
    let deleted = state
        .store
        .delete_agent_audited(
            account,
            id,
            Box::new(move |id| {
                vec![AuditEvent::new(
                    account,
                    AuditAction::AgentDeleted,
                    format!("agent {name} deleted"),
                )
                .agent(*id)
                .key(key_id)]
            }),
        )
        .await?;
    if !deleted {
        return Err(HttpError::not_found("agent"));
    }
    Ok(Json(SuccessResponse { success: true }))
}
