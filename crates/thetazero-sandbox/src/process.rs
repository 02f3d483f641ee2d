//! The server's side of the confined engine: worker processes per account, the broker tasks that perform their host calls, and the watchdog that ends a worker whose run passed its deadline or ignored a kill. It must never let one account's runs share a worker with another's, and never report a run as completed after its deadline.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::broker::{Broker, CallReply};
use crate::clock::RunClock;
use crate::confine::Probe;
use crate::host::HostFn;
use crate::job::Job;
use crate::net::NetworkPolicy;
use crate::proto::{self, FromWorker, OutFrame, ToWorker};
use crate::report::{
    Enforcement, ErrorInfo, ExecutionReport, LimitKind, Status, WorkerStopNote, TEE_PROCESS_SANDBOX,
};
use crate::Locked;
use crate::{SandboxError, SubmitError};

/// How the confined engine is run.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The worker program and its arguments: the server binary itself with
    /// its `sandbox-worker` subcommand.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Worker processes one account may have, and so the CPU-active runs it
    /// may hold at once: by default max(1, cores − 1), so one account never
    /// takes every core from the others.
    pub workers_per_account: usize,
    /// Further worker processes ("spares") an account may start while no
    /// other account has a run in flight; `None` is cores −
    /// `workers_per_account`, so a lone account can use every core. When
    /// another account has a run in flight a spare is retired: it takes no
    /// new run, its engine thread moves to the kernel's idle scheduling
    /// class (it then gets only CPU time no other thread wants), and it ends
    /// once it holds no run. Retired spares still alive count against this.
    pub spare_workers_per_account: Option<usize>,
    /// Worker processes in all; an account that needs a new one beyond this
    /// shares its least-loaded existing one.
    pub max_workers: usize,
    /// Runs in flight (running or waiting) before new ones are refused.
    pub max_runs: usize,
    /// Runs in flight of one account before its new ones are refused, so one
    /// account cannot take every slot.
    pub max_runs_per_account: usize,
    /// A worker with no run for this long exits.
    pub idle_timeout: Duration,
    /// How long past its deadline a run may go before its worker is ended.
    pub watchdog_grace: Duration,
    /// How long a killed run may take to stop before its worker is ended.
    pub kill_grace: Duration,
    /// The address-space limit of each worker (a backstop; runs are bounded
    /// by their own memory limits).
    pub address_space_bytes: u64,
    /// Resident memory the server and its workers may use together (default
    /// 75% of RAM). Near it new runs are refused (503); past it the largest
    /// worker is ended and its runs end `limit_exceeded` (memory), so the
    /// kernel's OOM killer never has to choose.
    pub memory_budget_bytes: u64,
    /// The runtime that carries worker channels, supervisors and watchdogs:
    /// the server passes its own; `None` gives the pool a runtime of its own
    /// (tests, benches, anything whose runtimes come and go).
    pub runtime: Option<tokio::runtime::Handle>,
}

/// Physical memory, from /proc/meminfo (`None` where it cannot be read).
fn total_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident bytes of one process (`/proc/PID/statm`, second field in pages).
fn resident_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

impl ProcessConfig {
    /// Workers started as `program args...`, with the defaults above.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> ProcessConfig {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        ProcessConfig {
            program: program.into(),
            args,
            workers_per_account: cores.saturating_sub(1).max(1),
            spare_workers_per_account: None,
            max_workers: 4096,
            max_runs: 100_000,
            max_runs_per_account: 2_000,
            idle_timeout: Duration::from_secs(60),
            watchdog_grace: Duration::from_millis(100),
            kill_grace: Duration::from_millis(40),
            address_space_bytes: 64 << 30,
            memory_budget_bytes: total_memory_bytes().map_or(u64::MAX, |t| t / 4 * 3),
            runtime: None,
        }
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args)
            .arg("--address-space")
            .arg(self.address_space_bytes.to_string())
            .env_clear()
            .current_dir("/");
        c
    }

    /// Starts a worker in check mode: it confines itself and tries what it
    /// must not be able to do. Fails closed with the part that is missing.
    pub fn check(&self) -> Result<Probe, SandboxError> {
        let output = self
            .command()
            .arg("--check")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(SandboxError::Spawn)?;
        let probe: Probe = serde_json::from_slice(&output.stdout).map_err(|_| {
            SandboxError::Confinement(format!(
                "the worker program did not report its confinement (exit {})",
                output.status
            ))
        })?;
        match probe.failure() {
            None if probe.holds() => Ok(probe),
            None => Err(SandboxError::Confinement(
                "the worker did not confirm its confinement".into(),
            )),
            Some(why) => Err(SandboxError::Confinement(why)),
        }
    }
}

/// How a run's wait ended on the server's side.
enum Ending {
    Report(Box<ExecutionReport>),
    /// Cancelled while off the engine thread: it runs no more code.
    Stopped,
    /// Its worker is gone: ended by the watchdog, a crash or garbage.
    WorkerGone,
}

