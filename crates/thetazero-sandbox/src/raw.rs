//! QuickJS calls rquickjs does not wrap. It must stay a thin, checked layer over the C API.
#![allow(unsafe_code)]

use std::ffi::c_int;

use rquickjs::{qjs, Ctx, Error, Function, Object, Result};

/// `Object.freeze(obj)`, without going through a JavaScript call.
pub(crate) fn freeze(ctx: &Ctx<'_>, obj: &Object<'_>) -> Result<()> {
    // SAFETY: a live object of this thread's live context.
    match unsafe { qjs::JS_FreezeObject(ctx.as_raw().as_ptr(), obj.as_raw()) } {
        1 => Ok(()),
        _ => Err(Error::Exception),
    }
}

/// `Object.preventExtensions(obj)`.
pub(crate) fn prevent_extensions(ctx: &Ctx<'_>, obj: &Object<'_>) -> Result<()> {
    // SAFETY: a live object of this thread's live context.
    match unsafe { qjs::JS_PreventExtensions(ctx.as_raw().as_ptr(), obj.as_raw()) } {
        1 => Ok(()),
        _ => Err(Error::Exception),
    }
}

/// Defines `name` on `obj` as a configurable, non-enumerable accessor whose
/// getter and setter are both `access`.
pub(crate) fn define_accessor(
    ctx: &Ctx<'_>,
    obj: &Object<'_>,
    name: &str,
    access: &Function<'_>,
) -> Result<()> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: live context and values; JS_DefinePropertyGetSet takes the two
    // references duplicated for it; the atom is freed once.
    unsafe {
        let atom = qjs::JS_NewAtomLen(raw, name.as_ptr().cast(), name.len() as _);
        if atom == qjs::JS_ATOM_NULL {
            return Err(Error::Exception);
        }
        let ok = qjs::JS_DefinePropertyGetSet(
            raw,
            obj.as_raw(),
            atom,
            qjs::JS_DupValue(raw, access.as_raw()),
            qjs::JS_DupValue(raw, access.as_raw()),
            qjs::JS_PROP_CONFIGURABLE as c_int,
        );
        qjs::JS_FreeAtom(raw, atom);
        if ok == 1 {
            Ok(())
        } else {
            Err(Error::Exception)
        }
    }
}
