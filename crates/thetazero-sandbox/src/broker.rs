//! The server's side of every counted host call: it checks the permission again, puts refusals to a human where the agent allows that, records the decision before anything happens, performs the call and records its outcome. It runs in the server process whatever the engine mode, and must never trust what a worker says about permissions or budgets.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thetazero_core::limits::Limits;
use thetazero_core::permissions::Scope;

use crate::clock::RunClock;
use crate::host::{ApprovalAsk, ChildBudget, Host, HostError, HostFn, SandboxEvent};
use crate::net::{self, HttpCall, HttpRules, NetworkPolicy};
use crate::report::LimitKind;
use crate::Locked;

/// The arguments of an asynchronous call, converted inside the engine (where
/// agent traps run under its limits) before they cross to the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum CallArgs {
    Key { key: String },
    KeyValue { key: String, value: Json },
    Value { value: Json },
    NameValue { name: String, input: Json },
    Http { call: HttpCall },
}

impl CallArgs {
    /// Bytes the server holds for these arguments while the call is pending;
    /// charged against the run's memory limit.
    pub(crate) fn held_bytes(&self) -> usize {
        let json = |v: &Json| v.to_string().len();
        64 + match self {
            CallArgs::Key { key } => key.len(),
            CallArgs::KeyValue { key, value } => key.len() + json(value),
            CallArgs::Value { value } => json(value),
            CallArgs::NameValue { name, input } => name.len() + json(input),
            CallArgs::Http { call } => {
                call.url.len()
                    + call.method.len()
                    + call
                        .headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
                    + call.body.as_ref().map_or(0, Vec::len)
            }
        }
    }
}

/// The settled value of a host call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Reply {
    Json { value: Json },
    Fail { code: String, message: String },
}

impl Reply {
    pub(crate) fn fail(code: &str, message: impl Into<String>) -> Reply {
        Reply::Fail {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A settled call with what the run's own audit row needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CallReply {
    pub allowed: bool,
    /// The call was refused by permission or network policy (a violation).
    pub denied: bool,
    pub duration_ms: f64,
    pub reply: Reply,
    /// In a worker: the bytes charged to the run while this reply waited to
    /// reach the engine, released once it has (never on the wire).
    #[serde(skip, default)]
    pub charged: usize,
}

impl CallReply {
    /// The reply that stands in for one that would take the run past its
    /// memory limit while it waits to reach the engine.
    pub(crate) fn memory_limit_reached() -> CallReply {
        CallReply {
            allowed: true,
            denied: false,
            duration_ms: 0.0,
            reply: Reply::Fail {
                code: "LIMIT_EXCEEDED".into(),
                message: "memory limit reached".into(),
            },
            charged: 0,
        }
    }
}

/// Host API calls counted against `max_api_calls_per_run` and
/// `max_api_calls_per_minute`. The engine counts to throw at once; the
/// broker counts again because a worker may lie.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    pub api_calls: u64,
    minute: VecDeque<Instant>,
}

impl Budget {
    pub(crate) fn count(&mut self, limits: &Limits) -> Result<(), (LimitKind, String)> {
        self.api_calls += 1;
        if self.api_calls > limits.max_api_calls_per_run {
            return Err((
                LimitKind::ApiCalls,
                format!(
                    "more than {} host API calls in one run",
                    limits.max_api_calls_per_run
                ),
            ));
        }
        let now = Instant::now();
        while self
            .minute
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.minute.pop_front();
        }
        if self.minute.len() as u64 >= limits.max_api_calls_per_minute {
            return Err((
                LimitKind::ApiCallsPerMinute,
                format!(
                    "more than {} host API calls in one minute",
                    limits.max_api_calls_per_minute
                ),
            ));
        }
        self.minute.push_back(now);
        Ok(())
    }
}

/// What one run may do, as the server decided when it admitted the run.
pub(crate) struct Rules {
    pub limits: Limits,
    pub scopes: BTreeSet<Scope>,
    pub allow_network: bool,
    pub http: Arc<HttpRules>,
    pub approval_timeout: Option<Duration>,
    pub approval_calls: Option<Vec<String>>,
}

