//! The executions running in this process, with their cancel handles, so a
//! kill can find every execution of an agent, an account, or all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thetazero_core::model::{AccountId, AgentId, ExecutionId};
use thetazero_sandbox::CancelHandle;

struct Entry {
    account: AccountId,
    agent: AgentId,
    cancel: CancelHandle,
}

#[derive(Default)]
pub struct Running {
    entries: Mutex<HashMap<ExecutionId, Entry>>,
}

/// Removes its execution from the registry when dropped.
pub struct Registration {
    running: Arc<Running>,
    id: ExecutionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running.lock().remove(&self.id);
    }
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(
        self: &Arc<Self>,
        account: AccountId,
        agent: AgentId,
        id: ExecutionId,
        cancel: CancelHandle,
    ) -> Registration {
        self.lock().insert(
            id,
            Entry {
                account,
                agent,
                cancel,
            },
        );
        Registration {
            running: self.clone(),
            id,
        }
    }

    /// Cancels one execution of the account; answers whether it was running here.
    pub fn cancel_execution(&self, account: AccountId, id: ExecutionId) -> bool {
        match self.lock().get(&id) {
            Some(e) if e.account == account => {
                e.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Cancels every execution of an agent; answers their ids.
    pub fn cancel_agent(&self, account: AccountId, agent: AgentId) -> Vec<ExecutionId> {
        let entries = self.lock();
        let mut ids = Vec::new();
        for (id, e) in entries.iter() {
            if e.account == account && e.agent == agent {
                e.cancel.cancel();
                ids.push(*id);
            }
        }
        ids
    }

    /// Cancels everything running in this process.
    pub fn cancel_all(&self) -> Vec<ExecutionId> {
        let entries = self.lock();
        for e in entries.values() {
            e.cancel.cancel();
        }
        entries.keys().copied().collect()
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn is_running(&self, id: ExecutionId) -> bool {
        self.lock().contains_key(&id)
    }
}
