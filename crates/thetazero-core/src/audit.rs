//! Audit events as the rest of the system produces them, and the one interface
//! they are recorded through. The verifiable log sits behind this interface.

use serde_json::Value;
use time::OffsetDateTime;

use crate::model::{AccountId, AgentId, AuditRecordId, ExecutionId, KeyId};

/// One thing that happened, before it is given a place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub account_id: AccountId,
    pub agent_id: Option<AgentId>,
    pub execution_id: Option<ExecutionId>,
    pub key_id: Option<KeyId>,
    /// `agent_created`, `key_revoked`, `permission_denied`, ...
    pub action_type: String,
    /// A coarse grouping for dashboards: `agent`, `key`, `execution`, `host_call`, ...
    pub action_category: String,
    pub description: String,
    /// `granted`, `denied` or `none` (lowercase snake_case: it goes into the
    /// log's leaf).
    pub permission_state: String,
    pub is_violation: bool,
    pub input_summary: Option<String>,
    pub output_summary: Option<String>,
    /// SHA-256 of the full input / output, where there is one (executions).
    pub input_digest: Option<[u8; 32]>,
    pub output_digest: Option<[u8; 32]>,
    /// The full details, kept apart from the summary so that retention can
    /// remove them.
    pub payload: Value,
}

/// Declares `AuditAction` from one table: each action with its log name
/// and its category.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $category:literal;)*) => {
        /// Every kind of event the system writes, with the coarse category it is
        /// filed under. The names are part of the log's leaves and of the API
        /// (`action_types` filters), so a variant is never renamed; records read
        /// back from a store keep their `action_type` as text, because a log may
        /// hold names an older or newer release wrote.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),*];

            /// The `action_type` written into the log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }

            /// The `action_category` the action is filed under.
            pub fn category(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $category,)*
                }
            }
        }
    };
}

audit_actions! {
    AccountCreated => "account_created", "account";
    AgentCreated => "agent_created", "agent";
    AgentUpdated => "agent_updated", "agent";
    AgentDeleted => "agent_deleted", "agent";
    AgentKillRequested => "agent_kill_requested", "killswitch";
    AgentKilled => "agent_killed", "killswitch";
    GlobalHaltSet => "global_halt_set", "killswitch";
    GlobalHaltCleared => "global_halt_cleared", "killswitch";
    KeyCreated => "key_created", "key";
    KeyRevoked => "key_revoked", "key";
    KeyScopesChanged => "key_scopes_changed", "key";
    ContextWritten => "context_written", "context";
    ContextDeleted => "context_deleted", "context";
    PermissionRequested => "permission_requested", "approvals";
    PermissionApproved => "permission_approved", "approvals";
    PermissionDeniedByOwner => "permission_denied_by_owner", "approvals";
    PermissionExpired => "permission_expired", "approvals";
    /// A host call refused for a missing permission.
    PermissionDenied => "permission_denied", "host_call";
    ApiCall => "api_call", "host_call";
    ApiCallResult => "api_call_result", "host_call";
    SandboxLimitHit => "sandbox_limit_hit", "limit";
    WorkerStopped => "worker_stopped", "limit";
    RateLimitHit => "rate_limit_hit", "limit";
    /// A request over the API refused by a per-account quota.
    QuotaExceeded => "quota_exceeded", "limit";
    ContentBlocked => "content_blocked", "safety";
    ExecutionStarted => "execution_started", "execution";
    ExecutionCompleted => "execution_completed", "execution";
    ComplianceFrameworksSet => "compliance_frameworks_set", "compliance";
    CompliancePackageGenerated => "compliance_package_generated", "compliance";
    ComplianceDrill => "compliance_drill", "killswitch";
}

impl AuditAction {
    /// The action a logged `action_type` names, if this release writes it.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<AuditAction> for String {
    fn eq(&self, other: &AuditAction) -> bool {
        self == other.as_str()
    }
}

