//! Counting allocator for one QuickJS runtime: enforces the memory limit and records peak use and whether the limit was hit. It must not allocate on its own behalf or touch anything but its own counters.
//!
//! QuickJS's own `JS_SetMemoryLimit` makes allocations fail, but an agent can catch the
//! resulting error (the thrown value may even be `null`), so the host could not tell a
//! memory bomb from a normal failure. Counting here gives the host its own record.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// What `RustAllocator` adds to every block: an 8-byte size header, sizes rounded to 8.
const HEADER: usize = 8;

fn charged(size: usize) -> Option<usize> {
    size.checked_add(7)
        .map(|s| s / 8 * 8)
        .and_then(|s| s.checked_add(HEADER))
}

#[derive(Debug)]
pub(crate) struct AllocStats {
    used: AtomicUsize,
    peak: AtomicUsize,
    limit: AtomicUsize,
    hit: AtomicBool,
}

impl AllocStats {
    pub(crate) fn new(limit: usize) -> Arc<AllocStats> {
        Arc::new(AllocStats {
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            hit: AtomicBool::new(false),
        })
    }

    /// Sets the limit for the job a prepared runtime is handed to.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub(crate) fn limit_hit(&self) -> bool {
        self.hit.load(Ordering::Relaxed)
    }

    /// Charges `bytes`, or refuses (and remembers the refusal) past the limit.
    fn reserve(&self, bytes: usize) -> bool {
        // One runtime is only ever used by one thread at a time, so relaxed
        // load-then-store is exact; atomics only make the type Send + Sync.
        let used = self.used.load(Ordering::Relaxed);
        match used.checked_add(bytes) {
            Some(next) if next <= self.limit.load(Ordering::Relaxed) => {
                self.used.store(next, Ordering::Relaxed);
                if next > self.peak.load(Ordering::Relaxed) {
                    self.peak.store(next, Ordering::Relaxed);
                }
                true
            }
            _ => {
                self.hit.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// Charges bytes held for the run outside the engine's heap; false (and
    /// the limit marked as hit) when they do not fit.
    pub(crate) fn charge(&self, bytes: usize) -> bool {
        self.reserve(bytes)
    }

    pub(crate) fn uncharge(&self, bytes: usize) {
        self.release(bytes);
    }

    fn release(&self, bytes: usize) {
        let used = self.used.load(Ordering::Relaxed);
        self.used
            .store(used.saturating_sub(bytes), Ordering::Relaxed);
    }
}

pub(crate) struct CountingAllocator(pub(crate) Arc<AllocStats>);

// SAFETY: every method delegates to `RustAllocator`, which upholds the trait's
// contract; this type only adds bookkeeping and refuses (returns null) early.
unsafe impl Allocator for CountingAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let Some(bytes) = charged(size) else {
            return std::ptr::null_mut();
        };
        if !self.0.reserve(bytes) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.alloc(size);
        if ptr.is_null() {
            self.0.release(bytes);
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        // RustAllocator panics on overflow; a panic across the C boundary aborts.
        let Some(total) = count.checked_mul(size) else {
            return std::ptr::null_mut();
        };
        if total == 0 {
            return std::ptr::null_mut();
        }
        let Some(bytes) = charged(total) else {
            return std::ptr::null_mut();
        };
        if !self.0.reserve(bytes) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.calloc(count, size);
        if ptr.is_null() {
            self.0.release(bytes);
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: `ptr` came from `RustAllocator` through this allocator, so it
        // carries the header `usable_size` reads.
        let size = unsafe { RustAllocator::usable_size(ptr) };
        self.0.release(size + HEADER);
        // SAFETY: as above; QuickJS frees each block once.
        unsafe { RustAllocator.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // The C-side wrapper passes null and zero through; RustAllocator does not
        // handle them, so do what libc's realloc does.
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        if new_size == 0 {
            // SAFETY: `ptr` is a live block of this allocator.
            unsafe { self.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` is a live block of this allocator.
        let old = unsafe { RustAllocator::usable_size(ptr) } + HEADER;
        let Some(new) = charged(new_size) else {
            return std::ptr::null_mut();
        };
        if new > old && !self.0.reserve(new - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` is a live block of this allocator.
        let out = unsafe { RustAllocator.realloc(ptr, new_size) };
        if out.is_null() {
            if new > old {
                self.0.release(new - old);
            }
        } else if new < old {
            self.0.release(old - new);
        }
        out
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: forwarded contract: `ptr` is a live block of this allocator.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
