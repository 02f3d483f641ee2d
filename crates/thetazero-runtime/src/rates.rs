//! Rate limits the use cases enforce before acting: executions per API key
//! and per account, and agent code changes per agent name (the evolution
//! rate). Counters live in the store, so on PostgreSQL every replica counts
//! against the same limit.
//!
//! A refusal carries its `Retry-After` and records an audit event
//! `rate_limit_hit` (`is_violation: true`). A caller hammering a limit would
//! otherwise turn each refused request into a durable audit write, so each
//! counter records at most one such event per minute; its payload says so.

use std::time::Duration;

use thetazero_core::audit::AuditEvent;
use thetazero_core::model::{AccountId, AgentId, KeyId};
use thetazero_core::rate::{RateDecision, RateLimit};
use thetazero_core::store::{Store, StoreError};

/// The operator's rate limits; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Executions one API key may start per minute, across replicas.
    pub executions_per_key_per_minute: u32,
    /// Executions one account may start per minute, across replicas and
    /// keys.
    pub executions_per_account_per_minute: u32,
    /// Entry-code changes per agent name per hour (the evolution rate).
    pub code_updates_per_agent_per_hour: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            executions_per_key_per_minute: 1200,
            executions_per_account_per_minute: 6000,
            code_updates_per_agent_per_hour: 60,
        }
    }
}

/// Which limit counts an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    ExecutionsPerKey,
    /// Counted per account, so that minting keys does not widen it.
    ExecutionsPerAccount,
    /// Counted per agent name within the account, so that deleting and
    /// re-creating an agent does not reset it.
    CodeUpdatesPerAgent,
}

impl Limited {
    /// The setting's name, in messages and the audit payload.
    pub fn name(self) -> &'static str {
        match self {
            Limited::ExecutionsPerKey => "executions_per_key_per_minute",
            Limited::ExecutionsPerAccount => "executions_per_account_per_minute",
            Limited::CodeUpdatesPerAgent => "code_updates_per_agent_per_hour",
        }
    }
}

/// A refusal: which limit, its value and window, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is {limit} per {}; retry after {retry_after_secs} s", which.name(), if *window_secs == 60 { "minute" } else { "hour" })]
pub struct RateRefused {
    pub which: Limited,
    pub limit: u32,
    pub window_secs: u64,
    pub retry_after_secs: u64,
}

/// Why a rate check did not admit.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error(transparent)]
    Refused(#[from] RateRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who an event is counted for.
pub struct Counted<'a> {
    pub account: AccountId,
    pub key: Option<KeyId>,
    /// For the evolution rate: the agent (when it exists) and its name.
    pub agent: Option<(Option<AgentId>, &'a str)>,
}

/// Counts one event against `which`; refuses when the limit is reached.
pub async fn enforce(
    store: &dyn Store,
    limits: &RateLimits,
    which: Limited,
    who: Counted<'_>,
) -> Result<(), RateError> {
    let (limit, window, counter) = match which {
        Limited::ExecutionsPerKey => (
            limits.executions_per_key_per_minute,
            Duration::from_secs(60),
            format!(
                "exec:key:{}",
                who.key
                    .map_or_else(|| "none".to_string(), |k| k.to_string())
            ),
        ),
        Limited::ExecutionsPerAccount => (
            limits.executions_per_account_per_minute,
            Duration::from_secs(60),
            format!("exec:account:{}", who.account),
        ),
        Limited::CodeUpdatesPerAgent => (
            limits.code_updates_per_agent_per_hour,
            Duration::from_secs(3600),
            format!(
                "evolve:account:{}:name:{}",
                who.account,
                who.agent.map_or("", |(_, name)| name)
            ),
        ),
    };
    if limit == 0 {
        return Ok(());
    }
    let decision = store
        .rate_acquire(&RateLimit {
            key: counter.clone(),
            limit,
            window,
        })
        .await?;
    let RateDecision::Refused { .. } = decision else {
        return Ok(());
    };
    let retry_after = decision.retry_after_secs();
    thetazero_core::telemetry::global().rate_limit_hit(which.name());
    let mut event = AuditEvent::rate_limit_hit(
        who.account,
        which.name(),
        limit,
        window.as_secs(),
        retry_after,
    )
    .key(who.key);
    if let Some((Some(agent), _)) = who.agent {
        event = event.agent(agent);
    }
    event.payload["note"] =
        "further refusals of this counter within a minute are not recorded one by one".into();
    record_once_a_minute(store, &counter, event).await?;
    Err(RateRefused {
        which,
        limit,
        window_secs: window.as_secs(),
        retry_after_secs: retry_after,
    }
    .into())
}

/// Appends `event` unless an event of `counter` was recorded in the last
/// minute: a refusal repeated by its caller must not turn into one durable
/// audit write per attempt. Counted in the store, so across replicas too.
pub(crate) async fn record_once_a_minute(
    store: &dyn Store,
    counter: &str,
    event: AuditEvent,
) -> Result<(), StoreError> {
    let record = store
        .rate_acquire(&RateLimit {
            key: format!("audit:{counter}"),
            limit: 1,
            window: Duration::from_secs(60),
        })
        .await?;
    if record.is_admitted() {
        store.append_audit(vec![event]).await?;
    }
    Ok(())
}
