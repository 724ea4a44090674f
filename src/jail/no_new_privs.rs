//! `no_new_privs`: from here on, no `execve` can grant privileges (setuid binaries, file
//! capabilities), and the process may install Landlock and seccomp without being privileged.

use super::JailError;

pub fn set() -> Result<(), JailError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| JailError::NoNewPrivs(e.into()))
}
