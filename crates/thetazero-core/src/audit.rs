//! Audit events as the rest of the system produces them, and the one interface
//! they are recorded through. The verifiable log sits behind this interface.

use serde_json::Value;
use time::OffsetDateTime;

use crate::model::{AccountId, AgentId, KeyId};

/// One thing that happened, before it is given a place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub account_id: AccountId,
    pub agent_id: Option<AgentId>,
    pub execution_id: Option<i64>,
    pub key_id: Option<KeyId>,
    /// `agent_created`, `key_revoked`, `permission_denied`, ...
    pub action_type: String,
    /// A coarse grouping for dashboards: `agent`, `key`, `execution`, `host_call`, ...
    pub action_category: String,
    pub description: String,
    /// `granted`, `denied` or `n/a`.
    pub permission_state: String,
    pub is_violation: bool,
    pub input_summary: Option<String>,
    pub output_summary: Option<String>,
    /// The full details, kept apart from the summary so that retention can
    /// remove them.
    pub payload: Value,
}

impl AuditEvent {
    pub fn new(
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
            permission_state: "n/a".into(),
            is_violation: false,
            input_summary: None,
            output_summary: None,
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
}

/// A recorded event with its place in the account's log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub leaf_index: u64,
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
    pub execution_id: Option<i64>,
    /// Only records with a leaf index above this one.
    pub after: Option<u64>,
    pub limit: u64,
}
