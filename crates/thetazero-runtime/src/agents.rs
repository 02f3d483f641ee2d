//! Agents as their authors manage them: the use cases behind
//! `/api/v1/sdk/agents` (register or replace by name, change, delete) with
//! their rules, each stated once:
//!
//! - a name is 1-128 letters, digits, `-`, `_` or `.`; code is non-empty, at
//!   most the operator's `max_code_bytes`, without NUL; version and
//!   description are short text (core's `check_text`);
//! - configuration is held to the operator's ceilings, and the DEV template
//!   and `allow_localhost` only in the accounts the operator names;
//! - an author sets `ready` or `disabled`; `killed` belongs to the kill
//!   switch, so only a key holding it changes a killed agent's status;
//! - new code under a name counts against the evolution rate, whether the
//!   name is re-registered, patched, or registered afresh after a delete;
//! - every change is audited once, in the store's transaction with it, and
//!   so is a choice of compliance frameworks.

use serde_json::{json, Value};
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::frameworks::{frameworks_setting, validate_ids};
use thetazero_core::model::{
    check_text, AccountId, Agent, AgentId, AgentPatch, AgentSpec, AgentStatus, ApiKey,
};
use thetazero_core::store::StoreError;
use thetazero_core::{AgentConfig, ConfigError, KeyScope, Permissions};

use crate::rates::{Limited, RateError, RateRefused};
use crate::{Caller, Runtime};

/// A registration as the caller sent it; absent fields take their defaults
/// (version 1.0.0, no description, `ready`, the template's configuration,
/// no permissions, compliance frameworks unchanged).
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub entry_code: String,
    pub config: Option<Value>,
    pub permissions: Option<Value>,
    /// Framework ids to assess the agent against; an empty list clears the
    /// choice.
    pub compliance: Option<Vec<String>>,
}

/// Changes to an agent; at least one field must be given.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub version: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub entry_code: Option<String>,
    /// Merged over the agent's configuration, field by field.
    pub config: Option<Value>,
    pub permissions: Option<Value>,
}

