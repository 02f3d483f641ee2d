//! The kill-switch drill: a canary agent is registered in the caller's
//! account, started spinning, killed, and deleted; confirmed termination and
//! its latency are recorded in a `compliance_drill` event. Its events carry
//! `drill: true`, so they never count as real kills, and no account or
//! deployment halt is touched. The drill needs a key holding `killswitch`
//! and counts against the key's execution rate, as the run it starts would.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use thetazero_core::audit::{AuditAction, AuditEvent, AuditRecord};
use thetazero_core::model::{
    AgentId, AgentSpec, AgentStatus, ApiKey, ExecutionId, ExecutionStatus, PageRequest,
};
use thetazero_core::store::StoreError;
use thetazero_core::{AgentConfig, ConfigError, KeyScope, Permissions};

use crate::rates::Limited;
use crate::{Caller, Runtime, RuntimeError};

/// The canary's code: it spins until it is stopped.
const CANARY_CODE: &str = "while (true) {}";

/// How long the canary may wait to start before the drill gives up.
const START_WITHIN: Duration = Duration::from_secs(20);

/// What a drill measured; the payload of its `compliance_drill` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drill {
    pub execution_id: ExecutionId,
    /// The kill was confirmed and the run ended `killed`.
    pub confirmed: bool,
    pub kill_confirmed: bool,
    pub terminated: u64,
    pub elapsed_ms: f64,
    pub execution_status: String,
    pub started_to_kill_ms: f64,
    pub canary_agent_id: AgentId,
    pub canary_name: String,
    pub canary_deleted: bool,
    pub drill: bool,
}

/// Why a drill did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("this API key lacks the scope killswitch (a drill needs compliance and killswitch)")]
    MissingScope,
    #[error(
        "the drill's canary did not start within 20 s; retry when the account's runs have drained"
    )]
    NotStarted,
    #[error("the drill's canary ended before it could be killed")]
    EndedEarly,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl Runtime {
    /// Runs a drill in `key`'s account; answers what it measured and the
    /// audit record of its `compliance_drill` event.
    pub async fn kill_switch_drill(
        &self,
        key: &ApiKey,
    ) -> Result<(Drill, AuditRecord), DrillError> {
        if !key.has_scope(KeyScope::Killswitch) {
            return Err(DrillError::MissingScope);
        }
        let caller = Caller {
            account: key.account_id,
            key_id: Some(key.id),
        };
        // A refusal is the run's own (`RuntimeError::RateLimited`).
        self.enforce_rate(Limited::ExecutionsPerKey, caller, None)
            .await
            .map_err(RuntimeError::from)?;
        let (account, key_id) = (caller.account, caller.key_id);
        let mut suffix = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
        let name = format!("compliance-drill-canary-{}", hex::encode(suffix));
        let ceilings = self.ceilings();
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
        let (canary, _) = self
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
        let outcome = self.run_canary(caller, canary.id).await;
        // The canary goes whatever happened.
        let deleted = self
            .store
            .delete_agent_audited(
                account,
                canary.id,
                Box::new(move |id| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::AgentDeleted,
                        "drill canary deleted",
                    )
                    .agent(*id)
                    .key(key_id)
                    .payload(json!({"drill": true}))]
                }),
            )
            .await;
        let run = outcome?;
        deleted?;
        let drill = Drill {
            canary_agent_id: canary.id,
            canary_name: name,
            canary_deleted: true,
            drill: true,
            ..run
        };
        let description = format!(
            "kill-switch drill: termination {} in {:.1} ms",
            if drill.confirmed {
                "confirmed"
            } else {
                "NOT confirmed"
            },
            drill.elapsed_ms
        );
        let mut event = AuditEvent::new(account, AuditAction::ComplianceDrill, description)
            .agent(canary.id)
            .key(key_id)
            .payload(
                serde_json::to_value(&drill).map_err(|e| DrillError::Internal(e.to_string()))?,
            );
        event.execution_id = Some(drill.execution_id);
        let record = self
            .store
            .append_audit(vec![event])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| DrillError::Internal("no audit record for the drill".into()))?;
        Ok((drill, record))
    }

    /// Starts the canary, waits until it runs, kills it and measures; the
    /// canary's own fields are left for the caller to fill.
    async fn run_canary(&self, caller: Caller, agent: AgentId) -> Result<Drill, DrillError> {
        let account = caller.account;
        if self.is_stopping() {
            return Err(RuntimeError::ShuttingDown.into());
        }
        let started = Instant::now();
        let run = {
            let launcher = self.launcher.clone();
            tokio::spawn(
                async move { crate::execute(launcher, caller, agent, json!({}), None).await },
            )
        };
        // Wait for the run to be recorded as running (or to end early).
        let deadline = Instant::now() + START_WITHIN;
        let execution_id = loop {
            let page = self
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
                let ended = run.await.map_err(|e| DrillError::Internal(e.to_string()))?;
                return Err(match ended {
                    Err(e) => e.into(),
                    Ok(_) => DrillError::EndedEarly,
                });
            }
            if Instant::now() > deadline {
                // Still queued: stop it before it runs, then report.
                self.kill_agent_drill(
                    caller,
                    agent,
                    "kill-switch drill: the canary never started".into(),
                )
                .await?;
                let _ = run.await;
                return Err(DrillError::NotStarted);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let spinning_ms = started.elapsed().as_secs_f64() * 1000.0;
        let kill = self
            .kill_agent_drill(caller, agent, "kill-switch drill".into())
            .await?;
        let ended = run.await.map_err(|e| DrillError::Internal(e.to_string()))?;
        let status = match &ended {
            Ok(done) => done.execution.status.as_str().to_string(),
            Err(e) => format!("error: {e}"),
        };
        Ok(Drill {
            execution_id,
            confirmed: kill.confirmed && status == "killed",
            kill_confirmed: kill.confirmed,
            terminated: kill.terminated as u64,
            elapsed_ms: kill.elapsed_ms,
            execution_status: status,
            started_to_kill_ms: spinning_ms,
            canary_agent_id: agent,
            canary_name: String::new(),
            canary_deleted: false,
            drill: true,
        })
    }
}
