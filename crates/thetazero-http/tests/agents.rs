//! The agents API end to end in process: the spec's registration example,
//! upsert, list, get, patch, delete, context, and the audit events they leave.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{assert_error, TestApp};
use serde_json::{json, Value};

/// The spec's curl example, body byte for byte.
const SPEC_BODY: &str = r#"{ "name": "my-summarizer", "version": "1.0.0", "entry_code": "await thetazero.write_result({ ok: true });", "config": { "memory_limit_mb": 128, "cpu_time_limit_ms": 15000, "max_api_calls_per_run": 10, "allow_network": false }, "status": "ready" }"#;

macro_rules! snapshot {
    ($value:expr) => {
        insta::assert_json_snapshot!($value, {
            ".**.created_at" => "[time]",
            ".**.updated_at" => "[time]",
            ".**.timestamp" => "[time]",
            ".**.request_id" => "[request_id]",
            ".**.prefix" => "[prefix]",
            ".**.secret" => "[secret]",
        })
    };
}

#[tokio::test]
async fn the_spec_registration_example_answers_the_spec_shape() {
    let app = TestApp::new().await;
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/sdk/agents")
        .header("Authorization", format!("Bearer {}", app.owner))
        .header("Content-Type", "application/json")
        .body(Body::from(SPEC_BODY))
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["success"], true);
    let agent = &r.body["agent"];
    assert!(agent["id"].as_i64().unwrap() > 0);
    assert_eq!(agent["name"], "my-summarizer");
    assert_eq!(agent["version"], "1.0.0");
    assert_eq!(agent["status"], "ready");
    assert_eq!(agent["config"]["memory_limit_mb"], 128);
    assert_eq!(agent["config"]["cpu_time_limit_ms"], 15000);
    assert_eq!(agent["config"]["allow_network"], false);
    assert_eq!(agent["config"]["max_api_calls_per_run"], 10);
    assert!(r.headers.get("x-request-id").is_some());
    snapshot!(r.body);
}

#[tokio::test]
async fn register_again_by_name_replaces_and_keeps_the_id() {
    let app = TestApp::new().await;
    let first = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(serde_json::from_str(SPEC_BODY).unwrap()),
        )
        .await;
    let again = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "my-summarizer", "version": "1.1.0", "entry_code": "return 2;", "permissions": "CODER"})),
        )
        .await;
    assert_eq!(
        again.status, 200,
        "an upsert of an existing name answers 200"
    );
    assert_eq!(again.body["agent"]["id"], first.body["agent"]["id"]);
    assert_eq!(again.body["agent"]["version"], "1.1.0");
    assert_eq!(again.body["agent"]["permissions"], "CODER");
    assert_eq!(
        again.body["agent"]["config"]["cpu_time_limit_ms"], 30000,
        "replaced, not merged"
    );
    let list = app
        .call("GET", "/api/v1/sdk/agents", Some(&app.owner), None)
        .await;
    assert_eq!(list.body["total"], 1);
}

#[tokio::test]
async fn list_paginates() {
    let app = TestApp::new().await;
    for i in 0..25 {
        app.register(&app.owner, &format!("agent-{i:02}")).await;
    }
    let check = |page: u64, limit: u64, expect: &[&str]| {
        let app = &app;
        let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        async move {
            let r = app
                .call(
                    "GET",
                    &format!("/api/v1/sdk/agents?page={page}&limit={limit}"),
                    Some(&app.owner),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["total"], 25);
            let names: Vec<String> = r.body["agents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(names, expect, "page {page} limit {limit}");
        }
    };
    check(1, 2, &["agent-00", "agent-01"]).await;
    check(
        2,
        10,
        &[
            "agent-10", "agent-11", "agent-12", "agent-13", "agent-14", "agent-15", "agent-16",
            "agent-17", "agent-18", "agent-19",
        ],
    )
    .await;
    check(
        3,
        10,
        &["agent-20", "agent-21", "agent-22", "agent-23", "agent-24"],
    )
    .await;
    check(4, 10, &[]).await;
    let r = app
        .call("GET", "/api/v1/sdk/agents", Some(&app.owner), None)
        .await;
    assert_eq!(r.body["limit"], 20);
    assert_eq!(r.body["agents"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn get_patch_delete_and_their_audit_trail() {
    let app = TestApp::new().await;
    let id = app.register(&app.owner, "lifecycle").await;
    let path = format!("/api/v1/sdk/agents/{id}");

    let r = app.call("GET", &path, Some(&app.owner), None).await;
    assert_eq!(r.status, 200);
    snapshot!(r.body);

    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.owner),
            Some(json!({"entry_code": "return 3;", "config": {"memory_limit_mb": 256, "allowed_domains": ["API.example.com"]}, "permissions": ["data:read"], "status": "disabled", "version": "2.0.0", "description": "patched"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    snapshot!(r.body);

    // A later config patch merges with the earlier one.
    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.owner),
            Some(json!({"config": {"cpu_time_limit_ms": 1000}})),
        )
        .await;
    assert_eq!(r.body["agent"]["config"]["memory_limit_mb"], 256);
    assert_eq!(r.body["agent"]["config"]["cpu_time_limit_ms"], 1000);

    let r = app.call("DELETE", &path, Some(&app.owner), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"success": true}));
    let r = app.call("GET", &path, Some(&app.owner), None).await;
    assert_error(&r, 404, "not_found");
    let r = app.call("DELETE", &path, Some(&app.owner), None).await;
    assert_error(&r, 404, "not_found");

    let audit = app
        .call(
            "GET",
            &format!("/api/v1/sdk/audit?agentId={id}"),
            Some(&app.owner),
            None,
        )
        .await;
    let types: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "agent_created",
            "agent_updated",
            "agent_updated",
            "agent_deleted"
        ]
    );
    let indices: Vec<u64> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["leaf_index"].as_u64().unwrap())
        .collect();
    assert!(indices.windows(2).all(|w| w[0] < w[1]));
    assert!(audit.body["events"][1]["description"]
        .as_str()
        .unwrap()
        .contains("entry_code"));
}

