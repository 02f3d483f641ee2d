//! The authorization matrix, generated from the route table itself: every
//! route, without a key, with a revoked key, with a key lacking exactly the
//! scope it needs, and with another account's key.

mod common;

use common::{assert_error, TestApp};
use serde_json::{json, Value};
use thetazero_core::KeyScope;
use thetazero_http::auth::Access;
use thetazero_http::every_route;

/// A body that passes validation for routes that take one, so that what is
/// tested is the access decision and not the body.
fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("POST", "/api/v1/accounts") => Some(json!({"name": "x"})),
        ("POST", "/api/v1/keys") => Some(json!({"name": "x", "scopes": ["agents:read"]})),
        ("POST", "/api/v1/sdk/agents") => Some(json!({"name": "x", "entry_code": "return 1;"})),
        ("POST", "/api/v1/sdk/agents/{id}/execute") => Some(json!({"input": {}})),
        ("POST", p) if p.ends_with("/kill") => Some(json!({"reason": "matrix"})),
        ("POST", p) if p.ends_with("/permission-requests") => Some(
            json!({"agent_id": 1, "permissions": {"scopes": ["data:read"]}, "justification": "matrix"}),
        ),
        ("POST", p) if p.ends_with("/approve") || p.ends_with("/deny") => {
            Some(json!({"reason": "matrix"}))
        }
        ("POST", p) if p.ends_with("/kill-switch/global") => {
            Some(json!({"halted": false, "reason": "matrix"}))
        }
        ("PATCH", "/api/v1/keys/{id}") => Some(json!({"scopes": ["agents:read"]})),
        ("POST", p) if p.contains("/compliance/packages/") => Some(json!({})),
        ("PATCH", _) => Some(json!({"description": "changed"})),
        ("PUT", _) => Some(json!({"v": 1})),
        _ => None,
    }
}

struct Fixture {
    app: TestApp,
    agent_id: i64,
    key_id: i64,
    execution_id: i64,
    request_id: i64,
}

