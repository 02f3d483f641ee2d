//! Bad input: every refusal has the one error shape and a stable code, nothing
//! is stored, and the server keeps serving.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{assert_error, TestApp};
use serde_json::{json, Value};
use thetazero_http::Settings;

async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> common::Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", app.owner));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    app.raw(req.body(body.into()).unwrap()).await
}

async fn assert_nothing_stored(app: &TestApp) {
    let r = app
        .call("GET", "/api/v1/sdk/agents", Some(&app.owner), None)
        .await;
    assert_eq!(r.body["total"], 0, "{}", r.body);
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = TestApp::new().await;
    for body in [
        "{",
        "{\"name\": }",
        "not json",
        "",
        "{\"name\": \"a\",}",
        "\u{0}",
        "[1, 2",
    ] {
        let r = send_raw(
            &app,
            "POST",
            "/api/v1/sdk/agents",
            Some("application/json"),
            body,
        )
        .await;
        assert_error(&r, 400, "invalid_json");
    }
    let r = send_raw(
        &app,
        "POST",
        "/api/v1/sdk/agents",
        Some("application/json"),
        vec![0xff, 0xfe, 0x00],
    )
    .await;
    assert_error(&r, 400, "invalid_json");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::new().await;
    let body = r#"{"name": "a", "entry_code": "1"}"#;
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("text/html"),
        Some("application/xml"),
        Some("application/octet-stream"),
    ] {
        let r = send_raw(&app, "POST", "/api/v1/sdk/agents", ct, body).await;
        assert_error(&r, 415, "unsupported_media_type");
    }
    assert_nothing_stored(&app).await;
}

/// `fetch` with a string body declares `text/plain;charset=UTF-8`, other
/// clients declare nothing: a body that parses as JSON is read as JSON.
#[tokio::test]
async fn json_is_read_whatever_plain_type_declares_it() {
    let app = TestApp::new().await;
    for (i, ct) in [
        None,
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("TEXT/PLAIN; charset=iso-8859-1"),
        Some("application/json; charset=utf-8"),
        Some("application/merge-patch+json"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"name": "typed-{i}", "entry_code": "return 1"}}"#);
        let r = send_raw(&app, "POST", "/api/v1/sdk/agents", ct, body).await;
        assert!(
            r.status == 200 || r.status == 201,
            "{ct:?} answered {}: {}",
            r.status,
            r.body
        );
    }
    // Still JSON or nothing: a text/plain body that is not JSON is invalid_json.
    let r = send_raw(
        &app,
        "POST",
        "/api/v1/sdk/agents",
        Some("text/plain"),
        "name=a",
    )
    .await;
    assert_error(&r, 400, "invalid_json");
}

