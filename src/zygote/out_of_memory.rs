//! The kernel refusing memory to Rust code in a child (building the report, converting a
//! result) is still the run hitting its memory limit. Rust's default answer to a failed
//! allocation is to abort, which the server would see as death by SIGABRT; this allocator
//! instead sends a `memory_limit` report prepared while memory was still available, and leaves.
//!
//! CPython and QuickJS report their own MemoryError / out-of-memory; this covers the Rust side.
//! In a child with a fresh-memory region ([`crate::zygote::fresh_memory`]) it takes blocks from
//! that first; everywhere else it is the system allocator, unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::protocol::{write_frame, ChildReport, FrameTag, CHILD_CHANNEL_FD};
use crate::zygote::fresh_memory;

pub struct ReportingAllocator;

static REPORT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static REPORT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Prepares the frame to send if an allocation fails from now on in this (child) process.
pub fn arm(memory_mb: u64) {
    let mut frame = Vec::new();
    let json = ChildReport::memory_limit(memory_mb).to_json();
    write_frame(&mut frame, FrameTag::Report, &json).expect("writing to a Vec");
    let frame: &'static mut [u8] = Box::leak(frame.into_boxed_slice());
    REPORT_LEN.store(frame.len(), Ordering::Relaxed);
    REPORT.store(frame.as_mut_ptr(), Ordering::Release);
}

/// A refusal found by other means (QuickJS failing to hand a string to Rust): the same report.
pub fn report_refusal() -> ! {
    refused();
    crate::zygote::child::fail("memory refused before the run began")
}

fn refused() {
    let report = REPORT.load(Ordering::Acquire);
    if report.is_null() {
        return; // not an armed child: let Rust report the failure as usual
    }
    let mut at = 0;
    let len = REPORT_LEN.load(Ordering::Relaxed);
    while at < len {
        // SAFETY: `report` points at `len` leaked bytes that are never freed or changed.
        let n = unsafe { libc::write(CHILD_CHANNEL_FD, report.add(at).cast(), len - at) };
        if n <= 0 {
            break;
        }
        at += n as usize;
    }
    // SAFETY: _exit ends the process without running anything else (nothing may allocate).
    unsafe { libc::_exit(0) }
}

// SAFETY: every method forwards to the system allocator, or in a child with a fresh-memory
// region takes blocks of it (aligned to fresh_memory::ALIGN, at least the size asked for,
// handed out once until freed); `refused` only writes and exits.
unsafe impl GlobalAlloc for ReportingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= fresh_memory::ALIGN {
            if let Some(block) = fresh_memory::take(layout.size()) {
                return block;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            refused();
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= fresh_memory::ALIGN {
            if let Some(block) = fresh_memory::take_zeroed(layout.size()) {
                return block;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            refused();
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if fresh_memory::holds(ptr) {
            // SAFETY: a block of the region, which the caller gives up for the new one; the
            // fallback keeps the block's alignment (new_size is not zero).
            return unsafe {
                fresh_memory::resize(ptr, new_size, |n| {
                    self.alloc(Layout::from_size_align_unchecked(n, layout.align()))
                })
            };
        }
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            refused();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if fresh_memory::holds(ptr) {
            // SAFETY: a block of the region that the caller no longer uses.
            unsafe { fresh_memory::give_back(ptr) }
        } else {
            // SAFETY: forwarded with the caller's pointer and layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}
