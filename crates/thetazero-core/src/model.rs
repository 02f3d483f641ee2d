//! Records the store keeps: accounts, API keys, agents, executions and
//! permission requests, and how their ids are numbered per account
//! (`id_range`). Plain data, no behaviour beyond what follows from the data
//! itself.

use serde_json::Value;
use time::OffsetDateTime;

pub use crate::id::{AccountId, AgentId, AuditRecordId, ExecutionId, KeyId, PermissionRequestId};
use crate::limits::AgentConfig;
use crate::permissions::{KeyScope, Permissions};

/// Ids of agents, executions, keys and permission requests are allocated per
/// account, so that no tenant learns another's activity from them: account
/// `a` numbers its own from `(a - 1) << 32` up, which keeps every id an
/// integer JavaScript holds exactly (below 2^53) for the first two million
/// accounts. Ids given before this scheme keep their values; they all lie in
/// the first account's range, whose numbering continues above them.
pub fn id_range(account: AccountId) -> (i64, i64) {
    let base = (account.get().max(1) - 1) << ID_LOCAL_BITS;
    (base, base + (1 << ID_LOCAL_BITS))
}

/// Bits of an id numbered within its account.
pub const ID_LOCAL_BITS: u32 = 32;

/// The largest id given out: the largest integer JavaScript holds exactly.
pub const MAX_ID: i64 = (1 << 53) - 1;

/// What an id numbers, with the table that holds such rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Agent,
    Execution,
    Key,
    PermissionRequest,
}

impl IdKind {
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Agent => "agent",
            IdKind::Execution => "execution",
            IdKind::Key => "key",
            IdKind::PermissionRequest => "permission_request",
        }
    }

    pub fn table(self) -> &'static str {
        match self {
            IdKind::Agent => "agents",
            IdKind::Execution => "executions",
            IdKind::Key => "api_keys",
            IdKind::PermissionRequest => "permission_requests",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// An API key as stored: never the secret, only its hash and a display prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    pub account_id: AccountId,
    pub name: String,
    /// The first characters of the secret, enough to recognise it in a list.
    pub prefix: String,
    pub scopes: Vec<KeyScope>,
    /// Owner keys hold every scope; the deployment's first owner key may also
    /// create accounts.
    pub is_owner: bool,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// The key that created this one; `None` for keys made by the server
    /// itself (an account's first owner key, a recovery).
    pub created_by: Option<KeyId>,
}

impl ApiKey {
    pub fn has_scope(&self, scope: KeyScope) -> bool {
        self.is_owner || self.scopes.contains(&scope)
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// What a caller asks to create; the key's hash is computed by the caller so
/// that the store never sees a secret.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub account_id: AccountId,
    pub name: String,
    pub prefix: String,
    pub hash: [u8; 32],
    pub scopes: Vec<KeyScope>,
    pub is_owner: bool,
    pub created_by: Option<KeyId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Ready,
    Disabled,
    Killed,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Ready => "ready",
            AgentStatus::Disabled => "disabled",
            AgentStatus::Killed => "killed",
        }
    }

    pub fn parse(s: &str) -> Option<AgentStatus> {
        match s {
            "ready" => Some(AgentStatus::Ready),
            "disabled" => Some(AgentStatus::Disabled),
            "killed" => Some(AgentStatus::Killed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub account_id: AccountId,
    pub name: String,
    pub version: String,
    pub description: String,
    pub status: AgentStatus,
    pub entry_code: String,
    pub config: AgentConfig,
    pub permissions: Permissions,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A registration: everything but the id and times.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub name: String,
    pub version: String,
    pub description: String,
    pub status: AgentStatus,
    pub entry_code: String,
    pub config: AgentConfig,
    pub permissions: Permissions,
}

/// A partial update; `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentPatch {
    pub version: Option<String>,
    pub description: Option<String>,
    pub status: Option<AgentStatus>,
    pub entry_code: Option<String>,
    pub config: Option<AgentConfig>,
    pub permissions: Option<Permissions>,
}

impl AgentPatch {
    pub fn is_empty(&self) -> bool {
        *self == AgentPatch::default()
    }
}

/// One page of a listing and the total it was cut from.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// A request for one page: `page` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub limit: u64,
}

impl PageRequest {
    pub fn offset(self) -> u64 {
        self.page.saturating_sub(1).saturating_mul(self.limit)
    }
}

