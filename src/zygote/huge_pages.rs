//! Backs a zygote's memory with transparent huge pages before its first fork.
//!
//! A fork copies one page-table entry per present 4 KiB page of anonymous memory, and an exit
//! drops them all again: for an interpreter of tens of MB that is most of what a fork costs.
//! A 2 MiB huge page is one entry, copied and dropped as one. A child that writes into one
//! splits only its own copy of the entry.
//!
//! Code is the other way round: a fork copies no entry of a file mapping, so every child
//! faults the machine code and constants it runs back in, page by page, and drops them again
//! at exit. The 2 MiB blocks of sandlot's own, and in a Python zygote of CPython's, are copied
//! into anonymous huge pages in place ([`remap_read_only_code`]), which a child then inherits
//! whole.

use std::io;

/// madvise(2)'s MADV_COLLAPSE (Linux 6.1): collapse the range into huge pages now.
const MADV_COLLAPSE: libc::c_int = 25;
const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// One line of /proc/self/maps.
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    inode: &'a str,
    path: &'a str,
}

fn mappings(maps: &str) -> impl Iterator<Item = Mapping<'_>> {
    maps.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        let (_offset, _dev) = (fields.next()?, fields.next()?);
        let inode = fields.next()?;
        let path = fields.next().unwrap_or("");
        let (start, end) = range.split_once('-')?;
        Some(Mapping {
            start: usize::from_str_radix(start, 16).ok()?,
            end: usize::from_str_radix(end, 16).ok()?,
            perms,
            inode,
            path,
        })
    })
}

/// The whole 2 MiB blocks inside a mapping: (start, length).
fn huge_blocks(mapping: &Mapping) -> Option<(usize, usize)> {
    let start = mapping.start.next_multiple_of(HUGE_PAGE);
    let end = mapping.end / HUGE_PAGE * HUGE_PAGE;
    (end > start).then(|| (start, end - start))
}

/// Moves the program break up to the next 2 MiB boundary. Called before the interpreter is
/// built, the heap the allocator grows from there starts on one; called again before
/// [`collapse_anonymous_memory`], its last, partly used block becomes whole (the allocator uses
/// the rest later). Where the heap starts is random (ASLR), and only whole 2 MiB blocks can
/// become huge pages: without this, a zygote's heap got one block more or less from one start
/// to the next, and its forks and exits were a few percent faster or slower with it.
pub fn align_program_break() {
    // SAFETY: sbrk(0) reads the break; sbrk(n > 0) extends it. glibc's allocator takes a break
    // moved by someone else as "foreign" memory and starts its next block past it.
    unsafe {
        let now = libc::sbrk(0) as usize;
        let pad = now.next_multiple_of(HUGE_PAGE) - now;
        if now != usize::MAX && pad > 0 {
            libc::sbrk(pad as libc::intptr_t);
        }
    }
}

/// Asks for huge pages on every private, writable, anonymous mapping of at least one huge
/// page, and collapses what is already there. Best effort: a range the kernel cannot collapse
/// stays as it is.
pub fn collapse_anonymous_memory() -> io::Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut collapsed = 0;
    for mapping in mappings(&maps) {
        if mapping.perms != "rw-p" || mapping.inode != "0" || mapping.path == "[stack]" {
            continue;
        }
        let Some((start, len)) = huge_blocks(&mapping) else {
            continue;
        };
        // SAFETY: madvise on a range of this process's own mappings, read from /proc/self/maps
        // just now; HUGEPAGE and COLLAPSE change how the memory is backed, never its contents.
        unsafe {
            let at = start as *mut libc::c_void;
            libc::madvise(at, len, libc::MADV_HUGEPAGE);
            if libc::madvise(at, len, MADV_COLLAPSE) == 0 {
                collapsed += len;
            }
        }
    }
    Ok(collapsed)
}

