//! The `Store` trait: everything thetazero keeps, behind one interface that
//! SQLite and PostgreSQL implement alike. Every method that touches a resource
//! takes the account it must belong to; a resource of another account is
//! reported as absent, never as forbidden.

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::{AnchorRecord, AuditEvent, AuditQuery, AuditRecord, StoredCheckpoint};
use crate::model::{
    Account, AccountId, Agent, AgentId, AgentPatch, AgentSpec, ApiKey, ContextEntry, Execution,
    ExecutionId, ExecutionOutcome, ExecutionStatus, KeyId, NewExecution, NewKey,
    NewPermissionRequest, Page, PageRequest, PermissionRequest, PermissionRequestId,
    PermissionRequestStatus, RequestDecision,
};
use crate::model::{AgentStatus, AuditRecordId};
use crate::rate::{RateDecision, RateLimit};
use crate::{AgentConfig, Ceilings, KeyScope, Permissions};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    /// The change would leave the account without a live key that can
    /// manage keys (an owner key or one with the `keys` scope).
    #[error("{0}")]
    LastKeyManager(String),
    /// A new permission request would pass its
    /// [`NewPermissionRequest::pending_limit`]: the agent already has
    /// `open` requests pending.
    #[error("pending_requests_per_agent is {limit}; this agent has {open} pending")]
    PendingLimit { limit: u64, open: u64 },
    /// The database cannot be reached or refused service; worth retrying.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// A value read back from the database did not have the expected shape.
    pub fn corrupt(what: &str) -> StoreError {
        StoreError::Internal(format!("stored {what} could not be read back"))
    }
}

/// An agent's stored status, config and permissions (JSON text), parsed back
/// the same way by every backend.
pub fn decode_agent_columns(
    status: &str,
    config: &str,
    permissions: &str,
) -> StoreResult<(AgentStatus, AgentConfig, Permissions)> {
    let status = AgentStatus::parse(status).ok_or_else(|| StoreError::corrupt("agent status"))?;
    // Stored configs were validated on the way in.
    let config = serde_json::from_str::<Value>(config)
        .ok()
        .and_then(|v| AgentConfig::from_json(&v, &Ceilings::UNBOUNDED).ok())
        .ok_or_else(|| StoreError::corrupt("agent config"))?;
    let permissions = serde_json::from_str::<Value>(permissions)
        .ok()
        .and_then(|v| Permissions::from_json(&v).ok())
        .ok_or_else(|| StoreError::corrupt("agent permissions"))?;
    Ok((status, config, permissions))
}

/// The audit events a mutation records, computed from its result inside the
/// mutation's own transaction: a mutation that commits has its events, and
/// one that does not leaves none.
pub type Audit<T> = Box<dyn FnOnce(&T) -> Vec<AuditEvent> + Send + 'static>;

/// Whether a key can manage keys: an owner key, or one with the `keys` scope.
pub fn manages_keys(key: &ApiKey) -> bool {
    key.revoked_at.is_none() && key.has_scope(crate::KeyScope::Keys)
}

/// Checks a change to the keys of one account: `changed` is the key as it
/// will be; refused when it could manage keys, will not, and no other live
/// key can.
pub fn check_key_change(keys: &[ApiKey], changed: &ApiKey) -> StoreResult<()> {
    let before = keys.iter().find(|k| k.id == changed.id);
    if before.is_some_and(manages_keys)
        && !manages_keys(changed)
        && !keys.iter().any(|k| k.id != changed.id && manages_keys(k))
    {
        return Err(last_key_manager());
    }
    Ok(())
}

/// Why a key's scopes cannot be replaced, if they cannot.
pub fn scope_change_refusal(key: &ApiKey) -> Option<StoreError> {
    if key.is_owner {
        return Some(StoreError::Conflict(
            "an owner key holds every scope; its scopes cannot be changed".into(),
        ));
    }
    if key.revoked_at.is_some() {
        return Some(StoreError::Conflict("the key is revoked".into()));
    }
    None
}

/// The refusal of a change that would leave an account with no live key able
/// to manage keys.
pub fn last_key_manager() -> StoreError {
    StoreError::LastKeyManager(
        "this is the account's last live key that can manage keys (an owner key or one with the keys scope); create another first, or recover one with `thetazero keys recover`".into(),
    )
}

