//! `/api/v1/sdk/compliance/...`: controls mapping and evidence for the
//! caller's account (or one of its agents): status, the JSON report, the
//! signed evidence package, and the kill-switch drill.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use thetazero_api::types::{DrillResponse, DrillResult, FrameworkInfo, FrameworkList};
use thetazero_api::ErrorCode;
use thetazero_compliance::{AssessError, Assessment, Deployment, Request};
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{
    AccountId, AgentId, AgentSpec, AgentStatus, ExecutionId, ExecutionStatus, PageRequest,
};
use thetazero_core::{AgentConfig, KeyScope, Permissions};
use thetazero_runtime::Caller as RunCaller;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{JsonBody, Query};
use crate::routes::audit::parse_time;
use crate::state::AppState;

impl From<AssessError> for HttpError {
    fn from(e: AssessError) -> Self {
        match e {
            AssessError::UnknownFramework(u) => HttpError::invalid(u.to_string()),
            AssessError::NotFound => HttpError::not_found("agent"),
            AssessError::Store(m) => HttpError::internal(m),
        }
    }
}

/// The deployment settings that bind the caller's account.
pub(crate) fn deployment(state: &AppState, account: AccountId) -> Deployment {
    let c = &state.settings.ceilings;
    let (injection, toxicity) = state.runtime.safety_thresholds();
    Deployment {
        platform_version: env!("CARGO_PKG_VERSION").to_string(),
        ceilings: json!({
            "memory_mb": c.memory_mb,
            "cpu_time_ms": c.cpu_time_ms,
            "max_api_calls_per_run": c.max_api_calls_per_run,
            "max_api_calls_per_minute": c.max_api_calls_per_minute,
        }),
        executions_per_key_per_minute: state.settings.executions_per_key_per_minute,
        code_updates_per_agent_per_hour: state.settings.code_updates_per_agent_per_hour,
        injection_threshold: injection,
        toxicity_threshold: toxicity,
        dev_allowed: state.settings.dev_accounts.contains(&account),
        anchor_kind: state.ledger.anchor_kind().to_string(),
        audit_retention: "indefinite: the store refuses UPDATE and DELETE of audit leaves, and nothing prunes them".into(),
    }
}

/// A comma-separated list of framework ids, exactly as the document's
/// pattern states it (no blanks, no empty items); absent: none named.
fn frameworks_param(raw: Option<&str>) -> HttpResult<Vec<String>> {
    let list: Vec<String> = match raw {
        None => Vec::new(),
        Some(raw) => raw.split(',').map(str::to_string).collect(),
    };
    thetazero_compliance::catalog::validate_ids(&list)
        .map_err(|e| HttpError::invalid(e.to_string()))?;
    Ok(list)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplianceParams {
    /// Comma-separated framework ids (`eu_ai_act`, `soc2`, `nist_ai_rmf`,
    /// `iso_42001`, `owasp_llm_top10`); absent: the agent's own, or all.
    pub frameworks: Option<String>,
    /// One agent of the account; absent: the whole account.
    #[serde(rename = "agentId")]
    pub agent_id: Option<i64>,
    /// Start of the period the audit queries cover (default: the account's creation).
    pub from: Option<String>,
    /// End of the period (default: now).
    pub to: Option<String>,
    /// Report only: `json` (default) or `oscal` (OSCAL assessment-results).
    pub format: Option<String>,
}

async fn assess(
    state: &AppState,
    caller: &Caller,
    frameworks: Vec<String>,
    agent: Option<AgentId>,
    from: Option<&str>,
    to: Option<&str>,
) -> HttpResult<Assessment> {
    let request = Request {
        account: caller.account(),
        agent,
        frameworks,
        from: from.map(|f| parse_time("from", f, false)).transpose()?,
        to: to.map(|t| parse_time("to", t, true)).transpose()?,
    };
    Ok(thetazero_compliance::assess(
        state.store.clone(),
        &state.ledger,
        deployment(state, caller.account()),
        request,
    )
    .await?)
}

/// The frameworks this server maps, each with its catalog's version, edition
/// and SHA-256.
#[utoipa::path(get, path = "/api/v1/sdk/compliance/frameworks", tag = "compliance",
    operation_id = "compliance_frameworks",
    responses((status = 200, body = FrameworkList)),
    security(("bearer" = [])))]
