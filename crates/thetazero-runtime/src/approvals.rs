//! Permission requests: an agent's author asks for more than the agent
//! holds (network, scopes, higher limits) with a justification and a
//! timeout; a key with the `approvals` scope, never the requesting key nor a
//! key it created, approves or denies. An approval is a grant laid over the
//! agent while it lasts (optionally with an expiry). A request left pending
//! past its time is recorded `expired`, with its audit event, by whoever
//! finds it first (a run that stops waiting for it, or a read over the API).

use serde_json::Value;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{
    check_text, AccountId, AgentId, ApiKey, KeyId, NewPermissionRequest, PermissionRequest,
    PermissionRequestId, PermissionRequestStatus, RequestDecision,
};
use thetazero_core::permissions::Grant;
use thetazero_core::store::{Store, StoreError, StoreResult};
use time::{Duration, OffsetDateTime};

use crate::Runtime;

/// A pending request expires after this long unless the caller says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// The longest a request may stay pending: a day.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// The longest a grant may be approved for: one year.
pub const MAX_GRANT_MS: u64 = 365 * 24 * 3600 * 1000;
/// The most requests one list answers.
pub const MAX_LIST: u64 = 500;
/// Keys created through more steps than this are treated as unrelated
/// beyond it; a chain this long is not made by hand.
const MAX_LINEAGE: usize = 64;

/// Records request `id` expired, unless it was decided meanwhile (then the
/// store changes nothing and answers the request as it is, or `None` if it
/// no longer exists). `why` goes into the request's decision reason.
pub async fn expire(
    store: &dyn Store,
    account: AccountId,
    id: PermissionRequestId,
    why: &str,
) -> StoreResult<Option<PermissionRequest>> {
    store
        .decide_permission_request_audited(
            account,
            id,
            RequestDecision {
                status: PermissionRequestStatus::Expired,
                decided_by: None,
                reason: Some(why.to_string()),
                grant_expires_at: None,
            },
            Box::new(move |r| {
                vec![AuditEvent::approval(
                    account,
                    AuditAction::PermissionExpired,
                    r,
                    None,
                    format!("permission request {} expired without a decision", r.id),
                )]
            }),
        )
        .await
}

/// Why a permission-request use case refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// A field breaks its rule (the message names the field).
    #[error("{0}")]
    Invalid(String),
    #[error("agent not found")]
    AgentNotFound,
    #[error("permission request not found")]
    NotFound,
    /// The agent already has as many pending requests as the quota allows.
    #[error("pending_requests_per_agent is {limit}; agent {agent} has {open} pending")]
    Quota {
        limit: u64,
        agent: AgentId,
        open: u64,
    },
    /// The deciding key may not decide this request (the message says why).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request is no longer pending.
    #[error("the request is {0}, not pending")]
    NotPending(PermissionRequestStatus),
    #[error("the request was decided meanwhile")]
    DecidedMeanwhile,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request as the caller sent it.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub agent_id: AgentId,
    /// What is asked for (`Grant`'s JSON form).
    pub permissions: Value,
    pub justification: String,
    /// How long it may stay pending; absent: [`DEFAULT_TIMEOUT_MS`].
    pub timeout_ms: Option<u64>,
}

/// A decision as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub reason: Option<String>,
    /// Approvals only: the grant lapses after this long.
    pub grant_expires_in_ms: Option<u64>,
}

/// How the deciding key stands to the key that made a request, through the
/// chain of keys that created keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Requester,
    /// Created by the requester, directly or through other keys.
    Descendant,
    /// Created the requester, directly or through other keys (an owner key,
    /// as the spec's flow has the owner approve).
    Ancestor,
    Unrelated,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Requester => "requester",
            Relation::Descendant => "descendant",
            Relation::Ancestor => "ancestor",
            Relation::Unrelated => "unrelated",
        }
    }
}

fn invalid(message: String) -> ApprovalError {
    ApprovalError::Invalid(message)
}

