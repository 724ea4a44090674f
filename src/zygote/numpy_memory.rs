//! numpy's small array data in a child from the child's fresh-memory region
//! ([`super::fresh_memory`]), as CPython's own memory is ([`super::python_memory`]).
//!
//! numpy allocates an array's data with `malloc` and `calloc` itself, not through CPython's
//! domains. In a child of the python-data zygote, glibc then handed out chunks scattered over
//! the zygote's heap and tidied its free lists there (`malloc_consolidate`, `unlink_chunk`): a
//! DataFrame's first use copied dozens of pages it shared with the zygote. numpy lets a program
//! choose the allocator of array data (NEP 49, `PyDataMem_SetHandler`); the python-data zygote
//! sets this one: glibc's in the zygote, and in a child the region's for blocks it gives out
//! again once freed (under 8 KiB; a DataFrame's columns would use it up) while it lasts.
//!
//! Code that frees array data with `free()` itself, past numpy, would break on a block of the
//! region; none of the data packages does (their tests pass with the handler set).

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

/// The handler's name, which `numpy.core.multiarray.get_handler_name()` tells.
const NAME: &str = "sandlot_fresh_memory";

static HANDLER: Handler = Handler {
    name: name(NAME.as_bytes()),
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

/// Indices in numpy's C-API table (numpy/__multiarray_api.h; fixed once given):
/// `PyArray_GetNDArrayCFeatureVersion` and `PyDataMem_SetHandler`, which needs feature version
/// 0x0f (numpy 1.22).
const FEATURE_VERSION: usize = 211;
const SET_HANDLER: usize = 304;
const HANDLERS_SINCE: u32 = 0x0f;
type FeatureVersion = extern "C" fn() -> u32;
type SetHandler = extern "C" fn(*mut ffi::PyObject) -> *mut ffi::PyObject;
/// numpy asks for huge pages for array data from this size on (its own allocator's
/// `indicate_hugepages`); so does this one, for glibc's blocks.
const HUGE_FROM: usize = 4 << 20;

/// Makes this numpy's allocator of array data; numpy must be imported.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let module = py
        .import("numpy._core._multiarray_umath")
        .or_else(|_| py.import("numpy.core._multiarray_umath"))?;
    let api = module.getattr("_ARRAY_API")?;
    let api = api.cast::<PyCapsule>()?;
    // numpy's table is a capsule without a name.
    let table = api.pointer_checked(None)?.as_ptr().cast::<*const c_void>();
    let missing = || pyo3::exceptions::PyRuntimeError::new_err("numpy has no PyDataMem_SetHandler");
    // SAFETY: numpy's C-API table holds PyArray_GetNDArrayCFeatureVersion at FEATURE_VERSION
    // (since numpy 1.4), a function of no argument returning an unsigned int.
    let version = unsafe {
        let slot = *table.add(FEATURE_VERSION);
        if slot.is_null() {
            return Err(missing());
        }
        std::mem::transmute::<*const c_void, FeatureVersion>(slot)()
    };
    if version < HANDLERS_SINCE {
        return Err(missing());
    }
    // SAFETY: with that feature version the table holds PyDataMem_SetHandler at SET_HANDLER,
    // a function taking and returning a PyObject.
    let set_handler = unsafe {
        let slot = *table.add(SET_HANDLER);
        if slot.is_null() {
            return Err(missing());
        }
        std::mem::transmute::<*const c_void, SetHandler>(slot)
    };
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
    let name: String = module.getattr("get_handler_name")?.call0()?.extract()?;
    if name != NAME {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "numpy's allocator is {name:?} after setting sandlot's"
        )));
    }
    Ok(())
}

/// Array data the region holds: small blocks, which it gives out again when freed. A larger
/// block would stay taken after its array is gone (a DataFrame's columns used up the region in
/// a few operations), and glibc maps a large one afresh anyway.
fn for_region(size: usize) -> bool {
    fresh_memory::reuses(size)
}

/// glibc's block for array data, in huge pages when it is large, as numpy's own allocator does.
fn from_glibc(block: *mut c_void, size: usize) -> *mut c_void {
    if !block.is_null() && size >= HUGE_FROM {
        let start = (block as usize).next_multiple_of(4096);
        // SAFETY: advice on whole pages inside a block glibc just gave out; a refusal changes
        // nothing.
        unsafe {
            libc::madvise(
                start as *mut c_void,
                block as usize + size - start,
                libc::MADV_HUGEPAGE,
            )
        };
    }
    block
}

extern "C" fn malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    match Some(size)
        .filter(|&n| for_region(n))
        .and_then(fresh_memory::take)
    {
        Some(block) => block.cast(),
        // SAFETY: plain malloc.
        None => from_glibc(unsafe { libc::malloc(size) }, size),
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
        None => from_glibc(
            unsafe { libc::calloc(count, size) },
            count.saturating_mul(size),
        ),
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
            let grown = from_glibc(libc::malloc(size), size);
            if !grown.is_null() {
                let kept = fresh_memory::size_of(block).min(size);
                std::ptr::copy_nonoverlapping(block, grown.cast::<u8>(), kept);
                fresh_memory::give_back(block);
            }
            return grown;
        }
    }
    // SAFETY: glibc's block, resized by glibc.
    from_glibc(unsafe { libc::realloc(ptr, size) }, size)
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
