//! Keeps libpython, and the libraries only it needs, out of the children of zygotes that never
//! run CPython.
//!
//! sandlot is one binary, so the JavaScript and shell zygotes map libpython too, and with it
//! the libraries that it links and nothing else loaded does (zlib and expat on Debian; a
//! library preloaded or linked by anything else stays). Their children never call into
//! them, yet a fork copied every one of their mappings and an exit dropped it again; libpython's
//! writable segment (1.2 MB of type objects and tables, every page written by the dynamic
//! loader's relocations) cost a page-table entry per page besides. Those segments are marked
//! `MADV_DONTFORK`: the zygote keeps them, a child has no mapping there at all.
//!
//! What stays in a child is what is read without calling the library: each one's first segment
//! (its ELF and program headers, dynamic symbol and string tables, which the dynamic loader
//! reads whenever a child looks up a symbol — `dlsym`, as Rust's std does — and the unwinder
//! and `dl_iterate_phdr` walk) and the part of its writable segment that is read-only after
//! relocation, which holds `.dynamic`.

use std::ffi::CStr;

const LIBPYTHON: &[u8] = b"libpython";
const DT_NULL: i64 = 0;
const DT_NEEDED: i64 = 1;
const DT_STRTAB: i64 = 5;

/// One entry of a `.dynamic` section (`Elf64_Dyn`).
#[repr(C)]
struct Dynamic {
    tag: i64,
    value: u64,
}

/// Marks the segments of every loaded libpython, and of every loaded library that only
/// libpython links, `MADV_DONTFORK`; returns the bytes marked. Best effort: what cannot be
/// marked is forked as before.
///
/// Only for a process that never runs CPython, before its first fork.
pub fn keep_libpython_out_of_children() -> usize {
    let objects = loaded_objects();
    let page = page_size();
    let mut marked = 0;
    for object in objects.iter().filter(|o| only_for_libpython(o, &objects)) {
        for &(start, end) in &object.spare {
            // Whole pages only: the first page may still hold the end of `.dynamic`'s part.
            let start = start.next_multiple_of(page);
            let end = end.next_multiple_of(page);
            if end <= start {
                continue;
            }
            // SAFETY: the range is one of the library's own loaded segments, whole pages of it (a
            // page holds one segment only: protections are per page); DONTFORK changes what a
            // child inherits, not what this process sees.
            if unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTFORK)
            } == 0
            {
                marked += end - start;
            }
        }
    }
    marked
}

/// One loaded object, as the dynamic loader lists it.
struct Object {
    /// Its file name; empty for the executable, which comes first.
    file: Vec<u8>,
    /// The file names it links (its `DT_NEEDED` entries).
    needs: Vec<Vec<u8>>,
    /// Its segments a child could go without, as address ranges (the memory size, so a
    /// zero-filled tail is included): all but its first and what holds `.dynamic`.
    spare: Vec<(usize, usize)>,
}

/// libpython itself, or a library that libpython links and no other loaded object does.
fn only_for_libpython(object: &Object, objects: &[Object]) -> bool {
    let is_libpython = |o: &Object| o.file.starts_with(LIBPYTHON);
    if is_libpython(object) {
        return true;
    }
    let linked_by = |o: &Object| o.needs.contains(&object.file);
    objects.iter().any(|o| is_libpython(o) && linked_by(o))
        && !objects.iter().any(|o| !is_libpython(o) && linked_by(o))
}

fn loaded_objects() -> Vec<Object> {
    let mut objects: Vec<Object> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `collect` once per loaded object with a valid `info` for
    // the duration of the call, and `data` is `objects`, alive throughout.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), (&mut objects as *mut Vec<Object>).cast());
    }
    objects
}

/// `dl_iterate_phdr`'s callback: each object that is the executable or a file, as an [`Object`].
extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes a valid `info` and our `data` (see the caller).
    let (info, objects) = unsafe { (&*info, &mut *data.cast::<Vec<Object>>()) };
    if info.dlpi_name.is_null() || info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers of the loaded object.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    // SAFETY: a non-null dlpi_name is a NUL-terminated path owned by the dynamic loader.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
    // The executable comes first, nameless; the vDSO has a name without a directory.
    let file = match name.iter().rposition(|&b| b == b'/') {
        Some(slash) => name[slash + 1..].to_vec(),
        None if objects.is_empty() && name.is_empty() => Vec::new(),
        None => return 0,
    };
    let range = |h: &libc::Elf64_Phdr| {
        let start = base + h.p_vaddr as usize;
        (start, start + h.p_memsz as usize)
    };
    let dynamic = headers
        .iter()
        .find(|h| h.p_type == libc::PT_DYNAMIC)
        .map(range);
    // The read-only-after-relocation part stays: it holds `.dynamic`.
    let relro_end = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_GNU_RELRO)
        .map(|h| range(h).1)
        .max()
        .unwrap_or(0);
    let mut spare = Vec::new();
    let loads = headers.iter().filter(|h| h.p_type == libc::PT_LOAD);
    for header in loads.skip(1) {
        let (mut start, end) = range(header);
        if header.p_flags & libc::PF_W != 0 {
            start = start.max(relro_end);
        }
        let holds_dynamic = dynamic.is_some_and(|(from, to)| from < end && start < to);
        if start < end && !holds_dynamic {
            spare.push((start, end));
        }
    }
    objects.push(Object {
        file,
        // SAFETY: the headers and base are this object's own, as the loader mapped it.
        needs: unsafe { needed_names(headers, base) },
        spare,
    });
    0
}

