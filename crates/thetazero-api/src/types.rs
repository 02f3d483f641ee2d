//! Request and response bodies of the REST API, as they appear on the wire.
//!
//! Field names follow the spec (snake_case). Times are RFC 3339 strings in UTC.
//! Requests reject unknown fields, so a misspelt field is an error rather than
//! a silently ignored setting.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A short human-facing text (a name, a reason): not blank, no control
/// characters but newline and tab, no invisible or direction-changing
/// characters. What the server's text check refuses, as a pattern.
/// Spelled without lookahead (some allowed characters, one that is not
/// white space, some more): a generator reading the document covers a
/// lookahead pattern with a length bound only by a long search.
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$";

/// The same, where an empty text is allowed.
pub const OPTIONAL_TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$";

/// An agent's name: 1-128 letters, digits, `-`, `_` or `.`.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,128}$";

/// Agent code: not blank, and no NUL character.
pub const CODE_PATTERN: &str = "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$";

/// `POST /api/v1/sdk/agents`: register an agent, or replace the one with the same name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$", min_length = 1, max_length = 128)]
    pub name: String,
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        max_length = 64
    )]
    pub version: Option<String>,
    #[schema(pattern = "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$", min_length = 1)]
    pub entry_code: String,
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        max_length = 4096
    )]
    pub description: Option<String>,
    /// `ready` (default) or `disabled`.
    #[serde(default)]
    #[schema(pattern = "^(ready|disabled)$")]
    pub status: Option<String>,
    /// The spec's AgentConfig fields (snake_case); unknown fields are refused.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// A preset name such as `"CODER"` or a list of scopes; absent means none.
    #[serde(default)]
    #[schema(value_type = Option<PermissionsSpec>)]
    pub permissions: Option<Value>,
    /// Compliance frameworks the agent is assessed against (`eu_ai_act`,
    /// `soc2`, `nist_ai_rmf`, `iso_42001`, `owasp_llm_top10`); absent keeps
    /// what was set before, an empty list clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FrameworkId>>)]
    pub compliance: Option<Vec<String>>,
}

/// A field that may be left out but, when given, is not `null`.
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(
            "must not be null (leave the field out to keep it)",
        )),
    }
}

/// `PATCH /api/v1/sdk/agents/:id`: fields present replace the stored ones;
/// a field given as `null` is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAgentRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        max_length = 64
    )]
    pub version: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        max_length = 4096
    )]
    pub description: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(pattern = "^(ready|disabled)$")]
    pub status: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(pattern = "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$", min_length = 1)]
    pub entry_code: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(value_type = Option<PermissionsSpec>)]
    pub permissions: Option<Value>,
}

/// An agent's permissions: a preset name (`READONLY`, `WRITER`,
/// `RESEARCHER`, `CODER`, `ANALYST`, `FULL`) or a list of scopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PermissionsSpec {
    Preset(PresetName),
    Scopes(Vec<AgentScopeName>),
}

/// A permission preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PresetName {
    Readonly,
    Writer,
    Researcher,
    Coder,
    Analyst,
    Full,
}

/// One of the spec's ten agent permission scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AgentScopeName {
    #[serde(rename = "compute:read")]
    ComputeRead,
    #[serde(rename = "compute:write")]
    ComputeWrite,
    #[serde(rename = "inference:call")]
    InferenceCall,
    #[serde(rename = "data:read")]
    DataRead,
    #[serde(rename = "data:write")]
    DataWrite,
    #[serde(rename = "network:outbound")]
    NetworkOutbound,
    #[serde(rename = "storage:read")]
    StorageRead,
    #[serde(rename = "storage:write")]
    StorageWrite,
    #[serde(rename = "agents:read")]
    AgentsRead,
    #[serde(rename = "agents:write")]
    AgentsWrite,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub description: String,
    pub status: String,
    /// The configuration as the author gave it, template defaults filled in;
    /// never widened by grants, so a read-modify-write keeps it as it was.
    #[schema(value_type = Object)]
    pub config: Value,
    /// What the agent runs with now: `config` widened by the grants in force
    /// (`grants`, each with its expiry) with every limit held to the
    /// operator's ceilings, and the effective `permissions`.
    #[schema(value_type = Object)]
    pub effective_config: Value,
    #[schema(value_type = PermissionsSpec)]
    pub permissions: Value,
    pub entry_code: String,
    /// Hex SHA-256 of `entry_code`, as bound into execution receipts.
    pub code_sha256: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentResponse {
    pub success: bool,
    pub agent: AgentView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub success: bool,
    pub agents: Vec<AgentView>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SuccessResponse {
    pub success: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContextValue {
    pub success: bool,
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    pub updated_at: String,
}

/// An API key scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum KeyScopeName {
    #[serde(rename = "agents:read")]
    AgentsRead,
    #[serde(rename = "agents:write")]
    AgentsWrite,
    #[serde(rename = "agents:execute")]
    AgentsExecute,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "approvals")]
    Approvals,
    #[serde(rename = "killswitch")]
    Killswitch,
    #[serde(rename = "compliance")]
    Compliance,
    #[serde(rename = "keys")]
    Keys,
    #[serde(rename = "metrics")]
    Metrics,
}

