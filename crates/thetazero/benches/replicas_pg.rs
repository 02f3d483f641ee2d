//! One replica against two, side by side in one run: real `thetazero serve`
//! processes on one PostgreSQL database (a database of its own, dropped at
//! the end), driven over HTTP with keep-alive connections. Every response is
//! sent after its execution record and audit events are committed.
//!
//! - executions/s of a trivial agent, and the audit events/s they append;
//! - audit events/s of an agent that logs 20 lines per run (each log is a
//!   counted host call: a decision and an outcome in the log), which is
//!   mostly audit appends.
//!
//! The one-replica figure is the baseline; the ratio is two over one. Both
//! replicas, PostgreSQL and the load generator share this machine's cores.
//!
//! Run: `cargo bench -p thetazero --bench replicas_pg`
//! (PostgreSQL at `THETAZERO_TEST_DATABASE_URL`, default the local server)

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{call, pair_with, register, TestDb};
use serde_json::json;

const TRIVIAL: &str = "await thetazero.log('hi'); return {ok: true}";
const LOGGER: &str =
    "for (let i = 0; i < 20; i++) await thetazero.log('line ' + i); return {ok: true}";

struct Run {
    execs_per_sec: f64,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn leaves(url: &str, key: &str) -> u64 {
    let (_, page) = call(url, "GET", "/api/v1/sdk/audit?limit=1", key, None).await;
    page["total"].as_u64().expect("total")
}

/// `total` executions of agent `id` from `concurrency` connections spread
/// evenly over `urls`.
async fn drive(urls: &[String], key: &str, id: i64, concurrency: usize, total: usize) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let before = leaves(&urls[0], key).await;
    let started = Instant::now();
    let per_worker = total / concurrency;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let url = Arc::new(format!(
            "{}/api/v1/sdk/agents/{id}/execute",
            urls[w % urls.len()]
        ));
        let key = key.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let t = Instant::now();
                let resp = client
                    .post(url.as_str())
                    .bearer_auth(&key)
                    .json(&json!({"input": {}}))
                    .send()
                    .await
                    .expect("request");
                assert!(resp.status().is_success(), "status {}", resp.status());
                let body: serde_json::Value = resp.json().await.expect("body");
                assert_eq!(body["status"], "completed", "{body}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let appended = leaves(&urls[0], key).await - before;
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Run {
        execs_per_sec: all.len() as f64 / elapsed,
        events_per_sec: appended as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

async fn agent(url: &str, key: &str, name: &str, code: &str) -> i64 {
    register(url, key, json!({"name": name, "entry_code": code})).await
}

fn row(label: &str, r: &Run) {
    println!(
        "{label:<26} {:>10.0} {:>12.0} {:>9.1} {:>9.1}",
        r.execs_per_sec, r.events_per_sec, r.p50_ms, r.p99_ms
    );
}

#[tokio::main]
async fn main() {
    let db = TestDb::create().await;
    // One key drives every execution: its rate limit is off for the run.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[quotas]\nconcurrent_runs_per_account = 0\n\n[rate_limits]\nexecutions_per_key_per_minute = 0\nexecutions_per_account_per_minute = 0\n",
    )
    .unwrap();
    let p = pair_with(&db, &["--config", config.path().to_str().unwrap()]).await;
    let one = vec![p.a.url.clone()];
    let two = vec![p.a.url.clone(), p.b.url.clone()];
    let trivial = agent(&p.a.url, &p.owner, "trivial", TRIVIAL).await;
    let logger = agent(&p.a.url, &p.owner, "logger", LOGGER).await;

    // Warm both replicas' connections, caches and sandbox pools.
    drive(&two, &p.owner, trivial, 16, 1_600).await;

    println!("thetazero on PostgreSQL, one replica vs two on one database (this machine's 2 cores shared by all)");
    println!(
        "{:<26} {:>10} {:>12} {:>9} {:>9}",
        "", "execs/s", "audit ev/s", "p50 ms", "p99 ms"
    );
    for (name, id, concurrency, total) in [
        ("trivial agent", trivial, 64usize, 12_800usize),
        ("20 logs per run", logger, 64, 3_200),
    ] {
        let base = drive(&one, &p.owner, id, concurrency, total).await;
        let pair_run = drive(&two, &p.owner, id, concurrency, total).await;
        row(&format!("{name}, 1 replica"), &base);
        row(&format!("{name}, 2 replicas"), &pair_run);
        println!(
            "{:<26} {:>10.2} {:>12.2}",
            "  2 replicas / 1",
            pair_run.execs_per_sec / base.execs_per_sec,
            pair_run.events_per_sec / base.events_per_sec
        );
    }
    // Everything acknowledged is in the one log, contiguous and verifiable.
    let bundle = reqwest::Client::new()
        .get(format!("{}/api/v1/sdk/audit/export?format=bundle", p.b.url))
        .bearer_auth(&p.owner)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let report = thetazero_audit::verify_bundle(std::io::Cursor::new(bundle.to_vec()), &p.key);
    println!(
        "audit log after the run: {} events, offline verification {}",
        leaves(&p.b.url, &p.owner).await,
        if report.is_valid() {
            "passed"
        } else {
            "FAILED"
        }
    );
    assert!(report.is_valid(), "{:?}", report.findings);
    drop(p);
}
