//! The result of one execution as the server stores and sends it. Plain serde data: it must not hold engine handles or anything the wire cannot carry.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Failed,
    TimedOut,
    Killed,
    LimitExceeded,
}

/// Which limit ended an execution with `limit_exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Memory,
    Stack,
    ApiCalls,
    ApiCallsPerMinute,
    OutputSize,
    LogVolume,
    InputSize,
    /// The deadline (`cpu_time_ms`); appears with status `timed_out`.
    CpuTime,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::Stack => "stack",
            LimitKind::ApiCalls => "api_calls",
            LimitKind::ApiCallsPerMinute => "api_calls_per_minute",
            LimitKind::OutputSize => "output_size",
            LimitKind::LogVolume => "log_volume",
            LimitKind::InputSize => "input_size",
            LimitKind::CpuTime => "cpu_time",
        }
    }
}

/// The stable codes a host call can fail with inside the agent; an uncaught
/// error carrying one reports it as the execution's `error.code`.
pub const AGENT_VISIBLE_CODES: &[&str] = &[
    "PERMISSION_DENIED",
    "LIMIT_EXCEEDED",
    "CONTENT_BLOCKED",
    "NETWORK_REFUSED",
    "NETWORK_ERROR",
    "HTTP_TIMEOUT",
    "REQUEST_TOO_LARGE",
    "RESPONSE_TOO_LARGE",
    "VALUE_TOO_LARGE",
    "INVALID_ARGUMENT",
    "AUDIT_UNAVAILABLE",
    "HOST_UNAVAILABLE",
    "HOST_REFUSED",
    "UNSUPPORTED",
    "NOT_FOUND",
];

/// The codes of the endings the sandbox itself reports ([`ErrorInfo::new`]).
const ENDING_CODES: &[&str] = &[
    "LIMIT_EXCEEDED",
    "KILLED",
    "TIMEOUT",
    "WORKER_STOPPED",
    "SANDBOX_ERROR",
    "CONTENT_BLOCKED",
];

/// Whether an engine could end a run with this code: the host's own or the
/// sandbox's.
pub(crate) fn known_code(code: &str) -> bool {
    AGENT_VISIBLE_CODES.contains(&code) || ENDING_CODES.contains(&code)
}

/// An error the agent's code ended with. `stack` names only agent code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub stack: Option<String>,
    /// The stable code of the ending: the host-call error the agent let
    /// escape (`PERMISSION_DENIED`, ...), or the sandbox's own
    /// (`LIMIT_EXCEEDED`, `KILLED`, `WORKER_STOPPED`, ...). `None` for an
    /// error of the agent's own making.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorInfo {
    pub fn new(kind: &str, message: impl Into<String>) -> ErrorInfo {
        // Endings the sandbox itself reports carry their code from the start.
        let code = match kind {
            "LimitExceeded" => Some(ENDING_CODES[0]),
            "Killed" => Some(ENDING_CODES[1]),
            "TimedOut" => Some(ENDING_CODES[2]),
            "WorkerStopped" => Some(ENDING_CODES[3]),
            "SandboxError" => Some(ENDING_CODES[4]),
            "ContentBlocked" => Some(ENDING_CODES[5]),
            _ => None,
        };
        ErrorInfo {
            kind: kind.into(),
            message: message.into(),
            stack: None,
            code: code.map(str::to_string),
        }
    }
}

/// How a run that passed a limit was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// The engine saw the limit (its interrupt handler or allocator) and
    /// unwound the run itself.
    Cooperative,
    /// The engine did not return in time; the run's worker process was
    /// ended from outside.
    Watchdog,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Cooperative => "cooperative",
            Enforcement::Watchdog => "watchdog",
        }
    }
}