impl Rules {
    /// Why the agent's own configuration refuses `f`, if it does.
    pub(crate) fn denial(&self, f: HostFn) -> Option<(&'static str, String)> {
        denial(f, &self.scopes, self.allow_network)
    }
}

/// Why an agent with these permissions refuses `f`, if it does. The engine
/// asks too, for the run's own audit row; the broker's answer is the one
/// that counts.
pub(crate) fn denial(
    f: HostFn,
    scopes: &BTreeSet<Scope>,
    allow_network: bool,
) -> Option<(&'static str, String)> {
    match f.scope() {
        Some(s) if !scopes.contains(&s) => Some((
            "PERMISSION_DENIED",
            format!("{} needs the {} permission", f.name(), s.as_str()),
        )),
        _ if f == HostFn::HttpRequest && !allow_network => Some((
            "PERMISSION_DENIED",
            "http_request needs allow_network: true in the agent's config".to_string(),
        )),
        _ => None,
    }
}

/// Told when an approval wait of the run begins (`true`) and ends.
pub(crate) type ApprovalSignal = Box<dyn Fn(bool) + Send + Sync>;

/// One run's broker.
pub(crate) struct Broker {
    host: Arc<dyn Host>,
    net: NetworkPolicy,
    rules: Rules,
    clock: Arc<RunClock>,
    approval_signal: ApprovalSignal,
    budget: Mutex<Budget>,
    /// Bytes of pending calls' arguments this side holds.
    held: Mutex<usize>,
    /// A limit the broker itself saw passed (only a lying worker gets here).
    overrun: Mutex<Option<(LimitKind, String)>>,
    denied: Mutex<u64>,
    /// Calls in flight here.
    in_flight: Mutex<usize>,
    /// Held while a child execution runs (`call_agent`).
    children: tokio::sync::Mutex<()>,
    /// Log entries and their bytes put to the host's screen: no more than
    /// the run may log, whatever a worker sends.
    logs_screened: Mutex<(u64, u64)>,
    /// Log screens at once: entries an agent does not wait for queue here
    /// rather than all reaching the host (and an external scorer) at once.
    log_screens: tokio::sync::Semaphore,
    /// Whether the broker tells the clock about each call (the server's
    /// copy of a worker's clock; in process the engine does it).
    counts_calls: bool,
}

/// Calls one run may have in flight at once.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 256;
/// Log entries one run may have the host screen at once.
const LOG_SCREENS_AT_ONCE: usize = 8;
const MAX_KEY_BYTES: usize = 1024;
const MAX_URL_BYTES: usize = 8192;
const MAX_HEADER_BYTES: usize = 64 << 10;
const MAX_SUMMARY_CHARS: usize = 200;

