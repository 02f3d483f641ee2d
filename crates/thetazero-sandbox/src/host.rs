//! The boundary between the sandbox and the server: the `Host` trait the server implements and the events the sandbox reports. It must stay free of HTTP and SQL types.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thetazero_core::permissions::Scope;

use crate::report::{Enforcement, LimitKind};

/// A failure of the host side of a call. Its text may reach agent code, so it
/// must not carry internal detail (paths, SQL, stack traces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host store is unavailable")]
    Unavailable,
    #[error("{0} is not available on this server")]
    Unsupported(&'static str),
    #[error("refused by the host: {0}")]
    Refused(String),
    #[error("not found")]
    NotFound,
    /// Content safety refused the content (fetched text, a prompt, a completion).
    #[error("blocked by content safety: {0}")]
    Blocked(String),
    /// A per-account quota of the deployment would be passed.
    #[error("over quota: {0}")]
    OverQuota(String),
}

impl HostError {
    /// The stable `code` agent code sees on the thrown error.
    pub fn code(&self) -> &'static str {
        match self {
            HostError::Unavailable => "HOST_UNAVAILABLE",
            HostError::Unsupported(_) => "UNSUPPORTED",
            HostError::Refused(_) => "HOST_REFUSED",
            HostError::NotFound => "NOT_FOUND",
            HostError::Blocked(_) => "CONTENT_BLOCKED",
            HostError::OverQuota(_) => "LIMIT_EXCEEDED",
        }
    }
}

/// What the server provides to one execution. The sandbox already checked the
/// agent's permission before any of these runs; the host scopes every key to the
/// agent (context) or the account (storage) it was built for.
#[async_trait]
pub trait Host: Send + Sync {
    async fn read_context(&self, key: &str) -> Result<Option<Value>, HostError>;
    async fn write_context(&self, key: &str, value: Value) -> Result<(), HostError>;
    async fn storage_get(&self, key: &str) -> Result<Option<Value>, HostError>;
    async fn storage_put(&self, key: &str, value: Value) -> Result<(), HostError>;

    /// Audit hook: called with the permission decision before a host call runs and
    /// with its outcome after; also for `permission_denied` and `sandbox_limit_hit`.
    /// If recording a decision fails the call is denied (fail closed).
    async fn record(&self, event: SandboxEvent) -> Result<(), HostError>;

    /// Screens an `http_request` response before the agent sees it; an error
    /// fails the call inside the agent.
    async fn screen_fetched(&self, _url: &str, _response: &Value) -> Result<(), HostError> {
        Ok(())
    }

    /// Screens a `log` entry as it is written (the job's `screen_logs`); an
    /// error refuses it inside the agent, and the entry is withheld.
    async fn screen_log(&self, _message: &str) -> Result<(), HostError> {
        Ok(())
    }

    /// `thetazero.inference(request)` (`inference:call`).
    async fn inference(&self, _request: Value) -> Result<Value, HostError> {
        Err(HostError::Unsupported("inference"))
    }

    /// `thetazero.call_agent(name, input)` (`agents:write`). `remaining` is what the
    /// parent has left, which the child's budget must not exceed.
    async fn call_agent(
        &self,
        _name: &str,
        _input: Value,
        _remaining: ChildBudget,
    ) -> Result<Value, HostError> {
        Err(HostError::Unsupported("call_agent"))
    }

    /// Asks a human to allow one call the agent's permissions refuse (the
    /// agent's `approval_timeout_ms` is set). Answers whether it was approved
    /// before `ask.timeout`; `Ok(false)` for denied or expired. The execution
    /// is suspended meanwhile, and the wait does not count against its
    /// deadline.
    async fn request_approval(&self, _ask: ApprovalAsk) -> Result<bool, HostError> {
        Ok(false)
    }

    /// `thetazero.get_execution(id)` (`agents:read`).
    async fn get_execution(&self, _id: Value) -> Result<Option<Value>, HostError> {
        Err(HostError::Unsupported("get_execution"))
    }
}

/// One refused call put to a human: the approval is bound to `args`, the
/// call's exact arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalAsk {
    pub function: HostFn,
    pub args: Value,
    pub summary: String,
    /// Why the permissions refuse it.
    pub reason: String,
    pub timeout: std::time::Duration,
}

/// What a parent execution has left when it starts a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildBudget {
    pub api_calls: u64,
    pub time_ms: u64,
}

/// Every function of the bridge, with the scope it needs and whether it counts
/// against `max_api_calls_per_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostFn {
    Log,
    WriteResult,
    ReadContext,
    WriteContext,
    HttpRequest,
    StorageGet,
    StoragePut,
    Inference,
    CallAgent,
    GetExecution,
}

impl HostFn {
    pub const ASYNC: [HostFn; 8] = [
        HostFn::ReadContext,
        HostFn::WriteContext,
        HostFn::HttpRequest,
        HostFn::StorageGet,
        HostFn::StoragePut,
        HostFn::Inference,
        HostFn::CallAgent,
        HostFn::GetExecution,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HostFn::Log => "log",
            HostFn::WriteResult => "write_result",
            HostFn::ReadContext => "read_context",
            HostFn::WriteContext => "write_context",
            HostFn::HttpRequest => "http_request",
            HostFn::StorageGet => "storage_get",
            HostFn::StoragePut => "storage_put",
            HostFn::Inference => "inference",
            HostFn::CallAgent => "call_agent",
            HostFn::GetExecution => "get_execution",
        }
    }

    pub fn scope(self) -> Option<Scope> {
        match self {
            HostFn::Log | HostFn::WriteResult => None,
            // Reading the agent's own context needs nothing (the spec's host-API
            // table); writing it does.
            HostFn::ReadContext => None,
            HostFn::WriteContext => Some(Scope::DataWrite),
            HostFn::HttpRequest => Some(Scope::NetworkOutbound),
            HostFn::StorageGet => Some(Scope::StorageRead),
            HostFn::StoragePut => Some(Scope::StorageWrite),
            HostFn::Inference => Some(Scope::InferenceCall),
            HostFn::CallAgent => Some(Scope::AgentsWrite),
            HostFn::GetExecution => Some(Scope::AgentsRead),
        }
    }

    /// Counted against `max_api_calls_per_run` and `max_api_calls_per_minute`.
    pub fn counted(self) -> bool {
        !matches!(self, HostFn::Log | HostFn::WriteResult)
    }
}

/// Whether an event is the decision taken before a call or its outcome after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SandboxEvent {
    /// Before a counted host call runs. Recording failure denies the call.
    HostCallDecision {
        function: HostFn,
        scope: Option<String>,
        args_summary: String,
        allowed: bool,
    },
    /// After an allowed host call ran.
    HostCallOutcome {
        function: HostFn,
        ok: bool,
        error_code: Option<String>,
        duration_ms: f64,
    },
    /// A call refused by permission, configuration or network policy.
    PermissionDenied {
        function: HostFn,
        scope: Option<String>,
        code: String,
        reason: String,
        is_violation: bool,
    },
    /// A limit ended the execution.
    SandboxLimitHit {
        limit: LimitKind,
        detail: String,
        is_violation: bool,
        /// Whether the engine stopped itself or its worker was ended.
        enforcement: Enforcement,
    },
    /// The run's worker process was ended because of another run of the same
    /// account (its deadline passed or a kill did not land in time), and this
    /// run ended with it.
    WorkerStopped {
        /// The execution whose stop ended the worker, when one did.
        cause_execution_id: Option<i64>,
        reason: String,
    },
}