impl AuditEvent {
    /// An event of `action`, filed under the action's category.
    pub fn new(account_id: AccountId, action: AuditAction, description: impl Into<String>) -> Self {
        AuditEvent::named(account_id, action.as_str(), action.category(), description)
    }

    /// An event with the type and category given as text: for records read
    /// back from a store (see [`AuditAction`]) and for tests.
    pub fn named(
        account_id: AccountId,
        action_type: &str,
        category: &str,
        description: impl Into<String>,
    ) -> Self {
        AuditEvent {
            account_id,
            agent_id: None,
            execution_id: None,
            key_id: None,
            action_type: action_type.into(),
            action_category: category.into(),
            description: description.into(),
            permission_state: "none".into(),
            is_violation: false,
            input_summary: None,
            output_summary: None,
            input_digest: None,
            output_digest: None,
            payload: Value::Null,
        }
    }

    pub fn agent(mut self, id: AgentId) -> Self {
        self.agent_id = Some(id);
        self
    }

    pub fn key(mut self, id: Option<KeyId>) -> Self {
        self.key_id = id;
        self
    }

    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// A refusal by a rate limit: `limit` names it, `max` per `window_secs`,
    /// retry after `retry_after_secs`. A violation.
    pub fn rate_limit_hit(
        account: AccountId,
        limit: &str,
        max: u32,
        window_secs: u64,
        retry_after_secs: u64,
    ) -> Self {
        let mut e = AuditEvent::new(
            account,
            AuditAction::RateLimitHit,
            format!("rate limit {limit} ({max}) hit"),
        )
        .payload(serde_json::json!({
            "limit": limit,
            "max": max,
            "window_secs": window_secs,
            "retry_after_secs": retry_after_secs,
        }));
        e.is_violation = true;
        e
    }

    /// A step of a permission request (`permission_requested`,
    /// `permission_approved`, `permission_denied_by_owner`,
    /// `permission_expired`). A request raised by a suspended call belongs to
    /// that execution's trail.
    pub fn approval(
        account: AccountId,
        action: AuditAction,
        request: &crate::model::PermissionRequest,
        key: Option<KeyId>,
        description: String,
    ) -> Self {
        let mut e = AuditEvent::new(account, action, description)
            .agent(request.agent_id)
            .key(key)
            .payload(serde_json::json!({
                "request_id": request.id,
                "permissions": request.grant,
                "reason": request.decision_reason,
            }));
        e.execution_id = request.grant["call"]["execution_id"]
            .as_i64()
            .map(ExecutionId::new);
        e.permission_state = match action {
            AuditAction::PermissionApproved => "granted",
            AuditAction::PermissionDeniedByOwner | AuditAction::PermissionExpired => "denied",
            _ => "none",
        }
        .into();
        e
    }
}

/// A recorded event with its place in the account's log: the receipt a
/// client keeps is `(leaf_index, leaf_hash)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: AuditRecordId,
    pub leaf_index: u64,
    /// RFC 6962 leaf hash of the exact leaf bytes.
    pub leaf_hash: [u8; 32],
    pub timestamp: OffsetDateTime,
    pub event: AuditEvent,
}

/// Filters for reading the log back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub action_types: Vec<String>,
    pub violations_only: bool,
    pub agent_id: Option<AgentId>,
    pub execution_id: Option<ExecutionId>,
    /// Only records with a leaf index above this one.
    pub after: Option<u64>,
    pub limit: u64,
}

/// A signed checkpoint of one account's log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The C2SP signed note.
    pub note: String,
    pub created_at: OffsetDateTime,
}

/// A payload's commitment and the salt that opens it.
pub struct PayloadCommitment {
    pub salt: [u8; 32],
    pub commitment: [u8; 32],
    /// The payload as stored (canonical text), `None` when there is none.
    pub text: Option<String>,
}

/// Commits to an event's payload with a fresh salt. The leaf carries only the
/// commitment, so the payload can later be deleted without breaking proofs.
pub fn commit_payload(payload: &Value) -> PayloadCommitment {
    let text = (!payload.is_null()).then(|| payload.to_string());
    let bytes = text.as_deref().unwrap_or("null").as_bytes();
    let (salt, digest) = thetazero_audit::leaf::commit_payload(bytes);
    PayloadCommitment {
        salt: salt.0,
        commitment: digest.0,
        text,
    }
}

