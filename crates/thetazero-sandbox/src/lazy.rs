//! Built-ins added on first use. Typed arrays, `Map`/`Set` and `Date` are about a fifth of what creating a context costs and most agents never touch them, so each of their global names starts as an accessor; the first read of any name of a group adds the whole group (`JS_AddIntrinsic*`), which replaces its accessors with the usual data properties. It must not make reachable anything the full set of built-ins would not, and names agent code redefined or deleted before the first read keep what agent code made of them.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rquickjs::function::Rest;
use rquickjs::object::Property;
use rquickjs::{qjs, Ctx, Error, Function, Result, Value};

struct Group {
    /// Globals that start as accessors.
    names: &'static [&'static str],
    /// Globals the intrinsic also defines that the sandbox removes at start
    /// (shared memory): left as they were before the group was added.
    also: &'static [&'static str],
    add: unsafe extern "C" fn(*mut qjs::JSContext) -> c_int,
}

const GROUPS: [Group; 3] = [
    Group {
        names: &[
            "ArrayBuffer",
            "DataView",
            "Uint8ClampedArray",
            "Int8Array",
            "Uint8Array",
            "Int16Array",
            "Uint16Array",
            "Int32Array",
            "Uint32Array",
            "BigInt64Array",
            "BigUint64Array",
            "Float16Array",
            "Float32Array",
            "Float64Array",
        ],
        also: &["SharedArrayBuffer", "Atomics"],
        add: qjs::JS_AddIntrinsicTypedArrays,
    },
    Group {
        names: &["Map", "Set", "WeakMap", "WeakSet"],
        also: &[],
        add: qjs::JS_AddIntrinsicMapSet,
    },
    Group {
        names: &["Date"],
        also: &[],
        add: qjs::JS_AddIntrinsicDate,
    },
];

/// Every global name that starts as an accessor, for tests.
pub fn lazy_globals() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().flat_map(|g| g.names.iter().copied())
}

/// One execution's lazy built-ins.
struct Lazy {
    added: [AtomicBool; GROUPS.len()],
    /// Set while a getter reads the property that replaced it: an accessor
    /// that could not be replaced (agent code froze the global object first)
    /// then reads as `undefined` instead of calling itself for ever.
    reading: AtomicBool,
    /// Class of host functions in this runtime: an accessor whose getter has
    /// it is still one of ours.
    host_class: qjs::JSClassID,
}

/// Defines the accessors. `host_fn` is any host function of this runtime.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, host_fn: &Function<'js>) -> Result<()> {
    let lazy = Arc::new(Lazy {
        added: Default::default(),
        reading: AtomicBool::new(false),
        // SAFETY: reads the class id of a live object.
        host_class: unsafe { qjs::JS_GetClassID(host_fn.as_raw()) },
    });
    let globals = ctx.globals();
    for (group, g) in GROUPS.iter().enumerate() {
        for &name in g.names {
            let state = lazy.clone();
            // One function serves as getter (called with no argument) and
            // setter (one argument): half the functions to create per run.
            // Assigning to the name works as it does on a data property.
            let access = Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> Result<Value<'js>> {
                    match args.0.into_iter().next() {
                        None => read(&ctx, &state, group, name),
                        Some(value) => {
                            ctx.globals()
                                .prop(name, Property::from(value).writable().configurable())?;
                            Ok(Value::new_undefined(ctx.clone()))
                        }
                    }
                },
            )?;
            crate::raw::define_accessor(ctx, &globals, name, &access)?;
        }
    }
    Ok(())
}

fn read<'js>(ctx: &Ctx<'js>, lazy: &Lazy, group: usize, name: &str) -> Result<Value<'js>> {
    if !lazy.added[group].swap(true, Ordering::Relaxed) {
        add(ctx, lazy, &GROUPS[group])?;
    }
    if lazy.reading.swap(true, Ordering::Relaxed) {
        return Ok(Value::new_undefined(ctx.clone()));
    }
    let value = ctx.globals().get(name);
    lazy.reading.store(false, Ordering::Relaxed);
    value
}

