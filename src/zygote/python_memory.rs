//! CPython's memory in a child from the child's fresh-memory region first
//! ([`super::fresh_memory`]): all three allocation domains, raw (`PyMem_RawMalloc`, glibc's:
//! objects over 512 bytes, the storage of large lists and dicts) and mem and object (pymalloc:
//! every small object). In a child, glibc scattered its blocks over the zygote's heap and tidied
//! its free lists there (`malloc_consolidate`, `unlink_chunk`: ~75 shared pages written a run),
//! and pymalloc put a run's small objects in the free blocks of the zygote's partly used pools
//! (~30 more).
//!
//! Installed once the interpreter is up, as a hook on each domain (as `tracemalloc` installs
//! itself): any block it did not hand out itself goes to the allocator it replaced, so blocks
//! allocated before stay valid either way.

use std::ffi::c_void;
use std::ptr;

use pyo3::ffi;

use super::fresh_memory;

/// Routes CPython's allocation domains through this module.
pub fn install() {
    use ffi::PyMemAllocatorDomain::{PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ, PYMEM_DOMAIN_RAW};
    for domain in [PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ] {
        let mut previous = ffi::PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: None,
            calloc: None,
            realloc: None,
            free: None,
        };
        // SAFETY: CPython fills the struct in.
        unsafe { ffi::PyMem_GetAllocator(domain, &mut previous) };
        let mut allocator = ffi::PyMemAllocatorEx {
            // Never freed: the allocator is used until the process ends.
            ctx: Box::into_raw(Box::new(previous)).cast(),
            malloc: Some(malloc),
            calloc: Some(calloc),
            realloc: Some(realloc),
            free: Some(free),
        };
        // SAFETY: the struct is valid for the call; CPython copies it. The allocator is as
        // thread-safe as the raw domain requires: outside a child it is the previous one, and
        // a child is single-threaded.
        unsafe { ffi::PyMem_SetAllocator(domain, &mut allocator) };
    }
}

/// The allocator [`install`] replaced, from a `ctx`.
fn previous(ctx: *mut c_void) -> &'static ffi::PyMemAllocatorEx {
    // SAFETY: `ctx` is the leaked copy `install` made, never changed or freed.
    unsafe { &*ctx.cast::<ffi::PyMemAllocatorEx>() }
}

extern "C" fn malloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    match fresh_memory::take(size) {
        Some(block) => block.cast(),
        None => {
            let previous = previous(ctx);
            let malloc = previous.malloc.expect("CPython's malloc");
            malloc(previous.ctx, size)
        }
    }
}

extern "C" fn calloc(ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size).and_then(fresh_memory::take_zeroed) {
        Some(block) => block.cast(),
        None => {
            let previous = previous(ctx);
            let calloc = previous.calloc.expect("CPython's calloc");
            calloc(previous.ctx, count, size)
        }
    }
}

extern "C" fn realloc(ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    let previous = previous(ctx);
    let block = ptr.cast::<u8>();
    if fresh_memory::holds(block) {
        let malloc = previous.malloc.expect("CPython's malloc");
        // SAFETY: a block of the region, which CPython gives up for the new one on success.
        return unsafe { fresh_memory::resize(block, size, |n| malloc(previous.ctx, n).cast()) }
            .cast();
    }
    // The previous allocator's block (or none) stays its, resized in place where it can be.
    let realloc = previous.realloc.expect("CPython's realloc");
    realloc(previous.ctx, ptr, size)
}

extern "C" fn free(ctx: *mut c_void, ptr: *mut c_void) {
    let block = ptr.cast::<u8>();
    if fresh_memory::holds(block) {
        // SAFETY: a block of the region that CPython gave up.
        unsafe { fresh_memory::give_back(block) }
    } else {
        let previous = previous(ctx);
        let free = previous.free.expect("CPython's free");
        free(previous.ctx, ptr)
    }
}