pub async fn frameworks() -> Json<FrameworkList> {
    let frameworks = thetazero_compliance::FRAMEWORKS
        .iter()
        .filter_map(|id| thetazero_compliance::catalog::catalog(id).ok())
        .map(|c| FrameworkInfo {
            id: c.framework.clone(),
            title: c.title.clone(),
            catalog_version: c.catalog_version.clone(),
            catalog_sha256: c.sha256.clone(),
            edition: c.edition.clone(),
            transcription: c.transcription.clone(),
            attribution: c.attribution.clone(),
            requirements: c.requirements.len() as u64,
        })
        .collect();
    Json(FrameworkList {
        success: true,
        frameworks,
    })
}

/// Compliance status of the caller's account or one of its agents: per
/// framework and control, `coverage` and `result` (never merged into a
/// score), the reasons, and the evidence each result rests on.
#[utoipa::path(get, path = "/api/v1/sdk/compliance/status", tag = "compliance",
    operation_id = "compliance_status", params(ComplianceParams),
    responses((status = 200, description = "Status per framework and control (`thetazero.compliance-report/v1`'s status view)", body = Object)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<ComplianceParams>,
) -> HttpResult<Json<Value>> {
    if p.format.is_some() {
        return Err(HttpError::invalid(
            "query parameter \"format\" applies to the report only",
        ));
    }
    let frameworks = frameworks_param(p.frameworks.as_deref())?;
    let a = assess(
        &state,
        &caller,
        frameworks,
        p.agent_id.map(AgentId::new),
        p.from.as_deref(),
        p.to.as_deref(),
    )
    .await?;
    let mut body = thetazero_compliance::report::status(&a.report);
    body["success"] = json!(true);
    Ok(Json(body))
}

/// The full report, `thetazero.compliance-report/v1` (JSON Schema in the
/// repository): scope, period, catalogs and their hashes, checks, controls,
/// the not-covered list, evidence digests and summary counts. With
/// `format=oscal`, the same evaluation as OSCAL `assessment-results`.
#[utoipa::path(get, path = "/api/v1/sdk/compliance/report", tag = "compliance",
    operation_id = "compliance_report", params(ComplianceParams),
    responses((status = 200, description = "The report (`thetazero.compliance-report/v1`, or OSCAL assessment-results with `format=oscal`)", body = Object)),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<ComplianceParams>,
) -> HttpResult<Json<Value>> {
    let oscal = match p.format.as_deref() {
        None | Some("json") => false,
        Some("oscal") => true,
        Some(other) => {
            return Err(HttpError::invalid(format!(
                "query parameter \"format\" must be \"json\" or \"oscal\", not {other:?}"
            )))
        }
    };
    let frameworks = frameworks_param(p.frameworks.as_deref())?;
    let a = assess(
        &state,
        &caller,
        frameworks,
        p.agent_id.map(AgentId::new),
        p.from.as_deref(),
        p.to.as_deref(),
    )
    .await?;
    if oscal {
        return Ok(Json(thetazero_compliance::oscal::assessment_results(
            &a.report,
        )));
    }
    Ok(Json(a.report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComponentDefinitionParams {
    /// Comma-separated framework ids; absent: every framework.
    pub frameworks: Option<String>,
}

/// The OSCAL `component-definition` of this release (OSCAL 1.2.1): for each
/// framework, the controls the platform's checks evidence and how, with the
/// catalog's version and SHA-256. It describes the release, not an
/// account: no agent, key or event is in it.
#[utoipa::path(get, path = "/api/v1/sdk/compliance/component-definition", tag = "compliance",
    operation_id = "compliance_component_definition", params(ComponentDefinitionParams),
    responses((status = 200, description = "`{\"component-definition\": {...}}` (OSCAL 1.2.1)", body = Object)),
    security(("bearer" = [])))]
pub async fn component_definition(
    Query(p): Query<ComponentDefinitionParams>,
) -> HttpResult<Json<Value>> {
    let frameworks = frameworks_param(p.frameworks.as_deref())?;
    let catalogs = thetazero_compliance::catalog::catalogs(&frameworks)
        .map_err(|e| HttpError::invalid(e.to_string()))?;
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(HttpError::internal)?;
    Ok(Json(thetazero_compliance::oscal::component_definition(
        &catalogs,
        env!("CARGO_PKG_VERSION"),
        &at,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageRequest {
    /// `markdown` (default): the evidence package as a zip of markdown pages,
    /// evidence JSON, the report, a chart and the signed manifest.
    #[serde(default)]
    pub format: Option<String>,
    /// One agent of the account; absent: the whole account.
    #[serde(default)]
    pub agent_id: Option<i64>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

/// Generate the evidence package of one framework (a zip; the response's
/// `x-content-sha256` is its digest). Generating it is an audit event
/// (`compliance_package_generated`, holding that digest), whose leaf index
/// is in `x-audit-leaf-index`.
#[utoipa::path(post, path = "/api/v1/sdk/compliance/packages/{framework}", tag = "compliance",
    operation_id = "compliance_package", request_body = PackageRequest,
    params(("framework" = String, Path, description = "Framework id")),
    responses((status = 200, description = "The package", content_type = "application/zip", body = Vec<u8>)),
    security(("bearer" = [])))]
pub async fn package(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(framework): Path<String>,
    JsonBody(req): JsonBody<PackageRequest>,
) -> HttpResult<Response> {
    match req.format.as_deref() {
        None | Some("markdown") => {}
        Some(other) => {
            return Err(HttpError::invalid(format!(
                "field \"format\" must be \"markdown\", not {other:?}"
            )))
        }
    }
    let frameworks = frameworks_param(Some(&framework))?;
    if frameworks.len() != 1 {
        return Err(HttpError::invalid("name exactly one framework in the path"));
    }
    let a = assess(
        &state,
        &caller,
        frameworks,
        req.agent_id.map(AgentId::new),
        req.from.as_deref(),
        req.to.as_deref(),
    )
    .await?;
    let ledger = state.ledger.clone();
    let sign = move |m: &[u8]| {
        ledger
            .sign_raw(m)
            .map(|s| s.to_vec())
            .map_err(|e| e.to_string())
    };
    let built = thetazero_compliance::package::build(
        &a,
        &framework,
        state.ledger.verifier_key().as_str(),
        &sign,
    )
    .map_err(HttpError::internal)?;
    let account = caller.account();
    let mut event = AuditEvent::new(
        account,
        AuditAction::CompliancePackageGenerated,
        format!(
            "evidence package sha256:{} generated ({})",
            built.sha256, framework
        ),
    )
    .key(caller.key_id())
    .payload(
        json!({"framework": framework, "format": "markdown", "filename": built.filename,
                    "sha256": built.sha256, "bytes": built.bytes.len(), "agent_id": req.agent_id}),
    );
    event.agent_id = req.agent_id.map(AgentId::new);
    let record = state
        .store
        .append_audit(vec![event])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| HttpError::internal("no audit record for the package"))?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            thetazero_compliance::package::MEDIA_TYPE,
        )],
        Body::from(built.bytes),
    )
        .into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(
        "content-disposition",
        format!("attachment; filename=\"{}\"", built.filename),
    );
    set("x-content-sha256", built.sha256);
    set("x-audit-leaf-index", record.leaf_index.to_string());
    Ok(response)
}

