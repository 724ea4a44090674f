//! A child of a root sandlot becomes an unprivileged user: no supplementary groups, then the
//! gid, then the uid (in that order: once the uid is gone, so is the right to change groups).
//! Setting every uid to a non-zero value also empties the capability sets.
//!
//! A sandlot that does not run as root has nothing to drop: its children already run as its
//! own unprivileged user.

use std::io;

use super::JailError;

/// Drops to `uid`/`gid` when running as root; otherwise does nothing.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), JailError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    if uid == 0 {
        return Err(JailError::Credentials(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the child uid must not be 0",
        )));
    }
    // SAFETY: setgroups with a zero-length list reads no memory.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: setresgid/setresuid change this process's identity and touch no memory.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::setresuid(uid, uid, uid) })?;
    // Paranoia: getting root back must now fail.
    // SAFETY: as above.
    if unsafe { libc::setresuid(0, 0, 0) } == 0 {
        return Err(JailError::Credentials(io::Error::other(
            "root could be regained after dropping it",
        )));
    }
    // The kernel clears the parent-death signal when the uid changes: arm it again.
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number has no memory effects.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })
}

fn check(rc: libc::c_int) -> Result<(), JailError> {
    if rc != 0 {
        return Err(JailError::Credentials(io::Error::last_os_error()));
    }
    Ok(())
}
