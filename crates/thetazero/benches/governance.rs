//! Governance under load, against the real `thetazero serve` binary:
//!
//! - kill-to-stopped latency for a spinning agent: from sending
//!   `POST /api/sdk/agents/:id/kill` until the killed execution's own HTTP
//!   response arrives, on one server (SQLite) and across two replicas on one
//!   PostgreSQL database (started on one, killed through the other);
//! - live-stream delivery latency with 1,000 subscribers: from sending an
//!   execution until each subscriber has its `execution_completed` event,
//!   against the same with one subscriber;
//! - the server's resident memory held by 10,000 idle streams.
//!
//! Baselines in the same run: `GET /healthz` round trips, one subscriber, the
//! server's memory before the streams opened.
//!
//! Run: `cargo bench -p thetazero --bench governance`
//! (PostgreSQL at `THETAZERO_TEST_DATABASE_URL`, default the local server)

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, pair_with, register, Server, Sse, TestDb};
use serde_json::json;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (pct(&v, 0.5), pct(&v, 0.99))
}

async fn healthz_ms(url: &str, n: usize) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out
}

/// A named agent; long-running ones get two minutes.
async fn agent(url: &str, key: &str, name: &str, code: &str) -> i64 {
    register(
        url,
        key,
        json!({"name": name, "entry_code": code, "config": {"cpu_time_limit_ms": 120000}}),
    )
    .await
}

