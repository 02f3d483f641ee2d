//! A Rust client for the thetazero REST API, built on the same wire types as
//! the server. Used by the CLI; it holds no state beyond the base URL and key.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thetazero_api::types::{
    AgentList, AgentResponse, AuditList, CreateAccountRequest, CreateKeyRequest, CreatedAccount,
    CreatedKey, KeyList, KeyResponse, PatchAgentRequest, RegisterAgentRequest, SuccessResponse,
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
        let http = reqwest::Client::builder()
            .user_agent(concat!("thetazero-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
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
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                request_id: e.error.request_id,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
        }
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
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    status,
                    code: e.error.code,
                    message: e.error.message,
                    request_id: e.error.request_id,
                },
                Err(_) => ClientError::Unexpected {
                    status,
                    body: String::from_utf8_lossy(&bytes).into(),
                },
            });
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
