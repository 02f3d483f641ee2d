//! Engine basics: entry-code shape, output, errors, logs, the spec's quick-start and bridge identity. Test-only.
mod common;

use common::*;
use serde_json::json;
use thetazero_sandbox::Status;

#[tokio::test]
async fn spec_python_quick_start() {
    let host = MemHost::new();
    let mut j = job(
        r#"await thetazero.log("Hello from the sandbox!");
await thetazero.write_result({ message: "Hello, " + (input.name || "world") + "!" });"#,
        &host,
    );
    j.input = json!({"name": "Alice"});
    let r = run(j).await;
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.output, json!({"message": "Hello, Alice!"}));
    assert_eq!(r.logs.len(), 1);
    assert_eq!(r.logs[0].message, "Hello from the sandbox!");
    assert_eq!(r.resource_usage.api_calls, 0);
    assert_eq!(r.resource_usage.host_calls, 2);
    let wire = serde_json::to_value(&r).unwrap();
    assert_eq!(wire["status"], "completed");
    assert!(wire["host_call_audit"][0]["fn"] == "log");
}

fn check(code: &str, status: Status, output: serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (r, _) = rt.block_on(run_code(code));
    assert_eq!(r.status, status, "{code}: {r:?}");
    assert_eq!(r.output, output, "{code}");
}

#[test]
fn entry_code_shapes() {
    check("return 1 + 1", Status::Completed, json!(2));
    check(
        "return await Promise.resolve({a: [1, 'x', null]})",
        Status::Completed,
        json!({"a": [1, "x", null]}),
    );
    check(
        "thetazero.write_result(1); thetazero.write_result(2);",
        Status::Completed,
        json!(2),
    );
    check(
        "thetazero.write_result(1); return 3",
        Status::Completed,
        json!(3),
    );
    check("", Status::Completed, json!(null));
    check("return input", Status::Completed, json!(null));
    check("// trailing comment", Status::Completed, json!(null));
    check(
        "return thetazero.agentName + '@' + thetazero.agentVersion + '#' + thetazero.executionId",
        Status::Completed,
        json!("agent@0.0.0#0"),
    );
    check("return typeof require + typeof process + typeof Buffer + typeof console + typeof setTimeout + typeof WebAssembly + typeof Atomics + typeof eval", Status::Completed, json!("undefinedundefinedundefinedundefinedundefinedundefinedundefinedundefined"));
    check(
        "return Object.isFrozen(thetazero)",
        Status::Completed,
        json!(true),
    );
    check("return () => 1", Status::Failed, json!(null));
    check("throw new TypeError('boom')", Status::Failed, json!(null));
    check(
        "return new Date(0).toISOString()",
        Status::Completed,
        json!("1970-01-01T00:00:00.000Z"),
    );
    check(
        "return [...new Map([[1,2]])]",
        Status::Completed,
        json!([[1, 2]]),
    );
    check("return /a+b/.test('aab')", Status::Completed, json!(true));
}

#[tokio::test]
async fn errors_name_only_agent_code() {
    let (r, _) = run_code("function inner() { throw new RangeError('bad ' + 1); }\ninner();").await;
    assert_eq!(r.status, Status::Failed);
    let e = r.error.unwrap();
    assert_eq!(e.kind, "RangeError");
    assert_eq!(e.message, "bad 1");
    let stack = e.stack.unwrap();
    assert!(stack.contains("agent.js:1"), "{stack}");
    assert!(
        !stack.contains(".rs") && !stack.contains("/home") && !stack.contains("sandbox-init"),
        "{stack}"
    );
    let (r, _) = run_code("return (").await;
    assert_eq!(r.error.unwrap().kind, "SyntaxError");
    let (r, _) = run_code("throw null").await;
    assert_eq!(r.status, Status::Failed);
    assert!(r.error.unwrap().message.contains("null"));
}

