//! A run's stdout and stderr live outside the child: in a memory file the zygote creates for
//! each child and hands to the server beside its job channel. The child maps it and writes its
//! output there as the code produces it (a copy, no system call); the server reads it when the
//! run ends, however it ends — a report, a timeout, a kill for memory, a crash. So what was
//! printed before a run died is never lost, and what the server returns is capped by the server.
//!
//! Layout, for a run whose output limit is `limit` bytes (stdout and stderr together):
//!
//! | offset | size | |
//! |---|---|---|
//! | 0 | 8 | bytes of stdout written (little-endian) |
//! | 8 | 8 | bytes of stderr written |
//! | 16 | 8 | non-zero once the child has its job ([`job_arrived`]) |
//! | 24 | `limit` | stdout |
//! | 24 + `limit` | `limit` | stderr |
//!
//! Everything in the file is the child's word: the server clamps both lengths to the limit
//! and to each other, and reads nothing else.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::output_files::{self, Caps, FilesWriter};

const HEADER: usize = 24;
/// Where the child marks that its job arrived.
const JOB_ARRIVED_AT: usize = 16;

/// The file's size for a server whose largest output limit is `max_output_bytes` and whose
/// runs may write `max_files_bytes` of files: room for any run's layout. Pages are allocated
/// only where a run writes.
pub fn file_size(max_output_bytes: u64, max_files_bytes: u64) -> u64 {
    let limit = usize::try_from(max_output_bytes).unwrap_or(usize::MAX);
    mapped_size(limit, max_files_bytes) as u64
}

/// How many bytes a child maps for a run with this output limit and files cap: the streams,
/// then the files area ([`crate::output_files`]).
pub fn mapped_size(limit: usize, files_cap: u64) -> usize {
    files_area(limit).saturating_add(output_files::area_size(files_cap))
}

/// Where the files area starts for a run with this output limit.
pub fn files_area(limit: usize) -> usize {
    output_files::area_offset(HEADER.saturating_add(limit.saturating_mul(2)))
}

/// In the zygote, before each fork: a memory file of `size` bytes, sealed so that nobody can
/// grow or shrink it (a child writing past its end could otherwise take the host's memory).
pub fn create(size: u64) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor.
    let fd = unsafe {
        libc::memfd_create(
            c"sandlot-output".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is fresh and ours alone.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(size)?;
    let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on a memfd we own changes only what may be done to it.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Which stream a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    /// 1 and 2 as file descriptors number them; anything else is stdout.
    pub fn from_fd_number(number: i32) -> Self {
        if number == 2 {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    }
}

/// Whether a write fit under the run's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    All,
    /// The limit was reached: what fit was written, the rest dropped.
    Cut,
}

/// The child's side: its mapping of the file for the run in progress.
pub struct Writer {
    base: NonNull<u8>,
    limit: usize,
    used: [usize; 2],
    /// One stream: stderr goes to stdout (FastGPT's single log).
    merged: bool,
}

// SAFETY: the mapping is owned by this Writer alone and lives until the process exits.
unsafe impl Send for Writer {}

impl Writer {
    /// Maps the file at `fd` for a run whose output limit is `limit` and whose files may hold
    /// `files_caps` bytes, and marks that the job arrived (a child maps its output only once it
    /// has its job). The mapping is never unmapped: the process ends with its run. Returns
    /// the streams' writer and the files'.
    pub fn map(
        fd: RawFd,
        limit: usize,
        merged: bool,
        files_caps: Caps,
    ) -> io::Result<(Self, FilesWriter)> {
        let size = mapped_size(limit, files_caps.total);
        // SAFETY: a shared read-write mapping of `size` bytes of a file the zygote sized for the
        // server's largest limit; the kernel picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: the word at JOB_ARRIVED_AT is 8-aligned inside the header of the mapping.
        let arrived = unsafe { &*base.as_ptr().add(JOB_ARRIVED_AT).cast::<AtomicU64>() };
        arrived.store(1, Ordering::Release);
        let area = files_area(limit);
        // SAFETY: the area is the mapping's tail, from `files_area(limit)` to `size`, which
        // only the FilesWriter writes; the mapping is never unmapped.
        let files = unsafe {
            FilesWriter::new(
                NonNull::new_unchecked(base.as_ptr().add(area)),
                size - area,
                files_caps,
            )
        };
        let streams = Self {
            base,
            limit,
            used: [0, 0],
            merged,
        };
        Ok((streams, files))
    }

    /// The run's output limit (stdout and stderr together).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Appends text, cut at a character boundary if it crosses the limit.
    pub fn write_str(&mut self, stream: Stream, text: &str) -> Written {
        let mut room = self.room().min(text.len());
        while !text.is_char_boundary(room) {
            room -= 1;
        }
        self.append(stream, &text.as_bytes()[..room]);
        if room < text.len() {
            Written::Cut
        } else {
            Written::All
        }
    }

    /// Appends bytes (a shell command's output need not be text).
    pub fn write_bytes(&mut self, stream: Stream, bytes: &[u8]) -> Written {
        let room = self.room().min(bytes.len());
        self.append(stream, &bytes[..room]);
        if room < bytes.len() {
            Written::Cut
        } else {
            Written::All
        }
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.used[0] + self.used[1])
    }

    fn append(&mut self, stream: Stream, bytes: &[u8]) {
        let index = if self.merged { 0 } else { stream as usize };
        let start = HEADER + index * self.limit + self.used[index];
        // SAFETY: `room()` keeps used[0] + used[1] <= limit, so start + len stays inside this
        // stream's `limit` bytes, inside the mapping of `mapped_size(limit, _)` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.as_ptr().add(start),
                bytes.len(),
            )
        };
        self.used[index] += bytes.len();
        // SAFETY: the header's two u64 are 8-aligned (the mapping is page-aligned) and only
        // touched through these atomics.
        let length = unsafe { &*self.base.as_ptr().add(index * 8).cast::<AtomicU64>() };
        length.store(self.used[index] as u64, Ordering::Release);
    }
}

