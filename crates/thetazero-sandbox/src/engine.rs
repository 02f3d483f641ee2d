//! Runs one job in a fresh QuickJS runtime: installs the frozen bridge, enforces limits, drives promises and host calls, and builds the report. It must not share any engine state between executions or let a host file path reach agent code; every counted host call leaves through the `Bridge`, never directly.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Locked;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use rquickjs::context::intrinsic;
use rquickjs::function::Rest;
use rquickjs::object::Property;
use rquickjs::promise::MaybePromise;
use rquickjs::{
    AsyncContext, AsyncRuntime, Ctx, Exception, Function, IntoJs, Object, Promise, Value,
};
use serde_json::Value as Json;
use thetazero_core::limits::{Limits, Template};
use thetazero_core::permissions::Scope;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::alloc::{AllocStats, CountingAllocator};
use crate::broker::{self, Broker, Budget, CallArgs, CallReply, Reply};
use crate::clock::RunClock;
use crate::host::HostFn;
use crate::job::{CancelHandle, RunSpec};
use crate::net::HttpCall;
use crate::report::{
    Enforcement, ErrorInfo, ExecutionReport, HostCallAudit, LimitKind, LogEntry, LogLevel,
    ResourceUsage, Status,
};
use crate::{bytecode, raw};

/// The built-ins every context starts with. Typed arrays, `Map`/`Set` and
/// `Date` come on first use (`lazy`). No `Performance` (a high-resolution
/// timer helps timing side channels and is not needed) and no DOMException.
type Intrinsics = (
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::Promise,
    intrinsic::WeakRef,
);

/// Name agent code is evaluated under; stacks keep only frames that name it.
const AGENT_FILE: &str = "agent.js";
const MAX_KEY_BYTES: usize = 1024;
/// Audit entries kept per run beyond the log entries (every counted call is
/// already bounded by `max_api_calls_per_run`; this bounds `write_result` floods).
const MAX_AUDIT_ENTRIES: usize = 2048;
const MAX_SUMMARY_CHARS: usize = 200;
const MIB: f64 = 1024.0 * 1024.0;

/// The four function constructors, reached the only way agent code can reach
/// them. Parsed from a tiny script: cheaper than a setup script per execution.
const CONSTRUCTORS_JS: &str = "[Function, Object.getPrototypeOf(async function () {}).constructor, Object.getPrototypeOf(function* () {}).constructor, Object.getPrototypeOf(async function* () {}).constructor]";
static CONSTRUCTORS: bytecode::Fixed = bytecode::Fixed::new(CONSTRUCTORS_JS, "<sandbox-init>");
const BLOCKED_CODEGEN: &str = "code generation from strings is disabled in this sandbox";

/// What the JavaScript side of a run produced, as plain data.
enum JsOutcome {
    /// The entry function's value as JSON text; `None` when it returned `undefined`.
    Returned(Option<String>),
    Threw(ErrorInfo),
    /// The host could not set the runtime up (not the agent's fault).
    Setup(String),
}

struct Counters {
    logs: Vec<LogEntry>,
    log_bytes: u64,
    audit: Vec<HostCallAudit>,
    audit_dropped: u64,
    result: Option<String>,
    budget: Budget,
    host_calls: u64,
    denied: u64,
}

impl Counters {
    /// Adds an audit row, or counts it as dropped past `MAX_AUDIT_ENTRIES`,
    /// and returns its index so the duration can be filled in.
    fn push_audit(&mut self, function: &str, args_summary: String, allowed: bool) -> Option<usize> {
        if self.audit.len() >= MAX_AUDIT_ENTRIES {
            self.audit_dropped += 1;
            return None;
        }
        self.audit.push(HostCallAudit {
            function: function.to_string(),
            args_summary,
            allowed,
            duration_ms: 0.0,
            at: OffsetDateTime::now_utc(),
        });
        Some(self.audit.len() - 1)
    }
}

/// How counted host calls leave the engine.
pub(crate) enum Bridge {
    /// In process: the broker performs them here.
    Local(Arc<Broker>),
    /// In a worker process: they cross to the server, whose broker performs them.
    Remote(Arc<crate::worker::RemoteRun>),
}

impl Bridge {
    fn call(
        &self,
        f: HostFn,
        args: CallArgs,
    ) -> Pin<Box<dyn Future<Output = CallReply> + Send + 'static>> {
        match self {
            Bridge::Local(broker) => {
                let broker = broker.clone();
                Box::pin(async move { broker.call(f, args).await })
            }
            Bridge::Remote(remote) => Box::pin(remote.clone().call(f, args)),
        }
    }
}

/// Everything the bridge functions share for one execution.
struct ExecState {
    bridge: Bridge,
    limits: Limits,
    scopes: BTreeSet<Scope>,
    allow_network: bool,
    /// Each log entry is screened by the host as it is written.
    screen_logs: bool,
    cancel: CancelHandle,
    clock: Arc<RunClock>,
    abort: Mutex<Option<(LimitKind, String)>>,
    aborted: AtomicBool,
    abort_notify: Notify,
    interrupted: AtomicBool,
    alloc: Arc<AllocStats>,
    counters: Mutex<Counters>,
}

