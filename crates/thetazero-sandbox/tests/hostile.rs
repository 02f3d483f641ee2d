//! The confined engine against a hostile tenant's agent code and a compromised worker process: each tries to escape a run's deadline, its memory limit, the broker's checks or the audit trail, and each test asserts the safe behaviour. Test-only.
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use serde_json::{json, Value};
use thetazero_sandbox::{
    ApprovalAsk, ChildBudget, EngineMode, ExecutionReport, Host, HostError, Job, ProcessConfig,
    Sandbox, SandboxConfig, SandboxEvent, Status,
};

// ---------------------------------------------------------------------------
// A compromised worker, simulated: it speaks the protocol, then lies. The run's
// code names what it does ("MODE:<name>"), so one fake program serves every
// case. It is written out at run time to keep this file self-contained.
// ---------------------------------------------------------------------------

const FAKE_WORKER: &str = r#"
import json, os, struct, sys, time

report_path = sys.argv[1]
if "--check" in sys.argv:
    print(json.dumps({
        "confinement": {"landlock": "fully_enforced", "seccomp": True,
                        "no_new_privs": True, "rlimits": True},
        "error": None,
        "attempts": {"open a TCP socket": "refused: stand-in"},
        "environment_variables": 0,
    }))
    sys.exit(0)

def send(message):
    # The protocol's messages are objects with one key, the message's name.
    message = dict(message)
    kind = message.pop("t")
    body = json.dumps({kind: message}).encode()
    os.write(1, struct.pack("<I", len(body)) + body)

def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data

def read_frame():
    (n,) = struct.unpack("<I", read_exact(4))
    ((kind, message),) = json.loads(read_exact(n)).items()
    message["t"] = kind
    return message

def report():
    with open(report_path) as f:
        return json.load(f)

def beat_for(seconds):
    end = time.time() + seconds
    while time.time() < end:
        send({"t": "beat", "on_thread": None, "for_ms": 0})
        time.sleep(0.1)

send({"t": "ready", "pid": os.getpid()})
start = read_frame()
run = start["run"]
mode = start["spec"]["code"].split("MODE:")[1].split()[0]

if mode == "silent":
    # Hangs before the engine takes the run, sending nothing at all.
    time.sleep(60)
    sys.exit(0)

send({"t": "started", "run": run})

if mode == "idle_beats":
    # Runs for ever, telling the server the engine thread is idle.
    beat_for(60)
elif mode == "pause_then_complete":
    # Claims the run is suspended on approvals (none was asked), then
    # reports success long after the deadline.
    send({"t": "paused", "run": run, "paused": True})
    beat_for(1.5)
    r = report()
    r["output"] = "completed after the deadline"
    send({"t": "ended", "run": run, "report": r})
    beat_for(60)
elif mode == "restart_then_complete":
    # Says, truthfully, that the run holds the engine thread, but sends
    # `Started` again and again; then reports success 1.5 s past a 300 ms
    # deadline.
    t0 = time.time()
    while time.time() - t0 < 1.5:
        send({"t": "started", "run": run})
        send({"t": "beat", "on_thread": run, "for_ms": int((time.time() - t0) * 1000)})
        time.sleep(0.05)
    r = report()
    r["output"] = "completed after the deadline"
    send({"t": "ended", "run": run, "report": r})
    beat_for(60)
elif mode == "forged_scope_and_budget":
    # A storage_put the run has no scope for, then 60 reads against a budget
    # of 50, each waited for; then a clean report.
    send({"t": "call", "run": run, "call": 0, "f": "storage_put",
          "args": {"kind": "key_value", "key": "k", "value": 1}, "summary": "x"})
    read_frame()
    for i in range(1, 61):
        send({"t": "call", "run": run, "call": i, "f": "read_context",
              "args": {"kind": "key", "key": "k"}, "summary": "x"})
        read_frame()
    send({"t": "ended", "run": run, "report": report()})
    beat_for(60)
elif mode == "oversized_report":
    # A report far above the run's output and log limits.
    r = report()
    r["output"] = "x" * (4 << 20)
    entry = dict(r["logs"][0])
    entry["message"] = "y" * 1024
    r["logs"] = [entry] * 5000
    send({"t": "ended", "run": run, "report": r})
    beat_for(60)
