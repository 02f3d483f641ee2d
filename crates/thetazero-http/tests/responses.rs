//! Response snapshots of every route, answers and errors alike: each test
//! walks one resource through its routes in process and snapshots the
//! transcript (request, status, content type, body) with ids, times, hashes,
//! signatures, secrets and measurements redacted. A changed wire shape shows
//! up here as a snapshot diff; it must not be used to pin values that vary.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{Reply, TestApp};
use serde_json::{json, Value};
use thetazero_http::Settings;

/// Snapshots a transcript after `redact`.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {{
        let mut value = $value;
        redact(&mut value);
        insta::assert_json_snapshot!($name, value)
    }};
}

/// Replaces what differs from run to run or between backends by its kind,
/// by field name, wherever it is: ids, times, secrets, hashes, signatures,
/// proofs and measurements. A null stays null, so the snapshot still shows
/// which fields are set.
fn redact(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::Object(map) => {
            for (k, value) in map.iter_mut() {
                let k = k.as_str();
                // Set when the key is next used, which a test does not order
                // against the read.
                if k == "last_used_at" {
                    *value = Value::String("[time or null]".into());
                    continue;
                }
                if value.is_null() {
                    continue;
                }
                let placeholder = if k == "request_id" {
                    "[request_id]"
                } else if k == "id" || k.ends_with("_id") {
                    "[id]"
                } else if k.ends_with("_at") || matches!(k, "timestamp" | "since" | "time") {
                    "[time]"
                } else if matches!(
                    k,
                    "secret" | "csrf_token" | "token" | "prefix" | "stream_url"
                ) {
                    "[secret]"
                } else if k.ends_with("_hash") || k.ends_with("_digest") {
                    "[hash]"
                } else if matches!(
                    k,
                    "checkpoint" | "verifier_key" | "signature" | "note" | "leaf_b64" | "receipt"
                ) {
                    "[signed]"
                } else if matches!(k, "proof" | "inclusion_proof") {
                    "[proof]"
                } else if matches!(
                    k,
                    "duration_ms"
                        | "elapsed_ms"
                        | "cpu_ms"
                        | "memory_mb"
                        | "started_to_kill_ms"
                        | "tee_mode"
                ) {
                    "[measured]"
                } else if k == "canary_name" {
                    "[name]"
                } else {
                    redact(value);
                    continue;
                };
                *value = Value::String(placeholder.into());
            }
        }
        _ => {}
    }
}

/// The requests of one test and what they answered.
struct Transcript {
    app: TestApp,
    entries: Vec<Value>,
}

/// A path with its numeric segments (ids) replaced, so that the transcript
/// reads the same on any backend.
fn template(path: &str) -> String {
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let path = path
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{n}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    match query {
        Some(q) => {
            let q = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("token", _)) => "token=[secret]".to_string(),
                    _ => kv.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&");
            format!("{path}?{q}")
        }
        None => path,
    }
}

impl Transcript {
    async fn new() -> Transcript {
        Self::with(TestApp::new().await)
    }

    fn with(app: TestApp) -> Transcript {
        Transcript {
            app,
            entries: Vec::new(),
        }
    }

    fn owner(&self) -> String {
        self.app.owner.clone()
    }

    fn record(&mut self, method: &str, path: &str, r: &Reply, body: Value) {
        let content_type = r
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.entries.push(json!({
            "request": format!("{method} {}", template(path)),
            "status": r.status.as_u16(),
            "content_type": content_type,
            "body": body,
        }));
    }

    /// A JSON request with a key; records and answers the reply.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let r = self.app.call(method, path, key, body).await;
        assert!(
            r.headers.get("x-request-id").is_some(),
            "{method} {path}: no request id"
        );
        let body = r.body.clone();
        self.record(method, path, &r, body.clone());
        body
    }

    /// As `call`, for a route that answers something else than JSON: the
    /// transcript keeps the status, the content type and what `summary`
    /// makes of the body.
    async fn call_text(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        summary: impl Fn(&str) -> Value,
    ) -> Reply {
        let r = self.app.call(method, path, key, None).await;
        let text = match &r.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.record(method, path, &r, summary(&text));
        r
    }

    fn snapshot(&self) -> Value {
        Value::Array(self.entries.clone())
    }
}

fn id(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no id at {pointer} in {v}"))
}

