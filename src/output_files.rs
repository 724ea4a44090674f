//! The files a run writes into its output directory (`output/` beside its code) live in the
//! same memory file as its stdout and stderr ([`crate::output_region`]), past the two streams:
//! a log of records the child appends as the code writes, which the server replays when the
//! run ends, however it ends. So a run that times out or is killed still returns what it had
//! written, no file of a run ever touches a disk, and a run that writes no file costs nothing
//! (the area is never touched, so never allocated).
//!
//! Layout of the area, at [`area_offset`] of the memory file:
//!
//! | offset | size | |
//! |---|---|---|
//! | 0 | 8 | bytes of records written (little-endian) |
//! | 8 | 8 | the cap a write was refused by: 0 none, 1 count, 2 bytes, 3 one file's bytes ([`CapHit`]) |
//! | 16 | … | records, each 8-aligned |
//!
//! A record is a tag byte, three bytes of zero, a little-endian u32 file index, then:
//! `Create` a u32 name length and the name (a file of that name starts empty, taking the
//! index); `Write` a u64 offset, a u32 length and the bytes; `Close` nothing more.
//!
//! Everything in the area is the child's word: the server checks every record against the
//! names allowed and the caps, stops at the first that fails, and reads nothing else.

use std::io;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many files a run may write.
pub const MAX_FILES: usize = 32;
/// The longest file name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// What a run's directory is called, relative to its code; also `SANDLOT_OUTPUT_DIR`'s last
/// component.
pub const OUTPUT_DIR: &str = "output";

const AREA_HEADER: usize = 16;
const PAGE: usize = 4096;

const CREATE: u8 = b'c';
const WRITE: u8 = b'w';
const CLOSE: u8 = b'x';

/// Where the area starts in the memory file of a run whose output limit is `output_limit`:
/// the first page past the two streams.
pub fn area_offset(streams_end: usize) -> usize {
    streams_end.div_ceil(PAGE).saturating_mul(PAGE)
}

/// The area's size for a run that may write `cap` bytes of files: room for the bytes twice
/// (a file rewritten in place, as a zip archive's headers are, logs its bytes again) and for
/// the records' own headers.
pub fn area_size(cap: u64) -> usize {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    AREA_HEADER
        .saturating_add(cap.saturating_mul(2))
        .saturating_add(64 * 1024)
}

/// Which cap refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapHit {
    /// A file past [`MAX_FILES`].
    Count = 1,
    /// More bytes than the run's files may hold.
    Bytes = 2,
    /// More bytes than one file may hold.
    FileBytes = 3,
}

/// The bytes a run's files may hold: together (`--max-output-files-bytes`), and each
/// (`--max-output-file-bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub total: u64,
    pub file: u64,
}

impl Caps {
    pub fn of(limits: &crate::run::Limits) -> Self {
        Self {
            total: limits.max_output_files_bytes,
            file: limits
                .max_output_file_bytes
                .min(limits.max_output_files_bytes),
        }
    }
}

/// Why the child refused a write (the code sees `ENOSPC`, `EFBIG` for one file's cap, or
/// `EINVAL` for a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Cap(CapHit),
    Name(String),
}

/// Whether a run's code may write into its output directory: it names it (a literal path, or
/// `SANDLOT_OUTPUT_DIR`). A Python run that was given no files and does not is spared the
/// files layer altogether (its set-up writes to pages the zygote shares).
pub fn named_by(code: &str) -> bool {
    code.contains("output") || code.contains("OUTPUT") || code.contains("Output")
}

/// Whether `name` may be a file of the output directory: a plain name, no directory, no `.`
/// or `..`, no NUL, at most [`MAX_NAME_BYTES`]. The same rule holds for input files (where it
/// is checked with the field named).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a file name may not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("{name:?} is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "{name:?} is not a plain file name (no '/', '\\' or NUL: files sit in one directory)"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains a control character"));
    }
    Ok(())
}

/// The child's side: appends records to its mapping of the area.
pub struct FilesWriter {
    base: NonNull<u8>,
    size: usize,
    used: usize,
    caps: Caps,
    /// Each file's size (its furthest byte written), by index.
    sizes: Vec<u64>,
    names: Vec<String>,
}

// SAFETY: the mapping is owned by the run's one writer and lives until the process exits.
unsafe impl Send for FilesWriter {}

impl FilesWriter {
    /// Over `size` bytes at `base`, mapped shared and writable for the rest of the process;
    /// `caps`, the bytes the run's files may hold.
    ///
    /// # Safety
    /// `base..base + size` must be a writable mapping that nothing else writes and that is
    /// never unmapped; `size` must be at least [`AREA_HEADER`].
    pub unsafe fn new(base: NonNull<u8>, size: usize, caps: Caps) -> Self {
        Self {
            base,
            size,
            used: AREA_HEADER,
            caps,
            sizes: Vec::new(),
            names: Vec::new(),
        }
    }

