//! Backs a zygote's anonymous memory with transparent huge pages before its first fork.
//!
//! A fork copies one page-table entry per present 4 KiB page of anonymous memory, and an exit
//! drops them all again: for an interpreter of tens of MB that is most of what a fork costs.
//! A 2 MiB huge page is one entry, copied and dropped as one. A child that writes into one
//! splits only its own copy of the entry.

use std::io;

/// madvise(2)'s MADV_COLLAPSE (Linux 6.1): collapse the range into huge pages now.
const MADV_COLLAPSE: libc::c_int = 25;
const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Asks for huge pages on every private, writable, anonymous mapping of at least one huge
/// page, and collapses what is already there. Best effort: a range the kernel cannot collapse
/// stays as it is.
pub fn collapse_anonymous_memory() -> io::Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut collapsed = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(_offset), Some(_dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let name = fields.next().unwrap_or("");
        if perms != "rw-p" || inode != "0" || name == "[stack]" {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let aligned_start = start.next_multiple_of(HUGE_PAGE);
        let aligned_end = end / HUGE_PAGE * HUGE_PAGE;
        if aligned_end <= aligned_start {
            continue;
        }
        let len = aligned_end - aligned_start;
        // SAFETY: madvise on a range of this process's own mappings, read from /proc/self/maps
        // just now; HUGEPAGE and COLLAPSE change how the memory is backed, never its contents.
        unsafe {
            let at = aligned_start as *mut libc::c_void;
            libc::madvise(at, len, libc::MADV_HUGEPAGE);
            if libc::madvise(at, len, MADV_COLLAPSE) == 0 {
                collapsed += len;
            }
        }
    }
    Ok(collapsed)
}
