//! The last key that can manage keys is never revoked: an account always
//! keeps an owner key or a key with the `keys` scope.

mod common;

use common::{assert_error, TestApp};

async fn key_id(app: &TestApp, key: &str) -> i64 {
    let r = app.call("GET", "/api/v1/keys", Some(key), None).await;
    let prefix = &key[..12];
    r.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn the_last_key_that_can_manage_keys_is_not_revoked() {
    let app = TestApp::new().await;
    let owner_id = key_id(&app, &app.owner).await;
    // Alone, the owner key cannot revoke itself.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{owner_id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 409, "last_key_manager");
    // Keys that cannot manage keys do not count.
    let (reader, reader_id) = app.key_with(&app.owner, &["agents:read"]).await;
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{owner_id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 409, "last_key_manager");
    let r = app
        .call("GET", "/api/v1/keys", Some(&app.owner), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A key with the keys scope does: the owner key may go, and then that
    // key is the last one and stays.
    let (manager, manager_id) = app.key_with(&app.owner, &["keys", "audit:read"]).await;
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{owner_id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{owner_id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["key"]["revoked_at"].is_string());
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{manager_id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_error(&r, 409, "last_key_manager");
    // The refusal left the key working and recorded no revocation.
    let r = app.call("GET", "/api/v1/keys", Some(&manager), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit?actionTypes=key_revoked",
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1, "{}", r.body);
    // Other keys still go.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{reader_id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .call("GET", "/api/v1/sdk/agents", Some(&reader), None)
        .await;
    assert_error(&r, 401, "unauthorized");
}

#[tokio::test]
async fn each_account_keeps_its_own_last_key() {
    let app = TestApp::new().await;
    let theirs = app.other_account().await;
    let their_owner = key_id(&app, &theirs).await;
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{their_owner}"),
            Some(&theirs),
            None,
        )
        .await;
    assert_error(&r, 409, "last_key_manager");
    // Another account's managers do not count, and its key is not found here.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{their_owner}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
}

#[tokio::test]
async fn narrowing_the_last_key_that_can_manage_keys_is_refused() {
    let app = TestApp::new().await;
    let owner_id = key_id(&app, &app.owner).await;
    let (manager, manager_id) = app.key_with(&app.owner, &["keys", "audit:read"]).await;
    let scopes = |id: i64, key: &str, scopes: &[&str]| {
        let (path, key) = (format!("/api/v1/keys/{id}"), key.to_string());
        let body = serde_json::json!({ "scopes": scopes });
        let app = &app;
        async move { app.call("PATCH", &path, Some(&key), Some(body)).await }
    };
    // With the owner key alive, the manager may lose keys and get it back.
    let r = scopes(manager_id, &app.owner, &["audit:read"]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["key"]["scopes"], serde_json::json!(["audit:read"]));
    let r = scopes(manager_id, &app.owner, &["keys", "audit:read"]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // An owner key's scopes do not change; a key grants only what it holds.
    let r = scopes(owner_id, &app.owner, &["agents:read"]).await;
    assert_error(&r, 409, "conflict");
    let r = scopes(manager_id, &manager, &["keys", "agents:write"]).await;
    assert_error(&r, 403, "missing_scope");
    let r = scopes(manager_id, &app.owner, &["nope"]).await;
    assert_error(&r, 400, "invalid_request");
    // Once the owner key is gone, the manager is the last one.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/keys/{owner_id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = scopes(manager_id, &manager, &["audit:read"]).await;
    assert_error(&r, 409, "last_key_manager");
    let r = app.call("GET", "/api/v1/keys", Some(&manager), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Each change that landed is in the log.
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit?actionTypes=key_scopes_changed",
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 2, "{}", r.body);
}
