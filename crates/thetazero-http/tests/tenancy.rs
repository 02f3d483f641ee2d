//! Governance against a hostile tenant: separation of duties on approvals,
//! grants bound to the code they were asked for, limits counted per account
//! (not per key, not per agent record), quotas on what an account keeps and
//! on what it leaves pending.

mod common;

use std::time::Duration;

use common::{agent, assert_error, execute, start, start_with, TestApp};
use serde_json::{json, Value};
use thetazero_http::Settings;
use thetazero_runtime::quotas::Quotas;
use thetazero_runtime::rates::RateLimits;
use thetazero_runtime::RuntimeConfig;

async fn ask(app: &TestApp, key: &str, agent: i64, scopes: &[&str]) -> Value {
    let r = app
        .call(
            "POST",
            "/api/sdk/permission-requests",
            Some(key),
            Some(json!({"agent_id": agent, "permissions": {"scopes": scopes}, "justification": "needs it"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["request"].clone()
}

/// The account's `quota_exceeded` audit events (refusals over the API), as
/// `key` sees them.
async fn quota_events(app: &TestApp, key: &str) -> Vec<Value> {
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit?limit=1000&actionTypes=quota_exceeded",
            Some(key),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["events"].as_array().unwrap().clone()
}

/// Runs an agent (made here, "asker") whose run asks for ten calls that need
/// approval at once, each waiting at most a second; answers the agent and
/// each call's outcome ("ran" or the error's code).
async fn ten_calls_at_once(app: &TestApp) -> (i64, Vec<String>) {
    let asker = agent(
        app,
        json!({"name": "asker", "config": {"approval_timeout_ms": 1000, "max_api_calls_per_run": 100},
               "entry_code": "
            const calls = Array.from({length: 10}, (_, i) => thetazero.write_context('k' + i, i).then(() => 'ran', (e) => e.code));
            return await Promise.all(calls);
        "}),
    )
    .await;
    let out = execute(app, asker, json!({})).await;
    let codes = out["output"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (asker, codes)
}

async fn decide(app: &TestApp, key: &str, id: &Value, verdict: &str) -> common::Reply {
    app.call(
        "POST",
        &format!("/api/sdk/permission-requests/{id}/{verdict}"),
        Some(key),
        Some(json!({"reason": "reviewed"})),
    )
    .await
}

/// Neither the requester nor any key it made (directly or through others)
/// may decide its request; the key that made the requester may, and the
/// decision says how it stands; an operator setting forbids that too.
#[tokio::test]
async fn a_requester_and_its_descendants_cannot_approve() {
    let app = TestApp::new().await;
    let scopes = ["keys", "approvals", "agents:write", "agents:read"];
    let (requester, _) = app.key_with(&app.owner, &scopes).await;
    let id = agent(&app, json!({"name": "target", "entry_code": "return 1"})).await;
    let request = ask(&app, &requester, id, &["storage:read"]).await;
    let (child, _) = app.key_with(&requester, &scopes).await;
    let (grandchild, _) = app.key_with(&child, &["approvals"]).await;
    for key in [&requester, &child, &grandchild] {
        let r = decide(&app, key, &request["id"], "approve").await;
        assert_error(&r, 403, "forbidden");
        let r = decide(&app, key, &request["id"], "deny").await;
        assert_error(&r, 403, "forbidden");
    }
    // A peer made by the owner is unrelated; the owner is an ancestor.
    let (peer, _) = app.key_with(&app.owner, &["approvals"]).await;
    let r = decide(&app, &peer, &request["id"], "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["request"]["approver_relation"], "unrelated");
    let second = ask(&app, &requester, id, &["storage:write"]).await;
    let r = decide(&app, &app.owner, &second["id"], "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["request"]["approver_relation"], "ancestor");
    let audit = app
        .call(
            "GET",
            "/api/v1/sdk/audit?actionTypes=permission_approved",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(audit.body["events"].as_array().unwrap().len(), 2);

    // The operator may forbid ancestors as well.
    let app = TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            approvals_forbid_ancestors: true,
            ..RuntimeConfig::default()
        },
    )
    .await;
    let (requester, _) = app.key_with(&app.owner, &scopes).await;
    let id = agent(&app, json!({"name": "target", "entry_code": "return 1"})).await;
    let request = ask(&app, &requester, id, &["storage:read"]).await;
    let r = decide(&app, &app.owner, &request["id"], "approve").await;
    assert_error(&r, 403, "forbidden");
}

/// A grant is for the code it was asked for: new code runs without it.
#[tokio::test]
async fn a_grant_lapses_when_the_code_changes() {
    let app = TestApp::new().await;
    let code =
        "try { await thetazero.storage_get('k'); return 'read'; } catch (e) { return e.code; }";
    let id = agent(&app, json!({"name": "reader", "entry_code": code})).await;
    let (requester, _) = app.key_with(&app.owner, &["agents:write"]).await;
    let request = ask(&app, &requester, id, &["storage:read"]).await;
    assert_eq!(
        decide(&app, &app.owner, &request["id"], "approve")
            .await
            .status,
        200
    );
    assert_eq!(execute(&app, id, json!({})).await["output"], "read");
    // The view keeps `config` as stored and shows the grant beside it.
    let shown = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            None,
        )
        .await
        .body["agent"]
        .clone();
    assert_eq!(shown["permissions"], json!([]), "{shown}");
    assert!(shown["effective_config"]["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("storage:read")));
    assert_eq!(
        shown["effective_config"]["grants"][0]["request_id"],
        request["id"]
    );
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            Some(json!({"entry_code": format!("{code} // v2")})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        execute(&app, id, json!({})).await["output"],
        "PERMISSION_DENIED"
    );
    let shown = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            None,
        )
        .await
        .body["agent"]
        .clone();
    assert_eq!(shown["effective_config"]["grants"], json!([]), "{shown}");
}

#[tokio::test]
async fn grant_lifetimes_are_range_checked() {
    let app = TestApp::new().await;
    let id = agent(&app, json!({"name": "target", "entry_code": "return 1"})).await;
    let (requester, _) = app.key_with(&app.owner, &["agents:write"]).await;
    let request = ask(&app, &requester, id, &["storage:read"]).await;
    for ms in [json!(u64::MAX), json!(0), json!(40_000_000_000_000u64)] {
        let r = app
            .call(
                "POST",
                &format!("/api/sdk/permission-requests/{}/approve", request["id"]),
                Some(&app.owner),
                Some(json!({"grant_expires_in_ms": ms})),
            )
            .await;
        assert_error(&r, 400, "invalid_request");
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("grant_expires_in_ms"));
    }
}

fn quotas(q: Quotas) -> RuntimeConfig {
    RuntimeConfig {
        quotas: q,
        ..RuntimeConfig::default()
    }
}

#[tokio::test]
async fn pending_requests_are_bounded_per_agent_and_per_run() {
    let app = TestApp::with_config(
        Settings::default(),
        quotas(Quotas {
            pending_requests_per_agent: 3,
            // Below the per-agent bound, so the run's part measures the
            // per-run bound alone (the next test measures the per-agent
            // bound under concurrent calls).
            pending_requests_per_run: 2,
            ..Quotas::default()
        }),
    )
    .await;
    let id = agent(&app, json!({"name": "target", "entry_code": "return 1"})).await;
    let (requester, _) = app.key_with(&app.owner, &["agents:write"]).await;
    for _ in 0..3 {
        ask(&app, &requester, id, &["storage:read"]).await;
    }
    let r = app
        .call(
            "POST",
            "/api/sdk/permission-requests",
            Some(&requester),
            Some(json!({"agent_id": id, "permissions": {"scopes": ["storage:read"]}, "justification": "again"})),
        )
        .await;
    assert_error(&r, 403, "quota_exceeded");

    // One run asking for many calls at once: two wait, the rest fail at once.
    let (asker, codes) = ten_calls_at_once(&app).await;
    let over = codes.iter().filter(|c| *c == "LIMIT_EXCEEDED").count();
    assert_eq!(over, 8, "{codes:?}");
    let waited = codes.iter().filter(|c| *c == "PERMISSION_DENIED").count();
    assert_eq!(waited, 2, "{codes:?}");
    assert!(codes.iter().all(|c| c != "ran"), "{codes:?}");
    // The run's two requests are recorded expired once their waits end
    // (after the run itself answered): none is left pending.
    let mut left = usize::MAX;
    for _ in 0..1000 {
        let r = app
            .call(
                "GET",
                &format!("/api/sdk/permission-requests?status=pending&agentId={asker}"),
                Some(&app.owner),
                None,
            )
            .await;
        left = r.body["requests"].as_array().map_or(usize::MAX, Vec::len);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(left, 0, "the run's requests are no longer pending");
}

/// Requests raised at the same moment cannot pass the per-agent bound
/// together: the store counts an agent's pending requests in the insert's
/// transaction. Over REST, and from one run's concurrent calls with a
/// per-run bound above the per-agent one.
#[tokio::test]
async fn concurrent_requests_stay_within_the_per_agent_bound() {
    let app = TestApp::with_config(
        Settings::default(),
        quotas(Quotas {
            pending_requests_per_agent: 3,
            pending_requests_per_run: 10,
            ..Quotas::default()
        }),
    )
    .await;
    let id = agent(&app, json!({"name": "target", "entry_code": "return 1"})).await;
    let (requester, _) = app.key_with(&app.owner, &["agents:write"]).await;
    let body = json!({"agent_id": id, "permissions": {"scopes": ["storage:read"]}, "justification": "burst"});
    let replies = futures_util::future::join_all((0..12).map(|_| {
        app.call(
            "POST",
            "/api/sdk/permission-requests",
            Some(&requester),
            Some(body.clone()),
        )
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(
        created,
        3,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_error(r, 403, "quota_exceeded");
    }
    // Nine refusals, one audit event: at most one a minute per quota.
    let events = quota_events(&app, &app.owner).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["is_violation"], true);
    assert_eq!(events[0]["action_category"], "limit");
    assert_eq!(events[0]["agent_id"], id);

    let (_, codes) = ten_calls_at_once(&app).await;
    let over = codes.iter().filter(|c| *c == "LIMIT_EXCEEDED").count();
    assert_eq!(over, 7, "{codes:?}");
    let waited = codes.iter().filter(|c| *c == "PERMISSION_DENIED").count();
    assert_eq!(waited, 3, "{codes:?}");
}

/// What one mid-run request shows its approver: the exact call.
#[tokio::test]
async fn an_approver_sees_the_exact_call() {
    let app = TestApp::new().await;
    let id = agent(
        &app,
        json!({"name": "asker", "config": {"approval_timeout_ms": 30000},
               "entry_code": "try { await thetazero.storage_put('report', {rows: 'x'.repeat(500)}) } catch (e) { return e.code } return 'ran'"}),
    )
    .await;
    // The run is started by a key the owner made: the owner, its ancestor,
    // may decide what the run asks for.
    let (runner, _) = app
        .key_with(&app.owner, &["agents:execute", "keys", "approvals"])
        .await;
    let run = start_with(&app, &runner, id);
    let request = loop {
        let r = app
            .call(
                "GET",
                "/api/sdk/permission-requests?status=pending",
                Some(&app.owner),
                None,
            )
            .await;
        if let Some(first) = r.body["requests"].as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let detail = &request["permissions"]["call"]["detail"];
    assert_eq!(detail["key"], "report", "{request}");
    assert!(detail["value"]["bytes"].as_u64().unwrap() > 500, "{detail}");
    assert_eq!(detail["value"]["sha256"].as_str().unwrap().len(), 64);
    let excerpt = detail["value"]["excerpt"].as_str().unwrap();
    assert!(excerpt.starts_with("{\"rows\":\"xxx") && excerpt.chars().count() <= 201);
    // A key the runner made is its descendant: it may not.
    let (made, _) = app.key_with(&runner, &["approvals"]).await;
    assert_eq!(
        decide(&app, &made, &request["id"], "approve").await.status,
        403
    );
    assert_eq!(
        decide(&app, &app.owner, &request["id"], "approve")
            .await
            .status,
        200
    );
    assert_eq!(run.await.unwrap()["output"], "ran");
}

#[tokio::test]
async fn context_and_storage_are_held_to_account_quotas() {
    let app = TestApp::with_config(
        Settings::default(),
        quotas(Quotas {
            context_bytes_per_account: 300,
            storage_bytes_per_account: 300,
            ..Quotas::default()
        }),
    )
    .await;
    let a = agent(&app, json!({"name": "a", "entry_code": "return 1"})).await;
    let b = agent(&app, json!({"name": "b", "entry_code": "return 1"})).await;
    let put = |id: i64, key: &'static str, len: usize| {
        let app = &app;
        async move {
            app.call(
                "PUT",
                &format!("/api/v1/sdk/agents/{id}/context/{key}"),
                Some(&app.owner),
                Some(json!("v".repeat(len))),
            )
            .await
        }
    };
    assert_eq!(put(a, "one", 150).await.status, 200);
    // The quota is the account's: another agent's context counts too.
    assert_error(&put(b, "two", 200).await, 403, "quota_exceeded");
    assert_error(&put(b, "two", 200).await, 403, "quota_exceeded");
    let events = quota_events(&app, &app.owner).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["is_violation"], true);
    assert_eq!(events[0]["agent_id"], b);
    // Replacing a value counts only the difference.
    assert_eq!(put(a, "one", 250).await.status, 200);
    let writer = agent(
        &app,
        json!({"name": "writer", "permissions": ["storage:write"], "entry_code": "
            await thetazero.storage_put('a', 'x'.repeat(200));
            try { await thetazero.storage_put('b', 'x'.repeat(200)); } catch (e) { return e.code; }
            return 'ran';
        "}),
    )
    .await;
    assert_eq!(
        execute(&app, writer, json!({})).await["output"],
        "LIMIT_EXCEEDED"
    );
    // Another account has its own quota.
    let other = app.other_account().await;
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&other),
            Some(json!({"name": "c", "entry_code": "return 1"})),
        )
        .await;
    let c = r.body["agent"]["id"].as_i64().unwrap();
    let r = app
        .call(
            "PUT",
            &format!("/api/v1/sdk/agents/{c}/context/k"),
            Some(&other),
            Some(json!("v".repeat(200))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn runs_at_once_are_bounded_per_account() {
    let app = TestApp::with_config(
        Settings::default(),
        quotas(Quotas {
            concurrent_runs_per_account: 1,
            ..Quotas::default()
        }),
    )
    .await;
    let spin = agent(
        &app,
        json!({"name": "spin", "config": {"cpu_time_limit_ms": 1500}, "entry_code": "for (;;) {}"}),
    )
    .await;
    let quick = agent(&app, json!({"name": "quick", "entry_code": "return 1"})).await;
    let running = start(&app, spin);
    // Wait until the spinning run holds the account's one slot: its start
    // is recorded once it has run a few milliseconds.
    for _ in 0..1000 {
        let r = app
            .call(
                "GET",
                &format!("/api/v1/sdk/agents/{spin}/executions"),
                Some(&app.owner),
                None,
            )
            .await;
        if r.body["executions"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["status"] == "running"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{quick}/execute"),
            Some(&app.owner),
            Some(json!({})),
        )
        .await;
    assert_error(&refused, 429, "rate_limited");
    let events = quota_events(&app, &app.owner).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["agent_id"], quick);
    // Another account runs meanwhile.
    let other = app.other_account().await;
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&other),
            Some(json!({"name": "theirs", "entry_code": "return 2"})),
        )
        .await;
    let theirs = r.body["agent"]["id"].as_i64().unwrap();
    let r = start_with(&app, &other, theirs).await.unwrap();
    assert_eq!(r["output"], 2, "{r}");
    running.await.unwrap();
    assert_eq!(execute(&app, quick, json!({})).await["output"], 1);
}

#[tokio::test]
async fn minting_keys_does_not_widen_the_account_rate() {
    let app = TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            rates: RateLimits {
                executions_per_account_per_minute: 2,
                executions_per_key_per_minute: 100,
                ..RateLimits::default()
            },
            ..RuntimeConfig::default()
        },
    )
    .await;
    let id = agent(&app, json!({"name": "quick", "entry_code": "return 1"})).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (key, _) = app.key_with(&app.owner, &["agents:execute"]).await;
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                Some(&key),
                Some(json!({})),
            )
            .await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert!(r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("executions_per_account_per_minute"));
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn deleting_an_agent_does_not_reset_its_code_change_limit() {
    let app = TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            rates: RateLimits {
                code_updates_per_agent_per_hour: 2,
                ..RateLimits::default()
            },
            ..RuntimeConfig::default()
        },
    )
    .await;
    let register = |code: &'static str| {
        let app = &app;
        async move {
            app.call(
                "POST",
                "/api/v1/sdk/agents",
                Some(&app.owner),
                Some(json!({"name": "evolving", "entry_code": code})),
            )
            .await
        }
    };
    let r = register("return 1").await;
    let id = r.body["agent"]["id"].as_i64().unwrap();
    assert!(register("return 2").await.status.is_success());
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_error(&register("return 3").await, 429, "rate_limited");
    // Another name has its own count.
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "other", "entry_code": "return 4"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}