/// The canary's code: it spins until it is stopped.
const CANARY_CODE: &str = "while (true) {}";

/// Run a kill-switch drill in the caller's account (needs `compliance` and
/// `killswitch`): a canary agent is registered, started spinning, killed,
/// and deleted; confirmed termination and latency are recorded in a
/// `compliance_drill` event. Its events carry `drill: true`, so they never
/// count as real kills, and no account or deployment halt is touched.
#[utoipa::path(post, path = "/api/v1/sdk/compliance/drill", tag = "compliance",
    operation_id = "compliance_drill",
    responses((status = 200, body = DrillResponse)),
    security(("bearer" = [])))]
pub async fn drill(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<DrillResponse>> {
    if !caller.key.has_scope(KeyScope::Killswitch) {
        return Err(HttpError::new(
            ErrorCode::MissingScope,
            "this API key lacks the scope killswitch (a drill needs compliance and killswitch)",
        ));
    }
    // A drill starts an execution: it counts against the key's rate.
    crate::rate::enforce(
        &state,
        &caller,
        crate::rate::Limited::ExecutionsPerKey,
        None,
    )
    .await?;
    let account = caller.account();
    let key_id = caller.key_id();
    let mut suffix = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
    let name = format!("compliance-drill-canary-{}", hex::encode(suffix));
    let ceilings = state.settings.ceilings;
    let config = AgentConfig::from_json(
        &json!({"cpu_time_limit_ms": ceilings.cpu_time_ms.min(60_000)}),
        &ceilings,
    )?;
    let spec = AgentSpec {
        name: name.clone(),
        version: "1.0.0".into(),
        description: "kill-switch drill canary".into(),
        status: AgentStatus::Ready,
        entry_code: CANARY_CODE.into(),
        config,
        permissions: Permissions::None,
    };
    let (canary, _) = state
        .store
        .upsert_agent_audited(
            account,
            spec,
            Box::new(move |(agent, _)| {
                vec![AuditEvent::new(account, AuditAction::AgentCreated, format!("drill canary {} registered", agent.name))
                    .agent(agent.id)
                    .key(key_id)
                    .payload(json!({"drill": true, "version": agent.version, "config": agent.config.to_json(), "permissions": agent.permissions.to_json()}))]
            }),
        )
        .await?;
    let outcome = run_drill(&state, &caller, canary.id).await;
    // The canary goes whatever happened.
    let deleted = state
        .store
        .delete_agent_audited(
            account,
            canary.id,
            Box::new(move |id| {
                vec![
                    AuditEvent::new(account, AuditAction::AgentDeleted, "drill canary deleted")
                        .agent(*id)
                        .key(key_id)
                        .payload(json!({"drill": true})),
                ]
            }),
        )
        .await;
    let run = outcome?;
    deleted?;
    let result = DrillResult {
        execution_id: run.execution_id.get(),
        confirmed: run.confirmed,
        kill_confirmed: run.kill_confirmed,
        terminated: run.terminated,
        elapsed_ms: run.elapsed_ms,
        execution_status: run.execution_status,
        started_to_kill_ms: run.started_to_kill_ms,
        canary_agent_id: canary.id.get(),
        canary_name: name,
        canary_deleted: true,
        drill: true,
    };
    let description = format!(
        "kill-switch drill: termination {} in {:.1} ms",
        if result.confirmed {
            "confirmed"
        } else {
            "NOT confirmed"
        },
        result.elapsed_ms
    );
    let mut event = AuditEvent::new(account, AuditAction::ComplianceDrill, description)
        .agent(canary.id)
        .key(key_id)
        .payload(serde_json::to_value(&result).map_err(HttpError::internal)?);
    event.execution_id = Some(run.execution_id);
    let record = state
        .store
        .append_audit(vec![event])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| HttpError::internal("no audit record for the drill"))?;
    Ok(Json(DrillResponse {
        success: true,
        drill: result,
        leaf_index: record.leaf_index,
        leaf_hash: hex::encode(record.leaf_hash),
    }))
}

