//! Every limit: hit, reported with the right status and limit, counted within the limit plus a small margin, with a `sandbox_limit_hit` event. Test-only.
mod common;

use common::*;
use serde_json::json;
use thetazero_sandbox::{Job, LimitKind, SandboxEvent, Status};

fn limit_of(r: &thetazero_sandbox::ExecutionReport) -> Option<LimitKind> {
    r.limit
}

async fn expect_limit(
    j: Job,
    host: &MemHost,
    status: Status,
    limit: LimitKind,
) -> thetazero_sandbox::ExecutionReport {
    let r = run(j).await;
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(limit_of(&r), Some(limit), "{r:?}");
    assert!(r.was_terminated);
    assert!(r.violation_count >= 1);
    let events = host.limit_events();
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        SandboxEvent::SandboxLimitHit {
            limit: l,
            is_violation,
            ..
        } => {
            assert_eq!(*l, limit);
            assert!(is_violation);
        }
        other => panic!("{other:?}"),
    }
    r
}

#[tokio::test]
async fn memory_limits() {
    for code in [
        "const a = []; for (;;) a.push('x'.repeat(100000) + Math.random());",
        "const a = []; for (;;) a.push(new Array(100000).fill(1.5));",
        "const a = []; for (;;) a.push(new Float64Array(1 << 20));",
        "const m = new Map(); for (let i = 0; ; i++) m.set(i, {i, s: 'v' + i});",
        // Caught out-of-memory still ends the run: the host counts, not the script.
        "try { new ArrayBuffer(1e9) } catch (e) {} return 'survived'",
        "let s = 'ab'; try { for (;;) s = (s + s).toUpperCase(); } catch (e) {} return s.length",
    ] {
        let host = MemHost::new();
        let r = expect_limit(
            job(code, &host),
            &host,
            Status::LimitExceeded,
            LimitKind::Memory,
        )
        .await;
        assert!(
            r.resource_usage.memory_mb <= 32.0 + 1.0,
            "{code}: {}",
            r.resource_usage.memory_mb
        );
        assert_eq!(r.output, json!(null), "{code}");
    }
    assert_clean_next().await;
}

/// An output within its byte cap still counts against the memory limit as
/// it is held once parsed: 20,000 small records (about 0.8 MB of JSON, far
/// more as parsed values, held by the engine and the server) end a 16 MiB
/// run at its memory limit; 100,000 numbers of similar text fit.
#[tokio::test]
async fn a_parsed_output_counts_against_the_memory_limit() {
    let host = MemHost::new();
    let mut j = job(
        "return Array.from({length: 20000}, (_, i) => ({id: i, sku: 'A-' + i, qty: i % 9}));",
        &host,
    );
    j.limits.memory_mb = 16;
    let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::Memory).await;
    assert_eq!(r.output, json!(null));
    assert!(
        r.limit_detail
            .as_deref()
            .unwrap_or("")
            .contains("once parsed"),
        "{:?}",
        r.limit_detail
    );

    let host = MemHost::new();
    let mut j = job(
        "return Array.from({length: 100000}, (_, i) => i * 7);",
        &host,
    );
    j.limits.memory_mb = 16;
    let r = run(j).await;
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.output.as_array().map(Vec::len), Some(100_000));
}

#[tokio::test]
async fn stack_limit() {
    for code in [
        "function f(n) { return f(n + 1) + 1 } f(0)",
        "const o = {}; o.toJSON = function () { return [this, {toJSON: o.toJSON}] }; JSON.stringify(o)",
        "let a = []; for (let i = 0; i < 1e5; i++) a = [a]; return JSON.stringify(a).length",
    ] {
        let host = MemHost::new();
        let r = run(job(code, &host)).await;
        assert!(r.status == Status::LimitExceeded && r.limit == Some(LimitKind::Stack), "{code}: {r:?}");
        assert_eq!(host.limit_events().len(), 1);
    }
}

/// An overflow the agent catches is an ordinary `RangeError` to it: the
/// stack held, the run goes on, and its other limits still end it.
#[tokio::test]
async fn a_caught_stack_overflow_is_a_range_error_and_the_run_goes_on() {
    let host = MemHost::new();
    let r = run(job(
        "function f(n) { return f(n + 1) + 1 } try { f(0) } catch (e) { return [e instanceof RangeError, e.message] }",
        &host,
    ))
    .await;
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.output, json!([true, "Maximum call stack size exceeded"]));
    assert!(host.limit_events().is_empty());
    // Overflowing again and again only spends the run's own time.
    let host = MemHost::new();
    let mut j = job(
        "function f(n) { return f(n + 1) + 1 } for (;;) { try { f(0) } catch (e) {} }",
        &host,
    );
    j.limits.cpu_time_ms = 300;
    expect_limit(j, &host, Status::TimedOut, LimitKind::CpuTime).await;
    assert_clean_next().await;
}

