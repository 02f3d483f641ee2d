//! The kill switch: stopping one agent, halting an account or the whole
//! deployment, and telling the other replicas.
//!
//! The store holds the truth (an agent's `killed` status, the halt settings),
//! so every replica refuses new executions as soon as it is written; the bus
//! carries the notice that makes each replica cancel what it is running now.
//! Every step is an audit event, and a kill's final event says whether the
//! executions it stopped here have ended and how long that took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::bus::EventBus;
use thetazero_core::model::{AccountId, AgentId, AgentPatch, AgentStatus, KeyId};
use thetazero_core::store::{Store, StoreError};
use time::OffsetDateTime;

use crate::{Running, RuntimeError};

pub const DEPLOYMENT_HALT: &str = "halt:deployment";

pub fn account_halt_key(account: AccountId) -> String {
    format!("halt:account:{account}")
}

/// How long a kill waits for the executions it stopped to end.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// A halt in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub reason: String,
    pub key_id: Option<KeyId>,
    pub account_id: AccountId,
    pub at: String,
}

/// What a halt applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltScope {
    /// The caller's account.
    Account,
    /// Every account of the deployment.
    Deployment,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KillOutcome {
    pub agent_id: AgentId,
    /// Executions stopped on this replica.
    pub terminated: usize,
    /// Whether they all ended within the confirmation window.
    pub confirmed: bool,
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HaltOutcome {
    pub halted: bool,
    pub terminated: usize,
    pub confirmed: bool,
    pub elapsed_ms: f64,
}

pub(crate) async fn halts(
    store: &Arc<dyn Store>,
    account: AccountId,
) -> Result<Option<Halt>, StoreError> {
    for key in [DEPLOYMENT_HALT.to_string(), account_halt_key(account)] {
        if let Some(text) = store.get_setting(&key).await? {
            if let Ok(halt) = serde_json::from_str::<Halt>(&text) {
                return Ok(Some(halt));
            }
        }
    }
    Ok(None)
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn kill_agent(
    store: &Arc<dyn Store>,
    running: &Arc<Running>,
    bus: &Arc<dyn EventBus>,
    account: AccountId,
    agent: AgentId,
    key_id: Option<KeyId>,
    reason: String,
) -> Result<KillOutcome, RuntimeError> {
    kill_agent_as(store, running, bus, account, agent, key_id, reason, false).await
}

/// A kill; a drill's events carry `drill: true`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn kill_agent_as(
    store: &Arc<dyn Store>,
    running: &Arc<Running>,
    bus: &Arc<dyn EventBus>,
    account: AccountId,
    agent: AgentId,
    key_id: Option<KeyId>,
    reason: String,
    drill: bool,
) -> Result<KillOutcome, RuntimeError> {
    let started = Instant::now();
    let why = reason.clone();
    // Stop what runs here at once, before the durable write: an execution
    // of another account's agent id is never touched (the registry is keyed
    // by account), and an unknown agent has nothing running.
    let mut ids = running.cancel_agent(account, agent);
    let killed = store
        .update_agent_audited(
            account,
            agent,
            AgentPatch {
                status: Some(AgentStatus::Killed),
                ..Default::default()
            },
            Box::new(move |a| {
                vec![AuditEvent::new(
                    account,
                    AuditAction::AgentKillRequested,
                    format!("kill of agent {} requested: {why}", a.name),
                )
                .agent(a.id)
                .key(key_id)
                .payload(if drill {
                    json!({"reason": why, "drill": true})
                } else {
                    json!({"reason": why})
                })]
            }),
        )
        .await?
        .ok_or(RuntimeError::AgentNotFound)?;
    // From here no replica starts a new execution of it. Sweep again for
    // executions that registered while the status was being written (those
    // that register later see the generation move and read the status).
    for id in running.cancel_agent(account, agent) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if let Err(e) = bus
        .publish("kill", json!({"account": account, "agent": agent}))
        .await
    {
        tracing::warn!(error = %e, "could not tell the other replicas about a kill");
    }
    let confirmed = running.wait_stopped(&ids, CONFIRM_WITHIN).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut event = AuditEvent::new(
        account,
        AuditAction::AgentKilled,
        format!(
            "agent {} killed: {} running execution(s) stopped{} in {elapsed_ms:.1} ms",
            killed.name,
            ids.len(),
            if confirmed { "" } else { " (not all confirmed)" }
        ),
    )
    .agent(agent)
    .key(key_id)
    .payload(json!({"reason": reason, "terminated": ids, "confirmed": confirmed, "elapsed_ms": elapsed_ms}));
    if drill {
        event.payload["drill"] = json!(true);
    }
    event.is_violation = false;
    store.append_audit(vec![event]).await?;
    Ok(KillOutcome {
        agent_id: agent,
        terminated: ids.len(),
        confirmed,
        elapsed_ms,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn set_halt(
    store: &Arc<dyn Store>,
    running: &Arc<Running>,
    bus: &Arc<dyn EventBus>,
    scope: HaltScope,
    account: AccountId,
    key_id: Option<KeyId>,
    halted: bool,
    reason: String,
) -> Result<HaltOutcome, RuntimeError> {
    let started = Instant::now();
    let key = match scope {
        HaltScope::Account => account_halt_key(account),
        HaltScope::Deployment => DEPLOYMENT_HALT.to_string(),
    };
    let value = halted.then(|| {
        serde_json::to_string(&Halt {
            reason: reason.clone(),
            key_id,
            account_id: account,
            at: now(),
        })
        .unwrap_or_default()
    });
    // Safety before completeness: what runs here stops even if the store
    // cannot take the halt.
    let ids = if halted {
        match scope {
            HaltScope::Account => running.cancel_account(account),
            HaltScope::Deployment => running.cancel_all(),
        }
    } else {
        Vec::new()
    };
    let (action, scope_name) = (
        if halted {
            AuditAction::GlobalHaltSet
        } else {
            AuditAction::GlobalHaltCleared
        },
        match scope {
            HaltScope::Account => "account",
            HaltScope::Deployment => "deployment",
        },
    );
    let why = reason.clone();
    store
        .put_setting_audited(
            &key,
            value,
            Box::new(move |_| {
                vec![AuditEvent::new(
                    account,
                    action,
                    format!(
                        "{scope_name} halt {}: {why}",
                        if halted { "set" } else { "cleared" }
                    ),
                )
                .key(key_id)
                .payload(json!({"scope": scope_name, "reason": why}))]
            }),
        )
        .await?;
    if halted {
        let target = match scope {
            HaltScope::Account => json!(account),
            HaltScope::Deployment => serde_json::Value::Null,
        };
        if let Err(e) = bus.publish("halt", json!({"account": target})).await {
            tracing::warn!(error = %e, "could not tell the other replicas about a halt");
        }
    }
    let confirmed = running.wait_stopped(&ids, CONFIRM_WITHIN).await;
    Ok(HaltOutcome {
        halted,
        terminated: ids.len(),
        confirmed,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Applies kills and halts announced on the bus to this replica's executions.
pub(crate) fn listen(bus: Arc<dyn EventBus>, running: Arc<Running>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut rx = bus.subscribe();
    handle.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(event) => match event.topic.as_str() {
                    "kill" => {
                        if let (Some(account), Some(agent)) = (
                            event.payload["account"].as_i64(),
                            event.payload["agent"].as_i64(),
                        ) {
                            running.cancel_agent(AccountId::new(account), AgentId::new(agent));
                        }
                    }
                    "halt" => match event.payload["account"].as_i64() {
                        Some(account) => {
                            running.cancel_account(AccountId::new(account));
                        }
                        None => {
                            running.cancel_all();
                        }
                    },
                    _ => {}
                },
                // A lagging listener has missed notices; executions re-check
                // the store when they start, so nothing new slips through.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    });
}