elif mode == "forged_report":
    # A failed run that claims an output, a code of its own and a host call
    # the bridge does not have.
    r = report()
    r["status"] = "failed"
    r["output"] = "text the run never completed with"
    r["error"] = {"type": "Error", "message": "m", "code": "FORGED_CODE", "stack": None}
    row = dict(r["host_call_audit"][0]) if r["host_call_audit"] else {}
    row.update({"fn": "forged fn name", "args_summary": "s", "allowed": True})
    r["host_call_audit"] = [row]
    send({"t": "ended", "run": run, "report": r})
    beat_for(60)
elif mode == "forged_call":
    # A storage_put the engine would never send: a 4 KiB key, a 3 MiB value,
    # and a summary that names another key.
    send({"t": "call", "run": run, "call": 0, "f": "storage_put",
          "args": {"kind": "key_value", "key": "k" * 4096, "value": "v" * (3 << 20)},
          "summary": "key=\"harmless\" value=1 bytes"})
    read_frame()
    send({"t": "ended", "run": run, "report": report()})
    beat_for(60)
elif mode == "lying_summary":
    # A valid storage_put with a summary that names another key (the
    # protocol has no summary field: the server derives its own).
    send({"t": "call", "run": run, "call": 0, "f": "storage_put",
          "args": {"kind": "key_value", "key": "k" * 40, "value": 1},
          "summary": "key=\"harmless\" value=1 bytes"})
    read_frame()
    send({"t": "ended", "run": run, "report": report()})
    beat_for(60)
elif mode == "unread_replies":
    # Asks for large values many times and never reads the replies.
    for i in range(400):
        send({"t": "call", "run": run, "call": i, "f": "storage_get",
              "args": {"kind": "key", "key": "big"}, "summary": "key=\"big\""})
    beat_for(60)
else:
    send({"t": "ended", "run": run, "report": report()})
    beat_for(60)
"#;

fn python() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("python3"))
        .find(|p| p.is_file())
        .expect("python3 is installed")
}

/// A genuine report of a trivial run with one log entry, for the fake to
/// send as its own.
async fn template_report() -> Value {
    let s = Sandbox::new(SandboxConfig::default()).unwrap();
    let host = MemHost::new();
    let r = s
        .execute(job("thetazero.log('a'); return 1", &host))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Completed, "{r:?}");
    serde_json::to_value(&r).unwrap()
}

/// A sandbox whose every worker is the lying fake.
async fn fake_sandbox() -> Sandbox {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let report = template_report().await;
    let (script, report_path) = FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tz-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("lying_worker.py");
        std::fs::write(&script, FAKE_WORKER).unwrap();
        let report_path = dir.join("report.json");
        std::fs::write(&report_path, serde_json::to_vec(&report).unwrap()).unwrap();
        (script, report_path)
    });
    let config = ProcessConfig::new(
        python(),
        vec![script.clone().into(), report_path.clone().into()],
    );
    Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn fake_job(mode: &str, host: &Arc<MemHost>, tenant: u64) -> Job {
    let mut j = job(&format!("// MODE:{mode}\nreturn 1"), host);
    j.limits.cpu_time_ms = 300;
    j.code_cache_scope = tenant;
    j
}