struct RunState {
    broker: Arc<Broker>,
    clock: Arc<RunClock>,
    /// When the server sent the run to its worker.
    sent: Instant,
    /// Set when the worker's engine first took the run.
    started: AtomicBool,
    started_notify: tokio::sync::Notify,
    /// Counted in `runs_queued` until the engine takes it.
    queued: Mutex<thetazero_core::telemetry::Queued>,
    done: Mutex<Option<oneshot::Sender<Ending>>>,
    calls: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl RunState {
    fn end(&self, ending: Ending) {
        if let Some(tx) = self.done.locked().take() {
            let _ = tx.send(ending);
        }
        for call in self.calls.locked().drain(..) {
            call.abort();
        }
    }
}

/// Why a worker was ended, so its other runs can name the cause.
#[derive(Clone)]
struct StopCause {
    run: u64,
    execution_id: i64,
    reason: String,
}

struct Worker {
    tenant: u64,
    pid: u32,
    /// A spare worker: started while its account was alone, and retired
    /// (no new runs, its engine thread moved to the idle scheduling class,
    /// ended once empty) as soon as another account has a run in flight.
    spare: bool,
    retired: AtomicBool,
    retired_notify: tokio::sync::Notify,
    /// Runs placed on it by `worker_for` and not yet in `runs`: counted in
    /// its load, so that it is not reaped between the two.
    placed: AtomicUsize,
    out: Arc<Outbox>,
    runs: Mutex<HashMap<u64, Arc<RunState>>>,
    child: Mutex<Option<std::process::Child>>,
    dead: AtomicBool,
    cause: Mutex<Option<StopCause>>,
    last_active: Mutex<Instant>,
    /// From the sentinel's last beat: the run on the engine thread and since
    /// when (server time), and when that beat came.
    on_thread: Mutex<Option<(u64, Instant)>>,
    last_beat: Mutex<Instant>,
    /// Set when the memory guard ended it.
    memory_stopped: Mutex<Option<String>>,
    /// Since when the sentinel has said the engine thread is idle.
    idle_since: Mutex<Option<Instant>>,
}

impl Worker {
    fn send(&self, message: &ToWorker) -> bool {
        match proto::encode(message) {
            Ok(bytes) => self.send_frame(bytes),
            Err(_) => false,
        }
    }

    /// Sends an encoded frame; false once the channel is broken.
    fn send_frame(&self, bytes: Vec<u8>) -> bool {
        self.out.send(OutFrame {
            bytes,
            written: None,
        });
        !self.out.broken.load(Ordering::SeqCst)
    }

    /// The thread has been idle (per the sentinel) for at least `for_at_least`.
    fn idle_for(&self, for_at_least: Duration) -> bool {
        self.idle_since
            .locked()
            .is_some_and(|t| t.elapsed() >= for_at_least)
    }

    fn load(&self) -> usize {
        // `placed` first: a run leaves it only after it is in `runs`, so
        // one being placed is always seen in one of the two.
        let placed = self.placed.load(Ordering::SeqCst);
        placed + self.runs.locked().len()
    }

    /// Whether the engine thread has been running `run` for at least `for_at_least`.
    fn holds_thread(&self, run: u64, for_at_least: Duration) -> bool {
        matches!(
            *self.on_thread.locked(),
            Some((r, since)) if r == run && since.elapsed() >= for_at_least
        )
    }

    /// No beat for so long that the whole process must be stuck.
    fn silent(&self) -> bool {
        self.last_beat.locked().elapsed() >= SILENCE
    }

    /// Ends the process now. The reader then sees the channel close and
    /// ends every run that was on it.
    fn stop(&self, cause: Option<StopCause>) {
        if let Some(cause) = cause {
            let mut slot = self.cause.locked();
            if slot.is_none() {
                *slot = Some(cause);
            }
        }
        self.dead.store(true, Ordering::SeqCst);
        if let Some(child) = self.child.locked().as_mut() {
            let _ = child.kill();
        }
    }
}

/// Frames for one worker. A frame is written at once by whoever sends it
/// when nothing is queued and the pipe takes it; otherwise it is queued in
/// order and the drain task writes it when the pipe is writable.
struct Outbox {
    half: tokio::net::unix::pipe::Sender,
    queue: Mutex<std::collections::VecDeque<(OutFrame, usize)>>,
    wake: tokio::sync::Notify,
    broken: AtomicBool,
}

impl Outbox {
    fn send(&self, frame: OutFrame) {
        let mut queue = self.queue.locked();
        if !queue.is_empty() {
            queue.push_back((frame, 0));
            return;
        }
        match self.write_some(&frame.bytes, 0) {
            Some(done) if done == frame.bytes.len() => {
                drop(queue);
                if let Some(release) = frame.written {
                    release();
                }
            }
            Some(done) => {
                queue.push_back((frame, done));
                drop(queue);
                self.wake.notify_one();
            }
            None => {}
        }
    }

    /// Writes from `offset` without waiting; answers how far it got, or
    /// `None` when the channel is broken.
    fn write_some(&self, bytes: &[u8], mut offset: usize) -> Option<usize> {
        while offset < bytes.len() {
            match self.half.try_write(&bytes[offset..]) {
                Ok(0) => {
                    self.broken.store(true, Ordering::SeqCst);
                    return None;
                }
                Ok(n) => offset += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.broken.store(true, Ordering::SeqCst);
                    return None;
                }
            }
        }
        Some(offset)
    }
}