/// Starts a spinning execution on `run_on`, kills it through `kill_via`, and
/// answers (kill-to-stopped ms, the server's own kill `elapsed_ms`).
async fn kill_once(run_on: &str, kill_via: &str, key: &str, id: i64) -> (f64, f64) {
    let exec = {
        let (url, key) = (run_on.to_string(), key.to_string());
        tokio::spawn(async move {
            call(
                &url,
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                &key,
                None,
            )
            .await
        })
    };
    loop {
        let (_, list) = call(
            run_on,
            "GET",
            &format!("/api/v1/sdk/agents/{id}/executions?status=running"),
            key,
            None,
        )
        .await;
        if list["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = Instant::now();
    let (status, kill) = call(
        kill_via,
        "POST",
        &format!("/api/sdk/agents/{id}/kill"),
        key,
        Some(json!({"reason": "benchmark"})),
    )
    .await;
    assert_eq!(status, 200, "{kill}");
    let (_, run) = exec.await.unwrap();
    let stopped = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(run["status"], "killed", "{run}");
    let (status, _) = call(
        kill_via,
        "PATCH",
        &format!("/api/v1/sdk/agents/{id}"),
        key,
        Some(json!({"status": "ready"})),
    )
    .await;
    assert_eq!(status, 200);
    (stopped, kill["elapsed_ms"].as_f64().unwrap_or(f64::NAN))
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `rounds` executions, one at a time, watched by `subscribers` streams;
/// answers every (subscriber, round) delivery latency in ms.
async fn stream_latency(
    url: &str,
    key: &str,
    id: i64,
    subscribers: usize,
    rounds: usize,
) -> Vec<f64> {
    let arrivals: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(Vec::new()));
    let stream_url = format!("{url}/api/sdk/audit/stream?agentId={id}");
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    for _ in 0..subscribers {
        let (url, key, arrivals, ready) = (
            stream_url.clone(),
            key.to_string(),
            arrivals.clone(),
            ready_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (_, sse) = Sse::open(&url, Some(&key), None).await;
            let mut sse = sse.expect("stream opens");
            assert_eq!(sse.next().await.unwrap().event, "connected");
            ready.send(()).await.unwrap();
            let mut mine = Vec::with_capacity(rounds);
            while mine.len() < rounds {
                let frame = sse.next().await.expect("stream ended early");
                if frame.event == "audit" && frame.data["action_type"] == "execution_completed" {
                    mine.push(Instant::now());
                }
            }
            arrivals.lock().unwrap().push(mine);
        }));
    }
    for _ in 0..subscribers {
        ready_rx.recv().await.unwrap();
    }
    let mut sent = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        sent.push(Instant::now());
        let (status, _) = call(
            url,
            "POST",
            &format!("/api/v1/sdk/agents/{id}/execute"),
            key,
            None,
        )
        .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let arrivals = arrivals.lock().unwrap();
    arrivals
        .iter()
        .flat_map(|mine| {
            mine.iter()
                .zip(&sent)
                .map(|(got, s)| got.duration_since(*s).as_secs_f64() * 1e3)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        "[quotas]\nconcurrent_runs_per_account = 0\n\n[rate_limits]\nexecutions_per_key_per_minute = 0\nexecutions_per_account_per_minute = 0\ncode_updates_per_agent_per_hour = 0\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let server = Server::start(&dir.path().join("one"), &["--config", &config_arg]);
    let key = server.owner_key().unwrap();
    let url = server.url.clone();
    let spinner = agent(&url, &key, "spinner", "while (true) {}").await;
    let quick = agent(
        &url,
        &key,
        "quick",
        "await thetazero.log('hi'); return {ok: true};",
    )
    .await;

    println!("governance benchmarks (2-core machine; server, database and clients share it)");
    let (base50, base99) = summary(healthz_ms(&url, 500).await);
    println!(
        "GET /healthz round trip (baseline)             p50 {base50:>7.2} ms  p99 {base99:>7.2} ms"
    );

    // Kill latency, one server.
    kill_once(&url, &url, &key, spinner).await;
    let mut stopped = Vec::new();
    let mut server_ms = Vec::new();
    for _ in 0..50 {
        let (s, e) = kill_once(&url, &url, &key, spinner).await;
        stopped.push(s);
        server_ms.push(e);
    }
    let (k50, k99) = summary(stopped);
    let (e50, e99) = summary(server_ms);
    println!("kill to stopped, one server (SQLite)           p50 {k50:>7.2} ms  p99 {k99:>7.2} ms  ({:.1}x / {:.1}x baseline)", k50 / base50, k99 / base99);
    println!("  the server's confirmed kill (elapsed_ms)     p50 {e50:>7.2} ms  p99 {e99:>7.2} ms");

    // Stream delivery: one subscriber, then 1,000.
    let one = stream_latency(&url, &key, quick, 1, 20).await;
    let (s1_50, s1_99) = summary(one);
    println!(
        "stream delivery, 1 subscriber (baseline)       p50 {s1_50:>7.2} ms  p99 {s1_99:>7.2} ms"
    );
    let many = stream_latency(&url, &key, quick, 1000, 20).await;
    let deliveries = many.len();
    let (s50, s99) = summary(many);
    println!("stream delivery, 1,000 subscribers             p50 {s50:>7.2} ms  p99 {s99:>7.2} ms  ({deliveries} deliveries; {:.1}x / {:.1}x one subscriber)", s50 / s1_50, s99 / s1_99);

    // Memory of 10,000 idle streams.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.child.id();
    let before = rss_kb(pid);
    let stream_url = format!("{url}/api/sdk/audit/stream");
    let mut held = Vec::with_capacity(10_000);
    for chunk in 0..20 {
        let opening: Vec<_> = (0..500)
            .map(|_| {
                let (u, k) = (stream_url.clone(), key.clone());
                tokio::spawn(async move {
                    let (status, sse) = Sse::open(&u, Some(&k), None).await;
                    assert_eq!(status, 200, "stream {chunk}");
                    let mut sse = sse.unwrap();
                    assert_eq!(sse.next().await.unwrap().event, "connected");
                    sse
                })
            })
            .collect();
        for o in opening {
            held.push(o.await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kb(pid);
    let (_, status) = call(&url, "GET", "/readyz", &key, None).await;
    println!(
        "server memory: {:.1} MB before, {:.1} MB with {} idle streams: {:.1} MB for them, {:.1} KB each (server still ready: {})",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        held.len(),
        after.saturating_sub(before) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / held.len() as f64,
        status["status"]
    );
    drop(held);
    drop(server);

    // Kill across two replicas on PostgreSQL: started on A, killed through B.
    let db = TestDb::create().await;
    let p = pair_with(&db, &["--config", &config_arg]).await;
    let spinner = agent(&p.a.url, &p.owner, "spinner", "while (true) {}").await;
    kill_once(&p.a.url, &p.b.url, &p.owner, spinner).await;
    let mut across = Vec::new();
    for _ in 0..30 {
        across.push(kill_once(&p.a.url, &p.b.url, &p.owner, spinner).await.0);
    }
    let (a50, a99) = summary(across);
    let mut same = Vec::new();
    for _ in 0..30 {
        same.push(kill_once(&p.a.url, &p.a.url, &p.owner, spinner).await.0);
    }
    let (m50, m99) = summary(same);
    println!("kill to stopped on PostgreSQL, same replica    p50 {m50:>7.2} ms  p99 {m99:>7.2} ms");
    println!("kill to stopped across two replicas            p50 {a50:>7.2} ms  p99 {a99:>7.2} ms  ({:.1}x / {:.1}x same replica)", a50 / m50, a99 / m99);
}