impl ExecState {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.locked()
    }

    /// Ends the execution with a limit. The first reason wins.
    fn abort(&self, limit: LimitKind, detail: String) {
        let mut slot = self.abort.locked();
        if slot.is_none() {
            *slot = Some((limit, detail));
        }
        drop(slot);
        self.aborted.store(true, Ordering::SeqCst);
        self.abort_notify.notify_waiters();
    }

    fn abort_reason(&self) -> Option<(LimitKind, String)> {
        self.abort.locked().clone()
    }

    async fn aborted(&self) {
        loop {
            let notified = self.abort_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.aborted.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    fn should_interrupt(&self) -> bool {
        // In a worker, this thread also reads the channel: a kill sent while
        // the run spins arrives here.
        if let Bridge::Remote(remote) = &self.bridge {
            remote.poll_channel();
        }
        let stop = self.cancel.is_cancelled()
            || self.aborted.load(Ordering::Relaxed)
            || self.alloc.limit_hit()
            || self.clock.expired();
        if stop {
            self.interrupted.store(true, Ordering::Relaxed);
        }
        stop
    }

    /// Adds an audit row and returns its index so the duration can be filled in.
    fn push_audit(&self, function: HostFn, args_summary: String, allowed: bool) -> Option<usize> {
        let mut c = self.counters();
        c.host_calls += 1;
        c.push_audit(function.name(), args_summary, allowed)
    }

    /// Fills in a settled call's row and counts a refusal.
    fn settle_audit(&self, index: Option<usize>, reply: &CallReply) {
        let mut c = self.counters();
        if reply.denied {
            c.denied += 1;
        }
        if let Some(row) = index.and_then(|i| c.audit.get_mut(i)) {
            row.allowed = reply.allowed;
            row.duration_ms = reply.duration_ms;
        }
    }

    /// Counts a call against the per-run and per-minute budgets; a call past
    /// either ends the execution.
    fn count_call(&self) -> Result<(), LimitKind> {
        if let Some((limit, _)) = self.abort_reason() {
            // Already ending: do not count or audit calls made while unwinding.
            return Err(limit);
        }
        let counted = self.counters().budget.count(&self.limits);
        match counted {
            Ok(()) => Ok(()),
            Err((limit, detail)) => {
                self.abort(limit, detail);
                Err(limit)
            }
        }
    }

    /// Charges bytes the run makes the sandbox hold outside the QuickJS heap
    /// (pending call arguments, log entries, the written result) against its
    /// memory limit; past it the run ends.
    fn charge(&self, bytes: usize) -> bool {
        if self.alloc.charge(bytes) {
            return true;
        }
        self.abort(
            LimitKind::Memory,
            format!("memory limit of {} MiB reached", self.limits.memory_mb),
        );
        false
    }
}

/// Wraps the engine future to add up the time spent inside its polls, which is
/// the time this execution held the worker thread, and to tell the clock when
/// agent code may be running (an approval wait pauses the deadline only
/// while none is).
struct Timed<F> {
    inner: Pin<Box<F>>,
    spent: Arc<Mutex<Duration>>,
    clock: Arc<RunClock>,
    cancel: CancelHandle,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        self.clock.busy(true);
        // A kill confirmed while the run was off the engine thread must find
        // it never running again: checked after the thread is marked taken,
        // so a kill either sees it taken or is seen here. The cancel branch
        // of the caller's select then ends the run.
        if self.cancel.is_cancelled() {
            self.clock.busy(false);
            return Poll::Pending;
        }
        let out = self.inner.as_mut().poll(cx);
        self.clock.busy(false);
        let mut spent = self.spent.locked();
        *spent += start.elapsed();
        out
    }
}

enum Ended {
    Finished(JsOutcome),
    Killed,
    TimedOut,
    Aborted,
}

/// A fresh runtime and context made while the worker was idle, so creating
/// them is off the latency path. Used by exactly one execution, never reused.
pub(crate) struct Prepared {
    rt: AsyncRuntime,
    ctx: AsyncContext,
    alloc: Arc<AllocStats>,
}

/// Creation happens under a generous limit; the job's own limit is set when it
/// takes the runtime, before any of its code runs.
const PREPARE_LIMIT: usize = 64 << 20;

pub(crate) async fn prepare() -> Option<Prepared> {
    let alloc = AllocStats::new(PREPARE_LIMIT);
    let rt = AsyncRuntime::new_with_alloc(CountingAllocator(alloc.clone())).ok()?;
    let ctx = AsyncContext::custom::<Intrinsics>(&rt).await.ok()?;
    Some(Prepared { rt, ctx, alloc })
}

