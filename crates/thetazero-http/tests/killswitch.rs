//! The kill switch through the API: a kill stops a spinning execution and one
//! waiting forever, refuses new ones until the kill switch revives the agent;
//! a halt stops and refuses everything of the account; kills racing with
//! starts leave nothing running. Each step is in the audit log.

mod common;

use std::time::Duration;

use common::{assert_error, audit_types, running, start, TestApp};
use serde_json::json;

async fn agent(app: &TestApp, name: &str, code: &str) -> i64 {
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(
                json!({"name": name, "entry_code": code, "config": {"cpu_time_limit_ms": 120000}}),
            ),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    r.body["agent"]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_stops_a_tight_loop_and_a_promise_that_never_settles() {
    let app = TestApp::new().await;
    // A child that spins in a native loop, for the parent below.
    agent(
        &app,
        "child",
        "return Array.prototype.join.call({length: 2 ** 53 - 1}, '').length;",
    )
    .await;
    let mut cases = vec![
        ("spin", "while (true) {}"),
        ("wait", "await new Promise(() => {});"),
    ];
    // Native loops that never poll the interrupt handler are stopped by the
    // confined engine's watchdog; in process nothing can stop them (README).
    if matches!(
        common::engine_mode(),
        thetazero_runtime::sandbox::EngineMode::Process(_)
    ) {
        cases.push((
            "native",
            "return Array.prototype.join.call({length: 2 ** 53 - 1}, '').length;",
        ));
        cases.push(("parent", "return await thetazero.call_agent('child', {});"));
    }
    for (name, code) in cases {
        let id =
            if name == "parent" {
                let r = app
                .call(
                    "POST",
                    "/api/v1/sdk/agents",
                    Some(&app.owner),
                    Some(json!({"name": name, "entry_code": code, "permissions": ["agents:write"],
                                "config": {"cpu_time_limit_ms": 120000}})),
                )
                .await;
                assert!(r.status.is_success(), "{}", r.body);
                r.body["agent"]["id"].as_i64().unwrap()
            } else {
                agent(&app, name, code).await
            };
        let pending = start(&app, id);
        running(&app, id, 1).await;
        let r = app
            .call(
                "POST",
                &format!("/api/sdk/agents/{id}/kill"),
                Some(&app.owner),
                Some(json!({"reason": "Suspicious output detected"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["terminated"], 1);
        assert_eq!(r.body["confirmed"], true);
        let ended = pending.await.unwrap();
        assert_eq!(ended["status"], "killed", "{ended}");
        assert_eq!(ended["was_terminated"], true);
        let types = audit_types(&app, &format!("agentId={id}")).await;
        assert!(
            types.ends_with(&["agent_killed".to_string()])
                || types.contains(&"agent_killed".to_string()),
            "{types:?}"
        );
        assert!(types.contains(&"agent_kill_requested".to_string()));
        // Refused until revived.
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                Some(&app.owner),
                Some(json!({})),
            )
            .await;
        assert_error(&r, 409, "agent_killed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_kill_switch_revives_a_killed_agent() {
    let app = TestApp::new().await;
    let id = agent(&app, "x", "return 1;").await;
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{id}/kill"),
            Some(&app.owner),
            Some(json!({"reason": "drill"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["terminated"].as_u64()),
        (200, Some(0))
    );
    let (writer, _) = app
        .key_with(&app.owner, &["agents:write", "agents:execute"])
        .await;
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&writer),
            Some(json!({"status": "ready"})),
        )
        .await;
    assert_error(&r, 409, "agent_killed");
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{id}/kill"),
            Some(&writer),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_error(&r, 403, "missing_scope");
    // Re-registering its name, even with new code and `status: ready`, does
    // not bring it back: it stays killed and refuses executions.
    for body in [
        json!({"name": "x", "entry_code": "return 1;"}),
        json!({"name": "x", "entry_code": "return 2;", "status": "ready"}),
    ] {
        let r = app
            .call("POST", "/api/v1/sdk/agents", Some(&writer), Some(body))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["agent"]["id"], id);
        assert_eq!(r.body["agent"]["status"], "killed", "{}", r.body);
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                Some(&writer),
                Some(json!({})),
            )
            .await;
        assert_error(&r, 409, "agent_killed");
    }
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            Some(json!({"status": "ready"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{id}/execute"),
            Some(&writer),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.body["status"], "completed");
    let r = app
        .call(
            "POST",
            "/api/sdk/agents/999999/kill",
            Some(&app.owner),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_error(&r, 404, "not_found");
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/agents/{id}/kill"),
            Some(&app.owner),
            Some(json!({"reason": ""})),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_stops_the_account_and_refuses_new_executions_until_cleared() {
    let app = TestApp::new().await;
    let spin = agent(&app, "spin", "while (true) {}").await;
    let ok = agent(&app, "ok", "return 1;").await;
    let other = app.other_account().await;
    let theirs = app.register(&other, "theirs").await;
    let pending = start(&app, spin);
    running(&app, spin, 1).await;
    let r = app
        .call(
            "POST",
            "/api/sdk/kill-switch/global",
            Some(&app.owner),
            Some(json!({"halted": true, "reason": "Emergency maintenance"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["terminated"].as_u64(), r.body["confirmed"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(pending.await.unwrap()["status"], "killed");
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{ok}/execute"),
            Some(&app.owner),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 503, "global_halt");
    assert!(r.headers.get("retry-after").is_some());
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/kill-switch/global",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(
        (r.body["halted"].as_bool(), r.body["reason"].as_str()),
        (Some(true), Some("Emergency maintenance"))
    );
    // Another account is not halted by this account's switch...
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{theirs}/execute"),
            Some(&other),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // ...and cannot halt the deployment.
    let r = app
        .call(
            "POST",
            "/api/sdk/kill-switch/global",
            Some(&other),
            Some(json!({"halted": true, "reason": "x", "scope": "deployment"})),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let r = app
        .call(
            "POST",
            "/api/sdk/kill-switch/global",
            Some(&app.owner),
            Some(json!({"halted": false, "reason": "Maintenance over"})),
        )
        .await;
    assert_eq!(r.body["halted"], false);
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{ok}/execute"),
            Some(&app.owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.body["status"], "completed");
    let types = audit_types(&app, "actionTypes=global_halt_set,global_halt_cleared").await;
    assert_eq!(types, ["global_halt_set", "global_halt_cleared"]);
    // The deployment's owner halts everyone.
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/kill-switch/global",
            Some(&app.owner),
            Some(json!({"halted": true, "reason": "all stop", "scope": "deployment"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{theirs}/execute"),
            Some(&other),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 503, "global_halt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_racing_with_starts_leaves_nothing_running() {
    let app = TestApp::new().await;
    let id = agent(&app, "race", "while (true) {}").await;
    let starts: Vec<_> = (0..6).map(|_| start(&app, id)).collect();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/agents/{id}/kill"),
            Some(&app.owner),
            Some(json!({"reason": "race"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for s in starts {
        let ended = s.await.unwrap();
        // Either it started and was killed, or it was refused.
        let refused = ended["error"]["code"] == "agent_killed";
        assert!(refused || ended["status"] == "killed", "{ended}");
    }
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}/executions?status=running"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["total"], 0);
}
