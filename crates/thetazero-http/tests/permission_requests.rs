//! Permission requests through the API: asked, listed, approved by another
//! key (never the requesting one), denied, expired, and grants that widen
//! the agent while they last and lapse by themselves.

mod common;

use std::time::Duration;

use common::{assert_error, TestApp};
use serde_json::{json, Value};

/// An agent that reads a storage key: it needs `storage:read`, which it lacks.
async fn reader(app: &TestApp) -> i64 {
    let code =
        "try { await thetazero.storage_get('k'); return 'read'; } catch (e) { return e.code; }";
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "reader", "entry_code": code})),
        )
        .await;
    r.body["agent"]["id"].as_i64().unwrap()
}

async fn run(app: &TestApp, id: i64) -> Value {
    app.call(
        "POST",
        &format!("/api/v1/sdk/agents/{id}/execute"),
        Some(&app.owner),
        Some(json!({})),
    )
    .await
    .body["output"]
        .clone()
}

async fn ask(app: &TestApp, key: &str, agent: i64, extra: Value) -> Value {
    let mut body = json!({"agent_id": agent, "permissions": {"scopes": ["storage:read"]}, "justification": "Needs its storage to count runs"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app
        .call(
            "POST",
            "/api/sdk/permission-requests",
            Some(key),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["request"].clone()
}

async fn audit_types(app: &TestApp) -> Vec<String> {
    let r = app.call("GET", "/api/v1/sdk/audit?limit=1000&actionTypes=permission_requested,permission_approved,permission_denied_by_owner,permission_expired", Some(&app.owner), None).await;
    r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action_type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_approved_request_widens_the_agent_and_only_another_key_may_approve() {
    let app = TestApp::new().await;
    let agent = reader(&app).await;
    assert_eq!(run(&app, agent).await, "PERMISSION_DENIED");
    let (author, _) = app
        .key_with(
            &app.owner,
            &["agents:read", "agents:write", "agents:execute", "approvals"],
        )
        .await;
    let request = ask(&app, &author, agent, json!({})).await;
    assert_eq!(request["status"], "pending");
    let id = request["id"].as_i64().unwrap();
    let r = app
        .call(
            "GET",
            "/api/sdk/permission-requests?status=pending",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["requests"][0]["id"], id);
    assert_eq!(
        r.body["requests"][0]["justification"],
        "Needs its storage to count runs"
    );
    // The key that asked cannot approve, even holding `approvals`.
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/permission-requests/{id}/approve"),
            Some(&author),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/permission-requests/{id}/approve"),
            Some(&app.owner),
            Some(json!({"reason": "fine"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.body["request"]["status"].as_str(),
            r.body["request"]["grant_active"].as_bool()
        ),
        (Some("approved"), Some(true))
    );
    assert_eq!(run(&app, agent).await, "read");
    // Decided once.
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/permission-requests/{id}/deny"),
            Some(&app.owner),
            Some(json!({"reason": "late"})),
        )
        .await;
    assert_error(&r, 409, "conflict");
    // Another account sees nothing of it.
    let other = app.other_account().await;
    for path in [
        format!("/api/sdk/permission-requests/{id}"),
        format!("/api/sdk/permission-requests/{id}/approve"),
    ] {
        let method = if path.ends_with("approve") {
            "POST"
        } else {
            "GET"
        };
        let r = app.call(method, &path, Some(&other), Some(json!({}))).await;
        assert_error(&r, 404, "not_found");
    }
    assert_eq!(
        audit_types(&app).await,
        ["permission_requested", "permission_approved"]
    );
}

#[tokio::test]
async fn denied_expired_and_lapsed_requests_grant_nothing() {
    let app = TestApp::new().await;
    let agent = reader(&app).await;
    let (author, _) = app
        .key_with(&app.owner, &["agents:read", "agents:write"])
        .await;
    // Denied.
    let denied = ask(&app, &author, agent, json!({})).await;
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/permission-requests/{}/deny", denied["id"]),
            Some(&app.owner),
            Some(json!({"reason": "not needed"})),
        )
        .await;
    assert_eq!(
        (
            r.body["request"]["status"].as_str(),
            r.body["request"]["decision_reason"].as_str()
        ),
        (Some("denied"), Some("not needed"))
    );
    assert_eq!(run(&app, agent).await, "PERMISSION_DENIED");
    // Expired before anyone decided.
    let expiring = ask(&app, &author, agent, json!({"timeoutMs": 1})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = app
        .call(
            "GET",
            &format!("/api/sdk/permission-requests/{}", expiring["id"]),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["request"]["status"], "expired");
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/permission-requests/{}/approve", expiring["id"]),
            Some(&app.owner),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 409, "conflict");
    // Approved with a grant that lapses.
    let lapsing = ask(&app, &author, agent, json!({})).await;
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/permission-requests/{}/approve", lapsing["id"]),
            Some(&app.owner),
            Some(json!({"grantExpiresInMs": 300})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(run(&app, agent).await, "read");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        run(&app, agent).await,
        "PERMISSION_DENIED",
        "the grant lapsed by itself"
    );
    let r = app
        .call(
            "GET",
            &format!("/api/sdk/permission-requests/{}", lapsing["id"]),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(
        (
            r.body["request"]["status"].as_str(),
            r.body["request"]["grant_active"].as_bool()
        ),
        (Some("approved"), Some(false))
    );
    assert_eq!(
        audit_types(&app).await,
        [
            "permission_requested",
            "permission_denied_by_owner",
            "permission_requested",
            "permission_expired",
            "permission_requested",
            "permission_approved"
        ]
    );
}

#[tokio::test]
async fn network_requests_as_in_the_spec_and_bad_ones() {
    let app = TestApp::new().await;
    let agent = reader(&app).await;
    // The spec's example, for an agent.
    let spec = ask(
        &app,
        &app.owner,
        agent,
        json!({"permissions": {"allow_network": true, "allow_external_apis": true, "max_api_calls_per_run": 500}, "justification": "Needs to call OpenWeatherMap for forecast data", "timeoutMs": 120000}),
    )
    .await;
    assert_eq!(spec["permissions"]["max_api_calls_per_run"], 500);
    let cases: &[(Value, u16, &str)] = &[
        (
            json!({"agent_id": agent, "permissions": {"root": true}, "justification": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": agent, "permissions": {"max_api_calls_per_run": 99999999}, "justification": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": agent, "permissions": {"scopes": ["data:delete"]}, "justification": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": agent, "permissions": {}, "justification": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": agent, "permissions": {"allow_network": true}, "justification": ""}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": agent, "permissions": {"allow_network": true}, "justification": "x", "timeout_ms": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": 424242, "permissions": {"allow_network": true}, "justification": "x"}),
            404,
            "not_found",
        ),
        (
            json!({"permissions": {"allow_network": true}, "justification": "x"}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/permission-requests",
                Some(&app.owner),
                Some(body.clone()),
            )
            .await;
        assert_error(&r, *status, code);
    }
    let r = app
        .call(
            "GET",
            "/api/sdk/permission-requests?status=maybe",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}