#[tokio::test]
async fn context_store_round_trips_json_values() {
    let app = TestApp::new().await;
    let id = app.register(&app.owner, "ctx").await;
    for value in [
        json!(null),
        json!(0),
        json!("text"),
        json!([1, {"a": true}]),
        json!({"nested": {"deep": [1.5, "x"]}}),
    ] {
        let path = format!("/api/v1/sdk/agents/{id}/context/run_count");
        let r = app
            .call("PUT", &path, Some(&app.owner), Some(value.clone()))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = app.call("GET", &path, Some(&app.owner), None).await;
        assert_eq!(r.body["value"], value);
    }
    let path = format!("/api/v1/sdk/agents/{id}/context/run_count");
    let r = app.call("DELETE", &path, Some(&app.owner), None).await;
    assert_eq!(r.status, 200);
    let r = app.call("GET", &path, Some(&app.owner), None).await;
    assert_error(&r, 404, "not_found");
    // Context goes with its agent.
    app.call("PUT", &path, Some(&app.owner), Some(json!(1)))
        .await;
    app.call(
        "DELETE",
        &format!("/api/v1/sdk/agents/{id}"),
        Some(&app.owner),
        None,
    )
    .await;
    let again = app.register(&app.owner, "ctx").await;
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{again}/context/run_count"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
}

#[tokio::test]
async fn keys_lifecycle() {
    let app = TestApp::new().await;
    let r = app
        .call(
            "POST",
            "/api/v1/keys",
            Some(&app.owner),
            Some(json!({"name": "ci", "scopes": ["agents:read", "agents:execute"]})),
        )
        .await;
    assert_eq!(r.status, 201);
    snapshot!(r.body);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let id = r.body["key"]["id"].as_i64().unwrap();
    assert!(secret.starts_with("tzk_") && secret.len() >= 4 + 43);

    // The secret never appears again.
    let list = app
        .call("GET", "/api/v1/keys", Some(&app.owner), None)
        .await;
    assert!(!list.body.to_string().contains(&secret));
    assert_eq!(list.body["keys"].as_array().unwrap().len(), 2);

    // It works, within its scopes.
    let r = app
        .call("GET", "/api/v1/sdk/agents", Some(&secret), None)
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&secret),
            Some(json!({"name": "x", "entry_code": "1"})),
        )
        .await;
    assert_error(&r, 403, "missing_scope");

    // A key cannot hand out scopes it does not hold.
    let (keys_only, _) = app.key_with(&app.owner, &["keys"]).await;
    let r = app
        .call(
            "POST",
            "/api/v1/keys",
            Some(&keys_only),
            Some(json!({"name": "escalate", "scopes": ["agents:write"]})),
        )
        .await;
    assert_error(&r, 403, "missing_scope");
    // Nor revoke an owner key.
    let owner_id = list.body["keys"][0]["id"].as_i64().unwrap();
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{owner_id}"),
            Some(&keys_only),
            None,
        )
        .await;
    assert_error(&r, 403, "forbidden");

    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["key"]["revoked_at"].is_string());
    let r = app
        .call("GET", "/api/v1/sdk/agents", Some(&secret), None)
        .await;
    assert_error(&r, 401, "unauthorized");

    let audit = app
        .call(
            "GET",
            "/api/v1/sdk/audit?actionTypes=key_created,key_revoked",
            Some(&app.owner),
            None,
        )
        .await;
    let types: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["key_created", "key_created", "key_revoked"]);
}

