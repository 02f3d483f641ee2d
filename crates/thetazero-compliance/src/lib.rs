//! Controls mapping and evidence.
//!
//! Framework catalogs are data files (`catalogs/*.json`, embedded), each
//! identified by its version and SHA-256 in every output. Checks compute on
//! the live system (configuration, audit queries, a full verification of the
//! log, retention, anchors, the last kill-switch drill); each control of a
//! catalog gets a `coverage` and, separately, a `result`. The outputs are a
//! status, the JSON report `thetazero.compliance-report/v1` and an evidence
//! package (a zip whose manifest is signed with the deployment's key as a
//! DSSE envelope), which [`package::verify`] checks offline. All of it is
//! audit-prepared evidence, not a certification or a score.

pub mod catalog;
pub mod checks;
pub mod oscal;
pub mod package;
pub mod report;

use std::sync::Arc;

use serde_json::json;
use serde_json::Value;
use thetazero_core::audit::{AuditAction, AuditEvent, AuditRecord};
use thetazero_core::model::{AccountId, AgentId, KeyId};
use thetazero_core::store::Store;
use thetazero_ledger::Ledger;
use time::OffsetDateTime;

pub use catalog::{Catalog, Coverage, UnknownFramework, FRAMEWORKS};
pub use checks::{CheckResult, CheckStatus, Deployment};
pub use report::{DISCLAIMER, SCHEMA};

/// The JSON Schema of the report.
pub const REPORT_SCHEMA: &str = include_str!("../schema/compliance-report.v1.schema.json");

pub use thetazero_core::frameworks::frameworks_setting;

#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    #[error(transparent)]
    UnknownFramework(#[from] UnknownFramework),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Store(String),
    /// The package could not be built or signed.
    #[error(transparent)]
    Package(#[from] package::PackageError),
}

/// What to assess.
#[derive(Debug, Clone)]
pub struct Request {
    pub account: AccountId,
    /// One agent of the account, or the whole account.
    pub agent: Option<AgentId>,
    /// Framework ids; empty means the agent's own (from its registration)
    /// or, failing that, every framework.
    pub frameworks: Vec<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// An evaluation: the report and the checks behind it.
pub struct Assessment {
    pub report: Value,
    pub checks: Vec<CheckResult>,
    pub catalogs: Vec<Catalog>,
    /// The scope block of the report, repeated in each evidence file.
    pub scope: Value,
}

/// The frameworks an agent was registered with.
pub async fn agent_frameworks(
    store: &Arc<dyn Store>,
    account: AccountId,
    agent: AgentId,
) -> Result<Vec<String>, AssessError> {
    let text = store
        .get_setting(&frameworks_setting(account, agent))
        .await
        .map_err(|e| AssessError::Store(e.to_string()))?;
    Ok(text
        .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
        .unwrap_or_default())
}

/// Runs every check for the scope and evaluates the catalogs.
pub async fn assess(
    store: Arc<dyn Store>,
    ledger: &Ledger,
    deployment: Deployment,
    req: Request,
) -> Result<Assessment, AssessError> {
    catalog::validate_ids(&req.frameworks)?;
    let account = store
        .get_account(req.account)
        .await
        .map_err(|e| AssessError::Store(e.to_string()))?
        .ok_or(AssessError::NotFound)?;
    let all = checks::all_agents(&store, req.account)
        .await
        .map_err(AssessError::Store)?;
    let agent = match req.agent {
        Some(id) => Some(
            all.iter()
                .find(|a| a.id == id)
                .cloned()
                .ok_or(AssessError::NotFound)?,
        ),
        None => None,
    };
    let agents = match &agent {
        Some(a) => vec![a.clone()],
        None => all,
    };
    let mut agent_frameworks_list = Vec::new();
    for a in &agents {
        agent_frameworks_list.push((a.id, agent_frameworks(&store, req.account, a.id).await?));
    }
    let mut frameworks = req.frameworks.clone();
    if frameworks.is_empty() {
        if let Some(a) = &agent {
            frameworks = agent_frameworks_list
                .iter()
                .find(|(id, _)| *id == a.id)
                .map(|(_, f)| f.clone())
                .unwrap_or_default();
        }
    }
    let catalogs = catalog::catalogs(&frameworks)?;
    let now = OffsetDateTime::now_utc();
    let from = req.from.unwrap_or(account.created_at);
    let to = req.to.unwrap_or(now);
    let scope = checks::Scope {
        account_id: account.id,
        account_name: account.name.clone(),
        account_created_at: account.created_at,
        agent,
    };
    let cx = checks::Context {
        store: store.clone(),
        ledger,
        scope: scope.clone(),
        agents: agents.clone(),
        deployment: deployment.clone(),
        from,
        to,
        now,
    };
    let results = checks::run_all(&cx).await;
    let inputs = report::Inputs {
        scope: &scope,
        agents: &agents,
        agent_frameworks: &agent_frameworks_list,
        deployment: &deployment,
        catalogs: &catalogs,
        checks: &results,
        from,
        to,
        now,
    };
    let report = report::report(&inputs);
    Ok(Assessment {
        scope: report["scope"].clone(),
        report,
        checks: results,
        catalogs,
    })
}

/// Generates the evidence package of one framework for `req`'s scope and
/// records it, in the account's audit log, as a
/// `compliance_package_generated` event holding the package's digest
/// (`key` is the key that asked). Answers the package and that record.
pub async fn generate_package(
    store: Arc<dyn Store>,
    ledger: &Ledger,
    deployment: Deployment,
    req: Request,
    framework: &str,
    key: Option<KeyId>,
) -> Result<(package::Package, AuditRecord), AssessError> {
    let (account, agent) = (req.account, req.agent);
    let a = assess(store.clone(), ledger, deployment, req).await?;
    let sign = |m: &[u8]| {
        ledger
            .sign_raw(m)
            .map(|s| s.to_vec())
            .map_err(|e| e.to_string())
    };
    let built = package::build(&a, framework, ledger.verifier_key().as_str(), &sign)?;
    let mut event = AuditEvent::new(
        account,
        AuditAction::CompliancePackageGenerated,
        format!(
            "evidence package sha256:{} generated ({framework})",
            built.sha256
        ),
    )
    .key(key)
    .payload(
        json!({"framework": framework, "format": "markdown", "filename": built.filename,
                    "sha256": built.sha256, "bytes": built.bytes.len(), "agent_id": agent}),
    );
    event.agent_id = agent;
    let record = store
        .append_audit(vec![event])
        .await
        .map_err(|e| AssessError::Store(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| AssessError::Store("no audit record for the package".into()))?;
    Ok((built, record))
}