/// Replaces each whole 2 MiB block of the machine code and read-only data (constants, symbol
/// and unwind tables) of this executable, and if `python` of libpython and CPython's extension
/// modules, with an anonymous, huge-page copy of the same bytes, at the same address. Best
/// effort; returns the bytes moved.
///
/// A block may span one object's adjacent read-only segments, its code and its constants:
/// then the whole block is executable. libpython's code segment (2.8 MB) holds no whole block
/// of its own where this machine's kernel loads it (at a 2 MiB boundary; elsewhere it may hold
/// one); the blocks across its segments took 43 faults of a trivial Python run (231 -> 188),
/// and with numpy's and pandas' extension modules 80 of a pandas run (910 -> 830), for 6 and
/// 20 MB more anonymous memory in the python and python-data zygotes. The libraries those link
/// (OpenBLAS, libstdc++, libcrypto) are left alone: copying them too saved no fault and cost
/// 33 MB more.
///
/// Must run before seccomp (it maps, writes and mprotects) and while single-threaded.
pub fn remap_read_only_code(python: bool) -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut moved = 0;
    let wanted = |path: &str| path == exe || (python && is_python_code(path));
    for run in read_only_runs(&maps, wanted) {
        for (start, blocks, protection) in spans(run.blocks()) {
            let readable = |from: usize, blocks: usize| (run.end - from).min(blocks * HUGE_PAGE);
            // SAFETY: the span is blocks of this process's own read-only code or constants
            // (from its maps), mapped up to `readable` and free after it, and the zygote is
            // still single-threaded.
            match unsafe { remap_blocks(start, blocks, readable(start, blocks), protection) } {
                Remapped::Moved => moved += blocks * HUGE_PAGE,
                // The original is untouched: one block at a time, as far as each goes.
                Remapped::NoCopy if blocks > 1 => {
                    for block in (start..start + blocks * HUGE_PAGE).step_by(HUGE_PAGE) {
                        // SAFETY: one block of the same span.
                        let one = unsafe { remap_blocks(block, 1, readable(block, 1), protection) };
                        if let Remapped::Moved = one {
                            moved += HUGE_PAGE;
                        }
                    }
                }
                // A failed move may have unmapped the original already: touch it no more.
                Remapped::NoCopy | Remapped::MoveFailed => {}
            }
        }
    }
    Ok(moved)
}

/// Adjacent blocks of one protection as one span (start, blocks, protection): moved in one
/// piece, they are one mapping, which every fork copies and every exit drops once, where one
/// mapping per block cost them once per block.
fn spans(blocks: impl Iterator<Item = (usize, libc::c_int)>) -> Vec<(usize, usize, libc::c_int)> {
    let mut spans: Vec<(usize, usize, libc::c_int)> = Vec::new();
    for (block, protection) in blocks {
        match spans.last_mut() {
            Some((start, count, p)) if *p == protection && *start + *count * HUGE_PAGE == block => {
                *count += 1
            }
            _ => spans.push((block, 1, protection)),
        }
    }
    spans
}

/// Adjacent private read-only mappings of one file: [start, end), where its code is, and where
/// the next mapping of any kind starts.
struct ReadOnlyRun<'a> {
    path: &'a str,
    start: usize,
    end: usize,
    code: Vec<(usize, usize)>,
    free_until: usize,
}

impl ReadOnlyRun<'_> {
    /// The whole 2 MiB blocks inside the run, each with its protection: executable where any
    /// of it is code. A last block the run fills only in part is taken too when it holds code
    /// and nothing is mapped in the rest of it (the gap a linker leaves before the next
    /// segment): its huge page holds the code and zeros after it. Without it, sandlot's last
    /// few hundred KB of code (much of the standard library's) cost a JavaScript child five
    /// faults a run.
    fn blocks(&self) -> impl Iterator<Item = (usize, libc::c_int)> + '_ {
        let start = self.start.next_multiple_of(HUGE_PAGE);
        let whole_end = (self.end / HUGE_PAGE * HUGE_PAGE).max(start);
        let tail_is_free = whole_end < self.end
            && whole_end >= self.start
            && self.free_until >= whole_end + HUGE_PAGE
            && self.holds_code(whole_end);
        let end = if tail_is_free {
            whole_end + HUGE_PAGE
        } else {
            whole_end
        };
        (start..end).step_by(HUGE_PAGE).map(|block| {
            let protection = if self.holds_code(block) {
                libc::PROT_READ | libc::PROT_EXEC
            } else {
                libc::PROT_READ
            };
            (block, protection)
        })
    }

    fn holds_code(&self, block: usize) -> bool {
        self.code
            .iter()
            .any(|&(from, to)| from < block + HUGE_PAGE && block < to)
    }
}

