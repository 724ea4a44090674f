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
//! (its ELF and program headers, which the unwinder and `dl_iterate_phdr` walk), every segment
//! that holds one of the tables the dynamic loader reads whenever a child looks up a symbol
//! (`dlsym`, as Rust's std does: hash, symbols, strings, versions — `patchelf` may have moved
//! them out of the first segment), and the part of its writable segment that is read-only
//! after relocation, which holds `.dynamic`. Where the loaded objects' names do not all add up,
//! only libpython's segments go.

use std::ffi::CStr;

const LIBPYTHON: &[u8] = b"libpython";
const DT_NULL: i64 = 0;
const DT_NEEDED: i64 = 1;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_SONAME: i64 = 14;
const DT_GNU_HASH: i64 = 0x6fff_fef5;
const DT_VERSYM: i64 = 0x6fff_fff0;
const DT_VERDEF: i64 = 0x6fff_fffc;
const DT_VERNEED: i64 = 0x6fff_fffe;
/// The entries whose addresses the dynamic loader reads on a symbol lookup.
const LOOKUP_TABLES: [i64; 7] = [
    DT_HASH,
    DT_GNU_HASH,
    DT_SYMTAB,
    DT_STRTAB,
    DT_VERSYM,
    DT_VERDEF,
    DT_VERNEED,
];

/// One entry of a `.dynamic` section (`Elf64_Dyn`).
#[derive(Clone, Copy)]
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
    for (object, spare) in objects.iter().zip(only_for_libpython(&objects)) {
        if !spare {
            continue;
        }
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
#[derive(Default)]
struct Object {
    /// Its file name; empty for the executable, which comes first.
    file: Vec<u8>,
    /// The name it says it goes by (`DT_SONAME`), if any.
    soname: Option<Vec<u8>>,
    /// The names it links (its `DT_NEEDED` entries, each to its last `/`).
    needs: Vec<Vec<u8>>,
    /// Where its symbol lookup tables are.
    tables: Vec<usize>,
    /// Its segments a child could go without, as address ranges (the memory size, so a
    /// zero-filled tail is included): all but its first, those holding a lookup table and
    /// what holds `.dynamic`.
    spare: Vec<(usize, usize)>,
}

impl Object {
    fn is_libpython(&self) -> bool {
        self.file.starts_with(LIBPYTHON)
    }

    fn goes_by(&self, name: &[u8]) -> bool {
        self.file == name || self.soname.as_deref() == Some(name)
    }
}

/// For each object, whether a child can go without it: libpython itself, or a library loaded
/// after it (a preloaded one comes before) that it links and no other object does. When some
/// object links a name no loaded object goes by, who links what cannot be told: libpython only.
fn only_for_libpython(objects: &[Object]) -> Vec<bool> {
    let Some(libpython) = objects.iter().position(Object::is_libpython) else {
        return vec![false; objects.len()];
    };
    let names_add_up = objects
        .iter()
        .flat_map(|o| &o.needs)
        .all(|name| objects.iter().any(|o| o.goes_by(name)));
    objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            if object.is_libpython() {
                return true;
            }
            if !names_add_up || i < libpython {
                return false;
            }
            let links = |o: &Object| o.needs.iter().any(|name| object.goes_by(name));
            objects.iter().any(|o| o.is_libpython() && links(o))
                && !objects.iter().any(|o| !o.is_libpython() && links(o))
        })
        .collect()
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
    // SAFETY: the headers and base are this object's own, as the loader mapped it.
    let mut object = unsafe { read_dynamic(headers, base) };
    object.file = file;
    let loads = headers.iter().filter(|h| h.p_type == libc::PT_LOAD);
    for header in loads.skip(1) {
        let (whole_start, end) = range(header);
        let holds_table = object
            .tables
            .iter()
            .any(|&at| whole_start <= at && at < end);
        let mut start = whole_start;
        if header.p_flags & libc::PF_W != 0 {
            start = start.max(relro_end);
        }
        let holds_dynamic = dynamic.is_some_and(|(from, to)| from < end && start < to);
        if start < end && !holds_dynamic && !holds_table {
            object.spare.push((start, end));
        }
    }
    objects.push(object);
    0
}

