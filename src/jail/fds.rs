//! A child keeps exactly its stdin, stdout and stderr (all on /dev/null, so that nothing an
//! interpreter writes at the C level reaches the zygote's or the server's streams), its job
//! channel, and until Landlock is enforced, the ruleset.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::JailError;

/// The descriptor number the job channel gets in a child.
pub const CHANNEL_FD: i32 = 3;
/// Where the Landlock ruleset waits to be enforced (and is then closed).
pub const LANDLOCK_FD: i32 = 4;

/// Points 0, 1, 2 at `devnull`, moves `channel` to [`CHANNEL_FD`] and `landlock` to
/// [`LANDLOCK_FD`], and closes everything else.
pub fn isolate(
    devnull: &OwnedFd,
    channel: OwnedFd,
    landlock: Option<i32>,
) -> Result<(), JailError> {
    for target in 0..=2 {
        dup2(devnull.as_raw_fd(), target)?;
    }
    dup2(channel.as_raw_fd(), CHANNEL_FD)?;
    drop(channel);
    let mut first_closed = CHANNEL_FD + 1;
    if let Some(fd) = landlock {
        dup2(fd, LANDLOCK_FD)?;
        first_closed = LANDLOCK_FD + 1;
    }
    // SAFETY: close_range only closes descriptors; nothing in this process uses any descriptor
    // above the kept ones after this point (the zygote's copies are separate file table entries).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0) };
    if rc != 0 {
        return Err(JailError::Fds(io::Error::last_os_error()));
    }
    Ok(())
}

fn dup2(from: i32, to: i32) -> Result<(), JailError> {
    if from == to {
        // dup2 onto itself would keep O_CLOEXEC set; clear it instead.
        // SAFETY: fcntl on a descriptor we own, with a valid command.
        let rc = unsafe { libc::fcntl(to, libc::F_SETFD, 0) };
        return if rc == -1 {
            Err(JailError::Fds(io::Error::last_os_error()))
        } else {
            Ok(())
        };
    }
    // SAFETY: both are valid descriptors; dup2 replaces `to` atomically.
    if unsafe { libc::dup2(from, to) } == -1 {
        return Err(JailError::Fds(io::Error::last_os_error()));
    }
    Ok(())
}