/// The file names in an object's `DT_NEEDED` entries.
///
/// # Safety
///
/// `headers` and `base` must be a loaded object's program headers and load address, as the
/// dynamic loader mapped it.
unsafe fn needed_names(headers: &[libc::Elf64_Phdr], base: usize) -> Vec<Vec<u8>> {
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return Vec::new();
    };
    let mut entries = (base + dynamic.p_vaddr as usize) as *const Dynamic;
    let mut strings = 0;
    let mut offsets = Vec::new();
    // SAFETY: `.dynamic` is mapped and ends with a DT_NULL entry; DT_STRTAB points into the
    // object's first segment, which holds NUL-terminated names at the DT_NEEDED offsets.
    unsafe {
        while (*entries).tag != DT_NULL {
            match (*entries).tag {
                DT_NEEDED => offsets.push((*entries).value as usize),
                DT_STRTAB => strings = (*entries).value as usize,
                _ => {}
            }
            entries = entries.add(1);
        }
        if strings == 0 {
            return Vec::new();
        }
        // glibc relocates `.dynamic`'s addresses in place where it is writable; elsewhere they
        // are still relative to the load address.
        if strings < base {
            strings += base;
        }
        offsets
            .into_iter()
            .map(|offset| {
                CStr::from_ptr((strings + offset) as *const libc::c_char)
                    .to_bytes()
                    .to_vec()
            })
            .collect()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(file: &str, needs: &[&str]) -> Object {
        Object {
            file: file.into(),
            needs: needs.iter().map(|n| n.as_bytes().to_vec()).collect(),
            spare: Vec::new(),
        }
    }

    #[test]
    fn only_libpython_and_what_it_alone_links_are_spare() {
        let objects = [
            object(
                "",
                &[
                    "libpython3.11.so.1.0",
                    "libfoo.so.1",
                    "libm.so.6",
                    "libc.so.6",
                ],
            ),
            object(
                "libpython3.11.so.1.0",
                &["libm.so.6", "libz.so.1", "libexpat.so.1"],
            ),
            object("libjemalloc.so.2", &["libc.so.6"]),
            object("libfoo.so.1", &["libexpat.so.1"]),
            object("libm.so.6", &["libc.so.6"]),
            object("libz.so.1", &["libc.so.6"]),
            object("libexpat.so.1", &["libc.so.6"]),
            object("libc.so.6", &[]),
        ];
        let spare = |file: &str| {
            let o = objects
                .iter()
                .find(|o| o.file == file.as_bytes())
                .expect("listed");
            only_for_libpython(o, &objects)
        };
        assert!(spare("libpython3.11.so.1.0"));
        assert!(spare("libz.so.1"), "only libpython links zlib");
        assert!(!spare("libexpat.so.1"), "libfoo links expat too");
        assert!(!spare("libm.so.6"), "the executable links libm too");
        assert!(
            !spare("libjemalloc.so.2"),
            "a preloaded library is nobody's to drop"
        );
        assert!(!spare("libc.so.6"));
        assert!(!spare(""));
    }

    /// This test's own process: the executable first, with what it links; a library's first
    /// segment (its headers and symbol tables) and `.dynamic` never among what is spare.
    #[test]
    fn loaded_objects_are_read_with_their_links_and_spare_segments() {
        let objects = loaded_objects();
        assert!(objects[0].file.is_empty(), "the executable comes first");
        let links_libc = objects[0].needs.iter().any(|n| n.starts_with(b"libc.so"));
        assert!(links_libc, "{:?}", objects[0].needs);
        let libc = objects
            .iter()
            .find(|o| o.file.starts_with(b"libc.so"))
            .expect("libc is loaded");
        assert!(
            !libc.spare.is_empty(),
            "libc has code and data past its headers"
        );
        let (first, dynamic) = first_and_dynamic(b"libc.so");
        for &(start, end) in &libc.spare {
            assert!(
                end <= first.0 || first.1 <= start,
                "the first segment stays"
            );
            assert!(end <= dynamic.0 || dynamic.1 <= start, ".dynamic stays");
        }
    }

    /// The first PT_LOAD segment and PT_DYNAMIC of the loaded object whose file name starts
    /// with `prefix`, as address ranges.
    fn first_and_dynamic(prefix: &'static [u8]) -> ((usize, usize), (usize, usize)) {
        extern "C" fn find(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: as in `collect`.
            let (info, out) = unsafe {
                (
                    &*info,
                    &mut *data.cast::<(&[u8], Option<((usize, usize), (usize, usize))>)>(),
                )
            };
            // SAFETY: as in `collect`.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
            let file = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
            if !file.starts_with(out.0) {
                return 0;
            }
            // SAFETY: as in `collect`.
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
            let range = |h: &libc::Elf64_Phdr| {
                let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                (start, start + h.p_memsz as usize)
            };
            let first = headers
                .iter()
                .find(|h| h.p_type == libc::PT_LOAD)
                .map(range);
            let dynamic = headers
                .iter()
                .find(|h| h.p_type == libc::PT_DYNAMIC)
                .map(range);
            out.1 = first.zip(dynamic);
            1
        }
        let mut out: (&[u8], Option<_>) = (prefix, None);
        // SAFETY: `find` gets `out`, alive throughout.
        unsafe { libc::dl_iterate_phdr(Some(find), (&mut out as *mut (&[u8], Option<_>)).cast()) };
        out.1
            .expect("the object is loaded, with a first segment and .dynamic")
    }
}
