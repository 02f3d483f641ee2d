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
    /// Woken whenever an execution leaves the registry.
    left: tokio::sync::Notify,
    /// Bumped by every kill or halt this replica hears of, so an execution
    /// that registers can tell whether one happened since it last looked.
    generation: std::sync::atomic::AtomicU64,
}

/// Removes its execution from the registry when dropped.
pub struct Registration {
    running: Arc<Running>,
    id: ExecutionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running.lock().remove(&self.id);
        self.running.left.notify_waiters();
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
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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

    /// Cancels every execution of an account; answers their ids.
    pub fn cancel_account(&self, account: AccountId) -> Vec<ExecutionId> {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let entries = self.lock();
        let mut ids = Vec::new();
        for (id, e) in entries.iter() {
            if e.account == account {
                e.cancel.cancel();
                ids.push(*id);
            }
        }
        ids
    }

    /// Waits until none of `ids` is running any more, at most `timeout`;
    /// answers whether they all stopped.
    pub async fn wait_stopped(&self, ids: &[ExecutionId], timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.left.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !ids.iter().any(|id| self.is_running(*id)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return !ids.iter().any(|id| self.is_running(*id));
            }
        }
    }

    /// Waits until nothing is running, at most `timeout`; answers whether
    /// everything stopped.
    pub async fn wait_all_stopped(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.left.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() == 0;
            }
        }
    }

    /// Cancels everything running in this process.
    pub fn cancel_all(&self) -> Vec<ExecutionId> {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let entries = self.lock();
        for e in entries.values() {
            e.cancel.cancel();
        }
        entries.keys().copied().collect()
    }

    /// See `generation` on the struct.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn is_running(&self, id: ExecutionId) -> bool {
        self.lock().contains_key(&id)
    }
}
