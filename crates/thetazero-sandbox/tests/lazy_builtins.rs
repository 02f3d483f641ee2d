//! Built-ins added on first use (typed arrays, Map/Set, Date) behave as if they had been there from the start, whatever agent code does to their names first. Test-only.
mod common;

use common::*;
use serde_json::{json, Value};
use thetazero_sandbox::Status;

async fn output(code: &str) -> Value {
    let (r, _) = run_code(code).await;
    assert_eq!(r.status, Status::Completed, "{code}: {r:?}");
    r.output
}

#[tokio::test]
async fn every_lazy_global_works_on_first_use() {
    for name in thetazero_sandbox::lazy_globals() {
        let out = output(&format!(
            "const C = {name}; return [typeof C, C.name, Object.getOwnPropertyDescriptor(globalThis, '{name}').writable, Object.keys(globalThis).includes('{name}')]"
        ))
        .await;
        assert_eq!(out, json!(["function", name, true, false]), "{name}");
    }
}

#[tokio::test]
async fn the_groups_work() {
    let out = output(
        "const b = new Uint8Array([1, 2, 3]); const v = new DataView(b.buffer); \
         const m = new Map([[1, 'a']]); const s = new Set([1, 1, 2]); const w = new WeakMap(); w.set(m, 1); \
         return [Array.from(b.map(x => x * 2)), v.getUint8(2), m.get(1), s.size, w.get(m), new Date(0).toISOString(), \
                 Object.getPrototypeOf(Uint8Array) === Object.getPrototypeOf(Int32Array), b instanceof Uint8Array, \
                 Date.prototype.constructor === Date]",
    )
    .await;
    assert_eq!(
        out,
        json!([
            [2, 4, 6],
            3,
            "a",
            2,
            1,
            "1970-01-01T00:00:00.000Z",
            true,
            true,
            true
        ])
    );
}

#[tokio::test]
async fn shared_memory_stays_out_after_typed_arrays_arrive() {
    let out = output(
        "new Uint8Array(1); return [typeof SharedArrayBuffer, typeof Atomics, typeof ArrayBuffer]",
    )
    .await;
    assert_eq!(out, json!(["undefined", "undefined", "function"]));
    // A global of that name agent code defined itself is left alone.
    let out = output("globalThis.Atomics = 7; new Uint8Array(1); return Atomics").await;
    assert_eq!(out, json!(7));
}

#[tokio::test]
async fn names_agent_code_changed_first_keep_its_changes() {
    // Assigned, deleted, redefined: then another name of the group is read.
    let out = output(
        "Uint8Array = 5; delete globalThis.Int8Array; \
         Object.defineProperty(globalThis, 'DataView', {value: 'mine', writable: false, configurable: true}); \
         const f = new Float64Array(2); \
         return [Uint8Array, typeof globalThis.Int8Array, 'Int8Array' in globalThis, DataView, f.length, \
                 Object.getOwnPropertyDescriptor(globalThis, 'DataView').writable]",
    )
    .await;
    assert_eq!(out, json!([5, "undefined", false, "mine", 2, false]));
    // A name made non-configurable cannot be given back as it was: the
    // group stays out and its other names read as undefined.
    let out = output(
        "Object.defineProperty(globalThis, 'DataView', {value: 'mine', configurable: false}); \
         return [DataView, typeof Float64Array, typeof Map]",
    )
    .await;
    assert_eq!(out, json!(["mine", "undefined", "function"]));
    let out = output(
        "Object.defineProperty(globalThis, 'Map', {get() { return 'getter' }, configurable: true}); \
         new Set(); return [Map, typeof WeakSet]",
    )
    .await;
    assert_eq!(out, json!(["getter", "function"]));
}

#[tokio::test]
async fn a_frozen_global_object_reads_undefined_rather_than_looping() {
    let out =
        output("Object.freeze(globalThis); return [typeof Uint8Array, typeof Map, typeof Date]")
            .await;
    assert_eq!(out, json!(["undefined", "undefined", "undefined"]));
    assert_clean_next().await;
}

#[tokio::test]
async fn the_accessors_give_nothing_away() {
    // The getter taken off the global and called elsewhere, on another
    // receiver, or as a constructor: it only ever yields the global's value.
    let out = output(
        "const d = Object.getOwnPropertyDescriptor(globalThis, 'Date'); \
         const got = d.get.call({}); let ctor; try { new d.get(); ctor = 'constructed' } catch (e) { ctor = e.constructor.name } \
         return [got === Date, typeof d.set, ctor, Object.getOwnPropertyNames(d.get).includes('prototype')]",
    )
    .await;
    assert_eq!(out, json!([true, "function", "TypeError", false]));
    assert_clean_next().await;
}

#[tokio::test]
async fn a_memory_bomb_through_a_lazy_constructor_is_still_a_limit_hit() {
    let (r, _) = run_code("const a = []; for (;;) a.push(new ArrayBuffer(1 << 20))").await;
    assert_eq!(r.status, Status::LimitExceeded, "{r:?}");
    assert_eq!(r.limit, Some(thetazero_sandbox::LimitKind::Memory));
    assert_clean_next().await;
}

#[tokio::test]
async fn no_agent_code_runs_while_a_group_is_added() {
    // Each way agent code could be called back while typed arrays are being
    // added (when shared memory is briefly on the global object): an
    // accessor on Array.prototype.toString, one on Object.prototype after
    // deleting it, and a proxy as Array.prototype's prototype.
    let traps = [
        "Object.defineProperty(Array.prototype, 'toString', { configurable: true, get() { seen.push(typeof globalThis.SharedArrayBuffer, typeof globalThis.Atomics); return () => 'x'; } });",
        "delete Array.prototype.toString; Object.defineProperty(Object.prototype, 'toString', { configurable: true, get() { seen.push(typeof globalThis.SharedArrayBuffer, typeof globalThis.Atomics); return () => 'x'; } });",
        "delete Array.prototype.toString; Object.setPrototypeOf(Array.prototype, new Proxy({}, { get(t, k) { seen.push(typeof globalThis.SharedArrayBuffer, typeof globalThis.Atomics); return undefined; } }));",
    ];
    for trap in traps {
        let out = output(&format!(
            "const seen = []; {trap} new Uint8Array(1); \
             return [seen.filter(t => t !== 'undefined'), typeof SharedArrayBuffer, typeof Atomics, typeof Uint8Array];"
        ))
        .await;
        assert_eq!(
            out,
            json!([[], "undefined", "undefined", "function"]),
            "{trap}"
        );
    }
    // The accessor agent code put there is still there afterwards.
    let out = output(
        "Object.defineProperty(Array.prototype, 'toString', { configurable: true, get() { return () => 'mine'; } }); \
         new Uint8Array(1); return [String([1]), typeof Object.getOwnPropertyDescriptor(Array.prototype, 'toString').get];",
    )
    .await;
    assert_eq!(out, json!(["mine", "function"]));
}
