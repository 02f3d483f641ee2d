//! Cancellation: a tight loop, a pending host call and a never-settling promise are all killed. How fast is measured by the runaway bench, not here; a kill that never lands fails the test at its liveness bound. Test-only.
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use thetazero_sandbox::Status;

/// How long a test waits for something that must happen before it counts
/// as never happening.
const LIVENESS: Duration = Duration::from_secs(60);

/// Waits until `ready` holds, failing the test at the liveness bound.
async fn until(what: &str, ready: impl Fn() -> bool) {
    tokio::time::timeout(LIVENESS, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} never happened"));
}

async fn cancel_after_start(
    code: &str,
    hang: bool,
) -> (thetazero_sandbox::ExecutionReport, std::sync::Arc<MemHost>) {
    let host = MemHost::new();
    host.hang.store(hang, Ordering::SeqCst);
    let mut j = job(code, &host);
    j.limits.cpu_time_ms = 60_000;
    j.scopes = all_scopes();
    let cancel = j.cancel.clone();
    let rx = sandbox().submit(j).unwrap();
    if hang {
        // Cancel only once the call is pending in the host.
        until("the host call", || host.reached() == 1).await;
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    let r = tokio::time::timeout(LIVENESS, rx)
        .await
        .expect("the kill never landed")
        .unwrap();
    (r, host)
}

#[tokio::test]
async fn cancels_a_tight_loop() {
    let (r, _) = cancel_after_start("for (;;) {}", false).await;
    assert_eq!(r.status, Status::Killed);
    assert!(r.was_terminated);
    // The engine ended it: in a worker, the spinning run's own interrupt
    // handler read the kill from the channel; the watchdog had no part.
    assert_eq!(
        r.enforcement,
        Some(thetazero_sandbox::Enforcement::Cooperative),
        "{r:?}"
    );
}

#[tokio::test]
async fn cancels_a_loop_after_await() {
    let (r, _) = cancel_after_start(
        "await null; while (true) { try { for(;;){} } catch (e) {} }",
        false,
    )
    .await;
    assert_eq!(r.status, Status::Killed);
}

#[tokio::test]
async fn cancels_a_pending_host_call_and_drops_it() {
    let (r, host) = cancel_after_start("await thetazero.read_context('k'); return 1", true).await;
    assert_eq!(r.status, Status::Killed);
    assert_eq!(host.reached(), 1);
    // The pending future is dropped by the task that held it, which may end
    // just after the report is sent.
    until("the drop of the pending host future", || {
        host.dropped_pending.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn cancels_a_never_settling_promise() {
    let (r, _) = cancel_after_start("await new Promise(() => {}); return 1", false).await;
    assert_eq!(r.status, Status::Killed);
}

#[tokio::test]
async fn cancelled_before_start_never_runs() {
    let host = MemHost::new();
    let mut j = job("await thetazero.read_context('k')", &host);
    j.scopes = all_scopes();
    j.cancel.cancel();
    let r = run(j).await;
    assert_eq!(r.status, Status::Killed);
    assert_eq!(host.reached(), 0);
}

#[tokio::test]
async fn sandbox_is_healthy_after_kills() {
    for _ in 0..3 {
        cancel_after_start("for (;;) {}", false).await;
    }
    assert_clean_next().await;
}
