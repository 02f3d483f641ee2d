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

use serde_json::Value;
use thetazero_core::model::{AccountId, AgentId};
use thetazero_core::store::Store;
use thetazero_ledger::Ledger;
use time::OffsetDateTime;

pub use catalog::{Catalog, Coverage, UnknownFramework, FRAMEWORKS};
pub use checks::{CheckResult, CheckStatus, Deployment};
pub use report::{DISCLAIMER, SCHEMA};

/// The JSON Schema of the report.
pub const REPORT_SCHEMA: &str = include_str!("../schema/compliance-report.v1.schema.json");

/// The deployment setting that holds the frameworks an agent was
/// registered with.
pub fn frameworks_setting(account: AccountId, agent: AgentId) -> String {
    format!("compliance.frameworks.{account}.{agent}")
}

#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    #[error(transparent)]
    UnknownFramework(#[from] UnknownFramework),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Store(String),
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
