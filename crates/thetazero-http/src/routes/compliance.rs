//! `/api/v1/sdk/compliance/...`: controls mapping and evidence for the
//! caller's account (or one of its agents): status, the JSON report, the
//! signed evidence package, and the kill-switch drill.

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
use thetazero_core::model::{AccountId, AgentId};
use thetazero_runtime::drill::DrillError;
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
            AssessError::Package(p) => HttpError::internal(p),
        }
    }
}

/// The deployment settings that bind the caller's account.
pub(crate) fn deployment(state: &AppState, account: AccountId) -> Deployment {
    let c = state.runtime.ceilings();
    let rates = state.runtime.rate_limits();
    let (injection, toxicity) = state.runtime.safety_thresholds();
    Deployment {
        platform_version: env!("CARGO_PKG_VERSION").to_string(),
        ceilings: json!({
            "memory_mb": c.memory_mb,
            "cpu_time_ms": c.cpu_time_ms,
            "max_api_calls_per_run": c.max_api_calls_per_run,
            "max_api_calls_per_minute": c.max_api_calls_per_minute,
        }),
        executions_per_key_per_minute: rates.executions_per_key_per_minute,
        code_updates_per_agent_per_hour: rates.code_updates_per_agent_per_hour,
        injection_threshold: injection,
        toxicity_threshold: toxicity,
        dev_allowed: state.runtime.dev_allowed(account),
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
    let request = Request {
        account: caller.account(),
        agent: req.agent_id.map(AgentId::new),
        frameworks,
        from: req
            .from
            .as_deref()
            .map(|f| parse_time("from", f, false))
            .transpose()?,
        to: req
            .to
            .as_deref()
            .map(|t| parse_time("to", t, true))
            .transpose()?,
    };
    let (built, record) = thetazero_compliance::generate_package(
        state.store.clone(),
        &state.ledger,
        deployment(&state, caller.account()),
        request,
        &framework,
        caller.key_id(),
    )
    .await?;
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
    let (run, record) = state.runtime.kill_switch_drill(&caller.key).await?;
    Ok(Json(DrillResponse {
        success: true,
        drill: DrillResult {
            execution_id: run.execution_id.get(),
            confirmed: run.confirmed,
            kill_confirmed: run.kill_confirmed,
            terminated: run.terminated,
            elapsed_ms: run.elapsed_ms,
            execution_status: run.execution_status,
            started_to_kill_ms: run.started_to_kill_ms,
            canary_agent_id: run.canary_agent_id.get(),
            canary_name: run.canary_name,
            canary_deleted: run.canary_deleted,
            drill: run.drill,
        },
        leaf_index: record.leaf_index,
        leaf_hash: hex::encode(record.leaf_hash),
    }))
}

impl From<DrillError> for HttpError {
    fn from(e: DrillError) -> Self {
        match e {
            DrillError::MissingScope => HttpError::new(ErrorCode::MissingScope, e.to_string()),
            DrillError::NotStarted => HttpError::new(ErrorCode::ServiceUnavailable, e.to_string()),
            DrillError::EndedEarly | DrillError::Internal(_) => HttpError::internal(e.to_string()),
            DrillError::Config(c) => c.into(),
            DrillError::Run(r) => r.into(),
            DrillError::Store(s) => s.into(),
        }
    }
}