/// Runs one job to completion and reports. Never panics on agent input.
pub(crate) async fn run(
    spec: RunSpec,
    bridge: Bridge,
    cancel: CancelHandle,
    clock: Arc<RunClock>,
    prepared: Option<Prepared>,
) -> ExecutionReport {
    let limits = spec.limits;
    let memory_limit =
        usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let prepared = match prepared {
        Some(p) => Some(p),
        None => prepare().await,
    };
    let alloc = match &prepared {
        Some(p) => p.alloc.clone(),
        None => AllocStats::new(memory_limit),
    };
    alloc.set_limit(memory_limit);
    if let Bridge::Remote(remote) = &bridge {
        remote.set_alloc(alloc.clone());
    }
    let state = Arc::new(ExecState {
        bridge,
        limits,
        scopes: spec.scopes(),
        allow_network: spec.allow_network,
        screen_logs: spec.screen_logs,
        cancel: cancel.clone(),
        clock,
        abort: Mutex::new(None),
        aborted: AtomicBool::new(false),
        abort_notify: Notify::new(),
        interrupted: AtomicBool::new(false),
        alloc: alloc.clone(),
        counters: Mutex::new(Counters {
            logs: Vec::new(),
            log_bytes: 0,
            audit: Vec::new(),
            audit_dropped: 0,
            result: None,
            budget: Budget::default(),
            host_calls: 0,
            denied: 0,
        }),
    });
    let spent = Arc::new(Mutex::new(Duration::ZERO));

    let ended = if cancel.is_cancelled() {
        Ended::Killed
    } else {
        match serde_json::to_string(&spec.input) {
            Ok(input) if input.len() as u64 <= limits.max_input_bytes => match prepared {
                Some(prepared) => run_engine(&spec, input, &state, prepared, &spent).await,
                None => Ended::Finished(JsOutcome::Setup("could not create a runtime".into())),
            },
            Ok(input) => {
                state.abort(
                    LimitKind::InputSize,
                    format!(
                        "input is {} bytes, above the limit of {}",
                        input.len(),
                        limits.max_input_bytes
                    ),
                );
                Ended::Aborted
            }
            Err(_) => Ended::Finished(JsOutcome::Setup("input is not serialisable".into())),
        }
    };

    finish(&cancel, &state, ended, &spent)
}

async fn run_engine(
    spec: &RunSpec,
    input: String,
    state: &Arc<ExecState>,
    prepared: Prepared,
    spent: &Arc<Mutex<Duration>>,
) -> Ended {
    let Prepared { rt, ctx, alloc: _ } = prepared;
    // 1–4 MiB: deep enough for real code, well below the worker's own stack.
    let stack = spec.limits.stack_kb.clamp(1024, 4096) as usize * 1024;
    rt.set_max_stack_size(stack).await;
    let watcher = state.clone();
    rt.set_interrupt_handler(Some(Box::new(move || watcher.should_interrupt())))
        .await;

    let code = format!("(async () => {{{}\n}})()", spec.code);
    let info = serde_json::json!({
        "agentName": spec.agent_name,
        "agentVersion": spec.agent_version,
        "executionId": spec.execution_id,
    })
    .to_string();
    let dev = spec.template == Template::Dev;
    let js_state = state.clone();
    let scope = spec.code_cache_scope;
    let engine = ctx.async_with(async move |ctx| {
        run_in_context(ctx, js_state, code, input, info, dev, scope).await
    });
    let timed = Timed {
        inner: Box::pin(engine),
        spent: spent.clone(),
        clock: state.clock.clone(),
        cancel: state.cancel.clone(),
    };
    let ended = tokio::select! {
        biased;
        _ = state.cancel.cancelled() => Ended::Killed,
        _ = state.aborted() => Ended::Aborted,
        _ = state.clock.passed() => Ended::TimedOut,
        outcome = timed => Ended::Finished(outcome),
    };
    // Contexts go before their runtime. Pending host futures are dropped with
    // it, before the report exists, so the host sees no effect after a report.
    // Tearing a runtime down runs the engine's own code, and agent code can
    // make it slow (weak references, finalizers): it counts as holding the
    // engine thread, so the watchdog sees it.
    state.clock.busy(true);
    drop(ctx);
    drop(rt);
    state.clock.busy(false);
    ended
}

async fn run_in_context<'js>(
    ctx: Ctx<'js>,
    state: Arc<ExecState>,
    code: String,
    input: String,
    info: String,
    dev: bool,
    cache_scope: u64,
) -> JsOutcome {
    if install(&ctx, &state, &input, &info, dev).is_err() {
        let thrown = ctx.catch();
        return JsOutcome::Setup(format!(
            "could not set up the sandbox: {}",
            error_info(&ctx, thrown).message
        ));
    }
    let started = eval_agent(&ctx, &code, cache_scope);
    let promise = match started {
        Ok(p) => p,
        Err(_) => return JsOutcome::Threw(error_info(&ctx, ctx.catch())),
    };
    match promise.into_future::<Value>().await {
        Ok(value) if value.is_undefined() => JsOutcome::Returned(None),
        Ok(value) => match ctx.json_stringify(value) {
            Ok(Some(text)) => match text.to_string() {
                Ok(text) => JsOutcome::Returned(Some(text)),
                Err(_) => JsOutcome::Threw(type_error("the returned value is not valid text")),
            },
            Ok(None) => JsOutcome::Threw(type_error("the returned value is not JSON-serialisable")),
            Err(_) => JsOutcome::Threw(error_info(&ctx, ctx.catch())),
        },
        Err(_) => JsOutcome::Threw(error_info(&ctx, ctx.catch())),
    }
}

/// Evaluates the wrapped agent code: from bytecode when the same code ran
/// before in the same cache scope, else compiled now and kept for next time.
fn eval_agent<'js>(ctx: &Ctx<'js>, code: &str, scope: u64) -> rquickjs::Result<MaybePromise<'js>> {
    let cache = bytecode::AgentCache::global();
    bytecode::eval(
        ctx,
        code,
        AGENT_FILE,
        true,
        cache.get(scope, code),
        |bytes| cache.put(scope, code, bytes),
    )?
    .get()
}

