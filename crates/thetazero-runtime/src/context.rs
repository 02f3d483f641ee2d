//! An agent's context as the API reads and writes it: the use cases behind
//! `/agents/{id}/context/{key}`. A written value meets the size rule agent
//! code meets, is screened as input (the agent will read it), is held to the
//! account's quota, and every change is audited once, in the store's
//! transaction with the change itself.

use serde_json::Value;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{self, AgentId, ContextEntry};
use thetazero_core::store::StoreError;
use thetazero_safety::Verdict;

use crate::quotas::{Kept, OverQuota};
use crate::{Caller, Runtime, RuntimeError};

/// Why a context use case refused.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// No such agent in the caller's account.
    #[error("agent not found")]
    AgentNotFound,
    /// No value under that key.
    #[error("context key not found")]
    KeyNotFound,
    /// Larger than [`model::MAX_VALUE_BYTES`] of JSON.
    #[error("context values are at most {max} bytes of JSON; this one is {size}")]
    TooLarge { size: usize, max: usize },
    /// Content safety refused the value; the refusal is already audited.
    #[error("blocked by content safety")]
    Blocked(Box<Verdict>),
    /// The account's quota of kept bytes would be passed.
    #[error("{0}")]
    OverQuota(OverQuota),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RuntimeError> for ContextError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Store(e) => ContextError::Store(e),
            other => ContextError::Store(StoreError::Internal(other.to_string())),
        }
    }
}

impl Runtime {
    /// The value under `key` of one of the caller's agents.
    pub async fn read_context(
        &self,
        caller: Caller,
        agent: AgentId,
        key: &str,
    ) -> Result<ContextEntry, ContextError> {
        let store = self.store.as_ref();
        if store.get_agent(caller.account, agent).await?.is_none() {
            return Err(ContextError::AgentNotFound);
        }
        store
            .get_context(caller.account, agent, key)
            .await?
            .ok_or(ContextError::KeyNotFound)
    }

    /// Sets the value under `key`; audited as `context_written`.
    pub async fn write_context(
        &self,
        caller: Caller,
        agent: AgentId,
        key: &str,
        value: Value,
    ) -> Result<ContextEntry, ContextError> {
        model::check_value_size(&value)
            .map_err(|(size, max)| ContextError::TooLarge { size, max })?;
        let store = self.store.as_ref();
        let found = store
            .get_agent(caller.account, agent)
            .await?
            .ok_or(ContextError::AgentNotFound)?;
        // The agent reads this value: it is input, screened as such.
        self.screen_write(
            caller,
            Some(&found),
            &format!("value written to context key {key:?}"),
            &value,
        )
        .await
        .map_err(|verdict| ContextError::Blocked(Box::new(verdict)))?;
        if let Err(over) = self
            .check_quota(caller.account, Kept::Context(agent), key, &value)
            .await?
        {
            crate::quotas::record_refusal(
                store,
                caller.account,
                caller.key_id,
                Some(agent),
                over.quota,
                over.limit,
                format!("context key {key:?} not written: {over}"),
            )
            .await?;
            return Err(ContextError::OverQuota(over));
        }
        let (account, key_id) = (caller.account, caller.key_id);
        store
            .put_context_audited(
                account,
                agent,
                key,
                &value,
                Box::new(move |entry| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::ContextWritten,
                        format!("context key {:?} written", entry.key),
                    )
                    .agent(agent)
                    .key(key_id)]
                }),
            )
            .await
            .map_err(|e| match e {
                // The agent went away between the check and the write.
                StoreError::Conflict(_) => ContextError::AgentNotFound,
                other => other.into(),
            })
    }

    /// Deletes the value under `key`; audited as `context_deleted` when
    /// there was one.
    pub async fn delete_context(
        &self,
        caller: Caller,
        agent: AgentId,
        key: &str,
    ) -> Result<(), ContextError> {
        let store = self.store.as_ref();
        if store.get_agent(caller.account, agent).await?.is_none() {
            return Err(ContextError::AgentNotFound);
        }
        let (account, key_id) = (caller.account, caller.key_id);
        let deleted = store
            .delete_context_audited(
                account,
                agent,
                key,
                Box::new(move |key| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::ContextDeleted,
                        format!("context key {key:?} deleted"),
                    )
                    .agent(agent)
                    .key(key_id)]
                }),
            )
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(ContextError::KeyNotFound)
        }
    }
}
