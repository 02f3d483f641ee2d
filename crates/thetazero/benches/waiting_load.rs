//! Runs that wait: thousands of executions suspended at once on a model
//! provider, against the real `thetazero serve` binary with its default
//! engine (confined workers). The provider is `StandInProvider`, a local test
//! double of a remote OpenAI-compatible API that speaks HTTP/2 and answers
//! each chat completion after a fixed delay. While every run is suspended,
//! another account's trivial runs are timed, beside the same figures with no
//! waiting load, measured in the same run.
//!
//! Run: `cargo bench -p thetazero --bench waiting_load`
//! Environment: BENCH_WAITING (10000), BENCH_DELAY_MS (30000),
//! BENCH_ACCOUNTS (1: all waiting runs in one account; 1000 spreads them).
//! It raises only rate limits and per-account quotas, and prints what it set.

#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{post, pss_kib, tree, Server};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::json;

const WAITER: &str =
    "const r = await thetazero.inference({prompt: 'Summarise the ticket.'}); return {answer: r.content};";
const TRIVIAL: &str = "return 1";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A stand-in for a remote model provider (test double): HTTP/2 cleartext,
/// every `POST .../chat/completions` answered after `delay`.
async fn stand_in_provider(delay: Duration, seen: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            seen.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            let body = json!({
                                "model": "stand-in",
                                "choices": [{"message": {"role": "assistant", "content": "The customer reports a duplicate charge on the March invoice; a refund of 42.00 EUR was issued."}, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 5, "completion_tokens": 3},
                            });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .max_concurrent_streams(1_000_000)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    format!("http://{addr}/v1")
}

/// The innermost error of a chain (for a transport error: the socket's, or
/// hyper's "connection closed before message completed").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `n` sequential trivial runs; (p50, p99) in ms.
async fn trivial_latency(client: &reqwest::Client, url: &str, key: &str, n: usize) -> (f64, f64) {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = post(client, url, key, json!({"input": {}})).await;
        assert_eq!(r["status"], "completed", "{r}");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat[n / 2], lat[(n * 99 / 100).min(n - 1)])
}

