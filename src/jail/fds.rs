//! A confined process keeps exactly the descriptors it is given: its stdin, stdout and stderr
//! (for an interpreter's child, all on /dev/null, so that nothing an interpreter writes at the C
//! level reaches the zygote's or the server's streams), a few more at fixed numbers (a child's
//! job channel), and nothing else.

use std::io;
use std::os::fd::RawFd;

use super::JailError;

/// Points 0, 1 and 2 at `stdio`, moves each `(from, to)` of `kept` to `to`, and closes every
/// other descriptor. The `to` numbers must start at 3 and not collide with a later `from`.
pub fn isolate(stdio: [RawFd; 3], kept: &[(RawFd, RawFd)]) -> Result<(), JailError> {
    for (to, from) in (0..).zip(stdio) {
        dup2(from, to)?;
    }
    for &(from, to) in kept {
        dup2(from, to)?;
    }
    let first_closed = kept.iter().map(|&(_, to)| to + 1).max().unwrap_or(3);
    // SAFETY: close_range only closes descriptors. Nothing in this process uses a descriptor
    // above the kept ones from here on: the callers own none (a zygote's copies are entries of
    // the zygote's own table), and the process never returns to code that would.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0) };
    if rc != 0 {
        return Err(JailError::CloseRange(io::Error::last_os_error()));
    }
    Ok(())
}

fn dup2(from: RawFd, to: RawFd) -> Result<(), JailError> {
    let failed = |source| JailError::Dup { from, to, source };
    if from == to {
        // dup2 onto itself would keep O_CLOEXEC set; clear it instead.
        // SAFETY: fcntl(F_SETFD) on a descriptor number changes only its flags.
        let rc = unsafe { libc::fcntl(to, libc::F_SETFD, 0) };
        return if rc == -1 {
            Err(failed(io::Error::last_os_error()))
        } else {
            Ok(())
        };
    }
    // SAFETY: dup2 onto a fixed number is the point: whatever `to` held is replaced atomically,
    // and no Rust object of this process uses `to` afterwards (see `isolate`).
    if unsafe { libc::dup2(from, to) } == -1 {
        return Err(failed(io::Error::last_os_error()));
    }
    Ok(())
}
