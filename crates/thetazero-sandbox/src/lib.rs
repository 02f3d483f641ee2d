//! thetazero's sandbox: runs untrusted agent JavaScript in a fresh QuickJS runtime per execution, behind limits, a kill switch and a permission-checked host bridge. It must not know HTTP servers, SQL or wire formats; the server implements `Host`.
//!
//! ```text
//! Sandbox::new(config) ──execute(Job)──▶ confined mode: worker process of the job's tenant
//!                                          (many runs per process, one engine thread;
//!                                           host calls cross back to the server's broker)
//!                                      └─▶ in process: bounded queue ──▶ worker thread
//!     each run: fresh AsyncRuntime + context ─ frozen `thetazero` bridge ─▶ broker ─▶ Host
//! ```
//!
//! The server builds one `Sandbox` at start-up (never running executions on its
//! own threads), and for each execution a `Job` carrying an `Arc<dyn Host>`
//! scoped to that execution's agent and account. `SubmitError::QueueFull` is
//! back-pressure (503/429). `ExecutionReport` is serde with snake_case names and
//! can go on the wire as it is. `NetworkPolicy::default()` is the production
//! policy; its test-only fields must stay empty there.
#![deny(unsafe_code)]

mod alloc;
mod broker;
mod bytecode;
mod clock;
pub mod confine;
mod engine;
pub mod host;
pub mod job;
mod lazy;
pub mod net;
pub mod pool;
pub mod process;
mod proto;
mod raw;
pub mod report;
pub mod worker;

pub use confine::Probe;
pub use host::{ApprovalAsk, ChildBudget, Host, HostError, HostFn, SandboxEvent};
pub use job::{CancelHandle, CancelOnDrop, Job};
pub use lazy::lazy_globals;
pub use net::{is_public_ip, NetError, NetworkPolicy, Resolver, SystemResolver};
pub use pool::{EngineMode, Sandbox, SandboxConfig, SandboxError, SubmitError};
pub use process::ProcessConfig;
pub use report::{
    Enforcement, ErrorInfo, ExecutionReport, HostCallAudit, LimitKind, LogEntry, LogLevel,
    ResourceUsage, Status, TEE_IN_PROCESS, TEE_PROCESS_SANDBOX,
};
pub use thetazero_core::limits::{Limits, Template};

/// Locking that survives poisoning: a poisoned lock only means a panic
/// elsewhere, and the sandbox's state stays consistent enough to go on and
/// to report.
pub(crate) trait Locked<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T> Locked<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}
pub use thetazero_core::permissions::Scope;