/// A compliance framework this server maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrameworkId {
    EuAiAct,
    Soc2,
    NistAiRmf,
    #[serde(rename = "iso_42001")]
    Iso42001,
    OwaspLlmTop10,
}

/// `POST /api/v1/keys`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        min_length = 1,
        max_length = 128
    )]
    pub name: String,
    /// API key scopes: `agents:read`, `agents:write`, `agents:execute`,
    /// `audit:read`, `approvals`, `killswitch`, `compliance`, `keys`.
    #[schema(value_type = Vec<KeyScopeName>, min_items = 1)]
    pub scopes: Vec<String>,
}

/// `PATCH /api/v1/keys/:id`: replace a key's scopes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetKeyScopesRequest {
    #[schema(value_type = Vec<KeyScopeName>, min_items = 1)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: i64,
    pub name: String,
    /// The first characters of the secret, to recognise it; never the secret.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub is_owner: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyResponse {
    pub success: bool,
    pub key: KeyView,
}

/// The only answer that ever holds a key's secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub success: bool,
    pub key: KeyView,
    /// `tzk_...`: shown once, stored only as a hash.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub success: bool,
    pub keys: Vec<KeyView>,
}

/// `POST /api/v1/accounts`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        min_length = 1,
        max_length = 128
    )]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedAccount {
    pub success: bool,
    pub account: AccountView,
    pub owner_key: KeyView,
    /// The new account's owner key: shown once.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    /// The receipt: this event's position in the account's log...
    pub leaf_index: u64,
    /// ...and the base64 RFC 6962 hash of its leaf.
    pub leaf_hash: String,
    pub timestamp: String,
    pub account_id: i64,
    pub agent_id: Option<i64>,
    pub execution_id: Option<i64>,
    pub key_id: Option<i64>,
    pub action_type: String,
    pub action_category: String,
    pub description: String,
    pub permission_state: String,
    pub is_violation: bool,
    pub input_summary: Option<String>,
    pub output_summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub success: bool,
    pub events: Vec<AuditEventView>,
    pub total: u64,
    pub anchored: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `POST /api/v1/sdk/agents/:id/execute`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// The execution's input, available to the agent as `input` (default `{}`).
    #[serde(default)]
    pub input: Option<Value>,
}

/// One execution as the spec's execution response describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    pub execution_id: i64,
    pub agent_id: i64,
    pub agent_version: String,
    /// `running`, `completed`, `failed`, `timed_out`, `killed`, `limit_exceeded`, `blocked`.
    pub status: String,
    /// What the agent returned: any JSON value (`null` when none).
    pub output: Value,
    /// The error the execution ended with.
    pub error: Option<ExecutionError>,
    /// Which limit ended it, with status `limit_exceeded`.
    pub limit: Option<String>,
    pub resource_usage: ResourceUsage,
    pub violation_count: u64,
    pub was_terminated: bool,
    pub duration_ms: u64,
    /// Every `thetazero.*` call (single execution views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_call_audit: Option<Vec<HostCallEntry>>,
    /// What the agent logged (single execution views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<ExecutionLog>>,
    /// The execution's input (single execution views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Why content safety blocked the input or output (status `blocked`):
    /// `layer`, `rule`, `model`, `channel`, `path` (in a JSON document),
    /// `score`, `threshold`, `injection`, `toxicity`. An `excerpt` only in
    /// the response to the caller whose input was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_safety: Option<Value>,
    /// What content safety withheld besides the output, replaced by
    /// `[withheld by content safety]` in the record: each entry's `source`
    /// (`log entry 2`, `host call 0 (read_context)`, `error message`) and
    /// its verdict as in `content_safety`, without an excerpt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_withheld: Vec<Value>,
    /// Hex SHA-256 of the code that ran.
    pub code_sha256: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Where this execution's audit events are queried.
    pub audit_trail_url: String,
    /// The receipt of the execution's final audit event: its leaf index and
    /// base64 leaf hash (absent while it runs).
    pub leaf_index: Option<u64>,
    pub leaf_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionResponse {
    pub success: bool,
    #[serde(flatten)]
    pub execution: ExecutionView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionList {
    pub success: bool,
    pub executions: Vec<ExecutionView>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
}

/// `POST /api/v1/sdk/agents/{id}/kill`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// Why; recorded in the audit log.
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        min_length = 1,
        max_length = 1024
    )]
    pub reason: String,
}

