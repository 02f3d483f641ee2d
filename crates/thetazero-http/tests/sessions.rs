//! Dashboard sessions: an API key exchanged for a cookie that resolves to
//! the same principal, CSRF tokens on state-changing cookie requests, and
//! sessions that end with their key (revoked or narrowed), on sign-out, and
//! with the streams they opened.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{assert_error, Reply, TestApp};
use http_body_util::BodyExt;
use serde_json::{json, Value};

struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp, key: &str, headers: &[(&str, &str)]) -> (Reply, Option<Session>) {
    let mut req = Request::builder()
        .method("POST")
        .uri("/api/v1/session")
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let reply = app
        .raw(
            req.body(Body::from(json!({ "api_key": key }).to_string()))
                .unwrap(),
        )
        .await;
    let session = reply
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.strip_prefix("tz_session="))
        .map(|c| Session {
            cookie: c.split(';').next().unwrap_or("").to_string(),
            csrf: reply.body["csrf_token"].as_str().unwrap_or("").to_string(),
        });
    (reply, session)
}

async fn with_cookie(
    app: &TestApp,
    s: &Session,
    method: &str,
    path: &str,
    body: Option<(&str, Value)>,
    csrf: Option<&str>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("cookie", format!("other=1; tz_session={}", s.cookie));
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    let req = match body {
        Some((content_type, b)) => req
            .header("content-type", content_type)
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    app.raw(req).await
}

#[tokio::test]
async fn a_session_cookie_is_the_same_principal_as_its_key() {
    let app = TestApp::new().await;
    let (reply, s) = sign_in(&app, &app.owner, &[]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let s = s.expect("a session cookie");
    let set = reply.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Strict") && set.contains("Path=/")
    );
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");
    assert_ne!(s.cookie, app.owner);
    assert!(
        !reply.body.to_string().contains(&app.owner),
        "the key is not echoed"
    );
    assert_eq!(reply.body["key"]["id"], 1);
    assert_eq!(reply.body["deployment_owner"], true);

    // Behind TLS the cookie is Secure.
    let (tls, _) = sign_in(&app, &app.owner, &[("x-forwarded-proto", "https")]).await;
    assert!(tls.headers["set-cookie"]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));

    // Reads work with the cookie; the caller is the key's account.
    let r = with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let me = with_cookie(&app, &s, "GET", "/api/v1/session", None, None).await;
    assert_eq!(me.body["csrf_token"], s.csrf.as_str());

    // A narrower key's session is refused what the key is refused.
    let (reader, _) = app.key_with(&app.owner, &["agents:read"]).await;
    let (_, rs) = sign_in(&app, &reader, &[]).await;
    let rs = rs.unwrap();
    let r = with_cookie(&app, &rs, "GET", "/api/v1/keys", None, None).await;
    assert_error(&r, 403, "missing_scope");
    let r = with_cookie(
        &app,
        &rs,
        "POST",
        "/api/v1/sdk/agents",
        Some((
            "application/json",
            json!({"name": "a", "entry_code": "return 1"}),
        )),
        Some(&rs.csrf),
    )
    .await;
    assert_error(&r, 403, "missing_scope");

    // Bad keys get no session.
    for bad in ["tzk_nope", "", "not a key"] {
        let (r, s) = sign_in(&app, bad, &[]).await;
        assert_error(&r, 401, "unauthorized");
        assert!(s.is_none());
    }
    // Another origin cannot sign a browser in.
    let (r, _) = sign_in(
        &app,
        &app.owner,
        &[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8420"),
        ],
    )
    .await;
    assert_error(&r, 403, "forbidden");
    // An unknown cookie is no session.
    let ghost = Session {
        cookie: "x".repeat(43),
        csrf: String::new(),
    };
    let r = with_cookie(&app, &ghost, "GET", "/api/v1/sdk/agents", None, None).await;
    assert_error(&r, 401, "unauthorized");
}

