//! Throughput and latency of trivial executions through the sandbox, in process and in confined worker processes side by side, and against the spec's Node design (bench/node-baseline.js), all measured in the same run. A benchmark only: it must not be used as a test.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use thetazero_sandbox::{
    EngineMode, ExecutionReport, Host, HostError, Job, ProcessConfig, Sandbox, SandboxConfig,
    SandboxEvent, Status,
};

const AGENT: &str = "await thetazero.log('hi'); return {ok: true}";

struct NullHost;

#[async_trait]
impl Host for NullHost {
    async fn read_context(&self, _: &str) -> Result<Option<Value>, HostError> {
        Ok(None)
    }
    async fn write_context(&self, _: &str, _: Value) -> Result<(), HostError> {
        Ok(())
    }
    async fn storage_get(&self, _: &str) -> Result<Option<Value>, HostError> {
        Ok(None)
    }
    async fn storage_put(&self, _: &str, _: Value) -> Result<(), HostError> {
        Ok(())
    }
    async fn record(&self, _: SandboxEvent) -> Result<(), HostError> {
        Ok(())
    }
}

struct Run {
    execs_per_sec: f64,
    p50: Duration,
    p99: Duration,
    heap_peak_kb: f64,
    /// Median time inside the worker (`duration_ms`), without queue hand-offs.
    engine_p50: Duration,
}

fn check(r: &ExecutionReport) {
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.output, serde_json::json!({"ok": true}));
}