/// The runs of adjacent read-only mappings of the files `wanted` picks, in address order.
fn read_only_runs<'a>(maps: &'a str, wanted: impl Fn(&str) -> bool) -> Vec<ReadOnlyRun<'a>> {
    let mut runs: Vec<ReadOnlyRun> = Vec::new();
    for mapping in mappings(maps) {
        if let Some(run) = runs.last_mut() {
            if run.free_until == usize::MAX && mapping.start >= run.end {
                run.free_until = mapping.start;
            }
        }
        let code = match mapping.perms {
            "r-xp" => true,
            "r--p" => false,
            _ => continue,
        };
        if !wanted(mapping.path) {
            continue;
        }
        let extends = runs
            .last()
            .is_some_and(|run| run.path == mapping.path && run.end == mapping.start);
        if !extends {
            runs.push(ReadOnlyRun {
                path: mapping.path,
                start: mapping.start,
                end: mapping.start,
                code: Vec::new(),
                free_until: usize::MAX,
            });
        }
        let run = runs.last_mut().expect("a run was just pushed");
        run.end = mapping.end;
        run.free_until = usize::MAX;
        if code {
            run.code.push((mapping.start, mapping.end));
        }
    }
    runs
}

/// libpython or an extension module of CPython's (`_json.cpython-311-x86_64-linux-gnu.so`),
/// by its path.
fn is_python_code(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let shared_object = name.ends_with(".so") || name.contains(".so.");
    path.starts_with('/')
        && shared_object
        && (name.starts_with("libpython") || name.contains(".cpython-"))
}

/// How [`remap_blocks`] ended.
enum Remapped {
    Moved,
    /// No copy could be made; the original is as it was.
    NoCopy,
    /// The move failed, after the kernel may have unmapped the original.
    MoveFailed,
}