/// Runs a job, failing the test (instead of hanging it) if no report comes.
async fn run_bounded(s: &Sandbox, j: Job, bound: Duration) -> Option<ExecutionReport> {
    let cancel = j.cancel.clone();
    let rx = s.submit(j).unwrap();
    match tokio::time::timeout(bound, rx).await {
        Ok(r) => Some(r.unwrap()),
        Err(_) => {
            cancel.cancel();
            None
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Deadline: the server's watchdog must not depend on the worker's word.
// ---------------------------------------------------------------------------

/// A worker that hangs before it sends `Started`, never beating, is ended
/// for its silence; the run does not wait for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_silent_before_started_does_not_hold_the_run_for_ever() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let t = Instant::now();
    // Each silent worker is ended after 3 s without a word; a run it never
    // started is tried on up to three workers before it fails.
    let r = run_bounded(&s, fake_job("silent", &host, 1), Duration::from_secs(20)).await;
    let r = r.unwrap_or_else(|| {
        panic!(
            "no report {:?} after submit: a silent worker holds a 300 ms run for ever",
            t.elapsed()
        )
    });
    assert_ne!(r.status, Status::Completed, "{r:?}");
}

/// A worker that beats "engine thread idle" for ever while its run is past
/// its deadline is ended: a worker that is well would have ended the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claiming_an_idle_thread_cannot_outlive_the_deadline() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let r = run_bounded(&s, fake_job("idle_beats", &host, 2), Duration::from_secs(8)).await;
    let r = r.expect("a 300 ms run still had no report after 8 s: the watchdog trusts the beat");
    assert_eq!(r.status, Status::TimedOut, "{r:?}");
}

/// A forged `Paused`, with no approval asked, does not stop the server's
/// clock: a report 1.5 s past a 300 ms deadline is not a completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_pause_does_not_let_a_late_run_count_as_completed() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let r = run_bounded(
        &s,
        fake_job("pause_then_complete", &host, 3),
        Duration::from_secs(8),
    )
    .await
    .expect("the forged pause held the run for ever");
    assert!(
        r.duration_ms >= 0.0 && r.output != json!("completed after the deadline"),
        "a run reported 1.5 s after its 300 ms deadline was accepted: {:?} {:?}",
        r.status,
        r.output
    );
    assert_eq!(r.status, Status::TimedOut, "{r:?}");
}

/// `Started` counts once: a worker that keeps sending it does not move the
/// deadline, and its late success is not accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_started_does_not_move_the_deadline() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let r = run_bounded(
        &s,
        fake_job("restart_then_complete", &host, 10),
        Duration::from_secs(8),
    )
    .await
    .expect("a report");
    assert_eq!(
        r.status,
        Status::TimedOut,
        "a run that held the engine thread 1.5 s past its 300 ms deadline ended {:?} with {:?}",
        r.status,
        r.output
    );
}

/// Plain agent code: 60,000 registrations of one target in a
/// FinalizationRegistry take a few milliseconds to make, but tearing the
/// runtime down is quadratic (each record's removal walks the target's list
/// of weak records). Teardown counts as holding the engine thread, so the
/// watchdog ends it past the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_runtime_teardown_is_still_under_the_watchdog() {
    let _exclusive = exclusive().await;
    let s = real_sandbox();
    let host = MemHost::new();
    let code = r#"
        const target = {};
        const registry = new FinalizationRegistry(() => {});
        for (let i = 0; i < 60000; i++) registry.register(target, i);
        globalThis.keep = registry;
        globalThis.target = target;
        return 'made';
    "#;
    let mut j = job(code, &host);
    j.limits.cpu_time_ms = 1_000;
    j.limits.memory_mb = 64;
    j.code_cache_scope = 11;
    let r = run_bounded(&s, j, Duration::from_secs(20))
        .await
        .expect("a run with a 1 s deadline had no report after 20 s");
    // The teardown outlasts the deadline: the watchdog ends the worker.
    assert_eq!(r.status, Status::TimedOut, "{r:?}");
    assert_eq!(
        r.enforcement,
        Some(thetazero_sandbox::Enforcement::Watchdog),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------
// 6. Protocol: the broker must re-check what the engine checked.
// ---------------------------------------------------------------------------

/// The engine refuses keys above 1 KiB and values above `max_output_bytes`
/// before they cross; the broker checks again, so a worker cannot store a
/// 4 KiB key or a 3 MiB value in a run whose values are capped at 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_caps_keys_and_values_a_worker_sends() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let mut j = fake_job("forged_call", &host, 4);
    j.scopes = all_scopes();
    j.limits.cpu_time_ms = 5_000;
    assert_eq!(j.limits.max_output_bytes, 1 << 20);
    let r = run_bounded(&s, j, Duration::from_secs(8)).await;
    assert!(r.is_some());
    let stored: Vec<(usize, usize)> = host
        .storage
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.len(), v.to_string().len()))
        .collect();
    for (key, value) in &stored {
        assert!(
            *key <= 1024 && *value as u64 <= 1 << 20,
            "the host stored a {key}-byte key and a {value}-byte value"
        );
    }
}

