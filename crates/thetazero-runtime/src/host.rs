//! The sandbox's host bridge (`ServerHost`): what each host call does once the
//! broker has allowed it. An agent's context and its account's storage
//! (within the account's quotas, each value screened as output before it is
//! kept), the screen of fetched content, `inference` through the provider,
//! `call_agent` (depth, the swarm quota, a child spending its parent's
//! budget), `get_execution`, permission requests raised in the middle of a
//! run and the wait for their decision, and the audit hook that records each
//! decision before the call runs. Every key is scoped to the agent or account
//! the execution belongs to; nothing reaches another account.
//!
//! Store calls are spawned on the server's runtime: the sandbox drives this
//! code from its own worker runtimes, and database clients belong to the
//! server's.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{
    AgentId, Execution, ExecutionId, NewPermissionRequest, PermissionRequestStatus,
};
use thetazero_core::rate::RateLimit;
use thetazero_core::store::{Store, StoreError};
use thetazero_safety::{Channel, Filter};
use thetazero_sandbox::{ApprovalAsk, CancelHandle, ChildBudget, Host, HostError, SandboxEvent};
use tokio::runtime::Handle;

use crate::inference::{ChatRequest, InferenceClient};

use crate::Caller;

/// How often a suspended call looks for its decision; decisions made on any
/// replica land in the store.
const APPROVAL_POLL: Duration = Duration::from_millis(50);

/// Where a call-bound request stands between the waiting call and the task
/// that creates it, so that a wait that ends at any point (a kill may drop
/// it while the request is still being created) leaves the request expired,
/// never pending.
enum Expiry {
    /// The request is being created; nobody has let go yet.
    Creating,
    /// The request exists and the call waits for its decision.
    Created(thetazero_core::model::PermissionRequestId),
    /// The call's wait ended before the request existed: whoever creates it
    /// expires it at once.
    Abandoned,
    /// A decision was seen: nothing to do.
    Disarmed,
}

/// Marks a call-bound request expired when the wait ends without a decision.
struct ExpireOnDrop {
    state: Arc<std::sync::Mutex<Expiry>>,
    store: Arc<dyn Store>,
    handle: Handle,
    account: thetazero_core::model::AccountId,
}

/// Records `id` expired, on the server's runtime.
fn spawn_expiry(
    handle: &Handle,
    store: Arc<dyn Store>,
    account: thetazero_core::model::AccountId,
    id: thetazero_core::model::PermissionRequestId,
) {
    handle.spawn(async move {
        let decided = crate::approvals::expire(
            &*store,
            account,
            id,
            "no decision before the call's wait ended",
        )
        .await;
        if let Err(e) = decided {
            tracing::warn!(request_id = id.get(), error = %e, "could not expire a call-bound permission request");
        }
    });
}

impl ExpireOnDrop {
    fn disarm(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Expiry::Disarmed;
    }
}

impl Drop for ExpireOnDrop {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *state, Expiry::Disarmed) {
            Expiry::Created(id) => spawn_expiry(&self.handle, self.store.clone(), self.account, id),
            Expiry::Creating => *state = Expiry::Abandoned,
            Expiry::Abandoned | Expiry::Disarmed => {}
        }
    }
}

/// What agent code sees of an execution of its account.
fn child_view(e: &Execution) -> Value {
    let time = |t: &time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let report = e.run_report();
    json!({
        "execution_id": e.id,
        "agent_id": e.agent_id,
        "parent_execution_id": e.parent_execution_id,
        "status": e.status.as_str(),
        "output": e.output,
        "error": report.error,
        "duration_ms": e.duration_ms,
        "resource_usage": report.resource_usage,
        "started_at": time(&e.started_at),
        "finished_at": e.finished_at.as_ref().map(time),
    })
}

