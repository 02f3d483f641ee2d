//! Approval in the middle of a run: an agent with `approval_timeout_ms` set
//! suspends at a call its permissions refuse and raises a permission request
//! bound to that call's exact arguments. The call runs only if a human
//! approves it; it fails inside the agent if denied or expired; the wait does
//! not count against the execution's deadline; a kill ends the wait.

mod common;

use std::time::Duration;

use common::{agent, audit_types, start_with, TestApp};
use serde_json::{json, Value};

/// The one pending request, once it appears.
async fn pending(app: &TestApp) -> Value {
    for _ in 0..2000 {
        let r = app
            .call(
                "GET",
                "/api/sdk/permission-requests?status=pending",
                Some(&app.owner),
                None,
            )
            .await;
        if let Some(first) = r.body["requests"].as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no permission request was raised");
}

async fn decide(app: &TestApp, key: &str, id: &Value, verdict: &str) -> u16 {
    app.call(
        "POST",
        &format!("/api/sdk/permission-requests/{id}/{verdict}"),
        Some(key),
        Some(json!({"reason": "reviewed"})),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn an_approved_call_runs_and_only_that_call() {
    let app = TestApp::new().await;
    let runner = app.key_with(&app.owner, &["agents:execute"]).await.0;
    let id = agent(
        &app,
        json!({"name": "asker", "config": {"approval_timeout_ms": 30000},
               "entry_code": "
            await thetazero.write_context('k', 7);
            try { await thetazero.write_context('k', 8); } catch (e) { return {second: e.code}; }
            return {second: 'ran'};
        "}),
    )
    .await;
    let run = start_with(&app, &runner, id);
    let request = pending(&app).await;
    let call = &request["permissions"]["call"];
    assert_eq!(call["fn"], "write_context");
    assert_eq!(call["args_sha256"].as_str().unwrap().len(), 64);
    assert!(request["justification"]
        .as_str()
        .unwrap()
        .contains("data:write"));
    // The key that started the run cannot approve its own call.
    assert_eq!(decide(&app, &runner, &request["id"], "approve").await, 403);
    assert_eq!(
        decide(&app, &app.owner, &request["id"], "approve").await,
        200
    );
    // The second call has other arguments: a request of its own, denied.
    let second = pending(&app).await;
    assert_ne!(second["id"], request["id"]);
    assert_ne!(
        second["permissions"]["call"]["args_sha256"],
        call["args_sha256"]
    );
    assert_eq!(decide(&app, &app.owner, &second["id"], "deny").await, 200);
    let done = run.await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({"second": "PERMISSION_DENIED"}));
    let audit = done["host_call_audit"].as_array().unwrap();
    assert_eq!(audit[0]["allowed"], true);
    assert_eq!(audit[1]["allowed"], false);
    // The approved write landed; the denied one did not.
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}/context/k"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["value"], 7, "{}", r.body);
    let actions = audit_types(&app, &format!("executionId={}", done["execution_id"])).await;
    for expected in [
        "permission_requested",
        "permission_approved",
        "permission_denied_by_owner",
        "permission_denied",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    // Nothing was granted to the agent: the next run asks again.
    let again = start_with(&app, &runner, id);
    let third = pending(&app).await;
    assert_eq!(
        third["permissions"]["call"]["args_sha256"],
        call["args_sha256"]
    );
    assert_eq!(decide(&app, &app.owner, &third["id"], "deny").await, 200);
    let done = again.await.unwrap();
    assert_eq!(done["status"], "failed", "{done}");
}

#[tokio::test]
async fn a_request_off_the_allow_list_waits_and_its_wait_is_not_cpu_time() {
    let app = TestApp::new().await;
    let runner = app.key_with(&app.owner, &["agents:execute"]).await.0;
    let id = agent(
        &app,
        json!({"name": "fetcher", "permissions": ["network:outbound"],
               "config": {"approval_timeout_ms": 4000, "approval_calls": ["http_request"],
                          "cpu_time_limit_ms": 1000,
                          "allow_network": true, "allowed_domains": ["api.example.com"]},
               "entry_code": "
            // Only http_request is put to a human: this refusal is immediate.
            let write = null;
            try { await thetazero.write_context('k', 1); } catch (e) { write = e.code; }
            try { await thetazero.http_request('https://other.example.net/data'); }
            catch (e) { return {write, code: e.code}; }
            return {write, code: null};
        "}),
    )
    .await;
    let run = start_with(&app, &runner, id);
    let request = pending(&app).await;
    assert_eq!(request["permissions"]["call"]["fn"], "http_request");
    assert!(request["justification"]
        .as_str()
        .unwrap()
        .contains("other.example.net is not in allowed_domains"));
    // Nobody decides: after 4 s the call fails; the run's 1 s deadline did
    // not run while it waited (the code around the wait needs far less).
    let done = run.await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({"write": "PERMISSION_DENIED", "code": "PERMISSION_DENIED"})
    );
    assert!(done["duration_ms"].as_u64().unwrap() >= 4000, "{done}");
    let r = app
        .call(
            "GET",
            &format!("/api/sdk/permission-requests/{}", request["id"]),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["request"]["status"], "expired", "{}", r.body);
    let actions = audit_types(&app, &format!("executionId={}", done["execution_id"])).await;
    assert!(
        actions.iter().any(|a| a == "permission_expired"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_kill_ends_the_wait_and_expires_the_request() {
    let app = TestApp::new().await;
    let runner = app.key_with(&app.owner, &["agents:execute"]).await.0;
    let id = agent(
        &app,
        json!({"name": "waiting", "config": {"approval_timeout_ms": 600000},
               "entry_code": "await thetazero.storage_put('x', 1); return 'ran';"}),
    )
    .await;
    let run = start_with(&app, &runner, id);
    let request = pending(&app).await;
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/agents/{id}/kill"),
            Some(&app.owner),
            Some(json!({"reason": "no"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let done = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the kill ends the wait")
        .unwrap();
    assert_eq!(done["status"], "killed", "{done}");
    // The request is expired by a task the ended wait leaves behind; a
    // loaded machine may take a while to run it (liveness bound: 60 s).
    for _ in 0..6000 {
        let r = app
            .call(
                "GET",
                &format!("/api/sdk/permission-requests/{}", request["id"]),
                Some(&app.owner),
                None,
            )
            .await;
        if r.body["request"]["status"] == "expired" {
            // Approving it now changes nothing.
            assert_eq!(
                decide(&app, &app.owner, &request["id"], "approve").await,
                409
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the request stayed pending after the kill");
}

#[tokio::test]
async fn approval_settings_are_checked() {
    let app = TestApp::new().await;
    for (config, code) in [
        (json!({"approval_timeout_ms": 999}), "invalid_config"),
        (
            json!({"approval_timeout_ms": 600_001}),
            "limit_above_ceiling",
        ),
        (json!({"approval_calls": ["eval"]}), "invalid_config"),
        (json!({"approval_calls": "http_request"}), "invalid_config"),
    ] {
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/agents",
                Some(&app.owner),
                Some(json!({"name": "x", "entry_code": "return 1;", "config": config})),
            )
            .await;
        common::assert_error(&r, 400, code);
    }
}