/// What the drill's run measured, before the canary is deleted.
struct DrillRun {
    execution_id: ExecutionId,
    confirmed: bool,
    kill_confirmed: bool,
    terminated: u64,
    elapsed_ms: f64,
    execution_status: String,
    started_to_kill_ms: f64,
}

async fn run_drill(state: &AppState, caller: &Caller, agent: AgentId) -> HttpResult<DrillRun> {
    let account = caller.account();
    let run_caller = RunCaller {
        account,
        key_id: caller.key_id(),
    };
    let runtime = state.runtime.clone();
    let started = Instant::now();
    let run = tokio::spawn(async move { runtime.execute(run_caller, agent, json!({})).await });
    // Wait for the run to be recorded as running (or to end early).
    let deadline = Instant::now() + Duration::from_secs(20);
    let execution_id = loop {
        let page = state
            .store
            .list_executions(
                account,
                agent,
                Some(ExecutionStatus::Running),
                PageRequest { page: 1, limit: 1 },
            )
            .await?;
        if let Some(e) = page.items.first() {
            break e.id;
        }
        if run.is_finished() {
            let ended = run.await.map_err(HttpError::internal)?;
            return Err(match ended {
                Err(e) => e.into(),
                Ok(_) => HttpError::internal("the drill's canary ended before it could be killed"),
            });
        }
        if Instant::now() > deadline {
            // Still queued: stop it before it runs, then report.
            state
                .runtime
                .kill_agent_drill(
                    run_caller,
                    agent,
                    "kill-switch drill: the canary never started".into(),
                )
                .await?;
            let _ = run.await;
            return Err(HttpError::new(
                ErrorCode::ServiceUnavailable,
                "the drill's canary did not start within 20 s; retry when the account's runs have drained",
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let spinning_ms = started.elapsed().as_secs_f64() * 1000.0;
    let kill = state
        .runtime
        .kill_agent_drill(run_caller, agent, "kill-switch drill".into())
        .await?;
    let ended = run.await.map_err(HttpError::internal)?;
    let status = match &ended {
        Ok(done) => done.execution.status.as_str().to_string(),
        Err(e) => format!("error: {e}"),
    };
    Ok(DrillRun {
        execution_id,
        confirmed: kill.confirmed && status == "killed",
        kill_confirmed: kill.confirmed,
        terminated: kill.terminated as u64,
        elapsed_ms: kill.elapsed_ms,
        execution_status: status,
        started_to_kill_ms: spinning_ms,
    })
}
