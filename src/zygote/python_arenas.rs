//! Where CPython puts its object arenas (1 MiB each, from `PyObject_SetArenaAllocator`): side
//! by side in 2 MiB-aligned blocks, rather than wherever the kernel finds room. Once the
//! zygote is warm its objects then sit in whole huge pages that [`super::huge_pages`] can
//! collapse, so a fork copies one page-table entry per 2 MiB of objects instead of 512.
//!
//! Nothing is reserved ahead: every arena is its own mapping (a child's memory limit counts
//! mappings), merely placed next to the previous one.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::ffi;

const HUGE_PAGE: usize = 2 * 1024 * 1024;
/// How far ahead to look for a free, aligned stretch of address space.
const SEARCH: usize = 64 * 1024 * 1024;

/// Where the next arena goes; 0 until the first one.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Installs the allocator; must run before the interpreter starts.
pub fn install() {
    let mut allocator = ffi::PyObjectArenaAllocator {
        ctx: ptr::null_mut(),
        alloc: Some(alloc),
        free: Some(free),
    };
    // SAFETY: the struct is valid for the call; CPython copies it. Called before
    // Py_Initialize, when no arena exists yet.
    unsafe { ffi::PyObject_SetArenaAllocator(&mut allocator) };
}

extern "C" fn alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    for _ in 0..2 {
        let at = match NEXT.load(Ordering::Relaxed) {
            0 => fresh_stretch(),
            at => at,
        };
        if at == 0 {
            break;
        }
        // SAFETY: a new private anonymous mapping at an address nothing else maps
        // (MAP_FIXED_NOREPLACE fails rather than replace a mapping).
        let mapped = unsafe {
            libc::mmap(
                at as *mut c_void,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED && mapped as usize == at {
            NEXT.store(at + size, Ordering::Relaxed);
            return mapped;
        }
        // Taken: start over in a fresh stretch.
        NEXT.store(0, Ordering::Relaxed);
    }
    // SAFETY: an ordinary anonymous mapping, wherever the kernel puts it.
    let mapped = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        mapped
    }
}

extern "C" fn free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    // SAFETY: CPython frees an arena it got from `alloc`, with its size, once.
    unsafe { libc::munmap(ptr, size) };
}

/// The 2 MiB-aligned start of a stretch of free address space (found by mapping and
/// unmapping it), or 0.
fn fresh_stretch() -> usize {
    // SAFETY: a probe mapping with no access, unmapped again at once.
    unsafe {
        let probe = libc::mmap(
            ptr::null_mut(),
            SEARCH,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if probe == libc::MAP_FAILED {
            return 0;
        }
        libc::munmap(probe, SEARCH);
        (probe as usize).next_multiple_of(HUGE_PAGE)
    }
}