/// Why an agent use case refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A field breaks its rule (the message names the field).
    #[error("{0}")]
    Invalid(String),
    /// The configuration is malformed or above a ceiling.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The DEV template or `allow_localhost`, in an account the operator
    /// did not name in `dev_accounts`.
    #[error("field \"{0}\": the DEV template and allow_localhost are off for this account; the operator enables them with dev_accounts")]
    DevNotAllowed(&'static str),
    #[error("agent not found")]
    NotFound,
    /// A killed agent's status changed by a key without the kill switch.
    #[error("this agent was killed; only a key with the killswitch scope can set its status")]
    Killed,
    #[error(transparent)]
    RateLimited(#[from] RateRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RateError> for AgentError {
    fn from(e: RateError) -> Self {
        match e {
            RateError::Refused(r) => AgentError::RateLimited(r),
            RateError::Store(s) => AgentError::Store(s),
        }
    }
}

pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_VERSION_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 4096;

fn check_name(name: &str) -> Result<(), AgentError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::Invalid(format!(
            "field \"name\" must be 1-{MAX_NAME_CHARS} characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

fn check_code(code: &str, max: usize) -> Result<(), AgentError> {
    if code.len() > max {
        return Err(AgentError::Invalid(format!(
            "field \"entry_code\" is longer than {max} bytes"
        )));
    }
    if code.trim().is_empty() {
        return Err(AgentError::Invalid(
            "field \"entry_code\" must not be empty".into(),
        ));
    }
    // PostgreSQL text cannot hold NUL, and JavaScript source has no use for
    // a raw one (write "\\u0000" in a string literal): refuse it on every
    // backend alike.
    if code.contains('\0') {
        return Err(AgentError::Invalid(
            "field \"entry_code\" must not contain NUL characters".into(),
        ));
    }
    Ok(())
}

fn check_short(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), AgentError> {
    check_text(field, value, max, allow_empty).map_err(AgentError::Invalid)
}

/// Statuses an author may set; `killed` is set and cleared by the kill switch.
fn parse_status(raw: &str) -> Result<AgentStatus, AgentError> {
    match AgentStatus::parse(raw) {
        Some(s @ (AgentStatus::Ready | AgentStatus::Disabled)) => Ok(s),
        _ => Err(AgentError::Invalid(format!(
            "field \"status\" must be \"ready\" or \"disabled\", not {raw:?}"
        ))),
    }
}

fn parse_permissions(value: &Value) -> Result<Permissions, AgentError> {
    Permissions::from_json(value)
        .map_err(|e| AgentError::Invalid(format!("field \"permissions\": {e}")))
}

fn caller_of(key: &ApiKey) -> Caller {
    Caller {
        account: key.account_id,
        key_id: Some(key.id),
    }
}

impl Runtime {
    /// The DEV template and `allow_localhost` reach the server's own
    /// loopback services: only accounts the operator names may use them.
    fn check_dev(&self, account: AccountId, config: &AgentConfig) -> Result<(), AgentError> {
        if config.needs_dev() && !self.dev_allowed(account) {
            return Err(AgentError::DevNotAllowed(
                if config.allow_localhost == Some(true) {
                    "config.allow_localhost"
                } else {
                    "config.sandbox_template"
                },
            ));
        }
        Ok(())
    }

    /// Registers an agent in `key`'s account, or replaces the agent of the
    /// same name; answers the agent and whether it is new.
    pub async fn register_agent(
        &self,
        key: &ApiKey,
        reg: Registration,
    ) -> Result<(Agent, bool), AgentError> {
        check_name(&reg.name)?;
        check_code(&reg.entry_code, self.max_code_bytes)?;
        let version = reg.version.unwrap_or_else(|| "1.0.0".into());
        check_short("version", &version, MAX_VERSION_CHARS, false)?;
        let description = reg.description.unwrap_or_default();
        check_short("description", &description, MAX_DESCRIPTION_CHARS, true)?;
        let status = match reg.status.as_deref() {
            None => AgentStatus::Ready,
            Some(s) => parse_status(s)?,
        };
        let ceilings = self.ceilings();
        let config =
            AgentConfig::from_json(reg.config.as_ref().unwrap_or(&Value::Null), &ceilings)?;
        let account = key.account_id;
        self.check_dev(account, &config)?;
        let permissions = parse_permissions(reg.permissions.as_ref().unwrap_or(&Value::Null))?;
        if let Some(list) = &reg.compliance {
            validate_ids(list)
                .map_err(|e| AgentError::Invalid(format!("field \"compliance\": {e}")))?;
        }
        // New code under a name counts against the evolution rate, whether
        // the name is re-registered or registered afresh after a delete: the
        // counter belongs to the name, not to the record.
        let existing = self.store.get_agent_by_name(account, &reg.name).await?;
        if existing
            .as_ref()
            .is_none_or(|e| e.entry_code != reg.entry_code)
        {
            self.enforce_rate(
                Limited::CodeUpdatesPerAgent,
                caller_of(key),
                Some((existing.as_ref().map(|e| e.id), &reg.name)),
            )
            .await?;
        }
        let spec = AgentSpec {
            name: reg.name,
            version,
            description,
            status,
            entry_code: reg.entry_code,
            config,
            permissions,
        };
        let key_id = Some(key.id);
        let (agent, created) = self
            .store
            .upsert_agent_audited(
                account,
                spec,
                Box::new(move |(agent, created)| {
                    let (action, verb) = if *created {
                        (AuditAction::AgentCreated, "registered")
                    } else {
                        (AuditAction::AgentUpdated, "re-registered")
                    };
                    vec![AuditEvent::new(account, action, format!("agent {} {verb}", agent.name))
                        .agent(agent.id)
                        .key(key_id)
                        .payload(json!({"version": agent.version, "config": agent.config.to_json(), "permissions": agent.permissions.to_json()}))]
                }),
            )
            .await?;
        if let Some(list) = reg.compliance {
            self.set_agent_frameworks(key, &agent, list).await?;
        }
        Ok((agent, created))
    }

    /// Records the compliance frameworks `agent` is assessed against (an
    /// empty list: none).
    async fn set_agent_frameworks(
        &self,
        key: &ApiKey,
        agent: &Agent,
        mut list: Vec<String>,
    ) -> Result<(), AgentError> {
        list.dedup();
        let account = key.account_id;
        let setting = frameworks_setting(account, agent.id);
        let (agent_id, name, key_id) = (agent.id, agent.name.clone(), Some(key.id));
        let value = (!list.is_empty()).then(|| json!(list).to_string());
        self.store
            .put_setting_audited(
                &setting,
                value,
                Box::new(move |_| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::ComplianceFrameworksSet,
                        format!(
                            "agent {name} assessed against {}",
                            if list.is_empty() {
                                "no framework".to_string()
                            } else {
                                list.join(", ")
                            }
                        ),
                    )
                    .agent(agent_id)
                    .key(key_id)
                    .payload(json!({"frameworks": list}))]
                }),
            )
            .await?;
        Ok(())
    }

    /// Changes an agent of `key`'s account.
    pub async fn change_agent(
        &self,
        key: &ApiKey,
        id: AgentId,
        changes: Changes,
    ) -> Result<Agent, AgentError> {
        let account = key.account_id;
        let current = self
            .store
            .get_agent(account, id)
            .await?
            .ok_or(AgentError::NotFound)?;
        if let Some(code) = &changes.entry_code {
            check_code(code, self.max_code_bytes)?;
        }
        if let Some(v) = &changes.version {
            check_short("version", v, MAX_VERSION_CHARS, false)?;
        }
        if let Some(d) = &changes.description {
            check_short("description", d, MAX_DESCRIPTION_CHARS, true)?;
        }
        let status = changes.status.as_deref().map(parse_status).transpose()?;
        // A killed agent comes back only through a key that holds the kill
        // switch; any other change leaves it killed.
        if current.status == AgentStatus::Killed
            && status.is_some()
            && !key.has_scope(KeyScope::Killswitch)
        {
            return Err(AgentError::Killed);
        }
        let ceilings = self.ceilings();
        let config = match &changes.config {
            None => None,
            Some(value) => {
                let patch = AgentConfig::from_json(value, &ceilings)?;
                let merged = current.config.merged(&patch, &ceilings)?;
                self.check_dev(account, &merged)?;
                Some(merged)
            }
        };
        let permissions = changes
            .permissions
            .as_ref()
            .map(parse_permissions)
            .transpose()?;
        let changed: Vec<String> = [
            ("version", changes.version.is_some()),
            ("description", changes.description.is_some()),
            ("status", changes.status.is_some()),
            ("entry_code", changes.entry_code.is_some()),
            ("config", changes.config.is_some()),
            ("permissions", changes.permissions.is_some()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(name, _)| name.to_string())
        .collect();
        let new_code = changes
            .entry_code
            .as_ref()
            .is_some_and(|code| *code != current.entry_code);
        let patch = AgentPatch {
            version: changes.version,
            description: changes.description,
            status,
            entry_code: changes.entry_code,
            config,
            permissions,
        };
        if patch.is_empty() {
            return Err(AgentError::Invalid(
                "the request changes nothing: give at least one field".into(),
            ));
        }
        // A change of code counts against the evolution rate.
        if new_code {
            self.enforce_rate(
                Limited::CodeUpdatesPerAgent,
                caller_of(key),
                Some((Some(current.id), &current.name)),
            )
            .await?;
        }
        let key_id = Some(key.id);
        self.store
            .update_agent_audited(
                account,
                id,
                patch,
                Box::new(move |agent| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::AgentUpdated,
                        format!("agent {} updated: {}", agent.name, changed.join(", ")),
                    )
                    .agent(agent.id)
                    .key(key_id)
                    .payload(json!({"changed": changed, "version": agent.version, "config": agent.config.to_json(), "permissions": agent.permissions.to_json()}))]
                }),
            )
            .await?
            .ok_or(AgentError::NotFound)
    }

    /// Deletes an agent of `key`'s account with its context and executions;
    /// its audit records stay.
    pub async fn delete_agent(&self, key: &ApiKey, id: AgentId) -> Result<(), AgentError> {
        let account = key.account_id;
        let agent = self
            .store
            .get_agent(account, id)
            .await?
            .ok_or(AgentError::NotFound)?;
        let (key_id, name) = (Some(key.id), agent.name);
        let deleted = self
            .store
            .delete_agent_audited(
                account,
                id,
                Box::new(move |id| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::AgentDeleted,
                        format!("agent {name} deleted"),
                    )
                    .agent(*id)
                    .key(key_id)]
                }),
            )
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(AgentError::NotFound)
        }
    }
}