/// Content safety (`None` when the agent's template turned it off) and the
/// inference provider, as one execution sees them.
pub(crate) struct HostServices {
    pub safety: Option<Arc<Filter>>,
    pub inference: Option<Arc<InferenceClient>>,
    /// Starts child executions for `call_agent`.
    pub launcher: Arc<crate::Launcher>,
    /// This execution's depth in its swarm: 0 at the top.
    pub depth: u32,
    /// Hex SHA-256 of the code this execution runs.
    pub code_sha256: String,
    /// Verdicts given while the run runs, kept for its recording.
    pub screens: Arc<crate::RunScreens>,
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
    launcher: Arc<crate::Launcher>,
    depth: u32,
    /// Permission requests this run waits on now.
    pending: AtomicU64,
    code_sha256: String,
    screens: Arc<crate::RunScreens>,
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
        let HostServices {
            safety,
            inference,
            launcher,
            depth,
            code_sha256,
            screens,
        } = services;
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
            launcher,
            depth,
            pending: AtomicU64::new(0),
            code_sha256,
            screens,
        }
    }

    /// Screens content; a block is recorded as `content_blocked` and fails
    /// the host call inside the agent.
    async fn screen(
        &self,
        source: &str,
        channel: Channel,
        content: &Value,
    ) -> Result<(), HostError> {
        let Some(filter) = &self.safety else {
            return Ok(());
        };
        self.screen_with(filter, source, channel, content).await
    }

    /// [`Self::screen`] with this filter, whatever the agent's template
    /// says: for what agents other than this one read.
    async fn screen_with(
        &self,
        filter: &Filter,
        source: &str,
        channel: Channel,
        content: &Value,
    ) -> Result<(), HostError> {
        let verdict = filter.scan_json_channel_async(content, channel).await;
        crate::count_decision(channel, &verdict);
        if !verdict.is_block() {
            return Ok(());
        }
        let event = crate::blocked_event(
            self.event(AuditAction::ContentBlocked, String::new()),
            source,
            &verdict,
        );
        let store = self.store.clone();
        self.on_server(async move { store.append_audit(vec![event]).await.map(|_| ()) })
            .await?;
        Err(HostError::Blocked(format!(
            "{source} {}",
            crate::why_blocked(&verdict)
        )))
    }

    /// The deployment's filter, whatever this agent's template says: for
    /// what outlives the run or is read by others than its author.
    fn shared_filter(&self) -> &Filter {
        self.safety
            .as_deref()
            .unwrap_or(&self.launcher.services.safety)
    }

    /// A value written under a key (context, storage) is output, and so is
    /// the key, which is kept and listed with it.
    async fn screen_written(&self, kind: &str, key: &str, value: &Value) -> Result<(), HostError> {
        let filter = self.shared_filter();
        self.screen_with(filter, &format!("{kind} key"), Channel::Output, &json!(key))
            .await?;
        self.screen_with(
            filter,
            &format!("value written to {kind} key {key:?}"),
            Channel::Output,
            value,
        )
        .await
    }

    /// Refuses a write that would take the account past its quota.
    async fn within_quota(
        &self,
        kept: crate::quotas::Kept,
        key: &str,
        value: &Value,
    ) -> Result<(), HostError> {
        let quotas = self.launcher.quotas;
        let (store, account, key, value) = (
            self.store.clone(),
            self.caller.account,
            key.to_string(),
            value.clone(),
        );
        self.on_server(async move {
            quotas
                .check_write(store.as_ref(), account, kept, &key, &value)
                .await
        })
        .await?
        .map_err(|over| HostError::OverQuota(over.to_string()))
    }

    async fn on_server<T, F>(&self, f: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        match self.handle.spawn(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e @ StoreError::PendingLimit { .. })) => {
                Err(HostError::OverQuota(e.to_string()))
            }
            Ok(Err(e)) => {
                tracing::warn!(execution_id = self.execution.get(), error = %e, "host call failed in the store");
                Err(HostError::Unavailable)
            }
            Err(_) => Err(HostError::Unavailable),
        }
    }

    fn event(&self, action: AuditAction, description: String) -> AuditEvent {
        let mut e = AuditEvent::new(self.caller.account, action, description)
            .agent(self.agent)
            .key(self.caller.key_id);
        e.execution_id = Some(self.execution);
        e
    }
}

