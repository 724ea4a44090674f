//! QuickJS's memory: its small blocks kept out of the zygote's holes, its new memory in a child
//! from the child's own region ([`crate::zygote::fresh_memory`]).
//!
//! QuickJS keeps blocks of up to 504 bytes in 4 KiB arenas, a list of them per size class, and
//! takes a new block from the first arena that has a free one. After the zygote's set-up (and
//! its garbage collection) the free blocks are scattered over hundreds of partly used arenas,
//! and each object a child made landed on another page it shares with the zygote. So the
//! zygote takes every free block before it forks ([`fill_arenas`]), but for one new arena per
//! size class, where a child's first objects of that size go; further arenas come from
//! [`FreshInChild`], in a child from its region.

use std::cell::Cell;

use rquickjs::allocator::Allocator;
use rquickjs::{qjs, Ctx};

use crate::zygote::fresh_memory;

thread_local! {
    /// Calls for new memory that reached [`FreshInChild`] (a new arena, a large block).
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
}

/// Takes every free block of QuickJS's arenas, size class by size class, until one comes from
/// a new arena: that arena, the first of its class, is where a child's next block of that size
/// goes. The blocks taken stay with the zygote (they were free memory of its heap already).
pub fn fill_arenas(ctx: &Ctx<'_>) {
    /// Block sizes of QuickJS's arenas (quickjs.c's `arena_block_sizes`), header included.
    const BLOCK_SIZES: [usize; 31] = [
        16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 144, 160, 176, 192, 208,
        224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512,
    ];
    /// QuickJS's header before every block.
    const BLOCK_HEADER: usize = 8;
    // SAFETY: the context's own runtime; the blocks are QuickJS's to hand out, and are kept.
    unsafe {
        let rt = qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        for block in BLOCK_SIZES {
            loop {
                let before = REQUESTS.get();
                let taken = qjs::js_malloc_rt(rt, (block - BLOCK_HEADER) as qjs::size_t);
                if taken.is_null() || REQUESTS.get() != before {
                    break;
                }
            }
        }
    }
}

/// QuickJS's allocator: glibc, but in a child new memory from its region while it lasts.
pub struct FreshInChild;

// SAFETY: blocks are fresh_memory's (16-byte aligned, at least the size asked for, handed out
// once until freed) or glibc's, each freed, resized and measured by its own.
unsafe impl Allocator for FreshInChild {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        REQUESTS.set(REQUESTS.get() + 1);
        match fresh_memory::take(size) {
            Some(block) => block,
            // SAFETY: plain malloc.
            None => unsafe { libc::malloc(size).cast() },
        }
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        REQUESTS.set(REQUESTS.get() + 1);
        match count.checked_mul(size).and_then(fresh_memory::take_zeroed) {
            Some(block) => block,
            // SAFETY: plain calloc.
            None => unsafe { libc::calloc(count, size).cast() },
        }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if fresh_memory::holds(ptr) {
            // SAFETY: a block of the region, no longer used (the caller's promise).
            unsafe { fresh_memory::give_back(ptr) }
        } else {
            // SAFETY: a block of glibc's, no longer used (the caller's promise).
            unsafe { libc::free(ptr.cast()) }
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if fresh_memory::holds(ptr) {
            // SAFETY: a block of the region, which QuickJS gives up for the new one; the
            // fallback is plain malloc.
            unsafe { fresh_memory::resize(ptr, new_size, |n| libc::malloc(n).cast()) }
        } else {
            // A glibc block (or none) stays glibc's, resized in place where it can be.
            // SAFETY: a block of glibc's (the caller's promise), or null.
            unsafe { libc::realloc(ptr.cast(), new_size).cast() }
        }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        if fresh_memory::holds(ptr) {
            // SAFETY: a block of the region.
            unsafe { fresh_memory::size_of(ptr) }
        } else {
            // SAFETY: a block of glibc's.
            unsafe { libc::malloc_usable_size(ptr.cast()) }
        }
    }
}
