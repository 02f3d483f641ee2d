//! The sandbox's front: the engine mode the operator chose (confined worker processes, or in-process threads for development and benchmarks) behind one submit API, and the audit events every ending needs. It must never run agent code on the caller's (server's) threads, and never report an isolation it did not provide.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::clock::RunClock;
use crate::engine::{self, Bridge};
use crate::host::{Host, SandboxEvent};
use crate::job::Job;
use crate::net::NetworkPolicy;
use crate::process::{ProcessConfig, ProcessPool};
use crate::report::{Enforcement, ExecutionReport, TEE_IN_PROCESS, TEE_PROCESS_SANDBOX};

/// Where agent code runs.
#[derive(Debug, Clone, Default)]
pub enum EngineMode {
    /// On threads of the server process, isolated by QuickJS alone. For
    /// development and benchmarks; receipts say `in_process`.
    #[default]
    InProcess,
    /// In worker processes the kernel confines; receipts say
    /// `process_sandbox`. Refuses to start if any part of the confinement
    /// is missing.
    Process(ProcessConfig),
}

/// How the pool is built.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// In process: worker threads; each runs one execution at a time, and
    /// executions that wait on the network hold theirs.
    pub workers: usize,
    /// In process: jobs waiting for a worker before `execute` refuses with
    /// `QueueFull`.
    pub queue_capacity: usize,
    /// Each worker's stack; must stay well above the largest `stack_kb` (4 MiB).
    pub worker_stack_bytes: usize,
    pub network: NetworkPolicy,
    pub mode: EngineMode,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            workers: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queue_capacity: 256,
            worker_stack_bytes: 16 << 20,
            network: NetworkPolicy::default(),
            mode: EngineMode::InProcess,
        }
    }
}

/// Why a job was not accepted. The server maps `QueueFull` to 503/429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the sandbox queue is full")]
    QueueFull,
    #[error("the sandbox is shut down")]
    ShutDown,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("could not start a sandbox worker: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("the sandbox needs at least one worker")]
    NoWorkers,
    #[error("the kernel does not confine sandbox workers: {0}. The confined mode refuses to start without it; set sandbox_mode = \"in_process\" only for development")]
    Confinement(String),
}

struct Envelope {
    job: Job,
    reply: oneshot::Sender<ExecutionReport>,
    /// Counted in `runs_queued` until a worker takes it.
    queued: thetazero_core::telemetry::Queued,
}

/// The sandbox: submit jobs, get reports.
pub struct Sandbox {
    tx: SyncSender<Envelope>,
    workers: usize,
    network: NetworkPolicy,
    stack_bytes: usize,
    /// Child executions running on threads of their own (`submit_nested`).
    nested: Arc<std::sync::atomic::AtomicUsize>,
    /// Set in the confined mode: every run goes there.
    processes: Option<ProcessPool>,
}

