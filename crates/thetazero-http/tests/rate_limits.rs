//! Rate limits the API enforces: executions per key and agent code changes
//! per agent (the evolution rate). Each hit is a 429 with `Retry-After` and an
//! audit event `rate_limit_hit` with `is_violation: true`; a caller hammering
//! a limit does not turn every refusal into an audit write.

mod common;

use common::{assert_error, TestApp};
use serde_json::{json, Value};
use thetazero_http::Settings;
use thetazero_runtime::rates::RateLimits;
use thetazero_runtime::RuntimeConfig;

async fn limit_events(app: &TestApp) -> Vec<Value> {
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit?limit=1000&actionTypes=rate_limit_hit",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["events"].as_array().unwrap().clone()
}

fn retry_after(r: &common::Reply) -> u64 {
    r.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn executions_per_key_are_limited_per_key() {
    let app = TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            rates: RateLimits {
                executions_per_key_per_minute: 3,
                ..RateLimits::default()
            },
            ..RuntimeConfig::default()
        },
    )
    .await;
    let id = app.register(&app.owner, "busy").await;
    let execute = format!("/api/v1/sdk/agents/{id}/execute");
    for i in 0..3 {
        let r = app.call("POST", &execute, Some(&app.owner), None).await;
        assert_eq!(r.status, 200, "execution {i}: {}", r.body);
    }
    let r = app.call("POST", &execute, Some(&app.owner), None).await;
    assert_error(&r, 429, "rate_limited");
    // One execution every 20 s refills a limit of 3 per minute.
    let wait = retry_after(&r);
    assert!((19..=20).contains(&wait), "Retry-After {wait}");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("executions_per_key_per_minute"));

    let events = limit_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["is_violation"], true);
    assert_eq!(events[0]["action_category"], "limit");

    // Hammering the limit: still refused, not one audit write per refusal.
    for _ in 0..5 {
        let r = app.call("POST", &execute, Some(&app.owner), None).await;
        assert_error(&r, 429, "rate_limited");
    }
    assert_eq!(limit_events(&app).await.len(), 1);

    // Another key of the same account has its own allowance.
    let (other, _) = app.key_with(&app.owner, &["agents:execute"]).await;
    let r = app.call("POST", &execute, Some(&other), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Refused executions never started: three plus the other key's one.
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}/executions"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["total"], 4);
}

#[tokio::test]
async fn code_changes_per_agent_are_limited_and_other_changes_are_not() {
    let app = TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            rates: RateLimits {
                code_updates_per_agent_per_hour: 3,
                ..RateLimits::default()
            },
            ..RuntimeConfig::default()
        },
    )
    .await;
    // Registering a name counts as its first code.
    let id = app.register(&app.owner, "evolving").await;
    let path = format!("/api/v1/sdk/agents/{id}");
    for n in 2..4 {
        let r = app
            .call(
                "PATCH",
                &path,
                Some(&app.owner),
                Some(json!({"entry_code": format!("return {n};")})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.owner),
            Some(json!({"entry_code": "return 4;"})),
        )
        .await;
    assert_error(&r, 429, "rate_limited");
    assert!(retry_after(&r) > 1100, "twenty minutes per change");
    // The refused change did not land.
    let r = app.call("GET", &path, Some(&app.owner), None).await;
    assert_eq!(r.body["agent"]["entry_code"], "return 3;");

    // Changes that leave the code alone are not code changes.
    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.owner),
            Some(json!({"description": "still allowed", "entry_code": "return 3;"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let same = json!({"name": "evolving", "entry_code": "return 3;", "version": "1.0.1"});
    let r = app
        .call("POST", "/api/v1/sdk/agents", Some(&app.owner), Some(same))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Re-registering under the same name with new code is one.
    let new_code = json!({"name": "evolving", "entry_code": "return 5;"});
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(new_code),
        )
        .await;
    assert_error(&r, 429, "rate_limited");

    // Another agent evolves on its own allowance.
    let other = app.register(&app.owner, "other").await;
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/sdk/agents/{other}"),
            Some(&app.owner),
            Some(json!({"entry_code": "return 2;"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let events = limit_events(&app).await;
    assert_eq!(
        events.len(),
        1,
        "one event per counter per minute: {events:?}"
    );
    assert_eq!(events[0]["agent_id"], id);
    assert_eq!(events[0]["is_violation"], true);
}

#[tokio::test]
async fn a_limit_of_zero_is_off() {
    let app = TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            rates: RateLimits {
                executions_per_key_per_minute: 0,
                code_updates_per_agent_per_hour: 0,
                ..RateLimits::default()
            },
            ..RuntimeConfig::default()
        },
    )
    .await;
    let id = app.register(&app.owner, "free").await;
    for n in 0..5 {
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                Some(&app.owner),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sdk/agents/{id}"),
                Some(&app.owner),
                Some(json!({"entry_code": format!("return {n};")})),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    assert!(limit_events(&app).await.is_empty());
}