/// Writes what `Outbox::send` could not, in order, as the pipe allows.
async fn drain_outbox(out: Arc<Outbox>) {
    enum Step {
        Wrote(Option<Box<dyn FnOnce() + Send>>),
        Full,
    }
    loop {
        out.wake.notified().await;
        loop {
            if out.broken.load(Ordering::SeqCst) {
                return;
            }
            // Decided under the queue's lock, acted on after it is let go.
            let step = {
                let mut queue = out.queue.locked();
                let Some((frame, offset)) = queue.pop_front() else {
                    break;
                };
                match out.write_some(&frame.bytes, offset) {
                    Some(done) if done == frame.bytes.len() => Step::Wrote(frame.written),
                    Some(done) => {
                        queue.push_front((frame, done));
                        Step::Full
                    }
                    None => return,
                }
            };
            match step {
                Step::Wrote(release) => {
                    if let Some(release) = release {
                        release();
                    }
                }
                Step::Full => {
                    if out.half.writable().await.is_err() {
                        out.broken.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    }
}

struct Shared {
    cfg: ProcessConfig,
    network: NetworkPolicy,
    workers: tokio::sync::Mutex<HashMap<u64, Vec<Arc<Worker>>>>,
    live_workers: AtomicUsize,
    /// `ProcessConfig::spare_workers_per_account`, resolved.
    spares_per_account: usize,
    /// Spare workers not yet retired.
    spares: Mutex<Vec<Weak<Worker>>>,
    /// Set once the kernel refused to move a retiring spare to the idle
    /// class: this server starts no more spares.
    spares_refused: AtomicBool,
    /// Live worker processes: pid to tenant.
    pids: Mutex<HashMap<u32, u64>>,
    in_flight: AtomicUsize,
    next_run: AtomicU64,
    /// Set by the memory guard while the total is near the budget.
    near_budget: AtomicBool,
    /// Where brokers perform host calls, apart from the runtime that carries
    /// channels and watchdogs.
    brokers: tokio::runtime::Handle,
    /// The pool's own runtime, whose one long-lived thread starts every
    /// worker process.
    spawner: tokio::runtime::Handle,
    /// Runs in flight per account.
    per_account: Mutex<HashMap<u64, usize>>,
}

/// The confined engine.
pub(crate) struct ProcessPool {
    /// The pool's own runtime, when it has one; taken on drop, which may
    /// happen inside another runtime.
    rt: Option<tokio::runtime::Runtime>,
    /// Where channels, supervisors and watchdogs run.
    control: tokio::runtime::Handle,
    brokers: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

impl ProcessPool {
    pub(crate) fn new(cfg: ProcessConfig, network: NetworkPolicy) -> Result<Self, SandboxError> {
        cfg.check()?;
        let spares_per_account = cfg.spare_workers_per_account.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .saturating_sub(cfg.workers_per_account)
        });
        // Worker channels, supervisors and watchdogs run on the runtime the
        // operator gave (the server's own: no hop between runtimes per run),
        // or else on the pool's own runtime, so that they outlive any one
        // caller's runtime. Workers are always started from the pool's own
        // thread: a worker dies with the thread that started it
        // (PR_SET_PDEATHSIG), and a thread of the server's runtime may leave
        // it (`block_in_place` hands a thread to the blocking pool, whose
        // idle threads exit).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("thetazero-sandbox-io")
            .enable_all()
            .build()
            .map_err(SandboxError::Spawn)?;
        let spawner = rt.handle().clone();
        let control = cfg.runtime.clone().unwrap_or_else(|| spawner.clone());
        let rt = Some(rt);
        let brokers = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("thetazero-sandbox-broker")
            .enable_all()
            .build()
            .map_err(SandboxError::Spawn)?;
        let broker_handle = brokers.handle().clone();
        Ok(ProcessPool {
            rt,
            control,
            brokers: Some(brokers),
            shared: Arc::new(Shared {
                cfg,
                network,
                workers: tokio::sync::Mutex::new(HashMap::new()),
                live_workers: AtomicUsize::new(0),
                spares_per_account,
                spares: Mutex::new(Vec::new()),
                spares_refused: AtomicBool::new(false),
                pids: Mutex::new(HashMap::new()),
                in_flight: AtomicUsize::new(0),
                next_run: AtomicU64::new(1),
                near_budget: AtomicBool::new(false),
                brokers: broker_handle,
                spawner,
                per_account: Mutex::new(HashMap::new()),
            }),
        })
        .inspect(|pool: &ProcessPool| {
            pool.control.spawn(guard_memory(pool.shared.clone()));
        })
    }

    pub(crate) fn submit(
        &self,
        job: Job,
    ) -> Result<oneshot::Receiver<ExecutionReport>, SubmitError> {
        let shared = self.shared.clone();
        if shared.near_budget.load(Ordering::SeqCst) {
            return Err(SubmitError::QueueFull);
        }
        let admitted = shared
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < shared.cfg.max_runs).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(SubmitError::QueueFull);
        }
        let tenant = job.code_cache_scope;
        {
            let mut per = shared.per_account.locked();
            let n = per.entry(tenant).or_insert(0);
            if *n >= shared.cfg.max_runs_per_account {
                drop(per);
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Err(SubmitError::QueueFull);
            }
            *n += 1;
            // An account that just came while another has runs in flight:
            // spares exist only while one account is alone.
            if *n == 1 && per.len() > 1 {
                drop(per);
                retire_spares(&shared);
            }
        }
        let (reply, rx) = oneshot::channel();
        self.control.spawn(async move {
            let started = Instant::now();
            let host = job.host.clone();
            let report = supervise(&shared, job).await;
            let report = report.unwrap_or_else(|e| {
                let mut r = ExecutionReport::internal_failure(started.elapsed());
                if let Some(err) = r.error.as_mut() {
                    err.message = e;
                    err.code = Some("WORKER_FAILED".into());
                }
                r.tee_mode = TEE_PROCESS_SANDBOX.to_string();
                r
            });
            crate::pool::record_ending(&host, &report).await;
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            {
                let mut per = shared.per_account.locked();
                if let Some(n) = per.get_mut(&tenant) {
                    *n -= 1;
                    if *n == 0 {
                        per.remove(&tenant);
                    }
                }
            }
            let _ = reply.send(report);
        });
        Ok(rx)
    }

    /// The worker processes alive now, as (tenant, pid).
    pub(crate) fn worker_pids(&self) -> Vec<(u64, u32)> {
        let mut pids: Vec<_> = self
            .shared
            .pids
            .locked()
            .iter()
            .map(|(pid, tenant)| (*tenant, *pid))
            .collect();
        pids.sort_unstable();
        pids
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        // Workers die with the pool's threads; ending them here as well makes
        // it immediate.
        if let Ok(workers) = self.shared.workers.try_lock() {
            for w in workers.values().flatten() {
                w.stop(None);
            }
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        if let Some(rt) = self.brokers.take() {
            rt.shutdown_background();
        }
    }
}

/// A worker that sends nothing for this long is ended (its sentinel beats
/// at least every half second).
const SILENCE: Duration = Duration::from_secs(3);
/// How often a run past its deadline is looked at again while it waits for
/// the engine thread.
const WATCH_TICK: Duration = Duration::from_millis(10);
/// How often a retired spare worker is looked at until it holds no run.
const RETIRED_LOOK: Duration = Duration::from_millis(50);

/// How often the memory guard looks.
const MEMORY_TICK: Duration = Duration::from_millis(200);

/// Keeps the server and its workers under the memory budget: admission stops
/// at 90% of it, and past it the worker with the most resident memory is
/// ended (its runs end `limit_exceeded`, memory).
async fn guard_memory(shared: Arc<Shared>) {
    let budget = shared.cfg.memory_budget_bytes;
    if budget == u64::MAX {
        return;
    }
    let mut tick = tokio::time::interval(MEMORY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pids: Vec<u32> = shared.pids.locked().keys().copied().collect();
        let workers: Vec<(u32, u64)> = pids
            .iter()
            .map(|p| (*p, resident_bytes(&p.to_string())))
            .collect();
        let total = resident_bytes("self") + workers.iter().map(|(_, b)| b).sum::<u64>();
        shared
            .near_budget
            .store(total >= budget / 10 * 9, Ordering::SeqCst);
        if total < budget {
            continue;
        }
        let Some((pid, bytes)) = workers.into_iter().max_by_key(|(_, b)| *b) else {
            continue;
        };
        let all = shared.workers.lock().await;
        if let Some(w) = all.values().flatten().find(|w| w.pid == pid) {
            *w.memory_stopped.locked() = Some(format!(
                "the server and its workers reached the memory budget of {} MiB; this account's worker held {} MiB",
                budget >> 20,
                bytes >> 20
            ));
            thetazero_core::telemetry::global().worker_forced_stop("memory");
            w.stop(None);
        }
    }
}

/// Picks (or starts) a worker for the tenant: an idle one of its workers,
/// else a new one while it has fewer than its share, else its least-loaded
/// one. Spares are started and given runs only while no other account has a
/// run in flight. The worker comes back with the run counted in its load
/// (`Worker::placed`), which the caller gives back once the run is in
/// `Worker::runs` or has failed to start.
async fn worker_for(shared: &Arc<Shared>, tenant: u64) -> Result<Arc<Worker>, String> {
    let mut workers = shared.workers.lock().await;
    let alone = shared
        .per_account
        .locked()
        .keys()
        .all(|&other| other == tenant);
    let list = workers.entry(tenant).or_default();
    list.retain(|w| !w.dead.load(Ordering::SeqCst));
    let usable = |w: &&Arc<Worker>| !w.spare || (alone && !w.retired.load(Ordering::SeqCst));
    // Ordinary workers first at equal load.
    let least = list
        .iter()
        .filter(usable)
        .min_by_key(|w| (w.load(), w.spare))
        .cloned();
    let placed = |w: Arc<Worker>| {
        w.placed.fetch_add(1, Ordering::SeqCst);
        Ok(w)
    };
    if let Some(w) = least.as_ref().filter(|w| w.load() == 0) {
        return placed(w.clone());
    }
    // Retired spares still alive count: an account cannot pile them up by
    // being alone and not alone in turn.
    let spares = list.iter().filter(|w| w.spare).count();
    let ordinary = list.len() - spares;
    let below_max = shared.live_workers.load(Ordering::SeqCst) < shared.cfg.max_workers;
    let spawn = if below_max && ordinary < shared.cfg.workers_per_account {
        Some(false)
    } else if below_max
        && alone
        && spares < shared.spares_per_account
        && !shared.spares_refused.load(Ordering::SeqCst)
    {
        Some(true)
    } else {
        None
    };
    let spare = match (spawn, &least) {
        (None, Some(w)) => return placed(w.clone()),
        (spawn, _) => spawn.unwrap_or(false),
    };
    let w = match spawn_worker(shared, tenant, spare).await {
        Ok(w) => w,
        Err(e) => {
            // No spare after all: the least-loaded ordinary one.
            return match least {
                Some(w) if spare => placed(w),
                _ => Err(e),
            };
        }
    };
    workers.entry(tenant).or_default().push(w.clone());
    if spare {
        let mut all = shared.spares.locked();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&w));
        drop(all);
        // Another account may have come while it started: it is retired
        // then, and the run goes to an ordinary worker after all.
        if shared.per_account.locked().len() > 1 {
            retire_spares(shared);
        }
        if let Some(ordinary) = least.filter(|_| w.retired.load(Ordering::SeqCst)) {
            return placed(ordinary);
        }
    }
    placed(w)
}