/// What one global was just before its group was added.
enum Before {
    Absent,
    /// Still the lazy accessor.
    Ours,
    /// What agent code made of it.
    Agent(qjs::JSPropertyDescriptor),
}

/// Adds a group. Every name it defines is taken off the global object first
/// (QuickJS aborts the process when some of them already exist, and reads
/// `Uint8Array` back from the global object while adding), then what agent
/// code had made of them is put back. A global object agent code made
/// non-extensible, or a name it made non-configurable, leaves the group out:
/// its names then read as `undefined`.
fn add(ctx: &Ctx<'_>, lazy: &Lazy, group: &Group) -> Result<()> {
    let raw = ctx.as_raw().as_ptr();
    let global = ctx.globals();
    let g = global.as_raw();
    let host_class = lazy.host_class;
    // SAFETY: `raw` is this thread's live context and `g` its global object;
    // atoms and descriptor values are owned here and freed once each.
    unsafe {
        let mut before: Vec<(qjs::JSAtom, Before)> = Vec::new();
        let mut ok = qjs::JS_IsExtensible(raw, g) == 1;
        for (i, name) in group.names.iter().chain(group.also).enumerate() {
            if !ok {
                break;
            }
            let atom = qjs::JS_NewAtomLen(raw, name.as_ptr().cast(), name.len() as _);
            if atom == qjs::JS_ATOM_NULL {
                ok = false;
                break;
            }
            let mut desc = MaybeUninit::<qjs::JSPropertyDescriptor>::uninit();
            match qjs::JS_GetOwnProperty(raw, desc.as_mut_ptr(), g, atom) {
                0 => before.push((atom, Before::Absent)),
                1 => {
                    let desc = desc.assume_init();
                    if desc.flags & qjs::JS_PROP_CONFIGURABLE as c_int == 0 {
                        ok = false;
                    }
                    let ours = i < group.names.len()
                        && desc.flags & qjs::JS_PROP_GETSET as c_int != 0
                        && qjs::JS_GetClassID(desc.getter) == host_class;
                    if ours {
                        free_desc(raw, &desc);
                        before.push((atom, Before::Ours));
                    } else {
                        before.push((atom, Before::Agent(desc)));
                    }
                }
                _ => {
                    qjs::JS_FreeAtom(raw, atom);
                    ok = false;
                }
            }
        }
        if ok {
            for (atom, b) in &before {
                if !matches!(b, Before::Absent) {
                    qjs::JS_DeleteProperty(raw, g, *atom, 0);
                }
            }
            // While the group is added, shared memory exists on the global
            // object for a moment, and adding typed arrays reads
            // `Array.prototype.toString`: an accessor (or, once deleted, a
            // lookup through a prototype agent code replaced, a proxy
            // included) would run agent code inside that moment. A plain
            // data property stands there meanwhile, so no agent code runs.
            let shield = Shield::raise(raw);
            ok = (group.add)(raw) == 0;
            shield.lower(raw);
            // What agent code made of the names goes back; shared memory and
            // names it deleted go again.
            for (atom, b) in &before {
                match b {
                    Before::Ours => {}
                    Before::Absent => {
                        qjs::JS_DeleteProperty(raw, g, *atom, 0);
                    }
                    Before::Agent(d) => {
                        qjs::JS_DeleteProperty(raw, g, *atom, 0);
                        let mut flags = d.flags
                            & (qjs::JS_PROP_CONFIGURABLE | qjs::JS_PROP_ENUMERABLE) as c_int
                            | (qjs::JS_PROP_HAS_CONFIGURABLE | qjs::JS_PROP_HAS_ENUMERABLE)
                                as c_int;
                        if d.flags & qjs::JS_PROP_GETSET as c_int != 0 {
                            flags |= (qjs::JS_PROP_HAS_GET | qjs::JS_PROP_HAS_SET) as c_int;
                        } else {
                            flags |= (qjs::JS_PROP_HAS_VALUE | qjs::JS_PROP_HAS_WRITABLE) as c_int
                                | d.flags & qjs::JS_PROP_WRITABLE as c_int;
                        }
                        qjs::JS_DefineProperty(raw, g, *atom, d.value, d.getter, d.setter, flags);
                    }
                }
            }
        }
        for (atom, b) in before {
            if let Before::Agent(d) = b {
                free_desc(raw, &d);
            }
            qjs::JS_FreeAtom(raw, atom);
        }
        if ok || !qjs::JS_HasException(raw) {
            Ok(())
        } else {
            // Out of memory while adding: the exception is the agent's.
            Err(Error::Exception)
        }
    }
}

