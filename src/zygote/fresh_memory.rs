//! A child's new memory on pages of its own, not in the holes of the heap it shares with its
//! zygote.
//!
//! After a zygote's set-up its heap is full of small free chunks, scattered between live
//! objects. An allocator hands those out first, so the objects a child made landed each on
//! another page it shares with the zygote, and each such page was a copy-on-write fault
//! (~4.4 µs here): most of a trivial JavaScript run's faults were allocations, QuickJS's and
//! Rust's, and most of a Python run's heap faults glibc's. So a zygote maps a region
//! ([`map_region`]) that it never touches; in its children (from [`use_region_in_child`])
//! QuickJS's, CPython's and Rust's allocators (and numpy's, for small array data) take memory
//! from it front to back, a page faulted in zeroed, without a copy, holding many of the run's
//! objects. Blocks freed are kept by size and given out again. The region is part of what the
//! zygote maps, so a child's memory limit already counts it; a run that outgrows it goes on
//! with the allocators it came before.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The region's size: a trivial run uses a few dozen KiB of it. Less than a huge page, so that
/// no 2 MiB block of it is ever backed by one (the zygote collapses its anonymous memory into
/// huge pages before its first fork).
const REGION_BYTES: usize = 1 << 20;
/// Every block starts with its size, and keeps malloc's alignment.
pub const ALIGN: usize = 16;
const HEADER: usize = ALIGN;
/// Freed blocks are kept, a list per size, up to this size (header included): QuickJS frees
/// and makes arenas of one size class over and over (an arena whose last block is freed goes,
/// and the next block of that size makes a new one), and Rust's small allocations repeat too.
const REUSED_UP_TO: usize = 8 << 10;
const SIZES: usize = REUSED_UP_TO / HEADER + 1;

/// The region: where it starts and ends (0 and 0 without one), and its next free byte, 0 until
/// [`use_region_in_child`]: a zygote, and the server, take nothing from it. Process-wide, not
/// per thread, so that a block is known for the region's wherever it is freed; only a child,
/// single-threaded, changes `NEXT` and `FREED`.
static START: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Freed blocks, a list per block size (in HEADER units), linked through their first bytes.
static FREED: [AtomicUsize; SIZES] = [const { AtomicUsize::new(0) }; SIZES];

/// Maps the region, untouched: no page of it exists until a child writes one. Before the
/// zygote's memory is measured for the memory limit; best effort (without it, glibc as ever).
pub fn map_region() {
    // SAFETY: a new private anonymous mapping that nothing else refers to; NOHUGEPAGE keeps
    // it apart from neighbouring mappings the zygote collapses into huge pages.
    let start = unsafe {
        let at = libc::mmap(
            std::ptr::null_mut(),
            REGION_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if at == libc::MAP_FAILED {
            return;
        }
        libc::madvise(at, REGION_BYTES, libc::MADV_NOHUGEPAGE);
        at as usize
    };
    START.store(start, Relaxed);
    END.store(start + REGION_BYTES, Relaxed);
}

/// In a child, right after the fork: new memory comes from the region from now on.
pub fn use_region_in_child() {
    NEXT.store(START.load(Relaxed), Relaxed);
}

/// Whether a block of `size` bytes is given out again once freed (a larger one stays taken
/// until the child exits).
pub fn reuses(size: usize) -> bool {
    block_of(size).is_some_and(|block| block <= REUSED_UP_TO)
}

/// A block's length in the region: its header, and room for the link of a freed block.
fn block_of(size: usize) -> Option<usize> {
    Some(HEADER.checked_add(size.max(8))?.next_multiple_of(HEADER))
}

/// A block of at least `size` bytes, aligned to [`ALIGN`], if this is a child with a region
/// that has room: one freed before at the same size, or the next bytes of the region.
pub fn take(size: usize) -> Option<*mut u8> {
    let next = NEXT.load(Relaxed);
    if next == 0 {
        return None;
    }
    let block = block_of(size)?;
    if block <= REUSED_UP_TO {
        let list = &FREED[block / HEADER];
        let head = list.load(Relaxed);
        if head != 0 {
            // SAFETY: `head` is a freed block of this size (see `give_back`): its first bytes
            // link the next one.
            list.store(unsafe { (head as *const usize).read() }, Relaxed);
            return Some(head as *mut u8);
        }
    }
    if block > END.load(Relaxed) - next {
        return None;
    }
    NEXT.store(next + block, Relaxed);
    let at = next as *mut u8;
    // SAFETY: `at` begins `block` bytes of the region that no other block uses; its first
    // HEADER bytes hold the size (aligned: `next` is a multiple of HEADER from START, a page).
    unsafe {
        at.cast::<usize>().write(block - HEADER);
        Some(at.add(HEADER))
    }
}

/// [`take`], the block's bytes zeroed (a block given out again holds old ones).
pub fn take_zeroed(size: usize) -> Option<*mut u8> {
    let block = take(size)?;
    // SAFETY: the block holds at least `size` bytes.
    unsafe { block.write_bytes(0, size) };
    Some(block)
}

/// Resizes a block of the region: the block itself if it holds `new_size` bytes, else a new
/// one — the region's, or from `elsewhere` when the region has no room — holding its bytes,
/// the old one given back. Null (the old block kept) if `elsewhere` had none either.
///
/// # Safety
/// `ptr` must be a block [`take`] returned; on success the caller uses the new one only.
pub unsafe fn resize(
    ptr: *mut u8,
    new_size: usize,
    elsewhere: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    // SAFETY: the caller's promise.
    let old_size = unsafe { size_of(ptr) };
    if new_size <= old_size {
        return ptr;
    }
    let block = take(new_size).unwrap_or_else(|| elsewhere(new_size));
    if !block.is_null() {
        // SAFETY: both blocks hold the bytes copied and do not overlap; the old one is given
        // up (the caller's promise).
        unsafe {
            std::ptr::copy_nonoverlapping(ptr, block, old_size);
            give_back(ptr);
        }
    }
    block
}

/// Whether `ptr` is a block of the region (else it is the allocator's it came before).
pub fn holds(ptr: *mut u8) -> bool {
    (START.load(Relaxed)..END.load(Relaxed)).contains(&(ptr as usize))
}

/// The usable size of a block of the region.
///
/// # Safety
/// `ptr` must be a block [`take`] returned.
pub unsafe fn size_of(ptr: *mut u8) -> usize {
    // SAFETY: the size is written HEADER bytes before every block (see `take`).
    unsafe { ptr.sub(HEADER).cast::<usize>().read() }
}

/// Keeps a freed block for [`take`] (or, if larger than any kept, for the process's exit).
///
/// # Safety
/// `ptr` must be a block [`take`] returned, and nothing may use it any more.
pub unsafe fn give_back(ptr: *mut u8) {
    // SAFETY: the caller's promise.
    let block = unsafe { size_of(ptr) } + HEADER;
    if block <= REUSED_UP_TO {
        let list = &FREED[block / HEADER];
        // SAFETY: the block is unused and at least 8 bytes long (see `take`).
        unsafe { ptr.cast::<usize>().write(list.load(Relaxed)) };
        list.store(ptr as usize, Relaxed);
    }
}