#[tokio::test]
async fn wrong_shapes_name_the_field() {
    let app = TestApp::new().await;
    let cases: &[(Value, &str, &str)] = &[
        (json!({"entry_code": "1"}), "invalid_request", "name"),
        (json!({"name": "a"}), "invalid_request", "entry_code"),
        (
            json!({"name": 5, "entry_code": "1"}),
            "invalid_request",
            "name",
        ),
        (
            json!({"name": "a", "entry_code": "1", "colour": "red"}),
            "invalid_request",
            "colour",
        ),
        (
            json!({"name": "a b", "entry_code": "1"}),
            "invalid_request",
            "name",
        ),
        (
            json!({"name": "", "entry_code": "1"}),
            "invalid_request",
            "name",
        ),
        (
            json!({"name": "a", "entry_code": "   "}),
            "invalid_request",
            "entry_code",
        ),
        (
            json!({"name": "a", "entry_code": "1", "status": "killed"}),
            "invalid_request",
            "status",
        ),
        (
            json!({"name": "a", "entry_code": "1", "status": "running"}),
            "invalid_request",
            "status",
        ),
        (
            json!({"name": "a", "entry_code": "1", "permissions": "GOD"}),
            "invalid_request",
            "permissions",
        ),
        (
            json!({"name": "a", "entry_code": "1", "permissions": ["data:read", "root"]}),
            "invalid_request",
            "root",
        ),
        (
            json!({"name": "a", "entry_code": "1", "config": {"memry_limit_mb": 1}}),
            "invalid_config",
            "memry_limit_mb",
        ),
        (
            json!({"name": "a", "entry_code": "1", "config": {"memory_limit_mb": "big"}}),
            "invalid_config",
            "memory_limit_mb",
        ),
        (
            json!({"name": "a", "entry_code": "1", "config": {"allow_network": 1}}),
            "invalid_config",
            "allow_network",
        ),
        (
            json!({"name": "a", "entry_code": "1", "config": {"sandbox_template": "YOLO"}}),
            "invalid_config",
            "sandbox_template",
        ),
        (
            json!({"name": "a", "entry_code": "1", "config": {"content_safety": false}}),
            "invalid_config",
            "content_safety",
        ),
        (
            json!({"name": "a", "entry_code": "1", "config": "fast"}),
            "invalid_config",
            "object",
        ),
        (
            json!({"name": "a", "entry_code": "1", "version": ""}),
            "invalid_request",
            "version",
        ),
        (
            json!({"name": "a", "entry_code": "1", "description": "bell\u{7}"}),
            "invalid_request",
            "description",
        ),
        (json!([]), "invalid_request", "body"),
    ];
    for (body, code, mention) in cases {
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/agents",
                Some(&app.owner),
                Some(body.clone()),
            )
            .await;
        assert_error(&r, 400, code);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mention),
            "{body}: {message:?} should mention {mention:?}"
        );
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn out_of_range_limits_name_the_ceiling() {
    let app = TestApp::new().await;
    let cases = [
        (json!({"memory_limit_mb": 4096}), "memory_limit_mb", "512"),
        (
            json!({"cpu_time_limit_ms": 3_600_000}),
            "cpu_time_limit_ms",
            "300000",
        ),
        (
            json!({"max_api_calls_per_run": 1_000_000}),
            "max_api_calls_per_run",
            "10000",
        ),
        (
            json!({"max_api_calls_per_minute": 1_000_000}),
            "max_api_calls_per_minute",
            "6000",
        ),
    ];
    for (config, field, ceiling) in cases {
        let r = app
            .call(
                "POST",
                "/api/v1/sdk/agents",
                Some(&app.owner),
                Some(json!({"name": "a", "entry_code": "1", "config": config})),
            )
            .await;
        assert_error(&r, 400, "limit_above_ceiling");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains(ceiling),
            "{message}"
        );
    }
    // Operators set their own ceilings.
    let mut config = thetazero_runtime::RuntimeConfig::default();
    config.ceilings.memory_mb = 64;
    let small = TestApp::with_config(Settings::default(), config).await;
    let r = small
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&small.owner),
            Some(json!({"name": "a", "entry_code": "1", "config": {"memory_limit_mb": 128}})),
        )
        .await;
    assert_error(&r, 400, "limit_above_ceiling");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::new().await;
    let huge = format!(
        r#"{{"name": "a", "entry_code": "{}"}}"#,
        "x".repeat(3 << 20)
    );
    let r = send_raw(
        &app,
        "POST",
        "/api/v1/sdk/agents",
        Some("application/json"),
        huge,
    )
    .await;
    assert_error(&r, 413, "payload_too_large");
    // Under the body cap but over the code cap: a 400 naming the field.
    let big_code = json!({"name": "a", "entry_code": "x".repeat(600 << 10)});
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(big_code),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("entry_code"));
    let id = app.register(&app.owner, "ctx").await;
    let r = app
        .call(
            "PUT",
            &format!("/api/v1/sdk/agents/{id}/context/k"),
            Some(&app.owner),
            Some(json!("y".repeat(100 << 10))),
        )
        .await;
    assert_error(&r, 413, "payload_too_large");
}

