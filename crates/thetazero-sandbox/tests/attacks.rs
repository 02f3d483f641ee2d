//! Attack classes 1–6 of the sandbox design, data-driven: each case states what must happen, checks nothing host-side was reached, and the sandbox stays clean for the next execution. Test-only.
mod common;

use common::*;
use serde_json::{json, Value};
use thetazero_sandbox::{LimitKind, Status};

#[derive(Debug, Clone)]
enum Expect {
    /// Completed with exactly this output.
    Out(Value),
    /// Failed with this error type.
    Fails(&'static str),
    Limit(LimitKind),
    TimedOut,
}
use Expect::*;

fn cases() -> Vec<(&'static str, &'static str, Expect)> {
    let ev = || Out(json!("EvalError"));
    vec![
        // 1. Constructor chains to a host realm.
        ("bridge fn constructor", "try { return thetazero.log.constructor('return process')() } catch (e) { return e.name }", ev()),
        ("bridge async fn constructor", "try { return thetazero.read_context.constructor('return this')() } catch (e) { return e.name }", ev()),
        ("this.constructor.constructor", "try { return this.constructor.constructor('return process')() } catch (e) { return e.name }", ev()),
        ("globalThis constructor chain", "try { return globalThis.constructor.constructor('return process')() } catch (e) { return e.name }", ev()),
        ("async function constructor", "try { return (async function () {}).constructor('return process')() } catch (e) { return e.name }", ev()),
        ("generator constructor", "try { return (function* () {}).constructor('yield process')().next() } catch (e) { return e.name }", ev()),
        ("async generator constructor", "try { return (async function* () {}).constructor('yield 1') } catch (e) { return e.name }", ev()),
        ("arrow prototype constructor", "try { return (() => 1).__proto__.constructor('return 1')() } catch (e) { return e.name }", ev()),
        ("new Function", "try { return new Function('return 1')() } catch (e) { return e.name }", ev()),
        ("Reflect.construct Function", "try { return Reflect.construct(Function, ['return 1'])() } catch (e) { return e.name }", ev()),
        ("descriptor of constructor", "try { return Object.getOwnPropertyDescriptor(Function.prototype, 'constructor').value('return 1')() } catch (e) { return e.name }", ev()),
        ("promise from bridge", "const p = thetazero.read_context('k'); p.catch(() => {}); try { return p.constructor.constructor('return process')() } catch (e) { return e.name }", ev()),
        ("then callback of bridge promise", "try { await thetazero.storage_get('k') } catch (e) { try { return e.constructor.constructor('return process')() } catch (e2) { return e2.name } }", ev()),
        ("error code object chain", "try { await thetazero.storage_get('k') } catch (e) { try { return e.code.constructor.constructor('return process')() } catch (e2) { return e2.name } }", ev()),
        ("resolved bridge value", "const t = await Promise.resolve(thetazero); try { return t.write_result.call.constructor('return 1')() } catch (e) { return e.name }", ev()),
        ("array constructor chain", "try { return [].constructor.constructor('return 1')() } catch (e) { return e.name }", ev()),
        ("symbol constructor chain", "try { return Symbol.constructor('return 1')() } catch (e) { return e.name }", ev()),
        ("restore Function.prototype.constructor", "try { Object.defineProperty(Function.prototype, 'constructor', {value: 1}); return 'redefined' } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("Function identity kept", "return Function === Function.prototype.constructor && (function(){}) instanceof Function", Out(json!(true))),
        ("no host objects reachable", "return [typeof process, typeof require, typeof module, typeof Buffer, typeof global, typeof std, typeof os]", Out(json!(["undefined", "undefined", "undefined", "undefined", "undefined", "undefined", "undefined"]))),
        // 2. Dynamic code generation.
        ("eval", "try { return eval('1') } catch (e) { return e.name }", Out(json!("ReferenceError"))),
        ("indirect eval", "try { return (0, globalThis['ev' + 'al'])('1') } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("eval via Reflect", "try { return Reflect.apply(globalThis.eval, null, ['1']) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("dynamic import", "try { await import('fs'); return 'imported' } catch (e) { return 'blocked' }", Out(json!("blocked"))),
        ("dynamic import data url", "try { await import('data:text/javascript,export default 1'); return 'imported' } catch (e) { return 'blocked' }", Out(json!("blocked"))),
        ("import of the bridge", "try { await import('thetazero'); return 'imported' } catch (e) { return 'blocked' }", Out(json!("blocked"))),
        ("string timers", "try { setTimeout('1', 0); return 'timer' } catch (e) { return e.name }", Out(json!("ReferenceError"))),
        ("new async function from prototype", "try { new (Object.getPrototypeOf(async function () {}).constructor)('await 1'); return 'made' } catch (e) { return e.name }", ev()),
        // 3. Mutating the bridge and poisoning built-ins.
        ("assign bridge fn", "thetazero.log = () => 'evil'; return thetazero.log.name", Out(json!("log"))),
        ("define on bridge", "try { Object.defineProperty(thetazero, 'x', {value: 1}); return 'defined' } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("delete bridge fn", "delete thetazero.log; return typeof thetazero.log", Out(json!("function"))),
        ("replace bridge global", "globalThis.thetazero = 1; return typeof thetazero", Out(json!("object"))),
        ("redefine bridge global", "try { Object.defineProperty(globalThis, 'thetazero', {value: 1}); return 'redefined' } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("property on bridge fn", "thetazero.log.injected = 1; return String(thetazero.log.injected)", Out(json!("undefined"))),
        ("read-only identity", "thetazero.agentName = 'root'; return thetazero.agentName", Out(json!("agent"))),
        ("bridge proto poisoning", "Object.getPrototypeOf(thetazero).injected = 1; Object.prototype.polluted = 1; Array.prototype.polluted = 1; globalThis.leak = 1; return 1", Out(json!(1))),
        ("poison JSON.stringify", "JSON.stringify = () => '\"evil\"'; return {a: 1}", Out(json!({"a": 1}))),
        ("poison Promise.prototype.then", "Promise.prototype.then = function () { throw new Error('x') }; return 1", Out(json!(1))),
        ("poison iterator used by rest args", "Array.prototype[Symbol.iterator] = function () { throw 1 }; thetazero.log('x'); return 'ok'", Out(json!("ok"))),
        ("accessor trap for error code", "Object.defineProperty(Object.prototype, 'code', {set(v) { globalThis.stolen = v }, get() { return 'fake' }}); try { await thetazero.storage_get('k') } catch (e) { return [e.code, typeof stolen] }", Out(json!(["PERMISSION_DENIED", "undefined"]))),
        ("poison Error", "Error.prototype.toString = () => { for (;;) {} }; Error.captureStackTrace = 1; return 'ok'", Out(json!("ok"))),
        // 4. Arguments that fight back.
        ("getter loops in value", "await thetazero.write_context('k', {get x() { for (;;) {} }})", TimedOut),
        ("toJSON trap throws", "try { thetazero.write_result({toJSON() { throw new Error('trap') }}) } catch (e) { return e.message }", Out(json!("trap"))),
        ("toJSON trap returns bridge", "thetazero.write_result({toJSON() { return thetazero }})", Out(json!({"agentName": "agent", "agentVersion": "0.0.0", "executionId": 0}))),
        ("valueOf trap as level", "try { thetazero.log('x', {toString() { for (;;) {} }}) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("toString trap as key", "try { await thetazero.read_context({toString() { return 'k' }}) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("String object key", "try { await thetazero.read_context(new String('k')) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("proxy value", "try { thetazero.write_result(new Proxy({}, {ownKeys() { throw new Error('p') }})) } catch (e) { return e.message }", Out(json!("p"))),
        ("proxy key", "try { await thetazero.read_context(new Proxy({}, {get() { throw 1 }})) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("revoked proxy", "const r = Proxy.revocable({}, {}); r.revoke(); try { thetazero.write_result(r.proxy) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("cyclic value", "const a = {}; a.a = a; try { thetazero.write_result(a) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("cyclic return", "const a = []; a.push(a); return a", Fails("TypeError")),
        ("BigInt return", "return 10n ** 100n", Fails("TypeError")),
        ("BigInt in value", "try { thetazero.write_result({a: 1n}) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("symbol return", "return Symbol('x')", Fails("TypeError")),
        ("symbol key", "try { await thetazero.read_context(Symbol('k')) } catch (e) { return e.name }", Out(json!("TypeError"))),
        ("symbol log", "thetazero.log(Symbol('s')); return 'ok'", Out(json!("ok"))),
        ("many arguments", "thetazero.log('a', 'info', ...new Array(10000).fill('x')); try { thetazero.log(...new Array(100000)) } catch (e) { return e.name }", Out(json!("RangeError"))),
        ("huge string log", "thetazero.log('x'.repeat(10 * 1024 * 1024))", Limit(LimitKind::LogVolume)),
        ("huge error message", "throw new Error('x'.repeat(5e6))", Fails("Error")),
        ("getter on thrown message", "throw {get message() { for (;;) {} }, toJSON() { for (;;) {} }}", TimedOut),
        ("getter on error name", "const e = new Error('x'); Object.defineProperty(e, 'name', {get() { for (;;) {} }}); throw e", TimedOut),
        ("function as http headers", "try { await thetazero.http_request('https://a.example/', 'GET', () => 1) } catch (e) { return e.name }", Out(json!("TypeError"))),
        // 5. Exhaustion.
        ("infinite loop", "for (;;) {}", TimedOut),
        ("infinite loop after await", "await null; for (;;) {}", TimedOut),
        ("loop in finally", "try { for (;;) {} } finally { for (;;) {} }", TimedOut),
        ("microtask flood", "function f() { Promise.resolve().then(f) } f(); await new Promise(() => {})", TimedOut),
        ("await flood", "for (;;) await null", TimedOut),
        ("generator loop", "function* g() { for (;;) yield 1 } for (const x of g()) {}", TimedOut),
        ("sort comparator loop", "[3, 2, 1].sort(() => { for (;;) {} })", TimedOut),
        ("catastrophic regex", "return /^(a+)+$/.test('a'.repeat(64) + 'b')", TimedOut),
        ("never settles", "await new Promise(() => {})", TimedOut),
        ("string bomb", "const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length)", Limit(LimitKind::Memory)),
        ("array bomb", "const a = []; for (;;) a.push(new Array(1 << 16).fill(0.5))", Limit(LimitKind::Memory)),
        ("typed array bomb", "new Uint8Array(1 << 30)", Limit(LimitKind::Memory)),
        ("map bomb", "const m = new Map(); for (let i = 0; ; i++) m.set(i, new Array(1000).fill(i))", Limit(LimitKind::Memory)),
        ("object bomb", "const o = {}; for (let i = 0; ; i++) o['k' + i] = 'v'.repeat(1000) + i", Limit(LimitKind::Memory)),
        ("caught memory bomb", "try { const a = []; for (;;) a.push(new Float64Array(1 << 18)) } catch (e) {} return 'survived'", Limit(LimitKind::Memory)),
        ("deep recursion", "const f = n => f(n + 1) + 1; f(0)", Limit(LimitKind::Stack)),
        ("Atomics.wait", "return [typeof Atomics, typeof SharedArrayBuffer]", Out(json!(["undefined", "undefined"]))),
        ("huge output", "return 'x'.repeat(2 * 1024 * 1024)", Limit(LimitKind::OutputSize)),
        ("log flood", "for (;;) thetazero.log('flood')", Limit(LimitKind::LogVolume)),
        ("host-call flood unawaited", "for (;;) thetazero.read_context('k').catch(() => {})", Limit(LimitKind::ApiCalls)),
        ("host-call flood awaited", "for (;;) { try { await thetazero.storage_put('k', 1) } catch (e) {} }", Limit(LimitKind::ApiCalls)),
        ("write_result flood", "for (let i = 0; i < 10000; i++) thetazero.write_result(i); return", Out(json!(9999))),
    ]
}

async fn check(name: &'static str, code: &'static str, expect: Expect) -> Option<String> {
    let outcome = tokio::spawn(check_one(name, code, expect)).await;
    outcome.err().map(|e| format!("{e}"))
}

async fn check_one(name: &'static str, code: &'static str, expect: Expect) {
    let host = MemHost::new();
    let mut j = job(code, &host);
    // Cases that must time out get a short deadline; the others a long one so
    // that a loaded machine cannot turn a limit hit into a timeout.
    j.limits.cpu_time_ms = if matches!(expect, TimedOut) {
        400
    } else {
        20_000
    };
    let r = run(j).await;
    let ok = match &expect {
        Out(v) => r.status == Status::Completed && &r.output == v,
        Fails(kind) => {
            r.status == Status::Failed && r.error.as_ref().is_some_and(|e| e.kind == *kind)
        }
        Limit(l) => r.status == Status::LimitExceeded && r.limit == Some(*l),
        TimedOut => r.status == Status::TimedOut,
    };
    assert!(
        ok,
        "case {name:?}: expected {expect:?}, got {:?} {:?} {:?} {:?} mem={}",
        r.status, r.limit, r.output, r.error, r.resource_usage.memory_mb
    );
    assert_eq!(host.reached(), 0, "case {name:?} reached the host");
    if let Some(e) = &r.error {
        assert!(
            e.message.len() <= 4100,
            "case {name:?}: error message not capped"
        );
        let stack = e.stack.clone().unwrap_or_default();
        assert!(
            !stack.contains(".rs") && !stack.contains("sandbox-init") && !stack.contains("/root"),
            "case {name:?}: {stack}"
        );
    }
    assert!(
        r.resource_usage.memory_mb <= 33.0,
        "case {name:?}: {}",
        r.resource_usage.memory_mb
    );
    assert!(r.host_call_audit.len() <= 2048 + 1000);
}

#[tokio::test]
async fn attack_classes() {
    let cases = cases();
    assert!(cases.len() >= 80, "{}", cases.len());
    let runs = cases
        .into_iter()
        .map(|(name, code, expect)| check(name, code, expect));
    let failures: Vec<String> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(failures.is_empty(), "{} failing cases", failures.len());
    // The process is healthy and nothing survived into the next execution.
    assert_clean_next().await;
}

#[tokio::test]
async fn no_cross_execution_or_cross_account_leakage() {
    let a = MemHost::new();
    let mut ja = job("await thetazero.write_context('secret', 42); await thetazero.storage_put('secret', 42); globalThis.leak = 'a'; thetazero.log('a'); return 1", &a);
    ja.scopes = all_scopes();
    let ra = run(ja).await;
    assert_eq!(ra.status, Status::Completed);
    let b = MemHost::new();
    let mut jb = job("return [await thetazero.read_context('secret'), await thetazero.storage_get('secret'), typeof leak]", &b);
    jb.scopes = all_scopes();
    let rb = run(jb).await;
    assert_eq!(rb.output, json!([null, null, "undefined"]));
    assert!(rb.logs.is_empty());
    assert_eq!(rb.host_call_audit.len(), 2);
    assert!(b
        .events()
        .iter()
        .all(|e| !format!("{e:?}").contains("write_context")));
}
