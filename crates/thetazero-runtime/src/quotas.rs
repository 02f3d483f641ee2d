//! Per-account bounds that protect the deployment from one tenant: bytes kept
//! in agents' context and in account storage, executions running at once,
//! and permission requests left pending. Each is counted per account (never
//! per key, so minting keys does not widen it); 0 turns one off.

use serde_json::Value;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{AccountId, AgentId, KeyId};
use thetazero_core::store::{Store, StoreError};

/// The operator's per-account quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes of context (keys and JSON values) all of an account's agents keep.
    pub context_bytes_per_account: u64,
    /// Bytes of account storage (keys and JSON values).
    pub storage_bytes_per_account: u64,
    /// Executions of one account running at once, top-level and children.
    pub concurrent_runs_per_account: u64,
    /// Permission requests one execution may leave pending at once.
    pub pending_requests_per_run: u64,
    /// Permission requests pending for one agent at once.
    pub pending_requests_per_agent: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            context_bytes_per_account: 64 << 20,
            storage_bytes_per_account: 256 << 20,
            concurrent_runs_per_account: 2000,
            pending_requests_per_run: 16,
            pending_requests_per_agent: 100,
        }
    }
}

/// Where a value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Context(AgentId),
    Storage,
}

/// Why a write does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverQuota {
    pub quota: &'static str,
    pub limit: u64,
    pub would_be: u64,
}

impl std::fmt::Display for OverQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} bytes; this write would make it {}",
            self.quota, self.limit, self.would_be
        )
    }
}

impl Quotas {
    /// Whether writing `value` under `key` keeps the account within its
    /// quota for that kind of value. The value it replaces is taken off.
    /// Concurrent writes can pass the quota together by at most one value
    /// each; the next write sees the total.
    pub async fn check_write(
        &self,
        store: &dyn Store,
        account: AccountId,
        kept: Kept,
        key: &str,
        value: &Value,
    ) -> Result<Result<(), OverQuota>, StoreError> {
        let (limit, quota) = match kept {
            Kept::Context(_) => (self.context_bytes_per_account, "context_bytes_per_account"),
            Kept::Storage => (self.storage_bytes_per_account, "storage_bytes_per_account"),
        };
        if limit == 0 {
            return Ok(Ok(()));
        }
        let usage = store.account_usage(account).await?;
        let old = match kept {
            Kept::Context(agent) => store
                .get_context(account, agent, key)
                .await?
                .map(|e| e.value),
            Kept::Storage => store.storage_get(account, key).await?,
        }
        .map_or(0, |v| key.len() + v.to_string().len()) as u64;
        let used = match kept {
            Kept::Context(_) => usage.context_bytes,
            Kept::Storage => usage.storage_bytes,
        };
        let would_be = used.saturating_sub(old) + (key.len() + value.to_string().len()) as u64;
        if would_be > limit {
            return Ok(Err(OverQuota {
                quota,
                limit,
                would_be,
            }));
        }
        Ok(Ok(()))
    }
}

/// Records a refusal over the API by quota `quota` (its bound `limit`) as an
/// audit event `quota_exceeded` (`is_violation: true`). A caller repeating a
/// refused request would otherwise turn each refusal into a durable audit
/// write, so each account records at most one such event per quota a
/// minute; its payload says so. (A refused call inside a run is recorded
/// with the call, as `permission_denied`.)
pub async fn record_refusal(
    store: &dyn Store,
    account: AccountId,
    key: Option<KeyId>,
    agent: Option<AgentId>,
    quota: &'static str,
    limit: u64,
    detail: String,
) -> Result<(), StoreError> {
    let mut event = AuditEvent::new(account, AuditAction::QuotaExceeded, detail)
        .key(key)
        .payload(serde_json::json!({
            "quota": quota,
            "limit": limit,
            "note": "further refusals by this quota within a minute are not recorded one by one",
        }));
    if let Some(agent) = agent {
        event = event.agent(agent);
    }
    event.is_violation = true;
    event.permission_state = "denied".into();
    let counter = format!("quota:{quota}:account:{account}");
    crate::rates::record_once_a_minute(store, &counter, event).await
}
