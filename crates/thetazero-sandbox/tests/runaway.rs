//! Runaway code in the confined engine: native loops over a length the caller chooses, job-queue floods and their combinations never complete past their deadline, are stopped by the path the audit event names, and leave no worker running them. Test-only; timings are measured by the `runaway` bench, not asserted here.
mod common;

use std::sync::Arc;

use common::*;
use thetazero_sandbox::{
    Enforcement, EngineMode, ExecutionReport, Sandbox, SandboxConfig, SandboxEvent, Status,
};

/// The corpus, shared with the `runaway` bench of the binary.
const CORPUS: &str = include_str!("fixtures/runaway.tsv");

/// Each form runs with 300 ms and 64 MiB.
fn runaway() -> Vec<(&'static str, &'static str)> {
    CORPUS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .collect()
}

fn sandbox_for_runaways() -> &'static Sandbox {
    static S: std::sync::OnceLock<Sandbox> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        // One worker per account, as on a machine other accounts keep busy:
        // runs of an account queue behind its runaway.
        let mut config = process_config();
        config.spare_workers_per_account = Some(0);
        Sandbox::new(SandboxConfig {
            mode: EngineMode::Process(config),
            ..SandboxConfig::default()
        })
        .unwrap()
    })
}

async fn run_form(tenant: u64, code: &str) -> (ExecutionReport, Arc<MemHost>) {
    let host = MemHost::new();
    let mut j = job(code, &host);
    j.limits.cpu_time_ms = 300;
    j.limits.memory_mb = 64;
    j.code_cache_scope = tenant;
    let r = sandbox_for_runaways().execute(j).await.unwrap();
    (r, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runaway_form_is_stopped_and_says_how() {
    let forms = runaway();
    assert!(forms.len() >= 40, "{}", forms.len());
    // A few at a time, each form under its own account so that a stopped
    // worker fails nothing but that form.
    for (batch, forms) in forms.chunks(6).enumerate() {
        let mut tasks = Vec::new();
        for (i, &(name, code)) in forms.iter().enumerate() {
            let tenant = 10_000 + (batch * 6 + i) as u64;
            tasks.push(tokio::spawn(async move {
                (name, tenant, run_form(tenant, code).await)
            }));
        }
        for t in tasks {
            let (name, tenant, (r, host)) = t.await.unwrap();
            assert!(
                matches!(r.status, Status::TimedOut | Status::LimitExceeded),
                "{name}: {:?} {:?}",
                r.status,
                r.error
            );
            assert!(r.was_terminated, "{name}");
            assert_eq!(r.tee_mode, "process_sandbox");
            let enforced = r.enforcement.expect("a stopped run says how");
            eprintln!("{name}: {:?} by {}", r.status, enforced.as_str());
            let events = host.limit_events();
            assert_eq!(events.len(), 1, "{name}: {events:?}");
            match &events[0] {
                SandboxEvent::SandboxLimitHit {
                    limit,
                    enforcement,
                    detail,
                    is_violation,
                } => {
                    assert_eq!(Some(*limit), r.limit, "{name}");
                    assert_eq!(*enforcement, enforced, "{name}");
                    assert!(detail.contains(enforced.as_str()), "{name}: {detail}");
                    assert!(is_violation);
                }
                other => panic!("{name}: {other:?}"),
            }
            if enforced == Enforcement::Watchdog {
                // The worker that ran it is gone.
                assert!(
                    !sandbox_for_runaways()
                        .worker_pids()
                        .iter()
                        .any(|(t, _)| *t == tenant),
                    "{name}: a worker of its account is still alive"
                );
            }
        }
    }
    // The engine still serves, for a new account and an old one alike.
    for tenant in [1, 10_000] {
        let (r, _) = run_form(tenant, "return 6 * 7").await;
        assert_eq!(r.status, Status::Completed, "{r:?}");
        assert_eq!(r.output, serde_json::json!(42));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_fails_only_its_own_accounts_runs_and_names_the_cause() {
    let s = sandbox_for_runaways();
    // Account 500: one run parked on a host call that never answers, then
    // one that spins in a native loop. Account 501: a parked run too.
    let parked_host = MemHost::new();
    parked_host
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut parked = job("await thetazero.read_context('k'); return 1", &parked_host);
    parked.scopes = all_scopes();
    parked.limits.cpu_time_ms = 20_000;
    parked.code_cache_scope = 500;
    let parked_cancel = parked.cancel.clone();
    let parked_rx = s.submit(parked).unwrap();

    let other_host = MemHost::new();
    other_host
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut other = job("await thetazero.read_context('k'); return 1", &other_host);
    other.scopes = all_scopes();
    other.limits.cpu_time_ms = 20_000;
    other.code_cache_scope = 501;
    let other_cancel = other.cancel.clone();
    let other_rx = s.submit(other).unwrap();

    // Both are suspended once their calls reached the host.
    while parked_host.reached() == 0 || other_host.reached() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (spin, spin_host) = {
        let host = MemHost::new();
        let mut j = job(
            "return Array.prototype.join.call({length: 2 ** 53 - 1}, '');",
            &host,
        );
        j.limits.cpu_time_ms = 300;
        j.execution_id = 77;
        j.code_cache_scope = 500;
        (s.execute(j).await.unwrap(), host)
    };
    assert_eq!(spin.status, Status::TimedOut, "{spin:?}");
    assert_eq!(spin.enforcement, Some(Enforcement::Watchdog));
    assert_eq!(spin_host.limit_events().len(), 1);

    // The parked run of the same account shared the worker: it failed with
    // WORKER_STOPPED and an event naming execution 77.
    let parked = parked_rx.await.unwrap();
    assert_eq!(parked.status, Status::Failed, "{parked:?}");
    let error = parked.error.clone().unwrap();
    assert_eq!(error.code.as_deref(), Some("WORKER_STOPPED"));
    let stopped: Vec<_> = parked_host
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SandboxEvent::WorkerStopped {
                cause_execution_id,
                reason,
            } => Some((cause_execution_id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(stopped[0].0, Some(77));
    assert!(stopped[0].1.contains("execution 77"), "{}", stopped[0].1);
    drop(parked_cancel);

    // The other account's run is untouched: still waiting, then killed on
    // request, with a confirmed stop.
    let other_pids: Vec<_> = s
        .worker_pids()
        .into_iter()
        .filter(|(t, _)| *t == 501)
        .collect();
    assert_eq!(other_pids.len(), 1);
    other_cancel.cancel();
    let other = other_rx.await.unwrap();
    assert_eq!(other.status, Status::Killed, "{other:?}");
    // Ended by the kill, not by the other account's stopped worker.
    assert_eq!(other.error.unwrap().code.as_deref(), Some("KILLED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_land_in_every_state() {
    let s = sandbox_for_runaways();
    let cases: &[(&str, &str, bool)] = &[
        ("spinning in bytecode", "for (;;) {}", false),
        (
            "spinning in a native loop",
            "return Array.prototype.join.call({length: 2 ** 53 - 1}, '');",
            false,
        ),
        (
            "waiting on a host call",
            "await thetazero.read_context('k'); return 1",
            true,
        ),
        (
            "a microtask flood",
            "const f = () => Promise.resolve().then(f); f(); await new Promise(() => {});",
            false,
        ),
    ];
    for (i, (name, code, hang)) in cases.iter().enumerate() {
        let host = MemHost::new();
        host.hang.store(*hang, std::sync::atomic::Ordering::SeqCst);
        let mut j = job(code, &host);
        j.scopes = all_scopes();
        j.limits.cpu_time_ms = 60_000;
        j.code_cache_scope = 700 + i as u64;
        let cancel = j.cancel.clone();
        let rx = s.submit(j).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        cancel.cancel();
        let r = rx.await.unwrap();
        assert_eq!(r.status, Status::Killed, "{name}: {r:?}");
        assert!(r.was_terminated, "{name}");
        assert!(r.enforcement.is_some(), "{name}");
        // A new run of the same account works afterwards.
        let (after, _) = run_form(700 + i as u64, "return 'alive'").await;
        assert_eq!(after.status, Status::Completed, "{name}: {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_queued_behind_a_runaway_of_their_account_start_on_a_fresh_worker() {
    let s = sandbox_for_runaways();
    let host = MemHost::new();
    let mut spin = job(
        "return Array.prototype.join.call({length: 2 ** 53 - 1}, '');",
        &host,
    );
    spin.limits.cpu_time_ms = 300;
    spin.code_cache_scope = 800;
    let spin = s.submit(spin).unwrap();
    // Queued in the same worker behind the runaway; none has started.
    let mut queued = Vec::new();
    for i in 0..3 {
        let host = MemHost::new();
        let mut j = job(&format!("return {i}"), &host);
        j.code_cache_scope = 800;
        queued.push(s.submit(j).unwrap());
    }
    let spin = spin.await.unwrap();
    assert_eq!(spin.status, Status::TimedOut, "{spin:?}");
    for (i, rx) in queued.into_iter().enumerate() {
        let r = rx.await.unwrap();
        assert_eq!(r.status, Status::Completed, "{r:?}");
        assert_eq!(r.output, serde_json::json!(i));
    }
}
