//! The worker process: confines itself, then runs many runs of one account on one engine thread, each suspended run holding only its QuickJS heap. Every counted host call goes to the server over its channel (two pipes the server passes as stdin and stdout); the worker performs none itself and holds nothing but its runs (no file, socket, key or environment).
//!
//! ```text
//! reader thread ──frames──▶ engine thread (current-thread runtime, one task per run)
//!   └─ Cancel sets the run's flag at once            └─ frames ──▶ server (written by the thread that has them)
//! ```
//!
//! The reader is its own thread so that a kill reaches a run spinning on the
//! engine thread: the interrupt handler reads the flag the reader sets.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::alloc::AllocStats;
use crate::broker::{CallArgs, CallReply, Reply};
use crate::clock::{OnThread, RunClock};
use crate::confine::{self, ProcessLimits};
use crate::engine::{self, Bridge};
use crate::host::HostFn;
use crate::job::CancelHandle;
use crate::proto::{self, FromWorker, ToWorker};
use crate::Locked;

/// The worker's end of the channel for writing: whichever thread has a frame
/// writes it at once (the server always reads, so a write does not wait
/// long), instead of handing it to another thread first.
pub(crate) struct Sink(Mutex<std::fs::File>);

impl Sink {
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        self.0.locked().write_all(frame)
    }
}

/// A run's side of the channel: its pending host calls.
pub(crate) struct RemoteRun {
    run: u64,
    out: Arc<Sink>,
    pending: Mutex<HashMap<u32, oneshot::Sender<CallReply>>>,
    next: AtomicU32,
    /// The run's memory accounting, once the engine has it: replies waiting
    /// to reach the engine are charged to it.
    alloc: std::sync::OnceLock<Arc<AllocStats>>,
}

impl RemoteRun {
    fn new(run: u64, out: Arc<Sink>) -> RemoteRun {
        RemoteRun {
            run,
            out,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU32::new(0),
            alloc: std::sync::OnceLock::new(),
        }
    }

    fn failed(code: &str, message: &str) -> CallReply {
        CallReply {
            allowed: false,
            denied: false,
            duration_ms: 0.0,
            reply: Reply::Fail {
                code: code.into(),
                message: message.into(),
            },
            charged: 0,
        }
    }

    /// Sends one call to the server's broker and waits for its reply.
    pub(crate) async fn call(self: Arc<Self>, f: HostFn, args: CallArgs) -> CallReply {
        let call = self.next.fetch_add(1, Ordering::Relaxed);
        let frame = match proto::encode(&FromWorker::Call {
            run: self.run,
            call,
            f,
            args,
        }) {
            Ok(frame) => frame,
            Err(_) => return Self::failed("VALUE_TOO_LARGE", "the call's arguments are too large"),
        };
        let (tx, rx) = oneshot::channel();
        self.pending.locked().insert(call, tx);
        if self.out.send(&frame).is_err() {
            return Self::failed("HOST_UNAVAILABLE", "the host is unavailable");
        }
        rx.await
            .unwrap_or_else(|_| Self::failed("HOST_UNAVAILABLE", "the host is unavailable"))
    }

    /// The engine's accounting for this run.
    pub(crate) fn set_alloc(&self, alloc: Arc<AllocStats>) {
        let _ = self.alloc.set(alloc);
    }

    /// Charges a reply that arrived for this run until the engine takes it;
    /// false when it does not fit in the run's memory limit.
    fn charge_reply(&self, bytes: usize) -> bool {
        self.alloc.get().is_none_or(|a| a.charge(bytes))
    }

    fn settle(&self, call: u32, reply: CallReply) {
        let tx = self.pending.locked().remove(&call);
        if let Some(tx) = tx {
            let _ = tx.send(reply);
        }
    }
}

/// Reads one frame with blocking I/O (the worker's reader thread).
fn read_frame(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<(ToWorker, usize), proto::FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(proto::FrameError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > proto::MAX_FRAME {
        return Err(proto::FrameError::TooLarge(len));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    let message =
        serde_json::from_slice(buf).map_err(|e| proto::FrameError::Malformed(e.to_string()));
    if buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
    message.map(|m| (m, len))
}

/// Parses the worker's arguments: `--check`, `--address-space BYTES`.
fn limits_from(args: &[String]) -> ProcessLimits {
    let mut limits = ProcessLimits::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--address-space" {
            if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                limits.address_space_bytes = v;
            }
        }
    }
    limits
}