/// `pace`: idle time before each submission (only with one in flight), to
/// measure latency on an idle pool rather than a saturated one.
async fn measure(
    sandbox: Arc<Sandbox>,
    host: Arc<dyn Host>,
    total: usize,
    in_flight: usize,
    pace: Option<Duration>,
) -> Run {
    let mut latencies = Vec::with_capacity(total);
    let mut heap = Vec::with_capacity(total);
    let mut engine = Vec::with_capacity(total);
    let mut pending = FuturesUnordered::new();
    let mut submitted = 0;
    let start = Instant::now();
    while latencies.len() < total {
        while submitted < total && pending.len() < in_flight {
            if let Some(gap) = pace {
                std::thread::sleep(gap);
            }
            let job = Job::new(AGENT, Value::Null, host.clone());
            let t = Instant::now();
            let sandbox = &sandbox;
            pending.push(async move { (sandbox.execute(job).await, t.elapsed()) });
            submitted += 1;
        }
        if let Some((report, took)) = pending.next().await {
            let report = report.expect("queue has room");
            check(&report);
            heap.push(report.resource_usage.memory_mb * 1024.0);
            engine.push(Duration::from_secs_f64(report.duration_ms / 1000.0));
            latencies.push(took);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    heap.sort_by(|a, b| a.total_cmp(b));
    engine.sort();
    Run {
        execs_per_sec: total as f64 / secs,
        p50: latencies[latencies.len() / 2],
        p99: latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)],
        heap_peak_kb: heap[heap.len() - 1],
        engine_p50: engine[engine.len() / 2],
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn node_baseline(executions: usize, lanes: usize) -> Option<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/node-baseline.js");
    let out = Command::new("node")
        .arg(script)
        .arg(executions.to_string())
        .arg(lanes.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "node baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(String::from_utf8_lossy(&out.stdout).trim().as_bytes()).ok()
}

fn main() {
    let total: usize = std::env::var("BENCH_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let host: Arc<dyn Host> = Arc::new(NullHost);
    // The client is a task on a multi-threaded runtime, as a request handler
    // of `thetazero serve` is; the confined pool carries its channels and
    // supervisors on that same runtime, as the server configures it.
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("runtime");
    let on_client =
        |sandbox: &Arc<Sandbox>, total: usize, in_flight: usize, pace: Option<Duration>| {
            let task = measure(sandbox.clone(), host.clone(), total, in_flight, pace);
            client
                .block_on(async { tokio::spawn(task).await })
                .expect("measurement")
        };

    let rss_before = peak_rss_kb();
    let one = Arc::new(
        Sandbox::new(SandboxConfig {
            workers: 1,
            ..SandboxConfig::default()
        })
        .expect("pool"),
    );
    on_client(&one, 2_000, 1, None); // warm-up
                                     // Latency with nothing queued; throughput with the worker never idle.
    let single = on_client(&one, total, 1, None);
    let single_busy = on_client(&one, total, 4, None);
    let idle = on_client(&one, 5_000, 1, Some(Duration::from_micros(500)));
    drop(one);

    let all = Arc::new(
        Sandbox::new(SandboxConfig {
            workers: cores,
            ..SandboxConfig::default()
        })
        .expect("pool"),
    );
    on_client(&all, 2_000, cores * 4, None);
    let multi = on_client(&all, total, cores * 4, None);
    let rss_after = peak_rss_kb();
    drop(all);

    // The same on confined worker processes: one account's worker for the
    // single-lane figures, one worker per core for the rest.
    let confined = |per_account: usize| {
        let mut p = ProcessConfig::new(env!("CARGO_BIN_EXE_thetazero-sandbox-worker"), Vec::new());
        p.workers_per_account = per_account;
        // Exactly that many lanes: no spare beside them.
        p.spare_workers_per_account = Some(0);
        p.runtime = Some(client.handle().clone());
        Arc::new(
            Sandbox::new(SandboxConfig {
                mode: EngineMode::Process(p),
                ..SandboxConfig::default()
            })
            .expect("confined workers"),
        )
    };
    let p_one = confined(1);
    on_client(&p_one, 2_000, 1, None);
    let p_single = on_client(&p_one, total, 1, None);
    let p_single_busy = on_client(&p_one, total, 4, None);
    let p_idle = on_client(&p_one, 5_000, 1, Some(Duration::from_micros(500)));
    drop(p_one);
    let p_all = confined(cores);
    on_client(&p_all, 2_000, cores * 4, None);
    let p_multi = on_client(&p_all, total, cores * 4, None);
    drop(p_all);

    println!(
        "thetazero sandbox (rquickjs, fresh runtime per execution), {total} executions of: {AGENT}"
    );
    println!(
        "  1 worker,  1 in flight : {:>9.0} execs/s  p50 {:>6.1} µs  p99 {:>6.1} µs",
        single.execs_per_sec,
        single.p50.as_secs_f64() * 1e6,
        single.p99.as_secs_f64() * 1e6
    );
    println!(
        "  (of which inside the worker, p50: {:.1} µs; the rest is hand-off and waiting for the next runtime to be prepared)",
        single.engine_p50.as_secs_f64() * 1e6
    );
    println!(
        "  1 worker, idle pool (0.5 ms between requests): p50 {:>6.1} µs  p99 {:>6.1} µs  (inside the worker p50 {:.1} µs)",
        idle.p50.as_secs_f64() * 1e6,
        idle.p99.as_secs_f64() * 1e6,
        idle.engine_p50.as_secs_f64() * 1e6
    );
    println!(
        "  1 worker,  4 in flight : {:>9.0} execs/s  p50 {:>6.1} µs  p99 {:>6.1} µs",
        single_busy.execs_per_sec,
        single_busy.p50.as_secs_f64() * 1e6,
        single_busy.p99.as_secs_f64() * 1e6
    );
    println!(
        "  {cores} workers, {} in flight: {:>9.0} execs/s  p50 {:>6.1} µs  p99 {:>6.1} µs",
        cores * 4,
        multi.execs_per_sec,
        multi.p50.as_secs_f64() * 1e6,
        multi.p99.as_secs_f64() * 1e6
    );
    println!(
        "  peak QuickJS heap per execution: {:.0} KB (max over all runs); process peak RSS grew {} KB for {cores} concurrent executions",
        single.heap_peak_kb.max(multi.heap_peak_kb),
        rss_after.saturating_sub(rss_before)
    );

    println!("confined worker processes (tee_mode process_sandbox), same agent:");
    let row = |label: &str, c: &Run, i: &Run| {
        println!(
            "  {label}: {:>9.0} execs/s ({:.2}x in process)  p50 {:>6.1} µs ({:+.1} µs)  p99 {:>6.1} µs",
            c.execs_per_sec,
            c.execs_per_sec / i.execs_per_sec,
            c.p50.as_secs_f64() * 1e6,
            (c.p50.as_secs_f64() - i.p50.as_secs_f64()) * 1e6,
            c.p99.as_secs_f64() * 1e6
        );
    };
    row("1 worker,  1 in flight ", &p_single, &single);
    row("1 worker, idle (0.5 ms)", &p_idle, &idle);
    row("1 worker,  4 in flight ", &p_single_busy, &single_busy);
    row(
        &format!("{cores} workers, {} in flight", cores * 4),
        &p_multi,
        &multi,
    );

    let node_n: usize = std::env::var("BENCH_NODE_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    match (node_baseline(node_n, 1), node_baseline(node_n, cores)) {
        (Some(n1), Some(nc)) => {
            let n1_rate = n1["execs_per_sec"].as_f64().unwrap_or(f64::NAN);
            let nc_rate = nc["execs_per_sec"].as_f64().unwrap_or(f64::NAN);
            println!("spec's Node design (worker_thread + vm.createContext per execution), {node_n} executions:");
            println!(
                "  1 lane : {:>7.1} execs/s  p50 {:>6.1} ms  p99 {:>6.1} ms",
                n1_rate,
                n1["p50_ms"].as_f64().unwrap_or(f64::NAN),
                n1["p99_ms"].as_f64().unwrap_or(f64::NAN)
            );
            println!(
                "  {cores} lanes: {:>7.1} execs/s  p50 {:>6.1} ms  p99 {:>6.1} ms",
                nc_rate,
                nc["p50_ms"].as_f64().unwrap_or(f64::NAN),
                nc["p99_ms"].as_f64().unwrap_or(f64::NAN)
            );
            println!(
                "ratio: {:.0}x on one thread, {:.0}x on all cores (confined: {:.0}x, {:.0}x)",
                single_busy.execs_per_sec / n1_rate,
                multi.execs_per_sec / nc_rate,
                p_single_busy.execs_per_sec / n1_rate,
                p_multi.execs_per_sec / nc_rate
            );
        }
        _ => println!("node not found or failed: no baseline ratio"),
    }
}