    /// The bytes the run's files may hold.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// A file of that name, empty (again, if it was written before); its index.
    pub fn create(&mut self, name: &str) -> Result<u32, Refused> {
        check_name(name).map_err(Refused::Name)?;
        let index = match self.names.iter().position(|n| n == name) {
            Some(index) => {
                self.sizes[index] = 0;
                index
            }
            None if self.names.len() >= MAX_FILES => return Err(self.refuse(CapHit::Count)),
            None => {
                self.names.push(name.to_owned());
                self.sizes.push(0);
                self.names.len() - 1
            }
        };
        let index = index as u32;
        let mut record = header(CREATE, index);
        record.extend_from_slice(&(name.len() as u32).to_le_bytes());
        record.extend_from_slice(name.as_bytes());
        self.append(&record, &[])?;
        Ok(index)
    }

    /// Writes `bytes` at `offset` of file `index`.
    pub fn write(&mut self, index: u32, offset: u64, bytes: &[u8]) -> Result<(), Refused> {
        let i = index as usize;
        if i >= self.sizes.len() {
            return Err(Refused::Name(format!("no file {index}")));
        }
        let end = offset.saturating_add(bytes.len() as u64);
        if end > self.caps.file {
            return Err(self.refuse(CapHit::FileBytes));
        }
        let grows_by = end.saturating_sub(self.sizes[i]);
        let total: u64 = self.sizes.iter().sum();
        if total.saturating_add(grows_by) > self.caps.total || u32::try_from(bytes.len()).is_err() {
            return Err(self.refuse(CapHit::Bytes));
        }
        let mut record = header(WRITE, index);
        record.extend_from_slice(&offset.to_le_bytes());
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.append(&record, bytes)?;
        self.sizes[i] = self.sizes[i].max(end);
        Ok(())
    }

    /// File `index` is whole: a streamed run announces it.
    pub fn close(&mut self, index: u32) -> Result<(), Refused> {
        self.append(&header(CLOSE, index), &[])
    }

    /// Records that a cap refused a write the writer did not see (a shell command's, refused by
    /// its tmpfs).
    pub fn mark(&mut self, hit: CapHit) {
        self.refuse(hit);
    }

    fn refuse(&mut self, hit: CapHit) -> Refused {
        self.word(8).store(hit as u64, Ordering::Release);
        Refused::Cap(hit)
    }

