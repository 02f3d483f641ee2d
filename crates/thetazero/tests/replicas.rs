//! Several real `thetazero serve` replicas on one PostgreSQL database: an
//! agent registered on one runs on the other, concurrent executions on both
//! make one audit log with contiguous indices that verifies offline, and a
//! replica killed mid-write loses nothing acknowledged.
//!
//! Uses `THETAZERO_TEST_DATABASE_URL` (default the local server); each test
//! creates its own database and drops it.

mod common;

use common::{call, pair, pair_with, TestDb};
use serde_json::json;

async fn verify_log(url: &str, owner: &str, key: &thetazero_audit::VerifierKey) -> u64 {
    let bundle = reqwest::Client::new()
        .get(format!("{url}/api/v1/sdk/audit/export?format=bundle"))
        .bearer_auth(owner)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let report = thetazero_audit::verify_bundle(std::io::Cursor::new(bundle.to_vec()), key);
    assert!(report.is_valid(), "{:?}", report.findings);
    let (_, events) = call(url, "GET", "/api/v1/sdk/audit?limit=1000", owner, None).await;
    let indices: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["leaf_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indices,
        (0..indices.len() as u64).collect::<Vec<_>>(),
        "contiguous from 0"
    );
    events["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_agents_executions_and_one_verifiable_log() {
    let db = TestDb::create().await;
    let p = pair(&db).await;
    let (status, agent) = call(
        &p.a.url,
        "POST",
        "/api/v1/sdk/agents",
        &p.owner,
        Some(json!({"name": "shared", "entry_code": "await thetazero.log('hi'); return {n: input.n};"})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let id = agent["agent"]["id"].as_i64().unwrap();
    // Registered on A, executed on B.
    let (status, run) = call(
        &p.b.url,
        "POST",
        &format!("/api/v1/sdk/agents/{id}/execute"),
        &p.owner,
        Some(json!({"input": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["output"], json!({"n": 1}));
    // Concurrent executions on both replicas.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 {
            p.a.url.clone()
        } else {
            p.b.url.clone()
        };
        let owner = p.owner.clone();
        tasks.push(tokio::spawn(async move {
            let (status, run) = call(
                &url,
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                &owner,
                Some(json!({"input": {"n": i}})),
            )
            .await;
            assert_eq!(status, 200, "{run}");
            assert_eq!(run["status"], "completed");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, list) = call(
        &p.a.url,
        "GET",
        &format!("/api/v1/sdk/agents/{id}/executions?limit=1"),
        &p.owner,
        None,
    )
    .await;
    assert_eq!(list["total"], 41);
    // One log, verifiable from either replica.
    let size_a = verify_log(&p.a.url, &p.owner, &p.key).await;
    let size_b = verify_log(&p.b.url, &p.owner, &p.key).await;
    assert_eq!(size_a, size_b);
    assert_eq!(
        size_a,
        1 + 41 * 2,
        "agent_created plus started and completed per execution"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_write_loses_nothing_acknowledged() {
    let db = TestDb::create().await;
    let mut p = pair(&db).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..6 {
        let url = if w % 2 == 0 {
            p.a.url.clone()
        } else {
            p.b.url.clone()
        };
        let (owner, acked) = (p.owner.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..400 {
                let name = format!("w{w}-{i}");
                let resp = http
                    .post(format!("{url}/api/v1/sdk/agents"))
                    .bearer_auth(&owner)
                    .json(&json!({"name": name, "entry_code": "return 1;"}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 201 => acked.lock().unwrap().push(name),
                    _ => break,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 150 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Replica A dies without warning; B keeps serving.
    p.a.child.kill().unwrap();
    p.a.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let (_, agents) = call(
        &p.b.url,
        "GET",
        "/api/v1/sdk/agents?limit=1",
        &p.owner,
        None,
    )
    .await;
    let total = agents["total"].as_u64().unwrap();
    assert!(total >= acked.len() as u64);
    let mut names = std::collections::HashSet::new();
    for page in 1.. {
        let (_, body) = call(
            &p.b.url,
            "GET",
            &format!("/api/v1/sdk/agents?limit=100&page={page}"),
            &p.owner,
            None,
        )
        .await;
        let items = body["agents"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        names.extend(
            items
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
    }
    for name in &acked {
        assert!(names.contains(name), "acknowledged agent {name} was lost");
    }
    let size = verify_log(&p.b.url, &p.owner, &p.key).await;
    assert!(size >= total, "every stored agent has its event");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_on_one_replica_stops_the_execution_running_on_the_other() {
    let db = TestDb::create().await;
    let p = pair(&db).await;
    let (_, agent) = call(
        &p.a.url,
        "POST",
        "/api/v1/sdk/agents",
        &p.owner,
        Some(json!({"name": "spin", "entry_code": "while (true) {}", "config": {"cpu_time_limit_ms": 120000}})),
    )
    .await;
    let id = agent["agent"]["id"].as_i64().unwrap();
    let (url_b, owner) = (p.b.url.clone(), p.owner.clone());
    let running = tokio::spawn(async move {
        call(
            &url_b,
            "POST",
            &format!("/api/v1/sdk/agents/{id}/execute"),
            &owner,
            Some(json!({})),
        )
        .await
    });
    // Wait until it runs on B.
    for _ in 0..2000 {
        let (_, list) = call(
            &p.a.url,
            "GET",
            &format!("/api/v1/sdk/agents/{id}/executions?status=running"),
            &p.owner,
            None,
        )
        .await;
        if list["total"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let (status, kill) = call(
        &p.a.url,
        "POST",
        &format!("/api/sdk/agents/{id}/kill"),
        &p.owner,
        Some(json!({"reason": "cross-replica drill"})),
    )
    .await;
    assert_eq!(status, 200, "{kill}");
    let (status, ended) = running.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(ended["status"], "killed", "{ended}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // And B refuses new executions of it.
    let (status, refused) = call(
        &p.b.url,
        "POST",
        &format!("/api/v1/sdk/agents/{id}/execute"),
        &p.owner,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("agent_killed"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_of_one_replica_carries_events_made_on_the_other() {
    let db = TestDb::create().await;
    let p = pair(&db).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/sdk/audit/stream", p.b.url))
        .bearer_auth(&p.owner)
        .send()
        .await
        .unwrap();
    let mut resp = resp;
    let mut text = String::new();
    // Wait for `connected`, then act on the other replica.
    while !text.contains("event: connected") {
        text.push_str(std::str::from_utf8(&resp.chunk().await.unwrap().unwrap()).unwrap());
    }
    call(
        &p.a.url,
        "POST",
        "/api/v1/sdk/agents",
        &p.owner,
        Some(json!({"name": "from-a", "entry_code": "return 1;"})),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text.contains("event: audit") {
        assert!(
            std::time::Instant::now() < deadline,
            "no event arrived: {text}"
        );
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("\"action_type\":\"agent_created\""), "{text}");
    assert!(text.contains("id: 0\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_count_across_replicas() {
    let db = TestDb::create().await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[rate_limits]\nexecutions_per_key_per_minute = 4\n",
    )
    .unwrap();
    let p = pair_with(&db, &["--config", config.path().to_str().unwrap()]).await;
    let (_, agent) = call(
        &p.a.url,
        "POST",
        "/api/v1/sdk/agents",
        &p.owner,
        Some(json!({"name": "limited", "entry_code": "return 1;"})),
    )
    .await;
    let execute = format!("/api/v1/sdk/agents/{}/execute", agent["agent"]["id"]);
    // Two on each replica use up the key's four; the fifth is refused
    // wherever it lands.
    for url in [&p.a.url, &p.b.url, &p.a.url, &p.b.url] {
        let (status, body) = call(url, "POST", &execute, &p.owner, None).await;
        assert_eq!(status, 200, "{body}");
    }
    for url in [&p.a.url, &p.b.url] {
        let (status, body) = call(url, "POST", &execute, &p.owner, None).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    let (_, events) = call(
        &p.b.url,
        "GET",
        "/api/v1/sdk/audit?actionTypes=rate_limit_hit",
        &p.owner,
        None,
    )
    .await;
    assert_eq!(events["total"], 1, "one event for the counter: {events}");
}
