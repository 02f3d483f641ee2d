//! A Rust client for the thetazero REST API, built on the same wire types as
//! the server. Used by the CLI; it holds no state beyond the base URL and key.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use thetazero_api::types::{
    AgentList, AgentResponse, AuditList, CreateAccountRequest, CreateKeyRequest, CreatedAccount,
    CreatedKey, ExecuteRequest, ExecutionList, ExecutionResponse, KeyList, KeyResponse,
    PatchAgentRequest, RegisterAgentRequest, SetKeyScopesRequest, SuccessResponse,
};
use thetazero_api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error in the API's shape.
    #[error("{code}: {message} (HTTP {status}, request {request_id})")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("could not reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("unexpected answer (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Client> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("thetazero-client/", env!("CARGO_PKG_VERSION")));
        // An execution can outlast reqwest's 30 s TCP_USER_TIMEOUT (Linux),
        // which ends the connection when one keepalive probe goes unanswered.
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let builder = builder.tcp_user_timeout(None);
        let http = builder.build()?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            key: api_key,
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|_| ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        Err(error_from(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    pub async fn create_key(&self, name: &str, scopes: &[String]) -> Result<CreatedKey> {
        let body = CreateKeyRequest {
            name: name.into(),
            scopes: scopes.to_vec(),
        };
        self.call(Method::POST, "/api/v1/keys", Some(&body)).await
    }

    pub async fn list_keys(&self) -> Result<KeyList> {
        self.get("/api/v1/keys").await
    }

    pub async fn revoke_key(&self, id: i64) -> Result<KeyResponse> {
        self.call::<(), _>(Method::DELETE, &format!("/api/v1/keys/{id}"), None)
            .await
    }

    pub async fn create_account(&self, name: &str) -> Result<CreatedAccount> {
        let body = CreateAccountRequest { name: name.into() };
        self.call(Method::POST, "/api/v1/accounts", Some(&body))
            .await
    }

    pub async fn register_agent(&self, req: &RegisterAgentRequest) -> Result<AgentResponse> {
        self.call(Method::POST, "/api/v1/sdk/agents", Some(req))
            .await
    }

    pub async fn list_agents(&self, page: u64, limit: u64) -> Result<AgentList> {
        self.get(&format!("/api/v1/sdk/agents?page={page}&limit={limit}"))
            .await
    }

    pub async fn get_agent(&self, id: i64) -> Result<AgentResponse> {
        self.get(&format!("/api/v1/sdk/agents/{id}")).await
    }

    pub async fn update_agent(&self, id: i64, patch: &PatchAgentRequest) -> Result<AgentResponse> {
        self.call(
            Method::PATCH,
            &format!("/api/v1/sdk/agents/{id}"),
            Some(patch),
        )
        .await
    }

    pub async fn delete_agent(&self, id: i64) -> Result<SuccessResponse> {
        self.call::<(), _>(Method::DELETE, &format!("/api/v1/sdk/agents/{id}"), None)
            .await
    }

    /// The deployment's audit verifier key (C2SP form).
    pub async fn audit_key(&self) -> Result<String> {
        let v: serde_json::Value = self.get("/api/v1/sdk/audit/key").await?;
        v["verifier_key"]
            .as_str()
            .map(str::to_string)
            .ok_or(ClientError::Unexpected {
                status: 200,
                body: v.to_string(),
            })
    }

    /// Streams an export (`format` = `bundle` or `csv`) into `out`, chunk by chunk.
    pub async fn export_audit(
        &self,
        format: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64> {
        let mut req = self
            .http
            .get(format!("{}/api/v1/sdk/audit/export", self.base))
            .query(&[("format", format)]);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let mut resp = req.send().await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = resp.bytes().await?;
            return Err(error_from(status, &bytes));
        }
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            out.write_all(&chunk).map_err(|e| ClientError::Unexpected {
                status,
                body: format!("writing the export: {e}"),
            })?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// Replaces a key's scopes (within those the caller holds).
    pub async fn set_key_scopes(&self, id: i64, scopes: &[String]) -> Result<KeyResponse> {
        let body = SetKeyScopesRequest {
            scopes: scopes.to_vec(),
        };
        self.call(Method::PATCH, &format!("/api/v1/keys/{id}"), Some(&body))
            .await
    }

    pub async fn get_key(&self, id: i64) -> Result<KeyResponse> {
        self.get(&format!("/api/v1/keys/{id}")).await
    }

    /// Runs an agent and waits for its end (whatever its status).
    pub async fn execute(&self, agent_id: i64, input: Option<Value>) -> Result<ExecutionResponse> {
        let body = ExecuteRequest { input };
        self.call(
            Method::POST,
            &format!("/api/v1/sdk/agents/{agent_id}/execute"),
            Some(&body),
        )
        .await
    }

    /// An agent's executions, newest first; `status` filters.
    pub async fn list_executions(
        &self,
        agent_id: i64,
        page: u64,
        limit: u64,
        status: Option<&str>,
    ) -> Result<ExecutionList> {
        let mut path =
            format!("/api/v1/sdk/agents/{agent_id}/executions?page={page}&limit={limit}");
        if let Some(s) = status {
            path.push_str(&format!("&status={}", encode(s)));
        }
        self.get(&path).await
    }

    pub async fn get_execution(&self, agent_id: i64, id: i64) -> Result<ExecutionResponse> {
        self.get(&format!("/api/v1/sdk/agents/{agent_id}/executions/{id}"))
            .await
    }

    /// Stops an agent: its runs end and new ones are refused until revived.
    pub async fn kill_agent(&self, agent_id: i64, reason: &str) -> Result<Value> {
        self.call(
            Method::POST,
            &format!("/api/v1/sdk/agents/{agent_id}/kill"),
            Some(&json!({ "reason": reason })),
        )
        .await
    }

    /// Halts (or, with `halted` false, resumes) the caller's account or, with
    /// `scope` `deployment`, every account.
    pub async fn set_halt(&self, halted: bool, reason: &str, scope: &str) -> Result<Value> {
        self.call(
            Method::POST,
            "/api/v1/sdk/kill-switch/global",
            Some(&json!({ "halted": halted, "reason": reason, "scope": scope })),
        )
        .await
    }

    /// The halt in force for the caller, if any.
    pub async fn halt_state(&self) -> Result<Value> {
        self.get("/api/v1/sdk/kill-switch/global").await
    }

    /// Permission requests, newest first; `status` is `pending`, `approved`,
    /// `denied` or `expired`.
    pub async fn permission_requests(
        &self,
        status: Option<&str>,
        agent_id: Option<i64>,
        limit: u64,
    ) -> Result<Value> {
        let mut path = format!("/api/v1/sdk/permission-requests?limit={limit}");
        if let Some(s) = status {
            path.push_str(&format!("&status={}", encode(s)));
        }
        if let Some(a) = agent_id {
            path.push_str(&format!("&agent_id={a}"));
        }
        self.get(&path).await
    }

    pub async fn permission_request(&self, id: i64) -> Result<Value> {
        self.get(&format!("/api/v1/sdk/permission-requests/{id}"))
            .await
    }

    /// Approves (the grant lapsing after `grant_expires_in_ms`, if given) or
    /// denies a pending request.
    pub async fn decide_permission_request(
        &self,
        id: i64,
        approve: bool,
        reason: Option<&str>,
        grant_expires_in_ms: Option<u64>,
    ) -> Result<Value> {
        let mut body = serde_json::Map::new();
        if let Some(r) = reason {
            body.insert("reason".into(), r.into());
        }
        if let Some(ms) = grant_expires_in_ms {
            body.insert("grant_expires_in_ms".into(), ms.into());
        }
        let verb = if approve { "approve" } else { "deny" };
        self.call(
            Method::POST,
            &format!("/api/v1/sdk/permission-requests/{id}/{verb}"),
            Some(&Value::Object(body)),
        )
        .await
    }

    /// The latest signed checkpoint of the caller's log:
    /// `{origin, size, checkpoint, verifier_key}`.
    pub async fn audit_checkpoint(&self) -> Result<Value> {
        self.get("/api/v1/sdk/audit/checkpoint").await
    }

    /// Opens the live audit stream (`query` as the route takes it, e.g.
    /// `agentId=3&after=10`); read it with [`AuditStream::next`].
    pub async fn audit_stream(&self, query: &str) -> Result<AuditStream> {
        let mut req = self
            .http
            .get(format!("{}/api/v1/sdk/audit/stream?{query}", self.base));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let bytes = resp.bytes().await?;
            return Err(error_from(status, &bytes));
        }
        Ok(AuditStream {
            resp,
            buf: Vec::new(),
        })
    }

    pub async fn audit(&self, query: &str) -> Result<AuditList> {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.get(&format!("/api/v1/sdk/audit{q}")).await
    }

    /// A compliance status or report (`what` = `status` or `report`) with its
    /// query string.
    pub async fn compliance(&self, what: &str, query: &str) -> Result<serde_json::Value> {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.get(&format!("/api/v1/sdk/compliance/{what}{q}")).await
    }

    /// Runs a kill-switch drill in the caller's account.
    pub async fn compliance_drill(&self) -> Result<serde_json::Value> {
        self.call::<(), _>(Method::POST, "/api/v1/sdk/compliance/drill", None)
            .await
    }

    /// Generates the evidence package of `framework`: the zip's bytes, its
    /// file name, its SHA-256 as the server states it, and the leaf index of
    /// the audit event that records it.
    pub async fn compliance_package(
        &self,
        framework: &str,
        body: &serde_json::Value,
    ) -> Result<EvidencePackage> {
        let mut req = self
            .http
            .post(format!(
                "{}/api/v1/sdk/compliance/packages/{framework}",
                self.base
            ))
            .json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let filename = header("content-disposition")
            .and_then(|d| {
                d.split("filename=\"")
                    .nth(1)
                    .map(|f| f.trim_end_matches('"').to_string())
            })
            .unwrap_or_else(|| format!("thetazero-evidence-{framework}.zip"));
        let sha256 = header("x-content-sha256").unwrap_or_default();
        let leaf_index = header("x-audit-leaf-index").and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    status,
                    code: e.error.code,
                    message: e.error.message,
                    request_id: e.error.request_id,
                },
                Err(_) => ClientError::Unexpected {
                    status,
                    body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                },
            });
        }
        Ok(EvidencePackage {
            filename,
            sha256,
            leaf_index,
            bytes: bytes.to_vec(),
        })
    }
}

/// An evidence package as the server sent it.
#[derive(Debug, Clone)]
pub struct EvidencePackage {
    pub filename: String,
    pub sha256: String,
    pub leaf_index: Option<u64>,
    pub bytes: Vec<u8>,
}

fn error_from(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(e) => ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
            request_id: e.error.request_id,
        },
        Err(_) => ClientError::Unexpected {
            status,
            body: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        },
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One server-sent event of the audit stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// `connected`, `audit`, `checkpoint`, `keepalive`, `timeout`...
    pub event: String,
    /// The leaf index, on `audit` events.
    pub id: Option<u64>,
    pub data: Value,
}

/// The live audit stream, read event by event.
pub struct AuditStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl AuditStream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut event = StreamEvent {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                };
                let mut comment = true;
                for line in text.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event.event = e.to_string();
                        comment = false;
                    } else if let Some(i) = line.strip_prefix("id: ") {
                        event.id = i.trim().parse().ok();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(d).unwrap_or(Value::String(d.into()));
                        comment = false;
                    }
                }
                if comment {
                    // A comment line (`: keepalive`) carries nothing to report.
                    continue;
                }
                return Ok(Some(event));
            }
            match self.resp.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}