fn type_error(message: &str) -> ErrorInfo {
    ErrorInfo::new("TypeError", message)
}

/// A promise already resolved with `undefined`: every host call returns a
/// promise, as the spec's host API says, even the two that finish at once.
/// Bad arguments still throw at the call, before any promise exists.
fn resolved<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
    let (promise, resolve, _reject) = ctx.promise()?;
    resolve.call::<_, ()>(())?;
    Ok(promise.into_value())
}

fn install<'js>(
    ctx: &Ctx<'js>,
    state: &Arc<ExecState>,
    input: &str,
    info: &str,
    dev: bool,
) -> rquickjs::Result<()> {
    let bridge = Object::new(ctx.clone())?;
    let log_state = state.clone();
    let log = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<Value<'js>> {
            bridge_log(&ctx, &log_state, args.0)
        },
    )?
    .with_name("log")?;
    crate::lazy::install(ctx, &log)?;
    bridge.set("log", log)?;
    let result_state = state.clone();
    bridge.set(
        "write_result",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<Value<'js>> {
                bridge_write_result(&ctx, &result_state, args.0)?;
                resolved(&ctx)
            },
        )?
        .with_name("write_result")?,
    )?;
    for f in HostFn::ASYNC {
        let call_state = state.clone();
        bridge.set(
            f.name(),
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<Value<'js>> {
                    bridge_async(&ctx, &call_state, f, args.0)
                },
            )?
            .with_name(f.name())?,
        )?;
    }
    let globals = ctx.globals();
    // Read-only identity, then a frozen bridge held by a non-writable,
    // non-configurable global. `prop` with a bare value defines all three
    // attributes false.
    let info: Object = ctx.json_parse(info)?.get()?;
    for name in ["agentName", "agentVersion", "executionId"] {
        bridge.prop(
            name,
            Property::from(info.get::<_, Value>(name)?).enumerable(),
        )?;
    }
    for f in ["log", "write_result"]
        .into_iter()
        .chain(HostFn::ASYNC.iter().map(|f| f.name()))
    {
        // Nothing can be added to a host function; its `name` and `length`
        // are read-only already. Freezing each would cost a shape copy per
        // function per run and protect nothing more: a run's objects die
        // with its runtime.
        raw::prevent_extensions(ctx, &bridge.get::<_, Object>(f)?)?;
    }
    raw::freeze(ctx, &bridge)?;
    globals.prop("thetazero", bridge)?;
    globals.set("input", ctx.json_parse(input)?)?;
    // No shared memory and no blocking waits: Atomics.wait could park the worker
    // thread where the interrupt handler cannot reach it.
    globals.remove("Atomics")?;
    globals.remove("SharedArrayBuffer")?;
    if !dev {
        globals.remove("eval")?;
        let ctors: rquickjs::Array = CONSTRUCTORS.eval(ctx)?.get()?;
        for ctor in ctors.iter::<Object>() {
            let ctor = ctor?;
            let proto: Object = ctor.get("prototype")?;
            let blocked = Function::new(ctx.clone(), |ctx: Ctx<'js>| -> rquickjs::Result<()> {
                let eval_error: rquickjs::function::Constructor = ctx.globals().get("EvalError")?;
                let e: Value = eval_error.construct((BLOCKED_CODEGEN,))?;
                Err(ctx.throw(e))
            })?
            .with_name("Function")?;
            blocked.set_constructor(true);
            blocked.prop("prototype", proto.clone())?;
            raw::prevent_extensions(ctx, &blocked)?;
            // Replace, not assign: the original is configurable, the
            // replacement is not, so agent code cannot put it back.
            proto.remove("constructor")?;
            proto.prop("constructor", blocked)?;
        }
        let replacement: Value = globals
            .get::<_, Object>("Function")?
            .get::<_, Object>("prototype")?
            .get("constructor")?;
        globals.remove("Function")?;
        globals.prop("Function", replacement)?;
    }
    Ok(())
}

/// Builds an `Error` with a stable `code` and throws it into agent code.
fn throw_coded<'js>(ctx: &Ctx<'js>, code: &str, message: &str) -> rquickjs::Error {
    let built = (|| -> rquickjs::Result<Value<'js>> {
        let e = Exception::from_message(ctx.clone(), message)?;
        // Define, not assign: an accessor agent code put on Object.prototype
        // must neither see nor shadow the code.
        e.as_object()
            .prop("code", Property::from(code).enumerable())?;
        Ok(e.into_value())
    })();
    match built {
        Ok(v) => ctx.throw(v),
        Err(e) => e,
    }
}

fn throw_type<'js>(ctx: &Ctx<'js>, message: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, message)
}

/// JSON text of an agent value, or a thrown TypeError. Runs agent traps
/// (`toJSON`, getters, proxies) inside the sandbox, under the interrupt handler.
fn json_text<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<Option<String>> {
    match ctx.json_stringify(value)? {
        Some(s) => Ok(Some(s.to_string()?)),
        None => Ok(None),
    }
}

