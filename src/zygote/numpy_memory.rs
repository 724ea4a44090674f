//! numpy's array data in a child from the child's fresh-memory region first
//! ([`super::fresh_memory`]), as CPython's own memory is ([`super::python_memory`]).
//!
//! numpy allocates an array's data with `malloc` and `calloc` itself, not through CPython's
//! domains. In a child of the python-data zygote, glibc then handed out chunks scattered over
//! the zygote's heap and tidied its free lists there (`malloc_consolidate`, `unlink_chunk`): a
//! DataFrame's first use copied dozens of pages it shared with the zygote. numpy lets a program
//! choose the allocator of array data (NEP 49, `PyDataMem_SetHandler`); the python-data zygote
//! sets this one, which is glibc's in the zygote and the region's in a child while it lasts.

use std::ffi::{c_char, c_void};
use std::ptr;

use pyo3::prelude::*;
use pyo3::{ffi, types::PyCapsule};

use super::fresh_memory;

/// numpy's `PyDataMemAllocator` (numpy/ndarraytypes.h, version 1).
#[repr(C)]
struct Allocator {
    ctx: *mut c_void,
    malloc: extern "C" fn(*mut c_void, usize) -> *mut c_void,
    calloc: extern "C" fn(*mut c_void, usize, usize) -> *mut c_void,
    realloc: extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void,
    free: extern "C" fn(*mut c_void, *mut c_void, usize),
}

/// numpy's `PyDataMem_Handler`.
#[repr(C)]
struct Handler {
    name: [u8; 127],
    version: u8,
    allocator: Allocator,
}

// SAFETY: never written; its `ctx` is null and unused.
unsafe impl Sync for Handler {}

static HANDLER: Handler = Handler {
    name: name(b"sandlot_fresh_memory"),
    version: 1,
    allocator: Allocator {
        ctx: ptr::null_mut(),
        malloc,
        calloc,
        realloc,
        free,
    },
};

const fn name(text: &[u8]) -> [u8; 127] {
    let mut name = [0; 127];
    let mut i = 0;
    while i < text.len() {
        name[i] = text[i];
        i += 1;
    }
    name
}

/// The index of `PyDataMem_SetHandler` in numpy's C-API table (numpy/__multiarray_api.h, the
/// same since numpy 1.22).
const SET_HANDLER: usize = 304;

/// Makes this numpy's allocator of array data; numpy must be imported.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let module = py
        .import("numpy._core._multiarray_umath")
        .or_else(|_| py.import("numpy.core._multiarray_umath"))?;
    let api = module.getattr("_ARRAY_API")?;
    let api = api.cast::<PyCapsule>()?;
    // numpy's table is a capsule without a name.
    let table = api.pointer_checked(None)?.as_ptr().cast::<*const c_void>();
    // SAFETY: numpy's C-API table has PyDataMem_SetHandler at SET_HANDLER, a function taking
    // and returning a PyObject (numpy >= 1.22; sandlot pins 2.x).
    let set_handler: extern "C" fn(*mut ffi::PyObject) -> *mut ffi::PyObject =
        unsafe { std::mem::transmute(*table.add(SET_HANDLER)) };
    // SAFETY: a capsule around the static handler, under the name numpy checks; numpy keeps a
    // reference to it for as long as it is the handler, and the handler lives for ever.
    unsafe {
        let capsule = ffi::PyCapsule_New(
            ptr::addr_of!(HANDLER).cast_mut().cast(),
            c"mem_handler".as_ptr().cast::<c_char>(),
            None,
        );
        if capsule.is_null() {
            return Err(PyErr::fetch(py));
        }
        let previous = set_handler(capsule);
        ffi::Py_DECREF(capsule);
        if previous.is_null() {
            return Err(PyErr::fetch(py));
        }
        ffi::Py_DECREF(previous);
    }
    Ok(())
}

/// Array data the region holds: small blocks, which it gives out again when freed. A larger
/// block would stay taken after its array is gone (a DataFrame's columns used up the region in
/// a few operations), and glibc maps a large one afresh anyway.
fn for_region(size: usize) -> bool {
    size < fresh_memory::REUSED_UP_TO - fresh_memory::ALIGN
}

extern "C" fn malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    match Some(size)
        .filter(|&n| for_region(n))
        .and_then(fresh_memory::take)
    {
        Some(block) => block.cast(),
        // SAFETY: plain malloc.
        None => unsafe { libc::malloc(size) },
    }
}

extern "C" fn calloc(_ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count
        .checked_mul(size)
        .filter(|&n| for_region(n))
        .and_then(fresh_memory::take_zeroed)
    {
        Some(block) => block.cast(),
        // SAFETY: plain calloc.
        None => unsafe { libc::calloc(count, size) },
    }
}

extern "C" fn realloc(ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    let block = ptr.cast::<u8>();
    if block.is_null() {
        return malloc(ctx, size);
    }
    if fresh_memory::holds(block) {
        if for_region(size) {
            // SAFETY: a block of the region, which numpy gives up for the new one on success.
            return unsafe { fresh_memory::resize(block, size, |n| libc::malloc(n).cast::<u8>()) }
                .cast();
        }
        // SAFETY: grown out of the region: glibc's new block takes the old one's bytes (it is
        // smaller), and the old one goes back to the region.
        unsafe {
            let grown = libc::malloc(size);
            if !grown.is_null() {
                let kept = fresh_memory::size_of(block).min(size);
                std::ptr::copy_nonoverlapping(block, grown.cast::<u8>(), kept);
                fresh_memory::give_back(block);
            }
            return grown;
        }
    }
    // SAFETY: glibc's block, resized by glibc.
    unsafe { libc::realloc(ptr, size) }
}

extern "C" fn free(_ctx: *mut c_void, ptr: *mut c_void, _size: usize) {
    let block = ptr.cast::<u8>();
    if fresh_memory::holds(block) {
        // SAFETY: a block of the region that numpy gave up.
        unsafe { fresh_memory::give_back(block) }
    } else {
        // SAFETY: glibc's block (or null), no longer used.
        unsafe { libc::free(ptr) }
    }
}