#[tokio::main]
async fn main() {
    let waiting = env_or("BENCH_WAITING", 10_000);
    let delay = Duration::from_millis(env_or("BENCH_DELAY_MS", 30_000) as u64);
    let accounts = env_or("BENCH_ACCOUNTS", 1).clamp(1, waiting);

    let seen = Arc::new(AtomicUsize::new(0));
    let provider = stand_in_provider(delay, seen.clone()).await;
    let config = format!(
        "sandbox_max_runs_per_account = {}\n\n\
         [quotas]\nconcurrent_runs_per_account = 0\n\n\
         [rate_limits]\nexecutions_per_key_per_minute = 0\nexecutions_per_account_per_minute = 0\n\n\
         [inference]\nbase_url = \"{provider}\"\nmodel = \"stand-in\"\nhttp2 = true\ntimeout_ms = {}\n",
        waiting.max(2_000),
        delay.as_millis() as u64 + 60_000
    );
    println!(
        "config set by the bench (the rate limits and per-account quotas off, and the provider):\n{config}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, &config).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config_path.to_str().unwrap()],
    );
    let owner = server
        .owner_key()
        .expect("the owner key is printed on first start");
    let pid = server.child.id();
    // No TCP keepalive and no TCP_USER_TIMEOUT on the clients' connections
    // (reqwest's defaults are a probe after 15 s idle, then every 15 s, and a
    // 30 s user timeout): with them, a connection whose one probe goes
    // unanswered is ended by the client's kernel 30 s after its request was
    // acknowledged, with ETIMEDOUT. 10,000 connections opened within seconds
    // send their probes together, about 1,000 per timer tick, which overflows
    // the loopback's per-CPU backlog (net.core.netdev_max_backlog, 1000), so a
    // run waiting 30 s lost its connection by chance. The request's own
    // timeout bounds every connection.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_keepalive(None)
        .tcp_user_timeout(None)
        .timeout(delay + Duration::from_secs(120))
        .build()
        .unwrap();
    let agents_url = format!("{}/api/v1/sdk/agents", server.url);

    // The trivial runs' account, and the waiting runs' accounts.
    let make_account = |name: String| {
        let client = client.clone();
        let url = format!("{}/api/v1/accounts", server.url);
        let key = owner.clone();
        async move {
            let r = post(&client, &url, &key, json!({"name": name})).await;
            r["secret"].as_str().expect("account key").to_string()
        }
    };
    let other = make_account("trivial".into()).await;
    let r = post(
        &client,
        &agents_url,
        &other,
        json!({"name": "trivial", "entry_code": TRIVIAL}),
    )
    .await;
    let trivial_url = format!("{agents_url}/{}/execute", r["agent"]["id"]);
    let mut waiters = Vec::new();
    for i in 0..accounts {
        let key = if i == 0 && accounts == 1 {
            owner.clone()
        } else {
            make_account(format!("waiting-{i}")).await
        };
        let r = post(
            &client,
            &agents_url,
            &key,
            json!({"name": "waiter", "entry_code": WAITER, "permissions": ["inference:call"],
                   "config": {"cpu_time_limit_ms": delay.as_millis() as u64 + 60_000}}),
        )
        .await;
        let id = r["agent"]["id"].as_i64().unwrap_or_else(|| panic!("{r}"));
        waiters.push((format!("{agents_url}/{id}/execute"), key));
    }

    // Warm-up, then the figures with no waiting load.
    trivial_latency(&client, &trivial_url, &other, 200).await;
    let idle_pss = pss_kib(pid);
    let (idle_p50, idle_p99) = trivial_latency(&client, &trivial_url, &other, 1000).await;
    let idle_fds = open_fds(pid);

    let started = Instant::now();
    let mut runs = Vec::with_capacity(waiting);
    for i in 0..waiting {
        // Connections are opened in steps, as clients arriving would (more
        // slowly when every account's first run also starts its worker).
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(if accounts == 1 { 20 } else { 100 })).await;
        }
        let (url, key) = waiters[i % accounts].clone();
        let client = client.clone();
        runs.push(tokio::spawn(async move {
            // A transport error is counted with the other failures rather
            // than ending the bench (which would close every other run's
            // connection with it).
            let sent = client
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"input": {}}))
                .send()
                .await;
            let r = match sent {
                Ok(resp) => resp.json::<serde_json::Value>().await,
                Err(e) => Err(e),
            };
            match r {
                Ok(r) => (
                    r["status"].as_str().unwrap_or("").to_string(),
                    r["error"].clone(),
                ),
                Err(e) => ("transport".to_string(), json!(root_cause(&e))),
            }
        }));
    }
    while seen.load(Ordering::SeqCst) < waiting {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() < delay,
            "not every run reached the provider before it answered"
        );
    }
    let suspended_after = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load_pss = pss_kib(pid);
    let load_fds = open_fds(pid);
    let workers = tree(pid).len() - 1;
    let (load_p50, load_p99) = trivial_latency(&client, &trivial_url, &other, 1000).await;
    let measured_under_load = started.elapsed() < delay;

    let mut completed = 0;
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    for r in runs {
        let (status, error) = r.await.unwrap();
        if status == "completed" {
            completed += 1;
        } else {
            *failures.entry(format!("{status} {error}")).or_default() += 1;
        }
    }
    let all_done = started.elapsed();

    println!(
        "{waiting} runs waiting on a stand-in provider (HTTP/2, answers after {} ms), {accounts} account(s), {workers} worker process(es)",
        delay.as_millis()
    );
    println!(
        "  all suspended after        {:>8.1} s",
        suspended_after.as_secs_f64()
    );
    println!(
        "  all completed after        {:>8.1} s  ({completed} completed, failures: {failures:?})",
        all_done.as_secs_f64()
    );
    println!(
        "  server open descriptors    {:>8}  (idle {idle_fds})",
        load_fds
    );
    println!(
        "  PSS server + workers       {:>8.1} MiB (idle {:.1} MiB)",
        load_pss as f64 / 1024.0,
        idle_pss as f64 / 1024.0
    );
    println!(
        "  memory per waiting run     {:>8.1} KiB  ((peak PSS - idle PSS) / {waiting})",
        load_pss.saturating_sub(idle_pss) as f64 / waiting as f64
    );
    println!(
        "  another account's trivial runs, 1000 sequential: p50 {load_p50:.2} ms, p99 {load_p99:.2} ms under load{}; no load: p50 {idle_p50:.2} ms, p99 {idle_p99:.2} ms ({:.2}x p50)",
        if measured_under_load { "" } else { " (the provider answered before they ended)" },
        load_p50 / idle_p50
    );
}
