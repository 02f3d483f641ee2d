//! What one execution is asked to do (`Job`) and how to stop it (`CancelHandle`). It must not run anything itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use thetazero_core::limits::{Limits, Template};
use thetazero_core::permissions::Scope;
use tokio::sync::Notify;

use crate::host::Host;

/// Stops an execution: a spinning loop (the interrupt handler sees the flag), a
/// pending host call (its future is dropped) or a promise that never settles.
#[derive(Clone, Default)]
pub struct CancelHandle(Arc<CancelInner>);

#[derive(Default)]
struct CancelInner {
    flag: AtomicBool,
    notify: Notify,
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Cancels its execution when dropped, unless `disarm`ed first.
pub struct CancelOnDrop(Option<CancelHandle>);

impl CancelOnDrop {
    /// The wait ended normally: nothing to cancel.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

impl CancelHandle {
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Idempotent; a job cancelled before it starts never runs.
    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// A guard that cancels this execution when dropped, unless disarmed:
    /// for waiting on an execution from a future that may itself be dropped.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }

    /// Resolves once `cancel` has been called (immediately if it already was).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag so a cancel in between is not lost.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// One execution's code, input, identity, limits, permissions and host.
#[derive(Clone)]
pub struct Job {
    pub code: String,
    pub input: Value,
    pub agent_name: String,
    pub agent_version: String,
    pub execution_id: i64,
    pub limits: Limits,
    /// The agent's effective permissions (`Permissions::granted()`).
    pub scopes: BTreeSet<Scope>,
    pub template: Template,
    pub allow_network: bool,
    /// Normalised allow-list entries (`thetazero_core::limits::normalize_domain_pattern`).
    pub allowed_domains: Vec<String>,
    /// DEV only: lets `http://localhost` through. Ignored on other templates.
    pub allow_localhost: bool,
    /// Set: a call the permissions refuse is put to a human, who has this
    /// long to approve it (`Host::request_approval`). None: refused at once.
    pub approval_timeout: Option<std::time::Duration>,
    /// With `approval_timeout`: only these calls (by name) are put to a
    /// human; `None` is every refused call.
    pub approval_calls: Option<Vec<String>>,
    /// Each `log` entry is put to the host (`Host::screen_log`) as it is
    /// written, and one it refuses is withheld and refused inside the agent.
    pub screen_logs: bool,
    /// The tenant: runs with the same scope and the same code share its
    /// compiled form, and only runs of one scope share a worker process;
    /// runs with different scopes never share either (so one tenant can
    /// neither time whether another ran some code nor be stopped with it).
    /// The server uses the account id.
    pub code_cache_scope: u64,
    pub cancel: CancelHandle,
    pub host: Arc<dyn Host>,
}

/// What a run needs to start, as plain data: it crosses to a worker process,
/// so it holds no handles. Scopes travel by name.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunSpec {
    pub code: String,
    pub input: Value,
    pub agent_name: String,
    pub agent_version: String,
    pub execution_id: i64,
    pub limits: Limits,
    pub scopes: Vec<String>,
    pub template: Template,
    pub allow_network: bool,
    pub allowed_domains: Vec<String>,
    pub allow_localhost: bool,
    #[serde(default)]
    pub screen_logs: bool,
    pub code_cache_scope: u64,
}

impl RunSpec {
    pub(crate) fn scopes(&self) -> BTreeSet<Scope> {
        self.scopes.iter().filter_map(|s| Scope::parse(s)).collect()
    }
}

impl Job {
    /// The plain-data part of the job.
    pub(crate) fn spec(&self) -> RunSpec {
        RunSpec {
            code: self.code.clone(),
            input: self.input.clone(),
            agent_name: self.agent_name.clone(),
            agent_version: self.agent_version.clone(),
            execution_id: self.execution_id,
            limits: self.limits,
            scopes: self.scopes.iter().map(|s| s.as_str().to_string()).collect(),
            template: self.template,
            allow_network: self.allow_network,
            allowed_domains: self.allowed_domains.clone(),
            allow_localhost: self.allow_localhost,
            screen_logs: self.screen_logs,
            code_cache_scope: self.code_cache_scope,
        }
    }

    /// The rules the server's broker holds this run to.
    pub(crate) fn rules(&self) -> crate::broker::Rules {
        crate::broker::Rules {
            limits: self.limits,
            scopes: self.scopes.clone(),
            allow_network: self.allow_network,
            http: std::sync::Arc::new(crate::net::HttpRules {
                allowed_domains: self.allowed_domains.clone(),
                any_public_host: self.template != Template::Strict
                    && self.allowed_domains.is_empty(),
                dev_localhost: self.template == Template::Dev && self.allow_localhost,
                limits: self.limits,
            }),
            approval_timeout: self.approval_timeout,
            approval_calls: self.approval_calls.clone(),
        }
    }

    /// A job with the template's default limits and nothing granted.
    pub fn new(code: impl Into<String>, input: Value, host: Arc<dyn Host>) -> Job {
        Job {
            code: code.into(),
            input,
            agent_name: "agent".into(),
            agent_version: "0.0.0".into(),
            execution_id: 0,
            limits: Template::Standard.defaults(),
            scopes: BTreeSet::new(),
            template: Template::Standard,
            allow_network: false,
            allowed_domains: Vec::new(),
            allow_localhost: false,
            approval_timeout: None,
            code_cache_scope: 0,
            approval_calls: None,
            screen_logs: false,
            cancel: CancelHandle::new(),
            host,
        }
    }
}