async fn spawn_worker(
    shared: &Arc<Shared>,
    tenant: u64,
    spare: bool,
) -> Result<Arc<Worker>, String> {
    // Two pipes, one per direction: reading one side's frames never wakes a
    // thread that waits to read the other's (as one socket's shared wait
    // queue does), and a pipe moves a frame without a socket buffer.
    let (to_worker_rd, to_worker_wr) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (from_worker_rd, from_worker_wr) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let mut command = shared.cfg.command();
    command
        .stdin(std::process::Stdio::from(to_worker_rd))
        .stdout(std::process::Stdio::from(from_worker_wr))
        // Not the server's stderr: a worker must not be able to write into
        // the server's logs (and may not write to a file at all).
        .stderr(std::process::Stdio::null());
    // Started from the pool's own thread (see `ProcessPool::new`); the
    // child's ends of the pipes are closed with `command` once it has
    // started, so that either side sees the other go away.
    let child = shared
        .spawner
        .spawn(async move { command.spawn() })
        .await
        .map_err(|e| format!("could not start a worker: {e}"))?
        .map_err(|e| format!("could not start a worker: {e}"))?;
    let pid = child.id();
    let wr = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(to_worker_wr))
        .map_err(|e| format!("worker channel: {e}"))?;
    let rd = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(from_worker_rd))
        .map_err(|e| format!("worker channel: {e}"))?;
    let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
    let mut buf = Vec::new();
    let hello = tokio::time::timeout(
        Duration::from_secs(10),
        proto::read::<_, FromWorker>(&mut rd, &mut buf),
    )
    .await;
    let mut child = child;
    match hello {
        Ok(Ok(FromWorker::Ready { .. })) => {
            thetazero_core::telemetry::global().worker_starts.inc();
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match other {
                Ok(Ok(FromWorker::Refused { reason })) => {
                    format!("the worker refused to start: {reason}")
                }
                Ok(Err(e)) => format!("the worker did not start: {e}"),
                _ => "the worker did not start in time".into(),
            });
        }
    }
    let out = Arc::new(Outbox {
        half: wr,
        queue: Mutex::new(std::collections::VecDeque::new()),
        wake: tokio::sync::Notify::new(),
        broken: AtomicBool::new(false),
    });
    let worker = Arc::new(Worker {
        tenant,
        pid,
        spare,
        retired: AtomicBool::new(false),
        retired_notify: tokio::sync::Notify::new(),
        placed: AtomicUsize::new(0),
        out: out.clone(),
        runs: Mutex::new(HashMap::new()),
        child: Mutex::new(Some(child)),
        dead: AtomicBool::new(false),
        cause: Mutex::new(None),
        last_active: Mutex::new(Instant::now()),
        on_thread: Mutex::new(None),
        last_beat: Mutex::new(Instant::now()),
        memory_stopped: Mutex::new(None),
        idle_since: Mutex::new(None),
    });
    shared.live_workers.fetch_add(1, Ordering::SeqCst);
    shared.pids.locked().insert(pid, tenant);
    tokio::spawn(drain_outbox(out));
    tokio::spawn(read_worker(shared.clone(), worker.clone(), rd, buf));
    tokio::spawn(reap_when_idle(shared.clone(), worker.clone()));
    Ok(worker)
}

