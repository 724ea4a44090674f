//! A process of sandlot's dies with the one that started it: a zygote with the server, a child
//! with its zygote, a shell's init with its supervisor. The kernel sends SIGKILL when the parent
//! (the starting *thread*, for the server's zygotes) ends.

use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};

use super::JailError;

/// Arms the parent-death signal.
pub fn arm() -> Result<(), JailError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| JailError::ParentDeathSignal(e.into()))
}

/// Arms it and checks that `parent` did not die before it was armed (the process would then
/// have been adopted, and nothing would ever kill it).
pub fn arm_for(parent: Pid) -> Result<(), JailError> {
    arm()?;
    if getppid() != parent {
        return Err(JailError::Orphaned);
    }
    Ok(())
}
