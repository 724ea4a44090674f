//! Backs a zygote's memory with transparent huge pages before its first fork.
//!
//! A fork copies one page-table entry per present 4 KiB page of anonymous memory, and an exit
//! drops them all again: for an interpreter of tens of MB that is most of what a fork costs.
//! A 2 MiB huge page is one entry, copied and dropped as one. A child that writes into one
//! splits only its own copy of the entry.
//!
//! Code is the other way round: a fork copies no entry of a file mapping, so every child
//! faults sandlot's own machine code and constants back in, page by page, and drops them again
//! at exit. The 2 MiB blocks of them are copied into anonymous huge pages in place
//! ([`remap_own_read_only`]), which a child then inherits whole.

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

/// Replaces each whole 2 MiB block of this executable's own machine code and read-only data
/// (its constants, symbol tables and unwind tables) with an anonymous, huge-page copy of the
/// same bytes, at the same address. Best effort; returns the bytes moved.
///
/// Must run before seccomp (it maps, writes and mprotects) and while single-threaded.
pub fn remap_own_read_only() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut moved = 0;
    for mapping in mappings(&maps) {
        let protection = match mapping.perms {
            "r-xp" => libc::PROT_READ | libc::PROT_EXEC,
            "r--p" => libc::PROT_READ,
            _ => continue,
        };
        if mapping.path != exe {
            continue;
        }
        let Some((start, len)) = huge_blocks(&mapping) else {
            continue;
        };
        for block in (start..start + len).step_by(HUGE_PAGE) {
            if remap_block(block, protection) {
                moved += HUGE_PAGE;
            }
        }
    }
    Ok(moved)
}

/// Copies one 2 MiB block into an aligned anonymous huge page, gives it the block's
/// `protection`, and moves that copy over the original in one `mremap`: the bytes at every
/// address stay the same throughout, so even the code doing it may live in the block.
fn remap_block(block: usize, protection: libc::c_int) -> bool {
    // SAFETY: a new private anonymous mapping (twice the size, to find an aligned block in it),
    // written only by this function; `block` is a readable block of this process's own code or
    // constants, HUGE_PAGE long, which the final mremap replaces by the identical copy. The
    // unaligned ends of the scratch mapping are unmapped before the move.
    unsafe {
        let scratch = libc::mmap(
            std::ptr::null_mut(),
            2 * HUGE_PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if scratch == libc::MAP_FAILED {
            return false;
        }
        let aligned = (scratch as usize).next_multiple_of(HUGE_PAGE);
        let head = aligned - scratch as usize;
        if head > 0 {
            libc::munmap(scratch, head);
        }
        let tail = 2 * HUGE_PAGE - head - HUGE_PAGE;
        if tail > 0 {
            libc::munmap((aligned + HUGE_PAGE) as *mut libc::c_void, tail);
        }
        let copy = aligned as *mut libc::c_void;
        libc::madvise(copy, HUGE_PAGE, libc::MADV_HUGEPAGE);
        std::ptr::copy_nonoverlapping(block as *const u8, copy.cast::<u8>(), HUGE_PAGE);
        let _ = libc::madvise(copy, HUGE_PAGE, MADV_COLLAPSE);
        if libc::mprotect(copy, HUGE_PAGE, protection) != 0 {
            libc::munmap(copy, HUGE_PAGE);
            return false;
        }
        let moved = libc::mremap(
            copy,
            HUGE_PAGE,
            HUGE_PAGE,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            block as *mut libc::c_void,
        );
        if moved == libc::MAP_FAILED {
            libc::munmap(copy, HUGE_PAGE);
            return false;
        }
        true
    }
}