/// What the server reads back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

/// The server's side: what the child wrote for a run whose output limit is `limit`, clamped to
/// it whatever the header says.
pub fn read(file: &std::fs::File, limit: u64) -> io::Result<Captured> {
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, 0)?;
    let word = |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let stdout_len = word(0).min(limit);
    let stderr_len = word(1).min(limit - stdout_len);
    let text = |offset: u64, len: u64| -> io::Result<String> {
        let mut bytes = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        file.read_exact_at(&mut bytes, offset)?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    };
    Ok(Captured {
        stdout: text(HEADER as u64, stdout_len)?,
        stderr: text(HEADER as u64 + limit, stderr_len)?,
    })
}

/// The server's side, for a child lost without a report: whether it had its job, so that some
/// of the run's code may have run. A child that never got that far wrote nothing here (the
/// zygote makes a zeroed file for every child), and its run can be tried again. Learning this
/// from the file costs the common path nothing: no frame for the server to wake up for.
pub fn job_arrived(file: &std::fs::File) -> io::Result<bool> {
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, JOB_ARRIVED_AT as u64)?;
    Ok(word != [0; 8])
}

/// The server's side while the run goes on (a streamed run): the bytes of each stream past
/// `seen`, clamped to the limit as [`read`] clamps them. A write is whole once its length is
/// in the header, so what this returns never ends inside a write.
pub fn read_new(file: &std::fs::File, limit: u64, seen: [u64; 2]) -> io::Result<[Vec<u8>; 2]> {
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, 0)?;
    let word = |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let stdout_len = word(0).min(limit);
    let lengths = [stdout_len, word(1).min(limit - stdout_len)];
    let mut new = [Vec::new(), Vec::new()];
    for (index, bytes) in new.iter_mut().enumerate() {
        if lengths[index] > seen[index] {
            let len = usize::try_from(lengths[index] - seen[index]).map_err(io::Error::other)?;
            bytes.resize(len, 0);
            let offset = HEADER as u64 + index as u64 * limit + seen[index];
            file.read_exact_at(bytes, offset)?;
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_writer_writes_is_read_back_cut_at_the_limit() {
        let file = std::fs::File::from(create(file_size(64, 0)).unwrap());
        let (mut writer, _) = Writer::map(file.as_raw_fd(), 10, false, Caps::default()).unwrap();
        assert_eq!(writer.write_str(Stream::Stdout, "héllo"), Written::All);
        assert_eq!(writer.write_str(Stream::Stderr, "ab"), Written::All);
        // 6 + 2 bytes used; "é" would need 2 of the 2 left after "x": cut before it.
        assert_eq!(writer.write_str(Stream::Stdout, "xé"), Written::Cut);
        let captured = read(&file, 10).unwrap();
        assert_eq!(captured.stdout, "héllox");
        assert_eq!(captured.stderr, "ab");
    }

    #[test]
    fn a_mapped_file_says_the_job_arrived_and_a_fresh_one_does_not() {
        let file = std::fs::File::from(create(file_size(64, 0)).unwrap());
        assert!(!job_arrived(&file).unwrap());
        let _writer = Writer::map(file.as_raw_fd(), 10, false, Caps::default()).unwrap();
        assert!(job_arrived(&file).unwrap());
    }

    #[test]
    fn a_forged_header_is_clamped_to_the_limit() {
        let file = create(file_size(64, 0)).unwrap();
        let f = std::fs::File::from(file.try_clone().unwrap());
        f.write_all_at(&u64::MAX.to_le_bytes(), 0).unwrap();
        f.write_all_at(&u64::MAX.to_le_bytes(), 8).unwrap();
        let captured = read(&f, 8).unwrap();
        assert_eq!(captured.stdout.len(), 8);
        assert_eq!(captured.stderr.len(), 0);
    }

    #[test]
    fn new_bytes_are_read_past_what_was_seen() {
        let file = create(file_size(64, 0)).unwrap();
        let f = std::fs::File::from(file.try_clone().unwrap());
        let (mut writer, _) = Writer::map(file.as_raw_fd(), 10, false, Caps::default()).unwrap();
        writer.write_str(Stream::Stdout, "abc");
        assert_eq!(
            read_new(&f, 10, [0, 0]).unwrap(),
            [b"abc".to_vec(), Vec::new()]
        );
        writer.write_str(Stream::Stderr, "xy");
        writer.write_str(Stream::Stdout, "defghijk");
        assert_eq!(
            read_new(&f, 10, [3, 0]).unwrap(),
            [b"defgh".to_vec(), b"xy".to_vec()]
        );
        assert_eq!(
            read_new(&f, 10, [8, 2]).unwrap(),
            [Vec::<u8>::new(), vec![]]
        );
    }

    #[test]
    fn the_file_cannot_grow() {
        let file = create(file_size(8, 0)).unwrap();
        let f = std::fs::File::from(file);
        assert!(f.set_len(1 << 30).is_err());
        assert!(f.write_all_at(b"x", 1 << 20).is_err());
    }
}