/// Where the host screens logs, each entry is put to it as it is written:
/// a refused one rejects inside the agent with `CONTENT_BLOCKED`, in order,
/// costs no counted call, and the entry stays for the server's own screen at
/// the run's end.
#[tokio::test]
async fn screened_logs_are_refused_inside_the_agent() {
    let host = MemHost::new();
    let mut j = job(
        "const out = []; \
         for (const m of ['one', 'FORBIDDEN two', {note: 'FORBIDDEN three'}, 'four']) { \
           try { await thetazero.log(m); out.push('ok') } catch (e) { out.push(e.code) } } \
         thetazero.log('FORBIDDEN, not awaited'); \
         return out;",
        &host,
    );
    j.screen_logs = true;
    let r = run(j).await;
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(
        r.output,
        json!(["ok", "CONTENT_BLOCKED", "CONTENT_BLOCKED", "ok"])
    );
    assert_eq!(
        *host.screened_logs.lock().unwrap(),
        [
            "one",
            "FORBIDDEN two",
            r#"{"note":"FORBIDDEN three"}"#,
            "four",
        ]
    );
    // The last is kept though its screen never finished: the run ended
    // first, and the server screens every entry again.
    assert_eq!(r.logs.len(), 5);
    assert_eq!(r.logs[4].message, "FORBIDDEN, not awaited");
    assert_eq!(r.resource_usage.api_calls, 0);

    // Not asked for: nothing reaches the host and every log resolves.
    let host = MemHost::new();
    let r = run(job("await thetazero.log('FORBIDDEN'); return 1;", &host)).await;
    assert_eq!(r.output, json!(1));
    assert!(host.screened_logs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn log_levels() {
    let (r, _) = run_code("thetazero.log('a'); thetazero.log('b','warn'); thetazero.log({x:1},'error'); thetazero.log('d','debug'); try { thetazero.log('e','fatal') } catch (e) { return e.name }").await;
    assert_eq!(r.output, json!("TypeError"));
    let levels: Vec<_> = r
        .logs
        .iter()
        .map(|l| serde_json::to_value(l.level).unwrap())
        .collect();
    assert_eq!(
        levels,
        vec![json!("info"), json!("warn"), json!("error"), json!("debug")]
    );
    assert_eq!(r.logs[2].message, r#"{"x":1}"#);
}

/// "All calls are async and return Promises": the two that finish at once
/// return promises already resolved.
#[tokio::test]
async fn log_and_write_result_return_promises() {
    let (r, _) = run_code(
        "const p = thetazero.log('a'); const q = thetazero.write_result({n: 1}); \
         const seen = [p instanceof Promise, q instanceof Promise]; \
         await p.then(() => thetazero.log('after')); await q; \
         await thetazero.write_result(seen);",
    )
    .await;
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.output, json!([true, true]));
    let messages: Vec<_> = r.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["a", "after"]);
}

#[tokio::test]
async fn dev_template_keeps_code_generation() {
    let host = MemHost::new();
    let mut j = job(
        "return [eval('1 + 1'), new Function('return 3')(), typeof process]",
        &host,
    );
    j.template = thetazero_sandbox::Template::Dev;
    let r = run(j).await;
    assert_eq!(r.output, json!([2, 3, "undefined"]), "{r:?}");
    let (r, _) = run_code("try { eval('1') } catch (e) { return e.name }").await;
    assert_eq!(r.output, json!("ReferenceError"));
}

#[tokio::test]
async fn queue_full_is_an_error() {
    use thetazero_sandbox::{Sandbox, SandboxConfig, SubmitError};
    let sandbox = Sandbox::new(SandboxConfig {
        workers: 1,
        queue_capacity: 1,
        ..SandboxConfig::default()
    })
    .unwrap();
    let host = MemHost::new();
    let mut busy = job("for (;;) {}", &host);
    busy.limits.cpu_time_ms = 60_000;
    let cancel = busy.cancel.clone();
    let first = sandbox.submit(busy).unwrap();
    // The worker may or may not have taken the first job yet; fill until refused.
    let mut refused = false;
    let mut queued = Vec::new();
    for _ in 0..3 {
        let j = job("return 1", &host);
        match sandbox.submit(j) {
            Ok(rx) => queued.push(rx),
            Err(e) => {
                assert_eq!(e, SubmitError::QueueFull);
                refused = true;
            }
        }
    }
    assert!(refused);
    cancel.cancel();
    assert_eq!(first.await.unwrap().status, Status::Killed);
    for rx in queued {
        assert_eq!(rx.await.unwrap().status, Status::Completed);
    }
}