/// A mutation that records nothing (tests, internal bookkeeping).
pub fn no_audit<T>() -> Audit<T> {
    Box::new(|_| Vec::new())
}

/// What the first start of a deployment creates.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub account: Account,
    pub key: ApiKey,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates the first account and its owner key if the deployment has no
    /// account yet; answers `None` when it already had one. Atomic, so two
    /// replicas starting at once create exactly one.
    async fn bootstrap(&self, account_name: &str, key: NewKey) -> StoreResult<Option<Bootstrap>>;

    /// Creates an account and, if given, its owner key (whose `account_id`
    /// is filled in), recording `audit`'s events in the same transaction.
    async fn create_account_audited(
        &self,
        name: &str,
        owner: Option<NewKey>,
        audit: Audit<(Account, Option<ApiKey>)>,
    ) -> StoreResult<(Account, Option<ApiKey>)>;
    async fn create_account(&self, name: &str) -> StoreResult<Account> {
        let (account, _) = self.create_account_audited(name, None, no_audit()).await?;
        Ok(account)
    }
    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>>;
    /// The account created by `bootstrap`: its owner keys administer the deployment.
    async fn first_account_id(&self) -> StoreResult<Option<AccountId>>;

    async fn create_key_audited(&self, key: NewKey, audit: Audit<ApiKey>) -> StoreResult<ApiKey>;
    async fn create_key(&self, key: NewKey) -> StoreResult<ApiKey> {
        self.create_key_audited(key, no_audit()).await
    }
    /// Finds a key by the SHA-256 of its secret, revoked or not.
    async fn find_key_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<(ApiKey, [u8; 32])>>;
    async fn list_keys(&self, account: AccountId) -> StoreResult<Vec<ApiKey>>;
    async fn get_key(&self, account: AccountId, id: KeyId) -> StoreResult<Option<ApiKey>>;
    /// Marks a key revoked; answers the key as it is now, `None` if absent.
    /// `audit` runs only when the key exists. Refused with
    /// [`StoreError::LastKeyManager`] when it is the account's last live key
    /// that can manage keys, checked in the same transaction.
    async fn revoke_key_audited(
        &self,
        account: AccountId,
        id: KeyId,
        audit: Audit<ApiKey>,
    ) -> StoreResult<Option<ApiKey>>;
    async fn revoke_key(&self, account: AccountId, id: KeyId) -> StoreResult<Option<ApiKey>> {
        self.revoke_key_audited(account, id, no_audit()).await
    }
    /// Replaces a live, non-owner key's scopes; answers the key as it is
    /// now, `None` if absent. Refused with [`StoreError::LastKeyManager`]
    /// when it takes `keys` from the account's last live key that can manage
    /// keys, and with [`StoreError::Conflict`] for a revoked or owner key,
    /// checked in the same transaction. `audit` receives the key as it was
    /// and as it is.
    async fn set_key_scopes_audited(
        &self,
        account: AccountId,
        id: KeyId,
        scopes: Vec<KeyScope>,
        audit: Audit<(ApiKey, ApiKey)>,
    ) -> StoreResult<Option<ApiKey>>;
    async fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> StoreResult<()>;

    /// Registers an agent, or replaces the one of the same name. Answers the
    /// agent and whether it was created.
    async fn upsert_agent_audited(
        &self,
        account: AccountId,
        spec: AgentSpec,
        audit: Audit<(Agent, bool)>,
    ) -> StoreResult<(Agent, bool)>;
    async fn upsert_agent(
        &self,
        account: AccountId,
        spec: AgentSpec,
    ) -> StoreResult<(Agent, bool)> {
        self.upsert_agent_audited(account, spec, no_audit()).await
    }
    async fn list_agents(&self, account: AccountId, page: PageRequest) -> StoreResult<Page<Agent>>;
    async fn get_agent(&self, account: AccountId, id: AgentId) -> StoreResult<Option<Agent>>;
    /// The account's agent called `name` (names are unique per account).
    async fn get_agent_by_name(&self, account: AccountId, name: &str)
        -> StoreResult<Option<Agent>>;
    /// `audit` runs only when the agent exists.
    async fn update_agent_audited(
        &self,
        account: AccountId,
        id: AgentId,
        patch: AgentPatch,
        audit: Audit<Agent>,
    ) -> StoreResult<Option<Agent>>;
    async fn update_agent(
        &self,
        account: AccountId,
        id: AgentId,
        patch: AgentPatch,
    ) -> StoreResult<Option<Agent>> {
        self.update_agent_audited(account, id, patch, no_audit())
            .await
    }
    /// Deletes an agent, its context and its executions. Audit records stay.
    /// `audit` runs only when the agent existed.
    async fn delete_agent_audited(
        &self,
        account: AccountId,
        id: AgentId,
        audit: Audit<AgentId>,
    ) -> StoreResult<bool>;
    async fn delete_agent(&self, account: AccountId, id: AgentId) -> StoreResult<bool> {
        self.delete_agent_audited(account, id, no_audit()).await
    }

    async fn put_context_audited(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        value: &Value,
        audit: Audit<ContextEntry>,
    ) -> StoreResult<ContextEntry>;
    async fn put_context(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        value: &Value,
    ) -> StoreResult<ContextEntry> {
        self.put_context_audited(account, agent, key, value, no_audit())
            .await
    }
    async fn get_context(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
    ) -> StoreResult<Option<ContextEntry>>;
    /// `audit` runs only when the key existed.
    async fn delete_context_audited(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        audit: Audit<String>,
    ) -> StoreResult<bool>;
    async fn delete_context(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
    ) -> StoreResult<bool> {
        self.delete_context_audited(account, agent, key, no_audit())
            .await
    }

    /// An id for an execution of `account` about to start, unique in the
    /// deployment and numbered within the account (`model::id_range`).
    /// Reserving it first lets an execution run while its start is committed.
    async fn reserve_execution_id(&self, account: AccountId) -> StoreResult<ExecutionId>;
    /// Records the start of an execution (status `running`) and its audit
    /// event, in one transaction.
    async fn create_execution(
        &self,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
    ) -> StoreResult<(Execution, AuditRecord)>;
    /// Records how it ended and its audit event, in one transaction; answers
    /// `None` (recording nothing) if it is unknown or already ended.
    async fn finish_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> StoreResult<Option<(Execution, AuditRecord)>>;
    /// Records a whole execution that ended before its start was written:
    /// the start and the end, with their events, as `create_execution` then
    /// `finish_execution` would. Backends that can do it in one transaction
    /// (one durable commit) override this.
    async fn record_execution(
        &self,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> StoreResult<(Execution, AuditRecord, AuditRecord)> {
        let account = new.account_id;
        let (_, first) = self.create_execution(id, new, started).await?;
        let (execution, last) = self
            .finish_execution(account, id, outcome, ended)
            .await?
            .ok_or_else(|| StoreError::Internal("execution vanished before it finished".into()))?;
        Ok((execution, first, last))
    }

    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
    ) -> StoreResult<Option<Execution>>;
    /// An agent's executions, newest first.
    async fn list_executions(
        &self,
        account: AccountId,
        agent: AgentId,
        status: Option<ExecutionStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<Execution>>;

    /// The account's persistent key-value storage, shared by its agents.
    async fn storage_get(&self, account: AccountId, key: &str) -> StoreResult<Option<Value>>;
    async fn storage_put(&self, account: AccountId, key: &str, value: &Value) -> StoreResult<()>;

    /// Bytes the account keeps in agents' context and in its storage (keys
    /// and JSON values), for the per-account quotas.
    async fn account_usage(&self, account: AccountId) -> StoreResult<AccountUsage>;

    /// Appends events to the account's audit log, in order, durably.
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>>;
    async fn query_audit(
        &self,
        account: AccountId,
        query: &AuditQuery,
    ) -> StoreResult<Page<AuditRecord>>;

    /// One record by id.
    async fn audit_record(
        &self,
        account: AccountId,
        id: AuditRecordId,
    ) -> StoreResult<Option<AuditRecord>>;
    /// The full payload of one record of the account (summaries and leaves
    /// do not carry it), `None` when it has none or is not the account's.
    async fn audit_payload(
        &self,
        account: AccountId,
        id: AuditRecordId,
    ) -> StoreResult<Option<Value>>;
    /// The number of leaves in the account's log.
    async fn audit_log_size(&self, account: AccountId) -> StoreResult<u64>;
    /// Exact leaf bytes for indices `from..to` (at most `limit`), in order.
    async fn audit_leaves(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>>;
    /// Stored interior hashes by storage index, in the order asked; an index
    /// that is not stored is an error.
    async fn audit_hashes(
        &self,
        account: AccountId,
        indexes: Vec<u64>,
    ) -> StoreResult<Vec<[u8; 32]>>;
    /// Keeps a signed checkpoint. Storing the same size twice keeps the first.
    async fn store_checkpoint(&self, account: AccountId, size: u64, note: &str) -> StoreResult<()>;
    async fn latest_checkpoint(&self, account: AccountId) -> StoreResult<Option<StoredCheckpoint>>;
    /// The smallest checkpoint whose size is at least `size`.
    async fn checkpoint_covering(
        &self,
        account: AccountId,
        size: u64,
    ) -> StoreResult<Option<StoredCheckpoint>>;
    /// Checkpoints with sizes in `from..=to`, ascending, at most `limit`.
    async fn checkpoints(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<StoredCheckpoint>>;
    /// Accounts whose log grew past their latest checkpoint: `(account, size,
    /// latest checkpoint size)`.
    async fn logs_needing_checkpoint(&self) -> StoreResult<Vec<(AccountId, u64, u64)>>;

    /// Every log with at least one leaf: `(account, size)`.
    async fn audit_logs(&self) -> StoreResult<Vec<(AccountId, u64)>>;
    /// Permission requests still waiting for a decision, across every
    /// account: one number for the operator's metrics, never shown to a
    /// tenant.
    async fn pending_permission_requests_total(&self) -> StoreResult<u64>;
    /// Records an anchoring (insert, or update the one of the same size and kind).
    async fn put_anchor(&self, account: AccountId, anchor: AnchorRecord) -> StoreResult<()>;
    /// Anchors of checkpoints with sizes in `from..=to`, ascending.
    async fn anchors(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
    ) -> StoreResult<Vec<AnchorRecord>>;
    /// The most recently updated anchoring of this kind.
    async fn last_anchor(
        &self,
        account: AccountId,
        kind: &str,
    ) -> StoreResult<Option<AnchorRecord>>;
    /// The largest confirmed anchoring of this kind.
    async fn last_confirmed_anchor(
        &self,
        account: AccountId,
        kind: &str,
    ) -> StoreResult<Option<AnchorRecord>>;

    /// Records a pending request. With a
    /// [`NewPermissionRequest::pending_limit`], the agent's pending requests
    /// (overdue ones, not yet marked expired, left out) are counted in the
    /// same transaction as the insert, serialised per agent, so concurrent
    /// requests cannot pass the limit together; refused with
    /// [`StoreError::PendingLimit`].
    async fn create_permission_request_audited(
        &self,
        new: NewPermissionRequest,
        audit: Audit<PermissionRequest>,
    ) -> StoreResult<PermissionRequest>;
    /// The account's requests, newest first: all, or with this status, or of
    /// this agent, or one by id.
    async fn permission_requests(
        &self,
        account: AccountId,
        id: Option<PermissionRequestId>,
        status: Option<PermissionRequestStatus>,
        agent: Option<AgentId>,
        limit: u64,
    ) -> StoreResult<Vec<PermissionRequest>>;
    /// Ends a pending request; answers `None` (recording nothing) if it is
    /// unknown or no longer pending.
    async fn decide_permission_request_audited(
        &self,
        account: AccountId,
        id: PermissionRequestId,
        decision: RequestDecision,
        audit: Audit<PermissionRequest>,
    ) -> StoreResult<Option<PermissionRequest>>;

    /// A deployment setting (the global halt, ...), shared by every replica.
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Sets (or, with `None`, clears) a setting and records `audit`'s events
    /// in the same transaction.
    async fn put_setting_audited(
        &self,
        key: &str,
        value: Option<String>,
        audit: Audit<()>,
    ) -> StoreResult<()>;

    /// Counts one event against `limit` (see [`crate::rate`]): shared by
    /// every replica on PostgreSQL, kept in the process on SQLite.
    async fn rate_acquire(&self, limit: &RateLimit) -> StoreResult<RateDecision>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
}

/// What an account keeps, in bytes, against its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountUsage {
    pub context_bytes: u64,
    pub storage_bytes: u64,
}