/// Handles everything a worker sends until its channel closes or it sends
/// something malformed; then ends the process and every run on it.
async fn read_worker(
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    mut rd: tokio::io::BufReader<tokio::net::unix::pipe::Receiver>,
    mut buf: Vec<u8>,
) {
    loop {
        let message = proto::read::<_, FromWorker>(&mut rd, &mut buf).await;
        let run_of = |run: u64| worker.runs.locked().get(&run).cloned();
        match message {
            Ok(FromWorker::Call { run, call, f, args }) => {
                // A run that already ended here gets no call performed.
                let Some(state) = run_of(run) else {
                    continue;
                };
                let w = worker.clone();
                let broker = state.broker.clone();
                // Brokers run on their own runtime: a burst of calls must not
                // delay any account's watchdog or channel.
                let task = shared.brokers.spawn(async move {
                    let reply = broker.call(f, args).await;
                    send_reply(&w, &broker, run, call, reply);
                });
                state.calls.locked().push(task.abort_handle());
            }
            Ok(FromWorker::Started { run, ago_us }) => {
                // Once: a worker cannot move a deadline by starting again,
                // nor to before the server sent the run.
                if let Some(state) = run_of(run) {
                    if !state.started.swap(true, Ordering::SeqCst) {
                        let at = Instant::now()
                            .checked_sub(Duration::from_micros(ago_us))
                            .map_or(state.sent, |at| at.max(state.sent));
                        state.queued.locked().started();
                        state.clock.restart(at);
                        state.started_notify.notify_one();
                    }
                }
            }
            Ok(FromWorker::Paused { run, paused }) => {
                if let Some(state) = run_of(run) {
                    state.clock.set_reported_pause(paused);
                }
            }
            Ok(FromWorker::Beat { on_thread, for_ms }) => {
                let now = Instant::now();
                *worker.last_beat.locked() = now;
                *worker.on_thread.locked() = on_thread.map(|run| {
                    (
                        run,
                        now.checked_sub(Duration::from_millis(for_ms))
                            .unwrap_or(now),
                    )
                });
                let mut idle = worker.idle_since.locked();
                match on_thread {
                    Some(_) => *idle = None,
                    None => {
                        idle.get_or_insert(now);
                    }
                }
            }
            Ok(FromWorker::Stopped { run }) | Ok(FromWorker::Ended { run, .. })
                if run_of(run).is_none() =>
            {
                // Already ended here (a stop confirmed, then its report).
            }
            Ok(FromWorker::Stopped { run }) => {
                let state = worker.runs.locked().remove(&run);
                if let Some(state) = state {
                    state.end(Ending::Stopped);
                }
            }
            Ok(FromWorker::Ended { run, report }) => {
                let state = worker.runs.locked().remove(&run);
                *worker.last_active.locked() = Instant::now();
                if let Some(state) = state {
                    state.end(Ending::Report(report));
                }
            }
            Ok(FromWorker::Ready { .. } | FromWorker::Refused { .. }) => {
                tracing_garbage(&worker, "a second greeting");
                break;
            }
            Err(_) => break,
        }
    }
    worker.stop(None);
    let child = worker.child.locked().take();
    if let Some(mut child) = child {
        // Killed above; reaping takes a moment and must not hold a thread
        // of the pool's runtime. The pid leaves the registry once reaped.
        let _ = child.kill();
        let reaped = tokio::task::spawn_blocking(move || child.wait());
        let _ = reaped.await;
    }
    shared.pids.locked().remove(&worker.pid);
    shared.live_workers.fetch_sub(1, Ordering::SeqCst);
    let runs: Vec<_> = worker.runs.locked().drain().collect();
    for (_, state) in runs {
        state.end(Ending::WorkerGone);
    }
    let mut workers = shared.workers.lock().await;
    if let Some(list) = workers.get_mut(&worker.tenant) {
        list.retain(|w| !Arc::ptr_eq(w, &worker));
        if list.is_empty() {
            workers.remove(&worker.tenant);
        }
    }
}