/// Gives back a run's pending-request slot when its wait ends.
struct PendingSlot<'a>(&'a AtomicU64);

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What an approver sees of the exact call a run waits on: for a request,
/// the full URL with its query, the method, the header names (never their
/// values, which may carry credentials), the body's size, digest and a
/// bounded excerpt; for other calls the key or name, and the value's size,
/// digest and excerpt.
pub(crate) fn call_detail(args: &Value) -> Value {
    const EXCERPT: usize = 200;
    fn excerpt(text: &str) -> String {
        let mut cut: String = text.chars().take(EXCERPT).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        cut
    }
    fn sized(bytes: &[u8]) -> Value {
        json!({
            "bytes": bytes.len(),
            "sha256": crate::sha256_hex(bytes),
            "excerpt": excerpt(&String::from_utf8_lossy(bytes)),
        })
    }
    if let Some(url) = args.get("url").and_then(Value::as_str) {
        let header_names: Vec<&str> = args
            .get("headers")
            .and_then(Value::as_array)
            .map(|hs| {
                hs.iter()
                    .filter_map(|h| h.get(0).and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let body = args
            .get("body_hex")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok());
        return json!({
            "url": url,
            "method": args.get("method").cloned().unwrap_or(Value::Null),
            "header_names": header_names,
            "body": body.as_deref().map(sized),
        });
    }
    let mut detail = serde_json::Map::new();
    for name in ["key", "name"] {
        if let Some(v) = args.get(name) {
            detail.insert(name.into(), v.clone());
        }
    }
    let value = args
        .get("value")
        .or_else(|| args.get("input"))
        .cloned()
        .unwrap_or_else(|| {
            if detail.is_empty() {
                args.clone()
            } else {
                Value::Null
            }
        });
    if !value.is_null() {
        detail.insert("value".into(), sized(value.to_string().as_bytes()));
    }
    Value::Object(detail)
}

fn check_key(key: &str) -> Result<(), HostError> {
    thetazero_core::model::check_value_key(key).map_err(HostError::Refused)
}

fn check_value(value: &Value) -> Result<(), HostError> {
    thetazero_core::model::check_value_size(value).map_err(|(size, max)| {
        HostError::Refused(format!(
            "values are at most {max} bytes of JSON; this one is {size}"
        ))
    })
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
        // What an agent writes where a person or a later run reads it is
        // output: screened before it is kept. Also when this agent's
        // template turned safety off: the value outlives the template, and
        // the agent's runs read it once its safety is on again.
        self.screen_written("context", key, &value).await?;
        self.within_quota(crate::quotas::Kept::Context(self.agent), key, &value)
            .await?;
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
        // Storage is the account's: agents whose safety is on read it, so
        // it is screened even when this agent's template turned safety off.
        self.screen_written("storage", key, &value).await?;
        self.within_quota(crate::quotas::Kept::Storage, key, &value)
            .await?;
        let (store, account, key) = (self.store.clone(), self.caller.account, key.to_string());
        self.on_server(async move { store.storage_put(account, &key, &value).await })
            .await
    }

    async fn screen_log(&self, message: &str) -> Result<(), HostError> {
        // A log entry is read where the run's readers read it: output. The
        // verdict is kept by the entry's text, and the run's end withholds
        // and audits the entries refused here (and screens any other).
        let refused =
            crate::screen(&self.safety, &crate::log_value(message), Channel::Output).await;
        let error = refused.as_ref().map(crate::log_refusal);
        self.screens.logs.keep(message, refused);
        error.map_or(Ok(()), Err)
    }

    async fn screen_fetched(&self, url: &str, response: &Value) -> Result<(), HostError> {
        let body = response.get("body").cloned().unwrap_or(Value::Null);
        self.screen(
            &format!("content fetched from {url}"),
            Channel::Fetched,
            &body,
        )
        .await?;
        // The server chose its header values as freely as its body.
        let headers = response.get("headers").cloned().unwrap_or(Value::Null);
        self.screen(
            &format!("headers fetched from {url}"),
            Channel::Fetched,
            &headers,
        )
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
        self.screen("inference prompt", Channel::Prompt, &prompt)
            .await?;
        let max_tokens = request.max_tokens.unwrap_or(left).min(left);
        let completion = client.complete(&request, max_tokens).await.map_err(|e| {
            tracing::warn!(execution_id = self.execution.get(), error = %e, "inference failed");
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
            Channel::Completion,
            &Value::String(completion.content.clone()),
        )
        .await?;
        Ok(completion.to_agent())
    }

    async fn call_agent(
        &self,
        name: &str,
        input: Value,
        remaining: ChildBudget,
    ) -> Result<Value, HostError> {
        let swarm = self.launcher.swarm;
        if self.depth >= swarm.max_depth {
            return Err(HostError::Refused(format!(
                "swarms nest at most {} deep; this execution is at depth {}",
                swarm.max_depth, self.depth
            )));
        }
        if remaining.api_calls == 0 || remaining.time_ms == 0 {
            return Err(HostError::Refused(
                "this execution has no budget left to give a child".into(),
            ));
        }
        // The child reads what its parent hands it: the parent's output.
        self.screen(
            &format!("input passed to child agent {name:?}"),
            Channel::Output,
            &input,
        )
        .await?;
        let (store, account, wanted) = (self.store.clone(), self.caller.account, name.to_string());
        let child = self
            .on_server(async move { store.get_agent_by_name(account, &wanted).await })
            .await?
            .ok_or(HostError::NotFound)?;
        if swarm.executions_per_account_per_hour > 0 {
            let limit = RateLimit {
                key: format!("swarm:account:{account}"),
                limit: swarm.executions_per_account_per_hour,
                window: Duration::from_secs(3600),
            };
            let store = self.store.clone();
            let decision = self
                .on_server(async move { store.rate_acquire(&limit).await })
                .await?;
            if !decision.is_admitted() {
                let retry = decision.retry_after_secs();
                thetazero_core::telemetry::global()
                    .rate_limit_hit("swarm_executions_per_account_per_hour");
                let mut e = AuditEvent::rate_limit_hit(
                    account,
                    "swarm_executions_per_account_per_hour",
                    swarm.executions_per_account_per_hour,
                    3600,
                    retry,
                )
                .agent(self.agent)
                .key(self.caller.key_id);
                e.execution_id = Some(self.execution);
                e.payload["child_agent"] = child.name.clone().into();
                let store = self.store.clone();
                self.on_server(async move { store.append_audit(vec![e]).await.map(|_| ()) })
                    .await?;
                return Err(HostError::Refused(format!(
                    "the account's swarm executions per hour ({}) are used up; retry after {retry} s",
                    swarm.executions_per_account_per_hour
                )));
            }
        }
        // The child stops with its parent: when this call's future is
        // dropped (the parent was killed or ran out of time), so is the child.
        let cancel = CancelHandle::new();
        let stop_child = cancel.cancel_on_drop();
        let parent = crate::Parent {
            execution: self.execution,
            depth: self.depth + 1,
            budget: remaining,
            cancel,
        };
        let child_screened = child.config.content_safety();
        let (launcher, caller) = (self.launcher.clone(), self.caller);
        let run =
            self.handle
                .spawn(async move {
                    crate::execute(launcher, caller, child.id, input, Some(parent)).await
                })
                .await;
        stop_child.disarm();
        match run {
            Ok(Ok(done)) => {
                let view = child_view(&done.execution);
                // A child whose template turned safety off was never
                // screened; its parent's safety reads what comes back.
                if !child_screened {
                    self.screen("result of a child agent", Channel::Output, &view)
                        .await?;
                }
                Ok(view)
            }
            Ok(Err(e)) => Err(match e {
                crate::RuntimeError::AgentNotFound => HostError::NotFound,
                crate::RuntimeError::Store(_) | crate::RuntimeError::Sandbox(_) => {
                    tracing::warn!(execution_id = self.execution.get(), error = %e, "child execution failed");
                    HostError::Unavailable
                }
                other => HostError::Refused(other.to_string()),
            }),
            Err(_) => Err(HostError::Unavailable),
        }
    }

    async fn request_approval(&self, ask: ApprovalAsk) -> Result<bool, HostError> {
        // The execution's start is durable before anything it asks for.
        let gate = self.gate.clone();
        match self.handle.spawn(async move { gate.ensure().await }).await {
            Ok(Ok(())) => {}
            _ => return Err(HostError::Unavailable),
        }
        // The approver reads what the agent wrote into the call: the summary
        // and the detail the request shows (a URL, header names, a key or
        // name, excerpts of a value or body). A person reads it, so it is
        // output, screened as shown before any request holds it, whatever
        // this agent's template says: the approver is not its author. The
        // call it would have made is screened again when it runs.
        self.screen_with(
            self.shared_filter(),
            &format!(
                "call to thetazero.{} shown to an approver",
                ask.function.name()
            ),
            Channel::Output,
            &json!({"summary": ask.summary, "detail": call_detail(&ask.args)}),
        )
        .await?;
        // Bound to the exact call: its function and arguments, hashed as
        // sorted JSON.
        let bound = json!({"fn": ask.function.name(), "args": ask.args});
        let args_sha256 = crate::sha256_hex(bound.to_string().as_bytes());
        let grant = json!({"call": {
            "fn": ask.function.name(),
            "args_sha256": args_sha256,
            "summary": ask.summary,
            "detail": call_detail(&ask.args),
            "execution_id": self.execution,
        }});
        // Bounds on what one run and one agent may leave pending.
        let quotas = self.launcher.quotas;
        let per_run = quotas.pending_requests_per_run;
        let pending_here = self.pending.fetch_add(1, Ordering::SeqCst);
        let _pending = PendingSlot(&self.pending);
        if per_run > 0 && pending_here >= per_run {
            return Err(HostError::OverQuota(format!(
                "pending_requests_per_run is {per_run}; this run already waits on {pending_here}"
            )));
        }
        // The per-agent bound is checked by the store, in the insert's
        // transaction (concurrent runs of one agent cannot pass it together).
        let per_agent = quotas.pending_requests_per_agent;
        let (account, agent, key, execution) = (
            self.caller.account,
            self.agent,
            self.caller.key_id,
            self.execution,
        );
        let justification = format!(
            "execution {execution} asks to run thetazero.{}({}): {}",
            ask.function.name(),
            ask.summary,
            ask.reason
        );
        let timeout = time::Duration::try_from(ask.timeout).unwrap_or(time::Duration::MINUTE);
        let store = self.store.clone();
        let code_sha256 = self.code_sha256.clone();
        // Whatever ends the wait early (a kill, the parent's deadline) leaves
        // the request expired rather than pending, even while it is still
        // being created.
        let expire = ExpireOnDrop {
            state: Arc::new(std::sync::Mutex::new(Expiry::Creating)),
            store: self.store.clone(),
            handle: self.handle.clone(),
            account,
        };
        let (state, handle) = (expire.state.clone(), self.handle.clone());
        let request = self
            .on_server(async move {
                let created = store
                    .create_permission_request_audited(
                        NewPermissionRequest {
                            account_id: account,
                            agent_id: agent,
                            requested_by: key,
                            grant,
                            justification,
                            expires_at: time::OffsetDateTime::now_utc() + timeout,
                            code_sha256: Some(code_sha256),
                            pending_limit: (per_agent > 0).then_some(per_agent),
                        },
                        Box::new(move |r| {
                            vec![AuditEvent::approval(
                                account,
                                AuditAction::PermissionRequested,
                                r,
                                key,
                                format!(
                                    "execution {execution} suspended: permission request {} for one call",
                                    r.id
                                ),
                            )]
                        }),
                    )
                    .await?;
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                if let Expiry::Abandoned = *state {
                    spawn_expiry(&handle, store, account, created.id);
                } else {
                    *state = Expiry::Created(created.id);
                }
                Ok(created)
            })
            .await?;
        let deadline = tokio::time::Instant::now() + ask.timeout;
        loop {
            let store = self.store.clone();
            let id = request.id;
            let now = self
                .on_server(async move {
                    store
                        .permission_requests(account, Some(id), None, None, 1)
                        .await
                })
                .await?
                .pop()
                .ok_or(HostError::Unavailable)?;
            match now.status {
                PermissionRequestStatus::Approved => {
                    expire.disarm();
                    return Ok(true);
                }
                PermissionRequestStatus::Denied | PermissionRequestStatus::Expired => {
                    expire.disarm();
                    return Ok(false);
                }
                PermissionRequestStatus::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                // Dropping `expire` records the expiry.
                return Ok(false);
            }
            tokio::time::sleep(APPROVAL_POLL.min(deadline - tokio::time::Instant::now())).await;
        }
    }

    async fn get_execution(&self, id: Value) -> Result<Option<Value>, HostError> {
        let id = match &id {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .filter(|id| *id > 0)
        .map(ExecutionId::new)
        .ok_or_else(|| HostError::Refused("an execution id is a positive integer".into()))?;
        let (store, account) = (self.store.clone(), self.caller.account);
        let found = self
            .on_server(async move { store.get_execution(account, id).await })
            .await?;
        let view = found.as_ref().map(child_view);
        // The run may have been one whose template turned safety off.
        if let Some(view) = &view {
            self.screen("execution read by an agent", Channel::Output, view)
                .await?;
        }
        Ok(view)
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
                // The summary names what the agent chose (a key, a name, a
                // URL), and the audit log and its stream show it: screened
                // as output before it is recorded, and withheld there when
                // refused. The call goes on (a write screens its key as
                // content); the run's end withholds the summary from the
                // record too and audits the refusal, once.
                let shown =
                    match crate::screen_summary(&self.safety, &self.screens, args_summary).await {
                        Some(_) => crate::WITHHELD.to_string(),
                        None => args_summary.clone(),
                    };
                let mut e = self.event(
                    AuditAction::ApiCall,
                    format!("thetazero.{}({shown})", function.name()),
                );
                e.permission_state = if *allowed { "granted" } else { "denied" }.into();
                e.input_summary = Some(shown);
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
                    AuditAction::ApiCallResult,
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
                    AuditAction::PermissionDenied,
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
                enforcement,
            } => {
                let mut e = self.event(
                    AuditAction::SandboxLimitHit,
                    format!("limit {} hit: {detail}", limit.as_str()),
                );
                e.is_violation = *is_violation;
                e.payload = json!({
                    "limit": limit.as_str(),
                    "detail": detail,
                    "enforcement": enforcement.as_str(),
                });
                e
            }
            SandboxEvent::WorkerStopped {
                cause_execution_id,
                reason,
            } => {
                let mut e = self.event(
                    AuditAction::WorkerStopped,
                    format!("the sandbox worker running this execution was ended: {reason}"),
                );
                e.permission_state = "failed".into();
                e.payload = json!({
                    "code": "WORKER_STOPPED",
                    "cause_execution_id": cause_execution_id,
                    "reason": reason,
                });
                e
            }
        };
        let store = self.store.clone();
        self.on_server(async move { store.append_audit(vec![audit]).await.map(|_| ()) })
            .await
    }
}
