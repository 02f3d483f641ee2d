//! The live audit stream with a real SSE client against the real server:
//! events in order with `id:` = leaf index, filters, resume after a dropped
//! connection with no gap and no duplicate, `since` replay, keepalive and
//! timeout, and stream tokens for browsers.

mod common;

use common::{call, Server, Sse};
use serde_json::json;

async fn register(url: &str, key: &str, name: &str) -> i64 {
    let (status, body) = call(
        url,
        "POST",
        "/api/v1/sdk/agents",
        key,
        Some(json!({"name": name, "entry_code": "return 1;"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["agent"]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_in_order_filtered_and_resume_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let owner = server.owner_key().unwrap();
    let url = format!("{}/api/sdk/audit/stream", server.url);
    let (_, sse) = Sse::open(&url, Some(&owner), None).await;
    let mut sse = sse.unwrap();
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let connected = sse.next().await.unwrap();
    assert_eq!(connected.event, "connected");
    assert_eq!(connected.data["position"], 0);
    let first = register(&server.url, &owner, "a1").await;
    register(&server.url, &owner, "a2").await;
    let got = sse.audits(2).await;
    assert_eq!(
        got.iter().map(|f| f.id.unwrap()).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(got[0].data["action_type"], "agent_created");
    assert_eq!(got[0].data["agent_id"], first);
    assert!(got[0].data["action_category"].is_string() && got[0].data["description"].is_string());
    assert_eq!(got[0].data["is_violation"], false);
    assert!(got[0].data["leaf_hash"].is_string());

    // Drop the connection; more happens meanwhile; resume from the last id.
    drop(sse);
    for i in 3..8 {
        register(&server.url, &owner, &format!("a{i}")).await;
    }
    let (_, sse) = Sse::open(&url, Some(&owner), Some(1)).await;
    let mut sse = sse.unwrap();
    assert_eq!(sse.next().await.unwrap().data["position"], 2);
    register(&server.url, &owner, "a8").await;
    let got = sse.audits(6).await;
    assert_eq!(
        got.iter().map(|f| f.id.unwrap()).collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6, 7],
        "no gap, no duplicate"
    );

    // Filtered by agent: only that agent's events, replayed with `after`.
    let (_, sse) = Sse::open(
        &format!("{url}?agentId={first}&after=0"),
        Some(&owner),
        None,
    )
    .await;
    let mut sse = sse.unwrap();
    sse.next().await.unwrap();
    call(
        &server.url,
        "PATCH",
        &format!("/api/v1/sdk/agents/{first}"),
        &owner,
        Some(json!({"description": "x"})),
    )
    .await;
    register(&server.url, &owner, "noise").await;
    call(
        &server.url,
        "DELETE",
        &format!("/api/v1/sdk/agents/{first}"),
        &owner,
        None,
    )
    .await;
    let got = sse.audits(2).await;
    let types: Vec<&str> = got
        .iter()
        .map(|f| f.data["action_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["agent_updated", "agent_deleted"]);
    assert!(got.iter().all(|f| f.data["agent_id"] == first));

    // `since` replays from a time.
    let (_, sse) = Sse::open(&format!("{url}?since=2000-01-01"), Some(&owner), None).await;
    let mut sse = sse.unwrap();
    assert_eq!(sse.next().await.unwrap().data["position"], 0);
    assert_eq!(
        sse.audits(3)
            .await
            .iter()
            .map(|f| f.id.unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_checkpoint_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "stream_keepalive_ms = 100\nstream_max_duration_ms = 1500\ncheckpoint_interval_ms = 100\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("d"),
        &["--config", config.to_str().unwrap()],
    );
    let owner = server.owner_key().unwrap();
    register(&server.url, &owner, "x").await;
    let (_, sse) = Sse::open(
        &format!("{}/api/v1/sdk/audit/stream", server.url),
        Some(&owner),
        None,
    )
    .await;
    let mut sse = sse.unwrap();
    let mut seen = Vec::new();
    while let Some(f) = sse.next().await {
        let end = f.event == "timeout";
        seen.push(f);
        if end {
            break;
        }
    }
    assert!(
        seen.iter().any(|f| f.comment && f.event == "keepalive"),
        "a keepalive comment line"
    );
    assert!(
        seen.iter().any(|f| !f.comment && f.event == "keepalive"),
        "a keepalive event"
    );
    let checkpoint = seen
        .iter()
        .find(|f| f.event == "checkpoint")
        .expect("a checkpoint event");
    assert!(checkpoint.data["note"]
        .as_str()
        .unwrap()
        .contains("/audit/1\n"));
    let timeout = seen.last().unwrap();
    assert_eq!(timeout.event, "timeout");
    assert_eq!(timeout.data["reason"], "limit");
    assert_eq!(timeout.data["resume_after"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_tokens_open_one_account_without_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let owner = server.owner_key().unwrap();
    let (status, token) = call(
        &server.url,
        "POST",
        "/api/v1/sdk/audit/stream-token",
        &owner,
        None,
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let stream_url = format!("{}{}", server.url, token["stream_url"].as_str().unwrap());
    let (status, sse) = Sse::open(&stream_url, None, None).await;
    assert_eq!(status, 200);
    let mut sse = sse.unwrap();
    assert_eq!(sse.next().await.unwrap().event, "connected");
    register(&server.url, &owner, "seen").await;
    assert_eq!(sse.audits(1).await[0].data["action_type"], "agent_created");
    // Without a key or token, or with a forged one: 401.
    let plain = format!("{}/api/sdk/audit/stream", server.url);
    assert_eq!(Sse::open(&plain, None, None).await.0, 401);
    assert_eq!(
        Sse::open(&format!("{plain}?token=bm90LmEudG9rZW4.AAAA"), None, None)
            .await
            .0,
        401
    );
    // A key without audit:read cannot stream.
    let (_, key) = call(
        &server.url,
        "POST",
        "/api/v1/keys",
        &owner,
        Some(json!({"name": "r", "scopes": ["agents:read"]})),
    )
    .await;
    assert_eq!(
        Sse::open(&plain, Some(key["secret"].as_str().unwrap()), None)
            .await
            .0,
        403
    );
    // Another account's stream shows only its own events.
    let (_, acct) = call(
        &server.url,
        "POST",
        "/api/v1/accounts",
        &owner,
        Some(json!({"name": "b"})),
    )
    .await;
    let theirs = acct["secret"].as_str().unwrap().to_string();
    let (_, sse) = Sse::open(&format!("{plain}?after=0"), Some(&theirs), None).await;
    let mut sse = sse.unwrap();
    sse.next().await.unwrap();
    register(&server.url, &theirs, "mine").await;
    let got = sse.audits(1).await;
    assert_eq!(got[0].data["account_id"], acct["account"]["id"]);
}

/// Revoking a key ends the streams it opened, directly or through a stream
/// token it minted, and its tokens open nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_key_ends_its_streams_and_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let owner = server.owner_key().unwrap();
    let (_, reader) = call(
        &server.url,
        "POST",
        "/api/v1/keys",
        &owner,
        Some(json!({"name": "reader", "scopes": ["audit:read"]})),
    )
    .await;
    let (reader_id, secret) = (
        reader["key"]["id"].as_i64().unwrap(),
        reader["secret"].as_str().unwrap().to_string(),
    );
    let plain = format!("{}/api/sdk/audit/stream", server.url);
    let (status, sse) = Sse::open(&plain, Some(&secret), None).await;
    assert_eq!(status, 200);
    let mut direct = sse.unwrap();
    assert_eq!(direct.next().await.unwrap().event, "connected");
    let (_, token) = call(
        &server.url,
        "POST",
        "/api/v1/sdk/audit/stream-token",
        &secret,
        None,
    )
    .await;
    let token_url = format!("{}{}", server.url, token["stream_url"].as_str().unwrap());
    let (status, sse) = Sse::open(&token_url, None, None).await;
    assert_eq!(status, 200);
    let mut by_token = sse.unwrap();
    assert_eq!(by_token.next().await.unwrap().event, "connected");

    let (status, body) = call(
        &server.url,
        "DELETE",
        &format!("/api/v1/keys/{reader_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for sse in [&mut direct, &mut by_token] {
        // The revocation's own audit event may come first; then the end.
        let end = loop {
            let frame = sse.next().await.expect("the stream ends with a frame");
            if !matches!(frame.event.as_str(), "audit" | "keepalive" | "checkpoint")
                && !frame.comment
            {
                break frame;
            }
        };
        assert_eq!(end.event, "timeout");
        assert_eq!(end.data["reason"], "key_revoked");
        assert!(sse.next().await.is_none(), "the stream is closed");
    }
    assert_eq!(Sse::open(&token_url, None, None).await.0, 401);
    assert_eq!(Sse::open(&plain, Some(&secret), None).await.0, 401);
}
