//! The application layer of thetazero: every use case the API, the CLI and
//! the dashboard reach (agents, keys and accounts, context, permission
//! requests, executions, kills and halts, the kill-switch drill), each with
//! its rules, rate limits and audit events stated once, over the store. It
//! knows nothing of HTTP: each use case answers its own error enum, which the
//! HTTP layer maps to a status and a code.
//!
//! Executions are its largest part: it loads an agent, records the
//! execution, hands a job to the sandbox and records how it ended, with an
//! audit event at each step. It implements the sandbox's host bridge over
//! the store (context, storage, audit), keeps the cancel handle of every
//! running execution so that kills can reach them, and bounds how many
//! executions may be queued.

pub mod agents;
pub mod approvals;
pub mod context;
pub mod drill;
pub mod external;
pub mod governance;
mod host;
pub mod inference;
pub mod keys;
pub mod quotas;
pub mod rates;
mod running;

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use thetazero_core::audit::{AuditAction, AuditEvent, AuditRecord};
use thetazero_core::bus::EventBus;
use thetazero_core::model::{
    AccountId, AgentId, AgentStatus, ApiKey, Execution, ExecutionId, ExecutionOutcome,
    ExecutionStatus, KeyId, NewExecution, PermissionRequestStatus,
};
use thetazero_core::store::{Store, StoreError};
use thetazero_safety::{Channel, Filter, Layer, SafetyConfig, Verdict};
use thetazero_sandbox::{CancelHandle, ExecutionReport, Job, Sandbox, SandboxConfig, Status};

use crate::inference::{InferenceClient, InferenceConfig};
use tokio::sync::Semaphore;

pub use running::Running;
pub use thetazero_sandbox as sandbox;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("agent not found")]
    AgentNotFound,
    #[error("this agent was killed and refuses new executions until it is made ready again")]
    AgentKilled,
    #[error("this agent is disabled")]
    AgentDisabled,
    #[error("every sandbox worker is busy and the queue is full; retry shortly")]
    Busy,
    #[error("this account already has {0} executions running (concurrent_runs_per_account); retry when one ends")]
    AccountBusy(u64),
    #[error("executions are halted: {0}")]
    Halted(String),
    #[error("the server is shutting down and takes no new executions")]
    ShuttingDown,
    #[error("this agent asks for the DEV template or allow_localhost, which are off for this account; the operator enables them with dev_accounts")]
    DevNotAllowed,
    /// A field breaks its rule (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// The caller's key may not do this (the message says why).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    RateLimited(#[from] rates::RateRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the sandbox could not run the execution: {0}")]
    Sandbox(String),
}

impl From<rates::RateError> for RuntimeError {
    fn from(e: rates::RateError) -> Self {
        match e {
            rates::RateError::Refused(r) => RuntimeError::RateLimited(r),
            rates::RateError::Store(s) => RuntimeError::Store(s),
        }
    }
}

/// Who asked for an execution.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account: AccountId,
    pub key_id: Option<KeyId>,
}

/// A finished execution: the stored record (its `report` holds the sandbox's
/// telemetry) and the audit range it produced.
#[derive(Debug, Clone)]
pub struct Executed {
    pub execution: Execution,
    /// The sandbox's report, its output moved to `execution.output`; `None`
    /// when content safety refused the input and no code ran.
    pub report: Option<ExecutionReport>,
    /// Leaf index of the first and last audit events of the execution.
    pub audit_range: (u64, u64),
    /// The receipt of the final event: `(leaf_index, leaf_hash)`.
    pub receipt: (u64, [u8; 32]),
}

pub struct RuntimeConfig {
    pub sandbox: SandboxConfig,
    /// Thresholds and bounds of content safety (on for every agent whose
    /// template does not turn it off).
    pub safety: SafetyConfig,
    /// The operator's inference provider; `None` refuses `thetazero.inference`.
    pub inference: Option<InferenceConfig>,
    /// How replicas tell each other about kills and halts (in-process by default).
    pub bus: Option<Arc<dyn EventBus>>,
    /// The operator's own classifier, consulted for borderline content.
    pub external_scorer: Option<external::ExternalScorerConfig>,
    /// Bounds on executions that agents start (`thetazero.call_agent`).
    pub swarm: SwarmConfig,
    /// Accounts whose agents may use the DEV template and `allow_localhost`;
    /// none by default. An agent of another account asking for them is
    /// refused at execution (it may predate the operator's setting).
    pub dev_accounts: Vec<AccountId>,
    /// The operator's ceilings: every run's effective limits are held to
    /// them, template defaults included.
    pub ceilings: thetazero_core::Ceilings,
    /// Per-account quotas: bytes kept, runs at once, pending requests.
    pub quotas: quotas::Quotas,
    /// Executions per key and per account, code changes per agent.
    pub rates: rates::RateLimits,
    /// Largest agent entry code, in bytes.
    pub max_code_bytes: usize,
    /// Forbid a key to decide permission requests made by keys it created
    /// (directly or through others); off by default, so that an owner
    /// approves its agents' requests as the spec's flow has it.
    pub approvals_forbid_ancestors: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            sandbox: SandboxConfig::default(),
            safety: SafetyConfig::default(),
            inference: None,
            bus: None,
            external_scorer: None,
            swarm: SwarmConfig::default(),
            dev_accounts: Vec::new(),
            ceilings: thetazero_core::Ceilings::default(),
            quotas: quotas::Quotas::default(),
            rates: rates::RateLimits::default(),
            max_code_bytes: 512 << 10,
            approvals_forbid_ancestors: false,
        }
    }
}

/// Bounds on swarms: executions started by other executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwarmConfig {
    /// How deep children may nest: 1 lets a top-level execution start
    /// children that start none.
    pub max_depth: u32,
    /// Child executions per account per hour, across replicas; 0 is no limit.
    pub executions_per_account_per_hour: u32,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            max_depth: 3,
            executions_per_account_per_hour: 10,
        }
    }
}

/// A parent execution starting a child: the child's budget never exceeds
/// what the parent has left, and it stops when `cancel` is cancelled.
pub(crate) struct Parent {
    pub execution: thetazero_core::model::ExecutionId,
    /// The child's depth: 1 for a child of a top-level execution.
    pub depth: u32,
    pub budget: thetazero_sandbox::ChildBudget,
    pub cancel: CancelHandle,
}

/// Everything an execution needs to run, shared by the runtime and by hosts
/// that start child executions.
pub(crate) struct Launcher {
    store: Arc<dyn Store>,
    services: Services,
    sandbox: Arc<Sandbox>,
    running: Arc<Running>,
    /// Executions admitted (running or queued); never more than the sandbox
    /// can hold, so a submission is never refused after its record exists.
    admitted: Arc<Semaphore>,
    swarm: SwarmConfig,
    dev_accounts: Vec<AccountId>,
    ceilings: thetazero_core::Ceilings,
    quotas: quotas::Quotas,
    /// Executions admitted per account, for `concurrent_runs_per_account`.
    per_account: Arc<std::sync::Mutex<std::collections::HashMap<AccountId, u64>>>,
}

