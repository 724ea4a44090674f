//! Keeps libpython's writable data out of the children of zygotes that never run CPython.
//!
//! sandlot is one binary, so the JavaScript and shell zygotes map libpython too, and its
//! writable segment (1.2 MB of type objects and tables, every page written by the dynamic
//! loader's relocations) is private memory a fork copies one page-table entry at a time and an
//! exit drops again — two thirds of those zygotes' small pages. Their children never call into
//! libpython, so the segment is marked `MADV_DONTFORK`: the zygote keeps it, a child has no
//! mapping there at all. Its read-only segments and the part of the writable one that is
//! read-only after relocation stay: the dynamic loader reads them whenever a child looks up a
//! symbol (`dlsym`), and the unwinder walks the loaded objects' headers.

use std::ffi::CStr;

const LIBPYTHON: &[u8] = b"libpython";

/// Marks the writable segments of every loaded libpython `MADV_DONTFORK`; returns the bytes
/// marked. Best effort: what cannot be marked is forked as before.
///
/// Only for a process that never runs CPython, before its first fork.
pub fn keep_libpython_out_of_children() -> usize {
    let mut segments: Vec<(usize, usize)> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `collect` once per loaded object with a valid `info` for
    // the duration of the call, and `data` is the `segments` vector, alive throughout.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), (&mut segments as *mut Vec<_>).cast());
    }
    let page = page_size();
    let mut marked = 0;
    for (start, end) in segments {
        // Whole pages only: the first page may still hold the end of `.dynamic`'s part.
        let start = start.next_multiple_of(page);
        let end = end.next_multiple_of(page);
        if end <= start {
            continue;
        }
        // SAFETY: the range is one of libpython's own loaded segments, whole pages of it (a
        // page holds one segment only: protections are per page); DONTFORK changes what a
        // child inherits, not what this process sees.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTFORK) }
            == 0
        {
            marked += end - start;
        }
    }
    marked
}

/// `dl_iterate_phdr`'s callback: the writable PT_LOAD segments of a libpython, as address
/// ranges (the memory size, so its zero-filled tail is included).
extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes a valid `info` and our `data` (see the caller).
    let (info, segments) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    if info.dlpi_name.is_null() {
        return 0;
    }
    // SAFETY: a non-null dlpi_name is a NUL-terminated path owned by the dynamic loader.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
    let file = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    if !file.starts_with(LIBPYTHON) || info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers of the loaded object.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    // The read-only-after-relocation part stays: it holds `.dynamic`, which the dynamic
    // loader reads in every process that looks a symbol up (`dlsym`, as Rust's std does).
    let relro_end = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_GNU_RELRO)
        .map(|h| base + h.p_vaddr as usize + h.p_memsz as usize)
        .max()
        .unwrap_or(0);
    for header in headers {
        if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_W != 0 {
            let start = base + header.p_vaddr as usize;
            let end = start + header.p_memsz as usize;
            segments.push((start.max(relro_end), end));
        }
    }
    0
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => 4096,
    }
}
