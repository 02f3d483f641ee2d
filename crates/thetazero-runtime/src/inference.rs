//! `thetazero.inference`: chat completions through the operator's
//! OpenAI-compatible provider. The provider's key stays here, on the server;
//! agents see only the completion. Prompts and completions pass content
//! safety, and every run has a token budget.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The operator's provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceConfig {
    /// Base URL of an OpenAI-compatible API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer`; never visible to agents.
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Tokens (prompt and completion) one execution may use in all.
    pub max_tokens_per_run: u64,
    /// Speak HTTP/2 to an `http://` provider without negotiating it (h2c
    /// with prior knowledge). An `https://` provider gets HTTP/2 through
    /// TLS negotiation whenever it offers it.
    pub http2_prior_knowledge: bool,
}

impl InferenceConfig {
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> InferenceConfig {
        InferenceConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            timeout: Duration::from_secs(60),
            max_tokens_per_run: 20_000,
            http2_prior_knowledge: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What an agent may ask: `{messages: [{role, content}], max_tokens?,
/// temperature?}` or the shorthand `{prompt}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
}

const MAX_MESSAGES: usize = 64;

impl ChatRequest {
    pub fn from_agent(value: &Value) -> Result<ChatRequest, String> {
        let obj = value
            .as_object()
            .ok_or("inference takes an object: {messages: [{role, content}]} or {prompt}")?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "messages" | "prompt" | "max_tokens" | "temperature" | "system"
            ) {
                return Err(format!("unknown inference field {key:?}"));
            }
        }
        let mut messages = Vec::new();
        if let Some(system) = obj.get("system") {
            let content = system.as_str().ok_or("system must be a string")?;
            messages.push(Message {
                role: "system".into(),
                content: content.into(),
            });
        }
        match (obj.get("messages"), obj.get("prompt")) {
            (Some(list), None) => {
                let list = list.as_array().ok_or("messages must be a list")?;
                if list.is_empty() || list.len() > MAX_MESSAGES {
                    return Err(format!("messages must hold 1 to {MAX_MESSAGES} entries"));
                }
                for m in list {
                    let role = m
                        .get("role")
                        .and_then(Value::as_str)
                        .ok_or("each message needs a string role")?;
                    if !matches!(role, "system" | "user" | "assistant") {
                        return Err(format!(
                            "unknown role {role:?}; expected system, user or assistant"
                        ));
                    }
                    let content = m
                        .get("content")
                        .and_then(Value::as_str)
                        .ok_or("each message needs a string content")?;
                    messages.push(Message {
                        role: role.into(),
                        content: content.into(),
                    });
                }
            }
            (None, Some(prompt)) => {
                let content = prompt.as_str().ok_or("prompt must be a string")?;
                messages.push(Message {
                    role: "user".into(),
                    content: content.into(),
                });
            }
            _ => return Err("give either messages or prompt".into()),
        }
        let max_tokens = match obj.get("max_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n > 0)
                    .ok_or("max_tokens must be a positive integer")?,
            ),
        };
        let temperature = match obj.get("temperature") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|t| (0.0..=2.0).contains(t))
                    .ok_or("temperature must be between 0 and 2")?,
            ),
        };
        Ok(ChatRequest {
            messages,
            max_tokens,
            temperature,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub model: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Completion {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn to_agent(&self) -> Value {
        json!({
            "content": self.content,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens(),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("the inference provider did not answer in time")]
    Timeout,
    #[error("the inference provider could not be reached")]
    Unreachable,
    #[error("the inference provider answered {0}")]
    Status(u16),
    #[error("the inference provider's answer was not a chat completion")]
    Malformed,
}

pub struct InferenceClient {
    http: reqwest::Client,
    config: InferenceConfig,
}

/// Largest provider answer read.
const MAX_ANSWER_BYTES: usize = 4 << 20;

impl InferenceClient {
    pub fn new(config: InferenceConfig) -> Result<InferenceClient, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            // reqwest's default TCP_USER_TIMEOUT (30 s) ends a connection when
            // one keepalive probe goes unanswered, and a model often takes
            // longer than that to answer: every call sharing the HTTP/2
            // connection would fail. The call's own timeout bounds it.
            .tcp_user_timeout(None);
        if config.http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(InferenceClient { http, config })
    }

    pub fn config(&self) -> &InferenceConfig {
        &self.config
    }

    pub async fn complete(
        &self,
        request: &ChatRequest,
        max_tokens: u64,
    ) -> Result<Completion, InferenceError> {
        let mut body = json!({
            "model": self.config.model,
            "messages": request.messages,
            "max_tokens": max_tokens,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        let mut req = self
            .http
            .post(format!("{}/chat/completions", self.config.base_url))
            .json(&body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                InferenceError::Timeout
            } else {
                InferenceError::Unreachable
            }
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(InferenceError::Status(status));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| InferenceError::Unreachable)?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(InferenceError::Malformed);
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| InferenceError::Malformed)?;
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or(InferenceError::Malformed)?;
        let content = choice
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or(InferenceError::Malformed)?;
        let usage = v.get("usage");
        let tokens = |k: &str| {
            usage
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(Completion {
            content: content.to_string(),
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.config.model)
                .to_string(),
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            prompt_tokens: tokens("prompt_tokens"),
            completion_tokens: tokens("completion_tokens"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: Value, expected: Result<usize, &str>) {
        match (ChatRequest::from_agent(&input), expected) {
            (Ok(r), Ok(n)) => assert_eq!(r.messages.len(), n, "{input}"),
            (Err(e), Err(frag)) => assert!(e.contains(frag), "{e} lacks {frag}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn agent_requests_are_checked() {
        check(json!({"prompt": "hi"}), Ok(1));
        check(json!({"prompt": "hi", "system": "be brief"}), Ok(2));
        check(
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            Ok(2),
        );
        check(json!({"messages": []}), Err("1 to 64"));
        check(
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            Err("unknown role"),
        );
        check(json!({"messages": [{"role": "user"}]}), Err("content"));
        check(json!({"prompt": "a", "messages": []}), Err("either"));
        check(json!({}), Err("either"));
        check(
            json!({"prompt": "a", "model": "gpt-9"}),
            Err("unknown inference field \"model\""),
        );
        check(json!({"prompt": "a", "max_tokens": 0}), Err("positive"));
        check(
            json!({"prompt": "a", "temperature": 9}),
            Err("between 0 and 2"),
        );
        check(json!("hi"), Err("takes an object"));
    }
}