/// Child executions that may run at once beyond the pool, per worker.
const NESTED_PER_WORKER: usize = 4;

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("workers", &self.workers)
            .finish()
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if config.workers == 0 {
            return Err(SandboxError::NoWorkers);
        }
        let processes = match &config.mode {
            EngineMode::InProcess => None,
            EngineMode::Process(cfg) => {
                Some(ProcessPool::new(cfg.clone(), config.network.clone())?)
            }
        };
        let (tx, rx) = sync_channel::<Envelope>(config.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        // The confined mode runs nothing on these threads.
        let threads = if processes.is_some() {
            0
        } else {
            config.workers
        };
        for i in 0..threads {
            let rx = rx.clone();
            let network = config.network.clone();
            thread::Builder::new()
                .name(format!("thetazero-sandbox-{i}"))
                .stack_size(config.worker_stack_bytes)
                .spawn(move || worker(rx, network))?;
        }
        Ok(Sandbox {
            tx,
            workers: config.workers,
            network: config.network,
            stack_bytes: config.worker_stack_bytes,
            nested: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            processes,
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The isolation runs get, as receipts state it.
    pub fn tee_mode(&self) -> &'static str {
        if self.processes.is_some() {
            TEE_PROCESS_SANDBOX
        } else {
            TEE_IN_PROCESS
        }
    }

    /// Confined mode: the worker processes alive now, as (tenant, pid).
    pub fn worker_pids(&self) -> Vec<(u64, u32)> {
        self.processes
            .as_ref()
            .map_or_else(Vec::new, ProcessPool::worker_pids)
    }

    /// Runs submitted and not yet ended (confined mode; 0 in process).
    pub fn in_flight(&self) -> usize {
        self.processes.as_ref().map_or(0, ProcessPool::in_flight)
    }

    /// Queues a job and waits for its report. Dropping the returned future
    /// cancels the execution.
    pub async fn execute(&self, job: Job) -> Result<ExecutionReport, SubmitError> {
        // Cancels the execution if the caller stops waiting for it.
        let guard = job.cancel.cancel_on_drop();
        let rx = self.submit(job)?;
        let report = rx.await.map_err(|_| SubmitError::ShutDown);
        // Finished: nothing left to cancel.
        guard.disarm();
        report
    }

    /// Runs a child execution at once on a thread of its own. A parent waits
    /// for its child while holding its worker, so a child queued behind busy
    /// workers could wait for ever on its own ancestors; a child never waits
    /// for a worker. At most `NESTED_PER_WORKER` x workers run this way at
    /// once; beyond that the child is refused with `QueueFull`.
    pub fn submit_nested(
        &self,
        job: Job,
    ) -> Result<oneshot::Receiver<ExecutionReport>, SubmitError> {
        use std::sync::atomic::Ordering;
        // Confined runs hold no thread while they wait, so a child simply
        // runs like any other run.
        if let Some(p) = &self.processes {
            return p.submit(job);
        }
        let cap = self.workers * NESTED_PER_WORKER;
        if self
            .nested
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_err()
        {
            return Err(SubmitError::QueueFull);
        }
        let (reply, rx) = oneshot::channel();
        let (nested, network) = (self.nested.clone(), self.network.clone());
        let spawned = thread::Builder::new()
            .name("thetazero-sandbox-child".into())
            .stack_size(self.stack_bytes)
            .spawn(move || {
                let started = std::time::Instant::now();
                let report = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()
                    .and_then(|rt| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            rt.block_on(run_in_process(job, network, None))
                        }))
                        .ok()
                    })
                    .unwrap_or_else(|| ExecutionReport::internal_failure(started.elapsed()));
                nested.fetch_sub(1, Ordering::SeqCst);
                let _ = reply.send(report);
            });
        if spawned.is_err() {
            self.nested.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull);
        }
        Ok(rx)
    }

    /// Queues a job without waiting; the receiver yields its report.
    pub fn submit(&self, job: Job) -> Result<oneshot::Receiver<ExecutionReport>, SubmitError> {
        if let Some(p) = &self.processes {
            return p.submit(job);
        }
        let (reply, rx) = oneshot::channel();
        let queued = thetazero_core::telemetry::global().queued();
        match self.tx.try_send(Envelope { job, reply, queued }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::ShutDown),
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<Envelope>>>, network: NetworkPolicy) {
    // One current-thread runtime per worker: timers and host I/O of this
    // worker's execution run here, never on the server's runtime.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // The next execution's runtime is made while this worker is idle.
    let mut ready = rt.block_on(engine::prepare());
    loop {
        // Holding the lock while idle is fine: only idle workers wait on it.
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(Envelope { job, reply, queued }) = next else {
            return;
        };
        drop(queued);
        // A panic in one execution must not take the worker (and with it a
        // slot of the pool) down; the caller gets a failed report instead.
        let started = std::time::Instant::now();
        let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(run_in_process(job, network.clone(), ready.take()))
        }))
        .unwrap_or_else(|_| ExecutionReport::internal_failure(started.elapsed()));
        let _ = reply.send(report);
        ready = rt.block_on(engine::prepare());
    }
}

/// Runs one job on this thread: the engine and its broker share one clock.
async fn run_in_process(
    job: Job,
    network: NetworkPolicy,
    prepared: Option<engine::Prepared>,
) -> ExecutionReport {
    let clock = RunClock::new(
        std::time::Instant::now(),
        std::time::Duration::from_millis(job.limits.cpu_time_ms),
    );
    let signal = clock.clone();
    let broker = Arc::new(Broker::new(
        job.host.clone(),
        network,
        job.rules(),
        clock.clone(),
        Box::new(move |waiting| signal.approval(waiting)),
    ));
    let report = engine::run(
        job.spec(),
        Bridge::Local(broker),
        job.cancel.clone(),
        clock,
        prepared,
    )
    .await;
    record_ending(&job.host, &report).await;
    report
}

/// Extra time after the deadline for the final audit records of a run.
const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The audit events an ending needs beyond the server's own: which limit
/// stopped the run and how, and which run's stop ended a shared worker.
pub(crate) async fn record_ending(host: &Arc<dyn Host>, report: &ExecutionReport) {
    if let Some(limit) = report.limit {
        let enforcement = report.enforcement.unwrap_or(Enforcement::Cooperative);
        let detail = report
            .limit_detail
            .clone()
            .unwrap_or_else(|| format!("{} limit reached", limit.as_str()));
        let event = SandboxEvent::SandboxLimitHit {
            limit,
            detail: format!("{detail} (enforced by {})", enforcement.as_str()),
            is_violation: true,
            enforcement,
        };
        let _ = tokio::time::timeout(RECORD_TIMEOUT, host.record(event)).await;
    }
    if let Some(note) = &report.worker_stopped {
        let event = SandboxEvent::WorkerStopped {
            cause_execution_id: note.cause_execution_id,
            reason: note.reason.clone(),
        };
        let _ = tokio::time::timeout(RECORD_TIMEOUT, host.record(event)).await;
    }
}