/// Sends a call's reply, held against the run's memory limit until it is
/// written: a worker that does not read, or a burst of large replies, cannot
/// make the server hold more than the run may.
fn send_reply(worker: &Worker, broker: &Arc<Broker>, run: u64, call: u32, reply: CallReply) {
    let Ok(bytes) = proto::encode(&ToWorker::Reply { run, call, reply }) else {
        return;
    };
    let size = bytes.len();
    let frame = if broker.hold(size) {
        let held = broker.clone();
        OutFrame {
            bytes,
            written: Some(Box::new(move || held.release(size))),
        }
    } else {
        let refused = CallReply::memory_limit_reached();
        match proto::encode(&ToWorker::Reply {
            run,
            call,
            reply: refused,
        }) {
            Ok(bytes) => OutFrame {
                bytes,
                written: None,
            },
            Err(_) => return,
        }
    };
    worker.out.send(frame);
}

fn tracing_garbage(worker: &Worker, what: &str) {
    // The worker may be compromised; its runs end and it is replaced.
    eprintln!(
        "thetazero: sandbox worker {} sent {what}; ending it",
        worker.pid
    );
}

/// Another account has a run in flight: every spare worker takes no new
/// run, its engine thread moves to the idle scheduling class at once (so
/// the runs it still holds use only CPU time no one else wants), and it
/// ends once it holds none.
fn retire_spares(shared: &Shared) {
    let spares = std::mem::take(&mut *shared.spares.locked());
    for w in spares.iter().filter_map(Weak::upgrade) {
        if w.retired.swap(true, Ordering::SeqCst) {
            continue;
        }
        {
            // While the child is held unreaped its pid cannot name another
            // process; a worker already gone needs no demotion.
            let child = w.child.locked();
            if child.is_some() && !w.dead.load(Ordering::SeqCst) {
                if let Err(e) = crate::confine::idle_class(w.pid) {
                    if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) {
                        // It keeps the ordinary class until its runs end; no
                        // spare is started again, since none could be
                        // retired this way.
                        shared.spares_refused.store(true, Ordering::SeqCst);
                        eprintln!(
                            "thetazero: could not move spare sandbox worker {} to the idle scheduling class ({e}); no more spares will be started",
                            w.pid
                        );
                    }
                }
            }
        }
        w.retired_notify.notify_one();
    }
}

/// Ends a worker once it has had no run for the idle timeout, and a
/// retired spare once it holds no run.
async fn reap_when_idle(shared: Arc<Shared>, worker: Arc<Worker>) {
    let idle = shared.cfg.idle_timeout;
    loop {
        if worker.retired.load(Ordering::SeqCst) {
            tokio::time::sleep(RETIRED_LOOK).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = worker.retired_notify.notified() => {}
            }
        }
        if worker.dead.load(Ordering::SeqCst) {
            return;
        }
        let retired = worker.retired.load(Ordering::SeqCst);
        let quiet = worker.last_active.locked().elapsed() >= idle;
        if !quiet && !retired {
            continue;
        }
        // Taken out of the list first, under its lock, so no run is placed
        // on it while it goes.
        let mut workers = shared.workers.lock().await;
        if worker.load() == 0 {
            if let Some(list) = workers.get_mut(&worker.tenant) {
                list.retain(|w| !Arc::ptr_eq(w, &worker));
            }
            drop(workers);
            worker.stop(None);
            return;
        }
    }
}

/// Runs one job on a worker of its tenant, and stops it from outside when
/// the engine does not: a kill that does not land within `kill_grace`, or a
/// deadline passed by more than `watchdog_grace`, ends the whole worker.
async fn supervise(shared: &Arc<Shared>, job: Job) -> Result<ExecutionReport, String> {
    // A run its worker never announced as started made no host call and
    // left no report (a worker announces a start before any other frame of
    // the run, and within a sentinel beat): when that worker is ended it
    // goes to a fresh worker instead of failing. A worker ended because
    // of another run says nothing about this one; a worker that ended on its
    // own (a crash, garbage, silence) counts against the run's attempts.
    let mut unexplained = 0;
    for _ in 0..MAX_PLACEMENTS {
        match supervise_once(shared, &job).await? {
            Attempt::Done(report) => return Ok(*report),
            Attempt::NeverStarted { another_runs_fault } => {
                if !another_runs_fault {
                    unexplained += 1;
                    if unexplained >= MAX_ATTEMPTS {
                        break;
                    }
                }
            }
        }
    }
    Err("the run's workers kept ending before it could start".into())
}

/// Workers that ended on their own before a run started, before it fails.
const MAX_ATTEMPTS: usize = 3;
/// Workers a run may be placed on in all.
const MAX_PLACEMENTS: usize = 64;

enum Attempt {
    Done(Box<ExecutionReport>),
    /// The worker ended before it took the run.
    NeverStarted {
        another_runs_fault: bool,
    },
}

/// A run counted in its worker's load (`Worker::placed`) from `worker_for`
/// until it is in `Worker::runs`, or given up on whatever path.
struct Placement<'a>(&'a Worker);