#[tokio::test]
async fn operations() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    t.call("GET", "/healthz", None, None).await;
    t.call("GET", "/readyz", None, None).await;
    // The exposition format: the transcript keeps whether it has the
    // request counter, not the counts.
    let r = t
        .call_text(
            "GET",
            "/metrics",
            Some(&owner),
            |text| json!({"has_request_counter": text.contains("thetazero_http_requests_total")}),
        )
        .await;
    assert_eq!(r.status, 200);
    t.call("GET", "/metrics", None, None).await;
    let doc = t.app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["paths"].as_object().is_some_and(|p| p.len() > 40));
    t.record(
        "GET",
        "/api/v1/openapi.json",
        &doc,
        json!({"openapi": doc.body["openapi"], "title": doc.body["info"]["title"]}),
    );
    t.call("GET", "/api/v1/no-such-route", Some(&owner), None)
        .await;
    t.call("PUT", "/healthz", None, None).await;
    snapshot!("operations", t.snapshot());
}

#[tokio::test]
async fn accounts_and_keys() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    t.call("GET", "/api/v1/keys", None, None).await;
    t.call("GET", "/api/v1/keys", Some("tzk_not_a_real_key"), None)
        .await;
    let account = t
        .call(
            "POST",
            "/api/v1/accounts",
            Some(&owner),
            Some(json!({"name": "second team"})),
        )
        .await;
    let other = account["secret"].as_str().expect("secret").to_string();
    t.call(
        "POST",
        "/api/v1/accounts",
        Some(&other),
        Some(json!({"name": "third team"})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/accounts",
        Some(&owner),
        Some(json!({"name": ""})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/accounts",
        Some(&owner),
        Some(json!({"nom": "x"})),
    )
    .await;
    let created = t
        .call(
            "POST",
            "/api/v1/keys",
            Some(&owner),
            Some(json!({"name": "ci", "scopes": ["agents:read", "agents:execute"]})),
        )
        .await;
    let key_id = id(&created, "/key/id");
    t.call(
        "POST",
        "/api/v1/keys",
        Some(&owner),
        Some(json!({"name": "ci", "scopes": ["everything"]})),
    )
    .await;
    t.call("GET", "/api/v1/keys", Some(&owner), None).await;
    t.call("GET", &format!("/api/v1/keys/{key_id}"), Some(&owner), None)
        .await;
    t.call(
        "PATCH",
        &format!("/api/v1/keys/{key_id}"),
        Some(&owner),
        Some(json!({"scopes": ["agents:read"]})),
    )
    .await;
    t.call(
        "PATCH",
        &format!("/api/v1/keys/{key_id}"),
        Some(&owner),
        Some(json!({"scopes": ["nope"]})),
    )
    .await;
    t.call(
        "DELETE",
        &format!("/api/v1/keys/{key_id}"),
        Some(&owner),
        None,
    )
    .await;
    t.call("GET", "/api/v1/keys/987654", Some(&owner), None)
        .await;
    t.call("DELETE", "/api/v1/keys/987654", Some(&owner), None)
        .await;
    t.call("GET", "/api/v1/keys/not-a-number", Some(&owner), None)
        .await;
    snapshot!("accounts_and_keys", t.snapshot());
}

#[tokio::test]
async fn agents_and_context() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    let spec = json!({
        "name": "summarizer", "version": "1.0.0",
        "entry_code": "await thetazero.write_result({ ok: true });",
        "config": {"memory_limit_mb": 128, "cpu_time_limit_ms": 15000, "max_api_calls_per_run": 10, "allow_network": false},
        "status": "ready"
    });
    let agent = t
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&owner),
            Some(spec.clone()),
        )
        .await;
    let a = id(&agent, "/agent/id");
    let mut again = spec.clone();
    again["version"] = json!("1.1.0");
    t.call("POST", "/api/v1/sdk/agents", Some(&owner), Some(again))
        .await;
    t.call(
        "POST",
        "/api/v1/sdk/agents",
        Some(&owner),
        Some(json!({"name": "", "entry_code": "return 1;"})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/agents",
        Some(&owner),
        Some(json!({"name": "x", "entry_code": "return 1;", "config": {"memory_limit_mb": 1_000_000}})),
    )
    .await;
    t.call("GET", "/api/v1/sdk/agents", Some(&owner), None)
        .await;
    t.call(
        "GET",
        "/api/v1/sdk/agents?page=1&limit=1",
        Some(&owner),
        None,
    )
    .await;
    t.call("GET", "/api/v1/sdk/agents?limit=0", Some(&owner), None)
        .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "PATCH",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        Some(json!({"description": "summarises text"})),
    )
    .await;
    t.call(
        "PATCH",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        Some(json!({"status": "sleeping"})),
    )
    .await;
    t.call(
        "PATCH",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        Some(json!({"version": null})),
    )
    .await;
    let ctx = format!("/api/v1/sdk/agents/{a}/context/notes");
    t.call(
        "PUT",
        &ctx,
        Some(&owner),
        // The body is the value.
        Some(json!({"seen": 1})),
    )
    .await;
    t.call("GET", &ctx, Some(&owner), None).await;
    t.call("DELETE", &ctx, Some(&owner), None).await;
    t.call("GET", &ctx, Some(&owner), None).await;
    t.call("PUT", &ctx, Some(&owner), Some(json!("x".repeat(70 << 10))))
        .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}/context/notes%00"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "DELETE",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "DELETE",
        &format!("/api/v1/sdk/agents/{a}"),
        Some(&owner),
        None,
    )
    .await;
    snapshot!("agents_and_context", t.snapshot());
}

