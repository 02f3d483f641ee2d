//! The sandbox's host bridge, implemented over the store: an agent's context,
//! its account's storage, and the audit hook. Every key is scoped to the agent
//! or account the execution belongs to; nothing reaches another account.
//!
//! Store calls are spawned on the server's runtime: the sandbox drives this
//! code from its own worker runtimes, and database clients belong to the
//! server's.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use thetazero_core::audit::AuditEvent;
use thetazero_core::model::{AgentId, ExecutionId};
use thetazero_core::store::{Store, StoreError};
use thetazero_safety::Filter;
use thetazero_sandbox::{Host, HostError, SandboxEvent};
use tokio::runtime::Handle;

use crate::inference::{ChatRequest, InferenceClient};

use crate::Caller;

const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 64 << 10;

/// Content safety (`None` when the agent's template turned it off) and the
/// inference provider, as one execution sees them.
pub(crate) struct HostServices {
    pub safety: Option<Arc<Filter>>,
    pub inference: Option<Arc<InferenceClient>>,
}

pub(crate) struct ServerHost {
    store: Arc<dyn Store>,
    handle: Handle,
    caller: Caller,
    agent: AgentId,
    execution: ExecutionId,
    /// Writes the execution's start, once, before the first decision.
    gate: Arc<crate::StartGate>,
    /// Content safety, `None` when the agent's template turned it off (DEV).
    safety: Option<Arc<Filter>>,
    inference: Option<Arc<InferenceClient>>,
    /// Inference tokens this execution may still use.
    tokens_left: AtomicU64,
}

impl ServerHost {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        handle: Handle,
        caller: Caller,
        agent: AgentId,
        execution: ExecutionId,
        gate: Arc<crate::StartGate>,
        services: HostServices,
    ) -> Self {
        let HostServices { safety, inference } = services;
        let tokens = inference
            .as_ref()
            .map(|i| i.config().max_tokens_per_run)
            .unwrap_or(0);
        ServerHost {
            store,
            handle,
            caller,
            agent,
            execution,
            gate,
            safety,
            inference,
            tokens_left: AtomicU64::new(tokens),
        }
    }

    /// Screens content; a block is recorded as `content_blocked` and fails
    /// the host call inside the agent.
    async fn screen(&self, source: &str, content: &Value) -> Result<(), HostError> {
        let Some(filter) = &self.safety else {
            return Ok(());
        };
        let verdict = filter.scan_json_async(content).await;
        if !verdict.is_block() {
            return Ok(());
        }
        let event = crate::blocked_event(
            self.event("content_blocked", "safety", String::new()),
            source,
            &verdict,
        );
        let store = self.store.clone();
        self.on_server(async move { store.append_audit(vec![event]).await.map(|_| ()) })
            .await?;
        Err(HostError::Blocked(format!(
            "{source} blocked by the {} layer{}",
            crate::layer_name(&verdict),
            verdict
                .rule
                .as_deref()
                .map(|r| format!(" (rule {r})"))
                .unwrap_or_default()
        )))
    }

    async fn on_server<T, F>(&self, f: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        match self.handle.spawn(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(execution_id = self.execution, error = %e, "host call failed in the store");
                Err(HostError::Unavailable)
            }
            Err(_) => Err(HostError::Unavailable),
        }
    }

    fn event(&self, action: &str, category: &str, description: String) -> AuditEvent {
        let mut e = AuditEvent::new(self.caller.account, action, category, description)
            .agent(self.agent)
            .key(self.caller.key_id);
        e.execution_id = Some(self.execution);
        e
    }
}