/// The audit trail (and the summary a human approver reads) is derived by
/// the server from the arguments, never taken from the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_summary_is_derived_by_the_server_not_the_worker() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let mut j = fake_job("lying_summary", &host, 5);
    j.scopes = all_scopes();
    j.limits.cpu_time_ms = 5_000;
    let _ = run_bounded(&s, j, Duration::from_secs(8)).await;
    let summaries: Vec<String> = host
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SandboxEvent::HostCallDecision { args_summary, .. } => Some(args_summary),
            _ => None,
        })
        .collect();
    assert!(!summaries.is_empty());
    for s in summaries {
        assert!(
            s.starts_with("key=\"kkkk"),
            "the audit records the worker's own summary: {s:?}"
        );
    }
}

/// What a worker reports is held to what an engine can say: no output for a
/// run that did not complete, the host's own error codes, the bridge's own
/// function names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_report_says_nothing_an_engine_could_not() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let j = fake_job("forged_report", &host, 7);
    let r = run_bounded(&s, j, Duration::from_secs(8))
        .await
        .expect("a report");
    assert_eq!(r.status, Status::Failed, "{r:?}");
    assert_eq!(r.output, serde_json::Value::Null);
    assert_eq!(r.error.as_ref().and_then(|e| e.code.clone()), None, "{r:?}");
    assert_eq!(r.host_call_audit.len(), 1, "{r:?}");
    assert_eq!(r.host_call_audit[0].function, "unknown");
}

/// A worker's report is held to the run's limits on the server's side (a
/// 4 MiB output against a 1 MiB cap; 5,000 log entries / 5 MiB against
/// 1,000 / 256 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_output_and_logs_are_held_to_the_runs_limits() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let j = fake_job("oversized_report", &host, 6);
    let limits = j.limits;
    let r = run_bounded(&s, j, Duration::from_secs(8))
        .await
        .expect("a report");
    let output = r.output.to_string().len() as u64;
    let log_bytes: u64 = r.logs.iter().map(|l| l.message.len() as u64).sum();
    assert!(
        output <= limits.max_output_bytes,
        "{output}-byte output accepted ({:?})",
        r.status
    );
    assert!(
        r.logs.len() as u64 <= limits.max_log_entries && log_bytes <= limits.max_log_bytes,
        "{} log entries / {log_bytes} bytes accepted",
        r.logs.len()
    );
}

// ---------------------------------------------------------------------------
// 4. Memory held outside a run's limit.
// ---------------------------------------------------------------------------

/// Tests that measure this process's memory or another account's latency run
/// one at a time, so that they do not measure each other.
async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A compromised worker that asks for large values and never reads its
/// socket cannot make the server hold more than its run's memory limit in
/// replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_a_worker_does_not_read_are_not_held_without_bound() {
    let _exclusive = exclusive().await;
    let s = fake_sandbox().await;
    let host = MemHost::new();
    host.storage
        .lock()
        .unwrap()
        .insert("big".into(), json!("x".repeat(1 << 20)));
    let mut j = fake_job("unread_replies", &host, 7);
    j.scopes = all_scopes();
    j.limits.memory_mb = 4;
    j.limits.cpu_time_ms = 6_000;
    j.limits.max_api_calls_per_run = 1_000;
    j.limits.max_api_calls_per_minute = 1_000;
    let me = std::process::id();
    let before = rss_kb(me).unwrap();
    let cancel = j.cancel.clone();
    let rx = s.submit(j).unwrap();
    let mut peak = before;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(5_000) {
        peak = peak.max(rss_kb(me).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(8), rx).await;
    let grown_mb = (peak.saturating_sub(before)) / 1024;
    assert!(
        grown_mb < 4 + 32,
        "the server grew by {grown_mb} MiB for a 4 MiB run ({} storage_get calls reached the host)",
        host.reached()
    );
}

/// A sandbox of real confined workers.
fn real_sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(process_config()),
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// 300 reads of a 1 MiB value, all in flight at once, from plain agent code.
const READ_BURST: &str = r#"
    const calls = [];
    for (let i = 0; i < 300; i++) calls.push(thetazero.storage_get('big').then(() => 0, () => 0));
    await Promise.all(calls);
    return 'done';