/// One account's share of the runs admitted; given back when dropped.
struct AccountSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<AccountId, u64>>>,
    account: AccountId,
}

impl AccountSlot {
    fn take(launcher: &Launcher, account: AccountId) -> Result<AccountSlot, RuntimeError> {
        let limit = launcher.quotas.concurrent_runs_per_account;
        let mut counts = launcher
            .per_account
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(account).or_insert(0);
        if limit > 0 && *n >= limit {
            return Err(RuntimeError::AccountBusy(limit));
        }
        *n += 1;
        Ok(AccountSlot {
            counts: launcher.per_account.clone(),
            account,
        })
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

pub struct Runtime {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    running: Arc<Running>,
    launcher: Arc<Launcher>,
    /// Set by `stop_admitting` (shutdown): new executions are refused.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Content safety's injection and toxicity thresholds, as configured.
    safety_thresholds: (f32, f32),
    rates: rates::RateLimits,
    max_code_bytes: usize,
    approvals_forbid_ancestors: bool,
}

/// At most this much of a value goes into an audit summary.
const SUMMARY_CHARS: usize = 200;

pub fn summarize(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= SUMMARY_CHARS {
        return text;
    }
    let cut: String = text.chars().take(SUMMARY_CHARS).collect();
    format!("{cut}…")
}

/// The rule for the reason given with a kill or a halt.
fn check_reason(reason: &str) -> Result<(), RuntimeError> {
    thetazero_core::model::check_text("reason", reason, 1024, false).map_err(RuntimeError::Invalid)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn status_of(report: &ExecutionReport) -> ExecutionStatus {
    match report.status {
        Status::Completed => ExecutionStatus::Completed,
        Status::Failed => ExecutionStatus::Failed,
        Status::TimedOut => ExecutionStatus::TimedOut,
        Status::Killed => ExecutionStatus::Killed,
        Status::LimitExceeded => ExecutionStatus::LimitExceeded,
    }
}

impl Runtime {
    pub fn new(store: Arc<dyn Store>, config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        // Confined runs hold no thread while they wait, so the engine takes
        // as many as it is configured for; in process, a thread each plus
        // the queue.
        let capacity = match &config.sandbox.mode {
            thetazero_sandbox::EngineMode::Process(p) => p.max_runs,
            thetazero_sandbox::EngineMode::InProcess => {
                config.sandbox.workers + config.sandbox.queue_capacity
            }
        };
        // Workers screen log entries themselves, with the server's settings,
        // where that gives the server's verdict: without an external scorer.
        let mut config = config;
        if let (thetazero_sandbox::EngineMode::Process(p), None, true) = (
            &mut config.sandbox.mode,
            &config.external_scorer,
            config.safety.enabled,
        ) {
            p.args.push(LOG_SCREEN_ARG.into());
            p.args.push(log_screen_settings(&config.safety).into());
        }
        let inference = config
            .inference
            .map(InferenceClient::new)
            .transpose()
            .map_err(RuntimeError::Sandbox)?
            .map(Arc::new);
        let sandbox =
            Sandbox::new(config.sandbox).map_err(|e| RuntimeError::Sandbox(e.to_string()))?;
        let bus = config
            .bus
            .unwrap_or_else(|| Arc::new(thetazero_core::bus::LocalBus::new(1024)));
        let running = Arc::new(Running::default());
        governance::listen(bus.clone(), running.clone());
        let safety_thresholds = (
            config.safety.injection_threshold,
            config.safety.toxicity_threshold,
        );
        let safety = Arc::new({
            let filter = Filter::new(config.safety);
            match config.external_scorer {
                Some(c) => filter.with_external(Arc::new(
                    external::HttpScorer::new(c).map_err(RuntimeError::Sandbox)?,
                )),
                None => filter,
            }
        });
        let launcher = Arc::new(Launcher {
            store: store.clone(),
            services: Services { safety, inference },
            sandbox: Arc::new(sandbox),
            running: running.clone(),
            admitted: Arc::new(Semaphore::new(capacity)),
            swarm: config.swarm,
            dev_accounts: config.dev_accounts,
            ceilings: config.ceilings,
            quotas: config.quotas,
            per_account: Default::default(),
        });
        Ok(Runtime {
            store,
            bus,
            running,
            launcher,
            stopping: tokio::sync::watch::Sender::new(false),
            safety_thresholds,
            rates: config.rates,
            max_code_bytes: config.max_code_bytes,
            approvals_forbid_ancestors: config.approvals_forbid_ancestors,
        })
    }

    /// Shutdown: refuse new executions from now on (runs in flight go on).
    pub fn stop_admitting(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether `stop_admitting` was called.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once `stop_admitting` was called.
    pub async fn stopping(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits at most `grace` for every run in flight to end; answers whether
    /// they all did.
    pub async fn drained(&self, grace: std::time::Duration) -> bool {
        self.running.wait_all_stopped(grace).await
    }

    /// Which isolation runs get (`process_sandbox` or `in_process`).
    pub fn tee_mode(&self) -> &'static str {
        self.launcher.sandbox.tee_mode()
    }

    /// Content safety's injection and toxicity thresholds.
    pub fn safety_thresholds(&self) -> (f32, f32) {
        self.safety_thresholds
    }

    /// The operator's ceilings on every run's limits.
    pub fn ceilings(&self) -> thetazero_core::Ceilings {
        self.launcher.ceilings
    }

    /// The operator's rate limits.
    pub fn rate_limits(&self) -> rates::RateLimits {
        self.rates
    }

    /// Whether the operator lets `account` use the DEV template and
    /// `allow_localhost` (`dev_accounts`).
    pub fn dev_allowed(&self, account: AccountId) -> bool {
        self.launcher.dev_accounts.contains(&account)
    }

    /// Counts one event of `caller` against `which`, as the use cases do
    /// before acting (an execution started over the API, a kill-switch
    /// drill, new agent code).
    pub async fn enforce_rate(
        &self,
        which: rates::Limited,
        caller: Caller,
        agent: Option<(Option<AgentId>, &str)>,
    ) -> Result<(), rates::RateError> {
        rates::enforce(
            &*self.store,
            &self.rates,
            which,
            rates::Counted {
                account: caller.account,
                key: caller.key_id,
                agent,
            },
        )
        .await
    }

    pub fn running(&self) -> &Arc<Running> {
        &self.running
    }

    /// The configuration an agent runs with now: its own, widened by the
    /// grants in force (listed with their expiry), every limit held to the
    /// operator's ceilings. The stored `config` stays as the author wrote it,
    /// so a read-modify-write never makes a temporary grant permanent.
    pub async fn effective_config(
        &self,
        account: AccountId,
        agent: &thetazero_core::model::Agent,
    ) -> Result<Value, RuntimeError> {
        let (effective, grants) = with_grants_listed(&self.store, account, agent.clone()).await?;
        let limits = self.launcher.ceilings.clip(effective.config.limits());
        let mut shown = effective.config.to_json();
        if let Value::Object(map) = &mut shown {
            map.insert("memory_limit_mb".into(), json!(limits.memory_mb));
            map.insert("cpu_time_limit_ms".into(), json!(limits.cpu_time_ms));
            map.insert(
                "max_api_calls_per_run".into(),
                json!(limits.max_api_calls_per_run),
            );
            map.insert(
                "max_api_calls_per_minute".into(),
                json!(limits.max_api_calls_per_minute),
            );
            map.insert("permissions".into(), effective.permissions.to_json());
            map.insert("grants".into(), Value::Array(grants));
        }
        Ok(shown)
    }

    /// Whether a write over the API keeps the account within its quota.
    pub async fn check_quota(
        &self,
        account: AccountId,
        kept: quotas::Kept,
        key: &str,
        value: &Value,
    ) -> Result<Result<(), quotas::OverQuota>, RuntimeError> {
        Ok(self
            .launcher
            .quotas
            .check_write(self.store.as_ref(), account, kept, key, value)
            .await?)
    }

    /// The per-account quotas in force.
    pub fn quotas(&self) -> quotas::Quotas {
        self.launcher.quotas
    }

    /// Screens a value a caller writes where an agent will read it (context
    /// or storage over the API) on the input channel: an input content
    /// safety refuses must not reach the agent by another path. A refusal is
    /// recorded as `content_blocked` and returned with its verdict.
    /// `agent` is the agent that will read it; `None` for account-wide
    /// storage, which every agent may read. A DEV agent's context is
    /// screened too: the value stays when the agent is moved to a template
    /// whose safety is on, and its runs would read it unscreened.
    pub async fn screen_write(
        &self,
        caller: Caller,
        agent: Option<&thetazero_core::model::Agent>,
        source: &str,
        value: &Value,
    ) -> Result<(), Verdict> {
        let filter = &self.launcher.services.safety;
        let verdict = filter.scan_json_channel_async(value, Channel::Input).await;
        if !verdict.is_block() {
            return Ok(());
        }
        let mut event = AuditEvent::new(caller.account, AuditAction::ContentBlocked, String::new());
        event.key_id = caller.key_id;
        event.agent_id = agent.map(|a| a.id);
        let event = blocked_event(event, source, &verdict);
        if let Err(e) = self.launcher.store.append_audit(vec![event]).await {
            tracing::warn!(error = %e, "recording a blocked write failed");
        }
        Err(verdict)
    }

    /// Stops an agent: it refuses new executions until it is made ready
    /// again, and every execution of it running now is cancelled.
    pub async fn kill_agent(
        &self,
        caller: Caller,
        agent: AgentId,
        reason: String,
    ) -> Result<governance::KillOutcome, RuntimeError> {
        check_reason(&reason)?;
        governance::kill_agent(
            &self.store,
            &self.running,
            &self.bus,
            caller.account,
            agent,
            caller.key_id,
            reason,
        )
        .await
    }

    /// A kill made by a kill-switch drill: the same stop, with its events
    /// marked `drill: true` so that they never count as real kills.
    pub async fn kill_agent_drill(
        &self,
        caller: Caller,
        agent: AgentId,
        reason: String,
    ) -> Result<governance::KillOutcome, RuntimeError> {
        governance::kill_agent_as(
            &self.store,
            &self.running,
            &self.bus,
            caller.account,
            agent,
            caller.key_id,
            reason,
            true,
        )
        .await
    }

    /// Sets or clears a halt of `key`'s account or of the deployment; the
    /// deployment's only by an owner key of the deployment's first account.
    pub async fn set_halt(
        &self,
        key: &ApiKey,
        scope: governance::HaltScope,
        halted: bool,
        reason: String,
    ) -> Result<governance::HaltOutcome, RuntimeError> {
        check_reason(&reason)?;
        if scope == governance::HaltScope::Deployment {
            let first = self.store.first_account_id().await?;
            if !(key.is_owner && Some(key.account_id) == first) {
                return Err(RuntimeError::Forbidden(
                    "only an owner key of the deployment's first account may halt the whole deployment",
                ));
            }
        }
        governance::set_halt(
            &self.store,
            &self.running,
            &self.bus,
            scope,
            key.account_id,
            Some(key.id),
            halted,
            reason,
        )
        .await
    }

    /// The halt in force for an account (its own, or the deployment's).
    pub async fn halt(&self, account: AccountId) -> Result<Option<governance::Halt>, RuntimeError> {
        Ok(governance::halts(&self.store, account).await?)
    }

    /// Runs an agent to completion and records everything. The work runs in
    /// its own task: a caller that goes away does not leave a half-recorded
    /// execution behind.
    /// An execution a caller asked for over the API: counted against the
    /// key's and the account's execution rates, then run as `execute` runs
    /// it.
    pub async fn execute_requested(
        &self,
        caller: Caller,
        agent_id: AgentId,
        input: Value,
    ) -> Result<Executed, RuntimeError> {
        for which in [
            rates::Limited::ExecutionsPerKey,
            rates::Limited::ExecutionsPerAccount,
        ] {
            self.enforce_rate(which, caller, None).await?;
        }
        self.execute(caller, agent_id, input).await
    }

    pub async fn execute(
        &self,
        caller: Caller,
        agent_id: AgentId,
        input: Value,
    ) -> Result<Executed, RuntimeError> {
        if *self.stopping.borrow() {
            thetazero_core::telemetry::global().execution_refused("shutting_down");
            return Err(RuntimeError::ShuttingDown);
        }
        let launcher = self.launcher.clone();
        let task =
            tokio::spawn(async move { execute(launcher, caller, agent_id, input, None).await });
        let result = task
            .await
            .map_err(|e| RuntimeError::Sandbox(format!("execution task failed: {e}")))?;
        if let Err(e) = &result {
            let reason = match e {
                RuntimeError::AgentKilled => Some("agent_killed"),
                RuntimeError::AgentDisabled => Some("agent_disabled"),
                RuntimeError::Halted(_) => Some("halted"),
                RuntimeError::DevNotAllowed => Some("dev_not_allowed"),
                RuntimeError::Busy => Some("busy"),
                _ => None,
            };
            if let Some(reason) = reason {
                thetazero_core::telemetry::global().execution_refused(reason);
            }
        }
        result
    }

    /// Confined mode: the worker processes alive now.
    pub fn sandbox_workers(&self) -> usize {
        self.launcher.sandbox.worker_pids().len()
    }
}

/// The agent as an execution sees it: its own configuration and
/// permissions, widened by every approved permission request whose grant has
/// not lapsed.
async fn with_grants(
    store: &Arc<dyn Store>,
    account: AccountId,
    agent: thetazero_core::model::Agent,
) -> Result<thetazero_core::model::Agent, RuntimeError> {
    Ok(with_grants_listed(store, account, agent).await?.0)
}

/// As `with_grants`, with the grants that applied: `{request_id,
/// permissions, grant_expires_at}` each.
async fn with_grants_listed(
    store: &Arc<dyn Store>,
    account: AccountId,
    mut agent: thetazero_core::model::Agent,
) -> Result<(thetazero_core::model::Agent, Vec<Value>), RuntimeError> {
    let mut applied = Vec::new();
    let approved = store
        .permission_requests(
            account,
            None,
            Some(PermissionRequestStatus::Approved),
            Some(agent.id),
            100,
        )
        .await?;
    let now = time::OffsetDateTime::now_utc();
    let code = sha256_hex(agent.entry_code.as_bytes());
    // Grants were checked against the ceilings when they were requested.
    for request in approved.iter().rev() {
        if !request.grant_unexpired(now) {
            continue;
        }
        // A grant holds for the code it was asked for: new code has to ask
        // again.
        if request.code_sha256.as_deref() != Some(code.as_str()) {
            continue;
        }
        let Ok(grant) = thetazero_core::permissions::Grant::from_json(
            &request.grant,
            &thetazero_core::Ceilings::UNBOUNDED,
        ) else {
            continue;
        };
        if let Ok(config) = agent
            .config
            .merged(&grant.config, &thetazero_core::Ceilings::UNBOUNDED)
        {
            agent.config = config;
        }
        agent.permissions = grant.widen(&agent.permissions);
        applied.push(json!({
            "request_id": request.id,
            "permissions": request.grant,
            "grant_expires_at": request
                .grant_expires_at
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        }));
    }
    Ok((agent, applied))
}

/// How long a run may go before its start is written on its own.
const WRITE_START_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// The start of one execution, written once: when its first host call needs
/// a recorded decision, after `WRITE_START_AFTER`, or together with its end.
pub(crate) struct StartGate {
    store: Arc<dyn Store>,
    id: ExecutionId,
    pending: tokio::sync::Mutex<Option<(NewExecution, AuditEvent)>>,
    first: std::sync::Mutex<Option<Result<AuditRecord, String>>>,
}

impl StartGate {
    fn new(
        store: Arc<dyn Store>,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
    ) -> StartGate {
        StartGate {
            store,
            id,
            pending: tokio::sync::Mutex::new(Some((new, started))),
            first: std::sync::Mutex::new(None),
        }
    }

    fn first(&self) -> Option<Result<AuditRecord, String>> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes the start if it is not written yet; `Ok` once it is durable.
    pub(crate) async fn ensure(&self) -> Result<(), String> {
        let mut pending = self.pending.lock().await;
        if let Some((new, started)) = pending.take() {
            let result = self
                .store
                .create_execution(self.id, new, started)
                .await
                .map(|(_, record)| record)
                .map_err(|e| e.to_string());
            *self.first.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        }
        match self.first() {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err("the execution has ended".into()),
        }
    }

    /// Changes what the start records before it is written: the input kept
    /// and its summary (a refused input keeps only a bounded excerpt).
    async fn replace_start(&self, input: Value, summary: Option<String>) {
        if let Some((new, started)) = self.pending.lock().await.as_mut() {
            new.input = input;
            started.input_summary = summary;
        }
    }

    /// Writes the end, with the start if it was never written (one commit).
    async fn finish(
        &self,
        account: AccountId,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> Result<(Execution, AuditRecord, AuditRecord), RuntimeError> {
        let pending = self.pending.lock().await.take();
        if let Some((new, started)) = pending {
            return Ok(self
                .store
                .record_execution(self.id, new, started, outcome, ended)
                .await?);
        }
        let first = match self.first() {
            Some(Ok(first)) => first,
            Some(Err(e)) => {
                return Err(RuntimeError::Sandbox(format!(
                    "recording the start failed: {e}"
                )))
            }
            None => return Err(RuntimeError::Sandbox("the start was never written".into())),
        };
        let (execution, last) = self
            .store
            .finish_execution(account, self.id, outcome, ended)
            .await?
            .ok_or_else(|| StoreError::Internal("execution vanished before it finished".into()))?;
        Ok((execution, first, last))
    }
}

/// What executions share besides the store and sandbox.
#[derive(Clone)]
struct Services {
    safety: Arc<Filter>,
    inference: Option<Arc<InferenceClient>>,
}

pub(crate) fn layer_name(v: &Verdict) -> &'static str {
    match v.layer {
        Layer::Pattern => "pattern",
        Layer::Model => "model",
        Layer::Bounds => "bounds",
        Layer::External => "external",
        Layer::None => "none",
    }
}

/// Why content safety blocked, without any of the text: layer, rule or
/// model, channel, the JSON path, the score and the threshold it reached
/// ("blocked by the model layer (InjectionScore, model content) on the
/// output channel at $.note: score 0.91, threshold 0.35").
pub fn why_blocked(v: &Verdict) -> String {
    // A rule is named in camel case ("IgnorePreviousInstructions"): its
    // snake-case name reads as the phrase it names, and an agent that
    // passes this message on would have its own output blocked by it.
    let rule = v.rule.as_deref().map(camel_rule);
    let mut named: Vec<&str> = rule.as_deref().into_iter().collect();
    let model = v.model.as_deref().map(|m| format!("model {m}"));
    named.extend(model.as_deref());
    let mut out = format!("blocked by the {} layer", layer_name(v));
    if !named.is_empty() {
        out.push_str(&format!(" ({})", named.join(", ")));
    }
    out.push_str(&format!(" on the {} channel", v.channel.name()));
    if let Some(path) = &v.path {
        out.push_str(&format!(" at {path}"));
    }
    if let (Some(score), Some(threshold)) = (v.score, v.threshold) {
        out.push_str(&format!(": score {score:.2}, threshold {threshold:.2}"));
    }
    out
}

/// `base64:ignore_previous_instructions` as `base64:IgnorePreviousInstructions`:
/// the rule's own name in camel case, where it was found (`base64:`,
/// `joined:`, ...) as it is.
fn camel_rule(rule: &str) -> String {
    let (prefix, name) = match rule.rfind(':') {
        Some(at) => rule.split_at(at + 1),
        None => ("", rule),
    };
    let camel: String = name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{prefix}{camel}")
}

/// A verdict as the record shows it. The excerpt goes to the audit event
/// alone: the record is read by those the content was kept from.
fn shown_verdict(v: &Verdict) -> Value {
    let mut shown = json!(v);
    if let Value::Object(map) = &mut shown {
        map.remove("excerpt");
    }
    shown
}

/// A `content_blocked` event: scores, layer, rule and a bounded excerpt,
/// never more of the offending text.
pub(crate) fn blocked_event(mut e: AuditEvent, source: &str, v: &Verdict) -> AuditEvent {
    e.action_type = AuditAction::ContentBlocked.as_str().into();
    e.action_category = AuditAction::ContentBlocked.category().into();
    e.is_violation = true;
    e.permission_state = "denied".into();
    // Named as every other report of a block names it, with both scores.
    e.description = format!(
        "{source} {} (injection {:.2}, toxicity {:.2})",
        why_blocked(v),
        v.injection,
        v.toxicity
    );
    e.input_summary = v.excerpt.clone();
    e.payload = json!({
        "source": source,
        "injection": v.injection,
        "toxicity": v.toxicity,
        "layer": layer_name(v),
        "rule": v.rule,
        "model": v.model,
        "second_stage": v.second_stage,
        "channel": v.channel,
        "path": v.path,
        "score": v.score,
        "threshold": v.threshold,
        "excerpt": v.excerpt,
    });
    e
}

/// An execution admitted to run: its agent as it runs (grants applied), its
/// limits, id, and the events and record every later phase builds on.
struct Admitted {
    launcher: Arc<Launcher>,
    caller: Caller,
    agent: thetazero_core::model::Agent,
    limits: thetazero_core::limits::Limits,
    execution_id: ExecutionId,
    generation: u64,
    parent: Option<Parent>,
    new: NewExecution,
    started: AuditEvent,
    safety: Option<Arc<Filter>>,
    input: Value,
    screens: Arc<RunScreens>,
    /// Held until the run is recorded: the admission slot.
    _permit: tokio::sync::OwnedSemaphorePermit,
    _account_slot: AccountSlot,
}

impl Admitted {
    fn event(&self, action: AuditAction, description: String) -> AuditEvent {
        let mut e = AuditEvent::new(self.caller.account, action, description)
            .agent(self.agent.id)
            .key(self.caller.key_id);
        e.execution_id = Some(self.execution_id);
        e
    }
}

/// How a run ended, before it is recorded. Every ending goes through
/// `record`, the one path that writes an execution's end.
enum Ending {
    /// Content safety refused the input: no code ran.
    InputBlocked(Verdict),
    /// The sandbox could not run it.
    SandboxFailed(RuntimeError),
    /// The sandbox ran it; `blocked_output` when content safety refused the output.
    Ran {
        report: Box<ExecutionReport>,
        blocked_output: Option<Verdict>,
        /// Log entries and error text content safety withheld, by source.
        withheld: Vec<(String, Verdict)>,
    },
}

async fn execute(
    launcher: Arc<Launcher>,
    caller: Caller,
    agent_id: AgentId,
    input: Value,
    parent: Option<Parent>,
) -> Result<Executed, RuntimeError> {
    let run = admit(launcher, caller, agent_id, input, parent).await?;
    let gate = Arc::new(StartGate::new(
        run.launcher.store.clone(),
        run.execution_id,
        run.new.clone(),
        run.started.clone(),
    ));
    let ending = match screen(&run.safety, &run.input, Channel::Input).await {
        Some(verdict) => Ending::InputBlocked(verdict),
        None => match start_and_run(&run, &gate).await {
            Ok(mut report) => Ending::Ran {
                blocked_output: screen(&run.safety, &report.output, Channel::Output).await,
                withheld: screen_side_channels(&run.safety, &run.screens, &mut report).await,
                report: Box::new(report),
            },
            Err(e) => Ending::SandboxFailed(e),
        },
    };
    record(&run, &gate, ending).await
}

/// Admit: the agent exists and may run, nothing is halted, the engine has
/// room; the limits it runs under and its execution id.
async fn admit(
    launcher: Arc<Launcher>,
    caller: Caller,
    agent_id: AgentId,
    input: Value,
    parent: Option<Parent>,
) -> Result<Admitted, RuntimeError> {
    let store = launcher.store.clone();
    let generation = launcher.running.generation();
    let agent = store
        .get_agent(caller.account, agent_id)
        .await?
        .ok_or(RuntimeError::AgentNotFound)?;
    match agent.status {
        AgentStatus::Ready => {}
        AgentStatus::Killed => return Err(RuntimeError::AgentKilled),
        AgentStatus::Disabled => return Err(RuntimeError::AgentDisabled),
    }
    if let Some(halt) = governance::halts(&store, caller.account).await? {
        return Err(RuntimeError::Halted(halt.reason));
    }
    let agent = with_grants(&store, caller.account, agent).await?;
    if agent.config.needs_dev() && !launcher.dev_accounts.contains(&caller.account) {
        return Err(RuntimeError::DevNotAllowed);
    }
    let permit = launcher
        .admitted
        .clone()
        .try_acquire_owned()
        .map_err(|_| RuntimeError::Busy)?;
    let account_slot = match AccountSlot::take(&launcher, caller.account) {
        Ok(slot) => slot,
        Err(busy) => {
            // A refused call inside a run is recorded with the call.
            if parent.is_none() {
                quotas::record_refusal(
                    store.as_ref(),
                    caller.account,
                    caller.key_id,
                    Some(agent_id),
                    "concurrent_runs_per_account",
                    launcher.quotas.concurrent_runs_per_account,
                    busy.to_string(),
                )
                .await?;
            }
            return Err(busy);
        }
    };
    let code_sha256 = sha256_hex(agent.entry_code.as_bytes());
    let mut limits = launcher.ceilings.clip(agent.config.limits());
    if let Some(parent) = &parent {
        // Cost delta vs parent: the child gets at most what the parent has left.
        limits.max_api_calls_per_run = limits.max_api_calls_per_run.min(parent.budget.api_calls);
        limits.cpu_time_ms = limits.cpu_time_ms.min(parent.budget.time_ms);
    }
    let execution_id = store.reserve_execution_id(caller.account).await?;
    let mut started = AuditEvent::new(
        caller.account,
        AuditAction::ExecutionStarted,
        format!(
            "execution {execution_id} of {} v{} started",
            agent.name, agent.version
        ),
    )
    .agent(agent_id)
    .key(caller.key_id)
    .payload(json!({
        "code_sha256": code_sha256,
        "limits": limits,
        "template": agent.config.template().name(),
        "permissions": agent.permissions.to_json(),
        "content_safety": agent.config.content_safety(),
        "parent_execution_id": parent.as_ref().map(|p| p.execution),
        "depth": parent.as_ref().map_or(0, |p| p.depth),
    }));
    started.execution_id = Some(execution_id);
    if !agent.config.content_safety() {
        started
            .description
            .push_str("; content safety is off (DEV template)");
    }
    started.input_summary = Some(summarize(&input));
    started.input_digest = Some(Sha256::digest(input.to_string().as_bytes()).into());
    let safety = agent
        .config
        .content_safety()
        .then(|| launcher.services.safety.clone());
    let new = NewExecution {
        account_id: caller.account,
        agent_id,
        agent_version: agent.version.clone(),
        code_sha256,
        input: input.clone(),
        key_id: caller.key_id,
        parent_execution_id: parent.as_ref().map(|p| p.execution),
    };
    Ok(Admitted {
        launcher,
        caller,
        agent,
        limits,
        execution_id,
        generation,
        parent,
        new,
        started,
        safety,
        input,
        screens: Arc::default(),
        _permit: permit,
        _account_slot: account_slot,
    })
}

/// Screen: a value content safety refuses, with the verdict.
async fn screen(safety: &Option<Arc<Filter>>, value: &Value, channel: Channel) -> Option<Verdict> {
    match safety {
        Some(f) => {
            let verdict = f.scan_json_channel_async(value, channel).await;
            count_decision(channel, &verdict);
            Some(verdict).filter(|v| v.is_block())
        }
        None => None,
    }
}

/// What a run wrote besides its output, where people read it: its log
/// entries, the summaries of its host calls and the type and text of the
/// error it ended with. Each is screened as
/// output; a refused one is withheld from the record (and so from every
/// reader of it) and named with its verdict.
async fn screen_side_channels(
    safety: &Option<Arc<Filter>>,
    screens: &RunScreens,
    report: &mut ExecutionReport,
) -> Vec<(String, Verdict)> {
    let mut withheld = Vec::new();
    if safety.is_none() {
        return withheld;
    }
    for (i, entry) in report.logs.iter_mut().enumerate() {
        // An entry screened as it was written keeps that verdict (the same
        // text, read the same way); any other is screened now, whatever a
        // worker said of it.
        let refused = match screens.logs.get(&entry.message) {
            Some(verdict) => verdict,
            None => screen(safety, &log_value(&entry.message), Channel::Output).await,
        };
        if let Some(verdict) = refused {
            entry.message = WITHHELD.into();
            withheld.push((format!("log entry {i}"), verdict));
        }
    }
    // Each log call's line in the host-call audit summarises its message:
    // the i-th `log` line belongs to the i-th entry.
    let withheld_logs: std::collections::HashSet<usize> = withheld
        .iter()
        .filter_map(|(source, _)| source.strip_prefix("log entry ")?.parse().ok())
        .collect();
    if !withheld_logs.is_empty() {
        for (i, call) in report
            .host_call_audit
            .iter_mut()
            .filter(|c| c.function == "log")
            .enumerate()
        {
            if withheld_logs.contains(&i) {
                call.args_summary = WITHHELD.into();
            }
        }
    }
    // Every call's summary names what the agent chose: a key, an agent's
    // name, a URL's host and path. Each distinct one is screened once: as
    // its call was decided, or now for any the host did not see. Bounded: a
    // run keeps at most 2,048 rows of 1,024 bytes.
    for (i, call) in report.host_call_audit.iter_mut().enumerate() {
        if call.args_summary == WITHHELD {
            continue;
        }
        if let Some(verdict) = screen_summary(safety, screens, &call.args_summary).await {
            call.args_summary = WITHHELD.into();
            withheld.push((format!("host call {i} ({})", call.function), verdict));
        }
    }
    if let Some(error) = &mut report.error {
        // The agent names its error too (`e.name`): the type is its text.
        let text = match &error.stack {
            Some(stack) => format!("{}: {}\n{stack}", error.kind, error.message),
            None => format!("{}: {}", error.kind, error.message),
        };
        if let Some(verdict) = screen(safety, &Value::String(text), Channel::Output).await {
            error.kind = "Error".into();
            error.message = WITHHELD.into();
            error.stack = None;
            withheld.push(("error message".into(), verdict));
        }
    }
    withheld
}

/// Verdicts given while a run ran, by the text screened, kept for its
/// recording: `Some` holds a refusal. The run's end reuses them, so each
/// text is screened once and each refusal audited once.
#[derive(Default)]
pub(crate) struct RunScreens {
    /// Log entries, screened as they were written. Bounded by the run's
    /// log limits, which the broker holds these screens to.
    pub(crate) logs: Kept,
    /// Host-call summaries, screened as each call was decided. Bounded by
    /// the run's calls.
    pub(crate) summaries: Kept,
}

/// Verdicts by the text they were given on.
#[derive(Default)]
pub(crate) struct Kept(std::sync::Mutex<std::collections::HashMap<String, Option<Verdict>>>);

impl Kept {
    pub(crate) fn keep(&self, text: &str, verdict: Option<Verdict>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(text.to_string(), verdict);
    }

    /// `None` where the text was not screened.
    fn get(&self, text: &str) -> Option<Option<Verdict>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(text)
            .cloned()
    }
}

/// A host call's summary screened as output (a JSON string: one made of
/// identifiers is data and meets the patterns only), once per text in a run:
/// the refusal, if any.
pub(crate) async fn screen_summary(
    safety: &Option<Arc<Filter>>,
    screens: &RunScreens,
    summary: &str,
) -> Option<Verdict> {
    if let Some(known) = screens.summaries.get(summary) {
        return known;
    }
    let refused = screen(safety, &Value::String(summary.to_string()), Channel::Output).await;
    screens.summaries.keep(summary, refused.clone());
    refused
}

/// The refusal of a log entry, word for word wherever it is refused.
pub(crate) fn log_refusal(verdict: &Verdict) -> thetazero_sandbox::HostError {
    thetazero_sandbox::HostError::Blocked(format!("log entry {}", why_blocked(verdict)))
}

/// The worker argument that carries the log screen's settings.
const LOG_SCREEN_ARG: &str = "--log-screen";

fn log_screen_settings(c: &SafetyConfig) -> String {
    format!(
        "{},{},{},{}",
        c.injection_threshold, c.toxicity_threshold, c.max_text_bytes, c.window_bytes
    )
}

/// The log screen of a sandbox worker started with `--log-screen` (by a
/// server without an external scorer): the server's filter, settings and
/// reading, so the agent is refused where the server would refuse. The
/// server screens every entry again when the run ends. Built before the
/// worker confines itself; `None` without the argument or with settings it
/// cannot read (the worker then asks the server).
pub fn worker_log_screen(args: &[String]) -> Option<thetazero_sandbox::worker::LogScreen> {
    let at = args.iter().position(|a| a == LOG_SCREEN_ARG)?;
    let mut parts = args.get(at + 1)?.split(',');
    let mut next = || parts.next();
    let config = SafetyConfig {
        injection_threshold: next()?.parse().ok()?,
        toxicity_threshold: next()?.parse().ok()?,
        max_text_bytes: next()?.parse().ok()?,
        window_bytes: next()?.parse().ok()?,
        ..SafetyConfig::default()
    };
    let filter = Filter::new(config);
    // The models and patterns load now, not in a run's first log call.
    let _ = filter.scan_json_channel(&Value::String("warm up".into()), Channel::Output);
    Some(Box::new(move |message: &str| {
        let verdict = filter.scan_json_channel(&log_value(message), Channel::Output);
        // Word for word what the server's refusal says.
        verdict
            .is_block()
            .then(|| log_refusal(&verdict).to_string())
    }))
}

/// What stands in for text content safety withheld.
const WITHHELD: &str = "[withheld by content safety]";

/// A log entry as content safety reads it. One logged as an object is JSON
/// text: read as data. JSON text with a key twice would be parsed into its
/// last value alone while the record keeps both: it is read as text instead.
pub(crate) fn log_value(message: &str) -> Value {
    match message.trim_start().as_bytes().first() {
        Some(b'{' | b'[') => serde_json::from_str::<UniqueKeys>(message)
            .ok()
            .and_then(|_| serde_json::from_str(message).ok())
            .unwrap_or_else(|| Value::String(message.to_string())),
        _ => Value::String(message.to_string()),
    }
}

/// JSON that holds no object with the same key twice; what it holds is not
/// kept. Parsing it fails where a key repeats.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UniqueKeys, A::Error> {
                while seq.next_element::<UniqueKeys>()?.is_some() {}
                Ok(UniqueKeys)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key) {
                        return Err(serde::de::Error::custom("a key repeats"));
                    }
                    map.next_value::<UniqueKeys>()?;
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Counts a content-safety decision for `/metrics`.
pub(crate) fn count_decision(channel: Channel, verdict: &Verdict) {
    thetazero_core::telemetry::global().safety_decision(
        channel.name(),
        layer_name(verdict),
        verdict.is_block(),
    );
}

/// Start and run: the job goes to the sandbox, registered so that kills
/// reach it; the start is written once the run lasts or first needs it.
async fn start_and_run(
    run: &Admitted,
    gate: &Arc<StartGate>,
) -> Result<ExecutionReport, RuntimeError> {
    let launcher = &run.launcher;
    let (store, caller, agent_id, execution_id) = (
        launcher.store.clone(),
        run.caller,
        run.agent.id,
        run.execution_id,
    );
    // The code runs before its start is written. Nothing it does reaches
    // the world before a host call's decision is recorded, and the host
    // records no decision before the start is durable (the gate writes it
    // then). A run that makes no host call and ends quickly has its start
    // and end written in one commit; a longer one gets its start written
    // after a moment, so that it shows as running.
    // Dropped when the run ends: a quick run's timer then goes at once
    // instead of waking a worker later for nothing.
    let (run_ended, ended_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let gate = gate.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(WRITE_START_AFTER) => {
                    let _ = gate.ensure().await;
                }
                _ = ended_rx => {}
            }
        });
    }
    let cancel = run
        .parent
        .as_ref()
        .map_or_else(CancelHandle::new, |p| p.cancel.clone());
    let host = Arc::new(host::ServerHost::new(
        store.clone(),
        tokio::runtime::Handle::current(),
        caller,
        agent_id,
        execution_id,
        gate.clone(),
        host::HostServices {
            safety: run.safety.clone(),
            inference: launcher.services.inference.clone(),
            launcher: launcher.clone(),
            depth: run.parent.as_ref().map_or(0, |p| p.depth),
            code_sha256: run.new.code_sha256.clone(),
            screens: run.screens.clone(),
        },
    ));
    let agent = &run.agent;
    let job = Job {
        code: agent.entry_code.clone(),
        input: run.input.clone(),
        agent_name: agent.name.clone(),
        agent_version: agent.version.clone(),
        // The sandbox knows ids as plain integers.
        execution_id: execution_id.get(),
        limits: run.limits,
        scopes: agent.permissions.granted(),
        template: agent.config.template(),
        allow_network: agent.config.allow_network(),
        allowed_domains: agent.config.allowed_domains().to_vec(),
        allow_localhost: agent.config.allow_localhost.unwrap_or(false),
        approval_timeout: agent
            .config
            .approval_timeout_ms
            .map(std::time::Duration::from_millis),
        approval_calls: agent.config.approval_calls.clone(),
        screen_logs: run.safety.is_some(),
        code_cache_scope: caller.account.get() as u64,
        cancel: cancel.clone(),
        host,
    };
    let guard = launcher
        .running
        .register(caller.account, agent_id, execution_id, cancel.clone());
    // A kill or halt that landed between admission and this registration did
    // not see this execution: if one happened since, look again now that it
    // is registered, and stop it if it applies.
    if launcher.running.generation() != run.generation {
        let (store, cancel) = (store.clone(), cancel.clone());
        tokio::spawn(async move {
            let killed = matches!(
                store.get_agent(caller.account, agent_id).await,
                Ok(Some(a)) if a.status == AgentStatus::Killed
            );
            let halted = matches!(governance::halts(&store, caller.account).await, Ok(Some(_)));
            if killed || halted {
                cancel.cancel();
            }
        });
    }
    let submitted = if run.parent.is_some() {
        launcher.sandbox.submit_nested(job)
    } else {
        launcher.sandbox.submit(job)
    };
    let report = match submitted {
        Ok(rx) => rx
            .await
            .map_err(|_| RuntimeError::Sandbox("the sandbox stopped".into())),
        Err(e) => Err(RuntimeError::Sandbox(e.to_string())),
    };
    drop(guard);
    drop(run_ended);
    report
}

