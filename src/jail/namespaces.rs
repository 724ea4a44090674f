//! Namespaces a zygote enters once, so every child it forks shares them at no cost per run:
//! a network namespace with nothing but a downed loopback (no route to the host, not even its
//! 127.0.0.1), and private IPC and UTS namespaces (no SysV/POSIX IPC with the host, a hostname
//! of its own).
//!
//! Run as root, the zygote unshares them directly. Otherwise it first enters a user namespace
//! that maps only its own uid and gid, which is what lets an unprivileged user create the rest.

use std::io;

use super::JailError;

const NAMESPACES: libc::c_int = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

/// Moves the calling (single-threaded) process into fresh namespaces.
pub fn enter() -> Result<(), JailError> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        unshare(NAMESPACES)?;
    } else {
        // SAFETY: as above.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        unshare(libc::CLONE_NEWUSER | NAMESPACES)?;
        map_own_ids(uid, gid).map_err(JailError::Namespaces)?;
    }
    set_hostname()
}

fn unshare(flags: libc::c_int) -> Result<(), JailError> {
    // SAFETY: unshare only changes this process's namespace membership.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(JailError::Namespaces(io::Error::last_os_error()));
    }
    Ok(())
}

/// Inside a new user namespace: the same uid and gid as outside, nothing else mapped.
fn map_own_ids(uid: u32, gid: u32) -> io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
}

/// `socket.gethostname()` in a child says "sandlot", not the host's name.
fn set_hostname() -> Result<(), JailError> {
    let name = b"sandlot";
    // SAFETY: the pointer and length describe `name`.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(JailError::Namespaces(io::Error::last_os_error()));
    }
    Ok(())
}