/// What the audit log and a human approver read of a call: derived here,
/// from the arguments the server holds, never taken from a worker.
pub(crate) fn args_summary(args: &CallArgs) -> String {
    let s = match args {
        CallArgs::Key { key } => format!("key={key:?}"),
        CallArgs::KeyValue { key, value } => {
            format!("key={key:?} value={} bytes", value.to_string().len())
        }
        CallArgs::Value { value } => format!("{} bytes", value.to_string().len()),
        CallArgs::NameValue { name, input } => {
            format!("name={name:?} input={} bytes", input.to_string().len())
        }
        CallArgs::Http { call } => {
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
    if s.chars().count() <= MAX_SUMMARY_CHARS {
        s
    } else {
        let mut out: String = s.chars().take(MAX_SUMMARY_CHARS).collect();
        out.push('…');
        out
    }
}

/// The engine's argument rules, checked again: a worker may send anything.
fn validate(f: HostFn, args: &CallArgs, limits: &Limits) -> Result<(), (&'static str, String)> {
    let key_ok = |k: &str| !k.is_empty() && k.len() <= MAX_KEY_BYTES;
    let json_len = |v: &Json| v.to_string().len() as u64;
    let too_large = |what: &str, cap: u64| {
        Err((
            "VALUE_TOO_LARGE",
            format!("{what} is larger than {cap} bytes"),
        ))
    };
    let bad = |what: &str| Err(("INVALID_ARGUMENT", what.to_string()));
    match (f, args) {
        (HostFn::ReadContext | HostFn::StorageGet, CallArgs::Key { key }) => {
            if key_ok(key) {
                Ok(())
            } else {
                bad("key must be 1 to 1024 bytes")
            }
        }
        (HostFn::WriteContext | HostFn::StoragePut, CallArgs::KeyValue { key, value }) => {
            if !key_ok(key) {
                bad("key must be 1 to 1024 bytes")
            } else if json_len(value) > limits.max_output_bytes {
                too_large("value", limits.max_output_bytes)
            } else {
                Ok(())
            }
        }
        (HostFn::Inference, CallArgs::Value { value }) => {
            if json_len(value) > limits.max_output_bytes {
                too_large("request", limits.max_output_bytes)
            } else {
                Ok(())
            }
        }
        (HostFn::GetExecution, CallArgs::Value { value }) => {
            if json_len(value) > MAX_KEY_BYTES as u64 {
                too_large("id", MAX_KEY_BYTES as u64)
            } else {
                Ok(())
            }
        }
        (HostFn::CallAgent, CallArgs::NameValue { name, input }) => {
            if !key_ok(name) {
                bad("name must be 1 to 1024 bytes")
            } else if json_len(input) > limits.max_input_bytes {
                too_large("input", limits.max_input_bytes)
            } else {
                Ok(())
            }
        }
        (HostFn::HttpRequest, CallArgs::Http { call }) => {
            let headers: usize = call.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
            if call.url.len() > MAX_URL_BYTES {
                bad("url is too long")
            } else if !method_ok(&call.method) {
                // The method is shown in every record of the call: a token,
                // not a place for text.
                bad("method must be an HTTP method name: 1 to 32 ASCII letters or hyphens")
            } else if headers > MAX_HEADER_BYTES {
                too_large("headers", MAX_HEADER_BYTES as u64)
            } else if call.body.as_ref().map_or(0, Vec::len) as u64 > limits.max_http_request_bytes
            {
                Err((
                    "REQUEST_TOO_LARGE",
                    format!(
                        "request body larger than {} bytes",
                        limits.max_http_request_bytes
                    ),
                ))
            } else {
                Ok(())
            }
        }
        _ => bad("these arguments do not belong to this call"),
    }
}

/// An HTTP method name as requests carry it: a short run of ASCII letters
/// and hyphens (`GET`, `PROPFIND`, `VERSION-CONTROL`).
pub(crate) fn method_ok(method: &str) -> bool {
    (1..=32).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
}

/// One call in flight of a run; the run waits on the host while any is.
struct InFlight<'a>(&'a Mutex<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut n = self.0.locked();
        *n = n.saturating_sub(1);
        if *n == 0 {
            thetazero_core::telemetry::global().runs_waiting.dec();
        }
    }
}

impl Broker {
    pub(crate) fn new(
        host: Arc<dyn Host>,
        net: NetworkPolicy,
        rules: Rules,
        clock: Arc<RunClock>,
        approval_signal: ApprovalSignal,
    ) -> Broker {
        Broker {
            host,
            net,
            rules,
            clock,
            approval_signal,
            budget: Mutex::default(),
            held: Mutex::new(0),
            overrun: Mutex::new(None),
            denied: Mutex::new(0),
            in_flight: Mutex::new(0),
            children: tokio::sync::Mutex::new(()),
            logs_screened: Mutex::new((0, 0)),
            log_screens: tokio::sync::Semaphore::new(LOG_SCREENS_AT_ONCE),
            counts_calls: false,
        }
    }

    /// The broker of a run whose engine is in another process: it tells the
    /// run's clock (the server's copy) about every call.
    pub(crate) fn counting_calls(mut self) -> Broker {
        self.counts_calls = true;
        self
    }

    /// Holds `bytes` for the run (a reply queued for its worker) within its
    /// memory limit; false when they do not fit, and the run is over it.
    pub(crate) fn hold(&self, bytes: usize) -> bool {
        let mut held = self.held.locked();
        if held.saturating_add(bytes) > self.memory_cap() {
            drop(held);
            self.set_overrun((
                LimitKind::Memory,
                format!(
                    "host-call replies held for the run above its memory limit of {} MiB",
                    self.rules.limits.memory_mb
                ),
            ));
            return false;
        }
        *held += bytes;
        true
    }

    pub(crate) fn release(&self, bytes: usize) {
        let mut held = self.held.locked();
        *held = held.saturating_sub(bytes);
    }