"#;

fn burst_job(host: &Arc<MemHost>, tenant: u64) -> Job {
    host.storage
        .lock()
        .unwrap()
        .insert("big".into(), json!("x".repeat(1 << 20)));
    let mut j = job(READ_BURST, host);
    j.scopes = all_scopes();
    j.limits.memory_mb = 16;
    j.limits.cpu_time_ms = 30_000;
    j.limits.max_api_calls_per_run = 1_000;
    j.limits.max_api_calls_per_minute = 1_000;
    j.code_cache_scope = tenant;
    j
}

/// Plain agent code: a burst of calls with large replies cannot make the
/// server hold more than the run's memory limit in queued replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_large_replies_is_not_held_by_the_server_outside_the_limit() {
    let _exclusive = exclusive().await;
    let s = real_sandbox();
    let host = MemHost::new();
    let j = burst_job(&host, 8);
    let me = std::process::id();
    let before = rss_kb(me).unwrap();
    let cancel = j.cancel.clone();
    let mut rx = s.submit(j).unwrap();
    let mut peak = before;
    let t = Instant::now();
    // Watched until it ends or the server holds clearly too much.
    let ended = loop {
        peak = peak.max(rss_kb(me).unwrap_or(0));
        if peak.saturating_sub(before) / 1024 >= 16 + 64 {
            cancel.cancel();
            break None;
        }
        match tokio::time::timeout(Duration::from_millis(20), &mut rx).await {
            Ok(r) => break Some(r.unwrap().status),
            Err(_) if t.elapsed() > Duration::from_secs(60) => panic!("no report"),
            Err(_) => {}
        }
    };
    let grown_mb = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mb < 16 + 64,
        "the server grew by {grown_mb} MiB within {:?} for a 16 MiB run (run {ended:?}; {} calls reached the host)",
        t.elapsed(),
        host.reached()
    );
}

// ---------------------------------------------------------------------------
// 2. Approval waits: the deadline pauses only while the run is entirely
//    suspended on approvals.
// ---------------------------------------------------------------------------

/// A host whose approvals take a while and are refused, and whose context
/// reads are slow (a model call, an HTTP request).
struct SlowHost {
    inner: Arc<MemHost>,
    approval: Duration,
    read: Duration,
    approvals: AtomicUsize,
}

#[async_trait]
impl Host for SlowHost {
    async fn read_context(&self, key: &str) -> Result<Option<Value>, HostError> {
        tokio::time::sleep(self.read).await;
        self.inner
            .read_context(key)
            .await
            .map(|_| Some(json!("slow")))
    }
    async fn write_context(&self, key: &str, value: Value) -> Result<(), HostError> {
        self.inner.write_context(key, value).await
    }
    async fn storage_get(&self, key: &str) -> Result<Option<Value>, HostError> {
        self.inner.storage_get(key).await
    }
    async fn storage_put(&self, key: &str, value: Value) -> Result<(), HostError> {
        self.inner.storage_put(key, value).await
    }
    async fn record(&self, event: SandboxEvent) -> Result<(), HostError> {
        self.inner.record(event).await
    }
    async fn request_approval(&self, _ask: ApprovalAsk) -> Result<bool, HostError> {
        self.approvals.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.approval).await;
        Ok(false)
    }
    async fn call_agent(
        &self,
        _name: &str,
        _input: Value,
        remaining: ChildBudget,
    ) -> Result<Value, HostError> {
        Ok(json!(remaining.time_ms))
    }
}