#[tokio::test]
async fn executions() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    let agent = t
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&owner),
            Some(json!({"name": "echo", "entry_code": "return {echo: thetazero.input};"})),
        )
        .await;
    let a = id(&agent, "/agent/id");
    let failing = t
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&owner),
            Some(json!({"name": "thrower", "entry_code": "throw new Error('no');"})),
        )
        .await;
    let f = id(&failing, "/agent/id");
    let run = t
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{a}/execute"),
            Some(&owner),
            Some(json!({"input": {"text": "hello"}})),
        )
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    let e = id(&run, "/execution_id");
    t.call(
        "POST",
        &format!("/api/v1/sdk/agents/{f}/execute"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/agents/{a}/execute"),
        Some(&owner),
        Some(json!({"inputs": 1})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/agents/987654/execute",
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}/executions"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}/executions?status=failed"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}/executions?status=bogus"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}/executions/{e}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/agents/{a}/executions/987654"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/executions/{e}/verify"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/executions/987654/verify",
        Some(&owner),
        None,
    )
    .await;
    snapshot!("executions", t.snapshot());
}

#[tokio::test]
async fn kill_switch() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    let other = t.app.other_account().await;
    let a = t.app.register(&owner, "first").await;
    let b = t.app.register(&owner, "second").await;
    t.call(
        "POST",
        &format!("/api/sdk/agents/{a}/kill"),
        Some(&owner),
        Some(json!({"reason": "misbehaving"})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/agents/{b}/kill"),
        Some(&owner),
        Some(json!({"reason": "misbehaving too"})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/agents/{a}/execute"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/agents/987654/kill",
        Some(&owner),
        Some(json!({"reason": "gone"})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/agents/{a}/kill"),
        Some(&owner),
        Some(json!({"reason": ""})),
    )
    .await;
    t.call("GET", "/api/sdk/kill-switch/global", Some(&owner), None)
        .await;
    t.call(
        "POST",
        "/api/sdk/kill-switch/global",
        Some(&owner),
        Some(json!({"halted": true, "reason": "incident"})),
    )
    .await;
    t.call("GET", "/api/v1/sdk/kill-switch/global", Some(&owner), None)
        .await;
    let c = t.app.register(&owner, "third").await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/agents/{c}/execute"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/kill-switch/global",
        Some(&owner),
        Some(json!({"halted": false, "reason": "resolved"})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/kill-switch/global",
        Some(&other),
        Some(json!({"halted": true, "reason": "all", "scope": "deployment"})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/kill-switch/global",
        Some(&owner),
        Some(json!({"halted": true, "reason": "x", "scope": "galaxy"})),
    )
    .await;
    snapshot!("kill_switch", t.snapshot());
}

#[tokio::test]
async fn permission_requests() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    let a = t.app.register(&owner, "wants-network").await;
    // The agent's own key asks; the owner decides (a key cannot decide
    // what it asked for).
    let (agent_key, _) = t
        .app
        .key_with(&owner, &["agents:read", "agents:write"])
        .await;
    let ask = |prefix: &str| {
        (
            format!("{prefix}/permission-requests"),
            json!({"agent_id": a, "permissions": {"allow_network": true, "allowed_domains": ["api.example.com"]}, "justification": "fetch forecasts", "timeout_ms": 600000}),
        )
    };
    let (path, body) = ask("/api/v1/sdk");
    let first = t.call("POST", &path, Some(&agent_key), Some(body)).await;
    let first = id(&first, "/request/id");
    let (path, body) = ask("/api/sdk");
    let second = t.call("POST", &path, Some(&agent_key), Some(body)).await;
    let second = id(&second, "/request/id");
    t.call(
        "POST",
        "/api/v1/sdk/permission-requests",
        Some(&owner),
        Some(json!({"agent_id": 987654, "permissions": {}, "justification": "x"})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/permission-requests",
        Some(&owner),
        Some(json!({"agent_id": a, "permissions": {"allow_network": true}, "justification": ""})),
    )
    .await;
    t.call("GET", "/api/v1/sdk/permission-requests", Some(&owner), None)
        .await;
    t.call(
        "GET",
        "/api/sdk/permission-requests?status=pending&limit=1",
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/sdk/permission-requests?status=sideways",
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/permission-requests/{first}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        &format!("/api/sdk/permission-requests/{second}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/permission-requests/{first}/approve"),
        Some(&owner),
        Some(json!({"reason": "fine", "grant_expires_in_ms": 60000})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/sdk/permission-requests/{second}/deny"),
        Some(&owner),
        Some(json!({"reason": "no"})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/sdk/permission-requests/{first}/approve"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call(
        "POST",
        &format!("/api/v1/sdk/permission-requests/{second}/deny"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/permission-requests/987654",
        Some(&owner),
        None,
    )
    .await;
    snapshot!("permission_requests", t.snapshot());
}

#[tokio::test]
async fn audit() {
    let settings = Settings {
        stream_keepalive: std::time::Duration::from_millis(50),
        stream_max_duration: std::time::Duration::from_millis(200),
        ..Settings::default()
    };
    let mut t = Transcript::with(TestApp::with_settings(settings).await);
    let owner = t.owner();
    let a = t.app.register(&owner, "audited").await;
    common::execute(&t.app, a, json!(1)).await;
    let page = t
        .call("GET", "/api/v1/sdk/audit?limit=2", Some(&owner), None)
        .await;
    let record = id(&page, "/events/0/id");
    t.call(
        "GET",
        "/api/v1/sdk/audit?actionTypes=agent_created&violationsOnly=false",
        Some(&owner),
        None,
    )
    .await;
    t.call("GET", "/api/v1/sdk/audit?limit=0", Some(&owner), None)
        .await;
    t.call(
        "GET",
        "/api/v1/sdk/audit?from=yesterday",
        Some(&owner),
        None,
    )
    .await;
    t.ledger_checkpoint().await;
    let checkpoint = t
        .call("GET", "/api/v1/sdk/audit/checkpoint", Some(&owner), None)
        .await;
    let size = checkpoint["size"].as_u64().expect("checkpoint size");
    t.call(
        "GET",
        &format!("/api/v1/sdk/audit/consistency?from=1&to={size}"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/audit/consistency?from=5&to=2",
        Some(&owner),
        None,
    )
    .await;
    t.call("GET", "/api/v1/sdk/audit/key", Some(&owner), None)
        .await;
    t.call(
        "GET",
        &format!("/api/v1/sdk/audit/records/{record}/proof"),
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/audit/records/987654/proof",
        Some(&owner),
        None,
    )
    .await;
    t.call_text(
        "GET",
        "/api/v1/sdk/audit/export?format=bundle",
        Some(&owner),
        |text| json!({"lines": text.lines().count() > 1}),
    )
    .await;
    t.call_text(
        "GET",
        "/api/v1/sdk/audit/export?format=csv",
        Some(&owner),
        |text| json!({"header": text.lines().next()}),
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/audit/export?format=pdf",
        Some(&owner),
        None,
    )
    .await;
    let token = t
        .call("POST", "/api/v1/sdk/audit/stream-token", Some(&owner), None)
        .await;
    let token = token["token"].as_str().expect("stream token").to_string();
    // The streams end after 200 ms here; the transcript keeps their first
    // event's name, not the keepalives' count.
    let first_event = |text: &str| json!({"first_event": text.lines().find(|l| l.starts_with("event:")).map(str::to_string)});
    for path in ["/api/v1/sdk/audit/stream", "/api/sdk/audit/stream"] {
        t.call_text("GET", path, Some(&owner), first_event).await;
    }
    t.call_text(
        "GET",
        &format!("/api/v1/sdk/audit/stream?token={token}"),
        None,
        first_event,
    )
    .await;
    t.call("GET", "/api/v1/sdk/audit/stream", None, None).await;
    t.call(
        "GET",
        "/api/v1/sdk/audit/stream?after=-3",
        Some(&owner),
        None,
    )
    .await;
    snapshot!("audit", t.snapshot());
}

impl Transcript {
    /// Makes the ledger sign a checkpoint now, as its timer would.
    async fn ledger_checkpoint(&self) {
        self.app.ledger.checkpoint_all().await.expect("checkpoint");
    }
}

#[tokio::test]
async fn compliance() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    let a = t.app.register(&owner, "assessed").await;
    common::execute(&t.app, a, json!(1)).await;
    let frameworks = t
        .call(
            "GET",
            "/api/v1/sdk/compliance/frameworks",
            Some(&owner),
            None,
        )
        .await;
    assert!(frameworks["frameworks"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
    // Statuses and reports are long and change with every control added to
    // a catalog; the transcript keeps their top-level shape.
    let shape = |v: &Value| match v {
        Value::Object(m) => json!(m.keys().collect::<Vec<_>>()),
        other => other.clone(),
    };
    for path in [
        "/api/v1/sdk/compliance/status?frameworks=owasp_llm_top10".to_string(),
        format!("/api/v1/sdk/compliance/report?frameworks=owasp_llm_top10&agentId={a}"),
        "/api/v1/sdk/compliance/report?frameworks=owasp_llm_top10&format=oscal".to_string(),
        "/api/v1/sdk/compliance/component-definition?frameworks=owasp_llm_top10".to_string(),
    ] {
        let r = t.app.call("GET", &path, Some(&owner), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let s = shape(&r.body);
        t.record("GET", &path, &r, s);
    }
    t.call(
        "GET",
        "/api/v1/sdk/compliance/status?frameworks=nist_999",
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/compliance/status?frameworks=soc2,,eu_ai_act",
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/compliance/status?format=oscal",
        Some(&owner),
        None,
    )
    .await;
    t.call(
        "GET",
        "/api/v1/sdk/compliance/report?format=docx",
        Some(&owner),
        None,
    )
    .await;
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/sdk/compliance/packages/soc2")
        .header("authorization", format!("Bearer {owner}"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let r = t.app.raw(req).await;
    assert_eq!(r.status, 200);
    let disposition = r
        .headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .map(|d| d.starts_with("attachment"));
    t.record(
        "POST",
        "/api/v1/sdk/compliance/packages/soc2",
        &r,
        json!({"attachment": disposition}),
    );
    t.call(
        "POST",
        "/api/v1/sdk/compliance/packages/soc2",
        Some(&owner),
        Some(json!({"format": "pdf"})),
    )
    .await;
    t.call(
        "POST",
        "/api/v1/sdk/compliance/packages/nist_999",
        Some(&owner),
        Some(json!({})),
    )
    .await;
    t.call("POST", "/api/v1/sdk/compliance/drill", Some(&owner), None)
        .await;
    let other = t.app.other_account().await;
    let (reader, _) = t.app.key_with(&other, &["agents:read"]).await;
    t.call("POST", "/api/v1/sdk/compliance/drill", Some(&reader), None)
        .await;
    snapshot!("compliance", t.snapshot());
}

#[tokio::test]
async fn session() {
    let mut t = Transcript::new().await;
    let owner = t.owner();
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/session")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "api_key": owner }).to_string()))
        .unwrap();
    let r = t.app.raw(req).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cookie = r
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_string();
    let csrf = r.body["csrf_token"].as_str().expect("csrf").to_string();
    let body = r.body.clone();
    t.record("POST", "/api/v1/session", &r, body);
    for (method, csrf) in [
        ("GET", None),
        ("DELETE", Some(csrf.as_str())),
        ("GET", None),
    ] {
        let mut req = Request::builder()
            .method(method)
            .uri("/api/v1/session")
            .header("cookie", &cookie);
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let r = t.app.raw(req.body(Body::empty()).unwrap()).await;
        let body = r.body.clone();
        t.record(method, "/api/v1/session", &r, body);
    }
    t.call(
        "POST",
        "/api/v1/session",
        None,
        Some(json!({"api_key": "tzk_wrong"})),
    )
    .await;
    t.call("GET", "/api/v1/session", None, None).await;
    snapshot!("session", t.snapshot());
}