impl Drop for Placement<'_> {
    fn drop(&mut self) {
        self.0.placed.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn supervise_once(shared: &Arc<Shared>, job: &Job) -> Result<Attempt, String> {
    let worker = worker_for(shared, job.code_cache_scope).await?;
    let placement = Placement(&worker);
    let run = shared.next_run.fetch_add(1, Ordering::SeqCst);
    let limit = Duration::from_millis(job.limits.cpu_time_ms);
    let started = Instant::now();
    let clock = RunClock::mirror(started, limit);
    let signal_worker = Arc::downgrade(&worker);
    let signal_clock = clock.clone();
    let broker = Arc::new(
        Broker::new(
            job.host.clone(),
            shared.network.clone(),
            job.rules(),
            clock.clone(),
            Box::new(move |waiting| {
                // The server's copy pauses only while its broker waits for a
                // human, whatever the worker reports.
                signal_clock.approval(waiting);
                if let Some(w) = signal_worker.upgrade() {
                    w.send(&ToWorker::Approval { run, waiting });
                }
            }),
        )
        .counting_calls(),
    );
    let (done_tx, mut done_rx) = oneshot::channel();
    let state = Arc::new(RunState {
        broker: broker.clone(),
        clock: clock.clone(),
        sent: started,
        started: AtomicBool::new(false),
        started_notify: tokio::sync::Notify::new(),
        queued: Mutex::new(thetazero_core::telemetry::global().queued()),
        done: Mutex::new(Some(done_tx)),
        calls: Mutex::new(Vec::new()),
    });
    worker.runs.locked().insert(run, state.clone());
    drop(placement);
    *worker.last_active.locked() = Instant::now();
    let start = proto::encode(&ToWorker::Start {
        run,
        spec: Box::new(job.spec()),
    });
    let Ok(start) = start else {
        worker.runs.locked().remove(&run);
        return Err("the run is too large to send to a worker".into());
    };
    if worker.dead.load(Ordering::SeqCst) || !worker.send_frame(start) {
        // Ended before the run reached it: the run goes to another worker,
        // counted against its attempts unless another run's stop (or the
        // memory guard's) ended this one.
        worker.stop(None);
        worker.runs.locked().remove(&run);
        let another_runs_fault = worker.cause.locked().as_ref().is_some_and(|c| c.run != run)
            || worker.memory_stopped.locked().is_some();
        return Ok(Attempt::NeverStarted { another_runs_fault });
    }

    let cause = |reason: String| StopCause {
        run,
        execution_id: job.execution_id,
        reason,
    };
    let grace = shared.cfg.watchdog_grace;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut cancelled = false;
    let ending = loop {
        let kill_timer = async {
            match kill_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        // The watchdog: once the run is past its deadline by the grace, its
        // worker is ended if the engine thread is still in this run (the
        // interrupt did not work) or the worker has gone silent. A run past
        // its deadline that waits for the engine thread behind another run
        // of its account is not stuck: the interrupt ends it as soon as it
        // is polled again.
        let watchdog = async {
            // Before the engine takes the run: only a worker gone silent.
            while !state.started.load(Ordering::SeqCst) {
                let notified = state.started_notify.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(WATCH_TICK * 10) => {}
                }
                if worker.silent() {
                    return;
                }
            }
            clock.passed().await;
            tokio::time::sleep(grace).await;
            loop {
                // Past the deadline, a worker that is well ends the run the
                // moment its engine thread is free; so the run is stuck if
                // it holds the thread, if the thread has been idle, or if the
                // worker has gone silent.
                if worker.holds_thread(run, grace) || worker.idle_for(grace) || worker.silent() {
                    return;
                }
                tokio::time::sleep(WATCH_TICK).await;
                clock.passed().await;
            }
        };
        tokio::select! {
            biased;
            ending = &mut done_rx => break ending.unwrap_or(Ending::WorkerGone),
            _ = job.cancel.cancelled(), if !cancelled => {
                cancelled = true;
                worker.send(&ToWorker::Cancel { run });
                kill_at = Some(tokio::time::Instant::now() + shared.cfg.kill_grace);
            }
            _ = kill_timer => {
                thetazero_core::telemetry::global().worker_forced_stop("kill");
                worker.stop(Some(cause(format!(
                    "execution {} did not stop within {} ms of a kill",
                    job.execution_id,
                    shared.cfg.kill_grace.as_millis()
                ))));
                kill_at = None;
            }
            _ = watchdog => {
                thetazero_core::telemetry::global().worker_forced_stop("deadline");
                worker.stop(Some(cause(format!(
                    "execution {} ran more than {} ms past its deadline of {} ms",
                    job.execution_id,
                    grace.as_millis(),
                    job.limits.cpu_time_ms
                ))));
                // The reader ends the run once the process is gone.
                break (&mut done_rx).await.unwrap_or(Ending::WorkerGone);
            }
        }
    };
    let took = started.elapsed();
    if matches!(ending, Ending::WorkerGone)
        && !state.started.load(Ordering::SeqCst)
        && !cancelled
        && !job.cancel.is_cancelled()
    {
        state.end(Ending::WorkerGone);
        // Only a stop that names another run clears this one: a run the
        // memory guard's stop found unannounced may have been the one that
        // grew (it counts against the run's attempts).
        let another_runs_fault = worker.cause.locked().as_ref().is_some_and(|c| c.run != run);
        return Ok(Attempt::NeverStarted { another_runs_fault });
    }
    let mut report = match ending {
        Ending::Report(report) => {
            let mut report = *report;
            hold_to_limits(&mut report, &job.limits);
            report
        }
        Ending::Stopped => {
            let mut r = ExecutionReport::worker_ended(
                took,
                Status::Killed,
                None,
                ErrorInfo::new("Killed", "the execution was killed"),
            );
            r.enforcement = Some(Enforcement::Cooperative);
            r.violation_count = 0;
            r
        }
        Ending::WorkerGone => {
            let memory = worker.memory_stopped.locked().clone();
            match memory {
                Some(detail) if !cancelled => ExecutionReport::worker_ended(
                    took,
                    Status::LimitExceeded,
                    Some((LimitKind::Memory, detail.clone())),
                    ErrorInfo::new("LimitExceeded", detail),
                ),
                _ => gone_report(
                    job,
                    run,
                    took,
                    cancelled,
                    worker.cause.locked().clone(),
                    &clock,
                ),
            }
        }
    };
    report.tee_mode = TEE_PROCESS_SANDBOX.to_string();
    // The server's own view decides what the worker cannot be trusted with.
    if report.status == Status::Completed && clock.expired() {
        report.status = Status::TimedOut;
        report.output = serde_json::Value::Null;
        report.limit = Some(LimitKind::CpuTime);
        report.limit_detail = Some(format!("deadline of {} ms reached", job.limits.cpu_time_ms));
        report.error = Some(ErrorInfo::new(
            "LimitExceeded",
            format!("deadline of {} ms reached", job.limits.cpu_time_ms),
        ));
        report.was_terminated = true;
        report.enforcement = Some(Enforcement::Cooperative);
        report.violation_count += 1;
    }
    if let Some((limit, detail)) = broker.overrun() {
        if !matches!(report.status, Status::Killed | Status::LimitExceeded) {
            report.status = Status::LimitExceeded;
            report.output = serde_json::Value::Null;
            report.limit = Some(limit);
            report.error = Some(ErrorInfo::new("LimitExceeded", detail.clone()));
            report.limit_detail = Some(detail);
            report.was_terminated = true;
            report.enforcement = Some(Enforcement::Cooperative);
            report.violation_count += 1;
        }
    }
    report.resource_usage.api_calls = report.resource_usage.api_calls.max(broker.api_calls());
    report.violation_count = report.violation_count.max(broker.denied());
    state.end(Ending::WorkerGone);
    Ok(Attempt::Done(Box::new(report)))
}

/// Holds a worker's report to the run's limits: a worker may be compromised,
/// so nothing it reports is larger than the run could have made.
fn hold_to_limits(report: &mut ExecutionReport, limits: &thetazero_core::limits::Limits) {
    fn cut(s: &mut String, max: usize) {
        if s.len() > max {
            let mut at = max;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
        }
    }
    if report.output.to_string().len() as u64 > limits.max_output_bytes {
        let detail = format!(
            "output above the limit of {} bytes",
            limits.max_output_bytes
        );
        report.status = Status::LimitExceeded;
        report.limit = Some(LimitKind::OutputSize);
        report.output = serde_json::Value::Null;
        report.error = Some(ErrorInfo::new("LimitExceeded", detail.clone()));
        report.limit_detail = Some(detail);
        report.was_terminated = true;
        report.violation_count += 1;
    }
    let mut bytes = 0u64;
    let mut kept = 0usize;
    for entry in &report.logs {
        bytes += entry.message.len() as u64;
        if kept as u64 >= limits.max_log_entries || bytes > limits.max_log_bytes {
            break;
        }
        kept += 1;
    }
    report.logs.truncate(kept);
    // Only a completed run has an output: the server screens an output
    // whatever the status, but keeps none from a run that did not complete.
    if report.status != Status::Completed {
        report.output = serde_json::Value::Null;
    }
    report.host_call_audit.truncate(MAX_REPORTED_CALLS);
    for row in &mut report.host_call_audit {
        // The bridge's own names only: the function is shown as it is.
        let known = [HostFn::Log, HostFn::WriteResult]
            .into_iter()
            .chain(HostFn::ASYNC)
            .any(|f| f.name() == row.function);
        if !known {
            row.function = "unknown".into();
        }
        cut(&mut row.args_summary, 1024);
    }
    if let Some(e) = report.error.as_mut() {
        cut(&mut e.kind, 64);
        cut(&mut e.message, 8192);
        if let Some(stack) = e.stack.as_mut() {
            cut(stack, 8192);
        }
        // The host's and the sandbox's own codes only.
        if e.code
            .as_deref()
            .is_some_and(|c| !crate::report::known_code(c))
        {
            e.code = None;
        }
    }
    if let Some(d) = report.limit_detail.as_mut() {
        cut(d, 1024);
    }
}

/// Host-call rows a report may list (the engine keeps at most this many).
const MAX_REPORTED_CALLS: usize = 2048;

/// The report of a run whose worker process is gone.
fn gone_report(
    job: &Job,
    run: u64,
    took: Duration,
    cancelled: bool,
    cause: Option<StopCause>,
    clock: &RunClock,
) -> ExecutionReport {
    let ours = cause.as_ref().is_some_and(|c| c.run == run);
    // A run that was asked to stop is stopped, whoever's stop ended the
    // worker: the kill is confirmed by the process being gone.
    if cancelled || job.cancel.is_cancelled() {
        let mut r = ExecutionReport::worker_ended(
            took,
            Status::Killed,
            None,
            ErrorInfo::new("Killed", "the execution was killed"),
        );
        r.violation_count = 0;
        return r;
    }
    if ours || clock.expired() {
        let detail = format!(
            "deadline of {} ms reached; the engine did not stop, so its worker process was ended",
            job.limits.cpu_time_ms
        );
        return ExecutionReport::worker_ended(
            took,
            Status::TimedOut,
            Some((LimitKind::CpuTime, detail.clone())),
            ErrorInfo::new("LimitExceeded", detail),
        );
    }
    let (message, cause_id) = match &cause {
        Some(c) => (
            format!(
                "the worker process running this execution was ended because {}",
                c.reason
            ),
            Some(c.execution_id),
        ),
        None => (
            "the worker process running this execution ended unexpectedly".to_string(),
            None,
        ),
    };
    let mut error = ErrorInfo::new("WorkerStopped", message);
    error.code = Some("WORKER_STOPPED".into());
    let mut r = ExecutionReport::worker_ended(took, Status::Failed, None, error);
    r.enforcement = None;
    r.worker_stopped = Some(WorkerStopNote {
        cause_execution_id: cause_id,
        reason: cause
            .map(|c| c.reason)
            .unwrap_or_else(|| "the worker process ended unexpectedly".into()),
    });
    r
}