/// Copies `blocks` 2 MiB blocks from `start`, the first `readable` bytes of them mapped,
/// into aligned anonymous huge pages, gives them `protection`, and moves that copy over the
/// original in one `mremap`: the bytes at every address stay the same throughout, so even the
/// code doing it may live in the blocks.
///
/// # Safety
///
/// [start, start + readable) must be readable memory of this process whose bytes may be
/// replaced by an identical private copy, the rest of the blocks must be free, and no other
/// thread may run while it moves.
unsafe fn remap_blocks(
    start: usize,
    blocks: usize,
    readable: usize,
    protection: libc::c_int,
) -> Remapped {
    let length = blocks * HUGE_PAGE;
    // SAFETY: a new private anonymous mapping (a block longer, to find an aligned range in it),
    // written only by this function; [start, start + readable) is readable and replaceable and
    // the rest of the blocks free (the caller's promise), and the final mremap replaces the
    // original by the identical copy. The unaligned ends of the scratch mapping are unmapped
    // before the move.
    unsafe {
        let scratch = libc::mmap(
            std::ptr::null_mut(),
            length + HUGE_PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if scratch == libc::MAP_FAILED {
            return Remapped::NoCopy;
        }
        let aligned = (scratch as usize).next_multiple_of(HUGE_PAGE);
        let head = aligned - scratch as usize;
        if head > 0 {
            libc::munmap(scratch, head);
        }
        let tail = HUGE_PAGE - head;
        if tail > 0 {
            libc::munmap((aligned + length) as *mut libc::c_void, tail);
        }
        let copy = aligned as *mut libc::c_void;
        libc::madvise(copy, length, libc::MADV_HUGEPAGE);
        std::ptr::copy_nonoverlapping(start as *const u8, copy.cast::<u8>(), readable.min(length));
        // A copy in small pages would cost every fork 512 entries a block where the file costs
        // none.
        if libc::madvise(copy, length, MADV_COLLAPSE) != 0 {
            libc::munmap(copy, length);
            return Remapped::NoCopy;
        }
        if libc::mprotect(copy, length, protection) != 0 {
            libc::munmap(copy, length);
            return Remapped::NoCopy;
        }
        let moved = libc::mremap(
            copy,
            length,
            length,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            start as *mut libc::c_void,
        );
        if moved == libc::MAP_FAILED {
            libc::munmap(copy, length);
            return Remapped::MoveFailed;
        }
        Remapped::Moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpython as a zygote maps it: headers, code, constants, the part of its data that is
    /// read-only after relocation, then its writable data.
    const MAPS: &str = "\
55d000000000-55d000060000 r--p 00000000 fe:00 7 /usr/bin/sandlot
7f0000000000-7f0000103000 r--p 00000000 fe:00 9 /usr/lib/libpython3.11.so.1.0
7f0000103000-7f00003d4000 r-xp 00103000 fe:00 9 /usr/lib/libpython3.11.so.1.0
7f00003d4000-7f00005f2000 r--p 003d4000 fe:00 9 /usr/lib/libpython3.11.so.1.0
7f00005f2000-7f0000622000 r--p 005f1000 fe:00 9 /usr/lib/libpython3.11.so.1.0
7f0000622000-7f0000761000 rw-p 00621000 fe:00 9 /usr/lib/libpython3.11.so.1.0
7f0000761000-7f0000800000 r--p 00000000 00:00 0
7f0000800000-7f0000a00000 r--p 00000000 fe:00 3 /usr/lib/locale/C.utf8/LC_CTYPE
";

    #[test]
    fn a_library_s_read_only_segments_are_one_run_cut_by_its_writable_data() {
        let runs = read_only_runs(MAPS, is_python_code);
        assert_eq!(
            runs.len(),
            1,
            "the executable, anonymous memory and data files are not Python's code"
        );
        let run = &runs[0];
        assert_eq!((run.start, run.end), (0x7f0000000000, 0x7f0000622000));
        assert_eq!(run.code, vec![(0x7f0000103000, 0x7f00003d4000)]);
    }

    #[test]
    fn a_block_with_any_code_in_it_is_executable_and_only_whole_blocks_are_taken() {
        let runs = read_only_runs(MAPS, is_python_code);
        let exec = libc::PROT_READ | libc::PROT_EXEC;
        assert_eq!(
            runs[0].blocks().collect::<Vec<_>>(),
            vec![
                (0x7f0000000000, exec),
                (0x7f0000200000, exec),
                (0x7f0000400000, libc::PROT_READ),
            ]
        );
    }

    /// sandlot as this machine's kernel maps it once its whole blocks are moved: what is left
    /// of its code and constants, each followed by the gap the linker leaves before the next
    /// segment.
    const EXECUTABLE: &str = "\
55d000000000-55d000600000 r-xp 00000000 00:00 0
55d000600000-55d000663000 r-xp 00e00000 fe:00 7 /usr/bin/sandlot
55d000800000-55d00083a000 r--p 01000000 fe:00 7 /usr/bin/sandlot
55d000a00000-55d000a01000 rw-p 01200000 fe:00 7 /usr/bin/sandlot
";

    #[test]
    fn a_last_block_of_code_is_taken_whole_when_the_rest_of_it_is_free() {
        let runs = read_only_runs(EXECUTABLE, |path| path == "/usr/bin/sandlot");
        assert_eq!(
            runs.len(),
            2,
            "the gap between code and constants parts the runs"
        );
        let exec = libc::PROT_READ | libc::PROT_EXEC;
        assert_eq!(
            runs[0].blocks().collect::<Vec<_>>(),
            vec![(0x55d000600000, exec)]
        );
        assert_eq!(
            runs[1].blocks().count(),
            0,
            "a partial block of constants stays: it costs children no fault"
        );
        // libpython's code ends in a block its constants and data share: nothing is free there.
        let python = read_only_runs(MAPS, is_python_code);
        assert_eq!(python[0].free_until, 0x7f0000622000);
        assert!(python[0].blocks().all(|(block, _)| block < 0x7f0000600000));
    }

    #[test]
    fn python_s_code_is_told_by_its_file_names() {
        assert!(is_python_code(
            "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
        ));
        assert!(is_python_code(
            "/usr/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so"
        ));
        assert!(!is_python_code("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!is_python_code(
            "/site/numpy.libs/libscipy_openblas64_-56d6093b.so"
        ));
        assert!(!is_python_code("/usr/lib/locale/C.utf8/LC_CTYPE"));
        assert!(!is_python_code("[vdso]"));
        assert!(!is_python_code("/opt/libpython.sock"));
    }

    #[test]
    fn adjacent_blocks_of_one_protection_are_one_span() {
        let exec = libc::PROT_READ | libc::PROT_EXEC;
        let read = libc::PROT_READ;
        let h = HUGE_PAGE;
        let blocks = [
            (0, read),
            (h, read),
            (2 * h, exec),
            (3 * h, exec),
            (5 * h, exec),
        ];
        assert_eq!(
            spans(blocks.into_iter()),
            vec![(0, 2, read), (2 * h, 2, exec), (5 * h, 1, exec)],
            "a change of protection or a gap starts a new span"
        );
    }

    #[test]
    fn a_library_s_blocks_of_one_protection_are_one_span() {
        let runs = read_only_runs(MAPS, is_python_code);
        let exec = libc::PROT_READ | libc::PROT_EXEC;
        assert_eq!(
            spans(runs[0].blocks()),
            vec![
                (0x7f0000000000, 2, exec),
                (0x7f0000400000, 1, libc::PROT_READ)
            ]
        );
    }

    /// Three blocks of known bytes moved as one: the same bytes at the same addresses, in one
    /// mapping. Skipped where the kernel cannot collapse memory into huge pages.
    #[test]
    fn a_span_keeps_its_bytes_and_becomes_one_mapping() {
        move_known_bytes(3, 3 * HUGE_PAGE);
    }

    /// Two blocks whose last 1.5 MiB is unmapped, as past a segment's end: the bytes that were
    /// there, zeros after them, one mapping.
    #[test]
    fn a_span_that_ends_in_a_gap_keeps_its_bytes_and_fills_the_gap() {
        move_known_bytes(2, HUGE_PAGE + HUGE_PAGE / 4);
    }

    fn move_known_bytes(blocks: usize, readable: usize) {
        let length = blocks * HUGE_PAGE;
        // SAFETY: a new private anonymous mapping owned by this test, aligned down below, filled,
        // made read-only, cut short at `readable`, moved by remap_blocks and unmapped at the end.
        unsafe {
            let raw = libc::mmap(
                std::ptr::null_mut(),
                length + HUGE_PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(raw, libc::MAP_FAILED);
            let start = (raw as usize).next_multiple_of(HUGE_PAGE);
            let bytes = std::slice::from_raw_parts_mut(start as *mut u8, readable);
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = (i % 251) as u8;
            }
            assert_eq!(
                libc::mprotect(start as *mut _, readable, libc::PROT_READ),
                0
            );
            if readable < length {
                let gap = (start + readable) as *mut libc::c_void;
                assert_eq!(libc::munmap(gap, length - readable), 0);
            }
            let outcome = remap_blocks(start, blocks, readable, libc::PROT_READ);
            if let Remapped::Moved = outcome {
                let bytes = std::slice::from_raw_parts(start as *const u8, length);
                assert!(
                    bytes[..readable]
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == (i % 251) as u8),
                    "the copy holds the original's bytes"
                );
                assert!(
                    bytes[readable..].iter().all(|b| *b == 0),
                    "and zeros after them"
                );
                let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                let containing: Vec<_> = mappings(&maps)
                    .filter(|m| m.start < start + length && start < m.end)
                    .collect();
                assert_eq!(containing.len(), 1, "one mapping holds the span");
                assert!(containing[0].start <= start && start + length <= containing[0].end);
            } else {
                assert!(
                    matches!(outcome, Remapped::NoCopy),
                    "a failed copy leaves the original"
                );
                eprintln!("skipped: no huge pages to collapse into here");
            }
            libc::munmap(raw, length + HUGE_PAGE);
        }
    }
}
