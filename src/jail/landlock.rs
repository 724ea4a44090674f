//! Landlock: what a child may touch by path and by port, enforced by the kernel however the
//! call is made. A child may read (never write, create, execute or list beyond) the directories
//! its interpreter loads from, and nothing else; it may neither bind nor connect a TCP socket;
//! where the kernel supports scoping (ABI 6), it may signal no process outside its own domain
//! and reach no abstract unix socket.
//!
//! The ruleset is built once in the zygote (opening the paths once); each child only enforces
//! it, one system call.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};

use super::JailError;

/// The oldest ABI that covers both halves of the policy (files, and TCP from ABI 4).
const REQUIRED: ABI = ABI::V4;
/// Newer rights and scopes are used where the kernel has them.
const WANTED: ABI = ABI::V6;

/// A ruleset ready to enforce.
pub struct LandlockRuleset(OwnedFd);

/// Builds the ruleset: `readable` directories read-only, everything else denied.
pub fn build(readable: &[&Path]) -> Result<LandlockRuleset, JailError> {
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED))
        .and_then(|r| r.handle_access(AccessNet::from_all(REQUIRED)))
        .map(|r| r.set_compatibility(CompatLevel::BestEffort))
        .and_then(|r| r.handle_access(AccessFs::from_all(WANTED)))
        .and_then(|r| r.scope(Scope::from_all(WANTED)))
        .and_then(|r| r.set_compatibility(CompatLevel::HardRequirement).create())
        .map_err(|e| JailError::Landlock(e.to_string()))?;
    let mut ruleset = ruleset;
    for dir in readable {
        let fd = PathFd::new(dir).map_err(|e| JailError::Landlock(e.to_string()))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, AccessFs::from_read(REQUIRED)))
            .map_err(|e| JailError::Landlock(format!("{}: {e}", dir.display())))?;
    }
    let fd: Option<OwnedFd> = ruleset.into();
    fd.map(LandlockRuleset)
        .ok_or_else(|| JailError::Landlock("this kernel does not support Landlock".into()))
}

/// Enforces the ruleset found at descriptor `fd` on the calling thread, for good, and closes it.
/// Needs `no_new_privs`, which the caller has set.
pub fn enforce(fd: i32) -> Result<(), JailError> {
    // SAFETY: landlock_restrict_self takes a ruleset descriptor and flags (none).
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) };
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(JailError::Landlock(io::Error::last_os_error().to_string()))
    };
    // SAFETY: `fd` is the inherited ruleset descriptor; nothing else uses it after this.
    unsafe { libc::close(fd) };
    result
}

/// The Landlock ABI this kernel offers, or why it offers none.
pub fn abi_version() -> Result<i32, io::Error> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with the VERSION flag, landlock_create_ruleset reads no memory and returns a number.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}

impl AsRawFd for LandlockRuleset {
    fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for LandlockRuleset {
    fn into_raw_fd(self) -> i32 {
        self.0.into_raw_fd()
    }
}