impl Runtime {
    /// Marks overdue pending requests expired, each with its audit event;
    /// answers the requests as they now stand.
    async fn expire_overdue(
        &self,
        account: AccountId,
        requests: Vec<PermissionRequest>,
    ) -> StoreResult<Vec<PermissionRequest>> {
        let now = OffsetDateTime::now_utc();
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            if r.is_overdue(now) {
                let decided = expire(
                    &*self.store,
                    account,
                    r.id,
                    "no decision before the timeout",
                )
                .await?;
                out.push(decided.unwrap_or(r));
            } else {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Up to `limit` requests of `account` (of `agent`, if given) that were
    /// pending, the overdue ones now expired.
    async fn pending(
        &self,
        account: AccountId,
        agent: Option<AgentId>,
        limit: u64,
    ) -> StoreResult<Vec<PermissionRequest>> {
        let pending = self
            .store
            .permission_requests(
                account,
                None,
                Some(PermissionRequestStatus::Pending),
                agent,
                limit,
            )
            .await?;
        self.expire_overdue(account, pending).await
    }

    /// One request of `account`, expired first if it is overdue.
    pub async fn permission_request(
        &self,
        account: AccountId,
        id: PermissionRequestId,
    ) -> Result<PermissionRequest, ApprovalError> {
        let found = self
            .store
            .permission_requests(account, Some(id), None, None, 1)
            .await?;
        self.expire_overdue(account, found)
            .await?
            .pop()
            .ok_or(ApprovalError::NotFound)
    }

    /// The account's requests, newest first, filtered by status and agent;
    /// overdue pending requests are expired first, so a pending list never
    /// shows one.
    pub async fn permission_requests(
        &self,
        account: AccountId,
        status: Option<PermissionRequestStatus>,
        agent: Option<AgentId>,
        limit: u64,
    ) -> Result<Vec<PermissionRequest>, ApprovalError> {
        if limit == 0 || limit > MAX_LIST {
            return Err(invalid(format!(
                "query parameter \"limit\" must be between 1 and {MAX_LIST}"
            )));
        }
        self.pending(account, agent, MAX_LIST).await?;
        Ok(self
            .store
            .permission_requests(account, None, status, agent, limit)
            .await?)
    }

    /// Raises a request for an agent of `key`'s account. The grant holds for
    /// the agent's code as it is now.
    pub async fn request_permissions(
        &self,
        key: &ApiKey,
        req: NewRequest,
    ) -> Result<PermissionRequest, ApprovalError> {
        check_text("justification", &req.justification, 4096, false).map_err(invalid)?;
        Grant::from_json(&req.permissions, &self.ceilings())
            .map_err(|e| invalid(format!("field \"permissions\": {e}")))?;
        let timeout = req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout == 0 || timeout > MAX_TIMEOUT_MS {
            return Err(invalid(format!(
                "field \"timeout_ms\" must be between 1 and {MAX_TIMEOUT_MS}"
            )));
        }
        let account = key.account_id;
        let agent_id = req.agent_id;
        let Some(agent) = self.store.get_agent(account, agent_id).await? else {
            return Err(ApprovalError::AgentNotFound);
        };
        // The store counts the agent's pending requests in the insert's
        // transaction, so concurrent requests cannot pass the bound together.
        let per_agent = self.quotas().pending_requests_per_agent;
        let key_id = Some(key.id);
        let created = self
            .store
            .create_permission_request_audited(
                NewPermissionRequest {
                    account_id: account,
                    agent_id,
                    requested_by: key_id,
                    grant: req.permissions,
                    justification: req.justification,
                    expires_at: OffsetDateTime::now_utc() + Duration::milliseconds(timeout as i64),
                    code_sha256: Some(crate::sha256_hex(agent.entry_code.as_bytes())),
                    pending_limit: (per_agent > 0).then_some(per_agent),
                },
                Box::new(move |r| {
                    vec![AuditEvent::approval(
                        account,
                        AuditAction::PermissionRequested,
                        r,
                        key_id,
                        format!(
                            "permission request {} for agent {}: {}",
                            r.id, r.agent_id, r.justification
                        ),
                    )]
                }),
            )
            .await;
        match created {
            Ok(request) => Ok(request),
            // The agent went away meanwhile.
            Err(StoreError::Conflict(_)) => Err(ApprovalError::AgentNotFound),
            Err(StoreError::PendingLimit { limit, open }) => {
                let refused = ApprovalError::Quota {
                    limit,
                    agent: agent_id,
                    open,
                };
                crate::quotas::record_refusal(
                    self.store.as_ref(),
                    account,
                    key_id,
                    Some(agent_id),
                    "pending_requests_per_agent",
                    limit,
                    refused.to_string(),
                )
                .await?;
                Err(refused)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The chain of keys that created `key`, nearest first.
    async fn ancestors(&self, account: AccountId, key: KeyId) -> StoreResult<Vec<KeyId>> {
        let mut chain = Vec::new();
        let mut at = key;
        while chain.len() < MAX_LINEAGE {
            let Some(parent) = self
                .store
                .get_key(account, at)
                .await?
                .and_then(|k| k.created_by)
            else {
                break;
            };
            if parent == key || chain.contains(&parent) {
                break;
            }
            chain.push(parent);
            at = parent;
        }
        Ok(chain)
    }

    async fn relation(
        &self,
        account: AccountId,
        decider: KeyId,
        requester: Option<KeyId>,
    ) -> StoreResult<Relation> {
        let Some(requester) = requester else {
            return Ok(Relation::Unrelated);
        };
        if decider == requester {
            return Ok(Relation::Requester);
        }
        if self.ancestors(account, decider).await?.contains(&requester) {
            return Ok(Relation::Descendant);
        }
        if self.ancestors(account, requester).await?.contains(&decider) {
            return Ok(Relation::Ancestor);
        }
        Ok(Relation::Unrelated)
    }

    /// Approves (`approve`) or denies a pending request of `key`'s account;
    /// answers the decided request and how the deciding key stands to the
    /// requesting one.
    pub async fn decide_permission_request(
        &self,
        key: &ApiKey,
        id: PermissionRequestId,
        approve: bool,
        decision: Decision,
    ) -> Result<(PermissionRequest, Relation), ApprovalError> {
        if let Some(r) = &decision.reason {
            check_text("reason", r, 1024, true).map_err(invalid)?;
        }
        let account = key.account_id;
        let current = self.permission_request(account, id).await?;
        let relation = self.relation(account, key.id, current.requested_by).await?;
        match relation {
            Relation::Requester => {
                return Err(ApprovalError::Forbidden(
                    "a key cannot decide a permission request it made",
                ))
            }
            Relation::Descendant => {
                return Err(ApprovalError::Forbidden(
                    "a key created (directly or through other keys) by the key that made a permission request cannot decide it",
                ))
            }
            Relation::Ancestor if self.approvals_forbid_ancestors => {
                return Err(ApprovalError::Forbidden(
                    "this deployment forbids a key to decide requests made by keys it created (approvals_forbid_ancestors)",
                ))
            }
            Relation::Ancestor | Relation::Unrelated => {}
        }
        if current.status != PermissionRequestStatus::Pending {
            return Err(ApprovalError::NotPending(current.status));
        }
        if !approve && decision.grant_expires_in_ms.is_some() {
            return Err(invalid("grant_expires_in_ms applies to approvals".into()));
        }
        if let Some(ms) = decision.grant_expires_in_ms {
            if !(1..=MAX_GRANT_MS).contains(&ms) {
                return Err(invalid(format!(
                    "field \"grant_expires_in_ms\" must be between 1 and {MAX_GRANT_MS} (one year), not {ms}"
                )));
            }
        }
        let grant_expires_at = decision
            .grant_expires_in_ms
            .map(|ms| OffsetDateTime::now_utc() + Duration::milliseconds(ms as i64));
        let key_id = Some(key.id);
        let (status, action) = if approve {
            (
                PermissionRequestStatus::Approved,
                AuditAction::PermissionApproved,
            )
        } else {
            (
                PermissionRequestStatus::Denied,
                AuditAction::PermissionDeniedByOwner,
            )
        };
        let decided = self
            .store
            .decide_permission_request_audited(
                account,
                id,
                RequestDecision {
                    status,
                    decided_by: key_id,
                    reason: decision.reason,
                    grant_expires_at,
                },
                Box::new(move |r| {
                    let mut e = AuditEvent::approval(
                        account,
                        action,
                        r,
                        key_id,
                        format!("permission request {} {status}", r.id),
                    );
                    e.payload["approver_relation"] = relation.as_str().into();
                    vec![e]
                }),
            )
            .await?
            .ok_or(ApprovalError::DecidedMeanwhile)?;
        Ok((decided, relation))
    }
}