/// The worker's entry point; `args` are what follows the subcommand. Returns
/// the process's exit code.
pub fn main(args: &[String]) -> i32 {
    let limits = limits_from(args);
    if args.iter().any(|a| a == "--check") {
        let probe = confine::probe(limits);
        let text = serde_json::to_string(&probe).unwrap_or_default();
        // Stdout was opened before confinement; writing to it is allowed.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        return if probe.holds() { 0 } else { 1 };
    }
    // If memory runs out, the kernel ends a worker, never the server.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let confined = confine::apply(limits);
    // The channel is two pipes the server made, stdin from it and stdout to
    // it, taken after confinement closed everything above stderr.
    let Some((reader, mut writer)) = confine::take_channel() else {
        return 3;
    };
    let hello = match &confined {
        Ok(_) => FromWorker::Ready {
            pid: std::process::id(),
        },
        Err(e) => FromWorker::Refused {
            reason: e.to_string(),
        },
    };
    if let Ok(frame) = proto::encode(&hello) {
        let _ = writer.write_all(&frame);
    }
    if confined.is_err() {
        return 4;
    }

    let out = Arc::new(Sink(Mutex::new(writer)));

    // Inbound frames: the reader thread makes each run's cancel handle and
    // sets cancel flags itself, so a kill lands while the engine thread is
    // busy; everything goes on to the engine thread in order.
    let shared = Arc::new(Shared {
        cancels: Mutex::new(HashMap::new()),
        remotes: Mutex::new(HashMap::new()),
        on_thread: OnThread::default(),
        out: out.clone(),
    });
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Option<(ToWorker, CancelHandle)>>();
    let reader_shared = shared.clone();
    let reader_thread = std::thread::Builder::new()
        .name("worker-reader".into())
        .spawn(move || read_loop(reader, &reader_shared, in_tx));
    if reader_thread.is_err() {
        return 3;
    }
    // The sentinel reports which run holds the engine thread, so that the
    // server's watchdog ends this process only for a run that is stuck.
    let sentinel_shared = shared.clone();
    let sentinel = std::thread::Builder::new()
        .name("worker-sentinel".into())
        .spawn(move || {
            let mut last: Option<(Option<u64>, Instant)> = None;
            loop {
                std::thread::sleep(BEAT);
                let on = *sentinel_shared.on_thread.locked();
                let run = on.map(|(run, _)| run);
                // Beat while a run holds the thread or it just changed hands,
                // and every IDLE_BEAT otherwise, as a sign of life.
                let due = match last {
                    None => true,
                    Some((prev, at)) => run.is_some() || prev != run || at.elapsed() >= IDLE_BEAT,
                };
                if !due {
                    continue;
                }
                last = Some((run, Instant::now()));
                sentinel_shared.send(&FromWorker::Beat {
                    on_thread: run,
                    for_ms: on.map_or(0, |(_, since)| since.elapsed().as_millis() as u64),
                });
            }
        });
    if sentinel.is_err() {
        return 3;
    }

    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return 3;
    };
    rt.block_on(serve(&mut in_rx, shared));
    0
}

/// How often the sentinel looks at the engine thread.
const BEAT: Duration = Duration::from_millis(20);
/// How often it beats while the thread is idle.
const IDLE_BEAT: Duration = Duration::from_millis(500);

struct Shared {
    cancels: Mutex<HashMap<u64, CancelHandle>>,
    /// Every run this worker holds, for the reader to charge replies to.
    remotes: Mutex<HashMap<u64, Arc<RemoteRun>>>,
    on_thread: OnThread,
    out: Arc<Sink>,
}

impl Shared {
    fn send(&self, message: &FromWorker) {
        if let Ok(frame) = proto::encode(message) {
            let _ = self.out.send(&frame);
        }
    }
}

