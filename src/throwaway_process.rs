//! Runs a closure in a throwaway forked process and brings back the bytes it wrote: how the
//! jail probe tries each layer for real, and how a zygote learns what loading its native
//! extensions would map, without either touching the calling process.
//!
//! Both functions fork, so calling them is `unsafe`: the caller promises the process is
//! single-threaded (a fork of a threaded process copies locks that other threads hold).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};

/// Runs `f` in a forked process and returns the bytes it wrote; an error if it wrote nothing
/// (it died) or could not be started.
///
/// # Safety
/// The process must be single-threaded.
pub unsafe fn run(f: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, String> {
    let pipe = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: passed on to our caller, who promises a single thread.
    unsafe { run_with(pipe, f) }
}

/// [`run`] over a pipe made beforehand (by a process whose seccomp filter will refuse pipe2).
///
/// # Safety
/// The process must be single-threaded.
pub unsafe fn run_with(
    (read_end, write_end): (OwnedFd, OwnedFd),
    f: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, String> {
    // SAFETY: our caller promises the process is single-threaded; the child runs `f`, writes
    // to the pipe and `_exit`s.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            let bytes = f();
            let _ = std::fs::File::from(write_end).write_all(&bytes);
            // SAFETY: _exit ends the throwaway process at once, running nothing registered
            // (atexit handlers, libraries' destructors).
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            let mut bytes = Vec::new();
            let read = std::fs::File::from(read_end).read_to_end(&mut bytes);
            let status = waitpid(child, None);
            match read {
                Ok(_) if !bytes.is_empty() => Ok(bytes),
                _ => Err(format!("the forked process died ({status:?})")),
            }
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}
