//! Cancellation: a tight loop, a pending host call and a never-settling promise are all killed within a generous bound. Test-only.
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use thetazero_sandbox::Status;

async fn cancel_after_start(
    code: &str,
    hang: bool,
) -> (
    thetazero_sandbox::ExecutionReport,
    std::sync::Arc<MemHost>,
    Duration,
) {
    let host = MemHost::new();
    host.hang.store(hang, Ordering::SeqCst);
    let mut j = job(code, &host);
    j.limits.cpu_time_ms = 60_000;
    j.scopes = all_scopes();
    let cancel = j.cancel.clone();
    let rx = sandbox().submit(j).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    cancel.cancel();
    let r = rx.await.unwrap();
    (r, host, start.elapsed())
}

#[tokio::test]
async fn cancels_a_tight_loop() {
    let (r, _, took) = cancel_after_start("for (;;) {}", false).await;
    assert_eq!(r.status, Status::Killed);
    assert!(r.was_terminated);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn cancels_a_loop_after_await() {
    let (r, _, _) = cancel_after_start(
        "await null; while (true) { try { for(;;){} } catch (e) {} }",
        false,
    )
    .await;
    assert_eq!(r.status, Status::Killed);
}

#[tokio::test]
async fn cancels_a_pending_host_call_and_drops_it() {
    let (r, host, took) =
        cancel_after_start("await thetazero.read_context('k'); return 1", true).await;
    assert_eq!(r.status, Status::Killed);
    assert_eq!(host.reached(), 1);
    assert!(took < Duration::from_secs(2));
    assert_eq!(
        host.dropped_pending.load(Ordering::SeqCst),
        1,
        "the pending host future was dropped"
    );
}

#[tokio::test]
async fn cancels_a_never_settling_promise() {
    let (r, _, took) = cancel_after_start("await new Promise(() => {}); return 1", false).await;
    assert_eq!(r.status, Status::Killed);
    assert!(took < Duration::from_secs(2));
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
