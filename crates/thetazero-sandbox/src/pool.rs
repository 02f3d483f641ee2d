//! The bounded pool of OS threads executions run on, with a bounded queue in front. It must never run agent code on the caller's (server's) threads.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

use crate::engine;
use crate::job::Job;
use crate::net::NetworkPolicy;
use crate::report::ExecutionReport;

/// How the pool is built.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Worker threads; each runs one execution at a time. Executions that wait
    /// on the network hold their worker, so size above the core count when
    /// agents are I/O-bound.
    pub workers: usize,
    /// Jobs waiting for a worker before `execute` refuses with `QueueFull`.
    pub queue_capacity: usize,
    /// Each worker's stack; must stay well above the largest `stack_kb` (4 MiB).
    pub worker_stack_bytes: usize,
    pub network: NetworkPolicy,
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
}

struct Envelope {
    job: Job,
    reply: oneshot::Sender<ExecutionReport>,
}

/// The sandbox: submit jobs, get reports.
pub struct Sandbox {
    tx: SyncSender<Envelope>,
    workers: usize,
    network: NetworkPolicy,
    stack_bytes: usize,
    /// Child executions running on threads of their own (`submit_nested`).
    nested: Arc<std::sync::atomic::AtomicUsize>,
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
        let (tx, rx) = sync_channel::<Envelope>(config.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..config.workers {
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
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
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
                            rt.block_on(engine::run(job, network, None))
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
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Envelope { job, reply }) {
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
        let Ok(Envelope { job, reply }) = next else {
            return;
        };
        // A panic in one execution must not take the worker (and with it a
        // slot of the pool) down; the caller gets a failed report instead.
        let started = std::time::Instant::now();
        let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(engine::run(job, network.clone(), ready.take()))
        }))
        .unwrap_or_else(|_| ExecutionReport::internal_failure(started.elapsed()));
        let _ = reply.send(report);
        ready = rt.block_on(engine::prepare());
    }
}
