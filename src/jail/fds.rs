//! A confined process keeps exactly the descriptors it is given: its stdin, stdout and stderr
//! (for an interpreter's child, all on /dev/null, so that nothing an interpreter writes at the C
//! level reaches the zygote's or the server's streams), a few more at fixed numbers (a child's
//! job channel), and nothing else.

use std::io;
use std::os::fd::RawFd;

use super::JailError;

/// Points 0, 1 and 2 at `stdio`, moves each `(from, to)` of `kept` to `to`, and closes every
/// other descriptor. The `to` numbers must start at 3; a `from` may be any number, a `to`
/// among them (each is first copied above every `to`).
pub fn isolate(stdio: [RawFd; 3], kept: &[(RawFd, RawFd)]) -> Result<(), JailError> {
    let first_closed = kept.iter().map(|&(_, to)| to + 1).max().unwrap_or(3);
    let mut moved = Vec::with_capacity(kept.len());
    for &(from, to) in kept {
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor and touches nothing else; it is
        // closed below with every other descriptor above the kept ones.
        let copy = unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, first_closed) };
        if copy == -1 {
            let source = io::Error::last_os_error();
            return Err(JailError::Dup { from, to, source });
        }
        moved.push((copy, to));
    }
    for (to, from) in (0..).zip(stdio) {
        dup2(from, to)?;
    }
    for &(from, to) in &moved {
        dup2(from, to)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn identity(fd: RawFd) -> (u64, u64) {
        // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes into `stat`, which outlives the call.
        unsafe { libc::fstat(fd, &mut stat) };
        (stat.st_dev, stat.st_ino)
    }

    /// The channel sits at 4 and the output at 3, each where the other goes: both must arrive.
    #[test]
    fn kept_descriptors_may_sit_where_another_goes() {
        // SAFETY: the forked process only makes system calls and leaves with _exit; glibc's
        // allocator is usable after fork.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = std::panic::catch_unwind(|| {
                    let devnull = std::fs::File::open("/dev/null").unwrap();
                    let (output, channel) = nix::unistd::pipe().unwrap();
                    let (output, channel) = (output.as_raw_fd(), channel.as_raw_fd());
                    // SAFETY: this process owns every descriptor it moves here.
                    unsafe {
                        libc::dup2(output, 3);
                        libc::dup2(channel, 4);
                    }
                    let (out_id, chan_id) = (identity(3), identity(4));
                    isolate([devnull.as_raw_fd(); 3], &[(4, 3), (3, 4)]).unwrap();
                    identity(3) == chan_id && identity(4) == out_id
                });
                // SAFETY: leaves the forked test process at once.
                unsafe { libc::_exit(if ok.unwrap_or(false) { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
