//! How much one run can make the server and its workers grow, through the
//! real `thetazero serve` binary (confined workers, the default): for each
//! memory-hostile form below, run once with a 16 MiB limit in an account of
//! its own (so on a fresh worker), the peak proportional set size of the
//! server and all its workers while it runs, less the same figure just
//! before it, beside the bound the engine promises: the run's limit plus
//! 1 MiB. A trivial run of the same account, measured the same way in the
//! same run, is the baseline.
//!
//! Run: `cargo bench -p thetazero --bench memory_bound`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{post, pss_kib, Server};
use serde_json::{json, Value};

const LIMIT_MB: u64 = 16;

/// Name, permissions, code. Each tries to make the server or its worker hold
/// more than the run's limit by a different route.
const FORMS: &[(&str, &[&str], &str)] = &[
    ("trivial (baseline)", &[], "return {ok: true}"),
    (
        "heap: strings",
        &[],
        "const a = []; for (;;) a.push('x'.repeat(4096) + a.length);",
    ),
    (
        "heap: small objects",
        &[],
        "const a = []; for (;;) a.push({i: a.length});",
    ),
    (
        "heap: one growing array",
        &[],
        "const a = []; for (let i = 0; ; i++) a[i] = i * 1.5;",
    ),
    (
        "pending call arguments (600 x 60 KB storage_put)",
        &["storage:write"],
        "const big = 'x'.repeat(60000); const p = [];
         for (let i = 0; i < 600; i++) p.push(thetazero.storage_put('k' + i, big + i).then(() => 0, e => e.code));
         return (await Promise.all(p)).filter(c => c !== 0).length;",
    ),
    (
        "pending context writes (600 x 60 KB)",
        &["data:write"],
        "const big = 'x'.repeat(60000); const p = [];
         for (let i = 0; i < 600; i++) p.push(thetazero.write_context('k' + i, big + i).then(() => 0, e => e.code));
         return (await Promise.all(p)).filter(c => c !== 0).length;",
    ),
    (
        "reply burst (600 x 60 KB storage_get)",
        &["storage:read", "storage:write"],
        "await thetazero.storage_put('big', 'x'.repeat(60000));
         const p = [];
         for (let i = 0; i < 600; i++) p.push(thetazero.storage_get('big').then(v => v.length, e => e.code));
         return (await Promise.all(p)).length;",
    ),
    (
        "log flood (64 KiB entries)",
        &[],
        "const s = 'y'.repeat(65536); for (;;) thetazero.log(s);",
    ),
    (
        "output near its cap: 140,000 numbers",
        &[],
        "return Array.from({length: 140000}, (_, i) => i * 7);",
    ),
    (
        "output near its cap: one string of words",
        &[],
        "const w = ['ledger', 'invoice', 'shipment', 'balance', 'north', 'quarter'];
         return Array.from({length: 120000}, (_, i) => w[i % 6]).join(' ').slice(0, 1000000);",
    ),
    (
        "output near its cap: 20,000 small records",
        &[],
        "return Array.from({length: 20000}, (_, i) => ({id: i, sku: 'A-' + i, qty: i % 9}));",
    ),
    (
        "thrown message flood",
        &[],
        "const s = 'e'.repeat(1 << 20); for (let i = 0; ; i++) { try { throw new Error(s + i); } catch (e) { globalThis['e' + (i % 64)] = e; } }",
    ),
];

/// A new account's key.
async fn account(client: &reqwest::Client, url: &str, owner: &str, name: &str) -> (String, Value) {
    let created = post(
        client,
        &format!("{url}/api/v1/accounts"),
        owner,
        json!({ "name": name }),
    )
    .await;
    let key = created["secret"].as_str().expect("account key").to_string();
    (key, created)
}

/// Registers a trivial agent that logs and answers some text, so that every
/// filter and the log path are used, and runs it `runs` times.
async fn warm_up(client: &reqwest::Client, agents: &str, key: &str, runs: usize) {
    let r = post(
        client,
        agents,
        key,
        json!({"name": "warm", "entry_code": "await thetazero.log('hi'); return {ok: true, text: input.text};"}),
    )
    .await;
    let url = format!("{agents}/{}/execute", r["agent"]["id"]);
    for _ in 0..runs {
        post(client, &url, key, json!({"input": {"text": "warming up"}})).await;
    }
}

/// Runs the agent at `url` once; the peak growth of the server and its
/// workers while it ran (and 100 ms after), in MiB, and its answer.
async fn measure(client: &reqwest::Client, url: &str, key: &str, pid: u32) -> (f64, Value) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pss_kib(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                // Workers may come and go while the run does.
                peak.fetch_max(pss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = post(client, url, key, json!({"input": {}})).await;
    // What the run left behind counts too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let grew = peak.load(Ordering::SeqCst).saturating_sub(before) as f64 / 1024.0;
    (grew, out)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::unthrottled_config(dir.path());
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let pid = server.child.id();
    let owner = server
        .owner_key()
        .expect("the owner key is printed on first start");
    let client = reqwest::Client::new();
    let agents = format!("{}/api/v1/sdk/agents", server.url);

    // The server's own first-use costs (filters, caches) are paid once here,
    // in an account of its own.
    let (key, _) = account(&client, &server.url, &owner, "warm-up").await;
    warm_up(&client, &agents, &key, 50).await;

    println!(
        "memory one run can add to the server and its workers (PSS), limit {LIMIT_MB} MiB per run, bound: limit + 1 MiB"
    );
    println!(
        "{:<50} {:>22} {:>11} {:>11} {:>6} {:>7}",
        "form", "status", "1st (MiB)", "2nd (MiB)", "bound", "within"
    );
    let mut all_within = true;
    for (i, (name, permissions, code)) in FORMS.iter().enumerate() {
        // An account of its own: a fresh worker, warmed by trivial runs.
        let (key, _) = account(&client, &server.url, &owner, &format!("memory-{i}")).await;
        warm_up(&client, &agents, &key, 3).await;
        let r = post(
            &client,
            &agents,
            &key,
            json!({"name": "form", "entry_code": code, "permissions": permissions,
                   "config": {"cpu_time_limit_ms": 3000, "memory_limit_mb": LIMIT_MB}}),
        )
        .await;
        let url = format!("{agents}/{}/execute", r["agent"]["id"]);
        let (first, out) = measure(&client, &url, &key, pid).await;
        let (second, _) = measure(&client, &url, &key, pid).await;
        let bound = (LIMIT_MB + 1) as f64;
        let within = first <= bound && second <= bound;
        all_within &= within;
        let status = format!(
            "{}{}",
            out["status"].as_str().unwrap_or("?"),
            out["error"]["code"]
                .as_str()
                .map(|c| format!(" {c}"))
                .unwrap_or_default()
        );
        println!(
            "{:<50} {:>22} {:>11.2} {:>11.2} {:>6.0} {:>7}",
            name,
            status,
            first,
            second,
            bound,
            if within { "yes" } else { "NO" }
        );
    }
    println!(
        "all forms within limit + 1 MiB: {}",
        if all_within { "yes" } else { "no" }
    );
}