/// A context value with the time it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextEntry {
    pub key: String,
    pub value: Value,
    pub updated_at: OffsetDateTime,
}

/// How an execution ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    Running,
    Completed,
    Failed,
    TimedOut,
    Killed,
    LimitExceeded,
    Blocked,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Killed,
        ExecutionStatus::LimitExceeded,
        ExecutionStatus::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::TimedOut => "timed_out",
            ExecutionStatus::Killed => "killed",
            ExecutionStatus::LimitExceeded => "limit_exceeded",
            ExecutionStatus::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        ExecutionStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What is known when an execution starts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    pub account_id: AccountId,
    pub agent_id: AgentId,
    pub agent_version: String,
    /// Hex SHA-256 of the code that runs.
    pub code_sha256: String,
    pub input: Value,
    pub key_id: Option<KeyId>,
    pub parent_execution_id: Option<ExecutionId>,
}

/// What is known when it ends. `report` holds the sandbox's telemetry
/// (`resource_usage`, `host_call_audit`, `logs`, `error`, ...) as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionOutcome {
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub report: Value,
    pub violation_count: u64,
    pub was_terminated: bool,
    pub duration_ms: u64,
}

/// The parts of an execution's stored report that are read back: by the
/// execution views, by agent code looking at other executions, and by the
/// signed receipt. The report is stored as JSON (`ExecutionOutcome::report`)
/// and may hold more than this; fields a record lacks read as empty.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct RunReport {
    /// The error the run ended with, if any.
    #[serde(default)]
    pub error: Option<RunError>,
    /// Which limit ended it, with status `limit_exceeded`.
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub resource_usage: Option<RunUsage>,
    #[serde(default)]
    pub logs: Vec<RunLog>,
    #[serde(default)]
    pub host_call_audit: Vec<RunHostCall>,
    /// The effective limits the run had, as the receipt states them.
    #[serde(default)]
    pub limits: serde_json::Map<String, Value>,
    /// The isolation the run had (`process_sandbox`, `in_process`, `none`).
    #[serde(default)]
    pub tee_mode: Option<String>,
    /// Content safety's verdict on a blocked input or output.
    #[serde(default)]
    pub content_safety: Option<Value>,
    /// What content safety withheld besides the output (log entries,
    /// call summaries, error text): each its `source` and verdict.
    #[serde(default)]
    pub content_withheld: Vec<Value>,
}

impl RunReport {
    /// Reads a stored report. Every report this server writes has this
    /// shape; one that does not reads as empty, as the record itself is
    /// still worth showing.
    pub fn from_json(value: &Value) -> RunReport {
        <RunReport as serde::Deserialize>::deserialize(value).unwrap_or_default()
    }
}

/// Present (even as `null`) versus absent, for fields whose absence differs
/// from `null` on the wire.
fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `{type, code, message, stack}` of a failed run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunError {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// `None` when the record has no `stack` field; `Some(None)` when null.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub stack: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunUsage {
    pub cpu_ms: f64,
    pub memory_mb: f64,
    pub api_calls: u64,
    pub host_calls: u64,
}

/// One line the agent logged.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RunLog {
    pub level: String,
    pub message: String,
    pub at: String,
}

/// One `thetazero.*` call.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RunHostCall {
    #[serde(rename = "fn")]
    pub function: String,
    pub args_summary: String,
    pub allowed: bool,
    pub duration_ms: f64,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub id: ExecutionId,
    pub account_id: AccountId,
    pub agent_id: AgentId,
    pub agent_version: String,
    pub code_sha256: String,
    pub key_id: Option<KeyId>,
    pub parent_execution_id: Option<ExecutionId>,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub report: Value,
    pub violation_count: u64,
    pub was_terminated: bool,
    pub duration_ms: u64,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl Execution {
    /// The typed reading of `report`.
    pub fn run_report(&self) -> RunReport {
        RunReport::from_json(&self.report)
    }
}

