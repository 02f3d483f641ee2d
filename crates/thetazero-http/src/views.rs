//! Conversions from domain records to wire types. The only place that knows
//! both shapes.

use serde_json::Value;
use sha2::{Digest, Sha256};
use thetazero_api::types::{
    AccountView, AgentView, AuditEventView, ExecutionError, ExecutionLog, ExecutionReceipt,
    HostCallEntry, KeyView, ResourceUsage,
};
use thetazero_core::audit::AuditRecord;
use thetazero_core::model::{
    Account, Agent, AgentId, ApiKey, ExecutionId, KeyId, RunError, RunHostCall, RunLog, RunUsage,
};
use thetazero_ledger::SignedReceipt;
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
        id: a.id.get(),
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
        id: k.id.get(),
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
        id: a.id.get(),
        name: a.name.clone(),
        created_at: rfc3339(a.created_at),
    }
}

pub fn audit(r: &AuditRecord) -> AuditEventView {
    let e = &r.event;
    AuditEventView {
        id: r.id.get(),
        leaf_index: r.leaf_index,
        leaf_hash: b64(&r.leaf_hash),
        timestamp: rfc3339(r.timestamp),
        account_id: e.account_id.get(),
        agent_id: e.agent_id.map(AgentId::get),
        execution_id: e.execution_id.map(ExecutionId::get),
        key_id: e.key_id.map(KeyId::get),
        action_type: e.action_type.clone(),
        action_category: e.action_category.clone(),
        description: e.description.clone(),
        permission_state: e.permission_state.clone(),
        is_violation: e.is_violation,
        input_summary: e.input_summary.clone(),
        output_summary: e.output_summary.clone(),
    }
}

pub fn execution_error(e: RunError) -> ExecutionError {
    ExecutionError {
        kind: e.kind,
        code: e.code,
        message: e.message,
        stack: e.stack,
    }
}

pub fn resource_usage(u: RunUsage) -> ResourceUsage {
    ResourceUsage {
        cpu_ms: u.cpu_ms,
        memory_mb: u.memory_mb,
        api_calls: u.api_calls,
        host_calls: u.host_calls,
    }
}

pub fn host_call(c: RunHostCall) -> HostCallEntry {
    HostCallEntry {
        function: c.function,
        args_summary: c.args_summary,
        allowed: c.allowed,
        duration_ms: c.duration_ms,
        at: c.at,
    }
}

pub fn log_line(l: RunLog) -> ExecutionLog {
    ExecutionLog {
        level: l.level,
        message: l.message,
        at: l.at,
    }
}

pub fn receipt(r: SignedReceipt) -> ExecutionReceipt {
    ExecutionReceipt {
        success: true,
        execution_id: r.execution_id.get(),
        agent_id: r.agent_id.get(),
        agent_version: r.agent_version,
        status: r.status,
        code_sha256: r.code_sha256,
        input_digest: r.input_digest,
        output_digest: r.output_digest,
        limits: r.limits,
        tee_mode: r.tee_mode,
        attestation_id: r.attestation_id,
        receipt: r.receipt,
        audit_range: thetazero_api::types::AuditRange {
            first_leaf: r.first_leaf,
            last_leaf: r.last_leaf,
        },
        checkpoint: r.checkpoint,
        log_origin: r.log_origin,
        verifier_key: r.verifier_key,
        chain_valid: r.chain_valid,
        verified_at: r.verified_at,
    }
}
