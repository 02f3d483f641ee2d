//! Runaway containment through the real `thetazero serve` binary (confined
//! workers, the default): for each form of the sandbox's runaway corpus, run
//! with a 300 ms deadline in one account, how long after its deadline it
//! stopped and how, while another account runs trivial executions back to
//! back; their p50 beside the same figure with nothing running away,
//! measured in the same run.
//!
//! Run: `cargo bench -p thetazero --bench runaway`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{post, Server};
use serde_json::{json, Value};

const CORPUS: &str = include_str!("../../thetazero-sandbox/tests/fixtures/runaway.tsv");
const DEADLINE_MS: u64 = 300;

fn p50(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Trivial runs back to back until `stop`; their latencies in ms.
fn background(
    client: reqwest::Client,
    url: String,
    key: String,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<f64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            let r = post(&client, &url, &key, json!({"input": {}})).await;
            assert_eq!(r["status"], "completed", "{r}");
            out.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
        }
    })
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::unthrottled_config(dir.path());
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let owner = server
        .owner_key()
        .expect("the owner key is printed on first start");
    let client = reqwest::Client::new();
    let agents = format!("{}/api/v1/sdk/agents", server.url);
    let created = post(
        &client,
        &format!("{}/api/v1/accounts", server.url),
        &owner,
        json!({"name": "bystander"}),
    )
    .await;
    let other = created["secret"].as_str().unwrap().to_string();
    let r = post(
        &client,
        &agents,
        &other,
        json!({"name": "trivial", "entry_code": "return 1"}),
    )
    .await;
    let trivial = format!("{agents}/{}/execute", r["agent"]["id"]);

    // Warm-up, then the bystander alone.
    for _ in 0..200 {
        post(&client, &trivial, &other, json!({"input": {}})).await;
    }
    let quiet = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let h = background(
        client.clone(),
        trivial.clone(),
        other.clone(),
        stop.clone(),
        quiet.clone(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    h.await.unwrap();
    let quiet_p50 = p50(quiet.lock().unwrap().clone());

    println!("runaway forms, deadline {DEADLINE_MS} ms each, one account; a bystander account runs trivial executions meanwhile");
    println!("bystander p50 with nothing running away: {quiet_p50:.2} ms");
    println!(
        "{:<44} {:>12} {:>10} {:>14} {:>12}",
        "form", "status", "how", "after deadline", "bystander p50"
    );
    let mut overs = Vec::new();
    let mut bystander_all = Vec::new();
    for line in CORPUS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((name, code)) = line.split_once('\t') else {
            continue;
        };
        let r = post(
            &client,
            &agents,
            &owner,
            json!({"name": format!("runaway-{}", overs.len()), "entry_code": code,
                   "config": {"cpu_time_limit_ms": DEADLINE_MS, "memory_limit_mb": 64}}),
        )
        .await;
        let url = format!("{agents}/{}/execute", r["agent"]["id"]);
        let lat = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let h = background(
            client.clone(),
            trivial.clone(),
            other.clone(),
            stop.clone(),
            lat.clone(),
        );
        let t = Instant::now();
        let out = post(&client, &url, &owner, json!({"input": {}})).await;
        let took = t.elapsed().as_secs_f64() * 1000.0;
        stop.store(true, Ordering::SeqCst);
        h.await.unwrap();
        let bystander = lat.lock().unwrap().clone();
        bystander_all.extend(bystander.iter().copied());
        // How it was enforced is in the execution's limit event.
        let audit: Value = client
            .get(format!(
                "{}/api/v1/sdk/audit?executionId={}",
                server.url, out["execution_id"]
            ))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let how = audit["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["action_type"] == "sandbox_limit_hit")
            .and_then(|e| e["description"].as_str())
            .map(|d| {
                if d.contains("enforced by watchdog") {
                    "watchdog"
                } else {
                    "engine"
                }
            })
            .unwrap_or("-")
            .to_string();
        let over = took - DEADLINE_MS as f64;
        overs.push(over);
        println!(
            "{name:<44} {:>12} {how:>10} {:>11.0} ms {:>9.2} ms",
            out["status"].as_str().unwrap_or("?"),
            over,
            p50(bystander)
        );
    }
    // Eight runaways of one account at once, with the bystander running.
    let r = post(
        &client,
        &agents,
        &owner,
        json!({"name": "eight", "entry_code": "return Array.prototype.join.call({length: 2 ** 53 - 1}, '').length;",
               "config": {"cpu_time_limit_ms": DEADLINE_MS}}),
    )
    .await;
    let eight_url = format!("{agents}/{}/execute", r["agent"]["id"]);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let h = background(
        client.clone(),
        trivial.clone(),
        other.clone(),
        stop.clone(),
        lat.clone(),
    );
    let t = Instant::now();
    let mut eight = Vec::new();
    for _ in 0..8 {
        let (client, url, key) = (client.clone(), eight_url.clone(), owner.clone());
        eight.push(tokio::spawn(async move {
            post(&client, &url, &key, json!({"input": {}})).await
        }));
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for e in eight {
        let out = e.await.unwrap();
        *statuses
            .entry(out["status"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let eight_took = t.elapsed().as_secs_f64() * 1000.0;
    stop.store(true, Ordering::SeqCst);
    h.await.unwrap();
    let during = lat.lock().unwrap().clone();
    println!(
        "eight native-loop runaways of one account at once: all ended after {eight_took:.0} ms ({statuses:?}); bystander p50 meanwhile {:.2} ms over {} runs ({:.2}x quiet)",
        p50(during.clone()),
        during.len(),
        p50(during) / quiet_p50
    );

    overs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "stopped after the deadline (request round trip included): median {:.0} ms, max {:.0} ms over {} forms",
        overs[overs.len() / 2],
        overs[overs.len() - 1],
        overs.len()
    );
    println!(
        "bystander p50 across all forms: {:.2} ms ({:.2}x the quiet p50)",
        p50(bystander_all.clone()),
        p50(bystander_all) / quiet_p50
    );
}