/// What a kill did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KillResponse {
    pub success: bool,
    pub agent_id: i64,
    /// Always `killed`.
    pub status: String,
    /// Executions stopped on the replica that served the request.
    pub terminated: u64,
    /// Whether they all ended within the confirmation window.
    pub confirmed: bool,
    pub elapsed_ms: f64,
}

/// What a halt covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HaltScopeName {
    /// The caller's account.
    Account,
    /// Every account (an owner key of the deployment's first account only).
    Deployment,
}

/// `POST /api/v1/sdk/kill-switch/global`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    /// `true` stops everything and refuses new executions; `false` clears it.
    pub halted: bool,
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        min_length = 1,
        max_length = 1024
    )]
    pub reason: String,
    /// `account` (default) or `deployment`.
    #[serde(default)]
    pub scope: Option<HaltScopeName>,
}

/// What setting or clearing a halt did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HaltResponse {
    pub success: bool,
    pub halted: bool,
    pub scope: HaltScopeName,
    pub terminated: u64,
    pub confirmed: bool,
    pub elapsed_ms: f64,
}

/// The halt in force for the caller: `halted: false` alone when none is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HaltState {
    pub success: bool,
    pub halted: bool,
    /// The rest is present only while halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<HaltScopeName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the halt was set (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The key that set it; `null` when it was not set through a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Option<i64>>,
}

/// `POST /api/v1/sdk/permission-requests`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePermissionRequest {
    /// The agent that wants the permissions.
    #[serde(alias = "agentId")]
    #[schema(minimum = 1)]
    pub agent_id: i64,
    /// `allow_network`, `allow_external_apis`, `max_api_calls_per_run`,
    /// `max_api_calls_per_minute`, `memory_limit_mb`, `cpu_time_limit_ms`,
    /// `allowed_domains`, `scopes`.
    #[schema(value_type = Object)]
    pub permissions: Value,
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\s][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        min_length = 1,
        max_length = 4096
    )]
    pub justification: String,
    /// How long the request waits for a decision in milliseconds (default
    /// 120000, at most one day).
    #[serde(default, alias = "timeoutMs")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub timeout_ms: Option<u64>,
}

/// `POST /api/v1/sdk/permission-requests/{id}/approve` (or `/deny`); the
/// body may be absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionDecision {
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFEFF\\uFFA0\\uFFF9-\\uFFFB]*$",
        max_length = 1024
    )]
    pub reason: Option<String>,
    /// Approvals only: the grant lapses this many milliseconds after
    /// approval (at most one year).
    #[serde(default, alias = "grantExpiresInMs")]
    #[schema(minimum = 1, maximum = 31_536_000_000_u64)]
    pub grant_expires_in_ms: Option<u64>,
}

/// One permission request and its fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PermissionRequestView {
    pub id: i64,
    pub agent_id: i64,
    pub requested_by_key_id: Option<i64>,
    /// What was asked for, as it was asked.
    #[schema(value_type = Object)]
    pub permissions: Value,
    pub justification: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    pub expires_at: String,
    pub decided_by_key_id: Option<i64>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<String>,
    pub grant_expires_at: Option<String>,
    /// Approved and not lapsed.
    pub grant_active: bool,
    pub created_at: String,
    /// In the answer to a decision only: how the deciding key stands to the
    /// requesting one (`ancestor`, `unrelated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_relation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PermissionRequestResponse {
    pub success: bool,
    pub request: PermissionRequestView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PermissionRequestList {
    pub success: bool,
    pub requests: Vec<PermissionRequestView>,
}