/// `thetazero.log(message, level)`: the entry is kept at once, in order. Where
/// the host screens logs, the promise settles when it has, and rejects with
/// `CONTENT_BLOCKED` where the host refuses the entry.
fn bridge_log<'js>(
    ctx: &Ctx<'js>,
    state: &Arc<ExecState>,
    args: Vec<Value<'js>>,
) -> rquickjs::Result<Value<'js>> {
    let mut args = args.into_iter();
    let msg = args.next();
    let level = match args.next() {
        None => LogLevel::Info,
        Some(v) if v.is_undefined() => LogLevel::Info,
        Some(v) => match v
            .as_string()
            .map(|s| s.to_string())
            .transpose()?
            .as_deref()
            .and_then(LogLevel::parse)
        {
            Some(level) => level,
            None => {
                return Err(throw_type(
                    ctx,
                    "log level must be one of 'info', 'warn', 'error', 'debug'",
                ))
            }
        },
    };
    let message = match msg {
        None => String::new(),
        Some(v) => {
            if let Some(s) = v.as_string() {
                s.to_string()?
            } else if v.is_undefined() {
                "undefined".into()
            } else {
                json_text(ctx, v)?.unwrap_or_else(|| "undefined".into())
            }
        }
    };
    let limits = state.limits;
    // Log entries are held outside the engine's heap until the run ends.
    if !state.charge(message.len() + std::mem::size_of::<LogEntry>()) {
        return Err(throw_coded(ctx, "LIMIT_EXCEEDED", "memory limit reached"));
    }
    let mut c = state.counters();
    c.host_calls += 1;
    let entries = c.logs.len() as u64 + 1;
    let bytes = c.log_bytes + message.len() as u64;
    if entries > limits.max_log_entries || bytes > limits.max_log_bytes {
        drop(c);
        state.abort(
            LimitKind::LogVolume,
            format!(
                "more than {} log entries or {} log bytes",
                limits.max_log_entries, limits.max_log_bytes
            ),
        );
        return Err(throw_coded(
            ctx,
            "LIMIT_EXCEEDED",
            "log volume limit reached",
        ));
    }
    c.log_bytes = bytes;
    let summary = summarize(&message);
    let screened = state.screen_logs.then(|| message.clone());
    c.logs.push(LogEntry {
        level,
        message,
        at: OffsetDateTime::now_utc(),
    });
    c.push_audit("log", summary, true);
    drop(c);
    let Some(message) = screened else {
        return resolved(ctx);
    };
    // In a worker whose binary screens logs, the entry is read here, as the
    // server would read it: no round trip.
    if matches!(state.bridge, Bridge::Remote(_)) {
        if let Some(screen) = crate::worker::log_screen() {
            let reply = match screen(&message) {
                None => Reply::Json { value: Json::Null },
                Some(why) => Reply::fail("CONTENT_BLOCKED", why),
            };
            return Promise::wrap_future(ctx, async move { rquickjs::Result::Ok(reply) })
                .map(|p| p.into_value());
        }
    }
    let call = state.bridge.call(
        HostFn::Log,
        CallArgs::Value {
            value: Json::String(message),
        },
    );
    // The entry stays as written: the server screens the run's entries
    // again when it ends and withholds, names and audits each it refuses.
    state.clock.call(true);
    let guard = CallOnClock(state.clock.clone());
    let fut = async move {
        let reply = call.await;
        drop(guard);
        rquickjs::Result::Ok(reply.reply)
    };
    Promise::wrap_future(ctx, fut).map(|p| p.into_value())
}

fn bridge_write_result<'js>(
    ctx: &Ctx<'js>,
    state: &ExecState,
    args: Vec<Value<'js>>,
) -> rquickjs::Result<()> {
    let value = args
        .into_iter()
        .next()
        .unwrap_or_else(|| Value::new_undefined(ctx.clone()));
    let text = match json_text(ctx, value)? {
        Some(t) => t,
        None => {
            return Err(throw_type(
                ctx,
                "write_result needs a JSON-serialisable value",
            ))
        }
    };
    let cap = state.limits.max_output_bytes;
    if text.len() as u64 > cap {
        state.abort(
            LimitKind::OutputSize,
            format!("output is {} bytes, above the limit of {cap}", text.len()),
        );
        return Err(throw_coded(
            ctx,
            "LIMIT_EXCEEDED",
            "output size limit reached",
        ));
    }
    let summary = format!("{} bytes", text.len());
    if !state.charge(text.len()) {
        return Err(throw_coded(ctx, "LIMIT_EXCEEDED", "memory limit reached"));
    }
    let mut c = state.counters();
    c.host_calls += 1;
    if let Some(previous) = c.result.replace(text) {
        state.alloc.uncharge(previous.len());
    }
    c.push_audit("write_result", summary, true);
    Ok(())
}

fn summarize(s: &str) -> String {
    if s.chars().count() <= MAX_SUMMARY_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_SUMMARY_CHARS).collect();
        out.push('…');
        out
    }
}

