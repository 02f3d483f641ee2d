//! Scripts compiled once to QuickJS bytecode, so that a fresh context reads them instead of parsing them: the sandbox's own set-up script, and agent code that runs again unchanged. Only bytecode this process compiled from source is ever loaded: QuickJS trusts bytecode completely, so `Bytecode` can be made only by `compile`, and agent source is keyed by its full text.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_int, CString};
use std::sync::{Arc, Mutex, OnceLock};

use rquickjs::{qjs, Ctx, Error, Result, Value};

/// Bytecode this process compiled from source. QuickJS trusts bytecode
/// completely, so the type is the guarantee: its bytes are private and
/// `compile` is the only way to make one (the cache's tests make stand-ins
/// that never run). Cloning shares the bytes.
#[derive(Clone)]
pub(crate) struct Bytecode(Arc<[u8]>);

impl Bytecode {
    fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn stand_in(bytes: &[u8]) -> Bytecode {
        Bytecode(Arc::from(bytes))
    }
}

/// Compiles `source` as a global script in `ctx` and returns its bytecode, or
/// `None` if it does not compile (the caller evaluates the source instead,
/// which reports the error as usual).
/// `barrier`: backtraces stop at this script (agent code), as
/// `EvalOptions::backtrace_barrier` does.
pub(crate) fn compile(
    ctx: &Ctx<'_>,
    source: &str,
    filename: &str,
    barrier: bool,
) -> Option<Bytecode> {
    let src = CString::new(source).ok()?;
    let file = CString::new(filename).ok()?;
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: `raw` is this thread's live context; the source is
    // NUL-terminated as JS_Eval requires; every value made here is freed once.
    unsafe {
        let mut flags = (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as c_int;
        if barrier {
            flags |= qjs::JS_EVAL_FLAG_BACKTRACE_BARRIER as c_int;
        }
        let func = qjs::JS_Eval(raw, src.as_ptr(), source.len() as _, file.as_ptr(), flags);
        if qjs::JS_IsException(func) {
            qjs::JS_FreeValue(raw, qjs::JS_GetException(raw));
            return None;
        }
        let mut len: qjs::size_t = 0;
        let buf = qjs::JS_WriteObject(raw, &mut len, func, qjs::JS_WRITE_OBJ_BYTECODE as c_int);
        qjs::JS_FreeValue(raw, func);
        if buf.is_null() {
            qjs::JS_FreeValue(raw, qjs::JS_GetException(raw));
            return None;
        }
        let bytes: Arc<[u8]> = std::slice::from_raw_parts(buf, len as usize).into();
        qjs::js_free(raw, buf.cast());
        Some(Bytecode(bytes))
    }
}

/// Runs bytecode made by `compile` in `ctx` and returns the script's value.
fn run<'js>(ctx: &Ctx<'js>, bytecode: &Bytecode) -> Result<Value<'js>> {
    let bytes = &bytecode.0;
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: the bytes were written by JS_WriteObject of this same engine
    // build in this process (`compile`); JS_EvalFunction takes the function.
    unsafe {
        let func = qjs::JS_ReadObject(
            raw,
            bytes.as_ptr(),
            bytes.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as c_int,
        );
        if qjs::JS_IsException(func) {
            return Err(Error::Exception);
        }
        let value = qjs::JS_EvalFunction(raw, func);
        if qjs::JS_IsException(value) {
            return Err(Error::Exception);
        }
        Ok(Value::from_raw(ctx.clone(), value))
    }
}

/// A script the sandbox itself runs in every context, compiled at first use.
pub(crate) struct Fixed {
    source: &'static str,
    filename: &'static str,
    bytes: OnceLock<Bytecode>,
}

impl Fixed {
    pub(crate) const fn new(source: &'static str, filename: &'static str) -> Fixed {
        Fixed {
            source,
            filename,
            bytes: OnceLock::new(),
        }
    }

    pub(crate) fn eval<'js>(&self, ctx: &Ctx<'js>) -> Result<Value<'js>> {
        // Only a success is kept: compiling runs under the job's memory
        // limit, and one run short of memory must not leave every later
        // run parsing the script.
        eval(
            ctx,
            self.source,
            self.filename,
            false,
            self.bytes.get().cloned(),
            |bytes| {
                let _ = self.bytes.set(bytes);
            },
        )
    }
}

/// Runs `source` as a global script from bytecode: `cached` when there is
/// some, else compiled now and handed to `keep`. Source that does not compile
/// is evaluated as it is, which reports its error as usual.
pub(crate) fn eval<'js>(
    ctx: &Ctx<'js>,
    source: &str,
    filename: &str,
    barrier: bool,
    cached: Option<Bytecode>,
    keep: impl FnOnce(Bytecode),
) -> Result<Value<'js>> {
    let bytes = cached.or_else(|| {
        let compiled = compile(ctx, source, filename, barrier)?;
        keep(compiled.clone());
        Some(compiled)
    });
    match bytes {
        Some(bytes) => run(ctx, &bytes),
        None => {
            // As `compile` would have: global, not strict.
            let mut options = rquickjs::context::EvalOptions::default();
            options.global = true;
            options.strict = false;
            options.backtrace_barrier = barrier;
            options.filename = Some(filename.to_string());
            ctx.eval_with_options(source, options)
        }
    }
}

