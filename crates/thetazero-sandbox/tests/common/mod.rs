//! Shared test fixtures: an in-memory `Host` that records what reached it, and a helper to run code. Test-only; must not touch the network beyond 127.0.0.1.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use thetazero_sandbox::{
    EngineMode, ExecutionReport, Host, HostError, Job, ProcessConfig, Sandbox, SandboxConfig,
    SandboxEvent, Scope,
};

#[derive(Default)]
pub struct MemHost {
    pub context: Mutex<HashMap<String, Value>>,
    pub storage: Mutex<HashMap<String, Value>>,
    pub events: Mutex<Vec<SandboxEvent>>,
    /// Calls that reached a store method (not `record`).
    pub reached: AtomicUsize,
    pub fail_record: AtomicBool,
    /// Store methods never complete.
    pub hang: AtomicBool,
    pub dropped_pending: Arc<AtomicUsize>,
    /// Log entries put to `screen_log`, in the order they arrived.
    pub screened_logs: Mutex<Vec<String>>,
}

struct DropCounter(Arc<AtomicUsize>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl MemHost {
    pub fn new() -> Arc<MemHost> {
        Arc::new(MemHost::default())
    }
    pub fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
    pub fn events(&self) -> Vec<SandboxEvent> {
        self.events.lock().unwrap().clone()
    }
    pub fn denied_events(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, SandboxEvent::PermissionDenied { .. }))
            .count()
    }
    pub fn limit_events(&self) -> Vec<SandboxEvent> {
        self.events()
            .into_iter()
            .filter(|e| matches!(e, SandboxEvent::SandboxLimitHit { .. }))
            .collect()
    }
    async fn enter(&self) {
        self.reached.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            let _guard = DropCounter(self.dropped_pending.clone());
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Host for MemHost {
    async fn read_context(&self, key: &str) -> Result<Option<Value>, HostError> {
        self.enter().await;
        Ok(self.context.lock().unwrap().get(key).cloned())
    }
    async fn write_context(&self, key: &str, value: Value) -> Result<(), HostError> {
        self.enter().await;
        self.context.lock().unwrap().insert(key.into(), value);
        Ok(())
    }
    async fn storage_get(&self, key: &str) -> Result<Option<Value>, HostError> {
        self.enter().await;
        Ok(self.storage.lock().unwrap().get(key).cloned())
    }
    async fn storage_put(&self, key: &str, value: Value) -> Result<(), HostError> {
        self.enter().await;
        self.storage.lock().unwrap().insert(key.into(), value);
        Ok(())
    }
    /// Refuses any entry that holds `FORBIDDEN`, as content safety would.
    async fn screen_log(&self, message: &str) -> Result<(), HostError> {
        self.screened_logs.lock().unwrap().push(message.to_string());
        if message.contains("FORBIDDEN") {
            return Err(HostError::Blocked("log entry: test rule".into()));
        }
        Ok(())
    }
    async fn record(&self, event: SandboxEvent) -> Result<(), HostError> {
        if self.fail_record.load(Ordering::SeqCst) {
            return Err(HostError::Unavailable);
        }
        self.events.lock().unwrap().push(event);
        Ok(())
    }
}

/// The engine these tests run on: confined worker processes, or in process
/// with `THETAZERO_TEST_ENGINE=in_process` (the test script runs both).
pub fn engine_mode() -> EngineMode {
    match std::env::var("THETAZERO_TEST_ENGINE").as_deref() {
        Ok("in_process") => EngineMode::InProcess,
        _ => EngineMode::Process(process_config()),
    }
}

/// Workers started from this crate's own worker binary.
pub fn process_config() -> ProcessConfig {
    ProcessConfig::new(env!("CARGO_BIN_EXE_thetazero-sandbox-worker"), Vec::new())
}

pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            workers: 4,
            queue_capacity: 1024,
            mode: engine_mode(),
            ..SandboxConfig::default()
        })
        .unwrap()
    })
}

pub fn job(code: &str, host: &Arc<MemHost>) -> Job {
    let mut job = Job::new(code, Value::Null, host.clone());
    job.limits.cpu_time_ms = 20_000;
    job.limits.memory_mb = 32;
    job
}

pub fn all_scopes() -> BTreeSet<Scope> {
    Scope::ALL.into_iter().collect()
}

pub async fn run(job: Job) -> ExecutionReport {
    sandbox().execute(job).await.unwrap()
}

pub async fn run_code(code: &str) -> (ExecutionReport, Arc<MemHost>) {
    let host = MemHost::new();
    let report = run(job(code, &host)).await;
    (report, host)
}

/// After anything hostile: a fresh execution still works and sees clean globals.
pub async fn assert_clean_next() {
    let code = r#"
        const probes = [
          typeof Object.prototype.polluted, typeof Array.prototype.polluted,
          typeof globalThis.leak, typeof thetazero.injected, String(JSON.stringify),
          typeof Promise.prototype.then, [1,2,3].map(x => x * 2).join(","),
        ];
        return probes;
    "#;
    let (report, host) = run_code(code).await;
    assert_eq!(
        report.status,
        thetazero_sandbox::Status::Completed,
        "{report:?}"
    );
    assert_eq!(
        report.output,
        serde_json::json!([
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "function stringify() {\n    [native code]\n}",
            "function",
            "2,4,6"
        ]),
    );
    assert_eq!(host.reached(), 0);
}
