//! Permission matrix: every host call with and without its scope, fail-closed auditing, refused calls are catchable and reported. Test-only.
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;
use thetazero_sandbox::{SandboxEvent, Scope, Status};

/// (call, scope it needs, calls that reach the host when allowed)
const CASES: [(&str, Scope, usize); 5] = [
    ("thetazero.write_context('k', {v: 1})", Scope::DataWrite, 1),
    ("thetazero.storage_get('k')", Scope::StorageRead, 1),
    ("thetazero.storage_put('k', [1, 2])", Scope::StorageWrite, 1),
    (
        "thetazero.inference({prompt: 'x'})",
        Scope::InferenceCall,
        0,
    ),
    ("thetazero.get_execution(1)", Scope::AgentsRead, 0),
];

async fn attempt(
    call: &str,
    scopes: BTreeSet<Scope>,
) -> (thetazero_sandbox::ExecutionReport, std::sync::Arc<MemHost>) {
    let host = MemHost::new();
    let mut j = job(
        &format!("try {{ return {{ok: true, v: await {call}}} }} catch (e) {{ return {{ok: false, code: e.code, msg: e.message}} }}"),
        &host,
    );
    j.scopes = scopes;
    (run(j).await, host)
}

#[tokio::test]
async fn each_call_with_and_without_its_scope() {
    for (call, scope, reach) in CASES {
        // Without: everything else granted, this scope missing.
        let mut others = all_scopes();
        others.remove(&scope);
        let (r, host) = attempt(call, others).await;
        assert_eq!(r.status, Status::Completed, "{call}");
        assert_eq!(r.output["ok"], json!(false), "{call}: {r:?}");
        assert_eq!(r.output["code"], json!("PERMISSION_DENIED"), "{call}");
        assert_eq!(host.reached(), 0, "{call} reached the host without {scope}");
        assert_eq!(host.denied_events(), 1, "{call}");
        assert_eq!(r.violation_count, 1);
        assert!(!r.host_call_audit[0].allowed);
        // With only this scope.
        let (r, host) = attempt(call, BTreeSet::from([scope])).await;
        assert_eq!(r.status, Status::Completed, "{call}");
        assert_eq!(host.reached(), reach, "{call} with {scope}: {r:?}");
        assert_eq!(host.denied_events(), 0, "{call}");
        assert!(r.host_call_audit[0].allowed, "{call}");
        assert_eq!(r.resource_usage.api_calls, 1);
        if reach == 0 {
            // Unsupported by this host: allowed but failing with a stable code.
            assert_eq!(r.output["code"], json!("UNSUPPORTED"), "{call}");
        } else {
            assert_eq!(r.output["ok"], json!(true), "{call}: {r:?}");
        }
        let decisions = host
            .events()
            .iter()
            .filter(|e| matches!(e, SandboxEvent::HostCallDecision { allowed: true, .. }))
            .count();
        assert_eq!(decisions, 1, "{call}");
    }
}

#[tokio::test]
async fn nothing_is_granted_by_default() {
    for (call, _, _) in CASES {
        let (r, host) = attempt(call, BTreeSet::new()).await;
        assert_eq!(r.output["code"], json!("PERMISSION_DENIED"), "{call}");
        assert_eq!(host.reached(), 0);
    }
    let (r, _) = attempt("thetazero.call_agent('other', {})", BTreeSet::new()).await;
    assert_eq!(r.output["code"], json!("PERMISSION_DENIED"));
    let (r, _) = attempt(
        "thetazero.http_request('https://example.com/')",
        BTreeSet::new(),
    )
    .await;
    assert_eq!(r.output["code"], json!("PERMISSION_DENIED"));
}

#[tokio::test]
async fn http_needs_scope_and_allow_network() {
    let (r, host) = attempt(
        "thetazero.http_request('https://example.com/')",
        BTreeSet::from([Scope::NetworkOutbound]),
    )
    .await;
    assert_eq!(r.output["code"], json!("PERMISSION_DENIED"), "{r:?}");
    assert!(r.output["msg"].as_str().unwrap().contains("allow_network"));
    assert_eq!(host.denied_events(), 1);
}

/// Reading the agent's own context needs no scope (the spec's host-API table).
#[tokio::test]
async fn reading_own_context_needs_no_scope() {
    let (r, host) = attempt("thetazero.read_context('k')", BTreeSet::new()).await;
    assert_eq!(r.output["ok"], json!(true), "{r:?}");
    assert_eq!(host.reached(), 1);
    assert_eq!(host.denied_events(), 0);
    assert_eq!(r.violation_count, 0);
    assert!(r.host_call_audit[0].allowed);
}

#[tokio::test]
async fn context_round_trip_and_null_when_unset() {
    let host = MemHost::new();
    let mut j = job("const a = await thetazero.read_context('n'); await thetazero.write_context('n', {c: 1}); return [a, await thetazero.read_context('n')]", &host);
    j.scopes = BTreeSet::from([Scope::DataRead, Scope::DataWrite]);
    let r = run(j).await;
    assert_eq!(r.output, json!([null, {"c": 1}]));
    assert_eq!(r.resource_usage.api_calls, 3);
    assert_eq!(r.host_call_audit.len(), 3);
    assert_eq!(r.host_call_audit[0].args_summary, "key=\"n\"");
}

#[tokio::test]
async fn audit_failure_fails_closed() {
    let host = MemHost::new();
    host.fail_record.store(true, Ordering::SeqCst);
    let mut j = job(
        "try { await thetazero.write_context('k', 1) } catch (e) { return e.code }",
        &host,
    );
    j.scopes = all_scopes();
    let r = run(j).await;
    assert_eq!(r.output, json!("AUDIT_UNAVAILABLE"));
    assert_eq!(host.reached(), 0);
}

#[tokio::test]
async fn bad_arguments_are_type_errors() {
    for call in [
        "thetazero.read_context(1)",
        "thetazero.read_context({toString(){ return 'k' }})",
        "thetazero.read_context('')",
        "thetazero.read_context('x'.repeat(2000))",
        "thetazero.write_context('k', () => 1)",
        "thetazero.write_context('k', 10n)",
        "thetazero.storage_put('k', Symbol('s'))",
    ] {
        let (r, host) = attempt(call, all_scopes()).await;
        assert_eq!(r.output["ok"], json!(false), "{call}: {r:?}");
        assert_eq!(host.reached(), 0, "{call}");
    }
}