fn string_arg<'js>(ctx: &Ctx<'js>, v: Option<&Value<'js>>, what: &str) -> rquickjs::Result<String> {
    // Only real strings: no coercion, so no toString/valueOf traps on keys.
    let s = match v.and_then(|v| v.as_string()) {
        Some(s) => s.to_string()?,
        None => return Err(throw_type(ctx, &format!("{what} must be a string"))),
    };
    if s.is_empty() || s.len() > MAX_KEY_BYTES {
        return Err(throw_type(
            ctx,
            &format!("{what} must be 1 to {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(s)
}

fn json_arg<'js>(
    ctx: &Ctx<'js>,
    v: Option<&Value<'js>>,
    cap: u64,
    what: &str,
) -> rquickjs::Result<Json> {
    let Some(v) = v.cloned() else {
        return Ok(Json::Null);
    };
    if v.is_undefined() {
        return Ok(Json::Null);
    }
    let Some(text) = json_text(ctx, v)? else {
        return Err(throw_type(
            ctx,
            &format!("{what} must be JSON-serialisable"),
        ));
    };
    if text.len() as u64 > cap {
        return Err(throw_coded(
            ctx,
            "VALUE_TOO_LARGE",
            &format!("{what} is larger than {cap} bytes"),
        ));
    }
    serde_json::from_str(&text)
        .map_err(|_| throw_type(ctx, &format!("{what} must be JSON-serialisable")))
}

fn parse_args<'js>(
    ctx: &Ctx<'js>,
    state: &ExecState,
    f: HostFn,
    args: &[Value<'js>],
) -> rquickjs::Result<CallArgs> {
    // Values stored through the bridge are capped like an output.
    let cap = state.limits.max_output_bytes;
    Ok(match f {
        HostFn::ReadContext | HostFn::StorageGet => CallArgs::Key {
            key: string_arg(ctx, args.first(), "key")?,
        },
        HostFn::WriteContext | HostFn::StoragePut => CallArgs::KeyValue {
            key: string_arg(ctx, args.first(), "key")?,
            value: json_arg(ctx, args.get(1), cap, "value")?,
        },
        HostFn::Inference => CallArgs::Value {
            value: json_arg(ctx, args.first(), cap, "request")?,
        },
        HostFn::GetExecution => CallArgs::Value {
            value: json_arg(ctx, args.first(), MAX_KEY_BYTES as u64, "id")?,
        },
        HostFn::CallAgent => CallArgs::NameValue {
            name: string_arg(ctx, args.first(), "name")?,
            input: json_arg(ctx, args.get(1), state.limits.max_input_bytes, "input")?,
        },
        HostFn::HttpRequest => CallArgs::Http {
            call: http_args(ctx, state, args)?,
        },
        HostFn::Log | HostFn::WriteResult => CallArgs::Value { value: Json::Null },
    })
}

fn http_args<'js>(
    ctx: &Ctx<'js>,
    state: &ExecState,
    args: &[Value<'js>],
) -> rquickjs::Result<HttpCall> {
    let url = match args.first().and_then(|v| v.as_string()) {
        Some(s) => s.to_string()?,
        None => return Err(throw_type(ctx, "url must be a string")),
    };
    if url.len() > 8192 {
        return Err(throw_type(ctx, "url is too long"));
    }
    let method = match args.get(1) {
        None => "GET".to_string(),
        Some(v) if v.is_undefined() || v.is_null() => "GET".to_string(),
        Some(v) => match v.as_string() {
            Some(s) => s.to_string()?.to_ascii_uppercase(),
            None => return Err(throw_type(ctx, "method must be a string")),
        },
    };
    // Every record of the call shows the method: a name, not text.
    if !crate::broker::method_ok(&method) {
        return Err(throw_type(
            ctx,
            "method must be an HTTP method name: 1 to 32 ASCII letters or hyphens",
        ));
    }
    let mut headers = Vec::new();
    match json_arg(ctx, args.get(2), 64 << 10, "headers")? {
        Json::Null => {}
        Json::Object(map) => {
            for (k, v) in map {
                match v {
                    Json::String(s) => headers.push((k, s)),
                    _ => return Err(throw_type(ctx, "header values must be strings")),
                }
            }
        }
        _ => return Err(throw_type(ctx, "headers must be an object")),
    }
    let cap = state.limits.max_http_request_bytes;
    let body = match args.get(3) {
        None => None,
        Some(v) if v.is_undefined() || v.is_null() => None,
        Some(v) => match v.as_string() {
            Some(s) => {
                let body = s.to_string()?;
                // Refused here, before the server holds a copy.
                if body.len() as u64 > cap {
                    return Err(throw_coded(
                        ctx,
                        "REQUEST_TOO_LARGE",
                        &format!("request body larger than {cap} bytes"),
                    ));
                }
                Some(body.into_bytes())
            }
            None => {
                let json = json_arg(ctx, Some(v), cap.saturating_add(1), "body")?;
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Some(json.to_string().into_bytes())
            }
        },
    };
    Ok(HttpCall {
        url,
        method,
        headers,
        body,
    })
}

/// A call in flight on the run's clock, until it settles or is dropped.
struct CallOnClock(Arc<RunClock>);

impl Drop for CallOnClock {
    fn drop(&mut self) {
        self.0.call(false);
    }
}

/// The settled value of a host call, converted to JavaScript when the promise
/// resolves (inside the engine lock).
impl<'js> IntoJs<'js> for Reply {
    fn into_js(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        match self {
            Reply::Json { value: Json::Null } => Ok(Value::new_null(ctx.clone())),
            Reply::Json { value } => ctx.json_parse(value.to_string()),
            Reply::Fail { code, message } => Err(throw_coded(ctx, &code, &message)),
        }
    }
}

fn bridge_async<'js>(
    ctx: &Ctx<'js>,
    state: &Arc<ExecState>,
    f: HostFn,
    args: Vec<Value<'js>>,
) -> rquickjs::Result<Value<'js>> {
    // Every attempt counts, refused ones included: a flood of refused calls
    // must end the run rather than flood the audit log.
    if let Err(limit) = state.count_call() {
        state.counters().host_calls += 1;
        return Err(throw_coded(
            ctx,
            "LIMIT_EXCEEDED",
            &format!("host API call limit reached ({})", limit.as_str()),
        ));
    }
    let parsed = parse_args(ctx, state, f, &args)?;
    let summary = broker::args_summary(&parsed);
    // What the server holds for this call counts against the run's memory.
    let held = parsed.held_bytes();
    if !state.charge(held) {
        return Err(throw_coded(ctx, "LIMIT_EXCEEDED", "memory limit reached"));
    }
    let allowed = broker::denial(f, &state.scopes, state.allow_network).is_none();
    let index = state.push_audit(f, summary, allowed);
    let call = state.bridge.call(f, parsed);
    let settle = state.clone();
    state.clock.call(true);
    let guard = CallOnClock(state.clock.clone());
    let fut = async move {
        let reply = call.await;
        drop(guard);
        settle.alloc.uncharge(held + reply.charged);
        settle.settle_audit(index, &reply);
        rquickjs::Result::Ok(reply.reply)
    };
    Promise::wrap_future(ctx, fut).map(|p| p.into_value())
}