#[tokio::test]
async fn api_calls_per_run() {
    let host = MemHost::new();
    let mut j = job("for (let i = 0; i < 100; i++) { try { await thetazero.read_context('k') } catch (e) {} } return 'done'", &host);
    j.scopes = all_scopes();
    j.limits.max_api_calls_per_run = 5;
    let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::ApiCalls).await;
    assert_eq!(host.reached(), 5);
    assert_eq!(r.resource_usage.api_calls, 6);
    // Refused calls count too: a flood of denied calls ends the run.
    let host = MemHost::new();
    let mut j = job(
        "for (;;) { try { await thetazero.storage_get('k') } catch (e) {} }",
        &host,
    );
    j.limits.max_api_calls_per_run = 10;
    let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::ApiCalls).await;
    assert_eq!(host.reached(), 0);
    assert_eq!(host.denied_events(), 10);
    assert_eq!(r.resource_usage.api_calls, 11);
}

#[tokio::test]
async fn api_calls_per_minute() {
    let host = MemHost::new();
    let mut j = job(
        "for (let i = 0; i < 20; i++) { try { await thetazero.read_context('k') } catch (e) {} }",
        &host,
    );
    j.scopes = all_scopes();
    j.limits.max_api_calls_per_minute = 3;
    expect_limit(
        j,
        &host,
        Status::LimitExceeded,
        LimitKind::ApiCallsPerMinute,
    )
    .await;
    assert_eq!(host.reached(), 3);
}

#[tokio::test]
async fn output_size() {
    for code in [
        "return 'x'.repeat(2000)",
        "thetazero.write_result({s: 'y'.repeat(2000)}); return",
        "try { thetazero.write_result('z'.repeat(5000)) } catch (e) {} return 1",
    ] {
        let host = MemHost::new();
        let mut j = job(code, &host);
        j.limits.max_output_bytes = 1000;
        let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::OutputSize).await;
        assert_eq!(r.output, json!(null), "{code}");
    }
    let host = MemHost::new();
    let mut j = job("return 'x'.repeat(990)", &host);
    j.limits.max_output_bytes = 1000;
    assert_eq!(run(j).await.status, Status::Completed);
}

#[tokio::test]
async fn log_volume() {
    let host = MemHost::new();
    let mut j = job(
        "for (let i = 0; ; i++) { try { thetazero.log('line ' + i) } catch (e) {} }",
        &host,
    );
    j.limits.max_log_entries = 50;
    let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::LogVolume).await;
    assert_eq!(r.logs.len(), 50);
    let host = MemHost::new();
    let mut j = job("for (;;) thetazero.log('x'.repeat(1000))", &host);
    j.limits.max_log_bytes = 10_000;
    let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::LogVolume).await;
    assert_eq!(r.logs.len(), 10);
    assert!(r.logs.iter().map(|l| l.message.len()).sum::<usize>() <= 10_000);
}

#[tokio::test]
async fn input_size() {
    let host = MemHost::new();
    let mut j = job("await thetazero.read_context('k')", &host);
    j.scopes = all_scopes();
    j.input = json!({"blob": "x".repeat(5000)});
    j.limits.max_input_bytes = 1000;
    expect_limit(j, &host, Status::LimitExceeded, LimitKind::InputSize).await;
    assert_eq!(host.reached(), 0);
}

#[tokio::test]
async fn deadline() {
    for code in [
        "for (;;) {}",
        "await null; for (;;) {}",
        "await new Promise(() => {})",
        "while (true) { try { for (;;) {} } catch (e) {} finally { continue } }",
        "/(a+)+$/.test('a'.repeat(40) + 'b')",
        "const o = {toString() { for (;;) {} }}; thetazero.log(String(o))",
    ] {
        let host = MemHost::new();
        let mut j = job(code, &host);
        j.limits.cpu_time_ms = 300;
        let r = expect_limit(j, &host, Status::TimedOut, LimitKind::CpuTime).await;
        assert!(r.duration_ms < 5_000.0, "{code}: {}", r.duration_ms);
    }
}

#[tokio::test]
async fn what_a_run_makes_the_sandbox_hold_counts_against_its_memory() {
    // Refused calls with 1 MiB arguments, all pending at once: each is held
    // until it settles, so a 16 MiB run ends at its memory limit instead of
    // growing the server (600 such calls once held 580 MB).
    let host = MemHost::new();
    let mut j = job(
        "const big = 'x'.repeat(1 << 20); const ps = []; \
         for (let i = 0; i < 600; i += 1) ps.push(thetazero.storage_put('k' + i, big).catch(e => e.code)); \
         return await Promise.all(ps);",
        &host,
    );
    j.limits.memory_mb = 16;
    j.limits.max_output_bytes = 4 << 20;
    j.limits.max_api_calls_per_run = 1000;
    j.limits.max_api_calls_per_minute = 1000;
    let r = expect_limit(j, &host, Status::LimitExceeded, LimitKind::Memory).await;
    assert!(r.resource_usage.api_calls < 600, "{:?}", r.resource_usage);

    // A log flood of entries each under the volume cap, in a small run.
    let host = MemHost::new();
    let mut j = job(
        "const line = 'y'.repeat(60000); for (;;) await thetazero.log(line);",
        &host,
    );
    j.limits.memory_mb = 4;
    j.limits.max_log_entries = 1_000_000;
    j.limits.max_log_bytes = 1 << 40;
    expect_limit(j, &host, Status::LimitExceeded, LimitKind::Memory).await;
}