fn check_key(key: &str) -> Result<(), HostError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(HostError::Refused(format!(
            "keys are 1-{MAX_KEY_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_value(value: &Value) -> Result<(), HostError> {
    let size = value.to_string().len();
    if size > MAX_VALUE_BYTES {
        return Err(HostError::Refused(format!(
            "values are at most {MAX_VALUE_BYTES} bytes of JSON; this one is {size}"
        )));
    }
    Ok(())
}

#[async_trait]
impl Host for ServerHost {
    async fn read_context(&self, key: &str) -> Result<Option<Value>, HostError> {
        check_key(key)?;
        let (store, account, agent, key) = (
            self.store.clone(),
            self.caller.account,
            self.agent,
            key.to_string(),
        );
        self.on_server(async move { store.get_context(account, agent, &key).await })
            .await
            .map(|entry| entry.map(|e| e.value))
    }

    async fn write_context(&self, key: &str, value: Value) -> Result<(), HostError> {
        check_key(key)?;
        check_value(&value)?;
        let (store, account, agent, key) = (
            self.store.clone(),
            self.caller.account,
            self.agent,
            key.to_string(),
        );
        self.on_server(async move {
            store
                .put_context(account, agent, &key, &value)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn storage_get(&self, key: &str) -> Result<Option<Value>, HostError> {
        check_key(key)?;
        let (store, account, key) = (self.store.clone(), self.caller.account, key.to_string());
        self.on_server(async move { store.storage_get(account, &key).await })
            .await
    }

    async fn storage_put(&self, key: &str, value: Value) -> Result<(), HostError> {
        check_key(key)?;
        check_value(&value)?;
        let (store, account, key) = (self.store.clone(), self.caller.account, key.to_string());
        self.on_server(async move { store.storage_put(account, &key, &value).await })
            .await
    }

    async fn screen_fetched(&self, url: &str, response: &Value) -> Result<(), HostError> {
        let body = response.get("body").cloned().unwrap_or(Value::Null);
        self.screen(&format!("content fetched from {url}"), &body)
            .await
    }

    async fn inference(&self, request: Value) -> Result<Value, HostError> {
        let Some(client) = &self.inference else {
            return Err(HostError::Refused(
                "no inference provider is configured on this server (THETAZERO_INFERENCE_BASE_URL)"
                    .into(),
            ));
        };
        let request = ChatRequest::from_agent(&request).map_err(HostError::Refused)?;
        let left = self.tokens_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(HostError::Refused(
                "the inference token budget of this run is spent".into(),
            ));
        }
        let prompt: Value = request
            .messages
            .iter()
            .map(|m| Value::String(m.content.clone()))
            .collect();
        self.screen("inference prompt", &prompt).await?;
        let max_tokens = request.max_tokens.unwrap_or(left).min(left);
        let completion = client.complete(&request, max_tokens).await.map_err(|e| {
            tracing::warn!(execution_id = self.execution, error = %e, "inference failed");
            HostError::Refused(e.to_string())
        })?;
        // Spend what the provider says it used, at least the completion.
        let used = completion.total_tokens().max(1);
        let _ = self
            .tokens_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                Some(l.saturating_sub(used))
            });
        self.screen(
            "inference completion",
            &Value::String(completion.content.clone()),
        )
        .await?;
        Ok(completion.to_agent())
    }

    async fn record(&self, event: SandboxEvent) -> Result<(), HostError> {
        // Nothing is recorded, and so nothing runs, before the start is.
        // On the server's runtime, where the database clients live.
        let gate = self.gate.clone();
        match self.handle.spawn(async move { gate.ensure().await }).await {
            Ok(Ok(())) => {}
            _ => return Err(HostError::Unavailable),
        }
        let audit = match &event {
            SandboxEvent::HostCallDecision {
                function,
                scope,
                args_summary,
                allowed,
            } => {
                let mut e = self.event(
                    "api_call",
                    "host_call",
                    format!("thetazero.{}({args_summary})", function.name()),
                );
                e.permission_state = if *allowed { "granted" } else { "denied" }.into();
                e.input_summary = Some(args_summary.clone());
                e.payload = json!({"fn": function.name(), "scope": scope, "phase": "decision"});
                e
            }
            SandboxEvent::HostCallOutcome {
                function,
                ok,
                error_code,
                duration_ms,
            } => {
                let mut e = self.event(
                    "api_call_result",
                    "host_call",
                    match error_code {
                        None => format!(
                            "thetazero.{} succeeded in {duration_ms:.1} ms",
                            function.name()
                        ),
                        Some(code) => format!("thetazero.{} failed ({code})", function.name()),
                    },
                );
                e.permission_state = "granted".into();
                e.payload = json!({"fn": function.name(), "ok": ok, "error_code": error_code, "duration_ms": duration_ms, "phase": "outcome"});
                e
            }
            SandboxEvent::PermissionDenied {
                function,
                scope,
                code,
                reason,
                is_violation,
            } => {
                let mut e = self.event(
                    "permission_denied",
                    "host_call",
                    format!("thetazero.{} refused: {reason}", function.name()),
                );
                e.permission_state = "denied".into();
                e.is_violation = *is_violation;
                e.payload = json!({"fn": function.name(), "scope": scope, "code": code});
                e
            }
            SandboxEvent::SandboxLimitHit {
                limit,
                detail,
                is_violation,
            } => {
                let mut e = self.event(
                    "sandbox_limit_hit",
                    "limit",
                    format!("limit {} hit: {detail}", limit.as_str()),
                );
                e.is_violation = *is_violation;
                e.payload = json!({"limit": limit.as_str(), "detail": detail});
                e
            }
        };
        let store = self.store.clone();
        self.on_server(async move { store.append_audit(vec![audit]).await.map(|_| ()) })
            .await
    }
}
