//! Runs one job in a fresh QuickJS runtime: installs the frozen bridge, enforces limits, drives promises and host futures, and builds the report. It must not share any engine state between executions or let a host file path reach agent code.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::alloc::{AllocStats, CountingAllocator};
use crate::host::{ApprovalAsk, ChildBudget, Host, HostError, HostFn, SandboxEvent};
use crate::job::{CancelHandle, Job};
use crate::net::{self, HttpCall, HttpRules, NetworkPolicy};
use crate::report::{
    ErrorInfo, ExecutionReport, HostCallAudit, LimitKind, LogEntry, LogLevel, ResourceUsage, Status,
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
/// Extra time after the deadline for the final audit records of a run.
const RECORD_TIMEOUT: Duration = Duration::from_secs(5);
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
    api_calls: u64,
    host_calls: u64,
    denied: u64,
    minute: VecDeque<Instant>,
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

/// Everything the bridge functions share for one execution.
struct ExecState {
    host: Arc<dyn Host>,
    net: NetworkPolicy,
    limits: Limits,
    scopes: std::collections::BTreeSet<thetazero_core::permissions::Scope>,
    allow_network: bool,
    http_rules: Arc<HttpRules>,
    cancel: CancelHandle,
    started: Instant,
    /// The deadline before any time spent waiting for a human.
    deadline_base: Instant,
    /// Time spent waiting for approvals, which the deadline does not count:
    /// the total of finished waits and the start of the current one.
    waited: Mutex<(Duration, Option<Instant>)>,
    /// Ask a human for calls the permissions refuse, waiting at most this.
    approval_timeout: Option<Duration>,
    /// Which calls may be asked about; `None` is every one.
    approval_calls: Option<Vec<String>>,
    abort: Mutex<Option<(LimitKind, String)>>,
    aborted: AtomicBool,
    abort_notify: Notify,
    interrupted: AtomicBool,
    alloc: Arc<AllocStats>,
    counters: Mutex<Counters>,
}

impl ExecState {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        // A poisoned lock only means a panic elsewhere on this thread; the
        // counters are still consistent enough to report.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the execution with a limit. The first reason wins.
    fn abort(&self, limit: LimitKind, detail: String) {
        let mut slot = self.abort.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some((limit, detail));
        }
        drop(slot);
        self.aborted.store(true, Ordering::SeqCst);
        self.abort_notify.notify_waiters();
    }

    fn abort_reason(&self) -> Option<(LimitKind, String)> {
        self.abort.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// The deadline, moved on by every moment spent waiting for a human.
    fn deadline(&self) -> Instant {
        let (total, current) = *self.waited.lock().unwrap_or_else(|e| e.into_inner());
        let running = current.map_or(Duration::ZERO, |since| since.elapsed());
        self.deadline_base + total + running
    }

    fn begin_wait(&self) {
        self.waited.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(Instant::now());
    }

    fn end_wait(&self) {
        let mut w = self.waited.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = w.1.take() {
            w.0 += since.elapsed();
        }
    }

    /// Resolves when the deadline has passed, however often it moved.
    async fn deadline_passed(&self) {
        loop {
            let deadline = self.deadline();
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            if Instant::now() >= self.deadline() {
                return;
            }
        }
    }

    fn should_interrupt(&self) -> bool {
        let stop = self.cancel.is_cancelled()
            || self.aborted.load(Ordering::Relaxed)
            || self.alloc.limit_hit()
            || Instant::now() >= self.deadline();
        if stop {
            self.interrupted.store(true, Ordering::Relaxed);
        }
        stop
    }

    /// Adds an audit row and returns its index so the duration can be filled in.
    fn push_audit(&self, function: HostFn, args_summary: String, allowed: bool) -> Option<usize> {
        let mut c = self.counters();
        c.host_calls += 1;
        if !allowed {
            c.denied += 1;
        }
        c.push_audit(function.name(), args_summary, allowed)
    }

    fn finish_audit(&self, index: Option<usize>, allowed: bool, duration: Duration) {
        if let Some(i) = index {
            let mut c = self.counters();
            if let Some(row) = c.audit.get_mut(i) {
                row.allowed = allowed;
                row.duration_ms = duration.as_secs_f64() * 1000.0;
            }
        }
    }

    /// Counts a call against the per-run and per-minute budgets; a call past
    /// either ends the execution.
    fn count_call(&self) -> Result<(), LimitKind> {
        if let Some((limit, _)) = self.abort_reason() {
            // Already ending: do not count or audit calls made while unwinding.
            return Err(limit);
        }
        let mut c = self.counters();
        c.api_calls += 1;
        if c.api_calls > self.limits.max_api_calls_per_run {
            drop(c);
            self.abort(
                LimitKind::ApiCalls,
                format!(
                    "more than {} host API calls in one run",
                    self.limits.max_api_calls_per_run
                ),
            );
            return Err(LimitKind::ApiCalls);
        }
        let now = Instant::now();
        while c
            .minute
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            c.minute.pop_front();
        }
        if c.minute.len() as u64 >= self.limits.max_api_calls_per_minute {
            drop(c);
            self.abort(
                LimitKind::ApiCallsPerMinute,
                format!(
                    "more than {} host API calls in one minute",
                    self.limits.max_api_calls_per_minute
                ),
            );
            return Err(LimitKind::ApiCallsPerMinute);
        }
        c.minute.push_back(now);
        Ok(())
    }

    fn remaining_budget(&self) -> ChildBudget {
        let c = self.counters();
        ChildBudget {
            api_calls: self
                .limits
                .max_api_calls_per_run
                .saturating_sub(c.api_calls),
            time_ms: self
                .deadline()
                .saturating_duration_since(Instant::now())
                .as_millis() as u64,
        }
    }
}