/// Type, message and an agent-only stack of a thrown value. Reading `name` or
/// `message` may run agent getters; they run under the interrupt handler.
fn error_info<'js>(ctx: &Ctx<'js>, thrown: Value<'js>) -> ErrorInfo {
    let as_text = |v: Value<'js>| -> Option<String> {
        if let Some(s) = v.as_string() {
            return s.to_string().ok();
        }
        ctx.json_stringify(v)
            .ok()
            .flatten()
            .and_then(|s| s.to_string().ok())
    };
    if let Some(obj) = thrown.as_object() {
        if Exception::from_object(obj.clone()).is_some() {
            let kind = obj
                .get::<_, Value>("name")
                .ok()
                .and_then(|v| v.as_string().and_then(|s| s.to_string().ok()))
                .map(|mut s| {
                    // A type is a name: at most 64 bytes, as a worker's.
                    let mut end = s.len().min(64);
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                    s
                })
                .unwrap_or_else(|| "Error".into());
            let message = obj
                .get::<_, Value>("message")
                .ok()
                .and_then(|v| v.as_string().and_then(|s| s.to_string().ok()))
                .unwrap_or_default();
            let stack = obj
                .get::<_, Value>("stack")
                .ok()
                .and_then(|v| v.as_string().and_then(|s| s.to_string().ok()))
                .map(|s| clean_stack(&s));
            // The stable code of a host-call error the agent let escape
            // (`PERMISSION_DENIED`, `LIMIT_EXCEEDED`, ...). Only the host's own
            // codes are kept: agent code cannot pass off another ending.
            let code = obj
                .get::<_, Value>("code")
                .ok()
                .and_then(|v| v.as_string().and_then(|s| s.to_string().ok()))
                .filter(|c| crate::report::AGENT_VISIBLE_CODES.contains(&c.as_str()));
            return ErrorInfo {
                stack,
                code,
                ..ErrorInfo::new(&kind, summarize_long(message))
            };
        }
    }
    let message = if thrown.is_null() {
        "null".to_string()
    } else if thrown.is_undefined() {
        "undefined".to_string()
    } else {
        as_text(thrown).unwrap_or_else(|| "a value that cannot be shown".into())
    };
    ErrorInfo::new("Error", summarize_long(format!("uncaught {message}")))
}

fn summarize_long(s: String) -> String {
    const MAX: usize = 4096;
    if s.len() <= MAX {
        s
    } else {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    }
}

/// Keeps only frames in agent code (and the bridge's native frames).
fn clean_stack(stack: &str) -> String {
    let kept: Vec<&str> = stack
        .lines()
        .filter(|l| l.contains(AGENT_FILE) || l.trim_end().ends_with("(native)"))
        .take(64)
        .collect();
    summarize_long(kept.join("\n"))
}

