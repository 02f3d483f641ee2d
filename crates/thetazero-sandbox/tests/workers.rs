//! Worker processes that crash, are SIGKILLed, speak garbage or are not confined: each fails only its own runs with a clear status, the sandbox keeps serving, and an unconfined worker stops the sandbox from starting at all. Test-only.
mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::*;
use thetazero_sandbox::{EngineMode, ProcessConfig, Sandbox, SandboxConfig, SandboxError, Status};

fn python() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("python3"))
        .find(|p| p.is_file())
        .expect("python3 is installed")
}

fn fake(mode: &str) -> Result<Sandbox, SandboxError> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake_worker.py");
    let config = ProcessConfig::new(python(), vec![script.into(), mode.into()]);
    Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    })
}

#[tokio::test]
async fn a_worker_that_is_not_confined_stops_the_sandbox_from_starting() {
    match fake("unconfined") {
        Err(SandboxError::Confinement(why)) => {
            assert!(why.contains("open a TCP socket"), "{why}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an unconfined worker was accepted"),
    }
    // A worker program that reports nothing fails closed too.
    let config = ProcessConfig::new("/bin/true", Vec::new());
    let refused = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    });
    assert!(matches!(refused, Err(SandboxError::Confinement(_))));
}

#[tokio::test]
async fn the_real_worker_is_confined_by_the_kernel() {
    let probe = process_config().check().expect("confinement holds here");
    let c = probe.confinement.clone().expect("confinement reported");
    assert!(c.seccomp && c.no_new_privs && c.rlimits);
    assert!(
        c.landlock == "fully_enforced" || c.landlock == "partially_enforced",
        "{c:?}"
    );
    // Every attempt was tried for real and refused by the kernel.
    for what in [
        "read a file (/etc/hostname)",
        "create a file",
        "open a TCP socket",
        "open a UDP socket",
        "open a Unix socket",
        "run a program (/bin/sh)",
        "fork",
        "signal the server",
        "queue a signal to the server",
        "create shared memory (System V)",
        "read the kernel log",
        "hold a capability",
    ] {
        let outcome = probe.attempts.get(what).expect(what);
        assert!(outcome.starts_with("refused"), "{what}: {outcome}");
    }
    assert_eq!(probe.environment_variables, 0);
}

