//! The run's stdout and stderr in a child: every engine writes them here as the code produces
//! them, straight into the output file the server will read ([`crate::output_region`]), so
//! they outlive the child.

use std::sync::Mutex;

use crate::output_files::{FilesWriter, Refused};
use crate::output_region::{Stream, Writer, Written};
use crate::protocol::{Convention, Job, CHILD_OUTPUT_FD};

/// `None` until the job arrives (in the zygote, and in a child waiting in the pool: whatever
/// is written then is not the run's).
static WRITER: Mutex<Option<Writer>> = Mutex::new(None);
/// The files the run writes into its output directory; `None` until the job arrives.
static FILES: Mutex<Option<FilesWriter>> = Mutex::new(None);

/// Maps the output file for the job's limit; FastGPT's convention has one stream (its log).
/// Then closes the file's descriptor, before any user code runs: the mapping is all the run
/// needs, and a descriptor of a file the child can write would let code map it a second time,
/// executable, and run what it wrote through the first mapping. With no descriptor left (nor
/// a copy: none was made), there is nothing to map.
pub fn begin(job: &Job) -> std::io::Result<()> {
    let limit = usize::try_from(job.limits.max_output_bytes).unwrap_or(usize::MAX);
    let merged = job.convention == Convention::Fastgpt;
    let (writer, files) = Writer::map(
        CHILD_OUTPUT_FD,
        limit,
        merged,
        crate::output_files::Caps::of(&job.limits),
    )?;
    *lock() = Some(writer);
    *FILES.lock().unwrap_or_else(|e| e.into_inner()) = Some(files);
    // SAFETY: CHILD_OUTPUT_FD was put at its number by `jail::fds::isolate` and is owned by no
    // Rust object (the jail forgot its OwnedFd); the mapping stays valid without it.
    if unsafe { libc::close(CHILD_OUTPUT_FD) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Appends text to a stream; `Written::Cut` once the run's output limit is reached.
pub fn write_str(stream: Stream, text: &str) -> Written {
    lock()
        .as_mut()
        .map_or(Written::All, |w| w.write_str(stream, text))
}

/// Appends bytes to a stream (a shell command's output).
pub fn write_bytes(stream: Stream, bytes: &[u8]) -> Written {
    lock()
        .as_mut()
        .map_or(Written::All, |w| w.write_bytes(stream, bytes))
}

/// The run's output limit; 0 before the job.
pub fn limit() -> usize {
    lock().as_ref().map_or(0, Writer::limit)
}

/// Runs `f` on the run's files; refused before the job arrives.
pub fn with_files<T>(f: impl FnOnce(&mut FilesWriter) -> Result<T, Refused>) -> Result<T, Refused> {
    match FILES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(files) => f(files),
        None => Err(Refused::Name("no run in progress".into())),
    }
}

/// A refusal as the code sees it: an errno and why.
pub fn refusal(refused: &Refused) -> (i32, String) {
    match refused {
        Refused::Cap(hit) => {
            let caps = with_files(|files| Ok(files.caps())).unwrap_or_default();
            let errno = match hit {
                crate::output_files::CapHit::FileBytes => libc::EFBIG,
                _ => libc::ENOSPC,
            };
            (errno, crate::output_files::cap_message(*hit, caps))
        }
        Refused::Name(why) => (libc::EINVAL, why.clone()),
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Writer>> {
    WRITER.lock().unwrap_or_else(|e| e.into_inner())
}