/// Where a permission request stands. Stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionRequestStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl PermissionRequestStatus {
    pub const ALL: [PermissionRequestStatus; 4] = [
        PermissionRequestStatus::Pending,
        PermissionRequestStatus::Approved,
        PermissionRequestStatus::Denied,
        PermissionRequestStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PermissionRequestStatus::Pending => "pending",
            PermissionRequestStatus::Approved => "approved",
            PermissionRequestStatus::Denied => "denied",
            PermissionRequestStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<PermissionRequestStatus> {
        PermissionRequestStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for PermissionRequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no permission request status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission request status {0:?}")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for PermissionRequestStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<PermissionRequestStatus, UnknownStatus> {
        PermissionRequestStatus::parse(s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// An agent's request for more than it holds, and its fate.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    pub id: PermissionRequestId,
    pub account_id: AccountId,
    pub agent_id: AgentId,
    /// The key that asked; it may not approve its own request.
    pub requested_by: Option<KeyId>,
    /// What is asked for: `allow_network`, `allow_external_apis`,
    /// `max_api_calls_per_run`, `scopes`, `allowed_domains`, ...
    pub grant: Value,
    pub justification: String,
    pub status: PermissionRequestStatus,
    /// A pending request expires at this time.
    pub expires_at: OffsetDateTime,
    pub decided_by: Option<KeyId>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    /// An approved grant lapses at this time, if set.
    pub grant_expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// Hex SHA-256 of the agent's code when the request was raised: the
    /// grant holds for that code only.
    pub code_sha256: Option<String>,
}

/// The rule for short human-facing text (names, versions, descriptions,
/// justifications, reasons): not empty unless `allow_empty`, at most `max`
/// characters (counted as the API document's `maxLength` counts them), no
/// control characters but newline and tab, and no invisible or
/// direction-changing characters. The error names `field`.
pub fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), String> {
    if !allow_empty && value.trim().is_empty() {
        return Err(format!("field {field:?} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("field {field:?} is longer than {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("field {field:?} contains control characters"));
    }
    if value.chars().any(invisible) {
        return Err(format!(
            "field {field:?} contains invisible or direction-changing characters"
        ));
    }
    Ok(())
}

/// Characters that change how text around them displays without showing
/// themselves: bidirectional overrides and isolates, zero-width characters,
/// and other format characters. In a name or reason they let one string pass
/// for another in a list or the audit log.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{034F}'
        | '\u{061C}'
        | '\u{115F}'..='\u{1160}'
        | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// The longest key of a context or storage value, in characters (the API
/// document's `maxLength` counts characters too).
pub const MAX_VALUE_KEY_CHARS: usize = 256;

/// The largest context or storage value, in bytes of its JSON text, whoever
/// writes it (an agent or an API caller).
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// The rule for the size of context and storage values: `Err((size, max))`
/// past [`MAX_VALUE_BYTES`].
pub fn check_value_size(value: &Value) -> Result<(), (usize, usize)> {
    let size = value.to_string().len();
    if size > MAX_VALUE_BYTES {
        return Err((size, MAX_VALUE_BYTES));
    }
    Ok(())
}

/// The rule for keys of context and storage values, whoever writes them (an
/// agent or an API caller): 1 to [`MAX_VALUE_KEY_CHARS`] characters, none a
/// control character.
pub fn check_value_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key.chars().count() > MAX_VALUE_KEY_CHARS
        || key.chars().any(char::is_control)
    {
        return Err(format!(
            "keys are 1-{MAX_VALUE_KEY_CHARS} characters without control characters"
        ));
    }
    Ok(())
}

impl PermissionRequest {
    /// Still pending at `now` although its time to be decided has passed:
    /// whoever sees it first records it `expired`.
    pub fn is_overdue(&self, now: OffsetDateTime) -> bool {
        self.status == PermissionRequestStatus::Pending && self.expires_at <= now
    }

    /// An approved grant that has not lapsed at `now`. (It also holds only
    /// for the code it was asked for: `code_sha256`.)
    pub fn grant_unexpired(&self, now: OffsetDateTime) -> bool {
        self.status == PermissionRequestStatus::Approved
            && self.grant_expires_at.is_none_or(|t| t > now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPermissionRequest {
    pub account_id: AccountId,
    pub agent_id: AgentId,
    pub requested_by: Option<KeyId>,
    pub grant: Value,
    pub justification: String,
    pub expires_at: OffsetDateTime,
    pub code_sha256: Option<String>,
    /// At most this many requests of the agent may be pending, this one
    /// included (`pending_requests_per_agent`); `None` for no bound.
    pub pending_limit: Option<u64>,
}

/// How a pending request ends.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestDecision {
    /// `Approved`, `Denied` or `Expired`.
    pub status: PermissionRequestStatus,
    pub decided_by: Option<KeyId>,
    pub reason: Option<String>,
    pub grant_expires_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: &str, expires_in: i64, grant_in: Option<i64>) -> PermissionRequest {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        PermissionRequest {
            id: PermissionRequestId::new(1),
            account_id: AccountId::new(1),
            agent_id: AgentId::new(1),
            requested_by: None,
            grant: Value::Null,
            justification: String::new(),
            status: status.parse().unwrap(),
            expires_at: now + time::Duration::seconds(expires_in),
            decided_by: None,
            decision_reason: None,
            decided_at: None,
            grant_expires_at: grant_in.map(|s| now + time::Duration::seconds(s)),
            created_at: now,
            code_sha256: None,
        }
    }

    #[test]
    fn value_keys_count_characters_and_refuse_control_characters() {
        assert!(check_value_key("k").is_ok());
        assert!(check_value_key(&"é".repeat(MAX_VALUE_KEY_CHARS)).is_ok());
        assert!(check_value_key(&"a".repeat(MAX_VALUE_KEY_CHARS + 1)).is_err());
        assert!(check_value_key("").is_err());
        for bad in ["a\nb", "a\u{0}", "\u{7f}", "x\u{85}"] {
            assert!(check_value_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn statuses_read_back_as_written_and_unknown_text_is_refused() {
        for status in PermissionRequestStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert!("Pending".parse::<PermissionRequestStatus>().is_err());
        assert!("".parse::<PermissionRequestStatus>().is_err());
    }

    #[test]
    fn only_a_pending_request_past_its_time_is_overdue() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        assert!(request("pending", 0, None).is_overdue(now));
        assert!(request("pending", -5, None).is_overdue(now));
        assert!(!request("pending", 5, None).is_overdue(now));
        for decided in ["approved", "denied", "expired"] {
            assert!(!request(decided, -5, None).is_overdue(now), "{decided}");
        }
    }

    #[test]
    fn a_grant_holds_until_it_lapses_and_only_when_approved() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        assert!(request("approved", -5, None).grant_unexpired(now));
        assert!(request("approved", -5, Some(1)).grant_unexpired(now));
        assert!(!request("approved", -5, Some(0)).grant_unexpired(now));
        assert!(!request("approved", -5, Some(-1)).grant_unexpired(now));
        assert!(!request("pending", 5, None).grant_unexpired(now));
        assert!(!request("denied", -5, None).grant_unexpired(now));
    }
}

#[cfg(test)]
mod run_report_tests {
    use super::*;

    #[test]
    fn reads_the_stored_report_by_field() {
        let r = RunReport::from_json(&serde_json::json!({
            "status": "failed",
            "error": {"type": "Error", "message": "boom", "stack": null},
            "limit": null,
            "resource_usage": {"cpu_ms": 1.5, "memory_mb": 2, "api_calls": 3, "host_calls": 4},
            "logs": [{"level": "info", "message": "hi", "at": "2026-01-01T00:00:00Z"}],
            "host_call_audit": [{"fn": "log", "args_summary": "hi", "allowed": true,
                                 "duration_ms": 0.1, "at": "2026-01-01T00:00:00Z"}],
            "limits": {"memory_limit_mb": 128},
            "tee_mode": "process_sandbox",
            "logs_withheld": 0
        }));
        let error = r.error.unwrap();
        assert_eq!((error.kind.as_str(), error.stack), ("Error", Some(None)));
        assert_eq!(r.resource_usage.unwrap().host_calls, 4);
        assert_eq!(r.logs[0].message, "hi");
        assert_eq!(r.host_call_audit[0].function, "log");
        assert_eq!(r.limits["memory_limit_mb"], 128);
        assert_eq!(r.tee_mode.as_deref(), Some("process_sandbox"));
    }

    #[test]
    fn a_report_of_another_shape_reads_as_empty() {
        assert_eq!(
            RunReport::from_json(&serde_json::json!({})),
            RunReport::default()
        );
        assert_eq!(
            RunReport::from_json(&serde_json::json!({"logs": "not a list"})),
            RunReport::default()
        );
        let r = RunReport::from_json(
            &serde_json::json!({"error": {"type": "SandboxError", "message": "m"}}),
        );
        assert_eq!(r.error.unwrap().stack, None);
    }
}