/// `POST /api/v1/sdk/audit/stream-token`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamTokenResponse {
    pub success: bool,
    /// The stream's path with the token in its query string.
    pub stream_url: String,
    pub token: String,
    pub expires_at: String,
}

/// The audit stream's `connected` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamConnected {
    pub account_id: i64,
    /// The leaf index the stream goes on from.
    pub position: u64,
    pub log_size: u64,
}

/// The audit stream's `keepalive` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamKeepalive {
    pub position: u64,
    pub at: String,
}

/// The audit stream's `checkpoint` event: the log has a new signed checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamCheckpoint {
    pub size: u64,
    /// The signed checkpoint (C2SP signed-note text).
    pub note: String,
}

/// The audit stream's last event, `timeout`: why it ends and where to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamTimeout {
    /// `limit`, `lagging`, `key_revoked` or `unavailable`.
    pub reason: String,
    /// The last leaf index sent; `null` when nothing was.
    pub resume_after: Option<u64>,
}

/// `POST /api/v1/session`: the dashboard's sign-in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// `tzk_...`
    pub api_key: String,
}

/// The signed-in key of a dashboard session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub success: bool,
    pub key: KeyView,
    /// An owner key of the deployment's first account.
    pub deployment_owner: bool,
    /// Sent back as `X-CSRF-Token` on the page's state-changing requests.
    pub csrf_token: String,
    /// Seconds of inactivity after which the session ends.
    pub idle_timeout_s: u64,
}

/// `{type, code, message, stack}` of a failed execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionError {
    /// `Error`, `TypeError`, `PermissionDenied`, `ContentBlocked`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The stable code of the ending (`PERMISSION_DENIED`, `LIMIT_EXCEEDED`,
    /// `KILLED`, `CONTENT_BLOCKED`, ...); absent for an error of the agent's
    /// own making.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// The JavaScript stack; `null` when the engine gave none, absent for
    /// endings that never had one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub stack: Option<Option<String>>,
}

/// Present (even as `null`) versus absent.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// What an execution used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    pub cpu_ms: f64,
    pub memory_mb: f64,
    /// Calls counted against `max_api_calls_per_run`.
    pub api_calls: u64,
    /// Every `thetazero.*` call.
    pub host_calls: u64,
}

/// One line the agent logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionLog {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    pub at: String,
}

/// One `thetazero.*` call of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostCallEntry {
    #[serde(rename = "fn")]
    pub function: String,
    pub args_summary: String,
    pub allowed: bool,
    pub duration_ms: f64,
    pub at: String,
}

/// The leaves of the execution's first and last audit events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRange {
    pub first_leaf: u64,
    pub last_leaf: u64,
}

/// `GET /api/v1/sdk/executions/{id}/verify`: the signed execution receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionReceipt {
    pub success: bool,
    pub execution_id: i64,
    pub agent_id: i64,
    pub agent_version: String,
    pub status: String,
    pub code_sha256: String,
    /// Hex SHA-256 of the input's JSON text.
    pub input_digest: String,
    /// Hex SHA-256 of the output's JSON text; `null` with no output.
    pub output_digest: Option<String>,
    /// The effective limits the run had.
    #[schema(value_type = Object)]
    pub limits: serde_json::Map<String, Value>,
    /// The isolation the run actually had: `process_sandbox`, `in_process`
    /// or `none` (no code ran). No hardware attestation is claimed.
    pub tee_mode: String,
    pub attestation_id: String,
    /// The receipt as a signed note (C2SP); verify it with `verifier_key`.
    pub receipt: String,
    pub audit_range: AuditRange,
    /// The signed checkpoint covering the last leaf.
    pub checkpoint: String,
    pub log_origin: String,
    pub verifier_key: String,
    /// The server's own check; clients should verify `receipt` themselves.
    pub chain_valid: bool,
    pub verified_at: String,
}

/// `GET /api/v1/sdk/audit/key`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifierKeyResponse {
    pub success: bool,
    /// The C2SP verifier key the deployment signs checkpoints and receipts with.
    pub verifier_key: String,
    pub key_name: String,
}