fn finish(
    cancel: &CancelHandle,
    state: &Arc<ExecState>,
    ended: Ended,
    spent: &Arc<Mutex<Duration>>,
) -> ExecutionReport {
    let abort = state.abort_reason();
    let interrupted = state.interrupted.load(Ordering::Relaxed);
    // A run that ends after its deadline never counts as completed, however
    // it got there (a native loop that ignored the interrupt and returned).
    let past_deadline = state.clock.expired();
    let mut error = None;
    let mut output = Json::Null;
    let mut limit: Option<(LimitKind, String)> = None;
    let status = if matches!(ended, Ended::Killed) || cancel.is_cancelled() {
        Status::Killed
    } else if let Some(reason) = abort {
        limit = Some(reason);
        Status::LimitExceeded
    } else if state.alloc.limit_hit() {
        limit = Some((
            LimitKind::Memory,
            format!("memory limit of {} MiB reached", state.limits.memory_mb),
        ));
        Status::LimitExceeded
    } else if past_deadline {
        Status::TimedOut
    } else {
        match ended {
            Ended::TimedOut => Status::TimedOut,
            Ended::Finished(JsOutcome::Returned(text)) => {
                let text = match text {
                    Some(t) => Some(t),
                    None => state.counters().result.clone(),
                };
                match text {
                    Some(t) if t.len() as u64 > state.limits.max_output_bytes => {
                        limit = Some((
                            LimitKind::OutputSize,
                            format!(
                                "output is {} bytes, above the limit of {}",
                                t.len(),
                                state.limits.max_output_bytes
                            ),
                        ));
                        Status::LimitExceeded
                    }
                    Some(t) => match serde_json::from_str::<Json>(&t) {
                        Ok(v) => {
                            // Parsed, the output is held twice more (here and
                            // by the server that records it) and may take
                            // many times its text: charged to the run like
                            // everything else it makes the sandbox hold.
                            let held = 2 * held_size(&v);
                            if state.alloc.charge(held) {
                                output = v;
                                Status::Completed
                            } else {
                                limit = Some((
                                    LimitKind::Memory,
                                    format!(
                                        "the output would take {:.1} MiB once parsed (twice: the engine's copy and the server's), beyond the memory limit of {} MiB",
                                        held as f64 / f64::from(1 << 20),
                                        state.limits.memory_mb
                                    ),
                                ));
                                Status::LimitExceeded
                            }
                        }
                        Err(_) => {
                            error = Some(type_error("the output is not valid JSON"));
                            Status::Failed
                        }
                    },
                    None => Status::Completed,
                }
            }
            Ended::Finished(JsOutcome::Threw(info)) => {
                let overflow = (info.kind == "InternalError" || info.kind == "RangeError")
                    && (info.message.contains("stack overflow")
                        || info.message.contains("Maximum call stack size exceeded"));
                if overflow {
                    limit = Some((
                        LimitKind::Stack,
                        format!("stack limit of {} KiB reached", state.limits.stack_kb),
                    ));
                    error = Some(info);
                    Status::LimitExceeded
                } else if interrupted && past_deadline {
                    Status::TimedOut
                } else {
                    error = Some(info);
                    Status::Failed
                }
            }
            Ended::Finished(JsOutcome::Setup(message)) => {
                error = Some(ErrorInfo::new("SandboxError", message));
                Status::Failed
            }
            // Aborted without a reason cannot happen; report it as a failure.
            Ended::Aborted | Ended::Killed => Status::Failed,
        }
    };
    if status == Status::TimedOut {
        limit = Some((
            LimitKind::CpuTime,
            format!("deadline of {} ms reached", state.limits.cpu_time_ms),
        ));
    }
    if error.is_none() {
        error = match status {
            Status::Killed => Some(ErrorInfo::new("Killed", "the execution was killed")),
            Status::TimedOut | Status::LimitExceeded => limit
                .as_ref()
                .map(|(_, detail)| ErrorInfo::new("LimitExceeded", detail.clone())),
            _ => None,
        };
    }
    let cpu = *spent.locked();
    let c = state.counters();
    let violations = c.denied + u64::from(limit.is_some());
    let stopped = matches!(
        status,
        Status::Killed | Status::TimedOut | Status::LimitExceeded
    );
    ExecutionReport {
        status,
        limit: limit.as_ref().map(|(k, _)| *k),
        output,
        error,
        logs: c.logs.clone(),
        host_call_audit: c.audit.clone(),
        host_call_audit_dropped: c.audit_dropped,
        resource_usage: ResourceUsage {
            cpu_ms: cpu.as_secs_f64() * 1000.0,
            memory_mb: state.alloc.peak() as f64 / MIB,
            api_calls: c.budget.api_calls,
            host_calls: c.host_calls,
        },
        violation_count: violations,
        was_terminated: stopped,
        duration_ms: state.clock.started().elapsed().as_secs_f64() * 1000.0,
        tee_mode: crate::report::TEE_IN_PROCESS.to_string(),
        enforcement: stopped.then_some(Enforcement::Cooperative),
        limit_detail: limit.map(|(_, d)| d),
        worker_stopped: None,
    }
}

/// About how many bytes a parsed JSON value holds, from above: each value's
/// own slot, each string as the allocator rounds it, and each object as at
/// least one B-tree leaf of eleven key and value slots (about two slots per
/// entry once it grows).
fn held_size(v: &Json) -> usize {
    const SLOT: usize = std::mem::size_of::<Json>();
    const KEY: usize = std::mem::size_of::<String>();
    const LEAF: usize = 11 * (KEY + SLOT) + 16;
    fn text(len: usize) -> usize {
        if len == 0 {
            0
        } else {
            ((len + 8 + 15) & !15).max(32)
        }
    }
    match v {
        Json::Null | Json::Bool(_) | Json::Number(_) => SLOT,
        Json::String(s) => SLOT + text(s.len()),
        Json::Array(items) => SLOT + items.iter().map(held_size).sum::<usize>(),
        Json::Object(map) => {
            let nodes = LEAF.max(map.len() * 2 * (KEY + SLOT));
            SLOT + nodes
                + map
                    .iter()
                    .map(|(k, v)| text(k.len()) + held_size(v))
                    .sum::<usize>()
        }
    }
}
