//! The worker process: confines itself, then runs many runs of one account on one engine thread, each suspended run holding only its QuickJS heap. Every counted host call goes to the server over its channel (two pipes the server passes as stdin and stdout); the worker performs none itself and holds nothing but its runs (no file, socket, key or environment).
//!
//! ```text
//! server ──frames──▶ engine thread (current-thread runtime, one task per run)
//!                      ├─ idle: the runtime wakes when the pipe is readable and reads it
//!                      └─ busy: the interrupt handler reads it, so a kill reaches a spinning run
//!                    sentinel thread: reads it once one run has held the engine thread 5 ms
//!        ◀──frames── written by whichever thread has them (engine, sentinel)
//! ```
//!
//! One thread reads the channel and runs the engine: a frame wakes one
//! thread, not a reader and then the engine. A run spinning in bytecode
//! still sees its kill, through the interrupt handler; one stuck in a native
//! loop is the server's watchdog's, which the sentinel thread informs, and
//! meanwhile the sentinel reads the channel so that the account's other runs
//! can still be killed (confirmed at once when they are not on the thread).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::alloc::AllocStats;
use crate::broker::{CallArgs, CallReply, Reply};
use crate::clock::{OnThread, RunClock};
use crate::confine::{self, ProcessLimits};
use crate::engine::{self, Bridge};
use crate::host::HostFn;
use crate::job::{CancelHandle, RunSpec};
use crate::proto::{self, FromWorker, ToWorker};
use crate::Locked;

/// The worker's end of the channel for writing: whichever thread has a frame
/// writes it at once (the server always reads, so a write does not wait
/// long), instead of handing it to another thread first.
pub(crate) struct Sink {
    pipe: Mutex<std::fs::File>,
    /// Runs the engine took that the server has not heard of yet, and when:
    /// each is announced in the same write as the next frame, or when the
    /// engine thread goes idle. A run that ends at once then costs the
    /// server one wake-up, not two.
    unannounced: Mutex<Vec<(u64, Instant)>>,
}

impl Sink {
    fn new(pipe: std::fs::File) -> Sink {
        Sink {
            pipe: Mutex::new(pipe),
            unannounced: Mutex::new(Vec::new()),
        }
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        let mut pipe = self.pipe.locked();
        match self.announcements() {
            Some(mut all) => {
                all.extend_from_slice(frame);
                pipe.write_all(&all)
            }
            None => pipe.write_all(frame),
        }
    }

    /// The engine took `run` now; the server hears of it with the next frame.
    fn started(&self, run: u64) {
        self.unannounced.locked().push((run, Instant::now()));
    }

    /// Writes the announcements still held, if any.
    fn flush(&self) {
        let mut pipe = self.pipe.locked();
        if let Some(all) = self.announcements() {
            let _ = pipe.write_all(&all);
        }
    }

    /// The frames announcing every run still unannounced; called with the
    /// pipe locked, so that they precede any later frame of their runs.
    fn announcements(&self) -> Option<Vec<u8>> {
        let pending = std::mem::take(&mut *self.unannounced.locked());
        if pending.is_empty() {
            return None;
        }
        let mut all = Vec::new();
        for (run, at) in pending {
            let ago_us = at.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
            if let Ok(frame) = proto::encode(&FromWorker::Started { run, ago_us }) {
                all.extend_from_slice(&frame);
            }
        }
        Some(all)
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
    /// The channel from the server, which the run's interrupt handler reads
    /// while the run holds the engine thread.
    inbox: Weak<Inbox>,
}

impl RemoteRun {
    fn new(run: u64, out: Arc<Sink>, inbox: Weak<Inbox>) -> RemoteRun {
        RemoteRun {
            run,
            out,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU32::new(0),
            alloc: std::sync::OnceLock::new(),
            inbox,
        }
    }

