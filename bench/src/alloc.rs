//! A counting global allocator for the benchmarks: how many allocations a
//! piece of work makes, and how many heap bytes are live at a point.
//!
//! A bench binary opts in with
//! `#[global_allocator] static A: starttls_bench::alloc::Counting = starttls_bench::alloc::Counting;`
//! and then calls [`measure`] or [`live_bytes`]. The counters are global
//! (atomics), so measure on one thread at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// Defers to the system allocator and counts calls and live bytes.
pub struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method defers to `System` with the caller's arguments; the
// counters do not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocation calls (alloc, alloc_zeroed, realloc) so far, process-wide.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Relaxed)
}

/// Heap bytes currently allocated through the counting allocator.
pub fn live_bytes() -> isize {
    LIVE.load(Relaxed)
}

/// Runs `f` and returns its value with the allocation calls it made.
pub fn measure<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = allocations();
    let v = f();
    (allocations() - before, v)
}