#[tokio::test]
async fn last_used_at_is_kept() {
    let app = TestApp::new().await;
    let (secret, id) = app.key_with(&app.owner, &["agents:read"]).await;
    let before = app
        .call("GET", &format!("/api/v1/keys/{id}"), Some(&app.owner), None)
        .await;
    assert_eq!(before.body["key"]["last_used_at"], Value::Null);
    app.call("GET", "/api/v1/sdk/agents", Some(&secret), None)
        .await;
    // The touch is written off the request path; poll the store until it lands.
    let mut seen = Value::Null;
    for _ in 0..200 {
        let r = app
            .call("GET", &format!("/api/v1/keys/{id}"), Some(&app.owner), None)
            .await;
        seen = r.body["key"]["last_used_at"].clone();
        if !seen.is_null() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(seen.is_string(), "last_used_at was never recorded");
}

#[tokio::test]
async fn accounts_are_created_by_the_first_owner_only() {
    let app = TestApp::new().await;
    let r = app
        .call(
            "POST",
            "/api/v1/accounts",
            Some(&app.owner),
            Some(json!({"name": "team b"})),
        )
        .await;
    assert_eq!(r.status, 201);
    snapshot!(r.body);
    let theirs = r.body["secret"].as_str().unwrap().to_string();
    // The new owner runs its own account but cannot create accounts.
    let r = app
        .call(
            "POST",
            "/api/v1/accounts",
            Some(&theirs),
            Some(json!({"name": "team c"})),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let id = app.register(&theirs, "theirs").await;
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
}

#[tokio::test]
async fn operations_endpoints() {
    let app = TestApp::new().await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.body, json!({"status": "ready"}));
    app.call("GET", "/api/v1/sdk/agents", Some(&app.owner), None)
        .await;
    // The main listener serves metrics only to a key holding `metrics`.
    let r = app.call("GET", "/metrics", None, None).await;
    assert_error(&r, 401, "unauthorized");
    let r = app.call("GET", "/metrics", Some(&app.owner), None).await;
    let text = r.body.as_str().unwrap().to_string();
    assert!(text.contains("thetazero_http_requests_total{method=\"GET\",route=\"/api/v1/sdk/agents\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("thetazero_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn dev_and_allow_localhost_are_the_operators_to_give() {
    // By default no account may ask for them: they reach the server's own
    // loopback services.
    let app = TestApp::new().await;
    for (config, field) in [
        (
            json!({"sandbox_template": "DEV"}),
            "config.sandbox_template",
        ),
        (
            json!({"sandbox_template": "DEV", "allow_localhost": true}),
            "config.allow_localhost",
        ),
    ] {
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/agents",
                Some(&app.owner),
                Some(json!({"name": "dev", "entry_code": "return 1;", "config": config})),
            )
            .await;
        assert_error(&r, 400, "invalid_config");
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(field),
            "{}",
            r.body
        );
    }
    // Nor can a patch turn an agent into one.
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "plain", "entry_code": "return 1;"})),
        )
        .await;
    let id = r.body["agent"]["id"].as_i64().unwrap();
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            Some(json!({"config": {"sandbox_template": "DEV"}})),
        )
        .await;
    assert_error(&r, 400, "invalid_config");

    // The operator names account 1 (the owner's) in `dev_accounts`: the
    // agent registers. After a restart without it, the agent predates the
    // setting, and the engine refuses to run it.
    let app = TestApp::with_config(
        thetazero_http::Settings::default(),
        thetazero_runtime::RuntimeConfig {
            dev_accounts: vec![thetazero_core::model::AccountId::new(1)],
            ..Default::default()
        },
    )
    .await;
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "dev", "entry_code": "return 1;", "config": {"sandbox_template": "DEV"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["agent"]["id"].as_i64().unwrap();
    let app = app.restart(thetazero_runtime::RuntimeConfig::default());
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{id}/execute"),
            Some(&app.owner),
            Some(json!({"input": {}})),
        )
        .await;
    assert_error(&r, 400, "invalid_config");
}

#[tokio::test]
async fn ceilings_bind_template_defaults() {
    // STANDARD's defaults (128 MB, 30 s) and STRICT's (256 MB, 120 s) are
    // above these ceilings: runs get the ceilings.
    let config = thetazero_runtime::RuntimeConfig {
        ceilings: thetazero_core::Ceilings {
            memory_mb: 64,
            cpu_time_ms: 1_000,
            max_api_calls_per_run: 10_000,
            max_api_calls_per_minute: 6_000,
        },
        ..Default::default()
    };
    let app = TestApp::with_config(thetazero_http::Settings::default(), config).await;
    for (name, config) in [
        ("standard", json!({})),
        ("strict", json!({"sandbox_template": "STRICT"})),
    ] {
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/agents",
                Some(&app.owner),
                Some(json!({"name": name, "entry_code": "for (;;) {}", "config": config})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["agent"]["id"].as_i64().unwrap();
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                Some(&app.owner),
                Some(json!({"input": {}})),
            )
            .await;
        assert_eq!(r.body["status"], "timed_out", "{name}: {}", r.body);
        let eid = r.body["execution_id"].as_i64().unwrap();
        // The signed receipt states the limits the run had.
        let r = app
            .call(
                "GET",
                &format!("/api/v1/sdk/executions/{eid}/verify"),
                Some(&app.owner),
                None,
            )
            .await;
        let limits = &r.body["limits"];
        assert_eq!(limits["memory_mb"], 64, "{name}: {}", r.body);
        assert_eq!(limits["cpu_time_ms"], 1_000, "{name}: {}", r.body);
    }
}
