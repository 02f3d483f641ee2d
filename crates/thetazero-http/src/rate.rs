//! Rate limits the HTTP layer enforces before acting: executions per API key
//! and per account, and agent code changes per agent name (the evolution
//! rate). Counters live in
//! the store, so on PostgreSQL every replica counts against the same limit.
//!
//! A refusal is a 429 with `Retry-After` and an audit event `rate_limit_hit`
//! (`is_violation: true`). A caller hammering a limit would otherwise turn
//! each refused request into a durable audit write, so each counter records
//! at most one such event per minute; its payload says so.

use std::time::Duration;

use thetazero_api::{ApiError, ErrorCode};
use thetazero_core::audit::AuditEvent;
use thetazero_core::model::AgentId;
use thetazero_core::rate::{RateDecision, RateLimit};

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::state::AppState;

/// Which limit, for messages and the audit payload.
#[derive(Debug, Clone, Copy)]
pub enum Limited {
    ExecutionsPerKey,
    /// Counted per account, so that minting keys does not widen it.
    ExecutionsPerAccount,
    /// Counted per agent name within the account, so that deleting and
    /// re-creating an agent does not reset it.
    CodeUpdatesPerAgent,
}

impl Limited {
    fn name(self) -> &'static str {
        match self {
            Limited::ExecutionsPerKey => "executions_per_key_per_minute",
            Limited::ExecutionsPerAccount => "executions_per_account_per_minute",
            Limited::CodeUpdatesPerAgent => "code_updates_per_agent_per_hour",
        }
    }
}

/// Counts one event; refuses with 429 when the limit is reached. A limit of
/// 0 is off.
pub async fn enforce(
    state: &AppState,
    caller: &Caller,
    which: Limited,
    agent: Option<(Option<AgentId>, &str)>,
) -> HttpResult<()> {
    let (limit, window, key) = match which {
        Limited::ExecutionsPerKey => (
            state.settings.executions_per_key_per_minute,
            Duration::from_secs(60),
            format!("exec:key:{}", caller.key.id),
        ),
        Limited::ExecutionsPerAccount => (
            state.settings.executions_per_account_per_minute,
            Duration::from_secs(60),
            format!("exec:account:{}", caller.account()),
        ),
        Limited::CodeUpdatesPerAgent => (
            state.settings.code_updates_per_agent_per_hour,
            Duration::from_secs(3600),
            format!(
                "evolve:account:{}:name:{}",
                caller.account(),
                agent.map_or("", |(_, name)| name)
            ),
        ),
    };
    if limit == 0 {
        return Ok(());
    }
    let decision = state
        .store
        .rate_acquire(&RateLimit {
            key: key.clone(),
            limit,
            window,
        })
        .await?;
    let RateDecision::Refused { .. } = decision else {
        return Ok(());
    };
    let retry_after = decision.retry_after_secs();
    thetazero_core::telemetry::global().rate_limit_hit(which.name());
    let record = state
        .store
        .rate_acquire(&RateLimit {
            key: format!("audit:{key}"),
            limit: 1,
            window: Duration::from_secs(60),
        })
        .await?;
    if record.is_admitted() {
        let mut event = AuditEvent::rate_limit_hit(
            caller.account(),
            which.name(),
            limit,
            window.as_secs(),
            retry_after,
        )
        .key(caller.key_id());
        if let Some((Some(agent), _)) = agent {
            event = event.agent(agent);
        }
        event.payload["note"] =
            "further refusals of this counter within a minute are not recorded one by one".into();
        state.store.append_audit(vec![event]).await?;
    }
    let mut err = ApiError::new(
        ErrorCode::RateLimited,
        format!(
            "{} is {limit} per {}; retry after {retry_after} s",
            which.name(),
            if window.as_secs() == 60 {
                "minute"
            } else {
                "hour"
            }
        ),
    );
    err.retry_after = Some(retry_after);
    Err(HttpError(err))
}