/// Record: the one path that writes how a run ended, whatever the ending.
async fn record(
    run: &Admitted,
    gate: &Arc<StartGate>,
    ending: Ending,
) -> Result<Executed, RuntimeError> {
    let store = &run.launcher.store;
    let account = run.caller.account;
    let execution_id = run.execution_id;
    let limits = run.limits;
    // A refused input's excerpt goes back to the caller who sent it (in the
    // response's verdict; the input stays what the receipt digests), and
    // into the audit; the record, which others read, keeps none.
    let mut caller_excerpt = None;
    // What each ending stores: the status, the output kept, the report, the
    // error the caller gets back (for a failure to run), violations.
    let (status, output, report_json, report, violations, terminated, duration_ms, failure) =
        match ending {
            Ending::InputBlocked(verdict) => {
                // A refused input is not kept: the record says it was
                // blocked, the start's audit event keeps a bounded excerpt,
                // and its `content_blocked` event precedes the end.
                gate.replace_start(json!({"blocked": true}), verdict.excerpt.clone())
                    .await;
                caller_excerpt = verdict.excerpt.clone();
                gate.ensure().await.map_err(|e| {
                    RuntimeError::Sandbox(format!("recording the start failed: {e}"))
                })?;
                store
                    .append_audit(vec![blocked_event(
                        run.event(AuditAction::ContentBlocked, String::new()),
                        "execution input",
                        &verdict,
                    )])
                    .await?;
                let message = format!("the input was {}", why_blocked(&verdict));
                let report = json!({
                    "error": {"type": "ContentBlocked", "code": "CONTENT_BLOCKED", "message": message, "stack": null},
                    "resource_usage": {"cpu_ms": 0, "memory_mb": 0, "api_calls": 0, "host_calls": 0},
                    "content_safety": Verdict { excerpt: None, ..verdict },
                    "limits": limits,
                    // No agent code ran.
                    "tee_mode": "none",
                });
                (
                    ExecutionStatus::Blocked,
                    None,
                    report,
                    None,
                    1,
                    false,
                    0,
                    None,
                )
            }
            Ending::SandboxFailed(e) => {
                let report = json!({"error": {"type": "SandboxError", "code": "SANDBOX_ERROR", "message": e.to_string()}});
                (
                    ExecutionStatus::Failed,
                    None,
                    report,
                    None,
                    0,
                    true,
                    0,
                    Some(e),
                )
            }
            Ending::Ran {
                report,
                blocked_output,
                withheld,
            } => {
                let mut report = *report;
                let mut status = status_of(&report);
                let mut extra = serde_json::Map::new();
                if !withheld.is_empty() {
                    store
                        .append_audit(
                            withheld
                                .iter()
                                .map(|(source, verdict)| {
                                    blocked_event(
                                        run.event(AuditAction::ContentBlocked, String::new()),
                                        source,
                                        verdict,
                                    )
                                })
                                .collect(),
                        )
                        .await?;
                    report.violation_count += withheld.len() as u64;
                    // Each names its source and why, as a block's verdict
                    // does, without the excerpt.
                    let listed: Vec<Value> = withheld
                        .iter()
                        .map(|(source, verdict)| {
                            let mut shown = shown_verdict(verdict);
                            if let Value::Object(map) = &mut shown {
                                map.insert("source".into(), json!(source));
                            }
                            shown
                        })
                        .collect();
                    extra.insert("content_withheld".into(), Value::Array(listed));
                }
                if status == ExecutionStatus::Completed {
                    if let Some(verdict) = blocked_output {
                        // The output never leaves: only the verdict and its excerpt stay.
                        store
                            .append_audit(vec![blocked_event(
                                run.event(AuditAction::ContentBlocked, String::new()),
                                "execution output",
                                &verdict,
                            )])
                            .await?;
                        status = ExecutionStatus::Blocked;
                        report.output = Value::Null;
                        report.violation_count += 1;
                        // What the run logged and any error text could carry
                        // the same content: they are withheld with it, from
                        // the record and so from every reader of it.
                        let withheld = report.logs.len();
                        report.logs.clear();
                        for call in &mut report.host_call_audit {
                            if call.function == "log" {
                                call.args_summary = WITHHELD.into();
                            }
                        }
                        report.error = None;
                        extra.insert("logs_withheld".into(), json!(withheld));
                        extra.insert(
                            "error".into(),
                            json!({"type": "ContentBlocked", "code": "CONTENT_BLOCKED", "message": format!("the output was {}", why_blocked(&verdict)), "stack": null}),
                        );
                        extra.insert("content_safety".into(), shown_verdict(&verdict));
                    }
                }
                // The output is the record's own field: the stored report
                // and the report handed back hold everything else, so a
                // large output is held and written once.
                let output = std::mem::take(&mut report.output);
                let mut value = serde_json::to_value(&report).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    map.remove("output");
                    // Kept with the record: the signed receipt states them.
                    map.insert("limits".into(), json!(limits));
                    map.extend(extra);
                }
                let (violations, terminated, duration) = (
                    report.violation_count,
                    report.was_terminated,
                    report.duration_ms.round() as u64,
                );
                (
                    status,
                    Some(output),
                    value,
                    Some(report),
                    violations,
                    terminated,
                    duration,
                    None,
                )
            }
        };
    let shown_output = output.as_ref().unwrap_or(&Value::Null);
    let output_text = shown_output.to_string();
    let description = match &failure {
        Some(e) => format!("execution {execution_id} could not run: {e}"),
        None => format!("execution {execution_id} ended: {}", status.as_str()),
    };
    let mut ended = run.event(AuditAction::ExecutionCompleted, description);
    if let Some(r) = &report {
        ended = ended.payload(json!({
            "status": status.as_str(),
            "limit": r.limit,
            "resource_usage": r.resource_usage,
            "violation_count": r.violation_count,
            "was_terminated": r.was_terminated,
            "output_sha256": sha256_hex(output_text.as_bytes()),
            "tee_mode": r.tee_mode,
        }));
        ended.output_summary = Some(summarize(shown_output));
        ended.output_digest = Some(Sha256::digest(output_text.as_bytes()).into());
    }
    ended.permission_state = status.as_str().into();
    if status == ExecutionStatus::Blocked && report.is_none() {
        ended.is_violation = true;
    }
    let outcome = ExecutionOutcome {
        status,
        output,
        report: report_json,
        violation_count: violations,
        was_terminated: terminated,
        duration_ms,
    };
    let (finished, first, last) = gate.finish(account, outcome, ended).await?;
    thetazero_core::telemetry::global().execution_ended(
        status.as_str(),
        run.agent.config.template().name(),
        duration_ms as f64 / 1000.0,
    );
    if let Some(e) = failure {
        return Err(e);
    }
    let mut finished = finished;
    if let Some(excerpt) = caller_excerpt {
        finished.report["content_safety"]["excerpt"] = json!(excerpt);
    }
    Ok(Executed {
        execution: finished,
        report,
        audit_range: (first.leaf_index, last.leaf_index),
        receipt: (last.leaf_index, last.leaf_hash),
    })
}

#[cfg(test)]
mod camel_tests {
    #[test]
    fn rules_are_named_in_camel_case_where_they_were_found() {
        assert_eq!(
            super::camel_rule("ignore_previous_instructions"),
            "IgnorePreviousInstructions"
        );
        assert_eq!(
            super::camel_rule("base64:reveal_system_prompt"),
            "base64:RevealSystemPrompt"
        );
        assert_eq!(
            super::camel_rule("joined:do_anything_now"),
            "joined:DoAnythingNow"
        );
    }
}