/// The time as the log writes it: RFC 3339 UTC with microseconds and `Z`.
pub fn leaf_time(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// The exact leaf bytes of an event appended at `time`. Every backend calls
/// this, so the same event makes the same leaf everywhere.
///
/// The leaf (in the `thetazero-audit` crate, which knows no domain types)
/// holds the ids as plain integers.
pub fn leaf_bytes(
    event: &AuditEvent,
    time: OffsetDateTime,
    payload_commitment: [u8; 32],
) -> Result<Vec<u8>, thetazero_audit::LeafError> {
    use thetazero_audit::leaf::{bounded_summary, Decision, Digest, LEAF_TYPE};
    let decision = match event.permission_state.as_str() {
        "granted" => Decision::Allow,
        "denied" => Decision::Deny,
        _ => Decision::None,
    };
    thetazero_audit::AuditLeaf {
        account_id: event.account_id.get(),
        action_category: event.action_category.clone(),
        action_type: event.action_type.clone(),
        agent_id: event.agent_id.map(AgentId::get),
        decision,
        execution_id: event.execution_id.map(ExecutionId::get),
        input_digest: event.input_digest.map(Digest),
        is_violation: event.is_violation,
        key_id: event.key_id.map(KeyId::get),
        output_digest: event.output_digest.map(Digest),
        payload_commitment: Digest(payload_commitment),
        permission_state: event.permission_state.clone(),
        summary: bounded_summary(&event.description),
        time: leaf_time(time),
        leaf_type: LEAF_TYPE.to_string(),
    }
    .to_bytes()
}

/// One external anchoring of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorRecord {
    pub checkpoint_size: u64,
    /// `witness`, `command`, ...
    pub kind: String,
    /// `pending`, `confirmed` or `failed`.
    pub status: String,
    /// What the anchor returned: a transaction hash, a cosignature, ...
    pub external_ref: Option<String>,
    pub detail: Value,
    /// Failures since the last confirmation, this one included.
    pub failures: u32,
    pub retryable: bool,
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_distinct_labels_that_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for &a in AuditAction::ALL {
            let name = a.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name} is not a snake_case label"
            );
            assert_eq!(AuditAction::parse(name), Some(a));
            let e = AuditEvent::new(AccountId::new(1), a, "x");
            assert_eq!(e.action_type, a);
            assert_eq!(e.action_category, a.category());
        }
        assert_eq!(AuditAction::parse("agent_revived_by_magic"), None);
    }

    #[test]
    fn approval_steps_state_what_they_did_to_the_permission() {
        let request = crate::model::PermissionRequest {
            id: crate::model::PermissionRequestId::new(3),
            account_id: AccountId::new(1),
            agent_id: AgentId::new(2),
            requested_by: None,
            grant: serde_json::json!({"call": {"execution_id": 9}}),
            justification: String::new(),
            status: crate::model::PermissionRequestStatus::Pending,
            expires_at: OffsetDateTime::UNIX_EPOCH,
            decided_by: None,
            decision_reason: None,
            decided_at: None,
            grant_expires_at: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            code_sha256: None,
        };
        let state = |a| {
            AuditEvent::approval(AccountId::new(1), a, &request, None, String::new())
                .permission_state
        };
        assert_eq!(state(AuditAction::PermissionApproved), "granted");
        assert_eq!(state(AuditAction::PermissionDeniedByOwner), "denied");
        assert_eq!(state(AuditAction::PermissionExpired), "denied");
        assert_eq!(state(AuditAction::PermissionRequested), "none");
        let e = AuditEvent::approval(
            AccountId::new(1),
            AuditAction::PermissionRequested,
            &request,
            None,
            String::new(),
        );
        assert_eq!(e.execution_id, Some(ExecutionId::new(9)));
        assert_eq!(e.action_category, "approvals");
    }
}