    fn memory_cap(&self) -> usize {
        usize::try_from(self.rules.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// Counted calls the broker saw.
    pub(crate) fn api_calls(&self) -> u64 {
        self.budget.locked().api_calls
    }

    /// Calls the broker refused.
    pub(crate) fn denied(&self) -> u64 {
        *self.denied.locked()
    }

    pub(crate) fn overrun(&self) -> Option<(LimitKind, String)> {
        self.overrun.locked().clone()
    }

    fn set_overrun(&self, limit: (LimitKind, String)) {
        let mut slot = self.overrun.locked();
        if slot.is_none() {
            *slot = Some(limit);
        }
    }

    fn count_denied(&self) {
        *self.denied.locked() += 1;
    }

    /// What the run has left, for a child it starts.
    pub(crate) fn remaining(&self) -> ChildBudget {
        ChildBudget {
            api_calls: self
                .rules
                .limits
                .max_api_calls_per_run
                .saturating_sub(self.api_calls()),
            time_ms: self
                .clock
                .deadline()
                .saturating_duration_since(Instant::now())
                .as_millis() as u64,
        }
    }

    /// Runs one counted call from start to end. Never panics on its input.
    pub(crate) async fn call(&self, f: HostFn, args: CallArgs) -> CallReply {
        if f == HostFn::Log {
            if self.counts_calls {
                self.clock.call(true);
            }
            let reply = self.screen_log(args).await;
            if self.counts_calls {
                self.clock.call(false);
            }
            return reply;
        }
        {
            let mut n = self.in_flight.locked();
            if *n >= MAX_CALLS_IN_FLIGHT {
                return CallReply {
                    allowed: false,
                    denied: false,
                    duration_ms: 0.0,
                    reply: Reply::fail(
                        "LIMIT_EXCEEDED",
                        format!("more than {MAX_CALLS_IN_FLIGHT} host calls in flight"),
                    ),
                    charged: 0,
                };
            }
            *n += 1;
            if *n == 1 {
                thetazero_core::telemetry::global().runs_waiting.inc();
            }
        }
        // Counted out when the call ends or its future is dropped (a kill
        // aborts it), so `runs_waiting` cannot leak.
        let _in_flight = InFlight(&self.in_flight);
        if self.counts_calls {
            self.clock.call(true);
        }
        let reply = self.call_counted(f, args).await;
        if self.counts_calls {
            self.clock.call(false);
        }
        reply
    }

    /// A log entry put to the host's screen as it is written. Not a counted
    /// call: the run's log limits bound it, as they bound the entries.
    async fn screen_log(&self, args: CallArgs) -> CallReply {
        let start = Instant::now();
        let reply = |allowed: bool, reply: Reply| CallReply {
            allowed,
            denied: false,
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
            reply,
            charged: 0,
        };
        let CallArgs::Value {
            value: Json::String(message),
        } = args
        else {
            return reply(
                false,
                Reply::fail("INVALID_ARGUMENT", "a log entry is text"),
            );
        };
        {
            let limits = &self.rules.limits;
            let mut seen = self.logs_screened.locked();
            let entries = seen.0 + 1;
            let bytes = seen.1.saturating_add(message.len() as u64);
            if entries > limits.max_log_entries || bytes > limits.max_log_bytes {
                return reply(
                    false,
                    Reply::fail("LIMIT_EXCEEDED", "log volume limit reached"),
                );
            }
            *seen = (entries, bytes);
        }
        let Ok(_permit) = self.log_screens.acquire().await else {
            return reply(
                false,
                Reply::fail("HOST_UNAVAILABLE", "the host is unavailable"),
            );
        };
        match self.host.screen_log(&message).await {
            Ok(()) => reply(true, Reply::Json { value: Json::Null }),
            Err(e) => reply(true, Reply::fail(e.code(), e.to_string())),
        }
    }

    async fn call_counted(&self, f: HostFn, args: CallArgs) -> CallReply {
        let start = Instant::now();
        let reply = |allowed: bool, denied: bool, reply: Reply| CallReply {
            allowed,
            denied,
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
            reply,
            charged: 0,
        };
        if !f.counted() {
            return reply(false, false, Reply::fail("UNSUPPORTED", "not a host call"));
        }
        let counted = self.budget.locked().count(&self.rules.limits);
        if let Err(limit) = counted {
            let message = format!("host API call limit reached ({})", limit.0.as_str());
            self.set_overrun(limit);
            return reply(false, false, Reply::fail("LIMIT_EXCEEDED", message));
        }
        if let Err((code, message)) = validate(f, &args, &self.rules.limits) {
            return reply(false, false, Reply::fail(code, message));
        }
        let summary = args_summary(&args);
        let bytes = args.held_bytes();
        {
            let mut held = self.held.locked();
            let cap = self.memory_cap();
            if held.saturating_add(bytes) > cap {
                drop(held);
                let detail = format!(
                    "pending host-call arguments above the memory limit of {} MiB",
                    self.rules.limits.memory_mb
                );
                self.set_overrun((LimitKind::Memory, detail.clone()));
                return reply(false, false, Reply::fail("LIMIT_EXCEEDED", detail));
            }
            *held += bytes;
        }
        let out = self.decide_and_perform(f, args, summary, start).await;
        let mut held = self.held.locked();
        *held = held.saturating_sub(bytes);
        out
    }

    async fn decide_and_perform(
        &self,
        f: HostFn,
        args: CallArgs,
        summary: String,
        start: Instant,
    ) -> CallReply {
        let done = |allowed: bool, denied: bool, reply: Reply| CallReply {
            allowed,
            denied,
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
            reply,
            charged: 0,
        };
        let scope = f.scope().map(|s| s.as_str().to_string());
        let mut denial = self.rules.denial(f);
        let mut approved_http = None;
        let approvable = self
            .rules
            .approval_calls
            .as_ref()
            .is_none_or(|calls| calls.iter().any(|c| c == f.name()));
        if let Some(timeout) = self.rules.approval_timeout.filter(|_| approvable) {
            let refused = match &denial {
                Some(("PERMISSION_DENIED", reason)) => Some(reason.clone()),
                Some(_) => None,
                None => self.outside_allowlist(&args),
            };
            if let Some(reason) = refused {
                let ask = ApprovalAsk {
                    function: f,
                    args: args_json(&args),
                    summary: summary.clone(),
                    reason: reason.clone(),
                    timeout,
                };
                (self.approval_signal)(true);
                let answer = self.host.request_approval(ask).await;
                (self.approval_signal)(false);
                match answer {
                    Ok(true) => {
                        if let CallArgs::Http { call } = &args {
                            approved_http = self.approved_rules(&call.url);
                        }
                        denial = None;
                    }
                    // What the approver would read is itself blocked: no
                    // request shows it.
                    Err(HostError::Blocked(why)) => {
                        denial = Some(("CONTENT_BLOCKED", why));
                    }
                    // The run already waits on as many requests as it may.
                    Err(HostError::OverQuota(why)) => {
                        denial = Some((
                            "LIMIT_EXCEEDED",
                            format!("{reason}; no request was raised: {why}"),
                        ));
                    }
                    Ok(false) | Err(_) => {
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
        let recorded = self.host.record(decision).await;
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
            self.count_denied();
            let _ = self
                .host
                .record(SandboxEvent::PermissionDenied {
                    function: f,
                    scope,
                    code: code.to_string(),
                    reason: reason.clone(),
                    is_violation: true,
                })
                .await;
            return done(false, true, Reply::fail(code, reason));
        }
        let result = self.perform(f, args, approved_http).await;
        let duration = start.elapsed();
        let (ok, error_code) = match &result {
            Ok(_) => (true, None),
            Err(Failure::Host(e)) => (false, Some(e.code().to_string())),
            Err(Failure::Net(e)) => (false, Some(e.code().to_string())),
        };
        let _ = self
            .host
            .record(SandboxEvent::HostCallOutcome {
                function: f,
                ok,
                error_code,
                duration_ms: duration.as_secs_f64() * 1000.0,
            })
            .await;
        match result {
            Ok(value) => done(true, false, Reply::Json { value }),
            Err(Failure::Host(e)) => done(true, false, Reply::fail(e.code(), e.to_string())),
            Err(Failure::Net(e)) => {
                if let net::NetError::Refused(reason) = &e {
                    // Network policy refusals are permission denials too.
                    self.count_denied();
                    let _ = self
                        .host
                        .record(SandboxEvent::PermissionDenied {
                            function: f,
                            scope: f.scope().map(|s| s.as_str().to_string()),
                            code: e.code().to_string(),
                            reason: reason.clone(),
                            is_violation: true,
                        })
                        .await;
                    return done(false, true, Reply::fail(e.code(), e.to_string()));
                }
                done(true, false, Reply::fail(e.code(), e.to_string()))
            }
        }
    }

    /// Runs an allowed call; `approved` is the allow-list widened by a
    /// human's approval of this one call.
    async fn perform(
        &self,
        f: HostFn,
        args: CallArgs,
        approved: Option<Arc<HttpRules>>,
    ) -> Result<Json, Failure> {
        let host = &self.host;
        let h = Failure::Host;
        match (f, args) {
            (HostFn::ReadContext, CallArgs::Key { key }) => host
                .read_context(&key)
                .await
                .map(|v| v.unwrap_or(Json::Null))
                .map_err(h),
            (HostFn::WriteContext, CallArgs::KeyValue { key, value }) => host
                .write_context(&key, value)
                .await
                .map(|()| Json::Null)
                .map_err(h),
            (HostFn::StorageGet, CallArgs::Key { key }) => host
                .storage_get(&key)
                .await
                .map(|v| v.unwrap_or(Json::Null))
                .map_err(h),
            (HostFn::StoragePut, CallArgs::KeyValue { key, value }) => host
                .storage_put(&key, value)
                .await
                .map(|()| Json::Null)
                .map_err(h),
            (HostFn::Inference, CallArgs::Value { value }) => {
                host.inference(value).await.map_err(h)
            }
            (HostFn::CallAgent, CallArgs::NameValue { name, input }) => {
                // A run's children run one at a time, each with what the
                // run has left when it starts, and what a child spends comes
                // out of the run's own budget: together they never spend
                // more than the run was given.
                let _one_at_a_time = self.children.lock().await;
                let budget = self.remaining();
                let child = host.call_agent(&name, input, budget).await.map_err(h)?;
                let spent = child["resource_usage"]["api_calls"].as_u64().unwrap_or(0);
                self.budget.locked().api_calls += spent;
                Ok(child)
            }
            (HostFn::GetExecution, CallArgs::Value { value }) => host
                .get_execution(value)
                .await
                .map(|v| v.unwrap_or(Json::Null))
                .map_err(h),
            (HostFn::HttpRequest, CallArgs::Http { call }) => {
                let url = call.url.clone();
                let rules = approved.unwrap_or_else(|| self.rules.http.clone());
                let response = net::http_request(call, &rules, &self.net)
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

    /// Why an `http_request` needs a human when the allow-list does not admit
    /// its host; `None` for anything else.
    fn outside_allowlist(&self, args: &CallArgs) -> Option<String> {
        let CallArgs::Http { call } = args else {
            return None;
        };
        if self.rules.http.dev_localhost {
            return None;
        }
        let host = request_host(&call.url)?;
        (!self.rules.http.admits(&host)).then(|| format!("{host} is not in allowed_domains"))
    }

    /// The allow-list with the request's host added, for one approved call.
    fn approved_rules(&self, url: &str) -> Option<Arc<HttpRules>> {
        let mut allowed = self.rules.http.allowed_domains.clone();
        allowed.push(request_host(url)?);
        Some(Arc::new(HttpRules {
            allowed_domains: allowed,
            any_public_host: self.rules.http.any_public_host,
            dev_localhost: self.rules.http.dev_localhost,
            limits: self.rules.http.limits,
        }))
    }
}

enum Failure {
    Host(HostError),
    Net(net::NetError),
}

/// The call's exact arguments, which an approval is bound to.
fn args_json(args: &CallArgs) -> Json {
    match args {
        CallArgs::Key { key } => serde_json::json!({"key": key}),
        CallArgs::KeyValue { key, value } => serde_json::json!({"key": key, "value": value}),
        CallArgs::Value { value } => value.clone(),
        CallArgs::NameValue { name, input } => serde_json::json!({"name": name, "input": input}),
        CallArgs::Http { call } => serde_json::json!({
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