#[tokio::test]
async fn conflicts_and_unknown_things() {
    let app = TestApp::new().await;
    let id = app.register(&app.owner, "a").await;
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    for path in [
        "/api/v1/sdk/agents/999999",
        "/api/v1/sdk/agents/abc",
        "/api/v1/sdk/agents/-1",
        "/api/v1/sdk/agents/0",
        "/api/v1/sdk/agents/99999999999999999999999",
    ] {
        let r = app.call("GET", path, Some(&app.owner), None).await;
        assert_error(&r, 404, "not_found");
    }
    let r = app
        .call("GET", "/api/v1/nothing-here", Some(&app.owner), None)
        .await;
    assert_error(&r, 404, "not_found");
    let r = app
        .call("PUT", "/api/v1/sdk/agents", Some(&app.owner), None)
        .await;
    assert_error(&r, 405, "method_not_allowed");
    let r = app
        .call("GET", "/api/v1/sdk/agents?page=0", Some(&app.owner), None)
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/agents?limit=1000",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .call("GET", "/api/v1/sdk/agents?page=two", Some(&app.owner), None)
        .await;
    assert_error(&r, 400, "invalid_request");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("page"));
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit?from=yesterday",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .call(
            "POST",
            "/api/v1/keys",
            Some(&app.owner),
            Some(json!({"name": "k", "scopes": ["root"]})),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .call(
            "POST",
            "/api/v1/keys",
            Some(&app.owner),
            Some(json!({"name": "k", "scopes": []})),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}