/// `Array.prototype.toString` held as a data property while a group is added.
struct Shield {
    proto: qjs::JSValue,
    atom: qjs::JSAtom,
    /// What was there, unless it already was a data property (then nothing
    /// is changed).
    before: Option<Before>,
}

impl Shield {
    /// # Safety
    /// `raw` is this thread's live context.
    unsafe fn raise(raw: *mut qjs::JSContext) -> Shield {
        // SAFETY: the array, its class prototype and the atom are owned here
        // and freed in `lower`; the prototype of a new array is the realm's
        // Array.prototype whatever agent code did to `globalThis.Array`.
        unsafe {
            let array = qjs::JS_NewArray(raw);
            let proto = qjs::JS_GetPrototype(raw, array);
            qjs::JS_FreeValue(raw, array);
            let atom = qjs::JS_NewAtomLen(raw, c"toString".as_ptr(), 8);
            let mut desc = MaybeUninit::<qjs::JSPropertyDescriptor>::uninit();
            let before = match qjs::JS_GetOwnProperty(raw, desc.as_mut_ptr(), proto, atom) {
                1 => {
                    let desc = desc.assume_init();
                    if desc.flags & qjs::JS_PROP_GETSET as c_int == 0 {
                        free_desc(raw, &desc);
                        None
                    } else {
                        Some(Before::Agent(desc))
                    }
                }
                _ => Some(Before::Absent),
            };
            if before.is_some() {
                qjs::JS_DeleteProperty(raw, proto, atom, 0);
                qjs::JS_DefineProperty(
                    raw,
                    proto,
                    atom,
                    qjs::JS_UNDEFINED,
                    qjs::JS_UNDEFINED,
                    qjs::JS_UNDEFINED,
                    (qjs::JS_PROP_HAS_VALUE
                        | qjs::JS_PROP_HAS_WRITABLE
                        | qjs::JS_PROP_WRITABLE
                        | qjs::JS_PROP_HAS_CONFIGURABLE
                        | qjs::JS_PROP_CONFIGURABLE) as c_int,
                );
            }
            Shield {
                proto,
                atom,
                before,
            }
        }
    }

    /// Puts back what agent code had made of the name.
    fn lower(self, raw: *mut qjs::JSContext) {
        // SAFETY: the values raised above, freed exactly once here.
        unsafe {
            match &self.before {
                None => {}
                Some(Before::Absent) | Some(Before::Ours) => {
                    qjs::JS_DeleteProperty(raw, self.proto, self.atom, 0);
                }
                Some(Before::Agent(d)) => {
                    qjs::JS_DeleteProperty(raw, self.proto, self.atom, 0);
                    let flags = d.flags
                        & (qjs::JS_PROP_CONFIGURABLE | qjs::JS_PROP_ENUMERABLE) as c_int
                        | (qjs::JS_PROP_HAS_CONFIGURABLE
                            | qjs::JS_PROP_HAS_ENUMERABLE
                            | qjs::JS_PROP_HAS_GET
                            | qjs::JS_PROP_HAS_SET) as c_int;
                    qjs::JS_DefineProperty(
                        raw, self.proto, self.atom, d.value, d.getter, d.setter, flags,
                    );
                    free_desc(raw, d);
                }
            }
            qjs::JS_FreeAtom(raw, self.atom);
            qjs::JS_FreeValue(raw, self.proto);
        }
    }
}

fn free_desc(raw: *mut qjs::JSContext, desc: &qjs::JSPropertyDescriptor) {
    // SAFETY: the descriptor's values were duplicated for the caller, who
    // frees each once.
    unsafe {
        qjs::JS_FreeValue(raw, desc.value);
        qjs::JS_FreeValue(raw, desc.getter);
        qjs::JS_FreeValue(raw, desc.setter);
    }
}