/// Bytecode of recently run agent code, keyed by the exact wrapped source,
/// kept per scope (an account). Each scope is bounded by entries and bytes on
/// its own, and a full scope is cleared and refilled alone (agents whose code
/// changes often simply compile each time): one account churning through
/// code never flushes another's. When all scopes together pass the total,
/// the largest scope goes first.
pub(crate) struct AgentCache {
    inner: Mutex<CacheInner>,
}

/// Agent source and its bytecode.
type Compiled = (Arc<str>, Bytecode);

#[derive(Default)]
struct ScopeCache {
    /// Hash of the source → (source, bytecode).
    entries: HashMap<u64, Compiled>,
    bytes: usize,
}

#[derive(Default)]
struct CacheInner {
    scopes: HashMap<u64, ScopeCache>,
    bytes: usize,
}

const SCOPE_ENTRIES: usize = 256;
const SCOPE_BYTES: usize = 16 << 20;
const CACHE_BYTES: usize = 64 << 20;
/// Larger scripts are compiled each time rather than kept.
const CACHE_MAX_SCRIPT: usize = 1 << 20;

fn hash(source: &str) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).hash_one(source)
}

impl AgentCache {
    pub(crate) fn global() -> &'static AgentCache {
        static CACHE: OnceLock<AgentCache> = OnceLock::new();
        CACHE.get_or_init(AgentCache::new)
    }

    fn new() -> AgentCache {
        AgentCache {
            inner: Mutex::new(CacheInner::default()),
        }
    }

    pub(crate) fn get(&self, scope: u64, source: &str) -> Option<Bytecode> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.scopes.get(&scope)?.entries.get(&hash(source)) {
            Some((kept, bytes)) if **kept == *source => Some(bytes.clone()),
            _ => None,
        }
    }

    pub(crate) fn put(&self, scope: u64, source: &str, bytes: Bytecode) {
        if bytes.len() > CACHE_MAX_SCRIPT {
            return;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        let own = inner.scopes.entry(scope).or_default();
        if own.entries.len() >= SCOPE_ENTRIES || own.bytes + bytes.len() > SCOPE_BYTES {
            inner.bytes -= own.bytes;
            own.entries.clear();
            own.bytes = 0;
        }
        let added = bytes.len();
        own.bytes += added;
        inner.bytes += added;
        if let Some((_, old)) = own.entries.insert(hash(source), (source.into(), bytes)) {
            own.bytes -= old.len();
            inner.bytes -= old.len();
        }
        while inner.bytes > CACHE_BYTES {
            let Some(largest) = inner
                .scopes
                .iter()
                .max_by_key(|(_, c)| c.bytes)
                .map(|(s, _)| *s)
            else {
                break;
            };
            if let Some(dropped) = inner.scopes.remove(&largest) {
                inner.bytes -= dropped.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_per_scope_and_per_exact_source() {
        let c = AgentCache::new();
        c.put(1, "return 1", Bytecode::stand_in(b"one"));
        assert_eq!(
            c.get(1, "return 1").map(|b| b.0.to_vec()),
            Some(b"one".to_vec())
        );
        assert!(c.get(2, "return 1").is_none());
        assert!(c.get(1, "return 1 ").is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let c = AgentCache::new();
        for i in 0..SCOPE_ENTRIES + 10 {
            c.put(0, &format!("return {i}"), Bytecode::stand_in(b"x"));
        }
        let inner = c.inner.lock().unwrap();
        assert!(inner.scopes[&0].entries.len() <= SCOPE_ENTRIES);
        assert_eq!(inner.bytes, inner.scopes[&0].entries.len());
        drop(inner);
        c.put(
            0,
            "big",
            Bytecode::stand_in(&vec![0u8; CACHE_MAX_SCRIPT + 1]),
        );
        assert!(c.get(0, "big").is_none());
        // All scopes together stay under the total.
        let chunk = vec![0u8; CACHE_MAX_SCRIPT];
        for scope in 0..100u64 {
            for i in 0..4 {
                c.put(scope, &format!("s{i}"), Bytecode::stand_in(&chunk));
            }
        }
        assert!(c.inner.lock().unwrap().bytes <= CACHE_BYTES);
    }

    /// One scope churning through code clears only itself.
    #[test]
    fn one_scope_cannot_flush_another() {
        let c = AgentCache::new();
        c.put(1, "return 'mine'", Bytecode::stand_in(b"mine"));
        for i in 0..SCOPE_ENTRIES * 4 {
            c.put(2, &format!("return {i}"), Bytecode::stand_in(b"x"));
        }
        assert_eq!(
            c.get(1, "return 'mine'").map(|b| b.0.to_vec()),
            Some(b"mine".to_vec())
        );
    }
}