#[tokio::test]
async fn misbehaving_workers_fail_only_their_runs() {
    for mode in ["garbage", "oversize", "crash", "unknown_run"] {
        let sandbox = fake(mode).unwrap();
        for _ in 0..2 {
            let host = MemHost::new();
            let r = sandbox.execute(job("return 1", &host)).await.unwrap();
            assert_eq!(r.status, Status::Failed, "{mode}: {r:?}");
            // The stand-in never starts a run: it is tried on fresh workers,
            // then failed as the sandbox's fault, not the agent's.
            let error = r.error.unwrap();
            assert_eq!(error.code.as_deref(), Some("WORKER_FAILED"), "{mode}");
            assert_eq!(host.reached(), 0, "{mode}: a forged call reached the host");
        }
        assert!(
            sandbox.worker_pids().is_empty(),
            "{mode}: a worker was left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_fails_its_runs_and_is_replaced() {
    let sandbox = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(process_config()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let host = MemHost::new();
    host.hang.store(true, Ordering::SeqCst);
    let mut j = job("await thetazero.read_context('k'); return 1", &host);
    j.scopes = all_scopes();
    j.code_cache_scope = 3;
    let rx = sandbox.submit(j).unwrap();
    while host.reached() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let pids = sandbox.worker_pids();
    assert_eq!(pids.len(), 1);
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[0].1.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = rx.await.unwrap();
    assert_eq!(r.status, Status::Failed, "{r:?}");
    assert_eq!(r.error.unwrap().code.as_deref(), Some("WORKER_STOPPED"));
    // The pending host call is dropped with the run (its task is aborted,
    // which lands at its next poll).
    for _ in 0..200 {
        if host.dropped_pending.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(host.dropped_pending.load(Ordering::SeqCst), 1);
    let (after, _) = {
        let host = MemHost::new();
        let mut j = job("return 'again'", &host);
        j.code_cache_scope = 3;
        (sandbox.execute(j).await.unwrap(), host)
    };
    assert_eq!(after.status, Status::Completed, "{after:?}");
    assert_ne!(sandbox.worker_pids()[0].1, pids[0].1);
}

fn resident_bytes_of_self() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_budget_the_largest_worker_ends_and_its_runs_say_memory() {
    // A budget a little above what this process holds now: one run that
    // keeps allocating (well under its own 512 MiB limit) passes it.
    let mut config = process_config();
    config.memory_budget_bytes = resident_bytes_of_self() + (96 << 20);
    let sandbox = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    })
    .unwrap();
    let host = MemHost::new();
    let mut j = job(
        "const keep = []; for (let i = 0; i < 2000; i += 1) { keep.push('x'.repeat(1 << 20) + i); await null; } return keep.length;",
        &host,
    );
    j.limits.memory_mb = 512;
    j.limits.cpu_time_ms = 60_000;
    j.code_cache_scope = 9;
    let r = sandbox.execute(j).await.unwrap();
    assert_eq!(r.status, Status::LimitExceeded, "{r:?}");
    assert_eq!(r.limit, Some(thetazero_sandbox::LimitKind::Memory));
    let events = host.limit_events();
    assert_eq!(events.len(), 1, "{events:?}");
    // Once the worker is gone the pool takes runs again.
    let mut ok = None;
    for _ in 0..50 {
        let host = MemHost::new();
        match sandbox.submit(job("return 2", &host)) {
            Ok(rx) => {
                ok = Some(rx.await.unwrap());
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    let ok = ok.expect("admission resumed");
    assert_eq!(ok.status, Status::Completed, "{ok:?}");
}

/// The scheduling policy of a process's main thread, from /proc (field 41
/// of `stat`): 0 is the ordinary class, 5 `SCHED_IDLE`.
fn policy(pid: u32) -> u32 {
    policy_of(&pid.to_string())
}

/// The same for `/proc/<path>/stat` (a process or one of its threads).
fn policy_of(path: &str) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(38).unwrap().parse().unwrap()
}

fn pids_of(sandbox: &Sandbox, tenant: u64) -> Vec<u32> {
    sandbox
        .worker_pids()
        .into_iter()
        .filter(|&(t, _)| t == tenant)
        .map(|(_, pid)| pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_worker_serves_a_lone_account_and_is_retired_when_another_comes() {
    let mut config = process_config();
    config.workers_per_account = 1;
    config.spare_workers_per_account = Some(1);
    let sandbox = Sandbox::new(SandboxConfig {
        mode: EngineMode::Process(config),
        ..SandboxConfig::default()
    })
    .unwrap();
    let host = MemHost::new();
    host.hang.store(true, Ordering::SeqCst);
    let waiting = |tenant: u64| {
        let mut j = job("await thetazero.read_context('k'); return 1", &host);
        j.scopes = all_scopes();
        j.code_cache_scope = tenant;
        j
    };
    // Account 5 alone: its second run goes to a spare, in the ordinary class.
    let first = waiting(5);
    let second = waiting(5);
    let cancels = [first.cancel.clone(), second.cancel.clone()];
    let rx1 = sandbox.submit(first).unwrap();
    while host.reached() < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let rx2 = sandbox.submit(second).unwrap();
    while host.reached() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mine = pids_of(&sandbox, 5);
    assert_eq!(mine.len(), 2, "{:?}", sandbox.worker_pids());
    assert!(mine.iter().all(|&pid| policy(pid) == 0));

    // Account 6 comes: the spare is retired at once (idle class), and the
    // ordinary worker keeps the ordinary class.
    let other = waiting(6);
    let other_cancel = other.cancel.clone();
    let rx3 = sandbox.submit(other).unwrap();
    let policies: Vec<u32> = mine.iter().map(|&pid| policy(pid)).collect();
    assert_eq!(
        {
            let mut p = policies.clone();
            p.sort();
            p
        },
        vec![0, 5],
        "{policies:?}"
    );
    let spare = mine[policies.iter().position(|&p| p == 5).unwrap()];
    // Only its engine thread (the main thread): the sentinel, which beats
    // for the watchdog, keeps the ordinary class.
    let threads: Vec<u32> = std::fs::read_dir(format!("/proc/{spare}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .filter(|&tid| tid != spare)
        .collect();
    assert!(!threads.is_empty());
    for tid in threads {
        assert_eq!(policy_of(&format!("{spare}/task/{tid}")), 0, "thread {tid}");
    }
    while host.reached() < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // While account 6 has a run in flight, account 5 gets no new worker and
    // the retired spare no new run: a third run shares the ordinary worker.
    let third = waiting(5);
    let third_cancel = third.cancel.clone();
    let rx4 = sandbox.submit(third).unwrap();
    while host.reached() < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(pids_of(&sandbox, 5).len(), 2);

    // Account 6 leaves; account 5 is alone again, but its retired spare,
    // still holding a run, counts: a fourth run starts no new spare.
    other_cancel.cancel();
    let r = rx3.await.unwrap();
    assert_eq!(r.status, Status::Killed, "{r:?}");
    let fourth = waiting(5);
    let fourth_cancel = fourth.cancel.clone();
    let rx5 = sandbox.submit(fourth).unwrap();
    while host.reached() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(pids_of(&sandbox, 5).len(), 2, "{:?}", sandbox.worker_pids());
    assert_eq!(policy(spare), 5);

    // The spare holds the second run only: once that one is killed (the
    // kill is confirmed as ever) it exits, while the others still wait.
    cancels[1].cancel();
    let r = rx2.await.unwrap();
    assert_eq!(r.status, Status::Killed, "{r:?}");
    for _ in 0..200 {
        if !pids_of(&sandbox, 5).contains(&spare) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !pids_of(&sandbox, 5).contains(&spare),
        "the retired spare is still alive"
    );
    for cancel in [&cancels[0], &third_cancel, &fourth_cancel] {
        cancel.cancel();
    }
    for rx in [rx1, rx4, rx5] {
        let r = rx.await.unwrap();
        assert_eq!(r.status, Status::Killed, "{r:?}");
    }
}