#[tokio::test]
async fn hostile_strings_are_stored_verbatim_and_harmlessly() {
    let app = TestApp::new().await;
    let nul = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "nul", "entry_code": "return 1;\u{0}"})),
        )
        .await;
    assert_error(&nul, 400, "invalid_request");
    let code = "'); DROP TABLE agents; --\u{202e} \\u0000 🦀";
    let r = app
        .call("POST", "/api/v1/sdk/agents", Some(&app.owner), Some(json!({"name": "x", "entry_code": code, "description": "<script>alert(1)</script>"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["agent"]["id"].as_i64().unwrap();
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["agent"]["entry_code"], code);
    assert_eq!(r.body["agent"]["description"], "<script>alert(1)</script>");
    let key = "../../etc/passwd";
    let r = app
        .call(
            "PUT",
            &format!(
                "/api/v1/sdk/agents/{id}/context/{}",
                "..%2F..%2Fetc%2Fpasswd"
            ),
            Some(&app.owner),
            Some(json!(1)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["key"], key);
}

/// A bidi override or a zero-width character lets one name pass for another
/// in a list or the audit log: names and reasons refuse them, naming the field.
#[tokio::test]
async fn names_refuse_invisible_and_direction_changing_characters() {
    let app = TestApp::new().await;
    for name in [
        "ops\u{202e}yek",
        "ow\u{200b}ner",
        "admin\u{2066}",
        "\u{feff}backup",
        "a\u{00ad}b",
    ] {
        let r = app
            .call(
                "POST",
                "/api/v1/keys",
                Some(&app.owner),
                Some(json!({"name": name, "scopes": ["agents:read"]})),
            )
            .await;
        assert_error(&r, 400, "invalid_request");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("\"name\""),
            "{}",
            r.body
        );
    }
    let r = app
        .call(
            "POST",
            "/api/v1/keys",
            Some(&app.owner),
            Some(json!({"name": "ünïcode ok 🦀", "scopes": ["agents:read"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "target", "entry_code": "return 1"})),
        )
        .await;
    let id = created.body["agent"]["id"].as_i64().unwrap();
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{id}/kill"),
            Some(&app.owner),
            Some(json!({"reason": "fine\u{202e}enif"})),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}

/// JSON has one number type: a whole number written as `128.0` or `1.28e2`
/// is accepted where an integer is declared (JSON Schema's `integer` admits
/// it), and a fraction is refused naming the field.
#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers() {
    let app = TestApp::new().await;
    for (memory, status) in [("128.0", 201), ("1.28e2", 200), ("128.5", 400)] {
        let body = format!(
            r#"{{"name": "floaty", "entry_code": "return 1;", "config": {{"memory_limit_mb": {memory}}}}}"#
        );
        let r = send_raw(
            &app,
            "POST",
            "/api/v1/sdk/agents",
            Some("application/json"),
            body,
        )
        .await;
        if status == 400 {
            assert_error(&r, 400, "invalid_config");
            let message = r.body["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains("memory_limit_mb"), "{message}");
        } else {
            assert_eq!(r.status.as_u16(), status, "{memory}: {}", r.body);
            assert_eq!(
                r.body["agent"]["config"]["memory_limit_mb"], 128,
                "{memory}"
            );
        }
    }
}

/// Pages and leaf indexes are int64s in the document and the stores: one
/// past that is refused naming the parameter, not read as the last page or
/// (for a stream resumed after it) wrapped around to the start of the log.
#[tokio::test]
async fn indexes_past_int64_are_refused_naming_the_parameter() {
    let app = TestApp::new().await;
    let agent = common::agent(&app, json!({"name": "paged", "entry_code": "return 1;"})).await;
    let past = (i64::MAX as u64) + 1;
    // (path, Last-Event-ID, the parameter the refusal names)
    let cases: Vec<(String, Option<String>, &str)> = vec![
        (format!("/api/v1/sdk/agents?page={past}"), None, "page"),
        (
            format!("/api/v1/sdk/agents/{agent}/executions?page={past}"),
            None,
            "page",
        ),
        (format!("/api/v1/sdk/audit?cursor={past}"), None, "cursor"),
        (
            format!("/api/v1/sdk/audit/stream?after={}", u64::MAX),
            None,
            "after",
        ),
        (
            "/api/sdk/audit/stream".to_string(),
            Some(u64::MAX.to_string()),
            "Last-Event-ID",
        ),
    ];
    for (path, header, field) in cases {
        let mut req = Request::builder()
            .method("GET")
            .uri(&path)
            .header("authorization", format!("Bearer {}", app.owner));
        if let Some(value) = header {
            req = req.header("last-event-id", value);
        }
        let r = app.raw(req.body(Body::empty()).unwrap()).await;
        assert_error(&r, 400, "invalid_request");
        let message = r.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{path}: {message}");
    }
    // The largest int64 is still a page (an empty one).
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents?page={}", i64::MAX),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["agents"], json!([]));
}

/// serde would fill a request struct from an array of its fields in order;
/// every body is an object, so an array is refused and nothing happens.
#[tokio::test]
async fn a_body_that_is_an_array_is_refused() {
    let app = TestApp::new().await;
    let agent = common::agent(&app, json!({"name": "listy", "entry_code": "return 1;"})).await;
    for (method, path, body) in [
        (
            "POST",
            format!("/api/v1/sdk/agents/{agent}/kill"),
            json!(["why not"]),
        ),
        (
            "POST",
            "/api/v1/keys".to_string(),
            json!(["reader", ["agents:read"]]),
        ),
        (
            "POST",
            "/api/v1/sdk/kill-switch/global".to_string(),
            json!([true, "stop"]),
        ),
    ] {
        let r = app.call(method, &path, Some(&app.owner), Some(body)).await;
        assert_error(&r, 400, "invalid_request");
        let message = r.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("not an array"), "{path}: {message}");
    }
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{agent}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["agent"]["status"], "ready", "{}", r.body);
    let r = app
        .call("GET", "/api/v1/keys", Some(&app.owner), None)
        .await;
    assert_eq!(
        r.body["keys"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/kill-switch/global",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["halted"], false, "{}", r.body);
}