fn read_loop(
    reader: std::fs::File,
    shared: &Shared,
    in_tx: mpsc::UnboundedSender<Option<(ToWorker, CancelHandle)>>,
) {
    let mut reader = std::io::BufReader::with_capacity(64 << 10, reader);
    let mut buf = Vec::new();
    loop {
        let (message, frame_len) = match read_frame(&mut reader, &mut buf) {
            Ok(m) => m,
            Err(_) => {
                // The server went away or spoke garbage: stop every run.
                for c in shared.cancels.locked().values() {
                    c.cancel();
                }
                let _ = in_tx.send(None);
                return;
            }
        };
        // A reply waits in memory until the engine thread takes it: it is
        // charged to its run from now on, and past the run's limit it is
        // replaced by a refusal (the run has reached its limit then).
        let message = match message {
            ToWorker::Reply { run, call, reply } => {
                let remote = shared.remotes.locked().get(&run).cloned();
                match remote {
                    Some(r) if r.charge_reply(frame_len) => ToWorker::Reply {
                        run,
                        call,
                        reply: CallReply {
                            charged: frame_len,
                            ..reply
                        },
                    },
                    Some(_) => ToWorker::Reply {
                        run,
                        call,
                        reply: CallReply {
                            allowed: true,
                            denied: false,
                            duration_ms: 0.0,
                            reply: Reply::Fail {
                                code: "LIMIT_EXCEEDED".into(),
                                message: "memory limit reached".into(),
                            },
                            charged: 0,
                        },
                    },
                    None => ToWorker::Reply { run, call, reply },
                }
            }
            other => other,
        };
        let cancel = match &message {
            ToWorker::Start { run, .. } => {
                let c = CancelHandle::new();
                shared.cancels.locked().insert(*run, c.clone());
                c
            }
            ToWorker::Cancel { run } => {
                let c = shared.cancels.locked().get(run).cloned();
                if let Some(c) = &c {
                    c.cancel();
                    // Not on the engine thread: it runs no more code, so the
                    // stop is certain now. On the thread: the interrupt
                    // handler ends it, or the server's watchdog does.
                    let on = *shared.on_thread.locked();
                    if on.map(|(r, _)| r) != Some(*run) {
                        shared.send(&FromWorker::Stopped { run: *run });
                    }
                }
                c.unwrap_or_default()
            }
            _ => CancelHandle::new(),
        };
        if in_tx.send(Some((message, cancel))).is_err() {
            return;
        }
    }
}

struct Slot {
    remote: Arc<RemoteRun>,
    clock: Option<Arc<RunClock>>,
}

type Slots = Arc<Mutex<HashMap<u64, Slot>>>;

async fn serve(
    in_rx: &mut mpsc::UnboundedReceiver<Option<(ToWorker, CancelHandle)>>,
    shared: Arc<Shared>,
) {
    let slots: Slots = Arc::default();
    let mut spare = engine::prepare().await;
    while let Some(Some((message, cancel))) = in_rx.recv().await {
        match message {
            ToWorker::Start { run, spec } => {
                let remote = Arc::new(RemoteRun::new(run, shared.out.clone()));
                shared.remotes.locked().insert(run, remote.clone());
                slots.locked().insert(
                    run,
                    Slot {
                        remote: remote.clone(),
                        clock: None,
                    },
                );
                let ready = spare.take();
                let (shared, slots) = (shared.clone(), slots.clone());
                tokio::spawn(async move {
                    // The deadline starts when the engine first takes the run.
                    let paused_out = shared.out.clone();
                    let clock = RunClock::observed(
                        Instant::now(),
                        Duration::from_millis(spec.limits.cpu_time_ms),
                        Box::new(move |paused| {
                            if let Ok(frame) = proto::encode(&FromWorker::Paused { run, paused }) {
                                let _ = paused_out.send(&frame);
                            }
                        }),
                        run,
                        shared.on_thread.clone(),
                    );
                    if let Some(slot) = slots.locked().get_mut(&run) {
                        slot.clock = Some(clock.clone());
                    }
                    shared.send(&FromWorker::Started { run });
                    let mut report =
                        engine::run(*spec, Bridge::Remote(remote), cancel, clock, ready).await;
                    report.tee_mode = crate::report::TEE_PROCESS_SANDBOX.to_string();
                    slots.locked().remove(&run);
                    shared.remotes.locked().remove(&run);
                    shared.cancels.locked().remove(&run);
                    shared.send(&FromWorker::Ended {
                        run,
                        report: Box::new(report),
                    });
                });
                // The next run's runtime is made now, off its latency path.
                tokio::task::yield_now().await;
                spare = engine::prepare().await;
            }
            ToWorker::Reply { run, call, reply } => {
                let remote = slots.locked().get(&run).map(|s| s.remote.clone());
                if let Some(remote) = remote {
                    remote.settle(call, reply);
                }
            }
            // Set by the reader thread already.
            ToWorker::Cancel { .. } => {}
            ToWorker::Approval { run, waiting } => {
                let clock = slots.locked().get(&run).and_then(|s| s.clock.clone());
                if let Some(clock) = clock {
                    clock.approval(waiting);
                }
            }
        }
    }
}