/// Wraps the engine future to add up the time spent inside its polls, which is
/// the time this execution held the worker thread.
struct Timed<F> {
    inner: Pin<Box<F>>,
    spent: Arc<Mutex<Duration>>,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        let out = self.inner.as_mut().poll(cx);
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
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
    job: Job,
    net: NetworkPolicy,
    prepared: Option<Prepared>,
) -> ExecutionReport {
    let started = Instant::now();
    let limits = job.limits;
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
    let state = Arc::new(ExecState {
        host: job.host.clone(),
        net,
        limits,
        scopes: job.scopes.clone(),
        allow_network: job.allow_network,
        http_rules: Arc::new(HttpRules {
            allowed_domains: job.allowed_domains.clone(),
            dev_localhost: job.template == Template::Dev && job.allow_localhost,
            limits,
        }),
        cancel: job.cancel.clone(),
        started,
        deadline_base: started + Duration::from_millis(limits.cpu_time_ms),
        waited: Mutex::new((Duration::ZERO, None)),
        approval_timeout: job.approval_timeout,
        approval_calls: job.approval_calls.clone(),
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
            api_calls: 0,
            host_calls: 0,
            denied: 0,
            minute: VecDeque::new(),
        }),
    });
    let spent = Arc::new(Mutex::new(Duration::ZERO));

    let ended = if job.cancel.is_cancelled() {
        Ended::Killed
    } else {
        match serde_json::to_string(&job.input) {
            Ok(input) if input.len() as u64 <= limits.max_input_bytes => match prepared {
                Some(prepared) => run_engine(&job, input, &state, prepared, &spent).await,
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

    finish(&job, &state, ended, &spent).await
}

async fn run_engine(
    job: &Job,
    input: String,
    state: &Arc<ExecState>,
    prepared: Prepared,
    spent: &Arc<Mutex<Duration>>,
) -> Ended {
    let Prepared { rt, ctx, alloc: _ } = prepared;
    // 1–4 MiB: deep enough for real code, well below the worker's own stack.
    let stack = job.limits.stack_kb.clamp(1024, 4096) as usize * 1024;
    rt.set_max_stack_size(stack).await;
    let watcher = state.clone();
    rt.set_interrupt_handler(Some(Box::new(move || watcher.should_interrupt())))
        .await;

    let code = format!("(async () => {{{}\n}})()", job.code);
    let info = serde_json::json!({
        "agentName": job.agent_name,
        "agentVersion": job.agent_version,
        "executionId": job.execution_id,
    })
    .to_string();
    let dev = job.template == Template::Dev;
    let js_state = state.clone();
    let scope = job.code_cache_scope;
    let engine = ctx.async_with(async move |ctx| {
        run_in_context(ctx, js_state, code, input, info, dev, scope).await
    });
    let timed = Timed {
        inner: Box::pin(engine),
        spent: spent.clone(),
    };
    let ended = tokio::select! {
        biased;
        _ = state.cancel.cancelled() => Ended::Killed,
        _ = state.aborted() => Ended::Aborted,
        _ = state.deadline_passed() => Ended::TimedOut,
        outcome = timed => Ended::Finished(outcome),
    };
    // Contexts go before their runtime. Pending host futures are dropped with
    // it, before the report exists, so the host sees no effect after a report.
    drop(ctx);
    drop(rt);
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
    ErrorInfo {
        kind: "TypeError".into(),
        message: message.into(),
        stack: None,
    }
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
        move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<()> {
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
            move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<()> {
                bridge_write_result(&ctx, &result_state, args.0)
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

fn bridge_log<'js>(
    ctx: &Ctx<'js>,
    state: &ExecState,
    args: Vec<Value<'js>>,
) -> rquickjs::Result<()> {
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
    c.logs.push(LogEntry {
        level,
        message,
        at: OffsetDateTime::now_utc(),
    });
    c.push_audit("log", summary, true);
    Ok(())
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
    let mut c = state.counters();
    c.host_calls += 1;
    c.result = Some(text);
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

/// The arguments of an asynchronous call, converted before any await so agent
/// traps run now, inside the sandbox.
enum CallArgs {
    Key(String),
    KeyValue(String, Json),
    Value(Json),
    NameValue(String, Json),
    Http(HttpCall),
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
        HostFn::ReadContext | HostFn::StorageGet => {
            CallArgs::Key(string_arg(ctx, args.first(), "key")?)
        }
        HostFn::WriteContext | HostFn::StoragePut => CallArgs::KeyValue(
            string_arg(ctx, args.first(), "key")?,
            json_arg(ctx, args.get(1), cap, "value")?,
        ),
        HostFn::Inference => CallArgs::Value(json_arg(ctx, args.first(), cap, "request")?),
        HostFn::GetExecution => {
            CallArgs::Value(json_arg(ctx, args.first(), MAX_KEY_BYTES as u64, "id")?)
        }
        HostFn::CallAgent => CallArgs::NameValue(
            string_arg(ctx, args.first(), "name")?,
            json_arg(ctx, args.get(1), state.limits.max_input_bytes, "input")?,
        ),
        HostFn::HttpRequest => CallArgs::Http(http_args(ctx, state, args)?),
        HostFn::Log | HostFn::WriteResult => CallArgs::Value(Json::Null),
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
            Some(s) => Some(s.to_string()?.into_bytes()),
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

/// The call's exact arguments, which an approval is bound to.
fn args_json(args: &CallArgs) -> Json {
    match args {
        CallArgs::Key(k) => serde_json::json!({"key": k}),
        CallArgs::KeyValue(k, v) => serde_json::json!({"key": k, "value": v}),
        CallArgs::Value(v) => v.clone(),
        CallArgs::NameValue(n, v) => serde_json::json!({"name": n, "input": v}),
        CallArgs::Http(call) => serde_json::json!({
            "method": call.method,
            "url": call.url,
            "headers": call.headers,
            "body_hex": call.body.as_ref().map(|b| {
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            }),
        }),
    }
}

/// The normalised host an `http_request` names, as the allow-list sees it
/// (IPv6 literals are refused by the network rules whatever the list says).
fn request_host(url: &str) -> Option<String> {
    match url::Url::parse(url).ok()?.host()? {
        url::Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(_) => None,
    }
}

/// Why an `http_request` needs a human when the allow-list does not admit its
/// host; `None` for anything else.
fn outside_allowlist(state: &ExecState, args: &CallArgs) -> Option<String> {
    let CallArgs::Http(call) = args else {
        return None;
    };
    if state.http_rules.dev_localhost {
        return None;
    }
    let host = request_host(&call.url)?;
    (!net::domain_allowed(&host, &state.http_rules.allowed_domains))
        .then(|| format!("{host} is not in allowed_domains"))
}

/// The allow-list with the request's host added, for one approved call.
fn approved_rules(state: &ExecState, url: &str) -> Option<Arc<HttpRules>> {
    let mut allowed = state.http_rules.allowed_domains.clone();
    allowed.push(request_host(url)?);
    Some(Arc::new(HttpRules {
        allowed_domains: allowed,
        dev_localhost: state.http_rules.dev_localhost,
        limits: state.http_rules.limits,
    }))
}

fn args_summary(args: &CallArgs) -> String {
    let s = match args {
        CallArgs::Key(k) => format!("key={k:?}"),
        CallArgs::KeyValue(k, v) => format!("key={k:?} value={} bytes", v.to_string().len()),
        CallArgs::Value(v) => format!("{} bytes", v.to_string().len()),
        CallArgs::NameValue(n, v) => format!("name={n:?} input={} bytes", v.to_string().len()),
        CallArgs::Http(call) => {
            // Scheme, host and path only: queries and headers may carry secrets.
            let shown = url::Url::parse(&call.url)
                .map(|mut u| {
                    u.set_query(None);
                    u.set_fragment(None);
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                    u.to_string()
                })
                .unwrap_or_else(|_| "<invalid url>".into());
            format!("{} {shown}", call.method)
        }
    };
    summarize(&s)
}

/// The settled value of a host call, converted to JavaScript when the promise
/// resolves (inside the engine lock).
enum Reply {
    Json(Json),
    Fail { code: &'static str, message: String },
}

impl<'js> IntoJs<'js> for Reply {
    fn into_js(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        match self {
            Reply::Json(Json::Null) => Ok(Value::new_null(ctx.clone())),
            Reply::Json(v) => ctx.json_parse(v.to_string()),
            Reply::Fail { code, message } => Err(throw_coded(ctx, code, &message)),
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
        let mut c = state.counters();
        c.host_calls += 1;
        drop(c);
        return Err(throw_coded(
            ctx,
            "LIMIT_EXCEEDED",
            &format!("host API call limit reached ({})", limit.as_str()),
        ));
    }
    let parsed = parse_args(ctx, state, f, &args)?;
    let summary = args_summary(&parsed);
    let scope = f.scope();
    let denial = match scope {
        Some(s) if !state.scopes.contains(&s) => Some((
            "PERMISSION_DENIED",
            format!("{} needs the {} permission", f.name(), s.as_str()),
        )),
        _ if f == HostFn::HttpRequest && !state.allow_network => Some((
            "PERMISSION_DENIED",
            "http_request needs allow_network: true in the agent's config".to_string(),
        )),
        _ => None,
    };
    let index = state.push_audit(f, summary.clone(), denial.is_none());
    let fut = host_call(state.clone(), f, parsed, summary, denial, index);
    Promise::wrap_future(ctx, fut).map(|p| p.into_value())
}

async fn host_call(
    state: Arc<ExecState>,
    f: HostFn,
    args: CallArgs,
    summary: String,
    denial: Option<(&'static str, String)>,
    index: Option<usize>,
) -> Reply {
    let start = Instant::now();
    let scope = f.scope().map(|s| s.as_str().to_string());
    // A call the permissions refuse may be put to a human instead.
    let mut denial = denial;
    let mut rules = None;
    let approvable = state
        .approval_calls
        .as_ref()
        .is_none_or(|calls| calls.iter().any(|c| c == f.name()));
    if let Some(timeout) = state.approval_timeout.filter(|_| approvable) {
        let refused = match &denial {
            Some(("PERMISSION_DENIED", reason)) => Some(reason.clone()),
            Some(_) => None,
            None => outside_allowlist(&state, &args),
        };
        if let Some(reason) = refused {
            let was_denied = denial.is_some();
            let ask = ApprovalAsk {
                function: f,
                args: args_json(&args),
                summary: summary.clone(),
                reason: reason.clone(),
                timeout,
            };
            state.begin_wait();
            let answer = state.host.request_approval(ask).await;
            state.end_wait();
            match answer {
                Ok(true) => {
                    if was_denied {
                        let mut c = state.counters();
                        c.denied = c.denied.saturating_sub(1);
                    }
                    // The approved host joins the allow-list for this call.
                    if let CallArgs::Http(call) = &args {
                        rules = approved_rules(&state, &call.url);
                    }
                    denial = None;
                }
                Ok(false) | Err(_) => {
                    if !was_denied {
                        state.counters().denied += 1;
                    }
                    denial = Some((
                        "PERMISSION_DENIED",
                        format!("{reason}; a human did not approve this call"),
                    ));
                }
            }
        }
    }
    let decision = SandboxEvent::HostCallDecision {
        function: f,
        scope: scope.clone(),
        args_summary: summary,
        allowed: denial.is_none(),
    };
    let recorded = state.host.record(decision).await;
    let denial = match (denial, recorded) {
        (Some(d), _) => Some(d),
        // Fail closed: a decision that could not be recorded is a refusal.
        (None, Err(_)) => Some((
            "AUDIT_UNAVAILABLE",
            "the call was refused because it could not be audited".to_string(),
        )),
        (None, Ok(())) => None,
    };
    if let Some((code, reason)) = denial {
        deny(&state, f, scope, code, &reason, index, start).await;
        return Reply::Fail {
            code,
            message: reason,
        };
    }
    let result = perform(&state, f, args, rules).await;
    let duration = start.elapsed();
    state.finish_audit(index, true, duration);
    let (ok, error_code) = match &result {
        Ok(_) => (true, None),
        Err(Failure::Host(e)) => (false, Some(e.code().to_string())),
        Err(Failure::Net(e)) => (false, Some(e.code().to_string())),
    };
    let _ = state
        .host
        .record(SandboxEvent::HostCallOutcome {
            function: f,
            ok,
            error_code,
            duration_ms: duration.as_secs_f64() * 1000.0,
        })
        .await;
    match result {
        Ok(v) => Reply::Json(v),
        Err(Failure::Host(e)) => Reply::Fail {
            code: e.code(),
            message: e.to_string(),
        },
        Err(Failure::Net(e)) => {
            if let crate::net::NetError::Refused(reason) = &e {
                // Network policy refusals are permission denials too.
                {
                    let mut c = state.counters();
                    c.denied += 1;
                }
                state.finish_audit(index, false, duration);
                let _ = state
                    .host
                    .record(SandboxEvent::PermissionDenied {
                        function: f,
                        scope: f.scope().map(|s| s.as_str().to_string()),
                        code: e.code().to_string(),
                        reason: reason.clone(),
                        is_violation: true,
                    })
                    .await;
            }
            Reply::Fail {
                code: e.code(),
                message: e.to_string(),
            }
        }
    }
}

async fn deny(
    state: &ExecState,
    f: HostFn,
    scope: Option<String>,
    code: &'static str,
    reason: &str,
    index: Option<usize>,
    start: Instant,
) {
    state.finish_audit(index, false, start.elapsed());
    let _ = state
        .host
        .record(SandboxEvent::PermissionDenied {
            function: f,
            scope,
            code: code.to_string(),
            reason: reason.to_string(),
            is_violation: true,
        })
        .await;
}

enum Failure {
    Host(HostError),
    Net(crate::net::NetError),
}

/// Runs an allowed call; `approved` is the allow-list widened by a human's
/// approval of this one call.
async fn perform(
    state: &ExecState,
    f: HostFn,
    args: CallArgs,
    approved: Option<Arc<HttpRules>>,
) -> Result<Json, Failure> {
    let host = &state.host;
    let h = Failure::Host;
    match (f, args) {
        (HostFn::ReadContext, CallArgs::Key(k)) => host
            .read_context(&k)
            .await
            .map(|v| v.unwrap_or(Json::Null))
            .map_err(h),
        (HostFn::WriteContext, CallArgs::KeyValue(k, v)) => host
            .write_context(&k, v)
            .await
            .map(|()| Json::Null)
            .map_err(h),
        (HostFn::StorageGet, CallArgs::Key(k)) => host
            .storage_get(&k)
            .await
            .map(|v| v.unwrap_or(Json::Null))
            .map_err(h),
        (HostFn::StoragePut, CallArgs::KeyValue(k, v)) => host
            .storage_put(&k, v)
            .await
            .map(|()| Json::Null)
            .map_err(h),
        (HostFn::Inference, CallArgs::Value(v)) => host.inference(v).await.map_err(h),
        (HostFn::CallAgent, CallArgs::NameValue(name, input)) => {
            let budget = state.remaining_budget();
            host.call_agent(&name, input, budget).await.map_err(h)
        }
        (HostFn::GetExecution, CallArgs::Value(id)) => host
            .get_execution(id)
            .await
            .map(|v| v.unwrap_or(Json::Null))
            .map_err(h),
        (HostFn::HttpRequest, CallArgs::Http(call)) => {
            let url = call.url.clone();
            let rules = approved.unwrap_or_else(|| state.http_rules.clone());
            let response = net::http_request(call, &rules, &state.net)
                .await
                .map_err(Failure::Net)?;
            // Fetched content can carry instructions aimed at the agent
            // (indirect injection): the host screens it before the agent
            // sees any of it.
            host.screen_fetched(&url, &response).await.map_err(h)?;
            Ok(response)
        }
        _ => Err(Failure::Host(HostError::Unsupported("this call"))),
    }
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
            return ErrorInfo {
                kind,
                message: summarize_long(message),
                stack,
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
    ErrorInfo {
        kind: "Error".into(),
        message: summarize_long(format!("uncaught {message}")),
        stack: None,
    }
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

async fn finish(
    job: &Job,
    state: &Arc<ExecState>,
    ended: Ended,
    spent: &Arc<Mutex<Duration>>,
) -> ExecutionReport {
    let abort = state.abort_reason();
    let interrupted = state.interrupted.load(Ordering::Relaxed);
    let past_deadline = Instant::now() >= state.deadline();
    let mut error = None;
    let mut output = Json::Null;
    let mut limit: Option<(LimitKind, String)> = None;
    let status = if matches!(ended, Ended::Killed) || job.cancel.is_cancelled() {
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
    } else {
        match ended {
            Ended::TimedOut => Status::TimedOut,
            Ended::Finished(_) if interrupted && past_deadline => Status::TimedOut,
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
                    Some(t) => match serde_json::from_str(&t) {
                        Ok(v) => {
                            output = v;
                            Status::Completed
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
                } else {
                    error = Some(info);
                    Status::Failed
                }
            }
            Ended::Finished(JsOutcome::Setup(message)) => {
                error = Some(ErrorInfo {
                    kind: "SandboxError".into(),
                    message,
                    stack: None,
                });
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
            Status::Killed => Some(ErrorInfo {
                kind: "Killed".into(),
                message: "the execution was killed".into(),
                stack: None,
            }),
            Status::TimedOut | Status::LimitExceeded => {
                limit.as_ref().map(|(_, detail)| ErrorInfo {
                    kind: "LimitExceeded".into(),
                    message: detail.clone(),
                    stack: None,
                })
            }
            _ => None,
        };
    }
    if let Some((kind, detail)) = &limit {
        let event = SandboxEvent::SandboxLimitHit {
            limit: *kind,
            detail: detail.clone(),
            is_violation: true,
        };
        let _ = tokio::time::timeout(RECORD_TIMEOUT, state.host.record(event)).await;
    }
    let cpu = *spent.lock().unwrap_or_else(|e| e.into_inner());
    let c = state.counters();
    let violations = c.denied + u64::from(limit.is_some());
    ExecutionReport {
        status,
        limit: limit.map(|(k, _)| k),
        output,
        error,
        logs: c.logs.clone(),
        host_call_audit: c.audit.clone(),
        host_call_audit_dropped: c.audit_dropped,
        resource_usage: ResourceUsage {
            cpu_ms: cpu.as_secs_f64() * 1000.0,
            memory_mb: state.alloc.peak() as f64 / MIB,
            api_calls: c.api_calls,
            host_calls: c.host_calls,
        },
        violation_count: violations,
        was_terminated: matches!(
            status,
            Status::Killed | Status::TimedOut | Status::LimitExceeded
        ),
        duration_ms: state.started.elapsed().as_secs_f64() * 1000.0,
    }
}