#[tokio::test]
async fn state_changing_cookie_requests_need_the_csrf_token_whatever_the_content_type() {
    let app = TestApp::new().await;
    let s = sign_in(&app, &app.owner, &[]).await.1.unwrap();
    let agent = json!({"name": "csrf", "entry_code": "return 1"});
    for content_type in [
        "text/plain",
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for token in [None, Some("forged"), Some("")] {
            let r = with_cookie(
                &app,
                &s,
                "POST",
                "/api/v1/sdk/agents",
                Some((content_type, agent.clone())),
                token,
            )
            .await;
            assert_error(&r, 403, "forbidden");
        }
    }
    let r = with_cookie(&app, &s, "DELETE", "/api/v1/keys/1", None, None).await;
    assert_error(&r, 403, "forbidden");
    let r = with_cookie(&app, &s, "DELETE", "/api/v1/session", None, None).await;
    assert_error(&r, 403, "forbidden");
    assert_eq!(
        app.call("GET", "/api/v1/sdk/agents", Some(&app.owner), None)
            .await
            .body["total"],
        0
    );
    // With the token it goes through.
    let r = with_cookie(
        &app,
        &s,
        "POST",
        "/api/v1/sdk/agents",
        Some(("application/json", agent)),
        Some(&s.csrf),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Bearer requests need no token: the cookie is what a CSRF rides on.
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&app.owner),
            Some(json!({"name": "b", "entry_code": "return 1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_session_ends_on_sign_out_and_when_its_key_is_revoked_or_narrowed() {
    let app = TestApp::new().await;
    // Sign-out.
    let s = sign_in(&app, &app.owner, &[]).await.1.unwrap();
    let r = with_cookie(&app, &s, "DELETE", "/api/v1/session", None, Some(&s.csrf)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_error(
        &with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await,
        401,
        "unauthorized",
    );

    // Revoked through the API.
    let (key, id) = app.key_with(&app.owner, &["agents:read", "keys"]).await;
    let s = sign_in(&app, &key, &[]).await.1.unwrap();
    assert_eq!(
        with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_error(
        &with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await,
        401,
        "unauthorized",
    );

    // Revoked behind this server's back (another replica, the CLI).
    let (key, id) = app.key_with(&app.owner, &["agents:read"]).await;
    let s = sign_in(&app, &key, &[]).await.1.unwrap();
    app.store
        .revoke_key(
            thetazero_core::model::AccountId::new(1),
            thetazero_core::model::KeyId::new(id),
        )
        .await
        .unwrap();
    assert_error(
        &with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await,
        401,
        "unauthorized",
    );

    // Reading a key leaves its sessions alone.
    let (key, id) = app
        .key_with(&app.owner, &["agents:read", "agents:write"])
        .await;
    let s = sign_in(&app, &key, &[]).await.1.unwrap();
    let r = app
        .call("GET", &format!("/api/v1/keys/{id}"), Some(&app.owner), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None)
            .await
            .status,
        StatusCode::OK
    );
    // Narrowed through the API.
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/keys/{id}"),
            Some(&app.owner),
            Some(json!({"scopes": ["agents:read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_error(
        &with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await,
        401,
        "unauthorized",
    );
    // A fresh sign-in gets the narrower authority.
    let s = sign_in(&app, &key, &[]).await.1.unwrap();
    assert_eq!(
        with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None)
            .await
            .status,
        StatusCode::OK
    );
    let r = with_cookie(
        &app,
        &s,
        "POST",
        "/api/v1/sdk/agents",
        Some((
            "application/json",
            json!({"name": "n", "entry_code": "return 1"}),
        )),
        Some(&s.csrf),
    )
    .await;
    assert_error(&r, 403, "missing_scope");

    // Narrowed behind this server's back: the key's scopes changed since sign-in.
    let (key, id) = app
        .key_with(&app.owner, &["agents:read", "agents:write"])
        .await;
    let (_, narrow) = app.key_with(&app.owner, &["agents:read"]).await;
    let s = sign_in(&app, &key, &[]).await.1.unwrap();
    assert_eq!(
        with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None)
            .await
            .status,
        StatusCode::OK
    );
    let sql = format!("UPDATE api_keys SET scopes = (SELECT scopes FROM api_keys WHERE id = {narrow}) WHERE id = {id}");
    app.tamper(&sql, &sql).await;
    assert_error(
        &with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await,
        401,
        "unauthorized",
    );
    // ... and it stays ended, even for what the narrower key may do.
    assert_error(
        &with_cookie(&app, &s, "GET", "/api/v1/sdk/agents", None, None).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn a_stream_opened_with_a_session_closes_when_its_key_is_revoked() {
    let app = TestApp::new().await;
    let (key, id) = app.key_with(&app.owner, &["audit:read"]).await;
    let s = sign_in(&app, &key, &[]).await.1.unwrap();
    let req = Request::builder()
        .uri("/api/v1/sdk/audit/stream")
        .header("cookie", format!("tz_session={}", s.cookie))
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    let text = String::from_utf8_lossy(first.data_ref().unwrap()).to_string();
    assert!(text.contains("event: connected"), "{text}");
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The body ends (a guard against hanging, not a timing assertion).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream closed with the session");
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_policy() {
    let app = TestApp::new().await;
    for path in [
        "/",
        "/dashboard/app.js",
        "/dashboard/verify.js",
        "/dashboard/style.css",
    ] {
        let r = app.call("GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert!(!csp.contains("unsafe"), "{path}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    let r = app
        .call("GET", "/dashboard/../Cargo.toml", None, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.call("GET", "/dashboard/missing.js", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The session routes are in the served OpenAPI document.
    let doc = app
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .body;
    for method in ["post", "get", "delete"] {
        assert!(
            doc["paths"]["/api/v1/session"][method].is_object(),
            "{method}"
        );
    }
}
