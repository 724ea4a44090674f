//! `no_new_privs`: from here on, no `execve` can grant privileges (setuid binaries, file
//! capabilities), and the process may install Landlock and seccomp without being privileged.

use std::io;

use super::JailError;

pub fn set() -> Result<(), JailError> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS and constant arguments has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(JailError::NoNewPrivs(io::Error::last_os_error()));
    }
    Ok(())
}