/// One refused call left waiting for a human does not pause the deadline
/// while another host call of the run is working: a 1.2 s read in a 400 ms
/// run does not complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_does_not_stop_the_clock_for_other_host_calls() {
    let _exclusive = exclusive().await;
    let s = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(process_config()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let inner = MemHost::new();
    let host = Arc::new(SlowHost {
        inner: inner.clone(),
        approval: Duration::from_millis(1_600),
        read: Duration::from_millis(1_200),
        approvals: AtomicUsize::new(0),
    });
    let code = r#"
        const refused = thetazero.storage_put('k', 1).then(() => 'ok', e => e.code);
        const v = await thetazero.read_context('k');
        return [v, await refused];
    "#;
    let mut j = Job::new(code, Value::Null, host.clone());
    j.limits.cpu_time_ms = 400;
    j.scopes = [thetazero_sandbox::Scope::DataRead].into_iter().collect();
    j.approval_timeout = Some(Duration::from_secs(5));
    j.code_cache_scope = 9;
    let t = Instant::now();
    let r = s.execute(j).await.unwrap();
    assert_eq!(host.approvals.load(Ordering::SeqCst), 1);
    assert_eq!(
        r.status,
        Status::TimedOut,
        "a 400 ms run ended {:?} after {:?} with {:?}",
        r.status,
        t.elapsed(),
        r.output
    );
}

// ---------------------------------------------------------------------------
// 3. Cross-account: admission.
// ---------------------------------------------------------------------------

/// One account's runs parked on a promise that never settles (they hold no
/// thread, so they are cheap to keep) cannot take every slot: past its own
/// share it is refused, and another account's run still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_cannot_take_every_run_slot() {
    let mut config = process_config();
    config.max_runs = 8;
    config.max_runs_per_account = 4;
    let s = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut parked = Vec::new();
    let mut guards = Vec::new();
    for _ in 0..8 {
        let host = MemHost::new();
        let mut j = job("await new Promise(() => {});", &host);
        j.code_cache_scope = 70;
        guards.push(j.cancel.cancel_on_drop());
        match s.submit(j) {
            Ok(rx) => parked.push(rx),
            Err(_) => break,
        }
    }
    let host = MemHost::new();
    let mut other = job("return 1", &host);
    other.code_cache_scope = 71;
    let r = s.execute(other).await;
    assert!(
        matches!(&r, Ok(r) if r.status == Status::Completed),
        "another account's run after one account parked {} runs: {r:?}",
        parked.len()
    );
}

// ---------------------------------------------------------------------------
// Cheap regressions that held.
// ---------------------------------------------------------------------------

/// Held: the broker re-checks scopes and the per-run call budget whatever
/// the worker claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_rechecks_scopes_and_budgets_of_forged_calls() {
    let s = fake_sandbox().await;
    let host = MemHost::new();
    let mut j = fake_job("forged_scope_and_budget", &host, 12);
    j.scopes = [thetazero_sandbox::Scope::DataRead].into_iter().collect();
    j.limits.cpu_time_ms = 10_000;
    assert_eq!(j.limits.max_api_calls_per_run, 50);
    let r = run_bounded(&s, j, Duration::from_secs(8))
        .await
        .expect("a report");
    assert!(host.storage.lock().unwrap().is_empty());
    assert!(host.denied_events() >= 1);
    assert!(
        host.reached() <= 49,
        "{} reads reached the host",
        host.reached()
    );
    assert_eq!(r.status, Status::LimitExceeded, "{r:?}");
    assert_eq!(r.limit, Some(thetazero_sandbox::LimitKind::ApiCalls));
}

/// Shared memory stays unreachable through the lazy typed-array group, even
/// with a proxy as the global object's prototype and an accessor on
/// `Array.prototype.toString` watching while the group is added; a lazy
/// accessor's own `constructor` is the blocked Function constructor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_stays_unreachable_through_lazy_builtins() {
    let s = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(process_config()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let code = r#"
        const seen = [];
        let inside = false;
        Object.setPrototypeOf(globalThis, new Proxy(Object.getPrototypeOf(globalThis), {
          get(t, k, r) {
            if (!inside) { inside = true; try { seen.push(typeof Object.getOwnPropertyDescriptor(globalThis, 'SharedArrayBuffer')?.value, typeof Object.getOwnPropertyDescriptor(globalThis, 'Atomics')?.value); } finally { inside = false; } }
            return Reflect.get(t, k, r);
          },
          has(t, k) { seen.push('has:' + String(k)); return Reflect.has(t, k); },
        }));
        Object.defineProperty(Array.prototype, 'toString', { get() { seen.push('toString', typeof SharedArrayBuffer); return () => ''; }, configurable: true });
        const u = new Uint8Array(4);
        const ctorOfBuffer = u.buffer.constructor.name;
        let viaAccessor;
        try { viaAccessor = Object.getOwnPropertyDescriptor(globalThis, 'Map').get.constructor('return 1')(); }
        catch (e) { viaAccessor = e.name; }
        return [typeof SharedArrayBuffer, typeof Atomics, ctorOfBuffer,
                seen.filter(x => x === 'function' || x === 'object').length, viaAccessor];
    "#;
    let host = MemHost::new();
    let mut j = job(code, &host);
    j.code_cache_scope = 50;
    let r = s.execute(j).await.unwrap();
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.tee_mode, "process_sandbox");
    assert_eq!(
        r.output,
        json!(["undefined", "undefined", "ArrayBuffer", 0, "EvalError"])
    );
}