/// How agent code was isolated, as receipts state it.
pub const TEE_IN_PROCESS: &str = "in_process";
/// Agent code ran in a worker process confined by the kernel.
pub const TEE_PROCESS_SANDBOX: &str = "process_sandbox";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
    Debug,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s {
            "info" => Some(LogLevel::Info),
            "warn" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub level: LogLevel,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One `thetazero.*` call as the spec's execution response lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCallAudit {
    #[serde(rename = "fn")]
    pub function: String,
    pub args_summary: String,
    pub allowed: bool,
    pub duration_ms: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// Time spent running JavaScript on the worker thread (polls of the engine).
    pub cpu_ms: f64,
    /// Peak bytes held by the execution's QuickJS heap, in MiB.
    pub memory_mb: f64,
    /// Calls counted against `max_api_calls_per_run` (refused ones included).
    pub api_calls: u64,
    /// Every `thetazero.*` call, including `log` and `write_result`.
    pub host_calls: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReport {
    pub status: Status,
    /// Set when `status` is `limit_exceeded`.
    pub limit: Option<LimitKind>,
    pub output: Value,
    pub error: Option<ErrorInfo>,
    pub logs: Vec<LogEntry>,
    pub host_call_audit: Vec<HostCallAudit>,
    /// Audit entries left out once the per-run cap on entries was reached.
    pub host_call_audit_dropped: u64,
    pub resource_usage: ResourceUsage,
    /// Refused host calls plus limit hits.
    pub violation_count: u64,
    /// True when the sandbox stopped the code (kill, deadline, limit) rather than
    /// the code finishing on its own.
    pub was_terminated: bool,
    pub duration_ms: f64,
    /// The isolation the run actually had (`process_sandbox`, `in_process`).
    #[serde(default = "default_tee_mode")]
    pub tee_mode: String,
    /// Set when a limit or a kill stopped the run: how it was enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// What the limit said, for the `sandbox_limit_hit` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_detail: Option<String>,
    /// Set when the run's worker was ended because of another run: what the
    /// `worker_stopped` event names. Not part of the stored report.
    #[serde(skip)]
    pub(crate) worker_stopped: Option<WorkerStopNote>,
}

/// Which run's stop ended a worker, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerStopNote {
    pub cause_execution_id: Option<i64>,
    pub reason: String,
}

fn default_tee_mode() -> String {
    TEE_IN_PROCESS.to_string()
}

impl ExecutionReport {
    /// The report of an execution the sandbox itself failed to run.
    pub(crate) fn internal_failure(took: std::time::Duration) -> ExecutionReport {
        ExecutionReport {
            status: Status::Failed,
            limit: None,
            output: Value::Null,
            error: Some(ErrorInfo::new(
                "SandboxError",
                "the sandbox failed to run this execution",
            )),
            logs: Vec::new(),
            host_call_audit: Vec::new(),
            host_call_audit_dropped: 0,
            resource_usage: ResourceUsage::default(),
            violation_count: 0,
            was_terminated: true,
            duration_ms: took.as_secs_f64() * 1000.0,
            tee_mode: default_tee_mode(),
            enforcement: None,
            limit_detail: None,
            worker_stopped: None,
        }
    }

    /// The report of a run whose worker process ended under it.
    pub(crate) fn worker_ended(
        took: std::time::Duration,
        status: Status,
        limit: Option<(LimitKind, String)>,
        error: ErrorInfo,
    ) -> ExecutionReport {
        let was_terminated = true;
        ExecutionReport {
            status,
            limit: limit.as_ref().map(|(k, _)| *k),
            output: Value::Null,
            error: Some(error),
            logs: Vec::new(),
            host_call_audit: Vec::new(),
            host_call_audit_dropped: 0,
            resource_usage: ResourceUsage::default(),
            violation_count: u64::from(limit.is_some()),
            was_terminated,
            duration_ms: took.as_secs_f64() * 1000.0,
            tee_mode: TEE_PROCESS_SANDBOX.to_string(),
            enforcement: Some(Enforcement::Watchdog),
            limit_detail: limit.map(|(_, d)| d),
            worker_stopped: None,
        }
    }
}