    fn append(&mut self, head: &[u8], bytes: &[u8]) -> Result<(), Refused> {
        let len = (head.len() + bytes.len()).next_multiple_of(8);
        if self.used.saturating_add(len) > self.size {
            return Err(self.refuse(CapHit::Bytes));
        }
        // SAFETY: used + len <= size: both copies land inside the mapping (`new`'s contract).
        unsafe {
            let at = self.base.as_ptr().add(self.used);
            std::ptr::copy_nonoverlapping(head.as_ptr(), at, head.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(head.len()), bytes.len());
        }
        self.used += len;
        self.word(0).store(self.used as u64, Ordering::Release);
        Ok(())
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offsets 0 and 8 are 8-aligned words of the header (the mapping is
        // page-aligned), touched only through atomics.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }
}

fn header(tag: u8, index: u32) -> Vec<u8> {
    let mut record = vec![tag, 0, 0, 0];
    record.extend_from_slice(&index.to_le_bytes());
    record
}

/// One file as the server read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The server's side: the area replayed, record by record, as far as it was written.
#[derive(Debug, Default)]
pub struct FilesLog {
    /// By index: the name and the bytes so far.
    files: Vec<WrittenFile>,
    /// Bytes of records read so far (past the header).
    seen: usize,
    /// A cap the child refused a write by, or that a record broke.
    pub cap_hit: Option<CapHit>,
    /// A record that is not one: the rest of the area is ignored.
    broken: bool,
}

impl FilesLog {
    /// Reads the records written since the last call; returns the indices of files closed by
    /// them. `area` is the area's offset in `file`, `size` its size, `caps` the run's bytes.
    pub fn catch_up(
        &mut self,
        file: &std::fs::File,
        area: u64,
        size: usize,
        caps: Caps,
    ) -> io::Result<Vec<usize>> {
        let mut head = [0u8; AREA_HEADER];
        file.read_exact_at(&mut head, area)?;
        let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        if self.cap_hit.is_none() {
            self.cap_hit = match word(8) {
                1 => Some(CapHit::Count),
                2 => Some(CapHit::Bytes),
                3 => Some(CapHit::FileBytes),
                _ => None,
            };
        }
        let used = usize::try_from(word(0))
            .unwrap_or(usize::MAX)
            .clamp(AREA_HEADER, size);
        let start = AREA_HEADER + self.seen;
        if self.broken || used <= start {
            return Ok(Vec::new());
        }
        let mut records = vec![0u8; used - start];
        file.read_exact_at(&mut records, area + start as u64)?;
        let mut closed = Vec::new();
        let mut at = 0;
        while at < records.len() {
            match self.apply(&records[at..], caps) {
                Some((len, close)) => {
                    closed.extend(close);
                    at += len;
                }
                None => {
                    self.broken = true;
                    break;
                }
            }
        }
        self.seen += at;
        Ok(closed)
    }

    /// Applies the record at the start of `bytes`: its length (8-aligned) and the file it
    /// closed, or `None` for a record that is not one or breaks a cap.
    fn apply(&mut self, bytes: &[u8], caps: Caps) -> Option<(usize, Option<usize>)> {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let tag = *bytes.first()?;
        let index = u32_at(4)? as usize;
        let (len, closed) = match tag {
            CREATE => {
                let name_len = u32_at(8)? as usize;
                let name = std::str::from_utf8(bytes.get(12..12usize.checked_add(name_len)?)?)
                    .ok()?
                    .to_owned();
                check_name(&name).ok()?;
                match self.files.iter().position(|f| f.name == name) {
                    Some(existing) if existing == index => self.files[index].bytes.clear(),
                    Some(_) => return None,
                    None if index == self.files.len() && index < MAX_FILES => {
                        self.files.push(WrittenFile {
                            name,
                            bytes: Vec::new(),
                        })
                    }
                    None if index >= MAX_FILES => {
                        self.cap_hit = Some(CapHit::Count);
                        return None;
                    }
                    None => return None,
                }
                (12 + name_len, None)
            }
            WRITE => {
                let offset = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
                let data_len = u32_at(16)? as usize;
                let data = bytes.get(20..20usize.checked_add(data_len)?)?;
                let end = offset.checked_add(data_len as u64)?;
                if end > caps.file {
                    self.cap_hit = Some(CapHit::FileBytes);
                    return None;
                }
                let current = self.files.get(index)?.bytes.len() as u64;
                let total: u64 = self.files.iter().map(|f| f.bytes.len() as u64).sum();
                if total + end.saturating_sub(current) > caps.total {
                    self.cap_hit = Some(CapHit::Bytes);
                    return None;
                }
                let file = &mut self.files[index].bytes;
                let (offset, end) = (offset as usize, end as usize);
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[offset..end].copy_from_slice(data);
                (20 + data_len, None)
            }
            CLOSE => {
                self.files.get(index)?;
                (8, Some(index))
            }
            _ => return None,
        };
        Some((len.next_multiple_of(8), closed))
    }

    /// The file at `index` as it is now.
    pub fn file(&self, index: usize) -> Option<&WrittenFile> {
        self.files.get(index)
    }

    /// Every file, in the order they were first created.
    pub fn into_files(self) -> Vec<WrittenFile> {
        self.files
    }

    /// Every file, as a response carries it.
    pub fn into_output_files(self) -> Vec<OutputFile> {
        self.files.into_iter().map(OutputFile::from).collect()
    }
}

/// One file of a run's response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OutputFile {
    pub name: String,
    pub size: u64,
    pub media_type: String,
    /// The file's bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

impl From<WrittenFile> for OutputFile {
    fn from(file: WrittenFile) -> Self {
        use base64::Engine as _;
        Self {
            size: file.bytes.len() as u64,
            media_type: crate::media_type::of(&file.name).to_owned(),
            base64: base64::engine::general_purpose::STANDARD.encode(&file.bytes),
            name: file.name,
        }
    }
}

/// The server's side, when the run has ended: every file it wrote, replayed from the output
/// file of a run with these limits.
pub fn read(file: &std::fs::File, limits: &crate::run::Limits) -> io::Result<FilesLog> {
    let (area, size) = area_of(limits);
    let mut log = FilesLog::default();
    log.catch_up(file, area, size, Caps::of(limits))?;
    Ok(log)
}

/// Where a run's files area is in its output file, and its size.
pub fn area_of(limits: &crate::run::Limits) -> (u64, usize) {
    let limit = usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX);
    (
        crate::output_region::files_area(limit) as u64,
        area_size(limits.max_output_files_bytes),
    )
}

/// What the code was told, and the run's error says, when a cap refused a write.
pub fn cap_message(hit: CapHit, caps: Caps) -> String {
    let max_bytes = caps.total;
    match hit {
        CapHit::Count => format!(
            "the run wrote more than {MAX_FILES} files into {OUTPUT_DIR}/ (the most a run may \
             write)"
        ),
        CapHit::Bytes => format!(
            "the run's files in {OUTPUT_DIR}/ exceeded {max_bytes} bytes \
             (--max-output-files-bytes)"
        ),
        CapHit::FileBytes => format!(
            "a file in {OUTPUT_DIR}/ exceeded {} bytes, the most one file may hold \
             (--max-output-file-bytes)",
            caps.file
        ),
    }
}

#[cfg(test)]
#[path = "output_files_tests.rs"]
mod tests;
