//! Conversions from domain records to wire types. The only place that knows
//! both shapes.

use serde_json::Value;
use sha2::{Digest, Sha256};
use thetazero_api::types::{AccountView, AgentView, AuditEventView, KeyView};
use thetazero_core::audit::AuditRecord;
use thetazero_core::model::{Account, Agent, ApiKey};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn agent(a: &Agent) -> AgentView {
    AgentView {
        id: a.id,
        name: a.name.clone(),
        version: a.version.clone(),
        description: a.description.clone(),
        status: a.status.as_str().into(),
        config: a.config.to_json(),
        effective_config: Value::Null,
        permissions: a.permissions.to_json(),
        entry_code: a.entry_code.clone(),
        code_sha256: hex::encode(Sha256::digest(a.entry_code.as_bytes())),
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    }
}

pub fn key(k: &ApiKey) -> KeyView {
    KeyView {
        id: k.id,
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        scopes: if k.is_owner {
            thetazero_core::KeyScope::ALL
                .iter()
                .map(|s| s.as_str().into())
                .collect()
        } else {
            k.scopes.iter().map(|s| s.as_str().into()).collect()
        },
        is_owner: k.is_owner,
        created_at: rfc3339(k.created_at),
        last_used_at: k.last_used_at.map(rfc3339),
        revoked_at: k.revoked_at.map(rfc3339),
    }
}

pub fn account(a: &Account) -> AccountView {
    AccountView {
        id: a.id,
        name: a.name.clone(),
        created_at: rfc3339(a.created_at),
    }
}

pub fn audit(r: &AuditRecord) -> AuditEventView {
    let e = &r.event;
    AuditEventView {
        id: r.id,
        leaf_index: r.leaf_index,
        leaf_hash: b64(&r.leaf_hash),
        timestamp: rfc3339(r.timestamp),
        account_id: e.account_id,
        agent_id: e.agent_id,
        execution_id: e.execution_id,
        key_id: e.key_id,
        action_type: e.action_type.clone(),
        action_category: e.action_category.clone(),
        description: e.description.clone(),
        permission_state: e.permission_state.clone(),
        is_violation: e.is_violation,
        input_summary: e.input_summary.clone(),
        output_summary: e.output_summary.clone(),
    }
}