impl Fixture {
    async fn new() -> Fixture {
        let app = TestApp::new().await;
        let agent_id = app.register(&app.owner, "matrix-agent").await;
        let (_, key_id) = app.key_with(&app.owner, &["agents:read"]).await;
        let r = app
            .call(
                "PUT",
                &format!("/api/v1/sdk/agents/{agent_id}/context/k"),
                Some(&app.owner),
                Some(json!(1)),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{agent_id}/execute"),
                Some(&app.owner),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let execution_id = r.body["execution_id"].as_i64().unwrap();
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/permission-requests",
                Some(&app.owner),
                Some(json!({"agent_id": agent_id, "permissions": {"scopes": ["data:read"]}, "justification": "matrix"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let request_id = r.body["request"]["id"].as_i64().unwrap();
        Fixture {
            app,
            agent_id,
            key_id,
            execution_id,
            request_id,
        }
    }

    fn concrete(&self, path: &str) -> String {
        let id = if path.starts_with("/api/v1/keys") {
            self.key_id
        } else if path.contains("/permission-requests/") {
            self.request_id
        } else {
            self.agent_id
        };
        path.replace("{id}", &id.to_string())
            .replace("{key}", "k")
            .replace("{eid}", &self.execution_id.to_string())
            .replace("{framework}", "soc2")
    }
}

#[tokio::test]
async fn no_key_is_401_everywhere_but_public_routes() {
    let f = Fixture::new().await;
    for (method, path, access) in &every_route() {
        let r = f
            .app
            .call(method, &f.concrete(path), None, body_for(method, path))
            .await;
        if *access == Access::Public {
            assert!(
                r.status.is_success(),
                "{method} {path} is public: {}",
                r.status
            );
        } else {
            assert_error(&r, 401, "unauthorized");
        }
    }
}

#[tokio::test]
async fn malformed_and_unknown_keys_are_401() {
    let f = Fixture::new().await;
    for header in [
        "tzk_doesnotexist",
        "Basic abc",
        "",
        "tzk_",
        "x".repeat(300).as_str(),
    ] {
        let r = f
            .app
            .call("GET", "/api/v1/sdk/agents", Some(header), None)
            .await;
        assert_error(&r, 401, "unauthorized");
    }
}

#[tokio::test]
async fn revoked_key_is_401_everywhere() {
    let f = Fixture::new().await;
    let all: Vec<&str> = KeyScope::ALL.iter().map(|s| s.as_str()).collect();
    let (secret, id) = f.app.key_with(&f.app.owner, &all).await;
    let r = f
        .app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            Some(&f.app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    for (method, path, access) in &every_route() {
        if *access == Access::Public {
            continue;
        }
        let r = f
            .app
            .call(
                method,
                &f.concrete(path),
                Some(&secret),
                body_for(method, path),
            )
            .await;
        assert_error(&r, 401, "unauthorized");
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"));
    }
}

#[tokio::test]
async fn key_without_the_scope_is_403_naming_it() {
    let f = Fixture::new().await;
    for (method, path, access) in &every_route() {
        let needed = match access {
            Access::Scope(s) => *s,
            Access::AuditStream => KeyScope::AuditRead,
            Access::DeploymentOwner => {
                // Holding every scope is still not enough: only the first owner.
                let all: Vec<&str> = KeyScope::ALL.iter().map(|s| s.as_str()).collect();
                let (secret, _) = f.app.key_with(&f.app.owner, &all).await;
                let r = f
                    .app
                    .call(
                        method,
                        &f.concrete(path),
                        Some(&secret),
                        body_for(method, path),
                    )
                    .await;
                assert_error(&r, 403, "forbidden");
                continue;
            }
            Access::Public => continue,
        };
        let others: Vec<&str> = KeyScope::ALL
            .iter()
            .filter(|s| **s != needed)
            .map(|s| s.as_str())
            .collect();
        let (secret, _) = f.app.key_with(&f.app.owner, &others).await;
        let r = f
            .app
            .call(
                method,
                &f.concrete(path),
                Some(&secret),
                body_for(method, path),
            )
            .await;
        assert_error(&r, 403, "missing_scope");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(needed.as_str()),
            "{method} {path}: {message}"
        );
    }
}

#[tokio::test]
async fn another_accounts_key_gets_404_for_every_resource_id() {
    let f = Fixture::new().await;
    let stranger = f.app.other_account().await;
    let mut checked = 0;
    for (method, path, access) in &every_route() {
        if !path.contains("{id}") {
            continue;
        }
        assert!(matches!(access, Access::Scope(_)), "{path}");
        let r = f
            .app
            .call(
                method,
                &f.concrete(path),
                Some(&stranger),
                body_for(method, path),
            )
            .await;
        assert_error(&r, 404, "not_found");
        checked += 1;
    }
    assert!(checked >= 8, "the matrix covered {checked} id routes");
    // And nothing was changed or lost by those attempts.
    let r = f
        .app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{}", f.agent_id),
            Some(&f.app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["agent"]["description"], "");
    let r = f
        .app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{}/context/k", f.agent_id),
            Some(&f.app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["value"], 1);
    let r = f
        .app
        .call(
            "GET",
            &format!("/api/v1/keys/{}", f.key_id),
            Some(&f.app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["key"]["revoked_at"], Value::Null);
}

#[tokio::test]
async fn listings_are_scoped_to_the_callers_account() {
    let f = Fixture::new().await;
    let stranger = f.app.other_account().await;
    let r = f
        .app
        .call("GET", "/api/v1/sdk/agents", Some(&stranger), None)
        .await;
    assert_eq!(r.body["total"], 0);
    let r = f
        .app
        .call("GET", "/api/v1/keys", Some(&stranger), None)
        .await;
    assert_eq!(
        r.body["keys"].as_array().unwrap().len(),
        1,
        "only its own owner key"
    );
    let r = f
        .app
        .call("GET", "/api/v1/sdk/audit", Some(&stranger), None)
        .await;
    let events = r.body["events"].as_array().unwrap();
    assert!(events
        .iter()
        .all(|e| e["account_id"] == r.body["events"][0]["account_id"]));
    assert!(events.iter().all(|e| e["account_id"] != 1));
    // The same name in two accounts is two agents.
    let theirs = f.app.register(&stranger, "matrix-agent").await;
    assert_ne!(theirs, f.agent_id);
}

#[tokio::test]
async fn every_routed_path_has_an_access_rule_and_the_openapi_covers_it() {
    let doc = thetazero_http::openapi();
    let app = TestApp::new().await;
    let r = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        r.body["openapi"]
    );
    let served = &r.body["paths"];
    for (method, path, _) in &every_route() {
        let op = &served[path][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // The served document is the one `openapi()` builds.
    assert_eq!(r.body, doc);
    // And the document lists nothing the table does not govern, but the
    // session, which authenticates by itself.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/api/v1/session" {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let upper = method.to_ascii_uppercase();
            assert!(
                every_route()
                    .iter()
                    .any(|(m, p, _)| *m == upper && p == path),
                "{upper} {path} is routed but has no access rule"
            );
        }
    }
}
