//! End-to-end benchmark through HTTP: the real `thetazero serve` binary on
//! SQLite (durable: WAL, synchronous = FULL), a trivial agent executed over
//! keep-alive connections, every execution record and audit event committed
//! before its response. Two servers run side by side, one with confined
//! sandbox workers (the default) and one in process, measured alternately in
//! the same run (three runs of each per concurrency, in ABBA order; each
//! figure is the median of the three). `GET /healthz` on the same server in
//! the same run is the baseline: it measures what HTTP alone costs here.
//!
//! Run: `cargo bench -p thetazero --bench http_e2e`

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

const TRIVIAL: &str = "await thetazero.log('hi'); return {ok: true}";

struct Server {
    child: Child,
    url: String,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mode: &str) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    // One key drives every execution: its rate limit is off for the run.
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        "[quotas]\nconcurrent_runs_per_account = 0\n\n[rate_limits]\nexecutions_per_key_per_minute = 0\nexecutions_per_account_per_minute = 0\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_thetazero"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--sandbox-mode", mode])
        .env("THETAZERO_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start thetazero");
    let mut key = String::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Some(k) = line.strip_prefix("owner API key: ") {
            key = k.to_string();
            break;
        }
    }
    let mut url = String::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Some(u) = line.strip_prefix("thetazero listening on ") {
            url = u.to_string();
            break;
        }
    }
    Server {
        child,
        url,
        key,
        _dir: dir,
    }
}

struct Run {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// `total` requests from `concurrency` connections; each request is built by `make`.
async fn drive(
    client: &reqwest::Client,
    concurrency: usize,
    total: usize,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
) -> Run {
    let started = Instant::now();
    let per_worker = total / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let t = Instant::now();
                let resp = make(&client).send().await.expect("request");
                assert!(resp.status().is_success(), "status {}", resp.status());
                let _ = resp.bytes().await.expect("body");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e6;
    Run {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

type MakeRequest = Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>;

/// Registers the trivial agent; answers (execute, health) request makers.
async fn prepare(client: &reqwest::Client, server: &Server) -> (MakeRequest, MakeRequest, i64) {
    let reg = client
        .post(format!("{}/api/v1/sdk/agents", server.url))
        .bearer_auth(&server.key)
        .json(&json!({"name": "trivial", "entry_code": TRIVIAL}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let id = reg["agent"]["id"].as_i64().unwrap();
    let exec_url = format!("{}/api/v1/sdk/agents/{id}/execute", server.url);
    let health_url = format!("{}/healthz", server.url);
    let key = server.key.clone();
    let execute: MakeRequest = Arc::new(move |c: &reqwest::Client| {
        c.post(&exec_url)
            .bearer_auth(&key)
            .json(&json!({"input": {}}))
    });
    let health: MakeRequest = Arc::new(move |c: &reqwest::Client| c.get(&health_url));
    (execute, health, id)
}

/// Each figure's median over several runs of one configuration.
fn median(runs: &[Run]) -> Run {
    let mid = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Run {
        per_sec: mid(|r| r.per_sec),
        p50_us: mid(|r| r.p50_us),
        p99_us: mid(|r| r.p99_us),
    }
}

/// Measured pairs of (confined, in process) per concurrency, in ABBA order
/// so that neither mode always runs first; medians are reported.
const PAIRS: usize = 3;

#[tokio::main]
async fn main() {
    let confined = start("process");
    let in_process = start("in_process");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let (c_exec, c_health, c_id) = prepare(&client, &confined).await;
    let (i_exec, i_health, _) = prepare(&client, &in_process).await;

    // Warm up connections, caches and the sandbox.
    drive(&client, 8, 800, c_exec.clone()).await;
    drive(&client, 8, 800, i_exec.clone()).await;

    println!(
        "thetazero end-to-end through HTTP (SQLite, synchronous=FULL), trivial agent: {TRIVIAL}"
    );
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "", "req/s", "p50 µs", "p99 µs"
    );
    let line = |label: String, r: &Run| {
        println!(
            "{label:<44} {:>12.0} {:>10.0} {:>10.0}",
            r.per_sec, r.p50_us, r.p99_us
        )
    };
    for (concurrency, total) in [(1usize, 2_000usize), (16, 16_000), (64, 32_000)] {
        let base = drive(&client, concurrency, total, c_health.clone()).await;
        let mut conf = Vec::new();
        let mut inproc = Vec::new();
        for pair in 0..PAIRS {
            if pair % 2 == 0 {
                conf.push(drive(&client, concurrency, total, c_exec.clone()).await);
                inproc.push(drive(&client, concurrency, total, i_exec.clone()).await);
            } else {
                inproc.push(drive(&client, concurrency, total, i_exec.clone()).await);
                conf.push(drive(&client, concurrency, total, c_exec.clone()).await);
            }
        }
        let (conf, inproc) = (median(&conf), median(&inproc));
        let base_i = drive(&client, concurrency, total, i_health.clone()).await;
        line(format!("GET /healthz (baseline), c={concurrency}"), &base);
        line(
            format!("POST .../execute, confined, c={concurrency}"),
            &conf,
        );
        line(
            format!("POST .../execute, in process, c={concurrency}"),
            &inproc,
        );
        line(
            format!("GET /healthz (in-process server), c={concurrency}"),
            &base_i,
        );
        println!(
            "{:<44} p50 {:.2}x, throughput {:.2}x; execute / baseline throughput {:.2} (confined), {:.2} (in process)",
            "  confined vs in process:",
            conf.p50_us / inproc.p50_us,
            conf.per_sec / inproc.per_sec,
            conf.per_sec / base.per_sec,
            inproc.per_sec / base_i.per_sec
        );
    }
    // Every execution was recorded durably: count them through the API.
    let list = client
        .get(format!(
            "{}/api/v1/sdk/agents/{c_id}/executions?limit=1",
            confined.url
        ))
        .bearer_auth(&confined.key)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    println!("executions recorded (confined server): {}", list["total"]);
}