    /// Called by the interrupt handler while this run holds the engine
    /// thread: reads what the server sent meanwhile (a kill above all), at
    /// most once per `POLL_EVERY`.
    pub(crate) fn poll_channel(&self) {
        if let Some(inbox) = self.inbox.upgrade() {
            inbox.poll_from_interrupt();
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

/// Screens a log entry inside the worker, as the server would: `Some(why)`
/// refuses it. The server screens every entry again when the run ends.
pub type LogScreen = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

static LOG_SCREEN: std::sync::OnceLock<LogScreen> = std::sync::OnceLock::new();

/// This process's log screen, where its binary gave one.
pub(crate) fn log_screen() -> Option<&'static LogScreen> {
    LOG_SCREEN.get()
}

/// [`main`] with a log screen, which spares each log entry a round trip to
/// the server. Without one, entries are put to the server.
pub fn main_with(args: &[String], screen: Option<LogScreen>) -> i32 {
    if let Some(screen) = screen {
        let _ = LOG_SCREEN.set(screen);
    }
    main(args)
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
    // The runtime announces started runs when it goes idle; it is made
    // before the channel exists, so it finds the channel through this.
    let idle_sink: Arc<std::sync::OnceLock<Arc<Sink>>> = Arc::default();
    let confined = confine::apply(limits, || engine_runtime(idle_sink.clone()));
    // The channel is two pipes the server made, stdin from it and stdout to
    // it, taken after confinement closed everything above stderr.
    let Some((reader, mut writer)) = confine::take_channel() else {
        return 3;
    };
    let refuse = |writer: &mut std::fs::File, reason: String| {
        if let Ok(frame) = proto::encode(&FromWorker::Refused { reason }) {
            let _ = writer.write_all(&frame);
        }
        4
    };
    let rt = match confined {
        Ok((_, Ok(rt))) => rt,
        Ok((_, Err(e))) => {
            return refuse(
                &mut writer,
                format!("could not make the engine's runtime: {e}"),
            )
        }
        Err(e) => return refuse(&mut writer, e.to_string()),
    };

    let out = Arc::new(Sink::new(writer));
    let _ = idle_sink.set(out.clone());
    let shared = Arc::new(Shared {
        runs: Mutex::new(HashMap::new()),
        on_thread: OnThread::default(),
        out: out.clone(),
    });
    // The runtime's handle on the channel makes the pipe non-blocking before
    // any thread reads it.
    let receiver = {
        let _in_runtime = rt.enter();
        reader
            .try_clone()
            .and_then(tokio::net::unix::pipe::Receiver::from_file)
    };
    let Ok(receiver) = receiver else {
        return 3;
    };
    let (starts, start_rx) = mpsc::unbounded_channel();
    let inbox = Inbox::new(reader, shared.clone(), starts);
    // The sentinel reports which run holds the engine thread, so that the
    // server's watchdog ends this process only for a run that is stuck. While
    // one run holds the thread it also reads the channel, so that a kill of
    // another run of the account is confirmed even when the one on the
    // thread is in a native loop that never polls its interrupt handler.
    //
    // It is started before the worker says it is ready, and so keeps the
    // ordinary scheduling class even when the server moves the engine
    // thread (this process's main thread) to the idle class right after;
    // it waits until the greeting is written, which must be the first frame.
    let sentinel_shared = shared.clone();
    let sentinel_inbox = inbox.clone();
    let (greeted, greeting) = std::sync::mpsc::channel::<()>();
    let sentinel = std::thread::Builder::new()
        .name("worker-sentinel".into())
        .spawn(move || {
            if greeting.recv().is_err() {
                return;
            }
            let mut last: Option<(Option<u64>, Instant)> = None;
            let mut held = false;
            loop {
                // Closely while a run holds the engine thread; an idle
                // worker (most of them, when many accounts wait) costs a
                // wake-up per beat only.
                std::thread::sleep(if held { LOOK } else { BEAT });
                let on = *sentinel_shared.on_thread.locked();
                held = on.is_some();
                let run = on.map(|(run, _)| run);
                if on.is_some_and(|(_, since)| since.elapsed() >= HELD) {
                    sentinel_inbox.read_now();
                }
                // Beat every BEAT while a run holds the thread or it just
                // changed hands, and every IDLE_BEAT otherwise, as a sign of
                // life.
                let due = match last {
                    None => true,
                    Some((prev, at)) => {
                        let since = at.elapsed();
                        (since >= BEAT && (run.is_some() || prev != run)) || since >= IDLE_BEAT
                    }
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
    if let Ok(frame) = proto::encode(&FromWorker::Ready {
        pid: std::process::id(),
    }) {
        let _ = out.send(&frame);
    }
    let _ = greeted.send(());

    rt.block_on(serve(inbox, receiver, start_rx, shared));
    0
}

/// The engine thread's runtime. It waits on the channel's pipe itself, so it
/// is made before confinement: its epoll instance and wake-up descriptors
/// (and, where tokio's signal support is compiled in, a socket pair
/// connected only to itself) cannot be made once the filter is in force.
pub(crate) fn engine_runtime(
    idle_sink: Arc<std::sync::OnceLock<Arc<Sink>>>,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .on_thread_park(move || {
            if let Some(sink) = idle_sink.get() {
                sink.flush();
            }
        })
        .build()
}

/// How often the sentinel looks at the engine thread while a run holds it.
const LOOK: Duration = Duration::from_millis(5);
/// How long one run holds the engine thread before the sentinel reads the
/// channel in its stead (the run may be in a native loop that never polls
/// its interrupt handler).
const HELD: Duration = Duration::from_millis(5);
/// How often the sentinel beats while a run holds the engine thread.
const BEAT: Duration = Duration::from_millis(20);
/// How often it beats while the thread is idle.
const IDLE_BEAT: Duration = Duration::from_millis(500);
/// How often a run's interrupt handler reads the channel: a kill lands
/// within this of arriving, and a spinning run pays one read per period.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// How much one read takes from the pipe.
const READ_CHUNK: usize = 64 << 10;

/// One run this worker holds.
struct Entry {
    remote: Arc<RemoteRun>,
    cancel: CancelHandle,
    clock: Option<Arc<RunClock>>,
}

struct Shared {
    runs: Mutex<HashMap<u64, Entry>>,
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

/// A run the channel asked for, for the serve loop to start.
struct Start {
    run: u64,
    spec: Box<RunSpec>,
    remote: Arc<RemoteRun>,
    cancel: CancelHandle,
}

/// The channel from the server: read by the serve loop when the pipe is
/// readable, by a running run's interrupt handler, and by the sentinel while
/// a run holds the engine thread; one reader at a time. Every frame but
/// `Start` takes effect where it is read.
pub(crate) struct Inbox {
    pipe: std::fs::File,
    read: Mutex<ReadState>,
    shared: Arc<Shared>,
    starts: mpsc::UnboundedSender<Option<Start>>,
    me: Weak<Inbox>,
}

struct ReadState {
    /// Bytes read and not yet framed.
    buf: Vec<u8>,
    chunk: Box<[u8]>,
    last_poll: Instant,
    closed: bool,
}

impl Inbox {
    fn new(
        pipe: std::fs::File,
        shared: Arc<Shared>,
        starts: mpsc::UnboundedSender<Option<Start>>,
    ) -> Arc<Inbox> {
        Arc::new_cyclic(|me| Inbox {
            pipe,
            read: Mutex::new(ReadState {
                buf: Vec::new(),
                chunk: vec![0; READ_CHUNK].into_boxed_slice(),
                last_poll: Instant::now(),
                closed: false,
            }),
            shared,
            starts,
            me: me.clone(),
        })
    }

    /// Reads what is there now, unless another reader is at it.
    fn read_now(&self) {
        if let Ok(mut st) = self.read.try_lock() {
            self.read_available(&mut st);
        }
    }

    fn poll_from_interrupt(&self) {
        // Skipped while another reader (the sentinel) is at it; the serve
        // loop never is while a run holds the thread.
        let Ok(mut st) = self.read.try_lock() else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(st.last_poll) < POLL_EVERY {
            return;
        }
        st.last_poll = now;
        self.read_available(&mut st);
    }

    /// Reads and acts on everything the pipe holds now, through the
    /// runtime's handle (so that it knows to wait for more); false once the
    /// channel is over (closed, or garbage on it).
    fn pump(&self, receiver: &tokio::net::unix::pipe::Receiver) -> bool {
        let mut st = self.read.locked();
        self.read_with(&mut st, |chunk| receiver.try_read(chunk))
    }

    fn read_available(&self, st: &mut ReadState) -> bool {
        self.read_with(st, |chunk| (&self.pipe).read(chunk))
    }

    fn read_with(
        &self,
        st: &mut ReadState,
        mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> bool {
        if st.closed {
            return false;
        }
        let over = loop {
            let ReadState { buf, chunk, .. } = &mut *st;
            match read(chunk) {
                Ok(0) => break true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        let over = over || !self.take_frames(&mut st.buf);
        if over {
            st.closed = true;
            // The server went away or spoke garbage: stop every run.
            for entry in self.shared.runs.locked().values() {
                entry.cancel.cancel();
            }
            let _ = self.starts.send(None);
        }
        !over
    }

    /// Acts on every whole frame in `buf` and keeps the rest; false on a
    /// malformed or oversized frame.
    fn take_frames(&self, buf: &mut Vec<u8>) -> bool {
        let mut at = 0;
        let mut ok = true;
        while buf.len() - at >= 4 {
            let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            if len > proto::MAX_FRAME {
                ok = false;
                break;
            }
            if buf.len() - at - 4 < len {
                break;
            }
            let body = &buf[at + 4..at + 4 + len];
            at += 4 + len;
            match serde_json::from_slice::<ToWorker>(body) {
                Ok(message) => self.act(message, len),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        buf.drain(..at);
        if buf.is_empty() && buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        ok
    }

    /// Something of a run this worker holds.
    fn of_run<T>(&self, run: u64, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.shared.runs.locked().get(&run).map(f)
    }

    fn act(&self, message: ToWorker, frame_len: usize) {
        match message {
            ToWorker::Start { run, spec } => {
                let remote = Arc::new(RemoteRun::new(
                    run,
                    self.shared.out.clone(),
                    self.me.clone(),
                ));
                let cancel = CancelHandle::new();
                self.shared.runs.locked().insert(
                    run,
                    Entry {
                        remote: remote.clone(),
                        cancel: cancel.clone(),
                        clock: None,
                    },
                );
                let _ = self.starts.send(Some(Start {
                    run,
                    spec,
                    remote,
                    cancel,
                }));
            }
            ToWorker::Reply { run, call, reply } => {
                let Some(remote) = self.of_run(run, |e| e.remote.clone()) else {
                    return;
                };
                // A reply waits in memory until the engine takes it: it is
                // charged to its run from now on, and past the run's limit it
                // is replaced by a refusal (the run has reached its limit then).
                let reply = if remote.charge_reply(frame_len) {
                    CallReply {
                        charged: frame_len,
                        ..reply
                    }
                } else {
                    CallReply::memory_limit_reached()
                };
                remote.settle(call, reply);
            }
            ToWorker::Cancel { run } => {
                let cancel = self.of_run(run, |e| e.cancel.clone());
                if let Some(cancel) = cancel {
                    cancel.cancel();
                    // Not on the engine thread: it runs no more code, so the
                    // stop is certain now. On the thread: the interrupt
                    // handler ends it, or the server's watchdog does.
                    let on = *self.shared.on_thread.locked();
                    if on.map(|(r, _)| r) != Some(run) {
                        self.shared.send(&FromWorker::Stopped { run });
                    }
                }
            }
            ToWorker::Approval { run, waiting } => {
                let clock = self.of_run(run, |e| e.clock.clone()).flatten();
                if let Some(clock) = clock {
                    clock.approval(waiting);
                }
            }
        }
    }
}

/// The engine thread's loop. The interrupt handler and the sentinel read
/// the pipe without the runtime (whose readiness is not refreshed while a
/// run holds the thread); `receiver` is the runtime's own handle on it.
async fn serve(
    inbox: Arc<Inbox>,
    receiver: tokio::net::unix::pipe::Receiver,
    mut start_rx: mpsc::UnboundedReceiver<Option<Start>>,
    shared: Arc<Shared>,
) {
    let mut spare = engine::prepare().await;
    loop {
        let start = tokio::select! {
            biased;
            start = start_rx.recv() => match start {
                Some(Some(start)) => start,
                _ => return,
            },
            readable = receiver.readable() => {
                if readable.is_err() || !inbox.pump(&receiver) {
                    return;
                }
                continue;
            }
        };
        let Start {
            run,
            spec,
            remote,
            cancel,
        } = start;
        let ready = spare.take();
        let shared = shared.clone();
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
            if let Some(entry) = shared.runs.locked().get_mut(&run) {
                entry.clock = Some(clock.clone());
            }
            shared.out.started(run);
            let mut report = engine::run(*spec, Bridge::Remote(remote), cancel, clock, ready).await;
            report.tee_mode = crate::report::TEE_PROCESS_SANDBOX.to_string();
            shared.runs.locked().remove(&run);
            shared.send(&FromWorker::Ended {
                run,
                report: Box::new(report),
            });
        });
        // The next run's runtime is made now, off its latency path.
        tokio::task::yield_now().await;
        spare = engine::prepare().await;
    }
}