/// Replies that reach a worker while its engine thread is busy wait in the
/// worker's memory: they are charged to their run, so a burst of large
/// replies ends a small run at its memory limit instead of piling up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_waiting_in_the_worker_count_against_the_run() {
    let s = real_sandbox();
    let host = MemHost::new();
    host.storage
        .lock()
        .unwrap()
        .insert("big".into(), json!("x".repeat(1 << 20)));
    let code = r#"
        const calls = [];
        for (let i = 0; i < 64; i++) calls.push(thetazero.storage_get('big').then(v => v.length, e => e.code));
        const t = Date.now(); while (Date.now() - t < 1500) {}
        return await Promise.all(calls);
    "#;
    let mut j = job(code, &host);
    j.scopes = all_scopes();
    j.limits.memory_mb = 8;
    j.limits.cpu_time_ms = 20_000;
    j.limits.max_api_calls_per_run = 100;
    j.limits.max_api_calls_per_minute = 100;
    j.code_cache_scope = 13;
    let r = run_bounded(&s, j, Duration::from_secs(30))
        .await
        .expect("a report");
    assert_eq!(
        r.status,
        Status::LimitExceeded,
        "{:?} {:?}",
        r.status,
        r.error
    );
    assert_eq!(r.limit, Some(thetazero_sandbox::LimitKind::Memory));
}

/// A kill of one run is confirmed while another run of the same account
/// holds the worker's engine thread in a native loop that never polls the
/// interrupt handler: the worker's sentinel reads the channel meanwhile, so
/// the kill needs no forced stop of the worker, and the run in the loop goes
/// on to complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_lands_while_another_run_of_the_account_is_in_a_native_loop() {
    let _exclusive = exclusive().await;
    // Both runs on one worker: a spare would take the second.
    let mut config = process_config();
    config.spare_workers_per_account = Some(0);
    let s = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    })
    .unwrap();
    let tenant = 23;
    let host = MemHost::new();
    let mut waiting = job("await new Promise(() => {}); return 'never';", &host);
    waiting.limits.cpu_time_ms = 60_000;
    waiting.code_cache_scope = tenant;
    let kill = waiting.cancel.clone();
    let waiting_rx = s.submit(waiting).unwrap();

    // One native join over 200 million holes: seconds in the engine's C code
    // without a poll of the interrupt handler, then done.
    let busy_host = MemHost::new();
    let mut busy = job(
        "await thetazero.storage_get('k');
         return Array.prototype.join.call({length: 3e7}, '').length;",
        &busy_host,
    );
    busy.scopes = all_scopes();
    busy.limits.cpu_time_ms = 120_000;
    busy.code_cache_scope = tenant;
    let busy_rx = s.submit(busy).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while busy_host.reached() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the busy run never made its call");
    // Its call answered, it is in the join now.
    tokio::time::sleep(Duration::from_millis(150)).await;
    kill.cancel();

    let killed = tokio::time::timeout(Duration::from_secs(30), waiting_rx)
        .await
        .expect("the kill never landed")
        .unwrap();
    assert_eq!(killed.status, Status::Killed, "{killed:?}");
    assert_eq!(
        killed.enforcement,
        Some(thetazero_sandbox::Enforcement::Cooperative),
        "the kill needed a forced stop: {killed:?}"
    );
    let done = tokio::time::timeout(Duration::from_secs(120), busy_rx)
        .await
        .expect("the busy run never ended")
        .unwrap();
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.output, serde_json::json!(0));
}