/// `GET /api/v1/sdk/audit/checkpoint`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointResponse {
    pub success: bool,
    pub origin: String,
    /// The tree size the checkpoint covers (0 for an empty log).
    pub size: u64,
    /// The signed checkpoint note; `null` for an empty log.
    pub checkpoint: Option<String>,
    pub verifier_key: String,
}

/// `GET /api/v1/sdk/audit/consistency`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyResponse {
    pub success: bool,
    pub from: u64,
    pub to: u64,
    /// Base64 hashes of the RFC 6962 consistency proof.
    pub proof: Vec<String>,
}

/// A consistency proof from a record's checkpoint to the latest one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyToLatest {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
    pub latest_checkpoint: String,
}

/// An external anchor of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnchorView {
    pub kind: String,
    pub checkpoint_size: u64,
    /// `pending`, `confirmed` or `failed`.
    pub status: String,
    pub external_ref: Option<String>,
}

/// `GET /api/v1/sdk/audit/records/{id}/proof`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordProofResponse {
    pub success: bool,
    pub record_id: i64,
    pub log_origin: String,
    pub leaf_index: u64,
    /// The exact leaf bytes, base64.
    pub leaf_b64: String,
    /// `SHA-256(0x00 || leaf)`, base64.
    pub leaf_hash: String,
    /// The signed checkpoint the inclusion proof is against.
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
    pub consistency_to_latest: Option<ConsistencyToLatest>,
    pub anchors: Vec<AnchorView>,
    pub anchor_tx_hash: Option<String>,
    /// The server's own verdict; clients should recompute it.
    pub chain_valid: bool,
    pub verified_at: String,
    pub verifier_key: String,
}

/// One framework this server maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameworkInfo {
    pub id: String,
    pub title: String,
    pub catalog_version: String,
    /// Hex SHA-256 of the catalog file.
    pub catalog_sha256: String,
    pub edition: String,
    pub transcription: String,
    pub attribution: String,
    /// How many requirements the catalog lists.
    pub requirements: u64,
}

/// `GET /api/v1/sdk/compliance/frameworks`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameworkList {
    pub success: bool,
    pub frameworks: Vec<FrameworkInfo>,
}

/// What a kill-switch drill measured; also the payload of its
/// `compliance_drill` audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DrillResult {
    /// The canary's execution that was killed.
    pub execution_id: i64,
    /// The kill was confirmed and the execution ended as `killed`.
    pub confirmed: bool,
    pub kill_confirmed: bool,
    pub terminated: u64,
    pub elapsed_ms: f64,
    /// The status the canary's execution ended with (or the error).
    pub execution_status: String,
    pub started_to_kill_ms: f64,
    pub canary_agent_id: i64,
    pub canary_name: String,
    pub canary_deleted: bool,
    /// Always `true`: drill events never count as real kills.
    pub drill: bool,
}

/// `POST /api/v1/sdk/compliance/drill`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DrillResponse {
    pub success: bool,
    pub drill: DrillResult,
    /// The `compliance_drill` audit event's leaf.
    pub leaf_index: u64,
    /// Hex SHA-256 leaf hash.
    pub leaf_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_a_null_stack_apart_from_none() {
        for text in [
            r#"{"type":"Error","message":"m","stack":null}"#,
            r#"{"type":"Error","message":"m","stack":"at f"}"#,
            r#"{"type":"SandboxError","code":"SANDBOX_ERROR","message":"m"}"#,
        ] {
            let e: ExecutionError = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&e).unwrap(), text);
        }
    }

    #[test]
    fn a_halt_state_shows_its_fields_only_while_halted() {
        let off = HaltState {
            success: true,
            halted: false,
            scope: None,
            reason: None,
            since: None,
            key_id: None,
        };
        assert_eq!(
            serde_json::to_value(&off).unwrap(),
            serde_json::json!({"success": true, "halted": false})
        );
        let on = HaltState {
            halted: true,
            scope: Some(HaltScopeName::Deployment),
            reason: Some("r".into()),
            since: Some("t".into()),
            key_id: Some(None),
            ..off
        };
        assert_eq!(
            serde_json::to_value(&on).unwrap(),
            serde_json::json!({"success": true, "halted": true, "scope": "deployment",
                "reason": "r", "since": "t", "key_id": null})
        );
    }
}