/// An object's names and lookup tables, from its `.dynamic`.
///
/// # Safety
///
/// `headers` and `base` must be a loaded object's program headers and load address, as the
/// dynamic loader mapped it.
unsafe fn read_dynamic(headers: &[libc::Elf64_Phdr], base: usize) -> Object {
    let mut object = Object::default();
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return object;
    };
    let mut entries = (base + dynamic.p_vaddr as usize) as *const Dynamic;
    let mut strings = 0;
    let mut needed = Vec::new();
    let mut soname = None;
    // glibc relocates `.dynamic`'s addresses in place where it is writable; elsewhere they
    // are still relative to the load address.
    let address = |value: u64| match value as usize {
        relative if relative < base => relative + base,
        absolute => absolute,
    };
    // SAFETY: `.dynamic` is mapped and ends with a DT_NULL entry; DT_STRTAB points at the
    // object's string table, which holds NUL-terminated names at the DT_NEEDED and DT_SONAME
    // offsets.
    unsafe {
        while (*entries).tag != DT_NULL {
            let Dynamic { tag, value } = *entries;
            match tag {
                DT_NEEDED => needed.push(value as usize),
                DT_SONAME => soname = Some(value as usize),
                DT_STRTAB => strings = address(value),
                _ => {}
            }
            if LOOKUP_TABLES.contains(&tag) {
                object.tables.push(address(value));
            }
            entries = entries.add(1);
        }
        if strings == 0 {
            return object;
        }
        let name = |offset: usize| {
            let name = CStr::from_ptr((strings + offset) as *const libc::c_char).to_bytes();
            name.rsplit(|&b| b == b'/').next().unwrap_or(name).to_vec()
        };
        object.needs = needed.into_iter().map(name).collect();
        object.soname = soname.map(name);
    }
    object
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
            ..Object::default()
        }
    }

    fn spare_of(objects: &[Object]) -> Vec<&str> {
        objects
            .iter()
            .zip(only_for_libpython(objects))
            .filter(|(_, spare)| *spare)
            .map(|(o, _)| std::str::from_utf8(&o.file).expect("a name"))
            .collect()
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
            object("libfoo.so.1", &["libexpat.so.1"]),
            object("libm.so.6", &["libc.so.6"]),
            object("libz.so.1", &["libc.so.6"]),
            object("libexpat.so.1", &["libc.so.6"]),
            object("libc.so.6", &[]),
        ];
        // expat: libfoo links it too; libm: the executable does.
        assert_eq!(spare_of(&objects), ["libpython3.11.so.1.0", "libz.so.1"]);
    }

    #[test]
    fn a_preloaded_library_or_one_linked_by_its_other_name_stays() {
        let mut objects = vec![
            object("", &["libpython3.11.so.1.0", "libc.so.6"]),
            object("libz-ng.so.2", &["libc.so.6"]),
            object("libpython3.11.so.1.0", &["libz.so.1", "libexpat.so.1"]),
            object("libexpat.so.1.8.10", &["libc.so.6"]),
            object("libc.so.6", &[]),
        ];
        objects[1].soname = Some(b"libz.so.1".to_vec());
        objects[3].soname = Some(b"libexpat.so.1".to_vec());
        assert_eq!(
            spare_of(&objects),
            ["libpython3.11.so.1.0", "libexpat.so.1.8.10"],
            "a library found by its soname is libpython's alone; one preloaded before it is not"
        );
        objects.push(object("libbaz.so", &["libunknown.so.3"]));
        assert_eq!(
            spare_of(&objects),
            ["libpython3.11.so.1.0"],
            "names that do not add up leave every library but libpython"
        );
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
